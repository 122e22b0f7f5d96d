/* attrmap: learns how labels map into the factor space, so that an item or
 * a member without history gets a vector from its labels alone (Gantner et
 * al. 2010, "Learning attribute-to-feature mappings for cold-start
 * recommendations": ridge regression from the label features to the ALS
 * factors the collaborative model learned for the others).
 *
 * Features: row r with n labels has 1/sqrt(n) at each (mf_label_vector in
 * util/mf.h is the served arithmetic). The fit is
 *     W = (Xc^T Xc + lambda I)^-1 Xc^T (Y - ybar),  bias = ybar - xbar^T W,
 * (Xc the features centred by their mean xbar: an unpenalized intercept)
 * over the rows marked for fitting (those with a collaborative vector), in
 * double precision (one Cholesky of n_labels^2). lambda is chosen from
 * ATTRMAP_LAMBDAS on a validation part of those rows (a seeded tenth) by
 * the mean squared error of the predicted vectors, then the map is refitted
 * on all of them: no test data is looked at.
 *
 * Thread-safety: none kept; the OpenBLAS calls run single-threaded. */
#ifndef RECD_ATTRMAP_H
#define RECD_ATTRMAP_H

#include <stdint.h>

#include "err.h"

/* The lambdas tried, in units of the mean diagonal of X^T X (so the grid
 * follows the number of rows and labels rather than one dataset). */
#define ATTRMAP_LAMBDAS                                                                            \
    { 0.01f, 0.03f, 0.1f, 0.3f, 1.0f, 3.0f, 10.0f }
#define ATTRMAP_N_LAMBDAS 7
#define ATTRMAP_VALID_FRACTION 0.1

typedef struct attrmap {
    uint32_t n_labels, factors;
    float *map;   /* (n_labels + 1) x factors, the last row the bias; owned, attrmap_free */
    float lambda; /* the chosen lambda, absolute */
    double valid_mse, bias_mse; /* validation error of the map and of the bias alone */
    uint32_t fit_rows;          /* rows it was fitted on */
} attrmap;

/* Fits *out on the rows r < n_rows with use[r] != 0 (use NULL = all):
 * row r's labels index[indptr[r] .. indptr[r + 1]) (distinct, < n_labels),
 * its target targets[r * factors ..]. A fixed lambda > 0 skips the
 * validation; lambda 0 chooses it. Returns ERR_OK, ERR_INVALID (no row to
 * fit, n_labels 0), ERR_NOMEM, ERR_INTERNAL (a solve failed). */
int attrmap_fit(const uint64_t *indptr, const uint32_t *index, uint32_t n_rows, uint32_t n_labels,
                const float *targets, uint32_t factors, const uint8_t *use, float lambda,
                uint64_t seed, attrmap *out, err_t *e);

/* Frees what m owns and zeroes it; safe on a zeroed one. */
void attrmap_free(attrmap *m);

#endif
