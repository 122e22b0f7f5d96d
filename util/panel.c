#include "panel.h"

#include <string.h>

#include "cpu.h"
#include "panel_kernel.h"

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

/* Indexed by cpu_level: every level has a copy of its own. */
static void (*const kernels[CPU_LEVELS])(PANEL_KERNEL_PARAMS) = {
    panel_kernel_baseline,
#if defined(RECD_X86_KERNELS)
    panel_kernel_avx2,
    panel_kernel_avx512,
    panel_kernel_avx512bf16,
#endif
};

void panel_scores(const uint16_t *panels, uint32_t f, uint32_t first, uint32_t len,
                  const uint32_t *queries, uint32_t n_queries, float *scores, size_t stride) {
    kernels[cpu_level_in_use()](panels, f, first, len, queries, n_queries, scores, stride);
}

const char *panel_scores_kernel(void) {
    return cpu_level_name(cpu_level_in_use());
}
