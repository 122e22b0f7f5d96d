#include "catalog.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "idstate.h"

/* The stored state of one item: boost (f32, native order) then available. */
enum { STATE_BYTES = 5 };

struct catalog {
    idstate *items;
    pthread_mutex_t update; /* one read-modify-write of an item's state at a time */
};

static void state_unpack(const unsigned char *v, float *boost, bool *available) {
    memcpy(boost, v, sizeof *boost);
    *available = v[4] != 0;
}

static int catalog_update(catalog *c, const char *item, size_t len, int set_available,
                          bool available, float boost, uint64_t at, err_t *e) {
    unsigned char v[STATE_BYTES];
    float old_boost = 1.0f;
    bool old_available = true;
    pthread_mutex_lock(&c->update);
    if (idstate_get(c->items, item, len, v) == ERR_OK) state_unpack(v, &old_boost, &old_available);
    if (set_available)
        old_available = available;
    else
        old_boost = boost;
    memcpy(v, &old_boost, sizeof old_boost);
    v[4] = old_available;
    int rc =
        at ? idstate_put_at(c->items, item, len, v, at, e) : idstate_put(c->items, item, len, v, e);
    pthread_mutex_unlock(&c->update);
    return rc;
}

int catalog_set_available_at(catalog *c, const char *item, size_t len, bool available, uint64_t at,
                             err_t *e) {
    return catalog_update(c, item, len, 1, available, 0, at, e);
}

int catalog_set_boost_at(catalog *c, const char *item, size_t len, float multiplier, uint64_t at,
                         err_t *e) {
    if (!(multiplier > 0 && multiplier <= CATALOG_MAX_BOOST))
        return err_set(e, ERR_INVALID, "boost multiplier must be in (0, %g], got %g",
                       CATALOG_MAX_BOOST, multiplier);
    return catalog_update(c, item, len, 0, true, multiplier, at, e);
}

int catalog_set_available(catalog *c, const char *item, size_t len, bool available, err_t *e) {
    return catalog_set_available_at(c, item, len, available, 0, e);
}

int catalog_set_boost(catalog *c, const char *item, size_t len, float multiplier, err_t *e) {
    return catalog_set_boost_at(c, item, len, multiplier, 0, e);
}

uint64_t catalog_applied(catalog *c) {
    return idstate_applied(c->items);
}

typedef struct multiplier_fill {
    const model *m;
    float *mult;
    bool any;
} multiplier_fill;

static void fill_one(void *ctx, const char *id, size_t len, const void *value) {
    multiplier_fill *f = ctx;
    float boost;
    bool available;
    state_unpack(value, &boost, &available);
    uint32_t item;
    if ((available && boost == 1.0f) || model_item_index(f->m, id, len, &item) != ERR_OK) return;
    f->mult[item] = available ? boost : 0.0f;
    f->any = true;
}

bool catalog_multipliers(catalog *c, const model *m, float *mult) {
    uint32_t n = model_info(m)->n_items;
    for (uint32_t i = 0; i < n; i++)
        mult[i] = 1.0f;
    multiplier_fill f = {m, mult, false};
    idstate_each(c->items, fill_one, &f);
    return f.any;
}

/* The rules as catalog_rules gathers them: pass 0 counts (n, bytes of
 * ids), pass 1 fills rules and the ids at `at`. */
typedef struct rules_fill {
    int pass;
    size_t n, bytes;
    catalog_rule *rules;
    char *at;
} rules_fill;

static void rules_one(void *ctx, const char *id, size_t len, const void *value) {
    rules_fill *f = ctx;
    float boost;
    bool available;
    state_unpack(value, &boost, &available);
    if (available && boost == 1.0f) return;
    if (f->pass == 0) {
        f->n++;
        f->bytes += len + 1;
        return;
    }
    memcpy(f->at, id, len);
    f->at[len] = '\0';
    f->rules[f->n++] = (catalog_rule){f->at, available ? boost : 1.0f, available};
    f->at += len + 1;
}

static int rule_cmp(const void *a, const void *b) {
    const catalog_rule *x = a, *y = b;
    if (x->available != y->available) return x->available ? 1 : -1;
    return strcmp(x->id, y->id);
}

int catalog_rules(catalog *c, catalog_rule **out, size_t *n, err_t *e) {
    /* Counted, then filled, under one hold of the update lock: no rule is
     * added in between (idstate_each takes the store's own lock each time). */
    pthread_mutex_lock(&c->update);
    rules_fill f = {.pass = 0};
    idstate_each(c->items, rules_one, &f);
    catalog_rule *rules = malloc(f.n * sizeof *rules + f.bytes + 1);
    if (!rules) {
        pthread_mutex_unlock(&c->update);
        return err_set(e, ERR_NOMEM, "catalog: out of memory listing %zu rules", f.n);
    }
    f = (rules_fill){.pass = 1, .rules = rules, .at = (char *)(rules + f.n)};
    idstate_each(c->items, rules_one, &f);
    pthread_mutex_unlock(&c->update);
    qsort(rules, f.n, sizeof *rules, rule_cmp);
    *out = rules;
    *n = f.n;
    return ERR_OK;
}

unsigned long catalog_generation(catalog *c) {
    return idstate_generation(c->items);
}

int catalog_open(const char *dir, catalog **out, err_t *e) {
    catalog *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, ERR_NOMEM, "catalog: out of memory");
    int rc = idstate_open(dir, STATE_BYTES, &c->items, e);
    if (rc) {
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->update, NULL);
    *out = c;
    return ERR_OK;
}

void catalog_close(catalog *c) {
    if (!c) return;
    idstate_close(c->items);
    pthread_mutex_destroy(&c->update);
    free(c);
}
