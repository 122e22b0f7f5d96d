#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "als.h"
#include "churn.h"
#include "clock.h"
#include "cmd.h"
#include "csr.h"
#include "eval.h"
#include "evstore.h"
#include "idstate.h"
#include "model.h"
#include "opts.h"
#include "privacy.h"

static const char train_usage[] =
    "usage: recd train --input FILE.csv [--events DIR] --model DIR [options]\n"
    "Trains implicit-feedback ALS on a purchase history and publishes the model into DIR\n"
    "(atomically: a server serving DIR switches to it without a restart).\n"
    "  --input FILE         purchase history CSV ('-' = stdin)\n"
    "  --events DIR         also train on the events a server recorded (recd serve --events),\n"
    "                       each weighted by its type (--event-weights); either input may be "
    "alone\n"
    "  --event-weights LIST weight of each event type in purchases, default\n"
    "                       view=0.1,cart=0.3,purchase=1,favorite=0.5\n"
    "  --model DIR          model directory (created if missing)\n"
    "  --factors N          latent factors (default 64)\n"
    "  --iterations N       ALS iterations (default 15)\n"
    "  --regularization F   L2 regularization lambda (default 0.01)\n"
    "  --alpha F            confidence c = 1 + alpha * purchases (default 1.0)\n"
    "  --half-life DAYS     time decay: an event counts 0.5^(age / DAYS) of its weight, age\n"
    "                       from the latest event of the input (default 0: no decay)\n"
    "  --threads N          training threads (default: number of CPUs)\n"
    "  --seed N             random seed of the initial factors (default 42)\n"
    "  --popularity-blend W serve x_u.y_i + W * (item popularity / the largest) as the\n"
    "                       personalized score; 'inf' = the most-popular list for everyone\n"
    "                       (default 0: pure ALS; recd tune chooses it on validation)\n"
    "Churn (trained beside the recommendation model from the --input purchases, published\n"
    "with it; the evaluation report goes to stderr):\n"
    "  --churn-horizon Nd   churned = no purchase within N days (e.g. 90d); turns churn on\n"
    "  --churn-bands P,Q    probability thresholds of the medium and heavy risk bands\n"
    "                       (default 0.4,0.7)\n"
    "  --tiers A,B,C,D      spend in the last 365 days for bronze, silver, gold, diamond\n"
    "                       (default 3000,8000,20000,50000)\n"
    "  --churn-rule-months N  months (30 days) of the baseline rule \"frequency down 30%\"\n"
    "                       (default 2)\n";

enum {
    OPT_INPUT = OPT_FIRST_FREE,
    OPT_MODEL,
    OPT_FACTORS,
    OPT_ITERATIONS,
    OPT_REG,
    OPT_ALPHA,
    OPT_THREADS,
    OPT_SEED,
    OPT_EVENTS,
    OPT_EVENT_WEIGHTS,
    OPT_CHURN_HORIZON,
    OPT_CHURN_BANDS,
    OPT_TIERS,
    OPT_CHURN_RULE_MONTHS,
    OPT_HALF_LIFE,
    OPT_POPULARITY_BLEND
};

/* The churn codes and sizes are stored by model.c, which does not know
 * churn.h: they must agree. */
_Static_assert(CHURN_BANDS - 1 == MODEL_CHURN_BANDS, "band thresholds");
_Static_assert(CHURN_TIERS - 1 == MODEL_CHURN_TIERS, "tier thresholds");
_Static_assert(CHURN_NONE == MODEL_CHURN_NONE, "unscored code");
_Static_assert(CHURN_INPUTS <= MODEL_CHURN_MAX_FEATURES, "churn inputs");
_Static_assert(CHURN_SEGMENTS == 6 && CHURN_SEG_DORMANT == 5 && CHURN_TIER_DIAMOND == 4 &&
                   CHURN_BAND_HEAVY == 2,
               "codes documented in model.h");

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

static void train_progress(void *ctx, uint32_t iteration, double seconds, double loss) {
    const als_params *p = ctx;
    fprintf(stderr, "train: iteration %2u/%u  %7.3f s  loss %.6f\n", iteration, p->iterations,
            seconds, loss);
}

/* Fingerprint of the training data itself (ids, times, quantities), so that
 * two models trained from the same history can be recognised. */
static void history_fingerprint(const ev_set *s, char out[17]) {
    XXH64_state_t *h = XXH64_createState();
    XXH64_reset(h, 0);
    for (size_t i = 0; i < s->n; i++) {
        size_t len;
        /* Lengths go in too, so that ("ab", "c") and ("a", "bc") differ. */
        const char *id = idmap_key(s->users, s->events[i].user, &len);
        XXH64_update(h, &len, sizeof len);
        XXH64_update(h, id, len);
        id = idmap_key(s->items, s->events[i].item, &len);
        XXH64_update(h, &len, sizeof len);
        XXH64_update(h, id, len);
        XXH64_update(h, &s->events[i].ts, sizeof s->events[i].ts);
        /* A recorded event's weight where older versions kept it (in
         * quantity), so that the same data keeps its fingerprint. */
        const ev_event *ev = &s->events[i];
        XXH64_update(h, ev->recorded ? &ev->weight : &ev->quantity, sizeof ev->quantity);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)XXH64_digest(h));
    XXH64_freeState(h);
}

typedef struct forgotten_scan {
    const ev_set *history;
    uint8_t *drop;
    uint32_t n;
} forgotten_scan;

static void mark_forgotten(void *ctx, const char *id, size_t len, const void *value) {
    forgotten_scan *f = ctx;
    uint32_t u;
    /* An opt-out only stops personal serving. */
    if (privacy_of_value(value) == PRIVACY_FORGOTTEN &&
        idmap_find(f->history->users, id, len, &u) == ERR_OK && !f->drop[u]) {
        f->drop[u] = 1;
        f->n++;
    }
}

/* Leaves the members that a server was told to forget (ForgetUser, kept in
 * events_dir/privacy) out of the whole history, CSV rows included. Returns
 * 0, or -1 after printing why. */
static int leave_out_forgotten(const char *events_dir, ev_set *history) {
    char dir[4096];
    idstate *privacy;
    err_t e;
    if (snprintf(dir, sizeof dir, "%s/" PRIVACY_DIR, events_dir) >= (int)sizeof dir ||
        idstate_open(dir, 1, &privacy, &e)) {
        fprintf(stderr, "recd: cannot read the privacy choices in %s: %s\n", dir, e.msg);
        return -1;
    }
    forgotten_scan f = {history, calloc(idmap_size(history->users) + 1, 1), 0};
    int rc = f.drop ? 0 : -1;
    if (f.drop) idstate_each(privacy, mark_forgotten, &f);
    idstate_close(privacy);
    if (f.n) {
        rc = ev_set_drop_users(history, f.drop, &e);
        fprintf(stderr, "privacy: %u forgotten members left out of the training data\n", f.n);
    }
    if (rc) fprintf(stderr, "recd: out of memory leaving out forgotten members\n");
    free(f.drop);
    return rc;
}

/* Loads the CSV history (when input is set) and then the recorded events of
 * events_dir (when set) into one set, initialized here (caller frees with
 * ev_set_free). Returns 0, or -1 after printing why (an empty history
 * included). */
static int load_histories(const char *input, const ingest_options *io, const char *events_dir,
                          const float *weights, ev_set *history) {
    err_t e;
    if (input ? opts_load_history(input, io, history) : ev_set_init(history, &e)) {
        if (!input) fprintf(stderr, "recd: %s\n", e.msg);
        return -1;
    }
    if (events_dir) {
        evstore *store;
        size_t added = 0;
        int rc = evstore_open(events_dir, NULL, &store, &e);
        if (!rc) {
            rc = evstore_load(store, weights, history, &added, &e);
            evstore_close(store);
        }
        if (rc) {
            fprintf(stderr, "recd: event store %s: %s\n", events_dir, e.msg);
            ev_set_free(history);
            return -1;
        }
        fprintf(stderr, "events: %zu recorded events from %s\n", added, events_dir);
        if (leave_out_forgotten(events_dir, history)) {
            ev_set_free(history);
            return -1;
        }
    }
    if (history->n == 0) {
        fprintf(stderr, "recd: no usable purchase rows or events; no model published\n");
        ev_set_free(history);
        return -1;
    }
    return 0;
}

int cmd_train(int argc, char **argv) {
    static const struct option longopts[] = {
        {"input", required_argument, 0, OPT_INPUT},
        {"model", required_argument, 0, OPT_MODEL},
        {"factors", required_argument, 0, OPT_FACTORS},
        {"iterations", required_argument, 0, OPT_ITERATIONS},
        {"regularization", required_argument, 0, OPT_REG},
        {"alpha", required_argument, 0, OPT_ALPHA},
        {"threads", required_argument, 0, OPT_THREADS},
        {"seed", required_argument, 0, OPT_SEED},
        {"events", required_argument, 0, OPT_EVENTS},
        {"event-weights", required_argument, 0, OPT_EVENT_WEIGHTS},
        {"churn-horizon", required_argument, 0, OPT_CHURN_HORIZON},
        {"churn-bands", required_argument, 0, OPT_CHURN_BANDS},
        {"tiers", required_argument, 0, OPT_TIERS},
        {"churn-rule-months", required_argument, 0, OPT_CHURN_RULE_MONTHS},
        {"half-life", required_argument, 0, OPT_HALF_LIFE},
        {"popularity-blend", required_argument, 0, OPT_POPULARITY_BLEND},
        OPTS_INGEST_LONG,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *input = NULL, *model_dir = NULL, *events_dir = NULL;
    /* The defaults of the server too, so that a fold-in and a retraining
     * weigh an event alike. */
    float weights[EV_TYPE_END];
    ev_type_default_weights(weights);
    ingest_options io;
    ingest_options_init(&io);
    als_params ap;
    als_params_init(&ap);
    churn_params cp;
    churn_params_init(&cp);
    int churn = 0, churn_flags = 0; /* --churn-horizon given; other churn flags given */
    float half_life = 0.0f;         /* days; 0 = no decay */
    float blend = 0.0f;             /* model_meta.popularity_blend */
    int opt, rc;
    /* 0 makes glibc's getopt start over: recd tune calls cmd_train after
     * parsing its own arguments. */
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_INPUT:
            input = optarg;
            break;
        case OPT_MODEL:
            model_dir = optarg;
            break;
        case OPT_FACTORS:
            if (opts_u32("factors", optarg, 1, 1024, &ap.factors)) return 2;
            break;
        case OPT_ITERATIONS:
            if (opts_u32("iterations", optarg, 1, 1000, &ap.iterations)) return 2;
            break;
        case OPT_REG:
            if (opts_float("regularization", optarg, 0, 1e6, &ap.regularization)) return 2;
            break;
        case OPT_ALPHA:
            if (opts_float("alpha", optarg, 0, 1e6, &ap.alpha)) return 2;
            break;
        case OPT_THREADS:
            if (opts_u32("threads", optarg, 1, 256, &ap.threads)) return 2;
            break;
        case OPT_SEED:
            if (opts_u64("seed", optarg, 0, UINT64_MAX, &ap.seed)) return 2;
            break;
        case OPT_HALF_LIFE:
            if (opts_float("half-life", optarg, 0, 1e6, &half_life)) return 2;
            break;
        case OPT_POPULARITY_BLEND:
            if (strcmp(optarg, "inf") == 0)
                blend = INFINITY;
            else if (opts_float("popularity-blend", optarg, 0, 1e6, &blend))
                return 2;
            break;
        case OPT_EVENTS:
            events_dir = optarg;
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
            printf("%s%s", train_usage, OPTS_INGEST_HELP);
            return 0;
        default:
            if ((rc = opts_ingest(opt, optarg, &io)) == 1) break;
            if (rc == 0) fprintf(stderr, "%s%s", train_usage, OPTS_INGEST_HELP);
            return 2;
        }
    }
    if ((!input && !events_dir) || !model_dir || optind != argc) {
        fprintf(stderr, "%s%s", train_usage, OPTS_INGEST_HELP);
        return 2;
    }
    if (churn_flags && !churn) {
        fprintf(stderr, "recd: --churn-bands, --tiers and --churn-rule-months need "
                        "--churn-horizon\n");
        return 2;
    }
    if (churn && !input) {
        fprintf(stderr, "recd: --churn-horizon needs the purchase history of --input\n");
        return 2;
    }
    double start = clock_seconds();
    ev_set history;
    if (load_histories(input, &io, events_dir, weights, &history)) return 1;
    /* The CSV rows come first: the recorded events were appended after
     * them, and leaving members out keeps the order. */
    size_t n_from_csv = 0;
    while (n_from_csv < history.n && !history.events[n_from_csv].recorded)
        n_from_csv++;
    uint32_t n_users = idmap_size(history.users), n_items = idmap_size(history.items);
    err_t e;
    uint32_t *rows = malloc(history.n * sizeof *rows), *cols = malloc(history.n * sizeof *cols);
    float *vals = malloc(history.n * sizeof *vals);
    csr counts = {0}, by_item = {0};
    als_factors factors = {0};
    float *popularity = malloc((size_t)n_items * sizeof *popularity);
    uint32_t *item_category = NULL;
    churn_result cr = {0};
    model_churn mc = {0};
    char fingerprint[17];
    int64_t data_until = INT64_MIN;
    int status = 1;
    if (!rows || !cols || !vals || !popularity) {
        fprintf(stderr, "recd: out of memory for %zu events\n", history.n);
        goto out;
    }
    for (size_t i = 0; i < history.n; i++)
        if (history.events[i].ts > data_until) data_until = history.events[i].ts;
    /* r_ui = number of purchase rows of item i by user u: repeat purchases
     * count, quantities do not (wholesale quantities would swamp the rest).
     * A recorded event counts its type's weight (ev_event.weight). With --half-life each counts
     * 0.5^(age / half-life), age from data_until: the code evaluation and tuning measure with. */
    eval_event_weights(&history, half_life, data_until, vals);
    for (size_t i = 0; i < history.n; i++) {
        rows[i] = history.events[i].user;
        cols[i] = history.events[i].item;
    }
    if (csr_from_triplets(n_users, n_items, rows, cols, vals, history.n, &counts, &e) ||
        csr_transpose(&counts, &by_item, &e)) {
        fprintf(stderr, "recd: %s\n", e.msg);
        goto out;
    }
    /* Before churn sorts the history: the fingerprint follows event order. */
    history_fingerprint(&history, fingerprint);
    if (churn) {
        /* Churn is about purchases: only the CSV rows, which come first;
         * recorded events (views, carts, type-weighted quantities) are
         * left out by shortening the set for the call. Sorting permutes
         * only those rows, so "i < n_from_csv" above still marks them.
         * Users known only from recorded events stay unscored. */
        size_t n_all = history.n;
        history.n = n_from_csv;
        rc = churn_run(&history, &cp, stderr, &cr, &e);
        history.n = n_all;
        if (rc) {
            fprintf(stderr, "recd: %s; no model published\n", e.msg);
            goto out;
        }
        mc = (model_churn){.n_features = CHURN_INPUTS,
                           .feature_names = churn_input_names,
                           .coef = cr.model.coef,
                           .mean = cr.model.mean,
                           .scale = cr.model.scale,
                           .intercept = cr.model.intercept,
                           .platt_a = cr.model.platt_a,
                           .platt_b = cr.model.platt_b,
                           .horizon_days = cr.horizon_days,
                           .scored_at = cr.scored_at,
                           .features = cr.inputs,
                           .probability = cr.probability,
                           .band = cr.band,
                           .segment = cr.segment,
                           .tier = cr.tier,
                           .recency_days = cr.recency_days,
                           .frequency = cr.frequency,
                           .monetary = cr.monetary};
        memcpy(mc.bands, cr.bands, sizeof mc.bands);
        memcpy(mc.tiers, cr.tiers, sizeof mc.tiers);
    }
    /* Popularity = distinct buyers: the most-popular fallback's order. */
    for (uint32_t i = 0; i < n_items; i++)
        popularity[i] = (float)(by_item.indptr[i + 1] - by_item.indptr[i]);
    fprintf(stderr,
            "train: %u users x %u items, %llu nonzeros, factors %u, lambda %g, alpha %g, "
            "half-life %g days, %u threads, popularity blend %g\n",
            n_users, n_items, (unsigned long long)csr_nnz(&counts), ap.factors, ap.regularization,
            ap.alpha, half_life, ap.threads, blend);
    ap.progress = train_progress;
    ap.progress_ctx = &ap;
    double train_start = clock_seconds();
    if (als_train(&counts, &ap, &factors, &e)) {
        fprintf(stderr, "recd: training failed: %s\n", e.msg);
        goto out;
    }
    model_input in = {0};
    in.meta.data_until = data_until;
    in.meta.factors = ap.factors;
    in.meta.n_users = n_users;
    in.meta.n_items = n_items;
    in.meta.interactions = history.n;
    in.meta.iterations = ap.iterations;
    in.meta.regularization = ap.regularization;
    in.meta.alpha = ap.alpha;
    in.meta.loss = factors.loss;
    in.meta.popularity_blend = blend;
    in.meta.train_seconds = clock_seconds() - train_start;
    memcpy(in.meta.source_fingerprint, fingerprint, sizeof fingerprint);
    in.users = history.users;
    in.items = history.items;
    if (idmap_size(history.categories) > 0) {
        if (!(item_category = malloc((size_t)n_items * sizeof *item_category))) {
            fprintf(stderr, "recd: out of memory for item categories\n");
            goto out;
        }
        for (uint32_t i = 0; i < n_items; i++)
            item_category[i] = ev_set_item_category(&history, i);
        in.categories = history.categories;
        in.item_category = item_category;
    }
    in.user_factors = factors.user_factors;
    in.item_factors = factors.item_factors;
    in.user_items = &counts;
    in.item_popularity = popularity;
    in.churn = churn ? &mc : NULL;
    model_meta published;
    if (model_publish(model_dir, &in, &published, &e)) {
        fprintf(stderr, "recd: cannot publish the model: %s\n", e.msg);
        goto out;
    }
    fprintf(stderr,
            "train: published %s to %s: %u users, %u items, %zu events, loss %.6f, "
            "training %.1f s, total %.1f s\n",
            published.version, model_dir, n_users, n_items, history.n, factors.loss,
            in.meta.train_seconds, clock_seconds() - start);
    printf("%s\n", published.version);
    status = 0;
out:
    free(rows);
    free(cols);
    free(vals);
    free(popularity);
    free(item_category);
    csr_free(&counts);
    csr_free(&by_item);
    als_factors_free(&factors);
    churn_result_free(&cr);
    ev_set_free(&history);
    return status;
}
