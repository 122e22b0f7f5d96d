/* pbjson: proto3 JSON <-> protobuf-c messages through their descriptors.
 * Decoding builds the message struct field by field (each field's offset,
 * quantifier and type come from its descriptor); encoding walks it the
 * same way. json-c holds the JSON tree in between. */
#include "pbjson.h"

#include <errno.h>
#include <float.h>
#include <json-c/json.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the message struct, through its descriptors -------------------------- */

/* Bytes one value of a field of type t takes in the message struct. */
static size_t value_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

static void *member(const void *msg, unsigned offset) {
    return (char *)msg + offset;
}

static int is_oneof(const ProtobufCFieldDescriptor *f) {
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* A scalar kept with a has_ flag (proto2 optional, proto3 "optional"). */
static int has_flag(const ProtobufCFieldDescriptor *f) {
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !is_oneof(f) &&
           f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

/* Frees one value of field f at p (strings, bytes, messages own memory). */
static void value_free(const ProtobufCFieldDescriptor *f, void *p) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        char *s = *(char **)p;
        if (s && s != protobuf_c_empty_string && s != f->default_value) free(s);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        const ProtobufCBinaryData *def = f->default_value;
        if (b->data && (!def || b->data != def->data)) free(b->data);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        pbjson_free(*(ProtobufCMessage **)p);
        break;
    default:
        break;
    }
}

void pbjson_free(ProtobufCMessage *m) {
    if (!m) return;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(size_t *)member(m, f->quantifier_offset);
            char *arr = *(char **)member(m, f->offset);
            for (size_t k = 0; arr && k < n; k++)
                value_free(f, arr + k * value_size(f->type));
            free(arr);
        } else if (!is_oneof(f) || *(uint32_t *)member(m, f->quantifier_offset) == f->id) {
            value_free(f, member(m, f->offset));
        }
    }
    free(m);
}

void pbjson_field_name(const ProtobufCFieldDescriptor *f, char *buf, size_t cap) {
    size_t n = 0;
    int upper = 0;
    for (const char *s = f->name; *s && n + 1 < cap; s++) {
        if (*s == '_') {
            upper = 1;
            continue;
        }
        buf[n++] = upper && *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
        upper = 0;
    }
    if (cap) buf[n] = '\0';
}

/* --- decoding ---------------------------------------------------------------- */

/* Where a value is in the message being decoded: "events[2].type". */
typedef struct path {
    char at[256];
} path;

/* Appends text to p, cut at the end of p->at (a path is only for messages). */
static void path_append(path *p, const char *text) {
    size_t have = strlen(p->at), add = strlen(text);
    if (add > sizeof p->at - 1 - have) add = sizeof p->at - 1 - have;
    memcpy(p->at + have, text, add);
    p->at[have + add] = '\0';
}

static void path_field(path *out, const path *in, const char *name) {
    *out = *in;
    if (out->at[0]) path_append(out, ".");
    path_append(out, name);
}

static void path_index(path *out, const path *in, size_t i) {
    char idx[32];
    snprintf(idx, sizeof idx, "[%zu]", i);
    *out = *in;
    path_append(out, idx);
}

static int bad(err_t *e, const path *p, const char *fmt, const char *what) {
    char why[256];
    snprintf(why, sizeof why, fmt, what);
    return err_set(e, ERR_INVALID, "invalid JSON request: %s: %s", p->at[0] ? p->at : "(top)", why);
}

/* Whole-text integer: optional '-', then digits only (no spaces, no '+'). */
static int text_int(const char *s, int neg_ok, long long *i, unsigned long long *u, int *neg) {
    const char *d = s + (*s == '-');
    if (!*d || strspn(d, "0123456789") != strlen(d) || (*s == '-' && !neg_ok)) return -1;
    errno = 0;
    *neg = *s == '-';
    if (*neg)
        *i = strtoll(s, NULL, 10);
    else
        *u = strtoull(s, NULL, 10);
    return errno ? -1 : 0;
}

/* Reads an integer JSON value (number, or string of one) into i (signed) or
 * u (unsigned, *neg = 0) within [lo, hi] (signed) or [0, uhi]. */
static int get_integer(json_object *v, int is_signed, long long lo, long long hi,
                       unsigned long long uhi, int64_t *out_i, uint64_t *out_u, const path *p,
                       err_t *e) {
    long long i = 0;
    unsigned long long u = 0;
    int neg = 0;
    switch (json_object_get_type(v)) {
    case json_type_int:
        i = json_object_get_int64(v);
        neg = i < 0;
        if (!neg) u = json_object_get_uint64(v);
        break;
    case json_type_double: {
        double d = json_object_get_double(v);
        if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 1.8e19)
            return bad(e, p, "%s", "not an integer");
        neg = d < 0;
        if (neg)
            i = (long long)d;
        else
            u = (unsigned long long)d;
        break;
    }
    case json_type_string:
        if (text_int(json_object_get_string(v), 1, &i, &u, &neg))
            return bad(e, p, "'%.40s' is not an integer", json_object_get_string(v));
        break;
    default:
        return bad(e, p, "%s", "expected an integer");
    }
    if (is_signed) {
        if (!neg && u > (unsigned long long)hi) return bad(e, p, "%s", "integer out of range");
        if (!neg) i = (long long)u;
        if (i < lo || i > hi) return bad(e, p, "%s", "integer out of range");
        *out_i = i;
    } else {
        if (neg) return bad(e, p, "%s", "a negative value for an unsigned field");
        if (u > uhi) return bad(e, p, "%s", "integer out of range");
        *out_u = u;
    }
    return ERR_OK;
}

static int get_real(json_object *v, double *out, const path *p, err_t *e) {
    switch (json_object_get_type(v)) {
    case json_type_int:
    case json_type_double:
        *out = json_object_get_double(v);
        /* json-c reads the bare literals NaN and Infinity, and 1e999 as
         * inf: none is JSON, so they are refused (the strings are not). */
        if (!isfinite(*out)) return bad(e, p, "%s", "not a finite number (send \"NaN\" etc.)");
        return ERR_OK;
    case json_type_string: {
        const char *s = json_object_get_string(v);
        if (!strcmp(s, "NaN")) {
            *out = NAN;
        } else if (!strcmp(s, "Infinity")) {
            *out = INFINITY;
        } else if (!strcmp(s, "-Infinity")) {
            *out = -INFINITY;
        } else {
            char *end;
            errno = 0;
            *out = strtod(s, &end);
            if (!*s || *end || errno || !isfinite(*out) || strchr(s, ' ') || strpbrk(s, "xXnN"))
                return bad(e, p, "'%.40s' is not a number", s);
        }
        return ERR_OK;
    }
    default:
        return bad(e, p, "%s", "expected a number");
    }
}

static int b64_digit(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Base64 (standard or URL-safe, padding optional) into a malloc'ed block. */
static int get_bytes(json_object *v, ProtobufCBinaryData *out, const path *p, err_t *e) {
    if (json_object_get_type(v) != json_type_string)
        return bad(e, p, "%s", "expected a base64 string");
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1) return bad(e, p, "%s", "not base64");
    uint8_t *buf = malloc(len * 3 / 4 + 1);
    if (!buf) return err_set(e, ERR_NOMEM, "out of memory decoding base64");
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int d = b64_digit((unsigned char)s[i]);
        if (d < 0) {
            free(buf);
            return bad(e, p, "%s", "not base64");
        }
        acc = acc << 6 | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    out->data = buf;
    out->len = n;
    return ERR_OK;
}

/* The number of keys of each object of the text, in the order the objects
 * open: json-c keeps one entry for a key given twice, so decode_object
 * compares its object's entries with the text's keys (it visits the
 * objects in the same order). NULL when there is no text (query pairs). */
typedef struct key_counts {
    uint32_t *n;
    size_t len, next;
} key_counts;

/* Fills k from text (n bytes of JSON that json-c parsed: well formed, at
 * most PBJSON_MAX_DEPTH + 1 deep). Returns 0, or -1 out of memory. */
static int count_keys(const char *text, size_t n, key_counts *k) {
    size_t objects = 0;
    int in_string = 0;
    for (int pass = 0; pass < 2; pass++) {
        long stack[PBJSON_MAX_DEPTH + 2]; /* object index, or -1 for an array */
        int top = -1;
        size_t at = 0;
        in_string = 0;
        for (size_t i = 0; i < n; i++) {
            char c = text[i];
            if (in_string) {
                if (c == '\\')
                    i++;
                else if (c == '"')
                    in_string = 0;
            } else if (c == '"') {
                in_string = 1;
            } else if (c == '{' || c == '[') {
                if (c == '{' && pass == 0) objects++;
                if (c == '{' && pass == 1) k->n[at] = 0;
                if (top + 1 < (int)(sizeof stack / sizeof stack[0]))
                    stack[++top] = c == '{' ? (long)at++ : -1;
            } else if (c == '}' || c == ']') {
                if (top >= 0) top--;
            } else if (c == ':' && pass == 1 && top >= 0 && stack[top] >= 0) {
                k->n[stack[top]]++;
            }
        }
        if (pass == 0) {
            k->n = calloc(objects ? objects : 1, sizeof *k->n);
            if (!k->n) return -1;
            k->len = objects;
            k->next = 0;
        }
    }
    return 0;
}

static int decode_object(const ProtobufCMessageDescriptor *d, json_object *obj, const path *p,
                         int depth, key_counts *k, ProtobufCMessage **out, err_t *e);

/* Reads one value of field f from v into dst (the struct member, or an
 * element of its array). */
static int decode_value(const ProtobufCFieldDescriptor *f, json_object *v, void *dst, const path *p,
                        int depth, key_counts *k, err_t *e) {
    int64_t i = 0;
    uint64_t u = 0;
    double r = 0;
    int rc;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((rc = get_integer(v, 1, INT32_MIN, INT32_MAX, 0, &i, &u, p, e))) return rc;
        *(int32_t *)dst = (int32_t)i;
        return ERR_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((rc = get_integer(v, 0, 0, 0, UINT32_MAX, &i, &u, p, e))) return rc;
        *(uint32_t *)dst = (uint32_t)u;
        return ERR_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if ((rc = get_integer(v, 1, INT64_MIN, INT64_MAX, 0, &i, &u, p, e))) return rc;
        *(int64_t *)dst = i;
        return ERR_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if ((rc = get_integer(v, 0, 0, 0, UINT64_MAX, &i, &u, p, e))) return rc;
        *(uint64_t *)dst = u;
        return ERR_OK;
    case PROTOBUF_C_TYPE_FLOAT:
        if ((rc = get_real(v, &r, p, e))) return rc;
        if (isfinite(r) && fabs(r) > FLT_MAX) return bad(e, p, "%s", "out of range of a float");
        *(float *)dst = (float)r;
        return ERR_OK;
    case PROTOBUF_C_TYPE_DOUBLE:
        if ((rc = get_real(v, &r, p, e))) return rc;
        *(double *)dst = r;
        return ERR_OK;
    case PROTOBUF_C_TYPE_BOOL:
        if (json_object_get_type(v) != json_type_boolean)
            return bad(e, p, "%s", "expected true or false");
        *(protobuf_c_boolean *)dst = json_object_get_boolean(v) ? 1 : 0;
        return ERR_OK;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (json_object_get_type(v) == json_type_string) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(ed, json_object_get_string(v));
            if (!ev) {
                char what[128];
                snprintf(what, sizeof what, "%.40s is not a value of %.60s",
                         json_object_get_string(v), ed->name);
                return bad(e, p, "%s", what);
            }
            *(int32_t *)dst = ev->value;
            return ERR_OK;
        }
        if ((rc = get_integer(v, 1, INT32_MIN, INT32_MAX, 0, &i, &u, p, e))) return rc;
        *(int32_t *)dst = (int32_t)i;
        return ERR_OK;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (json_object_get_type(v) != json_type_string)
            return bad(e, p, "%s", "expected a string");
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (memchr(s, 0, len))
            return bad(e, p, "%s",
                       "contains a NUL byte: ids and names must not (it would be read cut short)");
        char *copy = malloc(len + 1);
        if (!copy) return err_set(e, ERR_NOMEM, "out of memory for a string");
        memcpy(copy, s, len + 1);
        *(char **)dst = copy;
        return ERR_OK;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return get_bytes(v, dst, p, e);
    case PROTOBUF_C_TYPE_MESSAGE:
        if (json_object_get_type(v) != json_type_object)
            return bad(e, p, "%s", "expected an object");
        return decode_object(f->descriptor, v, p, depth + 1, k, (ProtobufCMessage **)dst, e);
    }
    return bad(e, p, "%s", "a field type pbjson does not know");
}

/* The field of d that key names (JSON name or original name). */
static const ProtobufCFieldDescriptor *field_by_key(const ProtobufCMessageDescriptor *d,
                                                    const char *key) {
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    if (f) return f;
    char name[PBJSON_MAX_NAME];
    for (unsigned i = 0; i < d->n_fields; i++) {
        pbjson_field_name(&d->fields[i], name, sizeof name);
        if (!strcmp(name, key)) return &d->fields[i];
    }
    return NULL;
}

/* Reads v (not null) into field f of m. */
static int decode_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, json_object *v,
                        const path *p, int depth, key_counts *k, err_t *e) {
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        /* The old value is the default (or, in a oneof, unset): nothing to free. */
        int rc = decode_value(f, v, member(m, f->offset), p, depth, k, e);
        if (rc) {
            if (f->type == PROTOBUF_C_TYPE_STRING) *(char **)member(m, f->offset) = NULL;
            return rc;
        }
        if (is_oneof(f))
            *(uint32_t *)member(m, f->quantifier_offset) = f->id;
        else if (has_flag(f))
            *(protobuf_c_boolean *)member(m, f->quantifier_offset) = 1;
        return ERR_OK;
    }
    if (json_object_get_type(v) != json_type_array) return bad(e, p, "%s", "expected an array");
    size_t n = json_object_array_length(v), size = value_size(f->type);
    char *arr = calloc(n ? n : 1, size);
    if (!arr) return err_set(e, ERR_NOMEM, "out of memory for %s", p->at);
    /* The array belongs to m from here: pbjson_free frees what was filled. */
    *(char **)member(m, f->offset) = arr;
    size_t *count = member(m, f->quantifier_offset);
    for (size_t i = 0; i < n; i++) {
        path here;
        path_index(&here, p, i);
        json_object *item = json_object_array_get_idx(v, i);
        if (!item) return bad(e, &here, "%s", "null in a list");
        int rc = decode_value(f, item, arr + i * size, &here, depth, k, e);
        if (rc) return rc;
        *count = i + 1;
    }
    return ERR_OK;
}

static int decode_object(const ProtobufCMessageDescriptor *d, json_object *obj, const path *p,
                         int depth, key_counts *k, ProtobufCMessage **out, err_t *e) {
    if (depth > PBJSON_MAX_DEPTH) return bad(e, p, "%s", "nested too deep");
    if (k && k->next < k->len && (size_t)json_object_object_length(obj) != k->n[k->next++])
        return bad(e, p, "%s", "a key appears twice in one object");
    ProtobufCMessage *m = malloc(d->sizeof_message);
    unsigned char *seen = calloc(d->n_fields ? d->n_fields : 1, 1);
    if (!m || !seen) {
        free(m);
        free(seen);
        return err_set(e, ERR_NOMEM, "out of memory for a %s", d->short_name);
    }
    protobuf_c_message_init(d, m);
    int rc = ERR_OK;
    json_object_object_foreach(obj, key, v) {
        path here;
        path_field(&here, p, key);
        const ProtobufCFieldDescriptor *f = field_by_key(d, key);
        if (!f) {
            char what[160];
            snprintf(what, sizeof what, "%.60s has no field '%.60s'", d->name, key);
            rc = bad(e, &here, "%s", what);
            break;
        }
        size_t idx = (size_t)(f - d->fields);
        if (seen[idx]) {
            rc = bad(e, &here, "%s", "the field is given twice (by its two names)");
            break;
        }
        seen[idx] = 1;
        if (!v) continue; /* null: the default */
        if (is_oneof(f) && *(uint32_t *)member(m, f->quantifier_offset)) {
            rc = bad(e, &here, "%s", "another field of its oneof is set already");
            break;
        }
        if ((rc = decode_field(m, f, v, &here, depth, k, e))) break;
    }
    free(seen);
    if (rc) {
        pbjson_free(m);
        return rc;
    }
    *out = m;
    return ERR_OK;
}

/* The length of the JSON number at p (end: the text's end), or 0 when
 * what starts there is not one: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 * json-c reads more ("-0.", "1.e5", "+1", "01"), which other JSON readers
 * refuse. */
static size_t json_number(const char *p, const char *end) {
    const char *q = p;
#define DIGITS(q) (q < end && *q >= '0' && *q <= '9')
    if (q < end && *q == '-') q++;
    if (q < end && *q == '0')
        q++;
    else if (DIGITS(q))
        while (DIGITS(q))
            q++;
    else
        return 0;
    if (q < end && *q == '.') {
        q++;
        if (!DIGITS(q)) return 0;
        while (DIGITS(q))
            q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (!DIGITS(q)) return 0;
        while (DIGITS(q))
            q++;
    }
#undef DIGITS
    /* A number ends where a separator, a bracket or a space begins. */
    if (q < end && !strchr(" \t\r\n,]}", *q)) return 0;
    return (size_t)(q - p);
}

/* Whether the integer text p (len bytes: digits, maybe after '-') is
 * beyond 64 bits, below INT64_MIN or above UINT64_MAX: json-c would clamp
 * it to the nearest end and pbjson would take a different number. */
static int beyond_64_bits(const char *p, size_t len) {
    int neg = *p == '-';
    const char *d = p + neg;
    size_t n = len - (size_t)neg;
    const char *max = neg ? "9223372036854775808" : "18446744073709551615";
    size_t max_len = strlen(max);
    return n > max_len || (n == max_len && memcmp(d, max, n) > 0);
}

/* Where text (n bytes) holds something outside strings that is not JSON,
 * or n: json-c, even strict, takes single-quoted strings, NaN and
 * Infinity, and numbers such as "-0." that other JSON readers refuse, so
 * pbjson refuses them too. *pieces gets the number of separators and
 * containers (',', ':', '{', '['): the size of the tree json-c would
 * build, known before it builds it. *too_big is set when what is at the
 * returned place is an integer beyond 64 bits. */
static size_t not_json_at(const char *text, size_t n, size_t *pieces, int *too_big) {
    int in_string = 0;
    *pieces = 0;
    *too_big = 0;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == ',' || c == ':' || c == '{' || c == '[') {
            ++*pieces;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t len = json_number(text + i, text + n);
            if (!len) return i;
            if (!memchr(text + i, '.', len) && !memchr(text + i, 'e', len) &&
                !memchr(text + i, 'E', len) && beyond_64_bits(text + i, len)) {
                *too_big = 1;
                return i;
            }
            i += len - 1;
        } else if (!strchr(" \t\r\n}]truefalsn", c) || !c) {
            return i;
        }
    }
    return n;
}

int pbjson_decode(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                  ProtobufCMessage **out, err_t *e) {
    size_t start = 0;
    while (start < len && strchr(" \t\r\n", json[start]) && json[start])
        start++;
    path top = {""};
    if (start == len) {
        json_object *empty = json_object_new_object();
        if (!empty) return err_set(e, ERR_NOMEM, "out of memory");
        int rc = decode_object(d, empty, &top, 0, NULL, out, e);
        json_object_put(empty);
        return rc;
    }
    if (len > INT32_MAX) return err_set(e, ERR_LIMIT, "JSON text too large");
    size_t pieces;
    int too_big;
    size_t stray = not_json_at(json + start, len - start, &pieces, &too_big);
    if (stray < len - start && too_big)
        return err_set(e, ERR_INVALID,
                       "invalid JSON request: the integer at byte %zu is out of range of 64 bits",
                       start + stray);
    if (stray < len - start)
        return err_set(e, ERR_INVALID, "invalid JSON request: '%c' at byte %zu is not JSON",
                       json[start + stray], start + stray);
    if (pieces > PBJSON_MAX_PIECES)
        return err_set(e, ERR_INVALID,
                       "invalid JSON request: %zu values and keys, more than the %d a request "
                       "may hold",
                       pieces, PBJSON_MAX_PIECES);
    /* json-c counts nesting from the top object: one level more than ours. */
    struct json_tokener *tok = json_tokener_new_ex(PBJSON_MAX_DEPTH + 1);
    if (!tok) return err_set(e, ERR_NOMEM, "out of memory for the JSON parser");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    int rc;
    if (!root || jerr != json_tokener_success) {
        rc = err_set(e, ERR_INVALID, "invalid JSON request: %s at byte %zu",
                     jerr == json_tokener_continue ? "the text ends too soon"
                                                   : json_tokener_error_desc(jerr),
                     end);
    } else {
        while (end < len && json[end] && strchr(" \t\r\n", json[end]))
            end++;
        if (end < len)
            rc = err_set(e, ERR_INVALID, "invalid JSON request: text after the object at byte %zu",
                         end);
        else if (json_object_get_type(root) != json_type_object)
            rc = err_set(e, ERR_INVALID, "invalid JSON request: a %s must be a JSON object",
                         d->short_name);
        else {
            key_counts k = {0};
            if (count_keys(json + start, len - start, &k))
                rc = err_set(e, ERR_NOMEM, "out of memory counting keys");
            else
                rc = decode_object(d, root, &top, 0, &k, out, e);
            free(k.n);
        }
    }
    json_object_put(root);
    return rc;
}

int pbjson_decode_pairs(const ProtobufCMessageDescriptor *d, const char *const *names,
                        const char *const *values, size_t n, ProtobufCMessage **out, err_t *e) {
    json_object *obj = json_object_new_object();
    if (!obj) return err_set(e, ERR_NOMEM, "out of memory");
    int rc = ERR_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        path here, none = {""};
        path_field(&here, &none, names[i]);
        const ProtobufCFieldDescriptor *f = field_by_key(d, names[i]);
        json_object *v = NULL;
        if (!f) {
            char what[160];
            snprintf(what, sizeof what, "%.60s has no field '%.60s'", d->name, names[i]);
            rc = bad(e, &here, "%s", what);
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            rc = bad(e, &here, "%s", "a message field cannot be given in a query");
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            /* Under the field's own name, so that both spellings add up. */
            json_object *arr = NULL;
            if (!json_object_object_get_ex(obj, f->name, &arr)) {
                if (!(arr = json_object_new_array()) || json_object_object_add(obj, f->name, arr)) {
                    json_object_put(arr);
                    rc = err_set(e, ERR_NOMEM, "out of memory");
                    break;
                }
            }
            const char *s = values[i];
            while (!rc) {
                size_t len = strcspn(s, ",");
                json_object *item = json_object_new_string_len(s, (int)len);
                if (!item || json_object_array_add(arr, item)) {
                    json_object_put(item);
                    rc = err_set(e, ERR_NOMEM, "out of memory");
                }
                if (!s[len]) break;
                s += len + 1;
            }
            continue;
        } else if (json_object_object_get_ex(obj, f->name, NULL)) {
            rc = bad(e, &here, "%s", "the field is given twice");
        } else if (f->type == PROTOBUF_C_TYPE_BOOL) {
            if (strcmp(values[i], "true") && strcmp(values[i], "false"))
                rc = bad(e, &here, "%s", "expected true or false");
            else
                v = json_object_new_boolean(!strcmp(values[i], "true"));
        } else {
            v = json_object_new_string(values[i]);
        }
        if (!rc && (!v || json_object_object_add(obj, f->name, v))) {
            json_object_put(v);
            rc = err_set(e, ERR_NOMEM, "out of memory");
        }
    }
    path top = {""};
    if (!rc) rc = decode_object(d, obj, &top, 0, NULL, out, e);
    json_object_put(obj);
    return rc;
}

/* --- encoding ---------------------------------------------------------------- */

/* The shortest text of v (finite) that reads back as the same float
 * (single) or double, laid out as protobuf's printers (Python's repr) do:
 * plain digits for decimal exponents -4 .. 15 ("40", "0.001"), else
 * "1e+20". The first of 6..9 (float) or 15..17 (double) significant
 * digits that reads back, without its trailing zeros, is the shortest: a
 * shorter text that reads back lies within half a unit in the last place
 * of v, far inside the rounding step of that many digits, so it is that
 * text cut. The layout is done on the digits, not by printf again (this is
 * most of the codec's time on a list of scores). */
static void shortest(double v, int single, char *buf, size_t cap) {
    char sci[40];
    int prec = single ? 6 : 15, last = single ? 9 : 17;
    for (;; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec - 1, v);
        if (prec == last || (single ? strtof(sci, NULL) == (float)v : strtod(sci, NULL) == v))
            break;
    }
    /* sci is [-]D.DDDDe[+-]XX: the digits, without trailing zeros. */
    const char *p = sci;
    char digits[24];
    size_t n = 0;
    int neg = *p == '-';
    p += neg;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[n++] = *p;
    int exp10 = atoi(p + 1);
    while (n > 1 && digits[n - 1] == '0')
        n--;
    size_t w = 0;
#define PUT(c) (w + 1 < cap ? (void)(buf[w++] = (char)(c)) : (void)0)
    if (neg) PUT('-');
    if (exp10 >= 16 || exp10 < -4) {
        PUT(digits[0]);
        if (n > 1) PUT('.');
        for (size_t i = 1; i < n; i++)
            PUT(digits[i]);
        char tail[16];
        snprintf(tail, sizeof tail, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
        for (const char *t = tail; *t; t++)
            PUT(*t);
    } else if (exp10 < 0) {
        PUT('0');
        PUT('.');
        for (int i = -1; i > exp10; i--)
            PUT('0');
        for (size_t i = 0; i < n; i++)
            PUT(digits[i]);
    } else {
        for (int i = 0; i <= exp10; i++)
            PUT((size_t)i < n ? digits[i] : '0');
        if (n > (size_t)exp10 + 1) PUT('.');
        for (size_t i = (size_t)exp10 + 1; i < n; i++)
            PUT(digits[i]);
    }
#undef PUT
    if (cap) buf[w] = '\0';
}

static json_object *encode_message(const ProtobufCMessage *m);

static json_object *encode_real(double v, int single) {
    if (isnan(v)) return json_object_new_string("NaN");
    if (isinf(v)) return json_object_new_string(v > 0 ? "Infinity" : "-Infinity");
    char buf[40];
    shortest(v, single, buf, sizeof buf);
    return json_object_new_double_s(v, buf);
}

static json_object *encode_value(const ProtobufCFieldDescriptor *f, const void *p) {
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_object_new_int(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_object_new_int64(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)p);
        return json_object_new_string(buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)p);
        return json_object_new_string(buf);
    case PROTOBUF_C_TYPE_FLOAT:
        return encode_real(*(const float *)p, 1);
    case PROTOBUF_C_TYPE_DOUBLE:
        return encode_real(*(const double *)p, 0);
    case PROTOBUF_C_TYPE_BOOL:
        return json_object_new_boolean(*(const protobuf_c_boolean *)p ? 1 : 0);
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        return ev ? json_object_new_string(ev->name) : json_object_new_int(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_object_new_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        static const char digits[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const ProtobufCBinaryData *b = p;
        char *s = malloc((b->len + 2) / 3 * 4 + 1);
        if (!s) return NULL;
        size_t n = 0;
        for (size_t i = 0; i < b->len; i += 3) {
            uint32_t v = (uint32_t)b->data[i] << 16;
            if (i + 1 < b->len) v |= (uint32_t)b->data[i + 1] << 8;
            if (i + 2 < b->len) v |= b->data[i + 2];
            s[n++] = digits[v >> 18 & 63];
            s[n++] = digits[v >> 12 & 63];
            s[n++] = i + 1 < b->len ? digits[v >> 6 & 63] : '=';
            s[n++] = i + 2 < b->len ? digits[v & 63] : '=';
        }
        json_object *o = json_object_new_string_len(s, (int)n);
        free(s);
        return o;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub ? encode_message(sub) : json_object_new_object();
    }
    }
    return NULL;
}

/* Whether field f of m is written: proto3's rule - not at its default. */
static int present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    const void *p = member(m, f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)member(m, f->quantifier_offset) > 0;
    if (is_oneof(f)) return *(const uint32_t *)member(m, f->quantifier_offset) == f->id;
    if (has_flag(f)) return *(const protobuf_c_boolean *)member(m, f->quantifier_offset) != 0;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED) return 1;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s && (f->label == PROTOBUF_C_LABEL_OPTIONAL || s[0]);
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p != NULL;
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len > 0;
    case PROTOBUF_C_TYPE_FLOAT:
        /* -0.0 is the default too: protobuf-c does not send it either, so
         * both transports answer the same. */
        return *(const float *)p != 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p != 0;
    default: {
        static const unsigned char zero[8];
        return memcmp(p, zero, value_size(f->type)) != 0;
    }
    }
}

static json_object *encode_message(const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    json_object *obj = json_object_new_object();
    if (!obj) return NULL;
    char name[PBJSON_MAX_NAME];
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!present(m, f)) continue;
        json_object *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)member(m, f->quantifier_offset);
            const char *arr = *(char *const *)member(m, f->offset);
            v = json_object_new_array_ext((int)n);
            for (size_t k = 0; v && k < n; k++) {
                json_object *item = encode_value(f, arr + k * value_size(f->type));
                if (!item || json_object_array_add(v, item)) {
                    json_object_put(item);
                    json_object_put(v);
                    v = NULL;
                }
            }
        } else {
            v = encode_value(f, member(m, f->offset));
        }
        pbjson_field_name(f, name, sizeof name);
        if (!v || json_object_object_add(obj, name, v)) {
            json_object_put(v);
            json_object_put(obj);
            return NULL;
        }
    }
    return obj;
}

int pbjson_encode(const ProtobufCMessage *m, char **out, size_t *len, err_t *e) {
    json_object *obj = encode_message(m);
    if (!obj) return err_set(e, ERR_NOMEM, "out of memory writing JSON");
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *copy = s ? malloc(n + 1) : NULL;
    if (copy) memcpy(copy, s, n + 1);
    json_object_put(obj);
    if (!copy) return err_set(e, ERR_NOMEM, "out of memory writing JSON");
    *out = copy;
    *len = n;
    return ERR_OK;
}
