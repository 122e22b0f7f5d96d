/* recd tune: hyperparameter search for implicit ALS on a validation split
 * carved out of the input (each user's latest events, the split of recd
 * eval), then training on the whole input with the winner and publishing it
 * with the training pipeline of recd train, from the history already read. A winner that loses to
 * the most-popular list on validation is published blended with popularity, or as popularity alone
 * when no blend beats it: what is served never loses to popularity there. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "als.h"
#include "clock.h"
#include "cmd.h"
#include "eval.h"
#include "famtune.h"
#include "knn.h"
#include "opts.h"
#include "pipeline.h"
#include "tune.h"

enum {
    OPT_INPUT = OPT_FIRST_FREE,
    OPT_MODEL,
    OPT_BUDGET,
    OPT_REPORT,
    OPT_VALIDATION_FRACTION,
    OPT_NEIGHBORS,
    OPT_TEST_FRACTION,
    OPT_FAMILIES,
    OPT_TIE_ORDER
};

static const char tune_usage[] =
    "usage: recd tune --input FILE [column flags] --model DIR [options]\n"
    "\n"
    "Holds out each user's latest events as validation (the per-user split of recd eval),\n"
    "searches factors (16..128), regularization (10^-3..10^2, log-uniform), alpha\n"
    "(0.1..50, log-uniform) and time-decay half-life (none, 7..730 days) by successive\n"
    "halving (eta 3: the best third of each round trains longer; the first configuration\n"
    "is the default), prints every trial, compares the winner with the default, the\n"
    "most-popular list and item-kNN on validation, then trains on the whole input with\n"
    "the winner and publishes it into DIR (as recd train). If the winner loses to the\n"
    "most-popular list on validation, it tries blending popularity into its scores\n"
    "(x_u.y_i + w * popularity/max, w a multiple of the typical score) and publishes\n"
    "the best blend, or, when no blend beats the most-popular list either, a model that\n"
    "serves the most-popular list to everyone (w = inf; see recd train\n"
    "--popularity-blend). Then it chooses the model family on the same validation split:\n"
    "EASE, item-kNN and RP3beta over generic grids, blends of the best item-item family\n"
    "with each other family (ALS included; a weighted sum of normalised scores) and the\n"
    "popularity blend (training/famtune.h); it prints each family's best validation\n"
    "figure and publishes the winner. The decision is printed last.\n"
    "\n"
    "  --input FILE            purchase-history CSV ('-' = stdin)\n"
    "  --model DIR             model directory to publish into\n"
    "  --budget N              configurations to sample (default 20)\n"
    "  --seed N                sampling and factor seed (default 42)\n"
    "  --iterations N          ALS iterations of the last round and the final model\n"
    "                          (default 15)\n"
    "  --validation-fraction F each user's held-out share (default 0.2)\n"
    "  -k LIST                 list lengths of the comparison, e.g. 5,10,20 (default 10);\n"
    "                          the search maximizes NDCG@10 (the first k without 10)\n"
    "  --neighbors N           item-kNN neighbours per item (default 100)\n"
    "  --families LIST         families to choose among: als only ('als') or all\n"
    "                          ('all', the default)\n"
    "  --tie-order asc|desc    order of a user's events at the same second by item id\n"
    "                          (default asc, as recd eval)\n"
    "  --test-fraction F       hold out each user's last F first (the split of recd eval),\n"
    "                          tune on the rest (validation cut from it), print every\n"
    "                          family's and the winner's test figures, and publish the\n"
    "                          winner trained without the test part\n"
    "  --threads N             worker threads (default: online CPUs)\n"
    "  --report FILE.md        Markdown report with plots next to it\n"
    "  -h, --help              this help\n"
    "\n";

typedef struct tune_args {
    const char *input, *model, *report;
    ingest_options io;
    tune_options to;
    eval_config ec;
    double validation_fraction, test_fraction;
    uint32_t neighbors;
    int families; /* 1: choose among every family; 0: ALS only */
    ev_tie_order ties;
} tune_args;

/* Parses argv into *a. Returns 0, 2 after printing a usage error, or -1 when
 * --help was printed (exit 0). */
static int parse_args(int argc, char **argv, tune_args *a) {
    static const struct option longopts[] = {
        OPTS_INGEST_LONG,
        {"input", required_argument, 0, OPT_INPUT},
        {"model", required_argument, 0, OPT_MODEL},
        {"budget", required_argument, 0, OPT_BUDGET},
        {"report", required_argument, 0, OPT_REPORT},
        /* The ALS flags that the search does not choose. */
        {"seed", required_argument, 0, OPT_ALS_SEED},
        {"threads", required_argument, 0, OPT_ALS_THREADS},
        {"iterations", required_argument, 0, OPT_ALS_ITERATIONS},
        {"validation-fraction", required_argument, 0, OPT_VALIDATION_FRACTION},
        {"neighbors", required_argument, 0, OPT_NEIGHBORS},
        {"test-fraction", required_argument, 0, OPT_TEST_FRACTION},
        {"families", required_argument, 0, OPT_FAMILIES},
        {"tie-order", required_argument, 0, OPT_TIE_ORDER},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    ingest_options_init(&a->io);
    tune_options_init(&a->to);
    eval_config_init(&a->ec);
    /* The ALS flags land here, the search's own options after parsing. */
    als_params als;
    als_params_init(&als);
    als.iterations = a->to.iterations;
    als.seed = a->to.seed;
    float half_life = 0.0f;
    a->validation_fraction = 0.2;
    a->neighbors = 100;
    a->families = 1;
    float fraction;
    err_t e;
    optind = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        int r = opts_ingest(opt, optarg, &a->io);
        if (r == 0) r = opts_als(opt, optarg, &als, &half_life);
        if (r < 0) return 2;
        if (r > 0) continue;
        switch (opt) {
        case 'h':
            printf("%s%s", tune_usage, OPTS_INGEST_HELP);
            return -1;
        case OPT_INPUT:
            a->input = optarg;
            break;
        case OPT_MODEL:
            a->model = optarg;
            break;
        case OPT_BUDGET:
            if (opts_u32("budget", optarg, 1, 10000, &a->to.budget)) return 2;
            break;
        case OPT_REPORT:
            a->report = optarg;
            break;
        case OPT_TEST_FRACTION: {
            float f;
            if (opts_float("test-fraction", optarg, 0.0, 1.0, &f)) return 2;
            if (!(f > 0.0f && f < 1.0f)) {
                fprintf(stderr, "recd: --test-fraction: must be between 0 and 1, exclusive\n");
                return 2;
            }
            a->test_fraction = f;
            break;
        }
        case OPT_TIE_ORDER:
            if (opts_tie_order(optarg, &a->ties)) return 2;
            break;
        case OPT_FAMILIES:
            if (strcmp(optarg, "all") && strcmp(optarg, "als")) {
                fprintf(stderr, "recd: --families: 'all' or 'als', not '%s'\n", optarg);
                return 2;
            }
            a->families = strcmp(optarg, "all") == 0;
            break;
        case OPT_VALIDATION_FRACTION:
            if (opts_float("validation-fraction", optarg, 0.0, 1.0, &fraction)) return 2;
            if (!(fraction > 0.0f && fraction < 1.0f)) {
                fprintf(stderr, "recd: --validation-fraction: must be between 0 and 1, "
                                "exclusive\n");
                return 2;
            }
            a->validation_fraction = fraction;
            break;
        case 'k':
            if (eval_parse_ks(optarg, &a->ec, &e)) {
                fprintf(stderr, "recd: -k: %s\n", e.msg);
                return 2;
            }
            break;
        case OPT_NEIGHBORS:
            if (opts_u32("neighbors", optarg, 1, 100000, &a->neighbors)) return 2;
            break;
        default:
            fprintf(stderr, "%s%s", tune_usage, OPTS_INGEST_HELP);
            return 2;
        }
    }
    if (!a->input || !a->model || optind != argc) {
        fprintf(stderr, "%s%s", tune_usage, OPTS_INGEST_HELP);
        return 2;
    }
    a->to.iterations = als.iterations;
    a->to.seed = als.seed;
    a->to.threads = a->ec.threads = als.threads;
    a->to.k = a->ec.ks[0];
    for (uint32_t q = 0; q < a->ec.n_ks; q++)
        if (a->ec.ks[q] == 10) a->to.k = 10;
    return 0;
}

/* "none" or "123.4d" */
static const char *half_life_str(double days, char *buf, size_t size) {
    if (days > 0)
        snprintf(buf, size, "%.1fd", days);
    else
        snprintf(buf, size, "none");
    return buf;
}

static void print_trial(FILE *f, const tune_trial *t) {
    char hl[32];
    fprintf(f, "#%-3u f %3u  lambda %-9.4g alpha %-7.3g half-life %-7s round %u (%2u it)", t->id,
            t->c.factors, (double)t->c.regularization, (double)t->c.alpha,
            half_life_str(t->c.half_life_days, hl, sizeof hl), t->rung, t->iterations);
}

typedef struct progress_ctx {
    uint32_t k;
} progress_ctx;

static void on_trial(void *ctx, const tune_trial *t, uint32_t done, uint32_t total,
                     const tune_trial *best) {
    const progress_ctx *p = ctx;
    fprintf(stderr, "tune: [%3u/%u] ", done, total);
    print_trial(stderr, t);
    fprintf(stderr, "  NDCG@%u %.4f  %.2f s  | best of round #%u %.4f\n", p->k, t->ndcg, t->seconds,
            best->id, best->ndcg);
}

#define N_BASE 4 /* als-tuned, als-default, most-popular, item-knn */

/* One popularity blend of the winner, measured on validation. */
typedef struct blend_trial {
    float w;
    double ndcg, seconds;
} blend_trial;

/* What compare measured on validation, and the blend it decided on. */
typedef struct comparison {
    eval_metrics m[N_BASE + 1][EVAL_MAX_KS];
    eval_row rows[N_BASE + 1]; /* the base models, then als-blend when a blend is chosen */
    uint32_t n_rows;
    double *loss[2]; /* tuned, default: iterations values each */
    blend_trial blends[TUNE_BLEND_STEPS];
    uint32_t n_blends; /* 0 when the winner beats popularity alone */
    int chosen;        /* index into blends, -1 for none */
    float blend;       /* what is published: 0, blends[chosen].w or +inf */
} comparison;

/* Trials best first: those that reached a later round first, then by NDCG.
 * order_base is the qsort context, set only around the sort. */
static const tune_trial *order_base;

static int cmp_order(const void *pa, const void *pb) {
    const tune_trial *a = &order_base[*(const uint32_t *)pa],
                     *b = &order_base[*(const uint32_t *)pb];
    if (a->rung != b->rung) return (a->rung < b->rung) - (a->rung > b->rung);
    if (a->ndcg != b->ndcg) return (a->ndcg < b->ndcg) - (a->ndcg > b->ndcg);
    return (a->id > b->id) - (a->id < b->id);
}

/* One row of the trial table: trial t as searched (blend w 0), or the
 * winner t refitted at full iterations and blended with w. */
static void print_trial_row(FILE *f, const char *id, const tune_trial *t, uint32_t iterations,
                            float w, double ndcg, double seconds, int markdown) {
    char hl[32];
    half_life_str(t->c.half_life_days, hl, sizeof hl);
    if (markdown)
        fprintf(f, "| %s | %u | %.4g | %.3g | %s | %u | %u | %.4g | %.4f | %.2f |\n", id,
                t->c.factors, (double)t->c.regularization, (double)t->c.alpha, hl, t->rung,
                iterations, (double)w, ndcg, seconds);
    else
        fprintf(f, "%-7s %7u %14.4g %9.3g %9s %5u %10u %9.4g %10.4f %7.2f\n", id, t->c.factors,
                (double)t->c.regularization, (double)t->c.alpha, hl, t->rung, iterations, (double)w,
                ndcg, seconds);
}

/* The trial table, as text or Markdown, in the order of `order`, then the
 * popularity blends of the winner (rows b1, b2, ...) when there were any. */
static void print_trials(FILE *f, const tune_result *r, const uint32_t *order, uint32_t k,
                         uint32_t iterations, const comparison *cmp, int markdown) {
    if (markdown)
        fprintf(f,
                "| trial | factors | regularization | alpha | half-life | round | iterations "
                "| pop-blend | NDCG@%u | seconds |\n"
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
                k);
    else
        fprintf(f, "%-7s %7s %14s %9s %9s %5s %10s %9s %8s%-2u %7s\n", "trial", "factors",
                "regularization", "alpha", "half-life", "round", "iterations", "pop-blend", "NDCG@",
                k, "seconds");
    for (uint32_t i = 0; i < r->n; i++) {
        const tune_trial *t = &r->trials[order[i]];
        char id[24];
        snprintf(id, sizeof id, "%u%s%s", t->id, t->id == 1 ? " (default)" : "",
                 order[i] == r->best ? " *" : "");
        print_trial_row(f, id, t, t->iterations, 0.0f, t->ndcg, t->seconds, markdown);
    }
    for (uint32_t i = 0; i < cmp->n_blends; i++) {
        const blend_trial *b = &cmp->blends[i];
        char id[24];
        snprintf(id, sizeof id, "b%u%s", i + 1, (int)i == cmp->chosen ? " *" : "");
        print_trial_row(f, id, &r->trials[r->best], iterations, b->w, b->ndcg, b->seconds,
                        markdown);
    }
}

static void keep_loss(void *ctx, uint32_t iteration, double seconds, double loss) {
    (void)seconds;
    ((double *)ctx)[iteration - 1] = loss;
}

/* Trains ALS with c on the training side of the split and fills *train,
 * *valid (the matrices; train weighted as tune_evaluate does) and *f, the
 * loss per iteration into loss (iterations values). */
static int fit(const ev_set *s, const uint8_t *is_valid, const tune_config *c,
               const tune_options *o, csr *train, csr *valid, als_factors *f, double *loss,
               err_t *e) {
    float *w = malloc((s->n ? s->n : 1) * sizeof *w);
    if (!w) return err_set(e, ERR_NOMEM, "tune: out of memory for %zu events", s->n);
    eval_event_weights(s, c->half_life_days, eval_train_end(s, is_valid), w);
    int rc = eval_split_matrices(s, is_valid, w, train, valid, e);
    free(w);
    if (rc) return rc;
    als_params p;
    als_params_init(&p);
    p.factors = c->factors;
    p.regularization = c->regularization;
    p.frequency_regularization = c->frequency_regularization;
    p.alpha = c->alpha;
    p.iterations = o->iterations;
    p.threads = o->threads;
    p.seed = o->seed;
    p.progress = keep_loss;
    p.progress_ctx = loss;
    if ((rc = als_train(train, &p, f, e))) {
        csr_free(train);
        csr_free(valid);
    }
    return rc;
}

/* Index of the objective's k (a->to.k) among a->ec.ks. */
static uint32_t objective_index(const tune_args *a) {
    for (uint32_t q = 0; q < a->ec.n_ks; q++)
        if (a->ec.ks[q] == a->to.k) return q;
    return 0;
}

/* The winner's factors in mf lose to popularity (NDCG pop at the objective's
 * k): measures the blends of tune_blend_grid on the same split and fills
 * cmp's blends, chosen and blend (the best blend when it beats pop, else
 * +inf), and the als-blend row. */
static int search_blend(eval_mf *mf, const csr *train, const csr *valid, const eval_config *ec,
                        uint32_t qk, double pop, comparison *cmp, err_t *e) {
    double scale;
    int rc = tune_score_scale(mf, train, &scale, e);
    if (rc) return rc;
    float w[TUNE_BLEND_STEPS];
    tune_blend_grid(scale, w);
    fprintf(stderr,
            "tune: the winner loses to the most-popular list; trying popularity blends "
            "(typical best score %.4g)\n",
            scale);
    eval_metrics m[EVAL_MAX_KS];
    cmp->chosen = -1;
    for (uint32_t i = 0; i < TUNE_BLEND_STEPS; i++) {
        double start = clock_seconds();
        mf->blend = w[i];
        if ((rc = eval_ranking(eval_mf_recommend, mf, train, valid, ec, m, NULL, e))) break;
        blend_trial *b = &cmp->blends[cmp->n_blends++];
        *b = (blend_trial){w[i], m[qk].ndcg, clock_seconds() - start};
        fprintf(stderr, "tune: blend w %.4g  NDCG@%u %.4f  %.2f s\n", (double)b->w, ec->ks[qk],
                b->ndcg, b->seconds);
        /* Ties go to the smaller weight: the more personal list. */
        if (b->ndcg > pop && (cmp->chosen < 0 || b->ndcg > cmp->blends[cmp->chosen].ndcg)) {
            cmp->chosen = (int)i;
            memcpy(cmp->m[N_BASE], m, sizeof m);
        }
    }
    mf->blend = 0.0f;
    if (rc) return rc;
    cmp->blend = cmp->chosen >= 0 ? cmp->blends[cmp->chosen].w : INFINITY;
    if (cmp->chosen >= 0) cmp->rows[cmp->n_rows++] = (eval_row){"als-blend", cmp->m[N_BASE]};
    return ERR_OK;
}

/* Refits the winner and the default at full iterations and measures them,
 * the most-popular list and item-kNN on validation at every k (diversity
 * with the winner's factors for all); when the winner loses to the
 * most-popular list, its popularity blends too (search_blend). Fills *cmp
 * (caller frees loss). */
static int compare(const ev_set *s, const uint8_t *is_valid, const tune_args *a,
                   const tune_config *best, comparison *cmp, err_t *e) {
    static const char *names[N_BASE] = {"als-tuned", "als-default", "most-popular", "item-knn"};
    tune_config def;
    tune_default(&def);
    csr train[2] = {{0}}, valid[2] = {{0}};
    als_factors f[2] = {{0}};
    eval_popular pop = {0};
    knn_model knn = {0};
    int rc = ERR_OK;
    for (int i = 0; i < 2; i++) {
        cmp->loss[i] = calloc(a->to.iterations, sizeof *cmp->loss[i]);
        if (!cmp->loss[i]) {
            rc = err_set(e, ERR_NOMEM, "tune: out of memory");
            goto done;
        }
        fprintf(stderr, "tune: refitting the %s configuration on the training side\n",
                i ? "default" : "winning");
        if ((rc = fit(s, is_valid, i ? &def : best, &a->to, &train[i], &valid[i], &f[i],
                      cmp->loss[i], e)))
            goto done;
    }
    if ((rc = eval_popular_init(&train[0], &pop, e))) goto done;
    if ((rc = knn_fit(&train[0], a->neighbors, a->to.threads, &knn, e))) goto done;
    knn.fallback = &pop;
    eval_mf mf[2];
    for (int i = 0; i < 2; i++)
        mf[i] = (eval_mf){.user_factors = f[i].user_factors,
                          .item_factors = f[i].item_factors,
                          .factors = f[i].factors,
                          .n_items = f[i].n_items,
                          .fallback = &pop};
    eval_config ec = a->ec;
    ec.item_factors = f[0].item_factors;
    ec.factors = f[0].factors;
    eval_recommend_fn fns[N_BASE] = {eval_mf_recommend, eval_mf_recommend, eval_popular_recommend,
                                     knn_recommend};
    void *ctxs[N_BASE] = {&mf[0], &mf[1], &pop, &knn};
    for (int i = 0; i < N_BASE; i++) {
        const csr *tr = &train[i == 1], *va = &valid[i == 1];
        if ((rc = eval_ranking(fns[i], ctxs[i], tr, va, &ec, cmp->m[i], NULL, e))) goto done;
        cmp->rows[i] = (eval_row){names[i], cmp->m[i]};
    }
    cmp->n_rows = N_BASE;
    cmp->chosen = -1;
    uint32_t qk = objective_index(a);
    if (cmp->m[0][qk].ndcg < cmp->m[2][qk].ndcg &&
        (rc = search_blend(&mf[0], &train[0], &valid[0], &ec, qk, cmp->m[2][qk].ndcg, cmp, e)))
        goto done;
    if (mf[0].failed || mf[1].failed || knn.failed)
        rc = err_set(e, ERR_NOMEM, "tune: out of memory scoring items");
done:
    for (int i = 0; i < 2; i++) {
        csr_free(&train[i]);
        csr_free(&valid[i]);
        als_factors_free(&f[i]);
    }
    eval_popular_free(&pop);
    knn_free(&knn);
    return rc;
}

/* Writes the Markdown report into md (opened on a->report, closed here):
 * setup, trial table and plot, comparison on validation with plots, loss
 * curves, and what was published. Returns 0 or -1 after
 * printing why; plots gnuplot could not make are warnings. */
static int write_report(FILE *md, const tune_args *a, const ev_set *s, const tune_result *r,
                        const uint32_t *order, const comparison *cmp, const char *decision) {
    char prefix[4096];
    if (snprintf(prefix, sizeof prefix, "%s", a->report) >= (int)sizeof prefix) {
        fprintf(stderr, "recd: tune: --report path longer than %zu bytes\n", sizeof prefix - 1);
        return -1;
    }
    size_t len = strlen(prefix);
    if (len > 3 && strcmp(prefix + len - 3, ".md") == 0) prefix[len - 3] = '\0';
    const char *link = strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix;
    fprintf(md, "# ALS tuning\n\n");
    fprintf(md, "- input: `%s`, %zu events, %u users, %u items\n", a->input, s->n,
            idmap_size(s->users), idmap_size(s->items));
    fprintf(md,
            "- validation: each user's last %g of events by (time, item id ascending); the "
            "search maximizes NDCG@%u there\n",
            a->validation_fraction, a->to.k);
    fprintf(md,
            "- search: %u configurations (budget), successive halving with eta 3, %u ALS fits, "
            "seed %llu; trial 1 is the default\n",
            r->n, r->fits, (unsigned long long)a->to.seed);
    fprintf(md, "- decision: %s\n\n## Trials\n\n", decision);
    print_trials(md, r, order, a->to.k, a->to.iterations, cmp, 1);
    fprintf(md, "\n`*` = winner. A trial's NDCG is from the last round it reached; earlier "
                "rounds train fewer iterations.\n");
    if (cmp->n_blends)
        fprintf(md,
                "Rows b1..b%u: the winner (refitted at full iterations) lost to the most-popular "
                "list, so its scores were blended with popularity, x_u.y_i + w * p_i with p_i "
                "= the item's training users / the most popular item's; `*` = the blend "
                "published. No `*` among them: none beat the most-popular list, which is "
                "published instead (w = inf).\n",
                cmp->n_blends);

    err_t e;
    int warned = 0;
    /* One series per round: NDCG against regularization, the parameter
     * that matters most here. */
    uint32_t rounds = 0;
    for (uint32_t i = 0; i < r->n; i++)
        if (r->trials[i].rung + 1 > rounds) rounds = r->trials[i].rung + 1;
    double *x = malloc(((size_t)r->n * 2 + 1) * sizeof *x);
    eval_series *ser = calloc(rounds + 1, sizeof *ser);
    char(*names)[32] = calloc(rounds + 1, sizeof *names);
    if (!x || !ser || !names) {
        free(x);
        free(ser);
        free(names);
        fclose(md);
        fprintf(stderr, "recd: tune: out of memory for the report\n");
        return -1;
    }
    double *y = x + r->n;
    uint32_t at = 0;
    for (uint32_t q = 0; q < rounds; q++) {
        uint32_t begin = at;
        for (uint32_t i = 0; i < r->n; i++)
            if (r->trials[i].rung == q) {
                x[at] = r->trials[i].c.regularization;
                y[at++] = r->trials[i].ndcg;
            }
        snprintf(names[q], sizeof names[q], "stopped at round %u", q);
        ser[q] = (eval_series){names[q], x + begin, y + begin, at - begin};
    }
    char png[sizeof prefix + sizeof "-trials.png"];
    snprintf(png, sizeof png, "%s-trials.png", prefix);
    if (eval_plot_series(png, "tuning trials", "regularization (log)", "validation NDCG", 1, 1, ser,
                         rounds, &e)) {
        fprintf(md, "\n(trials: plot not made: %s)\n", e.msg);
        fprintf(stderr, "recd: tune: report: %s\n", e.msg);
        warned = 1;
    } else {
        fprintf(md, "\n![tuning trials](%s-trials.png)\n", link);
    }
    fprintf(md, "\n## Winner against the default and the baselines (validation)\n\n");
    fprintf(md, "These figures are on the split the search selected on, so als-tuned is "
                "optimistic there. div uses the winner's item factors for every model.\n\n");
    if (eval_report_models(md, prefix, link, cmp->rows, cmp->n_rows, a->ec.n_ks, &e) && !warned) {
        fprintf(stderr, "recd: tune: report: %s\n", e.msg);
        warned = 1;
    }
    fprintf(md, "\n## Training loss (training side of the split)\n");
    eval_series ls[2] = {{"als-tuned", NULL, cmp->loss[0], a->to.iterations},
                         {"als-default", NULL, cmp->loss[1], a->to.iterations}};
    double *xs = malloc(((size_t)a->to.iterations + 1) * sizeof *xs);
    if (xs) {
        for (uint32_t i = 0; i < a->to.iterations; i++)
            xs[i] = i + 1;
        ls[0].x = ls[1].x = xs;
        if (eval_report_loss(md, prefix, link, "loss", ls, 2, &e) && !warned)
            fprintf(stderr, "recd: tune: report: %s\n", e.msg);
    }
    free(xs);
    free(x);
    free(ser);
    free(names);
    if (fclose(md) != 0 || !xs) {
        fprintf(stderr, "recd: tune: cannot write %s\n", a->report);
        return -1;
    }
    fprintf(stderr, "tune: report written to %s\n", a->report);
    return 0;
}

/* Fills pp with the ALS winner c's settings and the training flags of a,
 * as recd train with these parameters would use them. */
static void winner_params(const tune_args *a, const tune_config *c, pipeline_params *pp) {
    pipeline_params_init(pp);
    pp->als.factors = c->factors;
    pp->als.regularization = c->regularization;
    pp->als.frequency_regularization = c->frequency_regularization;
    pp->als.alpha = c->alpha;
    pp->als.iterations = a->to.iterations;
    pp->als.threads = a->to.threads;
    pp->als.seed = a->to.seed;
    pp->half_life_days = (float)c->half_life_days;
}

/* Trains on the whole history s (in the order it was read) with c and
 * publishes into a->model with the popularity blend, as recd train with
 * these parameters would. Returns the exit status. */
static int publish(const tune_args *a, ev_set *s, const tune_config *c, float blend) {
    double start = clock_seconds();
    pipeline_params pp;
    winner_params(a, c, &pp);
    pp.popularity_blend = blend;
    return opts_train_publish(s, &pp, a->model, start);
}

/* The ALS winner's validation figure as it would be published (with its
 * popularity blend, or popularity alone). */
static double als_published_ndcg(const comparison *cmp, uint32_t qk) {
    if (cmp->chosen >= 0) return cmp->blends[cmp->chosen].ndcg;
    if (isinf(cmp->blend)) return cmp->m[2][qk].ndcg;
    return cmp->m[0][qk].ndcg;
}

/* The family search's inputs on the split is_held of s: the ALS winner c
 * fitted (on its decayed matrix) into *f, the undecayed training matrix
 * (what item-item families read) into *train and the held-out cells into
 * *held; caller frees all three. */
static int family_inputs(const ev_set *s, const uint8_t *is_held, const tune_config *c,
                         const tune_options *o, csr *train, csr *held, als_factors *f, err_t *e) {
    csr train_d = {0}, held_d = {0};
    double *loss = calloc(o->iterations, sizeof *loss);
    float *w = malloc((s->n ? s->n : 1) * sizeof *w);
    int rc = loss && w ? fit(s, is_held, c, o, &train_d, &held_d, f, loss, e)
                       : err_set(e, ERR_NOMEM, "tune: out of memory");
    free(loss);
    csr_free(&train_d);
    csr_free(&held_d);
    if (!rc) {
        eval_event_weights(s, 0, eval_train_end(s, is_held), w);
        if ((rc = eval_split_matrices(s, is_held, w, train, held, e))) als_factors_free(f);
    }
    free(w);
    return rc;
}

/* Chooses the family on validation (famtune_run) against the ALS winner
 * best (its published figure from cmp) and prints each family's best. */
static int choose_family(const ev_set *s, const uint8_t *is_valid, const tune_args *a,
                         const tune_config *best, const comparison *cmp, famtune_result *fr,
                         err_t *e) {
    csr train = {0}, valid = {0};
    als_factors f = {0};
    eval_popular pop = {0};
    fprintf(stderr, "tune: choosing the model family on the same validation split\n");
    int rc = family_inputs(s, is_valid, best, &a->to, &train, &valid, &f, e);
    if (rc) return rc;
    uint32_t qk = objective_index(a);
    if (!(rc = eval_popular_init(&train, &pop, e))) {
        famtune_input in = {.train = &train,
                            .valid = &valid,
                            .als = &f,
                            .als_ndcg = als_published_ndcg(cmp, qk),
                            .als_blend = cmp->blend,
                            .pop = &pop,
                            .ec = a->ec,
                            .qk = qk,
                            .threads = a->to.threads,
                            .log = stderr};
        rc = famtune_run(&in, fr, e);
    }
    if (!rc) {
        printf("\nbest validation NDCG@%u of each family:\n", a->to.k);
        char d[256];
        for (int i = 0; i < ITEMSIM_N_ALGORITHMS; i++) {
            if (fr->best[i].ndcg < 0) {
                printf("  %-8s skipped\n", itemsim_algorithm_name((itemsim_algorithm)i));
                continue;
            }
            famtune_describe(&fr->best[i], d, sizeof d);
            printf("  %-8s %.4f  %s\n", itemsim_algorithm_name((itemsim_algorithm)i),
                   fr->best[i].ndcg, d);
        }
        if (fr->blend.ndcg >= 0) {
            famtune_describe(&fr->blend, d, sizeof d);
            printf("  %-8s %.4f  %s\n", "blend", fr->blend.ndcg, d);
        }
        famtune_describe(&fr->winner, d, sizeof d);
        printf("winner on validation (%u candidates): %s, NDCG@%u %.4f\n", fr->candidates, d,
               a->to.k, fr->winner.ndcg);
    }
    eval_popular_free(&pop);
    als_factors_free(&f);
    csr_free(&train);
    csr_free(&valid);
    return rc;
}

/* --test-fraction: trains each family's best, the best blend and the
 * winner on the training part of s (is_test 0) and prints their figures
 * on the test part, with the most-popular list. */
static int test_families(const ev_set *s, const uint8_t *is_test, const tune_args *a,
                         const tune_config *best, const famtune_result *fr, err_t *e) {
    csr train = {0}, test = {0};
    als_factors f = {0};
    eval_popular pop = {0};
    enum { ROWS = ITEMSIM_N_ALGORITHMS + 3 };
    static eval_metrics m[ROWS][EVAL_MAX_KS];
    eval_row rows[ROWS];
    const famtune_choice *ch[ROWS - 1];
    const char *names[ROWS - 1] = {"als-tuned", "ease", "knn", "rp3beta", "blend", "winner"};
    uint32_t n = 0;
    fprintf(stderr, "tune: measuring the choices on the test part (each user's last %g)\n",
            a->test_fraction);
    int rc = family_inputs(s, is_test, best, &a->to, &train, &test, &f, e);
    if (rc) return rc;
    if ((rc = eval_popular_init(&train, &pop, e))) goto done;
    for (int i = 0; i < ITEMSIM_N_ALGORITHMS; i++)
        ch[i] = fr->best[i].ndcg >= 0 ? &fr->best[i] : NULL;
    ch[ITEMSIM_N_ALGORITHMS] = fr->blend.ndcg >= 0 ? &fr->blend : NULL;
    ch[ITEMSIM_N_ALGORITHMS + 1] = &fr->winner;
    for (uint32_t i = 0; i < ROWS - 1; i++) {
        if (!ch[i]) continue;
        if ((rc = famtune_measure(ch[i], &train, &test, &f, &pop, &a->ec, a->to.threads, m[n], e)))
            goto done;
        rows[n] = (eval_row){names[i], m[n]};
        n++;
    }
    eval_config ec = a->ec;
    ec.item_factors = f.item_factors;
    ec.factors = f.factors;
    if ((rc = eval_ranking(eval_popular_recommend, &pop, &train, &test, &ec, m[n], NULL, e)))
        goto done;
    rows[n] = (eval_row){"most-popular", m[n]};
    n++;
    printf("\ntest (each user's last %g, models trained on the rest with the settings chosen "
           "on validation):\n\n",
           a->test_fraction);
    eval_print_tables(stdout, rows, n, a->ec.n_ks, 0);
    uint32_t qk = objective_index(a);
    printf("\ntest: winner NDCG@%u %.4f (als-tuned %.4f, most-popular %.4f)\n", a->to.k,
           rows[n - 2].m[qk].ndcg, rows[0].m[qk].ndcg, rows[n - 1].m[qk].ndcg);
done:
    eval_popular_free(&pop);
    als_factors_free(&f);
    csr_free(&train);
    csr_free(&test);
    return rc;
}

/* Publishes an item-item winner w, with the ALS winner c's factors beside
 * it, trained on s as recd train would with the same flags. */
static int publish_family(const tune_args *a, ev_set *s, const tune_config *c,
                          const famtune_choice *w) {
    double start = clock_seconds();
    pipeline_params pp;
    winner_params(a, c, &pp);
    pp.popularity_blend = w->popularity_blend;
    pp.item = w->item;
    pp.with = w->with;
    pp.blend_share = w->share;
    return opts_train_publish(s, &pp, a->model, start);
}

int cmd_tune(int argc, char **argv) {
    tune_args a;
    int r = parse_args(argc, argv, &a);
    if (r) return r < 0 ? 0 : r;
    /* Opened first, so a report that cannot be written fails before the
     * search, not after it. */
    FILE *md = a.report ? fopen(a.report, "w") : NULL;
    if (a.report && !md) {
        fprintf(stderr, "recd: tune: --report: %s: %s\n", a.report, strerror(errno));
        return 1;
    }
    ev_set s;
    if (opts_load_history(a.input, &a.io, &s)) {
        if (md) fclose(md);
        return 1;
    }
    int status = 1;
    err_t e = {0};
    uint64_t *user_start = NULL;
    uint8_t *is_valid = NULL;
    uint32_t *order = NULL;
    tune_result res = {0};
    comparison cmp = {0};
    famtune_result fr;
    memset(&fr, 0, sizeof fr);
    uint8_t *is_test = NULL;
    ev_set tr = {0};   /* --test-fraction: the training part (events only; maps are s's) */
    ev_set *work = &s; /* what the search and the publication see */
    /* The search needs the events by user and time; the winner is trained
     * on them in the order read, as recd train would (the fingerprint and
     * the summing of each cell follow that order). */
    ev_event *as_read = malloc((s.n ? s.n : 1) * sizeof *as_read);
    if (!as_read) {
        err_set(&e, ERR_NOMEM, "tune: out of memory for %zu events", s.n);
        goto fail;
    }
    memcpy(as_read, s.events, s.n * sizeof *as_read);
    if (ev_set_sort_by_user_time(&s, a.ties, &user_start, &e)) goto fail;
    if (a.test_fraction > 0) {
        /* The test part is cut first and never seen by the search. */
        is_test = malloc(s.n ? s.n : 1);
        tr = s;
        tr.events = malloc((s.n ? s.n : 1) * sizeof *tr.events);
        if (!is_test || !tr.events) {
            err_set(&e, ERR_NOMEM, "tune: out of memory for %zu events", s.n);
            goto fail;
        }
        eval_split_last_fraction(&s, user_start, a.test_fraction, is_test);
        tr.n = 0;
        for (size_t i = 0; i < s.n; i++)
            if (!is_test[i]) tr.events[tr.n++] = s.events[i];
        tr.cap = tr.n;
        free(user_start);
        user_start = NULL;
        if (ev_set_sort_by_user_time(&tr, a.ties, &user_start, &e)) goto fail;
        work = &tr;
        fprintf(stderr, "tune: %zu of %zu events held out as test (each user's last %g)\n",
                s.n - tr.n, s.n, a.test_fraction);
    }
    is_valid = malloc(s.n ? s.n : 1);
    if (!is_valid) {
        err_set(&e, ERR_NOMEM, "tune: out of memory for %zu events", s.n);
        goto fail;
    }
    eval_split_last_fraction(work, user_start, a.validation_fraction, is_valid);
    size_t n_valid = 0;
    for (size_t i = 0; i < work->n; i++)
        n_valid += is_valid[i];
    if (n_valid == 0 || n_valid == work->n) {
        err_set(&e, ERR_INVALID, "tune: the split leaves %s (too few events per user?)",
                n_valid ? "nothing to train on" : "no validation event");
        goto fail;
    }
    fprintf(stderr,
            "tune: %zu events, %u users, %u items; %zu validation events (each user's last "
            "%g); %u configurations, objective NDCG@%u\n",
            work->n, idmap_size(s.users), idmap_size(s.items), n_valid, a.validation_fraction,
            a.to.budget, a.to.k);
    progress_ctx pc = {a.to.k};
    a.to.progress = on_trial;
    a.to.progress_ctx = &pc;
    if (tune_run(work, is_valid, &a.to, &res, &e)) goto fail;
    order = malloc(res.n * sizeof *order);
    if (!order) {
        err_set(&e, ERR_NOMEM, "tune: out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < res.n; i++)
        order[i] = i;
    order_base = res.trials;
    qsort(order, res.n, sizeof *order, cmp_order);
    order_base = NULL;
    const tune_trial *best = &res.trials[res.best];
    if (compare(work, is_valid, &a, &best->c, &cmp, &e)) goto fail;
    printf("\n");
    print_trials(stdout, &res, order, a.to.k, a.to.iterations, &cmp, 0);
    printf("\nvalidation (each user's last %g; als-tuned is measured on the split it was "
           "selected on):\n\n",
           a.validation_fraction);
    eval_print_tables(stdout, cmp.rows, cmp.n_rows, a.ec.n_ks, 0);
    uint32_t qk = objective_index(&a);
    double tuned = cmp.m[0][qk].ndcg, def = cmp.m[1][qk].ndcg, pop = cmp.m[2][qk].ndcg;
    char hl[32], what[160], decision[768];
    if (cmp.blend == 0.0f)
        snprintf(what, sizeof what, "pure ALS (validation NDCG@%u %.4f)", a.to.k, tuned);
    else if (isinf(cmp.blend))
        snprintf(what, sizeof what,
                 "popularity fallback, popularity blend inf: every answer is the most-popular "
                 "list (ALS alone %.4f and every blend lose to it)",
                 tuned);
    else
        snprintf(what, sizeof what,
                 "ALS blended with popularity, popularity blend %.4g (validation NDCG@%u %.4f; "
                 "ALS alone %.4f)",
                 (double)cmp.blend, a.to.k, cmp.blends[cmp.chosen].ndcg, tuned);
    snprintf(decision, sizeof decision,
             "published trial %u to `%s` as %s: factors %u, regularization %.4g (+ %.3g per "
             "item), alpha %.3g, half-life %s, %u iterations (validation NDCG@%u: default "
             "%.4f; most-popular %.4f)",
             best->id, a.model, what, best->c.factors, (double)best->c.regularization,
             (double)best->c.frequency_regularization, (double)best->c.alpha,
             half_life_str(best->c.half_life_days, hl, sizeof hl), a.to.iterations, a.to.k, def,
             pop);
    printf("\nsummary: %u configurations, %u ALS fits; winner trial %u NDCG@%u %.4f vs default "
           "%.4f vs most-popular %.4f\n%s: %s\n",
           res.n, res.fits, best->id, a.to.k, tuned, def, pop, a.families ? "als" : "decision",
           what);
    if (md) {
        int bad = write_report(md, &a, &s, &res, order, &cmp, decision);
        md = NULL;
        if (bad) goto out;
    }
    /* Without the family search (or when ALS wins it) ALS is published. */
    fr.best[ITEMSIM_ALS].item.algorithm = ITEMSIM_ALS;
    fr.best[ITEMSIM_ALS].popularity_blend = cmp.blend;
    fr.best[ITEMSIM_ALS].ndcg = als_published_ndcg(&cmp, qk);
    for (int i = ITEMSIM_EASE; i < ITEMSIM_N_ALGORITHMS; i++)
        fr.best[i].ndcg = -1;
    fr.blend.ndcg = -1;
    fr.winner = fr.best[ITEMSIM_ALS];
    if (a.families && choose_family(work, is_valid, &a, &best->c, &cmp, &fr, &e)) goto fail;
    int item_won = fr.winner.item.algorithm != ITEMSIM_ALS;
    char chosen[256];
    famtune_describe(&fr.winner, chosen, sizeof chosen);
    if (a.families)
        printf("decision: %s, validation NDCG@%u %.4f (ALS as published: %.4f)\n",
               item_won ? chosen : what, a.to.k, fr.winner.ndcg, fr.best[ITEMSIM_ALS].ndcg);
    if (is_test && test_families(&s, is_test, &a, &best->c, &fr, &e)) goto fail;
    fprintf(stderr, "tune: training the winner on %zu events, to publish as %s\n", work->n,
            item_won ? chosen : what);
    /* recd train's order (the fingerprint and the summing of each cell
     * follow it); --test-fraction publishes the training part as sorted. */
    if (!is_test) memcpy(s.events, as_read, s.n * sizeof *s.events);
    status = item_won ? publish_family(&a, work, &best->c, &fr.winner)
                      : publish(&a, work, &best->c, cmp.blend);
    goto out;
fail:
    fprintf(stderr, "recd: tune: %s\n", e.msg);
out:
    if (md) fclose(md);
    free(cmp.loss[0]);
    free(cmp.loss[1]);
    free(order);
    tune_result_free(&res);
    free(is_valid);
    free(user_start);
    free(as_read);
    free(is_test);
    free(tr.events);
    ev_set_free(&s);
    return status;
}
