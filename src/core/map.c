/* map.c -- linear probing with backward-shift deletion (no tombstones, so
 * lookups stay short however many deletes happen). */
#include "map.h"
#include "mem.h"
#include "text.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A slot's hash keeps the key's length in its top byte (LEN_MAX: that
 * long or longer), the hash's own bits below it: a hash that matches
 * says the lengths are the same, so the keys are compared a word at a
 * time in line (same_key) -- strcmp's call was ~3 % of a transition in
 * process, nearly every lookup a hit on a 21-byte record id. */
#define LEN_SHIFT (8 * sizeof(size_t) - 8)
#define LEN_MAX ((size_t)255)

/* Eight bytes a step, each mixed by a multiply, then MurmurHash3's
 * finalizer so the low bits (the slot) depend on every byte. FNV-1a's
 * multiply per byte was ~4% of a transition in process: every commit
 * looks up ids, index and counter keys. Nothing may depend on the order
 * this gives slots (lf_replay_rules sorts). */
static size_t hash_str(const char *s) {
    size_t n = strlen(s), len = n;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
    }
    w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The last 1-7 bytes in one load of the string's last eight (inside
     * it: it has eight or more), shifted down to them: the same word the
     * byte loop makes, without a step a byte (ids, states, repos: most
     * keys end in a partial word). */
    if (n && len >= 8) {
        memcpy(&w, s + n - 8, 8);
        w >>= 8 * (8 - n);
        n = 0;
    }
#endif
    for (size_t i = 0; i < n; i++) w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return ((size_t)h & (SIZE_MAX >> 8)) | (len < LEN_MAX ? len : LEN_MAX) << LEN_SHIFT;
}

/* Whether a slot's key is key, their hashes (h) the same. */
static bool same_key(const char *a, const char *key, size_t h) {
    size_t n = h >> LEN_SHIFT;
    return n < LEN_MAX ? lf_same_bytes(a, key, n) : strcmp(a, key) == 0;
}

/* The slot of key in a table of cap slots: its own, or the empty one
 * that ends its probe run (NULL for no table). */
static lf_map_slot *find_in(lf_map_slot *slots, size_t cap, const char *key, size_t h) {
    if (!cap) return NULL;
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        lf_map_slot *s = &slots[i];
        if (!s->key) return s;
        if (s->hash == h && same_key(s->key, key, h)) return s;
    }
}

/* Key's member in either table, or NULL. A key whose home cluster in the
 * old table was moved is not there: clusters move whole, so a probe
 * never crosses a moved one to reach an unmoved member. */
static lf_map_slot *member(const lf_map *m, const char *key, size_t h) {
    lf_map_slot *s = find_in(m->slots, m->cap, key, h);
    if (s && s->key) return s;
    s = find_in(m->old, m->oldcap, key, h);
    return s && s->key ? s : NULL;
}

void *lf_map_get(const lf_map *m, const char *key) {
    if (!m->len) return NULL;   /* an empty map (no identities...): no hash */
    lf_map_slot *s = member(m, key, hash_str(key));
    return s ? s->val : NULL;
}

/* Old slots looked at by a put or a del while the map grows: the new
 * table fills from 3/8 to 3/4 full in 3/4 as many puts as the old one has
 * slots, so 2 a call would do; more ends the two-table lookups sooner. */
#define MOVE_STEP 16

/* Moves the old table's next clusters into the new one: `most` slots
 * looked at, then on to the end of the cluster it is in (start is an
 * empty slot, so a cluster is never left half moved). */
static void move(lf_map *m, size_t most) {
    size_t mask = m->oldcap - 1;
    while (m->moved < m->oldcap) {
        lf_map_slot *s = &m->old[(m->start + m->moved) & mask];
        if (!s->key && !most) return;
        if (s->key) {
            *find_in(m->slots, m->cap, s->key, s->hash) = *s;
            s->key = NULL;
        }
        m->moved++;
        if (most) most--;
    }
    free(m->old);
    m->old = NULL;
    m->oldcap = m->start = m->moved = 0;
}

static void grow(lf_map *m) {
    if (m->old) move(m, SIZE_MAX);
    size_t cap = m->cap ? m->cap * 2 : 16;
    m->old = m->slots;
    m->oldcap = m->cap;
    m->slots = lf_xcalloc(cap, sizeof *m->slots);
    m->cap = cap;
    m->start = m->moved = 0;
    if (!m->old) return;
    while (m->old[m->start].key) m->start++;     /* at most 3/4 full */
    move(m, MOVE_STEP);
}

void lf_map_put(lf_map *m, const char *key, void *val) {
    if (m->old) move(m, MOVE_STEP);
    size_t h = hash_str(key);
    lf_map_slot *s = find_in(m->slots, m->cap, key, h);
    if (!s || !s->key) {
        lf_map_slot *o = find_in(m->old, m->oldcap, key, h);
        if (o && o->key) {
            s = o;
        } else {    /* a new member: where the probe ended, unless it grows */
            if ((m->len + 1) * 4 > m->cap * 3) {
                grow(m);
                s = find_in(m->slots, m->cap, key, h);
            }
            m->len++;
        }
    }
    s->key = key;
    s->val = val;
    s->hash = h;
}

/* Removes s from its table (cap slots), shifting later members of its
 * probe run back into the hole whenever their home slot does not lie
 * between the hole and themselves (no tombstones). */
static void unlink_slot(lf_map_slot *slots, size_t cap, lf_map_slot *s) {
    size_t mask = cap - 1, i = (size_t)(s - slots), j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!slots[j].key) break;
        size_t home = slots[j].hash & mask;
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            slots[i] = slots[j];
            i = j;
        }
    }
    slots[i].key = NULL;
}

void *lf_map_del(lf_map *m, const char *key) {
    if (m->old) move(m, MOVE_STEP);
    size_t h = hash_str(key);
    lf_map_slot *s = find_in(m->slots, m->cap, key, h);
    bool old = !s || !s->key;
    if (old) s = find_in(m->old, m->oldcap, key, h);
    if (!s || !s->key) return NULL;
    void *val = s->val;
    if (old) unlink_slot(m->old, m->oldcap, s);
    else unlink_slot(m->slots, m->cap, s);
    m->len--;
    return val;
}

void lf_map_free(lf_map *m) {
    free(m->slots);
    free(m->old);
    *m = (lf_map)LF_MAP_INIT;
}

size_t lf_map_span(const lf_map *m) { return m->oldcap + m->cap; }

lf_map_slot *lf_map_at(const lf_map *m, size_t i) {
    lf_map_slot *s = i < m->oldcap ? &m->old[i] : &m->slots[i - m->oldcap];
    return s->key ? s : NULL;
}

void *lf_map_val(const lf_map *m, size_t i) {
    const lf_map_slot *s = lf_map_at(m, i);
    return s ? s->val : NULL;
}
