/* tune: hyperparameter search for implicit ALS on a validation split.
 *
 * The search space (log-uniform where the scale is unknown, since a good
 * regularization is 0.01 on one shop and 10 on another):
 *   factors         one of 16, 32, 64, 128
 *   regularization  10^U(-3, 2)
 *   alpha           10^U(-1, 1.7)          (0.1 .. 50)
 *   half-life       none with probability 1/4, else 10^U(log10 7, log10 730) days
 *   frequency reg.  0: not searched (see tune_sample)
 * The first configuration is always the untuned default (als_params_init,
 * no half-life), so the winner is never worse than it on validation.
 *
 * Successive halving (Jamieson & Talwalkar 2016) with eta 3: every sampled
 * configuration is trained for a few iterations, the best third goes on to
 * more iterations, and so on until the full count; weak configurations stop
 * early. Iterations per rung: full / 9, full / 3, full (at least 2). A budget
 * below 3 is plain random search at full iterations.
 *
 * When the winner still loses to the most-popular list on validation, recd
 * tune blends it with popularity (model_meta.popularity_blend): it tries
 * the weights of tune_blend_grid and, if none of them beats popularity
 * either, serves popularity alone (w = +inf). */
#ifndef RECD_TUNE_H
#define RECD_TUNE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "eval.h"
#include "events.h"

#define TUNE_BLEND_STEPS 8

typedef struct tune_config {
    uint32_t factors;
    float regularization, alpha;
    double half_life_days; /* 0 = no decay */
    float frequency_regularization;
} tune_config;

typedef struct tune_trial {
    uint32_t id; /* 1-based, in sampling order; 1 is the default */
    tune_config c;
    uint32_t rung;       /* last rung trained (0-based) */
    uint32_t iterations; /* ALS iterations at that rung */
    double ndcg;         /* validation NDCG@k at that rung */
    double seconds;      /* training + evaluation time of that rung */
    double *loss;        /* loss per iteration at that rung; owned */
} tune_trial;

/* Called after every fit: the trial just measured, the number of fits done
 * and planned, and the best trial so far at the highest rung reached. */
typedef void (*tune_progress_fn)(void *ctx, const tune_trial *t, uint32_t done, uint32_t total,
                                 const tune_trial *best);

typedef struct tune_options {
    uint32_t budget;     /* configurations sampled (>= 1) */
    uint64_t seed;       /* sampling and factor initialization */
    uint32_t iterations; /* full ALS iterations */
    uint32_t k;          /* NDCG@k is the objective */
    uint32_t threads;
    tune_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} tune_options;

typedef struct tune_result {
    tune_trial *trials; /* budget entries, in id order; owned */
    uint32_t n;
    uint32_t best; /* index of the winner: highest NDCG at the last rung, earliest on ties */
    uint32_t fits; /* ALS fits run */
} tune_result;

/* Fills o with budget 20, seed 42, 15 iterations, k 10, 1 thread. */
void tune_options_init(tune_options *o);

/* Draws one configuration from the space above with the splitmix64 state
 * *rng (advanced). */
void tune_sample(uint64_t *rng, tune_config *c);

/* The default configuration (trial 1). */
void tune_default(tune_config *c);

/* Trains ALS with c for iterations on the training events of s (is_valid
 * 0; weights by eval_event_weights, ages from the end of the training
 * events) and measures
 * NDCG@k on the validation events (is_valid 1). s must be sorted by user
 * and time. Fills *ndcg and, when loss is not NULL, *loss with iterations
 * values (caller frees). */
int tune_evaluate(const ev_set *s, const uint8_t *is_valid, const tune_config *c,
                  uint32_t iterations, uint32_t k, uint32_t threads, uint64_t seed, double *ndcg,
                  double **loss, err_t *e);

/* Runs the search on the split (as tune_evaluate). Fills *r (caller frees
 * with tune_result_free). */
int tune_run(const ev_set *s, const uint8_t *is_valid, const tune_options *o, tune_result *r,
             err_t *e);

void tune_result_free(tune_result *r);

/* The size of a personalized score of mf: the mean, over users with
 * training items in train (at most 1000 of them, evenly spaced), of their
 * best x_u . y_i among items they did not train on. The blend weights are
 * multiples of it, since a weight means nothing without the scale of the
 * scores it is added to (strong regularization shrinks them tenfold).
 * Fills *scale (1 when there is no such user or the mean is not positive).
 * Returns ERR_OK or ERR_NOMEM. */
int tune_score_scale(const eval_mf *mf, const csr *train, double *scale, err_t *e);

/* The blend weights to try, ascending: scale x 0.03, 0.1, 0.3, 1, 3, 10,
 * 30, 100 - from a nudge towards best sellers to best sellers with ALS
 * breaking near-ties. The top steps are that large because what decides
 * a rank is the gap between two items' popularity (p_i of two mid-ranked
 * items differ by a few hundredths) against the gap between their ALS
 * scores. */
void tune_blend_grid(double scale, float w[TUNE_BLEND_STEPS]);

#endif
