/* bench_journal.c -- what group commit buys (docs/architecture.md,
 * "Journal"), as part of `loopforge bench`: the journal store driven with
 * many requests in flight, as `serve` drives it, against the rate at which
 * one writer can append a 500-byte line and fdatasync it -- the ceiling
 * of a journal that syncs every commit on its own, measured on the same
 * disk in the same run. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
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
    return LF_EXIT_OK;
}
