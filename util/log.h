/* log: one structured line per event worth logging (logfmt on stderr).
 *
 * Each line is `ts=<ISO8601> level=<info|warn|error> msg="..." key=value...`
 * (or the same as JSON, log_set_format).
 * The caller formats the key=value tail; log_* adds the time, level and
 * escapes nothing else. Safe to call from several threads (one write(2) per
 * line). */
#ifndef RECD_LOG_H
#define RECD_LOG_H

#include <stddef.h>

enum { LOG_QUIET = 0, LOG_ERROR = 1, LOG_WARN = 2, LOG_INFO = 3 };

/* Lines above level are dropped; the default is LOG_INFO. */
void log_set_level(int level);

enum { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON = 1 };

/* LOG_FORMAT_JSON turns every line into one JSON object with the same keys
 * (ts, level, then the caller's key=value pairs, all values as strings). */
void log_set_format(int format);

/* Copies in to out (cap bytes, NUL-terminated, cut if longer) so that it is
 * safe inside a quoted logfmt value: quote, backslash, control and non-ASCII
 * bytes become \xNN (so cap = 4 * strlen(in) + 1 holds it all). The one
 * escaping of recd's logs: every string a client sent (ids, salts, error
 * messages quoting them) reaches a line only through it, inside quotes, so
 * it can forge neither a line nor a key (nor a duplicate JSON key). A
 * control byte left unescaped by mistake is still written as '?'. Returns
 * out. */
char *log_escape(const char *in, char *out, size_t cap);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
