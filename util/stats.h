/* stats: the statistics of A/B reports - a proportion's confidence interval
 * and the two-proportion z-test. */
#ifndef RECD_STATS_H
#define RECD_STATS_H

#include <stdint.h>

/* Wilson score interval of x successes in n trials at the normal quantile z
 * (1.96 for 95%); [0, 1] when n is 0. */
void stats_wilson(uint64_t x, uint64_t n, double z, double *lo, double *hi);

/* Two-sided two-proportion z-test of x1/n1 against x2/n2 with the pooled
 * variance: fills *z and *p (p = 1, z = 0 when either n is 0 or the pooled
 * proportion is 0 or 1). */
void stats_two_proportion(uint64_t x1, uint64_t n1, uint64_t x2, uint64_t n2, double *z, double *p);

/* The normal quantile for a two-sided level alpha (1.959964 for 0.05). */
double stats_z_for_alpha(double alpha);

#endif
