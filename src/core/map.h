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
    size_t hash;    /* map.c's hash_str: the key's length in its top byte */
} lf_map_slot;

/* It grows a few members at a time (as Redis's dict does): a put that
 * fills it to 3/4 makes a table twice the size, and each put and del
 * after moves the next clusters of the old one (MOVE_STEP slots or more:
 * a cluster goes whole) until none is left, so no call pays for moving
 * them all -- at a million members that was 100-150 ms in one put. */
typedef struct lf_map {
    lf_map_slot *slots;
    size_t cap;         /* power of two, or 0 */
    size_t len;         /* members, in both tables while it grows */
    lf_map_slot *old;   /* while it grows: the table before, its slots */
    size_t oldcap;      /* looked at from `start` on, `moved` of them */
    size_t start, moved;
} lf_map;

#define LF_MAP_INIT                                                                      \
    { NULL, 0, 0, NULL, 0, 0, 0 }

void *lf_map_get(const lf_map *m, const char *key);
/* Inserts or replaces. */
void lf_map_put(lf_map *m, const char *key, void *val);
/* Returns the removed value, or NULL. */
void *lf_map_del(lf_map *m, const char *key);
void lf_map_free(lf_map *m);

/* Every member is at one position 0 .. lf_map_span(m) - 1 (of either
 * table): lf_map_at gives it, or NULL for an empty one. A walk over them
 * must not put or del (either may move members between positions), but
 * for a del that ends it. */
size_t lf_map_span(const lf_map *m);
lf_map_slot *lf_map_at(const lf_map *m, size_t i);
/* The value of the member at position i, or NULL for none. */
void *lf_map_val(const lf_map *m, size_t i);

#endif
