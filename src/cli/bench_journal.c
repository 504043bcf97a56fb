/* bench_journal.c -- what group commit buys (docs/architecture.md,
 * "Journal"), as part of `loopforge bench`: the journal store driven with
 * many requests in flight, as `serve` drives it, against the rate at which
 * one writer can append a 500-byte line and fdatasync it -- the ceiling
 * of a journal that syncs every commit on its own, measured on the same
 * disk in the same run. Then several processes sharing one journal
 * without an event base (the Lua module's way: each commit flushed before
 * it returns), against one process alone: what flushing after giving the
 * lock back buys. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench_journal.h"
#include "bench_util.h"
#include "../core/clock.h"

/* Appends + fdatasyncs per second of one writer, or -1. */
static double fsync_rate(const char *dir) {
    char path[4200], line[500];
    snprintf(path, sizeof path, "%s/fsync.bench", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    const int n = 2000;
    uint64_t t0 = lf_mono_ns();
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
        ok = write(fd, line, sizeof line) == (ssize_t)sizeof line && fdatasync(fd) == 0;
    double s = (double)(lf_mono_ns() - t0) / 1e9;
    close(fd);
    unlink(path);
    return ok ? n / s : -1;
}

static void created(const lf_result *r, void *arg) { *(int *)arg = r->success ? 1 : -1; }

/* A child's part: n records made one at a time on the journal at url by
 * an engine without an event base. Its exit status. */
static int make_records(const char *url, const char *policies, int who, size_t n) {
    char err[512], ref[128];
    lf_engine_config cfg = {.store = url, .policies = policies};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, NULL);
    if (!e) {
        fprintf(stderr, "bench: journal: %s\n", err);
        return 1;
    }
    lf_engine_set_log(e, lf_bench_log, NULL);
    int done = 1;
    for (size_t i = 0; i < n && done == 1; i++) {
        snprintf(ref, sizeof ref, "loopforge/bench#solo-%d-%zu", who, i);
        lf_create_req req = {.ref = ref, .actor = "bench"};
        done = 0;
        lf_engine_create(e, &req, created, &done);  /* no base: answered inline */
    }
    lf_engine_free(e);
    return done == 1 ? 0 : 1;
}

/* Creates per second of `procs` processes (forked: nothing else runs in
 * this one meanwhile), each making n records on the journal at url, or
 * -1. */
static double shared_rate(const char *url, const char *policies, int procs, size_t n) {
    pid_t pid[8];
    int ok = 1, started = 0;
    fflush(NULL);
    uint64_t t0 = lf_mono_ns();
    for (; started < procs; started++) {
        if ((pid[started] = fork()) < 0) break;
        if (pid[started] == 0) _exit(make_records(url, policies, started, n));
    }
    for (int i = 0; i < started; i++) {
        int st;
        ok &= waitpid(pid[i], &st, 0) == pid[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    double s = (double)(lf_mono_ns() - t0) / 1e9;
    return ok && started == procs ? (double)procs * (double)n / s : -1;
}

int lf_bench_journal(lf_cli *c, const char *dir, const char *policies, size_t records,
                     size_t inflight) {
    double ref = fsync_rate(dir);
    if (ref < 0) {
        perror("bench: journal: append + fdatasync");
        return LF_EXIT_UNAVAILABLE;
    }
    char url[4200], err[512], first[LF_ID_LEN + 1];
    snprintf(url, sizeof url, "file:%s/inflight.journal", dir);
    lf_engine_config cfg = {.store = url, .policies = policies, .base = c->base};
    lf_code code = LF_UNAVAILABLE;
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, &code);
    if (!e) {
        fprintf(stderr, "bench: journal: %s\n", err);
        return LF_EXIT_UNAVAILABLE;
    }
    lf_engine_set_log(e, lf_bench_log, NULL);
    double seconds = 0;
    int rc = lf_bench_inflight(c, e, records, inflight, "journal", &seconds, first);
    lf_engine_free(e);
    if (rc < 0) return LF_EXIT_FAILURE;
    double rate = (double)(records * (LF_BENCH_NSTEPS + 1)) / seconds;
    printf("journal: %zu in flight (group commit): %.0f entries/s vs %.0f/s for one writer's "
           "append + fdatasync of a 500-byte line: %.1fx (target >= 10x)\n",
           inflight, rate, ref, rate / ref);
    fflush(stdout);

    enum { PROCS = 4 };
    size_t each = records / PROCS ? records / PROCS : 1;
    char url1[4200];
    snprintf(url, sizeof url, "file:%s/shared.journal", dir);
    snprintf(url1, sizeof url1, "file:%s/alone.journal", dir);
    double one = shared_rate(url1, policies, 1, each * PROCS);
    double four = one < 0 ? -1 : shared_rate(url, policies, PROCS, each);
    unlink(url + 5);
    unlink(url1 + 5);
    if (four < 0) {
        fprintf(stderr, "bench: journal: the processes sharing it failed\n");
        return LF_EXIT_FAILURE;
    }
    printf("journal: %d processes without an event base (the Lua module's way), %zu creates "
           "each: %.0f creates/s together vs %.0f/s for one process alone: %.1fx\n",
           PROCS, each, four, one, four / one);
    fflush(stdout);
    return LF_EXIT_OK;
}
