/* text.c -- UTF-8 validity and the string checks of JSON text (text.h). */
#include "text.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. The
 * ranges are RFC 3629's table: no overlongs, no surrogates, <= U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

size_t lf_utf8_invalid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint64_t w;
        /* ASCII eight bytes a step: every id, state, trigger and actor of
         * a request is checked, and they are almost always ASCII. */
        if (i + 8 <= len && (memcpy(&w, u + i, 8), !(w & 0x8080808080808080ULL))) {
            i += 8;
            continue;
        }
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, len - i);
        if (!k) return i;
        i += k;
    }
    return len;
}

#ifdef __SSE2__
/* From the aligned block s begins in: an aligned load never crosses into
 * the next page, so reading on past the NUL cannot fault, and the bytes
 * around the string are masked off or never looked at -- which ASan
 * cannot know, so it does not check these loads. (A byte at a time, the
 * scans were ~4 % of a transition's instructions, and a strlen and a pass
 * of the UTF-8 check ~2.5 % of its time in process.) */
__attribute__((no_sanitize_address)) size_t lf_str_run(const char *s, bool json) {
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  ctl = _mm_set1_epi8(0x1f), zero = _mm_setzero_si128();
    size_t off = (uintptr_t)s & 15;
    const __m128i *p = (const __m128i *)(const void *)(s - off);
    unsigned keep = 0xffffu << off, m;
    for (;; p++, keep = 0xffffu) {
        __m128i v = _mm_load_si128(p), stop;
        if (json)   /* a control byte (NUL too: it is <= 0x1f), '"', '\\' */
            stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                             _mm_cmpeq_epi8(v, bslash)),
                                _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
        else        /* the NUL, or a byte >= 0x80 */
            stop = _mm_or_si128(_mm_cmpeq_epi8(v, zero), _mm_cmplt_epi8(v, zero));
        if ((m = (unsigned)_mm_movemask_epi8(stop) & keep)) break;
    }
    return (size_t)((const char *)p + __builtin_ctz(m) - s);
}
#else
size_t lf_str_run(const char *s, bool json) {
    const unsigned char *q = (const unsigned char *)s;
    while (*q && (json ? *q >= 0x20 && *q != '"' && *q != '\\' : *q < 0x80)) q++;
    return (size_t)(q - (const unsigned char *)s);
}
#endif

int lf_text_check(const char *s, const char *field, char *err, size_t errlen) {
    if (!s || !s[lf_str_run(s, false)]) return 0;     /* none, or ASCII */
    size_t len = strlen(s), bad = lf_utf8_invalid(s, len);
    if (bad == len) return 0;
    snprintf(err, errlen, "%s: not valid UTF-8 (byte %zu)", field, bad);
    return -1;
}

/* ---- JSON text ------------------------------------------------------------ */

#define MAX_DEPTH 32            /* deeper paths are shown cut short */

typedef struct frame {
    char kind;                  /* '{' or '[' */
    bool want_key;              /* object: the next string is a key */
    const char *key;            /* object: the current member's key (raw) */
    size_t klen;
    long idx;                   /* array: the current element */
} frame;

typedef struct scan {
    const char *s, *end;
    frame st[MAX_DEPTH];
    int depth;                  /* may exceed MAX_DEPTH; frames past it untracked */
} scan;

/* "what.key[3].other" into err, then ": why". */
static void fail_at(const scan *c, const char *what, bool in_key, const char *why,
                    char *err, size_t errlen) {
    size_t n = 0;
    int w = snprintf(err, errlen, "%s", what ? what : "");
    n = w > 0 ? (size_t)w : 0;
    int top = c->depth < MAX_DEPTH ? c->depth : MAX_DEPTH;
    for (int i = 0; i < top && n < errlen; i++) {
        const frame *f = &c->st[i];
        bool last = i == top - 1;
        if (f->kind == '[') w = snprintf(err + n, errlen - n, "[%ld]", f->idx);
        else if (f->key && !(last && in_key))
            w = snprintf(err + n, errlen - n, "%s%.*s", n ? "." : "",
                         (int)(f->klen > 64 ? 64 : f->klen), f->key);
        else w = 0;
        n += w > 0 ? (size_t)w : 0;
    }
    if (n >= errlen) n = errlen - 1;
    snprintf(err + n, errlen - n, "%s%s%s", in_key ? (n ? " (a key)" : "a key") : "",
             n || in_key ? ": " : "", why);
}

/* Checks the string whose opening quote is at c->s; leaves c->s after
 * its closing quote. Returns NULL or what is wrong with it. */
static const char *string_problem(scan *c, const char **start, size_t *len) {
    const unsigned char *p = (const unsigned char *)c->s + 1;
    const unsigned char *end = (const unsigned char *)c->end;
    const char *why = NULL;
    *start = (const char *)p;
    while (p < end && *p != '"') {
        if (*p == '\\') {
            if (p + 5 < end && p[1] == 'u' && memcmp(p + 2, "0000", 4) == 0 && !why)
                why = "contains a NUL character (\\u0000)";
            p += p + 1 < end ? 2 : 1;
            continue;
        }
        if (*p < 0x20) {
            if (!why)
                why = *p ? "contains a raw control character (escape it)"
                         : "contains a NUL character";
            p++;
            continue;
        }
        size_t k = *p < 0x80 ? 1 : utf8_seq(p, (size_t)(end - p));
        if (!k) {
            if (!why) why = "not valid UTF-8";
            k = 1;
        }
        p += k;
    }
    *len = (size_t)((const char *)p - *start);
    c->s = (const char *)(p < end ? p + 1 : p);
    return why;
}

int lf_json_text_check(const char *s, size_t len, const char *what, char *err,
                       size_t errlen) {
    scan c = {s, s + len, {{0}}, 0};
    while (c.s < c.end) {
        frame *top = c.depth > 0 && c.depth <= MAX_DEPTH ? &c.st[c.depth - 1] : NULL;
        switch (*c.s) {
        case '{':
        case '[':
            if (c.depth < MAX_DEPTH)
                c.st[c.depth] = (frame){*c.s, *c.s == '{', NULL, 0, 0};
            c.depth++;
            c.s++;
            break;
        case '}':
        case ']':
            if (c.depth > 0) c.depth--;
            c.s++;
            break;
        case ',':
            if (top && top->kind == '[') top->idx++;
            if (top && top->kind == '{') top->want_key = true;
            c.s++;
            break;
        case '"': {
            const char *str;
            size_t slen;
            bool is_key = top && top->kind == '{' && top->want_key;
            const char *why = string_problem(&c, &str, &slen);
            if (why) {
                fail_at(&c, what, is_key, why, err, errlen);
                return -1;
            }
            if (is_key) {
                top->key = str;
                top->klen = slen;
                top->want_key = false;
            }
            break;
        }
        default: c.s++;
        }
    }
    return 0;
}
