/* synth: a synthetic shop, generated deterministically from a seed.
 *
 * Users have latent tastes (a few favourite categories), items belong to
 * categories and have Zipf-distributed popularity and a price, users buy
 * repeatedly (some items again and again), and a share of members stop
 * buying part-way (churners). Written as the canonical CSV
 * user_id,item_id,timestamp,quantity,price,category, fast enough for 1M users
 * x 100k items x 20M events in a few seconds. */
#ifndef RECD_SYNTH_H
#define RECD_SYNTH_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef struct synth_params {
    uint32_t users;      /* default 2000 */
    uint32_t items;      /* default 500 */
    uint64_t events;     /* target total events, default 40000 */
    uint32_t categories; /* default 20 */
    uint64_t seed;       /* default 42 */
    double zipf;         /* popularity exponent, default 1.0 */
    double churn_share;  /* share of users who stop buying, default 0.25 */
    double repeat_share; /* share of purchases that re-buy an earlier item, default 0.2 */
    int64_t end_unix;    /* last timestamp; default 2026-01-01T00:00:00Z */
    uint32_t days;       /* span of the history in days, default 365 */
    /* Called now and then with events written so far; may be NULL. */
    void (*progress)(void *ctx, uint64_t written, uint64_t target);
    void *progress_ctx;
} synth_params;

/* Fills p with the defaults above. */
void synth_params_init(synth_params *p);

/* Writes the CSV (with header) to out; fills *written with the number of
 * events. Returns ERR_OK, ERR_INVALID (zero users/items/categories), ERR_IO
 * (write failed), ERR_NOMEM. */
int synth_write_csv(const synth_params *p, FILE *out, uint64_t *written, err_t *e);

#endif
