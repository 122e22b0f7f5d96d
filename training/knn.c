#include "knn.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Items are handed out in chunks from a shared counter: the cost of an item
 * is the sum of its buyers' basket sizes, which varies by orders of
 * magnitude, so fixed blocks would leave a thread idle. */
#define KNN_CHUNK 32

typedef struct knn_job {
    const csr *by_user; /* users x items */
    const csr *by_item; /* items x users */
    knn_model *m;
    uint32_t next; /* next unclaimed item (atomic) */
} knn_job;

typedef struct knn_cand {
    uint32_t item;
    float sim;
} knn_cand;

/* More similar first, then lower index: a total order, so the neighbour
 * lists do not depend on the order candidates were found in. */
static int cmp_cand(const void *pa, const void *pb) {
    const knn_cand *a = pa, *b = pb;
    if (a->sim != b->sim) return (a->sim < b->sim) - (a->sim > b->sim);
    return (a->item > b->item) - (a->item < b->item);
}

/* One worker: co-occurrence counts of item i with every item j reached
 * through i's buyers, in a dense per-thread array reset through the list of
 * touched items (so an item costs its work, not n_items). */
static void *knn_worker(void *arg) {
    knn_job *j = arg;
    knn_model *m = j->m;
    uint32_t n = m->n_items;
    uint32_t *co = calloc((size_t)n + 1, sizeof *co);
    uint32_t *touched = malloc(((size_t)n + 1) * sizeof *touched);
    knn_cand *cand = malloc(((size_t)n + 1) * sizeof *cand);
    if (!co || !touched || !cand) {
        __atomic_store_n(&m->failed, 1, __ATOMIC_RELAXED);
        free(co);
        free(touched);
        free(cand);
        return NULL;
    }
    const csr *bu = j->by_user, *bi = j->by_item;
    for (;;) {
        uint32_t begin = __atomic_fetch_add(&j->next, KNN_CHUNK, __ATOMIC_RELAXED);
        if (begin >= n) break;
        uint32_t end = begin + KNN_CHUNK < n ? begin + KNN_CHUNK : n;
        for (uint32_t i = begin; i < end; i++) {
            uint32_t n_touched = 0;
            for (uint64_t a = bi->indptr[i]; a < bi->indptr[i + 1]; a++) {
                uint32_t u = bi->indices[a];
                for (uint64_t b = bu->indptr[u]; b < bu->indptr[u + 1]; b++) {
                    uint32_t jt = bu->indices[b];
                    if (jt == i) continue;
                    if (co[jt]++ == 0) touched[n_touched++] = jt;
                }
            }
            double deg_i = (double)(bi->indptr[i + 1] - bi->indptr[i]);
            for (uint32_t t = 0; t < n_touched; t++) {
                uint32_t jt = touched[t];
                double deg_j = (double)(bi->indptr[jt + 1] - bi->indptr[jt]);
                cand[t] = (knn_cand){jt, (float)(co[jt] / sqrt(deg_i * deg_j))};
                co[jt] = 0;
            }
            qsort(cand, n_touched, sizeof *cand, cmp_cand);
            uint32_t keep = n_touched < m->neighbors ? n_touched : m->neighbors;
            for (uint32_t t = 0; t < keep; t++) {
                m->index[(size_t)i * m->neighbors + t] = cand[t].item;
                m->sim[(size_t)i * m->neighbors + t] = cand[t].sim;
            }
            m->count[i] = keep;
        }
    }
    free(co);
    free(touched);
    free(cand);
    return NULL;
}

int knn_fit(const csr *train, uint32_t neighbors, uint32_t threads, knn_model *m, err_t *e) {
    memset(m, 0, sizeof *m);
    if (neighbors == 0) return err_set(e, ERR_INVALID, "knn: neighbors must be at least 1");
    if (threads == 0) threads = 1;
    if (threads > 256) threads = 256;
    uint32_t n = train->n_cols;
    csr by_item = {0};
    int rc = csr_transpose(train, &by_item, e);
    if (rc) return rc;
    m->n_items = n;
    m->neighbors = neighbors;
    m->count = calloc((size_t)n + 1, sizeof *m->count);
    m->index = malloc(((size_t)n * neighbors + 1) * sizeof *m->index);
    m->sim = malloc(((size_t)n * neighbors + 1) * sizeof *m->sim);
    pthread_t *tid = calloc(threads, sizeof *tid);
    int *started = calloc(threads, sizeof *started);
    if (!m->count || !m->index || !m->sim || !tid || !started) {
        rc = err_set(e, ERR_NOMEM, "knn: out of memory for %u items x %u neighbours", n, neighbors);
        goto done;
    }
    knn_job job = {.by_user = train, .by_item = &by_item, .m = m, .next = 0};
    for (uint32_t t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, knn_worker, &job) == 0;
    knn_worker(&job);
    for (uint32_t t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    if (m->failed) rc = err_set(e, ERR_NOMEM, "knn: out of memory for the co-occurrence counts");
done:
    free(tid);
    free(started);
    csr_free(&by_item);
    if (rc) knn_free(m);
    m->failed = 0;
    return rc;
}

void knn_free(knn_model *m) {
    free(m->count);
    free(m->index);
    free(m->sim);
    memset(m, 0, sizeof *m);
}

uint32_t knn_recommend(void *ctx, uint32_t u, uint32_t k, const csr *train, uint32_t *out,
                       int *personalized) {
    knn_model *m = ctx;
    *personalized = 0;
    uint32_t n = m->n_items;
    float *score = calloc((size_t)n + 1, sizeof *score);
    uint32_t *touched = malloc(((size_t)n + 1) * sizeof *touched);
    knn_cand *cand = malloc(((size_t)n + 1) * sizeof *cand);
    if (!score || !touched || !cand) {
        free(score);
        free(touched);
        free(cand);
        __atomic_store_n(&m->failed, 1, __ATOMIC_RELAXED);
        return 0;
    }
    uint32_t n_touched = 0;
    for (uint64_t a = train->indptr[u]; a < train->indptr[u + 1]; a++) {
        uint32_t i = train->indices[a];
        for (uint32_t t = 0; t < m->count[i]; t++) {
            uint32_t jt = m->index[(size_t)i * m->neighbors + t];
            if (score[jt] == 0.0f) touched[n_touched++] = jt;
            score[jt] += m->sim[(size_t)i * m->neighbors + t];
        }
    }
    uint32_t n_cand = 0;
    for (uint32_t t = 0; t < n_touched; t++)
        if (!csr_has(train, u, touched[t]))
            cand[n_cand++] = (knn_cand){touched[t], score[touched[t]]};
    qsort(cand, n_cand, sizeof *cand, cmp_cand);
    uint32_t got = n_cand < k ? n_cand : k;
    for (uint32_t t = 0; t < got; t++)
        out[t] = cand[t].item;
    *personalized = got > 0;
    /* Top up from the fallback, skipping what is already in the list. */
    if (got < k && m->fallback) {
        for (uint32_t t = 0; t < got; t++)
            score[out[t]] = -1.0f;
        const eval_popular *p = m->fallback;
        for (uint32_t r = 0; r < p->n && got < k; r++) {
            uint32_t it = p->ranked[r];
            if (score[it] != -1.0f && !csr_has(train, u, it)) out[got++] = it;
        }
    }
    free(score);
    free(touched);
    free(cand);
    return got;
}
