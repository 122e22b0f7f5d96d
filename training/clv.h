/* clv: customer lifetime value, each member's expected future orders and
 * spend, from the purchase history alone (no cutoff split is needed to fit).
 *
 * BG/NBD (Fader, Hardie & Lee, "Counting your customers the easy way",
 * Marketing Science 2005): while alive, a member buys at Poisson rate lambda,
 * lambda ~ Gamma(r, alpha) over members (shape r, rate alpha); after each
 * repeat purchase the member drops out for good with probability p,
 * p ~ Beta(a, b). A member's summary at a cutoff is (x, t_x, T): x repeat
 * purchases (purchases after the first), t_x the time of the last purchase
 * and T the time of the cutoff, both measured from the first purchase. The
 * likelihood, P(alive) and the expected purchases in (T, T + t] are the
 * paper's closed forms (equations 6, 9 and 10 of the paper; the file clv.c
 * writes them out).
 *
 * Gamma-Gamma (Fader, Hardie & Lee, "RFM and CLV: using iso-value curves",
 * JMR 2005, and Fader & Hardie's note "The Gamma-Gamma model of monetary
 * value", 2013): a purchase's value z ~ Gamma(p, nu), nu ~ Gamma(q, gamma)
 * over members, independent of the purchase process; fitted on the mean
 * value m_x of the x >= 1 repeat purchases of each repeat buyer. A member's
 * expected value per purchase is p (gamma + x m_x) / (p x + q - 1).
 *
 * Both are fitted by maximum likelihood (Nelder-Mead on the logarithms of the
 * parameters, restarted until a restart no longer improves). Time is in days
 * in recd (the unit only scales alpha); purchases are purchase days (a UTC
 * calendar day with at least one purchase), as in the CLV literature, since a
 * shop's several invoices of one visit are one purchase occasion. */
#ifndef RECD_CLV_H
#define RECD_CLV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "events.h"

typedef struct clv_bgnbd {
    double r, alpha, a, b;
} clv_bgnbd;

typedef struct clv_gg {
    double p, q, gamma;
} clv_gg;

/* Members' summaries at a cutoff (arrays of n entries, owned: clv_data_free).
 * Inactive members (no purchase before the cutoff) have active 0 and zeros. */
typedef struct clv_data {
    size_t n;
    double *x, *tx, *T; /* repeat purchase days; days from the first to the last, to the cutoff */
    double *value;      /* mean value of the repeat purchase days (0 when x = 0) */
    uint8_t *active;
    size_t n_active;
} clv_data;

/* Log-likelihood of one member under m (the paper's equation 6, with its
 * constant terms). -INFINITY when a parameter is not positive. */
double clv_bgnbd_loglik(const clv_bgnbd *m, double x, double tx, double T);

/* P(alive at T | x, t_x, T). */
double clv_p_alive(const clv_bgnbd *m, double x, double tx, double T);

/* E[purchases in (T, T + t] | x, t_x, T]; needs a != 1 and a + b + x > 1
 * (the Gauss hypergeometric function of the closed form), NAN otherwise. */
double clv_expected_orders(const clv_bgnbd *m, double x, double tx, double T, double t);

/* Fits m by maximum likelihood on the active rows of d. Returns ERR_OK,
 * ERR_INVALID (fewer than 2 active members or no repeat purchase at all: the
 * likelihood has no maximum), ERR_INTERNAL (no finite likelihood). */
int clv_bgnbd_fit(const clv_data *d, clv_bgnbd *m, err_t *e);

/* Log-likelihood of one repeat buyer's mean value mx over x >= 1 purchases
 * under g. -INFINITY when a parameter or mx is not positive. */
double clv_gg_loglik(const clv_gg *g, double x, double mx);

/* Expected value of a purchase of a member with x repeat purchases of mean
 * value mx (x = 0: the population mean p gamma / (q - 1), NAN when q <= 1). */
double clv_gg_expected_value(const clv_gg *g, double x, double mx);

/* Fits g on the active rows of d with x >= 1 and value > 0. Returns ERR_OK,
 * ERR_INVALID (fewer than 2 such members), ERR_INTERNAL. */
int clv_gg_fit(const clv_data *d, clv_gg *g, err_t *e);

/* Summaries of every user of s at cutoff t (events with ts < t; purchases
 * only; an event's value is quantity x price, or quantity when price is NAN,
 * as in features/rfm.h). s sorted with ev_set_sort_by_user_time, user_start
 * from that call. Fills *out. Returns ERR_OK or ERR_NOMEM. */
int clv_summarize(const ev_set *s, const uint64_t *user_start, int64_t t, clv_data *out, err_t *e);

/* Purchase days of user u in [from, to) (same preconditions). */
uint32_t clv_purchase_days(const ev_set *s, const uint64_t *user_start, uint32_t u, int64_t from,
                           int64_t to);

/* Frees d's arrays and zeroes it; safe on a zeroed d. */
void clv_data_free(clv_data *d);

/* Validation at cutoff c (members who bought before c, predicting the
 * purchase days of [c, c + H)): BG/NBD and Gamma-Gamma fitted on the history
 * before c against the naive baseline x / T x H (the member's past repeat
 * rate). */
#define CLV_CALIB_ROWS 8 /* past repeat purchases 0, 1, ..., 6, 7 or more */
typedef struct clv_eval {
    uint32_t n;                           /* members active at c */
    double actual, predicted, baseline;   /* totals of purchase days in [c, c + H) */
    double mae, baseline_mae;             /* per member */
    double rmse, baseline_rmse;           /* per member: the error an expectation minimizes */
    double auc_p_alive, auc_logistic;     /* ROC-AUC of 1 - P(alive) and of the churn model */
    double value_actual, value_predicted; /* spend in [c, c + H): total and predicted total */
    uint32_t calib_n[CLV_CALIB_ROWS];     /* members by past repeat purchases */
    double calib_actual[CLV_CALIB_ROWS], calib_predicted[CLV_CALIB_ROWS],
        calib_baseline[CLV_CALIB_ROWS]; /* means */
} clv_eval;

/* The served scores: the models refitted on the whole history and every
 * member scored at t_score over the horizon. Per-user arrays have n_users
 * entries (NAN for members with no purchase before t_score), owned:
 * clv_result_free. */
typedef struct clv_result {
    clv_bgnbd bgnbd;
    clv_gg gg;
    clv_eval eval;
    uint32_t n_users;
    float *p_alive;
    double *expected_orders, *expected_value;
} clv_result;

/* The whole CLV job on s (sorted with ev_set_sort_by_user_time, user_start
 * from that call): validation at t_valid (skipped when it has fewer than 2
 * repeat buyers: the report says so), then the served fit at t_score.
 * auc_logistic is the churn model's ROC-AUC at t_valid, printed beside
 * P(alive)'s. Prints the report to report when not NULL. Fills *out (on
 * failure nothing needs freeing). Returns ERR_OK, ERR_INVALID (no member
 * with a repeat purchase at t_score), ERR_NOMEM, ERR_INTERNAL. */
int clv_run(const ev_set *s, const uint64_t *user_start, int64_t t_valid, int64_t t_score,
            uint32_t horizon_days, double auc_logistic, FILE *report, clv_result *out, err_t *e);

void clv_result_free(clv_result *r);

#endif
