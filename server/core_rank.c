/* core_rank: the ranked operations - Recommend (alone or batched),
 * SimilarItems and Rerank - from the served model, the shopper's fresh
 * signals and the storefront's item multipliers; and the item stats of
 * what Recommend served. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_int.h"
#include "topk.h"

/* --- lists ----------------------------------------------------------------- */

/* Fills out->items with n entries of top (best first; indexes of
 * core__item_lookup), entry i naming the items because[i *
 * CORE_EXPLAIN_ITEMS ...] (n_because[i] of them; both NULL: none), and then
 * n_unknown ids the model does not know, with score 0, all in one block. */
static int list_build(core_list *out, const model *m, const core__upserts *up,
                      const topk_entry *top, size_t n, const uint32_t *because,
                      const uint32_t *n_because, char *const *unknown, size_t n_unknown, err_t *e) {
    size_t bytes = 0, len;
    for (size_t i = 0; i < n; i++) {
        core__item_id(m, up, top[i].index, &len);
        bytes += len + 1;
        for (uint32_t b = 0; because && b < n_because[i]; b++) {
            model_item_id(m, because[i * CORE_EXPLAIN_ITEMS + b], &len);
            bytes += len + 1;
        }
    }
    for (size_t i = 0; i < n_unknown; i++)
        bytes += strlen(unknown[i]) + 1;
    size_t total = n + n_unknown;
    core_item *items = malloc(total * sizeof *items + (bytes ? bytes : 1));
    if (!items) return err_set(e, ERR_NOMEM, "out of memory building the response");
    char *at = (char *)(items + total);
    for (size_t i = 0; i < total; i++) {
        const char *id = i < n ? core__item_id(m, up, top[i].index, &len) : unknown[i - n];
        if (i >= n) len = strlen(id);
        memcpy(at, id, len);
        at[len] = '\0';
        items[i] = (core_item){.id = at, .score = i < n ? top[i].score : 0.0f};
        at += len + 1;
        for (uint32_t b = 0; i < n && because && b < n_because[i]; b++) {
            id = model_item_id(m, because[i * CORE_EXPLAIN_ITEMS + b], &len);
            memcpy(at, id, len);
            at[len] = '\0';
            items[i].because[items[i].n_because++] = at;
            at += len + 1;
        }
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

/* category as m and the upserted items know it: ERR_OK when one of them
 * does; else ERR_PRECONDITION (neither has categories) or ERR_NOTFOUND,
 * with a message for the caller's client. */
static int category_resolve(const model *m, const core__upserts *up, const char *category,
                            core__category *out, err_t *e) {
    size_t len = strlen(category);
    if (model_category_index(m, category, len, &out->model) != ERR_OK) out->model = UINT32_MAX;
    if (!up->cats || idmap_find(up->cats, category, len, &out->upserted) != ERR_OK)
        out->upserted = UINT32_MAX;
    if (out->model != UINT32_MAX || out->upserted != UINT32_MAX) return ERR_OK;
    if (model_n_categories(m) == 0 && (!up->cats || idmap_size(up->cats) == 0))
        return err_set(e, ERR_PRECONDITION,
                       "model %s has no item categories to filter by, nor any upserted item",
                       model_info(m)->version);
    return err_set(e, ERR_NOTFOUND, "category '%.*s' is not in model %s nor of an upserted item",
                   64, category, model_info(m)->version);
}

/* Keeps, of the model's n_items scores, only the items of cat by the
 * model's categories; the known items whose upsert named categories are
 * left out here, for they are ranked with the upserted ones. */
static void category_filter(const model *m, const core__upserts *up, const core__category *cat,
                            float *scores) {
    uint32_t n_items = model_info(m)->n_items;
    if (cat->model == UINT32_MAX)
        for (uint32_t i = 0; i < n_items; i++)
            scores[i] = -INFINITY;
    else
        score_keep_category(m, cat->model, scores);
    for (uint32_t r = 0; r < up->n_rows && up->row_item[r] < n_items; r++)
        if (up->cat_ptr[r + 1] > up->cat_ptr[r]) scores[up->row_item[r]] = -INFINITY;
}

/* Whether some known item's upsert named categories: then a category
 * filter is not the model's alone. */
static int categories_upserted(const model *m, const core__upserts *up) {
    return up->n_rows > 0 && up->row_item[0] < model_info(m)->n_items;
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
        return err_set(e, ERR_UNIMPLEMENTED, "mode %s is not implemented by this server",
                       core_mode_name(rq->mode));
    if (rq->mode == CORE_MODE_BUY_AGAIN && !rq->user_id[0])
        return err_set(e, ERR_INVALID,
                       "mode BUY_AGAIN needs a user_id: only a member has bought before");
    if (rq->user_id[0] || (rq->n_context_item_ids == 0 && rq->n_user_labels == 0)) {
        if (!rq->user_id[0])
            return err_set(e, ERR_INVALID,
                           "user_id is empty and there are no context_item_ids nor user_labels");
        if ((rc = core__check_id("user_id", rq->user_id, e))) return rc;
    }
    if (rq->new_days > 36500)
        return err_set(e, ERR_INVALID, "new_days must be at most 36500, got %u", rq->new_days);
    if ((rc = core__check_ids("user_labels", rq->user_labels, rq->n_user_labels, e)) ||
        (rc = core__check_ids("context_item_ids", rq->context_item_ids, rq->n_context_item_ids,
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
    core__storefront *mu;
    core__shopper sh;
    float *x;
    float *ii; /* an item-item model's scores of every item (n_items), or NULL */
    core__category category;
    uint32_t variant;
    core_strategy strategy;
    int personal; /* the shopper has a vector (x, or ii), so their own scores count */
    char request_id[EXP_REQUEST_ID_MAX];
} recommend_call;

static void recommend_free(recommend_call *rc) {
    core__shopper_free(&rc->sh);
    core__storefront_release(rc->mu);
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
    rc->mu = core__storefront_get(c, rc->sm);
    if (!rc->x || !rc->mu)
        return err_set(e, ERR_NOMEM, "out of memory scoring %u items", meta->n_items);
    if (rq->category[0] && (err = category_resolve(m, &rc->mu->up, rq->category, &rc->category, e)))
        return err;
    if (rq->mode == CORE_MODE_BUY_AGAIN && !model_rebuy(m))
        return err_set(e, ERR_PRECONDITION,
                       "model %s has no repurchase model for mode BUY_AGAIN (published before it, "
                       "or trained with --repeat-horizon 0)",
                       meta->version);
    if (rq->mode == CORE_MODE_TRENDING && !c->trend)
        return err_set(e, ERR_PRECONDITION,
                       "mode TRENDING counts recorded events: start recd serve with --events DIR");
    /* A member who opted out (or was forgotten) gets what anyone would. */
    int private = rq->user_id[0] && core__privacy(c, rq->user_id, strlen(rq->user_id));
    if (!private &&
        (err = core__shopper_collect(c, m, &rc->mu->up, rq->user_id, rq->context_item_ids,
                                     rq->n_context_item_ids, &rc->sh, e)))
        return err;
    rc->strategy = CORE_POPULAR;
    /* An unblended trending list is everyone's: no vector to spend on. */
    int vector = !private && !(rq->mode == CORE_MODE_TRENDING && !(c->trending_personal > 0.0f));
    if (vector &&
        (err = core__shopper_vector(rc->sm, &rc->sh, !rq->user_id[0], rc->x, &rc->strategy, e)))
        return err;
    /* Nothing bought, nothing carted: the visitor's labels say what there is. */
    if (!private && rc->strategy == CORE_POPULAR && rc->sh.user == SCORE_NO_USER &&
        rc->sh.n_signals == 0 && !isinf(meta->popularity_blend) &&
        core__labels_vector(m, rq->user_labels, rq->n_user_labels, rc->x) > 0)
        rc->strategy = CORE_ATTRIBUTES;
    rc->personal = rc->strategy != CORE_POPULAR;
    if (rc->sh.n_signals && rc->strategy != CORE_POPULAR) atomic_fetch_add(&c->fold_ins, 1);
    /* An item-item model has no row for labels: their vector scores by the factors. */
    if (model_item_rows(m) && rc->strategy != CORE_POPULAR && rc->strategy != CORE_ATTRIBUTES &&
        (err = core__item_scores(m, &rc->sh, rc->x, &rc->ii, e)))
        return err;
    if (private) rc->sh.user = SCORE_NO_USER;
    return ERR_OK;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Every item a call must not return (what the user bought, unless
 * include_purchased; context and excluded items), sorted and deduplicated
 * into *out (caller frees): model items first, then upserted ones (index
 * n_items and up). Returns the count, or -1 when out of memory. */
static long recommend_exclusions(const recommend_call *rc, uint32_t **out) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    uint32_t n_stored = 0;
    const uint32_t *stored = NULL;
    if (!rq->include_purchased && rc->sh.user != SCORE_NO_USER)
        stored = model_user_items(m, rc->sh.user, &n_stored);
    size_t n_bought = rq->include_purchased ? 0 : rc->sh.n_bought;
    size_t n_new = rq->include_purchased ? 0 : rc->sh.n_new_bought;
    size_t cap = n_stored + n_bought + n_new + rq->n_context_item_ids + rq->n_exclude_item_ids;
    uint32_t *ex = malloc((cap ? cap : 1) * sizeof *ex);
    if (!ex) return -1;
    size_t n = 0;
    for (uint32_t i = 0; i < n_stored; i++)
        ex[n++] = stored[i];
    for (size_t i = 0; i < n_bought; i++)
        ex[n++] = rc->sh.bought[i];
    for (size_t i = 0; i < n_new; i++)
        ex[n++] = rc->sh.new_bought[i];
    char *const *lists[2] = {rq->context_item_ids, rq->exclude_item_ids};
    size_t lens[2] = {rq->n_context_item_ids, rq->n_exclude_item_ids};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < lens[l]; i++)
            if (core__item_lookup(m, &rc->mu->up, lists[l][i], &ex[n]) == ERR_OK) n++;
    qsort(ex, n, sizeof *ex, cmp_u32);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || ex[i] != ex[w - 1]) ex[w++] = ex[i];
    *out = ex;
    return (long)w;
}

/* Whether index is in the sorted list ex of n. */
static int excluded_has(const uint32_t *ex, size_t n, uint32_t index) {
    return bsearch(&index, ex, n, sizeof *ex, cmp_u32) != NULL;
}

/* How many of the n sorted exclusions are model items (they come first). */
static size_t excluded_model_items(const uint32_t *ex, size_t n, uint32_t n_items) {
    size_t k = 0;
    while (k < n && ex[k] < n_items)
        k++;
    return k;
}

/* The call's score of model item index after the storefront's multiplier:
 * what the model part would have given it. (An upserted item the model does
 * not know is scored by new_item_scores: never sold, the popularity blend
 * adds nothing to it.) */
static float candidate_score(const recommend_call *rc, uint32_t index) {
    const model *m = rc->sm->m;
    const model_meta *meta = model_info(m);
    float s = 0, mult = rc->mu->any ? rc->mu->v[index] : 1.0f;
    if (rc->strategy == CORE_POPULAR) {
        s = model_item_popularity(m)[index];
    } else {
        if (rc->ii) {
            s = rc->ii[index];
        } else {
            const float *y = model_item_factors(m) + (size_t)index * meta->factors;
            for (uint32_t f = 0; f < meta->factors; f++)
                s += rc->x[f] * y[f];
        }
        score_add_popularity(m, index, 1, &s);
    }
    score_apply_multipliers(&s, &mult, 1);
    return s;
}

/* The call's scores of every upserted item the model does not know into
 * sc (n_new floats): x . v (one sgemv) with the storefront's multiplier,
 * -INFINITY for those the call excludes or whose category is not the
 * call's, or all of them when there is nothing to score them by (see
 * candidate_score). ex: the call's sorted exclusions (n_ex). */
static void new_item_scores(const recommend_call *rc, const uint32_t *ex, size_t n_ex, float *sc) {
    const model *m = rc->sm->m;
    const core__upserts *up = &rc->mu->up;
    uint32_t n_items = model_info(m)->n_items;
    if (rc->strategy == CORE_POPULAR || rc->ii || !up->new_vectors) {
        for (uint32_t j = 0; j < up->n_new; j++)
            sc[j] = -INFINITY;
        return;
    }
    score_vectors(up->new_vectors, up->n_new, model_info(m)->factors, rc->x, sc);
    score_apply_multipliers(sc, up->new_mult, up->n_new);
    /* Upserted items sort after the model's in the exclusions. */
    for (size_t i = excluded_model_items(ex, n_ex, n_items); i < n_ex; i++)
        sc[ex[i] - n_items] = -INFINITY;
    if (rc->rq->category[0])
        for (uint32_t j = 0; j < up->n_new; j++)
            if (!core__in_category(m, up, n_items + j, &rc->category)) sc[j] = -INFINITY;
}

/* Ranks the upserted items the model part did not see - those it does not
 * know and, under a category filter, the known ones whose upsert named
 * categories - by the call's scores with its exclusions and category, and
 * merges the best into top (n entries, room for k: the call's, or the pool
 * its diversity picks from). Returns the new count in *n, or ERR_NOMEM. */
static int merge_upserts(const recommend_call *rc, uint32_t k, topk_entry *top, uint32_t *n,
                         err_t *e) {
    const model *m = rc->sm->m;
    const core__upserts *up = &rc->mu->up;
    uint32_t n_items = model_info(m)->n_items;
    int category = rc->rq->category[0] != 0;
    if ((up->n_new == 0 || rc->strategy == CORE_POPULAR) && !(category && up->n_rows))
        return ERR_OK;
    uint32_t *ex = NULL;
    long n_ex = recommend_exclusions(rc, &ex);
    float *sc = malloc(((size_t)up->n_new + 1) * sizeof *sc);
    topk_entry *cand = malloc(((size_t)2 * k + up->n_rows) * sizeof *cand);
    if (n_ex < 0 || !sc || !cand) {
        free(ex);
        free(sc);
        free(cand);
        return err_set(e, ERR_NOMEM, "out of memory ranking %u upserted items", up->n_new);
    }
    new_item_scores(rc, ex, (size_t)n_ex, sc);
    uint32_t n_cand = topk_select(sc, up->n_new, k, cand);
    for (uint32_t i = 0; i < n_cand; i++)
        cand[i].index += n_items;
    /* Known items whose upsert named categories: the model part left them out. */
    for (uint32_t r = 0; category && r < up->n_rows && up->row_item[r] < n_items; r++) {
        uint32_t index = up->row_item[r];
        if (up->cat_ptr[r + 1] == up->cat_ptr[r] || excluded_has(ex, (size_t)n_ex, index) ||
            !core__in_category(m, up, index, &rc->category))
            continue;
        float s = candidate_score(rc, index);
        if (s > -INFINITY) cand[n_cand++] = (topk_entry){index, s};
    }
    memcpy(cand + n_cand, top, *n * sizeof *top);
    n_cand += *n;
    topk_sort(cand, n_cand);
    *n = n_cand < k ? n_cand : k;
    memcpy(top, cand, *n * sizeof *top);
    free(cand);
    free(sc);
    free(ex);
    return ERR_OK;
}

/* The because lists of a call's n chosen items (core_recommend_req's
 * explain) into *because (n x CORE_EXPLAIN_ITEMS) and *n_because, both
 * the caller's to free; both NULL when the list has no personal score. */
static int recommend_explain(const recommend_call *rc, const topk_entry *top, uint32_t n,
                             uint32_t **because, uint32_t **n_because, err_t *e) {
    *because = *n_because = NULL;
    int buy_again = rc->strategy == CORE_BUY_AGAIN;
    if (!rc->rq->explain || n == 0 || (!buy_again && !rc->personal)) return ERR_OK;
    uint32_t *b = malloc((size_t)n * CORE_EXPLAIN_ITEMS * sizeof *b);
    uint32_t *nb = malloc((size_t)n * sizeof *nb), *targets = malloc((size_t)n * sizeof *targets);
    int err = ERR_OK;
    err_t why;
    if (!b || !nb || !targets) {
        err = err_set(e, ERR_NOMEM, "out of memory explaining %u items", n);
    } else if (buy_again) {
        /* Due again because of its own purchases. */
        for (uint32_t i = 0; i < n; i++) {
            b[i * CORE_EXPLAIN_ITEMS] = top[i].index;
            nb[i] = 1;
        }
    } else {
        /* An upserted item the model does not know is scored by its label
         * vector, not by the shopper's items: nothing to name. */
        uint32_t n_items = model_info(rc->sm->m)->n_items, n_known = 0;
        for (uint32_t i = 0; i < n; i++)
            if (top[i].index < n_items) targets[n_known++] = top[i].index;
        if (score_explain(rc->sm->m, rc->sm->yty, rc->sh.user, rc->sh.signals, rc->sh.n_signals,
                          targets, n_known, CORE_EXPLAIN_ITEMS, b, NULL, nb, &why)) {
            err = err_set(e, why.code, "explain failed: %s", why.msg);
        } else {
            /* Back to the list's order, from the last entry down. */
            for (uint32_t i = n, k = n_known; i-- > 0;) {
                if (top[i].index >= n_items) {
                    nb[i] = 0;
                    continue;
                }
                k--;
                if (k == i) continue;
                nb[i] = nb[k];
                memcpy(b + (size_t)i * CORE_EXPLAIN_ITEMS, b + (size_t)k * CORE_EXPLAIN_ITEMS,
                       CORE_EXPLAIN_ITEMS * sizeof *b);
            }
        }
    }
    free(targets);
    if (err) {
        free(b);
        free(nb);
        return err;
    }
    *because = b;
    *n_because = nb;
    return ERR_OK;
}

/* Answers a call with its chosen items (best first). */
static int recommend_respond(core *c, const recommend_call *rc, const topk_entry *top, uint32_t n,
                             core_list *out, err_t *e) {
    uint32_t *because, *n_because;
    int err = recommend_explain(rc, top, n, &because, &n_because, e);
    if (!err) err = list_build(out, rc->sm->m, &rc->mu->up, top, n, because, n_because, NULL, 0, e);
    free(because);
    free(n_because);
    if (err) return err;
    /* Relaxed: the counts are a tally read now and then, not a sync. */
    atomic_fetch_add_explicit(&rc->sm->answers, 1, memory_order_relaxed);
    /* Upserted items the model does not know are not counted: the counters
     * are the model's items'. */
    for (uint32_t i = 0; i < n; i++)
        if (top[i].index < model_info(rc->sm->m)->n_items)
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
    if (rq->category[0]) category_filter(m, &rc->mu->up, &rc->category, scores);
    return ERR_OK;
}

/* The rules of every list on scores (n_items floats): what the member
 * bought (unless include; with rebuy, what they only viewed or carted is
 * new), the context and excluded items, the storefront's multipliers and
 * the category. */
static void recommend_rules(const recommend_call *rc, int include, int rebuy, float *scores) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    const core__shopper *sh = &rc->sh;
    if (!include && sh->user != SCORE_NO_USER) {
        uint32_t n_bought;
        const uint32_t *bought = model_user_items(m, sh->user, &n_bought);
        const float *pairs = rebuy ? model_rebuy_pairs(m, sh->user) : NULL;
        for (uint32_t i = 0; i < n_bought; i++)
            if (!pairs || pairs[(size_t)i * REBUY_PAIR_FLOATS] > 0) scores[bought[i]] = -INFINITY;
    }
    if (!include)
        for (size_t i = 0; i < sh->n_bought; i++)
            scores[sh->bought[i]] = -INFINITY;
    exclude_ids(m, rq->context_item_ids, rq->n_context_item_ids, scores);
    exclude_ids(m, rq->exclude_item_ids, rq->n_exclude_item_ids, scores);
    if (rc->mu->any) score_apply_multipliers(scores, rc->mu->v, model_info(m)->n_items);
    if (rq->category[0]) category_filter(m, &rc->mu->up, &rc->category, scores);
}

/* Answers a prepared call from scores: n_items floats holding x . y_i for
 * every item (for POPULAR anything: replaced here), used as scratch. A
 * member answered POPULAR (by a popularity-only model) still does not get
 * what they bought. */
static int recommend_answer(core *c, recommend_call *rc, float *scores, core_list *out, err_t *e) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    const model_meta *meta = model_info(m);
    if (rc->strategy == CORE_POPULAR) {
        /* Nothing to personalize from (or a popularity-only model): the best sellers. */
        memcpy(scores, model_item_popularity(m), (size_t)meta->n_items * sizeof *scores);
    } else {
        score_add_popularity(m, 0, meta->n_items, scores);
    }
    /* With a repurchase model, bought items join below on their own scale. */
    int rebuy = recommend_rebuys(rc), include = rq->include_purchased && !rebuy;
    recommend_rules(rc, include, rebuy, scores);
    /* Upserted items join the new ones; with diversity, in the pool it
     * picks the k from. */
    int diverse = rq->diversity > 0.0f;
    uint32_t n, want = diverse ? score_diversity_pool(rq->k) : rq->k;
    topk_entry *top = malloc(want * sizeof *top);
    if (!top) return err_set(e, ERR_NOMEM, "out of memory for the top %u", want);
    n = topk_select(scores, meta->n_items, want, top);
    score_extra_items extra = {rc->mu->up.new_vectors, rc->mu->up.new_norms};
    if (merge_upserts(rc, want, top, &n, e) ||
        (diverse && score_diversify(m, &extra, top, n, rq->k, rq->diversity, top, &n, e))) {
        free(top);
        return e->code;
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

/* The trend of every item of sm's model that has one into scores (others
 * left alone), the largest into *hi; the table's items new since the last
 * call are mapped to the model's first. Returns 0, or -1 when out of
 * memory. */
static int trend_scores(core *c, core__model *sm, float *scores, float *hi) {
    uint32_t n = trend_size(c->trend);
    int rc = 0;
    pthread_mutex_lock(&sm->trend_lock);
    if (n > sm->cap_trend_items) {
        uint32_t cap = n > 2 * sm->cap_trend_items ? n : 2 * sm->cap_trend_items;
        uint32_t *grown = realloc(sm->trend_items, (size_t)cap * sizeof *grown);
        if (grown) {
            sm->trend_items = grown;
            sm->cap_trend_items = cap;
        } else {
            rc = -1;
        }
    }
    if (!rc && n > sm->n_trend_items) {
        trend_map(c->trend, sm->m, sm->n_trend_items, n, sm->trend_items);
        sm->n_trend_items = n;
    }
    if (!rc)
        *hi = trend_fill(c->trend, (int64_t)time(NULL), sm->trend_items, sm->n_trend_items, scores);
    pthread_mutex_unlock(&sm->trend_lock);
    return rc;
}

/* Mode TRENDING: the items with recent events by their decayed count
 * scaled to [0, 1], blended with the shopper's own scores min-max scaled
 * over the same items when the core is set to (share trending_personal),
 * then the rules of every list. */
static int trending_answer(core *c, recommend_call *rc, float *scores, core_list *out, err_t *e) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    uint32_t n_items = model_info(m)->n_items;
    for (uint32_t i = 0; i < n_items; i++)
        scores[i] = -INFINITY;
    float hi = 0;
    float *own = rc->personal && !rc->ii ? malloc((size_t)n_items * sizeof *own) : NULL;
    topk_entry *top = malloc(rq->k * sizeof *top);
    int err = ERR_OK;
    if (!top || (rc->personal && !rc->ii && !own) || trend_scores(c, rc->sm, scores, &hi)) {
        err = err_set(e, ERR_NOMEM, "out of memory for the trending items");
        goto done;
    }
    float p = rc->personal ? c->trending_personal : 0.0f;
    if (p > 0.0f && hi > 0.0f) {
        const float *mine = rc->ii;
        if (!mine) {
            const model_meta *meta = model_info(m);
            const float *y = model_item_factors(m);
            uint32_t n_trending = 0;
            for (uint32_t i = 0; i < n_items; i++)
                n_trending += scores[i] > -INFINITY;
            /* Only the trending items need the shopper's score: one dot
             * product each when they are a few of the catalogue, one sgemv
             * over all of it (faster per item) when they are many. */
            if (n_trending > n_items / 8)
                score_items(m, rc->x, own);
            else
                for (uint32_t i = 0; i < n_items; i++)
                    if (scores[i] > -INFINITY)
                        own[i] = cblas_sdot((int)meta->factors, rc->x, 1,
                                            y + (size_t)i * meta->factors, 1);
            mine = own;
        }
        float lo = INFINITY, top_own = -INFINITY;
        for (uint32_t i = 0; i < n_items; i++)
            if (scores[i] > -INFINITY) {
                if (mine[i] < lo) lo = mine[i];
                if (mine[i] > top_own) top_own = mine[i];
            }
        float span = top_own > lo ? top_own - lo : 1.0f;
        for (uint32_t i = 0; i < n_items; i++)
            if (scores[i] > -INFINITY)
                scores[i] = (1.0f - p) * scores[i] / hi + p * (mine[i] - lo) / span;
    } else if (hi > 0.0f) {
        for (uint32_t i = 0; i < n_items; i++)
            if (scores[i] > -INFINITY) scores[i] /= hi;
    }
    recommend_rules(rc, rq->include_purchased, 0, scores);
    uint32_t n;
    err_t why;
    if (score_top_k(m, scores, rq->k, rq->diversity, top, &n, &why)) {
        err = err_set(e, why.code, "%s", why.msg);
        goto done;
    }
    rc->strategy = CORE_TRENDING;
    err = recommend_respond(c, rc, top, n, out, e);
done:
    free(own);
    free(top);
    return err;
}

/* Mode NEW_ARRIVALS: the items published in the last new_days days, by
 * the call's score when the shopper has a vector and the model a score for
 * every candidate (a factor model), newest first otherwise; the rules and
 * exclusions of any list. */
static int new_arrivals_answer(core *c, recommend_call *rc, core_list *out, err_t *e) {
    const core_recommend_req *rq = rc->rq;
    const model *m = rc->sm->m;
    const core__upserts *up = &rc->mu->up;
    uint32_t n_items = model_info(m)->n_items, k = rq->k;
    size_t n_all = (size_t)n_items + up->n_new;
    int64_t now = (int64_t)time(NULL);
    int64_t since = now - (int64_t)(rq->new_days ? rq->new_days : CORE_NEW_DAYS) * 86400;
    int by_recency = rc->strategy == CORE_POPULAR || rc->ii || (up->n_new && !up->new_vectors);
    uint32_t *ex = NULL;
    long n_ex = recommend_exclusions(rc, &ex);
    float *sc = malloc((n_all + 1) * sizeof *sc);
    topk_entry *top = malloc(k * sizeof *top);
    uint32_t n = 0;
    int err = ERR_OK;
    if (n_ex < 0 || !sc || !top) err = err_set(e, ERR_NOMEM, "out of memory ranking new arrivals");
    if (!err && !by_recency) new_item_scores(rc, ex, (size_t)n_ex, sc + n_items);
    for (size_t i = 0; !err && i < n_all; i++) {
        uint32_t index = (uint32_t)i;
        int64_t t = up->published ? up->published[index] : 0;
        if (t <= 0 || t < since || t > now) {
            sc[i] = -INFINITY;
        } else if (by_recency) {
            float mult = index < n_items ? (rc->mu->any ? rc->mu->v[index] : 1.0f)
                                         : up->new_mult[index - n_items];
            sc[i] = (float)((double)(t - since) / 86400.0);
            score_apply_multipliers(&sc[i], &mult, 1);
        } else if (index < n_items) {
            sc[i] = candidate_score(rc, index);
        }
    }
    for (size_t i = 0; !err && i < (size_t)n_ex; i++)
        sc[ex[i]] = -INFINITY;
    for (size_t i = 0; !err && rq->category[0] && i < n_all; i++)
        if (sc[i] > -INFINITY && !core__in_category(m, up, (uint32_t)i, &rc->category))
            sc[i] = -INFINITY;
    if (!err && rq->diversity > 0.0f) {
        topk_entry *pool = malloc(score_diversity_pool(k) * sizeof *pool);
        if (!pool) {
            err = err_set(e, ERR_NOMEM, "out of memory ranking new arrivals");
        } else {
            n = topk_select(sc, (uint32_t)n_all, score_diversity_pool(k), pool);
            score_extra_items extra = {up->new_vectors, up->new_norms};
            err = score_diversify(m, &extra, pool, n, k, rq->diversity, top, &n, e);
            free(pool);
        }
    } else if (!err) {
        n = topk_select(sc, (uint32_t)n_all, k, top);
    }
    if (!err) {
        rc->strategy = CORE_NEW_ARRIVALS;
        err = recommend_respond(c, rc, top, n, out, e);
    }
    free(sc);
    free(top);
    free(ex);
    return err;
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
        /* A category some upsert changed is not the model's alone: not in
         * score_batch's filter. */
        int upsert_category = rc->rq->category[0] && (rc->category.model == UINT32_MAX ||
                                                      categories_upserted(rc->sm->m, &rc->mu->up));
        int trending = rc->rq->mode == CORE_MODE_TRENDING;
        if (rc->rq->mode == CORE_MODE_NEW_ARRIVALS) {
            new_arrivals_answer(c, rc, &out[i], &errs[i]);
            ready[i] = 0;
        } else if (rc->strategy == CORE_POPULAR || rc->rq->diversity > 0 || rc->ii || buy_again ||
                   trending || recommend_rebuys(rc) || upsert_category) {
            float *scores = core__scores_buffer(model_info(rc->sm->m)->n_items);
            if (!scores) {
                err_set(&errs[i], ERR_NOMEM, "out of memory scoring");
            } else if (buy_again) {
                buy_again_answer(c, rc, scores, &out[i], &errs[i]);
            } else if (trending) {
                trending_answer(c, rc, scores, &out[i], &errs[i]);
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
                .n_excluded = n_excluded > 0 ? excluded_model_items(excluded[k], (size_t)n_excluded,
                                                                    model_info(m)->n_items)
                                             : 0,
                .multipliers = call->mu->any ? call->mu->v : NULL,
                .max_slope = call->mu->any ? call->mu->max_slope : 1.0f,
                .category = call->rq->category[0] ? (int64_t)call->category.model : -1,
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
            else if (!merge_upserts(&calls[at], calls[at].rq->k, q[k].best, &q[k].n_best,
                                    &errs[at]))
                recommend_respond(c, &calls[at], q[k].best, q[k].n_best, &out[at], &errs[at]);
            free(q[k].best);
            free(excluded[k]);
            ready[at] = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!errs[i].code && out[i].strategy > 0 && out[i].strategy < CORE_STRATEGY_END)
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

/* One SimilarItems call: its seeds as the model knows them (seeds) and the
 * upserted ones it does not (new_seeds, indexes into the upserts). */
typedef struct similar_call {
    const core_similar_req *rq;
    const model *m;
    const core__storefront *mu;
    uint32_t *seeds, *new_seeds;
    size_t n_seeds, n_new_seeds;
    int category; /* rq->category is set: cat holds it */
    core__category cat;
} similar_call;

/* The storefront's rules, the request's exclusions and category and the
 * seeds' exclusion on scores (n_items), then the top k into top: one path
 * for both relations. Returns how many. */
static uint32_t similar_top(const similar_call *sc, float *scores, topk_entry *top) {
    const model *m = sc->m;
    uint32_t n_items = model_info(m)->n_items;
    for (size_t i = 0; i < sc->n_seeds; i++)
        scores[sc->seeds[i]] = -INFINITY;
    exclude_ids(m, sc->rq->exclude_item_ids, sc->rq->n_exclude_item_ids, scores);
    if (sc->mu->any) score_apply_multipliers(scores, sc->mu->v, n_items);
    if (sc->category) category_filter(m, &sc->mu->up, &sc->cat, scores);
    return topk_select(scores, n_items, sc->rq->k, top);
}

/* The mean of the seeds' unit vectors (model and upserted) into q: the
 * cosine to it is the mean cosine to the seeds. */
static void similar_query(const similar_call *sc, float *q) {
    const model_meta *mt = model_info(sc->m);
    const core__upserts *up = &sc->mu->up;
    const float *y = model_item_factors(sc->m), *norms = model_item_norms(sc->m);
    float n = (float)(sc->n_seeds + sc->n_new_seeds);
    memset(q, 0, mt->factors * sizeof *q);
    for (size_t s = 0; s < sc->n_seeds + sc->n_new_seeds; s++) {
        int known = s < sc->n_seeds;
        uint32_t j = known ? sc->seeds[s] : sc->new_seeds[s - sc->n_seeds];
        float norm = known ? norms[j] : up->new_norms[j];
        const float *row = (known ? y : up->new_vectors) + (size_t)j * mt->factors;
        for (uint32_t f = 0; norm > 0.0f && f < mt->factors; f++)
            q[f] += row[f] / (norm * n);
    }
}

/* Merges into top (n entries, room for k) the upserted items by their
 * cosine to q - those the model does not know, and under a category filter
 * the known ones whose upsert named categories (their model scores in
 * saved, row by row) - with the rules of similar_top. */
static int similar_merge_upserts(const similar_call *sc, const float *q, const float *saved,
                                 topk_entry *top, uint32_t *n, err_t *e) {
    const core__upserts *up = &sc->mu->up;
    uint32_t n_items = model_info(sc->m)->n_items, factors = model_info(sc->m)->factors;
    topk_entry *cand = malloc(((size_t)up->n_new + up->n_rows + sc->rq->k) * sizeof *cand);
    if (!cand) return err_set(e, ERR_NOMEM, "out of memory ranking upserted items");
    uint32_t n_cand = 0;
    for (uint32_t j = 0; q && up->new_vectors && j < up->n_new; j++) {
        int seed = 0;
        for (size_t s = 0; s < sc->n_new_seeds && !seed; s++)
            seed = sc->new_seeds[s] == j;
        if (seed || up->new_norms[j] <= 0.0f ||
            (sc->category && !core__in_category(sc->m, up, n_items + j, &sc->cat)))
            continue;
        const float *v = up->new_vectors + (size_t)j * factors;
        float s = 0;
        for (uint32_t f = 0; f < factors; f++)
            s += q[f] * v[f];
        s /= up->new_norms[j];
        score_apply_multipliers(&s, &up->new_mult[j], 1);
        if (s > -INFINITY) cand[n_cand++] = (topk_entry){n_items + j, s};
    }
    for (uint32_t r = 0; saved && r < up->n_rows && up->row_item[r] < n_items; r++)
        if (saved[r] > -INFINITY && up->cat_ptr[r + 1] > up->cat_ptr[r] &&
            core__in_category(sc->m, up, up->row_item[r], &sc->cat))
            cand[n_cand++] = (topk_entry){up->row_item[r], saved[r]};
    /* The request's exclusions hold ids. */
    uint32_t w = 0;
    for (uint32_t i = 0; i < n_cand; i++) {
        size_t len;
        const char *id = core__item_id(sc->m, up, cand[i].index, &len);
        int out = 0;
        for (size_t x = 0; x < sc->rq->n_exclude_item_ids && !out; x++)
            out = !strcmp(sc->rq->exclude_item_ids[x], id);
        if (!out) cand[w++] = cand[i];
    }
    memcpy(cand + w, top, *n * sizeof *top);
    w += *n;
    topk_sort(cand, w);
    *n = w < sc->rq->k ? w : sc->rq->k;
    memcpy(top, cand, *n * sizeof *top);
    free(cand);
    return ERR_OK;
}

/* Ranks sc's seeds' look-alikes into top: an item-item model's rows when
 * every seed is the model's, else the cosine of the factors (upserted
 * items included). Returns ERR_OK or ERR_NOMEM; *n their count. */
static int similar_rank(const similar_call *sc, float *scores, topk_entry *top, uint32_t *n,
                        err_t *e) {
    const core__upserts *up = &sc->mu->up;
    uint32_t n_items = model_info(sc->m)->n_items, factors = model_info(sc->m)->factors;
    float *q = NULL, *saved = NULL;
    int rows = model_item_rows(sc->m) && sc->n_new_seeds == 0;
    if (!rows && !(q = malloc(factors * sizeof *q)))
        return err_set(e, ERR_NOMEM, "out of memory for the seeds' mean");
    if (rows) {
        score_similar_rows(sc->m, sc->seeds, sc->n_seeds, scores);
    } else {
        similar_query(sc, q);
        score_similar_query(sc->m, q, scores);
    }
    int err = ERR_OK;
    if (sc->category && up->n_rows && !(saved = malloc(up->n_rows * sizeof *saved)))
        err = err_set(e, ERR_NOMEM, "out of memory ranking upserted items");
    for (uint32_t r = 0; saved && r < up->n_rows && up->row_item[r] < n_items; r++) {
        uint32_t i = up->row_item[r];
        int seed = 0;
        for (size_t s = 0; s < sc->n_seeds && !seed; s++)
            seed = sc->seeds[s] == i;
        float m = sc->mu->any ? sc->mu->v[i] : 1.0f;
        saved[r] = seed ? -INFINITY : scores[i];
        score_apply_multipliers(&saved[r], &m, 1);
    }
    if (!err) {
        *n = similar_top(sc, scores, top);
        err = similar_merge_upserts(sc, q, saved, top, n, e);
    }
    free(q);
    free(saved);
    return err;
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
    core__storefront *mu = core__storefront_get(c, sm);
    similar_call sc = {.rq = rq, .m = m, .mu = mu};
    sc.seeds = malloc((rq->n_item_ids + 1) * sizeof *sc.seeds);
    sc.new_seeds = malloc((rq->n_item_ids + 1) * sizeof *sc.new_seeds);
    topk_entry *top = malloc(rq->k * sizeof *top);
    if (!scores || !sc.seeds || !sc.new_seeds || !top || !mu) {
        err = err_set(e, ERR_NOMEM, "out of memory scoring %u items", meta->n_items);
        goto done;
    }
    /* Seeds nobody described (new items not upserted) are passed over as
     * long as one is known: a cart often holds something new. An upserted
     * seed counts when it has a vector. */
    const char *unknown = NULL;
    for (size_t i = 0; i <= rq->n_item_ids; i++) {
        const char *id = i == 0 ? rq->item_id : rq->item_ids[i - 1];
        uint32_t index;
        if (!id[0]) continue;
        if (core__item_lookup(m, &mu->up, id, &index) != ERR_OK ||
            (index >= meta->n_items && !mu->up.new_vectors)) {
            if (!unknown) unknown = id;
        } else if (index < meta->n_items) {
            sc.seeds[sc.n_seeds++] = index;
        } else {
            sc.new_seeds[sc.n_new_seeds++] = index - meta->n_items;
        }
    }
    if (sc.n_seeds + sc.n_new_seeds == 0) {
        err =
            err_set(e, ERR_NOTFOUND, "item '%.*s' is not in model %s", 64, unknown, meta->version);
        goto done;
    }
    sc.category = rq->category[0] != 0;
    if (sc.category && (err = category_resolve(m, &mu->up, rq->category, &sc.cat, e))) goto done;
    uint32_t n = 0;
    /* Complements first when asked for; SIMILAR answers when the seeds were
     * bought with nothing that the storefront lets through (or never sold). */
    if (rq->relation == CORE_RELATION_BOUGHT_TOGETHER && sc.n_seeds &&
        score_together(m, sc.seeds, sc.n_seeds, scores) > 0)
        n = similar_top(&sc, scores, top);
    if (n == 0) {
        out->fell_back = rq->relation == CORE_RELATION_BOUGHT_TOGETHER;
        if ((err = similar_rank(&sc, scores, top, &n, e))) goto done;
    }
    if (!(err = list_build(out, m, &mu->up, top, n, NULL, NULL, NULL, 0, e)))
        memcpy(out->model_version, meta->version, sizeof out->model_version);
done:
    core__storefront_release(mu);
    free(top);
    free(sc.seeds);
    free(sc.new_seeds);
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
    core__storefront *mu = core__storefront_get(c, sm);
    if (!known || !unknown || !x || !mu) {
        err = err_set(e, ERR_NOMEM, "out of memory reranking");
        goto done;
    }
    int private = rq->user_id[0] && core__privacy(c, rq->user_id, strlen(rq->user_id));
    if (!private && (err = core__shopper_collect(c, m, &mu->up, rq->user_id, rq->context_item_ids,
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
        /* An upserted item is ranked by its vector when the shopper has one
         * to score it by (a factor model); else it joins the unknown ones. */
        int scorable =
            core__item_lookup(m, &mu->up, id, &item) == ERR_OK &&
            (item < meta->n_items || (mu->up.new_vectors && strategy != CORE_POPULAR && !ii));
        if (!scorable) {
            unknown[n_unknown++] = rq->candidate_item_ids[i];
            continue;
        }
        int seen = 0; /* a candidate listed twice is ranked once */
        for (size_t j = 0; j < n_known && !seen; j++)
            seen = known[j].index == item;
        if (seen) continue;
        float score = 0;
        if (item >= meta->n_items) {
            uint32_t j = item - meta->n_items;
            const float *v = mu->up.new_vectors + (size_t)j * meta->factors;
            for (uint32_t f = 0; f < meta->factors; f++)
                score += x[f] * v[f];
            score_apply_multipliers(&score, &mu->up.new_mult[j], 1);
            if (score > -INFINITY) known[n_known++] = (topk_entry){item, score};
            continue;
        }
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
    if (!(err = list_build(out, m, &mu->up, known, n_known, NULL, NULL, unknown, n_unknown, e))) {
        out->strategy = strategy;
        memcpy(out->model_version, meta->version, sizeof out->model_version);
    }
done:
    core__shopper_free(&sh);
    core__storefront_release(mu);
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
