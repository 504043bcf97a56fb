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
#include "../core/mem.h"
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
    "keygen", "make an Ed25519 key pair that signs the audit log",
    "Usage: loopforge keygen [--out PREFIX]\n\n"
    "Writes PREFIX.key (the private key, PEM, mode 0600) and PREFIX.pub (the\n"
    "public key, PEM) -- PREFIX is loopforge-signing by default -- and prints\n"
    "the key id. Existing files are never overwritten (exit 6). Give the\n"
    "private key to the writers (--signing-key, LOOPFORGE_SIGNING_KEY) and the\n"
    "public one to auditors (audit --verify --key).\n",
    keygen_opts, run_keygen, false};

/* ---- attest ---------------------------------------------------------------- */

typedef struct attest_call {
    bool done;
    lf_code code;
    char *text, *error;
} attest_call;

static void on_attested(lf_code code, const char *error, const char *text, void *arg) {
    attest_call *a = arg;
    a->done = true;
    a->code = code;
    a->text = text ? lf_xstrdup(text) : NULL;
    a->error = error ? lf_xstrdup(error) : NULL;
}

static int run_attest(lf_cli *c) {
    int rc = lf_cli_npos(c, 1, 1, "ID");
    if (rc) return rc;
    lf_engine *e = lf_cli_engine(c, &rc);
    if (!e) return rc;
    attest_call a = {0};
    lf_engine_attestations(e, c->args.pos[0], on_attested, &a);
    rc = lf_cli_wait(c, &a.done);
    if (!rc && a.code != LF_OK) rc = lf_cli_fail(c, a.code, a.error);
    if (!rc) puts(a.text);
    free(a.text);
    free(a.error);
    return rc;
}

const lf_command lf_cmd_attest = {
    "attest", "print the signed attestations of a record's merges",
    "Usage: loopforge attest ID      (with --signing-key)\n\n"
    "Prints {\"record_id\",\"attestations\":[...]}: for every merge of record ID\n"
    "an in-toto Statement v1 (subject: the merged commit, or the merge entry\n"
    "when no commit is known; predicate: the record, the merge entry, its\n"
    "policy set and the digest of every file in it, every decision and\n"
    "violation on the way, the approvals and the CI of the merged head, the\n"
    "first checkpoint that covers the merge) in a DSSE envelope signed with\n"
    "the log's key. Made from the log: asking again gives the same bytes.\n"
    "docs/audit.md says how to verify one without loopforge.\n",
    NULL, run_attest, true};
