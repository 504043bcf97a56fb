/* luajson.c -- JSON and Lua values, both ways.
 *
 * JSON -> Lua: text straight onto the Lua stack.
 * Guards read record and request metadata on almost every evaluation, and
 * routes decode whole webhook payloads. Going through a cJSON tree costs a
 * malloc and a free per node and per string before Lua copies everything
 * again; decoding the text directly onto the Lua stack costs only what Lua
 * allocates. Metadata is JSON the core has already validated and
 * normalised; payloads come from the network. The decoder refuses
 * anything malformed either way.
 *
 * Mapping: objects and arrays become tables (arrays 1-based), strings
 * strings, integral numbers integers when they fit (exactly, as int64),
 * other numbers floats, true/false booleans, and null nil -- an object
 * member set to null reads as absent; inside an array a host may ask for a
 * sentinel instead, so the array keeps its length (loopforge.core's
 * core.null).
 *
 * Lua -> JSON: below. src/rules and loopforge.core (src/lua) share both
 * directions: one converter (luajson.h). */
#include "internal.h"
#include "../core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define JSON_DEPTH 64

typedef struct jd {
    lua_State *L;
    const char *p, *end;
    int depth;
    const void *null;           /* pushed for null inside arrays, if not NULL */
} jd;

static void ws(jd *d) {
    while (d->p < d->end &&
           (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

/* The escape at d->p (just after the backslash) as UTF-8 bytes in u;
 * returns how many, or -1 if it is not a valid escape. */
static int unescape(jd *d, char u[4]) {
    if (d->p >= d->end) return -1;
    char c = *d->p++;
    switch (c) {
    case '"':
    case '\\':
    case '/': u[0] = c; return 1;
    case 'b': u[0] = '\b'; return 1;
    case 'f': u[0] = '\f'; return 1;
    case 'n': u[0] = '\n'; return 1;
    case 'r': u[0] = '\r'; return 1;
    case 't': u[0] = '\t'; return 1;
    case 'u': break;
    default: return -1;
    }
    if (d->end - d->p < 4) return -1;
    long cp = lf_json_hex4(d->p);
    d->p += 4;
    if (cp < 0) return -1;
    /* a surrogate pair is one code point */
    if (cp >= 0xD800 && cp < 0xDC00 && d->end - d->p >= 6 && d->p[0] == '\\' &&
        d->p[1] == 'u') {
        long lo = lf_json_hex4(d->p + 2);
        if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            d->p += 6;
        }
    }
    return lf_json_utf8(u, (unsigned long)cp);
}

/* A string with escapes, from d->p (just after the quote). The buffer
 * is finished however the string ends: past its first KB, Lua keeps the
 * text in a box on the stack marked to-be-closed, and a failed decode
 * that left it there had lf_json_decode's lua_settop close it -- which
 * in Lua 5.4.4 can leave the stack's top pointing into the old stack,
 * when the close moves it (lua_settop's bug, fixed in a later 5.4). */
static bool slow_string(jd *d) {
    luaL_Buffer b;
    luaL_buffinit(d->L, &b);
    bool ok = false;
    while (d->p < d->end && *d->p != '"') {
        char c = *d->p++, u[4];
        if ((unsigned char)c < 0x20) goto done;
        if (c != '\\') {
            luaL_addchar(&b, c);
            continue;
        }
        int n = unescape(d, u);
        if (n < 0) goto done;
        luaL_addlstring(&b, u, (size_t)n);
    }
    if (d->p < d->end) {
        d->p++;
        ok = true;
    }
done:
    luaL_pushresult(&b);            /* closes the box where Lua expects it */
    if (!ok) lua_pop(d->L, 1);
    return ok;
}

/* Pushes the string starting at d->p (at the opening quote). */
static bool string(jd *d) {
    const char *s = ++d->p;
    while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20)
        d->p++;
    if (d->p < d->end && *d->p == '"') {             /* no escapes: the usual case */
        lua_pushlstring(d->L, s, (size_t)(d->p++ - s));
        return true;
    }
    d->p = s;
    return slow_string(d);
}

static bool number(jd *d) {
    char tok[64];
    size_t n = 0;
    while (d->p < d->end && n < sizeof tok - 1 &&
           (strchr("+-.eE", *d->p) || (*d->p >= '0' && *d->p <= '9')))
        tok[n++] = *d->p++;
    tok[n] = '\0';
    /* Lua's own reader: "3" is an integer, "1.5" and "1e3" are floats. */
    return n > 0 && lua_stringtonumber(d->L, tok) == n + 1;
}

static bool literal(jd *d, const char *word, size_t n) {
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return false;
    d->p += n;
    return true;
}

static bool value(jd *d);

static bool members(jd *d, bool object) {
    lua_State *L = d->L;
    lua_Integer i = 0;
    char close = object ? '}' : ']';
    lua_createtable(L, object ? 0 : 4, object ? 4 : 0);
    ws(d);
    if (d->p < d->end && *d->p == close) {
        d->p++;
        return true;
    }
    for (;;) {
        ws(d);
        if (object) {
            if (d->p >= d->end || *d->p != '"' || !string(d)) return false;
            ws(d);
            if (d->p >= d->end || *d->p++ != ':') return false;
            ws(d);
        }
        if (!value(d)) return false;
        if (object) {
            if (lua_isnil(L, -1)) lua_pop(L, 2);      /* null member: absent */
            else lua_rawset(L, -3);
        } else {
            if (d->null && lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushlightuserdata(L, (void *)d->null);
            }
            lua_rawseti(L, -2, ++i);
        }
        ws(d);
        if (d->p >= d->end) return false;
        if (*d->p == close) {
            d->p++;
            return true;
        }
        if (*d->p++ != ',') return false;
    }
}

static bool value(jd *d) {
    if (d->p >= d->end) return false;
    luaL_checkstack(d->L, 4, "JSON nested too deeply");
    switch (*d->p) {
    case '{':
    case '[': {
        if (++d->depth > JSON_DEPTH) return false;
        bool ok = members(d, *d->p++ == '{');
        d->depth--;
        return ok;
    }
    case '"': return string(d);
    case 't': lua_pushboolean(d->L, 1); return literal(d, "true", 4);
    case 'f': lua_pushboolean(d->L, 0); return literal(d, "false", 5);
    case 'n': lua_pushnil(d->L); return literal(d, "null", 4);
    default: return number(d);
    }
}

bool lf_json_decode(lua_State *L, const char *s, size_t len, const void *null,
                    size_t *errpos) {
    int top = lua_gettop(L);
    jd d = {L, s, s + len, 0, null};
    ws(&d);
    bool ok = value(&d);
    ws(&d);
    if (ok && d.p == d.end) {
        lua_settop(L, top + 1);
        return true;
    }
    lua_settop(L, top);
    *errpos = (size_t)(d.p - s);
    return false;
}

/* Pushes the value of JSON text s (NULL: an empty object). Malformed
 * text pushes an empty table and returns false. May raise a memory error
 * (only ever from Lua, so nothing leaks). */
bool lf_json_push(lua_State *L, const char *s) {
    size_t pos;
    /* Most metadata, labels and ci_status are {}: their table at once,
     * not through the decoder (+3 % with the shipped policies). */
    if (!s || (s[0] == '{' && s[1] == '}' && !s[2])) {
        lua_createtable(L, 0, 0);
        return true;
    }
    if (lf_json_decode(L, s, strlen(s), NULL, &pos)) return true;
    lua_createtable(L, 0, 0);
    return false;
}

/* ---- lookups without decoding ---------------------------------------------- */

/* Skips the string at d->p (at its quote); sets *eq to whether it decodes
 * to `name` (when name is not NULL). */
static bool scan_string(jd *d, const char *name, bool *eq) {
    bool same = name != NULL;
    d->p++;
    while (d->p < d->end && *d->p != '"') {
        char u[4];
        int n = 1;
        if (*d->p == '\\') {
            d->p++;
            if ((n = unescape(d, u)) < 0) return false;
        } else {
            u[0] = *d->p++;
        }
        for (int i = 0; same && i < n; i++, name++) same = *name != '\0' && *name == u[i];
    }
    if (d->p >= d->end) return false;
    d->p++;
    if (eq) *eq = same && *name == '\0';
    return true;
}

/* Skips one value (d->p at its first character). */
static bool skip(jd *d) {
    int depth = 0;
    while (d->p < d->end) {
        char c = *d->p;
        if (c == '"') {
            if (!scan_string(d, NULL, NULL)) return false;
        } else if (c == '{' || c == '[') {
            depth++;
            d->p++;
        } else if (c == '}' || c == ']' || c == ',') {
            if (depth == 0) return true;
            depth -= c != ',';
            d->p++;
        } else {
            d->p++;
        }
    }
    return depth == 0;
}

/* Walks the top-level object or array of json[0..len): true if `name`
 * is one of its keys (keys) or one of its string values. */
static bool walk(const char *json, size_t len, const char *name, bool keys) {
    jd d = {NULL, json, json + len, 0, NULL};
    ws(&d);
    if (d.p >= d.end || (*d.p != '{' && *d.p != '[')) return false;
    bool object = *d.p++ == '{';
    for (;;) {
        bool eq = false;
        ws(&d);
        if (d.p >= d.end || *d.p == '}' || *d.p == ']') return false;
        if (object) {
            if (*d.p != '"' || !scan_string(&d, name, &eq)) return false;
            if (keys && eq) return true;
            ws(&d);
            if (d.p >= d.end || *d.p++ != ':') return false;
            ws(&d);
        }
        if (d.p < d.end && *d.p == '"') {
            if (!scan_string(&d, name, &eq)) return false;
            if (eq) return true;
        } else if (!skip(&d)) {
            return false;
        }
        ws(&d);
        if (d.p >= d.end || *d.p != ',') return false;
        d.p++;
    }
}

bool lf_json_mentions(const char *json, const char *name, bool keys) {
    return json && walk(json, strlen(json), name, keys);
}

/* Member lookups are core's (json.c): one reader of a member's text. */
const char *lf_json_member(const char *json, const char *key) {
    const char *v;
    size_t n;
    return json && lf_json_get(json, strlen(json), key, &v, &n) ? v : NULL;
}

bool lf_json_member_string(const char *json, size_t len, const char *key, char *out,
                           size_t cap) {
    const char *v;
    size_t n;
    lf_buf b = LF_BUF_INIT;
    bool ok = cap > 0 && lf_json_get(json, len, key, &v, &n) &&
              lf_json_string(v, n, &b) && b.len < cap && strlen(lf_buf_str(&b)) == b.len;
    if (ok) memcpy(out, lf_buf_str(&b), b.len + 1);
    lf_buf_free(&b);
    return ok;
}

/* ---- Lua -> JSON -------------------------------------------------------------- *
 *
 * One encoder for the sandbox (annotations, follow-up metadata, notify
 * bodies, route results) and for loopforge.core (labels and metadata from
 * Lua hosts): tables whose keys are exactly 1..n are arrays, any other
 * table an object with string keys, written sorted -- Lua's iteration
 * order varies from run to run and this text ends up in a hashed audit
 * entry. Integers are written exactly (int64), floats in the shortest
 * form that reads back the same. It never raises and allocates nothing in
 * Lua, so it is safe with a full heap and outside any protected call. */

#define TO_JSON_DEPTH 64

typedef struct jenc {
    lua_State *L;
    lf_buf *b;
    const void *null;           /* encodes as null, when not NULL */
    char path[256];             /* where we are, for the message */
    size_t plen;
    const void *open[TO_JSON_DEPTH];    /* the tables being encoded: cycles */
    int depth;
    char *err;
    size_t errlen;
} jenc;

static bool enc_fail(jenc *x, const char *what) {
    snprintf(x->err, x->errlen, "%s%s%s", x->path, x->plen ? ": " : "", what);
    return false;
}

static void enc_string(lf_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    lf_buf_putc(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            lf_buf_putc(b, '\\');
            lf_buf_putc(b, (char)c);
        } else if (c < 0x20) {
            /* as \u00XX: lf_buf_json_str stops at NUL; Lua strings may hold one */
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            lf_buf_add(b, u, sizeof u);
        } else {
            lf_buf_putc(b, (char)c);
        }
    }
    lf_buf_putc(b, '"');
}

/* Extends the path by a key or an index; returns the old length. */
static size_t path_push(jenc *x, const char *key, lua_Integer index) {
    size_t old = x->plen;
    int n =
        key ? snprintf(x->path + old, sizeof x->path - old, "%s%s", old ? "." : "", key)
            : snprintf(x->path + old, sizeof x->path - old, "[%lld]", (long long)index);
    if (n > 0)
        x->plen = old + (size_t)n < sizeof x->path ? old + (size_t)n : sizeof x->path - 1;
    return old;
}

static void path_pop(jenc *x, size_t old) {
    x->plen = old;
    x->path[old] = '\0';
}

static bool enc_value(jenc *x, int idx);

/* 1..n with n > 0: an array of n; 0: an object (an empty table is one). */
static lua_Integer array_length(lua_State *L, int t) {
    lua_Integer n = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return 0;
        }
        if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
        n++;
    }
    return n == max ? n : 0;
}

static bool enc_array(jenc *x, int t, lua_Integer n) {
    lf_buf_putc(x->b, '[');
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) lf_buf_putc(x->b, ',');
        size_t old = path_push(x, NULL, i);
        lua_rawgeti(x->L, t, i);
        bool ok = enc_value(x, lua_gettop(x->L));
        lua_pop(x->L, 1);
        if (!ok) return false;
        path_pop(x, old);
    }
    lf_buf_putc(x->b, ']');
    return true;
}

/* An object member: its key (owned by the table) and its value's text. */
typedef struct member {
    const char *k;
    size_t klen;
    lf_buf v;
} member;

static int cmp_members(const void *a, const void *b) {
    const member *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->k, y->k, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* Each value is encoded in Lua's order into its own buffer, then the
 * members are sorted by key: no Lua string is made to look a key up. */
static bool enc_object(jenc *x, int t) {
    lua_State *L = x->L;
    size_t n = 0, cap = 0;
    member *m = NULL;
    lf_buf *outer = x->b;
    bool ok = true;
    lua_pushnil(L);
    while (ok && lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            char msg[128];
            snprintf(msg, sizeof msg,
                     "cannot encode a table with a %s key as JSON "
                     "(object keys must be strings; lists must be 1..n)",
                     luaL_typename(L, -2));
            lua_pop(L, 2);
            ok = enc_fail(x, msg);
            break;
        }
        if (n == cap) m = lf_xrealloc(m, (cap = cap ? 2 * cap : 8) * sizeof *m);
        m[n] = (member){NULL, 0, LF_BUF_INIT};
        m[n].k = lua_tolstring(L, -2, &m[n].klen);
        size_t old = path_push(x, m[n].k, 0);
        x->b = &m[n].v;
        ok = enc_value(x, lua_gettop(L));
        x->b = outer;
        n++;
        lua_pop(L, ok ? 1 : 2);
        if (ok) path_pop(x, old);
    }
    if (ok) {
        if (n > 1) qsort(m, n, sizeof *m, cmp_members);
        lf_buf_putc(outer, '{');
        for (size_t i = 0; i < n; i++) {
            if (i) lf_buf_putc(outer, ',');
            enc_string(outer, m[i].k, m[i].klen);
            lf_buf_putc(outer, ':');
            lf_buf_add(outer, m[i].v.p, m[i].v.len);
        }
        lf_buf_putc(outer, '}');
    }
    for (size_t i = 0; i < n; i++) lf_buf_free(&m[i].v);
    free(m);
    return ok;
}

static bool enc_table(jenc *x, int t) {
    const void *me = lua_topointer(x->L, t);
    for (int i = 0; i < x->depth; i++)
        if (x->open[i] == me)
            return enc_fail(
                x, "cannot encode a table that contains itself (a cycle) as JSON");
    if (x->depth == TO_JSON_DEPTH || !lua_checkstack(x->L, 6))
        return enc_fail(x, "tables nested too deeply to encode as JSON");
    x->open[x->depth++] = me;
    lua_Integer n = array_length(x->L, t);
    bool ok = n > 0 ? enc_array(x, t, n) : enc_object(x, t);
    x->depth--; /* the same table may appear twice, if not inside itself */
    return ok;
}

static bool enc_value(jenc *x, int idx) {
    lua_State *L = x->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        enc_string(x->b, s, len);
        return true;
    }
    case LUA_TNUMBER: {
        if (lua_isinteger(L, idx)) {
            lf_buf_json_int(x->b, (int64_t)lua_tointeger(L, idx));
            return true;
        }
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) return enc_fail(x, "cannot encode NaN or infinity as JSON");
        char tmp[32]; /* the shortest form that reads back as the same double */
        snprintf(tmp, sizeof tmp, "%.15g", d);
        if (strtod(tmp, NULL) != d) snprintf(tmp, sizeof tmp, "%.17g", d);
        lf_buf_puts(x->b, tmp);
        return true;
    }
    case LUA_TBOOLEAN:
        lf_buf_puts(x->b, lua_toboolean(L, idx) ? "true" : "false");
        return true;
    case LUA_TTABLE: return enc_table(x, idx);
    case LUA_TLIGHTUSERDATA:
        if (x->null && lua_touserdata(L, idx) == x->null) {
            lf_buf_puts(x->b, "null");
            return true;
        }
        /* fall through */
    default: {
        char msg[80];
        snprintf(msg, sizeof msg, "cannot encode a %s as JSON", luaL_typename(L, idx));
        return enc_fail(x, msg);
    }
    }
}

bool lf_json_encode(lua_State *L, int idx, const void *null, const char *what,
                    lf_buf *out, char *err, size_t errlen) {
    jenc x = {.L = L, .b = out, .null = null, .err = err, .errlen = errlen};
    x.plen = (size_t)snprintf(x.path, sizeof x.path, "%s", what ? what : "");
    if (x.plen >= sizeof x.path) x.plen = sizeof x.path - 1;
    return enc_value(&x, lua_absindex(L, idx));
}
