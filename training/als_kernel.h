/* als_kernel: the per-row work of an ALS half-iteration (als.c), the loops
 * whose speed depends on the vector units. als_kernel.c is compiled once per
 * cpu level (util/cpu.h) with that level's instruction set (CMakeLists.txt);
 * als_train runs the copy of the level in use (AVX512-BF16 has nothing for
 * these loops, so that level runs the AVX-512 copy). Off x86-64
 * (RECD_X86_KERNELS undefined) only the baseline copy exists.
 *
 * Every factor row is padded to a multiple of ALS_LANES floats and
 * ALS_ALIGN-byte aligned, so the loops run whole vectors with no remainder:
 * plain C over a fixed ALS_LANES-wide inner block, which GCC and Clang turn
 * into SIMD as wide as the copy's instruction set. The lanes are summed in a
 * fixed tree and nothing is contracted into fused multiply-adds (ISO C mode),
 * so every copy computes the same floats. The padding columns are zero and
 * stay zero (their right-hand side and Gram rows are zero), so they never
 * change a result. */
#ifndef RECD_ALS_KERNEL_H
#define RECD_ALS_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "csr.h"

#define ALS_LANES 16
#define ALS_ALIGN 64

/* What a worker needs to solve rows of m against the fixed factors y: x_r
 * for each row, with A = YtY + lambda I in g. Borrowed pointers. */
typedef struct als_half_step {
    const csr *m;
    const float *y; /* n_cols x ld */
    float *x;       /* n_rows x ld, updated in place (warm start) */
    const float *g; /* ld x ld: YtY + lambda I (padding rows/cols zero) */
    size_t ld;      /* a multiple of ALS_LANES; every row ALS_ALIGN-aligned */
    float alpha;
    float freq; /* extra lambda per nonzero of the row (frequency-scaled regularization) */
    uint32_t cg_steps;
} als_half_step;

typedef struct als_kernel {
    cpu_level level; /* the instruction set it was compiled for */
    /* Solves (YtY + (lambda + freq n_u) I + Yt (C_u - I) Y) x = Yt C_u p(u),
     * n_u the row's nonzeros, for row u of
     * h->m with h->cg_steps conjugate-gradient steps from the current x
     * (Takacs 2011, as benfred/implicit's _least_squares_cg). r, p, ap:
     * ld floats of scratch each, aligned. */
    void (*solve_row)(const als_half_step *h, uint32_t u, float *r, float *p, float *ap);
    /* Row u's loss terms as implicit's calculate_loss computes them, with
     * h->g = YtY (no lambda): x YtY x + sum over the nonzeros of
     * (c - 2 c d + (c - 1) d^2), d = x . y_i, into *loss; the sum of the
     * nonzeros' confidences c into *conf. r: ld floats of scratch. */
    void (*loss_row)(const als_half_step *h, uint32_t u, float *r, double *loss, double *conf);
    /* The sum of squares of the n rows of x (stride ld). */
    double (*sum_squares)(const float *x, size_t n, size_t ld);
} als_kernel;

extern const als_kernel als_kernel_baseline;
#if defined(RECD_X86_KERNELS)
extern const als_kernel als_kernel_avx2;
extern const als_kernel als_kernel_avx512;
#endif

#endif
