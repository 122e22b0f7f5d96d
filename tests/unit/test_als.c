/* Unit tests of training/als: known-answer structure, agreement of the CG
 * training step with the exact (Cholesky) fold-in, the loss, determinism (also
 * across the row kernel copies of every cpu level this CPU runs) and
 * argument checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "als.h"
#include "cpu.h"
#include "linalg.h"
#include "mf.h"

/* Builds a csr from a dense row-major matrix (zeros are not stored). */
static csr dense_to_csr(const float *d, uint32_t rows, uint32_t cols) {
    uint32_t *r = malloc((size_t)rows * cols * sizeof *r);
    uint32_t *c = malloc((size_t)rows * cols * sizeof *c);
    float *v = malloc((size_t)rows * cols * sizeof *v);
    size_t n = 0;
    for (uint32_t i = 0; i < rows; i++)
        for (uint32_t j = 0; j < cols; j++)
            if (d[i * cols + j] != 0.0f) {
                r[n] = i;
                c[n] = j;
                v[n] = d[i * cols + j];
                n++;
            }
    csr m;
    err_t e;
    cr_assert_eq(csr_from_triplets(rows, cols, r, c, v, n, &m, &e), ERR_OK, "%s", e.msg);
    free(r);
    free(c);
    free(v);
    return m;
}

/* A reproducible sparse count matrix with roughly density * rows * cols
 * nonzeros of counts 1..3. */
static csr random_counts(uint32_t rows, uint32_t cols, double density, uint32_t seed) {
    float *d = calloc((size_t)rows * cols, sizeof *d);
    srand(seed);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        if (rand() < density * RAND_MAX) d[i] = (float)(1 + rand() % 3);
    csr m = dense_to_csr(d, rows, cols);
    free(d);
    return m;
}

static float dot(const float *a, const float *b, uint32_t n) {
    float s = 0.0f;
    for (uint32_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Two groups of users, each buying only inside its own block of items. With
 * two factors (one per block: too few to memorize the holes) a user who has
 * not bought one item of their block must score it near 1 and far above
 * every item of the other block, which scores near 0. */
Test(als, block_diagonal_ranks_own_block_first) {
    enum { U = 8, I = 8 };
    float d[U * I] = {0};
    for (uint32_t u = 0; u < U; u++)
        for (uint32_t i = 0; i < I; i++)
            if ((u < 4) == (i < 4)) d[u * I + i] = 1.0f;
    d[0 * I + 3] = 0.0f; /* user 0 has not bought item 3 */
    d[5 * I + 6] = 0.0f; /* user 5 has not bought item 6 */
    csr m = dense_to_csr(d, U, I);
    als_params p;
    als_params_init(&p);
    p.factors = 2;
    p.regularization = 1.0f;
    p.threads = 2;
    als_factors f;
    err_t e;
    cr_assert_eq(als_train(&m, &p, &f, &e), ERR_OK, "%s", e.msg);
    const float *x0 = f.user_factors, *x5 = f.user_factors + 5 * f.factors;
    float s03 = dot(x0, f.item_factors + 3 * f.factors, f.factors);
    float s56 = dot(x5, f.item_factors + 6 * f.factors, f.factors);
    cr_expect(s03 > 0.5f && s56 > 0.5f, "held-out in-block scores %f, %f", s03, s56);
    for (uint32_t i = 4; i < I; i++)
        cr_expect_gt(s03, dot(x0, f.item_factors + i * f.factors, f.factors) + 0.5f,
                     "user 0: item 3 %f vs other-block item %u", s03, i);
    for (uint32_t i = 0; i < 4; i++)
        cr_expect_gt(s56, dot(x5, f.item_factors + i * f.factors, f.factors) + 0.5f,
                     "user 5: item 6 %f vs other-block item %u", s56, i);
    als_factors_free(&f);
    csr_free(&m);
}

/* At a fixed point of ALS every user vector is the exact solution of its
 * normal equations against the final item factors; mf_fold_in solves those
 * equations by Cholesky. With as many CG steps as factors (CG's exact
 * convergence in exact arithmetic) and enough iterations to converge, the
 * trained user vectors and the fold-in must agree. */
Test(als, cg_training_matches_exact_fold_in_at_convergence) {
    csr m = random_counts(30, 20, 0.25, 7);
    als_params p;
    als_params_init(&p);
    p.factors = 5;
    p.cg_steps = 5;
    p.iterations = 300;
    p.regularization = 0.5f;
    p.threads = 2;
    als_factors f;
    err_t e;
    cr_assert_eq(als_train(&m, &p, &f, &e), ERR_OK, "%s", e.msg);
    float yty[5 * 5], x[5];
    linalg_gram(f.item_factors, f.n_items, f.factors, f.factors, yty, f.factors);
    for (uint32_t u = 0; u < m.n_rows; u++) {
        uint64_t b = m.indptr[u], n = m.indptr[u + 1] - b;
        cr_assert_eq(mf_fold_in(f.item_factors, f.factors, yty, m.indices + b, m.values + b,
                                (uint32_t)n, p.regularization, p.alpha, x, &e),
                     ERR_OK, "%s", e.msg);
        for (uint32_t j = 0; j < f.factors; j++)
            cr_expect_float_eq(x[j], f.user_factors[u * f.factors + j], 2e-4,
                               "user %u factor %u: fold-in %g, trained %g", u, j, (double)x[j],
                               (double)f.user_factors[u * f.factors + j]);
    }
    als_factors_free(&f);
    csr_free(&m);
}

/* The same fixed point with frequency-scaled regularization: each user's
 * lambda is regularization + frequency_regularization x their items, which
 * is what the server's fold-in passes (score_fold_in). */
Test(als, frequency_regularization_matches_the_scaled_fold_in) {
    csr m = random_counts(30, 20, 0.25, 9);
    als_params p;
    als_params_init(&p);
    p.factors = 5;
    p.cg_steps = 5;
    p.iterations = 300;
    p.regularization = 0.2f;
    p.frequency_regularization = 0.3f;
    p.threads = 2;
    als_factors f, plain;
    err_t e;
    cr_assert_eq(als_train(&m, &p, &f, &e), ERR_OK, "%s", e.msg);
    float yty[5 * 5], x[5];
    linalg_gram(f.item_factors, f.n_items, f.factors, f.factors, yty, f.factors);
    for (uint32_t u = 0; u < m.n_rows; u++) {
        uint64_t b = m.indptr[u], n = m.indptr[u + 1] - b;
        float lambda = p.regularization + p.frequency_regularization * (float)n;
        cr_assert_eq(mf_fold_in(f.item_factors, f.factors, yty, m.indices + b, m.values + b,
                                (uint32_t)n, lambda, p.alpha, x, &e),
                     ERR_OK, "%s", e.msg);
        for (uint32_t j = 0; j < f.factors; j++)
            cr_expect_float_eq(x[j], f.user_factors[u * f.factors + j], 2e-4, "user %u", u);
    }
    /* And it is not plain lambda: the factors differ. */
    p.frequency_regularization = 0;
    cr_assert_eq(als_train(&m, &p, &plain, &e), ERR_OK, "%s", e.msg);
    float diff = 0;
    for (uint32_t k = 0; k < m.n_rows * f.factors; k++)
        diff += fabsf(plain.user_factors[k] - f.user_factors[k]);
    cr_expect_gt(diff, 0.01f);
    als_factors_free(&plain);
    p.frequency_regularization = -1;
    cr_expect_eq(als_train(&m, &p, &plain, &e), ERR_INVALID);
    als_factors_free(&f);
    csr_free(&m);
}

/* The reported loss must be implicit's: sum over every cell of
 * c (p - x.y)^2 plus lambda (|X|^2 + |Y|^2), over the total confidence of
 * all cells. Computed here cell by cell. */
Test(als, loss_matches_brute_force) {
    csr m = random_counts(25, 17, 0.2, 11);
    als_params p;
    als_params_init(&p);
    p.factors = 6;
    p.iterations = 4;
    p.alpha = 3.0f;
    p.regularization = 0.2f;
    p.threads = 2;
    als_factors f;
    err_t e;
    cr_assert_eq(als_train(&m, &p, &f, &e), ERR_OK, "%s", e.msg);
    double loss = 0.0, conf = 0.0, reg = 0.0;
    for (uint32_t u = 0; u < m.n_rows; u++)
        for (uint32_t i = 0; i < m.n_cols; i++) {
            double r = 0.0;
            for (uint64_t k = m.indptr[u]; k < m.indptr[u + 1]; k++)
                if (m.indices[k] == i) r = m.values[k];
            double c = 1.0 + p.alpha * r, pref = r > 0 ? 1.0 : 0.0;
            double d =
                dot(f.user_factors + u * f.factors, f.item_factors + i * f.factors, f.factors);
            loss += c * (pref - d) * (pref - d);
            conf += c;
        }
    for (uint32_t i = 0; i < m.n_rows * f.factors; i++)
        reg += f.user_factors[i] * f.user_factors[i];
    for (uint32_t i = 0; i < m.n_cols * f.factors; i++)
        reg += f.item_factors[i] * f.item_factors[i];
    double expected = (loss + p.regularization * reg) / conf;
    cr_expect(fabs(f.loss - expected) < 1e-5 * expected, "loss %.9g, brute force %.9g", f.loss,
              expected);
    als_factors_free(&f);
    csr_free(&m);
}

typedef struct loss_log {
    uint32_t n;
    double loss[64];
    uint32_t iteration[64];
} loss_log;

static void record_loss(void *ctx, uint32_t iteration, double seconds, double loss) {
    loss_log *log = ctx;
    cr_assert(seconds >= 0.0);
    log->iteration[log->n] = iteration;
    log->loss[log->n++] = loss;
}

/* Each half-iteration minimizes the loss over one side with the other fixed
 * (CG from the previous solution only lowers the quadratic), so the loss
 * never rises; and it must fall substantially from the random start. */
Test(als, loss_decreases_every_iteration) {
    csr m = random_counts(60, 40, 0.1, 5);
    loss_log log = {0};
    als_params p;
    als_params_init(&p);
    p.factors = 8;
    p.iterations = 12;
    p.threads = 2;
    p.progress = record_loss;
    p.progress_ctx = &log;
    als_factors f;
    err_t e;
    cr_assert_eq(als_train(&m, &p, &f, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(log.n, 12);
    for (uint32_t i = 0; i < log.n; i++)
        cr_expect_eq(log.iteration[i], i + 1);
    for (uint32_t i = 1; i < log.n; i++)
        cr_expect(log.loss[i] <= log.loss[i - 1] * (1.0 + 1e-6), "iteration %u: %g after %g", i + 1,
                  log.loss[i], log.loss[i - 1]);
    cr_expect(log.loss[log.n - 1] < 0.9 * log.loss[0], "loss %g -> %g", log.loss[0],
              log.loss[log.n - 1]);
    cr_expect_eq(f.loss, log.loss[log.n - 1]);
    als_factors_free(&f);
    csr_free(&m);
}

static als_factors train_with(const csr *m, uint32_t threads, uint64_t seed, uint32_t factors) {
    als_params p;
    als_params_init(&p);
    p.factors = factors;
    p.iterations = 5;
    p.threads = threads;
    p.seed = seed;
    als_factors f;
    err_t e;
    cr_assert_eq(als_train(m, &p, &f, &e), ERR_OK, "%s", e.msg);
    return f;
}

/* Same seed: bitwise-identical factors and loss, whatever the number of
 * threads (rows are solved independently and the loss is summed in row
 * order). A different seed gives different factors. 20 factors also covers
 * the padded row layout (20 is not a multiple of the vector width). */
Test(als, deterministic_for_seed_and_threads) {
    csr m = random_counts(70, 50, 0.1, 9);
    als_factors a = train_with(&m, 2, 1234, 20), b = train_with(&m, 2, 1234, 20);
    als_factors c = train_with(&m, 1, 1234, 20), d = train_with(&m, 3, 1234, 20);
    als_factors other = train_with(&m, 2, 99, 20);
    size_t xu = (size_t)m.n_rows * 20 * sizeof(float), xi = (size_t)m.n_cols * 20 * sizeof(float);
    cr_expect(memcmp(a.user_factors, b.user_factors, xu) == 0);
    cr_expect(memcmp(a.item_factors, b.item_factors, xi) == 0);
    cr_expect(memcmp(a.user_factors, c.user_factors, xu) == 0, "1 thread differs from 2");
    cr_expect(memcmp(a.item_factors, d.item_factors, xi) == 0, "3 threads differ from 2");
    cr_expect_eq(a.loss, c.loss);
    cr_expect(memcmp(a.user_factors, other.user_factors, xu) != 0, "seed has no effect");
    als_factors_free(&a);
    als_factors_free(&b);
    als_factors_free(&c);
    als_factors_free(&d);
    als_factors_free(&other);
    csr_free(&m);
}

/* Every row kernel copy this CPU runs computes the very same floats as the
 * baseline one (no reassociation, no fused multiply-adds), and
 * als_train_kernel names the copy of the level in use. */
Test(als, every_kernel_copy_trains_the_same_factors) {
    csr m = random_counts(90, 60, 0.1, 5);
    size_t xu = (size_t)m.n_rows * 40 * sizeof(float), xi = (size_t)m.n_cols * 40 * sizeof(float);
    err_t e;
    cr_assert_eq(cpu_use(CPU_BASELINE, &e), ERR_OK, "%s", e.msg);
    cr_assert_str_eq(als_train_kernel(), "baseline");
    als_factors base = train_with(&m, 2, 7, 40);
    for (int level = CPU_BASELINE + 1; level <= (int)cpu_best(); level++) {
        cr_assert_eq(cpu_use((cpu_level)level, &e), ERR_OK, "%s", e.msg);
        const char *want = level == CPU_AVX512BF16 ? "avx512" : cpu_level_name((cpu_level)level);
        cr_assert_str_eq(als_train_kernel(), want);
        als_factors f = train_with(&m, 2, 7, 40);
        cr_expect(memcmp(base.user_factors, f.user_factors, xu) == 0, "%s: users differ", want);
        cr_expect(memcmp(base.item_factors, f.item_factors, xi) == 0, "%s: items differ", want);
        cr_expect_eq(base.loss, f.loss, "%s: loss %g, baseline %g", want, f.loss, base.loss);
        als_factors_free(&f);
    }
    als_factors_free(&base);
    csr_free(&m);
}

/* Rows without nonzeros (a user with no events, an item nobody bought) get
 * zero vectors, as implicit does and the fold-in does for n = 0. */
Test(als, empty_rows_get_zero_vectors) {
    float d[4 * 5] = {1, 0, 2, 0, 0, /* */ 0, 0, 0, 0, 0, /* */ 0, 1, 1, 0, 0, /* */ 3, 0, 0, 0, 1};
    csr m = dense_to_csr(d, 4, 5);
    als_factors f = train_with(&m, 2, 1, 3);
    for (uint32_t j = 0; j < 3; j++) {
        cr_expect_eq(f.user_factors[1 * 3 + j], 0.0f);
        cr_expect_eq(f.item_factors[3 * 3 + j], 0.0f);
    }
    cr_expect(f.loss > 0.0 && isfinite(f.loss));
    float x[3] = {1, 1, 1}, yty[9];
    err_t e;
    linalg_gram(f.item_factors, 5, 3, 3, yty, 3);
    cr_expect_eq(mf_fold_in(f.item_factors, 3, yty, NULL, NULL, 0, 0.01f, 1.0f, x, &e), ERR_OK);
    cr_expect(x[0] == 0.0f && x[1] == 0.0f && x[2] == 0.0f);
    als_factors_free(&f);
    csr_free(&m);
}

Test(als, rejects_bad_arguments) {
    float d[2 * 2] = {1, 0, 0, -1};
    csr neg = dense_to_csr(d, 2, 2);
    als_params p;
    als_params_init(&p);
    als_factors f;
    err_t e;
    cr_expect_eq(als_train(&neg, &p, &f, &e), ERR_INVALID, "negative count accepted");
    d[3] = 1;
    csr ok = dense_to_csr(d, 2, 2);
    p.factors = 0;
    cr_expect_eq(als_train(&ok, &p, &f, &e), ERR_INVALID, "0 factors accepted");
    als_params_init(&p);
    p.regularization = -1.0f;
    cr_expect_eq(als_train(&ok, &p, &f, &e), ERR_INVALID, "negative lambda accepted");
    als_params_init(&p);
    p.cg_steps = 0;
    cr_expect_eq(als_train(&ok, &p, &f, &e), ERR_INVALID, "0 CG steps accepted");
    csr_free(&neg);
    csr_free(&ok);
}
