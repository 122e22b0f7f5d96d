/* panel: item factors laid out for scoring many queries at once.
 *
 * A row-major matrix (one item's factors after another) makes a dot product
 * per (item, query) pair end in a horizontal sum; BLAS avoids that by first
 * copying the matrix into panels, and that copy, made again on every call,
 * cost more than the arithmetic itself on catalogues of 10k-100k items. Here
 * the copy is made once per model: panel p holds items [16 p, 16 p + 16) as
 * factors x 16 floats (factor d of those 16 items side by side), the last
 * panel padded with zeros. Scoring then streams the panels once and does
 * nothing but multiply-adds: 16 items x one query per vector instruction. */
#ifndef RECD_PANEL_H
#define RECD_PANEL_H

#include <stddef.h>
#include <stdint.h>

#define PANEL_WIDTH 16 /* items per panel */

/* Items rounded up to whole panels. */
uint32_t panel_padded(uint32_t n_rows);

/* Copies n_rows x f row-major rows into panels; out has room for
 * panel_padded(n_rows) * f floats. */
void panel_pack(const float *rows, uint32_t n_rows, uint32_t f, float *out);

/* Scores the items [first, first + len) of a packed matrix (first a multiple
 * of PANEL_WIDTH) against n_queries query vectors of f floats (xs, one after
 * another): scores[q * stride + i] = xs[q] . item (first + i). Writes
 * panel_padded(len) scores per query (the padding scores 0), so stride is at
 * least that. */
void panel_scores(const float *panels, uint32_t f, uint32_t first, uint32_t len, const float *xs,
                  uint32_t n_queries, float *scores, size_t stride);

#endif
