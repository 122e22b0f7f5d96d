/* topk: selects the k best of n scores with a bounded min-heap (O(n log k),
 * no sort of the whole array). Entries equal to -INFINITY (or NaN) are never
 * selected, which is how callers exclude items. */
#ifndef RECD_TOPK_H
#define RECD_TOPK_H

#include <stdint.h>

typedef struct topk_entry {
    uint32_t index;
    float score;
} topk_entry;

/* Writes up to k entries to out (room for k), best first; ties go to the
 * lower index so results are deterministic. Returns how many were written
 * (fewer than k when fewer than k scores are selectable). */
uint32_t topk_select(const float *scores, uint32_t n, uint32_t k, topk_entry *out);

/* True when one of the 16 scores at s is above threshold; written so that
 * the compiler makes it one vector compare, for passing over runs of
 * scores that cannot matter. */
int topk_any_above(const float *s, float threshold);

/* Sorts entries best first (score descending, then index ascending). */
void topk_sort(topk_entry *entries, uint32_t n);

#endif
