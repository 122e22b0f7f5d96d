/* Unit tests of training/itemsim and util/itemrows: EASE against a direct
 * solve of its closed form, item-kNN rows against a hand count, RP3beta
 * against its formula, pruning, blends and the recommender, on tiny
 * matrices. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "itemsim.h"

/* Users x items (5 x 4): u0 {0, 1}, u1 {0, 1, 2}, u2 {2, 3}, u3 {0}, u4 {}.
 * u1's item 2 has value 3 (three purchases): it still counts 1. */
static csr tiny(void) {
    uint32_t r[] = {0, 0, 1, 1, 1, 2, 2, 3}, c[] = {0, 1, 0, 1, 2, 2, 3, 0};
    float v[] = {1, 1, 1, 1, 3, 1, 1, 1};
    csr m;
    err_t e;
    cr_assert_eq(csr_from_triplets(5, 4, r, c, v, 8, &m, &e), ERR_OK);
    return m;
}

/* Solves A x = b (n <= 4) by Gaussian elimination with partial pivoting in
 * double: an independent check of LAPACK's inverse. */
static void solve(double a[4][4], double *b, int n) {
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(a[i][k]) > fabs(a[p][k])) p = i;
        for (int j = 0; j < n; j++) {
            double t = a[k][j];
            a[k][j] = a[p][j];
            a[p][j] = t;
        }
        double t = b[k];
        b[k] = b[p];
        b[p] = t;
        for (int i = k + 1; i < n; i++) {
            double f = a[i][k] / a[k][k];
            for (int j = k; j < n; j++)
                a[i][j] -= f * a[k][j];
            b[i] -= f * b[k];
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        for (int j = i + 1; j < n; j++)
            b[i] -= a[i][j] * b[j];
        b[i] /= a[i][i];
    }
}

Test(itemsim, ease_matches_a_direct_solve) {
    csr train = tiny();
    /* G = X^T X by hand from the rows above, binary. */
    const double g[4][4] = {{3, 2, 1, 0}, {2, 2, 1, 0}, {1, 1, 2, 1}, {0, 0, 1, 1}};
    const double lambda = 0.5;
    double p[4][4];
    for (int j = 0; j < 4; j++) {
        double a[4][4], col[4] = {0};
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++)
                a[r][c] = g[r][c] + (r == c ? lambda : 0);
        col[j] = 1;
        solve(a, col, 4);
        for (int r = 0; r < 4; r++)
            p[r][j] = col[r];
    }
    itemsim_params ip;
    itemsim_params_init(&ip);
    ip.lambda = (float)lambda;
    itemsim_model m;
    err_t e;
    cr_assert_eq(itemsim_fit(&train, &ip, &m, &e), ERR_OK, "%s", e.msg);
    cr_assert_not_null(m.dense);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double want = i == j ? 0 : -p[i][j] / p[j][j];
            cr_expect_float_eq(m.dense[i * 4 + j], (float)want, 1e-5, "B[%d][%d]", i, j);
        }
    /* Above max_dense_items the same B, pruned to the 2 largest magnitudes
     * of each row. */
    ip.max_dense_items = 3;
    ip.neighbors = 2;
    itemsim_model pr;
    cr_assert_eq(itemsim_fit(&train, &ip, &pr, &e), ERR_OK, "%s", e.msg);
    cr_assert_null(pr.dense);
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert_eq(pr.indptr[i + 1] - pr.indptr[i], 2);
        float kept_min = INFINITY;
        for (uint64_t q = pr.indptr[i]; q < pr.indptr[i + 1]; q++) {
            cr_expect_float_eq(pr.value[q], m.dense[i * 4 + pr.index[q]], 1e-6);
            kept_min = fminf(kept_min, fabsf(pr.value[q]));
        }
        for (uint32_t j = 0; j < 4; j++) {
            int kept = 0;
            for (uint64_t q = pr.indptr[i]; q < pr.indptr[i + 1]; q++)
                kept |= pr.index[q] == j;
            if (!kept && j != i) cr_expect_leq(fabsf(m.dense[i * 4 + j]), kept_min);
        }
    }
    /* lambda 0 resolves to the mean users per item: 8 / 4. */
    ip.lambda = 0;
    itemsim_model d;
    cr_assert_eq(itemsim_fit(&train, &ip, &d, &e), ERR_OK, "%s", e.msg);
    cr_expect_float_eq(d.lambda, 2.0f, 1e-6);
    itemsim_free(&d);
    itemsim_free(&pr);
    itemsim_free(&m);
    csr_free(&train);
}

/* Cosines counted by hand (see test_knn.c): sim(0,1) = 2/sqrt(6),
 * sim(0,2) = 1/sqrt(6), sim(1,2) = 1/2, sim(2,3) = 1/sqrt(2). */
Test(itemsim, knn_rows_are_hand_counted_cosines) {
    csr train = tiny();
    itemsim_params ip;
    itemsim_params_init(&ip);
    ip.algorithm = ITEMSIM_KNN;
    ip.neighbors = 3;
    itemsim_model m;
    err_t e;
    cr_assert_eq(itemsim_fit(&train, &ip, &m, &e), ERR_OK, "%s", e.msg);
    itemrows r = itemsim_rows(&m);
    const float want[4][4] = {{0, 0.8164966f, 0.4082483f, 0},
                              {0.8164966f, 0, 0.5f, 0},
                              {0.4082483f, 0.5f, 0, 0.7071068f},
                              {0, 0, 0.7071068f, 0}};
    for (uint32_t i = 0; i < 4; i++)
        for (uint32_t j = 0; j < 4; j++)
            cr_expect_float_eq(itemrows_get(&r, i, j), want[i][j], 1e-6, "sim(%u,%u)", i, j);
    /* u0 {0, 1}: item 2 scores sim(0,2) + sim(1,2), item 3 nothing. */
    eval_popular pop;
    cr_assert_eq(eval_popular_init(&train, &pop, &e), ERR_OK);
    itemsim_eval ie = {.rows = r, .rows_weight = 1, .fallback = &pop};
    float s[4];
    itemsim_user_scores(&ie, 0, &train, s);
    cr_expect_float_eq(s[2], 0.4082483f + 0.5f, 1e-6);
    cr_expect_float_eq(s[3], 0.0f, 1e-6);
    uint32_t out[4];
    int pers;
    cr_assert_eq(itemsim_recommend(&ie, 0, 2, &train, out, &pers), 2);
    cr_expect_eq(out[0], 2);
    cr_expect_eq(out[1], 3);
    cr_expect_eq(pers, 1);
    /* u4 has nothing: the most-popular list, not personalized. */
    cr_assert_eq(itemsim_recommend(&ie, 4, 1, &train, out, &pers), 1);
    cr_expect_eq(out[0], 0);
    cr_expect_eq(pers, 0);
    eval_popular_free(&pop);
    itemsim_free(&m);
    csr_free(&train);
}

Test(itemsim, rp3beta_follows_its_formula) {
    csr train = tiny();
    itemsim_params ip;
    itemsim_params_init(&ip);
    ip.algorithm = ITEMSIM_RP3BETA;
    ip.rp3_alpha = 0.5f;
    ip.rp3_beta = 0.3f;
    ip.neighbors = 3;
    itemsim_model m;
    err_t e;
    for (uint32_t threads = 1; threads <= 2; threads++) {
        ip.threads = threads;
        cr_assert_eq(itemsim_fit(&train, &ip, &m, &e), ERR_OK, "%s", e.msg);
        itemrows r = itemsim_rows(&m);
        /* Degrees: items 3, 2, 2, 1; users 2, 3, 2, 1. W(0,1): users u0, u1. */
        double w01 = pow(3, -0.5) * (pow(2, -0.5) + pow(3, -0.5)) / pow(2, 0.3);
        double w23 = pow(2, -0.5) * pow(2, -0.5) / pow(1, 0.3);
        double w32 = pow(1, -0.5) * pow(2, -0.5) / pow(2, 0.3);
        cr_expect_float_eq(itemrows_get(&r, 0, 1), (float)w01, 1e-6);
        cr_expect_float_eq(itemrows_get(&r, 2, 3), (float)w23, 1e-6);
        cr_expect_float_eq(itemrows_get(&r, 3, 2), (float)w32, 1e-6);
        cr_expect_float_eq(itemrows_get(&r, 0, 3), 0.0f, 1e-9);
        cr_expect_float_eq(itemrows_get(&r, 1, 1), 0.0f, 1e-9);
        itemsim_free(&m);
    }
    csr_free(&train);
}

Test(itemsim, blend_adds_weighted_rows) {
    csr train = tiny();
    itemsim_params ip;
    itemsim_params_init(&ip);
    ip.algorithm = ITEMSIM_KNN;
    itemsim_model a, b, c, d;
    err_t e;
    cr_assert_eq(itemsim_fit(&train, &ip, &a, &e), ERR_OK);
    ip.algorithm = ITEMSIM_RP3BETA;
    cr_assert_eq(itemsim_fit(&train, &ip, &b, &e), ERR_OK);
    ip.algorithm = ITEMSIM_EASE;
    ip.lambda = 1;
    cr_assert_eq(itemsim_fit(&train, &ip, &d, &e), ERR_OK);
    cr_assert_eq(itemsim_blend(&a, 0.25f, &b, 2.0f, &c, &e), ERR_OK);
    itemrows ra = itemsim_rows(&a), rb = itemsim_rows(&b), rc = itemsim_rows(&c);
    for (uint32_t i = 0; i < 4; i++)
        for (uint32_t j = 0; j < 4; j++)
            cr_expect_float_eq(itemrows_get(&rc, i, j),
                               0.25f * itemrows_get(&ra, i, j) + 2.0f * itemrows_get(&rb, i, j),
                               1e-6);
    itemsim_free(&c);
    cr_assert_eq(itemsim_blend(&d, 0.5f, &a, 1.0f, &c, &e), ERR_OK);
    cr_assert_not_null(c.dense);
    for (uint32_t i = 0; i < 4; i++)
        for (uint32_t j = 0; j < 4; j++)
            cr_expect_float_eq(c.dense[i * 4 + j],
                               0.5f * d.dense[i * 4 + j] + itemrows_get(&ra, i, j), 1e-6);
    itemsim_free(&a);
    itemsim_free(&b);
    itemsim_free(&c);
    itemsim_free(&d);
    csr_free(&train);
}

Test(itemsim, names_and_bad_parameters) {
    cr_expect_eq(itemsim_algorithm_parse("ease"), ITEMSIM_EASE);
    cr_expect_eq(itemsim_algorithm_parse("rp3beta"), ITEMSIM_RP3BETA);
    cr_expect_eq(itemsim_algorithm_parse("EASE"), -1);
    cr_expect_str_eq(itemsim_algorithm_name(ITEMSIM_KNN), "knn");
    csr train = tiny();
    itemsim_params ip;
    itemsim_params_init(&ip);
    itemsim_model m;
    err_t e;
    ip.algorithm = ITEMSIM_ALS;
    cr_expect_eq(itemsim_fit(&train, &ip, &m, &e), ERR_INVALID);
    ip.algorithm = ITEMSIM_EASE;
    ip.lambda = -1;
    cr_expect_eq(itemsim_fit(&train, &ip, &m, &e), ERR_INVALID);
    ip.lambda = 1;
    ip.neighbors = 0;
    cr_expect_eq(itemsim_fit(&train, &ip, &m, &e), ERR_INVALID);
    csr_free(&train);
    cr_expect_float_eq(itemrows_value(3.0f), 1.0f, 0);
    cr_expect_float_eq(itemrows_value(0.25f), 0.25f, 0);
    cr_expect_float_eq(itemrows_value(NAN), 0.0f, 0);
}
