/* Unit tests of training/together: basket counts, lift and the shrunk
 * conditional probability against values worked out by hand on six
 * baskets, truncation to the best neighbours, and bad parameters. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "together.h"

/* Baskets (member, time): B1 u0@1 {milk, bread, butter} (milk on two
 * lines), B2 u0@2 {milk, bread}, B3 u1@1 {bread, jam}, B4 u1@5 {milk},
 * B5 u2@3 {butter, jam, bread} (bread a recorded purchase; a recorded view
 * of tea at the same time is no purchase), B6 u1@6 {milk, bread}.
 * B = 6; c_milk 4, c_bread 5, c_butter 2, c_jam 2, c_tea 0;
 * c(milk, bread) 3, c(milk, butter) 1, c(bread, butter) 2, c(bread, jam) 2,
 * c(butter, jam) 1, c(milk, jam) 0. */
static ev_set shop(void) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    struct {
        const char *user, *item;
        int64_t ts;
    } rows[] = {{"u0", "milk", 1}, {"u0", "bread", 1},  {"u0", "butter", 1}, {"u0", "milk", 1},
                {"u0", "milk", 2}, {"u0", "bread", 2},  {"u1", "bread", 1},  {"u1", "jam", 1},
                {"u1", "milk", 5}, {"u2", "butter", 3}, {"u2", "jam", 3},    {"u1", "milk", 6},
                {"u1", "bread", 6}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        cr_assert_eq(ev_set_add(&s, rows[i].user, 2, rows[i].item, strlen(rows[i].item), rows[i].ts,
                                1, NAN, &e),
                     ERR_OK);
    ev_event bought = {
        .ts = 3, .quantity = 1, .price = NAN, .weight = 1, .type = EV_TYPE_PURCHASE, .recorded = 1};
    ev_event viewed = bought;
    viewed.type = EV_TYPE_VIEW;
    viewed.weight = 0.1f;
    cr_assert_eq(ev_set_add_event(&s, "u2", 2, "bread", 5, &bought, &e), ERR_OK);
    cr_assert_eq(ev_set_add_event(&s, "u2", 2, "tea", 3, &viewed, &e), ERR_OK);
    return s;
}

static uint32_t item(const ev_set *s, const char *id) {
    uint32_t i;
    cr_assert_eq(idmap_find(s->items, id, strlen(id), &i), ERR_OK);
    return i;
}

/* Row of id must be exactly the n (item, weight) pairs, best first. */
static void expect_row(const ev_set *s, const together_model *m, const char *id,
                       const char *const *items, const double *w, uint32_t n) {
    uint32_t i = item(s, id);
    cr_assert_eq(m->indptr[i + 1] - m->indptr[i], n, "row %s has %llu entries, not %u", id,
                 (unsigned long long)(m->indptr[i + 1] - m->indptr[i]), n);
    for (uint32_t k = 0; k < n; k++) {
        cr_expect_eq(m->index[m->indptr[i] + k], item(s, items[k]), "%s entry %u", id, k);
        cr_expect_float_eq(m->value[m->indptr[i] + k], w[k], 1e-6, "%s -> %s", id, items[k]);
    }
}

Test(together, lift_by_hand) {
    ev_set s = shop();
    together_params p;
    together_params_init(&p);
    p.measure = TOGETHER_LIFT;
    together_model m;
    err_t e;
    cr_assert_eq(together_fit(&s, NULL, &p, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_eq(m.baskets, 6);
    cr_expect_eq(m.n_items, 5);
    /* lift = c_ij * B / (c_i * c_j) */
    expect_row(&s, &m, "milk", (const char *[]){"bread", "butter"},
               (double[]){3.0 * 6 / (4 * 5), 1.0 * 6 / (4 * 2)}, 2);
    expect_row(&s, &m, "butter", (const char *[]){"jam", "bread", "milk"},
               (double[]){1.0 * 6 / (2 * 2), 2.0 * 6 / (2 * 5), 1.0 * 6 / (2 * 4)}, 3);
    expect_row(&s, &m, "jam", (const char *[]){"butter", "bread"},
               (double[]){1.0 * 6 / (2 * 2), 2.0 * 6 / (2 * 5)}, 2);
    expect_row(&s, &m, "tea", NULL, NULL, 0);
    /* The rows read as itemrows: the weight of butter in milk's row. */
    itemrows r = together_rows(&m);
    cr_expect_float_eq(itemrows_get(&r, item(&s, "milk"), item(&s, "butter")), 0.75, 1e-6);
    together_free(&m);
    ev_set_free(&s);
}

Test(together, shrunk_conditional_by_hand) {
    ev_set s = shop();
    together_params p;
    together_params_init(&p);
    cr_expect_eq(p.measure, TOGETHER_CONDITIONAL);
    p.shrinkage = 1.0f;
    together_model m;
    err_t e;
    cr_assert_eq(together_fit(&s, NULL, &p, &m, &e), ERR_OK, "%s", e.msg);
    /* c_ij / (c_i + beta), beta = 1: popular bread leads everywhere; butter
     * and jam tie in bread's row and go in item order (butter came first). */
    expect_row(&s, &m, "milk", (const char *[]){"bread", "butter"}, (double[]){3.0 / 5, 1.0 / 5},
               2);
    expect_row(&s, &m, "jam", (const char *[]){"bread", "butter"}, (double[]){2.0 / 3, 1.0 / 3}, 2);
    expect_row(&s, &m, "bread", (const char *[]){"milk", "butter", "jam"},
               (double[]){3.0 / 6, 2.0 / 6, 2.0 / 6}, 3);
    together_free(&m);
    ev_set_free(&s);
}

Test(together, keeps_the_best_neighbours) {
    ev_set s = shop();
    together_params p;
    together_params_init(&p);
    p.measure = TOGETHER_LIFT;
    p.neighbors = 2;
    together_model m;
    err_t e;
    cr_assert_eq(together_fit(&s, NULL, &p, &m, &e), ERR_OK, "%s", e.msg);
    expect_row(&s, &m, "butter", (const char *[]){"jam", "bread"}, (double[]){1.5, 1.2}, 2);
    together_free(&m);
    ev_set_free(&s);
}

Test(together, refuses_bad_parameters) {
    ev_set s = shop();
    together_params p;
    together_model m;
    err_t e;
    together_params_init(&p);
    p.neighbors = 0;
    cr_expect_eq(together_fit(&s, NULL, &p, &m, &e), ERR_INVALID);
    together_params_init(&p);
    p.shrinkage = -1;
    cr_expect_eq(together_fit(&s, NULL, &p, &m, &e), ERR_INVALID);
    cr_expect(strstr(e.msg, "shrinkage"));
    ev_set_free(&s);
}
