#include "catalog.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idstate.h"
#include "labels.h"
#include "utf8.h"

/* The stored state of one item: boost (f32, native order) then available. */
enum { STATE_BYTES = 5 };

struct catalog {
    idstate *items;         /* the rules */
    idstate *descs;         /* the descriptions, of any size */
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

static void fill_one(void *ctx, const char *id, size_t len, const void *value, size_t value_len) {
    (void)value_len; /* the store's fixed size */
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

float catalog_multiplier(catalog *c, const char *item, size_t len) {
    unsigned char v[STATE_BYTES];
    float boost;
    bool available;
    if (idstate_get(c->items, item, len, v) != ERR_OK) return 1.0f;
    state_unpack(v, &boost, &available);
    return available ? boost : 0.0f;
}

/* The rules as catalog_rules gathers them: pass 0 counts (n, bytes of
 * ids), pass 1 fills rules and the ids at `at`. */
typedef struct rules_fill {
    int pass;
    size_t n, bytes;
    catalog_rule *rules;
    char *at;
} rules_fill;

static void rules_one(void *ctx, const char *id, size_t len, const void *value, size_t value_len) {
    (void)value_len; /* the store's fixed size */
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
    return idstate_generation(c->items) + idstate_generation(c->descs);
}

/* --- descriptions ----------------------------------------------------------- */

/* A description as stored: u8 categories, u8 labels, f64 price, i64
 * published (native order: the store is local), then the title, the
 * categories and the labels, each NUL-terminated. */
enum { DESC_HEAD = 2 + 8 + 8 };

/* Why a category or label cannot be stored (a static text), or NULL; *len
 * gets its length. */
static const char *label_problem(const char *s, size_t *len) {
    size_t n = *len = strlen(s);
    return n == 0                  ? "is empty"
           : n > CATALOG_MAX_LABEL ? "is too long"
           : !utf8_valid(s, n)     ? "is not valid UTF-8"
                                   : NULL;
}

const char *catalog_item_problem(const catalog_item *it, char buf[static CATALOG_REASON]) {
    size_t n = strlen(it->id);
    if (n == 0) return "item_id is empty";
    if (n > LABELS_MAX_ID_LEN) return "item_id is longer than 256 bytes";
    if (!utf8_valid(it->id, n)) return "item_id is not valid UTF-8";
    if (it->n_categories > CATALOG_MAX_CATEGORIES) {
        snprintf(buf, CATALOG_REASON, "%zu categories, more than %d", it->n_categories,
                 CATALOG_MAX_CATEGORIES);
        return buf;
    }
    if (it->n_labels > CATALOG_MAX_LABELS) {
        snprintf(buf, CATALOG_REASON, "%zu labels, more than %d", it->n_labels, CATALOG_MAX_LABELS);
        return buf;
    }
    const char *what = NULL, *why = NULL;
    size_t at = 0;
    for (size_t i = 0; !why && i < it->n_categories; i++)
        if ((why = label_problem(it->categories[i], &n))) what = "categories", at = i;
    for (size_t i = 0; !why && i < it->n_labels; i++)
        if ((why = label_problem(it->labels[i], &n))) what = "labels", at = i;
    if (why) {
        snprintf(buf, CATALOG_REASON, "%s[%zu] %s (%zu bytes, at most %d)", what, at, why, n,
                 CATALOG_MAX_LABEL);
        return buf;
    }
    n = strlen(it->title);
    if (n > CATALOG_MAX_TITLE) return "title is longer than 1024 bytes";
    if (!utf8_valid(it->title, n)) return "title is not valid UTF-8";
    if (!(it->price >= 0 && isfinite(it->price))) return "price must be a finite number >= 0";
    if (it->published < 0) return "published_unix is negative";
    return NULL;
}

static unsigned char *desc_put(unsigned char *at, const char *s) {
    size_t n = strlen(s) + 1;
    memcpy(at, s, n);
    return at + n;
}

int catalog_upsert(catalog *c, const catalog_item *items, size_t n, uint64_t at, err_t *e) {
    char reason[CATALOG_REASON];
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const char *why = catalog_item_problem(&items[i], reason);
        if (why) return err_set(e, ERR_INVALID, "items[%zu]: %s", i, why);
        const catalog_item *it = &items[i];
        bytes += DESC_HEAD + strlen(it->title) + 1;
        for (size_t k = 0; k < it->n_categories; k++)
            bytes += strlen(it->categories[k]) + 1;
        for (size_t k = 0; k < it->n_labels; k++)
            bytes += strlen(it->labels[k]) + 1;
    }
    unsigned char *buf = malloc(bytes ? bytes : 1);
    idstate_kv *kv = malloc((n ? n : 1) * sizeof *kv);
    if (!buf || !kv) {
        free(buf);
        free(kv);
        return err_set(e, ERR_NOMEM, "catalog: out of memory for %zu items", n);
    }
    unsigned char *w = buf;
    for (size_t i = 0; i < n; i++) {
        const catalog_item *it = &items[i];
        unsigned char *start = w;
        w[0] = (unsigned char)it->n_categories;
        w[1] = (unsigned char)it->n_labels;
        memcpy(w + 2, &it->price, 8);
        memcpy(w + 10, &it->published, 8);
        w = desc_put(w + DESC_HEAD, it->title);
        for (size_t k = 0; k < it->n_categories; k++)
            w = desc_put(w, it->categories[k]);
        for (size_t k = 0; k < it->n_labels; k++)
            w = desc_put(w, it->labels[k]);
        kv[i] = (idstate_kv){it->id, strlen(it->id), start, (size_t)(w - start)};
    }
    int rc = idstate_put_many(c->descs, kv, n, at, e);
    free(buf);
    free(kv);
    return rc;
}

typedef struct desc_each {
    void (*fn)(void *ctx, const catalog_item *it);
    void *ctx;
} desc_each;

/* Splits a stored description into its NUL-terminated strings; one that
 * does not parse (never written by catalog_upsert) is passed over. */
static void desc_one(void *ctx, const char *id, size_t len, const void *value, size_t value_len) {
    desc_each *d = ctx;
    const unsigned char *v = value, *end = v + value_len;
    if (value_len < DESC_HEAD || len > LABELS_MAX_ID_LEN) return;
    char idz[LABELS_MAX_ID_LEN + 1];
    memcpy(idz, id, len);
    idz[len] = '\0';
    char *strings[1 + CATALOG_MAX_CATEGORIES + CATALOG_MAX_LABELS];
    size_t n_cat = v[0], n_lab = v[1], want = 1 + n_cat + n_lab;
    if (n_cat > CATALOG_MAX_CATEGORIES || n_lab > CATALOG_MAX_LABELS) return;
    catalog_item it = {.id = idz, .n_categories = n_cat, .n_labels = n_lab};
    memcpy(&it.price, v + 2, 8);
    memcpy(&it.published, v + 10, 8);
    const unsigned char *at = v + DESC_HEAD;
    for (size_t k = 0; k < want; k++) {
        const unsigned char *nul = memchr(at, '\0', (size_t)(end - at));
        if (!nul) return;
        strings[k] = (char *)at;
        at = nul + 1;
    }
    it.title = strings[0];
    it.categories = strings + 1;
    it.labels = strings + 1 + n_cat;
    d->fn(d->ctx, &it);
}

void catalog_each_item(catalog *c, void (*fn)(void *ctx, const catalog_item *it), void *ctx) {
    desc_each d = {fn, ctx};
    idstate_each(c->descs, desc_one, &d);
}

uint64_t catalog_items_applied(catalog *c) {
    return idstate_applied(c->descs);
}

/* --- lifecycle ------------------------------------------------------------- */

int catalog_open(const char *dir, const char *items_dir, catalog **out, err_t *e) {
    catalog *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, ERR_NOMEM, "catalog: out of memory");
    int rc = idstate_open(dir, STATE_BYTES, &c->items, e);
    if (!rc) rc = idstate_open(dir ? items_dir : NULL, 0, &c->descs, e);
    if (rc) {
        idstate_close(c->items);
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
    idstate_close(c->descs);
    pthread_mutex_destroy(&c->update);
    free(c);
}
