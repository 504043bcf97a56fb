/* map.h -- an open-addressing hash map from C strings to pointers.
 *
 * Keys are borrowed: the caller keeps each key alive while it is in the
 * map (the stores key records by the id stored inside the record). */
#ifndef LF_MAP_H
#define LF_MAP_H

#include <stddef.h>

typedef struct lf_map_slot {
    const char *key;
    void *val;
    size_t hash;
} lf_map_slot;

typedef struct lf_map {
    lf_map_slot *slots;
    size_t cap;         /* power of two, or 0 */
    size_t len;
} lf_map;

#define LF_MAP_INIT                                                                      \
    { NULL, 0, 0 }

void *lf_map_get(const lf_map *m, const char *key);
/* Inserts or replaces. */
void lf_map_put(lf_map *m, const char *key, void *val);
/* Returns the removed value, or NULL. */
void *lf_map_del(lf_map *m, const char *key);
void lf_map_free(lf_map *m);

#endif
