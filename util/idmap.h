/* idmap: interns arbitrary byte-string ids and gives them dense indexes
 * 0, 1, 2, ... in first-seen order (the row/column numbers of the
 * interaction matrix and of the factor matrices).
 *
 * Open addressing on an xxh3 hash; the strings live in one growing arena.
 * The idmap owns its strings; pointers returned by idmap_key stay valid until
 * the next idmap_intern or idmap_free. Not thread-safe. */
#ifndef RECD_IDMAP_H
#define RECD_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct idmap idmap;

/* Allocates an empty map; NULL when out of memory. Free with idmap_free. */
idmap *idmap_new(void);
void idmap_free(idmap *m);

/* Number of distinct ids interned. */
uint32_t idmap_size(const idmap *m);

/* Finds key, inserting it with the next index when absent; fills *index.
 * Returns ERR_OK or ERR_NOMEM / ERR_LIMIT (more than 2^32-2 ids). */
int idmap_intern(idmap *m, const char *key, size_t len, uint32_t *index);

/* Fills *index and returns ERR_OK when key is present, else ERR_NOTFOUND. */
int idmap_find(const idmap *m, const char *key, size_t len, uint32_t *index);

/* The bytes of the id with this index (not NUL-terminated; *len gets the
 * length). index must be < idmap_size. */
const char *idmap_key(const idmap *m, uint32_t index, size_t *len);

#endif
