/* Unit tests of training/eval: metrics against hand-computed values, the
 * temporal split, the matrices, the baselines, and the ml-100k reference
 * figures (skipped when the dataset is not there). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "als.h"
#include "eval.h"

static csr from_pairs(uint32_t rows, uint32_t cols, const uint32_t *r, const uint32_t *c,
                      size_t n) {
    csr m;
    err_t e;
    cr_assert_eq(csr_from_triplets(rows, cols, r, c, NULL, n, &m, &e), ERR_OK, "%s", e.msg);
    return m;
}

/* A recommender that returns fixed lists: user u gets lists[u][0..3);
 * user 2's list is a fallback (not personalized). */
static const uint32_t fixed_lists[4][3] = {{1, 2, 3}, {3, 4, 0}, {0, 1, 2}, {5, 4, 3}};

static uint32_t fixed_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                                int *personalized) {
    (void)ctx;
    (void)train;
    uint32_t n = k < 3 ? k : 3;
    memcpy(out, fixed_lists[u], n * sizeof *out);
    *personalized = u != 2;
    return n;
}

/* Train rows: user 0 {0}, user 1 {5}, user 2 nothing, user 3 {0, 5} (the
 * stub ignores them; they set popularity and who is new). Test rows: user 0
 * {1, 3}, user 1 {0, 2, 4, 5}, user 2 {5}, user 3 none. */
static void fixture(csr *train, csr *test) {
    uint32_t tr[] = {0, 1, 3, 3}, tc[] = {0, 5, 0, 5};
    uint32_t sr[] = {0, 0, 1, 1, 1, 1, 2}, sc[] = {1, 3, 0, 2, 4, 5, 5};
    *train = from_pairs(4, 6, tr, tc, 4);
    *test = from_pairs(4, 6, sr, sc, 7);
}

/* k = 3, 6 items, 4 users; discount(i) = 1/log2(i + 2) for 0-based rank i.
 *   user 0: relevant {1, 3}, list [1, 2, 3]: hits at ranks 0 and 2.
 *     P = 2/3, R = 2/2 = 1, F1 = 2 (2/3)(1) / (5/3) = 0.8,
 *     DCG = 1 + 1/2 = 1.5, IDCG (min(3, 2) = 2 terms)
 *     = 1 + 1/log2(3) = 1.6309298, NDCG = 0.9197208,
 *     AP = (1/1 + 2/3) / min(3, 2) = 0.8333333, hit.
 *   user 1: relevant {0, 2, 4, 5}, list [3, 4, 0]: hits at ranks 1 and 2.
 *     P = 2/3, R = 2/4 = 0.5, F1 = (2/3) / (7/6) = 4/7,
 *     DCG = 1/log2(3) + 1/2 = 1.1309298,
 *     IDCG (3 terms) = 2.1309298, NDCG = 0.5307213,
 *     AP = (1/2 + 2/3) / 3 = 0.3888889, hit.
 *   user 2: relevant {5}, list [0, 1, 2]: no hit, everything 0.
 *   user 3: no test items: not counted (its list [5, 4, 3] is not used).
 * Means over the 3 users: P = 4/9 = 0.4444444, R = 1.5/3 = 0.5,
 * F1 = (0.8 + 4/7) / 3 = 0.4571429, NDCG = 1.4504420/3 = 0.4834807,
 * MAP = 1.2222222/3 = 0.4074074, HR = 2/3; coverage: items {0, 1, 2, 3, 4}
 * of 6 = 0.8333333; user coverage: users 0 and 1 personalized = 2/3.
 * Novelty: 3 users have training items; items 0 and 5 have 2 of them
 * (-log2(2/3) = 0.5849625 bits), every other item counts as 1 user
 * (-log2(1/3) = 1.5849625): lists average 1.5849625, 1.2516292, 1.2516292,
 * mean 1.3627403.
 * At k = 1: user 0 [1] hits (P 1, R 1/2, F1 2/3, NDCG 1, AP 1), the others
 * miss: P = 1/3, R = 1/6, F1 = 2/9, NDCG = MAP = HR = 1/3; coverage items
 * {1, 3, 0} = 0.5. */
Test(eval, metrics_match_hand_computed_values) {
    csr train, test;
    fixture(&train, &test);
    for (uint32_t threads = 1; threads <= 3; threads++) {
        eval_config c;
        eval_config_init(&c);
        c.ks[0] = 1;
        c.ks[1] = 3;
        c.n_ks = 2;
        c.threads = threads;
        eval_metrics all[2];
        err_t e;
        cr_assert_eq(eval_ranking(fixed_recommend, NULL, &train, &test, &c, all, NULL, &e), ERR_OK,
                     "%s", e.msg);
        const eval_metrics *m = &all[1];
        cr_expect_eq(m->k, 3);
        cr_expect_eq(m->users, 3);
        cr_expect_float_eq(m->precision, 4.0 / 9.0, 1e-9);
        cr_expect_float_eq(m->recall, 0.5, 1e-9);
        cr_expect_float_eq(m->f1, (0.8 + 4.0 / 7.0) / 3.0, 1e-9);
        cr_expect_float_eq(m->ndcg, 0.48348068770847696, 1e-9);
        cr_expect_float_eq(m->map, 0.4074074074074074, 1e-9);
        cr_expect_float_eq(m->hit_rate, 2.0 / 3.0, 1e-9);
        cr_expect_float_eq(m->item_coverage, 5.0 / 6.0, 1e-9, "threads %u", threads);
        cr_expect_float_eq(m->user_coverage, 2.0 / 3.0, 1e-9);
        cr_expect_float_eq(m->novelty, 1.362740278498934, 1e-9);
        cr_expect(isnan(m->diversity), "no factors, no diversity");
        m = &all[0];
        cr_expect_eq(m->k, 1);
        cr_expect_float_eq(m->precision, 1.0 / 3.0, 1e-9);
        cr_expect_float_eq(m->recall, 1.0 / 6.0, 1e-9);
        cr_expect_float_eq(m->f1, 2.0 / 9.0, 1e-9);
        cr_expect_float_eq(m->ndcg, 1.0 / 3.0, 1e-9);
        cr_expect_float_eq(m->map, 1.0 / 3.0, 1e-9);
        cr_expect_float_eq(m->hit_rate, 1.0 / 3.0, 1e-9);
        cr_expect_float_eq(m->item_coverage, 0.5, 1e-9);
    }
    eval_config c;
    eval_config_init(&c);
    eval_metrics m;
    err_t e;
    c.ks[0] = 0;
    cr_expect_eq(eval_ranking(fixed_recommend, NULL, &train, &test, &c, &m, NULL, &e), ERR_INVALID);
    c.ks[0] = 5;
    c.ks[1] = 5;
    c.n_ks = 2;
    cr_expect_eq(eval_ranking(fixed_recommend, NULL, &train, &test, &c, &m, NULL, &e), ERR_INVALID,
                 "ks must be distinct");
    csr_free(&train);
    csr_free(&test);
}

/* Item factors (2-d): 0 (1,0), 1 (0,1), 2 (1,1), 3 (1,0), 4 (-1,0), 5 (0,2).
 * Pairwise cosines: list [1, 2, 3]: 0.7071, 0, 0.7071 -> diversity
 * 1 - 0.4714045 = 0.5285955; [3, 4, 0]: -1, 1, -1 -> 1 + 1/3; [0, 1, 2]:
 * 0, 0.7071, 0.7071 -> 0.5285955; mean 0.7968414. A one-item list has no
 * pair: NAN. */
Test(eval, diversity_is_one_minus_mean_pairwise_cosine) {
    csr train, test;
    fixture(&train, &test);
    const float factors[6 * 2] = {1, 0, 0, 1, 1, 1, 1, 0, -1, 0, 0, 2};
    eval_config c;
    eval_config_init(&c);
    c.ks[0] = 1;
    c.ks[1] = 3;
    c.n_ks = 2;
    c.item_factors = factors;
    c.factors = 2;
    eval_metrics all[2];
    err_t e;
    cr_assert_eq(eval_ranking(fixed_recommend, NULL, &train, &test, &c, all, NULL, &e), ERR_OK);
    cr_expect_float_eq(all[1].diversity, 0.7968414305837568, 1e-6);
    cr_expect(isnan(all[0].diversity));
    csr_free(&train);
    csr_free(&test);
}

/* New users = at most new_user_max distinct training items. With 0 only
 * user 2 (no training row) is new: one user, no hit, not personalized, its
 * list [0, 1, 2] covers 3 of 6 items. With 1, users 0, 1 and 2 are: the
 * group equals everyone. */
Test(eval, new_users_are_measured_separately) {
    csr train, test;
    fixture(&train, &test);
    eval_config c;
    eval_config_init(&c);
    c.ks[0] = 3;
    c.new_user_max = 0;
    eval_metrics all, fresh;
    err_t e;
    cr_assert_eq(eval_ranking(fixed_recommend, NULL, &train, &test, &c, &all, &fresh, &e), ERR_OK);
    cr_expect_eq(all.users, 3);
    cr_expect_eq(fresh.users, 1);
    cr_expect_float_eq(fresh.precision, 0.0, 1e-12);
    cr_expect_float_eq(fresh.user_coverage, 0.0, 1e-12);
    cr_expect_float_eq(fresh.item_coverage, 0.5, 1e-12);
    c.new_user_max = 1;
    cr_assert_eq(eval_ranking(fixed_recommend, NULL, &train, &test, &c, &all, &fresh, &e), ERR_OK);
    cr_expect_eq(fresh.users, 3);
    cr_expect_float_eq(fresh.ndcg, all.ndcg, 1e-12);
    cr_expect_float_eq(fresh.user_coverage, 2.0 / 3.0, 1e-12);
    csr_free(&train);
    csr_free(&test);
}

Test(eval, parse_ks) {
    eval_config c;
    eval_config_init(&c);
    err_t e;
    cr_assert_eq(eval_parse_ks("20,5,10,5", &c, &e), ERR_OK);
    cr_expect_eq(c.n_ks, 3);
    cr_expect(c.ks[0] == 5 && c.ks[1] == 10 && c.ks[2] == 20);
    cr_expect_eq(eval_parse_ks("5,,10", &c, &e), ERR_INVALID);
    cr_expect_eq(eval_parse_ks("0", &c, &e), ERR_INVALID);
    cr_expect_eq(eval_parse_ks("10x", &c, &e), ERR_INVALID);
    cr_expect_eq(eval_parse_ks("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", &c, &e), ERR_INVALID);
}

static void add(ev_set *s, const char *user, const char *item, int64_t ts) {
    err_t e;
    cr_assert_eq(ev_set_add(s, user, strlen(user), item, strlen(item), ts, 1.0f, NAN, &e), ERR_OK);
}

/* Test flag of the event of user/item (the first one found). */
static int test_flag(const ev_set *s, const uint8_t *is_test, const char *user, const char *item) {
    uint32_t u, i;
    cr_assert_eq(idmap_find(s->users, user, strlen(user), &u), ERR_OK);
    cr_assert_eq(idmap_find(s->items, item, strlen(item), &i), ERR_OK);
    for (size_t k = 0; k < s->n; k++)
        if (s->events[k].user == u && s->events[k].item == i) return is_test[k];
    cr_assert_fail("no event %s/%s", user, item);
    return -1;
}

/* floor(0.8 n) train events per user, the latest ones test; ties in time go
 * by item id with numeric ids compared as numbers ("9" before "10"). */
Test(eval, split_is_per_user_temporal_floor_08) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    /* alice, 5 events: 4 train; "9" and "10" tie at t = 40, so "10" is last. */
    add(&s, "alice", "10", 40);
    add(&s, "alice", "c", 30);
    add(&s, "alice", "9", 40);
    add(&s, "alice", "a", 10);
    add(&s, "alice", "b", 20);
    add(&s, "bob", "a", 5); /* 1 event: floor(0.8) = 0 train */
    /* carol, 4 events: floor(3.2) = 3 train; "a" twice (train). */
    add(&s, "carol", "a", 1);
    add(&s, "carol", "b", 3);
    add(&s, "carol", "a", 2);
    add(&s, "carol", "c", 4);
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    uint8_t is_test[10];
    eval_split_last_fraction(&s, start, 0.2, is_test);
    cr_expect_eq(test_flag(&s, is_test, "alice", "10"), 1);
    cr_expect_eq(test_flag(&s, is_test, "alice", "9"), 0);
    cr_expect_eq(test_flag(&s, is_test, "alice", "c"), 0);
    cr_expect_eq(test_flag(&s, is_test, "bob", "a"), 1);
    cr_expect_eq(test_flag(&s, is_test, "carol", "c"), 1);
    cr_expect_eq(test_flag(&s, is_test, "carol", "b"), 0);
    size_t n_test = 0;
    for (size_t i = 0; i < s.n; i++)
        n_test += is_test[i];
    cr_expect_eq(n_test, 3);

    csr train, test;
    cr_assert_eq(eval_split_matrices(&s, is_test, NULL, &train, &test, &e), ERR_OK, "%s", e.msg);
    uint32_t carol, a, bob;
    idmap_find(s.users, "carol", 5, &carol);
    idmap_find(s.users, "bob", 3, &bob);
    idmap_find(s.items, "a", 1, &a);
    cr_expect_eq(train.n_rows, 3);
    cr_expect_eq(train.n_cols, 5);
    cr_expect_eq(csr_nnz(&train), 4 + 2); /* alice 4, carol a (x2) and b */
    cr_expect_eq(csr_nnz(&test), 3);
    cr_expect_eq(train.values[train.indptr[carol]], 2.0f, "carol's two 'a' events count 2");
    cr_expect_eq(train.indptr[bob + 1], train.indptr[bob]);
    cr_expect(csr_has(&test, bob, a));

    /* Half: floor(2.5) = 2 of alice's 5 events train. */
    eval_split_last_fraction(&s, start, 0.5, is_test);
    cr_expect_eq(test_flag(&s, is_test, "alice", "b"), 0);
    cr_expect_eq(test_flag(&s, is_test, "alice", "c"), 1);
    csr_free(&train);
    csr_free(&test);
    free(start);
    ev_set_free(&s);
}

/* Global split: events at or after the cutoff are test, whoever they
 * belong to; the cutoff for a fraction is the timestamp at rank
 * floor((1 - f) n), and ties at it all go to test. */
Test(eval, global_cutoff_split) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    const int64_t ts[6] = {1, 2, 3, 3, 3, 4};
    const char *users[6] = {"a", "b", "a", "c", "b", "c"};
    for (int i = 0; i < 6; i++)
        add(&s, users[i], "x", ts[i]);
    int64_t cutoff;
    cr_assert_eq(eval_cutoff_for_fraction(&s, 0.5, &cutoff, &e), ERR_OK);
    cr_expect_eq(cutoff, 3, "rank floor(0.5 * 6) = 3 of 1,2,3,3,3,4");
    uint8_t is_test[6];
    eval_split_cutoff(&s, cutoff, is_test);
    const uint8_t want[6] = {0, 0, 1, 1, 1, 1};
    for (int i = 0; i < 6; i++)
        cr_expect_eq(is_test[i], want[i], "event %d", i);
    cr_assert_eq(eval_cutoff_for_fraction(&s, 1.0 / 6.0, &cutoff, &e), ERR_OK);
    cr_expect_eq(cutoff, 4);
    cr_expect_eq(eval_cutoff_for_fraction(&s, 0.0, &cutoff, &e), ERR_INVALID);
    cr_expect_eq(eval_cutoff_for_fraction(&s, 1.0, &cutoff, &e), ERR_INVALID);
    cr_expect_eq(eval_train_end(&s, is_test), 2);
    cr_expect_eq(eval_train_end(&s, NULL), 4);
    ev_set_free(&s);
}

/* Half-life weighting: 0.5^(age / half-life) days before the end of the
 * training data; purchases weigh 1 before decay, event-store events their
 * type weight (ev_event.weight); cells sum their events. */
Test(eval, half_life_weighting) {
    const int64_t day = 86400, end = 1000 * day;
    cr_expect_float_eq(eval_decay(end - 10 * day, end, 10.0), 0.5, 1e-12);
    cr_expect_float_eq(eval_decay(end - 20 * day, end, 10.0), 0.25, 1e-12);
    cr_expect_float_eq(eval_decay(end - 15 * day, end, 30.0), pow(2.0, -0.5), 1e-12);
    cr_expect_float_eq(eval_decay(end - 20 * day, end, 0.0), 1.0, 1e-12, "0 = no decay");
    cr_expect_float_eq(eval_decay(end + day, end, 10.0), 1.0, 1e-12, "not older than end");

    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    add(&s, "u", "a", end - 10 * day);
    add(&s, "u", "a", end - 20 * day);
    ev_event cart = {.ts = end,
                     .quantity = 1,
                     .price = NAN,
                     .weight = 0.3f,
                     .type = EV_TYPE_ADD_TO_CART,
                     .recorded = 1};
    cr_assert_eq(ev_set_add_event(&s, "u", 1, "b", 1, &cart, &e), ERR_OK);
    add(&s, "u", "c", end + 5 * day); /* test: does not move the end */
    float w[4];
    uint8_t is_test[4] = {0, 0, 0, 1};
    cr_expect_eq(eval_train_end(&s, is_test), end);
    eval_event_weights(&s, 10.0, eval_train_end(&s, is_test), w);
    cr_expect_float_eq(w[0], 0.5f, 1e-6);
    cr_expect_float_eq(w[1], 0.25f, 1e-6);
    cr_expect_float_eq(w[2], 0.3f, 1e-6, "type weight, age 0");
    csr train, test;
    cr_assert_eq(eval_split_matrices(&s, is_test, w, &train, &test, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(csr_nnz(&train), 2);
    cr_expect_float_eq(train.values[0], 0.75f, 1e-6, "a: 0.5 + 0.25");
    cr_expect_float_eq(train.values[1], 0.3f, 1e-6);
    cr_expect_eq(csr_nnz(&test), 1);
    csr_free(&train);
    csr_free(&test);
    eval_event_weights(&s, 0.0, end, w);
    cr_expect(w[0] == 1.0f && w[1] == 1.0f, "purchase rows count 1 without decay");
    cr_expect_float_eq(w[2], 0.3f, 1e-6, "a recorded event its type's weight");
    ev_set_free(&s);
}

/* Items ranked by distinct training users (a repeat purchase counts once),
 * ties by lower index; a user's own training items are skipped. */
Test(eval, popularity_baseline) {
    uint32_t r[] = {0, 0, 1, 1, 2, 2, 2, 3}, c[] = {0, 1, 1, 2, 1, 3, 3, 3};
    /* item 1: users 0, 1, 2; item 3: users 2 (twice), 3; items 0 and 2: one. */
    csr train = from_pairs(5, 5, r, c, 8);
    eval_popular p;
    err_t e;
    cr_assert_eq(eval_popular_init(&train, &p, &e), ERR_OK);
    cr_assert_eq(p.n, 5);
    const uint32_t ranked[5] = {1, 3, 0, 2, 4};
    for (int i = 0; i < 5; i++)
        cr_expect_eq(p.ranked[i], ranked[i], "rank %d", i);
    uint32_t out[5];
    int personalized = 1;
    cr_assert_eq(eval_popular_recommend(&p, 0, 2, &train, out, &personalized), 2);
    cr_expect(out[0] == 3 && out[1] == 2, "user 0 got %u, %u", out[0], out[1]);
    cr_expect_eq(personalized, 0);
    cr_assert_eq(eval_popular_recommend(&p, 2, 5, &train, out, &personalized), 3,
                 "items 0, 2, 4 remain");
    cr_expect(out[0] == 0 && out[1] == 2 && out[2] == 4);
    cr_assert_eq(eval_popular_recommend(&p, 4, 5, &train, out, &personalized), 5);
    eval_popular_free(&p);
    csr_free(&train);
}

/* Scores x_u . y_i, skips training items; an empty training row gets the
 * fallback list, or nothing without one. */
Test(eval, factor_recommender) {
    const float users[3 * 2] = {1.0f, 0.5f, 0.0f, 1.0f, 0.0f, 0.0f};
    const float items[4 * 2] = {1, 0, 0, 1, 1, 1, -1, 0};
    uint32_t r[] = {0, 0, 1}, c[] = {0, 1, 3};
    csr train = from_pairs(3, 4, r, c, 3);
    eval_popular pop;
    err_t e;
    cr_assert_eq(eval_popular_init(&train, &pop, &e), ERR_OK);
    eval_mf mf = {
        .user_factors = users, .item_factors = items, .factors = 2, .n_items = 4, .fallback = &pop};
    uint32_t out[4];
    int pers = 0;
    /* user 0 scores 1, 0.5, 1.5, -1; items 0 and 1 are training items. */
    cr_assert_eq(eval_mf_recommend(&mf, 0, 4, &train, out, &pers), 2);
    cr_expect(out[0] == 2 && out[1] == 3);
    cr_expect_eq(pers, 1);
    /* user 1 scores 0, 1, 1, 0 without item 3: the 1 - 1 tie goes to item 1. */
    cr_assert_eq(eval_mf_recommend(&mf, 1, 2, &train, out, &pers), 2);
    cr_expect(out[0] == 1 && out[1] == 2);
    /* user 2 has no training events: popularity (0, 1, 3 have one user each),
     * not personalized. */
    cr_assert_eq(eval_mf_recommend(&mf, 2, 2, &train, out, &pers), 2);
    cr_expect(out[0] == pop.ranked[0] && out[1] == pop.ranked[1]);
    cr_expect_eq(pers, 0);
    mf.fallback = NULL;
    cr_expect_eq(eval_mf_recommend(&mf, 2, 2, &train, out, &pers), 0);
    cr_expect_eq(mf.failed, 0);
    eval_popular_free(&pop);
    csr_free(&train);
}

/* The factor recommender with a blend: a large w ranks by popularity
 * among the non-training items, +inf is the most-popular list (not
 * personalized) even for users with training items. */
Test(eval, factor_recommender_blend) {
    /* user 0 prefers item 3 (score 1), then 2 (0.5); item 0 is the most
     * popular (users 0, 1, 2), item 1 next (users 1, 2). */
    const float users[3 * 2] = {1.0f, 0.0f, 0.0f, 1.0f, 0.0f, 1.0f};
    const float items[5 * 2] = {0, 0, 0, 0, 0.5f, 0, 1, 0, 0, 0};
    uint32_t r[] = {0, 1, 1, 2, 2}, c[] = {0, 0, 1, 0, 1};
    csr train = from_pairs(3, 5, r, c, 5);
    eval_popular pop;
    err_t e;
    cr_assert_eq(eval_popular_init(&train, &pop, &e), ERR_OK);
    cr_expect_float_eq(pop.max_popularity, 3.0f, 0);
    cr_expect_float_eq(pop.popularity[1], 2.0f, 0);
    eval_mf mf = {
        .user_factors = users, .item_factors = items, .factors = 2, .n_items = 5, .fallback = &pop};
    uint32_t out[5];
    int pers = 0;
    cr_assert_eq(eval_mf_recommend(&mf, 0, 2, &train, out, &pers), 2);
    cr_expect(out[0] == 3 && out[1] == 2, "pure ALS: %u %u", out[0], out[1]);
    /* w 3: item 1 scores 0 + 3 * 2/3 = 2, above item 3's 1. */
    mf.blend = 3.0f;
    cr_assert_eq(eval_mf_recommend(&mf, 0, 2, &train, out, &pers), 2);
    cr_expect(out[0] == 1 && out[1] == 3, "blend 3: %u %u", out[0], out[1]);
    cr_expect_eq(pers, 1);
    mf.blend = INFINITY;
    cr_assert_eq(eval_mf_recommend(&mf, 0, 2, &train, out, &pers), 2);
    cr_expect(out[0] == 1 && out[1] == 2, "popularity only, without item 0: %u %u", out[0], out[1]);
    cr_expect_eq(pers, 0);
    cr_expect_eq(mf.failed, 0);
    eval_popular_free(&pop);
    csr_free(&train);
}

/* ml-100k with the protocol and parameters of the reference figures in
 * shared/data/README.md (benfred/implicit 0.7.2: NDCG@10 0.179, most-popular
 * 0.116). u.data is parsed here so the test does not depend on the CSV
 * importer. */
Test(eval, ml100k_matches_reference, .timeout = 120) {
    const char *root = getenv("RECD_SHARED_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/ml-100k/u.data", root ? root : "");
    FILE *f = root ? fopen(path, "r") : NULL;
    if (!f)
        cr_skip_test("ml-100k not found at '%s' (set RECD_SHARED_DATA to the shared data folder)",
                     path);
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    char user[32], item[32];
    int rating;
    long long ts;
    while (fscanf(f, "%31s %31s %d %lld", user, item, &rating, &ts) == 4)
        cr_assert_eq(ev_set_add(&s, user, strlen(user), item, strlen(item), ts, 1.0f, NAN, &e),
                     ERR_OK);
    fclose(f);
    cr_assert_eq(s.n, 100000);
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    uint8_t *is_test = malloc(s.n);
    eval_split_last_fraction(&s, start, 0.2, is_test);
    csr train, test;
    cr_assert_eq(eval_split_matrices(&s, is_test, NULL, &train, &test, &e), ERR_OK, "%s", e.msg);

    als_params p;
    als_params_init(&p);
    p.factors = 64;
    p.regularization = 0.01f;
    p.iterations = 15;
    p.alpha = 1.0f; /* confidence 2 per interaction, as the reference */
    p.threads = 2;
    als_factors fa;
    cr_assert_eq(als_train(&train, &p, &fa, &e), ERR_OK, "%s", e.msg);
    eval_popular pop;
    cr_assert_eq(eval_popular_init(&train, &pop, &e), ERR_OK);
    eval_mf mf = {.user_factors = fa.user_factors,
                  .item_factors = fa.item_factors,
                  .factors = fa.factors,
                  .n_items = fa.n_items,
                  .fallback = &pop};
    eval_metrics m_als, m_pop;
    eval_config c;
    eval_config_init(&c);
    c.threads = 2;
    cr_assert_eq(eval_ranking(eval_mf_recommend, &mf, &train, &test, &c, &m_als, NULL, &e), ERR_OK);
    cr_assert_eq(eval_ranking(eval_popular_recommend, &pop, &train, &test, &c, &m_pop, NULL, &e),
                 ERR_OK);
    cr_expect_eq(mf.failed, 0);
    cr_log_info("ml-100k als: P %.4f R %.4f NDCG %.4f MAP %.4f HR %.4f cov %.4f; popular NDCG "
                "%.4f",
                m_als.precision, m_als.recall, m_als.ndcg, m_als.map, m_als.hit_rate,
                m_als.item_coverage, m_pop.ndcg);
    cr_expect_eq(m_als.users, 943);
    cr_expect_geq(m_als.ndcg, 0.17, "ALS NDCG@10 %.4f (reference 0.179)", m_als.ndcg);
    cr_expect(fabs(m_pop.ndcg - 0.116) <= 0.01, "popular NDCG@10 %.4f (reference 0.116)",
              m_pop.ndcg);
    cr_expect(fabs(m_als.item_coverage - 0.37) <= 0.05, "coverage %.4f (reference 0.37)",
              m_als.item_coverage);

    eval_popular_free(&pop);
    als_factors_free(&fa);
    csr_free(&train);
    csr_free(&test);
    free(is_test);
    free(start);
    ev_set_free(&s);
}
