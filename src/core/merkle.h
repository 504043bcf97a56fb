/* merkle.h -- a Merkle tree over the audit log, hashed as RFC 6962
 * (Certificate Transparency) does: leaf = SHA-256(0x00 || leaf data),
 * node = SHA-256(0x01 || left || right), the tree of n leaves split at
 * the largest power of two below n. An entry's leaf hash is its own
 * `hash`: SHA-256 over its line (without the hash key), which starts with
 * '{' -- never 0x01, so no leaf preimage is a node's, the separation the
 * 0x00 prefix gives CT's leaves. The tree then costs one 65-byte hash per
 * entry (amortized), and a CT library's inclusion check, which takes the
 * leaf hash, accepts our proofs as they are.
 *
 * lf_merkle is the compact form an appender keeps: the roots of the
 * perfect subtrees the leaves so far make up (one per bit of the size),
 * so appending is O(1) amortized and the root O(log n). Proofs are made
 * from the leaf hashes themselves (the log is there to read) and checked
 * in O(log n) with nothing but the root. */
#ifndef LF_MERKLE_H
#define LF_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define LF_MERKLE_MAX 64

typedef struct lf_merkle {
    uint64_t size;                          /* leaves appended */
    unsigned char nodes[LF_MERKLE_MAX][32]; /* nodes[k]: the subtree of 2^k
                                               leaves, when bit k of size */
} lf_merkle;

void lf_merkle_leaf(const void *data, size_t len, unsigned char out[32]);
/* The leaf of an entry from its stored line (whose last key is its
 * hash). Returns -1 if the line does not end with a hash. */
int lf_merkle_entry_leaf(const char *line, size_t len, unsigned char out[32]);
void lf_merkle_init(lf_merkle *m);
void lf_merkle_append(lf_merkle *m, const unsigned char leaf[32]);
/* The root of the leaves so far (SHA-256 of nothing for none). */
void lf_merkle_root(const lf_merkle *m, unsigned char out[32]);

/* The root of leaves[0..n). */
void lf_merkle_root_of(const unsigned char (*leaves)[32], uint64_t n,
                       unsigned char out[32]);
/* The audit path of leaf m in the tree of leaves[0..n) (RFC 6962 2.1.1):
 * appends its hashes to path (32 bytes each) and returns how many. */
int lf_merkle_inclusion(const unsigned char (*leaves)[32], uint64_t n, uint64_t m,
                        lf_buf *path);
/* Whether `path` (count hashes) proves `leaf` is leaf m of the tree of
 * size n with root `root` (RFC 9162 2.1.3.2). */
bool lf_merkle_verify_inclusion(const unsigned char leaf[32], uint64_t m, uint64_t n,
                                const unsigned char *path, int count,
                                const unsigned char root[32]);

#endif
