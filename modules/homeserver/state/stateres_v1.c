/*
 * stateres_v1.c: the state resolution algorithm of room version 1.
 *
 * Spec: rooms/v1.md "State resolution".  R starts as the union of the
 * states without the conflicting keys (a key is conflicting when the maps
 * name different events for it; a key missing from some maps is not).
 * Conflicts are then resolved in passes: m.room.power_levels, then
 * m.room.join_rules, then each m.room.member key — candidates sorted by
 * ascending depth, then descending sha1(event_id); the first is taken and
 * each next one replaces it while the auth rules allow it in state R, the
 * pass stopping at the first refusal.  Every other conflicting key gets the
 * candidate with the highest depth (then lowest sha1(event_id)) that passes
 * auth in R.  Keys are handled in byte order, so the result never depends
 * on the order of the input maps.
 *
 * The SHA-1 here is a small local implementation (FIPS 180-4): the module
 * has no other SHA-1, and v1 ordering needs nothing more.
 */
#include "stateres.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- SHA-1 --- */

static uint32_t rol32(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const void *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = { 0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u };
    const unsigned char *p = data;
    unsigned char tail[128];
    size_t full = len / 64 * 64, rest = len - full, tl;

    for (size_t i = 0; i < full; i += 64)
        sha1_block(h, p + i);
    memset(tail, 0, sizeof(tail));
    memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    tl = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tl; i += 64)
        sha1_block(h, tail + i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* --------------------------------------------------------- candidates --- */

typedef struct v1_cand {
    const char *id;       /* borrowed from an input map */
    const json_t *ev;     /* borrowed from the fetcher */
    int64_t depth;
    unsigned char sha[20];
} v1_cand_t;

typedef struct v1_ctx {
    hs_event_fetch_fn fetch;
    void *ud;
    json_t *r;            /* the working state R: key -> event ID */
} v1_ctx_t;

/* Ascending depth, then descending sha1(event_id). */
static int cmp_passes(const void *x, const void *y)
{
    const v1_cand_t *a = x, *b = y;
    if (a->depth != b->depth)
        return a->depth < b->depth ? -1 : 1;
    return -memcmp(a->sha, b->sha, 20);
}

/* Highest depth first, then lowest sha1(event_id). */
static int cmp_others(const void *x, const void *y)
{
    const v1_cand_t *a = x, *b = y;
    if (a->depth != b->depth)
        return a->depth > b->depth ? -1 : 1;
    return memcmp(a->sha, b->sha, 20);
}

static const json_t *v1_lookup(void *ud, const char *type, const char *state_key,
                               const char **event_id)
{
    v1_ctx_t *c = ud;
    char *k = hs_state_key_join(type, state_key);
    const char *id = k ? json_string_value(json_object_get(c->r, k)) : NULL;
    int rej = 0;
    free(k);
    if (event_id)
        *event_id = id;
    return id ? c->fetch(c->ud, id, &rej) : NULL;
}

static int allowed_in_r(const hs_room_version_t *rv, v1_ctx_t *c, const v1_cand_t *cd)
{
    return hs_auth_check(rv, cd->ev, v1_lookup, c, NULL, 0) == 0;
}

static int set_r(v1_ctx_t *c, const char *key, const char *id)
{
    return json_object_set_new(c->r, key, json_string(id)) == 0 ? 0 : -ENOMEM;
}

/* The distinct events named for `key` by the maps, fetched and hashed. */
static int gather(const json_t *const *sets, size_t nsets, const char *key, v1_ctx_t *c,
                  v1_cand_t **out, size_t *n, char *why, size_t whylen)
{
    v1_cand_t *v = calloc(nsets ? nsets : 1, sizeof(*v));
    size_t m = 0;
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < nsets; i++) {
        const char *id = json_string_value(json_object_get(sets[i], key));
        int dup = 0, rej = 0;
        if (!id)
            continue;
        for (size_t j = 0; j < m; j++)
            dup |= strcmp(v[j].id, id) == 0;
        if (dup)
            continue;
        const json_t *ev = c->fetch(c->ud, id, &rej);
        if (!ev) {
            if (why && whylen)
                snprintf(why, whylen, "event %s is unknown", id);
            free(v);
            return -ENOENT;
        }
        v[m].id = id;
        v[m].ev = ev;
        v[m].depth = json_integer_value(json_object_get(ev, "depth"));
        sha1(id, strlen(id), v[m].sha);
        m++;
    }
    *out = v;
    *n = m;
    return 0;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Which pass a conflicting key belongs to: 0 PL, 1 join rules, 2 members,
 * 3 everything else. */
static int pass_of(const char *key)
{
    if (strcmp(key, "m.room.power_levels\x1f") == 0)
        return 0;
    if (strcmp(key, "m.room.join_rules\x1f") == 0)
        return 1;
    if (strncmp(key, "m.room.member\x1f", 14) == 0)
        return 2;
    return 3;
}

int hs_stateres_v1(const hs_room_version_t *rv, const json_t *const *sets, size_t nsets,
                   hs_event_fetch_fn fetch, void *ud, json_t **out, char *why, size_t whylen)
{
    v1_ctx_t c = { .fetch = fetch, .ud = ud };
    json_t *conflicted = NULL;
    const char **keys = NULL;
    int rc = -ENOMEM;

    if (why && whylen)
        why[0] = '\0';
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!rv || !fetch || (!sets && nsets))
        return -EINVAL;
    if (!(c.r = json_object()) || !(conflicted = json_object()))
        goto done;

    /* R = union of the maps without the conflicting keys. */
    for (size_t i = 0; i < nsets; i++) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)sets[i], k, v) {
            const json_t *have = json_object_get(c.r, k);
            if (json_object_get(conflicted, k))
                continue;
            if (!have) {
                if (json_object_set(c.r, k, v) != 0)
                    goto done;
            } else if (!json_equal((json_t *)have, v)) {
                json_object_del(c.r, k);
                if (json_object_set_new(conflicted, k, json_true()) != 0)
                    goto done;
            }
        }
    }

    size_t nk = json_object_size(conflicted), ki = 0;
    if (!(keys = calloc(nk ? nk : 1, sizeof(*keys))))
        goto done;
    const char *k;
    json_t *v;
    json_object_foreach(conflicted, k, v)
        keys[ki++] = k;
    qsort(keys, nk, sizeof(*keys), cmp_str);

    rc = 0;
    for (int pass = 0; pass < 4 && rc == 0; pass++) {
        for (size_t i = 0; i < nk && rc == 0; i++) {
            v1_cand_t *cand = NULL;
            size_t n = 0;
            if (pass_of(keys[i]) != pass)
                continue;
            if ((rc = gather(sets, nsets, keys[i], &c, &cand, &n, why, whylen)) != 0)
                break;
            if (pass < 3) {
                qsort(cand, n, sizeof(*cand), cmp_passes);
                if (n)
                    rc = set_r(&c, keys[i], cand[0].id);
                for (size_t j = 1; j < n && rc == 0; j++) {
                    if (!allowed_in_r(rv, &c, &cand[j]))
                        break;
                    rc = set_r(&c, keys[i], cand[j].id);
                }
            } else {
                qsort(cand, n, sizeof(*cand), cmp_others);
                for (size_t j = 0; j < n; j++) {
                    if (allowed_in_r(rv, &c, &cand[j])) {
                        rc = set_r(&c, keys[i], cand[j].id);
                        break;
                    }
                }
            }
            free(cand);
        }
    }
    if (rc == 0)
        *out = json_incref(c.r);
done:
    free(keys);
    json_decref(conflicted);
    json_decref(c.r);
    return rc;
}
