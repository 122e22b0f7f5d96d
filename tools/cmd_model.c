/* recd model: manage the versions in a model directory. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "cmd.h"
#include "model.h"
#include "opts.h"

static const char model_usage[] =
    "usage: recd model ACTION --model DIR | recd model status --bus URLS\n"
    "  versions   list the published versions, oldest first; * marks the current one\n"
    "  rollback   make the version published before the current one current again; a server\n"
    "             serving DIR switches to it within its --reload-interval\n"
    "  announce   (with --bus) tell every replica of a cluster to serve DIR's current version;\n"
    "             each makes it current in its own model directory once the version folder\n"
    "             is there (copy it first: scripts/model-push.sh --announce does both)\n"
    "  status     (with --bus) the version announced and the one each replica serves; exits 1\n"
    "             unless every replica serves the announced version\n"
    "  --bus URLS         nats://HOST:PORT[,...] of the cluster's event bus\n"
    "  --bus-stream NAME  its stream (default recd)\n";

enum { OPT_MODEL = OPT_FIRST_FREE, OPT_BUS, OPT_BUS_STREAM };

static int model_announce(const char *dir, const char *urls, const char *stream) {
    err_t e;
    char version[MODEL_VERSION_MAX];
    uint64_t revision;
    if (model_current_version(dir, version, &e) ||
        bus_announce(urls, stream, version, &revision, &e)) {
        fprintf(stderr, "recd: announce: %s\n", e.msg);
        return 1;
    }
    fprintf(stderr, "model: %s announced on %s (revision %llu)\n", version, stream,
            (unsigned long long)revision);
    printf("%s\n", version);
    return 0;
}

static int model_status(const char *urls, const char *stream) {
    err_t e;
    bus_models m;
    if (bus_models_read(urls, stream, &m, &e)) {
        fprintf(stderr, "recd: status: %s\n", e.msg);
        return 1;
    }
    int agree = m.announced[0] != '\0' && m.n_served > 0;
    printf("announced  %s\n", m.announced[0] ? m.announced : "(none)");
    for (size_t i = 0; i < m.n_served; i++) {
        int same = !strcmp(m.served[i].version, m.announced);
        agree &= same;
        printf("%-10s %s%s (reported %llds ago)\n", m.served[i].replica, m.served[i].version,
               same ? "" : "  <- not the announced version",
               (long long)(time(NULL) - m.served[i].at_unix));
    }
    printf("%s\n", agree ? "all replicas serve the announced version"
                         : "the replicas do not all serve the announced version");
    bus_models_free(&m);
    return agree ? 0 : 1;
}

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
    static const struct option longopts[] = {{"model", required_argument, 0, OPT_MODEL},
                                             {"bus", required_argument, 0, OPT_BUS},
                                             {"bus-stream", required_argument, 0, OPT_BUS_STREAM},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *dir = NULL, *urls = NULL, *stream = "recd";
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_MODEL:
            dir = optarg;
            break;
        case OPT_BUS:
            urls = optarg;
            break;
        case OPT_BUS_STREAM:
            stream = optarg;
            break;
        case 'h':
            fputs(model_usage, stdout);
            return 0;
        default:
            fputs(model_usage, stderr);
            return 2;
        }
    }
    const char *action = optind == argc - 1 ? argv[optind] : "";
    int on_bus = !strcmp(action, "announce") || !strcmp(action, "status");
    if (!action[0] || (!dir && strcmp(action, "status")) || (on_bus && !urls)) {
        fputs(model_usage, stderr);
        return 2;
    }
    if (!strcmp(action, "status")) return model_status(urls, stream);
    if (!strcmp(action, "announce")) return model_announce(dir, urls, stream);
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
