/* Unit tests of features/rfm: every feature on hand-made histories with the
 * expected values worked out in the comments, categories, the embedding
 * norm, days before 1970, and the frequency-decline rule. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rfm.h"

#define DAY 86400
#define HOUR 3600
/* A UTC midnight: 19676 x 86400. */
#define B 1700006400LL

static void add(ev_set *s, const char *user, const char *item, int64_t ts, float qty, float price) {
    err_t e;
    cr_assert_eq(ev_set_add(s, user, strlen(user), item, strlen(item), ts, qty, price, &e), ERR_OK,
                 "%s", e.msg);
}

static uint32_t user(const ev_set *s, const char *id) {
    uint32_t u;
    cr_assert_eq(idmap_find(s->users, id, strlen(id), &u), ERR_OK);
    return u;
}

/* The history of the main test, added in shuffled order (sorting must put
 * it right):
 *   a: day 0 10:00 X 2 x 5.00 and Y 1 x 3.00 (one order), day 0 15:00 X 1 x
 *      5.00, day 30 09:00 Z 4 units without price, day 80 12:00 X 1 x 2.50,
 *      day 100 00:00 Y (= the cutoff: not counted)
 *   b: day 99 12:00 W 3 x 10.00
 *   c: day 120 only (after the cutoff: inactive) */
static void history(ev_set *s) {
    err_t e;
    cr_assert_eq(ev_set_init(s, &e), ERR_OK);
    add(s, "a", "X", B + 80 * DAY + 12 * HOUR, 1, 2.5f);
    add(s, "c", "X", B + 120 * DAY, 1, 1);
    add(s, "a", "Y", B + 10 * HOUR, 1, 3);
    add(s, "a", "Z", B + 30 * DAY + 9 * HOUR, 4, NAN);
    add(s, "b", "W", B + 99 * DAY + 12 * HOUR, 3, 10);
    add(s, "a", "X", B + 10 * HOUR, 2, 5);
    add(s, "a", "Y", B + 100 * DAY, 1, 3);
    add(s, "a", "X", B + 15 * HOUR, 1, 5);
}

/* Cutoff t = day 100 00:00.
 * a: last purchase day 80 12:00, so recency = 19.5 days; orders = 4
 *    (distinct times 0d10h, 0d15h, 30d9h, 80d12h); purchase days 3 (0, 30,
 *    80); monetary 10 + 3 + 5 + 4 (no price: the quantity) + 2.5 = 24.5, per
 *    order 6.125, all within 365 days; tenure 100 - 10/24 = 99.583333 days;
 *    gaps 30 and 50 days: mean 40, population variance 100; last 30 days
 *    (from day 70): 1 order, 1 day; last 90 days (from day 10): 2 orders,
 *    2 days.
 *    trend_30d: 3 earlier orders over 70 - 10/24 = 69.583333 days predict
 *    3 / 69.583333 x 30 = 1.2934132 orders, 1 happened: 0.7731481.
 *    trend_90d: the earlier period (9.583333 days) is shorter than 90, so
 *    2 earlier orders / 90 x 90 = 2 predicted, 2 happened: 1.
 *    basket: 5 lines / 4 orders = 1.25; breadth: X, Y, Z = 3.
 * b: recency 0.5, tenure 0.5, 1 order on 1 day, monetary 30 (also per order
 *    and in 365 days), no gaps (0, 0), every window 1, trend 1 (no earlier
 *    period), basket 1, breadth 1.
 * c: inactive, all zero. */
Test(rfm, hand_made_history) {
    ev_set s;
    history(&s);
    uint64_t *start;
    err_t e;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    feat_matrix f;
    cr_assert_eq(feat_compute(&s, start, B + 100 * DAY, NULL, &f, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(f.n_users, 3);
    cr_assert_eq(f.n_active, 2);
    const float *a = f.x + (size_t)user(&s, "a") * FEAT_COUNT;
    const float *b = f.x + (size_t)user(&s, "b") * FEAT_COUNT;
    const float *c = f.x + (size_t)user(&s, "c") * FEAT_COUNT;
    static const double want_a[FEAT_COUNT] = {[FEAT_RECENCY_DAYS] = 19.5,
                                              [FEAT_ORDERS] = 4,
                                              [FEAT_PURCHASE_DAYS] = 3,
                                              [FEAT_MONETARY] = 24.5,
                                              [FEAT_MONETARY_PER_ORDER] = 6.125,
                                              [FEAT_MONETARY_365D] = 24.5,
                                              [FEAT_TENURE_DAYS] = 99.583333,
                                              [FEAT_GAP_MEAN_DAYS] = 40,
                                              [FEAT_GAP_VAR_DAYS] = 100,
                                              [FEAT_ORDERS_30D] = 1,
                                              [FEAT_ORDERS_90D] = 2,
                                              [FEAT_DAYS_30D] = 1,
                                              [FEAT_DAYS_90D] = 2,
                                              [FEAT_TREND_30D] = 0.7731481,
                                              [FEAT_TREND_90D] = 1,
                                              [FEAT_BASKET_LINES] = 1.25,
                                              [FEAT_BREADTH] = 3,
                                              [FEAT_EMBEDDING_NORM] = 0};
    static const double want_b[FEAT_COUNT] = {[FEAT_RECENCY_DAYS] = 0.5,
                                              [FEAT_ORDERS] = 1,
                                              [FEAT_PURCHASE_DAYS] = 1,
                                              [FEAT_MONETARY] = 30,
                                              [FEAT_MONETARY_PER_ORDER] = 30,
                                              [FEAT_MONETARY_365D] = 30,
                                              [FEAT_TENURE_DAYS] = 0.5,
                                              [FEAT_ORDERS_30D] = 1,
                                              [FEAT_ORDERS_90D] = 1,
                                              [FEAT_DAYS_30D] = 1,
                                              [FEAT_DAYS_90D] = 1,
                                              [FEAT_TREND_30D] = 1,
                                              [FEAT_TREND_90D] = 1,
                                              [FEAT_BASKET_LINES] = 1,
                                              [FEAT_BREADTH] = 1};
    for (int j = 0; j < FEAT_COUNT; j++) {
        cr_expect_float_eq(a[j], want_a[j], 1e-5 * (1 + fabs(want_a[j])), "a %s: %g", feat_names[j],
                           (double)a[j]);
        cr_expect_float_eq(b[j], want_b[j], 1e-6, "b %s: %g", feat_names[j], (double)b[j]);
        cr_expect_eq(c[j], 0, "c %s", feat_names[j]);
    }
    cr_expect(f.active[user(&s, "a")] && f.active[user(&s, "b")] && !f.active[user(&s, "c")]);
    feat_matrix_free(&f);

    /* At day 0 12:00 only a's first order counts: recency 2 h, 1 order;
     * at day 0 00:00 nobody has bought yet. */
    cr_assert_eq(feat_compute(&s, start, B + 12 * HOUR, NULL, &f, &e), ERR_OK);
    cr_expect_eq(f.n_active, 1);
    a = f.x + (size_t)user(&s, "a") * FEAT_COUNT;
    cr_expect_float_eq(a[FEAT_RECENCY_DAYS], 2.0 / 24, 1e-6);
    cr_expect_eq(a[FEAT_ORDERS], 1);
    cr_expect_eq(a[FEAT_MONETARY], 13);
    cr_expect_eq(a[FEAT_BASKET_LINES], 2);
    feat_matrix_free(&f);
    cr_assert_eq(feat_compute(&s, start, B, NULL, &f, &e), ERR_OK);
    cr_expect_eq(f.n_active, 0);
    feat_matrix_free(&f);
    free(start);
    ev_set_free(&s);
}

/* Categories: X and Y are "cups", Z has none, W is "toys". a bought X, Y, Z:
 * cups plus Z on its own = 2; b bought W = 1. The ALS norm of a's row
 * (3, 4) is 5; b's (0, 0) 0. */
Test(rfm, categories_and_embedding_norm) {
    ev_set s;
    history(&s);
    err_t e;
    uint32_t item;
    const char *cat[][2] = {{"X", "cups"}, {"Y", "cups"}, {"W", "toys"}};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(idmap_find(s.items, cat[i][0], 1, &item), ERR_OK);
        cr_assert_eq(ev_set_set_category(&s, item, cat[i][1], strlen(cat[i][1]), &e), ERR_OK);
    }
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    float factors[3 * 2] = {0};
    factors[user(&s, "a") * 2] = 3;
    factors[user(&s, "a") * 2 + 1] = 4;
    feat_params p = {.user_factors = factors, .factors = 2};
    feat_matrix f;
    cr_assert_eq(feat_compute(&s, start, B + 100 * DAY, &p, &f, &e), ERR_OK);
    const float *a = f.x + (size_t)user(&s, "a") * FEAT_COUNT;
    const float *b = f.x + (size_t)user(&s, "b") * FEAT_COUNT;
    cr_expect_eq(a[FEAT_BREADTH], 2);
    cr_expect_eq(b[FEAT_BREADTH], 1);
    cr_expect_float_eq(a[FEAT_EMBEDDING_NORM], 5, 1e-6);
    cr_expect_eq(b[FEAT_EMBEDDING_NORM], 0);
    feat_matrix_free(&f);
    free(start);
    ev_set_free(&s);
}

/* Times before 1970: 1969-12-31 23:00 and 1970-01-01 00:30 are two UTC days
 * (-1 and 0) one day apart, although only 90 minutes separate them;
 * truncating division would put both on day 0. */
Test(rfm, days_before_1970_are_floored) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    add(&s, "old", "X", -HOUR, 1, NAN);
    add(&s, "old", "X", HOUR / 2, 1, NAN);
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    feat_matrix f;
    cr_assert_eq(feat_compute(&s, start, 10 * DAY, NULL, &f, &e), ERR_OK);
    cr_expect_eq(f.x[FEAT_PURCHASE_DAYS], 2);
    cr_expect_eq(f.x[FEAT_GAP_MEAN_DAYS], 1);
    cr_expect_eq(f.x[FEAT_MONETARY], 2); /* no price: quantities */
    feat_matrix_free(&f);
    free(start);
    ev_set_free(&s);
}

/* Rule at t = day 200, 2 months of 30 days (days 140..200), drop 30%:
 *   p: orders on days 0, 20, ..., 120 (7 in 140 days: 1.5 a month), none
 *      since: 0 <= 1.05 in both months, flagged.
 *   q: as p plus days 150 and 155 (month 1 = days 140..170 has 2 > 1.05): no.
 *   r: only days 150 and 190: no earlier rate, never flagged.
 *   s: days 100 and 185: 1 order in max(40, 30) = 40 days is 0.75 a month;
 *      month 0 (days 170..200) has 1 > 0.525: no.
 *   v: days 120 and 130 (two orders, 20 and 10 days before the months, so
 *      the earlier period is 20 days, counted as 30): 2 a month; months 0
 *      and 1 empty: flagged.
 * With drop 1 only "no orders at all in the months" is flagged: p and v. */
Test(rfm, frequency_decline_rule) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    for (int d = 0; d <= 120; d += 20) {
        add(&s, "p", "X", B + d * DAY, 1, 1);
        add(&s, "q", "X", B + d * DAY, 1, 1);
    }
    add(&s, "q", "X", B + 150 * DAY, 1, 1);
    add(&s, "q", "Y", B + 155 * DAY, 1, 1);
    add(&s, "r", "X", B + 150 * DAY, 1, 1);
    add(&s, "r", "X", B + 190 * DAY, 1, 1);
    add(&s, "s", "X", B + 100 * DAY, 1, 1);
    add(&s, "s", "X", B + 185 * DAY, 1, 1);
    add(&s, "v", "X", B + 120 * DAY, 1, 1);
    add(&s, "v", "X", B + 130 * DAY, 1, 1);
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    uint8_t flag[5];
    cr_assert_eq(feat_decline_rule(&s, start, B + 200 * DAY, 2, 0.3, flag, &e), ERR_OK);
    cr_expect_eq(flag[user(&s, "p")], 1);
    cr_expect_eq(flag[user(&s, "q")], 0);
    cr_expect_eq(flag[user(&s, "r")], 0);
    cr_expect_eq(flag[user(&s, "s")], 0);
    cr_expect_eq(flag[user(&s, "v")], 1);
    cr_assert_eq(feat_decline_rule(&s, start, B + 200 * DAY, 2, 1.0, flag, &e), ERR_OK);
    uint8_t want[5] = {1, 0, 0, 0, 1};
    const char *ids[5] = {"p", "q", "r", "s", "v"};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(flag[user(&s, ids[i])], want[i], "drop 1: %s", ids[i]);
    /* One month (days 170..200): q's orders are older, so q is flagged now. */
    cr_assert_eq(feat_decline_rule(&s, start, B + 200 * DAY, 1, 0.3, flag, &e), ERR_OK);
    cr_expect_eq(flag[user(&s, "q")], 1);
    cr_expect_eq(flag[user(&s, "s")], 0);
    cr_expect_eq(feat_decline_rule(&s, start, B + 200 * DAY, 0, 0.3, flag, &e), ERR_INVALID);
    cr_expect_eq(
        feat_decline_rule(&s, start, B + 200 * DAY, FEAT_RULE_MAX_MONTHS + 1, 0.3, flag, &e),
        ERR_INVALID);
    cr_expect_eq(feat_decline_rule(&s, start, B + 200 * DAY, 2, 1.5, flag, &e), ERR_INVALID);
    free(start);
    ev_set_free(&s);
}
