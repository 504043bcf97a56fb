/* audit.c -- `loopforge audit`: the audit log as NDJSON; --verify, which
 * checks the whole log as an outsider would (core/verify.h); `audit
 * checkpoint`, which appends a signed checkpoint; `audit proof SEQ`, an
 * inclusion proof of one entry against the latest checkpoint.
 *
 * Everything that reads the whole log goes line by line (lf_cli_each_line): a
 * journal is read as a file, so verification needs no working store, no
 * policies and changes no byte (a torn tail is reported, not cut); other
 * stores are paged through lf_engine_audit. Memory stays bounded by a
 * page, except for a proof, which keeps 32 bytes per entry. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include "cli.h"
#include "../core/buf.h"
#include "../core/entry.h"
#include "../core/hash.h"
#include "../core/json.h"
#include "../core/mem.h"
#include "../core/merkle.h"
#include "../core/verify.h"

/* ---- --verify ------------------------------------------------------------ */

typedef struct verify_call {
    lf_verifier v;
    char err[600];          /* the first failure */
} verify_call;

static int verify_line(const char *line, size_t len, void *arg) {
    verify_call *vc = arg;
    return lf_verifier_feed(&vc->v, line, len, vc->err, sizeof vc->err);
}

static int verify_report(lf_cli *c, verify_call *vc, size_t torn, const char *keynote) {
    lf_verifier *v = &vc->v;
    if (vc->err[0]) {
        fprintf(stderr, "audit: verification failed: %s\n", vc->err);
        if (c->json) {
            printf("{\"ok\":false,\"verified\":%" PRIu64 ",\"error\":", v->chain.count);
            lf_cli_json_str(stdout, vc->err);
            puts("}");
        }
        return LF_EXIT_AUDIT;
    }
    if (torn)
        fprintf(stderr,
                "audit: a torn last line (%zu bytes, a write that never finished) is not "
                "part of the log; it was left as it is\n",
                torn);
    if (c->json) {
        printf("{\"ok\":true,\"verified\":%" PRIu64 ",\"checkpoints\":%" PRIu64,
               v->chain.count, v->checkpoints);
        if (v->checkpoints)
            printf(",\"last_signed_seq\":%" PRIu64 ",\"key_id\":\"%s\"", v->last_signed,
                   v->last_key);
        printf(",\"signatures_checked\":%s,\"torn_tail_bytes\":%zu}\n",
               v->key ? "true" : "false", torn);
        return LF_EXIT_OK;
    }
    printf("ok: %" PRIu64 " entries verified, %" PRIu64 " checkpoints", v->chain.count,
           v->checkpoints);
    if (v->checkpoints)
        printf(", last signed at seq %" PRIu64 " by key %s", v->last_signed, v->last_key);
    printf("\n%s", keynote);
    if (v->outside)
        printf("the log extends the outside checkpoint (%" PRIu64 " entries)\n",
               v->out.tree_size);
    return LF_EXIT_OK;
}

/* A key file (private or public PEM), or NULL with a usage error. */
static lf_key *read_key(lf_cli *c, const char *path, int *rc) {
    size_t len;
    char *pem = lf_read_file(path, &len), why[200];
    lf_key *k = NULL;
    if (!pem) snprintf(why, sizeof why, "%s", strerror(errno));
    else k = lf_key_parse(pem, len, why, sizeof why);
    free(pem);
    if (!k) {
        char msg[600];
        snprintf(msg, sizeof msg, "key %s: %s", path, why);
        *rc = lf_cli_fail(c, LF_INVALID_REQUEST, msg);
    }
    return k;
}

/* --checkpoint FILE: a standalone checkpoint (from `audit checkpoint`),
 * checked against the key (or the public key it carries, said so). */
static int outside_checkpoint(const char *path, lf_key **key, verify_call *vc,
                              const char **keynote) {
    size_t len;
    char *doc = lf_read_file(path, &len), why[200] = "";
    lf_checkpoint cp;
    int rc = 0;
    const char *inner = NULL;
    size_t ilen = 0;
    if (!doc) snprintf(why, sizeof why, "%s", strerror(errno));
    else if (!lf_json_get(doc, len, "checkpoint", &inner, &ilen) ||
             lf_checkpoint_parse(inner, ilen, &cp, why, sizeof why))
        snprintf(why, sizeof why,
                 "not a checkpoint document (loopforge audit checkpoint)");
    if (!why[0] && !*key) {
        const char *v;
        size_t vlen;
        lf_buf pem = LF_BUF_INIT;
        if (lf_json_get(doc, len, "public_key", &v, &vlen) &&
            lf_json_string(v, vlen, &pem))
            *key = lf_key_parse(pem.p, pem.len, why, sizeof why);
        else snprintf(why, sizeof why, "it carries no public key: pass --key");
        lf_buf_free(&pem);
        *keynote =
            "signatures checked with the public key the outside checkpoint carries "
            "(pass --key to pin it)\n";
    }
    if (!why[0] && !lf_checkpoint_verify(&cp, *key))
        snprintf(why, sizeof why, "its signature does not verify under key %s",
                 cp.key_id);
    if (why[0]) {
        snprintf(vc->err, sizeof vc->err, "outside checkpoint %s: %s", path, why);
        rc = -1;
    } else {
        lf_verifier_outside(&vc->v, &cp);
    }
    free(doc);
    return rc;
}

static int run_verify(lf_cli *c) {
    const char *kpath = lf_args_get(&c->args, "key");
    const char *cpath = lf_args_get(&c->args, "checkpoint");
    const char *keynote = "signatures not checked: pass --key PUBLIC_KEY\n";
    lf_key *key = NULL;
    int rc = 0;
    if (kpath && !(key = read_key(c, kpath, &rc))) return rc;
    if (key) keynote = "";
    verify_call vc;
    memset(&vc, 0, sizeof vc);
    size_t torn = 0;
    if (cpath && outside_checkpoint(cpath, &key, &vc, &keynote) != 0) {
        rc = verify_report(c, &vc, 0, "");
        lf_key_free(key);
        return rc;
    }
    lf_checkpoint out = vc.v.out;
    bool outside = vc.v.outside;
    lf_verifier_init(&vc.v, key);
    if (outside) lf_verifier_outside(&vc.v, &out);
    rc = lf_cli_each_line(c, verify_line, &vc, &torn);
    if (!rc && !vc.err[0]) lf_verifier_end(&vc.v, vc.err, sizeof vc.err);
    if (!rc) rc = verify_report(c, &vc, torn, keynote);
    lf_verifier_free(&vc.v);
    lf_key_free(key);
    return rc;
}

/* ---- checkpoint ------------------------------------------------------------ */

static int run_checkpoint(lf_cli *c) {
    int rc;
    c->writes = true;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    lf_text_call t = {0};
    lf_engine_checkpoint(e, c->actor[0] ? c->actor : "cli", lf_cli_text_cb, &t);
    return lf_cli_text_finish(c, &t);
}

/* ---- proof ------------------------------------------------------------------ */

typedef struct proof_call {
    uint64_t seq;               /* the entry to prove */
    unsigned char (*leaves)[32];
    uint64_t n, cap;
    char *line;                 /* the entry's line */
    char *cp;                   /* the last checkpoint's metadata */
    uint64_t cp_seq;
    char err[300];
} proof_call;

static int proof_line(const char *line, size_t len, void *arg) {
    proof_call *p = arg;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 1024;
        p->leaves = lf_xrealloc(p->leaves, p->cap * sizeof *p->leaves);
    }
    if (lf_merkle_entry_leaf(line, len, p->leaves[p->n]) == 0) p->n++;
    if (p->n == p->seq) p->line = lf_xstrndup(line, len);
    lf_entry_doc d;
    char why[160];
    if (lf_entry_parse(line, len, &d, why, sizeof why) == 0) {
        if (d.e.kind == LF_ENTRY_CHECKPOINT && d.e.version >= p->seq) {
            free(p->cp);
            p->cp = lf_xstrdup(d.e.metadata);
            p->cp_seq = d.e.seq;
        }
        lf_entry_doc_free(&d);
    }
    return 0;
}

static int run_proof(lf_cli *c, const char *seqs) {
    proof_call p = {0};
    if (!seqs || lf_cli_parse_u64(seqs, 1, UINT64_MAX, &p.seq) != 0)
        return lf_cli_usage(c, "audit proof takes the seq of an entry, got '%s'",
                            seqs ? seqs : "");
    size_t torn;
    int rc = lf_cli_each_line(c, proof_line, &p, &torn);
    lf_checkpoint cp;
    char why[200];
    if (!rc && !p.line) {
        snprintf(p.err, sizeof p.err, "the log has no entry %" PRIu64, p.seq);
        rc = lf_cli_fail(c, LF_NOT_FOUND, p.err);
    } else if (!rc &&
               (!p.cp || lf_checkpoint_parse(p.cp, strlen(p.cp), &cp, why, sizeof why))) {
        snprintf(p.err, sizeof p.err,
                 "no checkpoint covers entry %" PRIu64 " yet: write one with `loopforge "
                 "audit checkpoint`",
                 p.seq);
        rc = lf_cli_fail(c, LF_NOT_FOUND, p.err);
    }
    if (!rc) {
        lf_buf path = LF_BUF_INIT, b = LF_BUF_INIT;
        int k = lf_merkle_inclusion((const unsigned char(*)[32])p.leaves, cp.tree_size,
                                    p.seq - 1, &path);
        char hex[65];
        lf_jw o = lf_jw_open(&b, '{');
        lf_jw_int(&o, "seq", (int64_t)p.seq);
        lf_jw_int(&o, "leaf_index", (int64_t)(p.seq - 1));
        lf_jw_int(&o, "tree_size", (int64_t)cp.tree_size);
        lf_hex(p.leaves[p.seq - 1], 32, hex);
        lf_jw_str(&o, "leaf_hash", hex);
        lf_jw_str(&o, "entry", p.line);
        lf_jw_key(&o, "path");
        lf_jw list = lf_jw_open(&b, '[');
        for (int i = 0; i < k; i++) {
            lf_jw_next(&list);
            lf_hex(path.p + 32 * i, 32, hex);
            lf_buf_json_str(&b, hex);
        }
        lf_jw_close(&list, ']');
        lf_jw_str(&o, "root", cp.root);
        lf_jw_int(&o, "checkpoint_seq", (int64_t)p.cp_seq);
        lf_jw_raw(&o, "checkpoint", p.cp, NULL);
        lf_jw_close(&o, '}');
        puts(b.p);
        lf_buf_free(&path);
        lf_buf_free(&b);
    }
    free(p.leaves);
    free(p.line);
    free(p.cp);
    return rc;
}

/* ---- --overrides ------------------------------------------------------------- */

/* Entries whose authority carries a break-glass override, as they are. */
static int override_line(const char *line, size_t len, void *arg) {
    const char *a, *o;
    size_t an, on;
    (void)arg;
    if ((lf_json_get(line, len, "authority", &a, &an) && *a == '{' &&
         lf_json_get(a, an, "override", &o, &on)) ||
        (lf_json_get(line, len, "trigger", &o, &on) && on == 23 &&
         memcmp(o, "\"override.acknowledged\"", 23) == 0))
        printf("%.*s\n", (int)len, line);
    return 0;
}

/* ---- the command ------------------------------------------------------------ */

static int run_audit(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 2, "");
    if (rc) return rc;
    const char *first = c->args.npos ? c->args.pos[0] : NULL;
    bool verify = lf_args_has(&c->args, "verify");
    const char *after = lf_args_get(&c->args, "after");
    if (first && strcmp(first, "checkpoint") == 0 && c->args.npos == 1)
        return run_checkpoint(c);
    if (first && strcmp(first, "proof") == 0)
        return run_proof(c, c->args.npos > 1 ? c->args.pos[1] : NULL);
    if (c->args.npos > 1)
        return lf_cli_usage(c, "unexpected argument '%s'", c->args.pos[1]);
    if ((lf_args_get(&c->args, "key") || lf_args_get(&c->args, "checkpoint")) && !verify)
        return lf_cli_usage(c, "--key and --checkpoint go with --verify");
    if (verify && (first || after))
        return lf_cli_usage(c,
                            "--verify checks the whole log: it takes no ID or --after");
    if (verify) return run_verify(c);
    if (lf_args_has(&c->args, "overrides")) {
        if (first || after) return lf_cli_usage(c, "--overrides reads the whole log");
        size_t torn;
        return lf_cli_each_line(c, override_line, NULL, &torn);
    }
    uint64_t from = 0;
    if (after && lf_cli_parse_u64(after, 0, UINT64_MAX, &from) != 0)
        return lf_cli_usage(c, "--after must be a sequence number, got '%s'", after);
    return lf_cli_print_log(c, first, from);
}

static const lf_optspec audit_opts[] = {{"after", true},      {"verify", false},
                                        {"key", true},        {"checkpoint", true},
                                        {"overrides", false}, {NULL, false}};

const lf_command lf_cmd_audit = {
    "audit",
    "print, verify, checkpoint or prove the audit log",
    "Usage: loopforge audit [ID] [--after SEQ]\n"
    "       loopforge audit --overrides\n"
    "       loopforge audit --verify [--key PUBLIC_KEY] [--checkpoint FILE]\n"
    "       loopforge audit checkpoint      (with --signing-key)\n"
    "       loopforge audit proof SEQ\n\n"
    "Prints audit entries as NDJSON in sequence order: every entry, or\n"
    "those of record ID; --after SEQ starts after that sequence number.\n"
    "--overrides prints only the entries that carry a break-glass override, and\n"
    "their acknowledgements.\n\n"
    "--verify reads the whole log (a journal as a file: nothing is opened for\n"
    "writing, no policy set is needed, a torn last line is reported and left\n"
    "alone) and checks every entry's hash and its link to the one before,\n"
    "every checkpoint's Merkle root (and, with --key, its signature and key),\n"
    "and that every entry's policy set was announced. --checkpoint FILE also\n"
    "checks that the log still extends a checkpoint kept elsewhere. It prints\n"
    "\"ok: N entries verified, M checkpoints, last signed at seq S by key K\",\n"
    "or names the first bad entry and exits 8.\n\n"
    "checkpoint appends a signed checkpoint of the whole log and prints it as\n"
    "a standalone JSON document to keep elsewhere (docs/audit.md).\n\n"
    "proof SEQ prints the inclusion proof of entry SEQ (RFC 6962) against the\n"
    "latest checkpoint that covers it.\n",
    audit_opts,
    run_audit,
    true};
