/* eval: offline evaluation of recommenders on a temporal split.
 *
 * The split (per user: events sorted by (timestamp, item id), the first
 * floor((1 - test_fraction) * n) train, the rest test) is the protocol of
 * README and of the reference figures in ../shared/data/README.md. Metrics
 * use binary relevance: an item is relevant when it is among the user's test
 * items; top-k lists exclude the user's training items. Users with no test
 * event are not counted. */
#ifndef RECD_EVAL_H
#define RECD_EVAL_H

#include <stdint.h>

#include "csr.h"
#include "err.h"
#include "events.h"

/* Marks each event of s train (0) or test (1) in is_test (s->n bytes).
 * s must be sorted with ev_set_sort_by_user_time; user_start from that call. */
void eval_split_last_fraction(const ev_set *s, const uint64_t *user_start, double test_fraction,
                              uint8_t *is_test);

/* Builds the users x items train and test matrices of an is_test split:
 * value = number of events of the user on the item on that side (every event
 * counts once; quantity is ignored). Fills *train and *test (caller frees
 * both with csr_free; on failure neither needs freeing). */
int eval_split_matrices(const ev_set *s, const uint8_t *is_test, csr *train, csr *test, err_t *e);

/* A recommender under evaluation: writes up to k item indexes, best first,
 * for user u, never one of the user's training items (row u of train). */
typedef uint32_t (*eval_recommend_fn)(void *ctx, uint32_t u, uint32_t k, const csr *train,
                                      uint32_t *out);

typedef struct eval_metrics {
    uint32_t k;
    uint32_t users; /* users with at least one test event */
    double precision, recall, ndcg, map, hit_rate;
    double item_coverage; /* distinct recommended items / all items */
} eval_metrics;

/* Evaluates rec on users with test items. train and test are users x items
 * matrices (test values ignored). Runs users across threads (rec must be
 * thread-safe). Fills *m. */
int eval_ranking(eval_recommend_fn rec, void *ctx, const csr *train, const csr *test, uint32_t k,
                 uint32_t threads, eval_metrics *m, err_t *e);

/* Most-popular baseline: ctx is an eval_popular built by eval_popular_init
 * from the training matrix (items ranked by number of training users). */
typedef struct eval_popular {
    uint32_t *ranked; /* item indexes, most popular first; owned */
    uint32_t n;
} eval_popular;

int eval_popular_init(const csr *train, eval_popular *p, err_t *e);
void eval_popular_free(eval_popular *p);
uint32_t eval_popular_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out);

/* Matrix-factorization recommender (ctx is an eval_mf): items ranked by
 * x_u . y_i, training items excluded. A user whose training row is empty
 * gets fallback's list when fallback is set (what the server serves to an
 * unknown user), else nothing. Scores need n_items floats per call; if that
 * allocation fails the call returns 0 and sets failed, which the caller
 * checks after eval_ranking. */
typedef struct eval_mf {
    const float *user_factors; /* n_users x factors, row-major; not owned */
    const float *item_factors; /* n_items x factors; not owned */
    uint32_t factors, n_items;
    const eval_popular *fallback; /* may be NULL; not owned */
    int failed;                   /* set (atomically) on allocation failure */
} eval_mf;

uint32_t eval_mf_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out);

#endif
