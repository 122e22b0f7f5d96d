/* linalg: the dense linear algebra that training and serving share - the
 * Gram matrix YtY of a factor matrix (OpenBLAS ssyrk) and the solve of a
 * small symmetric positive definite system in double precision (LAPACK's
 * Cholesky, dpotrf + dpotrs, from the same OpenBLAS), and the inverse of a
 * large one in single precision (EASE's item-item model).
 *
 * Both are thread-safe (they keep no state) as long as OpenBLAS is: recd
 * runs OpenBLAS single-threaded (als_train and `recd serve` set it), and
 * parallelizes over rows itself. */
#ifndef RECD_LINALG_H
#define RECD_LINALG_H

#include <stddef.h>

/* Fills g (f x f, row stride ldg >= f) with YtY of the n x f row-major
 * matrix y (row stride ldy >= f), both triangles; all zero when n is 0.
 * Columns of g beyond f are left alone. Needs n, f, ldy, ldg within the BLAS
 * int range. */
void linalg_gram(const float *y, size_t n, size_t f, size_t ldy, float *g, size_t ldg);

/* Solves A x = b for the symmetric positive definite n x n matrix A whose
 * lower triangle is in a (row-major, stride n; the upper triangle is never
 * read), in place: b (n doubles) becomes x, and a's lower triangle becomes
 * the Cholesky factor L with L L^T = A. Returns 0, or -1 when A is not
 * positive definite (a and b then hold partial results). Needs 1 <= n
 * within the BLAS int range. */
int linalg_solve_spd(double *a, double *b, size_t n);

/* linalg_solve_spd for nrhs right-hand sides at once, one factorization:
 * b holds them one after another (n doubles each) and each becomes its x.
 * Returns 0 or -1 as linalg_solve_spd. Needs 1 <= n, nrhs and n * nrhs
 * within the BLAS int range. */
int linalg_solve_spd_many(double *a, double *b, size_t n, size_t nrhs);

/* Replaces the symmetric positive definite n x n float matrix in a
 * (row-major, both triangles) by its inverse, both triangles (LAPACK
 * spotrf + spotri: a Cholesky factor, then the inverse from it). Returns
 * 0, or -1 when the matrix is not positive definite (a then holds partial
 * results). Needs 1 <= n within the BLAS int range. */
int linalg_invert_spd(float *a, size_t n);

#endif
