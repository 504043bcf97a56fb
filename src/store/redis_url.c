/* redis_url.c -- the redis store's URLs.
 *
 *   redis://[[user]:password@]host[:port][/db][?options]
 *   unix://[[user]:password@]/path/to/redis.sock[?db=N&options]
 *
 * Options: prefix=lf: (key prefix), connect_timeout_ms=2000,
 * timeout_ms=5000 (per command), db=N (unix:, or instead of /db).
 * User, password, path and prefix may be percent-encoded. A URL that
 * does not parse is the caller's mistake, reported precisely; whether
 * the server is there is the connection's business, not ours. */
#include "redis.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE                                                                            \
    "expected redis://[:password@]host:port/db or "                                      \
    "unix:///path/to/redis.sock?db=N"

void lf_redis_url_free(lf_redis_url *u) {
    free(u->host);
    free(u->path);
    free(u->user);
    free(u->password);
    free(u->prefix);
    memset(u, 0, sizeof *u);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A percent-decoded copy of s[0..n), or NULL if an escape is broken or
 * decodes to a NUL byte (which no C string could carry). */
static char *decode(const char *s, size_t n) {
    char *out = lf_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        if (i + 2 >= n) {
            free(out);
            return NULL;
        }
        int a = hexval((unsigned char)s[i + 1]);
        int b = a < 0 ? -1 : hexval((unsigned char)s[i + 2]);
        if (b < 0 || (a == 0 && b == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(a * 16 + b);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* Strict decimal in [min, max]. */
static int parse_int(const char *s, size_t n, long min, long max, int *out) {
    long v = 0;
    if (n == 0 || n > 9) return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) return -1;
    *out = (int)v;
    return 0;
}

/* The URL may hold a password: say what is wrong, never echo it. */
static int fail(char *err, size_t errlen, const char *why) {
    snprintf(err, errlen, "bad redis store URL: %s (" USAGE ")", why);
    return -1;
}

/* user:password before '@', either part optional ("":pw, user:pw, pw). */
static int parse_auth(lf_redis_url *u, const char *s, size_t n) {
    const char *colon = memchr(s, ':', n);
    if (!colon) return (u->password = decode(s, n)) ? 0 : -1;
    size_t ul = (size_t)(colon - s);
    if (ul && !(u->user = decode(s, ul))) return -1;
    return (u->password = decode(colon + 1, n - ul - 1)) ? 0 : -1;
}

/* host[:port] or [v6]:port */
static int parse_hostport(lf_redis_url *u, const char *s, size_t n, const char **why) {
    const char *hend, *port = NULL;
    const char *h = s;
    if (n && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (!rb) {
            *why = "unterminated [IPv6] host";
            return -1;
        }
        h = s + 1;
        hend = rb;
        if (rb + 1 < s + n) {
            if (rb[1] != ':') {
                *why = "junk after ]";
                return -1;
            }
            port = rb + 2;
        }
    } else {
        hend = memchr(s, ':', n);
        if (hend) port = hend + 1;
        else hend = s + n;
    }
    if (hend == h) {
        *why = "missing host";
        return -1;
    }
    if (!(u->host = decode(h, (size_t)(hend - h)))) {
        *why = "bad %-escape in host";
        return -1;
    }
    u->port = LF_REDIS_DEFAULT_PORT;
    if (port && parse_int(port, (size_t)(s + n - port), 1, 65535, &u->port)) {
        *why = "port must be a number from 1 to 65535";
        return -1;
    }
    return 0;
}

/* One key=value of the query. */
static int parse_option(lf_redis_url *u, const char *k, size_t kl, const char *v,
                        size_t vl, bool *db_seen, const char **why) {
#define IS(name) (kl == sizeof(name) - 1 && memcmp(k, name, kl) == 0)
    if (IS("db")) {
        if (*db_seen) {
            *why = "db given twice";
            return -1;
        }
        *db_seen = true;
        if (parse_int(v, vl, 0, INT_MAX, &u->db)) {
            *why = "db must be a non-negative number";
            return -1;
        }
        return 0;
    }
    if (IS("prefix")) {
        free(u->prefix);
        if (!(u->prefix = decode(v, vl))) {
            *why = "bad %-escape in prefix";
            return -1;
        }
        /* Braces would make Redis Cluster hash on part of the prefix
         * instead of the record id (docs/redis.md). */
        if (strpbrk(u->prefix, "{} \t\r\n")) {
            *why = "prefix must not contain braces or whitespace";
            return -1;
        }
        return 0;
    }
    if (IS("connect_timeout_ms") || IS("timeout_ms")) {
        int *dst = IS("timeout_ms") ? &u->timeout_ms : &u->connect_timeout_ms;
        if (parse_int(v, vl, 1, 3600000, dst)) {
            *why = "timeouts must be milliseconds from 1 to 3600000";
            return -1;
        }
        return 0;
    }
    if (IS("password")) {
        free(u->password);
        if (!(u->password = decode(v, vl))) {
            *why = "bad %-escape in password";
            return -1;
        }
        return 0;
    }
#undef IS
    *why = "unknown option (known: db, prefix, connect_timeout_ms, "
           "timeout_ms, password)";
    return -1;
}

static int parse_query(lf_redis_url *u, const char *q, bool *db_seen, const char **why) {
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (!eq) {
            *why = "option without a value (use key=value)";
            return -1;
        }
        if (parse_option(u, q, (size_t)(eq - q), eq + 1, n - (size_t)(eq - q) - 1,
                         db_seen, why))
            return -1;
        q += n;
        if (*q == '&') q++;
    }
    return 0;
}

int lf_redis_url_parse(const char *url, lf_redis_url *u, char *err, size_t errlen) {
    const char *why = NULL;
    bool unix_sock = strncmp(url, "unix:", 5) == 0, db_seen = false;
    const char *p;

    memset(u, 0, sizeof *u);
    u->connect_timeout_ms = LF_REDIS_CONNECT_TIMEOUT_MS;
    u->timeout_ms = LF_REDIS_TIMEOUT_MS;
    u->prefix = lf_xstrdup(LF_REDIS_DEFAULT_PREFIX);

    if (unix_sock) {
        p = url + 5;
        if (strncmp(p, "//", 2) == 0) p += 2;   /* unix:///path */
    } else if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else {
        return fail(err, errlen, "not a redis:// or unix: URL");
    }

    const char *q = strchr(p, '?');
    size_t mainlen = q ? (size_t)(q - p) : strlen(p);
    /* Credentials end at an '@' before the first '/': a socket path may
     * well contain an '@' of its own. */
    size_t span = strcspn(p, "/");
    const char *at = memchr(p, '@', span < mainlen ? span : mainlen);
    if (at) {
        if (parse_auth(u, p, (size_t)(at - p))) {
            why = "bad %-escape in credentials";
            goto bad;
        }
        mainlen -= (size_t)(at + 1 - p);
        p = at + 1;
    }

    if (unix_sock) {
        if (mainlen == 0 || p[0] != '/') {
            why = "the socket path must be absolute";
            goto bad;
        }
        if (!(u->path = decode(p, mainlen))) {
            why = "bad %-escape in path";
            goto bad;
        }
    } else {
        const char *slash = memchr(p, '/', mainlen);
        size_t hl = slash ? (size_t)(slash - p) : mainlen;
        if (parse_hostport(u, p, hl, &why)) goto bad;
        if (slash && slash + 1 < p + mainlen) {
            db_seen = true;
            if (parse_int(slash + 1, mainlen - hl - 1, 0, INT_MAX, &u->db)) {
                why = "db must be a non-negative number";
                goto bad;
            }
        }
    }
    if (q && parse_query(u, q + 1, &db_seen, &why)) goto bad;

    if (u->path) snprintf(u->addr, sizeof u->addr, "unix:%s", u->path);
    else if (strchr(u->host, ':'))
        snprintf(u->addr, sizeof u->addr, "[%s]:%d", u->host, u->port);
    else snprintf(u->addr, sizeof u->addr, "%s:%d", u->host, u->port);
    if (u->db) {
        size_t l = strlen(u->addr);
        snprintf(u->addr + l, sizeof u->addr - l, " db %d", u->db);
    }
    return 0;
bad:
    lf_redis_url_free(u);
    return fail(err, errlen, why ? why : "bad %-escape");
}
