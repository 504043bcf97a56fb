/* bench.c -- `loopforge bench`: LoopForge's own workload, in process.
 *
 * N records are created and each is walked through the 6-transition happy
 * path; the time covers the whole workload, creates included, and the
 * rate is per transition (6 x N), which is how the Python reference's
 * figure (about 60,000 transitions/s) is counted. Every request goes
 * through the public engine API, the same path the CLI and the server
 * take, with the policy set's guards and hooks evaluated and the
 * hash-chained audit entry sealed for each one.
 *
 * By default it runs three configurations: memory: with the workflows
 * only (the state machine and the audit chain, LoopForge's own figure),
 * memory: with the whole policy set plus one no-op hook (the cost of
 * governance), and a file: journal with the whole set. Memory runs are
 * repeated and the best is reported beside the first: the first pays for
 * a cold heap (page faults, which are costly on virtual machines), the
 * later ones show the steady state of a long-running process, so the
 * heap is not trimmed between runs. */
#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <event2/event.h>
#include "cli.h"
#include "bench_util.h"
#include "../core/mem.h"
#include "bench_redis.h"
#include "bench_evidence.h"
#include "bench_journal.h"
#include "bench_timers.h"
#include "bench_governance.h"
#include "bench_scale.h"
#include "../core/clock.h"


#define MAX_STORES 16

typedef char bench_id[LF_ID_LEN + 1];

/* One request in flight and what came back. */
typedef struct bench_call {
    bool done;
    bool ok;
    char err[512];
    bench_id id;            /* create: the new id; get: unused */
    char state[64];         /* get: the record's state */
} bench_call;

/* Copies at most cap-1 bytes; cheaper than snprintf in the hot loop. */
static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void on_result(const lf_result *res, void *arg) {
    bench_call *b = arg;
    b->done = true;
    b->ok = res->success;
    if (!res->success) {
        snprintf(b->err, sizeof(b->err), "%s: %s", lf_code_name(res->code),
                 res->error ? res->error : "");
        return;
    }
    if (res->record) {
        copy_str(b->id, sizeof(b->id), lf_record_id(res->record));
        copy_str(b->state, sizeof(b->state), lf_record_state(res->record));
    }
}

/* Ready for the next call: what on_result sets, not the whole struct
 * (clearing its 600 bytes was ~2 % of the in-process figure). */
static void call_reset(bench_call *b) {
    b->done = b->ok = false;
    b->err[0] = b->id[0] = b->state[0] = '\0';
}

/* Waits for the request; on failure says which one. Returns 0 / -1. */
static int settle(lf_cli *c, bench_call *b, const char *what, const char *id,
                  const char *to) {
    if (lf_cli_wait(c, &b->done) != 0) return -1;
    if (b->ok) return 0;
    fprintf(stderr, "bench: %s %s%s%s failed: %s\n", what, id ? id : "", to ? " to " : "",
            to ? to : "", b->err);
    return -1;
}

static double now_s(void) { return (double)lf_mono_ns() / 1e9; }

/* Heap bytes in use now: what the records and indexes cost, whatever
 * memory earlier runs freed for reuse (which RSS would hide). glibc only;
 * elsewhere the resident set size from /proc, or 0. */
static long heap_bytes(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    return (long)mallinfo2().uordblks;
#else
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
#endif
}

typedef struct bench_result {
    double seconds;         /* best run */
    double first;           /* the first run (cold heap) */
    long mem_delta;         /* heap growth over the first run */
    lf_stats stats;         /* of the best run's engine */
} bench_result;

/* The workload itself: create N records, walk each through the path. */
static int workload(lf_cli *c, lf_engine *e, size_t n, unsigned run, bench_id *ids) {
    char ref[128];
    long pid = (long)getpid();
    bench_call b;
    for (size_t i = 0; i < n; i++) {
        /* Refs are unique per run, so a user-given store that already
         * holds an earlier run's records never sees a duplicate. */
        snprintf(ref, sizeof(ref), "https://github.com/loopforge/bench/issues/%zu#%ld-%u",
                 i + 1, pid, run);
        /* auto_merge: the path merges straight from ci_passed
         * ("auto.merged"), which the shipped policies allow only then. */
        lf_create_req req = {.ref = ref,
                             .repo = "loopforge/bench",
                             .has_ref_number = true,
                             .ref_number = (int64_t)i + 1,
                             .auto_merge = true,
                             .actor = "bench"};
        call_reset(&b);
        lf_engine_create(e, &req, on_result, &b);
        if (settle(c, &b, "create", ref, NULL) != 0) return -1;
        memcpy(ids[i], b.id, sizeof(bench_id));
        for (size_t s = 0; s < LF_BENCH_NSTEPS; s++) {
            lf_transition_req t = {.id = ids[i],
                                   .to = lf_bench_path[s].to,
                                   .trigger = lf_bench_path[s].trigger,
                                   .actor = "bench"};
            call_reset(&b);
            lf_engine_transition(e, &t, on_result, &b);
            if (settle(c, &b, "transition", ids[i], t.to) != 0) return -1;
        }
    }
    return 0;
}

/* Fails loudly unless every record ended closed: a fast benchmark of a
 * workload that did not happen is worse than none. */
static int check_closed(lf_cli *c, lf_engine *e, size_t n, bench_id *ids) {
    for (size_t i = 0; i < n; i++) {
        bench_call b = {0};
        lf_engine_get(e, ids[i], on_result, &b);
        if (settle(c, &b, "get", ids[i], NULL) != 0) return -1;
        if (strcmp(b.state, "closed") != 0) {
            fprintf(stderr, "bench: record %s ended in %s, not closed\n", ids[i],
                    b.state);
            return -1;
        }
    }
    return 0;
}

static int bench_store(lf_cli *c, const char *url, const char *policies, size_t n,
                       unsigned runs, bench_result *out) {
    bench_id *ids = lf_xcalloc(n, sizeof *ids);
    out->seconds = 0;
    int rc = LF_EXIT_OK;
    for (unsigned run = 0; run < runs && rc == LF_EXIT_OK; run++) {
        lf_engine_config cfg = {.store = url, .policies = policies, .base = c->base};
        char err[512] = "";
        lf_code code = LF_UNAVAILABLE;
        lf_engine *e = lf_engine_new(&cfg, err, sizeof(err), &code);
        if (!e) {
            fprintf(stderr, "bench: %s: %s\n", url, err);
            rc = lf_cli_exit_code(code == LF_OK ? LF_UNAVAILABLE : code);
            break;
        }
        lf_engine_set_log(e, lf_bench_log, NULL);
        long mem0 = heap_bytes();
        double t0 = now_s();
        if (workload(c, e, n, run, ids) != 0) rc = LF_EXIT_FAILURE;
        double dt = now_s() - t0;
        long mem1 = heap_bytes();
        if (rc == LF_EXIT_OK && check_closed(c, e, n, ids) != 0) rc = LF_EXIT_FAILURE;
        if (rc == LF_EXIT_OK && (out->seconds == 0 || dt < out->seconds)) {
            out->seconds = dt;
            lf_engine_stats(e, &out->stats);
        }
        if (run == 0) {
            out->mem_delta = mem1 - mem0;
            out->first = dt;
        }
        lf_engine_free(e);
    }
    free(ids);
    return rc;
}

/* Removes the bench's temporary directory: the journal, its lock file and
 * the policy sets (symlinks are removed, never followed). */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_tmpdir(const char *dir) {
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
}

static int link_into(const char *from_dir, const char *name, const char *to_dir) {
    char src[PATH_MAX + 64], dst[PATH_MAX + 64];
    struct stat st;
    snprintf(src, sizeof src, "%s/%s", from_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", to_dir, name);
    if (stat(src, &st) != 0) return 0;      /* optional part */
    return symlink(src, dst);
}

/* The two policy sets, made of symlinks into the user's directory:
 * tmp/bare (its workflows only) and tmp/full (everything, with the hooks
 * linked one by one beside a no-op hook that matches every transition). */
static int make_sets(const char *policies, const char *tmp, char *bare, char *full,
                     size_t cap) {
    char abs[PATH_MAX], hooks[4300], src_hooks[PATH_MAX + 64];
    static const char *parts[] = {"config.lua", "guards", "lib", "routes", "workflows"};
    if (!realpath(policies, abs)) return -1;
    snprintf(bare, cap, "%s/bare", tmp);
    snprintf(full, cap, "%s/full", tmp);
    snprintf(hooks, sizeof hooks, "%s/hooks", full);
    snprintf(src_hooks, sizeof src_hooks, "%s/hooks", abs);
    if (mkdir(bare, 0700) || link_into(abs, "workflows", bare) || mkdir(full, 0700) ||
        mkdir(hooks, 0700))
        return -1;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        if (link_into(abs, parts[i], full)) return -1;
    DIR *d = opendir(src_hooks);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && link_into(src_hooks, de->d_name, hooks)) break;
    if (d) closedir(d);
    char noop[4400];
    snprintf(noop, sizeof noop, "%s/zz-bench-noop.lua", hooks);
    FILE *f = fopen(noop, "w");
    if (!f) return -1;
    fputs("-- written by `loopforge bench`: the cost of one hook on every commit\n"
          "return hook { name = \"bench-noop\", run = function(e, cfg) end }\n",
          f);
    return fclose(f);
}

static void print_result(lf_cli *c, const char *label, size_t n, unsigned runs,
                         const bench_result *r, bool first) {
    double transitions = (double)(n * LF_BENCH_NSTEPS);
    double rate = transitions / r->seconds;
    double ns = r->seconds * 1e9 / transitions;
    const lf_stats *st = &r->stats;
    double eval_ns = st->evaluations ? (double)st->guard_ns / (double)st->evaluations : 0;
    double call_ns = st->guard_evals ? (double)st->guard_ns / (double)st->guard_evals : 0;
    /* p99 as the bound of the bucket holding the 99th percentile. */
    double p99 = 0;
    uint64_t seen = 0;
    for (int i = 0; i < LF_LATENCY_BUCKETS && st->evaluations; i++) {
        seen += st->evaluation_hist[i];
        if (seen * 100 >= st->evaluations * 99) {
            p99 = lf_latency_bound_us(i);
            break;
        }
    }
    if (c->json) {
        printf("%s{\"store\":\"%s\",\"runs\":%u,\"seconds\":%.6f,"
               "\"transitions_per_s\":%.0f,\"ns_per_transition\":%.0f,"
               "\"first_run_transitions_per_s\":%.0f,"
               "\"guard_evaluations\":%" PRIu64 ",\"guard_calls\":%" PRIu64 ","
               "\"ns_per_evaluation\":%.0f,\"ns_per_guard_call\":%.0f,"
               "\"evaluation_p99_us_le\":%g,\"memory_delta_bytes\":%ld}",
               first ? "" : ",", label, runs, r->seconds, rate, ns,
               transitions / r->first, st->evaluations, st->guard_evals, eval_ns, call_ns,
               p99, r->mem_delta);
    } else {
        printf("%s: %.0f transitions/s (%.0f ns/transition)", label, rate, ns);
        if (runs > 1) printf("; first run %.0f/s", transitions / r->first);
        putchar('\n');
        if (st->evaluations)
            printf("  guards: %" PRIu64 " evaluations, %.0f ns each (%.0f ns per "
                   "guard call), p99 <= %g us\n",
                   st->evaluations, eval_ns, call_ns, p99);
    }
    fflush(stdout);
}

static int run_bench(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    /* --scale is a leg of its own: the cost curve (bench_scale.c). */
    const char *scale = lf_args_get(&c->args, "scale");
    if (scale) return lf_bench_scale(c, scale);
    uint64_t n = 1000, runs = 5;
    const char *s;
    if ((s = lf_args_get(&c->args, "records")) &&
        lf_cli_parse_u64(s, 1, 10000000, &n) != 0)
        return lf_cli_usage(
            c, "--records must be an integer from 1 to 10000000, got '%s'", s);
    if ((s = lf_args_get(&c->args, "runs")) && lf_cli_parse_u64(s, 1, 1000, &runs) != 0)
        return lf_cli_usage(c, "--runs must be an integer from 1 to 1000, got '%s'", s);
    if (!c->base && !(c->base = lf_cli_base_new()))
        return lf_cli_fail(c, LF_UNAVAILABLE, "cannot create an event loop");

    /* The default runs, or every --store given (on the user's policy set).
     * $LOOPFORGE_STORE is deliberately ignored: a benchmark should not
     * write thousands of records into the store a user works in. */
    char tmpdir[2048] = "", journal[4200], bare[4200], full[4200];
    const char *tmp = getenv("TMPDIR");
    size_t nstores = 0;
    while (lf_args_nth(&c->args, "store", nstores)) nstores++;
    if (nstores > MAX_STORES)
        return lf_cli_usage(c, "at most %d --store options", MAX_STORES);
    const char *urls[MAX_STORES], *sets[MAX_STORES], *labels[MAX_STORES];
    if (nstores == 0) {
        snprintf(tmpdir, sizeof(tmpdir), "%s/loopforge-bench.XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("bench: mkdtemp");
            return LF_EXIT_UNAVAILABLE;
        }
        if (make_sets(c->policies, tmpdir, bare, full, sizeof bare) != 0) {
            fprintf(stderr, "bench: cannot prepare policy sets from %s\n", c->policies);
            remove_tmpdir(tmpdir);
            return LF_EXIT_UNAVAILABLE;
        }
        snprintf(journal, sizeof(journal), "file:%s/bench.journal", tmpdir);
        urls[0] = "memory:";
        sets[0] = bare;
        labels[0] = "memory";
        urls[1] = "memory:";
        sets[1] = full;
        labels[1] = "memory+policies";
        urls[2] = journal;
        sets[2] = full;
        labels[2] = "file+policies";
        nstores = 3;
    } else {
        for (size_t i = 0; i < nstores; i++) {
            urls[i] = lf_args_nth(&c->args, "store", i);
            sets[i] = c->policies;
            labels[i] = urls[i];
        }
    }
    /* Keep freed memory in the process between runs (see the top). */
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);

    if (c->json)
        printf("{\"records\":%" PRIu64 ",\"transitions\":%" PRIu64 ",\"stores\":[", n,
               n * LF_BENCH_NSTEPS);
    else
        printf("bench: %" PRIu64 " records x %zu transitions = %" PRIu64
               " transitions per run (time includes the %" PRIu64 " creates); "
               "memory: best of %" PRIu64 " runs\n"
               "  memory: workflows only; +policies: every guard and hook of %s "
               "plus one no-op hook\n",
               n, LF_BENCH_NSTEPS, n * LF_BENCH_NSTEPS, n, runs, c->policies);
    fflush(stdout);

    uint64_t inflight = 0, entries = 1000000;
    if ((s = lf_args_get(&c->args, "verify-entries")) &&
        lf_cli_parse_u64(s, 1000, 100000000, &entries) != 0)
        return lf_cli_usage(
            c, "--verify-entries must be an integer from 1000 to 100000000, got '%s'", s);
    if ((s = lf_args_get(&c->args, "in-flight")) &&
        lf_cli_parse_u64(s, 1, 100000, &inflight) != 0)
        return lf_cli_usage(
            c, "--in-flight must be an integer from 1 to 100000, got '%s'", s);
    bench_result res[MAX_STORES];
    lf_bench_redis_result rr;
    size_t done = 0;
    for (size_t i = 0; i < nstores; i++) {
        /* Redis is measured with many requests in flight at once, which
         * is how a server drives it; the embedded stores complete inline. */
        if (strncmp(urls[i], "redis://", 8) == 0 || strncmp(urls[i], "unix:", 5) == 0) {
            rc = lf_bench_redis(c, urls[i], (size_t)n, (size_t)inflight, &rr);
            if (rc != LF_EXIT_OK) break;
            lf_bench_redis_print(c, &rr, i == 0);
            continue;
        }
        unsigned r = strncmp(urls[i], "memory:", 7) == 0 ? (unsigned)runs : 1;
        rc = bench_store(c, urls[i], sets[i], (size_t)n, r, &res[i]);
        if (rc != LF_EXIT_OK) break;
        done++;
        print_result(c, labels[i], (size_t)n, r, &res[i], i == 0);
    }
    /* By default, the journal as a server drives it (bench_journal.c). */
    if (rc == LF_EXIT_OK && tmpdir[0] && !c->json)
        rc = lf_bench_journal(c, tmpdir, full, (size_t)n * 3, inflight ? (size_t)inflight : 64);
    /* By default, what evidence costs (bench_evidence.c). */
    if (rc == LF_EXIT_OK && tmpdir[0] && !c->json)
        rc = lf_bench_evidence(c, tmpdir, bare, (size_t)n * 10, (unsigned)runs, entries);
    /* And what timers cost (bench_timers.c): 100 pending per record. */
    if (rc == LF_EXIT_OK && tmpdir[0] && !c->json)
        rc = lf_bench_timers(c, tmpdir, (size_t)n * 5, (size_t)n * 100, (unsigned)runs);
    /* And explain and replay (bench_governance.c), on the whole set. */
    if (rc == LF_EXIT_OK && tmpdir[0] && !c->json)
        rc = lf_bench_governance(c, tmpdir, full, (size_t)n, entries);
    /* By default, a private redis-server too (skipped if none is
     * installed). */
    if (rc == LF_EXIT_OK && tmpdir[0] &&
        (rc = lf_bench_redis(c, NULL, (size_t)n * 3, (size_t)inflight, &rr)) ==
            LF_EXIT_OK)
        lf_bench_redis_print(c, &rr, false);
    if (tmpdir[0]) remove_tmpdir(tmpdir);

    struct rusage ru;
    long peak_kib = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
    if (c->json) {
        if (rc == LF_EXIT_OK) printf("],\"peak_rss_bytes\":%ld}\n", peak_kib * 1024);
        else puts("]}");
    } else if (rc == LF_EXIT_OK) {
        printf("memory held by the records:");
        for (size_t i = 0; i < done; i++)
            printf("%s %s %.1f MiB", i ? "," : "", labels[i],
                   (double)res[i].mem_delta / (1024.0 * 1024.0));
        printf("; peak rss %.1f MiB\n", (double)peak_kib / 1024.0);
        printf("ok: all %" PRIu64 " records closed on every store\n", n);
    }
    return rc;
}

static const lf_optspec bench_opts[] = {{"records", true},
                                        {"runs", true},
                                        {"in-flight", true},
                                        {"verify-entries", true},
                                        {"scale", true},
                                        {NULL, false}};

const lf_command lf_cmd_bench = {
    "bench",
    "measure LoopForge's workload on memory: and a file: journal",
    "Usage: loopforge bench [--records N] [--runs R] [--store URL]...\n"
    "       loopforge bench --scale N[,N...]\n\n"
    "Creates N records (default 1000) and walks each through the 6-transition\n"
    "happy path (task_queued, pr_created, ci_pending, ci_passed, merged,\n"
    "closed), in process, then checks that every record is closed. Prints one\n"
    "line per store:\n"
    "  memory: 1234567 transitions/s (810 ns/transition)\n"
    "where the time covers the whole workload, creates included, and\n"
    "transitions = 6 x N. By default: memory: with the workflows only,\n"
    "memory: with every guard and hook of the policy directory plus one no-op\n"
    "hook (with the guards' evaluation cost and p99), each the best of R runs\n"
    "(default 5) beside the first, cold-heap run; and a file: journal in a\n"
    "temporary directory that is removed afterwards. Each --store URL\n"
    "(repeatable) replaces those, run on the policy directory as it is.\n\n"
    "  --records N          records per run (default 1000)\n"
    "  --runs R             runs on memory: stores; the best is reported\n"
    "  --in-flight K        requests in flight on a redis store (default 64)\n"
    "  --verify-entries N   the journal the evidence leg verifies (default\n"
    "                       1000000)\n"
    "  --scale N[,N...]     only the cost curve: for each N (10000 to\n"
    "                       10000000), a journal of N records (7 entries each,\n"
    "                       the workflows only) and, in a child process of its\n"
    "                       own, its open (replay) time and RSS growth, the\n"
    "                       latency of get (p50, p99), list --state closed\n"
    "                       (first page, page 100) and audit ID (p50); with a\n"
    "                       redis-server to start (N up to 1000000), the same\n"
    "                       records on a private Redis, 64 in flight: its\n"
    "                       used_memory growth per record and the same reads;\n"
    "                       then the largest N's reads over the smallest's.\n"
    "                       Try 10000,100000; 1000000 takes minutes and\n"
    "                       gigabytes\n\n"
    "An evidence leg follows the default runs: the memory store's rate with a\n"
    "signed checkpoint every 1000 entries beside the same workload unsigned,\n"
    "audit --verify's speed over a journal of N entries beside SHA-256 of each\n"
    "line alone, and an inclusion proof's size and cost (docs/audit.md).\n"
    "A timers leg: the happy path with a timer on every state beside none,\n"
    "memory per pending timer, and serve's tick with 100 x N pending timers\n"
    "(and 10 x N on a private redis-server) beside a tick listing them all,\n"
    "and with as many records waiting in a retry state without a backoff\n"
    "beside its look at every one of them.\n"
    "A redis leg runs too, on a private redis-server (3 x N records, many in\n"
    "flight, beside redis-benchmark calling the same commit script, and\n"
    "Redis's memory per record); it is skipped if redis-server is missing.\n",
    bench_opts,
    run_bench,
    false};
