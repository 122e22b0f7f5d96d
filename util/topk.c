#include "topk.h"

#include <math.h>
#include <stdlib.h>

/* a ranks worse than b: lower score, or equal score and higher index. */
static inline int worse(topk_entry a, topk_entry b) {
    return a.score < b.score || (a.score == b.score && a.index > b.index);
}

static void sift_down(topk_entry *h, uint32_t n, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(h[l], h[m])) m = l;
        if (r < n && worse(h[r], h[m])) m = r;
        if (m == i) return;
        topk_entry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cmp_best_first(const void *pa, const void *pb) {
    topk_entry a = *(const topk_entry *)pa, b = *(const topk_entry *)pb;
    return worse(a, b) - worse(b, a);
}

void topk_sort(topk_entry *entries, uint32_t n) {
    qsort(entries, n, sizeof *entries, cmp_best_first);
}

int topk_any_above(const float *s, float threshold) {
    int any = 0;
    for (int l = 0; l < 16; l++)
        any |= s[l] > threshold;
    return any;
}

uint32_t topk_select(const float *scores, uint32_t n, uint32_t k, topk_entry *out) {
    uint32_t size = 0;
    if (k == 0) return 0;
    for (uint32_t i = 0; i < n; i++) {
        /* Once k are kept, most scores lose to the worst of them: whole runs
         * of 16 are passed over with one test. */
        while (size == k && (i & 15) == 0 && n - i >= 16 &&
               !topk_any_above(scores + i, out[0].score))
            i += 16;
        if (i >= n) break;
        float s = scores[i];
        if (!(s > -INFINITY)) continue; /* excluded, or NaN */
        topk_entry e = {i, s};
        if (size < k) {
            /* sift up */
            uint32_t j = size++;
            out[j] = e;
            while (j > 0) {
                uint32_t p = (j - 1) / 2;
                if (!worse(out[j], out[p])) break;
                topk_entry t = out[j];
                out[j] = out[p];
                out[p] = t;
                j = p;
            }
        } else if (s > out[0].score) {
            /* The heap root is the worst kept entry; equal scores keep the
             * earlier (lower) index already in the heap. */
            out[0] = e;
            sift_down(out, size, 0);
        }
    }
    topk_sort(out, size);
    return size;
}
