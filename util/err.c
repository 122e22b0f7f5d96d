#include "err.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name, *message;
    int status;
} err_table[ERR_CODES] = {
#define ERR_ROW(name, message, status) [ERR_##name] = {#name, message, ERR_STATUS_##status},
    ERR_MAP(ERR_ROW)
#undef ERR_ROW
};

static const struct {
    const char *name;
    int http;
} err_status_table[ERR_STATUSES] = {
#define ERR_STATUS_ROW(name, code, http) [code] = {#name, http},
    ERR_STATUS_MAP(ERR_STATUS_ROW)
#undef ERR_STATUS_ROW
};

const char *err_name(int code) {
    return code >= 0 && code < ERR_CODES ? err_table[code].name : "UNKNOWN";
}

const char *err_message(int code) {
    return code >= 0 && code < ERR_CODES ? err_table[code].message : "unknown error";
}

int err_to_status(int code) {
    return code >= 0 && code < ERR_CODES ? err_table[code].status : ERR_STATUS_INTERNAL;
}

const char *err_status_name(int status) {
    return status >= 0 && status < ERR_STATUSES ? err_status_table[status].name : "UNKNOWN";
}

int err_status_http(int status) {
    return status >= 0 && status < ERR_STATUSES ? err_status_table[status].http : 500;
}

/* Ends a message that vsnprintf cut (n, what it wanted to write, did not
 * fit in cap bytes) with "...". */
static void err_mark_cut(char *msg, size_t cap, int n) {
    if (n >= 0 && (size_t)n < cap) return;
    memcpy(msg + cap - 4, "...", 4);
}

int err_vset(err_t *e, int code, const char *fmt, va_list ap) {
    if (e) {
        e->code = code;
        err_mark_cut(e->msg, sizeof e->msg, vsnprintf(e->msg, sizeof e->msg, fmt, ap));
    }
    return code;
}

int err_set(err_t *e, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vset(e, code, fmt, ap);
    va_end(ap);
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
    if (n < 0 || (size_t)n >= sizeof e->msg) {
        err_mark_cut(e->msg, sizeof e->msg, n);
        return;
    }
    int m = snprintf(e->msg + n, sizeof e->msg - (size_t)n, ": %s", old);
    err_mark_cut(e->msg, sizeof e->msg, n + m);
}
