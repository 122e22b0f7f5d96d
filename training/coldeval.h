/* coldeval: offline evaluation of cold start (recd eval --cold-items,
 * --cold-users). A seeded fraction of the items (or members) that have
 * catalogue labels is held out entirely - every interaction of theirs -
 * the rest trains ALS and the label-to-factor mapping (training/attrmap.h,
 * lambda chosen on a validation part of the training rows), and
 *   cold items: each user with a held-out interaction ranks all held-out
 *     items (as Rerank would), relevant = those the user had;
 *   cold users: each held-out member ranks every item from the vector of
 *     their labels alone, relevant = the items they had.
 * Baselines of the same run: random order; for items a content-based
 * profile (cosine between the user's label profile - the sum of the label
 * vectors of their training items - and the item's labels); for users the
 * global popularity (distinct training buyers) and the same-attribute
 * popularity (sum over the member's labels of the share of training members
 * with that label who bought the item). Metrics per user, averaged: NDCG@k
 * (binary), HR@k (at least one hit), recall@k (hits / relevant). */
#ifndef RECD_COLDEVAL_H
#define RECD_COLDEVAL_H

#include <stdint.h>

#include "als.h"
#include "attrmap.h"
#include "eval.h"
#include "events.h"
#include "labels.h"

#define COLDEVAL_MAX_MODELS 4

typedef struct coldeval_row {
    const char *name; /* static */
    double ndcg[EVAL_MAX_KS], hr[EVAL_MAX_KS], recall[EVAL_MAX_KS];
} coldeval_row;

typedef struct coldeval_result {
    uint32_t held_out;    /* items / members held out */
    uint64_t held_events; /* their events */
    uint32_t users;       /* users evaluated */
    uint32_t candidates;  /* items ranked per user */
    attrmap map;          /* the fitted mapping (its map array freed) */
    coldeval_row rows[COLDEVAL_MAX_MODELS];
    uint32_t n_rows;
} coldeval_result;

/* Runs the cold-item evaluation (users = 0, cat the item catalogue) or the
 * cold-user one (users = 1, cat the member catalogue) on s with fraction
 * held out, ALS with als, at ks. Fills *out. Returns ERR_OK, ERR_INVALID
 * (nothing held out or nobody to evaluate), ERR_NOMEM, the errors of
 * als_train and attrmap_fit. */
int coldeval_run(const ev_set *s, const labels_table *cat, int users, double fraction,
                 const als_params *als, const eval_config *ks, coldeval_result *out, err_t *e);

#endif
