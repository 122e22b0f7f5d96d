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
 * core_bus.c (the writes of a cluster, through the event bus),
 * core_upsert.c (UpsertItems, what a model makes of upserted items, a
 * visitor's labels). */
#ifndef RECD_CORE_INT_H
#define RECD_CORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "catalog.h"
#include "core.h"
#include "evstore.h"
#include "idmap.h"
#include "idstate.h"
#include "model.h"
#include "privacy.h"
#include "score.h"
#include "trend.h"

/* --- served models (core_model.c) ------------------------------------------ */

/* What one model makes of the items the storefront upserted (core_upsert.c):
 * the items it does not know, served with index n_items + j (j < n_new)
 * and a vector from their labels, and the upserted categories and
 * publication times of all of them. Owned by its core__storefront. */
typedef struct core__upserts {
    uint32_t n_new;
    char **new_ids;     /* n_new NUL-terminated ids (one block with the strings) */
    float *new_vectors; /* n_new x factors, NULL when the model has no item label mapping */
    float *new_norms;   /* n_new lengths of new_vectors (cosine), NULL with it */
    float *new_mult;    /* n_new storefront multipliers, as the model items' */
    idmap *new_index;   /* id -> j */
    /* Publication times of the n_items + n_new items (an upsert's over the
     * model's; 0 = unknown), NULL when no item has one. */
    int64_t *published;
    /* The upserted items with categories to filter by - every new item, and
     * known items whose upsert named categories - by ascending item index:
     * row r is item row_item[r], its categories cat_idx[cat_ptr[r] ..
     * cat_ptr[r + 1]) into cats. */
    uint32_t n_rows;
    uint32_t *row_item, *cat_ptr, *cat_idx;
    idmap *cats;
} core__upserts;

/* The storefront's view of one model's items as of one catalog generation -
 * their multipliers (availability, boosts) and the upserted items - shared
 * by the requests that use it. */
typedef struct core__storefront {
    atomic_uint refs;
    unsigned long generation;
    bool any;        /* false: every multiplier is 1, nothing to apply */
    float max_slope; /* the most a multiplier stretches a score difference */
    core__upserts up;
    float v[];
} core__storefront;

/* A model in service, shared by the requests that use it. */
typedef struct core__model {
    model *m;
    atomic_uint refs; /* one for being current, one per request using it */
    float *yty;       /* factors x factors, for fold-ins */
    pthread_mutex_t mult_lock;
    core__storefront *mult; /* rebuilt when the catalog changes */
    /* The trending table's slots mapped to this model's items (trend_map),
     * extended as new items trend; guarded by trend_lock. */
    pthread_mutex_t trend_lock;
    uint32_t *trend_items;
    uint32_t n_trend_items, cap_trend_items;
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
    atomic_ullong strategies[CORE_STRATEGY_END]; /* Recommend answers by core_strategy */
    atomic_ullong fold_ins_capped; /* shoppers with more than CORE_MAX_FOLD_EVENTS fresh events */
    evstore *events;               /* NULL without events */
    trend *trend;                  /* mode TRENDING's counts; NULL without events */
    float trending_personal;       /* core_options' */
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
 * caller releases with core__storefront_release), rebuilt when the catalog
 * changed since: so no update of availability or boosts is ever missed,
 * whatever the order of model swaps and updates. NULL when out of memory. */
core__storefront *core__storefront_get(core *c, core__model *sm);
void core__storefront_release(core__storefront *mu);

/* Opens the current model of variant v and makes it the one served, unless
 * it is the version served already (a version folder copied under another
 * name): then only the folder is noted as seen. */
int core__load(core *c, uint32_t v, err_t *e);

/* Starts the watcher thread (reload_interval_s > 0), which polls the
 * variants' model directories and loads new publications; stopped by
 * core__watch_stop (a no-op when it never ran). */
int core__watch_start(core *c, err_t *e);
void core__watch_stop(core *c);

/* --- upserted items (core_upsert.c) --------------------------------------- */

/* Builds *up for model m from the descriptions in rules. Returns ERR_OK or
 * ERR_NOMEM (then *up is zeroed). */
int core__upserts_build(catalog *rules, const model *m, core__upserts *up);
void core__upserts_free(core__upserts *up);

/* The index of item id: the model's, or n_items + j for an upserted item
 * the model does not know. ERR_OK or ERR_NOTFOUND. */
int core__item_lookup(const model *m, const core__upserts *up, const char *id, uint32_t *index);

/* The id bytes of an index of core__item_lookup (*len its length). */
const char *core__item_id(const model *m, const core__upserts *up, uint32_t index, size_t *len);

/* The row of up's categories for item index, or -1 when it has none. */
long core__upsert_row(const core__upserts *up, uint32_t index);

/* A request's category as the model knows it and as the upserts do
 * (UINT32_MAX = unknown to that side). */
typedef struct core__category {
    uint32_t model, upserted;
} core__category;

/* Whether item index is of category cat: by its upserted categories when
 * its upsert named some, by the model's otherwise. */
int core__in_category(const model *m, const core__upserts *up, uint32_t index,
                      const core__category *cat);

/* A visitor's vector from labels (the model's member label mapping) into x
 * (factors floats). Returns how many of the labels the model knows; 0 (x
 * untouched) when none, or when it has no such mapping. */
int core__labels_vector(const model *m, char *const *labels, size_t n, float *x);

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
    /* Upserted items the model does not know that were purchased since
     * (their core__item_lookup indexes): never recommended back. */
    uint32_t *new_bought;
    size_t n_new_bought, cap_new_bought;
    const model *m;
    const core__upserts *up; /* may be NULL */
    const float *weights;
    int failed; /* out of memory while collecting */
} core__shopper;

void core__shopper_free(core__shopper *sh);

/* Collects what the request knows of its shopper into *sh (user_id "" =
 * anonymous; up, the storefront's upserted items, may be NULL): their newest CORE_MAX_FOLD_EVENTS
 * recorded events at most, so one heavy member cannot make their calls (and the batch they share)
 * slow. Context items count as carted. Errors: ERR_IO (the events cannot
 * be read), ERR_NOMEM. */
int core__shopper_collect(core *c, const model *m, const core__upserts *up, const char *user_id,
                          char *const *context, size_t n_context, core__shopper *sh, err_t *e);

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

/* Opens c->trend (with an event store) and counts into it the store's
 * events of the last TREND_HORIZON_HALF_LIVES half-lives, so a restart
 * keeps what is trending. Errors: ERR_INVALID (the options), ERR_NOMEM,
 * evstore_scan's (the store cannot be read). */
int core__trend_open(core *c, const core_options *o, err_t *e);

/* Counts n events just stored (by RecordEvents, or applied from the bus)
 * in the trending table: every stored event passes here. */
void core__trend_stored(core *c, const evstore_event *events, size_t n);

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
int core__bus_items(core *c, const catalog_item *items, size_t n, err_t *e);

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
