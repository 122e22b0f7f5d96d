#include "rfm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const feat_names[FEAT_COUNT] = {
    [FEAT_RECENCY_DAYS] = "recency_days",
    [FEAT_ORDERS] = "orders",
    [FEAT_PURCHASE_DAYS] = "purchase_days",
    [FEAT_MONETARY] = "monetary",
    [FEAT_MONETARY_PER_ORDER] = "monetary_per_order",
    [FEAT_MONETARY_365D] = "monetary_365d",
    [FEAT_TENURE_DAYS] = "tenure_days",
    [FEAT_GAP_MEAN_DAYS] = "gap_mean_days",
    [FEAT_GAP_VAR_DAYS] = "gap_var_days",
    [FEAT_ORDERS_30D] = "orders_30d",
    [FEAT_ORDERS_90D] = "orders_90d",
    [FEAT_DAYS_30D] = "days_30d",
    [FEAT_DAYS_90D] = "days_90d",
    [FEAT_TREND_30D] = "trend_30d",
    [FEAT_TREND_90D] = "trend_90d",
    [FEAT_BASKET_LINES] = "basket_lines",
    [FEAT_BREADTH] = "breadth",
    [FEAT_EMBEDDING_NORM] = "embedding_norm",
};

void feat_matrix_free(feat_matrix *m) {
    free(m->x);
    free(m->active);
    memset(m, 0, sizeof *m);
}

/* UTC calendar day of ts; floor, not truncation, so times before 1970 do not
 * share day 0 with the first day after it. */
static int64_t day_of(int64_t ts) {
    int64_t d = ts / FEAT_DAY_SECONDS;
    return d - (ts % FEAT_DAY_SECONDS < 0);
}

/* Orders in the last w seconds against what the user's earlier rate predicts
 * (rfm.h, trend_*). */
static double trend(int64_t t, int64_t first, int64_t w, double orders_recent, double orders) {
    int64_t start = t - w;
    if (first >= start) return 1.0;
    double before_days = (double)(start - first) / FEAT_DAY_SECONDS,
           w_days = (double)w / FEAT_DAY_SECONDS;
    double rate = (orders - orders_recent) / (before_days > w_days ? before_days : w_days);
    return orders_recent / (rate * w_days);
}

int feat_compute(const ev_set *s, const uint64_t *user_start, int64_t t, const feat_params *p,
                 feat_matrix *out, err_t *e) {
    static const feat_params none = {0};
    if (!p) p = &none;
    memset(out, 0, sizeof *out);
    uint32_t n_users = idmap_size(s->users), n_items = idmap_size(s->items);
    /* Breadth needs "seen by this user yet?" per category and per item; a
     * stamp of the user index + 1 answers it without clearing between users. */
    uint32_t n_cats = idmap_size(s->categories);
    uint32_t *cat_mark = calloc((size_t)n_cats + 1, sizeof *cat_mark);
    uint32_t *item_mark = calloc((size_t)n_items + 1, sizeof *item_mark);
    out->x = calloc((size_t)n_users * FEAT_COUNT + 1, sizeof *out->x);
    out->active = calloc((size_t)n_users + 1, 1);
    if (!cat_mark || !item_mark || !out->x || !out->active) {
        free(cat_mark);
        free(item_mark);
        feat_matrix_free(out);
        return err_set(e, ERR_NOMEM, "features: out of memory for %u users", n_users);
    }
    out->n_users = n_users;
    out->t = t;
    const int64_t w30 = 30 * (int64_t)FEAT_DAY_SECONDS, w90 = 90 * (int64_t)FEAT_DAY_SECONDS,
                  w365 = 365 * (int64_t)FEAT_DAY_SECONDS;
    for (uint32_t u = 0; u < n_users; u++) {
        const ev_event *ev = s->events + user_start[u], *end = s->events + user_start[u + 1];
        if (ev == end || ev->ts >= t) continue;
        uint32_t stamp = u + 1;
        int64_t first = ev->ts, prev_ts = 0, prev_day = 0;
        double orders = 0, days = 0, lines = 0, money = 0, money365 = 0, o30 = 0, o90 = 0, d30 = 0,
               d90 = 0, breadth = 0;
        /* Welford's running mean and variance of the gaps between purchase
         * days: one pass, no overflow of a sum of squares. */
        double gaps = 0, gap_mean = 0, gap_m2 = 0;
        for (; ev < end && ev->ts < t; ev++) {
            lines++;
            double value = isnan(ev->price) ? ev->quantity : (double)ev->quantity * ev->price;
            money += value;
            if (ev->ts >= t - w365) money365 += value;
            if (orders == 0 || ev->ts != prev_ts) {
                orders++;
                o30 += ev->ts >= t - w30;
                o90 += ev->ts >= t - w90;
                int64_t day = day_of(ev->ts);
                if (days == 0 || day != prev_day) {
                    if (days > 0) {
                        double gap = (double)(day - prev_day), delta = gap - gap_mean;
                        gaps++;
                        gap_mean += delta / gaps;
                        gap_m2 += delta * (gap - gap_mean);
                    }
                    days++;
                    d30 += ev->ts >= t - w30;
                    d90 += ev->ts >= t - w90;
                    prev_day = day;
                }
                prev_ts = ev->ts;
            }
            uint32_t c = ev_set_item_category(s, ev->item);
            uint32_t *mark = c == UINT32_MAX ? &item_mark[ev->item] : &cat_mark[c];
            if (*mark != stamp) {
                *mark = stamp;
                breadth++;
            }
        }
        float *x = out->x + (size_t)u * FEAT_COUNT;
        x[FEAT_RECENCY_DAYS] = (float)((double)(t - prev_ts) / FEAT_DAY_SECONDS);
        x[FEAT_ORDERS] = (float)orders;
        x[FEAT_PURCHASE_DAYS] = (float)days;
        x[FEAT_MONETARY] = (float)money;
        x[FEAT_MONETARY_PER_ORDER] = (float)(money / orders);
        x[FEAT_MONETARY_365D] = (float)money365;
        x[FEAT_TENURE_DAYS] = (float)((double)(t - first) / FEAT_DAY_SECONDS);
        x[FEAT_GAP_MEAN_DAYS] = (float)gap_mean;
        x[FEAT_GAP_VAR_DAYS] = (float)(gaps > 0 ? gap_m2 / gaps : 0);
        x[FEAT_ORDERS_30D] = (float)o30;
        x[FEAT_ORDERS_90D] = (float)o90;
        x[FEAT_DAYS_30D] = (float)d30;
        x[FEAT_DAYS_90D] = (float)d90;
        x[FEAT_TREND_30D] = (float)trend(t, first, w30, o30, orders);
        x[FEAT_TREND_90D] = (float)trend(t, first, w90, o90, orders);
        x[FEAT_BASKET_LINES] = (float)(lines / orders);
        x[FEAT_BREADTH] = (float)breadth;
        if (p->user_factors) {
            const float *f = p->user_factors + (size_t)u * p->factors;
            double sq = 0;
            for (uint32_t k = 0; k < p->factors; k++)
                sq += (double)f[k] * f[k];
            x[FEAT_EMBEDDING_NORM] = (float)sqrt(sq);
        }
        out->active[u] = 1;
        out->n_active++;
    }
    free(cat_mark);
    free(item_mark);
    return ERR_OK;
}

int feat_decline_rule(const ev_set *s, const uint64_t *user_start, int64_t t, uint32_t months,
                      double drop, uint8_t *flag, err_t *e) {
    if (months < 1 || months > FEAT_RULE_MAX_MONTHS || !(drop >= 0 && drop <= 1))
        return err_set(e, ERR_INVALID, "features: rule needs 1..%d months and a drop in [0, 1]",
                       FEAT_RULE_MAX_MONTHS);
    uint32_t n_users = idmap_size(s->users);
    const int64_t month = 30 * (int64_t)FEAT_DAY_SECONDS, start = t - (int64_t)months * month;
    for (uint32_t u = 0; u < n_users; u++) {
        const ev_event *ev = s->events + user_start[u], *end = s->events + user_start[u + 1];
        flag[u] = 0;
        if (ev == end || ev->ts >= start) continue;
        int64_t first = ev->ts, prev_ts = 0;
        double before = 0, count[FEAT_RULE_MAX_MONTHS] = {0};
        for (int started = 0; ev < end && ev->ts < t; ev++) {
            if (started && ev->ts == prev_ts) continue; /* same order */
            started = 1;
            prev_ts = ev->ts;
            if (ev->ts < start)
                before++;
            else /* ts in [start, t), so 0 <= month index < months; 0 = the latest */
                count[(t - 1 - ev->ts) / month]++;
        }
        double before_days = (double)(start - first) / FEAT_DAY_SECONDS;
        double baseline = before / (before_days > 30 ? before_days : 30) * 30;
        uint8_t down = 1;
        for (uint32_t m = 0; m < months; m++)
            down &= count[m] <= (1 - drop) * baseline;
        flag[u] = down;
    }
    return ERR_OK;
}
