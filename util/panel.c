#include "panel.h"

#include <string.h>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

/* One panel row: the 16 items' factor pairs, 16 x 32 bits; and 16 floats.
 * Declared with the element's alignment so that loads need no aligned
 * buffer. */
typedef uint32_t panel_row __attribute__((vector_size(PANEL_WIDTH * 4), aligned(4)));
typedef float panel_vec __attribute__((vector_size(PANEL_WIDTH * 4), aligned(4)));

uint32_t panel_padded(uint32_t n_rows) {
    return (n_rows + PANEL_WIDTH - 1) / PANEL_WIDTH * PANEL_WIDTH;
}

uint32_t panel_pairs(uint32_t factors) {
    return factors / 2 + factors % 2;
}

/* The bfloat16 nearest to v, ties to even (NaN stays NaN). */
static uint16_t to_bf16(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Factor d of a row of f floats, 0 past the end (an odd f's last pair). */
static float factor(const float *row, uint32_t f, uint32_t d) {
    return d < f ? row[d] : 0.0f;
}

void panel_pack(const float *rows, uint32_t n_rows, uint32_t f, uint16_t *out) {
    uint32_t padded = panel_padded(n_rows), pairs = panel_pairs(f);
    for (uint32_t base = 0; base < padded; base += PANEL_WIDTH) {
        uint16_t *panel = out + (size_t)base * pairs * 2;
        for (uint32_t l = 0; l < PANEL_WIDTH; l++) {
            uint32_t i = base + l;
            const float *row = rows + (size_t)i * f;
            for (uint32_t r = 0; r < pairs; r++) {
                uint16_t *at = panel + ((size_t)r * PANEL_WIDTH + l) * 2;
                at[0] = i < n_rows ? to_bf16(factor(row, f, 2 * r)) : 0;
                at[1] = i < n_rows ? to_bf16(factor(row, f, 2 * r + 1)) : 0;
            }
        }
    }
}

void panel_query(const float *x, uint32_t f, uint32_t *pairs) {
    for (uint32_t r = 0; r < panel_pairs(f); r++)
        pairs[r] = (uint32_t)to_bf16(factor(x, f, 2 * r)) |
                   (uint32_t)to_bf16(factor(x, f, 2 * r + 1)) << 16;
}

float panel_error(uint32_t f) {
    /* Each of x and y rounded to 8 significant bits: a product is off by at
     * most 2^-7 + 2^-16 of |x_d y_d|, and the sum of those is at most |x||y|
     * (Cauchy-Schwarz). Then at most f float32 roundings of partial sums,
     * each 2^-24 of at most that same sum. 1% on top for the bound's own
     * rounding. */
    return (0x1p-7f + 0x1p-16f + (float)f * 0x1p-24f * 1.01f) * 1.01f;
}

/* Multiply-adds one factor pair of one panel row into *acc (pointers: a
 * vector passed by value would change the calling convention between
 * builds with and without AVX-512). */
static inline __attribute__((always_inline)) void pair_madd(panel_vec *acc, uint32_t query,
                                                            const panel_row *items) {
#if defined(__AVX512BF16__)
    __m512 a;
    __m512i y;
    memcpy(&a, acc, sizeof a);
    memcpy(&y, items, sizeof y);
    a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_set1_epi32((int)query), (__m512bh)y);
    memcpy(acc, &a, sizeof a);
#else
    /* A bfloat16 is the top half of a float: shifts make two float vectors. */
    panel_row even_bits = *items << 16, odd_bits = *items & 0xffff0000u;
    panel_vec even, odd;
    memcpy(&even, &even_bits, sizeof even);
    memcpy(&odd, &odd_bits, sizeof odd);
    uint32_t xe_bits = query << 16, xo_bits = query & 0xffff0000u;
    float xe, xo;
    memcpy(&xe, &xe_bits, sizeof xe);
    memcpy(&xo, &xo_bits, sizeof xo);
    *acc += xe * even + xo * odd;
#endif
}

/* nq queries x np consecutive panels: nq * np independent accumulators, so
 * the multiply-adds of one pair do not wait on each other. nq and np are
 * constants at every call, which lets the compiler keep the accumulators in
 * registers. */
static inline __attribute__((always_inline)) void panel_tile(const uint16_t *p, size_t panel_values,
                                                             const uint32_t *x, uint32_t pairs,
                                                             float *out, size_t stride,
                                                             const int nq, const int np) {
    panel_vec acc[4][4];
#pragma GCC unroll 4
    for (int q = 0; q < nq; q++)
#pragma GCC unroll 4
        for (int a = 0; a < np; a++)
            acc[q][a] = (panel_vec){0};
    for (uint32_t r = 0; r < pairs; r++)
#pragma GCC unroll 4
        for (int a = 0; a < np; a++) {
            panel_row y = *(const panel_row *)(p + a * panel_values + (size_t)r * PANEL_WIDTH * 2);
#pragma GCC unroll 4
            for (int q = 0; q < nq; q++)
                pair_madd(&acc[q][a], x[(size_t)q * pairs + r], &y);
        }
#pragma GCC unroll 4
    for (int q = 0; q < nq; q++)
#pragma GCC unroll 4
        for (int a = 0; a < np; a++)
            *(panel_vec *)(out + q * stride + (size_t)a * PANEL_WIDTH) = acc[q][a];
}

/* Up to 4 queries against 4 panels (or fewer at the end of the range), in
 * tiles of about 8 accumulators with AVX-512: enough to keep the
 * multiply-add units busy, few enough to stay in registers. Without it a
 * vector is two or four registers and the bfloat16 pairs are unpacked by
 * hand, so one panel at a time is all that fits. */
static void panel_chunk(const uint16_t *p, size_t panel_values, const uint32_t *x, uint32_t pairs,
                        float *out, size_t stride, uint32_t nq, uint32_t np) {
#if defined(__AVX512BF16__)
    const int one_panel = 0;
#else
    const int one_panel = 1;
#endif
    if (np < 4 || one_panel) {
        for (uint32_t a = 0; a < np; a++, p += panel_values, out += PANEL_WIDTH)
            switch (nq) {
            case 4:
                panel_tile(p, panel_values, x, pairs, out, stride, 4, 1);
                break;
            case 3:
                panel_tile(p, panel_values, x, pairs, out, stride, 3, 1);
                break;
            case 2:
                panel_tile(p, panel_values, x, pairs, out, stride, 2, 1);
                break;
            default:
                panel_tile(p, panel_values, x, pairs, out, stride, 1, 1);
                break;
            }
        return;
    }
    const uint16_t *p2 = p + 2 * panel_values;
    float *out2 = out + 2 * PANEL_WIDTH;
    switch (nq) {
    case 4:
        panel_tile(p, panel_values, x, pairs, out, stride, 4, 2);
        panel_tile(p2, panel_values, x, pairs, out2, stride, 4, 2);
        break;
    case 3:
        panel_tile(p, panel_values, x, pairs, out, stride, 3, 2);
        panel_tile(p2, panel_values, x, pairs, out2, stride, 3, 2);
        break;
    case 2:
        panel_tile(p, panel_values, x, pairs, out, stride, 2, 2);
        panel_tile(p2, panel_values, x, pairs, out2, stride, 2, 2);
        break;
    default:
        panel_tile(p, panel_values, x, pairs, out, stride, 1, 4);
        break;
    }
}

void panel_scores(const uint16_t *panels, uint32_t f, uint32_t first, uint32_t len,
                  const uint32_t *queries, uint32_t n_queries, float *scores, size_t stride) {
    uint32_t pairs = panel_pairs(f);
    size_t panel_values = (size_t)pairs * 2 * PANEL_WIDTH;
    uint32_t n_panels = panel_padded(len) / PANEL_WIDTH;
    const uint16_t *start = panels + (size_t)first / PANEL_WIDTH * panel_values;
    /* Panels outside, queries inside: four panels stay in L1 while every
     * query uses them, and the matrix is read from memory once. */
    for (uint32_t a = 0; a < n_panels; a += 4) {
        uint32_t np = n_panels - a < 4 ? n_panels - a : 4;
        for (uint32_t q = 0; q < n_queries; q += 4)
            panel_chunk(start + (size_t)a * panel_values, panel_values, queries + (size_t)q * pairs,
                        pairs, scores + (size_t)q * stride + (size_t)a * PANEL_WIDTH, stride,
                        n_queries - q < 4 ? n_queries - q : 4, np);
    }
}
