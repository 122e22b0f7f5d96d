#include "rebuy.h"

#include <math.h>
#include <stddef.h>

double rebuy_phi(double z) {
    return 0.5 * erfc(-z / sqrt(2.0));
}

/* F(t) of the log-normal gap: 0 for t <= 0. */
static double gap_cdf(double t, double mu, double sigma) {
    return t > 0 ? rebuy_phi((log(t) - mu) / sigma) : 0.0;
}

double rebuy_raw(const rebuy_model *m, uint32_t item, double n, double days_since, double span) {
    if (!(n >= 1)) return 0.0;
    const float *it = m->items + (size_t)item * REBUY_ITEM_FLOATS;
    double s = m->params[REBUY_STRENGTH], g = m->params[REBUY_GAP_WEIGHT];
    double h = m->params[REBUY_HORIZON];
    double c = (s * it[0] + n - 1) / (s + n - 1);
    double mu = it[1], sigma = it[2] > 0.05f ? it[2] : 0.05;
    /* The member's own rhythm: the mean gap of their occasions, at least a
     * day (occasions are distinct days). */
    if (n >= 2) {
        double gap = span / (n - 1);
        mu = (g * mu + (n - 1) * log(gap > 1 ? gap : 1)) / (g + n - 1);
    }
    double t = days_since > 0 ? days_since : 0;
    double f0 = gap_cdf(t, mu, sigma), f1 = gap_cdf(t + h, mu, sigma);
    double den = c * (1 - f0) + 1 - c;
    if (!(den > 1e-12)) return 0.0;
    double p = c * (f1 - f0) / den;
    return p > 0 ? (p < 1 ? p : 1) : 0.0;
}

double rebuy_calibrate(const rebuy_model *m, double raw, double n) {
    double p = raw < 1e-6 ? 1e-6 : (raw > 1 - 1e-6 ? 1 - 1e-6 : raw);
    double z = m->params[REBUY_PLATT_A] * log(p / (1 - p)) +
               m->params[REBUY_PLATT_N] * log(n > 1 ? n : 1) + m->params[REBUY_PLATT_B];
    return 1.0 / (1.0 + exp(-z));
}

double rebuy_probability(const rebuy_model *m, uint32_t item, double n, double days_since,
                         double span) {
    double raw = rebuy_raw(m, item, n, days_since, span);
    /* Calibration lifts 0 a little (a clamp of logit): never bought stays 0. */
    return raw > 0 ? rebuy_calibrate(m, raw, n) : 0.0;
}

double rebuy_new_item(const rebuy_model *m, uint32_t rank) {
    if (rank == 0) return 0.0;
    return m->curve[(rank <= REBUY_CURVE ? rank : REBUY_CURVE) - 1];
}

uint32_t rebuy_merge(const rebuy_model *m, const topk_entry *bought, uint32_t n_bought,
                     const topk_entry *fresh, uint32_t n_fresh, uint32_t k, topk_entry *out) {
    uint32_t i = 0, j = 0, n = 0;
    while (n < k && (i < n_bought || j < n_fresh)) {
        float pj = j < n_fresh ? (float)rebuy_new_item(m, j + 1) : -INFINITY;
        if (i < n_bought && (j >= n_fresh || bought[i].score > pj)) {
            out[n++] = bought[i++];
        } else {
            out[n++] = (topk_entry){fresh[j].index, pj};
            j++;
        }
    }
    return n;
}
