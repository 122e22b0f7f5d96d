/* Unit tests of server/score's explanations on models small enough to
 * solve by hand: two factors, three items, a member who bought i0 once and
 * i1 three times. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csr.h"
#include "fuzz_fixture.h"
#include "idmap.h"
#include "itemrows.h"
#include "model.h"
#include "score.h"

/* y0 = (1, 0), y1 = (0, 1), y2 = (1, 1); lambda 1, alpha 1. */
static const float item_factors[6] = {1, 0, 0, 1, 1, 1};
/* Item-item rows (dense): row_i[j] is what having i says for j. */
static const float rows[9] = {0, 0.5f, 0.2f, 0.3f, 0, 0.6f, 0.1f, 0.4f, 0};

/* Publishes the tiny model (item-item rows when item_item) into a fresh
 * folder and opens it. */
static model *tiny_model(int item_item) {
    char dir[PATH_MAX];
    fuzz_scratch_dir("test-score", dir);
    idmap *users = idmap_new(), *items = idmap_new();
    uint32_t idx;
    cr_assert_eq(idmap_intern(users, "u0", 2, &idx), ERR_OK);
    for (int i = 0; i < 3; i++) {
        char id[4];
        snprintf(id, sizeof id, "i%d", i);
        cr_assert_eq(idmap_intern(items, id, strlen(id), &idx), ERR_OK);
    }
    uint32_t r[2] = {0, 0}, c[2] = {0, 1};
    float counts[2] = {1, 3}, user_factors[2] = {0.5f, 0.5f}, pop[3] = {1, 1, 0};
    csr ui;
    err_t e = {0};
    cr_assert_eq(csr_from_triplets(1, 3, r, c, counts, 2, &ui, &e), ERR_OK, "%s", e.msg);
    itemrows ir = {.n_items = 3, .dense = rows};
    model_input in;
    memset(&in, 0, sizeof in);
    in.meta.factors = 2;
    in.meta.n_users = 1;
    in.meta.n_items = 3;
    in.meta.interactions = 2;
    in.meta.iterations = 1;
    in.meta.regularization = 1.0f;
    in.meta.alpha = 1.0f;
    in.meta.data_until = 1700000000;
    strcpy(in.meta.source_fingerprint, "00000000deadbeef");
    if (item_item) strcpy(in.meta.algorithm, "ease");
    in.users = users;
    in.items = items;
    in.user_factors = user_factors;
    in.item_factors = item_factors;
    in.user_items = &ui;
    in.item_popularity = pop;
    in.item_rows = item_item ? &ir : NULL;
    cr_assert_eq(model_publish(dir, &in, NULL, &e), ERR_OK, "%s", e.msg);
    csr_free(&ui);
    idmap_free(users);
    idmap_free(items);
    model *m;
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    return m;
}

/* A = YtY + I + sum (c_j - 1) y_j y_j^T = [[4, 1], [1, 6]] for c = (2, 4);
 * W y2 = A^-1 (1, 1) = (5, 3) / 23, so i0 adds 2 * 5/23 = 10/23 and i1
 * 4 * 3/23 = 12/23 to the score 22/23 of i2. */
Test(score_explain, als_matches_the_hand_solved_system) {
    model *m = tiny_model(0);
    float yty[4];
    score_gram(m, yty);
    uint32_t target = 2, because[3], n;
    float weight[3];
    err_t e = {0};
    cr_assert_eq(score_explain(m, yty, 0, NULL, 0, &target, 1, 3, because, weight, &n, &e), ERR_OK,
                 "%s", e.msg);
    cr_assert_eq(n, 2);
    cr_expect_eq(because[0], 1);
    cr_expect_eq(because[1], 0);
    cr_expect_float_eq(weight[0], 12.0f / 23, 1e-6);
    cr_expect_float_eq(weight[1], 10.0f / 23, 1e-6);
    /* The contributions add up to the folded-in score. */
    float x[2];
    cr_assert_eq(score_fold_in(m, yty, 0, NULL, 0, x, &e), ERR_OK, "%s", e.msg);
    cr_expect_float_eq(weight[0] + weight[1], x[0] + x[1], 1e-6);
    model_close(m);
}

Test(score_explain, als_adds_fresh_signals_and_keeps_only_positive_terms) {
    model *m = tiny_model(0);
    float yty[4];
    score_gram(m, yty);
    /* A view of i2 (weight 0.5) joins the history; i0's target is y0. */
    score_signal sig = {2, 0.5f};
    uint32_t targets[2] = {0, 2}, because[6], n[2];
    float weight[6];
    err_t e = {0};
    cr_assert_eq(score_explain(m, yty, 0, &sig, 1, targets, 2, 3, because, weight, n, &e), ERR_OK,
                 "%s", e.msg);
    float x[2], total[2] = {0, 0};
    cr_assert_eq(score_fold_in(m, yty, 0, &sig, 1, x, &e), ERR_OK, "%s", e.msg);
    for (int t = 0; t < 2; t++) {
        cr_assert_leq(n[t], 3);
        for (uint32_t b = 0; b < n[t]; b++) {
            cr_expect_gt(weight[t * 3 + b], 0.0f);
            if (b) cr_expect_geq(weight[t * 3 + b - 1], weight[t * 3 + b]);
            total[t] += weight[t * 3 + b];
        }
    }
    /* Item i2's three terms are all positive: they add up to its score.
     * Item i1 lowers i0's score (-1/A's off-diagonal): it is left out, so
     * the named terms add up to more than the score. */
    cr_expect_eq(n[1], 3);
    cr_expect_float_eq(total[1], x[0] + x[1], 1e-5);
    cr_expect_geq(total[0], x[0] - 1e-6f);
    for (uint32_t b = 0; b < n[0]; b++)
        cr_expect_neq(because[b], 1);
    model_close(m);
}

/* Item-item: i0 and i1 are worth 1 each (min(1, r)), the viewed i2 0.5;
 * i2's score is 1 * 0.2 + 1 * 0.6 + 0.5 * 0, i0's 1 * 0.3 + 0.5 * 0.1. */
Test(score_explain, item_item_terms_are_exact) {
    model *m = tiny_model(1);
    float yty[4];
    score_gram(m, yty);
    score_signal sig = {2, 0.5f};
    uint32_t targets[2] = {2, 0}, because[6], n[2];
    float weight[6];
    err_t e = {0};
    cr_assert_eq(score_explain(m, yty, 0, &sig, 1, targets, 2, 3, because, weight, n, &e), ERR_OK,
                 "%s", e.msg);
    cr_assert_eq(n[0], 2);
    cr_expect_eq(because[0], 1);
    cr_expect_float_eq(weight[0], 0.6f, 1e-7);
    cr_expect_eq(because[1], 0);
    cr_expect_float_eq(weight[1], 0.2f, 1e-7);
    cr_assert_eq(n[1], 2);
    cr_expect_eq(because[3], 1);
    cr_expect_float_eq(weight[3], 0.3f, 1e-7);
    cr_expect_eq(because[4], 2);
    cr_expect_float_eq(weight[4], 0.05f, 1e-7);
    /* The terms are the served score's. */
    float scores[3];
    cr_assert_eq(score_item_rows(m, 0, &sig, 1, NULL, scores, &e), ERR_OK, "%s", e.msg);
    cr_expect_float_eq(weight[0] + weight[1], scores[2], 1e-7);
    cr_expect_float_eq(weight[3] + weight[4], scores[0], 1e-7);
    model_close(m);
}

Test(score_explain, nothing_to_explain_and_bad_weights) {
    model *m = tiny_model(0);
    float yty[4];
    score_gram(m, yty);
    uint32_t target = 2, because[3], n = 7;
    err_t e = {0};
    /* A visitor with no items: nothing adds to anything. */
    cr_assert_eq(
        score_explain(m, yty, SCORE_NO_USER, NULL, 0, &target, 1, 3, because, NULL, &n, &e), ERR_OK,
        "%s", e.msg);
    cr_expect_eq(n, 0);
    score_signal bad = {0, -1.0f};
    n = 7;
    cr_expect_eq(score_explain(m, yty, 0, &bad, 1, &target, 1, 3, because, NULL, &n, &e),
                 ERR_INVALID);
    cr_expect_eq(n, 0);
    model_close(m);
}
