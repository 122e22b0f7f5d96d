/* recd: one binary, git-style subcommands. */
#include <stdio.h>
#include <string.h>

#include "als.h"
#include "cmd.h"
#include "cpu.h"
#include "panel.h"
#include "recd_version.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"gen", cmd_gen, "write a synthetic shop's purchase history (CSV)"},
    {"train", cmd_train, "train a model from a purchase history and publish it"},
    {"eval", cmd_eval, "evaluate ALS and baselines on a temporal split"},
    {"tune", cmd_tune, "search ALS hyperparameters on a validation split, then train and publish"},
    {"serve", cmd_serve, "serve a published model over gRPC"},
    {"query", cmd_query, "call a running server (recommend, churn, targets, event, ...)"},
    {"inspect", cmd_inspect, "show a published model's metadata"},
    {"report", cmd_report, "A/B experiment report from recorded feedback"},
    {"model", cmd_model, "list a model directory's versions, roll back to the previous one"},
    {"events", cmd_events, "export or summarize the event store (export, stats, bench)"},
    {"bench", cmd_bench, "benchmark pieces of scripts/bench.sh (model, score, train, ...)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: recd COMMAND [options]   (recd COMMAND --help for its options)\n"
               "       recd --version\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

/* What was built and which kernel copies run on this CPU (RECD_KERNEL may
 * have asked for a lower level than the best). */
static void version(void) {
    printf("recd %s (git %s)\n", RECD_VERSION, RECD_GIT_REVISION);
    printf("compiler: %s, -march %s\n", RECD_COMPILER, RECD_BUILD_MARCH);
    printf("kernels: scoring %s, als %s (this CPU supports up to %s)\n", panel_scores_kernel(),
           als_train_kernel(), cpu_level_name(cpu_best()));
}

int main(int argc, char **argv) {
    err_t e;
    if (cpu_init(&e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return 2;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        version();
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "recd: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
