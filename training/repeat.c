#include "repeat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"

#define REPEAT_MAX_KS 16 /* EVAL_MAX_KS of eval.h */

#define DAY 86400.0

void repeat_params_init(repeat_params *p) {
    p->horizon_days = 30.0f;
    p->shrinkage = 10.0f;
    p->strength = 2.0f;
    p->gap_weight = 2.0f;
    p->calibration_members = 5000;
}

void repeat_free(repeat_model *m) {
    free(m->items);
    memset(m, 0, sizeof *m);
}

rebuy_model repeat_view(const repeat_model *m) {
    return (rebuy_model){.params = m->params, .items = m->items, .curve = m->curve};
}

/* One purchase line: what the fits read. */
typedef struct pline {
    uint32_t user, item;
    int64_t ts;
} pline;

static int cmp_pline(const void *a, const void *b) {
    const pline *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->item != y->item) return x->item < y->item ? -1 : 1;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

static int64_t day_of(int64_t ts) {
    return ts >= 0 ? ts / 86400 : -((-ts + 86399) / 86400);
}

/* The purchase events with from <= ts < until and not skipped, sorted by
 * (user, item, ts) into *out (caller frees). */
static int lines_collect(const ev_set *h, const uint8_t *skip, int64_t from, int64_t until,
                         pline **out, size_t *n_out, err_t *e) {
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const ev_event *ev = &h->events[i];
        n += ev->type == EV_TYPE_PURCHASE && !(skip && skip[i]) && ev->ts >= from && ev->ts < until;
    }
    pline *l = malloc((n ? n : 1) * sizeof *l);
    if (!l) return err_set(e, ERR_NOMEM, "repeat: out of memory for %zu purchases", n);
    n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const ev_event *ev = &h->events[i];
        if (ev->type == EV_TYPE_PURCHASE && !(skip && skip[i]) && ev->ts >= from && ev->ts < until)
            l[n++] = (pline){ev->user, ev->item, ev->ts};
    }
    qsort(l, n, sizeof *l, cmp_pline);
    *out = l;
    *n_out = n;
    return ERR_OK;
}

/* One member-item run of sorted lines: its occasions (distinct days), the
 * first and last times, and the log gaps' sums. Returns the run's end. */
typedef struct pair_run {
    uint32_t user, item;
    double n, sum_log, sum_log2;
    int64_t first, last;
} pair_run;

static size_t run_next(const pline *l, size_t n, size_t at, pair_run *r) {
    *r = (pair_run){l[at].user, l[at].item, 1, 0, 0, l[at].ts, l[at].ts};
    int64_t prev = day_of(l[at].ts);
    size_t j = at + 1;
    for (; j < n && l[j].user == r->user && l[j].item == r->item; j++) {
        int64_t d = day_of(l[j].ts);
        r->last = l[j].ts;
        if (d == prev) continue;
        double g = log((double)(d - prev));
        r->n += 1;
        r->sum_log += g;
        r->sum_log2 += g * g;
        prev = d;
    }
    return j;
}

/* Fits items (n_items x REBUY_ITEM_FLOATS) and the catalogue's rate and
 * mu into params, from sorted lines. */
static int fit_items(const pline *l, size_t n, uint32_t n_items, float m, float *items,
                     float *params, err_t *e) {
    double *acc = calloc((size_t)n_items * 5 + 1, sizeof *acc);
    if (!acc) return err_set(e, ERR_NOMEM, "repeat: out of memory for %u items", n_items);
    double tot[5] = {0};
    pair_run r;
    for (size_t at = 0, next; at < n; at = next) {
        next = run_next(l, n, at, &r);
        double v[5] = {r.n, 1, r.n - 1, r.sum_log, r.sum_log2};
        for (int k = 0; k < 5; k++) {
            acc[(size_t)r.item * 5 + k] += v[k];
            tot[k] += v[k];
        }
    }
    /* occasions, buyers, gaps, sum log, sum log^2 */
    double rate = tot[0] > 0 ? (tot[0] - tot[1]) / tot[0] : 0;
    double mu = tot[2] > 0 ? tot[3] / tot[2] : log(30.0);
    double var = tot[2] > 1 ? tot[4] / tot[2] - mu * mu : 1.0;
    if (!(var > 0.01)) var = 0.01;
    for (uint32_t i = 0; i < n_items; i++) {
        const double *a = acc + (size_t)i * 5;
        double ri = (a[0] - a[1] + m * rate) / (a[0] + m > 0 ? a[0] + m : 1);
        double mi = a[2] + m > 0 ? (a[3] + m * mu) / (a[2] + m) : mu;
        double ss = a[4] - 2 * mi * a[3] + a[2] * mi * mi + m * var;
        double vi = a[2] + m > 0 ? ss / (a[2] + m) : var;
        float *it = items + (size_t)i * REBUY_ITEM_FLOATS;
        it[0] = (float)(a[0] > 0 || m > 0 ? ri : rate);
        it[1] = (float)mi;
        it[2] = (float)sqrt(vi > 0.0025 ? vi : 0.0025);
        it[3] = (float)a[1];
    }
    params[REBUY_RATE] = (float)rate;
    params[REBUY_MU] = (float)mu;
    free(acc);
    return ERR_OK;
}

int repeat_pairs(const ev_set *history, const uint8_t *skip, int64_t until, const csr *rows,
                 float **out, err_t *e) {
    uint64_t nnz = csr_nnz(rows);
    float *p = calloc(nnz * REBUY_PAIR_FLOATS + 1, sizeof *p);
    if (!p)
        return err_set(e, ERR_NOMEM, "repeat: out of memory for %llu pairs",
                       (unsigned long long)nnz);
    pline *l;
    size_t n;
    int rc = lines_collect(history, skip, INT64_MIN, until, &l, &n, e);
    if (rc) {
        free(p);
        return rc;
    }
    pair_run r;
    for (size_t at = 0, next; at < n; at = next) {
        next = run_next(l, n, at, &r);
        if (r.user >= rows->n_rows) continue;
        /* The entry of (user, item) in its sorted row. */
        uint64_t lo = rows->indptr[r.user], hi = rows->indptr[r.user + 1];
        while (lo < hi) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (rows->indices[mid] < r.item)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == rows->indptr[r.user + 1] || rows->indices[lo] != r.item) continue;
        float *q = p + lo * REBUY_PAIR_FLOATS;
        q[0] = (float)r.n;
        q[1] = (float)((double)(until - r.last) / DAY);
        q[2] = (float)(day_of(r.last) - day_of(r.first));
    }
    free(l);
    *out = p;
    return ERR_OK;
}

/* Platt scaling on z[i] = (logit(raw), log(occasions)) against y by
 * Newton's method: params a, w, b of rebuy.h. A weak pull (one
 * observation's worth) towards the identity a = 1, w = b = 0 keeps the
 * numbers finite when a window has no repeat at all. */
static void platt_fit(const float (*z)[2], const uint8_t *y, size_t n, float out[3]) {
    double t[3] = {1, 0, 0}, prior[3] = {1, 0, 0};
    for (int it = 0; it < 100; it++) {
        double g[3], h[3][3] = {{0}};
        for (int a = 0; a < 3; a++) {
            g[a] = t[a] - prior[a];
            h[a][a] = 1;
        }
        for (size_t i = 0; i < n; i++) {
            double x[3] = {z[i][0], z[i][1], 1};
            double p = 1 / (1 + exp(-(t[0] * x[0] + t[1] * x[1] + t[2]))), w = p * (1 - p);
            for (int a = 0; a < 3; a++) {
                g[a] += (p - y[i]) * x[a];
                for (int b = 0; b < 3; b++)
                    h[a][b] += w * x[a] * x[b];
            }
        }
        /* Solve h d = g (3 x 3, symmetric positive definite: Gaussian
         * elimination without pivoting is stable). */
        for (int a = 0; a < 3; a++)
            for (int b = a + 1; b < 3; b++) {
                double f = h[b][a] / h[a][a];
                for (int c = a; c < 3; c++)
                    h[b][c] -= f * h[a][c];
                g[b] -= f * g[a];
            }
        double d[3], step = 0;
        for (int a = 2; a >= 0; a--) {
            double v = g[a];
            for (int c = a + 1; c < 3; c++)
                v -= h[a][c] * d[c];
            d[a] = v / h[a][a];
        }
        for (int a = 0; a < 3; a++) {
            t[a] -= d[a];
            step += fabs(d[a]);
        }
        if (!(step > 1e-9)) break;
    }
    for (int a = 0; a < 3; a++)
        out[a] = isfinite(t[a]) ? (float)t[a] : (float)prior[a];
}

/* Pool adjacent violators: the non-increasing sequence closest to v (equal
 * weights), in place. */
static void pav_decreasing(float *v, uint32_t n) {
    double *sum = malloc(n * sizeof *sum);
    uint32_t *len = malloc(n * sizeof *len);
    if (!sum || !len) {
        /* No memory: a running minimum is non-increasing too. */
        for (uint32_t i = 1; i < n; i++)
            if (v[i] > v[i - 1]) v[i] = v[i - 1];
        free(sum);
        free(len);
        return;
    }
    uint32_t b = 0;
    for (uint32_t i = 0; i < n; i++) {
        sum[b] = v[i];
        len[b] = 1;
        b++;
        while (b > 1 && sum[b - 1] / len[b - 1] > sum[b - 2] / len[b - 2]) {
            sum[b - 2] += sum[b - 1];
            len[b - 2] += len[b - 1];
            b--;
        }
    }
    uint32_t at = 0;
    for (uint32_t k = 0; k < b; k++)
        for (uint32_t j = 0; j < len[k]; j++)
            v[at++] = (float)(sum[k] / len[k]);
    free(sum);
    free(len);
}

/* The users x items confidence of the events before until (each its
 * weight), not skipped. */
static int matrix_before(const ev_set *h, const uint8_t *skip, int64_t until, csr *out, err_t *e) {
    uint32_t *rows = malloc((h->n ? h->n : 1) * sizeof *rows);
    uint32_t *cols = malloc((h->n ? h->n : 1) * sizeof *cols);
    float *vals = malloc((h->n ? h->n : 1) * sizeof *vals);
    int rc;
    if (!rows || !cols || !vals) {
        rc = err_set(e, ERR_NOMEM, "repeat: out of memory for %zu events", h->n);
    } else {
        size_t n = 0;
        for (size_t i = 0; i < h->n; i++) {
            const ev_event *ev = &h->events[i];
            if ((skip && skip[i]) || ev->ts >= until) continue;
            rows[n] = ev->user;
            cols[n] = ev->item;
            vals[n++] = ev->weight;
        }
        rc = csr_from_triplets(idmap_size(h->users), idmap_size(h->items), rows, cols, vals, n, out,
                               e);
    }
    free(rows);
    free(cols);
    free(vals);
    return rc;
}

/* A member's sorted distinct items of sorted lines, as rows of a csr-like
 * table: items[ptr[u], ptr[u + 1]) for u < n_users. */
static int item_sets(const pline *l, size_t n, uint32_t n_users, uint64_t **ptr, uint32_t **items,
                     err_t *e) {
    *ptr = calloc((size_t)n_users + 1, sizeof **ptr);
    *items = malloc((n ? n : 1) * sizeof **items);
    if (!*ptr || !*items) {
        free(*ptr);
        free(*items);
        return err_set(e, ERR_NOMEM, "repeat: out of memory for %zu purchases", n);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && l[i].user == l[i - 1].user && l[i].item == l[i - 1].item) continue;
        (*items)[k++] = l[i].item;
        (*ptr)[l[i].user + 1]++;
    }
    for (uint32_t u = 0; u < n_users; u++)
        (*ptr)[u + 1] += (*ptr)[u];
    return ERR_OK;
}

static int has_item(const uint32_t *items, uint64_t lo, uint64_t hi, uint32_t item) {
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (items[mid] == item) return 1;
        if (items[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* x_u . y_i of every item into scores. */
static void als_scores(const als_factors *f, uint32_t u, float *scores) {
    const float *x = f->user_factors + (size_t)u * f->factors;
    for (uint32_t i = 0; i < f->n_items; i++) {
        const float *y = f->item_factors + (size_t)i * f->factors;
        float s = 0;
        for (uint32_t d = 0; d < f->factors; d++)
            s += x[d] * y[d];
        scores[i] = s;
    }
}

/* The calibration of *out (items fitted before the window already in
 * out->items) on the window [cut, until). */
static int calibrate(const ev_set *h, const uint8_t *skip, int64_t cut, int64_t until,
                     const repeat_params *p, const als_params *als, repeat_model *out, err_t *e) {
    uint32_t n_users = idmap_size(h->users), n_items = idmap_size(h->items);
    csr pre = {0};
    als_factors f = {0};
    pline *before = NULL, *window = NULL;
    size_t n_before = 0, n_window = 0;
    uint64_t *wptr = NULL;
    uint32_t *witems = NULL, *hits = NULL;
    float(*z)[2] = NULL, *scores = NULL;
    uint8_t *y = NULL, *sampled = NULL;
    topk_entry *top = NULL;
    int rc;
    if ((rc = matrix_before(h, skip, cut, &pre, e)) ||
        (rc = lines_collect(h, skip, INT64_MIN, cut, &before, &n_before, e)) ||
        (rc = lines_collect(h, skip, cut, until, &window, &n_window, e)))
        goto done;
    if (csr_nnz(&pre) == 0 || n_window == 0 || n_before == 0) goto done;
    if ((rc = item_sets(window, n_window, n_users, &wptr, &witems, e))) goto done;
    /* Members who had bought something before the window, evenly spread. */
    sampled = calloc(n_users ? n_users : 1, 1);
    hits = calloc(REBUY_CURVE, sizeof *hits);
    z = malloc((n_before ? n_before : 1) * sizeof *z);
    y = malloc(n_before ? n_before : 1);
    scores = malloc((n_items ? n_items : 1) * sizeof *scores);
    top = malloc(REBUY_CURVE * sizeof *top);
    if (!sampled || !hits || !z || !y || !scores || !top) {
        rc = err_set(e, ERR_NOMEM, "repeat: out of memory calibrating");
        goto done;
    }
    uint32_t eligible = 0;
    for (size_t i = 0; i < n_before; i++)
        if (i == 0 || before[i].user != before[i - 1].user) eligible++;
    uint32_t step = p->calibration_members && eligible > p->calibration_members
                        ? (eligible + p->calibration_members - 1) / p->calibration_members
                        : 1;
    uint32_t seen = 0, members = 0;
    for (size_t i = 0; i < n_before; i++)
        if (i == 0 || before[i].user != before[i - 1].user)
            if (seen++ % step == 0) sampled[before[i].user] = 1, members++;
    /* The repeat side: each item a sampled member had bought. */
    rebuy_model rm = repeat_view(out);
    size_t n_z = 0;
    uint64_t window_items = 0, window_repeats = 0;
    pair_run r;
    for (size_t at = 0, next; at < n_before; at = next) {
        next = run_next(before, n_before, at, &r);
        if (!sampled[r.user]) continue;
        double raw = rebuy_raw(&rm, r.item, r.n, (double)(cut - r.last) / DAY,
                               (double)(day_of(r.last) - day_of(r.first)));
        raw = raw < 1e-6 ? 1e-6 : (raw > 1 - 1e-6 ? 1 - 1e-6 : raw);
        z[n_z][0] = (float)log(raw / (1 - raw));
        z[n_z][1] = (float)log(r.n);
        y[n_z++] = (uint8_t)has_item(witems, wptr[r.user], wptr[r.user + 1], r.item);
        window_repeats += y[n_z - 1];
    }
    for (uint32_t u = 0; u < n_users; u++)
        if (sampled[u]) window_items += wptr[u + 1] - wptr[u];
    float platt[3];
    platt_fit((const float(*)[2])z, y, n_z, platt);
    out->params[REBUY_PLATT_A] = platt[0];
    out->params[REBUY_PLATT_N] = platt[1];
    out->params[REBUY_PLATT_B] = platt[2];
    out->params[REBUY_REPEAT_SHARE] =
        window_items ? (float)((double)window_repeats / (double)window_items) : 0.0f;
    /* The new side: the ALS list of each sampled member without what they
     * had (as the server leaves out a member's stored items). */
    als_params ap = *als;
    ap.progress = NULL;
    if ((rc = als_train(&pre, &ap, &f, e))) goto done;
    for (uint32_t u = 0; u < n_users; u++) {
        if (!sampled[u]) continue;
        als_scores(&f, u, scores);
        for (uint64_t k = pre.indptr[u]; k < pre.indptr[u + 1]; k++)
            scores[pre.indices[k]] = -INFINITY;
        uint32_t n = topk_select(scores, n_items, REBUY_CURVE, top);
        for (uint32_t k = 0; k < n; k++)
            hits[k] += (uint32_t)has_item(witems, wptr[u], wptr[u + 1], top[k].index);
    }
    for (uint32_t k = 0; k < REBUY_CURVE; k++)
        out->curve[k] = (float)hits[k] / (float)members;
    pav_decreasing(out->curve, REBUY_CURVE);
    out->calibration_members = members;
done:
    csr_free(&pre);
    als_factors_free(&f);
    free(before);
    free(window);
    free(wptr);
    free(witems);
    free(hits);
    free(z);
    free(y);
    free(scores);
    free(sampled);
    free(top);
    return rc;
}

int repeat_train(const ev_set *history, const uint8_t *skip, int64_t until, const repeat_params *p,
                 const als_params *als, repeat_model *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (!(p->horizon_days > 0 && p->horizon_days <= 3650) || !(p->shrinkage >= 0) ||
        !(p->strength >= 0) || !(p->gap_weight >= 0))
        return err_set(e, ERR_INVALID,
                       "repeat: horizon must be in (0, 3650] days and shrinkage, strength and "
                       "gap weight >= 0");
    uint32_t n_items = idmap_size(history->items);
    out->n_items = n_items;
    out->items = malloc(((size_t)n_items * REBUY_ITEM_FLOATS + 1) * sizeof *out->items);
    if (!out->items) return err_set(e, ERR_NOMEM, "repeat: out of memory for %u items", n_items);
    out->params[REBUY_STRENGTH] = p->strength;
    out->params[REBUY_GAP_WEIGHT] = p->gap_weight;
    out->params[REBUY_HORIZON] = p->horizon_days;
    out->params[REBUY_PLATT_A] = 1.0f;
    int64_t cut = until - (int64_t)(p->horizon_days * DAY);
    pline *l = NULL;
    size_t n = 0;
    int rc;
    if ((rc = lines_collect(history, skip, INT64_MIN, cut, &l, &n, e)) ||
        (rc = fit_items(l, n, n_items, p->shrinkage, out->items, out->params, e)) ||
        (rc = calibrate(history, skip, cut, until, p, als, out, e)))
        goto done;
    free(l);
    l = NULL;
    /* The numbers served: the whole history, with the calibration above. */
    if ((rc = lines_collect(history, skip, INT64_MIN, until, &l, &n, e)) ||
        (rc = fit_items(l, n, n_items, p->shrinkage, out->items, out->params, e)))
        goto done;
done:
    free(l);
    if (rc) repeat_free(out);
    return rc;
}

/* --- recd eval --repeat ---------------------------------------------------- */

enum { R_POPULAR, R_TOPFREQ, R_ALS, R_BUYAGAIN, R_RECD, N_RANKERS };

static const char *const ranker_names[N_RANKERS] = {
    "most-popular", "personal top-frequency", "als (every item)", "buy-again only (BUY_AGAIN)",
    "recd (include_purchased)"};

/* One member's bought items for the rankers. */
typedef struct bought_item {
    uint32_t item;
    float n, days, span;
    double p;
} bought_item;

static int cmp_topfreq(const void *a, const void *b) {
    const bought_item *x = a, *y = b;
    if (x->n != y->n) return x->n > y->n ? -1 : 1;
    if (x->days != y->days) return x->days < y->days ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

static int cmp_due(const void *a, const void *b) {
    const bought_item *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

/* Adds a list's HR, NDCG and recall at each k to sums[k][3]. */
static void score_list(const uint32_t *list, uint32_t n, const uint32_t *rel, uint64_t lo,
                       uint64_t hi, const uint32_t *ks, uint32_t n_ks, double (*sums)[3]) {
    uint64_t n_rel = hi - lo;
    for (uint32_t q = 0; q < n_ks; q++) {
        uint32_t k = ks[q] < n ? ks[q] : n, hits = 0;
        double dcg = 0, idcg = 0;
        for (uint32_t r = 0; r < k; r++)
            if (has_item(rel, lo, hi, list[r])) hits++, dcg += 1 / log2(r + 2.0);
        for (uint32_t r = 0; r < ks[q] && r < n_rel; r++)
            idcg += 1 / log2(r + 2.0);
        sums[q][0] += hits > 0;
        sums[q][1] += idcg > 0 ? dcg / idcg : 0;
        sums[q][2] += n_rel ? (double)hits / (double)n_rel : 0;
    }
}

int repeat_evaluate(const ev_set *s, int64_t cutoff, const repeat_params *p, const als_params *als,
                    const uint32_t *ks, uint32_t n_ks, FILE *out, err_t *e) {
    uint32_t n_users = idmap_size(s->users), n_items = idmap_size(s->items);
    uint32_t kmax = 0;
    for (uint32_t q = 0; q < n_ks; q++)
        if (ks[q] > kmax) kmax = ks[q];
    if (kmax > REBUY_CURVE)
        return err_set(e, ERR_INVALID, "eval: --repeat needs k <= %d", REBUY_CURVE);
    int64_t end = cutoff + (int64_t)(p->horizon_days * DAY);
    csr train = {0};
    als_factors f = {0};
    repeat_model rm = {0};
    float *pairs = NULL, *scores = NULL, *popularity = NULL;
    pline *test = NULL;
    size_t n_test = 0;
    uint64_t *tptr = NULL;
    uint32_t *titems = NULL, *order = NULL, *list = NULL;
    topk_entry *top = NULL, *due = NULL, *fresh = NULL, *merged = NULL;
    bought_item *bi = NULL;
    uint8_t *mark = NULL;
    double(*sums)[REPEAT_MAX_KS][3] = NULL;
    int rc;
    if ((rc = matrix_before(s, NULL, cutoff, &train, e)) ||
        (rc = lines_collect(s, NULL, cutoff, end, &test, &n_test, e)) ||
        (rc = item_sets(test, n_test, n_users, &tptr, &titems, e)))
        goto done;
    fprintf(stderr, "eval: --repeat: training on %llu member-item pairs before the cutoff\n",
            (unsigned long long)csr_nnz(&train));
    als_params ap = *als;
    if ((rc = als_train(&train, &ap, &f, e)) ||
        (rc = repeat_train(s, NULL, cutoff, p, als, &rm, e)) ||
        (rc = repeat_pairs(s, NULL, cutoff, &train, &pairs, e)))
        goto done;
    rebuy_model m = repeat_view(&rm);
    scores = malloc((n_items ? n_items : 1) * sizeof *scores);
    popularity = calloc(n_items ? n_items : 1, sizeof *popularity);
    order = malloc((n_items ? n_items : 1) * sizeof *order);
    list = malloc((kmax + 1) * sizeof *list);
    top = malloc((n_items ? n_items : 1) * sizeof *top);
    due = malloc((n_items ? n_items : 1) * sizeof *due);
    fresh = malloc((kmax + 1) * sizeof *fresh);
    merged = malloc((kmax + 1) * sizeof *merged);
    bi = malloc((n_items ? n_items : 1) * sizeof *bi);
    mark = calloc(n_items ? n_items : 1, 1);
    sums = calloc(N_RANKERS, sizeof *sums);
    if (!scores || !popularity || !order || !list || !top || !due || !fresh || !merged || !bi ||
        !mark || !sums) {
        rc = err_set(e, ERR_NOMEM, "eval: out of memory for %u items", n_items);
        goto done;
    }
    /* Most-popular: distinct buyers before the cutoff. */
    for (uint64_t k = 0; k < csr_nnz(&train); k++)
        if (pairs[k * REBUY_PAIR_FLOATS] > 0) popularity[train.indices[k]] += 1.0f;
    uint32_t n_order = topk_select(popularity, n_items, n_items, top);
    for (uint32_t j = 0; j < n_order; j++)
        order[j] = top[j].index;
    uint64_t queries = 0, rel_total = 0, rel_repeat = 0, recd_slots = 0, recd_repeat = 0;
    for (uint32_t u = 0; u < n_users; u++) {
        uint64_t lo = tptr[u], hi = tptr[u + 1];
        if (lo == hi || u >= train.n_rows) continue;
        uint32_t nb = 0;
        for (uint64_t k = train.indptr[u]; k < train.indptr[u + 1]; k++) {
            const float *q = pairs + k * REBUY_PAIR_FLOATS;
            if (q[0] > 0)
                bi[nb++] = (bought_item){train.indices[k], q[0], q[1], q[2],
                                         rebuy_probability(&m, train.indices[k], q[0], q[1], q[2])};
        }
        if (nb == 0) continue;
        queries++;
        rel_total += hi - lo;
        for (uint32_t j = 0; j < nb; j++)
            rel_repeat += (uint64_t)has_item(titems, lo, hi, bi[j].item);
        /* most-popular */
        uint32_t n = n_order < kmax ? n_order : kmax;
        score_list(order, n, titems, lo, hi, ks, n_ks, sums[R_POPULAR]);
        /* personal top-frequency, then most-popular */
        qsort(bi, nb, sizeof *bi, cmp_topfreq);
        n = 0;
        for (uint32_t j = 0; j < nb && n < kmax; j++)
            list[n++] = bi[j].item, mark[bi[j].item] = 1;
        for (uint32_t j = 0; j < n_order && n < kmax; j++)
            if (!mark[order[j]]) list[n++] = order[j];
        for (uint32_t j = 0; j < nb; j++)
            mark[bi[j].item] = 0;
        score_list(list, n, titems, lo, hi, ks, n_ks, sums[R_TOPFREQ]);
        /* ALS over every item */
        als_scores(&f, u, scores);
        n = topk_select(scores, n_items, kmax, top);
        for (uint32_t j = 0; j < n; j++)
            list[j] = top[j].index;
        score_list(list, n, titems, lo, hi, ks, n_ks, sums[R_ALS]);
        /* buy-again alone */
        qsort(bi, nb, sizeof *bi, cmp_due);
        for (uint32_t j = 0; j < nb; j++)
            due[j] = (topk_entry){bi[j].item, (float)bi[j].p};
        n = nb < kmax ? nb : kmax;
        for (uint32_t j = 0; j < n; j++)
            list[j] = due[j].index;
        score_list(list, n, titems, lo, hi, ks, n_ks, sums[R_BUYAGAIN]);
        /* recd: both on one scale, new items without the member's stored ones */
        for (uint64_t k = train.indptr[u]; k < train.indptr[u + 1]; k++)
            scores[train.indices[k]] = -INFINITY;
        uint32_t nf = topk_select(scores, n_items, kmax, fresh);
        n = rebuy_merge(&m, due, nb, fresh, nf, kmax, merged);
        for (uint32_t j = 0; j < n; j++) {
            list[j] = merged[j].index;
            if (j < 10) {
                recd_slots++;
                for (uint32_t b = 0; b < nb; b++)
                    if (bi[b].item == merged[j].index) {
                        recd_repeat++;
                        break;
                    }
            }
        }
        score_list(list, n, titems, lo, hi, ks, n_ks, sums[R_RECD]);
    }
    if (queries == 0) {
        rc = err_set(e, ERR_INVALID,
                     "eval: --repeat: no member bought both before the cutoff and in the %g days "
                     "after it",
                     (double)p->horizon_days);
        goto done;
    }
    fprintf(out,
            "\nrepeat protocol: %llu members bought before the cutoff and in the %g days after it; "
            "the held-out items include those bought before\n",
            (unsigned long long)queries, (double)p->horizon_days);
    fprintf(
        out,
        "held out: %llu member-items, %.1f%% of them bought before; learned on the training "
        "data's last %g days (%u members): repeat share %.1f%%, platt a %.3f w %.3f b %.3f, new "
        "item at rank 1 %.4f, rank 10 %.4f; recd's top 10: %.1f%% repeats\n",
        (unsigned long long)rel_total, 100.0 * (double)rel_repeat / (double)rel_total,
        (double)p->horizon_days, rm.calibration_members,
        100.0 * (double)rm.params[REBUY_REPEAT_SHARE], (double)rm.params[REBUY_PLATT_A],
        (double)rm.params[REBUY_PLATT_N], (double)rm.params[REBUY_PLATT_B], (double)rm.curve[0],
        (double)rm.curve[9], recd_slots ? 100.0 * (double)recd_repeat / (double)recd_slots : 0.0);
    fprintf(out, "\n%-30s", "model");
    for (uint32_t q = 0; q < n_ks; q++)
        fprintf(out, "  NDCG@%-4u HR@%-4u  R@%-4u ", ks[q], ks[q], ks[q]);
    fprintf(out, "\n");
    for (int r = 0; r < N_RANKERS; r++) {
        fprintf(out, "%-30s", ranker_names[r]);
        for (uint32_t q = 0; q < n_ks; q++)
            fprintf(out, "  %.4f    %.4f   %.4f", sums[r][q][1] / (double)queries,
                    sums[r][q][0] / (double)queries, sums[r][q][2] / (double)queries);
        fprintf(out, "\n");
    }
done:
    csr_free(&train);
    als_factors_free(&f);
    repeat_free(&rm);
    free(pairs);
    free(scores);
    free(popularity);
    free(test);
    free(tptr);
    free(titems);
    free(order);
    free(list);
    free(top);
    free(due);
    free(fresh);
    free(merged);
    free(bi);
    free(mark);
    free(sums);
    return rc;
}
