/* core_model: the models in service. Each variant has a current model that
 * requests share by reference count; a watcher thread polls the model
 * directories and swaps in a new publication without failing a request
 * (requests in flight keep the old model, closed after the last one). The
 * storefront's item multipliers are kept per model and rebuilt lazily when
 * the catalog changes. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_int.h"
#include "log.h"

void core__storefront_release(core__storefront *mu) {
    if (mu && atomic_fetch_sub(&mu->refs, 1) == 1) {
        core__upserts_free(&mu->up);
        free(mu);
    }
}

core__model *core__acquire_variant(core *c, uint32_t v) {
    pthread_mutex_lock(&c->lock);
    core__model *sm = c->slots[v].current;
    atomic_fetch_add(&sm->refs, 1);
    pthread_mutex_unlock(&c->lock);
    return sm;
}

core__model *core__acquire(core *c) {
    return core__acquire_variant(c, 0);
}

void core__release(core__model *sm) {
    if (atomic_fetch_sub(&sm->refs, 1) == 1) {
        log_info("msg=\"model closed\" version=%s", model_info(sm->m)->version);
        model_close(sm->m);
        core__storefront_release(sm->mult);
        pthread_mutex_destroy(&sm->mult_lock);
        pthread_mutex_destroy(&sm->trend_lock);
        free(sm->trend_items);
        free(sm->yty);
        free(sm->recommended);
        free(sm);
    }
}

core__storefront *core__storefront_get(core *c, core__model *sm) {
    unsigned long generation = catalog_generation(c->rules);
    pthread_mutex_lock(&sm->mult_lock);
    if (!sm->mult || sm->mult->generation != generation) {
        uint32_t n = model_info(sm->m)->n_items;
        core__storefront *mu = malloc(sizeof *mu + (size_t)n * sizeof(float));
        if (mu && core__upserts_build(c->rules, sm->m, &mu->up) != ERR_OK) {
            free(mu);
            mu = NULL;
        }
        if (mu) {
            atomic_init(&mu->refs, 1);
            mu->generation = generation;
            mu->any = catalog_multipliers(c->rules, sm->m, mu->v);
            mu->max_slope = 1.0f;
            for (uint32_t i = 0; i < n; i++)
                if (mu->v[i] > 0.0f) {
                    float slope = mu->v[i] > 1.0f ? mu->v[i] : 1.0f / mu->v[i];
                    if (slope > mu->max_slope) mu->max_slope = slope;
                }
            core__storefront_release(sm->mult);
            sm->mult = mu;
        }
    }
    core__storefront *mu = sm->mult;
    if (mu) atomic_fetch_add(&mu->refs, 1);
    pthread_mutex_unlock(&sm->mult_lock);
    return mu;
}

int core__load(core *c, uint32_t v, err_t *e) {
    core__slot *slot = &c->slots[v];
    char folder[MODEL_VERSION_MAX] = "";
    err_t ignored;
    /* Read before the open: a publication in between makes the folder seen
     * stale, and the next look opens it again. A dir that is a version
     * folder itself has no current link: "" then. */
    if (model_current_version(slot->dir, folder, &ignored)) folder[0] = '\0';
    model *m;
    int rc = model_open(slot->dir, &m, e);
    if (rc) return rc;
    const model_meta *meta = model_info(m);
    core__model *served = slot->current; /* the watcher's own slot: not swapped meanwhile */
    if (served && !strcmp(model_info(served->m)->version, meta->version)) {
        /* The same publication under another folder name (a copied version
         * folder): the model's own version decides, not its folder's name. */
        log_info("msg=\"model folder holds the served version: not reloaded\" variant=%s "
                 "folder=%s version=%s",
                 c->exp.names[v], folder, meta->version);
        model_close(m);
        memcpy(slot->seen_folder, folder, sizeof folder);
        return ERR_OK;
    }
    core__model *sm = calloc(1, sizeof *sm);
    if (!sm || !(sm->yty = malloc((size_t)meta->factors * meta->factors * sizeof(float))) ||
        !(sm->recommended = calloc(meta->n_items ? meta->n_items : 1, sizeof *sm->recommended))) {
        if (sm) free(sm->yty);
        free(sm);
        model_close(m);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    sm->m = m;
    atomic_init(&sm->refs, 1);
    sm->loaded_unix = (int64_t)time(NULL);
    pthread_mutex_init(&sm->mult_lock, NULL);
    pthread_mutex_init(&sm->trend_lock, NULL);
    score_gram(m, sm->yty);
    log_info("msg=\"model loaded\" variant=%s dir=%s version=%s users=%u items=%u factors=%u "
             "categories=%u",
             c->exp.names[v], c->slots[v].dir, meta->version, meta->n_users, meta->n_items,
             meta->factors, model_n_categories(m));
    pthread_mutex_lock(&c->lock);
    core__model *old = c->slots[v].current;
    c->slots[v].current = sm;
    pthread_mutex_unlock(&c->lock);
    memcpy(slot->seen_folder, folder, sizeof folder);
    if (old) core__release(old);
    if (v == 0) core__bus_served(c, meta->version);
    return ERR_OK;
}

/* Polls the model directory; a new publication replaces the served model
 * without failing a request (requests in flight keep the old one). */
static void *core__watch(void *arg) {
    core *c = arg;
    pthread_mutex_lock(&c->stop_lock);
    while (!c->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double t = (double)until.tv_nsec * 1e-9 + c->reload_interval_s;
        until.tv_sec += (time_t)t;
        until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
        pthread_cond_timedwait(&c->stop_cond, &c->stop_lock, &until);
        if (c->stopping) break;
        pthread_mutex_unlock(&c->stop_lock);
        for (uint32_t v = 0; v < c->exp.n; v++) {
            core__slot *slot = &c->slots[v];
            char version[MODEL_VERSION_MAX];
            /* A new folder name is looked into once; core__load reloads only
             * when the model in it is another version. */
            int changed = model_current_version(slot->dir, version, NULL) == ERR_OK &&
                          strcmp(version, slot->seen_folder) != 0 &&
                          strcmp(version, slot->failed_version) != 0;
            err_t e;
            if (changed && core__load(c, v, &e)) {
                log_error("msg=\"new model refused, still serving the old one\" variant=%s "
                          "version=%s error=\"%s\"",
                          c->exp.names[v], version, e.msg);
                memcpy(slot->failed_version, version, sizeof version);
            }
        }
        pthread_mutex_lock(&c->stop_lock);
    }
    pthread_mutex_unlock(&c->stop_lock);
    return NULL;
}

int core__watch_start(core *c, err_t *e) {
    if (c->reload_interval_s <= 0) return ERR_OK;
    if (pthread_create(&c->watcher, NULL, core__watch, c))
        return err_set(e, ERR_INTERNAL, "cannot start the model watcher thread");
    c->watcher_running = 1;
    return ERR_OK;
}

void core__watch_stop(core *c) {
    if (!c->watcher_running) return;
    pthread_mutex_lock(&c->stop_lock);
    c->stopping = 1;
    pthread_cond_signal(&c->stop_cond);
    pthread_mutex_unlock(&c->stop_lock);
    pthread_join(c->watcher, NULL);
    c->watcher_running = 0;
}
