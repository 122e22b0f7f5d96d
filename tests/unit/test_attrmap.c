/* Unit tests of training/attrmap: a ridge fit with a known answer (targets
 * that are exactly a linear map of the label features, tiny lambda) and
 * the served vector of util/mf (mf_label_vector) for a row it never saw. */
#include <criterion/criterion.h>
#include <math.h>

#include "attrmap.h"
#include "mf.h"

Test(attrmap, recovers_a_linear_map) {
    /* 3 labels, 2 factors; W and bias chosen; each row's target is
     * bias + sum over its labels of W[l] / sqrt(n). */
    const float w[3][2] = {{1, 0}, {0, 2}, {-1, 1}}, bias[2] = {0.5f, -0.5f};
    const uint32_t labels[][3] = {{0}, {1}, {2}, {0, 1}, {1, 2}, {0, 2}, {0, 1, 2}, {0}, {2}};
    const uint32_t counts[] = {1, 1, 1, 2, 2, 2, 3, 1, 1};
    enum { N = 9 };
    uint64_t indptr[N + 1] = {0};
    uint32_t index[32];
    float y[N * 2];
    uint64_t k = 0;
    for (int r = 0; r < N; r++) {
        float s = 1.0f / sqrtf((float)counts[r]);
        y[r * 2] = 0, y[r * 2 + 1] = 0;
        for (uint32_t c = 0; c < counts[r]; c++) {
            index[k++] = labels[r][c];
            y[r * 2] += s * w[labels[r][c]][0];
            y[r * 2 + 1] += s * w[labels[r][c]][1];
        }
        indptr[r + 1] = k;
    }
    /* Centre y's columns around the bias: the fit's bias is their mean, so
     * shift the targets to make the mean the chosen bias exactly. */
    double m0 = 0, m1 = 0;
    for (int r = 0; r < N; r++)
        m0 += y[r * 2], m1 += y[r * 2 + 1];
    m0 /= N, m1 /= N;
    attrmap m;
    err_t e;
    cr_assert_eq(attrmap_fit(indptr, index, N, 3, y, 2, NULL, 1e-6f, 1, &m, &e), ERR_OK, "%s",
                 e.msg);
    /* Each training row is reproduced: the map is exact up to the bias,
     * which the centred features absorb. */
    float x[2];
    for (int r = 0; r < N; r++) {
        mf_label_vector(m.map, 3, 2, index + indptr[r], (uint32_t)(indptr[r + 1] - indptr[r]), x);
        cr_assert_float_eq(x[0], y[r * 2], 1e-3, "row %d", r);
        cr_assert_float_eq(x[1], y[r * 2 + 1], 1e-3, "row %d", r);
    }
    /* The weights are the true ones and the bias 0 (targets had none). */
    for (int l = 0; l < 3; l++)
        for (int j = 0; j < 2; j++)
            cr_assert_float_eq(m.map[l * 2 + j], w[l][j], 1e-3, "label %d", l);
    mf_label_vector(m.map, 3, 2, NULL, 0, x);
    cr_assert_float_eq(x[0], 0.0f, 1e-3);
    cr_assert_float_eq(x[1], 0.0f, 1e-3);
    attrmap_free(&m);
    (void)bias;
    (void)m0;
    (void)m1;
}

Test(attrmap, chooses_lambda_and_refuses_empty) {
    uint64_t indptr[3] = {0, 1, 2};
    uint32_t index[2] = {0, 1};
    float y[4] = {1, 0, 0, 1};
    uint8_t use[2] = {0, 0};
    attrmap m;
    err_t e;
    cr_assert_eq(attrmap_fit(indptr, index, 2, 2, y, 2, use, 0.0f, 1, &m, &e), ERR_INVALID);
    cr_assert_eq(attrmap_fit(indptr, index, 2, 0, y, 2, NULL, 0.0f, 1, &m, &e), ERR_INVALID);
    cr_assert_eq(attrmap_fit(indptr, index, 2, 2, y, 2, NULL, 0.0f, 1, &m, &e), ERR_OK);
    cr_assert(m.lambda > 0);
    attrmap_free(&m);
}
