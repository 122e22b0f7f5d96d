/* idstate: a small state per id (an item's availability and boost, a
 * member's privacy choice, the experiment's shares) that must outlive model
 * swaps and restarts.
 *
 * Kept in memory for lookups on the request path (a hash map, no LMDB
 * transaction) and written through to an LMDB environment of its own, synced
 * before a put returns. Values have one fixed size per store, or any size
 * up to IDSTATE_MAX_RECORD in a store opened with value size 0 (the items a
 * storefront upserted: their labels and titles vary). Thread-safe. */
#ifndef RECD_IDSTATE_H
#define RECD_IDSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define IDSTATE_MAX_VALUE 512    /* bytes of one value of a fixed size */
#define IDSTATE_MAX_RECORD 65536 /* bytes of one value of a store of any size */

typedef struct idstate idstate;

/* Opens the store in dir (created if missing), loading every stored value,
 * or an in-memory store when dir is NULL; value_size 0 = values of any size
 * (1..IDSTATE_MAX_RECORD). *out is owned by the caller: idstate_close.
 * Returns ERR_OK, ERR_INVALID (value_size), ERR_IO, ERR_FORMAT (a stored
 * value of another size), ERR_INTERNAL (LMDB). */
int idstate_open(const char *dir, size_t value_size, idstate **out, err_t *e);
void idstate_close(idstate *s);

/* Sets id's value durably. Returns ERR_OK; ERR_LIMIT (the store's map is
 * full), ERR_IO, ERR_INTERNAL (LMDB), and nothing changed; or ERR_NOMEM /
 * ERR_LIMIT (too many ids) when the stored value could not be kept in
 * memory: it is then served after the next restart. */
int idstate_put(idstate *s, const char *id, size_t len, const void *value, err_t *e);

/* As idstate_put, recording `at` (a position > 0 in an external, ordered
 * log: recd's event bus) in the same LMDB transaction. Setting a value is
 * idempotent, so a position applied again is simply written again. */
int idstate_put_at(idstate *s, const char *id, size_t len, const void *value, uint64_t at,
                   err_t *e);

/* One value of idstate_put_many. */
typedef struct idstate_kv {
    const char *id;
    size_t len;
    const void *value;
    size_t value_len; /* the store's value size, or 1..IDSTATE_MAX_RECORD */
} idstate_kv;

/* Sets n values in one durable LMDB transaction (all or none on disk),
 * recording `at` with them when it is not 0. Errors as idstate_put, and
 * ERR_INVALID for a value of the wrong size (then nothing is written). */
int idstate_put_many(idstate *s, const idstate_kv *kv, size_t n, uint64_t at, err_t *e);

/* The last position idstate_put_at recorded (also in an earlier run), 0
 * when none. */
uint64_t idstate_applied(idstate *s);

/* Copies id's value into value; ERR_OK, ERR_NOTFOUND when none was set, or
 * ERR_INVALID for a store of values of any size (read those by
 * idstate_each). */
int idstate_get(idstate *s, const char *id, size_t len, void *value);

/* Calls fn for every id with its value of value_len bytes (under the
 * store's lock: fn must not call back into s; value is valid during the
 * call). */
typedef void (*idstate_each_fn)(void *ctx, const char *id, size_t len, const void *value,
                                size_t value_len);
void idstate_each(idstate *s, idstate_each_fn fn, void *ctx);

/* A number that changes with every put, so that derived data can tell it is
 * stale. */
unsigned long idstate_generation(idstate *s);

#endif
