/* Unit tests of the core's scheduler: admission, load shedding, deadlines
 * and batching, with jobs that record what happened to them. One worker
 * thread is held by a gate job while the others queue up behind it. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "scheduler.h"

typedef struct test_job {
    sched_job job; /* first: the scheduler hands back &job */
    int id;
    err_t why;     /* why.code: what it was refused with, 0 = not refused */
    int run_size;  /* how many jobs the run it came in had, 0 = not run */
    int run_first; /* id of the first job of that run */
} test_job;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_entered, finished;

static void record_run(sched_job *const *jobs, size_t n) {
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n; i++) {
        test_job *t = (test_job *)jobs[i];
        t->run_size = (int)n;
        t->run_first = ((test_job *)jobs[0])->id;
        finished++;
    }
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void record_refusal(sched_job *job, const err_t *why) {
    test_job *t = (test_job *)job;
    pthread_mutex_lock(&lock);
    t->why = *why;
    finished++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

/* Holds the worker until open_gate. */
static void gate_run(sched_job *const *jobs, size_t n) {
    pthread_mutex_lock(&lock);
    gate_entered = 1;
    pthread_cond_broadcast(&changed);
    while (!gate_open)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    record_run(jobs, n);
}

static void wait_for(int *flag_or_count, int at_least) {
    pthread_mutex_lock(&lock);
    while (*flag_or_count < at_least)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
}

static void open_gate(void) {
    pthread_mutex_lock(&lock);
    gate_open = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static test_job job(int id, const void *key) {
    return (test_job){.job = {.run = record_run, .refuse = record_refusal, .batch_key = key},
                      .id = id};
}

/* Starts a one-worker scheduler and parks its worker on gate. */
static sched *held(uint32_t max_queue, uint32_t max_queue_ms, test_job *gate) {
    sched_options o = {1, max_queue, max_queue_ms};
    sched *s;
    err_t e;
    cr_assert_eq(sched_start(&o, &s, &e), ERR_OK, "%s", e.msg);
    *gate = job(0, NULL);
    gate->job.run = gate_run;
    cr_assert_eq(sched_submit(s, &gate->job, &e), ERR_OK);
    wait_for(&gate_entered, 1);
    return s;
}

Test(scheduler, jobs_of_one_key_that_wait_together_run_as_one) {
    test_job gate, j[7];
    sched *s = held(16, 60000, &gate);
    const char *a = "a", *b = "b";
    const void *keys[7] = {a, a, a, NULL, a, b, b};
    err_t e;
    for (int i = 0; i < 7; i++) {
        j[i] = job(i + 1, keys[i]);
        cr_assert_eq(sched_submit(s, &j[i].job, &e), ERR_OK);
    }
    cr_assert_eq(sched_queued(s), 7);
    open_gate();
    wait_for(&finished, 8);
    sched_stop(s);
    int size[7] = {3, 3, 3, 1, 1, 2, 2}, first[7] = {1, 1, 1, 4, 5, 6, 6};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(j[i].why.code, 0);
        cr_assert_eq(j[i].run_size, size[i], "job %d", i + 1);
        cr_assert_eq(j[i].run_first, first[i], "job %d", i + 1);
    }
}

Test(scheduler, a_full_queue_refuses_at_once) {
    test_job gate, j[3];
    sched *s = held(2, 60000, &gate);
    err_t e;
    for (int i = 0; i < 2; i++) {
        j[i] = job(i + 1, NULL);
        cr_assert_eq(sched_submit(s, &j[i].job, &e), ERR_OK);
    }
    j[2] = job(3, NULL);
    cr_assert_eq(sched_submit(s, &j[2].job, &e), ERR_LIMIT);
    cr_assert_str_eq(e.msg, "server overloaded: 2 calls are waiting already; retry later");
    open_gate();
    wait_for(&finished, 3);
    sched_stop(s);
    cr_assert_eq(j[0].run_size, 1);
    cr_assert_eq(j[2].run_size, 0, "a refused job is the caller's: never run");
}

Test(scheduler, late_calls_are_shed_instead_of_run) {
    test_job gate, waited = job(1, NULL), expired = job(2, NULL), fresh = job(3, NULL);
    sched *s = held(16, 200, &gate);
    err_t e;
    expired.job.deadline = clock_seconds() + 0.02;
    cr_assert_eq(sched_submit(s, &waited.job, &e), ERR_OK);
    cr_assert_eq(sched_submit(s, &expired.job, &e), ERR_OK);
    usleep(400 * 1000); /* past both the deadline and max_queue_ms */
    fresh.job.deadline = clock_seconds() + 60;
    cr_assert_eq(sched_submit(s, &fresh.job, &e), ERR_OK);
    open_gate();
    wait_for(&finished, 4);
    sched_stop(s);
    cr_assert_eq(waited.why.code, ERR_LIMIT);
    cr_assert(strstr(waited.why.msg, "server overloaded: the call waited"), "%s", waited.why.msg);
    cr_assert_eq(expired.why.code, ERR_DEADLINE);
    cr_assert(strstr(expired.why.msg, "the deadline passed after"), "%s", expired.why.msg);
    cr_assert_eq(fresh.why.code, 0);
    cr_assert_eq(fresh.run_size, 1);
}

Test(scheduler, stop_runs_what_is_queued) {
    test_job gate, j[4];
    sched *s = held(16, 60000, &gate);
    err_t e;
    for (int i = 0; i < 4; i++) {
        j[i] = job(i + 1, NULL);
        cr_assert_eq(sched_submit(s, &j[i].job, &e), ERR_OK);
    }
    open_gate();
    sched_stop(s);
    cr_assert_eq(finished, 5);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(j[i].run_size, 1);
}
