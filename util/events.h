/* events: an in-memory purchase history, the common currency between the
 * importers (CSV, generator), training and evaluation.
 *
 * Users and items are interned into idmaps, so events carry dense indexes.
 * An ev_set owns its events array and both idmaps; free with ev_set_free. */
#ifndef RECD_EVENTS_H
#define RECD_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "idmap.h"

/* The event types, one row each: XX(NAME, value, name, word, weight).
 *   value   the public proto's EventType value (server/svc.c asserts that
 *           they agree), also what the event store keeps
 *   name    the spelling of exports and counts (the proto's, lower case)
 *   word    the spelling of the command line (recd query event,
 *           --event-weights)
 *   weight  its default weight in purchases, for the server's fold-in and
 *           for retraining alike
 * Rows ascend by value: EV_TYPE_END is one past the last. Adding a type is
 * a row here and its value in the proto. */
#define EV_TYPE_MAP(XX)                                                                            \
    XX(VIEW, 1, "view", "view", 0.1f)                                                              \
    XX(ADD_TO_CART, 2, "add_to_cart", "cart", 0.3f)                                                \
    XX(PURCHASE, 3, "purchase", "purchase", 1.0f)                                                  \
    XX(FAVORITE, 4, "favorite", "favorite", 0.5f)

typedef enum ev_type {
#define EV_TYPE_ENUM(name, value, str, word, weight) EV_TYPE_##name = value,
    EV_TYPE_MAP(EV_TYPE_ENUM)
#undef EV_TYPE_ENUM
        EV_TYPE_END /* size of an array indexed by type (0 is no type) */
} ev_type;

/* 1 when t is a value of the table, else 0. */
int ev_type_known(uint32_t t);

/* The name / command-line word of type t; NULL when t is not known. The
 * strings are static. */
const char *ev_type_name(uint32_t t);
const char *ev_type_word(uint32_t t);

/* The type whose word is word[0..len), or 0 when none is. */
uint32_t ev_type_of_word(const char *word, size_t len);

/* Writes the words as a sentence, "view, cart, purchase or favorite", into
 * buf (truncated to size - 1 bytes, NUL-terminated), for messages that
 * list the choices. */
void ev_type_words(char *buf, size_t size);

/* Fills w[0..EV_TYPE_END) with the default weight of each type (0 for
 * index 0 and any value no type has). */
void ev_type_default_weights(float w[EV_TYPE_END]);

typedef struct ev_event {
    uint32_t user, item; /* indexes into the set's idmaps */
    int64_t ts;          /* unix seconds, UTC */
    float quantity;      /* >= 0; 1 when the input had no quantity */
    float price;         /* unit price; NAN when the input had no price */
    /* Its weight in the confidence of training before time decay: 1 for a
     * purchase-history row (its quantity is units, not a weight), the
     * weight of its type for a recorded event. */
    float weight;
    uint8_t type;     /* ev_type; EV_TYPE_PURCHASE for a purchase-history row */
    uint8_t recorded; /* 1 = from the event store, 0 = a purchase-history row */
} ev_event;

typedef struct ev_set {
    ev_event *events;
    size_t n, cap;
    idmap *users, *items;
    /* Optional item categories: categories interns their ids and
     * item_category[i] (for i < n_item_category) is item i's category index;
     * items beyond n_item_category, or with UINT32_MAX, have none. */
    idmap *categories;
    uint32_t *item_category;
    uint32_t n_item_category;
} ev_set;

/* Initializes an empty set (both idmaps allocated). */
int ev_set_init(ev_set *s, err_t *e);
void ev_set_free(ev_set *s);

/* Appends one purchase-history row (type EV_TYPE_PURCHASE, weight 1, not
 * recorded), interning the ids. Returns ERR_OK, ERR_NOMEM, or ERR_LIMIT
 * (more users or items than an idmap holds). */
int ev_set_add(ev_set *s, const char *user, size_t user_len, const char *item, size_t item_len,
               int64_t ts, float quantity, float price, err_t *e);

/* Appends one event with every field but user and item copied from *fields
 * (its user and item are ignored), interning the ids. */
int ev_set_add_event(ev_set *s, const char *user, size_t user_len, const char *item,
                     size_t item_len, const ev_event *fields, err_t *e);

/* Records that item (an index of s->items) belongs to the category with the
 * given id; a later call for the same item replaces the earlier one.
 * Returns ERR_OK, ERR_NOMEM, or ERR_LIMIT (more categories than an idmap
 * holds). */
int ev_set_set_category(ev_set *s, uint32_t item, const char *category, size_t len, err_t *e);

/* The category index of item, or UINT32_MAX when it has none. */
uint32_t ev_set_item_category(const ev_set *s, uint32_t item);

/* Removes every event of the users with drop[user] != 0 (drop has one entry
 * per user of s) and re-interns the remaining ids, so that dropped users
 * leave no trace in s, not even their id. Item categories are kept. */
int ev_set_drop_users(ev_set *s, const uint8_t *drop, err_t *e);

/* How events at the same second are ordered by item id. Ascending is the
 * evaluation protocol of README; descending exists because it is the only
 * order that reproduces the published Online Retail reference figures (see
 * README, "Quality"). */
typedef enum { EV_TIES_ASCENDING, EV_TIES_DESCENDING } ev_tie_order;

/* Sorts each user's events by (timestamp, item id) and groups users
 * together: the order the temporal split and the fold-in need. Numeric ids
 * compare as numbers, others bytewise. Fills *user_start with n_users + 1
 * offsets into s->events (caller frees). */
int ev_set_sort_by_user_time(ev_set *s, ev_tie_order ties, uint64_t **user_start, err_t *e);

#endif
