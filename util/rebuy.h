/* rebuy: the arithmetic of "buy it again" that serving and offline
 * evaluation share - the probability that a member buys an item they bought
 * before again within the next horizon, and the one scale on which such
 * items and new ones compete (training/repeat.h learns the numbers, the
 * model stores them, server/core_rank reads them in place).
 *
 * Per item i: rate r_i (the share of a purchase occasion - a member's
 * purchase day of the item - that another occasion of the same member
 * follows), mu_i and sigma_i of the log inter-purchase time in days
 * (log-normal), each shrunk towards the catalogue's value for rare items.
 * Per member and item: n occasions, the days since the last one (t) and
 * the days from the first to the last (span).
 *
 * The member continues buying the item with probability
 *     c = (s * r_i + n - 1) / (s + n - 1)           (Beta prior of strength s)
 * and then waits a log-normal gap with log-mean
 *     m = (g * mu_i + (n - 1) * log(span / (n - 1))) / (g + n - 1)
 * (the member's own rhythm shrunk towards the item's, weight g) and
 * sigma_i. Given no purchase in the t days since the last one:
 *     p = c * (F(t + H) - F(t)) / (c * (1 - F(t)) + 1 - c)
 * with F the gap's CDF and H the horizon: a member long overdue has likely
 * stopped. p is then calibrated (Platt, with the occasions beside it:
 * 1 / (1 + exp(-(a * logit(p) + w * log(n) + b)))) on a validation window
 * of the training data - where timing says little (a shop without rhythm)
 * the count still does - and new items get the
 * probability that a new item at rank r of the recommender's list was
 * bought in that window (curve[r - 1], non-increasing): both sides are then
 * "the probability that the member buys it within H days".
 *
 * Everything is plain arrays that the caller owns; pure and thread-safe. */
#ifndef RECD_REBUY_H
#define RECD_REBUY_H

#include <stdint.h>

#include "topk.h"

/* Entries of the new-item curve: ranks 1 .. REBUY_CURVE (the largest k of a
 * request); ranks beyond it get the last entry. */
#define REBUY_CURVE 1000

/* The scalars of a repurchase model, one float each, in this order: */
#define REBUY_PARAMS_MAP(XX)                                                                       \
    XX(STRENGTH, 0, "strength")         /* s: prior strength of the continuation rate */           \
    XX(GAP_WEIGHT, 1, "gap_weight")     /* g: prior weight of the item's gap on the member's */    \
    XX(HORIZON, 2, "horizon_days")      /* H: the days p is about */                               \
    XX(PLATT_A, 3, "platt_a")           /* calibration slope on logit(p) */                        \
    XX(PLATT_B, 4, "platt_b")           /* calibration intercept */                                \
    XX(REPEAT_SHARE, 5, "repeat_share") /* validation: share of window items bought before */      \
    XX(RATE, 6, "rate")                 /* the catalogue's r (what rare items shrink to) */        \
    XX(MU, 7, "mu")                     /* the catalogue's mu */                                   \
    XX(PLATT_N, 8, "platt_n")           /* calibration weight of log(occasions) */

enum {
#define REBUY_PARAM_ENUM(name, index, str) REBUY_##name = index,
    REBUY_PARAMS_MAP(REBUY_PARAM_ENUM)
#undef REBUY_PARAM_ENUM
        REBUY_N_PARAMS
};

/* Floats per item (r_i, mu_i, sigma_i, buyers) and per member-item pair
 * (n, days from the last occasion to the model's data_until, span). */
#define REBUY_ITEM_FLOATS 4
#define REBUY_PAIR_FLOATS 3

/* A repurchase model: pointers into a model's map or a trainer's arrays. */
typedef struct rebuy_model {
    const float *params; /* REBUY_N_PARAMS */
    const float *items;  /* n_items x REBUY_ITEM_FLOATS */
    const float *curve;  /* REBUY_CURVE, non-increasing */
} rebuy_model;

/* The uncalibrated probability above for item (an index of m->items) with
 * n >= 1 occasions, the last days_since days ago (>= 0; less is taken as
 * 0) and span days between the first and the last. 0 when n < 1. */
double rebuy_raw(const rebuy_model *m, uint32_t item, double n, double days_since, double span);

/* Platt calibration of a raw probability of an item bought on n
 * occasions, with the model's a, w and b. */
double rebuy_calibrate(const rebuy_model *m, double raw, double n);

/* rebuy_calibrate(rebuy_raw(...)): what a bought item scores. */
double rebuy_probability(const rebuy_model *m, uint32_t item, double n, double days_since,
                         double span);

/* The probability of a new item at 1-based rank of the recommender's list
 * (curve[rank - 1]; 0 for rank 0, the last entry beyond REBUY_CURVE). */
double rebuy_new_item(const rebuy_model *m, uint32_t rank);

/* One ranking of both: bought (n_bought items the member bought before,
 * scored by rebuy_probability, best first) and fresh (n_fresh new items in
 * the recommender's order, best first, their scores ignored), the first
 * rescored by rank with rebuy_new_item, merged by score into out (room for
 * k) without reordering either list; a tie goes to the bought item only
 * when it is strictly more probable, else to the new one. Returns how many
 * (at most k). The caller keeps the two lists disjoint. */
uint32_t rebuy_merge(const rebuy_model *m, const topk_entry *bought, uint32_t n_bought,
                     const topk_entry *fresh, uint32_t n_fresh, uint32_t k, topk_entry *out);

/* The standard normal CDF. */
double rebuy_phi(double z);

#endif
