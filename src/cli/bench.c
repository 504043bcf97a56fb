/* bench.c -- `loopforge bench`: LoopForge's own workload, in process.
 *
 * N records are created and each is walked through the 6-transition happy
 * path; the time covers the whole workload, creates included, and the
 * rate is per transition (6 x N), which is how the Python reference's
 * figure (about 60,000 transitions/s) is counted. Every request goes
 * through the public engine API, the same path the CLI and the server
 * take, with the policy set's guards and hooks evaluated and the
 * hash-chained audit entry sealed for each one. Runs on
 * memory: (best of several runs, to shed warm-up noise) and on a file:
 * journal in a temporary directory, removed afterwards. */
#include <dirent.h>
#include <malloc.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <event2/event.h>
#include "cli.h"
#include "../core/clock.h"

static const struct { const char *to, *trigger; } happy_path[] = {
    {"task_queued", "worker.picked_up"}, {"pr_created", "pr.opened"},
    {"ci_pending", "ci.started"},        {"ci_passed", "ci.completed"},
    {"merged", "auto.merged"},           {"closed", "issue.closed"},
};
#define NSTEPS (sizeof(happy_path) / sizeof(happy_path[0]))

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

/* Waits for the request; on failure says which one. Returns 0 / -1. */
static int settle(lf_cli *c, bench_call *b, const char *what, const char *id,
                  const char *to) {
    if (lf_cli_wait(c, &b->done) != 0) return -1;
    if (b->ok) return 0;
    fprintf(stderr, "bench: %s %s%s%s failed: %s\n", what, id ? id : "",
            to ? " to " : "", to ? to : "", b->err);
    return -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
    long mem_delta;         /* heap growth over the first run */
} bench_result;

/* The workload itself: create N records, walk each through the path. */
static int workload(lf_cli *c, lf_engine *e, size_t n, unsigned run,
                    bench_id *ids) {
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
        lf_create_req req = {.ref = ref, .repo = "loopforge/bench",
                             .has_ref_number = true, .ref_number = (int64_t)i + 1,
                             .auto_merge = true, .actor = "bench"};
        memset(&b, 0, sizeof(b));
        lf_engine_create(e, &req, on_result, &b);
        if (settle(c, &b, "create", ref, NULL) != 0) return -1;
        memcpy(ids[i], b.id, sizeof(bench_id));
        for (size_t s = 0; s < NSTEPS; s++) {
            lf_transition_req t = {.id = ids[i], .to = happy_path[s].to,
                                   .trigger = happy_path[s].trigger,
                                   .actor = "bench"};
            memset(&b, 0, sizeof(b));
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
            fprintf(stderr, "bench: record %s ended in %s, not closed\n",
                    ids[i], b.state);
            return -1;
        }
    }
    return 0;
}

static int bench_store(lf_cli *c, const char *url, size_t n, unsigned runs,
                       bench_result *out) {
    bench_id *ids = calloc(n, sizeof(*ids));
    if (!ids) {
        fputs("bench: out of memory\n", stderr);
        return LF_EXIT_FAILURE;
    }
    out->seconds = 0;
    int rc = LF_EXIT_OK;
    for (unsigned run = 0; run < runs && rc == LF_EXIT_OK; run++) {
        lf_engine_config cfg = {.store = url, .policies = c->policies,
                                .base = c->base};
        char err[512] = "";
        lf_code code = LF_UNAVAILABLE;
        lf_engine *e = lf_engine_new(&cfg, err, sizeof(err), &code);
        if (!e) {
            fprintf(stderr, "bench: %s: %s\n", url, err);
            rc = lf_cli_exit_code(code == LF_OK ? LF_UNAVAILABLE : code);
            break;
        }
        long mem0 = heap_bytes();
        double t0 = now_s();
        if (workload(c, e, n, run, ids) != 0) rc = LF_EXIT_FAILURE;
        double dt = now_s() - t0;
        long mem1 = heap_bytes();
        if (rc == LF_EXIT_OK && check_closed(c, e, n, ids) != 0)
            rc = LF_EXIT_FAILURE;
        if (rc == LF_EXIT_OK && (out->seconds == 0 || dt < out->seconds))
            out->seconds = dt;
        if (run == 0) out->mem_delta = mem1 - mem0;
        lf_engine_free(e);
    }
    free(ids);
    return rc;
}

/* Removes the temporary journal directory and whatever the journal put in
 * it (the journal, its lock file). */
static void remove_tmpdir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
    }
    if (rmdir(dir) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
}

static void print_result(lf_cli *c, const char *url, size_t n, unsigned runs,
                         const bench_result *r, bool first) {
    double transitions = (double)(n * NSTEPS);
    double rate = transitions / r->seconds;
    double ns = r->seconds * 1e9 / transitions;
    int label = (int)strcspn(url, ":");
    if (c->json) {
        printf("%s{\"store\":\"%.*s\",\"runs\":%u,\"seconds\":%.6f,"
               "\"transitions_per_s\":%.0f,\"ns_per_transition\":%.0f,"
               "\"memory_delta_bytes\":%ld}", first ? "" : ",", label, url, runs,
               r->seconds, rate, ns, r->mem_delta);
    } else {
        printf("%.*s: %.0f transitions/s (%.0f ns/transition)\n", label, url,
               rate, ns);
    }
    fflush(stdout);
}

static int run_bench(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    uint64_t n = 1000, runs = 5;
    const char *s;
    if ((s = lf_args_get(&c->args, "records")) &&
        lf_cli_parse_u64(s, 1, 10000000, &n) != 0)
        return lf_cli_usage(c, "--records must be an integer from 1 to 10000000, got '%s'", s);
    if ((s = lf_args_get(&c->args, "runs")) &&
        lf_cli_parse_u64(s, 1, 1000, &runs) != 0)
        return lf_cli_usage(c, "--runs must be an integer from 1 to 1000, got '%s'", s);
    if (!c->base && !(c->base = event_base_new()))
        return lf_cli_fail(c, LF_UNAVAILABLE, "cannot create an event loop");

    /* The stores: every --store given, else memory: and a fresh journal.
     * $LOOPFORGE_STORE is deliberately ignored: a benchmark should not
     * write thousands of records into the store a user works in. */
    char tmpdir[4096] = "", journal[4200];
    const char *dflt[2] = {"memory:", journal};
    const char *tmp = getenv("TMPDIR");
    size_t nstores = 0;
    while (lf_args_nth(&c->args, "store", nstores)) nstores++;
    if (nstores > MAX_STORES)
        return lf_cli_usage(c, "at most %d --store options", MAX_STORES);
    if (nstores == 0) {
        snprintf(tmpdir, sizeof(tmpdir), "%s/loopforge-bench.XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("bench: mkdtemp");
            return LF_EXIT_UNAVAILABLE;
        }
        snprintf(journal, sizeof(journal), "file:%s/bench.journal", tmpdir);
        nstores = 2;
    }

    if (c->json)
        printf("{\"records\":%" PRIu64 ",\"transitions\":%" PRIu64 ",\"stores\":[",
               n, n * NSTEPS);
    else
        printf("bench: %" PRIu64 " records x %zu transitions = %" PRIu64
               " transitions per run (time includes the %" PRIu64 " creates); "
               "memory: best of %" PRIu64 " runs\n",
               n, NSTEPS, n * NSTEPS, n, runs);
    fflush(stdout);

    bench_result res[MAX_STORES];
    const char *urls[MAX_STORES];
    size_t done = 0;
    for (size_t i = 0; i < nstores; i++) {
        const char *url = tmpdir[0] ? dflt[i] : lf_args_nth(&c->args, "store", i);
        unsigned r = strncmp(url, "memory:", 7) == 0 ? (unsigned)runs : 1;
        rc = bench_store(c, url, (size_t)n, r, &res[i]);
        if (rc != LF_EXIT_OK) break;
        urls[done++] = url;
        print_result(c, url, (size_t)n, r, &res[i], i == 0);
    }
    if (tmpdir[0]) remove_tmpdir(tmpdir);

    struct rusage ru;
    long peak_kib = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
    if (c->json) {
        if (rc == LF_EXIT_OK) printf("],\"peak_rss_bytes\":%ld}\n", peak_kib * 1024);
        else puts("]}");
    } else if (rc == LF_EXIT_OK) {
        printf("memory held by the records:");
        for (size_t i = 0; i < done; i++)
            printf("%s %.*s %.1f MiB", i ? "," : "", (int)strcspn(urls[i], ":"),
                   urls[i], (double)res[i].mem_delta / (1024.0 * 1024.0));
        printf("; peak rss %.1f MiB\n", (double)peak_kib / 1024.0);
        printf("ok: all %" PRIu64 " records closed on every store\n", n);
    }
    return rc;
}

static const lf_optspec bench_opts[] = {
    {"records", true}, {"runs", true}, {NULL, false}
};

const lf_command lf_cmd_bench = {
    "bench", "measure LoopForge's workload on memory: and a file: journal",
    "Usage: loopforge bench [--records N] [--runs R] [--store URL]...\n\n"
    "Creates N records (default 1000) and walks each through the 6-transition\n"
    "happy path (task_queued, pr_created, ci_pending, ci_passed, merged,\n"
    "closed), in process, then checks that every record is closed. Prints one\n"
    "line per store:\n"
    "  memory: 1234567 transitions/s (810 ns/transition)\n"
    "where the time covers the whole workload, creates included, and\n"
    "transitions = 6 x N. By default runs on memory: (best of R runs, default\n"
    "5) and on a file: journal in a temporary directory that is removed\n"
    "afterwards; each --store URL (repeatable) replaces that pair.\n\n"
    "  --records N          records per run (default 1000)\n"
    "  --runs R             runs on memory: stores; the best is reported\n",
    bench_opts, run_bench
};
