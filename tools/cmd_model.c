/* recd model: manage the versions in a model directory. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "model.h"
#include "opts.h"

static const char model_usage[] =
    "usage: recd model ACTION --model DIR\n"
    "  versions   list the published versions, oldest first; * marks the current one\n"
    "  rollback   make the version published before the current one current again; a server\n"
    "             serving DIR switches to it within its --reload-interval\n";

enum { OPT_MODEL = OPT_FIRST_FREE };

static int model_list_versions(const char *dir) {
    err_t e;
    char(*versions)[MODEL_VERSION_MAX];
    size_t n;
    char current[MODEL_VERSION_MAX] = "";
    if (model_versions(dir, &versions, &n, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        return 1;
    }
    model_current_version(dir, current, NULL);
    for (size_t i = 0; i < n; i++)
        printf("%s %s\n", strcmp(versions[i], current) ? " " : "*", versions[i]);
    free(versions);
    return 0;
}

int cmd_model(int argc, char **argv) {
    static const struct option longopts[] = {
        {"model", required_argument, 0, OPT_MODEL}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *dir = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_MODEL:
            dir = optarg;
            break;
        case 'h':
            fputs(model_usage, stdout);
            return 0;
        default:
            fputs(model_usage, stderr);
            return 2;
        }
    }
    if (!dir || optind != argc - 1) {
        fputs(model_usage, stderr);
        return 2;
    }
    const char *action = argv[optind];
    if (!strcmp(action, "versions")) return model_list_versions(dir);
    if (strcmp(action, "rollback")) {
        fprintf(stderr, "recd: unknown model action '%s'\n%s", action, model_usage);
        return 2;
    }
    err_t e;
    char before[MODEL_VERSION_MAX] = "", now[MODEL_VERSION_MAX];
    model_current_version(dir, before, NULL);
    if (model_rollback(dir, now, &e)) {
        fprintf(stderr, "recd: rollback: %s\n", e.msg);
        return 1;
    }
    fprintf(stderr, "model: %s is current again (was %s)\n", now, before);
    printf("%s\n", now);
    return 0;
}
