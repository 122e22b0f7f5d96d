/* pipeline: the training job as library calls, shared by recd train and
 * recd tune: a history (purchase rows, then the events a server recorded)
 * -> the users x items confidence matrix -> implicit ALS, and churn on the
 * purchase rows -> a published model. What tune publishes is therefore what
 * train makes with the same parameters, from the history tune already holds.
 *
 * Nothing here prints: progress comes through callbacks and the figures to
 * report through out-parameters; churn's evaluation report goes to the
 * stream the caller names. Below it: model (publishing, the event and
 * privacy stores), features and util. */
#ifndef RECD_PIPELINE_H
#define RECD_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "als.h"
#include "attrmap.h"
#include "churn.h"
#include "err.h"
#include "events.h"
#include "itemsim.h"
#include "labels.h"
#include "model.h"
#include "repeat.h"
#include "together.h"

/* Appends every event recorded in events_dir (recd serve --events) to
 * history as recorded events weighing weights[type] (types weighing 0 are
 * skipped, and so are events dated more than a day ahead of the clock, see
 * evstore_load) and fills *added with their number and *future (may be
 * NULL) with the events skipped for their date. Returns
 * ERR_OK, or the event store's error (ERR_INVALID for a bad weight,
 * ERR_IO, ERR_FORMAT, ERR_VERSION, ERR_INTERNAL, ERR_NOMEM), its message
 * naming the store; history may then hold part of the events. Not
 * thread-safe on one history. */
int pipeline_add_recorded(ev_set *history, const char *events_dir, const float weights[EV_TYPE_END],
                          size_t *added, size_t *future, err_t *e);

/* Leaves the members that the server of events_dir was told to forget
 * (ForgetUser, PRIVACY_FORGOTTEN in its privacy store) out of the whole
 * history, purchase rows included, keeping the order of the other events,
 * and fills *forgotten with the members left out. An opt-out only stops
 * personal serving: those members stay. Returns ERR_OK, or ERR_IO /
 * ERR_FORMAT / ERR_INTERNAL (the privacy store), ERR_NOMEM. */
int pipeline_leave_out_forgotten(ev_set *history, const char *events_dir, uint32_t *forgotten,
                                 err_t *e);

typedef struct pipeline_params {
    als_params als;         /* its progress callback hears of every iteration */
    float half_life_days;   /* an event counts 0.5^(age / this) of its weight; 0 = no decay */
    float popularity_blend; /* model_meta.popularity_blend: 0 pure ALS, +inf popularity only */
    /* The family: item.algorithm ALS publishes the factors alone; an
     * item-item family publishes its rows beside them (the factors still
     * serve diversity, campaign affinity and churn explanations). */
    itemsim_params item;
    /* A blend of two families, when blend_share > 0 (item must then be an
     * item-item family): score = (1 - t) * s_item / scale_item + t * s_with
     * / scale_with, t = blend_share, each scale itemsim_score_scale's on the
     * training matrix; with.algorithm another item-item family (its rows
     * merge into one) or ALS (model_meta.als_blend). */
    itemsim_params with;
    float blend_share;
    /* The "bought together" lists published beside every family
     * (training/together.h); together.neighbors 0 = none. */
    together_params together;
    /* The repurchase model ("buy it again", training/repeat.h) published
     * beside every family; repeat.horizon_days 0 = none. */
    repeat_params repeat;
    /* Trains churn beside the recommendations when not NULL (not owned),
     * writing its evaluation report to churn_report. */
    const churn_params *churn;
    FILE *churn_report;
    /* Called once the matrix is built and churn trained, as ALS starts;
     * may be NULL. */
    void (*matrix)(void *ctx, uint32_t n_users, uint32_t n_items, uint64_t nonzeros);
    void *matrix_ctx;
    /* Optional catalogues (features/labels.h; borrowed, NULL = none). Every
     * item of items becomes an item of the model, with its category, price
     * and publication time; the mapping from its labels to the ALS item
     * factors is learned on the items with interactions (training/attrmap.h)
     * and gives their vectors to those without. users likewise maps member
     * labels to the user factors (for members without history, at request
     * time); it adds no member. */
    const labels_table *items;
    const labels_table *users;
    /* Filled with the mappings' validation figures when not NULL. */
    struct pipeline_maps {
        attrmap item, user;      /* their map arrays freed: the figures only */
        uint32_t catalogue_only; /* items with no interaction given a mapped vector */
    } * maps;
} pipeline_params;

/* Adds every row of items to history's items (its id interned, its category
 * set when it has one, replacing the history's), so that catalogue-only
 * items exist in the model. Returns ERR_OK, ERR_NOMEM, ERR_LIMIT. */
int pipeline_add_catalogue(ev_set *history, const labels_table *items, err_t *e);

/* ALS defaults (als_params_init), itemsim_params_init for item and with,
 * algorithm ALS (pure ALS), together_params_init, repeat_params_init, no decay, no blend, no
 * churn, no callback. */
void pipeline_params_init(pipeline_params *p);

/* Trains on history and publishes the model into model_dir (see
 * model_publish), filling *published with its metadata (version, sizes,
 * loss, training seconds). r_ui = the sum of the weights of user u's events
 * on item i (ev_event.weight: a purchase row counts 1, whatever its
 * quantity), each decayed by its age from the latest event of the history
 * (eval_event_weights: what evaluation and tuning measure). Churn, when
 * asked for, learns from the purchase rows only (recorded events are not
 * purchases with money); it sorts those rows in place, so history's event
 * order changes. Returns ERR_OK; ERR_INVALID for an empty history (no
 * usable purchase rows or events), or a churn problem; ERR_NOMEM; the
 * errors of als_train and model_publish. Nothing is published on error. */
int pipeline_train(ev_set *history, const pipeline_params *p, const char *model_dir,
                   model_meta *published, err_t *e);

#endif
