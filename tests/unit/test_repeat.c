/* Unit tests of buy it again: util/rebuy's probability against values
 * worked out from its formula by hand (python, math.erfc), the member-item
 * numbers and item fit of training/repeat on synthetic repurchase cycles
 * (a weekly item, items bought once), the calibration ordering due before
 * just bought, the one-scale merge, and bad parameters. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "rebuy.h"
#include "repeat.h"

#define DAY 86400

/* The index of id in m (which must hold it). */
static uint32_t idx(const idmap *m, const char *id) {
    uint32_t i = 0;
    cr_assert_eq(idmap_find(m, id, strlen(id), &i), ERR_OK, "%s", id);
    return i;
}

static float params[REBUY_N_PARAMS], item[REBUY_ITEM_FLOATS], curve[REBUY_CURVE];

/* r 0.5, mu log 7, sigma 0.25; s 2, g 2, H 3 days; identity calibration. */
static rebuy_model hand_model(void) {
    memset(params, 0, sizeof params);
    params[REBUY_STRENGTH] = 2;
    params[REBUY_GAP_WEIGHT] = 2;
    params[REBUY_HORIZON] = 3;
    params[REBUY_PLATT_A] = 1;
    item[0] = 0.5f;
    item[1] = (float)log(7.0);
    item[2] = 0.25f;
    item[3] = 10;
    return (rebuy_model){params, item, curve};
}

Test(rebuy, probability_matches_the_formula) {
    rebuy_model m = hand_model();
    /* Once, 6 days ago: c = r = 0.5, due tomorrow. */
    cr_assert_float_eq(rebuy_raw(&m, 0, 1, 6, 0), 0.331474, 1e-5);
    /* Five times a week apart: c = 5/6, the member's rhythm is the item's. */
    cr_assert_float_eq(rebuy_raw(&m, 0, 5, 6, 28), 0.616230, 1e-5);
    /* Three times three weeks apart: the member's own rhythm, not due. */
    cr_assert_float_eq(rebuy_raw(&m, 0, 3, 6, 42), 0.085800, 1e-5);
    /* Just bought, and long overdue (stopped). */
    cr_assert_float_eq(rebuy_raw(&m, 0, 1, 0.5, 0), 0.001390, 1e-5);
    cr_assert(rebuy_raw(&m, 0, 1, 100, 0) < 1e-6);
    cr_assert_eq(rebuy_raw(&m, 0, 0, 6, 0), 0.0);
    cr_assert_eq(rebuy_probability(&m, 0, 0, 6, 0), 0.0);
    /* Identity calibration changes nothing; a, b do as Platt says. */
    cr_assert_float_eq(rebuy_probability(&m, 0, 1, 6, 0), 0.331474, 1e-5);
    params[REBUY_PLATT_A] = 2;
    params[REBUY_PLATT_B] = -1;
    double z = log(0.331474 / (1 - 0.331474));
    cr_assert_float_eq(rebuy_probability(&m, 0, 1, 6, 0), 1 / (1 + exp(-(2 * z - 1))), 1e-5);
}

Test(rebuy, merge_keeps_both_orders_on_one_scale) {
    rebuy_model m = hand_model();
    for (int r = 0; r < REBUY_CURVE; r++)
        curve[r] = r == 0 ? 0.1f : r == 1 ? 0.05f : 0.02f;
    topk_entry bought[] = {{7, 0.5f}, {8, 0.1f}, {9, 0.01f}};
    topk_entry fresh[] = {{1, 9}, {2, 8}, {3, 7}};
    topk_entry out[6];
    uint32_t n = rebuy_merge(&m, bought, 3, fresh, 3, 6, out);
    uint32_t want[] = {7, 1, 8, 2, 3, 9}; /* 0.1 vs 0.1: the new item first */
    cr_assert_eq(n, 6);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(out[i].index, want[i], "rank %u", i);
        if (i) cr_assert(out[i].score <= out[i - 1].score);
    }
    cr_assert_float_eq(out[1].score, 0.1f, 1e-7);
    cr_assert_eq(rebuy_merge(&m, bought, 3, fresh, 3, 2, out), 2);
    cr_assert_eq(rebuy_new_item(&m, 0), 0.0);
    cr_assert_float_eq(rebuy_new_item(&m, 5000), 0.02, 1e-7);
}

/* 40 members buy milk every 7 days for 20 weeks (two lines on some days),
 * and each one other item once; member 0 also views "tea". The last milk
 * of member u is 1 + (u % 7) days before until. */
static ev_set cycles(int64_t until) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    char user[16], other[16];
    for (int u = 0; u < 40; u++) {
        snprintf(user, sizeof user, "u%d", u);
        snprintf(other, sizeof other, "x%d", u);
        int64_t last = until - (1 + u % 7) * DAY - 3600;
        for (int k = 0; k < 20; k++) {
            cr_assert_eq(
                ev_set_add(&s, user, strlen(user), "milk", 4, last - k * 7 * DAY, 1, NAN, &e),
                ERR_OK);
            if (k % 5 == 0)
                cr_assert_eq(ev_set_add(&s, user, strlen(user), "milk", 4, last - k * 7 * DAY + 60,
                                        1, NAN, &e),
                             ERR_OK);
        }
        cr_assert_eq(
            ev_set_add(&s, user, strlen(user), other, strlen(other), last - 50 * DAY, 1, NAN, &e),
            ERR_OK);
    }
    ev_event viewed = {
        .ts = until - DAY, .quantity = 1, .price = NAN, .weight = 0.1f, .type = EV_TYPE_VIEW};
    cr_assert_eq(ev_set_add_event(&s, "u0", 2, "tea", 3, &viewed, &e), ERR_OK);
    return s;
}

Test(repeat, fits_a_weekly_item_and_shrinks_the_rest) {
    int64_t until = 1700000000;
    ev_set s = cycles(until);
    repeat_params p;
    repeat_params_init(&p);
    p.horizon_days = 3;
    als_params als;
    als_params_init(&als);
    als.factors = 4;
    als.iterations = 3;
    als.threads = 1;
    repeat_model m;
    err_t e;
    cr_assert_eq(repeat_train(&s, NULL, until, &p, &als, &m, &e), ERR_OK, "%s", e.msg);
    uint32_t milk = idx(s.items, "milk"), x0 = idx(s.items, "x0");
    const float *mi = m.items + (size_t)milk * REBUY_ITEM_FLOATS;
    const float *xi = m.items + (size_t)x0 * REBUY_ITEM_FLOATS;
    /* 800 occasions of 40 buyers: r = 760 / 800 before shrinkage; every
     * gap is 7 days. The catalogue: 840 occasions, 80 buyers. */
    double rate = 760.0 / 840.0;
    cr_assert_float_eq(m.params[REBUY_RATE], rate, 1e-5);
    cr_assert_float_eq(mi[0], (760 + 10 * rate) / 810, 1e-5);
    cr_assert_float_eq(mi[1], log(7.0), 1e-5);
    cr_assert(mi[2] <= 0.11f);
    cr_assert_float_eq(mi[3], 40, 1e-6);
    /* Bought once: the catalogue's rate and gaps, shrunk from nothing. */
    cr_assert_float_eq(xi[0], 10 * rate / 11, 1e-5);
    cr_assert_float_eq(xi[1], log(7.0), 1e-5);
    cr_assert(m.calibration_members > 0);
    /* Calibrated: a member due tomorrow is far above one who just bought. */
    rebuy_model rm = repeat_view(&m);
    double due = rebuy_probability(&rm, milk, 20, 6, 133);
    double just = rebuy_probability(&rm, milk, 20, 0.5, 133);
    cr_assert(due > 0.5 && just < 0.2 && due > 3 * just, "due %g just %g", due, just);
    for (int r = 1; r < REBUY_CURVE; r++)
        cr_assert(m.curve[r] <= m.curve[r - 1]);
    repeat_free(&m);
    ev_set_free(&s);
}

Test(repeat, pairs_count_days_and_clocks) {
    int64_t until = 1700000000;
    ev_set s = cycles(until);
    uint32_t n_users = idmap_size(s.users), n_items = idmap_size(s.items);
    uint32_t *rows = malloc(s.n * sizeof *rows), *cols = malloc(s.n * sizeof *cols);
    for (size_t i = 0; i < s.n; i++)
        rows[i] = s.events[i].user, cols[i] = s.events[i].item;
    csr ui;
    err_t e;
    cr_assert_eq(csr_from_triplets(n_users, n_items, rows, cols, NULL, s.n, &ui, &e), ERR_OK);
    float *pairs;
    cr_assert_eq(repeat_pairs(&s, NULL, until, &ui, &pairs, &e), ERR_OK);
    uint32_t u0 = idx(s.users, "u0"), u3 = idx(s.users, "u3");
    uint32_t milk = idx(s.items, "milk"), tea = idx(s.items, "tea");
    int seen = 0;
    for (uint64_t k = ui.indptr[u0]; k < ui.indptr[u0 + 1]; k++) {
        const float *q = pairs + k * REBUY_PAIR_FLOATS;
        if (ui.indices[k] == milk) {
            /* 20 days (the second lines add none), the last line 1 day + 59 min ago. */
            cr_assert_float_eq(q[0], 20, 1e-6);
            cr_assert_float_eq(q[1], 1 + 3540.0 / DAY, 1e-4);
            cr_assert_float_eq(q[2], 133, 1e-6);
            seen++;
        }
        if (ui.indices[k] == tea) {
            cr_assert_eq(q[0], 0); /* viewed, never bought */
            seen++;
        }
    }
    cr_assert_eq(seen, 2);
    for (uint64_t k = ui.indptr[u3]; k < ui.indptr[u3 + 1]; k++)
        if (ui.indices[k] == milk)
            cr_assert_float_eq(pairs[k * REBUY_PAIR_FLOATS + 1], 4 + 3540.0 / DAY, 1e-4);
    /* Left out by skip, or at or after until: not counted. */
    free(pairs);
    cr_assert_eq(repeat_pairs(&s, NULL, until - 2 * DAY, &ui, &pairs, &e), ERR_OK);
    for (uint64_t k = ui.indptr[u0]; k < ui.indptr[u0 + 1]; k++)
        if (ui.indices[k] == milk) cr_assert_float_eq(pairs[k * REBUY_PAIR_FLOATS], 19, 1e-6);
    free(pairs);
    free(rows);
    free(cols);
    csr_free(&ui);
    ev_set_free(&s);
}

Test(repeat, refuses_bad_parameters) {
    ev_set s = cycles(1700000000);
    repeat_params p;
    repeat_params_init(&p);
    als_params als;
    als_params_init(&als);
    repeat_model m;
    err_t e;
    p.horizon_days = 0;
    cr_assert_eq(repeat_train(&s, NULL, 1700000000, &p, &als, &m, &e), ERR_INVALID);
    repeat_params_init(&p);
    p.shrinkage = -1;
    cr_assert_eq(repeat_train(&s, NULL, 1700000000, &p, &als, &m, &e), ERR_INVALID);
    cr_assert_null(m.items);
    ev_set_free(&s);
}
