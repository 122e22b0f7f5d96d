/* svc: the gRPC front end of the core - the recd.v1.Recommender service and
 * grpc.health.v1.Health/Check as rpc methods.
 *
 * Each handler is an adapter: it decodes the request message (protobuf-c),
 * calls the core's operation with a plain C request, and encodes the
 * core's reply, or turns the core's error into a gRPC status. What a call
 * means - checks, scoring, state - is the core's (core.h). */
#ifndef RECD_SVC_H
#define RECD_SVC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "core.h"
#include "err.h"
#include "rpc.h"

typedef struct svc svc;

/* The gRPC methods over core c, which must outlive the service. *out is
 * owned by the caller: svc_close, after the rpc server that uses it has
 * stopped. Errors: ERR_NOMEM. */
int svc_open(core *c, svc **out, err_t *e);
void svc_close(svc *s);

/* The methods to serve (valid while s lives); *n gets their number. */
const rpc_method *svc_methods(svc *s, size_t *n);

/* rpc's dispatcher (ctx is the svc): queues each unary call on the core's
 * scheduler, which admits, sheds, batches and runs it (the method's handler,
 * or its batch handler for calls that waited together) and answers it. A
 * call the scheduler refuses gets its error. */
int svc_dispatch(void *ctx, rpc_unary *u, err_t *e);

/* rpc's admission of streaming calls (ctx is the svc): the core's slots
 * (core_stream_begin, core_stream_end), shared by every front end. */
int svc_admit_stream(void *ctx, err_t *e);
void svc_stream_done(void *ctx);

/* Gets each campaign target as a recd.v1.CampaignTarget message (valid
 * during the call only); nonzero stops the selection. */
typedef int (*svc_target_fn)(void *ctx, const ProtobufCMessage *target);

/* StreamCampaignTargets for any transport (gRPC's stream handler, the HTTP
 * front end's NDJSON and CSV): request is a CampaignTargetsRequest (its
 * strings checked by the caller: no NUL bytes), read as gRPC reads it;
 * each selected target goes to emit(ctx, ...) in order, on the caller's
 * thread. Returns ERR_OK also when emit stopped it (the caller knows why);
 * errors are core_campaign_targets's (ERR_INTERNAL for another message). */
int svc_campaign_targets_run(svc *s, const ProtobufCMessage *request, svc_target_fn emit, void *ctx,
                             err_t *e);

#endif
