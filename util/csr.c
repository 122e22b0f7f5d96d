#include "csr.h"

#include <stdlib.h>
#include <string.h>

void csr_free(csr *m) {
    free(m->indptr);
    free(m->indices);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static int csr_alloc(csr *m, uint32_t n_rows, uint32_t n_cols, uint64_t nnz, err_t *e) {
    memset(m, 0, sizeof *m);
    m->n_rows = n_rows;
    m->n_cols = n_cols;
    m->indptr = calloc((size_t)n_rows + 1, sizeof *m->indptr);
    m->indices = malloc((nnz ? nnz : 1) * sizeof *m->indices);
    m->values = malloc((nnz ? nnz : 1) * sizeof *m->values);
    if (!m->indptr || !m->indices || !m->values) {
        csr_free(m);
        return err_set(e, ERR_NOMEM, "csr: cannot allocate %u rows with %llu nonzeros", n_rows,
                       (unsigned long long)nnz);
    }
    return ERR_OK;
}

static int cmp_pair_col(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int csr_from_triplets(uint32_t n_rows, uint32_t n_cols, const uint32_t *rows, const uint32_t *cols,
                      const float *vals, size_t n, csr *out, err_t *e) {
    csr m;
    int rc = csr_alloc(&m, n_rows, n_cols, n, e);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        if (rows[i] >= n_rows || cols[i] >= n_cols) {
            csr_free(&m);
            return err_set(e, ERR_INVALID, "csr: triplet %zu (%u, %u) outside %u x %u", i, rows[i],
                           cols[i], n_rows, n_cols);
        }
        m.indptr[rows[i] + 1]++;
    }
    for (uint32_t r = 0; r < n_rows; r++)
        m.indptr[r + 1] += m.indptr[r];
    /* Scatter (col, value) pairs, then sort each row and merge duplicates. */
    struct pair {
        uint32_t col;
        float val;
    } *pairs = malloc((n ? n : 1) * sizeof *pairs);
    uint64_t *fill = malloc(((size_t)n_rows + 1) * sizeof *fill);
    if (!pairs || !fill) {
        free(pairs);
        free(fill);
        csr_free(&m);
        return err_set(e, ERR_NOMEM, "csr: out of memory for %zu triplets", n);
    }
    memcpy(fill, m.indptr, ((size_t)n_rows + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++) {
        struct pair *p = &pairs[fill[rows[i]]++];
        p->col = cols[i];
        p->val = vals ? vals[i] : 1.0f;
    }
    uint64_t w = 0;
    for (uint32_t r = 0; r < n_rows; r++) {
        uint64_t begin = m.indptr[r], end = m.indptr[r + 1];
        qsort(pairs + begin, end - begin, sizeof *pairs, cmp_pair_col);
        m.indptr[r] = w;
        for (uint64_t i = begin; i < end; i++) {
            if (w > m.indptr[r] && m.indices[w - 1] == pairs[i].col) {
                m.values[w - 1] += pairs[i].val;
            } else {
                m.indices[w] = pairs[i].col;
                m.values[w] = pairs[i].val;
                w++;
            }
        }
    }
    m.indptr[n_rows] = w;
    free(pairs);
    free(fill);
    *out = m;
    return ERR_OK;
}

int csr_transpose(const csr *m, csr *out, err_t *e) {
    csr t;
    uint64_t nnz = csr_nnz(m);
    int rc = csr_alloc(&t, m->n_cols, m->n_rows, nnz, e);
    if (rc) return rc;
    for (uint64_t i = 0; i < nnz; i++)
        t.indptr[m->indices[i] + 1]++;
    for (uint32_t c = 0; c < t.n_rows; c++)
        t.indptr[c + 1] += t.indptr[c];
    uint64_t *fill = malloc(((size_t)t.n_rows + 1) * sizeof *fill);
    if (!fill) {
        csr_free(&t);
        return err_set(e, ERR_NOMEM, "csr: out of memory in transpose");
    }
    memcpy(fill, t.indptr, ((size_t)t.n_rows + 1) * sizeof *fill);
    /* Walking rows in order leaves each output row sorted by column. */
    for (uint32_t r = 0; r < m->n_rows; r++) {
        for (uint64_t i = m->indptr[r]; i < m->indptr[r + 1]; i++) {
            uint64_t at = fill[m->indices[i]]++;
            t.indices[at] = r;
            t.values[at] = m->values[i];
        }
    }
    free(fill);
    *out = t;
    return ERR_OK;
}

int csr_has(const csr *m, uint32_t r, uint32_t col) {
    uint64_t lo = m->indptr[r], hi = m->indptr[r + 1];
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (m->indices[mid] < col)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->indptr[r + 1] && m->indices[lo] == col;
}
