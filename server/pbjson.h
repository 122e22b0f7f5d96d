/* pbjson: the proto3 JSON mapping of protobuf-c messages, for every message
 * (the ones added later too) from its descriptors alone - no code per
 * message. json-c parses and writes the JSON text.
 *
 * The mapping (https://protobuf.dev/programming-guides/proto3/#json):
 *   - field names in lowerCamelCase (protoc's json_name rule: each "_x"
 *     becomes "X"); on input the original name is accepted too, but one
 *     field given twice (once by each name) is refused, and so is a field
 *     the message does not have;
 *   - 64-bit integers as strings on output; on input a string or a number;
 *     32-bit ones as numbers (strings accepted on input), range checked
 *     (a JSON number beyond 64 bits is refused before json-c, which would
 *     clamp it, reads it); only JSON's own number forms are read;
 *   - float and double as numbers in the shortest form that reads back to
 *     the same value, NaN and infinities as "NaN", "Infinity",
 *     "-Infinity" (accepted as strings on input, never as bare literals);
 *   - enums by name on output; on input a name of the enum or any int32
 *     number (proto3 enums are open);
 *   - bytes as base64 (on input standard or URL-safe, padded or not);
 *   - repeated fields as arrays, messages as objects; null on input is the
 *     field's default;
 *   - fields at their default (0, "", false, empty, unset) are left out on
 *     output, as protobuf's own JSON printers do.
 * Map fields (which protobuf-c sees as repeated entry messages) come and go
 * as arrays of {"key", "value"} objects; recd's protos have none.
 *
 * Strings must be valid UTF-8 without NUL bytes (protobuf-c hands strings
 * on NUL-terminated: an id with a NUL would be read cut short). A key
 * given twice in one JSON object is refused (json-c alone keeps the last).
 *
 * No state: every function is thread-safe. */
#ifndef RECD_PBJSON_H
#define RECD_PBJSON_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "err.h"

/* Deepest nesting of JSON objects and arrays pbjson_decode reads (recd's
 * messages nest 3 deep); deeper text is refused before it is built. */
#define PBJSON_MAX_DEPTH 32

/* Most separators and containers (',', ':', '{', '[': about the values
 * and keys) one text may hold. json-c builds a tree of the whole text
 * before pbjson reads it, at about 250 bytes a value: 4 MiB of ["a",...]
 * would cost 250 MiB. The largest request the core takes, RecordEvents
 * with 10,000 events of 6 fields, has about 130,000; more is refused
 * before any is built. */
#define PBJSON_MAX_PIECES 262144

/* Longest field name pbjson handles (names are protoc identifiers). */
#define PBJSON_MAX_NAME 128

/* Parses json (len bytes, not necessarily NUL-terminated) as a message of
 * type d. An empty text (or only whitespace) is the empty message {}, as
 * for an HTTP POST without a body. *out gets a message owned by the
 * caller: pbjson_free (not protobuf_c_message_free_unpacked). Errors:
 * ERR_INVALID (not JSON, not an object, a wrong type, an unknown field or
 * enum name, a value out of range; the message names the field's path,
 * "events[2].type"), ERR_NOMEM. On error *out is untouched. */
int pbjson_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                  ProtobufCMessage **out, err_t *e);

/* As pbjson_decode, from n name=value pairs (a URL's query, decoded) read
 * as a JSON object of strings: a repeated field takes a comma-separated
 * list and may appear several times (each adds to it), a bool field takes
 * "true" / "false", every other scalar its JSON string form. A message
 * field cannot be given this way (ERR_INVALID). */
int pbjson_decode_pairs(const ProtobufCMessageDescriptor *d, const char *const *names,
                        const char *const *values, size_t n, ProtobufCMessage **out, err_t *e);

/* Frees a message from pbjson_decode or pbjson_decode_pairs and all it
 * holds; NULL is fine. */
void pbjson_free(ProtobufCMessage *m);

/* The proto3 JSON of m (any protobuf-c message: from protobuf-c's unpack,
 * pbjson_decode or built by hand) on one line, no spaces. *out is
 * malloc'ed, NUL-terminated and owned by the caller (free); *len gets its
 * length without the NUL. Errors: ERR_NOMEM (nothing is returned). */
int pbjson_encode(const ProtobufCMessage *m, char **out, size_t *len, err_t *e);

/* The JSON name of field f ("user_id" -> "userId") into buf (cap bytes,
 * NUL-terminated, cut at cap - 1). */
void pbjson_field_name(const ProtobufCFieldDescriptor *f, char *buf, size_t cap);

#endif
