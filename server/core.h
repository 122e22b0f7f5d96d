/* core: the service itself, with plain C requests and replies, for every
 * front end (gRPC in svc, an HTTP/JSON one next to it).
 *
 * One function per operation: it checks the request (the same checks and
 * messages whatever the front end), answers it from the served model, the
 * event store and the storefront's item rules, and fills a reply of plain
 * structs. The core keeps the model current: a watcher thread notices a new
 * publication in a model directory, opens it, switches to it atomically,
 * and closes the old model once its last in-flight request is done.
 *
 * Errors: an operation returns ERR_OK or an ERR_* code, with the same code
 * and a message in *e: ERR_INVALID (a bad request: fix it), ERR_NOTFOUND (an
 * id the model or store does not have), ERR_PRECONDITION (the server or
 * model lacks what the call needs), ERR_IO (a store failed: retry later),
 * ERR_NOMEM, ERR_LIMIT, ERR_INTERNAL; a failure below the core keeps its
 * code (util/err.h's contract). A front end turns the code into its own
 * status through util/err's table only (err_to_status, err_status_http);
 * the message is for the client as it is.
 *
 * Requests borrow their strings (NUL-terminated) from the caller for the
 * call only. Replies own what they hold: each reply type has a free
 * function, safe on a zeroed reply and after a failed call.
 *
 * Every operation is thread-safe: front ends call them from many threads
 * at once. */
#ifndef RECD_CORE_H
#define RECD_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "campaign.h"
#include "catalog.h"
#include "err.h"
#include "events.h"
#include "experiment.h"
#include "model.h"
#include "scheduler.h"

#define CORE_MAX_K 1000         /* largest k a request may ask for */
#define CORE_MAX_ID_BYTES 256   /* longest user, item or category id */
#define CORE_MAX_LIST 10000     /* most ids in one list field, records in one call */
#define CORE_MAX_QUANTITY 10000 /* largest quantity of one event */
#define CORE_MAX_PRICE 1e9      /* largest unit price of one event */
#define CORE_MAX_BATCH 32       /* most Recommend requests core_recommend_batch takes */
#define CORE_TOP_FACTORS 5      /* churn factors a churn score names */
#define CORE_EXPLAIN_ITEMS 3    /* most of the shopper's items an explained item names */
/* Newest recorded events of a member one fold-in reads: a member (or a
 * client) with more since the model's data costs no more than this. */
#define CORE_MAX_FOLD_EVENTS 1000

typedef struct core_options {
    const char *model_dir; /* the model of variant "control" */
    /* More variants for A/B experiments: name and model directory each. Traffic
     * is split evenly at start (core_set_experiment changes it); salt seeds
     * the assignment of members to variants. The shares and salt
     * core_set_experiment set last, kept under events_dir, win over both at
     * start when they are for the same variant names. */
    uint32_t n_variants;
    const char *variant_names[EXP_MAX_VARIANTS - 1], *variant_dirs[EXP_MAX_VARIANTS - 1];
    const char *salt;
    double reload_interval_s; /* how often to look for a new publication; 0 = never */
    /* Folder of the durable event store, the item rules (availability,
     * boosts), privacy choices, feedback and experiment shares; NULL = none
     * kept: every write is refused (ERR_PRECONDITION), since a restart would
     * lose it. */
    const char *events_dir;
    /* Weight of one event of each type (index = EventType) in a fold-in, in
     * purchase counts: the confidence is 1 + alpha * sum of weights. */
    float event_weights[EV_TYPE_END];
    /* The scheduler front ends queue their calls on (core_submit): worker
     * threads (0 = none: callers run the operations on their own threads),
     * and load shedding - at most max_queue calls wait, none longer than
     * max_queue_ms; others are refused at once instead of making everyone
     * slow (0 = 1024 calls, 1000 ms). */
    uint32_t threads, max_queue, max_queue_ms;
    /* Streaming calls (campaign targets, reflection) at once, from every
     * front end together: each holds a thread for as long as its client
     * reads (0 = 4). */
    uint32_t max_streams;
    /* A cluster (recd serve --bus): every write goes through a NATS
     * JetStream stream and each replica applies it into its stores
     * (events_dir needed). bus_urls NULL = none; stream NULL = "recd";
     * replica_id names this replica's durable consumer (NULL = "replica");
     * a replica more than max_lag_s behind the stream is not serving
     * (core_serving; 0 = never). */
    const char *bus_urls, *bus_stream, *replica_id;
    double max_lag_s;
    /* Recommend mode TRENDING (needs events_dir): the half-life in seconds
     * of an event's weight in the trending counts (trend.h; 0 = a day),
     * and the share 0 .. 1 of the shopper's own score in a trending list
     * (0 = the same list for everyone). */
    double trending_half_life_s;
    float trending_personal;
} core_options;

/* Fills o with no model, reload every second, no event store, no
 * scheduler, the default weights view 0.1, cart 0.3, purchase 1,
 * favorite 0.5, and a trending half-life of a day, not personalized. */
void core_options_init(core_options *o);

typedef struct core core;

/* Opens the current model of each variant's directory (refusing a bad one
 * with its reason), the event store and item rules, and starts the
 * watcher. *out is owned by the caller: core_close, once no front end calls
 * it any more. */
int core_open(const core_options *o, core **out, err_t *e);
void core_close(core *c);

/* Appends the core's metric families (Prometheus text) to out: model
 * version, age and size per variant, events ingested, fold-ins, Recommend
 * answers by strategy, the trending counts' items and dropped events, experiment
 * shares, feedback by variant and type, the event store's group commits
 * and the scheduler's queue length. ctx is the core (a metrics_writer). */
void core_write_metrics(void *ctx, FILE *out);

/* Whether the core should get traffic (gRPC health SERVING): 1, or 0 with
 * the reason in why (cap bytes) when it is a replica further behind the
 * event bus than max_lag_s. Thread-safe. */
int core_serving(core *c, char *why, size_t cap);

/* Queues a front end's call on the core's scheduler (sched.h: admission,
 * load shedding, deadlines, batching by job->batch_key); its run function
 * then calls the operations on a worker thread. Errors: ERR_LIMIT (the
 * queue is full: job is the caller's again), ERR_PRECONDITION (the core has
 * no scheduler), ERR_INTERNAL (stopping). Thread-safe. */
int core_submit(core *c, sched_job *job, err_t *e);

/* Admission of a streaming call: takes one of the max_streams slots, or
 * fails with ERR_LIMIT (all taken: the client tries again later). Every
 * ERR_OK is paired with one core_stream_end when the call is over.
 * Thread-safe. */
int core_stream_begin(core *c, err_t *e);
void core_stream_end(core *c);

/* --- ranked lists: Recommend, SimilarItems, Rerank ------------------------ */

/* How a list was made, one row each: XX(NAME, value); value is the public
 * proto's Strategy (server/svc.c asserts that they agree).
 *   PERSONALIZED  from the member's factors (and fresh signals)
 *   POPULAR       the best sellers: nothing to personalize from
 *   SESSION       from the context items of an anonymous visitor
 *   ATTRIBUTES    from the visitor's labels alone (user_labels)
 *   NEW_ARRIVALS  mode NEW_ARRIVALS: recently published items
 *   TRENDING      mode TRENDING
 *   BUY_AGAIN     only what the member bought before (mode BUY_AGAIN) */
#define CORE_STRATEGY_MAP(XX)                                                                      \
    XX(PERSONALIZED, 1)                                                                            \
    XX(POPULAR, 2)                                                                                 \
    XX(SESSION, 3)                                                                                 \
    XX(ATTRIBUTES, 4)                                                                              \
    XX(NEW_ARRIVALS, 5)                                                                            \
    XX(TRENDING, 6)                                                                                \
    XX(BUY_AGAIN, 7)

typedef enum core_strategy {
#define CORE_STRATEGY_ENUM(name, value) CORE_##name = value,
    CORE_STRATEGY_MAP(CORE_STRATEGY_ENUM)
#undef CORE_STRATEGY_ENUM
        CORE_STRATEGY_END
} core_strategy;

/* The proto name of strategy s ("PERSONALIZED", ...), or NULL. Static. */
const char *core_strategy_name(int32_t s);

/* What a Recommend call lists, one row each: XX(NAME, value, proto name,
 * word, served). value is the public proto's RecommendRequest.RecommendMode
 * (server/svc.c asserts that they agree); word is the command line's
 * (recd query recommend --mode); served 0 = a mode of the contract this
 * server does not answer yet (ERR_UNIMPLEMENTED). */
#define CORE_MODE_MAP(XX)                                                                          \
    XX(DEFAULT, 0, MODE_DEFAULT, "default", 1)                                                     \
    XX(NEW_ARRIVALS, 1, NEW_ARRIVALS, "new-arrivals", 1)                                           \
    XX(TRENDING, 2, TRENDING, "trending", 1)                                                       \
    XX(BUY_AGAIN, 3, BUY_AGAIN, "buy-again", 1)

typedef enum core_mode {
#define CORE_MODE_ENUM(name, value, pb, word, served) CORE_MODE_##name = value,
    CORE_MODE_MAP(CORE_MODE_ENUM)
#undef CORE_MODE_ENUM
} core_mode;

/* The proto name of mode m ("MODE_DEFAULT", ...) / its word, or NULL when
 * m is none of the table's. Static strings. */
const char *core_mode_name(int32_t m);
const char *core_mode_word(int32_t m);

/* The mode whose word is word, or -1. */
int32_t core_mode_of_word(const char *word);

typedef struct core_item {
    const char *id; /* NUL-terminated, owned by the list */
    float score;
    /* Recommend with explain only: the shopper's own items (history,
     * recorded events, context) that add most to score, most first, owned
     * by the list; n_because 0 otherwise. */
    const char *because[CORE_EXPLAIN_ITEMS];
    uint32_t n_because;
} core_item;

/* An answer of the ranked operations. items, and the ids they point to,
 * are owned by the list: core_list_free. */
typedef struct core_list {
    core_item *items; /* best first */
    size_t n_items;
    core_strategy strategy;                /* 0 for SimilarItems */
    char model_version[MODEL_VERSION_MAX]; /* of the model that answered */
    char request_id[EXP_REQUEST_ID_MAX];   /* Recommend only: quote in feedback */
    const char *variant;                   /* Recommend only: static while c lives */
    int fell_back; /* SimilarItems BOUGHT_TOGETHER only: answered as SIMILAR */
} core_list;

/* Frees what l owns and zeroes it; l may be zeroed or half built. */
void core_list_free(core_list *l);

typedef struct core_recommend_req {
    const char *user_id;           /* "" = an anonymous visitor (needs context items) */
    uint32_t k;                    /* 1 .. CORE_MAX_K */
    char *const *context_item_ids; /* cart or viewed items, never returned */
    size_t n_context_item_ids;
    char *const *exclude_item_ids; /* never returned */
    size_t n_exclude_item_ids;
    int include_purchased; /* allow items the member already bought */
    float diversity;       /* 0 .. 1: maximal marginal relevance */
    const char *category;  /* "" = any; else only items of this category */
    /* A core_mode. BUY_AGAIN: only items the member bought before (stored
     * and recorded since), most due first - the repurchase probability of
     * util/rebuy.h, after boosts, availability, exclusions and category;
     * strategy BUY_AGAIN, possibly fewer than k (none for a member who
     * opted out). With include_purchased and a model that has a repurchase
     * model, DEFAULT ranks bought items by that probability and new ones
     * by the calibrated probability of their rank in one list.
     * TRENDING: only items with recent events, by their time-decayed
     * count (trend.h), blended with the shopper's own score when the core
     * was opened with trending_personal > 0 and there is one; the same
     * rules as DEFAULT (bought items too); strategy TRENDING, possibly
     * fewer than k. */
    int32_t mode;
    /* A visitor's attributes (labels of the member catalogue): for a
     * shopper with no history and no cart, the vector of the model's
     * member label mapping (strategy ATTRIBUTES); unknown labels are
     * passed over. At most CORE_MAX_LIST, each as an id. */
    char *const *user_labels;
    size_t n_user_labels;
    /* NEW_ARRIVALS: only items published (model_item_published, or an
     * upsert's time) in the last new_days days (0 = CORE_NEW_DAYS), ordered
     * for the shopper (their vector, their labels', the cart's), newest
     * first when there is nothing to order by; strategy NEW_ARRIVALS. */
    uint32_t new_days;
    /* Fill each item's because: up to CORE_EXPLAIN_ITEMS of the shopper's
     * items that add most to its personal score (score_explain: ALS's
     * Cholesky explanation, an item-item model's exact terms); for
     * BUY_AGAIN the item itself (its own purchases make it due); none
     * when the list has no personal score (POPULAR). */
    int explain;
} core_recommend_req;

#define CORE_NEW_DAYS 30 /* NEW_ARRIVALS' window when a request names none */

/* The top req->k items for the member (their variant's model) or the
 * visitor, with available items only and boosts applied. A member who
 * opted out or was forgotten gets POPULAR (TRENDING: not personalized).
 * Fills *out (owned by the caller: core_list_free). Errors: ERR_INVALID
 * (the request, a mode that is not a core_mode, BUY_AGAIN without
 * user_id), ERR_UNIMPLEMENTED (a mode not served: NEW_ARRIVALS),
 * ERR_NOTFOUND (category), ERR_PRECONDITION (a category filter on a model
 * without categories, BUY_AGAIN on a model without a repurchase model,
 * TRENDING without an event store), ERR_IO (the events cannot be read),
 * ERR_NOMEM, ERR_INTERNAL. */
int core_recommend(core *c, const core_recommend_req *req, core_list *out, err_t *e);

/* n <= CORE_MAX_BATCH Recommend requests that came together: answers
 * reqs[i] in out[i] or fails it with errs[i] (its code: the return of
 * core_recommend), as n calls of core_recommend would, but scores the
 * personalized ones of one model in one pass over the items. */
void core_recommend_batch(core *c, const core_recommend_req *const *reqs, size_t n, core_list *out,
                          err_t *errs);

/* What SimilarItems ranks by; the values of the public proto's Relation. */
typedef enum core_relation {
    CORE_RELATION_SIMILAR = 0,        /* look-alikes: cosine of the factors, or item rows */
    CORE_RELATION_BOUGHT_TOGETHER = 1 /* complements: the model's bought-together lists */
} core_relation;

typedef struct core_similar_req {
    const char *item_id;   /* a seed; "" = only item_ids */
    char *const *item_ids; /* more seeds (a cart); seeds never come back */
    size_t n_item_ids;
    uint32_t k;                    /* 1 .. CORE_MAX_K */
    int32_t relation;              /* a core_relation; any other value is refused */
    char *const *exclude_item_ids; /* never returned */
    size_t n_exclude_item_ids;
    const char *category; /* "" = any; else only items of this category */
} core_similar_req;

/* The req->k items most like the seeds (SIMILAR: cosine of the factors,
 * or an item-item model's rows) or most bought with them (BOUGHT_TOGETHER:
 * the sum over the seeds of their bought-together scores, only items
 * bought with a seed), available ones only, not excluded, of the category
 * if one is given, boosts applied; seeds the model does not know are
 * passed over as long as one is known. A BOUGHT_TOGETHER request whose
 * seeds have no co-purchase that passes the filters (or a model without
 * the lists) is answered as SIMILAR with out->fell_back set. Errors:
 * ERR_INVALID (also an unknown relation), ERR_NOTFOUND (no seed known, or
 * the category), ERR_PRECONDITION (a category filter on a model without
 * categories), ERR_NOMEM. */
int core_similar(core *c, const core_similar_req *req, core_list *out, err_t *e);

typedef struct core_rerank_req {
    const char *user_id;             /* "" = anonymous */
    char *const *candidate_item_ids; /* at least one */
    size_t n_candidate_item_ids;
    char *const *context_item_ids;
    size_t n_context_item_ids;
} core_rerank_req;

/* Every candidate once, best first for the member or visitor; candidates
 * the model does not know follow in their order with score 0, unavailable
 * ones are left out. Errors: ERR_INVALID, ERR_IO, ERR_NOMEM, ERR_INTERNAL. */
int core_rerank(core *c, const core_rerank_req *req, core_list *out, err_t *e);

/* --- writes: events, feedback --------------------------------------------- */

typedef struct core_event {
    const char *user_id, *item_id;
    uint32_t type;          /* an EventType */
    int64_t timestamp_unix; /* 0 = now */
    uint32_t quantity;      /* 0 = 1 */
    double price;           /* unit price; 0 = unknown */
} core_event;

typedef struct core_feedback {
    const char *request_id; /* from a Recommend reply */
    const char *user_id;    /* "" = not said */
    const char *item_id;    /* "" = the whole list (impressions only) */
    uint32_t type;          /* an EXP_FEEDBACK_* type */
    int64_t timestamp_unix; /* 0 = now */
} core_feedback;

#define CORE_REASON 96 /* bytes of a rejected record's reason */

typedef struct core_rejected {
    uint32_t index; /* in the request */
    char reason[CORE_REASON];
} core_rejected;

/* What a write of records came to: the good ones were stored (all of them,
 * durably), the rejected ones with their reasons. rejected is owned by the
 * reply: core_write_reply_free. */
typedef struct core_write_reply {
    uint32_t accepted;
    core_rejected *rejected;
    size_t n_rejected;
} core_write_reply;

void core_write_reply_free(core_write_reply *r);

/* Stores the good events of events[0..n) in the event store, all or none;
 * each bad one is rejected on its own with its reason. Errors:
 * ERR_PRECONDITION (no event store), ERR_INVALID (more than CORE_MAX_LIST),
 * ERR_IO (nothing stored), ERR_NOMEM. */
int core_record_events(core *c, const core_event *events, size_t n, core_write_reply *out,
                       err_t *e);

/* As core_record_events, for feedback on Recommend replies (counted by
 * variant and type). */
int core_record_feedback(core *c, const core_feedback *feedback, size_t n, core_write_reply *out,
                         err_t *e);

/* Stores the good descriptions of items[0..n) (catalog.h's catalog_item),
 * all or none, durably in the events folder (restarts keep them; the next
 * recd train --events reads them); each bad one is rejected on its own
 * with its reason (catalog_item_problem). From the next call on, an item
 * the served model does not know is served with a vector from its labels,
 * title words, categories and price band (the model's item label mapping),
 * and a known one with its new categories and publication time (its
 * factors stay). model_version (MODEL_VERSION_MAX bytes) gets the
 * control's version. Errors: ERR_PRECONDITION (no events folder),
 * ERR_INVALID (more than CORE_MAX_LIST), ERR_IO (nothing stored),
 * ERR_NOMEM, and a bus's (UNAVAILABLE). */
int core_upsert_items(core *c, const catalog_item *items, size_t n, core_write_reply *out,
                      char *model_version, err_t *e);

/* --- item rules, privacy, experiment ---------------------------------------- */

typedef struct core_availability {
    const char *item_id;
    int available; /* 0: out of stock or delisted, never recommended */
} core_availability;

typedef struct core_boost {
    const char *item_id;
    float multiplier; /* 0 < m <= CATALOG_MAX_BOOST; 1 = none */
} core_boost;

/* Record items' availability / boosts: every entry is checked before any is
 * stored. Errors: ERR_PRECONDITION (no events folder), ERR_INVALID, ERR_IO
 * (entries before the failing one are stored). */
int core_set_availability(core *c, const core_availability *items, size_t n, err_t *e);
int core_set_boosts(core *c, const core_boost *boosts, size_t n, err_t *e);

/* Forgets a member: from now on nothing about them is served, then their
 * recorded events are deleted (*events_deleted of them). Errors:
 * ERR_PRECONDITION (no events folder: the choice would not last), ERR_INVALID,
 * ERR_IO. */
int core_forget_user(core *c, const char *user_id, uint64_t *events_deleted, err_t *e);

/* Opts a member out of personalization (POPULAR lists, no churn profile)
 * or back in. Errors: ERR_INVALID, ERR_PRECONDITION (no events folder, or a
 * forgotten member: they stay out), ERR_IO. */
int core_set_personalization(core *c, const char *user_id, int opted_out, err_t *e);

typedef struct core_share {
    const char *variant;
    double share;
} core_share;

/* Sets the salt (when salt is not "") and the shares of the named variants
 * (when n > 0; unnamed ones get 0), stored before they are served. Errors:
 * ERR_PRECONDITION (no events folder), ERR_INVALID, ERR_IO (the experiment is
 * as it was). */
int core_set_experiment(core *c, const char *salt, const core_share *shares, size_t n, err_t *e);

/* --- item stats: what Recommend served, the item rules ---------------------- */

#define CORE_ITEM_STATS_K 10       /* most recommended items listed when k is 0 */
#define CORE_ITEM_STATS_RULES 1000 /* rules listed (each kind) when max_rules is 0 */

typedef struct core_item_stats_req {
    uint32_t k;          /* 0 = CORE_ITEM_STATS_K, else 1 .. CORE_MAX_K */
    const char *variant; /* "" = control */
    uint32_t max_rules;  /* 0 = CORE_ITEM_STATS_RULES, at most CORE_MAX_LIST */
} core_item_stats_req;

typedef struct core_item_count {
    const char *id; /* NUL-terminated, in the block of core_item_stats_reply.top */
    uint64_t count; /* Recommend answers that listed the item */
} core_item_count;

typedef struct core_item_stats_reply {
    const char *variant; /* static while c lives */
    char model_version[MODEL_VERSION_MAX];
    int64_t counted_since; /* unix seconds: when the model was loaded */
    uint64_t answers;      /* Recommend answers from the model since */
    core_item_count *top;  /* owned, with its ids; most listed first (ties in the
                              model's item order) */
    size_t n_top;          /* <= k; only items listed at least once */
    /* The storefront's rules (catalog_rules' order): the first
     * n_unavailable of unavailable_total unavailable items, then from
     * rules + unavailable_total the first n_boosted of boosted_total. */
    catalog_rule *rules; /* owned (catalog_rules' block) */
    size_t n_unavailable, n_boosted;
    uint32_t unavailable_total, boosted_total;
} core_item_stats_reply;

/* Frees what s owns; s may be zeroed or from a failed call. */
void core_item_stats_reply_free(core_item_stats_reply *s);

/* How often each item of the variant's served model was in a Recommend
 * answer since the model was loaded (every strategy and mode; a new model
 * starts from 0), the top req->k, and the items out of stock or boosted.
 * Errors: ERR_INVALID (k, max_rules, variant not a name), ERR_NOTFOUND (no
 * such variant), ERR_NOMEM. *out is owned by the caller: core_item_stats_reply_free. */
int core_item_stats(core *c, const core_item_stats_req *req, core_item_stats_reply *out, err_t *e);

/* --- models, churn, campaigns ------------------------------------------------ */

/* The metadata of the model variant "control" serves, into *out. */
void core_model_info(core *c, model_meta *out);

typedef struct core_churn_reply {
    float probability;                        /* of no purchase within the horizon */
    const char *risk_band, *segment, *tier;   /* static names */
    double recency_days, frequency, monetary; /* RFM at the scoring time */
    uint32_t n_factors;                       /* <= CORE_TOP_FACTORS */
    const char *feature[CORE_TOP_FACTORS];    /* the features that push most (in the model) */
    double contribution[CORE_TOP_FACTORS];    /* > 0 towards churn */
    float p_alive;                            /* CLV; NaN when the model has none */
    double expected_orders, expected_value;   /* within the horizon; NaN likewise */
    const char *model_version;                /* in the model */
    struct core__model *held;                 /* keeps the model, and so the names, alive */
} core_churn_reply;

/* Lets the model go; r may be zeroed or from a failed call. */
void core_churn_reply_free(core_churn_reply *r);

/* The member's churn score. Errors: ERR_INVALID, ERR_PRECONDITION (no churn
 * model), ERR_NOTFOUND (opted out, forgotten, unknown or never bought),
 * ERR_INTERNAL. *out is owned by the caller: core_churn_reply_free. */
int core_churn_score(core *c, const char *user_id, core_churn_reply *out, err_t *e);

typedef struct core_churn_model_reply {
    char model_version[MODEL_VERSION_MAX];
    uint32_t horizon_days;
    int64_t scored_at;
    /* The model's validation; members 0 and the figures NaN when it has
     * none (has_validation 0: trained before recd kept them). */
    int has_validation;
    model_churn_validation validation;
} core_churn_model_reply;

/* The control model's churn model and its validation figures (aggregates:
 * no member's data). Errors: ERR_PRECONDITION (no churn model). */
int core_churn_model(core *c, core_churn_model_reply *out, err_t *e);

typedef struct core_targets_req {
    float min_probability, max_probability; /* both 0 = any; max 0 = 1 */
    char *const *segments;                  /* any of these names ("" = all) */
    size_t n_segments;
    char *const *tiers;
    size_t n_tiers;
    const char *item_id;             /* affinity to this item, or "" */
    const char *category;            /* ... or to this category, or "" */
    uint32_t viewed_not_bought_days; /* only members who looked lately (0 = any) */
    uint32_t limit;                  /* 0 = no limit */
    campaign_order order;
} core_targets_req;

typedef struct core_target {
    const char *user_id; /* valid during the call of emit only */
    float churn_probability, affinity;
    const char *risk_band, *segment, *tier; /* static names */
    double monetary;
    double expected_value; /* CLV within the horizon; NaN when the model has none */
    float p_alive;         /* NaN likewise */
} core_target;

/* Called once per target, in order; nonzero stops the selection. */
typedef int (*core_target_fn)(void *ctx, const core_target *t);

#define CORE_CHURN_HISTOGRAM_BINS 10 /* of 0.1 of the churn probability */

typedef struct core_member_counts {
    char model_version[MODEL_VERSION_MAX];
    uint32_t members; /* those the campaign selects */
    /* Members by code (the names: model_churn_band_name, ..._segment_name,
     * ..._tier_name), and by churn probability [b / 10, (b + 1) / 10). */
    uint32_t bands[MODEL_CHURN_N_BANDS], segments[MODEL_CHURN_N_SEGMENTS],
        tiers[MODEL_CHURN_N_TIERS];
    uint32_t histogram[CORE_CHURN_HISTOGRAM_BINS];
} core_member_counts;

/* Counts the members of the control model's churn model that the campaign
 * rq selects (as core_campaign_targets, never members who opted out or
 * were forgotten), by band, segment, tier and churn probability: what the
 * dashboard shows, without a stream of every member. One pass over the
 * members, no allocation per member. Errors: those of
 * core_campaign_targets. */
int core_member_overview(core *c, const core_targets_req *rq, core_member_counts *out, err_t *e);

/* Selects the campaign targets of the control model (never members who
 * opted out or were forgotten) and emits them one by one; returns ERR_OK
 * also when emit stopped it (the caller knows why). Errors: ERR_INVALID,
 * ERR_PRECONDITION (no churn model, or no event store for
 * viewed_not_bought_days), ERR_NOTFOUND (item or category), ERR_IO,
 * ERR_NOMEM, ERR_INTERNAL. */
int core_campaign_targets(core *c, const core_targets_req *req, core_target_fn emit, void *ctx,
                          err_t *e);

#endif
