#include "busload.h"

#include <stdlib.h>
#include <time.h>

#include "bus.h"
#include "busmsg.h"
#include "evstore.h"
#include "idmap.h"
#include "utf8.h"

/* The reader's state, between messages. */
typedef struct busload_ctx {
    ev_set *history;
    const float *weights;
    int64_t since;  /* events dated at or before it are passed over */
    int64_t latest; /* the last event time accepted */
    idmap *forgot;  /* the members forgotten so far */
    busload_counts *counts;
} busload_ctx;

static int add_events(busload_ctx *c, uint64_t seq, busmsg_reader *r, err_t *e) {
    uint64_t n = busmsg_get_u(r, 4);
    for (uint64_t i = 0; i < n && !r->bad; i++) {
        evstore_event ev;
        busmsg_get_record(r, &ev);
        if (r->bad) break;
        if (ev.ts <= c->since) {
            c->counts->before++;
            continue;
        }
        int outcome;
        int rc = evstore_add_to_history(c->history, &ev, c->weights, c->latest, &outcome, e);
        if (rc) return rc;
        c->counts->added += outcome == EVSTORE_ADDED;
        c->counts->future += outcome == EVSTORE_SKIPPED_DATE;
    }
    return r->bad ? busmsg_bad(e, seq, "truncated records") : ERR_OK;
}

static int note_forgotten(busload_ctx *c, uint64_t seq, busmsg_reader *r, err_t *e) {
    size_t len;
    const char *id = busmsg_get_str(r, &len);
    if (r->bad || !len || !utf8_valid(id, len)) return busmsg_bad(e, seq, "user id");
    uint32_t at;
    if (idmap_intern(c->forgot, id, len, &at))
        return err_set(e, ERR_NOMEM, "out of memory reading the bus");
    return ERR_OK;
}

/* The bus_apply_fn of the reader. */
static int read_one(void *ctx, uint64_t seq, const void *data, size_t len, err_t *e) {
    busload_ctx *c = ctx;
    busmsg_reader r;
    int op;
    int rc = busmsg_open(&r, data, len, seq, &op, e);
    if (rc) return rc;
    if (op == BUSMSG_EVENTS) return add_events(c, seq, &r, e);
    if (op == BUSMSG_FORGET) return note_forgotten(c, seq, &r, e);
    return ERR_OK;
}

/* Leaves the members of c->forgot out of the history. */
static int leave_out(busload_ctx *c, err_t *e) {
    uint32_t n_users = idmap_size(c->history->users);
    if (!idmap_size(c->forgot)) return ERR_OK;
    uint8_t *drop = calloc((size_t)n_users + 1, 1);
    if (!drop) return err_set(e, ERR_NOMEM, "out of memory leaving out forgotten members");
    for (uint32_t i = 0; i < idmap_size(c->forgot); i++) {
        size_t len;
        const char *id = idmap_key(c->forgot, i, &len);
        uint32_t u;
        if (idmap_find(c->history->users, id, len, &u) == ERR_OK && !drop[u]) {
            drop[u] = 1;
            c->counts->forgotten++;
        }
    }
    int rc = c->counts->forgotten ? ev_set_drop_users(c->history, drop, e) : ERR_OK;
    free(drop);
    return rc;
}

int busload_add(ev_set *history, const char *urls, const char *stream,
                const float weights[EV_TYPE_END], int64_t since, busload_counts *out, err_t *e) {
    *out = (busload_counts){0};
    busload_ctx c = {.history = history,
                     .weights = weights,
                     .since = since,
                     .latest = (int64_t)time(NULL) + EVSTORE_MAX_AHEAD_S,
                     .forgot = idmap_new(),
                     .counts = out};
    if (!c.forgot) return err_set(e, ERR_NOMEM, "out of memory reading the bus");
    int rc = bus_read(urls, stream, read_one, &c, &out->last, &out->skipped, e);
    if (!rc) rc = leave_out(&c, e);
    idmap_free(c.forgot);
    return rc;
}
