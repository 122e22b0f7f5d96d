#include "pipeline.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "clock.h"
#include "clv.h"
#include "csr.h"
#include "eval.h"
#include "evstore.h"
#include "idstate.h"
#include "mf.h"
#include "privacy.h"

/* The churn codes are model.h's; the inputs are stored by model.c, which
 * does not know churn.h. */
_Static_assert(CHURN_INPUTS <= MODEL_CHURN_MAX_FEATURES, "churn inputs");

int pipeline_add_recorded(ev_set *history, const char *events_dir, const float weights[EV_TYPE_END],
                          size_t *added, size_t *future, err_t *e) {
    evstore *store;
    *added = 0;
    if (future) *future = 0;
    int rc = evstore_open(events_dir, NULL, &store, e);
    if (!rc) {
        rc = evstore_load(store, weights, history, added, future, e);
        evstore_close(store);
    }
    if (rc) err_wrap(e, "event store %s", events_dir);
    return rc;
}

typedef struct forgotten_scan {
    const ev_set *history;
    uint8_t *drop;
    uint32_t n;
} forgotten_scan;

static void mark_forgotten(void *ctx, const char *id, size_t len, const void *value,
                           size_t value_len) {
    (void)value_len; /* the store's fixed size */
    forgotten_scan *f = ctx;
    uint32_t u;
    if (privacy_of_value(value) == PRIVACY_FORGOTTEN &&
        idmap_find(f->history->users, id, len, &u) == ERR_OK && !f->drop[u]) {
        f->drop[u] = 1;
        f->n++;
    }
}

int pipeline_leave_out_forgotten(ev_set *history, const char *events_dir, uint32_t *forgotten,
                                 err_t *e) {
    char dir[PATH_MAX];
    idstate *privacy;
    *forgotten = 0;
    if (snprintf(dir, sizeof dir, "%s/" PRIVACY_DIR, events_dir) >= (int)sizeof dir)
        return err_set(e, ERR_IO, "the events folder path %s is too long", events_dir);
    int rc = idstate_open(dir, 1, &privacy, e);
    if (rc) {
        err_wrap(e, "cannot read the privacy choices in %s", dir);
        return rc;
    }
    forgotten_scan f = {history, calloc(idmap_size(history->users) + 1, 1), 0};
    if (f.drop) idstate_each(privacy, mark_forgotten, &f);
    idstate_close(privacy);
    if (!f.drop) return err_set(e, ERR_NOMEM, "out of memory leaving out forgotten members");
    if (f.n && (rc = ev_set_drop_users(history, f.drop, e)))
        err_set(e, rc, "out of memory leaving out forgotten members");
    if (!rc) *forgotten = f.n;
    free(f.drop);
    return rc;
}

void pipeline_params_init(pipeline_params *p) {
    memset(p, 0, sizeof *p);
    als_params_init(&p->als);
    itemsim_params_init(&p->item);
    itemsim_params_init(&p->with);
    p->item.algorithm = ITEMSIM_ALS;
    p->with.algorithm = ITEMSIM_ALS;
    together_params_init(&p->together);
    repeat_params_init(&p->repeat);
}

/* The scale of one family's scores on counts (itemsim_score_scale): rows
 * when r is not NULL, else the factors f. */
static int family_scale(const csr *counts, const itemsim_model *r, const als_factors *f,
                        double *scale, err_t *e) {
    eval_mf mf = {.user_factors = f->user_factors,
                  .item_factors = f->item_factors,
                  .factors = f->factors,
                  .n_items = f->n_items};
    itemsim_eval ie = {.rows = {.n_items = counts->n_cols}, .als = &mf, .als_weight = 1.0f};
    if (r) ie = (itemsim_eval){.rows = itemsim_rows(r), .rows_weight = 1.0f};
    return itemsim_score_scale(&ie, counts, scale, e);
}

/* Trains the item-item family of p (and its blend partner) on counts into
 * *out and names it in meta (algorithm, lambda, neighbors, als_blend). */
static int train_items(const csr *counts, const pipeline_params *p, const als_factors *f,
                       itemsim_model *out, model_meta *meta, err_t *e) {
    itemsim_params ip = p->item;
    ip.threads = p->als.threads;
    int rc = itemsim_fit(counts, &ip, out, e);
    if (rc) return rc;
    const char *name = itemsim_algorithm_name(ip.algorithm);
    snprintf(meta->algorithm, sizeof meta->algorithm, "%s", name);
    meta->lambda = out->lambda;
    meta->neighbors = out->dense ? 0 : ip.neighbors;
    if (!(p->blend_share > 0.0f)) return ERR_OK;
    double sa, sb;
    float t = p->blend_share;
    itemsim_model b = {0}, merged;
    itemsim_params wp = p->with;
    wp.threads = p->als.threads;
    if ((rc = family_scale(counts, out, f, &sa, e))) return rc;
    snprintf(meta->algorithm, sizeof meta->algorithm, "%s+%s", name,
             itemsim_algorithm_name(wp.algorithm));
    if (wp.algorithm == ITEMSIM_ALS) {
        if ((rc = family_scale(counts, NULL, f, &sb, e))) return rc;
        float wa = (float)((1.0 - t) / sa);
        uint64_t n = out->dense ? (uint64_t)out->n_items * out->n_items : out->indptr[out->n_items];
        float *v = out->dense ? out->dense : out->value;
        for (uint64_t k = 0; k < n; k++)
            v[k] *= wa;
        meta->als_blend = (float)(t / sb);
        return ERR_OK;
    }
    if ((rc = itemsim_fit(counts, &wp, &b, e))) return rc;
    if (!(rc = family_scale(counts, &b, f, &sb, e)) &&
        !(rc = itemsim_blend(out, (float)((1.0 - t) / sa), &b, (float)(t / sb), &merged, e))) {
        if (!meta->lambda) meta->lambda = b.lambda;
        meta->neighbors =
            merged.dense ? 0 : (ip.neighbors > wp.neighbors ? ip.neighbors : wp.neighbors);
        itemsim_free(out);
        *out = merged;
    }
    itemsim_free(&b);
    return rc;
}

/* Fingerprint of the training data itself (ids, times, quantities), so that
 * two models trained from the same history can be recognised. */
static void history_fingerprint(const ev_set *s, char out[17]) {
    XXH64_state_t *h = XXH64_createState();
    XXH64_reset(h, 0);
    for (size_t i = 0; i < s->n; i++) {
        const ev_event *ev = &s->events[i];
        size_t len;
        /* Lengths go in too, so that ("ab", "c") and ("a", "bc") differ. */
        const char *id = idmap_key(s->users, ev->user, &len);
        XXH64_update(h, &len, sizeof len);
        XXH64_update(h, id, len);
        id = idmap_key(s->items, ev->item, &len);
        XXH64_update(h, &len, sizeof len);
        XXH64_update(h, id, len);
        XXH64_update(h, &ev->ts, sizeof ev->ts);
        /* A recorded event's weight where older versions kept it (in
         * quantity), so that the same data keeps its fingerprint. */
        XXH64_update(h, ev->recorded ? &ev->weight : &ev->quantity, sizeof ev->quantity);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)XXH64_digest(h));
    XXH64_freeState(h);
}

/* Trains churn and CLV on the purchase rows of history and fills *cr, *clv
 * and *mc (which points into both). Users known only from recorded events
 * stay unscored. A history without any repeat purchase has no CLV: a
 * warning, and the model goes without. */
static int train_churn(ev_set *history, const pipeline_params *p, churn_result *cr, clv_result *clv,
                       model_churn *mc, err_t *e) {
    /* The purchase rows come first (the recorded events were appended after
     * them, and leaving members out keeps the order): churn sees them alone
     * through a shortened set. Its sort permutes only those rows. */
    size_t n_all = history->n, n_rows = 0;
    while (n_rows < n_all && !history->events[n_rows].recorded)
        n_rows++;
    history->n = n_rows;
    int rc = churn_run(history, p->churn, p->churn_report, cr, e);
    uint64_t *user_start = NULL;
    if (!rc && !(rc = ev_set_sort_by_user_time(history, EV_TIES_ASCENDING, &user_start, e))) {
        rc = clv_run(history, user_start, cr->eval.t_valid, cr->scored_at, cr->horizon_days,
                     cr->eval.auc, p->churn_report, clv, e);
        if (rc == ERR_INVALID) {
            fprintf(stderr, "warning: %s; the model has no CLV\n", e->msg);
            rc = ERR_OK;
        }
    }
    free(user_start);
    history->n = n_all;
    if (rc) {
        char why[sizeof e->msg];
        memcpy(why, e->msg, sizeof why);
        return err_set(e, rc, "%s; no model published", why);
    }
    *mc = (model_churn){.n_features = CHURN_INPUTS,
                        .feature_names = churn_input_names,
                        .coef = cr->model.coef,
                        .mean = cr->model.mean,
                        .scale = cr->model.scale,
                        .intercept = cr->model.intercept,
                        .platt_a = cr->model.platt_a,
                        .platt_b = cr->model.platt_b,
                        .horizon_days = cr->horizon_days,
                        .scored_at = cr->scored_at,
                        .features = cr->inputs,
                        .probability = cr->probability,
                        .band = cr->band,
                        .segment = cr->segment,
                        .tier = cr->tier,
                        .recency_days = cr->recency_days,
                        .frequency = cr->frequency,
                        .monetary = cr->monetary};
    if (clv->p_alive) {
        mc->p_alive = clv->p_alive;
        mc->expected_orders = clv->expected_orders;
        mc->expected_value = clv->expected_value;
        memcpy(mc->clv,
               (double[7]){clv->bgnbd.r, clv->bgnbd.alpha, clv->bgnbd.a, clv->bgnbd.b, clv->gg.p,
                           clv->gg.q, clv->gg.gamma},
               sizeof mc->clv);
    }
    memcpy(mc->bands, cr->bands, sizeof mc->bands);
    memcpy(mc->tiers, cr->tiers, sizeof mc->tiers);
    /* The validation report's figures, kept for the dashboard. */
    const churn_eval *ev = &cr->eval;
    _Static_assert(CHURN_CALIB_BINS == MODEL_CHURN_CALIB_BINS, "one calibration table");
    mc->has_validation = 1;
    mc->validation = (model_churn_validation){.validated_at = (double)ev->t_valid,
                                              .members = ev->n_valid,
                                              .churned = ev->churned_valid,
                                              .roc_auc = ev->auc,
                                              .pr_auc = ev->pr_auc,
                                              .brier = ev->brier,
                                              .recency_roc_auc = ev->recency_auc,
                                              .base_brier = ev->base_brier};
    for (int b = 0; b < CHURN_CALIB_BINS; b++) {
        mc->validation.calib_n[b] = ev->calib[b].n;
        mc->validation.calib_predicted[b] = ev->calib[b].mean_predicted;
        mc->validation.calib_observed[b] = ev->calib[b].observed;
    }
    return ERR_OK;
}

int pipeline_add_catalogue(ev_set *history, const labels_table *items, err_t *e) {
    uint32_t n = labels_rows(items);
    for (uint32_t r = 0; r < n; r++) {
        size_t len;
        const char *id = idmap_key(items->ids, r, &len);
        uint32_t i;
        int rc = idmap_intern(history->items, id, len, &i);
        if (rc) return err_set(e, rc, "catalogue: cannot add item %u", r);
        if (items->category && items->category[r] != UINT32_MAX) {
            const char *c = idmap_key(items->categories, items->category[r], &len);
            if ((rc = ev_set_set_category(history, i, c, len, e))) return rc;
        }
    }
    return ERR_OK;
}

/* The labels of each of n ids of ids (model order) from catalogue cat, as
 * CSR (indptr n + 1, index), NULL rows for ids not in it; malloc'ed. */
static int side_labels(const idmap *ids, uint32_t n, const labels_table *cat, uint64_t **indptr,
                       uint32_t **index, uint32_t **row_of, err_t *e) {
    *indptr = calloc((size_t)n + 1, sizeof **indptr);
    *index = malloc((cat->indptr[labels_rows(cat)] + 1) * sizeof **index);
    *row_of = malloc(((size_t)n + 1) * sizeof **row_of);
    if (!*indptr || !*index || !*row_of) return err_set(e, ERR_NOMEM, "catalogue: out of memory");
    uint64_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *id = idmap_key(ids, i, &len);
        uint32_t r, nl = 0;
        (*row_of)[i] = UINT32_MAX;
        if (idmap_find(cat->ids, id, len, &r) == ERR_OK) {
            const uint32_t *l = labels_row(cat, r, &nl);
            memcpy(*index + k, l, nl * sizeof *l);
            (*row_of)[i] = r;
        }
        k += nl;
        (*indptr)[i + 1] = k;
    }
    return ERR_OK;
}

/* Fits the mapping of one side onto factors (n rows) and, for the item
 * side, gives the rows without interactions (cold[i]) their mapped vector.
 * *map keeps the fit (caller frees). */
static int fit_side(const idmap *ids, uint32_t n, const labels_table *cat, float *factors,
                    uint32_t k, const uint8_t *warm, uint64_t seed, attrmap *map, uint32_t **row_of,
                    uint32_t *filled, err_t *e) {
    uint64_t *indptr = NULL;
    uint32_t *index = NULL;
    int rc = side_labels(ids, n, cat, &indptr, &index, row_of, e);
    if (!rc && idmap_size(cat->labels) == 0)
        rc = err_set(e, ERR_INVALID, "catalogue: no label (every word too rare?)");
    if (!rc)
        rc = attrmap_fit(indptr, index, n, idmap_size(cat->labels), factors, k, warm, 0.0f, seed,
                         map, e);
    if (!rc && filled) {
        *filled = 0;
        for (uint32_t i = 0; i < n; i++)
            if (!warm[i]) {
                mf_label_vector(map->map, map->n_labels, k, index + indptr[i],
                                (uint32_t)(indptr[i + 1] - indptr[i]), factors + (size_t)i * k);
                ++*filled;
            }
    }
    free(indptr);
    free(index);
    return rc;
}

int pipeline_train(ev_set *history, const pipeline_params *p, const char *model_dir,
                   model_meta *published, err_t *e) {
    if (history->n == 0)
        return err_set(e, ERR_INVALID, "no usable purchase rows or events; no model published");
    uint32_t n_users = idmap_size(history->users), n_items = idmap_size(history->items);
    uint32_t *rows = malloc(history->n * sizeof *rows), *cols = malloc(history->n * sizeof *cols);
    float *vals = malloc(history->n * sizeof *vals);
    float *popularity = malloc((size_t)n_items * sizeof *popularity);
    uint32_t *item_category = NULL;
    csr counts = {0}, by_item = {0}, plain = {0};
    als_factors factors = {0};
    churn_result cr = {0};
    clv_result clv = {0};
    model_churn mc = {0};
    model_input in = {0};
    itemsim_model items = {0};
    itemrows item_rows, bought_together;
    together_model together = {0};
    repeat_model repeat = {0};
    model_rebuy_input rebuy = {0};
    float *rebuy_pairs = NULL;
    int64_t data_until = INT64_MIN;
    attrmap imap = {0}, umap = {0};
    uint32_t *item_row = NULL, *user_row = NULL;
    uint8_t *warm = NULL;
    int64_t *item_published = NULL;
    float *price = NULL;
    int rc;
    if (p->items && (rc = pipeline_add_catalogue(history, p->items, e))) {
        free(rows);
        free(cols);
        free(vals);
        free(popularity);
        return rc;
    }
    n_items = idmap_size(history->items);
    free(popularity); /* sized again for the catalogue's items */
    popularity = malloc(((size_t)n_items + 1) * sizeof *popularity);
    if (!rows || !cols || !vals || !popularity) {
        rc = err_set(e, ERR_NOMEM, "out of memory for %zu events", history->n);
        goto out;
    }
    for (size_t i = 0; i < history->n; i++)
        if (history->events[i].ts > data_until) data_until = history->events[i].ts;
    /* Ages from data_until: the code evaluation and tuning measure with. */
    eval_event_weights(history, p->half_life_days, data_until, vals);
    for (size_t i = 0; i < history->n; i++) {
        rows[i] = history->events[i].user;
        cols[i] = history->events[i].item;
    }
    if ((rc = csr_from_triplets(n_users, n_items, rows, cols, vals, history->n, &counts, e)) ||
        (rc = csr_transpose(&counts, &by_item, e)))
        goto out;
    /* Item-item families read the undecayed values (what famtune measures),
     * built before churn reorders the history. */
    if (p->item.algorithm != ITEMSIM_ALS && p->half_life_days > 0) {
        eval_event_weights(history, 0, data_until, vals);
        if ((rc = csr_from_triplets(n_users, n_items, rows, cols, vals, history->n, &plain, e)))
            goto out;
    }
    /* Before churn sorts the history: the fingerprint follows event order. */
    history_fingerprint(history, in.meta.source_fingerprint);
    if (p->together.neighbors && (rc = together_fit(history, NULL, &p->together, &together, e)))
        goto out;
    /* Before churn sorts the history (the fit itself ignores the order);
     * until is one past the latest event, so that it counts. */
    if (p->repeat.horizon_days > 0 &&
        ((rc = repeat_train(history, NULL, data_until + 1, &p->repeat, &p->als, &repeat, e)) ||
         (rc = repeat_pairs(history, NULL, data_until + 1, plain.indptr ? &plain : &counts,
                            &rebuy_pairs, e)))) {
        err_wrap(e, "training the repurchase model failed");
        goto out;
    }
    if (p->churn && (rc = train_churn(history, p, &cr, &clv, &mc, e))) goto out;
    /* Popularity = distinct buyers: the most-popular fallback's order. */
    for (uint32_t i = 0; i < n_items; i++)
        popularity[i] = (float)(by_item.indptr[i + 1] - by_item.indptr[i]);
    if (p->matrix) p->matrix(p->matrix_ctx, n_users, n_items, csr_nnz(&counts));
    double train_start = clock_seconds();
    if ((rc = als_train(&counts, &p->als, &factors, e))) {
        err_wrap(e, "training failed");
        goto out;
    }
    if (p->item.algorithm != ITEMSIM_ALS &&
        (rc = train_items(plain.indptr ? &plain : &counts, p, &factors, &items, &in.meta, e))) {
        err_wrap(e, "training failed");
        goto out;
    }
    if (p->items || p->users) {
        warm = malloc(((size_t)(n_items > n_users ? n_items : n_users)) + 1);
        if (!warm) {
            rc = err_set(e, ERR_NOMEM, "out of memory for the catalogue");
            goto out;
        }
    }
    if (p->items) {
        uint32_t filled = 0;
        for (uint32_t i = 0; i < n_items; i++)
            warm[i] = by_item.indptr[i + 1] > by_item.indptr[i];
        if ((rc = fit_side(history->items, n_items, p->items, factors.item_factors, p->als.factors,
                           warm, p->als.seed, &imap, &item_row, &filled, e))) {
            err_wrap(e, "item label mapping");
            goto out;
        }
        in.item_labels = p->items->labels;
        in.item_map = imap.map;
        in.meta.item_map_lambda = imap.lambda;
        snprintf(in.meta.item_category_column, sizeof in.meta.item_category_column, "%s",
                 p->items->category_column);
        if (p->items->published || p->items->price) {
            item_published = calloc((size_t)n_items + 1, sizeof *item_published);
            price = malloc(((size_t)n_items + 1) * sizeof *price);
            if (!item_published || !price) {
                rc = err_set(e, ERR_NOMEM, "out of memory for the catalogue");
                goto out;
            }
            for (uint32_t i = 0; i < n_items; i++) {
                uint32_t r = item_row[i];
                price[i] = r != UINT32_MAX && p->items->price ? p->items->price[r] : NAN;
                item_published[i] =
                    r != UINT32_MAX && p->items->published ? p->items->published[r] : 0;
            }
            in.item_published = p->items->published ? item_published : NULL;
            in.item_price = p->items->price ? price : NULL;
        }
        if (p->maps) p->maps->catalogue_only = filled;
    }
    if (p->users) {
        for (uint32_t u = 0; u < n_users; u++)
            warm[u] = 1;
        if ((rc = fit_side(history->users, n_users, p->users, factors.user_factors, p->als.factors,
                           warm, p->als.seed, &umap, &user_row, NULL, e))) {
            err_wrap(e, "member label mapping");
            goto out;
        }
        in.user_labels = p->users->labels;
        in.user_map = umap.map;
        in.meta.user_map_lambda = umap.lambda;
    }
    if (p->maps) {
        p->maps->item = imap;
        p->maps->item.map = NULL;
        p->maps->user = umap;
        p->maps->user.map = NULL;
    }
    in.meta.data_until = data_until;
    in.meta.factors = p->als.factors;
    in.meta.n_users = n_users;
    in.meta.n_items = n_items;
    in.meta.interactions = history->n;
    in.meta.iterations = p->als.iterations;
    in.meta.regularization = p->als.regularization;
    in.meta.alpha = p->als.alpha;
    in.meta.frequency_regularization = p->als.frequency_regularization;
    in.meta.loss = factors.loss;
    in.meta.popularity_blend = p->popularity_blend;
    in.meta.train_seconds = clock_seconds() - train_start;
    in.users = history->users;
    in.items = history->items;
    if (idmap_size(history->categories) > 0) {
        if (!(item_category = malloc((size_t)n_items * sizeof *item_category))) {
            rc = err_set(e, ERR_NOMEM, "out of memory for item categories");
            goto out;
        }
        for (uint32_t i = 0; i < n_items; i++)
            item_category[i] = ev_set_item_category(history, i);
        in.categories = history->categories;
        in.item_category = item_category;
    }
    in.user_factors = factors.user_factors;
    in.item_factors = factors.item_factors;
    /* An item-item model's stored rows are what its scores read back. */
    in.user_items = plain.indptr ? &plain : &counts;
    in.item_popularity = popularity;
    in.churn = p->churn ? &mc : NULL;
    if (p->item.algorithm != ITEMSIM_ALS) {
        item_rows = itemsim_rows(&items);
        in.item_rows = &item_rows;
    }
    if (p->together.neighbors) {
        bought_together = together_rows(&together);
        in.together = &bought_together;
    }
    if (p->repeat.horizon_days > 0) {
        rebuy = (model_rebuy_input){.params = repeat.params,
                                    .items = repeat.items,
                                    .curve = repeat.curve,
                                    .pairs = rebuy_pairs};
        in.rebuy = &rebuy;
    }
    if ((rc = model_publish(model_dir, &in, published, e))) err_wrap(e, "cannot publish the model");
out:
    attrmap_free(&imap);
    attrmap_free(&umap);
    free(item_row);
    free(user_row);
    free(warm);
    free(item_published);
    free(price);
    free(rows);
    free(cols);
    free(vals);
    free(popularity);
    free(item_category);
    csr_free(&counts);
    csr_free(&by_item);
    csr_free(&plain);
    als_factors_free(&factors);
    itemsim_free(&items);
    together_free(&together);
    repeat_free(&repeat);
    free(rebuy_pairs);
    churn_result_free(&cr);
    clv_result_free(&clv);
    return rc;
}
