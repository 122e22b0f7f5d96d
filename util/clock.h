/* clock: the one clock of elapsed-time measurements (training seconds,
 * progress rates, latency figures). */
#ifndef RECD_CLOCK_H
#define RECD_CLOCK_H

#include <pthread.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC, from an arbitrary origin: only differences
 * mean anything; never goes back when the wall clock is set. Thread-safe. */
double clock_seconds(void);

/* Initializes *cond so that its timed waits count on CLOCK_MONOTONIC, the
 * clock of clock_seconds (a wall-clock step never shortens or stretches a
 * wait). Returns pthread_cond_init's result; destroy with
 * pthread_cond_destroy. */
int clock_cond_init(pthread_cond_t *cond);

/* The CLOCK_MONOTONIC time `seconds` (>= 0) from now, for the timed waits
 * of a condition variable made by clock_cond_init. */
struct timespec clock_deadline(double seconds);

#endif
