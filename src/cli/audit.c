/* audit.c -- `loopforge audit`: the audit log as NDJSON, and --verify,
 * which walks the whole hash chain.
 *
 * Both page through lf_engine_audit, so memory stays bounded by one page
 * however long the log is. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include "cli.h"
#include "../core/entry.h"

#define PAGE 1000

typedef struct audit_call {
    lf_cli *c;
    bool done;              /* this page answered */
    bool end;               /* no more pages */
    int rc;
    uint64_t after;         /* seq of the last line seen */
    bool verify;
    lf_chain chain;
    char err[512];          /* the first verification failure */
} audit_call;

static void on_page(lf_code code, const char *error, const char *const *lines,
                    const size_t *lens, size_t n, uint64_t last_seq, void *arg) {
    audit_call *a = arg;
    a->done = true;
    if (code != LF_OK) {
        a->rc = lf_cli_fail(a->c, code, error ? error : lf_code_name(code));
        a->end = true;
        return;
    }
    if (n == 0) {
        a->end = true;
        return;
    }
    if (last_seq <= a->after) {
        /* Paging on would loop forever on the same page. */
        a->rc = lf_cli_fail(a->c, LF_UNAVAILABLE,
                            "audit: the store returned "
                            "a page that does not advance");
        a->end = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!a->verify) {
            fwrite(lines[i], 1, lens[i], stdout);
            fputc('\n', stdout);
        } else if (lf_chain_feed(&a->chain, lines[i], lens[i], a->err, sizeof(a->err)) !=
                   0) {
            a->end = true;      /* the first break is the one to report */
            return;
        }
    }
    a->after = last_seq;
}

/* Runs pages until the end, an error or a broken chain. */
static int page_through(lf_cli *c, lf_engine *e, const char *id, audit_call *a) {
    while (!a->end) {
        a->done = false;
        lf_engine_audit(e, id, a->after, PAGE, on_page, a);
        int rc = lf_cli_wait(c, &a->done);
        if (rc) return rc;
    }
    return a->rc;
}

static int report_verify(lf_cli *c, audit_call *a) {
    if (a->err[0]) {
        fprintf(stderr, "audit: verification failed: %s\n", a->err);
        if (c->json) {
            printf("{\"ok\":false,\"verified\":%" PRIu64 ",\"error\":", a->chain.count);
            lf_cli_json_str(stdout, a->err);
            puts("}");
        }
        return LF_EXIT_AUDIT;
    }
    if (c->json) printf("{\"ok\":true,\"verified\":%" PRIu64 "}\n", a->chain.count);
    else printf("ok: %" PRIu64 " entries verified\n", a->chain.count);
    return LF_EXIT_OK;
}

/* The journal path --verify would open, or NULL for another kind of
 * store; resolved by the engine, as lf_engine_new does. */
static const char *journal_path(const lf_cli *c) {
    lf_engine_config cfg = {.store = c->store};
    const char *url = lf_engine_store_url(&cfg);
    if (strncmp(url, "file:", 5) != 0 || !url[5]) return NULL;
    url += 5;
    return strncmp(url, "//", 2) == 0 ? url + 2 : url;
}

/* The journal refuses to open when its entries no longer fold into
 * records -- exactly what deleting, inserting or reordering a line
 * does -- so the engine cannot page through it. Verification must still
 * name the first bad entry, and it only needs the bytes: read the file
 * line by line (memory bounded by the longest line) and feed the same
 * chain check. Returns -1 if the file cannot be read. */
static int verify_file(const char *path, audit_call *a) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        size_t len = (size_t)n;
        if (line[len - 1] == '\n') len--;
        if (lf_chain_feed(&a->chain, line, len, a->err, sizeof(a->err)) != 0) break;
    }
    free(line);
    fclose(f);
    return 0;
}

static int run_verify(lf_cli *c, audit_call *a) {
    char err[512];
    lf_code code;
    lf_engine *e = lf_cli_open(c, &code, err, sizeof(err));
    if (!e) {
        const char *path = journal_path(c);
        if (code == LF_UNAVAILABLE && path && verify_file(path, a) == 0 && a->err[0]) {
            fprintf(stderr, "%s\n", err);     /* why the store did not open */
            return report_verify(c, a);
        }
        return lf_cli_fail(c, code, err);
    }
    int rc = page_through(c, e, NULL, a);
    return rc ? rc : report_verify(c, a);
}

static int run_audit(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 1, "");
    if (rc) return rc;
    audit_call a = {.c = c, .verify = lf_args_has(&c->args, "verify")};
    const char *id = c->args.npos ? c->args.pos[0] : NULL;
    const char *after = lf_args_get(&c->args, "after");
    if (a.verify && (id || after))
        return lf_cli_usage(c,
                            "--verify checks the whole log: it takes no ID or --after");
    if (after && lf_cli_parse_u64(after, 0, UINT64_MAX, &a.after) != 0)
        return lf_cli_usage(c, "--after must be a sequence number, got '%s'", after);
    lf_chain_init(&a.chain);
    if (a.verify) return run_verify(c, &a);
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    return page_through(c, e, id, &a);
}

static const lf_optspec audit_opts[] = {
    {"after", true}, {"verify", false}, {NULL, false}};

const lf_command lf_cmd_audit = {
    "audit", "print or verify the hash-chained audit log",
    "Usage: loopforge audit [ID] [--after SEQ]\n"
    "       loopforge audit --verify\n\n"
    "Prints audit entries as NDJSON in sequence order: every entry, or\n"
    "those of record ID; --after SEQ starts after that sequence number.\n\n"
    "--verify walks the whole log and checks every entry's hash and its link\n"
    "to the one before: it prints \"ok: N entries verified\", or names the\n"
    "first entry that was modified, deleted, inserted or reordered and\n"
    "exits 8.\n",
    audit_opts, run_audit, true};
