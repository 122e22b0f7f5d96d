/* Unit tests of training/clv: the BG/NBD likelihood, P(alive) and expected
 * purchases against direct numerical integration over (lambda, p); recovery
 * of the published CDNOW parameters from 20,000 simulated members over 39
 * weeks; Gamma-Gamma recovery; summaries of a tiny history. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "clv.h"

static const clv_bgnbd CDNOW = {0.2426, 4.4135, 0.7929, 2.4258};

/* The integrals over lambda ~ Gamma(r, alpha) and p ~ Beta(a, b) of
 *   alive = (1 - p)^x lambda^x e^(-lambda T)                (alive at T)
 *   dead  = p (1 - p)^(x - 1) lambda^x e^(-lambda tx)       (x > 0)
 *   ahead = alive (1 - e^(-lambda p t)) / p                 (purchases in (T, T + t])
 * by the midpoint rule after the substitutions p = w^(1/a), lambda =
 * v^(1/r), which turn the densities' singular factors p^(a-1) dp and
 * lambda^(r-1) dlambda into dw / a and dv / r; lambda is cut at 80 / alpha. */
static void integrate(const clv_bgnbd *m, double x, double tx, double T, double t, double *alive,
                      double *dead, double *ahead) {
    const int nw = 800, nv = 1600;
    double vmax = pow(80.0 / m->alpha, m->r);
    double norm = exp(m->r * log(m->alpha) - lgamma(m->r) -
                      (lgamma(m->a) + lgamma(m->b) - lgamma(m->a + m->b))) /
                  (m->a * m->r) * (1.0 / nw) * (vmax / nv);
    double sa = 0, sd = 0, sh = 0;
    for (int i = 0; i < nw; i++) {
        double p = pow((i + 0.5) / nw, 1 / m->a);
        double fp = pow(1 - p, m->b - 1);
        for (int j = 0; j < nv; j++) {
            double lam = pow((j + 0.5) / nv * vmax, 1 / m->r);
            double base = fp * pow(lam, x) * exp(-m->alpha * lam);
            double al = base * pow(1 - p, x) * exp(-lam * T);
            sa += al;
            if (x > 0) sd += base * p * pow(1 - p, x - 1) * exp(-lam * tx);
            sh += al * (-expm1(-lam * p * t)) / p;
        }
    }
    *alive = sa * norm;
    *dead = sd * norm;
    *ahead = sh * norm;
}

Test(clv, closed_forms_match_integration) {
    double cases[][4] = {{0, 0, 39, 39}, {2, 30.43, 38.86, 39}, {5, 10, 39, 20}, {1, 35, 36, 10}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        double x = cases[k][0], tx = cases[k][1], T = cases[k][2], t = cases[k][3];
        double alive, dead, ahead;
        integrate(&CDNOW, x, tx, T, t, &alive, &dead, &ahead);
        double ll = clv_bgnbd_loglik(&CDNOW, x, tx, T);
        cr_expect(fabs(ll - log(alive + dead)) < 2e-3, "case %zu: loglik %g, integral %g", k, ll,
                  log(alive + dead));
        double pa = clv_p_alive(&CDNOW, x, tx, T);
        cr_expect(fabs(pa - alive / (alive + dead)) < 2e-3, "case %zu: P(alive) %g, integral %g", k,
                  pa, alive / (alive + dead));
        double eo = clv_expected_orders(&CDNOW, x, tx, T, t);
        double want = ahead / (alive + dead);
        cr_expect(fabs(eo - want) < 2e-3 * (1 + want), "case %zu: E[orders] %g, integral %g", k, eo,
                  want);
    }
    /* The paper's worked example (section 5): x = 2, tx = 30.43, T = 38.86
     * weeks expects 1.226 purchases in the next 39 weeks. */
    cr_expect(fabs(clv_expected_orders(&CDNOW, 2, 30.43, 38.86, 39) - 1.226) < 2e-3);
    /* A member who never came back cannot have dropped out. */
    cr_expect_eq(clv_p_alive(&CDNOW, 0, 0, 39), 1.0);
}

/* splitmix64 and the samplers the simulation needs. */
static uint64_t rng_state = 20261202;
static double uniform(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(void) {
    return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
}
/* Gamma(shape, 1) by Marsaglia and Tsang, boosted by U^(1/shape) below 1. */
static double gamma1(double shape) {
    if (shape < 1) return gamma1(shape + 1) * pow(uniform(), 1 / shape);
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double z = normal(), v = 1 + c * z;
        if (v <= 0) continue;
        v = v * v * v;
        double u = uniform();
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v)) return d * v;
    }
}

/* d: n members from the CDNOW fit, each observed 39 weeks after the first
 * purchase: buy at rate lambda, drop out with probability p after each
 * repeat purchase. Values from Gamma-Gamma g. */
static void simulate(clv_data *d, size_t n, const clv_gg *g) {
    *d = (clv_data){n,
                    calloc(n, sizeof(double)),
                    calloc(n, sizeof(double)),
                    calloc(n, sizeof(double)),
                    calloc(n, sizeof(double)),
                    calloc(n, 1),
                    n};
    cr_assert(d->x && d->tx && d->T && d->value && d->active);
    for (size_t i = 0; i < n; i++) {
        double lam = gamma1(CDNOW.r) / CDNOW.alpha;
        double ga = gamma1(CDNOW.a), p = ga / (ga + gamma1(CDNOW.b));
        double nu = gamma1(g->q) / g->gamma;
        double t = 0, x = 0, tx = 0, spend = 0;
        for (;;) {
            t += -log(uniform()) / lam;
            if (t > 39) break;
            x++;
            tx = t;
            spend += gamma1(g->p) / nu;
            if (uniform() < p) break;
        }
        d->x[i] = x;
        d->tx[i] = tx;
        d->T[i] = 39;
        d->value[i] = x > 0 ? spend / x : 0;
        d->active[i] = 1;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Replicates of 20,000 members each, fitted apart, and every parameter's
 * median over them within 10% of the truth; every replicate's fit must be at
 * least as likely as the truth (it is the maximum). One fit of 20,000
 * members is itself a noisy estimate: over 25 replicates (median 0.2446,
 * 4.415, 0.789, 2.369 against the truth 0.2426, 4.4135, 0.7929, 2.4258;
 * unbiased) one fit's standard deviation was 2% of r, 3% of alpha, 7% of a
 * and 8.5% of b, so a single fit misses b by more than 10% about one time
 * in four. The median of 9 has a standard error near 1.25 x 8.5% / 3 =
 * 3.5% for b, which makes 10% a three-sigma bound whatever the seed.
 * Values from the CDNOW monetary fit (p = 6.25, q = 3.74, gamma = 15.44);
 * q and gamma trade off (only the population mean p gamma / (q - 1) is
 * sharp), so Gamma-Gamma is held to p within 20% and that mean within 10%. */
#define REPLICATES 9
Test(clv, recovers_cdnow_parameters_from_simulation) {
    const clv_gg gg = {6.25, 3.74, 15.44};
    double fit[4][REPLICATES], drop[REPLICATES], gp[REPLICATES], gmean[REPLICATES];
    for (int k = 0; k < REPLICATES; k++) {
        clv_data d;
        simulate(&d, 20000, &gg);
        clv_bgnbd m;
        clv_gg g;
        err_t e;
        cr_assert_eq(clv_bgnbd_fit(&d, &m, &e), ERR_OK, "%s", e.msg);
        cr_assert_eq(clv_gg_fit(&d, &g, &e), ERR_OK, "%s", e.msg);
        cr_log_info("replicate %d: BG/NBD r %.4f alpha %.4f a %.4f b %.4f; Gamma-Gamma p %.3f q "
                    "%.3f gamma %.3f",
                    k, m.r, m.alpha, m.a, m.b, g.p, g.q, g.gamma);
        double at_fit = 0, at_truth = 0;
        for (size_t i = 0; i < d.n; i++) {
            at_fit += clv_bgnbd_loglik(&m, d.x[i], d.tx[i], d.T[i]);
            at_truth += clv_bgnbd_loglik(&CDNOW, d.x[i], d.tx[i], d.T[i]);
        }
        cr_expect(at_fit >= at_truth);
        fit[0][k] = m.r;
        fit[1][k] = m.alpha;
        fit[2][k] = m.a;
        fit[3][k] = m.b;
        drop[k] = m.a / (m.a + m.b);
        gp[k] = g.p;
        gmean[k] = g.p * g.gamma / (g.q - 1);
        cr_expect(fabs(clv_gg_expected_value(&g, 0, 0) - gmean[k]) < 1e-9);
        clv_data_free(&d);
    }
    const double truth[4] = {CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b};
    const char *name[4] = {"r", "alpha", "a", "b"};
    for (int j = 0; j < 4; j++) {
        qsort(fit[j], REPLICATES, sizeof(double), cmp_double);
        double med = fit[j][REPLICATES / 2];
        cr_expect(fabs(med / truth[j] - 1) < 0.1, "%s: median %g, truth %g", name[j], med,
                  truth[j]);
    }
    /* a and b ride a ridge of equal mean drop-out probability a / (a + b),
     * which the data pin down much better than either. */
    qsort(drop, REPLICATES, sizeof(double), cmp_double);
    double want = CDNOW.a / (CDNOW.a + CDNOW.b);
    cr_expect(fabs(drop[REPLICATES / 2] / want - 1) < 0.05, "a / (a + b): median %g, truth %g",
              drop[REPLICATES / 2], want);
    qsort(gp, REPLICATES, sizeof(double), cmp_double);
    qsort(gmean, REPLICATES, sizeof(double), cmp_double);
    cr_expect(fabs(gp[REPLICATES / 2] / gg.p - 1) < 0.2, "p %g", gp[REPLICATES / 2]);
    double mean = gg.p * gg.gamma / (gg.q - 1);
    cr_expect(fabs(gmean[REPLICATES / 2] / mean - 1) < 0.1, "population mean %g vs %g",
              gmean[REPLICATES / 2], mean);
}

Test(clv, too_little_to_fit) {
    double x[2] = {0, 0}, tx[2] = {0, 0}, T[2] = {10, 10}, v[2] = {0, 0};
    uint8_t act[2] = {1, 1};
    clv_data d = {2, x, tx, T, v, act, 2};
    clv_bgnbd m;
    clv_gg g;
    err_t e;
    cr_expect_eq(clv_bgnbd_fit(&d, &m, &e), ERR_INVALID);
    cr_expect_eq(clv_gg_fit(&d, &g, &e), ERR_INVALID);
}

/* One member: purchases on days 0 (two lines), 0 again later the same day,
 * 3 and 10; the cutoff on day 10 leaves out day 10. Value 2 x 5 on day 3. */
Test(clv, summarize_counts_purchase_days) {
    ev_set s;
    err_t e;
    cr_assert_eq(ev_set_init(&s, &e), ERR_OK);
    const int64_t b = 1700006400LL;
    cr_assert_eq(ev_set_add(&s, "u", 1, "a", 1, b, 1, 3, &e), ERR_OK);
    cr_assert_eq(ev_set_add(&s, "u", 1, "b", 1, b + 3600, 1, 4, &e), ERR_OK);
    cr_assert_eq(ev_set_add(&s, "u", 1, "a", 1, b + 3 * 86400 + 7200, 2, 5, &e), ERR_OK);
    cr_assert_eq(ev_set_add(&s, "u", 1, "c", 1, b + 10 * 86400, 1, 1, &e), ERR_OK);
    uint64_t *start;
    cr_assert_eq(ev_set_sort_by_user_time(&s, EV_TIES_ASCENDING, &start, &e), ERR_OK);
    clv_data d;
    cr_assert_eq(clv_summarize(&s, start, b + 10 * 86400, &d, &e), ERR_OK);
    cr_expect_eq(d.n_active, 1);
    cr_expect_eq(d.x[0], 1);
    cr_expect_float_eq(d.tx[0], 3 + 2.0 / 24, 1e-9);
    cr_expect_float_eq(d.T[0], 10, 1e-9);
    cr_expect_float_eq(d.value[0], 10, 1e-9);
    cr_expect_eq(clv_purchase_days(&s, start, 0, b, b + 11 * 86400), 3);
    cr_expect_eq(clv_purchase_days(&s, start, 0, b + 86400, b + 11 * 86400), 2);
    clv_data_free(&d);
    free(start);
    ev_set_free(&s);
}
