/* knn: item-item cosine nearest neighbours on co-purchase, the classic
 * "people who bought this also bought" baseline of offline evaluation.
 *
 * sim(i, j) = |U_i n U_j| / sqrt(|U_i| |U_j|) with U_i the users who have
 * item i in their training row (binary: repeat purchases and weights do not
 * count). Each item keeps only its top `neighbors` other items (ties by
 * lower index), so the model is sparse: n_items x neighbors. A user's score
 * for item j is the sum of sim(i, j) over the user's training items i that
 * list j as a neighbour. */
#ifndef RECD_KNN_H
#define RECD_KNN_H

#include <stdint.h>

#include "csr.h"
#include "err.h"
#include "eval.h"

typedef struct knn_model {
    uint32_t n_items, neighbors;
    uint32_t *count; /* n_items: neighbours kept for item i (<= neighbors) */
    uint32_t *index; /* n_items x neighbors: item i's neighbours, most similar first */
    float *sim;      /* n_items x neighbors: their similarities */
    /* Fills lists that have fewer than k scored items (e.g. a user without
     * training items) from this list, as the server does; may be NULL; not
     * owned. */
    const eval_popular *fallback;
    int failed; /* set (atomically) when knn_recommend could not allocate */
} knn_model;

/* Builds the neighbour lists of every item from train (users x items; only
 * which cells exist matters), items spread over threads (results do not
 * depend on the thread count). neighbors >= 1. Fills *m (fallback NULL;
 * caller frees with knn_free). Returns ERR_OK, ERR_INVALID, ERR_NOMEM. */
int knn_fit(const csr *train, uint32_t neighbors, uint32_t threads, knn_model *m, err_t *e);

/* Frees the arrays of m and zeroes it; safe on a zeroed model. */
void knn_free(knn_model *m);

/* eval_recommend_fn with ctx a knn_model: up to k items by score, best
 * first (ties by lower index), never a training item of u, topped up from
 * the fallback. *personalized is 1 when at least one item was scored. On
 * allocation failure returns 0 and sets failed. */
uint32_t knn_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                       int *personalized);

#endif
