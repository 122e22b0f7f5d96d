/* catalog: what the storefront says about items at run time - availability
 * (out of stock, delisted), merchandising boosts, and the descriptions of
 * items it upserted (UpsertItems: categories, labels, title, price,
 * publication time; new products above all) - kept by item id so that it
 * outlives model swaps, and persisted (two small LMDB environments) so that
 * it outlives restarts.
 *
 * For scoring, catalog_multipliers turns the rules into one float per item
 * of a given model: 0 for an unavailable item, its boost otherwise, 1 when
 * nothing was set; catalog_each_item reads the descriptions back (the
 * server gives new items their vectors from them). Thread-safe. */
#ifndef RECD_CATALOG_H
#define RECD_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "labels.h"
#include "model.h"

#define CATALOG_MAX_BOOST 100.0f

typedef struct catalog catalog;

/* Opens the rules stored in dir and the descriptions in items_dir (both
 * created if missing), or an in-memory catalog when dir is NULL. *out is
 * owned by the caller: catalog_close. */
int catalog_open(const char *dir, const char *items_dir, catalog **out, err_t *e);
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

/* The multiplier of one item by id, as catalog_multipliers gives it. */
float catalog_multiplier(catalog *c, const char *item, size_t len);

/* A number that changes whenever the state changes (rules or
 * descriptions), so that a cached multiplier array can tell it is stale. */
unsigned long catalog_generation(catalog *c);

/* --- descriptions (UpsertItems) ------------------------------------------- */

/* The folders of the rules and of the descriptions in a server's events folder. */
#define CATALOG_RULES_DIR "item-rules"
#define CATALOG_ITEMS_DIR "items"
/* The caps of a description: those of a row of a catalogue file. */
#define CATALOG_MAX_CATEGORIES 16             /* categories of one item */
#define CATALOG_MAX_LABELS LABELS_MAX_PER_ROW /* labels of one item */
#define CATALOG_MAX_LABEL LABELS_MAX_LEN      /* bytes of one label or category */
#define CATALOG_MAX_TITLE 1024                /* bytes of a title */
#define CATALOG_REASON 160 /* bytes of a reason made up by catalog_item_problem */

/* An item as the storefront describes it: a row of a catalogue file, in
 * fields (features/labels.h). */
typedef labels_item catalog_item;

/* Why it cannot be stored (a static text, or one written into buf of
 * CATALOG_REASON bytes), or NULL when it can: an id that is empty, too
 * long or not UTF-8 (as every id), more than the caps above of categories
 * and labels, an empty, too long or non-UTF-8 one, a title too long or
 * not UTF-8, a price that is negative or not finite, a negative time. */
const char *catalog_item_problem(const catalog_item *it, char buf[static CATALOG_REASON]);

/* Stores the n descriptions durably in one transaction (each replaces what
 * was stored for its id), recording `at` (a bus position, 0 = none) with
 * them. The items must have passed catalog_item_problem. Returns ERR_OK,
 * ERR_INVALID, ERR_NOMEM, ERR_LIMIT, ERR_IO, ERR_INTERNAL (storage). */
int catalog_upsert(catalog *c, const catalog_item *items, size_t n, uint64_t at, err_t *e);

/* Calls fn for every stored description (a view valid during the call;
 * under the catalog's lock: fn must not call back into c). */
void catalog_each_item(catalog *c, void (*fn)(void *ctx, const catalog_item *it), void *ctx);

/* The last position catalog_upsert recorded, 0 when none. */
uint64_t catalog_items_applied(catalog *c);

#endif
