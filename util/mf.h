/* mf: the matrix-factorization arithmetic that serving and offline
 * evaluation share, so that validation measures exactly what is served -
 * the fold-in of a shopper's vector against fixed item factors (the exact
 * solve of one implicit-ALS step, Hu, Koren, Volinsky 2008) and the
 * popularity blend of a served model (model_meta.popularity_blend).
 *
 * Both work on plain row-major float32 arrays the caller owns, keep no
 * state and are thread-safe (OpenBLAS single-threaded, see linalg.h). */
#ifndef RECD_MF_H
#define RECD_MF_H

#include <stdint.h>

#include "err.h"

/* The largest factor count of a model: the fold-in keeps an f x f double
 * matrix, and beyond this the dense solves stop making sense for a
 * recommender. */
#define MF_MAX_FACTORS 4096

/* Fold-in: solves one user's vector x with the items fixed,
 *     (YtY + Yt(C_u - I)Y + lambda I) x = Yt C_u p(u),
 * c_ui = 1 + alpha * counts[k] for the user's n items items[k] (indexes
 * into item_factors, n_items x factors; repeated indexes count as separate
 * cells), preference 1 there and 0 elsewhere: the step of an ALS
 * half-iteration, solved exactly (Cholesky in double precision) since it
 * runs once. yty is YtY of item_factors (factors x factors, both triangles;
 * linalg_gram). A user with n 0 gets the zero vector, as in training.
 * Writes factors floats to x; nothing is kept. Returns ERR_OK,
 * ERR_INVALID (factors not in 1..MF_MAX_FACTORS, a negative or non-finite
 * regularization, alpha or count, or a system that is not positive
 * definite, e.g. regularization 0 with too few items; x then unchanged),
 * ERR_NOMEM (x unchanged). */
int mf_fold_in(const float *item_factors, uint32_t factors, const float *yty, const uint32_t *items,
               const float *counts, uint32_t n, float regularization, float alpha, float *x,
               err_t *e);

/* The popularity blend: adds w * popularity[i] / max_popularity to
 * scores[i] for i < n, so a personalized score becomes x_u . y_i + w * p_i
 * with p_i in [0, 1] when max_popularity is the largest popularity of the
 * catalogue. A block of a row (popularity and scores offset alike) gets
 * bit-identical values to the whole row. Needs a finite w >= 0 (+inf,
 * "popularity only", is the most-popular list, which callers serve
 * instead); does nothing when w is 0 or max_popularity is not positive.
 * An item at -INFINITY stays there. */
void mf_blend_popularity(float *scores, const float *popularity, uint32_t n, float max_popularity,
                         float w);

/* The vector of an item or a member from its labels alone, through an
 * attribute-to-factor mapping (training/attrmap.h fits it; the model stores
 * it, model_label_map): map is (n_labels + 1) x factors row-major, row l
 * the weights of label l and the last row the bias (the mean vector), and
 *     x = bias + (1 / sqrt(n)) * sum over the n labels of map[l],
 * the features being 1/sqrt(n) per label so that a long description and a
 * short title weigh alike. labels[k] must be distinct and < n_labels (the
 * caller drops labels the model does not know and counts only the others
 * in n); n = 0 gives the bias. Writes factors floats to x. Thread-safe. */
void mf_label_vector(const float *map, uint32_t n_labels, uint32_t factors, const uint32_t *labels,
                     uint32_t n, float *x);

#endif
