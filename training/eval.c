#include "eval.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mf.h"
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

void eval_split_cutoff(const ev_set *s, int64_t cutoff, uint8_t *is_test) {
    for (size_t i = 0; i < s->n; i++)
        is_test[i] = s->events[i].ts >= cutoff;
}

static int cmp_i64(const void *pa, const void *pb) {
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return (a > b) - (a < b);
}

/* Sorts a copy of the timestamps: O(n log n) once per run, negligible next
 * to training. The same rounding guard as eval_split_last_fraction. */
int eval_cutoff_for_fraction(const ev_set *s, double fraction, int64_t *cutoff, err_t *e) {
    if (!(fraction > 0.0 && fraction < 1.0))
        return err_set(e, ERR_INVALID, "eval: cutoff fraction %g is not between 0 and 1", fraction);
    if (s->n == 0) return err_set(e, ERR_INVALID, "eval: no events to split");
    int64_t *ts = malloc(s->n * sizeof *ts);
    if (!ts) return err_set(e, ERR_NOMEM, "eval: out of memory sorting %zu timestamps", s->n);
    for (size_t i = 0; i < s->n; i++)
        ts[i] = s->events[i].ts;
    qsort(ts, s->n, sizeof *ts, cmp_i64);
    size_t at = (size_t)floor((1.0 - fraction) * (double)s->n + 1e-9);
    if (at >= s->n) at = s->n - 1;
    *cutoff = ts[at];
    free(ts);
    return ERR_OK;
}

int64_t eval_train_end(const ev_set *s, const uint8_t *is_test) {
    int64_t end = INT64_MIN;
    for (size_t i = 0; i < s->n; i++)
        if ((!is_test || !is_test[i]) && s->events[i].ts > end) end = s->events[i].ts;
    return end;
}

double eval_decay(int64_t ts, int64_t end, double half_life_days) {
    if (!(half_life_days > 0.0) || ts >= end) return 1.0;
    double age_days = (double)(end - ts) / 86400.0;
    return exp2(-age_days / half_life_days);
}

void eval_event_weights(const ev_set *s, double half_life_days, int64_t end, float *w) {
    for (size_t i = 0; i < s->n; i++)
        w[i] =
            (float)((double)s->events[i].weight * eval_decay(s->events[i].ts, end, half_life_days));
}

int eval_split_matrices(const ev_set *s, const uint8_t *is_test, const float *train_weights,
                        csr *train, csr *test, err_t *e) {
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    uint32_t n_users = idmap_size(s->users), n_items = idmap_size(s->items);
    size_t n_test = 0;
    for (size_t i = 0; i < s->n; i++)
        n_test += is_test[i] != 0;
    size_t n_train = s->n - n_test;
    uint32_t *rows = malloc((s->n ? s->n : 1) * sizeof *rows);
    uint32_t *cols = malloc((s->n ? s->n : 1) * sizeof *cols);
    float *vals = train_weights ? malloc((n_train ? n_train : 1) * sizeof *vals) : NULL;
    if (!rows || !cols || (train_weights && !vals)) {
        free(rows);
        free(cols);
        free(vals);
        return err_set(e, ERR_NOMEM, "eval: out of memory splitting %zu events", s->n);
    }
    /* Train triplets fill the front of the arrays, test ones the back. */
    size_t a = 0, b = n_train;
    for (size_t i = 0; i < s->n; i++) {
        size_t at = is_test[i] ? b++ : a++;
        rows[at] = s->events[i].user;
        cols[at] = s->events[i].item;
        if (vals && !is_test[i]) vals[at] = train_weights[i];
    }
    int rc = csr_from_triplets(n_users, n_items, rows, cols, vals, n_train, train, e);
    if (!rc) {
        rc = csr_from_triplets(n_users, n_items, rows + n_train, cols + n_train, NULL, n_test, test,
                               e);
        if (rc) csr_free(train);
    }
    free(rows);
    free(cols);
    free(vals);
    return rc;
}

/* ---- ranking metrics --------------------------------------------------- */

void eval_config_init(eval_config *c) {
    memset(c, 0, sizeof *c);
    c->ks[0] = 10;
    c->n_ks = 1;
    c->threads = 1;
    c->new_user_max = 3;
}

static int cmp_u32(const void *pa, const void *pb) {
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return (a > b) - (a < b);
}

int eval_parse_ks(const char *arg, eval_config *c, err_t *e) {
    uint32_t ks[EVAL_MAX_KS], n = 0;
    const char *p = arg;
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9')
            return err_set(e, ERR_INVALID, "'%s' is not a comma-separated list of numbers", arg);
        unsigned long v = strtoul(p, &end, 10);
        if (v < 1 || v > 100000) return err_set(e, ERR_INVALID, "k %lu is not in 1..100000", v);
        if (n == EVAL_MAX_KS) return err_set(e, ERR_INVALID, "at most %d values of k", EVAL_MAX_KS);
        ks[n++] = (uint32_t)v;
        if (*end == '\0') break;
        if (*end != ',')
            return err_set(e, ERR_INVALID, "'%s' is not a comma-separated list of numbers", arg);
        p = end + 1;
    }
    qsort(ks, n, sizeof *ks, cmp_u32);
    c->n_ks = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || ks[i] != ks[i - 1]) c->ks[c->n_ks++] = ks[i];
    return ERR_OK;
}

/* Per-user metric values at one k, summed in user order after the parallel
 * part so the result does not depend on the thread count. diversity and
 * novelty are NAN when the list is too short to define them. */
typedef struct user_metrics {
    double precision, recall, f1, ndcg, ap, hit, diversity, novelty;
} user_metrics;

typedef struct eval_job {
    eval_recommend_fn rec;
    void *ctx;
    const csr *train, *test;
    const eval_config *c;
    uint32_t kmax;
    const uint32_t *users;  /* users with test items */
    user_metrics *um;       /* n_ks per entry of users */
    uint8_t *personalized;  /* one per entry of users */
    const double *discount; /* discount[i] = 1 / log2(i + 2), i < kmax */
    const double *info;     /* -log2(popularity share) per item */
    const float *unit;      /* item factors scaled to unit length (zero rows stay zero); or NULL */
} eval_job;

typedef struct eval_worker {
    const eval_job *job;
    uint32_t begin, end; /* range of job->users */
    uint32_t *out;       /* kmax item slots */
    uint8_t *seen;       /* n_ks x n_items: bit 0 recommended to anyone, bit 1 to a new user */
} eval_worker;

/* Metrics of one user with binary relevance (relevant = the user's distinct
 * test items, R of them) over the list L (n items, best first), at each k:
 *   precision = hits / k                       (standard; implicit divides by min(k, R))
 *   recall    = hits / R
 *   f1        = 2 P R / (P + R), 0 without hits
 *   ndcg      = DCG / IDCG, DCG = sum over hits at 0-based rank i of 1/log2(i + 2),
 *               IDCG = sum_{i < min(k, R)} 1/log2(i + 2)     (exactly implicit's)
 *   ap        = sum over hits of (hits so far)/(i + 1), divided by min(k, R)
 *               (implicit's MAP@k)
 *   hit       = 1 when hits > 0
 *   diversity = 1 - mean over pairs a < b of cos(y_a, y_b) among the first
 *               min(k, n) items
 *   novelty   = mean of info[] over the first min(k, n) items.
 * The list is walked once; each k reads the running sums at its length. */
static void score_user(const eval_job *j, uint32_t u, const uint32_t *list, uint32_t n,
                       user_metrics *m) {
    const eval_config *c = j->c;
    uint64_t rel = j->test->indptr[u + 1] - j->test->indptr[u];
    uint32_t hits = 0, next = 0;
    double dcg = 0.0, ap = 0.0, info = 0.0, cos_sum = 0.0;
    size_t f = c->factors;
    for (uint32_t i = 0; i <= n && next < c->n_ks; i++) {
        /* Emit every k whose list prefix is [0, i) (or the whole list). */
        while (next < c->n_ks && (c->ks[next] == i || i == n)) {
            uint32_t k = c->ks[next], len = i;
            uint64_t ideal = rel < k ? rel : k;
            double idcg = 0.0;
            for (uint64_t r = 0; r < ideal; r++)
                idcg += j->discount[r];
            user_metrics *x = &m[next];
            x->precision = (double)hits / (double)k;
            x->recall = (double)hits / (double)rel;
            x->f1 = hits ? 2.0 * x->precision * x->recall / (x->precision + x->recall) : 0.0;
            x->ndcg = dcg / idcg;
            x->ap = ap / (double)ideal;
            x->hit = hits > 0;
            x->novelty = len ? info / len : NAN;
            x->diversity =
                j->unit && len >= 2 ? 1.0 - cos_sum / ((double)len * (len - 1) / 2.0) : NAN;
            next++;
        }
        if (i == n) break;
        uint32_t item = list[i];
        if (csr_has(j->test, u, item)) {
            hits++;
            dcg += j->discount[i];
            ap += (double)hits / (double)(i + 1);
        }
        info += j->info[item];
        if (j->unit) {
            const float *y = j->unit + (size_t)item * f;
            for (uint32_t p = 0; p < i; p++) {
                const float *z = j->unit + (size_t)list[p] * f;
                double d = 0.0;
                for (size_t l = 0; l < f; l++)
                    d += (double)y[l] * z[l];
                cos_sum += d;
            }
        }
    }
}

static void *eval_worker_run(void *arg) {
    eval_worker *w = arg;
    const eval_job *j = w->job;
    const eval_config *c = j->c;
    uint32_t n_items = j->train->n_cols;
    for (uint32_t i = w->begin; i < w->end; i++) {
        uint32_t u = j->users[i];
        int personalized = 0;
        uint32_t n = j->rec(j->ctx, u, j->kmax, j->train, w->out, &personalized);
        if (n > j->kmax) n = j->kmax;
        uint32_t valid = 0;
        while (valid < n && w->out[valid] < n_items)
            valid++;
        int is_new = j->train->indptr[u + 1] - j->train->indptr[u] <= c->new_user_max;
        uint8_t mark = (uint8_t)(1u | (is_new ? 2u : 0u));
        for (uint32_t q = 0; q < c->n_ks; q++) {
            uint32_t len = c->ks[q] < valid ? c->ks[q] : valid;
            uint8_t *seen = w->seen + (size_t)q * n_items;
            for (uint32_t r = 0; r < len; r++)
                seen[w->out[r]] |= mark;
        }
        j->personalized[i] = personalized && valid > 0;
        score_user(j, u, w->out, valid, &j->um[(size_t)i * c->n_ks]);
    }
    return NULL;
}

/* Adds user i's metrics into the group means (sums here, divided later).
 * Diversity and novelty keep their own counts since they skip short lists. */
typedef struct group_sum {
    double v[8];
    uint32_t users, n_div, n_nov, personalized;
} group_sum;

static void group_add(group_sum *g, const user_metrics *x, int personalized) {
    g->v[0] += x->precision;
    g->v[1] += x->recall;
    g->v[2] += x->f1;
    g->v[3] += x->ndcg;
    g->v[4] += x->ap;
    g->v[5] += x->hit;
    if (!isnan(x->diversity)) g->v[6] += x->diversity, g->n_div++;
    if (!isnan(x->novelty)) g->v[7] += x->novelty, g->n_nov++;
    g->users++;
    g->personalized += personalized != 0;
}

static void group_mean(const group_sum *g, uint32_t k, uint32_t covered, uint32_t n_items,
                       eval_metrics *m) {
    memset(m, 0, sizeof *m);
    m->k = k;
    m->users = g->users;
    double n = g->users ? (double)g->users : 1.0;
    m->precision = g->v[0] / n;
    m->recall = g->v[1] / n;
    m->f1 = g->v[2] / n;
    m->ndcg = g->v[3] / n;
    m->map = g->v[4] / n;
    m->hit_rate = g->v[5] / n;
    m->diversity = g->n_div ? g->v[6] / g->n_div : NAN;
    m->novelty = g->n_nov ? g->v[7] / g->n_nov : NAN;
    m->user_coverage = g->personalized / n;
    m->item_coverage = n_items ? (double)covered / n_items : 0.0;
}

/* Users are split in contiguous equal blocks: every user costs about the
 * same (one scoring of the catalogue). A thread that cannot be started has
 * its block run on the calling thread. */
int eval_ranking(eval_recommend_fn rec, void *ctx, const csr *train, const csr *test,
                 const eval_config *c, eval_metrics *all, eval_metrics *fresh, err_t *e) {
    if (c->n_ks == 0 || c->n_ks > EVAL_MAX_KS)
        return err_set(e, ERR_INVALID, "eval: between 1 and %d values of k", EVAL_MAX_KS);
    for (uint32_t q = 0; q < c->n_ks; q++)
        if (c->ks[q] == 0 || (q > 0 && c->ks[q] <= c->ks[q - 1]))
            return err_set(e, ERR_INVALID, "eval: k must be at least 1, ascending and distinct");
    if (train->n_rows != test->n_rows || train->n_cols != test->n_cols)
        return err_set(e, ERR_INVALID, "eval: train is %u x %u but test is %u x %u", train->n_rows,
                       train->n_cols, test->n_rows, test->n_cols);
    uint32_t threads = c->threads ? c->threads : 1;
    if (threads > 256) threads = 256;
    uint32_t n_items = train->n_cols, n_eval = 0, kmax = c->ks[c->n_ks - 1], n_ks = c->n_ks;
    for (uint32_t u = 0; u < test->n_rows; u++)
        n_eval += test->indptr[u + 1] > test->indptr[u];

    uint32_t *users = malloc(((size_t)n_eval + 1) * sizeof *users);
    user_metrics *um = calloc((size_t)n_eval * n_ks + 1, sizeof *um);
    uint8_t *personalized = calloc((size_t)n_eval + 1, 1);
    double *discount = malloc((size_t)kmax * sizeof *discount);
    double *info = malloc(((size_t)n_items + 1) * sizeof *info);
    uint32_t *counts = calloc((size_t)n_items + 1, sizeof *counts);
    float *unit =
        c->item_factors ? malloc(((size_t)n_items * c->factors + 1) * sizeof *unit) : NULL;
    eval_worker *workers = calloc(threads, sizeof *workers);
    uint32_t *outs = malloc((size_t)threads * kmax * sizeof *outs);
    uint8_t *seen = calloc((size_t)threads * n_ks * n_items + 1, 1);
    pthread_t *tid = calloc(threads, sizeof *tid);
    int *started = calloc(threads, sizeof *started);
    group_sum *sums = calloc(2 * (size_t)n_ks, sizeof *sums);
    int rc = ERR_OK;
    if (!users || !um || !personalized || !discount || !info || !counts ||
        (c->item_factors && !unit) || !workers || !outs || !seen || !tid || !started || !sums) {
        rc = err_set(e, ERR_NOMEM, "eval: out of memory for %u users, k %u", n_eval, kmax);
        goto done;
    }
    n_eval = 0;
    for (uint32_t u = 0; u < test->n_rows; u++)
        if (test->indptr[u + 1] > test->indptr[u]) users[n_eval++] = u;
    for (uint32_t i = 0; i < kmax; i++)
        discount[i] = 1.0 / log2((double)i + 2.0);
    /* Column indexes are distinct within a row: each nonzero is one user. */
    uint32_t trained_users = 0;
    for (uint32_t u = 0; u < train->n_rows; u++)
        trained_users += train->indptr[u + 1] > train->indptr[u];
    for (uint64_t i = 0; i < csr_nnz(train); i++)
        counts[train->indices[i]]++;
    for (uint32_t i = 0; i < n_items; i++) {
        double share = (double)(counts[i] ? counts[i] : 1) / (trained_users ? trained_users : 1);
        info[i] = -log2(share);
    }
    if (unit) {
        for (uint32_t i = 0; i < n_items; i++) {
            const float *y = c->item_factors + (size_t)i * c->factors;
            float *z = unit + (size_t)i * c->factors;
            double norm = 0.0;
            for (uint32_t l = 0; l < c->factors; l++)
                norm += (double)y[l] * y[l];
            double scale = norm > 0.0 ? 1.0 / sqrt(norm) : 0.0;
            for (uint32_t l = 0; l < c->factors; l++)
                z[l] = (float)(y[l] * scale);
        }
    }

    eval_job job = {.rec = rec,
                    .ctx = ctx,
                    .train = train,
                    .test = test,
                    .c = c,
                    .kmax = kmax,
                    .users = users,
                    .um = um,
                    .personalized = personalized,
                    .discount = discount,
                    .info = info,
                    .unit = unit};
    for (uint32_t t = 0; t < threads; t++) {
        eval_worker *w = &workers[t];
        w->job = &job;
        w->begin = (uint32_t)((uint64_t)n_eval * t / threads);
        w->end = (uint32_t)((uint64_t)n_eval * (t + 1) / threads);
        w->out = outs + (size_t)t * kmax;
        w->seen = seen + (size_t)t * n_ks * n_items;
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
        uint32_t u = users[i];
        int is_new = train->indptr[u + 1] - train->indptr[u] <= c->new_user_max;
        for (uint32_t q = 0; q < n_ks; q++) {
            group_add(&sums[q], &um[(size_t)i * n_ks + q], personalized[i]);
            if (is_new) group_add(&sums[n_ks + q], &um[(size_t)i * n_ks + q], personalized[i]);
        }
    }
    for (uint32_t q = 0; q < n_ks; q++) {
        uint32_t covered_all = 0, covered_new = 0;
        for (uint32_t i = 0; i < n_items; i++) {
            uint8_t any = 0;
            for (uint32_t t = 0; t < threads; t++)
                any |= seen[((size_t)t * n_ks + q) * n_items + i];
            covered_all += (any & 1) != 0;
            covered_new += (any & 2) != 0;
        }
        group_mean(&sums[q], c->ks[q], covered_all, n_items, &all[q]);
        if (fresh) group_mean(&sums[n_ks + q], c->ks[q], covered_new, n_items, &fresh[q]);
    }
done:
    free(users);
    free(um);
    free(personalized);
    free(discount);
    free(info);
    free(counts);
    free(unit);
    free(workers);
    free(outs);
    free(seen);
    free(tid);
    free(started);
    free(sums);
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
    p->popularity = malloc(((size_t)n + 1) * sizeof *p->popularity);
    if (!counts || !p->ranked || !p->popularity) {
        free(counts);
        eval_popular_free(p);
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
    for (uint32_t i = 0; i < n; i++)
        p->popularity[i] = (float)counts[i];
    p->max_popularity = n ? p->popularity[p->ranked[0]] : 0.0f;
    p->n = n;
    free(counts);
    return ERR_OK;
}

void eval_popular_free(eval_popular *p) {
    free(p->ranked);
    free(p->popularity);
    memset(p, 0, sizeof *p);
}

uint32_t eval_popular_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                                int *personalized) {
    const eval_popular *p = ctx;
    *personalized = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n && n < k; i++)
        if (!csr_has(train, u, p->ranked[i])) out[n++] = p->ranked[i];
    return n;
}

/* ---- matrix-factorization recommender --------------------------------- */

/* Scores with one sgemv (OpenBLAS is expected to be single-threaded, as
 * als_train leaves it, since eval_ranking already runs users in parallel). */
uint32_t eval_mf_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                           int *personalized) {
    eval_mf *mf = ctx;
    uint64_t begin = train->indptr[u], end = train->indptr[u + 1];
    *personalized = 0;
    if (begin == end || isinf(mf->blend))
        return mf->fallback
                   ? eval_popular_recommend((void *)mf->fallback, u, k, train, out, personalized)
                   : 0;
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
    if (mf->blend > 0.0f)
        mf_blend_popularity(scores, mf->fallback->popularity, mf->n_items,
                            mf->fallback->max_popularity, mf->blend);
    for (uint64_t i = begin; i < end; i++)
        scores[train->indices[i]] = -INFINITY;
    uint32_t n = topk_select(scores, mf->n_items, k, top);
    for (uint32_t i = 0; i < n; i++)
        out[i] = top[i].index;
    *personalized = 1;
    free(scores);
    free(top);
    return n;
}

/* ---- reports ----------------------------------------------------------- */

/* One cell: aligned text pads to the column width, Markdown separates by
 * pipes; NAN (undefined) prints as n/a. */
static void cell(FILE *f, int markdown, double v) {
    if (markdown)
        isnan(v) ? fprintf(f, " n/a |") : fprintf(f, " %.4f |", v);
    else
        isnan(v) ? fprintf(f, " %8s", "n/a") : fprintf(f, " %8.4f", v);
}

static void head(FILE *f, int markdown, const char *name, uint32_t k) {
    char h[32];
    if (k)
        snprintf(h, sizeof h, "%s@%u", name, k);
    else
        snprintf(h, sizeof h, "%s", name);
    markdown ? fprintf(f, " %s |", h) : fprintf(f, " %8s", h);
}

static void row_start(FILE *f, int markdown, const char *name) {
    markdown ? fprintf(f, "| %s |", name) : fprintf(f, "%-16s", name);
}

/* The |---| line under a Markdown header of cols columns. */
static void rule(FILE *f, int markdown, uint32_t cols) {
    if (!markdown) return;
    fprintf(f, "|---|");
    for (uint32_t i = 0; i < cols; i++)
        fprintf(f, "---:|");
    fprintf(f, "\n");
}

void eval_print_tables(FILE *f, const eval_row *rows, uint32_t n_rows, uint32_t n_ks,
                       int markdown) {
    static const char *acc[6] = {"P", "R", "F1", "NDCG", "MAP", "HR"};
    row_start(f, markdown, "model");
    for (uint32_t q = 0; q < n_ks; q++)
        for (int a = 0; a < 6; a++)
            head(f, markdown, acc[a], rows[0].m[q].k);
    head(f, markdown, "users", 0);
    fprintf(f, "\n");
    rule(f, markdown, 6 * n_ks + 1);
    for (uint32_t r = 0; r < n_rows; r++) {
        row_start(f, markdown, rows[r].name);
        for (uint32_t q = 0; q < n_ks; q++) {
            const eval_metrics *m = &rows[r].m[q];
            double v[6] = {m->precision, m->recall, m->f1, m->ndcg, m->map, m->hit_rate};
            for (int a = 0; a < 6; a++)
                cell(f, markdown, v[a]);
        }
        markdown ? fprintf(f, " %u |", rows[r].m[0].users) : fprintf(f, " %8u", rows[r].m[0].users);
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
    row_start(f, markdown, "model");
    for (uint32_t q = 0; q < n_ks; q++)
        head(f, markdown, "cov", rows[0].m[q].k);
    head(f, markdown, "user-cov", 0);
    for (uint32_t q = 0; q < n_ks; q++)
        head(f, markdown, "div", rows[0].m[q].k);
    for (uint32_t q = 0; q < n_ks; q++)
        head(f, markdown, "nov", rows[0].m[q].k);
    fprintf(f, "\n");
    rule(f, markdown, 3 * n_ks + 1);
    for (uint32_t r = 0; r < n_rows; r++) {
        row_start(f, markdown, rows[r].name);
        for (uint32_t q = 0; q < n_ks; q++)
            cell(f, markdown, rows[r].m[q].item_coverage);
        cell(f, markdown, rows[r].m[0].user_coverage);
        for (uint32_t q = 0; q < n_ks; q++)
            cell(f, markdown, rows[r].m[q].diversity);
        for (uint32_t q = 0; q < n_ks; q++)
            cell(f, markdown, rows[r].m[q].novelty);
        fprintf(f, "\n");
    }
}

/* The script goes through a temporary file rather than a pipe: gnuplot
 * exits at its first error, and writing the rest into a closed pipe would
 * kill recd with SIGPIPE. pngcairo antialiases and is in Debian's
 * gnuplot-nox. */
static int eval_plot(const char *png_path, const char *script, err_t *e) {
    if (strchr(png_path, '\''))
        return err_set(e, ERR_INVALID, "plot: a quote in the path '%s'", png_path);
    char tmp[] = "/tmp/recd-plot-XXXXXX";
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return err_set(e, ERR_IO, "plot: cannot create a temporary script: %s", strerror(errno));
    }
    fprintf(f, "set terminal pngcairo noenhanced size 800,480 font ',10'\nset output '%s'\n%s\n",
            png_path, script);
    int bad = ferror(f) != 0;
    bad |= fclose(f) != 0;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "gnuplot %s", tmp);
    int status = bad ? -1 : system(cmd);
    unlink(tmp);
    if (bad) return err_set(e, ERR_IO, "plot: cannot write the temporary script %s", tmp);
    if (status != 0)
        return err_set(e, ERR_IO,
                       "plot: gnuplot failed (status %d) making %s; is gnuplot-nox installed?",
                       status, png_path);
    return ERR_OK;
}

/* Titles and names go inside gnuplot's single quotes: a quote would end
 * them, so it becomes a blank. */
static void put_quoted(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++)
        fputc(*s == '\'' ? ' ' : *s, f);
    fputc('\'', f);
}

int eval_plot_series(const char *png_path, const char *title, const char *xlabel,
                     const char *ylabel, int log_x, int points_only, const eval_series *s,
                     uint32_t n, err_t *e) {
    char *script = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&script, &len);
    if (!f) return err_set(e, ERR_NOMEM, "plot: out of memory for the script");
    for (uint32_t i = 0; i < n; i++) {
        fprintf(f, "$s%u << EOD\n", i);
        for (uint32_t p = 0; p < s[i].n; p++)
            if (!isnan(s[i].y[p])) fprintf(f, "%.9g %.9g\n", s[i].x[p], s[i].y[p]);
        fprintf(f, "EOD\n");
    }
    fprintf(f, "set title ");
    put_quoted(f, title);
    fprintf(f, "\nset xlabel ");
    put_quoted(f, xlabel);
    fprintf(f, "\nset ylabel ");
    put_quoted(f, ylabel);
    fprintf(f, "\nset grid\nset key outside right\n%s", log_x ? "set logscale x\n" : "");
    fprintf(f, "plot");
    for (uint32_t i = 0; i < n; i++) {
        fprintf(f, "%s $s%u using 1:2 with %s pointsize 1.2 title ", i ? "," : "", i,
                points_only ? "points" : "linespoints");
        put_quoted(f, s[i].name);
    }
    fprintf(f, "\n");
    fclose(f);
    int rc = eval_plot(png_path, script, e);
    free(script);
    return rc;
}

/* Plots one PNG <prefix>-<stem>.png and links it from md; on failure
 * writes why instead of the image. */
static int report_plot(FILE *md, const char *prefix, const char *link, const char *stem,
                       const char *title, const char *xlabel, const char *ylabel, int log_x,
                       int points_only, const eval_series *s, uint32_t n, err_t *e) {
    char png[4096];
    snprintf(png, sizeof png, "%s-%s.png", prefix, stem);
    int rc = eval_plot_series(png, title, xlabel, ylabel, log_x, points_only, s, n, e);
    if (rc)
        fprintf(md, "\n(%s: plot not made: %s)\n", title, e->msg);
    else
        fprintf(md, "\n![%s](%s-%s.png)\n", title, link, stem);
    return rc;
}

int eval_report_models(FILE *md, const char *prefix, const char *link, const eval_row *rows,
                       uint32_t n_rows, uint32_t n_ks, err_t *e) {
    eval_print_tables(md, rows, n_rows, n_ks, 1);
    double *buf = malloc(((size_t)n_rows * n_ks * 3 + 1) * sizeof *buf);
    eval_series *s = calloc((size_t)n_rows + 1, sizeof *s);
    if (!buf || !s) {
        free(buf);
        free(s);
        return err_set(e, ERR_NOMEM, "report: out of memory");
    }
    double *ks = buf, *ndcg = buf + (size_t)n_rows * n_ks, *cov = ndcg + (size_t)n_rows * n_ks;
    for (uint32_t r = 0; r < n_rows; r++)
        for (uint32_t q = 0; q < n_ks; q++) {
            size_t at = (size_t)r * n_ks + q;
            ks[at] = rows[r].m[q].k;
            ndcg[at] = rows[r].m[q].ndcg;
            cov[at] = rows[r].m[q].item_coverage;
        }
    for (uint32_t r = 0; r < n_rows; r++)
        s[r] = (eval_series){rows[r].name, ks + (size_t)r * n_ks, ndcg + (size_t)r * n_ks, n_ks};
    err_t e2;
    int rc = report_plot(md, prefix, link, "ndcg", "NDCG@k per model", "k", "NDCG@k", 0, 0, s,
                         n_rows, e);
    for (uint32_t r = 0; r < n_rows; r++)
        s[r].y = cov + (size_t)r * n_ks;
    int rc2 = report_plot(md, prefix, link, "coverage", "item coverage@k per model", "k",
                          "distinct recommended items / items", 0, 0, s, n_rows, rc ? &e2 : e);
    free(buf);
    free(s);
    return rc ? rc : rc2;
}

int eval_report_loss(FILE *md, const char *prefix, const char *link, const char *stem,
                     const eval_series *s, uint32_t n, err_t *e) {
    return report_plot(md, prefix, link, stem, "training loss per iteration", "iteration", "loss",
                       0, 0, s, n, e);
}
