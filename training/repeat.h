/* repeat: "buy it again" - the repurchase model (util/rebuy.h's
 * arithmetic) learned from a purchase history, its calibration against new
 * items on a validation window of the training data, and the offline
 * protocol `recd eval --repeat` that measures it against personal
 * top-frequency and most-popular.
 *
 * A purchase occasion is a member's purchase day of an item (purchase
 * events: history rows and recorded PURCHASE events); several lines or
 * invoices of one day are one occasion, since a member rebuys on a rhythm
 * of days. With o_i the occasions of item i, b_i its buyers and the gaps
 * d between a member's consecutive occasions of i (in days):
 *     r_i     = (o_i - b_i + m * r) / (o_i + m)
 *     mu_i    = (sum log d + m * mu) / (gaps_i + m)
 *     sigma_i = sqrt((sum (log d - mu_i)^2 + m * var) / (gaps_i + m))
 * where r, mu and var are the catalogue's (the same sums over all items)
 * and m the shrinkage: a rare item is the catalogue's average repeat item.
 *
 * Calibration (repeat_train): the last H days of the training data are a
 * validation window. The repurchase model and an ALS model (the caller's
 * parameters) are fitted on what came before; for a sample of the members
 * who had bought something by then, the raw probability of each item they
 * had bought is compared with whether they bought it in the window (Platt
 * scaling, two numbers), and the new items of their ALS list with the same
 * (the share of members who bought the item at each rank, made
 * non-increasing: the curve). How much of what members buy next is a
 * repeat is thus learned from the data, per shop. The items' numbers are
 * then fitted again on the whole history. The test split of an evaluation
 * is never seen: the caller leaves it out (skip). */
#ifndef RECD_REPEAT_H
#define RECD_REPEAT_H

#include <stdint.h>
#include <stdio.h>

#include "als.h"
#include "csr.h"
#include "err.h"
#include "events.h"
#include "rebuy.h"

typedef struct repeat_params {
    float horizon_days; /* H: the window a probability is about, > 0 */
    float shrinkage;    /* m above, >= 0 */
    float strength;     /* s of rebuy.h, >= 0 */
    float gap_weight;   /* g of rebuy.h, >= 0 */
    /* Members of the validation window the calibration scores (evenly
     * spread); more cost an ALS list each. */
    uint32_t calibration_members;
} repeat_params;

/* H 30 days, m 10, s 2, g 2, 5000 calibration members. None is tuned to a
 * data set. */
void repeat_params_init(repeat_params *p);

/* A trained repurchase model; items is owned: repeat_free. */
typedef struct repeat_model {
    uint32_t n_items;
    float params[REBUY_N_PARAMS];
    float *items; /* n_items x REBUY_ITEM_FLOATS */
    float curve[REBUY_CURVE];
    uint32_t calibration_members; /* members the calibration scored (0: none, identity) */
} repeat_model;

/* The model as util/rebuy.h reads it (pointers into m). */
rebuy_model repeat_view(const repeat_model *m);

/* Fits *out on history's purchase events with ts < until, leaving out
 * event i where skip[i] (NULL: none), calibrated on [until - H days,
 * until) as above (with als for the validation ALS; its progress callback
 * is not called). A history whose window or earlier part is empty gets
 * the identity calibration and a zero curve (calibration_members 0).
 * Returns ERR_OK, ERR_INVALID (a bad parameter), ERR_NOMEM, or als_train's
 * error; out is zeroed on failure. */
int repeat_train(const ev_set *history, const uint8_t *skip, int64_t until, const repeat_params *p,
                 const als_params *als, repeat_model *out, err_t *e);

/* The member-item numbers of rebuy.h for every entry of rows (users x
 * items, e.g. the model's user_items): n occasions (0 when the member did
 * not buy the item, e.g. only viewed it), the days from the last
 * occasion's time to until, the span in days, from history's purchase
 * events with ts < until (and not skipped). *out gets nnz(rows) x
 * REBUY_PAIR_FLOATS floats, owned by the caller (free). Returns ERR_OK or
 * ERR_NOMEM. */
int repeat_pairs(const ev_set *history, const uint8_t *skip, int64_t until, const csr *rows,
                 float **out, err_t *e);

/* Frees what m owns and zeroes it; safe on a zeroed model. */
void repeat_free(repeat_model *m);

/* --- offline evaluation: recd eval --repeat --- */

/* The protocol: events before cutoff train (ALS with als on their
 * confidence - each event's weight - and repeat_train with until =
 * cutoff), the purchases in [cutoff, cutoff + H days) are held out, items
 * bought before included. Every member with a purchase before cutoff and
 * one in the window is a query; relevant = the distinct items bought in
 * the window. Ranked for each: most-popular (distinct buyers before
 * cutoff), personal top-frequency (the member's items by occasions, then
 * the latest first, then most-popular), ALS over every item, buy-again
 * alone (the member's items by probability, mode BUY_AGAIN) and recd
 * (include_purchased: rebuy_merge of both, what the server answers). Prints
 * HR@k, NDCG@k and recall@k at each of ks to out, with the repeat share of
 * the window and of recd's lists. Returns ERR_OK, ERR_INVALID (no query),
 * ERR_NOMEM, or a training error. */
int repeat_evaluate(const ev_set *s, int64_t cutoff, const repeat_params *p, const als_params *als,
                    const uint32_t *ks, uint32_t n_ks, FILE *out, err_t *e);

#endif
