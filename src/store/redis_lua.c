/* redis_lua.c -- the scripts the redis store runs inside Redis, and
 * their SHA1s (computed here, so EVALSHA can go out before SCRIPT LOAD
 * has answered).
 *
 * They hold no policy logic: the host's engine decided everything. The
 * commit script only compares (record version, head of the log) and
 * then writes; the read scripts only gather a page in one round trip.
 * Every check comes before the first write (but for a line's place in
 * its list, which the push itself checks and undoes), because Redis does
 * not roll back a script that fails halfway. Key layout: docs/redis.md. */
#include "redis.h"
#include "../core/hash.h"

#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>

#define GENESIS_LUA "'" LF_GENESIS "'"
#define STR_(x) #x
#define STR(x) STR_(x)
#define LOG_LIST STR(LF_REDIS_LOG_LIST)     /* (redis.h) as Lua reads it */

/* A value that refers to its policy set (redis_pack.c: \2 and the
 * digest's first 4 bytes, then the frame) as the reader gets it: \3, the
 * digest's 64 hex digits from P log:psets, then the frame -- unless the
 * client knows that set (know: the sets' 64 hex digits, run together:
 * lf_redis_pack_known; a value names one by its first 4 bytes), then as
 * it is, as is any other value.
 * log: P log. */
#define RESOLVE_LUA                                                            \
    "local psets, known = {}, {}\n"                                           \
    "local function know(k)\n"                                                \
    "  for i = 1, #k - 63, 64 do\n"                                           \
    "    known[(k:sub(i, i + 7):gsub('..', function(h)\n"                     \
    "      return string.char(tonumber(h, 16)) end))] = true\n"               \
    "  end\n"                                                                 \
    "end\n"                                                                   \
    "local function resolve(log, v)\n"                                        \
    "  if v:byte(1) ~= 2 then return v end\n"                                 \
    "  local r = v:sub(2, 5)\n"                                               \
    "  if known[r] then return v end\n"                                       \
    "  local d = psets[r]\n"                                                  \
    "  if not d then\n"                                                       \
    "    local f = string.format('%02x%02x%02x%02x', r:byte(1, 4))\n"         \
    "    d = '\\3' .. (redis.call('HGET', log .. ':psets', f) or '')\n"        \
    "    psets[r] = d\n"                                                      \
    "  end\n"                                                                 \
    "  return d .. v:sub(6)\n"                                                \
    "end\n"

/* The log is lists of B = LF_REDIS_LOG_LIST lines (redis.h): seq s is
 * element (s - 1) % B of P log:<(s - 1) / B>. Lines older versions wrote
 * are fields of the hash P log, and where a list was begun after them
 * its first elements are '' (commit_lua pads): a line that is not in a
 * list is looked for there. log: P log. */
#define LINE_LUA                                                               \
    RESOLVE_LUA                                                                \
    "local function line(log, s)\n"                                           \
    "  local n, b = tonumber(s) - 1, " LOG_LIST "\n"                \
    "  local v = redis.call('LINDEX', log .. ':' .. math.floor(n / b), n % b)\n" \
    "  if v and v ~= '' then return resolve(log, v) end\n"                   \
    "  return redis.call('HGET', log, s)\n"                                   \
    "end\n"

/* A record's hash and its entries' seqs, in order: {fields}, {seq, ...},
 * whether the hash exists. The seqs are the hash's c fields l1 .. lc,
 * each a comma-separated run short enough for Redis to keep the hash
 * compact (SEQ_RUN bytes: hash-max-listpack-value's default); a record
 * an older version last wrote keeps them in the list kl instead. */
#define SEQ_RUN "64"
#define SEQS_LUA                                                               \
    "local function seqs_of(k, kl)\n"                                         \
    "  local all, m, l, seqs = redis.call('HGETALL', k), {}, {}, {}\n"         \
    "  for i = 1, #all, 2 do\n"                                               \
    "    local f = all[i]\n"                                                  \
    "    if f:byte(1) == 108 then l[f] = all[i + 1] else m[f] = all[i + 1] end\n" \
    "  end\n"                                                                  \
    "  if not m.c then return m, redis.call('LRANGE', kl, 0, -1), #all > 0 end\n" \
    "  for i = 1, tonumber(m.c) do\n"                                          \
    "    for q in string.gmatch(l['l' .. i] or '', '%d+') do seqs[#seqs + 1] = q end\n" \
    "  end\n"                                                                  \
    "  return m, seqs, true\n"                                                \
    "end\n"

/* A record as Redis holds it: {d, v, h, j, line, ...}: its tombstone
 * mark, its version, the hash of the entry that last changed it, and its
 * entries' lines in order -- the store folds them into the record
 * (lf_record_apply), as every store does; Redis keeps no copy of the
 * record itself. j (the whole record JSON that versions before kept) only
 * when the record has no entry seqs. k: its hash; kl: its entry list as
 * older versions kept it; log: P log. */
#define REC_LUA                                                                \
    LINE_LUA                                                                   \
    SEQS_LUA                                                                   \
    "local function rec(k, kl, log)\n"                                        \
    "  local m, seqs = seqs_of(k, kl)\n"                                      \
    "  local out = {m.d or false, m.v or false, m.h or false, false}\n"       \
    "  if #seqs == 0 then\n"                                                  \
    "    out[4] = m.j or false\n"                                             \
    "    return out\n"                                                        \
    "  end\n"                                                                  \
    "  for _, s in ipairs(seqs) do out[#out + 1] = line(log, s) end\n"         \
    "  return out\n"                                                           \
    "end\n"

/* A budget counter's times: the chunks P times:<counter>, a list of
 * strings of TIMES_CHUNK times each (us, 8 bytes big-endian), then the
 * chunk being filled, the string P tail:<counter>, in order across them.
 * ~8 bytes a transition, where a sorted-set member took ~109. A count
 * since T finds the chunk that holds T by bisection and adds the full
 * chunks after it by arithmetic, so it stays exact whatever order the
 * times come in (a time earlier than the last is inserted in place, the
 * chunks after it each passing one time on). Counters an older version
 * wrote are sorted sets (P count:<counter>: seqs scored by time), counted
 * beside. */
#define TIMES_CHUNK "64"
#define TIMES_LUA                                                              \
    "local function tat(c, j) return (struct.unpack('>I8', c, 8 * j + 1)) end\n" \
    /* how many of chunk c's times are before t (or, after: at most t) */      \
    "local function tfind(c, t, after)\n"                                      \
    "  local lo, hi = 0, #c / 8\n"                                             \
    "  while lo < hi do\n"                                                     \
    "    local m = math.floor((lo + hi) / 2)\n"                                \
    "    local x = tat(c, m)\n"                                                \
    "    if x < t or (after and x == t) then lo = m + 1 else hi = m end\n"     \
    "  end\n"                                                                  \
    "  return lo\n"                                                            \
    "end\n"

/* The count since t of the counter whose chunks are k and tail kt: n,
 * the earliest (nil: none). */
#define TCOUNT_LUA                                                             \
    TIMES_LUA                                                                  \
    "local function tcount(k, kt, t)\n"                                        \
    "  local n = redis.call('LLEN', k)\n"                                      \
    "  local lo, hi = 0, n\n"  /* the first chunk whose last time is >= t */   \
    "  while lo < hi do\n"                                                     \
    "    local m = math.floor((lo + hi) / 2)\n"                                \
    "    if tat(redis.call('LINDEX', k, m), " TIMES_CHUNK " - 1) < t then\n"  \
    "      lo = m + 1 else hi = m end\n"                                       \
    "  end\n"                                                                  \
    "  local c = lo < n and redis.call('LINDEX', k, lo) or redis.call('GET', kt)\n" \
    "  if not c then return 0, nil end\n"                                      \
    "  local j = tfind(c, t, false)\n"                                         \
    "  if j == #c / 8 then return 0, nil end\n"   /* the tail's, all before */ \
    "  local got = #c / 8 - j\n"                                               \
    "  if lo < n then\n"                                                       \
    "    got = got + " TIMES_CHUNK " * (n - 1 - lo) + redis.call('STRLEN', kt) / 8\n" \
    "  end\n"                                                                  \
    "  return got, tat(c, j)\n"                                                \
    "end\n"

/* Time t into the counter whose chunks are k and tail kt, after the
 * times it holds that are not later: nearly always onto the tail. An
 * earlier time (another process's clock, or a clock set back) goes into
 * the chunk where it belongs, and each full chunk after it passes its
 * last time on to the next. A chunk is at i: 0 the tail, -1... the
 * list's from its end. A tail that fills up joins the list. (Constant
 * arguments go to redis.call as strings: Redis prints a Lua number with
 * snprintf, ~2,000 instructions each.) */
#define TADD_LUA                                                               \
    TIMES_LUA                                                                  \
    "local function tadd(k, kt, t)\n"                                          \
    "  local e, last = struct.pack('>I8', t), redis.call('GETRANGE', kt, '-8', '-1')\n" \
    "  local i, c = 0, nil\n"                                                  \
    "  if last == '' then\n"                                                   \
    "    i, c = -1, redis.call('LINDEX', k, '-1')\n"                           \
    "    last = c and c:sub(-8) or ''\n"                                       \
    "  end\n"                                                                  \
    "  if last == '' or tat(last, 0) <= t then\n"                              \
    "    if redis.call('APPEND', kt, e) == 8 * " TIMES_CHUNK " then\n"         \
    "      redis.call('RPUSH', k, redis.call('GET', kt))\n"                    \
    "      redis.call('DEL', kt)\n"                                            \
    "    end\n"                                                                \
    "    return\n"                                                             \
    "  end\n"                                                                  \
    "  c = c or redis.call('GET', kt)\n"                                       \
    "  while tat(c, 0) > t do\n"                                               \
    "    local p = redis.call('LINDEX', k, i - 1)\n"                           \
    "    if not p then break end\n"                                            \
    "    i, c = i - 1, p\n"                                                    \
    "  end\n"                                                                  \
    "  local j = 8 * tfind(c, t, true)\n"                                      \
    "  c = c:sub(1, j) .. e .. c:sub(j + 1)\n"                                 \
    "  while #c > 8 * " TIMES_CHUNK " do\n"                                    \
    "    redis.call('LSET', k, i, c:sub(1, 8 * " TIMES_CHUNK "))\n"            \
    "    i, c = i + 1, c:sub(8 * " TIMES_CHUNK " + 1)\n"                       \
    "    c = c .. (i == 0 and (redis.call('GET', kt) or '') or redis.call('LINDEX', k, i))\n" \
    "  end\n"                                                                  \
    "  if i < 0 then redis.call('LSET', k, i, c)\n"                            \
    "  elseif #c < 8 * " TIMES_CHUNK " then redis.call('SET', kt, c)\n"        \
    "  else\n"                                                                 \
    "    redis.call('RPUSH', k, c)\n"                                          \
    "    redis.call('DEL', kt)\n"                                              \
    "  end\n"                                                                  \
    "end\n"                                                                    \
    /* the chunks whose times are all before cut */                           \
    "local function ttrim(k, kt, cut)\n"                                       \
    "  local c = redis.call('LINDEX', k, '0')\n"                               \
    "  while c and tat(c, " TIMES_CHUNK " - 1) < cut do\n"                     \
    "    redis.call('LPOP', k)\n"                                              \
    "    c = redis.call('LINDEX', k, '0')\n"                                   \
    "  end\n"                                                                  \
    "  local l = not c and redis.call('GETRANGE', kt, '-8', '-1')\n"           \
    "  if l and l ~= '' and tat(l, 0) < cut then redis.call('DEL', kt) end\n"  \
    "end\n"

/* ARGV[1] is the commit's mode, which the client derives from the entry's
 * kind: create, move (a transition), note (a refused attempt: the record
 * must exist and does not change), delete, global (no record).
 * KEYS  1 head  2 the log's list for this seq (P log:<n>)  3 idem  4 rec
 *       5 rec:log  6 ref  7 state(before)  8 state(after)
 *       9 state+repo(before)  10 state+repo(after), then the budget
 *       counters of a transition
 *       (ARGV[10]'s 4th character says how many), each as its times'
 *       chunks and tail and an older version's sorted set of it
 *       (count_lua), then the two
 *       open-records sets of its owner (when its 5th is '+': the record is
 *       open, add it; '-': closed or deleted, remove it), then the children of
 *       the record's parent, then the entered indexes of its state before
 *       and after, then last the records with timers of their own
 *       (global passes 1-3, note 1-5; 9-10 only when the record has a
 *       repo, the children only when it has a parent)
 * ARGV  1 mode  2 seq  3 prev  4 hash  5 line  6 version
 *       7 score (updated_at in us)  8 id  9 ref  10 has repo, has parent
 *       (1/0 each), timers ('1': it has timers of its own; '-': it had
 *       and has none now; '0': neither), the number of budget counters,
 *       the open-records mark ('+', '-' or '0'), whether the record is
 *       closed (1/0), whether the state after is known to be in P
 *       states ('1': this client's earlier commit put it there; skip
 *       the SADD), then the time (us) the record entered its state:
 *       every commit puts an open record in that state's entered index
 *       (and takes a closed one out), so an index a full listing filled
 *       once stays whole; with timers '1', then ';' and the earliest
 *       due (us) of them, its score in the records with timers (the
 *       tick asks for those due; an older version scored them by
 *       updated_at, a time already past: the first listing by due that
 *       finds one not due scores it by its due, ent_fill_lua)
 *       11 idempotency key ('' for none)
 *       12 the policy set the line refers to (redis_pack.c) to register,
 *          '' for none (or one this client's earlier commit registered)
 *       13 how many limits (core/entry.h) follow, each checked before
 *          anything is written: 'c', max, since (us), then the two
 *          counters it adds up (the actor's or the person's, and the one
 *          both share: redis.c's redis_count), three keys each; or 'o',
 *          max, the open-records set; or 'k', n, n state indexes, the
 *          record's children (each must be in one of those states)
 *       then: move: the aliases the entry adds (the latest claim wins);
 *             delete: the ref and every alias, released where they
 *             still name this record
 * A record's hash holds v (its version), h (the hash of the entry that
 * last changed it: with v, what a get compares with its cache), d (set:
 * a tombstone) and its entries' seqs (c runs l1 .. lc: SEQS_LUA); the
 * record is those entries' lines, folded (REC_LUA).
 * Returns 'ok' (a string: a table costs Redis ~8k instructions more to
 * convert; note: {'ok', the record as REC_LUA gives it}), or why
 * nothing was written: {'idem'} {'exists'} {'dupref', id} {'notfound'}
 * {'version', found} {'limit', n} (a limit reached: n counted, or the
 * child outside the gate's states)
 * {'head', seq, hash} (the chain moved: re-seal on
 * that head) {'logpos', length} (the list holds more lines than the head
 * says: written by something other than this script) {'pset', digest}
 * (another policy set has ARGV 12's first bytes: pack the line whole). The
 * policy set's registration is written before the line's checks are all
 * done: a refused commit may leave it, which is harmless. */
/* A helper is defined in the branch that uses it (REC_LUA by a note,
 * TADD_LUA by a transition's counters): a definition makes a closure at
 * every call of the script. */
static const char commit_lua[] =
    /* The record's last run of seqs: (c, its text), 0 and false for none.
     * A record an older version last wrote has its seqs moved from its
     * list into runs first (written 500 runs a call: unpack's stack has
     * room for a few thousand values). */
    /* (n, l): n runs, the last l; q appended: onto l while the run stays
     * under SEQ_RUN bytes, else as run n + 1 */
    "local function run_add(n, l, q)\n"
    "  if l and #l + #q < " SEQ_RUN " then return n, l .. ',' .. q end\n"
    "  return tostring(n + 1), q\n"
    "end\n"
    "local function last_run(k, kl, c)\n"
    "  if c then return c, redis.call('HGET', k, 'l' .. c) end\n"
    "  local n, l, w = 0, false, {}\n"
    "  for _, q in ipairs(redis.call('LRANGE', kl, 0, -1)) do\n"
    "    n, l = run_add(n, l, q)\n"
    "    w[2 * n - 1], w[2 * n] = 'l' .. n, l\n"
    "  end\n"
    "  for i = 1, #w, 1000 do redis.call('HSET', k, unpack(w, i, math.min(i + 999, #w))) end\n"
    "  redis.call('DEL', kl)\n"
    "  return n, l\n"
    "end\n"
    "local mode, seq, ver, id = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[6]), ARGV[8]\n"
    "local old, runs = false, false\n"
    "if ARGV[11] ~= '' and redis.call('HEXISTS', KEYS[3], ARGV[11]) == 1 then\n"
    "  return {'idem'}\n"
    "end\n"
    "if mode == 'create' then\n"
    "  if redis.call('EXISTS', KEYS[4]) == 1 then return {'exists'} end\n"
    "  local other = redis.call('HGET', KEYS[6], ARGV[9])\n"
    "  if other then return {'dupref', other} end\n"
    "elseif mode ~= 'global' then\n"
    "  local cur = redis.call('HMGET', KEYS[4], 'v', 'd', 'h', 'c')\n"
    "  if not cur[1] or cur[2] then return {'notfound'} end\n"
    /* a refusal names the version it judged; a move the one it makes */
    "  if tonumber(cur[1]) ~= (mode == 'note' and ver or ver - 1) then\n"
    "    return {'version', cur[1]}\n"
    "  end\n"
    "  old = not cur[3]\n"   /* an older version wrote it, with a copy in j */
    "  runs = cur[4] or false\n"
    "end\n"
    /* the limits (core/entry.h), checked before anything is written */
    "local a0 = 14\n"
    "if ARGV[13] ~= '0' then\n"
    TCOUNT_LUA
    "  for _ = 1, tonumber(ARGV[13]) do\n"
    "    local kind, n, max = ARGV[a0], 0, tonumber(ARGV[a0 + 1])\n"
    "    if kind == 'k' then\n"   /* max: how many states; each child in one */
    "      for _, c in ipairs(redis.call('ZRANGE', ARGV[a0 + 2 + max], 0, -1)) do\n"
    "        local j = a0 + 2\n"
    "        while j <= a0 + 1 + max and not redis.call('ZSCORE', ARGV[j], c) do j = j + 1 end\n"
    "        if j > a0 + 1 + max then return {'limit', c} end\n"
    "      end\n"
    "      a0, max = a0 + 3 + max, 1\n"
    "    elseif kind == 'o' then\n"
    "      n, a0 = redis.call('ZCARD', ARGV[a0 + 2]), a0 + 3\n"
    "    else\n"
    "      for k = a0 + 3, a0 + 6, 3 do\n"
    "        n = n + tcount(ARGV[k], ARGV[k + 1], tonumber(ARGV[a0 + 2])) +\n"
    "            redis.call('ZCOUNT', ARGV[k + 2], ARGV[a0 + 2], '+inf')\n"
    "      end\n"
    "      a0 = a0 + 9\n"
    "    end\n"
    "    if n >= max then return {'limit', tostring(n)} end\n"
    "  end\n"
    "end\n"
    "local head = redis.call('HMGET', KEYS[1], 'seq', 'hash')\n"
    "local hseq, hhash = head[1] or '0', head[2] or " GENESIS_LUA "\n"
    "if tonumber(hseq) ~= seq - 1 or hhash ~= ARGV[3] then\n"
    "  return {'head', hseq, hhash}\n"
    "end\n"
    /* the key prefix (KEYS[1] is P head); a store begun here keeps its
     * set of states whole from its first entry ('': list_lua), and its
     * entered indexes and P timed (P indexed: redis.c) */
    "local pre = KEYS[1]:sub(1, -5)\n"
    "if hseq == '0' then\n"
    "  redis.call('SADD', pre .. 'states', '')\n"
    "  redis.call('SADD', pre .. 'indexed', 'ent', 'timed')\n"
    "end\n"
    /* A line that refers to its policy set: the digest by its first 4
     * bytes, unless another digest has them ({'pset', it}: pack it whole). */
    "if ARGV[12] ~= '' then\n"
    "  local pk, f = pre .. 'log:psets', ARGV[12]:sub(1, 8)\n"
    "  local had = redis.call('HGET', pk, f)\n"
    "  if had and had ~= ARGV[12] then return {'pset', had} end\n"
    "  if not had then redis.call('HSET', pk, f, ARGV[12]) end\n"
    "end\n"
    /* The line goes at (seq - 1) % B of its list: pushed, and if that
     * was not its place, taken back at once (nothing else runs between:
     * nothing has changed) -- one call where a check first was two. */
    "local at = (seq - 1) % " LOG_LIST "\n"
    "local len = redis.call('RPUSH', KEYS[2], ARGV[5]) - 1\n"
    "if len ~= at then\n"
    "  redis.call('RPOP', KEYS[2])\n"
    "  if len > at then return {'logpos', len} end\n"
    /* a list begun where an older version's hash of lines stops */
    "  for i = len + 1, at do redis.call('RPUSH', KEYS[2], '') end\n"
    "  redis.call('RPUSH', KEYS[2], ARGV[5])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'hash', ARGV[4])\n"
    "if ARGV[11] ~= '' then redis.call('HSET', KEYS[3], ARGV[11], ARGV[2]) end\n"
    "if mode == 'global' then return 'ok' end\n"
    /* A refusal on a record an older version last wrote goes on its list:
     * an older process may still hold the record at this version and
     * commit on it (onto the list); the first commit that changes the
     * record moves the list into runs, and after it the older process's
     * copy is stale (its commit is refused, and it cannot read runs). */
    "local rn, rl = '0', false\n"
    "if mode == 'note' and not runs then\n"
    "  redis.call('RPUSH', KEYS[5], ARGV[2])\n"
    "else\n"   /* the entry's seq onto the record's runs of them */
    "  if mode ~= 'create' then rn, rl = last_run(KEYS[4], KEYS[5], runs) end\n"
    "  rn, rl = run_add(rn, rl, ARGV[2])\n"
    "  if mode == 'note' then redis.call('HSET', KEYS[4], 'c', rn, 'l' .. rn, rl) end\n"
    "end\n"
    "if mode == 'note' then\n"
    REC_LUA
    "  return {'ok', rec(KEYS[4], KEYS[5], pre .. 'log')}\n"
    "end\n"
    "local rf = 'l' .. rn\n"
    /* ARGV[10]'s marks as bytes: '0' 48, '1' 49, '+' 43, '-' 45 */
    "local repo, kids, timers, ncount, open, closed, listed = ARGV[10]:byte(1, 7)\n"
    "local entered, due = ARGV[10]:sub(8), nil\n"
    "if timers == 49 then entered, due = entered:match('^(%d*);(%d+)$') end\n"
    "repo, closed, ncount = repo == 49, closed == 49, ncount - 48\n"
    "kids = kids == 49 and KEYS[#KEYS - 3]\n"
    "local ent_b, ent_a, timed = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]\n"
    "local c0 = repo and 11 or 9\n"
    "local o0 = c0 + 3 * ncount\n"
    "if open == 43 then\n"
    "  redis.call('ZADD', KEYS[o0], ARGV[7], id)\n"
    "  redis.call('ZADD', KEYS[o0 + 1], ARGV[7], id)\n"
    "elseif open == 45 then\n"
    "  redis.call('ZREM', KEYS[o0], id)\n"
    "  redis.call('ZREM', KEYS[o0 + 1], id)\n"
    "end\n"
    "if old then redis.call('HDEL', KEYS[4], 'j') end\n"
    "if mode == 'delete' then\n"
    "  redis.call('HSET', KEYS[4], 'v', ARGV[6], 'd', '1', 'c', rn, rf, rl)\n"
    "  redis.call('HDEL', KEYS[4], 'h')\n"
    "  for i = a0, #ARGV do\n"
    "    if redis.call('HGET', KEYS[6], ARGV[i]) == id then\n"
    "      redis.call('HDEL', KEYS[6], ARGV[i])\n"
    "    end\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[7], id)\n"
    "  if repo then redis.call('ZREM', KEYS[9], id) end\n"
    "  if kids then redis.call('ZREM', kids, id) end\n"
    "  redis.call('ZREM', timed, id)\n"
    "  redis.call('ZREM', ent_b, id)\n"
    "  return 'ok'\n"
    "end\n"
    "redis.call('HSET', KEYS[4], 'v', ARGV[6], 'h', ARGV[4]:sub(1, " STR(LF_REDIS_H_LEN) "),\n"
    "           'c', rn, rf, rl)\n"
    "if mode == 'create' then\n"
    "  redis.call('HSET', KEYS[6], ARGV[9], id)\n"
    "elseif KEYS[7] ~= KEYS[8] then\n"
    "  redis.call('ZREM', KEYS[7], id)\n"
    "  if repo then redis.call('ZREM', KEYS[9], id) end\n"
    "end\n"
    /* a state entered: into the set of states (a list of every record,
     * or of a repo's, merges the state indexes: list_lua) */
    "if (mode == 'create' or KEYS[7] ~= KEYS[8]) and listed ~= 49 then\n"
    "  redis.call('SADD', pre .. 'states', KEYS[8]:sub(#pre + 7))\n"
    "end\n"
    "for i = a0, #ARGV do redis.call('HSET', KEYS[6], ARGV[i], id) end\n"
    "redis.call('ZADD', KEYS[8], ARGV[7], id)\n"
    "if repo then redis.call('ZADD', KEYS[10], ARGV[7], id) end\n"
    "if kids then redis.call('ZADD', kids, ARGV[7], id) end\n"
    /* a closed record has no timer to be due: in no entered index */
    "if ent_b ~= ent_a or closed then redis.call('ZREM', ent_b, id) end\n"
    "if closed then redis.call('ZREM', ent_a, id)\n"
    "else redis.call('ZADD', ent_a, entered, id) end\n"
    /* Budget counters keep 31 days, the longest window a budget may have:
     * older times are trimmed at every 16th seq (a count is by time and
     * never sees them; trimming at every commit was more calls), in an
     * older version's sorted set too. */
    "if ncount > 0 then\n"
    TADD_LUA
    "  local t = tonumber(ARGV[7])\n"
    "  for i = c0, c0 + 3 * ncount - 1, 3 do\n"
    "    tadd(KEYS[i], KEYS[i + 1], t)\n"
    "    if seq % 16 == 0 then\n"
    "      local cut = t - 2678400000000\n"
    "      ttrim(KEYS[i], KEYS[i + 1], cut)\n"
    "      redis.call('ZREMRANGEBYSCORE', KEYS[i + 2], '-inf', '(' .. cut)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if timers == 49 then redis.call('ZADD', timed, due, id)\n"
    "elseif timers == 45 then redis.call('ZREM', timed, id) end\n"
    "return 'ok'\n";

/* KEYS  1 an index (zset of ids scored by updated_at in us); or, with
 *         ARGV 6, the set of states (P states)  2 (an entered index, or P
 *         timed earliest first, not known whole here) P indexed: unless
 *         it holds ARGV 6 or 7 the answer is {'unindexed'} (redis.c)
 * ARGV  1 cursor score ('' for the first page)  2 cursor id  3 limit
 *       4 record key prefix ("lf:rec:{")  5 the lowest score listed
 *       ('-inf'; '(' and a time: the timers' tick's window on an entered
 *       index); or '>' and the highest: oldest first (a page of the
 *       timers on an entered index or P timed)  6 (every record, or a repo's) the
 *       prefix of the state indexes ("lf:state:", or "lf:sr:")  7 the repo
 * Returns {id, score, {d, v, h}, ...}: up to limit + 1 records (one more
 * than asked tells the caller there is a next page), newest first, ties
 * by id descending (oldest first: ties by id ascending), each with its
 * score and what a get's probe reads (the store answers from its cache,
 * and reads the others with the read script). After a cursor: records
 * strictly past it in that order.
 * Every record is in the index of its state (P state:<state>), a repo's
 * in its index in each state (P sr:<n>:<state>:<repo>): those of every
 * state are merged, each giving up to limit + 1, the page the first of
 * them all (one index of every record would be a write a commit more);
 * {'nostates'} when P states is not known to be whole (no '' in it: a
 * store an older version began; the caller fills it, STATES_FILL). The
 * keys are derived here, which a Redis Cluster would refuse
 * (docs/redis.md). */
static const char list_lua[] =
    "if KEYS[2] and redis.call('SISMEMBER', KEYS[2], ARGV[6]) == 0 and\n"
    "   redis.call('SISMEMBER', KEYS[2], ARGV[7]) == 0 then return {'unindexed'} end\n"
    "local cs, cid, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local asc = ARGV[5]:sub(1, 1) == '>'\n"
    "local bound = asc and ARGV[5]:sub(2) or ARGV[5]\n"
    "local range = asc and 'ZRANGEBYSCORE' or 'ZREVRANGEBYSCORE'\n"
    "local function below(a, b)\n"   /* bytewise, whatever the server's locale */
    "  for i = 1, math.min(#a, #b) do\n"
    "    local x, y = a:byte(i), b:byte(i)\n"
    "    if x ~= y then return x < y end\n"
    "  end\n"
    "  return #a < #b\n"
    "end\n"
    /* index z's first limit + 1 after the cursor: ids, scores */
    "local function page(z)\n"
    "  local ids, scores, from = {}, {}, asc and '-inf' or '+inf'\n"
    "  if cs ~= '' then\n"
    "    for _, id in ipairs(redis.call(range, z, cs, cs)) do\n"
    "      if (asc and below(cid, id)) or (not asc and below(id, cid)) then\n"
    "        ids[#ids + 1] = id\n"
    "        scores[#ids] = cs\n"
    "        if #ids > limit then break end\n"
    "      end\n"
    "    end\n"
    "    from = '(' .. cs\n"
    "  end\n"
    "  if #ids <= limit then\n"
    "    local more = redis.call(range, z, from, bound, 'WITHSCORES', 'LIMIT', 0,\n"
    "                            limit + 1 - #ids)\n"
    "    for i = 1, #more, 2 do\n"
    "      ids[#ids + 1] = more[i]\n"
    "      scores[#ids] = more[i + 1]\n"
    "    end\n"
    "  end\n"
    "  return ids, scores\n"
    "end\n"
    "local ids, scores = {}, {}\n"
    "if ARGV[6] and not KEYS[2] then\n"
    "  if redis.call('SISMEMBER', KEYS[1], '') == 0 then return {'nostates'} end\n"
    "  local all = {}\n"
    "  for _, st in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "    if st ~= '' then\n"
    "      local i2, s2 = page(ARGV[7] and ARGV[6] .. #st .. ':' .. st .. ':' .. ARGV[7]\n"
    "                          or ARGV[6] .. st)\n"
    "      for i = 1, #i2 do all[#all + 1] = {i2[i], tonumber(s2[i]), s2[i]} end\n"
    "    end\n"
    "  end\n"
    "  table.sort(all, function(a, b)\n"
    "    if a[2] ~= b[2] then return a[2] > b[2] end\n"
    "    return below(b[1], a[1])\n"
    "  end)\n"
    "  for i = 1, math.min(#all, limit + 1) do ids[i], scores[i] = all[i][1], all[i][3] end\n"
    "else\n"
    "  ids, scores = page(KEYS[1])\n"
    "end\n"
    "local out = {}\n"
    "for i, id in ipairs(ids) do\n"
    "  out[3 * i - 2] = id\n"
    "  out[3 * i - 1] = scores[i]\n"
    "  out[3 * i] = redis.call('HMGET', ARGV[4] .. id .. '}', 'd', 'v', 'h')\n"
    "end\n"
    "return out\n";

/* KEYS 1 P states;  ARGV 1 a SCAN cursor  2 the pattern of the state
 * indexes ("lf:state:*", the prefix escaped)  3 the bytes of their names
 * before the state's ("lf:state:": 9)
 * One step of filling the set of states of a store an older version
 * began (which kept no such set): the states whose index one SCAN step
 * finds go in. Returns the next cursor; at the last ('0') the set is
 * marked whole (''). A state a commit enters meanwhile is put in by
 * the commit. */
static const char states_fill_lua[] =
    "local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 1000)\n"
    "local skip = tonumber(ARGV[3])\n"
    "for _, k in ipairs(r[2]) do\n"
    "  if redis.call('TYPE', k).ok == 'zset' then\n"
    "    redis.call('SADD', KEYS[1], k:sub(skip + 1))\n"
    "  end\n"
    "end\n"
    "if r[1] == '0' then redis.call('SADD', KEYS[1], '') end\n"
    "return r[1]\n";

/* KEYS 1 head  2 log (P log);  ARGV 1 after  2 limit  3 the policy
 * sets the client knows (RESOLVE_LUA)
 * Returns {head seq, last, head hash, line(after+1), ..., line(last)}
 * where last = min(head, after + limit); a missing line is nil. A list's
 * lines in one LRANGE. */
static const char audit_log_lua[] =
    RESOLVE_LUA
    "know(ARGV[3])\n"
    "local h = redis.call('HMGET', KEYS[1], 'seq', 'hash')\n"
    "local head = tonumber(h[1] or '0')\n"
    "local after = tonumber(ARGV[1])\n"
    "local last = math.min(head, after + tonumber(ARGV[2]))\n"
    "local out = {head, last, h[2] or ''}\n"
    "local s, b = after + 1, " LOG_LIST "\n"
    "while s <= last do\n"
    "  local n = math.floor((s - 1) / b)\n"
    "  local e = math.min(last, (n + 1) * b)\n"
    "  local l = redis.call('LRANGE', KEYS[2] .. ':' .. n, (s - 1) % b, (e - 1) % b)\n"
    "  for q = s, e do\n"
    "    local v = l[q - s + 1]\n"
    "    if not v or v == '' then v = redis.call('HGET', KEYS[2], q)\n"
    "    else v = resolve(KEYS[2], v) end\n"
    "    out[#out + 1] = v\n"
    "  end\n"
    "  s = e + 1\n"
    "end\n"
    "return out\n";

/* KEYS 1 rec:log  2 log (P log)  3 rec;  ARGV 1 after  2 limit  3 the
 * policy sets the client knows (RESOLVE_LUA)
 * Returns {0} for a record that never existed, else {1, seq, line, ...}
 * for the record's first `limit` entries with seq > after. */
static const char audit_rec_lua[] =
    LINE_LUA
    SEQS_LUA
    "know(ARGV[3])\n"
    "local _, seqs, exists = seqs_of(KEYS[3], KEYS[1])\n"
    "if not exists then return {0} end\n"
    "local after, limit = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local pick = {}\n"
    "for _, s in ipairs(seqs) do\n"
    "  if tonumber(s) > after then\n"
    "    pick[#pick + 1] = s\n"
    "    if #pick == limit then break end\n"
    "  end\n"
    "end\n"
    "local out = {1}\n"
    "for i, s in ipairs(pick) do\n"
    "  out[2 * i] = s\n"
    "  out[2 * i + 1] = line(KEYS[2], s)\n"
    "end\n"
    "return out\n";

/* KEYS 1 idem  2 log (P log);  ARGV 1 idempotency key  2 the policy sets
 * the client knows (RESOLVE_LUA)
 * Returns {} if no entry holds the key, else {seq, line} (no line: the
 * log lost it). The line is packed (redis_pack.c): the client reads the
 * record it names, if any, with the read script. */
static const char find_key_lua[] =
    LINE_LUA
    "know(ARGV[2])\n"
    "local seq = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if not seq then return {} end\n"
    "local l = line(KEYS[2], seq)\n"
    "if not l then return {seq} end\n"
    "return {seq, l}\n";

/* KEYS 1 log (P log);  ARGV 1 record key prefix ("lf:rec:{"), 2 the
 * policy sets the client knows (RESOLVE_LUA), 3... ids
 * Returns {record (REC_LUA), ...}, one for each id: what a get or a list
 * reads when the cache does not hold the record (its keys are derived
 * here, as the list script's). */
static const char read_lua[] =
    REC_LUA
    "know(ARGV[2])\n"
    "local out = {}\n"
    "for i = 3, #ARGV do\n"
    "  local k = ARGV[1] .. ARGV[i] .. '}'\n"
    "  out[i - 2] = rec(k, k .. ':log', KEYS[1])\n"
    "end\n"
    "return out\n";

/* KEYS 1... budget counters, each as three keys: its times' chunks and
 * tail (TIMES_LUA) and an older version's sorted set of it: an actor's or a person's and, for
 * those, the same name's b (redis.c)
 * ARGV 1 since (us)
 * Returns {n, earliest time (us) or ''}: the transitions since then. */
static const char count_lua[] =
    TCOUNT_LUA
    "local n, first, since = 0, nil, tonumber(ARGV[1])\n"
    "for i = 1, #KEYS, 3 do\n"
    "  local c, f = tcount(KEYS[i], KEYS[i + 1], since)\n"
    "  local z = redis.call('ZRANGEBYSCORE', KEYS[i + 2], ARGV[1], '+inf', 'WITHSCORES',\n"
    "                       'LIMIT', 0, 1)\n"
    "  n = n + c + redis.call('ZCOUNT', KEYS[i + 2], ARGV[1], '+inf')\n"
    "  if z[2] and (not f or tonumber(z[2]) < f) then f = tonumber(z[2]) end\n"
    "  if f and (not first or f < first) then first = f end\n"
    "end\n"
    "return {n, first and string.format('%.0f', first) or ''}\n";

/* KEYS 1 a zset: a state's entered index, or P timed  2 (the last page
 * of a pass that filled it) P indexed;  ARGV 1 record key prefix
 * ("lf:rec:{")  2 (with KEYS 2) what to add to P indexed, then (id,
 * version, score) for each record: what a full listing of the state
 * found and when each entered it, or records scored in P timed and their
 * earliest due. Each goes in if it is still at that version (else a
 * commit since put it where it belongs). Returns how many went in. */
static const char ent_fill_lua[] =
    "local n = 0\n"
    "for i = 3, #ARGV, 3 do\n"
    "  if redis.call('HGET', ARGV[1] .. ARGV[i] .. '}', 'v') == ARGV[i + 1] then\n"
    "    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "if KEYS[2] then redis.call('SADD', KEYS[2], ARGV[2]) end\n"
    "return n\n";

static const char *const sources[LF_SCRIPT__COUNT] = {
    commit_lua, list_lua, audit_log_lua, audit_rec_lua, find_key_lua, count_lua, ent_fill_lua,
    read_lua, states_fill_lua,
};

const char *lf_redis_script_src(lf_redis_script id) { return sources[id]; }

void lf_redis_script_sha(lf_redis_script id, char out[41]) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    /* Redis names a script by its SHA-1 */
    if (!EVP_Digest(sources[id], strlen(sources[id]), d, &n, EVP_sha1(), NULL) || n != 20)
        abort();
    lf_hex(d, 20, out);
}
