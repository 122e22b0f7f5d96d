/* Unit tests of training/knn: neighbour lists and recommendations on a tiny
 * co-purchase matrix with hand-computed cosines. */
#include <criterion/criterion.h>
#include <string.h>

#include "knn.h"

/* Users x items (5 x 4):
 *   u0 {0, 1}, u1 {0, 1, 2}, u2 {2, 3}, u3 {0}, u4 {} (no training items).
 * Buyers: i0 {u0, u1, u3}, i1 {u0, u1}, i2 {u1, u2}, i3 {u2}.
 *   sim(0,1) = 2/sqrt(3*2) = 0.8164966   sim(0,2) = 1/sqrt(6) = 0.4082483
 *   sim(1,2) = 1/sqrt(4)   = 0.5         sim(2,3) = 1/sqrt(2) = 0.7071068
 *   sim(0,3) = sim(1,3) = 0 (never bought together: not a neighbour)
 * With 2 neighbours: i0 [1, 2], i1 [0, 2], i2 [3, 1] (0 dropped), i3 [2]. */
static csr tiny(void) {
    uint32_t r[] = {0, 0, 1, 1, 1, 2, 2, 3}, c[] = {0, 1, 0, 1, 2, 2, 3, 0};
    csr m;
    err_t e;
    cr_assert_eq(csr_from_triplets(5, 4, r, c, NULL, 8, &m, &e), ERR_OK);
    return m;
}

Test(knn, neighbours_are_the_top_cosines) {
    csr train = tiny();
    const uint32_t want_count[4] = {2, 2, 2, 1};
    const uint32_t want_index[4][2] = {{1, 2}, {0, 2}, {3, 1}, {2, 0}};
    const float want_sim[4][2] = {
        {0.8164966f, 0.4082483f}, {0.8164966f, 0.5f}, {0.7071068f, 0.5f}, {0.7071068f, 0}};
    for (uint32_t threads = 1; threads <= 3; threads++) {
        knn_model m;
        err_t e;
        cr_assert_eq(knn_fit(&train, 2, threads, &m, &e), ERR_OK, "%s", e.msg);
        cr_assert_eq(m.n_items, 4);
        for (uint32_t i = 0; i < 4; i++) {
            cr_assert_eq(m.count[i], want_count[i], "item %u, threads %u", i, threads);
            for (uint32_t t = 0; t < m.count[i]; t++) {
                cr_expect_eq(m.index[i * 2 + t], want_index[i][t], "item %u rank %u", i, t);
                cr_expect_float_eq(m.sim[i * 2 + t], want_sim[i][t], 1e-6);
            }
        }
        knn_free(&m);
    }
    knn_model m;
    err_t e;
    cr_expect_eq(knn_fit(&train, 0, 1, &m, &e), ERR_INVALID);
    csr_free(&train);
}

/* Scores are sums of similarities to the user's items; training items are
 * skipped; short lists are topped up from the fallback (popularity
 * [0, 1, 2, 3]: 3, 2, 2, 1 buyers). */
Test(knn, recommends_by_summed_similarity) {
    csr train = tiny();
    knn_model m;
    err_t e;
    cr_assert_eq(knn_fit(&train, 2, 1, &m, &e), ERR_OK);
    eval_popular pop;
    cr_assert_eq(eval_popular_init(&train, &pop, &e), ERR_OK);
    uint32_t out[4];
    int pers = 0;
    /* u3 {0}: 1 (0.816), 2 (0.408); no fallback: just those. */
    cr_assert_eq(knn_recommend(&m, 3, 3, &train, out, &pers), 2);
    cr_expect(out[0] == 1 && out[1] == 2);
    cr_expect_eq(pers, 1);
    m.fallback = &pop;
    /* ... topped up with 3, the only popular item left. */
    cr_assert_eq(knn_recommend(&m, 3, 3, &train, out, &pers), 3);
    cr_expect(out[0] == 1 && out[1] == 2 && out[2] == 3);
    /* u0 {0, 1}: 2 gets 0.408 + 0.5 = 0.908 from both; then popularity. */
    cr_assert_eq(knn_recommend(&m, 0, 2, &train, out, &pers), 2);
    cr_expect(out[0] == 2 && out[1] == 3, "got %u, %u", out[0], out[1]);
    /* u2 {2, 3}: 1 (0.5, from 2's list); 3 and 2 are its own. */
    cr_assert_eq(knn_recommend(&m, 2, 2, &train, out, &pers), 2);
    cr_expect(out[0] == 1 && out[1] == 0);
    /* u4 has nothing: popularity only, not personalized. */
    cr_assert_eq(knn_recommend(&m, 4, 3, &train, out, &pers), 3);
    cr_expect(out[0] == 0 && out[1] == 1 && out[2] == 2);
    cr_expect_eq(pers, 0);
    cr_expect_eq(m.failed, 0);
    eval_popular_free(&pop);
    knn_free(&m);
    csr_free(&train);
}
