/* auth.c -- who may call the API: the tokens file, bearer checks, and the
 * webhook secret.
 *
 * The tokens file holds one token per line, "NAME ROLE SHA256HEX", where
 * the digest is sha256 of the token string; '#' starts a comment. The
 * server never sees a token in clear except in the request that presents
 * it, and keeps only digests, so a leaked tokens file leaks no credential.
 * `loopforge token NAME ROLE` makes a token and its line. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "internal.h"
#include "../core/hash.h"

typedef struct lf_token {
    char name[65];
    lf_role role;
    char roles[LF_ROLES_MAX];   /* the whole ROLE field: "write,maintainer" */
    char kind[16];              /* kind=: human, agent or app; "" = unsaid */
    char principal[65];         /* principal=: the human an agent acts for */
    unsigned char digest[SHA256_DIGEST_LENGTH];
} lf_token;

struct lf_tokens {
    lf_token *v;
    size_t n;
};

static const char *const role_names[] = {"none", "read", "write", "admin"};

const char *lf_role_name(lf_role r) {
    return (unsigned)r <= LF_ROLE_ADMIN ? role_names[r] : "none";
}

/* One name of a ROLE field, [A-Za-z0-9._-]+. */
static bool role_name_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return n > 0;
}

int lf_role_parse(const char *s, lf_role *out) {
    int access = 0;
    if (strlen(s) >= LF_ROLES_MAX) return -1;
    for (const char *p = s; p;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (!role_name_ok(p, n)) return -1;
        for (int i = LF_ROLE_READ; i <= LF_ROLE_ADMIN; i++)
            if (strlen(role_names[i]) == n && memcmp(p, role_names[i], n) == 0) {
                if (access++) return -1;
                *out = (lf_role)i;
            }
        p = c ? c + 1 : NULL;
    }
    return access == 1 ? 0 : -1;
}

/* No ':' on purpose: "github:…" and "hook:…" actors stay unforgeable. */
bool lf_token_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-') return false;
    }
    return true;
}

/* One line of the file into t (fields separated by blanks). */
static int parse_line(char *line, lf_token *t, const char **why) {
    char *save = NULL;
    char *name = strtok_r(line, " \t", &save);
    char *role = strtok_r(NULL, " \t", &save);
    char *hex = strtok_r(NULL, " \t", &save), *extra;
    if (!name || !role || !hex)
        return *why = "expected NAME ROLE SHA256HEX [kind=KIND] [principal=NAME]", -1;
    t->kind[0] = t->principal[0] = '\0';
    while ((extra = strtok_r(NULL, " \t", &save))) {
        if (!strncmp(extra, "kind=", 5) &&
            (!strcmp(extra + 5, "human") || !strcmp(extra + 5, "agent") ||
             !strcmp(extra + 5, "app")))
            snprintf(t->kind, sizeof t->kind, "%s", extra + 5);
        else if (!strncmp(extra, "principal=", 10) && lf_token_name_valid(extra + 10))
            snprintf(t->principal, sizeof t->principal, "%s", extra + 10);
        else
            return *why = "after the digest only kind=human|agent|app and principal=NAME",
                   -1;
    }
    if (!lf_token_name_valid(name))
        return *why = "token name must be 1-64 of [A-Za-z0-9._-]", -1;
    if (lf_role_parse(role, &t->role)) return *why = LF_ROLE_HELP, -1;
    snprintf(t->roles, sizeof t->roles, "%s", role);
    if (strlen(hex) != 2 * SHA256_DIGEST_LENGTH ||
        lf_unhex(hex, t->digest, SHA256_DIGEST_LENGTH))
        return *why = "digest must be 64 hex digits (sha256 of the token)", -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    return 0;
}

lf_tokens *lf_tokens_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    lf_tokens *ts = lf_xcalloc(1, sizeof *ts);
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        if (line[strspn(line, " \t")] == '\0') continue;
        lf_token t;
        const char *why = NULL;
        if (parse_line(line, &t, &why)) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
            goto fail;
        }
        for (size_t i = 0; i < ts->n; i++)
            if (strcmp(ts->v[i].name, t.name) == 0) {
                snprintf(err, errlen, "%s:%d: token name '%s' given twice", path, lineno,
                         t.name);
                goto fail;
            }
        ts->v = lf_xrealloc(ts->v, (ts->n + 1) * sizeof *ts->v);
        ts->v[ts->n++] = t;
    }
    free(line);
    fclose(f);
    return ts;
fail:
    free(line);
    fclose(f);
    lf_tokens_free(ts);
    return NULL;
}

void lf_tokens_free(lf_tokens *t) {
    if (!t) return;
    OPENSSL_cleanse(t->v, t->n * sizeof *t->v);
    free(t->v);
    free(t);
}

size_t lf_tokens_count(const lf_tokens *t) { return t ? t->n : 0; }

const char *lf_tokens_check(const lf_tokens *t, const char *authz, lf_role *role,
                            const char **roles, const char **kind,
                            const char **principal) {
    if (!authz || strncasecmp(authz, "Bearer ", 7) != 0) return NULL;
    const char *tok = authz + 7;
    while (*tok == ' ') tok++;
    size_t len = strlen(tok);
    while (len && tok[len - 1] == ' ') len--;
    if (!len) return NULL;
    unsigned char d[SHA256_DIGEST_LENGTH];
    lf_sha256(tok, len, d);
    /* Compare with every entry, each in constant time: neither the match
     * nor its position shows in the timing. */
    const lf_token *hit = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (CRYPTO_memcmp(d, t->v[i].digest, sizeof d) == 0) hit = &t->v[i];
    if (!hit) return NULL;
    *role = hit->role;
    if (roles) *roles = hit->roles;
    if (kind) *kind = hit->kind[0] ? hit->kind : NULL;
    if (principal) *principal = hit->principal[0] ? hit->principal : NULL;
    return hit->name;
}

int lf_token_new(const char *name, const char *roles, char token[64],
                 char line[LF_TOKEN_LINE]) {
    unsigned char raw[24], d[SHA256_DIGEST_LENGTH];
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    if (RAND_bytes(raw, sizeof raw) != 1) return -1;
    memcpy(token, "lf_", 3);
    lf_hex(raw, sizeof raw, token + 3);
    OPENSSL_cleanse(raw, sizeof raw);
    lf_sha256(token, strlen(token), d);
    lf_hex(d, sizeof d, hex);
    snprintf(line, LF_TOKEN_LINE, "%s %s %s", name, roles, hex);
    return 0;
}

#define MAX_SECRET 4096

unsigned char *lf_secret_load(const char *path, size_t *len, char *err, size_t errlen) {
    size_t n;
    unsigned char *buf = (unsigned char *)lf_read_file(path, &n);
    if (!buf || n > MAX_SECRET) {
        snprintf(err, errlen, "%s: %s", path,
                 buf ? "longer than 4096 bytes" : strerror(errno));
        free(buf);
        return NULL;
    }
    /* Editors add a final newline; GitHub's secret field has none. */
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if (n == 0) {
        snprintf(err, errlen, "%s: the webhook secret is empty", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}
