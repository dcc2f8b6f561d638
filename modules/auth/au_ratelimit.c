/*
 * au_ratelimit.c: token buckets keyed by a string (an IP address, an
 * account), as MAS limits login attempts (`rate_limiting.login.per_ip` and
 * `.per_account`: `burst` tokens, refilled at `per_second`).
 *
 * In memory and per process: a bucket is created full on first use and
 * forgotten once it is full again (pruned when the table grows), so the
 * table holds only keys that were recently limited.  Loop thread only.
 */
#include "auth.h"

#include <stdlib.h>
#include <string.h>

#define AU_RL_SLOTS 1024
#define AU_RL_PRUNE_AT 4096

typedef struct au_bucket {
    struct au_bucket *next;
    double tokens;
    uint64_t last_ms;
    char key[];
} au_bucket_t;

struct au_rl {
    double burst, per_ms;
    size_t n;
    au_bucket_t *slot[AU_RL_SLOTS];
};

au_rl_t *au_rl_new(double burst, double per_second)
{
    au_rl_t *rl = calloc(1, sizeof(*rl));
    if (rl) {
        rl->burst = burst < 1 ? 1 : burst;
        rl->per_ms = per_second > 0 ? per_second / 1000.0 : 0;
    }
    return rl;
}

void au_rl_free(au_rl_t *rl)
{
    if (!rl)
        return;
    for (size_t i = 0; i < AU_RL_SLOTS; i++) {
        while (rl->slot[i]) {
            au_bucket_t *b = rl->slot[i];
            rl->slot[i] = b->next;
            free(b);
        }
    }
    free(rl);
}

static size_t au_rl_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % AU_RL_SLOTS);
}

static void au_rl_refill(const au_rl_t *rl, au_bucket_t *b, uint64_t now)
{
    if (now > b->last_ms) {
        b->tokens += (double)(now - b->last_ms) * rl->per_ms;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
    }
    b->last_ms = now;
}

/* Drops buckets that have refilled completely (they equal a missing one). */
static void au_rl_prune(au_rl_t *rl, uint64_t now)
{
    for (size_t i = 0; i < AU_RL_SLOTS; i++) {
        for (au_bucket_t **pp = &rl->slot[i]; *pp;) {
            au_bucket_t *b = *pp;
            au_rl_refill(rl, b, now);
            if (b->tokens >= rl->burst) {
                *pp = b->next;
                free(b);
                rl->n--;
            } else {
                pp = &b->next;
            }
        }
    }
}

static au_bucket_t *au_rl_find(au_rl_t *rl, const char *key, bool create, uint64_t now)
{
    size_t h = au_rl_hash(key);
    for (au_bucket_t *b = rl->slot[h]; b; b = b->next)
        if (!strcmp(b->key, key)) {
            au_rl_refill(rl, b, now);
            return b;
        }
    if (!create)
        return NULL;
    if (rl->n >= AU_RL_PRUNE_AT)
        au_rl_prune(rl, now);
    size_t kl = strlen(key);
    au_bucket_t *b = malloc(sizeof(*b) + kl + 1);
    if (!b)
        return NULL;
    memcpy(b->key, key, kl + 1);
    b->tokens = rl->burst;
    b->last_ms = now;
    b->next = rl->slot[h];
    rl->slot[h] = b;
    rl->n++;
    return b;
}

static uint64_t au_rl_wait(const au_rl_t *rl, const au_bucket_t *b)
{
    if (!b || b->tokens >= 1)
        return 0;
    if (rl->per_ms <= 0)
        return UINT64_MAX;
    uint64_t w = (uint64_t)((1 - b->tokens) / rl->per_ms) + 1;
    return w ? w : 1;
}

uint64_t au_rl_take(au_rl_t *rl, const char *key)
{
    if (!rl || !key)
        return 0;
    uint64_t now = mx_now_ms();
    au_bucket_t *b = au_rl_find(rl, key, true, now);
    if (!b)
        return 0;   /* out of memory: do not lock people out */
    uint64_t w = au_rl_wait(rl, b);
    if (!w)
        b->tokens -= 1;
    return w;
}

uint64_t au_rl_peek(au_rl_t *rl, const char *key)
{
    if (!rl || !key)
        return 0;
    return au_rl_wait(rl, au_rl_find(rl, key, false, mx_now_ms()));
}
