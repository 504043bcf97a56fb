/* lfbot.c -- a small bot that embeds loopforge in its own libevent loop.
 *
 * This is the example of docs/embedding.md: the program owns the event
 * base, the signals and the I/O; the engine runs on that base and answers
 * through callbacks, and never blocks the loop or owns the process.
 *
 *   lfbot [--store URL] [--policies DIR] [--actor NAME] [--socket PATH]
 *
 * It reads one command per line -- from stdin, or with --socket from any
 * number of clients of a unix socket -- and answers each with one line of
 * JSON (the engine's result object):
 *
 *   create REF [REPO]
 *   transition ID|REF STATE TRIGGER [KEY=VALUE...]   (actor=NAME: the actor)
 *   show ID|REF
 *   reload
 *
 * A record is named by its id (loop-...) or by its ref or an alias,
 * which lets a script walk a record it just created without reading the
 * id back. Words are separated by blanks; there is no quoting. SIGHUP
 * reloads the policies; EOF on stdin, SIGTERM or SIGINT end the program
 * through lf_engine_free, which completes whatever is still in flight.
 *
 * Build against an installed loopforge:
 *
 *   cc -o lfbot lfbot.c $(pkg-config --cflags --libs loopforge libevent)
 */
#define _POSIX_C_SOURCE 200809L
#include <loopforge.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define MAX_ARGS 64

typedef struct client client;

typedef struct bot {
    struct event_base *base;
    lf_engine *engine;
    const char *actor;
    struct event *sighup, *sigterm, *sigint;
    struct evconnlistener *listener;
    const char *socket_path;
    client *clients;
    bool stopping;
} bot;

/* One source of commands: stdin, or a socket connection. Its commands
 * run one at a time, so answers come back in the order of the lines. */
struct client {
    bot *bot;
    client *next;
    struct bufferevent *bev;
    struct evbuffer *lines;     /* what was read, not yet run */
    bool is_stdin;              /* answers go to stdout */
    bool busy;                  /* a command is in flight */
    bool pumping;               /* inside pump(): don't re-enter */
    bool eof;                   /* no more lines will come */
    bool closing;               /* flushing its answers, then freed */
    char *line;                 /* the command in flight; argv points in */
    char *argv[MAX_ARGS];
    int argc;
    char *metadata;             /* transition: KEY=VALUE... as JSON */
    const char *actor;
    struct event *resume;       /* the next line, on the next turn */
};

static void pump(client *c);

/* ---- output ------------------------------------------------------------- */

static void put_json_string(char **p, size_t *room, const char *s);

/* Writes one line of JSON to the client: the socket's bufferevent (never
 * blocking), or for stdin, stdout -- a line at a time, flushed, so a pipe
 * reader sees each answer as it comes. That write can block if the
 * reader stalls; a host with slow readers would give stdout a
 * bufferevent too. */
static void answer(client *c, const char *json) {
    if (c->is_stdin) {
        printf("%s\n", json);
        fflush(stdout);
    } else {
        evbuffer_add_printf(bufferevent_get_output(c->bev), "%s\n", json);
    }
}

/* Sized for the worst case: a failed reload lists every problem. */
static void answer_error(client *c, lf_code code, const char *msg) {
    size_t cap = 64 + 6 * strlen(msg);
    char *json = malloc(cap), *p = json;
    if (!json) return;
    int n = snprintf(p, cap,
                     "{\"success\":false,\"code\":\"%s\",\"error\":", lf_code_name(code));
    size_t room = cap - (size_t)n - 1;      /* and the closing brace */
    p += n;
    put_json_string(&p, &room, msg);
    strcpy(p, "}");
    answer(c, json);
    free(json);
}

/* Appends s as a JSON string, escaped; stops quietly when out of room. */
static void put_json_string(char **p, size_t *room, const char *s) {
    char esc[8];
    if (*room < 3) return;
    **p = '"';
    ++*p;
    --*room;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') snprintf(esc, sizeof esc, "\\%c", ch);
        else if (ch < 0x20) snprintf(esc, sizeof esc, "\\u%04x", ch);
        else snprintf(esc, sizeof esc, "%c", ch);
        size_t n = strlen(esc);
        if (n + 2 > *room) break;       /* room for the closing quote and NUL */
        memcpy(*p, esc, n);
        *p += n;
        *room -= n;
    }
    **p = '"';
    ++*p;
    --*room;
    **p = '\0';
}

/* ---- commands ----------------------------------------------------------- */

/* The command in flight is over: the next line may run -- on the loop's
 * next turn, after the engine has run the hooks of what just answered
 * (the caller hears first), so that a command sees their follow-ups. */
static void finished(client *c) {
    static const struct timeval now = {0, 0};
    free(c->line);
    free(c->metadata);
    c->line = c->metadata = NULL;
    c->busy = false;
    if (c->pumping) pump(c);    /* inside pump's loop already: it goes on */
    else evtimer_add(c->resume, &now);
}

/* Every request's callback: the result is valid only during the call,
 * so it is printed right here. */
static void on_result(const lf_result *r, void *arg) {
    client *c = arg;
    char *json = lf_result_json(r);
    if (json) answer(c, json);
    else answer_error(c, LF_UNAVAILABLE, "out of memory");
    free(json);
    finished(c);
}

static void on_reloaded(lf_code code, const char *error, const char *old_gen,
                        const char *new_gen, void *arg) {
    client *c = arg;
    if (code != LF_OK) {
        answer_error(c, code, error);
    } else {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"success\":true,\"code\":\"ok\",\"old_generation\":"
                 "\"%s\",\"new_generation\":\"%s\"}",
                 old_gen, new_gen);
        answer(c, json);
    }
    finished(c);
}

static bool is_id(const char *s) { return strncmp(s, "loop-", 5) == 0; }

static void transition(client *c, const char *id) {
    lf_transition_req q = {.id = id,
                           .to = c->argv[2],
                           .trigger = c->argv[3],
                           .metadata = c->metadata,
                           .actor = c->actor};
    lf_engine_transition(c->bot->engine, &q, on_result, c);
}

/* transition REF ...: the ref resolved to a record, now the real thing. */
static void on_found(const lf_result *r, void *arg) {
    client *c = arg;
    if (!r->success) {
        on_result(r, arg);
        return;
    }
    char id[64];
    snprintf(id, sizeof id, "%s", lf_record_id(r->record));
    transition(c, id);
}

/* KEY=VALUE words as a JSON object of strings; actor=NAME is the actor. */
static bool take_metadata(client *c, int first) {
    size_t cap = 3;                     /* "{}" and the NUL */
    for (int i = first; i < c->argc; i++) cap += 8 + 6 * strlen(c->argv[i]);
    char *json = malloc(cap), *p = json;
    size_t room = cap - 3;
    if (!json) return false;
    *p++ = '{';
    for (int i = first; i < c->argc; i++) {
        char *eq = strchr(c->argv[i], '=');
        if (!eq || eq == c->argv[i]) {
            free(json);
            return false;
        }
        *eq = '\0';
        if (strcmp(c->argv[i], "actor") == 0) {
            c->actor = eq + 1;
            continue;
        }
        if (p[-1] != '{') {
            *p++ = ',';
            room--;
        }
        put_json_string(&p, &room, c->argv[i]);
        *p++ = ':';
        room--;
        put_json_string(&p, &room, eq + 1);
    }
    *p++ = '}';
    *p = '\0';
    c->metadata = json;
    return true;
}

static void run(client *c) {
    bot *b = c->bot;
    const char *cmd = c->argv[0];
    c->actor = b->actor;
    if (strcmp(cmd, "create") == 0 && (c->argc == 2 || c->argc == 3)) {
        lf_create_req q = {.ref = c->argv[1],
                           .repo = c->argc == 3 ? c->argv[2] : NULL,
                           .actor = c->actor};
        lf_engine_create(b->engine, &q, on_result, c);
    } else if (strcmp(cmd, "show") == 0 && c->argc == 2) {
        if (is_id(c->argv[1])) lf_engine_get(b->engine, c->argv[1], on_result, c);
        else lf_engine_find_by_ref(b->engine, c->argv[1], on_result, c);
    } else if (strcmp(cmd, "transition") == 0 && c->argc >= 4) {
        if (!take_metadata(c, 4)) {
            answer_error(c, LF_INVALID_REQUEST, "metadata must be KEY=VALUE words");
            finished(c);
        } else if (is_id(c->argv[1])) {
            transition(c, c->argv[1]);
        } else {
            lf_engine_find_by_ref(b->engine, c->argv[1], on_found, c);
        }
    } else if (strcmp(cmd, "reload") == 0 && c->argc == 1) {
        lf_engine_reload(b->engine, c->actor, on_reloaded, c);
    } else {
        answer_error(c, LF_INVALID_REQUEST,
                     "usage: create REF [REPO] | transition ID|REF "
                     "STATE TRIGGER [KEY=VALUE...] | show ID|REF | reload");
        finished(c);
    }
}

/* ---- clients ------------------------------------------------------------ */

static void stop(bot *b);

static void client_free(client *c) {
    bot *b = c->bot;
    for (client **pp = &b->clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (c->bev) bufferevent_free(c->bev);
    if (c->lines) evbuffer_free(c->lines);
    if (c->resume) event_free(c->resume);
    free(c->line);
    free(c->metadata);
    free(c);
}

static void on_flushed(struct bufferevent *bev, void *arg) {
    client *c = arg;
    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        client_free(c);
}

/* No more lines and nothing in flight: stdin's end is the program's;
 * a socket client goes once its answers are written. */
static void client_done(client *c) {
    if (c->is_stdin) {
        stop(c->bot);
        return;
    }
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    on_flushed(c->bev, c);
}

/* Runs the buffered lines one at a time. A command on an inline store
 * completes inside run(), and finished() calls pump() again: `pumping`
 * turns that recursion into this loop. */
static void pump(client *c) {
    struct evbuffer *in = c->lines;
    if (c->pumping || c->bot->stopping) return;
    c->pumping = true;
    while (!c->busy && !c->bot->stopping) {
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line) break;
        c->argc = 0;
        for (char *w = strtok(line, " \t"); w && c->argc < MAX_ARGS;
             w = strtok(NULL, " \t"))
            c->argv[c->argc++] = w;
        if (c->argc == 0 || c->argv[0][0] == '#') {
            free(line);
            continue;
        }
        c->line = line;
        c->busy = true;
        run(c);
    }
    c->pumping = false;
    if (!c->busy && c->eof && !c->closing && !c->bot->stopping) client_done(c);
}

/* Lines move to our own buffer: the bufferevent's input takes no writes
 * from us, and at EOF a last line may need its newline. */
static void on_read(struct bufferevent *bev, void *arg) {
    client *c = arg;
    evbuffer_add_buffer(c->lines, bufferevent_get_input(bev));
    pump(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    client *c = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))) return;
    if (c->closing) {           /* the peer went before its answers did */
        client_free(c);
        return;
    }
    evbuffer_add_buffer(c->lines, bufferevent_get_input(bev));
    if (what & BEV_EVENT_ERROR)
        evbuffer_drain(c->lines, evbuffer_get_length(c->lines));  /* nobody to answer */
    else if (evbuffer_get_length(c->lines))
        evbuffer_add(c->lines, "\n", 1);    /* a last line without a newline */
    c->eof = true;
    pump(c);
}

static void resume(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    pump(arg);
}

static client *client_new(bot *b, evutil_socket_t fd, bool is_stdin) {
    client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->bot = b;
    c->is_stdin = is_stdin;
    /* stdin is not ours to close; a connection is. */
    c->bev = bufferevent_socket_new(b->base, fd, is_stdin ? 0 : BEV_OPT_CLOSE_ON_FREE);
    c->lines = evbuffer_new();
    c->resume = evtimer_new(b->base, resume, c);
    if (!c->bev || !c->lines || !c->resume) {
        if (c->bev) bufferevent_free(c->bev);
        if (c->lines) evbuffer_free(c->lines);
        if (c->resume) event_free(c->resume);
        free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, on_read, is_stdin ? NULL : on_flushed, on_event, c);
    if (bufferevent_enable(c->bev, EV_READ) != 0) {
        bufferevent_free(c->bev);
        evbuffer_free(c->lines);
        free(c);
        return NULL;
    }
    c->next = b->clients;
    b->clients = c;
    return c;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int len, void *arg) {
    (void)l;
    (void)sa;
    (void)len;
    if (!client_new(arg, fd, false)) evutil_closesocket(fd);
}

static int listen_on(bot *b, const char *path) {
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        fprintf(stderr, "lfbot: socket path too long: %s\n", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    unlink(path);               /* a stale socket from an earlier run */
    b->listener = evconnlistener_new_bind(b->base, on_accept, b, LEV_OPT_CLOSE_ON_FREE,
                                          -1, (struct sockaddr *)&sun, sizeof sun);
    if (!b->listener) {
        fprintf(stderr, "lfbot: cannot listen on %s: %s\n", path, strerror(errno));
        return -1;
    }
    b->socket_path = path;
    return 0;
}

/* ---- signals and the engine's log ---------------------------------------- */

static void stop(bot *b) {
    b->stopping = true;
    event_base_loopexit(b->base, NULL);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg) {
    (void)sig;
    (void)what;
    stop(arg);
}

static void on_hup_reloaded(lf_code code, const char *error, const char *old_gen,
                            const char *new_gen, void *arg) {
    (void)arg;
    if (code == LF_OK)
        fprintf(stderr, "lfbot: policies reloaded: %.12s -> %.12s\n", old_gen, new_gen);
    else
        fprintf(stderr,
                "lfbot: reload refused (%s), generation %.12s keeps serving:\n%s\n",
                lf_code_name(code), old_gen, error);
}

static void on_hup(evutil_socket_t sig, short what, void *arg) {
    bot *b = arg;
    (void)sig;
    (void)what;
    if (!b->stopping) lf_engine_reload(b->engine, "lfbot:SIGHUP", on_hup_reloaded, b);
}

/* Hook errors, follow-ups, notifications: stderr, so stdout stays JSON. */
static void on_log(lf_log_level level, const char *msg, void *ud) {
    static const char *const names[] = {"debug", "info", "warn", "error"};
    (void)ud;
    fprintf(stderr, "lfbot: %s: %s\n", names[level], msg);
}

/* ---- main --------------------------------------------------------------- */

static int usage(void) {
    fprintf(stderr, "usage: lfbot [--store URL] [--policies DIR] [--actor NAME] "
                    "[--socket PATH]\n");
    return 2;
}

/* epoll cannot watch a regular file or /dev/null: for those, poll(2),
 * which reports them always readable (true: reading never waits). */
static struct event_base *new_base(bool stdin_is_plain) {
    if (!stdin_is_plain) return event_base_new();
    struct event_config *cfg = event_config_new();
    if (!cfg) return NULL;
    event_config_avoid_method(cfg, "epoll");
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

int main(int argc, char **argv) {
    bot b = {.actor = "lfbot"};
    lf_engine_config cfg = {0};
    const char *socket_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char **opt = strcmp(argv[i], "--store") == 0      ? &cfg.store
                           : strcmp(argv[i], "--policies") == 0 ? &cfg.policies
                           : strcmp(argv[i], "--actor") == 0    ? &b.actor
                           : strcmp(argv[i], "--socket") == 0   ? &socket_path
                                                                : NULL;
        if (!opt || i + 1 == argc) return usage();
        *opt = argv[++i];
    }
    struct stat st;
    bool plain = !socket_path && fstat(0, &st) == 0 && !S_ISFIFO(st.st_mode) &&
                 !S_ISSOCK(st.st_mode) && !isatty(0);
    int stdin_flags = socket_path ? -1 : fcntl(0, F_GETFL);
    if (!(b.base = new_base(plain))) {
        fprintf(stderr, "lfbot: cannot make an event base\n");
        return 1;
    }
    cfg.base = b.base;
    char err[2048];
    lf_code code;
    if (!(b.engine = lf_engine_new(&cfg, err, sizeof err, &code))) {
        fprintf(stderr, "lfbot: %s (%s)\n", err, lf_code_name(code));
        event_base_free(b.base);
        return code == LF_INVALID_REQUEST ? 2 : 1;
    }
    lf_engine_set_log(b.engine, on_log, NULL);
    /* A client that hangs up before its answer must not kill the bot. */
    signal(SIGPIPE, SIG_IGN);
    b.sighup = evsignal_new(b.base, SIGHUP, on_hup, &b);
    b.sigterm = evsignal_new(b.base, SIGTERM, on_stop_signal, &b);
    b.sigint = evsignal_new(b.base, SIGINT, on_stop_signal, &b);
    evsignal_add(b.sighup, NULL);
    evsignal_add(b.sigterm, NULL);
    evsignal_add(b.sigint, NULL);

    int rc = 0;
    if (socket_path) {
        rc = listen_on(&b, socket_path);
    } else {
        /* Non-blocking, as the loop needs; the flags are put back at the
         * end because the terminal (or pipe) is shared with our parent. */
        if (stdin_flags >= 0) fcntl(0, F_SETFL, stdin_flags | O_NONBLOCK);
        if (!client_new(&b, 0, true)) {
            fprintf(stderr, "lfbot: cannot read stdin\n");
            rc = -1;
        }
    }
    if (rc == 0) {
        fprintf(stderr, "lfbot: loopforge %s, policies %.12s, %s\n", lf_version(),
                lf_engine_generation(b.engine), socket_path ? socket_path : "stdin");
        event_base_dispatch(b.base);
    }

    /* Whatever is still in flight completes here, with LF_UNAVAILABLE;
     * the answers still go out (nothing new starts: stopping is set). */
    b.stopping = true;
    lf_engine_free(b.engine);
    while (b.clients) client_free(b.clients);
    if (b.listener) evconnlistener_free(b.listener);
    if (b.socket_path) unlink(b.socket_path);
    /* One more turn lets libevent finish what the engine cancelled (a
     * notification's name lookup), before the base goes. */
    event_base_loop(b.base, EVLOOP_NONBLOCK);
    event_free(b.sighup);
    event_free(b.sigterm);
    event_free(b.sigint);
    event_base_free(b.base);
    if (stdin_flags >= 0) fcntl(0, F_SETFL, stdin_flags);
    return rc == 0 ? 0 : 1;
}
