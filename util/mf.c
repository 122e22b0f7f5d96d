#include "mf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"

int mf_fold_in(const float *item_factors, uint32_t factors, const float *yty, const uint32_t *items,
               const float *counts, uint32_t n, float regularization, float alpha, float *x,
               err_t *e) {
    if (factors == 0 || factors > MF_MAX_FACTORS)
        return err_set(e, ERR_INVALID, "fold-in: factors must be in 1..%d (got %u)", MF_MAX_FACTORS,
                       factors);
    if (!(regularization >= 0.0f) || !isfinite(regularization) || !(alpha >= 0.0f) ||
        !isfinite(alpha))
        return err_set(e, ERR_INVALID, "fold-in: regularization and alpha must be finite and >= 0");
    for (uint32_t k = 0; k < n; k++)
        if (!(counts[k] >= 0.0f) || !isfinite(counts[k]))
            return err_set(e, ERR_INVALID, "fold-in: count %u is negative or not finite", k);
    const size_t f = factors;
    if (n == 0) {
        memset(x, 0, f * sizeof *x);
        return ERR_OK;
    }
    /* Double precision: A can be ill-conditioned when lambda is small, and
     * the f^2 accumulation per item would otherwise lose digits. Only the
     * lower triangle is built: the solve reads no other. */
    double *a = malloc((f * f + f) * sizeof *a);
    if (!a) return err_set(e, ERR_NOMEM, "fold-in: out of memory for a %zu x %zu system", f, f);
    double *b = a + f * f;
    for (size_t j = 0; j < f; j++) {
        for (size_t l = 0; l <= j; l++)
            a[j * f + l] = (double)yty[j * f + l];
        a[j * f + j] += (double)regularization;
        b[j] = 0.0;
    }
    for (uint32_t k = 0; k < n; k++) {
        const float *y = item_factors + (size_t)items[k] * f;
        double c = 1.0 + (double)alpha * (double)counts[k];
        for (size_t j = 0; j < f; j++) {
            double wj = (c - 1.0) * (double)y[j];
            double *row = a + j * f;
            for (size_t l = 0; l <= j; l++)
                row[l] += wj * (double)y[l];
            b[j] += c * (double)y[j];
        }
    }
    if (linalg_solve_spd(a, b, f)) {
        free(a);
        return err_set(e, ERR_INVALID,
                       "fold-in: system is not positive definite (regularization %g)",
                       (double)regularization);
    }
    for (size_t j = 0; j < f; j++)
        x[j] = (float)b[j];
    free(a);
    return ERR_OK;
}

/* The weight is divided once, outside the loop, so the server's blocks of
 * items and evaluation's whole rows add exactly the same float to an item. */
void mf_blend_popularity(float *scores, const float *popularity, uint32_t n, float max_popularity,
                         float w) {
    if (w == 0.0f || !(max_popularity > 0.0f)) return;
    float scale = w / max_popularity;
    for (uint32_t i = 0; i < n; i++)
        scores[i] += scale * popularity[i];
}

void mf_label_vector(const float *map, uint32_t n_labels, uint32_t factors, const uint32_t *labels,
                     uint32_t n, float *x) {
    const float *bias = map + (size_t)n_labels * factors;
    for (uint32_t j = 0; j < factors; j++)
        x[j] = 0.0f;
    for (uint32_t k = 0; k < n; k++) {
        const float *w = map + (size_t)labels[k] * factors;
        for (uint32_t j = 0; j < factors; j++)
            x[j] += w[j];
    }
    float s = n ? 1.0f / sqrtf((float)n) : 0.0f;
    for (uint32_t j = 0; j < factors; j++)
        x[j] = bias[j] + s * x[j];
}
