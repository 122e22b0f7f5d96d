#include "eval.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"

/* Marks train/test per user. The train count is floor((1 - f) n) computed
 * with a small guard against binary rounding: (1 - 0.3) * 90 evaluates to
 * 62.99999999999999, which would train on 62 events where the protocol says
 * 63. test_fraction outside [0, 1] is clamped. */
void eval_split_last_fraction(const ev_set *s, const uint64_t *user_start, double test_fraction,
                              uint8_t *is_test) {
    if (!(test_fraction > 0.0)) test_fraction = 0.0;
    if (test_fraction > 1.0) test_fraction = 1.0;
    uint32_t n_users = idmap_size(s->users);
    for (uint32_t u = 0; u < n_users; u++) {
        uint64_t begin = user_start[u], n = user_start[u + 1] - begin;
        uint64_t n_train = (uint64_t)floor((1.0 - test_fraction) * (double)n + 1e-9);
        if (n_train > n) n_train = n;
        memset(is_test + begin, 0, n_train);
        memset(is_test + begin + n_train, 1, n - n_train);
    }
}

int eval_split_matrices(const ev_set *s, const uint8_t *is_test, csr *train, csr *test, err_t *e) {
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    uint32_t n_users = idmap_size(s->users), n_items = idmap_size(s->items);
    size_t n_test = 0;
    for (size_t i = 0; i < s->n; i++)
        n_test += is_test[i] != 0;
    size_t n_train = s->n - n_test;
    uint32_t *rows = malloc((s->n ? s->n : 1) * sizeof *rows);
    uint32_t *cols = malloc((s->n ? s->n : 1) * sizeof *cols);
    if (!rows || !cols) {
        free(rows);
        free(cols);
        return err_set(e, ERR_NOMEM, "eval: out of memory splitting %zu events", s->n);
    }
    /* Train triplets fill the front of the arrays, test ones the back. */
    size_t a = 0, b = n_train;
    for (size_t i = 0; i < s->n; i++) {
        size_t at = is_test[i] ? b++ : a++;
        rows[at] = s->events[i].user;
        cols[at] = s->events[i].item;
    }
    int rc = csr_from_triplets(n_users, n_items, rows, cols, NULL, n_train, train, e);
    if (!rc) {
        rc = csr_from_triplets(n_users, n_items, rows + n_train, cols + n_train, NULL, n_test, test,
                               e);
        if (rc) csr_free(train);
    }
    free(rows);
    free(cols);
    return rc;
}

/* ---- ranking metrics --------------------------------------------------- */

/* Per-user metric values, summed in user order after the parallel part so
 * the result does not depend on the thread count. */
typedef struct user_metrics {
    double precision, recall, ndcg, ap, hit;
} user_metrics;

typedef struct eval_job {
    eval_recommend_fn rec;
    void *ctx;
    const csr *train, *test;
    uint32_t k;
    const uint32_t *users;  /* users with test items */
    user_metrics *um;       /* one per entry of users */
    const double *discount; /* discount[i] = 1 / log2(i + 2), i < k */
} eval_job;

typedef struct eval_worker {
    const eval_job *job;
    uint32_t begin, end; /* range of job->users */
    uint32_t *out;       /* k item slots */
    uint8_t *seen;       /* n_items flags: recommended to someone */
} eval_worker;

/* Metrics of one user with binary relevance (relevant = the user's distinct
 * test items, R of them) over the list L of at most k items:
 *   precision = hits / k                       (standard; implicit divides by min(k, R))
 *   recall    = hits / R
 *   ndcg      = DCG / IDCG, DCG = sum over hits at 0-based rank i of 1/log2(i + 2),
 *               IDCG = sum_{i < min(k, R)} 1/log2(i + 2)     (exactly implicit's)
 *   ap        = sum over hits of (hits so far)/(i + 1), divided by min(k, R)
 *               (implicit's MAP@k)
 *   hit       = 1 when hits > 0. */
static void score_user(const eval_job *j, uint32_t u, const uint32_t *list, uint32_t n,
                       user_metrics *m) {
    uint64_t rel = j->test->indptr[u + 1] - j->test->indptr[u];
    uint32_t hits = 0;
    double dcg = 0.0, ap = 0.0, idcg = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        if (!csr_has(j->test, u, list[i])) continue;
        hits++;
        dcg += j->discount[i];
        ap += (double)hits / (double)(i + 1);
    }
    uint64_t ideal = rel < j->k ? rel : j->k;
    for (uint64_t i = 0; i < ideal; i++)
        idcg += j->discount[i];
    m->precision = (double)hits / (double)j->k;
    m->recall = (double)hits / (double)rel;
    m->ndcg = dcg / idcg;
    m->ap = ap / (double)ideal;
    m->hit = hits > 0;
}

static void *eval_worker_run(void *arg) {
    eval_worker *w = arg;
    const eval_job *j = w->job;
    for (uint32_t i = w->begin; i < w->end; i++) {
        uint32_t u = j->users[i];
        uint32_t n = j->rec(j->ctx, u, j->k, j->train, w->out);
        if (n > j->k) n = j->k;
        for (uint32_t r = 0; r < n; r++)
            if (w->out[r] < j->train->n_cols) w->seen[w->out[r]] = 1;
        score_user(j, u, w->out, n, &j->um[i]);
    }
    return NULL;
}

/* Users are split in contiguous equal blocks: every user costs about the
 * same (one scoring of the catalogue). A thread that cannot be started has
 * its block run on the calling thread. */
int eval_ranking(eval_recommend_fn rec, void *ctx, const csr *train, const csr *test, uint32_t k,
                 uint32_t threads, eval_metrics *m, err_t *e) {
    memset(m, 0, sizeof *m);
    m->k = k;
    if (k == 0) return err_set(e, ERR_INVALID, "eval: k must be at least 1");
    if (train->n_rows != test->n_rows || train->n_cols != test->n_cols)
        return err_set(e, ERR_INVALID, "eval: train is %u x %u but test is %u x %u", train->n_rows,
                       train->n_cols, test->n_rows, test->n_cols);
    if (threads == 0) threads = 1;
    if (threads > 256) threads = 256;
    uint32_t n_items = train->n_cols, n_eval = 0;
    for (uint32_t u = 0; u < test->n_rows; u++)
        n_eval += test->indptr[u + 1] > test->indptr[u];

    uint32_t *users = malloc(((size_t)n_eval + 1) * sizeof *users);
    user_metrics *um = calloc((size_t)n_eval + 1, sizeof *um);
    double *discount = malloc((size_t)k * sizeof *discount);
    eval_worker *workers = calloc(threads, sizeof *workers);
    uint32_t *outs = malloc((size_t)threads * k * sizeof *outs);
    uint8_t *seen = calloc((size_t)threads * n_items + 1, 1);
    pthread_t *tid = calloc(threads, sizeof *tid);
    int *started = calloc(threads, sizeof *started);
    int rc = ERR_OK;
    if (!users || !um || !discount || !workers || !outs || !seen || !tid || !started) {
        rc = err_set(e, ERR_NOMEM, "eval: out of memory for %u users, k %u", n_eval, k);
        goto done;
    }
    n_eval = 0;
    for (uint32_t u = 0; u < test->n_rows; u++)
        if (test->indptr[u + 1] > test->indptr[u]) users[n_eval++] = u;
    for (uint32_t i = 0; i < k; i++)
        discount[i] = 1.0 / log2((double)i + 2.0);

    eval_job job = {.rec = rec,
                    .ctx = ctx,
                    .train = train,
                    .test = test,
                    .k = k,
                    .users = users,
                    .um = um,
                    .discount = discount};
    for (uint32_t t = 0; t < threads; t++) {
        eval_worker *w = &workers[t];
        w->job = &job;
        w->begin = (uint32_t)((uint64_t)n_eval * t / threads);
        w->end = (uint32_t)((uint64_t)n_eval * (t + 1) / threads);
        w->out = outs + (size_t)t * k;
        w->seen = seen + (size_t)t * n_items;
        started[t] =
            t > 0 && w->begin < w->end && pthread_create(&tid[t], NULL, eval_worker_run, w) == 0;
    }
    eval_worker_run(&workers[0]);
    for (uint32_t t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            eval_worker_run(&workers[t]);
    }

    for (uint32_t i = 0; i < n_eval; i++) {
        m->precision += um[i].precision;
        m->recall += um[i].recall;
        m->ndcg += um[i].ndcg;
        m->map += um[i].ap;
        m->hit_rate += um[i].hit;
    }
    m->users = n_eval;
    if (n_eval) {
        m->precision /= n_eval;
        m->recall /= n_eval;
        m->ndcg /= n_eval;
        m->map /= n_eval;
        m->hit_rate /= n_eval;
    }
    uint32_t covered = 0;
    for (uint32_t i = 0; i < n_items; i++) {
        uint8_t any = 0;
        for (uint32_t t = 0; t < threads; t++)
            any |= seen[(size_t)t * n_items + i];
        covered += any;
    }
    m->item_coverage = n_items ? (double)covered / n_items : 0.0;
done:
    free(users);
    free(um);
    free(discount);
    free(workers);
    free(outs);
    free(seen);
    free(tid);
    free(started);
    return rc;
}

/* ---- most-popular baseline ------------------------------------------- */

/* qsort has no context argument; the popularity counts reach the comparator
 * through this pointer, set only while eval_popular_init sorts (callers
 * build baselines from one thread). */
static const uint32_t *popular_counts;

/* More training users first; ties by lower item index, so the list is
 * deterministic. */
static int cmp_popular(const void *pa, const void *pb) {
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    uint32_t ca = popular_counts[a], cb = popular_counts[b];
    if (ca != cb) return (ca < cb) - (ca > cb);
    return (a > b) - (a < b);
}

int eval_popular_init(const csr *train, eval_popular *p, err_t *e) {
    memset(p, 0, sizeof *p);
    uint32_t n = train->n_cols;
    uint32_t *counts = calloc((size_t)n + 1, sizeof *counts);
    p->ranked = malloc(((size_t)n + 1) * sizeof *p->ranked);
    if (!counts || !p->ranked) {
        free(counts);
        free(p->ranked);
        p->ranked = NULL;
        return err_set(e, ERR_NOMEM, "eval: out of memory ranking %u items", n);
    }
    /* Column indexes are distinct within a row, so each nonzero is one
     * distinct user of the item. */
    uint64_t nnz = csr_nnz(train);
    for (uint64_t i = 0; i < nnz; i++)
        counts[train->indices[i]]++;
    for (uint32_t i = 0; i < n; i++)
        p->ranked[i] = i;
    popular_counts = counts;
    qsort(p->ranked, n, sizeof *p->ranked, cmp_popular);
    popular_counts = NULL;
    p->n = n;
    free(counts);
    return ERR_OK;
}

void eval_popular_free(eval_popular *p) {
    free(p->ranked);
    memset(p, 0, sizeof *p);
}

uint32_t eval_popular_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train,
                                uint32_t *out) {
    const eval_popular *p = ctx;
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n && n < k; i++)
        if (!csr_has(train, u, p->ranked[i])) out[n++] = p->ranked[i];
    return n;
}

/* ---- matrix-factorization recommender --------------------------------- */

/* Scores with one sgemv (OpenBLAS is expected to be single-threaded, as
 * als_train leaves it, since eval_ranking already runs users in parallel). */
uint32_t eval_mf_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out) {
    eval_mf *mf = ctx;
    uint64_t begin = train->indptr[u], end = train->indptr[u + 1];
    if (begin == end)
        return mf->fallback ? eval_popular_recommend((void *)mf->fallback, u, k, train, out) : 0;
    float *scores = malloc(((size_t)mf->n_items + 1) * sizeof *scores);
    topk_entry *top = malloc(((size_t)k + 1) * sizeof *top);
    if (!scores || !top) {
        free(scores);
        free(top);
        __atomic_store_n(&mf->failed, 1, __ATOMIC_RELAXED);
        return 0;
    }
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)mf->n_items, (int)mf->factors, 1.0f,
                mf->item_factors, (int)mf->factors, mf->user_factors + (size_t)u * mf->factors, 1,
                0.0f, scores, 1);
    for (uint64_t i = begin; i < end; i++)
        scores[train->indices[i]] = -INFINITY;
    uint32_t n = topk_select(scores, mf->n_items, k, top);
    for (uint32_t i = 0; i < n; i++)
        out[i] = top[i].index;
    free(scores);
    free(top);
    return n;
}
