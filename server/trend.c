#include "trend.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "idmap.h"

struct trend {
    pthread_mutex_t lock; /* guards everything below but the constants */
    idmap *ids;           /* item id -> slot */
    double *value;        /* per slot: the decayed count as of at[slot] */
    int64_t *at;          /* per slot: the time of its latest event */
    uint32_t cap;         /* slots value and at have room for */
    uint64_t dropped;
    double half_life;           /* seconds; constant */
    float weights[EV_TYPE_END]; /* constant */
};

int trend_open(double half_life_s, const float weights[EV_TYPE_END], trend **out, err_t *e) {
    if (!(half_life_s > 0) || !isfinite(half_life_s))
        return err_set(e, ERR_INVALID, "trending half-life must be a finite number > 0 (got %g s)",
                       half_life_s);
    for (int k = 0; k < EV_TYPE_END; k++)
        if (!(weights[k] >= 0.0f) || !isfinite(weights[k]))
            return err_set(e, ERR_INVALID, "event weight %g is not a finite number >= 0",
                           (double)weights[k]);
    trend *t = calloc(1, sizeof *t);
    if (!t || !(t->ids = idmap_new())) {
        free(t);
        return err_set(e, ERR_NOMEM, "out of memory for the trending table");
    }
    pthread_mutex_init(&t->lock, NULL);
    t->half_life = half_life_s;
    for (int k = 0; k < EV_TYPE_END; k++)
        t->weights[k] = weights[k];
    *out = t;
    return ERR_OK;
}

void trend_close(trend *t) {
    if (!t) return;
    pthread_mutex_destroy(&t->lock);
    idmap_free(t->ids);
    free(t->value);
    free(t->at);
    free(t);
}

/* Room for slot; 0, or -1 when out of memory. Under the lock. */
static int trend_grow(trend *t, uint32_t slot) {
    if (slot < t->cap) return 0;
    uint32_t cap = t->cap ? t->cap * 2 : 1024;
    double *v = realloc(t->value, (size_t)cap * sizeof *v);
    if (v) t->value = v;
    int64_t *a = v ? realloc(t->at, (size_t)cap * sizeof *a) : NULL;
    if (!a) return -1;
    t->at = a;
    t->cap = cap;
    return 0;
}

size_t trend_add(trend *t, const evstore_event *events, size_t n, int64_t now) {
    size_t dropped = 0;
    double horizon = TREND_HORIZON_HALF_LIVES * t->half_life;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < n; i++) {
        const evstore_event *ev = &events[i];
        float w = ev->type < EV_TYPE_END ? t->weights[ev->type] : 0.0f;
        int64_t ts = ev->ts < now ? ev->ts : now;
        if (!(w > 0.0f) || (double)(now - ts) > horizon) continue;
        uint32_t slot;
        if (idmap_find(t->ids, ev->item_id, ev->item_len, &slot) != ERR_OK) {
            slot = idmap_size(t->ids);
            if (slot >= TREND_MAX_ITEMS || trend_grow(t, slot) ||
                idmap_intern(t->ids, ev->item_id, ev->item_len, &slot) != ERR_OK) {
                dropped++;
                continue;
            }
            t->value[slot] = 0.0;
            t->at[slot] = ts;
        }
        /* The value is kept as of the latest event: older events arrive
         * decayed to it, a newer one moves it on. */
        if (ts >= t->at[slot]) {
            t->value[slot] = t->value[slot] * exp2(-(double)(ts - t->at[slot]) / t->half_life) + w;
            t->at[slot] = ts;
        } else {
            t->value[slot] += w * exp2(-(double)(t->at[slot] - ts) / t->half_life);
        }
    }
    t->dropped += dropped;
    pthread_mutex_unlock(&t->lock);
    return dropped;
}

uint32_t trend_size(trend *t) {
    pthread_mutex_lock(&t->lock);
    uint32_t n = idmap_size(t->ids);
    pthread_mutex_unlock(&t->lock);
    return n;
}

void trend_map(trend *t, const model *m, uint32_t from, uint32_t to, uint32_t *map) {
    pthread_mutex_lock(&t->lock);
    for (uint32_t s = from; s < to; s++) {
        size_t len;
        /* The key stays valid while the lock keeps interns out. */
        const char *id = idmap_key(t->ids, s, &len);
        if (model_item_index(m, id, len, &map[s]) != ERR_OK) map[s] = TREND_NO_ITEM;
    }
    pthread_mutex_unlock(&t->lock);
}

float trend_fill(trend *t, int64_t now, const uint32_t *map, uint32_t n, float *scores) {
    float hi = 0.0f;
    double horizon = TREND_HORIZON_HALF_LIVES * t->half_life;
    pthread_mutex_lock(&t->lock);
    for (uint32_t s = 0; s < n; s++) {
        if (map[s] == TREND_NO_ITEM || (double)(now - t->at[s]) > horizon) continue;
        float v = (float)(t->value[s] * exp2(-(double)(now - t->at[s]) / t->half_life));
        scores[map[s]] = v;
        if (v > hi) hi = v;
    }
    pthread_mutex_unlock(&t->lock);
    return hi;
}

uint64_t trend_dropped(trend *t) {
    pthread_mutex_lock(&t->lock);
    uint64_t n = t->dropped;
    pthread_mutex_unlock(&t->lock);
    return n;
}
