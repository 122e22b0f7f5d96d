/* One copy of panel_scores (panel.h), compiled once per cpu level with that
 * level's instruction set: RECD_KERNEL_LEVEL names the copy
 * (panel_kernel_LEVEL, declared in panel_kernel.h). */
#include "panel_kernel.h"

#include <string.h>

#include "panel.h"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

/* The vectors the kernel computes with: a whole panel row (16 lanes) with
 * AVX-512, half of one otherwise - a vector wider than the registers would
 * be kept in memory. A panel_row holds the factor pairs of PANEL_VEC items
 * (32 bits each), a panel_vec their PANEL_VEC scores. Declared with the
 * element's alignment so that loads need no aligned buffer. */
#if defined(__AVX512F__)
#define PANEL_VEC 16
#else
#define PANEL_VEC 8
#endif
#define PANEL_SPLIT (PANEL_WIDTH / PANEL_VEC) /* vectors per panel row */
typedef uint32_t panel_row __attribute__((vector_size(PANEL_VEC * 4), aligned(4)));
typedef float panel_vec __attribute__((vector_size(PANEL_VEC * 4), aligned(4)));

/* Multiply-adds one factor pair of one panel row into *acc (pointers: a
 * vector passed by value would change the calling convention between
 * builds with and without AVX-512). */
static inline __attribute__((always_inline)) void pair_madd(panel_vec *acc, uint32_t query,
                                                            const panel_row *items) {
#if defined(__AVX512BF16__) && PANEL_VEC == 16
    *acc = (panel_vec)_mm512_dpbf16_ps((__m512)*acc, (__m512bh)_mm512_set1_epi32((int)query),
                                       (__m512bh)*items);
#else
    /* A bfloat16 is the top half of a float: shifts make two float vectors
     * (vector casts reinterpret the bits). */
    panel_vec even = (panel_vec)(*items << 16), odd = (panel_vec)(*items & 0xffff0000u);
    uint32_t xe_bits = query << 16, xo_bits = query & 0xffff0000u;
    float xe, xo;
    memcpy(&xe, &xe_bits, sizeof xe);
    memcpy(&xo, &xo_bits, sizeof xo);
    *acc += xe * even + xo * odd;
#endif
}

/* nq queries x np consecutive panels: nq * np * PANEL_SPLIT independent
 * accumulators, so the multiply-adds of one pair do not wait on each other.
 * nq and np are constants at every call, which lets the compiler keep the
 * accumulators in registers. */
static inline __attribute__((always_inline)) void panel_tile(const uint16_t *p, size_t panel_values,
                                                             const uint32_t *x, uint32_t pairs,
                                                             float *out, size_t stride,
                                                             const int nq, const int np) {
    panel_vec acc[4][4 * PANEL_SPLIT];
#pragma GCC unroll 4
    for (int q = 0; q < nq; q++)
#pragma GCC unroll 8
        for (int v = 0; v < np * PANEL_SPLIT; v++)
            acc[q][v] = (panel_vec){0};
    for (uint32_t r = 0; r < pairs; r++)
#pragma GCC unroll 8
        for (int v = 0; v < np * PANEL_SPLIT; v++) {
            /* Vector v: panel v / PANEL_SPLIT, part v % PANEL_SPLIT of its row r. */
            panel_row y = *(const panel_row *)(p + (size_t)(v / PANEL_SPLIT) * panel_values +
                                               ((size_t)r * PANEL_WIDTH +
                                                (size_t)(v % PANEL_SPLIT) * PANEL_VEC) *
                                                   2);
#pragma GCC unroll 4
            for (int q = 0; q < nq; q++)
                pair_madd(&acc[q][v], x[(size_t)q * pairs + r], &y);
        }
#pragma GCC unroll 4
    for (int q = 0; q < nq; q++)
#pragma GCC unroll 8
        for (int v = 0; v < np * PANEL_SPLIT; v++)
            *(panel_vec *)(out + q * stride + (size_t)v * PANEL_VEC) = acc[q][v];
}

/* Runs tiles of nq queries x np panels over n panels (n a multiple of np). */
#define PANEL_TILES(nq, np)                                                                        \
    for (uint32_t a = 0; a < n; a += (np))                                                         \
    panel_tile(p + a * panel_values, panel_values, x, pairs, out + a * PANEL_WIDTH, stride, (nq),  \
               (np))

/* Up to 4 queries against n of 4 panels (fewer only at the end of the
 * range), in tiles of at most 8 vector accumulators: enough to keep the
 * multiply-add units busy, few enough to stay in registers with the
 * temporaries. */
static void panel_chunk(const uint16_t *p, size_t panel_values, const uint32_t *x, uint32_t pairs,
                        float *out, size_t stride, uint32_t nq, uint32_t n) {
    if (n < 4) {
        switch (nq) {
        case 4:
            PANEL_TILES(4, 1);
            break;
        case 3:
            PANEL_TILES(3, 1);
            break;
        case 2:
            PANEL_TILES(2, 1);
            break;
        default:
            PANEL_TILES(1, 1);
            break;
        }
        return;
    }
    switch (nq) {
    case 4:
        PANEL_TILES(4, 2 / PANEL_SPLIT);
        break;
    case 3:
        PANEL_TILES(3, 2 / PANEL_SPLIT);
        break;
    case 2:
        PANEL_TILES(2, 4 / PANEL_SPLIT);
        break;
    default:
        PANEL_TILES(1, 4);
        break;
    }
}

#define PANEL_KERNEL_NAME_(level) panel_kernel_##level
#define PANEL_KERNEL_NAME(level) PANEL_KERNEL_NAME_(level)

void PANEL_KERNEL_NAME(RECD_KERNEL_LEVEL)(PANEL_KERNEL_PARAMS) {
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
