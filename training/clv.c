/* clv: BG/NBD and Gamma-Gamma, see clv.h. */
#include "clv.h"

#include "churn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CLV_DAY 86400.0
#define CLV_MAX_DIM 4
#define CLV_NM_ITERS 4000
#define CLV_NM_RESTARTS 20
#define CLV_HYP_TERMS 100000

double clv_bgnbd_loglik(const clv_bgnbd *m, double x, double tx, double T) {
    double r = m->r, al = m->alpha, a = m->a, b = m->b;
    if (!(r > 0 && al > 0 && a > 0 && b > 0)) return -INFINITY;
    double a1 = lgamma(r + x) - lgamma(r) + r * log(al);
    double a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
    double a3 = -(r + x) * log(al + T);
    if (x <= 0) return a1 + a2 + a3;
    double a4 = log(a) - log(b + x - 1) - (r + x) * log(al + tx);
    /* log(e^a3 + e^a4) without overflow. */
    double hi = a3 > a4 ? a3 : a4, lo = a3 > a4 ? a4 : a3;
    return a1 + a2 + hi + log1p(exp(lo - hi));
}

/* a / (b + x - 1) ((alpha + T) / (alpha + tx))^(r + x): the odds of having
 * dropped out against being alive, 0 for x = 0 (a member drops out only
 * after a repeat purchase). */
static double clv_dead_odds(const clv_bgnbd *m, double x, double tx, double T) {
    if (x <= 0) return 0;
    return m->a / (m->b + x - 1) * exp((m->r + x) * log((m->alpha + T) / (m->alpha + tx)));
}

double clv_p_alive(const clv_bgnbd *m, double x, double tx, double T) {
    return 1.0 / (1.0 + clv_dead_odds(m, x, tx, T));
}

/* Gauss's 2F1(a, b; c; z) for 0 <= z < 1 by its power series, whose terms
 * shrink by about z each once k passes a, b, c. */
static double clv_hyp2f1(double a, double b, double c, double z) {
    double term = 1, sum = 1;
    for (int k = 0; k < CLV_HYP_TERMS; k++) {
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z;
        sum += term;
        if (fabs(term) < 1e-16 * fabs(sum)) break;
    }
    return sum;
}

double clv_expected_orders(const clv_bgnbd *m, double x, double tx, double T, double t) {
    double r = m->r, al = m->alpha, a = m->a, b = m->b;
    if (a == 1 || a + b + x - 1 <= 0 || t < 0) return NAN;
    if (t == 0) return 0;
    double z = t / (al + T + t);
    double head = (a + b + x - 1) / (a - 1);
    double tail = 1 - exp((r + x) * log((al + T) / (al + T + t))) *
                          clv_hyp2f1(r + x, b + x, a + b + x - 1, z);
    return head * tail / (1 + clv_dead_odds(m, x, tx, T));
}

double clv_gg_loglik(const clv_gg *g, double x, double mx) {
    double p = g->p, q = g->q, gm = g->gamma;
    if (!(p > 0 && q > 0 && gm > 0 && mx > 0 && x >= 1)) return -INFINITY;
    return lgamma(p * x + q) - lgamma(p * x) - lgamma(q) + q * log(gm) + (p * x - 1) * log(mx) +
           p * x * log(x) - (p * x + q) * log(gm + x * mx);
}

double clv_gg_expected_value(const clv_gg *g, double x, double mx) {
    if (x <= 0) return g->q > 1 ? g->p * g->gamma / (g->q - 1) : NAN;
    return g->p * (g->gamma + x * mx) / (g->p * x + g->q - 1);
}

/* --- maximum likelihood ----------------------------------------------------- */

/* Minus the mean log-likelihood at the parameters exp(theta). */
typedef double (*clv_cost_fn)(const double *theta, const clv_data *d);

static double clv_bgnbd_cost(const double *th, const clv_data *d) {
    clv_bgnbd m = {exp(th[0]), exp(th[1]), exp(th[2]), exp(th[3])};
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!d->active[i]) continue;
        sum += clv_bgnbd_loglik(&m, d->x[i], d->tx[i], d->T[i]);
        n++;
    }
    double c = -sum / (double)n;
    return isfinite(c) ? c : INFINITY;
}

static double clv_gg_cost(const double *th, const clv_data *d) {
    clv_gg g = {exp(th[0]), exp(th[1]), exp(th[2])};
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!d->active[i] || d->x[i] < 1 || !(d->value[i] > 0)) continue;
        sum += clv_gg_loglik(&g, d->x[i], d->value[i]);
        n++;
    }
    double c = -sum / (double)n;
    return isfinite(c) ? c : INFINITY;
}

/* Nelder-Mead (reflection 1, expansion 2, contraction 1/2, shrink 1/2) from
 * th with a simplex of steps 0.5, restarted from the best point until a
 * whole run improves the cost by less than 1e-12: a restart undoes a
 * simplex that collapsed before the optimum. Leaves the best point in th and
 * returns its cost. */
static double clv_minimize(clv_cost_fn f, const clv_data *d, int dim, double *th) {
    double best = f(th, d);
    for (int restart = 0; restart < CLV_NM_RESTARTS; restart++) {
        double s[CLV_MAX_DIM + 1][CLV_MAX_DIM], fs[CLV_MAX_DIM + 1];
        for (int i = 0; i <= dim; i++) {
            memcpy(s[i], th, sizeof s[i]);
            if (i) s[i][i - 1] += 0.5;
            fs[i] = f(s[i], d);
        }
        for (int it = 0; it < CLV_NM_ITERS; it++) {
            /* Order: lo best, hi worst, nh second worst. */
            int lo = 0, hi = 0;
            for (int i = 1; i <= dim; i++) {
                if (fs[i] < fs[lo]) lo = i;
                if (fs[i] > fs[hi]) hi = i;
            }
            int nh = lo;
            for (int i = 0; i <= dim; i++)
                if (i != hi && fs[i] > fs[nh]) nh = i;
            if (fabs(fs[hi] - fs[lo]) < 1e-13 * (1 + fabs(fs[lo]))) break;
            double c[CLV_MAX_DIM] = {0}, xr[CLV_MAX_DIM], xe[CLV_MAX_DIM], xc[CLV_MAX_DIM];
            for (int i = 0; i <= dim; i++)
                if (i != hi)
                    for (int j = 0; j < dim; j++)
                        c[j] += s[i][j] / dim;
            for (int j = 0; j < dim; j++)
                xr[j] = 2 * c[j] - s[hi][j];
            double fr = f(xr, d);
            if (fr < fs[lo]) {
                for (int j = 0; j < dim; j++)
                    xe[j] = 3 * c[j] - 2 * s[hi][j];
                double fe = f(xe, d);
                if (fe < fr) {
                    memcpy(s[hi], xe, sizeof xe);
                    fs[hi] = fe;
                } else {
                    memcpy(s[hi], xr, sizeof xr);
                    fs[hi] = fr;
                }
                continue;
            }
            if (fr < fs[nh]) {
                memcpy(s[hi], xr, sizeof xr);
                fs[hi] = fr;
                continue;
            }
            /* Contract towards the better of the worst point and its reflection. */
            const double *from = fr < fs[hi] ? xr : s[hi];
            double ff = fr < fs[hi] ? fr : fs[hi];
            for (int j = 0; j < dim; j++)
                xc[j] = (c[j] + from[j]) / 2;
            double fc = f(xc, d);
            if (fc < ff) {
                memcpy(s[hi], xc, sizeof xc);
                fs[hi] = fc;
                continue;
            }
            for (int i = 0; i <= dim; i++) {
                if (i == lo) continue;
                for (int j = 0; j < dim; j++)
                    s[i][j] = (s[i][j] + s[lo][j]) / 2;
                fs[i] = f(s[i], d);
            }
        }
        int lo = 0;
        for (int i = 1; i <= dim; i++)
            if (fs[i] < fs[lo]) lo = i;
        double gain = best - fs[lo];
        if (fs[lo] < best) {
            best = fs[lo];
            memcpy(th, s[lo], (size_t)dim * sizeof *th);
        }
        if (!(gain > 1e-12)) break;
    }
    return best;
}

int clv_bgnbd_fit(const clv_data *d, clv_bgnbd *m, err_t *e) {
    size_t n = 0, repeat = 0;
    double sum_x = 0, sum_T = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!d->active[i]) continue;
        n++;
        repeat += d->x[i] > 0;
        sum_x += d->x[i];
        sum_T += d->T[i];
    }
    if (n < 2 || repeat == 0)
        return err_set(e, ERR_INVALID,
                       "clv: BG/NBD needs at least 2 members and a repeat purchase (%zu members, "
                       "%zu with repeat purchases)",
                       n, repeat);
    /* Start at a Poisson rate of the mean x / T with unit shape, and a mean
     * drop-out probability of 1/2. */
    double th[CLV_MAX_DIM] = {0, log((sum_T + 1) / (sum_x + 1)), 0, 0};
    double cost = clv_minimize(clv_bgnbd_cost, d, 4, th);
    if (!isfinite(cost)) return err_set(e, ERR_INTERNAL, "clv: BG/NBD likelihood is not finite");
    *m = (clv_bgnbd){exp(th[0]), exp(th[1]), exp(th[2]), exp(th[3])};
    return ERR_OK;
}

int clv_gg_fit(const clv_data *d, clv_gg *g, err_t *e) {
    size_t n = 0;
    double sum = 0;
    for (size_t i = 0; i < d->n; i++)
        if (d->active[i] && d->x[i] >= 1 && d->value[i] > 0) {
            n++;
            sum += d->value[i];
        }
    if (n < 2)
        return err_set(e, ERR_INVALID,
                       "clv: Gamma-Gamma needs at least 2 repeat buyers with positive spend, not "
                       "%zu",
                       n);
    /* Start at p = 1, q = 2: a population mean p gamma / (q - 1) = gamma of
     * the observed mean. */
    double th[CLV_MAX_DIM] = {0, log(2.0), log(sum / (double)n)};
    double cost = clv_minimize(clv_gg_cost, d, 3, th);
    if (!isfinite(cost))
        return err_set(e, ERR_INTERNAL, "clv: Gamma-Gamma likelihood is not finite");
    *g = (clv_gg){exp(th[0]), exp(th[1]), exp(th[2])};
    return ERR_OK;
}

/* --- summaries from events ------------------------------------------------- */

static double clv_event_value(const ev_event *ev) {
    return isnan(ev->price) ? (double)ev->quantity : (double)ev->quantity * ev->price;
}

int clv_summarize(const ev_set *s, const uint64_t *user_start, int64_t t, clv_data *out, err_t *e) {
    memset(out, 0, sizeof *out);
    size_t n = idmap_size(s->users);
    out->n = n;
    out->x = calloc(n + 1, sizeof *out->x);
    out->tx = calloc(n + 1, sizeof *out->tx);
    out->T = calloc(n + 1, sizeof *out->T);
    out->value = calloc(n + 1, sizeof *out->value);
    out->active = calloc(n + 1, 1);
    if (!out->x || !out->tx || !out->T || !out->value || !out->active) {
        clv_data_free(out);
        return err_set(e, ERR_NOMEM, "clv: out of memory for %zu members", n);
    }
    for (size_t u = 0; u < n; u++) {
        int64_t first_day = INT64_MIN, day = INT64_MIN, first_ts = 0;
        double repeats = 0, repeat_value = 0, last = 0;
        for (uint64_t i = user_start[u]; i < user_start[u + 1]; i++) {
            const ev_event *ev = &s->events[i];
            if (ev->ts >= t) break;
            if (ev->type != EV_TYPE_PURCHASE) continue;
            int64_t d = ev->ts >= 0 ? ev->ts / 86400 : (ev->ts - 86399) / 86400;
            if (first_day == INT64_MIN) {
                first_day = day = d;
                first_ts = ev->ts;
                continue;
            }
            if (d != day) {
                day = d;
                repeats++;
                last = (double)(ev->ts - first_ts) / CLV_DAY;
            }
            if (d != first_day) repeat_value += clv_event_value(ev);
        }
        if (first_day == INT64_MIN) continue;
        out->active[u] = 1;
        out->n_active++;
        out->x[u] = repeats;
        out->tx[u] = last;
        out->T[u] = (double)(t - first_ts) / CLV_DAY;
        out->value[u] = repeats > 0 ? repeat_value / repeats : 0;
    }
    return ERR_OK;
}

uint32_t clv_purchase_days(const ev_set *s, const uint64_t *user_start, uint32_t u, int64_t from,
                           int64_t to) {
    uint32_t days = 0;
    int64_t day = INT64_MIN;
    for (uint64_t i = user_start[u]; i < user_start[u + 1]; i++) {
        const ev_event *ev = &s->events[i];
        if (ev->ts < from || ev->type != EV_TYPE_PURCHASE) continue;
        if (ev->ts >= to) break;
        int64_t d = ev->ts >= 0 ? ev->ts / 86400 : (ev->ts - 86399) / 86400;
        if (d != day) days++;
        day = d;
    }
    return days;
}

void clv_data_free(clv_data *d) {
    free(d->x);
    free(d->tx);
    free(d->T);
    free(d->value);
    free(d->active);
    memset(d, 0, sizeof *d);
}

/* --- the offline job -------------------------------------------------------- */

/* Expected spend over the horizon: expected purchases x expected value of
 * one (the population mean for a member with no repeat purchase). */
static double clv_member_value(const clv_gg *g, const clv_data *d, size_t u, double orders) {
    double v = clv_gg_expected_value(g, d->x[u], d->value[u]);
    return isfinite(v) ? orders * v : 0;
}

static double clv_spend(const ev_set *s, const uint64_t *user_start, uint32_t u, int64_t from,
                        int64_t to) {
    double sum = 0;
    for (uint64_t i = user_start[u]; i < user_start[u + 1]; i++) {
        const ev_event *ev = &s->events[i];
        if (ev->ts >= to) break;
        if (ev->ts >= from && ev->type == EV_TYPE_PURCHASE) sum += clv_event_value(ev);
    }
    return sum;
}

/* Fills out->eval at cutoff c; 1 when it was skipped (too little before c). */
static int clv_validate(const ev_set *s, const uint64_t *user_start, int64_t c, double h_days,
                        clv_eval *v, err_t *e) {
    clv_data d;
    clv_bgnbd m;
    clv_gg g;
    err_t why;
    int rc = clv_summarize(s, user_start, c, &d, e);
    if (rc) return rc;
    if (clv_bgnbd_fit(&d, &m, &why) || clv_gg_fit(&d, &g, &why)) {
        clv_data_free(&d);
        return -1;
    }
    double *score = malloc((d.n_active + 1) * sizeof *score);
    uint8_t *y = malloc(d.n_active + 1);
    if (!score || !y) {
        free(score);
        free(y);
        clv_data_free(&d);
        return err_set(e, ERR_NOMEM, "clv: out of memory");
    }
    size_t k = 0;
    int64_t end = c + (int64_t)(h_days * CLV_DAY);
    for (size_t u = 0; u < d.n; u++) {
        if (!d.active[u]) continue;
        double want = clv_purchase_days(s, user_start, (uint32_t)u, c, end);
        double pred = clv_expected_orders(&m, d.x[u], d.tx[u], d.T[u], h_days);
        if (!isfinite(pred)) pred = 0;
        double base = d.T[u] > 0 ? d.x[u] / d.T[u] * h_days : 0;
        v->actual += want;
        v->predicted += pred;
        v->baseline += base;
        v->mae += fabs(pred - want);
        v->baseline_mae += fabs(base - want);
        v->rmse += (pred - want) * (pred - want);
        v->baseline_rmse += (base - want) * (base - want);
        v->value_actual += clv_spend(s, user_start, (uint32_t)u, c, end);
        v->value_predicted += clv_member_value(&g, &d, u, pred);
        int row = d.x[u] >= CLV_CALIB_ROWS - 1 ? CLV_CALIB_ROWS - 1 : (int)d.x[u];
        v->calib_n[row]++;
        v->calib_actual[row] += want;
        v->calib_predicted[row] += pred;
        v->calib_baseline[row] += base;
        score[k] = 1 - clv_p_alive(&m, d.x[u], d.tx[u], d.T[u]);
        y[k++] = want == 0;
    }
    v->n = (uint32_t)k;
    v->mae /= (double)k;
    v->baseline_mae /= (double)k;
    v->rmse = sqrt(v->rmse / (double)k);
    v->baseline_rmse = sqrt(v->baseline_rmse / (double)k);
    for (int r = 0; r < CLV_CALIB_ROWS; r++)
        if (v->calib_n[r]) {
            v->calib_actual[r] /= v->calib_n[r];
            v->calib_predicted[r] /= v->calib_n[r];
            v->calib_baseline[r] /= v->calib_n[r];
        }
    rc = churn_rank_metrics(score, y, k, &v->auc_p_alive, NULL, e);
    free(score);
    free(y);
    clv_data_free(&d);
    return rc;
}

static void clv_print(FILE *f, const clv_result *r, int validated, uint32_t horizon_days) {
    const clv_eval *v = &r->eval;
    fprintf(f,
            "clv: BG/NBD r %.4g alpha %.4g (days) a %.4g b %.4g; Gamma-Gamma p %.4g q %.4g "
            "gamma %.4g\n",
            r->bgnbd.r, r->bgnbd.alpha, r->bgnbd.a, r->bgnbd.b, r->gg.p, r->gg.q, r->gg.gamma);
    if (!validated) {
        fprintf(f, "clv: warning: validation skipped: too few repeat buyers before the validation "
                   "cutoff\n");
        return;
    }
    fprintf(f,
            "clv: validation (fit before the cutoff, %u members, next %u days): purchase days "
            "actual %.0f, BG/NBD %.1f, past rate %.1f; MAE per member BG/NBD %.4f, past rate "
            "%.4f; RMSE BG/NBD %.4f, past rate %.4f\n",
            v->n, horizon_days, v->actual, v->predicted, v->baseline, v->mae, v->baseline_mae,
            v->rmse, v->baseline_rmse);
    fprintf(f, "clv: spend actual %.2f, BG/NBD x Gamma-Gamma %.2f\n", v->value_actual,
            v->value_predicted);
    fprintf(f, "clv: ROC-AUC as a churn score: 1 - P(alive) %.4f, logistic churn model %.4f\n",
            v->auc_p_alive, v->auc_logistic);
    fprintf(f, "clv: calibration by past repeat purchases (mean purchase days per member)\n");
    fprintf(f, "  %-6s %8s %8s %8s %9s\n", "repeat", "members", "actual", "BG/NBD", "past rate");
    for (int k = 0; k < CLV_CALIB_ROWS; k++)
        if (v->calib_n[k])
            fprintf(f, "  %-2d%-4s %8u %8.3f %8.3f %9.3f\n", k, k == CLV_CALIB_ROWS - 1 ? "+" : "",
                    v->calib_n[k], v->calib_actual[k], v->calib_predicted[k], v->calib_baseline[k]);
}

int clv_run(const ev_set *s, const uint64_t *user_start, int64_t t_valid, int64_t t_score,
            uint32_t horizon_days, double auc_logistic, FILE *report, clv_result *out, err_t *e) {
    memset(out, 0, sizeof *out);
    double h = horizon_days;
    int rc = clv_validate(s, user_start, t_valid, h, &out->eval, e);
    if (rc > 0) return rc;
    int validated = rc == 0;
    out->eval.auc_logistic = auc_logistic;
    clv_data d;
    if ((rc = clv_summarize(s, user_start, t_score, &d, e))) return rc;
    if ((rc = clv_bgnbd_fit(&d, &out->bgnbd, e)) || (rc = clv_gg_fit(&d, &out->gg, e))) {
        clv_data_free(&d);
        return rc;
    }
    out->n_users = (uint32_t)d.n;
    out->p_alive = malloc((d.n + 1) * sizeof *out->p_alive);
    out->expected_orders = malloc((d.n + 1) * sizeof *out->expected_orders);
    out->expected_value = malloc((d.n + 1) * sizeof *out->expected_value);
    if (!out->p_alive || !out->expected_orders || !out->expected_value) {
        clv_data_free(&d);
        clv_result_free(out);
        return err_set(e, ERR_NOMEM, "clv: out of memory");
    }
    for (size_t u = 0; u < d.n; u++) {
        if (!d.active[u]) {
            out->p_alive[u] = NAN;
            out->expected_orders[u] = out->expected_value[u] = NAN;
            continue;
        }
        double orders = clv_expected_orders(&out->bgnbd, d.x[u], d.tx[u], d.T[u], h);
        if (!isfinite(orders)) orders = 0;
        out->p_alive[u] = (float)clv_p_alive(&out->bgnbd, d.x[u], d.tx[u], d.T[u]);
        out->expected_orders[u] = orders;
        out->expected_value[u] = clv_member_value(&out->gg, &d, u, orders);
    }
    clv_data_free(&d);
    if (report) clv_print(report, out, validated, horizon_days);
    return ERR_OK;
}

void clv_result_free(clv_result *r) {
    free(r->p_alive);
    free(r->expected_orders);
    free(r->expected_value);
    memset(r, 0, sizeof *r);
}
