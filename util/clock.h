/* clock: the one clock of elapsed-time measurements (training seconds,
 * progress rates, latency figures). */
#ifndef RECD_CLOCK_H
#define RECD_CLOCK_H

/* Seconds on CLOCK_MONOTONIC, from an arbitrary origin: only differences
 * mean anything; never goes back when the wall clock is set. Thread-safe. */
double clock_seconds(void);

#endif
