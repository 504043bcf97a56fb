/* clock.c -- record ids from the kernel's random source, and our one
 * timestamp format. */
#include "clock.h"
#include "hash.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <pthread.h>
#include <time.h>

/* getrandom() per id is a syscall per create; a small pool amortizes it.
 * Ids need uniqueness, not secrecy, but the pool is still refilled only
 * from the kernel. */
static __thread unsigned char pool[256];
static __thread size_t pool_left;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A forked child must not hand out its parent's remaining ids. */
static void pool_drop(void) { pool_left = 0; }
static void pool_init(void) { pthread_atfork(NULL, NULL, pool_drop); }

int lf_id_new(char out[LF_ID_LEN + 1]) {
    pthread_once(&pool_once, pool_init);
    if (pool_left < 8) {
        size_t got = 0;
        while (got < sizeof pool) {
            ssize_t n = getrandom(pool + got, sizeof pool - got, 0);
            if (n <= 0) return -1;
            got += (size_t)n;
        }
        pool_left = sizeof pool;
    }
    const unsigned char *r = pool + sizeof pool - pool_left;
    memcpy(out, "loop-", 5);
    lf_hex(r, 8, out + 5);
    pool_left -= 8;
    return 0;
}

int lf_id_valid(const char *s) {
    size_t n = strlen(s);
    if (strncmp(s, "loop-", 5) != 0 || n < 5 + 8 || n > LF_ID_LEN) return 0;
    for (const char *p = s + 5; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

int64_t lf_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void put_digits(char *p, long v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Formatting runs once per transition; gmtime_r only when the second
 * changes, the rest is digit arithmetic. */
void lf_ts_format(int64_t us, char out[LF_TS_LEN + 1]) {
    static __thread time_t last_sec = -1;
    static __thread char prefix[20];        /* YYYY-MM-DDTHH:MM:SS */
    time_t sec = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    if (sec != last_sec) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        put_digits(prefix, tm.tm_year + 1900, 4);
        prefix[4] = '-';
        put_digits(prefix + 5, tm.tm_mon + 1, 2);
        prefix[7] = '-';
        put_digits(prefix + 8, tm.tm_mday, 2);
        prefix[10] = 'T';
        put_digits(prefix + 11, tm.tm_hour, 2);
        prefix[13] = ':';
        put_digits(prefix + 14, tm.tm_min, 2);
        prefix[16] = ':';
        put_digits(prefix + 17, tm.tm_sec, 2);
        last_sec = sec;
    }
    memcpy(out, prefix, 19);
    out[19] = '.';
    put_digits(out + 20, frac, 6);
    out[26] = 'Z';
    out[27] = '\0';
}

static int get_digits(const char *p, int n, int *v) {
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        *v = *v * 10 + (p[i] - '0');
    }
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
 * days_from_civil). A day past the month's end counts on into the next,
 * as timegm() does, which this replaces: it was 3% of a transition. */
static int64_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int64_t)era * 146097 + doe - 719468;
}

int lf_ts_parse(const char *s, int64_t *us) {
    /* The second last parsed, as lf_ts_format keeps the last formatted:
     * a commit parses the time it just stamped, a replay lines in time
     * order, so most times repeat the second before and only their
     * fraction is new. */
    static __thread char last[20];          /* YYYY-MM-DDTHH:MM:SS., valid */
    static __thread int64_t last_us;
    int Y, M, D, h, m, sec, frac;
    if (strlen(s) != LF_TS_LEN || s[26] != 'Z' || get_digits(s + 20, 6, &frac)) return -1;
    if (memcmp(s, last, sizeof last) == 0) {
        *us = last_us + frac;
        return 0;
    }
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != '.')
        return -1;
    if (get_digits(s, 4, &Y) || get_digits(s + 5, 2, &M) || get_digits(s + 8, 2, &D) ||
        get_digits(s + 11, 2, &h) || get_digits(s + 14, 2, &m) ||
        get_digits(s + 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) return -1;
    last_us = ((days_from_civil(Y, M, D) * 24 + h) * 60 + m) * INT64_C(60) * 1000000 +
              (int64_t)sec * 1000000;
    memcpy(last, s, sizeof last);
    *us = last_us + frac;
    return 0;
}

bool lf_ts_before(const char *a, const char *b) {
    static const int at[] = {0, 8, 16, LF_TS_LEN - 8};  /* the last overlaps */
    for (int i = 0; i < 4; i++) {
        uint64_t x, y;
        memcpy(&x, a + at[i], 8);
        memcpy(&y, b + at[i], 8);
        if (x == y) continue;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        x = __builtin_bswap64(x);
        y = __builtin_bswap64(y);
#endif
        return x < y;
    }
    return false;
}

int lf_ts_normalize(const char *s, char out[LF_TS_LEN + 1]) {
    /* YYYY-MM-DDTHH:MM:SS, then .digits (up to 6), then Z or +00:00 */
    size_t n = strlen(s), i = 19;
    char frac[7] = "000000";
    if (n < 20) return -1;
    if (s[i] == '.') {
        size_t k = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (k < 6) frac[k++] = s[i];
        if (k == 0) return -1;
    }
    if (strcmp(s + i, "Z") != 0 && strcmp(s + i, "+00:00") != 0) return -1;
    snprintf(out, LF_TS_LEN + 1, "%.19s.%sZ", s, frac);
    int64_t us;
    return lf_ts_parse(out, &us);
}

uint64_t lf_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
