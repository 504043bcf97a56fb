/* buf.h -- growable byte buffer and the JSON writing primitives.
 *
 * Every serializer in loopforge (records, audit entries, results) writes
 * through lf_buf so that output is byte-for-byte deterministic: the audit
 * hash chain depends on it. The buffer is always NUL-terminated. */
#ifndef LF_BUF_H
#define LF_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct lf_buf {
    char *p;        /* NUL-terminated contents (NULL until first write) */
    size_t len;     /* bytes used, excluding the terminator */
    size_t cap;     /* bytes allocated */
} lf_buf;

#define LF_BUF_INIT {NULL, 0, 0}

void lf_buf_free(lf_buf *b);
void lf_buf_reset(lf_buf *b);                      /* len = 0, keeps memory */
/* Appends when the buffer must grow (and when p points into it). */
void lf_buf_add_slow(lf_buf *b, const void *p, size_t n);

/* The appenders are inline: serializers call them for every key and
 * value, and with the room check inline a literal's strlen folds away and
 * the common case is one memcpy. */
static inline void lf_buf_add(lf_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) { lf_buf_add_slow(b, p, n); return; }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void lf_buf_puts(lf_buf *b, const char *s) {
    lf_buf_add(b, s, strlen(s));
}

static inline void lf_buf_putc(lf_buf *b, char c) {
    if (b->len + 2 > b->cap) { lf_buf_add_slow(b, &c, 1); return; }
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

void lf_buf_printf(lf_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *lf_buf_str(const lf_buf *b);           /* "" when empty */
char *lf_buf_steal(lf_buf *b);                     /* caller frees; b reset */

/* JSON helpers: a quoted, escaped string, or the literal null when s is
 * NULL. Bytes >= 0x80 are copied as they are (UTF-8 passes through). */
void lf_buf_json_str(lf_buf *b, const char *s);
void lf_buf_json_int(lf_buf *b, int64_t v);
/* Raw JSON text (already valid), or `dflt` when s is NULL. */
void lf_buf_json_raw(lf_buf *b, const char *s, const char *dflt);
/* `"key":` */
void lf_buf_json_key(lf_buf *b, const char *key);

/* A whole file, NUL-terminated, its length in *len; NULL with errno set
 * if it cannot be read. (The one file reader; core's only I/O besides the
 * clock and the random source.) */
char *lf_read_file(const char *path, size_t *len);

#endif
