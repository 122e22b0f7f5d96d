#include "famtune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune.h"

void famtune_describe(const famtune_choice *c, char *out, size_t size) {
    char pop[48] = "";
    if (isinf(c->popularity_blend))
        snprintf(pop, sizeof pop, ", popularity only");
    else if (c->popularity_blend > 0)
        snprintf(pop, sizeof pop, ", popularity blend %.3g", (double)c->popularity_blend);
    const itemsim_params *p[2] = {&c->item, &c->with};
    char part[2][64];
    for (int i = 0; i < 2; i++) {
        switch (p[i]->algorithm) {
        case ITEMSIM_EASE:
            snprintf(part[i], sizeof part[i], "lambda %.4g", (double)p[i]->lambda);
            break;
        case ITEMSIM_KNN:
            snprintf(part[i], sizeof part[i], "k %u", p[i]->neighbors);
            break;
        case ITEMSIM_RP3BETA:
            snprintf(part[i], sizeof part[i], "alpha %.3g beta %.3g", (double)p[i]->rp3_alpha,
                     (double)p[i]->rp3_beta);
            break;
        default:
            snprintf(part[i], sizeof part[i], "the tuned factors");
        }
    }
    if (c->share > 0)
        snprintf(
            out, size, "%s+%s (%s; %s; share %.2g%s)", itemsim_algorithm_name(c->item.algorithm),
            itemsim_algorithm_name(c->with.algorithm), part[0], part[1], (double)c->share, pop);
    else
        snprintf(out, size, "%s (%s%s)", itemsim_algorithm_name(c->item.algorithm), part[0], pop);
}

/* The scale of one family's scores (itemsim_score_scale): rows, or the
 * factors when r is NULL. */
static int scale_of(const csr *train, const itemsim_model *r, const eval_mf *mf, double *s,
                    err_t *e) {
    itemsim_eval ie = {.rows = {.n_items = train->n_cols}, .als = mf, .als_weight = 1.0f};
    if (r) ie = (itemsim_eval){.rows = itemsim_rows(r), .rows_weight = 1.0f};
    return itemsim_score_scale(&ie, train, s, e);
}

/* Builds c's recommender on train into *ie, fitting its item rows into
 * *rows (caller frees). */
static int build(const famtune_choice *c, const csr *train, const eval_mf *mf,
                 const eval_popular *pop, uint32_t threads, itemsim_model *rows, itemsim_eval *ie,
                 err_t *e) {
    itemsim_params ip = c->item;
    ip.threads = threads;
    int rc = itemsim_fit(train, &ip, rows, e);
    if (rc) return rc;
    *ie = (itemsim_eval){.rows = itemsim_rows(rows),
                         .rows_weight = 1.0f,
                         .blend = c->popularity_blend,
                         .fallback = pop};
    if (!(c->share > 0)) return ERR_OK;
    double sa, sb;
    if ((rc = scale_of(train, rows, mf, &sa, e))) return rc;
    if (c->with.algorithm == ITEMSIM_ALS) {
        if ((rc = scale_of(train, NULL, mf, &sb, e))) return rc;
        ie->rows_weight = (float)((1.0 - c->share) / sa);
        ie->als = mf;
        ie->als_weight = (float)(c->share / sb);
        return ERR_OK;
    }
    itemsim_params wp = c->with;
    wp.threads = threads;
    itemsim_model b, merged;
    if ((rc = itemsim_fit(train, &wp, &b, e))) return rc;
    if (!(rc = scale_of(train, &b, mf, &sb, e)) &&
        !(rc = itemsim_blend(rows, (float)((1.0 - c->share) / sa), &b, (float)(c->share / sb),
                             &merged, e))) {
        itemsim_free(rows);
        *rows = merged;
        ie->rows = itemsim_rows(rows);
    }
    itemsim_free(&b);
    return rc;
}

int famtune_measure(const famtune_choice *c, const csr *train, const csr *valid,
                    const als_factors *als, const eval_popular *pop, const eval_config *ec,
                    uint32_t threads, eval_metrics *m, err_t *e) {
    eval_mf mf = {.user_factors = als->user_factors,
                  .item_factors = als->item_factors,
                  .factors = als->factors,
                  .n_items = als->n_items,
                  .fallback = pop,
                  .blend = c->popularity_blend};
    eval_config cfg = *ec;
    cfg.item_factors = als->item_factors;
    cfg.factors = als->factors;
    if (c->item.algorithm == ITEMSIM_ALS) {
        int rc = eval_ranking(eval_mf_recommend, &mf, train, valid, &cfg, m, NULL, e);
        if (!rc && mf.failed) rc = err_set(e, ERR_NOMEM, "famtune: out of memory scoring");
        return rc;
    }
    mf.blend = 0.0f;
    itemsim_model rows = {0};
    itemsim_eval ie;
    int rc = build(c, train, &mf, pop, threads, &rows, &ie, e);
    if (!rc) rc = eval_ranking(itemsim_recommend, &ie, train, valid, &cfg, m, NULL, e);
    if (!rc && ie.failed) rc = err_set(e, ERR_NOMEM, "famtune: out of memory scoring");
    itemsim_free(&rows);
    return rc;
}

/* Measures c on validation, logs it and fills c->ndcg. */
static int try_choice(const famtune_input *in, famtune_result *r, famtune_choice *c, err_t *e) {
    eval_metrics m[EVAL_MAX_KS];
    int rc = famtune_measure(c, in->train, in->valid, in->als, in->pop, &in->ec, in->threads, m, e);
    if (rc) return rc;
    c->ndcg = m[in->qk].ndcg;
    r->candidates++;
    if (in->log) {
        char d[256];
        famtune_describe(c, d, sizeof d);
        fprintf(in->log, "tune: family %-60s NDCG@%u %.4f\n", d, in->ec.ks[in->qk], c->ndcg);
    }
    return ERR_OK;
}

int famtune_run(const famtune_input *in, famtune_result *r, err_t *e) {
    memset(r, 0, sizeof *r);
    int rc;
    famtune_choice base;
    memset(&base, 0, sizeof base);
    itemsim_params_init(&base.item);
    itemsim_params_init(&base.with);
    for (int a = 0; a < ITEMSIM_N_ALGORITHMS; a++)
        r->best[a].ndcg = -1;
    r->best[ITEMSIM_ALS] = base;
    r->best[ITEMSIM_ALS].item.algorithm = ITEMSIM_ALS;
    r->best[ITEMSIM_ALS].popularity_blend = in->als_blend;
    r->best[ITEMSIM_ALS].ndcg = in->als_ndcg;
    double users_per_item = in->train->n_cols ? (double)csr_nnz(in->train) / in->train->n_cols : 1;
    if (!(users_per_item > 0)) users_per_item = 1;
    /* Powers of sqrt(2) from 1/4 to 16: a lambda matters by its ratio. */
    static const double ease_grid[] = {0.25, 0.354, 0.5,  0.707, 1,    1.41, 2,
                                       2.83, 4,     5.66, 8,     11.3, 16};
    static const uint32_t knn_grid[] = {5, 10, 20, 50, 100, 200};
    static const float rp3_alpha[] = {0.5f, 1.0f}, rp3_beta[] = {0.0f, 0.25f, 0.5f, 0.75f};
    /* Each family alone. EASE only where its rows fit dense by default:
     * above, its solve alone would take n^2 floats per candidate. */
    size_t n_ease =
        in->train->n_cols <= base.item.max_dense_items ? sizeof ease_grid / sizeof *ease_grid : 0;
    if (!n_ease && in->log)
        fprintf(in->log, "tune: family ease skipped: %u items are above %u (--max-dense-items)\n",
                in->train->n_cols, base.item.max_dense_items);
    for (size_t g = 0; g < n_ease; g++) {
        famtune_choice c = base;
        c.item.algorithm = ITEMSIM_EASE;
        c.item.lambda = (float)(users_per_item * ease_grid[g]);
        if ((rc = try_choice(in, r, &c, e))) return rc;
        if (c.ndcg > r->best[ITEMSIM_EASE].ndcg) r->best[ITEMSIM_EASE] = c;
    }
    for (size_t g = 0; g < sizeof knn_grid / sizeof *knn_grid; g++) {
        famtune_choice c = base;
        c.item.algorithm = ITEMSIM_KNN;
        c.item.neighbors = knn_grid[g];
        if ((rc = try_choice(in, r, &c, e))) return rc;
        if (c.ndcg > r->best[ITEMSIM_KNN].ndcg) r->best[ITEMSIM_KNN] = c;
    }
    for (size_t ga = 0; ga < 2; ga++)
        for (size_t gb = 0; gb < 4; gb++) {
            famtune_choice c = base;
            c.item.algorithm = ITEMSIM_RP3BETA;
            c.item.rp3_alpha = rp3_alpha[ga];
            c.item.rp3_beta = rp3_beta[gb];
            if ((rc = try_choice(in, r, &c, e))) return rc;
            if (c.ndcg > r->best[ITEMSIM_RP3BETA].ndcg) r->best[ITEMSIM_RP3BETA] = c;
        }
    /* The best item-item family, blended with each other family's best. */
    int first = ITEMSIM_KNN;
    for (int a = ITEMSIM_EASE; a < ITEMSIM_N_ALGORITHMS; a++)
        if (r->best[a].ndcg > r->best[first].ndcg) first = a;
    famtune_choice item_winner = r->best[first];
    r->blend.ndcg = -1;
    static const float shares[] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.7f};
    for (int b = 0; b < ITEMSIM_N_ALGORITHMS; b++) {
        if (b == first || r->best[b].ndcg < 0 || (b == ITEMSIM_ALS && isinf(in->als_blend)))
            continue;
        for (size_t s = 0; s < sizeof shares / sizeof *shares; s++) {
            famtune_choice c = r->best[first];
            c.with = r->best[b].item;
            c.share = shares[s];
            c.popularity_blend = 0;
            if ((rc = try_choice(in, r, &c, e))) return rc;
            if (c.ndcg > r->blend.ndcg) r->blend = c;
        }
    }
    if (r->blend.ndcg > item_winner.ndcg) item_winner = r->blend;
    /* The popularity blend of the item-item winner, at its score scale. */
    eval_mf mf = {.user_factors = in->als->user_factors,
                  .item_factors = in->als->item_factors,
                  .factors = in->als->factors,
                  .n_items = in->als->n_items};
    itemsim_model rows = {0};
    itemsim_eval ie;
    double scale = 1;
    famtune_choice plain = item_winner;
    plain.popularity_blend = 0;
    if ((rc = build(&plain, in->train, &mf, in->pop, in->threads, &rows, &ie, e))) {
        itemsim_free(&rows);
        return rc;
    }
    ie.blend = 0;
    rc = itemsim_score_scale(&ie, in->train, &scale, e);
    itemsim_free(&rows);
    if (rc) return rc;
    float w[TUNE_BLEND_STEPS];
    tune_blend_grid(scale, w);
    famtune_choice best_pop = item_winner;
    for (uint32_t i = 0; i < TUNE_BLEND_STEPS; i++) {
        famtune_choice c = plain;
        c.popularity_blend = w[i];
        if ((rc = try_choice(in, r, &c, e))) return rc;
        if (c.ndcg > best_pop.ndcg) best_pop = c;
    }
    item_winner = best_pop;
    r->winner = item_winner.ndcg > r->best[ITEMSIM_ALS].ndcg ? item_winner : r->best[ITEMSIM_ALS];
    return ERR_OK;
}
