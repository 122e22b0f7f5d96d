/* recd report experiment: CTR and conversion per variant from the feedback a
 * server recorded, with confidence intervals and a two-proportion test of
 * each variant against control. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "evstore.h"
#include "experiment.h"
#include "opts.h"
#include "stats.h"

static const char report_usage[] =
    "usage: recd report experiment --events DIR [--alpha A] [--control NAME]\n"
    "Reads the feedback that `recd serve --events DIR` stored (RecordFeedback) and prints per\n"
    "variant: impressions, clicks, carts, conversions, CTR and conversion rate (clicks and\n"
    "conversions per impression) with (1 - A) Wilson intervals, and a two-proportion z-test of\n"
    "each variant against the control variant: significant when p < A (default 0.05).\n";

#define REPORT_MAX_VARIANTS 16
#define REPORT_NAME 33

/* Feedback counts of one variant, by feedback type (EXP_FEEDBACK_*). */
typedef struct variant_counts {
    char name[REPORT_NAME];
    uint64_t n[EXP_FEEDBACK_END];
} variant_counts;

typedef struct tally {
    variant_counts v[REPORT_MAX_VARIANTS];
    uint32_t n;
    uint64_t unreadable; /* records whose request id names no variant */
} tally;

/* Counts one record: its "user" is the request id "<variant>:<hex>". */
static int tally_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    tally *t = ctx;
    const char *colon = memchr(ev->user_id, ':', ev->user_len);
    size_t len = colon ? (size_t)(colon - ev->user_id) : 0;
    if (!len || len >= REPORT_NAME || !exp_feedback_word(ev->type)) {
        t->unreadable++;
        return 0;
    }
    uint32_t i = 0;
    while (i < t->n && (strlen(t->v[i].name) != len || memcmp(t->v[i].name, ev->user_id, len)))
        i++;
    if (i == t->n) {
        if (t->n == REPORT_MAX_VARIANTS) {
            t->unreadable++;
            return 0;
        }
        memcpy(t->v[i].name, ev->user_id, len);
        t->v[i].name[len] = '\0';
        t->n++;
    }
    t->v[i].n[ev->type]++;
    return 0;
}

static void print_rate(const char *what, uint64_t x, uint64_t n, double z) {
    double lo, hi;
    stats_wilson(x, n, z, &lo, &hi);
    printf("  %-11s %8.4f%%  [%.4f%%, %.4f%%]", what, n ? 100.0 * (double)x / (double)n : 0.0,
           100 * lo, 100 * hi);
}

enum { OPT_EVENTS = OPT_FIRST_FREE, OPT_ALPHA, OPT_CONTROL };

int cmd_report(int argc, char **argv) {
    static const struct option longopts[] = {{"events", required_argument, 0, OPT_EVENTS},
                                             {"alpha", required_argument, 0, OPT_ALPHA},
                                             {"control", required_argument, 0, OPT_CONTROL},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *events_dir = NULL, *control = "control";
    float alpha = 0.05f;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_EVENTS:
            events_dir = optarg;
            break;
        case OPT_ALPHA:
            if (opts_float("alpha", optarg, 1e-9, 0.5, &alpha)) return 2;
            break;
        case OPT_CONTROL:
            control = optarg;
            break;
        case 'h':
            fputs(report_usage, stdout);
            return 0;
        default:
            fputs(report_usage, stderr);
            return 2;
        }
    }
    if (!events_dir || optind != argc - 1 || strcmp(argv[optind], "experiment")) {
        fputs(report_usage, stderr);
        return 2;
    }
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/feedback", events_dir) >= (int)sizeof dir) return 2;
    evstore *store;
    err_t e;
    tally t = {0};
    if (evstore_open(dir, NULL, &store, &e)) {
        fprintf(stderr, "recd: feedback store %s: %s\n", dir, e.msg);
        return 1;
    }
    int rc = evstore_scan(store, 1, tally_visit, &t, &e);
    evstore_close(store);
    if (rc) {
        fprintf(stderr, "recd: feedback store %s: %s\n", dir, e.msg);
        return 1;
    }
    int base = -1;
    for (uint32_t i = 0; i < t.n; i++)
        if (!strcmp(t.v[i].name, control)) base = (int)i;
    double z = stats_z_for_alpha(alpha);
    printf("experiment report: %u variants, alpha %g (%.0f%% intervals)%s\n", t.n, alpha,
           100 * (1 - alpha), t.unreadable ? ", some records unreadable" : "");
    for (uint32_t i = 0; i < t.n; i++) {
        const variant_counts *v = &t.v[i];
        printf("%s: impressions %llu, clicks %llu, carts %llu, conversions %llu\n", v->name,
               (unsigned long long)v->n[EXP_FEEDBACK_IMPRESSION],
               (unsigned long long)v->n[EXP_FEEDBACK_CLICK],
               (unsigned long long)v->n[EXP_FEEDBACK_CART],
               (unsigned long long)v->n[EXP_FEEDBACK_CONVERSION]);
        print_rate("CTR", v->n[EXP_FEEDBACK_CLICK], v->n[EXP_FEEDBACK_IMPRESSION], z);
        print_rate("conversion", v->n[EXP_FEEDBACK_CONVERSION], v->n[EXP_FEEDBACK_IMPRESSION], z);
        printf("\n");
        if (base < 0 || (int)i == base) continue;
        const variant_counts *c = &t.v[base];
        static const struct {
            const char *what;
            int type;
        } rates[] = {{"CTR", EXP_FEEDBACK_CLICK}, {"conversion", EXP_FEEDBACK_CONVERSION}};
        for (size_t r = 0; r < 2; r++) {
            double zz, p;
            stats_two_proportion(v->n[rates[r].type], v->n[EXP_FEEDBACK_IMPRESSION],
                                 c->n[rates[r].type], c->n[EXP_FEEDBACK_IMPRESSION], &zz, &p);
            printf("  %s vs %s: z = %+.3f, p = %.4g: %s\n", rates[r].what, control, zz, p,
                   p < alpha ? "significant" : "not significant");
        }
    }
    if (base < 0 && t.n) printf("(no variant named %s: no tests against control)\n", control);
    return 0;
}
