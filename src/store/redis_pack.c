/* redis_pack.c -- the sealed lines as Redis holds them: each a zstd frame
 * of the line with its hex digests as bytes and without its own hash
 * (computed again when it is read), compressed with a fixed dictionary
 * of the line format, about a third of the line (the two digests left,
 * 64 bytes, are a third of what is left: no dictionary shrinks them). Packing
 * is Redis's business only: the journal keeps its lines as they are, and
 * everything above the store (verification, audit, evidence) sees the
 * exact sealed bytes, which a frame gives back byte for byte -- nothing
 * is re-serialized. Lines written by older versions are stored as they
 * are ('{' first, a frame never) and read the same.
 *
 * The dictionary is raw content (zstd takes it as history the frame may
 * refer back into), so it needs no training and no file: what a line
 * repeats -- the keys in canonical order, the kinds, the shipped
 * workflows' states and triggers, the shipped guards' decisions -- with
 * what is most common last, where references are cheapest. A frame
 * depends on these exact bytes forever: never edit them. A new dictionary
 * would need its own mark (a frame without zstd's magic, say) beside this
 * one. */
#include "redis.h"

#include "../core/entry.h"
#include "../core/hash.h"

#include <stdio.h>
#include <string.h>
#include <zstd.h>

/* Version 1. Frozen: every frame written with it needs it to be read. */
static const char dict_v1[] =
    "{\"seq\":1,\"record_id\":null,\"kind\":\"policy_loaded\",\"version\":0,"
    "\"from_state\":null,\"to_state\":null,\"trigger\":\"announce\",\"actor\":\"serve\","
    "\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"metadata\":{\"new_generation\":\"\","
    "\"files\":[{\"path\":\"policies/config.lua\",\"sha256\":\"\"},{\"path\":\"policies/"
    "guards/\",\"sha256\":\"\"},{\"path\":\"policies/hooks/\",\"sha256\":\"\"},{\"path\":"
    "\"policies/routes/github.lua\",\"sha256\":\"\"},{\"path\":\"policies/workflows/"
    "loopforge.lua\",\"sha256\":\"\"}]},\"decisions\":[],\"policy_set\":\"\","
    "\"idempotency_key\":\"announce:\",\"prev\":\"\",\"hash\":\"\"}\n"
    "{\"kind\":\"checkpoint\",\"trigger\":\"checkpoint\",\"metadata\":{\"size\":,"
    "\"root\":\"\",\"key_id\":\"\",\"signature\":\"\"}}\n"
    "{\"kind\":\"noted\",\"trigger\":\"schedule\",\"changes\":{\"timers\":[{\"name\":\"\","
    "\"at\":\"\",\"to\":\"\",\"trigger\":\"timer.\"}]}}\n"
    "{\"kind\":\"deleted\",\"trigger\":\"deleted\"}\n"
    "{\"kind\":\"observed\",\"trigger\":\"check_suite.completed\",\"metadata\":{\"name\":\"\","
    "\"app\":\"github-actions\",\"status\":\"completed\",\"conclusion\":\"success\","
    "\"attempt\":1,\"head_sha\":\"\",\"source\":\"check_run\"},\"violation\":{\"rule\":\"\","
    "\"reason\":\"\"}}\n"
    "{\"kind\":\"rejected\",\"decisions\":[{\"policy\":\"no-self-approval\","
    "\"verdict\":\"deny\",\"reason\":\"\"},{\"policy\":\"budget:\",\"verdict\":\"deny\","
    "\"reason\":\"budget spent: \"},{\"policy\":\"retries:ci_failed\",\"verdict\":\"deny\","
    "\"reason\":\"retry budget exhausted\"}],\"authority\":{\"roles\":[\"maintainer\","
    "\"breakglass\"],\"source\":\"token\",\"override\":{\"reason\":\"\",\"co_signer\":\"\","
    "\"used\":true}},\"request\":\"\"}\n"
    "{\"kind\":\"denied\",\"trigger\":\"pr.opened\",\"actor\":\"github:\","
    "\"metadata\":{\"title\":\"\",\"pull_request\":true,\"pr_url\":\"https://github.com/\","
    "\"pr_number\":,\"head_sha\":\"\",\"aliases\":[\"sha:\"],\"delivery\":\"\"},"
    "\"authority\":{\"identity\":{\"kind\":\"agent\",\"person\":\"\",\"principal\":\"\"}},"
    "\"idempotency_key\":\"github:\"}\n"
    "{\"from_state\":\"created\",\"to_state\":\"in_progress\",\"trigger\":\"stage.\"},"
    "{\"from_state\":\"in_progress\",\"to_state\":\"passed_pipeline\"},{\"to_state\":"
    "\"failed_pipeline\"},{\"to_state\":\"integrated\",\"workflow\":\"factory\"}\n"
    "{\"from_state\":\"open\",\"to_state\":\"in_progress\"},{\"to_state\":\"done\"},"
    "{\"from_state\":\"pending\",\"to_state\":\"armed\"},{\"to_state\":\"running\","
    "\"trigger\":\"unit.timeout\"},{\"trigger\":\"unit.retry\",\"workflow\":\"specfuse\"}\n"
    "{\"seq\":2,\"record_id\":\"loop-\",\"kind\":\"created\",\"version\":1,\"from_state\":null,"
    "\"to_state\":\"issue_created\",\"trigger\":\"created\",\"actor\":\"cli:unknown\","
    "\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"metadata\":{\"ref\":\"https://github.com/"
    "/issues/\",\"repo\":null},\"decisions\":[],\"policy_set\":\"\",\"record\":{\"ref\":"
    "\"https://github.com//issues/\",\"ref_number\":null,\"repo\":null,\"auto_merge\":false,"
    "\"labels\":{},\"metadata\":{},\"workflow\":\"loopforge\",\"parent\":\"loop-\"},"
    "\"prev\":\"\",\"hash\":\"\"}\n"
    "{\"from_state\":\"ci_pending\",\"to_state\":\"ci_failed\",\"trigger\":\"ci.failed\"},"
    "{\"from_state\":\"ci_failed\",\"to_state\":\"ci_pending\",\"trigger\":\"ci.retry\"},"
    "{\"to_state\":\"escalated\",\"trigger\":\"retry.exhausted\"},{\"from_state\":"
    "\"ci_passed\",\"to_state\":\"awaiting_review\",\"trigger\":\"review.requested\"},"
    "{\"from_state\":\"awaiting_review\",\"to_state\":\"approved\",\"trigger\":"
    "\"review.approved\"},{\"trigger\":\"review.sla_expired\"},{\"from_state\":\"approved\","
    "\"to_state\":\"merged\",\"trigger\":\"pr.merged\"}\n"
    "{\"seq\":7,\"record_id\":\"loop-\",\"kind\":\"transition\",\"version\":6,"
    "\"from_state\":\"ci_passed\",\"to_state\":\"merged\",\"trigger\":\"auto.merged\","
    "\"actor\":\"cli:unknown\",\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"metadata\":{},"
    "\"decisions\":[{\"policy\":\"agent-prs-need-human-approval\",\"verdict\":\"allow\","
    "\"reason\":null},{\"policy\":\"blocking-labels\",\"verdict\":\"allow\",\"reason\":null},"
    "{\"policy\":\"high-risk-merge-needs-approval\",\"verdict\":\"allow\",\"reason\":null},"
    "{\"policy\":\"merge-freeze\",\"verdict\":\"allow\",\"reason\":null},{\"policy\":"
    "\"review-unless-auto-merge\",\"verdict\":\"allow\",\"reason\":null}],\"policy_set\":\"\","
    "\"prev\":\"\",\"hash\":\"\"}\n"
    "{\"seq\":8,\"record_id\":\"loop-\",\"kind\":\"transition\",\"version\":7,"
    "\"from_state\":\"merged\",\"to_state\":\"closed\",\"trigger\":\"issue.closed\","
    "\"actor\":\"cli:unknown\",\"timestamp\":\"2026-01-01T00:00:00.000000Z\","
    "\"metadata\":{},\"decisions\":[],\"policy_set\":\"\",\"prev\":\"\",\"hash\":\"\"}\n"
    "{\"seq\":3,\"record_id\":\"loop-\",\"kind\":\"transition\",\"version\":2,"
    "\"from_state\":\"issue_created\",\"to_state\":\"task_queued\",\"trigger\":\"manual\","
    "\"actor\":\"cli:unknown\",\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"metadata\":{},"
    "\"decisions\":[],\"policy_set\":\"\",\"prev\":\"\",\"hash\":\"\"}\n"
    "{\"seq\":4,\"record_id\":\"loop-\",\"kind\":\"transition\",\"version\":3,"
    "\"from_state\":\"task_queued\",\"to_state\":\"pr_created\",\"trigger\":\"pr.opened\","
    "\"actor\":\"cli:unknown\",\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"metadata\":{},"
    "\"decisions\":[],\"policy_set\":\"\",\"prev\":\"\",\"hash\":\"\"}\n"
    "{\"seq\":6,\"record_id\":\"loop-\",\"kind\":\"transition\",\"version\":5,"
    "\"from_state\":\"ci_pending\",\"to_state\":\"ci_passed\",\"trigger\":\"ci.passed\","
    "\"actor\":\"cli:unknown\",\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"metadata\":{},"
    "\"decisions\":[],\"policy_set\":\"\",\"prev\":\"\",\"hash\":\"\"}\n"
    "{\"seq\":5,\"record_id\":\"loop-\",\"kind\":\"transition\",\"version\":4,"
    "\"from_state\":\"pr_created\",\"to_state\":\"ci_pending\",\"trigger\":\"ci.started\","
    "\"actor\":\"cli:unknown\",\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"metadata\":{},"
    "\"decisions\":[],\"policy_set\":\"\",\"prev\":\"\",\"hash\":\"\"}";

/* The most a frame may unpack to: far above any line a request can make,
 * and a bound on what a damaged or hostile value can make us allocate. */
#define PACK_MAX ((unsigned long long)64 << 20)

struct lf_redis_pack {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    ZSTD_CDict *cdict;
    ZSTD_DDict *ddict;
    lf_buf flat;  /* a line with its digests as bytes (below) */
    lf_buf unref; /* digests never referred to (REF), 64 hex each */
    /* Policy sets this client knows Redis holds, 64 hex each, run
     * together (their first 8 digits are the REF_ID bytes that refer to
     * them): the scripts that read lines leave a value that refers to one
     * of these as it is, and the client puts the digest back
     * (lf_redis_pack_known). */
    lf_buf sets;
};

/* Digests as bytes. Most of what a frame cannot shrink is hex: the three
 * 64-digit digests of every line (prev, hash, policy_set), a head_sha's
 * 40, a record id's 16. Before compressing, every run of 16 or more
 * lowercase hex digits (an even number, up to 254 at a time) becomes
 * MARK, a count of bytes and those bytes -- half the size: a 471-byte
 * transition packs to 184 bytes instead of 277. A sealed line is JSON, in
 * which MARK (a control byte) never appears raw; a line that holds one
 * anyway is kept whole, so a MARK in a frame's content always starts a
 * run. Frames written before this hold no MARK and read as they were. */
#define MARK '\x01'
#define RUN_MIN 16  /* hex digits: shorter runs are left as they are */
#define RUN_MAX 254 /* hex digits a MARK's count byte can name */
/* A line's own hash is not kept: it is the SHA-256 of the rest of the
 * line, computed again at unpacking (~0.4 us) -- 34 bytes of a ~184-byte
 * frame. A line whose hash key is its own ends, with that key left out,
 * in MARK and a count of 0 (which no run has); any other is packed with
 * its hash key as it is. Nothing is lost to verification: a stored hash
 * proves nothing a tamperer could not recompute; what catches a changed
 * line is the next line's prev, the head and the signed checkpoints, and
 * they still do. */
#define OWN_HASH "\x01\x00"
/* The policy set a line names is 32 of its bytes, the same in every line
 * a policy set judged. A value may refer to it instead: REF, the first
 * REF_ID bytes of the digest, then the frame, whose content holds
 * POLICY_SET (MARK and a count of 1, which no run has) where the digest
 * was. Redis keeps each digest once, in P log:psets (REF_ID bytes as hex
 * -> the digest), which the commit that writes such a value fills in
 * first; the scripts that read lines put the digest back in front of
 * the frame (RESOLVED, then 64 hex digits, then the frame: redis_lua.c's
 * LINE_LUA), but for the sets the client says it knows (its own commits
 * registered them: lf_redis_pack_learn), which it puts back itself. A
 * digest whose first bytes another one already has is never referred to
 * (lf_redis_pack_unref). 27 bytes a line. */
#define REF '\x02'
#define RESOLVED '\x03'
#define REF_ID 4
#define POLICY_SET "\x01\x01"
#define PS_KEY ",\"policy_set\":\""

/* Appends s with its runs as bytes to out. */
static void digests_to_bytes(const char *s, size_t n, lf_buf *out) {
    lf_buf_reserve(out, n);
    size_t i = 0, lit = 0;
    while (i < n) {
        if (!lf_hex_lower[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && lf_hex_lower[(unsigned char)s[j]]) j++;
        while (j - i >= RUN_MIN) {
            size_t k = (j - i) & ~(size_t)1;
            if (k > RUN_MAX) k = RUN_MAX;
            lf_buf_add(out, s + lit, i - lit);
            char *o = out->p + out->len;
            o[0] = MARK;
            o[1] = (char)(k / 2);
            lf_unhex_n(s + i, o + 2, k / 2); /* (cannot fail: every digit is hex) */
            out->len += 2 + k / 2;
            i += k;
            lit = i;
        }
        i = j;
    }
    lf_buf_add(out, s + lit, n - lit);
}

/* The inverse, appending to out, with the 64 hex digits pset where the
 * content says POLICY_SET. Returns 0, 1 if it ended in OWN_HASH (the
 * line's hash key is to be added), or -1 if a run is cut short, its count
 * is not one this file writes, or there is no pset for a POLICY_SET (a
 * damaged value that still unpacked). */
static int bytes_to_digests(const char *s, size_t n, const char *pset, lf_buf *out) {
    const char *end = s + n;
    while (s < end) {
        const char *m = memchr(s, MARK, (size_t)(end - s));
        if (!m) m = end;
        lf_buf_add(out, s, (size_t)(m - s));
        if (m == end) break;
        if (end - m < 2) return -1;
        size_t k = (unsigned char)m[1];
        if (k == 0) return end - m == 2 ? 1 : -1;   /* OWN_HASH, last */
        if (k == 1) {                               /* POLICY_SET */
            if (!pset) return -1;
            lf_buf_add(out, pset, LF_HASH_LEN);
            s = m + 2;
            continue;
        }
        if (k < RUN_MIN / 2 || k > RUN_MAX / 2 || (size_t)(end - m - 2) < k) return -1;
        lf_buf_reserve(out, 2 * k + 1);
        lf_hex(m + 2, k, out->p + out->len);
        out->len += 2 * k;
        s = m + 2 + k;
    }
    return 0;
}

lf_redis_pack *lf_redis_pack_new(void) {
    lf_redis_pack *p = lf_xcalloc(1, sizeof *p);
    p->dctx = ZSTD_createDCtx();
    p->ddict = ZSTD_createDDict(dict_v1, sizeof dict_v1 - 1);
    if (!p->dctx || !p->ddict) lf_oom(sizeof dict_v1);
    return p;
}

/* The packing side is made at the first commit: its tables (~0.3 MB of
 * a process's RSS) are most of what packing takes, and a process that
 * only reads needs none of them. */
static void pack_ready(lf_redis_pack *p) {
    if (p->cdict) return;
    p->cctx = ZSTD_createCCtx();
    /* A fast (negative) level: it leaves literals as they are, and for a
     * line of a few hundred bytes a Huffman table per frame costs more
     * than it saves. Measured on a 471-byte transition: level 1 packs it
     * to 191 bytes in 3.6 us and unpacks it in 1.6 us; level -5 to 277
     * bytes in 1.2 us and 0.16 us (what a record's fold pays per line). */
    p->cdict = ZSTD_createCDict(dict_v1, sizeof dict_v1 - 1, -5);
    if (!p->cctx || !p->cdict) lf_oom(sizeof dict_v1);
}

void lf_redis_pack_free(lf_redis_pack *p) {
    if (!p) return;
    ZSTD_freeCCtx(p->cctx);
    ZSTD_freeDCtx(p->dctx);
    ZSTD_freeCDict(p->cdict);
    ZSTD_freeDDict(p->ddict);
    lf_buf_free(&p->flat);
    lf_buf_free(&p->unref);
    lf_buf_free(&p->sets);
    free(p);
}

/* Where the line names its policy set (the 64 digits after PS_KEY), if
 * a value may refer to it, else NULL. */
static const char *pset_of(const lf_redis_pack *p, const char *line, size_t len) {
    const char *k = memmem(line, len, PS_KEY, sizeof PS_KEY - 1);
    if (!k) return NULL;
    const char *d = k + sizeof PS_KEY - 1;
    if ((size_t)(line + len - d) < LF_HASH_LEN + 1 || d[LF_HASH_LEN] != '"') return NULL;
    for (int i = 0; i < LF_HASH_LEN; i++)
        if (!lf_hex_lower[(unsigned char)d[i]]) return NULL;
    for (size_t i = 0; i < p->unref.len; i += LF_HASH_LEN)
        if (memcmp(p->unref.p + i, d, LF_HASH_LEN) == 0) return NULL;
    return d;
}

void lf_redis_pack_unref(lf_redis_pack *p, const char *pset) {
    lf_buf_add(&p->unref, pset, LF_HASH_LEN);
    /* Nor read as known: its bytes name another set in Redis now. */
    for (size_t i = 0; i < p->sets.len; i += LF_HASH_LEN) {
        if (memcmp(p->sets.p + i, pset, LF_HASH_LEN) != 0) continue;
        memmove(p->sets.p + i, p->sets.p + i + LF_HASH_LEN, p->sets.len - i - LF_HASH_LEN);
        p->sets.len -= LF_HASH_LEN;
        p->sets.p[p->sets.len] = '\0';
        return;
    }
}

/* The known policy set whose first REF_ID bytes are ref, or NULL. */
static const char *known_set(const lf_redis_pack *p, const char *ref) {
    char hex[2 * REF_ID + 1];
    lf_hex(ref, REF_ID, hex);
    for (size_t i = 0; i < p->sets.len; i += LF_HASH_LEN)
        if (memcmp(p->sets.p + i, hex, 2 * REF_ID) == 0) return p->sets.p + i;
    return NULL;
}

void lf_redis_pack_learn(lf_redis_pack *p, const char *pset) {
    char ref[REF_ID];
    if (lf_unhex_n(pset, ref, REF_ID) != 0 || known_set(p, ref)) return;
    lf_buf_add(&p->sets, pset, LF_HASH_LEN);
}

const char *lf_redis_pack_known(const lf_redis_pack *p) { return p->sets.len ? p->sets.p : ""; }

const char *lf_redis_pack_line(lf_redis_pack *p, const char *line, size_t len, bool sealed,
                               lf_buf *out) {
    pack_ready(p);
    lf_buf_reset(out);
    if (memchr(line, MARK, len)) {
        lf_buf_add(out, line, len); /* not a line we seal: kept whole */
        return NULL;
    }
    char h[LF_HASH_LEN + 1];
    bool own = sealed || lf_entry_self_hash(line, len, h) == 0;
    size_t end = own ? len - LF_HASH_SUFFIX_LEN : len;
    const char *ps = pset_of(p, line, end);
    size_t at = ps ? (size_t)(ps - line) : end, head = ps ? 1 + REF_ID : 0;
    lf_buf_reset(&p->flat);
    digests_to_bytes(line, at, &p->flat);
    if (ps) {   /* the digest left out: POLICY_SET in its place */
        lf_buf_add(&p->flat, POLICY_SET, 2);
        digests_to_bytes(ps + LF_HASH_LEN, end - at - LF_HASH_LEN, &p->flat);
    }
    if (own) lf_buf_add(&p->flat, OWN_HASH, 2);
    size_t cap = ZSTD_compressBound(p->flat.len);
    lf_buf_reserve(out, head + cap);
    size_t n = ZSTD_compress_usingCDict(p->cctx, out->p + head, cap, p->flat.p, p->flat.len,
                                        p->cdict);
    if (ZSTD_isError(n) || head + n >= len) {
        /* (cannot fail with room for the bound; kept whole if no smaller) */
        lf_buf_add(out, line, len);
        return NULL;
    }
    if (ps) {
        out->p[0] = REF;
        lf_unhex_n(ps, out->p + 1, REF_ID);
    }
    out->len = head + n;
    out->p[out->len] = '\0';
    return ps;
}

static bool zstd_frame(const char *stored, size_t n) {
    return n >= 4 && stored[0] == '\x28' && stored[1] == '\xb5' && stored[2] == '\x2f' &&
           stored[3] == '\xfd';
}

bool lf_redis_packed(const char *stored, size_t n) {
    return zstd_frame(stored, n) || (n > 0 && (stored[0] == REF || stored[0] == RESOLVED));
}

int lf_redis_unpack_line(lf_redis_pack *p, const char *stored, size_t n, lf_buf *out,
                         char *why, size_t whylen) {
    const char *pset = NULL;
    if (n > 0 && stored[0] == REF) {
        if (n <= 1 + REF_ID || !(pset = known_set(p, stored + 1))) {
            snprintf(why, whylen, "a compressed line whose policy set was not looked up");
            return -1;
        }
        stored += 1 + REF_ID;
        n -= 1 + REF_ID;
    } else if (n > 0 && stored[0] == RESOLVED) {
        if (n <= 1 + LF_HASH_LEN || !zstd_frame(stored + 1 + LF_HASH_LEN, n - 1 - LF_HASH_LEN)) {
            snprintf(why, whylen, "a damaged compressed line (%zu bytes)", n);
            return -1;
        }
        pset = stored + 1;
        stored += 1 + LF_HASH_LEN;
        n -= 1 + LF_HASH_LEN;
    }
    if (!zstd_frame(stored, n)) {
        lf_buf_add(out, stored, n);
        return 0;
    }
    unsigned long long size = ZSTD_getFrameContentSize(stored, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
        size > PACK_MAX) {
        snprintf(why, whylen, "a damaged compressed line (%zu bytes)", n);
        return -1;
    }
    lf_buf_reset(&p->flat);
    lf_buf_reserve(&p->flat, (size_t)size + 1);
    size_t got =
        ZSTD_decompress_usingDDict(p->dctx, p->flat.p, (size_t)size, stored, n, p->ddict);
    if (ZSTD_isError(got) || got != size) {
        snprintf(why, whylen, "a damaged compressed line (%zu bytes: %s)", n,
                 ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
        return -1;
    }
    size_t before = out->len;
    int own = bytes_to_digests(p->flat.p, got, pset, out);
    if (own < 0) {
        out->len = before;
        snprintf(why, whylen, "a damaged compressed line (%zu bytes: a digest cut short)", n);
        return -1;
    }
    if (own) {
        char h[LF_HASH_LEN + 1];
        lf_buf_putc(out, '}');
        lf_entry_close_hash(out, before, h);
    }
    lf_buf_reserve(out, 1);
    out->p[out->len] = '\0';
    return 0;
}
