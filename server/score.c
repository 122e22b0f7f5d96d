#include "score.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "als.h"
#include "eval.h"

void score_gram(const model *m, float *yty) {
    const model_meta *mt = model_info(m);
    als_gram(model_item_factors(m), mt->n_items, mt->factors, yty);
}

static int cmp_signal_item(const void *a, const void *b) {
    uint32_t x = ((const score_signal *)a)->item, y = ((const score_signal *)b)->item;
    return (x > y) - (x < y);
}

int score_fold_in(const model *m, const float *yty, uint32_t user, const score_signal *signals,
                  size_t n, float *x, err_t *e) {
    const model_meta *mt = model_info(m);
    uint32_t n_stored = 0;
    const uint32_t *stored = NULL;
    const float *stored_counts = NULL;
    if (user != SCORE_NO_USER) {
        stored = model_user_items(m, user, &n_stored);
        stored_counts = model_user_item_counts(m, user);
    }
    /* Merge the stored history (sorted by item) with the signals sorted by
     * item, adding weights of the same item: the counts a retraining would
     * see for this user. */
    size_t cap = (size_t)n_stored + n;
    score_signal *sig = malloc((n ? n : 1) * sizeof *sig);
    uint32_t *items = malloc((cap ? cap : 1) * sizeof *items);
    float *counts = malloc((cap ? cap : 1) * sizeof *counts);
    if (!sig || !items || !counts) {
        free(sig);
        free(items);
        free(counts);
        return err_set(e, ERR_NOMEM, "score: out of memory folding in %zu signals", n);
    }
    if (n) memcpy(sig, signals, n * sizeof *sig);
    qsort(sig, n, sizeof *sig, cmp_signal_item);
    uint32_t out = 0;
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
        items[out] = item;
        counts[out++] = w;
    }
    int rc = als_fold_in(model_item_factors(m), mt->factors, yty, items, counts, out,
                         mt->regularization, mt->alpha, x, e);
    free(sig);
    free(items);
    free(counts);
    return rc;
}

void score_items(const model *m, const float *x, float *scores) {
    const model_meta *mt = model_info(m);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)mt->n_items, (int)mt->factors, 1.0f,
                model_item_factors(m), (int)mt->factors, x, 1, 0.0f, scores, 1);
}

void score_similar(const model *m, const uint32_t *seeds, size_t n, float *scores) {
    const model_meta *mt = model_info(m);
    const float *y = model_item_factors(m), *norms = model_item_norms(m);
    /* The mean of cosines to the seeds is the dot product with the mean of
     * the seeds' unit vectors, so one sgemv serves any number of seeds. */
    float *q = calloc(mt->factors, sizeof *q);
    if (!q) {
        for (uint32_t i = 0; i < mt->n_items; i++)
            scores[i] = -INFINITY;
        return;
    }
    for (size_t s = 0; s < n; s++) {
        float norm = norms[seeds[s]];
        if (norm <= 0.0f) continue;
        const float *row = y + (size_t)seeds[s] * mt->factors;
        for (uint32_t j = 0; j < mt->factors; j++)
            q[j] += row[j] / (norm * (float)n);
    }
    score_items(m, q, scores);
    free(q);
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
    eval_blend_popularity(scores, popularity + start, len, popularity[model_popular_items(m)[0]],
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

/* Cosine similarity of items a and b. */
static float item_cosine(const model *m, uint32_t a, uint32_t b) {
    const model_meta *mt = model_info(m);
    const float *ya = model_item_factors(m) + (size_t)a * mt->factors;
    const float *yb = model_item_factors(m) + (size_t)b * mt->factors;
    float d = model_item_norms(m)[a] * model_item_norms(m)[b];
    if (d <= 0.0f) return 0.0f;
    float dot = 0;
    for (uint32_t j = 0; j < mt->factors; j++)
        dot += ya[j] * yb[j];
    return dot / d;
}

int score_top_k(const model *m, const float *scores, uint32_t k, float diversity, topk_entry *out,
                uint32_t *n_out, err_t *e) {
    uint32_t n_items = model_info(m)->n_items;
    if (!(diversity > 0.0f)) {
        *n_out = topk_select(scores, n_items, k, out);
        return ERR_OK;
    }
    /* MMR looks at a pool of the most relevant items only: diversifying
     * among poor matches would trade too much relevance. */
    uint32_t pool_size = k * 5 < 50 ? 50 : k * 5;
    topk_entry *pool = malloc((size_t)pool_size * sizeof *pool);
    float *max_sim = malloc((size_t)pool_size * sizeof *max_sim);
    if (!pool || !max_sim) {
        free(pool);
        free(max_sim);
        return err_set(e, ERR_NOMEM, "score: out of memory diversifying");
    }
    uint32_t n = topk_select(scores, n_items, pool_size, pool);
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
            float sim = item_cosine(m, pool[i].index, pool[picked].index);
            if (sim > max_sim[i]) max_sim[i] = sim;
        }
        out[picked] = pool[picked];
        picked++;
    }
    free(pool);
    free(max_sim);
    *n_out = picked;
    return ERR_OK;
}
