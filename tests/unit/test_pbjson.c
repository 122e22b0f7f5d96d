/* Unit tests of pbjson, the proto3 JSON codec over protobuf-c descriptors:
 * every scalar kind, enums, nested and repeated messages, the defaults left
 * out, and what it refuses. The messages are recd's own (recommender.proto)
 * and, for the kinds recd does not use (bytes, oneof, sint, fixed),
 * descriptor.proto's and reflection's. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "pbjson.h"
#include "recd/v1/recommender.pb-c.h"
#include "targetcsv.h"

/* The JSON of m, which the test frees. */
static char *encode(const ProtobufCMessage *m) {
    char *out;
    size_t len;
    err_t e;
    cr_assert_eq(pbjson_encode(m, &out, &len, &e), ERR_OK, "%s", e.msg);
    cr_assert_eq(strlen(out), len);
    return out;
}

static ProtobufCMessage *decode(const ProtobufCMessageDescriptor *d, const char *json) {
    ProtobufCMessage *m = NULL;
    err_t e;
    cr_assert_eq(pbjson_decode(d, json, strlen(json), &m, &e), ERR_OK, "%s: %s", json, e.msg);
    return m;
}

/* Refused with ERR_INVALID and a message that holds words. */
static void refused(const ProtobufCMessageDescriptor *d, const char *json, const char *words) {
    ProtobufCMessage *m = NULL;
    err_t e = {0};
    cr_assert_eq(pbjson_decode(d, json, strlen(json), &m, &e), ERR_INVALID, "%s", json);
    cr_assert_null(m);
    cr_assert(strstr(e.msg, words), "%s: '%s' lacks '%s'", json, e.msg, words);
}

Test(pbjson, names_are_lower_camel_case) {
    char name[PBJSON_MAX_NAME];
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
        &recd__v1__recommend_request__descriptor, "exclude_item_ids");
    pbjson_field_name(f, name, sizeof name);
    cr_assert_str_eq(name, "excludeItemIds");
    pbjson_field_name(f, name, 5);
    cr_assert_str_eq(name, "excl");
}

Test(pbjson, a_response_is_written_as_protobufs_printers_write_it) {
    Recd__V1__ScoredItem a = RECD__V1__SCORED_ITEM__INIT, b = RECD__V1__SCORED_ITEM__INIT;
    a.item_id = "i1";
    a.score = 0.1f;
    b.item_id = "i\"2\n";
    b.score = 0; /* the default: left out */
    Recd__V1__ScoredItem *items[] = {&a, &b};
    Recd__V1__RecommendResponse r = RECD__V1__RECOMMEND_RESPONSE__INIT;
    r.items = items;
    r.n_items = 2;
    r.strategy = RECD__V1__STRATEGY__POPULAR;
    r.model_version = "v/1";
    char *json = encode(&r.base);
    cr_assert_str_eq(json,
                     "{\"items\":[{\"itemId\":\"i1\",\"score\":0.1},{\"itemId\":\"i\\\"2\\n\"}],"
                     "\"modelVersion\":\"v/1\",\"strategy\":\"POPULAR\"}");
    free(json);
}

Test(pbjson, sixty_four_bit_integers_are_strings_and_floats_shortest) {
    Recd__V1__ModelInfo info = RECD__V1__MODEL_INFO__INIT;
    info.trained_at_unix = -1234567890123LL;
    info.interactions = UINT64_MAX;
    info.regularization = 1.0f / 3.0f;
    info.alpha = 40;
    char *json = encode(&info.base);
    cr_assert(strstr(json, "\"trainedAtUnix\":\"-1234567890123\""), "%s", json);
    cr_assert(strstr(json, "\"interactions\":\"18446744073709551615\""), "%s", json);
    cr_assert(strstr(json, "\"regularization\":0.33333334"), "%s", json);
    cr_assert(strstr(json, "\"alpha\":40"), "%s", json);
    free(json);
}

Test(pbjson, nan_and_infinity_are_strings_both_ways) {
    Recd__V1__ChurnScore c = RECD__V1__CHURN_SCORE__INIT;
    c.p_alive = NAN;
    c.expected_value = -INFINITY;
    c.expected_orders = INFINITY;
    char *json = encode(&c.base);
    cr_assert(strstr(json, "\"pAlive\":\"NaN\""), "%s", json);
    cr_assert(strstr(json, "\"expectedValue\":\"-Infinity\""), "%s", json);
    cr_assert(strstr(json, "\"expectedOrders\":\"Infinity\""), "%s", json);
    Recd__V1__ChurnScore *back =
        (Recd__V1__ChurnScore *)decode(&recd__v1__churn_score__descriptor, json);
    cr_assert(isnan(back->p_alive) && isinf(back->expected_value) && back->expected_value < 0);
    pbjson_free(&back->base);
    free(json);
    refused(&recd__v1__churn_score__descriptor, "{\"pAlive\": NaN}", "not JSON");
    refused(&recd__v1__churn_score__descriptor, "{\"pAlive\": 1e999}", "finite");
    refused(&recd__v1__churn_score__descriptor, "{\"pAlive\": 1e39}", "out of range of a float");
}

Test(pbjson, a_request_reads_by_either_name_and_enums_by_name_or_number) {
    Recd__V1__RecordEventsRequest *r = (Recd__V1__RecordEventsRequest *)decode(
        &recd__v1__record_events_request__descriptor,
        "{\"events\": [{\"userId\": \"u1\", \"item_id\": \"i1\", \"type\": \"ADD_TO_CART\", "
        "\"timestampUnix\": \"1700000000\", \"quantity\": 2, \"price\": 9.5},"
        " {\"user_id\": \"u2\", \"itemId\": \"i2\", \"type\": 4, \"timestamp_unix\": -5,"
        "  \"quantity\": \"3\", \"price\": \"1e2\"}, {}]}");
    cr_assert_eq(r->n_events, 3);
    cr_assert_str_eq(r->events[0]->user_id, "u1");
    cr_assert_str_eq(r->events[0]->item_id, "i1");
    cr_assert_eq(r->events[0]->type, RECD__V1__EVENT_TYPE__ADD_TO_CART);
    cr_assert_eq(r->events[0]->timestamp_unix, 1700000000);
    cr_assert_eq(r->events[0]->quantity, 2);
    cr_assert_float_eq(r->events[0]->price, 9.5, 1e-12);
    cr_assert_eq(r->events[1]->type, 4);
    cr_assert_eq(r->events[1]->timestamp_unix, -5);
    cr_assert_eq(r->events[1]->quantity, 3);
    cr_assert_float_eq(r->events[1]->price, 100, 1e-12);
    cr_assert_str_eq(r->events[2]->user_id, ""); /* defaults */
    /* Packs as protobuf-c would pack the same message built by hand. */
    uint8_t buf[256];
    size_t n = protobuf_c_message_pack(&r->base, buf);
    Recd__V1__RecordEventsRequest *u = recd__v1__record_events_request__unpack(NULL, n, buf);
    cr_assert_not_null(u);
    cr_assert_str_eq(u->events[1]->user_id, "u2");
    recd__v1__record_events_request__free_unpacked(u, NULL);
    pbjson_free(&r->base);
}

Test(pbjson, decode_then_encode_gives_the_canonical_text_back) {
    const char *in = "{\"userId\":\"u1\",\"k\":10,\"contextItemIds\":[\"a\",\"b\"],"
                     "\"excludeItemIds\":[\"c\"],\"includePurchased\":true,\"diversity\":0.25,"
                     "\"category\":\"tea\"}";
    ProtobufCMessage *m = decode(&recd__v1__recommend_request__descriptor, in);
    char *out = encode(m);
    cr_assert_str_eq(out, in);
    free(out);
    pbjson_free(m);
}

Test(pbjson, an_empty_text_is_the_empty_message) {
    ProtobufCMessage *m = decode(&recd__v1__get_model_info_request__descriptor, "  \n");
    pbjson_free(m);
}

Test(pbjson, bad_requests_are_refused_with_the_field_path) {
    const ProtobufCMessageDescriptor *d = &recd__v1__record_events_request__descriptor;
    refused(d, "{\"events\": [{}, {\"type\": \"SOLD\"}]}", "events[1].type");
    refused(d, "{\"events\": [{}, {\"type\": \"SOLD\"}]}", "SOLD is not a value of");
    refused(d, "{\"events\": [{\"quantity\": -1}]}", "negative");
    refused(d, "{\"events\": [{\"quantity\": 4294967296}]}", "out of range");
    refused(d, "{\"events\": [{\"quantity\": 1.5}]}", "not an integer");
    refused(d, "{\"events\": [{\"quantity\": \"1 \"}]}", "not an integer");
    refused(d, "{\"events\": [{\"timestampUnix\": \"9223372036854775808\"}]}", "out of range");
    /* As numbers: json-c would clamp these; the count before it refuses. */
    refused(d, "{\"events\": [{\"timestampUnix\": -9223372036854775809}]}", "64 bits");
    refused(d, "{\"events\": [{\"timestampUnix\": 18446744073709551616}]}", "64 bits");
    refused(d, "{\"events\": [{\"timestampUnix\": 123456789012345678901}]}", "64 bits");
    refused(d, "{\"events\": [{\"timestampUnix\": 9223372036854775808}]}", "out of range");
    refused(d, "{\"events\": [{\"price\": \"cheap\"}]}", "not a number");
    refused(d, "{\"events\": [{\"price\": \"0x10\"}]}", "not a number");
    refused(d, "{\"events\": [{\"userId\": [\"u\"]}]}", "expected a string");
    refused(d, "{\"events\": [{\"userId\": \"a\\u0000b\"}]}", "NUL");
    refused(d, "{\"events\": {}}", "expected an array");
    refused(d, "{\"events\": [1]}", "expected an object");
    refused(d, "{\"events\": [null]}", "null in a list");
    refused(d, "{\"events\": [{\"userId\": \"u\", \"user_id\": \"v\"}]}", "given twice");
    /* The same key twice: json-c keeps one, the text's count shows two. */
    refused(d, "{\"events\": [], \"events\": []}", "twice in one object");
    refused(d, "{\"events\": [{\"userId\": \"u\"}, {\"userId\": \"u\", \"userId\": \"v\"}]}",
            "events[1]: a key appears twice");
    ProtobufCMessage *fine = decode(
        d, "{\"events\": [{\"userId\": \"a:b{\\\"\", \"itemId\": \"}:[\"}, {}, {\"type\": 1}]}");
    pbjson_free(fine);
    refused(d, "{\"events\": [{\"userID\": \"u\"}]}", "has no field 'userID'");
    refused(d, "{\"events\": []", "invalid JSON");
    refused(d, "{\"events\": [],}", "invalid JSON");
    refused(d, "{'events': []}", "invalid JSON");
    refused(d, "{\"events\": []} {}", "invalid JSON");
    refused(d, "\"events\"", "must be a JSON object");
    refused(d, "{\"events\": [{\"userId\": \"\xc3\x28\"}]}", "invalid JSON");
    refused(&recd__v1__recommend_request__descriptor, "{\"includePurchased\": 1}", "true or false");
}

Test(pbjson, nesting_is_bounded) {
    char deep[4 * PBJSON_MAX_DEPTH + 64];
    size_t n = 0;
    for (int i = 0; i < PBJSON_MAX_DEPTH + 2; i++)
        n += (size_t)sprintf(deep + n, "[");
    for (int i = 0; i < PBJSON_MAX_DEPTH + 2; i++)
        n += (size_t)sprintf(deep + n, "]");
    char obj[sizeof deep + 32];
    snprintf(obj, sizeof obj, "{\"events\": %s}", deep);
    refused(&recd__v1__record_events_request__descriptor, obj, "invalid JSON");
}

Test(pbjson, null_is_the_default) {
    Recd__V1__RecommendRequest *r = (Recd__V1__RecommendRequest *)decode(
        &recd__v1__recommend_request__descriptor,
        "{\"userId\": null, \"k\": null, \"excludeItemIds\": null}");
    cr_assert_str_eq(r->user_id, "");
    cr_assert_eq(r->k, 0);
    cr_assert_eq(r->n_exclude_item_ids, 0);
    pbjson_free(&r->base);
}

Test(pbjson, bytes_are_base64_and_oneofs_one_field) {
    /* ServerReflectionRequest: a oneof of strings; FileDescriptorResponse:
     * repeated bytes. */
    const ProtobufCMessageDescriptor *d =
        &grpc__reflection__v1__server_reflection_request__descriptor;
    Grpc__Reflection__V1__ServerReflectionRequest *r =
        (Grpc__Reflection__V1__ServerReflectionRequest *)decode(
            d, "{\"fileByFilename\": \"a.proto\"}");
    cr_assert_eq(r->message_request_case,
                 GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME);
    cr_assert_str_eq(r->file_by_filename, "a.proto");
    char *json = encode(&r->base);
    cr_assert_str_eq(json, "{\"fileByFilename\":\"a.proto\"}");
    free(json);
    pbjson_free(&r->base);
    refused(d, "{\"fileByFilename\": \"a\", \"fileContainingSymbol\": \"b\"}", "oneof");

    const ProtobufCMessageDescriptor *fd =
        &grpc__reflection__v1__file_descriptor_response__descriptor;
    Grpc__Reflection__V1__FileDescriptorResponse *f =
        (Grpc__Reflection__V1__FileDescriptorResponse *)decode(
            fd, "{\"fileDescriptorProto\": [\"AAEC/w==\", \"_-8\", \"\"]}");
    cr_assert_eq(f->n_file_descriptor_proto, 3);
    cr_assert_eq(f->file_descriptor_proto[0].len, 4);
    cr_assert_eq(f->file_descriptor_proto[0].data[3], 0xff);
    cr_assert_eq(f->file_descriptor_proto[1].len, 2);
    cr_assert_eq(f->file_descriptor_proto[1].data[0], 0xff);
    cr_assert_eq(f->file_descriptor_proto[2].len, 0);
    json = encode(&f->base);
    cr_assert_str_eq(json, "{\"fileDescriptorProto\":[\"AAEC/w==\",\"/+8=\",\"\"]}");
    free(json);
    pbjson_free(&f->base);
    refused(fd, "{\"fileDescriptorProto\": [\"a*b=\"]}", "base64");
}

Test(pbjson, proto2_optional_fields_have_presence) {
    /* descriptor.proto is proto2: an optional int32 set to 0 is written. */
    Google__Protobuf__FieldDescriptorProto f = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
    f.has_number = 1;
    f.number = 0;
    f.name = "x_y";
    char *json = encode(&f.base);
    cr_assert_str_eq(json, "{\"name\":\"x_y\",\"number\":0}");
    free(json);
    Google__Protobuf__FieldDescriptorProto *back = (Google__Protobuf__FieldDescriptorProto *)decode(
        &google__protobuf__field_descriptor_proto__descriptor,
        "{\"number\": 7, \"label\": \"LABEL_REPEATED\", \"jsonName\": \"xY\"}");
    cr_assert(back->has_number && back->number == 7 && back->has_label);
    cr_assert_eq(back->label, GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED);
    cr_assert_str_eq(back->json_name, "xY");
    pbjson_free(&back->base);
}

Test(pbjson, query_pairs_fill_lists_and_scalars) {
    const char *names[] = {"limit", "segments", "segments", "order", "minProbability"};
    const char *values[] = {"25", "at-risk,dormant", "promising", "BY_VALUE", "0.5"};
    ProtobufCMessage *m = NULL;
    err_t e;
    cr_assert_eq(pbjson_decode_pairs(&recd__v1__campaign_targets_request__descriptor, names, values,
                                     5, &m, &e),
                 ERR_OK, "%s", e.msg);
    Recd__V1__CampaignTargetsRequest *r = (Recd__V1__CampaignTargetsRequest *)m;
    cr_assert_eq(r->limit, 25);
    cr_assert_eq(r->n_segments, 3);
    cr_assert_str_eq(r->segments[2], "promising");
    cr_assert_eq(r->order, RECD__V1__TARGET_ORDER__BY_VALUE);
    cr_assert_float_eq(r->min_probability, 0.5, 1e-6);
    pbjson_free(m);
    const char *bad[] = {"limit"}, *twice[] = {"x"};
    cr_assert_eq(
        pbjson_decode_pairs(&recd__v1__campaign_targets_request__descriptor, bad, twice, 1, &m, &e),
        ERR_INVALID);
    const char *dup[] = {"limit", "limit"}, *vals[] = {"1", "2"};
    cr_assert_eq(
        pbjson_decode_pairs(&recd__v1__campaign_targets_request__descriptor, dup, vals, 2, &m, &e),
        ERR_INVALID);
    cr_assert(strstr(e.msg, "twice"), "%s", e.msg);
}

Test(targetcsv, rows_quote_what_needs_it_and_report_their_length) {
    Recd__V1__CampaignTarget t = RECD__V1__CAMPAIGN_TARGET__INIT;
    t.user_id = "a,\"b\"";
    t.churn_probability = 0.5f;
    t.risk_band = "medium";
    t.segment = "at-risk";
    t.tier = "gold";
    t.monetary = 12.345;
    t.expected_value = 1;
    t.p_alive = 0.25f;
    char row[TARGETCSV_ROW_MAX];
    size_t n = targetcsv_row(&t, row, sizeof row);
    cr_assert_str_eq(row, "\"a,\"\"b\"\"\",0.5,medium,at-risk,gold,12.35,0,1.00,0.25\n");
    cr_assert_eq(n, strlen(row));
    char small[8];
    cr_assert_eq(targetcsv_row(&t, small, sizeof small), n);
    cr_assert_eq(strlen(small), 7);
    cr_assert_eq(targetcsv_row(&t, NULL, 0), n);
}

/* The number a one-field message's JSON holds: {"name":<text>}. */
static const char *number_of(const char *json) {
    const char *colon = strchr(json, ':');
    cr_assert_not_null(colon, "%s", json);
    return colon + 1;
}

/* Significant digits of a number's text. */
static int significant(const char *t) {
    int n = 0, started = 0, trailing = 0;
    for (; *t && *t != 'e' && *t != '}'; t++) {
        if (*t < '0' || *t > '9') continue;
        if (*t != '0') started = 1;
        if (!started) continue;
        n++;
        trailing = *t == '0' ? trailing + 1 : 0;
    }
    return n - trailing; /* "40" has one: the zeros before the point are the exponent's */
}

Test(pbjson, floats_and_doubles_are_the_shortest_text_that_reads_back) {
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t bits = (uint32_t)x;
        float f;
        memcpy(&f, &bits, sizeof f);
        double d;
        memcpy(&d, &x, sizeof d);
        if (i % 4 == 0) f = (float)(x % 100000) / 1000.0f; /* plain decimals too */
        if (!isfinite(f) || !isfinite(d)) continue;
        Recd__V1__ScoredItem s = RECD__V1__SCORED_ITEM__INIT;
        s.score = f;
        if (f == 0) continue;
        char *json = encode(&s.base);
        const char *t = number_of(json);
        cr_assert_eq(strtof(t, NULL), f, "%s for %.9g", json, (double)f);
        /* No text with fewer digits reads back. */
        int n = significant(t);
        char shorter[40];
        if (n > 1) {
            snprintf(shorter, sizeof shorter, "%.*e", n - 2, (double)f);
            cr_assert_neq(strtof(shorter, NULL), f, "%s: %s is shorter", json, shorter);
        }
        free(json);
        Recd__V1__ChurnScore c = RECD__V1__CHURN_SCORE__INIT;
        c.expected_value = d;
        if (d == 0) continue;
        json = encode(&c.base);
        t = number_of(json);
        cr_assert_eq(strtod(t, NULL), d, "%s for %.17g", json, d);
        n = significant(t);
        if (n > 1) {
            snprintf(shorter, sizeof shorter, "%.*e", n - 2, d);
            cr_assert_neq(strtod(shorter, NULL), d, "%s: %s is shorter", json, shorter);
        }
        free(json);
    }
}

Test(pbjson, a_text_of_too_many_values_is_refused_before_it_is_built) {
    size_t n = PBJSON_MAX_PIECES + 1, len = 0;
    char *text = malloc(4 * n + 64);
    cr_assert_not_null(text);
    len += (size_t)sprintf(text, "{\"excludeItemIds\": [");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "%s\"a\"", i ? "," : "");
    len += (size_t)sprintf(text + len, "]}");
    ProtobufCMessage *m = NULL;
    err_t e;
    cr_assert_eq(pbjson_decode(&recd__v1__recommend_request__descriptor, text, len, &m, &e),
                 ERR_INVALID);
    cr_assert(strstr(e.msg, "values and keys"), "%s", e.msg);
    free(text);
}
