/* store.c -- opens a store by URL. */
#include "store.h"

#include <stdio.h>
#include <string.h>

static lf_store *open_url(const char *url, struct event_base *base, bool reader,
                          lf_code *code, char *err, size_t errlen) {
    lf_code dummy;
    if (!code) code = &dummy;
    *code = LF_OK;
    if (strcmp(url, "memory:") == 0 || strcmp(url, "memory") == 0) {
        return lf_memory_open();
    }
    if (strncmp(url, "file:", 5) == 0 && url[5]) {
        const char *path = url + 5;
        /* Accept file:///abs/path as well as file:relative/path. */
        if (strncmp(path, "//", 2) == 0) path += 2;
        return reader ? lf_journal_open_reader(path, code, err, errlen)
                      : lf_journal_open(path, base, code, err, errlen);
    }
    if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "unix:", 5) == 0)
        return lf_redis_open(url, base, code, err, errlen);
    *code = LF_INVALID_REQUEST;
    snprintf(err, errlen,
             "unknown store URL '%s' (expected memory:, "
             "file:PATH, redis://host:port/db or unix:///path/redis.sock)",
             url);
    return NULL;
}

lf_store *lf_store_open(const char *url, struct event_base *base, lf_code *code,
                        char *err, size_t errlen) {
    return open_url(url, base, false, code, err, errlen);
}

lf_store *lf_store_open_reader(const char *url, struct event_base *base, lf_code *code,
                               char *err, size_t errlen) {
    return open_url(url, base, true, code, err, errlen);
}
