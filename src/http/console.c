/* console.c -- the web console's server side: its files (GET /ui/, read
 * from the ui/ directory installed with the binary), the workflows as data
 * (GET /v1/workflows) and as pictures (GET /v1/workflows/{name}/graph.svg,
 * laid out by Graphviz and kept per policy generation), and the live
 * stream of committed entries (GET /v1/events, Server-Sent Events), which
 * API clients may use too (docs/http.md). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <graphviz/gvc.h>

#include "internal.h"
#include "../core/clock.h"
#include "../core/mem.h"
#include "../engine/engine_internal.h"

#ifndef LF_DATADIR
#define LF_DATADIR "/usr/local/share/loopforge"
#endif

#define EVENTS_PING_S 15            /* a comment line keeps proxies (and our
                                       own --timeout) from closing an idle
                                       stream: at most this, and half the
                                       timeout */
#define EVENTS_MAX_BACKLOG (1 << 20)    /* bytes a slow reader may owe */
#define UI_FILE_MAX (4 << 20)

/* ---- files ---------------------------------------------------------------- */

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* $LOOPFORGE_UI, else ui/ beside a build tree the binary runs from
 * (build/loopforge, build/asan/loopforge), else the installed copy. */
static char *find_ui(void) {
    const char *env = getenv("LOOPFORGE_UI");
    if (env && *env) return is_dir(env) ? lf_xstrdup(env) : NULL;
    char exe[PATH_MAX], cand[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        static const char *const up[] = {"/../ui", "/../../ui"};
        for (size_t i = 0; i < sizeof up / sizeof *up; i++) {
            snprintf(cand, sizeof cand, "%s%s", exe, up[i]);
            if (is_dir(cand)) return lf_xstrdup(cand);
        }
    }
    return is_dir(LF_DATADIR "/ui") ? lf_xstrdup(LF_DATADIR "/ui") : NULL;
}

static const char *content_type(const char *name) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".png", "image/png"},                 {".ico", "image/x-icon"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof *types; i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return NULL;
}

/* GET /ui/ and /ui/NAME: a file of the console, by a plain name only (no
 * path, no dot file), never anything outside its directory. */
void lf_console_file(lf_req *r) {
    lf_server *s = r->srv;
    if (r->route == LF_RT_UI_INDEX) {
        /* The path lost its trailing slash (request.c); the page's own
         * relative URLs need it. */
        const char *uri = r->req ? evhttp_request_get_uri(r->req) : "";
        size_t n = strcspn(uri, "?#");
        if (n == 0 || uri[n - 1] != '/') {
            lf_console_root(r);
            return;
        }
    }
    const char *name = r->route == LF_RT_UI_INDEX ? "index.html" : r->param;
    const char *type = content_type(name);
    bool plain = name[0] != '.' && strspn(name, "abcdefghijklmnopqrstuvwxyz"
                                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
                                       strlen(name);
    if (!s->ui_dir) {
        lf_reply_error(r, 404, "not_found",
                       "the console's files are not installed (ui/ beside the binary or "
                       "in %s; or set LOOPFORGE_UI)",
                       LF_DATADIR "/ui");
        return;
    }
    if (!plain || !type) {
        lf_reply_error(r, 404, "not_found", "no such console file: %s", name);
        return;
    }
    char path[PATH_MAX + 256];
    snprintf(path, sizeof path, "%s/%s", s->ui_dir, name);
    size_t len = 0;
    char *body = lf_read_file(path, &len);
    if (!body || len > UI_FILE_MAX) {
        free(body);
        lf_reply_error(r, 404, "not_found", "no such console file: %s", name);
        return;
    }
    lf_add_header(r, "Cache-Control", "no-cache");
    lf_add_header(r, "X-Content-Type-Options", "nosniff");
    lf_reply_take(r, 200, type, body, len);
}

/* GET /: the console. */
void lf_console_root(lf_req *r) {
    lf_add_header(r, "Location", "/ui/");
    lf_reply_error(r, 302, "found", "the console is at /ui/");
}

/* ---- workflows ------------------------------------------------------------- */

void lf_api_workflows(lf_req *r) {
    lf_buf b = LF_BUF_INIT;
    lf_rules_workflows_json(lf_engine_rules(r->srv->engine), &b);
    lf_reply_json(r, 200, lf_buf_str(&b));
    lf_buf_free(&b);
}

static void svg_cache_clear(lf_server *s) {
    for (size_t i = 0; i < lf_map_span(&s->svg); i++) {
        lf_map_slot *e = lf_map_at(&s->svg, i);
        if (!e) continue;
        free((char *)e->key);
        free(e->val);
    }
    lf_map_free(&s->svg);
    memset(&s->svg, 0, sizeof s->svg);
}

/* One Graphviz context for the process: its text-layout plugin keeps the
 * last font name it was asked for, which freeing a context frees under the
 * next one (a use after free on the second drawing). */
static GVC_t *graphviz(void) {
    static GVC_t *gvc;
    if (!gvc) gvc = gvContext();
    return gvc;
}

/* The workflow's dot (core/workflow.c: every state and edge with an id)
 * laid out by Graphviz. NULL if Graphviz fails. */
static char *render_svg(const lf_workflow *wf) {
    lf_buf dot = LF_BUF_INIT;
    lf_workflow_dot(wf, &dot);
    char *out = NULL, *data = NULL;
    unsigned int len = 0;
    GVC_t *gvc = graphviz();
    Agraph_t *g = gvc ? agmemread(lf_buf_str(&dot)) : NULL;
    if (g && gvLayout(gvc, g, "dot") == 0) {
        if (gvRenderData(gvc, g, "svg", &data, &len) == 0 && data) {
            out = lf_xmalloc(len + 1);
            memcpy(out, data, len);
            out[len] = '\0';
        }
        if (data) gvFreeRenderData(data);
        gvFreeLayout(gvc, g);
    }
    if (g) agclose(g);
    lf_buf_free(&dot);
    return out;
}

void lf_api_workflow_svg(lf_req *r) {
    lf_server *s = r->srv;
    const lf_rules *rules = lf_engine_rules(s->engine);
    const lf_workflow *wf = lf_rules_workflow(rules, r->param);
    if (!wf) {
        lf_reply_error(r, 404, "not_found", "no workflow %s in the loaded policy set",
                       r->param);
        return;
    }
    /* A layout takes milliseconds: done once per workflow and generation. */
    const char *gen = lf_rules_generation(rules);
    if (strcmp(s->svg_gen, gen) != 0) {
        svg_cache_clear(s);
        snprintf(s->svg_gen, sizeof s->svg_gen, "%s", gen);
    }
    char *svg = lf_map_get(&s->svg, wf->name);
    if (!svg && (svg = render_svg(wf))) lf_map_put(&s->svg, lf_xstrdup(wf->name), svg);
    if (!svg) {
        lf_reply_error(r, 500, "internal", "Graphviz could not draw workflow %s", wf->name);
        return;
    }
    lf_add_header(r, "Cache-Control", "no-cache");
    lf_reply(r, 200, "image/svg+xml", svg, strlen(svg));
}

/* ---- the event stream ------------------------------------------------------ */

static void events_remove(lf_server *s, lf_req *r) {
    for (size_t i = 0; i < s->nevents; i++)
        if (s->events[i] == r) {
            s->events[i] = s->events[--s->nevents];
            return;
        }
}

static void events_gone(lf_req *r) {
    events_remove(r->srv, r);
    lf_req_drop(r);
}

static void events_flushed(lf_req *r) { (void)r; }

/* Bytes the client has not taken yet: past EVENTS_MAX_BACKLOG it is cut
 * off (it reconnects and reads the log for what it missed), so a stalled
 * reader cannot make the server hold the whole log for it. */
static size_t backlog(lf_req *r) {
    struct evhttp_connection *c = r->req ? evhttp_request_get_connection(r->req) : NULL;
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void events_send(lf_server *s, const char *text, size_t len) {
    for (size_t i = s->nevents; i-- > 0;) {
        lf_req *r = s->events[i];
        if (backlog(r) > EVENTS_MAX_BACKLOG) {
            events_remove(s, r);
            lf_stream_abort(r);
            continue;
        }
        struct evbuffer *b = evbuffer_new();
        if (!b) continue;
        evbuffer_add(b, text, len);
        lf_stream_chunk(r, b, events_flushed);
        evbuffer_free(b);
    }
}

/* An entry the engine committed: one event, `id` its seq. */
static void on_entry(const lf_entry *e, void *arg) {
    lf_server *s = arg;
    lf_checkpoints_appended(s);
    if (!s->nevents) return;
    lf_buf b = LF_BUF_INIT;
    lf_buf_printf(&b, "id: %llu\nevent: entry\ndata: ", (unsigned long long)e->seq);
    lf_jw o = lf_jw_open(&b, '{');
    lf_jw_int(&o, "seq", (int64_t)e->seq);
    lf_jw_str(&o, "record_id", e->record_id);
    lf_jw_str(&o, "kind", lf_entry_kind_name(e->kind));
    lf_jw_str(&o, "from_state", e->from_state);
    lf_jw_str(&o, "to_state", e->to_state);
    lf_jw_str(&o, "trigger", e->trigger);
    lf_jw_str(&o, "actor", e->actor);
    lf_jw_str(&o, "timestamp", e->timestamp);
    lf_jw_bool(&o, "violation", e->violation != NULL);
    lf_jw_close(&o, '}');
    lf_buf_puts(&b, "\n\n");
    events_send(s, b.p, b.len);
    lf_buf_free(&b);
}

static void on_ping(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    static const char ping[] = ": ping\n\n";
    events_send(arg, ping, sizeof ping - 1);
}

/* GET /v1/events: text/event-stream of every entry committed from now on
 * (`event: entry`, `id:` its seq, `data:` a summary), until the client
 * goes or the server drains. */
void lf_api_events(lf_req *r) {
    lf_server *s = r->srv;
    static const char hello[] = ": loopforge events\n\n";
    if (s->nevents == s->capevents) {
        s->capevents = s->capevents ? 2 * s->capevents : 8;
        s->events = lf_xrealloc(s->events, s->capevents * sizeof *s->events);
    }
    s->events[s->nevents++] = r;
    lf_add_header(r, "Cache-Control", "no-cache");
    lf_add_header(r, "X-Accel-Buffering", "no");
    lf_stream_start(r, 200, "text/event-stream", events_gone);
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    evbuffer_add(b, hello, sizeof hello - 1);
    lf_stream_chunk(r, b, events_flushed);
    evbuffer_free(b);
}

/* ---- the audit's health ---------------------------------------------------- */

void lf_console_policies_seen(lf_server *s) {
    const char *gen = s->engine ? lf_engine_generation(s->engine) : "";
    if (strcmp(s->gen_seen, gen) == 0) return;
    snprintf(s->gen_seen, sizeof s->gen_seen, "%s", gen);
    lf_ts_format(lf_now_us(), s->gen_since);
}

/* GET /v1/checkpoints/latest: the last signed checkpoint this server
 * appended (the document `loopforge checkpoint` prints), or 404. */
void lf_api_checkpoint_latest(lf_req *r) {
    if (!r->srv->cp_last) {
        lf_reply_error(r, 404, "not_found",
                       lf_engine_can_sign(r->srv->engine)
                           ? "no checkpoint signed by this server yet"
                           : "this server has no signing key (--signing-key)");
        return;
    }
    lf_reply_json(r, 200, r->srv->cp_last);
}

/* ---- lifetime -------------------------------------------------------------- */

void lf_console_start(lf_server *s) {
    int half = s->cfg.timeout_s / 2;
    const struct timeval every = {half < 1 ? 1 : half < EVENTS_PING_S ? half : EVENTS_PING_S, 0};
    s->ui_dir = find_ui();
    if (!s->engine) return;
    lf_console_policies_seen(s);
    lf_engine_watch(s->engine, on_entry, s);
    s->events_ping = event_new(s->base, -1, EV_PERSIST, on_ping, s);
    if (s->events_ping) event_add(s->events_ping, &every);
}

void lf_console_drain(lf_server *s) {
    while (s->nevents) {
        lf_req *r = s->events[--s->nevents];
        lf_stream_end(r);
    }
}

void lf_console_free(lf_server *s) {
    if (s->engine) lf_engine_watch(s->engine, NULL, NULL);
    if (s->events_ping) event_free(s->events_ping);
    s->events_ping = NULL;
    free(s->events);
    s->events = NULL;
    s->nevents = s->capevents = 0;
    svg_cache_clear(s);
    free(s->ui_dir);
    s->ui_dir = NULL;
    free(s->cp_last);
    s->cp_last = NULL;
}
