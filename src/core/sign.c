/* sign.c -- Ed25519 keys through OpenSSL's EVP API (sign.h). */
#include "sign.h"
#include "hash.h"
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

struct lf_key {
    EVP_PKEY *pkey;
    bool private_key;
    char *public_pem;   /* made once: PEM encoding costs as much as a signature */
    EVP_MD_CTX *ctx;    /* reused: a new one per signature costs ~20% more */
};

static char *bio_text(BIO *b) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *out = lf_xmalloc((size_t)n + 1);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    return out;
}

int lf_key_generate(char **private_pem, char **public_pem, char *err, size_t errlen) {
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *a = BIO_new(BIO_s_mem()), *b = BIO_new(BIO_s_mem());
    int rc = -1;
    if (!k || !a || !b || !PEM_write_bio_PrivateKey(a, k, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_PUBKEY(b, k)) {
        snprintf(err, errlen, "cannot generate an Ed25519 key");
    } else {
        *private_pem = bio_text(a);
        *public_pem = bio_text(b);
        rc = 0;
    }
    BIO_free(a);
    BIO_free(b);
    EVP_PKEY_free(k);
    return rc;
}

lf_key *lf_key_parse(const char *pem, size_t len, char *err, size_t errlen) {
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    bool priv = k != NULL;
    if (!k && b) {
        (void)BIO_reset(b);
        k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    }
    BIO_free(b);
    if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
        snprintf(err, errlen,
                 "not an Ed25519 key in PEM form (make one with loopforge keygen)");
        EVP_PKEY_free(k);
        return NULL;
    }
    BIO *pub = BIO_new(BIO_s_mem());
    if (!pub || !PEM_write_bio_PUBKEY(pub, k)) abort();
    lf_key *key = lf_xmalloc(sizeof *key);
    key->pkey = k;
    key->private_key = priv;
    key->public_pem = bio_text(pub);
    key->ctx = NULL;
    BIO_free(pub);
    return key;
}

void lf_key_free(lf_key *k) {
    if (!k) return;
    EVP_PKEY_free(k->pkey);
    EVP_MD_CTX_free(k->ctx);
    free(k->public_pem);
    free(k);
}

bool lf_key_can_sign(const lf_key *k) { return k->private_key; }

const char *lf_key_public_pem(const lf_key *k) { return k->public_pem; }

void lf_key_id(const lf_key *k, char out[LF_KEY_ID_LEN + 1]) {
    unsigned char raw[32], d[32];
    size_t n = sizeof raw;
    if (!EVP_PKEY_get_raw_public_key(k->pkey, raw, &n)) abort();
    lf_sha256(raw, n, d);
    lf_hex(d, LF_KEY_ID_LEN / 2, out);
}

int lf_key_sign(const lf_key *k, const void *msg, size_t len,
                unsigned char sig[LF_SIG_LEN]) {
    if (!k->private_key) return -1;
    lf_key *key = (lf_key *)k;  /* only its context changes */
    if (!key->ctx && !(key->ctx = EVP_MD_CTX_new())) return -1;
    size_t n = LF_SIG_LEN;
    int ok = EVP_DigestSignInit(key->ctx, NULL, NULL, NULL, k->pkey) == 1 &&
             EVP_DigestSign(key->ctx, sig, &n, msg, len) == 1 && n == LF_SIG_LEN;
    return ok ? 0 : -1;
}

bool lf_key_verify(const lf_key *k, const void *msg, size_t len, const unsigned char *sig,
                   size_t siglen) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
              EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}
