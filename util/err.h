/* err: error codes and messages shared by every recd module.
 *
 * Functions that can fail return an int error code (ERR_OK on success) and,
 * when the caller passes a non-NULL err_t, fill it with the same code and a
 * human-readable message. The caller owns the err_t (usually on its stack). */
#ifndef RECD_ERR_H
#define RECD_ERR_H

#include <stddef.h>

enum {
    ERR_OK = 0,
    ERR_NOMEM,       /* allocation failed */
    ERR_INVALID,     /* bad argument or input */
    ERR_NOTFOUND,    /* id, file or key does not exist */
    ERR_IO,          /* read/write/open of a file failed */
    ERR_FORMAT,      /* a file exists but its content is not what we expect */
    ERR_VERSION,     /* a model written by an incompatible format version */
    ERR_LIMIT,       /* a size limit was exceeded */
    ERR_INTERNAL,    /* a dependency (LMDB, gRPC, BLAS) reported an error */
    ERR_PRECONDITION /* the server, model or member is not in the state the call needs */
};

typedef struct err_t {
    int code;
    char msg[512];
} err_t;

/* Returns a static name for code ("not found", ...). */
const char *err_name(int code);

/* Records code and a printf-style message in e (if e is non-NULL) and returns
 * code, so that callers can write `return err_set(e, ERR_IO, "...", ...)`. */
int err_set(err_t *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in e with a printf-style context string. */
void err_wrap(err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
