/* buf.c -- growable byte buffer and JSON writing primitives.
 *
 * Owns lf_buf's memory policy: capacity doubles (amortized O(1) appends)
 * and the contents are NUL-terminated after every write, so lf_buf_str()
 * can be handed to C string functions at any time. Serializers call the
 * JSON helpers on hot paths, so strings are escaped in bulk runs and
 * integers are formatted by hand rather than through printf. */
#include "buf.h"
#include "mem.h"
#include "text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LF_BUF_MIN_CAP 64

/* Make room for `extra` more bytes plus the terminator. Out of memory
 * aborts (mem.h): a serializer must never write a truncated entry into
 * the audit chain. */
void lf_buf_reserve(lf_buf *b, size_t extra) {
    size_t need = b->len + extra + 1;
    if (need < extra) lf_oom(SIZE_MAX);          /* overflow */
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : LF_BUF_MIN_CAP;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) lf_oom(cap);
    if (!b->p) p[0] = '\0';
    b->p = p;
    b->cap = cap;
}

void lf_buf_free(lf_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void lf_buf_reset(lf_buf *b) {
    b->len = 0;
    if (b->p) b->p[0] = '\0';
}

void lf_buf_add_slow(lf_buf *b, const void *p, size_t n) {
    /* A caller may append a slice of the buffer to itself; growing moves
     * the memory, so keep the source as an offset. Compared as integers:
     * relational operators on unrelated pointers are UB. */
    uintptr_t src = (uintptr_t)p, lo = (uintptr_t)b->p;
    if (b->p && src >= lo && src < lo + b->cap) {
        size_t off = (size_t)(src - lo);
        lf_buf_reserve(b, n);
        p = b->p + off;
    } else {
        lf_buf_reserve(b, n);
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void lf_buf_printf(lf_buf *b, const char *fmt, ...) {
    va_list ap;
    /* First try in whatever room is left; most messages fit. */
    lf_buf_reserve(b, 0);
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {                        /* encoding error: write nothing */
        b->p[b->len] = '\0';
        return;
    }
    if ((size_t)n >= room) {
        lf_buf_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

const char *lf_buf_str(const lf_buf *b) { return b->p ? b->p : ""; }

char *lf_buf_steal(lf_buf *b) {
    char *p = b->p;
    if (!p) {
        /* Callers free what they get; never hand them NULL for "". */
        p = lf_xmalloc(1);
        p[0] = '\0';
    }
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- JSON ---------------------------------------------------------------- */

/* Per byte: 0 = copy as is, otherwise the character after the backslash
 * ('u' meaning \u00XX). Bytes >= 0x80 are 0 so UTF-8 passes through. */
static const char json_esc[256] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't', [0x00] = 'u',
    [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',  [0x05] = 'u', [0x06] = 'u',
    [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u',  [0x10] = 'u', [0x11] = 'u',
    [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u',  [0x16] = 'u', [0x17] = 'u',
    [0x18] = 'u', [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u',  [0x1c] = 'u', [0x1d] = 'u',
    [0x1e] = 'u', [0x1f] = 'u', ['"'] = '"',  ['\\'] = '\\',
};

static const char hexdig[] = "0123456789abcdef";

size_t lf_json_clean_len(const char *s) {
    size_t n = lf_str_run(s, true);
    return s[n] ? SIZE_MAX : n;
}

void lf_buf_json_str(lf_buf *b, const char *s) {
    if (!s) {
        lf_buf_add(b, "null", 4);
        return;
    }
    size_t n = lf_json_clean_len(s);
    if (n != SIZE_MAX) {                /* the common case: copied whole */
        if (b->len + n + 3 > b->cap) lf_buf_reserve(b, n + 2);
        char *w = b->p + b->len;
        *w++ = '"';
        memcpy(w, s, n);
        w[n] = '"';
        b->len += n + 2;
        b->p[b->len] = '\0';
        return;
    }
    lf_buf_putc(b, '"');
    const unsigned char *run = (const unsigned char *)s, *q = run;
    for (; *q; q++) {
        char e = json_esc[*q];
        if (!e) continue;
        /* Flush the clean run in one copy, then the escape. */
        lf_buf_add(b, run, (size_t)(q - run));
        if (e == 'u') {
            char u[6] = {'\\', 'u', '0', '0', hexdig[*q >> 4], hexdig[*q & 15]};
            lf_buf_add(b, u, sizeof u);
        } else {
            char esc[2] = {'\\', e};
            lf_buf_add(b, esc, sizeof esc);
        }
        run = q + 1;
    }
    lf_buf_add(b, run, (size_t)(q - run));
    lf_buf_putc(b, '"');
}

size_t lf_fmt_int(int64_t v, char out[LF_INT_CHARS]) {
    char tmp[LF_INT_CHARS];
    char *end = tmp + sizeof tmp, *p = end;
    /* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    size_t n = (size_t)(end - p);
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

void lf_buf_json_int(lf_buf *b, int64_t v) {
    lf_buf_reserve(b, LF_INT_CHARS);
    b->len += lf_fmt_int(v, b->p + b->len);     /* its NUL ends the buffer */
}

void lf_buf_json_raw(lf_buf *b, const char *s, const char *dflt) {
    if (!s) s = dflt;
    if (s) lf_buf_puts(b, s);
}

/* A whole file, NUL-terminated; NULL with errno set if it cannot be read. */
char *lf_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    lf_buf b = LF_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) lf_buf_add(&b, chunk, n);
    int err = ferror(f);
    fclose(f);
    if (err) {
        lf_buf_free(&b);
        errno = EIO;
        return NULL;
    }
    *len = b.len;
    return lf_buf_steal(&b);
}
