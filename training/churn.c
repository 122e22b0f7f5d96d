#include "churn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linalg.h"

const char *const churn_input_names[CHURN_INPUTS] = {
    [CHURN_IN_LOG_RECENCY] = "log_recency_days",
    [CHURN_IN_LOG_ORDERS] = "log_orders",
    [CHURN_IN_LOG_PURCHASE_DAYS] = "log_purchase_days",
    [CHURN_IN_LOG_MONETARY] = "log_monetary",
    [CHURN_IN_LOG_MONETARY_PER_ORDER] = "log_monetary_per_order",
    [CHURN_IN_LOG_TENURE] = "log_tenure_days",
    [CHURN_IN_LOG_DAYS_30D] = "log_days_30d",
    [CHURN_IN_LOG_DAYS_90D] = "log_days_90d",
    [CHURN_IN_LOG_GAP_MEAN] = "log_gap_mean_days",
    [CHURN_IN_LOG_GAP_SD] = "log_gap_sd_days",
    [CHURN_IN_LOG_RECENCY_OVER_GAP] = "log_recency_over_gap",
    [CHURN_IN_ONE_DAY_BUYER] = "one_day_buyer",
    [CHURN_IN_LOG_TREND_30D] = "log_trend_30d",
    [CHURN_IN_LOG_TREND_90D] = "log_trend_90d",
    [CHURN_IN_LOG_BASKET] = "log_basket_lines",
    [CHURN_IN_LOG_BREADTH] = "log_breadth",
};
/* A gap or a repeated code in model.h's tables would leave the count
 * short of the last code + 1. */
_Static_assert((int)CHURN_BANDS == MODEL_CHURN_N_BANDS &&
                   (int)CHURN_SEGMENTS == MODEL_CHURN_N_SEGMENTS &&
                   (int)CHURN_TIERS == MODEL_CHURN_N_TIERS,
               "churn codes ascend from 0 without gaps");

/* Newton on a strictly convex objective converges quadratically; 100 steps
 * without meeting the tolerance means the data are broken, not slow. */
#define CHURN_MAX_NEWTON 100
#define CHURN_TOL 1e-9
#define CHURN_P (CHURN_INPUTS + 1) /* parameters: inputs, then the intercept */

void churn_params_init(churn_params *p) {
    memset(p, 0, sizeof *p);
    p->horizon_days = 90;
    p->l2 = 1.0;
    p->bands[0] = 0.4f;
    p->bands[1] = 0.7f;
    p->tiers[0] = 3000;
    p->tiers[1] = 8000;
    p->tiers[2] = 20000;
    p->tiers[3] = 50000;
    p->rule_months = 2;
    p->rule_drop = 0.3;
}

/* log1p keeps zeros at zero and tames the long right tails (a wholesaler's
 * spend, a ten-year tenure) that would otherwise own a linear model. */
static float lg(double v) {
    return (float)log1p(v > 0 ? v : 0);
}

void churn_inputs(const float *f, float *x) {
    double gap = f[FEAT_GAP_MEAN_DAYS];
    x[CHURN_IN_LOG_RECENCY] = lg(f[FEAT_RECENCY_DAYS]);
    x[CHURN_IN_LOG_ORDERS] = lg(f[FEAT_ORDERS]);
    x[CHURN_IN_LOG_PURCHASE_DAYS] = lg(f[FEAT_PURCHASE_DAYS]);
    x[CHURN_IN_LOG_MONETARY] = lg(f[FEAT_MONETARY]);
    x[CHURN_IN_LOG_MONETARY_PER_ORDER] = lg(f[FEAT_MONETARY_PER_ORDER]);
    x[CHURN_IN_LOG_TENURE] = lg(f[FEAT_TENURE_DAYS]);
    x[CHURN_IN_LOG_DAYS_30D] = lg(f[FEAT_DAYS_30D]);
    x[CHURN_IN_LOG_DAYS_90D] = lg(f[FEAT_DAYS_90D]);
    x[CHURN_IN_LOG_GAP_MEAN] = lg(gap);
    x[CHURN_IN_LOG_GAP_SD] = lg(sqrt(f[FEAT_GAP_VAR_DAYS]));
    /* "Overdue": time since the last purchase in units of the user's own
     * rhythm. Undefined for a one-day buyer, whose indicator carries it. */
    x[CHURN_IN_LOG_RECENCY_OVER_GAP] = gap > 0 ? lg(f[FEAT_RECENCY_DAYS] / gap) : 0;
    x[CHURN_IN_ONE_DAY_BUYER] = f[FEAT_PURCHASE_DAYS] == 1;
    x[CHURN_IN_LOG_TREND_30D] = lg(f[FEAT_TREND_30D]);
    x[CHURN_IN_LOG_TREND_90D] = lg(f[FEAT_TREND_90D]);
    x[CHURN_IN_LOG_BASKET] = lg(f[FEAT_BASKET_LINES]);
    x[CHURN_IN_LOG_BREADTH] = lg(f[FEAT_BREADTH]);
}

void churn_labels(const ev_set *s, const uint64_t *user_start, const feat_matrix *f,
                  int64_t horizon_seconds, uint8_t *y) {
    int64_t c = f->t, end = f->t + horizon_seconds;
    for (uint32_t u = 0; u < f->n_users; u++) {
        y[u] = 0;
        if (!f->active[u]) continue;
        const ev_event *ev = s->events + user_start[u], *last = s->events + user_start[u + 1];
        /* Events are sorted by time: skip those before c, then one look. */
        while (ev < last && ev->ts < c)
            ev++;
        y[u] = !(ev < last && ev->ts < end);
    }
}

/* ---- logistic regression ---------------------------------------------- */

/* log(1 + e^z) without overflow. */
static double softplus(double z) {
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

static double sigmoid(double z) {
    return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

/* Weighted penalized log-loss of beta on z (n x CHURN_P, last column 1):
 * sum_i w_i (softplus(eta_i) - y_i eta_i) + l2/2 |beta without intercept|^2.
 * Fills eta. */
static double objective(const float *z, const uint8_t *y, const double *w, size_t n,
                        const double *beta, double l2, double *eta) {
    double f = 0;
    for (size_t i = 0; i < n; i++) {
        const float *zi = z + i * CHURN_P;
        double s = 0;
        for (size_t j = 0; j < CHURN_P; j++)
            s += zi[j] * beta[j];
        eta[i] = s;
        f += w[i] * (softplus(s) - y[i] * s);
    }
    for (size_t j = 0; j < CHURN_INPUTS; j++)
        f += 0.5 * l2 * beta[j] * beta[j];
    return f;
}

/* Minimizes objective() by damped Newton. The gradient is exact (double),
 * so the fixed point is the true optimum; the Hessian is X^T W X from
 * cblas_ssyrk in float, which only affects the path to it. zs is scratch of
 * n x CHURN_P floats. Returns ERR_OK or ERR_INTERNAL. */
static int newton(const float *z, const uint8_t *y, const double *w, size_t n, double l2,
                  double *beta, float *zs, double *eta, uint32_t *iterations, err_t *e) {
    double f = objective(z, y, w, n, beta, l2, eta);
    for (uint32_t it = 1; it <= CHURN_MAX_NEWTON; it++) {
        double g[CHURN_P] = {0}, h[CHURN_P * CHURN_P];
        float hf[CHURN_P * CHURN_P];
        for (size_t i = 0; i < n; i++) {
            double p = sigmoid(eta[i]), r = w[i] * (p - y[i]);
            double sq = sqrt(w[i] * p * (1 - p));
            const float *zi = z + i * CHURN_P;
            float *si = zs + i * CHURN_P;
            for (size_t j = 0; j < CHURN_P; j++) {
                g[j] += r * zi[j];
                si[j] = (float)(sq * zi[j]);
            }
        }
        cblas_ssyrk(CblasRowMajor, CblasLower, CblasTrans, CHURN_P, (int)n, 1.0f, zs, CHURN_P, 0.0f,
                    hf, CHURN_P);
        for (size_t j = 0; j < CHURN_P * CHURN_P; j++)
            h[j] = hf[j];
        for (size_t j = 0; j < CHURN_INPUTS; j++) {
            g[j] += l2 * beta[j];
            h[j * CHURN_P + j] += l2;
        }
        /* A tiny ridge on every diagonal entry keeps the intercept's pivot
         * positive when all probabilities saturate. */
        for (size_t j = 0; j < CHURN_P; j++)
            h[j * CHURN_P + j] += 1e-9 * (double)n;
        double step[CHURN_P];
        memcpy(step, g, sizeof step);
        if (linalg_solve_spd(h, step, CHURN_P))
            return err_set(e, ERR_INTERNAL, "churn: Hessian not positive definite at step %u", it);
        double gmax = 0, smax = 0;
        for (size_t j = 0; j < CHURN_P; j++) {
            gmax = fmax(gmax, fabs(g[j]));
            smax = fmax(smax, fabs(step[j]));
        }
        /* Halve the step until the objective does not grow: plain Newton
         * can overshoot far from the optimum when probabilities saturate. */
        double t = 1, trial[CHURN_P], f_new = f;
        for (int k = 0; k < 40; k++, t *= 0.5) {
            for (size_t j = 0; j < CHURN_P; j++)
                trial[j] = beta[j] - t * step[j];
            f_new = objective(z, y, w, n, trial, l2, eta);
            if (f_new <= f) break;
        }
        if (f_new > f) { /* no descent left at float-Hessian precision: optimum */
            objective(z, y, w, n, beta, l2, eta);
            *iterations = it;
            return ERR_OK;
        }
        memcpy(beta, trial, sizeof trial);
        double df = f - f_new;
        f = f_new;
        if (smax * t < CHURN_TOL || gmax < CHURN_TOL * (double)n || df < 1e-14 * (1 + fabs(f))) {
            *iterations = it;
            return ERR_OK;
        }
    }
    return err_set(e, ERR_INTERNAL, "churn: logistic regression did not converge in %d steps",
                   CHURN_MAX_NEWTON);
}

/* Platt scaling: fits p = sigmoid(a s + b) to the labels by unweighted
 * maximum likelihood with Platt's targets (n+ + 1) / (n+ + 2) and
 * 1 / (n- + 2) instead of 1 and 0, which keep a finite when the scores
 * separate the classes. Two parameters: Newton with halving, in double. */
static void platt(const double *s, const uint8_t *y, size_t n, size_t n_pos, double *a, double *b) {
    double hi = (n_pos + 1.0) / (n_pos + 2.0), lo = 1.0 / (n - n_pos + 2.0);
    double pa = 1, pb = 0, f = 0;
    for (size_t i = 0; i < n; i++) {
        double z = pa * s[i] + pb, tg = y[i] ? hi : lo;
        f += softplus(z) - tg * z;
    }
    for (int it = 0; it < CHURN_MAX_NEWTON; it++) {
        double ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
        for (size_t i = 0; i < n; i++) {
            double z = pa * s[i] + pb, p = sigmoid(z), tg = y[i] ? hi : lo, v = p * (1 - p);
            ga += (p - tg) * s[i];
            gb += p - tg;
            haa += v * s[i] * s[i];
            hab += v * s[i];
            hbb += v;
        }
        double det = haa * hbb - hab * hab;
        if (!(det > 0)) break;
        double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
        double t = 1, na = pa, nb = pb, fn = f;
        for (int k = 0; k < 40; k++, t *= 0.5) {
            na = pa - t * da;
            nb = pb - t * db;
            fn = 0;
            for (size_t i = 0; i < n; i++) {
                double z = na * s[i] + nb, tg = y[i] ? hi : lo;
                fn += softplus(z) - tg * z;
            }
            if (fn <= f) break;
        }
        if (fn > f) break;
        double df = f - fn;
        pa = na;
        pb = nb;
        f = fn;
        if (df < 1e-14 * (1 + fabs(f))) break;
    }
    *a = pa;
    *b = pb;
}

int churn_fit(const float *x, const uint8_t *y, size_t n, double l2, churn_model *m, err_t *e) {
    memset(m, 0, sizeof *m);
    size_t n_pos = 0;
    for (size_t i = 0; i < n; i++)
        n_pos += y[i] != 0;
    if (n_pos < CHURN_MIN_CLASS || n - n_pos < CHURN_MIN_CLASS)
        return err_set(e, ERR_INVALID,
                       "churn: %zu churned and %zu retained users; need at least %d of each", n_pos,
                       n - n_pos, CHURN_MIN_CLASS);
    if (!(l2 >= 0)) return err_set(e, ERR_INVALID, "churn: l2 must be >= 0, not %g", l2);
    /* Standardize so that one l2 fits every input's units and the Newton
     * system is well conditioned; a constant input gets scale 1 and stays
     * an all-zero column, whose coefficient the penalty holds at 0. */
    for (size_t j = 0; j < CHURN_INPUTS; j++) {
        double mean = 0, m2 = 0;
        for (size_t i = 0; i < n; i++) {
            double v = x[i * CHURN_INPUTS + j], d = v - mean;
            if (!isfinite(v))
                return err_set(e, ERR_INVALID, "churn: input %s of row %zu is not finite",
                               churn_input_names[j], i);
            mean += d / (double)(i + 1);
            m2 += d * (v - mean);
        }
        double sd = sqrt(m2 / (double)n);
        m->mean[j] = mean;
        m->scale[j] = sd > 1e-12 ? sd : 1;
    }
    float *z = malloc(n * CHURN_P * sizeof *z), *zs = malloc(n * CHURN_P * sizeof *zs);
    double *w = malloc(n * sizeof *w), *eta = malloc(n * sizeof *eta);
    int rc = ERR_OK;
    if (!z || !zs || !w || !eta) {
        rc = err_set(e, ERR_NOMEM, "churn: out of memory for %zu rows", n);
        goto out;
    }
    double w_pos = (double)n / (2.0 * (double)n_pos),
           w_neg = (double)n / (2.0 * (double)(n - n_pos));
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < CHURN_INPUTS; j++)
            z[i * CHURN_P + j] = (float)((x[i * CHURN_INPUTS + j] - m->mean[j]) / m->scale[j]);
        z[i * CHURN_P + CHURN_INPUTS] = 1;
        w[i] = y[i] ? w_pos : w_neg;
    }
    double beta[CHURN_P] = {0};
    if ((rc = newton(z, y, w, n, l2, beta, zs, eta, &m->iterations, e))) goto out;
    for (size_t j = 0; j < CHURN_INPUTS; j++)
        m->coef[j] = beta[j];
    m->intercept = beta[CHURN_INPUTS];
    platt(eta, y, n, n_pos, &m->platt_a, &m->platt_b);
out:
    free(z);
    free(zs);
    free(w);
    free(eta);
    return rc;
}

double churn_score(const churn_model *m, const float *x) {
    double s = m->intercept;
    for (size_t j = 0; j < CHURN_INPUTS; j++)
        s += m->coef[j] * ((x[j] - m->mean[j]) / m->scale[j]);
    return s;
}

double churn_probability(const churn_model *m, const float *x) {
    return sigmoid(m->platt_a * churn_score(m, x) + m->platt_b);
}

/* ---- metrics ---------------------------------------------------------- */

static const double *rank_score;

static int cmp_by_score(const void *pa, const void *pb) {
    double a = rank_score[*(const size_t *)pa], b = rank_score[*(const size_t *)pb];
    return (a > b) - (a < b);
}

int churn_rank_metrics(const double *score, const uint8_t *y, size_t n, double *roc_auc,
                       double *pr_auc, err_t *e) {
    size_t n_pos = 0;
    for (size_t i = 0; i < n; i++)
        n_pos += y[i] != 0;
    size_t n_neg = n - n_pos;
    if (n_pos == 0 || n_neg == 0) {
        if (roc_auc) *roc_auc = NAN;
        if (pr_auc) *pr_auc = NAN;
        return ERR_OK;
    }
    size_t *order = malloc(n * sizeof *order);
    if (!order) return err_set(e, ERR_NOMEM, "churn: out of memory ranking %zu scores", n);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    /* qsort has no context argument; metrics run single-threaded. */
    rank_score = score;
    qsort(order, n, sizeof *order, cmp_by_score);
    /* Ascending groups of equal scores: each positive beats the negatives
     * of lower groups and ties half of its own group's negatives. */
    double wins = 0, neg_below = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos = 0, neg = 0;
        for (; j < n && score[order[j]] == score[order[i]]; j++)
            y[order[j]] ? pos++ : neg++;
        wins += (double)pos * (neg_below + 0.5 * (double)neg);
        neg_below += (double)neg;
        i = j;
    }
    /* Descending groups = thresholds from the highest score down. */
    double ap = 0, tp = 0, fp = 0;
    for (size_t i = n; i > 0;) {
        size_t j = i, pos = 0, neg = 0;
        for (; j > 0 && score[order[j - 1]] == score[order[i - 1]]; j--)
            y[order[j - 1]] ? pos++ : neg++;
        tp += (double)pos;
        fp += (double)neg;
        ap += (double)pos / (double)n_pos * (tp / (tp + fp));
        i = j;
    }
    free(order);
    if (roc_auc) *roc_auc = wins / ((double)n_pos * (double)n_neg);
    if (pr_auc) *pr_auc = ap;
    return ERR_OK;
}

double churn_brier(const double *p, const uint8_t *y, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (p[i] - (y[i] != 0)) * (p[i] - (y[i] != 0));
    return s / (double)n;
}

void churn_calibration(const double *p, const uint8_t *y, size_t n,
                       churn_calib_bin bins[CHURN_CALIB_BINS]) {
    double sum_p[CHURN_CALIB_BINS] = {0}, sum_y[CHURN_CALIB_BINS] = {0};
    memset(bins, 0, CHURN_CALIB_BINS * sizeof *bins);
    for (size_t i = 0; i < n; i++) {
        int b = (int)(p[i] * CHURN_CALIB_BINS);
        b = b < 0 ? 0 : b >= CHURN_CALIB_BINS ? CHURN_CALIB_BINS - 1 : b;
        bins[b].n++;
        sum_p[b] += p[i];
        sum_y[b] += y[i] != 0;
    }
    for (int b = 0; b < CHURN_CALIB_BINS; b++) {
        bins[b].mean_predicted = bins[b].n ? sum_p[b] / bins[b].n : NAN;
        bins[b].observed = bins[b].n ? sum_y[b] / bins[b].n : NAN;
    }
}

/* ---- bands, tiers, segments, explanations ----------------------------- */

uint8_t churn_band(double p, const float bands[CHURN_BANDS - 1]) {
    uint8_t b = CHURN_BAND_LIGHT;
    while (b < CHURN_BANDS - 1 && p >= bands[b])
        b++;
    return b;
}

uint8_t churn_tier(double spend, const float tiers[CHURN_TIERS - 1]) {
    uint8_t t = CHURN_TIER_ORDINARY;
    while (t < CHURN_TIERS - 1 && spend >= tiers[t])
        t++;
    return t;
}

/* Quintile score 1..5 of every listed user's value (higher value = higher
 * score) by mid-rank, so tied users share one score. idx: the n active
 * users; score indexed like idx. */
static void quintiles(const double *value, size_t *idx, size_t n, uint8_t *score_by_user) {
    rank_score = value;
    qsort(idx, n, sizeof *idx, cmp_by_score);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && value[idx[j]] == value[idx[i]])
            j++;
        double mid = 0.5 * (double)(i + j - 1) + 1; /* 1-based mid-rank of the group */
        int q = 1 + (int)(5.0 * (mid - 0.5) / (double)n);
        for (size_t k = i; k < j; k++)
            score_by_user[idx[k]] = (uint8_t)(q > 5 ? 5 : q);
        i = j;
    }
}

int churn_segments(const feat_matrix *f, uint8_t *segment, err_t *e) {
    uint32_t n_users = f->n_users;
    double *v = malloc(((size_t)n_users + 1) * 3 * sizeof *v);
    size_t *idx = malloc(((size_t)f->n_active + 1) * sizeof *idx);
    uint8_t *q = malloc(((size_t)n_users + 1) * 3);
    if (!v || !idx || !q) {
        free(v);
        free(idx);
        free(q);
        return err_set(e, ERR_NOMEM, "churn: out of memory segmenting %u users", n_users);
    }
    static const int col[3] = {FEAT_RECENCY_DAYS, FEAT_ORDERS, FEAT_MONETARY};
    for (int c = 0; c < 3; c++) {
        size_t n = 0;
        for (uint32_t u = 0; u < n_users; u++) {
            double x = f->x[(size_t)u * FEAT_COUNT + col[c]];
            v[(size_t)c * n_users + u] = c == 0 ? -x : x; /* recent = high R */
            if (f->active[u]) idx[n++] = u;
        }
        quintiles(v + (size_t)c * n_users, idx, n, q + (size_t)c * n_users);
    }
    for (uint32_t u = 0; u < n_users; u++) {
        if (!f->active[u]) {
            segment[u] = CHURN_NONE;
            continue;
        }
        int r = q[u], fr = q[n_users + u], m = q[2 * (size_t)n_users + u];
        segment[u] = r <= 2 ? (fr >= 4 || m >= 4 ? CHURN_SEG_AT_RISK : CHURN_SEG_DORMANT)
                     : r >= 4 && fr <= 2 ? CHURN_SEG_PROMISING
                     : m >= 4            ? CHURN_SEG_HIGH_VALUE_ACTIVE
                     : m == 3            ? CHURN_SEG_MID_VALUE_ACTIVE
                                         : CHURN_SEG_LOW_VALUE_ACTIVE;
    }
    free(v);
    free(idx);
    free(q);
    return ERR_OK;
}

uint32_t churn_top_factors(const churn_model *m, const float *x, uint32_t k, uint32_t *idx,
                           double *contrib) {
    double c[CHURN_INPUTS];
    uint32_t order[CHURN_INPUTS];
    for (uint32_t j = 0; j < CHURN_INPUTS; j++) {
        c[j] = m->coef[j] * ((x[j] - m->mean[j]) / m->scale[j]);
        order[j] = j;
    }
    /* Insertion sort of 16 entries by |contribution| descending, ties by
     * index so explanations are stable. */
    for (uint32_t i = 1; i < CHURN_INPUTS; i++)
        for (uint32_t j = i; j > 0 && fabs(c[order[j]]) > fabs(c[order[j - 1]]); j--) {
            uint32_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    if (k > CHURN_INPUTS) k = CHURN_INPUTS;
    for (uint32_t i = 0; i < k; i++) {
        idx[i] = order[i];
        if (contrib) contrib[i] = c[order[i]];
    }
    return k;
}

/* ---- the whole job ---------------------------------------------------- */

void churn_result_free(churn_result *r) {
    free(r->inputs);
    free(r->probability);
    free(r->band);
    free(r->segment);
    free(r->tier);
    free(r->recency_days);
    free(r->frequency);
    free(r->monetary);
    memset(r, 0, sizeof *r);
}

static const char *fmt_time(int64_t t, char buf[32]) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

/* Inputs and labels of the users active at f's cutoff, packed: x gets
 * n_active rows, y n_active labels, users their indexes. */
static void pack(const feat_matrix *f, const uint8_t *label, float *x, uint8_t *y,
                 uint32_t *users) {
    size_t n = 0;
    for (uint32_t u = 0; u < f->n_users; u++) {
        if (!f->active[u]) continue;
        churn_inputs(f->x + (size_t)u * FEAT_COUNT, x + n * CHURN_INPUTS);
        y[n] = label[u];
        users[n] = u;
        n++;
    }
}

/* ERR_INVALID with a message saying what to change unless the packed
 * labels y of the `active` users at cutoff c (days_before the end of the
 * data) hold CHURN_MIN_CLASS of each class. */
static int check_cutoff(const char *what, int64_t c, uint32_t days_before, uint32_t active,
                        const uint8_t *y, err_t *e) {
    uint32_t churned = 0;
    for (uint32_t i = 0; i < active; i++)
        churned += y[i];
    if (churned >= CHURN_MIN_CLASS && active - churned >= CHURN_MIN_CLASS) return ERR_OK;
    char buf[32];
    return err_set(e, ERR_INVALID,
                   "churn: too few users for a validation split: at the %s cutoff %s (%u days "
                   "before the end of the data) %u users are active, %u churned and %u stayed; "
                   "need at least %d of each (use a longer history or a shorter "
                   "--churn-horizon)",
                   what, fmt_time(c, buf), days_before, active, churned, active - churned,
                   CHURN_MIN_CLASS);
}

static void print_report(FILE *f, const churn_params *p, const churn_result *r) {
    const churn_eval *v = &r->eval;
    char b1[32], b2[32], b3[32];
    fprintf(f,
            "churn: horizon %u days; train at %s (%u active, %u churned), validate at %s (%u "
            "active, %u churned), score at %s (%u users)\n",
            p->horizon_days, fmt_time(v->t_train, b1), v->n_train, v->churned_train,
            fmt_time(v->t_valid, b2), v->n_valid, v->churned_valid, fmt_time(v->t_score, b3),
            r->n_users);
    fprintf(f, "churn: validation (model trained at the earlier cutoff):\n");
    fprintf(f, "churn:   %-34s %8s %8s %8s\n", "", "ROC-AUC", "PR-AUC", "Brier");
    fprintf(f, "churn:   %-34s %8.4f %8.4f %8.4f\n", "logistic regression (calibrated)", v->auc,
            v->pr_auc, v->brier);
    fprintf(f, "churn:   %-34s %8.4f %8.4f %8s\n", "recency alone", v->recency_auc,
            v->recency_pr_auc, "-");
    fprintf(f, "churn:   %-34s %8.4f %8.4f %8.4f\n", "constant (training churn rate)", 0.5,
            v->n_valid ? (double)v->churned_valid / v->n_valid : NAN, v->base_brier);
    fprintf(f,
            "churn:   rule \"frequency down %.0f%% in each of the last %u months\": flagged %u, "
            "precision %.4f, recall %.4f\n",
            p->rule_drop * 100, p->rule_months, v->rule_flagged, v->rule_precision, v->rule_recall);
    fprintf(f, "churn: calibration at validation: %-11s %7s %10s %9s\n", "bin", "users",
            "predicted", "observed");
    for (int b = 0; b < CHURN_CALIB_BINS; b++)
        fprintf(f, "churn:                            [%.1f, %.1f%c %7u %10.4f %9.4f\n", b / 10.0,
                (b + 1) / 10.0, b == CHURN_CALIB_BINS - 1 ? ']' : ')', v->calib[b].n,
                v->calib[b].mean_predicted, v->calib[b].observed);
    fprintf(f,
            "churn: served model (refit at the validation cutoff): intercept %.4f, Platt a %.4f "
            "b %.4f; coefficients per standard deviation:\n",
            r->model.intercept, r->model.platt_a, r->model.platt_b);
    for (int j = 0; j < CHURN_INPUTS; j++)
        fprintf(f, "churn:   %-26s %+8.4f\n", churn_input_names[j], r->model.coef[j]);
    uint32_t bands[CHURN_BANDS] = {0}, segs[CHURN_SEGMENTS] = {0}, tiers[CHURN_TIERS] = {0};
    for (uint32_t u = 0; u < r->n_users; u++) {
        if (r->band[u] == CHURN_NONE) continue;
        bands[r->band[u]]++;
        segs[r->segment[u]]++;
        tiers[r->tier[u]]++;
    }
    fprintf(f, "churn: risk bands at %s (light < %.2f <= medium < %.2f <= heavy):", b3, r->bands[0],
            r->bands[1]);
    for (int b = 0; b < CHURN_BANDS; b++)
        fprintf(f, " %s %u", model_churn_band_name(b), bands[b]);
    fprintf(f, "\nchurn: segments:");
    for (int s = 0; s < CHURN_SEGMENTS; s++)
        fprintf(f, " %s %u;", model_churn_segment_name(s), segs[s]);
    fprintf(f, "\nchurn: tiers by spend in the last 365 days (%g / %g / %g / %g):", r->tiers[0],
            r->tiers[1], r->tiers[2], r->tiers[3]);
    for (int t = 0; t < CHURN_TIERS; t++)
        fprintf(f, " %s %u", model_churn_tier_name(t), tiers[t]);
    fprintf(f, "\n");
}

/* Validation of model m at features fv with labels y: fills the metrics of
 * v. x, y, users: the packed active rows of fv. */
static int validate(const churn_model *m, const churn_params *p, const ev_set *s,
                    const uint64_t *user_start, const feat_matrix *fv, const float *x,
                    const uint8_t *y, const uint32_t *users, size_t n, double base_rate,
                    churn_eval *v, err_t *e) {
    double *prob = malloc((n + 1) * sizeof *prob), *rec = malloc((n + 1) * sizeof *rec);
    uint8_t *flag = malloc((size_t)fv->n_users + 1);
    int rc = ERR_OK;
    if (!prob || !rec || !flag) {
        rc = err_set(e, ERR_NOMEM, "churn: out of memory validating %zu users", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        prob[i] = churn_probability(m, x + i * CHURN_INPUTS);
        rec[i] = fv->x[(size_t)users[i] * FEAT_COUNT + FEAT_RECENCY_DAYS];
    }
    if ((rc = churn_rank_metrics(prob, y, n, &v->auc, &v->pr_auc, e)) ||
        (rc = churn_rank_metrics(rec, y, n, &v->recency_auc, &v->recency_pr_auc, e)))
        goto out;
    v->brier = churn_brier(prob, y, n);
    for (size_t i = 0; i < n; i++)
        prob[i] = base_rate;
    v->base_brier = churn_brier(prob, y, n);
    for (size_t i = 0; i < n; i++)
        prob[i] = churn_probability(m, x + i * CHURN_INPUTS);
    churn_calibration(prob, y, n, v->calib);
    if ((rc = feat_decline_rule(s, user_start, fv->t, p->rule_months, p->rule_drop, flag, e)))
        goto out;
    uint32_t churned = 0;
    for (size_t i = 0; i < n; i++) {
        churned += y[i];
        v->rule_flagged += flag[users[i]];
        v->rule_hits += flag[users[i]] && y[i];
    }
    v->rule_precision = v->rule_flagged ? (double)v->rule_hits / v->rule_flagged : NAN;
    v->rule_recall = churned ? (double)v->rule_hits / churned : NAN;
out:
    free(prob);
    free(rec);
    free(flag);
    return rc;
}

int churn_run(ev_set *s, const churn_params *p, FILE *report, churn_result *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (p->horizon_days < 1 || p->horizon_days > 36500)
        return err_set(e, ERR_INVALID, "churn: horizon must be 1..36500 days, not %u",
                       p->horizon_days);
    for (int b = 0; b < CHURN_BANDS - 1; b++)
        if (!(p->bands[b] > 0 && p->bands[b] < 1) || (b > 0 && !(p->bands[b] > p->bands[b - 1])))
            return err_set(e, ERR_INVALID,
                           "churn: risk band thresholds must ascend strictly inside (0, 1)");
    for (int t = 0; t < CHURN_TIERS - 1; t++)
        if (!(p->tiers[t] >= 0) || !isfinite(p->tiers[t]) ||
            (t > 0 && !(p->tiers[t] > p->tiers[t - 1])))
            return err_set(e, ERR_INVALID, "churn: tier thresholds must ascend strictly from 0");
    if (s->n == 0) return err_set(e, ERR_INVALID, "churn: no events");
    uint64_t *user_start = NULL;
    int rc = ev_set_sort_by_user_time(s, EV_TIES_ASCENDING, &user_start, e);
    if (rc) return rc;
    int64_t last = s->events[0].ts, first = s->events[0].ts;
    for (size_t i = 0; i < s->n; i++) {
        if (s->events[i].ts > last) last = s->events[i].ts;
        if (s->events[i].ts < first) first = s->events[i].ts;
    }
    const int64_t h = (int64_t)p->horizon_days * FEAT_DAY_SECONDS, t_score = last + 1;
    const int64_t c2 = t_score - h, c1 = t_score - 2 * h;
    feat_matrix f1 = {0}, f2 = {0}, f3 = {0};
    uint32_t n_users = idmap_size(s->users);
    float *x1 = NULL, *x2 = NULL;
    uint8_t *lab = NULL, *y1 = NULL, *y2 = NULL;
    uint32_t *u1 = NULL, *u2 = NULL;
    if (first >= c1) {
        char b1[32], b2[32];
        rc = err_set(e, ERR_INVALID,
                     "churn: too little history for a validation split: events span %s to %s "
                     "(%.0f days), a %u-day horizon needs more than %u days (train at 2 x "
                     "horizon before the end, validate at 1 x); use a shorter --churn-horizon",
                     fmt_time(first, b1), fmt_time(last, b2),
                     (double)(last - first) / FEAT_DAY_SECONDS, p->horizon_days,
                     2 * p->horizon_days);
        goto out;
    }
    if ((rc = feat_compute(s, user_start, c1, NULL, &f1, e)) ||
        (rc = feat_compute(s, user_start, c2, NULL, &f2, e)) ||
        (rc = feat_compute(s, user_start, t_score, NULL, &f3, e)))
        goto out;
    size_t n1 = f1.n_active, n2 = f2.n_active;
    x1 = malloc((n1 + 1) * CHURN_INPUTS * sizeof *x1);
    x2 = malloc((n2 + 1) * CHURN_INPUTS * sizeof *x2);
    lab = malloc((size_t)n_users + 1);
    y1 = malloc(n1 + 1);
    y2 = malloc(n2 + 1);
    u1 = malloc((n1 + 1) * sizeof *u1);
    u2 = malloc((n2 + 1) * sizeof *u2);
    out->inputs = malloc(((size_t)n_users + 1) * CHURN_INPUTS * sizeof *out->inputs);
    out->probability = malloc(((size_t)n_users + 1) * sizeof *out->probability);
    out->band = malloc((size_t)n_users + 1);
    out->segment = malloc((size_t)n_users + 1);
    out->tier = malloc((size_t)n_users + 1);
    out->recency_days = malloc(((size_t)n_users + 1) * sizeof *out->recency_days);
    out->frequency = malloc(((size_t)n_users + 1) * sizeof *out->frequency);
    out->monetary = malloc(((size_t)n_users + 1) * sizeof *out->monetary);
    if (!x1 || !x2 || !lab || !y1 || !y2 || !u1 || !u2 || !out->inputs || !out->probability ||
        !out->band || !out->segment || !out->tier || !out->recency_days || !out->frequency ||
        !out->monetary) {
        rc = err_set(e, ERR_NOMEM, "churn: out of memory for %u users", n_users);
        goto out;
    }
    churn_labels(s, user_start, &f1, h, lab);
    pack(&f1, lab, x1, y1, u1);
    churn_labels(s, user_start, &f2, h, lab);
    pack(&f2, lab, x2, y2, u2);
    churn_eval *v = &out->eval;
    v->t_train = c1;
    v->t_valid = c2;
    v->t_score = t_score;
    v->n_train = (uint32_t)n1;
    v->n_valid = (uint32_t)n2;
    for (size_t i = 0; i < n1; i++)
        v->churned_train += y1[i];
    for (size_t i = 0; i < n2; i++)
        v->churned_valid += y2[i];
    if ((rc = check_cutoff("training", c1, 2 * p->horizon_days, (uint32_t)n1, y1, e)) ||
        (rc = check_cutoff("validation", c2, p->horizon_days, (uint32_t)n2, y2, e)))
        goto out;
    churn_model m1;
    if ((rc = churn_fit(x1, y1, n1, p->l2, &m1, e))) goto out;
    if ((rc = validate(&m1, p, s, user_start, &f2, x2, y2, u2, n2,
                       (double)v->churned_train / (double)n1, v, e)))
        goto out;
    /* The served model learns from the most recent complete horizon. */
    if ((rc = churn_fit(x2, y2, n2, p->l2, &out->model, e))) goto out;
    if ((rc = churn_segments(&f3, out->segment, e))) goto out;
    out->n_users = n_users;
    out->scored_at = t_score;
    out->horizon_days = p->horizon_days;
    memcpy(out->bands, p->bands, sizeof out->bands);
    memcpy(out->tiers, p->tiers, sizeof out->tiers);
    for (uint32_t u = 0; u < n_users; u++) {
        const float *fu = f3.x + (size_t)u * FEAT_COUNT;
        float *xu = out->inputs + (size_t)u * CHURN_INPUTS;
        churn_inputs(fu, xu);
        out->recency_days[u] = fu[FEAT_RECENCY_DAYS];
        out->frequency[u] = fu[FEAT_ORDERS];
        out->monetary[u] = fu[FEAT_MONETARY];
        if (!f3.active[u]) {
            out->probability[u] = NAN;
            out->band[u] = out->tier[u] = CHURN_NONE;
            continue;
        }
        double pr = churn_probability(&out->model, xu);
        out->probability[u] = (float)pr;
        out->band[u] = churn_band(pr, p->bands);
        out->tier[u] = churn_tier(fu[FEAT_MONETARY_365D], p->tiers);
    }
    if (report) print_report(report, p, out);
out:
    free(user_start);
    feat_matrix_free(&f1);
    feat_matrix_free(&f2);
    feat_matrix_free(&f3);
    free(x1);
    free(x2);
    free(lab);
    free(y1);
    free(y2);
    free(u1);
    free(u2);
    if (rc) churn_result_free(out);
    return rc;
}
