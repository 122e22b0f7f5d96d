/* core_write: what changes the service's state - recorded events (and the
 * write path that feedback shares), the storefront's item rules
 * (availability, boosts) and members' privacy choices (forget, opt out). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "core_int.h"
#include "log.h"

/* --- the record write path ------------------------------------------------- */

void core_write_reply_free(core_write_reply *r) {
    free(r->rejected);
    memset(r, 0, sizeof *r);
}

void core__records_free(core__records *r) {
    free(r->good);
    free(r->tags);
    memset(r, 0, sizeof *r);
}

int core__write_records(core *c, evstore *store, const void *records, size_t n,
                        core__record_check check, const char *what, core__records *good,
                        core_write_reply *out, err_t *e) {
    memset(good, 0, sizeof *good);
    memset(out, 0, sizeof *out);
    if (n > CORE_MAX_LIST)
        return err_set(e, ERR_INVALID, "%zu %s in one call, more than %d", n, what, CORE_MAX_LIST);
    size_t cap = n ? n : 1;
    good->good = malloc(cap * sizeof *good->good);
    good->tags = malloc(cap * sizeof *good->tags);
    out->rejected = malloc(cap * sizeof *out->rejected);
    if (!good->good || !good->tags || !out->rejected)
        return err_set(e, ERR_NOMEM, "out of memory for %zu %s", n, what);
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        core_rejected *r = &out->rejected[out->n_rejected];
        const char *problem = check(c, records, i, now, &good->good[good->n_good],
                                    &good->tags[good->n_good], r->reason);
        if (!problem) {
            good->n_good++;
            continue;
        }
        r->index = (uint32_t)i;
        if (problem != r->reason) snprintf(r->reason, sizeof r->reason, "%s", problem);
        out->n_rejected++;
    }
    err_t why;
    if (c->bus) {
        /* A cluster: the replicas store them when they apply the bus. */
        int rc = core__bus_records(c, store, good->good, good->n_good, e);
        if (rc) return rc;
    } else if (good->n_good && evstore_append(store, good->good, good->n_good, NULL, &why)) {
        char msg[4 * sizeof why.msg];
        log_error("msg=\"%s not stored\" records=%zu error=\"%s\"", what, good->n_good,
                  log_escape(why.msg, msg, sizeof msg));
        return err_set(e, why.code, "%s not stored: %s", what, why.msg);
    }
    out->accepted = (uint32_t)good->n_good;
    return ERR_OK;
}

/* --- RecordEvents ---------------------------------------------------------- */

/* A core__record_check of core_events: event i as it will be stored
 * (timestamp 0 = now, quantity 0 = 1). Events have no tag. */
static const char *check_event(core *c, const void *records, size_t i, int64_t now,
                               evstore_event *out, int *tag, char *buf) {
    const core_event *ev = (const core_event *)records + i;
    const size_t cap = CORE_REASON;
    const char *problem;
    *tag = 0;
    if ((problem = core__id_problem(ev->user_id))) {
        snprintf(buf, cap, "user_id %s", problem);
        return buf;
    }
    if (core__privacy(c, ev->user_id, strlen(ev->user_id)) == PRIVACY_FORGOTTEN)
        return "the member was forgotten (ForgetUser): nothing more is kept about them";
    if ((problem = core__id_problem(ev->item_id))) {
        snprintf(buf, cap, "item_id %s", problem);
        return buf;
    }
    if (!ev_type_known(ev->type)) {
        snprintf(buf, cap, "unknown event type %d", (int)ev->type);
        return buf;
    }
    int64_t ts = ev->timestamp_unix ? ev->timestamp_unix : now;
    if (ts < 0) return "timestamp_unix is negative";
    if (ts > now + 86400) return "timestamp_unix is more than a day in the future";
    if (ev->quantity > CORE_MAX_QUANTITY) {
        snprintf(buf, cap, "quantity %u is absurd (more than %d)", ev->quantity, CORE_MAX_QUANTITY);
        return buf;
    }
    if (!isfinite(ev->price) || ev->price < 0 || ev->price > CORE_MAX_PRICE)
        return "price is negative, not finite or absurd";
    *out = (evstore_event){ev->user_id,
                           strlen(ev->user_id),
                           ev->item_id,
                           strlen(ev->item_id),
                           ev->type,
                           ts,
                           ev->quantity ? ev->quantity : 1,
                           ev->price};
    return NULL;
}

int core_record_events(core *c, const core_event *events, size_t n, core_write_reply *out,
                       err_t *e) {
    memset(out, 0, sizeof *out);
    if (!c->events)
        return err_set(e, ERR_PRECONDITION,
                       "this server keeps no events: start recd serve with --events DIR");
    core__records good;
    int err = core__write_records(c, c->events, events, n, check_event, "events", &good, out, e);
    /* On a cluster the applier counts them, on every replica. */
    if (!err && !c->bus) {
        atomic_fetch_add(&c->events_ingested, good.n_good);
        core__trend_stored(c, good.good, good.n_good);
    }
    core__records_free(&good);
    return err;
}

/* --- trending ------------------------------------------------------------- */

typedef struct trend_scan {
    trend *t;
    int64_t now;
    size_t read, dropped;
} trend_scan;

/* evstore visitor of core__trend_open: one stored event. */
static int trend_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    trend_scan *s = ctx;
    s->read++;
    s->dropped += trend_add(s->t, ev, 1, s->now);
    return 0;
}

int core__trend_open(core *c, const core_options *o, err_t *e) {
    double h = o->trending_half_life_s;
    float p = o->trending_personal;
    if (!(p >= 0.0f && p <= 1.0f))
        return err_set(e, ERR_INVALID, "the trending blend must be between 0 and 1, got %g",
                       (double)p);
    c->trending_personal = p;
    int rc = trend_open(h, c->weights, &c->trend, e);
    if (rc) return rc;
    /* Every stored event is read: the store keeps them in the order they
     * came, not by their time. */
    trend_scan s = {c->trend, (int64_t)time(NULL), 0, 0};
    double started = clock_seconds();
    if ((rc = evstore_scan(c->events, 0, trend_visit, &s, e))) {
        err_wrap(e, "trending counts not rebuilt");
        return rc;
    }
    log_info("msg=\"trending counts rebuilt\" events=%zu items=%u dropped=%zu half_life_s=%g "
             "seconds=%.3f",
             s.read, trend_size(c->trend), s.dropped, h, clock_seconds() - started);
    return ERR_OK;
}

void core__trend_stored(core *c, const evstore_event *events, size_t n) {
    if (c->trend) trend_add(c->trend, events, n, (int64_t)time(NULL));
}

/* --- item rules: availability and boosts ----------------------------------- */

int core_set_availability(core *c, const core_availability *items, size_t n, err_t *e) {
    if (core__check_durable(c, "SetItemAvailability", e)) return e->code;
    if (n > CORE_MAX_LIST)
        return err_set(e, ERR_INVALID, "%zu items, more than %d", n, CORE_MAX_LIST);
    /* All or nothing: a bad entry is reported before anything changes. */
    for (size_t i = 0; i < n; i++) {
        const char *problem = core__id_problem(items[i].item_id);
        if (problem) return err_set(e, ERR_INVALID, "items[%zu].item_id %s", i, problem);
    }
    for (size_t i = 0; i < n; i++) {
        err_t why;
        const char *id = items[i].item_id;
        if (catalog_set_available(c->rules, id, strlen(id), items[i].available, &why))
            return err_set(e, why.code, "items[%zu] not stored: %s", i, why.msg);
    }
    return ERR_OK;
}

int core_set_boosts(core *c, const core_boost *boosts, size_t n, err_t *e) {
    if (core__check_durable(c, "SetItemBoosts", e)) return e->code;
    if (n > CORE_MAX_LIST)
        return err_set(e, ERR_INVALID, "%zu boosts, more than %d", n, CORE_MAX_LIST);
    for (size_t i = 0; i < n; i++) {
        const char *problem = core__id_problem(boosts[i].item_id);
        float mult = boosts[i].multiplier;
        if (problem) return err_set(e, ERR_INVALID, "boosts[%zu].item_id %s", i, problem);
        if (!(mult > 0.0f && mult <= CATALOG_MAX_BOOST))
            return err_set(e, ERR_INVALID, "boosts[%zu].multiplier must be in (0, %g], got %g", i,
                           CATALOG_MAX_BOOST, mult);
    }
    if (c->bus) return core__bus_boosts(c, boosts, n, e);
    for (size_t i = 0; i < n; i++) {
        err_t why;
        const char *id = boosts[i].item_id;
        if (catalog_set_boost(c->rules, id, strlen(id), boosts[i].multiplier, &why))
            return err_set(e, why.code, "boosts[%zu] not stored: %s", i, why.msg);
    }
    return ERR_OK;
}

/* --- privacy: ForgetUser, SetPersonalization ------------------------------- */

int core_forget_user(core *c, const char *user_id, uint64_t *events_deleted, err_t *e) {
    *events_deleted = 0;
    int err = core__check_durable(c, "ForgetUser", e);
    if (!err) err = core__check_id("user_id", user_id, e);
    if (err) return err;
    if (c->bus) return core__bus_forget(c, user_id, events_deleted, e);
    size_t n = strlen(user_id);
    unsigned char forgotten = PRIVACY_FORGOTTEN;
    err_t why;
    /* The flag first: from this moment nothing about the member is served,
     * whatever happens to the deletion below. */
    if (idstate_put(c->privacy, user_id, n, &forgotten, &why))
        return err_set(e, why.code, "not stored: %s", why.msg);
    if (evstore_forget_user(c->events, user_id, n, events_deleted, &why))
        return err_set(e, why.code, "events not deleted: %s", why.msg);
    log_info("msg=\"member forgotten\" events_deleted=%llu", (unsigned long long)*events_deleted);
    return ERR_OK;
}

int core_set_personalization(core *c, const char *user_id, int opted_out, err_t *e) {
    int err = core__check_durable(c, "SetPersonalization", e);
    if (!err) err = core__check_id("user_id", user_id, e);
    if (err) return err;
    size_t n = strlen(user_id);
    if (core__privacy(c, user_id, n) == PRIVACY_FORGOTTEN)
        return err_set(e, ERR_PRECONDITION,
                       "member was forgotten (ForgetUser) and stays non-personalized; a new "
                       "start needs a new id");
    if (c->bus) return core__bus_personalization(c, user_id, opted_out, e);
    unsigned char v = opted_out ? PRIVACY_OPTED_OUT : PRIVACY_NONE;
    err_t why;
    if (idstate_put(c->privacy, user_id, n, &v, &why))
        return err_set(e, why.code, "not stored: %s", why.msg);
    return ERR_OK;
}
