/* client: unary gRPC calls over the C core API, for `recd query` and `recd bench`.
 * The other half of rpc: nothing else on the client side sees gRPC. */
#ifndef RECD_CLIENT_H
#define RECD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct client client;

/* How to reach the server: PEM strings, all NULL for an insecure channel;
 * ca alone for TLS, with cert and key for mutual TLS. token (may be NULL) is
 * sent as "authorization: Bearer <token>" with every call; user (may be
 * NULL) as "x-recd-user: <user>", the header a cluster's balancer routes a
 * member's calls by (deploy/haproxy.cfg). */
typedef struct client_options {
    const char *ca, *cert, *key;
    const char *token;
    const char *user;
} client_options;

/* Opens a channel to target ("host:port"); o may be NULL (insecure, no
 * token). Connection happens on the first call. *out is owned by the
 * caller: client_close. */
int client_open(const char *target, const client_options *o, client **out, err_t *e);
void client_close(client *c);

/* The outcome of one call. body (malloc'ed, caller frees) holds the response
 * message when status is 0 (OK). */
typedef struct client_result {
    int status;        /* gRPC status code */
    char details[512]; /* status message from the server */
    uint8_t *body;
    size_t len;
} client_result;

/* Calls method ("/pkg.Service/Method") with the serialized request and waits
 * up to timeout_s seconds. Returns ERR_OK when the call completed (whatever
 * its gRPC status; see r->status), ERR_INTERNAL when it could not be made. */
int client_call(client *c, const char *method, const uint8_t *req, size_t len, double timeout_s,
                client_result *r, err_t *e);

/* A server-streaming call in progress. */
typedef struct client_stream client_stream;

/* Starts a server-streaming call of method with the serialized request (the
 * whole call must end within timeout_s seconds). *out is owned by the
 * caller: client_stream_close. Returns ERR_OK or ERR_INTERNAL. */
int client_stream_open(client *c, const char *method, const uint8_t *req, size_t len,
                       double timeout_s, client_stream **out, err_t *e);

/* Waits for the next message: 1 with *body (malloc'ed, caller frees) and
 * *len, or 0 at the end of the stream (or when it failed: see the status
 * from client_stream_close). */
int client_stream_next(client_stream *st, uint8_t **body, size_t *len);

/* Cancels the call if it has not ended (stopping early is fine), fills r
 * with its final status (r->body stays NULL) and frees st. */
void client_stream_close(client_stream *st, client_result *r);

#endif
