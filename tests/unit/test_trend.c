/* Unit tests of server/trend: the decayed counts on a case with a known
 * answer, events out of order, the horizon, the mapping to a model's items
 * and concurrent adders. */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_fixture.h"
#include "trend.h"

#define HOUR 3600
#define T0 1700000000

static trend *open_trend(double half_life) {
    float w[EV_TYPE_END] = {0};
    w[EV_TYPE_VIEW] = 0.1f;
    w[EV_TYPE_ADD_TO_CART] = 0.3f;
    w[EV_TYPE_PURCHASE] = 1.0f;
    trend *t;
    err_t e = {0};
    cr_assert_eq(trend_open(half_life, w, &t, &e), ERR_OK, "%s", e.msg);
    return t;
}

static evstore_event event(const char *item, uint32_t type, int64_t ts) {
    return (evstore_event){"u", 1, item, strlen(item), type, ts, 1, 0};
}

/* The slots' values as of now, in slot order (identity map). */
static void values(trend *t, int64_t now, float *out, uint32_t n) {
    uint32_t map[8];
    for (uint32_t s = 0; s < n; s++)
        map[s] = s;
    trend_fill(t, now, map, n, out);
}

Test(trend, decays_by_half_every_half_life) {
    trend *t = open_trend(HOUR);
    /* a: a purchase at T0 and one an hour later; b: a view and a cart at T0. */
    evstore_event evs[] = {event("a", EV_TYPE_PURCHASE, T0), event("b", EV_TYPE_VIEW, T0),
                           event("b", EV_TYPE_ADD_TO_CART, T0),
                           event("a", EV_TYPE_PURCHASE, T0 + HOUR)};
    cr_assert_eq(trend_add(t, evs, 4, T0 + HOUR), 0);
    cr_assert_eq(trend_size(t), 2);
    float v[2];
    values(t, T0 + HOUR, v, 2);
    cr_expect_float_eq(v[0], 1.5f, 1e-6); /* 1 + 1/2 */
    cr_expect_float_eq(v[1], 0.2f, 1e-6); /* 0.4 / 2 */
    values(t, T0 + 3 * HOUR, v, 2);
    cr_expect_float_eq(v[0], 0.375f, 1e-6);
    cr_expect_float_eq(v[1], 0.05f, 1e-6);
    /* Quiet for longer than the horizon: no longer trending. */
    v[0] = v[1] = -1;
    values(t, T0 + HOUR + (TREND_HORIZON_HALF_LIVES + 1) * HOUR, v, 2);
    cr_expect_eq(v[0], -1);
    cr_expect_eq(v[1], -1);
    trend_close(t);
}

Test(trend, order_of_events_does_not_matter) {
    trend *a = open_trend(HOUR), *b = open_trend(HOUR);
    evstore_event evs[] = {event("x", EV_TYPE_PURCHASE, T0 + 600),
                           event("x", EV_TYPE_VIEW, T0 + 3000), event("x", EV_TYPE_PURCHASE, T0)};
    trend_add(a, evs, 3, T0 + HOUR);
    for (int i = 2; i >= 0; i--)
        trend_add(b, &evs[i], 1, T0 + HOUR);
    float va, vb;
    values(a, T0 + 2 * HOUR, &va, 1);
    values(b, T0 + 2 * HOUR, &vb, 1);
    double want =
        exp2(-(7200.0 - 600) / HOUR) + 0.1 * exp2(-(7200.0 - 3000) / HOUR) + exp2(-7200.0 / HOUR);
    cr_expect_float_eq(va, (float)want, 1e-6);
    cr_expect_float_eq(vb, (float)want, 1e-6);
    trend_close(a);
    trend_close(b);
}

Test(trend, future_old_and_weightless_events) {
    trend *t = open_trend(HOUR);
    evstore_event evs[] = {
        event("ahead", EV_TYPE_PURCHASE, T0 + 80000), /* counts as now */
        event("old", EV_TYPE_PURCHASE, T0 - (TREND_HORIZON_HALF_LIVES + 1) * HOUR),
        event("fav", EV_TYPE_FAVORITE, T0), /* weight 0 here */
    };
    trend_add(t, evs, 3, T0);
    cr_assert_eq(trend_size(t), 1);
    float v;
    values(t, T0, &v, 1);
    cr_expect_float_eq(v, 1.0f, 1e-6);
    trend_close(t);
}

Test(trend, bad_options_are_refused) {
    float w[EV_TYPE_END] = {0};
    trend *t;
    err_t e = {0};
    cr_expect_eq(trend_open(0, w, &t, &e), ERR_INVALID);
    cr_expect_eq(trend_open(NAN, w, &t, &e), ERR_INVALID);
    w[EV_TYPE_VIEW] = -1;
    cr_expect_eq(trend_open(HOUR, w, &t, &e), ERR_INVALID);
}

Test(trend, slots_map_to_a_models_items) {
    char dir[PATH_MAX];
    fuzz_scratch_dir("test-trend", dir);
    model_meta meta;
    fuzz_publish_model(dir, &meta);
    model *m;
    err_t e = {0};
    cr_assert_eq(model_open(dir, &m, &e), ERR_OK, "%s", e.msg);
    trend *t = open_trend(HOUR);
    evstore_event evs[] = {event("i5", EV_TYPE_PURCHASE, T0),
                           event("unknown", EV_TYPE_PURCHASE, T0), event("i7", EV_TYPE_VIEW, T0)};
    trend_add(t, evs, 3, T0);
    uint32_t map[3];
    trend_map(t, m, 0, trend_size(t), map);
    cr_expect_eq(map[0], 5);
    cr_expect_eq(map[1], TREND_NO_ITEM);
    cr_expect_eq(map[2], 7);
    float scores[FUZZ_ITEMS];
    for (int i = 0; i < FUZZ_ITEMS; i++)
        scores[i] = -1;
    cr_expect_float_eq(trend_fill(t, T0, map, 3, scores), 1.0f, 1e-6);
    cr_expect_float_eq(scores[5], 1.0f, 1e-6);
    cr_expect_float_eq(scores[7], 0.1f, 1e-6);
    cr_expect_eq(scores[6], -1);
    trend_close(t);
    model_close(m);
}

#define ADDERS 4
#define ADDS 20000

static void *adder(void *p) {
    trend *t = p;
    char id[16];
    for (int i = 0; i < ADDS; i++) {
        snprintf(id, sizeof id, "i%d", i % 100);
        evstore_event ev = event(id, EV_TYPE_PURCHASE, T0);
        trend_add(t, &ev, 1, T0);
    }
    return NULL;
}

Test(trend, concurrent_adders_lose_nothing) {
    trend *t = open_trend(HOUR);
    pthread_t th[ADDERS];
    for (int i = 0; i < ADDERS; i++)
        pthread_create(&th[i], NULL, adder, t);
    for (int i = 0; i < ADDERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(trend_size(t), 100);
    float v[100];
    uint32_t map[100];
    for (uint32_t s = 0; s < 100; s++)
        map[s] = s;
    trend_fill(t, T0, map, 100, v);
    for (int s = 0; s < 100; s++)
        cr_expect_float_eq(v[s], ADDERS * ADDS / 100.0f, 1e-3);
    cr_expect_eq(trend_dropped(t), 0);
    trend_close(t);
}
