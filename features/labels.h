/* labels: reads a catalogue - items or members with their attributes - from
 * CSV (RFC 4180, via libcsv) into a table of rows, each with a set of
 * labels: the strings the attribute-to-factor mapping (training/attrmap.h)
 * learns from and a server looks up at request time.
 *
 * Where the labels come from (labels_options names the columns):
 *   category column   one label "<column>:<value>", and the row's category
 *   label columns     each value becomes "<column>:<value>"; a value may hold
 *                     several separated by '|' ("Action|Comedy"), each one
 *                     a label; spaces around a part are trimmed
 *   text column       each word becomes "word:<w>": words are runs of ASCII
 *                     letters and digits and of non-ASCII bytes (UTF-8
 *                     letters), ASCII lower-cased; words of one byte, the
 *                     English stop words of labels.c and words in fewer
 *                     than LABELS_MIN_WORD_ROWS rows of the file are dropped
 *   price column      the price, and the label "price:2^<floor(log2 p)>"
 *                     ("price:0" for 0): cheap and dear items apart
 *   time column       the publication time (unix s), no label
 * The limits (LABELS_MAX_*) are enforced as documented beside each. Rows
 * that cannot be used are skipped and counted by reason with the first line
 * numbers of each, as features/ingest.h does for purchases; the first row of
 * an id wins, later rows of it are counted as duplicates (a purchase export
 * used as a catalogue has one row per purchase).
 *
 * Thread-safety: none needed; a table is not changed after it is read. */
#ifndef RECD_LABELS_H
#define RECD_LABELS_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "idmap.h"

#define LABELS_MAX_ID_LEN 256 /* bytes of an id, as the purchase importer */
/* Bytes of one label, its "<column>:" prefix included: a longer value makes
 * its row a LABEL_TOO_LONG skip; a longer word is dropped alone. */
#define LABELS_MAX_LEN 128
/* Labels of one row from its category, label and price columns: a row with
 * more is a TOO_MANY_LABELS skip (an upload of 10,000 tags is not a product). */
#define LABELS_MAX_PER_ROW 64
/* Distinct words of a row's text kept, the first ones; more are dropped. */
#define LABELS_MAX_WORDS 32
#define LABELS_MIN_WORD_ROWS 2 /* a word in fewer rows says nothing about others */
/* Distinct labels of one table: the most frequent are kept (ties: first
 * seen), the others dropped from every row. Bounds the mapping's
 * LABELS_MAX_DISTINCT^2 normal equations (128 MB in double). */
#define LABELS_MAX_DISTINCT 4096
#define LABELS_MAX_LABEL_COLS 32 /* columns in --item-label-cols / --user-label-cols */
#define LABELS_FIRST_LINES 5     /* line numbers kept per skip reason */

/* The skip reasons, in the order a row is checked: XX(NAME, text). */
#define LABELS_SKIP_MAP(XX)                                                                        \
    XX(SHORT_ROW, "short row")                                                                     \
    XX(MISSING_ID, "missing id")                                                                   \
    XX(ID_TOO_LONG, "id too long")                                                                 \
    XX(BAD_UTF8, "not UTF-8")                                                                      \
    XX(DUPLICATE_ID, "duplicate id (first row kept)")                                              \
    XX(LABEL_TOO_LONG, "label too long")                                                           \
    XX(TOO_MANY_LABELS, "too many labels")                                                         \
    XX(BAD_PRICE, "bad price")                                                                     \
    XX(BAD_TIME, "bad time")

enum labels_skip {
#define LABELS_SKIP_ENUM(name, text) LABELS_SKIP_##name,
    LABELS_SKIP_MAP(LABELS_SKIP_ENUM)
#undef LABELS_SKIP_ENUM
        LABELS_SKIPS
};

typedef struct labels_options {
    const char *id_col;       /* header name of the id; default "item_id" */
    const char *category_col; /* NULL = none (also for all the columns below) */
    const char *label_cols;   /* comma-separated header names */
    const char *text_col;
    const char *price_col;
    const char *time_col;
    const char *time_format; /* strptime format; NULL = unix seconds or ISO 8601 */
    char delimiter;          /* default ',' */
    char quote;              /* default '"' */
} labels_options;

/* Fills o with the defaults above. */
void labels_options_init(labels_options *o);

typedef struct labels_stats {
    uint64_t rows;     /* data rows read (header excluded) */
    uint64_t accepted; /* rows in the table */
    uint64_t skipped[LABELS_SKIPS];
    uint64_t first_lines[LABELS_SKIPS][LABELS_FIRST_LINES]; /* 1-based, 0 = unused */
    uint64_t words_rare;     /* distinct words dropped as in < LABELS_MIN_WORD_ROWS rows */
    uint64_t words_cut;      /* words dropped past LABELS_MAX_WORDS or LABELS_MAX_LEN */
    uint64_t labels_dropped; /* distinct labels dropped past LABELS_MAX_DISTINCT */
} labels_stats;

/* A catalogue as read. Owns everything; labels_table_free. */
typedef struct labels_table {
    idmap *ids;         /* row ids; row r has index r */
    idmap *labels;      /* the distinct labels kept */
    uint64_t *indptr;   /* n_rows + 1: row r's labels are index[indptr[r] .. indptr[r + 1]) */
    uint32_t *index;    /* label indexes, ascending and distinct within a row */
    idmap *categories;  /* category values (empty without a category column) */
    uint32_t *category; /* n_rows, UINT32_MAX = none; NULL without a category column */
    float *price;       /* n_rows, NAN = unknown; NULL without a price column */
    int64_t *published; /* n_rows, 0 = unknown; NULL without a time column */
    /* The category column's name, the prefix of its labels ("" without). */
    char category_column[LABELS_MAX_LEN];
} labels_table;

/* Reads path into *out (initialized here; the caller frees it with
 * labels_table_free, also after an error) and fills *stats. Returns ERR_OK,
 * ERR_IO, ERR_FORMAT (not CSV, a named column missing from the header or
 * named twice, too many label columns), ERR_NOMEM. */
int labels_read_file(const char *path, const labels_options *o, labels_table *out,
                     labels_stats *stats, err_t *e);

/* Same, from memory (tests). */
int labels_read_buffer(const char *data, size_t len, const labels_options *o, labels_table *out,
                       labels_stats *stats, err_t *e);

void labels_table_free(labels_table *t);

/* Number of rows of t. */
uint32_t labels_rows(const labels_table *t);

/* Row r's label indexes (into t->labels); *n gets their count. */
const uint32_t *labels_row(const labels_table *t, uint32_t r, uint32_t *n);

/* An item as a storefront describes it at run time (UpsertItems): what a
 * row of a catalogue file says, in fields. Strings are NUL-terminated and
 * belong to whoever filled the struct. */
typedef struct labels_item {
    const char *id;
    char *const *categories;
    size_t n_categories;
    char *const *labels; /* whole labels, as a catalogue makes them: "genre:Comedy" */
    size_t n_labels;
    const char *title; /* "" = none; its words become "word:w" labels */
    double price;      /* >= 0, 0 = unknown (proto3's unset) */
    int64_t published; /* unix s, 0 = unknown */
} labels_item;

/* Applies n described items to t, a table read from a file or zeroed (then
 * it is made here; the caller frees it with labels_table_free either way):
 * an id t has gets its row replaced (a price or time of 0 keeps the row's),
 * a new one is appended. Labels as a file row would make them: the given
 * ones, "<category column>:c" for each category (t's column, or "category"
 * when t has none, which then becomes t's), the price band, and the title's
 * words that t already has as labels or that LABELS_MIN_WORD_ROWS of the
 * items' titles share; the first category is the row's. Labels past
 * LABELS_MAX_DISTINCT are dropped. Returns ERR_OK or ERR_NOMEM (t is then
 * still a valid table to free). */
int labels_table_upsert(labels_table *t, const labels_item *items, size_t n, err_t *e);

/* Calls fn(ctx, w, n) for each word of text s[0..len) as the text column
 * makes them, in order and repeats included: lower-cased ASCII, one-byte
 * words and stop words dropped (the rare-word rule needs a whole file and
 * the distinct-word cap a row: both are the caller's). w is not
 * NUL-terminated and valid during the call. Returns how many words were
 * dropped as too long for a label. For a server to read the title of an
 * item it has never seen exactly as training read the catalogue. */
size_t labels_text_words(const char *s, size_t len, void (*fn)(void *ctx, const char *w, size_t n),
                         void *ctx);

/* The price label of price >= 0 ("price:2^3" for 8 <= p < 16, "price:0")
 * into buf (size bytes, NUL-terminated); returns its length as snprintf. */
int labels_price_band(double price, char *buf, size_t size);

/* The text of a skip reason. */
const char *labels_skip_name(int reason);

/* Prints the summary (rows, accepted, skipped by reason with their first
 * line numbers, labels, words dropped) to f, naming what as the kind of
 * rows ("items", "users"). */
void labels_print_summary(FILE *f, const char *path, const char *what, const labels_table *t,
                          const labels_stats *s);

#endif
