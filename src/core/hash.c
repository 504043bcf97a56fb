/* hash.c -- hex and SHA-256 (hash.h). */
/* Before any OpenSSL header: SHA256_* (below) are deprecated since 3.0. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "hash.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <openssl/evp.h>
#include <openssl/sha.h>

#ifdef __SSE2__
/* 16 bytes as 32 lower-case hex digits: each entry's hash is written out
 * as hex (a byte at a time, ~4 % of a transition's instructions). */
static void hex16(const unsigned char *b, char *out) {
    const __m128i low = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9),
                  zero = _mm_set1_epi8('0'), past9 = _mm_set1_epi8('a' - '0' - 10);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)b);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), low), lo = _mm_and_si128(v, low);
    __m128i d[2] = {_mm_unpacklo_epi8(hi, lo), _mm_unpackhi_epi8(hi, lo)};
    for (int k = 0; k < 2; k++) {
        __m128i a = _mm_and_si128(_mm_cmpgt_epi8(d[k], nine), past9);
        _mm_storeu_si128((__m128i *)(void *)(out + 16 * k),
                         _mm_add_epi8(_mm_add_epi8(d[k], zero), a));
    }
}
#endif

void lf_hex(const void *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = p;
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 16 <= n; i += 16) hex16(b + i, out + 2 * i);
#endif
    for (; i < n; i++) {
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

/* SHA-256 through OpenSSL's SHA256_* functions, not EVP: EVP's init and
 * final cost ~0.1 us a hash beyond the hashing itself (measured here:
 * a 500-byte line 0.45 us against 0.35, a 65-byte Merkle node 0.21 against
 * 0.11), and every entry is hashed once to be sealed and twice more in a
 * Merkle tree. They are deprecated since OpenSSL 3.0, still in 4.x, and
 * use the same SHA-NI/AVX2 code as EVP's default provider; a FIPS
 * provider would not see these hashes (the signatures stay EVP's). No
 * state is kept: any thread may hash. */
void lf_sha256_parts(int nparts, const void *const *parts, const size_t *lens,
                     unsigned char out[LF_SHA256_LEN]) {
    SHA256_CTX c;
    if (!SHA256_Init(&c)) abort();
    for (int i = 0; i < nparts; i++)
        if (!SHA256_Update(&c, parts[i], lens[i])) abort();
    if (!SHA256_Final(out, &c)) abort();
}

void lf_sha256(const void *p, size_t n, unsigned char out[LF_SHA256_LEN]) {
    lf_sha256_parts(1, &p, &n, out);
}

void lf_sha256_hex(const void *p, size_t n, char out[2 * LF_SHA256_LEN + 1]) {
    unsigned char d[LF_SHA256_LEN];
    lf_sha256(p, n, d);
    lf_hex(d, sizeof d, out);
}
