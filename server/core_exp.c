/* core_exp: the A/B experiment around the variants - their names and
 * traffic shares (set at start, changed by core_set_experiment, kept across
 * restarts) and the feedback that clients record on the lists the variants
 * answered. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_int.h"
#include "log.h"
#include "utf8.h"

/* Feedback records go to an event store, which takes event types only. */
#define CORE_FEEDBACK_FITS(name, value, word)                                                      \
    _Static_assert((int)EXP_FEEDBACK_##name < (int)EV_TYPE_END,                                    \
                   "feedback type " #name " fits the store");
EXP_FEEDBACK_MAP(CORE_FEEDBACK_FITS)
#undef CORE_FEEDBACK_FITS

/* The key of the experiment's state in c->exp_state (one value). */

/* How a list impression (no item) is stored in the feedback store, whose
 * records always name an item. */
#define CORE_WHOLE_LIST "*"

/* --- variants -------------------------------------------------------------- */

int core__variants(core *c, const core_options *o, err_t *e) {
    experiment *x = &c->exp;
    if (o->n_variants >= EXP_MAX_VARIANTS)
        return err_set(e, ERR_INVALID, "at most %d variants besides control", EXP_MAX_VARIANTS - 1);
    snprintf(x->salt, sizeof x->salt, "%s", o->salt ? o->salt : "recd");
    x->n = o->n_variants + 1;
    strcpy(x->names[0], "control");
    double shares[EXP_MAX_VARIANTS];
    for (uint32_t v = 0; v < x->n; v++) {
        const char *name = v ? o->variant_names[v - 1] : "control";
        const char *dir = v ? o->variant_dirs[v - 1] : o->model_dir;
        if (!exp_name_valid(name))
            return err_set(e, ERR_INVALID, "variant name '%s' is not 1-%d of [A-Za-z0-9_-]", name,
                           EXP_MAX_NAME);
        for (uint32_t w = 0; w < v; w++)
            if (!strcmp(x->names[w], name))
                return err_set(e, ERR_INVALID, "variant '%s' is named twice", name);
        strcpy(x->names[v], name);
        if (!(c->slots[v].dir = strdup(dir))) return err_set(e, ERR_NOMEM, "out of memory");
        shares[v] = 1.0 / x->n;
    }
    shares[x->n - 1] = 1.0;
    for (uint32_t v = 0; v + 1 < x->n; v++)
        shares[x->n - 1] -= shares[v];
    return exp_set_shares(x, shares, x->n, e);
}

void core__restore_experiment(core *c) {
    unsigned char state[EXP_STATE_BYTES];
    if (idstate_get(c->exp_state, CORE_EXP_KEY, strlen(CORE_EXP_KEY), state) != ERR_OK) return;
    err_t e;
    char salt[4 * EXP_MAX_SALT + 8], why[4 * sizeof e.msg + 8];
    if (exp_restore(&c->exp, state, &e)) {
        log_warn("msg=\"stored experiment shares not used, the flags' are\" reason=\"%s\"",
                 log_escape(e.msg, why, sizeof why));
        return;
    }
    char shares[EXP_MAX_VARIANTS * (EXP_MAX_NAME + 24)];
    size_t at = 0;
    for (uint32_t v = 0; v < c->exp.n; v++)
        at += (size_t)snprintf(shares + at, sizeof shares - at, "%s%s=%g", v ? "," : "",
                               c->exp.names[v], c->exp.shares[v]);
    log_info("msg=\"experiment restored\" salt=\"%s\" shares=%s",
             log_escape(c->exp.salt, salt, sizeof salt), shares);
}

/* --- RecordFeedback -------------------------------------------------------- */

/* A core__record_check of core_feedback, tagged with the variant. In the
 * feedback store the "user" of a record is the request id (it carries the
 * variant), the item is the item, the type the feedback type. Its reasons
 * are all fixed strings. */
static const char *check_feedback(core *c, const void *records, size_t i, int64_t now,
                                  evstore_event *out, int *variant, char *buf) {
    const core_feedback *f = (const core_feedback *)records + i;
    (void)buf;
    if (core__id_problem(f->request_id)) return "request_id is empty, too long or not UTF-8";
    if ((*variant = exp_variant_of_request(&c->exp, f->request_id)) < 0)
        return "request_id was not issued by this experiment's variants";
    if (f->user_id[0] && core__id_problem(f->user_id)) return "user_id is too long or not UTF-8";
    if (!exp_feedback_word(f->type)) return "unknown feedback type";
    const char *item = f->item_id;
    if (!item[0]) {
        if (f->type != EXP_FEEDBACK_IMPRESSION)
            return "item_id is empty (only an impression may be of the whole list)";
        item = CORE_WHOLE_LIST;
    } else if (core__id_problem(item)) {
        return "item_id is too long or not UTF-8";
    }
    int64_t ts = f->timestamp_unix ? f->timestamp_unix : now;
    if (ts < 0 || ts > now + 86400) return "timestamp_unix is negative or in the future";
    *out = (evstore_event){
        f->request_id, strlen(f->request_id), item, strlen(item), f->type, ts, 1, 0};
    return NULL;
}

int core_record_feedback(core *c, const core_feedback *feedback, size_t n, core_write_reply *out,
                         err_t *e) {
    memset(out, 0, sizeof *out);
    if (!c->feedback)
        return err_set(e, ERR_PRECONDITION,
                       "this server keeps no feedback: start recd serve with --events DIR");
    core__records good;
    int err = core__write_records(c, c->feedback, feedback, n, check_feedback, "feedback records",
                                  &good, out, e);
    for (size_t i = 0; !err && !c->bus && i < good.n_good; i++)
        atomic_fetch_add(&c->feedback_counts[good.tags[i]][good.good[i].type], 1);
    core__records_free(&good);
    return err;
}

/* --- SetExperiment --------------------------------------------------------- */

/* The new shares and salt are stored before they are served, so a restart
 * never forgets what a reply said was done: a store that fails leaves the
 * experiment as it was and says so. Only this changes the shares and salt,
 * one call at a time (exp_update), so x, read under the lock, is still
 * current when it is written back. */
int core_set_experiment(core *c, const char *salt, const core_share *req_shares, size_t n,
                        err_t *e) {
    if (core__check_durable(c, "SetExperiment", e)) return e->code;
    size_t salt_len = strlen(salt);
    pthread_mutex_lock(&c->exp_update);
    pthread_mutex_lock(&c->lock);
    experiment x = c->exp;
    pthread_mutex_unlock(&c->lock);
    double shares[EXP_MAX_VARIANTS] = {0};
    int err = ERR_OK;
    if (salt_len > EXP_MAX_SALT || !utf8_valid(salt, salt_len))
        err = err_set(e, ERR_INVALID, "salt is longer than %d bytes or not UTF-8", EXP_MAX_SALT);
    for (size_t i = 0; !err && i < n; i++) {
        int v = -1;
        for (uint32_t w = 0; w < x.n; w++)
            if (!strcmp(x.names[w], req_shares[i].variant)) v = (int)w;
        if (v < 0)
            err = err_set(e, ERR_INVALID, "shares[%zu]: no variant named '%.*s'", i, 32,
                          req_shares[i].variant);
        else
            shares[v] = req_shares[i].share;
    }
    err_t why;
    if (!err && n && exp_set_shares(&x, shares, x.n, &why))
        err = err_set(e, ERR_INVALID, "%s", why.msg);
    if (!err && salt_len) memcpy(x.salt, salt, salt_len + 1);
    if (!err && c->bus) {
        /* A cluster: every replica (this one too) takes it from the bus;
         * the applier needs exp_update. */
        unsigned char state[EXP_STATE_BYTES];
        exp_encode(&x, state);
        pthread_mutex_unlock(&c->exp_update);
        err = core__bus_experiment(c, state, e);
        if (!err) log_info("msg=\"experiment changed\" salt=%s variants=%u", x.salt, x.n);
        return err;
    }
    if (!err && c->exp_state) {
        unsigned char state[EXP_STATE_BYTES];
        exp_encode(&x, state);
        if (idstate_put(c->exp_state, CORE_EXP_KEY, strlen(CORE_EXP_KEY), state, &why))
            err = err_set(e, why.code, "cannot store the experiment: %s", why.msg);
    }
    if (!err) {
        /* Not c->exp = x: that would write the names, which are read
         * without the lock. */
        pthread_mutex_lock(&c->lock);
        memcpy(c->exp.salt, x.salt, sizeof x.salt);
        memcpy(c->exp.shares, x.shares, sizeof x.shares);
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&c->exp_update);
    char logged[4 * EXP_MAX_SALT + 8]; /* the client's salt: escaped, it forges nothing */
    if (!err)
        log_info("msg=\"experiment changed\" salt=\"%s\" variants=%u",
                 log_escape(x.salt, logged, sizeof logged), x.n);
    return err;
}
