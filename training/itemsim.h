/* itemsim: the item-item model families beside implicit ALS - EASE (Steck
 * 2019), item-kNN (knn.h's cosine neighbours) and RP3beta (Paudel et al.
 * 2016) - trained into the rows of util/itemrows.h that the server scores
 * from, and their recommender for offline evaluation (the same arithmetic).
 *
 * Every family reads the training matrix as v_ui = itemrows_value(r_ui)
 * (min(1, r): a purchase counts 1 whatever its repeats).
 *
 * EASE: B = I - P / diag(P) (column j divided by P_jj), diagonal zero, with
 * P = (X^T X + lambda I)^-1, solved dense (LAPACK spotrf + spotri, single
 * precision): training needs n^2 floats. Up to max_dense_items items B is
 * kept dense (n^2 * 4 bytes in the model); above, each row keeps its
 * `neighbors` entries of largest magnitude (n * neighbors * 8 bytes).
 *
 * RP3beta: W_ij = deg_i^-alpha * sum over users u of both i and j of
 * deg_u^-alpha, divided by deg_j^beta (deg = users of an item, items of a
 * user): the two-step random walk i -> u -> j with its transition
 * probabilities raised to alpha, popular targets discounted; each row keeps
 * its `neighbors` largest entries (self excluded).
 *
 * item-kNN: knn_fit's cosine lists as rows (self excluded). */
#ifndef RECD_ITEMSIM_H
#define RECD_ITEMSIM_H

#include <stdint.h>

#include "csr.h"
#include "err.h"
#include "eval.h"
#include "itemrows.h"

/* The model families: XX(ID, name); name is the public spelling (recd
 * train --algorithm, ModelInfo.algorithm, the model's "algorithm" key). */
#define ITEMSIM_ALGORITHM_MAP(XX)                                                                  \
    XX(ALS, "als")                                                                                 \
    XX(EASE, "ease")                                                                               \
    XX(KNN, "knn")                                                                                 \
    XX(RP3BETA, "rp3beta")

typedef enum itemsim_algorithm {
#define ITEMSIM_ENUM(id, name) ITEMSIM_##id,
    ITEMSIM_ALGORITHM_MAP(ITEMSIM_ENUM)
#undef ITEMSIM_ENUM
        ITEMSIM_N_ALGORITHMS
} itemsim_algorithm;

/* The name of a, "" when out of range. Static. */
const char *itemsim_algorithm_name(itemsim_algorithm a);

/* The algorithm of a name (exact), or -1. */
int itemsim_algorithm_parse(const char *name);

typedef struct itemsim_params {
    itemsim_algorithm algorithm; /* EASE, KNN or RP3BETA */
    float lambda;                /* EASE; 0 = the mean number of users per item */
    uint32_t max_dense_items;    /* EASE dense up to this many items (default 20000) */
    uint32_t neighbors;          /* kept per item: kNN's k, RP3beta, pruned EASE (default 100) */
    float rp3_alpha, rp3_beta;   /* default 1.0, 0.5 */
    uint32_t threads;            /* workers, and EASE's OpenBLAS threads (default 1) */
} itemsim_params;

/* EASE, the defaults above. */
void itemsim_params_init(itemsim_params *p);

/* A trained model: owned arrays behind an itemrows view. */
typedef struct itemsim_model {
    uint32_t n_items;
    float lambda; /* EASE: the lambda used (after resolving 0) */
    float *dense; /* n_items^2, or NULL */
    uint64_t *indptr;
    uint32_t *index;
    float *value;
} itemsim_model;

/* Trains p->algorithm on train (users x items, values r_ui). Fills *out
 * (caller frees with itemsim_free; zeroed and nothing to free on failure).
 * EASE's solve runs on p->threads OpenBLAS threads and leaves OpenBLAS
 * single-threaded (as recd runs it everywhere else).
 * Returns ERR_OK, ERR_INVALID (not an item-item algorithm, neighbors 0, a
 * negative or non-finite parameter, EASE's system not positive definite),
 * ERR_LIMIT (EASE beyond the BLAS int range or memory size), ERR_NOMEM. */
int itemsim_fit(const csr *train, const itemsim_params *p, itemsim_model *out, err_t *e);

/* out = wa * a + wb * b (same n_items): dense when either is, else the
 * union of the sparse rows. Fills *out (caller frees). Returns ERR_OK,
 * ERR_INVALID (sizes differ), ERR_NOMEM. */
int itemsim_blend(const itemsim_model *a, float wa, const itemsim_model *b, float wb,
                  itemsim_model *out, err_t *e);

/* The view of m, valid while m lives. */
itemrows itemsim_rows(const itemsim_model *m);

/* Bytes of m's rows as the model stores them. */
uint64_t itemsim_bytes(const itemsim_model *m);

void itemsim_free(itemsim_model *m);

/* An item-item recommender for eval_ranking (ctx is an itemsim_eval):
 * scores = rows scaled by rows_weight (+ als_weight * x_u . y_i when als
 * is set), then the popularity blend of fallback's counts (blend, as
 * eval_mf), training items excluded, best first, ties by lower index.
 * A user without training items, and everyone at blend +inf, gets
 * fallback's list (not personalized). Items no row reaches score 0, as
 * the server scores them. On allocation failure returns 0 and sets
 * failed. */
typedef struct itemsim_eval {
    itemrows rows;
    float rows_weight;
    const eval_mf *als; /* may be NULL; not owned */
    float als_weight;
    float blend;
    const eval_popular *fallback; /* may be NULL; not owned */
    int failed;
} itemsim_eval;

uint32_t itemsim_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                           int *personalized);

/* The size of ie's personalized scores on train: the mean, over users
 * with training items (at most 1000, evenly spaced), of their best score
 * among items they did not train on; 1 when there is none or the mean is
 * not positive. Blends divide each family's scores by it, so that a share
 * means the same on any data. Returns ERR_OK or ERR_NOMEM. */
int itemsim_score_scale(const itemsim_eval *ie, const csr *train, double *scale, err_t *e);

/* The scores of user u (n_items floats into scores) as itemsim_recommend
 * ranks them, before the popularity blend and exclusions. */
void itemsim_user_scores(const itemsim_eval *ie, uint32_t u, const csr *train, float *scores);

#endif
