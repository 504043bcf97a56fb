/* hash.c -- hex and SHA-256 (hash.h). */
#include "hash.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

void lf_hex(const void *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Hex digit values, -1 for anything else: a table, because Merkle leaves
 * read a hash per entry. */
static const signed char nibbles[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
    ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};   /* value + 1, so that the zero default means "not hex" */

const unsigned char lf_hex_lower[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
};

int lf_unhex_n(const char *s, void *out, size_t n) {
    unsigned char *b = out;
    for (size_t i = 0; i < n; i++) {
        int hi = nibbles[(unsigned char)s[2 * i]] - 1;
        int lo = hi < 0 ? -1 : nibbles[(unsigned char)s[2 * i + 1]] - 1;
        if (lo < 0) return -1;
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int lf_unhex(const char *s, void *out, size_t n) {
    if (lf_unhex_n(s, out, n)) return -1;
    return s[2 * n] == '\0' ? 0 : -1;
}

char *lf_base64(const void *p, size_t n) {
    char *out = lf_xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

unsigned char *lf_unbase64(const char *s, size_t *outlen) {
    size_t n = strlen(s);
    if (n % 4) return NULL;
    unsigned char *out = lf_xmalloc(n / 4 * 3 + 1);
    int got = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (got < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (n && s[n - 1] == '=') got--;
    if (n > 1 && s[n - 2] == '=') got--;
    *outlen = (size_t)got;
    return out;
}

/* Each thread keeps its own digest context: fetching and allocating one
 * per hash would cost more than hashing a short line. */
static __thread EVP_MD *md;
static __thread EVP_MD_CTX *ctx;

void lf_sha256_thread_end(void) {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    ctx = NULL;
    md = NULL;
}

void lf_sha256_parts(int nparts, const void *const *parts, const size_t *lens,
                     unsigned char out[LF_SHA256_LEN]) {
    unsigned int dl = 0;
    if (!md) md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!ctx) ctx = EVP_MD_CTX_new();
    if (!md || !ctx || !EVP_DigestInit_ex(ctx, md, NULL)) abort();
    for (int i = 0; i < nparts; i++)
        if (!EVP_DigestUpdate(ctx, parts[i], lens[i])) abort();
    if (!EVP_DigestFinal_ex(ctx, out, &dl)) abort();
}

void lf_sha256(const void *p, size_t n, unsigned char out[LF_SHA256_LEN]) {
    lf_sha256_parts(1, &p, &n, out);
}

void lf_sha256_hex(const void *p, size_t n, char out[2 * LF_SHA256_LEN + 1]) {
    unsigned char d[LF_SHA256_LEN];
    lf_sha256(p, n, d);
    lf_hex(d, sizeof d, out);
}
