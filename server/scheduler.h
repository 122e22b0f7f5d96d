/* scheduler (sched_): the core's scheduler - a bounded queue of calls in
 * front of a fixed pool of worker threads, for every front end.
 *
 * It decides when a call runs, and whether: admission (a full queue refuses
 * at once), load shedding (a call that waited too long, or whose deadline
 * passed, is refused instead of run late: an overload does not snowball)
 * and batching (calls of one batch key that wait together run as one, so
 * the core can score them in one pass). What a call does is the front
 * end's: sched only runs its functions. */
#ifndef RECD_SCHEDULER_H
#define RECD_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SCHED_MAX_BATCH 32 /* most jobs one run gets */

typedef struct sched_job sched_job;

/* Runs n jobs (1 <= n <= SCHED_MAX_BATCH; n > 1 only for jobs of one batch
 * key), on a worker thread; owns them from then on. */
typedef void (*sched_run_fn)(sched_job *const *jobs, size_t n);

/* Answers a job sched will not run (why: ERR_DEADLINE, ERR_LIMIT); owns it
 * from then on. Called on a worker thread. */
typedef void (*sched_refuse_fn)(sched_job *job, const err_t *why);

/* One call, filled by the front end (which allocates it, usually inside its
 * own call state) and left alone until run or refuse gets it back. */
struct sched_job {
    sched_run_fn run;
    sched_refuse_fn refuse;
    const void *batch_key; /* jobs with the same non-NULL key may run together */
    double deadline;       /* clock_seconds() after which no one waits; 0 = none */
    double queued_at;      /* set by sched_submit */
};

typedef struct sched_options {
    uint32_t threads;      /* workers, >= 1 */
    uint32_t max_queue;    /* jobs waiting at most; 0 = 1024 */
    uint32_t max_queue_ms; /* longest wait before a job is shed; 0 = 1000 */
} sched_options;

typedef struct sched sched;

/* Starts the workers. *out is owned by the caller: sched_stop. Errors:
 * ERR_INVALID (no thread), ERR_NOMEM, ERR_INTERNAL (a thread would not
 * start). */
int sched_start(const sched_options *o, sched **out, err_t *e);

/* Queues job for a worker. Errors: ERR_LIMIT when max_queue jobs are
 * waiting already (job is then the caller's again), ERR_INTERNAL once
 * stopping. Thread-safe. */
int sched_submit(sched *s, sched_job *job, err_t *e);

/* Jobs waiting now. Thread-safe. */
uint32_t sched_queued(sched *s);

/* Runs (or refuses) what is queued, then joins the workers and frees s.
 * Nothing may be submitted once it is called. */
void sched_stop(sched *s);

#endif
