/* bus: the replicas' event bus, a NATS JetStream stream that every write of
 * a cluster goes through (recd serve --bus).
 *
 * A write is published with a message id (JetStream drops a second message
 * with the same id within the stream's duplicate window, so a retried call
 * is stored once) and counts as done only once JetStream acknowledged it:
 * then it is in the stream, on as many NATS nodes as the stream has
 * replicas. Each replica applies the whole stream, its own writes included,
 * in stream order, through its own durable consumer (named by the replica
 * id): the applier thread hands every message to the caller's apply
 * function with its stream sequence. Where it restarts from is the caller's
 * to say (the sequence its stores recorded last), so the stores, not NATS,
 * are the truth of what was applied.
 *
 * The bus also measures how far behind the stream its replica is (lag:
 * the age of the oldest message not applied yet, 0 when none).
 *
 * Thread-safe. */
#ifndef RECD_BUS_H
#define RECD_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define BUS_MSG_ID_MAX 64 /* bytes of a message id, with its NUL */

/* Applies the message of stream sequence seq (data[0..len), the bus's
 * until the call returns). ERR_OK: applied (or found applied before);
 * ERR_INVALID / ERR_FORMAT: the message can never be applied (it is
 * skipped, with a log line); any other code: retried until it succeeds. */
typedef int (*bus_apply_fn)(void *ctx, uint64_t seq, const void *data, size_t len, err_t *e);

/* The model announcements of a cluster live in a JetStream key-value
 * bucket beside the stream, "<stream>-models": key "current" holds the
 * version a trainer announced (bus_announce), key "served.<replica-id>"
 * the version each replica serves (bus_report_served). */
#define BUS_VERSION_MAX 64 /* bytes of an announced version, with its NUL */

/* Told a replica the version announced (at start, the one announced last;
 * then each new one), on the bus's watcher thread. ERR_OK: done with it;
 * any other code: told again a second later, until it succeeds or another
 * version is announced (the version's folder may still be on its way). */
typedef int (*bus_announced_fn)(void *ctx, const char *version, err_t *e);

typedef struct bus_options {
    const char *urls;       /* nats://HOST:PORT[,nats://HOST:PORT...] */
    const char *stream;     /* the stream's name ("recd"); its subjects are "<stream>.>" */
    const char *replica_id; /* the durable consumer's name: letters, digits, - and _ */
    uint64_t start;         /* the last sequence the caller applied; 0 = none */
    bus_apply_fn apply;
    bus_announced_fn announced; /* NULL: the replica does not follow announcements */
    void *ctx;                  /* of apply and announced */
} bus_options;

typedef struct bus bus;

/* Connects to NATS (reconnecting for ever when it goes away), creates the
 * stream when it is missing (file storage, as many replicas as the NATS
 * cluster has nodes, up to 3), recreates the replica's durable consumer to
 * deliver from o->start (the caller's stores are the truth), and starts the
 * applier and the lag monitor. *out is owned by the caller: bus_close.
 * Errors: ERR_INVALID (options), ERR_IO (NATS unreachable, JetStream
 * refused), ERR_NOMEM, ERR_INTERNAL (threads). With o->announced, a
 * watcher thread follows the bucket's "current" key. */
int bus_open(const bus_options *o, bus **out, err_t *e);

/* Reads the whole stream, for a job rather than a replica (recd train
 * --bus): connects to urls, and hands every message from the stream's
 * first to the last one it held when the call began to fn, in order, on
 * the calling thread, through a consumer of its own that is deleted at the
 * end (and by the server a minute after the reader died). fn returning
 * ERR_INVALID or ERR_FORMAT skips the message (logged and counted in
 * *skipped); any other error stops the read and is returned. *last gets
 * the last sequence read (0: the stream is empty). Errors: ERR_INVALID
 * (urls, stream), ERR_IO (NATS unreachable, no such stream, a fetch that
 * timed out: the message says after which sequence), fn's. */
int bus_read(const char *urls, const char *stream, bus_apply_fn fn, void *ctx, uint64_t *last,
             uint64_t *skipped, err_t *e);

/* Records that this replica serves version (key "served.<replica-id>"),
 * for bus_models. Errors: ERR_INVALID (too long), ERR_IO (the bus is
 * down: the next report tells it). */
int bus_report_served(bus *b, const char *version, err_t *e);

/* Announces version to every replica following the bucket of stream (a
 * job: connects to urls for the call), creating the bucket when missing;
 * *revision gets the announcement's revision. Errors: ERR_INVALID, ERR_IO. */
int bus_announce(const char *urls, const char *stream, const char *version, uint64_t *revision,
                 err_t *e);

/* One replica's report. */
typedef struct bus_served {
    char replica[65];
    char version[BUS_VERSION_MAX];
    int64_t at_unix; /* when it reported */
} bus_served;

/* What the bucket holds: the version announced ("" when none) and every
 * replica's report, in key order. */
typedef struct bus_models {
    char announced[BUS_VERSION_MAX];
    int64_t announced_unix;
    bus_served *served; /* owned: bus_models_free */
    size_t n_served;
} bus_models;

/* Reads the bucket of stream (a job: connects to urls for the call) into
 * *out. Errors: ERR_INVALID, ERR_IO (unreachable; ERR_NOTFOUND when nothing
 * was ever announced or reported), ERR_NOMEM. */
int bus_models_read(const char *urls, const char *stream, bus_models *out, err_t *e);
void bus_models_free(bus_models *m);

/* Stops the threads and closes the connection; NULL is a no-op. */
void bus_close(bus *b);

/* Publishes data[0..len) with msg_id and waits for JetStream's
 * acknowledgement: *seq gets the message's stream sequence (the first
 * one's when msg_id was a duplicate). Errors: ERR_IO (the bus is down, or
 * did not acknowledge: the write may or may not be stored, and a retry with
 * the same id is stored once), ERR_LIMIT (too large). */
int bus_publish(bus *b, const void *data, size_t len, const char *msg_id, uint64_t *seq, err_t *e);

/* Waits until the applier has applied seq, at most timeout_s. Errors:
 * ERR_IO (not applied in time, or stopping). */
int bus_wait_applied(bus *b, uint64_t seq, double timeout_s, err_t *e);

/* The last sequence applied (o->start until the applier applies more). */
uint64_t bus_applied(bus *b);

/* The last sequence of the stream as last seen (0 before the first look). */
uint64_t bus_last(bus *b);

/* Seconds since the oldest message this replica has not applied was
 * published (0 when it has applied everything), or, when more, since the
 * stream's state was last read: a replica cut off from NATS, or whose
 * NATS does not answer, or that was stopped, cannot know what it missed
 * meanwhile, so that time counts as lag (an upper bound, never a guess of
 * 0). */
double bus_lag_seconds(bus *b);

/* Nonzero while connected to NATS. */
int bus_connected(bus *b);

/* Messages skipped because they could never be applied. */
uint64_t bus_skipped(bus *b);

#endif
