/* Unit tests of reflect: the embedded descriptor set, and that set with two
 * more files that hold what recd's own protos do not (imports between
 * them, nested messages, extensions at file and message scope), answered
 * through reflect_answer as rpc would call it. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "reflect.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest request;
typedef Grpc__Reflection__V1__ServerReflectionResponse response;

static const rpc_method served[] = {
    {.path = "/recd.v1.Recommender/Recommend"},
    {.path = "/grpc.health.v1.Health/Check"},
    {.path = "/recd.v1.Recommender/SimilarItems"},
};

static reflect *open_embedded(void) {
    reflect *r = NULL;
    err_t e;
    int rc = reflect_open(reflect_descriptor_set, reflect_descriptor_set_len, served, 3, &r, &e);
    cr_assert_eq(rc, ERR_OK, "%s", e.msg);
    return r;
}

/* The error code and, when ERR_OK, the decoded response of reflect_answer on q. */
static int ask(reflect *r, const request *q, response **out) {
    size_t len = protobuf_c_message_get_packed_size(&q->base);
    uint8_t *buf = malloc(len + 1);
    protobuf_c_message_pack(&q->base, buf);
    rpc_reply reply = {.err.code = ERR_OK};
    reflect_answer(r, buf, len, &reply);
    free(buf);
    *out = NULL;
    if (reply.err.code == ERR_OK) {
        *out =
            grpc__reflection__v1__server_reflection_response__unpack(NULL, reply.len, reply.body);
        cr_assert_not_null(*out, "an OK answer must decode as a ServerReflectionResponse");
    } else {
        cr_assert_null(reply.body);
    }
    free(reply.body);
    return reply.err.code;
}

static response *ask_symbol(reflect *r, const char *symbol) {
    request q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    q.file_containing_symbol = (char *)symbol;
    response *resp;
    cr_assert_eq(ask(r, &q, &resp), ERR_OK);
    return resp;
}

/* The name of file i of a file_descriptor_response. */
static char *file_name(const response *resp, size_t i) {
    cr_assert_eq(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    cr_assert_lt(i, resp->file_descriptor_response->n_file_descriptor_proto);
    ProtobufCBinaryData b = resp->file_descriptor_response->file_descriptor_proto[i];
    Google__Protobuf__FileDescriptorProto *fd =
        google__protobuf__file_descriptor_proto__unpack(NULL, b.len, b.data);
    cr_assert_not_null(fd);
    char *name = strdup(fd->name);
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
    return name;
}

static void expect_file(reflect *r, const char *symbol, const char *file) {
    response *resp = ask_symbol(r, symbol);
    char *name = file_name(resp, 0);
    cr_expect_str_eq(name, file, "%s", symbol);
    free(name);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void expect_not_found(reflect *r, const char *symbol) {
    response *resp = ask_symbol(r, symbol);
    cr_assert_eq(resp->message_response_case,
                 GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE,
                 "%s", symbol);
    cr_expect_eq(resp->error_response->error_code, ERR_STATUS_NOT_FOUND);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

Test(reflect, lists_the_served_services_once_each_then_reflection) {
    reflect *r = open_embedded();
    request q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    q.list_services = "";
    response *resp;
    cr_assert_eq(ask(r, &q, &resp), ERR_OK);
    const Grpc__Reflection__V1__ListServiceResponse *l = resp->list_services_response;
    cr_assert_eq(l->n_service, 4);
    cr_expect_str_eq(l->service[0]->name, "recd.v1.Recommender");
    cr_expect_str_eq(l->service[1]->name, "grpc.health.v1.Health");
    cr_expect_str_eq(l->service[2]->name, "grpc.reflection.v1.ServerReflection");
    cr_expect_str_eq(l->service[3]->name, "grpc.reflection.v1alpha.ServerReflection");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    size_t n;
    const rpc_method *m = reflect_methods(r, &n);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(m[0].path, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    cr_expect_str_eq(m[1].path, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
    cr_expect(m[0].bidi == reflect_answer && m[0].ctx == r && !m[0].handler && !m[0].stream);
    reflect_close(r);
}

Test(reflect, refuses_a_served_service_without_descriptor_and_a_bad_set) {
    const rpc_method unknown[] = {{.path = "/recd.v2.Recommender/Recommend"}};
    reflect *r = NULL;
    err_t e;
    cr_expect_eq(
        reflect_open(reflect_descriptor_set, reflect_descriptor_set_len, unknown, 1, &r, &e),
        ERR_NOTFOUND);
    cr_expect(strstr(e.msg, "recd.v2.Recommender") != NULL, "%s", e.msg);
    const rpc_method method_not_service[] = {{.path = "/recd.v1.Recommender.Recommend/X"}};
    cr_expect_eq(reflect_open(reflect_descriptor_set, reflect_descriptor_set_len,
                              method_not_service, 1, &r, &e),
                 ERR_NOTFOUND);
    const uint8_t garbage[] = {0x0a, 0x7f, 0x01};
    cr_expect_eq(reflect_open(garbage, sizeof garbage, served, 0, &r, &e), ERR_FORMAT);
    cr_expect_null(r);
}

Test(reflect, finds_every_kind_of_symbol_in_recd_protos) {
    reflect *r = open_embedded();
    expect_file(r, "recd.v1.Recommender", "recd/v1/recommender.proto");
    expect_file(r, "recd.v1.Recommender.Recommend", "recd/v1/recommender.proto");
    expect_file(r, "recd.v1.RecommendRequest", "recd/v1/recommender.proto");
    expect_file(r, "recd.v1.RecommendRequest.user_id", "recd/v1/recommender.proto");
    expect_file(r, "recd.v1.Strategy", "recd/v1/recommender.proto");
    expect_file(r, "recd.v1.PERSONALIZED", "recd/v1/recommender.proto");
    expect_file(r, "grpc.health.v1.HealthCheckResponse.ServingStatus",
                "grpc/health/v1/health.proto");
    expect_file(r, "grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto");
    expect_file(r, "grpc.reflection.v1alpha.ServerReflectionRequest.message_request",
                "grpc/reflection/v1alpha/reflection.proto");
    expect_not_found(r, "recd.v1.Strategy.PERSONALIZED"); /* values are not inside their enum */
    expect_not_found(r, "recd.v1.RecommendRequest.");
    expect_not_found(r, "");
    reflect_close(r);
}

/* --- a set with imports, nesting and extensions ------------------------------ */

/* The embedded set plus a.proto (package a, message Base) and b.proto
 * (package b, imports a.proto; extension note = 100 of a.Base; message
 * Outer with nested message Inner, nested enum Kind { KIND_X }, and
 * extension flag = 101 of a.Base), serialized. */
static uint8_t *extended_set(size_t *len) {
    Google__Protobuf__FileDescriptorSet *set = google__protobuf__file_descriptor_set__unpack(
        NULL, reflect_descriptor_set_len, reflect_descriptor_set);
    cr_assert_not_null(set);

    Google__Protobuf__FileDescriptorProto a = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT, b = a;
    Google__Protobuf__DescriptorProto base = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT, outer = base,
                                      inner = base;
    Google__Protobuf__FieldDescriptorProto note = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT,
                                           flag = note;
    Google__Protobuf__EnumDescriptorProto kind = GOOGLE__PROTOBUF__ENUM_DESCRIPTOR_PROTO__INIT;
    Google__Protobuf__EnumValueDescriptorProto kind_x =
        GOOGLE__PROTOBUF__ENUM_VALUE_DESCRIPTOR_PROTO__INIT;
    a.name = "a.proto";
    a.package = "a";
    base.name = "Base";
    Google__Protobuf__DescriptorProto *a_msgs[] = {&base};
    a.message_type = a_msgs;
    a.n_message_type = 1;

    b.name = "b.proto";
    b.package = "b";
    char *b_deps[] = {"a.proto"};
    b.dependency = b_deps;
    b.n_dependency = 1;
    note.name = "note";
    note.number = 100;
    note.has_number = 1;
    note.extendee = ".a.Base";
    flag.name = "flag";
    flag.number = 101;
    flag.has_number = 1;
    flag.extendee = ".a.Base";
    Google__Protobuf__FieldDescriptorProto *b_ext[] = {&note}, *outer_ext[] = {&flag};
    b.extension = b_ext;
    b.n_extension = 1;
    outer.name = "Outer";
    inner.name = "Inner";
    Google__Protobuf__DescriptorProto *outer_nested[] = {&inner}, *b_msgs[] = {&outer};
    outer.nested_type = outer_nested;
    outer.n_nested_type = 1;
    outer.extension = outer_ext;
    outer.n_extension = 1;
    kind.name = "Kind";
    kind_x.name = "KIND_X";
    Google__Protobuf__EnumValueDescriptorProto *kind_values[] = {&kind_x};
    kind.value = kind_values;
    kind.n_value = 1;
    Google__Protobuf__EnumDescriptorProto *outer_enums[] = {&kind};
    outer.enum_type = outer_enums;
    outer.n_enum_type = 1;
    b.message_type = b_msgs;
    b.n_message_type = 1;

    Google__Protobuf__FileDescriptorProto **files = malloc((set->n_file + 2) * sizeof *files);
    memcpy(files, set->file, set->n_file * sizeof *files);
    files[set->n_file] = &a;
    files[set->n_file + 1] = &b;
    Google__Protobuf__FileDescriptorSet extended = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    extended.file = files;
    extended.n_file = set->n_file + 2;
    *len = protobuf_c_message_get_packed_size(&extended.base);
    uint8_t *out = malloc(*len);
    protobuf_c_message_pack(&extended.base, out);
    free(files);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    return out;
}

Test(reflect, follows_imports_and_finds_nested_symbols_and_extensions) {
    size_t len;
    uint8_t *set = extended_set(&len);
    reflect *r = NULL;
    err_t e;
    cr_assert_eq(reflect_open(set, len, served, 3, &r, &e), ERR_OK, "%s", e.msg);
    free(set); /* reflect copied what it needs */

    response *resp = ask_symbol(r, "b.Outer.Inner");
    cr_assert_eq(resp->file_descriptor_response->n_file_descriptor_proto, 2);
    char *first = file_name(resp, 0), *second = file_name(resp, 1);
    cr_expect_str_eq(first, "b.proto");
    cr_expect_str_eq(second, "a.proto");
    free(first);
    free(second);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    expect_file(r, "b.note", "b.proto");
    expect_file(r, "b.Outer.flag", "b.proto");
    expect_file(r, "b.Outer.KIND_X", "b.proto");
    expect_file(r, "a.Base", "a.proto");

    request q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Grpc__Reflection__V1__ExtensionRequest x = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    q.file_containing_extension = &x;
    x.containing_type = "a.Base";
    x.extension_number = 101;
    cr_assert_eq(ask(r, &q, &resp), ERR_OK);
    first = file_name(resp, 0);
    cr_expect_str_eq(first, "b.proto");
    free(first);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    x.extension_number = 102;
    cr_assert_eq(ask(r, &q, &resp), ERR_OK);
    cr_expect_eq(resp->error_response->error_code, ERR_STATUS_NOT_FOUND);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    q.all_extension_numbers_of_type = "a.Base";
    cr_assert_eq(ask(r, &q, &resp), ERR_OK);
    const Grpc__Reflection__V1__ExtensionNumberResponse *numbers =
        resp->all_extension_numbers_response;
    cr_assert_not_null(numbers);
    cr_expect_str_eq(numbers->base_type_name, "a.Base");
    cr_assert_eq(numbers->n_extension_number, 2);
    cr_expect_eq(numbers->extension_number[0] + numbers->extension_number[1], 201);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    q.all_extension_numbers_of_type = "b.note"; /* a symbol, but no message */
    cr_assert_eq(ask(r, &q, &resp), ERR_OK);
    cr_expect_eq(resp->error_response->error_code, ERR_STATUS_NOT_FOUND);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    reflect_close(r);
}

Test(reflect, refuses_a_missing_import) {
    Google__Protobuf__FileDescriptorProto lone = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    lone.name = "lone.proto";
    char *deps[] = {"elsewhere.proto"};
    lone.dependency = deps;
    lone.n_dependency = 1;
    Google__Protobuf__FileDescriptorProto *files[] = {&lone, &lone};
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.file = files;
    set.n_file = 1;
    uint8_t buf[256];
    size_t len = protobuf_c_message_pack(&set.base, buf);
    reflect *r = NULL;
    err_t e;
    cr_expect_eq(reflect_open(buf, len, served, 0, &r, &e), ERR_FORMAT);
    cr_expect(strstr(e.msg, "elsewhere.proto") != NULL, "%s", e.msg);
    lone.n_dependency = 0;
    set.n_file = 2;
    len = protobuf_c_message_pack(&set.base, buf);
    cr_expect_eq(reflect_open(buf, len, served, 0, &r, &e), ERR_FORMAT);
    cr_expect(strstr(e.msg, "twice") != NULL, "%s", e.msg);
}

Test(reflect, malformed_or_non_utf8_requests_are_invalid_argument) {
    reflect *r = open_embedded();
    const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\x22\x05recd", 5},         /* a string longer than the message */
        {"\x22\x02\xc3\x28", 4},     /* file_containing_symbol not UTF-8 */
        {"\x1a\x01\xff", 3},         /* file_by_filename not UTF-8 */
        {"\x0a\x01\xff", 3},         /* host not UTF-8 */
        {"\x2a\x03\x0a\x01\xff", 5}, /* containing_type not UTF-8 */
        {"\xff\xff\xff", 3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rpc_reply reply = {.err.code = ERR_OK};
        reflect_answer(r, (const uint8_t *)bad[i].bytes, bad[i].len, &reply);
        cr_expect_eq(reply.err.code, ERR_INVALID, "case %zu", i);
        cr_expect_null(reply.body);
    }
    /* Unknown fields, one with field number 0 that protobuf-c takes and
     * stricter decoders refuse (found by fuzz_reflect): not echoed back. */
    static const uint8_t unknown_fields[] = {
        0x81, 0x00, 1,    0,    0,    0,    0, 0, 0, 0,       /* field 0, 64 bits */
        0x2a, 0x0f, 0x10, 0x05, 0x81, 0x00, 1, 0, 0, 0, 0, 0, /* extension request ... */
        0,    0,    0x98, 0x06, 0x07,                         /* ... with fields 0 and 99 */
    };
    rpc_reply reply = {.err.code = ERR_OK};
    reflect_answer(r, unknown_fields, sizeof unknown_fields, &reply);
    cr_assert_eq(reply.err.code, ERR_OK, "%s", reply.err.msg);
    response *echoed =
        grpc__reflection__v1__server_reflection_response__unpack(NULL, reply.len, reply.body);
    cr_assert_not_null(echoed);
    cr_expect_eq(echoed->original_request->base.n_unknown_fields, 0);
    cr_expect_eq(echoed->original_request->file_containing_extension->extension_number, 5);
    cr_expect_eq(echoed->original_request->file_containing_extension->base.n_unknown_fields, 0);
    free(reply.body);
    grpc__reflection__v1__server_reflection_response__free_unpacked(echoed, NULL);
    /* No request at all: an error_response, not the end of the stream. */
    request q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    response *resp;
    cr_assert_eq(ask(r, &q, &resp), ERR_OK);
    cr_expect_eq(resp->error_response->error_code, ERR_STATUS_UNIMPLEMENTED);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    reflect_close(r);
}
