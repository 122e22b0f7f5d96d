/* churn: who will stop buying. A churner at cutoff c is a user who bought
 * before c and buys nothing in [c, c + H) (H = the horizon, 90 days by
 * default).
 *
 * Model: L2-regularized logistic regression on the standardized inputs of
 * churn_input_names (RFM features of features/rfm.h, heavy-tailed ones
 * log-transformed: the field notes' recency, frequency, monetary, tenure,
 * purchase days in the last 30 / 90 days, mean gap and recency / mean gap,
 * plus trend, basket, breadth and gap spread), fitted by Newton's method
 * (IRLS): the Hessian X^T W X comes from cblas_ssyrk, the gradient and the
 * small (CHURN_INPUTS + 1)^2 Cholesky solve (linalg.h) are in double. Classes are
 * weighted n / (2 n_class) so that the retained majority does not dominate
 * the fit; that weighting (and the L2 shrinkage) biases probabilities, so a
 * Platt scaling p = sigmoid(a * s + b) of the linear score s is fitted
 * afterwards on the same cutoff's unweighted data (Platt's smoothed targets,
 * so separable data stay finite). The ALS embedding norm is not an input:
 * the recommendation model is trained on all data, so at an earlier cutoff it
 * would carry the future that the labels are made of.
 *
 * Honest evaluation (churn_run): with T = the latest event time + 1 s,
 * train at c1 = T - 2H (labels from [c1, c1 + H)), validate at c2 = T - H
 * (labels from [c2, T)), then refit on c2 and score every user at T: those
 * are the scores a server serves.
 *
 * Segments (quantile rules over the users active at the scoring time;
 * r, f, m = quintile scores 1..5 of recency (5 = most recent), orders and
 * monetary, by mid-rank so ties share a score), first rule that matches:
 *   at-risk            r <= 2 and (f >= 4 or m >= 4): was valuable, gone quiet
 *   dormant            r <= 2
 *   promising          r >= 4 and f <= 2: recent buyer with few orders so far
 *   high-value active  m >= 4
 *   mid-value active   m == 3
 *   low-value active   otherwise
 * Member tiers by spend in the last 365 days (monetary_365d): ordinary below
 * the first threshold, then bronze, silver, gold, diamond at or above the
 * thresholds (defaults 3000, 8000, 20000, 50000 in the data's currency).
 * Risk bands by calibrated probability: light below bands[0], medium below
 * bands[1], heavy from bands[1] (defaults 0.4, 0.7). */
#ifndef RECD_CHURN_H
#define RECD_CHURN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "events.h"
#include "model.h"
#include "rfm.h"

/* Model inputs, computed from one feat_matrix row by churn_inputs. */
enum {
    CHURN_IN_LOG_RECENCY,
    CHURN_IN_LOG_ORDERS,
    CHURN_IN_LOG_PURCHASE_DAYS,
    CHURN_IN_LOG_MONETARY,
    CHURN_IN_LOG_MONETARY_PER_ORDER,
    CHURN_IN_LOG_TENURE,
    CHURN_IN_LOG_DAYS_30D,
    CHURN_IN_LOG_DAYS_90D,
    CHURN_IN_LOG_GAP_MEAN,
    CHURN_IN_LOG_GAP_SD,
    CHURN_IN_LOG_RECENCY_OVER_GAP, /* 0 for one-day buyers (no gap) */
    CHURN_IN_ONE_DAY_BUYER,        /* 1 when purchase_days == 1 */
    CHURN_IN_LOG_TREND_30D,
    CHURN_IN_LOG_TREND_90D,
    CHURN_IN_LOG_BASKET,
    CHURN_IN_LOG_BREADTH,
    CHURN_INPUTS
};

extern const char *const churn_input_names[CHURN_INPUTS];

/* Bands, segments and tiers are the model's codes (model.h's tables, whose
 * names are model_churn_band_name ...): CHURN_BANDS, CHURN_SEGMENTS and
 * CHURN_TIERS of them. */
enum {
#define CHURN_BAND_ENUM(name, code, str) CHURN_BAND_##name = code,
    MODEL_CHURN_BAND_MAP(CHURN_BAND_ENUM)
#undef CHURN_BAND_ENUM
        CHURN_BANDS
};
enum {
#define CHURN_SEG_ENUM(name, code, str) CHURN_SEG_##name = code,
    MODEL_CHURN_SEGMENT_MAP(CHURN_SEG_ENUM)
#undef CHURN_SEG_ENUM
        CHURN_SEGMENTS
};
enum {
#define CHURN_TIER_ENUM(name, code, str) CHURN_TIER_##name = code,
    MODEL_CHURN_TIER_MAP(CHURN_TIER_ENUM)
#undef CHURN_TIER_ENUM
        CHURN_TIERS
};
/* Band / segment / tier of a user inactive at the scoring time. */
#define CHURN_NONE MODEL_CHURN_NONE

#define CHURN_MIN_CLASS 5 /* churners and stayers each needed at a cutoff */
#define CHURN_CALIB_BINS 10

typedef struct churn_params {
    uint32_t horizon_days;        /* H, default 90 */
    double l2;                    /* lambda of (lambda / 2) |beta|^2, default 1 */
    float bands[CHURN_BANDS - 1]; /* ascending probabilities, default 0.4, 0.7 */
    float tiers[CHURN_TIERS - 1]; /* ascending spend thresholds, default 3000 .. 50000 */
    uint32_t rule_months;         /* the baseline rule's months, default 2 */
    double rule_drop;             /* the baseline rule's drop, default 0.3 */
} churn_params;

/* Fills p with the defaults above. */
void churn_params_init(churn_params *p);

/* A fitted model: p = sigmoid(platt_a * s + platt_b) with
 * s = intercept + sum_j coef[j] * (x[j] - mean[j]) / scale[j]. */
typedef struct churn_model {
    double coef[CHURN_INPUTS], mean[CHURN_INPUTS], scale[CHURN_INPUTS];
    double intercept, platt_a, platt_b;
    uint32_t iterations; /* Newton steps of the main fit */
} churn_model;

/* Model inputs of one user from a row of feat_compute's matrix. */
void churn_inputs(const float *features, float *inputs);

/* Writes y[u] = 1 when user u, active in f (features at cutoff f->t), has no
 * event in [f->t, f->t + horizon_seconds), else 0; inactive users get 0.
 * s sorted with ev_set_sort_by_user_time; user_start from that call. */
void churn_labels(const ev_set *s, const uint64_t *user_start, const feat_matrix *f,
                  int64_t horizon_seconds, uint8_t *y);

/* Fits m on n rows of x (n x CHURN_INPUTS, row-major) with labels y (0/1):
 * standardization, class-weighted L2 logistic regression, Platt scaling.
 * Returns ERR_OK, ERR_INVALID (fewer than CHURN_MIN_CLASS of either class,
 * l2 < 0, non-finite input), ERR_NOMEM, ERR_INTERNAL (no convergence). */
int churn_fit(const float *x, const uint8_t *y, size_t n, double l2, churn_model *m, err_t *e);

/* Linear score s and calibrated probability of one input row. */
double churn_score(const churn_model *m, const float *inputs);
double churn_probability(const churn_model *m, const float *inputs);

/* Ranking metrics of scores against labels (1 = positive): ROC-AUC by the
 * Mann-Whitney statistic (a tie between a positive and a negative counts
 * one half) and PR-AUC as average precision (sum over distinct thresholds,
 * highest first, of recall gained x precision; tied scores form one
 * threshold). Either output may be NULL. NAN when a class is empty.
 * Returns ERR_OK or ERR_NOMEM. */
int churn_rank_metrics(const double *score, const uint8_t *y, size_t n, double *roc_auc,
                       double *pr_auc, err_t *e);

/* Mean of (p - y)^2; NAN when n is 0. */
double churn_brier(const double *p, const uint8_t *y, size_t n);

typedef struct churn_calib_bin {
    uint32_t n;                      /* rows with p in [k/10, (k+1)/10) (the last bin includes 1) */
    double mean_predicted, observed; /* NAN when n is 0 */
} churn_calib_bin;

/* Reliability table of probabilities p against labels y. */
void churn_calibration(const double *p, const uint8_t *y, size_t n,
                       churn_calib_bin bins[CHURN_CALIB_BINS]);

/* Risk band of a probability (bands ascending, see the file comment). */
uint8_t churn_band(double p, const float bands[CHURN_BANDS - 1]);

/* Member tier of a year's spend (tiers ascending). */
uint8_t churn_tier(double spend_365d, const float tiers[CHURN_TIERS - 1]);

/* Segment of every user of f by the rules of the file comment (quintiles
 * over f's active users); inactive users get CHURN_NONE. Returns ERR_OK or
 * ERR_NOMEM. */
int churn_segments(const feat_matrix *f, uint8_t *segment, err_t *e);

/* The k inputs that move the user's linear score most: contribution_j =
 * coef[j] x standardized input j (positive = towards churn), largest
 * |contribution| first. Writes min(k, CHURN_INPUTS) input indexes to idx and
 * contributions to contrib (may be NULL); returns how many. */
uint32_t churn_top_factors(const churn_model *m, const float *inputs, uint32_t k, uint32_t *idx,
                           double *contrib);

/* Validation figures of churn_run (all at the validation cutoff c2). */
typedef struct churn_eval {
    int64_t t_train, t_valid, t_score; /* c1, c2, T */
    uint32_t n_train, n_valid;         /* active users at c1, c2 */
    uint32_t churned_train, churned_valid;
    double auc, pr_auc, brier;          /* the model trained at c1 */
    double recency_auc, recency_pr_auc; /* score = recency_days */
    double base_brier;                  /* constant = c1's churn rate */
    uint32_t rule_flagged, rule_hits;   /* flagged by the rule; of those churned */
    double rule_precision, rule_recall; /* NAN when nothing is flagged */
    churn_calib_bin calib[CHURN_CALIB_BINS];
} churn_eval;

/* Everything churn_run produces. Per-user arrays have n_users entries
 * (s->users' indexes) and are owned: churn_result_free. */
typedef struct churn_result {
    churn_model model; /* refitted on c2: the served model */
    churn_eval eval;
    uint32_t n_users;
    int64_t scored_at; /* T */
    uint32_t horizon_days;
    float bands[CHURN_BANDS - 1];
    float tiers[CHURN_TIERS - 1];
    float *inputs;      /* n_users x CHURN_INPUTS at T (before standardization) */
    float *probability; /* at T; NAN for users inactive at T */
    uint8_t *band, *segment, *tier;
    float *recency_days, *frequency, *monetary; /* at T: recency, orders, monetary */
} churn_result;

/* The whole offline job on s: sorts s in place (ev_set_sort_by_user_time),
 * trains at c1, validates at c2, refits at c2 and scores at T (see the file
 * comment), and prints the validation report (model, recency and the
 * frequency-decline rule, calibration table, coefficients, bands, segments,
 * tiers) to report when it is not NULL. Fills *out (on failure nothing needs
 * freeing). Returns ERR_OK, ERR_INVALID (bad params; too little history or
 * too few users of either class at c1 or c2 for a validation split: the
 * message says which and what to change), ERR_NOMEM, ERR_INTERNAL. */
int churn_run(ev_set *s, const churn_params *p, FILE *report, churn_result *out, err_t *e);

void churn_result_free(churn_result *r);

#endif
