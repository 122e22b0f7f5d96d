/* itemrows: the arithmetic of item-item models (EASE, item-kNN, RP3beta)
 * that serving and offline evaluation share, so that validation measures
 * exactly what is served.
 *
 * An item-item model is one row of weights per item: row i says how much
 * having item i speaks for every other item j. A user's score of item j is
 *     s_j = sum over the user's items i of v_ui * row_i[j],
 *     v_ui = min(1, r_ui)
 * with r_ui the user's value of item i (the sum of the weights of their
 * events on it: a purchase counts 1, a view its type's weight), so a
 * purchase counts fully and a lighter signal in proportion. The same v_ui
 * fill the training matrix of every item-item family. Folding a fresh
 * event in is exact: it adds its item's row.
 *
 * Rows are stored dense (n x n floats, EASE on a catalogue that fits) or
 * sparse (each item's kept neighbours, best first; pruned EASE, kNN,
 * RP3beta). The arrays belong to the caller (a model map, or a training
 * result); nothing here allocates or keeps state, so calls are
 * thread-safe. */
#ifndef RECD_ITEMROWS_H
#define RECD_ITEMROWS_H

#include <stddef.h>
#include <stdint.h>

typedef struct itemrows {
    uint32_t n_items;
    const float *dense; /* n_items x n_items row-major, or NULL for the sparse form */
    /* Sparse form (dense NULL): row i is index/value[indptr[i], indptr[i + 1]). */
    const uint64_t *indptr; /* n_items + 1 */
    const uint32_t *index;  /* item indexes < n_items */
    const float *value;
} itemrows;

/* v_ui of a user's value r (see above): min(1, r), 0 for r <= 0 or NaN. */
float itemrows_value(float r);

/* scores[j] += sum over k < n of w[k] * row(items[k])[j] for every j <
 * n_items (items[k] < n_items; repeated items add up). */
void itemrows_accumulate(const itemrows *r, const uint32_t *items, const float *w, size_t n,
                         float *scores);

/* The weight of item j in row i (0 when the sparse row does not keep j). */
float itemrows_get(const itemrows *r, uint32_t i, uint32_t j);

#endif
