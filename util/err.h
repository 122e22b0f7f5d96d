/* err: error codes and messages shared by every recd module, and the one
 * table that says what each code means to a client.
 *
 * Functions that can fail return an int error code (ERR_OK on success) and,
 * when the caller passes a non-NULL err_t, fill it with the same code and a
 * human-readable message. The caller owns the err_t (usually on its stack).
 *
 * The contract, for every module:
 *   - A failure is never turned into success: a caller that cannot go on
 *     returns (or answers) an error; one that can go on (a log line, a
 *     degraded answer that says so) does so on purpose and says why.
 *   - A failure keeps its code on the way up: a caller adds context to the
 *     message (err_wrap, or its own message), it does not pick another code
 *     for a failure it did not cause. Out of memory stays ERR_NOMEM, a limit
 *     stays ERR_LIMIT, whatever the layer.
 *   - The server turns a code into a gRPC status only through err_to_status
 *     (and an HTTP front end into an HTTP status through err_status_http), so
 *     the same failure gets the same status from every call.
 *   - A message that does not fit in err_t.msg is cut and ends with "...",
 *     so that a reader knows there was more.
 *
 * The functions here have no state: all are thread-safe. */
#ifndef RECD_ERR_H
#define RECD_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* gRPC status codes (the values of grpc_status_code, fixed by the gRPC
 * protocol) with the HTTP status a front end answers for each: name, code,
 * HTTP status. The mapping is grpc-gateway's; 499 is "client closed
 * request". */
#define ERR_STATUS_MAP(X)                                                                          \
    X(OK, 0, 200)                                                                                  \
    X(CANCELLED, 1, 499)                                                                           \
    X(UNKNOWN, 2, 500)                                                                             \
    X(INVALID_ARGUMENT, 3, 400)                                                                    \
    X(DEADLINE_EXCEEDED, 4, 504)                                                                   \
    X(NOT_FOUND, 5, 404)                                                                           \
    X(ALREADY_EXISTS, 6, 409)                                                                      \
    X(PERMISSION_DENIED, 7, 403)                                                                   \
    X(RESOURCE_EXHAUSTED, 8, 429)                                                                  \
    X(FAILED_PRECONDITION, 9, 400)                                                                 \
    X(ABORTED, 10, 409)                                                                            \
    X(OUT_OF_RANGE, 11, 400)                                                                       \
    X(UNIMPLEMENTED, 12, 501)                                                                      \
    X(INTERNAL, 13, 500)                                                                           \
    X(UNAVAILABLE, 14, 503)                                                                        \
    X(DATA_LOSS, 15, 500)                                                                          \
    X(UNAUTHENTICATED, 16, 401)

enum {
#define ERR_STATUS_ENUM(name, code, http) ERR_STATUS_##name = code,
    ERR_STATUS_MAP(ERR_STATUS_ENUM)
#undef ERR_STATUS_ENUM
        ERR_STATUSES /* count: the codes are 0 .. ERR_STATUSES - 1 */
};

/* recd's error codes: name, default message, gRPC status. A code's status
 * says what the client can do about it: INVALID_ARGUMENT and NOT_FOUND, fix
 * the request; FAILED_PRECONDITION, change the server or the data first;
 * RESOURCE_EXHAUSTED and UNAVAILABLE, retry later; INTERNAL, nothing. */
#define ERR_MAP(X)                                                                                 \
    X(OK, "ok", OK)                                                                                \
    /* allocation failed */                                                                        \
    X(NOMEM, "out of memory", RESOURCE_EXHAUSTED)                                                  \
    /* bad argument or input */                                                                    \
    X(INVALID, "invalid argument", INVALID_ARGUMENT)                                               \
    /* id, file or key does not exist */                                                           \
    X(NOTFOUND, "not found", NOT_FOUND)                                                            \
    /* read/write/open of a file failed: a disk or store that may come back */                     \
    X(IO, "i/o error", UNAVAILABLE)                                                                \
    /* a file exists but its content is not what we expect */                                      \
    X(FORMAT, "bad format", INTERNAL)                                                              \
    /* a model written by an incompatible format version */                                        \
    X(VERSION, "unsupported version", FAILED_PRECONDITION)                                         \
    /* a size limit was exceeded (a map, a queue, a message, an id space) */                       \
    X(LIMIT, "limit exceeded", RESOURCE_EXHAUSTED)                                                 \
    /* a dependency (LMDB, gRPC, BLAS) reported an error */                                        \
    X(INTERNAL, "internal error", INTERNAL)                                                        \
    /* the server, model or member is not in the state the call needs */                           \
    X(PRECONDITION, "failed precondition", FAILED_PRECONDITION)                                    \
    /* the client went away (cancelled, connection lost) */                                        \
    X(CANCELLED, "cancelled", CANCELLED)                                                           \
    /* the call's deadline passed before it was answered */                                        \
    X(DEADLINE, "deadline exceeded", DEADLINE_EXCEEDED)                                            \
    /* a write call without the right bearer token */                                              \
    X(UNAUTHENTICATED, "unauthenticated", UNAUTHENTICATED)                                         \
    /* a method recd does not have */                                                              \
    X(UNIMPLEMENTED, "not implemented", UNIMPLEMENTED)

enum {
#define ERR_ENUM(name, message, status) ERR_##name,
    ERR_MAP(ERR_ENUM)
#undef ERR_ENUM
        ERR_CODES /* count */
};

typedef struct err_t {
    int code;
    char msg[512];
} err_t;

/* The code's name without its prefix ("NOTFOUND"); "UNKNOWN" for a value
 * that is not an ERR_* code. Static storage. */
const char *err_name(int code);

/* The code's default message ("not found"); "unknown error" for a value
 * that is not an ERR_* code. Static storage. */
const char *err_message(int code);

/* The gRPC status (ERR_STATUS_*) of code; ERR_STATUS_INTERNAL for a value
 * that is not an ERR_* code, so that no failure can ever answer OK. */
int err_to_status(int code);

/* The name of a gRPC status ("NOT_FOUND"); "UNKNOWN" for a value outside
 * 0 .. ERR_STATUSES - 1 (as gRPC treats one). Static storage. */
const char *err_status_name(int status);

/* The HTTP status of a gRPC status; 500 for a value outside the table. */
int err_status_http(int status);

/* Records code and a printf-style message in e (if e is non-NULL) and returns
 * code, so that callers can write `return err_set(e, ERR_IO, "...", ...)`.
 * A message longer than e->msg is cut and ends with "...". */
int err_set(err_t *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* err_set with a va_list (for wrappers such as rpc_reply_error). */
int err_vset(err_t *e, int code, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Prefixes the message already in e with a printf-style context string
 * ("context: old message"); e->code is kept. What does not fit is cut, and
 * the message then ends with "...". */
void err_wrap(err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
