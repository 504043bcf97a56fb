/* map.c -- linear probing with backward-shift deletion (no tombstones, so
 * lookups stay short however many deletes happen). */
#include "map.h"
#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Eight bytes a step, each mixed by a multiply, then MurmurHash3's
 * finalizer so the low bits (the slot) depend on every byte. FNV-1a's
 * multiply per byte was ~4% of a transition in process: every commit
 * looks up ids, index and counter keys. Nothing may depend on the order
 * this gives slots (lf_replay_rules sorts). */
static size_t hash_str(const char *s) {
    size_t n = strlen(s);
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (size_t)(h ? h : 1);
}

static lf_map_slot *find(const lf_map *m, const char *key, size_t h) {
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        lf_map_slot *s = &m->slots[i];
        if (!s->key) return s;
        if (s->hash == h && strcmp(s->key, key) == 0) return s;
    }
}

void *lf_map_get(const lf_map *m, const char *key) {
    lf_map_slot *s = find(m, key, hash_str(key));
    return s && s->key ? s->val : NULL;
}

static void grow(lf_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    lf_map_slot *old = m->slots, *n = lf_xcalloc(cap, sizeof *n);
    size_t oldcap = m->cap;
    m->slots = n;
    m->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].key) *find(m, old[i].key, old[i].hash) = old[i];
    free(old);
}

void lf_map_put(lf_map *m, const char *key, void *val) {
    if ((m->len + 1) * 4 > m->cap * 3) grow(m);
    size_t h = hash_str(key);
    lf_map_slot *s = find(m, key, h);
    if (!s->key) m->len++;
    s->key = key;
    s->val = val;
    s->hash = h;
}

void *lf_map_del(lf_map *m, const char *key) {
    lf_map_slot *s = find(m, key, hash_str(key));
    if (!s || !s->key) return NULL;
    void *val = s->val;
    size_t mask = m->cap - 1, i = (size_t)(s - m->slots), j = i;
    /* Shift later members of the probe run back into the hole whenever
     * their home slot does not lie between the hole and themselves. */
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].key) break;
        size_t home = m->slots[j].hash & mask;
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = NULL;
    m->len--;
    return val;
}

void lf_map_free(lf_map *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}
