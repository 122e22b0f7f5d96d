/* Fuzz target: pbjson, the proto3 JSON codec, on every request and response
 * message of recd.v1.Recommender (from the service descriptor, so a new
 * RPC's messages are fuzzed without a change here).
 *
 * Input: a selector byte (method i's request for i < n, its response for
 * n <= i < 2n, modulo 2n), then the JSON text. Besides ASan/UBSan
 * findings, a run aborts when the codec breaks its contract: a refusal
 * with a code other than ERR_INVALID / ERR_NOMEM or without a message; an
 * accepted message that protobuf-c cannot pack and unpack to the same
 * JSON; an encoding that does not decode again, or that changes when it
 * is decoded and encoded once more (the encoder's text is canonical). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbjson.h"
#include "recd/v1/recommender.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static void fail(const char *what, const char *detail) {
    fprintf(stderr, "fuzz_pbjson: %s: %s\n", what, detail);
    abort();
}

static char *encode(const ProtobufCMessage *m, size_t *len) {
    char *out;
    err_t e;
    if (pbjson_encode(m, &out, len, &e)) return NULL; /* out of memory only */
    if (strlen(out) != *len) fail("an encoding with a NUL or a wrong length", out);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const ProtobufCServiceDescriptor *sd = &recd__v1__recommender__descriptor;
    unsigned pick = data[0] % (2 * sd->n_methods);
    const ProtobufCMessageDescriptor *d =
        pick < sd->n_methods ? sd->methods[pick].input : sd->methods[pick - sd->n_methods].output;
    ProtobufCMessage *m = NULL;
    err_t e = {0};
    int rc = pbjson_decode(d, (const char *)data + 1, size - 1, &m, &e);
    if (rc) {
        if (rc != ERR_INVALID && rc != ERR_NOMEM) fail("a refusal with another code", e.msg);
        if (!e.msg[0]) fail("a refusal without a message", d->name);
        if (m) fail("a refusal that returned a message", d->name);
        return 0;
    }
    size_t len1, len2, len3;
    char *first = encode(m, &len1);
    /* protobuf-c packs what pbjson built, and reads it back the same. */
    size_t packed = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(packed ? packed : 1);
    if (!buf) abort();
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, packed, buf);
    if (!u) fail("a decoded message protobuf-c cannot unpack", first ? first : "");
    char *again = encode(u, &len2);
    if (first && again && strcmp(first, again)) fail("pack/unpack changed the JSON", first);
    /* The encoding decodes, and encodes to itself. */
    if (first) {
        ProtobufCMessage *back = NULL;
        if (pbjson_decode(d, first, len1, &back, &e))
            fail("an encoding that does not decode", e.msg);
        char *third = encode(back, &len3);
        if (third && strcmp(first, third)) fail("decode(encode(m)) encodes differently", first);
        free(third);
        pbjson_free(back);
    }
    free(again);
    free(first);
    protobuf_c_message_free_unpacked(u, NULL);
    free(buf);
    pbjson_free(m);
    return 0;
}
