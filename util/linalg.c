#include "linalg.h"

#include <cblas.h>
#include <string.h>

/* LAPACK's Fortran entry points, which OpenBLAS exports (Debian's
 * libopenblas0 builds LAPACK in). Declared here rather than taken from
 * LAPACKE (a separate package, liblapacke-dev) or from OpenBLAS's
 * f77blas.h, which leaves out the hidden length argument that gfortran
 * passes for each CHARACTER argument: dpotrs_ is Fortran code, and without
 * the length it may read a stack slot the caller never wrote (what LAPACK's
 * own lapack.h passes LAPACK_FORTRAN_STRLEN_END for). The integer type is
 * blasint of openblas_config.h, int in Debian's LP64 build. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda,
             double *b, const int *ldb, int *info, size_t uplo_len);
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t uplo_len);
void spotri_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t uplo_len);

void linalg_gram(const float *y, size_t n, size_t f, size_t ldy, float *g, size_t ldg) {
    if (n == 0) {
        for (size_t j = 0; j < f; j++)
            memset(g + j * ldg, 0, f * sizeof *g);
        return;
    }
    /* OpenBLAS computes the upper triangle; the mirror is cheap next to it. */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)f, (int)n, 1.0f, y, (int)ldy, 0.0f, g,
                (int)ldg);
    for (size_t j = 0; j < f; j++)
        for (size_t l = 0; l < j; l++)
            g[j * ldg + l] = g[l * ldg + j];
}

int linalg_solve_spd(double *a, double *b, size_t n) {
    /* A row-major lower triangle is the column-major upper one that
     * Fortran sees: "U". */
    const int order = (int)n, one = 1;
    int info = 0;
    dpotrf_("U", &order, a, &order, &info, 1);
    if (info != 0) return -1;
    dpotrs_("U", &order, &one, a, &order, b, &order, &info, 1);
    return info == 0 ? 0 : -1;
}

int linalg_solve_spd_many(double *a, double *b, size_t n, size_t nrhs) {
    const int order = (int)n, k = (int)nrhs;
    int info = 0;
    dpotrf_("U", &order, a, &order, &info, 1);
    if (info != 0) return -1;
    dpotrs_("U", &order, &k, a, &order, b, &order, &info, 1);
    return info == 0 ? 0 : -1;
}

int linalg_invert_spd(float *a, size_t n) {
    const int order = (int)n;
    int info = 0;
    /* Symmetric input: either triangle is the same matrix, so "U" of the
     * column-major view is the lower triangle of the row-major one. */
    spotrf_("U", &order, a, &order, &info, 1);
    if (info != 0) return -1;
    spotri_("U", &order, a, &order, &info, 1);
    if (info != 0) return -1;
    /* spotri wrote the row-major lower triangle: mirror it up. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            a[i * n + j] = a[j * n + i];
    return 0;
}
