/* core: the service's lifecycle (open, close), the request checks every
 * operation shares, model info and the core's metrics. The operations
 * themselves are in the core_*.c files core_int.h lists. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core_int.h"
#include "utf8.h"

void core_options_init(core_options *o) {
    memset(o, 0, sizeof *o);
    o->reload_interval_s = 1.0;
    ev_type_default_weights(o->event_weights);
}

/* --- request checks -------------------------------------------------------- */

const char *core__id_problem(const char *id) {
    size_t len = strlen(id);
    if (len == 0) return "is empty";
    if (len > CORE_MAX_ID_BYTES) return "is longer than 256 bytes";
    if (!utf8_valid(id, len)) return "is not valid UTF-8";
    return NULL;
}

int core__check_id(const char *field, const char *id, err_t *e) {
    const char *problem = core__id_problem(id);
    if (!problem) return ERR_OK;
    size_t len = strlen(id);
    if (len > CORE_MAX_ID_BYTES)
        return err_set(e, ERR_INVALID, "%s is %zu bytes, longer than %d", field, len,
                       CORE_MAX_ID_BYTES);
    return err_set(e, ERR_INVALID, "%s %s", field, problem);
}

int core__check_ids(const char *field, char *const *ids, size_t n, err_t *e) {
    if (n > CORE_MAX_LIST)
        return err_set(e, ERR_INVALID, "%zu %s, more than %d", n, field, CORE_MAX_LIST);
    for (size_t i = 0; i < n; i++) {
        const char *problem = core__id_problem(ids[i]);
        if (problem) return err_set(e, ERR_INVALID, "%s[%zu] %s", field, i, problem);
    }
    return ERR_OK;
}

int core__check_durable(const core *c, const char *op, err_t *e) {
    if (c->events) return ERR_OK;
    return err_set(e, ERR_PRECONDITION,
                   "%s needs --events for durability: without an events folder it would be lost "
                   "on restart",
                   op);
}

int core__check_k(uint32_t k, err_t *e) {
    if (k == 0 || k > CORE_MAX_K)
        return err_set(e, ERR_INVALID, "k must be between 1 and %d, got %u", CORE_MAX_K, k);
    return ERR_OK;
}

const char *core_mode_name(int32_t m) {
#define CORE_MODE_NAME(name, value, pb, word, served)                                              \
    if (m == value) return #pb;
    CORE_MODE_MAP(CORE_MODE_NAME)
#undef CORE_MODE_NAME
    return NULL;
}

const char *core_mode_word(int32_t m) {
#define CORE_MODE_WORD(name, value, pb, word, served)                                              \
    if (m == value) return word;
    CORE_MODE_MAP(CORE_MODE_WORD)
#undef CORE_MODE_WORD
    return NULL;
}

int32_t core_mode_of_word(const char *w) {
#define CORE_MODE_OF(name, value, pb, word, served)                                                \
    if (!strcmp(w, word)) return value;
    CORE_MODE_MAP(CORE_MODE_OF)
#undef CORE_MODE_OF
    return -1;
}

privacy_state core__privacy(core *c, const char *user, size_t len) {
    return privacy_get(c->privacy, user, len);
}

int core_submit(core *c, sched_job *job, err_t *e) {
    if (!c->scheduler) return err_set(e, ERR_PRECONDITION, "this core runs no scheduler");
    return sched_submit(c->scheduler, job, e);
}

int core_stream_begin(core *c, err_t *e) {
    unsigned running = atomic_load(&c->streams);
    do {
        if (running >= c->max_streams)
            return err_set(e, ERR_LIMIT, "%u streaming calls are running already; try again later",
                           c->max_streams);
    } while (!atomic_compare_exchange_weak(&c->streams, &running, running + 1));
    return ERR_OK;
}

void core_stream_end(core *c) {
    atomic_fetch_sub(&c->streams, 1);
}

/* --- GetModelInfo ---------------------------------------------------------- */

void core_model_info(core *c, model_meta *out) {
    core__model *sm = core__acquire(c);
    *out = *model_info(sm->m);
    core__release(sm);
}

/* --- metrics --------------------------------------------------------------- */

void core_write_metrics(void *ctx, FILE *out) {
    core *c = ctx;
    fprintf(out, "# HELP recd_model_info The model each variant serves (value 1).\n"
                 "# TYPE recd_model_info gauge\n");
    double now = (double)time(NULL);
    char lines[EXP_MAX_VARIANTS][3][256];
    for (uint32_t v = 0; v < c->exp.n; v++) {
        core__model *sm = core__acquire_variant(c, v);
        const model_meta *meta = model_info(sm->m);
        const char *name = c->exp.names[v];
        fprintf(out, "recd_model_info{variant=\"%s\",version=\"%s\"} 1\n", name, meta->version);
        snprintf(lines[v][0], sizeof lines[v][0], "recd_model_age_seconds{variant=\"%s\"} %.0f",
                 name, now - (double)meta->trained_at);
        snprintf(lines[v][1], sizeof lines[v][1], "recd_model_users{variant=\"%s\"} %u", name,
                 meta->n_users);
        snprintf(lines[v][2], sizeof lines[v][2], "recd_model_items{variant=\"%s\"} %u", name,
                 meta->n_items);
        core__release(sm);
    }
    static const char *const families[3][2] = {
        {"recd_model_age_seconds", "Seconds since the served model was published."},
        {"recd_model_users", "Members the served model knows."},
        {"recd_model_items", "Items the served model knows."}};
    for (int f = 0; f < 3; f++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", families[f][0], families[f][1],
                families[f][0]);
        for (uint32_t v = 0; v < c->exp.n; v++)
            fprintf(out, "%s\n", lines[v][f]);
    }
    fprintf(out,
            "# HELP recd_events_ingested_total Events stored durably by RecordEvents.\n"
            "# TYPE recd_events_ingested_total counter\nrecd_events_ingested_total %llu\n"
            "# HELP recd_fold_ins_total Recommend calls that folded fresh signals in.\n"
            "# TYPE recd_fold_ins_total counter\nrecd_fold_ins_total %llu\n"
            "# HELP recd_fold_in_capped_total Shoppers whose fold-in read only their newest "
            "events (more were recorded than one fold-in reads).\n"
            "# TYPE recd_fold_in_capped_total counter\nrecd_fold_in_capped_total %llu\n",
            (unsigned long long)atomic_load(&c->events_ingested),
            (unsigned long long)atomic_load(&c->fold_ins),
            (unsigned long long)atomic_load(&c->fold_ins_capped));
    /* Every strategy a Recommend answer has, BUY_AGAIN (mode BUY_AGAIN) too. */
    static const struct {
        core_strategy st;
        const char *name;
    } strategy[] = {{CORE_PERSONALIZED, "PERSONALIZED"},
                    {CORE_POPULAR, "POPULAR"},
                    {CORE_SESSION, "SESSION"},
                    {CORE_BUY_AGAIN, "BUY_AGAIN"}};
    fprintf(out, "# HELP recd_recommend_strategy_total Recommend answers, by strategy.\n"
                 "# TYPE recd_recommend_strategy_total counter\n");
    for (size_t i = 0; i < sizeof strategy / sizeof strategy[0]; i++)
        fprintf(out, "recd_recommend_strategy_total{strategy=\"%s\"} %llu\n", strategy[i].name,
                (unsigned long long)atomic_load(&c->strategies[strategy[i].st]));
    if (c->events)
        fprintf(out,
                "# HELP recd_event_store_commits_total Group commits (fsyncs) of the event "
                "store.\n# TYPE recd_event_store_commits_total counter\n"
                "recd_event_store_commits_total %llu\n",
                (unsigned long long)evstore_commits(c->events));
    /* Shares change at run time (core_set_experiment): a copy under the lock. */
    pthread_mutex_lock(&c->lock);
    experiment x = c->exp;
    pthread_mutex_unlock(&c->lock);
    fprintf(out, "# HELP recd_experiment_share Share of members assigned to each variant.\n"
                 "# TYPE recd_experiment_share gauge\n");
    for (uint32_t v = 0; v < x.n; v++)
        fprintf(out, "recd_experiment_share{variant=\"%s\"} %.17g\n", x.names[v], x.shares[v]);
    fprintf(out, "# HELP recd_feedback_total Feedback recorded, by variant and type.\n"
                 "# TYPE recd_feedback_total counter\n");
    for (uint32_t v = 0; v < c->exp.n; v++)
        for (uint32_t t = 1; t < EXP_FEEDBACK_END; t++)
            if (exp_feedback_word(t))
                fprintf(out, "recd_feedback_total{variant=\"%s\",type=\"%s\"} %llu\n",
                        c->exp.names[v], exp_feedback_word(t),
                        (unsigned long long)atomic_load(&c->feedback_counts[v][t]));
    core__bus_metrics(c, out);
    if (c->scheduler)
        fprintf(out,
                "# HELP recd_grpc_queue_length Calls waiting for a handler thread.\n"
                "# TYPE recd_grpc_queue_length gauge\nrecd_grpc_queue_length %u\n",
                sched_queued(c->scheduler));
}

/* --- lifecycle ------------------------------------------------------------- */

/* Writes "<events_dir>/<name>" into buf (PATH_MAX bytes). */
static int subdir(char *buf, const char *events_dir, const char *name, err_t *e) {
    if (snprintf(buf, 4096, "%s/%s", events_dir, name) >= 4096)
        return err_set(e, ERR_INVALID, "events folder name too long");
    return ERR_OK;
}

/* Makes c the one writer of the events folder: an exclusive flock on
 * "<dir>/serve.lock", held until core_close (the kernel drops it when the
 * process dies, so a crash leaves no stale lock). A second server on the
 * folder would keep its own forgotten members, item rules and experiment in
 * memory and serve what the first was told to stop; it is refused instead.
 * The pid of the holder is written into the file for the message. */
static int lock_events_dir(core *c, const char *dir, err_t *e) {
    char path[4096];
    if (mkdir(dir, 0755) && errno != EEXIST)
        return err_set(e, ERR_IO, "events folder %s: mkdir: %s", dir, strerror(errno));
    int rc = subdir(path, dir, "serve.lock", e);
    if (rc) return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return err_set(e, ERR_IO, "events folder lock %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int busy = errno == EWOULDBLOCK;
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        if (!busy) return err_set(e, ERR_IO, "events folder lock %s: %s", path, strerror(errno));
        return err_set(e, ERR_PRECONDITION,
                       "events folder %s is in use by another recd serve (pid %s): one server "
                       "per events folder",
                       dir, holder[0] ? holder : "unknown");
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    /* The pid is only for the message: the lock holds without it. */
    int wrote = ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) == len;
    (void)wrote;
    c->events_lock = fd;
    return ERR_OK;
}

int core_open(const core_options *o, core **out, err_t *e) {
    core *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, ERR_NOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->exp_update, NULL);
    pthread_mutex_init(&c->stop_lock, NULL);
    pthread_mutex_init(&c->bus_forgets_lock, NULL);
    pthread_cond_init(&c->stop_cond, NULL);
    c->events_lock = -1;
    c->reload_interval_s = o->reload_interval_s;
    memcpy(c->weights, o->event_weights, sizeof c->weights);
    int rc = core__variants(c, o, e);
    char rules_dir[4096], privacy_dir[4096], feedback_dir[4096], exp_dir[4096];
    const char *ev = o->events_dir;
    if (!rc && ev && !(rc = subdir(rules_dir, ev, "item-rules", e)) &&
        !(rc = subdir(privacy_dir, ev, PRIVACY_DIR, e)) &&
        !(rc = subdir(feedback_dir, ev, "feedback", e)) &&
        !(rc = subdir(exp_dir, ev, "experiment", e))) {
        if ((rc = lock_events_dir(c, ev, e)))
            err_wrap(e, "cannot serve");
        else if ((rc = evstore_open(ev, NULL, &c->events, e)))
            err_wrap(e, "event store %s", ev);
        else if ((rc = evstore_open(feedback_dir, NULL, &c->feedback, e)))
            err_wrap(e, "feedback store %s", feedback_dir);
        else if (!(rc = idstate_open(exp_dir, EXP_STATE_BYTES, &c->exp_state, e)))
            core__restore_experiment(c);
    }
    if (!rc) rc = catalog_open(ev ? rules_dir : NULL, &c->rules, e);
    if (!rc) rc = idstate_open(ev ? privacy_dir : NULL, 1, &c->privacy, e);
    for (uint32_t v = 0; !rc && v < c->exp.n; v++)
        rc = core__load(c, v, e);
    if (!rc) rc = core__bus_open(c, o, e);
    if (!rc) rc = core__watch_start(c, e);
    c->max_streams = o->max_streams ? o->max_streams : 4;
    sched_options so = {o->threads, o->max_queue, o->max_queue_ms};
    if (!rc && o->threads) rc = sched_start(&so, &c->scheduler, e);
    if (rc) {
        core_close(c);
        return rc;
    }
    *out = c;
    return ERR_OK;
}

void core_close(core *c) {
    if (!c) return;
    /* Calls still queued are answered first, from the models still open. */
    sched_stop(c->scheduler);
    core__watch_stop(c);
    core__bus_close(c);
    for (uint32_t v = 0; v < EXP_MAX_VARIANTS; v++) {
        if (c->slots[v].current) core__release(c->slots[v].current);
        free(c->slots[v].dir);
    }
    evstore_close(c->events);
    evstore_close(c->feedback);
    catalog_close(c->rules);
    idstate_close(c->privacy);
    idstate_close(c->exp_state);
    if (c->events_lock >= 0) close(c->events_lock);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->exp_update);
    pthread_mutex_destroy(&c->stop_lock);
    pthread_mutex_destroy(&c->bus_forgets_lock);
    pthread_cond_destroy(&c->stop_cond);
    free(c);
}
