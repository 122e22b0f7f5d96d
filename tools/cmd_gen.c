/* recd gen: writes a synthetic shop's purchase history (see features/synth.h). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "cmd.h"
#include "opts.h"
#include "synth.h"

/* Progress lines only pay off for outputs that take a few seconds. */
#define GEN_PROGRESS_MIN_EVENTS 1000000

static const char gen_usage[] =
    "usage: recd gen [options]\n"
    "Writes a synthetic purchase history as CSV\n"
    "(user_id,item_id,timestamp,quantity,price,category), the same for the same seed.\n\n"
    "  --users N          users (default 2000)\n"
    "  --items N          items (default 500)\n"
    "  --events N         purchases in total (default 40000)\n"
    "  --categories N     item categories, at most --items (default 20)\n"
    "  --seed N           random seed (default 42)\n"
    "  --churn-share F    share of users who stop buying part-way (default 0.25)\n"
    "  --repeat-share F   share of purchases that re-buy an earlier item (default 0.2)\n"
    "  --days N           span of the history in days, ending 2026-01-01 (default 365)\n"
    "  --output FILE      where to write; '-' is stdout (default)\n"
    "  --help             this text\n";

enum {
    GEN_USERS = 1,
    GEN_ITEMS,
    GEN_EVENTS,
    GEN_CATEGORIES,
    GEN_SEED,
    GEN_CHURN,
    GEN_REPEAT,
    GEN_DAYS,
    GEN_OUTPUT,
    GEN_HELP
};

static void gen_progress(void *ctx, uint64_t written, uint64_t target) {
    (void)ctx;
    fprintf(stderr, "gen: %llu / %llu events (%.0f%%)\n", (unsigned long long)written,
            (unsigned long long)target, 100.0 * (double)written / (double)target);
}

/* A write-through stream that counts bytes, so the summary can give a rate
 * for pipes too (ftell cannot). synth writes large blocks, so the stream is
 * unbuffered and costs no copy. */
struct gen_sink {
    FILE *f;
    uint64_t bytes;
};

static ssize_t gen_sink_write(void *cookie, const char *buf, size_t len) {
    struct gen_sink *s = cookie;
    size_t n = fwrite(buf, 1, len, s->f);
    s->bytes += n;
    return n == 0 && len > 0 ? -1 : (ssize_t)n;
}

int cmd_gen(int argc, char **argv) {
    static const struct option longopts[] = {{"users", required_argument, 0, GEN_USERS},
                                             {"items", required_argument, 0, GEN_ITEMS},
                                             {"events", required_argument, 0, GEN_EVENTS},
                                             {"categories", required_argument, 0, GEN_CATEGORIES},
                                             {"seed", required_argument, 0, GEN_SEED},
                                             {"churn-share", required_argument, 0, GEN_CHURN},
                                             {"repeat-share", required_argument, 0, GEN_REPEAT},
                                             {"days", required_argument, 0, GEN_DAYS},
                                             {"output", required_argument, 0, GEN_OUTPUT},
                                             {"help", no_argument, 0, GEN_HELP},
                                             {0, 0, 0, 0}};
    synth_params p;
    synth_params_init(&p);
    const char *output = "-";
    float share;
    int opt, bad = 0;
    optind = 1;
    while (!bad && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case GEN_USERS:
            bad = opts_u32("users", optarg, 1, UINT32_MAX - 1, &p.users);
            break;
        case GEN_ITEMS:
            bad = opts_u32("items", optarg, 1, UINT32_MAX - 1, &p.items);
            break;
        case GEN_EVENTS:
            bad = opts_u64("events", optarg, 0, UINT64_MAX, &p.events);
            break;
        case GEN_CATEGORIES:
            bad = opts_u32("categories", optarg, 1, UINT32_MAX - 1, &p.categories);
            break;
        case GEN_SEED:
            bad = opts_u64("seed", optarg, 0, UINT64_MAX, &p.seed);
            break;
        case GEN_CHURN:
            bad = opts_float("churn-share", optarg, 0, 1, &share);
            p.churn_share = share;
            break;
        case GEN_REPEAT:
            bad = opts_float("repeat-share", optarg, 0, 1, &share);
            p.repeat_share = share;
            break;
        case GEN_DAYS:
            bad = opts_u32("days", optarg, 1, 36500, &p.days);
            break;
        case GEN_OUTPUT:
            output = optarg;
            break;
        case GEN_HELP:
            fputs(gen_usage, stdout);
            return 0;
        default:
            bad = 1;
            break; /* getopt_long has said why */
        }
    }
    if (!bad && optind < argc) {
        fprintf(stderr, "recd gen: unexpected argument '%s'\n", argv[optind]);
        bad = 1;
    }
    if (!bad && p.categories > p.items) {
        fprintf(stderr, "recd gen: --categories %u exceeds --items %u\n", p.categories, p.items);
        bad = 1;
    }
    if (bad) {
        fputs("usage: recd gen [options]   (recd gen --help)\n", stderr);
        return 2;
    }

    bool to_stdout = strcmp(output, "-") == 0;
    struct gen_sink sink = {to_stdout ? stdout : fopen(output, "wb"), 0};
    if (!sink.f) {
        fprintf(stderr, "recd gen: %s: %s\n", output, strerror(errno));
        return 1;
    }
    FILE *out = fopencookie(&sink, "w", (cookie_io_functions_t){.write = gen_sink_write});
    if (!out || setvbuf(out, NULL, _IONBF, 0) != 0) {
        fprintf(stderr, "recd gen: out of memory\n");
        if (out) fclose(out);
        if (!to_stdout) fclose(sink.f);
        return 1;
    }
    if (p.events > GEN_PROGRESS_MIN_EVENTS) p.progress = gen_progress;

    double t0 = clock_seconds();
    uint64_t written;
    err_t e;
    int rc = synth_write_csv(&p, out, &written, &e);
    fclose(out);
    if (!rc && (to_stdout ? fflush(sink.f) : fclose(sink.f)) != 0)
        rc = err_set(&e, ERR_IO, "write failed: %s", strerror(errno));
    else if (rc && !to_stdout)
        fclose(sink.f);
    if (rc) {
        fprintf(stderr, "recd gen: %s: %s\n", output, e.msg);
        /* A cut-off history would look valid to the next command. */
        if (!to_stdout) unlink(output);
        return 1;
    }
    double secs = clock_seconds() - t0;
    fprintf(
        stderr, "gen: %llu events, %u users, %u items, %u categories -> %s in %.2f s (%.0f MB/s)\n",
        (unsigned long long)written, p.users, p.items, p.categories, to_stdout ? "stdout" : output,
        secs, (double)sink.bytes / 1e6 / (secs > 0 ? secs : 1e-9));
    return 0;
}
