/* recd events: tools around the event store of `recd serve --events DIR`
 * (model/evstore.h): export it as a purchase-history CSV that `recd train
 * --input` reads, print statistics, and measure group commit. */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cmd.h"
#include "evstore.h"
#include "idmap.h"
#include "opts.h"

static const char events_usage[] =
    "usage: recd events COMMAND --events DIR [options]\n"
    "Reads the durable event store that `recd serve --events DIR` writes.\n\n"
    "commands:\n"
    "  export [--output FILE|-] [--since-seq N]\n"
    "      writes every event (with sequence number >= N) as CSV with the header\n"
    "      user_id,item_id,timestamp,quantity,price,event_type, in sequence order;\n"
    "      `recd train --input FILE` reads it (every row counts as an interaction,\n"
    "      rows with quantity 0 are skipped there; an unknown price is empty)\n"
    "  stats\n"
    "      events in total and by type, first and last timestamp, distinct users\n"
    "      and items, next sequence number\n"
    "  bench [--threads T] [--batch B] [--count N] [--baseline-count M]\n"
    "      appends N events from T threads in calls of B events, durable, into a\n"
    "      fresh store in a temporary folder under DIR (removed after), then M events\n"
    "      with one commit per event; prints events/s and commits/s of both\n"
    "      (defaults: T 8, B 1, N 200000, M 2000)\n\n"
    "  --help   this text\n";

enum { EV_EVENTS = 1, EV_OUTPUT, EV_SINCE, EV_THREADS, EV_BATCH, EV_COUNT, EV_BASELINE, EV_HELP };

/* --- export -------------------------------------------------------------- */

/* Writes one CSV field, quoted (RFC 4180) when it holds a delimiter, quote
 * or line break, or starts or ends with blanks (which a reader may trim). */
static void csv_field(FILE *f, const char *s, size_t len) {
    bool quote =
        len > 0 && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t');
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        fwrite(s, 1, len, f);
        return;
    }
    putc('"', f);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"') putc('"', f);
        putc(s[i], f);
    }
    putc('"', f);
}

typedef struct export_ctx {
    FILE *f;
    uint64_t rows;
} export_ctx;

static int export_visit(void *arg, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    export_ctx *c = arg;
    csv_field(c->f, ev->user_id, ev->user_len);
    putc(',', c->f);
    csv_field(c->f, ev->item_id, ev->item_len);
    fprintf(c->f, ",%" PRId64 ",%" PRIu32 ",", ev->ts, ev->quantity);
    /* 0 is what the proto sends for an unknown price; the importer reads an
     * empty price as unknown. */
    if (ev->price > 0) {
        /* The shortest of %.15g / %.17g that reads back exactly. */
        char price[32];
        snprintf(price, sizeof price, "%.15g", ev->price);
        if (strtod(price, NULL) != ev->price) snprintf(price, sizeof price, "%.17g", ev->price);
        fputs(price, c->f);
    }
    const char *type = ev_type_name(ev->type);
    fprintf(c->f, ",%s\n", type ? type : "unknown");
    c->rows++;
    return ferror(c->f) != 0;
}

static int events_export(evstore *s, const char *output, uint64_t since) {
    bool to_stdout = strcmp(output, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(output, "w");
    if (!f) {
        fprintf(stderr, "recd events: %s: %s\n", output, strerror(errno));
        return 1;
    }
    export_ctx c = {f, 0};
    fputs("user_id,item_id,timestamp,quantity,price,event_type\n", f);
    err_t e;
    int rc = evstore_scan(s, since, export_visit, &c, &e);
    bool failed = ferror(f) != 0;
    if ((to_stdout ? fflush(f) : fclose(f)) != 0) failed = true;
    if (!rc && failed) rc = err_set(&e, ERR_IO, "write failed: %s", strerror(errno));
    if (rc) {
        fprintf(stderr, "recd events: export to %s: %s\n", output, e.msg);
        /* A cut-off export would look complete to `recd train`. */
        if (!to_stdout) unlink(output);
        return 1;
    }
    fprintf(stderr, "events: exported %" PRIu64 " events -> %s\n", c.rows,
            to_stdout ? "stdout" : output);
    return 0;
}

/* --- stats --------------------------------------------------------------- */

typedef struct stats_ctx {
    uint64_t n, by_type[EV_TYPE_END];
    int64_t first_ts, last_ts;
    idmap *users, *items;
    int rc;
} stats_ctx;

static int stats_visit(void *arg, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    stats_ctx *c = arg;
    uint32_t idx;
    if (c->n == 0 || ev->ts < c->first_ts) c->first_ts = ev->ts;
    if (c->n == 0 || ev->ts > c->last_ts) c->last_ts = ev->ts;
    c->n++;
    c->by_type[ev->type < EV_TYPE_END ? ev->type : 0]++;
    if ((c->rc = idmap_intern(c->users, ev->user_id, ev->user_len, &idx)) ||
        (c->rc = idmap_intern(c->items, ev->item_id, ev->item_len, &idx)))
        return 1;
    return 0;
}

static void print_time(const char *label, int64_t ts) {
    char when[32];
    time_t t = (time_t)ts;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    printf("%-14s%s (%" PRId64 ")\n", label, when, ts);
}

static int events_stats(evstore *s) {
    stats_ctx c = {.users = idmap_new(), .items = idmap_new()};
    err_t e;
    uint64_t count, next_seq;
    int rc = c.users && c.items ? ERR_OK : err_set(&e, ERR_NOMEM, "out of memory");
    if (!rc) rc = evstore_count(s, &count, &next_seq, &e);
    if (!rc) rc = evstore_scan(s, 0, stats_visit, &c, &e);
    if (!rc && c.rc) rc = err_set(&e, c.rc, "out of memory");
    if (!rc) {
        printf("%-14s%" PRIu64 "\n", "events", c.n);
        for (uint32_t t = 1; t < EV_TYPE_END; t++)
            if (ev_type_known(t)) printf("  %-12s%" PRIu64 "\n", ev_type_name(t), c.by_type[t]);
        printf("%-14s%u\n%-14s%u\n%-14s%" PRIu64 "\n", "users", idmap_size(c.users), "items",
               idmap_size(c.items), "next_seq", next_seq);
        if (c.n) {
            print_time("first", c.first_ts);
            print_time("last", c.last_ts);
        }
    }
    idmap_free(c.users);
    idmap_free(c.items);
    if (rc) fprintf(stderr, "recd events: stats: %s\n", e.msg);
    return rc ? 1 : 0;
}

/* --- bench --------------------------------------------------------------- */

typedef struct bench_arg {
    evstore *s;
    uint64_t first, count; /* event numbers [first, first + count) */
    uint32_t batch;
    int rc;
    err_t e;
} bench_arg;

/* One appender thread: calls of `batch` events with ids made from the event
 * number (5,000 users, 1,000 items). */
static void *bench_thread(void *p) {
    bench_arg *a = p;
    evstore_event *ev = calloc(a->batch, sizeof *ev);
    char(*ids)[2][24] = calloc(a->batch, sizeof *ids);
    if (!ev || !ids) a->rc = err_set(&a->e, ERR_NOMEM, "out of memory");
    for (uint64_t i = a->first; !a->rc && i < a->first + a->count; i += a->batch) {
        size_t n =
            a->first + a->count - i < a->batch ? (size_t)(a->first + a->count - i) : a->batch;
        for (size_t j = 0; j < n; j++) {
            uint64_t k = i + j;
            ev[j] = (evstore_event){
                .user_id = ids[j][0],
                .user_len = (size_t)snprintf(ids[j][0], 24, "user%" PRIu64, k * 7919 % 5000),
                .item_id = ids[j][1],
                .item_len = (size_t)snprintf(ids[j][1], 24, "item%" PRIu64, k * 104729 % 1000),
                .type = (uint32_t)(k % 4) + 1,
                .ts = 1767225600 + (int64_t)k,
                .quantity = 1,
                .price = 9.99};
        }
        a->rc = evstore_append(a->s, ev, n, NULL, &a->e);
    }
    free(ids);
    free(ev);
    return NULL;
}

typedef struct bench_result {
    double secs, events_per_s, commits_per_s;
    uint64_t commits;
} bench_result;

/* Appends count events from threads threads in calls of batch into a new
 * store at dir, commits taking up to max_batch events. */
static int bench_run(const char *dir, uint32_t threads, uint32_t batch, uint64_t count,
                     size_t max_batch, bench_result *r) {
    evstore_options o;
    evstore_options_init(&o);
    o.max_batch_events = max_batch;
    evstore *s;
    err_t e;
    if (evstore_open(dir, &o, &s, &e)) {
        fprintf(stderr, "recd events: bench: %s\n", e.msg);
        return 1;
    }
    bench_arg *a = calloc(threads, sizeof *a);
    pthread_t *tid = calloc(threads, sizeof *tid);
    int rc = a && tid ? 0 : 1;
    uint32_t started = 0;
    double t0 = clock_seconds();
    for (uint32_t t = 0; !rc && t < threads; t++, started++) {
        a[t] = (bench_arg){.s = s, .batch = batch};
        a[t].first = count * t / threads;
        a[t].count = count * (t + 1) / threads - a[t].first;
        if (pthread_create(&tid[t], NULL, bench_thread, &a[t])) rc = 1;
    }
    for (uint32_t t = 0; t < started; t++) {
        pthread_join(tid[t], NULL);
        if (a[t].rc) {
            fprintf(stderr, "recd events: bench: %s\n", a[t].e.msg);
            rc = 1;
        }
    }
    r->secs = clock_seconds() - t0;
    r->commits = evstore_commits(s);
    r->events_per_s = (double)count / r->secs;
    r->commits_per_s = (double)r->commits / r->secs;
    if (!a || !tid) fprintf(stderr, "recd events: bench: out of memory\n");
    free(tid);
    free(a);
    evstore_close(s);
    return rc;
}

static int bench_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int events_bench(const char *parent, uint32_t threads, uint32_t batch, uint64_t count,
                        uint64_t baseline) {
    /* root leaves room for the two folder names below. */
    char root[PATH_MAX - 16], group[PATH_MAX], single[PATH_MAX];
    if (snprintf(root, sizeof root, "%s/recd-bench-XXXXXX", parent) >= (int)sizeof root ||
        !mkdtemp(root)) {
        fprintf(stderr, "recd events: bench: cannot create a folder in %s: %s\n", parent,
                strerror(errno));
        return 1;
    }
    snprintf(group, sizeof group, "%s/group", root);
    snprintf(single, sizeof single, "%s/single", root);
    bench_result g, b;
    int rc = bench_run(group, threads, batch, count, 8192, &g);
    if (!rc) rc = bench_run(single, threads, 1, baseline, 1, &b);
    nftw(root, bench_rm, 16, FTW_DEPTH | FTW_PHYS);
    if (rc) return 1;
    printf("group commit  %u threads, %u events/call: %" PRIu64 " events in %.2f s: %.0f events/s, "
           "%" PRIu64 " commits (%.0f/s, %.1f events/commit)\n",
           threads, batch, count, g.secs, g.events_per_s, g.commits, g.commits_per_s,
           (double)count / (double)g.commits);
    printf("baseline      %u threads, one commit per event: %" PRIu64
           " events in %.2f s: %.0f events/s, %" PRIu64 " commits (%.0f/s)\n",
           threads, baseline, b.secs, b.events_per_s, b.commits, b.commits_per_s);
    printf("speed-up      %.1fx\n", g.events_per_s / b.events_per_s);
    return 0;
}

/* --- command ------------------------------------------------------------- */

int cmd_events(int argc, char **argv) {
    static const struct option longopts[] = {{"events", required_argument, 0, EV_EVENTS},
                                             {"output", required_argument, 0, EV_OUTPUT},
                                             {"since-seq", required_argument, 0, EV_SINCE},
                                             {"threads", required_argument, 0, EV_THREADS},
                                             {"batch", required_argument, 0, EV_BATCH},
                                             {"count", required_argument, 0, EV_COUNT},
                                             {"baseline-count", required_argument, 0, EV_BASELINE},
                                             {"help", no_argument, 0, EV_HELP},
                                             {0, 0, 0, 0}};
    const char *dir = NULL, *output = "-", *sub = NULL;
    uint64_t since = 0, count = 200000, baseline = 2000;
    uint32_t threads = 8, batch = 1;
    int opt, bad = 0;
    optind = 1;
    /* The subcommand may come before or after the flags. */
    while (!bad && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case EV_EVENTS:
            dir = optarg;
            break;
        case EV_OUTPUT:
            output = optarg;
            break;
        case EV_SINCE:
            bad = opts_u64("since-seq", optarg, 0, UINT64_MAX, &since);
            break;
        case EV_THREADS:
            bad = opts_u32("threads", optarg, 1, 1024, &threads);
            break;
        case EV_BATCH:
            bad = opts_u32("batch", optarg, 1, 100000, &batch);
            break;
        case EV_COUNT:
            bad = opts_u64("count", optarg, 1, UINT64_MAX, &count);
            break;
        case EV_BASELINE:
            bad = opts_u64("baseline-count", optarg, 1, UINT64_MAX, &baseline);
            break;
        case EV_HELP:
            fputs(events_usage, stdout);
            return 0;
        default:
            bad = 1;
            break; /* getopt_long has said why */
        }
    }
    if (!bad && optind < argc) sub = argv[optind++];
    if (!bad && optind < argc) {
        fprintf(stderr, "recd events: unexpected argument '%s'\n", argv[optind]);
        bad = 1;
    }
    if (!bad && !sub) {
        fprintf(stderr, "recd events: which command: export, stats or bench?\n");
        bad = 1;
    }
    if (!bad && strcmp(sub, "export") && strcmp(sub, "stats") && strcmp(sub, "bench")) {
        fprintf(stderr, "recd events: unknown command '%s'\n", sub);
        bad = 1;
    }
    if (!bad && !dir) {
        fprintf(stderr, "recd events: --events DIR is required\n");
        bad = 1;
    }
    if (bad) {
        fputs("usage: recd events export|stats|bench --events DIR [options]   (recd events "
              "--help)\n",
              stderr);
        return 2;
    }
    if (strcmp(sub, "bench") == 0) return events_bench(dir, threads, batch, count, baseline);

    /* Opening creates an empty store; reading one that is not there is
     * more likely a wrong path than a wish for an empty export. */
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/data.mdb", dir);
    if (access(probe, F_OK)) {
        fprintf(stderr, "recd events: %s: no event store (no data.mdb)\n", dir);
        return 1;
    }
    evstore *s;
    err_t e;
    if (evstore_open(dir, NULL, &s, &e)) {
        fprintf(stderr, "recd events: %s\n", e.msg);
        return 1;
    }
    int rc = strcmp(sub, "export") == 0 ? events_export(s, output, since) : events_stats(s);
    evstore_close(s);
    return rc;
}
