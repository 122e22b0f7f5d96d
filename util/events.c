#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

int ev_set_init(ev_set *s, err_t *e) {
    memset(s, 0, sizeof *s);
    s->users = idmap_new();
    s->items = idmap_new();
    s->categories = idmap_new();
    if (!s->users || !s->items || !s->categories) {
        ev_set_free(s);
        return err_set(e, ERR_NOMEM, "events: out of memory");
    }
    return ERR_OK;
}

void ev_set_free(ev_set *s) {
    free(s->events);
    idmap_free(s->users);
    idmap_free(s->items);
    idmap_free(s->categories);
    free(s->item_category);
    memset(s, 0, sizeof *s);
}

/* Every value is below EV_TYPE_END only if the rows ascend. */
#define EV_TYPE_CHECK(name, value, str, word, weight)                                              \
    _Static_assert(value > 0 && value < EV_TYPE_END, "EV_TYPE_MAP rows ascend by value");
EV_TYPE_MAP(EV_TYPE_CHECK)
#undef EV_TYPE_CHECK

typedef struct ev_type_row {
    uint32_t value;
    const char *name, *word;
    float weight;
} ev_type_row;

static const ev_type_row ev_types[] = {
#define EV_TYPE_ROW(name, value, str, word, weight) {value, str, word, weight},
    EV_TYPE_MAP(EV_TYPE_ROW)
#undef EV_TYPE_ROW
};

#define EV_N_TYPES (sizeof ev_types / sizeof ev_types[0])

static const ev_type_row *ev_type_row_of(uint32_t t) {
    for (size_t i = 0; i < EV_N_TYPES; i++)
        if (ev_types[i].value == t) return &ev_types[i];
    return NULL;
}

int ev_type_known(uint32_t t) {
    return ev_type_row_of(t) != NULL;
}

const char *ev_type_name(uint32_t t) {
    const ev_type_row *r = ev_type_row_of(t);
    return r ? r->name : NULL;
}

const char *ev_type_word(uint32_t t) {
    const ev_type_row *r = ev_type_row_of(t);
    return r ? r->word : NULL;
}

uint32_t ev_type_of_word(const char *word, size_t len) {
    for (size_t i = 0; i < EV_N_TYPES; i++)
        if (strlen(ev_types[i].word) == len && memcmp(ev_types[i].word, word, len) == 0)
            return ev_types[i].value;
    return 0;
}

void ev_type_words(char *buf, size_t size) {
    const char *words[EV_N_TYPES];
    for (size_t i = 0; i < EV_N_TYPES; i++)
        words[i] = ev_types[i].word;
    text_join_words(buf, size, words, EV_N_TYPES);
}

void ev_type_default_weights(float w[EV_TYPE_END]) {
    for (uint32_t t = 0; t < EV_TYPE_END; t++)
        w[t] = 0.0f;
    for (size_t i = 0; i < EV_N_TYPES; i++)
        w[ev_types[i].value] = ev_types[i].weight;
}

int ev_set_add(ev_set *s, const char *user, size_t user_len, const char *item, size_t item_len,
               int64_t ts, float quantity, float price, err_t *e) {
    ev_event fields = {.ts = ts,
                       .quantity = quantity,
                       .price = price,
                       .weight = 1.0f,
                       .type = EV_TYPE_PURCHASE,
                       .recorded = 0};
    return ev_set_add_event(s, user, user_len, item, item_len, &fields, e);
}

int ev_set_add_event(ev_set *s, const char *user, size_t user_len, const char *item,
                     size_t item_len, const ev_event *fields, err_t *e) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        ev_event *ev = realloc(s->events, cap * sizeof *ev);
        if (!ev) return err_set(e, ERR_NOMEM, "events: out of memory at %zu events", s->n);
        s->events = ev;
        s->cap = cap;
    }
    ev_event *ev = &s->events[s->n];
    int rc;
    if ((rc = idmap_intern(s->users, user, user_len, &ev->user)))
        return err_set(e, rc, "events: cannot intern user %u: %s", idmap_size(s->users),
                       err_message(rc));
    if ((rc = idmap_intern(s->items, item, item_len, &ev->item)))
        return err_set(e, rc, "events: cannot intern item %u: %s", idmap_size(s->items),
                       err_message(rc));
    uint32_t u = ev->user, i = ev->item;
    *ev = *fields;
    ev->user = u;
    ev->item = i;
    s->n++;
    return ERR_OK;
}

int ev_set_set_category(ev_set *s, uint32_t item, const char *category, size_t len, err_t *e) {
    if (item >= s->n_item_category) {
        uint32_t n = idmap_size(s->items) > item ? idmap_size(s->items) : item + 1;
        uint32_t *cat = realloc(s->item_category, (size_t)n * sizeof *cat);
        if (!cat) return err_set(e, ERR_NOMEM, "events: out of memory for item categories");
        for (uint32_t i = s->n_item_category; i < n; i++)
            cat[i] = UINT32_MAX;
        s->item_category = cat;
        s->n_item_category = n;
    }
    int rc = idmap_intern(s->categories, category, len, &s->item_category[item]);
    if (rc)
        return err_set(e, rc, "events: cannot intern category %u: %s", idmap_size(s->categories),
                       err_message(rc));
    return ERR_OK;
}

uint32_t ev_set_item_category(const ev_set *s, uint32_t item) {
    return item < s->n_item_category ? s->item_category[item] : UINT32_MAX;
}

int ev_set_drop_users(ev_set *s, const uint8_t *drop, err_t *e) {
    ev_set kept;
    int rc = ev_set_init(&kept, e);
    for (size_t i = 0; !rc && i < s->n; i++) {
        const ev_event *ev = &s->events[i];
        if (drop[ev->user]) continue;
        size_t ul, il;
        const char *u = idmap_key(s->users, ev->user, &ul),
                   *it = idmap_key(s->items, ev->item, &il);
        rc = ev_set_add_event(&kept, u, ul, it, il, ev, e);
        uint32_t cat = rc ? UINT32_MAX : ev_set_item_category(s, ev->item);
        if (cat != UINT32_MAX) {
            size_t cl;
            const char *c = idmap_key(s->categories, cat, &cl);
            rc = ev_set_set_category(&kept, kept.events[kept.n - 1].item, c, cl, e);
        }
    }
    if (rc) {
        ev_set_free(&kept);
        return rc;
    }
    ev_set_free(s);
    *s = kept;
    return ERR_OK;
}

/* qsort has no context argument; the item rank table is passed through this
 * file-local pointer, which is fine because sorting is single-threaded. */
static const uint32_t *sort_item_rank;

static int cmp_user_time_item(const void *pa, const void *pb) {
    const ev_event *a = pa, *b = pb;
    if (a->user != b->user) return (a->user > b->user) - (a->user < b->user);
    if (a->ts != b->ts) return (a->ts > b->ts) - (a->ts < b->ts);
    uint32_t ra = sort_item_rank[a->item], rb = sort_item_rank[b->item];
    return (ra > rb) - (ra < rb);
}

static const idmap *sort_items;

static int is_digits(const char *s, size_t len) {
    if (len == 0 || len > 18) return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* Numeric ids ("2", "10") compare as numbers, as the datasets' own tools
 * order them; anything else compares bytewise. */
static int cmp_item_id(const void *pa, const void *pb) {
    size_t la, lb;
    const char *a = idmap_key(sort_items, *(const uint32_t *)pa, &la);
    const char *b = idmap_key(sort_items, *(const uint32_t *)pb, &lb);
    if (is_digits(a, la) && is_digits(b, lb)) {
        /* Same-length digit strings order like numbers; shorter is smaller
         * once leading zeros are gone. */
        while (la > 1 && *a == '0')
            a++, la--;
        while (lb > 1 && *b == '0')
            b++, lb--;
        if (la != lb) return (la > lb) - (la < lb);
    }
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

int ev_set_sort_by_user_time(ev_set *s, ev_tie_order ties, uint64_t **user_start, err_t *e) {
    uint32_t n_items = idmap_size(s->items), n_users = idmap_size(s->users);
    uint32_t *order = malloc(((size_t)n_items + 1) * sizeof *order);
    uint32_t *rank = malloc(((size_t)n_items + 1) * sizeof *rank);
    uint64_t *start = calloc((size_t)n_users + 1, sizeof *start);
    if (!order || !rank || !start) {
        free(order);
        free(rank);
        free(start);
        return err_set(e, ERR_NOMEM, "events: out of memory sorting");
    }
    /* Ties in time are broken by the item's id string, as the evaluation
     * protocol says, so rank items by id once instead of comparing strings. */
    for (uint32_t i = 0; i < n_items; i++)
        order[i] = i;
    sort_items = s->items;
    qsort(order, n_items, sizeof *order, cmp_item_id);
    for (uint32_t i = 0; i < n_items; i++)
        rank[order[i]] = ties == EV_TIES_ASCENDING ? i : n_items - 1 - i;
    sort_item_rank = rank;
    qsort(s->events, s->n, sizeof *s->events, cmp_user_time_item);
    for (size_t i = 0; i < s->n; i++)
        start[s->events[i].user + 1]++;
    for (uint32_t u = 0; u < n_users; u++)
        start[u + 1] += start[u];
    free(order);
    free(rank);
    *user_start = start;
    return ERR_OK;
}
