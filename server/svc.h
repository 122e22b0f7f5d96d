/* svc: the recd.v1.Recommender service and grpc.health.v1.Health/Check.
 *
 * Decodes and validates requests (protobuf-c), answers them from the served
 * model, and keeps that model current: a watcher thread notices a new
 * publication in the model directory, opens it, switches to it atomically,
 * and closes the old model once its last in-flight request is done. */
#ifndef RECD_SVC_H
#define RECD_SVC_H

#include <stddef.h>

#include "err.h"
#include "rpc.h"

#define SVC_MAX_K 1000         /* largest k a request may ask for */
#define SVC_MAX_ID_BYTES 256   /* longest user or item id */
#define SVC_MAX_EXCLUDED 10000 /* most exclude_item_ids in one request */

typedef struct svc_options {
    const char *model_dir;
    double reload_interval_s; /* how often to look for a new publication; 0 = never */
} svc_options;

typedef struct svc svc;

/* Opens the current model of o->model_dir (refusing a bad one with its
 * reason) and starts the watcher. *out is owned by the caller: svc_close,
 * after the rpc server that uses it has stopped. */
int svc_open(const svc_options *o, svc **out, err_t *e);
void svc_close(svc *s);

/* The methods to serve (valid while s lives); *n gets their number. */
const rpc_method *svc_methods(svc *s, size_t *n);

#endif
