/* test_rules.c -- the policy loader: directory scanning, generation ids,
 * the workflow DSL's error reporting ("file:line: message", with the
 * right line), and the sandbox.
 *
 * Each test builds its own policy directory under /tmp (mkdtemp) and
 * removes it afterwards. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>

#include "../src/rules/rules.h"
#include "../src/rules/luajson.h"

/* ---- temp policy directories ---------------------------------------------- */

typedef struct tdir {
    char root[64];          /* the policies dir */
    char wf[96];            /* root/workflows */
} tdir;

static int setup_dir(void **state) {
    tdir *d = calloc(1, sizeof *d);
    assert_non_null(d);
    strcpy(d->root, "/tmp/lf_rules_XXXXXX");
    assert_non_null(mkdtemp(d->root));
    snprintf(d->wf, sizeof d->wf, "%s/workflows", d->root);
    assert_int_equal(mkdir(d->wf, 0755), 0);
    *state = d;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown_dir(void **state) {
    tdir *d = *state;
    nftw(d->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    return 0;
}

/* Writes root/workflows/name (name may contain one subdirectory level,
 * which is created). */
static void put_bytes(tdir *d, const char *name, const void *src, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", d->wf, name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(src, 1, n, f), n);
    fclose(f);
}

static void put(tdir *d, const char *name, const char *src) {
    put_bytes(d, name, src, strlen(src));
}

/* Loads d, expects failure, and checks the whole error text, where each
 * "%s" in `fmt` stands for d->wf. */
static void expect_errors(tdir *d, const char *fmt) {
    char want[4096], *w = want;
    for (const char *p = fmt; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            w += sprintf(w, "%s", d->wf);
            p++;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    lf_buf err = LF_BUF_INIT;
    lf_rules *r = lf_rules_load(d->root, &err);
    bool loaded = r != NULL;
    lf_rules_free(r);
    char got[4096];
    snprintf(got, sizeof got, "%s", lf_buf_str(&err));
    lf_buf_free(&err);
    assert_false(loaded);
    assert_string_equal(got, want);
}

static lf_rules *load_ok(tdir *d) {
    lf_buf err = LF_BUF_INIT;
    lf_rules *r = lf_rules_load(d->root, &err);
    char got[4096];
    snprintf(got, sizeof got, "%s", lf_buf_str(&err));
    lf_buf_free(&err);
    if (!r) fail_msg("load failed:\n%s", got);
    assert_string_equal(got, "");
    return r;
}

/* A valid minimal workflow named `name`, spanning two lines; GOOD is a
 * whole file, WF an expression to put in a returned list. */
#define WF(name)                                                                         \
    "workflow { name = \"" name "\", states = {\"a\", \"b\"},\n"                         \
    "  initial = \"a\", terminal = {\"b\"}, edges = {{\"a\", \"b\"}} }"
#define GOOD(name) "return " WF(name) "\n"

/* ---- loading good directories ---------------------------------------------- */

static void test_default_policies(void **state) {
    (void)state;
    lf_buf err = LF_BUF_INIT;
    lf_rules *r = lf_rules_load("policies", &err);
    assert_non_null(r);
    assert_string_equal(lf_buf_str(&err), "");
    /* config.lua, 6 guards, a hook (tests/test_policies.c), the routes
     * (tests/test_routes.c), then the workflows: path order */
    assert_int_equal(lf_rules_nfiles(r), 12);
    assert_string_equal(lf_rules_file_at(r, 0), "policies/config.lua");
    assert_string_equal(lf_rules_file_at(r, 8), "policies/routes/github.lua");
    assert_string_equal(lf_rules_file_at(r, 9), "policies/workflows/factory.lua");
    assert_string_equal(lf_rules_file_at(r, 10), "policies/workflows/loopforge.lua");
    assert_string_equal(lf_rules_file_at(r, 11), "policies/workflows/specfuse.lua");
    assert_null(lf_rules_file_at(r, 12));
    assert_int_equal(lf_rules_nworkflows(r), 5);
    /* the default is loopforge, whatever the path order */
    assert_string_equal(lf_rules_workflow(r, NULL)->name, "loopforge");
    assert_non_null(lf_rules_workflow(r, "factory"));
    assert_null(lf_rules_workflow(r, "nope"));
    assert_non_null(lf_rules_workflow(r, "specfuse-gate"));
    assert_null(lf_rules_workflow_at(r, 5));
    lf_rules_free(r);
    lf_buf_free(&err);
    /* a trailing slash must not produce "policies//workflows/..." */
    r = lf_rules_load("policies/", &err);
    assert_non_null(r);
    assert_string_equal(lf_rules_file_at(r, 10), "policies/workflows/loopforge.lua");
    lf_rules_free(r);
}

static bool is_hex64(const char *s) {
    if (strlen(s) != 64) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

static void test_order_and_lists(void **state) {
    tdir *d = *state;
    put(d, "b.lua", GOOD("bee"));
    put(d, "a.lua", GOOD("ay"));
    put(d, "sub/c.lua", "return {\n" WF("c1") ",\n" WF("c2") "}\n");
    put(d, "notes.txt", "not lua");
    put(d, ".hidden.lua", "syntax error here");
    lf_rules *r = load_ok(d);
    char p[256];
    assert_int_equal(lf_rules_nfiles(r), 3);
    snprintf(p, sizeof p, "%s/a.lua", d->wf);
    assert_string_equal(lf_rules_file_at(r, 0), p);
    snprintf(p, sizeof p, "%s/b.lua", d->wf);
    assert_string_equal(lf_rules_file_at(r, 1), p);
    snprintf(p, sizeof p, "%s/sub/c.lua", d->wf);
    assert_string_equal(lf_rules_file_at(r, 2), p);
    assert_int_equal(lf_rules_nworkflows(r), 4);
    static const char *const names[] = {"ay", "bee", "c1", "c2"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(lf_rules_workflow_at(r, i)->name, names[i]);
    assert_null(lf_rules_workflow(r, NULL));    /* no "loopforge" here */
    lf_rules_free(r);
}

/* Independent computation: sha256 over the files' bytes, in path order. */
static void sha256_hex(const char *data, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    assert_true(EVP_Digest(data, n, md, &len, EVP_sha256(), NULL));
    for (unsigned i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", md[i]);
}

static void test_generation(void **state) {
    tdir *d = *state;
    const char *a = GOOD("one"), *b = "-- two\n" GOOD("two");
    put(d, "b.lua", b);
    put(d, "a.lua", a);
    lf_rules *r = load_ok(d);
    char g1[65], want[65], cat[1024];
    strcpy(g1, lf_rules_generation(r));
    assert_true(is_hex64(g1));
    snprintf(cat, sizeof cat, "%s%s", a, b);
    sha256_hex(cat, strlen(cat), want);
    assert_string_equal(g1, want);
    lf_rules_free(r);

    r = load_ok(d);                                /* stable */
    assert_string_equal(lf_rules_generation(r), g1);
    lf_rules_free(r);

    put(d, "b.lua", "-- twO\n" GOOD("two"));        /* one byte differs */
    r = load_ok(d);
    assert_true(is_hex64(lf_rules_generation(r)));
    assert_string_not_equal(lf_rules_generation(r), g1);
    lf_rules_free(r);

    put(d, "b.lua", b);                            /* back: same id again */
    r = load_ok(d);
    assert_string_equal(lf_rules_generation(r), g1);
    lf_rules_free(r);
}

/* The parsed graph is what the file says, in declaration order. */
static void test_compiled_graph(void **state) {
    tdir *d = *state;
    put(d, "w.lua",
        "return workflow {\n"
        "  name = \"w\", initial = \"s\",\n"
        "  states = {\"s\", \"x\", \"y\", \"end\"}, terminal = {\"end\"},\n"
        "  edges = {{\"s\", \"y\"}, {\"s\", \"x\"}, {\"x\", \"end\"}, {\"y\", \"end\"}},\n"
        "}\n");
    lf_rules *r = load_ok(d);
    const lf_workflow *wf = lf_rules_workflow(r, "w");
    assert_non_null(wf);
    assert_int_equal(wf->nstates, 4);
    assert_string_equal(wf->states[2], "y");
    assert_int_equal(wf->initial, 0);
    assert_true(lf_workflow_is_terminal(wf, 3));
    assert_int_equal(wf->nedges, 4);
    assert_int_equal(wf->edges[0].to, 2);
    lf_buf m = LF_BUF_INIT;
    lf_workflow_invalid_msg(wf, 0, "end", &m);
    assert_string_equal(lf_buf_str(&m),
                        "Invalid transition: s \xe2\x86\x92 end. Allowed from s: y, x");
    lf_buf_free(&m);
    lf_rules_free(r);
}

/* ---- directory problems ----------------------------------------------------- */

static void test_missing_dir(void **state) {
    tdir *d = *state;
    lf_buf err = LF_BUF_INIT;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/nope", d->root);
    assert_null(lf_rules_load(dir, &err));
    char want[256];
    snprintf(want, sizeof want, "%s/nope/workflows: no workflow files\n", d->root);
    assert_string_equal(lf_buf_str(&err), want);
    lf_buf_free(&err);
}

static void test_empty_dir(void **state) {
    tdir *d = *state;
    expect_errors(d, "%s: no workflow files\n");
    put(d, "README", "only docs here");
    expect_errors(d, "%s: no workflow files\n");
}

/* ---- Lua-level errors: the Lua error's own line ------------------------------ */

static void test_syntax_error(void **state) {
    tdir *d = *state;
    put(d, "bad.lua", "-- fine\nlocal x =\n  = 3\n");
    expect_errors(d, "%s/bad.lua:3: unexpected symbol near '='\n");
}

static void test_runtime_error(void **state) {
    tdir *d = *state;
    put(d, "a.lua", "\n\nlocal t = nil\nreturn t.x\n");
    put(d, "b.lua", "\nerror(\"boom\")\n");
    put(d, "c.lua", "local x = 1\n\nerror(\"no position\", 0)\n");
    put(d, "d.lua", "\nerror({})\n");
    put(d, "e.lua", "local function f()\n  error(\"deep\")\nend\n\nf()\n");
    expect_errors(d, "%s/a.lua:4: attempt to index a nil value (local 't')\n"
                     "%s/b.lua:2: boom\n"
                     "%s/c.lua:3: no position\n"
                     "%s/d.lua:2: (error object is a table value)\n"
                     "%s/e.lua:2: deep\n");
}

/* A table argument with a key the call does not know (a typo would drop
 * a setting without a word) is an error naming the key and the known
 * ones: deny{}, schedule{}, notify{} alike. */
static void test_unknown_fields(void **state) {
    tdir *d = *state;
    put(d, "a.lua", "\nschedule{ after = \"1h\", to = \"b\", trigger = \"t\", metdata = {} }\n");
    put(d, "b.lua", "\ndeny{ reason = \"r\", requirse = {} }\n");
    put(d, "c.lua", "\nnotify{ url = \"http://x/\", [1] = 2 }\n");
    put(d, "d.lua", "\nreturn deny{ reason = \"r\", requires = {}, annotations = {} }\n");
    expect_errors(d, "%s/a.lua:2: schedule: unknown field 'metdata' "
                     "(after, to, trigger, metadata)\n"
                     "%s/b.lua:2: deny{}: unknown field 'requirse' "
                     "(reason, annotations, requires)\n"
                     "%s/c.lua:2: notify: unknown field 'number' "
                     "(url, body, content_type, timeout_ms)\n"
                     "%s/d.lua:2: file does not return a workflow "
                     "(expected `return workflow { ... }` or a list of them)\n");
}

/* Lua shortens long chunk names to "...tail"; we still print the path. */
static void test_long_path(void **state) {
    tdir *d = *state;
    const char *name = "a_rather_long_directory_name_to_push_past_lua_idsize/"
                       "and_an_equally_long_file_name.lua";
    put(d, name, "\nerror(\"boom\")\n");
    char fmt[512];
    snprintf(fmt, sizeof fmt, "%%s/%s:2: boom\n", name);
    expect_errors(d, fmt);
}

static void test_workflow_bad_argument(void **state) {
    tdir *d = *state;
    put(d, "a.lua", "\nreturn workflow(\"x\")\n");
    expect_errors(
        d, "%s/a.lua:2: bad argument #1 to 'workflow' (table expected, got string)\n");
}

/* ---- DSL problems: the line of the workflow{} call ----------------------------- */

static void test_not_a_workflow(void **state) {
    tdir *d = *state;
    put(d, "a.lua", "-- forgot workflow\nreturn { name = \"a\" }\n\n");
    put(d, "b.lua", "local x = 1\n");
    put(d, "c.lua", "return {\n" WF("c") ",\n 42 }\n");
    put(d, "d.lua", "return 7\n-- trailing comment\n");
    expect_errors(d, "%s/a.lua:2: file does not return a workflow "
                     "(expected `return workflow { ... }` or a list of them)\n"
                     "%s/b.lua:1: file does not return a workflow "
                     "(expected `return workflow { ... }` or a list of them)\n"
                     "%s/c.lua:4: item 2 of the returned list is not a workflow\n"
                     "%s/d.lua:1: file does not return a workflow "
                     "(expected `return workflow { ... }` or a list of them)\n");
}

static void test_name_problems(void **state) {
    tdir *d = *state;
    put(d, "a.lua",
        "\n\nreturn workflow {\n states = {\"a\"}, initial = \"a\",\n"
        " terminal = {\"a\"}, edges = {} }\n");
    put(d, "b.lua",
        "return workflow {\n name = 42, states = {\"a\"}, initial = \"a\",\n"
        " terminal = {\"a\"}, edges = {} }\n");
    expect_errors(d, "%s/a.lua:3: workflow has no name\n"
                     "%s/b.lua:1: workflow name must be a non-empty string\n");
}

static void test_initial_problems(void **state) {
    tdir *d = *state;
    put(d, "a.lua",
        "local w = workflow {\n name = \"a\", states = {\"a\"},\n"
        " terminal = {\"a\"}, edges = {} }\nreturn w\n");
    put(d, "b.lua",
        "\nreturn workflow { name = \"b\", states = {\"a\"}, initial = \"zz\",\n"
        " terminal = {\"a\"}, edges = {} }\n");
    expect_errors(d, "%s/a.lua:1: workflow has no initial state\n"
                     "%s/b.lua:2: initial state 'zz' is not a declared state\n");
}

static void test_edge_problems(void **state) {
    tdir *d = *state;
    put(d, "a.lua",
        "-- line 1\n"
        "return workflow {\n"
        "  name = \"a\", initial = \"s\", terminal = {\"t\"},\n"
        "  states = {\"s\", \"t\", \"s\"},\n"
        "  edges = {\n"
        "    {\"s\", \"t\"},\n"
        "    {\"s\", \"foo\"},\n"
        "    {\"bar\", \"t\"},\n"
        "    {\"s\", \"t\"},\n"
        "    {\"s\"},\n"
        "    \"s->t\",\n"
        "  },\n"
        "}\n");
    expect_errors(d, "%s/a.lua:2: duplicate state 's'\n"
                     "%s/a.lua:2: edge 2: unknown state 'foo'\n"
                     "%s/a.lua:2: edge 3: unknown state 'bar'\n"
                     "%s/a.lua:2: edge 4: duplicate edge s -> t\n"
                     "%s/a.lua:2: edge 5 must be a {from, to} pair of state names\n"
                     "%s/a.lua:2: edge 6 must be a {from, to} pair of state names\n");
}

static void test_terminal_and_fields(void **state) {
    tdir *d = *state;
    put(d, "a.lua",
        "\n\n\nreturn workflow { name = \"a\", states = {\"s\", \"t\"},\n"
        " initial = \"s\", terminal = {\"t\", \"done\"}, edges = {{\"s\", \"t\"}} }\n");
    put(d, "b.lua",
        "return workflow { name = \"b\", states = {\"s\", \"t\"}, initial = \"s\",\n"
        " termnal = {\"t\"}, edges = {{\"s\", \"t\"}} }\n");
    put(d, "c.lua", "return workflow { name = \"c\", initial = \"s\", edges = {} }\n");
    expect_errors(d, "%s/a.lua:4: terminal state 'done' is not a declared state\n"
                     "%s/b.lua:1: unknown field 'termnal'\n"
                     "%s/c.lua:1: workflow has no states\n"
                     "%s/c.lua:1: initial state 's' is not a declared state\n");
}

/* lf_workflow_check's findings, at the workflow{} line. */
static void test_lint_problems(void **state) {
    tdir *d = *state;
    put(d, "a.lua",
        "\n"
        "return workflow {\n"
        "  name = \"a\", initial = \"s\", terminal = {\"t\"},\n"
        "  states = {\"s\", \"m\", \"t\", \"island\", \"stuck\"},\n"
        "  edges = {{\"s\", \"m\"}, {\"m\", \"m\"}, {\"m\", \"t\"}, {\"t\", \"s\"},\n"
        "           {\"island\", \"t\"}, {\"m\", \"stuck\"}},\n"
        "}\n");
    expect_errors(d,
                  "%s/a.lua:2: self-loop on state 'm'\n"
                  "%s/a.lua:2: edge t -> s leads into the initial state\n"
                  "%s/a.lua:2: edge t -> s leaves terminal state 't'\n"
                  "%s/a.lua:2: state 'island' is unreachable from initial state 's'\n"
                  "%s/a.lua:2: state 'stuck' has no outgoing edge and is not terminal\n");
}

static void test_duplicate_names(void **state) {
    tdir *d = *state;
    put(d, "a.lua", GOOD("same"));
    put(d, "b.lua", "\n\n" GOOD("same"));
    put(d, "c.lua", "return {\n" WF("x") ",\n" WF("x") "}\n");
    expect_errors(d,
                  "%s/b.lua:3: duplicate workflow 'same' (first defined at %s/a.lua:1)\n"
                  "%s/c.lua:4: duplicate workflow 'x' (first defined at %s/c.lua:2)\n");
}

/* Every problem in every file, in one run; the good file does not hide
 * them and does not survive them. */
static void test_many_problems(void **state) {
    tdir *d = *state;
    put(d, "1.lua", GOOD("fine"));
    put(d, "2.lua", "return workflow {\n");
    put(d, "3.lua",
        "return {\n"
        "  workflow { name = \"p\", states = {\"a\"}, initial = \"b\", edges = {} },\n"
        "  workflow { states = {\"a\", \"b\"}, initial = \"a\", terminal = {\"b\"},\n"
        "             edges = {{\"a\", \"c\"}} },\n"
        "}\n");
    put(d, "4.lua", "os.execute(\"true\")\n");
    expect_errors(d, "%s/2.lua:2: unexpected symbol near <eof>\n"
                     "%s/3.lua:2: initial state 'b' is not a declared state\n"
                     "%s/3.lua:3: workflow has no name\n"
                     "%s/3.lua:3: edge 1: unknown state 'c'\n"
                     "%s/4.lua:1: attempt to call a nil value (field 'execute')\n");
}

/* ---- the sandbox ------------------------------------------------------------ */

static void test_sandbox_denies(void **state) {
    tdir *d = *state;
    put(d, "a.lua", "local f = io.open(\"/etc/passwd\")\n");
    put(d, "b.lua", "\nos.execute(\"touch /tmp/lf_pwned\")\n");
    put(d, "c.lua", "dofile(\"/etc/passwd\")\n");
    put(d, "d.lua", "load(\"return 1\")\n");
    put(d, "e.lua", "require(\"io\")\n");
    put(d, "f.lua", "string.dump(print)\n");
    put(d, "g.lua", "loadfile(\"/etc/passwd\")\n");
    put(d, "h.lua", "collectgarbage()\n");
    put(d, "i.lua", "debug.getinfo(1)\n");
    put(d, "j.lua", "(\"x\"):dump()\n");
    put(d, "k.lua", "os.getenv(\"HOME\")\n");
    expect_errors(d,
                  "%s/a.lua:1: attempt to index a nil value (global 'io')\n"
                  "%s/b.lua:2: attempt to call a nil value (field 'execute')\n"
                  "%s/c.lua:1: attempt to call a nil value (global 'dofile')\n"
                  "%s/d.lua:1: attempt to call a nil value (global 'load')\n"
                  "%s/e.lua:1: module 'io' not found (policies can only require modules "
                  "under lib/ and the Lua library directory)\n"
                  "%s/f.lua:1: attempt to call a nil value (field 'dump')\n"
                  "%s/g.lua:1: attempt to call a nil value (global 'loadfile')\n"
                  "%s/h.lua:1: attempt to call a nil value (global 'collectgarbage')\n"
                  "%s/i.lua:1: attempt to index a nil value (global 'debug')\n"
                  "%s/j.lua:1: attempt to call a nil value (method 'dump')\n"
                  "%s/k.lua:1: attempt to call a nil value (field 'getenv')\n");
    assert_int_equal(access("/tmp/lf_pwned", F_OK), -1);
}

/* What the sandbox does allow, workflows can use. */
static void test_sandbox_allows(void **state) {
    tdir *d = *state;
    put(d, "a.lua",
        "assert(type(os.time()) == 'number' and os.date('!%Y', 0) == '1970')\n"
        "assert(os.clock() >= 0)\n"
        "assert(string.format('%d', 3) == '3' and table.concat({'a','b'}, ',') == 'a,b')\n"
        "assert(math.floor(2.5) == 2 and utf8.char(8594) == '\\u{2192}')\n"
        "assert(pcall(error, 'x') == false)\n"
        "local states = {}\n"
        "for i = 1, 3 do states[#states + 1] = 's' .. i end\n"
        "local edges = {}\n"
        "for i = 1, 2 do edges[i] = {states[i], states[i + 1]} end\n"
        "return workflow { name = 'gen', states = states, initial = 's1',\n"
        "                  terminal = {'s3'}, edges = edges }\n");
    lf_rules *r = load_ok(d);
    assert_int_equal(lf_rules_workflow(r, "gen")->nedges, 2);
    lf_rules_free(r);
}

/* One file's globals are invisible to the next. */
static void test_file_globals_isolated(void **state) {
    tdir *d = *state;
    put(d, "a.lua", "helper = 1\n" GOOD("a"));
    put(d, "b.lua", "assert(helper == nil, 'leaked')\n" GOOD("b"));
    lf_rules_free(load_ok(d));
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
    (void)L;
    lf_buf_add(ud, p, n);
    return 0;
}

/* A genuine precompiled chunk, made with a full (unsandboxed) Lua. */
static void test_binary_chunk(void **state) {
    tdir *d = *state;
    lua_State *L = luaL_newstate();
    assert_int_equal(luaL_loadstring(L, GOOD("bin")), LUA_OK);
    lf_buf bin = LF_BUF_INIT;
    assert_int_equal(lua_dump(L, dump_writer, &bin, 1), 0);
    lua_close(L);
    assert_true(bin.len > 4 && bin.p[0] == '\x1b');
    put_bytes(d, "bin.lua", bin.p, bin.len);
    lf_buf_free(&bin);
    expect_errors(d, "%s/bin.lua:1: attempt to load a binary chunk (mode is 't')\n");
}

static void test_budgets(void **state) {
    tdir *d = *state;
    put(d, "loop.lua", "local n = 0\n\nwhile true do n = n + 1 end\n");
    put(d, "mem.lua", "local s = 'x'\nwhile true do s = s .. s end\n");
    expect_errors(
        d, "%s/loop.lua:3: instruction budget exceeded\n"
           "%s/mem.lua:1: not enough memory (the policy memory limit was reached)\n");
}

/* Metamethods on a returned table must not run while compiling it. */
static void test_hostile_metatable(void **state) {
    tdir *d = *state;
    put(d, "a.lua",
        "local t = setmetatable({ name = 'm', states = {'a', 'b'}, initial = 'a' },\n"
        "  { __index = function() error('ran') end })\n"
        "return workflow(t)\n");
    expect_errors(d, "%s/a.lua:3: workflow has no edges\n");
}

/* A string that turns out malformed after more text than a luaL_Buffer
 * holds in place: Lua 5.4 then keeps the text in a box on the stack,
 * marked to-be-closed, and a decoder that popped that box with
 * lua_settop on its way out had Lua 5.4.4 close it there -- a call that
 * may move the stack -- and then set the top from a pointer into the
 * old one (fuzz_route found it: a freed error message, read). The
 * decoder finishes the buffer before it fails; every distance from the
 * stack's end is tried, so that one of them has the close move it. */
static void test_json_decode_fails_clean(void **state) {
    (void)state;
    lf_buf s = LF_BUF_INIT;
    lf_buf_puts(&s, "{\"k\":\"\\n");
    for (int i = 0; i < 3000; i++) lf_buf_putc(&s, 'x');
    lf_buf_puts(&s, "\\q\"}");
    for (int fill = 0; fill < 40; fill++) {
        lua_State *L = luaL_newstate();
        assert_true(lua_checkstack(L, fill));
        for (int i = 0; i < fill; i++) lua_pushinteger(L, i);
        size_t pos = 0;
        assert_false(lf_json_decode(L, s.p, s.len, NULL, &pos));
        assert_int_equal(pos, s.len - 2);          /* just past the bad escape */
        assert_int_equal(lua_gettop(L), fill);
        lua_pushliteral(L, "after");
        assert_string_equal(lua_tostring(L, -1), "after");
        if (fill) assert_int_equal(lua_tointeger(L, fill), fill - 1);
        lua_close(L);
    }
    lf_buf_free(&s);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_policies),
        T(test_order_and_lists),
        T(test_generation),
        T(test_compiled_graph),
        T(test_missing_dir),
        T(test_empty_dir),
        T(test_syntax_error),
        T(test_runtime_error),
        T(test_unknown_fields),
        T(test_long_path),
        T(test_workflow_bad_argument),
        T(test_not_a_workflow),
        T(test_name_problems),
        T(test_initial_problems),
        T(test_edge_problems),
        T(test_terminal_and_fields),
        T(test_lint_problems),
        T(test_duplicate_names),
        T(test_many_problems),
        T(test_sandbox_denies),
        T(test_sandbox_allows),
        T(test_file_globals_isolated),
        T(test_binary_chunk),
        T(test_budgets),
        T(test_hostile_metatable),
        cmocka_unit_test(test_json_decode_fails_clean),
    };
    return cmocka_run_group_tests_name("rules", tests, NULL, NULL);
}
