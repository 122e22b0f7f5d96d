/* together: "frequently bought together" - item-item co-occurrence in the
 * same basket, normalised against popularity, kept as a sparse top-N list
 * per item (util/itemrows.h's sparse form) that the model stores and
 * SimilarItems with relation BOUGHT_TOGETHER reads in place.
 *
 * A basket is what one member bought at one moment: the purchase events
 * (purchase-history rows and recorded PURCHASE events) of the same user at
 * the same timestamp. An import keeps no order id, and an invoice's lines
 * share its time, so (member, time) is the invoice. With B baskets, c_i
 * the baskets holding item i and c_ij those holding both i and j:
 *     lift         w_ij = c_ij * B / (c_i * c_j)
 *     conditional  w_ij = c_ij / (c_i + beta)
 * conditional is P(j | i) shrunk towards 0 for seeds seen in few baskets
 * (beta = the shrinkage); lift divides out j's popularity as well. Both
 * are measured by `recd eval --bought-together` (README "Frequently
 * bought together"); the default is the better one there. Row i keeps the
 * neighbours j != i with c_ij >= 1, best first (ties to the lower item
 * index), at most p.neighbors. */
#ifndef RECD_TOGETHER_H
#define RECD_TOGETHER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "events.h"
#include "itemrows.h"
#include "topk.h"

typedef enum together_measure { TOGETHER_LIFT, TOGETHER_CONDITIONAL } together_measure;

typedef struct together_params {
    together_measure measure;
    uint32_t neighbors; /* entries kept per item, >= 1 */
    float shrinkage;    /* beta of conditional, >= 0 */
} together_params;

/* The defaults: conditional (measured best on Online Retail), 50
 * neighbours, beta 10. */
void together_params_init(together_params *p);

/* The name of a measure ("lift", "conditional"). Static string. */
const char *together_measure_name(together_measure m);

/* The lists, owned by the model: together_free. */
typedef struct together_model {
    uint32_t n_items;
    uint64_t *indptr; /* n_items + 1 */
    uint32_t *index;
    float *value;
    uint64_t baskets; /* B */
} together_model;

/* Counts the baskets of history's purchase events, leaving out event i
 * where skip[i] != 0 (skip: one byte per event, or NULL for none), and
 * fills *out (n_items = the size of history's item map; history itself is
 * not changed). Items without a co-purchase get an empty row. Returns
 * ERR_OK, ERR_INVALID (neighbors 0 or a bad shrinkage), ERR_NOMEM (out
 * then zeroed). */
int together_fit(const ev_set *history, const uint8_t *skip, const together_params *p,
                 together_model *out, err_t *e);

/* The lists as item rows, pointing into m. */
itemrows together_rows(const together_model *m);

/* --- offline evaluation: held-out last baskets --- */

/* Sets is_test[i] (one byte per event of s) for the purchase events of
 * each member's last basket and clears it for every other event; s sorted
 * by ev_set_sort_by_user_time, user_start its runs. Only members with an
 * earlier basket and at least two distinct items in the last one are held
 * out. Returns how many baskets are. */
uint32_t together_split_last_baskets(const ev_set *s, const uint64_t *user_start, uint8_t *is_test);

/* A ranker for together_hit_rate: the best k items for the n seed items
 * (a cart; never a seed) into out, their number into *n_out. Returns ERR_OK
 * or ERR_NOMEM. */
typedef int (*together_rank_fn)(void *ctx, const uint32_t *seeds, size_t n, uint32_t k,
                                topk_entry *out, uint32_t *n_out, err_t *e);

/* HR@k of rank over the held-out baskets of is_test. The items of a basket
 * that also have a purchase outside the held-out ones, in item index
 * order, are cut into consecutive carts of cart items (a shorter rest is
 * left out); each cart is a query, a hit when one of the basket's other
 * items is in its top k. *hr gets the mean over all queries and *queries
 * their number. Returns ERR_OK, ERR_INVALID (cart 0), ERR_NOMEM, or
 * rank's error. */
int together_hit_rate(const ev_set *s, const uint64_t *user_start, const uint8_t *is_test,
                      uint32_t cart, together_rank_fn rank, void *ctx, uint32_t k, double *hr,
                      uint64_t *queries, err_t *e);

/* Frees what m owns and zeroes it; safe on a zeroed model. */
void together_free(together_model *m);

#endif
