#include "catalog.h"

#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "idmap.h"

/* The state of one item; value of the LMDB record keyed by the item id. */
typedef struct item_state {
    float boost;
    unsigned char available;
} item_state;

struct catalog {
    pthread_mutex_t lock; /* guards ids and state */
    idmap *ids;
    item_state *state;
    size_t cap;
    atomic_ulong generation;
    MDB_env *env; /* NULL for an in-memory catalog */
    MDB_dbi dbi;
};

/* The state slot of item, interned if new (caller holds the lock); the
 * caller initializes a new slot. */
static item_state *catalog_slot(catalog *c, const char *item, size_t len) {
    uint32_t idx;
    if (idmap_intern(c->ids, item, len, &idx)) return NULL;
    if (idx >= c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        item_state *s = realloc(c->state, cap * sizeof *s);
        if (!s) return NULL;
        c->state = s;
        c->cap = cap;
    }
    return &c->state[idx];
}

/* Stores item's new state (caller holds the lock). */
static int catalog_store(catalog *c, const char *item, size_t len, const item_state *st, err_t *e) {
    if (!c->env) return ERR_OK;
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (!rc) {
        unsigned char buf[5];
        memcpy(buf, &st->boost, 4);
        buf[4] = st->available;
        MDB_val k = {len, (void *)item}, v = {sizeof buf, buf};
        rc = mdb_put(txn, c->dbi, &k, &v, 0);
        rc = rc ? (mdb_txn_abort(txn), rc) : mdb_txn_commit(txn);
    }
    if (rc)
        return err_set(e, ERR_INTERNAL, "catalog: cannot store item state: %s", mdb_strerror(rc));
    return ERR_OK;
}

static int catalog_update(catalog *c, const char *item, size_t len, int set_available,
                          bool available, float boost, err_t *e) {
    pthread_mutex_lock(&c->lock);
    uint32_t idx;
    int known = idmap_find(c->ids, item, len, &idx) == ERR_OK;
    item_state *slot = catalog_slot(c, item, len);
    int rc;
    if (!slot) {
        rc = err_set(e, ERR_NOMEM, "catalog: out of memory");
    } else {
        item_state st = known ? *slot : (item_state){1.0f, 1};
        if (set_available)
            st.available = available;
        else
            st.boost = boost;
        rc = catalog_store(c, item, len, &st, e);
        if (!rc) {
            *slot = st;
            atomic_fetch_add(&c->generation, 1);
        } else if (!known) {
            *slot = (item_state){1.0f, 1};
        }
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int catalog_set_available(catalog *c, const char *item, size_t len, bool available, err_t *e) {
    return catalog_update(c, item, len, 1, available, 0, e);
}

int catalog_set_boost(catalog *c, const char *item, size_t len, float multiplier, err_t *e) {
    if (!(multiplier > 0 && multiplier <= CATALOG_MAX_BOOST))
        return err_set(e, ERR_INVALID, "boost multiplier must be in (0, %g], got %g",
                       CATALOG_MAX_BOOST, multiplier);
    return catalog_update(c, item, len, 0, true, multiplier, e);
}

bool catalog_multipliers(catalog *c, const model *m, float *mult) {
    uint32_t n = model_info(m)->n_items;
    for (uint32_t i = 0; i < n; i++)
        mult[i] = 1.0f;
    bool any = false;
    pthread_mutex_lock(&c->lock);
    for (uint32_t s = 0; s < idmap_size(c->ids); s++) {
        const item_state *st = &c->state[s];
        if (st->available && st->boost == 1.0f) continue;
        size_t len;
        const char *id = idmap_key(c->ids, s, &len);
        uint32_t item;
        if (model_item_index(m, id, len, &item) != ERR_OK) continue;
        mult[item] = st->available ? st->boost : 0.0f;
        any = true;
    }
    pthread_mutex_unlock(&c->lock);
    return any;
}

unsigned long catalog_generation(catalog *c) {
    return atomic_load(&c->generation);
}

/* Loads every stored item state into c. */
static int catalog_load(catalog *c, err_t *e) {
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
    if (rc) return err_set(e, ERR_INTERNAL, "catalog: %s", mdb_strerror(rc));
    if ((rc = mdb_cursor_open(txn, c->dbi, &cur))) {
        mdb_txn_abort(txn);
        return err_set(e, ERR_INTERNAL, "catalog: %s", mdb_strerror(rc));
    }
    MDB_val k, v;
    int op = MDB_FIRST;
    while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        item_state *slot;
        if (v.mv_size != 5 || !(slot = catalog_slot(c, k.mv_data, k.mv_size))) {
            rc = v.mv_size != 5 ? EINVAL : ENOMEM;
            break;
        }
        memcpy(&slot->boost, v.mv_data, 4);
        slot->available = ((const unsigned char *)v.mv_data)[4];
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND)
        return err_set(e, ERR_FORMAT, "catalog: damaged item state (%s)", mdb_strerror(rc));
    return ERR_OK;
}

/* Opens (creating) the LMDB environment in dir and loads it into c. */
static int catalog_open_env(catalog *c, const char *dir, err_t *e) {
    if (mkdir(dir, 0755) && errno != EEXIST)
        return err_set(e, ERR_IO, "catalog: mkdir %s: %s", dir, strerror(errno));
    MDB_txn *txn;
    int rc;
    if ((rc = mdb_env_create(&c->env)) || (rc = mdb_env_set_mapsize(c->env, 1u << 30)) ||
        (rc = mdb_env_open(c->env, dir, 0, 0644)) || (rc = mdb_txn_begin(c->env, NULL, 0, &txn)))
        return err_set(e, ERR_INTERNAL, "catalog: open %s: %s", dir, mdb_strerror(rc));
    if ((rc = mdb_dbi_open(txn, NULL, 0, &c->dbi))) {
        mdb_txn_abort(txn);
        return err_set(e, ERR_INTERNAL, "catalog: open %s: %s", dir, mdb_strerror(rc));
    }
    if ((rc = mdb_txn_commit(txn)))
        return err_set(e, ERR_INTERNAL, "catalog: open %s: %s", dir, mdb_strerror(rc));
    return catalog_load(c, e);
}

int catalog_open(const char *dir, catalog **out, err_t *e) {
    catalog *c = calloc(1, sizeof *c);
    if (!c || !(c->ids = idmap_new())) {
        free(c);
        return err_set(e, ERR_NOMEM, "catalog: out of memory");
    }
    pthread_mutex_init(&c->lock, NULL);
    int rc = ERR_OK;
    if (dir) rc = catalog_open_env(c, dir, e);
    if (rc) {
        catalog_close(c);
        return rc;
    }
    *out = c;
    return ERR_OK;
}

void catalog_close(catalog *c) {
    if (!c) return;
    if (c->env) mdb_env_close(c->env);
    pthread_mutex_destroy(&c->lock);
    idmap_free(c->ids);
    free(c->state);
    free(c);
}
