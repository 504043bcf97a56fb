/* workflow.c -- the compiled workflow graph.
 *
 * Owns lf_workflow: adding states and edges, answering "is this edge
 * allowed", the structural lint every loadable workflow must pass,
 * LoopForge's exact invalid-transition message, and the dot / mermaid
 * renderings. Pure C: no I/O, no Lua. Graphs are small (tens of states),
 * so plain arrays and linear scans beat anything cleverer. */
#include "workflow.h"
#include "mem.h"
#include "json.h"
#include "text.h"

#include <stdlib.h>
#include <string.h>

static bool valid_state(const lf_workflow *wf, int s) {
    return s >= 0 && s < wf->nstates;
}

lf_workflow *lf_workflow_new(const char *name) {
    lf_workflow *wf = lf_xrealloc(NULL, sizeof *wf);
    memset(wf, 0, sizeof *wf);
    wf->name = lf_xstrdup(name ? name : "");
    wf->initial = -1;
    wf->override_escalate = -1;
    return wf;
}

void lf_workflow_free(lf_workflow *wf) {
    if (!wf) return;
    for (int i = 0; i < wf->nstates; i++) free(wf->states[i]);
    free(wf->states);
    free(wf->terminal);
    free(wf->edges);
    for (int i = 0; i < wf->ntimers; i++) free(wf->timers[i].trigger);
    free(wf->timers);
    for (int i = 0; i < wf->nretries; i++) free(wf->retries[i].trigger);
    free(wf->retries);
    for (int i = 0; wf->gates && i < wf->nstates; i++) {
        lf_gate *g = &wf->gates[i];
        for (int k = 0; k < g->nleave; k++) free(g->leave[k]);
        for (int k = 0; k < g->nenter; k++) free(g->enter[k]);
        for (int k = 0; k < g->nkids; k++) free(g->kids[k]);
        free(g->leave);
        free(g->enter);
        free(g->kids);
    }
    free(wf->gates);
    free(wf->budgets);
    free(wf->name);
    free(wf);
}

int lf_workflow_add_timer(lf_workflow *wf, int state, int to, int64_t after_us,
                          const char *trigger) {
    if (!lf_workflow_has_edge(wf, state, to) || after_us <= 0 || !trigger || !*trigger)
        return -1;
    wf->timers = lf_xrealloc(wf->timers, (size_t)(wf->ntimers + 1) * sizeof *wf->timers);
    wf->timers[wf->ntimers++] = (lf_timer_def){
        .state = state, .to = to, .after_us = after_us, .trigger = lf_xstrdup(trigger)};
    return 0;
}

int lf_workflow_add_retry(lf_workflow *wf, const lf_retry_def *r) {
    if (r->max < 0 || r->initial_us < 0 || r->max_us < 0 || !(r->factor >= 1) ||
        !(r->jitter >= 0 && r->jitter <= 1) || !r->trigger ||
        !*r->trigger)   /* the negations refuse NaN too (0/0 in Lua) */
        return LF_RETRY_BAD_VALUE;
    if (!lf_workflow_has_edge(wf, r->state, r->to) || !valid_state(wf, r->escalate) ||
        r->escalate == r->state || lf_workflow_retry(wf, r->state))
        return LF_RETRY_BAD_EDGE;
    if (!lf_workflow_has_edge(wf, r->state, r->escalate)) {
        lf_workflow_add_edge(wf, r->state, r->escalate);
        wf->edges[wf->nedges - 1].engine = true;
    }
    wf->retries =
        lf_xrealloc(wf->retries, (size_t)(wf->nretries + 1) * sizeof *wf->retries);
    wf->retries[wf->nretries] = *r;
    wf->retries[wf->nretries++].trigger = lf_xstrdup(r->trigger);
    return 0;
}

const lf_retry_def *lf_workflow_retry(const lf_workflow *wf, int state) {
    for (int i = 0; i < wf->nretries; i++)
        if (wf->retries[i].state == state) return &wf->retries[i];
    return NULL;
}

bool lf_workflow_engine_edge(const lf_workflow *wf, int from, int to) {
    for (int i = 0; i < wf->nedges; i++)
        if (wf->edges[i].from == from && wf->edges[i].to == to)
            return wf->edges[i].engine;
    return false;
}

int lf_workflow_add_gate(lf_workflow *wf, int state, bool enter, const char *role) {
    if (!valid_state(wf, state) || !role || !*role) return -1;
    if (!wf->gates) wf->gates = lf_xcalloc((size_t)wf->nstates, sizeof *wf->gates);
    lf_gate *g = &wf->gates[state];
    char ***list = enter ? &g->enter : &g->leave;
    int *n = enter ? &g->nenter : &g->nleave;
    *list = lf_xrealloc(*list, (size_t)(*n + 1) * sizeof **list);
    (*list)[(*n)++] = lf_xstrdup(role);
    return 0;
}

int lf_workflow_set_review(lf_workflow *wf, int64_t review_us, int escalate) {
    if (!valid_state(wf, escalate) || review_us <= 0) return -1;
    wf->override_review_us = review_us;
    wf->override_escalate = escalate;
    for (int s = 0; s < wf->nstates; s++) {
        if (s == escalate || wf->terminal[s] || lf_workflow_has_edge(wf, s, escalate))
            continue;
        lf_workflow_add_edge(wf, s, escalate);
        wf->edges[wf->nedges - 1].engine = true;
    }
    return 0;
}

int lf_workflow_add_kids_gate(lf_workflow *wf, int state, const char *child_state) {
    if (!valid_state(wf, state) || !child_state || !*child_state) return -1;
    if (!wf->gates) wf->gates = lf_xcalloc((size_t)wf->nstates, sizeof *wf->gates);
    lf_gate *g = &wf->gates[state];
    g->kids = lf_xrealloc(g->kids, (size_t)(g->nkids + 1) * sizeof *g->kids);
    g->kids[g->nkids++] = lf_xstrdup(child_state);
    return 0;
}

/* kids[key] as a count, 0 when absent. */
static int64_t kids_count(const char *kids, const char *key) {
    const char *v;
    size_t n;
    int64_t c = 0;
    if (kids && lf_json_get(kids, strlen(kids), key, &v, &n)) lf_json_int(v, n, &c);
    return c;
}

bool lf_workflow_kids_ok(const lf_workflow *wf, int to, const char *kids, lf_buf *why) {
    const lf_gate *g = wf->gates && valid_state(wf, to) ? &wf->gates[to] : NULL;
    if (!g || !g->nkids) return true;
    int64_t total = kids_count(kids, "total"), done = 0;
    for (int i = 0; i < g->nkids; i++) done += kids_count(kids, g->kids[i]);
    if (done >= total) return true;
    lf_buf_printf(why, "entering %s needs every child in %s", wf->states[to], g->kids[0]);
    for (int i = 1; i < g->nkids; i++)
        lf_buf_printf(why, "%s%s", i + 1 < g->nkids ? ", " : " or ", g->kids[i]);
    lf_buf_printf(why, ": %lld of %lld %s not", (long long)(total - done),
                  (long long)total, total - done == 1 ? "is" : "are");
    return false;
}

bool lf_roles_have(const char *roles, const char *role) {
    size_t n = strlen(role);
    for (const char *p = roles; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && memcmp(p, role, n) == 0) return true;
        p = c ? c + 1 : NULL;
    }
    return false;
}

/* One side of a gate: NULL when `roles` holds one of `need`. */
static bool gate_side(char **need, int n, const char *roles) {
    for (int i = 0; i < n; i++)
        if (lf_roles_have(roles, need[i])) return true;
    return n == 0;
}

const char *lf_workflow_gate(const lf_workflow *wf, int from, int to, const char *actor,
                             const char *roles, lf_buf *why) {
    if (!wf->gates) return NULL;
    for (int side = 0; side < 2; side++) {
        int s = side ? to : from;
        if (!valid_state(wf, s)) continue;
        const lf_gate *g = &wf->gates[s];
        char **need = side ? g->enter : g->leave;
        int n = side ? g->nenter : g->nleave;
        if (gate_side(need, n, roles)) continue;
        lf_buf_printf(why, "%s %s needs the role %s", side ? "entering" : "leaving",
                      wf->states[s], need[0]);
        for (int i = 1; i < n; i++)
            lf_buf_printf(why, "%s%s", i + 1 < n ? ", " : " or ", need[i]);
        lf_buf_printf(why, "; %s has %s", actor ? actor : "anonymous",
                      roles && *roles ? roles : "no role");
        return wf->states[s];
    }
    return NULL;
}

int64_t lf_retry_backoff(const lf_retry_def *r, int n, const char *id) {
    double us = (double)r->initial_us;
    for (int i = 0; i < n && us < (double)r->max_us; i++) us *= r->factor;
    if (r->max_us > 0 && us > (double)r->max_us) us = (double)r->max_us;
    if (id && r->jitter > 0) {
        /* FNV-1a of the id and the attempt: deterministic, well spread. */
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ (uint64_t)n) * 1099511628211ULL;
        double u = (double)(h >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;   /* [-1, 1) */
        us *= 1.0 + r->jitter * u;
    }
    return (int64_t)us;
}

int64_t lf_duration_parse(const char *s) {
    int64_t n = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && n < 1000000000) n = n * 10 + (*p++ - '0');
    if (p == s || !p[0] || p[1]) return -1;
    switch (*p) {
    case 's': return n * 1000000;
    case 'm': return n * 60 * 1000000;
    case 'h': return n * 3600 * 1000000;
    case 'd': return n * 86400 * 1000000;
    default: return -1;
    }
}

int lf_workflow_add_state(lf_workflow *wf, const char *name) {
    if (!name || !*name || lf_workflow_state(wf, name) >= 0) return -1;
    int id = wf->nstates;
    /* Grow one at a time: states are added once, at load. */
    wf->states = lf_xrealloc(wf->states, (size_t)(id + 1) * sizeof *wf->states);
    wf->terminal = lf_xrealloc(wf->terminal, (size_t)(id + 1) * sizeof *wf->terminal);
    wf->states[id] = lf_xstrdup(name);
    wf->terminal[id] = false;
    wf->nstates = id + 1;
    return id;
}

int lf_workflow_state(const lf_workflow *wf, const char *name) {
    if (!name) return -1;
    for (int i = 0; i < wf->nstates; i++)
        if (lf_streq(wf->states[i], name)) return i;
    return -1;
}

int lf_workflow_add_edge(lf_workflow *wf, int from, int to) {
    if (!valid_state(wf, from) || !valid_state(wf, to)) return -1;
    if (lf_workflow_has_edge(wf, from, to)) return -1;
    wf->edges = lf_xrealloc(wf->edges, (size_t)(wf->nedges + 1) * sizeof *wf->edges);
    wf->edges[wf->nedges++] = (lf_edge){.from = from, .to = to};
    return 0;
}

bool lf_workflow_has_edge(const lf_workflow *wf, int from, int to) {
    for (int i = 0; i < wf->nedges; i++)
        if (wf->edges[i].from == from && wf->edges[i].to == to) return true;
    return false;
}

bool lf_workflow_is_terminal(const lf_workflow *wf, int state) {
    return valid_state(wf, state) && wf->terminal[state];
}

/* ---- structural checks --------------------------------------------------- */

static bool has_outgoing(const lf_workflow *wf, int s) {
    for (int i = 0; i < wf->nedges; i++)
        if (wf->edges[i].from == s) return true;
    return false;
}

/* Marks in `seen` every state reachable from `start`. The graph is tiny,
 * so a worklist that rescans the edge array is simpler than adjacency
 * lists and fast enough. */
static void mark_reachable(const lf_workflow *wf, int start, bool *seen) {
    int *stack = lf_xrealloc(NULL, (size_t)wf->nstates * sizeof *stack);
    int top = 0;
    seen[start] = true;
    stack[top++] = start;
    while (top) {
        int s = stack[--top];
        for (int i = 0; i < wf->nedges; i++) {
            int t = wf->edges[i].to;
            if (wf->edges[i].from == s && !seen[t]) {
                seen[t] = true;
                stack[top++] = t;
            }
        }
    }
    free(stack);
}

int lf_workflow_check(const lf_workflow *wf, lf_buf *problems) {
    int n = 0;
    if (wf->nstates == 0) {
        lf_buf_puts(problems, "no states\n");
        n++;
    }
    bool has_initial = valid_state(wf, wf->initial);
    if (!has_initial) {
        lf_buf_puts(problems, "no initial state\n");
        n++;
    }
    /* Edge-level problems, reported in edge order so the author can walk
     * the edges table alongside the messages. */
    for (int i = 0; i < wf->nedges; i++) {
        const lf_edge *e = &wf->edges[i];
        const char *from = wf->states[e->from], *to = wf->states[e->to];
        if (e->from == e->to) {
            lf_buf_printf(problems, "self-loop on state '%s'\n", from);
            n++;
        }
        if (has_initial && e->to == wf->initial) {
            lf_buf_printf(problems, "edge %s -> %s leads into the initial state\n", from,
                          to);
            n++;
        }
        if (wf->terminal[e->from]) {
            lf_buf_printf(problems, "edge %s -> %s leaves terminal state '%s'\n", from,
                          to, from);
            n++;
        }
    }
    /* State-level problems, in declaration order. */
    bool *seen = lf_xrealloc(NULL, (size_t)wf->nstates * sizeof *seen);
    memset(seen, 0, (size_t)wf->nstates * sizeof *seen);
    if (has_initial) mark_reachable(wf, wf->initial, seen);
    for (int s = 0; s < wf->nstates; s++) {
        if (has_initial && !seen[s]) {
            lf_buf_printf(problems, "state '%s' is unreachable from initial state '%s'\n",
                          wf->states[s], wf->states[wf->initial]);
            n++;
        }
        if (!wf->terminal[s] && !has_outgoing(wf, s)) {
            lf_buf_printf(problems,
                          "state '%s' has no outgoing edge and is not terminal\n",
                          wf->states[s]);
            n++;
        }
    }
    free(seen);
    return n;
}

/* ---- progress ------------------------------------------------------------ */

/* Depth-first from s in edge order: an edge to a state still on the
 * stack (colour 1) leads back; the others are forward. */
static void mark_back(const lf_workflow *wf, int s, char *colour, bool *back) {
    colour[s] = 1;
    for (int i = 0; i < wf->nedges; i++) {
        const lf_edge *e = &wf->edges[i];
        if (e->from != s) continue;
        if (colour[e->to] == 1) back[i] = true;
        else if (colour[e->to] == 0) mark_back(wf, e->to, colour, back);
    }
    colour[s] = 2;
}

void lf_workflow_ranks(const lf_workflow *wf, int *ranks) {
    int n = wf->nstates;
    for (int s = 0; s < n; s++) ranks[s] = -1;
    if (!valid_state(wf, wf->initial)) return;
    char *colour = lf_xcalloc((size_t)n, 1);
    bool *back = lf_xcalloc((size_t)wf->nedges + 1, sizeof *back);
    mark_back(wf, wf->initial, colour, back);
    /* Longest path in what is left (acyclic): relax n times. */
    ranks[wf->initial] = 0;
    for (int round = 0; round < n; round++) {
        bool moved = false;
        for (int i = 0; i < wf->nedges; i++) {
            const lf_edge *e = &wf->edges[i];
            if (back[i] || ranks[e->from] < 0 || ranks[e->to] >= ranks[e->from] + 1)
                continue;
            ranks[e->to] = ranks[e->from] + 1;
            moved = true;
        }
        if (!moved) break;
    }
    free(colour);
    free(back);
}

int lf_workflow_path(const lf_workflow *wf, int from, int to, int *path) {
    int n = wf->nstates;
    if (!valid_state(wf, from) || !valid_state(wf, to) || from == to) return 0;
    int *prev = lf_xmalloc((size_t)n * sizeof *prev), *queue = path;
    for (int s = 0; s < n; s++) prev[s] = -1;
    int head = 0, tail = 0;
    queue[tail++] = from;
    prev[from] = from;
    while (head < tail && prev[to] < 0) {
        int s = queue[head++];
        for (int i = 0; i < wf->nedges; i++) {
            const lf_edge *e = &wf->edges[i];
            /* Engine edges are the engine's own moves, never a fact's. */
            if (e->from != s || e->engine || prev[e->to] >= 0) continue;
            prev[e->to] = s;
            queue[tail++] = e->to;
        }
    }
    int len = 0;
    if (prev[to] >= 0) {
        for (int s = to; s != from; s = prev[s]) len++;
        len++;
        for (int s = to, i = len - 1; i >= 0; s = prev[s], i--) path[i] = s;
    }
    free(prev);
    return len;
}

/* ---- messages ------------------------------------------------------------ */

void lf_workflow_invalid_msg(const lf_workflow *wf, int from, const char *to,
                             lf_buf *out) {
    /* An unknown `from` cannot come from a stored record, but a message is
     * still better than a crash if one ever does. */
    const char *fname = valid_state(wf, from) ? wf->states[from] : "?";
    lf_buf_puts(out, "Invalid transition: ");
    lf_buf_puts(out, fname);
    lf_buf_puts(out, " \xe2\x86\x92 ");              /* U+2192 RIGHTWARDS ARROW */
    lf_buf_puts(out, to ? to : "?");
    lf_buf_puts(out, ". Allowed from ");
    lf_buf_puts(out, fname);
    lf_buf_puts(out, ": ");
    int k = 0;
    for (int i = 0; i < wf->nedges; i++) {
        if (wf->edges[i].from != from || wf->edges[i].engine) continue;
        if (k++) lf_buf_puts(out, ", ");
        lf_buf_puts(out, wf->states[wf->edges[i].to]);
    }
    /* LoopForge says "terminal" for any state with an empty list. */
    if (!k) lf_buf_puts(out, "none (terminal)");
}

/* ---- renderings ---------------------------------------------------------- */

/* DOT quoted ID: only '"' and '\' need a backslash. */
static void dot_id(lf_buf *out, const char *s) {
    lf_buf_putc(out, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') lf_buf_putc(out, '\\');
        lf_buf_putc(out, *s);
    }
    lf_buf_putc(out, '"');
}

void lf_workflow_dot(const lf_workflow *wf, lf_buf *out) {
    lf_buf_puts(out, "digraph ");
    dot_id(out, wf->name);
    lf_buf_puts(out, " {\n  rankdir=LR;\n  node [shape=circle];\n");
    if (valid_state(wf, wf->initial)) {
        /* The start dot must not share an ID with a real state. */
        lf_buf start = LF_BUF_INIT;
        lf_buf_puts(&start, "__start");
        while (lf_workflow_state(wf, lf_buf_str(&start)) >= 0) lf_buf_putc(&start, '_');
        lf_buf_puts(out, "  ");
        dot_id(out, lf_buf_str(&start));
        lf_buf_puts(out, " [shape=point, label=\"\"];\n  ");
        dot_id(out, lf_buf_str(&start));
        lf_buf_puts(out, " -> ");
        dot_id(out, wf->states[wf->initial]);
        lf_buf_puts(out, ";\n  ");
        dot_id(out, wf->states[wf->initial]);
        lf_buf_puts(out, " [style=bold];\n");
        lf_buf_free(&start);
    }
    /* Every state and edge has an id ("state-NAME", "edge-FROM-TO"), which
     * an SVG rendering keeps: the console marks a record's state and path
     * by them. */
    lf_buf id = LF_BUF_INIT;
    for (int s = 0; s < wf->nstates; s++) {
        lf_buf_reset(&id);
        lf_buf_printf(&id, "state-%s", wf->states[s]);
        lf_buf_puts(out, "  ");
        dot_id(out, wf->states[s]);
        lf_buf_puts(out, " [id=");
        dot_id(out, lf_buf_str(&id));
        lf_buf_puts(out, wf->terminal[s] ? ", shape=doublecircle];\n" : "];\n");
    }
    for (int i = 0; i < wf->nedges; i++) {
        const char *from = wf->states[wf->edges[i].from], *to = wf->states[wf->edges[i].to];
        lf_buf_reset(&id);
        lf_buf_printf(&id, "edge-%s-%s", from, to);
        lf_buf_puts(out, "  ");
        dot_id(out, from);
        lf_buf_puts(out, " -> ");
        dot_id(out, to);
        lf_buf_puts(out, " [id=");
        dot_id(out, lf_buf_str(&id));
        lf_buf_puts(out, wf->edges[i].engine ? ", style=dashed];\n" : "];\n");
    }
    lf_buf_free(&id);
    lf_buf_puts(out, "}\n");
}

/* Mermaid state IDs cannot be quoted, so a name is used as is only when
 * it is a plain identifier; anything else gets the alias lf__<id> and a
 * label. Names starting "lf__" are aliased too, so aliases never collide
 * with a real name. */
static bool mermaid_plain(const char *s) {
    if (strncmp(s, "lf__", 4) == 0) return false;
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static void mermaid_id(const lf_workflow *wf, int s, lf_buf *out) {
    if (mermaid_plain(wf->states[s])) lf_buf_puts(out, wf->states[s]);
    else lf_buf_printf(out, "lf__%d", s);
}

void lf_workflow_mermaid(const lf_workflow *wf, lf_buf *out) {
    lf_buf_puts(out, "stateDiagram-v2\n");
    for (int s = 0; s < wf->nstates; s++) {
        if (mermaid_plain(wf->states[s])) continue;
        lf_buf_puts(out, "    state \"");
        for (const char *p = wf->states[s]; *p; p++) {
            if (*p == '"') lf_buf_puts(out, "#quot;");
            else lf_buf_putc(out, *p);
        }
        lf_buf_printf(out, "\" as lf__%d\n", s);
    }
    if (valid_state(wf, wf->initial)) {
        lf_buf_puts(out, "    [*] --> ");
        mermaid_id(wf, wf->initial, out);
        lf_buf_putc(out, '\n');
    }
    for (int i = 0; i < wf->nedges; i++) {
        lf_buf_puts(out, "    ");
        mermaid_id(wf, wf->edges[i].from, out);
        lf_buf_puts(out, " --> ");
        mermaid_id(wf, wf->edges[i].to, out);
        /* the engine's own move (a retry's escalation, a review) */
        if (wf->edges[i].engine) lf_buf_puts(out, " : engine");
        lf_buf_putc(out, '\n');
    }
    /* Terminal states: an arrow to the end marker plus a class, so they
     * stand out both structurally and visually. */
    bool any = false;
    for (int s = 0; s < wf->nstates; s++) {
        if (!wf->terminal[s]) continue;
        lf_buf_puts(out, "    ");
        mermaid_id(wf, s, out);
        lf_buf_puts(out, " --> [*]\n");
        any = true;
    }
    if (any) {
        lf_buf_puts(out, "    classDef terminal stroke-width:3px,font-weight:bold\n");
        for (int s = 0; s < wf->nstates; s++) {
            if (!wf->terminal[s]) continue;
            lf_buf_puts(out, "    class ");
            mermaid_id(wf, s, out);
            lf_buf_puts(out, " terminal\n");
        }
    }
}
