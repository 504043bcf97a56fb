/* mem.h -- the one out-of-memory rule of the library.
 *
 * loopforge's own allocations never return NULL: like Redis's zmalloc, an
 * allocation that fails prints what it wanted and aborts. A server out of
 * memory cannot answer reliably anyway (half-written audit entries would
 * be worse), and every caller is simpler and fully tested for it: there
 * is no "out of memory" branch to forget or to leave untried. The one
 * exception is by design: the Lua sandbox's memory cap (src/rules) is a
 * policy's budget, and running out of it is that policy's error. */
#ifndef LF_MEM_H
#define LF_MEM_H

#include <stddef.h>

__attribute__((noreturn)) void lf_oom(size_t want);
void *lf_xmalloc(size_t n);
void *lf_xcalloc(size_t n, size_t size);
void *lf_xrealloc(void *p, size_t n);
char *lf_xstrdup(const char *s);
char *lf_xstrndup(const char *s, size_t n);
char *lf_xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* What a library allocated for us (cJSON's prints and trees, libevent's
 * and hiredis's objects), under the same rule: p, or abort. */
static inline void *lf_xptr(void *p) {
    if (!p) lf_oom(0);
    return p;
}

#endif
