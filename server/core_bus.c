/* core_bus: the core's writes on a cluster (recd serve --bus). A write RPC
 * is checked as on one server, then, instead of being stored here, encoded
 * and published on the bus (bus.h); it is answered once JetStream
 * acknowledged it and this replica applied it (read your own writes). Every
 * replica applies the stream, in order, into its own stores: each store
 * records the stream sequence of what it applied in the same LMDB
 * transaction as the data (evstore_append_at, idstate_put_at), and the
 * applier restarts from the highest sequence any store recorded, so a
 * replica killed at any moment applies nothing twice and loses nothing.
 *
 * The messages are busmsg.h's. Records are published as stored
 * (timestamps and quantities filled in), so every replica stores the same. */
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "busmsg.h"
#include "core_int.h"
#include "log.h"
#include "utf8.h"

#define BUS_APPLY_WAIT_S 10.0 /* how long a write waits for its own replica to apply it */

/* --- publishing -------------------------------------------------------------- */

/* The message id: the op and two FNV-1a hashes of the message, so that the
 * same write sent twice (a client's or the balancer's retry) is the same
 * message and JetStream stores it once. */
static void msg_id(const busmsg_writer *w, char out[BUS_MSG_ID_MAX]) {
    uint64_t h1 = 14695981039346656037ull, h2 = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < w->n; i++) {
        h1 = (h1 ^ w->p[i]) * 1099511628211ull;
        h2 = (h2 ^ w->p[i]) * 0x100000001b3ull + (h2 >> 29);
    }
    snprintf(out, BUS_MSG_ID_MAX, "recd-%u-%016llx%016llx", (unsigned)w->p[1],
             (unsigned long long)h1, (unsigned long long)h2);
}

/* Publishes w (freeing it), waits for the ack and for this replica to apply
 * it; *seq (may be NULL) gets its sequence. */
static int publish(core *c, busmsg_writer *w, uint64_t *seq, err_t *e) {
    uint64_t s = 0;
    int rc;
    if (w->failed)
        rc = err_set(e, ERR_NOMEM, "out of memory encoding the write");
    else {
        char id[BUS_MSG_ID_MAX];
        msg_id(w, id);
        rc = bus_publish(c->bus, w->p, w->n, id, &s, e);
    }
    free(w->p);
    if (!rc) rc = bus_wait_applied(c->bus, s, BUS_APPLY_WAIT_S, e);
    if (seq) *seq = s;
    return rc;
}

int core__bus_records(core *c, evstore *store, const evstore_event *good, size_t n, err_t *e) {
    if (!n) return ERR_OK;
    busmsg_writer w = {0};
    busmsg_begin(&w, store == c->events ? BUSMSG_EVENTS : BUSMSG_FEEDBACK);
    busmsg_put_u(&w, n, 4);
    for (size_t i = 0; i < n; i++)
        busmsg_put_record(&w, &good[i]);
    return publish(c, &w, NULL, e);
}

int core__bus_availability(core *c, const core_availability *items, size_t n, err_t *e) {
    busmsg_writer w = {0};
    busmsg_begin(&w, BUSMSG_AVAILABILITY);
    busmsg_put_u(&w, n, 4);
    for (size_t i = 0; i < n; i++) {
        busmsg_put_str(&w, items[i].item_id, strlen(items[i].item_id));
        busmsg_put_u(&w, items[i].available != 0, 1);
    }
    return publish(c, &w, NULL, e);
}

int core__bus_boosts(core *c, const core_boost *boosts, size_t n, err_t *e) {
    busmsg_writer w = {0};
    busmsg_begin(&w, BUSMSG_BOOSTS);
    busmsg_put_u(&w, n, 4);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &boosts[i].multiplier, 4);
        busmsg_put_str(&w, boosts[i].item_id, strlen(boosts[i].item_id));
        busmsg_put_u(&w, bits, 4);
    }
    return publish(c, &w, NULL, e);
}

int core__bus_forget(core *c, const char *user_id, uint64_t *events_deleted, err_t *e) {
    busmsg_writer w = {0};
    busmsg_begin(&w, BUSMSG_FORGET);
    busmsg_put_str(&w, user_id, strlen(user_id));
    uint64_t seq;
    int rc = publish(c, &w, &seq, e);
    *events_deleted = 0;
    if (rc) return rc;
    /* What this replica's apply deleted, if it is still in the ring. */
    pthread_mutex_lock(&c->bus_forgets_lock);
    for (size_t i = 0; i < CORE_BUS_FORGETS; i++)
        if (c->bus_forgets[i].seq == seq) *events_deleted = c->bus_forgets[i].deleted;
    pthread_mutex_unlock(&c->bus_forgets_lock);
    return ERR_OK;
}

int core__bus_personalization(core *c, const char *user_id, int opted_out, err_t *e) {
    busmsg_writer w = {0};
    busmsg_begin(&w, BUSMSG_PERSONALIZATION);
    busmsg_put_str(&w, user_id, strlen(user_id));
    busmsg_put_u(&w, opted_out != 0, 1);
    return publish(c, &w, NULL, e);
}

int core__bus_experiment(core *c, const unsigned char *state, err_t *e) {
    busmsg_writer w = {0};
    busmsg_begin(&w, BUSMSG_EXPERIMENT);
    busmsg_put_bytes(&w, state, EXP_STATE_BYTES);
    return publish(c, &w, NULL, e);
}

int core__bus_items(core *c, const catalog_item *items, size_t n, err_t *e) {
    busmsg_writer w = {0};
    busmsg_begin(&w, BUSMSG_ITEMS);
    busmsg_put_u(&w, n, 4);
    for (size_t i = 0; i < n; i++) {
        const catalog_item *it = &items[i];
        busmsg_put_str(&w, it->id, strlen(it->id));
        busmsg_put_u(&w, it->n_categories, 1);
        for (size_t k = 0; k < it->n_categories; k++)
            busmsg_put_str(&w, it->categories[k], strlen(it->categories[k]));
        busmsg_put_u(&w, it->n_labels, 1);
        for (size_t k = 0; k < it->n_labels; k++)
            busmsg_put_str(&w, it->labels[k], strlen(it->labels[k]));
        busmsg_put_str(&w, it->title, strlen(it->title));
        busmsg_put_f64(&w, it->price);
        busmsg_put_u(&w, (uint64_t)it->published, 8);
    }
    return publish(c, &w, NULL, e);
}

/* --- applying ---------------------------------------------------------------- */

/* Records (events or feedback) into their store. Events of forgotten
 * members are dropped: a replica may have checked them before it applied
 * the ForgetUser that comes first in the stream. */
static int apply_records(core *c, uint64_t seq, int op, busmsg_reader *r, err_t *e) {
    evstore *store = op == BUSMSG_EVENTS ? c->events : c->feedback;
    size_t n = (size_t)busmsg_get_u(r, 4);
    if (r->bad || n > CORE_MAX_LIST) return busmsg_bad(e, seq, "record count");
    evstore_event *evs = malloc((n ? n : 1) * sizeof *evs);
    if (!evs) return err_set(e, ERR_NOMEM, "out of memory applying bus message");
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        evstore_event *ev = &evs[kept];
        busmsg_get_record(r, ev);
        if (r->bad) break;
        if (op == BUSMSG_EVENTS && core__privacy(c, ev->user_id, ev->user_len) == PRIVACY_FORGOTTEN)
            continue;
        kept++;
    }
    if (r->bad) {
        free(evs);
        return busmsg_bad(e, seq, "truncated records");
    }
    int applied = 0;
    /* evstore checks every record again: a bad one fails as ERR_INVALID. */
    int rc = evstore_append_at(store, evs, kept, seq, &applied, e);
    if (!rc && applied && op == BUSMSG_EVENTS) {
        atomic_fetch_add(&c->events_ingested, kept);
        core__trend_stored(c, evs, kept);
    }
    for (size_t i = 0; !rc && applied && op == BUSMSG_FEEDBACK && i < kept; i++) {
        char rid[CORE_MAX_ID_BYTES + 1];
        size_t len = evs[i].user_len < CORE_MAX_ID_BYTES ? evs[i].user_len : CORE_MAX_ID_BYTES;
        memcpy(rid, evs[i].user_id, len);
        rid[len] = 0;
        int v = exp_variant_of_request(&c->exp, rid);
        if (v >= 0 && evs[i].type < EXP_FEEDBACK_END)
            atomic_fetch_add(&c->feedback_counts[v][evs[i].type], 1);
    }
    free(evs);
    return rc;
}

static int apply_rules(core *c, uint64_t seq, int op, busmsg_reader *r, err_t *e) {
    size_t n = (size_t)busmsg_get_u(r, 4);
    if (r->bad || n > CORE_MAX_LIST) return busmsg_bad(e, seq, "item count");
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *id = busmsg_get_str(r, &len);
        uint64_t v = busmsg_get_u(r, op == BUSMSG_AVAILABILITY ? 1 : 4);
        if (r->bad || !len || len > CORE_MAX_ID_BYTES || !utf8_valid(id, len))
            return busmsg_bad(e, seq, "item");
        int rc;
        if (op == BUSMSG_AVAILABILITY)
            rc = catalog_set_available_at(c->rules, id, len, v != 0, seq, e);
        else {
            uint32_t bits = (uint32_t)v;
            float m;
            memcpy(&m, &bits, 4);
            rc = catalog_set_boost_at(c->rules, id, len, m, seq, e);
        }
        if (rc) return rc;
    }
    return ERR_OK;
}

/* Copies a string of the message into the next bytes of *at (NUL-terminated). */
static char *take_str(busmsg_reader *r, char **at, const char *end) {
    size_t len;
    const char *s = busmsg_get_str(r, &len);
    if (r->bad || (size_t)(end - *at) < len + 1) {
        r->bad = 1;
        return NULL;
    }
    char *out = *at;
    memcpy(out, s, len);
    out[len] = '\0';
    *at += len + 1;
    return out;
}

/* Descriptions of UpsertItems, checked again (catalog_upsert does). */
static int apply_items(core *c, uint64_t seq, busmsg_reader *r, err_t *e) {
    size_t n = (size_t)busmsg_get_u(r, 4);
    if (r->bad || n > CORE_MAX_LIST) return busmsg_bad(e, seq, "item count");
    /* Every string of the message fits in its size, NULs included. */
    size_t room = r->n - r->at + 1;
    catalog_item *items = calloc(n ? n : 1, sizeof *items);
    char **strings =
        malloc((n ? n : 1) * (CATALOG_MAX_CATEGORIES + CATALOG_MAX_LABELS) * sizeof *strings);
    char *buf = malloc(room), *at = buf, *end = buf + room;
    int rc = ERR_OK;
    if (!items || !strings || !buf) rc = err_set(e, ERR_NOMEM, "out of memory applying items");
    for (size_t i = 0; !rc && i < n && !r->bad; i++) {
        catalog_item *it = &items[i];
        char **list = strings + i * (CATALOG_MAX_CATEGORIES + CATALOG_MAX_LABELS);
        it->id = take_str(r, &at, end);
        it->n_categories = (size_t)busmsg_get_u(r, 1);
        if (it->n_categories > CATALOG_MAX_CATEGORIES) r->bad = 1;
        for (size_t k = 0; !r->bad && k < it->n_categories; k++)
            list[k] = take_str(r, &at, end);
        it->categories = list;
        it->n_labels = (size_t)busmsg_get_u(r, 1);
        if (it->n_labels > CATALOG_MAX_LABELS) r->bad = 1;
        for (size_t k = 0; !r->bad && k < it->n_labels; k++)
            list[CATALOG_MAX_CATEGORIES + k] = take_str(r, &at, end);
        it->labels = list + CATALOG_MAX_CATEGORIES;
        it->title = take_str(r, &at, end);
        it->price = busmsg_get_f64(r);
        it->published = (int64_t)busmsg_get_u(r, 8);
    }
    if (!rc && r->bad) rc = busmsg_bad(e, seq, "truncated items");
    if (!rc && (rc = catalog_upsert(c->rules, items, n, seq, e)) == ERR_INVALID)
        rc = busmsg_bad(e, seq, e->msg);
    free(items);
    free(strings);
    free(buf);
    return rc;
}

static int apply_privacy(core *c, uint64_t seq, int op, busmsg_reader *r, err_t *e) {
    size_t len;
    const char *id = busmsg_get_str(r, &len);
    unsigned opted_out = op == BUSMSG_PERSONALIZATION ? (unsigned)busmsg_get_u(r, 1) : 0;
    if (r->bad || !len || len > CORE_MAX_ID_BYTES || !utf8_valid(id, len))
        return busmsg_bad(e, seq, "user id");
    if (op == BUSMSG_PERSONALIZATION) {
        /* Forgotten stays forgotten, whatever came after on the bus. */
        if (core__privacy(c, id, len) == PRIVACY_FORGOTTEN) return ERR_OK;
        unsigned char v = opted_out ? PRIVACY_OPTED_OUT : PRIVACY_NONE;
        return idstate_put_at(c->privacy, id, len, &v, seq, e);
    }
    unsigned char forgotten = PRIVACY_FORGOTTEN;
    int rc = idstate_put_at(c->privacy, id, len, &forgotten, seq, e);
    uint64_t deleted = 0;
    if (!rc) rc = evstore_forget_user_at(c->events, id, len, seq, &deleted, e);
    if (rc) return rc;
    pthread_mutex_lock(&c->bus_forgets_lock);
    c->bus_forgets[seq % CORE_BUS_FORGETS].seq = seq;
    c->bus_forgets[seq % CORE_BUS_FORGETS].deleted = deleted;
    pthread_mutex_unlock(&c->bus_forgets_lock);
    log_info("msg=\"member forgotten\" events_deleted=%llu seq=%llu", (unsigned long long)deleted,
             (unsigned long long)seq);
    return ERR_OK;
}

static int apply_experiment(core *c, uint64_t seq, busmsg_reader *r, err_t *e) {
    if (r->n - r->at != EXP_STATE_BYTES) return busmsg_bad(e, seq, "experiment state size");
    const unsigned char *state = r->p + r->at;
    pthread_mutex_lock(&c->exp_update);
    pthread_mutex_lock(&c->lock);
    experiment x = c->exp;
    pthread_mutex_unlock(&c->lock);
    int rc = exp_restore(&x, state, e);
    if (rc) {
        /* Another variant set up on the replica that took it. */
        pthread_mutex_unlock(&c->exp_update);
        return busmsg_bad(e, seq, e->msg);
    }
    rc = idstate_put_at(c->exp_state, CORE_EXP_KEY, strlen(CORE_EXP_KEY), state, seq, e);
    if (!rc) {
        pthread_mutex_lock(&c->lock);
        memcpy(c->exp.salt, x.salt, sizeof x.salt);
        memcpy(c->exp.shares, x.shares, sizeof x.shares);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&c->exp_update);
    return rc;
}

/* The bus_apply_fn of the core. */
static int apply(void *ctx, uint64_t seq, const void *data, size_t len, err_t *e) {
    core *c = ctx;
    busmsg_reader r;
    int op;
    int rc = busmsg_open(&r, data, len, seq, &op, e);
    if (rc) return rc;
    switch (op) {
    case BUSMSG_EVENTS:
    case BUSMSG_FEEDBACK:
        return apply_records(c, seq, op, &r, e);
    case BUSMSG_AVAILABILITY:
    case BUSMSG_BOOSTS:
        return apply_rules(c, seq, op, &r, e);
    case BUSMSG_FORGET:
    case BUSMSG_PERSONALIZATION:
        return apply_privacy(c, seq, op, &r, e);
    case BUSMSG_EXPERIMENT:
        return apply_experiment(c, seq, &r, e);
    case BUSMSG_ITEMS:
        return apply_items(c, seq, &r, e);
    default:
        return busmsg_bad(e, seq, "unknown operation");
    }
}

/* The bus_announced_fn of the core: the version announced becomes current
 * in the control's model directory, and the watcher loads it as any
 * publication (within --reload-interval). */
static int announced(void *ctx, const char *version, err_t *e) {
    core *c = ctx;
    return model_use(c->slots[0].dir, version, e);
}

/* --- lifecycle, health, metrics ---------------------------------------------- */

int core__bus_open(core *c, const core_options *o, err_t *e) {
    c->max_lag_s = o->max_lag_s;
    if (!o->bus_urls) return ERR_OK;
    if (!c->events)
        return err_set(e, ERR_INVALID, "--bus needs --events DIR: each replica's local stores");
    /* Where to restart: the highest sequence any store recorded. Each store
     * skips (appends) or rewrites (idempotent puts) what it has. */
    uint64_t ev = 0, fb = 0;
    int rc = evstore_applied(c->events, &ev, e);
    if (!rc) rc = evstore_applied(c->feedback, &fb, e);
    if (rc) return rc;
    uint64_t start = ev;
    uint64_t more[5] = {fb, idstate_applied(c->privacy), idstate_applied(c->exp_state),
                        catalog_applied(c->rules), catalog_items_applied(c->rules)};
    for (int i = 0; i < 5; i++)
        if (more[i] > start) start = more[i];
    bus_options bo = {o->bus_urls,
                      o->bus_stream ? o->bus_stream : "recd",
                      o->replica_id ? o->replica_id : "replica",
                      start,
                      apply,
                      announced,
                      c};
    rc = bus_open(&bo, &c->bus, e);
    if (rc) return rc;
    core__model *sm = core__acquire(c);
    core__bus_served(c, model_info(sm->m)->version);
    core__release(sm);
    return ERR_OK;
}

void core__bus_served(core *c, const char *version) {
    err_t e;
    if (c->bus && bus_report_served(c->bus, version, &e))
        log_error("msg=\"served version not reported\" version=%s error=\"%s\"", version, e.msg);
}

void core__bus_close(core *c) {
    bus_close(c->bus);
    c->bus = NULL;
}

int core_serving(core *c, char *why, size_t cap) {
    if (!c->bus || c->max_lag_s <= 0) return 1;
    double lag = bus_lag_seconds(c->bus);
    if (lag <= c->max_lag_s) return 1;
    snprintf(why, cap, "%.1f s behind the event bus, more than --max-lag %g s", lag, c->max_lag_s);
    return 0;
}

void core__bus_metrics(core *c, FILE *out) {
    if (!c->bus) return;
    fprintf(out,
            "# HELP recd_bus_lag_seconds Age of the oldest bus message this replica has not "
            "applied (0: caught up), or the time since it last read the stream's state when "
            "more (cut off from NATS).\n# TYPE recd_bus_lag_seconds gauge\n"
            "recd_bus_lag_seconds %.3f\n"
            "# HELP recd_bus_applied_sequence Last stream sequence applied to the local stores.\n"
            "# TYPE recd_bus_applied_sequence gauge\nrecd_bus_applied_sequence %llu\n"
            "# HELP recd_bus_last_sequence Last stream sequence seen on the bus.\n"
            "# TYPE recd_bus_last_sequence gauge\nrecd_bus_last_sequence %llu\n"
            "# HELP recd_bus_connected 1 while connected to NATS.\n"
            "# TYPE recd_bus_connected gauge\nrecd_bus_connected %d\n"
            "# HELP recd_bus_skipped_total Bus messages that could not be applied.\n"
            "# TYPE recd_bus_skipped_total counter\nrecd_bus_skipped_total %llu\n",
            bus_lag_seconds(c->bus), (unsigned long long)bus_applied(c->bus),
            (unsigned long long)bus_last(c->bus), bus_connected(c->bus),
            (unsigned long long)bus_skipped(c->bus));
}
