#include "together.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "topk.h"

void together_params_init(together_params *p) {
    p->measure = TOGETHER_CONDITIONAL;
    p->neighbors = 50;
    p->shrinkage = 10.0f;
}

const char *together_measure_name(together_measure m) {
    return m == TOGETHER_LIFT ? "lift" : "conditional";
}

typedef struct line {
    uint32_t user, item;
    int64_t ts;
} line;

static int cmp_line(const void *a, const void *b) {
    const line *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void together_free(together_model *m) {
    free(m->indptr);
    free(m->index);
    free(m->value);
    memset(m, 0, sizeof *m);
}

itemrows together_rows(const together_model *m) {
    return (itemrows){
        .n_items = m->n_items, .indptr = m->indptr, .index = m->index, .value = m->value};
}

/* The baskets as rows of distinct items: basket b is items[ptr[b],
 * ptr[b + 1]). Fills *n_baskets. */
static int baskets_build(const ev_set *h, const uint8_t *skip, uint64_t **ptr, uint32_t **items,
                         uint64_t *n_baskets, err_t *e) {
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        n += h->events[i].type == EV_TYPE_PURCHASE && !(skip && skip[i]);
    line *l = malloc((n ? n : 1) * sizeof *l);
    *ptr = malloc((n + 1) * sizeof **ptr);
    *items = malloc((n ? n : 1) * sizeof **items);
    if (!l || !*ptr || !*items) {
        free(l);
        return err_set(e, ERR_NOMEM, "together: out of memory for %zu purchases", n);
    }
    n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const ev_event *ev = &h->events[i];
        if (ev->type == EV_TYPE_PURCHASE && !(skip && skip[i]))
            l[n++] = (line){ev->user, ev->item, ev->ts};
    }
    qsort(l, n, sizeof *l, cmp_line);
    uint64_t b = 0, k = 0;
    (*ptr)[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int same = i > 0 && l[i].user == l[i - 1].user && l[i].ts == l[i - 1].ts;
        if (i > 0 && !same) (*ptr)[++b] = k;
        /* Two lines of one item in a basket are one item bought. */
        if (!same || l[i].item != l[i - 1].item) (*items)[k++] = l[i].item;
    }
    if (n) (*ptr)[++b] = k;
    *n_baskets = b;
    free(l);
    return ERR_OK;
}

int together_fit(const ev_set *history, const uint8_t *skip, const together_params *p,
                 together_model *out, err_t *e) {
    memset(out, 0, sizeof *out);
    if (p->neighbors == 0) return err_set(e, ERR_INVALID, "together: neighbors is 0");
    if (!(p->shrinkage >= 0.0f) || !isfinite(p->shrinkage))
        return err_set(e, ERR_INVALID, "together: shrinkage %g is not a finite number >= 0",
                       (double)p->shrinkage);
    uint32_t ni = idmap_size(history->items);
    uint64_t *bptr = NULL, nb = 0;
    uint32_t *bitems = NULL;
    int rc = baskets_build(history, skip, &bptr, &bitems, &nb, e);
    if (rc) return rc;
    uint64_t nnz = bptr[nb];
    /* Item -> its baskets (the transpose), c_i = the length of its row. */
    uint64_t *iptr = calloc((size_t)ni + 1, sizeof *iptr);
    uint64_t *ibask = malloc((nnz ? nnz : 1) * sizeof *ibask);
    uint64_t *fill = malloc(((size_t)ni + 1) * sizeof *fill);
    float *co = calloc(ni ? ni : 1, sizeof *co);
    uint32_t *touched = malloc((ni ? ni : 1) * sizeof *touched);
    topk_entry *best = malloc(p->neighbors * sizeof *best);
    float *sc = malloc((ni ? ni : 1) * sizeof *sc);
    out->indptr = calloc((size_t)ni + 1, sizeof *out->indptr);
    if (!iptr || !ibask || !fill || !co || !touched || !best || !sc || !out->indptr) {
        rc = err_set(e, ERR_NOMEM, "together: out of memory for %u items", ni);
        goto done;
    }
    for (uint64_t k = 0; k < nnz; k++)
        iptr[bitems[k] + 1]++;
    for (uint32_t i = 0; i < ni; i++)
        iptr[i + 1] += iptr[i];
    memcpy(fill, iptr, ((size_t)ni + 1) * sizeof *fill);
    for (uint64_t b = 0; b < nb; b++)
        for (uint64_t k = bptr[b]; k < bptr[b + 1]; k++)
            ibask[fill[bitems[k]]++] = b;
    /* Two passes over the items: the first sizes the rows, the second
     * fills them; each counts c_ij for one i over i's baskets. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            for (uint32_t i = 0; i < ni; i++)
                out->indptr[i + 1] += out->indptr[i];
            uint64_t total = out->indptr[ni];
            out->index = malloc((total ? total : 1) * sizeof *out->index);
            out->value = malloc((total ? total : 1) * sizeof *out->value);
            if (!out->index || !out->value) {
                rc = err_set(e, ERR_NOMEM, "together: out of memory for %llu neighbours",
                             (unsigned long long)total);
                goto done;
            }
        }
        for (uint32_t i = 0; i < ni; i++) {
            uint32_t nt = 0;
            for (uint64_t a = iptr[i]; a < iptr[i + 1]; a++) {
                uint64_t b = ibask[a];
                for (uint64_t k = bptr[b]; k < bptr[b + 1]; k++) {
                    uint32_t j = bitems[k];
                    if (j == i) continue;
                    if (co[j] == 0.0f) touched[nt++] = j;
                    co[j] += 1.0f;
                }
            }
            uint32_t keep = nt < p->neighbors ? nt : p->neighbors;
            if (pass == 0) {
                out->indptr[i + 1] = keep;
            } else if (nt) {
                /* By item, so that ties go to the lower item index. */
                qsort(touched, nt, sizeof *touched, cmp_u32);
                double ci = (double)(iptr[i + 1] - iptr[i]);
                for (uint32_t t = 0; t < nt; t++) {
                    uint32_t j = touched[t];
                    double cj = (double)(iptr[j + 1] - iptr[j]);
                    sc[t] = p->measure == TOGETHER_LIFT ? (float)(co[j] * (double)nb / (ci * cj))
                                                        : (float)(co[j] / (ci + p->shrinkage));
                }
                uint32_t n = topk_select(sc, nt, keep, best);
                uint64_t at = out->indptr[i];
                for (uint32_t t = 0; t < n; t++) {
                    out->index[at + t] = touched[best[t].index];
                    out->value[at + t] = best[t].score;
                }
            }
            for (uint32_t t = 0; t < nt; t++)
                co[touched[t]] = 0.0f;
        }
    }
    out->n_items = ni;
    out->baskets = nb;
done:
    if (rc) together_free(out);
    free(bptr);
    free(bitems);
    free(iptr);
    free(ibask);
    free(fill);
    free(co);
    free(touched);
    free(best);
    free(sc);
    return rc;
}

uint32_t together_split_last_baskets(const ev_set *s, const uint64_t *user_start,
                                     uint8_t *is_test) {
    memset(is_test, 0, s->n);
    uint32_t held = 0, n_users = idmap_size(s->users);
    for (uint32_t u = 0; u < n_users; u++) {
        uint64_t a = user_start[u], b = user_start[u + 1], last = b;
        while (last > a && s->events[last - 1].type != EV_TYPE_PURCHASE)
            last--;
        if (last == a) continue;
        int64_t t = s->events[last - 1].ts;
        uint32_t distinct = 0, first = UINT32_MAX;
        int earlier = 0;
        for (uint64_t i = a; i < last; i++) {
            const ev_event *ev = &s->events[i];
            if (ev->type != EV_TYPE_PURCHASE) continue;
            if (ev->ts != t) {
                earlier = 1;
            } else if (first == UINT32_MAX) {
                first = ev->item;
                distinct = 1;
            } else if (ev->item != first) {
                distinct = 2;
            }
        }
        if (!earlier || distinct < 2) continue;
        for (uint64_t i = a; i < last; i++)
            if (s->events[i].type == EV_TYPE_PURCHASE && s->events[i].ts == t) is_test[i] = 1;
        held++;
    }
    return held;
}

int together_hit_rate(const ev_set *s, const uint64_t *user_start, const uint8_t *is_test,
                      uint32_t cart, together_rank_fn rank, void *ctx, uint32_t k, double *hr,
                      uint64_t *queries, err_t *e) {
    if (cart == 0) return err_set(e, ERR_INVALID, "together: a cart of 0 items");
    uint32_t ni = idmap_size(s->items), n_users = idmap_size(s->users);
    uint8_t *trained = calloc(ni ? ni : 1, 1);
    uint32_t *in_basket = calloc(ni ? ni : 1, sizeof *in_basket); /* basket number + 1 */
    uint32_t *items = malloc((ni ? ni : 1) * sizeof *items);
    topk_entry *top = malloc((k ? k : 1) * sizeof *top);
    int rc = ERR_OK;
    double hits = 0;
    uint64_t q = 0;
    if (!trained || !in_basket || !items || !top) {
        rc = err_set(e, ERR_NOMEM, "together: out of memory evaluating %u items", ni);
        goto done;
    }
    for (size_t i = 0; i < s->n; i++)
        if (!is_test[i] && s->events[i].type == EV_TYPE_PURCHASE) trained[s->events[i].item] = 1;
    for (uint32_t u = 0; u < n_users && !rc; u++) {
        uint32_t n = 0, n_seeds = 0;
        for (uint64_t i = user_start[u]; i < user_start[u + 1]; i++) {
            uint32_t it = s->events[i].item;
            if (!is_test[i] || in_basket[it] == u + 1) continue;
            in_basket[it] = u + 1;
            items[n++] = it;
        }
        qsort(items, n, sizeof *items, cmp_u32);
        for (uint32_t a = 0; a < n; a++)
            if (trained[items[a]]) items[n_seeds++] = items[a];
        for (uint32_t a = 0; a + cart <= n_seeds && !rc; a += cart) {
            uint32_t got;
            if ((rc = rank(ctx, items + a, cart, k, top, &got, e))) break;
            /* The ranker never returns a seed, so any basket item is a hit. */
            int hit = 0;
            for (uint32_t t = 0; t < got && !hit; t++)
                hit = in_basket[top[t].index] == u + 1;
            hits += hit;
            q++;
        }
    }
    *hr = q ? hits / (double)q : 0.0;
    *queries = q;
done:
    free(trained);
    free(in_basket);
    free(items);
    free(top);
    return rc;
}
