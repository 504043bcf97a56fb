/* hash.h -- hex and SHA-256, written once for every layer: audit entry
 * hashes, the policy set's generation id, token digests, ids. */
#ifndef LF_HASH_H
#define LF_HASH_H

#include <stddef.h>

#define LF_SHA256_LEN 32

/* Writes the 2n lowercase hex digits of p[0..n) and a NUL to out. */
void lf_hex(const void *p, size_t n, char *out);
/* Reads exactly 2n hex digits (either case) followed by the end of s into
 * out[0..n). Returns 0, or -1 (out then undefined). */
int lf_unhex(const char *s, void *out, size_t n);
/* The same for exactly 2n hex digits at s, whatever follows them. */
int lf_unhex_n(const char *s, void *out, size_t n);
/* 1 at each lowercase hex digit (0-9, a-f), else 0: a table, for the
 * scans that test every byte (a digest's 64 digits at every replayed
 * line; the Redis packer's runs of digits), where a lookup is a third
 * faster than comparisons. */
extern const unsigned char lf_hex_lower[256];

/* Standard base64 (RFC 4648, padded) of p[0..n); caller frees. */
char *lf_base64(const void *p, size_t n);
/* Decodes base64 text into a new buffer (caller frees), its length in
 * *outlen; NULL if s is not base64. */
unsigned char *lf_unbase64(const char *s, size_t *outlen);

/* SHA-256 of p[0..n), from any thread. Aborts if OpenSSL cannot hash at
 * all. */
void lf_sha256(const void *p, size_t n, unsigned char out[LF_SHA256_LEN]);
/* SHA-256 of the concatenation of parts[i][0..lens[i]). */
void lf_sha256_parts(int nparts, const void *const *parts, const size_t *lens,
                     unsigned char out[LF_SHA256_LEN]);
/* The same as 64 lowercase hex digits and a NUL. */
void lf_sha256_hex(const void *p, size_t n, char out[2 * LF_SHA256_LEN + 1]);

#endif
