#include "idmap.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define EMPTY UINT32_MAX

/* Most ids one map holds: indexes are uint32_t and EMPTY is one of them.
 * A compile-time limit, as SQLite's are, so that a test can build the map
 * with a small one and reach it (tests/CMakeLists.txt, test_limits). */
#ifndef IDMAP_MAX_IDS
#define IDMAP_MAX_IDS (UINT32_MAX - 1)
#endif

struct idmap {
    uint32_t *slots;   /* index into offsets, or EMPTY */
    uint64_t *hashes;  /* per index: full hash, so that growth needs no rehash of strings */
    uint64_t *offsets; /* per index + 1: start of key in arena */
    char *arena;
    size_t arena_len, arena_cap;
    uint32_t n, cap_ids, n_slots; /* n_slots is a power of two */
};

idmap *idmap_new(void) {
    idmap *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n_slots = 1024;
    m->slots = malloc(m->n_slots * sizeof *m->slots);
    m->offsets = calloc(1, sizeof *m->offsets);
    if (!m->slots || !m->offsets) {
        idmap_free(m);
        return NULL;
    }
    memset(m->slots, 0xff, m->n_slots * sizeof *m->slots);
    return m;
}

void idmap_free(idmap *m) {
    if (!m) return;
    free(m->slots);
    free(m->hashes);
    free(m->offsets);
    free(m->arena);
    free(m);
}

uint32_t idmap_size(const idmap *m) {
    return m->n;
}

const char *idmap_key(const idmap *m, uint32_t index, size_t *len) {
    *len = (size_t)(m->offsets[index + 1] - m->offsets[index]);
    return m->arena + m->offsets[index];
}

static uint32_t *idmap_slot(const idmap *m, uint64_t h, const char *key, size_t len) {
    uint32_t mask = m->n_slots - 1;
    for (uint32_t s = (uint32_t)h & mask;; s = (s + 1) & mask) {
        uint32_t idx = m->slots[s];
        if (idx == EMPTY) return &m->slots[s];
        if (m->hashes[idx] == h && m->offsets[idx + 1] - m->offsets[idx] == len &&
            memcmp(m->arena + m->offsets[idx], key, len) == 0)
            return &m->slots[s];
    }
}

int idmap_find(const idmap *m, const char *key, size_t len, uint32_t *index) {
    uint64_t h = XXH3_64bits(key, len);
    uint32_t idx = *idmap_slot(m, h, key, len);
    if (idx == EMPTY) return ERR_NOTFOUND;
    *index = idx;
    return ERR_OK;
}

static int idmap_grow_slots(idmap *m) {
    uint32_t n_slots = m->n_slots * 2;
    uint32_t *slots = malloc((size_t)n_slots * sizeof *slots);
    if (!slots) return ERR_NOMEM;
    memset(slots, 0xff, (size_t)n_slots * sizeof *slots);
    for (uint32_t idx = 0; idx < m->n; idx++) {
        uint32_t s = (uint32_t)m->hashes[idx] & (n_slots - 1);
        while (slots[s] != EMPTY)
            s = (s + 1) & (n_slots - 1);
        slots[s] = idx;
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n_slots;
    return ERR_OK;
}

int idmap_intern(idmap *m, const char *key, size_t len, uint32_t *index) {
    uint64_t h = XXH3_64bits(key, len);
    uint32_t *slot = idmap_slot(m, h, key, len);
    if (*slot != EMPTY) {
        *index = *slot;
        return ERR_OK;
    }
    if (m->n >= IDMAP_MAX_IDS) return ERR_LIMIT;
    if (m->n == m->cap_ids) {
        uint32_t cap = m->cap_ids ? m->cap_ids * 2 : 256;
        uint64_t *hashes = realloc(m->hashes, (size_t)cap * sizeof *hashes);
        if (!hashes) return ERR_NOMEM;
        m->hashes = hashes;
        uint64_t *offsets = realloc(m->offsets, ((size_t)cap + 1) * sizeof *offsets);
        if (!offsets) return ERR_NOMEM;
        m->offsets = offsets;
        m->cap_ids = cap;
    }
    if (m->arena_len + len > m->arena_cap) {
        size_t cap = m->arena_cap ? m->arena_cap * 2 : 4096;
        while (cap < m->arena_len + len)
            cap *= 2;
        char *arena = realloc(m->arena, cap);
        if (!arena) return ERR_NOMEM;
        m->arena = arena;
        m->arena_cap = cap;
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->arena_len += len;
    uint32_t idx = m->n++;
    m->hashes[idx] = h;
    m->offsets[idx + 1] = m->arena_len;
    *slot = idx;
    *index = idx;
    /* Keep the load factor under 1/2 so probes stay short. */
    if ((uint64_t)m->n * 2 > m->n_slots) return idmap_grow_slots(m);
    return ERR_OK;
}
