/* eval: offline evaluation of recommenders on a temporal split.
 *
 * Two splits share the rest of the module:
 * - per user (the protocol of README and of the reference figures in
 *   ../shared/data/README.md): events sorted by (timestamp, item id), the
 *   first floor((1 - test_fraction) * n) train, the rest test;
 * - global time cutoff: every event at or after the cutoff is test, so users
 *   who arrive after it are cold and the test is "the future", as in
 *   production.
 * Metrics use binary relevance: an item is relevant when it is among the
 * user's test items; top-k lists exclude the user's training items. Users
 * with no test event are not counted.
 *
 * The confidence of training (eval_event_weights) is also here, because
 * evaluation, tuning and `recd train` must weigh an event alike. */
#ifndef RECD_EVAL_H
#define RECD_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "csr.h"
#include "err.h"
#include "events.h"

/* Marks each event of s train (0) or test (1) in is_test (s->n bytes).
 * s must be sorted with ev_set_sort_by_user_time; user_start from that call. */
void eval_split_last_fraction(const ev_set *s, const uint64_t *user_start, double test_fraction,
                              uint8_t *is_test);

/* Global split: marks test (1) every event with ts >= cutoff, train (0) the
 * others. Any event order. */
void eval_split_cutoff(const ev_set *s, int64_t cutoff, uint8_t *is_test);

/* The cutoff that holds out the latest fraction of all events: the timestamp
 * of the event at 0-based rank floor((1 - fraction) * n) in time order.
 * Events sharing that second all go to test, so the held-out share can be a
 * little larger than fraction. Needs 0 < fraction < 1 and at least one
 * event; fills *cutoff. Returns ERR_OK, ERR_INVALID, ERR_NOMEM. */
int eval_cutoff_for_fraction(const ev_set *s, double fraction, int64_t *cutoff, err_t *e);

/* The latest timestamp among training events (is_test[i] == 0; is_test may
 * be NULL for "all events"), INT64_MIN when there is none: the "now" of
 * the training data, from which time decay counts ages. */
int64_t eval_train_end(const ev_set *s, const uint8_t *is_test);

/* 0.5^(age / half_life) with age = end - ts in days; 1 when half_life_days
 * is 0 (no decay) or the event is not older than end. */
double eval_decay(int64_t ts, int64_t end, double half_life_days);

/* Weight of each event in the confidence (s->n floats to w): its weight
 * (ev_event.weight: 1 for a purchase-history row, its type's for a recorded
 * event) x eval_decay(ts, end, half_life_days). The value of an interaction
 * is the sum of its events' weights. */
void eval_event_weights(const ev_set *s, double half_life_days, int64_t end, float *w);

/* Builds the users x items train and test matrices of an is_test split.
 * Train values = sum of train_weights over the user's events on the item
 * (every event counts 1 when train_weights is NULL); test values = number of
 * test events (metrics only look at which cells exist). Fills *train and
 * *test (caller frees both with csr_free; on failure neither needs freeing). */
int eval_split_matrices(const ev_set *s, const uint8_t *is_test, const float *train_weights,
                        csr *train, csr *test, err_t *e);

/* A recommender under evaluation: writes up to k item indexes, best first,
 * for user u, never one of the user's training items (row u of train), and
 * sets *personalized to 1 when the list depends on the user (0 for a
 * fallback such as most-popular). */
typedef uint32_t (*eval_recommend_fn)(void *ctx, uint32_t u, uint32_t k, const csr *train,
                                      uint32_t *out, int *personalized);

/* Means over the evaluated users (those with test events) at one k. */
typedef struct eval_metrics {
    uint32_t k;
    uint32_t users; /* evaluated users in this group */
    double precision, recall, f1, ndcg, map, hit_rate;
    double item_coverage; /* distinct items in the group's lists / all items */
    double user_coverage; /* share of the group's users with a personalized list */
    double diversity;     /* 1 - mean pairwise cosine of item factors in a list; NAN without
                             factors or when no list has 2 items */
    double novelty;       /* mean -log2(popularity share) of recommended items; NAN when no
                             list has an item */
} eval_metrics;

#define EVAL_MAX_KS 16

typedef struct eval_config {
    uint32_t ks[EVAL_MAX_KS]; /* list lengths, ascending, distinct, >= 1 */
    uint32_t n_ks;
    uint32_t threads;
    /* Users with at most this many distinct training items form the
     * "new users" group (cold users, with none, included). */
    uint32_t new_user_max;
    /* Item factors (n_items x factors, row-major) for diversity; NULL leaves
     * diversity NAN. Baselines without factors are measured with the ALS
     * factors of the same run, so all models share one notion of "alike". */
    const float *item_factors;
    uint32_t factors;
} eval_config;

/* ks {10}, 1 thread, new users <= 3 training items, no factors. */
void eval_config_init(eval_config *c);

/* Parses "5,10,20" into c->ks (ascending after sorting, duplicates
 * dropped, each in 1..100000, at most EVAL_MAX_KS). Returns ERR_OK or
 * ERR_INVALID with the reason. */
int eval_parse_ks(const char *arg, eval_config *c, err_t *e);

/* Evaluates rec on users with test items at every k of c. train and test
 * are users x items matrices (test values ignored). Runs users across
 * threads (rec must be thread-safe); results do not depend on the thread
 * count. Fills all[0..n_ks) for every evaluated user and, when fresh is not
 * NULL, fresh[0..n_ks) for the new users among them. Popularity share for
 * novelty: training users of the item / users with training items (an item
 * nobody trained on counts as one user's). */
int eval_ranking(eval_recommend_fn rec, void *ctx, const csr *train, const csr *test,
                 const eval_config *c, eval_metrics *all, eval_metrics *fresh, err_t *e);

/* Most-popular baseline: ctx is an eval_popular built by eval_popular_init
 * from the training matrix (items ranked by number of training users). */
typedef struct eval_popular {
    uint32_t *ranked;     /* item indexes, most popular first; owned */
    float *popularity;    /* training users of each item (what `recd train` stores as the
                             model's item popularity); owned */
    float max_popularity; /* the largest of them, 0 without items */
    uint32_t n;
} eval_popular;

int eval_popular_init(const csr *train, eval_popular *p, err_t *e);
void eval_popular_free(eval_popular *p);
/* eval_recommend_fn; never personalized. */
uint32_t eval_popular_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                                int *personalized);

/* Matrix-factorization recommender (ctx is an eval_mf): items ranked by
 * x_u . y_i (+ the popularity blend of fallback's counts when blend > 0:
 * mf_blend_popularity of util/mf.h, the arithmetic the server runs),
 * training items excluded. A user whose training row is empty, and every
 * user when blend is +inf, gets fallback's list when fallback is set (what
 * the server serves; not personalized), else nothing. blend > 0 needs
 * fallback. Scores need n_items floats per call; if that allocation fails
 * the call returns 0 and sets failed, which the caller checks after
 * eval_ranking. */
typedef struct eval_mf {
    const float *user_factors; /* n_users x factors, row-major; not owned */
    const float *item_factors; /* n_items x factors; not owned */
    uint32_t factors, n_items;
    const eval_popular *fallback; /* may be NULL; not owned */
    float blend;                  /* popularity blend w: 0 = pure ALS, +inf = popularity only */
    int failed;                   /* set (atomically) on allocation failure */
} eval_mf;

uint32_t eval_mf_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                           int *personalized);

/* ---- reports ----------------------------------------------------------- */

/* One evaluated model for the tables: metrics at each k of the config. */
typedef struct eval_row {
    const char *name;
    const eval_metrics *m; /* n_ks entries */
} eval_row;

/* Writes the accuracy table (P, R, F1, NDCG, MAP, HR at every k) and then
 * the beyond-accuracy table (coverage and novelty at every k, user
 * coverage, diversity at every k), one row per model starting with its
 * name; as aligned text (markdown 0: the rows of `recd eval`, whose first
 * header holds "NDCG@10" when 10 is among the ks) or as Markdown tables. */
void eval_print_tables(FILE *f, const eval_row *rows, uint32_t n_rows, uint32_t n_ks, int markdown);

/* One line of a plot: n points (x[i], y[i]); NAN y values are skipped. */
typedef struct eval_series {
    const char *name;
    const double *x, *y;
    uint32_t n;
} eval_series;

/* Draws the series as one PNG with gnuplot (pngcairo), lines and points
 * (points only when points_only), log-scaled x when log_x. Returns ERR_OK,
 * ERR_INVALID (a quote in png_path), ERR_NOMEM or ERR_IO (gnuplot missing
 * or failing; its own message went to stderr). */
int eval_plot_series(const char *png_path, const char *title, const char *xlabel,
                     const char *ylabel, int log_x, int points_only, const eval_series *s,
                     uint32_t n, err_t *e);

/* Writes the Markdown section of a report on the models: both tables
 * (eval_print_tables), then plots of NDCG@k and item coverage@k per model
 * saved as <prefix>-ndcg.png and <prefix>-coverage.png and linked as
 * <link>-ndcg.png ... (link = prefix without its folder, so the links are
 * relative to the .md next to them). A plot that cannot be made is named
 * in the .md and in *e, and the rest is still written: returns ERR_OK or
 * the first plot's error. */
int eval_report_models(FILE *md, const char *prefix, const char *link, const eval_row *rows,
                       uint32_t n_rows, uint32_t n_ks, err_t *e);

/* Writes a Markdown image of the loss per iteration of each series
 * (<prefix>-<stem>.png, linked as <link>-<stem>.png). Returns as
 * eval_report_models. */
int eval_report_loss(FILE *md, const char *prefix, const char *link, const char *stem,
                     const eval_series *s, uint32_t n, err_t *e);

#endif
