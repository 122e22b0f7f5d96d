#include "attrmap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"
#include "mf.h"

/* A row's split: validation when its seeded hash falls in the first tenth. */
static int is_valid_row(uint64_t seed, uint32_t r) {
    uint64_t h = (seed ^ 0x9E3779B97F4A7C15ull) + r * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 29;
    return (double)(h >> 11) / 9007199254740992.0 < ATTRMAP_VALID_FRACTION;
}

/* Solves the ridge on the rows with take(r), into map. gram and rhs are
 * scratch of n_labels^2 and n_labels * factors doubles. *diag gets the
 * mean diagonal of X^T X (before lambda). */
static int fit_once(const uint64_t *indptr, const uint32_t *index, uint32_t n_rows, uint32_t nl,
                    const float *y, uint32_t k, const uint8_t *take, float lambda, int relative,
                    double *gram, double *rhs, float *map, double *diag, float *used) {
    double *mean = calloc(k, sizeof *mean);
    if (!mean) return ERR_NOMEM;
    uint64_t n = 0;
    for (uint32_t r = 0; r < n_rows; r++) {
        if (!take[r]) continue;
        n++;
        for (uint32_t j = 0; j < k; j++)
            mean[j] += y[(size_t)r * k + j];
    }
    if (n == 0) {
        free(mean);
        return ERR_INVALID;
    }
    for (uint32_t j = 0; j < k; j++)
        mean[j] /= (double)n;
    memset(gram, 0, (size_t)nl * nl * sizeof *gram);
    memset(rhs, 0, (size_t)nl * k * sizeof *rhs);
    for (uint32_t r = 0; r < n_rows; r++) {
        uint64_t a = indptr[r], b = indptr[r + 1];
        if (!take[r] || a == b) continue;
        double v = 1.0 / sqrt((double)(b - a)), v2 = v * v;
        for (uint64_t p = a; p < b; p++) {
            uint32_t li = index[p];
            for (uint64_t q = a; q <= p; q++) {
                uint32_t lj = index[q];
                /* Lower triangle: row the larger index. */
                if (li >= lj)
                    gram[(size_t)li * nl + lj] += v2;
                else
                    gram[(size_t)lj * nl + li] += v2;
            }
            for (uint32_t j = 0; j < k; j++)
                rhs[(size_t)j * nl + li] += v * (y[(size_t)r * k + j] - mean[j]);
        }
    }
    /* Centre the features too (an unpenalized intercept): X^T X - n xbar
     * xbar^T; X^T (y - ybar) is centred already. */
    double *xbar = calloc(nl, sizeof *xbar);
    if (!xbar) {
        free(mean);
        return ERR_NOMEM;
    }
    for (uint32_t r = 0; r < n_rows; r++) {
        uint64_t a = indptr[r], b = indptr[r + 1];
        if (!take[r] || a == b) continue;
        double v = 1.0 / sqrt((double)(b - a));
        for (uint64_t p = a; p < b; p++)
            xbar[index[p]] += v / (double)n;
    }
    for (uint32_t li = 0; li < nl; li++)
        for (uint32_t lj = 0; lj <= li; lj++)
            gram[(size_t)li * nl + lj] -= (double)n * xbar[li] * xbar[lj];
    double d = 0;
    for (uint32_t l = 0; l < nl; l++)
        d += gram[(size_t)l * nl + l];
    d /= nl;
    if (diag) *diag = d;
    double lam = relative ? lambda * (d > 0 ? d : 1.0) : lambda;
    for (uint32_t l = 0; l < nl; l++)
        gram[(size_t)l * nl + l] += lam;
    if (linalg_solve_spd_many(gram, rhs, nl, k)) {
        free(mean);
        free(xbar);
        return ERR_INTERNAL;
    }
    for (uint32_t l = 0; l < nl; l++)
        for (uint32_t j = 0; j < k; j++)
            map[(size_t)l * k + j] = (float)rhs[(size_t)j * nl + l];
    /* bias = ybar - xbar^T W: a row at the mean features gets the mean. */
    for (uint32_t j = 0; j < k; j++) {
        double b = mean[j];
        for (uint32_t l = 0; l < nl; l++)
            b -= xbar[l] * rhs[(size_t)j * nl + l];
        map[(size_t)nl * k + j] = (float)b;
    }
    free(xbar);
    if (used) *used = (float)lam;
    free(mean);
    return ERR_OK;
}

/* Mean squared error of map's vectors over the rows with take(r) that have
 * labels; *bias_mse the same for the mean vector of the fitting rows (fit)
 * alone, what a cold row gets without a mapping. */
static double map_mse(const uint64_t *indptr, const uint32_t *index, uint32_t n_rows, uint32_t nl,
                      const float *y, uint32_t k, const uint8_t *take, const uint8_t *fit,
                      const float *map, float *x, double *bias_mse) {
    double se = 0, sb = 0;
    uint64_t n = 0, nf = 0;
    double bias[MF_MAX_FACTORS] = {0};
    for (uint32_t r = 0; r < n_rows; r++) {
        if (!fit[r]) continue;
        nf++;
        for (uint32_t j = 0; j < k; j++)
            bias[j] += (y[(size_t)r * k + j] - bias[j]) / (double)nf;
    }
    for (uint32_t r = 0; r < n_rows; r++) {
        if (!take[r] || indptr[r] == indptr[r + 1]) continue;
        mf_label_vector(map, nl, k, index + indptr[r], (uint32_t)(indptr[r + 1] - indptr[r]), x);
        for (uint32_t j = 0; j < k; j++) {
            double t = y[(size_t)r * k + j];
            se += (x[j] - t) * (x[j] - t);
            sb += (bias[j] - t) * (bias[j] - t);
        }
        n++;
    }
    if (bias_mse) *bias_mse = n ? sb / (double)n : NAN;
    return n ? se / (double)n : NAN;
}

int attrmap_fit(const uint64_t *indptr, const uint32_t *index, uint32_t n_rows, uint32_t n_labels,
                const float *targets, uint32_t factors, const uint8_t *use, float lambda,
                uint64_t seed, attrmap *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (n_labels == 0 || factors == 0) return err_set(e, ERR_INVALID, "attrmap: no labels");
    size_t nl = n_labels, k = factors;
    double *gram = malloc(nl * nl * sizeof *gram), *rhs = malloc(nl * k * sizeof *rhs);
    float *map = malloc((nl + 1) * k * sizeof *map), *x = malloc(k * sizeof *x);
    uint8_t *fit = malloc(n_rows ? n_rows : 1), *valid = malloc(n_rows ? n_rows : 1),
            *all = malloc(n_rows ? n_rows : 1);
    int rc = ERR_OK;
    if (!gram || !rhs || !map || !x || !fit || !valid || !all) {
        rc = err_set(e, ERR_NOMEM, "attrmap: out of memory for %u labels", n_labels);
        goto out;
    }
    uint32_t n_fit = 0, n_valid = 0;
    for (uint32_t r = 0; r < n_rows; r++) {
        all[r] = !use || use[r];
        int v = all[r] && is_valid_row(seed, r);
        valid[r] = (uint8_t)v;
        fit[r] = (uint8_t)(all[r] && !v);
        n_fit += fit[r];
        n_valid += valid[r] && indptr[r + 1] > indptr[r];
        out->fit_rows += all[r];
    }
    if (out->fit_rows == 0) {
        rc = err_set(e, ERR_INVALID, "attrmap: no row with a vector to learn from");
        goto out;
    }
    float chosen = lambda;
    int relative = 0;
    if (!(lambda > 0) && n_fit > 0 && n_valid > 0) {
        static const float grid[ATTRMAP_N_LAMBDAS] = ATTRMAP_LAMBDAS;
        double best = INFINITY;
        for (int g = 0; g < ATTRMAP_N_LAMBDAS; g++) {
            float used;
            rc = fit_once(indptr, index, n_rows, n_labels, targets, factors, fit, grid[g], 1, gram,
                          rhs, map, NULL, &used);
            if (rc) {
                rc = err_set(e, rc, "attrmap: ridge solve failed (lambda %g)", (double)grid[g]);
                goto out;
            }
            double bm, mse = map_mse(indptr, index, n_rows, n_labels, targets, factors, valid, fit,
                                     map, x, &bm);
            if (mse < best) {
                best = mse;
                chosen = grid[g];
                out->valid_mse = mse;
                out->bias_mse = bm;
            }
        }
        relative = 1;
    } else if (!(lambda > 0)) {
        chosen = 1.0f; /* too few rows to validate on: the middle of the grid */
        relative = 1;
    }
    rc = fit_once(indptr, index, n_rows, n_labels, targets, factors, all, chosen, relative, gram,
                  rhs, map, NULL, &out->lambda);
    if (rc) {
        rc = err_set(e, rc, "attrmap: ridge solve failed");
        goto out;
    }
    out->n_labels = n_labels;
    out->factors = factors;
    out->map = map;
    map = NULL;
out:
    free(gram);
    free(rhs);
    free(map);
    free(x);
    free(fit);
    free(valid);
    free(all);
    return rc;
}

void attrmap_free(attrmap *m) {
    free(m->map);
    memset(m, 0, sizeof *m);
}
