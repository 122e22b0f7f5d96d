#include "idstate.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "idmap.h"

/* A value of a store of variable-size values. */
typedef struct idstate__blob {
    unsigned char *p; /* owned */
    size_t n;
} idstate__blob;

struct idstate {
    pthread_mutex_t lock; /* guards ids and values */
    idmap *ids;
    unsigned char *values; /* value_size bytes per id index (fixed size) */
    idstate__blob *blobs;  /* one per id index (variable size: value_size 0) */
    size_t value_size, cap;
    atomic_ulong generation;
    MDB_env *env; /* NULL for an in-memory store */
    MDB_dbi dbi;
    uint64_t applied; /* idstate_put_at's last position (under lock) */
};

/* The key of the applied position: 0xff never starts a UTF-8 id, so it
 * cannot be one of the ids. */
#define K_APPLIED                                                                                  \
    "\xff"                                                                                         \
    "applied_at"

/* Stores value (n bytes) as id's in memory (caller holds the lock). */
static int idstate_set(idstate *s, const char *id, size_t len, const void *value, size_t n) {
    uint32_t idx;
    int rc = idmap_intern(s->ids, id, len, &idx);
    if (rc) return rc;
    if (idx >= s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        if (s->value_size) {
            unsigned char *v = realloc(s->values, cap * s->value_size);
            if (!v) return ERR_NOMEM;
            s->values = v;
        } else {
            idstate__blob *b = realloc(s->blobs, cap * sizeof *b);
            if (!b) return ERR_NOMEM;
            memset(b + s->cap, 0, (cap - s->cap) * sizeof *b);
            s->blobs = b;
        }
        s->cap = cap;
    }
    if (s->value_size) {
        memcpy(s->values + (size_t)idx * s->value_size, value, s->value_size);
        return ERR_OK;
    }
    unsigned char *p = malloc(n ? n : 1);
    if (!p) return ERR_NOMEM;
    memcpy(p, value, n);
    free(s->blobs[idx].p);
    s->blobs[idx] = (idstate__blob){p, n};
    return ERR_OK;
}

/* Why a value of n bytes does not fit s, or NULL. */
static const char *idstate_size_problem(const idstate *s, size_t n) {
    if (s->value_size ? n != s->value_size : n == 0 || n > IDSTATE_MAX_RECORD)
        return s->value_size ? "a value of another size than the store's"
                             : "an empty value or one larger than IDSTATE_MAX_RECORD";
    return NULL;
}

/* The recd code of a failed LMDB write: a full map is a limit, a failing
 * disk is I/O (both say more than "internal" to whoever must act on it). */
static int idstate_mdb_code(int rc) {
    switch (rc) {
    case MDB_MAP_FULL:
        return ERR_LIMIT;
    case ENOMEM:
        return ERR_NOMEM;
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case EACCES:
    case EROFS:
        return ERR_IO;
    default:
        return ERR_INTERNAL;
    }
}

int idstate_put_many(idstate *s, const idstate_kv *kv, size_t n, uint64_t at, err_t *e) {
    for (size_t i = 0; i < n; i++) {
        const char *problem = idstate_size_problem(s, kv[i].value_len);
        if (problem) return err_set(e, ERR_INVALID, "idstate: value %zu is %s", i, problem);
    }
    pthread_mutex_lock(&s->lock);
    int rc = ERR_OK;
    if (s->env) {
        MDB_txn *txn;
        unsigned char b[8];
        for (int i = 0; i < 8; i++)
            b[i] = (unsigned char)(at >> (8 * i));
        MDB_val ak = {sizeof K_APPLIED - 1, K_APPLIED}, av = {8, b};
        int mrc = mdb_txn_begin(s->env, NULL, 0, &txn);
        for (size_t i = 0; !mrc && i < n; i++) {
            MDB_val k = {kv[i].len, (void *)kv[i].id}, v = {kv[i].value_len, (void *)kv[i].value};
            mrc = mdb_put(txn, s->dbi, &k, &v, 0);
        }
        if (!mrc) {
            if (at) mrc = mdb_put(txn, s->dbi, &ak, &av, 0);
            mrc = mrc ? (mdb_txn_abort(txn), mrc) : mdb_txn_commit(txn);
        }
        if (mrc)
            rc = err_set(e, idstate_mdb_code(mrc), "idstate: cannot store: %s", mdb_strerror(mrc));
    }
    for (size_t i = 0; !rc && i < n; i++)
        if ((rc = idstate_set(s, kv[i].id, kv[i].len, kv[i].value, kv[i].value_len)))
            err_set(e, rc, "idstate: cannot keep the value in memory: %s", err_message(rc));
    if (!rc) atomic_fetch_add(&s->generation, 1);
    if (!rc && at) s->applied = at;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int idstate_put(idstate *s, const char *id, size_t len, const void *value, err_t *e) {
    idstate_kv kv = {id, len, value, s->value_size};
    return idstate_put_many(s, &kv, 1, 0, e);
}

int idstate_put_at(idstate *s, const char *id, size_t len, const void *value, uint64_t at,
                   err_t *e) {
    if (!at) return err_set(e, ERR_INVALID, "idstate: position 0 is not a position");
    idstate_kv kv = {id, len, value, s->value_size};
    return idstate_put_many(s, &kv, 1, at, e);
}

uint64_t idstate_applied(idstate *s) {
    pthread_mutex_lock(&s->lock);
    uint64_t at = s->applied;
    pthread_mutex_unlock(&s->lock);
    return at;
}

int idstate_get(idstate *s, const char *id, size_t len, void *value) {
    if (!s->value_size) return ERR_INVALID;
    pthread_mutex_lock(&s->lock);
    uint32_t idx;
    int rc = idmap_find(s->ids, id, len, &idx);
    if (!rc) memcpy(value, s->values + (size_t)idx * s->value_size, s->value_size);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void idstate_each(idstate *s, idstate_each_fn fn, void *ctx) {
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < idmap_size(s->ids); i++) {
        size_t len;
        const char *id = idmap_key(s->ids, i, &len);
        if (s->value_size)
            fn(ctx, id, len, s->values + (size_t)i * s->value_size, s->value_size);
        else
            fn(ctx, id, len, s->blobs[i].p, s->blobs[i].n);
    }
    pthread_mutex_unlock(&s->lock);
}

unsigned long idstate_generation(idstate *s) {
    return atomic_load(&s->generation);
}

/* Loads every stored value into s. */
static int idstate_load(idstate *s, const char *dir, err_t *e) {
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc) return err_set(e, ERR_INTERNAL, "idstate: %s: %s", dir, mdb_strerror(rc));
    if ((rc = mdb_cursor_open(txn, s->dbi, &cur))) {
        mdb_txn_abort(txn);
        return err_set(e, ERR_INTERNAL, "idstate: %s: %s", dir, mdb_strerror(rc));
    }
    MDB_val k, v;
    int op = MDB_FIRST, err = ERR_OK;
    while (!err && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        if (k.mv_size == sizeof K_APPLIED - 1 && !memcmp(k.mv_data, K_APPLIED, k.mv_size)) {
            if (v.mv_size != 8)
                err =
                    err_set(e, ERR_FORMAT, "idstate: %s: applied_at of %zu bytes", dir, v.mv_size);
            for (int i = 0; !err && i < 8; i++)
                s->applied |= (uint64_t)((const unsigned char *)v.mv_data)[i] << (8 * i);
        } else if (idstate_size_problem(s, v.mv_size))
            err = err_set(e, ERR_FORMAT, "idstate: %s holds %s (%zu bytes)", dir,
                          idstate_size_problem(s, v.mv_size), v.mv_size);
        else if ((err = idstate_set(s, k.mv_data, k.mv_size, v.mv_data, v.mv_size)))
            err_set(e, err, "idstate: loading %s: %s", dir, err_message(err));
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (!err && rc != MDB_NOTFOUND)
        err = err_set(e, ERR_INTERNAL, "idstate: %s: %s", dir, mdb_strerror(rc));
    return err;
}

/* Opens (creating) the LMDB environment in dir and loads it into s. */
static int idstate_open_env(idstate *s, const char *dir, err_t *e) {
    if (mkdir(dir, 0755) && errno != EEXIST)
        return err_set(e, ERR_IO, "idstate: mkdir %s: %s", dir, strerror(errno));
    MDB_txn *txn;
    int rc;
    if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_mapsize(s->env, 1u << 30)) ||
        (rc = mdb_env_open(s->env, dir, 0, 0644)) || (rc = mdb_txn_begin(s->env, NULL, 0, &txn)))
        return err_set(e, ERR_INTERNAL, "idstate: open %s: %s", dir, mdb_strerror(rc));
    if ((rc = mdb_dbi_open(txn, NULL, 0, &s->dbi))) {
        mdb_txn_abort(txn);
        return err_set(e, ERR_INTERNAL, "idstate: open %s: %s", dir, mdb_strerror(rc));
    }
    if ((rc = mdb_txn_commit(txn)))
        return err_set(e, ERR_INTERNAL, "idstate: open %s: %s", dir, mdb_strerror(rc));
    return idstate_load(s, dir, e);
}

int idstate_open(const char *dir, size_t value_size, idstate **out, err_t *e) {
    if (value_size > IDSTATE_MAX_VALUE)
        return err_set(e, ERR_INVALID, "idstate: value size %zu not in 0..%d", value_size,
                       IDSTATE_MAX_VALUE);
    idstate *s = calloc(1, sizeof *s);
    if (!s || !(s->ids = idmap_new())) {
        free(s);
        return err_set(e, ERR_NOMEM, "idstate: out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    s->value_size = value_size;
    int rc = dir ? idstate_open_env(s, dir, e) : ERR_OK;
    if (rc) {
        idstate_close(s);
        return rc;
    }
    *out = s;
    return ERR_OK;
}

void idstate_close(idstate *s) {
    if (!s) return;
    if (s->env) mdb_env_close(s->env);
    pthread_mutex_destroy(&s->lock);
    if (s->blobs)
        for (uint32_t i = 0; i < idmap_size(s->ids); i++)
            free(s->blobs[i].p);
    idmap_free(s->ids);
    free(s->values);
    free(s->blobs);
    free(s);
}
