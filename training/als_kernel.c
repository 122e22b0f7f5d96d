/* One copy of the ALS row kernels (als_kernel.h), compiled once per cpu
 * level with that level's instruction set: RECD_KERNEL_LEVEL names the copy
 * (als_kernel_LEVEL), RECD_KERNEL_CPU is its cpu_level. */
#include "als_kernel.h"

#include <string.h>

/* CG stops early when the squared residual norm falls below this (the value
 * benfred/implicit uses), which also avoids dividing by zero. */
#define ALS_CG_EPS 1e-20f

/* Returns a . b over ld floats; both 64-byte aligned. The lanes are summed in
 * a fixed tree so the result does not depend on anything but the inputs. */
static inline float vdot(const float *restrict a, const float *restrict b, size_t ld) {
    a = __builtin_assume_aligned(a, ALS_ALIGN);
    b = __builtin_assume_aligned(b, ALS_ALIGN);
    float acc[ALS_LANES] = {0};
    for (size_t j = 0; j < ld; j += ALS_LANES)
        for (size_t l = 0; l < ALS_LANES; l++)
            acc[l] += a[j + l] * b[j + l];
    for (size_t l = 0; l < 8; l++)
        acc[l] += acc[l + 8];
    for (size_t l = 0; l < 4; l++)
        acc[l] += acc[l + 4];
    return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

/* y += s * x over ld floats; both 64-byte aligned. */
static inline void vaxpy(float *restrict y, float s, const float *restrict x, size_t ld) {
    y = __builtin_assume_aligned(y, ALS_ALIGN);
    x = __builtin_assume_aligned(x, ALS_ALIGN);
    for (size_t j = 0; j < ld; j += ALS_LANES)
        for (size_t l = 0; l < ALS_LANES; l++)
            y[j + l] += s * x[j + l];
}

/* y += s[0] x[0] + ... + s[3] x[3] over ld floats: one pass over y for four
 * rows, so consecutive rows do not wait on each other's update of y. */
static inline void vaxpy4(float *restrict y, const float *s, const float *const *x, size_t ld) {
    y = __builtin_assume_aligned(y, ALS_ALIGN);
    const float *x0 = __builtin_assume_aligned(x[0], ALS_ALIGN);
    const float *x1 = __builtin_assume_aligned(x[1], ALS_ALIGN);
    const float *x2 = __builtin_assume_aligned(x[2], ALS_ALIGN);
    const float *x3 = __builtin_assume_aligned(x[3], ALS_ALIGN);
    for (size_t j = 0; j < ld; j += ALS_LANES)
        for (size_t l = 0; l < ALS_LANES; l++)
            y[j + l] +=
                (s[0] * x0[j + l] + s[1] * x1[j + l]) + (s[2] * x2[j + l] + s[3] * x3[j + l]);
}

/* out = G v for a symmetric ld x ld matrix G (row-major, padded): summed as
 * rows scaled by v[j], four rows per pass over out, which vectorizes over
 * the output instead of needing a horizontal reduction per row. ld is a
 * multiple of ALS_LANES, hence of four. */
static void vsymv(const float *restrict g, const float *restrict v, float *restrict out,
                  size_t ld) {
    out = __builtin_assume_aligned(out, ALS_ALIGN);
    memset(out, 0, ld * sizeof *out);
    for (size_t j = 0; j < ld; j += 4) {
        const float *rows[4] = {g + j * ld, g + (j + 1) * ld, g + (j + 2) * ld, g + (j + 3) * ld};
        vaxpy4(out, v + j, rows, ld);
    }
}

/* Rows of the fixed factors are read in the order of a row's nonzeros, i.e.
 * at random: without help every first touch is a cache miss (about half of
 * training time on a 100k x 20k matrix). Requesting the row ALS_PREFETCH
 * nonzeros ahead overlaps those misses with the arithmetic. */
#define ALS_PREFETCH 8

static inline void prefetch_row(const float *row, size_t ld) {
    for (size_t j = 0; j < ld; j += ALS_LANES)
        __builtin_prefetch(row + j, 0, 3);
}

/* The nonzeros' part of a row's products, with c_k = 1 + alpha m_k and
 * d_k = y_k . v over the nonzeros k in [begin, end):
 *   rhs:  out += sum (c_k - (c_k - 1) d_k) y_k   (Yt C p - Yt (C - I) Y v)
 *   else: out += sum (c_k - 1) d_k y_k           (Yt (C - I) Y v)
 * Four nonzeros at a time: their dot products are independent of each
 * other, and one pass over out takes all four rows. */
static void add_nonzeros(const als_half_step *h, uint64_t begin, uint64_t end, const float *v,
                         float *out, int rhs) {
    const size_t ld = h->ld;
    const uint32_t *idx = h->m->indices;
    const float *val = h->m->values;
    for (uint64_t k = begin; k < end; k += 4) {
        uint32_t n = end - k < 4 ? (uint32_t)(end - k) : 4;
        const float *y[4];
        float s[4];
        for (uint32_t i = 0; i < n; i++) {
            /* The rows are first touched in the rhs pass: fetch ahead. */
            if (rhs && k + i + ALS_PREFETCH < end)
                prefetch_row(h->y + (size_t)idx[k + i + ALS_PREFETCH] * ld, ld);
            y[i] = h->y + (size_t)idx[k + i] * ld;
            float cm1 = h->alpha * val[k + i], d = vdot(y[i], v, ld);
            s[i] = rhs ? 1.0f + cm1 - cm1 * d : cm1 * d;
        }
        if (n == 4)
            vaxpy4(out, s, y, ld);
        else
            for (uint32_t i = 0; i < n; i++)
                vaxpy(out, s[i], y[i], ld);
    }
}

/* Solves (YtY + lambda I + Yt (C_u - I) Y) x = Yt C_u p(u) for row u with
 * cg_steps conjugate-gradient steps from the current x (Takacs 2011, as
 * benfred/implicit's _least_squares_cg). The products with Yt (C_u - I) Y
 * run over the row's nonzeros only. */
static void solve_row(const als_half_step *h, uint32_t u, float *restrict r, float *restrict p,
                      float *restrict ap) {
    const size_t ld = h->ld;
    float *x = h->x + (size_t)u * ld;
    uint64_t begin = h->m->indptr[u], end = h->m->indptr[u + 1];
    if (begin == end) {
        memset(x, 0, ld * sizeof *x);
        return;
    }

    /* r = b - A x; A's row-specific part of lambda, freq n_u, added here. */
    float extra = h->freq * (float)(end - begin);
    vsymv(h->g, x, r, ld);
    if (extra != 0.0f) vaxpy(r, extra, x, ld);
    for (size_t j = 0; j < ld; j++)
        r[j] = -r[j];
    add_nonzeros(h, begin, end, x, r, 1);
    memcpy(p, r, ld * sizeof *p);
    float rsold = vdot(r, r, ld);
    if (rsold < ALS_CG_EPS) return;

    for (uint32_t it = 0; it < h->cg_steps; it++) {
        vsymv(h->g, p, ap, ld);
        if (extra != 0.0f) vaxpy(ap, extra, p, ld);
        add_nonzeros(h, begin, end, p, ap, 0);
        float step = rsold / vdot(p, ap, ld);
        vaxpy(x, step, p, ld);
        vaxpy(r, -step, ap, ld);
        float rsnew = vdot(r, r, ld);
        if (rsnew < ALS_CG_EPS) break;
        float beta = rsnew / rsold;
        for (size_t j = 0; j < ld; j++)
            p[j] = r[j] + beta * p[j];
        rsold = rsnew;
    }
}

/* Loss terms of row u as implicit's calculate_loss computes them: with
 * d_i = x.y_i and g = YtY (no lambda here),
 *   sum over all cells of c (p - d)^2 = x YtY x + sum_nz (c - 2 c d + (c - 1) d^2)
 * since unobserved cells have c = 1 and p = 0. Also returns sum_nz c for the
 * normalization. */
static void loss_row(const als_half_step *h, uint32_t u, float *restrict r, double *loss,
                     double *conf) {
    const size_t ld = h->ld;
    const float *x = h->x + (size_t)u * ld;
    vsymv(h->g, x, r, ld);
    double l = (double)vdot(r, x, ld), sum_c = 0.0;
    uint64_t end = h->m->indptr[u + 1];
    for (uint64_t k = h->m->indptr[u]; k < end; k++) {
        if (k + ALS_PREFETCH < end)
            prefetch_row(h->y + (size_t)h->m->indices[k + ALS_PREFETCH] * ld, ld);
        const float *y = h->y + (size_t)h->m->indices[k] * ld;
        double c = 1.0 + (double)h->alpha * (double)h->m->values[k];
        double d = (double)vdot(y, x, ld);
        l += c - 2.0 * c * d + (c - 1.0) * d * d;
        sum_c += c;
    }
    *loss = l;
    *conf = sum_c;
}

static double sum_squares(const float *x, size_t n, size_t ld) {
    double s = 0.0;
    for (size_t r = 0; r < n; r++)
        s += (double)vdot(x + r * ld, x + r * ld, ld);
    return s;
}

#define ALS_KERNEL_NAME_(level) als_kernel_##level
#define ALS_KERNEL_NAME(level) ALS_KERNEL_NAME_(level)

const als_kernel ALS_KERNEL_NAME(RECD_KERNEL_LEVEL) = {
    .level = RECD_KERNEL_CPU,
    .solve_row = solve_row,
    .loss_row = loss_row,
    .sum_squares = sum_squares,
};
