/* rpc: the one wrapper of the gRPC C core (server side).
 *
 * The core's API changes between gRPC minor versions, so no other file of
 * recd includes grpc/grpc.h for serving: this one registers the methods,
 * runs the pollers (one completion queue each), reads requests and sends
 * replies, runs the streaming calls on their own threads, maps ERR_* codes
 * to statuses (err_to_status), keeps the call metrics, and guards the
 * listener (channel limits, the self-check). Unary calls go to the service
 * core's scheduler through rpc_options.dispatch. It is longer than the
 * other modules because all of that shares the call state and the core's
 * rules for it, which are easier to keep right in one place. */
#include "rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "histo.h"
#include "log.h"

/* Call requests each poller keeps posted per method: enough that a burst of
 * new calls never waits for a poller to re-post. */
#define RPC_REQUESTS_PER_METHOD 16

/* Seconds a stop waits for calls in flight before cancelling them. */
#define RPC_STOP_GRACE_S 5
#define RPC_STOP_LOOK_MS 20 /* how often a stop looks whether calls are left */

/* A connection must finish its handshake (TLS and the HTTP/2 preface)
 * within this; the core's default is 120 s of a descriptor per idle socket. */
#define RPC_HANDSHAKE_TIMEOUT_MS 10000
/* The server pings a connection quiet for this long and closes it when the
 * ping is not answered in time: peers that vanished free their descriptor. */
#define RPC_KEEPALIVE_MS 60000
#define RPC_KEEPALIVE_TIMEOUT_MS 20000
/* Concurrent streams (calls) of one connection; HAProxy's
 * tune.h2.max-concurrent-streams is the same. */
#define RPC_MAX_STREAMS_PER_CONNECTION 100
/* "call failed" lines a second at most: every failure of a client is
 * counted in the metrics, but a client sending bad calls as fast as it can
 * (100,000 reset streams made 26,000 lines in seconds) must not fill the
 * disk with the log. The lines held back are logged as one count. */
#define RPC_FAIL_LOGS_PER_S 20
/* Failed self-checks in a row that make the listener dead. */
#define RPC_SELF_CHECK_FAILS 3

/* What a completion-queue tag is: every tag struct starts with one. */
typedef enum {
    CALL_REQUESTED, /* rpc_call: a call request posted to the server */
    CALL_ANSWERING, /* rpc_call: the batch answering a unary call */
    STREAM_BATCH    /* rpc_stream: a batch of a streaming call, awaited by its thread */
} call_state;

/* One call, from the request posted to the server until its answer batch
 * completes. Owned by whoever holds it: its poller, the dispatcher (a unary
 * call: the public rpc_unary is this), or a stream's thread; freed by the
 * poller when the answer batch completes. */
typedef struct rpc_unary {
    /* Atomic: the thread that starts a batch sets it and the poller reads it
     * when the batch completes; the hand-off goes through gRPC's completion
     * queue, which (uninstrumented) ThreadSanitizer cannot see, and this
     * makes it one TSan can, for everything written before the batch. */
    _Atomic call_state state;
    int method; /* index into methods, or -1 for an unregistered method */
    struct rpc_poller *poller;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_metadata;
    grpc_call_details details; /* unregistered calls only */
    grpc_byte_buffer *payload;
    grpc_byte_buffer *response;
    grpc_slice status_details;
    int cancelled;
    int arrived;        /* a client's call, counted in the server's in_flight */
    double accepted_at; /* monotonic seconds */
    double deadline_s;  /* deadline in clock_seconds(), 0 = none (unary calls) */
} rpc_call;

typedef struct rpc_poller {
    struct rpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;
} rpc_poller;

/* A streaming call (server-streaming or bidirectional), owned by the thread
 * running its handler. The
 * poller whose queue the call is bound to reports each batch's completion
 * through lock/cond. */
struct rpc_stream {
    _Atomic call_state state; /* STREAM_BATCH */
    struct rpc_unary *call;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC, for the progress timeout */
    int pending, success, sent_initial;
    int stalled; /* cancelled for want of progress: later batches wait for ever */
};

struct rpc_server {
    grpc_server *grpc;
    const rpc_method *methods;
    void **registered; /* grpc handles, one per method */
    size_t n_methods;
    rpc_poller *pollers;
    uint32_t n_pollers, n_pollers_started;
    int port;
    atomic_int stopping;
    atomic_uint in_flight; /* calls arrived and not yet freed */
    char *write_token;     /* NULL = write methods are open */
    char *read_token;      /* NULL = member-data methods are open */
    uint32_t stream_progress_ms;

    rpc_dispatch_fn dispatch;
    rpc_stream_admit_fn admit_stream;
    rpc_stream_done_fn stream_done;
    void *dispatch_ctx;

    /* Calls a thread other than the pollers answers: each answer must start
     * before the pollers stop. */
    pthread_mutex_t streams_lock;
    pthread_cond_t streams_done; /* streams or unaries reached 0 */
    uint32_t streams;            /* running streaming calls (the stop waits for them) */
    uint32_t unaries;            /* unary calls the dispatcher holds */

    /* Per method (index n_methods: unregistered methods): calls by status,
     * and the latency histogram (cumulative counts are made at scrape). */
    atomic_ullong (*calls)[ERR_STATUSES];
    histo *latency; /* per method, the last for calls of no method */

    /* Rate limit of the failure lines (rpc_log_failure). */
    pthread_mutex_t fail_log_lock;
    double fail_log_window; /* clock_seconds() the current second began */
    uint32_t fail_logged;   /* lines in the current second */
    uint64_t fail_held;     /* lines held back since the last count was logged */

    /* The listener self-check (rpc_watchdog_main). */
    struct sockaddr_storage self_addr;
    socklen_t self_addr_len;
    uint32_t self_check_ms;
    void (*on_listener_dead)(void *ctx);
    void *listener_dead_ctx;
    pthread_t watchdog;
    int watchdog_started, watchdog_stop;
    pthread_mutex_t watchdog_lock;
    pthread_cond_t watchdog_wake;
};

void rpc_reply_error(rpc_reply *r, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(&r->err, code, fmt, ap);
    va_end(ap);
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

static void rpc_call_free(rpc_call *c) {
    if (c->arrived) atomic_fetch_sub(&c->poller->server->in_flight, 1);
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->request_metadata);
    if (c->method < 0) grpc_call_details_destroy(&c->details);
    if (c->payload) grpc_byte_buffer_destroy(c->payload);
    if (c->response) grpc_byte_buffer_destroy(c->response);
    grpc_slice_unref(c->status_details);
    free(c);
}

/* Posts a request for the next call of method (or of any unregistered method
 * when method < 0) on this poller's queue. Failure only happens while the
 * server shuts down, when nothing needs to be posted any more. */
static void rpc_request(rpc_poller *p, int method) {
    rpc_server *s = p->server;
    if (atomic_load(&s->stopping)) return;
    rpc_call *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("msg=\"cannot allocate a call request\"");
        return;
    }
    c->state = CALL_REQUESTED;
    c->method = method;
    c->poller = p;
    c->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&c->request_metadata);
    grpc_call_error rc;
    if (method >= 0) {
        /* Bidirectional calls read their messages themselves: they come with none. */
        rc = grpc_server_request_registered_call(
            s->grpc, s->registered[method], &c->call, &c->deadline, &c->request_metadata,
            s->methods[method].bidi ? NULL : &c->payload, p->cq, p->cq, c);
    } else {
        grpc_call_details_init(&c->details);
        rc = grpc_server_request_call(s->grpc, &c->call, &c->details, &c->request_metadata, p->cq,
                                      p->cq, c);
    }
    if (rc != GRPC_CALL_OK) rpc_call_free(c);
}

/* Copies the request message into one contiguous buffer (gRPC may hold it
 * in several slices). Returns a malloc'ed buffer (caller frees), or NULL
 * with reply filled (ERR_NOMEM, or ERR_INTERNAL when gRPC cannot read it). */
static uint8_t *rpc_read_payload(grpc_byte_buffer *bb, size_t *len, rpc_reply *reply) {
    grpc_byte_buffer_reader reader;
    *len = 0;
    /* Per-message decompression is off: a compressed message would arrive
     * as it was sent. Only identity is enabled, so none should. */
    if (bb->type != GRPC_BB_RAW || bb->data.raw.compression != GRPC_COMPRESS_NONE) {
        rpc_reply_error(reply, ERR_UNIMPLEMENTED, "compressed requests are not accepted");
        return NULL;
    }
    if (!grpc_byte_buffer_reader_init(&reader, bb)) {
        rpc_reply_error(reply, ERR_INTERNAL, "cannot read the request message");
        return NULL;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    size_t n = GRPC_SLICE_LENGTH(all);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) {
        memcpy(buf, GRPC_SLICE_START_PTR(all), n);
        *len = n;
    } else {
        rpc_reply_error(reply, ERR_NOMEM, "out of memory for a request of %zu bytes", n);
    }
    grpc_slice_unref(all);
    return buf;
}

static const char *rpc_method_name(const rpc_call *c) {
    return c->method >= 0 ? c->poller->server->methods[c->method].path : "unregistered";
}

/* Starts the batch that answers c with reply (whose body it frees). The
 * poller frees c when the batch completes. */
/* Counts a finished call of c's method with its gRPC status, accepted at
 * c->accepted_at. */
static void rpc_observe(rpc_call *c, int status) {
    rpc_server *s = c->poller->server;
    size_t m = c->method >= 0 ? (size_t)c->method : s->n_methods;
    atomic_fetch_add(&s->calls[m][status], 1);
    histo_observe(&s->latency[m], clock_seconds() - c->accepted_at);
}

/* Logs a failed call (what: "call failed", "stream failed"), at most
 * RPC_FAIL_LOGS_PER_S lines a second; the count held back is logged with
 * the first line of a later second. */
static void rpc_log_failure(rpc_call *c, const char *what, int status, const char *msg) {
    rpc_server *s = c->poller->server;
    double now = clock_seconds();
    uint64_t held = 0;
    pthread_mutex_lock(&s->fail_log_lock);
    if (now - s->fail_log_window >= 1.0) {
        held = s->fail_held;
        s->fail_held = 0;
        s->fail_logged = 0;
        s->fail_log_window = now;
    }
    int log_it = s->fail_logged < RPC_FAIL_LOGS_PER_S;
    if (log_it)
        s->fail_logged++;
    else
        s->fail_held++;
    pthread_mutex_unlock(&s->fail_log_lock);
    if (held)
        log_warn("msg=\"failed calls not logged\" held_back=%llu limit_per_s=%d",
                 (unsigned long long)held, RPC_FAIL_LOGS_PER_S);
    if (!log_it) return;
    /* Details often quote what the client sent: escaped, it cannot forge a
     * line or a key of the log. */
    char details[sizeof((err_t *)0)->msg * 4];
    log_warn("msg=\"%s\" method=%s status=%d details=\"%s\"", what, rpc_method_name(c), status,
             log_escape(msg, details, sizeof details));
}

static void rpc_send_answer(rpc_call *c, rpc_reply *reply) {
    int status = err_to_status(reply->err.code);
    rpc_observe(c, status);
    if (status != ERR_STATUS_OK) rpc_log_failure(c, "call failed", status, reply->err.msg);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (status == ERR_STATUS_OK) {
        grpc_slice body = grpc_slice_from_copied_buffer((const char *)reply->body, reply->len);
        c->response = grpc_raw_byte_buffer_create(&body, 1);
        grpc_slice_unref(body);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->response;
    } else {
        c->status_details = grpc_slice_from_copied_string(reply->err.msg);
    }
    free(reply->body);
    reply->body = NULL;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)status;
    ops[n++].data.send_status_from_server.status_details =
        status == ERR_STATUS_OK ? NULL : &c->status_details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    /* c belongs to the poller from the state change on: read it first. */
    grpc_call *call = c->call;
    c->state = CALL_ANSWERING;
    grpc_call_error rc = grpc_call_start_batch(call, ops, n, c, NULL);
    if (rc != GRPC_CALL_OK) {
        log_error("msg=\"cannot answer a call\" grpc_call_error=%d", (int)rc);
        rpc_call_free(c);
    }
}

static int rpc_deadline_passed(const rpc_call *c) {
    return gpr_time_cmp(c->deadline, gpr_now(c->deadline.clock_type)) < 0;
}

/* --- streaming calls -------------------------------------------------------- */

/* Starts a batch of a stream's call and waits for the poller to report its
 * completion. Returns 1 when the batch succeeded. A batch not done within
 * the server's stream_progress_ms (a client that stopped reading holds a
 * send in flow control for as long as it likes, and with it a thread and
 * one of the few stream slots) cancels the call: the batch then completes
 * at once, failed, and so does every later one. */
static int rpc_stream_batch(rpc_stream *st, grpc_op *ops, size_t n) {
    rpc_call *c = st->call;
    uint32_t limit_ms = c->poller->server->stream_progress_ms;
    pthread_mutex_lock(&st->lock);
    st->pending = 1;
    if (grpc_call_start_batch(c->call, ops, n, st, NULL) != GRPC_CALL_OK) {
        pthread_mutex_unlock(&st->lock);
        return 0;
    }
    struct timespec until = clock_deadline(limit_ms / 1000.0);
    while (st->pending) {
        if (!limit_ms || st->stalled) {
            pthread_cond_wait(&st->cond, &st->lock);
        } else if (pthread_cond_timedwait(&st->cond, &st->lock, &until) == ETIMEDOUT &&
                   st->pending) {
            st->stalled = 1;
            pthread_mutex_unlock(&st->lock);
            log_warn("msg=\"stream stalled: cancelled\" method=%s progress_timeout_ms=%u",
                     rpc_method_name(c), limit_ms);
            grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                         "the client took nothing of the stream within the "
                                         "server's progress timeout",
                                         NULL);
            pthread_mutex_lock(&st->lock);
        }
    }
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

/* Waits for the client's next message of a bidirectional call. Returns 1 with
 * *msg (malloc'ed, the caller frees it) and *len; 0 once the client has
 * half-closed; -1 when the call is gone (cancelled, deadline passed,
 * connection lost, a message over the size limit) or the message could not
 * be read, with why in *reply. */
static int rpc_stream_recv(rpc_stream *st, uint8_t **msg, size_t *len, rpc_reply *reply) {
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!rpc_stream_batch(st, &op, 1)) {
        if (bb) grpc_byte_buffer_destroy(bb);
        rpc_reply_error(reply, ERR_CANCELLED, "the call ended before its next request");
        return -1;
    }
    if (!bb) return 0;
    *msg = rpc_read_payload(bb, len, reply);
    grpc_byte_buffer_destroy(bb);
    return *msg ? 1 : -1;
}

/* Runs a bidirectional call: each request message to m->bidi, each OK
 * answer back, until the client half-closes or an answer is an error.
 * reply gets the status that ends the call. */
static void rpc_run_bidi(rpc_stream *st, const rpc_method *m, rpc_reply *reply) {
    for (;;) {
        uint8_t *req;
        size_t len;
        int got = rpc_stream_recv(st, &req, &len, reply);
        if (got <= 0) return;
        rpc_reply answer = {.err.code = ERR_OK};
        m->bidi(m->ctx, req, len, &answer);
        free(req);
        if (answer.err.code != ERR_OK) {
            *reply = answer;
            return;
        }
        int sent = rpc_stream_send(st, answer.body, answer.len);
        free(answer.body);
        if (sent) {
            rpc_reply_error(reply, ERR_CANCELLED, "the client went away");
            return;
        }
    }
}

static void rpc_stream_finished(rpc_server *s) {
    if (s->stream_done) s->stream_done(s->dispatch_ctx);
    pthread_mutex_lock(&s->streams_lock);
    if (--s->streams == 0) pthread_cond_broadcast(&s->streams_done);
    pthread_mutex_unlock(&s->streams_lock);
}

/* Runs a server-streaming call's handler on its request message. */
static void rpc_run_server_stream(rpc_stream *st, const rpc_method *m, rpc_reply *reply) {
    rpc_call *c = st->call;
    size_t len;
    uint8_t *req = c->payload ? rpc_read_payload(c->payload, &len, reply) : NULL;
    if (!c->payload) {
        rpc_reply_error(reply, ERR_INVALID, "no complete request message arrived");
    } else if (req) {
        m->stream(m->ctx, req, len, st, reply);
        free(req);
    }
}

/* Runs a streaming call on its own thread, then ends it with the handler's
 * status and frees it. */
static void *rpc_stream_main(void *arg) {
    rpc_stream *st = arg;
    rpc_call *c = st->call;
    rpc_server *s = c->poller->server;
    rpc_reply reply = {.err.code = ERR_OK};
    const rpc_method *m = &s->methods[c->method];
    if (m->bidi)
        rpc_run_bidi(st, m, &reply);
    else
        rpc_run_server_stream(st, m, &reply);
    free(reply.body);
    int status = err_to_status(reply.err.code);
    rpc_observe(c, status);
    if (status != ERR_STATUS_OK) rpc_log_failure(c, "stream failed", status, reply.err.msg);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!st->sent_initial) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (status != ERR_STATUS_OK) c->status_details = grpc_slice_from_copied_string(reply.err.msg);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)status;
    ops[n++].data.send_status_from_server.status_details =
        status == ERR_STATUS_OK ? NULL : &c->status_details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    rpc_stream_batch(st, ops, n);
    rpc_call_free(c);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    free(st);
    rpc_stream_finished(s);
    return NULL;
}

/* Hands a new streaming call to a thread of its own. Returns 0, or -1 with
 * reply filled when it cannot run now. */
static int rpc_start_stream(rpc_call *c, rpc_reply *reply) {
    rpc_server *s = c->poller->server;
    if (s->admit_stream && s->admit_stream(s->dispatch_ctx, &reply->err)) return -1;
    pthread_mutex_lock(&s->streams_lock);
    s->streams++;
    pthread_mutex_unlock(&s->streams_lock);
    rpc_stream *st = calloc(1, sizeof *st);
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (st) {
        st->state = STREAM_BATCH;
        st->call = c;
        pthread_mutex_init(&st->lock, NULL);
        clock_cond_init(&st->cond);
    }
    int failed = !st || pthread_create(&thread, &attr, rpc_stream_main, st);
    pthread_attr_destroy(&attr);
    if (failed) {
        if (st) {
            pthread_mutex_destroy(&st->lock);
            pthread_cond_destroy(&st->cond);
            free(st);
        }
        rpc_stream_finished(s);
        rpc_reply_error(reply, st ? ERR_LIMIT : ERR_NOMEM, "cannot start a streaming call now");
        return -1;
    }
    return 0;
}

/* --- accepting calls (pollers) --------------------------------------------- */

/* True when the call carries "authorization: Bearer <token>". The compare
 * takes the same time wherever the first difference is. */
static int rpc_authorized(const char *token, const rpc_call *c) {
    size_t want = strlen(token);
    for (size_t i = 0; i < c->request_metadata.count; i++) {
        const grpc_metadata *md = &c->request_metadata.metadata[i];
        if (!grpc_slice_str_cmp(md->key, "authorization")) {
            const char *v = (const char *)GRPC_SLICE_START_PTR(md->value);
            size_t len = GRPC_SLICE_LENGTH(md->value);
            if (len != want + 7 || memcmp(v, "Bearer ", 7)) return 0;
            unsigned char diff = 0;
            for (size_t j = 0; j < want; j++)
                diff |= (unsigned char)(v[7 + j] ^ token[j]);
            return diff == 0;
        }
    }
    return 0;
}

/* The deadline of c in clock_seconds(), 0 when it has none. */
static double rpc_deadline_seconds(const rpc_call *c) {
    gpr_clock_type clock = c->deadline.clock_type;
    if (gpr_time_cmp(c->deadline, gpr_inf_future(clock)) == 0) return 0;
    gpr_timespec left = gpr_time_sub(c->deadline, gpr_now(clock));
    return clock_seconds() + (double)gpr_timespec_to_micros(left) / 1e6;
}

/* Hands a unary call to the dispatcher. Returns 0, or -1 with reply filled
 * when the dispatcher refuses it. */
static int rpc_dispatch(rpc_server *s, rpc_call *c, rpc_reply *reply) {
    c->deadline_s = rpc_deadline_seconds(c);
    /* Counted first: the answer may come from another thread at once. */
    pthread_mutex_lock(&s->streams_lock);
    s->unaries++;
    pthread_mutex_unlock(&s->streams_lock);
    if (s->dispatch(s->dispatch_ctx, c, &reply->err) == ERR_OK) return 0;
    pthread_mutex_lock(&s->streams_lock);
    if (--s->unaries == 0) pthread_cond_broadcast(&s->streams_done);
    pthread_mutex_unlock(&s->streams_lock);
    return -1;
}

const rpc_method *rpc_unary_method(const rpc_unary *u) {
    return &u->poller->server->methods[u->method];
}

double rpc_unary_deadline(const rpc_unary *u) {
    return u->deadline_s;
}

uint8_t *rpc_unary_request(rpc_unary *u, size_t *len, rpc_reply *reply) {
    *len = 0;
    if (!u->payload && rpc_unary_method(u)->empty_ok) {
        uint8_t *empty = malloc(1);
        if (!empty) rpc_reply_error(reply, ERR_NOMEM, "out of memory");
        return empty;
    }
    if (!u->payload) {
        /* gRPC gives no payload when the stream ended before a whole message
         * came (or none was sent): never read that as empty. */
        rpc_reply_error(reply, ERR_INVALID, "no complete request message arrived");
        return NULL;
    }
    return rpc_read_payload(u->payload, len, reply);
}

void rpc_unary_answer(rpc_unary *u, rpc_reply *reply) {
    rpc_server *s = u->poller->server; /* u is the poller's once answered */
    rpc_send_answer(u, reply);
    pthread_mutex_lock(&s->streams_lock);
    if (--s->unaries == 0) pthread_cond_broadcast(&s->streams_done);
    pthread_mutex_unlock(&s->streams_lock);
}

/* Decides what to do with a new call on its poller: answer at once what
 * needs no handler, else hand it on. */
static void rpc_accept(rpc_call *c) {
    rpc_server *s = c->poller->server;
    c->accepted_at = clock_seconds();
    rpc_reply reply = {.err.code = ERR_OK};
    const rpc_method *m = c->method >= 0 ? &s->methods[c->method] : NULL;
    if (!m) {
        char *method = grpc_slice_to_c_string(c->details.method);
        rpc_reply_error(&reply, ERR_UNIMPLEMENTED, "method %s is not implemented by recd", method);
        gpr_free(method);
    } else if (m->write && s->write_token && !rpc_authorized(s->write_token, c)) {
        rpc_reply_error(&reply, ERR_UNAUTHENTICATED,
                        "%s changes data: it needs metadata 'authorization: Bearer <token>' with "
                        "the server's write token",
                        m->path);
    } else if (m->member_data && s->read_token && !rpc_authorized(s->read_token, c)) {
        rpc_reply_error(&reply, ERR_UNAUTHENTICATED,
                        "%s returns members' personal data: it needs metadata 'authorization: "
                        "Bearer <token>' with the server's read token (--read-token-file)",
                        m->path);
    } else if (rpc_deadline_passed(c)) {
        rpc_reply_error(&reply, ERR_DEADLINE,
                        "the deadline passed before the call "
                        "arrived");
    } else if (m->stream || m->bidi) {
        if (rpc_start_stream(c, &reply) == 0) return; /* the stream's thread owns c now */
    } else if (rpc_dispatch(s, c, &reply) == 0) {
        return; /* the dispatcher owns c now */
    }
    rpc_send_answer(c, &reply);
}

static void *rpc_poller_main(void *arg) {
    rpc_poller *p = arg;
    rpc_server *s = p->server;
    for (size_t m = 0; m < s->n_methods; m++)
        for (int i = 0; i < RPC_REQUESTS_PER_METHOD; i++)
            rpc_request(p, (int)m);
    for (int i = 0; i < 2; i++)
        rpc_request(p, -1);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(p->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        if (*(_Atomic call_state *)ev.tag == STREAM_BATCH) {
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
            c->arrived = 1;
            atomic_fetch_add(&s->in_flight, 1);
            rpc_request(p, c->method); /* keep the pool of requests full first */
            rpc_accept(c);
        } else {
            rpc_call_free(c);
        }
    }
    return NULL;
}

/* --- listener self-check -------------------------------------------------------- */

/* The address the self-check connects to: host of listen (brackets
 * stripped; a wildcard host becomes loopback) and port. Returns 0, or -1
 * when the host does not resolve. */
static int rpc_self_address(const char *listen, int port, struct sockaddr_storage *ss,
                            socklen_t *len) {
    char host[256];
    const char *colon = strrchr(listen, ':');
    size_t n = (size_t)(colon - listen);
    if (n >= sizeof host) return -1;
    memcpy(host, listen, n);
    host[n] = '\0';
    char *h = host;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host[n - 1] = '\0';
        h = host + 1;
    }
    if (!*h || !strcmp(h, "0.0.0.0")) h = "127.0.0.1";
    if (!strcmp(h, "::")) h = "::1";
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(h, NULL, &hints, &ai)) return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        return -1;
    return 0;
}

/* One self-check: connects to the server's own port, sends the HTTP/2
 * client preface and an empty SETTINGS frame, and waits up to timeout_ms
 * for anything back: the server's SETTINGS, or (TLS, which reads the
 * preface as a bad ClientHello) the connection closed. Either means the
 * connection was accepted. A connection the kernel completed into the
 * listen backlog but gRPC never accepted sees nothing. Returns 1 when
 * answered, 0 when not, also when no descriptor is left for the check. */
static int rpc_listener_answers(const struct sockaddr_storage *ss, socklen_t len, int timeout_ms) {
    static const char hello[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                "\0\0\0\x04\0\0\0\0\0"; /* + SETTINGS, empty */
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int answered = 0;
    if (connect(fd, (const struct sockaddr *)ss, len) == 0 || errno == EINPROGRESS) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t soerr_len = sizeof soerr;
        if (poll(&pfd, 1, timeout_ms) == 1 &&
            !getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) && !soerr &&
            send(fd, hello, sizeof hello - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof hello - 1)) {
            pfd.events = POLLIN;
            answered = poll(&pfd, 1, timeout_ms) == 1;
        }
    }
    close(fd);
    return answered;
}

static void *rpc_watchdog_main(void *arg) {
    rpc_server *s = arg;
    int failed = 0;
    pthread_mutex_lock(&s->watchdog_lock);
    for (;;) {
        struct timespec until = clock_deadline(s->self_check_ms / 1000.0);
        while (!s->watchdog_stop &&
               pthread_cond_timedwait(&s->watchdog_wake, &s->watchdog_lock, &until) == 0)
            ;
        if (s->watchdog_stop) break;
        pthread_mutex_unlock(&s->watchdog_lock);
        int answered = rpc_listener_answers(&s->self_addr, s->self_addr_len, (int)s->self_check_ms);
        pthread_mutex_lock(&s->watchdog_lock);
        if (answered) {
            failed = 0;
            continue;
        }
        if (++failed < RPC_SELF_CHECK_FAILS) {
            log_warn("msg=\"listener self-check failed\" port=%d failed=%d", s->port, failed);
            continue;
        }
        log_error("msg=\"the listener no longer accepts connections\" port=%d failed=%d "
                  "hint=\"out of descriptors? see the descriptor limit\"",
                  s->port, failed);
        break;
    }
    int dead = !s->watchdog_stop;
    pthread_mutex_unlock(&s->watchdog_lock);
    if (dead && s->on_listener_dead) s->on_listener_dead(s->listener_dead_ctx);
    return NULL;
}

/* --- lifecycle ---------------------------------------------------------------- */

/* True when address ends in ":PORT" with PORT a decimal number 0-65535:
 * gRPC itself takes 127.0.0.1:99999 and binds the port it wraps to. */
static int rpc_listen_address_ok(const char *address) {
    const char *colon = strrchr(address, ':');
    if (!colon || !colon[1]) return 0;
    unsigned long port = 0;
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9') return 0;
        port = port * 10 + (unsigned long)(*c - '0');
        if (port > 65535) return 0;
    }
    return 1;
}

int rpc_server_port(const rpc_server *s) {
    return s->port;
}

static void rpc_server_free(rpc_server *s) {
    if (s->grpc) grpc_server_destroy(s->grpc);
    for (uint32_t i = 0; i < s->n_pollers; i++)
        if (s->pollers[i].cq) grpc_completion_queue_destroy(s->pollers[i].cq);
    free(s->pollers);
    free(s->registered);
    free(s->write_token);
    free(s->read_token);
    free(s->calls);
    free(s->latency);
    pthread_mutex_destroy(&s->streams_lock);
    pthread_cond_destroy(&s->streams_done);
    pthread_mutex_destroy(&s->watchdog_lock);
    pthread_mutex_destroy(&s->fail_log_lock);
    pthread_cond_destroy(&s->watchdog_wake);
    free(s);
    grpc_shutdown();
}

/* The server credentials of o: TLS (mutual when a client CA is given) or
 * insecure. NULL with e set when the PEM pair is incomplete. */
static grpc_server_credentials *rpc_credentials(const rpc_options *o, err_t *e) {
    if (!o->tls_cert && !o->tls_key && !o->tls_client_ca)
        return grpc_insecure_server_credentials_create();
    if (!o->tls_cert || !o->tls_key) {
        err_set(e, ERR_INVALID, "TLS needs both a certificate and its key");
        return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {o->tls_key, o->tls_cert};
    return grpc_ssl_server_credentials_create_ex(
        o->tls_client_ca, &pair, 1,
        o->tls_client_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                         : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
}

int rpc_server_start(const rpc_options *o, const rpc_method *methods, size_t n, rpc_server **out,
                     err_t *e) {
    if (o->pollers < 1) return err_set(e, ERR_INVALID, "rpc: at least one poller thread needed");
    if (!o->dispatch) return err_set(e, ERR_INVALID, "rpc: a dispatcher for unary calls needed");
    grpc_init();
    rpc_server *s = calloc(1, sizeof *s);
    if (!s) {
        grpc_shutdown();
        return err_set(e, ERR_NOMEM, "rpc: out of memory");
    }
    pthread_mutex_init(&s->streams_lock, NULL);
    pthread_cond_init(&s->streams_done, NULL);
    pthread_mutex_init(&s->watchdog_lock, NULL);
    pthread_mutex_init(&s->fail_log_lock, NULL);
    clock_cond_init(&s->watchdog_wake);
    s->self_check_ms = o->self_check_ms;
    s->stream_progress_ms = o->stream_progress_ms;
    s->on_listener_dead = o->on_listener_dead;
    s->listener_dead_ctx = o->listener_dead_ctx;
    s->methods = methods;
    s->n_methods = n;
    s->admit_stream = o->admit_stream;
    s->stream_done = o->stream_done;
    s->dispatch = o->dispatch;
    s->dispatch_ctx = o->dispatch_ctx;
    s->n_pollers = o->pollers;
    s->registered = calloc(n ? n : 1, sizeof *s->registered);
    s->pollers = calloc(s->n_pollers, sizeof *s->pollers);
    s->calls = calloc(n + 1, sizeof *s->calls);
    s->latency = calloc(n + 1, sizeof *s->latency);
    if (o->write_token) s->write_token = strdup(o->write_token);
    if (o->read_token) s->read_token = strdup(o->read_token);
    if (!s->registered || !s->pollers || !s->calls || !s->latency ||
        (o->write_token && !s->write_token) || (o->read_token && !s->read_token)) {
        rpc_server_free(s);
        return err_set(e, ERR_NOMEM, "rpc: out of memory");
    }
    grpc_arg args[16];
    size_t n_args = 0;
    memset(args, 0, sizeof args);
#define RPC_ARG_INT(k, v)                                                                          \
    do {                                                                                           \
        args[n_args].type = GRPC_ARG_INTEGER;                                                      \
        args[n_args].key = (char *)(k);                                                            \
        args[n_args++].value.integer = (int)(v);                                                   \
    } while (0)
    RPC_ARG_INT(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, o->max_message_bytes);
    /* Streams one connection may have open: the core's default is no
     * limit, and 5,000 half-sent requests on one connection took 80 MB
     * (20,000: 240 MB, kept after it closed). A client that opens more
     * loses the connection - once it has acknowledged the server's
     * SETTINGS: the core applies acknowledged settings only, so a client
     * that never acknowledges is the proxy's to stop. */
    RPC_ARG_INT(GRPC_ARG_MAX_CONCURRENT_STREAMS, RPC_MAX_STREAMS_PER_CONNECTION);
    /* Two servers on one port would split traffic unpredictably. */
    RPC_ARG_INT(GRPC_ARG_ALLOW_REUSEPORT, 0);
    /* Compressed requests: identity only. The core inflates a gzip message
     * fully before its size check (a 1 MB bomb of 1 GiB), so gzip and
     * deflate get UNIMPLEMENTED from the core, and it inflates nothing. */
    RPC_ARG_INT(GRPC_COMPRESSION_CHANNEL_ENABLED_ALGORITHMS_BITSET, 1u << GRPC_COMPRESS_NONE);
    RPC_ARG_INT(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
    /* Descriptors: close connections without calls, connections that never
     * finish the HTTP/2 (or TLS) handshake, and peers that stop answering
     * pings; every connection is a descriptor until then. */
    if (o->idle_timeout_ms) RPC_ARG_INT(GRPC_ARG_MAX_CONNECTION_IDLE_MS, o->idle_timeout_ms);
    RPC_ARG_INT(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, RPC_HANDSHAKE_TIMEOUT_MS);
    RPC_ARG_INT(GRPC_ARG_KEEPALIVE_TIME_MS, RPC_KEEPALIVE_MS);
    RPC_ARG_INT(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, RPC_KEEPALIVE_TIMEOUT_MS);
#undef RPC_ARG_INT
    grpc_channel_args channel_args = {n_args, args};
    s->grpc = grpc_server_create(&channel_args, NULL);
    for (size_t m = 0; m < n; m++) {
        s->registered[m] = grpc_server_register_method(
            s->grpc, methods[m].path, NULL,
            methods[m].bidi ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!s->registered[m]) {
            rpc_server_free(s);
            return err_set(e, ERR_INTERNAL, "rpc: cannot register %s", methods[m].path);
        }
    }
    grpc_server_credentials *creds = rpc_credentials(o, e);
    if (!creds) {
        rpc_server_free(s);
        return ERR_INVALID;
    }
    if (!rpc_listen_address_ok(o->listen)) {
        grpc_server_credentials_release(creds);
        rpc_server_free(s);
        return err_set(e, ERR_INVALID,
                       "cannot listen on %s: expected HOST:PORT with a port 0-65535", o->listen);
    }
    s->port = grpc_server_add_http2_port(s->grpc, o->listen, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        rpc_server_free(s);
        return err_set(e, ERR_INVALID,
                       "cannot listen on %s (address in use or invalid, or a bad TLS certificate "
                       "or key)",
                       o->listen);
    }
    for (uint32_t i = 0; i < s->n_pollers; i++) {
        s->pollers[i].server = s;
        s->pollers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->grpc, s->pollers[i].cq, NULL);
    }
    grpc_server_start(s->grpc);
    for (uint32_t i = 0; i < s->n_pollers; i++) {
        if (pthread_create(&s->pollers[i].thread, NULL, rpc_poller_main, &s->pollers[i])) {
            rpc_server_stop(s);
            return err_set(e, ERR_INTERNAL, "rpc: cannot start poller thread %u", i);
        }
        s->n_pollers_started++;
    }
    if (s->self_check_ms) {
        if (rpc_self_address(o->listen, s->port, &s->self_addr, &s->self_addr_len)) {
            rpc_server_stop(s);
            return err_set(e, ERR_INVALID, "rpc: cannot resolve %s for the self-check", o->listen);
        }
        if (pthread_create(&s->watchdog, NULL, rpc_watchdog_main, s)) {
            rpc_server_stop(s);
            return err_set(e, ERR_INTERNAL, "rpc: cannot start the self-check thread");
        }
        s->watchdog_started = 1;
    }
    *out = s;
    return ERR_OK;
}

void rpc_write_call_counts(void *ctx, FILE *out) {
    rpc_server *s = ctx;
    for (size_t m = 0; m <= s->n_methods; m++)
        for (int st = 0; st < ERR_STATUSES; st++) {
            unsigned long long n = atomic_load(&s->calls[m][st]);
            if (n || st == 0)
                fprintf(
                    out, "recd_calls_total{transport=\"grpc\",method=\"%s\",code=\"%s\"} %llu\n",
                    m < s->n_methods ? s->methods[m].path : "unregistered", err_status_name(st), n);
        }
}

void rpc_write_call_latency(void *ctx, FILE *out) {
    rpc_server *s = ctx;
    for (size_t m = 0; m <= s->n_methods; m++)
        histo_write(&s->latency[m], out, "recd_call_seconds", "grpc",
                    m < s->n_methods ? s->methods[m].path : "unregistered");
}

void rpc_server_stop(rpc_server *s) {
    atomic_store(&s->stopping, 1);
    if (s->watchdog_started) {
        pthread_mutex_lock(&s->watchdog_lock);
        s->watchdog_stop = 1;
        pthread_cond_signal(&s->watchdog_wake);
        pthread_mutex_unlock(&s->watchdog_lock);
        pthread_join(s->watchdog, NULL);
    }
    /* Shutdown completes once every call in flight has been answered (the
     * dispatcher keeps answering meanwhile); the requests still posted then
     * complete with success = 0 on the pollers. */
    grpc_completion_queue *done = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(s->grpc, done, s);
    /* Unary calls finish in moments; a long export gets a few seconds and is
     * then cancelled, which makes its next send fail and its handler stop.
     * Shutdown also waits for every connection to close, and an idle
     * client keeps its own open after the GOAWAY: once no call has been in
     * flight for two looks in a row (a call whose arrival is still queued
     * for its poller gets the second), cancel_all_calls drops the
     * connections left, with nothing to cancel. */
    gpr_timespec grace = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                      gpr_time_from_seconds(RPC_STOP_GRACE_S, GPR_TIMESPAN));
    for (int idle_looks = 0;;) {
        gpr_timespec tick = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                         gpr_time_from_millis(RPC_STOP_LOOK_MS, GPR_TIMESPAN));
        if (grpc_completion_queue_pluck(done, s, gpr_time_min(tick, grace), NULL).type !=
            GRPC_QUEUE_TIMEOUT)
            break;
        idle_looks = atomic_load(&s->in_flight) ? 0 : idle_looks + 1;
        if (idle_looks == 2 || gpr_time_cmp(gpr_now(GPR_CLOCK_REALTIME), grace) >= 0) {
            grpc_server_cancel_all_calls(s->grpc);
            grpc_completion_queue_pluck(done, s, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            break;
        }
    }
    grpc_completion_queue_shutdown(done);
    grpc_completion_queue_destroy(done);
    /* Stream threads still free their calls after the last batch, and calls
     * cancelled above may still be answered: the pollers must outlive them. */
    pthread_mutex_lock(&s->streams_lock);
    while (s->streams || s->unaries)
        pthread_cond_wait(&s->streams_done, &s->streams_lock);
    pthread_mutex_unlock(&s->streams_lock);
    for (uint32_t i = 0; i < s->n_pollers; i++)
        grpc_completion_queue_shutdown(s->pollers[i].cq);
    for (uint32_t i = 0; i < s->n_pollers_started; i++)
        pthread_join(s->pollers[i].thread, NULL);
    /* Queues of pollers that never started (a failed start) drain here. */
    for (uint32_t i = s->n_pollers_started; i < s->n_pollers; i++) {
        grpc_event ev;
        do {
            ev = grpc_completion_queue_next(s->pollers[i].cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                            NULL);
            if (ev.type == GRPC_OP_COMPLETE) rpc_call_free(ev.tag);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    }
    rpc_server_free(s);
}
