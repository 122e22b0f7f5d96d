/* Writes the seed corpora of the fuzz targets (run at build time):
 *   fuzz_seeds DIR   ->  DIR/svc, DIR/ingest, DIR/model, DIR/reflect, DIR/pbjson
 * Seeds are valid inputs that reach deep: one request per method (and a
 * few variants) for fuzz_svc, small CSV files in every dialect fuzz_ingest
 * picks, corruption recipes for fuzz_model, and one reflection request of
 * each kind for fuzz_reflect, and the JSON of every svc seed for
 * fuzz_pbjson. Generated rather than
 * committed so that they follow the .proto and the method table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_fixture.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "log.h"
#include "pbjson.h"
#include "recd/v1/recommender.pb-c.h"
#include "svc.h"

static const char *out_dir;
static int n_written;

static void write_seed(const char *target, const uint8_t *head, size_t head_len, const void *body,
                       size_t len) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/seed-%03d", out_dir, target, n_written++);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(head, 1, head_len, f) != head_len || fwrite(body, 1, len, f) != len ||
        fclose(f)) {
        fprintf(stderr, "fuzz_seeds: cannot write %s\n", path);
        exit(1);
    }
}

/* A fuzz_pbjson seed: the selector byte of the request of method path
 * (its index in the service descriptor), then msg as JSON. */
static void pbjson_seed(const char *path, const ProtobufCMessage *msg) {
    const ProtobufCServiceDescriptor *sd = &recd__v1__recommender__descriptor;
    const char *name = strrchr(path, '/') + 1;
    for (unsigned i = 0; i < sd->n_methods; i++) {
        if (strcmp(sd->methods[i].name, name)) continue;
        char *json;
        size_t len;
        err_t e;
        if (pbjson_encode(msg, &json, &len, &e)) {
            fprintf(stderr, "fuzz_seeds: %s\n", e.msg);
            exit(1);
        }
        uint8_t head = (uint8_t)i;
        write_seed("pbjson", &head, 1, json, len);
        free(json);
        return;
    }
}

/* A fuzz_svc seed: the selector byte of path, then msg packed. */
static void svc_seed(const rpc_method *methods, size_t n, const char *path, unsigned give_up,
                     const ProtobufCMessage *msg) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(methods[i].path, path)) continue;
        uint8_t head = (uint8_t)(i + n * give_up);
        uint8_t buf[4096];
        size_t len = protobuf_c_message_pack(msg, buf);
        write_seed("svc", &head, 1, buf, len);
        pbjson_seed(path, msg);
        return;
    }
    fprintf(stderr, "fuzz_seeds: no method %s\n", path);
    exit(1);
}

static void svc_seeds(void) {
    char root[PATH_MAX], model_dir[PATH_MAX + 8];
    fuzz_scratch_dir("fuzz-seeds", root);
    snprintf(model_dir, sizeof model_dir, "%s/model", root);
    model_meta meta;
    fuzz_publish_model(model_dir, &meta);
    core_options o;
    core_options_init(&o);
    o.model_dir = model_dir;
    o.reload_interval_s = 0;
    core *c;
    svc *s;
    err_t e = {0};
    if (core_open(&o, &c, &e) || svc_open(c, &s, &e)) {
        fprintf(stderr, "fuzz_seeds: %s\n", e.msg);
        exit(1);
    }
    size_t n;
    const rpc_method *m = svc_methods(s, &n);
    /* An empty request for every method, also those added after this file;
     * then requests that get past validation. */
    for (size_t i = 0; i < n; i++) {
        uint8_t head = (uint8_t)i;
        write_seed("svc", &head, 1, "", 0);
    }

    char *ctx[] = {"i4", "i7"}, *excl[] = {"i1"}, *cands[] = {"i1", "i2", "zz"};
    Recd__V1__RecommendRequest rec = RECD__V1__RECOMMEND_REQUEST__INIT;
    rec.user_id = "u3";
    rec.k = 5;
    svc_seed(m, n, "/recd.v1.Recommender/Recommend", 0, &rec.base);
    rec.user_id = "u2";
    rec.n_context_item_ids = 1;
    rec.context_item_ids = ctx;
    rec.n_exclude_item_ids = 1;
    rec.exclude_item_ids = excl;
    rec.diversity = 0.5f;
    rec.category = "toys";
    rec.include_purchased = 1;
    svc_seed(m, n, "/recd.v1.Recommender/Recommend", 0, &rec.base);
    Recd__V1__RecommendRequest session = RECD__V1__RECOMMEND_REQUEST__INIT;
    session.k = 10;
    session.n_context_item_ids = 2;
    session.context_item_ids = ctx;
    svc_seed(m, n, "/recd.v1.Recommender/Recommend", 0, &session.base);

    Recd__V1__SimilarItemsRequest sim = RECD__V1__SIMILAR_ITEMS_REQUEST__INIT;
    sim.item_id = "i3";
    sim.k = 5;
    sim.n_item_ids = 2;
    sim.item_ids = ctx;
    svc_seed(m, n, "/recd.v1.Recommender/SimilarItems", 0, &sim.base);

    Recd__V1__GetModelInfoRequest info = RECD__V1__GET_MODEL_INFO_REQUEST__INIT;
    svc_seed(m, n, "/recd.v1.Recommender/GetModelInfo", 0, &info.base);

    Recd__V1__Event ev[2] = {RECD__V1__EVENT__INIT, RECD__V1__EVENT__INIT},
                    *evp[2] = {&ev[0], &ev[1]};
    ev[0].user_id = "u3";
    ev[0].item_id = "i9";
    ev[0].type = RECD__V1__EVENT_TYPE__PURCHASE;
    ev[0].quantity = 2;
    ev[0].price = 9.99;
    ev[1].user_id = "new-visitor";
    ev[1].item_id = "i2";
    ev[1].type = RECD__V1__EVENT_TYPE__VIEW;
    ev[1].timestamp_unix = 1700000100;
    Recd__V1__RecordEventsRequest events = RECD__V1__RECORD_EVENTS_REQUEST__INIT;
    events.n_events = 2;
    events.events = evp;
    svc_seed(m, n, "/recd.v1.Recommender/RecordEvents", 0, &events.base);

    Recd__V1__ItemAvailability av = RECD__V1__ITEM_AVAILABILITY__INIT, *avp = &av;
    av.item_id = "i5";
    Recd__V1__SetItemAvailabilityRequest avail = RECD__V1__SET_ITEM_AVAILABILITY_REQUEST__INIT;
    avail.n_items = 1;
    avail.items = &avp;
    svc_seed(m, n, "/recd.v1.Recommender/SetItemAvailability", 0, &avail.base);

    Recd__V1__ItemBoost bo = RECD__V1__ITEM_BOOST__INIT, *bop = &bo;
    bo.item_id = "i6";
    bo.multiplier = 2.5f;
    Recd__V1__SetItemBoostsRequest boosts = RECD__V1__SET_ITEM_BOOSTS_REQUEST__INIT;
    boosts.n_boosts = 1;
    boosts.boosts = &bop;
    svc_seed(m, n, "/recd.v1.Recommender/SetItemBoosts", 0, &boosts.base);

    Recd__V1__RerankRequest rr = RECD__V1__RERANK_REQUEST__INIT;
    rr.user_id = "u3";
    rr.n_candidate_item_ids = 3;
    rr.candidate_item_ids = cands;
    svc_seed(m, n, "/recd.v1.Recommender/Rerank", 0, &rr.base);

    Recd__V1__ChurnScoreRequest churn = RECD__V1__CHURN_SCORE_REQUEST__INIT;
    churn.user_id = "u4";
    svc_seed(m, n, "/recd.v1.Recommender/GetChurnScore", 0, &churn.base);

    char *segments[] = {"at-risk", "dormant"}, *tiers[] = {"gold"};
    Recd__V1__CampaignTargetsRequest ct = RECD__V1__CAMPAIGN_TARGETS_REQUEST__INIT;
    ct.min_probability = 0.2f;
    ct.n_segments = 2;
    ct.segments = segments;
    ct.item_id = "i3";
    ct.order = RECD__V1__TARGET_ORDER__BY_AFFINITY;
    ct.limit = 5;
    svc_seed(m, n, "/recd.v1.Recommender/StreamCampaignTargets", 0, &ct.base);
    Recd__V1__CampaignTargetsRequest ct2 = RECD__V1__CAMPAIGN_TARGETS_REQUEST__INIT;
    ct2.n_tiers = 1;
    ct2.tiers = tiers;
    ct2.category = "tools";
    ct2.viewed_not_bought_days = 7;
    ct2.order = RECD__V1__TARGET_ORDER__BY_VALUE;
    svc_seed(m, n, "/recd.v1.Recommender/StreamCampaignTargets", 2, &ct2.base);

    Grpc__Health__V1__HealthCheckRequest hc = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    hc.service = "recd.v1.Recommender";
    svc_seed(m, n, "/grpc.health.v1.Health/Check", 0, &hc.base);
    svc_close(s);
    core_close(c);
}

static void ingest_seeds(void) {
    static const struct {
        uint8_t how;
        const char *csv;
    } seeds[] = {
        {0, "user_id,item_id,timestamp,quantity,price,category\n"
            "u1,i1,1700000000,2,9.99,toys\n"
            "u2,i1,2011-12-09T12:50:00+01:00,1,,tools\n"
            "\"u,3\",\"i\"\"2\",2011-12-09 12:50:00Z,-1,3,\n"
            "u4,,1700000000,1,1,x\n"},
        {1 | 32, "\xEF\xBB\xBFuser_id;item_id;timestamp;category\r\nu1;i1;1700000000.5;food\r\n"},
        {2 | 4, "user_id\titem_id\ttimestamp\tprice\n'u\t1'\ti1\t2011-01-01T00:00\t1e3\n"},
        {16 | 8, "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
                 "536365,85123A,WHITE HANGING,6,12/1/2010 8:26,2.55,17850\n"
                 "C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527\n"},
        {3 | 64, "item_id|user_id|timestamp\ni9|\xc3\xa9l\xc3\xa8ve|1\n"},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        write_seed("ingest", &seeds[i].how, 1, seeds[i].csv, strlen(seeds[i].csv));
}

static void model_seeds(void) {
    /* The file as published; a value patch (key 5, offset 0, 4 bytes); a
     * truncation. */
    static const uint8_t as_is[] = {0};
    static const uint8_t value[] = {0, 5, 0, 0, 4, 0xff, 0xff, 0xff, 0x7f};
    static const uint8_t truncate[] = {1, 0, 0x40, 0};
    const uint8_t *seeds[] = {as_is, value, truncate};
    size_t lens[] = {sizeof as_is, sizeof value, sizeof truncate};
    for (size_t i = 0; i < 3; i++)
        write_seed("model", seeds[i], lens[i], "", 0);
}

static void reflect_seeds(void) {
    Grpc__Reflection__V1__ExtensionRequest x = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    x.containing_type = "recd.v1.RecommendRequest";
    x.extension_number = 100;
    const struct {
        Grpc__Reflection__V1__ServerReflectionRequest__MessageRequestCase kind;
        const char *text;
    } seeds[] = {
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES, ""},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME,
         "recd/v1/recommender.proto"},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL,
         "recd.v1.Recommender.Recommend"},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL,
         "grpc.health.v1.HealthCheckResponse.SERVING"},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE,
         "recd.v1.RecommendRequest"},
        {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION,
         NULL},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        Grpc__Reflection__V1__ServerReflectionRequest q =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
        q.host = "localhost";
        q.message_request_case = seeds[i].kind;
        if (seeds[i].text)
            q.list_services = (char *)seeds[i].text; /* every string case shares the union */
        else
            q.file_containing_extension = &x;
        uint8_t buf[512];
        size_t len = protobuf_c_message_pack(&q.base, buf);
        write_seed("reflect", buf, len, "", 0);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    log_set_level(LOG_ERROR);
    out_dir = argv[1];
    const char *targets[] = {"", "/svc", "/ingest", "/model", "/reflect", "/pbjson"};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s%s", out_dir, targets[i]);
        mkdir(path, 0755);
    }
    svc_seeds();
    ingest_seeds();
    model_seeds();
    reflect_seeds();
    return 0;
}
