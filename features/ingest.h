/* ingest: reads purchase histories from CSV (RFC 4180, via libcsv) into an
 * ev_set.
 *
 * The canonical file has a header row with user_id,item_id,timestamp and
 * optionally quantity and price; real exports are mapped with column names
 * (ingest_options). Rows that cannot be used are skipped and counted by
 * reason, with the first few line numbers of each reason kept for the
 * summary. A file that is not CSV at all (no header with the needed columns,
 * unbalanced quotes, binary data) is an error, not an empty history. */
#ifndef RECD_INGEST_H
#define RECD_INGEST_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "events.h"

#define INGEST_MAX_ID_LEN 256 /* bytes, as the service accepts */
#define INGEST_FIRST_LINES 5  /* line numbers kept per skip reason */

/* The timestamps a row may have. The future bound is the one RecordEvents
 * applies (a day of clock skew): one row dated 2100 would otherwise become
 * the model's data_until, and no live event would ever be folded in again.
 * The floor, 1970-01-02T00:00:00Z, refuses what a missing date turns into -
 * 0 (1970-01-01 in any time zone, UTC-14 to UTC+14), year 0, 1900 - while
 * accepting every real date: old rows only weigh less, they switch nothing
 * off, so a later floor would reject real history and protect nothing. */
#define INGEST_MAX_AHEAD_S 86400 /* seconds after the import time */
#define INGEST_MIN_TS 86400      /* 1970-01-02T00:00:00Z */

typedef struct ingest_options {
    const char *user_col; /* header names; defaults user_id, item_id, timestamp */
    const char *item_col;
    const char *time_col;
    const char *time_format;  /* strptime format; NULL = unix seconds or ISO 8601 */
    const char *quantity_col; /* NULL = column "quantity" if present, else every row 1 */
    const char *price_col;
    const char *category_col;
    /* NULL = column "category" if present, else no categories */ /* NULL = column "price" if
                                                                     present, else no price */
    char delimiter;                                               /* default ',' */
    char quote;                                                   /* default '"' */
    /* Import time (unix s) for the future bound: rows later than now +
     * INGEST_MAX_AHEAD_S are skipped. 0 = the clock when the import starts. */
    int64_t now;
    /* Called every few hundred thousand rows with the rows read so far (for
     * a progress line); may be NULL. */
    void (*progress)(void *ctx, uint64_t rows, uint64_t bytes, uint64_t total_bytes);
    void *progress_ctx;
} ingest_options;

/* Fills o with the defaults above. */
void ingest_options_init(ingest_options *o);

enum ingest_skip_reason {
    SKIP_MISSING_USER, /* empty user id */
    SKIP_MISSING_ITEM, /* empty item id */
    SKIP_BAD_TIME,     /* timestamp does not parse */
    SKIP_FUTURE_TIME,  /* timestamp after the import time + INGEST_MAX_AHEAD_S */
    SKIP_OLD_TIME,     /* timestamp before INGEST_MIN_TS (a placeholder, not a date) */
    SKIP_BAD_QUANTITY, /* quantity not a number, or beyond a float's range */
    SKIP_NEGATIVE_QTY, /* quantity < 0 (a return) or 0 */
    SKIP_BAD_PRICE,    /* price not a number, negative or beyond a float's range */
    SKIP_ID_TOO_LONG,  /* id over INGEST_MAX_ID_LEN bytes */
    SKIP_BAD_UTF8,     /* id not valid UTF-8 */
    SKIP_SHORT_ROW,    /* fewer fields than the mapped columns need */
    SKIP_REASONS
};

typedef struct ingest_stats {
    uint64_t rows;     /* data rows read (header excluded) */
    uint64_t accepted; /* rows that became events */
    uint64_t skipped[SKIP_REASONS];
    uint64_t first_lines[SKIP_REASONS][INGEST_FIRST_LINES]; /* 1-based line numbers, 0 = unused */
} ingest_stats;

/* Short name of a skip reason ("missing user", ...). */
const char *ingest_skip_name(int reason);

/* Reads path (or stdin when path is "-") and appends its usable rows to out,
 * which the caller initialized with ev_set_init. Fills *stats. Returns ERR_OK,
 * ERR_IO (cannot open/read), ERR_FORMAT (not CSV, missing column: the message
 * names the line; also a header naming a mapped column twice), ERR_NOMEM.
 * A UTF-8 byte order mark before the header is dropped. */
int ingest_csv_file(const char *path, const ingest_options *o, ev_set *out, ingest_stats *stats,
                    err_t *e);

/* Same, from memory (tests, fuzzing). */
int ingest_csv_buffer(const char *data, size_t len, const ingest_options *o, ev_set *out,
                      ingest_stats *stats, err_t *e);

/* Parses a timestamp: with format NULL, unix seconds (digits, optional
 * fraction) or ISO 8601 `YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z|+HH:MM|-HHMM]`
 * (UTC when no offset); otherwise strptime(format), taken as UTC. s need not
 * be NUL-terminated. Returns ERR_OK or ERR_INVALID. */
int ingest_parse_time(const char *s, size_t len, const char *format, int64_t *out);

/* Prints the import summary (rows, accepted, skipped by reason with their
 * first line numbers) to f. */
void ingest_print_summary(FILE *f, const char *path, const ingest_stats *s);

#endif
