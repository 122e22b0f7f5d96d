/* score: the arithmetic of serving on one model - a shopper's vector (stored
 * or folded in from fresh signals), item scores, the storefront's rules
 * (availability, boosts, category), similarity to seed items, and a top-k
 * that can trade relevance for diversity (maximal marginal relevance).
 *
 * Everything reads the model in place (it must stay open for the call) and
 * writes only the caller's buffers, so concurrent calls are safe, on one
 * model or several. Item indexes passed in (signals, seeds, exclusions)
 * must be below the model's n_items: they are not checked here. OpenBLAS
 * is expected single-threaded (`recd serve` sets it). */
#ifndef RECD_SCORE_H
#define RECD_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "model.h"
#include "topk.h"

#define SCORE_NO_USER UINT32_MAX

/* One fresh signal of a shopper: an item of the model and how much it says
 * (purchase count, or the weight of a view / cart / favorite event). */
typedef struct score_signal {
    uint32_t item;
    float weight;
} score_signal;

/* Computes YtY (factors x factors floats, both triangles) of m's item
 * factors into yty: once per model, for every fold-in. */
void score_gram(const model *m, float *yty);

/* Folds a shopper in: solves x with the item factors fixed, exactly as an ALS
 * training step would for a user whose counts are the stored history of user
 * (an index below n_users, or SCORE_NO_USER for none) plus the n signals
 * (read only; weights of repeated items add up), by mf_fold_in with the
 * model's regularization and alpha; yty from score_gram. Writes factors
 * floats to x. Returns ERR_OK, ERR_INVALID (a negative or non-finite
 * weight, or a system that is not positive definite), ERR_NOMEM; x is
 * unchanged on failure. */
int score_fold_in(const model *m, const float *yty, uint32_t user, const score_signal *signals,
                  size_t n, float *x, err_t *e);

/* Why a shopper's scores of n_targets items are what they are: for target
 * t, the shopper's items - the stored history of user (or SCORE_NO_USER)
 * and the n signals, merged as score_fold_in merges them - that add most
 * to its score, at most per_item of them, largest first, only those that
 * add (a positive contribution), into because[t * per_item ...] (item
 * indexes), their contributions into weight (the same layout; NULL when
 * not wanted) and their number into n_because[t] (n_targets of them).
 *
 * ALS: the explanation of Hu, Koren and Volinsky (2008, section 5) that
 * benfred/implicit's explain computes: item j adds c_j y_t^T W y_j, with
 * c_j = 1 + alpha r_j and W the inverse of the fold-in's system (YtY +
 * lambda I + sum_j (c_j - 1) y_j y_j^T, one Cholesky factorization for
 * every target). The contributions add up to x . y_t for the folded-in x,
 * so they explain exactly what a fold-in serves; a stored vector (no fresh
 * signals) is what training's last sweep made of the same counts, which
 * they explain up to its convergence. An item-item model (model_item_rows)
 * scores by a sum over the shopper's items: j adds itemrows_value(r_j)
 * row_j[t], exactly, plus als_blend times its ALS contribution when the
 * model blends in its factors. yty from score_gram (read by ALS only).
 * Returns ERR_OK, ERR_INVALID (a negative or non-finite weight, a system
 * that is not positive definite), ERR_NOMEM; n_because is all 0 on
 * failure. */
int score_explain(const model *m, const float *yty, uint32_t user, const score_signal *signals,
                  size_t n, const uint32_t *targets, size_t n_targets, uint32_t per_item,
                  uint32_t *because, float *weight, uint32_t *n_because, err_t *e);

#define SCORE_BLOCK 16384 /* items per block of score_batch: its score rows stay in cache */

/* One query of score_batch: a shopper's vector and what to leave out. */
typedef struct score_query {
    const float *x;           /* factors floats */
    uint32_t k;               /* >= 1 */
    const uint32_t *excluded; /* ascending item indexes never returned (NULL when none) */
    size_t n_excluded;
    const float
        *multipliers; /* n_items storefront multipliers (score_apply_multipliers), or NULL */
    float max_slope;  /* the largest of m and 1 / m over multipliers m > 0; 1 without */
    int64_t category; /* only items of this category; -1: any */
    topk_entry *best; /* room for k: the answer, best first */
    uint32_t n_best;  /* set by score_batch */
} score_query;

/* Floats of the workspace score_batch needs for n queries (any model). */
size_t score_batch_workspace(size_t n);

/* The best k items of each of n queries by x . y_i (plus the model's
 * popularity blend, then the multipliers), exactly as float32 scoring would
 * rank them, into each query's best. The item matrix is read once for all
 * n queries, block by block, from the model's bfloat16 panels; the few items
 * whose panel scores come within the error bound of a query's cut are scored
 * again in float32. work has score_batch_workspace(n) floats, owned by the
 * caller (one per thread). Returns ERR_OK or ERR_NOMEM (then the queries'
 * best and n_best are not to be used). */
int score_batch(const model *m, score_query *q, size_t n, float *work, err_t *e);

/* scores[i] = x . rows[i] for n row-major vectors of factors floats (one
 * sgemv): the items upserted beyond a model have their vectors apart. */
void score_vectors(const float *rows, uint32_t n, uint32_t factors, const float *x, float *scores);

/* scores[i] = x . y_i for every item of m (one sgemv over the item matrix;
 * x has factors floats, scores n_items). */
void score_items(const model *m, const float *x, float *scores);

/* The scores of an item-item model (model_item_rows not NULL) for a
 * shopper: for every item j, sum over the shopper's items i of
 * itemrows_value(r_i) * row_i[j], r_i = the stored count of user (an index
 * below n_users, or SCORE_NO_USER) plus the weights of the n signals on i
 * (the fold-in of an item-item model: exact, one row per item), then
 * + als_blend * x . y_j when the model blends in its factors (x: the
 * shopper's factor vector, may be NULL otherwise). Writes n_items floats.
 * Returns ERR_OK, ERR_INVALID (a negative or non-finite weight), ERR_NOMEM. */
int score_item_rows(const model *m, uint32_t user, const score_signal *signals, size_t n,
                    const float *x, float *scores, err_t *e);

/* scores[i] = the mean over the n seeds of row_seed[i] of an item-item
 * model (n_items floats): its SimilarItems. */
void score_similar_rows(const model *m, const uint32_t *seeds, size_t n, float *scores);

/* scores[i] = the sum over the n seeds of their bought-together score of
 * item i (model_together's rows; n_items floats), -INFINITY for an item no
 * seed was bought with. Returns how many items have a score; 0 for a model
 * without the lists. */
uint32_t score_together(const model *m, const uint32_t *seeds, size_t n, float *scores);

/* scores[i] = q . y_i / |y_i| for every item of m (n_items floats; -INFINITY
 * for an item whose vector is zero): the cosine to q when q is a unit
 * vector, the mean cosine to seeds when q is the mean of their unit
 * vectors. */
void score_similar_query(const model *m, const float *q, float *scores);

/* Adds m's popularity blend (model_meta.popularity_blend, through
 * mf_blend_popularity) to the personalized scores of items [start,
 * start + len) in scores[0, len). Nothing for a pure ALS model (blend 0);
 * a blend of +inf is answered as POPULAR and never scored here. */
void score_add_popularity(const model *m, uint32_t start, uint32_t len, float *scores);

/* Applies the storefront's per-item multipliers (catalog_multipliers; n of
 * them, each >= 0) to n scores: 0 excludes an item (-INFINITY); otherwise a
 * positive score is multiplied and a negative one divided, so a boost
 * always moves an item up. */
void score_apply_multipliers(float *scores, const float *mult, uint32_t n);

/* Excludes (-INFINITY) every item of the n_items scores whose category is
 * not category; all of them when the model has no categories. */
void score_keep_category(const model *m, uint32_t category, float *scores);

/* Top k of scores (entries at -INFINITY never), best first. With diversity
 * d in (0, 1], picks greedily by (1 - d) * relevance - d * (highest cosine
 * similarity to an item already picked) among the best candidates, with
 * relevance min-max scaled to [0, 1]; the entries keep their original
 * scores. scores has n_items floats; out has room for k. Writes up to k
 * entries to out and their number to *n_out. Returns ERR_OK or ERR_NOMEM
 * (only with diversity; out and *n_out then untouched). */
int score_top_k(const model *m, const float *scores, uint32_t k, float diversity, topk_entry *out,
                uint32_t *n_out, err_t *e);

/* The size of the pool of best candidates that diversity picks k from. */
uint32_t score_diversity_pool(uint32_t k);

/* Items beyond the model's (upserted ones, indexes n_items + j): their
 * vectors (n x factors) and lengths, or both NULL (then their cosine to
 * anything is 0). Borrowed. */
typedef struct score_extra_items {
    const float *vectors, *norms;
} score_extra_items;

/* score_top_k's diversity over a pool of n candidates, best first (the
 * model's items and extra ones), picking up to k of them into out (room
 * for k; out may be pool), their number into *n_out. The pool is
 * reordered. Returns ERR_OK or ERR_NOMEM. */
int score_diversify(const model *m, const score_extra_items *extra, topk_entry *pool, uint32_t n,
                    uint32_t k, float diversity, topk_entry *out, uint32_t *n_out, err_t *e);

#endif
