/* Fuzz target: every method of svc_methods() - each request decoder,
 * validator and handler - on a real tiny model (fuzz_fixture) and a real
 * event store, in process, without gRPC.
 *
 * Input: byte 0 picks the method (byte 0 % the number of methods), the rest
 * is the request message exactly as rpc hands it to the handler. The
 * server-streaming method (StreamCampaignTargets) runs too: it is linked with
 * -Wl,--wrap=rpc_stream_send, so its sends come to __wrap_rpc_stream_send
 * below instead of gRPC; byte 0 / the number of methods is then how many
 * messages the fake client takes before it goes away (0 = all of them), so
 * that the handler's "client gone" path is fuzzed too.
 *
 * Besides ASan/UBSan findings, a run aborts when a handler breaks the rpc
 * contract: an OK reply whose body does not decode as the method's response
 * type, a streamed message that is not a CampaignTarget, an error without a
 * message, a body with an error, or INTERNAL (which no request should be able
 * to cause on a sound model). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_fixture.h"
#include "grpc/health/v1/health.pb-c.h"
#include "log.h"
#include "recd/v1/recommender.pb-c.h"
#include "rpc.h"
#include "svc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __wrap_rpc_stream_send(rpc_stream *st, const uint8_t *msg, size_t len);

/* The services whose methods svc serves; their descriptors give every
 * method's response type, so a method added to the .proto is fuzzed and
 * checked without touching this file. */
static const ProtobufCServiceDescriptor *const services[] = {
    &recd__v1__recommender__descriptor,
    &grpc__health__v1__health__descriptor,
};

/* The response type of the method at path ("/package.Service/Method"), or
 * NULL when no service above has it. */
static const ProtobufCMessageDescriptor *response_type(const char *path) {
    const char *slash = strrchr(path, '/');
    if (path[0] != '/' || !slash) return NULL;
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
        size_t n = strlen(services[i]->name);
        if ((size_t)(slash - path - 1) != n || strncmp(path + 1, services[i]->name, n)) continue;
        const ProtobufCMethodDescriptor *m =
            protobuf_c_service_descriptor_get_method_by_name(services[i], slash + 1);
        return m ? m->output : NULL;
    }
    return NULL;
}

static core *service_core;
static svc *service;
static const rpc_method *methods;
static size_t n_methods;
static const ProtobufCMessageDescriptor **method_response; /* parallel to methods */

/* What the fake streaming client has seen; rpc_stream is opaque, so the
 * handler gets a pointer to this instead and only ever passes it back. */
typedef struct fake_stream {
    const ProtobufCMessageDescriptor *type;
    size_t received, give_up_after; /* 0 = never */
} fake_stream;

__attribute__((noreturn)) static void fail(const char *path, const char *what) {
    fprintf(stderr, "fuzz_svc: %s: %s\n", path, what);
    abort();
}

/* Checks that len bytes decode as a message of type. */
static int decodes(const ProtobufCMessageDescriptor *type, const uint8_t *msg, size_t len) {
    ProtobufCMessage *m = protobuf_c_message_unpack(type, NULL, len, msg);
    if (!m) return 0;
    protobuf_c_message_free_unpacked(m, NULL);
    return 1;
}

int __wrap_rpc_stream_send(rpc_stream *st, const uint8_t *msg, size_t len) {
    fake_stream *fs = (fake_stream *)st;
    if (!decodes(fs->type, msg, len)) fail("stream", "a streamed message does not decode");
    fs->received++;
    return fs->give_up_after && fs->received >= fs->give_up_after ? -1 : 0;
}

static void close_service(void) {
    svc_close(service);
    core_close(service_core);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    char root[PATH_MAX], model_dir[PATH_MAX + 8], events_dir[PATH_MAX + 8];
    fuzz_scratch_dir("fuzz-svc", root);
    snprintf(model_dir, sizeof model_dir, "%s/model", root);
    snprintf(events_dir, sizeof events_dir, "%s/events", root);
    model_meta meta;
    fuzz_publish_model(model_dir, &meta);
    core_options o;
    core_options_init(&o);
    o.model_dir = model_dir;
    o.events_dir = events_dir;
    o.reload_interval_s = 0; /* no watcher thread: nothing is republished */
    err_t e = {0};
    if (core_open(&o, &service_core, &e) || svc_open(service_core, &service, &e)) {
        fprintf(stderr, "fuzz_svc: core_open, svc_open: %s\n", e.msg);
        abort();
    }
    atexit(close_service); /* runs before the scratch folder is removed */
    methods = svc_methods(service, &n_methods);
    method_response = calloc(n_methods, sizeof *method_response);
    if (!method_response) abort();
    for (size_t i = 0; i < n_methods; i++)
        if (!(method_response[i] = response_type(methods[i].path)))
            fail(methods[i].path, "not in the .proto's services");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return -1; /* not worth keeping */
    size_t which = data[0] % n_methods;
    const rpc_method *m = &methods[which];
    rpc_reply reply = {.err.code = ERR_OK};
    if (m->stream) {
        fake_stream fs = {method_response[which], 0, data[0] / n_methods};
        m->stream(m->ctx, data + 1, size - 1, (rpc_stream *)&fs, &reply);
        if (reply.err.code == ERR_OK && fs.give_up_after && fs.received >= fs.give_up_after)
            fail(m->path, "OK although the client went away");
    } else {
        m->handler(m->ctx, data + 1, size - 1, &reply);
        if (reply.err.code == ERR_OK &&
            (!reply.body || !decodes(method_response[which], reply.body, reply.len)))
            fail(m->path, "OK reply whose body is not the response message");
    }
    if (reply.err.code != ERR_OK) {
        if (reply.body) fail(m->path, "an error reply with a body");
        if (!memchr(reply.err.msg, '\0', sizeof reply.err.msg) || !reply.err.msg[0])
            fail(m->path, "an error reply without a message");
        if (err_to_status(reply.err.code) == ERR_STATUS_INTERNAL) fail(m->path, reply.err.msg);
    }
    free(reply.body);
    return 0;
}
