/* famtune: choosing the model family on a validation split - the item-item
 * families of itemsim.h, each over a generic grid, blends of two families
 * and the popularity blend - against the ALS winner of tune.h, measured by
 * the same eval_ranking that recd eval runs.
 *
 * Grids (scale-free, so nothing is fitted to one dataset):
 *   EASE     lambda = d x 2^(j/2), j = -4..8 (1/4 .. 16), d = mean training users per item;
 *            only up to itemsim's default max_dense_items (20000 items)
 *   item-kNN k in {5, 10, 20, 50, 100, 200}
 *   RP3beta  alpha in {0.5, 1}, beta in {0, 0.25, 0.5, 0.75}, 100 neighbours
 * Blends: the best item-item family (first) with each other family's best
 * (ALS included), score = (1 - t) s_a / scale_a + t s_b / scale_b
 * (itemsim_score_scale), t in {0.1, 0.2, 0.3, 0.4, 0.5, 0.7}. Then the popularity
 * blends of tune_blend_grid on the item-item winner (at its score scale).
 * The winner is the highest validation NDCG@k; ties go to the simpler
 * choice (ALS, then a family alone, then a blend; no popularity blend). */
#ifndef RECD_FAMTUNE_H
#define RECD_FAMTUNE_H

#include <stdint.h>
#include <stdio.h>

#include "als.h"
#include "csr.h"
#include "err.h"
#include "eval.h"
#include "itemsim.h"

/* One candidate: a family alone (share 0) or a blend, with a popularity
 * blend. item.algorithm ALS is the ALS winner (with its own popularity
 * blend). */
typedef struct famtune_choice {
    itemsim_params item, with;
    float share;
    float popularity_blend;
    double ndcg; /* validation NDCG@k */
} famtune_choice;

/* Writes "ease (lambda 120)", "ease+als (lambda 120, share 0.3)" ... */
void famtune_describe(const famtune_choice *c, char *out, size_t size);

typedef struct famtune_input {
    const csr *train; /* users x items, undecayed values: the item-item families' input */
    const csr *valid;
    const als_factors *als; /* the ALS winner, trained on the same users and items */
    double als_ndcg;        /* its validation NDCG@k */
    float als_blend;        /* its popularity blend (0, w or +inf) */
    const eval_popular *pop;
    eval_config ec;
    uint32_t qk; /* index of the objective's k in ec.ks */
    uint32_t threads;
    FILE *log; /* one line per candidate; may be NULL */
} famtune_input;

typedef struct famtune_result {
    famtune_choice best[ITEMSIM_N_ALGORITHMS]; /* each family's best alone (ALS: the input's) */
    famtune_choice blend;                      /* the best blend (ndcg -1 when none ran) */
    famtune_choice winner;
    uint32_t candidates;
} famtune_result;

/* Runs the search. Returns ERR_OK or the errors of itemsim_fit and
 * eval_ranking. */
int famtune_run(const famtune_input *in, famtune_result *r, err_t *e);

/* Measures choice c on (train, valid) at every k of ec into m (n_ks
 * entries): its models fitted on train (als: factors fitted on the same
 * users and items, needed when c is ALS or blends it), what
 * pipeline_train would serve. */
int famtune_measure(const famtune_choice *c, const csr *train, const csr *valid,
                    const als_factors *als, const eval_popular *pop, const eval_config *ec,
                    uint32_t threads, eval_metrics *m, err_t *e);

#endif
