/* arena.c -- strings in chunks (arena.h). */
#include "arena.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

struct lf_arena_chunk {
    lf_arena_chunk *next;
    size_t used, cap;
    char data[];
};

#define CHUNK_SIZE (64 * 1024 - sizeof(lf_arena_chunk))

char *lf_arena_copy(lf_arena *a, const char *s, size_t len) {
    lf_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < len + 1) {
        size_t cap = len + 1 > CHUNK_SIZE ? len + 1 : CHUNK_SIZE;
        c = lf_xmalloc(sizeof *c + cap);
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    char *copy = c->data + c->used;
    c->used += len + 1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *lf_arena_strdup(lf_arena *a, const char *s) {
    return s ? lf_arena_copy(a, s, strlen(s)) : NULL;
}

void lf_arena_free(lf_arena *a) {
    for (lf_arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}
