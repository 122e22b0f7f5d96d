/* http: JSON over HTTP/1.1 in front of svc's method table. Each connection
 * has a thread of libmicrohttpd's (MHD_USE_THREAD_PER_CONNECTION): a unary
 * call blocks it while the scheduler runs the call, and a stream's content
 * reader blocks it until its producer thread has the next targets. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "histo.h"
#include "log.h"
#include "pbjson.h"
#include "recd/v1/recommender.pb-c.h"
#include "rpc.h"
#include "targetcsv.h"
#include "utf8.h"

#define HTTP_MAX_METHODS 32
#define HTTP_MAX_QUERY_ARGS 64
#define HTTP_STREAM_BUFFER (64 * 1024) /* bytes a stream's producer runs ahead */
#define HTTP_MAX_DECODES 4
/* The dashboard's history: a sample every 10 s, 10 minutes of them. */
#define HTTP_HISTORY 60
#define HTTP_HISTORY_STEP_S 10
/* Most bytes of a body over the limit read (and dropped) before the 413. */
#define HTTP_DISCARD_MAX (64u << 20)

/* The metric rows besides the methods: routes that are no RPC. */
#define HTTP_EXTRA_ROUTES(X)                                                                       \
    X(CSV, "/v1/campaign-targets.csv")                                                             \
    X(DASHBOARD, "/")                                                                              \
    X(HEALTHZ, "/healthz")                                                                         \
    X(METRICS, "/metrics")                                                                         \
    X(OTHER, "unregistered")

enum {
#define HTTP_ROUTE_ENUM(name, label) HTTP_ROUTE_##name,
    HTTP_EXTRA_ROUTES(HTTP_ROUTE_ENUM)
#undef HTTP_ROUTE_ENUM
        HTTP_EXTRA
};

static const char *const http_extra_label[HTTP_EXTRA] = {
#define HTTP_ROUTE_LABEL(name, label) label,
    HTTP_EXTRA_ROUTES(HTTP_ROUTE_LABEL)
#undef HTTP_ROUTE_LABEL
};

/* One RPC served over HTTP: svc's row for it and its messages. */
typedef struct http_method {
    char name[64];         /* "Recommend": the path is /v1/<name> */
    const rpc_method *rpc; /* svc's row: handler or stream, write, member_data */
    const ProtobufCMessageDescriptor *request, *response;
} http_method;

#define HTTP_ROUTES (HTTP_MAX_METHODS + HTTP_EXTRA)

struct http_server {
    struct MHD_Daemon *daemon;
    core *core;
    svc *svc;
    http_method methods[HTTP_MAX_METHODS];
    size_t n_methods;
    int port;
    uint32_t max_body;
    char *write_token, *read_token, *cert, *key, *client_ca;
    char *origins[HTTP_MAX_ORIGINS];
    size_t n_origins;
    http_metrics_writer writers[HTTP_MAX_WRITERS];
    void *writer_ctxs[HTTP_MAX_WRITERS];
    size_t n_writers;
    http_metrics_writer call_counts, call_latency; /* the gRPC server's lines */
    void *calls_ctx;
    /* Metrics: row = method index, or HTTP_MAX_METHODS + an extra route. */
    atomic_ullong calls[HTTP_ROUTES][ERR_STATUSES];
    histo latency[HTTP_ROUTES];
    /* The history for the dashboard: every HTTP_HISTORY_STEP_S the sampler
     * thread keeps the call counters and latency histograms of /metrics
     * (both transports) and the strategy mix, the last HTTP_HISTORY
     * samples (guarded by history_lock). */
    pthread_t sampler;
    int sampler_started, sampler_stop;
    pthread_mutex_t history_lock;
    pthread_cond_t history_wake;
    char *history[HTTP_HISTORY];
    double history_t[HTTP_HISTORY]; /* unix seconds */
    size_t history_next, history_n;
    /* Decodes at once: json-c's tree of one body can take ~60 MiB (see
     * PBJSON_MAX_PIECES), so at most HTTP_MAX_DECODES are built together
     * whatever the number of connections; the others wait their turn. */
    sem_t decodes;
};

/* KIND_LOCAL: a GET the front end answers itself (the page, /metrics, ...). */
typedef enum { KIND_NONE, KIND_UNARY, KIND_STREAM, KIND_CSV, KIND_LOCAL } http_kind;

/* One request on a connection (MHD's con_cls), from its headers to its
 * completion. */
typedef struct http_req {
    http_server *h;
    int route; /* metrics row */
    http_kind kind;
    const http_method *m;
    size_t local; /* KIND_LOCAL: the row of local_routes */
    char *body;   /* the request body so far, len of cap bytes */
    size_t len, cap;
    size_t seen; /* body bytes received, kept or not */
    int too_large;
    int status; /* gRPC status answered */
    double start, deadline;
    const char *origin; /* the allowed Origin to echo back, or NULL */
} http_req;

/* --- answers ---------------------------------------------------------------- */

static void add_cors(struct MHD_Response *resp, const http_req *r) {
    if (!r || !r->origin) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->origin);
    MHD_add_response_header(resp, "Vary", "Origin");
}

/* Queues body (len bytes; freed by MHD when must_free) with status. */
static enum MHD_Result answer(struct MHD_Connection *conn, http_req *r, unsigned status,
                              const char *type, char *body, size_t len, int must_free) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (must_free) free(body);
        return MHD_NO;
    }
    if (type) MHD_add_response_header(resp, "Content-Type", type);
    add_cors(resp, r);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, "Allow",
                                r && r->kind == KIND_CSV ? "GET, OPTIONS"
                                : r && r->m              ? "POST, OPTIONS"
                                                         : "GET");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* {"code": N, "status": "NAME", "message": "..."}: malloc'ed, or NULL. A
 * message cut inside a UTF-8 character (err_set cuts at a byte count, and
 * quotes a client's id cut at 40 bytes) gets '?' for its non-ASCII bytes:
 * json-c writes strings as they are, and the answer must be valid JSON. */
static char *error_json(int status, const char *msg, size_t *len) {
    char clean[sizeof((err_t *)0)->msg];
    if (!utf8_valid(msg, strlen(msg))) {
        size_t n = 0;
        for (; msg[n] && n + 1 < sizeof clean; n++)
            clean[n] = (unsigned char)msg[n] < 0x80 ? msg[n] : '?';
        clean[n] = '\0';
        msg = clean;
    }
    json_object *o = json_object_new_object();
    if (!o) return NULL;
    json_object_object_add(o, "code", json_object_new_int(status));
    json_object_object_add(o, "status", json_object_new_string(err_status_name(status)));
    json_object_object_add(o, "message", json_object_new_string(msg));
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *copy = s ? malloc(n + 2) : NULL;
    if (copy) {
        memcpy(copy, s, n);
        copy[n] = '\n';
        copy[n + 1] = '\0';
        *len = n + 1;
    }
    json_object_put(o);
    return copy;
}

/* Answers gRPC status `status` with HTTP status http (0 = the table's). */
static enum MHD_Result answer_status(struct MHD_Connection *conn, http_req *r, unsigned http,
                                     int status, const char *msg) {
    if (r) r->status = status;
    size_t len = 0;
    char *body = error_json(status, msg, &len);
    if (!body) return MHD_NO;
    return answer(conn, r, http ? http : (unsigned)err_status_http(status), "application/json",
                  body, len, 1);
}

/* Answers an ERR_* code: its gRPC status, and that status's HTTP status. */
static enum MHD_Result answer_err(struct MHD_Connection *conn, http_req *r, int code,
                                  const char *msg) {
    return answer_status(conn, r, 0, err_to_status(code), msg);
}

/* --- checks before the body ------------------------------------------------- */

/* Whether the request carries "Authorization: Bearer <token>"; the compare
 * takes the same time wherever the first difference is. */
static int authorized(struct MHD_Connection *conn, const char *token) {
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    size_t want = strlen(token);
    if (!v || strlen(v) != want + 7 || strncmp(v, "Bearer ", 7)) return 0;
    unsigned char diff = 0;
    for (size_t j = 0; j < want; j++)
        diff |= (unsigned char)(v[7 + j] ^ token[j]);
    return diff == 0;
}

/* With --tls-client-ca: whether the client presented a certificate that
 * the CA signed (libmicrohttpd asks for one but lets a client without
 * through, so the check is here). */
static int client_cert_ok(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session) return 0;
    gnutls_session_t session = (gnutls_session_t)ci->tls_session;
    unsigned n = 0;
    if (!gnutls_certificate_get_peers(session, &n) || !n) return 0;
    unsigned status = 1;
    return gnutls_certificate_verify_peers2(session, &status) == 0 && status == 0;
}

int http_parse_timeout(const char *text, double *seconds, err_t *e) {
    char *end;
    if (!text || !(*text >= '0' && *text <= '9'))
        return err_set(e, ERR_INVALID, "X-Recd-Timeout: '%.32s' is not a duration such as 200ms",
                       text ? text : "");
    unsigned long long v = strtoull(text, &end, 10);
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"H", 3600},  {"M", 60}, {"S", 1},     {"m", 1e-3},  {"u", 1e-6}, {"n", 1e-9},
                 {"ms", 1e-3}, {"s", 1},  {"us", 1e-6}, {"ns", 1e-9}, {"h", 3600}, {"min", 60}};
    if (end - text > 9)
        return err_set(e, ERR_INVALID, "X-Recd-Timeout: '%.32s' has more than 9 digits", text);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].unit)) {
            *seconds = (double)v * units[i].scale;
            return ERR_OK;
        }
    return err_set(e, ERR_INVALID,
                   "X-Recd-Timeout: '%.32s' has no unit (H, M, S, m, u, n, or ms, s)", text);
}

/* The allowed origin of the request (the configured entry), or NULL. */
static const char *allowed_origin(const http_server *h, struct MHD_Connection *conn) {
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!origin) return NULL;
    for (size_t i = 0; i < h->n_origins; i++)
        if (!strcmp(h->origins[i], "*") || !strcmp(h->origins[i], origin)) return h->origins[i];
    return NULL;
}

/* --- unary calls on the scheduler ------------------------------------------- */

typedef struct http_call {
    sched_job job; /* first: the scheduler hands back &job */
    const http_method *m;
    uint8_t *req;
    size_t len;
    rpc_reply reply;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
} http_call;

static void call_done(http_call *call) {
    pthread_mutex_lock(&call->lock);
    call->done = 1;
    pthread_cond_signal(&call->cond);
    pthread_mutex_unlock(&call->lock);
}

static void http_refuse(sched_job *job, const err_t *why) {
    http_call *call = (http_call *)job;
    call->reply = (rpc_reply){.err = *why};
    call_done(call);
}

/* Runs calls of one method as svc_run does: its handler for one, its
 * batch handler for several (same batch key: the same method). */
static void http_run(sched_job *const *jobs, size_t n) {
    /* Zeroed: gcc cannot see that n >= 1 fills what is read. */
    http_call *calls[SCHED_MAX_BATCH] = {0};
    if (n == 0 || n > SCHED_MAX_BATCH) return; /* sched's contract: never */
    for (size_t i = 0; i < n; i++) {
        calls[i] = (http_call *)jobs[i];
        calls[i]->reply = (rpc_reply){.err.code = ERR_OK};
    }
    const rpc_method *m = calls[0]->m->rpc;
    if (n == 1) {
        m->handler(m->ctx, calls[0]->req, calls[0]->len, &calls[0]->reply);
    } else {
        const uint8_t *reqs[SCHED_MAX_BATCH] = {0};
        size_t lens[SCHED_MAX_BATCH] = {0};
        rpc_reply replies[SCHED_MAX_BATCH];
        for (size_t i = 0; i < n; i++) {
            reqs[i] = calls[i]->req;
            lens[i] = calls[i]->len;
            replies[i] = (rpc_reply){.err.code = ERR_OK};
        }
        m->batch(m->ctx, reqs, lens, n, replies);
        for (size_t i = 0; i < n; i++)
            calls[i]->reply = replies[i];
    }
    for (size_t i = 0; i < n; i++)
        call_done(calls[i]);
}

/* pbjson_decode of a request body, one of HTTP_MAX_DECODES at a time. */
static int decode_body(http_server *h, const ProtobufCMessageDescriptor *d, const http_req *r,
                       ProtobufCMessage **out, err_t *e) {
    while (sem_wait(&h->decodes) && errno == EINTR) {
    }
    int rc = pbjson_decode(d, r->body ? r->body : "", r->len, out, e);
    sem_post(&h->decodes);
    return rc;
}

static enum MHD_Result run_unary(struct MHD_Connection *conn, http_req *r) {
    http_server *h = r->h;
    const http_method *m = r->m;
    err_t e;
    ProtobufCMessage *msg;
    if (decode_body(h, m->request, r, &msg, &e)) return answer_err(conn, r, e.code, e.msg);
    http_call *call = calloc(1, sizeof *call);
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (call) call->req = malloc(n ? n : 1);
    if (!call || !call->req) {
        pbjson_free(msg);
        free(call);
        return answer_err(conn, r, ERR_NOMEM, "out of memory for the request");
    }
    call->len = protobuf_c_message_pack(msg, call->req);
    pbjson_free(msg);
    call->m = m;
    pthread_mutex_init(&call->lock, NULL);
    pthread_cond_init(&call->cond, NULL);
    call->job = (sched_job){.run = http_run,
                            .refuse = http_refuse,
                            .batch_key = m->rpc->batch ? (const void *)m : NULL,
                            .deadline = r->deadline};
    enum MHD_Result rc;
    if (core_submit(h->core, &call->job, &e)) {
        rc = answer_err(conn, r, e.code, e.msg);
    } else {
        pthread_mutex_lock(&call->lock);
        while (!call->done)
            pthread_cond_wait(&call->cond, &call->lock);
        pthread_mutex_unlock(&call->lock);
        if (call->reply.err.code) {
            rc = answer_err(conn, r, call->reply.err.code, call->reply.err.msg);
        } else {
            ProtobufCMessage *resp =
                protobuf_c_message_unpack(m->response, NULL, call->reply.len, call->reply.body);
            char *json = NULL;
            size_t len = 0;
            if (!resp) {
                rc = answer_err(conn, r, ERR_INTERNAL, "the response did not decode");
            } else if (pbjson_encode(resp, &json, &len, &e)) {
                rc = answer_err(conn, r, e.code, e.msg);
            } else {
                r->status = ERR_STATUS_OK;
                rc = answer(conn, r, MHD_HTTP_OK, "application/json", json, len, 1);
            }
            if (resp) protobuf_c_message_free_unpacked(resp, NULL);
        }
    }
    free(call->reply.body);
    pthread_mutex_destroy(&call->lock);
    pthread_cond_destroy(&call->cond);
    free(call->req);
    free(call);
    return rc;
}

/* --- streams: NDJSON and CSV ------------------------------------------------ */

/* One target stream: a producer thread runs the selection into buf (at
 * most HTTP_STREAM_BUFFER bytes ahead of the client: flow control), and
 * libmicrohttpd's content reader takes them out on the connection's
 * thread. The reader's end (the client went away, or the stream is done)
 * cancels the producer. */
typedef struct http_stream {
    http_server *h;
    int csv;
    ProtobufCMessage *request;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *buf; /* pending bytes: [off, len) of cap */
    size_t off, len, cap;
    uint64_t emitted;
    double deadline; /* X-Recd-Timeout's, in clock_seconds(); 0 = none */
    int done, cancelled, error_sent;
    int rc; /* the selection's code, and err its message, once done */
    err_t err;
} http_stream;

/* Appends n bytes to the stream, waiting while the client is behind.
 * Returns 1 when the stream was cancelled (the producer stops). */
static int stream_push(http_stream *st, const char *data, size_t n) {
    pthread_mutex_lock(&st->lock);
    while (!st->cancelled && st->len > st->off && st->len - st->off + n > HTTP_STREAM_BUFFER)
        pthread_cond_wait(&st->cond, &st->lock);
    int stop = st->cancelled;
    if (!stop) {
        if (st->off) {
            memmove(st->buf, st->buf + st->off, st->len - st->off);
            st->len -= st->off;
            st->off = 0;
        }
        if (st->len + n > st->cap) {
            size_t cap = (st->len + n) * 2;
            char *grown = realloc(st->buf, cap);
            if (!grown) {
                stop = 1;
                err_set(&st->err, ERR_NOMEM, "out of memory for a target; stream stopped");
            } else {
                st->buf = grown;
                st->cap = cap;
            }
        }
        if (!stop) {
            memcpy(st->buf + st->len, data, n);
            st->len += n;
            st->emitted++;
            pthread_cond_broadcast(&st->cond);
        }
    }
    pthread_mutex_unlock(&st->lock);
    return stop;
}

static int stream_emit(void *ctx, const ProtobufCMessage *target) {
    http_stream *st = ctx;
    if (st->csv) {
        char row[TARGETCSV_ROW_MAX];
        size_t n = targetcsv_row((const Recd__V1__CampaignTarget *)target, row, sizeof row);
        if (n < sizeof row) return stream_push(st, row, n);
        char *big = malloc(n + 1);
        if (!big) return 1;
        targetcsv_row((const Recd__V1__CampaignTarget *)target, big, n + 1);
        int stop = stream_push(st, big, n);
        free(big);
        return stop;
    }
    char *json;
    size_t n;
    err_t e;
    if (pbjson_encode(target, &json, &n, &e)) return 1;
    json[n] = '\n'; /* over the NUL: the line is what is pushed */
    int stop = stream_push(st, json, n + 1);
    free(json);
    return stop;
}

static void *stream_main(void *arg) {
    http_stream *st = arg;
    err_t e = {0};
    int rc = svc_campaign_targets_run(st->h->svc, st->request, stream_emit, st, &e);
    pthread_mutex_lock(&st->lock);
    if (st->rc) {
        /* the reader ended it first (the deadline): its reason stands */
    } else if (rc) {
        st->rc = rc;
        st->err = e;
    } else if (st->err.code && !st->cancelled) {
        st->rc = st->err.code; /* the producer's own failure (out of memory) */
    }
    st->done = 1;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* Stops the producer, gives the stream's slot back and frees st. */
static void stream_free(void *cls) {
    http_stream *st = cls;
    pthread_mutex_lock(&st->lock);
    st->cancelled = 1;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL);
    core_stream_end(st->h->core);
    pbjson_free(st->request);
    pthread_mutex_destroy(&st->lock);
    pthread_cond_destroy(&st->cond);
    free(st->buf);
    free(st);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    http_stream *st = cls;
    pthread_mutex_lock(&st->lock);
    while (st->len == st->off && !st->done) {
        if (!st->deadline) {
            pthread_cond_wait(&st->cond, &st->lock);
            continue;
        }
        double left = st->deadline - clock_seconds();
        if (left <= 0) break;
        struct timespec until = clock_deadline(left);
        pthread_cond_timedwait(&st->cond, &st->lock, &until);
    }
    if (st->deadline && !st->done && clock_seconds() > st->deadline) {
        /* As gRPC ends a stream whose deadline passed: the producer stops,
         * the client is told (NDJSON's last line) or sees a cut transfer. */
        st->cancelled = 1;
        st->done = 1;
        st->rc = ERR_DEADLINE;
        err_set(&st->err, ERR_DEADLINE, "the deadline passed; stream stopped");
        st->off = st->len; /* what is still buffered is not sent after the deadline */
        pthread_cond_broadcast(&st->cond);
    }
    ssize_t n;
    if (st->len > st->off) {
        size_t k = st->len - st->off < max ? st->len - st->off : max;
        memcpy(buf, st->buf + st->off, k);
        st->off += k;
        pthread_cond_broadcast(&st->cond);
        n = (ssize_t)k;
    } else if (!st->rc) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else if (!st->csv && !st->error_sent) {
        /* NDJSON: the failure as a last line, {"error": {...}}, as
         * grpc-gateway ends a broken stream; CSV has no room for one. */
        size_t len = 0;
        char *e = error_json(err_to_status(st->rc), st->err.msg, &len);
        st->error_sent = 1;
        if (e && len + 11 <= max) {
            n = snprintf(buf, max, "{\"error\":%.*s}\n", (int)(len - 1), e);
        } else {
            n = MHD_CONTENT_READER_END_WITH_ERROR;
        }
        free(e);
    } else if (st->csv) {
        n = MHD_CONTENT_READER_END_WITH_ERROR; /* a cut transfer: the client sees it failed */
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&st->lock);
    return n;
}

/* Starts the stream of request (owned from here) and answers: an error
 * status when the selection fails before its first target. */
static enum MHD_Result run_stream(struct MHD_Connection *conn, http_req *r,
                                  ProtobufCMessage *request, int csv) {
    http_server *h = r->h;
    err_t e;
    if (core_stream_begin(h->core, &e)) {
        pbjson_free(request);
        return answer_err(conn, r, e.code, e.msg);
    }
    http_stream *st = calloc(1, sizeof *st);
    if (!st) {
        core_stream_end(h->core);
        pbjson_free(request);
        return answer_err(conn, r, ERR_NOMEM, "out of memory for a stream");
    }
    st->h = h;
    st->csv = csv;
    st->request = request;
    st->deadline = r->deadline;
    pthread_mutex_init(&st->lock, NULL);
    clock_cond_init(&st->cond);
    if (csv) stream_push(st, targetcsv_header(), strlen(targetcsv_header()));
    uint64_t header = st->emitted;
    if (pthread_create(&st->thread, NULL, stream_main, st)) {
        pthread_mutex_destroy(&st->lock);
        pthread_cond_destroy(&st->cond);
        free(st->buf);
        free(st);
        core_stream_end(h->core);
        pbjson_free(request);
        return answer_err(conn, r, ERR_INTERNAL, "cannot start the stream's thread");
    }
    pthread_mutex_lock(&st->lock);
    while (!st->done && st->emitted == header)
        pthread_cond_wait(&st->cond, &st->lock);
    int failed = st->done && st->rc && st->emitted == header;
    err_t why = st->err;
    int code = st->rc;
    pthread_mutex_unlock(&st->lock);
    if (failed) {
        stream_free(st);
        return answer_err(conn, r, code, why.msg);
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024,
                                                                  stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            csv ? "text/csv; charset=utf-8" : "application/x-ndjson");
    if (csv)
        MHD_add_response_header(resp, "Content-Disposition",
                                "attachment; filename=\"campaign-targets.csv\"");
    add_cors(resp, r);
    r->status = ERR_STATUS_OK;
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* The query's name=value pairs, in order. */
typedef struct query_args {
    const char *names[HTTP_MAX_QUERY_ARGS], *values[HTTP_MAX_QUERY_ARGS];
    size_t n;
    int too_many;
} query_args;

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value) {
    (void)kind;
    query_args *q = cls;
    if (q->n == HTTP_MAX_QUERY_ARGS) {
        q->too_many = 1;
        return MHD_NO;
    }
    q->names[q->n] = key;
    q->values[q->n++] = value ? value : "";
    return MHD_YES;
}

/* --- routing ---------------------------------------------------------------- */

static const http_method *method_named(const http_server *h, const char *name) {
    for (size_t i = 0; i < h->n_methods; i++)
        if (!strcmp(h->methods[i].name, name)) return &h->methods[i];
    return NULL;
}

static enum MHD_Result answer_metrics(struct MHD_Connection *conn, http_req *r) {
    http_server *h = r->h;
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (!f) return MHD_NO;
    for (size_t i = 0; i < h->n_writers; i++)
        h->writers[i](h->writer_ctxs[i], f);
    http_write_metrics(h, f);
    fclose(f);
    r->status = ERR_STATUS_OK;
    return answer(conn, r, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len, 1);
}

/* The /metrics lines the history keeps: calls and latency of each method
 * on each transport, and the strategy mix. */
static int history_line(const char *line) {
    static const char *const keep[] = {"recd_calls_total", "recd_call_seconds",
                                       "recd_recommend_strategy_total"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (!strncmp(line, keep[i], strlen(keep[i]))) return 1;
    return 0;
}

/* One sample: the kept lines of a scrape, malloc'ed, or NULL. */
static char *history_sample(http_server *h) {
    char *all = NULL, *kept = NULL;
    size_t len = 0, kept_len = 0;
    FILE *f = open_memstream(&all, &len);
    if (!f) return NULL;
    for (size_t i = 0; i < h->n_writers; i++)
        h->writers[i](h->writer_ctxs[i], f);
    http_write_metrics(h, f);
    fclose(f);
    FILE *k = open_memstream(&kept, &kept_len);
    if (!k) {
        free(all);
        return NULL;
    }
    for (char *line = all, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (history_line(line)) fprintf(k, "%s\n", line);
    }
    fclose(k);
    free(all);
    return kept;
}

static void *history_main(void *arg) {
    http_server *h = arg;
    pthread_mutex_lock(&h->history_lock);
    while (!h->sampler_stop) {
        pthread_mutex_unlock(&h->history_lock);
        char *sample = history_sample(h);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        pthread_mutex_lock(&h->history_lock);
        if (sample) {
            free(h->history[h->history_next]);
            h->history[h->history_next] = sample;
            h->history_t[h->history_next] = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
            h->history_next = (h->history_next + 1) % HTTP_HISTORY;
            if (h->history_n < HTTP_HISTORY) h->history_n++;
        }
        struct timespec until = clock_deadline(HTTP_HISTORY_STEP_S);
        while (!h->sampler_stop &&
               pthread_cond_timedwait(&h->history_wake, &h->history_lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&h->history_lock);
    return NULL;
}

/* GET /metrics/history: {"stepSeconds": 10, "samples": [{"t": unix
 * seconds, "text": "<the kept /metrics lines>"}, ...]}, oldest first. */
static enum MHD_Result answer_history(struct MHD_Connection *conn, http_req *r) {
    http_server *h = r->h;
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    if (!o || !arr) {
        json_object_put(o);
        json_object_put(arr);
        return MHD_NO;
    }
    json_object_object_add(o, "stepSeconds", json_object_new_int(HTTP_HISTORY_STEP_S));
    pthread_mutex_lock(&h->history_lock);
    for (size_t i = 0; i < h->history_n; i++) {
        size_t at = (h->history_next + HTTP_HISTORY - h->history_n + i) % HTTP_HISTORY;
        json_object *one = json_object_new_object();
        json_object_object_add(one, "t", json_object_new_double(h->history_t[at]));
        json_object_object_add(one, "text", json_object_new_string(h->history[at]));
        json_object_array_add(arr, one);
    }
    pthread_mutex_unlock(&h->history_lock);
    json_object_object_add(o, "samples", arr);
    size_t n = 0;
    const char *text = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *body = text ? malloc(n + 1) : NULL;
    if (body) memcpy(body, text, n + 1);
    json_object_put(o);
    if (!body) return MHD_NO;
    r->status = ERR_STATUS_OK;
    return answer(conn, r, MHD_HTTP_OK, "application/json", body, n, 1);
}

static enum MHD_Result answer_health(struct MHD_Connection *conn, http_req *r) {
    char why[128];
    int serving = core_serving(r->h->core, why, sizeof why);
    json_object *o = json_object_new_object();
    if (!o) return MHD_NO;
    json_object_object_add(o, "status",
                           json_object_new_string(serving ? "SERVING" : "NOT_SERVING"));
    if (!serving) json_object_object_add(o, "reason", json_object_new_string(why));
    char *body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    if (!body) return MHD_NO;
    r->status = serving ? ERR_STATUS_OK : ERR_STATUS_UNAVAILABLE;
    return answer(conn, r, serving ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                  body, strlen(body), 1);
}

/* GET /dashboard.json: {"readTokenRequired": bool, "writeTokenRequired":
 * bool}, so that the page asks for a token only when this server has one
 * (any call's 401 tells as much; this spares the page a failed call). */
static enum MHD_Result answer_dashboard_config(struct MHD_Connection *conn, http_req *r) {
    char *body = NULL;
    if (asprintf(&body, "{\"readTokenRequired\":%s,\"writeTokenRequired\":%s}\n",
                 r->h->read_token ? "true" : "false", r->h->write_token ? "true" : "false") < 0)
        return MHD_NO;
    r->status = ERR_STATUS_OK;
    return answer(conn, r, MHD_HTTP_OK, "application/json", body, strlen(body), 1);
}

/* The dashboard page or Chart.js, from the binary. The page runs only its
 * own scripts and this server's (no framing, no other origin). */
static enum MHD_Result answer_static(struct MHD_Connection *conn, http_req *r, int chartjs) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        chartjs ? http_chartjs_len : http_dashboard_html_len,
        (void *)(chartjs ? http_chartjs : http_dashboard_html), MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type",
                            chartjs ? "text/javascript; charset=utf-8"
                                    : "text/html; charset=utf-8");
    MHD_add_response_header(
        resp, "Content-Security-Policy",
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    r->status = ERR_STATUS_OK;
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result answer_page(struct MHD_Connection *conn, http_req *r) {
    return answer_static(conn, r, 0);
}

static enum MHD_Result answer_chartjs(struct MHD_Connection *conn, http_req *r) {
    return answer_static(conn, r, 1);
}

/* The GETs answered here, with their metrics row (HTTP_ROUTE_*). */
static const struct {
    const char *path;
    int row;
    enum MHD_Result (*answer)(struct MHD_Connection *, http_req *);
} local_routes[] = {
    {"/", HTTP_ROUTE_DASHBOARD, answer_page},
    {"/chart.js", HTTP_ROUTE_DASHBOARD, answer_chartjs},
    {"/dashboard.json", HTTP_ROUTE_DASHBOARD, answer_dashboard_config},
    {"/metrics/history", HTTP_ROUTE_METRICS, answer_history},
    {"/metrics", HTTP_ROUTE_METRICS, answer_metrics},
    {"/healthz", HTTP_ROUTE_HEALTHZ, answer_health},
};

/* The first call of a request (headers only): routes it and answers errors
 * found from the headers. Returns MHD_YES with r->kind set: the answer
 * comes once the request is complete (a local GET too: libmicrohttpd
 * closes the connection after an answer queued on the first call, and
 * scrapers and the dashboard's polls keep theirs alive). */
static enum MHD_Result route(struct MHD_Connection *conn, http_req *r, const char *url,
                             const char *verb) {
    http_server *h = r->h;
    int get = !strcmp(verb, "GET") || !strcmp(verb, "HEAD");
    r->origin = allowed_origin(h, conn);
    if (h->client_ca && !client_cert_ok(conn))
        return answer_err(conn, r, ERR_UNAUTHENTICATED,
                          "this server needs a client certificate signed by its --tls-client-ca");
    for (size_t i = 0; i < sizeof local_routes / sizeof local_routes[0]; i++) {
        if (strcmp(url, local_routes[i].path)) continue;
        r->route = HTTP_MAX_METHODS + local_routes[i].row;
        if (!get)
            return answer_status(conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, ERR_STATUS_UNIMPLEMENTED,
                                 "only GET here");
        r->kind = KIND_LOCAL;
        r->local = i;
        return MHD_YES;
    }
    const http_method *m = strncmp(url, "/v1/", 4) ? NULL : method_named(h, url + 4);
    int csv = !strcmp(url, "/v1/campaign-targets.csv");
    if (!m && !csv) {
        char msg[160];
        snprintf(msg, sizeof msg, "no such path: %.100s (the API is POST /v1/<Method>)", url);
        return answer_err(conn, r, ERR_NOTFOUND, msg);
    }
    r->m = m;
    if (csv) {
        r->kind = KIND_CSV;
        r->route = HTTP_MAX_METHODS + HTTP_ROUTE_CSV;
        m = method_named(h, "StreamCampaignTargets");
        if (!m) return answer_err(conn, r, ERR_UNIMPLEMENTED, "no StreamCampaignTargets");
    } else {
        r->kind = m->rpc->stream ? KIND_STREAM : KIND_UNARY;
        r->route = (int)(m - h->methods);
    }
    if (!strcmp(verb, "OPTIONS")) {
        if (!r->origin)
            return answer_status(conn, r, MHD_HTTP_FORBIDDEN, ERR_STATUS_PERMISSION_DENIED,
                                 "cross-origin calls are not allowed from this origin "
                                 "(--http-cors-origin)");
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        add_cors(resp, r);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, X-Recd-Timeout");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        r->status = ERR_STATUS_OK;
        enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    if (csv ? !get : strcmp(verb, "POST"))
        return answer_status(conn, r, MHD_HTTP_METHOD_NOT_ALLOWED, ERR_STATUS_UNIMPLEMENTED,
                             csv ? "use GET for the CSV" : "use POST with a JSON body");
    if (m->rpc->write && h->write_token && !authorized(conn, h->write_token)) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s changes data: it needs the header 'Authorization: Bearer <token>' with the "
                 "server's write token",
                 m->rpc->path);
        return answer_err(conn, r, ERR_UNAUTHENTICATED, msg);
    }
    if (m->rpc->member_data && h->read_token && !authorized(conn, h->read_token)) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s returns members' personal data: it needs the header 'Authorization: Bearer "
                 "<token>' with the server's read token (--read-token-file)",
                 m->rpc->path);
        return answer_err(conn, r, ERR_UNAUTHENTICATED, msg);
    }
    const char *timeout = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Recd-Timeout");
    if (timeout) {
        double s;
        err_t e;
        if (http_parse_timeout(timeout, &s, &e)) return answer_err(conn, r, e.code, e.msg);
        if (s <= 0)
            return answer_err(conn, r, ERR_DEADLINE, "the deadline passed before the call arrived");
        r->deadline = clock_seconds() + s;
    }
    /* A body over the limit is never kept. A client that waits for "100
     * Continue", or announces more than HTTP_DISCARD_MAX, is answered at
     * once (the connection then closes: its body is not read); a plain
     * client (urllib, most libraries) sends the body before it reads, and
     * would only see a broken pipe, so up to HTTP_DISCARD_MAX is read and
     * dropped first. */
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    unsigned long long announced = length ? strtoull(length, NULL, 10) : 0;
    if (announced > h->max_body) {
        const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
        if (announced > HTTP_DISCARD_MAX || (expect && !strcasecmp(expect, "100-continue"))) {
            char msg[128];
            snprintf(msg, sizeof msg, "the body is larger than the server's limit of %u bytes",
                     h->max_body);
            return answer_status(conn, r, 413, ERR_STATUS_RESOURCE_EXHAUSTED, msg);
        }
        r->too_large = 1;
    }
    return MHD_YES;
}

/* Stores a piece of the body, up to the limit; past it, the rest is read
 * and dropped (a chunked body has no length to refuse up front), up to
 * HTTP_DISCARD_MAX in all. Returns 0, or -1 to drop the connection. */
static int take_body(http_req *r, const char *data, size_t n) {
    r->seen += n;
    if (r->seen > (size_t)HTTP_DISCARD_MAX + r->h->max_body) return -1;
    if (!r->too_large && r->len + n > r->h->max_body) r->too_large = 1;
    if (r->too_large) {
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return 0;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = (r->len + n + 1) * 2;
        if (cap > (size_t)r->h->max_body + 1) cap = (size_t)r->h->max_body + 1;
        char *grown = realloc(r->body, cap);
        if (!grown) {
            r->too_large = 1; /* answered as too large: nothing is kept */
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return 0;
        }
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

static enum MHD_Result http_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *verb, const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls) {
    (void)version;
    http_server *h = cls;
    http_req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->h = h;
        r->start = clock_seconds();
        r->route = HTTP_MAX_METHODS + HTTP_ROUTE_OTHER;
        r->status = -1;
        *con_cls = r;
        return route(conn, r, url, verb);
    }
    if (*upload_size) {
        int drop = take_body(r, upload, *upload_size);
        *upload_size = 0;
        return drop ? MHD_NO : MHD_YES;
    }
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than the server's limit of %u bytes",
                 h->max_body);
        return answer_status(conn, r, 413, ERR_STATUS_RESOURCE_EXHAUSTED, msg);
    }
    err_t e;
    ProtobufCMessage *request;
    switch (r->kind) {
    case KIND_UNARY:
        return run_unary(conn, r);
    case KIND_STREAM:
        if (decode_body(h, r->m->request, r, &request, &e))
            return answer_err(conn, r, e.code, e.msg);
        return run_stream(conn, r, request, 0);
    case KIND_CSV: {
        query_args q = {.n = 0};
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_arg, &q);
        if (q.too_many) return answer_err(conn, r, ERR_INVALID, "too many query arguments");
        if (pbjson_decode_pairs(&recd__v1__campaign_targets_request__descriptor, q.names, q.values,
                                q.n, &request, &e))
            return answer_err(conn, r, e.code, e.msg);
        return run_stream(conn, r, request, 1);
    }
    case KIND_LOCAL:
        return local_routes[r->local].answer(conn, r);
    case KIND_NONE:
        break;
    }
    return answer_err(conn, r, ERR_INTERNAL, "no route");
}

/* When a request is over (answered, or its connection gone): counts it and
 * frees its state. */
static void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode why) {
    (void)conn;
    http_server *h = cls;
    http_req *r = *con_cls;
    if (!r) return;
    int status = r->status;
    if (status < 0 || why != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        status = status == ERR_STATUS_OK || status < 0 ? ERR_STATUS_CANCELLED : status;
    atomic_fetch_add(&h->calls[r->route][status], 1);
    histo_observe(&h->latency[r->route], clock_seconds() - r->start);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* --- the server ------------------------------------------------------------- */

static const char *route_label(const http_server *h, size_t row) {
    return row < h->n_methods        ? h->methods[row].rpc->path
           : row >= HTTP_MAX_METHODS ? http_extra_label[row - HTTP_MAX_METHODS]
                                     : NULL;
}

void http_write_metrics(void *ctx, FILE *out) {
    http_server *h = ctx;
    fprintf(out, "# HELP recd_calls_total Calls answered, by transport (grpc, http: the JSON "
                 "API), method and the gRPC status of the answer.\n"
                 "# TYPE recd_calls_total counter\n");
    if (h->call_counts) h->call_counts(h->calls_ctx, out);
    for (size_t row = 0; row < HTTP_ROUTES; row++) {
        const char *label = route_label(h, row);
        if (!label) continue;
        for (int st = 0; st < ERR_STATUSES; st++) {
            unsigned long long n = atomic_load(&h->calls[row][st]);
            if (n || (st == 0 && row < h->n_methods))
                fprintf(out,
                        "recd_calls_total{transport=\"http\",method=\"%s\",code=\"%s\"} %llu\n",
                        label, err_status_name(st), n);
        }
    }
    fprintf(out, "# HELP recd_call_seconds Time from accepting a call (grpc) or a request's "
                 "headers (http) to its answer.\n"
                 "# TYPE recd_call_seconds histogram\n");
    if (h->call_latency) h->call_latency(h->calls_ctx, out);
    for (size_t row = 0; row < HTTP_ROUTES; row++) {
        const char *label = route_label(h, row);
        if (label) histo_write(&h->latency[row], out, "recd_call_seconds", "http", label);
    }
}

/* The methods of the services svc serves, from their descriptors. */
static int add_methods(http_server *h, const ProtobufCServiceDescriptor *sd, err_t *e) {
    size_t n_rows;
    const rpc_method *rows = svc_methods(h->svc, &n_rows);
    for (unsigned i = 0; i < sd->n_methods; i++) {
        char path[192];
        snprintf(path, sizeof path, "/%s/%s", sd->name, sd->methods[i].name);
        const rpc_method *row = NULL;
        for (size_t k = 0; k < n_rows && !row; k++)
            if (!strcmp(rows[k].path, path)) row = &rows[k];
        if (!row || (!row->handler && !row->stream)) continue; /* not served, or bidirectional */
        if (h->n_methods == HTTP_MAX_METHODS)
            return err_set(e, ERR_LIMIT, "http: more than %d methods", HTTP_MAX_METHODS);
        http_method *m = &h->methods[h->n_methods++];
        snprintf(m->name, sizeof m->name, "%s", sd->methods[i].name);
        m->rpc = row;
        m->request = sd->methods[i].input;
        m->response = sd->methods[i].output;
    }
    return ERR_OK;
}

static void http_free(http_server *h) {
    if (h->sampler_started) {
        pthread_mutex_lock(&h->history_lock);
        h->sampler_stop = 1;
        pthread_cond_signal(&h->history_wake);
        pthread_mutex_unlock(&h->history_lock);
        pthread_join(h->sampler, NULL);
    }
    for (size_t i = 0; i < HTTP_HISTORY; i++)
        free(h->history[i]);
    pthread_mutex_destroy(&h->history_lock);
    pthread_cond_destroy(&h->history_wake);
    sem_destroy(&h->decodes);
    free(h->write_token);
    free(h->read_token);
    free(h->cert);
    free(h->key);
    free(h->client_ca);
    for (size_t i = 0; i < h->n_origins; i++)
        free(h->origins[i]);
    free(h);
}

static char *dup_or_null(const char *s, int *failed) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *failed = 1;
    return d;
}

int http_start(const http_options *o, core *c, svc *s, http_server **out, err_t *e) {
    if (o->n_writers > HTTP_MAX_WRITERS || o->n_origins > HTTP_MAX_ORIGINS)
        return err_set(e, ERR_INVALID, "http: too many metrics writers or origins");
    if (!o->tls_cert != !o->tls_key)
        return err_set(e, ERR_INVALID, "http: TLS needs both a certificate and a key");
    unsigned max_conn = o->max_connections ? o->max_connections : HTTP_MAX_CONNECTIONS;
    unsigned per_address = o->max_per_address                ? o->max_per_address
                           : max_conn < HTTP_MAX_PER_ADDRESS ? max_conn
                                                             : HTTP_MAX_PER_ADDRESS;
    if (max_conn > HTTP_CONNECTIONS_CAP || per_address > max_conn)
        return err_set(e, ERR_INVALID,
                       "http: at most %d connections, and no more from one address than in all "
                       "(got %u and %u)",
                       HTTP_CONNECTIONS_CAP, max_conn, per_address);
    const char *colon = strrchr(o->listen, ':');
    char host[64];
    struct sockaddr_in addr = {.sin_family = AF_INET};
    size_t host_len = colon ? (size_t)(colon - o->listen) : 0;
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || host_len >= sizeof host || *end || port < 0 || port > 65535)
        return err_set(e, ERR_INVALID, "http: '%s' is not HOST:PORT", o->listen);
    memcpy(host, o->listen, host_len);
    host[host_len] = '\0';
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return err_set(e, ERR_INVALID, "http: '%s' is not an IPv4 address", host);
    addr.sin_port = htons((uint16_t)port);
    if (o->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return err_set(e, ERR_INVALID, "http: this libmicrohttpd has no TLS");
    http_server *h = calloc(1, sizeof *h);
    if (!h) return err_set(e, ERR_NOMEM, "http: out of memory");
    h->core = c;
    h->svc = s;
    sem_init(&h->decodes, 0, HTTP_MAX_DECODES);
    pthread_mutex_init(&h->history_lock, NULL);
    clock_cond_init(&h->history_wake);
    h->max_body = o->max_body_bytes ? o->max_body_bytes : 4u << 20;
    int failed = 0;
    h->write_token = dup_or_null(o->write_token, &failed);
    h->read_token = dup_or_null(o->read_token, &failed);
    h->cert = dup_or_null(o->tls_cert, &failed);
    h->key = dup_or_null(o->tls_key, &failed);
    h->client_ca = dup_or_null(o->tls_client_ca, &failed);
    for (size_t i = 0; i < o->n_origins; i++)
        h->origins[h->n_origins++] = dup_or_null(o->origins[i], &failed);
    memcpy(h->writers, o->writers, o->n_writers * sizeof *o->writers);
    memcpy(h->writer_ctxs, o->writer_ctxs, o->n_writers * sizeof *o->writer_ctxs);
    h->n_writers = o->n_writers;
    h->call_counts = o->call_counts;
    h->call_latency = o->call_latency;
    h->calls_ctx = o->calls_ctx;
    if (failed) {
        http_free(h);
        return err_set(e, ERR_NOMEM, "http: out of memory");
    }
    if (add_methods(h, &recd__v1__recommender__descriptor, e)) {
        http_free(h);
        return e->code;
    }
    unsigned timeout = o->timeout_s ? o->timeout_s : HTTP_DEFAULT_TIMEOUT_S;
    struct MHD_OptionItem opts[16];
    size_t n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &addr};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, timeout, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, max_conn, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_address, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)http_completed, h};
    /* Each connection's thread decodes and encodes JSON; 512 KiB is
     * plenty for PBJSON_MAX_DEPTH levels, and 256 threads stay cheap. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_STACK_SIZE, 512 * 1024, NULL};
    if (h->cert) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->key};
        if (h->client_ca)
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, h->client_ca};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    /* poll(), not select(): the gRPC side holds one descriptor per client,
     * and select() cannot watch one above FD_SETSIZE. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | (h->cert ? MHD_USE_TLS : 0);
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, http_answer, h, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        http_free(h);
        return err_set(e, ERR_INVALID, "http: cannot listen on %s%s", o->listen,
                       o->tls_cert ? " (or the TLS certificate or key was refused)" : "");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : (int)port;
    if (pthread_create(&h->sampler, NULL, history_main, h)) {
        MHD_stop_daemon(h->daemon);
        http_free(h);
        return err_set(e, ERR_INTERNAL, "http: cannot start the history thread");
    }
    h->sampler_started = 1;
    *out = h;
    return ERR_OK;
}

int http_port(const http_server *h) {
    return h->port;
}

void http_stop(http_server *h) {
    if (!h) return;
    MHD_stop_daemon(h->daemon);
    http_free(h); /* stops the sampler too */
}
