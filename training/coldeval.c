#include "coldeval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "csr.h"
#include "mf.h"

static uint64_t mix(uint64_t h) {
    h ^= h >> 31;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

/* The held-out draw: independent of the order of the file, only of the
 * seed and the index. */
static int held(uint64_t seed, uint32_t i, double fraction) {
    return (double)(mix(seed * 0x9E3779B97F4A7C15ull + i + 1) >> 11) / 9007199254740992.0 <
           fraction;
}

/* Labels of the n ids (in s's order) from cat, as CSR; rows of ids not in
 * cat are empty. */
static int labels_of(const idmap *ids, uint32_t n, const labels_table *cat, uint64_t **indptr,
                     uint32_t **index, err_t *e) {
    *indptr = calloc((size_t)n + 1, sizeof **indptr);
    *index = malloc((cat->indptr[labels_rows(cat)] + 1) * sizeof **index);
    if (!*indptr || !*index) return err_set(e, ERR_NOMEM, "coldeval: out of memory");
    uint64_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *id = idmap_key(ids, i, &len);
        uint32_t r, nl = 0;
        if (idmap_find(cat->ids, id, len, &r) == ERR_OK) {
            const uint32_t *l = labels_row(cat, r, &nl);
            memcpy(*index + k, l, nl * sizeof *l);
        }
        k += nl;
        (*indptr)[i + 1] = k;
    }
    return ERR_OK;
}

/* Adds one user's metrics for model m: scores over cand (n_cand indexes),
 * rel the relevant subset (sorted item indexes). Rank = candidates scoring
 * higher, ties to the smaller index. */
static void score_user(coldeval_row *row, const float *scores, const uint32_t *cand,
                       uint32_t n_cand, const uint32_t *rel, uint32_t n_rel,
                       const eval_config *ks) {
    double dcg[EVAL_MAX_KS] = {0};
    uint32_t hits[EVAL_MAX_KS] = {0};
    for (uint32_t a = 0; a < n_rel; a++) {
        float s = scores[rel[a]];
        uint32_t rank = 0;
        for (uint32_t c = 0; c < n_cand; c++) {
            float t = scores[cand[c]];
            rank += t > s || (t == s && cand[c] < rel[a]);
        }
        for (uint32_t q = 0; q < ks->n_ks; q++)
            if (rank < ks->ks[q]) {
                dcg[q] += 1.0 / log2(rank + 2.0);
                hits[q]++;
            }
    }
    for (uint32_t q = 0; q < ks->n_ks; q++) {
        double idcg = 0;
        for (uint32_t r = 0; r < n_rel && r < ks->ks[q]; r++)
            idcg += 1.0 / log2(r + 2.0);
        row->ndcg[q] += dcg[q] / idcg;
        row->hr[q] += hits[q] > 0;
        row->recall[q] += (double)hits[q] / n_rel;
    }
}

int coldeval_run(const ev_set *s, const labels_table *cat, int users, double fraction,
                 const als_params *als, const eval_config *ks, coldeval_result *out, err_t *e) {
    memset(out, 0, sizeof *out);
    uint32_t nu = idmap_size(s->users), ni = idmap_size(s->items), k = als->factors;
    const idmap *side = users ? s->users : s->items;
    uint32_t n_side = users ? nu : ni;
    uint64_t seed = als->seed;
    uint64_t *lp = NULL;
    uint32_t *li = NULL, *rows = malloc((s->n + 1) * sizeof *rows),
             *cols = malloc((s->n + 1) * sizeof *cols);
    float *vals = malloc((s->n + 1) * sizeof *vals);
    uint8_t *cold = calloc((size_t)n_side + 1, 1), *use = calloc((size_t)n_side + 1, 1);
    float *scores = malloc(((size_t)ni + 1) * sizeof *scores);
    float *vec = malloc(((size_t)k + 1) * sizeof *vec);
    float *ivec = NULL, *prof = NULL, *labpop = NULL, *pop = NULL, *labn = NULL;
    uint32_t *cand = NULL, *rel = NULL;
    csr train = {0}, test = {0}, train_t = {0};
    als_factors f = {0};
    int rc = ERR_OK;
    if (!rows || !cols || !vals || !cold || !use || !scores || !vec) goto nomem;
    if ((rc = labels_of(side, n_side, cat, &lp, &li, e))) goto out;
    uint32_t n_labels = idmap_size(cat->labels);
    for (uint32_t i = 0; i < n_side; i++)
        if (lp[i + 1] > lp[i] && held(seed, i, fraction)) {
            cold[i] = 1;
            out->held_out++;
        }
    if (out->held_out == 0) {
        rc = err_set(e, ERR_INVALID, "coldeval: no %s with labels held out",
                     users ? "member" : "item");
        goto out;
    }
    /* Train = the events of neither a cold item nor a cold member; test =
     * the cold ones'. Every event counts 1 (recd eval's default). */
    size_t n_train = 0, n_test = 0;
    for (size_t x = 0; x < s->n; x++) {
        const ev_event *ev = &s->events[x];
        if (!cold[users ? ev->user : ev->item]) {
            rows[n_train] = ev->user;
            cols[n_train] = ev->item;
            vals[n_train++] = 1.0f;
        }
    }
    if ((rc = csr_from_triplets(nu, ni, rows, cols, vals, n_train, &train, e))) goto out;
    for (size_t x = 0; x < s->n; x++) {
        const ev_event *ev = &s->events[x];
        if (cold[users ? ev->user : ev->item]) {
            rows[n_test] = ev->user;
            cols[n_test] = ev->item;
            vals[n_test++] = 1.0f;
        }
    }
    out->held_events = n_test;
    if ((rc = csr_from_triplets(nu, ni, rows, cols, vals, n_test, &test, e)) ||
        (rc = csr_transpose(&train, &train_t, e)))
        goto out;
    if ((rc = als_train(&train, als, &f, e))) goto out;
    /* The mapping learns from the rows that trained: items with training
     * interactions, or every member not held out. */
    for (uint32_t i = 0; i < n_side; i++)
        use[i] = !cold[i] && (users || train_t.indptr[i + 1] > train_t.indptr[i]);
    if ((rc = attrmap_fit(lp, li, n_side, n_labels, users ? f.user_factors : f.item_factors, k, use,
                          0.0f, seed, &out->map, e)))
        goto out;
    if (!(cand = malloc(((size_t)ni + 1) * sizeof *cand)) ||
        !(rel = malloc(((size_t)ni + 1) * sizeof *rel)))
        goto nomem;
    out->rows[0].name = "attribute-map";
    out->rows[1].name = "random";
    if (!users) {
        /* Candidates: the cold items; their vectors from the mapping. */
        out->n_rows = 3;
        out->rows[2].name = "content-profile";
        if (!(ivec = malloc((size_t)ni * k * sizeof *ivec)) ||
            !(prof = malloc(((size_t)n_labels + 1) * sizeof *prof)))
            goto nomem;
        uint32_t n_cand = 0;
        for (uint32_t i = 0; i < ni; i++)
            if (cold[i]) {
                cand[n_cand++] = i;
                mf_label_vector(out->map.map, n_labels, k, li + lp[i],
                                (uint32_t)(lp[i + 1] - lp[i]), ivec + (size_t)i * k);
            }
        out->candidates = n_cand;
        for (uint32_t u = 0; u < nu; u++) {
            uint32_t n_rel = 0;
            for (uint64_t p = test.indptr[u]; p < test.indptr[u + 1]; p++)
                rel[n_rel++] = test.indices[p];
            if (n_rel == 0 || train.indptr[u + 1] == train.indptr[u]) continue;
            out->users++;
            const float *xu = f.user_factors + (size_t)u * k;
            for (uint32_t c = 0; c < n_cand; c++) {
                const float *y = ivec + (size_t)cand[c] * k;
                double d = 0;
                for (uint32_t j = 0; j < k; j++)
                    d += (double)xu[j] * y[j];
                scores[cand[c]] = (float)d;
            }
            score_user(&out->rows[0], scores, cand, n_cand, rel, n_rel, ks);
            for (uint32_t c = 0; c < n_cand; c++)
                scores[cand[c]] = (float)(mix(seed ^ ((uint64_t)u << 32 | cand[c])) >> 40);
            score_user(&out->rows[1], scores, cand, n_cand, rel, n_rel, ks);
            /* The profile: sum of the training items' label vectors. */
            memset(prof, 0, ((size_t)n_labels + 1) * sizeof *prof);
            for (uint64_t p = train.indptr[u]; p < train.indptr[u + 1]; p++) {
                uint32_t j = train.indices[p];
                uint64_t a = lp[j], b = lp[j + 1];
                for (uint64_t q = a; q < b; q++)
                    prof[li[q]] += 1.0f / sqrtf((float)(b - a));
            }
            for (uint32_t c = 0; c < n_cand; c++) {
                uint32_t i = cand[c];
                uint64_t a = lp[i], b = lp[i + 1];
                double d = 0;
                for (uint64_t q = a; q < b; q++)
                    d += prof[li[q]];
                /* Cosine up to the profile's norm, the same for every item. */
                scores[i] = b > a ? (float)(d / sqrt((double)(b - a))) : 0.0f;
            }
            score_user(&out->rows[2], scores, cand, n_cand, rel, n_rel, ks);
        }
    } else {
        /* Candidates: every item; the member's vector from their labels. */
        out->n_rows = 4;
        out->rows[2].name = "popular";
        out->rows[3].name = "same-attribute-popular";
        if (!(pop = calloc((size_t)ni + 1, sizeof *pop)) ||
            !(labpop = calloc(((size_t)n_labels + 1) * ni, sizeof *labpop)) ||
            !(labn = calloc((size_t)n_labels + 1, sizeof *labn)))
            goto nomem;
        for (uint32_t i = 0; i < ni; i++) {
            cand[i] = i;
            pop[i] = (float)(train_t.indptr[i + 1] - train_t.indptr[i]);
        }
        out->candidates = ni;
        for (uint32_t u = 0; u < nu; u++) {
            if (cold[u]) continue;
            for (uint64_t q = lp[u]; q < lp[u + 1]; q++) {
                labn[li[q]] += 1.0f;
                for (uint64_t p = train.indptr[u]; p < train.indptr[u + 1]; p++)
                    labpop[(size_t)li[q] * ni + train.indices[p]] += 1.0f;
            }
        }
        for (uint32_t u = 0; u < nu; u++) {
            if (!cold[u]) continue;
            uint32_t n_rel = 0;
            for (uint64_t p = test.indptr[u]; p < test.indptr[u + 1]; p++)
                rel[n_rel++] = test.indices[p];
            if (n_rel == 0) continue;
            out->users++;
            mf_label_vector(out->map.map, n_labels, k, li + lp[u], (uint32_t)(lp[u + 1] - lp[u]),
                            vec);
            for (uint32_t i = 0; i < ni; i++) {
                const float *y = f.item_factors + (size_t)i * k;
                double d = 0;
                for (uint32_t j = 0; j < k; j++)
                    d += (double)vec[j] * y[j];
                scores[i] = (float)d;
            }
            score_user(&out->rows[0], scores, cand, ni, rel, n_rel, ks);
            for (uint32_t i = 0; i < ni; i++)
                scores[i] = (float)(mix(seed ^ ((uint64_t)u << 32 | i)) >> 40);
            score_user(&out->rows[1], scores, cand, ni, rel, n_rel, ks);
            score_user(&out->rows[2], pop, cand, ni, rel, n_rel, ks);
            for (uint32_t i = 0; i < ni; i++)
                scores[i] = 0.0f;
            for (uint64_t q = lp[u]; q < lp[u + 1]; q++) {
                uint32_t l = li[q];
                if (labn[l] == 0) continue;
                for (uint32_t i = 0; i < ni; i++)
                    scores[i] += labpop[(size_t)l * ni + i] / labn[l];
            }
            score_user(&out->rows[3], scores, cand, ni, rel, n_rel, ks);
        }
    }
    if (out->users == 0) {
        rc = err_set(e, ERR_INVALID, "coldeval: nobody to evaluate");
        goto out;
    }
    for (uint32_t m = 0; m < out->n_rows; m++)
        for (uint32_t q = 0; q < ks->n_ks; q++) {
            out->rows[m].ndcg[q] /= out->users;
            out->rows[m].hr[q] /= out->users;
            out->rows[m].recall[q] /= out->users;
        }
    goto out;
nomem:
    rc = err_set(e, ERR_NOMEM, "coldeval: out of memory");
out:
    free(out->map.map);
    out->map.map = NULL;
    free(lp);
    free(li);
    free(rows);
    free(cols);
    free(vals);
    free(cold);
    free(use);
    free(scores);
    free(vec);
    free(ivec);
    free(prof);
    free(labpop);
    free(pop);
    free(labn);
    free(cand);
    free(rel);
    csr_free(&train);
    csr_free(&test);
    csr_free(&train_t);
    als_factors_free(&f);
    return rc;
}
