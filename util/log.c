#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_level = LOG_INFO;
static int log_format = LOG_FORMAT_LOGFMT;

void log_set_level(int level) {
    log_level = level;
}

char *log_escape(const char *in, char *out, size_t cap) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 5 < cap; p++) {
        if (*p == '"' || *p == '\\' || *p < 0x20 || *p >= 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *p);
        else
            out[o++] = (char)*p;
    }
    if (cap) out[o < cap ? o : cap - 1] = '\0';
    return out;
}

void log_set_format(int format) {
    log_format = format;
}

/* Appends c to out as a JSON string character (bounded by end). */
static char *json_char(char *out, const char *end, char c) {
    if (end - out < 7) return out;
    if (c == '"' || c == '\\')
        *out++ = '\\', *out++ = c;
    else if ((unsigned char)c < 0x20)
        out += snprintf(out, 7, "\\u%04x", (unsigned char)c);
    else
        *out++ = c;
    return out;
}

/* Rewrites a logfmt line (key=value, key="quoted \\" value") as a JSON
 * object into out (cap bytes, NUL-terminated); returns its length. */
static int logfmt_to_json(const char *in, char *out, size_t cap) {
    char *o = out, *end = out + cap - 3;
    *o++ = '{';
    int first = 1;
    while (*in && o < end) {
        while (*in == ' ')
            in++;
        const char *key = in;
        while (*in && *in != '=' && *in != ' ')
            in++;
        if (*in != '=' || in == key) break;
        if (!first && o < end) *o++ = ',';
        first = 0;
        *o++ = '"';
        for (const char *k = key; k < in; k++)
            o = json_char(o, end, *k);
        if (end - o > 3) *o++ = '"', *o++ = ':', *o++ = '"';
        in++;
        if (*in == '"') {
            for (in++; *in && *in != '"'; in++) {
                if (*in == '\\' && in[1]) in++;
                o = json_char(o, end, *in);
            }
            if (*in == '"') in++;
        } else {
            for (; *in && *in != ' '; in++)
                o = json_char(o, end, *in);
        }
        if (o < end) *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return (int)(o - out);
}

static void log_line(int level, const char *name, const char *fmt, va_list ap) {
    if (level > log_level) return;
    char line[2048];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     now.tv_nsec / 1000000, name);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    /* The last guard against a forged line: a control byte a caller let
     * through unescaped (log_escape is the rule) never ends the line. */
    for (int i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20) line[i] = '?';
    /* Every character at most doubles in JSON (escapes), plus the quotes,
     * colons and commas around keys and values. */
    char json[sizeof line * 3];
    char *out = line;
    if (log_format == LOG_FORMAT_JSON) {
        line[n] = '\0';
        n = logfmt_to_json(line, json, sizeof json - 1);
        out = json;
    }
    out[n++] = '\n';
    /* One write so that lines from several threads never interleave. */
    ssize_t ignored = write(STDERR_FILENO, out, (size_t)n);
    (void)ignored;
}

#define LOG_FN(fn, level, name)                                                                    \
    void fn(const char *fmt, ...) {                                                                \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_line(level, name, fmt, ap);                                                            \
        va_end(ap);                                                                                \
    }
LOG_FN(log_info, LOG_INFO, "info")
LOG_FN(log_warn, LOG_WARN, "warn")
LOG_FN(log_error, LOG_ERROR, "error")
