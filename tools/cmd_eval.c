/* recd eval: offline evaluation of implicit ALS against the most-popular and
 * item-kNN baselines on a temporal split of a purchase history (per user,
 * the protocol of training/eval.h, or at a global time cutoff), at several
 * list lengths, for every user and for new users, with an optional Markdown
 * report with plots. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "als.h"
#include "clock.h"
#include "coldeval.h"
#include "cmd.h"
#include "eval.h"
#include "itemsim.h"
#include "knn.h"
#include "opts.h"
#include "repeat.h"
#include "together.h"

enum {
    OPT_INPUT = OPT_FIRST_FREE,
    OPT_TEST_FRACTION,
    OPT_CUTOFF_DATE,
    OPT_CUTOFF_FRACTION,
    OPT_NEIGHBORS,
    OPT_NEW_USER_MAX,
    OPT_TIE_ORDER,
    OPT_REPORT,
    OPT_BOUGHT_TOGETHER,
    OPT_REPEAT,
    OPT_COLD_ITEMS,
    OPT_COLD_USERS
};

static void usage(FILE *out) {
    fprintf(out,
            "usage: recd eval --input FILE [options]\n"
            "\n"
            "Splits the history in time (per user: the first part of each user's events\n"
            "trains, the last --test-fraction is held out; or globally at a cutoff), trains\n"
            "implicit ALS on the training part and reports ranking metrics at every k for\n"
            "ALS, the most-popular list and item-item cosine kNN, for all users and for new\n"
            "users. Top-k lists exclude training items.\n"
            "\n"
            "  --input FILE          purchase-history CSV ('-' = stdin); needs a header row\n"
            "  --test-fraction F     per-user split: held-out fraction of each user's events\n"
            "                        (default 0.2)\n"
            "  --cutoff-date T       global split: events at or after T (YYYY-MM-DD, ISO 8601\n"
            "                        or unix seconds; UTC) are test\n"
            "  --cutoff-fraction F   global split: the cutoff that holds out the latest F of\n"
            "                        all events\n"
            "  -k LIST               list lengths, e.g. 5,10,20 (default 10)\n"
            "  --new-user-max N      new users have at most N distinct training items\n"
            "                        (default 3)\n"
            "  --factors N           ALS factors (default 64)\n"
            "  --iterations N        ALS iterations (default 15)\n"
            "  --regularization L    ALS lambda (default 0.01)\n"
            "  --alpha A             confidence 1 + A * value (default 1.0)\n"
            "  --frequency-regularization F  ALS lambda of a row = regularization + F x its\n"
            "                        nonzeros (default 0)\n"
            "  --half-life DAYS      value of an interaction = sum over its events of\n"
            "                        0.5^(age / DAYS), age from the end of the training data\n"
            "                        (default 0: no decay, every event counts 1)\n"
            "  --neighbors N         item-kNN neighbours kept per item, and the entries an\n"
            "                        item-item --algorithm keeps per item (default 100)\n"
            "%s"
            "                        (--algorithm adds its row to the tables; als is always\n"
            "                        there)\n"
            "  --threads N           worker threads (default: online CPUs)\n"
            "  --seed N              factor initialization seed (default 42)\n"
            "  --tie-order asc|desc  order of a user's events at the same second by item id\n"
            "                        (default asc, the protocol of README; desc reproduces the\n"
            "                        published Online Retail reference split)\n"
            "  --report FILE.md      also write a Markdown report with plots (gnuplot) next\n"
            "                        to it: FILE-ndcg.png, FILE-coverage.png, FILE-loss.png\n"
            "  --bought-together     instead: hold out each member's last basket (same\n"
            "                        member and time; members with an earlier basket and 2+\n"
            "                        items in it); seeds = each of its items in turn, then\n"
            "                        carts of two of them, hits = the others; HR@k of\n"
            "                        SimilarItems BOUGHT_TOGETHER (the shrunk conditional\n"
            "                        probability as served, and lift; with the SIMILAR\n"
            "                        fallback), SIMILAR (ALS cosine) and the most-popular list\n"
            "%s"
            "  --repeat              instead: buy it again; the purchases of the last\n"
            "                        --repeat-horizon days (or from --cutoff-date on, that\n"
            "                        long) are held out, items bought before included; HR@k,\n"
            "                        NDCG@k, recall@k of recd's include_purchased ranking\n"
            "                        (the repurchase model and ALS on one scale, calibrated on\n"
            "                        the training data's last days), buy-again alone, ALS,\n"
            "                        personal top-frequency and most-popular\n"
            "  --cold-items F        instead: hold out a fraction F of the catalogue's items\n"
            "                        entirely; rank, for each user who had one, the held-out\n"
            "                        items by the vectors their labels map to, against random\n"
            "                        order and a content-based profile (needs --items)\n"
            "  --cold-users F        instead: hold out a fraction F of the members entirely;\n"
            "                        rank every item for them from their labels alone, against\n"
            "                        random, popular and same-attribute popular (needs --users)\n"
            "%s%s"
            "  -h, --help            this help\n"
            "\n"
            "%s\n"
            "A header-less file such as MovieLens u.data can be given a header on the fly:\n"
            "  (printf 'user_id\\titem_id\\trating\\ttimestamp\\n'; cat u.data) |\n"
            "      recd eval --input - --delimiter tab\n",
            OPTS_ITEMSIM_HELP, OPTS_TOGETHER_HELP, OPTS_REPEAT_HELP, OPTS_CATALOG_HELP,
            OPTS_INGEST_HELP);
}

typedef struct loss_log {
    uint32_t total;
    double *loss; /* total entries */
} loss_log;

static void print_progress(void *ctx, uint32_t iteration, double seconds, double loss) {
    loss_log *l = ctx;
    l->loss[iteration - 1] = loss;
    fprintf(stderr, "als: iteration %u/%u  %.3f s  loss %.6f\n", iteration, l->total, seconds,
            loss);
}

typedef struct eval_args {
    const char *input, *report;
    ingest_options io;
    double test_fraction, cutoff_fraction, half_life;
    const char *cutoff_date;
    int per_user; /* 1 per-user split, 0 global cutoff */
    eval_config ec;
    uint32_t neighbors;
    als_params als;
    itemsim_algorithm algorithm;
    itemsim_params it;
    ev_tie_order ties;
    int bought_together;
    together_params together; /* --bought-together's conditional (lift: its neighbours) */
    int repeat;
    repeat_params rp;              /* --repeat's model */
    double cold_items, cold_users; /* 0 = not asked */
    opts_catalog cat;
} eval_args;

/* Parses a cutoff: what the importer accepts (ISO 8601 with a time, unix
 * seconds) or a bare date YYYY-MM-DD, taken as midnight UTC. Returns 0 or
 * -1. */
static int parse_date(const char *arg, int64_t *out) {
    char buf[32];
    if (ingest_parse_time(arg, strlen(arg), NULL, out) == ERR_OK) return 0;
    if (strlen(arg) != 10) return -1;
    snprintf(buf, sizeof buf, "%sT00:00:00", arg);
    return ingest_parse_time(buf, strlen(buf), NULL, out) == ERR_OK ? 0 : -1;
}

/* Parses argv into *a. Returns 0, 2 after printing a usage error, or -1 when
 * --help was printed (exit 0). */
static int parse_args(int argc, char **argv, eval_args *a) {
    static const struct option longopts[] = {
        OPTS_INGEST_LONG,
        {"input", required_argument, 0, OPT_INPUT},
        {"test-fraction", required_argument, 0, OPT_TEST_FRACTION},
        {"cutoff-date", required_argument, 0, OPT_CUTOFF_DATE},
        {"cutoff-fraction", required_argument, 0, OPT_CUTOFF_FRACTION},
        {"neighbors", required_argument, 0, OPT_NEIGHBORS},
        {"new-user-max", required_argument, 0, OPT_NEW_USER_MAX},
        OPTS_ITEMSIM_LONG OPTS_ALS_LONG OPTS_TOGETHER_LONG{"tie-order", required_argument, 0,
                                                           OPT_TIE_ORDER},
        {"report", required_argument, 0, OPT_REPORT},
        {"bought-together", no_argument, 0, OPT_BOUGHT_TOGETHER},
        {"repeat", no_argument, 0, OPT_REPEAT},
        {"cold-items", required_argument, 0, OPT_COLD_ITEMS},
        {"cold-users", required_argument, 0, OPT_COLD_USERS},
        OPTS_REPEAT_LONG OPTS_CATALOG_LONG{"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    ingest_options_init(&a->io);
    als_params_init(&a->als);
    eval_config_init(&a->ec);
    itemsim_params_init(&a->it);
    together_params_init(&a->together);
    repeat_params_init(&a->rp);
    opts_catalog_init(&a->cat);
    a->ec.threads = a->als.threads;
    a->test_fraction = 0.2;
    a->per_user = 1;
    a->neighbors = 100;
    int split_flags = 0; /* how many of the three split flags were given */
    float fraction, half_life = 0.0f;
    err_t e;
    /* 0 makes glibc's getopt start over, so cmd_eval can run twice in one
     * process (tests). */
    optind = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        int r = opts_ingest(opt, optarg, &a->io);
        if (r == 0) r = opts_als(opt, optarg, &a->als, &half_life);
        if (r == 0) r = opts_itemsim(opt, optarg, &a->algorithm, &a->it);
        if (r == 0) r = opts_together(opt, optarg, &a->together);
        if (r == 0) r = opts_repeat(opt, optarg, &a->rp);
        if (r == 0) r = opts_catalog_flag(opt, optarg, &a->cat);
        if (r < 0) return 2;
        if (r > 0) continue;
        switch (opt) {
        case 'h':
            usage(stdout);
            return -1;
        case OPT_INPUT:
            a->input = optarg;
            break;
        case OPT_TEST_FRACTION:
        case OPT_CUTOFF_FRACTION:
            if (opts_float(opt == OPT_TEST_FRACTION ? "test-fraction" : "cutoff-fraction", optarg,
                           0.0, 1.0, &fraction))
                return 2;
            if (!(fraction > 0.0f && fraction < 1.0f)) {
                fprintf(stderr, "recd: --%s: must be between 0 and 1, exclusive\n",
                        opt == OPT_TEST_FRACTION ? "test-fraction" : "cutoff-fraction");
                return 2;
            }
            if (opt == OPT_TEST_FRACTION)
                a->test_fraction = fraction;
            else
                a->cutoff_fraction = fraction, a->per_user = 0;
            split_flags++;
            break;
        case OPT_CUTOFF_DATE: {
            int64_t t;
            if (parse_date(optarg, &t)) {
                fprintf(stderr, "recd: --cutoff-date: '%s' is not ISO 8601 or unix seconds\n",
                        optarg);
                return 2;
            }
            a->cutoff_date = optarg;
            a->per_user = 0;
            split_flags++;
            break;
        }
        case 'k':
            if (eval_parse_ks(optarg, &a->ec, &e)) {
                fprintf(stderr, "recd: -k: %s\n", e.msg);
                return 2;
            }
            break;
        case OPT_NEW_USER_MAX:
            if (opts_u32("new-user-max", optarg, 0, 1000000, &a->ec.new_user_max)) return 2;
            break;
        case OPT_NEIGHBORS:
            if (opts_u32("neighbors", optarg, 1, 100000, &a->neighbors)) return 2;
            break;
        case OPT_TIE_ORDER:
            if (opts_tie_order(optarg, &a->ties)) return 2;
            break;
        case OPT_REPORT:
            a->report = optarg;
            break;
        case OPT_BOUGHT_TOGETHER:
            a->bought_together = 1;
            break;
        case OPT_REPEAT:
            a->repeat = 1;
            break;
        case OPT_COLD_ITEMS:
        case OPT_COLD_USERS:
            if (opts_float(opt == OPT_COLD_ITEMS ? "cold-items" : "cold-users", optarg, 0.001,
                           0.999, &fraction))
                return 2;
            if (opt == OPT_COLD_ITEMS)
                a->cold_items = fraction;
            else
                a->cold_users = fraction;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    a->half_life = half_life;
    a->ec.threads = a->als.threads;
    if (optind < argc) {
        fprintf(stderr, "recd: eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!a->input) {
        fprintf(stderr, "recd: eval: --input is required (see recd eval --help)\n");
        return 2;
    }
    if (a->bought_together && (split_flags || a->report)) {
        fprintf(stderr, "recd: eval: --bought-together has its own split and no report\n");
        return 2;
    }
    if (a->repeat && (a->bought_together || a->report || split_flags > (a->cutoff_date != NULL))) {
        fprintf(stderr, "recd: eval: --repeat has its own split (or --cutoff-date), no report and "
                        "is not --bought-together\n");
        return 2;
    }
    if ((a->cold_items > 0) + (a->cold_users > 0) + a->bought_together + a->repeat > 1) {
        fprintf(stderr,
                "recd: eval: --cold-items, --cold-users, --bought-together and --repeat are "
                "alternatives; give one\n");
        return 2;
    }
    if ((a->cold_items > 0 && !a->cat.items_path) || (a->cold_users > 0 && !a->cat.users_path)) {
        fprintf(stderr, "recd: eval: --cold-items needs --items, --cold-users needs --users\n");
        return 2;
    }
    if (split_flags > 1) {
        fprintf(stderr, "recd: eval: --test-fraction, --cutoff-date and --cutoff-fraction are "
                        "alternatives; give one\n");
        return 2;
    }
    return 0;
}

/* "2011-09-10 00:00:00 UTC" */
static void format_time(int64_t t, char *out, size_t size) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

#define N_MODELS 4 /* als, most-popular, item-knn and --algorithm's */

/* What the report and the text output share. */
typedef struct eval_outcome {
    char split[256];
    eval_row rows[N_MODELS], fresh_rows[N_MODELS];
    uint32_t n_ks, new_users, cold, n_models;
    loss_log loss;
} eval_outcome;

/* Writes the Markdown report into md (opened on a->report, closed here):
 * setup, the tables and plots for all users, the tables for new users and
 * the loss curve. The PNGs go next to the .md
 * with its name as prefix. Returns 0, or -1 after printing why (a plot that
 * gnuplot could not make is only a warning). */
static int write_report(FILE *md, const eval_args *a, const eval_outcome *o, const ev_set *s) {
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", a->report);
    size_t len = strlen(prefix);
    if (len > 3 && strcmp(prefix + len - 3, ".md") == 0) prefix[len - 3] = '\0';
    const char *link = strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix;
    fprintf(md, "# Offline evaluation\n\n");
    fprintf(md, "- input: `%s`, %zu events, %u users, %u items\n", a->input, s->n,
            idmap_size(s->users), idmap_size(s->items));
    fprintf(md, "- split: %s\n", o->split);
    char hl[32] = "none";
    if (a->half_life > 0) snprintf(hl, sizeof hl, "%g days", a->half_life);
    fprintf(md,
            "- ALS: factors %u, regularization %g, alpha %g, %u iterations, half-life %s, "
            "seed %llu\n",
            a->als.factors, (double)a->als.regularization, (double)a->als.alpha, a->als.iterations,
            hl, (unsigned long long)a->als.seed);
    fprintf(md, "- item-knn: cosine on co-purchase, %u neighbours per item\n", a->neighbors);
    if (a->algorithm != ITEMSIM_ALS)
        fprintf(md,
                "- %s: lambda %g (0 = users per item), rp3 alpha %g beta %g, %u entries per "
                "item when sparse\n",
                itemsim_algorithm_name(a->algorithm), (double)a->it.lambda, (double)a->it.rp3_alpha,
                (double)a->it.rp3_beta, a->neighbors);
    fprintf(md, "- binary relevance (relevant = the user's distinct test items); top-k lists "
                "exclude training items; users without training items get the most-popular "
                "list (ALS and item-knn, as the server does) and count as not personalized "
                "(user-cov)\n");
    fprintf(md, "- div = 1 - mean pairwise cosine of the ALS item factors of this run, for "
                "every model (baselines have no factors of their own); nov = mean "
                "-log2(share of training users who have the item)\n\n");
    fprintf(md, "## All users\n\n");
    err_t e;
    int warn = eval_report_models(md, prefix, link, o->rows, o->n_models, o->n_ks, &e);
    if (warn) fprintf(stderr, "recd: eval: report: %s\n", e.msg);
    fprintf(md, "\n## New users (at most %u training items): %u users\n\n", a->ec.new_user_max,
            o->new_users);
    if (o->new_users)
        eval_print_tables(md, o->fresh_rows, o->n_models, o->n_ks, 1);
    else
        fprintf(md, "No evaluated user is that new on this split.\n");
    fprintf(md, "\n## ALS training\n");
    double *x = malloc(((size_t)o->loss.total + 1) * sizeof *x);
    if (x) {
        for (uint32_t i = 0; i < o->loss.total; i++)
            x[i] = i + 1;
        eval_series ls = {"als", x, o->loss.loss, o->loss.total};
        if (eval_report_loss(md, prefix, link, "loss", &ls, 1, &e) && !warn)
            fprintf(stderr, "recd: eval: report: %s\n", e.msg);
        free(x);
    }
    if (fclose(md) != 0 || !x) {
        fprintf(stderr, "recd: eval: cannot write %s\n", a->report);
        return -1;
    }
    fprintf(stderr, "eval: report written to %s\n", a->report);
    return 0;
}

/* --- --bought-together --------------------------------------------------- */

/* SIMILAR of an ALS model as the server answers it (score_similar_query): the
 * mean cosine to the seeds, items without a direction never. */
typedef struct cosine_ranker {
    const als_factors *f;
    float *norms, *scores, *mean; /* n_items, n_items, factors */
} cosine_ranker;

static void exclude_seeds(const uint32_t *seeds, size_t n, float *scores) {
    for (size_t i = 0; i < n; i++)
        scores[seeds[i]] = -INFINITY;
}

static int rank_cosine(void *ctx, const uint32_t *seeds, size_t n, uint32_t k, topk_entry *out,
                       uint32_t *n_out, err_t *e) {
    (void)e;
    cosine_ranker *c = ctx;
    uint32_t nf = c->f->factors;
    memset(c->mean, 0, nf * sizeof *c->mean);
    for (size_t i = 0; i < n; i++) {
        const float *ys = c->f->item_factors + (size_t)seeds[i] * nf;
        if (c->norms[seeds[i]] > 0.0f)
            for (uint32_t d = 0; d < nf; d++)
                c->mean[d] += ys[d] / (c->norms[seeds[i]] * (float)n);
    }
    for (uint32_t j = 0; j < c->f->n_items; j++) {
        const float *y = c->f->item_factors + (size_t)j * nf;
        float dot = 0;
        for (uint32_t d = 0; d < nf; d++)
            dot += y[d] * c->mean[d];
        c->scores[j] = c->norms[j] > 0.0f ? dot / c->norms[j] : -INFINITY;
    }
    exclude_seeds(seeds, n, c->scores);
    *n_out = topk_select(c->scores, c->f->n_items, k, out);
    return ERR_OK;
}

/* BOUGHT_TOGETHER as the server answers (score_together): the seeds' rows
 * summed, or SIMILAR when no seed was bought with anything (counted in
 * fell_back). */
typedef struct together_ranker {
    itemrows rows;
    cosine_ranker *similar;
    uint64_t fell_back;
} together_ranker;

static int rank_together(void *ctx, const uint32_t *seeds, size_t n, uint32_t k, topk_entry *out,
                         uint32_t *n_out, err_t *e) {
    together_ranker *t = ctx;
    const itemrows *r = &t->rows;
    float *sc = t->similar->scores;
    for (uint32_t j = 0; j < r->n_items; j++)
        sc[j] = -INFINITY;
    uint64_t listed = 0;
    for (size_t i = 0; i < n; i++)
        for (uint64_t a = r->indptr[seeds[i]]; a < r->indptr[seeds[i] + 1]; a++, listed++)
            sc[r->index[a]] = (sc[r->index[a]] == -INFINITY ? 0.0f : sc[r->index[a]]) + r->value[a];
    exclude_seeds(seeds, n, sc);
    *n_out = topk_select(sc, r->n_items, k, out);
    if (listed && *n_out) return ERR_OK;
    t->fell_back++;
    return rank_cosine(t->similar, seeds, n, k, out, n_out, e);
}

/* The most-popular list (distinct training buyers), never a seed. */
typedef struct popular_ranker {
    const uint32_t *order; /* items by popularity, most first */
    uint32_t n_items;
} popular_ranker;

static int rank_popular(void *ctx, const uint32_t *seeds, size_t n_seeds, uint32_t k,
                        topk_entry *out, uint32_t *n_out, err_t *e) {
    (void)e;
    popular_ranker *p = ctx;
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n_items && n < k; i++) {
        int seed = 0;
        for (size_t s = 0; s < n_seeds && !seed; s++)
            seed = p->order[i] == seeds[s];
        if (!seed) out[n++] = (topk_entry){p->order[i], (float)(p->n_items - i)};
    }
    *n_out = n;
    return ERR_OK;
}

/* recd eval --bought-together on s (sorted, user_start its runs). */
static int eval_together(eval_args *a, ev_set *s, const uint64_t *user_start, err_t *e) {
    uint8_t *is_test = malloc(s->n ? s->n : 1);
    float *weights = malloc((s->n ? s->n : 1) * sizeof *weights);
    csr train = {0}, test = {0};
    als_factors f = {0};
    together_model tm[2] = {{0}, {0}};
    cosine_ranker cos = {0};
    popular_ranker pop = {0};
    float *popularity = NULL;
    uint32_t *order = NULL;
    int rc;
    if (!is_test || !weights) {
        rc = err_set(e, ERR_NOMEM, "eval: out of memory for %zu events", s->n);
        goto done;
    }
    uint32_t baskets = together_split_last_baskets(s, user_start, is_test);
    if (baskets == 0) {
        rc = err_set(e, ERR_INVALID,
                     "eval: no member has an earlier basket and 2+ items in the last one");
        goto done;
    }
    eval_event_weights(s, a->half_life, eval_train_end(s, is_test), weights);
    if ((rc = eval_split_matrices(s, is_test, weights, &train, &test, e))) goto done;
    fprintf(stderr, "eval: %zu events, %u users, %u items; %u last baskets held out\n", s->n,
            train.n_rows, train.n_cols, baskets);
    fprintf(stderr, "als: factors %u, regularization %g, alpha %g, %u iterations\n", a->als.factors,
            (double)a->als.regularization, (double)a->als.alpha, a->als.iterations);
    if ((rc = als_train(&train, &a->als, &f, e))) goto done;
    together_params tp[2];
    for (int i = 0; i < 2; i++) {
        tp[i] = a->together;
        tp[i].measure = i == 0 ? TOGETHER_CONDITIONAL : TOGETHER_LIFT;
        if ((rc = together_fit(s, is_test, &tp[i], &tm[i], e))) goto done;
    }
    uint32_t ni = f.n_items;
    cos.f = &f;
    cos.norms = malloc((ni ? ni : 1) * sizeof *cos.norms);
    cos.scores = malloc((ni ? ni : 1) * sizeof *cos.scores);
    cos.mean = malloc((f.factors ? f.factors : 1) * sizeof *cos.mean);
    popularity = calloc(ni ? ni : 1, sizeof *popularity);
    order = malloc((ni ? ni : 1) * sizeof *order);
    if (!cos.norms || !cos.scores || !cos.mean || !popularity || !order) {
        rc = err_set(e, ERR_NOMEM, "eval: out of memory for %u items", ni);
        goto done;
    }
    for (uint32_t j = 0; j < ni; j++) {
        double sq = 0;
        for (uint32_t d = 0; d < f.factors; d++)
            sq += (double)f.item_factors[(size_t)j * f.factors + d] *
                  f.item_factors[(size_t)j * f.factors + d];
        cos.norms[j] = (float)sqrt(sq);
    }
    for (uint64_t k = 0; k < csr_nnz(&train); k++)
        popularity[train.indices[k]] += 1.0f;
    {
        topk_entry *all = malloc((ni ? ni : 1) * sizeof *all);
        if (!all) {
            rc = err_set(e, ERR_NOMEM, "eval: out of memory for %u items", ni);
            goto done;
        }
        uint32_t n = topk_select(popularity, ni, ni, all);
        for (uint32_t j = 0; j < n; j++)
            order[j] = all[j].index;
        free(all);
        pop = (popular_ranker){order, n};
    }
    together_ranker tr[2] = {{together_rows(&tm[0]), &cos, 0}, {together_rows(&tm[1]), &cos, 0}};
    char names[4][64];
    snprintf(names[0], sizeof names[0], "bought-together (conditional, beta %g)",
             (double)tp[0].shrinkage);
    snprintf(names[1], sizeof names[1], "bought-together (lift)");
    snprintf(names[2], sizeof names[2], "similar (als cosine)");
    snprintf(names[3], sizeof names[3], "most-popular");
    together_rank_fn fns[4] = {rank_together, rank_together, rank_cosine, rank_popular};
    void *ctxs[4] = {&tr[0], &tr[1], &cos, &pop};
    printf("\nheld-out last baskets: %u members' last basket; its items with a training "
           "purchase, in turn one by one or as carts of two, are the seeds, a hit = another item "
           "of the basket in the top k\n",
           baskets);
    for (uint32_t cart = 1; cart <= 2; cart++) {
        printf("\n%-40s", cart == 1 ? "one seed" : "carts of two seeds");
        for (uint32_t q = 0; q < a->ec.n_ks; q++)
            printf("  HR@%-4u", a->ec.ks[q]);
        printf("  queries  fell back to similar\n");
        for (int m = 0; m < 4; m++) {
            printf("%-40s", names[m]);
            uint64_t queries = 0, fell_back = 0;
            for (uint32_t q = 0; q < a->ec.n_ks; q++) {
                double hr;
                if (m < 2) tr[m].fell_back = 0;
                if ((rc = together_hit_rate(s, user_start, is_test, cart, fns[m], ctxs[m],
                                            a->ec.ks[q], &hr, &queries, e)))
                    goto done;
                if (m < 2) fell_back = tr[m].fell_back;
                printf("  %.4f ", hr);
            }
            if (m < 2)
                printf("  %7llu  %.1f%%\n", (unsigned long long)queries,
                       queries ? 100.0 * (double)fell_back / (double)queries : 0.0);
            else
                printf("  %7llu\n", (unsigned long long)queries);
        }
    }
done:
    free(is_test);
    free(weights);
    csr_free(&train);
    csr_free(&test);
    als_factors_free(&f);
    together_free(&tm[0]);
    together_free(&tm[1]);
    free(cos.norms);
    free(cos.scores);
    free(cos.mean);
    free(popularity);
    free(order);
    return rc;
}

/* recd eval --cold-items / --cold-users on s. Returns the exit status. */
static int eval_cold(eval_args *a, const ev_set *s) {
    labels_table items, users;
    if (opts_load_catalog(&a->cat, &a->io, &items, &users)) return 1;
    int u = a->cold_users > 0;
    double fraction = u ? a->cold_users : a->cold_items;
    coldeval_result r;
    err_t e;
    fprintf(stderr, "eval: cold %s: holding out %g of them, ALS factors %u, %u iterations\n",
            u ? "members" : "items", fraction, a->als.factors, a->als.iterations);
    int rc = coldeval_run(s, u ? &users : &items, u, fraction, &a->als, &a->ec, &r, &e);
    labels_table_free(&items);
    labels_table_free(&users);
    if (rc) {
        fprintf(stderr, "recd: eval: %s\n", e.msg);
        return 1;
    }
    printf("\ncold %s: %u of them held out with all their %llu events; %u %s evaluated, "
           "each ranking %u %s\n",
           u ? "members" : "items", r.held_out, (unsigned long long)r.held_events, r.users,
           u ? "held-out members" : "users", r.candidates, u ? "items" : "held-out items");
    printf("mapping: lambda %g chosen on validation rows of the training part (MSE %.4g, the "
           "mean vector alone %.4g), fitted on %u %s\n\n",
           (double)r.map.lambda, r.map.valid_mse, r.map.bias_mse, r.map.fit_rows,
           u ? "members" : "items");
    printf("%-24s", "model");
    for (uint32_t q = 0; q < a->ec.n_ks; q++)
        printf(" NDCG@%-3u HR@%-5u R@%-6u", a->ec.ks[q], a->ec.ks[q], a->ec.ks[q]);
    printf("\n");
    for (uint32_t m = 0; m < r.n_rows; m++) {
        printf("%-24s", r.rows[m].name);
        for (uint32_t q = 0; q < a->ec.n_ks; q++)
            printf(" %-8.4f %-8.4f %-8.4f", r.rows[m].ndcg[q], r.rows[m].hr[q],
                   r.rows[m].recall[q]);
        printf("\n");
    }
    uint32_t q10 = 0;
    for (uint32_t q = 0; q < a->ec.n_ks; q++)
        if (a->ec.ks[q] == 10) q10 = q;
    uint32_t best = 1;
    for (uint32_t m = 1; m < r.n_rows; m++)
        if (r.rows[m].ndcg[q10] > r.rows[best].ndcg[q10]) best = m;
    printf("\nsummary: cold %s NDCG@%u attribute-map %.4f vs best baseline %s %.4f (%+.1f%%)\n",
           u ? "members" : "items", a->ec.ks[q10], r.rows[0].ndcg[q10], r.rows[best].name,
           r.rows[best].ndcg[q10],
           r.rows[best].ndcg[q10] > 0 ? 100.0 * (r.rows[0].ndcg[q10] / r.rows[best].ndcg[q10] - 1)
                                      : NAN);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int r = parse_args(argc, argv, &a);
    if (r) return r < 0 ? 0 : r;

    /* Opened first, so a report that cannot be written fails before the
     * work, not after it. */
    FILE *md = a.report ? fopen(a.report, "w") : NULL;
    if (a.report && !md) {
        fprintf(stderr, "recd: eval: --report: %s: %s\n", a.report, strerror(errno));
        return 1;
    }
    ev_set s;
    if (opts_load_history(a.input, &a.io, &s)) {
        if (md) fclose(md);
        return 1;
    }
    if (a.cold_items > 0 || a.cold_users > 0) {
        int st = eval_cold(&a, &s);
        ev_set_free(&s);
        if (md) fclose(md);
        return st;
    }
    int status = 1;
    err_t e = {0};
    uint64_t *user_start = NULL;
    uint8_t *is_test = NULL;
    float *weights = NULL;
    csr train = {0}, test = {0};
    als_factors f = {0};
    eval_popular pop = {0};
    knn_model knn = {0};
    itemsim_model ii = {0};
    eval_outcome o = {0};
    eval_metrics m[2][N_MODELS][EVAL_MAX_KS];
    o.n_ks = a.ec.n_ks;
    o.loss.total = a.als.iterations;

    if (ev_set_sort_by_user_time(&s, a.ties, &user_start, &e)) goto fail;
    if (a.repeat) {
        int64_t cutoff, end = INT64_MIN;
        for (size_t i = 0; i < s.n; i++)
            if (s.events[i].ts > end) end = s.events[i].ts;
        /* The last horizon's days (the latest event's second included). */
        if (a.cutoff_date)
            parse_date(a.cutoff_date, &cutoff);
        else
            cutoff = end + 1 - (int64_t)(a.rp.horizon_days * 86400.0);
        fprintf(stderr, "als: factors %u, regularization %g, alpha %g, %u iterations\n",
                a.als.factors, (double)a.als.regularization, (double)a.als.alpha, a.als.iterations);
        if (repeat_evaluate(&s, cutoff, &a.rp, &a.als, a.ec.ks, a.ec.n_ks, stdout, &e)) goto fail;
        status = 0;
        goto out;
    }
    if (a.bought_together) {
        if (eval_together(&a, &s, user_start, &e)) goto fail;
        status = 0;
        goto out;
    }
    is_test = malloc(s.n ? s.n : 1);
    weights = malloc((s.n ? s.n : 1) * sizeof *weights);
    o.loss.loss = calloc(a.als.iterations, sizeof *o.loss.loss);
    if (!is_test || !weights || !o.loss.loss) {
        err_set(&e, ERR_NOMEM, "eval: out of memory for %zu events", s.n);
        goto fail;
    }
    if (a.per_user) {
        eval_split_last_fraction(&s, user_start, a.test_fraction, is_test);
        snprintf(o.split, sizeof o.split,
                 "per user: each user's last %g of events by (time, item id %s) held out",
                 a.test_fraction, a.ties == EV_TIES_ASCENDING ? "ascending" : "descending");
    } else {
        int64_t cutoff;
        if (a.cutoff_date)
            parse_date(a.cutoff_date, &cutoff);
        else if (eval_cutoff_for_fraction(&s, a.cutoff_fraction, &cutoff, &e))
            goto fail;
        eval_split_cutoff(&s, cutoff, is_test);
        char when[64];
        format_time(cutoff, when, sizeof when);
        snprintf(o.split, sizeof o.split, "global cutoff: events at or after %s held out%s", when,
                 a.cutoff_date ? "" : " (--cutoff-fraction)");
    }
    eval_event_weights(&s, a.half_life, eval_train_end(&s, is_test), weights);
    if (eval_split_matrices(&s, is_test, weights, &train, &test, &e)) goto fail;

    uint32_t evaluated = 0;
    size_t n_test = 0;
    for (size_t i = 0; i < s.n; i++)
        n_test += is_test[i];
    for (uint32_t u = 0; u < train.n_rows; u++) {
        int has_test = test.indptr[u + 1] > test.indptr[u];
        evaluated += has_test;
        o.cold += has_test && train.indptr[u + 1] == train.indptr[u];
    }
    fprintf(stderr,
            "eval: %zu events, %u users, %u items; %s; %zu train / %zu test events "
            "(%llu / %llu user-item pairs); %u users with test events\n",
            s.n, train.n_rows, train.n_cols, o.split, s.n - n_test, n_test,
            (unsigned long long)csr_nnz(&train), (unsigned long long)csr_nnz(&test), evaluated);
    if (evaluated == 0) {
        err_set(&e, ERR_INVALID, "eval: no user has a test event (too few events per user?)");
        goto fail;
    }
    if (n_test == s.n) {
        err_set(&e, ERR_INVALID, "eval: every event is held out; nothing to train on");
        goto fail;
    }

    a.als.progress = print_progress;
    a.als.progress_ctx = &o.loss;
    fprintf(stderr,
            "als: factors %u, regularization %g, alpha %g, half-life %g days, %u iterations, %u "
            "threads\n",
            a.als.factors, (double)a.als.regularization, (double)a.als.alpha, a.half_life,
            a.als.iterations, a.als.threads);
    if (als_train(&train, &a.als, &f, &e)) goto fail;
    if (eval_popular_init(&train, &pop, &e)) goto fail;
    fprintf(stderr, "knn: %u neighbours per item\n", a.neighbors);
    if (knn_fit(&train, a.neighbors, a.als.threads, &knn, &e)) goto fail;
    knn.fallback = &pop;
    if (a.algorithm != ITEMSIM_ALS) {
        a.it.algorithm = a.algorithm;
        a.it.neighbors = a.neighbors;
        a.it.threads = a.als.threads;
        double t0 = clock_seconds();
        if (itemsim_fit(&train, &a.it, &ii, &e)) goto fail;
        fprintf(stderr, "%s: trained in %.2f s (lambda %g), %.1f MB of item rows\n",
                itemsim_algorithm_name(a.algorithm), clock_seconds() - t0, (double)ii.lambda,
                itemsim_bytes(&ii) / 1e6);
    }

    eval_mf mf = {.user_factors = f.user_factors,
                  .item_factors = f.item_factors,
                  .factors = f.factors,
                  .n_items = f.n_items,
                  .fallback = &pop};
    a.ec.item_factors = f.item_factors;
    a.ec.factors = f.factors;
    itemsim_eval ie = {.rows = itemsim_rows(&ii), .rows_weight = 1.0f, .fallback = &pop};
    const char *names[N_MODELS] = {"als", "most-popular", "item-knn",
                                   itemsim_algorithm_name(a.algorithm)};
    eval_recommend_fn fns[N_MODELS] = {eval_mf_recommend, eval_popular_recommend, knn_recommend,
                                       itemsim_recommend};
    void *ctxs[N_MODELS] = {&mf, &pop, &knn, &ie};
    o.n_models = a.algorithm != ITEMSIM_ALS ? 4 : 3;
    for (uint32_t i = 0; i < o.n_models; i++) {
        fprintf(stderr, "eval: ranking %s\n", names[i]);
        if (eval_ranking(fns[i], ctxs[i], &train, &test, &a.ec, m[0][i], m[1][i], &e)) goto fail;
        o.rows[i] = (eval_row){names[i], m[0][i]};
        o.fresh_rows[i] = (eval_row){names[i], m[1][i]};
    }
    if (mf.failed || knn.failed || ie.failed) {
        err_set(&e, ERR_NOMEM, "eval: out of memory scoring items");
        goto fail;
    }
    o.new_users = m[1][0][0].users;

    printf("\n");
    eval_print_tables(stdout, o.rows, o.n_models, o.n_ks, 0);
    printf("\nnew users (at most %u training items): %u of %u evaluated users\n", a.ec.new_user_max,
           o.new_users, evaluated);
    if (o.new_users) {
        eval_row fr[N_MODELS];
        char fn[N_MODELS][32];
        for (uint32_t i = 0; i < o.n_models; i++) {
            snprintf(fn[i], sizeof fn[i], "new:%s", names[i]);
            fr[i] = (eval_row){fn[i], m[1][i]};
        }
        eval_print_tables(stdout, fr, o.n_models, o.n_ks, 0);
    }
    printf("\nBinary relevance (relevant = the user's distinct test items); P = hits/k, "
           "R = hits/relevant,\nF1 per user, NDCG and MAP as benfred/implicit's "
           "ranking_metrics_at_k; cov = distinct recommended\nitems / items; user-cov = users "
           "with a personalized list; div = 1 - mean pairwise cosine of\nthe ALS item factors "
           "of this run (for the baselines too); nov = mean -log2(popularity share).\n");
    if (o.cold)
        printf("%u evaluated users have no training events: ALS and item-knn serve them the\n"
               "most-popular list, as the server does for unknown users.\n",
               o.cold);
    uint32_t q10 = 0;
    for (uint32_t q = 0; q < o.n_ks; q++)
        if (a.ec.ks[q] == 10) q10 = q;
    const eval_metrics *ma = &m[0][0][q10], *mp = &m[0][1][q10], *mk = &m[0][2][q10];
    double lift = mp->ndcg > 0 ? 100.0 * (ma->ndcg / mp->ndcg - 1.0) : NAN;
    printf("\nsummary: NDCG@%u als %.4f vs most-popular %.4f (%+.1f%%) vs item-knn %.4f, %u "
           "users, final loss %.6f\n",
           ma->k, ma->ndcg, mp->ndcg, lift, mk->ndcg, ma->users, f.loss);
    if (o.n_models > 3) printf("summary: NDCG@%u %s %.4f\n", ma->k, names[3], m[0][3][q10].ndcg);
    if (md) {
        int bad = write_report(md, &a, &o, &s);
        md = NULL;
        if (bad) goto out;
    }
    status = 0;
    goto out;
fail:
    fprintf(stderr, "recd: eval: %s\n", e.msg);
out:
    if (md) fclose(md);
    knn_free(&knn);
    itemsim_free(&ii);
    eval_popular_free(&pop);
    als_factors_free(&f);
    csr_free(&train);
    csr_free(&test);
    free(is_test);
    free(weights);
    free(o.loss.loss);
    free(user_start);
    ev_set_free(&s);
    return status;
}
