/* panel: item factors laid out for scoring many queries at once, in
 * bfloat16, with a proven bound on the error.
 *
 * A row-major matrix (one item's factors after another) makes a dot product
 * per (item, query) pair end in a horizontal sum; BLAS avoids that by first
 * copying the matrix into panels, and that copy, made again on every call,
 * cost more than the arithmetic itself on catalogues of 10k-100k items. Here
 * the copy is made once, at publication: panel p holds items [16 p, 16 p +
 * 16), factor pairs (2 r, 2 r + 1) of those 16 items side by side, as
 * bfloat16 (the top half of a float). Scoring streams the panels once and
 * does nothing but multiply-adds, two factors of 16 items per instruction
 * where the CPU has AVX512-BF16. Half the bytes of float32 and twice the
 * arithmetic per instruction; the price is precision, which panel_error
 * bounds, so that callers can re-score the few items near the cut in exact
 * float32 and return exactly what float32 scoring would. */
#ifndef RECD_PANEL_H
#define RECD_PANEL_H

#include <stddef.h>
#include <stdint.h>

#define PANEL_WIDTH 16 /* items per panel */

/* Items rounded up to whole panels. */
uint32_t panel_padded(uint32_t n_rows);

/* Factor pairs per item: factors rounded up to even, halved. */
uint32_t panel_pairs(uint32_t factors);

/* Copies n_rows x f row-major float rows into bfloat16 panels (rounded to
 * nearest, ties to even); out has room for panel_padded(n_rows) *
 * panel_pairs(f) * 2 values. Padding is 0. */
void panel_pack(const float *rows, uint32_t n_rows, uint32_t f, uint16_t *out);

/* Converts a query vector of f floats to the panel_pairs(f) bfloat16 pairs
 * that panel_scores takes. */
void panel_query(const float *x, uint32_t f, uint32_t *pairs);

/* Scores the items [first, first + len) of packed panels (first a multiple
 * of PANEL_WIDTH) against n_queries queries from panel_query (pairs of one
 * query after another): scores[q * stride + i] ~ x_q . item (first + i).
 * Writes panel_padded(len) scores per query (the padding scores 0), so
 * stride is at least that. Runs the kernel copy of the cpu level in use
 * (cpu.h), whose scores may differ from another copy's within
 * panel_error. */
void panel_scores(const uint16_t *panels, uint32_t f, uint32_t first, uint32_t len,
                  const uint32_t *queries, uint32_t n_queries, float *scores, size_t stride);

/* The name of the kernel copy panel_scores runs now: the cpu level in use
 * (cpu.h), e.g. "avx2". Static. */
const char *panel_scores_kernel(void);

/* The relative error bound of panel_scores: |score - x . y| <=
 * panel_error(f) * |x| * |y| (Euclidean norms of the float vectors), plus
 * PANEL_ERROR_ABS for values flushed to zero. */
float panel_error(uint32_t f);
#define PANEL_ERROR_ABS 1e-30f

#endif
