/* evidence.c -- `loopforge keygen`, an Ed25519 key pair for signing the
 * audit log (core/sign.h), written as PEM files (the private key readable
 * by its owner only, created, never overwritten); and `loopforge attest
 * ID`, the signed attestations of a record's merges (docs/audit.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "../core/buf.h"
#include <cjson/cJSON.h>
#include "../core/clock.h"
#include "../core/hash.h"
#include "../core/json.h"
#include "../core/mem.h"
#include "../core/merkle.h"
#include "../core/verify.h"
#include "../core/entry.h"
#include "../core/sign.h"

/* Writes text to a new file (O_EXCL) with mode; -1 with errno. */
static int write_new(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return -1;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            unlink(path);
            errno = e;
            return -1;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) return -1;
    return 0;
}

static int run_keygen(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 0, "");
    if (rc) return rc;
    const char *prefix = lf_args_get(&c->args, "out");
    if (!prefix) prefix = "loopforge-signing";
    if (!*prefix) return lf_cli_usage(c, "--out must not be empty");
    char *priv = NULL, *pub = NULL, err[256];
    if (lf_key_generate(&priv, &pub, err, sizeof err) != 0)
        return lf_cli_fail(c, LF_UNAVAILABLE, err);
    lf_buf kp = LF_BUF_INIT, pp = LF_BUF_INIT;
    lf_buf_printf(&kp, "%s.key", prefix);
    lf_buf_printf(&pp, "%s.pub", prefix);
    char msg[700];
    if (write_new(kp.p, priv, 0600) != 0) {
        snprintf(msg, sizeof msg, "%s: %s", kp.p, strerror(errno));
        rc = lf_cli_fail(c, errno == EEXIST ? LF_CONFLICT : LF_UNAVAILABLE, msg);
    } else if (write_new(pp.p, pub, 0644) != 0) {
        snprintf(msg, sizeof msg, "%s: %s", pp.p, strerror(errno));
        rc = lf_cli_fail(c, errno == EEXIST ? LF_CONFLICT : LF_UNAVAILABLE, msg);
        unlink(kp.p);
    } else {
        lf_key *k = lf_key_parse(pub, strlen(pub), err, sizeof err);
        char id[LF_KEY_ID_LEN + 1] = "";
        if (k) lf_key_id(k, id);
        lf_key_free(k);
        if (c->json)
            printf("{\"private_key\":\"%s\",\"public_key\":\"%s\",\"key_id\":\"%s\"}\n",
                   kp.p, pp.p, id);
        else
            printf("key %s\n  private: %s (keep it secret; --signing-key)\n  public:  %s "
                   "(for auditors: audit --verify --key)\n",
                   id, kp.p, pp.p);
    }
    lf_buf_free(&kp);
    lf_buf_free(&pp);
    free(priv);
    free(pub);
    return rc;
}

static const lf_optspec keygen_opts[] = {{"out", true}, {NULL, false}};

const lf_command lf_cmd_keygen = {
    "keygen",
    "make an Ed25519 key pair that signs the audit log",
    "Usage: loopforge keygen [--out PREFIX]\n\n"
    "Writes PREFIX.key (the private key, PEM, mode 0600) and PREFIX.pub (the\n"
    "public key, PEM) -- PREFIX is loopforge-signing by default -- and prints\n"
    "the key id. Existing files are never overwritten (exit 6). Give the\n"
    "private key to the writers (--signing-key, LOOPFORGE_SIGNING_KEY) and the\n"
    "public one to auditors (audit --verify --key).\n",
    keygen_opts,
    run_keygen,
    false};

/* ---- attest ---------------------------------------------------------------- */

static int run_attest(lf_cli *c) {
    int rc = lf_cli_npos(c, 1, 1, "ID");
    if (rc) return rc;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    lf_text_call a = {0};
    lf_engine_attestations(e, c->args.pos[0], lf_cli_text_cb, &a);
    return lf_cli_text_finish(c, &a);
}

const lf_command lf_cmd_attest = {
    "attest",
    "print the signed attestations of a record's merges",
    "Usage: loopforge attest ID      (with --signing-key)\n\n"
    "Prints {\"record_id\",\"attestations\":[...]}: for every merge of record ID\n"
    "an in-toto Statement v1 (subject: the merged commit, or the merge entry\n"
    "when no commit is known; predicate: the record, the merge entry, its\n"
    "policy set and the digest of every file in it, every decision and\n"
    "violation on the way, the approvals and the CI of the merged head, the\n"
    "first checkpoint that covers the merge) in a DSSE envelope signed with\n"
    "the log's key. Made from the log: asking again gives the same bytes.\n"
    "docs/audit.md says how to verify one without loopforge.\n",
    NULL,
    run_attest,
    true};

/* ---- evidence bundles --------------------------------------------------------- */

/* What a bundle is made of, gathered in one pass over the log. */
typedef struct gather {
    const char *record_id;          /* --record / --ref: its entries */
    const char *since, *until;      /* --since/--until: entries in [since, until) */
    unsigned char (*leaves)[32];    /* every entry's leaf hash */
    size_t n, cap;
    char **sel;                     /* the selected entries' lines */
    size_t nsel, capsel;
    char **ids;                     /* their records, once each */
    size_t nids;
    char **gens;                    /* their policy sets, once each */
    size_t ngens;
    char **ann;                     /* every policy_loaded line */
    size_t nann;
    char *cp;                       /* the latest checkpoint's metadata */
    uint64_t cp_seq, cp_size;
} gather;

static void add_once(char ***list, size_t *n, const char *s) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*list)[i], s) == 0) return;
    *list = lf_xrealloc(*list, (*n + 1) * sizeof **list);
    (*list)[(*n)++] = lf_xstrdup(s);
}

static int gather_line(const char *line, size_t len, void *arg) {
    gather *g = arg;
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 1024;
        g->leaves = lf_xrealloc(g->leaves, g->cap * sizeof *g->leaves);
    }
    if (lf_merkle_entry_leaf(line, len, g->leaves[g->n]) == 0) g->n++;
    lf_entry_doc d;
    char why[160];
    if (lf_entry_parse(line, len, &d, why, sizeof why)) return 0;
    const lf_entry *e = &d.e;
    if (e->kind == LF_ENTRY_CHECKPOINT) {
        free(g->cp);
        g->cp = lf_xstrdup(e->metadata);
        g->cp_seq = e->seq;
        g->cp_size = e->version;
    } else if (e->kind == LF_ENTRY_POLICY_LOADED) {
        g->ann = lf_xrealloc(g->ann, (g->nann + 1) * sizeof *g->ann);
        g->ann[g->nann++] = lf_xstrndup(line, len);
    }
    bool pick = e->record_id && (g->record_id ? strcmp(e->record_id, g->record_id) == 0
                                              : strcmp(e->timestamp, g->since) >= 0 &&
                                                    strcmp(e->timestamp, g->until) < 0);
    if (pick) {
        if (g->nsel == g->capsel) {
            g->capsel = g->capsel ? 2 * g->capsel : 64;
            g->sel = lf_xrealloc(g->sel, g->capsel * sizeof *g->sel);
        }
        g->sel[g->nsel++] = lf_xstrndup(line, len);
        add_once(&g->ids, &g->nids, e->record_id);
        if (e->policy_set) add_once(&g->gens, &g->ngens, e->policy_set);
    }
    lf_entry_doc_free(&d);
    return 0;
}

static void gather_free(gather *g) {
    char **lists[] = {g->sel, g->ids, g->gens, g->ann};
    size_t ns[] = {g->nsel, g->nids, g->ngens, g->nann};
    for (int l = 0; l < 4; l++) {
        for (size_t i = 0; i < ns[l]; i++) free(lists[l][i]);
        free(lists[l]);
    }
    free(g->leaves);
    free(g->cp);
}

/* The merge entry's hash an attestation (a DSSE envelope) states in its
 * statement, or NULL; the caller frees it. Its signature is another
 * matter (envelope_wrong). */
static char *attested_merge(const cJSON *env) {
    const cJSON *p64 = cJSON_GetObjectItemCaseSensitive(env, "payload");
    size_t plen;
    unsigned char *payload = cJSON_IsString(p64) ? lf_unbase64(p64->valuestring, &plen) : NULL;
    cJSON *st = payload ? cJSON_ParseWithLength((const char *)payload, plen) : NULL;
    const cJSON *merge = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(st, "predicate"), "merge");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(merge, "hash");
    char *out = cJSON_IsString(h) ? lf_xstrdup(h->valuestring) : NULL;
    cJSON_Delete(st);
    free(payload);
    return out;
}

/* Whether an attestation is of a merge entry among the n whose hashes
 * are given: a genuine attestation of another record says nothing of
 * these. */
static bool attests_one_of(const cJSON *env, char (*hashes)[LF_HASH_LEN + 1], size_t n) {
    char *merged = attested_merge(env);
    bool found = false;
    for (size_t i = 0; merged && i < n && !found; i++) found = strcmp(hashes[i], merged) == 0;
    free(merged);
    return found;
}

/* The seq a log line states, or 0. */
static int64_t line_seq(const char *line) {
    const char *v;
    size_t vl;
    int64_t seq = 0;
    if (lf_json_get(line, strlen(line), "seq", &v, &vl) && lf_json_int(v, vl, &seq)) seq = 0;
    return seq;
}

/* A line's inclusion proof against the latest checkpoint
 * ({leaf_index, tree_size, path}), or null for a line after it. */
static void proof_of(const gather *g, const char *line, lf_buf *b) {
    int64_t seq = line_seq(line);
    if (!g->cp || seq < 1 || (uint64_t)seq > g->cp_size) {
        lf_buf_puts(b, "null");
        return;
    }
    lf_buf path = LF_BUF_INIT;
    int k = lf_merkle_inclusion((const unsigned char(*)[32])g->leaves, g->cp_size,
                                (uint64_t)seq - 1, &path);
    lf_jw p = lf_jw_open(b, '{');
    lf_jw_int(&p, "leaf_index", seq - 1);
    lf_jw_int(&p, "tree_size", (int64_t)g->cp_size);
    lf_jw_key(&p, "path");
    lf_jw hs = lf_jw_open(b, '[');
    for (int h = 0; h < k; h++) {
        char hex[65];
        lf_hex(path.p + 32 * h, 32, hex);
        lf_jw_next(&hs);
        lf_buf_json_str(b, hex);
    }
    lf_jw_close(&hs, ']');
    lf_jw_close(&p, '}');
    lf_buf_free(&path);
}

/* The files of policy set gen as its announcement lists them, each with
 * its content when the file on disk still has the announced digest; the
 * announcement with its proof, which is what makes the digests the log's. */
static void policy_files(const gather *g, const char *gen, lf_buf *b) {
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_str(&o, "generation", gen);
    const char *ann = NULL;
    for (size_t i = 0; i < g->nann && !ann; i++) {
        lf_entry_doc d;
        char why[160];
        if (lf_entry_parse(g->ann[i], strlen(g->ann[i]), &d, why, sizeof why)) continue;
        if (d.e.policy_set && strcmp(d.e.policy_set, gen) == 0) ann = g->ann[i];
        lf_entry_doc_free(&d);
    }
    lf_jw_str(&o, "announcement", ann);
    lf_jw_key(&o, "announcement_proof");
    if (ann) proof_of(g, ann, b);
    else lf_buf_puts(b, "null");
    lf_jw_key(&o, "files");
    lf_jw list = lf_jw_open(b, '[');
    cJSON *a = ann ? cJSON_Parse(ann) : NULL, *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(a, "metadata"), "files")) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
        const cJSON *sum = cJSON_GetObjectItemCaseSensitive(f, "sha256");
        if (!cJSON_IsString(path) || !cJSON_IsString(sum)) continue;
        size_t len;
        char *text = lf_read_file(path->valuestring, &len), hex[65] = "";
        if (text) lf_sha256_hex(text, len, hex);
        bool same = text && strcmp(hex, sum->valuestring) == 0 && strlen(text) == len;
        lf_jw_next(&list);
        lf_jw one = lf_jw_open(b, '{');
        lf_jw_str(&one, "path", path->valuestring);
        lf_jw_str(&one, "sha256", sum->valuestring);
        lf_jw_str(&one, "content", same ? text : NULL);
        lf_jw_close(&one, '}');
        free(text);
    }
    cJSON_Delete(a);
    lf_jw_close(&list, ']');
    lf_jw_close(&o, '}');
}

/* The bundle: the public key, the latest checkpoint, the entries with
 * their inclusion proofs, the attestations, the policy files. */
static void bundle(lf_cli *c, lf_engine *e, const gather *g, lf_buf *b) {
    lf_jw o = lf_jw_open(b, '{');
    lf_jw_str(&o, "format", "loopforge-evidence-v1");
    lf_jw_str(&o, "record_id", g->record_id);
    lf_jw_str(&o, "since", g->record_id ? NULL : g->since);
    lf_jw_str(&o, "until", g->record_id ? NULL : g->until);
    lf_jw_key(&o, "checkpoint");
    if (g->cp) {
        lf_jw cp = lf_jw_open(b, '{');
        lf_jw_int(&cp, "seq", (int64_t)g->cp_seq);
        lf_jw_raw(&cp, "checkpoint", g->cp, NULL);
        lf_jw_close(&cp, '}');
    } else {
        lf_buf_puts(b, "null");
    }
    lf_jw_key(&o, "entries");
    lf_jw list = lf_jw_open(b, '[');
    for (size_t i = 0; i < g->nsel; i++) {
        lf_jw_next(&list);
        lf_jw one = lf_jw_open(b, '{');
        lf_jw_str(&one, "line", g->sel[i]);
        lf_jw_key(&one, "proof");
        proof_of(g, g->sel[i], b);
        lf_jw_close(&one, '}');
    }
    lf_jw_close(&list, ']');
    /* the attestations of the merges among the entries (a record's merge
     * may be outside a time range) */
    char(*mine)[LF_HASH_LEN + 1] = lf_xcalloc(g->nsel + 1, sizeof *mine);
    for (size_t i = 0; i < g->nsel; i++) lf_entry_self_hash(g->sel[i], strlen(g->sel[i]), mine[i]);
    lf_jw_key(&o, "attestations");
    lf_jw atts = lf_jw_open(b, '[');
    for (size_t i = 0; e && lf_engine_can_sign(e) && i < g->nids; i++) {
        lf_text_call a = {0};
        lf_engine_attestations(e, g->ids[i], lf_cli_text_cb, &a);
        if (lf_cli_wait(c, &a.done) == 0 && a.code == LF_OK) {
            const char *v;
            size_t vl;
            lf_json_iter it;
            if (lf_json_get(a.text, strlen(a.text), "attestations", &v, &vl) &&
                lf_json_array(&it, v, vl)) {
                const char *el;
                size_t el_len;
                while (lf_json_next(&it, &el, &el_len)) {
                    cJSON *env = cJSON_ParseWithLength(el, el_len);
                    bool ours = attests_one_of(env, mine, g->nsel);
                    cJSON_Delete(env);
                    if (!ours) continue;
                    lf_jw_next(&atts);
                    lf_buf_add(b, el, el_len);
                }
            }
        }
        free(a.text);
        free(a.error);
    }
    lf_jw_close(&atts, ']');
    free(mine);
    lf_jw_key(&o, "policies");
    lf_jw pols = lf_jw_open(b, '[');
    for (size_t i = 0; i < g->ngens; i++) {
        lf_jw_next(&pols);
        policy_files(g, g->gens[i], b);
    }
    lf_jw_close(&pols, ']');
    char *pem = e && lf_engine_can_sign(e) ? lf_engine_public_key(e) : NULL;
    lf_jw_str(&o, "public_key", pem);
    free(pem);
    lf_jw_close(&o, '}');
}

/* ---- evidence verify ----------------------------------------------------------- */

/* One failure, reported; returns LF_EXIT_AUDIT. */
static int bad(lf_cli *c, const char *fmt, const char *what) {
    char msg[600];
    snprintf(msg, sizeof msg, fmt, what);
    fprintf(stderr, "evidence: verification failed: %s\n", msg);
    if (c->json) {
        printf("{\"ok\":false,\"error\":");
        lf_cli_json_str(stdout, msg);
        puts("}");
    }
    return LF_EXIT_AUDIT;
}

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A line of the log and its inclusion proof against the checkpoint's
 * root: its own hash (into hash), then the proof; *covered false for a
 * line given without one, which its seq must then put after the
 * checkpoint (only its own hash is checked): a line the checkpoint covers
 * without its proof would be one the bundle's word alone vouches for. */
static bool line_proven(const char *line, const cJSON *proof, const lf_checkpoint *cp,
                        const unsigned char *root, bool *covered,
                        char hash[LF_HASH_LEN + 1]) {
    unsigned char leaf[32];
    *covered = cJSON_IsObject(proof);
    if (!line || lf_entry_self_hash(line, strlen(line), hash) || lf_unhex(hash, leaf, 32))
        return false;
    int64_t seq = line_seq(line);
    if (!*covered) return seq > 0 && (uint64_t)seq > cp->tree_size;
    const cJSON *idx = cJSON_GetObjectItemCaseSensitive(proof, "leaf_index");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(proof, "tree_size");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(proof, "path"), *h;
    int64_t at, of;
    if (!cJSON_IsArray(path) || lf_json_number_int(idx, &at) || lf_json_number_int(size, &of) ||
        at < 0 || of < 0 || (uint64_t)of != cp->tree_size)
        return false;
    int k = cJSON_GetArraySize(path), i = 0;
    unsigned char *bytes = lf_xmalloc((size_t)k * 32 + 1);
    bool ok = true;
    cJSON_ArrayForEach(h, path) ok &=
        cJSON_IsString(h) && lf_unhex(h->valuestring, bytes + 32 * i++, 32) == 0;
    ok = ok && lf_merkle_verify_inclusion(leaf, (uint64_t)at, cp->tree_size,
                                          bytes, k, root);
    free(bytes);
    return ok;
}

/* The files policy set gen's announcement lists (the caller proves the
 * line), or NULL when ann is not gen's announcement; *doc holds them
 * (the caller deletes it). */
static const cJSON *announced_files(const char *ann, const char *gen, cJSON **doc) {
    *doc = ann ? cJSON_Parse(ann) : NULL;
    const char *kind = str_of(*doc, "kind"), *set = str_of(*doc, "policy_set");
    if (!kind || strcmp(kind, "policy_loaded") != 0 || !set || !gen || strcmp(set, gen) != 0)
        return NULL;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(*doc, "metadata"), "files");
    return cJSON_IsArray(files) ? files : NULL;
}

/* Whether files (an announcement's) lists path with digest sum. */
static bool listed(const cJSON *files, const char *path, const char *sum) {
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
        const char *p = str_of(f, "path"), *d = str_of(f, "sha256");
        if (p && d && path && sum && strcmp(p, path) == 0 && strcmp(d, sum) == 0) return true;
    }
    return false;
}

/* Why a DSSE envelope is not an attestation of the bundle, or NULL: it
 * must be signed by key, and of a merge entry the bundle holds (one of
 * the n hashes). */
static const char *envelope_wrong(const cJSON *env, const lf_key *key,
                                  char (*hashes)[LF_HASH_LEN + 1], size_t n) {
    const char *type = str_of(env, "payloadType"), *p64 = str_of(env, "payload");
    const cJSON *sig =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(env, "signatures"), 0);
    const char *s64 = str_of(sig, "sig");
    size_t plen, slen;
    unsigned char *payload = p64 ? lf_unbase64(p64, &plen) : NULL;
    unsigned char *s = s64 ? lf_unbase64(s64, &slen) : NULL;
    bool ok = false;
    if (type && payload && s) {
        lf_buf pae = LF_BUF_INIT;
        lf_buf_printf(&pae, "DSSEv1 %zu %s %zu ", strlen(type), type, plen);
        lf_buf_add(&pae, (const char *)payload, plen);
        ok = lf_key_verify(key, pae.p, pae.len, s, slen);
        lf_buf_free(&pae);
    }
    free(payload);
    free(s);
    if (!ok) return "an attestation's signature does not verify";
    return attests_one_of(env, hashes, n) ? NULL
                                          : "an attestation is not of a merge entry of the bundle";
}

static int run_evidence_verify(lf_cli *c, const char *path) {
    size_t len;
    char *text = path ? lf_read_file(path, &len) : NULL, why[200];
    if (!text) return lf_cli_usage(c, "evidence verify takes a bundle file");
    cJSON *b = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = LF_EXIT_OK;
    lf_key *key = NULL;
    const char *kpath = lf_args_get(&c->args, "key"), *pem = str_of(b, "public_key");
    lf_checkpoint cp;
    unsigned char root[32];
    char *cptext = NULL;
    size_t proven = 0, later = 0, atts = 0, files_ok = 0, later_sets = 0, nhashes = 0;
    char(*hashes)[LF_HASH_LEN + 1] = NULL;     /* the entries' own, for the attestations */
    if (!cJSON_IsObject(b) || !str_of(b, "format") ||
        strcmp(str_of(b, "format"), "loopforge-evidence-v1") != 0) {
        rc = bad(c, "%s is not a loopforge evidence bundle", path);
        goto out;
    }
    if (!kpath) {
        /* The key a bundle carries proves only that whoever made it had
         * the private half: a forger brings a key of their own. The
         * trust is in the key the auditor has from us. */
        lf_key *own = pem ? lf_key_parse(pem, strlen(pem), why, sizeof why) : NULL;
        char id[LF_KEY_ID_LEN + 1] = "";
        if (own) lf_key_id(own, id);
        lf_key_free(own);
        cJSON_Delete(b);
        return lf_cli_usage(c,
                            "evidence verify needs --key PUBLIC_KEY, the key you have from "
                            "the log's owner (the bundle's own key%s%s proves nothing: "
                            "anyone can sign with a key of their own)",
                            *id ? " " : "", id);
    }
    char *k = lf_read_file(kpath, &len);
    if (!k) snprintf(why, sizeof why, "cannot read %s", kpath);
    key = k ? lf_key_parse(k, len, why, sizeof why) : NULL;
    free(k);
    if (!key) {
        rc = bad(c, "no usable public key in --key: %s", why);
        goto out;
    }
    const cJSON *cpo = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(b, "checkpoint"), "checkpoint");
    cptext = cpo ? cJSON_PrintUnformatted(cpo) : NULL;
    if (!cptext || lf_checkpoint_parse(cptext, strlen(cptext), &cp, why, sizeof why) ||
        lf_unhex(cp.root, root, 32)) {
        rc = bad(c, "%s", "the bundle has no checkpoint to prove its entries against");
        goto out;
    }
    if (!lf_checkpoint_verify(&cp, key)) {
        rc = bad(c, "the checkpoint's signature does not verify under key %s", cp.key_id);
        goto out;
    }
    const cJSON *ent, *entries = cJSON_GetObjectItemCaseSensitive(b, "entries");
    hashes = lf_xcalloc((size_t)cJSON_GetArraySize(entries) + 1, sizeof *hashes);
    cJSON_ArrayForEach(ent, entries) {
        bool covered;
        if (!line_proven(str_of(ent, "line"), cJSON_GetObjectItemCaseSensitive(ent, "proof"),
                         &cp, root, &covered, hashes[nhashes++])) {
            rc = bad(c,
                     "entry %s is not the one the checkpoint covers (modified, or its "
                     "proof is wrong)",
                     str_of(ent, "line") ? str_of(ent, "line") : "?");
            goto out;
        }
        if (covered) proven++;
        else later++;
    }
    const cJSON *env;
    cJSON_ArrayForEach(env, cJSON_GetObjectItemCaseSensitive(b, "attestations")) {
        const char *wrong = envelope_wrong(env, key, hashes, nhashes);
        if (wrong) {
            rc = bad(c, "%s", wrong);
            goto out;
        }
        atts++;
    }
    /* A file's digest is the log's when the announcement that lists it is
     * a line the checkpoint covers: the bundle's word alone proves nothing. */
    const cJSON *pol, *f;
    cJSON_ArrayForEach(pol, cJSON_GetObjectItemCaseSensitive(b, "policies")) {
        const char *gen = str_of(pol, "generation"), *ann = str_of(pol, "announcement");
        cJSON *doc;
        bool covered;
        const cJSON *files = announced_files(ann, gen, &doc);
        char hash[LF_HASH_LEN + 1];
        if (!files || !line_proven(ann, cJSON_GetObjectItemCaseSensitive(pol, "announcement_proof"),
                                   &cp, root, &covered, hash)) {
            cJSON_Delete(doc);
            rc = bad(c, "the announcement of policy set %s is not one the checkpoint covers",
                     gen ? gen : "?");
            goto out;
        }
        if (!covered) later_sets++;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(pol, "files")) {
            const char *content = str_of(f, "content"), *sum = str_of(f, "sha256");
            const char *name = str_of(f, "path");
            char hex[65];
            if (content) lf_sha256_hex(content, strlen(content), hex);
            if (!listed(files, name, sum) || (content && strcmp(hex, sum) != 0)) {
                cJSON_Delete(doc);
                rc = bad(c, "policy file %s is not the one its set announced",
                         name ? name : "?");
                goto out;
            }
            if (content) files_ok++;
        }
        cJSON_Delete(doc);
    }
    if (c->json)
        printf(
            "{\"ok\":true,\"proven\":%zu,\"after_checkpoint\":%zu,\"attestations\":%zu,"
            "\"policy_files\":%zu,\"announcements_after_checkpoint\":%zu,\"tree_size\":%llu}\n",
            proven, later, atts, files_ok, later_sets, (unsigned long long)cp.tree_size);
    else
        printf(
            "ok: %zu entries proven against the checkpoint of %llu entries signed by key "
            "%s, %zu after it (not yet covered); %zu attestations verified; %zu policy "
            "files match their announced digests%s\n",
            proven, (unsigned long long)cp.tree_size, cp.key_id, later, atts, files_ok,
            later_sets ? " (announced after the checkpoint: not yet covered)" : "");
out:
    free(hashes);
    cJSON_free(cptext);
    cJSON_Delete(b);
    lf_key_free(key);
    return rc;
}

/* ---- the command -------------------------------------------------------------- */

typedef struct found_call {
    bool done;
    lf_code code;
    char id[LF_ID_LEN + 1];
    char *error;
} found_call;

static void on_found(const lf_result *r, void *arg) {
    found_call *f = arg;
    f->done = true;
    f->code = r->code;
    if (r->success && r->record)
        snprintf(f->id, sizeof f->id, "%s", lf_record_id(r->record));
    else f->error = lf_xstrdup(r->error ? r->error : lf_code_name(r->code));
}

static int run_evidence(lf_cli *c) {
    int rc = lf_cli_npos(c, 0, 2, "");
    if (rc) return rc;
    if (c->args.npos && strcmp(c->args.pos[0], "verify") == 0)
        return run_evidence_verify(c, c->args.npos > 1 ? c->args.pos[1] : NULL);
    if (c->args.npos) return lf_cli_usage(c, "unexpected argument '%s'", c->args.pos[0]);
    const char *rid = lf_args_get(&c->args, "record"),
               *ref = lf_args_get(&c->args, "ref");
    const char *since = lf_args_get(&c->args, "since"),
               *until = lf_args_get(&c->args, "until");
    const char *out = lf_args_get(&c->args, "out");
    int64_t us;
    if ((!!rid + !!ref + !!(since || until)) != 1 || (since && !until) ||
        (until && !since))
        return lf_cli_usage(c, "say which entries: --record ID, --ref REF, or --since T "
                               "--until T");
    if ((since && lf_ts_parse(since, &us)) || (until && lf_ts_parse(until, &us)))
        return lf_cli_usage(c, "--since and --until take timestamps like "
                               "2026-12-05T00:00:00.000000Z");
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    found_call f = {0};
    if (ref) {
        lf_engine_find_by_ref(e, ref, on_found, &f);
        if ((rc = lf_cli_wait(c, &f.done))) return rc;
        if (f.code != LF_OK) {
            rc = lf_cli_fail(c, f.code, f.error);
            free(f.error);
            return rc;
        }
        rid = f.id;
    }
    gather g = {.record_id = rid, .since = since, .until = until};
    size_t torn;
    rc = lf_cli_each_line(c, gather_line, &g, &torn);
    if (!rc && rid && g.nsel == 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "Record not found: %s", rid);
        rc = lf_cli_fail(c, LF_NOT_FOUND, msg);
    }
    if (!rc) {
        lf_buf b = LF_BUF_INIT;
        bundle(c, e, &g, &b);
        FILE *o = out ? fopen(out, "w") : stdout;
        if (!o || fputs(b.p, o) < 0 || fputc('\n', o) < 0 || (out && fclose(o) != 0)) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s: %s", out ? out : "stdout", strerror(errno));
            rc = lf_cli_fail(c, LF_UNAVAILABLE, msg);
        }
        if (!rc)
            fprintf(stderr,
                    "evidence: %zu entries of %zu record(s), %s, %zu policy set(s)%s\n",
                    g.nsel, g.nids,
                    g.cp ? "proven against the latest checkpoint" : "no checkpoint",
                    g.ngens, lf_engine_can_sign(e) ? ", with attestations" : "");
        lf_buf_free(&b);
    }
    gather_free(&g);
    free(f.error);
    return rc;
}

static const lf_optspec evidence_opts[] = {
    {"record", true}, {"ref", true}, {"since", true}, {"until", true},
    {"out", true},    {"key", true}, {NULL, false}};

const lf_command lf_cmd_evidence = {
    "evidence",
    "export, or verify offline, the evidence for some records",
    "Usage: loopforge evidence (--record ID | --ref REF | --since T --until T)\n"
    "                          [--out FILE]\n"
    "       loopforge evidence verify FILE --key PUBLIC_KEY\n\n"
    "Writes a self-contained JSON bundle (stdout, or FILE): the entries of\n"
    "one record (--record, --ref) or of every record in a time range\n"
    "([since, until), timestamps as in the log), each with its inclusion\n"
    "proof against the latest signed checkpoint, that checkpoint, the\n"
    "public key, the attestations of the records' merges (with\n"
    "--signing-key), and the policy files of every policy set involved, with\n"
    "their digests as announced (a file's content when the file on disk\n"
    "still matches). What an auditor sampling records asks for.\n\n"
    "evidence verify checks a bundle offline, with the public key you have from\n"
    "the log's owner (--key, required: the key a bundle carries proves\n"
    "nothing): the checkpoint's signature, every entry against it, every\n"
    "attestation's signature, every policy file against its digest. Exit 8\n"
    "names the first that fails (docs/audit.md).\n",
    evidence_opts,
    run_evidence,
    true};
