#include "als.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "rng.h"

/* Internally every factor row is padded to a multiple of ALS_LANES floats and
 * 64-byte aligned, so the per-nonzero loops below run whole vectors with no
 * remainder: plain C loops over a fixed LANES-wide inner block that GCC and
 * Clang turn into full-width SIMD at -O2 with -march=native. The padding
 * columns are zero and stay zero (their right-hand side and Gram rows are
 * zero), so they never change a result. */
#define ALS_LANES 16
#define ALS_ALIGN 64
/* Fold-in keeps an f x f double matrix; training keeps per-thread vectors.
 * Above this the dense solves stop making sense for a recommender. */
#define ALS_MAX_FACTORS 4096
/* CG stops early when the squared residual norm falls below this (the value
 * benfred/implicit uses), which also avoids dividing by zero. */
#define ALS_CG_EPS 1e-20f

void als_params_init(als_params *p) {
    memset(p, 0, sizeof *p);
    p->factors = 64;
    p->iterations = 15;
    p->regularization = 0.01f;
    p->alpha = 1.0f;
    p->cg_steps = 3;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    p->threads = cpus > 0 ? (uint32_t)cpus : 1;
    p->seed = 42;
}

void als_factors_free(als_factors *f) {
    free(f->user_factors);
    free(f->item_factors);
    memset(f, 0, sizeof *f);
}

/* ---- vector kernels over padded rows (ld a multiple of ALS_LANES) ------- */

/* Returns a . b over ld floats; both 64-byte aligned. The lanes are summed in
 * a fixed tree so the result does not depend on anything but the inputs. */
static inline float vdot(const float *restrict a, const float *restrict b, size_t ld) {
    a = __builtin_assume_aligned(a, ALS_ALIGN);
    b = __builtin_assume_aligned(b, ALS_ALIGN);
    float acc[ALS_LANES] = {0};
    for (size_t j = 0; j < ld; j += ALS_LANES)
        for (size_t l = 0; l < ALS_LANES; l++)
            acc[l] += a[j + l] * b[j + l];
    for (size_t l = 0; l < 8; l++)
        acc[l] += acc[l + 8];
    for (size_t l = 0; l < 4; l++)
        acc[l] += acc[l + 4];
    return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

/* y += s * x over ld floats; both 64-byte aligned. */
static inline void vaxpy(float *restrict y, float s, const float *restrict x, size_t ld) {
    y = __builtin_assume_aligned(y, ALS_ALIGN);
    x = __builtin_assume_aligned(x, ALS_ALIGN);
    for (size_t j = 0; j < ld; j += ALS_LANES)
        for (size_t l = 0; l < ALS_LANES; l++)
            y[j + l] += s * x[j + l];
}

/* y += s[0] x[0] + ... + s[3] x[3] over ld floats: one pass over y for four
 * rows, so consecutive rows do not wait on each other's update of y. */
static inline void vaxpy4(float *restrict y, const float *s, const float *const *x, size_t ld) {
    y = __builtin_assume_aligned(y, ALS_ALIGN);
    const float *x0 = __builtin_assume_aligned(x[0], ALS_ALIGN);
    const float *x1 = __builtin_assume_aligned(x[1], ALS_ALIGN);
    const float *x2 = __builtin_assume_aligned(x[2], ALS_ALIGN);
    const float *x3 = __builtin_assume_aligned(x[3], ALS_ALIGN);
    for (size_t j = 0; j < ld; j += ALS_LANES)
        for (size_t l = 0; l < ALS_LANES; l++)
            y[j + l] +=
                (s[0] * x0[j + l] + s[1] * x1[j + l]) + (s[2] * x2[j + l] + s[3] * x3[j + l]);
}

/* out = G v for a symmetric ld x ld matrix G (row-major, padded): summed as
 * rows scaled by v[j], four rows per pass over out, which vectorizes over
 * the output instead of needing a horizontal reduction per row. ld is a
 * multiple of ALS_LANES, hence of four. */
static void vsymv(const float *restrict g, const float *restrict v, float *restrict out,
                  size_t ld) {
    out = __builtin_assume_aligned(out, ALS_ALIGN);
    memset(out, 0, ld * sizeof *out);
    for (size_t j = 0; j < ld; j += 4) {
        const float *rows[4] = {g + j * ld, g + (j + 1) * ld, g + (j + 2) * ld, g + (j + 3) * ld};
        vaxpy4(out, v + j, rows, ld);
    }
}

/* Rows of the fixed factors are read in the order of a row's nonzeros, i.e.
 * at random: without help every first touch is a cache miss (about half of
 * training time on a 100k x 20k matrix). Requesting the row ALS_PREFETCH
 * nonzeros ahead overlaps those misses with the arithmetic. */
#define ALS_PREFETCH 8

static inline void prefetch_row(const float *row, size_t ld) {
    for (size_t j = 0; j < ld; j += ALS_LANES)
        __builtin_prefetch(row + j, 0, 3);
}

static size_t round_up(size_t n, size_t to) {
    return (n + to - 1) / to * to;
}

/* aligned_alloc with the size rounded up as C11 requires; free() releases it. */
static float *alloc_aligned(size_t floats) {
    size_t bytes = round_up(floats ? floats * sizeof(float) : 1, ALS_ALIGN);
    return aligned_alloc(ALS_ALIGN, bytes);
}

/* ---- Gram matrix ------------------------------------------------------- */

/* Fills g (f x f with row stride ldg) with YtY of the n x f matrix y (row
 * stride ldy), both triangles. OpenBLAS computes the upper one. */
static void gram(const float *y, size_t n, size_t f, size_t ldy, float *g, size_t ldg) {
    if (n == 0) {
        for (size_t j = 0; j < f; j++)
            memset(g + j * ldg, 0, f * sizeof *g);
        return;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)f, (int)n, 1.0f, y, (int)ldy, 0.0f, g,
                (int)ldg);
    for (size_t j = 0; j < f; j++)
        for (size_t l = 0; l < j; l++)
            g[j * ldg + l] = g[l * ldg + j];
}

void als_gram(const float *y, uint32_t n, uint32_t factors, float *yty) {
    gram(y, n, factors, factors, yty, factors);
}

/* ---- one half-iteration ------------------------------------------------- */

/* What a worker needs to solve rows [begin, end) of m against the fixed
 * factors y: x_r for each row, with A = YtY + lambda I in g. */
typedef struct half_step {
    const csr *m;
    const float *y; /* n_cols x ld */
    float *x;       /* n_rows x ld, updated in place (warm start) */
    const float *g; /* ld x ld: YtY + lambda I (padding rows/cols zero) */
    size_t ld;
    float alpha;
    uint32_t cg_steps;
} half_step;

typedef struct worker {
    const half_step *h;
    uint32_t begin, end;
    float *r, *p, *ap; /* ld floats each, owned by train_state */
    /* Loss pass: per-row loss terms and confidence sums, indexed by row. */
    double *row_loss, *row_conf;
    int loss_pass;
} worker;

/* The nonzeros' part of a row's products, with c_k = 1 + alpha m_k and
 * d_k = y_k . v over the nonzeros k in [begin, end):
 *   rhs:  out += sum (c_k - (c_k - 1) d_k) y_k   (Yt C p - Yt (C - I) Y v)
 *   else: out += sum (c_k - 1) d_k y_k           (Yt (C - I) Y v)
 * Four nonzeros at a time: their dot products are independent of each
 * other, and one pass over out takes all four rows. */
static void add_nonzeros(const half_step *h, uint64_t begin, uint64_t end, const float *v,
                         float *out, int rhs) {
    const size_t ld = h->ld;
    const uint32_t *idx = h->m->indices;
    const float *val = h->m->values;
    for (uint64_t k = begin; k < end; k += 4) {
        uint32_t n = end - k < 4 ? (uint32_t)(end - k) : 4;
        const float *y[4];
        float s[4];
        for (uint32_t i = 0; i < n; i++) {
            /* The rows are first touched in the rhs pass: fetch ahead. */
            if (rhs && k + i + ALS_PREFETCH < end)
                prefetch_row(h->y + (size_t)idx[k + i + ALS_PREFETCH] * ld, ld);
            y[i] = h->y + (size_t)idx[k + i] * ld;
            float cm1 = h->alpha * val[k + i], d = vdot(y[i], v, ld);
            s[i] = rhs ? 1.0f + cm1 - cm1 * d : cm1 * d;
        }
        if (n == 4)
            vaxpy4(out, s, y, ld);
        else
            for (uint32_t i = 0; i < n; i++)
                vaxpy(out, s[i], y[i], ld);
    }
}

/* Solves (YtY + lambda I + Yt (C_u - I) Y) x = Yt C_u p(u) for row u with
 * cg_steps conjugate-gradient steps from the current x (Takacs 2011, as
 * benfred/implicit's _least_squares_cg). The products with Yt (C_u - I) Y
 * run over the row's nonzeros only. */
static void solve_row(const half_step *h, uint32_t u, float *restrict r, float *restrict p,
                      float *restrict ap) {
    const size_t ld = h->ld;
    float *x = h->x + (size_t)u * ld;
    uint64_t begin = h->m->indptr[u], end = h->m->indptr[u + 1];
    if (begin == end) {
        memset(x, 0, ld * sizeof *x);
        return;
    }

    /* r = b - A x */
    vsymv(h->g, x, r, ld);
    for (size_t j = 0; j < ld; j++)
        r[j] = -r[j];
    add_nonzeros(h, begin, end, x, r, 1);
    memcpy(p, r, ld * sizeof *p);
    float rsold = vdot(r, r, ld);
    if (rsold < ALS_CG_EPS) return;

    for (uint32_t it = 0; it < h->cg_steps; it++) {
        vsymv(h->g, p, ap, ld);
        add_nonzeros(h, begin, end, p, ap, 0);
        float step = rsold / vdot(p, ap, ld);
        vaxpy(x, step, p, ld);
        vaxpy(r, -step, ap, ld);
        float rsnew = vdot(r, r, ld);
        if (rsnew < ALS_CG_EPS) break;
        float beta = rsnew / rsold;
        for (size_t j = 0; j < ld; j++)
            p[j] = r[j] + beta * p[j];
        rsold = rsnew;
    }
}

/* Loss terms of row u as implicit's calculate_loss computes them: with
 * d_i = x.y_i and g = YtY (no lambda here),
 *   sum over all cells of c (p - d)^2 = x YtY x + sum_nz (c - 2 c d + (c - 1) d^2)
 * since unobserved cells have c = 1 and p = 0. Also returns sum_nz c for the
 * normalization. */
static void loss_row(const half_step *h, uint32_t u, float *restrict r, double *loss,
                     double *conf) {
    const size_t ld = h->ld;
    const float *x = h->x + (size_t)u * ld;
    vsymv(h->g, x, r, ld);
    double l = (double)vdot(r, x, ld), sum_c = 0.0;
    uint64_t end = h->m->indptr[u + 1];
    for (uint64_t k = h->m->indptr[u]; k < end; k++) {
        if (k + ALS_PREFETCH < end)
            prefetch_row(h->y + (size_t)h->m->indices[k + ALS_PREFETCH] * ld, ld);
        const float *y = h->y + (size_t)h->m->indices[k] * ld;
        double c = 1.0 + (double)h->alpha * (double)h->m->values[k];
        double d = (double)vdot(y, x, ld);
        l += c - 2.0 * c * d + (c - 1.0) * d * d;
        sum_c += c;
    }
    *loss = l;
    *conf = sum_c;
}

static void *worker_run(void *arg) {
    worker *w = arg;
    for (uint32_t u = w->begin; u < w->end; u++) {
        if (w->loss_pass)
            loss_row(w->h, u, w->r, &w->row_loss[u], &w->row_conf[u]);
        else
            solve_row(w->h, u, w->r, w->p, w->ap);
    }
    return NULL;
}

/* Splits the rows of m into `threads` contiguous blocks of about equal work
 * (split[t] .. split[t + 1]). A nonzero costs about 2 ld flops per CG pass
 * and a row about ld^2 (the YtY product), hence the weight nnz + ld / 2. */
static void partition(const csr *m, size_t ld, uint32_t threads, uint32_t *split) {
    uint64_t total = 0, acc = 0;
    for (uint32_t r = 0; r < m->n_rows; r++) {
        uint64_t nnz = m->indptr[r + 1] - m->indptr[r];
        total += nnz ? nnz + ld / 2 : 0;
    }
    uint32_t t = 1;
    split[0] = 0;
    for (uint32_t r = 0; r < m->n_rows && t < threads; r++) {
        uint64_t nnz = m->indptr[r + 1] - m->indptr[r];
        acc += nnz ? nnz + ld / 2 : 0;
        while (t < threads && acc * threads >= total * t)
            split[t++] = r + 1;
    }
    while (t <= threads)
        split[t++] = m->n_rows;
}

/* Per-training scratch: one worker (and its three CG vectors) per thread. */
typedef struct train_state {
    uint32_t threads;
    worker *workers;
    float *scratch;                    /* threads x 3 x ld */
    uint32_t *user_split, *item_split; /* threads + 1 each */
    double *row_loss, *row_conf;       /* n_users each */
} train_state;

/* Runs solve_row (or loss_row) over every row of h->m, block t on thread t;
 * the calling thread takes block 0. Rows are independent, so the result is
 * the same whatever the split. A thread that cannot be started has its block
 * run here instead. */
static void run_parallel(train_state *st, const half_step *h, const uint32_t *split,
                         int loss_pass) {
    pthread_t tid[st->threads];
    int started[st->threads];
    for (uint32_t t = 0; t < st->threads; t++) {
        worker *w = &st->workers[t];
        w->h = h;
        w->begin = split[t];
        w->end = split[t + 1];
        w->loss_pass = loss_pass;
        started[t] =
            t > 0 && w->begin < w->end && pthread_create(&tid[t], NULL, worker_run, w) == 0;
    }
    worker_run(&st->workers[0]);
    for (uint32_t t = 1; t < st->threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            worker_run(&st->workers[t]);
    }
}

/* g = YtY + lambda I over the first f of ld columns; padding stays zero. */
static void gram_regularized(const float *y, size_t n, size_t f, size_t ld, float lambda,
                             float *g) {
    memset(g, 0, ld * ld * sizeof *g);
    gram(y, n, f, ld, g, ld);
    for (size_t j = 0; j < f; j++)
        g[j * ld + j] += lambda;
}

static double sum_squares(const float *x, size_t n, size_t ld) {
    double s = 0.0;
    for (size_t r = 0; r < n; r++)
        s += (double)vdot(x + r * ld, x + r * ld, ld);
    return s;
}

/* implicit's normalized training loss of the current factors. g is scratch
 * (ld x ld). */
static double train_loss(train_state *st, const csr *counts, float *x, float *y, float *g, size_t f,
                         size_t ld, const als_params *p) {
    gram_regularized(y, counts->n_cols, f, ld, 0.0f, g);
    half_step h = {.m = counts, .y = y, .x = x, .g = g, .ld = ld, .alpha = p->alpha};
    run_parallel(st, &h, st->user_split, 1);
    double loss = 0.0, conf = 0.0;
    for (uint32_t u = 0; u < counts->n_rows; u++) {
        loss += st->row_loss[u];
        conf += st->row_conf[u];
    }
    loss += (double)p->regularization *
            (sum_squares(x, counts->n_rows, ld) + sum_squares(y, counts->n_cols, ld));
    double cells = (double)counts->n_rows * (double)counts->n_cols - (double)csr_nnz(counts);
    return loss / (conf + cells);
}

/* Uniform [0, 0.01) like implicit 0.7 (random * 0.01); padding zero. */
static void init_factors(float *x, size_t n, size_t f, size_t ld, uint64_t *state) {
    for (size_t r = 0; r < n; r++) {
        float *row = x + r * ld;
        for (size_t j = 0; j < f; j++)
            row[j] = (float)(rng_next(state) >> 40) * 0x1p-24f * 0.01f;
        memset(row + f, 0, (ld - f) * sizeof *row);
    }
}

/* Moves rows of stride ld to stride f in place (f <= ld, so every row moves
 * to an address at or below its own and the copy never overwrites unread
 * data). */
static void compact_rows(float *x, size_t n, size_t f, size_t ld) {
    if (f == ld) return;
    for (size_t r = 0; r < n; r++)
        memmove(x + r * f, x + r * ld, f * sizeof *x);
}

static int check_params(const csr *counts, const als_params *p, err_t *e) {
    if (p->factors == 0 || p->factors > ALS_MAX_FACTORS)
        return err_set(e, ERR_INVALID, "als: factors must be in 1..%d (got %u)", ALS_MAX_FACTORS,
                       p->factors);
    if (p->cg_steps == 0) return err_set(e, ERR_INVALID, "als: cg_steps must be at least 1");
    if (!(p->regularization >= 0.0f) || !isfinite(p->regularization))
        return err_set(e, ERR_INVALID, "als: regularization must be finite and >= 0");
    if (!(p->alpha >= 0.0f) || !isfinite(p->alpha))
        return err_set(e, ERR_INVALID, "als: alpha must be finite and >= 0");
    if (counts->n_rows > INT32_MAX || counts->n_cols > INT32_MAX)
        return err_set(e, ERR_LIMIT, "als: %u x %u matrix exceeds the BLAS int range",
                       counts->n_rows, counts->n_cols);
    uint64_t nnz = csr_nnz(counts);
    for (uint64_t k = 0; k < nnz; k++)
        if (!(counts->values[k] >= 0.0f) || !isfinite(counts->values[k]))
            return err_set(e, ERR_INVALID, "als: count %llu is negative or not finite",
                           (unsigned long long)k);
    return ERR_OK;
}

/* Trains as documented in als.h. Also sets OpenBLAS to one thread for the
 * whole process: parallelism comes from our own workers, and OpenBLAS's
 * spinning threads would compete with them for the cores. The per-iteration
 * seconds reported to progress cover the two half-steps (including YtY), not
 * the loss, which is only computed when progress is set or for the last
 * iteration. */
int als_train(const csr *counts, const als_params *p, als_factors *out, err_t *e) {
    memset(out, 0, sizeof *out);
    int rc = check_params(counts, p, e);
    if (rc) return rc;
    const size_t f = p->factors, ld = round_up(f, ALS_LANES);
    const uint32_t n_users = counts->n_rows, n_items = counts->n_cols;
    uint32_t threads = p->threads;
    if (threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus > 0 ? (uint32_t)cpus : 1;
    }
    if (threads > 256) threads = 256;

    csr t;
    rc = csr_transpose(counts, &t, e);
    if (rc) return rc;
    train_state st = {.threads = threads};
    float *x = alloc_aligned((size_t)n_users * ld), *y = alloc_aligned((size_t)n_items * ld);
    float *g = alloc_aligned(ld * ld);
    st.workers = calloc(threads, sizeof *st.workers);
    st.scratch = alloc_aligned((size_t)threads * 3 * ld);
    st.user_split = malloc(((size_t)threads + 1) * sizeof *st.user_split);
    st.item_split = malloc(((size_t)threads + 1) * sizeof *st.item_split);
    st.row_loss = malloc(((size_t)n_users + 1) * sizeof *st.row_loss);
    st.row_conf = malloc(((size_t)n_users + 1) * sizeof *st.row_conf);
    if (!x || !y || !g || !st.workers || !st.scratch || !st.user_split || !st.item_split ||
        !st.row_loss || !st.row_conf) {
        rc = err_set(e, ERR_NOMEM, "als: out of memory for %u x %u factors at %zu", n_users,
                     n_items, f);
        goto done;
    }
    for (uint32_t i = 0; i < threads; i++) {
        worker *w = &st.workers[i];
        w->r = st.scratch + (size_t)i * 3 * ld;
        w->p = w->r + ld;
        w->ap = w->p + ld;
        w->row_loss = st.row_loss;
        w->row_conf = st.row_conf;
    }
    partition(counts, ld, threads, st.user_split);
    partition(&t, ld, threads, st.item_split);

    uint64_t state = p->seed;
    init_factors(x, n_users, f, ld, &state);
    init_factors(y, n_items, f, ld, &state);
    openblas_set_num_threads(1);

    double loss = NAN;
    for (uint32_t it = 1; it <= p->iterations; it++) {
        double t0 = clock_seconds();
        half_step users = {.m = counts,
                           .y = y,
                           .x = x,
                           .g = g,
                           .ld = ld,
                           .alpha = p->alpha,
                           .cg_steps = p->cg_steps};
        gram_regularized(y, n_items, f, ld, p->regularization, g);
        run_parallel(&st, &users, st.user_split, 0);
        half_step items = {
            .m = &t, .y = x, .x = y, .g = g, .ld = ld, .alpha = p->alpha, .cg_steps = p->cg_steps};
        gram_regularized(x, n_users, f, ld, p->regularization, g);
        run_parallel(&st, &items, st.item_split, 0);
        double seconds = clock_seconds() - t0;
        if (p->progress || it == p->iterations) loss = train_loss(&st, counts, x, y, g, f, ld, p);
        if (p->progress) p->progress(p->progress_ctx, it, seconds, loss);
    }
    if (p->iterations == 0) loss = train_loss(&st, counts, x, y, g, f, ld, p);

    compact_rows(x, n_users, f, ld);
    compact_rows(y, n_items, f, ld);
    out->n_users = n_users;
    out->n_items = n_items;
    out->factors = (uint32_t)f;
    out->user_factors = x;
    out->item_factors = y;
    out->loss = loss;
    x = y = NULL;
done:
    free(x);
    free(y);
    free(g);
    free(st.workers);
    free(st.scratch);
    free(st.user_split);
    free(st.item_split);
    free(st.row_loss);
    free(st.row_conf);
    csr_free(&t);
    return rc;
}

/* ---- fold-in ---------------------------------------------------------- */

/* Cholesky-Banachiewicz factorization of the symmetric f x f matrix whose
 * lower triangle is in a (row-major, double), in place: a's lower triangle
 * becomes L with L L^T = A. Returns 0, or -1 when A is not positive
 * definite. Row-oriented so the inner products run over contiguous memory. */
static int cholesky(double *a, size_t f) {
    for (size_t i = 0; i < f; i++) {
        double *ri = a + i * f;
        for (size_t j = 0; j <= i; j++) {
            const double *rj = a + j * f;
            double s = ri[j];
            for (size_t l = 0; l < j; l++)
                s -= ri[l] * rj[l];
            if (i == j) {
                if (!(s > 0.0)) return -1;
                ri[i] = sqrt(s);
            } else {
                ri[j] = s / rj[j];
            }
        }
    }
    return 0;
}

int als_fold_in(const float *item_factors, uint32_t factors, const float *yty,
                const uint32_t *items, const float *counts, uint32_t n, float regularization,
                float alpha, float *x, err_t *e) {
    if (factors == 0 || factors > ALS_MAX_FACTORS)
        return err_set(e, ERR_INVALID, "als: factors must be in 1..%d (got %u)", ALS_MAX_FACTORS,
                       factors);
    if (!(regularization >= 0.0f) || !isfinite(regularization) || !(alpha >= 0.0f) ||
        !isfinite(alpha))
        return err_set(e, ERR_INVALID, "als: regularization and alpha must be finite and >= 0");
    for (uint32_t k = 0; k < n; k++)
        if (!(counts[k] >= 0.0f) || !isfinite(counts[k]))
            return err_set(e, ERR_INVALID, "als: fold-in count %u is negative or not finite", k);
    const size_t f = factors;
    if (n == 0) {
        /* As in training: a user with no events gets the zero vector. */
        memset(x, 0, f * sizeof *x);
        return ERR_OK;
    }
    /* Double precision: A can be ill-conditioned when lambda is small, and
     * the f^2 accumulation per item would otherwise lose digits. */
    double *a = malloc((f * f + 2 * f) * sizeof *a);
    if (!a) return err_set(e, ERR_NOMEM, "als: out of memory for a %zu x %zu fold-in", f, f);
    double *b = a + f * f, *z = b + f;
    for (size_t j = 0; j < f; j++) {
        for (size_t l = 0; l <= j; l++)
            a[j * f + l] = (double)yty[j * f + l];
        a[j * f + j] += (double)regularization;
        b[j] = 0.0;
    }
    for (uint32_t k = 0; k < n; k++) {
        const float *y = item_factors + (size_t)items[k] * f;
        double c = 1.0 + (double)alpha * (double)counts[k];
        for (size_t j = 0; j < f; j++) {
            double wj = (c - 1.0) * (double)y[j];
            double *row = a + j * f;
            for (size_t l = 0; l <= j; l++)
                row[l] += wj * (double)y[l];
            b[j] += c * (double)y[j];
        }
    }
    if (cholesky(a, f)) {
        free(a);
        return err_set(e, ERR_INVALID,
                       "als: fold-in system is not positive definite (regularization %g)",
                       (double)regularization);
    }
    /* L z = b, then L^T x = z. */
    for (size_t i = 0; i < f; i++) {
        double s = b[i];
        for (size_t l = 0; l < i; l++)
            s -= a[i * f + l] * z[l];
        z[i] = s / a[i * f + i];
    }
    for (size_t i = f; i-- > 0;) {
        double s = z[i];
        for (size_t l = i + 1; l < f; l++)
            s -= a[l * f + i] * z[l];
        z[i] = s / a[i * f + i];
    }
    for (size_t j = 0; j < f; j++)
        x[j] = (float)z[j];
    free(a);
    return ERR_OK;
}
