/* core_churn: churn scores of members and the campaign stream of members
 * to win back, from the churn model published with the control model,
 * leaving out members who opted out or were forgotten; and that model's
 * validation figures. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_int.h"

/* --- GetChurnScore --------------------------------------------------------- */

void core_churn_reply_free(core_churn_reply *r) {
    if (r->held) core__release(r->held);
    memset(r, 0, sizeof *r);
}

/* --- GetChurnModelInfo ----------------------------------------------------- */

int core_churn_model(core *c, core_churn_model_reply *out, err_t *e) {
    memset(out, 0, sizeof *out);
    core__model *sm = core__acquire(c);
    const model_meta *meta = model_info(sm->m);
    const model_churn *churn = model_churn_info(sm->m);
    int err = ERR_OK;
    if (!churn) {
        err = err_set(e, ERR_PRECONDITION,
                      "model %s has no churn model: train with --churn-horizon", meta->version);
    } else {
        memcpy(out->model_version, meta->version, sizeof out->model_version);
        out->horizon_days = churn->horizon_days;
        out->scored_at = churn->scored_at;
        out->has_validation = churn->has_validation;
        if (churn->has_validation) {
            out->validation = churn->validation;
        } else {
            out->validation = (model_churn_validation){.roc_auc = NAN,
                                                       .pr_auc = NAN,
                                                       .brier = NAN,
                                                       .recency_roc_auc = NAN,
                                                       .base_brier = NAN};
            for (int b = 0; b < MODEL_CHURN_CALIB_BINS; b++)
                out->validation.calib_predicted[b] = out->validation.calib_observed[b] = NAN;
        }
    }
    core__release(sm);
    return err;
}

int core_churn_score(core *c, const char *user_id, core_churn_reply *out, err_t *e) {
    memset(out, 0, sizeof *out);
    int err = core__check_id("user_id", user_id, e);
    if (err) return err;
    core__model *sm = core__acquire(c);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    const model_churn *churn = model_churn_info(m);
    uint32_t u, feature[CORE_TOP_FACTORS];
    model_churn_user cu;
    int private = core__privacy(c, user_id, strlen(user_id));
    err_t why;
    if (!churn)
        err = err_set(e, ERR_PRECONDITION,
                      "model %s has no churn model: train with --churn-horizon", meta->version);
    else if (private)
        err = err_set(e, ERR_NOTFOUND, "member '%.*s' %s", 64, user_id,
                      private == PRIVACY_FORGOTTEN ? "was forgotten (ForgetUser)"
                                                   : "opted out of personalization");
    else if (model_user_index(m, user_id, strlen(user_id), &u) != ERR_OK)
        err =
            err_set(e, ERR_NOTFOUND, "user '%.*s' is not in model %s", 64, user_id, meta->version);
    else if (model_churn_user_scores(m, u, &cu) || isnan(cu.probability))
        err = err_set(e, ERR_NOTFOUND,
                      "user '%.*s' has no purchase before the scoring time of model %s", 64,
                      user_id, meta->version);
    else if (campaign_top_factors(m, u, CORE_TOP_FACTORS, feature, out->contribution,
                                  &out->n_factors, &why))
        err = err_set(e, why.code, "%s", why.msg);
    if (err) {
        core__release(sm);
        memset(out, 0, sizeof *out);
        return err;
    }
    for (uint32_t i = 0; i < out->n_factors; i++)
        out->feature[i] = churn->feature_names[feature[i]];
    out->probability = cu.probability;
    out->risk_band = model_churn_band_name(cu.band);
    out->segment = model_churn_segment_name(cu.segment);
    out->tier = model_churn_tier_name(cu.tier);
    out->recency_days = cu.recency_days;
    out->frequency = cu.frequency;
    out->monetary = cu.monetary;
    out->p_alive = cu.p_alive;
    out->expected_orders = cu.expected_orders;
    out->expected_value = cu.expected_value;
    out->model_version = meta->version;
    out->held = sm;
    return ERR_OK;
}

/* --- StreamCampaignTargets ------------------------------------------------- */

/* State of one target selection: what emit needs to hand a member over. */
typedef struct target_stream {
    const model *m;
    const model_churn *churn;
    const float *affinity;
    core_target_fn emit;
    void *ctx;
} target_stream;

static int target_emit(void *ctx, uint32_t u) {
    target_stream *ts = ctx;
    size_t len;
    const char *id = model_user_id(ts->m, u, &len);
    char user[CORE_MAX_ID_BYTES * 4 + 1];
    if (len >= sizeof user) len = sizeof user - 1;
    memcpy(user, id, len);
    user[len] = '\0';
    core_target t = {
        .user_id = user,
        .churn_probability = ts->churn->probability[u],
        .affinity = ts->affinity ? ts->affinity[u] : 0.0f,
        .risk_band = model_churn_band_name(ts->churn->band[u]),
        .segment = model_churn_segment_name(ts->churn->segment[u]),
        .tier = model_churn_tier_name(ts->churn->tier[u]),
        .monetary = ts->churn->monetary[u],
        .expected_value = ts->churn->p_alive ? ts->churn->expected_value[u] : NAN,
        .p_alive = ts->churn->p_alive ? ts->churn->p_alive[u] : NAN,
    };
    return ts->emit(ts->ctx, &t);
}

/* evstore visitor for viewed_not_bought_days: marks members who viewed or
 * carted (the item, if one is set) after since, and unmarks those who bought
 * it after their look. Events come in sequence order, so a later purchase
 * wins over an earlier view. */
typedef struct looked_scan {
    const model *m;
    uint8_t *eligible;
    int64_t since;
    const char *item; /* NULL = any item */
} looked_scan;

static int looked_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    looked_scan *ls = ctx;
    if (ev->ts < ls->since) return 0;
    if (ls->item &&
        (ev->item_len != strlen(ls->item) || memcmp(ev->item_id, ls->item, ev->item_len)))
        return 0;
    uint32_t u;
    if (model_user_index(ls->m, ev->user_id, ev->user_len, &u) != ERR_OK) return 0;
    if (ev->type == EV_TYPE_VIEW || ev->type == EV_TYPE_ADD_TO_CART)
        ls->eligible[u] = 1;
    else if (ev->type == EV_TYPE_PURCHASE)
        ls->eligible[u] = 0;
    return 0;
}

typedef struct private_scan {
    const model *m;
    uint8_t *eligible;
} private_scan;

static void unmark_private(void *ctx, const char *id, size_t len, const void *value,
                           size_t value_len) {
    (void)value_len; /* the store's fixed size */
    private_scan *ps = ctx;
    uint32_t u;
    if (privacy_of_value(value) != PRIVACY_NONE && model_user_index(ps->m, id, len, &u) == ERR_OK)
        ps->eligible[u] = 0;
}

static int targets_check(const core_targets_req *rq, err_t *e) {
    int err;
    if ((rq->item_id[0] && (err = core__check_id("item_id", rq->item_id, e))) ||
        (rq->category[0] && (err = core__check_id("category", rq->category, e))) ||
        (err = core__check_ids("segments", rq->segments, rq->n_segments, e)) ||
        (err = core__check_ids("tiers", rq->tiers, rq->n_tiers, e)))
        return err;
    return ERR_OK;
}

/* Turns the request into a filter (affinity and eligibility arrays
 * allocated here, owned by the caller). */
static int targets_filter(core *c, core__model *sm, const core_targets_req *rq, campaign_filter *f,
                          float **affinity, uint8_t **eligible, err_t *e) {
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    memset(f, 0, sizeof *f);
    f->min_probability = rq->min_probability;
    f->max_probability = rq->max_probability == 0.0f ? 1.0f : rq->max_probability;
    if (!(f->min_probability >= 0 && f->max_probability <= 1 &&
          f->min_probability <= f->max_probability))
        return err_set(e, ERR_INVALID, "churn probability range [%g, %g] is not within [0, 1]",
                       f->min_probability, f->max_probability);
    for (size_t i = 0; i < rq->n_segments; i++) {
        int code = model_churn_segment_code(rq->segments[i]);
        if (code < 0)
            return err_set(e, ERR_INVALID, "segments[%zu] '%.*s' is not a segment", i, 64,
                           rq->segments[i]);
        f->segments |= 1u << code;
    }
    for (size_t i = 0; i < rq->n_tiers; i++) {
        int code = model_churn_tier_code(rq->tiers[i]);
        if (code < 0)
            return err_set(e, ERR_INVALID, "tiers[%zu] '%.*s' is not a tier", i, 64, rq->tiers[i]);
        f->tiers |= 1u << code;
    }
    f->limit = rq->limit;
    f->order = rq->order;
    err_t why;
    if (rq->item_id[0] || rq->category[0]) {
        uint32_t idx;
        if (!(*affinity = malloc(((size_t)meta->n_users + 1) * sizeof **affinity)))
            return err_set(e, ERR_NOMEM, "out of memory");
        if (rq->item_id[0]) {
            /* A product upserted since the model: who should hear of it, by
             * the vector its labels give it. */
            core__storefront *mu = core__storefront_get(c, sm);
            if (!mu) return err_set(e, ERR_NOMEM, "out of memory");
            int found = core__item_lookup(m, &mu->up, rq->item_id, &idx) == ERR_OK &&
                        (idx < meta->n_items || mu->up.new_vectors);
            if (found)
                campaign_affinity_vector(m,
                                         idx < meta->n_items
                                             ? model_item_factors(m) + (size_t)idx * meta->factors
                                             : mu->up.new_vectors +
                                                   (size_t)(idx - meta->n_items) * meta->factors,
                                         *affinity);
            core__storefront_release(mu);
            if (!found)
                return err_set(e, ERR_NOTFOUND, "item '%.*s' is not in model %s nor upserted", 64,
                               rq->item_id, meta->version);
        } else if (model_category_index(m, rq->category, strlen(rq->category), &idx)) {
            return err_set(e, ERR_NOTFOUND, "category '%.*s' is not in model %s", 64, rq->category,
                           meta->version);
        } else if (campaign_affinity_category(m, idx, *affinity, &why)) {
            return err_set(e, why.code, "category '%.*s': %s", 64, rq->category, why.msg);
        }
        f->affinity = *affinity;
    }
    if (rq->viewed_not_bought_days) {
        if (!c->events)
            return err_set(e, ERR_PRECONDITION,
                           "viewed_not_bought_days needs the event store: start recd serve with "
                           "--events DIR");
        if (!(*eligible = calloc((size_t)meta->n_users + 1, 1)))
            return err_set(e, ERR_NOMEM, "out of memory");
        looked_scan ls = {m, *eligible,
                          (int64_t)time(NULL) - 86400 * (int64_t)rq->viewed_not_bought_days,
                          rq->item_id[0] ? rq->item_id : NULL};
        if (evstore_scan(c->events, 1, looked_visit, &ls, &why))
            return err_set(e, why.code, "cannot read the events: %s", why.msg);
        f->eligible = *eligible;
    }
    /* Members who opted out or were forgotten are never campaign targets. */
    if (!*eligible) {
        if (!(*eligible = malloc((size_t)meta->n_users + 1)))
            return err_set(e, ERR_NOMEM, "out of memory");
        memset(*eligible, 1, (size_t)meta->n_users + 1);
    }
    private_scan ps = {m, *eligible};
    idstate_each(c->privacy, unmark_private, &ps);
    f->eligible = *eligible;
    return ERR_OK;
}

/* Selects the members of rq from the acquired model sm and hands each to
 * pick(ts, user), in order; ts's model, churn model and affinity are set
 * here (its emit and ctx are the caller's). */
static int targets_select(core *c, core__model *sm, const core_targets_req *rq,
                          campaign_emit_fn pick, target_stream *ts, err_t *e) {
    int err = targets_check(rq, e);
    if (err) return err;
    const model *m = sm->m;
    float *affinity = NULL;
    uint8_t *eligible = NULL;
    campaign_filter f;
    if (!model_churn_info(m)) {
        err =
            err_set(e, ERR_PRECONDITION, "model %s has no churn model: train with --churn-horizon",
                    model_info(m)->version);
    } else if (!(err = targets_filter(c, sm, rq, &f, &affinity, &eligible, e))) {
        ts->m = m;
        ts->churn = model_churn_info(m);
        ts->affinity = affinity;
        err_t why;
        if (campaign_select(m, &f, pick, ts, &why)) err = err_set(e, why.code, "%s", why.msg);
    }
    free(affinity);
    free(eligible);
    return err;
}

int core_campaign_targets(core *c, const core_targets_req *rq, core_target_fn emit, void *ctx,
                          err_t *e) {
    core__model *sm = core__acquire(c);
    target_stream ts = {.emit = emit, .ctx = ctx};
    int err = targets_select(c, sm, rq, target_emit, &ts, e);
    core__release(sm);
    return err;
}

/* --- GetMemberOverview ----------------------------------------------------- */

typedef struct member_count {
    target_stream ts; /* first: targets_select hands back &ts */
    core_member_counts *out;
} member_count;

static int member_count_pick(void *ctx, uint32_t u) {
    member_count *mc = ctx;
    const model_churn *churn = mc->ts.churn;
    core_member_counts *out = mc->out;
    out->members++;
    if (churn->band[u] < MODEL_CHURN_N_BANDS) out->bands[churn->band[u]]++;
    if (churn->segment[u] < MODEL_CHURN_N_SEGMENTS) out->segments[churn->segment[u]]++;
    if (churn->tier[u] < MODEL_CHURN_N_TIERS) out->tiers[churn->tier[u]]++;
    float p = churn->probability[u];
    int bin = p >= 0 ? (int)(p * CORE_CHURN_HISTOGRAM_BINS) : 0;
    out->histogram[bin < CORE_CHURN_HISTOGRAM_BINS ? bin : CORE_CHURN_HISTOGRAM_BINS - 1]++;
    return 0;
}

int core_member_overview(core *c, const core_targets_req *rq, core_member_counts *out, err_t *e) {
    memset(out, 0, sizeof *out);
    core__model *sm = core__acquire(c);
    memcpy(out->model_version, model_info(sm->m)->version, sizeof out->model_version);
    member_count mc = {.out = out};
    int err = targets_select(c, sm, rq, member_count_pick, &mc.ts, e);
    core__release(sm);
    return err;
}
