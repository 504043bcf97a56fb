/* rules.c -- the Lua host: sandboxed lua_State, workflow loading, policy
 * set generations.
 *
 * Owns every lua_State in loopforge. lf_rules_load() builds a fresh
 * sandbox, runs each DIR/workflows/<name>.lua file in it, compiles what the
 * files return into lf_workflow graphs and lints them. Loading is all or
 * nothing: every problem in every file is collected as "file:line:
 * message" and a single problem means no rule set, so a reload can never
 * half-apply a broken policy directory. */
#include "rules.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>

/* Budgets for running the policy files themselves. They only exist so a
 * runaway file (an endless loop, a string doubling forever) becomes a
 * load error instead of a hung or swapping daemon. */
#define LF_RULES_MEM_LIMIT      (64u << 20)     /* bytes per lua_State */
#define LF_RULES_HOOK_EVERY     10000           /* instructions per tick */
#define LF_RULES_LOAD_TICKS     1000            /* ticks per file */
#define LF_RULES_MAX_DEPTH      8               /* subdirectory nesting */

/* Registry key of the weak table mapping workflow{} tables to the line
 * of the workflow{} call that produced them. */
#define LF_WF_LINES "lf.workflow_lines"

struct lf_rules {
    lua_State *L;
    size_t mem_used, mem_limit;   /* custom allocator accounting */
    long ticks_left;              /* instruction budget of the running file */

    lf_workflow **wfs;
    int *wf_line;                 /* workflow{} line, per workflow */
    int *wf_file;                 /* index into files, per workflow */
    int nwfs;

    char **files;                 /* load order */
    int nfiles;

    char generation[65];
};

/* Per-file loading state. */
typedef struct load_ctx {
    lf_rules *r;
    const char *path;
    int file;                     /* index into r->files */
    int last_line;                /* for problems with no better line */
    lf_buf *errors;
    int nerr;
} load_ctx;

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

static void problem(load_ctx *c, int line, const char *msg) {
    lf_buf_printf(c->errors, "%s:%d: %s\n", c->path, line, msg);
    c->nerr++;
}

/* ---- the sandbox --------------------------------------------------------- */

/* Counts bytes so one lua_State cannot take the machine down. Only growth
 * is refused: Lua copes with a failed allocation but a failed shrink
 * or free would leave its accounting wrong. */
static void *lf_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    lf_rules *r = ud;
    if (!ptr) osize = 0;            /* osize is then a type tag, not a size */
    if (nsize == 0) {
        free(ptr);
        r->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && r->mem_used - osize + nsize > r->mem_limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) r->mem_used = r->mem_used - osize + nsize;
    return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    void *ud;
    lua_getallocf(L, &ud);
    lf_rules *r = ud;
    if (--r->ticks_left < 0) {
        lua_pushliteral(L, "instruction budget exceeded");
        lua_error(L);
    }
}

/* workflow { ... }: tags the table with the line it was written on, so
 * every later problem with it can point there, and returns it. */
static int l_workflow(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    int line = 0;
    lua_Debug ar;
    /* The first Lua frame up the stack is the caller, even when it got
     * here through pcall or another C function. */
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0) { line = ar.currentline; break; }
    }
    lua_getfield(L, LUA_REGISTRYINDEX, LF_WF_LINES);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, line);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 1;
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open) {
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
}

static void sandbox(lua_State *L) {
    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);

    /* os: only the clock functions. Open the real library off to the side
     * and copy the safe entries into a fresh table. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_newtable(L);
    static const char *const os_keep[] = {"time", "date", "clock"};
    for (size_t i = 0; i < sizeof os_keep / sizeof *os_keep; i++) {
        lua_getfield(L, -2, os_keep[i]);
        lua_setfield(L, -2, os_keep[i]);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, LUA_OSLIBNAME);
    /* package.loaded.os must not keep the full library reachable. */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_insert(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 2);

    /* Anything that loads code from outside the policy directory, or
     * turns functions into bytes, or lets a file steer the collector. */
    static const char *const drop[] = {
        "dofile", "loadfile", "load", "require", "collectgarbage"};
    for (size_t i = 0; i < sizeof drop / sizeof *drop; i++) {
        lua_pushnil(L);
        lua_setglobal(L, drop[i]);
    }
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    /* The workflow{} tags: weak keys, so they never keep a table alive. */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, LF_WF_LINES);

    lua_pushcfunction(L, l_workflow);
    lua_setglobal(L, "workflow");
}

/* ---- running one file ------------------------------------------------------ */

/* Message handler: make sure every error carries a position. Lua already
 * prefixes errors raised with a position ("src:12: ..."); errors raised
 * with level 0, non-string errors, and our budget error do not, so they
 * get the line of the innermost frame of this file. */
static int on_error(lua_State *L) {
    const char *chunk = lua_tostring(L, lua_upvalueindex(1));   /* "@path" */
    const char *shortsrc = lua_tostring(L, lua_upvalueindex(2));
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    size_t n = strlen(shortsrc);
    if (strncmp(msg, shortsrc, n) == 0 && msg[n] == ':') {
        lua_pushstring(L, msg);
        return 1;
    }
    int line = 1;
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline > 0 && strcmp(ar.source, chunk) == 0) {
            line = ar.currentline;
            break;
        }
    }
    lua_pushfstring(L, "%s:%d: %s", shortsrc, line, msg);
    return 1;
}

/* Lua names a chunk in messages by its "short source", which truncates
 * long paths to "...tail". Learn the exact form by loading an empty chunk
 * under the same name, so messages can be rewritten to the full path. */
static void push_short_src(lua_State *L, const char *chunk) {
    lua_Debug ar;
    if (luaL_loadbufferx(L, "", 0, chunk, "t") != LUA_OK) {
        lua_pop(L, 1);
        lua_pushstring(L, chunk + 1);
        return;
    }
    lua_getinfo(L, ">S", &ar);
    lua_pushstring(L, ar.short_src);
}

/* Reports a Lua error message as a problem, replacing Lua's short source
 * prefix with the full path. Messages with no position get `line`. */
static void lua_problem(load_ctx *c, const char *shortsrc, const char *msg, int line) {
    size_t n = strlen(shortsrc);
    if (msg && strncmp(msg, shortsrc, n) == 0 && msg[n] == ':') {
        lf_buf_printf(c->errors, "%s%s\n", c->path, msg + n);
        c->nerr++;
    } else {
        problem(c, line, msg ? msg : "error");
    }
}

/* Where to point problems about what a file returned: its last line of
 * code (not blank, not a "--" comment), which is where the `return`
 * normally sits. */
static int last_code_line(const char *s, size_t len) {
    int line = 1, last = 1;
    bool start = true;              /* only blanks so far on this line */
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '\n') { line++; start = true; continue; }
        if (!start || ch == ' ' || ch == '\t' || ch == '\r') continue;
        start = false;
        if (!(ch == '-' && i + 1 < len && s[i + 1] == '-')) last = line;
    }
    return last;
}

/* ---- compiling a workflow table ------------------------------------------ */

/* Compiling one workflow{} table: the Lua stack slot of the table, the
 * line it was written on, and the graph being built. */
typedef struct wf_ctx {
    lua_State *L;
    load_ctx *c;
    int t, line;
    lf_workflow *wf;
} wf_ctx;

static void wf_problem(wf_ctx *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void wf_problem(wf_ctx *w, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    problem(w->c, w->line, msg);
}

/* Pushes t[key] without metamethods (a hostile __index must not run at
 * compile time) and returns its type. */
static int rawfield(wf_ctx *w, const char *key) {
    lua_pushstring(w->L, key);
    return lua_rawget(w->L, w->t);
}

/* Unknown keys are almost always typos ("termnal"), which would otherwise
 * silently drop a part of the workflow. */
static void check_fields(wf_ctx *w) {
    static const char *const known[] = {"name", "initial", "states", "terminal", "edges"};
    lua_State *L = w->L;
    lua_pushnil(L);
    while (lua_next(L, w->t)) {
        lua_pop(L, 1);
        bool ok = false;
        if (lua_type(L, -1) != LUA_TSTRING) {
            wf_problem(w, "unknown field (a %s key)", luaL_typename(L, -1));
            continue;
        }
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            if (strcmp(lua_tostring(L, -1), known[i]) == 0) ok = true;
        if (!ok) wf_problem(w, "unknown field '%s'", lua_tostring(L, -1));
    }
}

static const char *get_name(wf_ctx *w) {
    int ty = rawfield(w, "name");
    const char *name = NULL;
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no name");
    else if (ty != LUA_TSTRING || lua_rawlen(w->L, -1) == 0)
        wf_problem(w, "workflow name must be a non-empty string");
    else name = lua_tostring(w->L, -1);
    /* Still referenced from the table, so the string outlives the pop. */
    lua_pop(w->L, 1);
    return name;
}

/* states: a list of names; declaration order becomes the state ids. */
static void get_states(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "states"), list = lua_gettop(L);
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no states");
    else if (ty != LUA_TTABLE) wf_problem(w, "states must be a list of names");
    else {
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        if (n == 0) wf_problem(w, "states must not be empty");
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, list, i) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
                wf_problem(w, "state %lld must be a non-empty string", (long long)i);
            else if (lf_workflow_add_state(w->wf, lua_tostring(L, -1)) < 0)
                wf_problem(w, "duplicate state '%s'", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

static void get_initial(wf_ctx *w) {
    int ty = rawfield(w, "initial");
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no initial state");
    else if (ty != LUA_TSTRING) wf_problem(w, "initial must be a state name");
    else if ((w->wf->initial = lf_workflow_state(w->wf, lua_tostring(w->L, -1))) < 0)
        wf_problem(w, "initial state '%s' is not a declared state", lua_tostring(w->L, -1));
    lua_pop(w->L, 1);
}

/* terminal: optional, since a workflow may legitimately cycle forever. */
static void get_terminal(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "terminal"), list = lua_gettop(L);
    if (ty != LUA_TNIL && ty != LUA_TTABLE)
        wf_problem(w, "terminal must be a list of state names");
    else if (ty == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            int s = -1;
            if (lua_rawgeti(L, list, i) != LUA_TSTRING)
                wf_problem(w, "terminal %lld must be a state name", (long long)i);
            else if ((s = lf_workflow_state(w->wf, lua_tostring(L, -1))) < 0)
                wf_problem(w, "terminal state '%s' is not a declared state",
                           lua_tostring(L, -1));
            else
                w->wf->terminal[s] = true;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* One {from, to} pair at the top of the stack, the i-th edge. */
static void get_edge(wf_ctx *w, lua_Integer i) {
    lua_State *L = w->L;
    int e = lua_gettop(L);
    bool pair = lua_type(L, e) == LUA_TTABLE && lua_rawlen(L, e) == 2 &&
                lua_rawgeti(L, e, 1) == LUA_TSTRING &&
                lua_rawgeti(L, e, 2) == LUA_TSTRING;
    if (!pair) {
        wf_problem(w, "edge %lld must be a {from, to} pair of state names", (long long)i);
        lua_settop(L, e);
        return;
    }
    const char *fn = lua_tostring(L, e + 1), *tn = lua_tostring(L, e + 2);
    int from = lf_workflow_state(w->wf, fn), to = lf_workflow_state(w->wf, tn);
    if (from < 0) wf_problem(w, "edge %lld: unknown state '%s'", (long long)i, fn);
    if (to < 0 && strcmp(fn, tn) != 0)
        wf_problem(w, "edge %lld: unknown state '%s'", (long long)i, tn);
    if (from >= 0 && to >= 0 && lf_workflow_add_edge(w->wf, from, to) < 0)
        wf_problem(w, "edge %lld: duplicate edge %s -> %s", (long long)i, fn, tn);
    lua_settop(L, e);
}

/* edges: {from, to} pairs, kept in declaration order because that order
 * is the "Allowed from" order of the invalid-transition message. */
static void get_edges(wf_ctx *w) {
    lua_State *L = w->L;
    int ty = rawfield(w, "edges"), list = lua_gettop(L);
    if (ty == LUA_TNIL) wf_problem(w, "workflow has no edges");
    else if (ty != LUA_TTABLE) wf_problem(w, "edges must be a list of {from, to} pairs");
    else {
        lua_Integer n = (lua_Integer)lua_rawlen(L, list);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            get_edge(w, i);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* The core's structural lint, one problem per line, all at `line`. */
static void lint(wf_ctx *w) {
    lf_buf problems = LF_BUF_INIT;
    lf_workflow_check(w->wf, &problems);
    const char *p = lf_buf_str(&problems);
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lf_buf_printf(w->c->errors, "%s:%d: %.*s\n", w->c->path, w->line, (int)len, p);
        w->c->nerr++;
        p += len + (nl != NULL);
    }
    lf_buf_free(&problems);
}

/* Compiles the workflow table at index t (tagged at `line`) into a new
 * lf_workflow, reporting every problem. Returns NULL if there was any. */
static lf_workflow *compile(lua_State *L, load_ctx *c, int t, int line) {
    wf_ctx w = {L, c, t, line, NULL};
    int before = c->nerr;
    check_fields(&w);
    const char *name = get_name(&w);
    w.wf = lf_workflow_new(name ? name : "");
    get_states(&w);
    get_initial(&w);
    get_terminal(&w);
    get_edges(&w);
    /* The lint only makes sense on a graph that compiled: a misspelt
     * state in an edge would otherwise also show up as "unreachable". */
    if (c->nerr == before) lint(&w);
    if (c->nerr != before) {
        lf_workflow_free(w.wf);
        return NULL;
    }
    return w.wf;
}

/* Line of the workflow{} call that produced the value at idx, or 0 if
 * the value is not a workflow{} table. */
static int workflow_line(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    lua_getfield(L, LUA_REGISTRYINDEX, LF_WF_LINES);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    int line = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    return line;
}

static void add_workflow(load_ctx *c, lf_workflow *wf, int line) {
    lf_rules *r = c->r;
    /* Names are the handle records and the CLI use: they must be unique
     * across the whole generation, not just within a file. */
    for (int i = 0; i < r->nwfs; i++) {
        if (strcmp(r->wfs[i]->name, wf->name) != 0) continue;
        char msg[512];
        snprintf(msg, sizeof msg, "duplicate workflow '%s' (first defined at %s:%d)",
                 wf->name, r->files[r->wf_file[i]], r->wf_line[i]);
        problem(c, line, msg);
        lf_workflow_free(wf);
        return;
    }
    size_t n = (size_t)r->nwfs + 1;
    r->wfs = xrealloc(r->wfs, n * sizeof *r->wfs);
    r->wf_line = xrealloc(r->wf_line, n * sizeof *r->wf_line);
    r->wf_file = xrealloc(r->wf_file, n * sizeof *r->wf_file);
    r->wfs[r->nwfs] = wf;
    r->wf_line[r->nwfs] = line;
    r->wf_file[r->nwfs] = c->file;
    r->nwfs++;
}

/* Protected part of compiling a file's return value (index 2; the
 * load_ctx is a light userdata at index 1): any Lua memory error while
 * walking the tables becomes a load error instead of a panic. */
static int compile_results(lua_State *L) {
    load_ctx *c = lua_touserdata(L, 1);
    int line = workflow_line(L, 2);
    if (line) {
        lf_workflow *wf = compile(L, c, 2, line);
        if (wf) add_workflow(c, wf, line);
        return 0;
    }
    lua_Integer n = lua_type(L, 2) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, 2) : 0;
    if (n == 0) {
        problem(c, c->last_line,
                "file does not return a workflow (expected `return workflow { ... }` "
                "or a list of them)");
        return 0;
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int top = lua_gettop(L);
        if (!(line = workflow_line(L, top))) {
            char msg[128];
            snprintf(msg, sizeof msg, "item %lld of the returned list is not a workflow",
                     (long long)i);
            problem(c, c->last_line, msg);
        } else {
            lf_workflow *wf = compile(L, c, top, line);
            if (wf) add_workflow(c, wf, line);
        }
        lua_settop(L, top - 1);
    }
    return 0;
}

static void run_file(load_ctx *c, const char *src, size_t len) {
    lua_State *L = c->r->L;
    int base = lua_gettop(L);
    lua_pushfstring(L, "@%s", c->path);
    const char *chunk = lua_tostring(L, -1);
    push_short_src(L, chunk);
    const char *shortsrc = lua_tostring(L, -1);

    /* Text only: a precompiled chunk can crash the VM on purpose. */
    if (luaL_loadbufferx(L, src, len, chunk, "t") != LUA_OK) {
        lua_problem(c, shortsrc, lua_tostring(L, -1), 1);
        lua_settop(L, base);
        return;
    }
    int fn = lua_gettop(L);

    /* Each file gets its own globals, falling back to the shared sandbox,
     * so a stray global in one file cannot change the meaning of the next. */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    if (!lua_setupvalue(L, fn, 1)) lua_pop(L, 1);

    lua_pushvalue(L, base + 1);
    lua_pushvalue(L, base + 2);
    lua_pushcclosure(L, on_error, 2);
    lua_insert(L, fn);                                  /* handler below fn */
    c->r->ticks_left = LF_RULES_LOAD_TICKS;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, LF_RULES_HOOK_EVERY);
    int st = lua_pcall(L, 0, 1, fn);
    lua_sethook(L, NULL, 0, 0);
    if (st != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        if (st == LUA_ERRMEM) m = "not enough memory (the policy memory limit was reached)";
        lua_problem(c, shortsrc, m, 1);
        lua_settop(L, base);
        return;
    }

    lua_pushcfunction(L, compile_results);
    lua_pushlightuserdata(L, c);
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
        problem(c, c->last_line, lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    lua_settop(L, base);
}

/* ---- the directory --------------------------------------------------------- */

static bool has_lua_suffix(const char *name) {
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".lua") == 0;
}

typedef struct path_list { char **v; int n; } path_list;

/* Collects *.lua files below dir, recursively; dot-entries (editor
 * droppings, VCS metadata) are skipped. Returns -1 if dir can't be opened. */
static int scan(const char *dir, path_list *out, int depth) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        lf_buf p = LF_BUF_INIT;
        lf_buf_printf(&p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(lf_buf_str(&p), &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth < LF_RULES_MAX_DEPTH) {
                scan(lf_buf_str(&p), out, depth + 1);
            } else if (S_ISREG(st.st_mode) && has_lua_suffix(de->d_name)) {
                out->v = xrealloc(out->v, (size_t)(out->n + 1) * sizeof *out->v);
                out->v[out->n++] = lf_buf_steal(&p);
            }
        }
        lf_buf_free(&p);
    }
    closedir(d);
    return 0;
}

static int cmp_path(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    lf_buf b = LF_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) lf_buf_add(&b, chunk, n);
    int err = ferror(f);
    fclose(f);
    if (err) {
        lf_buf_free(&b);
        errno = EIO;
        return NULL;
    }
    *len = b.len;
    return lf_buf_steal(&b);
}

static void hex(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

lf_rules *lf_rules_load(const char *dir, lf_buf *errors) {
    lf_rules *r = xrealloc(NULL, sizeof *r);
    memset(r, 0, sizeof *r);
    r->mem_limit = LF_RULES_MEM_LIMIT;
    int nerr = 0;

    lf_buf wdir = LF_BUF_INIT;
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/') dlen--;   /* no "dir//workflows" */
    lf_buf_add(&wdir, dir, dlen);
    lf_buf_puts(&wdir, "/workflows");

    path_list files = {NULL, 0};
    int scanned = scan(lf_buf_str(&wdir), &files, 0);
    if (files.n == 0) {
        if (scanned < 0 && errno != ENOENT)
            lf_buf_printf(errors, "%s: %s\n", lf_buf_str(&wdir), strerror(errno));
        else
            lf_buf_printf(errors, "%s: no workflow files\n", lf_buf_str(&wdir));
        lf_buf_free(&wdir);
        free(files.v);
        free(r);
        return NULL;
    }
    lf_buf_free(&wdir);
    qsort(files.v, (size_t)files.n, sizeof *files.v, cmp_path);
    r->files = files.v;
    r->nfiles = files.n;

    r->L = lua_newstate(lf_alloc, r);
    if (!r->L) abort();
    sandbox(r->L);

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) abort();
    for (int i = 0; i < r->nfiles; i++) {
        load_ctx c = {r, r->files[i], i, 1, errors, 0};
        size_t len = 0;
        char *src = read_file(c.path, &len);
        if (!src) {
            lf_buf_printf(errors, "%s: %s\n", c.path, strerror(errno));
            nerr++;
            continue;
        }
        EVP_DigestUpdate(md, src, len);
        c.last_line = last_code_line(src, len);
        run_file(&c, src, len);
        nerr += c.nerr;
        free(src);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    EVP_DigestFinal_ex(md, digest, &dn);
    EVP_MD_CTX_free(md);
    hex(digest, dn, r->generation);

    if (nerr) {
        lf_rules_free(r);
        return NULL;
    }
    /* Drop what the files left behind; the state lives on for policies. */
    lua_gc(r->L, LUA_GCCOLLECT);
    return r;
}

void lf_rules_free(lf_rules *r) {
    if (!r) return;
    if (r->L) lua_close(r->L);
    for (int i = 0; i < r->nwfs; i++) lf_workflow_free(r->wfs[i]);
    free(r->wfs);
    free(r->wf_line);
    free(r->wf_file);
    for (int i = 0; i < r->nfiles; i++) free(r->files[i]);
    free(r->files);
    free(r);
}

const lf_workflow *lf_rules_workflow(const lf_rules *r, const char *name) {
    if (!name) name = "loopforge";
    for (int i = 0; i < r->nwfs; i++)
        if (strcmp(r->wfs[i]->name, name) == 0) return r->wfs[i];
    return NULL;
}

int lf_rules_nworkflows(const lf_rules *r) { return r->nwfs; }

const lf_workflow *lf_rules_workflow_at(const lf_rules *r, int i) {
    return i >= 0 && i < r->nwfs ? r->wfs[i] : NULL;
}

const char *lf_rules_generation(const lf_rules *r) { return r->generation; }

int lf_rules_nfiles(const lf_rules *r) { return r->nfiles; }

const char *lf_rules_file_at(const lf_rules *r, int i) {
    return i >= 0 && i < r->nfiles ? r->files[i] : NULL;
}
