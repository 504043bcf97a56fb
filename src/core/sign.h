/* sign.h -- Ed25519 signing keys (OpenSSL's EVP API): what signs the
 * audit log's checkpoints and the merge attestations, and what an auditor
 * checks them with. Keys travel as PEM (PKCS#8 private, SubjectPublicKeyInfo
 * public), so `openssl pkey`/`pkeyutl` read them as they are. Pure: keys
 * come in and go out as text; the CLI reads and writes the files. */
#ifndef LF_SIGN_H
#define LF_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#define LF_SIG_LEN 64
#define LF_KEY_ID_LEN 16            /* hex digits */

typedef struct lf_key lf_key;

/* A new key pair, as two PEM texts (caller frees both). Returns 0, or -1
 * with err set. */
int lf_key_generate(char **private_pem, char **public_pem, char *err, size_t errlen);
/* A key from PEM text: a private key (it can sign and verify) or a public
 * one (verify only). NULL with err set if it is not an Ed25519 key. */
lf_key *lf_key_parse(const char *pem, size_t len, char *err, size_t errlen);
void lf_key_free(lf_key *k);
bool lf_key_can_sign(const lf_key *k);
/* The public key as PEM, owned by the key. */
const char *lf_key_public_pem(const lf_key *k);
/* The first 16 hex digits of SHA-256 over the raw 32-byte public key. */
void lf_key_id(const lf_key *k, char out[LF_KEY_ID_LEN + 1]);
/* Ed25519 over msg (the whole message: Ed25519 hashes it itself). The
 * key keeps the signing context: one thread signs with a key at a time. */
int lf_key_sign(const lf_key *k, const void *msg, size_t len,
                unsigned char sig[LF_SIG_LEN]);
bool lf_key_verify(const lf_key *k, const void *msg, size_t len, const unsigned char *sig,
                   size_t siglen);

#endif
