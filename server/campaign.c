#include "campaign.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"

/* campaign_filter keeps a bit per segment and per tier. */
_Static_assert(MODEL_CHURN_N_SEGMENTS <= 32 && MODEL_CHURN_N_TIERS <= 32, "code masks");

int campaign_top_factors(const model *m, uint32_t u, uint32_t n, uint32_t *feature,
                         double *contribution, uint32_t *n_out, err_t *e) {
    const model_churn *c = model_churn_info(m);
    if (!c)
        return err_set(e, ERR_PRECONDITION, "model %s has no churn model", model_info(m)->version);
    double *all = malloc(c->n_features * sizeof *all);
    if (!all) return err_set(e, ERR_NOMEM, "out of memory");
    model_churn_contributions(m, u, all);
    /* Selection by magnitude: n is a handful, n_features small. */
    uint32_t k = 0;
    for (; k < n && k < c->n_features; k++) {
        uint32_t best = UINT32_MAX;
        for (uint32_t j = 0; j < c->n_features; j++)
            if (!isnan(all[j]) && (best == UINT32_MAX || fabs(all[j]) > fabs(all[best]))) best = j;
        if (best == UINT32_MAX) break;
        feature[k] = best;
        contribution[k] = all[best];
        all[best] = NAN;
    }
    free(all);
    *n_out = k;
    return ERR_OK;
}

/* out = user factors . q */
void campaign_affinity_vector(const model *m, const float *q, float *out) {
    const model_meta *mt = model_info(m);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)mt->n_users, (int)mt->factors, 1.0f,
                model_user_factors(m), (int)mt->factors, q, 1, 0.0f, out, 1);
}

int campaign_affinity_category(const model *m, uint32_t category, float *out, err_t *e) {
    const model_meta *mt = model_info(m);
    const uint32_t *cat = model_item_categories(m);
    float *q = calloc(mt->factors, sizeof *q);
    if (!q) return err_set(e, ERR_NOMEM, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; cat && i < mt->n_items; i++) {
        if (cat[i] != category) continue;
        const float *y = model_item_factors(m) + (size_t)i * mt->factors;
        for (uint32_t j = 0; j < mt->factors; j++)
            q[j] += y[j];
        n++;
    }
    if (n == 0) {
        free(q);
        return err_set(e, ERR_NOTFOUND, "the category has no items in model %s", mt->version);
    }
    for (uint32_t j = 0; j < mt->factors; j++)
        q[j] /= (float)n;
    campaign_affinity_vector(m, q, out);
    free(q);
    return ERR_OK;
}

int campaign_select(const model *m, const campaign_filter *f, campaign_emit_fn emit, void *ctx,
                    err_t *e) {
    const model_churn *c = model_churn_info(m);
    if (!c)
        return err_set(e, ERR_PRECONDITION, "model %s has no churn model", model_info(m)->version);
    if (f->order == CAMPAIGN_BY_AFFINITY && !f->affinity)
        return err_set(e, ERR_INVALID, "ordering by affinity needs an item or a category");
    if (f->order == CAMPAIGN_BY_EXPECTED_VALUE && !c->p_alive)
        return err_set(e, ERR_PRECONDITION,
                       "model %s has no CLV to order by expected value (retrain with "
                       "--churn-horizon)",
                       model_info(m)->version);
    uint32_t n_users = model_info(m)->n_users;
    float *key = malloc(((size_t)n_users + 1) * sizeof *key);
    if (!key) return err_set(e, ERR_NOMEM, "out of memory for %u members", n_users);
    uint32_t n_pass = 0;
    for (uint32_t u = 0; u < n_users; u++) {
        float p = c->probability[u];
        int pass = !isnan(p) && p >= f->min_probability && p <= f->max_probability &&
                   (!f->segments || (f->segments >> c->segment[u] & 1)) &&
                   (!f->tiers || (f->tiers >> c->tier[u] & 1)) && (!f->eligible || f->eligible[u]);
        if (!pass) {
            key[u] = -INFINITY;
            continue;
        }
        n_pass++;
        key[u] = f->order == CAMPAIGN_BY_VALUE            ? c->monetary[u]
                 : f->order == CAMPAIGN_BY_AFFINITY       ? f->affinity[u]
                 : f->order == CAMPAIGN_BY_EXPECTED_VALUE ? (float)c->expected_value[u]
                                                          : p;
        /* -INFINITY marks "left out"; a passing member must stay selectable. */
        if (!(key[u] > -INFINITY)) key[u] = -FLT_MAX;
    }
    uint32_t want = f->limit && f->limit < n_pass ? f->limit : n_pass;
    topk_entry *order = malloc(((size_t)want + 1) * sizeof *order);
    if (!order) {
        free(key);
        return err_set(e, ERR_NOMEM, "out of memory for %u targets", want);
    }
    uint32_t n = topk_select(key, n_users, want, order);
    free(key);
    for (uint32_t i = 0; i < n; i++)
        if (emit(ctx, order[i].index)) break;
    free(order);
    return ERR_OK;
}
