#include "targetcsv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *targetcsv_header(void) {
    return "user_id,churn_probability,risk_band,segment,tier,monetary,affinity,expected_value,"
           "p_alive\n";
}

/* Appends s as one CSV field at buf + *n (quoted when it holds a comma, a
 * quote or a line break; quotes doubled), counting what does not fit. */
static void field(const char *s, char *buf, size_t cap, size_t *n) {
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote) {
        if (*n + 1 < cap) buf[*n] = '"';
        ++*n;
    }
    for (; *s; s++) {
        if (quote && *s == '"') {
            if (*n + 1 < cap) buf[*n] = '"';
            ++*n;
        }
        if (*n + 1 < cap) buf[*n] = *s;
        ++*n;
    }
    if (quote) {
        if (*n + 1 < cap) buf[*n] = '"';
        ++*n;
    }
}

/* Appends a printf'ed piece at buf + *n. */
static void piece(char *buf, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void piece(char *buf, size_t cap, size_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(*n < cap ? buf + *n : NULL, *n < cap ? cap - *n : 0, fmt, ap);
    va_end(ap);
    if (w > 0) *n += (size_t)w;
}

size_t targetcsv_row(const Recd__V1__CampaignTarget *t, char *buf, size_t cap) {
    size_t n = 0;
    field(t->user_id, buf, cap, &n);
    piece(buf, cap, &n, ",%.6g,%s,", t->churn_probability, t->risk_band);
    field(t->segment, buf, cap, &n);
    piece(buf, cap, &n, ",%s,%.2f,%.6g,%.2f,%.6g\n", t->tier, t->monetary, t->affinity,
          t->expected_value, t->p_alive);
    if (cap) buf[n < cap ? n : cap - 1] = '\0';
    return n;
}
