/* csr: compressed sparse row matrices of float values, the interaction
 * matrix of training (users x items, and its transpose items x users) and the
 * per-user purchased-item lists of a model.
 *
 * A csr owns its three arrays (malloc'ed); free them with csr_free. Column
 * indexes within a row are sorted ascending and distinct. Functions keep no
 * state: concurrent calls are safe on different matrices, and any number of
 * readers (csr_nnz, csr_has, csr_transpose's input) may share one matrix
 * that nobody writes. */
#ifndef RECD_CSR_H
#define RECD_CSR_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct csr {
    uint32_t n_rows, n_cols;
    uint64_t *indptr;  /* n_rows + 1 entries; row r is [indptr[r], indptr[r+1]) */
    uint32_t *indices; /* nnz column indexes */
    float *values;     /* nnz values */
} csr;

/* The number of stored entries of m (which must have its indptr). */
static inline uint64_t csr_nnz(const csr *m) {
    return m->indptr[m->n_rows];
}

/* Builds an n_rows x n_cols matrix from n triplets (rows[i], cols[i],
 * vals[i]), reading the arrays only; duplicates are summed. vals may be
 * NULL (every value 1). Fills *out, which the caller owns and frees with
 * csr_free. Returns ERR_OK, ERR_INVALID (a row or column out of range: the
 * message names the triplet), ERR_NOMEM; on failure *out is untouched and
 * nothing needs freeing. */
int csr_from_triplets(uint32_t n_rows, uint32_t n_cols, const uint32_t *rows, const uint32_t *cols,
                      const float *vals, size_t n, csr *out, err_t *e);

/* Fills *out with the transpose of m (rows sorted by column as in any csr),
 * leaving m alone. The caller owns *out and frees it with csr_free.
 * Returns ERR_OK or ERR_NOMEM; on failure *out is untouched and nothing
 * needs freeing. */
int csr_transpose(const csr *m, csr *out, err_t *e);

/* Frees the arrays of m and zeroes it; safe on a zeroed csr. */
void csr_free(csr *m);

/* 1 when column col is stored in row r < n_rows (binary search), else 0. */
int csr_has(const csr *m, uint32_t r, uint32_t col);

#endif
