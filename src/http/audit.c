/* audit.c -- the audit log over HTTP as NDJSON, one entry per line:
 *
 *   GET /v1/audit?after=SEQ&limit=N     the whole log, in seq order
 *   GET /v1/records/{id}/audit          one record's entries
 *
 * However long the log, memory stays bounded: the log is read a page at a
 * time (lf_engine_audit), each page goes out as one chunk of a chunked
 * reply, and the next page is read only once the previous chunk has
 * reached the socket. A slow reader therefore slows the stream, never
 * fills the server's memory. The first page is read before the status is
 * sent, so a store error or an unknown record is still a proper 503/404;
 * a failure later cuts the connection (no final chunk), so a client never
 * mistakes a broken stream for a complete one. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include "internal.h"

#define PAGE 256

typedef struct audit_stream {
    lf_req *r;
    char *record_id;            /* NULL: the whole log */
    uint64_t after;
    uint64_t left;              /* entries still wanted */
    bool in_engine;             /* a page read is under way */
    bool gone;                  /* the client left during that read */
} audit_stream;

static void next_page(audit_stream *st);

static void stream_free(audit_stream *st) {
    free(st->record_id);
    free(st);
}

/* The client went away (server.c). If a page read is under way, its
 * callback cleans up; otherwise we do it now. */
static void on_gone(lf_req *r) {
    audit_stream *st = r->data;
    if (st->in_engine) {
        st->gone = true;
        return;
    }
    lf_req_drop(r);
    stream_free(st);
}

static void on_flushed(lf_req *r) {
    audit_stream *st = r->data;
    if (st->left == 0) {
        lf_stream_end(r);
        stream_free(st);
        return;
    }
    next_page(st);
}

static void finish_empty(audit_stream *st) {
    lf_req *r = st->r;
    /* Every record that ever existed has at least its "created" entry,
     * so nothing at all (from the start) means no such record. */
    if (st->record_id && st->after == 0)
        lf_reply_error(r, 404, "not_found", "Record not found: %s", st->record_id);
    else lf_reply(r, 200, "application/x-ndjson", "", 0);
}

static void on_page(lf_code code, const char *error, const char *const *lines,
                    const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    audit_stream *st = arg;
    lf_req *r = st->r;
    st->in_engine = false;
    lf_op_end(r, LF_OP_AUDIT);
    if (st->gone) {
        lf_req_drop(r);
        stream_free(st);
        return;
    }
    if (code != LF_OK) {
        lf_logf(LF_LOG_ERROR, "audit stream %s: %s", r->id,
                error ? error : lf_code_name(code));
        if (r->streaming) lf_stream_abort(r);
        else
            lf_reply_error(r, lf_status_of(code), lf_code_name(code), "%s",
                           error ? error : lf_code_name(code));
        stream_free(st);
        return;
    }
    if (n == 0) {
        if (r->streaming) lf_stream_end(r);
        else finish_empty(st);
        stream_free(st);
        return;
    }
    struct evbuffer *buf = lf_xptr(evbuffer_new());
    for (size_t i = 0; i < n; i++) {
        evbuffer_add(buf, lines[i], lens[i]);
        evbuffer_add(buf, "\n", 1);
    }
    st->after = last_seq;
    st->left -= n < st->left ? n : st->left;
    if (!r->streaming) lf_stream_start(r, 200, "application/x-ndjson", on_gone);
    lf_stream_chunk(r, buf, on_flushed);
    evbuffer_free(buf);
}

static void next_page(audit_stream *st) {
    size_t want = st->left < PAGE ? (size_t)st->left : PAGE;
    st->in_engine = true;
    lf_op_begin(st->r);
    lf_engine_audit(st->r->srv->engine, st->record_id, st->after, want, on_page, st);
}

static void start(lf_req *r, const char *record_id, uint64_t after, uint64_t limit) {
    audit_stream *st = lf_xcalloc(1, sizeof *st);
    if (record_id) st->record_id = lf_xstrdup(record_id);
    st->r = r;
    st->after = after;
    st->left = limit;
    r->data = st;
    next_page(st);
}

/* ?after=&limit= (both optional; limit 0 or absent = to the end). */
static bool params(lf_req *r, uint64_t *after, uint64_t *limit) {
    static const char *const allowed[] = {"after", "limit", NULL};
    if (!lf_query_check(r, allowed) || !lf_query_u64(r, "after", 0, UINT64_MAX, after) ||
        !lf_query_u64(r, "limit", 0, UINT64_MAX, limit))
        return false;
    if (*limit == 0) *limit = UINT64_MAX;
    return true;
}

void lf_audit_all(lf_req *r) {
    uint64_t after = 0, limit = 0;
    if (params(r, &after, &limit)) start(r, NULL, after, limit);
}

void lf_audit_record(lf_req *r) {
    uint64_t after = 0, limit = 0;
    if (params(r, &after, &limit)) start(r, r->param, after, limit);
}
