/* core_shopper: who a request is for. The shopper's model user, their
 * events since the model's data and the request's context items become the
 * signals of a fold-in (the same solve as training, with the items fixed),
 * or the stored vector when there is nothing fresh. Also the per-thread
 * score buffers the ranked operations reuse. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core_int.h"

/* --- per-thread buffers ---------------------------------------------------- */

/* One float per item, reused across requests so the hot path does not
 * allocate a catalogue-sized array each time; freed by the key's destructor
 * when the worker thread exits. */
typedef struct score_buffer {
    float *scores;
    size_t cap;
} score_buffer;

static pthread_key_t score_key;
static pthread_once_t score_key_once = PTHREAD_ONCE_INIT;

static void score_buffer_free(void *p) {
    score_buffer *b = p;
    free(b->scores);
    free(b);
}

static void score_key_create(void) {
    pthread_key_create(&score_key, score_buffer_free);
}

float *core__scores_buffer(size_t n) {
    pthread_once(&score_key_once, score_key_create);
    score_buffer *b = pthread_getspecific(score_key);
    if (!b) {
        if (!(b = calloc(1, sizeof *b))) return NULL;
        pthread_setspecific(score_key, b);
    }
    if (n > b->cap) {
        free(b->scores);
        b->scores = malloc((n ? n : 1) * sizeof *b->scores);
        b->cap = b->scores ? n : 0;
    }
    return b->scores;
}

/* --- the shopper ----------------------------------------------------------- */

void core__shopper_free(core__shopper *sh) {
    free(sh->signals);
    free(sh->bought);
    free(sh->bought_ts);
    free(sh->new_bought);
}

static void shopper_signal(core__shopper *sh, uint32_t item, float weight) {
    if (sh->n_signals == sh->cap_signals) {
        size_t cap = sh->cap_signals ? sh->cap_signals * 2 : 16;
        score_signal *s = realloc(sh->signals, cap * sizeof *s);
        if (!s) {
            sh->failed = 1;
            return;
        }
        sh->signals = s;
        sh->cap_signals = cap;
    }
    sh->signals[sh->n_signals++] = (score_signal){item, weight};
}

static void shopper_bought(core__shopper *sh, uint32_t item, int64_t ts) {
    if (sh->n_bought == sh->cap_bought) {
        size_t cap = sh->cap_bought ? sh->cap_bought * 2 : 16;
        uint32_t *b = realloc(sh->bought, cap * sizeof *b);
        if (b) sh->bought = b;
        int64_t *t = b ? realloc(sh->bought_ts, cap * sizeof *t) : NULL;
        if (!b || !t) {
            sh->failed = 1;
            return;
        }
        sh->bought_ts = t;
        sh->cap_bought = cap;
    }
    sh->bought_ts[sh->n_bought] = ts;
    sh->bought[sh->n_bought++] = item;
}

/* Notes the purchase of an upserted item the model does not know. */
static void shopper_new_bought(core__shopper *sh, const evstore_event *ev) {
    uint32_t j;
    if (!sh->up || !sh->up->new_index ||
        idmap_find(sh->up->new_index, ev->item_id, ev->item_len, &j) != ERR_OK)
        return;
    if (sh->n_new_bought == sh->cap_new_bought) {
        size_t cap = sh->cap_new_bought ? sh->cap_new_bought * 2 : 8;
        uint32_t *b = realloc(sh->new_bought, cap * sizeof *b);
        if (!b) {
            sh->failed = 1;
            return;
        }
        sh->new_bought = b;
        sh->cap_new_bought = cap;
    }
    sh->new_bought[sh->n_new_bought++] = model_info(sh->m)->n_items + j;
}

/* evstore visitor: turns a recorded event of an item the model knows into a
 * signal (items it does not know cannot be folded in until the next
 * training; an upserted one bought is noted so as not to be offered back). */
static int shopper_visit(void *ctx, uint64_t seq, const evstore_event *ev) {
    (void)seq;
    core__shopper *sh = ctx;
    uint32_t item;
    if (model_item_index(sh->m, ev->item_id, ev->item_len, &item) != ERR_OK) {
        if (ev->type == EV_TYPE_PURCHASE) shopper_new_bought(sh, ev);
        return sh->failed;
    }
    float w = sh->weights[ev->type];
    if (w > 0) shopper_signal(sh, item, w);
    if (ev->type == EV_TYPE_PURCHASE) shopper_bought(sh, item, ev->ts);
    return sh->failed;
}

int core__shopper_collect(core *c, const model *m, const core__upserts *up, const char *user_id,
                          char *const *context, size_t n_context, core__shopper *sh, err_t *e) {
    memset(sh, 0, sizeof *sh);
    sh->m = m;
    sh->up = up;
    sh->weights = c->weights;
    sh->user = SCORE_NO_USER;
    if (user_id[0]) {
        uint32_t u;
        if (model_user_index(m, user_id, strlen(user_id), &u) == ERR_OK) sh->user = u;
        err_t why;
        int capped = 0;
        if (c->events &&
            evstore_user_recent(c->events, user_id, strlen(user_id), model_info(m)->data_until,
                                CORE_MAX_FOLD_EVENTS, shopper_visit, sh, &capped, &why))
            return err_set(e, why.code, "cannot read the user's events: %s", why.msg);
        if (capped) atomic_fetch_add(&c->fold_ins_capped, 1);
    }
    for (size_t i = 0; i < n_context; i++) {
        uint32_t item;
        if (model_item_index(m, context[i], strlen(context[i]), &item) == ERR_OK)
            shopper_signal(sh, item, c->weights[EV_TYPE_ADD_TO_CART]);
    }
    if (sh->failed) return err_set(e, ERR_NOMEM, "out of memory reading the user's events");
    return ERR_OK;
}

int core__shopper_vector(const core__model *sm, const core__shopper *sh, int anonymous, float *x,
                         core_strategy *strategy, err_t *e) {
    const model_meta *meta = model_info(sm->m);
    *strategy = CORE_POPULAR;
    if (isinf(meta->popularity_blend)) return ERR_OK;
    if (sh->n_signals > 0) {
        err_t why;
        if (score_fold_in(sm->m, sm->yty, sh->user, sh->signals, sh->n_signals, x, &why))
            return err_set(e, why.code, "fold-in failed: %s", why.msg);
    } else if (sh->user == SCORE_NO_USER) {
        return ERR_OK;
    } else {
        memcpy(x, model_user_factors(sm->m) + (size_t)sh->user * meta->factors,
               meta->factors * sizeof *x);
    }
    *strategy = anonymous ? CORE_SESSION : CORE_PERSONALIZED;
    return ERR_OK;
}

int core__item_scores(const model *m, const core__shopper *sh, const float *x, float **out,
                      err_t *e) {
    uint32_t n = model_info(m)->n_items;
    float *s = malloc(((size_t)n + 1) * sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory scoring %u items", n);
    err_t why;
    if (score_item_rows(m, sh->user, sh->signals, sh->n_signals, x, s, &why)) {
        free(s);
        return err_set(e, why.code, "item-item scoring failed: %s", why.msg);
    }
    *out = s;
    return ERR_OK;
}
