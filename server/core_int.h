/* core_int: what the files of the core share (core__ names, as libuv's
 * uv__): the served models, request checks, the shopper and its fold-in,
 * and the write path of records. Not for front ends: they use core.h.
 *
 * The files: core.c (lifecycle, checks, metrics), core_model.c (served
 * models, item multipliers, the reload watcher), core_shopper.c (per-thread
 * buffers, what a request knows of its shopper, fold-in), core_rank.c
 * (Recommend with batching, SimilarItems, Rerank, the counts of what
 * Recommend served), core_write.c (events,
 * item rules, privacy and the record write path), core_churn.c (churn
 * scores, campaign targets), core_exp.c (variants, feedback, shares),
 * core_bus.c (the writes of a cluster, through the event bus). */
#ifndef RECD_CORE_INT_H
#define RECD_CORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "catalog.h"
#include "core.h"
#include "evstore.h"
#include "idstate.h"
#include "model.h"
#include "privacy.h"
#include "score.h"

/* --- served models (core_model.c) ------------------------------------------ */

/* The storefront's item multipliers for one model, as of one catalog
 * generation; shared by the requests that use it. */
typedef struct core__multipliers {
    atomic_uint refs;
    unsigned long generation;
    bool any;        /* false: every multiplier is 1, nothing to apply */
    float max_slope; /* the most a multiplier stretches a score difference */
    float v[];
} core__multipliers;

/* A model in service, shared by the requests that use it. */
typedef struct core__model {
    model *m;
    atomic_uint refs; /* one for being current, one per request using it */
    float *yty;       /* factors x factors, for fold-ins */
    pthread_mutex_t mult_lock;
    core__multipliers *mult; /* rebuilt when the catalog changes */
    /* Recommend answers from this model, and how many listed each item
     * (n_items counters: 8 bytes an item), since loaded_unix. */
    atomic_ullong answers;
    atomic_ullong *recommended;
    int64_t loaded_unix;
} core__model;

/* One variant of the experiment: the model directory it serves from. */
typedef struct core__slot {
    char *dir;
    core__model *current;
    char failed_version[MODEL_VERSION_MAX]; /* last version that would not open */
    /* The version folder DIR/current pointed to when current was loaded or
     * last found to hold it ("" = unknown): the watcher opens a folder only
     * when this changes. Watcher thread only, after core_open. */
    char seen_folder[MODEL_VERSION_MAX];
} core__slot;

#define CORE_BUS_FORGETS 64       /* ForgetUser replies a replica keeps the count of */
#define CORE_EXP_KEY "experiment" /* the experiment's key in exp_state */

struct core {
    /* Guards every slot's current, and exp's salt and shares. exp's n and
     * names are set by core_open and never change. */
    pthread_mutex_t lock;
    core__slot slots[EXP_MAX_VARIANTS];
    experiment exp;             /* names of the slots, shares, salt */
    pthread_mutex_t exp_update; /* one core_set_experiment (store, then apply) at a time */
    idstate *exp_state;         /* exp's shares and salt as last set; NULL without events */
    evstore *feedback;          /* NULL without events */
    atomic_ullong feedback_counts[EXP_MAX_VARIANTS][EXP_FEEDBACK_END]; /* by variant, type */
    atomic_ullong events_ingested, fold_ins;
    /* Recommend answers by core_strategy (the index; 0 and 4-6 unused). */
    atomic_ullong strategies[CORE_BUY_AGAIN + 1];
    atomic_ullong fold_ins_capped; /* shoppers with more than CORE_MAX_FOLD_EVENTS fresh events */
    evstore *events;               /* NULL without events */
    int events_lock;               /* descriptor holding the flock of the events folder, or -1 */
    catalog *rules;
    idstate *privacy; /* member id -> PRIVACY_* */
    float weights[EV_TYPE_END];
    double reload_interval_s;
    pthread_t watcher;
    int watcher_running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    int stopping;
    sched *scheduler;    /* NULL: no threads asked for */
    atomic_uint streams; /* streaming calls admitted and not ended */
    uint32_t max_streams;
    struct bus *bus;  /* NULL: no --bus, the stores are written directly */
    double max_lag_s; /* NOT_SERVING beyond this bus lag; 0 = never */
    /* ForgetUser's deleted counts by bus sequence, for the replica's reply. */
    pthread_mutex_t bus_forgets_lock;
    struct {
        uint64_t seq, deleted;
    } bus_forgets[CORE_BUS_FORGETS];
};

/* The served model of variant v, with a reference the caller releases. */
core__model *core__acquire_variant(core *c, uint32_t v);

/* The model of variant "control": what every operation but Recommend serves. */
core__model *core__acquire(core *c);

/* Drops a reference; the last one closes the model. */
void core__release(core__model *sm);

/* The multipliers of sm as of the catalog's current state (a reference the
 * caller releases with core__multipliers_release), rebuilt when the catalog
 * changed since: so no update of availability or boosts is ever missed,
 * whatever the order of model swaps and updates. NULL when out of memory. */
core__multipliers *core__multipliers_get(core *c, core__model *sm);
void core__multipliers_release(core__multipliers *mu);

/* Opens the current model of variant v and makes it the one served, unless
 * it is the version served already (a version folder copied under another
 * name): then only the folder is noted as seen. */
int core__load(core *c, uint32_t v, err_t *e);

/* Starts the watcher thread (reload_interval_s > 0), which polls the
 * variants' model directories and loads new publications; stopped by
 * core__watch_stop (a no-op when it never ran). */
int core__watch_start(core *c, err_t *e);
void core__watch_stop(core *c);

/* --- request checks (core.c) ----------------------------------------------- */

/* Why id is unusable (empty, too long, not UTF-8), or NULL when it is fine. */
const char *core__id_problem(const char *id);

/* Check one id field, a list field of n ids (at most CORE_MAX_LIST), k:
 * ERR_OK or ERR_INVALID with a message naming field. */
int core__check_id(const char *field, const char *id, err_t *e);
int core__check_ids(const char *field, char *const *ids, size_t n, err_t *e);
int core__check_k(uint32_t k, err_t *e);

/* ERR_OK when c keeps its state under an events folder; else
 * ERR_PRECONDITION naming op: a write that a restart would lose is never
 * answered OK (privacy choices above all). */
int core__check_durable(const core *c, const char *op, err_t *e);

/* The member's privacy choice. */
privacy_state core__privacy(core *c, const char *user, size_t len);

/* --- the shopper (core_shopper.c) ------------------------------------------ */

/* Room for n floats on this thread, reused across requests so the hot path
 * does not allocate a catalogue-sized array each time (freed when the
 * thread exits); NULL when out of memory. */
float *core__scores_buffer(size_t n);

/* What one request knows about its shopper: the model's user (or none), and
 * the fresh signals - events recorded since the model's data and the
 * request's context items - that a fold-in adds to it. Owned by the request:
 * core__shopper_free (also after a failed collect, or zeroed). */
typedef struct core__shopper {
    uint32_t user;
    score_signal *signals;
    size_t n_signals, cap_signals;
    uint32_t *bought;   /* items purchased since the model's data */
    int64_t *bought_ts; /* when, parallel to bought (a purchase resets the item's clock) */
    size_t n_bought, cap_bought;
    const model *m;
    const float *weights;
    int failed; /* out of memory while collecting */
} core__shopper;

void core__shopper_free(core__shopper *sh);

/* Collects what the request knows of its shopper into *sh (user_id "" =
 * anonymous): their newest CORE_MAX_FOLD_EVENTS recorded events at most,
 * so one heavy member cannot make their calls (and the batch they share)
 * slow. Context items count as carted. Errors: ERR_IO (the events cannot
 * be read), ERR_NOMEM. */
int core__shopper_collect(core *c, const model *m, const char *user_id, char *const *context,
                          size_t n_context, core__shopper *sh, err_t *e);

/* The shopper's vector into x (factors floats): a fold-in when there are
 * fresh signals, the stored vector otherwise. *strategy gets the strategy
 * it supports (PERSONALIZED for a user id, SESSION for context alone), or
 * POPULAR when there is nothing to personalize from or the model is
 * popularity only (blend +inf: tuning found nothing better). Errors:
 * ERR_INTERNAL (the fold-in failed). */
int core__shopper_vector(const core__model *sm, const core__shopper *sh, int anonymous, float *x,
                         core_strategy *strategy, err_t *e);

/* An item-item model's scores for the shopper (score_item_rows: stored
 * items, fresh signals, the factor blend from x) into *out, n_items floats
 * the caller frees. Errors: ERR_INVALID, ERR_NOMEM. */
int core__item_scores(const model *m, const core__shopper *sh, const float *x, float **out,
                      err_t *e);

/* --- the record write path (core_write.c) ---------------------------------- */

/* Why record i of records cannot be stored, or NULL; fills *out with it as
 * it will be stored and *tag with what the caller counts it under. A
 * reason made up for this record goes into buf (CORE_REASON bytes). */
typedef const char *(*core__record_check)(core *c, const void *records, size_t i, int64_t now,
                                          evstore_event *out, int *tag, char *buf);

/* The good records of a write, as stored, with their tags (parallel).
 * Owned by the caller: core__records_free. */
typedef struct core__records {
    evstore_event *good;
    int *tags;
    size_t n_good;
} core__records;

void core__records_free(core__records *r);

/* Checks n records one by one (each bad one is rejected on its own, into
 * *out) and stores the good ones (into *good) in store, all or none. what
 * names the records in messages. Errors: ERR_INVALID (more than
 * CORE_MAX_LIST), ERR_NOMEM, ERR_IO (then nothing is stored, and the
 * client must not think so). */
int core__write_records(core *c, evstore *store, const void *records, size_t n,
                        core__record_check check, const char *what, core__records *good,
                        core_write_reply *out, err_t *e);

/* --- the event bus (core_bus.c) -------------------------------------------- */

/* Opens the bus when o->bus_urls is set (after the stores: it restarts from
 * what they applied); closes it. */
int core__bus_open(core *c, const core_options *o, err_t *e);
void core__bus_close(core *c);
/* Reports on the bus that the control serves version (no-op without
 * --bus); a failure is logged, the next load reports again. */
void core__bus_served(core *c, const char *version);

/* The checked writes, published on the bus and answered once this replica
 * applied them (core_bus.c's header says how). Errors: ERR_IO (the bus is
 * down or did not acknowledge: UNAVAILABLE), ERR_NOMEM, ERR_LIMIT. */
int core__bus_records(core *c, evstore *store, const evstore_event *good, size_t n, err_t *e);
int core__bus_availability(core *c, const core_availability *items, size_t n, err_t *e);
int core__bus_boosts(core *c, const core_boost *boosts, size_t n, err_t *e);
int core__bus_forget(core *c, const char *user_id, uint64_t *events_deleted, err_t *e);
int core__bus_personalization(core *c, const char *user_id, int opted_out, err_t *e);
int core__bus_experiment(core *c, const unsigned char *state, err_t *e);

/* Appends the bus's metric families (none without a bus). */
void core__bus_metrics(core *c, FILE *out);

/* --- experiments (core_exp.c) ---------------------------------------------- */

/* Names the variants of o (control first) and splits traffic evenly. */
int core__variants(core *c, const core_options *o, err_t *e);

/* Serves the shares and salt last stored by core_set_experiment instead of
 * the options' when they are for the same variants; otherwise says why in
 * one log line and keeps the options'. */
void core__restore_experiment(core *c);

#endif
