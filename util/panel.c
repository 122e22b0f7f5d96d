#include "panel.h"

/* One panel row: PANEL_WIDTH floats, one vector register (or two on AVX2).
 * Declared with float alignment so that loads need no aligned buffer. */
typedef float panel_vec __attribute__((vector_size(PANEL_WIDTH * sizeof(float)), aligned(4)));

uint32_t panel_padded(uint32_t n_rows) {
    return (n_rows + PANEL_WIDTH - 1) / PANEL_WIDTH * PANEL_WIDTH;
}

void panel_pack(const float *rows, uint32_t n_rows, uint32_t f, float *out) {
    uint32_t padded = panel_padded(n_rows);
    for (uint32_t base = 0; base < padded; base += PANEL_WIDTH) {
        float *panel = out + (size_t)base * f;
        for (uint32_t l = 0; l < PANEL_WIDTH; l++) {
            uint32_t i = base + l;
            const float *row = rows + (size_t)i * f;
            for (uint32_t d = 0; d < f; d++)
                panel[(size_t)d * PANEL_WIDTH + l] = i < n_rows ? row[d] : 0.0f;
        }
    }
}

/* nq queries x np consecutive panels: nq * np independent accumulators, so
 * the multiply-adds of one factor do not wait on each other. nq and np are
 * constants at every call, which lets the compiler keep the accumulators in
 * registers. */
static inline __attribute__((always_inline)) void panel_tile(const float *p, size_t panel_floats,
                                                             const float *x, uint32_t f, float *out,
                                                             size_t stride, const int nq,
                                                             const int np) {
    panel_vec acc[4][4];
#pragma GCC unroll 4
    for (int q = 0; q < nq; q++)
#pragma GCC unroll 4
        for (int a = 0; a < np; a++)
            acc[q][a] = (panel_vec){0};
    for (uint32_t d = 0; d < f; d++)
#pragma GCC unroll 4
        for (int a = 0; a < np; a++) {
            panel_vec y = *(const panel_vec *)(p + a * panel_floats + (size_t)d * PANEL_WIDTH);
#pragma GCC unroll 4
            for (int q = 0; q < nq; q++)
                acc[q][a] += x[(size_t)q * f + d] * y;
        }
#pragma GCC unroll 4
    for (int q = 0; q < nq; q++)
#pragma GCC unroll 4
        for (int a = 0; a < np; a++)
            *(panel_vec *)(out + q * stride + (size_t)a * PANEL_WIDTH) = acc[q][a];
}

/* Up to 4 queries against 4 panels (or fewer at the end of the range), in
 * tiles of about 8 accumulators: enough to keep the multiply-add units busy,
 * few enough to stay in registers. */
static void panel_chunk(const float *p, size_t panel_floats, const float *x, uint32_t f, float *out,
                        size_t stride, uint32_t nq, uint32_t np) {
    if (np < 4) {
        for (uint32_t a = 0; a < np; a++, p += panel_floats, out += PANEL_WIDTH)
            switch (nq) {
            case 4:
                panel_tile(p, panel_floats, x, f, out, stride, 4, 1);
                break;
            case 3:
                panel_tile(p, panel_floats, x, f, out, stride, 3, 1);
                break;
            case 2:
                panel_tile(p, panel_floats, x, f, out, stride, 2, 1);
                break;
            default:
                panel_tile(p, panel_floats, x, f, out, stride, 1, 1);
                break;
            }
        return;
    }
    switch (nq) {
    case 4:
        panel_tile(p, panel_floats, x, f, out, stride, 4, 2);
        panel_tile(p + 2 * panel_floats, panel_floats, x, f, out + 2 * PANEL_WIDTH, stride, 4, 2);
        break;
    case 3:
        panel_tile(p, panel_floats, x, f, out, stride, 3, 2);
        panel_tile(p + 2 * panel_floats, panel_floats, x, f, out + 2 * PANEL_WIDTH, stride, 3, 2);
        break;
    case 2:
        panel_tile(p, panel_floats, x, f, out, stride, 2, 4);
        break;
    default:
        panel_tile(p, panel_floats, x, f, out, stride, 1, 4);
        break;
    }
}

void panel_scores(const float *panels, uint32_t f, uint32_t first, uint32_t len, const float *xs,
                  uint32_t n_queries, float *scores, size_t stride) {
    size_t panel_floats = (size_t)f * PANEL_WIDTH;
    uint32_t n_panels = panel_padded(len) / PANEL_WIDTH;
    const float *start = panels + (size_t)first * f;
    /* Panels outside, queries inside: four panels stay in L1 while every
     * query uses them, and the matrix is read from memory once. */
    for (uint32_t a = 0; a < n_panels; a += 4) {
        uint32_t np = n_panels - a < 4 ? n_panels - a : 4;
        for (uint32_t q = 0; q < n_queries; q += 4)
            panel_chunk(start + (size_t)a * panel_floats, panel_floats, xs + (size_t)q * f, f,
                        scores + (size_t)q * stride + (size_t)a * PANEL_WIDTH, stride,
                        n_queries - q < 4 ? n_queries - q : 4, np);
    }
}
