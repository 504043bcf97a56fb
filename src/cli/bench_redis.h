/* bench_redis.h -- the redis leg of `loopforge bench`.
 *
 * LoopForge's workload (N records, each created and walked through the
 * 6-transition happy path, through the public engine API) on a redis
 * store with many transitions in flight at once; beside it, in the same
 * run, redis-benchmark calling the same commit script (EVALSHA, real
 * arguments taken from the run) with the same concurrency; and Redis's
 * memory per record (7 history entries) from INFO memory. */
#ifndef LF_BENCH_REDIS_H
#define LF_BENCH_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>
#include "cli.h"
#include "../store/redis.h"

#define LF_BENCH_REDIS_INFLIGHT 64      /* default concurrency */

typedef struct lf_bench_redis_result {
    bool skipped;                   /* no redis-server to run on: see note */
    size_t records, inflight;
    double seconds;                 /* the workload, creates included */
    double transitions_per_s;       /* 6 x records / seconds */
    double script_per_s;            /* redis-benchmark; 0 if it did not run */
    double bytes_per_record;        /* used_memory growth / records, or -1 */
    double log_bytes_per_record;    /* the audit log's share, or -1 */
    char note[256];                 /* what was skipped and why, or "" */
} lf_bench_redis_result;

/* Runs the redis leg. url: a redis:// or unix:// store URL, or NULL to
 * start a private redis-server for the run (on a unix socket in a temp
 * directory, removed after; skipped, not failed, if there is no
 * redis-server). On a given server the run works under its own key
 * prefix and deletes its keys afterwards. inflight 0 means the default.
 * Returns an exit code (LF_EXIT_OK also when skipped), having reported
 * any failure on stderr. */
int lf_bench_redis(lf_cli *c, const char *url, size_t records, size_t inflight,
                   lf_bench_redis_result *out);

/* A private redis-server on a unix socket in a temp directory (url is
 * its store URL). Start returns 0, 1 if there is no redis-server (why
 * says so), -1 on another failure; stop kills it and removes the
 * directory. */
typedef struct lf_bench_redis_server {
    pid_t pid;
    char dir[4096];
    char sock[4200];
    char url[4300];
} lf_bench_redis_server;
int lf_bench_redis_server_start(lf_bench_redis_server *sv, char *why, size_t whylen);
void lf_bench_redis_server_stop(lf_bench_redis_server *sv);

/* A synchronous connection beside the store's (INFO, FLUSHDB, cleanup),
 * or NULL; and INFO memory's used_memory on it, or -1. */
redisContext *lf_bench_redis_side(const lf_redis_url *u);
long long lf_bench_redis_used_memory(redisContext *c);

/* One line of text (or, with --json, one object of the "stores" array:
 * `first` says whether it needs a leading comma). */
void lf_bench_redis_print(const lf_cli *c, const lf_bench_redis_result *r, bool first);

#endif
