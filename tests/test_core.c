/* test_core.c -- unit tests of src/core: the hash chain under every kind
 * of tampering, timestamps, ids, the string map, entry parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "../src/core/buf.h"
#include "../src/core/clock.h"
#include "../src/core/entry.h"
#include "../src/core/hash.h"
#include "../src/core/map.h"
#include "../src/core/record.h"
#include "../src/core/text.h"
#include "../src/core/mem.h"
#include "../src/core/json.h"
#include <cjson/cJSON.h>
#include <dirent.h>

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 6

/* A chain of N sealed lines: one created entry and N-1 transitions. */
static void build_chain(char *lines[N]) {
    static const char *states[N] = {"issue_created", "task_queued", "pr_created",
                                    "ci_pending",    "ci_passed",   "merged"};
    char prev[LF_HASH_LEN + 1];
    memcpy(prev, LF_GENESIS, sizeof prev);
    for (int i = 0; i < N; i++) {
        lf_entry e = {0};
        lf_buf line = LF_BUF_INIT;
        e.record_id = "loop-0123456789abcdef";
        e.kind = i ? LF_ENTRY_TRANSITION : LF_ENTRY_CREATED;
        e.version = (uint64_t)i + 1;
        e.from_state = i ? states[i - 1] : NULL;
        e.to_state = states[i];
        e.trigger = i ? "t" : "created";
        e.actor = "tester";
        lf_ts_format(1700000000000000LL + i, e.timestamp);
        e.metadata = i == 2 ? "{\"k\":\"v \\\"q\\\"\"}" : NULL;
        e.record = i ? NULL : "{\"ref\":\"r\",\"workflow\":\"loopforge\"}";
        lf_entry_seal(&e, (uint64_t)i + 1, prev, &line);
        memcpy(prev, e.hash, sizeof prev);
        lines[i] = lf_buf_steal(&line);
    }
}

/* Feeds lines; returns the index of the first refused line or -1. */
static int verify(char **lines, int n, char *err, size_t errlen) {
    lf_chain c;
    lf_chain_init(&c);
    for (int i = 0; i < n; i++)
        if (lf_chain_feed(&c, lines[i], strlen(lines[i]), err, errlen)) return i;
    return -1;
}

static void free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
}

static void chain_intact(void **state) {
    (void)state;
    char *lines[N], err[256];
    build_chain(lines);
    assert_int_equal(verify(lines, N, err, sizeof err), -1);
    free_lines(lines, N);
}

/* Every single byte of every line, changed, is caught at that line. */
static void chain_modified_byte(void **state) {
    (void)state;
    char *lines[N], err[256];
    build_chain(lines);
    for (int i = 0; i < N; i++) {
        size_t len = strlen(lines[i]);
        for (size_t k = 0; k < len; k++) {
            char was = lines[i][k];
            lines[i][k] = was == 'a' ? 'b' : (was == '1' ? '2' : 'a');
            int bad = verify(lines, N, err, sizeof err);
            /* A changed hash digit is caught by the line itself (hash
             * mismatch) or, at worst, by the next line's prev. */
            assert_true(bad == i || bad == i + 1);
            assert_true(bad >= 0);
            lines[i][k] = was;
        }
    }
    free_lines(lines, N);
}

static void chain_deleted_swapped_inserted(void **state) {
    (void)state;
    char *lines[N], *t[N + 1], err[256];
    build_chain(lines);
    /* deleted */
    for (int d = 0; d < N - 1; d++) {
        int n = 0;
        for (int i = 0; i < N; i++)
            if (i != d) t[n++] = lines[i];
        assert_int_equal(verify(t, n, err, sizeof err), d);
        assert_non_null(strstr(err, "seq"));
    }
    /* swapped neighbours */
    for (int s = 0; s < N - 1; s++) {
        memcpy(t, lines, sizeof lines);
        t[s] = lines[s + 1];
        t[s + 1] = lines[s];
        assert_int_equal(verify(t, N, err, sizeof err), s);
    }
    /* a duplicated line inserted */
    for (int s = 0; s < N; s++) {
        int n = 0;
        for (int i = 0; i < N; i++) {
            t[n++] = lines[i];
            if (i == s) t[n++] = lines[i];
        }
        assert_int_equal(verify(t, n, err, sizeof err), s + 1);
    }
    free_lines(lines, N);
}

/* Re-sealing a modified entry with a fresh hash still breaks the next
 * link: the forger would have to rewrite the whole tail. */
static void chain_resealed_forgery(void **state) {
    (void)state;
    char *lines[N], err[256];
    build_chain(lines);
    lf_entry_doc doc;
    assert_int_equal(lf_entry_parse(lines[2], strlen(lines[2]), &doc, err, sizeof err),
                     0);
    doc.e.actor = "mallory";
    lf_buf line = LF_BUF_INIT;
    char prev[LF_HASH_LEN + 1];
    memcpy(prev, doc.e.prev, sizeof prev);
    lf_entry_seal(&doc.e, doc.e.seq, prev, &line);
    free(lines[2]);
    lines[2] = lf_buf_steal(&line);
    lf_entry_doc_free(&doc);
    assert_int_equal(verify(lines, N, err, sizeof err), 3);
    assert_non_null(strstr(err, "seq 4"));
    free_lines(lines, N);
}

static void entry_parse_rejects(void **state) {
    (void)state;
    static const char *bad[] = {
        "",
        "{",
        "[]",
        "{\"seq\":1}",
        "{\"seq\":-1,\"record_id\":\"x\",\"kind\":\"created\"}",
    };
    lf_entry_doc doc;
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(lf_entry_parse(bad[i], strlen(bad[i]), &doc, err, sizeof err),
                         -1);
    char *lines[N];
    build_chain(lines);
    /* A known line parses; with its kind renamed it does not. */
    assert_int_equal(lf_entry_parse(lines[1], strlen(lines[1]), &doc, err, sizeof err),
                     0);
    assert_string_equal(doc.e.trigger, "t");
    assert_int_equal(doc.e.kind, LF_ENTRY_TRANSITION);
    lf_entry_doc_free(&doc);
    char *k = strstr(lines[1], "\"transition\"");
    memcpy(k, "\"transitiox\"", 12);
    assert_int_equal(lf_entry_parse(lines[1], strlen(lines[1]), &doc, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "kind"));
    free_lines(lines, N);
}

/* A line edited as `from` -> `to` (the first place it appears) is
 * refused by both readers, the replay's and the verifier's. */
static void both_refuse(const char *line, const char *from, const char *to) {
    const char *at = strstr(line, from);
    if (!at) fail_msg("no '%s' in the line", from);
    lf_buf b = LF_BUF_INIT;
    lf_buf_add(&b, line, (size_t)(at - line));
    lf_buf_puts(&b, to);
    lf_buf_puts(&b, at + strlen(from));
    lf_entry_doc doc;
    char err[256];
    if (lf_entry_parse(b.p, b.len, &doc, err, sizeof err) != -1)
        fail_msg("the strict parse took %s", b.p);
    if (lf_entry_read(b.p, b.len, &doc, err, sizeof err) != -1)
        fail_msg("the replay's reader took %s", b.p);
    lf_buf_free(&b);
}

/* The replay (lf_entry_read) and the verifier (lf_entry_parse) read a
 * line alike: what one refuses the other refuses too (fuzz_entry checks
 * it over any input; these are the differences it found). */
static void entry_readers_agree(void **state) {
    (void)state;
    char *lines[N], err[256];
    build_chain(lines);
    const char *l = lines[2];
    lf_entry_doc a, b;
    assert_int_equal(lf_entry_parse(l, strlen(l), &a, err, sizeof err), 0);
    assert_int_equal(lf_entry_read(l, strlen(l), &b, err, sizeof err), 0);
    assert_string_equal(a.e.actor, b.e.actor);
    lf_entry_doc_free(&a);
    lf_entry_doc_free(&b);
    both_refuse(l, "\"actor\":\"tester\"", "\"actor\":\"tester\",\"actor\":\"mallet\"");
    both_refuse(l, "\"actor\":\"tester\",", "");                   /* a key missing */
    both_refuse(l, "\"actor\":\"tester\"", "\"ac\x14tor\":\"tester\"");
    both_refuse(l, "\"actor\"", "\"actor\"\x14");                /* cJSON's whitespace */
    both_refuse(l, "\"trigger\":\"t\"", "\"trigger\":\"t\x01\"");
    both_refuse(l, "\"k\":\"v", "\"n\":-,\"k\":\"v");          /* a number "-" */
    both_refuse(l, "\"metadata\":{", "\"metadata\":null,\"x\":{");
    both_refuse(l, "2023", "20x3");                                 /* a timestamp */
    both_refuse(l, "{\"seq\"", " {\"seq\"");
    both_refuse(l, "\"}", "\"}x");                                   /* after the object */
    both_refuse(l, "\"seq\":3", "\"seq\":9007199254740993");
    both_refuse(l, "\"version\":3", "\"version\":+3");           /* cJSON's numbers */
    both_refuse(l, "\"trigger\":\"t\"", "\"trigger\":\"\\u02dt\"");  /* cJSON's U+0000 */
    /* A control byte wherever it is: each of the scan's 16 lanes, and the
     * bytes after the last whole 16 (each place in turn: the scan takes
     * the least byte of each lane and looks at them once, at the end). */
    size_t len = strlen(l);
    char *c = lf_xstrdup(l);
    for (size_t i = 0; i < len; i++) {
        char was = c[i];
        c[i] = (char)(i % 2 ? 0x1f : 0x00);
        assert_int_not_equal(lf_entry_read(c, len, &b, err, sizeof err), 0);
        assert_int_not_equal(lf_entry_parse(c, len, &a, err, sizeof err), 0);
        c[i] = was;
    }
    free(c);
    free_lines(lines, N);
}

static void timestamps(void **state) {
    (void)state;
    char ts[LF_TS_LEN + 1];
    int64_t us;
    lf_ts_format(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000000Z");
    lf_ts_format(1763862537000120LL, ts);
    assert_string_equal(ts, "2025-11-23T01:48:57.000120Z");
    assert_int_equal(lf_ts_parse(ts, &us), 0);
    assert_true(us == 1763862537000120LL);
    /* Same second twice (cached prefix), then another second. */
    lf_ts_format(1763862537999999LL, ts);
    assert_string_equal(ts, "2025-11-23T01:48:57.999999Z");
    lf_ts_format(1763862538000000LL, ts);
    assert_string_equal(ts, "2025-11-23T01:48:58.000000Z");
    /* A parse remembers its second: the next in the same second reads
     * only the fraction, which is still checked, as is the length. */
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:58.000007Z", &us), 0);
    assert_true(us == 1763862538000007LL);
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:58.999999Z", &us), 0);
    assert_true(us == 1763862538999999LL);
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:58.99999xZ", &us), -1);
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:58.999999", &us), -1);
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:58.999999Zz", &us), -1);
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:58.999999z", &us), -1);
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:59.000000Z", &us), 0);
    assert_true(us == 1763862539000000LL);
    assert_int_equal(lf_ts_parse("2025-11-23T01:48:58Z", &us), -1);
    assert_int_equal(lf_ts_parse("2025-13-23T01:48:58.000000Z", &us), -1);
    assert_int_equal(lf_ts_parse("2025-11-23 01:48:58.000000Z", &us), -1);
    /* The parse is arithmetic, not timegm(): the same instant for every
     * date from year 1 to 9999 (a day in each month, leap days, a day
     * past the month's end and a 60th second counting on, as timegm
     * does), and each formats back to itself where it is a real date. */
    for (int y = 1; y <= 9999; y += y < 1896 || y > 2104 ? 97 : 1) {
        for (int mo = 1; mo <= 12; mo++) {
            static const int days[] = {1, 28, 29, 30, 31};
            for (size_t k = 0; k < sizeof days / sizeof *days; k++) {
                int d = days[k], h = (y + mo) % 24, mi = (d * 7) % 60, sec = (y + d) % 61;
                char in[64];
                snprintf(in, sizeof in, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", y, mo, d, h, mi,
                         sec, (y * mo * d) % 1000000);
                struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                                .tm_hour = h, .tm_min = mi, .tm_sec = sec};
                assert_int_equal(lf_ts_parse(in, &us), 0);
                assert_true(us == (int64_t)timegm(&tm) * 1000000 + (y * mo * d) % 1000000);
                lf_ts_format(us, ts);
                if (sec < 60 && tm.tm_mday == d) assert_string_equal(ts, in);
            }
        }
    }
}

static void ids(void **state) {
    (void)state;
    char a[LF_ID_LEN + 1], b[LF_ID_LEN + 1];
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(lf_id_new(a), 0);
        assert_int_equal(lf_id_new(b), 0);
        assert_true(lf_id_valid(a));
        assert_string_not_equal(a, b);
    }
    assert_false(lf_id_valid("loop-0123"));
    assert_false(lf_id_valid("loop-0123456789ABCDEF"));
    assert_false(lf_id_valid("pool-0123456789abcdef"));
}

static void map_many(void **state) {
    (void)state;
    enum { M = 5000 };
    lf_map m = LF_MAP_INIT;
    static char keys[M][16];
    for (int i = 0; i < M; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        lf_map_put(&m, keys[i], &keys[i]);
    }
    assert_int_equal(m.len, M);
    for (int i = 0; i < M; i += 2) assert_ptr_equal(lf_map_del(&m, keys[i]), &keys[i]);
    for (int i = 0; i < M; i++) {
        void *v = lf_map_get(&m, keys[i]);
        if (i % 2) assert_ptr_equal(v, &keys[i]);
        else assert_null(v);
    }
    assert_null(lf_map_del(&m, "absent"));
    assert_int_equal(m.len, M / 2);
    lf_map_free(&m);
}

/* Keys of every length from 0 to past the longest a hash tags (255), each
 * in a block of its own exact size (ASan catches a compare that reads
 * past one), found again; a key one byte longer or shorter, or with its
 * last byte changed, is not. */
static void map_key_lengths(void **state) {
    (void)state;
    enum { KEYS = 300 };
    lf_map m = LF_MAP_INIT;
    char *keys[KEYS];
    for (int n = 0; n < KEYS; n++) {
        keys[n] = malloc((size_t)n + 1);
        assert_non_null(keys[n]);
        for (int i = 0; i < n; i++) keys[n][i] = (char)('a' + (i * 7 + n) % 26);
        keys[n][n] = '\0';
        lf_map_put(&m, keys[n], &keys[n]);
    }
    assert_int_equal(m.len, KEYS);
    char probe[KEYS + 2];
    for (int n = 0; n < KEYS; n++) {
        memcpy(probe, keys[n], (size_t)n + 1);
        assert_ptr_equal(lf_map_get(&m, probe), &keys[n]);
        probe[n] = 'x';                              /* one byte longer */
        probe[n + 1] = '\0';
        assert_null(lf_map_get(&m, probe));
        if (n == 0) continue;
        probe[n] = '\0';
        probe[n - 1] = (char)(probe[n - 1] == 'z' ? 'y' : 'z');   /* last byte */
        assert_null(lf_map_get(&m, probe));
        probe[n - 1] = '\0';        /* one byte shorter (for n 1: keys[0], "") */
        if (n > 1) assert_null(lf_map_get(&m, probe));
    }
    for (int n = 0; n < KEYS; n++) assert_ptr_equal(lf_map_del(&m, keys[n]), &keys[n]);
    assert_int_equal(m.len, 0);
    lf_map_free(&m);
    for (int n = 0; n < KEYS; n++) free(keys[n]);
}

/* The members a walk over every position finds: each once, as many as
 * the map holds. */
static void map_walk_check(const lf_map *m, const bool *in, char (*keys)[16], size_t nkeys) {
    size_t n = 0;
    static bool seen[20000];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < lf_map_span(m); i++) {
        const lf_map_slot *e = lf_map_at(m, i);
        if (!e) continue;
        size_t k = (size_t)((char (*)[16])e->val - keys);
        assert_true(k < nkeys && in[k] && !seen[k]);
        assert_ptr_equal(lf_map_val(m, i), e->val);
        seen[k] = true;
        n++;
    }
    assert_int_equal(n, m->len);
}

/* A map grows a few members at a time (map.h): random puts, replacing
 * puts and dels against what it should hold, every member found at
 * every step and by a walk, through growths where its members are in
 * two tables -- and no put moves a large table's members all at once. */
static void map_grows_a_few_at_a_time(void **state) {
    (void)state;
    enum { K = 20000, OPS = 200000 };
    static char keys[K][16];
    static bool in[K];
    memset(in, 0, sizeof in);
    lf_map m = LF_MAP_INIT;
    /* A put that replaces, when the map is as full as it grows at (3/4
     * of 64): it stays one member, whichever it is (the growth moves
     * some at once, the others later). */
    for (int r = 0; r < 48; r++) {
        for (int i = 0; i < 48; i++) {
            snprintf(keys[i], sizeof keys[i], "k%d", i);
            lf_map_put(&m, keys[i], &keys[i]);
            in[i] = true;
        }
        assert_int_equal(m.cap, 64);
        lf_map_put(&m, keys[r], &keys[r]);
        assert_int_equal(m.len, 48);
        map_walk_check(&m, in, keys, K);
        lf_map_free(&m);
    }
    memset(in, 0, sizeof in);
    uint64_t x = 88172645463325252ULL;
    size_t len = 0, twotables = 0;
    for (int i = 0; i < K; i++) snprintf(keys[i], sizeof keys[i], "k%d", i);
    for (int op = 0; op < OPS; op++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* mostly puts early on (growing), then as many dels as puts */
        size_t k = (size_t)(x % K);
        bool del = (x >> 32) % 3 == 0 && op > OPS / 4;
        size_t before = m.oldcap;
        if (del) {
            void *v = lf_map_del(&m, keys[k]);
            assert_ptr_equal(v, in[k] ? (void *)&keys[k] : NULL);
            if (in[k]) len--;
            in[k] = false;
        } else {
            lf_map_put(&m, keys[k], &keys[k]);
            if (!in[k]) len++;
            in[k] = true;
        }
        if (!before && m.oldcap >= 1024) assert_true(m.moved < m.oldcap / 4);
        twotables += m.old != NULL;
        assert_int_equal(m.len, len);
        assert_ptr_equal(lf_map_get(&m, keys[k]), in[k] ? (void *)&keys[k] : NULL);
        if (op % 9973 == 0 || (m.old && op % 101 == 0)) {
            for (size_t j = 0; j < K; j++)
                assert_ptr_equal(lf_map_get(&m, keys[j]), in[j] ? (void *)&keys[j] : NULL);
            map_walk_check(&m, in, keys, K);
        }
    }
    assert_true(twotables > 1000);
    for (size_t j = 0; j < K; j++)
        if (in[j]) assert_ptr_equal(lf_map_del(&m, keys[j]), &keys[j]);
    assert_int_equal(m.len, 0);
    map_walk_check(&m, in, keys, 0);
    lf_map_free(&m);
}

/* lf_json_clean_len against a byte at a time: every start in a 16-byte
 * block, lengths across several blocks, each byte that ends a clean run
 * (NUL aside: the end) at every place, and the bytes either side of the
 * ranges (0x1f/0x20, 0x7f, 0x80, 0xff) that do not. In a heap block of
 * exactly the string's size, so a read past the NUL that mattered would
 * be a wrong answer (the loads past it are the aligned block's). */
static size_t clean_len_ref(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || s[n] == '"' || s[n] == '\\') return SIZE_MAX;
    return n;
}

static void json_clean_len_every_place(void **state) {
    (void)state;
    static const unsigned char special[] = {0x01, 0x1f, '"', '\\', '\n'};
    static const unsigned char plain[] = {' ', 0x7f, 0x80, 0xff, 'a', '!', '#', '[', ']'};
    char *block = lf_xmalloc(128);
    for (size_t start = 0; start < 16; start++) {
        for (size_t len = 0; len < 70; len++) {
            char *s = block + start;
            for (size_t i = 0; i < len; i++)
                s[i] = (char)plain[(i + start) % sizeof plain];
            s[len] = '\0';
            if (start) s[-1] = '"';         /* before the string: not its own */
            assert_int_equal(lf_json_clean_len(s), len);
            char *own = lf_xstrdup(s);      /* a block of exactly its size */
            assert_int_equal(lf_json_clean_len(own), len);
            free(own);
            for (size_t at = 0; at < len; at++) {
                char keep = s[at];
                s[at] = (char)special[(at + len) % sizeof special];
                assert_int_equal(lf_json_clean_len(s), SIZE_MAX);
                assert_int_equal(lf_json_clean_len(s), clean_len_ref(s));
                s[at] = keep;
            }
        }
    }
    free(block);
}

/* lf_hex against printf's %02x: every byte value, at every length up to
 * 40 (the 16-byte steps and the rest after them). */
static void hex_every_byte(void **state) {
    (void)state;
    unsigned char in[256];
    for (int i = 0; i < 256; i++) in[i] = (unsigned char)(i * 7 + 3);
    char got[2 * 256 + 1], want[2 * 256 + 1];
    for (size_t n = 0; n <= 256; n = n < 40 ? n + 1 : n + 36) {
        for (size_t i = 0; i < n; i++) snprintf(want + 2 * i, 3, "%02x", in[i]);
        want[2 * n] = '\0';
        memset(got, 'X', sizeof got);
        lf_hex(in, n, got);
        assert_string_equal(got, want);
    }
}

/* lf_ts_before is time order, which is byte order: against strcmp on
 * pairs that differ in each place, the fraction's last digit included. */
static void ts_before_is_byte_order(void **state) {
    (void)state;
    const char *base = "2026-12-07T10:20:06.509355Z";
    char a[LF_TS_LEN + 1], b[LF_TS_LEN + 1];
    for (int i = 0; i < LF_TS_LEN; i++) {
        if (!strchr("0123456789", base[i])) continue;
        for (char d = '0'; d <= '9'; d++) {
            memcpy(a, base, sizeof a);
            memcpy(b, base, sizeof b);
            b[i] = d;
            assert_int_equal(lf_ts_before(a, b), strcmp(a, b) < 0);
            assert_int_equal(lf_ts_before(b, a), strcmp(b, a) < 0);
        }
    }
    assert_false(lf_ts_before(base, base));
}

/* lf_text_check at every start in a 16-byte block and lengths across
 * blocks: ASCII passes, a byte that is not UTF-8 is found at each place
 * (and named), a valid two-byte sequence passes; bytes that are not the
 * string's, before it and after its NUL, change nothing. */
static void text_check_every_place(void **state) {
    (void)state;
    char block[128], err[128], want[64];
    for (size_t start = 0; start < 16; start++) {
        for (size_t len = 0; len < 60; len++) {
            memset(block, '\xff', sizeof block);
            char *s = block + start;
            for (size_t i = 0; i < len; i++) s[i] = (char)('a' + i % 26);
            s[len] = '\0';
            assert_int_equal(lf_text_check(s, "f", err, sizeof err), 0);
            for (size_t at = 0; at < len; at++) {
                s[at] = '\xff';
                assert_int_equal(lf_text_check(s, "f", err, sizeof err), -1);
                snprintf(want, sizeof want, "f: not valid UTF-8 (byte %zu)", at);
                assert_string_equal(err, want);
                s[at] = (char)('a' + at % 26);
            }
            if (len >= 2) {
                s[len - 2] = '\xc3', s[len - 1] = '\xbc';     /* u-umlaut */
                assert_int_equal(lf_text_check(s, "f", err, sizeof err), 0);
            }
        }
    }
}

static void json_escaping_round_trip(void **state) {
    (void)state;
    lf_buf b = LF_BUF_INIT;
    lf_buf_json_str(&b, "a\"b\\c\n\t\x01 \xc3\xa9");
    assert_string_equal(lf_buf_str(&b), "\"a\\\"b\\\\c\\n\\t\\u0001 \xc3\xa9\"");
    lf_buf_reset(&b);
    lf_buf_json_str(&b, NULL);
    assert_string_equal(lf_buf_str(&b), "null");
    lf_buf_reset(&b);
    lf_buf_json_int(&b, INT64_MIN);
    assert_string_equal(lf_buf_str(&b), "-9223372036854775808");
    lf_buf_free(&b);
}

/* UTF-8: RFC 3629's table, byte by byte. */
static void utf8_validity(void **state) {
    (void)state;
    static const struct {
        const char *s;
        size_t len, bad;
    } cases[] = {
        {"plain ascii", 11, 11},
        {"\xc3\xbc \xe2\x82\xac \xf0\x9f\x98\x80", 11, 11},     /* ü € 😀 */
        {"\xff\xfe", 2, 0},
        {"a\x80", 2, 1},                                         /* lone continuation */
        {"\xc0\xaf", 2, 0},                                      /* overlong '/' */
        {"\xe0\x80\xaf", 3, 0},                                  /* overlong, 3 bytes */
        {"\xed\xa0\x80", 3, 0},                                  /* a surrogate */
        {"\xf4\x90\x80\x80", 4, 0},                              /* above U+10FFFF */
        {"ab\xe2\x82", 4, 2},                                    /* cut short */
        {"\xf0\x9f\x98\x80\xc3", 5, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_int_equal(lf_utf8_invalid(cases[i].s, cases[i].len), cases[i].bad);
    /* ASCII is taken eight bytes a step: a bad byte, and a good sequence
     * across a step's end, at every place of a longer text. */
    for (size_t at = 0; at < 24; at++) {
        char t[26];
        memset(t, 'a', sizeof t);
        t[at] = '\xff';
        assert_int_equal(lf_utf8_invalid(t, sizeof t), at);
        memset(t, 'a', sizeof t);
        memcpy(t + at, "\xe2\x82\xac", 3);                   /* € */
        assert_int_equal(lf_utf8_invalid(t, sizeof t), sizeof t);
        assert_int_equal(lf_utf8_invalid(t, at + 2), at);      /* cut short */
    }
    char err[128];
    assert_int_equal(lf_text_check("fine \xc3\xbc", "ref", err, sizeof err), 0);
    assert_int_equal(lf_text_check(NULL, "ref", err, sizeof err), 0);
    assert_int_equal(lf_text_check("ab\xff", "ref", err, sizeof err), -1);
    assert_string_equal(err, "ref: not valid UTF-8 (byte 2)");
}

/* JSON text: the problem and the path down to the string that has it. */
static void json_text_paths(void **state) {
    (void)state;
    static const struct {
        const char *text, *what, *want;
    } cases[] = {
        {"{\"ref\":\"ok \\u00fc \\\"q\\\" \\\\\",\"n\":[1,{\"x\":\"\xc3\xbc\"}]}", NULL,
         NULL},
        {"{\"ref\":\"\xff\xfe\"}", NULL, "ref: not valid UTF-8"},
        {"{\"ref\":\"abc\\u0000def\"}", NULL, "ref: contains a NUL character (\\u0000)"},
        {"{\"ref\":\"abc\\\\u0000def\"}", NULL, NULL}, /* an escaped backslash */
        {"{\"a\":{\"b\":[\"x\",\"y\\u0000\"]}}", "metadata",
         "metadata.a.b[1]: contains a NUL "
         "character (\\u0000)"},
        {"{\"a\":1,\"b\":\"tab\there\"}", NULL,
         "b: contains a raw control character (escape it)"},
        {"{\"k\":{\"\xc0\xaf\":1}}", "metadata", "metadata.k (a key): not valid UTF-8"},
        {"{\"\xc0\xaf\":1}", NULL, "a key: not valid UTF-8"},
        {"[\"a\",\"b\",[\"c\",\"\xff\"]]", "labels", "labels[2][1]: not valid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[256] = "";
        int rc = lf_json_text_check(cases[i].text, strlen(cases[i].text), cases[i].what,
                                    err, sizeof err);
        if (!cases[i].want) {
            if (rc) fail_msg("case %zu: %s", i, err);
        } else {
            assert_int_equal(rc, -1);
            assert_string_equal(err, cases[i].want);
        }
    }
    /* a raw NUL inside a string, which strlen would not see */
    static const char raw[] = "{\"ref\":\"abc\0def\"}";
    char err[128];
    assert_int_equal(lf_json_text_check(raw, sizeof raw - 1, NULL, err, sizeof err), -1);
    assert_string_equal(err, "ref: contains a NUL character");
    /* Keys are found as decoded, short and plain (copied as they are) or
     * escaped or long (decoded): the first of a repeated key counts. */
    static const char obj[] =
        "{\"a\":1,\"q\\\"k\":2,\"\\u00fc\":3,"
        "\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\":4,"
        "\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\":5,\"a\":6}";
    static const struct {
        const char *key, *want;
    } keys[] = {
        {"a", "1"},
        {"q\"k", "2"},
        {"\xc3\xbc", "3"},
        {"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "4"},
        {"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "5"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v;
        size_t n;
        assert_true(lf_json_get(obj, sizeof obj - 1, keys[i].key, &v, &n));
        assert_int_equal(n, 1);
        assert_memory_equal(v, keys[i].want, 1);
    }
    const char *v;
    size_t n;
    assert_false(lf_json_get(obj, sizeof obj - 1, "q", &v, &n));
    assert_false(lf_json_get("{\"unterminated:1}", 16, "unterminated", &v, &n));
}

/* The canonical form keeps integers exactly and otherwise prints what
 * cJSON prints, so stored bytes stay what they were for every value a
 * double can hold. */
static void json_canonical(void **state) {
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {" { \"a\" : 1 , \"b\" : [ true , null , \"x\" ] } ",
         "{\"a\":1,\"b\":[true,null,\"x\"]}"},
        {"{\"big\":9007199254740993,\"neg\":-9223372036854775807}",
         "{\"big\":9007199254740993,\"neg\":-9223372036854775807}"},
        {"[1.0,1e3,2.5,-0,007,0.1,1e400]", "[1,1000,2.5,0,7,0.1,null]"},
        {"\"caf\\u00e9 \\/ \\u0001 \\t \\\" \\ud83d\\ude00\"",
         "\"caf\xc3\xa9 / \\u0001 \\t \\\" \xf0\x9f\x98\x80\""},
        {"{\"k\":{}}", "{\"k\":{}}"},
        /* strings read run by run: escaped quotes inside, a backslash
         * last, escapes back to back, escaped keys */
        {"\"x\\\"y\\\"z\"", "\"x\\\"y\\\"z\""},
        {"[\"\\\\\",\"\\\\\\\"\\n\\u0041\"]", "[\"\\\\\",\"\\\\\\\"\\nA\"]"},
        {"{\"k\\\"\":\"v\\\\\"}", "{\"k\\\"\":\"v\\\\\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lf_buf b = LF_BUF_INIT;
        assert_true(lf_json_canon(cases[i].in, strlen(cases[i].in), &b));
        assert_string_equal(lf_buf_str(&b), cases[i].want);
        lf_buf_free(&b);
    }
    static const char *const bad[] = {"{\"a\":}", "[1,]", "\"\\ud800\"", "{\"a\":1} x",
                                      "tru", "\"abc\\\"", "\"abc\\", "\"\\q\"",
                                      "[\"a\\\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lf_buf b = LF_BUF_INIT;
        assert_false(lf_json_canon(bad[i], strlen(bad[i]), &b));
        lf_buf_free(&b);
    }
    const char *obj = "{\"n\":9007199254740993,\"s\":\"x\",\"o\":{\"n\":1},\"n2\":3.0}",
               *v;
    size_t vl;
    int64_t n;
    assert_true(lf_json_get(obj, strlen(obj), "o", &v, &vl));
    assert_int_equal(vl, 7);
    assert_memory_equal(v, "{\"n\":1}", 7);
    assert_true(lf_json_get(obj, strlen(obj), "n", &v, &vl));
    assert_int_equal(lf_json_int(v, vl, &n), 0);
    assert_true(n == 9007199254740993LL);
    assert_true(lf_json_get(obj, strlen(obj), "n2", &v, &vl));
    assert_int_equal(lf_json_int(v, vl, &n), 0);
    assert_int_equal(n, 3);
    assert_false(lf_json_get(obj, strlen(obj), "missing", &v, &vl));
    assert_true(lf_json_get(obj, strlen(obj), "s", &v, &vl));
    assert_int_equal(lf_json_int(v, vl, &n), -1);
    /* arrays, element by element */
    const char *arr = " [ 1 , {\"a\":[2,3]} , \"x\" ] ";
    static const char *const want[] = {"1", "{\"a\":[2,3]}", "\"x\""};
    lf_json_iter it;
    assert_true(lf_json_array(&it, arr, strlen(arr)));
    size_t k = 0;
    while (lf_json_next(&it, &v, &vl)) {
        assert_true(k < 3);
        assert_int_equal(vl, strlen(want[k]));
        assert_memory_equal(v, want[k], vl);
        k++;
    }
    assert_int_equal(k, 3);
    assert_false(lf_json_array(&it, obj, strlen(obj)));
}

/* Over real payloads (every fixture), the canonical form is byte for byte
 * what cJSON prints. */
static void json_canonical_matches_cjson(void **state) {
    (void)state;
    DIR *d = opendir("tests/fixtures/github");
    assert_non_null(d);
    struct dirent *de;
    int seen = 0;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".json")) continue;
        char path[512];
        snprintf(path, sizeof path, "tests/fixtures/github/%s", de->d_name);
        size_t len;
        char *text = lf_read_file(path, &len);
        assert_non_null(text);
        cJSON *j = cJSON_ParseWithLength(text, len);
        char *want = cJSON_PrintUnformatted(j);
        lf_buf b = LF_BUF_INIT;
        assert_true(lf_json_canon(text, len, &b));
        if (strcmp(lf_buf_str(&b), want) != 0) fail_msg("%s differs", de->d_name);
        lf_buf_free(&b);
        cJSON_free(want);
        cJSON_Delete(j);
        free(text);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 20);
}

/* Under ASan an impossible malloc would be ASan's own fatal report:
 * let it return NULL, as libc does, so the rule below is what runs. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* The one out-of-memory rule: an allocation that cannot be met aborts
 * with a message naming the size (mem.h); it never returns NULL. */
/* lf_record_count remembers its string comparisons by offset in the
 * record's history strings: over a long history of 40 names, where the
 * same name sits at many offsets and offsets share memo slots, it counts
 * what a plain comparison of every entry counts, for every pair and
 * wildcard. */
static void record_count_by_history(void **state) {
    (void)state;
    enum { NAMES = 40, ENTRIES = 300 };
    char names[NAMES][24];
    int seq[ENTRIES];
    for (int i = 0; i < NAMES; i++) snprintf(names[i], sizeof names[i], "state_%d", i);
    unsigned x = 12345;
    lf_buf b = LF_BUF_INIT;
    lf_buf_puts(&b, "{\"record_id\":\"loop-0123456789abcdef\",\"ref\":\"r\",\"ref_number\":null,"
                    "\"repo\":null,\"pr_url\":null,\"pr_number\":null,\"auto_merge\":false,"
                    "\"ci_status\":{},\"labels\":{},\"closed_at\":null,\"metadata\":{},"
                    "\"state\":\"");
    for (int i = 0; i < ENTRIES; i++) {
        x = x * 1103515245u + 12345u;
        /* mostly a cycle of two, now and then one of the others */
        seq[i] = (x >> 16) % 4 ? i % 2 : (int)((x >> 8) % NAMES);
        if (i && seq[i] == seq[i - 1]) seq[i] = (seq[i] + 1) % NAMES;
    }
    lf_buf_printf(&b, "%s\",\"transitions\":[", names[seq[ENTRIES - 1]]);
    for (int i = 0; i < ENTRIES; i++) {
        lf_buf_printf(&b, "%s{\"from_state\":", i ? "," : "");
        if (i) lf_buf_printf(&b, "\"%s\"", names[seq[i - 1]]);
        else lf_buf_puts(&b, "null");
        lf_buf_printf(&b,
                      ",\"to_state\":\"%s\",\"trigger\":\"t\",\"timestamp\":"
                      "\"2026-05-01T10:00:00.000000Z\",\"metadata\":{},\"actor\":\"a\"}",
                      names[seq[i]]);
    }
    lf_buf_puts(&b, "],\"created_at\":\"2026-05-01T10:00:00.000000Z\",\"updated_at\":"
                    "\"2026-05-01T10:00:00.000000Z\",\"workflow\":\"loopforge\",\"version\":300}");
    char err[128];
    lf_record *r = lf_record_from_json(b.p, b.len, err, sizeof err);
    lf_buf_free(&b);
    if (!r) fail_msg("bad record: %s", err);
    for (int f = -1; f < NAMES; f++) {
        for (int t = -1; t < NAMES; t++) {
            size_t want = 0;
            for (int i = 0; i < ENTRIES; i++)
                want += (f < 0 || (i && seq[i - 1] == f)) && (t < 0 || seq[i] == t);
            assert_int_equal(lf_record_count(r, f < 0 ? NULL : names[f], t < 0 ? NULL : names[t]),
                             want);
        }
    }
    assert_int_equal(lf_record_count(r, "state_1", "state_0") > 50, 1);
    lf_record_free(r);
}

/* A record keeps its state in itself when the name fits (state_in) and on
 * the heap when it does not: every path that sets, copies, reads back or
 * frees a state gives the name whole, and a copy keeps its own. */
static lf_entry state_entry(uint64_t version, const char *from, const char *to) {
    lf_entry e = {0};
    e.record_id = "loop-0123456789abcdef";
    e.kind = from ? LF_ENTRY_TRANSITION : LF_ENTRY_CREATED;
    e.version = version;
    e.from_state = from;
    e.to_state = to;
    e.trigger = "t";
    e.actor = "tester";
    lf_ts_format(1700000000000000LL + (int64_t)version, e.timestamp);
    e.record = from ? NULL : "{\"ref\":\"r\",\"workflow\":\"loopforge\"}";
    return e;
}

static void record_state_inline_or_heap(void **state) {
    (void)state;
    char n31[32], n32[33], n100[101];
    memset(n31, 'a', 31), n31[31] = '\0';   /* fits, with its NUL */
    memset(n32, 'b', 32), n32[32] = '\0';   /* one byte too many */
    memset(n100, 'c', 100), n100[100] = '\0';
    const char *names[] = {"s", n31, n32, n100, "ci_pending"};
    enum { NN = sizeof names / sizeof *names };
    char err[128];
    for (int a = 0; a < NN; a++) {
        int b = (a + 1) % NN, c = (a + 2) % NN;
        lf_entry e = state_entry(1, NULL, names[a]);
        lf_record *r = NULL;
        assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
        assert_string_equal(r->state, names[a]);
        e = state_entry(2, names[a], names[b]);
        assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
        assert_string_equal(r->state, names[b]);
        lf_record *d = lf_record_dup(r);
        e = state_entry(3, names[b], names[c]);
        assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
        assert_string_equal(r->state, names[c]);
        assert_string_equal(d->state, names[b]);     /* the copy's own */
        lf_buf j = LF_BUF_INIT;
        lf_record_to_json(d, &j);
        lf_record *back = lf_record_from_json(j.p, j.len, err, sizeof err);
        lf_buf_free(&j);
        if (!back) fail_msg("read back: %s", err);
        assert_string_equal(back->state, names[b]);
        lf_record_free(back);
        lf_record_free(d);
        lf_record_free(r);
    }
}

/* A close's changes: the engine's own {"closed_at":"T"} (read as it is)
 * and the same with more in it or spaced otherwise (cJSON's) close the
 * record alike; a time that is not one, in either form, is refused and
 * changes nothing. */
static void record_close_changes(void **state) {
    (void)state;
    static const char *ok[] = {
        "{\"closed_at\":\"2026-12-07T10:20:06.509355Z\"}",
        "{ \"closed_at\": \"2026-12-07T10:20:06.509355Z\" }",
        "{\"closed_at\":\"2026-12-07T10:20:06.509355Z\",\"pr_url\":null}",
    };
    static const char *bad[] = {
        "{\"closed_at\":\"2026-13-07T10:20:06.509355Z\"}",
        "{\"closed_at\":\"2026-12-07T10:20:06.509355X\"}",
        "{\"closed_at\":\"2026-12-07 10:20:06.509355Z\"}",
        "{\"closed_at\":\"2026-12-07T10:20:06.509355Z\"",
        "{\"closed_at\":\"2026-12-07T10:20:06.5093Z\"}",
    };
    char err[256];
    for (size_t i = 0; i < sizeof ok / sizeof *ok + sizeof bad / sizeof *bad; i++) {
        bool good = i < sizeof ok / sizeof *ok;
        const char *changes = good ? ok[i] : bad[i - sizeof ok / sizeof *ok];
        lf_entry e = state_entry(1, NULL, "merged");
        lf_record *r = NULL;
        assert_int_equal(lf_record_apply(&r, &e, err, sizeof err), 0);
        e = state_entry(2, "merged", "closed");
        e.changes = changes;
        int rc = lf_record_apply(&r, &e, err, sizeof err);
        if (good) {
            if (rc) fail_msg("%s: %s", changes, err);
            assert_string_equal(r->closed_at, "2026-12-07T10:20:06.509355Z");
            assert_string_equal(r->state, "closed");
        } else {
            if (rc != -1) fail_msg("%s: taken", changes);
            assert_non_null(strstr(err, "malformed changes"));
            assert_string_equal(r->closed_at, "");
            assert_string_equal(r->state, "merged");
            assert_int_equal(r->version, 1);
        }
        lf_record_free(r);
    }
}

/* A JSON number as an integer: the range int64 holds, nothing outside it
 * converted (C leaves that undefined: the test build's float-cast-overflow
 * check stops at one); and a record's JSON with numbers beyond it is
 * refused or clamped, never converted. */
static lf_record *record_with(const char *members) {
    char json[1024], err[128];
    snprintf(json, sizeof json,
             "{\"record_id\":\"loop-0123456789abcdef\",\"ref\":\"r\","
             "\"repo\":null,\"pr_url\":null,\"auto_merge\":false,"
             "\"ci_status\":{},\"labels\":{},\"closed_at\":null,\"metadata\":{},"
             "\"state\":\"s\",\"transitions\":[],\"created_at\":\"2026-05-01T10:00:00.000000Z\","
             "\"updated_at\":\"2026-05-01T10:00:00.000000Z\",\"workflow\":\"loopforge\"%s}",
             members);
    return lf_record_from_json(json, strlen(json), err, sizeof err);
}

static void json_numbers_in_range(void **state) {
    (void)state;
    int64_t n = 7;
    assert_int_equal(lf_json_double_int(0.0, &n), 0);
    assert_true(n == 0);
    assert_int_equal(lf_json_double_int(-9223372036854775808.0, &n), 0);
    assert_true(n == INT64_MIN);
    assert_int_equal(lf_json_double_int(4611686018427387904.0, &n), 0);   /* 2^62 */
    assert_true(n == 4611686018427387904LL);
    const double out[] = {9223372036854775808.0, -9223372036854777856.0, 1e300, -1e300,
                          0.5, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof out / sizeof *out; i++) {
        n = 7;
        assert_int_equal(lf_json_double_int(out[i], &n), -1);
        assert_true(n == 7);
    }
    lf_record *r = record_with(",\"ref_number\":null,\"pr_number\":null,\"version\":3,"
                               "\"violations\":1e10,\"overrides\":1e300");
    assert_non_null(r);
    assert_true(r->version == 3);
    assert_true(r->violations == UINT32_MAX);   /* clamped */
    assert_true(r->overrides == 0);             /* not an int64: not a count */
    lf_record_free(r);
    assert_null(record_with(",\"ref_number\":null,\"pr_number\":null,\"version\":1e300"));
    assert_null(record_with(",\"ref_number\":20000000000000000000,\"pr_number\":null,"
                            "\"version\":1"));
    r = record_with(",\"ref_number\":null,\"pr_number\":9007199254740993,\"version\":1");
    assert_non_null(r);
    assert_true(r->pr_number == 9007199254740993LL);    /* read from the text, exactly */
    lf_record_free(r);
}

static void oom_aborts(void **state) {
    (void)state;
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        volatile size_t huge = SIZE_MAX / 2;
        void *p = lf_xmalloc(huge); /* must not return */
        _exit(p ? 3 : 4);
    }
    close(fd[1]);
    char msg[4096] = ""; /* all of it: ASan may warn first */
    size_t got = 0;
    ssize_t n;
    while (got < sizeof msg - 1 && (n = read(fd[0], msg + got, sizeof msg - 1 - got)) > 0)
        got += (size_t)n;
    msg[got] = '\0';
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
    assert_non_null(strstr(msg, "loopforge: out of memory (allocating "));
    /* and the helpers do what they say when memory is there */
    char *d = lf_xstrndup("abcdef", 3);
    assert_string_equal(d, "abc");
    free(d);
    d = lf_xprintf("%s-%d", "x", 7);
    assert_string_equal(d, "x-7");
    free(d);
    assert_ptr_equal(lf_xptr(d), d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chain_intact),
        cmocka_unit_test(chain_modified_byte),
        cmocka_unit_test(chain_deleted_swapped_inserted),
        cmocka_unit_test(chain_resealed_forgery),
        cmocka_unit_test(entry_parse_rejects),
        cmocka_unit_test(entry_readers_agree),
        cmocka_unit_test(timestamps),
        cmocka_unit_test(ids),
        cmocka_unit_test(map_many),
        cmocka_unit_test(map_key_lengths),
        cmocka_unit_test(map_grows_a_few_at_a_time),
        cmocka_unit_test(json_escaping_round_trip),
        cmocka_unit_test(text_check_every_place),
        cmocka_unit_test(ts_before_is_byte_order),
        cmocka_unit_test(hex_every_byte),
        cmocka_unit_test(json_clean_len_every_place),
        cmocka_unit_test(utf8_validity),
        cmocka_unit_test(json_text_paths),
        cmocka_unit_test(record_count_by_history),
        cmocka_unit_test(record_state_inline_or_heap),
        cmocka_unit_test(record_close_changes),
        cmocka_unit_test(json_numbers_in_range),
        cmocka_unit_test(oom_aborts),
        cmocka_unit_test(json_canonical),
        cmocka_unit_test(json_canonical_matches_cjson),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
