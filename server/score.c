#include "score.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"
#include "mf.h"
#include "panel.h"

void score_gram(const model *m, float *yty) {
    const model_meta *mt = model_info(m);
    linalg_gram(model_item_factors(m), mt->n_items, mt->factors, mt->factors, yty, mt->factors);
}

static int cmp_signal_item(const void *a, const void *b) {
    uint32_t x = ((const score_signal *)a)->item, y = ((const score_signal *)b)->item;
    return (x > y) - (x < y);
}

/* The shopper's counts, as a retraining would see them: the stored history
 * of user (SCORE_NO_USER: none) merged with the n signals by item, weights
 * of the same item added up, ascending item order, into *items and
 * *counts (the caller frees both) and their number into *out. Returns 0,
 * or -1 when out of memory (nothing to free then). */
static int merge_counts(const model *m, uint32_t user, const score_signal *signals, size_t n,
                        uint32_t **items_out, float **counts_out, uint32_t *out) {
    uint32_t n_stored = 0;
    const uint32_t *stored = NULL;
    const float *stored_counts = NULL;
    if (user != SCORE_NO_USER) {
        stored = model_user_items(m, user, &n_stored);
        stored_counts = model_user_item_counts(m, user);
    }
    size_t cap = (size_t)n_stored + n;
    score_signal *sig = malloc((n ? n : 1) * sizeof *sig);
    uint32_t *items = malloc((cap ? cap : 1) * sizeof *items);
    float *counts = malloc((cap ? cap : 1) * sizeof *counts);
    if (!sig || !items || !counts) {
        free(sig);
        free(items);
        free(counts);
        return -1;
    }
    if (n) memcpy(sig, signals, n * sizeof *sig);
    qsort(sig, n, sizeof *sig, cmp_signal_item);
    uint32_t d = 0;
    size_t a = 0, b = 0;
    while (a < n_stored || b < n) {
        uint32_t item;
        float w = 0;
        if (b == n || (a < n_stored && stored[a] <= sig[b].item))
            item = stored[a];
        else
            item = sig[b].item;
        while (a < n_stored && stored[a] == item)
            w += stored_counts[a++];
        while (b < n && sig[b].item == item)
            w += sig[b++].weight;
        items[d] = item;
        counts[d++] = w;
    }
    free(sig);
    *items_out = items;
    *counts_out = counts;
    *out = d;
    return 0;
}

/* The regularization of a fold-in over d distinct items: lambda grows with
 * the user's items, as in training. */
static float fold_lambda(const model_meta *mt, uint32_t d) {
    return mt->regularization + mt->frequency_regularization * (float)d;
}

int score_fold_in(const model *m, const float *yty, uint32_t user, const score_signal *signals,
                  size_t n, float *x, err_t *e) {
    const model_meta *mt = model_info(m);
    uint32_t *items, d;
    float *counts;
    if (merge_counts(m, user, signals, n, &items, &counts, &d))
        return err_set(e, ERR_NOMEM, "score: out of memory folding in %zu signals", n);
    int rc = mf_fold_in(model_item_factors(m), mt->factors, yty, items, counts, d,
                        fold_lambda(mt, d), mt->alpha, x, e);
    free(items);
    free(counts);
    return rc;
}

/* Keeps the per_item largest positive contributions in best/best_w (n of
 * them so far, largest first). */
static void explain_keep(uint32_t item, float w, uint32_t per_item, uint32_t *best, float *best_w,
                         uint32_t *n) {
    if (!(w > 0.0f) || (*n == per_item && !(w > best_w[per_item - 1]))) return;
    uint32_t at = *n < per_item ? (*n)++ : per_item - 1;
    while (at > 0 && best_w[at - 1] < w) {
        best[at] = best[at - 1];
        best_w[at] = best_w[at - 1];
        at--;
    }
    best[at] = item;
    best_w[at] = w;
}

/* The ALS part of score_explain: contrib[t * d + j] += scale * c_j y_t^T W
 * y_j for the d merged items, W the inverse of the fold-in's system. One
 * Cholesky factorization serves every target. Returns ERR_OK,
 * ERR_INVALID (not positive definite), ERR_NOMEM. */
static int explain_als(const model *m, const float *yty, const uint32_t *items, const float *counts,
                       uint32_t d, const uint32_t *targets, size_t n_targets, float scale,
                       float *contrib, err_t *e) {
    const model_meta *mt = model_info(m);
    const size_t f = mt->factors;
    const float *y = model_item_factors(m);
    double lambda = fold_lambda(mt, d), alpha = mt->alpha;
    /* The system of mf_fold_in, in double as there: YtY + lambda I + sum
     * (c_j - 1) y_j y_j^T, lower triangle. */
    double *a = malloc((f * f + f * n_targets) * sizeof *a);
    if (!a) return err_set(e, ERR_NOMEM, "score: out of memory for a %zu x %zu system", f, f);
    double *w = a + f * f;
    for (size_t r = 0; r < f; r++) {
        for (size_t l = 0; l <= r; l++)
            a[r * f + l] = (double)yty[r * f + l];
        a[r * f + r] += lambda;
    }
    for (uint32_t j = 0; j < d; j++) {
        const float *yj = y + (size_t)items[j] * f;
        double c1 = alpha * (double)counts[j];
        for (size_t r = 0; r < f; r++) {
            double v = c1 * (double)yj[r];
            for (size_t l = 0; l <= r; l++)
                a[r * f + l] += v * (double)yj[l];
        }
    }
    for (size_t t = 0; t < n_targets; t++)
        for (size_t r = 0; r < f; r++)
            w[t * f + r] = (double)y[(size_t)targets[t] * f + r];
    if (linalg_solve_spd_many(a, w, f, n_targets)) {
        free(a);
        return err_set(e, ERR_INVALID, "score: the shopper's system is not positive definite");
    }
    for (size_t t = 0; t < n_targets; t++)
        for (uint32_t j = 0; j < d; j++) {
            const float *yj = y + (size_t)items[j] * f;
            double dot = 0;
            for (size_t r = 0; r < f; r++)
                dot += w[t * f + r] * (double)yj[r];
            double c = 1.0 + alpha * (double)counts[j];
            contrib[t * d + j] += (float)((double)scale * c * dot);
        }
    free(a);
    return ERR_OK;
}

int score_explain(const model *m, const float *yty, uint32_t user, const score_signal *signals,
                  size_t n, const uint32_t *targets, size_t n_targets, uint32_t per_item,
                  uint32_t *because, float *weight, uint32_t *n_because, err_t *e) {
    const model_meta *mt = model_info(m);
    const itemrows *r = model_item_rows(m);
    for (size_t t = 0; t < n_targets; t++)
        n_because[t] = 0;
    for (size_t k = 0; k < n; k++)
        if (!(signals[k].weight >= 0.0f) || !isfinite(signals[k].weight))
            return err_set(e, ERR_INVALID, "signal weight %g is not a finite number >= 0",
                           (double)signals[k].weight);
    if (n_targets == 0 || per_item == 0) return ERR_OK;
    uint32_t *items, d;
    float *counts;
    if (merge_counts(m, user, signals, n, &items, &counts, &d))
        return err_set(e, ERR_NOMEM, "score: out of memory explaining %zu items", n_targets);
    float *contrib = calloc((size_t)n_targets * (d ? d : 1), sizeof *contrib);
    float *kept_w = weight ? NULL : malloc(per_item * sizeof *kept_w);
    int rc = contrib && (weight || kept_w)
                 ? ERR_OK
                 : err_set(e, ERR_NOMEM, "score: out of memory explaining %zu items", n_targets);
    if (!rc && d && r) /* Exact: an item-item score is a sum over the shopper's items. */
        for (size_t t = 0; t < n_targets; t++)
            for (uint32_t j = 0; j < d; j++)
                contrib[t * d + j] =
                    itemrows_value(counts[j]) * itemrows_get(r, items[j], targets[t]);
    if (!rc && d && (!r || mt->als_blend != 0.0f))
        rc = explain_als(m, yty, items, counts, d, targets, n_targets, r ? mt->als_blend : 1.0f,
                         contrib, e);
    for (size_t t = 0; !rc && t < n_targets; t++) {
        float *bw = weight ? weight + t * per_item : kept_w;
        for (uint32_t j = 0; j < d; j++)
            explain_keep(items[j], contrib[t * d + j], per_item, because + t * per_item, bw,
                         &n_because[t]);
    }
    free(contrib);
    free(kept_w);
    free(items);
    free(counts);
    return rc;
}

void score_vectors(const float *rows, uint32_t n, uint32_t factors, const float *x, float *scores) {
    if (n)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)factors, 1.0f, rows, (int)factors, x,
                    1, 0.0f, scores, 1);
}

void score_items(const model *m, const float *x, float *scores) {
    const model_meta *mt = model_info(m);
    score_vectors(model_item_factors(m), mt->n_items, mt->factors, x, scores);
}

int score_item_rows(const model *m, uint32_t user, const score_signal *signals, size_t n,
                    const float *x, float *scores, err_t *e) {
    const model_meta *mt = model_info(m);
    const itemrows *r = model_item_rows(m);
    for (size_t k = 0; k < n; k++)
        if (!(signals[k].weight >= 0.0f) || !isfinite(signals[k].weight))
            return err_set(e, ERR_INVALID, "signal weight %g is not a finite number >= 0",
                           (double)signals[k].weight);
    uint32_t *items, d;
    float *w;
    if (merge_counts(m, user, signals, n, &items, &w, &d))
        return err_set(e, ERR_NOMEM, "out of memory for %zu signals", n);
    /* An item's value is capped once, over all of its signals together. */
    for (uint32_t k = 0; k < d; k++)
        w[k] = itemrows_value(w[k]);
    memset(scores, 0, (size_t)mt->n_items * sizeof *scores);
    itemrows_accumulate(r, items, w, d, scores);
    if (x && mt->als_blend != 0.0f)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)mt->n_items, (int)mt->factors, mt->als_blend,
                    model_item_factors(m), (int)mt->factors, x, 1, 1.0f, scores, 1);
    free(items);
    free(w);
    return ERR_OK;
}

void score_similar_rows(const model *m, const uint32_t *seeds, size_t n, float *scores) {
    const itemrows *r = model_item_rows(m);
    memset(scores, 0, (size_t)r->n_items * sizeof *scores);
    float w = n ? 1.0f / (float)n : 0.0f;
    for (size_t k = 0; k < n; k++)
        itemrows_accumulate(r, &seeds[k], &w, 1, scores);
}

uint32_t score_together(const model *m, const uint32_t *seeds, size_t n, float *scores) {
    const itemrows *r = model_together(m);
    uint32_t ni = model_info(m)->n_items, listed = 0;
    for (uint32_t i = 0; i < ni; i++)
        scores[i] = -INFINITY;
    if (!r) return 0;
    /* A cart's seeds add up: an item bought with two of them outranks one
     * bought with either alone at the same strength. */
    for (size_t k = 0; k < n; k++)
        for (uint64_t a = r->indptr[seeds[k]]; a < r->indptr[seeds[k] + 1]; a++) {
            uint32_t j = r->index[a];
            if (scores[j] == -INFINITY) {
                scores[j] = 0.0f;
                listed++;
            }
            scores[j] += r->value[a];
        }
    return listed;
}

void score_similar_query(const model *m, const float *q, float *scores) {
    const model_meta *mt = model_info(m);
    const float *norms = model_item_norms(m);
    score_items(m, q, scores);
    for (uint32_t i = 0; i < mt->n_items; i++)
        /* An all-zero vector has no direction: it is similar to nothing. */
        scores[i] = norms[i] > 0.0f ? scores[i] / norms[i] : -INFINITY;
}

/* The largest popularity is that of the first item of the popularity
 * order, so no scan of the catalogue is needed per call or per block. */
void score_add_popularity(const model *m, uint32_t start, uint32_t len, float *scores) {
    const model_meta *mt = model_info(m);
    if (mt->popularity_blend == 0.0f || isinf(mt->popularity_blend) || mt->n_items == 0) return;
    const float *popularity = model_item_popularity(m);
    mf_blend_popularity(scores, popularity + start, len, popularity[model_popular_items(m)[0]],
                        mt->popularity_blend);
}

void score_apply_multipliers(float *scores, const float *mult, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        float m = mult[i];
        if (m == 0.0f)
            scores[i] = -INFINITY;
        else if (m != 1.0f)
            scores[i] = scores[i] >= 0.0f ? scores[i] * m : scores[i] / m;
    }
}

void score_keep_category(const model *m, uint32_t category, float *scores) {
    const uint32_t *cat = model_item_categories(m);
    uint32_t n = model_info(m)->n_items;
    for (uint32_t i = 0; i < n; i++)
        if (!cat || cat[i] != category) scores[i] = -INFINITY;
}

/* The vector of item i (the model's, or an extra one's) and its length;
 * NULL when an extra item has none. */
static const float *item_vector(const model *m, const score_extra_items *extra, uint32_t i,
                                float *norm) {
    const model_meta *mt = model_info(m);
    if (i < mt->n_items) {
        *norm = model_item_norms(m)[i];
        return model_item_factors(m) + (size_t)i * mt->factors;
    }
    if (!extra || !extra->vectors) return NULL;
    *norm = extra->norms[i - mt->n_items];
    return extra->vectors + (size_t)(i - mt->n_items) * mt->factors;
}

/* Cosine similarity of items a and b (0 when either has no vector). */
static float item_cosine(const model *m, const score_extra_items *extra, uint32_t a, uint32_t b) {
    float na = 0, nb = 0;
    const float *ya = item_vector(m, extra, a, &na), *yb = item_vector(m, extra, b, &nb);
    float d = na * nb;
    if (!ya || !yb || d <= 0.0f) return 0.0f;
    float dot = 0;
    for (uint32_t j = 0; j < model_info(m)->factors; j++)
        dot += ya[j] * yb[j];
    return dot / d;
}

uint32_t score_diversity_pool(uint32_t k) {
    /* MMR looks at a pool of the most relevant items only: diversifying
     * among poor matches would trade too much relevance. */
    return k * 5 < 50 ? 50 : k * 5;
}

int score_diversify(const model *m, const score_extra_items *extra, topk_entry *pool, uint32_t n,
                    uint32_t k, float diversity, topk_entry *out, uint32_t *n_out, err_t *e) {
    float *max_sim = malloc(((size_t)n + 1) * sizeof *max_sim);
    if (!max_sim) return err_set(e, ERR_NOMEM, "score: out of memory diversifying");
    float hi = n ? pool[0].score : 0, lo = n ? pool[n - 1].score : 0;
    float span = hi > lo ? hi - lo : 1.0f;
    for (uint32_t i = 0; i < n; i++)
        max_sim[i] = -1.0f;
    uint32_t picked = 0;
    while (picked < k && picked < n) {
        uint32_t best = picked;
        float best_value = -INFINITY;
        for (uint32_t i = picked; i < n; i++) {
            float rel = (pool[i].score - lo) / span;
            float value = (1.0f - diversity) * rel - diversity * max_sim[i];
            if (value > best_value) best_value = value, best = i;
        }
        /* Move the pick to the front of the remaining pool. */
        topk_entry t = pool[picked];
        pool[picked] = pool[best];
        pool[best] = t;
        float s = max_sim[picked];
        max_sim[picked] = max_sim[best];
        max_sim[best] = s;
        for (uint32_t i = picked + 1; i < n; i++) {
            float sim = item_cosine(m, extra, pool[i].index, pool[picked].index);
            if (sim > max_sim[i]) max_sim[i] = sim;
        }
        out[picked] = pool[picked];
        picked++;
    }
    free(max_sim);
    *n_out = picked;
    return ERR_OK;
}

int score_top_k(const model *m, const float *scores, uint32_t k, float diversity, topk_entry *out,
                uint32_t *n_out, err_t *e) {
    uint32_t n_items = model_info(m)->n_items;
    if (!(diversity > 0.0f)) {
        *n_out = topk_select(scores, n_items, k, out);
        return ERR_OK;
    }
    uint32_t pool_size = score_diversity_pool(k);
    topk_entry *pool = malloc((size_t)pool_size * sizeof *pool);
    if (!pool) return err_set(e, ERR_NOMEM, "score: out of memory diversifying");
    uint32_t n = topk_select(scores, n_items, pool_size, pool);
    int err = score_diversify(m, NULL, pool, n, k, diversity, out, n_out, e);
    free(pool);
    return err;
}

/* --- batches ------------------------------------------------------------- */

/* A query's running top-k while item blocks are scored from the panels,
 * and the candidates that exact float32 scores could still put in it: every
 * item whose panel score is within margin of the k-th best. */
typedef struct block_topk {
    topk_entry *kept; /* room for 2 k: the kept k, then a block's best k */
    uint32_t n_kept;
    topk_entry *cand; /* ascending item index */
    uint32_t n_cand, cap_cand;
    float margin;         /* 2 x the panel error bound, stretched by the multipliers */
    size_t next_excluded; /* the first exclusion not yet applied */
} block_topk;

size_t score_batch_workspace(size_t n) {
    return n * panel_padded(SCORE_BLOCK);
}

/* The score every kept item beats by at least margin: below it an item can
 * neither be nor become one of the best k. */
static float block_floor(const block_topk *t, uint32_t k) {
    if (t->n_kept < k) return -INFINITY;
    float kth = t->kept[k - 1].score;
    /* The blend and multipliers round once more: a millionth on top. */
    return kth - t->margin - 1e-6f * fabsf(kth);
}

/* Applies q's exclusions, the blend, multipliers and category to its panel
 * scores of items [start, start + len) in row, folds the block's best into
 * t and keeps the candidates near them. Returns 0, or -1 when out of
 * memory. */
static int block_add(const model *m, const score_query *q, block_topk *t, float *row,
                     uint32_t start, uint32_t len) {
    while (t->next_excluded < q->n_excluded && q->excluded[t->next_excluded] < start + len)
        row[q->excluded[t->next_excluded++] - start] = -INFINITY;
    score_add_popularity(m, start, len, row);
    if (q->multipliers) score_apply_multipliers(row, q->multipliers + start, len);
    if (q->category >= 0) {
        const uint32_t *cat = model_item_categories(m);
        for (uint32_t i = 0; i < len; i++)
            if (!cat || cat[start + i] != (uint64_t)q->category) row[i] = -INFINITY;
    }
    uint32_t got = topk_select(row, len, q->k, t->kept + t->n_kept);
    for (uint32_t i = 0; i < got; i++)
        t->kept[t->n_kept + i].index += start;
    /* The kept and the new entries together; the best k of them stay. */
    topk_sort(t->kept, t->n_kept + got);
    t->n_kept = t->n_kept + got < q->k ? t->n_kept + got : q->k;
    float floor = block_floor(t, q->k);
    for (uint32_t i = 0; i < len; i++) {
        if ((i & 15) == 0 && len - i >= 16 && !topk_any_above(row + i, floor)) {
            i += 15;
            continue;
        }
        if (!(row[i] >= floor) || row[i] == -INFINITY) continue;
        if (t->n_cand == t->cap_cand) {
            /* Drop the candidates the floor has passed before growing. */
            uint32_t w = 0;
            for (uint32_t j = 0; j < t->n_cand; j++)
                if (t->cand[j].score >= floor) t->cand[w++] = t->cand[j];
            t->n_cand = w;
            if (w >= t->cap_cand / 2) {
                uint32_t cap = t->cap_cand ? 2 * t->cap_cand : 64;
                topk_entry *grown = realloc(t->cand, cap * sizeof *grown);
                if (!grown) return -1;
                t->cand = grown;
                t->cap_cand = cap;
            }
        }
        t->cand[t->n_cand++] = (topk_entry){start + i, row[i]};
    }
    return 0;
}

/* q's best k by exact float32 scores (the dot product with the item's row,
 * then the same blend and multipliers), chosen among the candidates still
 * above the floor. Returns 0, or -1 when out of memory. */
static int block_finish(const model *m, score_query *q, block_topk *t) {
    uint32_t f = model_info(m)->factors;
    const float *items = model_item_factors(m);
    float floor = block_floor(t, q->k);
    float *exact = malloc((t->n_cand ? t->n_cand : 1) * sizeof *exact);
    uint32_t *index = malloc((t->n_cand ? t->n_cand : 1) * sizeof *index);
    if (!exact || !index) {
        free(exact);
        free(index);
        return -1;
    }
    uint32_t n = 0;
    for (uint32_t j = 0; j < t->n_cand; j++) {
        if (!(t->cand[j].score >= floor)) continue;
        uint32_t item = t->cand[j].index;
        const float *y = items + (size_t)item * f;
        float dot = 0.0f;
        for (uint32_t d = 0; d < f; d++)
            dot += q->x[d] * y[d];
        score_add_popularity(m, item, 1, &dot);
        if (q->multipliers) score_apply_multipliers(&dot, q->multipliers + item, 1);
        index[n] = item;
        exact[n++] = dot;
    }
    /* Candidates are in item order, so ties still go to the lower item. */
    q->n_best = topk_select(exact, n, q->k, q->best);
    for (uint32_t i = 0; i < q->n_best; i++)
        q->best[i].index = index[q->best[i].index];
    free(exact);
    free(index);
    return 0;
}

int score_batch(const model *m, score_query *q, size_t n, float *work, err_t *e) {
    const model_meta *mt = model_info(m);
    uint32_t f = mt->factors, pairs = panel_pairs(f);
    block_topk *t = calloc(n ? n : 1, sizeof *t);
    uint32_t *queries = malloc((n ? n : 1) * pairs * sizeof *queries);
    int failed = !t || !queries;
    for (size_t j = 0; j < n && !failed; j++) {
        panel_query(q[j].x, f, queries + j * pairs);
        double norm = 0;
        for (uint32_t d = 0; d < f; d++)
            norm += (double)q[j].x[d] * q[j].x[d];
        t[j].margin =
            2.0f * q[j].max_slope *
            (panel_error(f) * (float)sqrt(norm) * model_item_norm_max(m) + PANEL_ERROR_ABS);
        failed = !(t[j].kept = malloc(2 * (size_t)q[j].k * sizeof *t[j].kept));
    }
    for (uint32_t start = 0; start < mt->n_items && !failed; start += SCORE_BLOCK) {
        uint32_t len = mt->n_items - start < SCORE_BLOCK ? mt->n_items - start : SCORE_BLOCK;
        size_t stride = panel_padded(len);
        panel_scores(model_item_panels(m), f, start, len, queries, (uint32_t)n, work, stride);
        for (size_t j = 0; j < n && !failed; j++)
            failed = block_add(m, &q[j], &t[j], work + j * stride, start, len);
    }
    for (size_t j = 0; j < n && !failed; j++)
        failed = block_finish(m, &q[j], &t[j]);
    for (size_t j = 0; t && j < n; j++) {
        free(t[j].kept);
        free(t[j].cand);
    }
    free(t);
    free(queries);
    return failed ? err_set(e, ERR_NOMEM, "score: out of memory scoring %u items", mt->n_items)
                  : ERR_OK;
}
