/* histo: the latency histogram of one kind of call, counted with atomics by
 * any thread and written in the Prometheus text format at a scrape. The
 * gRPC and HTTP front ends share the buckets, so that their figures for
 * one method compare bucket by bucket.
 *
 * A histo is plain data: zero it (static storage, calloc) and it is empty.
 * No allocation. Thread-safe. */
#ifndef RECD_HISTO_H
#define RECD_HISTO_H

#include <stdatomic.h>
#include <stdio.h>

#define HISTO_BUCKETS 14 /* upper bounds, then +Inf */

typedef struct histo {
    atomic_ullong count[HISTO_BUCKETS + 1]; /* per bucket, not cumulative */
    atomic_ullong sum_us;                   /* total, microseconds */
} histo;

/* Counts one call that took seconds. */
void histo_observe(histo *h, double seconds);

/* Writes the series NAME_bucket{transport="TRANSPORT",method="METHOD",
 * le="..."} (cumulative), NAME_sum and NAME_count of h; the # HELP and
 * # TYPE lines are the caller's, once per family. */
void histo_write(const histo *h, FILE *out, const char *name, const char *transport,
                 const char *method);

#endif
