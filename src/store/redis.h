/* redis.h -- the redis store's internals, shared by its modules (never
 * installed):
 *
 *   redis_url.c    the store URLs (redis://, unix://) and their options
 *   redis_lua.c    the server-side scripts and their SHA1s
 *   redis_conn.c   the one connection: handshake, pipelining, timeouts,
 *                  reconnects with backoff, the queues ops wait in
 *   redis_commit.c the only write: seal, check the head, pipeline
 *   redis_pack.c   the sealed lines as Redis holds them (zstd, a fixed
 *                  dictionary)
 *   redis.c        the reads, open and free, and what they all share:
 *                  key names, the fold-base cache, record replies
 *
 * docs/redis.md describes the key layout and the commit protocol. */
#ifndef LF_REDIS_H
#define LF_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "store.h"
#include "../core/buf.h"
#include "../core/map.h"
#include "../core/mem.h"

/* ---- URLs (redis_url.c) ------------------------------------------------ */

#define LF_REDIS_DEFAULT_PORT 6379
#define LF_REDIS_DEFAULT_PREFIX "lf:"
#define LF_REDIS_CONNECT_TIMEOUT_MS 2000
#define LF_REDIS_TIMEOUT_MS 5000
/* Lines a list of the log holds (P log:<n>: redis_lua.c). Part of the
 * layout: every process on a store must use the same. */
#define LF_REDIS_LOG_LIST 64
/* The hex digits of a record's h (the hash of the entry that last changed
 * it) its hash keeps: enough to tell two entries at one version apart
 * (a cached copy from another); records older versions wrote keep all 64,
 * which compare by the same first digits. */
#define LF_REDIS_H_LEN 16

typedef struct lf_redis_url {
    char *host;                 /* TCP: host or IP (NULL for a socket) */
    int port;
    char *path;                 /* unix socket path (NULL for TCP) */
    char *user;                 /* ACL user for AUTH, or NULL */
    char *password;             /* NULL: no AUTH */
    int db;
    char *prefix;               /* key prefix, "lf:" by default */
    int connect_timeout_ms;
    int timeout_ms;             /* per command */
    char addr[320];             /* for messages: "host:port" or
                                   "unix:/path", never the password */
} lf_redis_url;

/* Returns 0, or -1 with err set (the URL is then a usage error). */
int lf_redis_url_parse(const char *url, lf_redis_url *u, char *err, size_t errlen);
void lf_redis_url_free(lf_redis_url *u);

/* ---- scripts (redis_lua.c) --------------------------------------------- */

typedef enum lf_redis_script {
    LF_SCRIPT_COMMIT = 0,       /* check + write one entry */
    LF_SCRIPT_LIST,             /* one page of an index, with the records */
    LF_SCRIPT_AUDIT_LOG,        /* a page of the global log */
    LF_SCRIPT_AUDIT_REC,        /* a page of one record's entries */
    LF_SCRIPT_FIND_KEY,         /* the entry an idempotency key names */
    LF_SCRIPT_COUNT,            /* a budget counter since a time */
    LF_SCRIPT_ENT_FILL,         /* records into a state's entered index */
    LF_SCRIPT_READ,             /* records' entries, to fold */
    LF_SCRIPT_STATES_FILL,      /* the set of states of an older store */
    LF_SCRIPT__COUNT
} lf_redis_script;

const char *lf_redis_script_src(lf_redis_script id);
/* The script's SHA1 (40 hex + NUL), as EVALSHA and SCRIPT LOAD name it. */
void lf_redis_script_sha(lf_redis_script id, char out[41]);

/* ---- lines as Redis holds them (redis_pack.c) --------------------------- */

typedef struct lf_redis_pack lf_redis_pack;

lf_redis_pack *lf_redis_pack_new(void);
void lf_redis_pack_free(lf_redis_pack *p);
/* The sealed line as Redis keeps it (a zstd frame, or the line itself when
 * that is no larger), into out (reset first). sealed: the caller has just
 * sealed line (lf_entry_seal), so its last key is its own hash and is not
 * checked again (false: it is, and a line whose hash is not its own is
 * packed with it). Returns where in line the 64 hex digits of its policy
 * set are when the value refers to it instead of holding it (the commit
 * registers it in P log:psets), else NULL. */
const char *lf_redis_pack_line(lf_redis_pack *p, const char *line, size_t len, bool sealed,
                               lf_buf *out);
/* Never refer to policy set pset (64 hex digits), nor read it as known:
 * another one registered its first bytes first. */
void lf_redis_pack_unref(lf_redis_pack *p, const char *pset);
/* Whether a stored value is a frame (else it is the line itself). */
bool lf_redis_packed(const char *stored, size_t n);
/* Policy set pset (64 hex digits) is in P log:psets under its first
 * bytes: this client's own commit registered it (what it wrote, it
 * knows: a set's bytes name one digest there for good, as a commit whose
 * set has another's bytes is refused and packs whole -- but for a store
 * emptied and begun again by another set with the same first 4 bytes,
 * one chance in 2^32, which this client's next commit of its set finds:
 * lf_redis_pack_unref forgets it). The scripts that
 * read lines are passed lf_redis_pack_known (the known sets' 64 hex
 * digits, run together; "" for none) and leave a value that refers to
 * one of those as it is: putting the digest back in Lua was a fifth of a
 * record's read. A set registered by another process is still put back
 * by the scripts, so a reader that writes nothing (audit --verify) reads
 * P log:psets as it is, changed or not. */
void lf_redis_pack_learn(lf_redis_pack *p, const char *pset);
const char *lf_redis_pack_known(const lf_redis_pack *p);
/* Appends the line a stored value holds to out: a frame with its policy
 * set put back in front, by the script that read it or, for a set this
 * client knows, here. Returns 0, or -1 with why set when the value is a
 * frame that does not unpack (damaged) or refers to a set nobody put
 * back. */
int lf_redis_unpack_line(lf_redis_pack *p, const char *stored, size_t n, lf_buf *out,
                         char *why, size_t whylen);

/* ---- the connection (redis_conn.c) ------------------------------------- */

typedef struct lf_redis lf_redis;
typedef struct lf_rop lf_rop;

/* What an operation does at each event. Every op completes (calls its
 * user's callback) exactly once: from reply, or through notify. */
typedef struct lf_rop_type {
    /* Issues the op's current command: lf_redis_write when a connection
     * is up, else lf_redis_wait. Called again after a reconnect. */
    void (*send)(lf_rop *op);
    /* A reply to the op's command (never NULL). */
    void (*reply)(lf_rop *op, redisReply *r);
    /* Completes the op with an error: calls the user's callback, frees
     * nothing (destroy follows, at once or -- for an op hiredis still
     * holds when the store closes -- when hiredis lets go of it). */
    void (*notify)(lf_rop *op, lf_code code, const char *why);
    /* NOSCRIPT on the op's EVALSHA; the script is being reloaded. NULL:
     * the command is simply sent again. */
    void (*noscript)(lf_rop *op);
    void (*destroy)(lf_rop *op);    /* frees the op, calls nobody */
} lf_rop_type;

/* The part every op starts with. */
struct lf_rop {
    const lf_rop_type *type;
    lf_redis *s;
    lf_rop *prev, *next;        /* in one of the store's queues */
    int64_t sent_us;            /* when its command went out */
    char *cmd;                  /* the formatted command (RESP), kept so
                                   it can be sent again */
    size_t cmdlen;
    int script;                 /* its EVALSHA's script, or -1 */
    int reloads;                /* NOSCRIPT recoveries so far */
    bool orphan;                /* the store is gone; only free it */
};

typedef struct lf_rop_list {
    lf_rop *head, *tail;
} lf_rop_list;

/* An op is in at most one list at a time. */
void lf_redis_q_push(lf_rop_list *q, lf_rop *op);
void lf_redis_q_remove(lf_rop_list *q, lf_rop *op);
lf_rop *lf_redis_q_pop(lf_rop_list *q);

/* A record the store has seen in Redis at a given version: the base the
 * client folds the next entry onto. */
typedef struct lf_redis_entered lf_redis_entered;

typedef struct lf_redis_cache {
    lf_map map;                 /* id -> lf_redis_cached* (key: rec->id) */
    size_t hand;                /* eviction scan position */
} lf_redis_cache;

struct lf_redis {
    lf_store base;
    lf_redis_url url;
    struct event_base *evb;

    redisAsyncContext *ac;      /* NULL while there is no connection */
    bool connected;             /* connect(2) completed on ac */
    bool ready;                 /* the handshake answered: tip is known */
    int64_t connected_us;
    char down[512];             /* why the last connection went away */

    lf_rop_list sent;           /* commands on the wire, oldest first */
    lf_rop_list waiting;        /* ops waiting for a connection */
    lf_rop_list unsealed;       /* commits waiting for the chain's tip */

    /* The head of the global log as this process last sent it: each new
     * commit is sealed on it, so commits pipeline. `epoch` changes
     * whenever that pipeline broke (see redis.c, commit). */
    bool tip_known;
    uint64_t tip_seq;
    char tip_hash[LF_HASH_LEN + 1];
    uint64_t epoch;
    /* The policy set this process's own commit registered in P log:psets,
     * known while the epoch it was answered in lasts (pset_at is that
     * epoch + 1; 0: none): the next commits skip the check. Anything that
     * undid the registration undid its line too, so the next commit's
     * head check refuses it, which moves the epoch. Each state's
     * lf_redis_entered keeps the same kind of fact about P states. */
    uint64_t pset_at;
    char pset[LF_HASH_LEN + 1];

    struct event *t_connect, *t_cmd, *t_retry;
    int backoff_ms;             /* before the next connection attempt */
    int64_t next_attempt_us;

    lf_redis_cache cache;
    lf_redis_pack *pack;        /* lines in and out of Redis (redis_pack.c) */
    lf_buf packed;              /* the commit's line, packed (scratch) */
    /* commit_format's key names, kept with their room (lf_redis_format
     * copies them out): the record's and its indexes', and at most two
     * budget counters' three keys and two open-records sets' one */
    lf_buf commit_keys[10], commit_counters[8];
    lf_map recq;                /* id -> the record's commits in order
                                   (redis.c, rec_queue) */
    lf_map entered;             /* state -> lf_redis_entered*: whether its
                                   entered index is whole, whether it is
                                   known in P states (redis.c) */
    lf_redis_entered *timed;    /* a pass scoring P timed by due (redis.c,
                                   timed_of); NULL: none yet */
    char sha[LF_SCRIPT__COUNT][41];
    /* prefix + fixed names (k_timed: the records with timers of their own;
       k_indexed: the indexes known whole, redis.c) */
    char *k_head, *k_log, *k_ref, *k_idem, *k_timed, *k_indexed;
    char *k_rec;                /* "<prefix>rec:{": the scripts derive records' keys */

    int busy;                   /* event-loop entries into the store in
                                   progress (callbacks on the stack) */
    bool closing;               /* lf_store_free was called */
};

/* Connection lifecycle. */
void lf_redis_conn_init(lf_redis *s);
void lf_redis_conn_start(lf_redis *s);
void lf_redis_conn_close(lf_redis *s);     /* from lf_store_free */
/* Releases one `busy` hold; frees the store when it was the last one of
 * a store being closed. Returns true if the store is gone. */
bool lf_redis_release(lf_redis *s);
void lf_redis_destroy(lf_redis *s);        /* the memory, in redis.c */

/* Sends op->cmd now (a connection must exist). On a local failure the
 * op is failed right here. */
void lf_redis_write(lf_rop *op);
/* Parks op until the next connection (or the tip) is there. */
void lf_redis_wait(lf_rop *op);
void lf_redis_wait_tip(lf_rop *op);
/* Answers op's caller with code and why, and frees op (its type's notify
 * and destroy): how every operation fails. */
void lf_redis_fail(lf_rop *op, lf_code code, const char *why);
/* Issues op: write if connected, else wait. The usual `send`. */
void lf_redis_send(lf_rop *op);
/* Formats argv into op->cmd (replacing any previous command). */
void lf_redis_format(lf_rop *op, int argc, const char **argv, const size_t *lens);
/* Frees op->cmd, if any (what every op type's destroy does). */
void lf_redis_cmd_free(lf_rop *op);
/* Asks the server to load script id again (after NOSCRIPT). */
void lf_redis_load_script(lf_redis *s, lf_redis_script id);

/* Called when the handshake learned the head of the log. */
void lf_redis_on_ready(lf_redis *s);

/* "redis ADDR: " + message, for errors. */
void lf_redis_errf(const lf_redis *s, char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

int64_t lf_redis_now_us(void);     /* monotonic */

/* ---- shared by redis.c and redis_commit.c ------------------------------- */

/* Key names (P = prefix): P rec:{id}, P rec:{id}:log, and the index a
 * list reads: P state:S, P sr:<len(S)>:S:R, or P states. */
void lf_redis_key_rec(const lf_redis *s, const char *id, lf_buf *b);
void lf_redis_key_reclog(const lf_redis *s, const char *id, lf_buf *b);
/* The list of the log that holds seq's line. */
void lf_redis_key_log(const lf_redis *s, uint64_t seq, lf_buf *b);
/* The index of a parent's children: "<prefix>children:<id>". */
void lf_redis_key_children(const lf_redis *s, const char *parent, lf_buf *b);
/* The records in a state by when they entered it: "<prefix>ent:<state>"
 * (the timers' tick asks it for what can be due). */
void lf_redis_key_entered(const lf_redis *s, const char *state, lf_buf *b);
/* A counter (lf_counter_key, lf_open_key) the commit script keeps: a
 * sorted set (an open-records set; a budget counter an older version
 * wrote), or a budget counter's times: its full chunks, or with tail the
 * chunk being filled (redis_lua.c's TIMES_LUA). */
void lf_redis_key_count(const lf_redis *s, const char *counter, lf_buf *b);
void lf_redis_key_times(const lf_redis *s, const char *counter, bool tail, lf_buf *b);
/* The who character ('a', 'p') of a budget counter key (lf_counter_key:
 * "<len>:<to>:<who>:<name>"), or NULL for another key (lf_open_key's). */
char *lf_redis_counter_who(char *key);
/* The index a list reads: P state:<state>, P sr:<n>:<state>:<repo>, or
 * for every record or a repo's the set of states whose state: or sr:
 * indexes the list script merges (P states). */
void lf_redis_key_index(const lf_redis *s, const char *state, const char *repo,
                        lf_buf *b);

/* Whether state is in P states by a commit of this process answered in
 * the current epoch (lf_redis.pset_at says why that is sound); _set
 * records such an answer. */
bool lf_redis_state_listed(lf_redis *s, const char *state);
void lf_redis_state_listed_set(lf_redis *s, const char *state);

/* Records as last read from (or confirmed by) Redis, by id. */
lf_record *lf_redis_cache_get(lf_redis *s, const char *id);
/* Takes r. h: the hash of the entry that last changed it (the record
 * hash's h), or NULL when unknown: a read that finds the same version and
 * h is answered from the cache. A record handed to a callback stays valid
 * during it. */
void lf_redis_cache_put(lf_redis *s, lf_record *r, const char *h);
void lf_redis_cache_del(lf_redis *s, const char *id);

bool lf_redis_is_str(const redisReply *r);
/* A record as the scripts give it (redis_lua.c's REC_LUA: {d, v, h, j,
 * line, ...}), or a probe's HMGET {d, v, h}: LF_OK with *out (the cached
 * record itself when the cache holds that very record, else the caller's,
 * folded from the lines; a probe without a match: LF_OK and NULL),
 * LF_NOT_FOUND (none, or a tombstone), or LF_UNAVAILABLE with a message
 * naming the key. */
lf_code lf_redis_record_reply(lf_redis *s, const char *id, const redisReply *g,
                              lf_record **out, char *msg, size_t len);
/* Such a reply's h, or NULL. */
const char *lf_redis_reply_h(const redisReply *g);
/* Formats the read script's call for the records ids (redis_lua.c); its
 * reply has one record (REC_LUA) for each; lf_redis_read_one unwraps the
 * one of a call for one id. */
void lf_redis_format_read(lf_rop *op, const char *const *ids, size_t n);
const redisReply *lf_redis_read_one(const redisReply *r);

/* redis_commit.c */
void lf_redis_commit(lf_store *st, lf_entry *e, lf_store_cb *cb, void *arg);
/* Fails the commits still waiting for their record's turn (store closing). */
void lf_redis_recq_fail_all(lf_redis *s, const char *why);
void lf_redis_recq_free(lf_redis *s);

#endif
