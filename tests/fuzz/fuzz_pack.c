/* fuzz_pack.c -- the lines as Redis holds them (store/redis_pack.c).
 * Properties: a line ('{' first, as every sealed line is) packs and
 * unpacks back byte for byte, its policy set referred to and registered
 * as a commit does; and a value we did not write -- the input as it is,
 * or the input as a frame's content, bare or behind a policy set put
 * back as the read scripts do -- is read or refused with a reason, never
 * misread (ASan) and never left half appended. */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "../../src/core/buf.h"
#include "../../src/core/hash.h"
#include "../../src/store/redis.h"
#include "fuzz.h"

/* value unpacked into out, which held `keep` first: refused leaves it
 * as it was, with a reason. */
static void read_value(lf_redis_pack *p, const char *v, size_t n) {
    lf_buf out = LF_BUF_INIT;
    char why[256] = "";
    lf_buf_puts(&out, "keep");
    if (lf_redis_unpack_line(p, v, n, &out, why, sizeof why) != 0 &&
        (out.len != 4 || memcmp(out.p, "keep", 4) != 0 || !why[0]))
        abort();
    lf_buf_free(&out);
}

static void round_trip(lf_redis_pack *p, const char *line, size_t n) {
    lf_buf v = LF_BUF_INIT, back = LF_BUF_INIT;
    char why[256];
    const char *ps = lf_redis_pack_line(p, line, n, false, &v);
    if (ps) {
        char set[LF_HASH_LEN + 1];
        memcpy(set, ps, LF_HASH_LEN);
        set[LF_HASH_LEN] = '\0';
        lf_redis_pack_learn(p, set);
    }
    if (lf_redis_unpack_line(p, v.p, v.len, &back, why, sizeof why) != 0 || back.len != n ||
        memcmp(back.p, line, n) != 0)
        abort();
    lf_buf_free(&v);
    lf_buf_free(&back);
}

/* The input as a frame's content (a plain frame: no dictionary is needed
 * to read it), bare and with a policy set in front. */
static void read_as_frame(lf_redis_pack *p, const uint8_t *data, size_t size) {
    size_t cap = ZSTD_compressBound(size), head = 1 + LF_HASH_LEN;
    char *v = malloc(head + cap);
    size_t n = ZSTD_compress(v + head, cap, data, size, 1);
    if (ZSTD_isError(n)) abort();
    read_value(p, v + head, n);
    v[0] = '\x03';
    memset(v + 1, 'a', LF_HASH_LEN);
    read_value(p, v, head + n);
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lf_redis_pack *p = lf_redis_pack_new();
    if (size > 0 && data[0] == '{') round_trip(p, (const char *)data, size);
    read_value(p, (const char *)data, size);
    read_as_frame(p, data, size);
    lf_redis_pack_free(p);
    return 0;
}
