/* json.c -- JSON text read without losing integers (json.h). */
#include "json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#define MAX_DEPTH 512

typedef struct jc {
    const char *p, *end;
    int depth;
} jc;

static void ws(jc *c) {
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hexval(char h) {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
}

long lf_json_hex4(const char *s) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hexval(s[i]);
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

int lf_json_utf8(char u[4], unsigned long c) {
    if (c < 0x80) {
        u[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        u[0] = (char)(0xC0 | c >> 6);
        u[1] = (char)(0x80 | (c & 63));
        return 2;
    }
    if (c < 0x10000) {
        u[0] = (char)(0xE0 | c >> 12);
        u[1] = (char)(0x80 | (c >> 6 & 63));
        u[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    u[0] = (char)(0xF0 | c >> 18);
    u[1] = (char)(0x80 | (c >> 12 & 63));
    u[2] = (char)(0x80 | (c >> 6 & 63));
    u[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* One escape (c->p just after its backslash) into `raw` when not NULL. */
static bool escape(jc *c, lf_buf *raw) {
    if (c->p >= c->end) return false;
    char e = *c->p++, ch;
    switch (e) {
    case '"':
    case '\\':
    case '/': ch = e; break;
    case 'b': ch = '\b'; break;
    case 'f': ch = '\f'; break;
    case 'n': ch = '\n'; break;
    case 'r': ch = '\r'; break;
    case 't': ch = '\t'; break;
    case 'u': {
        if (c->end - c->p < 4) return false;
        long u = lf_json_hex4(c->p);
        c->p += 4;
        if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;
        if (u >= 0xD800 && u <= 0xDBFF) {       /* a pair, or nothing */
            if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') return false;
            long lo = lf_json_hex4(c->p + 2);
            if (lo < 0xDC00 || lo > 0xDFFF) return false;
            c->p += 6;
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (raw) {
            char b8[4];
            lf_buf_add(raw, b8, (size_t)lf_json_utf8(b8, (unsigned long)u));
        }
        return true;
    }
    default: return false;
    }
    if (raw) lf_buf_add(raw, &ch, 1);
    return true;
}

/* A string (c->p at its opening quote), decoded into `raw` when not NULL.
 * It goes from run to run of plain bytes, each found by memchr (a journal's
 * replay spent a third of its parsing here a byte at a time): q is the next
 * quote, b the next backslash before it; each is looked for again only
 * once passed, so a string is scanned about once however many escapes. */
static bool string(jc *c, lf_buf *raw) {
    c->p++;
    const char *q = memchr(c->p, '"', (size_t)(c->end - c->p)), *b;
    for (;;) {
        if (!q) return false;
        b = memchr(c->p, '\\', (size_t)(q - c->p));
        const char *stop = b ? b : q;
        if (raw) lf_buf_add(raw, c->p, (size_t)(stop - c->p));
        c->p = stop + 1;
        if (!b) return true;
        if (!escape(c, raw)) return false;
        if (c->p > q) q = memchr(c->p, '"', (size_t)(c->end - c->p));
    }
}

/* s as cJSON prints a string. */
static void put_string(lf_buf *out, const char *s, size_t len) {
    lf_buf_putc(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = ch == '"'    ? "\\\""
                          : ch == '\\' ? "\\\\"
                          : ch == '\b' ? "\\b"
                          : ch == '\f' ? "\\f"
                          : ch == '\n' ? "\\n"
                          : ch == '\r' ? "\\r"
                          : ch == '\t' ? "\\t"
                                       : NULL;
        if (esc) {
            lf_buf_puts(out, esc);
        } else if (ch < 0x20) {
            char u[8];
            snprintf(u, sizeof u, "\\u%04x", ch);
            lf_buf_puts(out, u);
        } else {
            lf_buf_add(out, &s[i], 1);
        }
    }
    lf_buf_putc(out, '"');
}

static bool is_integer_token(const char *t, size_t n) {
    size_t i = t[0] == '-';
    if (i == n) return false;
    for (; i < n; i++)
        if (t[i] < '0' || t[i] > '9') return false;
    return true;
}

static size_t digits(const char *t, size_t i, size_t n) {
    while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    return i;
}

/* Whether t[0..n) is a number as cJSON reads one: a minus or a digit
 * first, then all of it taken by strtod -- digits with a point somewhere
 * (one digit at least), an exponent with digits. (Laxer than JSON: "01",
 * "1." and "-.5" pass, as they do through cJSON: the entry readers must
 * agree.) */
static bool number_token(const char *t, size_t n) {
    if (t[0] != '-' && (t[0] < '0' || t[0] > '9')) return false;
    size_t i = t[0] == '-', d = digits(t, i, n), m = d;
    bool point = m < n && t[m] == '.';
    if (point) m = digits(t, m + 1, n);
    if (d == i && m == d + point) return false;     /* no digit either side */
    if (m < n && (t[m] == 'e' || t[m] == 'E')) {
        size_t e = m + 1 + (m + 1 < n && (t[m + 1] == '+' || t[m + 1] == '-'));
        m = digits(t, e, n);
        if (m == e) return false;
    }
    return m == n;
}

/* A number token: an integer as written (leading zeros and a minus zero
 * aside), any other as cJSON prints the double it reads as. */
static bool number(jc *c, lf_buf *out) {
    const char *t = c->p;
    while (c->p < c->end && (strchr("+-.eE", *c->p) || (*c->p >= '0' && *c->p <= '9')))
        c->p++;
    size_t n = (size_t)(c->p - t);
    if (n == 0 || n > 400 || !number_token(t, n)) return false;
    if (!out) return true;
    if (is_integer_token(t, n)) {
        bool neg = t[0] == '-';
        size_t i = neg;
        while (i + 1 < n && t[i] == '0') i++;
        if (neg && !(n - i == 1 && t[i] == '0')) lf_buf_putc(out, '-');
        lf_buf_add(out, t + i, n - i);
        return true;
    }
    char tok[401], *end;
    memcpy(tok, t, n);
    tok[n] = '\0';
    double d = strtod(tok, &end);
    if (end != tok + n) return false;
    char buf[32];
    int vi = d >= INT_MAX ? INT_MAX : d <= (double)INT_MIN ? INT_MIN : (int)d;
    if (isnan(d) || isinf(d)) snprintf(buf, sizeof buf, "null");
    else if (d == (double)vi) snprintf(buf, sizeof buf, "%d", vi);
    else {
        snprintf(buf, sizeof buf, "%1.15g", d);
        if (strtod(buf, NULL) != d) snprintf(buf, sizeof buf, "%1.17g", d);
    }
    lf_buf_puts(out, buf);
    return true;
}

static bool literal(jc *c, const char *word, lf_buf *out) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    if (out) lf_buf_add(out, word, n);
    return true;
}

static bool value(jc *c, lf_buf *out);

static bool members(jc *c, lf_buf *out, bool object) {
    char close = object ? '}' : ']';
    if (out) lf_buf_putc(out, object ? '{' : '[');
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        if (out) lf_buf_putc(out, close);
        return true;
    }
    lf_buf key = LF_BUF_INIT;
    bool ok = false;
    for (bool first = true;; first = false) {
        ws(c);
        if (!first && out) lf_buf_putc(out, ',');
        if (object) {
            lf_buf_reset(&key);
            if (c->p >= c->end || *c->p != '"' || !string(c, out ? &key : NULL)) break;
            if (out) {
                put_string(out, key.p ? key.p : "", key.len);
                lf_buf_putc(out, ':');
            }
            ws(c);
            if (c->p >= c->end || *c->p++ != ':') break;
            ws(c);
        }
        if (!value(c, out)) break;
        ws(c);
        if (c->p >= c->end) break;
        if (*c->p == close) {
            c->p++;
            if (out) lf_buf_putc(out, close);
            ok = true;
            break;
        }
        if (*c->p++ != ',') break;
    }
    lf_buf_free(&key);
    return ok;
}

static bool value(jc *c, lf_buf *out) {
    if (c->p >= c->end) return false;
    switch (*c->p) {
    case '{':
    case '[': {
        if (++c->depth > MAX_DEPTH) return false;
        bool ok = members(c, out, *c->p == '{');
        c->depth--;
        return ok;
    }
    case '"': {
        if (!out) return string(c, NULL);
        lf_buf raw = LF_BUF_INIT;
        bool ok = string(c, &raw);
        if (ok) put_string(out, raw.p ? raw.p : "", raw.len);
        lf_buf_free(&raw);
        return ok;
    }
    case 't': return literal(c, "true", out);
    case 'f': return literal(c, "false", out);
    case 'n': return literal(c, "null", out);
    default: return number(c, out);
    }
}

bool lf_json_canon(const char *s, size_t len, lf_buf *out) {
    jc c = {s, s + len, 0};
    ws(&c);
    if (!value(&c, out)) return false;
    ws(&c);
    return c.p == c.end;
}

bool lf_json_members(const char *s, size_t len, lf_json_member_fn *fn, void *arg) {
    jc c = {s, s + len, 0};
    ws(&c);
    if (c.p >= c.end || *c.p != '{') return false;
    c.p++;
    lf_buf k = LF_BUF_INIT;
    char small[64];
    bool ok = false;
    ws(&c);
    if (c.p < c.end && *c.p == '}') ok = true;
    while (!ok) {
        ws(&c);
        if (c.p >= c.end || *c.p != '"') break;
        /* A short key without escapes (every key we write) is copied as
         * it is: no allocation, no byte-at-a-time decoding. */
        const char *key = small, *q = c.p + 1;
        while (q < c.end && q - c.p <= (ptrdiff_t)sizeof small && *q != '"' && *q != '\\')
            q++;
        if (q < c.end && *q == '"' && q - c.p <= (ptrdiff_t)sizeof small) {
            memcpy(small, c.p + 1, (size_t)(q - c.p - 1));
            small[q - c.p - 1] = '\0';
            c.p = q + 1;
        } else {
            lf_buf_reset(&k);
            if (!string(&c, &k)) break;
            key = lf_buf_str(&k);
        }
        ws(&c);
        if (c.p >= c.end || *c.p++ != ':') break;
        ws(&c);
        const char *v = c.p;
        if (!value(&c, NULL)) break;
        if (!fn(key, v, (size_t)(c.p - v), arg)) {
            ok = true;              /* stopped: what was read was well formed */
            break;
        }
        ws(&c);
        if (c.p < c.end && *c.p == '}') {
            ok = true;
            break;
        }
        if (c.p >= c.end || *c.p++ != ',') break;
    }
    lf_buf_free(&k);
    return ok;
}

typedef struct get_call {
    const char *key, *val;
    size_t vlen;
    bool found;
} get_call;

static bool get_one(const char *key, const char *val, size_t vlen, void *arg) {
    get_call *g = arg;
    if (strcmp(key, g->key) != 0) return true;
    g->val = val;                   /* the first, as cJSON finds it */
    g->vlen = vlen;
    g->found = true;
    return false;
}

bool lf_json_get(const char *s, size_t len, const char *key, const char **val,
                 size_t *vlen) {
    get_call g = {key, NULL, 0, false};
    lf_json_members(s, len, get_one, &g);
    if (g.found) {
        *val = g.val;
        *vlen = g.vlen;
    }
    return g.found;
}

bool lf_json_string(const char *v, size_t vlen, lf_buf *out) {
    jc c = {v, v + vlen, 0};
    return vlen > 0 && *v == '"' && string(&c, out) && c.p == c.end;
}

bool lf_json_array(lf_json_iter *it, const char *s, size_t len) {
    jc c = {s, s + len, 0};
    ws(&c);
    if (c.p >= c.end || *c.p != '[') return false;
    it->p = c.p + 1;
    it->end = c.end;
    it->more = false;
    return true;
}

bool lf_json_next(lf_json_iter *it, const char **val, size_t *vlen) {
    jc c = {it->p, it->end, 0};
    ws(&c);
    if (c.p >= c.end || *c.p == ']') return false;
    if (it->more) {
        if (*c.p++ != ',') return false;
        ws(&c);
    }
    const char *v = c.p;
    if (!value(&c, NULL)) return false;
    *val = v;
    *vlen = (size_t)(c.p - v);
    it->p = c.p;
    it->more = true;
    return true;
}

int lf_json_int(const char *v, size_t vlen, int64_t *out) {
    char tok[64], *end;
    if (vlen == 0 || vlen >= sizeof tok) return -1;
    memcpy(tok, v, vlen);
    tok[vlen] = '\0';
    if (is_integer_token(tok, vlen)) {
        errno = 0;
        long long n = strtoll(tok, &end, 10);
        if (errno || *end) return -1;
        *out = n;
        return 0;
    }
    double d = strtod(tok, &end);
    if (*end || end == tok || d != floor(d) || fabs(d) > 9007199254740992.0) return -1;
    *out = (int64_t)d;
    return 0;
}

int lf_json_number_int(const cJSON *v, int64_t *out) {
    return cJSON_IsNumber(v) ? lf_json_double_int(v->valuedouble, out) : -1;
}

int lf_json_double_int(double d, int64_t *out) {
    /* -2^63 <= d < 2^63, false for NaN too */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d))
        return -1;
    *out = (int64_t)d;
    return 0;
}
