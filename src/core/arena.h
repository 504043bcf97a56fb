/* arena.h -- strings kept together until they are all dropped at once.
 *
 * What is never freed one by one (a memory store's lines, a tick's
 * hundred thousand timers) lives in chunks of ~64 KiB: one allocation
 * per chunk instead of one per string, and one free each at the end (a
 * tick that freed 100,000 timers' strings one by one held the event loop
 * ~35 ms doing it). A string never moves once copied. */
#ifndef LF_ARENA_H
#define LF_ARENA_H

#include <stddef.h>

typedef struct lf_arena_chunk lf_arena_chunk;

typedef struct lf_arena {
    lf_arena_chunk *head;       /* newest first */
} lf_arena;

#define LF_ARENA_INIT {NULL}

/* s[0..len) and a NUL, copied into a; never NULL (mem.h). */
char *lf_arena_copy(lf_arena *a, const char *s, size_t len);
/* s copied whole (NULL: NULL). */
char *lf_arena_strdup(lf_arena *a, const char *s);
/* Drops every string of a; a is empty after it. */
void lf_arena_free(lf_arena *a);

#endif
