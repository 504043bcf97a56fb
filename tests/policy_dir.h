/* policy_dir.h -- test helpers: a temporary policy directory under /tmp
 * holding the shipped workflow, files written into it, and the exact
 * `file:line: message` text a broken set must fail with. Shared by the
 * rules-layer suites (policies, routes); removed after each test. */
#ifndef LF_TEST_POLICY_DIR_H
#define LF_TEST_POLICY_DIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "../src/rules/rules.h"

typedef struct tdir {
    char root[64];
} tdir;

/* A whole file (fails the test if it cannot be read); *len if len. */
static inline char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    lf_buf b = LF_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) lf_buf_add(&b, chunk, n);
    fclose(f);
    if (len) *len = b.len;
    return lf_buf_steal(&b);
}

/* Writes root/rel, creating its directories. */
static inline void put(tdir *d, const char *rel, const char *src) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", d->root, rel);
    for (char *p = path + strlen(d->root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(src, 1, strlen(src), f), strlen(src));
    fclose(f);
}

/* Copies the repository's policies/rel into the directory. */
static inline void copy_in(tdir *d, const char *rel) {
    char from[256];
    snprintf(from, sizeof from, "policies/%s", rel);
    char *src = slurp(from, NULL);
    put(d, rel, src);
    free(src);
}

/* A fresh directory holding the shipped workflow only. */
static inline int setup_dir(void **state) {
    tdir *d = calloc(1, sizeof *d);
    assert_non_null(d);
    strcpy(d->root, "/tmp/lf_pol_XXXXXX");
    assert_non_null(mkdtemp(d->root));
    copy_in(d, "workflows/loopforge.lua");
    *state = d;
    return 0;
}

static inline int rm_entry(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline int teardown_dir(void **state) {
    tdir *d = *state;
    nftw(d->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    return 0;
}

/* "%s" in fmt stands for the root directory. */
static inline void expand(tdir *d, const char *fmt, char *out, size_t n) {
    char *w = out, *end = out + n - 1;
    for (const char *p = fmt; *p && w < end; p++) {
        if (p[0] == '%' && p[1] == 's') {
            w += snprintf(w, (size_t)(end - w), "%s", d->root);
            p++;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
}

/* Loading the directory fails with exactly this text. */
static inline void expect_errors(tdir *d, const char *fmt) {
    char want[8192];
    expand(d, fmt, want, sizeof want);
    lf_buf err = LF_BUF_INIT;
    lf_rules *r = lf_rules_load(d->root, &err);
    bool loaded = r != NULL;
    lf_rules_free(r);
    char got[8192];
    snprintf(got, sizeof got, "%s", lf_buf_str(&err));
    lf_buf_free(&err);
    assert_false(loaded);
    assert_string_equal(got, want);
}

#endif
