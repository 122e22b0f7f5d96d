#include "als.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "als_kernel.h"
#include "clock.h"
#include "linalg.h"
#include "mf.h"
#include "rng.h"

/* Internally every factor row is padded to a multiple of ALS_LANES floats and
 * ALS_ALIGN-byte aligned for the row kernels (als_kernel.h). */

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

static size_t round_up(size_t n, size_t to) {
    return (n + to - 1) / to * to;
}

/* aligned_alloc with the size rounded up as C11 requires; free() releases it. */
static float *alloc_aligned(size_t floats) {
    size_t bytes = round_up(floats ? floats * sizeof(float) : 1, ALS_ALIGN);
    return aligned_alloc(ALS_ALIGN, bytes);
}

/* ---- one half-iteration ------------------------------------------------- */

/* The row kernel copy of the cpu level in use (AVX512-BF16 adds nothing to
 * these loops: that level runs the AVX-512 copy). */
static const als_kernel *kernel_in_use(void) {
    switch (cpu_level_in_use()) {
#if defined(RECD_X86_KERNELS)
    case CPU_AVX512BF16:
    case CPU_AVX512:
        return &als_kernel_avx512;
    case CPU_AVX2:
        return &als_kernel_avx2;
#endif
    default:
        return &als_kernel_baseline;
    }
}

const char *als_train_kernel(void) {
    return cpu_level_name(kernel_in_use()->level);
}

typedef struct worker {
    const als_half_step *h;
    const als_kernel *kernel; /* train_state's */
    uint32_t begin, end;
    float *r, *p, *ap; /* ld floats each, owned by train_state */
    /* Loss pass: per-row loss terms and confidence sums, indexed by row. */
    double *row_loss, *row_conf;
    int loss_pass;
} worker;

static void *worker_run(void *arg) {
    worker *w = arg;
    for (uint32_t u = w->begin; u < w->end; u++) {
        if (w->loss_pass)
            w->kernel->loss_row(w->h, u, w->r, &w->row_loss[u], &w->row_conf[u]);
        else
            w->kernel->solve_row(w->h, u, w->r, w->p, w->ap);
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
    const als_kernel *kernel; /* one for the whole training */
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
static void run_parallel(train_state *st, const als_half_step *h, const uint32_t *split,
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
    linalg_gram(y, n, f, ld, g, ld);
    for (size_t j = 0; j < f; j++)
        g[j * ld + j] += lambda;
}

/* implicit's normalized training loss of the current factors. g is scratch
 * (ld x ld). */
static double train_loss(train_state *st, const csr *counts, float *x, float *y, float *g, size_t f,
                         size_t ld, const als_params *p) {
    gram_regularized(y, counts->n_cols, f, ld, 0.0f, g);
    als_half_step h = {.m = counts, .y = y, .x = x, .g = g, .ld = ld, .alpha = p->alpha};
    run_parallel(st, &h, st->user_split, 1);
    double loss = 0.0, conf = 0.0;
    for (uint32_t u = 0; u < counts->n_rows; u++) {
        loss += st->row_loss[u];
        conf += st->row_conf[u];
    }
    loss += (double)p->regularization * (st->kernel->sum_squares(x, counts->n_rows, ld) +
                                         st->kernel->sum_squares(y, counts->n_cols, ld));
    if (p->frequency_regularization > 0.0f) {
        /* freq x (nonzeros of the row) x |row|^2 on both sides. */
        double fr = 0.0;
        for (uint32_t u = 0; u < counts->n_rows; u++)
            fr += (double)(counts->indptr[u + 1] - counts->indptr[u]) *
                  st->kernel->sum_squares(x + (size_t)u * ld, 1, ld);
        for (uint64_t k = 0; k < csr_nnz(counts); k++)
            fr += st->kernel->sum_squares(y + (size_t)counts->indices[k] * ld, 1, ld);
        loss += (double)p->frequency_regularization * fr;
    }
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
    if (p->factors == 0 || p->factors > MF_MAX_FACTORS)
        return err_set(e, ERR_INVALID, "als: factors must be in 1..%d (got %u)", MF_MAX_FACTORS,
                       p->factors);
    if (p->cg_steps == 0) return err_set(e, ERR_INVALID, "als: cg_steps must be at least 1");
    if (!(p->regularization >= 0.0f) || !isfinite(p->regularization) ||
        !(p->frequency_regularization >= 0.0f) || !isfinite(p->frequency_regularization))
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
    train_state st = {.kernel = kernel_in_use(), .threads = threads};
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
        w->kernel = st.kernel;
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
        als_half_step users = {.m = counts,
                               .y = y,
                               .x = x,
                               .g = g,
                               .ld = ld,
                               .alpha = p->alpha,
                               .freq = p->frequency_regularization,
                               .cg_steps = p->cg_steps};
        gram_regularized(y, n_items, f, ld, p->regularization, g);
        run_parallel(&st, &users, st.user_split, 0);
        als_half_step items = {.m = &t,
                               .y = x,
                               .x = y,
                               .g = g,
                               .ld = ld,
                               .alpha = p->alpha,
                               .freq = p->frequency_regularization,
                               .cg_steps = p->cg_steps};
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
