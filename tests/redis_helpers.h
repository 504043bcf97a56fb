/* redis_helpers.h -- a private redis-server for the tests.
 *
 * Started with fork/exec on a unix socket in a fresh temp directory (no
 * TCP port: --port 0), waited for by polling the socket until it answers
 * PING, and stopped after. Polling a condition, with a deadline, is how we
 * wait for it: never a fixed sleep. With `persist` the server keeps an
 * append-only file fsync'ed on every write, so a test can kill it and
 * start it again on the same socket and find everything acknowledged.
 *
 * The tests talk to it directly (FLUSHALL, SCRIPT FLUSH, tampering)
 * through synchronous hiredis: that is test scaffolding, never the
 * store's request path. Include after <cmocka.h> and store_helpers.h. */
#ifndef LF_TEST_REDIS_HELPERS_H
#define LF_TEST_REDIS_HELPERS_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <hiredis/hiredis.h>

typedef struct t_redis {
    pid_t pid;
    bool persist;
    char *dir;
    char *sock;
    char *url;                      /* unix://SOCK */
} t_redis;

static inline void t_nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline int64_t t_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A synchronous connection, or NULL if the server does not answer. */
static inline redisContext *t_redis_connect(const t_redis *r) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectUnixWithTimeout(r->sock, tv);
    if (c && c->err) {
        redisFree(c);
        c = NULL;
    }
    if (c) redisSetTimeout(c, (struct timeval){5, 0});
    return c;
}

static inline bool t_redis_pings(const t_redis *r) {
    redisContext *c = t_redis_connect(r);
    redisReply *rep = c ? redisCommand(c, "PING") : NULL;
    bool ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (rep) freeReplyObject(rep);
    if (c) redisFree(c);
    return ok;
}

/* Starts (or, with dir already set, restarts) the server. */
static inline void t_redis_start(t_redis *r) {
    char log[4200];
    if (!r->dir) {
        r->dir = t_tmpdir();
        assert_true(asprintf(&r->sock, "%s/redis.sock", r->dir) > 0);
        assert_true(asprintf(&r->url, "unix://%s", r->sock) > 0);
    }
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", r->sock,
               "--unixsocketperm", "700", "--save", "", "--appendonly",
               r->persist ? "yes" : "no", "--appendfsync", "always", "--dir", r->dir,
               "--daemonize", "no", "--logfile", log, (char *)NULL);
        fprintf(stderr, "cannot run redis-server: %s (install redis-server)\n",
                strerror(errno));
        _exit(127);
    }
    r->pid = pid;
    int64_t deadline = t_mono_ms() + 20000;
    while (!t_redis_pings(r)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            fail_msg("redis-server exited before it answered (see %s)", log);
        }
        if (t_mono_ms() > deadline) fail_msg("redis-server did not answer within 20 s");
        t_nap_ms(10);
    }
}

static inline void t_redis_stop(t_redis *r, int sig) {
    if (r->pid <= 0) return;
    kill(r->pid, sig);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

static inline void t_redis_free(t_redis *r) {
    t_redis_stop(r, SIGTERM);
    if (r->dir) t_rmtree(r->dir);
    free(r->dir);
    free(r->sock);
    free(r->url);
    memset(r, 0, sizeof *r);
}

/* One command on a fresh synchronous connection; fails the test if the
 * server does not answer. The caller frees the reply. */
static inline redisReply *t_redis_cmdv(const t_redis *r, int argc, const char **argv,
                                       const size_t *lens) {
    redisContext *c = t_redis_connect(r);
    if (!c) fail_msg("redis-server at %s does not answer", r->sock);
    redisReply *rep = redisCommandArgv(c, argc, argv, lens);
    if (!rep) fail_msg("redis command %s failed: %s", argv[0], c->errstr);
    redisFree(c);
    return rep;
}

static inline redisReply *t_redis_cmd(const t_redis *r, const char *fmt, ...) {
    redisContext *c = t_redis_connect(r);
    if (!c) fail_msg("redis-server at %s does not answer", r->sock);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!rep) fail_msg("redis command '%s' failed: %s", fmt, c->errstr);
    redisFree(c);
    return rep;
}

static inline void t_redis_ok(const t_redis *r, const char *fmt, ...) {
    redisContext *c = t_redis_connect(r);
    if (!c) fail_msg("redis-server at %s does not answer", r->sock);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        fail_msg("redis command '%s' failed: %s", fmt, rep ? rep->str : c->errstr);
    freeReplyObject(rep);
    redisFree(c);
}

#endif
