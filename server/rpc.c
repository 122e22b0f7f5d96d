#include "rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Call requests each worker keeps posted per method: enough that a burst of
 * new calls never waits for a worker to re-post. */
#define RPC_REQUESTS_PER_METHOD 8

/* Seconds a stop waits for calls in flight before cancelling them. */
#define RPC_STOP_GRACE_S 5

/* What a completion-queue tag is: every tag struct starts with one. */
typedef enum {
    CALL_REQUESTED, /* rpc_call: a call request posted to the server */
    CALL_ANSWERING, /* rpc_call: the batch answering a unary call */
    STREAM_BATCH    /* rpc_stream: a batch of a streaming call, awaited by its thread */
} call_state;

/* One call, from the request posted to the server until its answer batch
 * completes. Owned by the worker whose queue the call is bound to. */
typedef struct rpc_call {
    call_state state;
    int method; /* index into methods, or -1 for an unregistered method */
    struct rpc_worker *worker;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_metadata;
    grpc_call_details details; /* unregistered calls only */
    grpc_byte_buffer *payload;
    grpc_byte_buffer *response;
    grpc_slice status_details;
    int cancelled;
} rpc_call;

typedef struct rpc_worker {
    struct rpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;
} rpc_worker;

/* A server-streaming call, owned by the thread running its handler. The
 * worker whose queue the call is bound to reports each batch's completion
 * through lock/cond. */
struct rpc_stream {
    call_state state; /* STREAM_BATCH */
    struct rpc_call *call;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending, success, sent_initial;
};

struct rpc_server {
    grpc_server *grpc;
    pthread_mutex_t streams_lock;
    pthread_cond_t streams_done;
    uint32_t streams, max_streams; /* running streaming calls, and the cap */
    const rpc_method *methods;
    void **registered; /* grpc handles, one per method */
    size_t n_methods;
    rpc_worker *workers;
    uint32_t n_workers, n_started; /* queues created, threads running */
    int port;
    atomic_int stopping;
};

void rpc_reply_error(rpc_reply *r, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    r->status = status;
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

static void rpc_call_free(rpc_call *c) {
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->request_metadata);
    if (c->method < 0) grpc_call_details_destroy(&c->details);
    if (c->payload) grpc_byte_buffer_destroy(c->payload);
    if (c->response) grpc_byte_buffer_destroy(c->response);
    grpc_slice_unref(c->status_details);
    free(c);
}

/* Posts a request for the next call of method (or of any unregistered method
 * when method < 0) on this worker's queue. Failure only happens while the
 * server shuts down, when nothing needs to be posted any more. */
static void rpc_request(rpc_worker *w, int method) {
    rpc_server *s = w->server;
    if (atomic_load(&s->stopping)) return;
    rpc_call *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("msg=\"cannot allocate a call request\"");
        return;
    }
    c->state = CALL_REQUESTED;
    c->method = method;
    c->worker = w;
    c->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&c->request_metadata);
    grpc_call_error rc;
    if (method >= 0) {
        rc = grpc_server_request_registered_call(s->grpc, s->registered[method], &c->call,
                                                 &c->deadline, &c->request_metadata, &c->payload,
                                                 w->cq, w->cq, c);
    } else {
        grpc_call_details_init(&c->details);
        rc = grpc_server_request_call(s->grpc, &c->call, &c->details, &c->request_metadata, w->cq,
                                      w->cq, c);
    }
    if (rc != GRPC_CALL_OK) rpc_call_free(c);
}

/* Copies the request message into one contiguous buffer (gRPC may hold it
 * in several slices). Returns a malloc'ed buffer (caller frees) or NULL. */
static uint8_t *rpc_read_payload(grpc_byte_buffer *bb, size_t *len) {
    grpc_byte_buffer_reader reader;
    *len = 0;
    if (!bb) return malloc(1);
    if (!grpc_byte_buffer_reader_init(&reader, bb)) return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    size_t n = GRPC_SLICE_LENGTH(all);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
        memcpy(buf, GRPC_SLICE_START_PTR(all), n);
        *len = n;
    }
    grpc_slice_unref(all);
    return buf;
}

/* Starts a batch of a stream's call and waits for the worker to report its
 * completion. Returns 1 when the batch succeeded. */
static int rpc_stream_batch(rpc_stream *st, grpc_op *ops, size_t n) {
    pthread_mutex_lock(&st->lock);
    st->pending = 1;
    if (grpc_call_start_batch(st->call->call, ops, n, st, NULL) != GRPC_CALL_OK) {
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    while (st->pending)
        pthread_cond_wait(&st->cond, &st->lock);
    int ok = st->success;
    pthread_mutex_unlock(&st->lock);
    return ok;
}

int rpc_stream_send(rpc_stream *st, const uint8_t *msg, size_t len) {
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!st->sent_initial) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_slice body = grpc_slice_from_copied_buffer((const char *)msg, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    int ok = rpc_stream_batch(st, ops, n);
    grpc_byte_buffer_destroy(bb);
    st->sent_initial = 1;
    return ok ? 0 : -1;
}

/* Runs a streaming handler on its own thread, then ends the call with the
 * handler's status and frees it. */
static void *rpc_stream_main(void *arg) {
    rpc_stream *st = arg;
    rpc_call *c = st->call;
    rpc_server *s = c->worker->server;
    rpc_reply reply = {.status = RPC_OK};
    size_t len;
    uint8_t *req = rpc_read_payload(c->payload, &len);
    if (!req) {
        rpc_reply_error(&reply, RPC_INTERNAL, "cannot read the request message");
    } else {
        const rpc_method *m = &s->methods[c->method];
        m->stream(m->ctx, req, len, st, &reply);
        free(req);
    }
    free(reply.body);
    if (reply.status != RPC_OK)
        log_warn("msg=\"stream failed\" method=%s status=%d details=\"%s\"",
                 s->methods[c->method].path, reply.status, reply.message);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!st->sent_initial) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (reply.status != RPC_OK) c->status_details = grpc_slice_from_copied_string(reply.message);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)reply.status;
    ops[n++].data.send_status_from_server.status_details =
        reply.status == RPC_OK ? NULL : &c->status_details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    rpc_stream_batch(st, ops, n);
    rpc_call_free(c);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    free(st);
    pthread_mutex_lock(&s->streams_lock);
    if (--s->streams == 0) pthread_cond_broadcast(&s->streams_done);
    pthread_mutex_unlock(&s->streams_lock);
    return NULL;
}

/* Hands a new streaming call to a thread of its own. Returns 0, or -1 with
 * reply filled when it cannot run now. */
static int rpc_start_stream(rpc_call *c, rpc_reply *reply) {
    rpc_server *s = c->worker->server;
    pthread_mutex_lock(&s->streams_lock);
    int full = s->streams >= s->max_streams;
    if (!full) s->streams++;
    pthread_mutex_unlock(&s->streams_lock);
    if (full) {
        rpc_reply_error(reply, RPC_RESOURCE_EXHAUSTED,
                        "%u streaming calls are running already; try again later", s->max_streams);
        return -1;
    }
    rpc_stream *st = calloc(1, sizeof *st);
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (st) {
        st->state = STREAM_BATCH;
        st->call = c;
        pthread_mutex_init(&st->lock, NULL);
        pthread_cond_init(&st->cond, NULL);
    }
    if (!st || pthread_create(&thread, &attr, rpc_stream_main, st)) {
        pthread_attr_destroy(&attr);
        if (st) {
            pthread_mutex_destroy(&st->lock);
            pthread_cond_destroy(&st->cond);
            free(st);
        }
        pthread_mutex_lock(&s->streams_lock);
        if (--s->streams == 0) pthread_cond_broadcast(&s->streams_done);
        pthread_mutex_unlock(&s->streams_lock);
        rpc_reply_error(reply, RPC_RESOURCE_EXHAUSTED, "cannot start a streaming call now");
        return -1;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

/* Runs the handler of a new call and starts the batch that answers it. */
static void rpc_answer(rpc_call *c) {
    rpc_server *s = c->worker->server;
    rpc_reply reply = {.status = RPC_OK};
    if (c->method >= 0 && s->methods[c->method].stream) {
        if (rpc_start_stream(c, &reply) == 0) return; /* the stream's thread owns c now */
    } else if (c->method < 0) {
        char *method = grpc_slice_to_c_string(c->details.method);
        rpc_reply_error(&reply, RPC_UNIMPLEMENTED, "method %s is not implemented by recd", method);
        gpr_free(method);
    } else {
        size_t len;
        uint8_t *req = rpc_read_payload(c->payload, &len);
        if (!req) {
            rpc_reply_error(&reply, RPC_INTERNAL, "cannot read the request message");
        } else {
            const rpc_method *m = &s->methods[c->method];
            m->handler(m->ctx, req, len, &reply);
            free(req);
        }
    }
    if (reply.status != RPC_OK)
        log_warn("msg=\"call failed\" method=%s status=%d details=\"%s\"",
                 c->method >= 0 ? s->methods[c->method].path : "unregistered", reply.status,
                 reply.message);

    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (reply.status == RPC_OK) {
        grpc_slice body = grpc_slice_from_copied_buffer((const char *)reply.body, reply.len);
        c->response = grpc_raw_byte_buffer_create(&body, 1);
        grpc_slice_unref(body);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->response;
    } else {
        c->status_details = grpc_slice_from_copied_string(reply.message);
    }
    free(reply.body);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)reply.status;
    ops[n++].data.send_status_from_server.status_details =
        reply.status == RPC_OK ? NULL : &c->status_details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    c->state = CALL_ANSWERING;
    grpc_call_error rc = grpc_call_start_batch(c->call, ops, n, c, NULL);
    if (rc != GRPC_CALL_OK) {
        log_error("msg=\"cannot answer a call\" grpc_call_error=%d", (int)rc);
        rpc_call_free(c);
    }
}

static void *rpc_worker_main(void *arg) {
    rpc_worker *w = arg;
    rpc_server *s = w->server;
    for (size_t m = 0; m < s->n_methods; m++)
        for (int i = 0; i < RPC_REQUESTS_PER_METHOD; i++)
            rpc_request(w, (int)m);
    for (int i = 0; i < 2; i++)
        rpc_request(w, -1);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        if (*(call_state *)ev.tag == STREAM_BATCH) {
            rpc_stream *st = ev.tag;
            pthread_mutex_lock(&st->lock);
            st->pending = 0;
            st->success = ev.success;
            pthread_cond_signal(&st->cond);
            pthread_mutex_unlock(&st->lock);
            continue;
        }
        rpc_call *c = ev.tag;
        if (c->state == CALL_REQUESTED) {
            if (!ev.success) { /* the server is shutting down */
                rpc_call_free(c);
                continue;
            }
            rpc_request(w, c->method); /* keep the pool of requests full first */
            rpc_answer(c);
        } else {
            rpc_call_free(c);
        }
    }
    return NULL;
}

int rpc_server_port(const rpc_server *s) {
    return s->port;
}

static void rpc_server_free(rpc_server *s) {
    if (s->grpc) grpc_server_destroy(s->grpc);
    for (uint32_t i = 0; i < s->n_workers; i++)
        if (s->workers[i].cq) grpc_completion_queue_destroy(s->workers[i].cq);
    free(s->workers);
    free(s->registered);
    pthread_mutex_destroy(&s->streams_lock);
    pthread_cond_destroy(&s->streams_done);
    free(s);
    grpc_shutdown();
}

int rpc_server_start(const rpc_options *o, const rpc_method *methods, size_t n, rpc_server **out,
                     err_t *e) {
    if (o->threads < 1) return err_set(e, ERR_INVALID, "rpc: at least one worker thread needed");
    grpc_init();
    rpc_server *s = calloc(1, sizeof *s);
    if (!s) {
        grpc_shutdown();
        return err_set(e, ERR_NOMEM, "rpc: out of memory");
    }
    s->methods = methods;
    s->n_methods = n;
    s->max_streams = o->max_streams ? o->max_streams : 4;
    pthread_mutex_init(&s->streams_lock, NULL);
    pthread_cond_init(&s->streams_done, NULL);
    s->registered = calloc(n ? n : 1, sizeof *s->registered);
    s->workers = calloc(o->threads, sizeof *s->workers);
    if (!s->registered || !s->workers) {
        rpc_server_free(s);
        return err_set(e, ERR_NOMEM, "rpc: out of memory");
    }
    grpc_arg args[2];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)o->max_message_bytes;
    /* Two servers on one port would split traffic unpredictably. */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[1].value.integer = 0;
    grpc_channel_args channel_args = {2, args};
    s->grpc = grpc_server_create(&channel_args, NULL);
    for (size_t m = 0; m < n; m++) {
        s->registered[m] = grpc_server_register_method(
            s->grpc, methods[m].path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!s->registered[m]) {
            rpc_server_free(s);
            return err_set(e, ERR_INTERNAL, "rpc: cannot register %s", methods[m].path);
        }
    }
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->grpc, o->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        rpc_server_free(s);
        return err_set(e, ERR_INVALID, "cannot listen on %s (address in use or invalid)",
                       o->listen);
    }
    s->n_workers = o->threads;
    for (uint32_t i = 0; i < s->n_workers; i++) {
        s->workers[i].server = s;
        s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->grpc, s->workers[i].cq, NULL);
    }
    grpc_server_start(s->grpc);
    for (uint32_t i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, rpc_worker_main, &s->workers[i])) {
            rpc_server_stop(s);
            return err_set(e, ERR_INTERNAL, "rpc: cannot start worker thread %u", i);
        }
        s->n_started++;
    }
    *out = s;
    return ERR_OK;
}

void rpc_server_stop(rpc_server *s) {
    atomic_store(&s->stopping, 1);
    /* Shutdown completes once every in-flight call has been answered; the
     * requests still posted then complete with success = 0 on the workers. */
    grpc_completion_queue *done = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(s->grpc, done, s);
    /* Unary calls finish in moments; a long export gets a few seconds and is
     * then cancelled, which makes its next send fail and its handler stop. */
    gpr_timespec grace = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                      gpr_time_from_seconds(RPC_STOP_GRACE_S, GPR_TIMESPAN));
    if (grpc_completion_queue_pluck(done, s, grace, NULL).type == GRPC_QUEUE_TIMEOUT) {
        grpc_server_cancel_all_calls(s->grpc);
        grpc_completion_queue_pluck(done, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    grpc_completion_queue_shutdown(done);
    grpc_completion_queue_destroy(done);
    /* Stream threads still free their calls after the last batch: the
     * workers must outlive them. */
    pthread_mutex_lock(&s->streams_lock);
    while (s->streams)
        pthread_cond_wait(&s->streams_done, &s->streams_lock);
    pthread_mutex_unlock(&s->streams_lock);
    for (uint32_t i = 0; i < s->n_workers; i++)
        grpc_completion_queue_shutdown(s->workers[i].cq);
    for (uint32_t i = 0; i < s->n_started; i++)
        pthread_join(s->workers[i].thread, NULL);
    /* Queues of workers that never started (a failed start) drain here. */
    for (uint32_t i = s->n_started; i < s->n_workers; i++) {
        grpc_event ev;
        do {
            ev = grpc_completion_queue_next(s->workers[i].cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                            NULL);
            if (ev.type == GRPC_OP_COMPLETE) rpc_call_free(ev.tag);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    }
    rpc_server_free(s);
}
