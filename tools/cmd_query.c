#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "cmd.h"
#include "grpc/health/v1/health.pb-c.h"
#include "opts.h"
#include "recd/v1/recommender.pb-c.h"

static const char query_usage[] =
    "usage: recd query [--server ADDR] [--json] [--timeout S] ACTION ...\n"
    "Calls a running recd server (gRPC) and prints the answer as a table or JSON.\n"
    "  recommend USER [-k N] [--exclude ITEM]... [--include-purchased]\n"
    "                     top-k items for USER (unknown users get the most popular)\n"
    "  similar ITEM [-k N] items most similar to ITEM\n"
    "  info               the served model's metadata\n"
    "  health             grpc.health.v1.Health/Check\n"
    "Options:\n"
    "  --server ADDR      server address (default 127.0.0.1:50051)\n"
    "  --json             print JSON instead of a table\n"
    "  --timeout S        deadline in seconds (default 5)\n"
    "  -k N               number of items (default 10)\n";

static const char *const status_names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

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

static void print_items(Recd__V1__ScoredItem **items, size_t n, const char *version,
                        const char *strategy, int json) {
    if (json) {
        printf("{\"model_version\":");
        json_string(version);
        if (strategy) printf(",\"strategy\":\"%s\"", strategy);
        printf(",\"items\":[");
        for (size_t i = 0; i < n; i++) {
            printf(i ? ",{\"item_id\":" : "{\"item_id\":");
            json_string(items[i]->item_id);
            printf(",\"score\":%.6g}", items[i]->score);
        }
        printf("]}\n");
        return;
    }
    printf("model %s", version);
    if (strategy) printf("  strategy %s", strategy);
    printf("\n%4s  %-24s %10s\n", "rank", "item_id", "score");
    for (size_t i = 0; i < n; i++)
        printf("%4zu  %-24s %10.4f\n", i + 1, items[i]->item_id, items[i]->score);
}

static void print_info(const Recd__V1__ModelInfo *m, int json) {
    char when[32];
    time_t t = (time_t)m->trained_at_unix;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    if (json) {
        printf("{\"model_version\":");
        json_string(m->model_version);
        printf(",\"format_version\":%u,\"factors\":%u,\"users\":%u,\"items\":%u,"
               "\"interactions\":%llu,\"iterations\":%u,\"regularization\":%g,\"alpha\":%g,"
               "\"trained_at_unix\":%lld,\"source_fingerprint\":",
               m->format_version, m->factors, m->users, m->items,
               (unsigned long long)m->interactions, m->iterations, m->regularization, m->alpha,
               (long long)m->trained_at_unix);
        json_string(m->source_fingerprint);
        printf("}\n");
        return;
    }
    printf("model_version       %s\nformat_version      %u\nfactors             %u\n"
           "users               %u\nitems               %u\ninteractions        %llu\n"
           "iterations          %u\nregularization      %g\nalpha               %g\n"
           "trained_at          %s\nsource_fingerprint  %s\n",
           m->model_version, m->format_version, m->factors, m->users, m->items,
           (unsigned long long)m->interactions, m->iterations, m->regularization, m->alpha, when,
           m->source_fingerprint);
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
        const char *name =
            r.status > 0 && r.status < (int)(sizeof status_names / sizeof *status_names)
                ? status_names[r.status]
                : "UNKNOWN";
        fprintf(stderr, "recd: %s: %s\n", name, r.details);
        free(r.body);
        return NULL;
    }
    *len = r.len;
    return r.body;
}

enum { OPT_SERVER = OPT_FIRST_FREE, OPT_JSON, OPT_TIMEOUT, OPT_EXCLUDE, OPT_INCLUDE_PURCHASED };

int cmd_query(int argc, char **argv) {
    static const struct option longopts[] = {
        {"server", required_argument, 0, OPT_SERVER},
        {"json", no_argument, 0, OPT_JSON},
        {"timeout", required_argument, 0, OPT_TIMEOUT},
        {"exclude", required_argument, 0, OPT_EXCLUDE},
        {"include-purchased", no_argument, 0, OPT_INCLUDE_PURCHASED},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *server = "127.0.0.1:50051";
    int json = 0, include_purchased = 0;
    float timeout = 5.0f;
    uint32_t k = 10;
    char **exclude = calloc((size_t)argc, sizeof *exclude);
    size_t n_exclude = 0;
    int opt, status = 2;
    if (!exclude) return 1;
    while ((opt = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_SERVER:
            server = optarg;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_TIMEOUT:
            if (opts_float("timeout", optarg, 0.001, 3600, &timeout)) goto out;
            break;
        case OPT_EXCLUDE:
            exclude[n_exclude++] = optarg;
            break;
        case OPT_INCLUDE_PURCHASED:
            include_purchased = 1;
            break;
        case 'k':
            /* The server owns the limits on k; pass it through unchecked. */
            if (opts_u32("k", optarg, 0, UINT32_MAX, &k)) goto out;
            break;
        case 'h':
            fputs(query_usage, stdout);
            status = 0;
            goto out;
        default:
            fputs(query_usage, stderr);
            goto out;
        }
    }
    int rest = argc - optind;
    const char *action = rest > 0 ? argv[optind] : NULL;
    const char *id = rest > 1 ? argv[optind + 1] : NULL;
    int needs_id = action && (!strcmp(action, "recommend") || !strcmp(action, "similar"));
    if (!action || rest != (needs_id ? 2 : 1)) {
        fputs(query_usage, stderr);
        goto out;
    }
    client *c;
    err_t e;
    if (client_open(server, &c, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        status = 1;
        goto out;
    }
    size_t len;
    uint8_t *body = NULL;
    status = 1;
    if (!strcmp(action, "recommend")) {
        Recd__V1__RecommendRequest rq = RECD__V1__RECOMMEND_REQUEST__INIT;
        rq.user_id = (char *)id;
        rq.k = k;
        rq.exclude_item_ids = exclude;
        rq.n_exclude_item_ids = n_exclude;
        rq.include_purchased = include_purchased;
        body = call(c, "/recd.v1.Recommender/Recommend", &rq.base, timeout, &len);
        Recd__V1__RecommendResponse *r =
            body ? recd__v1__recommend_response__unpack(NULL, len, body) : NULL;
        if (r) {
            print_items(r->items, r->n_items, r->model_version, strategy_name(r->strategy), json);
            recd__v1__recommend_response__free_unpacked(r, NULL);
            status = 0;
        } else if (body) {
            fprintf(stderr, "recd: the server's answer did not decode\n");
        }
    } else if (!strcmp(action, "similar")) {
        Recd__V1__SimilarItemsRequest rq = RECD__V1__SIMILAR_ITEMS_REQUEST__INIT;
        rq.item_id = (char *)id;
        rq.k = k;
        body = call(c, "/recd.v1.Recommender/SimilarItems", &rq.base, timeout, &len);
        Recd__V1__SimilarItemsResponse *r =
            body ? recd__v1__similar_items_response__unpack(NULL, len, body) : NULL;
        if (r) {
            print_items(r->items, r->n_items, r->model_version, NULL, json);
            recd__v1__similar_items_response__free_unpacked(r, NULL);
            status = 0;
        } else if (body) {
            fprintf(stderr, "recd: the server's answer did not decode\n");
        }
    } else if (!strcmp(action, "info")) {
        Recd__V1__GetModelInfoRequest rq = RECD__V1__GET_MODEL_INFO_REQUEST__INIT;
        body = call(c, "/recd.v1.Recommender/GetModelInfo", &rq.base, timeout, &len);
        Recd__V1__ModelInfo *r = body ? recd__v1__model_info__unpack(NULL, len, body) : NULL;
        if (r) {
            print_info(r, json);
            recd__v1__model_info__free_unpacked(r, NULL);
            status = 0;
        } else if (body) {
            fprintf(stderr, "recd: the server's answer did not decode\n");
        }
    } else if (!strcmp(action, "health")) {
        Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        body = call(c, "/grpc.health.v1.Health/Check", &rq.base, timeout, &len);
        Grpc__Health__V1__HealthCheckResponse *r =
            body ? grpc__health__v1__health_check_response__unpack(NULL, len, body) : NULL;
        if (r) {
            const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
                &grpc__health__v1__health_check_response__serving_status__descriptor, r->status);
            const char *name = v ? v->name : "UNKNOWN";
            if (json)
                printf("{\"status\":\"%s\"}\n", name);
            else
                printf("%s\n", name);
            status = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                         ? 0
                         : 1;
            grpc__health__v1__health_check_response__free_unpacked(r, NULL);
        }
    } else {
        fprintf(stderr, "recd: unknown query action '%s'\n", action);
        status = 2;
    }
    free(body);
    client_close(c);
out:
    free(exclude);
    return status;
}
