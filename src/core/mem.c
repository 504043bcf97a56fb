/* mem.c -- allocations that never return NULL (mem.h). */
#include "mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lf_oom(size_t want) {
    fprintf(stderr, "loopforge: out of memory (allocating %zu bytes)\n", want);
    abort();
}

void *lf_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) lf_oom(n);
    return p;
}

/* A small block is malloc'd and cleared: glibc's calloc skips its
 * per-thread cache of small blocks, and a record and a create's context
 * are each one on the hot path (+2 % in process; a txn calloc'd cost 4 %).
 * A large one keeps calloc: fresh pages from the kernel need no
 * clearing. */
void *lf_xcalloc(size_t n, size_t size) {
    if (n && size && size <= 1024 / n) return memset(lf_xmalloc(n * size), 0, n * size);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) lf_oom(n * size);
    return p;
}

void *lf_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) lf_oom(n);
    return q;
}

char *lf_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(lf_xmalloc(n), s, n);
}

char *lf_xstrndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *p = lf_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *lf_xprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    char *s = lf_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
