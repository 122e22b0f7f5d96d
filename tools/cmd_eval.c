/* recd eval: offline evaluation of implicit ALS against the most-popular
 * baseline on a per-user temporal split of a purchase history (the protocol
 * of training/eval.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "als.h"
#include "cmd.h"
#include "eval.h"
#include "opts.h"

enum {
    OPT_INPUT = OPT_FIRST_FREE,
    OPT_TEST_FRACTION,
    OPT_FACTORS,
    OPT_ITERATIONS,
    OPT_REGULARIZATION,
    OPT_ALPHA,
    OPT_THREADS,
    OPT_SEED,
    OPT_TIE_ORDER
};

static void usage(FILE *out) {
    fprintf(out,
            "usage: recd eval --input FILE [options]\n"
            "\n"
            "Splits each user's history in time (the first part trains, the last\n"
            "--test-fraction is held out), trains implicit ALS on the training part and\n"
            "reports ranking metrics at k for ALS and for the most-popular baseline.\n"
            "Every event counts as one interaction; top-k lists exclude training items.\n"
            "\n"
            "  --input FILE          purchase-history CSV ('-' = stdin); needs a header row\n"
            "  --test-fraction F     held-out fraction of each user's events (default 0.2)\n"
            "  -k N                  list length (default 10)\n"
            "  --factors N           ALS factors (default 64)\n"
            "  --iterations N        ALS iterations (default 15)\n"
            "  --regularization L    ALS lambda (default 0.01)\n"
            "  --alpha A             confidence 1 + A * count (default 1.0)\n"
            "  --threads N           worker threads (default: online CPUs)\n"
            "  --seed N              factor initialization seed (default 42)\n"
            "  --tie-order asc|desc  order of a user's events at the same second by item id\n"
            "                        (default asc, the protocol of README; desc reproduces the\n"
            "                        published Online Retail reference split)\n"
            "  -h, --help            this help\n"
            "\n"
            "%s\n"
            "A header-less file such as MovieLens u.data can be given a header on the fly:\n"
            "  (printf 'user_id\\titem_id\\trating\\ttimestamp\\n'; cat u.data) |\n"
            "      recd eval --input - --delimiter \"$(printf '\\t')\"\n",
            OPTS_INGEST_HELP);
}

static void print_progress(void *ctx, uint32_t iteration, double seconds, double loss) {
    const uint32_t *total = ctx;
    fprintf(stderr, "als: iteration %u/%u  %.3f s  loss %.6f\n", iteration, *total, seconds, loss);
}

static void print_row(const char *name, const eval_metrics *m) {
    printf("%-14s %8.4f %8.4f %8.4f %8.4f %8.4f %9.4f %7u\n", name, m->precision, m->recall,
           m->ndcg, m->map, m->hit_rate, m->item_coverage, m->users);
}

typedef struct eval_args {
    const char *input;
    ingest_options io;
    double test_fraction;
    uint32_t k;
    als_params als;
    ev_tie_order ties;
} eval_args;

/* Parses argv into *a. Returns 0, 2 after printing a usage error, or -1 when
 * --help was printed (exit 0). */
static int parse_args(int argc, char **argv, eval_args *a) {
    static const struct option longopts[] = {
        OPTS_INGEST_LONG,
        {"input", required_argument, 0, OPT_INPUT},
        {"test-fraction", required_argument, 0, OPT_TEST_FRACTION},
        {"factors", required_argument, 0, OPT_FACTORS},
        {"iterations", required_argument, 0, OPT_ITERATIONS},
        {"regularization", required_argument, 0, OPT_REGULARIZATION},
        {"alpha", required_argument, 0, OPT_ALPHA},
        {"threads", required_argument, 0, OPT_THREADS},
        {"seed", required_argument, 0, OPT_SEED},
        {"tie-order", required_argument, 0, OPT_TIE_ORDER},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    ingest_options_init(&a->io);
    als_params_init(&a->als);
    a->test_fraction = 0.2;
    a->k = 10;
    float fraction;
    /* 0 makes glibc's getopt start over, so cmd_eval can run twice in one
     * process (tests). */
    optind = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        int r = opts_ingest(opt, optarg, &a->io);
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
            if (opts_float("test-fraction", optarg, 0.0, 1.0, &fraction)) return 2;
            if (!(fraction > 0.0f && fraction < 1.0f)) {
                fprintf(stderr, "recd: --test-fraction: must be between 0 and 1, exclusive\n");
                return 2;
            }
            a->test_fraction = fraction;
            break;
        case 'k':
            if (opts_u32("k", optarg, 1, 100000, &a->k)) return 2;
            break;
        case OPT_FACTORS:
            if (opts_u32("factors", optarg, 1, 1024, &a->als.factors)) return 2;
            break;
        case OPT_ITERATIONS:
            if (opts_u32("iterations", optarg, 1, 100000, &a->als.iterations)) return 2;
            break;
        case OPT_REGULARIZATION:
            if (opts_float("regularization", optarg, 0.0, 1e9, &a->als.regularization)) return 2;
            break;
        case OPT_ALPHA:
            if (opts_float("alpha", optarg, 0.0, 1e9, &a->als.alpha)) return 2;
            break;
        case OPT_THREADS:
            if (opts_u32("threads", optarg, 1, 256, &a->als.threads)) return 2;
            break;
        case OPT_SEED:
            if (opts_u64("seed", optarg, 0, UINT64_MAX, &a->als.seed)) return 2;
            break;
        case OPT_TIE_ORDER:
            if (strcmp(optarg, "asc") && strcmp(optarg, "desc")) {
                fprintf(stderr, "recd: --tie-order: 'asc' or 'desc', not '%s'\n", optarg);
                return 2;
            }
            a->ties = optarg[0] == 'a' ? EV_TIES_ASCENDING : EV_TIES_DESCENDING;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "recd: eval: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!a->input) {
        fprintf(stderr, "recd: eval: --input is required (see recd eval --help)\n");
        return 2;
    }
    return 0;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int r = parse_args(argc, argv, &a);
    if (r) return r < 0 ? 0 : r;

    ev_set s;
    if (opts_load_history(a.input, &a.io, &s)) return 1;
    int status = 1;
    err_t e = {0};
    uint64_t *user_start = NULL;
    uint8_t *is_test = NULL;
    csr train = {0}, test = {0};
    als_factors f = {0};
    eval_popular pop = {0};

    if (ev_set_sort_by_user_time(&s, a.ties, &user_start, &e)) goto fail;
    is_test = malloc(s.n ? s.n : 1);
    if (!is_test) {
        err_set(&e, ERR_NOMEM, "eval: out of memory for %zu events", s.n);
        goto fail;
    }
    eval_split_last_fraction(&s, user_start, a.test_fraction, is_test);
    if (eval_split_matrices(&s, is_test, &train, &test, &e)) goto fail;

    uint32_t cold = 0, evaluated = 0;
    size_t n_test = 0;
    for (size_t i = 0; i < s.n; i++)
        n_test += is_test[i];
    for (uint32_t u = 0; u < train.n_rows; u++) {
        int has_test = test.indptr[u + 1] > test.indptr[u];
        evaluated += has_test;
        cold += has_test && train.indptr[u + 1] == train.indptr[u];
    }
    fprintf(stderr,
            "eval: %zu events, %u users, %u items; %zu train / %zu test events "
            "(%llu / %llu user-item pairs); %u users with test events\n",
            s.n, train.n_rows, train.n_cols, s.n - n_test, n_test,
            (unsigned long long)csr_nnz(&train), (unsigned long long)csr_nnz(&test), evaluated);
    if (evaluated == 0) {
        err_set(&e, ERR_INVALID, "eval: no user has a test event (too few events per user?)");
        goto fail;
    }

    uint32_t total_iterations = a.als.iterations;
    a.als.progress = print_progress;
    a.als.progress_ctx = &total_iterations;
    fprintf(stderr, "als: factors %u, regularization %g, alpha %g, %u iterations, %u threads\n",
            a.als.factors, (double)a.als.regularization, (double)a.als.alpha, a.als.iterations,
            a.als.threads);
    if (als_train(&train, &a.als, &f, &e)) goto fail;

    if (eval_popular_init(&train, &pop, &e)) goto fail;
    eval_mf mf = {.user_factors = f.user_factors,
                  .item_factors = f.item_factors,
                  .factors = f.factors,
                  .n_items = f.n_items,
                  .fallback = &pop};
    eval_metrics m_als, m_pop;
    if (eval_ranking(eval_mf_recommend, &mf, &train, &test, a.k, a.als.threads, &m_als, &e))
        goto fail;
    if (mf.failed) {
        err_set(&e, ERR_NOMEM, "eval: out of memory scoring items");
        goto fail;
    }
    if (eval_ranking(eval_popular_recommend, &pop, &train, &test, a.k, a.als.threads, &m_pop, &e))
        goto fail;

    char h[5][16];
    const char *names[5] = {"P", "R", "NDCG", "MAP", "HR"};
    for (int i = 0; i < 5; i++)
        snprintf(h[i], sizeof h[i], "%s@%u", names[i], a.k);
    printf("\n%-14s %8s %8s %8s %8s %8s %9s %7s\n", "model", h[0], h[1], h[2], h[3], h[4],
           "coverage", "users");
    print_row("als", &m_als);
    print_row("most-popular", &m_pop);
    printf("\nBinary relevance (relevant = the user's distinct test items); P = hits/k, "
           "R = hits/relevant,\nNDCG and MAP as benfred/implicit's ranking_metrics_at_k; "
           "coverage = distinct recommended items / items.\n");
    if (cold)
        printf("%u evaluated users have no training events: ALS serves them the most-popular "
               "list,\nas the server does for unknown users.\n",
               cold);
    double lift = m_pop.ndcg > 0 ? 100.0 * (m_als.ndcg / m_pop.ndcg - 1.0) : NAN;
    printf("\nsummary: NDCG@%u als %.4f vs most-popular %.4f (%+.1f%%), %u users, final loss "
           "%.6f\n",
           a.k, m_als.ndcg, m_pop.ndcg, lift, m_als.users, f.loss);
    status = 0;
fail:
    if (status) fprintf(stderr, "recd: eval: %s\n", e.msg);
    eval_popular_free(&pop);
    als_factors_free(&f);
    csr_free(&train);
    csr_free(&test);
    free(is_test);
    free(user_start);
    ev_set_free(&s);
    return status;
}
