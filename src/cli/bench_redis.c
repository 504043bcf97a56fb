/* bench_redis.c -- the redis leg of `loopforge bench` (bench_redis.h).
 *
 * The workload is bench.c's -- N records, each created and walked through
 * the 6-transition happy path through the public engine API, guards and
 * all -- but with `inflight` records under way at once, so that many
 * transitions are in flight on the store's one connection. The rate is
 * per transition (6 x N), the time covers the creates too.
 *
 * Beside it, redis-benchmark runs the same commit script with the same
 * concurrency (one connection, `inflight` commands pipelined) and real
 * arguments: a line and a record JSON taken from the run. Each call
 * writes a new record under fresh random keys (a head key of its own,
 * so the chain check passes), i.e. the script's whole write path, which
 * is the bare cost a commit has on the server. The ratio says how much
 * of that the full client path keeps.
 *
 * Memory per record is INFO used_memory's growth over the workload,
 * divided by N: records with 7 history entries, their indexes and their
 * share of the audit log (reported on its own: MEMORY USAGE of the log's
 * lists).
 *
 * Benchmark scaffolding may block: the side connection used for INFO and
 * cleanup is synchronous hiredis. The store itself never is. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "bench_redis.h"
#include "bench_util.h"
#include "../core/clock.h"
#include "../core/entry.h"
#include "../store/redis.h"


static double now_s(void) { return (double)lf_mono_ns() / 1e9; }

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- a private redis-server --------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static bool server_pings(const char *sock) {
    redisContext *c = redisConnectUnixWithTimeout(sock, (struct timeval){1, 0});
    redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    if (c) redisFree(c);
    return ok;
}

/* Returns 0, 1 if there is no redis-server to run (why says so), -1 on
 * another failure. Waits for it by polling the socket, with a deadline. */
int lf_bench_redis_server_start(lf_bench_redis_server *sv, char *why, size_t whylen) {
    const char *tmp = getenv("TMPDIR");
    char log[4300];
    int st;
    snprintf(sv->dir, sizeof sv->dir, "%s/loopforge-bench-redis.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(sv->dir)) {
        snprintf(why, whylen, "mkdtemp: %s", strerror(errno));
        return -1;
    }
    snprintf(sv->sock, sizeof sv->sock, "%s/redis.sock", sv->dir);
    snprintf(sv->url, sizeof sv->url, "unix://%s", sv->sock);
    snprintf(log, sizeof log, "%s/redis.log", sv->dir);
    if ((sv->pid = fork()) < 0) {
        snprintf(why, whylen, "fork: %s", strerror(errno));
        return -1;
    }
    if (sv->pid == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sv->sock,
               "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--dir", sv->dir, "--logfile", log, (char *)NULL);
        _exit(127);
    }
    for (double deadline = now_s() + 20; !server_pings(sv->sock); nap_ms(10)) {
        if (waitpid(sv->pid, &st, WNOHANG) == sv->pid) {
            sv->pid = 0;
            bool missing = WIFEXITED(st) && WEXITSTATUS(st) == 127;
            if (missing)
                snprintf(why, whylen,
                         "redis-server not found (install "
                         "redis-server, or pass --store redis://...)");
            else
                snprintf(why, whylen,
                         "redis-server exited at start (see its "
                         "log in %.*s)",
                         (int)(whylen > 64 ? whylen - 64 : 0), sv->dir);
            return missing ? 1 : -1;
        }
        if (now_s() > deadline) {
            snprintf(why, whylen, "redis-server did not answer within 20 s");
            return -1;
        }
    }
    return 0;
}

void lf_bench_redis_server_stop(lf_bench_redis_server *sv) {
    if (sv->pid > 0) {
        kill(sv->pid, SIGTERM);
        waitpid(sv->pid, NULL, 0);
        sv->pid = 0;
    }
    if (sv->dir[0]) nftw(sv->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- the side connection (INFO, MEMORY, cleanup) ------------------------ */

redisContext *lf_bench_redis_side(const lf_redis_url *u) {
    struct timeval tv = {u->connect_timeout_ms / 1000,
                         (u->connect_timeout_ms % 1000) * 1000};
    redisContext *c = u->path ? redisConnectUnixWithTimeout(u->path, tv)
                              : redisConnectWithTimeout(u->host, u->port, tv);
    redisReply *r;
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    if (u->password) {
        r = u->user ? redisCommand(c, "AUTH %s %s", u->user, u->password)
                    : redisCommand(c, "AUTH %s", u->password);
        if (r) freeReplyObject(r);
    }
    if ((r = redisCommand(c, "SELECT %d", u->db))) freeReplyObject(r);
    return c;
}

long long lf_bench_redis_used_memory(redisContext *c) {
    redisReply *r = redisCommand(c, "INFO memory");
    long long n = -1;
    const char *p =
        r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    if (p) n = strtoll(p + 12, NULL, 10);
    if (r) freeReplyObject(r);
    return n;
}

/* A string reply, copied, or NULL. */
static char *side_get(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    char *s = NULL;
    if (r && r->type == REDIS_REPLY_STRING) {
        /* A packed line may hold NULs, which a command line cannot: they
         * become 0x01, the same length (the script never reads the line). */
        s = lf_xmalloc(r->len + 1);
        for (size_t i = 0; i < r->len; i++) s[i] = r->str[i] ? r->str[i] : '\x01';
        s[r->len] = '\0';
    }
    if (r) freeReplyObject(r);
    return s;
}

/* MEMORY USAGE of the log's lists (P log:<n>, up to the head's seq), or
 * -1. */
static long long log_memory(redisContext *c, const char *prefix) {
    redisReply *r = redisCommand(c, "HGET %shead seq", prefix);
    long long head = r && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    if (r) freeReplyObject(r);
    long long sum = head > 0 ? 0 : -1;
    for (long long n = 0; sum >= 0 && n <= (head - 1) / LF_REDIS_LOG_LIST; n++) {
        r = redisCommand(c, "MEMORY USAGE %slog:%lld SAMPLES 0", prefix, n);
        sum = r && r->type == REDIS_REPLY_INTEGER ? sum + r->integer : -1;
        if (r) freeReplyObject(r);
    }
    return sum;
}

/* Deletes every key under prefix: SCAN in batches, never KEYS. */
static void side_cleanup(redisContext *c, const char *prefix) {
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s* COUNT 1000", cursor, prefix);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) freeReplyObject(r);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        if (keys->elements) {
            const char **argv = lf_xmalloc((keys->elements + 1) * sizeof *argv);
            argv[0] = "UNLINK";
            for (size_t i = 0; i < keys->elements; i++)
                argv[i + 1] = keys->element[i]->str;
            redisReply *d = redisCommandArgv(c, (int)keys->elements + 1, argv, NULL);
            if (d) freeReplyObject(d);
            free(argv);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
}

static void on_warm(const lf_result *r, void *arg) {
    (void)r;
    *(bool *)arg = true;
}

/* ---- redis-benchmark ---------------------------------------------------- */

/* The rps field of the result line. The first field is the command
 * itself, unescaped -- our JSON arguments hold '","' of their own -- so
 * count from the right: rps is followed by six latency fields. */
static double parse_rps(const char *out) {
    const char *line = NULL, *p = out;
    while ((p = strstr(p, "\"EVALSHA"))) line = p++;
    if (!line) return 0;
    /* The record runs to the end: the command it echoes holds a packed
     * line, which may hold newlines of its own. */
    const char *end = line + strlen(line);
    while (end > line && (end[-1] == '\n' || end[-1] == '\r')) end--;
    int seps = 0;
    for (const char *q = end - 3; q > line; q--) {
        if (memcmp(q, "\",\"", 3) != 0) continue;
        if (++seps == 7) return strtod(q + 3, NULL);
    }
    return 0;
}

/* Runs argv with stdout and stderr into *out. Returns the exit status, or
 * -1 if it could not run at all. */
static int run_capture(char *const argv[], char **out) {
    int fd[2], st;
    size_t len = 0, cap = 4096;
    char *buf = lf_xmalloc(cap);
    if (pipe(fd) < 0) {
        free(buf);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        free(buf);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    for (;;) {
        if (len + 1024 > cap) { buf = lf_xrealloc(buf, cap *= 2); }
        ssize_t n = read(fd[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fd[0]);
    waitpid(pid, &st, 0);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* EVALSHA commit, with a real line from the run, under fresh random keys
 * per call (redis-benchmark's __rand_int__). The arguments follow the
 * commit script's layout (redis_lua.c): mode create, 13 keys, 13 ARGV,
 * no idempotency key, the line as it is (a value that refers to its policy
 * set is checked against nothing then). */
static double script_rate(const lf_redis_url *u, const char *prefix, const char *line,
                          size_t inflight, size_t requests, char *note, size_t notelen) {
    char sha[41], port[16], db[16], pipeline[24], n[24], keys[13][256];
    const char *argv[64];
    int a = 0;
    lf_redis_script_sha(LF_SCRIPT_COMMIT, sha);
    snprintf(port, sizeof port, "%d", u->port);
    snprintf(db, sizeof db, "%d", u->db);
    snprintf(pipeline, sizeof pipeline, "%zu", inflight);
    snprintf(n, sizeof n, "%zu", requests);
    const char *names[13] = {"__rand_int__:head",
                             "__rand_int__:log:0",
                             "idem",
                             "rec:{bench-__rand_int__}",
                             "rec:{bench-__rand_int__}:log",
                             "ref",
                             "state:issue_created",
                             "state:issue_created",
                             "sr:13:issue_created:loopforge/bench",
                             "sr:13:issue_created:loopforge/bench",
                             "ent:issue_created",
                             "ent:issue_created",
                             "timed"};
    for (int i = 0; i < 13; i++)
        snprintf(keys[i], sizeof keys[i], "%srb:%s", prefix, names[i]);

    argv[a++] = "redis-benchmark";
    if (u->path) {
        argv[a++] = "-s";
        argv[a++] = u->path;
    } else {
        argv[a++] = "-h";
        argv[a++] = u->host;
        argv[a++] = "-p";
        argv[a++] = port;
    }
    if (u->user) {
        argv[a++] = "--user";
        argv[a++] = u->user;
    }
    if (u->password) {
        argv[a++] = "-a";
        argv[a++] = u->password;
    }
    argv[a++] = "--dbnum";
    argv[a++] = db;
    argv[a++] = "-c";
    argv[a++] = "1";
    argv[a++] = "-P";
    argv[a++] = pipeline;
    argv[a++] = "-n";
    argv[a++] = n;
    argv[a++] = "-r";
    argv[a++] = "1000000000";
    argv[a++] = "--csv";
    argv[a++] = "EVALSHA";
    argv[a++] = sha;
    argv[a++] = "13";
    for (int i = 0; i < 13; i++) argv[a++] = keys[i];
    argv[a++] = "create";
    argv[a++] = "1";
    argv[a++] = LF_GENESIS;
    argv[a++] = "54407c7e877f38896ac3871f48833377dd912bf4b69094a8c0d0088aa57672be";
    argv[a++] = line;
    argv[a++] = "1";
    argv[a++] = "1795000000000000";
    argv[a++] = "bench-__rand_int__";
    argv[a++] = "https://github.com/loopforge/bench/issues/__rand_int__";
    /* a repo, open, its state known in P states (as a process's commits
     * into a state it entered before); entered at the score */
    argv[a++] = "10000011795000000000000";
    argv[a++] = "";
    argv[a++] = "";
    argv[a++] = "0";            /* no limits (core/entry.h) */
    argv[a] = NULL;

    char *out = NULL;
    int st = run_capture((char *const *)argv, &out);
    double rps = st == 0 && out ? parse_rps(out) : 0;
    if (rps <= 0) {
        const char *e = out ? strstr(out, "Error") : NULL;
        if (st == 127)
            snprintf(note, notelen, "redis-benchmark not found (install redis-tools)");
        else
            snprintf(note, notelen, "redis-benchmark failed: %.*s",
                     e ? (int)strcspn(e, "\n") : 20, e ? e : "no result line");
    }
    free(out);
    return rps;
}

/* ---- the leg ------------------------------------------------------------ */

/* The URL with the bench's own key prefix (a later prefix= wins), so a
 * run on a given server touches nothing but its own keys. */
static char *bench_url(const char *url, long pid) {
    return lf_xprintf("%s%cprefix=lf%%3Abench%%3A%ld%%3A", url,
                      strchr(url, '?') ? '&' : '?', pid);
}

int lf_bench_redis(lf_cli *c, const char *url, size_t records, size_t inflight,
                   lf_bench_redis_result *out) {
    lf_bench_redis_server sv = {0};
    lf_redis_url u = {0};
    redisContext *side = NULL;
    lf_engine *e = NULL;
    char err[600], *burl = NULL, *line = NULL, first[LF_ID_LEN + 1] = "";
    int rc = LF_EXIT_FAILURE;

    memset(out, 0, sizeof *out);
    out->records = records;
    out->inflight = inflight = inflight ? inflight : LF_BENCH_REDIS_INFLIGHT;
    out->bytes_per_record = out->log_bytes_per_record = -1;
    if (!url) {
        int s = lf_bench_redis_server_start(&sv, out->note, sizeof out->note);
        if (s > 0) {
            out->skipped = true;
            rc = LF_EXIT_OK;
            goto done;
        }
        if (s < 0) {
            fprintf(stderr, "bench: redis: %s\n", out->note);
            goto done;
        }
        url = sv.url;
    }
    burl = bench_url(url, (long)getpid());
    if (lf_redis_url_parse(burl, &u, err, sizeof err) < 0) {
        fprintf(stderr, "bench: redis: %s\n", err);
        rc = LF_EXIT_USAGE;
        goto done;
    }
    lf_engine_config cfg = {.store = burl, .policies = c->policies, .base = c->base};
    lf_code code = LF_UNAVAILABLE;
    if (!(e = lf_engine_new(&cfg, err, sizeof err, &code))) {
        fprintf(stderr, "bench: redis: %s\n", err);
        rc = lf_cli_exit_code(code == LF_OK ? LF_UNAVAILABLE : code);
        goto done;
    }
    lf_engine_set_log(e, lf_bench_log, NULL);
    if (!(side = lf_bench_redis_side(&u))) {
        fprintf(stderr, "bench: redis %s: no side connection\n", u.addr);
        goto done;
    }
    /* Connected and scripts loaded before memory is measured. */
    bool warm = false;
    lf_engine_get(e, "loop-0000000000000000", on_warm, &warm);
    while (!warm && event_base_loop(c->base, EVLOOP_ONCE) == 0)
        ;
    long long mem0 = lf_bench_redis_used_memory(side);
    if (lf_bench_inflight(c, e, records, inflight, "redis", &out->seconds, first) < 0)
        goto done;
    long long mem1 = lf_bench_redis_used_memory(side);
    out->transitions_per_s = (double)(records * LF_BENCH_NSTEPS) / out->seconds;
    if (mem0 >= 0 && mem1 >= 0)
        out->bytes_per_record = (double)(mem1 - mem0) / (double)records;
    long long log = log_memory(side, u.prefix);
    if (log >= 0) out->log_bytes_per_record = (double)log / (double)records;

    /* A real argument: a transition from the middle of the run. */
    /* (hiredis formats %s and %llu, not %zu) */
    unsigned long long mid = records * (LF_BENCH_NSTEPS + 1) / 2 - 1;
    line = side_get(side, "LINDEX %slog:%llu %llu", u.prefix, mid / LF_REDIS_LOG_LIST,
                    mid % LF_REDIS_LOG_LIST);
    if (line) {
        size_t req = records * LF_BENCH_NSTEPS;
        req = req < 10000 ? 10000 : req > 100000 ? 100000 : req;
        out->script_per_s = script_rate(&u, u.prefix, line, inflight, req, out->note,
                                        sizeof out->note);
    } else {
        snprintf(out->note, sizeof out->note, "no sample entry for redis-benchmark");
    }
    rc = LF_EXIT_OK;
done:
    if (e) lf_engine_free(e);
    if (side) {
        if (!sv.pid && u.prefix) side_cleanup(side, u.prefix);
        redisFree(side);
    }
    free(line);
    free(burl);
    lf_redis_url_free(&u);
    lf_bench_redis_server_stop(&sv);
    return rc;
}

void lf_bench_redis_print(const lf_cli *c, const lf_bench_redis_result *r, bool first) {
    double ratio = r->script_per_s > 0 ? r->transitions_per_s / r->script_per_s : 0;
    if (c->json) {
        printf("%s{\"store\":\"redis\",\"skipped\":%s,\"in_flight\":%zu,"
               "\"seconds\":%.6f,\"transitions_per_s\":%.0f,"
               "\"redis_benchmark_script_per_s\":%.0f,\"ratio\":%.3f,"
               "\"redis_bytes_per_record\":%.0f,\"audit_log_bytes_per_record\":%.0f,"
               "\"note\":",
               first ? "" : ",", r->skipped ? "true" : "false", r->inflight, r->seconds,
               r->transitions_per_s, r->script_per_s, ratio, r->bytes_per_record,
               r->log_bytes_per_record);
        lf_cli_json_str(stdout, r->note[0] ? r->note : NULL);
        putchar('}');
    } else if (r->skipped) {
        printf("redis: skipped: %s\n", r->note);
    } else {
        printf("redis: %.0f transitions/s (%.0f ns/transition, %zu in flight)\n",
               r->transitions_per_s, 1e9 / r->transitions_per_s, r->inflight);
        if (r->script_per_s > 0)
            printf("redis: redis-benchmark, the same commit script, %zu in flight: "
                   "%.0f commits/s; loopforge reaches %.0f%% of it\n",
                   r->inflight, r->script_per_s, 100 * ratio);
        else printf("redis: redis-benchmark: %s\n", r->note);
        if (r->bytes_per_record >= 0)
            printf("redis: memory per record (7 history entries): %.0f bytes, "
                   "of which the audit log %.0f\n",
                   r->bytes_per_record, r->log_bytes_per_record);
    }
    fflush(stdout);
}
