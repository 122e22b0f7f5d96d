/* Fuzz target: reflect_answer, the server reflection handler, on the
 * embedded descriptor set, in process, without gRPC.
 *
 * Input: the ServerReflectionRequest bytes exactly as rpc hands them to the
 * handler (one message of the stream). Besides ASan/UBSan findings, a run
 * aborts when the handler breaks the rpc contract: an OK reply that does not
 * decode as a ServerReflectionResponse, or that returns a file that does not
 * decode as a FileDescriptorProto; an error reply with a body or without a
 * message; any status but OK and INVALID_ARGUMENT (what is not found is an
 * error_response inside an OK reply). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "reflect.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static reflect *reflector;

__attribute__((noreturn)) static void fail(const char *what) {
    fprintf(stderr, "fuzz_reflect: %s\n", what);
    abort();
}

static void close_reflector(void) {
    reflect_close(reflector);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    static const rpc_method served[] = {{.path = "/recd.v1.Recommender/Recommend"},
                                        {.path = "/grpc.health.v1.Health/Check"}};
    err_t e = {0};
    if (reflect_open(reflect_descriptor_set, reflect_descriptor_set_len, served, 2, &reflector,
                     &e)) {
        fprintf(stderr, "fuzz_reflect: reflect_open: %s\n", e.msg);
        abort();
    }
    atexit(close_reflector);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rpc_reply reply = {.err.code = ERR_OK};
    reflect_answer(reflector, data, size, &reply);
    if (reply.err.code == ERR_OK) {
        Grpc__Reflection__V1__ServerReflectionResponse *resp =
            grpc__reflection__v1__server_reflection_response__unpack(NULL, reply.len, reply.body);
        if (!resp) fail("an OK reply that is not a ServerReflectionResponse");
        if (resp->message_response_case ==
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE) {
            const Grpc__Reflection__V1__FileDescriptorResponse *files =
                resp->file_descriptor_response;
            if (!files->n_file_descriptor_proto) fail("a file answer without files");
            for (size_t i = 0; i < files->n_file_descriptor_proto; i++) {
                ProtobufCBinaryData b = files->file_descriptor_proto[i];
                Google__Protobuf__FileDescriptorProto *fd =
                    google__protobuf__file_descriptor_proto__unpack(NULL, b.len, b.data);
                if (!fd) fail("a returned file that is not a FileDescriptorProto");
                google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
            }
        }
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    } else {
        if (reply.body) fail("an error reply with a body");
        if (!memchr(reply.err.msg, '\0', sizeof reply.err.msg) || !reply.err.msg[0])
            fail("an error reply without a message");
        if (reply.err.code != ERR_INVALID) fail(reply.err.msg);
    }
    free(reply.body);
    return 0;
}
