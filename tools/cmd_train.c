#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "churn.h"
#include "clock.h"
#include "cmd.h"
#include "busload.h"
#include "catalog.h"
#include "model.h"
#include "opts.h"
#include "pipeline.h"

static const char train_usage[] =
    "usage: recd train --input FILE.csv [--events DIR | --bus URLS] --model DIR [options]\n"
    "Trains implicit-feedback ALS on a purchase history and publishes the model into DIR\n"
    "(atomically: a server serving DIR switches to it without a restart).\n"
    "  --input FILE         purchase history CSV ('-' = stdin)\n"
    "  --events DIR         also train on the events a server recorded (recd serve --events),\n"
    "                       each weighted by its type (--event-weights); either input may be "
    "alone\n"
    "  --bus URLS           also train on the events of a cluster's event bus (recd serve\n"
    "                       --bus), members forgotten there left out; nats://HOST:PORT[,...].\n"
    "                       Alone: every event of the JetStream stream. With --input (the\n"
    "                       purchase histories the model in DIR was trained on): the events\n"
    "                       dated after that model's data_until, or after the end of --input\n"
    "                       when earlier (all when DIR has no model); ForgetUser always from\n"
    "                       the whole stream\n"
    "  --bus-from-start     with --input and --bus: every event of the stream all the same\n"
    "  --bus-stream NAME    the stream (default recd)\n"
    "  --event-weights LIST weight of each event type in purchases, default\n"
    "                       view=0.1,cart=0.3,purchase=1,favorite=0.5\n"
    "  --model DIR          model directory (created if missing)\n"
    "  --factors N          latent factors (default 64)\n"
    "  --iterations N       ALS iterations (default 15)\n"
    "  --regularization F   L2 regularization lambda (default 0.01)\n"
    "  --alpha F            confidence c = 1 + alpha * purchases (default 1.0)\n"
    "  --frequency-regularization F  lambda of a user or item = regularization + F x its\n"
    "                       purchases (Rendle et al. 2022; default 0)\n"
    "  --half-life DAYS     time decay: an event counts 0.5^(age / DAYS) of its weight, age\n"
    "                       from the latest event of the input (default 0: no decay)\n"
    "  --threads N          training threads (default: number of CPUs)\n"
    "  --seed N             random seed of the initial factors (default 42)\n"
    "  --popularity-blend W serve x_u.y_i + W * (item popularity / the largest) as the\n"
    "                       personalized score; 'inf' = the most-popular list for everyone\n"
    "                       (default 0: pure ALS; recd tune chooses it on validation)\n"
    "Model family (README \"Model families\"; the ALS factors are trained for every family):\n"
    "%s"
    "  --neighbors N        entries kept per item by knn, rp3beta and pruned ease (default 100)\n"
    "  --blend-with NAME    blend a second family: als, ease, knn or rp3beta (its flags are\n"
    "                       those above: one lambda, one neighbour count, one rp3 pair)\n"
    "  --blend-share T      score = (1 - T) * first / its scale + T * second / its scale\n"
    "                       (scale: the mean best score of a user; default 0: no blend)\n"
    "Bought together (SimilarItems relation BOUGHT_TOGETHER; README \"Frequently bought\n"
    "together\"):\n"
    "%s"
    "Buy it again (Recommend mode BUY_AGAIN and include_purchased; README \"Buy it again\"):\n"
    "%s"
    "Churn (trained beside the recommendation model from the --input purchases, published\n"
    "with it; the evaluation report goes to stderr):\n"
    "  --churn-horizon Nd   churned = no purchase within N days (e.g. 90d); turns churn on\n"
    "  --churn-bands P,Q    probability thresholds of the medium and heavy risk bands\n"
    "                       (default 0.4,0.7)\n"
    "  --tiers A,B,C,D      spend in the last 365 days for bronze, silver, gold, diamond\n"
    "                       (default 3000,8000,20000,50000)\n"
    "  --churn-rule-months N  months (30 days) of the baseline rule \"frequency down 30%%\"\n"
    "                       (default 2)\n";

enum {
    OPT_INPUT = OPT_FIRST_FREE,
    OPT_MODEL,
    OPT_EVENTS,
    OPT_EVENT_WEIGHTS,
    OPT_CHURN_HORIZON,
    OPT_CHURN_BANDS,
    OPT_TIERS,
    OPT_CHURN_RULE_MONTHS,
    OPT_POPULARITY_BLEND,
    OPT_NEIGHBORS,
    OPT_BLEND_WITH,
    OPT_BLEND_SHARE,
    OPT_BUS,
    OPT_BUS_STREAM,
    OPT_BUS_FROM_START
};

/* Parses "N" or "Nd" (days) into 1..36500. Returns 0, or -1 after printing
 * why. */
static int parse_days(const char *name, const char *arg, uint32_t *out) {
    char buf[32];
    size_t len = strlen(arg);
    if (len > 1 && len < sizeof buf && arg[len - 1] == 'd') {
        memcpy(buf, arg, len - 1);
        buf[len - 1] = '\0';
        arg = buf;
    }
    return opts_u32(name, arg, 1, 36500, out);
}

/* Parses exactly n comma-separated numbers in [min, max] that ascend
 * strictly. Returns 0, or -1 after printing why. */
static int parse_ascending(const char *name, const char *arg, size_t n, double min, double max,
                           float *out) {
    char buf[256];
    if (strlen(arg) >= sizeof buf) {
        fprintf(stderr, "recd: --%s: '%s' is too long\n", name, arg);
        return -1;
    }
    strcpy(buf, arg);
    char *save = NULL, *tok = strtok_r(buf, ",", &save);
    size_t k = 0;
    for (; tok && k < n; tok = strtok_r(NULL, ",", &save), k++)
        if (opts_float(name, tok, min, max, &out[k])) return -1;
    if (tok || k != n) {
        fprintf(stderr, "recd: --%s: '%s' needs exactly %zu comma-separated numbers\n", name, arg,
                n);
        return -1;
    }
    for (k = 1; k < n; k++)
        if (!(out[k] > out[k - 1])) {
            fprintf(stderr, "recd: --%s: '%s' must ascend strictly\n", name, arg);
            return -1;
        }
    return 0;
}

/* Loads the CSV history (when input is set) and then the recorded events of
 * events_dir (when set) into one set, initialized here (caller frees with
 * ev_set_free), reporting on stderr. Returns 0, or -1 after printing why. */
static int load_histories(const char *input, const ingest_options *io, const char *events_dir,
                          const float *weights, ev_set *history) {
    err_t e;
    if (input ? opts_load_history(input, io, history) : ev_set_init(history, &e)) {
        if (!input) fprintf(stderr, "recd: %s\n", e.msg);
        return -1;
    }
    if (!events_dir) return 0;
    size_t added, future;
    uint32_t forgotten;
    if (pipeline_add_recorded(history, events_dir, weights, &added, &future, &e)) goto fail;
    fprintf(stderr, "events: %zu recorded events from %s\n", added, events_dir);
    if (future)
        fprintf(stderr,
                "events: %zu skipped: dated more than a day after now (the recording server's "
                "clock ran ahead)\n",
                future);
    if (pipeline_leave_out_forgotten(history, events_dir, &forgotten, &e)) goto fail;
    if (forgotten)
        fprintf(stderr, "privacy: %u forgotten members left out of the training data\n", forgotten);
    return 0;
fail:
    fprintf(stderr, "recd: %s\n", e.msg);
    ev_set_free(history);
    return -1;
}

/* The descriptions a server was given (UpsertItems), copied out of its
 * catalog: each in one block (strings and lists) that the copy owns. */
typedef struct upserted {
    labels_item *items;
    size_t n, cap;
    int failed;
} upserted;

static char *copy_str(char **at, const char *s) {
    size_t n = strlen(s) + 1;
    char *out = memcpy(*at, s, n);
    *at += n;
    return out;
}

static void copy_item(void *ctx, const catalog_item *it) {
    upserted *u = ctx;
    if (u->failed) return;
    size_t bytes =
        (it->n_categories + it->n_labels) * sizeof(char *) + strlen(it->id) + strlen(it->title) + 2;
    for (size_t k = 0; k < it->n_categories; k++)
        bytes += strlen(it->categories[k]) + 1;
    for (size_t k = 0; k < it->n_labels; k++)
        bytes += strlen(it->labels[k]) + 1;
    if (u->n == u->cap) {
        size_t cap = u->cap ? 2 * u->cap : 64;
        labels_item *items = realloc(u->items, cap * sizeof *items);
        if (!items) {
            u->failed = 1;
            return;
        }
        u->items = items;
        u->cap = cap;
    }
    char **lists = malloc(bytes);
    if (!lists) {
        u->failed = 1;
        return;
    }
    char *at = (char *)(lists + it->n_categories + it->n_labels);
    labels_item *c = &u->items[u->n++];
    *c = *it;
    c->id = copy_str(&at, it->id);
    c->title = copy_str(&at, it->title);
    for (size_t k = 0; k < it->n_categories; k++)
        lists[k] = copy_str(&at, it->categories[k]);
    for (size_t k = 0; k < it->n_labels; k++)
        lists[it->n_categories + k] = copy_str(&at, it->labels[k]);
    c->categories = lists;
    c->labels = lists + it->n_categories;
}

/* Applies the items a server in events_dir was given (UpsertItems) to the
 * item catalogue *items (read from --items, or zeroed), reporting on
 * stderr; *any is set when there were some. Returns 0, or -1 after
 * printing why. */
static int add_upserted(const char *events_dir, labels_table *items, int *any) {
    char rules[4096], descs[4096];
    struct stat st;
    *any = 0;
    if (snprintf(descs, sizeof descs, "%s/%s", events_dir, CATALOG_ITEMS_DIR) >=
            (int)sizeof descs ||
        stat(descs, &st) != 0)
        return 0; /* a server that was never given any */
    snprintf(rules, sizeof rules, "%s/%s", events_dir, CATALOG_RULES_DIR);
    catalog *cat;
    err_t e;
    if (catalog_open(rules, descs, &cat, &e)) {
        fprintf(stderr, "recd: %s: %s\n", descs, e.msg);
        return -1;
    }
    upserted u = {0};
    catalog_each_item(cat, copy_item, &u);
    catalog_close(cat);
    int rc = u.failed ? err_set(&e, ERR_NOMEM, "out of memory") : ERR_OK;
    if (!rc && u.n) rc = labels_table_upsert(items, u.items, u.n, &e);
    if (rc)
        fprintf(stderr, "recd: %s: %s\n", descs, e.msg);
    else if (u.n)
        fprintf(stderr, "catalogue: %zu items described to the server (UpsertItems) from %s\n", u.n,
                descs);
    *any = u.n > 0;
    for (size_t i = 0; i < u.n; i++)
        free((void *)u.items[i].categories);
    free(u.items);
    return rc ? -1 : 0;
}

/* Fills *since with the data_until of the model current in model_dir, or
 * INT64_MIN when none was published there yet. Returns 0, or -1 after
 * printing why (a current model that cannot be opened: its data_until is
 * unknown, and guessing it would drop or double events). */
static int previous_data_until(const char *model_dir, int64_t *since) {
    *since = INT64_MIN;
    char version[MODEL_VERSION_MAX];
    err_t e;
    if (model_current_version(model_dir, version, &e) == ERR_NOTFOUND) return 0;
    model *m;
    if (model_open(model_dir, &m, &e)) {
        fprintf(stderr,
                "recd: --bus: the model in %s says where its data ends, but cannot be read (%s); "
                "give --bus-from-start to take every event of the bus\n",
                model_dir, e.msg);
        return -1;
    }
    *since = model_info(m)->data_until;
    model_close(m);
    return 0;
}

/* Where the bus's events start next to the --input history, given the
 * previous model's data_until (INT64_MIN: none): what came after it is
 * new, but when the history ends earlier (that model had bus events the
 * history does not hold, as after an earlier training with --bus), where
 * the history ends, so that nothing that model had is lost. */
static int64_t bus_since(const ev_set *history, int64_t data_until) {
    if (data_until == INT64_MIN) return INT64_MIN;
    int64_t ends = INT64_MIN;
    for (size_t i = 0; i < history->n; i++)
        if (history->events[i].ts > ends) ends = history->events[i].ts;
    return ends < data_until ? ends : data_until;
}

/* Appends the events of the bus dated after since (INT64_MIN: all) to
 * history, reporting on stderr. Returns 0, or -1 after printing why
 * (history freed). */
static int add_bus(ev_set *history, const char *urls, const char *stream, const float *weights,
                   int64_t since) {
    err_t e;
    busload_counts n;
    if (busload_add(history, urls, stream, weights, since, &n, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        ev_set_free(history);
        return -1;
    }
    fprintf(stderr, "bus: %zu recorded events from stream %s (up to sequence %llu)\n", n.added,
            stream, (unsigned long long)n.last);
    if (since != INT64_MIN) {
        char when[32];
        struct tm tm;
        time_t t = (time_t)since;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        fprintf(stderr,
                "bus: only those dated after %s (the previous model's data_until, or where "
                "--input ends when earlier); %zu older ones passed over\n",
                when, n.before);
    }
    if (n.future) fprintf(stderr, "bus: %zu skipped: dated more than a day after now\n", n.future);
    if (n.skipped)
        fprintf(stderr, "bus: %llu messages could not be read and were skipped (logged)\n",
                (unsigned long long)n.skipped);
    if (n.forgotten)
        fprintf(stderr, "privacy: %u members forgotten on the bus left out of the training data\n",
                n.forgotten);
    return 0;
}

int cmd_train(int argc, char **argv) {
    static const struct option longopts[] = {
        {"input", required_argument, 0, OPT_INPUT},
        {"model", required_argument, 0, OPT_MODEL},
        {"events", required_argument, 0, OPT_EVENTS},
        {"bus", required_argument, 0, OPT_BUS},
        {"bus-stream", required_argument, 0, OPT_BUS_STREAM},
        {"bus-from-start", no_argument, 0, OPT_BUS_FROM_START},
        {"event-weights", required_argument, 0, OPT_EVENT_WEIGHTS},
        {"churn-horizon", required_argument, 0, OPT_CHURN_HORIZON},
        {"churn-bands", required_argument, 0, OPT_CHURN_BANDS},
        {"tiers", required_argument, 0, OPT_TIERS},
        {"churn-rule-months", required_argument, 0, OPT_CHURN_RULE_MONTHS},
        {"popularity-blend", required_argument, 0, OPT_POPULARITY_BLEND},
        /* Both spread their entries; the ALS ones end with a comma. */
        {"neighbors", required_argument, 0, OPT_NEIGHBORS},
        {"blend-with", required_argument, 0, OPT_BLEND_WITH},
        {"blend-share", required_argument, 0, OPT_BLEND_SHARE},
        OPTS_ITEMSIM_LONG OPTS_ALS_LONG OPTS_TOGETHER_LONG OPTS_REPEAT_LONG OPTS_CATALOG_LONG
            OPTS_INGEST_LONG,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *input = NULL, *model_dir = NULL, *events_dir = NULL;
    const char *bus_urls = NULL, *bus_stream = "recd";
    int bus_from_start = 0;
    /* The defaults of the server too, so that a fold-in and a retraining
     * weigh an event alike. */
    float weights[EV_TYPE_END];
    ev_type_default_weights(weights);
    ingest_options io;
    ingest_options_init(&io);
    pipeline_params pp;
    pipeline_params_init(&pp);
    churn_params cp;
    churn_params_init(&cp);
    opts_catalog cat;
    opts_catalog_init(&cat);
    int churn = 0, churn_flags = 0; /* --churn-horizon given; other churn flags given */
    int opt, rc;
    optind = 0; /* glibc's getopt starts over: a process may parse twice (tests) */
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if ((rc = opts_als(opt, optarg, &pp.als, &pp.half_life_days)) < 0) return 2;
        if (rc > 0) continue;
        if ((rc = opts_itemsim(opt, optarg, &pp.item.algorithm, &pp.item)) < 0) return 2;
        if (rc > 0) continue;
        if ((rc = opts_together(opt, optarg, &pp.together)) < 0) return 2;
        if (rc > 0) continue;
        if ((rc = opts_repeat(opt, optarg, &pp.repeat)) < 0) return 2;
        if (rc > 0) continue;
        if (opts_catalog_flag(opt, optarg, &cat)) continue;
        switch (opt) {
        case OPT_NEIGHBORS:
            if (opts_u32("neighbors", optarg, 1, 100000, &pp.item.neighbors)) return 2;
            break;
        case OPT_BLEND_WITH: {
            int a = itemsim_algorithm_parse(optarg);
            if (a < 0) {
                fprintf(stderr, "recd: --blend-with: 'als', 'ease', 'knn' or 'rp3beta', not '%s'\n",
                        optarg);
                return 2;
            }
            pp.with.algorithm = (itemsim_algorithm)a;
            break;
        }
        case OPT_BLEND_SHARE:
            if (opts_float("blend-share", optarg, 0, 0.999, &pp.blend_share)) return 2;
            break;
        case OPT_INPUT:
            input = optarg;
            break;
        case OPT_MODEL:
            model_dir = optarg;
            break;
        case OPT_POPULARITY_BLEND:
            if (strcmp(optarg, "inf") == 0)
                pp.popularity_blend = INFINITY;
            else if (opts_float("popularity-blend", optarg, 0, 1e6, &pp.popularity_blend))
                return 2;
            break;
        case OPT_EVENTS:
            events_dir = optarg;
            break;
        case OPT_BUS:
            bus_urls = optarg;
            break;
        case OPT_BUS_STREAM:
            bus_stream = optarg;
            break;
        case OPT_BUS_FROM_START:
            bus_from_start = 1;
            break;
        case OPT_EVENT_WEIGHTS:
            if (opts_event_weights(optarg, weights)) return 2;
            break;
        case OPT_CHURN_HORIZON:
            if (parse_days("churn-horizon", optarg, &cp.horizon_days)) return 2;
            churn = 1;
            break;
        case OPT_CHURN_BANDS:
            if (parse_ascending("churn-bands", optarg, CHURN_BANDS - 1, 1e-6, 1 - 1e-6, cp.bands))
                return 2;
            churn_flags = 1;
            break;
        case OPT_TIERS:
            if (parse_ascending("tiers", optarg, CHURN_TIERS - 1, 0, 1e15, cp.tiers)) return 2;
            churn_flags = 1;
            break;
        case OPT_CHURN_RULE_MONTHS:
            if (opts_u32("churn-rule-months", optarg, 1, FEAT_RULE_MAX_MONTHS, &cp.rule_months))
                return 2;
            churn_flags = 1;
            break;
        case 'h':
            printf(train_usage, OPTS_ITEMSIM_HELP, OPTS_TOGETHER_HELP, OPTS_REPEAT_HELP);
            printf("%s%s", OPTS_INGEST_HELP, OPTS_CATALOG_HELP);
            return 0;
        default:
            if ((rc = opts_ingest(opt, optarg, &io)) == 1) break;
            if (rc == 0) {
                fprintf(stderr, train_usage, OPTS_ITEMSIM_HELP, OPTS_TOGETHER_HELP,
                        OPTS_REPEAT_HELP);
                fprintf(stderr, "%s", OPTS_INGEST_HELP);
            }
            return 2;
        }
    }
    if ((!input && !events_dir && !bus_urls) || !model_dir || optind != argc) {
        fprintf(stderr, train_usage, OPTS_ITEMSIM_HELP, OPTS_TOGETHER_HELP, OPTS_REPEAT_HELP);
        fprintf(stderr, "%s", OPTS_INGEST_HELP);
        return 2;
    }
    if (pp.blend_share > 0.0f &&
        (pp.item.algorithm == ITEMSIM_ALS || pp.with.algorithm == pp.item.algorithm)) {
        fprintf(stderr, "recd: --blend-share needs an item-item --algorithm and a different "
                        "--blend-with\n");
        return 2;
    }
    /* One set of item-item flags for both families of a blend. */
    itemsim_algorithm with = pp.with.algorithm;
    pp.with = pp.item;
    pp.with.algorithm = with;
    if (churn_flags && !churn) {
        fprintf(stderr, "recd: --churn-bands, --tiers and --churn-rule-months need "
                        "--churn-horizon\n");
        return 2;
    }
    if (churn && !input) {
        fprintf(stderr, "recd: --churn-horizon needs the purchase history of --input\n");
        return 2;
    }
    if (churn) {
        pp.churn = &cp;
        pp.churn_report = stderr;
    }
    double start = clock_seconds();
    ev_set history;
    if (events_dir && bus_urls) {
        /* A replica's events folder holds what it applied of the bus. */
        fprintf(stderr, "recd: --events and --bus are two copies of the same events: give one\n");
        return 2;
    }
    if (bus_from_start && !(bus_urls && input)) {
        fprintf(stderr, "recd: --bus-from-start needs --bus and --input\n");
        return 2;
    }
    /* Next to the purchase histories the previous model was trained on,
     * the bus adds what came since; alone, it is the whole history. */
    int64_t data_until = INT64_MIN;
    if (bus_urls && input && !bus_from_start && previous_data_until(model_dir, &data_until))
        return 1;
    labels_table items, users;
    int described = 0;
    if (opts_load_catalog(&cat, &io, &items, &users)) return 1;
    if (events_dir && add_upserted(events_dir, &items, &described)) {
        labels_table_free(&items);
        labels_table_free(&users);
        return 1;
    }
    if (load_histories(input, &io, events_dir, weights, &history) ||
        (bus_urls &&
         add_bus(&history, bus_urls, bus_stream, weights, bus_since(&history, data_until)))) {
        labels_table_free(&items);
        labels_table_free(&users);
        return 1;
    }
    struct pipeline_maps maps = {0};
    pp.items = cat.items_path || described ? &items : NULL;
    pp.users = cat.users_path ? &users : NULL;
    pp.maps = &maps;
    int status = opts_train_publish(&history, &pp, model_dir, start);
    if (status == 0 && pp.items)
        fprintf(stderr,
                "catalogue: item label mapping: %u labels, lambda %g (validation error %.4g, "
                "bias alone %.4g), fitted on %u items; %u items without interactions got "
                "their vector from their labels\n",
                idmap_size(items.labels), (double)maps.item.lambda, maps.item.valid_mse,
                maps.item.bias_mse, maps.item.fit_rows, maps.catalogue_only);
    if (status == 0 && pp.users)
        fprintf(stderr,
                "catalogue: member label mapping: %u labels, lambda %g (validation error %.4g, "
                "bias alone %.4g), fitted on %u members\n",
                idmap_size(users.labels), (double)maps.user.lambda, maps.user.valid_mse,
                maps.user.bias_mse, maps.user.fit_rows);
    ev_set_free(&history);
    labels_table_free(&items);
    labels_table_free(&users);
    return status;
}
