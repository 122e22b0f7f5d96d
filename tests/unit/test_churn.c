/* Unit tests of training/churn: ranking metrics with ties, Brier score and
 * calibration on hand examples; the logistic regression against a solution
 * computed independently (pure Python Newton, pasted) and by its gradient;
 * bands, tiers, segments and explanations; labels; the whole job on a
 * synthetic single-item shop and on tiny inputs; and the reference figures
 * on UCI Online Retail (skipped when the file is absent). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "churn.h"
#include "ingest.h"

#define DAY 86400
#define B 1700006400LL /* a UTC midnight */

/* scores 0.9 0.8 0.8 0.3 0.8 0.1 with labels 1 1 0 1 0 0.
 * ROC-AUC: positives 0.9, 0.8, 0.3 against negatives 0.8, 0.8, 0.1:
 *   0.9 beats 3; 0.8 ties two (2 x 1/2) and beats 0.1; 0.3 beats 0.1:
 *   (3 + 2 + 1) / 9 = 2/3.
 * PR-AUC (average precision), thresholds from the top:
 *   0.9: 1 of 1 right, recall +1/3 at precision 1;
 *   0.8 (one group: 1 positive, 2 negatives): precision 2/4, recall +1/3;
 *   0.3: precision 3/5, recall +1/3;  0.1 adds no recall.
 *   1/3 + 1/6 + 1/5 = 0.7. */
Test(churn, rank_metrics_with_ties) {
    double s[] = {0.9, 0.8, 0.8, 0.3, 0.8, 0.1};
    uint8_t y[] = {1, 1, 0, 1, 0, 0};
    double auc, ap;
    err_t e;
    cr_assert_eq(churn_rank_metrics(s, y, 6, &auc, &ap, &e), ERR_OK);
    cr_expect_float_eq(auc, 2.0 / 3.0, 1e-12);
    cr_expect_float_eq(ap, 0.7, 1e-12);
    /* Reversed scores: every strict pair flips, ties stay: (0 + 1 + 2) / 9. */
    for (int i = 0; i < 6; i++)
        s[i] = -s[i];
    cr_assert_eq(churn_rank_metrics(s, y, 6, &auc, NULL, &e), ERR_OK);
    cr_expect_float_eq(auc, 1.0 / 3.0, 1e-12);
    /* All tied: AUC 1/2, and one threshold at precision 3/6 for all recall. */
    double flat[6] = {0};
    cr_assert_eq(churn_rank_metrics(flat, y, 6, &auc, &ap, &e), ERR_OK);
    cr_expect_float_eq(auc, 0.5, 1e-12);
    cr_expect_float_eq(ap, 0.5, 1e-12);
    /* One class only: undefined. */
    uint8_t ones[3] = {1, 1, 1};
    cr_assert_eq(churn_rank_metrics(flat, ones, 3, &auc, &ap, &e), ERR_OK);
    cr_expect(isnan(auc) && isnan(ap));
}

/* Brier: (0.1^2 + 0.2^2 + 0.5^2) / 3 = 0.3 / 3 = 0.1.
 * Calibration of 0.05 0.15 0.15 1.0 0.95 with labels 0 1 0 1 0: bin 0 has
 * 0.05 (observed 0), bin 1 the two 0.15 (observed 1/2), bin 9 holds 0.95 and
 * 1.0 (the last bin includes 1; mean 0.975, observed 1/2). */
Test(churn, brier_and_calibration) {
    double p[] = {0.9, 0.2, 0.5};
    uint8_t y[] = {1, 0, 1};
    cr_expect_float_eq(churn_brier(p, y, 3), 0.1, 1e-12);
    cr_expect(isnan(churn_brier(p, y, 0)));
    double q[] = {0.05, 0.15, 0.15, 1.0, 0.95};
    uint8_t z[] = {0, 1, 0, 1, 0};
    churn_calib_bin bins[CHURN_CALIB_BINS];
    churn_calibration(q, z, 5, bins);
    cr_expect_eq(bins[0].n, 1);
    cr_expect_float_eq(bins[0].observed, 0, 1e-12);
    cr_expect_eq(bins[1].n, 2);
    cr_expect_float_eq(bins[1].mean_predicted, 0.15, 1e-12);
    cr_expect_float_eq(bins[1].observed, 0.5, 1e-12);
    cr_expect_eq(bins[9].n, 2);
    cr_expect_float_eq(bins[9].mean_predicted, 0.975, 1e-12);
    for (int b = 2; b < 9; b++)
        cr_expect(bins[b].n == 0 && isnan(bins[b].observed), "bin %d", b);
}

/* Weighted penalized gradient of the fit at its solution, in double, from
 * the definition in churn.h (independent of the fitting code). */
static void gradient(const churn_model *m, const float *x, const uint8_t *y, size_t n, double l2,
                     double g[CHURN_INPUTS + 1]) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++)
        pos += y[i];
    memset(g, 0, (CHURN_INPUTS + 1) * sizeof *g);
    for (size_t i = 0; i < n; i++) {
        double w = y[i] ? (double)n / (2.0 * pos) : (double)n / (2.0 * (n - pos));
        double r = w * (1 / (1 + exp(-churn_score(m, x + i * CHURN_INPUTS))) - y[i]);
        for (int j = 0; j < CHURN_INPUTS; j++)
            g[j] += r * (x[i * CHURN_INPUTS + j] - m->mean[j]) / m->scale[j];
        g[CHURN_INPUTS] += r;
    }
    for (int j = 0; j < CHURN_INPUTS; j++)
        g[j] += l2 * m->coef[j];
}

/* 12 rows, inputs 0 and 1 informative (the others constant), 5 churners:
 *   x0 = 0..11, x1 = 1 0 1 1 0 0 1 0 1 0 0 1, y = 0 0 0 1 0 1 0 0 1 0 1 1.
 * Reference from a pure-Python Newton on the same objective (population
 * standardization, weights 12/10 and 12/14, lambda 1, intercept free), run
 * once and pasted:
 *   coef 0.7935764532629305, 0.35612785219424103, intercept
 *   -0.06455402918764794; Platt (targets 6/7 and 1/9) a 1.07904258863501,
 *   b -0.29073153116940254. */
Test(churn, logistic_regression_matches_reference) {
    float x[12 * CHURN_INPUTS];
    uint8_t y[12] = {0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 1};
    int x1[12] = {1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1};
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < CHURN_INPUTS; j++)
            x[i * CHURN_INPUTS + j] = j == 0 ? (float)i : j == 1 ? (float)x1[i] : 7.0f;
    churn_model m;
    err_t e;
    cr_assert_eq(churn_fit(x, y, 12, 1.0, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect_float_eq(m.coef[0], 0.7935764532629305, 1e-5);
    cr_expect_float_eq(m.coef[1], 0.35612785219424103, 1e-5);
    cr_expect_float_eq(m.intercept, -0.06455402918764794, 1e-5);
    for (int j = 2; j < CHURN_INPUTS; j++)
        cr_expect_eq(m.coef[j], 0, "constant input %d", j);
    cr_expect_float_eq(m.platt_a, 1.07904258863501, 1e-5);
    cr_expect_float_eq(m.platt_b, -0.29073153116940254, 1e-5);
    double g[CHURN_INPUTS + 1];
    gradient(&m, x, y, 12, 1.0, g);
    for (int j = 0; j <= CHURN_INPUTS; j++)
        cr_expect(fabs(g[j]) < 1e-5, "gradient %d = %g", j, g[j]);
    /* Separable data stay finite (L2 and Platt's targets). */
    for (int i = 0; i < 12; i++)
        y[i] = i >= 6;
    cr_assert_eq(churn_fit(x, y, 12, 1.0, &m, &e), ERR_OK, "%s", e.msg);
    cr_expect(isfinite(m.coef[0]) && isfinite(m.platt_a) && isfinite(m.platt_b));
    cr_expect(churn_probability(&m, x + 11 * CHURN_INPUTS) > 0.8);
    cr_expect(churn_probability(&m, x) < 0.2);
    /* Too few of a class. */
    for (int i = 0; i < 12; i++)
        y[i] = i >= 8;
    cr_expect_eq(churn_fit(x, y, 12, 1.0, &m, &e), ERR_INVALID);
    cr_expect_not_null(strstr(e.msg, "4 churned"), "%s", e.msg);
}

Test(churn, bands_and_tiers) {
    float bands[2] = {0.4f, 0.7f}, tiers[4] = {3000, 8000, 20000, 50000};
    cr_expect_eq(churn_band(0.0, bands), CHURN_BAND_LIGHT);
    cr_expect_eq(churn_band(0.39, bands), CHURN_BAND_LIGHT);
    cr_expect_eq(churn_band(0.4f, bands), CHURN_BAND_MEDIUM);
    cr_expect_eq(churn_band(0.69, bands), CHURN_BAND_MEDIUM);
    cr_expect_eq(churn_band(0.7f, bands), CHURN_BAND_HEAVY);
    cr_expect_eq(churn_band(1.0, bands), CHURN_BAND_HEAVY);
    cr_expect_eq(churn_tier(0, tiers), CHURN_TIER_ORDINARY);
    cr_expect_eq(churn_tier(2999.99, tiers), CHURN_TIER_ORDINARY);
    cr_expect_eq(churn_tier(3000, tiers), CHURN_TIER_BRONZE);
    cr_expect_eq(churn_tier(8000, tiers), CHURN_TIER_SILVER);
    cr_expect_eq(churn_tier(49999, tiers), CHURN_TIER_GOLD);
    cr_expect_eq(churn_tier(1e9, tiers), CHURN_TIER_DIAMOND);
    cr_expect_str_eq(model_churn_tier_name(CHURN_TIER_DIAMOND), "diamond");
    cr_expect_str_eq(model_churn_band_name(CHURN_BAND_HEAVY), "heavy");
}

/* 10 active users and one inactive. With n = 10 the quintile of mid-rank k
 * is 1 + floor((k - 0.5) / 2): ranks 1-2 -> 1, 3-4 -> 2, ..., 9-10 -> 5.
 * Recency 10 (u + 1) days: u0, u1 -> r 5; u2, u3 -> 4; u4, u5 -> 3;
 * u6, u7 -> 2; u8, u9 -> 1. Orders and monetary give these ranks:
 *   user        0  1  2  3  4  5  6  7  8  9
 *   orders      1  9  7  6  2  5  4  8 10  3   -> f 1 5 4 3 1 3 2 4 5 2
 *   monetary    4 10  6  3  7  5  2  9  8  1   -> m 2 5 3 2 4 3 1 5 4 1
 * Segments (first rule that matches, churn.h):
 *   u0 r5 f1: promising          u1 r5 f5 m5: high-value active
 *   u2 r4 f4 m3: mid-value       u3 r4 f3 m2: low-value
 *   u4 r3 f1 m4: not promising (r < 4), high-value
 *   u5 r3 m3: mid-value          u6 r2 f2 m1: dormant
 *   u7 r2 f4: at-risk            u8 r1 f5: at-risk   u9 r1 f2 m1: dormant */
Test(churn, segments_follow_the_quantile_rules) {
    float x[11 * FEAT_COUNT] = {0};
    uint8_t active[11] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    int orders[10] = {1, 9, 7, 6, 2, 5, 4, 8, 10, 3}, money[10] = {4, 10, 6, 3, 7, 5, 2, 9, 8, 1};
    for (int u = 0; u < 10; u++) {
        x[u * FEAT_COUNT + FEAT_RECENCY_DAYS] = 10.0f * (float)(u + 1);
        x[u * FEAT_COUNT + FEAT_ORDERS] = (float)orders[u];
        x[u * FEAT_COUNT + FEAT_MONETARY] = 100.0f * (float)money[u];
    }
    feat_matrix f = {.n_users = 11, .t = 0, .x = x, .active = active, .n_active = 10};
    uint8_t seg[11];
    err_t e;
    cr_assert_eq(churn_segments(&f, seg, &e), ERR_OK);
    uint8_t want[11] = {CHURN_SEG_PROMISING,
                        CHURN_SEG_HIGH_VALUE_ACTIVE,
                        CHURN_SEG_MID_VALUE_ACTIVE,
                        CHURN_SEG_LOW_VALUE_ACTIVE,
                        CHURN_SEG_HIGH_VALUE_ACTIVE,
                        CHURN_SEG_MID_VALUE_ACTIVE,
                        CHURN_SEG_DORMANT,
                        CHURN_SEG_AT_RISK,
                        CHURN_SEG_AT_RISK,
                        CHURN_SEG_DORMANT,
                        CHURN_NONE};
    for (int u = 0; u < 11; u++)
        cr_expect_eq(seg[u], want[u], "user %d: %s", u,
                     seg[u] < CHURN_SEGMENTS ? model_churn_segment_name(seg[u]) : "none");
    /* Ties share the mid-rank: with equal orders and spend everyone has
     * f = m = 3 (mid-rank 5.5), so r alone decides: r <= 2 dormant, else
     * mid-value (f 3 is not "few orders"). */
    for (int u = 0; u < 10; u++) {
        x[u * FEAT_COUNT + FEAT_ORDERS] = 2;
        x[u * FEAT_COUNT + FEAT_MONETARY] = 50;
    }
    cr_assert_eq(churn_segments(&f, seg, &e), ERR_OK);
    for (int u = 0; u < 10; u++)
        cr_expect_eq(seg[u], u >= 6 ? CHURN_SEG_DORMANT : CHURN_SEG_MID_VALUE_ACTIVE, "tie %d", u);
}

/* coef 2, -1, 0.5 on inputs 0..2 (means 0, scales 1, 2, 1), the rest 0;
 * inputs 1, 3, -4: contributions 2, -1.5, -2: by |.| input 0 (2), input 2
 * (-2; tie broken by index), input 1 (-1.5), then the zeros. */
Test(churn, top_factors) {
    churn_model m = {0};
    for (int j = 0; j < CHURN_INPUTS; j++)
        m.scale[j] = 1;
    m.coef[0] = 2, m.coef[1] = -1, m.coef[2] = 0.5, m.scale[1] = 2;
    float x[CHURN_INPUTS] = {1, 3, -4};
    uint32_t idx[CHURN_INPUTS + 2];
    double c[CHURN_INPUTS + 2];
    cr_assert_eq(churn_top_factors(&m, x, 3, idx, c), 3);
    cr_expect(idx[0] == 0 && idx[1] == 2 && idx[2] == 1);
    cr_expect(c[0] == 2 && c[1] == -2 && c[2] == -1.5);
    cr_expect_eq(churn_top_factors(&m, x, CHURN_INPUTS + 2, idx, NULL), CHURN_INPUTS);
}

static void add(ev_set *s, const char *user, const char *item, int64_t ts) {
    err_t e;
    cr_assert_eq(ev_set_add(s, user, strlen(user), item, strlen(item), ts, 1, 2, &e), ERR_OK);
}

/* Cutoff day 100, horizon 30 days: a buys on day 50 and 110 (stays), b on
 * day 50 and 130 (day 130 is the first day after the window: churned), c on
 * day 100 exactly (not before the cutoff: inactive, label 0), d on day 99
 * only (churned). */
Test(churn, labels) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    add(&s, "a", "X", B + 50 * DAY);
    add(&s, "a", "X", B + 110 * DAY);
    add(&s, "b", "X", B + 50 * DAY);
    add(&s, "b", "X", B + 130 * DAY);
    add(&s, "c", "X", B + 100 * DAY);
    add(&s, "d", "X", B + 99 * DAY);
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    feat_matrix f;
    cr_assert_eq(feat_compute(&s, start, B + 100 * DAY, NULL, &f, &e), ERR_OK);
    uint8_t y[4];
    churn_labels(&s, start, &f, 30 * DAY, y);
    cr_expect(y[0] == 0 && y[1] == 1 && y[2] == 0 && y[3] == 1);
    cr_expect(!f.active[2]);
    feat_matrix_free(&f);
    free(start);
    ev_set_free(&s);
}

/* A deterministic one-item shop over 400 days: each of n users starts on a
 * day in 0..199 and buys every 3..42 days (jittered); half of them stop on
 * a random day. */
static void synthetic_shop(ev_set *s, uint32_t n) {
    err_t e;
    cr_assert_eq(ev_set_init(s, &e), ERR_OK);
    uint64_t r = 12345;
#define NEXT(m) ((r = r * 6364136223846793005ULL + 1442695040888963407ULL) >> 33) % (m)
    for (uint32_t u = 0; u < n; u++) {
        char id[16];
        snprintf(id, sizeof id, "u%u", u);
        int64_t day = (int64_t)NEXT(200), gap = 3 + (int64_t)NEXT(40);
        int64_t stop = NEXT(2) ? 400 : day + 1 + (int64_t)NEXT(400);
        for (; day < stop && day < 400; day += gap / 2 + (int64_t)NEXT((uint64_t)gap + 1))
            add(s, id, "only", B + day * DAY + (int64_t)NEXT(DAY));
    }
#undef NEXT
}

Test(churn, run_on_a_single_item_shop) {
    ev_set s;
    synthetic_shop(&s, 400);
    churn_params p;
    churn_params_init(&p);
    churn_result r;
    err_t e;
    char *text = NULL;
    size_t len = 0;
    FILE *report = open_memstream(&text, &len);
    cr_assert_eq(churn_run(&s, &p, report, &r, &e), ERR_OK, "%s", e.msg);
    fclose(report);
    cr_expect_not_null(strstr(text, "ROC-AUC"), "%s", text);
    cr_expect_not_null(strstr(text, "recency alone"), "%s", text);
    free(text);
    /* Stopping shows in recency against each user's own rhythm, so the
     * model must rank well (it reaches 0.96 here; recency alone 0.95). */
    cr_expect_gt(r.eval.auc, 0.9, "AUC %g", r.eval.auc);
    cr_expect_lt(r.eval.brier, r.eval.base_brier);
    cr_expect_eq(r.n_users, 400);
    cr_expect_eq(r.scored_at - r.eval.t_valid, 90 * DAY);
    for (uint32_t u = 0; u < r.n_users; u++) {
        cr_assert(r.probability[u] >= 0 && r.probability[u] <= 1, "user %u", u);
        cr_assert(r.band[u] < CHURN_BANDS && r.segment[u] < CHURN_SEGMENTS, "user %u", u);
        cr_assert_eq(r.tier[u], CHURN_TIER_ORDINARY); /* at most 2 x 134 orders spent */
        cr_assert_eq(r.inputs[u * CHURN_INPUTS + CHURN_IN_LOG_BREADTH], (float)log1p(1.0));
    }
    /* The served model is at its optimum: gradient ~ 0 on the refit data
     * (features at the validation cutoff). */
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    feat_matrix f;
    cr_assert_eq(feat_compute(&s, start, r.eval.t_valid, NULL, &f, &e), ERR_OK);
    uint8_t *lab = malloc(f.n_users), *y = malloc(f.n_active);
    float *x = malloc((size_t)f.n_active * CHURN_INPUTS * sizeof *x);
    churn_labels(&s, start, &f, 90 * DAY, lab);
    size_t n = 0;
    for (uint32_t u = 0; u < f.n_users; u++)
        if (f.active[u]) {
            churn_inputs(f.x + (size_t)u * FEAT_COUNT, x + n * CHURN_INPUTS);
            y[n++] = lab[u];
        }
    double g[CHURN_INPUTS + 1];
    gradient(&r.model, x, y, n, p.l2, g);
    for (int j = 0; j <= CHURN_INPUTS; j++)
        cr_expect(fabs(g[j]) < 1e-4, "gradient %d = %g", j, g[j]);
    free(lab);
    free(y);
    free(x);
    free(start);
    feat_matrix_free(&f);
    churn_result_free(&r);
    ev_set_free(&s);
}

Test(churn, tiny_inputs_get_a_clear_message) {
    churn_params p;
    churn_params_init(&p);
    churn_result r;
    err_t e;
    ev_set s;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    cr_expect_eq(churn_run(&s, &p, NULL, &r, &e), ERR_INVALID); /* no events */
    add(&s, "a", "X", B);
    cr_expect_eq(churn_run(&s, &p, NULL, &r, &e), ERR_INVALID);
    cr_expect_not_null(strstr(e.msg, "too little history"), "%s", e.msg);
    /* Long enough, but three users cannot make both classes. */
    add(&s, "a", "X", B + 300 * DAY);
    add(&s, "b", "X", B + 10 * DAY);
    add(&s, "c", "X", B + 20 * DAY);
    cr_expect_eq(churn_run(&s, &p, NULL, &r, &e), ERR_INVALID);
    cr_expect_not_null(strstr(e.msg, "too few users for a validation split"), "%s", e.msg);
    p.bands[0] = 0.8f; /* above the heavy threshold */
    cr_expect_eq(churn_run(&s, &p, NULL, &r, &e), ERR_INVALID);
    ev_set_free(&s);
}

/* The target of the issue on UCI Online Retail: validation cutoff 90 days
 * before the last invoice, model trained 90 days earlier. The field notes
 * measured recency alone at 0.683 and an sklearn logistic regression on
 * similar features at 0.738. */
Test(churn, online_retail_reference) {
    const char *dir = getenv("RECD_SHARED_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/online_retail_uci/online_retail.csv", dir ? dir : "");
    FILE *probe = dir ? fopen(path, "r") : NULL;
    if (!probe) cr_skip_test("%s is absent (set RECD_SHARED_DATA)", path);
    fclose(probe);
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    ingest_options o;
    ingest_options_init(&o);
    o.user_col = "CustomerID";
    o.item_col = "StockCode";
    o.time_col = "InvoiceDate";
    o.quantity_col = "Quantity";
    o.price_col = "UnitPrice";
    ingest_stats st;
    cr_assert_eq(ingest_csv_file(path, &o, &s, &st, &e), ERR_OK, "%s", e.msg);
    churn_params p;
    churn_params_init(&p);
    churn_result r;
    cr_assert_eq(churn_run(&s, &p, stderr, &r, &e), ERR_OK, "%s", e.msg);
    cr_expect_geq(r.eval.auc, 0.73, "model AUC %g", r.eval.auc);
    cr_expect_gt(r.eval.auc, r.eval.recency_auc);
    cr_expect_float_eq(r.eval.recency_auc, 0.683, 0.005, "recency AUC %g", r.eval.recency_auc);
    cr_expect_lt(r.eval.brier, r.eval.base_brier);
    cr_expect_eq(r.n_users, 4339);
    churn_result_free(&r);
    ev_set_free(&s);
}
