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
 * strings, integral numbers integers when they fit, other numbers floats,
 * true/false booleans, and null nil (an object member set to null reads as
 * absent).
 *
 * Lua -> JSON (annotations, follow-up metadata): through cJSON, with
 * object keys sorted, because the text ends up in a hashed audit entry. */
#include "internal.h"

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
} jd;

static void ws(jd *d) {
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static long hex4(const char *s) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static int utf8(char u[4], unsigned long c) {
    if (c < 0x80) { u[0] = (char)c; return 1; }
    if (c < 0x800) { u[0] = (char)(0xC0 | c >> 6); u[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) {
        u[0] = (char)(0xE0 | c >> 12); u[1] = (char)(0x80 | (c >> 6 & 63));
        u[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    u[0] = (char)(0xF0 | c >> 18); u[1] = (char)(0x80 | (c >> 12 & 63));
    u[2] = (char)(0x80 | (c >> 6 & 63)); u[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* The escape at d->p (just after the backslash) as UTF-8 bytes in u;
 * returns how many, or -1 if it is not a valid escape. */
static int unescape(jd *d, char u[4]) {
    if (d->p >= d->end) return -1;
    char c = *d->p++;
    switch (c) {
    case '"': case '\\': case '/': u[0] = c; return 1;
    case 'b': u[0] = '\b'; return 1;
    case 'f': u[0] = '\f'; return 1;
    case 'n': u[0] = '\n'; return 1;
    case 'r': u[0] = '\r'; return 1;
    case 't': u[0] = '\t'; return 1;
    case 'u': break;
    default: return -1;
    }
    if (d->end - d->p < 4) return -1;
    long cp = hex4(d->p);
    d->p += 4;
    if (cp < 0) return -1;
    /* a surrogate pair is one code point */
    if (cp >= 0xD800 && cp < 0xDC00 && d->end - d->p >= 6 && d->p[0] == '\\' &&
        d->p[1] == 'u') {
        long lo = hex4(d->p + 2);
        if (lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            d->p += 6;
        }
    }
    return utf8(u, (unsigned long)cp);
}

/* A string with escapes, from d->p (just after the quote). */
static bool slow_string(jd *d) {
    luaL_Buffer b;
    luaL_buffinit(d->L, &b);
    while (d->p < d->end && *d->p != '"') {
        char c = *d->p++, u[4];
        if ((unsigned char)c < 0x20) return false;
        if (c != '\\') {
            luaL_addchar(&b, c);
            continue;
        }
        int n = unescape(d, u);
        if (n < 0) return false;
        luaL_addlstring(&b, u, (size_t)n);
    }
    if (d->p >= d->end) return false;
    d->p++;
    luaL_pushresult(&b);
    return true;
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
    if (d->p < d->end && *d->p == close) { d->p++; return true; }
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
            lua_rawseti(L, -2, ++i);
        }
        ws(d);
        if (d->p >= d->end) return false;
        if (*d->p == close) { d->p++; return true; }
        if (*d->p++ != ',') return false;
    }
}

static bool value(jd *d) {
    if (d->p >= d->end) return false;
    luaL_checkstack(d->L, 4, "JSON nested too deeply");
    switch (*d->p) {
    case '{': case '[': {
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

bool lf_json_decode(lua_State *L, const char *s, size_t len, size_t *errpos) {
    int top = lua_gettop(L);
    jd d = {L, s, s + len, 0};
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
    if (!s) s = "{}";
    if (lf_json_decode(L, s, strlen(s), &pos)) return true;
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

/* Walks the top-level object or array of json[0..len). For an object
 * with `key`, returns where that member's value starts; otherwise returns
 * NULL, with *found set if `name` is a key (keys) or a string value. */
static const char *walk(const char *json, size_t len, const char *key, const char *name,
                        bool keys, bool *found) {
    jd d = {NULL, json, json + len, 0};
    *found = false;
    ws(&d);
    if (d.p >= d.end || (*d.p != '{' && *d.p != '[')) return NULL;
    bool object = *d.p++ == '{';
    for (;;) {
        bool eq = false;
        ws(&d);
        if (d.p >= d.end || *d.p == '}' || *d.p == ']') return NULL;
        if (object) {
            const char *k = d.p;
            if (*d.p != '"' || !scan_string(&d, name, &eq)) return NULL;
            if (keys && eq) { *found = true; return NULL; }
            if (key) {
                jd kd = {NULL, k, d.end, 0};
                scan_string(&kd, key, &eq);
            }
            ws(&d);
            if (d.p >= d.end || *d.p++ != ':') return NULL;
            ws(&d);
            if (key && eq) return d.p;
        }
        if (d.p < d.end && *d.p == '"') {
            if (!scan_string(&d, name, &eq)) return NULL;
            if (eq && name) { *found = true; return NULL; }
        } else if (!skip(&d)) {
            return NULL;
        }
        ws(&d);
        if (d.p >= d.end || *d.p != ',') return NULL;
        d.p++;
    }
}

bool lf_json_mentions(const char *json, const char *name, bool keys) {
    bool found = false;
    if (json) walk(json, strlen(json), NULL, name, keys, &found);
    return found;
}

const char *lf_json_member(const char *json, const char *key) {
    bool found;
    return json ? walk(json, strlen(json), key, NULL, false, &found) : NULL;
}

bool lf_json_member_string(const char *json, size_t len, const char *key,
                           char *out, size_t cap) {
    bool found;
    const char *v = walk(json, len, key, NULL, false, &found);
    /* v may be the very end of a payload cut after "key": */
    if (!v || v >= json + len || *v != '"' || cap == 0) return false;
    jd d = {NULL, v + 1, json + len, 0};
    size_t n = 0;
    while (d.p < d.end && *d.p != '"') {
        char u[4];
        int k = 1;
        if (*d.p == '\\') {
            d.p++;
            if ((k = unescape(&d, u)) < 0) return false;
        } else if ((unsigned char)*d.p < 0x20) {
            return false;
        } else {
            u[0] = *d.p++;
        }
        if (n + (size_t)k >= cap) return false;
        memcpy(out + n, u, (size_t)k);
        n += (size_t)k;
    }
    out[n] = '\0';
    return d.p < d.end;
}

/* ---- Lua -> JSON -------------------------------------------------------------- */

#define TO_JSON_DEPTH 32

typedef struct enc {
    lua_State *L;
    char *err;
    size_t errlen;
} enc;

static cJSON *encode(enc *e, int idx, int depth);

static cJSON *enc_fail(enc *e, const char *msg, const char *arg) {
    snprintf(e->err, e->errlen, msg, arg);
    return NULL;
}

typedef struct kv { const char *k; size_t klen; cJSON *v; } kv;

static int cmp_kv(const void *a, const void *b) {
    const kv *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->k, y->k, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

/* Lists are tables whose keys are exactly 1..n; anything else with only
 * string keys is an object, with its keys sorted: Lua's own order varies
 * from run to run, and this text ends up in a hashed audit entry. */
static cJSON *encode_table(enc *e, int idx, int depth) {
    lua_State *L = e->L;
    if (depth > TO_JSON_DEPTH) return enc_fail(e, "nested more than 32 levels (a cycle?)%s", "");
    if (!lua_checkstack(L, 4)) return enc_fail(e, "out of stack%s", "");
    size_t n = 0, nstr = 0;
    lua_Integer max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
        if (lua_type(L, -1) == LUA_TSTRING) nstr++;
        else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
        } else {
            lua_pop(L, 1);
            return enc_fail(e, "keys must be strings (or 1..n for a list)%s", "");
        }
    }
    bool list = n > 0 && nstr == 0;
    if (list && (size_t)max != n) return enc_fail(e, "a list must not have holes%s", "");
    if (nstr && nstr != n) return enc_fail(e, "a table mixes list and string keys%s", "");
    if (list) {
        cJSON *a = cJSON_CreateArray();
        for (lua_Integer i = 1; i <= max; i++) {
            lua_rawgeti(L, idx, i);
            cJSON *v = encode(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            if (!v) { cJSON_Delete(a); return NULL; }
            cJSON_AddItemToArray(a, v);
        }
        return a;
    }
    kv *items = n ? lf_xcalloc(n, sizeof *items) : NULL;
    size_t k = 0;
    bool ok = true;
    lua_pushnil(L);
    while (ok && lua_next(L, idx)) {
        items[k].k = lua_tolstring(L, -2, &items[k].klen);
        ok = (items[k].v = encode(e, lua_gettop(L), depth + 1)) != NULL;
        k += ok;
        lua_pop(L, ok ? 1 : 2);
    }
    cJSON *o = ok ? cJSON_CreateObject() : NULL;
    if (ok && k) qsort(items, k, sizeof *items, cmp_kv);
    for (size_t i = 0; i < k; i++) {
        if (o) cJSON_AddItemToObject(o, items[i].k, items[i].v);
        else cJSON_Delete(items[i].v);
    }
    free(items);
    return o;
}

static cJSON *encode(enc *e, int idx, int depth) {
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) return enc_fail(e, "cannot encode %s", "a non-finite number");
        return cJSON_CreateNumber(d);
    }
    case LUA_TTABLE: return encode_table(e, idx, depth);
    default: return enc_fail(e, "cannot encode a %s value", lua_typename(L, lua_type(L, idx)));
    }
}

/* Never raises (nothing here allocates in Lua): safe with a full heap. */
cJSON *lf_to_json(lua_State *L, int idx, char *err, size_t errlen) {
    enc e = {L, err, errlen};
    return encode(&e, lua_absindex(L, idx), 0);
}
