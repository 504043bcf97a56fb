/* log.c -- the server's log: one JSON object per line on stderr, e.g.
 *
 *   {"time":"2026-11-23T01:48:57.000120Z","level":"info","msg":"request",
 *    "request_id":"5f1c02aa-12","route":"/v1/records/{id}","status":200,…}
 *
 * Lines are only ever written whole, so they never interleave and a log
 * shipper can parse each one alone. Once the server runs, the lines of one
 * turn of the event loop go out together in one write(2) at the end of
 * that turn (under load that is many requests per syscall, not one each);
 * before that, and at exit, each line is written at once. The engine's own
 * messages (hook errors, follow-ups) come through lf_log_engine in the same
 * shape, with "source":"engine". */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <event2/event.h>
#include "internal.h"
#include "../core/clock.h"

static lf_log_level min_level = LF_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void lf_log_set_level(lf_log_level min) { min_level = min; }

bool lf_log_enabled(lf_log_level level) { return level >= min_level; }

lf_jw lf_log_begin(lf_buf *b, lf_log_level level) {
    char ts[LF_TS_LEN + 1];
    lf_ts_format(lf_now_us(), ts);
    lf_buf_reserve(b, 384);     /* a request's line: one allocation, not four */
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_key(&o, "time");
    lf_buf_putc(b, '"');
    lf_buf_add(b, ts, LF_TS_LEN);
    lf_buf_putc(b, '"');
    lf_jw_str(&o, "level", level_names[level]);
    return o;
}

#define BATCH_MAX (64 * 1024)

static struct event *flush_ev;  /* NULL: write each line at once */
static lf_buf batch = LF_BUF_INIT;

/* If stderr is gone (EPIPE, EBADF) there is nobody left to tell. */
static void write_all(const char *p, size_t left) {
    while (left) {
        ssize_t n = write(2, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        p += n;
        left -= (size_t)n;
    }
}

static void flush_batch(void) {
    write_all(batch.p, batch.len);
    lf_buf_reset(&batch);
}

static void on_flush(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
    flush_batch();
}

void lf_log_attach(struct event_base *base) {
    flush_ev = event_new(base, -1, 0, on_flush, NULL);
}

void lf_log_detach(void) {
    flush_batch();
    lf_buf_free(&batch);
    if (flush_ev) event_free(flush_ev);
    flush_ev = NULL;
}

void lf_log_end(lf_buf *b) {
    lf_buf_puts(b, "}\n");
    if (!flush_ev) {
        write_all(b->p, b->len);
    } else {
        /* Activated, the flush runs after every callback already due in
         * this turn of the loop: one write for all their lines. */
        if (batch.len == 0) event_active(flush_ev, 0, 0);
        lf_buf_add(&batch, b->p, b->len);
        if (batch.len > BATCH_MAX) flush_batch();
    }
    lf_buf_free(b);
}

static void vlog(lf_log_level level, const char *source, const char *fmt, va_list ap) {
    if (!lf_log_enabled(level)) return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    lf_buf b = LF_BUF_INIT;
    lf_jw o = lf_log_begin(&b, level);
    if (source) lf_jw_str(&o, "source", source);
    lf_jw_str(&o, "msg", msg);
    lf_log_end(&b);
}

void lf_logf(lf_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

static void engine_line(lf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void engine_line(lf_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, "engine", fmt, ap);
    va_end(ap);
}

void lf_log_engine(lf_log_level level, const char *msg, void *ud) {
    (void)ud;
    if (level > LF_LOG_ERROR) level = LF_LOG_ERROR;
    engine_line(level, "%s", msg);
}
