#include "ingest.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

#define INGEST_PROGRESS_ROWS 500000
#define INGEST_READ_CHUNK (4u << 20)

/* The mapped columns of a row; the order is also the order of the checks,
 * so a row with several problems is counted under the first one. */
enum { COL_USER, COL_ITEM, COL_TIME, COL_QTY, COL_PRICE, COL_CATEGORY, COL_ROLES };

static const char *const role_default[COL_ROLES] = {"user_id",  "item_id", "timestamp",
                                                    "quantity", "price",   "category"};

/* State shared by the libcsv callbacks. Owns hdr, col_role and row. */
typedef struct ingest_ctx {
    const ingest_options *o;
    ev_set *out;
    ingest_stats *st;
    err_t *e;
    int err; /* first error met inside a callback; the callbacks do nothing once set */

    uint64_t line;     /* physical line being fed to libcsv, 1-based */
    uint64_t rec_line; /* line where the current record starts */
    uint64_t end_line; /* line where the last complete record ended */
    size_t field;      /* index of the next field in the current record */
    bool in_header;
    int64_t now;    /* import time, for the future bound */
    size_t bom_len; /* bytes of a UTF-8 byte order mark matched at the start */
    bool bom_done;  /* the start of the input is past */

    /* Header names, NUL-separated, kept for the missing-column message. */
    char *hdr;
    size_t hdr_len, hdr_cap;

    signed char *col_role; /* per header column: COL_* or -1 */
    size_t n_cols, need_cols;
    bool has_role[COL_ROLES];

    /* Mapped fields of the current row, NUL-terminated, reused every row. */
    char *row;
    size_t row_len, row_cap;
    size_t off[COL_ROLES], len[COL_ROLES];

    uint64_t bytes, total_bytes;
} ingest_ctx;

void ingest_options_init(ingest_options *o) {
    memset(o, 0, sizeof *o);
    o->user_col = role_default[COL_USER];
    o->item_col = role_default[COL_ITEM];
    o->time_col = role_default[COL_TIME];
    o->delimiter = ',';
    o->quote = '"';
}

const char *ingest_skip_name(int reason) {
    switch (reason) {
    case SKIP_MISSING_USER:
        return "missing user";
    case SKIP_MISSING_ITEM:
        return "missing item";
    case SKIP_BAD_TIME:
        return "bad timestamp";
    case SKIP_FUTURE_TIME:
        return "timestamp more than a day after the import";
    case SKIP_OLD_TIME:
        return "timestamp before 1970-01-02";
    case SKIP_BAD_QUANTITY:
        return "bad quantity";
    case SKIP_NEGATIVE_QTY:
        return "quantity <= 0";
    case SKIP_BAD_PRICE:
        return "bad price";
    case SKIP_ID_TOO_LONG:
        return "id too long";
    case SKIP_BAD_UTF8:
        return "id not UTF-8";
    case SKIP_SHORT_ROW:
        return "short row";
    default:
        return "unknown";
    }
}

/* ---- timestamps ---------------------------------------------------------- */

/* Exactly n ASCII digits at s. */
static bool digits_n(const char *s, size_t n, int *out) {
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * algorithm): exact for any year, unlike timegm it needs no struct tm and
 * no time-zone machinery, which matters at millions of rows. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

/* YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z|+HH[:MM]|-HH[MM]] */
static int parse_iso8601(const char *s, size_t len, int64_t *out) {
    int y, mo, d, h, mi, sec = 0;
    if (len < 16 || !digits_n(s, 4, &y) || s[4] != '-' || !digits_n(s + 5, 2, &mo) || s[7] != '-' ||
        !digits_n(s + 8, 2, &d) || (s[10] != 'T' && s[10] != ' ') || !digits_n(s + 11, 2, &h) ||
        s[13] != ':' || !digits_n(s + 14, 2, &mi))
        return ERR_INVALID;
    size_t i = 16;
    if (i < len && s[i] == ':') {
        if (len < i + 3 || !digits_n(s + i + 1, 2, &sec)) return ERR_INVALID;
        i += 3;
        if (i < len && (s[i] == '.' || s[i] == ',')) {
            size_t j = i + 1;
            while (j < len && s[j] >= '0' && s[j] <= '9')
                j++;
            if (j == i + 1) return ERR_INVALID;
            i = j; /* fractions of a second are dropped: events have second resolution */
        }
    }
    int64_t offset = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int oh, om = 0;
        int sign = s[i] == '-' ? -1 : 1;
        if (len < i + 3 || !digits_n(s + i + 1, 2, &oh)) return ERR_INVALID;
        i += 3;
        if (i < len && s[i] == ':') i++;
        if (i < len) {
            if (len < i + 2 || !digits_n(s + i, 2, &om)) return ERR_INVALID;
            i += 2;
        }
        if (oh > 23 || om > 59) return ERR_INVALID;
        offset = sign * (oh * 3600 + om * 60);
    }
    if (i != len || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 60)
        return ERR_INVALID;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    return ERR_OK;
}

int ingest_parse_time(const char *s, size_t len, const char *format, int64_t *out) {
    if (format) {
        char buf[128];
        if (len >= sizeof buf) return ERR_INVALID;
        memcpy(buf, s, len);
        buf[len] = '\0';
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(buf, format, &tm);
        if (!end || *end != '\0') return ERR_INVALID;
        /* tm_gmtoff stays 0 unless the format has %z, so this is UTC unless
         * the text says otherwise; timegm resets it, so read it first. */
        long gmtoff = tm.tm_gmtoff;
        *out = (int64_t)timegm(&tm) - gmtoff;
        return ERR_OK;
    }
    if (len >= 5 && s[4] == '-') return parse_iso8601(s, len, out);
    size_t i = 0;
    int64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (i == 18) return ERR_INVALID; /* would overflow int64 */
        v = v * 10 + (s[i++] - '0');
    }
    if (i == 0) return ERR_INVALID;
    if (i < len && s[i] == '.') {
        size_t j = i + 1;
        while (j < len && s[j] >= '0' && s[j] <= '9')
            j++;
        i = j;
    }
    if (i != len) return ERR_INVALID;
    *out = v;
    return ERR_OK;
}

/* ---- numbers ------------------------------------------------------------- */

/* Parses s[0..len) (NUL-terminated at len) as a finite number. The form
 * exports use, [+-]digits[.digits] with at most 15 significant digits, is
 * done by hand: mantissa and power of ten are then exact doubles, so one
 * division rounds correctly, and it is several times faster than strtod.
 * Anything else (exponents, long mantissas) goes through strtod. */
static bool parse_number(const char *s, size_t len, double *out) {
    static const double pow10[16] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    if (len == 0) return false;
    size_t i = 0;
    bool neg = false;
    if (s[0] == '-' || s[0] == '+') neg = s[i++] == '-';
    uint64_t mant = 0;
    int nd = 0, frac = 0;
    bool dot = false;
    for (; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            mant = mant * 10 + (uint64_t)(c - '0');
            nd++;
            frac += dot;
        } else if (c == '.' && !dot) {
            dot = true;
        } else {
            break;
        }
    }
    if (i == len && nd > 0 && nd <= 15) {
        double v = (double)mant / pow10[frac];
        *out = neg ? -v : v;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s + len || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* ---- rows ---------------------------------------------------------------- */

static int check_id(const char *s, size_t len) {
    if (len > INGEST_MAX_ID_LEN) return SKIP_ID_TOO_LONG;
    if (!utf8_valid(s, len)) return SKIP_BAD_UTF8;
    return -1;
}

/* Validates the mapped fields of a complete data row and fills the event's
 * values; returns the skip reason, or -1 when the row is usable. */
static int ingest_check_row(const ingest_ctx *c, int64_t *ts, double *qty, double *price) {
    if (c->field < c->need_cols) return SKIP_SHORT_ROW;
    size_t user_len = c->len[COL_USER], item_len = c->len[COL_ITEM];
    if (user_len == 0) return SKIP_MISSING_USER;
    if (item_len == 0) return SKIP_MISSING_ITEM;
    int bad = check_id(c->row + c->off[COL_USER], user_len);
    if (bad < 0) bad = check_id(c->row + c->off[COL_ITEM], item_len);
    if (bad >= 0) return bad;
    if (ingest_parse_time(c->row + c->off[COL_TIME], c->len[COL_TIME], c->o->time_format, ts))
        return SKIP_BAD_TIME;
    if (*ts > c->now + INGEST_MAX_AHEAD_S) return SKIP_FUTURE_TIME;
    if (*ts < INGEST_MIN_TS) return SKIP_OLD_TIME;
    *qty = 1;
    *price = NAN;
    /* An empty quantity is an error (the column was asked for), an empty
     * price just an unknown price: the purchase itself is still real. Both
     * are stored as floats, so a number beyond FLT_MAX would become inf. */
    if (c->has_role[COL_QTY]) {
        if (!parse_number(c->row + c->off[COL_QTY], c->len[COL_QTY], qty) || *qty > FLT_MAX)
            return SKIP_BAD_QUANTITY;
        if (*qty <= 0) return SKIP_NEGATIVE_QTY;
    }
    if (c->has_role[COL_PRICE] && c->len[COL_PRICE] > 0 &&
        (!parse_number(c->row + c->off[COL_PRICE], c->len[COL_PRICE], price) || *price < 0 ||
         *price > FLT_MAX))
        return SKIP_BAD_PRICE;
    return -1;
}

/* Turns a complete data row into an event or a counted skip. */
static void ingest_row(ingest_ctx *c) {
    int64_t ts;
    double qty, price;
    c->st->rows++;
    int reason = ingest_check_row(c, &ts, &qty, &price);
    if (reason >= 0) {
        uint64_t k = c->st->skipped[reason]++;
        if (k < INGEST_FIRST_LINES) c->st->first_lines[reason][k] = c->rec_line;
        return;
    }
    int rc =
        ev_set_add(c->out, c->row + c->off[COL_USER], c->len[COL_USER], c->row + c->off[COL_ITEM],
                   c->len[COL_ITEM], ts, (float)qty, (float)price, c->e);
    /* A category that is not a usable id just leaves the item without one:
     * the purchase itself is still good. */
    const char *cat = c->row + c->off[COL_CATEGORY];
    size_t cat_len = c->len[COL_CATEGORY];
    if (!rc && c->has_role[COL_CATEGORY] && cat_len > 0 && check_id(cat, cat_len) < 0)
        rc = ev_set_set_category(c->out, c->out->events[c->out->n - 1].item, cat, cat_len, c->e);
    if (rc) {
        c->err = rc;
        return;
    }
    c->st->accepted++;
}

/* Resolves the header names to column indexes; ERR_FORMAT names what is
 * missing and what the header has, which is usually enough to pick the right
 * --*-col flags. */
static int ingest_header(ingest_ctx *c) {
    const char *want[COL_ROLES] = {c->o->user_col,     c->o->item_col,  c->o->time_col,
                                   c->o->quantity_col, c->o->price_col, c->o->category_col};
    bool optional_default[COL_ROLES] = {
        false, false, false, !c->o->quantity_col, !c->o->price_col, !c->o->category_col};
    for (int r = COL_QTY; r < COL_ROLES; r++)
        if (!want[r]) want[r] = role_default[r];

    c->col_role = malloc(c->n_cols ? c->n_cols : 1);
    if (!c->col_role) return err_set(c->e, ERR_NOMEM, "ingest: out of memory");
    memset(c->col_role, -1, c->n_cols);
    char missing[256] = "";
    size_t mlen = 0;
    for (int r = 0; r < COL_ROLES; r++) {
        const char *name = c->hdr;
        size_t first = 0;
        for (size_t col = 0; col < c->n_cols; col++, name += strlen(name) + 1) {
            if (strcmp(name, want[r]) != 0) continue;
            /* Two columns of one name: taking either would be a guess. */
            if (c->has_role[r])
                return err_set(c->e, ERR_FORMAT,
                               "line %llu: column \"%s\" appears twice in the header (columns "
                               "%zu and %zu): rename one",
                               (unsigned long long)c->rec_line, want[r], first + 1, col + 1);
            if (c->col_role[col] >= 0) continue; /* the column of an earlier role */
            c->col_role[col] = (signed char)r;
            c->has_role[r] = true;
            first = col;
            if (col + 1 > c->need_cols) c->need_cols = col + 1;
        }
        if (!c->has_role[r] && !optional_default[r]) {
            int n = snprintf(missing + mlen, sizeof missing - mlen, "%s\"%s\"", mlen ? ", " : "",
                             want[r]);
            if (n > 0) mlen = mlen + (size_t)n < sizeof missing ? mlen + (size_t)n : sizeof missing;
        }
    }
    if (mlen == 0) return ERR_OK;
    char cols[400];
    size_t clen = 0;
    const char *name = c->hdr;
    cols[0] = '\0';
    for (size_t col = 0; col < c->n_cols && clen < sizeof cols; col++, name += strlen(name) + 1) {
        int n = snprintf(cols + clen, sizeof cols - clen, "%s%s", col ? "," : "", name);
        if (n < 0) break;
        clen += (size_t)n;
    }
    return err_set(c->e, ERR_FORMAT, "line %llu: no column %s in the header (columns: %s)",
                   (unsigned long long)c->rec_line, missing, cols);
}

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return ERR_OK;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need)
        cap2 *= 2;
    char *p = realloc(*buf, cap2);
    if (!p) return ERR_NOMEM;
    *buf = p;
    *cap = cap2;
    return ERR_OK;
}

/* libcsv field callback: copies the mapped fields of the row (libcsv reuses
 * its buffer), or collects the names while in the header. */
static void on_field(void *data, size_t len, void *arg) {
    ingest_ctx *c = arg;
    if (c->err) return;
    if (c->field == 0) {
        /* The record started as many lines back as its first field has
         * newlines: libcsv only reports a field once it is complete. */
        uint64_t nl = 0;
        for (const char *p = data, *end = p + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
            nl++;
        c->rec_line = c->line - nl;
    }
    size_t col = c->field++;
    if (c->in_header) {
        if (grow(&c->hdr, &c->hdr_cap, c->hdr_len + len + 1)) {
            c->err = err_set(c->e, ERR_NOMEM, "ingest: out of memory");
            return;
        }
        memcpy(c->hdr + c->hdr_len, data, len);
        c->hdr_len += len;
        c->hdr[c->hdr_len++] = '\0';
        c->n_cols++;
        return;
    }
    if (col >= c->n_cols || c->col_role[col] < 0) return;
    int r = c->col_role[col];
    if (grow(&c->row, &c->row_cap, c->row_len + len + 1)) {
        c->err = err_set(c->e, ERR_NOMEM, "ingest: out of memory");
        return;
    }
    memcpy(c->row + c->row_len, data, len);
    c->off[r] = c->row_len;
    c->len[r] = len;
    c->row_len += len;
    c->row[c->row_len++] = '\0';
}

/* libcsv record callback. */
static void on_record(int term, void *arg) {
    (void)term;
    ingest_ctx *c = arg;
    if (c->err) return;
    if (c->in_header) {
        c->in_header = false;
        c->err = ingest_header(c);
    } else {
        ingest_row(c);
        if (c->o->progress && c->st->rows % INGEST_PROGRESS_ROWS == 0)
            c->o->progress(c->o->progress_ctx, c->st->rows, c->bytes, c->total_bytes);
    }
    c->field = 0;
    c->row_len = 0;
    c->end_line = c->line;
}

/* Feeds buf to libcsv one physical line at a time, so that c->line is the
 * line of every byte libcsv reports on. The last piece may be a partial
 * line; libcsv carries it over to the next call. */
static int ingest_feed_lines(ingest_ctx *c, struct csv_parser *p, const char *buf, size_t len) {
    const char *end = buf + len;
    while (buf < end) {
        const char *nl = memchr(buf, '\n', (size_t)(end - buf));
        size_t n = nl ? (size_t)(nl - buf) + 1 : (size_t)(end - buf);
        if (csv_parse(p, buf, n, on_field, on_record, c) != n) {
            int ce = csv_error(p);
            if (ce == CSV_EPARSE)
                return err_set(c->e, ERR_FORMAT,
                               "line %llu: malformed quoting (a quote inside an unquoted field, "
                               "or text after a closing quote): not CSV",
                               (unsigned long long)c->line);
            return err_set(c->e, ERR_NOMEM, "ingest: line %llu: %s", (unsigned long long)c->line,
                           csv_strerror(ce));
        }
        if (c->err) return c->err;
        c->bytes += n;
        if (nl) c->line++;
        buf += n;
    }
    return ERR_OK;
}

/* Checks buf for NUL bytes (an id with one would be cut short by every C
 * string after it), drops a UTF-8 byte order mark at the very start of the
 * input, and feeds the rest. The mark goes before libcsv sees it: in
 * strict mode a quoted header behind it would be a quote inside an unquoted
 * field. It may arrive split over reads (a pipe). */
static int ingest_feed(ingest_ctx *c, struct csv_parser *p, const char *buf, size_t len) {
    static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
    const char *z = memchr(buf, '\0', len);
    if (z) {
        uint64_t line = c->line;
        for (const char *q = buf; (q = memchr(q, '\n', (size_t)(z - q))); q++)
            line++;
        return err_set(c->e, ERR_FORMAT, "line %llu: NUL byte: binary data, not CSV",
                       (unsigned long long)line);
    }
    while (!c->bom_done && len > 0) {
        if (*buf == bom[c->bom_len]) {
            buf++, len--;
            c->bom_done = ++c->bom_len == sizeof bom;
            if (c->bom_done) c->bytes += sizeof bom;
        } else {
            c->bom_done = true; /* not a mark: its first bytes are data */
            int rc = ingest_feed_lines(c, p, bom, c->bom_len);
            if (rc) return rc;
        }
    }
    return ingest_feed_lines(c, p, buf, len);
}

/* Runs the parser over a buffer (data != NULL) or a file descriptor. */
static int ingest_run(const char *data, size_t len, int fd, const ingest_options *o, ev_set *out,
                      ingest_stats *stats, err_t *e) {
    memset(stats, 0, sizeof *stats);
    unsigned char delim = (unsigned char)o->delimiter, quote = (unsigned char)o->quote;
    /* quote '\0' never occurs in accepted input, so it turns quoting off. */
    if (delim == '\0' || delim == '\n' || delim == '\r' || delim == quote || quote == '\n' ||
        quote == '\r')
        return err_set(e, ERR_INVALID,
                       "ingest: the delimiter must differ from the quote and "
                       "be neither a line break nor NUL");
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return err_set(e, ERR_NOMEM, "ingest: out of memory");
    csv_set_delim(&p, delim);
    csv_set_quote(&p, quote);

    ingest_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.out = out;
    c.st = stats;
    c.e = e;
    c.line = 1;
    c.in_header = true;
    c.now = o->now ? o->now : (int64_t)time(NULL);

    int rc = ERR_OK;
    char *buf = NULL;
    if (data) {
        c.total_bytes = len;
        rc = ingest_feed(&c, &p, data, len);
    } else {
        struct stat sb;
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) c.total_bytes = (uint64_t)sb.st_size;
        buf = malloc(INGEST_READ_CHUNK);
        if (!buf) rc = err_set(e, ERR_NOMEM, "ingest: out of memory");
        while (rc == ERR_OK) {
            ssize_t n = read(fd, buf, INGEST_READ_CHUNK);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                rc = err_set(e, ERR_IO, "read: %s", strerror(errno));
                break;
            }
            if (n == 0) break;
            rc = ingest_feed(&c, &p, buf, (size_t)n);
        }
    }
    if (rc == ERR_OK) {
        if (csv_fini(&p, on_field, on_record, &c) != 0) {
            /* Without a complete field the record's start is unknown; it is
             * the next non-blank line after the last record. */
            rc = err_set(e, ERR_FORMAT, "%s %llu: a quoted field is never closed: not CSV",
                         c.field ? "line" : "after line",
                         (unsigned long long)(c.field ? c.rec_line : c.end_line));
        } else if (c.err) {
            rc = c.err;
        } else if (c.in_header) {
            rc = err_set(e, ERR_FORMAT, "empty input: no header row");
        }
    }
    csv_free(&p);
    free(buf);
    free(c.hdr);
    free(c.col_role);
    free(c.row);
    return rc;
}

int ingest_csv_buffer(const char *data, size_t len, const ingest_options *o, ev_set *out,
                      ingest_stats *stats, err_t *e) {
    /* A non-NULL pointer marks buffer mode even for an empty buffer. */
    return ingest_run(data ? data : "", len, -1, o, out, stats, e);
}

int ingest_csv_file(const char *path, const ingest_options *o, ev_set *out, ingest_stats *stats,
                    err_t *e) {
    bool is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        memset(stats, 0, sizeof *stats);
        return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (!is_stdin) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = ingest_run(NULL, 0, fd, o, out, stats, e);
    if (rc && e) err_wrap(e, "%s", is_stdin ? "stdin" : path);
    if (!is_stdin) close(fd);
    return rc;
}

void ingest_print_summary(FILE *f, const char *path, const ingest_stats *s) {
    uint64_t skipped = 0;
    for (int r = 0; r < SKIP_REASONS; r++)
        skipped += s->skipped[r];
    fprintf(f, "import: %s: %llu rows, %llu accepted, %llu skipped", path,
            (unsigned long long)s->rows, (unsigned long long)s->accepted,
            (unsigned long long)skipped);
    const char *sep = " (";
    for (int r = 0; r < SKIP_REASONS; r++) {
        if (!s->skipped[r]) continue;
        fprintf(f, "%s%s %llu [line%s", sep, ingest_skip_name(r), (unsigned long long)s->skipped[r],
                s->skipped[r] > 1 ? "s" : "");
        for (int k = 0; k < INGEST_FIRST_LINES && s->first_lines[r][k]; k++)
            fprintf(f, "%s %llu", k ? "," : "", (unsigned long long)s->first_lines[r][k]);
        fputs(s->skipped[r] > INGEST_FIRST_LINES ? ", ...]" : "]", f);
        sep = ", ";
    }
    fputs(skipped ? ")\n" : "\n", f);
}
