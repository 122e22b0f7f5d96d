/* core_rank: the ranked operations - Recommend (alone or batched),
 * SimilarItems and Rerank - from the served model, the shopper's fresh
 * signals and the storefront's item multipliers; and the item stats of
 * what Recommend served. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_int.h"
#include "topk.h"

/* --- lists ----------------------------------------------------------------- */

/* Fills out->items with n entries of top (best first) and then n_unknown
 * ids the model does not know, with score 0, all in one block. */
static int list_build(core_list *out, const model *m, const topk_entry *top, size_t n,
                      char *const *unknown, size_t n_unknown, err_t *e) {
    size_t bytes = 0, len;
    for (size_t i = 0; i < n; i++) {
        model_item_id(m, top[i].index, &len);
        bytes += len + 1;
    }
    for (size_t i = 0; i < n_unknown; i++)
        bytes += strlen(unknown[i]) + 1;
    size_t total = n + n_unknown;
    core_item *items = malloc(total * sizeof *items + (bytes ? bytes : 1));
    if (!items) return err_set(e, ERR_NOMEM, "out of memory building the response");
    char *at = (char *)(items + total);
    for (size_t i = 0; i < total; i++) {
        const char *id = i < n ? model_item_id(m, top[i].index, &len) : unknown[i - n];
        if (i >= n) len = strlen(id);
        memcpy(at, id, len);
        at[len] = '\0';
        items[i] = (core_item){at, i < n ? top[i].score : 0.0f};
        at += len + 1;
    }
    out->items = items;
    out->n_items = total;
    return ERR_OK;
}

void core_list_free(core_list *l) {
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Sets scores of the named items that the model knows to -INFINITY. */
static void exclude_ids(const model *m, char *const *ids, size_t n, float *scores) {
    for (size_t i = 0; i < n; i++) {
        uint32_t item;
        if (model_item_index(m, ids[i], strlen(ids[i]), &item) == ERR_OK) scores[item] = -INFINITY;
    }
}

/* --- Recommend ------------------------------------------------------------- */

/* The index of category in m: ERR_OK, ERR_PRECONDITION (m has no
 * categories) or ERR_NOTFOUND, with a message for the caller's client. */
static int category_index(const model *m, const char *category, uint32_t *index, err_t *e) {
    if (model_category_index(m, category, strlen(category), index) == ERR_OK) return ERR_OK;
    if (model_n_categories(m) == 0)
        return err_set(e, ERR_PRECONDITION, "model %s has no item categories to filter by",
                       model_info(m)->version);
    return err_set(e, ERR_NOTFOUND, "category '%.*s' is not in model %s", 64, category,
                   model_info(m)->version);
}

/* 1 when mode is served, 0 when it is a mode of the contract this server
 * does not answer, -1 when it is none of the table's. */
static int mode_served(int32_t mode) {
#define CORE_MODE_SERVED(name, value, pb, word, served)                                            \
    if (mode == value) return served;
    CORE_MODE_MAP(CORE_MODE_SERVED)
#undef CORE_MODE_SERVED
    return -1;
}

static int recommend_check(const core_recommend_req *rq, err_t *e) {
    int rc;
    if ((rc = core__check_k(rq->k, e))) return rc;
    int served = mode_served(rq->mode);
    if (served < 0)
        return err_set(e, ERR_INVALID,
                       "mode %d is not a RecommendMode (MODE_DEFAULT = 0, NEW_ARRIVALS = 1, "
                       "TRENDING = 2, BUY_AGAIN = 3)",
                       (int)rq->mode);
    if (!served)
        return err_set(e, ERR_UNIMPLEMENTED,
                       "mode %s is not implemented by this server (it answers MODE_DEFAULT and "
                       "BUY_AGAIN)",
                       core_mode_name(rq->mode));
    if (rq->mode == CORE_MODE_BUY_AGAIN && !rq->user_id[0])
        return err_set(e, ERR_INVALID,
                       "mode BUY_AGAIN needs a user_id: only a member has bought before");
    if (rq->user_id[0] || rq->n_context_item_ids == 0) {
        if (!rq->user_id[0])
            return err_set(e, ERR_INVALID, "user_id is empty and there are no context_item_ids");
        if ((rc = core__check_id("user_id", rq->user_id, e))) return rc;
    }
    if ((rc = core__check_ids("context_item_ids", rq->context_item_ids, rq->n_context_item_ids,
                              e)) ||
        (rc = core__check_ids("exclude_item_ids", rq->exclude_item_ids, rq->n_exclude_item_ids, e)))
        return rc;
    if (!(rq->diversity >= 0.0f && rq->diversity <= 1.0f))
        return err_set(e, ERR_INVALID, "diversity must be between 0 and 1, got %g", rq->diversity);
    if (rq->category[0]) return core__check_id("category", rq->category, e);
    return ERR_OK;
}

/* One Recommend call between its preparation and its answer. Owned by the
 * function running it: recommend_free. */
typedef struct recommend_call {
    const core_recommend_req *rq;
    core__model *sm;
    core__multipliers *mu;
    core__shopper sh;
    float *x;
    float *ii; /* an item-item model's scores of every item (n_items), or NULL */
    uint32_t category, variant;
    core_strategy strategy;
    char request_id[EXP_REQUEST_ID_MAX];
} recommend_call;

static void recommend_free(recommend_call *rc) {
    core__shopper_free(&rc->sh);
    core__multipliers_release(rc->mu);
    free(rc->x);
    free(rc->ii);
    if (rc->sm) core__release(rc->sm);
}

/* Validates and prepares a call up to its scores: the variant and its
 * model, the rules, the shopper's vector in rc->x (unless the strategy is
 * POPULAR). Either way the caller frees rc with recommend_free. */
static int recommend_prepare(core *c, const core_recommend_req *rq, recommend_call *rc, err_t *e) {
    memset(rc, 0, sizeof *rc);
    rc->rq = rq;
    int err = recommend_check(rq, e);
    if (err) return err;
    /* The member's variant answers; anonymous visitors get control's. */
    pthread_mutex_lock(&c->lock);
    if (rq->user_id[0] && c->exp.n > 1)
        rc->variant = exp_assign(&c->exp, rq->user_id, strlen(rq->user_id));
    exp_request_id(&c->exp, rc->variant, rc->request_id);
    pthread_mutex_unlock(&c->lock);
    rc->sm = core__acquire_variant(c, rc->variant);
    const model *m = rc->sm->m;
    const model_meta *meta = model_info(m);
    rc->x = malloc(meta->factors * sizeof *rc->x);
    rc->mu = core__multipliers_get(c, rc->sm);
    if (!rc->x || !rc->mu)
        return err_set(e, ERR_NOMEM, "out of memory scoring %u items", meta->n_items);
    if (rq->category[0] && (err = category_index(m, rq->category, &rc->category, e))) return err;
    if (rq->mode == CORE_MODE_BUY_AGAIN && !model_rebuy(m))
        return err_set(e, ERR_PRECONDITION,
                       "model %s has no repurchase model for mode BUY_AGAIN (published before it, "
                       "or trained with --repeat-horizon 0)",
                       meta->version);
    /* A member who opted out (or was forgotten) gets what anyone would. */
    int private = rq->user_id[0] && core__privacy(c, rq->user_id, strlen(rq->user_id));
    if (!private && (err = core__shopper_collect(c, m, rq->user_id, rq->context_item_ids,
                                                 rq->n_context_item_ids, &rc->sh, e)))
        return err;
    rc->strategy = CORE_POPULAR;
    if (!private &&
        (err = core__shopper_vector(rc->sm, &rc->sh, !rq->user_id[0], rc->x, &rc->strategy, e)))
        return err;
    if (rc->sh.n_signals && rc->strategy != CORE_POPULAR) atomic_fetch_add(&c->fold_ins, 1);
    if (model_item_rows(m) && rc->strategy != CORE_POPULAR &&
        (err = core__item_scores(m, &rc->sh, rc->x, &rc->ii, e)))
        return err;
    if (private) rc->sh.user = SCORE_NO_USER;
    return ERR_OK;
}

/* Answers a call with its chosen items (best first). */
static int recommend_respond(core *c, const recommend_call *rc, const topk_entry *top, uint32_t n,
                             core_list *out, err_t *e) {
    int err = list_build(out, rc->sm->m, top, n, NULL, 0, e);
    if (err) return err;
    /* Relaxed: the counts are a tally read now and then, not a sync. */
    atomic_fetch_add_explicit(&rc->sm->answers, 1, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        atomic_fetch_add_explicit(&rc->sm->recommended[top[i].index], 1, memory_order_relaxed);
    out->strategy = rc->strategy;
    memcpy(out->model_version, model_info(rc->sm->m)->version, sizeof out->model_version);
    memcpy(out->request_id, rc->request_id, sizeof out->request_id);
    out->variant = c->exp.names[rc->variant];
    return ERR_OK;
}

/* Whether a call ranks bought items by their repurchase probability beside
 * new ones: include_purchased, a personalized answer and a model with a
 * repurchase model. */
static int recommend_rebuys(const recommend_call *rc) {
    return rc->rq->include_purchased && rc->strategy == CORE_PERSONALIZED &&
           model_rebuy(rc->sm->m) != NULL;
}

typedef struct fresh_buy {
    uint32_t item;
    int64_t ts;
} fresh_buy;

static int cmp_fresh(const void *a, const void *b) {
    const fresh_buy *x = a, *y = b;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static int64_t day_of(int64_t ts) {
    return ts >= 0 ? ts / 86400 : -((-ts + 86399) / 86400);
}

/* The repurchase probability (util/rebuy.h) of every item the member
 * bought - stored in the model, and recorded since: a recorded purchase
 * is one more occasion (per day) and resets the item's clock - into scores,
 * -INFINITY for every other item, then the request's and the storefront's
 * rules as for any list. Needs a model with a repurchase model. Returns
 * ERR_OK or ERR_NOMEM (the recorded purchases could not be sorted: the
 * clocks they reset would be missed, so the call fails instead). */
static int rebuy_scores(const recommend_call *rc, float *scores, err_t *e) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    const model_meta *meta = model_info(m);
    const rebuy_model *rb = model_rebuy(m);
    const core__shopper *sh = &rc->sh;
    for (uint32_t i = 0; i < meta->n_items; i++)
        scores[i] = -INFINITY;
    int64_t now = (int64_t)time(NULL);
    double ahead = (double)(now - meta->data_until) / 86400.0; /* days since the model's data */
    uint32_t n_stored = 0;
    const uint32_t *stored = NULL;
    const float *pairs = NULL;
    if (sh->user != SCORE_NO_USER) {
        stored = model_user_items(m, sh->user, &n_stored);
        pairs = model_rebuy_pairs(m, sh->user);
        for (uint32_t j = 0; j < n_stored; j++) {
            const float *q = pairs + (size_t)j * REBUY_PAIR_FLOATS;
            if (q[0] > 0)
                scores[stored[j]] =
                    (float)rebuy_probability(rb, stored[j], q[0], q[1] + ahead, q[2]);
        }
    }
    fresh_buy *fresh = sh->n_bought ? malloc(sh->n_bought * sizeof *fresh) : NULL;
    if (sh->n_bought && !fresh)
        return err_set(e, ERR_NOMEM, "out of memory for %zu recorded purchases", sh->n_bought);
    if (fresh) {
        for (size_t i = 0; i < sh->n_bought; i++)
            fresh[i] = (fresh_buy){sh->bought[i], sh->bought_ts[i]};
        qsort(fresh, sh->n_bought, sizeof *fresh, cmp_fresh);
        for (size_t i = 0, j; i < sh->n_bought; i = j) {
            double days = 1;
            for (j = i + 1; j < sh->n_bought && fresh[j].item == fresh[i].item; j++)
                days += day_of(fresh[j].ts) != day_of(fresh[j - 1].ts);
            uint32_t item = fresh[i].item;
            int64_t first = fresh[i].ts, last = fresh[j - 1].ts;
            double n = days, span = (double)(day_of(last) - day_of(first));
            /* The stored occasions come first: the span reaches back to them. */
            uint32_t lo = 0, hi = n_stored;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (stored[mid] < item)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < n_stored && stored[lo] == item && pairs[(size_t)lo * REBUY_PAIR_FLOATS] > 0) {
                const float *q = pairs + (size_t)lo * REBUY_PAIR_FLOATS;
                int64_t stored_last = meta->data_until - (int64_t)((double)q[1] * 86400.0);
                n += q[0] - (day_of(first) == day_of(stored_last));
                span = (double)q[2] + (double)(day_of(last) - day_of(stored_last));
            }
            scores[item] =
                (float)rebuy_probability(rb, item, n, (double)(now - last) / 86400.0, span);
        }
        free(fresh);
    }
    exclude_ids(m, rq->context_item_ids, rq->n_context_item_ids, scores);
    exclude_ids(m, rq->exclude_item_ids, rq->n_exclude_item_ids, scores);
    if (rc->mu->any) score_apply_multipliers(scores, rc->mu->v, meta->n_items);
    if (rq->category[0]) score_keep_category(m, rc->category, scores);
    return ERR_OK;
}

/* Answers a prepared call from scores: n_items floats holding x . y_i for
 * every item (for POPULAR anything: replaced here), used as scratch. A
 * member answered POPULAR (by a popularity-only model) still does not get
 * what they bought. */
static int recommend_answer(core *c, recommend_call *rc, float *scores, core_list *out, err_t *e) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    const model_meta *meta = model_info(m);
    const core__shopper *sh = &rc->sh;
    if (rc->strategy == CORE_POPULAR) {
        /* Nothing to personalize from (or a popularity-only model): the best sellers. */
        memcpy(scores, model_item_popularity(m), (size_t)meta->n_items * sizeof *scores);
    } else {
        score_add_popularity(m, 0, meta->n_items, scores);
    }
    /* With a repurchase model, bought items join below on their own scale. */
    int rebuy = recommend_rebuys(rc), include = rq->include_purchased && !rebuy;
    if (!include && sh->user != SCORE_NO_USER) {
        uint32_t n_bought;
        const uint32_t *bought = model_user_items(m, sh->user, &n_bought);
        /* With the repurchase model, what was only viewed or carted is new. */
        const float *pairs = rebuy ? model_rebuy_pairs(m, sh->user) : NULL;
        for (uint32_t i = 0; i < n_bought; i++)
            if (!pairs || pairs[(size_t)i * REBUY_PAIR_FLOATS] > 0) scores[bought[i]] = -INFINITY;
    }
    if (!include)
        for (size_t i = 0; i < sh->n_bought; i++)
            scores[sh->bought[i]] = -INFINITY;
    exclude_ids(m, rq->context_item_ids, rq->n_context_item_ids, scores);
    exclude_ids(m, rq->exclude_item_ids, rq->n_exclude_item_ids, scores);
    if (rc->mu->any) score_apply_multipliers(scores, rc->mu->v, meta->n_items);
    if (rq->category[0]) score_keep_category(m, rc->category, scores);
    uint32_t n;
    err_t why;
    topk_entry *top = malloc(rq->k * sizeof *top);
    if (!top) return err_set(e, ERR_NOMEM, "out of memory for the top %u", rq->k);
    if (score_top_k(m, scores, rq->k, rq->diversity, top, &n, &why)) {
        free(top);
        return err_set(e, why.code, "%s", why.msg);
    }
    topk_entry *due = rebuy ? malloc(rq->k * sizeof *due) : NULL;
    topk_entry *merged = rebuy ? malloc(rq->k * sizeof *merged) : NULL;
    int err = ERR_OK;
    if (rebuy && (!due || !merged)) {
        err = err_set(e, ERR_NOMEM, "out of memory for the top %u", rq->k);
    } else if (rebuy) {
        /* The new items' scores are spent: the buffer holds the bought ones'. */
        if (!(err = rebuy_scores(rc, scores, e))) {
            uint32_t n_due = topk_select(scores, meta->n_items, rq->k, due);
            n = rebuy_merge(model_rebuy(m), due, n_due, top, n, rq->k, merged);
            err = recommend_respond(c, rc, merged, n, out, e);
        }
    } else {
        err = recommend_respond(c, rc, top, n, out, e);
    }
    free(due);
    free(merged);
    free(top);
    return err;
}

/* Mode BUY_AGAIN: the member's bought items, most due first. */
static int buy_again_answer(core *c, recommend_call *rc, float *scores, core_list *out, err_t *e) {
    const model *m = rc->sm->m;
    topk_entry *top = malloc(rc->rq->k * sizeof *top);
    if (!top) return err_set(e, ERR_NOMEM, "out of memory for the top %u", rc->rq->k);
    int err = rebuy_scores(rc, scores, e);
    if (!err) {
        uint32_t n = topk_select(scores, model_info(m)->n_items, rc->rq->k, top);
        rc->strategy = CORE_BUY_AGAIN;
        err = recommend_respond(c, rc, top, n, out, e);
    }
    free(top);
    return err;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Every item a call must not return (what the user bought, unless
 * include_purchased; context and excluded items), sorted and deduplicated
 * into *out (caller frees). Returns the count, or -1 when out of memory. */
static long recommend_exclusions(const recommend_call *rc, uint32_t **out) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    uint32_t n_stored = 0;
    const uint32_t *stored = NULL;
    if (!rq->include_purchased && rc->sh.user != SCORE_NO_USER)
        stored = model_user_items(m, rc->sh.user, &n_stored);
    size_t n_bought = rq->include_purchased ? 0 : rc->sh.n_bought;
    size_t cap = n_stored + n_bought + rq->n_context_item_ids + rq->n_exclude_item_ids;
    uint32_t *ex = malloc((cap ? cap : 1) * sizeof *ex);
    if (!ex) return -1;
    size_t n = 0;
    for (uint32_t i = 0; i < n_stored; i++)
        ex[n++] = stored[i];
    for (size_t i = 0; i < n_bought; i++)
        ex[n++] = rc->sh.bought[i];
    char *const *lists[2] = {rq->context_item_ids, rq->exclude_item_ids};
    size_t lens[2] = {rq->n_context_item_ids, rq->n_exclude_item_ids};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < lens[l]; i++)
            if (model_item_index(m, lists[l][i], strlen(lists[l][i]), &ex[n]) == ERR_OK) n++;
    qsort(ex, n, sizeof *ex, cmp_u32);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || ex[i] != ex[w - 1]) ex[w++] = ex[i];
    *out = ex;
    return (long)w;
}

/* Each call is prepared on its own, then the personalized ones of one model
 * are scored together, block of items by block, from the model's bfloat16
 * panels: one pass over a block serves all of the calls (instead of one
 * pass per call: the whole cost on a large catalogue), and each call keeps
 * a running top-k, so no call needs a row of all the items. The few items
 * whose panel scores come within the error bound of the cut are scored
 * again in float32, so the answer is exactly the float32 ranking. Calls
 * with diversity (MMR looks at a pool of candidates) and POPULAR ones are
 * answered one by one. */
void core_recommend_batch(core *c, const core_recommend_req *const *reqs, size_t n, core_list *out,
                          err_t *errs) {
    recommend_call calls[CORE_MAX_BATCH];
    int ready[CORE_MAX_BATCH];
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        errs[i].code = ERR_OK;
        ready[i] = recommend_prepare(c, reqs[i], &calls[i], &errs[i]) == ERR_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ready[i]) continue;
        recommend_call *rc = &calls[i];
        /* Item-item models have their scores already (rc->ii); bought items
         * on their repurchase probability need the whole row. */
        int buy_again = rc->rq->mode == CORE_MODE_BUY_AGAIN;
        if (rc->strategy == CORE_POPULAR || rc->rq->diversity > 0 || rc->ii || buy_again ||
            recommend_rebuys(rc)) {
            float *scores = core__scores_buffer(model_info(rc->sm->m)->n_items);
            if (!scores) {
                err_set(&errs[i], ERR_NOMEM, "out of memory scoring");
            } else if (buy_again) {
                buy_again_answer(c, rc, scores, &out[i], &errs[i]);
            } else {
                if (rc->ii)
                    memcpy(scores, rc->ii, model_info(rc->sm->m)->n_items * sizeof *scores);
                else if (rc->strategy != CORE_POPULAR)
                    score_items(rc->sm->m, rc->x, scores);
                recommend_answer(c, rc, scores, &out[i], &errs[i]);
            }
            ready[i] = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!ready[i]) continue;
        const model *m = calls[i].sm->m;
        size_t group[CORE_MAX_BATCH], g = 0;
        for (size_t j = i; j < n; j++)
            if (ready[j] && calls[j].sm == calls[i].sm) group[g++] = j;
        score_query q[CORE_MAX_BATCH] = {0};
        uint32_t *excluded[CORE_MAX_BATCH] = {0};
        float *work = core__scores_buffer(score_batch_workspace(g));
        err_t why;
        int rc = work ? ERR_OK
                      : err_set(&why, ERR_NOMEM, "out of memory scoring %u items",
                                model_info(m)->n_items);
        for (size_t k = 0; k < g && rc == ERR_OK; k++) {
            recommend_call *call = &calls[group[k]];
            long n_excluded = recommend_exclusions(call, &excluded[k]);
            q[k] = (score_query){
                .x = call->x,
                .k = call->rq->k,
                .excluded = excluded[k],
                .n_excluded = n_excluded > 0 ? (size_t)n_excluded : 0,
                .multipliers = call->mu->any ? call->mu->v : NULL,
                .max_slope = call->mu->any ? call->mu->max_slope : 1.0f,
                .category = call->rq->category[0] ? (int64_t)call->category : -1,
                .best = malloc(call->rq->k * sizeof *q[k].best),
            };
            if (n_excluded < 0 || !q[k].best)
                rc = err_set(&why, ERR_NOMEM, "out of memory scoring %u items",
                             model_info(m)->n_items);
        }
        if (rc == ERR_OK) rc = score_batch(m, q, g, work, &why);
        for (size_t k = 0; k < g; k++) {
            size_t at = group[k];
            if (rc)
                errs[at] = why;
            else
                recommend_respond(c, &calls[at], q[k].best, q[k].n_best, &out[at], &errs[at]);
            free(q[k].best);
            free(excluded[k]);
            ready[at] = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!errs[i].code && out[i].strategy >= CORE_PERSONALIZED &&
            out[i].strategy <= CORE_BUY_AGAIN)
            atomic_fetch_add(&c->strategies[out[i].strategy], 1);
        recommend_free(&calls[i]);
    }
}

int core_recommend(core *c, const core_recommend_req *req, core_list *out, err_t *e) {
    err_t why;
    core_recommend_batch(c, &req, 1, out, &why);
    if (why.code && e) *e = why;
    return why.code;
}

/* --- SimilarItems ---------------------------------------------------------- */

/* The storefront's rules, the request's exclusions and category and the
 * seeds' exclusion on scores, then the top k into top: one path for both
 * relations. category is an index of m, or -1 for any. Returns how many. */
static uint32_t similar_top(const model *m, const core_similar_req *rq, const uint32_t *seeds,
                            size_t n_seeds, const core__multipliers *mu, int64_t category,
                            float *scores, topk_entry *top) {
    uint32_t n_items = model_info(m)->n_items;
    for (size_t i = 0; i < n_seeds; i++)
        scores[seeds[i]] = -INFINITY;
    exclude_ids(m, rq->exclude_item_ids, rq->n_exclude_item_ids, scores);
    if (mu->any) score_apply_multipliers(scores, mu->v, n_items);
    if (category >= 0) score_keep_category(m, (uint32_t)category, scores);
    return topk_select(scores, n_items, rq->k, top);
}

int core_similar(core *c, const core_similar_req *rq, core_list *out, err_t *e) {
    memset(out, 0, sizeof *out);
    int err;
    if ((err = core__check_k(rq->k, e))) return err;
    if ((rq->item_id[0] || rq->n_item_ids == 0) &&
        (err = core__check_id("item_id", rq->item_id, e)))
        return err;
    if ((err = core__check_ids("item_ids", rq->item_ids, rq->n_item_ids, e)) ||
        (err = core__check_ids("exclude_item_ids", rq->exclude_item_ids, rq->n_exclude_item_ids,
                               e)) ||
        (rq->category[0] && (err = core__check_id("category", rq->category, e))))
        return err;
    if (rq->relation != CORE_RELATION_SIMILAR && rq->relation != CORE_RELATION_BOUGHT_TOGETHER)
        return err_set(e, ERR_INVALID,
                       "relation %d is not a Relation (RELATION_SIMILAR = 0, BOUGHT_TOGETHER = 1)",
                       (int)rq->relation);
    core__model *sm = core__acquire(c);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    float *scores = core__scores_buffer(meta->n_items);
    uint32_t *seeds = malloc((rq->n_item_ids + 1) * sizeof *seeds);
    topk_entry *top = malloc(rq->k * sizeof *top);
    core__multipliers *mu = core__multipliers_get(c, sm);
    if (!scores || !seeds || !top || !mu) {
        err = err_set(e, ERR_NOMEM, "out of memory scoring %u items", meta->n_items);
        goto done;
    }
    /* Seeds the model does not know (new items) are passed over as long as
     * one is known: a cart often holds something new. */
    size_t n_seeds = 0;
    const char *unknown = NULL;
    for (size_t i = 0; i <= rq->n_item_ids; i++) {
        const char *id = i == 0 ? rq->item_id : rq->item_ids[i - 1];
        if (!id[0]) continue;
        if (model_item_index(m, id, strlen(id), &seeds[n_seeds]) == ERR_OK)
            n_seeds++;
        else if (!unknown)
            unknown = id;
    }
    if (n_seeds == 0) {
        err =
            err_set(e, ERR_NOTFOUND, "item '%.*s' is not in model %s", 64, unknown, meta->version);
        goto done;
    }
    uint32_t cat;
    if (rq->category[0] && (err = category_index(m, rq->category, &cat, e))) goto done;
    int64_t category = rq->category[0] ? (int64_t)cat : -1;
    uint32_t n = 0;
    /* Complements first when asked for; SIMILAR answers when the seeds were
     * bought with nothing that the storefront lets through. */
    if (rq->relation == CORE_RELATION_BOUGHT_TOGETHER &&
        score_together(m, seeds, n_seeds, scores) > 0)
        n = similar_top(m, rq, seeds, n_seeds, mu, category, scores, top);
    if (n == 0) {
        out->fell_back = rq->relation == CORE_RELATION_BOUGHT_TOGETHER;
        /* An item-item model answers from its rows (what having the seeds
         * says for each item), ALS from the cosine of its factors. */
        if (model_item_rows(m))
            score_similar_rows(m, seeds, n_seeds, scores);
        else if ((err = score_similar(m, seeds, n_seeds, scores, e)))
            goto done;
        n = similar_top(m, rq, seeds, n_seeds, mu, category, scores, top);
    }
    if (!(err = list_build(out, m, top, n, NULL, 0, e)))
        memcpy(out->model_version, meta->version, sizeof out->model_version);
done:
    core__multipliers_release(mu);
    free(top);
    free(seeds);
    core__release(sm);
    return err;
}

/* --- Rerank ---------------------------------------------------------------- */

static int rerank_check(const core_rerank_req *rq, err_t *e) {
    int err;
    if (rq->n_candidate_item_ids == 0)
        return err_set(e, ERR_INVALID, "candidate_item_ids is empty");
    if ((rq->user_id[0] && (err = core__check_id("user_id", rq->user_id, e))) ||
        (err = core__check_ids("candidate_item_ids", rq->candidate_item_ids,
                               rq->n_candidate_item_ids, e)) ||
        (err =
             core__check_ids("context_item_ids", rq->context_item_ids, rq->n_context_item_ids, e)))
        return err;
    return ERR_OK;
}

int core_rerank(core *c, const core_rerank_req *rq, core_list *out, err_t *e) {
    memset(out, 0, sizeof *out);
    int err = rerank_check(rq, e);
    if (err) return err;
    core__shopper sh;
    memset(&sh, 0, sizeof sh);
    core__model *sm = core__acquire(c);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    size_t n = rq->n_candidate_item_ids;
    topk_entry *known = malloc(n * sizeof *known);
    char **unknown = malloc(n * sizeof *unknown);
    float *x = malloc(meta->factors * sizeof *x), *ii = NULL;
    core__multipliers *mu = core__multipliers_get(c, sm);
    if (!known || !unknown || !x || !mu) {
        err = err_set(e, ERR_NOMEM, "out of memory reranking");
        goto done;
    }
    int private = rq->user_id[0] && core__privacy(c, rq->user_id, strlen(rq->user_id));
    if (!private && (err = core__shopper_collect(c, m, rq->user_id, rq->context_item_ids,
                                                 rq->n_context_item_ids, &sh, e)))
        goto done;
    core_strategy strategy = CORE_POPULAR;
    if (!private && (err = core__shopper_vector(sm, &sh, !rq->user_id[0], x, &strategy, e)))
        goto done;
    const float *y = model_item_factors(m), *popularity = model_item_popularity(m);
    if (model_item_rows(m) && strategy != CORE_POPULAR &&
        (err = core__item_scores(m, &sh, x, &ii, e)))
        goto done;
    size_t n_known = 0, n_unknown = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = rq->candidate_item_ids[i];
        uint32_t item;
        if (model_item_index(m, id, strlen(id), &item) != ERR_OK) {
            unknown[n_unknown++] = rq->candidate_item_ids[i];
            continue;
        }
        int seen = 0; /* a candidate listed twice is ranked once */
        for (size_t j = 0; j < n_known && !seen; j++)
            seen = known[j].index == item;
        if (seen) continue;
        float score = 0;
        if (strategy == CORE_POPULAR) {
            score = popularity[item];
        } else if (ii) {
            score = ii[item];
            score_add_popularity(m, item, 1, &score);
        } else {
            const float *row = y + (size_t)item * meta->factors;
            for (uint32_t f = 0; f < meta->factors; f++)
                score += x[f] * row[f];
            score_add_popularity(m, item, 1, &score);
        }
        if (mu->any) score_apply_multipliers(&score, &mu->v[item], 1);
        if (score > -INFINITY) known[n_known++] = (topk_entry){item, score};
    }
    topk_sort(known, (uint32_t)n_known);
    if (!(err = list_build(out, m, known, n_known, unknown, n_unknown, e))) {
        out->strategy = strategy;
        memcpy(out->model_version, meta->version, sizeof out->model_version);
    }
done:
    core__shopper_free(&sh);
    core__multipliers_release(mu);
    free(x);
    free(ii);
    free(known);
    free(unknown);
    core__release(sm);
    return err;
}

/* --- item stats -------------------------------------------------------------- */

void core_item_stats_reply_free(core_item_stats_reply *s) {
    free(s->top);
    free(s->rules);
    memset(s, 0, sizeof *s);
}

typedef struct item_tally {
    uint32_t index;
    uint64_t count;
} item_tally;

static int tally_cmp(const void *a, const void *b) {
    const item_tally *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* The top k of sm's counters into out->top (entries, then their ids, one
 * block). Returns ERR_OK or ERR_NOMEM. */
static int item_top(const core__model *sm, uint32_t k, core_item_stats_reply *out, err_t *e) {
    const model *m = sm->m;
    uint32_t n_items = model_info(m)->n_items;
    size_t n = 0;
    for (uint32_t i = 0; i < n_items; i++)
        n += atomic_load_explicit(&sm->recommended[i], memory_order_relaxed) != 0;
    item_tally *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) return err_set(e, ERR_NOMEM, "out of memory counting %zu items", n);
    /* Counters still move: at most the n counted before are taken. */
    size_t w = 0;
    for (uint32_t i = 0; i < n_items && w < n; i++) {
        uint64_t count = atomic_load_explicit(&sm->recommended[i], memory_order_relaxed);
        if (count) t[w++] = (item_tally){i, count};
    }
    qsort(t, w, sizeof *t, tally_cmp);
    size_t top = w < k ? w : k, bytes = 0, len;
    for (size_t i = 0; i < top; i++) {
        model_item_id(m, t[i].index, &len);
        bytes += len + 1;
    }
    out->top = malloc(top * sizeof *out->top + bytes + 1);
    if (!out->top) {
        free(t);
        return err_set(e, ERR_NOMEM, "out of memory for the top %u", k);
    }
    char *at = (char *)(out->top + top);
    for (size_t i = 0; i < top; i++) {
        const char *id = model_item_id(m, t[i].index, &len);
        memcpy(at, id, len);
        at[len] = '\0';
        out->top[i] = (core_item_count){at, t[i].count};
        at += len + 1;
    }
    out->n_top = top;
    free(t);
    return ERR_OK;
}

int core_item_stats(core *c, const core_item_stats_req *req, core_item_stats_reply *out, err_t *e) {
    memset(out, 0, sizeof *out);
    uint32_t k = req->k ? req->k : CORE_ITEM_STATS_K;
    if (core__check_k(k, e)) return e->code;
    uint32_t max_rules = req->max_rules ? req->max_rules : CORE_ITEM_STATS_RULES;
    if (max_rules > CORE_MAX_LIST)
        return err_set(e, ERR_INVALID, "max_rules must be at most %d, got %u", CORE_MAX_LIST,
                       max_rules);
    uint32_t v = 0;
    if (req->variant[0]) {
        if (!exp_name_valid(req->variant))
            return err_set(e, ERR_INVALID, "variant must be 1..%d bytes of [A-Za-z0-9_-]",
                           EXP_MAX_NAME);
        while (v < c->exp.n && strcmp(c->exp.names[v], req->variant))
            v++;
        if (v == c->exp.n) return err_set(e, ERR_NOTFOUND, "no variant %s", req->variant);
    }
    core__model *sm = core__acquire_variant(c, v);
    out->variant = c->exp.names[v];
    memcpy(out->model_version, model_info(sm->m)->version, sizeof out->model_version);
    out->counted_since = sm->loaded_unix;
    out->answers = atomic_load_explicit(&sm->answers, memory_order_relaxed);
    int rc = item_top(sm, k, out, e);
    core__release(sm);
    size_t n_rules = 0;
    if (rc || (rc = catalog_rules(c->rules, &out->rules, &n_rules, e))) {
        core_item_stats_reply_free(out);
        return rc;
    }
    size_t unavailable = 0;
    while (unavailable < n_rules && !out->rules[unavailable].available)
        unavailable++;
    out->unavailable_total = (uint32_t)unavailable;
    out->boosted_total = (uint32_t)(n_rules - unavailable);
    out->n_unavailable = unavailable < max_rules ? unavailable : max_rules;
    out->n_boosted = out->boosted_total < max_rules ? out->boosted_total : max_rules;
    return ERR_OK;
}
