/* merkle.c -- RFC 6962 hashing of the audit log (merkle.h). */
#include "merkle.h"
#include "hash.h"

#include <string.h>

/* One contiguous 65-byte input: a single digest update, the cheapest
 * EVP can do for the one hash per entry the tree costs. */
static void node(const unsigned char l[32], const unsigned char r[32],
                 unsigned char out[32]) {
    unsigned char in[65];
    in[0] = 1;
    memcpy(in + 1, l, 32);
    memcpy(in + 33, r, 32);
    lf_sha256(in, sizeof in, out);
}

void lf_merkle_leaf(const void *data, size_t len, unsigned char out[32]) {
    static const unsigned char zero = 0;
    const void *parts[] = {&zero, data};
    const size_t lens[] = {1, len};
    lf_sha256_parts(2, parts, lens, out);
}

int lf_merkle_entry_leaf(const char *line, size_t len, unsigned char out[32]) {
    /* ...,"hash":"<64 hex>"} */
    if (len < 66 || line[len - 1] != '}' || line[len - 2] != '"') return -1;
    return lf_unhex_n(line + len - 66, out, 32);
}

void lf_merkle_init(lf_merkle *m) { memset(m, 0, sizeof *m); }

/* Like adding one to a binary counter: equal subtrees merge as the carry
 * goes up. */
void lf_merkle_append(lf_merkle *m, const unsigned char leaf[32]) {
    unsigned char h[32];
    memcpy(h, leaf, 32);
    int k = 0;
    while (k < LF_MERKLE_MAX && (m->size >> k & 1)) {
        node(m->nodes[k], h, h);
        k++;
    }
    memcpy(m->nodes[k], h, 32);
    m->size++;
}

void lf_merkle_root(const lf_merkle *m, unsigned char out[32]) {
    if (m->size == 0) {
        lf_sha256("", 0, out);
        return;
    }
    int k = 0;
    while (!(m->size >> k & 1)) k++;
    unsigned char r[32];
    memcpy(r, m->nodes[k], 32);
    /* The larger (older, left) subtrees fold in from the right. */
    for (k++; k < LF_MERKLE_MAX; k++)
        if (m->size >> k & 1) node(m->nodes[k], r, r);
    memcpy(out, r, 32);
}

/* The largest power of two below n (n > 1). */
static uint64_t split(uint64_t n) {
    uint64_t k = 1;
    while (k << 1 < n) k <<= 1;
    return k;
}

void lf_merkle_root_of(const unsigned char (*leaves)[32], uint64_t n,
                       unsigned char out[32]) {
    if (n == 0) {
        lf_sha256("", 0, out);
        return;
    }
    if (n == 1) {
        memcpy(out, leaves[0], 32);
        return;
    }
    uint64_t k = split(n);
    unsigned char l[32], r[32];
    lf_merkle_root_of(leaves, k, l);
    lf_merkle_root_of(leaves + k, n - k, r);
    node(l, r, out);
}

int lf_merkle_inclusion(const unsigned char (*leaves)[32], uint64_t n, uint64_t m,
                        lf_buf *path) {
    if (n <= 1 || m >= n) return 0;
    uint64_t k = split(n);
    unsigned char sib[32];
    int count;
    if (m < k) {
        count = lf_merkle_inclusion(leaves, k, m, path);
        lf_merkle_root_of(leaves + k, n - k, sib);
    } else {
        count = lf_merkle_inclusion(leaves + k, n - k, m - k, path);
        lf_merkle_root_of(leaves, k, sib);
    }
    lf_buf_add(path, (const char *)sib, 32);
    return count + 1;
}

bool lf_merkle_verify_inclusion(const unsigned char leaf[32], uint64_t m, uint64_t n,
                                const unsigned char *path, int count,
                                const unsigned char root[32]) {
    if (m >= n) return false;
    uint64_t fn = m, sn = n - 1;
    unsigned char r[32];
    memcpy(r, leaf, 32);
    for (int i = 0; i < count; i++) {
        const unsigned char *p = path + 32 * i;
        if (sn == 0) return false;
        if ((fn & 1) || fn == sn) {
            node(p, r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            node(r, p, r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, 32) == 0;
}
