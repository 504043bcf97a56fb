/* bench_evidence.c -- what evidence costs (docs/audit.md), as part of
 * `loopforge bench`, each figure beside a reference measured in the same
 * run:
 *
 *   - signing: the memory store's rate with a signed checkpoint every
 *     1,000 entries, against the same workload without a key (R pairs run
 *     back to back; the median pair's share);
 *   - verification: audit --verify's work (core/verify.c: parse, chain,
 *     Merkle leaf, checkpoints) over a journal of ENTRIES lines read from
 *     a file, against SHA-256 of every line alone (the least any chain
 *     check must do);
 *   - proofs: the inclusion proof of the middle entry of that log, its
 *     size, the time to make it and to check it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include "cli.h"
#include "bench_util.h"
#include "bench_evidence.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/hash.h"
#include "../core/merkle.h"
#include "../core/mem.h"
#include "../core/sign.h"
#include "../core/verify.h"

/* Checkpoints asked for and answered: they are signed off the loop and
 * appended at a later write, so their answers come later too. */
typedef struct cp_count {
    unsigned asked, done, failed;
    unsigned long long lag;     /* the most entries between one and what it states */
} cp_count;

/* The number after `key` in doc (0 if none). */
static unsigned long long number_after(const char *doc, const char *key) {
    const char *p = strstr(doc, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void on_cp(lf_code code, const char *error, const char *doc, void *arg) {
    cp_count *n = arg;
    (void)error;
    n->done++;
    if (code != LF_OK) {
        n->failed++;
        return;
    }
    unsigned long long lag =
        number_after(doc, "\"seq\":") - 1 - number_after(doc, "\"tree_size\":");
    if (lag > n->lag) n->lag = lag;
}

/* One checkpoint after every 1,000 entries, as serve does (not while one
 * is being made: the engine makes one at a time). */
static void checkpoint_every_1000(lf_engine *e, uint64_t *last, cp_count *n) {
    lf_stats st;
    lf_engine_stats(e, &st);
    if (st.appended - *last < 1000 || n->done < n->asked) return;
    *last = st.appended;
    n->asked++;
    lf_engine_checkpoint(e, "bench", on_cp, n);
}

/* Waits for the last checkpoint's answer. Returns whether all were ok. */
static bool checkpoints_done(lf_cli *c, cp_count *n) {
    while (n->done < n->asked && event_base_loop(c->base, EVLOOP_ONCE) == 0)
        ;
    return n->done == n->asked && !n->failed;
}

static const char *const STEPS[][2] = {
    {"task_queued", "t"}, {"pr_created", "t"}, {"ci_pending", "t"},
    {"ci_passed", "t"},   {"merged", "t"},     {"closed", "t"},
};

/* n records through the happy path on a fresh memory: engine; with a key,
 * a checkpoint after every 1,000 entries. Returns seconds, or -1. */
static double workload(lf_cli *c, const char *policies, const char *key, size_t n,
                       cp_count *out) {
    lf_engine_config cfg = {
        .store = "memory:", .policies = policies, .base = c->base, .signing_key = key};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    uint64_t last = 0, t0 = lf_mono_ns();
    cp_count cps = {0};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        char ref[64];
        snprintf(ref, sizeof ref, "bench-evidence-%zu", i);
        lf_bench_call cr = {0};
        lf_create_req req = {.ref = ref, .auto_merge = true, .actor = "bench"};
        lf_engine_create(e, &req, lf_bench_on_result, &cr);
        ok = cr.done && cr.ok;
        for (size_t s = 0; ok && s < sizeof STEPS / sizeof *STEPS; s++) {
            lf_bench_call ct = {0};
            lf_transition_req t = {
                .id = cr.id, .to = STEPS[s][0], .trigger = STEPS[s][1], .actor = "bench"};
            lf_engine_transition(e, &t, lf_bench_on_result, &ct);
            ok = ct.done && ct.ok;
        }
        if (key) checkpoint_every_1000(e, &last, &cps);
    }
    ok = checkpoints_done(c, &cps) && ok;
    double s = (double)(lf_mono_ns() - t0) / 1e9;
    *out = cps;
    lf_engine_free(e);
    return ok ? s : -1;
}

/* Writes a key pair's private half to dir/bench.key. */
static int make_key(const char *dir, char *path, size_t cap) {
    char *priv = NULL, *pub = NULL, err[128];
    if (lf_key_generate(&priv, &pub, err, sizeof err) != 0) return -1;
    snprintf(path, cap, "%s/bench.key", dir);
    FILE *f = fopen(path, "w");
    int rc = f && fputs(priv, f) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0) rc = -1;
    free(priv);
    free(pub);
    return rc;
}

/* A journal file of about `entries` lines, written through the engine
 * (real entries, a signed checkpoint every 1,000), then dumped. */
static int make_journal(lf_cli *c, const char *policies, const char *key,
                        const char *path, size_t entries) {
    lf_engine_config cfg = {
        .store = "memory:", .policies = policies, .base = c->base, .signing_key = key};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) return -1;
    uint64_t last = 0;
    cp_count cps = {0};
    bool ok = true;
    for (size_t i = 0; ok; i++) {
        lf_stats st;
        lf_engine_stats(e, &st);
        if (st.appended >= entries) break;
        checkpoint_every_1000(e, &last, &cps);
        char ref[64];
        snprintf(ref, sizeof ref, "bench-journal-%zu", i);
        lf_bench_call cr = {0};
        lf_create_req req = {.ref = ref, .auto_merge = true, .actor = "bench"};
        lf_engine_create(e, &req, lf_bench_on_result, &cr);
        ok = cr.ok;
        for (size_t s = 0; ok && s < sizeof STEPS / sizeof *STEPS; s++) {
            lf_bench_call ct = {0};
            lf_transition_req t = {
                .id = cr.id, .to = STEPS[s][0], .trigger = STEPS[s][1], .actor = "bench"};
            lf_engine_transition(e, &t, lf_bench_on_result, &ct);
            ok = ct.ok;
        }
    }
    ok = checkpoints_done(c, &cps) && ok;
    if (ok && lf_bench_dump_log(e, path) != 0) ok = false;
    lf_engine_free(e);
    return ok ? 0 : -1;
}

/* Reads path line by line: fn(line, len, arg) each. Returns lines, or -1. */
static long long each(const char *path, void (*fn)(const char *, size_t, void *),
                      void *arg) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long count = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        fn(line, (size_t)n - 1, arg);
        count++;
    }
    free(line);
    fclose(f);
    return count;
}

static void just_hash(const char *line, size_t len, void *arg) {
    unsigned char d[32];
    lf_sha256(line, len, d);
    *(unsigned char *)arg ^= d[0];
}

typedef struct vstate {
    lf_verifier v;
    char err[300];
    bool bad;
} vstate;

static void verify_one(const char *line, size_t len, void *arg) {
    vstate *s = arg;
    if (!s->bad && lf_verifier_feed(&s->v, line, len, s->err, sizeof s->err))
        s->bad = true;
}

typedef struct leaves {
    unsigned char (*l)[32];
    size_t n, cap;
} leaves;

static void collect(const char *line, size_t len, void *arg) {
    leaves *L = arg;
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 1 << 16;
        L->l = lf_xrealloc(L->l, L->cap * sizeof *L->l);
    }
    if (lf_merkle_entry_leaf(line, len, L->l[L->n]) == 0) L->n++;
}

/* Verification speed and proof cost over a journal of `entries`. */
static int bench_verify(lf_cli *c, const char *dir, const char *policies, const char *key,
                        size_t entries) {
    char path[4200];
    snprintf(path, sizeof path, "%s/evidence.journal", dir);
    if (make_journal(c, policies, key, path, entries) != 0) {
        fprintf(stderr, "bench: cannot write the journal to verify\n");
        return LF_EXIT_FAILURE;
    }
    size_t klen;
    char *pem = lf_read_file(key, &klen), why[128];
    lf_key *k = pem ? lf_key_parse(pem, klen, why, sizeof why) : NULL;
    free(pem);
    unsigned char sink = 0;
    uint64_t t0 = lf_mono_ns();
    long long lines = each(path, just_hash, &sink);
    double ref_s = (double)(lf_mono_ns() - t0) / 1e9;
    vstate vs;
    memset(&vs, 0, sizeof vs);
    lf_verifier_init(&vs.v, k);
    t0 = lf_mono_ns();
    each(path, verify_one, &vs);
    double ver_s = (double)(lf_mono_ns() - t0) / 1e9;
    int rc = LF_EXIT_OK;
    if (vs.bad || lines <= 0) {
        fprintf(stderr, "bench: the journal did not verify: %s\n", vs.err);
        rc = LF_EXIT_FAILURE;
    } else {
        printf("evidence: audit --verify of %lld entries (%" PRIu64
               " signed checkpoints): %.0f entries/s on one core vs %.0f lines/s for "
               "SHA-256 of each line alone (%.0f%%)\n",
               lines, vs.v.checkpoints, (double)lines / ver_s, (double)lines / ref_s,
               100.0 * ref_s / ver_s);
        leaves L = {0};
        each(path, collect, &L);
        uint64_t m = L.n / 2;
        lf_buf proof = LF_BUF_INIT;
        t0 = lf_mono_ns();
        int count = lf_merkle_inclusion((const unsigned char(*)[32])L.l, L.n, m, &proof);
        double make_s = (double)(lf_mono_ns() - t0) / 1e9;
        unsigned char root[32];
        lf_merkle_root_of((const unsigned char(*)[32])L.l, L.n, root);
        int reps = 10000;
        bool ok = true;
        t0 = lf_mono_ns();
        for (int i = 0; i < reps; i++)
            ok &= lf_merkle_verify_inclusion(L.l[m], m, L.n,
                                             (const unsigned char *)proof.p, count, root);
        double check_us = (double)(lf_mono_ns() - t0) / 1e3 / reps;
        printf("evidence: inclusion proof of entry %" PRIu64
               " of %zu: %d hashes (%d bytes), "
               "made in %.0f ms (it hashes the whole log), checked in %.1f us%s\n",
               m + 1, L.n, count, count * 32, make_s * 1e3, check_us,
               ok ? "" : " -- DID NOT VERIFY");
        if (!ok) rc = LF_EXIT_FAILURE;
        lf_buf_free(&proof);
        free(L.l);
    }
    lf_verifier_free(&vs.v);
    lf_key_free(k);
    unlink(path);
    return rc;
}

/* One signed run beside its unsigned twin: their times (s) and the
 * signed rate over the unsigned one. */
typedef struct pair {
    double plain, sign, share;
} pair;

static int by_share(const void *a, const void *b) {
    double x = ((const pair *)a)->share, y = ((const pair *)b)->share;
    return (x > y) - (x < y);
}

int lf_bench_evidence(lf_cli *c, const char *dir, const char *policies, size_t records,
                      unsigned runs, size_t entries) {
    char key[4200];
    if (make_key(dir, key, sizeof key) != 0) {
        fprintf(stderr, "bench: cannot make a signing key\n");
        return LF_EXIT_UNAVAILABLE;
    }
    /* Pairs run back to back (unsigned, then signed), and the share is
     * the median pair's: best-of on each side let one quick moment of
     * this machine move the share by 15 points between runs. */
    pair *p = lf_xcalloc(runs, sizeof *p), *sorted = lf_xcalloc(runs, sizeof *sorted);
    cp_count cps = {0};
    unsigned long long lag = 0;
    /* A first run warms the heap; counted, it made the first pair's
     * unsigned side the slowest of all, every time. */
    bool ok = workload(c, policies, NULL, records, &cps) >= 0;
    for (unsigned r = 0; r < runs && ok; r++) {
        p[r].plain = workload(c, policies, NULL, records, &cps);
        p[r].sign = workload(c, policies, key, records, &cps);
        ok = p[r].plain >= 0 && p[r].sign >= 0;
        p[r].share = p[r].plain / p[r].sign;       /* the rates' ratio */
        if (cps.lag > lag) lag = cps.lag;
    }
    if (ok) {
        memcpy(sorted, p, runs * sizeof *p);
        qsort(sorted, runs, sizeof *sorted, by_share);
        const pair *m = &sorted[runs / 2];
        double n = (double)records * 7;
        printf("evidence: memory with a signed checkpoint every 1000 entries: %.0f entries/s "
               "(%u checkpoints, signed off the loop: each appended at most %llu entries "
               "after those it states) vs %.0f unsigned: %.1f%% of the rate (the median of "
               "%u pairs:",
               n / m->sign, cps.asked, lag, n / m->plain, 100.0 * m->share, runs);
        for (unsigned r = 0; r < runs; r++) printf(" %.1f%%", 100.0 * p[r].share);
        printf(")\n");
    }
    free(p);
    free(sorted);
    if (!ok) return LF_EXIT_FAILURE;
    fflush(stdout);
    int rc = bench_verify(c, dir, policies, key, entries);
    unlink(key);
    return rc;
}
