/* test_merkle.c -- RFC 6962 hashing (src/core/merkle.c) against
 * Certificate Transparency's published test vectors (the roots of the
 * first 1..8 leaves of its reference inputs), the compact appender
 * against the recursive definition, and inclusion proofs for every leaf
 * of a 1,000-leaf tree (and their failure for a wrong leaf or index). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/core/hash.h"
#include "../src/core/merkle.h"

static const char *const CT_ROOTS[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

static void test_ct_vectors(void **state) {
    (void)state;
    static const char *const in[8] = {
        "",
        "\x00",
        "\x10",
        "\x20\x21",
        "\x30\x31",
        "\x40\x41\x42\x43",
        "\x50\x51\x52\x53\x54\x55\x56\x57",
        "\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"};
    static const size_t len[8] = {0, 1, 1, 2, 2, 4, 8, 16};
    unsigned char leaves[8][32], root[32];
    char hex[65];
    lf_merkle m;
    lf_merkle_init(&m);
    lf_merkle_root(&m, root);
    lf_hex(root, 32, hex);
    assert_string_equal(
        hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    for (int i = 0; i < 8; i++) {
        lf_merkle_leaf(in[i], len[i], leaves[i]);
        lf_merkle_append(&m, leaves[i]);
        lf_merkle_root(&m, root);
        lf_hex(root, 32, hex);
        assert_string_equal(hex, CT_ROOTS[i]);
        lf_merkle_root_of((const unsigned char(*)[32])leaves, (uint64_t)i + 1, root);
        lf_hex(root, 32, hex);
        assert_string_equal(hex, CT_ROOTS[i]);
    }
}

static void test_proofs_1000(void **state) {
    (void)state;
    enum { N = 1000 };
    unsigned char(*leaves)[32] = malloc(N * sizeof *leaves), root[32], fresh[32];
    lf_merkle m;
    lf_merkle_init(&m);
    for (int i = 0; i < N; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "{\"seq\":%d}", i + 1);
        lf_merkle_leaf(line, (size_t)n, leaves[i]);
        lf_merkle_append(&m, leaves[i]);
    }
    lf_merkle_root(&m, root);
    lf_merkle_root_of((const unsigned char(*)[32])leaves, N, fresh);
    assert_memory_equal(root, fresh, 32);
    int longest = 0;
    for (uint64_t i = 0; i < N; i++) {
        lf_buf path = LF_BUF_INIT;
        int k = lf_merkle_inclusion((const unsigned char(*)[32])leaves, N, i, &path);
        if (k > longest) longest = k;
        const unsigned char *p = (const unsigned char *)path.p;
        assert_true(lf_merkle_verify_inclusion(leaves[i], i, N, p, k, root));
        /* another leaf, another index, another root: refused */
        assert_false(lf_merkle_verify_inclusion(leaves[(i + 1) % N], i, N, p, k, root));
        assert_false(lf_merkle_verify_inclusion(leaves[i], (i + 1) % N, N, p, k, root));
        unsigned char other[32];
        memcpy(other, root, 32);
        other[i % 32] ^= 1;
        assert_false(lf_merkle_verify_inclusion(leaves[i], i, N, p, k, other));
        lf_buf_free(&path);
    }
    assert_int_equal(longest, 10);      /* O(log n): ceil(log2 1000) */
    free(leaves);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_vectors),
        cmocka_unit_test(test_proofs_1000),
    };
    return cmocka_run_group_tests_name("merkle (RFC 6962)", tests, NULL, NULL);
}
