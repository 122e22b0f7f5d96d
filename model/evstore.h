/* evstore: the durable event store, an append-only LMDB environment of the
 * storefront's events (views, carts, purchases, favorites), separate from
 * the read-only model.
 *
 * Appends are group-committed: evstore_append queues the caller's events and
 * blocks until a writer thread has written them, together with everything
 * else queued while the previous commit was running, in one LMDB write
 * transaction, and that transaction has been fsynced. So an ERR_OK from
 * evstore_append means the events survive a kill -9 or a power cut, and a
 * thousand concurrent callers cost one fsync, not a thousand.
 *
 * Every event gets a sequence number (u64, from 1, increasing in commit
 * order, never reused). Readers see committed events only: a user's recent
 * events (the server's fold-in), everything from a sequence number on
 * (export, retraining), counts. Layout and growth: docs/event-store.md.
 *
 * A handle is safe to use from many threads at once. Do not carry it across
 * fork(): open the store in the process that uses it. */
#ifndef RECD_EVSTORE_H
#define RECD_EVSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "events.h"

#define EVSTORE_FORMAT_VERSION 1
#define EVSTORE_MAX_ID_LEN 256 /* bytes of a user or item id, as the service accepts */

/* One event. Ids are byte strings (1..EVSTORE_MAX_ID_LEN bytes of UTF-8,
 * not NUL-terminated). In events handed to a visitor, the ids point into
 * the store's memory map and are valid only during that call. */
typedef struct evstore_event {
    const char *user_id;
    size_t user_len;
    const char *item_id;
    size_t item_len;
    uint32_t type; /* an ev_type of util/events.h */
    int64_t ts;    /* unix seconds, >= 0 */
    uint32_t quantity;
    double price; /* unit price, finite and >= 0; 0 = unknown */
} evstore_event;

typedef struct evstore_options {
    /* Initial size of the memory map in bytes; the map doubles whenever a
     * commit does not fit, so this only saves the first few doublings.
     * Default 1 GiB (address space only: the file grows with the data). */
    size_t map_size;
    /* A commit takes whole append calls from the queue until it holds at
     * least this many events (one call is never split). Default 8192: far
     * below LMDB's limit of dirty pages per transaction, large enough that
     * the fsync dominates. */
    size_t max_batch_events;
    /* LMDB reader slots: concurrent read transactions of all processes
     * (server threads, an export). Default 256. */
    unsigned max_readers;
} evstore_options;

/* Fills o with the defaults above. */
void evstore_options_init(evstore_options *o);

typedef struct evstore evstore;

/* Opens the store in dir, creating the folder (one level) and an empty store
 * when missing, and starts its writer thread. o may be NULL for the
 * defaults. *out is owned by the caller: evstore_close. Returns ERR_OK,
 * ERR_IO (folder), ERR_FORMAT (dir holds something else), ERR_VERSION
 * (another format version), ERR_INTERNAL (LMDB, threads), ERR_NOMEM. */
int evstore_open(const char *dir, const evstore_options *o, evstore **out, err_t *e);

/* Commits what is queued, stops the writer, closes the environment and frees
 * s. No call on s may be running or start. NULL is a no-op. */
void evstore_close(evstore *s);

/* Appends events[0..n) durably and atomically (all or none) and fills
 * *first_seq (may be NULL) with the sequence number of events[0]; the others
 * follow consecutively. Blocks until the group commit holding them is
 * fsynced. The events are borrowed for the call. n == 0 commits nothing and
 * sets *first_seq to 0. Returns ERR_OK, ERR_INVALID (an event breaks the
 * rules of evstore_event: nothing is stored; the message names its index),
 * ERR_LIMIT (the map cannot grow further), ERR_IO / ERR_INTERNAL (the
 * commit failed: nothing of this call is stored). */
int evstore_append(evstore *s, const evstore_event *events, size_t n, uint64_t *first_seq,
                   err_t *e);

/* Applying an external, ordered log (recd's event bus): as evstore_append,
 * and records `at` (the log's position of these events, > 0) in the same
 * transaction, so that a process killed at any moment knows exactly what it
 * applied. A position at or before the recorded one was applied already:
 * nothing is written and *applied (may be NULL) is 0, else 1. n may be 0
 * (the position alone is recorded). Errors: those of evstore_append. */
int evstore_append_at(evstore *s, const evstore_event *events, size_t n, uint64_t at, int *applied,
                      err_t *e);

/* The last position recorded by evstore_append_at or evstore_forget_user_at
 * into *at, 0 when none. Returns ERR_OK, ERR_FORMAT, ERR_INTERNAL. */
int evstore_applied(evstore *s, uint64_t *at, err_t *e);

/* Called once per event by the readers, in sequence order. ev and its ids
 * are valid only during the call. Return 0 to go on, anything else to stop
 * (the reader then returns ERR_OK). A visitor runs inside a read
 * transaction that holds off map growth, so it must not call any evstore
 * function on the same store (a pending growth would deadlock with it). */
typedef int (*evstore_visit_fn)(void *ctx, uint64_t seq, const evstore_event *ev);

/* Visits the events of one user with ts > since_ts (INT64_MIN for all), in
 * sequence order: one cursor range scan, no matter how many events other
 * users have. Returns ERR_OK (also when the user has none), ERR_INVALID,
 * ERR_INTERNAL. */
int evstore_user_events(evstore *s, const char *user, size_t len, int64_t since_ts,
                        evstore_visit_fn fn, void *ctx, err_t *e);

/* As evstore_user_events, newest first, reading at most max_read of the
 * user's records (those with ts <= since_ts among them are read, not
 * visited): the cost of one call is bounded whatever the user recorded.
 * *truncated (may be NULL) is set when older records were left unread. */
int evstore_user_recent(evstore *s, const char *user, size_t len, int64_t since_ts, size_t max_read,
                        evstore_visit_fn fn, void *ctx, int *truncated, err_t *e);

/* Visits every event with seq >= from_seq in sequence order, from one
 * consistent snapshot. Returns ERR_OK, ERR_FORMAT (a damaged record),
 * ERR_INTERNAL. */
int evstore_scan(evstore *s, uint64_t from_seq, evstore_visit_fn fn, void *ctx, err_t *e);

/* Fills *n with the number of stored events and *next_seq (may be NULL)
 * with the sequence number the next event will get. Returns ERR_OK or
 * ERR_INTERNAL. */
int evstore_count(evstore *s, uint64_t *n, uint64_t *next_seq, err_t *e);

/* Appends every stored event to out (initialized by the caller with
 * ev_set_init), in sequence order, as recorded events (ev_event.recorded
 * 1) of their type and quantity, with weight = weights[type] and price NAN
 * when unknown (0), so that a trainer can merge the store with a CSV
 * history. Types with weight 0 are skipped, and so are events dated more
 * than EVSTORE_MAX_AHEAD_S after the load (a server whose clock ran ahead
 * recorded them; one would become the model's data_until and keep every
 * later live event out of it). Fills *added (may be NULL) with the events
 * appended and *future (may be NULL) with those skipped for their date.
 * Returns ERR_OK, ERR_INVALID (a weight negative or not finite), ERR_NOMEM,
 * ERR_FORMAT, ERR_INTERNAL. */
int evstore_load(evstore *s, const float weights[EV_TYPE_END], ev_set *out, size_t *added,
                 size_t *future, err_t *e);

/* What evstore_add_to_history did with an event. */
enum { EVSTORE_ADDED = 1, EVSTORE_SKIPPED_WEIGHT = 0, EVSTORE_SKIPPED_DATE = -1 };

/* Appends ev to out as evstore_load appends each stored event: a recorded
 * event weighing weights[type] (checked by the caller), unless that weight
 * is 0 or ev is dated after latest (unix seconds); *outcome says which.
 * For readers of events kept elsewhere (recd train --bus). Returns ERR_OK
 * or the errors of ev_set_add_event. */
int evstore_add_to_history(ev_set *out, const evstore_event *ev, const float weights[EV_TYPE_END],
                           int64_t latest, int *outcome, err_t *e);

/* How far after the clock an event may be dated: a day, as RecordEvents
 * and the CSV importer allow. */
#define EVSTORE_MAX_AHEAD_S 86400

/* Number of group commits (fsynced write transactions of appends) since
 * evstore_open: events appended / commits is the batching achieved. */
uint64_t evstore_commits(evstore *s);

/* Deletes every event of one user from the store (log and per-user index)
 * in one fsynced transaction and fills *deleted (may be NULL) with their
 * number; sequence numbers are not reused. Returns ERR_OK (also when the
 * user has none), ERR_INVALID, ERR_LIMIT, ERR_IO, ERR_INTERNAL. */
int evstore_forget_user(evstore *s, const char *user, size_t len, uint64_t *deleted, err_t *e);

/* As evstore_forget_user, recording the external log's position `at` in
 * the same transaction; a position at or before the recorded one changes
 * nothing (*deleted 0). */
int evstore_forget_user_at(evstore *s, const char *user, size_t len, uint64_t at, uint64_t *deleted,
                           err_t *e);

#endif
