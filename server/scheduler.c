#include "scheduler.h"

#include <pthread.h>
#include <stdlib.h>

#include "clock.h"

#define SCHED_DEFAULT_MAX_QUEUE 1024
#define SCHED_DEFAULT_MAX_QUEUE_MS 1000

struct sched {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    sched_job **ring;
    uint32_t cap, head, count;
    int closed;
    double max_wait_s;
    pthread_t *workers;
    uint32_t n_workers;
};

int sched_submit(sched *s, sched_job *job, err_t *e) {
    pthread_mutex_lock(&s->lock);
    int rc = ERR_OK;
    if (s->closed) {
        rc = err_set(e, ERR_INTERNAL, "the server is stopping");
    } else if (s->count == s->cap) {
        rc = err_set(e, ERR_LIMIT, "server overloaded: %u calls are waiting already; retry later",
                     s->cap);
    } else {
        job->queued_at = clock_seconds();
        s->ring[(s->head + s->count++) % s->cap] = job;
        pthread_cond_signal(&s->ready);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

uint32_t sched_queued(sched *s) {
    pthread_mutex_lock(&s->lock);
    uint32_t n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Takes the next job, and with it the jobs of the same batch key right
 * behind it. Returns how many were put in jobs; 0 once closed and empty. */
static size_t sched_take(sched *s, sched_job **jobs) {
    pthread_mutex_lock(&s->lock);
    while (s->count == 0 && !s->closed)
        pthread_cond_wait(&s->ready, &s->lock);
    size_t n = 0;
    while (s->count > 0 && n < SCHED_MAX_BATCH) {
        sched_job *j = s->ring[s->head];
        if (n > 0 && (!j->batch_key || j->batch_key != jobs[0]->batch_key)) break;
        jobs[n++] = j;
        s->head = (s->head + 1) % s->cap;
        s->count--;
        if (!j->batch_key) break;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* Checks a job taken from the queue before any work is done for it. Work
 * for a client that has given up, or that waited so long that answering it
 * would only make the jobs behind it late too, is skipped: this is what
 * keeps an overload from snowballing. Returns ERR_OK when it should run. */
static int sched_admit(const sched *s, const sched_job *j, err_t *e) {
    double now = clock_seconds(), waited = now - j->queued_at;
    if (j->deadline > 0 && j->deadline < now)
        return err_set(e, ERR_DEADLINE, "the deadline passed after %.0f ms in the server's queue",
                       waited * 1e3);
    if (waited > s->max_wait_s)
        return err_set(e, ERR_LIMIT, "server overloaded: the call waited %.0f ms; retry later",
                       waited * 1e3);
    return ERR_OK;
}

static void *sched_worker(void *arg) {
    sched *s = arg;
    sched_job *jobs[SCHED_MAX_BATCH], *run[SCHED_MAX_BATCH];
    size_t n;
    while ((n = sched_take(s, jobs)) > 0) {
        size_t n_run = 0;
        for (size_t i = 0; i < n; i++) {
            err_t why;
            if (sched_admit(s, jobs[i], &why))
                jobs[i]->refuse(jobs[i], &why);
            else
                run[n_run++] = jobs[i];
        }
        if (n_run) run[0]->run(run, n_run);
    }
    return NULL;
}

static void sched_free(sched *s) {
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->ready);
    free(s->ring);
    free(s->workers);
    free(s);
}

int sched_start(const sched_options *o, sched **out, err_t *e) {
    if (o->threads < 1) return err_set(e, ERR_INVALID, "sched: at least one worker thread needed");
    sched *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "sched: out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->ready, NULL);
    s->cap = o->max_queue ? o->max_queue : SCHED_DEFAULT_MAX_QUEUE;
    s->max_wait_s = (o->max_queue_ms ? o->max_queue_ms : SCHED_DEFAULT_MAX_QUEUE_MS) / 1e3;
    s->ring = calloc(s->cap, sizeof *s->ring);
    s->workers = calloc(o->threads, sizeof *s->workers);
    if (!s->ring || !s->workers) {
        sched_free(s);
        return err_set(e, ERR_NOMEM, "sched: out of memory");
    }
    for (uint32_t i = 0; i < o->threads; i++) {
        if (pthread_create(&s->workers[i], NULL, sched_worker, s)) {
            sched_stop(s);
            return err_set(e, ERR_INTERNAL, "sched: cannot start worker thread %u", i);
        }
        s->n_workers++;
    }
    *out = s;
    return ERR_OK;
}

void sched_stop(sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->closed = 1;
    pthread_cond_broadcast(&s->ready);
    pthread_mutex_unlock(&s->lock);
    for (uint32_t i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    sched_free(s);
}
