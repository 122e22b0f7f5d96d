/* recd query: the command-line gRPC client, one subcommand per RPC of
 * recd.v1.Recommender (recommend, similar, rerank, events, rules, churn,
 * campaign targets, experiments, privacy, info, health), each printing
 * text or, with --json, one JSON object per answer. Long because it is a
 * list of small, independent subcommands. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "clock.h"
#include "core.h"
#include "rpc.h"
#include "cmd.h"
#include "experiment.h"
#include "grpc/health/v1/health.pb-c.h"
#include "model.h"
#include "opts.h"
#include "pbjson.h"
#include "recd/v1/recommender.pb-c.h"
#include "targetcsv.h"

static const char query_usage[] =
    "usage: recd query [--server ADDR] [--json] [--timeout S] [--repeat N] ACTION ...\n"
    "Calls a running recd server (gRPC) and prints the answer as a table or JSON.\n"
    "  recommend USER     top-k items for USER (unknown users get the most popular); USER\n"
    "                     '' with --context is an anonymous visitor\n"
    "      [-k N] [--exclude ITEM]... [--include-purchased] [--context ITEM]...\n"
    "      [--diversity D] [--category C]\n"
    "      [--explain]    name with each item the shopper's items it is most owed to\n"
    "      [--mode M]     default, buy-again (only items USER bought before, most due\n"
    "                     first), trending (items with recent events, time-decayed),\n"
    "                     new-arrivals (published in the last --new-days N, default 30),\n"
    "                     or a number\n"
    "      [--label L]... the visitor's attributes (user_labels: 'age_band:20-29')\n"
    "  similar ITEM...    items most similar to ITEM (to all of them: a cart) [-k N]\n"
    "      [--together]   the items most bought together with them instead\n"
    "      [--exclude ITEM]... [--category C]\n"
    "  rerank USER ITEM...  orders the candidate ITEMs for USER [--context ITEM]...\n"
    "  event USER ITEM TYPE  records an event; TYPE view, cart, purchase or favorite\n"
    "      [--quantity N] [--price P] [--time UNIX]\n"
    "  available ITEM yes|no  marks ITEM in or out of stock\n"
    "  boost ITEM MULT    multiplies ITEM's score by MULT (1 = no boost)\n"
    "  upsert ITEM        UpsertItems: describes ITEM (new or known), servable at once\n"
    "      [--category C] [--label L]... [--title T] [--price P] [--time UNIX]\n"
    "  churn USER         USER's churn probability, risk band, segment, tier, RFM and the\n"
    "                     factors that push the score most\n"
    "  targets            streams campaign targets (one line each; --csv for a spreadsheet)\n"
    "      [--min-prob P] [--max-prob P] [--segment S]... [--tier T]... [--item X | --category C]\n"
    "      [--viewed-days N] [--limit N] [--order probability|value|affinity|expected-value]\n"
    "      [--csv]\n"
    "  forget USER        ForgetUser: deletes USER's events, never personalizes USER again\n"
    "  optout USER yes|no SetPersonalization: USER gets non-personalized results (yes) or not\n"
    "  feedback REQUEST_ID ITEM TYPE  RecordFeedback; TYPE impression (ITEM '' = the whole\n"
    "                     list), click, cart or conversion [--user U]\n"
    "  experiment [--salt S] [--share VARIANT=F]...  SetExperiment: traffic shares, salt\n"
    "  info               the served model's metadata\n"
    "  items [VARIANT]    GetItemStats: the -k items most often in Recommend answers of\n"
    "                     VARIANT's model (default control) since it was loaded, and the\n"
    "                     items out of stock or boosted\n"
    "  churn-model        GetChurnModelInfo: the churn model's ROC-AUC, Brier score and\n"
    "                     calibration on its validation cutoff\n"
    "  members [targets options]  GetMemberOverview: the members the campaign selects\n"
    "                     (default all) by churn risk band, segment and tier, and a\n"
    "                     histogram of their churn probability\n"
    "  health             grpc.health.v1.Health/Check\n"
    "Options:\n"
    "  --server ADDR      server address (default 127.0.0.1:50051)\n"
    "  --json             print JSON instead of a table\n"
    "  --timeout S        deadline in seconds (default 5)\n"
    "  -k N               number of items (default 10)\n"
    "  --repeat N         send the request N times and print latency percentiles instead\n"
    "  --tls-ca FILE      TLS: the server's CA (PEM); with --tls-cert and --tls-key, mutual\n"
    "  --token-file FILE  send 'authorization: Bearer <token>' (write RPCs on a server with\n"
    "                     --write-token-file; churn, targets and members with --read-token-file)\n";

static void json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static const char *strategy_name(Recd__V1__Strategy s) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&recd__v1__strategy__descriptor, (int)s);
    return v ? v->name : "STRATEGY_UNSPECIFIED";
}

/* Prints a ranked list; strategy, request_id and variant may be NULL (the
 * RPC has none); fell_back is SimilarItems' fell_back_to_similar, -1 for
 * the other RPCs. */
static void print_items(Recd__V1__ScoredItem **items, size_t n, const char *version,
                        const char *strategy, const char *request_id, const char *variant,
                        int fell_back, int json) {
    if (json) {
        printf("{\"model_version\":");
        json_string(version);
        if (strategy) printf(",\"strategy\":\"%s\"", strategy);
        if (fell_back >= 0) printf(",\"fell_back_to_similar\":%s", fell_back ? "true" : "false");
        if (request_id) {
            printf(",\"request_id\":");
            json_string(request_id);
            printf(",\"variant\":");
            json_string(variant);
        }
        printf(",\"items\":[");
        for (size_t i = 0; i < n; i++) {
            printf(i ? ",{\"item_id\":" : "{\"item_id\":");
            json_string(items[i]->item_id);
            printf(",\"score\":%.6g", items[i]->score);
            if (items[i]->n_because_item_ids) {
                printf(",\"because_item_ids\":[");
                for (size_t b = 0; b < items[i]->n_because_item_ids; b++) {
                    if (b) putchar(',');
                    json_string(items[i]->because_item_ids[b]);
                }
                putchar(']');
            }
            putchar('}');
        }
        printf("]}\n");
        return;
    }
    printf("model %s", version);
    if (strategy) printf("  strategy %s", strategy);
    if (fell_back > 0) printf("  fell back to SIMILAR (no co-purchases)");
    if (request_id) printf("  variant %s  request %s", variant, request_id);
    int because = 0;
    for (size_t i = 0; i < n; i++)
        because |= items[i]->n_because_item_ids > 0;
    printf("\n%4s  %-24s %10s%s\n", "rank", "item_id", "score", because ? "  because" : "");
    for (size_t i = 0; i < n; i++) {
        printf("%4zu  %-24s %10.4f", i + 1, items[i]->item_id, items[i]->score);
        for (size_t b = 0; b < items[i]->n_because_item_ids; b++)
            printf("%s%s", b ? ", " : "  ", items[i]->because_item_ids[b]);
        putchar('\n');
    }
}

/* The UTC date of unix time t in buf (32 bytes); returns buf. */
static const char *utc_date(char *buf, int64_t t) {
    time_t tt = (time_t)t;
    struct tm tm;
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&tt, &tm));
    return buf;
}

/* The rows of MODEL_META_MAP that are both PB and SHOW, in its order, then by
 * hand the popularity blend (see the table). */
static void print_info(const Recd__V1__ModelInfo *m, int json) {
    char when[32];
#define INFO_NO(show, kind, pb_name, label, fmt)
#define INFO_PB(show, kind, pb_name, label, fmt) INFO_##show(kind, label, fmt, m->pb_name)
#define INFO_HIDE(kind, label, fmt, v)
#define INFO_HAND(kind, label, fmt, v)
#define INFO_ROW(member, key, kind, opt, pb, pb_name, show, label, fmt)                            \
    INFO_##pb(show, kind, pb_name, label, fmt)
    if (json) {
        const char *sep = "{";
#define JSON_U32(label, v) printf("%s\"" label "\":%u", sep, v);
#define JSON_U64(label, v) printf("%s\"" label "\":%llu", sep, (unsigned long long)(v));
#define JSON_F32(label, v) printf("%s\"" label "\":%g", sep, (double)(v));
#define JSON_STR(label, v)                                                                         \
    printf("%s\"" label "\":", sep);                                                               \
    json_string(v);
#define JSON_TIME(label, v) printf("%s\"" label "_unix\":%lld", sep, (long long)(v));
#define INFO_SHOW(kind, label, fmt, v) JSON_##kind(label, v) sep = ",";
        MODEL_META_MAP(INFO_ROW)
#undef INFO_SHOW
#undef JSON_TIME
#undef JSON_STR
#undef JSON_F32
#undef JSON_U64
#undef JSON_U32
        /* JSON has no infinity: popularity only is the string "inf". */
        if (isinf(m->popularity_blend))
            printf(",\"popularity_blend\":\"inf\"}\n");
        else
            printf(",\"popularity_blend\":%.9g}\n", m->popularity_blend);
        return;
    }
#define TEXT_U32(v) v
#define TEXT_U64(v) (unsigned long long)(v)
#define TEXT_F32(v) (double)(v)
#define TEXT_STR(v) v
#define TEXT_TIME(v) utc_date(when, v)
#define INFO_SHOW(kind, label, fmt, v) printf("%-20s" fmt "\n", label, TEXT_##kind(v));
    MODEL_META_MAP(INFO_ROW)
#undef INFO_SHOW
#undef TEXT_TIME
#undef TEXT_STR
#undef TEXT_F32
#undef TEXT_U64
#undef TEXT_U32
#undef INFO_ROW
#undef INFO_HAND
#undef INFO_HIDE
#undef INFO_PB
#undef INFO_NO
    printf("popularity_blend    %g%s\n", m->popularity_blend,
           isinf(m->popularity_blend) ? " (popularity only)" : "");
}

/* Packs msg, calls method and returns the OK response body (caller frees), or
 * NULL after printing the failure. */
static uint8_t *call(client *c, const char *method, const ProtobufCMessage *msg, double timeout,
                     size_t *len) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *req = malloc(n ? n : 1);
    if (!req) {
        fprintf(stderr, "recd: out of memory\n");
        return NULL;
    }
    protobuf_c_message_pack(msg, req);
    client_result r;
    err_t e;
    int rc = client_call(c, method, req, n, timeout, &r, &e);
    free(req);
    if (rc) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return NULL;
    }
    if (r.status != 0) {
        fprintf(stderr, "recd: %s: %s\n", err_status_name(r.status), r.details);
        free(r.body);
        return NULL;
    }
    *len = r.len;
    return r.body;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sends msg n times and prints latency percentiles: the cost of one call as
 * a client sees it, for benchmarks. Returns 0, or 1 when a call failed. */
static int repeat_call(client *c, const char *method, const ProtobufCMessage *msg, double timeout,
                       uint32_t n, int json) {
    double *ms = malloc((size_t)n * sizeof *ms);
    if (!ms) return 1;
    double start = clock_seconds();
    for (uint32_t i = 0; i < n; i++) {
        double t = clock_seconds();
        size_t len;
        uint8_t *body = call(c, method, msg, timeout, &len);
        if (!body) {
            free(ms);
            return 1;
        }
        free(body);
        ms[i] = (clock_seconds() - t) * 1e3;
    }
    double total = clock_seconds() - start;
    qsort(ms, n, sizeof *ms, cmp_double);
    double p50 = ms[n / 2], p99 = ms[(size_t)((double)n * 0.99)], max = ms[n - 1];
    if (json)
        printf("{\"calls\":%u,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,\"calls_per_s\":%.1f}"
               "\n",
               n, p50, p99, max, n / total);
    else
        printf("%u calls  p50 %.3f ms  p99 %.3f ms  max %.3f ms  %.0f calls/s (one at a time)\n", n,
               p50, p99, max, n / total);
    free(ms);
    return 0;
}

enum {
    OPT_SERVER = OPT_FIRST_FREE,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_EXCLUDE,
    OPT_INCLUDE_PURCHASED,
    OPT_MODE,
    OPT_CONTEXT,
    OPT_DIVERSITY,
    OPT_CATEGORY,
    OPT_QUANTITY,
    OPT_PRICE,
    OPT_TIME,
    OPT_REPEAT,
    OPT_MIN_PROB,
    OPT_MAX_PROB,
    OPT_SEGMENT,
    OPT_TIER,
    OPT_ITEM,
    OPT_VIEWED_DAYS,
    OPT_LIMIT,
    OPT_ORDER,
    OPT_CSV,
    OPT_TLS_CA,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TOKEN_FILE,
    OPT_USER,
    OPT_SALT,
    OPT_SHARE,
    OPT_TOGETHER,
    OPT_LABEL,
    OPT_NEW_DAYS,
    OPT_TITLE,
    OPT_EXPLAIN
};

/* Everything the command line says; the lists point into argv. */
typedef struct query_args {
    const char *server;
    int json, include_purchased, together, explain;
    int32_t mode; /* RecommendRequest.mode */
    float timeout, diversity;
    uint32_t k, quantity, repeat;
    double price;
    int64_t time;
    const char *category, *item, *title;
    char **exclude, **context, **segments, **tiers, **labels;
    size_t n_exclude, n_context, n_segments, n_tiers, n_labels;
    uint32_t new_days;
    float min_prob, max_prob;
    uint32_t viewed_days, limit;
    int order, csv;
    const char *tls_ca, *tls_cert, *tls_key, *token_file, *user, *salt;
    char **shares;
    size_t n_shares;
    char **pos; /* positional arguments after the action */
    size_t n_pos;
} query_args;

/* One action: checks its positional arguments, builds the request, calls
 * and prints. Returns the exit code (2 = usage). */
typedef int (*query_fn)(client *c, const query_args *a);

/* Calls method with msg (or repeats it), decodes the answer with unpack and
 * prints it with show. */
static int run_call(client *c, const query_args *a, const char *method, const ProtobufCMessage *msg,
                    const ProtobufCMessageDescriptor *answer,
                    void (*show)(const ProtobufCMessage *, int json)) {
    if (a->repeat) return repeat_call(c, method, msg, a->timeout, a->repeat, a->json);
    size_t len;
    uint8_t *body = call(c, method, msg, a->timeout, &len);
    if (!body) return 1;
    ProtobufCMessage *r = protobuf_c_message_unpack(answer, NULL, len, body);
    free(body);
    if (!r) {
        fprintf(stderr, "recd: the server's answer did not decode\n");
        return 1;
    }
    show(r, a->json);
    protobuf_c_message_free_unpacked(r, NULL);
    return 0;
}

static void show_recommend(const ProtobufCMessage *msg, int json) {
    const Recd__V1__RecommendResponse *r = (const Recd__V1__RecommendResponse *)msg;
    print_items(r->items, r->n_items, r->model_version, strategy_name(r->strategy), r->request_id,
                r->variant, -1, json);
}

static void show_similar(const ProtobufCMessage *msg, int json) {
    const Recd__V1__SimilarItemsResponse *r = (const Recd__V1__SimilarItemsResponse *)msg;
    print_items(r->items, r->n_items, r->model_version, NULL, NULL, NULL, r->fell_back_to_similar,
                json);
}

static void show_rerank(const ProtobufCMessage *msg, int json) {
    const Recd__V1__RerankResponse *r = (const Recd__V1__RerankResponse *)msg;
    print_items(r->items, r->n_items, r->model_version, strategy_name(r->strategy), NULL, NULL, -1,
                json);
}

static void show_info(const ProtobufCMessage *msg, int json) {
    print_info((const Recd__V1__ModelInfo *)msg, json);
}

/* The rejected entries of a write's reply (RejectedEvent, RejectedItem: an
 * index and a reason each, read through their descriptor so that one
 * printer serves both): a JSON array, or a line each naming what. */
static void show_rejected(void *const *rejected, size_t n, const char *what, int json) {
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessage *r = rejected[i];
        const ProtobufCFieldDescriptor *fi =
            protobuf_c_message_descriptor_get_field_by_name(r->descriptor, "index");
        const ProtobufCFieldDescriptor *fr =
            protobuf_c_message_descriptor_get_field_by_name(r->descriptor, "reason");
        uint32_t index = *(const uint32_t *)((const char *)r + fi->offset);
        const char *reason = *(char *const *)((const char *)r + fr->offset);
        if (!json) {
            printf("rejected %s %u: %s\n", what, index, reason);
            continue;
        }
        printf("%s{\"index\":%u,\"reason\":", i ? "," : "", index);
        json_string(reason);
        printf("}");
    }
}

static void show_events(const ProtobufCMessage *msg, int json) {
    const Recd__V1__RecordEventsResponse *r = (const Recd__V1__RecordEventsResponse *)msg;
    printf(json ? "{\"accepted\":%u,\"rejected\":[" : "accepted %u\n", r->accepted);
    show_rejected((void *const *)r->rejected, r->n_rejected, "event", json);
    if (json) printf("]}\n");
}

static void show_updated(const ProtobufCMessage *msg, int json) {
    /* Both rule responses have one uint32 field 1, "updated". */
    const Recd__V1__SetItemBoostsResponse *r = (const Recd__V1__SetItemBoostsResponse *)msg;
    if (json)
        printf("{\"updated\":%u}\n", r->updated);
    else
        printf("updated %u\n", r->updated);
}

static int q_recommend(client *c, const query_args *a) {
    if (a->n_pos != 1) return 2;
    Recd__V1__RecommendRequest rq = RECD__V1__RECOMMEND_REQUEST__INIT;
    rq.user_id = a->pos[0];
    rq.k = a->k;
    rq.exclude_item_ids = a->exclude;
    rq.n_exclude_item_ids = a->n_exclude;
    rq.context_item_ids = a->context;
    rq.n_context_item_ids = a->n_context;
    rq.include_purchased = a->include_purchased;
    rq.diversity = a->diversity;
    rq.category = (char *)(a->category ? a->category : "");
    rq.mode = (Recd__V1__RecommendRequest__RecommendMode)a->mode;
    rq.user_labels = a->labels;
    rq.n_user_labels = a->n_labels;
    rq.new_days = a->new_days;
    rq.explain = a->explain;
    return run_call(c, a, "/recd.v1.Recommender/Recommend", &rq.base,
                    &recd__v1__recommend_response__descriptor, show_recommend);
}

static int q_similar(client *c, const query_args *a) {
    if (a->n_pos < 1) return 2;
    Recd__V1__SimilarItemsRequest rq = RECD__V1__SIMILAR_ITEMS_REQUEST__INIT;
    rq.item_id = a->pos[0];
    rq.item_ids = a->pos + 1;
    rq.n_item_ids = a->n_pos - 1;
    rq.k = a->k;
    if (a->together) rq.relation = RECD__V1__RELATION__BOUGHT_TOGETHER;
    rq.exclude_item_ids = a->exclude;
    rq.n_exclude_item_ids = a->n_exclude;
    rq.category = (char *)(a->category ? a->category : "");
    return run_call(c, a, "/recd.v1.Recommender/SimilarItems", &rq.base,
                    &recd__v1__similar_items_response__descriptor, show_similar);
}

static int q_rerank(client *c, const query_args *a) {
    if (a->n_pos < 2) return 2;
    Recd__V1__RerankRequest rq = RECD__V1__RERANK_REQUEST__INIT;
    rq.user_id = a->pos[0];
    rq.candidate_item_ids = a->pos + 1;
    rq.n_candidate_item_ids = a->n_pos - 1;
    rq.context_item_ids = a->context;
    rq.n_context_item_ids = a->n_context;
    return run_call(c, a, "/recd.v1.Recommender/Rerank", &rq.base,
                    &recd__v1__rerank_response__descriptor, show_rerank);
}

static int q_event(client *c, const query_args *a) {
    if (a->n_pos != 3) return 2;
    uint32_t type = ev_type_of_word(a->pos[2], strlen(a->pos[2]));
    if (!type) {
        char words[256];
        ev_type_words(words, sizeof words);
        fprintf(stderr, "recd: event type '%s' is not %s\n", a->pos[2], words);
        return 2;
    }
    Recd__V1__Event ev = RECD__V1__EVENT__INIT, *evp = &ev;
    ev.user_id = a->pos[0];
    ev.item_id = a->pos[1];
    ev.type = (Recd__V1__EventType)type;
    ev.timestamp_unix = a->time;
    ev.quantity = a->quantity;
    ev.price = a->price;
    Recd__V1__RecordEventsRequest rq = RECD__V1__RECORD_EVENTS_REQUEST__INIT;
    rq.events = &evp;
    rq.n_events = 1;
    return run_call(c, a, "/recd.v1.Recommender/RecordEvents", &rq.base,
                    &recd__v1__record_events_response__descriptor, show_events);
}

static void show_upserted(const ProtobufCMessage *msg, int json) {
    const Recd__V1__UpsertItemsResponse *r = (const Recd__V1__UpsertItemsResponse *)msg;
    if (json) {
        printf("{\"accepted\":%u,\"modelVersion\":", r->accepted);
        json_string(r->model_version);
        printf(",\"rejected\":[");
    } else {
        printf("accepted %u (model %s)\n", r->accepted, r->model_version);
    }
    show_rejected((void *const *)r->rejected, r->n_rejected, "item", json);
    if (json) printf("]}\n");
}

static int q_upsert(client *c, const query_args *a) {
    if (a->n_pos != 1) return 2;
    Recd__V1__Item item = RECD__V1__ITEM__INIT, *itemp = &item;
    char *category = (char *)a->category;
    item.item_id = a->pos[0];
    item.categories = category ? &category : NULL;
    item.n_categories = category != NULL;
    item.labels = a->labels;
    item.n_labels = a->n_labels;
    item.title = (char *)(a->title ? a->title : "");
    item.price = a->price;
    item.published_unix = a->time;
    Recd__V1__UpsertItemsRequest rq = RECD__V1__UPSERT_ITEMS_REQUEST__INIT;
    rq.items = &itemp;
    rq.n_items = 1;
    return run_call(c, a, "/recd.v1.Recommender/UpsertItems", &rq.base,
                    &recd__v1__upsert_items_response__descriptor, show_upserted);
}

static int q_available(client *c, const query_args *a) {
    if (a->n_pos != 2 || (strcmp(a->pos[1], "yes") && strcmp(a->pos[1], "no"))) return 2;
    Recd__V1__ItemAvailability item = RECD__V1__ITEM_AVAILABILITY__INIT, *itemp = &item;
    item.item_id = a->pos[0];
    item.available = !strcmp(a->pos[1], "yes");
    Recd__V1__SetItemAvailabilityRequest rq = RECD__V1__SET_ITEM_AVAILABILITY_REQUEST__INIT;
    rq.items = &itemp;
    rq.n_items = 1;
    return run_call(c, a, "/recd.v1.Recommender/SetItemAvailability", &rq.base,
                    &recd__v1__set_item_availability_response__descriptor, show_updated);
}

static int q_boost(client *c, const query_args *a) {
    float mult;
    if (a->n_pos != 2 || opts_float("boost", a->pos[1], 0, 1e9, &mult)) return 2;
    Recd__V1__ItemBoost boost = RECD__V1__ITEM_BOOST__INIT, *boostp = &boost;
    boost.item_id = a->pos[0];
    boost.multiplier = mult;
    Recd__V1__SetItemBoostsRequest rq = RECD__V1__SET_ITEM_BOOSTS_REQUEST__INIT;
    rq.boosts = &boostp;
    rq.n_boosts = 1;
    return run_call(c, a, "/recd.v1.Recommender/SetItemBoosts", &rq.base,
                    &recd__v1__set_item_boosts_response__descriptor, show_updated);
}

static int q_info(client *c, const query_args *a) {
    if (a->n_pos != 0) return 2;
    Recd__V1__GetModelInfoRequest rq = RECD__V1__GET_MODEL_INFO_REQUEST__INIT;
    return run_call(c, a, "/recd.v1.Recommender/GetModelInfo", &rq.base,
                    &recd__v1__model_info__descriptor, show_info);
}

static int q_health(client *c, const query_args *a) {
    if (a->n_pos != 0) return 2;
    Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    if (a->repeat)
        return repeat_call(c, "/grpc.health.v1.Health/Check", &rq.base, a->timeout, a->repeat,
                           a->json);
    size_t len;
    uint8_t *body = call(c, "/grpc.health.v1.Health/Check", &rq.base, a->timeout, &len);
    Grpc__Health__V1__HealthCheckResponse *r =
        body ? grpc__health__v1__health_check_response__unpack(NULL, len, body) : NULL;
    free(body);
    if (!r) return 1;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &grpc__health__v1__health_check_response__serving_status__descriptor, r->status);
    const char *name = v ? v->name : "UNKNOWN";
    if (a->json)
        printf("{\"status\":\"%s\"}\n", name);
    else
        printf("%s\n", name);
    int serving = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    return serving ? 0 : 1;
}

/* A JSON number, null when v is NaN (a model without CLV). */
static void json_number(double v) {
    if (isfinite(v))
        printf("%.6g", v);
    else
        printf("null");
}

static void show_churn(const ProtobufCMessage *msg, int json) {
    const Recd__V1__ChurnScore *r = (const Recd__V1__ChurnScore *)msg;
    const Recd__V1__RFM *rfm = r->rfm;
    if (json) {
        printf("{\"user_id\":");
        json_string(r->user_id);
        printf(",\"probability\":%.6g,\"risk_band\":", r->probability);
        json_string(r->risk_band);
        printf(",\"segment\":");
        json_string(r->segment);
        printf(",\"tier\":");
        json_string(r->tier);
        printf(",\"rfm\":{\"recency_days\":%.6g,\"frequency\":%u,\"monetary\":%.6g}",
               rfm ? rfm->recency_days : 0, rfm ? rfm->frequency : 0, rfm ? rfm->monetary : 0);
        printf(",\"top_factors\":[");
        for (size_t i = 0; i < r->n_top_factors; i++) {
            printf(i ? ",{\"feature\":" : "{\"feature\":");
            json_string(r->top_factors[i]->feature);
            printf(",\"contribution\":%.6g}", r->top_factors[i]->contribution);
        }
        printf("],\"p_alive\":");
        json_number(r->p_alive);
        printf(",\"expected_orders\":");
        json_number(r->expected_orders);
        printf(",\"expected_value\":");
        json_number(r->expected_value);
        printf(",\"model_version\":");
        json_string(r->model_version);
        printf("}\n");
        return;
    }
    printf("user %s  model %s\nchurn probability  %.3f  (%s risk)\nsegment            %s\n"
           "tier               %s\n",
           r->user_id, r->model_version, r->probability, r->risk_band, r->segment, r->tier);
    if (rfm)
        printf("recency            %.1f days\nfrequency          %u orders\nmonetary           "
               "%.2f\n",
               rfm->recency_days, rfm->frequency, rfm->monetary);
    if (isfinite(r->p_alive))
        printf("P(alive)           %.3f\nexpected orders    %.2f within the horizon\n"
               "expected value     %.2f within the horizon\n",
               r->p_alive, r->expected_orders, r->expected_value);
    printf("why (contribution to the churn score; > 0 pushes towards churn):\n");
    for (size_t i = 0; i < r->n_top_factors; i++)
        printf("  %-28s %+8.3f\n", r->top_factors[i]->feature, r->top_factors[i]->contribution);
}

/* --json of the answers that came after the hand-written ones: their proto3
 * JSON, as over HTTP (pbjson). */
static void print_pbjson(const ProtobufCMessage *msg) {
    char *text;
    size_t len;
    err_t e;
    if (pbjson_encode(msg, &text, &len, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return;
    }
    printf("%s\n", text);
    free(text);
}

static void show_item_stats(const ProtobufCMessage *msg, int json) {
    const Recd__V1__ItemStats *r = (const Recd__V1__ItemStats *)msg;
    if (json) {
        print_pbjson(msg);
        return;
    }
    time_t since = (time_t)r->counted_since_unix;
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&since));
    printf("variant %s  model %s\n%llu Recommend answers since %s\n", r->variant, r->model_version,
           (unsigned long long)r->recommend_answers, when);
    for (size_t i = 0; i < r->n_most_recommended; i++)
        printf("%4zu  %-24s %10llu\n", i + 1, r->most_recommended[i]->item_id,
               (unsigned long long)r->most_recommended[i]->count);
    printf("out of stock or delisted: %u\n", r->unavailable_total);
    for (size_t i = 0; i < r->n_unavailable_item_ids; i++)
        printf("      %s\n", r->unavailable_item_ids[i]);
    printf("boosted: %u\n", r->boosted_total);
    for (size_t i = 0; i < r->n_boosts; i++)
        printf("      %-24s x%g\n", r->boosts[i]->item_id, r->boosts[i]->multiplier);
}

static int q_items(client *c, const query_args *a) {
    if (a->n_pos > 1) return 2;
    Recd__V1__ItemStatsRequest rq = RECD__V1__ITEM_STATS_REQUEST__INIT;
    rq.k = a->k;
    rq.variant = a->n_pos ? a->pos[0] : "";
    return run_call(c, a, "/recd.v1.Recommender/GetItemStats", &rq.base,
                    &recd__v1__item_stats__descriptor, show_item_stats);
}

static void show_churn_model(const ProtobufCMessage *msg, int json) {
    const Recd__V1__ChurnModelInfo *r = (const Recd__V1__ChurnModelInfo *)msg;
    if (json) {
        print_pbjson(msg);
        return;
    }
    printf("model %s  horizon %u days\n", r->model_version, r->horizon_days);
    if (!r->validation_members) {
        printf("no validation figures (a model trained before recd kept them)\n");
        return;
    }
    printf("validated on %u members, %u churned\nROC-AUC  %.3f  (recency alone %.3f)\n"
           "PR-AUC   %.3f\nBrier    %.3f  (one rate for all %.3f)\n"
           "calibration: probability  members  mean predicted  observed\n",
           r->validation_members, r->validation_churned, r->roc_auc, r->recency_roc_auc, r->pr_auc,
           r->brier, r->base_brier);
    for (size_t i = 0; i < r->n_calibration; i++) {
        const Recd__V1__CalibrationBin *b = r->calibration[i];
        printf("  %.1f-%.1f  %8u  %14.3f  %8.3f\n", b->low, b->high, b->members, b->mean_predicted,
               b->observed);
    }
}

static int q_churn_model(client *c, const query_args *a) {
    if (a->n_pos) return 2;
    Recd__V1__ChurnModelInfoRequest rq = RECD__V1__CHURN_MODEL_INFO_REQUEST__INIT;
    return run_call(c, a, "/recd.v1.Recommender/GetChurnModelInfo", &rq.base,
                    &recd__v1__churn_model_info__descriptor, show_churn_model);
}

static void show_named_counts(const char *what, Recd__V1__NamedCount *const *cells, size_t n) {
    printf("%s:", what);
    for (size_t i = 0; i < n; i++)
        printf("%s %s %u", i ? "," : "", cells[i]->name, cells[i]->members);
    printf("\n");
}

static void show_members(const ProtobufCMessage *msg, int json) {
    const Recd__V1__MemberOverview *r = (const Recd__V1__MemberOverview *)msg;
    if (json) {
        print_pbjson(msg);
        return;
    }
    printf("model %s  %u members with a churn score\n", r->model_version, r->members);
    show_named_counts("risk bands", r->risk_bands, r->n_risk_bands);
    show_named_counts("segments", r->segments, r->n_segments);
    show_named_counts("tiers", r->tiers, r->n_tiers);
    printf("churn probability  members\n");
    for (size_t b = 0; b < r->n_churn_histogram; b++)
        printf("  %.1f-%.1f  %8u\n", (double)b / r->n_churn_histogram,
               (double)(b + 1) / r->n_churn_histogram, r->churn_histogram[b]);
}

/* The campaign of the targets options (strings borrowed from a). */
static void campaign_request(const query_args *a, Recd__V1__CampaignTargetsRequest *rq) {
    recd__v1__campaign_targets_request__init(rq);
    rq->min_probability = a->min_prob;
    rq->max_probability = a->max_prob;
    rq->segments = a->segments;
    rq->n_segments = a->n_segments;
    rq->tiers = a->tiers;
    rq->n_tiers = a->n_tiers;
    rq->item_id = (char *)(a->item ? a->item : "");
    rq->category = (char *)(a->category ? a->category : "");
    rq->viewed_not_bought_days = a->viewed_days;
    rq->limit = a->limit;
    rq->order = (Recd__V1__TargetOrder)a->order;
}

static int q_members(client *c, const query_args *a) {
    if (a->n_pos) return 2;
    Recd__V1__CampaignTargetsRequest selection;
    campaign_request(a, &selection);
    Recd__V1__MemberOverviewRequest rq = RECD__V1__MEMBER_OVERVIEW_REQUEST__INIT;
    rq.selection = &selection;
    return run_call(c, a, "/recd.v1.Recommender/GetMemberOverview", &rq.base,
                    &recd__v1__member_overview__descriptor, show_members);
}

static int q_churn(client *c, const query_args *a) {
    if (a->n_pos != 1) return 2;
    Recd__V1__ChurnScoreRequest rq = RECD__V1__CHURN_SCORE_REQUEST__INIT;
    rq.user_id = a->pos[0];
    return run_call(c, a, "/recd.v1.Recommender/GetChurnScore", &rq.base,
                    &recd__v1__churn_score__descriptor, show_churn);
}

static void show_target(const Recd__V1__CampaignTarget *t, uint64_t rank, const query_args *a) {
    if (a->csv) {
        char row[TARGETCSV_ROW_MAX], *big = NULL;
        size_t n = targetcsv_row(t, row, sizeof row);
        if (n >= sizeof row && (big = malloc(n + 1))) targetcsv_row(t, big, n + 1);
        fputs(big ? big : row, stdout);
        free(big);
    } else if (a->json) {
        printf("{\"user_id\":");
        json_string(t->user_id);
        printf(",\"churn_probability\":%.6g,\"risk_band\":\"%s\",\"segment\":\"%s\","
               "\"tier\":\"%s\",\"monetary\":%.6g,\"affinity\":%.6g,\"expected_value\":",
               t->churn_probability, t->risk_band, t->segment, t->tier, t->monetary, t->affinity);
        json_number(t->expected_value);
        printf(",\"p_alive\":");
        json_number(t->p_alive);
        printf("}\n");
    } else {
        printf("%6llu  %-20s %6.3f  %-6s  %-17s  %-8s %12.2f %9.4f %12.2f %7.3f\n",
               (unsigned long long)rank, t->user_id, t->churn_probability, t->risk_band, t->segment,
               t->tier, t->monetary, t->affinity, t->expected_value, t->p_alive);
    }
}

static int q_targets(client *c, const query_args *a) {
    if (a->n_pos != 0) return 2;
    Recd__V1__CampaignTargetsRequest rq;
    campaign_request(a, &rq);
    size_t n = protobuf_c_message_get_packed_size(&rq.base);
    uint8_t *req = malloc(n ? n : 1);
    if (!req) return 1;
    protobuf_c_message_pack(&rq.base, req);
    client_stream *st;
    err_t e;
    /* An export of millions of members takes a while: no short deadline. */
    int rc = client_stream_open(c, "/recd.v1.Recommender/StreamCampaignTargets", req, n,
                                a->timeout > 3600 ? a->timeout : 3600, &st, &e);
    free(req);
    if (rc) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return 1;
    }
    if (a->csv)
        fputs(targetcsv_header(), stdout);
    else if (!a->json)
        printf("%6s  %-20s %6s  %-6s  %-17s  %-8s %12s %9s %12s %7s\n", "rank", "user_id", "churn",
               "risk", "segment", "tier", "monetary", "affinity", "exp. value", "p_alive");
    uint8_t *body;
    size_t len;
    uint64_t rank = 0;
    int bad = 0;
    while (!bad && client_stream_next(st, &body, &len)) {
        Recd__V1__CampaignTarget *t = recd__v1__campaign_target__unpack(NULL, len, body);
        free(body);
        if (!t) {
            fprintf(stderr, "recd: a target did not decode\n");
            bad = 1;
            break;
        }
        show_target(t, ++rank, a);
        recd__v1__campaign_target__free_unpacked(t, NULL);
    }
    client_result r;
    client_stream_close(st, &r);
    if (bad) return 1;
    if (r.status != 0) {
        fprintf(stderr, "recd: %s: %s\n", err_status_name(r.status), r.details);
        return 1;
    }
    fprintf(stderr, "targets: %llu members\n", (unsigned long long)rank);
    return 0;
}

static void show_forget(const ProtobufCMessage *msg, int json) {
    const Recd__V1__ForgetUserResponse *r = (const Recd__V1__ForgetUserResponse *)msg;
    if (json)
        printf("{\"events_deleted\":%llu}\n", (unsigned long long)r->events_deleted);
    else
        printf("forgotten; %llu events deleted\n", (unsigned long long)r->events_deleted);
}

static void show_done(const ProtobufCMessage *msg, int json) {
    (void)msg;
    puts(json ? "{}" : "done");
}

static int q_forget(client *c, const query_args *a) {
    if (a->n_pos != 1) return 2;
    Recd__V1__ForgetUserRequest rq = RECD__V1__FORGET_USER_REQUEST__INIT;
    rq.user_id = a->pos[0];
    return run_call(c, a, "/recd.v1.Recommender/ForgetUser", &rq.base,
                    &recd__v1__forget_user_response__descriptor, show_forget);
}

static int q_optout(client *c, const query_args *a) {
    if (a->n_pos != 2 || (strcmp(a->pos[1], "yes") && strcmp(a->pos[1], "no"))) return 2;
    Recd__V1__SetPersonalizationRequest rq = RECD__V1__SET_PERSONALIZATION_REQUEST__INIT;
    rq.user_id = a->pos[0];
    rq.opted_out = !strcmp(a->pos[1], "yes");
    return run_call(c, a, "/recd.v1.Recommender/SetPersonalization", &rq.base,
                    &recd__v1__set_personalization_response__descriptor, show_done);
}

static void show_feedback(const ProtobufCMessage *msg, int json) {
    /* Same shape as RecordEventsResponse: accepted, rejected {index, reason}. */
    show_events(msg, json);
}

static int q_feedback(client *c, const query_args *a) {
    if (a->n_pos != 3) return 2;
    uint32_t type = exp_feedback_of_word(a->pos[2]);
    if (!type) {
        char words[256];
        exp_feedback_words(words, sizeof words);
        fprintf(stderr, "recd: feedback type '%s' is not %s\n", a->pos[2], words);
        return 2;
    }
    Recd__V1__Feedback f = RECD__V1__FEEDBACK__INIT, *fp = &f;
    f.request_id = a->pos[0];
    f.item_id = a->pos[1];
    f.user_id = (char *)(a->user ? a->user : "");
    f.type = (Recd__V1__FeedbackType)type;
    f.timestamp_unix = a->time;
    Recd__V1__RecordFeedbackRequest rq = RECD__V1__RECORD_FEEDBACK_REQUEST__INIT;
    rq.feedback = &fp;
    rq.n_feedback = 1;
    return run_call(c, a, "/recd.v1.Recommender/RecordFeedback", &rq.base,
                    &recd__v1__record_feedback_response__descriptor, show_feedback);
}

static int q_experiment(client *c, const query_args *a) {
    if (a->n_pos != 0) return 2;
    Recd__V1__VariantShare shares[64], *ptrs[64];
    if (a->n_shares > 64) return 2;
    for (size_t i = 0; i < a->n_shares; i++) {
        char *eq = strchr(a->shares[i], '=');
        float share;
        if (!eq) return 2;
        *eq = '\0';
        if (opts_float("share", eq + 1, 0, 1, &share)) return 2;
        recd__v1__variant_share__init(&shares[i]);
        shares[i].variant = a->shares[i];
        shares[i].share = share;
        ptrs[i] = &shares[i];
    }
    Recd__V1__SetExperimentRequest rq = RECD__V1__SET_EXPERIMENT_REQUEST__INIT;
    rq.salt = (char *)(a->salt ? a->salt : "");
    rq.shares = ptrs;
    rq.n_shares = a->n_shares;
    return run_call(c, a, "/recd.v1.Recommender/SetExperiment", &rq.base,
                    &recd__v1__set_experiment_response__descriptor, show_done);
}

static const struct {
    const char *name;
    query_fn run;
} actions[] = {{"feedback", q_feedback},   {"experiment", q_experiment},
               {"forget", q_forget},       {"optout", q_optout},
               {"churn", q_churn},         {"targets", q_targets},
               {"recommend", q_recommend}, {"similar", q_similar},
               {"rerank", q_rerank},       {"event", q_event},
               {"available", q_available}, {"boost", q_boost},
               {"info", q_info},           {"health", q_health},
               {"items", q_items},         {"churn-model", q_churn_model},
               {"upsert", q_upsert},       {"members", q_members}};

/* Parses argv into *a (lists allocated here: caller frees a->exclude and
 * a->context). Returns 0, -1 after --help, or 2 on a usage error. */
static int parse_args(int argc, char **argv, query_args *a) {
    static const struct option longopts[] = {
        {"server", required_argument, 0, OPT_SERVER},
        {"json", no_argument, 0, OPT_JSON},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"exclude", required_argument, 0, OPT_EXCLUDE},
        {"include-purchased", no_argument, 0, OPT_INCLUDE_PURCHASED},
        {"mode", required_argument, 0, OPT_MODE},
        {"context", required_argument, 0, OPT_CONTEXT},
        {"diversity", required_argument, 0, OPT_DIVERSITY},
        {"category", required_argument, 0, OPT_CATEGORY},
        {"quantity", required_argument, 0, OPT_QUANTITY},
        {"price", required_argument, 0, OPT_PRICE},
        {"time", required_argument, 0, OPT_TIME},
        {"repeat", required_argument, 0, OPT_REPEAT},
        {"min-prob", required_argument, 0, OPT_MIN_PROB},
        {"max-prob", required_argument, 0, OPT_MAX_PROB},
        {"segment", required_argument, 0, OPT_SEGMENT},
        {"tier", required_argument, 0, OPT_TIER},
        {"item", required_argument, 0, OPT_ITEM},
        {"viewed-days", required_argument, 0, OPT_VIEWED_DAYS},
        {"limit", required_argument, 0, OPT_LIMIT},
        {"order", required_argument, 0, OPT_ORDER},
        {"csv", no_argument, 0, OPT_CSV},
        {"tls-ca", required_argument, 0, OPT_TLS_CA},
        {"tls-cert", required_argument, 0, OPT_TLS_CERT},
        {"tls-key", required_argument, 0, OPT_TLS_KEY},
        {"token-file", required_argument, 0, OPT_TOKEN_FILE},
        {"user", required_argument, 0, OPT_USER},
        {"salt", required_argument, 0, OPT_SALT},
        {"share", required_argument, 0, OPT_SHARE},
        {"together", no_argument, 0, OPT_TOGETHER},
        {"label", required_argument, 0, OPT_LABEL},
        {"new-days", required_argument, 0, OPT_NEW_DAYS},
        {"title", required_argument, 0, OPT_TITLE},
        {"explain", no_argument, 0, OPT_EXPLAIN},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->server = "127.0.0.1:50051";
    a->timeout = 5.0f;
    a->k = 10;
    a->exclude = calloc((size_t)argc, sizeof *a->exclude);
    a->context = calloc((size_t)argc, sizeof *a->context);
    a->segments = calloc((size_t)argc, sizeof *a->segments);
    a->tiers = calloc((size_t)argc, sizeof *a->tiers);
    a->shares = calloc((size_t)argc, sizeof *a->shares);
    a->labels = calloc((size_t)argc, sizeof *a->labels);
    if (!a->exclude || !a->context || !a->segments || !a->tiers || !a->shares || !a->labels)
        return 2;
    int opt;
    float f;
    uint64_t u;
    while ((opt = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_SERVER:
            a->server = optarg;
            break;
        case OPT_JSON:
            a->json = 1;
            break;
        case OPT_TIMEOUT:
            if (opts_float("timeout", optarg, 0.001, 3600, &a->timeout)) return 2;
            break;
        case OPT_EXCLUDE:
            a->exclude[a->n_exclude++] = optarg;
            break;
        case OPT_INCLUDE_PURCHASED:
            a->include_purchased = 1;
            break;
        case OPT_MODE: {
            /* A word of the core's table, or a number passed through, so
             * that the server's message on a bad one is what the user sees. */
            char *end;
            long v = strtol(optarg, &end, 10);
            a->mode = core_mode_of_word(optarg);
            if (a->mode < 0 && (*optarg && !*end && v >= INT32_MIN && v <= INT32_MAX))
                a->mode = (int32_t)v;
            else if (a->mode < 0) {
                fprintf(stderr,
                        "recd: --mode: '%s' is not default, buy-again, new-arrivals, "
                        "trending or a number\n",
                        optarg);
                return 2;
            }
            break;
        }
        case OPT_TOGETHER:
            a->together = 1;
            break;
        case OPT_EXPLAIN:
            a->explain = 1;
            break;
        case OPT_CONTEXT:
            a->context[a->n_context++] = optarg;
            break;
        /* The server owns the limits of k, diversity, quantity and price:
         * pass them through so that its message is what the user sees. */
        case OPT_DIVERSITY:
            if (opts_float("diversity", optarg, -1e9, 1e9, &a->diversity)) return 2;
            break;
        case OPT_CATEGORY:
            a->category = optarg;
            break;
        case OPT_QUANTITY:
            if (opts_u32("quantity", optarg, 0, UINT32_MAX, &a->quantity)) return 2;
            break;
        case OPT_PRICE:
            if (opts_float("price", optarg, -1e12, 1e12, &f)) return 2;
            a->price = f;
            break;
        case OPT_TIME:
            if (opts_u64("time", optarg, 0, INT64_MAX, &u)) return 2;
            a->time = (int64_t)u;
            break;
        case OPT_MIN_PROB:
            if (opts_float("min-prob", optarg, -1e9, 1e9, &a->min_prob)) return 2;
            break;
        case OPT_MAX_PROB:
            if (opts_float("max-prob", optarg, -1e9, 1e9, &a->max_prob)) return 2;
            break;
        case OPT_SEGMENT:
            a->segments[a->n_segments++] = optarg;
            break;
        case OPT_TIER:
            a->tiers[a->n_tiers++] = optarg;
            break;
        case OPT_ITEM:
            a->item = optarg;
            break;
        case OPT_VIEWED_DAYS:
            if (opts_u32("viewed-days", optarg, 1, 36500, &a->viewed_days)) return 2;
            break;
        case OPT_LIMIT:
            if (opts_u32("limit", optarg, 0, UINT32_MAX, &a->limit)) return 2;
            break;
        case OPT_ORDER:
            a->order = !strcmp(optarg, "probability") ? RECD__V1__TARGET_ORDER__BY_CHURN_PROBABILITY
                       : !strcmp(optarg, "value")     ? RECD__V1__TARGET_ORDER__BY_VALUE
                       : !strcmp(optarg, "affinity")  ? RECD__V1__TARGET_ORDER__BY_AFFINITY
                       : !strcmp(optarg, "expected-value")
                           ? RECD__V1__TARGET_ORDER__BY_EXPECTED_VALUE
                           : -1;
            if (a->order < 0) {
                fprintf(stderr,
                        "recd: --order is probability, value, affinity or expected-value, not "
                        "'%s'\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_CSV:
            a->csv = 1;
            break;
        case OPT_TLS_CA:
            a->tls_ca = optarg;
            break;
        case OPT_TLS_CERT:
            a->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            a->tls_key = optarg;
            break;
        case OPT_TOKEN_FILE:
            a->token_file = optarg;
            break;
        case OPT_USER:
            a->user = optarg;
            break;
        case OPT_LABEL:
            a->labels[a->n_labels++] = optarg;
            break;
        case OPT_TITLE:
            a->title = optarg;
            break;
        case OPT_NEW_DAYS:
            if (opts_u32("new-days", optarg, 0, UINT32_MAX, &a->new_days)) return 2;
            break;
        case OPT_SALT:
            a->salt = optarg;
            break;
        case OPT_SHARE:
            a->shares[a->n_shares++] = optarg;
            break;
        case OPT_REPEAT:
            if (opts_u32("repeat", optarg, 1, 10000000, &a->repeat)) return 2;
            break;
        case 'k':
            if (opts_u32("k", optarg, 0, UINT32_MAX, &a->k)) return 2;
            break;
        case 'h':
            fputs(query_usage, stdout);
            return -1;
        default:
            fputs(query_usage, stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fputs(query_usage, stderr);
        return 2;
    }
    a->pos = argv + optind + 1;
    a->n_pos = (size_t)(argc - optind - 1);
    return 0;
}

int cmd_query(int argc, char **argv) {
    query_args a;
    int status = parse_args(argc, argv, &a);
    if (status) {
        free(a.exclude);
        free(a.context);
        free(a.segments);
        free(a.tiers);
        free(a.shares);
        free(a.labels);
        return status < 0 ? 0 : status;
    }
    const char *action = a.pos[-1];
    query_fn run = NULL;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (!strcmp(action, actions[i].name)) run = actions[i].run;
    client *c = NULL;
    err_t e;
    client_options co = {0};
    char *ca = NULL, *cert = NULL, *key = NULL, *token = NULL;
    int unreadable = (a.tls_ca && !(ca = opts_read_file("tls-ca", a.tls_ca, 0))) ||
                     (a.tls_cert && !(cert = opts_read_file("tls-cert", a.tls_cert, 0))) ||
                     (a.tls_key && !(key = opts_read_file("tls-key", a.tls_key, 0))) ||
                     (a.token_file && !(token = opts_read_file("token-file", a.token_file, 1)));
    co.ca = ca;
    co.cert = cert;
    co.key = key;
    co.token = token;
    /* The actions about one member name it first: the balancer of a
     * cluster sends the member's calls to one replica by this header. */
    static const char *const member_actions[] = {"recommend", "rerank", "event",
                                                 "churn",     "forget", "optout"};
    for (size_t i = 0; i < sizeof member_actions / sizeof member_actions[0]; i++)
        if (!strcmp(action, member_actions[i]) && a.n_pos >= 1) co.user = a.pos[0];
    if (unreadable) {
        status = 2;
    } else if (!run) {
        fprintf(stderr, "recd: unknown query action '%s'\n", action);
        status = 2;
    } else if (client_open(a.server, &co, &c, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        status = 1;
    } else if ((status = run(c, &a)) == 2) {
        fprintf(stderr, "recd: bad arguments for '%s'\n%s", action, query_usage);
    }
    client_close(c);
    free(ca);
    free(cert);
    free(key);
    free(token);
    free(a.exclude);
    free(a.context);
    free(a.segments);
    free(a.tiers);
    free(a.shares);
    free(a.labels);
    return status;
}
