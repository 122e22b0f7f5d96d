#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *err_name(int code) {
    switch (code) {
    case ERR_OK:
        return "ok";
    case ERR_NOMEM:
        return "out of memory";
    case ERR_INVALID:
        return "invalid argument";
    case ERR_NOTFOUND:
        return "not found";
    case ERR_IO:
        return "i/o error";
    case ERR_FORMAT:
        return "bad format";
    case ERR_VERSION:
        return "unsupported version";
    case ERR_LIMIT:
        return "limit exceeded";
    case ERR_PRECONDITION:
        return "failed precondition";
    default:
        return "internal error";
    }
}

int err_set(err_t *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        e->code = code;
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void err_wrap(err_t *e, const char *fmt, ...) {
    if (!e) return;
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof e->msg - 2) return;
    /* Whatever does not fit of the old message is cut. */
    memcpy(e->msg + n, ": ", 2);
    size_t room = sizeof e->msg - (size_t)n - 3;
    size_t len = strnlen(old, room);
    memcpy(e->msg + n + 2, old, len);
    e->msg[n + 2 + len] = '\0';
}
