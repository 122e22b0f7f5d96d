/* recd bench: the C half of the benchmark that scripts/bench.sh runs (see
 * README "Speed"). Each subcommand prints one JSON object per line on
 * stdout, so that the script can set its figures next to the references
 * (numpy, faiss, h2load) measured on the same data:
 *   model   publishes a random model of a chosen size and writes its item
 *           matrix and some user vectors as raw float32 for the references
 *   score   times recd's scoring path on a published model read in place,
 *           one query at a time and in batches (what batching would gain)
 *   train   times ALS iterations on a random sparse matrix
 *   body    writes a framed gRPC request body for h2load
 *   ready   waits for a starting server's first successful Recommend
 *   json    times the JSON codec's share of one HTTP Recommend call
 *   explain times score_explain next to the scoring of the same call */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "als.h"
#include "client.h"
#include "clock.h"
#include "cmd.h"
#include "core.h"
#include "cpu.h"
#include "pbjson.h"
#include "grpc/health/v1/health.pb-c.h"
#include "model.h"
#include "itemsim.h"
#include "opts.h"
#include "recd/v1/recommender.pb-c.h"
#include "recd_version.h"
#include "panel.h"
#include "rng.h"
#include "score.h"
#include "topk.h"

static const char bench_usage[] =
    "usage: recd bench COMMAND [options]\n"
    "Benchmark pieces that scripts/bench.sh puts together; each prints JSON lines.\n\n"
    "commands:\n"
    "  model --model DIR [--items N] [--factors F] [--users U] [--seed S]\n"
    "        [--matrix FILE] [--queries FILE]\n"
    "      publishes a random model (ids u0.., i0..; every user bought 5 items)\n"
    "      and writes its item matrix (N x F) and the first 1,000 user vectors\n"
    "      as raw row-major float32, the bytes the server reads\n"
    "      (defaults: N 100000, F 64, U 10000)\n"
    "  score --model DIR [-k K] [--batch B] [--seconds S] [--rounds R]\n"
    "        [--chosen] [--against RECD]\n"
    "      times recd's scoring (score_batch: bfloat16 panels, exact float32 near\n"
    "      the cut) per query (users' own vectors) on one thread, next to float32\n"
    "      score_items + topk_select, then batches of B queries per pass over the\n"
    "      items; R rounds of about S seconds each (defaults: K 10, B 32, S 1, R 3).\n"
    "      Each round runs every scoring kernel copy this CPU can (only the chosen\n"
    "      one with --chosen), then, with --against, another recd binary's chosen\n"
    "      one on the same model (e.g. a -DRECD_MARCH=native build), side by side\n"
    "  train [--users U] [--items N] [--nnz Z] [--factors F] [--threads T]\n"
    "        [--iterations I] [--seed S]\n"
    "      ALS on a random U x N matrix with Z nonzeros (count 1, spread evenly\n"
    "      over users), seconds per iteration (defaults: 100000 x 20000, 5000000,\n"
    "      F 64, T 2, I 5)\n"
    "  items [--users U] [--items N] [--nnz Z] [--factors F] [--threads T]\n"
    "        [--iterations I] [--seed S]\n"
    "      item-item families next to ALS on a random U x N matrix with Z nonzeros:\n"
    "      training seconds, model bytes of the rows (factors for ALS), and scoring\n"
    "      ms per query on one thread (1,000 users' scores + top-k) for EASE dense\n"
    "      and pruned (100 per item; only up to 20,000 items), RP3beta (100 per\n"
    "      item) and ALS (float32 sgemv + top-k) (defaults: 10000 x 10000, 500000)\n"
    "  body recommend USER [-k K] --output FILE | body health --output FILE\n"
    "      a gRPC request body for h2load -d: 5-byte prefix + the message\n"
    "  json [-k K] [--seconds S]\n"
    "      the HTTP front end's JSON work per Recommend call, apart from the server:\n"
    "      decoding a request (pbjson_decode + pack) and encoding a reply of K items\n"
    "      (unpack + pbjson_encode), microseconds each on one thread (defaults: K 10,\n"
    "      S 1 per half)\n"
    "  catalog --model DIR [-k K] [--seconds S]\n"
    "      UpsertItems and NEW_ARRIVALS on the service core of a `bench model` model\n"
    "      (no network; a temporary events folder): durable upserts per second in\n"
    "      calls of 1 and of 100 items (S seconds each, 10,000 items at most), and\n"
    "      the median Recommend\n"
    "      next to a NEW_ARRIVALS one (users u0.., one thread), before the upserts and\n"
    "      with them all served (defaults: K 10, S 1)\n"
    "  explain --model DIR [-k K] [--seconds S] [--rounds R]\n"
    "      explain's extra cost per Recommend on one thread: the top K of a member's\n"
    "      stored vector (score_batch) next to score_explain of those K items from\n"
    "      the member's history, and from it plus 100 fresh signals (a fold-in's\n"
    "      system), users in turn, the three interleaved; R rounds of about S\n"
    "      seconds (defaults: K 10, S 1, R 3); p50 microseconds and ratios\n"
    "  ready --port-file FILE --since T [--user ID] [--timeout S]\n"
    "      waits for FILE (a starting `recd serve --port-file`), then calls\n"
    "      Recommend(ID) until it succeeds; prints the seconds since T (unix\n"
    "      seconds, e.g. bash's $EPOCHREALTIME just before starting the server)\n"
    "      (defaults: ID u0, S 60)\n\n"
    "  --help   this text\n";

enum {
    B_MODEL = 1,
    B_ITEMS,
    B_FACTORS,
    B_USERS,
    B_SEED,
    B_MATRIX,
    B_QUERIES,
    B_K,
    B_BATCH,
    B_SECONDS,
    B_ROUNDS,
    B_NNZ,
    B_THREADS,
    B_ITERATIONS,
    B_OUTPUT,
    B_PORT_FILE,
    B_SINCE,
    B_USER,
    B_TIMEOUT,
    B_AGAINST,
    B_CHOSEN,
    B_HELP
};

/* Users of a generated model, bought items per user, user vectors written. */
#define BENCH_BOUGHT 5
#define BENCH_QUERY_VECTORS 1000
#define BENCH_LABELS 100    /* labels tag:0 .. of a generated model's item mapping */
#define BENCH_UPSERTS 10000 /* items bench catalog upserts at most: a tenth of its default */

typedef struct bench_args {
    const char *model_dir, *matrix, *queries, *output, *port_file, *user, *against;
    uint32_t items, factors, users, k, batch, rounds, threads, iterations;
    uint64_t seed, nnz;
    float seconds, timeout;
    double since;
    int since_set, chosen_only;
} bench_args;

/* Uniform in [0, n). */
static uint32_t bench_below(uint64_t *s, uint32_t n) {
    return (uint32_t)((rng_next(s) >> 32) * n >> 32);
}

/* Standard normal (Box-Muller). */
static float bench_gauss(uint64_t *s) {
    double u = ((double)(rng_next(s) >> 11) + 0.5) * 0x1p-53;
    double v = (double)(rng_next(s) >> 11) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Value at quantile q of n sorted doubles. */
static double quantile(const double *sorted, size_t n, double q) {
    size_t i = (size_t)(q * (double)n);
    return sorted[i < n ? i : n - 1];
}

/* Writes n floats to path. Returns 0, or -1 after printing why. */
static int write_floats(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(v, sizeof *v, n, f) != n || fclose(f)) {
        fprintf(stderr, "recd bench: %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    return 0;
}

/* Samples k distinct indexes below n (k <= n) into out, sorted (Floyd's
 * algorithm). mark has n zero bytes on entry and on return. */
static void sample_distinct(uint64_t *s, uint32_t n, uint32_t k, uint8_t *mark, uint32_t *out) {
    for (uint32_t j = n - k, i = 0; j < n; j++, i++) {
        uint32_t t = bench_below(s, j + 1);
        if (mark[t]) t = j;
        mark[t] = 1;
        out[i] = t;
    }
    for (uint32_t i = 0; i < k; i++)
        mark[out[i]] = 0;
    qsort(out, k, sizeof *out, cmp_u32);
}

/* Fills *out with a users x items matrix of count-1 cells, nnz of them,
 * nnz / users per row (the first nnz % users rows one more), at random
 * distinct columns. Returns ERR_OK, ERR_INVALID, ERR_NOMEM. */
static int random_csr(uint32_t users, uint32_t items, uint64_t nnz, uint64_t seed, csr *out,
                      err_t *e) {
    if (nnz > (uint64_t)users * items)
        return err_set(e, ERR_INVALID, "%llu nonzeros do not fit in %u x %u",
                       (unsigned long long)nnz, users, items);
    memset(out, 0, sizeof *out);
    out->n_rows = users;
    out->n_cols = items;
    out->indptr = malloc(((size_t)users + 1) * sizeof *out->indptr);
    out->indices = malloc((nnz ? nnz : 1) * sizeof *out->indices);
    out->values = malloc((nnz ? nnz : 1) * sizeof *out->values);
    uint8_t *mark = calloc(items, 1);
    if (!out->indptr || !out->indices || !out->values || !mark) {
        free(mark);
        csr_free(out);
        return err_set(e, ERR_NOMEM, "out of memory for %llu nonzeros", (unsigned long long)nnz);
    }
    uint64_t s = seed, at = 0;
    out->indptr[0] = 0;
    for (uint32_t u = 0; u < users; u++) {
        uint32_t k = (uint32_t)(nnz / users + (u < nnz % users));
        sample_distinct(&s, items, k, mark, out->indices + at);
        at += k;
        out->indptr[u + 1] = at;
    }
    for (uint64_t i = 0; i < nnz; i++)
        out->values[i] = 1.0f;
    free(mark);
    return ERR_OK;
}

/* Interns "<prefix><i>" for i < n. Returns the map or NULL (out of memory). */
static idmap *numbered_ids(char prefix, uint32_t n) {
    idmap *m = idmap_new();
    char id[16];
    for (uint32_t i = 0; m && i < n; i++) {
        uint32_t index;
        int len = snprintf(id, sizeof id, "%c%u", prefix, i);
        if (idmap_intern(m, id, (size_t)len, &index)) {
            idmap_free(m);
            m = NULL;
        }
    }
    return m;
}

/* --- model ---------------------------------------------------------------- */

/* Publishes a random model of a->users x a->items at a->factors into
 * a->model_dir, then writes what the server will read (item matrix, user
 * vectors) for the references. Factors are N(0, 1/F) so that scores have the
 * same spread at any F. */
static int bench_model(const bench_args *a) {
    uint32_t f = a->factors, nu = a->users, ni = a->items;
    size_t nx = (size_t)nu * f, ny = (size_t)ni * f;
    float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y);
    float *pop = calloc(ni, sizeof *pop);
    float *label_map = malloc((size_t)(BENCH_LABELS + 1) * f * sizeof *label_map);
    int64_t *published = malloc((size_t)ni * sizeof *published);
    idmap *users = numbered_ids('u', nu), *items = numbered_ids('i', ni), *labels = idmap_new();
    csr bought = {0};
    err_t e;
    int rc = 1;
    if (!x || !y || !pop || !users || !items || !labels || !label_map || !published) {
    nomem:
        fprintf(stderr, "recd bench: model: out of memory\n");
        goto done;
    }
    uint64_t s = a->seed;
    float scale = 1.0f / sqrtf((float)f);
    for (size_t i = 0; i < nx; i++)
        x[i] = bench_gauss(&s) * scale;
    for (size_t i = 0; i < ny; i++)
        y[i] = bench_gauss(&s) * scale;
    uint32_t per_user = ni < BENCH_BOUGHT ? ni : BENCH_BOUGHT;
    if (random_csr(nu, ni, (uint64_t)nu * per_user, a->seed + 1, &bought, &e)) {
        fprintf(stderr, "recd bench: model: %s\n", e.msg);
        goto done;
    }
    for (uint64_t i = 0; i < csr_nnz(&bought); i++)
        pop[bought.indices[i]] += 1.0f;
    /* A label mapping and publication times (a tenth of the items in the
     * last 30 days), for `bench catalog`: upserted items get vectors, and
     * NEW_ARRIVALS has candidates among the model's own. */
    for (uint32_t l = 0; l < BENCH_LABELS; l++) {
        char label[32];
        uint32_t got;
        int len = snprintf(label, sizeof label, "tag:%u", l);
        if (idmap_intern(labels, label, (size_t)len, &got)) goto nomem;
    }
    for (size_t i = 0; i < (size_t)(BENCH_LABELS + 1) * f; i++)
        label_map[i] = bench_gauss(&s) * scale;
    int64_t now = (int64_t)time(NULL);
    for (uint32_t i = 0; i < ni; i++)
        published[i] =
            now - (bench_below(&s, 10) == 0 ? (int64_t)bench_below(&s, 30) * 86400 : 400 * 86400);
    model_input in = {.users = users,
                      .items = items,
                      .user_factors = x,
                      .item_factors = y,
                      .user_items = &bought,
                      .item_popularity = pop,
                      .item_labels = labels,
                      .item_map = label_map,
                      .item_published = published};
    in.meta.item_map_lambda = 1.0f;
    in.meta.factors = f;
    in.meta.n_users = nu;
    in.meta.n_items = ni;
    in.meta.interactions = csr_nnz(&bought);
    in.meta.regularization = 0.01f;
    in.meta.alpha = 1.0f;
    snprintf(in.meta.source_fingerprint, sizeof in.meta.source_fingerprint, "%016llx",
             (unsigned long long)a->seed);
    double t0 = clock_seconds();
    model_meta meta;
    if (model_publish(a->model_dir, &in, &meta, &e)) {
        fprintf(stderr, "recd bench: model: %s\n", e.msg);
        goto done;
    }
    double publish_s = clock_seconds() - t0;
    /* Write the matrices as the server reads them, from the published
     * model, so the references score the very same bytes. */
    model *m;
    if (model_open(a->model_dir, &m, &e)) {
        fprintf(stderr, "recd bench: model: %s\n", e.msg);
        goto done;
    }
    uint32_t nq = nu < BENCH_QUERY_VECTORS ? nu : BENCH_QUERY_VECTORS;
    rc = (a->matrix && write_floats(a->matrix, model_item_factors(m), ny)) ||
         (a->queries && write_floats(a->queries, model_user_factors(m), (size_t)nq * f));
    model_close(m);
    if (rc) goto done;
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/current/data.mdb", a->model_dir);
    if (stat(path, &st)) {
        fprintf(stderr, "recd bench: model: %s: %s\n", path, strerror(errno));
        rc = 1;
        goto done;
    }
    printf("{\"what\":\"model\",\"items\":%u,\"factors\":%u,\"users\":%u,\"query_vectors\":%u,"
           "\"data_mdb_bytes\":%lld,\"publish_s\":%.3f,\"version\":\"%s\"}\n",
           ni, f, nu, nq, (long long)st.st_size, publish_s, meta.version);
done:
    csr_free(&bought);
    idmap_free(users);
    idmap_free(items);
    idmap_free(labels);
    free(label_map);
    free(published);
    free(pop);
    free(y);
    free(x);
    return rc;
}

/* --- score ---------------------------------------------------------------- */

/* Per-call times (ms) of one round. The medians are what the table shows:
 * other engineers' builds on the same two cores add outliers that would
 * move a mean. */
typedef struct round_times {
    double *total, *part1, *part2; /* n entries each */
    size_t n;
    double wall_s; /* the whole round, for calls per second */
} round_times;

static int round_alloc(round_times *r, size_t n) {
    r->n = n;
    r->total = malloc(3 * n * sizeof *r->total);
    r->part1 = r->total + n;
    r->part2 = r->part1 + n;
    return r->total ? 0 : -1;
}

/* Sorts each array of r (for quantile). */
static void round_sort(round_times *r) {
    qsort(r->total, r->n, sizeof *r->total, cmp_double);
    qsort(r->part1, r->n, sizeof *r->part1, cmp_double);
    qsort(r->part2, r->n, sizeof *r->part2, cmp_double);
}

/* One query of a round through score_batch, with the user's stored vector
 * (as Recommend does for a known user without fresh events, minus the
 * exclusions and the response). */
static int score_one(const model *m, const float *x, uint32_t k, topk_entry *top, float *work) {
    score_query q = {.x = x, .k = k, .max_slope = 1.0f, .category = -1, .best = top};
    err_t e;
    return score_batch(m, &q, 1, work, &e);
}

/* r->n queries one at a time: total is recd's path (score_batch of one:
 * bfloat16 panels, exact re-scoring near the cut); part1 the float32
 * reference inside recd, score_items (one sgemv) + topk_select over all
 * the items, for the same queries in a loop of its own (interleaved, each
 * would evict the other's matrix from the cache). */
static int run_single(const model *m, uint32_t k, float *scores, float *work, topk_entry *top,
                      round_times *r) {
    const model_meta *mt = model_info(m);
    const float *x = model_user_factors(m);
    double start = clock_seconds();
    for (size_t q = 0; q < r->n; q++) {
        double t0 = clock_seconds();
        if (score_one(m, x + (size_t)(q % mt->n_users) * mt->factors, k, top, work)) return -1;
        r->total[q] = (clock_seconds() - t0) * 1e3;
    }
    r->wall_s = clock_seconds() - start;
    for (size_t q = 0; q < r->n; q++) {
        double t0 = clock_seconds();
        score_items(m, x + (size_t)(q % mt->n_users) * mt->factors, scores);
        topk_select(scores, mt->n_items, k, top);
        r->part1[q] = (clock_seconds() - t0) * 1e3;
    }
    return 0;
}

/* r->n batches of b consecutive users, each one score_batch: the item
 * panels read once for all b queries. */
static int run_batches(const model *m, uint32_t k, uint32_t b, float *work, topk_entry *top,
                       score_query *q, round_times *r) {
    const model_meta *mt = model_info(m);
    const float *x = model_user_factors(m);
    double start = clock_seconds();
    for (size_t i = 0; i < r->n; i++) {
        size_t first = (i * b) % (mt->n_users - b + 1);
        for (uint32_t j = 0; j < b; j++)
            q[j] = (score_query){.x = x + (first + j) * mt->factors,
                                 .k = k,
                                 .max_slope = 1.0f,
                                 .category = -1,
                                 .best = top + (size_t)j * k};
        double t0 = clock_seconds();
        err_t e;
        if (score_batch(m, q, b, work, &e)) return -1;
        r->total[i] = (clock_seconds() - t0) * 1e3;
    }
    r->wall_s = clock_seconds() - start;
    return 0;
}

/* Prints ,"name":[v0,v1,...] of n values. */
static void print_list(const char *name, const double *v, size_t n) {
    printf(",\"%s\":[", name);
    for (size_t i = 0; i < n; i++)
        printf(i ? ",%.5g" : "%.5g", v[i]);
    putchar(']');
}

/* The figures of the score JSON line, one value per round each. */
enum {
    F_P50,   /* ms of one query through score_batch, median */
    F_P99,   /* its 99th percentile */
    F_QPS,   /* queries per second over the whole round */
    F_F32,   /* ms of the float32 reference (score_items + topk_select), median */
    F_BATCH, /* ms per query of a batch of b, median batch / b */
    F_BQPS,  /* batched queries per second over the whole round */
    F_FIGURES
};
static const char *const figure_names[F_FIGURES] = {"p50_ms", "p99_ms",   "qps",
                                                    "f32_ms", "batch_ms", "batch_qps"};

/* Runs `path bench score` on a->model_dir for one round of only its chosen
 * kernel (the same -k, --batch, --seconds) and reads its score line: the
 * one-query and batched medians into *p50_ms, *batch_ms, its kernel and
 * -march into kernel and march (cap bytes each). Returns 0, or -1 after
 * printing why. */
static int run_against(const char *path, const bench_args *a, double *p50_ms, double *batch_ms,
                       char *kernel, char *march, size_t cap) {
    char k[16], batch[16], seconds[32];
    snprintf(k, sizeof k, "%u", a->k);
    snprintf(batch, sizeof batch, "%u", a->batch);
    snprintf(seconds, sizeof seconds, "%g", (double)a->seconds);
    char *const args[] = {(char *)path, "bench",    "score",   "--model",  (char *)a->model_dir,
                          "-k",         k,          "--batch", batch,      "--seconds",
                          seconds,      "--rounds", "1",       "--chosen", NULL};
    int fds[2];
    if (pipe(fds)) {
        fprintf(stderr, "recd bench: score: pipe: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "recd bench: score: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(path, args);
        fprintf(stderr, "recd bench: score: --against %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    FILE *out = fdopen(fds[0], "r");
    char line[8192];
    int found = 0;
    while (out && fgets(line, sizeof line, out)) {
        if (!strstr(line, "\"what\":\"score\"")) continue;
        const char *p50 = strstr(line, "\"p50_ms\":["), *bat = strstr(line, "\"batch_ms\":[");
        const char *ker = strstr(line, "\"kernel\":\""), *mar = strstr(line, "\"march\":\"");
        if (!p50 || !bat || !ker || !mar) continue;
        *p50_ms = strtod(p50 + strlen("\"p50_ms\":["), NULL);
        *batch_ms = strtod(bat + strlen("\"batch_ms\":["), NULL);
        ker += strlen("\"kernel\":\"");
        mar += strlen("\"march\":\"");
        snprintf(kernel, cap, "%.*s", (int)strcspn(ker, "\""), ker);
        snprintf(march, cap, "%.*s", (int)strcspn(mar, "\""), mar);
        found = 1;
    }
    if (out)
        fclose(out);
    else
        close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !found) {
        fprintf(stderr, "recd bench: score: --against %s gave no score line\n", path);
        return -1;
    }
    return 0;
}

/* Times recd's scoring on the model of a->model_dir on this one thread (a
 * server handler thread's view): with every kernel copy this CPU runs (the
 * chosen one's figures make the score line; unless a->chosen_only), and the
 * binary a->against's chosen one, round after round so that the machine's
 * load falls on all alike. */
static int bench_score(const bench_args *a) {
    model *m;
    err_t e;
    if (model_open(a->model_dir, &m, &e)) {
        fprintf(stderr, "recd bench: score: %s\n", e.msg);
        return 1;
    }
    const model_meta *mt = model_info(m);
    uint32_t b = a->batch < mt->n_users ? a->batch : mt->n_users;
    uint32_t k = a->k < mt->n_items ? a->k : mt->n_items;
    openblas_set_num_threads(1);
    const cpu_level chosen = cpu_level_in_use();
    cpu_level levels[CPU_LEVELS];
    size_t n_levels = 0;
    for (int l = CPU_BASELINE; l <= (int)cpu_best(); l++)
        if (!a->chosen_only || l == (int)chosen) levels[n_levels++] = (cpu_level)l;
    float *scores = malloc((size_t)mt->n_items * sizeof *scores);
    float *work = malloc(score_batch_workspace(b) * sizeof *work);
    topk_entry *top = malloc((size_t)k * b * sizeof *top);
    score_query *q = malloc(b * sizeof *q);
    /* Per level, per figure, per round; then the other binary's two and
     * ratios, per round. */
    double *fig = malloc(((size_t)F_FIGURES * n_levels + 3) * a->rounds * sizeof *fig);
    char vs_kernel[64] = "", vs_march[64] = "";
    round_times warm = {0}, sr = {0}, br = {0};
    int rc = 1;
    if (!scores || !work || !top || !q || !fig || round_alloc(&warm, 3)) {
        fprintf(stderr, "recd bench: score: out of memory for %u x %u scores\n", b, mt->n_items);
        goto done;
    }
    double *vs_p50 = fig + (size_t)F_FIGURES * n_levels * a->rounds, *vs_batch = vs_p50 + a->rounds;
    double *ratio = vs_batch + a->rounds;
    /* Warm-up: the first calls fault the mapped matrix and the buffers in;
     * the last ones size the rounds to about a->seconds each. */
    if (run_single(m, k, scores, work, top, &warm)) goto oom;
    size_t n_single =
        (size_t)fmax(20.0, fmin(200000.0, a->seconds / fmax(warm.total[2] * 1e-3, 1e-7)));
    if (run_batches(m, k, b, work, top, q, &warm)) goto oom;
    size_t n_batch =
        (size_t)fmax(3.0, fmin(100000.0, a->seconds / fmax(warm.total[2] * 1e-3, 1e-7)));
    if (round_alloc(&sr, n_single) || round_alloc(&br, n_batch)) goto oom;
    for (uint32_t r = 0; r < a->rounds; r++) {
        for (size_t l = 0; l < n_levels; l++) {
            double *v = fig + (size_t)F_FIGURES * l * a->rounds + r;
#define FIG(i) v[(size_t)(i)*a->rounds]
            cpu_use(levels[l], NULL);
            if (run_single(m, k, scores, work, top, &sr)) goto oom;
            round_sort(&sr);
            FIG(F_P50) = quantile(sr.total, sr.n, 0.5);
            FIG(F_P99) = quantile(sr.total, sr.n, 0.99);
            FIG(F_QPS) = (double)sr.n / sr.wall_s;
            FIG(F_F32) = quantile(sr.part1, sr.n, 0.5);
            if (run_batches(m, k, b, work, top, q, &br)) goto oom;
            round_sort(&br);
            FIG(F_BATCH) = quantile(br.total, br.n, 0.5) / b;
            FIG(F_BQPS) = (double)(br.n * b) / br.wall_s;
#undef FIG
        }
        cpu_use(chosen, NULL);
        if (a->against && run_against(a->against, a, &vs_p50[r], &vs_batch[r], vs_kernel, vs_march,
                                      sizeof vs_kernel))
            goto done;
    }
    size_t c = 0;
    while (levels[c] != chosen)
        c++;
    const double *mine = fig + (size_t)F_FIGURES * c * a->rounds;
    printf("{\"what\":\"score\",\"items\":%u,\"factors\":%u,\"k\":%u,\"queries_per_round\":%zu,"
           "\"batch\":%u,\"batches_per_round\":%zu,\"matrix_bytes\":%zu,\"panel_bytes\":%zu,"
           "\"kernel\":\"%s\",\"march\":\"%s\"",
           mt->n_items, mt->factors, k, sr.n, b, br.n,
           (size_t)mt->n_items * mt->factors * sizeof(float),
           (size_t)panel_padded(mt->n_items) * panel_pairs(mt->factors) * 2 * sizeof(uint16_t),
           cpu_level_name(chosen), RECD_BUILD_MARCH);
    for (size_t i = 0; i < F_FIGURES; i++)
        print_list(figure_names[i], mine + i * a->rounds, a->rounds);
    printf("}\n");
    for (size_t l = 0; l < n_levels && n_levels > 1; l++) {
        const double *v = fig + (size_t)F_FIGURES * l * a->rounds;
        printf("{\"what\":\"score_kernel\",\"items\":%u,\"kernel\":\"%s\",\"chosen\":%s",
               mt->n_items, cpu_level_name(levels[l]), l == c ? "true" : "false");
        print_list("p50_ms", v + F_P50 * a->rounds, a->rounds);
        print_list("batch_ms", v + F_BATCH * a->rounds, a->rounds);
        for (uint32_t r = 0; r < a->rounds; r++)
            ratio[r] = v[F_P50 * a->rounds + r] / mine[F_P50 * a->rounds + r];
        print_list("p50_vs_chosen", ratio, a->rounds);
        printf("}\n");
        fprintf(stderr,
                "bench: score %u items, kernel %-10s%s %7.1f us one query, %7.1f us "
                "batched (x%.2f of the chosen, round 1)\n",
                mt->n_items, cpu_level_name(levels[l]), l == c ? " (chosen)" : "         ",
                v[F_P50 * a->rounds] * 1e3, v[F_BATCH * a->rounds] * 1e3, ratio[0]);
    }
    if (a->against) {
        printf("{\"what\":\"score_against\",\"items\":%u,\"kernel\":\"%s\",\"march\":\"%s\"",
               mt->n_items, vs_kernel, vs_march);
        print_list("p50_ms", vs_p50, a->rounds);
        print_list("batch_ms", vs_batch, a->rounds);
        for (uint32_t r = 0; r < a->rounds; r++)
            ratio[r] = vs_p50[r] / mine[F_P50 * a->rounds + r];
        print_list("p50_vs_this", ratio, a->rounds);
        printf("}\n");
        for (uint32_t r = 0; r < a->rounds; r++)
            fprintf(stderr,
                    "bench: score %u items, round %u: this build (-march %s, %s) %.1f us one "
                    "query, %.1f batched; %s (-march %s, %s) %.1f, %.1f (x%.2f)\n",
                    mt->n_items, r + 1, RECD_BUILD_MARCH, cpu_level_name(chosen),
                    mine[F_P50 * a->rounds + r] * 1e3, mine[F_BATCH * a->rounds + r] * 1e3,
                    a->against, vs_march, vs_kernel, vs_p50[r] * 1e3, vs_batch[r] * 1e3, ratio[r]);
    }
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "recd bench: score: out of memory\n");
done:
    cpu_use(chosen, NULL);
    free(warm.total);
    free(sr.total);
    free(br.total);
    free(fig);
    free(q);
    free(top);
    free(work);
    free(scores);
    model_close(m);
    return rc;
}

/* --- train ---------------------------------------------------------------- */

typedef struct train_log {
    double *seconds;
    uint32_t n;
} train_log;

static void train_progress(void *ctx, uint32_t iteration, double seconds, double loss) {
    train_log *l = ctx;
    l->seconds[l->n++] = seconds;
    fprintf(stderr, "bench: train iteration %u: %.3f s, loss %.6f\n", iteration, seconds, loss);
}

/* Times als_train's iterations (the seconds it reports exclude the loss,
 * which implicit does not compute by default either). */
static int bench_train(const bench_args *a) {
    csr counts;
    err_t e;
    double t0 = clock_seconds();
    if (random_csr(a->users, a->items, a->nnz, a->seed, &counts, &e)) {
        fprintf(stderr, "recd bench: train: %s\n", e.msg);
        return 1;
    }
    double build_s = clock_seconds() - t0;
    train_log log = {malloc(a->iterations * sizeof(double)), 0};
    if (!log.seconds) {
        csr_free(&counts);
        fprintf(stderr, "recd bench: train: out of memory\n");
        return 1;
    }
    als_params p;
    als_params_init(&p);
    p.factors = a->factors;
    p.iterations = a->iterations;
    p.threads = a->threads;
    p.seed = a->seed;
    p.progress = train_progress;
    p.progress_ctx = &log;
    als_factors out;
    int rc = als_train(&counts, &p, &out, &e);
    if (rc) {
        fprintf(stderr, "recd bench: train: %s\n", e.msg);
    } else {
        printf("{\"what\":\"train\",\"users\":%u,\"items\":%u,\"nnz\":%llu,\"factors\":%u,"
               "\"threads\":%u,\"cg_steps\":%u,\"matrix_s\":%.3f",
               a->users, a->items, (unsigned long long)csr_nnz(&counts), a->factors, a->threads,
               p.cg_steps, build_s);
        print_list("s_per_iteration", log.seconds, log.n);
        printf("}\n");
        als_factors_free(&out);
    }
    free(log.seconds);
    csr_free(&counts);
    return rc ? 1 : 0;
}

/* --- items --------------------------------------------------------------- */

#define BENCH_ITEM_QUERIES 1000

/* Milliseconds per query of scoring (rows, or the factors when rows is
 * NULL) the first BENCH_ITEM_QUERIES users with items + a top-k, on this
 * thread. */
static double items_query_ms(const csr *c, const itemrows *rows, const als_factors *f, uint32_t k,
                             float *scores, topk_entry *top) {
    uint32_t n = c->n_cols, done = 0;
    volatile uint32_t sink = 0;
    double t0 = clock_seconds();
    for (uint32_t u = 0; u < c->n_rows && done < BENCH_ITEM_QUERIES; u++) {
        uint64_t b = c->indptr[u], e = c->indptr[u + 1];
        if (b == e) continue;
        if (rows) {
            memset(scores, 0, (size_t)n * sizeof *scores);
            for (uint64_t q = b; q < e; q++) {
                float w = itemrows_value(c->values[q]);
                itemrows_accumulate(rows, &c->indices[q], &w, 1, scores);
            }
        } else {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)f->factors, 1.0f, f->item_factors,
                        (int)f->factors, f->user_factors + (size_t)u * f->factors, 1, 0.0f, scores,
                        1);
        }
        sink += topk_select(scores, n, k, top);
        done++;
    }
    (void)sink;
    return done ? (clock_seconds() - t0) * 1e3 / done : 0;
}

/* Trains each item-item family on a random matrix and times its scoring
 * next to ALS's on the same matrix; one JSON line per model. */
static int bench_items(const bench_args *a) {
    csr c;
    err_t e;
    if (random_csr(a->users, a->items, a->nnz, a->seed, &c, &e)) {
        fprintf(stderr, "recd bench: items: %s\n", e.msg);
        return 1;
    }
    float *scores = malloc((size_t)a->items * sizeof *scores);
    topk_entry *top = malloc((size_t)a->k * sizeof *top);
    als_params p;
    als_params_init(&p);
    p.factors = a->factors;
    p.iterations = a->iterations;
    p.threads = a->threads;
    p.seed = a->seed;
    als_factors f = {0};
    double t0 = clock_seconds();
    int rc = !scores || !top ? err_set(&e, ERR_NOMEM, "out of memory") : als_train(&c, &p, &f, &e);
    if (rc) goto done;
    double als_s = clock_seconds() - t0;
    double als_ms = items_query_ms(&c, NULL, &f, a->k, scores, top);
    printf("{\"what\":\"items\",\"model\":\"als\",\"users\":%u,\"items\":%u,\"nnz\":%llu,"
           "\"train_s\":%.3f,\"bytes\":%llu,\"query_ms\":%.4f,\"vs_als\":1}\n",
           a->users, a->items, (unsigned long long)csr_nnz(&c), als_s,
           (unsigned long long)((uint64_t)(a->users + a->items) * a->factors * 4), als_ms);
    fflush(stdout);
    struct {
        const char *name;
        itemsim_algorithm algorithm;
        uint32_t max_dense;
    } runs[] = {{"ease-dense", ITEMSIM_EASE, UINT32_MAX},
                {"ease-pruned", ITEMSIM_EASE, 0},
                {"rp3beta", ITEMSIM_RP3BETA, 0}};
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        if (runs[r].algorithm == ITEMSIM_EASE && a->items > 20000) {
            fprintf(stderr, "bench: items: %s skipped: %u items need %.1f GB dense\n", runs[r].name,
                    a->items, (double)a->items * a->items * 4 / 1e9);
            continue;
        }
        itemsim_params ip;
        itemsim_params_init(&ip);
        ip.algorithm = runs[r].algorithm;
        ip.max_dense_items = runs[r].max_dense;
        ip.threads = a->threads;
        itemsim_model m;
        t0 = clock_seconds();
        if ((rc = itemsim_fit(&c, &ip, &m, &e))) goto done;
        double train_s = clock_seconds() - t0;
        itemrows rows = itemsim_rows(&m);
        double ms = items_query_ms(&c, &rows, NULL, a->k, scores, top);
        printf("{\"what\":\"items\",\"model\":\"%s\",\"users\":%u,\"items\":%u,\"nnz\":%llu,"
               "\"train_s\":%.3f,\"bytes\":%llu,\"query_ms\":%.4f,\"vs_als\":%.2f}\n",
               runs[r].name, a->users, a->items, (unsigned long long)csr_nnz(&c), train_s,
               (unsigned long long)itemsim_bytes(&m), ms, als_ms > 0 ? ms / als_ms : 0);
        fflush(stdout);
        itemsim_free(&m);
    }
done:
    if (rc) fprintf(stderr, "recd bench: items: %s\n", e.msg);
    als_factors_free(&f);
    free(scores);
    free(top);
    csr_free(&c);
    return rc ? 1 : 0;
}

/* --- body ----------------------------------------------------------------- */

/* Writes msg to path framed as on the wire: a zero byte (not compressed),
 * the length as 4 bytes big-endian, the serialized message. */
static int write_framed(const char *path, const ProtobufCMessage *msg) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 5);
    if (!buf) {
        fprintf(stderr, "recd bench: body: out of memory\n");
        return 1;
    }
    buf[0] = 0;
    buf[1] = (uint8_t)(n >> 24);
    buf[2] = (uint8_t)(n >> 16);
    buf[3] = (uint8_t)(n >> 8);
    buf[4] = (uint8_t)n;
    protobuf_c_message_pack(msg, buf + 5);
    FILE *f = fopen(path, "wb");
    int rc = !f || fwrite(buf, 1, n + 5, f) != n + 5;
    if (f && fclose(f)) rc = 1;
    if (rc) fprintf(stderr, "recd bench: body: %s: %s\n", path, strerror(errno));
    free(buf);
    return rc;
}

static int bench_body(const bench_args *a, char **pos, int n_pos) {
    if (n_pos == 2 && strcmp(pos[0], "recommend") == 0) {
        Recd__V1__RecommendRequest rq = RECD__V1__RECOMMEND_REQUEST__INIT;
        rq.user_id = pos[1];
        rq.k = a->k;
        return write_framed(a->output, &rq.base);
    }
    if (n_pos == 1 && strcmp(pos[0], "health") == 0) {
        Grpc__Health__V1__HealthCheckRequest rq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        return write_framed(a->output, &rq.base);
    }
    fprintf(stderr, "recd bench: body: expected 'recommend USER' or 'health'\n");
    return 2;
}

/* --- ready ---------------------------------------------------------------- */

static double unix_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The port in path, or 0 while the file is missing or not yet written. */
static int read_port(const char *path) {
    FILE *f = fopen(path, "r");
    int port = 0;
    if (f) {
        if (fscanf(f, "%d", &port) != 1) port = 0;
        fclose(f);
    }
    return port;
}

/* Polls every millisecond: the figure is the server's start-up, so the
 * waiting must not add to it noticeably. */
static int bench_ready(const bench_args *a) {
    static const struct timespec ms = {0, 1000000};
    double deadline = unix_now() + a->timeout;
    int port;
    while (!(port = read_port(a->port_file))) {
        if (unix_now() > deadline) {
            fprintf(stderr, "recd bench: ready: no port in %s after %g s\n", a->port_file,
                    a->timeout);
            return 1;
        }
        nanosleep(&ms, NULL);
    }
    double port_s = unix_now() - a->since;
    Recd__V1__RecommendRequest rq = RECD__V1__RECOMMEND_REQUEST__INIT;
    rq.user_id = (char *)a->user;
    rq.k = 10;
    uint8_t req[512];
    size_t len = recd__v1__recommend_request__pack(&rq, req);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    client_result r = {.status = -1};
    err_t e = {0};
    unsigned attempts = 0;
    /* A fresh channel per attempt: a channel whose connection failed waits
     * out gRPC's reconnect backoff (a second or more). */
    while (r.status != 0 && unix_now() < deadline) {
        client *c;
        attempts++;
        if (client_open(target, NULL, &c, &e)) break;
        if (client_call(c, "/recd.v1.Recommender/Recommend", req, len, 1.0, &r, &e) == ERR_OK) {
            free(r.body);
            r.body = NULL;
        } else {
            r.status = -1;
        }
        client_close(c);
        if (r.status != 0) nanosleep(&ms, NULL);
    }
    if (r.status != 0) {
        fprintf(stderr, "recd bench: ready: no successful Recommend(%s): %s\n", a->user,
                r.status > 0 ? r.details : e.msg);
        return 1;
    }
    printf("{\"what\":\"ready\",\"port_file_s\":%.4f,\"first_answer_s\":%.4f,\"attempts\":%u}\n",
           port_s, unix_now() - a->since, attempts);
    return 0;
}

/* --- catalog -------------------------------------------------------------- */

/* Median ms of a Recommend in mode of the first users of m (u0 ..), one
 * call at a time on this thread, for about seconds. */
static int recommend_ms(core *c, int32_t mode, uint32_t k, float seconds, uint32_t users,
                        double *median_ms) {
    size_t cap = 1 << 16, n = 0;
    double *t = malloc(cap * sizeof *t);
    if (!t) return -1;
    double end = clock_seconds() + seconds;
    for (uint32_t u = 0; n < cap && (n < 50 || clock_seconds() < end); u = (u + 1) % users) {
        char id[16];
        snprintf(id, sizeof id, "u%u", u);
        core_recommend_req rq = {.user_id = id, .k = k, .category = "", .mode = mode};
        core_list l;
        err_t e;
        double t0 = clock_seconds();
        int rc = core_recommend(c, &rq, &l, &e);
        t[n++] = (clock_seconds() - t0) * 1e3;
        core_list_free(&l);
        if (rc) {
            fprintf(stderr, "recd bench catalog: Recommend: %s\n", e.msg);
            free(t);
            return -1;
        }
    }
    qsort(t, n, sizeof *t, cmp_double);
    *median_ms = quantile(t, n, 0.5);
    free(t);
    return 0;
}

/* Upserts described items (three labels, published an hour ago) in calls
 * of batch for about seconds or up to max items; items per second,
 * durable, into *rate, and how many into *done. */
static int upsert_rate(core *c, uint32_t batch, float seconds, uint64_t max, uint64_t *seq,
                       double *rate, uint64_t *done) {
    char(*ids)[24] = malloc(batch * sizeof *ids), (*tags)[3][16] = malloc(batch * sizeof *tags);
    char *(*ptrs)[3] = malloc(batch * sizeof *ptrs);
    catalog_item *items = malloc(batch * sizeof *items);
    int rc = ids && tags && ptrs && items ? 0 : -1;
    double t0 = clock_seconds(), end = t0 + seconds;
    *done = 0;
    while (!rc && clock_seconds() < end && *done + batch <= max) {
        for (uint32_t i = 0; i < batch; i++, (*seq)++) {
            snprintf(ids[i], sizeof ids[i], "new%llu", (unsigned long long)*seq);
            for (int l = 0; l < 3; l++) {
                snprintf(tags[i][l], sizeof tags[i][l], "tag:%u",
                         (unsigned)((*seq * 7 + (uint64_t)l * 13) % BENCH_LABELS));
                ptrs[i][l] = tags[i][l];
            }
            items[i] =
                (catalog_item){ids[i], NULL, 0, ptrs[i], 3, "", 0, (int64_t)time(NULL) - 3600};
        }
        core_write_reply w;
        char version[MODEL_VERSION_MAX];
        err_t e;
        if (core_upsert_items(c, items, batch, &w, version, &e)) {
            fprintf(stderr, "recd bench catalog: UpsertItems: %s\n", e.msg);
            rc = -1;
        } else {
            *done += w.accepted;
            core_write_reply_free(&w);
        }
    }
    *rate = (double)*done / (clock_seconds() - t0);
    free(ids);
    free(tags);
    free(ptrs);
    free(items);
    return rc;
}

/* What UpsertItems and NEW_ARRIVALS cost on the core itself (no network):
 * durable upserts per second in calls of 1 and of 100 items, then the
 * median Recommend next to NEW_ARRIVALS on the model, before the upserts
 * and with them all served. */
static int bench_catalog(const bench_args *a) {
    char events[] = "/tmp/recd-bench-catalog-XXXXXX";
    if (!mkdtemp(events)) {
        fprintf(stderr, "recd bench catalog: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    openblas_set_num_threads(1); /* as recd serve runs it */
    core_options o = {.model_dir = a->model_dir, .events_dir = events};
#define BENCH_WEIGHT(name, value, str, word, weight) o.event_weights[value] = weight;
    EV_TYPE_MAP(BENCH_WEIGHT)
#undef BENCH_WEIGHT
    core *c;
    err_t e;
    int rc = 1;
    if (core_open(&o, &c, &e)) {
        fprintf(stderr, "recd bench catalog: %s\n", e.msg);
        goto out;
    }
    uint32_t users = BENCH_QUERY_VECTORS;
    double plain0, arrivals0, plain1, arrivals1, one_rate, batch_rate;
    uint64_t seq = 0, n1, n100;
    if (recommend_ms(c, 0, a->k, a->seconds, users, &plain0) ||
        recommend_ms(c, CORE_MODE_NEW_ARRIVALS, a->k, a->seconds, users, &arrivals0) ||
        upsert_rate(c, 1, a->seconds, BENCH_UPSERTS / 10, &seq, &one_rate, &n1) ||
        upsert_rate(c, 100, a->seconds, BENCH_UPSERTS - n1, &seq, &batch_rate, &n100) ||
        recommend_ms(c, 0, a->k, a->seconds, users, &plain1) ||
        recommend_ms(c, CORE_MODE_NEW_ARRIVALS, a->k, a->seconds, users, &arrivals1))
        goto close;
    printf("{\"what\":\"catalog\",\"upsert_items_per_s_batch1\":%.0f,"
           "\"upsert_items_per_s_batch100\":%.0f,\"upserted\":%llu,"
           "\"recommend_ms\":%.4f,\"new_arrivals_ms\":%.4f,\"new_arrivals_ratio\":%.2f,"
           "\"recommend_ms_upserted\":%.4f,\"new_arrivals_ms_upserted\":%.4f,"
           "\"upserted_ratio\":%.2f}\n",
           one_rate, batch_rate, (unsigned long long)(n1 + n100), plain0, arrivals0,
           arrivals0 / plain0, plain1, arrivals1, plain1 / plain0);
    rc = 0;
close:
    core_close(c);
out:;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", events);
    if (system(cmd) != 0) fprintf(stderr, "recd bench catalog: could not remove %s\n", events);
    return rc;
}

/* --- command -------------------------------------------------------------- */

/* The flags each subcommand takes (bit per subcommand, in this order). */
static const char *const subcommands[] = {"model", "score", "train",   "body",   "ready",
                                          "items", "json",  "catalog", "explain"};
enum {
    S_MODEL = 1,
    S_SCORE = 2,
    S_TRAIN = 4,
    S_BODY = 8,
    S_READY = 16,
    S_ITEMS = 32,
    S_JSON = 64,
    S_CATALOG = 128,
    S_EXPLAIN = 256
};
static const unsigned flag_users[B_HELP + 1] = {
    [B_MODEL] = S_MODEL | S_SCORE | S_CATALOG | S_EXPLAIN,
    [B_ITEMS] = S_MODEL | S_TRAIN | S_ITEMS,
    [B_FACTORS] = S_MODEL | S_TRAIN | S_ITEMS,
    [B_USERS] = S_MODEL | S_TRAIN | S_ITEMS,
    [B_SEED] = S_MODEL | S_TRAIN | S_ITEMS,
    [B_MATRIX] = S_MODEL,
    [B_QUERIES] = S_MODEL,
    [B_K] = S_SCORE | S_BODY | S_JSON | S_CATALOG | S_EXPLAIN,
    [B_BATCH] = S_SCORE,
    [B_SECONDS] = S_SCORE | S_JSON | S_CATALOG | S_EXPLAIN,
    [B_ROUNDS] = S_SCORE | S_EXPLAIN,
    [B_NNZ] = S_TRAIN | S_ITEMS,
    [B_THREADS] = S_TRAIN | S_ITEMS,
    [B_ITERATIONS] = S_TRAIN | S_ITEMS,
    [B_OUTPUT] = S_BODY,
    [B_PORT_FILE] = S_READY,
    [B_SINCE] = S_READY,
    [B_USER] = S_READY,
    [B_TIMEOUT] = S_READY,
    [B_AGAINST] = S_SCORE,
    [B_CHOSEN] = S_SCORE};

/* --- explain -------------------------------------------------------------- */

#define BENCH_FRESH 100 /* fresh signals of the fold-in case */

/* One round of n calls (users in turn): the top k by the stored vector into
 * plain_us, score_explain of them from the stored history into hist_us,
 * and from it plus BENCH_FRESH signals into fresh_us. Returns 0, or -1
 * after printing why. */
static int explain_round(const model *m, const float *yty, uint32_t k, size_t n, float *work,
                         topk_entry *top, double *plain_us, double *hist_us, double *fresh_us) {
    const model_meta *mt = model_info(m);
    uint32_t targets[1000], because[1000 * 3], n_because[1000];
    score_signal fresh[BENCH_FRESH];
    err_t e;
    for (size_t q = 0; q < n; q++) {
        uint32_t u = (uint32_t)(q % mt->n_users);
        double t0 = clock_seconds();
        if (score_one(m, model_user_factors(m) + (size_t)u * mt->factors, k, top, work)) {
            fprintf(stderr, "recd bench: explain: out of memory scoring\n");
            return -1;
        }
        double t1 = clock_seconds();
        for (uint32_t i = 0; i < k; i++)
            targets[i] = top[i].index;
        if (score_explain(m, yty, u, NULL, 0, targets, k, 3, because, NULL, n_because, &e))
            goto failed;
        double t2 = clock_seconds();
        for (uint32_t j = 0; j < BENCH_FRESH; j++)
            fresh[j] = (score_signal){(uint32_t)((q * 7919 + j * 104729) % mt->n_items), 0.1f};
        double t3 = clock_seconds();
        if (score_explain(m, yty, u, fresh, BENCH_FRESH, targets, k, 3, because, NULL, n_because,
                          &e))
            goto failed;
        double t4 = clock_seconds();
        plain_us[q] = (t1 - t0) * 1e6;
        hist_us[q] = (t2 - t1) * 1e6;
        fresh_us[q] = (t4 - t3) * 1e6;
    }
    return 0;
failed:
    fprintf(stderr, "recd bench: explain: %s\n", e.msg);
    return -1;
}

static int bench_explain(const bench_args *a) {
    model *m;
    err_t e;
    if (model_open(a->model_dir, &m, &e)) {
        fprintf(stderr, "recd bench: explain: %s\n", e.msg);
        return 1;
    }
    const model_meta *mt = model_info(m);
    uint32_t k = a->k < mt->n_items ? a->k : mt->n_items;
    openblas_set_num_threads(1);
    float *yty = malloc((size_t)mt->factors * mt->factors * sizeof *yty);
    float *work = malloc(score_batch_workspace(1) * sizeof *work);
    topk_entry *top = malloc((size_t)k * sizeof *top);
    round_times warm = {0}, r = {0};
    int rc = 1;
    if (!yty || !work || !top || round_alloc(&warm, 3)) {
        fprintf(stderr, "recd bench: explain: out of memory\n");
        goto done;
    }
    score_gram(m, yty);
    /* Warm-up, and the size of a round of about a->seconds. */
    if (explain_round(m, yty, k, 3, work, top, warm.total, warm.part1, warm.part2)) goto done;
    double per_call = (warm.total[2] + warm.part1[2] + warm.part2[2]) * 1e-6;
    size_t n = (size_t)fmax(20.0, fmin(200000.0, a->seconds / fmax(per_call, 1e-7)));
    if (round_alloc(&r, n)) {
        fprintf(stderr, "recd bench: explain: out of memory\n");
        goto done;
    }
    printf("{\"what\":\"explain\",\"items\":%u,\"factors\":%u,\"k\":%u,\"calls_per_round\":%zu,"
           "\"fresh_signals\":%d,\"rounds\":[",
           mt->n_items, mt->factors, k, n, BENCH_FRESH);
    for (uint32_t i = 0; i < a->rounds; i++) {
        if (explain_round(m, yty, k, n, work, top, r.total, r.part1, r.part2)) goto done;
        round_sort(&r);
        double plain = quantile(r.total, n, 0.5), hist = quantile(r.part1, n, 0.5);
        double fresh = quantile(r.part2, n, 0.5);
        printf("%s{\"plain_p50_us\":%.1f,\"explain_p50_us\":%.1f,\"explain_fresh_p50_us\":%.1f,"
               "\"explain_over_plain\":%.3f,\"explain_fresh_over_plain\":%.3f}",
               i ? "," : "", plain, hist, fresh, hist / plain, fresh / plain);
    }
    printf("]}\n");
    rc = 0;
done:
    free(r.total);
    free(warm.total);
    free(yty);
    free(work);
    free(top);
    model_close(m);
    return rc;
}

/* --- json ----------------------------------------------------------------- */

/* The JSON work of one HTTP Recommend call, as server/http.c does it: the
 * request text to packed bytes, the packed reply of k items to text. */
static int bench_json(const bench_args *a) {
    static const char request[] = "{\"userId\": \"member-000123\", \"k\": 10, "
                                  "\"excludeItemIds\": [\"item-1\", \"item-2\"]}";
    Recd__V1__ScoredItem items[1000], *ptrs[1000]; /* -k is at most 1000 */
    char ids[1000][16];
    for (uint32_t i = 0; i < a->k; i++) {
        recd__v1__scored_item__init(&items[i]);
        snprintf(ids[i], sizeof ids[i], "item-%05u", i);
        items[i].item_id = ids[i];
        items[i].score = 1.0f / (float)(i + 3);
        ptrs[i] = &items[i];
    }
    Recd__V1__RecommendResponse resp = RECD__V1__RECOMMEND_RESPONSE__INIT;
    resp.items = ptrs;
    resp.n_items = a->k;
    resp.strategy = RECD__V1__STRATEGY__PERSONALIZED;
    resp.model_version = "20261203T111508Z-0ce81005";
    resp.request_id = "control:0431f0fd821e32cb";
    resp.variant = "control";
    size_t packed_len = protobuf_c_message_get_packed_size(&resp.base);
    uint8_t *packed = malloc(packed_len), req_buf[256];
    if (!packed) return 1;
    protobuf_c_message_pack(&resp.base, packed);
    double seconds = a->seconds > 0 ? a->seconds : 1, t0 = clock_seconds(), t;
    uint64_t n_dec = 0, n_enc = 0;
    err_t e;
    do {
        for (int i = 0; i < 100; i++, n_dec++) {
            ProtobufCMessage *m;
            if (pbjson_decode(&recd__v1__recommend_request__descriptor, request, sizeof request - 1,
                              &m, &e)) {
                fprintf(stderr, "recd bench json: %s\n", e.msg);
                free(packed);
                return 1;
            }
            protobuf_c_message_pack(m, req_buf);
            pbjson_free(m);
        }
    } while ((t = clock_seconds()) - t0 < seconds);
    double dec_us = (t - t0) / (double)n_dec * 1e6;
    size_t json_len = 0;
    t0 = clock_seconds();
    do {
        for (int i = 0; i < 100; i++, n_enc++) {
            ProtobufCMessage *m = protobuf_c_message_unpack(
                &recd__v1__recommend_response__descriptor, NULL, packed_len, packed);
            char *json;
            if (!m || pbjson_encode(m, &json, &json_len, &e)) {
                fprintf(stderr, "recd bench json: cannot encode\n");
                free(packed);
                return 1;
            }
            free(json);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    } while ((t = clock_seconds()) - t0 < seconds);
    double enc_us = (t - t0) / (double)n_enc * 1e6;
    free(packed);
    printf("{\"what\":\"json\",\"k\":%u,\"decode_request_us\":%.2f,\"encode_reply_us\":%.2f,"
           "\"reply_bytes\":%zu,\"calls\":%llu}\n",
           a->k, dec_us, enc_us, json_len, (unsigned long long)(n_dec < n_enc ? n_dec : n_enc));
    return 0;
}

int cmd_bench(int argc, char **argv) {
    static const struct option longopts[] = {{"model", required_argument, 0, B_MODEL},
                                             {"items", required_argument, 0, B_ITEMS},
                                             {"factors", required_argument, 0, B_FACTORS},
                                             {"users", required_argument, 0, B_USERS},
                                             {"seed", required_argument, 0, B_SEED},
                                             {"matrix", required_argument, 0, B_MATRIX},
                                             {"queries", required_argument, 0, B_QUERIES},
                                             {"k", required_argument, 0, B_K},
                                             {"batch", required_argument, 0, B_BATCH},
                                             {"seconds", required_argument, 0, B_SECONDS},
                                             {"rounds", required_argument, 0, B_ROUNDS},
                                             {"nnz", required_argument, 0, B_NNZ},
                                             {"threads", required_argument, 0, B_THREADS},
                                             {"iterations", required_argument, 0, B_ITERATIONS},
                                             {"output", required_argument, 0, B_OUTPUT},
                                             {"port-file", required_argument, 0, B_PORT_FILE},
                                             {"since", required_argument, 0, B_SINCE},
                                             {"user", required_argument, 0, B_USER},
                                             {"timeout", required_argument, 0, B_TIMEOUT},
                                             {"against", required_argument, 0, B_AGAINST},
                                             {"chosen", no_argument, 0, B_CHOSEN},
                                             {"help", no_argument, 0, B_HELP},
                                             {0, 0, 0, 0}};
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(bench_usage, stdout);
        return 0;
    }
    unsigned sub = 0;
    for (size_t i = 0; argc >= 2 && i < sizeof subcommands / sizeof *subcommands; i++)
        if (strcmp(argv[1], subcommands[i]) == 0) sub = 1u << i;
    if (!sub) {
        fprintf(stderr, "recd bench: expected a command: model, score, train, body, ready, items, "
                        "json, catalog or explain\n");
        fputs("usage: recd bench COMMAND [options]   (recd bench --help)\n", stderr);
        return 2;
    }
    bench_args a = {.users = sub == S_TRAIN ? 100000 : 10000,
                    .items = sub == S_TRAIN   ? 20000
                             : sub == S_ITEMS ? 10000
                                              : 100000,
                    .factors = 64,
                    .seed = 42,
                    .k = 10,
                    .batch = 32,
                    .seconds = 1.0f,
                    .rounds = 3,
                    .nnz = sub == S_ITEMS ? 500000 : 5000000,
                    .threads = 2,
                    .iterations = 5,
                    .user = "u0",
                    .timeout = 60.0f};
    int opt, bad = 0;
    optind = 2;
    while (!bad && (opt = getopt_long(argc, argv, "k:", longopts, NULL)) != -1) {
        if (opt == 'k') opt = B_K;
        if (opt == B_HELP) {
            fputs(bench_usage, stdout);
            return 0;
        }
        if (opt > 0 && opt < B_HELP && !(flag_users[opt] & sub)) {
            fprintf(stderr, "recd bench %s: --%s does not apply\n", argv[1],
                    longopts[opt - 1].name);
            bad = 1;
            break;
        }
        switch (opt) {
        case B_MODEL:
            a.model_dir = optarg;
            break;
        case B_ITEMS:
            bad = opts_u32("items", optarg, 1, UINT32_MAX - 1, &a.items);
            break;
        case B_FACTORS:
            bad = opts_u32("factors", optarg, 1, 1024, &a.factors);
            break;
        case B_USERS:
            bad = opts_u32("users", optarg, 1, UINT32_MAX - 1, &a.users);
            break;
        case B_SEED:
            bad = opts_u64("seed", optarg, 0, UINT64_MAX, &a.seed);
            break;
        case B_MATRIX:
            a.matrix = optarg;
            break;
        case B_QUERIES:
            a.queries = optarg;
            break;
        case B_K:
            bad = opts_u32("k", optarg, 1, 1000, &a.k);
            break;
        case B_BATCH:
            bad = opts_u32("batch", optarg, 1, 4096, &a.batch);
            break;
        case B_SECONDS:
            bad = opts_float("seconds", optarg, 0.01, 3600, &a.seconds);
            break;
        case B_ROUNDS:
            bad = opts_u32("rounds", optarg, 1, 100, &a.rounds);
            break;
        case B_NNZ:
            bad = opts_u64("nnz", optarg, 0, UINT64_MAX, &a.nnz);
            break;
        case B_THREADS:
            bad = opts_u32("threads", optarg, 1, 256, &a.threads);
            break;
        case B_ITERATIONS:
            bad = opts_u32("iterations", optarg, 1, 1000, &a.iterations);
            break;
        case B_OUTPUT:
            a.output = optarg;
            break;
        case B_PORT_FILE:
            a.port_file = optarg;
            break;
        case B_SINCE: {
            char *end;
            a.since = strtod(optarg, &end);
            a.since_set = 1;
            if (end == optarg || *end || !(a.since > 0)) {
                fprintf(stderr, "recd: --since: expected unix seconds, got '%s'\n", optarg);
                bad = 1;
            }
            break;
        }
        case B_USER:
            a.user = optarg;
            break;
        case B_TIMEOUT:
            bad = opts_float("timeout", optarg, 0.1, 3600, &a.timeout);
            break;
        case B_AGAINST:
            a.against = optarg;
            break;
        case B_CHOSEN:
            a.chosen_only = 1;
            break;
        default:
            bad = 1;
            break; /* getopt_long has said why */
        }
    }
    char **pos = argv + optind;
    int n_pos = argc - optind;
    if (!bad && n_pos > 0 && sub != S_BODY) {
        fprintf(stderr, "recd bench %s: unexpected argument '%s'\n", argv[1], pos[0]);
        bad = 1;
    }
    const char *missing = NULL;
    if ((sub & (S_MODEL | S_SCORE | S_CATALOG | S_EXPLAIN)) && !a.model_dir) missing = "--model";
    if (sub == S_BODY && !a.output) missing = "--output";
    if (sub == S_READY && !a.port_file) missing = "--port-file";
    if (sub == S_READY && !a.since_set) missing = "--since";
    if (!bad && missing) {
        fprintf(stderr, "recd bench %s: %s is required\n", argv[1], missing);
        bad = 1;
    }
    if (bad) {
        fputs("usage: recd bench COMMAND [options]   (recd bench --help)\n", stderr);
        return 2;
    }
    switch (sub) {
    case S_MODEL:
        return bench_model(&a);
    case S_SCORE:
        return bench_score(&a);
    case S_TRAIN:
        return bench_train(&a);
    case S_BODY:
        return bench_body(&a, pos, n_pos);
    case S_ITEMS:
        return bench_items(&a);
    case S_JSON:
        return bench_json(&a);
    case S_CATALOG:
        return bench_catalog(&a);
    case S_EXPLAIN:
        return bench_explain(&a);
    default:
        return bench_ready(&a);
    }
}
