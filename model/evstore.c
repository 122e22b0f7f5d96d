/* evstore: the durable, group-committed LMDB event store.
 *
 * docs/event-store.md describes the layout; in short, one LMDB environment
 * in DIR (data.mdb, lock.mdb) with three named databases:
 *
 *   log      key u64 BE seq -> fixed part, u16 LE user len, user, u16 LE item len, item
 *   by_user  key u16 BE user len, user, u64 BE seq -> fixed part, item
 *   meta     "format_version" -> u32 LE, "next_seq" -> u64 LE,
 *            "applied_at" -> u64 LE (only once evstore_append_at ran)
 *
 * where the fixed part is type u8, ts i64 LE, quantity u32 LE, price f64 LE
 * (21 bytes). Everything is encoded byte by byte, so the files are the same
 * on any host. Big-endian numbers in keys make LMDB's bytewise order the
 * numeric order: the log is in sequence order, and a user's events are one
 * contiguous range of by_user in sequence order.
 *
 * Four rules shape the code:
 *
 * 1. Durability by group commit. Appenders queue a request on their own
 *    stack and sleep; the writer thread takes everything queued, writes it in
 *    one transaction and commits with a synced environment (no MDB_NOSYNC),
 *    then wakes them. Requests that arrive during a commit form the next
 *    batch, so the number of fsyncs adapts to the load by itself.
 * 2. The map grows under an exclusive lock. mdb_env_set_mapsize remaps the
 *    file, which is only allowed when no transaction of this process is
 *    active (LMDB does not check). Every transaction, read or write, holds
 *    map_lock shared; a write that fails with MDB_MAP_FULL is aborted, the
 *    writer takes map_lock exclusive (waiting for running readers), doubles
 *    the map and redoes the whole transaction. The lock prefers writers, so
 *    a stream of readers cannot starve the growth.
 * 3. Another process (recd events export, a second server) may have grown the
 *    map: LMDB then fails a begin with MDB_MAP_RESIZED, and the same
 *    exclusive section adopts the new size (mdb_env_set_mapsize 0).
 * 4. Read transactions are recycled: a finished one is reset (releasing its
 *    snapshot, so it does not hold back page reuse) and kept in a pool that
 *    the next reader renews. With MDB_NOTLS a transaction may move between
 *    threads, so the pool is shared by all the server's workers. */
#include "evstore.h"

#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "utf8.h"

#define EVS_FIXED 21 /* type u8, ts i64, quantity u32, price f64 */
#define EVS_LOG_MAX (EVS_FIXED + 2 + EVSTORE_MAX_ID_LEN + 2 + EVSTORE_MAX_ID_LEN)
#define EVS_KEY_MAX (2 + EVSTORE_MAX_ID_LEN + 8)
#define EVS_MAX_MAP ((size_t)1 << 40) /* growth stops here (ERR_LIMIT) */

#define K_FORMAT "format_version"
#define K_NEXT_SEQ "next_seq"
#define K_APPLIED "applied_at"

/* One evstore_append call waiting for its commit; lives on the caller's
 * stack and is linked into the queue under q_lock. */
typedef struct evstore_req {
    const evstore_event *events;
    size_t n;
    uint64_t at;        /* position in an external log, 0 = none (evstore_append_at) */
    bool skipped;       /* set by the writer: at was applied before, nothing written */
    uint64_t first_seq; /* set by the writer */
    int rc;             /* set by the writer, with err, before done */
    err_t err;
    bool done;
    struct evstore_req *next;
} evstore_req;

struct evstore {
    MDB_env *env;
    MDB_dbi log, by_user, meta;
    size_t max_batch;

    /* Shared by every transaction, exclusive while the map is resized. */
    pthread_rwlock_t map_lock;

    /* Reset read transactions ready for mdb_txn_renew. */
    pthread_mutex_t pool_lock;
    MDB_txn **pool;
    size_t n_pool, cap_pool;

    /* The append queue and the writer thread. */
    pthread_mutex_t q_lock;
    pthread_cond_t q_work; /* writer waits: queue empty */
    pthread_cond_t q_done; /* appenders wait: their request not done */
    evstore_req *head, *tail;
    bool closing;
    uint64_t commits;
    pthread_t writer;
};

/* --- encoding ------------------------------------------------------------ */

static void put_u16le(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32le(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64le(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64be(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint16_t get_u16le(const unsigned char *p) {
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32le(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_u64be(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Writes the fixed part of ev (EVS_FIXED bytes) at p. */
static void evs_put_fixed(unsigned char *p, const evstore_event *ev) {
    uint64_t price;
    memcpy(&price, &ev->price, sizeof price);
    p[0] = (unsigned char)ev->type;
    put_u64le(p + 1, (uint64_t)ev->ts);
    put_u32le(p + 9, ev->quantity);
    put_u64le(p + 13, price);
}

/* Reads the fixed part at p into ev (ids untouched). */
static void evs_get_fixed(const unsigned char *p, evstore_event *ev) {
    uint64_t price = get_u64le(p + 13);
    ev->type = p[0];
    ev->ts = (int64_t)get_u64le(p + 1);
    ev->quantity = get_u32le(p + 9);
    memcpy(&ev->price, &price, sizeof ev->price);
}

/* Encodes the by_user key prefix of a user (u16 BE length, bytes) into key
 * and returns its length. The length prefix, not a terminator, separates
 * users because ids may contain NUL bytes: with "user 0x00 seq" the range of
 * "a" would also hold the keys of "a\0b". Keys of one user are exactly the
 * keys that start with its prefix and are 8 bytes longer. */
static size_t evs_user_prefix(unsigned char *key, const char *user, size_t len) {
    key[0] = (unsigned char)(len >> 8);
    key[1] = (unsigned char)len;
    memcpy(key + 2, user, len);
    return 2 + len;
}

/* Decodes a log value into ev (ids point into v). Returns false when the
 * value is not a well-formed record. */
static bool evs_decode_log(const MDB_val *v, evstore_event *ev) {
    const unsigned char *p = v->mv_data;
    size_t n = v->mv_size;
    if (n < EVS_FIXED + 4) return false;
    evs_get_fixed(p, ev);
    size_t ulen = get_u16le(p + EVS_FIXED);
    if (n < EVS_FIXED + 4 + ulen) return false;
    size_t ilen = get_u16le(p + EVS_FIXED + 2 + ulen);
    if (n != EVS_FIXED + 4 + ulen + ilen) return false;
    ev->user_id = (const char *)p + EVS_FIXED + 2;
    ev->user_len = ulen;
    ev->item_id = (const char *)p + EVS_FIXED + 4 + ulen;
    ev->item_len = ilen;
    return true;
}

/* --- errors, locks and the map ------------------------------------------- */

/* Maps an LMDB (or errno) return code to a recd error naming what failed. */
static int evs_mdb_err(err_t *e, int rc, const char *what) {
    int code;
    switch (rc) {
    case MDB_INVALID:
    case MDB_INCOMPATIBLE:
    case MDB_CORRUPTED:
    case MDB_VERSION_MISMATCH:
        code = ERR_FORMAT;
        break;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_READERS_FULL:
        code = ERR_LIMIT;
        break;
    case ENOMEM:
        code = ERR_NOMEM;
        break;
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case EACCES:
    case EROFS:
        code = ERR_IO;
        break;
    default:
        code = ERR_INTERNAL;
    }
    return err_set(e, code, "evstore: %s: %s", what, mdb_strerror(rc));
}

/* The current map size (the caller holds map_lock in either mode). */
static size_t evs_mapsize(evstore *s) {
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    return info.me_mapsize;
}

/* Resizes the map with no transaction of this process running: to twice
 * `seen` when grow is set (unless another thread already grew it past
 * `seen`), else to the size another process recorded (MDB_MAP_RESIZED).
 * Returns ERR_OK, ERR_LIMIT (EVS_MAX_MAP reached), ERR_NOMEM/ERR_INTERNAL. */
static int evs_resize(evstore *s, bool grow, size_t seen, err_t *e) {
    int rc = 0;
    pthread_rwlock_wrlock(&s->map_lock);
    size_t now = evs_mapsize(s);
    if (!grow)
        rc = mdb_env_set_mapsize(s->env, 0);
    else if (now <= seen) {
        if (seen >= EVS_MAX_MAP) {
            pthread_rwlock_unlock(&s->map_lock);
            return err_set(e, ERR_LIMIT, "evstore: the map is full at its maximum of %zu bytes",
                           seen);
        }
        rc = mdb_env_set_mapsize(s->env, seen * 2 < EVS_MAX_MAP ? seen * 2 : EVS_MAX_MAP);
    }
    pthread_rwlock_unlock(&s->map_lock);
    return rc ? evs_mdb_err(e, rc, "resize the map") : ERR_OK;
}

/* A write: runs in a write transaction, returns 0 or an LMDB error code and
 * then points *what at the operation that failed. It may run several times
 * (after map growth), so it must start from scratch each time. */
typedef int (*evs_write_fn)(evstore *s, MDB_txn *txn, void *ctx, const char **what);

/* Runs fn in a write transaction and commits it durably, growing the map and
 * redoing fn when the data does not fit. Returns ERR_OK or the mapped LMDB
 * error (nothing written). */
static int evs_write(evstore *s, evs_write_fn fn, void *ctx, err_t *e) {
    for (;;) {
        pthread_rwlock_rdlock(&s->map_lock);
        size_t seen = evs_mapsize(s);
        const char *what = "begin a write transaction";
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (!rc) {
            rc = fn(s, txn, ctx, &what);
            if (rc)
                mdb_txn_abort(txn);
            else {
                what = "commit";
                rc = mdb_txn_commit(txn); /* frees txn also on failure */
            }
        }
        pthread_rwlock_unlock(&s->map_lock);
        /* Commit can also run out of map (it writes the freelist). */
        if (rc == MDB_MAP_FULL || rc == MDB_MAP_RESIZED) {
            int r = evs_resize(s, rc == MDB_MAP_FULL, seen, e);
            if (r) return r;
            continue;
        }
        return rc ? evs_mdb_err(e, rc, what) : ERR_OK;
    }
}

/* Begins (or renews from the pool) a read transaction and takes map_lock
 * shared until evs_read_end. Returns ERR_OK or an error (lock not held). */
static int evs_read_begin(evstore *s, MDB_txn **txn, err_t *e) {
    for (;;) {
        pthread_rwlock_rdlock(&s->map_lock);
        pthread_mutex_lock(&s->pool_lock);
        MDB_txn *t = s->n_pool ? s->pool[--s->n_pool] : NULL;
        pthread_mutex_unlock(&s->pool_lock);
        int rc;
        if (t) {
            if ((rc = mdb_txn_renew(t))) mdb_txn_abort(t);
        } else
            rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
        if (!rc) {
            *txn = t;
            return ERR_OK;
        }
        pthread_rwlock_unlock(&s->map_lock);
        if (rc != MDB_MAP_RESIZED) return evs_mdb_err(e, rc, "begin a read transaction");
        int r = evs_resize(s, false, 0, e);
        if (r) return r;
    }
}

/* Ends a read transaction of evs_read_begin: resets it into the pool (or
 * aborts it when the pool cannot grow) and releases map_lock. */
static void evs_read_end(evstore *s, MDB_txn *txn) {
    mdb_txn_reset(txn);
    pthread_mutex_lock(&s->pool_lock);
    if (s->n_pool == s->cap_pool) {
        size_t cap = s->cap_pool ? 2 * s->cap_pool : 8;
        MDB_txn **p = realloc(s->pool, cap * sizeof *p);
        if (p) {
            s->pool = p;
            s->cap_pool = cap;
        }
    }
    bool kept = s->n_pool < s->cap_pool;
    if (kept) s->pool[s->n_pool++] = txn;
    pthread_mutex_unlock(&s->pool_lock);
    if (!kept) mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->map_lock);
}

/* Reads next_seq in txn. Returns 0 or an LMDB code (MDB_CORRUPTED when the
 * value is missing or has the wrong size). */
static int evs_next_seq(evstore *s, MDB_txn *txn, uint64_t *seq) {
    MDB_val k = {sizeof K_NEXT_SEQ - 1, K_NEXT_SEQ}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND || (!rc && v.mv_size != 8)) return MDB_CORRUPTED;
    if (!rc) *seq = get_u64le(v.mv_data);
    return rc;
}

/* Reads the applied position in txn into *at (0 when none was recorded).
 * Returns 0 or an LMDB code. */
static int evs_applied(evstore *s, MDB_txn *txn, uint64_t *at) {
    MDB_val k = {sizeof K_APPLIED - 1, K_APPLIED}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    *at = 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (!rc && v.mv_size != 8) return MDB_CORRUPTED;
    if (!rc) *at = get_u64le(v.mv_data);
    return rc;
}

static int evs_put_applied(evstore *s, MDB_txn *txn, uint64_t at) {
    unsigned char b[8];
    put_u64le(b, at);
    MDB_val k = {sizeof K_APPLIED - 1, K_APPLIED}, v = {8, b};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

/* --- open and close ------------------------------------------------------ */

void evstore_options_init(evstore_options *o) {
    o->map_size = (size_t)1 << 30;
    o->max_batch_events = 8192;
    o->max_readers = 256;
}

/* Write fn of open: opens (creating) the three databases and initializes
 * the meta of a new store. Refuses (MDB_INCOMPATIBLE) an environment whose
 * main database holds anything but them: some other LMDB file, such as a
 * model version. */
static int evs_init(evstore *s, MDB_txn *txn, void *ctx, const char **what) {
    (void)ctx;
    MDB_dbi main;
    MDB_cursor *c;
    MDB_val k, v;
    *what = "open the main database";
    int rc = mdb_dbi_open(txn, NULL, 0, &main);
    if (!rc) rc = mdb_cursor_open(txn, main, &c);
    if (rc) return rc;
    while (!(rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))) {
        static const char *const names[] = {"by_user", "log", "meta"};
        bool ours = false;
        for (int i = 0; i < 3; i++)
            ours |= k.mv_size == strlen(names[i]) && memcmp(k.mv_data, names[i], k.mv_size) == 0;
        if (!ours) {
            mdb_cursor_close(c);
            *what = "not an event store (unknown key in the main database)";
            return MDB_INCOMPATIBLE;
        }
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) return rc;

    *what = "open the databases";
    if ((rc = mdb_dbi_open(txn, "log", MDB_CREATE, &s->log)) ||
        (rc = mdb_dbi_open(txn, "by_user", MDB_CREATE, &s->by_user)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)))
        return rc;
    k = (MDB_val){sizeof K_FORMAT - 1, K_FORMAT};
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc != MDB_NOTFOUND) return rc; /* an existing store: open checks its version */
    MDB_stat st;
    if ((rc = mdb_stat(txn, s->log, &st))) return rc;
    if (st.ms_entries) {
        *what = "events without a format version";
        return MDB_CORRUPTED;
    }
    unsigned char b[8];
    *what = "initialize meta";
    put_u32le(b, EVSTORE_FORMAT_VERSION);
    v = (MDB_val){4, b};
    if ((rc = mdb_put(txn, s->meta, &k, &v, 0))) return rc;
    put_u64le(b, 1);
    k = (MDB_val){sizeof K_NEXT_SEQ - 1, K_NEXT_SEQ};
    v = (MDB_val){8, b};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

/* Checks format_version of an initialized store. */
static int evs_check_version(evstore *s, const char *dir, err_t *e) {
    MDB_txn *txn;
    int rc = evs_read_begin(s, &txn, e);
    if (rc) return rc;
    MDB_val k = {sizeof K_FORMAT - 1, K_FORMAT}, v;
    uint64_t seq;
    int mrc = mdb_get(txn, s->meta, &k, &v);
    if (mrc)
        rc = evs_mdb_err(e, mrc, "read format_version");
    else if (v.mv_size != 4)
        rc = err_set(e, ERR_FORMAT, "evstore: %s: format_version has %zu bytes", dir, v.mv_size);
    else if (get_u32le(v.mv_data) != EVSTORE_FORMAT_VERSION)
        rc = err_set(e, ERR_VERSION, "evstore: %s: format version %u, this recd reads %u", dir,
                     get_u32le(v.mv_data), EVSTORE_FORMAT_VERSION);
    else if ((mrc = evs_next_seq(s, txn, &seq)))
        rc = evs_mdb_err(e, mrc, "read next_seq");
    evs_read_end(s, txn);
    return rc;
}

static void *evs_writer_main(void *arg);

int evstore_open(const char *dir, const evstore_options *o, evstore **out, err_t *e) {
    evstore_options def;
    if (!o) {
        evstore_options_init(&def);
        o = &def;
    }
    if (!dir || !*dir) return err_set(e, ERR_INVALID, "evstore: no directory");
    if (mkdir(dir, 0755) && errno != EEXIST)
        return err_set(e, ERR_IO, "evstore: mkdir %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return err_set(e, ERR_IO, "evstore: %s is not a directory", dir);

    evstore *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "evstore: out of memory");
    s->max_batch = o->max_batch_events ? o->max_batch_events : 1;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->map_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_mutex_init(&s->q_lock, NULL);
    pthread_cond_init(&s->q_work, NULL);
    pthread_cond_init(&s->q_done, NULL);

    int rc = mdb_env_create(&s->env);
    if (rc) {
        s->env = NULL;
        rc = evs_mdb_err(e, rc, "create the environment");
    }
    if (!rc && ((rc = mdb_env_set_maxdbs(s->env, 3)) ||
                (rc = mdb_env_set_maxreaders(s->env, o->max_readers ? o->max_readers : 1)) ||
                (rc = mdb_env_set_mapsize(s->env, o->map_size))))
        rc = evs_mdb_err(e, rc, "configure the environment");
    /* MDB_NOTLS: read transactions are pooled and move between threads. */
    if (!rc && (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0644))) rc = evs_mdb_err(e, rc, dir);
    /* Reader slots of processes killed while reading would otherwise stay
     * taken and pin old pages for ever. */
    int dead;
    if (!rc && (rc = mdb_reader_check(s->env, &dead))) rc = evs_mdb_err(e, rc, "reader check");
    if (!rc) rc = evs_write(s, evs_init, NULL, e);
    if (!rc) rc = evs_check_version(s, dir, e);
    if (!rc && pthread_create(&s->writer, NULL, evs_writer_main, s))
        rc = err_set(e, ERR_INTERNAL, "evstore: cannot start the writer thread");
    if (rc) {
        err_wrap(e, "open %s", dir);
        s->closing = true; /* no writer to stop */
        evstore_close(s);
        return rc;
    }
    *out = s;
    return ERR_OK;
}

void evstore_close(evstore *s) {
    if (!s) return;
    if (!s->closing) {
        pthread_mutex_lock(&s->q_lock);
        s->closing = true;
        pthread_cond_signal(&s->q_work);
        pthread_mutex_unlock(&s->q_lock);
        pthread_join(s->writer, NULL);
    }
    for (size_t i = 0; i < s->n_pool; i++)
        mdb_txn_abort(s->pool[i]);
    free(s->pool);
    if (s->env) mdb_env_close(s->env);
    pthread_cond_destroy(&s->q_done);
    pthread_cond_destroy(&s->q_work);
    pthread_mutex_destroy(&s->q_lock);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_rwlock_destroy(&s->map_lock);
    free(s);
}

/* --- appending ----------------------------------------------------------- */

/* Write fn of a group commit: gives the requests of the batch (a NULL
 * terminated list) consecutive sequence numbers and writes their events to
 * log and by_user, then the new next_seq. */
static int evs_write_batch(evstore *s, MDB_txn *txn, void *ctx, const char **what) {
    uint64_t seq;
    *what = "read next_seq";
    int rc = evs_next_seq(s, txn, &seq);
    if (rc) return rc;
    uint64_t applied, applied_was;
    *what = "read applied_at";
    if ((rc = evs_applied(s, txn, &applied))) return rc;
    applied_was = applied;
    unsigned char key[EVS_KEY_MAX], val[EVS_LOG_MAX], seqkey[8];
    for (evstore_req *r = ctx; r; r = r->next) {
        /* A position already applied is skipped: a replayed log is applied
         * once. */
        r->skipped = r->at && r->at <= applied;
        r->first_seq = r->skipped ? 0 : seq;
        if (r->skipped) continue;
        if (r->at) applied = r->at;
        for (size_t i = 0; i < r->n; i++, seq++) {
            const evstore_event *ev = &r->events[i];
            put_u64be(seqkey, seq);
            evs_put_fixed(val, ev);
            put_u16le(val + EVS_FIXED, (uint16_t)ev->user_len);
            memcpy(val + EVS_FIXED + 2, ev->user_id, ev->user_len);
            put_u16le(val + EVS_FIXED + 2 + ev->user_len, (uint16_t)ev->item_len);
            memcpy(val + EVS_FIXED + 4 + ev->user_len, ev->item_id, ev->item_len);
            MDB_val k = {8, seqkey}, v = {EVS_FIXED + 4 + ev->user_len + ev->item_len, val};
            *what = "put into log";
            /* Sequence numbers only grow: appending skips the search. */
            if ((rc = mdb_put(txn, s->log, &k, &v, MDB_APPEND))) return rc;
            size_t plen = evs_user_prefix(key, ev->user_id, ev->user_len);
            put_u64be(key + plen, seq);
            memcpy(val + EVS_FIXED, ev->item_id, ev->item_len);
            k = (MDB_val){plen + 8, key};
            v = (MDB_val){EVS_FIXED + ev->item_len, val};
            *what = "put into by_user";
            if ((rc = mdb_put(txn, s->by_user, &k, &v, 0))) return rc;
        }
    }
    *what = "write applied_at";
    if (applied != applied_was && (rc = evs_put_applied(s, txn, applied))) return rc;
    unsigned char b[8];
    put_u64le(b, seq);
    MDB_val k = {sizeof K_NEXT_SEQ - 1, K_NEXT_SEQ}, v = {8, b};
    *what = "write next_seq";
    return mdb_put(txn, s->meta, &k, &v, 0);
}

/* The writer thread: takes whole requests from the queue until the batch
 * holds max_batch events, commits them in one synced transaction, wakes
 * their callers, repeats. Exits when closing and the queue is empty, so
 * what was queued before evstore_close is committed. */
static void *evs_writer_main(void *arg) {
    evstore *s = arg;
    pthread_mutex_lock(&s->q_lock);
    for (;;) {
        while (!s->head && !s->closing)
            pthread_cond_wait(&s->q_work, &s->q_lock);
        if (!s->head) break;
        evstore_req *batch = s->head, *last = batch;
        size_t n = batch->n;
        while (last->next && n < s->max_batch) {
            last = last->next;
            n += last->n;
        }
        s->head = last->next;
        if (!s->head) s->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&s->q_lock);

        err_t err = {0, ""};
        int rc = evs_write(s, evs_write_batch, batch, &err);

        pthread_mutex_lock(&s->q_lock);
        if (!rc) s->commits++;
        for (evstore_req *r = batch, *next; r; r = next) {
            next = r->next; /* r belongs to its caller once done is set */
            r->rc = rc;
            if (rc) r->err = err;
            r->done = true;
        }
        pthread_cond_broadcast(&s->q_done);
    }
    pthread_mutex_unlock(&s->q_lock);
    return NULL;
}

/* Checks one id: 1..EVSTORE_MAX_ID_LEN bytes of UTF-8. */
static bool evs_id_ok(const char *id, size_t len) {
    return id && len >= 1 && len <= EVSTORE_MAX_ID_LEN && utf8_valid(id, len);
}

/* evstore_append and evstore_append_at: at 0 = no position. */
static int evs_append(evstore *s, const evstore_event *events, size_t n, uint64_t at,
                      uint64_t *first_seq, int *applied, err_t *e) {
    if (first_seq) *first_seq = 0;
    if (applied) *applied = 0;
    if (n == 0 && !at) return ERR_OK;
    if (!events && n) return err_set(e, ERR_INVALID, "evstore: no events");
    /* Validate everything before queueing: a bad event must fail its own
     * call only, never the group commit it would share with others. */
    for (size_t i = 0; i < n; i++) {
        const evstore_event *ev = &events[i];
        const char *bad = NULL;
        if (!evs_id_ok(ev->user_id, ev->user_len))
            bad = "user id must be 1 to 256 bytes of UTF-8";
        else if (!evs_id_ok(ev->item_id, ev->item_len))
            bad = "item id must be 1 to 256 bytes of UTF-8";
        else if (!ev_type_known(ev->type))
            bad = "unknown event type";
        else if (ev->ts < 0)
            bad = "negative timestamp";
        else if (!isfinite(ev->price) || ev->price < 0)
            bad = "price must be finite and >= 0";
        if (bad) return err_set(e, ERR_INVALID, "evstore: event %zu: %s", i, bad);
    }
    evstore_req r = {.events = events, .n = n, .at = at};
    pthread_mutex_lock(&s->q_lock);
    if (s->tail)
        s->tail->next = &r;
    else
        s->head = &r;
    s->tail = &r;
    pthread_cond_signal(&s->q_work);
    while (!r.done)
        pthread_cond_wait(&s->q_done, &s->q_lock);
    pthread_mutex_unlock(&s->q_lock);
    if (r.rc) {
        if (e) *e = r.err;
        return r.rc;
    }
    if (first_seq) *first_seq = r.first_seq;
    if (applied) *applied = !r.skipped;
    return ERR_OK;
}

int evstore_append(evstore *s, const evstore_event *events, size_t n, uint64_t *first_seq,
                   err_t *e) {
    return evs_append(s, events, n, 0, first_seq, NULL, e);
}

int evstore_append_at(evstore *s, const evstore_event *events, size_t n, uint64_t at, int *applied,
                      err_t *e) {
    if (!at) return err_set(e, ERR_INVALID, "evstore: position 0 is not a position");
    return evs_append(s, events, n, at, NULL, applied, e);
}

int evstore_applied(evstore *s, uint64_t *at, err_t *e) {
    MDB_txn *txn;
    int rc = evs_read_begin(s, &txn, e);
    if (rc) return rc;
    int mrc = evs_applied(s, txn, at);
    evs_read_end(s, txn);
    return mrc ? evs_mdb_err(e, mrc, "read applied_at") : ERR_OK;
}

uint64_t evstore_commits(evstore *s) {
    pthread_mutex_lock(&s->q_lock);
    uint64_t n = s->commits;
    pthread_mutex_unlock(&s->q_lock);
    return n;
}

/* --- reading ------------------------------------------------------------- */

/* Decodes one by_user record (key k of a user prefix plen bytes long, user
 * id len bytes) and passes it to fn unless it is not newer than since_ts.
 * Sets *stop when fn asks to stop. Returns ERR_FORMAT for a damaged record. */
static int evs_visit_user_record(const MDB_val *k, const MDB_val *v, size_t plen, size_t len,
                                 int64_t since_ts, evstore_visit_fn fn, void *ctx, int *stop,
                                 err_t *e) {
    if (v->mv_size < EVS_FIXED) return err_set(e, ERR_FORMAT, "evstore: damaged by_user record");
    evstore_event ev;
    evs_get_fixed(v->mv_data, &ev);
    if (ev.ts <= since_ts) return ERR_OK;
    ev.user_id = (const char *)k->mv_data + 2;
    ev.user_len = len;
    ev.item_id = (const char *)v->mv_data + EVS_FIXED;
    ev.item_len = v->mv_size - EVS_FIXED;
    *stop = fn(ctx, get_u64be((const unsigned char *)k->mv_data + plen), &ev) != 0;
    return ERR_OK;
}

int evstore_user_events(evstore *s, const char *user, size_t len, int64_t since_ts,
                        evstore_visit_fn fn, void *ctx, err_t *e) {
    if (!user || len == 0 || len > EVSTORE_MAX_ID_LEN)
        return err_set(e, ERR_INVALID, "evstore: user id must be 1 to 256 bytes");
    unsigned char prefix[EVS_KEY_MAX];
    size_t plen = evs_user_prefix(prefix, user, len);
    MDB_txn *txn;
    int rc = evs_read_begin(s, &txn, e);
    if (rc) return rc;
    MDB_cursor *c;
    int mrc = mdb_cursor_open(txn, s->by_user, &c);
    if (mrc) {
        evs_read_end(s, txn);
        return evs_mdb_err(e, mrc, "open a cursor");
    }
    MDB_val k = {plen, prefix}, v;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !mrc;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != plen + 8 || memcmp(k.mv_data, prefix, plen) != 0) break;
        int stop = 0;
        if ((rc = evs_visit_user_record(&k, &v, plen, len, since_ts, fn, ctx, &stop, e)) || stop)
            break;
    }
    if (mrc && mrc != MDB_NOTFOUND) rc = evs_mdb_err(e, mrc, "read by_user");
    mdb_cursor_close(c);
    evs_read_end(s, txn);
    return rc;
}

int evstore_user_recent(evstore *s, const char *user, size_t len, int64_t since_ts, size_t max_read,
                        evstore_visit_fn fn, void *ctx, int *truncated, err_t *e) {
    if (truncated) *truncated = 0;
    if (!user || len == 0 || len > EVSTORE_MAX_ID_LEN)
        return err_set(e, ERR_INVALID, "evstore: user id must be 1 to 256 bytes");
    /* Keys are prefix + seq (big-endian): the user's last key is below
     * prefix + 8 bytes of 0xff, so the scan starts there and walks back. */
    unsigned char prefix[EVS_KEY_MAX];
    size_t plen = evs_user_prefix(prefix, user, len);
    memset(prefix + plen, 0xff, 8);
    MDB_txn *txn;
    int rc = evs_read_begin(s, &txn, e);
    if (rc) return rc;
    MDB_cursor *c;
    int mrc = mdb_cursor_open(txn, s->by_user, &c);
    if (mrc) {
        evs_read_end(s, txn);
        return evs_mdb_err(e, mrc, "open a cursor");
    }
    MDB_val k = {plen + 8, prefix}, v;
    mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    mrc = mrc == MDB_NOTFOUND ? mdb_cursor_get(c, &k, &v, MDB_LAST)
          : mrc               ? mrc
                              : mdb_cursor_get(c, &k, &v, MDB_PREV);
    for (size_t read = 0; !mrc; mrc = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
        if (k.mv_size != plen + 8 || memcmp(k.mv_data, prefix, plen) != 0) break;
        if (read++ == max_read) {
            if (truncated) *truncated = 1;
            break;
        }
        int stop = 0;
        if ((rc = evs_visit_user_record(&k, &v, plen, len, since_ts, fn, ctx, &stop, e)) || stop)
            break;
    }
    if (mrc && mrc != MDB_NOTFOUND) rc = evs_mdb_err(e, mrc, "read by_user");
    mdb_cursor_close(c);
    evs_read_end(s, txn);
    return rc;
}

int evstore_scan(evstore *s, uint64_t from_seq, evstore_visit_fn fn, void *ctx, err_t *e) {
    MDB_txn *txn;
    int rc = evs_read_begin(s, &txn, e);
    if (rc) return rc;
    MDB_cursor *c;
    int mrc = mdb_cursor_open(txn, s->log, &c);
    if (mrc) {
        evs_read_end(s, txn);
        return evs_mdb_err(e, mrc, "open a cursor");
    }
    unsigned char start[8];
    put_u64be(start, from_seq);
    MDB_val k = {8, start}, v;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); !mrc;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        evstore_event ev;
        if (k.mv_size != 8 || !evs_decode_log(&v, &ev)) {
            rc = err_set(e, ERR_FORMAT, "evstore: damaged log record");
            break;
        }
        if (fn(ctx, get_u64be(k.mv_data), &ev)) break;
    }
    if (mrc && mrc != MDB_NOTFOUND) rc = evs_mdb_err(e, mrc, "read log");
    mdb_cursor_close(c);
    evs_read_end(s, txn);
    return rc;
}

int evstore_count(evstore *s, uint64_t *n, uint64_t *next_seq, err_t *e) {
    MDB_txn *txn;
    int rc = evs_read_begin(s, &txn, e);
    if (rc) return rc;
    MDB_stat st;
    uint64_t seq = 0;
    int mrc = mdb_stat(txn, s->log, &st);
    if (!mrc) mrc = evs_next_seq(s, txn, &seq);
    evs_read_end(s, txn);
    if (mrc) return evs_mdb_err(e, mrc, "count");
    *n = st.ms_entries;
    if (next_seq) *next_seq = seq;
    return ERR_OK;
}

/* State of evstore_load's visitor. */
typedef struct evs_load_ctx {
    const float *weights;
    ev_set *out;
    size_t added, future;
    int64_t latest; /* the last time accepted */
    int rc;
    err_t *e;
} evs_load_ctx;

int evstore_add_to_history(ev_set *out, const evstore_event *ev, const float weights[EV_TYPE_END],
                           int64_t latest, int *outcome, err_t *e) {
    float w = ev->type < EV_TYPE_END ? weights[ev->type] : 0;
    *outcome = EVSTORE_SKIPPED_WEIGHT;
    if (w == 0) return ERR_OK;
    *outcome = EVSTORE_SKIPPED_DATE;
    if (ev->ts > latest) return ERR_OK;
    /* The proto cannot tell an absent price from 0; ev_set marks an
     * unknown price NAN. */
    ev_event fields = {.ts = ev->ts,
                       .quantity = (float)ev->quantity,
                       .price = ev->price > 0 ? (float)ev->price : NAN,
                       .weight = w,
                       .type = (uint8_t)ev->type,
                       .recorded = 1};
    int rc =
        ev_set_add_event(out, ev->user_id, ev->user_len, ev->item_id, ev->item_len, &fields, e);
    if (!rc) *outcome = EVSTORE_ADDED;
    return rc;
}

static int evs_load_visit(void *arg, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    evs_load_ctx *c = arg;
    int outcome;
    c->rc = evstore_add_to_history(c->out, ev, c->weights, c->latest, &outcome, c->e);
    if (c->rc) return 1;
    c->added += outcome == EVSTORE_ADDED;
    c->future += outcome == EVSTORE_SKIPPED_DATE;
    return 0;
}

int evstore_load(evstore *s, const float weights[EV_TYPE_END], ev_set *out, size_t *added,
                 size_t *future, err_t *e) {
    for (int t = 1; t < EV_TYPE_END; t++)
        if (!isfinite(weights[t]) || weights[t] < 0)
            return err_set(e, ERR_INVALID, "evstore: weight of type %d must be finite and >= 0", t);
    evs_load_ctx c = {.weights = weights,
                      .out = out,
                      .latest = (int64_t)time(NULL) + EVSTORE_MAX_AHEAD_S,
                      .e = e};
    int rc = evstore_scan(s, 0, evs_load_visit, &c, e);
    if (!rc) rc = c.rc;
    if (added) *added = c.added;
    if (future) *future = c.future;
    return rc;
}

/* --- forgetting ---------------------------------------------------------- */

typedef struct evs_forget_ctx {
    const char *user;
    size_t len;
    uint64_t at; /* 0 = none */
    bool skipped;
    uint64_t deleted;
} evs_forget_ctx;

/* Write fn of evstore_forget_user: deletes the user's by_user range and the
 * log records its keys name. */
static int evs_write_forget(evstore *s, MDB_txn *txn, void *ctx, const char **what) {
    evs_forget_ctx *f = ctx;
    unsigned char prefix[EVS_KEY_MAX];
    size_t plen = evs_user_prefix(prefix, f->user, f->len);
    MDB_cursor *c;
    f->deleted = 0;
    f->skipped = false;
    int rc;
    if (f->at) {
        uint64_t applied;
        *what = "read applied_at";
        if ((rc = evs_applied(s, txn, &applied))) return rc;
        if ((f->skipped = f->at <= applied)) return 0;
        *what = "write applied_at";
        if ((rc = evs_put_applied(s, txn, f->at))) return rc;
    }
    *what = "open a cursor";
    rc = mdb_cursor_open(txn, s->by_user, &c);
    if (rc) return rc;
    *what = "delete";
    for (;;) {
        /* Seek again after every delete instead of trusting the position
         * a deleted cursor is left at. */
        MDB_val k = {plen, prefix}, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc || k.mv_size != plen + 8 || memcmp(k.mv_data, prefix, plen) != 0) break;
        unsigned char seq[8];
        memcpy(seq, (const unsigned char *)k.mv_data + plen, 8);
        MDB_val lk = {8, seq};
        rc = mdb_del(txn, s->log, &lk, NULL);
        if (rc && rc != MDB_NOTFOUND) break;
        if ((rc = mdb_cursor_del(c, 0))) break;
        f->deleted++;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int evstore_forget_user(evstore *s, const char *user, size_t len, uint64_t *deleted, err_t *e) {
    if (!user || len == 0 || len > EVSTORE_MAX_ID_LEN)
        return err_set(e, ERR_INVALID, "evstore: user id must be 1 to 256 bytes");
    evs_forget_ctx f = {user, len, 0, false, 0};
    int rc = evs_write(s, evs_write_forget, &f, e);
    if (deleted) *deleted = rc ? 0 : f.deleted;
    return rc;
}

int evstore_forget_user_at(evstore *s, const char *user, size_t len, uint64_t at, uint64_t *deleted,
                           err_t *e) {
    if (!user || len == 0 || len > EVSTORE_MAX_ID_LEN)
        return err_set(e, ERR_INVALID, "evstore: user id must be 1 to 256 bytes");
    if (!at) return err_set(e, ERR_INVALID, "evstore: position 0 is not a position");
    evs_forget_ctx f = {user, len, at, false, 0};
    int rc = evs_write(s, evs_write_forget, &f, e);
    if (deleted) *deleted = rc ? 0 : f.deleted;
    return rc;
}
