/* catalog: what the storefront says about items at run time - availability
 * (out of stock, delisted) and merchandising boosts - kept by item id so that
 * it outlives model swaps, and persisted (one small LMDB environment) so that
 * it outlives restarts.
 *
 * For scoring, catalog_multipliers turns the state into one float per item
 * of a given model: 0 for an unavailable item, its boost otherwise, 1 when
 * nothing was set. Thread-safe. */
#ifndef RECD_CATALOG_H
#define RECD_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "model.h"

#define CATALOG_MAX_BOOST 100.0f

typedef struct catalog catalog;

/* Opens the state stored in dir (created if missing), or an in-memory
 * catalog when dir is NULL. *out is owned by the caller: catalog_close. */
int catalog_open(const char *dir, catalog **out, err_t *e);
void catalog_close(catalog *c);

/* Records item's availability / boost multiplier (0 < m <= CATALOG_MAX_BOOST)
 * durably. Returns ERR_OK, ERR_INVALID, ERR_INTERNAL (storage). */
int catalog_set_available(catalog *c, const char *item, size_t len, bool available, err_t *e);
int catalog_set_boost(catalog *c, const char *item, size_t len, float multiplier, err_t *e);

/* As the two above, recording `at` (a position > 0 in recd's event bus;
 * 0 = none) in the same transaction as the state (idstate_put_at). */
int catalog_set_available_at(catalog *c, const char *item, size_t len, bool available, uint64_t at,
                             err_t *e);
int catalog_set_boost_at(catalog *c, const char *item, size_t len, float multiplier, uint64_t at,
                         err_t *e);

/* The last position recorded by the two above, 0 when none. */
uint64_t catalog_applied(catalog *c);

/* Fills mult (n_items of m) with each item's multiplier for model m and
 * returns true when any differs from 1. */
bool catalog_multipliers(catalog *c, const model *m, float *mult);

/* One item with a rule: unavailable, or available with a boost other than
 * 1 (an unavailable item's boost is inert, and not reported). */
typedef struct catalog_rule {
    const char *id; /* NUL-terminated, in the block catalog_rules allocates */
    float boost;    /* 1 for an unavailable item */
    bool available;
} catalog_rule;

/* Every item with a rule into *out (*n of them; *out and the ids are one
 * block owned by the caller: free), the unavailable ones first, each group
 * by id (bytes): what a dashboard lists. Returns ERR_OK or ERR_NOMEM. */
int catalog_rules(catalog *c, catalog_rule **out, size_t *n, err_t *e);

/* A number that changes whenever the state changes, so that a cached
 * multiplier array can tell it is stale. */
unsigned long catalog_generation(catalog *c);

#endif
