/* busmsg: the messages on recd's event bus (bus.h), one per write: how a
 * replica encodes a write it publishes (core_bus) and how every replica,
 * and recd train --bus, reads it back.
 *
 * A message: u8 version (BUSMSG_VERSION), u8 op, then the op's fields;
 * strings are a u16 LE length and the bytes, numbers little-endian. The
 * fields of each op are core_bus's to say; a record (an event or a
 * feedback) is busmsg_put_record's layout. A reader never reads past the
 * message: a field that does not fit sets `bad` and reads as 0 or "".
 *
 * No allocation but the writer's buffer; no shared state. */
#ifndef RECD_BUSMSG_H
#define RECD_BUSMSG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "evstore.h"

#define BUSMSG_VERSION 1

/* The operations on the bus: name, code (codes are on the wire: never
 * renumber). */
#define BUSMSG_OP_MAP(X)                                                                           \
    X(EVENTS, 1)                                                                                   \
    X(FEEDBACK, 2)                                                                                 \
    X(AVAILABILITY, 3)                                                                             \
    X(BOOSTS, 4)                                                                                   \
    X(FORGET, 5)                                                                                   \
    X(PERSONALIZATION, 6)                                                                          \
    X(EXPERIMENT, 7)                                                                               \
    X(ITEMS, 8)

enum busmsg_op {
#define BUSMSG_OP_ENUM(name, code) BUSMSG_##name = code,
    BUSMSG_OP_MAP(BUSMSG_OP_ENUM)
#undef BUSMSG_OP_ENUM
};

/* A message being written: p[0..n). Zero it, then busmsg_begin. The buffer
 * is the caller's to free (free(w.p)), also after a failure; once an
 * allocation failed, `failed` is set and the later puts do nothing. */
typedef struct busmsg_writer {
    unsigned char *p;
    size_t n, cap;
    int failed;
} busmsg_writer;

/* Writes the version and op. */
void busmsg_begin(busmsg_writer *w, int op);
void busmsg_put_bytes(busmsg_writer *w, const void *d, size_t n);
/* The low `bytes` bytes of v (1..8). */
void busmsg_put_u(busmsg_writer *w, uint64_t v, int bytes);
/* A string of at most 65535 bytes (ids are far shorter). */
void busmsg_put_str(busmsg_writer *w, const char *s, size_t n);
void busmsg_put_f64(busmsg_writer *w, double d);
/* ev's user, item, type, time, quantity and price. */
void busmsg_put_record(busmsg_writer *w, const evstore_event *ev);

/* A message being read: p[0..n), at the read position. */
typedef struct busmsg_reader {
    const unsigned char *p;
    size_t n, at;
    int bad; /* a field did not fit in the message */
} busmsg_reader;

/* Starts reading data[0..len) (borrowed while r is used) and fills *op.
 * Returns ERR_OK, or ERR_FORMAT (too short, or another version) naming
 * seq, the message's stream sequence. */
int busmsg_open(busmsg_reader *r, const void *data, size_t len, uint64_t seq, int *op, err_t *e);
uint64_t busmsg_get_u(busmsg_reader *r, int bytes);
/* Points into the message (not NUL-terminated); *len its length. */
const char *busmsg_get_str(busmsg_reader *r, size_t *len);
double busmsg_get_f64(busmsg_reader *r);
/* A record of busmsg_put_record; its ids point into the message. Check
 * r->bad afterwards. */
void busmsg_get_record(busmsg_reader *r, evstore_event *ev);

/* ERR_FORMAT, "bus message SEQ: why": a message that can never be
 * applied. */
int busmsg_bad(err_t *e, uint64_t seq, const char *why);

#endif
