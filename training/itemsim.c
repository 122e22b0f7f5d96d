#include "itemsim.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "knn.h"
#include "linalg.h"
#include "mf.h"
#include "topk.h"

static const char *const algorithm_names[] = {
#define ITEMSIM_NAME(id, name) name,
    ITEMSIM_ALGORITHM_MAP(ITEMSIM_NAME)
#undef ITEMSIM_NAME
};

const char *itemsim_algorithm_name(itemsim_algorithm a) {
    return (unsigned)a < ITEMSIM_N_ALGORITHMS ? algorithm_names[a] : "";
}

int itemsim_algorithm_parse(const char *name) {
    for (int a = 0; a < ITEMSIM_N_ALGORITHMS; a++)
        if (strcmp(name, algorithm_names[a]) == 0) return a;
    return -1;
}

void itemsim_params_init(itemsim_params *p) {
    *p = (itemsim_params){.algorithm = ITEMSIM_EASE,
                          .lambda = 0.0f,
                          .max_dense_items = 20000,
                          .neighbors = 100,
                          .rp3_alpha = 1.0f,
                          .rp3_beta = 0.5f,
                          .threads = 1};
}

void itemsim_free(itemsim_model *m) {
    free(m->dense);
    free(m->indptr);
    free(m->index);
    free(m->value);
    memset(m, 0, sizeof *m);
}

itemrows itemsim_rows(const itemsim_model *m) {
    return (itemrows){m->n_items, m->dense, m->indptr, m->index, m->value};
}

uint64_t itemsim_bytes(const itemsim_model *m) {
    if (m->dense) return (uint64_t)m->n_items * m->n_items * sizeof(float);
    uint64_t nnz = m->indptr ? m->indptr[m->n_items] : 0;
    return ((uint64_t)m->n_items + 1) * sizeof(uint64_t) + nnz * (sizeof(uint32_t) + sizeof(float));
}

/* --- sparse rows from per-row candidates --------------------------------- */

typedef struct cand {
    uint32_t item;
    float v;
} cand;

/* Larger magnitude first, then lower index: a total order, so kept rows do
 * not depend on the order candidates were found in. */
static int cmp_magnitude(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    float x = fabsf(a->v), y = fabsf(b->v);
    if (x != y) return (x < y) - (x > y);
    return (a->item > b->item) - (a->item < b->item);
}

/* Rows of at most `keep` entries each, filled row by row into fixed slots
 * and compacted at the end. */
typedef struct slots {
    uint32_t n, keep;
    uint32_t *count, *index;
    float *value;
} slots;

static int slots_init(slots *s, uint32_t n, uint32_t keep) {
    s->n = n;
    s->keep = keep;
    s->count = calloc((size_t)n + 1, sizeof *s->count);
    s->index = malloc(((size_t)n * keep + 1) * sizeof *s->index);
    s->value = malloc(((size_t)n * keep + 1) * sizeof *s->value);
    return s->count && s->index && s->value ? 0 : -1;
}

static void slots_free(slots *s) {
    free(s->count);
    free(s->index);
    free(s->value);
}

/* Keeps the `keep` candidates of row i of largest magnitude (sorts c). */
static void slots_put(slots *s, uint32_t i, cand *c, uint32_t n) {
    qsort(c, n, sizeof *c, cmp_magnitude);
    uint32_t k = n < s->keep ? n : s->keep;
    for (uint32_t t = 0; t < k; t++) {
        s->index[(size_t)i * s->keep + t] = c[t].item;
        s->value[(size_t)i * s->keep + t] = c[t].v;
    }
    s->count[i] = k;
}

static int slots_compact(const slots *s, itemsim_model *out) {
    out->indptr = malloc(((size_t)s->n + 1) * sizeof *out->indptr);
    uint64_t nnz = 0;
    for (uint32_t i = 0; i < s->n; i++)
        nnz += s->count[i];
    out->index = malloc((nnz + 1) * sizeof *out->index);
    out->value = malloc((nnz + 1) * sizeof *out->value);
    if (!out->indptr || !out->index || !out->value) return -1;
    uint64_t at = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        out->indptr[i] = at;
        memcpy(out->index + at, s->index + (size_t)i * s->keep, s->count[i] * sizeof *out->index);
        memcpy(out->value + at, s->value + (size_t)i * s->keep, s->count[i] * sizeof *out->value);
        at += s->count[i];
    }
    out->indptr[s->n] = at;
    return 0;
}

/* --- EASE ---------------------------------------------------------------- */

static int fit_ease(const csr *train, const itemsim_params *p, itemsim_model *out, err_t *e) {
    uint32_t n = train->n_cols;
    if (n == 0) return err_set(e, ERR_INVALID, "ease: no items");
    if ((uint64_t)n * n > (uint64_t)SIZE_MAX / sizeof(float) || n > 46340)
        return err_set(e, ERR_LIMIT,
                       "ease: %u items need %u x %u floats, beyond what one dense solve takes; "
                       "use rp3beta or knn",
                       n, n, n);
    double lambda = p->lambda;
    if (lambda == 0.0) lambda = (double)csr_nnz(train) / n;
    if (!(lambda > 0.0)) lambda = 1.0;
    float *g = calloc((size_t)n * n, sizeof *g);
    if (!g)
        return err_set(e, ERR_NOMEM, "ease: out of memory for the %u x %u item matrix (%.1f GB)", n,
                       n, (double)n * n * 4 / 1e9);
    /* X^T X from the sparse rows: each user adds the products of their
     * pairs of items (both triangles). */
    for (uint32_t u = 0; u < train->n_rows; u++)
        for (uint64_t a = train->indptr[u]; a < train->indptr[u + 1]; a++) {
            float va = itemrows_value(train->values[a]);
            float *row = g + (size_t)train->indices[a] * n;
            for (uint64_t b = train->indptr[u]; b < train->indptr[u + 1]; b++)
                row[train->indices[b]] += va * itemrows_value(train->values[b]);
        }
    for (uint32_t i = 0; i < n; i++)
        g[(size_t)i * n + i] += (float)lambda;
    /* The solve is the whole cost (n^3 / 3 flops twice): let OpenBLAS use
     * the threads, then back to the single thread recd runs it with. */
    openblas_set_num_threads((int)(p->threads ? p->threads : 1));
    int singular = linalg_invert_spd(g, n);
    openblas_set_num_threads(1);
    if (singular) {
        free(g);
        return err_set(e, ERR_INVALID, "ease: X^T X + %g I is not positive definite", lambda);
    }
    /* B_ij = -P_ij / P_jj off the diagonal, 0 on it. */
    float *inv = malloc((size_t)n * sizeof *inv);
    if (!inv) {
        free(g);
        return err_set(e, ERR_NOMEM, "ease: out of memory");
    }
    for (uint32_t j = 0; j < n; j++)
        inv[j] = -1.0f / g[(size_t)j * n + j];
    for (uint32_t i = 0; i < n; i++) {
        float *row = g + (size_t)i * n;
        for (uint32_t j = 0; j < n; j++)
            row[j] *= inv[j];
        row[i] = 0.0f;
    }
    free(inv);
    out->n_items = n;
    out->lambda = (float)lambda;
    if (n <= p->max_dense_items) {
        out->dense = g;
        return ERR_OK;
    }
    slots s;
    cand *c = malloc((size_t)n * sizeof *c);
    int rc = ERR_OK;
    if (slots_init(&s, n, p->neighbors) || !c) {
        rc = err_set(e, ERR_NOMEM, "ease: out of memory pruning to %u neighbours", p->neighbors);
    } else {
        for (uint32_t i = 0; i < n; i++) {
            uint32_t m = 0;
            for (uint32_t j = 0; j < n; j++)
                if (j != i && g[(size_t)i * n + j] != 0.0f)
                    c[m++] = (cand){j, g[(size_t)i * n + j]};
            slots_put(&s, i, c, m);
        }
        if (slots_compact(&s, out)) rc = err_set(e, ERR_NOMEM, "ease: out of memory");
    }
    slots_free(&s);
    free(c);
    free(g);
    return rc;
}

/* --- RP3beta ------------------------------------------------------------- */

#define RP3_CHUNK 32

typedef struct rp3_job {
    const csr *by_user, *by_item;
    const float *user_w, *item_a, *item_b; /* deg_u^-alpha, deg_i^-alpha, deg_j^-beta */
    slots *s;
    uint32_t next; /* next unclaimed item (atomic) */
    int failed;    /* atomic */
} rp3_job;

/* One worker: walks i -> u -> j for items claimed in chunks (costs vary by
 * orders of magnitude), accumulating in a dense per-thread array reset
 * through the list of touched items. */
static void *rp3_worker(void *arg) {
    rp3_job *j = arg;
    uint32_t n = j->s->n;
    float *acc = calloc((size_t)n + 1, sizeof *acc);
    uint32_t *touched = malloc(((size_t)n + 1) * sizeof *touched);
    cand *c = malloc(((size_t)n + 1) * sizeof *c);
    if (!acc || !touched || !c) {
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        goto done;
    }
    for (;;) {
        uint32_t begin = __atomic_fetch_add(&j->next, RP3_CHUNK, __ATOMIC_RELAXED);
        if (begin >= n) break;
        uint32_t end = begin + RP3_CHUNK < n ? begin + RP3_CHUNK : n;
        for (uint32_t i = begin; i < end; i++) {
            uint32_t nt = 0;
            for (uint64_t a = j->by_item->indptr[i]; a < j->by_item->indptr[i + 1]; a++) {
                uint32_t u = j->by_item->indices[a];
                float wu = j->user_w[u];
                for (uint64_t b = j->by_user->indptr[u]; b < j->by_user->indptr[u + 1]; b++) {
                    uint32_t t = j->by_user->indices[b];
                    if (t == i) continue;
                    if (acc[t] == 0.0f) touched[nt++] = t;
                    acc[t] += wu;
                }
            }
            for (uint32_t q = 0; q < nt; q++) {
                uint32_t t = touched[q];
                c[q] = (cand){t, acc[t] * j->item_a[i] * j->item_b[t]};
                acc[t] = 0.0f;
            }
            slots_put(j->s, i, c, nt);
        }
    }
done:
    free(acc);
    free(touched);
    free(c);
    return NULL;
}

static int fit_rp3beta(const csr *train, const itemsim_params *p, itemsim_model *out, err_t *e) {
    if (!(p->rp3_alpha >= 0.0f && p->rp3_beta >= 0.0f && isfinite(p->rp3_alpha) &&
          isfinite(p->rp3_beta)))
        return err_set(e, ERR_INVALID, "rp3beta: alpha and beta must be finite and >= 0");
    uint32_t n = train->n_cols, threads = p->threads ? p->threads : 1;
    if (threads > 256) threads = 256;
    csr by_item = {0};
    int rc = csr_transpose(train, &by_item, e);
    if (rc) return rc;
    float *user_w = malloc(((size_t)train->n_rows + 1) * sizeof *user_w);
    float *item_a = malloc(((size_t)n + 1) * sizeof *item_a);
    float *item_b = malloc(((size_t)n + 1) * sizeof *item_b);
    pthread_t tid[256];
    int started[256] = {0};
    slots s = {0};
    if (!user_w || !item_a || !item_b || slots_init(&s, n, p->neighbors)) {
        rc = err_set(e, ERR_NOMEM, "rp3beta: out of memory for %u items", n);
        goto done;
    }
    for (uint32_t u = 0; u < train->n_rows; u++) {
        double d = (double)(train->indptr[u + 1] - train->indptr[u]);
        user_w[u] = d > 0 ? (float)pow(d, -p->rp3_alpha) : 0.0f;
    }
    for (uint32_t i = 0; i < n; i++) {
        double d = (double)(by_item.indptr[i + 1] - by_item.indptr[i]);
        item_a[i] = d > 0 ? (float)pow(d, -p->rp3_alpha) : 0.0f;
        item_b[i] = d > 0 ? (float)pow(d, -p->rp3_beta) : 0.0f;
    }
    rp3_job job = {train, &by_item, user_w, item_a, item_b, &s, 0, 0};
    for (uint32_t t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, rp3_worker, &job) == 0;
    rp3_worker(&job);
    for (uint32_t t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    out->n_items = n;
    if (job.failed || slots_compact(&s, out))
        rc = err_set(e, ERR_NOMEM, "rp3beta: out of memory for the walk counts");
done:
    slots_free(&s);
    free(user_w);
    free(item_a);
    free(item_b);
    csr_free(&by_item);
    return rc;
}

/* --- item-kNN ------------------------------------------------------------ */

static int fit_knn(const csr *train, const itemsim_params *p, itemsim_model *out, err_t *e) {
    knn_model k;
    int rc = knn_fit(train, p->neighbors, p->threads ? p->threads : 1, &k, e);
    if (rc) return rc;
    slots s = {k.n_items, k.neighbors, k.count, k.index, k.sim};
    out->n_items = k.n_items;
    if (slots_compact(&s, out)) rc = err_set(e, ERR_NOMEM, "knn: out of memory");
    knn_free(&k);
    return rc;
}

int itemsim_fit(const csr *train, const itemsim_params *p, itemsim_model *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (p->neighbors == 0) return err_set(e, ERR_INVALID, "itemsim: neighbors must be at least 1");
    if (!(p->lambda >= 0.0f) || !isfinite(p->lambda))
        return err_set(e, ERR_INVALID, "ease: lambda must be finite and >= 0");
    int rc;
    switch (p->algorithm) {
    case ITEMSIM_EASE:
        rc = fit_ease(train, p, out, e);
        break;
    case ITEMSIM_KNN:
        rc = fit_knn(train, p, out, e);
        break;
    case ITEMSIM_RP3BETA:
        rc = fit_rp3beta(train, p, out, e);
        break;
    default:
        return err_set(e, ERR_INVALID, "itemsim: '%s' is not an item-item algorithm",
                       itemsim_algorithm_name(p->algorithm));
    }
    if (rc) itemsim_free(out);
    return rc;
}

int itemsim_blend(const itemsim_model *a, float wa, const itemsim_model *b, float wb,
                  itemsim_model *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (a->n_items != b->n_items)
        return err_set(e, ERR_INVALID, "itemsim: blending %u and %u items", a->n_items, b->n_items);
    uint32_t n = a->n_items;
    out->n_items = n;
    out->lambda = a->lambda ? a->lambda : b->lambda;
    itemrows ra = itemsim_rows(a), rb = itemsim_rows(b);
    if (a->dense || b->dense) {
        if (!(out->dense = calloc((size_t)n * n, sizeof *out->dense)))
            return err_set(e, ERR_NOMEM, "itemsim: out of memory blending");
        for (uint32_t i = 0; i < n; i++) {
            itemrows_accumulate(&ra, &i, &wa, 1, out->dense + (size_t)i * n);
            itemrows_accumulate(&rb, &i, &wb, 1, out->dense + (size_t)i * n);
        }
        return ERR_OK;
    }
    uint64_t cap = a->indptr[n] + b->indptr[n];
    out->indptr = malloc(((size_t)n + 1) * sizeof *out->indptr);
    out->index = malloc((cap + 1) * sizeof *out->index);
    out->value = malloc((cap + 1) * sizeof *out->value);
    float *acc = calloc((size_t)n + 1, sizeof *acc);
    uint8_t *seen = calloc((size_t)n + 1, 1);
    int rc = ERR_OK;
    if (!out->indptr || !out->index || !out->value || !acc || !seen) {
        rc = err_set(e, ERR_NOMEM, "itemsim: out of memory blending");
        goto done;
    }
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        out->indptr[i] = at;
        const itemsim_model *src[2] = {a, b};
        float w[2] = {wa, wb};
        for (int s = 0; s < 2; s++)
            for (uint64_t q = src[s]->indptr[i]; q < src[s]->indptr[i + 1]; q++) {
                uint32_t j = src[s]->index[q];
                if (!seen[j]) seen[j] = 1, out->index[at++] = j;
                acc[j] += w[s] * src[s]->value[q];
            }
        for (uint64_t q = out->indptr[i]; q < at; q++) {
            uint32_t j = out->index[q];
            out->value[q] = acc[j];
            acc[j] = 0.0f;
            seen[j] = 0;
        }
    }
    out->indptr[n] = at;
done:
    free(acc);
    free(seen);
    if (rc) itemsim_free(out);
    return rc;
}

/* --- evaluation ---------------------------------------------------------- */

void itemsim_user_scores(const itemsim_eval *ie, uint32_t u, const csr *train, float *scores) {
    uint32_t n = ie->rows.n_items;
    memset(scores, 0, (size_t)n * sizeof *scores);
    for (uint64_t a = train->indptr[u]; a < train->indptr[u + 1]; a++) {
        float w = itemrows_value(train->values[a]) * ie->rows_weight;
        itemrows_accumulate(&ie->rows, &train->indices[a], &w, 1, scores);
    }
    if (ie->als && ie->als_weight != 0.0f)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)ie->als->factors, ie->als_weight,
                    ie->als->item_factors, (int)ie->als->factors,
                    ie->als->user_factors + (size_t)u * ie->als->factors, 1, 1.0f, scores, 1);
}

uint32_t itemsim_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                           int *personalized) {
    itemsim_eval *ie = ctx;
    *personalized = 0;
    uint64_t begin = train->indptr[u], end = train->indptr[u + 1];
    if (begin == end || isinf(ie->blend))
        return ie->fallback
                   ? eval_popular_recommend((void *)ie->fallback, u, k, train, out, personalized)
                   : 0;
    uint32_t n = ie->rows.n_items;
    float *scores = malloc(((size_t)n + 1) * sizeof *scores);
    topk_entry *top = malloc(((size_t)k + 1) * sizeof *top);
    if (!scores || !top) {
        free(scores);
        free(top);
        __atomic_store_n(&ie->failed, 1, __ATOMIC_RELAXED);
        return 0;
    }
    itemsim_user_scores(ie, u, train, scores);
    if (ie->blend > 0.0f && ie->fallback)
        mf_blend_popularity(scores, ie->fallback->popularity, n, ie->fallback->max_popularity,
                            ie->blend);
    for (uint64_t a = begin; a < end; a++)
        scores[train->indices[a]] = -INFINITY;
    uint32_t got = topk_select(scores, n, k, top);
    for (uint32_t t = 0; t < got; t++)
        out[t] = top[t].index;
    *personalized = got > 0;
    free(scores);
    free(top);
    return got;
}

int itemsim_score_scale(const itemsim_eval *ie, const csr *train, double *scale, err_t *e) {
    *scale = 1.0;
    uint32_t n = ie->rows.n_items, users = 0;
    for (uint32_t u = 0; u < train->n_rows; u++)
        users += train->indptr[u + 1] > train->indptr[u];
    if (users == 0 || n == 0) return ERR_OK;
    float *scores = malloc((size_t)n * sizeof *scores);
    if (!scores) return err_set(e, ERR_NOMEM, "itemsim: out of memory for %u scores", n);
    uint32_t step = users > 1000 ? users / 1000 : 1, seen = 0, used = 0;
    double sum = 0;
    for (uint32_t u = 0; u < train->n_rows; u++) {
        if (train->indptr[u + 1] == train->indptr[u]) continue;
        if (seen++ % step) continue;
        itemsim_user_scores(ie, u, train, scores);
        for (uint64_t a = train->indptr[u]; a < train->indptr[u + 1]; a++)
            scores[train->indices[a]] = -INFINITY;
        float best = -INFINITY;
        for (uint32_t j = 0; j < n; j++)
            if (scores[j] > best) best = scores[j];
        if (isfinite(best)) sum += best, used++;
    }
    free(scores);
    if (used && sum / used > 0) *scale = sum / used;
    return ERR_OK;
}
