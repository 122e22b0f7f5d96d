#include "labels.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest.h"
#include "utf8.h"

/* Roles of the mapped columns; label columns are ROLE_LABEL + k. */
enum { ROLE_ID, ROLE_CATEGORY, ROLE_TEXT, ROLE_PRICE, ROLE_TIME, ROLE_LABEL };
#define ROLES (ROLE_LABEL + LABELS_MAX_LABEL_COLS)

/* Common English function words: they occur in every kind of title and
 * description and tell nothing about taste. */
static const char *const stop_words[] = {
    "a",    "an",   "and",  "are",   "as",    "at",   "be",    "by",   "for",   "from",
    "in",   "into", "is",   "it",    "its",   "of",   "on",    "or",   "that",  "the",
    "this", "to",   "with", "was",   "were",  "will", "not",   "no",   "but",   "if",
    "so",   "than", "then", "there", "these", "they", "those", "we",   "you",   "your",
    "our",  "his",  "her",  "he",    "she",   "him",  "who",   "what", "which", "all"};

static const char *const skip_names[LABELS_SKIPS] = {
#define LABELS_SKIP_NAME(name, text) text,
    LABELS_SKIP_MAP(LABELS_SKIP_NAME)
#undef LABELS_SKIP_NAME
};

const char *labels_skip_name(int reason) {
    return reason >= 0 && reason < LABELS_SKIPS ? skip_names[reason] : "unknown";
}

void labels_options_init(labels_options *o) {
    memset(o, 0, sizeof *o);
    o->id_col = "item_id";
    o->delimiter = ',';
    o->quote = '"';
}

/* State of one read. Owns names, role, fields, off, len, tmp_*, counts. */
typedef struct lab_ctx {
    const labels_options *o;
    labels_table *t;
    labels_stats *st;
    err_t *e;
    int err;
    uint64_t line, rec_line, end_line;
    size_t field;
    bool in_header;
    const char *want[ROLES]; /* header name per role, NULL = not mapped */
    size_t n_roles;
    signed char *role; /* per header column: role or -1 */
    size_t n_cols, need_cols;
    bool has[ROLES];
    char *hdr;
    size_t hdr_len, hdr_cap;
    /* Fields of the current row, by role. */
    char *row;
    size_t row_len, row_cap;
    size_t off[ROLES], len[ROLES];
    /* Labels of the rows read so far, as indexes into all (every label
     * seen); remapped to the kept ones at the end. */
    idmap *all;
    uint64_t *tmp_indptr;
    uint32_t *tmp_index;
    size_t n_tmp, cap_tmp, cap_rows;
    uint8_t *is_word; /* per label of all */
    size_t cap_word;
    /* Per row scalars, grown with the rows. */
    uint32_t *category;
    float *price;
    int64_t *published;
    /* The current row's labels (indexes into all) and words. */
    uint32_t cur[LABELS_MAX_PER_ROW + LABELS_MAX_WORDS];
    size_t n_cur;
    char buf[LABELS_MAX_LEN + 1];
} lab_ctx;

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return ERR_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return ERR_NOMEM;
    *p = q;
    *cap = c;
    return ERR_OK;
}

static int nomem(lab_ctx *c) {
    return c->err = err_set(c->e, ERR_NOMEM, "catalogue: out of memory");
}

/* ---- the header ----------------------------------------------------------- */

/* Splits o->label_cols into want[ROLE_LABEL...]; the names stay in a copy
 * owned by hdr_names (freed by the caller). */
static int lab_roles(lab_ctx *c, char **names) {
    c->want[ROLE_ID] = c->o->id_col ? c->o->id_col : "item_id";
    c->want[ROLE_CATEGORY] = c->o->category_col;
    c->want[ROLE_TEXT] = c->o->text_col;
    c->want[ROLE_PRICE] = c->o->price_col;
    c->want[ROLE_TIME] = c->o->time_col;
    c->n_roles = ROLE_LABEL;
    *names = NULL;
    if (!c->o->label_cols || !*c->o->label_cols) return ERR_OK;
    if (!(*names = strdup(c->o->label_cols))) return nomem(c);
    char *save = NULL;
    for (char *tok = strtok_r(*names, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (c->n_roles == ROLES)
            return c->err = err_set(c->e, ERR_FORMAT, "catalogue: more than %d label columns",
                                    LABELS_MAX_LABEL_COLS);
        c->want[c->n_roles++] = tok;
    }
    return ERR_OK;
}

static int lab_header(lab_ctx *c) {
    if (!(c->role = malloc(c->n_cols ? c->n_cols : 1))) return nomem(c);
    memset(c->role, -1, c->n_cols);
    for (size_t r = 0; r < c->n_roles; r++) {
        if (!c->want[r]) continue;
        const char *name = c->hdr;
        for (size_t col = 0; col < c->n_cols; col++, name += strlen(name) + 1) {
            if (strcmp(name, c->want[r]) != 0) continue;
            if (c->has[r] || c->role[col] >= 0)
                return c->err = err_set(c->e, ERR_FORMAT,
                                        "line %llu: column \"%s\" is named twice (in the header or "
                                        "by two flags)",
                                        (unsigned long long)c->rec_line, c->want[r]);
            c->role[col] = (signed char)r;
            c->has[r] = true;
            if (col + 1 > c->need_cols) c->need_cols = col + 1;
        }
        if (!c->has[r])
            return c->err = err_set(c->e, ERR_FORMAT, "line %llu: no column \"%s\" in the header",
                                    (unsigned long long)c->rec_line, c->want[r]);
    }
    return ERR_OK;
}

/* ---- labels of a row ------------------------------------------------------ */

/* Adds the label prefix:value (value[0..len)) to the current row, once.
 * Returns -1 when added or already there, else the skip reason. */
static int lab_add(lab_ctx *c, const char *prefix, const char *v, size_t len, bool word) {
    size_t pl = strlen(prefix);
    if (pl + 1 + len > LABELS_MAX_LEN) return LABELS_SKIP_LABEL_TOO_LONG;
    memcpy(c->buf, prefix, pl);
    c->buf[pl] = ':';
    memcpy(c->buf + pl + 1, v, len);
    uint32_t idx;
    int rc = idmap_intern(c->all, c->buf, pl + 1 + len, &idx);
    if (rc) {
        c->err = err_set(c->e, rc, "catalogue: too many labels or out of memory");
        return -1;
    }
    if (grow((void **)&c->is_word, &c->cap_word, (size_t)idx + 1, 1)) {
        nomem(c);
        return -1;
    }
    if (idx + 1 == idmap_size(c->all)) c->is_word[idx] = word;
    for (size_t k = 0; k < c->n_cur; k++)
        if (c->cur[k] == idx) return -1;
    size_t cap = word ? sizeof c->cur / sizeof c->cur[0] : LABELS_MAX_PER_ROW;
    if (c->n_cur >= cap) return word ? -1 : LABELS_SKIP_TOO_MANY_LABELS;
    c->cur[c->n_cur++] = idx;
    return -1;
}

static bool is_stop(const char *w, size_t len) {
    for (size_t k = 0; k < sizeof stop_words / sizeof stop_words[0]; k++)
        if (strlen(stop_words[k]) == len && memcmp(stop_words[k], w, len) == 0) return true;
    return false;
}

static bool word_byte(unsigned char b) {
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b >= 0x80;
}

size_t labels_text_words(const char *s, size_t len, void (*fn)(void *ctx, const char *w, size_t n),
                         void *ctx) {
    size_t too_long = 0;
    char w[LABELS_MAX_LEN];
    for (size_t i = 0; i < len;) {
        if (!word_byte((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && word_byte((unsigned char)s[j]))
            j++;
        size_t n = j - i;
        if (n > LABELS_MAX_LEN - 5) {
            too_long++;
        } else if (n > 1) {
            for (size_t k = 0; k < n; k++) {
                char ch = s[i + k];
                w[k] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
            }
            if (!is_stop(w, n)) fn(ctx, w, n);
        }
        i = j;
    }
    return too_long;
}

int labels_price_band(double price, char *buf, size_t size) {
    return price > 0 ? snprintf(buf, size, "price:2^%d", (int)floor(log2(price)))
                     : snprintf(buf, size, "price:0");
}

/* One word of a row's text: a "word:" label, while the row has fewer than
 * LABELS_MAX_WORDS distinct words. */
typedef struct lab_words_ctx {
    lab_ctx *c;
    size_t words;
} lab_words_ctx;

static void lab_word(void *ctx, const char *w, size_t n) {
    lab_words_ctx *wc = ctx;
    if (wc->c->err) return;
    if (wc->words == LABELS_MAX_WORDS) {
        wc->c->st->words_cut++;
        return;
    }
    size_t before = wc->c->n_cur;
    lab_add(wc->c, "word", w, n, true);
    wc->words += wc->c->n_cur > before;
}

/* The words of text as "word:" labels, the first LABELS_MAX_WORDS distinct. */
static void lab_words(lab_ctx *c, const char *s, size_t len) {
    lab_words_ctx wc = {c, 0};
    c->st->words_cut += labels_text_words(s, len, lab_word, &wc);
}

/* Adds the '|'-separated parts of a label column's value. */
static int lab_multi(lab_ctx *c, const char *col, const char *v, size_t len) {
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && v[j] != '|')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b > a) {
            int r = lab_add(c, col, v + a, b - a, false);
            if (r >= 0 || c->err) return r;
        }
        i = j + 1;
    }
    return -1;
}

static bool lab_number(const char *s, size_t len, double *out) {
    if (len == 0) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s + len || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

#define F(r) (c->row + c->off[r])

/* Checks and collects the current row's labels into cur; returns the skip
 * reason or -1. Fills the scalars. */
static int lab_check(lab_ctx *c, double *price, int64_t *ts) {
    if (c->field < c->need_cols) return LABELS_SKIP_SHORT_ROW;
    size_t idl = c->len[ROLE_ID];
    if (idl == 0) return LABELS_SKIP_MISSING_ID;
    if (idl > LABELS_MAX_ID_LEN) return LABELS_SKIP_ID_TOO_LONG;
    for (size_t r = 0; r < c->n_roles; r++)
        if (c->has[r] && !utf8_valid(F(r), c->len[r])) return LABELS_SKIP_BAD_UTF8;
    uint32_t dup;
    if (idmap_find(c->t->ids, F(ROLE_ID), idl, &dup) == ERR_OK) return LABELS_SKIP_DUPLICATE_ID;
    c->n_cur = 0;
    int r;
    if (c->has[ROLE_CATEGORY] && c->len[ROLE_CATEGORY] > 0 &&
        ((r = lab_add(c, c->want[ROLE_CATEGORY], F(ROLE_CATEGORY), c->len[ROLE_CATEGORY], false)) >=
             0 ||
         c->err))
        return r;
    for (size_t k = ROLE_LABEL; k < c->n_roles; k++)
        if ((r = lab_multi(c, c->want[k], F(k), c->len[k])) >= 0 || c->err) return r;
    *price = NAN;
    if (c->has[ROLE_PRICE] && c->len[ROLE_PRICE] > 0) {
        if (!lab_number(F(ROLE_PRICE), c->len[ROLE_PRICE], price) || *price < 0 || *price > 1e15)
            return LABELS_SKIP_BAD_PRICE;
        char band[32];
        int n = labels_price_band(*price, band, sizeof band);
        /* "price:" is lab_add's prefix. */
        if ((r = lab_add(c, "price", band + 6, (size_t)n - 6, false)) >= 0 || c->err) return r;
    }
    *ts = 0;
    if (c->has[ROLE_TIME] && c->len[ROLE_TIME] > 0 &&
        ingest_parse_time(F(ROLE_TIME), c->len[ROLE_TIME], c->o->time_format, ts))
        return LABELS_SKIP_BAD_TIME;
    if (c->has[ROLE_TEXT]) lab_words(c, F(ROLE_TEXT), c->len[ROLE_TEXT]);
    return -1;
}

static void lab_row(lab_ctx *c) {
    double price = NAN;
    int64_t ts = 0;
    c->st->rows++;
    int reason = lab_check(c, &price, &ts);
    if (c->err) return;
    if (reason >= 0) {
        uint64_t k = c->st->skipped[reason]++;
        if (k < LABELS_FIRST_LINES) c->st->first_lines[reason][k] = c->rec_line;
        return;
    }
    uint32_t row;
    if (idmap_intern(c->t->ids, F(ROLE_ID), c->len[ROLE_ID], &row)) {
        nomem(c);
        return;
    }
    /* The four arrays grow alike (one capacity, the same need). */
    size_t n = (size_t)row + 1, cap = c->cap_rows, cap2 = cap, cap3 = cap, cap4 = cap;
    if (grow((void **)&c->tmp_indptr, &cap, n + 1, sizeof *c->tmp_indptr) ||
        grow((void **)&c->category, &cap2, n + 1, sizeof *c->category) ||
        grow((void **)&c->price, &cap3, n + 1, sizeof *c->price) ||
        grow((void **)&c->published, &cap4, n + 1, sizeof *c->published) ||
        grow((void **)&c->tmp_index, &c->cap_tmp, c->n_tmp + c->n_cur, sizeof *c->tmp_index)) {
        nomem(c);
        return;
    }
    c->cap_rows = cap;
    c->tmp_indptr[row] = c->n_tmp;
    memcpy(c->tmp_index + c->n_tmp, c->cur, c->n_cur * sizeof *c->cur);
    c->n_tmp += c->n_cur;
    c->tmp_indptr[row + 1] = c->n_tmp;
    c->category[row] = UINT32_MAX;
    if (c->has[ROLE_CATEGORY] && c->len[ROLE_CATEGORY] > 0 &&
        idmap_intern(c->t->categories, F(ROLE_CATEGORY), c->len[ROLE_CATEGORY],
                     &c->category[row])) {
        nomem(c);
        return;
    }
    c->price[row] = (float)price;
    c->published[row] = ts;
    c->st->accepted++;
}

/* ---- libcsv --------------------------------------------------------------- */

static void on_field(void *data, size_t len, void *arg) {
    lab_ctx *c = arg;
    if (c->err) return;
    if (c->field == 0) {
        uint64_t nl = 0;
        for (const char *p = data, *end = p + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
            nl++;
        c->rec_line = c->line - nl;
    }
    size_t col = c->field++;
    if (c->in_header) {
        if (grow((void **)&c->hdr, &c->hdr_cap, c->hdr_len + len + 1, 1)) {
            nomem(c);
            return;
        }
        memcpy(c->hdr + c->hdr_len, data, len);
        c->hdr_len += len;
        c->hdr[c->hdr_len++] = '\0';
        c->n_cols++;
        return;
    }
    if (col >= c->n_cols || c->role[col] < 0) return;
    int r = c->role[col];
    if (grow((void **)&c->row, &c->row_cap, c->row_len + len + 1, 1)) {
        nomem(c);
        return;
    }
    memcpy(c->row + c->row_len, data, len);
    c->off[r] = c->row_len;
    c->len[r] = len;
    c->row_len += len;
    c->row[c->row_len++] = '\0';
}

static void on_record(int term, void *arg) {
    (void)term;
    lab_ctx *c = arg;
    if (c->err) return;
    if (c->in_header) {
        c->in_header = false;
        lab_header(c);
    } else {
        lab_row(c);
    }
    c->field = 0;
    c->row_len = 0;
    memset(c->len, 0, sizeof c->len);
    c->end_line = c->line;
}

/* Feeds one physical line at a time so that c->line is right. */
static int lab_feed(lab_ctx *c, struct csv_parser *p, const char *buf, size_t len) {
    const char *end = buf + len;
    if (memchr(buf, '\0', len))
        return err_set(c->e, ERR_FORMAT, "a NUL byte: binary data, not CSV");
    while (buf < end) {
        const char *nl = memchr(buf, '\n', (size_t)(end - buf));
        size_t n = nl ? (size_t)(nl - buf) + 1 : (size_t)(end - buf);
        if (csv_parse(p, buf, n, on_field, on_record, c) != n)
            return err_set(c->e, csv_error(p) == CSV_EPARSE ? ERR_FORMAT : ERR_NOMEM,
                           "line %llu: %s", (unsigned long long)c->line,
                           csv_error(p) == CSV_EPARSE ? "malformed quoting: not CSV"
                                                      : csv_strerror(csv_error(p)));
        if (c->err) return c->err;
        if (nl) c->line++;
        buf += n;
    }
    return ERR_OK;
}

/* ---- the end: rare words, the distinct-label bound, the table ------------- */

typedef struct lab_rank {
    uint64_t rows;
    uint32_t idx;
} lab_rank;

static int rank_cmp(const void *a, const void *b) {
    const lab_rank *x = a, *y = b;
    if (x->rows != y->rows) return x->rows > y->rows ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int u32_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int lab_finish(lab_ctx *c) {
    labels_table *t = c->t;
    uint32_t n_rows = idmap_size(t->ids), n_all = idmap_size(c->all);
    lab_rank *rank = calloc(n_all ? n_all : 1, sizeof *rank);
    uint32_t *keep = malloc((n_all ? n_all : 1) * sizeof *keep);
    t->indptr = calloc((size_t)n_rows + 1, sizeof *t->indptr);
    t->index = malloc((c->n_tmp ? c->n_tmp : 1) * sizeof *t->index);
    if (!rank || !keep || !t->indptr || !t->index) {
        free(rank);
        free(keep);
        return nomem(c);
    }
    for (uint32_t l = 0; l < n_all; l++)
        rank[l].idx = l;
    for (size_t k = 0; k < c->n_tmp; k++)
        rank[c->tmp_index[k]].rows++;
    for (uint32_t l = 0; l < n_all; l++)
        if (c->is_word[l] && rank[l].rows < LABELS_MIN_WORD_ROWS) {
            rank[l].rows = 0;
            c->st->words_rare++;
        }
    qsort(rank, n_all, sizeof *rank, rank_cmp);
    uint32_t kept = 0;
    for (uint32_t l = 0; l < n_all; l++)
        keep[l] = UINT32_MAX;
    for (uint32_t q = 0; q < n_all && rank[q].rows > 0; q++) {
        if (kept == LABELS_MAX_DISTINCT) {
            c->st->labels_dropped++;
            continue;
        }
        keep[rank[q].idx] = kept++;
    }
    /* Kept labels in their order of first appearance: stable numbering. */
    uint32_t next = 0;
    for (uint32_t l = 0; l < n_all; l++)
        if (keep[l] != UINT32_MAX) {
            size_t len;
            const char *s = idmap_key(c->all, l, &len);
            if (idmap_intern(t->labels, s, len, &keep[l])) {
                free(rank);
                free(keep);
                return nomem(c);
            }
            next++;
        }
    (void)next;
    size_t n = 0;
    for (uint32_t r = 0; r < n_rows; r++) {
        size_t start = n;
        for (uint64_t k = c->tmp_indptr[r]; k < c->tmp_indptr[r + 1]; k++)
            if (keep[c->tmp_index[k]] != UINT32_MAX) t->index[n++] = keep[c->tmp_index[k]];
        qsort(t->index + start, n - start, sizeof *t->index, u32_cmp);
        t->indptr[r + 1] = n;
    }
    free(rank);
    free(keep);
    if (c->has[ROLE_CATEGORY]) {
        t->category = c->category, c->category = NULL;
        snprintf(t->category_column, sizeof t->category_column, "%s", c->want[ROLE_CATEGORY]);
    }
    if (c->has[ROLE_PRICE]) t->price = c->price, c->price = NULL;
    if (c->has[ROLE_TIME]) t->published = c->published, c->published = NULL;
    return ERR_OK;
}

static int lab_run(const char *data, size_t len, const labels_options *o, labels_table *t,
                   labels_stats *st, err_t *e) {
    memset(t, 0, sizeof *t);
    memset(st, 0, sizeof *st);
    lab_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.t = t;
    c.st = st;
    c.e = e;
    c.line = 1;
    c.in_header = true;
    char *names = NULL;
    t->ids = idmap_new();
    t->labels = idmap_new();
    t->categories = idmap_new();
    c.all = idmap_new();
    if (!t->ids || !t->labels || !t->categories || !c.all) {
        idmap_free(c.all);
        return err_set(e, ERR_NOMEM, "catalogue: out of memory");
    }
    struct csv_parser p;
    int rc = lab_roles(&c, &names);
    if (!rc && csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        rc = err_set(e, ERR_NOMEM, "catalogue: out of memory");
    if (!rc) {
        csv_set_delim(&p, (unsigned char)o->delimiter);
        csv_set_quote(&p, (unsigned char)o->quote);
        /* A UTF-8 byte order mark before the header is no part of it. */
        if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) data += 3, len -= 3;
        rc = lab_feed(&c, &p, data, len);
        if (!rc && csv_fini(&p, on_field, on_record, &c) != 0)
            rc = err_set(e, ERR_FORMAT, "after line %llu: a quoted field is never closed",
                         (unsigned long long)c.end_line);
        if (!rc && c.err) rc = c.err;
        if (!rc && c.in_header) rc = err_set(e, ERR_FORMAT, "empty input: no header row");
        if (!rc) rc = lab_finish(&c);
        csv_free(&p);
    }
    free(names);
    free(c.role);
    free(c.hdr);
    free(c.row);
    idmap_free(c.all);
    free(c.tmp_indptr);
    free(c.tmp_index);
    free(c.is_word);
    free(c.category);
    free(c.price);
    free(c.published);
    return rc;
}

int labels_read_buffer(const char *data, size_t len, const labels_options *o, labels_table *out,
                       labels_stats *stats, err_t *e) {
    return lab_run(data ? data : "", len, o, out, stats, e);
}

int labels_read_file(const char *path, const labels_options *o, labels_table *out,
                     labels_stats *stats, err_t *e) {
    memset(out, 0, sizeof *out);
    memset(stats, 0, sizeof *stats);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return rc;
    }
    /* Catalogues are read whole: they are small beside purchase histories. */
    size_t size = (size_t)sb.st_size, got = 0;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return err_set(e, ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    int rc = lab_run(buf, got, o, out, stats, e);
    free(buf);
    if (rc) err_wrap(e, "%s", path);
    return rc;
}

void labels_table_free(labels_table *t) {
    idmap_free(t->ids);
    idmap_free(t->labels);
    idmap_free(t->categories);
    free(t->indptr);
    free(t->index);
    free(t->category);
    free(t->price);
    free(t->published);
    memset(t, 0, sizeof *t);
}

uint32_t labels_rows(const labels_table *t) {
    return t->ids ? idmap_size(t->ids) : 0;
}

const uint32_t *labels_row(const labels_table *t, uint32_t r, uint32_t *n) {
    *n = (uint32_t)(t->indptr[r + 1] - t->indptr[r]);
    return t->index + t->indptr[r];
}

void labels_print_summary(FILE *f, const char *path, const char *what, const labels_table *t,
                          const labels_stats *s) {
    uint64_t skipped = 0;
    for (int r = 0; r < LABELS_SKIPS; r++)
        skipped += s->skipped[r];
    fprintf(f, "catalogue: %s: %llu rows, %llu %s, %llu skipped", path, (unsigned long long)s->rows,
            (unsigned long long)s->accepted, what, (unsigned long long)skipped);
    const char *sep = " (";
    for (int r = 0; r < LABELS_SKIPS; r++) {
        if (!s->skipped[r]) continue;
        fprintf(f, "%s%s %llu [line%s", sep, skip_names[r], (unsigned long long)s->skipped[r],
                s->skipped[r] > 1 ? "s" : "");
        for (int k = 0; k < LABELS_FIRST_LINES && s->first_lines[r][k]; k++)
            fprintf(f, "%s %llu", k ? "," : "", (unsigned long long)s->first_lines[r][k]);
        fputs(s->skipped[r] > LABELS_FIRST_LINES ? ", ...]" : "]", f);
        sep = ", ";
    }
    fprintf(f, "%s; %u labels, %llu label uses", skipped ? ")" : "",
            t->labels ? idmap_size(t->labels) : 0,
            (unsigned long long)(t->indptr ? t->indptr[labels_rows(t)] : 0));
    if (s->words_rare) fprintf(f, "; %llu rare words dropped", (unsigned long long)s->words_rare);
    if (s->words_cut)
        fprintf(f, "; %llu words past the per-row limits", (unsigned long long)s->words_cut);
    if (s->labels_dropped)
        fprintf(f, "; %llu labels past the %d most frequent dropped",
                (unsigned long long)s->labels_dropped, LABELS_MAX_DISTINCT);
    fputc('\n', f);
}

/* ---- items described at run time ------------------------------------------ */

/* The labels of one described item, interned into a table. */
typedef struct up_row {
    labels_table *t;
    const idmap *words; /* word labels shared by enough titles */
    const uint32_t *word_rows;
    uint32_t known; /* labels of t before the call: its words count as shared */
    uint32_t idx[LABELS_MAX_PER_ROW + LABELS_MAX_WORDS + 1];
    uint32_t n, n_words;
    int err;
} up_row;

static void up_add(up_row *r, const char *label, size_t len, int word) {
    uint32_t idx;
    int have = idmap_find(r->t->labels, label, len, &idx) == ERR_OK;
    if (word && !(have && idx < r->known)) {
        uint32_t w;
        if (idmap_find(r->words, label, len, &w) != ERR_OK ||
            r->word_rows[w] < LABELS_MIN_WORD_ROWS)
            return;
    }
    if (word && r->n_words == LABELS_MAX_WORDS) return;
    if (!have) {
        if (idmap_size(r->t->labels) == LABELS_MAX_DISTINCT) return;
        if (idmap_intern(r->t->labels, label, len, &idx)) {
            r->err = ERR_NOMEM;
            return;
        }
    }
    for (uint32_t k = 0; k < r->n; k++)
        if (r->idx[k] == idx) return;
    if (r->n == sizeof r->idx / sizeof r->idx[0]) return;
    r->idx[r->n++] = idx;
    r->n_words += word != 0;
}

static void up_word(void *ctx, const char *w, size_t n) {
    char label[LABELS_MAX_LEN];
    memcpy(label, "word:", 5);
    memcpy(label + 5, w, n);
    up_add(ctx, label, n + 5, 1);
}

/* Counts, per distinct word label, the titles that have it. */
typedef struct up_count {
    idmap *words;
    uint32_t *rows;
    size_t cap;
    uint32_t seen[LABELS_MAX_WORDS * 4], n_seen;
    int err;
} up_count;

static void up_count_word(void *ctx, const char *w, size_t n) {
    up_count *c = ctx;
    char label[LABELS_MAX_LEN];
    memcpy(label, "word:", 5);
    memcpy(label + 5, w, n);
    uint32_t idx;
    if (c->err || c->n_seen == sizeof c->seen / sizeof c->seen[0]) return;
    uint32_t before = idmap_size(c->words);
    if (idmap_intern(c->words, label, n + 5, &idx) ||
        grow((void **)&c->rows, &c->cap, (size_t)idx + 1, sizeof *c->rows)) {
        c->err = ERR_NOMEM;
        return;
    }
    if (idx == before) c->rows[idx] = 0; /* a word first seen */
    for (uint32_t k = 0; k < c->n_seen; k++)
        if (c->seen[k] == idx) return;
    c->seen[c->n_seen++] = idx;
    c->rows[idx]++;
}

int labels_table_upsert(labels_table *t, const labels_item *items, size_t n, err_t *e) {
    if (!t->ids) {
        memset(t, 0, sizeof *t);
        t->ids = idmap_new();
        t->labels = idmap_new();
        t->categories = idmap_new();
        t->indptr = calloc(1, sizeof *t->indptr);
        if (!t->ids || !t->labels || !t->categories || !t->indptr)
            return err_set(e, ERR_NOMEM, "catalogue: out of memory");
    }
    up_count cnt = {.words = idmap_new()};
    int rc = cnt.words ? ERR_OK : ERR_NOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        cnt.n_seen = 0;
        labels_text_words(items[i].title, strlen(items[i].title), up_count_word, &cnt);
        rc = cnt.err;
    }
    uint32_t n_old = idmap_size(t->ids), known = idmap_size(t->labels);
    uint32_t *which = NULL, *index = NULL;
    uint64_t *indptr = NULL;
    size_t cap_index = 0;
    if (!rc && !(which = malloc(((size_t)n_old + n + 1) * sizeof *which))) rc = ERR_NOMEM;
    for (size_t r = 0; !rc && r < (size_t)n_old + n; r++)
        which[r] = UINT32_MAX;
    int any_cat = t->category != NULL, any_price = t->price != NULL,
        any_time = t->published != NULL;
    for (size_t i = 0; !rc && i < n; i++) {
        uint32_t row;
        if (idmap_intern(t->ids, items[i].id, strlen(items[i].id), &row))
            rc = ERR_NOMEM;
        else
            which[row] = (uint32_t)i; /* the last description of an id wins */
        any_cat |= items[i].n_categories > 0;
        any_price |= items[i].price > 0;
        any_time |= items[i].published > 0;
    }
    uint32_t n_rows = idmap_size(t->ids);
    if (!rc && !(indptr = calloc((size_t)n_rows + 1, sizeof *indptr))) rc = ERR_NOMEM;
    if (!rc && any_cat && !t->category_column[0])
        snprintf(t->category_column, sizeof t->category_column, "category");
    /* The per-row arrays grow to n_rows, new rows unknown. */
    if (!rc && any_cat) {
        uint32_t *a = realloc(t->category, ((size_t)n_rows + 1) * sizeof *a);
        if (!a) rc = ERR_NOMEM;
        for (uint32_t r = t->category ? n_old : 0; a && r < n_rows; r++)
            a[r] = UINT32_MAX;
        if (a) t->category = a;
    }
    if (!rc && any_price) {
        float *a = realloc(t->price, ((size_t)n_rows + 1) * sizeof *a);
        if (!a) rc = ERR_NOMEM;
        for (uint32_t r = t->price ? n_old : 0; a && r < n_rows; r++)
            a[r] = NAN;
        if (a) t->price = a;
    }
    if (!rc && any_time) {
        int64_t *a = realloc(t->published, ((size_t)n_rows + 1) * sizeof *a);
        if (!a) rc = ERR_NOMEM;
        for (uint32_t r = t->published ? n_old : 0; a && r < n_rows; r++)
            a[r] = 0;
        if (a) t->published = a;
    }
    for (uint32_t r = 0; !rc && r < n_rows; r++) {
        up_row row = {.t = t, .words = cnt.words, .word_rows = cnt.rows, .known = known};
        const labels_item *it = which[r] == UINT32_MAX ? NULL : &items[which[r]];
        if (!it) {
            for (uint64_t k = t->indptr[r]; k < t->indptr[r + 1]; k++)
                row.idx[row.n++] = t->index[k];
        } else {
            char label[2 * LABELS_MAX_LEN + 2];
            for (size_t k = 0; k < it->n_labels && k < LABELS_MAX_PER_ROW; k++)
                up_add(&row, it->labels[k], strlen(it->labels[k]), 0);
            for (size_t k = 0; k < it->n_categories; k++) {
                int len =
                    snprintf(label, sizeof label, "%s:%s", t->category_column, it->categories[k]);
                if (len > 0 && (size_t)len <= LABELS_MAX_LEN) up_add(&row, label, (size_t)len, 0);
            }
            if (it->price > 0) {
                int len = labels_price_band(it->price, label, sizeof label);
                up_add(&row, label, (size_t)len, 0);
            }
            labels_text_words(it->title, strlen(it->title), up_word, &row);
            qsort(row.idx, row.n, sizeof *row.idx, u32_cmp);
            if (it->n_categories && idmap_intern(t->categories, it->categories[0],
                                                 strlen(it->categories[0]), &t->category[r]))
                row.err = ERR_NOMEM;
            if (it->price > 0) t->price[r] = (float)it->price;
            if (it->published > 0) t->published[r] = it->published;
        }
        if ((rc = row.err)) break;
        indptr[r + 1] = indptr[r] + row.n;
        if (grow((void **)&index, &cap_index, indptr[r + 1] ? indptr[r + 1] : 1, sizeof *index)) {
            rc = ERR_NOMEM;
            break;
        }
        memcpy(index + indptr[r], row.idx, row.n * sizeof *row.idx);
    }
    if (!rc) {
        free(t->indptr);
        free(t->index);
        t->indptr = indptr, indptr = NULL;
        t->index = index ? index : malloc(1), index = NULL;
        if (!t->index) rc = ERR_NOMEM;
    }
    free(indptr);
    free(index);
    free(which);
    free(cnt.rows);
    idmap_free(cnt.words);
    if (rc) return err_set(e, rc, "catalogue: out of memory for %zu described items", n);
    return ERR_OK;
}
