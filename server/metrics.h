/* metrics: the Prometheus text exposition of a running server, over HTTP on
 * a port of its own (libmicrohttpd), so that scraping never competes with
 * gRPC traffic.
 *
 * The exposition is put together from writers: each appends its own metric
 * families (HELP, TYPE, samples) to the body of one scrape. */
#ifndef RECD_METRICS_H
#define RECD_METRICS_H

#include <stdio.h>

#include "err.h"

/* Appends metric families to out. */
typedef void (*metrics_writer)(void *ctx, FILE *out);

#define METRICS_MAX_WRITERS 8

/* The HTTP side's bounds: a connection idle this long (a request never
 * finished, or a keep-alive between scrapes) is closed; at most this many
 * connections in all, and from one address. A scraper needs one. */
#define METRICS_TIMEOUT_S 10
#define METRICS_MAX_CONNECTIONS 256
#define METRICS_MAX_PER_ADDRESS 16

typedef struct metrics_http metrics_http;

/* Serves GET /metrics on listen ("host:port"; port 0 picks a free one) from
 * the n writers (each called with its ctx, from the HTTP thread: they must
 * be thread-safe). *out is owned by the caller: metrics_http_stop. */
int metrics_http_start(const char *listen, const metrics_writer *writers, void *const *ctxs,
                       size_t n, metrics_http **out, err_t *e);

/* The port actually bound. */
int metrics_http_port(const metrics_http *m);

void metrics_http_stop(metrics_http *m);

#endif
