/* redis_conn.c -- the redis store's one connection to the server.
 *
 * One hiredis async context on the caller's event base carries every
 * command, so replies come back in the order the commands went out:
 * that is what lets commits pipeline (redis.c). This module owns the
 * context and everything around it:
 *
 *   - the handshake on every (re)connect: AUTH, SELECT, SCRIPT LOAD of
 *     each script, and HMGET of the log's head, the tip commits seal on.
 *     Requests need not wait for it: they queue behind it on the wire;
 *   - the queues an op sits in: `sent` (on the wire, oldest first),
 *     `waiting` (arrived while there was no connection) and `unsealed`
 *     (commits waiting for the tip);
 *   - timeouts, which hiredis 0.14 lacks: a connect timer, and a command
 *     timer on the oldest command on the wire. Either one firing drops
 *     the connection, which fails everything on it;
 *   - outages: when the connection goes, hiredis calls every pending
 *     callback with a NULL reply and each op fails once, LF_UNAVAILABLE,
 *     naming the address. The next request reconnects: at once if the
 *     connection had been fine, else after a backoff (50 ms doubling to
 *     1 s), so a dead server is never hammered and a request never waits
 *     longer than the backoff plus the connect timeout.
 *
 * Re-entrancy: users' callbacks run inside hiredis callbacks and our
 * timers, and may call the store again or even free it. `busy` counts
 * the store's frames on the stack; lf_store_free tears down at once but
 * the memory goes when the last frame unwinds (lf_redis_release). */
#include "redis.h"
#include "../core/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define MAX_RELOADS 2           /* NOSCRIPT recoveries per op */

int64_t lf_redis_now_us(void) { return (int64_t)(lf_mono_ns() / 1000); }

void lf_redis_errf(const lf_redis *s, char *out, size_t outlen, const char *fmt, ...) {
    int n = snprintf(out, outlen, "redis %s: ", s->url.addr);
    if (n < 0 || (size_t)n >= outlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, outlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- queues ------------------------------------------------------------ */

void lf_redis_q_push(lf_rop_list *q, lf_rop *op) {
    op->next = NULL;
    op->prev = q->tail;
    if (q->tail) q->tail->next = op;
    else q->head = op;
    q->tail = op;
}

void lf_redis_q_remove(lf_rop_list *q, lf_rop *op) {
    if (op->prev) op->prev->next = op->next;
    else q->head = op->next;
    if (op->next) op->next->prev = op->prev;
    else q->tail = op->prev;
    op->prev = op->next = NULL;
}

lf_rop *lf_redis_q_pop(lf_rop_list *q) {
    lf_rop *op = q->head;
    if (op) lf_redis_q_remove(q, op);
    return op;
}

/* Takes the whole queue, leaving it empty: callbacks fired while we walk
 * it may queue new ops, and those must not join this walk. */
static lf_rop_list q_take(lf_rop_list *q) {
    lf_rop_list all = *q;
    q->head = q->tail = NULL;
    return all;
}

static void fail_all(lf_rop_list *q, lf_code code, const char *why) {
    lf_rop_list all = q_take(q);
    lf_rop *op;
    while ((op = lf_redis_q_pop(&all))) { lf_redis_fail(op, code, why); }
}

static void send_all(lf_rop_list *q) {
    lf_rop_list all = q_take(q);
    lf_rop *op;
    while ((op = lf_redis_q_pop(&all))) op->type->send(op);
}

/* ---- timers ------------------------------------------------------------ */

static void arm_ms(struct event *ev, int64_t ms) {
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/* The command timer watches the oldest command on the wire; it is armed
 * lazily and re-armed from its own callback, never per command. */
static void cmd_timer_arm(lf_redis *s) {
    if (!s->connected || !s->sent.head || evtimer_pending(s->t_cmd, NULL)) return;
    int64_t start =
        s->sent.head->sent_us > s->connected_us ? s->sent.head->sent_us : s->connected_us;
    int64_t left = (int64_t)s->url.timeout_ms * 1000 - (lf_redis_now_us() - start);
    arm_ms(s->t_cmd, left > 0 ? (left + 999) / 1000 : 0);
}

static void attempt_failed(lf_redis *s) {
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS) s->backoff_ms = BACKOFF_MAX_MS;
    s->next_attempt_us = lf_redis_now_us() + (int64_t)s->backoff_ms * 1000;
}

/* ---- losing the connection --------------------------------------------- */

/* The connection in s->ac is gone or going (s->down says why): forget
 * it. Commits that were waiting for its tip fail with it; what hiredis
 * still holds fails through the NULL replies hiredis is about to send. */
static void conn_lost(lf_redis *s) {
    bool was_ready = s->ready;
    s->ac = NULL;
    s->connected = s->ready = s->tip_known = false;
    s->epoch++;
    evtimer_del(s->t_connect);
    evtimer_del(s->t_cmd);
    if (was_ready) {
        s->backoff_ms = 0;          /* it worked until now: try at once */
        s->next_attempt_us = 0;
    } else {
        attempt_failed(s);
    }
    fail_all(&s->unsealed, LF_UNAVAILABLE, s->down);
}

/* Drops the connection on our initiative (timeouts, a failed
 * handshake). Inside a hiredis callback the free is deferred by hiredis
 * until that callback returns; either way every pending command's
 * callback then fires with a NULL reply. */
static void conn_kill(lf_redis *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conn_kill(lf_redis *s, const char *fmt, ...) {
    redisAsyncContext *ac = s->ac;
    char why[400];
    if (!ac) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    lf_redis_errf(s, s->down, sizeof s->down, "%s", why);
    conn_lost(s);
    redisAsyncFree(ac);
}

/* ---- event-loop entry points -------------------------------------------- */

static void on_connect_timer(evutil_socket_t fd, short what, void *arg) {
    lf_redis *s = arg;
    (void)fd;
    (void)what;
    s->busy++;
    if (s->ac && !s->connected)
        conn_kill(s, "connect timed out after %d ms", s->url.connect_timeout_ms);
    lf_redis_release(s);
}

static void on_cmd_timer(evutil_socket_t fd, short what, void *arg) {
    lf_redis *s = arg;
    (void)fd;
    (void)what;
    s->busy++;
    lf_rop *op = s->sent.head;
    if (s->ac && s->connected && op) {
        int64_t start = op->sent_us > s->connected_us ? op->sent_us : s->connected_us;
        if (lf_redis_now_us() - start >= (int64_t)s->url.timeout_ms * 1000)
            conn_kill(s, "no reply within %d ms", s->url.timeout_ms);
        else cmd_timer_arm(s);
    }
    lf_redis_release(s);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg) {
    lf_redis *s = arg;
    (void)fd;
    (void)what;
    s->busy++;
    if (!s->ac && s->waiting.head) lf_redis_conn_start(s);
    lf_redis_release(s);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    lf_redis *s = ac->data;
    if (!s || s->ac != ac) return;
    s->busy++;
    if (status == REDIS_OK) {
        s->connected = true;
        s->connected_us = lf_redis_now_us();
        evtimer_del(s->t_connect);
        cmd_timer_arm(s);
    } else {
        /* hiredis frees the context right after we return, failing what
         * it holds with NULL replies. */
        lf_redis_errf(s, s->down, sizeof s->down, "cannot connect: %s",
                      ac->errstr[0] ? ac->errstr : "refused");
        conn_lost(s);
    }
    lf_redis_release(s);
}

/* An idle connection dropped by the server (or the network) ends here
 * with no reply pending; the next request reconnects. */
static void on_disconnect(const redisAsyncContext *ac, int status) {
    lf_redis *s = ac->data;
    (void)status;
    if (!s || s->ac != ac) return;
    s->busy++;
    lf_redis_errf(s, s->down, sizeof s->down, "connection lost: %s",
                  ac->errstr[0] ? ac->errstr : "closed by the server");
    conn_lost(s);
    lf_redis_release(s);
}

static void noscript(lf_rop *op) {
    lf_redis *s = op->s;
    if (++op->reloads > MAX_RELOADS) {
        char msg[600];
        lf_redis_errf(s, msg, sizeof msg,
                      "script %s is still unknown to the "
                      "server after SCRIPT LOAD",
                      s->sha[op->script]);
        lf_redis_fail(op, LF_UNAVAILABLE, msg);
        return;
    }
    /* SCRIPT FLUSH, a restart without persistence of the script cache, a
     * failover: load it again, ahead of the retry on the same wire. */
    lf_redis_load_script(s, (lf_redis_script)op->script);
    if (op->type->noscript) op->type->noscript(op);
    else op->type->send(op);
}

/* Every reply, and every NULL that means the connection went, lands here
 * first; ops only ever see real replies. */
static void on_reply(redisAsyncContext *ac, void *reply, void *priv) {
    lf_rop *op = priv;
    redisReply *r = reply;
    if (op->orphan) {               /* its store is closed, its user told */
        op->type->destroy(op);
        return;
    }
    lf_redis *s = op->s;
    s->busy++;
    lf_redis_q_remove(&s->sent, op);
    if (!s->sent.head) evtimer_del(s->t_cmd);
    if (!r) {
        if (s->ac == ac) {
            lf_redis_errf(s, s->down, sizeof s->down, "connection lost: %s",
                          ac->errstr[0] ? ac->errstr : "closed");
            conn_lost(s);
        }
        lf_redis_fail(op, LF_UNAVAILABLE, s->down);
    } else if (r->type == REDIS_REPLY_ERROR && op->script >= 0 &&
               strncmp(r->str, "NOSCRIPT", 8) == 0) {
        noscript(op);
    } else {
        op->type->reply(op, r);
    }
    lf_redis_release(s);
}

/* ---- sending ----------------------------------------------------------- */

/* "<c><n>\r\n" at w; returns the end. */
static char *resp_head(char *w, char c, size_t n) {
    *w++ = c;
    w += lf_fmt_int((int64_t)n, w);
    *w++ = '\r';
    *w++ = '\n';
    return w;
}

/* RESP by hand: "*argc", then "$len" and the bytes of each argument.
 * hiredis's formatters write each length with a printf-like call (300 to
 * 700 instructions an argument, and a commit has some thirty): that was
 * a tenth of serve's own instructions on Redis. hiredis still sends it
 * (redisAsyncFormattedCommand) and parses every reply. The lengths are
 * measured once and the command written in one pass into one allocation:
 * a call per piece was ~4 % of serve's work a transition on Redis. */
void lf_redis_format(lf_rop *op, int argc, const char **argv, const size_t *lens) {
    size_t stack[32], *n = argc <= 32 ? stack : lf_xmalloc((size_t)argc * sizeof *n);
    size_t room = LF_INT_CHARS + 3;
    for (int i = 0; i < argc; i++) {
        n[i] = lens ? lens[i] : strlen(argv[i]);
        room += LF_INT_CHARS + 5 + n[i];
    }
    char *cmd = lf_xmalloc(room), *w = resp_head(cmd, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        w = resp_head(w, '$', n[i]);
        memcpy(w, argv[i], n[i]);
        w += n[i];
        *w++ = '\r';
        *w++ = '\n';
    }
    *w = '\0';
    if (n != stack) free(n);
    lf_redis_cmd_free(op);
    op->cmdlen = (size_t)(w - cmd);
    op->cmd = cmd;
}

void lf_redis_cmd_free(lf_rop *op) {
    free(op->cmd);
    op->cmd = NULL;
}

void lf_redis_fail(lf_rop *op, lf_code code, const char *why) {
    op->type->notify(op, code, why);
    op->type->destroy(op);
}

void lf_redis_write(lf_rop *op) {
    lf_redis *s = op->s;
    if (redisAsyncFormattedCommand(s->ac, on_reply, op, op->cmd, op->cmdlen) !=
        REDIS_OK) {
        char msg[600];
        lf_redis_errf(s, msg, sizeof msg, "cannot send: %s",
                      s->ac->errstr[0] ? s->ac->errstr : "connection closing");
        lf_redis_fail(op, LF_UNAVAILABLE, msg);
        return;
    }
    op->sent_us = lf_redis_now_us();
    lf_redis_q_push(&s->sent, op);
    cmd_timer_arm(s);
}

void lf_redis_wait(lf_rop *op) {
    lf_redis *s = op->s;
    lf_redis_q_push(&s->waiting, op);
    if (!s->ac && !evtimer_pending(s->t_retry, NULL)) {
        int64_t left = s->next_attempt_us - lf_redis_now_us();
        arm_ms(s->t_retry, left > 0 ? (left + 999) / 1000 : 0);
    }
}

void lf_redis_wait_tip(lf_rop *op) { lf_redis_q_push(&op->s->unsealed, op); }

void lf_redis_send(lf_rop *op) {
    if (op->s->ac) lf_redis_write(op);
    else lf_redis_wait(op);
}

/* ---- the handshake ----------------------------------------------------- */

enum { HS_AUTH, HS_SELECT, HS_LOAD, HS_RELOAD, HS_HEAD };

/* An internal command: no user to tell, nothing to retry. */
typedef struct hs_op {
    lf_rop op;
    int step;
    int which;          /* the script a SCRIPT LOAD is for */
} hs_op;

static void hs_send(lf_rop *op) {
    if (op->s->ac) lf_redis_write(op);
    else op->type->destroy(op);
}

static void hs_notify(lf_rop *op, lf_code code, const char *why) {
    (void)op;
    (void)code;
    (void)why;
}

static void hs_destroy(lf_rop *op) {
    lf_redis_cmd_free(op);
    free(op);
}

/* A head field: true if it is a string (*str set) or nil (*str NULL). */
static bool hs_field(const redisReply *f, const char **str) {
    *str = f->type == REDIS_REPLY_STRING ? f->str : NULL;
    return f->type == REDIS_REPLY_STRING || f->type == REDIS_REPLY_NIL;
}

/* The head the next commit seals on: {seq, hash}, both nil on a new log. */
static void hs_head(lf_redis *s, redisReply *r) {
    const char *seq = NULL, *hash = NULL;
    char *end = NULL;
    unsigned long long n = 0;
    bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              hs_field(r->element[0], &seq) && hs_field(r->element[1], &hash) &&
              !seq == !hash;
    if (ok && seq) {
        n = strtoull(seq, &end, 10);
        ok = *seq && *end == '\0' && strlen(hash) == LF_HASH_LEN;
    }
    if (!ok) {
        conn_kill(s, "%s does not hold a log head {seq, hash}%s%s", s->k_head,
                  r->type == REDIS_REPLY_ERROR ? ": " : "",
                  r->type == REDIS_REPLY_ERROR ? r->str : "");
        return;
    }
    s->tip_seq = n;
    memcpy(s->tip_hash, hash ? hash : LF_GENESIS, LF_HASH_LEN);
    s->tip_hash[LF_HASH_LEN] = '\0';
    s->tip_known = s->ready = true;
    s->backoff_ms = 0;
    lf_redis_on_ready(s);
}

static void hs_reply(lf_rop *op, redisReply *r) {
    hs_op *h = (hs_op *)op;
    lf_redis *s = op->s;
    int step = h->step, script = h->which;
    op->type->destroy(op);
    if (step == HS_HEAD) {
        hs_head(s, r);
        return;
    }
    if (step == HS_RELOAD || r->type != REDIS_REPLY_ERROR) {
        /* A SCRIPT LOAD answers with the SHA1 we computed ourselves. */
        if (step == HS_LOAD &&
            (r->type != REDIS_REPLY_STRING || strcmp(r->str, s->sha[script]) != 0))
            conn_kill(s, "SCRIPT LOAD returned an unexpected SHA1");
        return;
    }
    if (step == HS_AUTH) conn_kill(s, "AUTH failed: %s", r->str);
    else if (step == HS_SELECT) conn_kill(s, "SELECT %d failed: %s", s->url.db, r->str);
    else conn_kill(s, "SCRIPT LOAD failed: %s", r->str);
}

static const lf_rop_type hs_type = {
    .send = hs_send,
    .reply = hs_reply,
    .notify = hs_notify,
    .destroy = hs_destroy,
};

static void hs_command(lf_redis *s, int step, int script, int argc, const char **argv) {
    hs_op *h = lf_xcalloc(1, sizeof *h);
    h->op.type = &hs_type;
    h->op.s = s;
    h->op.script = -1;      /* not an EVALSHA: no NOSCRIPT path */
    h->step = step;
    h->which = script;
    lf_redis_format(&h->op, argc, argv, NULL);
    hs_send(&h->op);
}

void lf_redis_load_script(lf_redis *s, lf_redis_script id) {
    const char *argv[] = {"SCRIPT", "LOAD", lf_redis_script_src(id)};
    hs_command(s, HS_RELOAD, (int)id, 3, argv);
}

static void handshake(lf_redis *s) {
    char db[16];
    if (s->url.password) {
        const char *argv[] = {"AUTH", s->url.user ? s->url.user : s->url.password,
                              s->url.password};
        hs_command(s, HS_AUTH, -1, s->url.user ? 3 : 2, argv);
    }
    if (s->url.db) {
        snprintf(db, sizeof db, "%d", s->url.db);
        const char *argv[] = {"SELECT", db};
        hs_command(s, HS_SELECT, -1, 2, argv);
    }
    for (int i = 0; i < LF_SCRIPT__COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", lf_redis_script_src((lf_redis_script)i)};
        hs_command(s, HS_LOAD, i, 3, argv);
    }
    const char *argv[] = {"HMGET", s->k_head, "seq", "hash"};
    hs_command(s, HS_HEAD, -1, 4, argv);
}

void lf_redis_on_ready(lf_redis *s) { send_all(&s->unsealed); }

/* ---- lifecycle --------------------------------------------------------- */

void lf_redis_conn_init(lf_redis *s) {
    s->t_connect = lf_xptr(evtimer_new(s->evb, on_connect_timer, s));
    s->t_cmd = lf_xptr(evtimer_new(s->evb, on_cmd_timer, s));
    s->t_retry = lf_xptr(evtimer_new(s->evb, on_retry_timer, s));
}

void lf_redis_conn_start(lf_redis *s) {
    redisAsyncContext *ac;
    if (s->ac || s->closing) return;
    ac = lf_xptr(s->url.path ? redisAsyncConnectUnix(s->url.path)
                             : redisAsyncConnect(s->url.host, s->url.port));
    if (ac->err || redisLibeventAttach(ac, s->evb) != REDIS_OK) {
        lf_redis_errf(s, s->down, sizeof s->down, "cannot connect: %s",
                      ac->errstr[0] ? ac->errstr : "cannot attach to the event loop");
        redisAsyncFree(ac);
        attempt_failed(s);
        fail_all(&s->waiting, LF_UNAVAILABLE, s->down);
        return;
    }
    ac->data = s;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->connected = s->ready = s->tip_known = false;
    s->epoch++;
    arm_ms(s->t_connect, s->url.connect_timeout_ms);
    handshake(s);
    send_all(&s->waiting);
}

void lf_redis_conn_close(lf_redis *s) {
    lf_rop *op;
    s->closing = true;
    evtimer_del(s->t_connect);
    evtimer_del(s->t_cmd);
    evtimer_del(s->t_retry);
    lf_redis_errf(s, s->down, sizeof s->down, "the store was closed");
    fail_all(&s->waiting, LF_UNAVAILABLE, s->down);
    fail_all(&s->unsealed, LF_UNAVAILABLE, s->down);
    /* What is on the wire belongs to hiredis until it calls back: tell
     * the users now, and let on_reply free the shells. */
    while ((op = lf_redis_q_pop(&s->sent))) {
        op->type->notify(op, LF_UNAVAILABLE, s->down);
        op->orphan = true;
    }
    redisAsyncContext *ac = s->ac;
    if (ac) {
        s->ac = NULL;
        ac->data = NULL;
        ac->onConnect = NULL;
        ac->onDisconnect = NULL;
        redisAsyncFree(ac);
    }
}

bool lf_redis_release(lf_redis *s) {
    if (--s->busy > 0 || !s->closing) return false;
    lf_redis_destroy(s);
    return true;
}
