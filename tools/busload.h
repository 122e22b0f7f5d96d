/* busload: the training data on a cluster's event bus (recd train --bus):
 * every event the replicas took, read from the JetStream stream, and the
 * members forgotten there.
 *
 * Below it: server/bus (the stream), server/busmsg (its messages) and the
 * model layer's evstore_add_to_history, so that an event weighs in
 * training what it weighs when read from a replica's event store. */
#ifndef RECD_BUSLOAD_H
#define RECD_BUSLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "events.h"

/* What busload_add found. */
typedef struct busload_counts {
    uint64_t last;      /* the stream's last sequence read */
    size_t added;       /* events appended */
    size_t future;      /* events skipped: dated more than a day after now */
    size_t before;      /* events passed over: dated at or before since */
    uint32_t forgotten; /* members left out (ForgetUser on the bus) */
    uint64_t skipped;   /* messages that could not be read (logged) */
} busload_counts;

/* Appends the events of every RecordEvents on the bus (urls, stream)
 * dated after since (INT64_MIN: all of them) to history as recorded events
 * weighing weights[type] (finite, >= 0; weight 0 skips a type), as
 * evstore_load does, and then leaves the members forgotten on the bus out
 * of the whole history, purchase rows included (ev_set_drop_users:
 * history's indexes change). since is the previous model's data_until when
 * history already holds what that model was trained on (recd train
 * --input): only the events since are new. The forgotten are taken from
 * the whole stream whatever since is, because a member forgotten long ago
 * may still be in history's older rows. Feedback, availability, boosts,
 * opt-outs and experiments are not training data and are passed over.
 * Fills *out. Returns ERR_OK, or bus_read's errors (ERR_INVALID, ERR_IO),
 * ERR_NOMEM; history may then hold part of the events. */
int busload_add(ev_set *history, const char *urls, const char *stream,
                const float weights[EV_TYPE_END], int64_t since, busload_counts *out, err_t *e);

#endif
