/* buf.h -- growable byte buffer and the JSON writing primitives.
 *
 * Every serializer in loopforge (records, audit entries, results) writes
 * through lf_buf so that output is byte-for-byte deterministic: the audit
 * hash chain depends on it. The buffer is always NUL-terminated. */
#ifndef LF_BUF_H
#define LF_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct lf_buf {
    char *p;        /* NUL-terminated contents (NULL until first write) */
    size_t len;     /* bytes used, excluding the terminator */
    size_t cap;     /* bytes allocated */
} lf_buf;

#define LF_BUF_INIT                                                                      \
    { NULL, 0, 0 }

void lf_buf_free(lf_buf *b);
void lf_buf_reset(lf_buf *b);                      /* len = 0, keeps memory */
/* Makes room for `extra` more bytes (and the terminator) after len. */
void lf_buf_reserve(lf_buf *b, size_t extra);
/* Appends when the buffer must grow (and when p points into it). */
void lf_buf_add_slow(lf_buf *b, const void *p, size_t n);

/* The appenders are inline: serializers call them for every key and
 * value, and with the room check inline a literal's strlen folds away and
 * the common case is one memcpy. */
static inline void lf_buf_add(lf_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        lf_buf_add_slow(b, p, n);
        return;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void lf_buf_puts(lf_buf *b, const char *s) { lf_buf_add(b, s, strlen(s)); }

static inline void lf_buf_putc(lf_buf *b, char c) {
    if (b->len + 2 > b->cap) {
        lf_buf_add_slow(b, &c, 1);
        return;
    }
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

void lf_buf_printf(lf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *lf_buf_str(const lf_buf *b);           /* "" when empty */
char *lf_buf_steal(lf_buf *b);                     /* caller frees; b reset */

/* JSON helpers: a quoted, escaped string, or the literal null when s is
 * NULL. Bytes >= 0x80 are copied as they are (UTF-8 passes through). */
void lf_buf_json_str(lf_buf *b, const char *s);
/* strlen(s) if s goes into JSON as it is (nothing to escape), else
 * SIZE_MAX: what lets a writer reserve once and copy a string whole. */
size_t lf_json_clean_len(const char *s);
void lf_buf_json_int(lf_buf *b, int64_t v);
/* v in decimal into out, NUL-terminated; returns its length. Not printf:
 * keys and arguments are built from numbers on every commit. */
#define LF_INT_CHARS 21             /* "-9223372036854775808" and the NUL */
size_t lf_fmt_int(int64_t v, char out[LF_INT_CHARS]);
/* Raw JSON text (already valid), or `dflt` when s is NULL. */
void lf_buf_json_raw(lf_buf *b, const char *s, const char *dflt);

/* ---- the JSON writer ------------------------------------------------------
 * Every serializer writes objects and arrays through it: it puts the
 * commas, so no caller writes ",\"key\":" by hand. Keys are our own
 * identifiers (ASCII, nothing to escape) and are written as they are.
 *
 *   lf_jw o = lf_jw_open(b, '{');
 *   lf_jw_str(&o, "ref", ref);  lf_jw_int(&o, "version", 3);
 *   lf_jw_close(&o, '}');
 */
typedef struct lf_jw {
    lf_buf *b;
    bool more;                  /* a member was written: the next needs a comma */
} lf_jw;

static inline lf_jw lf_jw_open(lf_buf *b, char bracket) {
    lf_buf_putc(b, bracket);
    return (lf_jw){b, false};
}
static inline void lf_jw_close(lf_jw *w, char bracket) { lf_buf_putc(w->b, bracket); }
/* The comma before an array's next element (or an object's next member). */
static inline void lf_jw_next(lf_jw *w) {
    if (w->more) lf_buf_putc(w->b, ',');
    w->more = true;
}
/* `"key":`, after a comma if needed; the value is the caller's to write.
 * One room check for the whole: every serializer writes a key per member. */
static inline void lf_jw_key(lf_jw *w, const char *key) {
    lf_buf *b = w->b;
    size_t n = strlen(key);
    if (b->len + n + 5 > b->cap) lf_buf_reserve(b, n + 4);
    char *p = b->p + b->len;
    if (w->more) *p++ = ',';
    w->more = true;
    *p++ = '"';
    memcpy(p, key, n);
    p += n;
    *p++ = '"';
    *p++ = ':';
    *p = '\0';
    b->len = (size_t)(p - b->p);
}
static inline void lf_jw_str(lf_jw *w, const char *key, const char *s) {
    lf_jw_key(w, key);
    lf_buf_json_str(w->b, s);
}
static inline void lf_jw_int(lf_jw *w, const char *key, int64_t v) {
    lf_jw_key(w, key);
    lf_buf_json_int(w->b, v);
}
static inline void lf_jw_bool(lf_jw *w, const char *key, bool v) {
    lf_jw_key(w, key);
    lf_buf_puts(w->b, v ? "true" : "false");
}
/* Raw JSON text (already valid), or `dflt` when json is NULL. */
static inline void lf_jw_raw(lf_jw *w, const char *key, const char *json,
                             const char *dflt) {
    lf_jw_key(w, key);
    lf_buf_json_raw(w->b, json, dflt);
}

/* A whole file, NUL-terminated, its length in *len; NULL with errno set
 * if it cannot be read. (The one file reader; core's only I/O besides the
 * clock and the random source.) */
char *lf_read_file(const char *path, size_t *len);

#endif
