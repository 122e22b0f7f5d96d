/* svc: the recd.v1.Recommender service and grpc.health.v1.Health/Check.
 *
 * Decodes and validates requests (protobuf-c), answers them from the served
 * model, the event store and the storefront's item rules, and keeps the
 * model current: a watcher thread notices a new publication in the model
 * directory, opens it, switches to it atomically, and closes the old model
 * once its last in-flight request is done. */
#ifndef RECD_SVC_H
#define RECD_SVC_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"
#include "evstore.h"
#include "experiment.h"
#include "rpc.h"

#define SVC_MAX_K 1000         /* largest k a request may ask for */
#define SVC_MAX_ID_BYTES 256   /* longest user, item or category id */
#define SVC_MAX_LIST 10000     /* most ids in one list field, events in one call */
#define SVC_MAX_QUANTITY 10000 /* largest quantity of one event */
#define SVC_MAX_PRICE 1e9      /* largest unit price of one event */

typedef struct svc_options {
    const char *model_dir; /* the model of variant "control" */
    /* More variants for A/B experiments: name and model directory each. Traffic
     * is split evenly at start (SetExperiment changes it); salt seeds the
     * assignment of members to variants. The shares and salt SetExperiment
     * set last, kept under events_dir, win over both at start when they are
     * for the same variant names. */
    uint32_t n_variants;
    const char *variant_names[EXP_MAX_VARIANTS - 1], *variant_dirs[EXP_MAX_VARIANTS - 1];
    const char *salt;
    double reload_interval_s; /* how often to look for a new publication; 0 = never */
    /* Folder of the durable event store, the item rules (availability,
     * boosts), privacy choices, feedback and experiment shares; NULL = no
     * RecordEvents, the rest kept in memory only (shares: not at all). */
    const char *events_dir;
    /* Weight of one event of each type (index = EventType) in a fold-in, in
     * purchase counts: the confidence is 1 + alpha * sum of weights. */
    float event_weights[EV_TYPE_END];
} svc_options;

/* Fills o with no model, reload every second, no event store and the default
 * weights view 0.1, cart 0.3, purchase 1, favorite 0.5. */
void svc_options_init(svc_options *o);

typedef struct svc svc;

/* Opens the current model of o->model_dir (refusing a bad one with its
 * reason), the event store and item rules, and starts the watcher. *out is
 * owned by the caller: svc_close, after the rpc server that uses it has
 * stopped. */
int svc_open(const svc_options *o, svc **out, err_t *e);
void svc_close(svc *s);

/* Appends the service's metric families (Prometheus text) to out: model
 * version, age and size per variant, events ingested, fold-ins, experiment
 * shares, feedback by variant and type, and the event store's group
 * commits. ctx is the svc. */
void svc_write_metrics(void *ctx, FILE *out);

/* The methods to serve (valid while s lives); *n gets their number. */
const rpc_method *svc_methods(svc *s, size_t *n);

#endif
