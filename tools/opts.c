#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "pipeline.h"

const char OPTS_INGEST_HELP[] =
    "Input columns (the CSV needs a header row):\n"
    "  --user-col NAME       user id column (default user_id)\n"
    "  --item-col NAME       item id column (default item_id)\n"
    "  --time-col NAME       timestamp column (default timestamp): unix seconds or ISO 8601\n"
    "  --time-format FMT     strptime format of the timestamp, read as UTC (e.g. '%m/%d/%Y "
    "%H:%M')\n"
    "  --quantity-col NAME   quantity column (default quantity when present, else 1 per row)\n"
    "  --price-col NAME      unit price column (default price when present)\n"
    "  --category-col NAME   item category column (default category when present)\n"
    "  --delimiter C         field delimiter: one character, or 'tab' (default ',')\n"
    "  --quote C             quote character (default '\"')\n";

static int opts_char(const char *name, const char *arg, char *out) {
    if (strcmp(arg, "tab") == 0 || strcmp(arg, "\\t") == 0) {
        *out = '\t';
        return 1;
    }
    if (strlen(arg) != 1) {
        fprintf(stderr, "recd: --%s takes one character or 'tab', not '%s'\n", name, arg);
        return -1;
    }
    *out = arg[0];
    return 1;
}

int opts_ingest(int opt, const char *arg, ingest_options *o) {
    switch (opt) {
    case OPT_USER_COL:
        o->user_col = arg;
        return 1;
    case OPT_ITEM_COL:
        o->item_col = arg;
        return 1;
    case OPT_TIME_COL:
        o->time_col = arg;
        return 1;
    case OPT_TIME_FORMAT:
        o->time_format = arg;
        return 1;
    case OPT_QUANTITY_COL:
        o->quantity_col = arg;
        return 1;
    case OPT_PRICE_COL:
        o->price_col = arg;
        return 1;
    case OPT_CATEGORY_COL:
        o->category_col = arg;
        return 1;
    case OPT_DELIMITER:
        return opts_char("delimiter", arg, &o->delimiter);
    case OPT_QUOTE:
        return opts_char("quote", arg, &o->quote);
    default:
        return 0;
    }
}

int opts_als(int opt, const char *arg, als_params *als, float *half_life) {
    switch (opt) {
#define OPTS_ALS_CASE(id, name, kind, min, max, dest)                                              \
    case OPT_ALS_##id:                                                                             \
        return opts_##kind(name, arg, min, max, &(dest)) ? -1 : 1;
        OPTS_ALS_MAP(OPTS_ALS_CASE)
#undef OPTS_ALS_CASE
    default:
        return 0;
    }
}

const char OPTS_ITEMSIM_HELP[] =
    "  --algorithm NAME      model family: als (default), ease, knn, rp3beta\n"
    "  --lambda L            EASE regularization (default 0: the mean number of users\n"
    "                        per item)\n"
    "  --max-dense-items N   EASE keeps its n x n matrix dense (n^2 x 4 bytes, e.g.\n"
    "                        1.6 GB at 20000 items) up to N items (default 20000);\n"
    "                        above, each item keeps its --neighbors largest entries\n"
    "                        (training still needs n^2 x 4 bytes)\n"
    "  --rp3-alpha A         RP3beta: exponent of the walk's probabilities (default 1)\n"
    "  --rp3-beta B          RP3beta: popularity discount of the target (default 0.5)\n";

int opts_itemsim(int opt, const char *arg, itemsim_algorithm *algorithm, itemsim_params *it) {
    switch (opt) {
    case OPT_ALGORITHM: {
        int a = itemsim_algorithm_parse(arg);
        if (a < 0) {
            fprintf(stderr, "recd: --algorithm: 'als', 'ease', 'knn' or 'rp3beta', not '%s'\n",
                    arg);
            return -1;
        }
        *algorithm = (itemsim_algorithm)a;
        return 1;
    }
#define OPTS_ITEMSIM_CASE(id, name, kind, min, max, dest)                                          \
    case OPT_ITEMSIM_##id:                                                                         \
        return opts_##kind(name, arg, min, max, &(dest)) ? -1 : 1;
        OPTS_ITEMSIM_MAP(OPTS_ITEMSIM_CASE)
#undef OPTS_ITEMSIM_CASE
    default:
        return 0;
    }
}

const char OPTS_TOGETHER_HELP[] =
    "  --together-neighbors N  bought-together list length per item (default 50; train:\n"
    "                        0 = no lists, SimilarItems BOUGHT_TOGETHER then answers as\n"
    "                        SIMILAR)\n"
    "  --together-shrinkage B  beta of the bought-together score c_ij / (c_i + beta)\n"
    "                        (default 10)\n";

int opts_together(int opt, const char *arg, together_params *p) {
    switch (opt) {
    case OPT_TOGETHER_NEIGHBORS:
        return opts_u32("together-neighbors", arg, 0, 100000, &p->neighbors) ? -1 : 1;
    case OPT_TOGETHER_SHRINKAGE:
        return opts_float("together-shrinkage", arg, 0, 1e9, &p->shrinkage) ? -1 : 1;
    default:
        return 0;
    }
}

const char OPTS_REPEAT_HELP[] =
    "  --repeat-horizon DAYS  buy it again: the days a repurchase probability is about,\n"
    "                        and the validation window that calibrates it (default 30;\n"
    "                        train: 0 = no repurchase model)\n"
    "  --repeat-shrinkage M  pseudo-occasions pulling a rare item's repurchase rate and\n"
    "                        gaps towards the catalogue's (default 10)\n";

int opts_repeat(int opt, const char *arg, repeat_params *p) {
    switch (opt) {
    case OPT_REPEAT_HORIZON:
        return opts_float("repeat-horizon", arg, 0, 3650, &p->horizon_days) ? -1 : 1;
    case OPT_REPEAT_SHRINKAGE:
        return opts_float("repeat-shrinkage", arg, 0, 1e9, &p->shrinkage) ? -1 : 1;
    default:
        return 0;
    }
}

int opts_u64(const char *name, const char *arg, uint64_t min, uint64_t max, uint64_t *out) {
    char *end;
    errno = 0;
    /* strtoull accepts "-1" and wraps it; refuse signs outright. */
    unsigned long long v = strtoull(arg, &end, 10);
    if (arg[0] == '-' || arg[0] == '+' || end == arg || *end || errno == ERANGE) {
        fprintf(stderr, "recd: --%s: '%s' is not a whole number\n", name, arg);
        return -1;
    }
    if (v < min || v > max) {
        fprintf(stderr, "recd: --%s: %llu is outside %llu..%llu\n", name, v,
                (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

int opts_u32(const char *name, const char *arg, uint32_t min, uint32_t max, uint32_t *out) {
    uint64_t v;
    if (opts_u64(name, arg, min, max, &v)) return -1;
    *out = (uint32_t)v;
    return 0;
}

int opts_tie_order(const char *arg, ev_tie_order *out) {
    if (strcmp(arg, "asc") && strcmp(arg, "desc")) {
        fprintf(stderr, "recd: --tie-order: 'asc' or 'desc', not '%s'\n", arg);
        return -1;
    }
    *out = arg[0] == 'a' ? EV_TIES_ASCENDING : EV_TIES_DESCENDING;
    return 0;
}

int opts_float(const char *name, const char *arg, double min, double max, float *out) {
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (end == arg || *end || errno == ERANGE || !isfinite(v)) {
        fprintf(stderr, "recd: --%s: '%s' is not a number\n", name, arg);
        return -1;
    }
    if (v < min || v > max) {
        fprintf(stderr, "recd: --%s: %g is outside %g..%g\n", name, v, min, max);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int opts_event_weights(const char *arg, float w[EV_TYPE_END]) {
    const char *p = arg;
    while (*p) {
        const char *eq = strchr(p, '=');
        size_t end = strcspn(p, ",");
        uint32_t type = eq ? ev_type_of_word(p, (size_t)(eq - p)) : 0;
        char num[32];
        size_t num_len = eq ? end - (size_t)(eq - p) - 1 : 0;
        if (!type || !eq || (size_t)(eq - p) > end || num_len == 0 || num_len >= sizeof num) {
            char words[256];
            ev_type_words(words, sizeof words);
            fprintf(stderr, "recd: --event-weights: '%.*s' is not TYPE=WEIGHT with TYPE %s\n",
                    (int)end, p, words);
            return -1;
        }
        memcpy(num, eq + 1, num_len);
        num[num_len] = '\0';
        if (opts_float("event-weights", num, 0, 1000, &w[type])) return -1;
        p += end + (p[end] == ',');
    }
    return 0;
}

char *opts_read_file(const char *flag, const char *path, int trim) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "recd: --%s: cannot open %s: %s\n", flag, path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap + 1);
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap && len < (1u << 20)) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) break;
            buf = bigger;
            cap *= 2;
        }
    }
    int bad = !buf || ferror(f) || len == cap;
    fclose(f);
    if (bad) {
        fprintf(stderr, "recd: --%s: cannot read %s (or it is over 1 MiB)\n", flag, path);
        free(buf);
        return NULL;
    }
    while (trim && len > 0 && strchr(" \t\r\n", buf[len - 1]))
        len--;
    buf[len] = '\0';
    return buf;
}

struct load_progress {
    double start, last;
};

static void load_progress(void *ctx, uint64_t rows, uint64_t bytes, uint64_t total_bytes) {
    struct load_progress *p = ctx;
    double now = clock_seconds();
    if (now - p->last < 1.0) return;
    p->last = now;
    if (total_bytes)
        fprintf(stderr, "import: %llu rows, %.0f%% (%.0f MB/s)\n", (unsigned long long)rows,
                100.0 * (double)bytes / (double)total_bytes,
                (double)bytes / 1e6 / (now - p->start));
    else
        fprintf(stderr, "import: %llu rows\n", (unsigned long long)rows);
}

int opts_load_history(const char *path, const ingest_options *o, ev_set *s) {
    err_t e;
    ingest_stats stats;
    struct load_progress progress = {clock_seconds(), clock_seconds()};
    ingest_options with_progress = *o;
    if (!with_progress.progress) {
        with_progress.progress = load_progress;
        with_progress.progress_ctx = &progress;
    }
    if (ev_set_init(s, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return -1;
    }
    if (ingest_csv_file(path, &with_progress, s, &stats, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        ev_set_free(s);
        return -1;
    }
    ingest_print_summary(stderr, path, &stats);
    fprintf(stderr, "import: %u users, %u items, %zu events in %.2f s\n", idmap_size(s->users),
            idmap_size(s->items), s->n, clock_seconds() - progress.start);
    return 0;
}

static void train_progress(void *ctx, uint32_t iteration, double seconds, double loss) {
    const als_params *p = ctx;
    fprintf(stderr, "train: iteration %2u/%u  %7.3f s  loss %.6f\n", iteration, p->iterations,
            seconds, loss);
}

static void train_matrix(void *ctx, uint32_t n_users, uint32_t n_items, uint64_t nonzeros) {
    const pipeline_params *p = ctx;
    fprintf(stderr,
            "train: %u users x %u items, %llu nonzeros, factors %u, lambda %g, alpha %g, "
            "half-life %g days, %u threads, popularity blend %g\n",
            n_users, n_items, (unsigned long long)nonzeros, p->als.factors, p->als.regularization,
            p->als.alpha, p->half_life_days, p->als.threads, p->popularity_blend);
}

int opts_train_publish(ev_set *history, pipeline_params *p, const char *model_dir, double start) {
    p->als.progress = train_progress;
    p->als.progress_ctx = &p->als;
    p->matrix = train_matrix;
    p->matrix_ctx = p;
    model_meta published;
    err_t e;
    if (pipeline_train(history, p, model_dir, &published, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return 1;
    }
    fprintf(stderr,
            "train: published %s to %s: %u users, %u items, %llu events, loss %.6f, "
            "training %.1f s, total %.1f s\n",
            published.version, model_dir, published.n_users, published.n_items,
            (unsigned long long)published.interactions, published.loss, published.train_seconds,
            clock_seconds() - start);
    printf("%s\n", published.version);
    return 0;
}

const char OPTS_CATALOG_HELP[] =
    "Catalogue (README \"Catalogue and cold start\"; same --delimiter and --quote as the\n"
    "history):\n"
    "  --items FILE            item catalogue CSV: every item becomes part of the model, its\n"
    "                          labels learn a mapping into the factors (items without sales\n"
    "                          get their vector from it)\n"
    "  --item-id-col NAME      default item_id\n"
    "  --item-category-col NAME  the category (also a label)\n"
    "  --item-label-cols A,B   each value a label A:value; '|' separates several\n"
    "  --item-text-col NAME    title or description: its words become labels word:w\n"
    "  --item-price-col NAME   price (a price-band label too)\n"
    "  --item-time-col NAME    publication time: unix s, ISO 8601 or --item-time-format\n"
    "  --item-time-format FMT  strptime format of --item-time-col\n"
    "  --users FILE            member catalogue CSV: labels mapped into the user factors\n"
    "  --user-id-col NAME      default user_id\n"
    "  --user-label-cols A,B   as --item-label-cols\n";

void opts_catalog_init(opts_catalog *c) {
    memset(c, 0, sizeof *c);
    labels_options_init(&c->items);
    labels_options_init(&c->users);
    c->users.id_col = "user_id";
}

int opts_catalog_flag(int opt, const char *arg, opts_catalog *c) {
    switch (opt) {
#define OPTS_CATALOG_CASE(id, name, field)                                                         \
    case OPT_CATALOG_##id:                                                                         \
        c->field = arg;                                                                            \
        return 1;
        OPTS_CATALOG_MAP(OPTS_CATALOG_CASE)
#undef OPTS_CATALOG_CASE
    default:
        return 0;
    }
}

int opts_load_catalog(opts_catalog *c, const ingest_options *io, labels_table *items,
                      labels_table *users) {
    memset(items, 0, sizeof *items);
    memset(users, 0, sizeof *users);
    const char *paths[2] = {c->items_path, c->users_path};
    labels_options *os[2] = {&c->items, &c->users};
    labels_table *ts[2] = {items, users};
    for (int k = 0; k < 2; k++) {
        if (!paths[k]) continue;
        os[k]->delimiter = io->delimiter;
        os[k]->quote = io->quote;
        labels_stats st;
        err_t e;
        if (labels_read_file(paths[k], os[k], ts[k], &st, &e)) {
            fprintf(stderr, "recd: %s\n", e.msg);
            labels_table_free(items);
            labels_table_free(users);
            return -1;
        }
        labels_print_summary(stderr, paths[k], k ? "members" : "items", ts[k], &st);
    }
    return 0;
}
