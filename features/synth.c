#include "synth.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Shape of the shop. Purchases that are not repeats follow the user's
 * favourite categories with probability TASTE_SHARE, else global popularity:
 * tastes dominate, so a factor model beats most-popular, yet popularity
 * still matters, as in real shops. */
#define TASTE_SHARE 0.8
#define CATEGORY_SKEW 0.8  /* category sizes and popularity ~ 1/(c+1)^this */
#define ACTIVITY_SIGMA 1.0 /* log-normal spread of events per user */
#define PRICE_MEDIAN 15.0  /* item prices are log-normal around this, in 1..200 */
#define PROGRESS_EVERY (1u << 21)
#define OUT_BUF (1u << 20)
#define MAX_LINE 128 /* longest CSV line we can produce, with margin */
#define ITEM_TXT 48  /* per item: id at 0, ",price,category\n" at ITEM_TAIL */
#define ITEM_TAIL 24
#define MAX_FAVS 4

void synth_params_init(synth_params *p) {
    memset(p, 0, sizeof *p);
    p->users = 2000;
    p->items = 500;
    p->events = 40000;
    p->categories = 20;
    p->seed = 42;
    p->zipf = 1.0;
    p->churn_share = 0.25;
    p->repeat_share = 0.2;
    p->end_unix = 1767225600; /* 2026-01-01T00:00:00Z */
    p->days = 365;
}

/* ---- xoshiro256** seeded through splitmix64 (Vigna) --------------------- */

typedef struct xoshiro {
    uint64_t s[4];
} xoshiro;

static void xoshiro_seed(xoshiro *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = rng_next(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t xoshiro_next(xoshiro *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static inline double xoshiro_unit(xoshiro *r) {
    return (double)(xoshiro_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), by Lemire's multiply-shift (bias < n / 2^32, irrelevant here). */
static inline uint32_t xoshiro_below(xoshiro *r, uint64_t n) {
    return (uint32_t)(((xoshiro_next(r) >> 32) * n) >> 32);
}

/* Standard normal, Box-Muller; used per user and per item, never per event. */
static double xoshiro_normal(xoshiro *r) {
    double u = 1.0 - xoshiro_unit(r), v = xoshiro_unit(r);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* ---- alias tables (Vose): O(1) draws from a fixed discrete distribution - */

/* Builds prob/alias for weights w[0..n) (all > 0); work holds n entries. */
static void alias_build(const double *w, uint32_t n, float *prob, uint32_t *alias, uint32_t *work) {
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += w[i];
    /* Small indexes stack up from the front of work, large from the back. */
    uint32_t ns = 0, nl = 0;
    for (uint32_t i = 0; i < n; i++) {
        double p = w[i] * n / sum;
        prob[i] = (float)p;
        if (p < 1.0)
            work[ns++] = i;
        else
            work[n - 1 - nl++] = i;
    }
    while (ns && nl) {
        uint32_t s = work[--ns], l = work[n - nl];
        alias[s] = l;
        prob[l] = (prob[l] + prob[s]) - 1.0f;
        if (prob[l] < 1.0f) {
            nl--;
            work[ns++] = l;
        }
    }
    /* What is left is 1 up to rounding. */
    while (nl)
        prob[work[n - nl--]] = 1.0f;
    while (ns)
        prob[work[--ns]] = 1.0f;
}

static inline uint32_t alias_draw(const float *prob, const uint32_t *alias, uint32_t n,
                                  xoshiro *r) {
    uint64_t x = xoshiro_next(r);
    uint32_t i = (uint32_t)(((x >> 32) * n) >> 32);
    return (float)(x & 0xFFFFFF) * 0x1.0p-24f < prob[i] ? i : alias[i];
}

/* ---- output -------------------------------------------------------------- */

static int digits10(uint64_t v) {
    int d = 1;
    while (v >= 10)
        v /= 10, d++;
    return d;
}

/* Writes v in decimal, left-padded with zeros to width; returns the end. */
static inline char *put_u64(char *p, uint64_t v, int width) {
    char tmp[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    while (n < width)
        tmp[n++] = '0';
    while (n)
        *p++ = tmp[--n];
    return p;
}

typedef struct outbuf {
    FILE *f;
    char *buf;
    size_t len;
} outbuf;

static int out_flush(outbuf *o, err_t *e) {
    if (o->len && fwrite(o->buf, 1, o->len, o->f) != o->len)
        return err_set(e, ERR_IO, "synth: write failed");
    o->len = 0;
    return ERR_OK;
}

/* ---- the shop ------------------------------------------------------------ */

/* Everything generated before the first event. Owns every array. */
typedef struct shop {
    uint32_t n_items, n_cats;
    uint32_t *cat_start; /* n_cats + 1 offsets into the category-ordered item list */
    uint32_t *item_at;   /* item id at each position of that list */
    float *cat_prob;     /* per position: alias table inside its category */
    uint32_t *cat_alias; /* relative to the category's start */
    float *pop_prob;     /* over positions: global popularity */
    uint32_t *pop_alias;
    float *fav_prob; /* over categories: who likes what */
    uint32_t *fav_alias;
    char *item_txt; /* per item id: ITEM_TXT bytes, see above */
    uint8_t *id_len, *tail_len;
    uint64_t *n_events; /* per user */
} shop;

static void shop_free(shop *s) {
    free(s->cat_start);
    free(s->item_at);
    free(s->cat_prob);
    free(s->cat_alias);
    free(s->pop_prob);
    free(s->pop_alias);
    free(s->fav_prob);
    free(s->fav_alias);
    free(s->item_txt);
    free(s->id_len);
    free(s->tail_len);
    free(s->n_events);
}

/* Splits total into n parts proportional to w (parts differ from the exact
 * shares by less than one and sum exactly to total). */
static void apportion(const double *w, uint32_t n, uint64_t total, uint64_t *part) {
    double sum = 0, cum = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += w[i];
    uint64_t prev = 0;
    for (uint32_t i = 0; i < n; i++) {
        cum += w[i];
        uint64_t upto = i + 1 == n ? total : (uint64_t)llround((double)total * (cum / sum));
        if (upto < prev) upto = prev;
        if (upto > total) upto = total;
        part[i] = upto - prev;
        prev = upto;
    }
}

static int shop_build(const synth_params *p, xoshiro *r, shop *s, err_t *e) {
    uint32_t ni = p->items, nc = p->categories, nu = p->users;
    size_t nw = ni > nu ? ni : nu;
    memset(s, 0, sizeof *s);
    s->n_items = ni;
    s->n_cats = nc;
    double *w = malloc(nw * sizeof *w);
    uint64_t *part = malloc((size_t)nc * sizeof *part);
    uint32_t *work = malloc((size_t)ni * sizeof *work);
    double *cat_price = malloc((size_t)nc * sizeof *cat_price);
    s->cat_start = malloc(((size_t)nc + 1) * sizeof *s->cat_start);
    s->item_at = malloc((size_t)ni * sizeof *s->item_at);
    s->cat_prob = malloc((size_t)ni * sizeof *s->cat_prob);
    s->cat_alias = malloc((size_t)ni * sizeof *s->cat_alias);
    s->pop_prob = malloc((size_t)ni * sizeof *s->pop_prob);
    s->pop_alias = malloc((size_t)ni * sizeof *s->pop_alias);
    s->fav_prob = malloc((size_t)nc * sizeof *s->fav_prob);
    s->fav_alias = malloc((size_t)nc * sizeof *s->fav_alias);
    s->item_txt = calloc(ni, ITEM_TXT);
    s->id_len = malloc(ni);
    s->tail_len = malloc(ni);
    s->n_events = malloc((size_t)nu * sizeof *s->n_events);
    int rc = ERR_OK;
    if (!w || !part || !work || !cat_price || !s->cat_start || !s->item_at || !s->cat_prob ||
        !s->cat_alias || !s->pop_prob || !s->pop_alias || !s->fav_prob || !s->fav_alias ||
        !s->item_txt || !s->id_len || !s->tail_len || !s->n_events) {
        rc = err_set(e, ERR_NOMEM, "synth: out of memory");
        goto done;
    }

    /* Categories: a few big ones, a long tail of small ones; every one gets
     * at least one item. Liking a category follows the same skew. */
    for (uint32_t c = 0; c < nc; c++)
        w[c] = pow(c + 1.0, -CATEGORY_SKEW);
    alias_build(w, nc, s->fav_prob, s->fav_alias, work);
    apportion(w, nc, ni - nc, part);
    s->cat_start[0] = 0;
    for (uint32_t c = 0; c < nc; c++)
        s->cat_start[c + 1] = s->cat_start[c] + 1 + (uint32_t)part[c];

    /* Item ids are shuffled over the positions so that an id says nothing
     * about category or rank. */
    for (uint32_t i = 0; i < ni; i++)
        s->item_at[i] = i;
    for (uint32_t i = ni - 1; i > 0; i--) {
        uint32_t j = xoshiro_below(r, (uint64_t)i + 1), t = s->item_at[i];
        s->item_at[i] = s->item_at[j];
        s->item_at[j] = t;
    }

    /* Zipf inside each category; globally, the category's weight times the
     * item's share inside it. */
    for (uint32_t c = 0; c < nc; c++) {
        uint32_t a = s->cat_start[c], n = s->cat_start[c + 1] - a;
        double z = 0;
        for (uint32_t k = 0; k < n; k++)
            z += w[a + k] = pow(k + 1.0, -p->zipf);
        alias_build(w + a, n, s->cat_prob + a, s->cat_alias + a, work);
        double cw = pow(c + 1.0, -CATEGORY_SKEW) / z;
        for (uint32_t k = 0; k < n; k++)
            w[a + k] *= cw;
    }
    alias_build(w, ni, s->pop_prob, s->pop_alias, work);

    /* Prices: log-normal per item around a per-category level. */
    for (uint32_t c = 0; c < nc; c++)
        cat_price[c] = log(PRICE_MEDIAN) + 0.5 * xoshiro_normal(r);
    int iw = digits10(ni - 1) < 2 ? 2 : digits10(ni - 1);
    int cw = digits10(nc - 1) < 2 ? 2 : digits10(nc - 1);
    for (uint32_t c = 0; c < nc; c++) {
        for (uint32_t pos = s->cat_start[c]; pos < s->cat_start[c + 1]; pos++) {
            uint32_t it = s->item_at[pos];
            double price = exp(cat_price[c] + 0.8 * xoshiro_normal(r));
            uint64_t cents = (uint64_t)llround((price < 1 ? 1 : price > 200 ? 200 : price) * 100);
            char *t = s->item_txt + (size_t)it * ITEM_TXT;
            char *q = t;
            *q++ = 'i';
            q = put_u64(q, it, iw);
            s->id_len[it] = (uint8_t)(q - t);
            q = t + ITEM_TAIL;
            *q++ = ',';
            q = put_u64(q, cents / 100, 1);
            *q++ = '.';
            q = put_u64(q, cents % 100, 2);
            *q++ = ',';
            *q++ = 'c';
            q = put_u64(q, c, cw);
            *q++ = '\n';
            s->tail_len[it] = (uint8_t)(q - t - ITEM_TAIL);
        }
    }

    /* Events per user: log-normal activity (a heavy tail of big buyers),
     * everyone buys at least once when there are enough events. */
    for (uint32_t u = 0; u < nu; u++)
        w[u] = exp(ACTIVITY_SIGMA * xoshiro_normal(r));
    uint64_t base = p->events >= nu ? 1 : 0;
    apportion(w, nu, p->events - base * nu, s->n_events);
    for (uint32_t u = 0; u < nu; u++)
        s->n_events[u] += base;
done:
    free(w);
    free(part);
    free(work);
    free(cat_price);
    if (rc) shop_free(s);
    return rc;
}

/* Per-user scratch, grown to the largest user. */
typedef struct user_buf {
    uint32_t *items; /* bought so far, for repeats */
    double *gaps;    /* cumulative exponential spacings -> sorted times */
    uint64_t cap;
} user_buf;

static int user_buf_reserve(user_buf *b, uint64_t n) {
    if (n <= b->cap) return ERR_OK;
    uint64_t cap = b->cap ? b->cap : 64;
    while (cap < n)
        cap *= 2;
    uint32_t *items = realloc(b->items, cap * sizeof *items);
    if (items) b->items = items;
    double *gaps = realloc(b->gaps, cap * sizeof *gaps);
    if (gaps) b->gaps = gaps;
    if (!items || !gaps) return ERR_NOMEM;
    b->cap = cap;
    return ERR_OK;
}

/* Writes all events of user u, in time order. */
static int write_user(const synth_params *p, const shop *s, xoshiro *r, uint32_t u, user_buf *ub,
                      outbuf *o, uint64_t *written, err_t *e) {
    uint64_t n = s->n_events[u];
    if (n == 0) return ERR_OK;
    if (user_buf_reserve(ub, n)) return err_set(e, ERR_NOMEM, "synth: out of memory");

    /* Tastes: 1 to MAX_FAVS distinct categories with random weights. */
    uint32_t fav[MAX_FAVS];
    double fav_cum[MAX_FAVS], x = xoshiro_unit(r);
    int nf = x < 0.3 ? 1 : x < 0.7 ? 2 : x < 0.9 ? 3 : 4;
    if ((uint32_t)nf > s->n_cats) nf = (int)s->n_cats;
    double cum = 0;
    for (int k = 0; k < nf; k++) {
        uint32_t c;
        bool dup;
        do {
            c = alias_draw(s->fav_prob, s->fav_alias, s->n_cats, r);
            dup = false;
            for (int j = 0; j < k; j++)
                dup |= fav[j] == c;
        } while (dup);
        fav[k] = c;
        fav_cum[k] = cum += -log(1.0 - xoshiro_unit(r));
    }

    /* Active window: joins in the first half of the span; churners stop
     * between 5% and 75% of the way to the end, the others buy up to the
     * last couple of days. */
    int64_t span = (int64_t)p->days * 86400, start = p->end_unix - span;
    int64_t a = start + (int64_t)(xoshiro_unit(r) * 0.5 * (double)span), b;
    if (xoshiro_unit(r) < p->churn_share)
        b = a + (int64_t)((0.05 + 0.7 * xoshiro_unit(r)) * (double)(p->end_unix - a));
    else
        b = p->end_unix -
            (int64_t)(xoshiro_unit(r) * (double)(span / 10 < 172800 ? span / 10 : 172800));
    /* n sorted times in (a, b], the last at b: cumulative exponential gaps. */
    double g = 0;
    for (uint64_t k = 0; k < n; k++)
        ub->gaps[k] = g += -log(1.0 - xoshiro_unit(r));
    double scale = (double)(b - a) / g;

    char user_id[24] = "";
    int uw = digits10(p->users - 1) < 2 ? 2 : digits10(p->users - 1);
    user_id[0] = 'u';
    size_t ulen = (size_t)(put_u64(user_id + 1, u, uw) - user_id);
    double repeat = p->repeat_share, taste = repeat + (1 - repeat) * TASTE_SHARE;

    for (uint64_t k = 0; k < n; k++) {
        uint32_t it;
        double y = xoshiro_unit(r);
        if (y < repeat && k > 0) {
            it = ub->items[xoshiro_below(r, k)];
        } else if (y < taste) {
            double f = xoshiro_unit(r) * cum;
            int j = 0;
            while (j < nf - 1 && f >= fav_cum[j])
                j++;
            uint32_t c0 = s->cat_start[fav[j]], cn = s->cat_start[fav[j] + 1] - c0;
            it = s->item_at[c0 + alias_draw(s->cat_prob + c0, s->cat_alias + c0, cn, r)];
        } else {
            it = s->item_at[alias_draw(s->pop_prob, s->pop_alias, s->n_items, r)];
        }
        ub->items[k] = it;
        double qx = xoshiro_unit(r);
        uint64_t qty = qx < 0.75 ? 1 : qx < 0.9 ? 2 : 3 + (uint64_t)((qx - 0.9) * 40);

        if (o->len + MAX_LINE > OUT_BUF) {
            int rc = out_flush(o, e);
            if (rc) return rc;
        }
        /* Fixed-size copies (the sources are padded, the buffer has MAX_LINE
         * spare) compile to a few vector moves instead of memcpy calls. */
        char *q = o->buf + o->len;
        const char *t = s->item_txt + (size_t)it * ITEM_TXT;
        memcpy(q, user_id, 16);
        q += ulen;
        *q++ = ',';
        memcpy(q, t, 16);
        q += s->id_len[it];
        *q++ = ',';
        q = put_u64(q, (uint64_t)(a + (int64_t)(ub->gaps[k] * scale)), 1);
        *q++ = ',';
        q = put_u64(q, qty, 1);
        memcpy(q, t + ITEM_TAIL, ITEM_TXT - ITEM_TAIL);
        q += s->tail_len[it];
        o->len = (size_t)(q - o->buf);
        if (++*written % PROGRESS_EVERY == 0 && p->progress)
            p->progress(p->progress_ctx, *written, p->events);
    }
    return ERR_OK;
}

int synth_write_csv(const synth_params *p, FILE *out, uint64_t *written, err_t *e) {
    *written = 0;
    if (!p->users || !p->items || !p->categories)
        return err_set(e, ERR_INVALID, "synth: users, items and categories must be > 0");
    if (p->categories > p->items)
        return err_set(e, ERR_INVALID, "synth: %u categories for %u items: each needs an item",
                       p->categories, p->items);
    if (!(p->zipf >= 0 && p->zipf <= 10) || !(p->churn_share >= 0 && p->churn_share <= 1) ||
        !(p->repeat_share >= 0 && p->repeat_share <= 1) || p->days == 0)
        return err_set(e, ERR_INVALID, "synth: zipf must be in [0,10], shares in [0,1], days > 0");
    if (p->end_unix < (int64_t)p->days * 86400)
        return err_set(e, ERR_INVALID, "synth: the span starts before 1970");

    xoshiro r;
    xoshiro_seed(&r, p->seed);
    shop s;
    int rc = shop_build(p, &r, &s, e);
    if (rc) return rc;
    outbuf o = {out, malloc(OUT_BUF), 0};
    user_buf ub = {0};
    if (!o.buf) {
        rc = err_set(e, ERR_NOMEM, "synth: out of memory");
        goto done;
    }
    static const char header[] = "user_id,item_id,timestamp,quantity,price,category\n";
    memcpy(o.buf, header, sizeof header - 1);
    o.len = sizeof header - 1;
    for (uint32_t u = 0; u < p->users && !rc; u++)
        rc = write_user(p, &s, &r, u, &ub, &o, written, e);
    if (!rc) rc = out_flush(&o, e);
    if (!rc && fflush(out) != 0) rc = err_set(e, ERR_IO, "synth: write failed");
done:
    free(o.buf);
    free(ub.items);
    free(ub.gaps);
    shop_free(&s);
    return rc;
}
