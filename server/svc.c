/* svc: gRPC adapters over the core. Every handler decodes its request
 * message, calls one core operation and encodes the reply: nothing here
 * decides what a call means. */
#include "svc.h"

#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "recd/v1/recommender.pb-c.h"

struct svc {
    core *core;
    rpc_method methods[18];
    const ProtobufCMessageDescriptor *requests[18]; /* each method's request message */
};

/* The C tables of event and feedback types, strategies and target orders
 * hold the public proto's values, so requests and replies pass them as
 * they are. */
#define SVC_EV_TYPE_PROTO(name, value, str, word, weight)                                          \
    _Static_assert((int)EV_TYPE_##name == (int)RECD__V1__EVENT_TYPE__##name, "EventType " #name);
EV_TYPE_MAP(SVC_EV_TYPE_PROTO)
#undef SVC_EV_TYPE_PROTO
#define SVC_FEEDBACK_PROTO(name, value, word)                                                      \
    _Static_assert((int)EXP_FEEDBACK_##name == (int)RECD__V1__FEEDBACK_TYPE__##name,               \
                   "FeedbackType " #name);
EXP_FEEDBACK_MAP(SVC_FEEDBACK_PROTO)
#undef SVC_FEEDBACK_PROTO
#define SVC_STRATEGY_ASSERT(name, value)                                                           \
    _Static_assert((int)CORE_##name == (int)RECD__V1__STRATEGY__##name, "Strategy " #name);
CORE_STRATEGY_MAP(SVC_STRATEGY_ASSERT)
#undef SVC_STRATEGY_ASSERT
#define SVC_MODE_ASSERT(name, value, pb, word, served)                                             \
    _Static_assert((int)CORE_MODE_##name ==                                                        \
                       (int)RECD__V1__RECOMMEND_REQUEST__RECOMMEND_MODE__##pb,                     \
                   "RecommendMode " #name);
CORE_MODE_MAP(SVC_MODE_ASSERT)
#undef SVC_MODE_ASSERT
_Static_assert((int)CORE_RELATION_SIMILAR == (int)RECD__V1__RELATION__RELATION_SIMILAR, "Relation");
_Static_assert((int)CORE_RELATION_BOUGHT_TOGETHER == (int)RECD__V1__RELATION__BOUGHT_TOGETHER,
               "Relation");
_Static_assert(RPC_MAX_BATCH <= CORE_MAX_BATCH, "a batch of rpc fits the core's");
_Static_assert(SCHED_MAX_BATCH <= RPC_MAX_BATCH, "a run of the scheduler fits a batch handler");

/* Answers a core error: its code becomes the status (rpc's err_to_status). */
static void reply_err(rpc_reply *reply, const err_t *e) {
    rpc_reply_error(reply, e->code, "%s", e->msg);
}

static void reply_malformed(rpc_reply *reply, const char *type) {
    rpc_reply_error(reply, ERR_INVALID, "malformed %s: not a valid protobuf message", type);
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

/* Reads a varint at *p (< end) and moves past it; -1 when it is cut short. */
static int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

#define SVC_NUL_DEPTH 8 /* nesting the NUL check follows (recd's messages have 2) */

/* ERR_OK, or ERR_INVALID naming the first string field of the message d in
 * buf/len (nested messages included, "events[2].user_id") that holds a NUL
 * byte: protobuf-c hands strings on NUL-terminated, so the core would see
 * an id cut at the NUL - another member's, or a different item - instead
 * of the one sent. Reads the wire itself, since the unpacked message no
 * longer knows the lengths; what is malformed is left to the unpacker.
 * at is the field path so far. */
static int check_nul(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                     const char *at, int depth, err_t *e) {
    const uint8_t *p = buf, *end = buf + len;
    uint32_t seen[32] = {0}; /* occurrences of each repeated field so far, for its index */
    while (p < end) {
        uint64_t key, n = 0;
        if (wire_varint(&p, end, &key)) return ERR_OK;
        switch (key & 7) {
        case 0:
            if (wire_varint(&p, end, &n)) return ERR_OK;
            continue;
        case 1:
            if (end - p < 8) return ERR_OK;
            p += 8;
            continue;
        case 5:
            if (end - p < 4) return ERR_OK;
            p += 4;
            continue;
        case 2:
            if (wire_varint(&p, end, &n) || n > (uint64_t)(end - p)) return ERR_OK;
            break;
        default:
            return ERR_OK;
        }
        const ProtobufCFieldDescriptor *f =
            key >> 3 <= UINT32_MAX
                ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                : NULL;
        if (f && (f->type == PROTOBUF_C_TYPE_STRING ||
                  (f->type == PROTOBUF_C_TYPE_MESSAGE && depth < SVC_NUL_DEPTH))) {
            size_t idx = (size_t)(f - d->fields);
            char here[256];
            if (f->label == PROTOBUF_C_LABEL_REPEATED)
                snprintf(here, sizeof here, "%s%s%s[%u]", at, *at ? "." : "", f->name,
                         idx < 32 ? seen[idx]++ : 0);
            else
                snprintf(here, sizeof here, "%s%s%s", at, *at ? "." : "", f->name);
            if (f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, (size_t)n))
                return err_set(e, ERR_INVALID,
                               "%s contains a NUL byte: ids and names must not (it would be "
                               "read cut short)",
                               here);
            if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
                check_nul(f->descriptor, p, (size_t)n, here, depth + 1, e))
                return e->code;
        }
        p += n;
    }
    return ERR_OK;
}

/* n entries of size bytes for a request of n records, or NULL: then the
 * caller answers out of memory, unless n is over CORE_MAX_LIST, which the
 * core refuses before it reads any (so a hostile count costs nothing). */
static void *records_alloc(size_t n, size_t size, int *failed) {
    *failed = 0;
    if (n > CORE_MAX_LIST) return NULL;
    void *p = malloc((n ? n : 1) * size);
    *failed = !p;
    return p;
}

/* --- ranked lists ---------------------------------------------------------- */

/* The ScoredItems of l, in one block that the caller frees; the ids stay
 * l's. NULL when out of memory. */
static Recd__V1__ScoredItem **scored_items(const core_list *l) {
    size_t n = l->n_items;
    Recd__V1__ScoredItem **ptrs = malloc((n ? n : 1) * (sizeof *ptrs + sizeof **ptrs));
    if (!ptrs) return NULL;
    Recd__V1__ScoredItem *items = (Recd__V1__ScoredItem *)(ptrs + n);
    for (size_t i = 0; i < n; i++) {
        recd__v1__scored_item__init(&items[i]);
        items[i].item_id = (char *)l->items[i].id; /* protobuf-c wants char *; packing reads it */
        items[i].score = l->items[i].score;
        items[i].because_item_ids = (char **)l->items[i].because;
        items[i].n_because_item_ids = l->items[i].n_because;
        ptrs[i] = &items[i];
    }
    return ptrs;
}

static void recommend_encode(const core_list *l, rpc_reply *reply) {
    Recd__V1__ScoredItem **items = scored_items(l);
    if (!items) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
        return;
    }
    Recd__V1__RecommendResponse resp = RECD__V1__RECOMMEND_RESPONSE__INIT;
    resp.strategy = (Recd__V1__Strategy)l->strategy;
    resp.items = items;
    resp.n_items = l->n_items;
    resp.model_version = (char *)l->model_version;
    resp.request_id = (char *)l->request_id;
    resp.variant = (char *)l->variant;
    reply_pack(reply, &resp.base);
    free(items);
}

/* Recommend calls that queued up together go to the core as one batch
 * (it scores them in one pass); a call that came alone is a batch of one. */
static void svc_recommend_batch(void *ctx, const uint8_t *const *reqs, const size_t *lens, size_t n,
                                rpc_reply *replies) {
    svc *s = ctx;
    Recd__V1__RecommendRequest *rq[RPC_MAX_BATCH];
    core_recommend_req creq[RPC_MAX_BATCH];
    const core_recommend_req *todo[RPC_MAX_BATCH];
    size_t at[RPC_MAX_BATCH], m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(rq[i] = recd__v1__recommend_request__unpack(NULL, lens[i], reqs[i]))) {
            reply_malformed(&replies[i], "RecommendRequest");
            continue;
        }
        creq[m] = (core_recommend_req){
            .user_id = rq[i]->user_id,
            .k = rq[i]->k,
            .context_item_ids = rq[i]->context_item_ids,
            .n_context_item_ids = rq[i]->n_context_item_ids,
            .exclude_item_ids = rq[i]->exclude_item_ids,
            .n_exclude_item_ids = rq[i]->n_exclude_item_ids,
            .include_purchased = rq[i]->include_purchased,
            .diversity = rq[i]->diversity,
            .category = rq[i]->category,
            .mode = (int32_t)rq[i]->mode,
            .user_labels = rq[i]->user_labels,
            .n_user_labels = rq[i]->n_user_labels,
            .new_days = rq[i]->new_days,
            .explain = rq[i]->explain,
        };
        todo[m] = &creq[m];
        at[m++] = i;
    }
    core_list lists[RPC_MAX_BATCH];
    err_t errs[RPC_MAX_BATCH];
    if (m) core_recommend_batch(s->core, todo, m, lists, errs);
    for (size_t k = 0; k < m; k++) {
        if (errs[k].code)
            reply_err(&replies[at[k]], &errs[k]);
        else
            recommend_encode(&lists[k], &replies[at[k]]);
        core_list_free(&lists[k]);
    }
    for (size_t i = 0; i < n; i++)
        if (rq[i]) recd__v1__recommend_request__free_unpacked(rq[i], NULL);
}

static void svc_recommend(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc_recommend_batch(ctx, &req, &len, 1, reply);
}

static void svc_similar(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SimilarItemsRequest *rq = recd__v1__similar_items_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "SimilarItemsRequest");
        return;
    }
    core_similar_req creq = {
        rq->item_id,           rq->item_ids,         rq->n_item_ids,         rq->k,
        (int32_t)rq->relation, rq->exclude_item_ids, rq->n_exclude_item_ids, rq->category};
    core_list l;
    err_t e;
    Recd__V1__ScoredItem **items = NULL;
    if (core_similar(s->core, &creq, &l, &e)) {
        reply_err(reply, &e);
    } else if (!(items = scored_items(&l))) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
    } else {
        Recd__V1__SimilarItemsResponse resp = RECD__V1__SIMILAR_ITEMS_RESPONSE__INIT;
        resp.items = items;
        resp.n_items = l.n_items;
        resp.model_version = l.model_version;
        resp.fell_back_to_similar = l.fell_back;
        reply_pack(reply, &resp.base);
    }
    free(items);
    core_list_free(&l);
    recd__v1__similar_items_request__free_unpacked(rq, NULL);
}

static void svc_rerank(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__RerankRequest *rq = recd__v1__rerank_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "RerankRequest");
        return;
    }
    core_rerank_req creq = {rq->user_id, rq->candidate_item_ids, rq->n_candidate_item_ids,
                            rq->context_item_ids, rq->n_context_item_ids};
    core_list l;
    err_t e;
    Recd__V1__ScoredItem **items = NULL;
    if (core_rerank(s->core, &creq, &l, &e)) {
        reply_err(reply, &e);
    } else if (!(items = scored_items(&l))) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
    } else {
        Recd__V1__RerankResponse resp = RECD__V1__RERANK_RESPONSE__INIT;
        resp.items = items;
        resp.n_items = l.n_items;
        resp.model_version = l.model_version;
        resp.strategy = (Recd__V1__Strategy)l.strategy;
        reply_pack(reply, &resp.base);
    }
    free(items);
    core_list_free(&l);
    recd__v1__rerank_request__free_unpacked(rq, NULL);
}

/* --- writes ---------------------------------------------------------------- */

/* Encodes a write reply as a RecordFeedbackResponse when feedback is set,
 * else as a RecordEventsResponse (the same fields). */
static void write_encode(const core_write_reply *w, int feedback, rpc_reply *reply) {
    size_t n = w->n_rejected;
    Recd__V1__RejectedEvent **ptrs = malloc((n ? n : 1) * (sizeof *ptrs + sizeof **ptrs));
    if (!ptrs) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
        return;
    }
    Recd__V1__RejectedEvent *rejected = (Recd__V1__RejectedEvent *)(ptrs + n);
    for (size_t i = 0; i < n; i++) {
        recd__v1__rejected_event__init(&rejected[i]);
        rejected[i].index = w->rejected[i].index;
        rejected[i].reason = (char *)w->rejected[i].reason;
        ptrs[i] = &rejected[i];
    }
    if (feedback) {
        Recd__V1__RecordFeedbackResponse resp = RECD__V1__RECORD_FEEDBACK_RESPONSE__INIT;
        resp.accepted = w->accepted;
        resp.rejected = ptrs;
        resp.n_rejected = n;
        reply_pack(reply, &resp.base);
    } else {
        Recd__V1__RecordEventsResponse resp = RECD__V1__RECORD_EVENTS_RESPONSE__INIT;
        resp.accepted = w->accepted;
        resp.rejected = ptrs;
        resp.n_rejected = n;
        reply_pack(reply, &resp.base);
    }
    free(ptrs);
}

static void svc_record_events(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__RecordEventsRequest *rq = recd__v1__record_events_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "RecordEventsRequest");
        return;
    }
    int failed;
    core_event *evs = records_alloc(rq->n_events, sizeof *evs, &failed);
    for (size_t i = 0; evs && i < rq->n_events; i++) {
        const Recd__V1__Event *ev = rq->events[i];
        evs[i] = (core_event){ev->user_id,        ev->item_id,  (uint32_t)ev->type,
                              ev->timestamp_unix, ev->quantity, ev->price};
    }
    core_write_reply w;
    err_t e;
    if (failed)
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu events", rq->n_events);
    else if (core_record_events(s->core, evs, rq->n_events, &w, &e))
        reply_err(reply, &e);
    else
        write_encode(&w, 0, reply);
    if (!failed) core_write_reply_free(&w);
    free(evs);
    recd__v1__record_events_request__free_unpacked(rq, NULL);
}

static void svc_record_feedback(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__RecordFeedbackRequest *rq = recd__v1__record_feedback_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "RecordFeedbackRequest");
        return;
    }
    int failed;
    core_feedback *fb = records_alloc(rq->n_feedback, sizeof *fb, &failed);
    for (size_t i = 0; fb && i < rq->n_feedback; i++) {
        const Recd__V1__Feedback *f = rq->feedback[i];
        fb[i] = (core_feedback){f->request_id, f->user_id, f->item_id, (uint32_t)f->type,
                                f->timestamp_unix};
    }
    core_write_reply w;
    err_t e;
    if (failed)
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu feedback records", rq->n_feedback);
    else if (core_record_feedback(s->core, fb, rq->n_feedback, &w, &e))
        reply_err(reply, &e);
    else
        write_encode(&w, 1, reply);
    if (!failed) core_write_reply_free(&w);
    free(fb);
    recd__v1__record_feedback_request__free_unpacked(rq, NULL);
}

static void svc_set_availability(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetItemAvailabilityRequest *rq =
        recd__v1__set_item_availability_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "SetItemAvailabilityRequest");
        return;
    }
    int failed;
    core_availability *items = records_alloc(rq->n_items, sizeof *items, &failed);
    for (size_t i = 0; items && i < rq->n_items; i++)
        items[i] = (core_availability){rq->items[i]->item_id, rq->items[i]->available};
    err_t e;
    if (failed) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu items", rq->n_items);
    } else if (core_set_availability(s->core, items, rq->n_items, &e)) {
        reply_err(reply, &e);
    } else {
        Recd__V1__SetItemAvailabilityResponse resp = RECD__V1__SET_ITEM_AVAILABILITY_RESPONSE__INIT;
        resp.updated = (uint32_t)rq->n_items;
        reply_pack(reply, &resp.base);
    }
    free(items);
    recd__v1__set_item_availability_request__free_unpacked(rq, NULL);
}

static void svc_set_boosts(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetItemBoostsRequest *rq = recd__v1__set_item_boosts_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "SetItemBoostsRequest");
        return;
    }
    int failed;
    core_boost *boosts = records_alloc(rq->n_boosts, sizeof *boosts, &failed);
    for (size_t i = 0; boosts && i < rq->n_boosts; i++)
        boosts[i] = (core_boost){rq->boosts[i]->item_id, rq->boosts[i]->multiplier};
    err_t e;
    if (failed) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu boosts", rq->n_boosts);
    } else if (core_set_boosts(s->core, boosts, rq->n_boosts, &e)) {
        reply_err(reply, &e);
    } else {
        Recd__V1__SetItemBoostsResponse resp = RECD__V1__SET_ITEM_BOOSTS_RESPONSE__INIT;
        resp.updated = (uint32_t)rq->n_boosts;
        reply_pack(reply, &resp.base);
    }
    free(boosts);
    recd__v1__set_item_boosts_request__free_unpacked(rq, NULL);
}

static void svc_forget_user(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__ForgetUserRequest *rq = recd__v1__forget_user_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "ForgetUserRequest");
        return;
    }
    uint64_t deleted;
    err_t e;
    if (core_forget_user(s->core, rq->user_id, &deleted, &e)) {
        reply_err(reply, &e);
    } else {
        Recd__V1__ForgetUserResponse resp = RECD__V1__FORGET_USER_RESPONSE__INIT;
        resp.events_deleted = deleted;
        reply_pack(reply, &resp.base);
    }
    recd__v1__forget_user_request__free_unpacked(rq, NULL);
}

static void svc_set_personalization(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetPersonalizationRequest *rq =
        recd__v1__set_personalization_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "SetPersonalizationRequest");
        return;
    }
    err_t e;
    if (core_set_personalization(s->core, rq->user_id, rq->opted_out, &e)) {
        reply_err(reply, &e);
    } else {
        Recd__V1__SetPersonalizationResponse resp = RECD__V1__SET_PERSONALIZATION_RESPONSE__INIT;
        reply_pack(reply, &resp.base);
    }
    recd__v1__set_personalization_request__free_unpacked(rq, NULL);
}

static void svc_upsert_items(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__UpsertItemsRequest *rq = recd__v1__upsert_items_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "UpsertItemsRequest");
        return;
    }
    int failed;
    catalog_item *items = records_alloc(rq->n_items, sizeof *items, &failed);
    for (size_t i = 0; items && i < rq->n_items; i++) {
        const Recd__V1__Item *it = rq->items[i];
        items[i] =
            (catalog_item){it->item_id,  it->categories, it->n_categories, it->labels,
                           it->n_labels, it->title,      it->price,        it->published_unix};
    }
    core_write_reply w;
    char version[MODEL_VERSION_MAX];
    err_t e;
    if (failed) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu items", rq->n_items);
    } else if (core_upsert_items(s->core, items, rq->n_items, &w, version, &e)) {
        reply_err(reply, &e);
    } else {
        size_t n = w.n_rejected;
        Recd__V1__RejectedItem **ptrs = malloc((n ? n : 1) * (sizeof *ptrs + sizeof **ptrs));
        if (!ptrs) {
            rpc_reply_error(reply, ERR_NOMEM, "out of memory building the response");
        } else {
            Recd__V1__RejectedItem *rejected = (Recd__V1__RejectedItem *)(ptrs + n);
            for (size_t i = 0; i < n; i++) {
                recd__v1__rejected_item__init(&rejected[i]);
                rejected[i].index = w.rejected[i].index;
                rejected[i].reason = w.rejected[i].reason;
                ptrs[i] = &rejected[i];
            }
            Recd__V1__UpsertItemsResponse resp = RECD__V1__UPSERT_ITEMS_RESPONSE__INIT;
            resp.accepted = w.accepted;
            resp.rejected = ptrs;
            resp.n_rejected = n;
            resp.model_version = version;
            reply_pack(reply, &resp.base);
            free(ptrs);
        }
        core_write_reply_free(&w);
    }
    free(items);
    recd__v1__upsert_items_request__free_unpacked(rq, NULL);
}

static void svc_set_experiment(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__SetExperimentRequest *rq = recd__v1__set_experiment_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "SetExperimentRequest");
        return;
    }
    core_share *shares = malloc((rq->n_shares ? rq->n_shares : 1) * sizeof *shares);
    for (size_t i = 0; shares && i < rq->n_shares; i++)
        shares[i] = (core_share){rq->shares[i]->variant, rq->shares[i]->share};
    err_t e;
    if (!shares) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu shares", rq->n_shares);
    } else if (core_set_experiment(s->core, rq->salt, shares, rq->n_shares, &e)) {
        reply_err(reply, &e);
    } else {
        Recd__V1__SetExperimentResponse resp = RECD__V1__SET_EXPERIMENT_RESPONSE__INIT;
        reply_pack(reply, &resp.base);
    }
    free(shares);
    recd__v1__set_experiment_request__free_unpacked(rq, NULL);
}

/* --- models, churn, campaigns ---------------------------------------------- */

static void svc_model_info(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__GetModelInfoRequest *rq = recd__v1__get_model_info_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "GetModelInfoRequest");
        return;
    }
    recd__v1__get_model_info_request__free_unpacked(rq, NULL);
    model_meta meta;
    core_model_info(s->core, &meta);
    Recd__V1__ModelInfo info = RECD__V1__MODEL_INFO__INIT;
    /* Every PB row, the generated field checked to have the kind's type. */
#define INFO_SET_NO(member, kind, pb_name)
#define INFO_SET_PB(member, kind, pb_name)                                                         \
    _Static_assert(_Generic(info.pb_name, MODEL_META_TYPE_##kind : 1, default : 0),                \
                   "ModelInfo." #pb_name " is not of kind " #kind);                                \
    info.pb_name = meta.member;
#define INFO_SET(member, key, kind, opt, pb, pb_name, show, label, fmt)                            \
    INFO_SET_##pb(member, kind, pb_name)
    MODEL_META_MAP(INFO_SET)
#undef INFO_SET
#undef INFO_SET_PB
#undef INFO_SET_NO
    reply_pack(reply, &info.base);
}

static void svc_item_stats(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__ItemStatsRequest *rq = recd__v1__item_stats_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "ItemStatsRequest");
        return;
    }
    core_item_stats_reply st;
    err_t e;
    core_item_stats_req cr = {.k = rq->k, .variant = rq->variant, .max_rules = rq->max_rules};
    if (core_item_stats(s->core, &cr, &st, &e)) {
        reply_err(reply, &e);
        recd__v1__item_stats_request__free_unpacked(rq, NULL);
        return;
    }
    /* The messages borrow st's strings. */
    size_t n = st.n_top + st.n_boosted;
    Recd__V1__ItemCount *counts = malloc((st.n_top ? st.n_top : 1) * sizeof *counts);
    Recd__V1__ItemCount **count_ptrs = malloc((st.n_top ? st.n_top : 1) * sizeof *count_ptrs);
    Recd__V1__ItemBoost *boosts = malloc((st.n_boosted ? st.n_boosted : 1) * sizeof *boosts);
    Recd__V1__ItemBoost **boost_ptrs =
        malloc((st.n_boosted ? st.n_boosted : 1) * sizeof *boost_ptrs);
    char **unavailable = malloc((st.n_unavailable ? st.n_unavailable : 1) * sizeof *unavailable);
    if (!counts || !count_ptrs || !boosts || !boost_ptrs || !unavailable) {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for %zu items", n + st.n_unavailable);
    } else {
        for (size_t i = 0; i < st.n_top; i++) {
            recd__v1__item_count__init(&counts[i]);
            counts[i].item_id = (char *)st.top[i].id;
            counts[i].count = st.top[i].count;
            count_ptrs[i] = &counts[i];
        }
        const catalog_rule *boosted = st.rules + st.unavailable_total;
        for (size_t i = 0; i < st.n_boosted; i++) {
            recd__v1__item_boost__init(&boosts[i]);
            boosts[i].item_id = (char *)boosted[i].id;
            boosts[i].multiplier = boosted[i].boost;
            boost_ptrs[i] = &boosts[i];
        }
        for (size_t i = 0; i < st.n_unavailable; i++)
            unavailable[i] = (char *)st.rules[i].id;
        Recd__V1__ItemStats resp = RECD__V1__ITEM_STATS__INIT;
        resp.variant = (char *)st.variant;
        resp.model_version = st.model_version;
        resp.counted_since_unix = st.counted_since;
        resp.recommend_answers = st.answers;
        resp.most_recommended = count_ptrs;
        resp.n_most_recommended = st.n_top;
        resp.unavailable_item_ids = unavailable;
        resp.n_unavailable_item_ids = st.n_unavailable;
        resp.unavailable_total = st.unavailable_total;
        resp.boosts = boost_ptrs;
        resp.n_boosts = st.n_boosted;
        resp.boosted_total = st.boosted_total;
        reply_pack(reply, &resp.base);
    }
    free(counts);
    free(count_ptrs);
    free(boosts);
    free(boost_ptrs);
    free(unavailable);
    core_item_stats_reply_free(&st);
    recd__v1__item_stats_request__free_unpacked(rq, NULL);
}

static void svc_churn_model(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__ChurnModelInfoRequest *rq =
        recd__v1__churn_model_info_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "ChurnModelInfoRequest");
        return;
    }
    recd__v1__churn_model_info_request__free_unpacked(rq, NULL);
    core_churn_model_reply cm;
    err_t e;
    if (core_churn_model(s->core, &cm, &e)) {
        reply_err(reply, &e);
        return;
    }
    const model_churn_validation *v = &cm.validation;
    Recd__V1__CalibrationBin bins[MODEL_CHURN_CALIB_BINS], *bin_ptrs[MODEL_CHURN_CALIB_BINS];
    for (int b = 0; b < MODEL_CHURN_CALIB_BINS; b++) {
        recd__v1__calibration_bin__init(&bins[b]);
        bins[b].low = (float)b / MODEL_CHURN_CALIB_BINS;
        bins[b].high = (float)(b + 1) / MODEL_CHURN_CALIB_BINS;
        bins[b].members = (uint32_t)v->calib_n[b];
        bins[b].mean_predicted = v->calib_predicted[b];
        bins[b].observed = v->calib_observed[b];
        bin_ptrs[b] = &bins[b];
    }
    Recd__V1__ChurnModelInfo resp = RECD__V1__CHURN_MODEL_INFO__INIT;
    resp.model_version = cm.model_version;
    resp.horizon_days = cm.horizon_days;
    resp.scored_at_unix = cm.scored_at;
    resp.validated_at_unix = (int64_t)v->validated_at;
    resp.validation_members = (uint32_t)v->members;
    resp.validation_churned = (uint32_t)v->churned;
    resp.roc_auc = v->roc_auc;
    resp.pr_auc = v->pr_auc;
    resp.brier = v->brier;
    resp.recency_roc_auc = v->recency_roc_auc;
    resp.base_brier = v->base_brier;
    resp.calibration = bin_ptrs;
    resp.n_calibration = MODEL_CHURN_CALIB_BINS;
    reply_pack(reply, &resp.base);
}

static void svc_churn_score(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__ChurnScoreRequest *rq = recd__v1__churn_score_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "ChurnScoreRequest");
        return;
    }
    core_churn_reply cs;
    err_t e;
    if (core_churn_score(s->core, rq->user_id, &cs, &e)) {
        reply_err(reply, &e);
    } else {
        Recd__V1__Factor factors[CORE_TOP_FACTORS], *factor_ptrs[CORE_TOP_FACTORS];
        for (uint32_t i = 0; i < cs.n_factors; i++) {
            recd__v1__factor__init(&factors[i]);
            factors[i].feature = (char *)cs.feature[i];
            factors[i].contribution = cs.contribution[i];
            factor_ptrs[i] = &factors[i];
        }
        Recd__V1__RFM rfm = RECD__V1__RFM__INIT;
        rfm.recency_days = cs.recency_days;
        rfm.frequency = (uint32_t)cs.frequency;
        rfm.monetary = cs.monetary;
        Recd__V1__ChurnScore resp = RECD__V1__CHURN_SCORE__INIT;
        resp.user_id = rq->user_id;
        resp.probability = cs.probability;
        resp.risk_band = (char *)cs.risk_band;
        resp.segment = (char *)cs.segment;
        resp.tier = (char *)cs.tier;
        resp.p_alive = cs.p_alive;
        resp.expected_orders = cs.expected_orders;
        resp.expected_value = cs.expected_value;
        resp.rfm = &rfm;
        resp.top_factors = factor_ptrs;
        resp.n_top_factors = cs.n_factors;
        resp.model_version = (char *)cs.model_version;
        reply_pack(reply, &resp.base);
    }
    core_churn_reply_free(&cs);
    recd__v1__churn_score_request__free_unpacked(rq, NULL);
}

/* The CampaignTarget message of t (its strings t's). */
static void target_message(const core_target *t, Recd__V1__CampaignTarget *m) {
    recd__v1__campaign_target__init(m);
    m->user_id = (char *)t->user_id;
    m->churn_probability = t->churn_probability;
    m->risk_band = (char *)t->risk_band;
    m->segment = (char *)t->segment;
    m->tier = (char *)t->tier;
    m->monetary = t->monetary;
    m->affinity = t->affinity;
    m->expected_value = t->expected_value;
    m->p_alive = t->p_alive;
}

/* One run of the targets: the transport's emit and its context. */
typedef struct target_run {
    svc_target_fn emit;
    void *ctx;
} target_run;

static int target_emit(void *ctx, const core_target *t) {
    target_run *run = ctx;
    Recd__V1__CampaignTarget m;
    target_message(t, &m);
    return run->emit(run->ctx, &m.base);
}

/* The core's selection of a CampaignTargetsRequest (borrowing its strings). */
static core_targets_req targets_request(const Recd__V1__CampaignTargetsRequest *rq) {
    return (core_targets_req){
        .min_probability = rq->min_probability,
        .max_probability = rq->max_probability,
        .segments = rq->segments,
        .n_segments = rq->n_segments,
        .tiers = rq->tiers,
        .n_tiers = rq->n_tiers,
        .item_id = rq->item_id,
        .category = rq->category,
        .viewed_not_bought_days = rq->viewed_not_bought_days,
        .limit = rq->limit,
        .order = rq->order == RECD__V1__TARGET_ORDER__BY_VALUE      ? CAMPAIGN_BY_VALUE
                 : rq->order == RECD__V1__TARGET_ORDER__BY_AFFINITY ? CAMPAIGN_BY_AFFINITY
                 : rq->order == RECD__V1__TARGET_ORDER__BY_EXPECTED_VALUE
                     ? CAMPAIGN_BY_EXPECTED_VALUE
                     : CAMPAIGN_BY_PROBABILITY,
    };
}

int svc_campaign_targets_run(svc *s, const ProtobufCMessage *request, svc_target_fn emit, void *ctx,
                             err_t *e) {
    if (request->descriptor != &recd__v1__campaign_targets_request__descriptor)
        return err_set(e, ERR_INTERNAL, "svc: not a CampaignTargetsRequest");
    core_targets_req creq = targets_request((const Recd__V1__CampaignTargetsRequest *)request);
    target_run run = {emit, ctx};
    return core_campaign_targets(s->core, &creq, target_emit, &run, e);
}

/* One gRPC target stream: each target is packed and sent down the stream. */
typedef struct target_stream {
    rpc_stream *st;
    uint8_t *buf;
    size_t cap;
    int gone;  /* the client went away */
    int nomem; /* no buffer for the next message: the stream stops, and says why */
} target_stream;

static int target_send(void *ctx, const ProtobufCMessage *m) {
    target_stream *ts = ctx;
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > ts->cap) {
        free(ts->buf);
        ts->cap = n * 2;
        if (!(ts->buf = malloc(ts->cap))) return ts->nomem = 1;
    }
    protobuf_c_message_pack(m, ts->buf);
    if (rpc_stream_send(ts->st, ts->buf, n)) ts->gone = 1;
    return ts->gone;
}

static void svc_campaign_targets(void *ctx, const uint8_t *req, size_t len, rpc_stream *st,
                                 rpc_reply *reply) {
    svc *s = ctx;
    if (check_nul(&recd__v1__campaign_targets_request__descriptor, req, len, "", 0, &reply->err))
        return;
    Recd__V1__CampaignTargetsRequest *rq =
        recd__v1__campaign_targets_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "CampaignTargetsRequest");
        return;
    }
    target_stream ts = {st, NULL, 0, 0, 0};
    err_t e;
    if (svc_campaign_targets_run(s, &rq->base, target_send, &ts, &e))
        reply_err(reply, &e);
    else if (ts.nomem)
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for a target; stream stopped");
    else if (ts.gone)
        rpc_reply_error(reply, ERR_CANCELLED, "the client went away; stream stopped");
    free(ts.buf);
    recd__v1__campaign_targets_request__free_unpacked(rq, NULL);
}

/* The counts of a table's names that are not 0, borrowing name(code). */
static size_t named_counts(const uint32_t *counts, size_t n, const char *(*name)(uint32_t),
                           Recd__V1__NamedCount *cells, Recd__V1__NamedCount **ptrs) {
    size_t kept = 0;
    for (size_t code = 0; code < n; code++) {
        if (!counts[code]) continue;
        recd__v1__named_count__init(&cells[kept]);
        cells[kept].name = (char *)name((uint32_t)code);
        cells[kept].members = counts[code];
        ptrs[kept] = &cells[kept];
        kept++;
    }
    return kept;
}

static void svc_member_overview(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Recd__V1__MemberOverviewRequest *rq = recd__v1__member_overview_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "MemberOverviewRequest");
        return;
    }
    core_targets_req selection = {.item_id = "", .category = ""};
    if (rq->selection) selection = targets_request(rq->selection);
    core_member_counts mo;
    err_t e;
    int err = core_member_overview(s->core, &selection, &mo, &e);
    recd__v1__member_overview_request__free_unpacked(rq, NULL);
    if (err) {
        reply_err(reply, &e);
        return;
    }
    Recd__V1__NamedCount bands[MODEL_CHURN_N_BANDS], *band_ptrs[MODEL_CHURN_N_BANDS];
    Recd__V1__NamedCount segments[MODEL_CHURN_N_SEGMENTS], *segment_ptrs[MODEL_CHURN_N_SEGMENTS];
    Recd__V1__NamedCount tiers[MODEL_CHURN_N_TIERS], *tier_ptrs[MODEL_CHURN_N_TIERS];
    Recd__V1__MemberOverview resp = RECD__V1__MEMBER_OVERVIEW__INIT;
    resp.model_version = mo.model_version;
    resp.members = mo.members;
    resp.risk_bands = band_ptrs;
    resp.n_risk_bands =
        named_counts(mo.bands, MODEL_CHURN_N_BANDS, model_churn_band_name, bands, band_ptrs);
    resp.segments = segment_ptrs;
    resp.n_segments = named_counts(mo.segments, MODEL_CHURN_N_SEGMENTS, model_churn_segment_name,
                                   segments, segment_ptrs);
    resp.tiers = tier_ptrs;
    resp.n_tiers =
        named_counts(mo.tiers, MODEL_CHURN_N_TIERS, model_churn_tier_name, tiers, tier_ptrs);
    resp.churn_histogram = mo.histogram;
    resp.n_churn_histogram = CORE_CHURN_HISTOGRAM_BINS;
    reply_pack(reply, &resp.base);
}

/* --- grpc.health.v1.Health/Check ------------------------------------------ */

static void svc_health(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply) {
    svc *s = ctx;
    Grpc__Health__V1__HealthCheckRequest *rq =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!rq) {
        reply_malformed(reply, "HealthCheckRequest");
        return;
    }
    /* A model is always loaded once the core is open, so both the server as
     * a whole ("") and the Recommender service are serving - unless this is
     * a replica too far behind the event bus (the balancer drains it). */
    if (rq->service[0] && strcmp(rq->service, "recd.v1.Recommender") != 0 &&
        strcmp(rq->service, "grpc.health.v1.Health") != 0) {
        rpc_reply_error(reply, ERR_NOTFOUND, "unknown service '%.*s'", 64, rq->service);
    } else {
        Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        char why[128];
        resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        if (!core_serving(s->core, why, sizeof why))
            resp.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
        reply_pack(reply, &resp.base);
    }
    grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
}

/* --- calls on the core's scheduler ----------------------------------------- */

/* A unary call while the scheduler holds it. */
typedef struct svc_call {
    sched_job job; /* first: the scheduler hands back &job */
    rpc_unary *u;
} svc_call;

static void svc_refuse(sched_job *job, const err_t *why) {
    svc_call *call = (svc_call *)job;
    rpc_reply reply = {.err = *why};
    rpc_unary_answer(call->u, &reply);
    free(call);
}

/* The request message of m, one of the svc's methods (m is the server's
 * copy of the row, its path the row's). */
static const ProtobufCMessageDescriptor *svc_request_of(const rpc_method *m) {
    const svc *s = m->ctx;
    size_t i = 0;
    while (s->methods[i].path != m->path)
        i++;
    return s->requests[i];
}

/* Runs calls of one method: its handler for one, its batch handler for
 * more (the scheduler gives several only to methods with a batch key). */
static void svc_run(sched_job *const *jobs, size_t n) {
    svc_call *calls[SCHED_MAX_BATCH];
    rpc_reply replies[SCHED_MAX_BATCH];
    uint8_t *reqs[SCHED_MAX_BATCH];
    size_t lens[SCHED_MAX_BATCH], run[SCHED_MAX_BATCH], n_run = 0;
    const rpc_method *m = rpc_unary_method(((svc_call *)jobs[0])->u);
    const ProtobufCMessageDescriptor *d = svc_request_of(m);
    for (size_t i = 0; i < n; i++) {
        calls[i] = (svc_call *)jobs[i];
        replies[i] = (rpc_reply){.err.code = ERR_OK};
        if (!(reqs[i] = rpc_unary_request(calls[i]->u, &lens[i], &replies[i]))) continue;
        if (check_nul(d, reqs[i], lens[i], "", 0, &replies[i].err)) continue;
        run[n_run++] = i;
    }
    if (n_run == 1) {
        m->handler(m->ctx, reqs[run[0]], lens[run[0]], &replies[run[0]]);
    } else if (n_run > 1) {
        const uint8_t *batch_reqs[SCHED_MAX_BATCH];
        size_t batch_lens[SCHED_MAX_BATCH];
        rpc_reply batch_replies[SCHED_MAX_BATCH];
        for (size_t k = 0; k < n_run; k++) {
            batch_reqs[k] = reqs[run[k]];
            batch_lens[k] = lens[run[k]];
            batch_replies[k] = (rpc_reply){.err.code = ERR_OK};
        }
        m->batch(m->ctx, batch_reqs, batch_lens, n_run, batch_replies);
        for (size_t k = 0; k < n_run; k++)
            replies[run[k]] = batch_replies[k];
    }
    for (size_t i = 0; i < n; i++) {
        free(reqs[i]);
        rpc_unary_answer(calls[i]->u, &replies[i]);
        free(calls[i]);
    }
}

int svc_dispatch(void *ctx, rpc_unary *u, err_t *e) {
    svc *s = ctx;
    const rpc_method *m = rpc_unary_method(u);
    svc_call *call = malloc(sizeof *call);
    if (!call) return err_set(e, ERR_NOMEM, "out of memory for a call");
    call->job = (sched_job){.run = svc_run,
                            .refuse = svc_refuse,
                            .batch_key = m->batch ? m : NULL,
                            .deadline = rpc_unary_deadline(u)};
    call->u = u;
    int rc = core_submit(s->core, &call->job, e);
    if (rc) free(call);
    return rc;
}

int svc_admit_stream(void *ctx, err_t *e) {
    svc *s = ctx;
    return core_stream_begin(s->core, e);
}

void svc_stream_done(void *ctx) {
    svc *s = ctx;
    core_stream_end(s->core);
}

/* --- the method table ------------------------------------------------------ */

int svc_open(core *c, svc **out, err_t *e) {
    svc *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    s->core = c;
    static const struct {
        const char *path;
        rpc_handler handler;
        rpc_batch_handler batch;
        rpc_stream_handler stream;
        int write, member_data;
        const ProtobufCMessageDescriptor *request;
    } table[] = {
        {"/recd.v1.Recommender/Recommend", svc_recommend, svc_recommend_batch, NULL, 0, 0,
         &recd__v1__recommend_request__descriptor},
        {"/recd.v1.Recommender/SimilarItems", svc_similar, NULL, NULL, 0, 0,
         &recd__v1__similar_items_request__descriptor},
        {"/recd.v1.Recommender/Rerank", svc_rerank, NULL, NULL, 0, 0,
         &recd__v1__rerank_request__descriptor},
        {"/recd.v1.Recommender/GetModelInfo", svc_model_info, NULL, NULL, 0, 0,
         &recd__v1__get_model_info_request__descriptor},
        {"/recd.v1.Recommender/GetItemStats", svc_item_stats, NULL, NULL, 0, 0,
         &recd__v1__item_stats_request__descriptor},
        {"/recd.v1.Recommender/GetChurnModelInfo", svc_churn_model, NULL, NULL, 0, 0,
         &recd__v1__churn_model_info_request__descriptor},
        {"/recd.v1.Recommender/GetMemberOverview", svc_member_overview, NULL, NULL, 0, 1,
         &recd__v1__member_overview_request__descriptor},
        {"/recd.v1.Recommender/GetChurnScore", svc_churn_score, NULL, NULL, 0, 1,
         &recd__v1__churn_score_request__descriptor},
        {"/recd.v1.Recommender/StreamCampaignTargets", NULL, NULL, svc_campaign_targets, 0, 1,
         &recd__v1__campaign_targets_request__descriptor},
        {"/recd.v1.Recommender/RecordEvents", svc_record_events, NULL, NULL, 1, 0,
         &recd__v1__record_events_request__descriptor},
        {"/recd.v1.Recommender/SetItemAvailability", svc_set_availability, NULL, NULL, 1, 0,
         &recd__v1__set_item_availability_request__descriptor},
        {"/recd.v1.Recommender/SetItemBoosts", svc_set_boosts, NULL, NULL, 1, 0,
         &recd__v1__set_item_boosts_request__descriptor},
        {"/recd.v1.Recommender/ForgetUser", svc_forget_user, NULL, NULL, 1, 0,
         &recd__v1__forget_user_request__descriptor},
        {"/recd.v1.Recommender/SetPersonalization", svc_set_personalization, NULL, NULL, 1, 0,
         &recd__v1__set_personalization_request__descriptor},
        {"/recd.v1.Recommender/RecordFeedback", svc_record_feedback, NULL, NULL, 1, 0,
         &recd__v1__record_feedback_request__descriptor},
        {"/recd.v1.Recommender/SetExperiment", svc_set_experiment, NULL, NULL, 1, 0,
         &recd__v1__set_experiment_request__descriptor},
        {"/recd.v1.Recommender/UpsertItems", svc_upsert_items, NULL, NULL, 1, 0,
         &recd__v1__upsert_items_request__descriptor},
        {"/grpc.health.v1.Health/Check", svc_health, NULL, NULL, 0, 0,
         &grpc__health__v1__health_check_request__descriptor},
    };
    _Static_assert(sizeof table / sizeof table[0] == sizeof s->methods / sizeof s->methods[0],
                   "one rpc_method per table row");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        s->methods[i] = (rpc_method){.path = table[i].path,
                                     .handler = table[i].handler,
                                     .stream = table[i].stream,
                                     .ctx = s,
                                     .write = table[i].write,
                                     .member_data = table[i].member_data,
                                     .empty_ok = table[i].handler == svc_health,
                                     .batch = table[i].batch};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        s->requests[i] = table[i].request;
    *out = s;
    return ERR_OK;
}

const rpc_method *svc_methods(svc *s, size_t *n) {
    *n = sizeof s->methods / sizeof s->methods[0];
    return s->methods;
}

void svc_close(svc *s) {
    free(s);
}
