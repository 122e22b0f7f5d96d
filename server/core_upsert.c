/* core_upsert: the items a storefront describes at run time (UpsertItems)
 * and what a served model makes of them - a vector from the labels for an
 * item it has never seen, categories and publication times over its own -
 * and the vector of a visitor from their labels (user_labels). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core_int.h"
#include "labels.h"
#include "mf.h"

/* --- UpsertItems ----------------------------------------------------------- */

int core_upsert_items(core *c, const catalog_item *items, size_t n, core_write_reply *out,
                      char *model_version, err_t *e) {
    memset(out, 0, sizeof *out);
    model_version[0] = '\0';
    int err = core__check_durable(c, "UpsertItems", e);
    if (err) return err;
    if (n > CORE_MAX_LIST)
        return err_set(e, ERR_INVALID, "%zu items, more than %d", n, CORE_MAX_LIST);
    catalog_item *good = malloc((n ? n : 1) * sizeof *good);
    out->rejected = malloc((n ? n : 1) * sizeof *out->rejected);
    if (!good || !out->rejected) {
        free(good);
        core_write_reply_free(out);
        return err_set(e, ERR_NOMEM, "out of memory for %zu items", n);
    }
    size_t n_good = 0;
    for (size_t i = 0; i < n; i++) {
        char buf[CATALOG_REASON];
        const char *why = catalog_item_problem(&items[i], buf);
        if (!why) {
            good[n_good++] = items[i];
            continue;
        }
        core_rejected *r = &out->rejected[out->n_rejected++];
        r->index = (uint32_t)i;
        snprintf(r->reason, sizeof r->reason, "%s", why);
    }
    if (n_good)
        err = c->bus ? core__bus_items(c, good, n_good, e)
                     : catalog_upsert(c->rules, good, n_good, 0, e);
    free(good);
    if (err) {
        core_write_reply_free(out);
        return err;
    }
    out->accepted = (uint32_t)n_good;
    core__model *sm = core__acquire(c);
    memcpy(model_version, model_info(sm->m)->version, MODEL_VERSION_MAX);
    core__release(sm);
    return ERR_OK;
}

/* --- labels to vectors ----------------------------------------------------- */

/* The label indexes of one item or visitor, distinct, as a model knows
 * them. */
typedef struct label_set {
    const model *m;
    model_side side;
    uint32_t idx[CATALOG_MAX_LABELS + CATALOG_MAX_CATEGORIES + LABELS_MAX_WORDS + 1];
    uint32_t n, words;
} label_set;

static void label_add(label_set *s, const char *label, size_t len) {
    uint32_t idx;
    if (s->n == sizeof s->idx / sizeof s->idx[0] ||
        model_label_index(s->m, s->side, label, len, &idx) != ERR_OK)
        return;
    for (uint32_t k = 0; k < s->n; k++)
        if (s->idx[k] == idx) return;
    s->idx[s->n++] = idx;
}

/* One word of a title: "word:w", the first LABELS_MAX_WORDS distinct ones
 * the model knows (training kept the first ones of the row; the words it
 * dropped as rare are unknown here too). */
static void label_word(void *ctx, const char *w, size_t n) {
    label_set *s = ctx;
    char label[LABELS_MAX_LEN];
    if (s->words == LABELS_MAX_WORDS || n + 5 > sizeof label) return;
    memcpy(label, "word:", 5);
    memcpy(label + 5, w, n);
    uint32_t before = s->n;
    label_add(s, label, n + 5);
    s->words += s->n > before;
}

int core__labels_vector(const model *m, char *const *labels, size_t n, float *x) {
    const model_label_map *map = model_label_map_of(m, MODEL_SIDE_USER);
    if (!map) return 0;
    label_set s = {.m = m, .side = MODEL_SIDE_USER};
    for (size_t i = 0; i < n; i++)
        label_add(&s, labels[i], strlen(labels[i]));
    if (s.n == 0) return 0;
    mf_label_vector(map->map, map->n_labels, map->factors, s.idx, s.n, x);
    return (int)s.n;
}

/* The vector of an item the model has never seen, from its description as
 * training would have read it as a catalogue row: its labels, its
 * categories as "<category column>:c", its price band and its title's
 * words. With none that the model knows it is the bias: the mean item. */
static void item_vector(const model *m, const model_label_map *map, const catalog_item *it,
                        float *v) {
    label_set s = {.m = m, .side = MODEL_SIDE_ITEM};
    for (size_t i = 0; i < it->n_labels; i++)
        label_add(&s, it->labels[i], strlen(it->labels[i]));
    const char *column = model_info(m)->item_category_column;
    char label[2 * LABELS_MAX_LEN + 2];
    for (size_t i = 0; column[0] && i < it->n_categories; i++) {
        int len = snprintf(label, sizeof label, "%s:%s", column, it->categories[i]);
        if (len > 0 && (size_t)len < sizeof label) label_add(&s, label, (size_t)len);
    }
    if (it->price > 0) {
        int len = labels_price_band(it->price, label, sizeof label);
        label_add(&s, label, (size_t)len);
    }
    labels_text_words(it->title, strlen(it->title), label_word, &s);
    mf_label_vector(map->map, map->n_labels, map->factors, s.idx, s.n, v);
}

/* --- a model's view of the upserted items ---------------------------------- */

void core__upserts_free(core__upserts *up) {
    free(up->new_ids);
    free(up->new_vectors);
    free(up->new_norms);
    free(up->new_mult);
    free(up->published);
    free(up->row_item);
    free(up->cat_ptr);
    free(up->cat_idx);
    idmap_free(up->cats);
    idmap_free(up->new_index);
    memset(up, 0, sizeof *up);
}

/* The descriptions as read from the catalog, in two passes: count and
 * size, then fill. */
typedef struct upsert_build {
    const model *m;
    const model_label_map *map;
    catalog *rules;
    core__upserts *up;
    uint32_t n_items, factors;
    /* pass 1 */
    size_t n_new, id_bytes, n_rows, n_cats;
    int any_time;
    /* pass 2 */
    char *id_at;
    size_t rows_done, cats_done;
    int failed;
} upsert_build;

static void count_one(void *ctx, const catalog_item *it) {
    upsert_build *b = ctx;
    uint32_t idx;
    int known = model_item_index(b->m, it->id, strlen(it->id), &idx) == ERR_OK;
    if (!known) {
        b->n_new++;
        b->id_bytes += strlen(it->id) + 1;
    }
    if (!known || it->n_categories) {
        b->n_rows++;
        b->n_cats += it->n_categories;
    }
    b->any_time |= it->published > 0;
}

static void fill_one(void *ctx, const catalog_item *it) {
    upsert_build *b = ctx;
    core__upserts *up = b->up;
    if (b->failed) return;
    uint32_t idx;
    int known = model_item_index(b->m, it->id, strlen(it->id), &idx) == ERR_OK;
    if (!known) {
        uint32_t j = up->n_new++;
        size_t len = strlen(it->id);
        uint32_t got;
        if (idmap_intern(up->new_index, it->id, len, &got)) {
            b->failed = 1;
            return;
        }
        memcpy(b->id_at, it->id, len + 1);
        up->new_ids[j] = b->id_at;
        b->id_at += len + 1;
        idx = b->n_items + j;
        if (up->new_vectors) {
            float *v = up->new_vectors + (size_t)j * b->factors, norm = 0;
            item_vector(b->m, b->map, it, v);
            for (uint32_t f = 0; f < b->factors; f++)
                norm += v[f] * v[f];
            up->new_norms[j] = sqrtf(norm);
        }
    }
    if (up->published && it->published > 0) up->published[idx] = it->published;
    if (known && !it->n_categories) return;
    size_t r = b->rows_done++;
    up->row_item[r] = idx;
    up->cat_ptr[r] = (uint32_t)b->cats_done;
    for (size_t k = 0; k < it->n_categories; k++)
        if (idmap_intern(up->cats, it->categories[k], strlen(it->categories[k]),
                         &up->cat_idx[b->cats_done++])) {
            b->failed = 1;
            return;
        }
    up->cat_ptr[r + 1] = (uint32_t)b->cats_done;
}

static int cmp_rows(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Sorts the rows by item index (binary search in core__upsert_row),
 * moving their category lists along. */
static int sort_rows(core__upserts *up) {
    uint32_t n = up->n_rows;
    uint32_t *pairs = malloc((n ? n : 1) * 2 * sizeof *pairs);
    uint32_t *ptr = malloc(((size_t)n + 1) * sizeof *ptr);
    uint32_t *idx = malloc((up->cat_ptr[n] ? up->cat_ptr[n] : 1) * sizeof *idx);
    if (!pairs || !ptr || !idx) {
        free(pairs);
        free(ptr);
        free(idx);
        return ERR_NOMEM;
    }
    for (uint32_t r = 0; r < n; r++)
        pairs[2 * r] = up->row_item[r], pairs[2 * r + 1] = r;
    qsort(pairs, n, 2 * sizeof *pairs, cmp_rows);
    uint32_t at = 0;
    for (uint32_t r = 0; r < n; r++) {
        uint32_t old = pairs[2 * r + 1];
        up->row_item[r] = pairs[2 * r];
        ptr[r] = at;
        for (uint32_t k = up->cat_ptr[old]; k < up->cat_ptr[old + 1]; k++)
            idx[at++] = up->cat_idx[k];
    }
    ptr[n] = at;
    free(pairs);
    free(up->cat_ptr);
    free(up->cat_idx);
    up->cat_ptr = ptr;
    up->cat_idx = idx;
    return ERR_OK;
}

int core__upserts_build(catalog *rules, const model *m, core__upserts *up) {
    memset(up, 0, sizeof *up);
    const model_meta *meta = model_info(m);
    upsert_build b = {.m = m,
                      .map = model_label_map_of(m, MODEL_SIDE_ITEM),
                      .rules = rules,
                      .up = up,
                      .n_items = meta->n_items,
                      .factors = meta->factors};
    catalog_each_item(rules, count_one, &b);
    const int64_t *stored = model_item_published(m);
    size_t n_all = (size_t)meta->n_items + b.n_new;
    up->cats = idmap_new();
    up->new_index = idmap_new();
    up->new_ids = malloc((b.n_new ? b.n_new : 1) * sizeof *up->new_ids + b.id_bytes);
    up->new_mult = malloc((b.n_new ? b.n_new : 1) * sizeof *up->new_mult);
    up->row_item = malloc((b.n_rows ? b.n_rows : 1) * sizeof *up->row_item);
    up->cat_ptr = calloc(b.n_rows + 1, sizeof *up->cat_ptr);
    up->cat_idx = malloc((b.n_cats ? b.n_cats : 1) * sizeof *up->cat_idx);
    int failed = !up->cats || !up->new_index || !up->new_ids || !up->new_mult || !up->row_item ||
                 !up->cat_ptr || !up->cat_idx;
    if (!failed && b.map && b.n_new) {
        up->new_vectors = malloc(b.n_new * meta->factors * sizeof *up->new_vectors);
        up->new_norms = malloc(b.n_new * sizeof *up->new_norms);
        failed = !up->new_vectors || !up->new_norms;
    }
    if (!failed && (stored || b.any_time)) {
        up->published = calloc(n_all ? n_all : 1, sizeof *up->published);
        failed = !up->published;
        if (!failed && stored) memcpy(up->published, stored, meta->n_items * sizeof *stored);
    }
    if (!failed) {
        b.id_at = (char *)(up->new_ids + (b.n_new ? b.n_new : 1));
        catalog_each_item(rules, fill_one, &b);
        up->n_rows = (uint32_t)b.rows_done;
        /* A description stored between the two passes is seen at the next
         * generation; one more than counted is passed over here. */
        failed = b.failed || b.rows_done != b.n_rows || up->n_new != b.n_new;
    }
    if (!failed) failed = sort_rows(up) != ERR_OK;
    /* Availability and boosts are kept by id: the same rules as for the
     * model's items. */
    for (uint32_t j = 0; !failed && j < up->n_new; j++)
        up->new_mult[j] = catalog_multiplier(rules, up->new_ids[j], strlen(up->new_ids[j]));
    if (failed) {
        core__upserts_free(up);
        return ERR_NOMEM;
    }
    return ERR_OK;
}

int core__item_lookup(const model *m, const core__upserts *up, const char *id, uint32_t *index) {
    size_t len = strlen(id);
    if (model_item_index(m, id, len, index) == ERR_OK) return ERR_OK;
    uint32_t j;
    if (!up->new_index || idmap_find(up->new_index, id, len, &j) != ERR_OK) return ERR_NOTFOUND;
    *index = model_info(m)->n_items + j;
    return ERR_OK;
}

const char *core__item_id(const model *m, const core__upserts *up, uint32_t index, size_t *len) {
    uint32_t n_items = model_info(m)->n_items;
    if (index < n_items) return model_item_id(m, index, len);
    const char *id = up->new_ids[index - n_items];
    *len = strlen(id);
    return id;
}

long core__upsert_row(const core__upserts *up, uint32_t index) {
    uint32_t lo = 0, hi = up->n_rows;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (up->row_item[mid] < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < up->n_rows && up->row_item[lo] == index ? (long)lo : -1;
}

int core__in_category(const model *m, const core__upserts *up, uint32_t index,
                      const core__category *cat) {
    long r = core__upsert_row(up, index);
    if (r >= 0 && up->cat_ptr[r + 1] > up->cat_ptr[r]) {
        for (uint32_t k = up->cat_ptr[r]; k < up->cat_ptr[r + 1]; k++)
            if (cat->upserted != UINT32_MAX && up->cat_idx[k] == cat->upserted) return 1;
        return 0;
    }
    const uint32_t *item_category = model_item_categories(m);
    return index < model_info(m)->n_items && cat->model != UINT32_MAX && item_category &&
           item_category[index] == cat->model;
}
