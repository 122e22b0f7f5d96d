/* trend: what the shop is busy with now, for Recommend's mode TRENDING - a
 * time-decayed count of each item's recent events, each event weighted by
 * its type (the serve's --event-weights: a purchase 1, a view 0.1, ...),
 * halved every half-life:
 *     trend_i(now) = sum over events e of item i of w_type(e) 2^-((now - t_e) / h)
 * Events are counted, not their quantities: one bulk order is one buyer.
 *
 * Items are kept by id (not by a model's index), so a model swap keeps the
 * counts, and an item the model does not know yet trends once it does.
 * Each item holds its value as of its latest event, so an update is O(1)
 * and nothing grows without bound over time; items stay once seen (at most
 * TREND_MAX_ITEMS: events of more are counted as dropped).
 *
 * Thread-safe: one mutex guards the table, taken by every event stored
 * (RecordEvents, the bus's applier) and every TRENDING call. */
#ifndef RECD_TREND_H
#define RECD_TREND_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "events.h"
#include "evstore.h"
#include "model.h"

#define TREND_MAX_ITEMS (1u << 21) /* distinct items counted */
/* Events older than this many half-lives weigh under 1e-9: not counted. */
#define TREND_HORIZON_HALF_LIVES 30

#define TREND_NO_ITEM UINT32_MAX /* trend_map: an item the model does not know */

typedef struct trend trend;

/* A table with half-life half_life_s seconds (> 0, finite) and the weight
 * of each event type (copied; types of weight 0 are not counted). *out is
 * owned by the caller: trend_close. Errors: ERR_INVALID (a half-life or
 * weight that is not a finite number > 0, >= 0), ERR_NOMEM. */
int trend_open(double half_life_s, const float weights[EV_TYPE_END], trend **out, err_t *e);
void trend_close(trend *t);

/* Counts n stored events at once (read only). An event dated after now
 * counts as now (RecordEvents lets a clock run a day ahead), one older
 * than TREND_HORIZON_HALF_LIVES half-lives not at all. Returns how many
 * were dropped for want of room (TREND_MAX_ITEMS items, or memory). */
size_t trend_add(trend *t, const evstore_event *events, size_t n, int64_t now);

/* Items counted so far: their slots are 0 .. trend_size - 1, in first-seen
 * order, and never change. */
uint32_t trend_size(trend *t);

/* Maps slots [from, to) to m's item indexes into map[from .. to)
 * (TREND_NO_ITEM for an id m does not know), to <= trend_size. */
void trend_map(trend *t, const model *m, uint32_t from, uint32_t to, uint32_t *map);

/* scores[map[s]] = trend of slot s as of now, for every slot s < n whose
 * map[s] is not TREND_NO_ITEM and whose latest event is within
 * TREND_HORIZON_HALF_LIVES half-lives (an item quiet for longer no longer
 * trends; other scores are left alone); n <= trend_size. Returns the
 * largest value written (0 when none). */
float trend_fill(trend *t, int64_t now, const uint32_t *map, uint32_t n, float *scores);

/* Events dropped by trend_add so far. */
uint64_t trend_dropped(trend *t);

#endif
