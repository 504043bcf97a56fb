/* test_journal.c -- what the file: store promises beyond the conformance
 * suite (test_store.c): it survives restarts, recovers from a torn last
 * line at every possible cut, refuses corruption with a line number,
 * rolls back failed writes, and stays consistent with many processes on
 * one file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store_helpers.h"

typedef struct fixture {
    char *dir;
    char *path;                     /* DIR/journal */
    char *url;                      /* file:DIR/journal */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = t_tmpdir();
    assert_true(asprintf(&f->path, "%s/journal", f->dir) > 0);
    assert_true(asprintf(&f->url, "file:%s", f->path) > 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    t_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f->url);
    free(f);
    return 0;
}

/* ---- files and stderr -------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    p[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return p;
}

static void spit(const char *path, const char *p, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static off_t file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Offset of the start of line `n` (1-based) in p. */
static size_t line_start(const char *p, size_t len, unsigned n) {
    size_t off = 0;
    for (unsigned i = 1; i < n; i++) {
        const char *nl = memchr(p + off, '\n', len - off);
        assert_non_null(nl);
        off = (size_t)(nl - p) + 1;
    }
    return off;
}

/* Redirects fd 2 into a file while a store opens, so the torn-tail
 * warning can be checked and does not clutter the TAP output. */
typedef struct capture {
    int saved;
    char path[4096];
} capture;

static void capture_begin(capture *c, const char *dir) {
    snprintf(c->path, sizeof c->path, "%s/stderr", dir);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
}

static char *capture_end(capture *c) {
    size_t len;
    fflush(stderr);
    assert_int_equal(dup2(c->saved, 2), 2);
    close(c->saved);
    char *text = slurp(c->path, &len);
    unlink(c->path);
    return text;
}

static lf_store *open_ok(const char *url) {
    char err[1024];
    lf_code code = LF_CONFLICT;
    lf_store *s = lf_store_open(url, NULL, &code, err, sizeof err);
    if (!s) fail_msg("open %s: %s", url, err);
    assert_int_equal(code, LF_OK);
    return s;
}

/* The whole global log, as one string of lines joined by "\n". */
static char *dump_log(lf_store *s) {
    lf_buf b = LF_BUF_INIT;
    t_audit a = {0};
    uint64_t after = 0;
    for (;;) {
        t_audit_page(s, NULL, after, 0, &a);
        if (a.n == 0) break;
        for (size_t i = 0; i < a.n; i++) {
            lf_buf_add(&b, a.lines[i], a.lens[i]);
            lf_buf_putc(&b, '\n');
        }
        after = a.last_seq;
    }
    t_audit_reset(&a);
    return lf_buf_steal(&b);
}

/* One record walked through `n` entries: created, then transitions along
 * the happy path (so after entry v it is in path_states[v - 1]). */
static const char *const path_states[] = {
    "issue_created", "task_queued", "pr_created", "ci_pending",
    "ci_passed",     "merged",      "closed",
};

static void walk(lf_store *s, const char *id, const char *ref, unsigned n) {
    t_got g = {0};
    assert_true(n >= 1 && n <= 7);
    assert_int_equal(t_create(s, id, ref, "acme/app", &g), LF_OK);
    for (unsigned v = 1; v < n; v++)
        assert_int_equal(t_transition(s, id, path_states[v - 1], path_states[v], v, &g),
                         LF_OK);
    t_got_reset(&g);
}

/* ---- restart ----------------------------------------------------------- */

static void restart_keeps_everything(void **state) {
    fixture *f = *state;
    t_got g = {0};
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1], c[LF_ID_LEN + 1];
    t_id(a, 1);
    t_id(b, 2);
    t_id(c, 3);

    lf_store *s = open_ok(f->url);
    assert_int_equal(t_policy_loaded(s, &g), LF_OK);
    walk(s, a, "ra", 5);
    walk(s, b, "rb", 2);
    walk(s, c, "rc", 1);
    assert_int_equal(t_move(s, LF_ENTRY_DENIED, b, "task_queued", "merged", 2, &g),
                     LF_OK);
    assert_int_equal(t_delete(s, c, "issue_created", 1, &g), LF_OK);

    char *log = dump_log(s);
    char *ja, *jb;
    assert_int_equal(t_get(s, a, &g), LF_OK);
    ja = strdup(g.json);
    assert_int_equal(t_get(s, b, &g), LF_OK);
    jb = strdup(g.json);
    long n = t_verify_chain(s, NULL, 0);
    assert_int_equal(n, 1 + 5 + 2 + 1 + 2);
    lf_store_free(s);

    /* The file is the log, byte for byte, one line per entry. */
    size_t len;
    char *file = slurp(f->path, &len);
    assert_string_equal(file, log);
    free(file);

    s = open_ok(f->url);
    char *log2 = dump_log(s);
    assert_string_equal(log2, log);
    assert_int_equal(t_get(s, a, &g), LF_OK);
    assert_string_equal(g.json, ja);
    assert_int_equal(g.version, 5);
    assert_string_equal(g.state, "ci_passed");
    assert_int_equal(t_get(s, b, &g), LF_OK);
    assert_string_equal(g.json, jb);
    assert_int_equal(g.version, 2);
    assert_int_equal(t_get(s, c, &g), LF_NOT_FOUND);
    assert_int_equal(t_find_ref(s, "rc", &g), LF_NOT_FOUND);
    assert_int_equal(t_find_ref(s, "ra", &g), LF_OK);
    assert_string_equal(g.id, a);
    assert_int_equal(t_verify_chain(s, NULL, 0), n);

    /* The log goes on where it stopped, and a stale CAS still loses. */
    assert_int_equal(t_transition(s, a, "ci_pending", "ci_passed", 4, &g), LF_CONFLICT);
    assert_int_equal(t_transition(s, a, "ci_passed", "merged", 5, &g), LF_OK);
    assert_int_equal(g.seq, (uint64_t)n + 1);
    assert_int_equal(t_verify_chain(s, NULL, 0), n + 1);
    lf_store_free(s);

    free(log);
    free(log2);
    free(ja);
    free(jb);
    t_got_reset(&g);
}

static void creates_parent_directories(void **state) {
    fixture *f = *state;
    char *url, *path;
    t_got g = {0};

    assert_true(asprintf(&path, "%s/a/b/c/loopforge.journal", f->dir) > 0);
    assert_true(asprintf(&url, "file:%s", path) > 0);
    lf_store *s = open_ok(url);
    walk(s, "loop-0000000000000001", "r1", 2);
    lf_store_free(s);
    assert_true(file_size(path) > 0);

    s = open_ok(url);
    assert_int_equal(t_get(s, "loop-0000000000000001", &g), LF_OK);
    assert_int_equal(g.version, 2);
    lf_store_free(s);
    free(url);
    free(path);
    t_got_reset(&g);
}

static void unopenable_paths_fail(void **state) {
    fixture *f = *state;
    char err[1024], *url;
    lf_code code;

    /* A regular file where a directory should be. */
    spit(f->path, "", 0);
    assert_true(asprintf(&url, "file:%s/sub/journal", f->path) > 0);
    code = LF_OK;
    assert_null(lf_store_open(url, NULL, &code, err, sizeof err));
    assert_int_equal(code, LF_UNAVAILABLE);
    assert_non_null(strstr(err, f->path));
    free(url);

    /* A directory where the file should be. */
    assert_true(asprintf(&url, "file:%s", f->dir) > 0);
    code = LF_OK;
    assert_null(lf_store_open(url, NULL, &code, err, sizeof err));
    assert_int_equal(code, LF_UNAVAILABLE);
    free(url);
}

/* ---- torn tail --------------------------------------------------------- */

/* A commit is one write() of line + "\n": a crash can leave any prefix
 * of the last line. Every one of them must be cut off with a warning,
 * the previous lines kept exactly, and the log must go on from there. */
static void torn_tail_every_offset(void **state) {
    fixture *f = *state;
    const unsigned n = 5;
    char id[LF_ID_LEN + 1], *copy, *copy_url, expect[8192];
    size_t len;
    t_got g = {0};

    t_id(id, 1);
    lf_store *s = open_ok(f->url);
    walk(s, id, "r1", n);
    lf_store_free(s);

    char *orig = slurp(f->path, &len);
    size_t last = line_start(orig, len, n);
    assert_true(last > 0 && last < len && orig[len - 1] == '\n');
    assert_true(asprintf(&copy, "%s/copy", f->dir) > 0);
    assert_true(asprintf(&copy_url, "file:%s", copy) > 0);

    for (size_t cut = last; cut < len; cut++) {
        capture c;
        spit(copy, orig, cut);
        capture_begin(&c, f->dir);
        s = lf_store_open(copy_url, NULL, NULL, expect, sizeof expect);
        char *warning = capture_end(&c);
        if (!s) fail_msg("cut at %zu: %s", cut, expect);

        if (cut == last) {
            assert_string_equal(warning, "");   /* a clean boundary */
        } else {
            snprintf(expect, sizeof expect,
                     "loopforge: journal %s: cut off a torn last entry "
                     "(%zu bytes at offset %zu)\n",
                     copy, cut - last, last);
            assert_string_equal(warning, expect);
        }
        free(warning);
        assert_int_equal(file_size(copy), (off_t)last);

        /* Exactly the first n-1 entries, byte for byte. */
        char *log = dump_log(s);
        assert_int_equal(strlen(log), last);
        assert_memory_equal(log, orig, last);
        free(log);
        assert_int_equal(t_get(s, id, &g), LF_OK);
        assert_int_equal(g.version, n - 1);

        /* The lost entry's seq is free again, and chained properly. */
        assert_int_equal(
            t_transition(s, id, path_states[n - 2], path_states[n - 1], n - 1, &g),
            LF_OK);
        assert_int_equal(g.seq, n);
        assert_int_equal(t_verify_chain(s, NULL, 0), n);
        lf_store_free(s);
        assert_int_equal(unlink(copy), 0);
    }
    free(orig);
    free(copy);
    free(copy_url);
    t_got_reset(&g);
}

/* A torn tail left by a writer that died while the journal is in use by
 * others: readers leave it alone, the next commit cuts it. */
static void torn_tail_while_shared(void **state) {
    fixture *f = *state;
    char id[LF_ID_LEN + 1];
    t_got g = {0};
    capture c;

    t_id(id, 1);
    lf_store *a = open_ok(f->url), *b = open_ok(f->url);
    walk(a, id, "r1", 2);
    off_t good = file_size(f->path);

    int fd = open(f->path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"seq\":3,\"record_id\":", 21), 21);
    close(fd);

    assert_int_equal(t_get(b, id, &g), LF_OK);      /* b catches up to 2 */
    assert_int_equal(g.version, 2);
    assert_int_equal(file_size(f->path), good + 21);

    capture_begin(&c, f->dir);
    assert_int_equal(t_transition(b, id, "task_queued", "pr_created", 2, &g), LF_OK);
    char *warning = capture_end(&c);
    assert_non_null(strstr(warning, "cut off a torn last entry (21 bytes"));
    free(warning);
    assert_int_equal(g.seq, 3);

    assert_int_equal(t_get(a, id, &g), LF_OK);      /* a sees b's commit */
    assert_int_equal(g.version, 3);
    assert_int_equal(t_verify_chain(a, NULL, 0), 3);
    lf_store_free(a);
    lf_store_free(b);

    lf_store *s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, NULL, 0), 3);
    lf_store_free(s);
    t_got_reset(&g);
}

/* ---- corruption -------------------------------------------------------- */

/* Writes bad[0..len) as the journal; the open must refuse it (err says
 * why) and leave the file as it is. */
static void refuses_as_is(fixture *f, const char *bad, size_t len, char *err,
                          size_t errlen) {
    lf_code code = LF_OK;
    size_t after_len;
    spit(f->path, bad, len);
    assert_null(lf_store_open(f->url, NULL, &code, err, errlen));
    assert_int_equal(code, LF_UNAVAILABLE);
    char *now = slurp(f->path, &after_len);
    assert_int_equal(after_len, len);
    assert_memory_equal(now, bad, len);
    free(now);
}

/* Writes `n` entries, lets `mutate` damage the file, and returns the
 * open's error (the store must refuse, and leave the file untouched). */
static void open_refuses(fixture *f, void (*mutate)(char *p, size_t *len), char *err,
                         size_t errlen) {
    size_t len;
    lf_store *s = open_ok(f->url);
    walk(s, "loop-0000000000000001", "r1", 5);
    lf_store_free(s);
    char *p = slurp(f->path, &len);
    char *bad = realloc(p, len * 2 + 1);   /* room for mutate to grow it */
    assert_non_null(bad);
    mutate(bad, &len);
    refuses_as_is(f, bad, len, err, errlen);
    free(bad);
}

static void break_line_3(char *p, size_t *len) {
    size_t at = line_start(p, *len, 3);
    p[at + 1] = '#';                /* {"seq"… -> {#seq"… */
}

static void break_last_line_keep_newline(char *p, size_t *len) {
    p[*len - 2] = ',';              /* …"}\n -> …",\n */
}

static void duplicate_line_2(char *p, size_t *len) {
    size_t a = line_start(p, *len, 2), b = line_start(p, *len, 3);
    memmove(p + b + (b - a), p + b, *len - b);
    memcpy(p + b, p + a, b - a);
    *len += b - a;
}

static void blank_line_4(char *p, size_t *len) {
    size_t at = line_start(p, *len, 4);
    memmove(p + at + 1, p + at, *len - at);
    p[at] = '\n';
    *len += 1;
}

static void corrupt_middle_line(void **state) {
    fixture *f = *state;
    char err[1024], want[4200];
    open_refuses(f, break_line_3, err, sizeof err);
    snprintf(want, sizeof want, "journal %s:3: ", f->path);
    assert_memory_equal(err, want, strlen(want));
}

/* A last line with its newline was acknowledged: damage there is
 * corruption, not a crash, and must not be "repaired" away. */
static void corrupt_complete_last_line(void **state) {
    fixture *f = *state;
    char err[1024], want[4200];
    open_refuses(f, break_last_line_keep_newline, err, sizeof err);
    snprintf(want, sizeof want, "journal %s:5: ", f->path);
    assert_memory_equal(err, want, strlen(want));
}

/* Valid JSON that does not continue the log is refused too. */
static void out_of_order_line(void **state) {
    fixture *f = *state;
    char err[1024], want[4200];
    open_refuses(f, duplicate_line_2, err, sizeof err);
    snprintf(want, sizeof want, "journal %s:3: ", f->path);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "seq"));
}

static void blank_middle_line(void **state) {
    fixture *f = *state;
    char err[1024], want[4200];
    open_refuses(f, blank_line_4, err, sizeof err);
    snprintf(want, sizeof want, "journal %s:4: ", f->path);
    assert_memory_equal(err, want, strlen(want));
}

/* Replay trusts a well-formed line; spotting tampering is the chain's
 * job (audit --verify), and the chain does spot it. */
static void modified_valid_line(void **state) {
    fixture *f = *state;
    size_t len;
    char why[256];

    lf_store *s = open_ok(f->url);
    walk(s, "loop-0000000000000001", "r1", 4);
    lf_store_free(s);

    char *p = slurp(f->path, &len);
    size_t at = line_start(p, len, 2);
    char *actor = strstr(p + at, "\"actor\":\"tester\"");
    assert_non_null(actor);
    assert_true(actor < p + line_start(p, len, 3));
    memcpy(actor + 9, "mallet", 6);
    spit(f->path, p, len);
    free(p);

    s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, why, sizeof why), -1);
    assert_string_equal(why, "seq 2: hash mismatch (entry modified)");
    lf_store_free(s);
}

/* A key spent twice in a log (no commit writes that: the second is
 * refused) replays, the first entry holding the key as it did live; the
 * second's copy of the key was leaked (found by fuzz_journal). */
static void key_spent_twice_first_holds(void **state) {
    fixture *f = *state;
    size_t len;
    t_got g = {0};
    lf_entry e;
    char id[LF_ID_LEN + 1];

    lf_store *s = open_ok(f->url);
    t_id(id, 1);
    assert_int_equal(t_create(s, id, "r1", "acme/app", &g), LF_OK);
    t_entry(&e, LF_ENTRY_TRANSITION, id, 2, "issue_created", "task_queued", "manual");
    e.idempotency_key = "delivery-A";
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    t_entry(&e, LF_ENTRY_TRANSITION, id, 3, "task_queued", "pr_created", "manual");
    e.idempotency_key = "delivery-B";
    assert_int_equal(t_commit(s, &e, &g), LF_OK);
    lf_store_free(s);

    char *p = slurp(f->path, &len);
    char *b = strstr(p, "\"delivery-B\"");
    assert_non_null(b);
    b[10] = 'A';
    spit(f->path, p, len);
    free(p);

    s = open_ok(f->url);
    t_got_reset(&g);
    lf_store_find_key(s, "delivery-A", t_store_cb, &g);
    t_settle(&g.calls);
    assert_int_equal(g.code, LF_OK);
    assert_int_equal(g.seq, 2);
    assert_string_equal(g.state, "pr_created");
    lf_store_free(s);
    t_got_reset(&g);
}

/* Something truncated the journal behind our back: reads say so rather
 * than serve a past that no longer exists. */
static void shrunk_file_is_unavailable(void **state) {
    fixture *f = *state;
    size_t len;
    t_got g = {0};
    t_audit a = {0};

    lf_store *s = open_ok(f->url);
    walk(s, "loop-0000000000000001", "r1", 3);
    char *p = slurp(f->path, &len);
    assert_int_equal(truncate(f->path, (off_t)line_start(p, len, 2)), 0);
    free(p);

    assert_int_equal(t_get(s, "loop-0000000000000001", &g), LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, "shrank"));
    assert_int_equal(
        t_transition(s, "loop-0000000000000001", "pr_created", "ci_pending", 3, &g),
        LF_UNAVAILABLE);
    lf_store_audit(s, NULL, 0, 0, t_audit_cb, &a);
    assert_int_equal(a.code, LF_UNAVAILABLE);
    t_audit_reset(&a);
    lf_store_free(s);
    t_got_reset(&g);
}

/* ---- write failures ---------------------------------------------------- */

/* RLIMIT_FSIZE makes the kernel refuse to grow the file past a limit:
 * the write comes up short, then fails with EFBIG, which is as good as
 * a full disk for testing the rollback. */
static void failed_write_rolls_back(void **state) {
    fixture *f = *state;
    struct rlimit old, lim;
    char id[LF_ID_LEN + 1];
    t_got g = {0};

    t_id(id, 1);
    lf_store *s = open_ok(f->url);
    walk(s, id, "r1", 2);
    size_t len;
    char *before = slurp(f->path, &len);

    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = len + 10;        /* the next line gets 10 bytes in */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    lf_code code = t_transition(s, id, "task_queued", "pr_created", 2, &g);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);

    assert_int_equal(code, LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, "write"));
    size_t now_len;
    char *now = slurp(f->path, &now_len);
    assert_int_equal(now_len, len);
    assert_memory_equal(now, before, len);
    free(now);
    free(before);

    /* Nothing of it stuck: same record, and the seq is reused. */
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_int_equal(g.version, 2);
    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 2, &g), LF_OK);
    assert_int_equal(g.seq, 3);
    lf_store_free(s);

    s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, NULL, 0), 3);
    lf_store_free(s);
    t_got_reset(&g);
}

/* One entry per line is the file format: JSON text with raw newlines
 * in it is refused rather than written across lines. */
static void raw_newline_refused(void **state) {
    fixture *f = *state;
    lf_entry e = {0};
    t_got g = {0};

    lf_store *s = open_ok(f->url);
    e.record_id = "loop-0000000000000001";
    e.kind = LF_ENTRY_CREATED;
    e.version = 1;
    e.to_state = "issue_created";
    e.trigger = "created";
    e.actor = "tester";
    t_stamp(e.timestamp);
    e.metadata = "{\n  \"ref\": \"r1\"\n}";
    e.record = "{\"ref\":\"r1\",\"workflow\":\"loopforge\"}";
    assert_int_equal(t_commit(s, &e, &g), LF_INVALID_REQUEST);
    assert_int_equal(file_size(f->path), 0);
    walk(s, "loop-0000000000000001", "r1", 1);
    assert_int_equal(t_verify_chain(s, NULL, 0), 1);
    lf_store_free(s);
    t_got_reset(&g);
}

/* ---- several processes ------------------------------------------------- */

/* Two handles on one file behave like two processes (each has its own
 * open file description, so flock() excludes them from each other). */
static void handles_see_each_other(void **state) {
    fixture *f = *state;
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];
    t_got g = {0};
    t_page p = {0};

    t_id(a, 1);
    t_id(b, 2);
    lf_store *x = open_ok(f->url), *y = open_ok(f->url);

    assert_int_equal(t_create(x, a, "ra", "acme/app", &g), LF_OK);
    assert_int_equal(t_get(y, a, &g), LF_OK);
    assert_int_equal(t_find_ref(y, "ra", &g), LF_OK);
    /* y must know about x's create before it checks the ref. */
    assert_int_equal(t_create(y, b, "ra", "acme/app", &g), LF_DUPLICATE_REF);
    assert_non_null(strstr(g.err, a));

    assert_int_equal(t_transition(y, a, "issue_created", "task_queued", 1, &g), LF_OK);
    assert_int_equal(g.seq, 2);
    /* x still believes version 1 is current: its CAS must lose. */
    assert_int_equal(t_transition(x, a, "issue_created", "task_queued", 1, &g),
                     LF_CONFLICT);
    assert_int_equal(t_get(x, a, &g), LF_OK);
    assert_int_equal(g.version, 2);
    assert_string_equal(g.state, "task_queued");

    assert_int_equal(t_create(x, b, "rb", "acme/app", &g), LF_OK);
    assert_int_equal(g.seq, 3);
    t_list(y, "issue_created", NULL, 0, NULL, &p);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.ids[0], b);
    t_page_reset(&p);
    assert_int_equal(t_delete(y, b, "issue_created", 1, &g), LF_OK);
    assert_int_equal(t_get(x, b, &g), LF_NOT_FOUND);

    char *lx = dump_log(x), *ly = dump_log(y);
    assert_string_equal(lx, ly);
    free(lx);
    free(ly);
    assert_int_equal(t_verify_chain(x, NULL, 0), 4);
    lf_store_free(x);
    lf_store_free(y);
    t_got_reset(&g);
}

/* The engine builds an entry straight from the record a get handed it
 * (record_id = rec->id, from_state = rec->state) and commits it from
 * inside that callback. Before it appends, the journal catches up, and
 * folding another process's transition into that record frees its
 * state string: the store must not read the entry after that. A denial
 * is the dangerous case, as it has no version check to stop it. */
typedef struct borrow {
    lf_store *x, *y;
    const char *id;
    lf_code code;
    char from[64];
} borrow;

static void borrow_cb(lf_code code, const char *err, const lf_record *rec,
                      const lf_entry *e, void *arg) {
    borrow *b = arg;
    t_got g = {0};
    t_audit a = {0};
    lf_entry en = {0};
    (void)err;
    (void)e;
    assert_int_equal(code, LF_OK);
    assert_int_equal(t_transition(b->y, b->id, "issue_created", "task_queued", 1, &g),
                     LF_OK);
    en.record_id = rec->id;
    en.kind = LF_ENTRY_DENIED;
    en.version = rec->version;
    en.from_state = rec->state;
    en.to_state = "merged";
    en.trigger = "test.denied";
    en.actor = "tester";
    t_stamp(en.timestamp);
    b->code = t_commit(b->x, &en, &g);
    t_audit_page(b->x, NULL, 2, 0, &a);
    assert_int_equal(a.n, 1);
    t_line_str(a.lines[0], "from_state", b->from, sizeof b->from);
    t_audit_reset(&a);
    t_got_reset(&g);
}

static void entry_borrowed_from_record(void **state) {
    fixture *f = *state;
    char id[LF_ID_LEN + 1];
    t_got g = {0};

    t_id(id, 1);
    borrow b = {open_ok(f->url), open_ok(f->url), id, LF_CONFLICT, ""};
    assert_int_equal(t_create(b.x, id, "r1", "acme/app", &g), LF_OK);
    lf_store_get(b.x, id, borrow_cb, &b);
    assert_int_equal(b.code, LF_OK);
    /* The denial names the state the attempt saw. */
    assert_string_equal(b.from, "issue_created");
    assert_int_equal(t_verify_chain(b.y, NULL, 0), 3);
    lf_store_free(b.x);
    lf_store_free(b.y);

    lf_store *s = open_ok(f->url);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_int_equal(g.version, 2);
    assert_string_equal(g.state, "task_queued");
    lf_store_free(s);
    t_got_reset(&g);
}

/* A start line for child processes: each child gets ready (opens its
 * store or engine), says so on `ready` and blocks on `go`; once all are
 * ready the parent closes `go` and they all run at once. Each child's
 * result is its exit status. No sleeps anywhere. */
typedef struct gate {
    int ready[2], go[2];
} gate;

/* In the child: announce readiness and wait for the start. */
static void gate_wait(gate *g) {
    char c;
    if (write(g->ready[1], "r", 1) != 1) _exit(101);
    close(g->ready[1]);
    if (read(g->go[0], &c, 1) != 0) _exit(102);   /* EOF is the signal */
}

typedef void child_fn(gate *g, int i, const void *arg);  /* must _exit */

/* Forks n children running fn, starts them together, and collects their
 * exit statuses into codes[]. */
static void run_children(int n, child_fn *fn, const void *arg, int *codes) {
    gate g;
    pid_t pids[64];
    int seen = 0;
    char c;

    assert_true(n <= 64);
    assert_int_equal(pipe(g.ready), 0);
    assert_int_equal(pipe(g.go), 0);
    fflush(NULL);                   /* no stdio buffer printed twice */
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(g.ready[0]);
            close(g.go[1]);
            fn(&g, i, arg);
            _exit(104);
        }
    }
    close(g.ready[1]);
    close(g.go[0]);
    while (seen < n && read(g.ready[0], &c, 1) == 1) seen++;
    close(g.ready[0]);
    close(g.go[1]);                 /* go (also when a child died early) */
    for (int i = 0; i < n; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 200;
    }
    assert_int_equal(seen, n);
}

/* Appenders: each child commits its own records as fast as it can, so
 * appends from different processes interleave. Without the lock two of
 * them would take the same seq; the chain and the replay would break. */
#define APPENDERS 8
#define APPENDS 15

static void appender(gate *g, int i, const void *arg) {
    char err[1024], id[LF_ID_LEN + 1], ref[32];
    t_got got = {0};
    lf_store *s = lf_store_open(arg, NULL, NULL, err, sizeof err);
    if (!s) _exit(100);
    gate_wait(g);
    int rc = 0;
    for (unsigned k = 0; k < APPENDS && rc == 0; k++) {
        t_id(id, (unsigned)i * 1000 + k + 1);
        snprintf(ref, sizeof ref, "r%d-%u", i, k);
        got.calls = 0;
        if (t_create(s, id, ref, "acme/app", &got) != LF_OK ||
            t_transition(s, id, "issue_created", "task_queued", 1, &got) != LF_OK)
            rc = 1;
    }
    t_got_reset(&got);
    lf_store_free(s);
    _exit(rc);
}

static void concurrent_appenders(void **state) {
    fixture *f = *state;
    int codes[APPENDERS];
    t_page p = {0};
    char *cursor = NULL;
    size_t total = 0;

    run_children(APPENDERS, appender, f->url, codes);
    for (int i = 0; i < APPENDERS; i++) assert_int_equal(codes[i], 0);

    lf_store *s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, NULL, 0), APPENDERS * APPENDS * 2);
    do {
        t_list(s, "task_queued", NULL, 50, cursor, &p);
        free(cursor);
        cursor = p.cursor ? strdup(p.cursor) : NULL;
        total += p.n;
    } while (cursor);
    assert_int_equal(total, APPENDERS * APPENDS);
    t_page_reset(&p);
    lf_store_free(s);
}

#define RACERS 20

typedef struct outcome {
    int calls;
    lf_code code;
    char *json;
} outcome;

static void outcome_cb(const lf_result *res, void *arg) {
    outcome *o = arg;
    o->calls++;
    o->code = res->code;
    free(o->json);
    o->json = res->record ? lf_record_json(res->record) : NULL;
}

static lf_engine *engine(const char *url) {
    char err[1024];
    lf_code code;
    lf_engine_config cfg = {.store = url, .policies = "policies"};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, &code);
    if (!e) fail_msg("engine on %s: %s", url, err);
    return e;
}

typedef struct race_arg {
    const char *url, *id;
} race_arg;

/* One racer: its own engine, then the transition; the result code is
 * the exit status. */
static void racer(gate *g, int i, const void *arg) {
    const race_arg *ra = arg;
    char err[1024];
    lf_code code;
    outcome o = {0};
    lf_engine_config cfg = {.store = ra->url, .policies = "policies"};
    lf_engine *e = lf_engine_new(&cfg, err, sizeof err, &code);
    (void)i;
    if (!e) _exit(100);
    gate_wait(g);
    lf_transition_req req = {
        .id = ra->id, .to = "pr_created", .trigger = "pr.opened", .actor = "racer"};
    lf_engine_transition(e, &req, outcome_cb, &o);
    lf_engine_free(e);
    free(o.json);
    _exit(o.calls == 1 ? (int)o.code : 103);
}

static void twenty_processes_race(void **state) {
    fixture *f = *state;
    outcome o = {0};
    char id[LF_ID_LEN + 1];
    int codes[RACERS];

    /* The record, at task_queued, made by this process. */
    lf_engine *e = engine(f->url);
    lf_create_req cr = {.ref = "acme/app#20", .repo = "acme/app", .actor = "tester"};
    lf_engine_create(e, &cr, outcome_cb, &o);
    assert_int_equal(o.code, LF_OK);
    cJSON *rec = cJSON_Parse(o.json);
    snprintf(id, sizeof id, "%s",
             cJSON_GetObjectItemCaseSensitive(rec, "record_id")->valuestring);
    cJSON_Delete(rec);
    free(o.json);
    o.json = NULL;
    lf_transition_req tq = {
        .id = id, .to = "task_queued", .trigger = "worker.picked_up", .actor = "tester"};
    lf_engine_transition(e, &tq, outcome_cb, &o);
    assert_int_equal(o.code, LF_OK);
    lf_engine_free(e);

    race_arg ra = {f->url, id};
    run_children(RACERS, racer, &ra, codes);
    int ok = 0, lost = 0, rejected = 0;
    for (int i = 0; i < RACERS; i++) {
        if (codes[i] == LF_OK) ok++;
        else if (codes[i] == LF_INVALID_TRANSITION || codes[i] == LF_CONFLICT) lost++;
        else fail_msg("racer %d exited %d", i, codes[i]);
        /* A loser that re-validated leaves a `rejected` entry behind. */
        if (codes[i] == LF_INVALID_TRANSITION) rejected++;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(lost, RACERS - 1);

    /* One pr_created in the history, and an intact chain. */
    e = engine(f->url);
    lf_engine_get(e, id, outcome_cb, &o);
    assert_int_equal(o.code, LF_OK);
    rec = cJSON_Parse(o.json);
    const cJSON *t;
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(rec, "transitions");
    int created = 0;
    cJSON_ArrayForEach(t, hist) {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(t, "to_state");
        if (strcmp(to->valuestring, "pr_created") == 0) created++;
    }
    assert_int_equal(created, 1);
    assert_int_equal(cJSON_GetArraySize(hist), 3);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(rec, "state")->valuestring,
                        "pr_created");
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(rec, "version")->valuedouble,
                     3);
    cJSON_Delete(rec);
    lf_engine_free(e);
    free(o.json);

    lf_store *s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, NULL, 0),
                     1 + 3 + rejected); /* + the announcement */
    lf_store_free(s);
}

/* ---- group commit ------------------------------------------------------- */

/* The store's counts: its waits for the lock, its flushes (the metrics'
 * source). */
static lf_store_counts counts_of(lf_store *s) {
    lf_store_counts c = {0};
    s->type->counts(s, &c);
    return c;
}

/* With an event base, 64 commits issued at once are appended at once
 * (each sees the one before: versions and seqs chain) but none is
 * acknowledged before a flush has covered it, on the loop; every one then
 * is, in order, each with the record as its own entry left it. */
static void group_commit_acknowledges_after_flush(void **state) {
    fixture *f = *state;
    enum { N = 64 };
    char err[1024], ids[N][LF_ID_LEN + 1], ref[N][32], rec[N][256];
    t_got g[N];
    memset(g, 0, sizeof g);
    t_base = event_base_new();
    assert_non_null(t_base);
    lf_store *s = lf_store_open(f->url, t_base, NULL, err, sizeof err);
    assert_non_null(s);
    for (int i = 0; i < N; i++) {
        t_id(ids[i], (unsigned)i + 1);
        snprintf(ref[i], sizeof ref[i], "acme/app#%d", i);
        snprintf(rec[i], sizeof rec[i],
                 "{\"ref\":\"%s\",\"ref_number\":null,\"repo\":null,"
                 "\"auto_merge\":false,\"labels\":{},\"metadata\":{},"
                 "\"workflow\":\"loopforge\"}",
                 ref[i]);
        lf_entry e = {.record_id = ids[i], .kind = LF_ENTRY_CREATED, .version = 1,
                      .to_state = "issue_created", .trigger = "created", .actor = "t",
                      .metadata = "{}", .record = rec[i]};
        t_stamp(e.timestamp);
        lf_store_commit(s, &e, t_store_cb, &g[i]);
        assert_int_equal(e.seq, (uint64_t)i + 1);     /* appended already */
    }
    for (int i = 0; i < N; i++) assert_int_equal(g[i].calls, 0);
    t_settle(&g[N - 1].calls);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_int_equal(g[i].code, LF_OK);
        assert_int_equal(g[i].seq, (uint64_t)i + 1);
        assert_string_equal(g[i].id, ids[i]);
        t_got_reset(&g[i]);
    }
    /* ... by a flush or two for the 64, counted (the metrics' flushes) */
    assert_in_range(counts_of(s).flushes, 1, 2);
    /* A transition issued from the loop and the store freed before its
     * flush: it is settled by the free, durable, not lost. */
    lf_entry m = {.record_id = ids[0], .kind = LF_ENTRY_TRANSITION, .version = 2,
                  .from_state = "issue_created", .to_state = "task_queued",
                  .trigger = "t", .actor = "t", .metadata = "{}"};
    t_stamp(m.timestamp);
    lf_store_commit(s, &m, t_store_cb, &g[0]);
    assert_int_equal(g[0].calls, 0);
    lf_store_free(s);
    assert_int_equal(g[0].calls, 1);
    assert_int_equal(g[0].code, LF_OK);
    t_got_reset(&g[0]);
    event_base_free(t_base);
    t_base = NULL;
    s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, NULL, 0), N + 1);
    lf_store_free(s);
}

/* A journal of several megabytes replays in batches, parsed on a second
 * thread one batch ahead of the fold (journal.c): the records, the log
 * and the line numbers of errors come out as from a small one -- a torn
 * tail is cut, a damaged line deep in a later batch is named, and the
 * file is left as it was. */
/* lf_journal_replayed_unlocked for the tests: counts its calls, and
 * checks that nobody holds the lock (another process could take it). */
static int between_calls;

static void lock_is_free(const char *path) {
    between_calls++;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    close(fd);
}

static void large_journal_replays_in_batches(void **state) {
    fixture *f = *state;
    enum { RECORDS = 700, LINES = RECORDS * 7, BAD = 4000 };
    char id[LF_ID_LEN + 1], ref[32], err[1024], want[4200];
    t_got g = {0};
    lf_store *s = open_ok(f->url), *other = open_ok(f->url);
    for (unsigned i = 1; i <= RECORDS; i++) {
        t_id(id, i);
        snprintf(ref, sizeof ref, "acme/app#%u", i);
        walk(s, id, ref, 7);
    }
    char *log = dump_log(s);
    lf_store_free(s);
    size_t len;
    char *file = slurp(f->path, &len);
    assert_true(len > 2 * 1024 * 1024);             /* more than two batches */
    /* Another handle catching up with that much folds it without the
     * lock, as an open does (open_folds_unlocked_then_the_tail). */
    between_calls = 0;
    lf_journal_replayed_unlocked = lock_is_free;
    assert_int_equal(t_get(other, id, &g), LF_OK);
    lf_journal_replayed_unlocked = NULL;
    assert_int_equal(between_calls, 1);
    assert_string_equal(g.state, "closed");
    lf_store_free(other);

    FILE *torn = fopen(f->path, "a");
    assert_non_null(torn);
    fputs("{\"seq\":4901,\"record_id\":", torn);
    fclose(torn);
    capture c;
    capture_begin(&c, f->dir);
    s = open_ok(f->url);
    char *msg = capture_end(&c);
    assert_non_null(strstr(msg, "cut off a torn last entry"));
    free(msg);
    char *log2 = dump_log(s);
    assert_string_equal(log2, log);
    assert_int_equal(t_verify_chain(s, NULL, 0), LINES);
    t_id(id, RECORDS / 2);
    assert_int_equal(t_get(s, id, &g), LF_OK);
    assert_string_equal(g.state, "closed");
    t_got_reset(&g);
    lf_store_free(s);

    char *bad = slurp(f->path, &len);
    assert_string_equal(bad, file);                 /* the cut left the log */
    bad[line_start(bad, len, BAD) + 1] = '#';
    refuses_as_is(f, bad, len, err, sizeof err);
    snprintf(want, sizeof want, "journal %s:%d: ", f->path, BAD);
    assert_memory_equal(err, want, strlen(want));
    free(bad);
    free(file);
    free(log);
    free(log2);
}

/* The journal keeps where each line is, not the line: an audit reads the
 * lines back, from the file and, for a turn's commits not written yet,
 * from what waits for the turn's write. Pages that span both read as the
 * lines sealed (their hashes chain), and the file ends up holding
 * exactly what was read. */
static void audit_reads_lines_back_from_file_and_pending_turn(void **state) {
    fixture *f = *state;
    char err[1024];
    t_base = event_base_new();
    assert_non_null(t_base);
    lf_store *s = lf_store_open(f->url, t_base, NULL, err, sizeof err);
    assert_non_null(s);
    char id[LF_ID_LEN + 1];
    t_id(id, 1);
    walk(s, id, "acme/app#1", 4);                   /* written and flushed */
    t_got g[3];
    memset(g, 0, sizeof g);
    for (unsigned v = 4; v < 7; v++) {              /* folded, not written */
        lf_entry e = {.record_id = id, .kind = LF_ENTRY_TRANSITION, .version = v + 1,
                      .from_state = path_states[v - 1], .to_state = path_states[v],
                      .trigger = "t", .actor = "t", .metadata = "{}"};
        t_stamp(e.timestamp);
        lf_store_commit(s, &e, t_store_cb, &g[v - 4]);
        assert_int_equal(g[v - 4].calls, 0);
    }
    t_audit a = {0};
    t_audit_page(s, id, 0, 0, &a);                  /* one record: both kinds */
    assert_int_equal(a.code, LF_OK);
    assert_int_equal(a.n, 7);
    assert_non_null(strstr(a.lines[3], "\"to_state\":\"ci_pending\""));
    assert_non_null(strstr(a.lines[6], "\"to_state\":\"closed\""));
    t_audit_reset(&a);
    assert_int_equal(t_verify_chain(s, err, sizeof err), 7);
    char *before = dump_log(s);
    t_settle(&g[2].calls);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].code, LF_OK);
        t_got_reset(&g[i]);
    }
    size_t len;
    char *file = slurp(f->path, &len);
    assert_string_equal(file, before);
    char *after = dump_log(s);
    assert_string_equal(after, before);
    free(file);
    free(before);
    free(after);
    lf_store_free(s);
    event_base_free(t_base);
    t_base = NULL;
}

/* An open folds the journal's whole lines without holding the lock (a
 * large journal takes seconds): between that and the tail it folds under
 * the lock, another process may take the lock and commit, and the open
 * sees that commit too -- a writer's open and a reader's alike. */
static const char *between_url;
static char between_id[LF_ID_LEN + 1];

static void commit_between(const char *path) {
    lock_is_free(path);
    lf_journal_replayed_unlocked = NULL;    /* the handle below opens too */
    lf_store *other = open_ok(between_url);
    t_got g = {0};
    assert_int_equal(t_create(other, between_id, between_id, "acme/app", &g), LF_OK);
    t_got_reset(&g);
    lf_store_free(other);
}

static void open_folds_unlocked_then_the_tail(void **state) {
    fixture *f = *state;
    char id[LF_ID_LEN + 1];
    t_got g = {0};
    lf_store *s = open_ok(f->url);
    t_id(id, 1);
    walk(s, id, "acme/app#1", 4);
    lf_store_free(s);

    between_url = f->url;
    for (int reader = 0; reader < 2; reader++) {
        char err[1024];
        between_calls = 0;
        t_id(between_id, 10 + reader);
        lf_journal_replayed_unlocked = commit_between;
        s = reader ? lf_store_open_reader(f->url, NULL, NULL, err, sizeof err)
                   : lf_store_open(f->url, NULL, NULL, err, sizeof err);
        lf_journal_replayed_unlocked = NULL;
        if (!s) fail_msg("open %s: %s", f->url, err);
        assert_int_equal(between_calls, 1);
        assert_int_equal(t_get(s, id, &g), LF_OK);
        assert_int_equal(g.version, 4);
        assert_int_equal(t_get(s, between_id, &g), LF_OK);   /* the tail, folded */
        assert_int_equal(t_verify_chain(s, err, sizeof err), 4 + 1 + reader);
        lf_store_free(s);
    }
    t_got_reset(&g);
}

/* With an event base (`serve`), nothing waits in flock on the loop. While
 * another process holds the lock: a read with nothing new to fold is
 * answered at once; a read that must catch up and a commit park (each
 * call returns, nothing answered) until the lock is free, then are
 * answered, having seen what the holder's process committed. One parked
 * longer than lf_journal_lock_wait_ms fails, unavailable, and writes
 * nothing; a store freed while it waits answers it and returns. A loop
 * that waited in flock would hang here: the alarm fails the test. */
static lf_entry move_of(const char *id, uint64_t version) {
    lf_entry e = {.record_id = id, .kind = LF_ENTRY_TRANSITION, .version = version,
                  .from_state = path_states[version - 2], .to_state = path_states[version - 1],
                  .trigger = "t", .actor = "t", .metadata = "{}"};
    t_stamp(e.timestamp);
    return e;
}

static off_t size_of(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* The journal as `serve` opens it (on t_base), with record `a` (1) walked
 * to task_queued. */
static lf_store *open_served(fixture *f, char a[LF_ID_LEN + 1]) {
    char err[1024];
    t_base = event_base_new();
    assert_non_null(t_base);
    lf_store *s = lf_store_open(f->url, t_base, NULL, err, sizeof err);
    if (!s) fail_msg("open %s: %s", f->url, err);
    t_id(a, 1);
    walk(s, a, "acme/app#1", 2);
    return s;
}

/* Record `id` (n) created through a handle of the CLI's kind: another
 * process's commit, as far as the served store can tell. */
static void create_elsewhere(fixture *f, char id[LF_ID_LEN + 1], unsigned n) {
    char ref[32];
    t_got g = {0};
    lf_store *other = open_ok(f->url);
    t_id(id, n);
    snprintf(ref, sizeof ref, "acme/app#%u", n);
    assert_int_equal(t_create(other, id, ref, "acme/app", &g), LF_OK);
    t_got_reset(&g);
    lf_store_free(other);
}

/* A descriptor of the journal of its own, as another process has. */
static int open_holder(fixture *f) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void parks_while_another_process_holds_the_lock(void **state) {
    fixture *f = *state;
    char err[1024], a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];
    t_got ga = {0}, gb = {0}, gm = {0};
    lf_store *s = open_served(f, a);
    int holder = open_holder(f);
    alarm(30);

    assert_int_equal(flock(holder, LOCK_EX), 0);
    lf_store_get(s, a, t_store_cb, &ga);            /* nothing new: at once */
    assert_int_equal(ga.calls, 1);
    assert_int_equal(ga.code, LF_OK);
    assert_int_equal(flock(holder, LOCK_UN), 0);

    create_elsewhere(f, b, 2);
    assert_int_equal(flock(holder, LOCK_EX), 0);
    lf_store_get(s, b, t_store_cb, &gb);            /* must catch up: parks */
    lf_entry m = move_of(a, 3);
    lf_store_commit(s, &m, t_store_cb, &gm);
    event_base_loop(t_base, EVLOOP_NONBLOCK);
    assert_int_equal(gb.calls, 0);
    assert_int_equal(gm.calls, 0);
    assert_int_equal(flock(holder, LOCK_UN), 0);
    t_settle(&gm.calls);
    assert_int_equal(gb.calls, 1);
    assert_int_equal(gb.code, LF_OK);               /* the holder's process's record */
    assert_string_equal(gb.state, "issue_created");
    assert_int_equal(gm.code, LF_OK);
    assert_int_equal(gm.version, 3);
    assert_int_equal(gm.seq, 4);                    /* chained after b's create */
    assert_int_equal(counts_of(s).waited, 2);
    assert_int_equal(counts_of(s).gave_up, 0);

    lf_journal_lock_wait_ms = 50;
    assert_int_equal(flock(holder, LOCK_EX), 0);
    off_t size = size_of(f->path);
    m = move_of(a, 4);
    assert_int_equal(t_commit(s, &m, &gm), LF_UNAVAILABLE);
    assert_non_null(strstr(gm.err, "held its lock for more than 50 ms"));
    assert_int_equal(size_of(f->path), size);
    assert_int_equal(counts_of(s).gave_up, 1);
    assert_int_equal(flock(holder, LOCK_UN), 0);
    m = move_of(a, 4);                              /* the lock free again: it goes */
    assert_int_equal(t_commit(s, &m, &gm), LF_OK);
    assert_int_equal(gm.seq, 5);
    assert_int_equal(counts_of(s).waited, 4);        /* behind the thread still asked */
    assert_int_equal(counts_of(s).gave_up, 1);
    lock_is_free(f->path);                          /* given back after the turn */
    lf_journal_lock_wait_ms = 5000;

    assert_int_equal(flock(holder, LOCK_EX), 0);
    t_got_reset(&gm);
    m = move_of(a, 5);
    lf_store_commit(s, &m, t_store_cb, &gm);
    assert_int_equal(gm.calls, 0);
    lf_store_free(s);                               /* its thread still in flock */
    assert_int_equal(gm.calls, 1);
    assert_int_equal(gm.code, LF_UNAVAILABLE);
    assert_non_null(strstr(gm.err, "closed while waiting for its lock"));
    assert_int_equal(flock(holder, LOCK_UN), 0);
    alarm(0);
    close(holder);
    event_base_free(t_base);
    t_base = NULL;

    s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, err, sizeof err), 5);
    assert_int_equal(t_get(s, a, &ga), LF_OK);
    assert_int_equal(ga.version, 4);
    lf_store_free(s);
    t_got_reset(&ga);
    t_got_reset(&gb);
    t_got_reset(&gm);
}

/* A list parked while another process holds the lock keeps its own copy
 * of the query's strings: the caller's may be gone by the time the lock
 * is ours, and the list still sees what the other process committed. */
static void parked_list_keeps_its_query(void **state) {
    fixture *f = *state;
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1], st[32] = "issue_created";
    t_page pg = {0};
    lf_store *s = open_served(f, a);
    create_elsewhere(f, b, 2);
    int holder = open_holder(f);
    alarm(30);
    assert_int_equal(flock(holder, LOCK_EX), 0);
    lf_list_query q = {.state = st, .repo = "acme/app", .limit = 10};
    lf_store_list(s, &q, t_list_cb, &pg);
    memset(st, 'x', sizeof st - 1);
    event_base_loop(t_base, EVLOOP_NONBLOCK);
    assert_int_equal(pg.calls, 0);
    assert_int_equal(flock(holder, LOCK_UN), 0);
    t_settle(&pg.calls);
    alarm(0);
    assert_int_equal(pg.code, LF_OK);
    assert_true(t_page_has(&pg, b));
    assert_false(t_page_has(&pg, a));               /* at task_queued */
    t_page_reset(&pg);
    close(holder);
    lf_store_free(s);
    event_base_free(t_base);
    t_base = NULL;
}

/* What has no loop to go on with -- an open, a commit without an event
 * base (the Lua module) -- waits for the lock another process holds for
 * lf_journal_lock_wait_ms at most, then fails unavailable, changing
 * nothing; a shared lock held lets a reader open at once. */
static void no_wait_for_the_lock_lasts_past_the_limit(void **state) {
    fixture *f = *state;
    char err[1024], id[LF_ID_LEN + 1];
    lf_code code;
    t_got g = {0};
    lf_store *s = open_ok(f->url);
    t_id(id, 1);
    walk(s, id, "acme/app#1", 2);
    off_t size = size_of(f->path);
    int holder = open_holder(f);
    lf_journal_lock_wait_ms = 50;
    alarm(30);

    assert_int_equal(flock(holder, LOCK_SH), 0);
    lf_store *r = lf_store_open_reader(f->url, NULL, &code, err, sizeof err);
    assert_non_null(r);                             /* shared beside shared */
    lf_store_free(r);
    assert_null(lf_store_open(f->url, NULL, &code, err, sizeof err));
    assert_int_equal(code, LF_UNAVAILABLE);
    assert_non_null(strstr(err, "held its lock for more than 50 ms"));

    assert_int_equal(flock(holder, LOCK_EX), 0);
    assert_null(lf_store_open_reader(f->url, NULL, &code, err, sizeof err));
    assert_int_equal(code, LF_UNAVAILABLE);
    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 2, &g),
                     LF_UNAVAILABLE);
    assert_non_null(strstr(g.err, "held its lock for more than 50 ms"));
    assert_int_equal(size_of(f->path), size);
    assert_int_equal(counts_of(s).waited, 1);
    assert_int_equal(counts_of(s).gave_up, 1);

    assert_int_equal(flock(holder, LOCK_UN), 0);
    assert_int_equal(t_transition(s, id, "task_queued", "pr_created", 2, &g), LF_OK);
    lock_is_free(f->path);          /* nothing of ours kept it: the waiter let go */
    alarm(0);
    lf_journal_lock_wait_ms = 5000;
    close(holder);
    lf_store_free(s);
    s = open_ok(f->url);
    assert_int_equal(t_verify_chain(s, err, sizeof err), 3);
    lf_store_free(s);
    t_got_reset(&g);
}

/* A commit without an event base (the Lua module) flushes its line after
 * giving the lock back: processes sharing the journal flush side by side,
 * not in turn. It still calls back only once the line is flushed. */
static int flushed_calls;

static void flushing(const char *path) {
    lock_is_free(path);
    flushed_calls++;
}

static void flushes_after_giving_the_lock_back(void **state) {
    fixture *f = *state;
    char id[LF_ID_LEN + 1];
    t_got g = {0};
    lf_store *s = open_ok(f->url);
    t_id(id, 1);
    between_calls = flushed_calls = 0;
    lf_journal_flushing = flushing;
    assert_int_equal(t_create(s, id, "acme/app#1", "acme/app", &g), LF_OK);
    lf_journal_flushing = NULL;
    assert_int_equal(flushed_calls, 1);
    assert_int_equal(between_calls, 1);
    assert_int_equal(counts_of(s).flushes, 1);
    lf_store_free(s);
    t_got_reset(&g);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(restart_keeps_everything),   T(creates_parent_directories),
        T(unopenable_paths_fail),      T(torn_tail_every_offset),
        T(torn_tail_while_shared),     T(corrupt_middle_line),
        T(corrupt_complete_last_line), T(out_of_order_line),
        T(blank_middle_line),          T(modified_valid_line),
        T(key_spent_twice_first_holds),
        T(shrunk_file_is_unavailable), T(failed_write_rolls_back),
        T(raw_newline_refused),        T(handles_see_each_other),
        T(entry_borrowed_from_record), T(concurrent_appenders),
        T(twenty_processes_race),      T(group_commit_acknowledges_after_flush),
        T(audit_reads_lines_back_from_file_and_pending_turn),
        T(large_journal_replays_in_batches), T(open_folds_unlocked_then_the_tail),
        T(parks_while_another_process_holds_the_lock),
        T(parked_list_keeps_its_query),
        T(no_wait_for_the_lock_lasts_past_the_limit),
        T(flushes_after_giving_the_lock_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
