#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int log_level = LOG_INFO;

void log_set_level(int level) {
    log_level = level;
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
    line[n++] = '\n';
    /* One write so that lines from several threads never interleave. */
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
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
