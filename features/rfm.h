/* rfm: per-user purchase-behaviour features at a cutoff time t (recency,
 * frequency, monetary value and their relatives), the input of the churn
 * model (training/churn.h) and of RFM segmentation.
 *
 * Only events with ts < t count. Definitions (days are 86,400 s; a "purchase
 * day" is a UTC calendar day, floor(ts / 86400); an "order" is one distinct
 * purchase timestamp of the user, since one invoice carries one timestamp;
 * an event's value is quantity x price, or quantity when price is NAN):
 *
 *   recency_days       (t - last purchase) / 1 day, fractional
 *   orders             distinct purchase timestamps
 *   purchase_days      distinct purchase days
 *   monetary           sum of event values
 *   monetary_per_order monetary / orders
 *   monetary_365d      sum of event values with ts >= t - 365 days (member tiers)
 *   tenure_days        (t - first purchase) / 1 day
 *   gap_mean_days      mean gap in days between consecutive purchase days
 *                      (0 with fewer than two purchase days)
 *   gap_var_days       population variance of those gaps (0 likewise)
 *   orders_30d/90d     orders with ts >= t - 30 / 90 days
 *   days_30d/90d       purchase days with ts >= t - 30 / 90 days
 *   trend_30d/90d      orders in the last W days divided by the orders W days
 *                      at the user's earlier rate would give: earlier rate =
 *                      orders before t - W / max(days from first purchase to
 *                      t - W, W). 1 when the user has no purchase before
 *                      t - W (nothing to compare with). Below 1 = slowing.
 *   basket_lines       events (item lines) per order; quantities are left out
 *                      because wholesale units would swamp it
 *   breadth            distinct categories of the items bought (the ev_set's
 *                      optional item categories), an item without a category
 *                      counting as its own; so, without categories, distinct
 *                      items
 *   embedding_norm     L2 norm of the user's ALS factor row when the caller
 *                      passes factors, else 0
 *
 * Users with no event before t are inactive: their row is all zeros and
 * active[u] = 0; churn training and scoring at t leave them out. */
#ifndef RECD_RFM_H
#define RECD_RFM_H

#include <stdint.h>

#include "err.h"
#include "events.h"

enum {
    FEAT_RECENCY_DAYS,
    FEAT_ORDERS,
    FEAT_PURCHASE_DAYS,
    FEAT_MONETARY,
    FEAT_MONETARY_PER_ORDER,
    FEAT_MONETARY_365D,
    FEAT_TENURE_DAYS,
    FEAT_GAP_MEAN_DAYS,
    FEAT_GAP_VAR_DAYS,
    FEAT_ORDERS_30D,
    FEAT_ORDERS_90D,
    FEAT_DAYS_30D,
    FEAT_DAYS_90D,
    FEAT_TREND_30D,
    FEAT_TREND_90D,
    FEAT_BASKET_LINES,
    FEAT_BREADTH,
    FEAT_EMBEDDING_NORM,
    FEAT_COUNT
};

#define FEAT_DAY_SECONDS 86400
#define FEAT_RULE_MAX_MONTHS 12

/* Names of the features above, in column order ("recency_days", ...). */
extern const char *const feat_names[FEAT_COUNT];

/* Optional inputs of feat_compute; zero-initialize for none. Borrowed. */
typedef struct feat_params {
    /* ALS user factors (n_users x factors, row-major) for embedding_norm;
     * NULL = 0. */
    const float *user_factors;
    uint32_t factors;
} feat_params;

/* Features of every user at one cutoff. Owns x and active: feat_matrix_free. */
typedef struct feat_matrix {
    uint32_t n_users;
    int64_t t;       /* the cutoff (unix seconds) */
    float *x;        /* n_users x FEAT_COUNT, row-major */
    uint8_t *active; /* n_users: 1 when the user bought before t */
    uint32_t n_active;
} feat_matrix;

/* Computes the features of every user of s at cutoff t in one pass over the
 * events. s must be sorted with ev_set_sort_by_user_time and user_start be
 * that call's offsets; p may be NULL. Fills *out (on failure nothing needs
 * freeing). Returns ERR_OK or ERR_NOMEM. */
int feat_compute(const ev_set *s, const uint64_t *user_start, int64_t t, const feat_params *p,
                 feat_matrix *out, err_t *e);

/* Frees the arrays of m and zeroes it; safe on a zeroed matrix. */
void feat_matrix_free(feat_matrix *m);

/* The rule shops use to flag churners today: a user's order frequency is down
 * by drop (0.3 = 30%) or more in each of the last `months` months (30 days
 * each, counted back from t) compared with the user's usual rate, i.e. every
 * one of those months has at most (1 - drop) x baseline orders, baseline =
 * orders before the months / max(length of that earlier period, 30 days) x
 * 30 days. Users with no purchase before the months (new, or inactive) are
 * never flagged: there is no usual rate to fall from. Writes flag[u] (0/1)
 * for every user; same preconditions as feat_compute. Returns ERR_OK, or
 * ERR_INVALID when months is not in 1..FEAT_RULE_MAX_MONTHS or drop not in
 * [0, 1]. */
int feat_decline_rule(const ev_set *s, const uint64_t *user_start, int64_t t, uint32_t months,
                      double drop, uint8_t *flag, err_t *e);

#endif
