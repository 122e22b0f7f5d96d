#include "svc.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "campaign.h"
#include "catalog.h"
#include "grpc/health/v1/health.pb-c.h"
#include "idstate.h"
#include "log.h"
#include "model.h"
#include "privacy.h"
#include "recd/v1/recommender.pb-c.h"
#include "score.h"
#include "topk.h"
#include "utf8.h"

/* The storefront's item multipliers for one model, as of one catalog
 * generation; shared by the requests that use it. */
typedef struct multipliers {
    atomic_uint refs;
    unsigned long generation;
    bool any;        /* false: every multiplier is 1, nothing to apply */
    float max_slope; /* the most a multiplier stretches a score difference */
    float v[];
} multipliers;

/* A model in service, shared by the requests that use it. */
typedef struct served_model {
    model *m;
    atomic_uint refs; /* one for being current, one per request using it */
    float *yty;       /* factors x factors, for fold-ins */
    pthread_mutex_t mult_lock;
    multipliers *mult; /* rebuilt when the catalog changes */
} served_model;

/* One variant of the experiment: the model directory it serves from. */
typedef struct variant_slot {
    char *dir;
    served_model *current;
    char failed_version[MODEL_VERSION_MAX]; /* last version that would not open */
} variant_slot;

struct svc {
    /* Guards every slot's current, and exp's salt and shares: SetExperiment
     * changes those (and only those) while calls read them. exp's n and
     * names are set by svc_open and never change, so calls read them
     * without the lock. */
    pthread_mutex_t lock;
    variant_slot slots[EXP_MAX_VARIANTS];
    experiment exp;             /* names of the slots, shares, salt */
    pthread_mutex_t exp_update; /* one SetExperiment (store, then apply) at a time */
    idstate *exp_state;         /* exp's shares and salt as last set; NULL without --events */
    evstore *feedback;          /* NULL without --events */
    atomic_ullong feedback_counts[EXP_MAX_VARIANTS][EXP_FEEDBACK_END]; /* by variant, type */
    atomic_ullong events_ingested, fold_ins;
    evstore *events; /* NULL without --events */
    catalog *rules;
    idstate *privacy; /* member id -> PRIVACY_* */
    float weights[EV_TYPE_END];
    double reload_interval_s;
    pthread_t watcher;
    int watcher_running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    int stopping;
    rpc_method methods[14];
};

/* The C tables of event and feedback types hold the public proto's values. */
#define SVC_EV_TYPE_PROTO(name, value, str, word, weight)                                          \
    _Static_assert((int)EV_TYPE_##name == (int)RECD__V1__EVENT_TYPE__##name, "EventType " #name);
EV_TYPE_MAP(SVC_EV_TYPE_PROTO)
#undef SVC_EV_TYPE_PROTO
/* Feedback records go to an event store, which takes event types only. */
#define SVC_FEEDBACK_PROTO(name, value, word)                                                      \
    _Static_assert((int)EXP_FEEDBACK_##name == (int)RECD__V1__FEEDBACK_TYPE__##name,               \
                   "FeedbackType " #name);                                                         \
    _Static_assert((int)EXP_FEEDBACK_##name < (int)EV_TYPE_END,                                    \
                   "feedback type " #name " fits the store");
EXP_FEEDBACK_MAP(SVC_FEEDBACK_PROTO)
#undef SVC_FEEDBACK_PROTO

static privacy_state svc_privacy(svc *s, const char *user, size_t len) {
    return privacy_get(s->privacy, user, len);
}

void svc_options_init(svc_options *o) {
    memset(o, 0, sizeof *o);
    o->reload_interval_s = 1.0;
    ev_type_default_weights(o->event_weights);
}

/* --- the served model ------------------------------------------------------ */

static void multipliers_release(multipliers *mu) {
    if (mu && atomic_fetch_sub(&mu->refs, 1) == 1) free(mu);
}

/* The served model of variant v, with a reference the caller releases. */
static served_model *svc_acquire_variant(svc *s, uint32_t v) {
    pthread_mutex_lock(&s->lock);
    served_model *sm = s->slots[v].current;
    atomic_fetch_add(&sm->refs, 1);
    pthread_mutex_unlock(&s->lock);
    return sm;
}

/* The model of variant "control": what every RPC but Recommend serves. */
static served_model *svc_acquire(svc *s) {
    return svc_acquire_variant(s, 0);
}

static void svc_release(served_model *sm) {
    if (atomic_fetch_sub(&sm->refs, 1) == 1) {
        log_info("msg=\"model closed\" version=%s", model_info(sm->m)->version);
        model_close(sm->m);
        multipliers_release(sm->mult);
        pthread_mutex_destroy(&sm->mult_lock);
        free(sm->yty);
        free(sm);
    }
}

/* The multipliers of sm as of the catalog's current state (a reference the
 * caller releases), rebuilt here when the catalog changed since: so no
 * update of availability or boosts is ever missed, whatever the order of
 * model swaps and updates. NULL when out of memory. */
static multipliers *svc_multipliers(svc *s, served_model *sm) {
    unsigned long generation = catalog_generation(s->rules);
    pthread_mutex_lock(&sm->mult_lock);
    if (!sm->mult || sm->mult->generation != generation) {
        uint32_t n = model_info(sm->m)->n_items;
        multipliers *mu = malloc(sizeof *mu + (size_t)n * sizeof(float));
        if (mu) {
            atomic_init(&mu->refs, 1);
            mu->generation = generation;
            mu->any = catalog_multipliers(s->rules, sm->m, mu->v);
            mu->max_slope = 1.0f;
            for (uint32_t i = 0; i < n; i++)
                if (mu->v[i] > 0.0f) {
                    float slope = mu->v[i] > 1.0f ? mu->v[i] : 1.0f / mu->v[i];
                    if (slope > mu->max_slope) mu->max_slope = slope;
                }
            multipliers_release(sm->mult);
            sm->mult = mu;
        }
    }
    multipliers *mu = sm->mult;
    if (mu) atomic_fetch_add(&mu->refs, 1);
    pthread_mutex_unlock(&sm->mult_lock);
    return mu;
}

/* Opens the current model of variant v and makes it the one served. */
static int svc_load(svc *s, uint32_t v, err_t *e) {
    model *m;
    int rc = model_open(s->slots[v].dir, &m, e);
    if (rc) return rc;
    const model_meta *meta = model_info(m);
    served_model *sm = calloc(1, sizeof *sm);
    if (!sm || !(sm->yty = malloc((size_t)meta->factors * meta->factors * sizeof(float)))) {
        free(sm);
        model_close(m);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    sm->m = m;
    atomic_init(&sm->refs, 1);
    pthread_mutex_init(&sm->mult_lock, NULL);
    score_gram(m, sm->yty);
    log_info("msg=\"model loaded\" variant=%s dir=%s version=%s users=%u items=%u factors=%u "
             "categories=%u",
             s->exp.names[v], s->slots[v].dir, meta->version, meta->n_users, meta->n_items,
             meta->factors, model_n_categories(m));
    pthread_mutex_lock(&s->lock);
    served_model *old = s->slots[v].current;
    s->slots[v].current = sm;
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
        for (uint32_t v = 0; v < s->exp.n; v++) {
            variant_slot *slot = &s->slots[v];
            char version[MODEL_VERSION_MAX];
            served_model *sm = svc_acquire_variant(s, v);
            int changed = model_current_version(slot->dir, version, NULL) == ERR_OK &&
                          strcmp(version, model_info(sm->m)->version) != 0 &&
                          strcmp(version, slot->failed_version) != 0;
            svc_release(sm);
            err_t e;
            if (changed && svc_load(s, v, &e)) {
                log_error("msg=\"new model refused, still serving the old one\" variant=%s "
                          "version=%s error=\"%s\"",
                          s->exp.names[v], version, e.msg);
                memcpy(slot->failed_version, version, sizeof version);
            }
        }
        pthread_mutex_lock(&s->stop_lock);
    }
    pthread_mutex_unlock(&s->stop_lock);
    return NULL;
}

/* --- request validation -------------------------------------------------- */

/* Why id is unusable, or NULL when it is fine. */
static const char *id_problem(const char *id) {
    size_t len = strlen(id);
    if (len == 0) return "is empty";
    if (len > SVC_MAX_ID_BYTES) return "is longer than 256 bytes";
    if (!utf8_valid(id, len)) return "is not valid UTF-8";
    return NULL;
}

/* Checks one id field; fills reply and returns -1 when it is unusable. */
static int check_id(const char *field, const char *id, rpc_reply *reply) {
    const char *problem = id_problem(id);
    if (!problem) return 0;
    size_t len = strlen(id);
    if (len > SVC_MAX_ID_BYTES)
        rpc_reply_error(reply, ERR_INVALID, "%s is %zu bytes, longer than %d", field, len,
                        SVC_MAX_ID_BYTES);
    else
        rpc_reply_error(reply, ERR_INVALID, "%s %s", field, problem);
    return -1;
}

/* Checks a repeated id field of n entries. */
static int check_ids(const char *field, char **ids, size_t n, rpc_reply *reply) {
    if (n > SVC_MAX_LIST) {
        rpc_reply_error(reply, ERR_INVALID, "%zu %s, more than %d", n, field, SVC_MAX_LIST);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *problem = id_problem(ids[i]);
        if (problem) {
            rpc_reply_error(reply, ERR_INVALID, "%s[%zu] %s", field, i, problem);
            return -1;
        }
    }
    return 0;
}

static int check_k(uint32_t k, rpc_reply *reply) {
    if (k == 0 || k > SVC_MAX_K) {
        rpc_reply_error(reply, ERR_INVALID, "k must be between 1 and %d, got %u", SVC_MAX_K, k);
        return -1;
    }
    return 0;
}

/* --- per-thread buffers ---------------------------------------------------- */

/* One float per item, reused across requests so the hot path does not
 * allocate a catalogue-sized array each time; freed by the key's destructor
 * when the worker thread exits. */
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

/* --- the shopper ----------------------------------------------------------- */

/* What one request knows about its shopper: the model's user (or none), and
 * the fresh signals - events recorded since the model's data and the
 * request's context items - that a fold-in adds to it. Owned by the request:
 * shopper_free. */
typedef struct shopper {
    uint32_t user;
    score_signal *signals;
    size_t n_signals, cap_signals;
    uint32_t *bought; /* items purchased since the model's data */
    size_t n_bought, cap_bought;
    const model *m;
    const float *weights;
    int failed; /* out of memory while collecting */
} shopper;

static void shopper_free(shopper *sh) {
    free(sh->signals);
    free(sh->bought);
}

static void shopper_signal(shopper *sh, uint32_t item, float weight) {
    if (sh->n_signals == sh->cap_signals) {
        size_t cap = sh->cap_signals ? sh->cap_signals * 2 : 16;
        score_signal *s = realloc(sh->signals, cap * sizeof *s);
        if (!s) {
            sh->failed = 1;
            return;
        }
        sh->signals = s;
        sh->cap_signals = cap;
    }
    sh->signals[sh->n_signals++] = (score_signal){item, weight};
}

static void shopper_bought(shopper *sh, uint32_t item) {
    if (sh->n_bought == sh->cap_bought) {
        size_t cap = sh->cap_bought ? sh->cap_bought * 2 : 16;
        uint32_t *b = realloc(sh->bought, cap * sizeof *b);
        if (!b) {
            sh->failed = 1;
            return;
        }
        sh->bought = b;
        sh->cap_bought = cap;
    }
    sh->bought[sh->n_bought++] = item;
}

/* evstore visitor: turns a recorded event of an item the model knows into a
 * signal (items it does not know cannot be scored until the next training). */
static int shopper_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    shopper *sh = ctx;
    uint32_t item;
    if (model_item_index(sh->m, ev->item_id, ev->item_len, &item) != ERR_OK) return 0;
    float w = sh->weights[ev->type];
    if (w > 0) shopper_signal(sh, item, w);
    if (ev->type == EV_TYPE_PURCHASE) shopper_bought(sh, item);
    return sh->failed;
}

/* Collects what the request knows of its shopper. Context items count as
 * carted. Returns 0, or -1 after filling reply. */
static int shopper_collect(svc *s, const model *m, const char *user_id, char **context,
                           size_t n_context, shopper *sh, rpc_reply *reply) {
    memset(sh, 0, sizeof *sh);
    sh->m = m;
    sh->weights = s->weights;
    sh->user = SCORE_NO_USER;
    if (user_id[0]) {
        uint32_t u;
        if (model_user_index(m, user_id, strlen(user_id), &u) == ERR_OK) sh->user = u;
        err_t e;
        if (s->events && evstore_user_events(s->events, user_id, strlen(user_id),
                                             model_info(m)->data_until, shopper_visit, sh, &e)) {
            rpc_reply_error(reply, e.code, "cannot read the user's events: %s", e.msg);
            return -1;
        }
    }
    for (size_t i = 0; i < n_context; i++) {
        uint32_t item;
        if (model_item_index(m, context[i], strlen(context[i]), &item) == ERR_OK)
            shopper_signal(sh, item, s->weights[EV_TYPE_ADD_TO_CART]);
    }
    if (sh->failed) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory reading the user's events");
        return -1;
    }
    return 0;
}

/* The shopper's vector into x: a fold-in when there are fresh signals, the
 * stored vector otherwise. Returns the strategy it supports (PERSONALIZED
 * for a user id, SESSION for context alone), POPULAR when there is nothing
 * to personalize from or the model is popularity only (blend +inf: tuning
 * found nothing better), or -1 after filling reply. */
static int shopper_vector(const served_model *sm, const shopper *sh, int anonymous, float *x,
                          rpc_reply *reply) {
    const model_meta *meta = model_info(sm->m);
    if (isinf(meta->popularity_blend)) return RECD__V1__STRATEGY__POPULAR;
    int strategy = anonymous ? RECD__V1__STRATEGY__SESSION : RECD__V1__STRATEGY__PERSONALIZED;
    if (sh->n_signals > 0) {
        err_t e;
        if (score_fold_in(sm->m, sm->yty, sh->user, sh->signals, sh->n_signals, x, &e)) {
            rpc_reply_error(reply, e.code, "fold-in failed: %s", e.msg);
            return -1;
        }
        return strategy;
    }
    if (sh->user == SCORE_NO_USER) return RECD__V1__STRATEGY__POPULAR;
    memcpy(x, model_user_factors(sm->m) + (size_t)sh->user * meta->factors,
           meta->factors * sizeof *x);
    return strategy;
}

/* --- responses ------------------------------------------------------------- */

/* The items of a response: entries (best first) turned into ScoredItems whose
 * id strings point into one buffer. Owned by the caller: scored_list_free. */
typedef struct scored_list {
    Recd__V1__ScoredItem *items;
    Recd__V1__ScoredItem **ptrs;
    char *ids;
    size_t n;
} scored_list;

/* Builds n entries: top[i] when top is not NULL, else ids[i] with score 0
 * (ids not in the model). Returns 0 or -1 when out of memory. */
static int scored_list_build(const model *m, const topk_entry *top, size_t n, char **ids,
                             scored_list *out) {
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(ids ? ids[i] : "");
        if (top) model_item_id(m, top[i].index, &len);
        bytes += len + 1;
    }
    out->items = calloc(n ? n : 1, sizeof *out->items);
    out->ptrs = calloc(n ? n : 1, sizeof *out->ptrs);
    out->ids = malloc(bytes ? bytes : 1);
    out->n = n;
    if (!out->items || !out->ptrs || !out->ids) return -1;
    char *at = out->ids;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *id = top ? model_item_id(m, top[i].index, &len) : ids[i];
        if (!top) len = strlen(id);
        memcpy(at, id, len);
        at[len] = '\0';
        recd__v1__scored_item__init(&out->items[i]);
        out->items[i].item_id = at;
        out->items[i].score = top ? top[i].score : 0.0f;
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
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for the response");
        return;
    }
    reply->len = protobuf_c_message_pack(msg, reply->body);
    reply->err.code = ERR_OK;
}

/* Sets scores of the named items that the model knows to -INFINITY. */
static void exclude_ids(const model *m, char **ids, size_t n, float *scores) {
    for (size_t i = 0; i < n; i++) {
        uint32_t item;
        if (model_item_index(m, ids[i], strlen(ids[i]), &item) == ERR_OK) scores[item] = -INFINITY;
    }
}

/* --- Recommend ------------------------------------------------------------- */

/* Validates a RecommendRequest; 0 or -1 after filling reply. */
static int recommend_check(const Recd__V1__RecommendRequest *rq, rpc_reply *reply) {
    if (check_k(rq->k, reply)) return -1;
    if (rq->user_id[0] || rq->n_context_item_ids == 0) {
        if (!rq->user_id[0]) {
            rpc_reply_error(reply, ERR_INVALID,
                            "user_id is empty and there are no context_item_ids");
            return -1;
        }
        if (check_id("user_id", rq->user_id, reply)) return -1;
    }
    if (check_ids("context_item_ids", rq->context_item_ids, rq->n_context_item_ids, reply) ||
        check_ids("exclude_item_ids", rq->exclude_item_ids, rq->n_exclude_item_ids, reply))
        return -1;
    if (!(rq->diversity >= 0.0f && rq->diversity <= 1.0f)) {
        rpc_reply_error(reply, ERR_INVALID, "diversity must be between 0 and 1, got %g",
                        rq->diversity);
        return -1;
    }
    if (rq->category[0] && check_id("category", rq->category, reply)) return -1;
    return 0;
}

/* One Recommend call between its preparation and its answer. Owned by the
 * handler running it: recommend_free. */
typedef struct recommend_call {
    Recd__V1__RecommendRequest *rq;
    served_model *sm;
    multipliers *mu;
    shopper sh;
    float *x;
    uint32_t category, variant;
    int strategy; /* a Recd__V1__Strategy once prepared */
    char request_id[EXP_REQUEST_ID_MAX];
} recommend_call;

static void recommend_free(recommend_call *c) {
    shopper_free(&c->sh);
    multipliers_release(c->mu);
    free(c->x);
    if (c->sm) svc_release(c->sm);
    if (c->rq) recd__v1__recommend_request__free_unpacked(c->rq, NULL);
}

/* Decodes, validates and prepares a call up to its scores: the variant and
 * its model, the rules, the shopper's vector in c->x (unless the strategy is
 * POPULAR). Returns 0 when the call needs scores, or -1 with reply filled.
 * Either way the caller frees c with recommend_free. */
static int recommend_prepare(svc *s, const uint8_t *req, size_t len, recommend_call *c,
                             rpc_reply *reply) {
    memset(c, 0, sizeof *c);
    Recd__V1__RecommendRequest *rq = c->rq = recd__v1__recommend_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed RecommendRequest: not a valid protobuf message");
        return -1;
    }
    if (recommend_check(rq, reply)) return -1;
    /* The member's variant answers; anonymous visitors get control's. */
    pthread_mutex_lock(&s->lock);
    if (rq->user_id[0] && s->exp.n > 1)
        c->variant = exp_assign(&s->exp, rq->user_id, strlen(rq->user_id));
    exp_request_id(&s->exp, c->variant, c->request_id);
    pthread_mutex_unlock(&s->lock);
    c->sm = svc_acquire_variant(s, c->variant);
    const model *m = c->sm->m;
    const model_meta *meta = model_info(m);
    c->x = malloc(meta->factors * sizeof *c->x);
    c->mu = svc_multipliers(s, c->sm);
    if (!c->x || !c->mu) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory scoring %u items", meta->n_items);
        return -1;
    }
    if (rq->category[0] &&
        model_category_index(m, rq->category, strlen(rq->category), &c->category)) {
        if (model_n_categories(m) == 0)
            rpc_reply_error(reply, ERR_PRECONDITION, "model %s has no item categories to filter by",
                            meta->version);
        else
            rpc_reply_error(reply, ERR_NOTFOUND, "category '%.*s' is not in model %s", 64,
                            rq->category, meta->version);
        return -1;
    }
    /* A member who opted out (or was forgotten) gets what anyone would. */
    int private = rq->user_id[0] && svc_privacy(s, rq->user_id, strlen(rq->user_id));
    if (!private && shopper_collect(s, m, rq->user_id, rq->context_item_ids, rq->n_context_item_ids,
                                    &c->sh, reply))
        return -1;
    c->strategy = private ? RECD__V1__STRATEGY__POPULAR
                          : shopper_vector(c->sm, &c->sh, !rq->user_id[0], c->x, reply);
    if (c->strategy < 0) return -1;
    if (c->sh.n_signals && c->strategy != RECD__V1__STRATEGY__POPULAR)
        atomic_fetch_add(&s->fold_ins, 1);
    if (private) c->sh.user = SCORE_NO_USER;
    return 0;
}

static void recommend_respond(svc *s, const recommend_call *c, const topk_entry *top, uint32_t n,
                              rpc_reply *reply);

/* Answers a prepared call from scores: n_items floats holding x . y_i for
 * every item (for POPULAR anything: replaced here), used as scratch. A
 * member answered POPULAR (by a popularity-only model) still does not get
 * what they bought. */
static void recommend_answer(svc *s, recommend_call *c, float *scores, rpc_reply *reply) {
    const Recd__V1__RecommendRequest *rq = c->rq;
    const model *m = c->sm->m;
    const model_meta *meta = model_info(m);
    const shopper *sh = &c->sh;
    if (c->strategy == RECD__V1__STRATEGY__POPULAR) {
        /* Nothing to personalize from (or a popularity-only model): the best sellers. */
        memcpy(scores, model_item_popularity(m), (size_t)meta->n_items * sizeof *scores);
    } else {
        score_add_popularity(m, 0, meta->n_items, scores);
    }
    if (!rq->include_purchased && sh->user != SCORE_NO_USER) {
        uint32_t n_bought;
        const uint32_t *bought = model_user_items(m, sh->user, &n_bought);
        for (uint32_t i = 0; i < n_bought; i++)
            scores[bought[i]] = -INFINITY;
    }
    if (!rq->include_purchased)
        for (size_t i = 0; i < sh->n_bought; i++)
            scores[sh->bought[i]] = -INFINITY;
    exclude_ids(m, rq->context_item_ids, rq->n_context_item_ids, scores);
    exclude_ids(m, rq->exclude_item_ids, rq->n_exclude_item_ids, scores);
    if (c->mu->any) score_apply_multipliers(scores, c->mu->v, meta->n_items);
    if (rq->category[0]) score_keep_category(m, c->category, scores);
    uint32_t n;
    err_t e;
    topk_entry *top = malloc(rq->k * sizeof *top);
    if (!top) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for the top %u", rq->k);
        return;
    }
    if (score_top_k(m, scores, rq->k, rq->diversity, top, &n, &e))
        rpc_reply_error(reply, e.code, "%s", e.msg);
    else
        recommend_respond(s, c, top, n, reply);
    free(top);
}

/* Answers a call with its chosen items (best first). */
static void recommend_respond(svc *s, const recommend_call *c, const topk_entry *top, uint32_t n,
                              rpc_reply *reply) {
    const model *m = c->sm->m;
    const model_meta *meta = model_info(m);
    scored_list list;
    if (scored_list_build(m, top, n, NULL, &list)) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
    } else {
        Recd__V1__RecommendResponse resp = RECD__V1__RECOMMEND_RESPONSE__INIT;
        resp.strategy = (Recd__V1__Strategy)c->strategy;
        resp.items = list.ptrs;
        resp.n_items = list.n;
        resp.model_version = (char *)meta->version;
        /* protobuf-c wants char *; the response only reads it */
        resp.request_id = (char *)c->request_id;
        resp.variant = s->exp.names[c->variant];
        reply_pack(reply, &resp.base);
    }
    scored_list_free(&list);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Every item a call must not return (what the user bought, unless
 * include_purchased; context and excluded items), sorted and deduplicated
 * into *out (caller frees). Returns the count, or -1 when out of memory. */
static long recommend_exclusions(const recommend_call *c, uint32_t **out) {
    const Recd__V1__RecommendRequest *rq = c->rq;
    const model *m = c->sm->m;
    uint32_t n_stored = 0;
    const uint32_t *stored = NULL;
    if (!rq->include_purchased && c->sh.user != SCORE_NO_USER)
        stored = model_user_items(m, c->sh.user, &n_stored);
    size_t n_bought = rq->include_purchased ? 0 : c->sh.n_bought;
    size_t cap = n_stored + n_bought + rq->n_context_item_ids + rq->n_exclude_item_ids;
    uint32_t *ex = malloc((cap ? cap : 1) * sizeof *ex);
    if (!ex) return -1;
    size_t n = 0;
    for (uint32_t i = 0; i < n_stored; i++)
        ex[n++] = stored[i];
    for (size_t i = 0; i < n_bought; i++)
        ex[n++] = c->sh.bought[i];
    char **lists[2] = {rq->context_item_ids, rq->exclude_item_ids};
    size_t lens[2] = {rq->n_context_item_ids, rq->n_exclude_item_ids};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < lens[l]; i++)
            if (model_item_index(m, lists[l][i], strlen(lists[l][i]), &ex[n]) == ERR_OK) n++;
    qsort(ex, n, sizeof *ex, cmp_u32);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || ex[i] != ex[w - 1]) ex[w++] = ex[i];
    *out = ex;
    return (long)w;
}

/* Recommend calls that queued up together: each is prepared on its own, then
 * the personalized ones of one model are scored together, block of items by
 * block, from the model's bfloat16 panels: one pass over a block serves all
 * of the calls (instead of one pass per call: the whole cost on a large
 * catalogue), and each call keeps a running top-k, so no call needs a row of
 * all the items. The few items whose panel scores come within the error
 * bound of the cut are scored again in float32, so the answer is exactly
 * the float32 ranking. Calls with diversity (MMR looks at a pool of
 * candidates) and POPULAR ones are answered one by one. */
static void svc_recommend_batch(void *ctx, const uint8_t *const *reqs, const size_t *lens, size_t n,
                                rpc_reply *replies) {
    svc *s = ctx;
    recommend_call calls[RPC_MAX_BATCH];
    int ready[RPC_MAX_BATCH];
    for (size_t i = 0; i < n; i++)
        ready[i] = recommend_prepare(s, reqs[i], lens[i], &calls[i], &replies[i]) == 0;
    for (size_t i = 0; i < n; i++) {
        if (!ready[i]) continue;
        recommend_call *c = &calls[i];
        if (c->strategy == RECD__V1__STRATEGY__POPULAR || c->rq->diversity > 0) {
            float *scores = scores_buffer(model_info(c->sm->m)->n_items);
            if (!scores) {
                rpc_reply_error(&replies[i], ERR_NOMEM, "out of memory scoring");
            } else {
                if (c->strategy != RECD__V1__STRATEGY__POPULAR) score_items(c->sm->m, c->x, scores);
                recommend_answer(s, c, scores, &replies[i]);
            }
            ready[i] = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!ready[i]) continue;
        const model *m = calls[i].sm->m;
        size_t group[RPC_MAX_BATCH], g = 0;
        for (size_t j = i; j < n; j++)
            if (ready[j] && calls[j].sm == calls[i].sm) group[g++] = j;
        score_query q[RPC_MAX_BATCH] = {0};
        uint32_t *excluded[RPC_MAX_BATCH] = {0};
        float *work = scores_buffer(score_batch_workspace(g));
        err_t e;
        int rc =
            work ? ERR_OK
                 : err_set(&e, ERR_NOMEM, "out of memory scoring %u items", model_info(m)->n_items);
        for (size_t k = 0; k < g && rc == ERR_OK; k++) {
            recommend_call *c = &calls[group[k]];
            long n_excluded = recommend_exclusions(c, &excluded[k]);
            q[k] = (score_query){
                .x = c->x,
                .k = c->rq->k,
                .excluded = excluded[k],
                .n_excluded = n_excluded > 0 ? (size_t)n_excluded : 0,
                .multipliers = c->mu->any ? c->mu->v : NULL,
                .max_slope = c->mu->any ? c->mu->max_slope : 1.0f,
                .category = c->rq->category[0] ? (int64_t)c->category : -1,
                .best = malloc(c->rq->k * sizeof *q[k].best),
            };
            if (n_excluded < 0 || !q[k].best)
                rc = err_set(&e, ERR_NOMEM, "out of memory scoring %u items",
                             model_info(m)->n_items);
        }
        if (rc == ERR_OK) rc = score_batch(m, q, g, work, &e);
        for (size_t k = 0; k < g; k++) {
            if (rc)
                rpc_reply_error(&replies[group[k]], e.code, "%s", e.msg);
            else
                recommend_respond(s, &calls[group[k]], q[k].best, q[k].n_best, &replies[group[k]]);
            free(q[k].best);
            free(excluded[k]);
            ready[group[k]] = 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        recommend_free(&calls[i]);
}

/* A call that came alone takes the same path as a batch of one. */
static void svc_recommend(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc_recommend_batch(ctx, &req, &len, 1, reply);
}

/* --- SimilarItems ---------------------------------------------------------- */

static void svc_similar(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SimilarItemsRequest *rq = recd__v1__similar_items_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed SimilarItemsRequest: not a valid protobuf message");
        return;
    }
    uint32_t *seeds = NULL;
    topk_entry *top = NULL;
    multipliers *mu = NULL;
    served_model *sm = NULL;
    if (check_k(rq->k, reply)) goto done;
    if (rq->item_id[0] || rq->n_item_ids == 0) {
        if (check_id("item_id", rq->item_id, reply)) goto done;
    }
    if (check_ids("item_ids", rq->item_ids, rq->n_item_ids, reply)) goto done;
    sm = svc_acquire(s);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    float *scores = scores_buffer(meta->n_items);
    seeds = malloc((rq->n_item_ids + 1) * sizeof *seeds);
    top = malloc(rq->k * sizeof *top);
    mu = svc_multipliers(s, sm);
    if (!scores || !seeds || !top || !mu) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory scoring %u items", meta->n_items);
        goto done;
    }
    /* Seeds the model does not know (new items) are passed over as long as
     * one is known: a cart often holds something new. */
    size_t n_seeds = 0;
    const char *unknown = NULL;
    for (size_t i = 0; i <= rq->n_item_ids; i++) {
        const char *id = i == 0 ? rq->item_id : rq->item_ids[i - 1];
        if (!id[0]) continue;
        if (model_item_index(m, id, strlen(id), &seeds[n_seeds]) == ERR_OK)
            n_seeds++;
        else if (!unknown)
            unknown = id;
    }
    if (n_seeds == 0) {
        rpc_reply_error(reply, ERR_NOTFOUND, "item '%.*s' is not in model %s", 64, unknown,
                        meta->version);
        goto done;
    }
    err_t e;
    if (score_similar(m, seeds, n_seeds, scores, &e)) {
        rpc_reply_error(reply, e.code, "%s", e.msg);
        goto done;
    }
    for (size_t i = 0; i < n_seeds; i++)
        scores[seeds[i]] = -INFINITY;
    if (mu->any) score_apply_multipliers(scores, mu->v, meta->n_items);
    uint32_t n = topk_select(scores, meta->n_items, rq->k, top);
    scored_list list;
    Recd__V1__SimilarItemsResponse resp = RECD__V1__SIMILAR_ITEMS_RESPONSE__INIT;
    if (scored_list_build(m, top, n, NULL, &list)) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
    } else {
        resp.items = list.ptrs;
        resp.n_items = list.n;
        resp.model_version = (char *)meta->version;
        reply_pack(reply, &resp.base);
    }
    scored_list_free(&list);
done:
    multipliers_release(mu);
    free(top);
    free(seeds);
    if (sm) svc_release(sm);
    recd__v1__similar_items_request__free_unpacked(rq, NULL);
}

/* --- Rerank ---------------------------------------------------------------- */

static void svc_rerank(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__RerankRequest *rq = recd__v1__rerank_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed RerankRequest: not a valid protobuf message");
        return;
    }
    served_model *sm = NULL;
    multipliers *mu = NULL;
    topk_entry *known = NULL;
    char **unknown = NULL;
    float *x = NULL;
    shopper sh;
    memset(&sh, 0, sizeof sh);
    if (rq->n_candidate_item_ids == 0) {
        rpc_reply_error(reply, ERR_INVALID, "candidate_item_ids is empty");
        goto done;
    }
    if ((rq->user_id[0] && check_id("user_id", rq->user_id, reply)) ||
        check_ids("candidate_item_ids", rq->candidate_item_ids, rq->n_candidate_item_ids, reply) ||
        check_ids("context_item_ids", rq->context_item_ids, rq->n_context_item_ids, reply))
        goto done;
    sm = svc_acquire(s);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    size_t n = rq->n_candidate_item_ids;
    known = malloc(n * sizeof *known);
    unknown = malloc(n * sizeof *unknown);
    x = malloc(meta->factors * sizeof *x);
    mu = svc_multipliers(s, sm);
    if (!known || !unknown || !x || !mu) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory reranking");
        goto done;
    }
    int private = rq->user_id[0] && svc_privacy(s, rq->user_id, strlen(rq->user_id));
    if (!private && shopper_collect(s, m, rq->user_id, rq->context_item_ids, rq->n_context_item_ids,
                                    &sh, reply))
        goto done;
    int strategy =
        private ? RECD__V1__STRATEGY__POPULAR : shopper_vector(sm, &sh, !rq->user_id[0], x, reply);
    if (strategy < 0) goto done;
    const float *y = model_item_factors(m), *popularity = model_item_popularity(m);
    size_t n_known = 0, n_unknown = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = rq->candidate_item_ids[i];
        uint32_t item;
        if (model_item_index(m, id, strlen(id), &item) != ERR_OK) {
            unknown[n_unknown++] = rq->candidate_item_ids[i];
            continue;
        }
        int seen = 0; /* a candidate listed twice is ranked once */
        for (size_t j = 0; j < n_known && !seen; j++)
            seen = known[j].index == item;
        if (seen) continue;
        float score = 0;
        if (strategy == RECD__V1__STRATEGY__POPULAR) {
            score = popularity[item];
        } else {
            const float *row = y + (size_t)item * meta->factors;
            for (uint32_t f = 0; f < meta->factors; f++)
                score += x[f] * row[f];
            score_add_popularity(m, item, 1, &score);
        }
        if (mu->any) score_apply_multipliers(&score, &mu->v[item], 1);
        if (score > -INFINITY) known[n_known++] = (topk_entry){item, score};
    }
    topk_sort(known, (uint32_t)n_known);
    scored_list a, b;
    memset(&b, 0, sizeof b);
    Recd__V1__RerankResponse resp = RECD__V1__RERANK_RESPONSE__INIT;
    Recd__V1__ScoredItem **all = malloc((n_known + n_unknown + 1) * sizeof *all);
    if (!all || scored_list_build(m, known, n_known, NULL, &a) ||
        scored_list_build(m, NULL, n_unknown, unknown, &b)) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
    } else {
        memcpy(all, a.ptrs, n_known * sizeof *all);
        memcpy(all + n_known, b.ptrs, n_unknown * sizeof *all);
        resp.items = all;
        resp.n_items = n_known + n_unknown;
        resp.model_version = (char *)meta->version;
        resp.strategy = (Recd__V1__Strategy)strategy;
        reply_pack(reply, &resp.base);
    }
    free(all);
    scored_list_free(&a);
    scored_list_free(&b);
done:
    shopper_free(&sh);
    multipliers_release(mu);
    free(x);
    free(known);
    free(unknown);
    if (sm) svc_release(sm);
    recd__v1__rerank_request__free_unpacked(rq, NULL);
}

/* --- writes: RecordEvents, RecordFeedback ------------------------------- */

#define SVC_REASON 96 /* bytes of a rejected record's reason made up for it */

/* Why record i of a write call's request cannot be stored, or NULL; fills
 * *out with it as it will be stored and *tag with what the caller counts it
 * under. A reason made up for this record goes into buf (SVC_REASON bytes). */
typedef const char *(*record_check)(svc *s, const void *request, size_t i, int64_t now,
                                    evstore_event *out, int *tag, char *buf);

/* What a write call's records came to: the good ones, stored all or none,
 * and the rejected ones with their reasons. Owned by the handler:
 * write_batch_free. */
typedef struct write_batch {
    evstore_event *good;
    int *tags; /* parallel to good */
    size_t n_good, n_rejected;
    Recd__V1__RejectedEvent *rejected, **rejected_ptrs;
    char (*reasons)[SVC_REASON];
} write_batch;

static void write_batch_free(write_batch *b) {
    free(b->good);
    free(b->tags);
    free(b->rejected);
    free(b->rejected_ptrs);
    free(b->reasons);
}

/* Checks the n records of a write call's request one by one (each bad one
 * is rejected on its own) and stores the good ones in store. what names the records in
 * messages. Returns 0, or -1 with reply filled: too many records, out of
 * memory, or the store failed - then nothing of the call is stored, and
 * the client must not think so. */
static int write_batch_store(svc *s, evstore *store, const void *request, size_t n,
                             record_check check, const char *what, write_batch *b,
                             rpc_reply *reply) {
    if (n > SVC_MAX_LIST) {
        rpc_reply_error(reply, ERR_INVALID, "%zu %s in one call, more than %d", n, what,
                        SVC_MAX_LIST);
        return -1;
    }
    size_t cap = n ? n : 1;
    b->good = malloc(cap * sizeof *b->good);
    b->tags = malloc(cap * sizeof *b->tags);
    b->rejected = malloc(cap * sizeof *b->rejected);
    b->rejected_ptrs = malloc(cap * sizeof *b->rejected_ptrs);
    b->reasons = malloc(cap * sizeof *b->reasons);
    if (!b->good || !b->tags || !b->rejected || !b->rejected_ptrs || !b->reasons) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu %s", n, what);
        return -1;
    }
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        char *buf = b->reasons[b->n_rejected];
        const char *problem =
            check(s, request, i, now, &b->good[b->n_good], &b->tags[b->n_good], buf);
        if (!problem) {
            b->n_good++;
            continue;
        }
        Recd__V1__RejectedEvent *r = &b->rejected[b->n_rejected];
        recd__v1__rejected_event__init(r);
        r->index = (uint32_t)i;
        r->reason = (char *)problem; /* protobuf-c wants char *; packing only reads it */
        b->rejected_ptrs[b->n_rejected++] = r;
    }
    err_t e;
    if (b->n_good && evstore_append(store, b->good, b->n_good, NULL, &e)) {
        rpc_reply_error(reply, e.code, "%s not stored: %s", what, e.msg);
        log_error("msg=\"%s not stored\" records=%zu error=\"%s\"", what, b->n_good, e.msg);
        return -1;
    }
    return 0;
}

/* A record_check of a RecordEventsRequest: event i as it will be stored
 * (timestamp 0 = now, quantity 0 = 1). Events have no tag. */
static const char *check_event(svc *s, const void *request, size_t i, int64_t now,
                               evstore_event *out, int *tag, char *buf) {
    const Recd__V1__Event *ev = ((const Recd__V1__RecordEventsRequest *)request)->events[i];
    const size_t cap = SVC_REASON;
    const char *problem;
    *tag = 0;
    if ((problem = id_problem(ev->user_id))) {
        snprintf(buf, cap, "user_id %s", problem);
        return buf;
    }
    if (svc_privacy(s, ev->user_id, strlen(ev->user_id)) == PRIVACY_FORGOTTEN)
        return "the member was forgotten (ForgetUser): nothing more is kept about them";
    if ((problem = id_problem(ev->item_id))) {
        snprintf(buf, cap, "item_id %s", problem);
        return buf;
    }
    if (!ev_type_known((uint32_t)ev->type)) {
        snprintf(buf, cap, "unknown event type %d", (int)ev->type);
        return buf;
    }
    int64_t ts = ev->timestamp_unix ? ev->timestamp_unix : now;
    if (ts < 0) return "timestamp_unix is negative";
    if (ts > now + 86400) return "timestamp_unix is more than a day in the future";
    if (ev->quantity > SVC_MAX_QUANTITY) {
        snprintf(buf, cap, "quantity %u is absurd (more than %d)", ev->quantity, SVC_MAX_QUANTITY);
        return buf;
    }
    if (!isfinite(ev->price) || ev->price < 0 || ev->price > SVC_MAX_PRICE)
        return "price is negative, not finite or absurd";
    *out = (evstore_event){ev->user_id,
                           strlen(ev->user_id),
                           ev->item_id,
                           strlen(ev->item_id),
                           (uint32_t)ev->type,
                           ts,
                           ev->quantity ? ev->quantity : 1,
                           ev->price};
    return NULL;
}

static void svc_record_events(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__RecordEventsRequest *rq = recd__v1__record_events_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed RecordEventsRequest: not a valid protobuf message");
        return;
    }
    write_batch b = {0};
    if (!s->events) {
        rpc_reply_error(reply, ERR_PRECONDITION,
                        "this server keeps no events: start recd serve with --events DIR");
    } else if (write_batch_store(s, s->events, rq, rq->n_events, check_event, "events", &b,
                                 reply) == 0) {
        atomic_fetch_add(&s->events_ingested, b.n_good);
        Recd__V1__RecordEventsResponse resp = RECD__V1__RECORD_EVENTS_RESPONSE__INIT;
        resp.accepted = (uint32_t)b.n_good;
        resp.rejected = b.rejected_ptrs;
        resp.n_rejected = b.n_rejected;
        reply_pack(reply, &resp.base);
    }
    write_batch_free(&b);
    recd__v1__record_events_request__free_unpacked(rq, NULL);
}

/* --- item rules: availability and boosts ----------------------------------- */

static void svc_set_availability(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetItemAvailabilityRequest *rq =
        recd__v1__set_item_availability_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed SetItemAvailabilityRequest: not a valid protobuf message");
        return;
    }
    if (rq->n_items > SVC_MAX_LIST) {
        rpc_reply_error(reply, ERR_INVALID, "%zu items, more than %d", rq->n_items, SVC_MAX_LIST);
        goto done;
    }
    /* All or nothing: a bad entry is reported before anything changes. */
    for (size_t i = 0; i < rq->n_items; i++) {
        const char *problem = id_problem(rq->items[i]->item_id);
        if (problem) {
            rpc_reply_error(reply, ERR_INVALID, "items[%zu].item_id %s", i, problem);
            goto done;
        }
    }
    for (size_t i = 0; i < rq->n_items; i++) {
        err_t e;
        const char *id = rq->items[i]->item_id;
        if (catalog_set_available(s->rules, id, strlen(id), rq->items[i]->available, &e)) {
            rpc_reply_error(reply, e.code, "items[%zu] not stored: %s", i, e.msg);
            goto done;
        }
    }
    Recd__V1__SetItemAvailabilityResponse resp = RECD__V1__SET_ITEM_AVAILABILITY_RESPONSE__INIT;
    resp.updated = (uint32_t)rq->n_items;
    reply_pack(reply, &resp.base);
done:
    recd__v1__set_item_availability_request__free_unpacked(rq, NULL);
}

static void svc_set_boosts(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetItemBoostsRequest *rq = recd__v1__set_item_boosts_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed SetItemBoostsRequest: not a valid protobuf message");
        return;
    }
    if (rq->n_boosts > SVC_MAX_LIST) {
        rpc_reply_error(reply, ERR_INVALID, "%zu boosts, more than %d", rq->n_boosts, SVC_MAX_LIST);
        goto done;
    }
    for (size_t i = 0; i < rq->n_boosts; i++) {
        const char *problem = id_problem(rq->boosts[i]->item_id);
        float mult = rq->boosts[i]->multiplier;
        if (problem) {
            rpc_reply_error(reply, ERR_INVALID, "boosts[%zu].item_id %s", i, problem);
            goto done;
        }
        if (!(mult > 0.0f && mult <= CATALOG_MAX_BOOST)) {
            rpc_reply_error(reply, ERR_INVALID, "boosts[%zu].multiplier must be in (0, %g], got %g",
                            i, CATALOG_MAX_BOOST, mult);
            goto done;
        }
    }
    for (size_t i = 0; i < rq->n_boosts; i++) {
        err_t e;
        const char *id = rq->boosts[i]->item_id;
        if (catalog_set_boost(s->rules, id, strlen(id), rq->boosts[i]->multiplier, &e)) {
            rpc_reply_error(reply, e.code, "boosts[%zu] not stored: %s", i, e.msg);
            goto done;
        }
    }
    Recd__V1__SetItemBoostsResponse resp = RECD__V1__SET_ITEM_BOOSTS_RESPONSE__INIT;
    resp.updated = (uint32_t)rq->n_boosts;
    reply_pack(reply, &resp.base);
done:
    recd__v1__set_item_boosts_request__free_unpacked(rq, NULL);
}

/* --- GetChurnScore --------------------------------------------------------- */

#define SVC_TOP_FACTORS 5

static void svc_churn_score(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__ChurnScoreRequest *rq = recd__v1__churn_score_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed ChurnScoreRequest: not a valid protobuf message");
        return;
    }
    if (check_id("user_id", rq->user_id, reply)) {
        recd__v1__churn_score_request__free_unpacked(rq, NULL);
        return;
    }
    served_model *sm = svc_acquire(s);
    const model *m = sm->m;
    const model_meta *meta = model_info(m);
    const model_churn *churn = model_churn_info(m);
    uint32_t u;
    model_churn_user cu;
    int private = svc_privacy(s, rq->user_id, strlen(rq->user_id));
    if (!churn) {
        rpc_reply_error(reply, ERR_PRECONDITION,
                        "model %s has no churn model: train with --churn-horizon", meta->version);
    } else if (private) {
        rpc_reply_error(reply, ERR_NOTFOUND, "member '%.*s' %s", 64, rq->user_id,
                        private == PRIVACY_FORGOTTEN ? "was forgotten (ForgetUser)"
                                                     : "opted out of personalization");
    } else if (model_user_index(m, rq->user_id, strlen(rq->user_id), &u) != ERR_OK) {
        rpc_reply_error(reply, ERR_NOTFOUND, "user '%.*s' is not in model %s", 64, rq->user_id,
                        meta->version);
    } else if (model_churn_user_scores(m, u, &cu) || isnan(cu.probability)) {
        rpc_reply_error(reply, ERR_NOTFOUND,
                        "user '%.*s' has no purchase before the scoring time of model %s", 64,
                        rq->user_id, meta->version);
    } else {
        uint32_t feature[SVC_TOP_FACTORS], n = 0;
        double contribution[SVC_TOP_FACTORS];
        err_t e;
        Recd__V1__Factor factors[SVC_TOP_FACTORS], *factor_ptrs[SVC_TOP_FACTORS];
        if (campaign_top_factors(m, u, SVC_TOP_FACTORS, feature, contribution, &n, &e)) {
            rpc_reply_error(reply, e.code, "%s", e.msg);
        } else {
            for (uint32_t i = 0; i < n; i++) {
                recd__v1__factor__init(&factors[i]);
                factors[i].feature = (char *)churn->feature_names[feature[i]];
                factors[i].contribution = contribution[i];
                factor_ptrs[i] = &factors[i];
            }
            Recd__V1__RFM rfm = RECD__V1__RFM__INIT;
            rfm.recency_days = cu.recency_days;
            rfm.frequency = (uint32_t)cu.frequency;
            rfm.monetary = cu.monetary;
            Recd__V1__ChurnScore resp = RECD__V1__CHURN_SCORE__INIT;
            resp.user_id = rq->user_id;
            resp.probability = cu.probability;
            resp.risk_band = (char *)model_churn_band_name(cu.band);
            resp.segment = (char *)model_churn_segment_name(cu.segment);
            resp.tier = (char *)model_churn_tier_name(cu.tier);
            resp.rfm = &rfm;
            resp.top_factors = factor_ptrs;
            resp.n_top_factors = n;
            resp.model_version = (char *)meta->version;
            reply_pack(reply, &resp.base);
        }
    }
    svc_release(sm);
    recd__v1__churn_score_request__free_unpacked(rq, NULL);
}

/* --- StreamCampaignTargets ------------------------------------------------- */

/* State of one target stream: what emit needs to send a member. */
typedef struct target_stream {
    const model *m;
    const model_churn *churn;
    const float *affinity;
    rpc_stream *st;
    uint8_t *buf;
    size_t cap;
    int gone;  /* the client went away */
    int nomem; /* no buffer for the next message: the stream stops, and says why */
} target_stream;

static int target_emit(void *ctx, uint32_t u) {
    target_stream *ts = ctx;
    size_t len;
    const char *id = model_user_id(ts->m, u, &len);
    char user[SVC_MAX_ID_BYTES * 4 + 1];
    if (len >= sizeof user) len = sizeof user - 1;
    memcpy(user, id, len);
    user[len] = '\0';
    Recd__V1__CampaignTarget t = RECD__V1__CAMPAIGN_TARGET__INIT;
    t.user_id = user;
    t.churn_probability = ts->churn->probability[u];
    t.risk_band = (char *)model_churn_band_name(ts->churn->band[u]);
    t.segment = (char *)model_churn_segment_name(ts->churn->segment[u]);
    t.tier = (char *)model_churn_tier_name(ts->churn->tier[u]);
    t.monetary = ts->churn->monetary[u];
    t.affinity = ts->affinity ? ts->affinity[u] : 0.0f;
    size_t n = recd__v1__campaign_target__get_packed_size(&t);
    if (n > ts->cap) {
        free(ts->buf);
        ts->cap = n * 2;
        if (!(ts->buf = malloc(ts->cap))) return ts->nomem = 1;
    }
    recd__v1__campaign_target__pack(&t, ts->buf);
    if (rpc_stream_send(ts->st, ts->buf, n)) ts->gone = 1;
    return ts->gone;
}

/* evstore visitor for viewed_not_bought_days: marks members who viewed or
 * carted (the item, if one is set) after since, and unmarks those who bought
 * it after their look. Events come in sequence order, so a later purchase
 * wins over an earlier view. */
typedef struct looked_scan {
    const model *m;
    uint8_t *eligible;
    int64_t since;
    const char *item; /* NULL = any item */
} looked_scan;

static int looked_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    looked_scan *ls = ctx;
    if (ev->ts < ls->since) return 0;
    if (ls->item &&
        (ev->item_len != strlen(ls->item) || memcmp(ev->item_id, ls->item, ev->item_len)))
        return 0;
    uint32_t u;
    if (model_user_index(ls->m, ev->user_id, ev->user_len, &u) != ERR_OK) return 0;
    if (ev->type == EV_TYPE_VIEW || ev->type == EV_TYPE_ADD_TO_CART)
        ls->eligible[u] = 1;
    else if (ev->type == EV_TYPE_PURCHASE)
        ls->eligible[u] = 0;
    return 0;
}

typedef struct private_scan {
    const model *m;
    uint8_t *eligible;
} private_scan;

static void unmark_private(void *ctx, const char *id, size_t len, const void *value) {
    private_scan *ps = ctx;
    uint32_t u;
    if (privacy_of_value(value) != PRIVACY_NONE && model_user_index(ps->m, id, len, &u) == ERR_OK)
        ps->eligible[u] = 0;
}

/* Turns the request into a filter (affinity and eligibility arrays
 * allocated here, owned by the caller). Returns 0, or -1 with reply set. */
static int targets_filter(svc *s, const model *m, const Recd__V1__CampaignTargetsRequest *rq,
                          campaign_filter *f, float **affinity, uint8_t **eligible,
                          rpc_reply *reply) {
    const model_meta *meta = model_info(m);
    memset(f, 0, sizeof *f);
    f->min_probability = rq->min_probability;
    f->max_probability = rq->max_probability == 0.0f ? 1.0f : rq->max_probability;
    if (!(f->min_probability >= 0 && f->max_probability <= 1 &&
          f->min_probability <= f->max_probability)) {
        rpc_reply_error(reply, ERR_INVALID, "churn probability range [%g, %g] is not within [0, 1]",
                        f->min_probability, f->max_probability);
        return -1;
    }
    for (size_t i = 0; i < rq->n_segments; i++) {
        int code = model_churn_segment_code(rq->segments[i]);
        if (code < 0) {
            rpc_reply_error(reply, ERR_INVALID, "segments[%zu] '%.*s' is not a segment", i, 64,
                            rq->segments[i]);
            return -1;
        }
        f->segments |= 1u << code;
    }
    for (size_t i = 0; i < rq->n_tiers; i++) {
        int code = model_churn_tier_code(rq->tiers[i]);
        if (code < 0) {
            rpc_reply_error(reply, ERR_INVALID, "tiers[%zu] '%.*s' is not a tier", i, 64,
                            rq->tiers[i]);
            return -1;
        }
        f->tiers |= 1u << code;
    }
    f->limit = rq->limit;
    f->order = rq->order == RECD__V1__TARGET_ORDER__BY_VALUE      ? CAMPAIGN_BY_VALUE
               : rq->order == RECD__V1__TARGET_ORDER__BY_AFFINITY ? CAMPAIGN_BY_AFFINITY
                                                                  : CAMPAIGN_BY_PROBABILITY;
    err_t e;
    if (rq->item_id[0] || rq->category[0]) {
        uint32_t idx;
        if (!(*affinity = malloc(((size_t)meta->n_users + 1) * sizeof **affinity))) {
            rpc_reply_error(reply, ERR_NOMEM, "out of memory");
            return -1;
        }
        if (rq->item_id[0]) {
            if (model_item_index(m, rq->item_id, strlen(rq->item_id), &idx)) {
                rpc_reply_error(reply, ERR_NOTFOUND, "item '%.*s' is not in model %s", 64,
                                rq->item_id, meta->version);
                return -1;
            }
            if (campaign_affinity_item(m, idx, *affinity, &e)) {
                rpc_reply_error(reply, e.code, "%s", e.msg);
                return -1;
            }
        } else if (model_category_index(m, rq->category, strlen(rq->category), &idx)) {
            rpc_reply_error(reply, ERR_NOTFOUND, "category '%.*s' is not in model %s", 64,
                            rq->category, meta->version);
            return -1;
        } else if (campaign_affinity_category(m, idx, *affinity, &e)) {
            rpc_reply_error(reply, e.code, "category '%.*s': %s", 64, rq->category, e.msg);
            return -1;
        }
        f->affinity = *affinity;
    }
    if (rq->viewed_not_bought_days) {
        if (!s->events) {
            rpc_reply_error(reply, ERR_PRECONDITION,
                            "viewed_not_bought_days needs the event store: start recd serve with "
                            "--events DIR");
            return -1;
        }
        if (!(*eligible = calloc((size_t)meta->n_users + 1, 1))) {
            rpc_reply_error(reply, ERR_NOMEM, "out of memory");
            return -1;
        }
        looked_scan ls = {m, *eligible,
                          (int64_t)time(NULL) - 86400 * (int64_t)rq->viewed_not_bought_days,
                          rq->item_id[0] ? rq->item_id : NULL};
        if (evstore_scan(s->events, 1, looked_visit, &ls, &e)) {
            rpc_reply_error(reply, e.code, "cannot read the events: %s", e.msg);
            return -1;
        }
        f->eligible = *eligible;
    }
    /* Members who opted out or were forgotten are never campaign targets. */
    if (!*eligible) {
        if (!(*eligible = malloc((size_t)meta->n_users + 1))) {
            rpc_reply_error(reply, ERR_NOMEM, "out of memory");
            return -1;
        }
        memset(*eligible, 1, (size_t)meta->n_users + 1);
    }
    private_scan ps = {m, *eligible};
    idstate_each(s->privacy, unmark_private, &ps);
    f->eligible = *eligible;
    return 0;
}

static void svc_campaign_targets(void *ctx, const uint8_t *req, size_t len, rpc_stream *st,
                                 rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__CampaignTargetsRequest *rq =
        recd__v1__campaign_targets_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed CampaignTargetsRequest: not a valid protobuf message");
        return;
    }
    if ((rq->item_id[0] && check_id("item_id", rq->item_id, reply)) ||
        (rq->category[0] && check_id("category", rq->category, reply)) ||
        check_ids("segments", rq->segments, rq->n_segments, reply) ||
        check_ids("tiers", rq->tiers, rq->n_tiers, reply)) {
        recd__v1__campaign_targets_request__free_unpacked(rq, NULL);
        return;
    }
    served_model *sm = svc_acquire(s);
    const model *m = sm->m;
    float *affinity = NULL;
    uint8_t *eligible = NULL;
    campaign_filter f;
    if (!model_churn_info(m)) {
        rpc_reply_error(reply, ERR_PRECONDITION,
                        "model %s has no churn model: train with --churn-horizon",
                        model_info(m)->version);
    } else if (!targets_filter(s, m, rq, &f, &affinity, &eligible, reply)) {
        target_stream ts = {m, model_churn_info(m), affinity, st, NULL, 0, 0, 0};
        err_t e;
        if (campaign_select(m, &f, target_emit, &ts, &e))
            rpc_reply_error(reply, e.code, "%s", e.msg);
        else if (ts.nomem)
            rpc_reply_error(reply, ERR_NOMEM, "out of memory for a target; stream stopped");
        else if (ts.gone)
            rpc_reply_error(reply, ERR_CANCELLED, "the client went away; stream stopped");
        free(ts.buf);
    }
    free(affinity);
    free(eligible);
    svc_release(sm);
    recd__v1__campaign_targets_request__free_unpacked(rq, NULL);
}

/* --- privacy: ForgetUser, SetPersonalization ------------------------------- */

static void svc_forget_user(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__ForgetUserRequest *rq = recd__v1__forget_user_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed ForgetUserRequest: not a valid protobuf message");
        return;
    }
    if (check_id("user_id", rq->user_id, reply)) goto done;
    size_t n = strlen(rq->user_id);
    unsigned char forgotten = PRIVACY_FORGOTTEN;
    uint64_t deleted = 0;
    err_t e;
    /* The flag first: from this moment nothing about the member is served,
     * whatever happens to the deletion below. */
    if (idstate_put(s->privacy, rq->user_id, n, &forgotten, &e)) {
        rpc_reply_error(reply, e.code, "not stored: %s", e.msg);
        goto done;
    }
    if (s->events && evstore_forget_user(s->events, rq->user_id, n, &deleted, &e)) {
        rpc_reply_error(reply, e.code, "events not deleted: %s", e.msg);
        goto done;
    }
    log_info("msg=\"member forgotten\" events_deleted=%llu", (unsigned long long)deleted);
    Recd__V1__ForgetUserResponse resp = RECD__V1__FORGET_USER_RESPONSE__INIT;
    resp.events_deleted = deleted;
    reply_pack(reply, &resp.base);
done:
    recd__v1__forget_user_request__free_unpacked(rq, NULL);
}

static void svc_set_personalization(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetPersonalizationRequest *rq =
        recd__v1__set_personalization_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed SetPersonalizationRequest: not a valid protobuf message");
        return;
    }
    if (check_id("user_id", rq->user_id, reply)) goto done;
    size_t n = strlen(rq->user_id);
    if (svc_privacy(s, rq->user_id, n) == PRIVACY_FORGOTTEN) {
        rpc_reply_error(reply, ERR_PRECONDITION,
                        "member was forgotten (ForgetUser) and stays non-personalized; a new "
                        "start needs a new id");
        goto done;
    }
    unsigned char v = rq->opted_out ? PRIVACY_OPTED_OUT : PRIVACY_NONE;
    err_t e;
    if (idstate_put(s->privacy, rq->user_id, n, &v, &e)) {
        rpc_reply_error(reply, e.code, "not stored: %s", e.msg);
        goto done;
    }
    Recd__V1__SetPersonalizationResponse resp = RECD__V1__SET_PERSONALIZATION_RESPONSE__INIT;
    reply_pack(reply, &resp.base);
done:
    recd__v1__set_personalization_request__free_unpacked(rq, NULL);
}

/* --- experiments: RecordFeedback, SetExperiment ---------------------------- */

/* How a list impression (no item) is stored in the feedback store, whose
 * records always name an item. */
#define SVC_WHOLE_LIST "*"

/* A record_check of a RecordFeedbackRequest, tagged with the variant. In
 * the feedback store the "user" of a record is the request id (it carries
 * the variant), the item is the item, the type the FeedbackType. Its
 * reasons are all fixed strings. */
static const char *check_feedback(svc *s, const void *request, size_t i, int64_t now,
                                  evstore_event *out, int *variant, char *buf) {
    const Recd__V1__Feedback *f = ((const Recd__V1__RecordFeedbackRequest *)request)->feedback[i];
    (void)buf;
    if (id_problem(f->request_id)) return "request_id is empty, too long or not UTF-8";
    if ((*variant = exp_variant_of_request(&s->exp, f->request_id)) < 0)
        return "request_id was not issued by this experiment's variants";
    if (f->user_id[0] && id_problem(f->user_id)) return "user_id is too long or not UTF-8";
    if (!exp_feedback_word((uint32_t)f->type)) return "unknown feedback type";
    const char *item = f->item_id;
    if (!item[0]) {
        if (f->type != RECD__V1__FEEDBACK_TYPE__IMPRESSION)
            return "item_id is empty (only an impression may be of the whole list)";
        item = SVC_WHOLE_LIST;
    } else if (id_problem(item)) {
        return "item_id is too long or not UTF-8";
    }
    int64_t ts = f->timestamp_unix ? f->timestamp_unix : now;
    if (ts < 0 || ts > now + 86400) return "timestamp_unix is negative or in the future";
    *out = (evstore_event){
        f->request_id, strlen(f->request_id), item, strlen(item), (uint32_t)f->type, ts, 1, 0};
    return NULL;
}

static void svc_record_feedback(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__RecordFeedbackRequest *rq = recd__v1__record_feedback_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed RecordFeedbackRequest: not a valid protobuf message");
        return;
    }
    write_batch b = {0};
    if (!s->feedback) {
        rpc_reply_error(reply, ERR_PRECONDITION,
                        "this server keeps no feedback: start recd serve with --events DIR");
    } else if (write_batch_store(s, s->feedback, rq, rq->n_feedback, check_feedback,
                                 "feedback records", &b, reply) == 0) {
        for (size_t i = 0; i < b.n_good; i++)
            atomic_fetch_add(&s->feedback_counts[b.tags[i]][b.good[i].type], 1);
        Recd__V1__RecordFeedbackResponse resp = RECD__V1__RECORD_FEEDBACK_RESPONSE__INIT;
        resp.accepted = (uint32_t)b.n_good;
        resp.rejected = b.rejected_ptrs;
        resp.n_rejected = b.n_rejected;
        reply_pack(reply, &resp.base);
    }
    write_batch_free(&b);
    recd__v1__record_feedback_request__free_unpacked(rq, NULL);
}

/* The key of the experiment's state in s->exp_state (one value). */
#define SVC_EXP_KEY "experiment"

/* The new shares and salt are stored before they are served, so a restart
 * never forgets what a reply said was done: a store that fails leaves the
 * experiment as it was and says so. Only SetExperiment changes the shares
 * and salt, one at a time (exp_update), so x, read under the lock, is still
 * current when it is written back. */
static void svc_set_experiment(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetExperimentRequest *rq = recd__v1__set_experiment_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed SetExperimentRequest: not a valid protobuf message");
        return;
    }
    size_t salt_len = strlen(rq->salt);
    pthread_mutex_lock(&s->exp_update);
    pthread_mutex_lock(&s->lock);
    experiment x = s->exp;
    pthread_mutex_unlock(&s->lock);
    double shares[EXP_MAX_VARIANTS] = {0};
    err_t e;
    int bad = 0;
    if (salt_len > EXP_MAX_SALT || !utf8_valid(rq->salt, salt_len)) {
        rpc_reply_error(reply, ERR_INVALID, "salt is longer than %d bytes or not UTF-8",
                        EXP_MAX_SALT);
        bad = 1;
    }
    for (size_t i = 0; !bad && i < rq->n_shares; i++) {
        int v = -1;
        for (uint32_t w = 0; w < x.n; w++)
            if (!strcmp(x.names[w], rq->shares[i]->variant)) v = (int)w;
        if (v < 0) {
            rpc_reply_error(reply, ERR_INVALID, "shares[%zu]: no variant named '%.*s'", i, 32,
                            rq->shares[i]->variant);
            bad = 1;
        } else {
            shares[v] = rq->shares[i]->share;
        }
    }
    if (!bad && rq->n_shares && exp_set_shares(&x, shares, x.n, &e)) {
        rpc_reply_error(reply, ERR_INVALID, "%s", e.msg);
        bad = 1;
    }
    if (!bad && salt_len) memcpy(x.salt, rq->salt, salt_len + 1);
    if (!bad && s->exp_state) {
        unsigned char state[EXP_STATE_BYTES];
        exp_encode(&x, state);
        if (idstate_put(s->exp_state, SVC_EXP_KEY, strlen(SVC_EXP_KEY), state, &e)) {
            rpc_reply_error(reply, e.code, "cannot store the experiment: %s", e.msg);
            bad = 1;
        }
    }
    if (!bad) {
        /* Not s->exp = x: that would write the names, which are read
         * without the lock. */
        pthread_mutex_lock(&s->lock);
        memcpy(s->exp.salt, x.salt, sizeof x.salt);
        memcpy(s->exp.shares, x.shares, sizeof x.shares);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&s->exp_update);
    if (!bad) {
        log_info("msg=\"experiment changed\" salt=%s variants=%u", x.salt, x.n);
        Recd__V1__SetExperimentResponse resp = RECD__V1__SET_EXPERIMENT_RESPONSE__INIT;
        reply_pack(reply, &resp.base);
    }
    recd__v1__set_experiment_request__free_unpacked(rq, NULL);
}

/* --- GetModelInfo ---------------------------------------------------------- */

static void svc_model_info(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__GetModelInfoRequest *rq = recd__v1__get_model_info_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
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
    info.popularity_blend = meta->popularity_blend;
    reply_pack(reply, &info.base);
    svc_release(sm);
}

/* --- grpc.health.v1.Health/Check ------------------------------------------ */

static void svc_health(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    (void)ctx;
    Grpc__Health__V1__HealthCheckRequest *rq =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_reply_error(reply, ERR_INVALID,
                        "malformed HealthCheckRequest: not a valid protobuf message");
        return;
    }
    /* A model is always loaded once the server runs, so both the server as a
     * whole ("") and the Recommender service are serving. */
    if (rq->service[0] && strcmp(rq->service, "recd.v1.Recommender") != 0 &&
        strcmp(rq->service, "grpc.health.v1.Health") != 0) {
        rpc_reply_error(reply, ERR_NOTFOUND, "unknown service '%.*s'", 64, rq->service);
    } else {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        reply_pack(reply, &resp.base);
    }
    grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
}

/* --- metrics ------------------------------------------------------------------- */

void svc_write_metrics(void *ctx, FILE *out) {
    svc *s = ctx;
    fprintf(out, "# HELP recd_model_info The model each variant serves (value 1).\n"
                 "# TYPE recd_model_info gauge\n");
    double now = (double)time(NULL);
    char lines[EXP_MAX_VARIANTS][3][256];
    for (uint32_t v = 0; v < s->exp.n; v++) {
        served_model *sm = svc_acquire_variant(s, v);
        const model_meta *meta = model_info(sm->m);
        const char *name = s->exp.names[v];
        fprintf(out, "recd_model_info{variant=\"%s\",version=\"%s\"} 1\n", name, meta->version);
        snprintf(lines[v][0], sizeof lines[v][0], "recd_model_age_seconds{variant=\"%s\"} %.0f",
                 name, now - (double)meta->trained_at);
        snprintf(lines[v][1], sizeof lines[v][1], "recd_model_users{variant=\"%s\"} %u", name,
                 meta->n_users);
        snprintf(lines[v][2], sizeof lines[v][2], "recd_model_items{variant=\"%s\"} %u", name,
                 meta->n_items);
        svc_release(sm);
    }
    static const char *const families[3][2] = {
        {"recd_model_age_seconds", "Seconds since the served model was published."},
        {"recd_model_users", "Members the served model knows."},
        {"recd_model_items", "Items the served model knows."}};
    for (int f = 0; f < 3; f++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", families[f][0], families[f][1],
                families[f][0]);
        for (uint32_t v = 0; v < s->exp.n; v++)
            fprintf(out, "%s\n", lines[v][f]);
    }
    fprintf(out,
            "# HELP recd_events_ingested_total Events stored durably by RecordEvents.\n"
            "# TYPE recd_events_ingested_total counter\nrecd_events_ingested_total %llu\n"
            "# HELP recd_fold_ins_total Recommend calls that folded fresh signals in.\n"
            "# TYPE recd_fold_ins_total counter\nrecd_fold_ins_total %llu\n",
            (unsigned long long)atomic_load(&s->events_ingested),
            (unsigned long long)atomic_load(&s->fold_ins));
    if (s->events)
        fprintf(out,
                "# HELP recd_event_store_commits_total Group commits (fsyncs) of the event "
                "store.\n# TYPE recd_event_store_commits_total counter\n"
                "recd_event_store_commits_total %llu\n",
                (unsigned long long)evstore_commits(s->events));
    /* Shares change at run time (SetExperiment): a copy under the lock. */
    pthread_mutex_lock(&s->lock);
    experiment x = s->exp;
    pthread_mutex_unlock(&s->lock);
    fprintf(out, "# HELP recd_experiment_share Share of members assigned to each variant.\n"
                 "# TYPE recd_experiment_share gauge\n");
    for (uint32_t v = 0; v < x.n; v++)
        fprintf(out, "recd_experiment_share{variant=\"%s\"} %.17g\n", x.names[v], x.shares[v]);
    fprintf(out, "# HELP recd_feedback_total Feedback recorded, by variant and type.\n"
                 "# TYPE recd_feedback_total counter\n");
    for (uint32_t v = 0; v < s->exp.n; v++)
        for (uint32_t t = 1; t < EXP_FEEDBACK_END; t++)
            if (exp_feedback_word(t))
                fprintf(out, "recd_feedback_total{variant=\"%s\",type=\"%s\"} %llu\n",
                        s->exp.names[v], exp_feedback_word(t),
                        (unsigned long long)atomic_load(&s->feedback_counts[v][t]));
}

/* --- lifecycle ------------------------------------------------------------- */

/* Writes "<events_dir>/<name>" into buf (PATH_MAX bytes). */
static int svc_subdir(char *buf, const char *events_dir, const char *name, err_t *e) {
    if (snprintf(buf, 4096, "%s/%s", events_dir, name) >= 4096)
        return err_set(e, ERR_INVALID, "events folder name too long");
    return ERR_OK;
}

/* Names the variants (control first) and splits traffic evenly. */
static int svc_variants(svc *s, const svc_options *o, err_t *e) {
    experiment *x = &s->exp;
    if (o->n_variants >= EXP_MAX_VARIANTS)
        return err_set(e, ERR_INVALID, "at most %d variants besides control", EXP_MAX_VARIANTS - 1);
    snprintf(x->salt, sizeof x->salt, "%s", o->salt ? o->salt : "recd");
    x->n = o->n_variants + 1;
    strcpy(x->names[0], "control");
    double shares[EXP_MAX_VARIANTS];
    for (uint32_t v = 0; v < x->n; v++) {
        const char *name = v ? o->variant_names[v - 1] : "control";
        const char *dir = v ? o->variant_dirs[v - 1] : o->model_dir;
        if (!exp_name_valid(name))
            return err_set(e, ERR_INVALID, "variant name '%s' is not 1-%d of [A-Za-z0-9_-]", name,
                           EXP_MAX_NAME);
        for (uint32_t w = 0; w < v; w++)
            if (!strcmp(x->names[w], name))
                return err_set(e, ERR_INVALID, "variant '%s' is named twice", name);
        strcpy(x->names[v], name);
        if (!(s->slots[v].dir = strdup(dir))) return err_set(e, ERR_NOMEM, "out of memory");
        shares[v] = 1.0 / x->n;
    }
    shares[x->n - 1] = 1.0;
    for (uint32_t v = 0; v + 1 < x->n; v++)
        shares[x->n - 1] -= shares[v];
    return exp_set_shares(x, shares, x->n, e);
}

/* Serves the shares and salt last set by SetExperiment instead of the
 * flags' when they are for the same variants; otherwise says why in one
 * line and keeps the flags'. */
static void svc_restore_experiment(svc *s) {
    unsigned char state[EXP_STATE_BYTES];
    if (idstate_get(s->exp_state, SVC_EXP_KEY, strlen(SVC_EXP_KEY), state) != ERR_OK) return;
    err_t e;
    char salt[2 * EXP_MAX_SALT + 8], why[sizeof e.msg + 8];
    if (exp_restore(&s->exp, state, &e)) {
        log_warn("msg=\"stored experiment shares not used, the flags' are\" reason=\"%s\"",
                 log_escape(e.msg, why, sizeof why));
        return;
    }
    char shares[EXP_MAX_VARIANTS * (EXP_MAX_NAME + 24)];
    size_t at = 0;
    for (uint32_t v = 0; v < s->exp.n; v++)
        at += (size_t)snprintf(shares + at, sizeof shares - at, "%s%s=%g", v ? "," : "",
                               s->exp.names[v], s->exp.shares[v]);
    log_info("msg=\"experiment restored\" salt=\"%s\" shares=%s",
             log_escape(s->exp.salt, salt, sizeof salt), shares);
}

int svc_open(const svc_options *o, svc **out, err_t *e) {
    svc *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->exp_update, NULL);
    pthread_mutex_init(&s->stop_lock, NULL);
    pthread_cond_init(&s->stop_cond, NULL);
    s->reload_interval_s = o->reload_interval_s;
    memcpy(s->weights, o->event_weights, sizeof s->weights);
    int rc = svc_variants(s, o, e);
    char rules_dir[4096], privacy_dir[4096], feedback_dir[4096], exp_dir[4096];
    const char *ev = o->events_dir;
    if (!rc && ev && !(rc = svc_subdir(rules_dir, ev, "item-rules", e)) &&
        !(rc = svc_subdir(privacy_dir, ev, PRIVACY_DIR, e)) &&
        !(rc = svc_subdir(feedback_dir, ev, "feedback", e)) &&
        !(rc = svc_subdir(exp_dir, ev, "experiment", e))) {
        if ((rc = evstore_open(ev, NULL, &s->events, e)))
            err_wrap(e, "event store %s", ev);
        else if ((rc = evstore_open(feedback_dir, NULL, &s->feedback, e)))
            err_wrap(e, "feedback store %s", feedback_dir);
        else if (!(rc = idstate_open(exp_dir, EXP_STATE_BYTES, &s->exp_state, e)))
            svc_restore_experiment(s);
    }
    if (!rc) rc = catalog_open(ev ? rules_dir : NULL, &s->rules, e);
    if (!rc) rc = idstate_open(ev ? privacy_dir : NULL, 1, &s->privacy, e);
    for (uint32_t v = 0; !rc && v < s->exp.n; v++)
        rc = svc_load(s, v, e);
    if (!rc && s->reload_interval_s > 0) {
        if (pthread_create(&s->watcher, NULL, svc_watch, s))
            rc = err_set(e, ERR_INTERNAL, "cannot start the model watcher thread");
        else
            s->watcher_running = 1;
    }
    if (rc) {
        svc_close(s);
        return rc;
    }
    static const struct {
        const char *path;
        rpc_handler handler;
        rpc_batch_handler batch;
        rpc_stream_handler stream;
        int write;
    } table[] = {
        {"/recd.v1.Recommender/Recommend", svc_recommend, svc_recommend_batch, NULL, 0},
        {"/recd.v1.Recommender/SimilarItems", svc_similar, NULL, NULL, 0},
        {"/recd.v1.Recommender/Rerank", svc_rerank, NULL, NULL, 0},
        {"/recd.v1.Recommender/GetModelInfo", svc_model_info, NULL, NULL, 0},
        {"/recd.v1.Recommender/GetChurnScore", svc_churn_score, NULL, NULL, 0},
        {"/recd.v1.Recommender/StreamCampaignTargets", NULL, NULL, svc_campaign_targets, 0},
        {"/recd.v1.Recommender/RecordEvents", svc_record_events, NULL, NULL, 1},
        {"/recd.v1.Recommender/SetItemAvailability", svc_set_availability, NULL, NULL, 1},
        {"/recd.v1.Recommender/SetItemBoosts", svc_set_boosts, NULL, NULL, 1},
        {"/recd.v1.Recommender/ForgetUser", svc_forget_user, NULL, NULL, 1},
        {"/recd.v1.Recommender/SetPersonalization", svc_set_personalization, NULL, NULL, 1},
        {"/recd.v1.Recommender/RecordFeedback", svc_record_feedback, NULL, NULL, 1},
        {"/recd.v1.Recommender/SetExperiment", svc_set_experiment, NULL, NULL, 1},
        {"/grpc.health.v1.Health/Check", svc_health, NULL, NULL, 0},
    };
    _Static_assert(sizeof table / sizeof table[0] == sizeof s->methods / sizeof s->methods[0],
                   "one rpc_method per table row");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        s->methods[i] = (rpc_method){.path = table[i].path,
                                     .handler = table[i].handler,
                                     .stream = table[i].stream,
                                     .ctx = s,
                                     .write = table[i].write,
                                     .batch = table[i].batch};
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
    for (uint32_t v = 0; v < EXP_MAX_VARIANTS; v++) {
        if (s->slots[v].current) svc_release(s->slots[v].current);
        free(s->slots[v].dir);
    }
    evstore_close(s->events);
    evstore_close(s->feedback);
    catalog_close(s->rules);
    idstate_close(s->privacy);
    idstate_close(s->exp_state);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->exp_update);
    pthread_mutex_destroy(&s->stop_lock);
    pthread_cond_destroy(&s->stop_cond);
    free(s);
}
