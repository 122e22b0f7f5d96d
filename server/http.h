/* http: the HTTP/1.1 front end of the core (libmicrohttpd), on one port:
 *
 *   POST /v1/<Method>               every unary RPC of recd.v1.Recommender,
 *                                   proto3 JSON in and out (pbjson)
 *   POST /v1/StreamCampaignTargets  the targets as NDJSON, one per line,
 *                                   chunked, as the stream goes
 *   GET  /v1/campaign-targets.csv   the same targets as the CSV of
 *                                   `recd query targets --csv`; the
 *                                   request's fields in the query string
 *   GET  /                          the dashboard: one page (server/dashboard.html,
 *                                   built in) that reads the JSON API and /metrics
 *   GET  /chart.js                  Debian's Chart.js, built in, for that page
 *   GET  /dashboard.json            which tokens this server requires, for that page
 *   GET  /metrics                   the Prometheus exposition
 *   GET  /metrics/history           the last 10 minutes of calls and latency
 *                                   (a sample every 10 s), for the dashboard
 *   GET  /healthz                   200 SERVING or 503 NOT_SERVING
 *   OPTIONS /v1/...                 CORS preflight for allowed origins
 *
 * The methods come from the protobuf-c service descriptor and the svc
 * method table (one row per RPC): every call runs svc's handler for its
 * method on the core's scheduler, so limits, checks, messages, load
 * shedding, deadlines and batching are gRPC's by construction - the JSON
 * is decoded into the request message, packed, and the handler's reply
 * unpacked and written as JSON. Write methods need "Authorization: Bearer
 * <write token>", member-data methods the read token, as over gRPC.
 * "X-Recd-Timeout: 200m" (gRPC's grpc-timeout units: n u m S M H; also
 * "200ms", "2s") sets the call's deadline.
 *
 * Bodies are bounded before they are kept (max_body_bytes; 413) and
 * counted before json-c builds their tree (PBJSON_MAX_PIECES); at most 4
 * are decoded at once, on the connections' threads, so the workers only
 * run handlers.
 *
 * Errors answer the HTTP status of the gRPC status of the ERR_* code
 * (util/err's table) and {"code": <gRPC code>, "status": "<NAME>",
 * "message": "..."}. */
#ifndef RECD_HTTP_H
#define RECD_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core.h"
#include "err.h"
#include "svc.h"

/* The dashboard page and Chart.js, built into the binary by
 * scripts/embed.cmake (the build's http_dashboard.c, http_chartjs.c). */
extern const uint8_t http_dashboard_html[];
extern const size_t http_dashboard_html_len;
extern const uint8_t http_chartjs[];
extern const size_t http_chartjs_len;

/* Appends metric families (Prometheus text) to out; must be thread-safe. */
typedef void (*http_metrics_writer)(void *ctx, FILE *out);

#define HTTP_MAX_WRITERS 8
#define HTTP_MAX_ORIGINS 16

/* The bounds an attacker meets, by default: at most this many connections
 * in all and from one address (each has a thread: thread-per-connection
 * keeps a blocking call simple), a connection idle this long (a request
 * never finished, a keep-alive, a stream client that stopped reading) is
 * closed. A connection past a limit is accepted and closed at once (the
 * client sees a reset): libmicrohttpd has no answer to give it. */
#define HTTP_MAX_CONNECTIONS 256
#define HTTP_MAX_PER_ADDRESS 64
#define HTTP_DEFAULT_TIMEOUT_S 10
/* The most max_connections may be: a thread each (512 KiB of stack
 * reserved), a descriptor each. */
#define HTTP_CONNECTIONS_CAP 10000

typedef struct http_options {
    const char *listen; /* IPv4 host:port; port 0 picks a free one */
    /* Largest request body (as gRPC's max_message_bytes); a longer one is
     * answered 413 without being kept. */
    uint32_t max_body_bytes;
    uint32_t timeout_s; /* idle connections; 0 = HTTP_DEFAULT_TIMEOUT_S */
    /* Connections at once in all (0 = HTTP_MAX_CONNECTIONS, at most
     * HTTP_CONNECTIONS_CAP) and from one address (0 = HTTP_MAX_PER_ADDRESS,
     * or max_connections when fewer; at most max_connections): a proxy or
     * a shop's app servers come from few addresses. */
    uint32_t max_connections, max_per_address;
    /* Bearer tokens as in rpc_options: NULL = open. */
    const char *write_token, *read_token;
    /* TLS: PEM text (not file names) of the certificate chain and key (both
     * or neither); with client_ca a request needs a client certificate
     * that it signed. */
    const char *tls_cert, *tls_key, *tls_client_ca;
    /* Origins allowed to call from a browser ("https://shop.example", or
     * "*" for any); none = no CORS headers. */
    const char *origins[HTTP_MAX_ORIGINS];
    size_t n_origins;
    /* /metrics: each writer called with its ctx; the call families
     * (http_write_metrics) follow. */
    http_metrics_writer writers[HTTP_MAX_WRITERS];
    void *writer_ctxs[HTTP_MAX_WRITERS];
    size_t n_writers;
    /* The gRPC server's lines of the call families (rpc_write_call_counts,
     * rpc_write_call_latency with calls_ctx), written under the same
     * # HELP and # TYPE as the front end's own; NULL = none. */
    http_metrics_writer call_counts, call_latency;
    void *calls_ctx;
} http_options;

typedef struct http_server http_server;

/* Serves the methods of s (and the core c it runs on; both outlive the
 * server) as above, with libmicrohttpd's threads (one per connection) and
 * one that samples the history every 10 s. o's strings are copied. *out is owned by the caller:
 * http_stop. Errors: ERR_INVALID (not HOST:PORT, connection limits out of
 * range, cannot listen there, TLS not available or its PEM refused),
 * ERR_NOMEM. */
int http_start(const http_options *o, core *c, svc *s, http_server **out, err_t *e);

/* The port actually bound. */
int http_port(const http_server *h);

/* Appends the call families of both transports, labelled by transport
 * ("grpc" from the options' call writers, "http" the front end's own):
 * calls by method and gRPC status (recd_calls_total) and their latency
 * (recd_call_seconds). ctx is the http_server. */
void http_write_metrics(void *ctx, FILE *out);

/* Stops accepting, ends the connections (streams are cancelled) and frees
 * h; NULL is fine. */
void http_stop(http_server *h);

/* A grpc-timeout style duration ("200m", "200ms", "2S", "2s", "1M",
 * "500u", "1H") into seconds. Returns ERR_OK or ERR_INVALID. */
int http_parse_timeout(const char *text, double *seconds, err_t *e);

#endif
