#include "itemrows.h"

#include <cblas.h>

float itemrows_value(float r) {
    if (!(r > 0.0f)) return 0.0f;
    return r < 1.0f ? r : 1.0f;
}

void itemrows_accumulate(const itemrows *r, const uint32_t *items, const float *w, size_t n,
                         float *scores) {
    for (size_t k = 0; k < n; k++) {
        uint32_t i = items[k];
        if (w[k] == 0.0f) continue;
        if (r->dense) {
            cblas_saxpy((int)r->n_items, w[k], r->dense + (size_t)i * r->n_items, 1, scores, 1);
            continue;
        }
        for (uint64_t a = r->indptr[i]; a < r->indptr[i + 1]; a++)
            scores[r->index[a]] += w[k] * r->value[a];
    }
}

float itemrows_get(const itemrows *r, uint32_t i, uint32_t j) {
    if (r->dense) return r->dense[(size_t)i * r->n_items + j];
    for (uint64_t a = r->indptr[i]; a < r->indptr[i + 1]; a++)
        if (r->index[a] == j) return r->value[a];
    return 0.0f;
}
