/* bench_scale.c -- the cost curve (`loopforge bench --scale N[,N...]`):
 * how opening a journal and reading from it grow with its size, and how
 * Redis's memory and reads grow with the number of records it holds.
 *
 * For each size N, a forked child runs N records through the happy path
 * on memory: (the policy directory's workflows only) -- how long, and the
 * slowest request: what a store's growth holds a caller (or serve's loop)
 * up for at once -- and writes the log out as a journal file, with the
 * records' ids beside it. A second child
 * then opens that journal as `serve` would (file:, with an event base)
 * and measures, on it alone:
 *
 *   - open: lf_engine_new, i.e. the replay of every line (the file is in
 *     the page cache: it was just written) and the policy set's load;
 *   - RSS: VmRSS after the open minus before it;
 *   - get: 2,000 random known ids, p50 and p99;
 *   - list --state closed, 100 a page: the first page (median of 20) and
 *     the 100th, reached by following next_cursor (median of 5);
 *   - audit ID: a record's 7 entries, 2,000 random ids, p50;
 *   - `loopforge list` run on the journal beside it (as beside `serve`),
 *     and the creates this process commits meanwhile: how many, and the
 *     slowest (an open that held the lock would stop them all).
 *
 * Then, with a redis-server to start (a private one on a unix socket,
 * for every size up to REDIS_MAX), a third child runs the same N records
 * through the engine on it, 64 in flight, and measures INFO used_memory's
 * growth per record and the same reads (the ids found by listing).
 *
 * Each leg in a child of its own keeps the measurement clean: the
 * opener's RSS holds no heap that building the log left behind, and the
 * parent stays small however large N is. The child sends its figures
 * back through a pipe. Every read is checked (found, closed, 7 entries,
 * full pages): a figure for a workload that did not happen would be
 * worse than none. Nothing here asserts a timing. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <event2/event.h>
#include "bench_redis.h"
#include "bench_scale.h"
#include "bench_util.h"
#include "../core/buf.h"
#include "../core/clock.h"
#include "../core/mem.h"

#define MAX_SIZES 16
#define READS 2000          /* gets, and audits, per size */
#define PAGE 100            /* records per list page */
#define DEEP 100            /* the deep page's number */
#define REDIS_MAX 1000000   /* larger sizes skip Redis: ~3.4 KB a record */

typedef char rec_id[LF_ID_LEN + 1];

/* The read latencies at one size, in ns. */
typedef struct reads {
    uint64_t get_p50, get_p99, list_first, list_deep, audit_p50;
} reads;

/* What a size costs: filled by the children in turn. */
typedef struct scale_result {
    uint64_t records, entries, journal_bytes;
    uint64_t load_ns, load_max_ns;  /* the records made on memory:, the
                                       slowest request among them */
    uint64_t open_ns;
    int64_t rss_bytes;      /* VmRSS growth over the open */
    uint64_t list_ns;       /* `loopforge list` run on the journal */
    uint64_t beside_n;      /* creates committed meanwhile, and the */
    uint64_t beside_max_ns; /* slowest of them */
    reads journal;
    uint64_t chase_ns;      /* random_load_ns: a place a record, over the
                               RSS growth */
    bool redis;             /* the Redis leg ran */
    int64_t redis_bytes;    /* used_memory growth over the load */
    double redis_load_s;
    reads on_redis;
} scale_result;

typedef struct scale_ctx {
    lf_cli *cli;
    const char *policies;   /* workflows only */
    char journal[PATH_MAX + 32], ids[PATH_MAX + 32];
    const char *redis_url;  /* a private redis-server, or NULL */
} scale_ctx;

/* ---- the journal --------------------------------------------------------- */

/* The time since *t, kept in r if the slowest request yet; *t is now. */
static void slowest(scale_result *r, uint64_t *t) {
    uint64_t now = lf_mono_ns();
    if (now - *t > r->load_max_ns) r->load_max_ns = now - *t;
    *t = now;
}

/* Child: N records through the path on memory:, the log dumped to the
 * journal file and the ids (fixed-size, back to back) to their file. */
static int generate(const scale_ctx *x, scale_result *r) {
    lf_engine_config cfg = {.store = "memory:", .policies = x->policies};
    char err[512];
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) {
        fprintf(stderr, "bench: scale: %s\n", err);
        return -1;
    }
    size_t n = (size_t)r->records;
    rec_id *ids = lf_xcalloc(n, sizeof *ids);
    bool ok = true;
    uint64_t t0 = lf_mono_ns(), t = t0;
    for (size_t i = 0; i < n && ok; i++) {
        char ref[64];
        snprintf(ref, sizeof ref, "bench-scale-%zu", i);
        lf_bench_call cr = {0};
        lf_create_req req = {.ref = ref, .auto_merge = true, .actor = "bench"};
        lf_engine_create(e, &req, lf_bench_on_result, &cr);
        slowest(r, &t);
        ok = cr.done && cr.ok;
        memcpy(ids[i], cr.id, sizeof *ids);
        for (size_t s = 0; ok && s < LF_BENCH_NSTEPS; s++) {
            lf_bench_call ct = {0};
            lf_transition_req tr = {.id = ids[i],
                                    .to = lf_bench_path[s].to,
                                    .trigger = lf_bench_path[s].trigger,
                                    .actor = "bench"};
            lf_engine_transition(e, &tr, lf_bench_on_result, &ct);
            slowest(r, &t);
            ok = ct.done && ct.ok;
        }
        if (!ok) fprintf(stderr, "bench: scale: record %zu did not walk the path\n", i);
    }
    r->load_ns = lf_mono_ns() - t0;
    lf_stats st;
    lf_engine_stats(e, &st);
    r->entries = st.appended;
    if (ok && lf_bench_dump_log(e, x->journal) != 0) {
        fprintf(stderr, "bench: scale: cannot write %s\n", x->journal);
        ok = false;
    }
    FILE *f = ok ? fopen(x->ids, "w") : NULL;
    if (ok && (!f || fwrite(ids, sizeof *ids, n, f) != n)) ok = false;
    if (f && fclose(f) != 0) ok = false;
    lf_engine_free(e);
    free(ids);
    return ok ? 0 : -1;
}

/* ---- the reads ----------------------------------------------------------- */

/* Resident set size now, in bytes (VmRSS), or -1. */
static int64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

/* xorshift64: the ids to read, the same sequence every run. */
static size_t pick(uint64_t *s, size_t n) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (size_t)(*s % n);
}

/* A random one of the n ids, copied: a request's id arrives in the
 * request, so what reading this table's row costs (at a million ids, a
 * miss) stays out of the read's timing. */
static void pick_id(uint64_t *seed, const rec_id *ids, size_t n, rec_id out) {
    memcpy(out, ids[pick(seed, n)], sizeof(rec_id));
}

/* The machine's part of a read at this size, measured beside it: one
 * load from a random one of `places` places spread over `bytes` of
 * memory, whose address the load before gave (a chase that visits each
 * once a pass), in ns. A read by id makes at least two such loads -- the map's
 * slot, then the record it names -- among about as many places as there
 * are records: at 10,000 they stay in the caches, at a million each
 * misses them, and costs the machine more than a whole read at 10,000. */
#define CHASE_MAX ((int64_t)2 << 30)    /* beyond, a load costs no more */
static uint64_t random_load_ns(uint64_t places, int64_t bytes) {
    size_t lines = (size_t)((bytes < CHASE_MAX ? bytes : CHASE_MAX) / 64);
    size_t k = places < lines ? (size_t)places : lines, stride = k ? lines / k * 8 : 0;
    if (k < 2 || k > UINT32_MAX) return 0;
    uint64_t *mem = lf_xmalloc(lines * 64), seed = 0x853c49e6748fea9bu;
    uint32_t *next = lf_xmalloc(k * sizeof *next);
    for (size_t i = 0; i < k; i++) next[i] = (uint32_t)i;
    for (size_t i = k - 1; i > 0; i--) {    /* Sattolo's: one cycle through all */
        size_t j = pick(&seed, i);
        uint32_t t = next[i];
        next[i] = next[j], next[j] = t;
    }
    for (size_t i = 0; i < k; i++) mem[i * stride] = next[i] * stride;
    free(next);
    uint64_t at = 0, best = UINT64_MAX;
    for (int pass = 0; pass < 3; pass++) {  /* the best of 3: the machine drifts */
        uint64_t t0 = lf_mono_ns();
        for (size_t i = 0; i < k; i++) at = mem[at];
        uint64_t dt = lf_mono_ns() - t0;
        if (dt < best) best = dt;
    }
    free(mem);
    return at == 0 ? best / k : 0;          /* a whole cycle ends where it began */
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The pct-th percentile of n samples (sorts v). */
static uint64_t pctl(uint64_t *v, size_t n, unsigned pct) {
    qsort(v, n, sizeof *v, cmp_u64);
    return v[n * pct / 100 < n ? n * pct / 100 : n - 1];
}

/* Runs base until *done: reads on the journal answer at once, Redis's
 * over the socket. */
static void settle(struct event_base *base, const bool *done) {
    while (!*done && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
}

typedef struct got {
    bool done, closed;
} got;

static void on_get(const lf_result *res, void *arg) {
    got *g = arg;
    g->done = true;
    g->closed = res->success && res->record &&
                strcmp(lf_record_state(res->record), "closed") == 0;
}

static int time_gets(lf_engine *e, struct event_base *base, const rec_id *ids, size_t n,
                     reads *r) {
    uint64_t t[READS], seed = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < READS; i++) {
        rec_id id;
        pick_id(&seed, ids, n, id);
        got g = {0};
        uint64_t t0 = lf_mono_ns();
        lf_engine_get(e, id, on_get, &g);
        settle(base, &g.done);
        t[i] = lf_mono_ns() - t0;
        if (!g.done || !g.closed) {
            fprintf(stderr, "bench: scale: get %s did not find it closed\n", id);
            return -1;
        }
    }
    r->get_p99 = pctl(t, READS, 99);
    r->get_p50 = pctl(t, READS, 50);
    return 0;
}

typedef struct page {
    bool done, ok, more;
    size_t n;
    char next[LF_TS_LEN + LF_ID_LEN + 2];
    rec_id *ids;            /* when set, the page's ids are added here */
    size_t nids;
} page;

static void on_page(lf_code code, const char *error, const lf_record *const *recs,
                    size_t n, const char *next, void *arg) {
    page *p = arg;
    p->done = true;
    p->ok = code == LF_OK;
    if (!p->ok) fprintf(stderr, "bench: scale: list: %s\n", error ? error : "");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(lf_record_state(recs[i]), "closed") != 0) p->ok = false;
        if (p->ids) snprintf(p->ids[p->nids++], sizeof *p->ids, "%s", lf_record_id(recs[i]));
    }
    p->n = n;
    p->more = next != NULL;
    if (next) snprintf(p->next, sizeof p->next, "%s", next);
}

/* The page of `limit` closed records after `cursor` (NULL: the first):
 * its time in ns, or 0 if it was not a full page of closed records. */
static uint64_t list_page(lf_engine *e, struct event_base *base, const char *cursor,
                          size_t limit, page *p) {
    char cur[sizeof p->next];
    snprintf(cur, sizeof cur, "%s", cursor ? cursor : "");
    lf_list_query q = {.state = "closed", .limit = limit, .cursor = cursor ? cur : NULL};
    p->done = p->ok = p->more = false;
    p->n = 0;
    uint64_t t0 = lf_mono_ns();
    lf_engine_list(e, &q, on_page, p);
    settle(base, &p->done);
    uint64_t dt = lf_mono_ns() - t0;
    return p->done && p->ok && p->n == limit ? (dt ? dt : 1) : 0;
}

static int time_lists(lf_engine *e, struct event_base *base, reads *r) {
    uint64_t first[20], deep[5];
    page p = {0};
    for (size_t i = 0; i < 20; i++)
        if (!(first[i] = list_page(e, base, NULL, PAGE, &p))) goto short_page;
    /* Only the 100th call is timed; the 99 before it find its cursor. */
    for (size_t i = 0; i < 5; i++)
        for (int k = 1; k <= DEEP; k++) {
            uint64_t dt = list_page(e, base, k == 1 ? NULL : p.next, PAGE, &p);
            if (!dt || (k < DEEP && !p.more)) goto short_page;
            if (k == DEEP) deep[i] = dt;
        }
    r->list_first = pctl(first, 20, 50);
    r->list_deep = pctl(deep, 5, 50);
    return 0;
short_page:
    fprintf(stderr, "bench: scale: list --state closed ran out before page %d\n", DEEP);
    return -1;
}

typedef struct trail {
    bool done;
    lf_code code;
    size_t n;
} trail;

static void on_trail(lf_code code, const char *error, const char *const *lines,
                     const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    trail *t = arg;
    (void)error, (void)lines, (void)lens, (void)last_seq;
    t->done = true;
    t->code = code;
    t->n = n;
}

static int time_audits(lf_engine *e, struct event_base *base, const rec_id *ids, size_t n,
                       reads *r) {
    uint64_t t[READS], seed = 0x2545f4914f6cdd1du;
    for (size_t i = 0; i < READS; i++) {
        rec_id id;
        pick_id(&seed, ids, n, id);
        trail tr = {0};
        uint64_t t0 = lf_mono_ns();
        lf_engine_audit(e, id, 0, 100, on_trail, &tr);
        settle(base, &tr.done);
        t[i] = lf_mono_ns() - t0;
        if (!tr.done || tr.code != LF_OK || tr.n != LF_BENCH_NSTEPS + 1) {
            fprintf(stderr, "bench: scale: audit %s: %zu entries, not %zu\n", id, tr.n,
                    LF_BENCH_NSTEPS + 1);
            return -1;
        }
    }
    r->audit_p50 = pctl(t, READS, 50);
    return 0;
}

static int time_reads(lf_engine *e, struct event_base *base, const rec_id *ids, size_t n,
                      reads *r) {
    return time_gets(e, base, ids, n, r) == 0 && time_lists(e, base, r) == 0
               ? time_audits(e, base, ids, n, r)
               : -1;
}

/* A new record (ref numbered i); *ns: how long its create took. */
static int create_one(lf_engine *e, struct event_base *base, uint64_t i, uint64_t *ns) {
    char ref[64];
    snprintf(ref, sizeof ref, "bench-scale-beside-%" PRIu64, i);
    lf_bench_call c = {0};
    lf_create_req req = {.ref = ref, .actor = "bench"};
    uint64_t t0 = lf_mono_ns();
    lf_engine_create(e, &req, lf_bench_on_result, &c);
    settle(base, &c.done);
    *ns = lf_mono_ns() - t0;
    if (c.ok) return 0;
    fprintf(stderr, "bench: scale: a create on the journal failed\n");
    return -1;
}

/* Creates records one at a time while a second process opens the
 * journal: `loopforge list --limit 1 --json` on it (JSON: no paging hint
 * on stderr), as an operator would beside `serve` (spawned, not forked: a
 * fork of this large process would stall it copying pages). Its run
 * time, how many commits went through meanwhile, and the slowest.
 * Returns 0, or -1. */
static int time_commits_during_open(lf_engine *e, struct event_base *base,
                                    const scale_ctx *x, const char *url, scale_result *r) {
    uint64_t first;
    /* The first commit's flush writes back the journal the generator
     * left in the page cache (~150 ms at 100,000 records): not this. */
    if (create_one(e, base, UINT64_MAX, &first) < 0) return -1;
    char *argv[] = {"loopforge", "--policies", (char *)x->policies, "--store", (char *)url,
                    "list",      "--limit",    "1",    "--json",    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "bench: scale: cannot run loopforge list: %s\n", strerror(rc));
        return -1;
    }
    uint64_t t0 = lf_mono_ns();
    int status = 0;
    pid_t done = 0;
    while (rc == 0 && (done = waitpid(pid, &status, WNOHANG)) == 0) {
        uint64_t dt;
        if (create_one(e, base, r->beside_n, &dt) < 0) rc = -1;
        r->beside_n++;
        if (dt > r->beside_max_ns) r->beside_max_ns = dt;
    }
    if (done == 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    r->list_ns = lf_mono_ns() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench: scale: loopforge list on the journal failed\n");
        rc = -1;
    }
    return rc;
}

/* Child: opens the journal as serve does and times the reads on it. */
static int measure(const scale_ctx *x, scale_result *r) {
    size_t n = (size_t)r->records, len = 0;
    rec_id *ids = (rec_id *)lf_read_file(x->ids, &len);
    if (!ids || len != n * sizeof *ids) {
        fprintf(stderr, "bench: scale: cannot read the ids back from %s\n", x->ids);
        free(ids);
        return -1;
    }
    struct event_base *base = lf_xptr(lf_cli_base_new());
    char url[sizeof x->journal + 8], err[512];
    snprintf(url, sizeof url, "file:%s", x->journal);
    lf_engine_config cfg = {.store = url, .policies = x->policies, .base = base};
    int64_t rss0 = rss_bytes();
    uint64_t t0 = lf_mono_ns();
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    r->open_ns = lf_mono_ns() - t0;
    r->rss_bytes = rss_bytes() - rss0;
    int rc = -1;
    if (!e) fprintf(stderr, "bench: scale: %s\n", err);
    else if (rss0 < 0) fprintf(stderr, "bench: scale: no VmRSS in /proc/self/status\n");
    else if ((rc = time_reads(e, base, ids, n, &r->journal)) == 0)
        rc = time_commits_during_open(e, base, x, url, r);
    lf_engine_free(e);
    if (rc == 0) r->chase_ns = random_load_ns(r->records, r->rss_bytes);
    event_base_free(base);
    free(ids);
    return rc;
}

/* ---- Redis -------------------------------------------------------------- */

/* Child: the N records through the path on the private Redis (emptied
 * first), used_memory's growth, then the reads, on ids found by listing
 * the closed records 1,000 a page. */
static int measure_redis(const scale_ctx *x, scale_result *r) {
    size_t n = (size_t)r->records;
    char err[512], first[LF_ID_LEN + 1];
    lf_redis_url u;
    if (lf_redis_url_parse(x->redis_url, &u, err, sizeof err) < 0) {
        fprintf(stderr, "bench: scale: redis: %s\n", err);
        return -1;
    }
    redisContext *side = lf_bench_redis_side(&u);
    redisReply *fl = side ? redisCommand(side, "FLUSHDB") : NULL;
    if (fl) freeReplyObject(fl);
    struct event_base *base = lf_xptr(lf_cli_base_new());
    lf_cli c = *x->cli;
    c.base = base;
    lf_engine_config cfg = {.store = x->redis_url, .policies = x->policies, .base = base};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    long long mem0 = side ? lf_bench_redis_used_memory(side) : -1;
    rec_id *ids = lf_xcalloc(n, sizeof *ids);
    page p = {.ids = ids};
    int rc = -1;
    if (!e) {
        fprintf(stderr, "bench: scale: redis: %s\n", err);
    } else if (mem0 < 0) {
        fprintf(stderr, "bench: scale: redis: no INFO memory on a side connection\n");
    } else if (lf_bench_inflight(&c, e, n, LF_BENCH_REDIS_INFLIGHT, "scale: redis",
                                 &r->redis_load_s, first) == 0) {
        r->redis_bytes = lf_bench_redis_used_memory(side) - mem0;
        for (size_t k = 0; k * 1000 < n; k++)
            if (!list_page(e, base, k ? p.next : NULL, n - k * 1000 < 1000 ? n - k * 1000 : 1000,
                           &p))
                break;
        if (p.nids != n)
            fprintf(stderr, "bench: scale: redis: listed %zu closed records, not %zu\n",
                    p.nids, n);
        else rc = time_reads(e, base, (const rec_id *)ids, n, &r->on_redis);
    }
    r->redis = rc == 0;
    free(ids);
    lf_engine_free(e);
    event_base_free(base);
    if (side) redisFree(side);
    lf_redis_url_free(&u);
    return rc;
}

/* ---- the children -------------------------------------------------------- */

/* Runs fn(x, r) in a child and copies its *r back. Returns 0, or -1
 * (the child said why, or died: then we say so). */
static int forked(int (*fn)(const scale_ctx *, scale_result *), const scale_ctx *x,
                  scale_result *r, const char *what) {
    int fd[2];
    if (pipe(fd) != 0) {
        perror("bench: scale: pipe");
        return -1;
    }
    fflush(stdout);     /* nothing buffered is printed twice */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench: scale: fork");
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        close(fd[0]);
        int rc = fn(x, r);
        if (rc == 0 && write(fd[1], r, sizeof *r) != (ssize_t)sizeof *r) rc = -1;
        _exit(rc == 0 ? 0 : 1);
    }
    close(fd[1]);
    scale_result back;
    size_t got_n = 0;
    while (got_n < sizeof back) {
        ssize_t k = read(fd[0], (char *)&back + got_n, sizeof back - got_n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got_n += (size_t)k;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(status))
        fprintf(stderr, "bench: scale: %s of %" PRIu64 " records: killed by signal %d\n",
                what, r->records, WTERMSIG(status));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got_n != sizeof back) return -1;
    *r = back;
    return 0;
}

/* ---- output -------------------------------------------------------------- */

/* A latency in the unit that reads best. */
static const char *fmt_ns(char *out, size_t cap, uint64_t ns) {
    if (ns < 10000) snprintf(out, cap, "%.1f us", (double)ns / 1e3);
    else if (ns < 10000000) snprintf(out, cap, "%.0f us", (double)ns / 1e3);
    else snprintf(out, cap, "%.1f ms", (double)ns / 1e6);
    return out;
}

/* "get p50 .. p99 ..; list --state closed first page .., page 100 ..;
 * audit ID .." */
static void print_reads(const reads *r) {
    char g50[32], g99[32], lf[32], ld[32], au[32];
    printf("get p50 %s p99 %s; list --state closed first page %s, page %d %s; "
           "audit ID %s\n",
           fmt_ns(g50, sizeof g50, r->get_p50), fmt_ns(g99, sizeof g99, r->get_p99),
           fmt_ns(lf, sizeof lf, r->list_first), DEEP, fmt_ns(ld, sizeof ld, r->list_deep),
           fmt_ns(au, sizeof au, r->audit_p50));
}

static void print_text(const scale_result *r) {
    double mib = 1024.0 * 1024.0;
    char slowest[32];
    printf("scale: %" PRIu64 " records through the happy path on memory: in %.2f s "
           "(%.0f entries/s), the slowest request %s\n",
           r->records, (double)r->load_ns / 1e9,
           (double)r->entries / ((double)r->load_ns / 1e9),
           fmt_ns(slowest, sizeof slowest, r->load_max_ns));
    printf("scale: journal of %" PRIu64 " records (%" PRIu64 " entries, %.0f MiB, "
           "%.0f bytes/record): open %.2f s, RSS %+.0f MiB (%.0f bytes/record); ",
           r->records, r->entries, (double)r->journal_bytes / mib,
           (double)r->journal_bytes / (double)r->records, (double)r->open_ns / 1e9,
           (double)r->rss_bytes / mib, (double)r->rss_bytes / (double)r->records);
    print_reads(&r->journal);
    printf("scale: the machine: a load from a random one of %" PRIu64 " places in %.0f MiB "
           "(the journal's RSS), its address from the load before: %" PRIu64 " ns\n",
           r->records, (double)r->rss_bytes / mib, r->chase_ns);
    char slow[32];
    printf("scale: while `loopforge list` opened it (%.2f s), %" PRIu64
           " creates here, the slowest %s\n",
           (double)r->list_ns / 1e9, r->beside_n,
           fmt_ns(slow, sizeof slow, r->beside_max_ns));
    if (r->redis) {
        printf("scale: redis with %" PRIu64 " records (loaded in %.1f s, 64 in flight): "
               "used_memory %+.0f MiB (%.0f bytes/record); ",
               r->records, r->redis_load_s, (double)r->redis_bytes / mib,
               (double)r->redis_bytes / (double)r->records);
        print_reads(&r->on_redis);
    }
    fflush(stdout);
}

static void json_reads(lf_jw *o, const reads *r) {
    lf_jw_int(o, "get_p50_ns", (int64_t)r->get_p50);
    lf_jw_int(o, "get_p99_ns", (int64_t)r->get_p99);
    lf_jw_int(o, "list_first_page_ns", (int64_t)r->list_first);
    lf_jw_int(o, "list_page_100_ns", (int64_t)r->list_deep);
    lf_jw_int(o, "audit_p50_ns", (int64_t)r->audit_p50);
}

static void print_json(const scale_result *r, bool first) {
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_int(&o, "records", (int64_t)r->records);
    lf_jw_int(&o, "entries", (int64_t)r->entries);
    lf_jw_int(&o, "journal_bytes", (int64_t)r->journal_bytes);
    lf_jw_int(&o, "load_ns", (int64_t)r->load_ns);
    lf_jw_int(&o, "slowest_load_request_ns", (int64_t)r->load_max_ns);
    lf_jw_int(&o, "open_ns", (int64_t)r->open_ns);
    lf_jw_int(&o, "rss_delta_bytes", r->rss_bytes);
    json_reads(&o, &r->journal);
    lf_jw_int(&o, "random_load_ns", (int64_t)r->chase_ns);
    lf_jw_int(&o, "list_beside_ns", (int64_t)r->list_ns);
    lf_jw_int(&o, "creates_during_list", (int64_t)r->beside_n);
    lf_jw_int(&o, "slowest_create_during_list_ns", (int64_t)r->beside_max_ns);
    if (r->redis) {
        lf_jw_key(&o, "redis");
        lf_jw ro = lf_jw_open(&b, '{');
        lf_jw_int(&ro, "used_memory_delta_bytes", r->redis_bytes);
        lf_jw_int(&ro, "load_ms", (int64_t)(r->redis_load_s * 1e3));
        json_reads(&ro, &r->on_redis);
        lf_jw_close(&ro, '}');
    }
    lf_jw_close(&o, '}');
    printf("%s%s", first ? "" : ",", b.p);
    fflush(stdout);
    lf_buf_free(&b);
}

/* The largest size's read latencies over the smallest's; for the
 * journal, what a get gained in the machine's random loads at the larger
 * size (the same run's reference: a lookup by key makes at least two). */
static void print_ratio(const char *what, uint64_t nhi, uint64_t nlo, const reads *hi,
                        const reads *lo, uint64_t chase) {
    printf("%s reads at %" PRIu64 " vs %" PRIu64 ": get %.1fx, list first %.1fx, "
           "list page %d %.1fx, audit %.1fx",
           what, nhi, nlo, (double)hi->get_p50 / (double)lo->get_p50,
           (double)hi->list_first / (double)lo->list_first, DEEP,
           (double)hi->list_deep / (double)lo->list_deep,
           (double)hi->audit_p50 / (double)lo->audit_p50);
    if (chase && hi->get_p50 > lo->get_p50)
        printf("; get's %.2f us more is %.1f of the machine's random loads at %" PRIu64
               " (%" PRIu64 " ns each)",
               (double)(hi->get_p50 - lo->get_p50) / 1e3,
               (double)(hi->get_p50 - lo->get_p50) / (double)chase, nhi, chase);
    putchar('\n');
}

static void print_ratios(const scale_result *lo, const scale_result *hi,
                         const scale_result *rlo, const scale_result *rhi) {
    print_ratio("journal", hi->records, lo->records, &hi->journal, &lo->journal, hi->chase_ns);
    if (rhi->records > rlo->records)
        print_ratio("redis", rhi->records, rlo->records, &rhi->on_redis, &rlo->on_redis, 0);
}

/* ---- the leg ------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* "10000,100000" into sizes[]; returns how many, or -1 after a usage
 * message. Page 100 of 100 must exist, hence at least 10,000. */
static int parse_sizes(lf_cli *c, const char *list, uint64_t *sizes) {
    char buf[256], *save = NULL;
    int n = 0;
    snprintf(buf, sizeof buf, "%s", list);
    for (char *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        if (n == MAX_SIZES || lf_cli_parse_u64(s, 10000, 10000000, &sizes[n]) != 0) {
            lf_cli_usage(c, "--scale takes up to %d record counts from 10000 to 10000000, "
                            "comma separated, got '%s'", MAX_SIZES, list);
            return -1;
        }
        n++;
    }
    if (n == 0) lf_cli_usage(c, "--scale needs record counts, e.g. 10000,100000");
    return n ? n : -1;
}

/* tmp/bare: a policy set of the user's workflows alone (a symlink). */
static int workflows_only(const char *policies, const char *tmp, char *out, size_t cap) {
    char abs[PATH_MAX], src[PATH_MAX + 16], dst[PATH_MAX + 48];
    if (!realpath(policies, abs)) return -1;
    snprintf(out, cap, "%s/bare", tmp);
    snprintf(src, sizeof src, "%s/workflows", abs);
    snprintf(dst, sizeof dst, "%s/workflows", out);
    return mkdir(out, 0700) == 0 && symlink(src, dst) == 0 ? 0 : -1;
}

/* One size: the journal written, checked, measured, then removed (a
 * journal of a million records is gigabytes). Returns 0, or -1. */
static int one_size(const scale_ctx *x, scale_result *r) {
    struct stat st;
    int rc = forked(generate, x, r, "writing the journal");
    uint64_t want = r->records * (LF_BENCH_NSTEPS + 1);
    if (rc == 0 && r->entries != want) {
        fprintf(stderr, "bench: scale: the log holds %" PRIu64 " entries, not %" PRIu64 "\n",
                r->entries, want);
        rc = -1;
    }
    if (rc == 0 && stat(x->journal, &st) != 0) rc = -1;
    r->journal_bytes = rc == 0 ? (uint64_t)st.st_size : 0;
    if (rc == 0) rc = forked(measure, x, r, "reading the journal");
    unlink(x->journal);
    unlink(x->ids);
    if (rc == 0 && x->redis_url && r->records <= REDIS_MAX)
        rc = forked(measure_redis, x, r, "the redis leg");
    return rc;
}

int lf_bench_scale(lf_cli *c, const char *sizes_arg) {
    uint64_t sizes[MAX_SIZES];
    int nsizes = parse_sizes(c, sizes_arg, sizes);
    if (nsizes < 0) return LF_EXIT_USAGE;
    const char *t = getenv("TMPDIR");
    char tmp[PATH_MAX], bare[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s/loopforge-scale.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("bench: scale: mkdtemp");
        return LF_EXIT_UNAVAILABLE;
    }
    scale_ctx x = {.cli = c, .policies = bare};
    lf_bench_redis_server sv = {0};
    char why[256];
    int srv = lf_bench_redis_server_start(&sv, why, sizeof why);
    if (srv == 0) x.redis_url = sv.url;
    else fprintf(stderr, "bench: scale: no redis leg: %s\n", why);
    snprintf(x.journal, sizeof x.journal, "%s/scale.journal", tmp);
    snprintf(x.ids, sizeof x.ids, "%s/scale.ids", tmp);
    int rc = LF_EXIT_OK;
    if (workflows_only(c->policies, tmp, bare, sizeof bare) != 0) {
        fprintf(stderr, "bench: scale: cannot link %s/workflows\n", c->policies);
        rc = LF_EXIT_UNAVAILABLE;
    }
    scale_result lo = {0}, hi = {0}, rlo = {0}, rhi = {0};
    if (c->json) printf("{\"scale\":[");
    for (int i = 0; i < nsizes && rc == LF_EXIT_OK; i++) {
        scale_result r = {.records = sizes[i]};
        if (one_size(&x, &r) != 0) {
            rc = LF_EXIT_FAILURE;
            break;
        }
        if (c->json) print_json(&r, i == 0);
        else print_text(&r);
        if (!lo.records || r.records < lo.records) lo = r;
        if (r.records > hi.records) hi = r;
        if (r.redis && (!rlo.records || r.records < rlo.records)) rlo = r;
        if (r.redis && r.records > rhi.records) rhi = r;
    }
    if (c->json) puts("]}");
    else if (rc == LF_EXIT_OK && hi.records > lo.records) print_ratios(&lo, &hi, &rlo, &rhi);
    lf_bench_redis_server_stop(&sv);
    if (nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "bench: scale: could not remove %s\n", tmp);
    return rc;
}
