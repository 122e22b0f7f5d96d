#include "stats.h"

#include <math.h>

void stats_wilson(uint64_t x, uint64_t n, double z, double *lo, double *hi) {
    if (n == 0) {
        *lo = 0, *hi = 1;
        return;
    }
    double p = (double)x / (double)n, z2 = z * z, nn = (double)n;
    double centre = (p + z2 / (2 * nn)) / (1 + z2 / nn);
    double half = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / (1 + z2 / nn);
    *lo = centre - half < 0 ? 0 : centre - half;
    *hi = centre + half > 1 ? 1 : centre + half;
}

void stats_two_proportion(uint64_t x1, uint64_t n1, uint64_t x2, uint64_t n2, double *z,
                          double *p) {
    *z = 0, *p = 1;
    if (n1 == 0 || n2 == 0) return;
    double pooled = (double)(x1 + x2) / (double)(n1 + n2);
    if (pooled <= 0 || pooled >= 1) return;
    double se = sqrt(pooled * (1 - pooled) * (1.0 / (double)n1 + 1.0 / (double)n2));
    *z = ((double)x1 / (double)n1 - (double)x2 / (double)n2) / se;
    *p = erfc(fabs(*z) / sqrt(2.0));
}

double stats_z_for_alpha(double alpha) {
    /* Invert p(z) = erfc(z / sqrt 2) = alpha by bisection: 60 halvings of
     * [0, 40] are far below double precision's needs. */
    double lo = 0, hi = 40;
    for (int i = 0; i < 60; i++) {
        double mid = (lo + hi) / 2;
        if (erfc(mid / sqrt(2.0)) > alpha)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + hi) / 2;
}
