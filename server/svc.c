#include "svc.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc/health/v1/health.pb-c.h"
#include "log.h"
#include "model.h"
#include "recd/v1/recommender.pb-c.h"
#include "topk.h"
#include "utf8.h"

/* A model in service, shared by the requests that use it. */
typedef struct served_model {
    model *m;
    atomic_uint refs; /* one for being current, one per request using it */
} served_model;

struct svc {
    char *model_dir;
    pthread_mutex_t lock; /* guards current */
    served_model *current;
    double reload_interval_s;
    pthread_t watcher;
    int watcher_running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    int stopping;
    char failed_version[MODEL_VERSION_MAX]; /* last version that would not open */
    rpc_method methods[4];
};

static served_model *svc_acquire(svc *s) {
    pthread_mutex_lock(&s->lock);
    served_model *sm = s->current;
    atomic_fetch_add(&sm->refs, 1);
    pthread_mutex_unlock(&s->lock);
    return sm;
}

static void svc_release(served_model *sm) {
    if (atomic_fetch_sub(&sm->refs, 1) == 1) {
        log_info("msg=\"model closed\" version=%s", model_info(sm->m)->version);
        model_close(sm->m);
        free(sm);
    }
}

static int svc_load(svc *s, err_t *e) {
    model *m;
    int rc = model_open(s->model_dir, &m, e);
    if (rc) return rc;
    served_model *sm = malloc(sizeof *sm);
    if (!sm) {
        model_close(m);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    sm->m = m;
    atomic_init(&sm->refs, 1);
    const model_meta *meta = model_info(m);
    log_info("msg=\"model loaded\" dir=%s version=%s users=%u items=%u factors=%u", s->model_dir,
             meta->version, meta->n_users, meta->n_items, meta->factors);
    pthread_mutex_lock(&s->lock);
    served_model *old = s->current;
    s->current = sm;
    pthread_mutex_unlock(&s->lock);
    if (old) svc_release(old);
    return ERR_OK;
}

/* Polls the model directory; a new publication replaces the served model
 * without failing a request (requests in flight keep the old one). */
static void *svc_watch(void *arg) {
    svc *s = arg;
    pthread_mutex_lock(&s->stop_lock);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double t = (double)until.tv_nsec * 1e-9 + s->reload_interval_s;
        until.tv_sec += (time_t)t;
        until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
        pthread_cond_timedwait(&s->stop_cond, &s->stop_lock, &until);
        if (s->stopping) break;
        pthread_mutex_unlock(&s->stop_lock);
        char version[MODEL_VERSION_MAX];
        served_model *sm = svc_acquire(s);
        int changed = model_current_version(s->model_dir, version, NULL) == ERR_OK &&
                      strcmp(version, model_info(sm->m)->version) != 0 &&
                      strcmp(version, s->failed_version) != 0;
        svc_release(sm);
        if (changed) {
            err_t e;
            if (svc_load(s, &e)) {
                log_error("msg=\"new model refused, still serving the old one\" version=%s "
                          "error=\"%s\"",
                          version, e.msg);
                memcpy(s->failed_version, version, sizeof version);
            }
        }
        pthread_mutex_lock(&s->stop_lock);
    }
    pthread_mutex_unlock(&s->stop_lock);
    return NULL;
}

/* --- request validation -------------------------------------------------- */

/* Checks one id field; fills reply and returns -1 when it is unusable. */
static int check_id(const char *field, const char *id, rpc_reply *reply) {
    size_t len = strlen(id);
    if (len == 0) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT, "%s is empty", field);
        return -1;
    }
    if (len > SVC_MAX_ID_BYTES) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT, "%s is %zu bytes, longer than %d", field, len,
                        SVC_MAX_ID_BYTES);
        return -1;
    }
    if (!utf8_valid(id, len)) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT, "%s is not valid UTF-8", field);
        return -1;
    }
    return 0;
}

static int check_k(uint32_t k, rpc_reply *reply) {
    if (k == 0 || k > SVC_MAX_K) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT, "k must be between 1 and %d, got %u",
                        SVC_MAX_K, k);
        return -1;
    }
    return 0;
}

/* --- scoring --------------------------------------------------------------- */

/* Per-thread score buffer: one float per item, reused across requests so the
 * hot path does not allocate a catalogue-sized array each time; freed by the
 * key's destructor when the worker thread exits. */
typedef struct score_buffer {
    float *scores;
    size_t cap;
} score_buffer;

static pthread_key_t score_key;
static pthread_once_t score_key_once = PTHREAD_ONCE_INIT;

static void score_buffer_free(void *p) {
    score_buffer *b = p;
    free(b->scores);
    free(b);
}

static void score_key_create(void) {
    pthread_key_create(&score_key, score_buffer_free);
}

/* Room for n scores on this thread, or NULL when out of memory. */
static float *scores_buffer(size_t n) {
    pthread_once(&score_key_once, score_key_create);
    score_buffer *b = pthread_getspecific(score_key);
    if (!b) {
        if (!(b = calloc(1, sizeof *b))) return NULL;
        pthread_setspecific(score_key, b);
    }
    if (n > b->cap) {
        free(b->scores);
        b->scores = malloc((n ? n : 1) * sizeof *b->scores);
        b->cap = b->scores ? n : 0;
    }
    return b->scores;
}

/* The items of a response: entries (best first) turned into ScoredItems whose
 * id strings point into one buffer. Owned by the caller: free items, ptrs and
 * ids. */
typedef struct scored_list {
    Recd__V1__ScoredItem *items;
    Recd__V1__ScoredItem **ptrs;
    char *ids;
    size_t n;
} scored_list;

static int scored_list_build(const model *m, const topk_entry *top, uint32_t n, scored_list *out) {
    size_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        model_item_id(m, top[i].index, &len);
        bytes += len + 1;
    }
    out->items = calloc(n ? n : 1, sizeof *out->items);
    out->ptrs = calloc(n ? n : 1, sizeof *out->ptrs);
    out->ids = malloc(bytes ? bytes : 1);
    out->n = n;
    if (!out->items || !out->ptrs || !out->ids) return -1;
    char *at = out->ids;
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *id = model_item_id(m, top[i].index, &len);
        memcpy(at, id, len);
        at[len] = '\0';
        recd__v1__scored_item__init(&out->items[i]);
        out->items[i].item_id = at;
        out->items[i].score = top[i].score;
        out->ptrs[i] = &out->items[i];
        at += len + 1;
    }
    return 0;
}

static void scored_list_free(scored_list *l) {
    free(l->items);
    free(l->ptrs);
    free(l->ids);
}

/* Serializes msg into reply->body. */
static void reply_pack(rpc_reply *reply, const ProtobufCMessage *msg) {
    size_t len = protobuf_c_message_get_packed_size(msg);
    reply->body = malloc(len ? len : 1);
    if (!reply->body) {
        rpc_reply_error(reply, RPC_RESOURCE_EXHAUSTED, "out of memory for the response");
        return;
    }
    reply->len = protobuf_c_message_pack(msg, reply->body);
    reply->status = RPC_OK;
}

/* --- Recommend ------------------------------------------------------------- */

static void svc_recommend(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__RecommendRequest *rq = recd__v1__recommend_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT,
                        "malformed RecommendRequest: not a valid protobuf message");
        return;
    }
    if (check_k(rq->k, reply) || check_id("user_id", rq->user_id, reply)) goto done;
    if (rq->n_exclude_item_ids > SVC_MAX_EXCLUDED) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT, "%zu exclude_item_ids, more than %d",
                        rq->n_exclude_item_ids, SVC_MAX_EXCLUDED);
        goto done;
    }
    for (size_t i = 0; i < rq->n_exclude_item_ids; i++)
        if (check_id("exclude_item_ids entry", rq->exclude_item_ids[i], reply)) goto done;

    served_model *sm = svc_acquire(s);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    float *scores = scores_buffer(meta->n_items);
    topk_entry *top = malloc(rq->k * sizeof *top);
    if (!scores || !top) {
        rpc_reply_error(reply, RPC_RESOURCE_EXHAUSTED, "out of memory scoring %u items",
                        meta->n_items);
        free(top);
        svc_release(sm);
        goto done;
    }
    Recd__V1__RecommendResponse resp = RECD__V1__RECOMMEND_RESPONSE__INIT;
    uint32_t user;
    if (model_user_index(m, rq->user_id, strlen(rq->user_id), &user) == ERR_OK) {
        const float *x = model_user_factors(m) + (size_t)user * meta->factors;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)meta->n_items, (int)meta->factors, 1.0f,
                    model_item_factors(m), (int)meta->factors, x, 1, 0.0f, scores, 1);
        if (!rq->include_purchased) {
            uint32_t n_bought;
            const uint32_t *bought = model_user_items(m, user, &n_bought);
            for (uint32_t i = 0; i < n_bought; i++)
                scores[bought[i]] = -INFINITY;
        }
        resp.strategy = RECD__V1__STRATEGY__PERSONALIZED;
    } else {
        /* Unknown user: the widget still gets something, the best sellers. */
        const float *popularity = model_item_popularity(m);
        memcpy(scores, popularity, (size_t)meta->n_items * sizeof *scores);
        resp.strategy = RECD__V1__STRATEGY__POPULAR;
    }
    for (size_t i = 0; i < rq->n_exclude_item_ids; i++) {
        uint32_t item;
        const char *id = rq->exclude_item_ids[i];
        if (model_item_index(m, id, strlen(id), &item) == ERR_OK) scores[item] = -INFINITY;
    }
    uint32_t n = topk_select(scores, meta->n_items, rq->k, top);
    scored_list list;
    if (scored_list_build(m, top, n, &list)) {
        rpc_reply_error(reply, RPC_RESOURCE_EXHAUSTED, "out of memory building the response");
    } else {
        resp.items = list.ptrs;
        resp.n_items = list.n;
        resp.model_version = (char *)meta->version;
        reply_pack(reply, &resp.base);
    }
    scored_list_free(&list);
    free(top);
    svc_release(sm);
done:
    recd__v1__recommend_request__free_unpacked(rq, NULL);
}

/* --- SimilarItems ---------------------------------------------------------- */

static void svc_similar(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SimilarItemsRequest *rq = recd__v1__similar_items_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT,
                        "malformed SimilarItemsRequest: not a valid protobuf message");
        return;
    }
    if (check_k(rq->k, reply) || check_id("item_id", rq->item_id, reply)) goto done;
    served_model *sm = svc_acquire(s);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    uint32_t seed;
    if (model_item_index(m, rq->item_id, strlen(rq->item_id), &seed) != ERR_OK) {
        rpc_reply_error(reply, RPC_NOT_FOUND, "item '%.*s' is not in model %s", 64, rq->item_id,
                        meta->version);
        svc_release(sm);
        goto done;
    }
    float *scores = scores_buffer(meta->n_items);
    topk_entry *top = malloc(rq->k * sizeof *top);
    if (!scores || !top) {
        rpc_reply_error(reply, RPC_RESOURCE_EXHAUSTED, "out of memory scoring %u items",
                        meta->n_items);
        free(top);
        svc_release(sm);
        goto done;
    }
    const float *y = model_item_factors(m), *norms = model_item_norms(m);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)meta->n_items, (int)meta->factors, 1.0f, y,
                (int)meta->factors, y + (size_t)seed * meta->factors, 1, 0.0f, scores, 1);
    float seed_norm = norms[seed];
    for (uint32_t i = 0; i < meta->n_items; i++) {
        float d = norms[i] * seed_norm;
        /* An all-zero vector has no direction: it is similar to nothing. */
        scores[i] = d > 0.0f ? scores[i] / d : -INFINITY;
    }
    scores[seed] = -INFINITY;
    uint32_t n = topk_select(scores, meta->n_items, rq->k, top);
    scored_list list;
    Recd__V1__SimilarItemsResponse resp = RECD__V1__SIMILAR_ITEMS_RESPONSE__INIT;
    if (scored_list_build(m, top, n, &list)) {
        rpc_reply_error(reply, RPC_RESOURCE_EXHAUSTED, "out of memory building the response");
    } else {
        resp.items = list.ptrs;
        resp.n_items = list.n;
        resp.model_version = (char *)meta->version;
        reply_pack(reply, &resp.base);
    }
    scored_list_free(&list);
    free(top);
    svc_release(sm);
done:
    recd__v1__similar_items_request__free_unpacked(rq, NULL);
}

/* --- GetModelInfo ---------------------------------------------------------- */

static void svc_model_info(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__GetModelInfoRequest *rq = recd__v1__get_model_info_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT,
                        "malformed GetModelInfoRequest: not a valid protobuf message");
        return;
    }
    recd__v1__get_model_info_request__free_unpacked(rq, NULL);
    served_model *sm = svc_acquire(s);
    const model_meta *meta = model_info(sm->m);
    Recd__V1__ModelInfo info = RECD__V1__MODEL_INFO__INIT;
    info.model_version = (char *)meta->version;
    info.factors = meta->factors;
    info.users = meta->n_users;
    info.items = meta->n_items;
    info.trained_at_unix = meta->trained_at;
    info.interactions = meta->interactions;
    info.iterations = meta->iterations;
    info.regularization = meta->regularization;
    info.alpha = meta->alpha;
    info.source_fingerprint = (char *)meta->source_fingerprint;
    info.format_version = meta->format_version;
    reply_pack(reply, &info.base);
    svc_release(sm);
}

/* --- grpc.health.v1.Health/Check ------------------------------------------ */

static void svc_health(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    (void)ctx;
    Grpc__Health__V1__HealthCheckRequest *rq =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, RPC_INVALID_ARGUMENT,
                        "malformed HealthCheckRequest: not a valid protobuf message");
        return;
    }
    /* A model is always loaded once the server runs, so both the server as a
     * whole ("") and the Recommender service are serving. */
    if (rq->service[0] && strcmp(rq->service, "recd.v1.Recommender") != 0 &&
        strcmp(rq->service, "grpc.health.v1.Health") != 0) {
        rpc_reply_error(reply, RPC_NOT_FOUND, "unknown service '%.*s'", 64, rq->service);
    } else {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        reply_pack(reply, &resp.base);
    }
    grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
}

/* --- lifecycle ------------------------------------------------------------- */

int svc_open(const svc_options *o, svc **out, err_t *e) {
    svc *s = calloc(1, sizeof *s);
    if (!s || !(s->model_dir = strdup(o->model_dir))) {
        free(s);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->stop_lock, NULL);
    pthread_cond_init(&s->stop_cond, NULL);
    s->reload_interval_s = o->reload_interval_s;
    int rc = svc_load(s, e);
    if (rc) {
        svc_close(s);
        return rc;
    }
    if (s->reload_interval_s > 0) {
        if (pthread_create(&s->watcher, NULL, svc_watch, s)) {
            svc_close(s);
            return err_set(e, ERR_INTERNAL, "cannot start the model watcher thread");
        }
        s->watcher_running = 1;
    }
    s->methods[0] = (rpc_method){"/recd.v1.Recommender/Recommend", svc_recommend, s};
    s->methods[1] = (rpc_method){"/recd.v1.Recommender/SimilarItems", svc_similar, s};
    s->methods[2] = (rpc_method){"/recd.v1.Recommender/GetModelInfo", svc_model_info, s};
    s->methods[3] = (rpc_method){"/grpc.health.v1.Health/Check", svc_health, s};
    *out = s;
    return ERR_OK;
}

const rpc_method *svc_methods(svc *s, size_t *n) {
    *n = sizeof s->methods / sizeof s->methods[0];
    return s->methods;
}

void svc_close(svc *s) {
    if (!s) return;
    if (s->watcher_running) {
        pthread_mutex_lock(&s->stop_lock);
        s->stopping = 1;
        pthread_cond_signal(&s->stop_cond);
        pthread_mutex_unlock(&s->stop_lock);
        pthread_join(s->watcher, NULL);
    }
    if (s->current) svc_release(s->current);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->stop_lock);
    pthread_cond_destroy(&s->stop_cond);
    free(s->model_dir);
    free(s);
}
