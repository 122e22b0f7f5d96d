/* rpc: the only module that knows the gRPC C core API on the server side.
 *
 * Poller threads, each with its own completion queue and several outstanding
 * call requests per method, accept calls and hand each unary one to the
 * dispatcher (the front end, which queues it on the core's scheduler); it
 * answers later, from any thread, with rpc_unary_answer. Streaming calls get
 * a thread of their own here. The pollers answer by themselves what needs
 * no handler: unknown methods (UNIMPLEMENTED), write and member-data methods
 * without their bearer token (UNAUTHENTICATED), calls whose deadline has passed
 * (DEADLINE_EXCEEDED) and calls the dispatcher refuses (its error).
 * Handlers run on several threads at once, so they must be thread-safe. */
#ifndef RECD_RPC_H
#define RECD_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* What a handler answers. On success (err.code ERR_OK), body/len is the
 * serialized response message, malloc'ed by the handler and freed by rpc;
 * otherwise err says what went wrong: its code picks the gRPC status
 * (err_to_status, the only mapping), its message becomes the status
 * details, and body is NULL. */
typedef struct rpc_reply {
    err_t err;
    uint8_t *body;
    size_t len;
} rpc_reply;

/* Sets a failure with an ERR_* code and a printf-style message on r (cut
 * with "..." when too long, as err_set) and frees any body. */
void rpc_reply_error(rpc_reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A unary handler: req/len is the request message (possibly empty). */
typedef void (*rpc_handler)(void *ctx, const uint8_t *req, size_t len, rpc_reply *reply);

/* The sending side of a server-streaming call. */
typedef struct rpc_stream rpc_stream;

/* Sends one response message of a stream and waits until gRPC has taken it
 * (flow control: a slow client slows the handler, nothing piles up).
 * Returns 0, or -1 when the client has gone (cancelled, deadline passed,
 * connection lost) or stalled (no progress within the server's
 * stream_progress_ms: the call is cancelled): the handler should stop and
 * return. */
int rpc_stream_send(rpc_stream *st, const uint8_t *msg, size_t len);

/* A server-streaming handler: sends any number of messages with
 * rpc_stream_send, then returns; reply->err (its code and message) ends the
 * stream (reply->body is not used). Runs on a thread of its own, so a long
 * export does not hold a worker. */
typedef void (*rpc_stream_handler)(void *ctx, const uint8_t *req, size_t len, rpc_stream *st,
                                   rpc_reply *reply);

/* Most calls one batch handler gets at once. */
#define RPC_MAX_BATCH 32

/* A unary handler for several calls of one method that were waiting in the
 * dispatcher's queue together (n <= RPC_MAX_BATCH): answers reqs[i] in
 * replies[i], as n calls of the plain handler would, but may share work
 * between them. */
typedef void (*rpc_batch_handler)(void *ctx, const uint8_t *const *reqs, const size_t *lens,
                                  size_t n, rpc_reply *replies);

typedef struct rpc_method {
    const char *path;          /* "/package.Service/Method" */
    rpc_handler handler;       /* unary methods (run by whoever dispatch hands the call to) */
    rpc_stream_handler stream; /* server-streaming methods (handler is NULL) */
    void *ctx;
    int write; /* changes state: needs the bearer token when one is set */
    /* Returns members' personal data (churn, spend, segments): needs the
     * read token when one is set, never the write token (one role each). */
    int member_data;
    rpc_batch_handler batch; /* optional, unary: for calls that queued up together */
    /* Bidirectional-streaming methods whose every request message gets one
     * response message (handler and stream are NULL). Called once per
     * request as it arrives, on the call's own thread (a streaming call:
     * admitted by rpc_options.admit_stream); an OK reply's body is sent back and the
     * next request awaited, a non-OK reply ends the call with its status.
     * The call ends OK once the client half-closes. */
    rpc_handler bidi;
    /* Unary: a call that ends without a request message is read as the
     * empty message instead of refused (HAProxy's health check cannot send
     * the NUL bytes of a gRPC frame). */
    int empty_ok;
} rpc_method;

/* A unary call on its way to its answer. */
typedef struct rpc_unary rpc_unary;

/* Takes a new unary call (of a method with a handler): returns ERR_OK and
 * owns the call until it answers it with rpc_unary_answer, or refuses it
 * with an ERR_* code and e filled (rpc answers with that). Called on a
 * poller thread: must not block. */
typedef int (*rpc_dispatch_fn)(void *ctx, rpc_unary *u, err_t *e);

/* Admission of a new streaming call (ctx is dispatch_ctx): ERR_OK takes a
 * slot, which rpc gives back with rpc_stream_done_fn when the call is over;
 * any other code refuses the call with e. Called on a poller thread: must
 * not block. */
typedef int (*rpc_stream_admit_fn)(void *ctx, err_t *e);
typedef void (*rpc_stream_done_fn)(void *ctx);

/* The call's method (one of the server's). */
const rpc_method *rpc_unary_method(const rpc_unary *u);

/* The call's deadline in clock_seconds(), 0 = none. */
double rpc_unary_deadline(const rpc_unary *u);

/* The request message, copied into one malloc'ed buffer (the caller frees)
 * of *len bytes; NULL with reply filled when no complete message came
 * (ERR_INVALID), ERR_NOMEM, or gRPC cannot read it (ERR_INTERNAL). */
uint8_t *rpc_unary_request(rpc_unary *u, size_t *len, rpc_reply *reply);

/* Answers the call with reply (whose body it frees); u is gone after.
 * Thread-safe: any thread may answer any call, once. */
void rpc_unary_answer(rpc_unary *u, rpc_reply *reply);

typedef struct rpc_options {
    const char *listen;         /* host:port; port 0 picks a free one */
    uint32_t pollers;           /* threads doing the HTTP/2 work, >= 1 */
    uint32_t max_message_bytes; /* larger requests get RESOURCE_EXHAUSTED */
    rpc_dispatch_fn dispatch;   /* takes every unary call */
    /* Admit each streaming call (server-streaming and bidirectional) and
     * are told when it ends; both NULL = every one admitted. */
    rpc_stream_admit_fn admit_stream;
    rpc_stream_done_fn stream_done;
    void *dispatch_ctx; /* of dispatch, admit_stream and stream_done */
    /* Write methods need "authorization: Bearer <write_token>" (NULL = open). */
    const char *write_token;
    /* Member-data methods need "authorization: Bearer <read_token>" (NULL =
     * open); the other reads stay open to the web tier whatever is set. */
    const char *read_token;
    /* TLS: PEM certificate chain and key (both or neither); with client_ca,
     * clients must present a certificate signed by it (mutual TLS). */
    const char *tls_cert, *tls_key, *tls_client_ca;
    /* Progress timeout of streaming calls: each send (and, bidirectional,
     * each receive) must be taken by gRPC within this, or the call is
     * cancelled (its client stopped reading, flow control holds the send)
     * and its admission slot given back; 0 = wait for ever. */
    uint32_t stream_progress_ms;
    /* A connection without calls for this long is closed (GOAWAY); 0 = never. */
    uint32_t idle_timeout_ms;
    /* Listener self-check: every self_check_ms (0 = no checks) the server
     * connects to its own port and sends the HTTP/2 preface; an accepted
     * connection answers. gRPC 1.51's listener stops accepting for good
     * after one failed accept (EMFILE: out of descriptors), while the
     * kernel still queues connections. After 3 checks in a row without an
     * answer (each waits up to self_check_ms) the listener is dead: it is
     * logged and on_listener_dead(listener_dead_ctx) is called, once, from
     * the checking thread; it should stop the server (rpc_server_stop) from
     * another thread and exit non-zero, so that a supervisor restarts it. */
    uint32_t self_check_ms;
    void (*on_listener_dead)(void *ctx);
    void *listener_dead_ctx;
} rpc_options;

typedef struct rpc_server rpc_server;

/* Binds, starts the pollers and returns once the server accepts calls.
 * methods (n entries) and the dispatcher must outlive the server. *out is owned by the caller:
 * rpc_server_stop. Returns ERR_OK, ERR_INVALID (cannot listen there),
 * ERR_NOMEM, ERR_INTERNAL. */
int rpc_server_start(const rpc_options *o, const rpc_method *methods, size_t n, rpc_server **out,
                     err_t *e);

/* The port actually bound (useful with port 0). */
int rpc_server_port(const rpc_server *s);

/* Append this server's lines (Prometheus text format, transport="grpc") of
 * the two call families that /metrics heads once for both transports
 * (http.h): rpc_write_call_counts the calls by method and status code
 * (recd_calls_total), rpc_write_call_latency a latency histogram per
 * method, from acceptance to the answer (recd_call_seconds). No # HELP or
 * # TYPE line. ctx is the rpc_server. Thread-safe. */
void rpc_write_call_counts(void *ctx, FILE *out);
void rpc_write_call_latency(void *ctx, FILE *out);

/* Graceful stop: refuses new calls, lets in-flight calls finish (the
 * dispatcher must go on answering until this returns), joins the threads
 * and frees everything. */
void rpc_server_stop(rpc_server *s);

#endif
