/*
 * acc_map.c: a small chained hash table from string keys to pointers, used
 * by the accounts part for its in-memory tables (token cache, last-seen
 * figures, rate-limit buckets, UIA sessions, nonces).  Grows by doubling.
 */
#include "acc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t map_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int acc_map_init(acc_map_t *m, void (*free_val)(void *))
{
    memset(m, 0, sizeof(*m));
    m->nb = 64;
    m->b = calloc(m->nb, sizeof(*m->b));
    m->free_val = free_val;
    return m->b ? 0 : -ENOMEM;
}

void acc_map_fini(acc_map_t *m)
{
    for (size_t i = 0; m->b && i < m->nb; i++) {
        acc_map_ent_t *e = m->b[i];
        while (e) {
            acc_map_ent_t *next = e->next;
            if (m->free_val)
                m->free_val(e->val);
            free(e);
            e = next;
        }
    }
    free(m->b);
    memset(m, 0, sizeof(*m));
}

void *acc_map_get(const acc_map_t *m, const char *key)
{
    if (!m->b)
        return NULL;
    for (acc_map_ent_t *e = m->b[map_hash(key) & (m->nb - 1)]; e; e = e->next)
        if (!strcmp(e->key, key))
            return e->val;
    return NULL;
}

static void map_grow(acc_map_t *m)
{
    size_t nb = m->nb * 2;
    acc_map_ent_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* keep the longer chains; still correct */
    for (size_t i = 0; i < m->nb; i++) {
        acc_map_ent_t *e = m->b[i];
        while (e) {
            acc_map_ent_t *next = e->next;
            size_t j = map_hash(e->key) & (nb - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int acc_map_put(acc_map_t *m, const char *key, void *val)
{
    if (!m->b)
        return -ENOMEM;
    size_t i = map_hash(key) & (m->nb - 1);
    for (acc_map_ent_t *e = m->b[i]; e; e = e->next) {
        if (!strcmp(e->key, key)) {
            if (m->free_val && e->val != val)
                m->free_val(e->val);
            e->val = val;
            return 0;
        }
    }
    size_t klen = strlen(key);
    acc_map_ent_t *e = malloc(sizeof(*e) + klen + 1);
    if (!e)
        return -ENOMEM;
    memcpy(e->key, key, klen + 1);
    e->val = val;
    e->next = m->b[i];
    m->b[i] = e;
    if (++m->n > m->nb)
        map_grow(m);
    return 0;
}

int acc_map_del(acc_map_t *m, const char *key)
{
    if (!m->b)
        return 0;
    acc_map_ent_t **pp = &m->b[map_hash(key) & (m->nb - 1)];
    for (; *pp; pp = &(*pp)->next) {
        acc_map_ent_t *e = *pp;
        if (!strcmp(e->key, key)) {
            *pp = e->next;
            if (m->free_val)
                m->free_val(e->val);
            free(e);
            m->n--;
            return 1;
        }
    }
    return 0;
}

void acc_map_filter(acc_map_t *m, bool (*pred)(const char *key, void *val, void *ud), void *ud)
{
    for (size_t i = 0; m->b && i < m->nb; i++) {
        acc_map_ent_t **pp = &m->b[i];
        while (*pp) {
            acc_map_ent_t *e = *pp;
            if (pred(e->key, e->val, ud)) {
                *pp = e->next;
                if (m->free_val)
                    m->free_val(e->val);
                free(e);
                m->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

void acc_map_each(const acc_map_t *m, void (*fn)(const char *key, void *val, void *ud), void *ud)
{
    for (size_t i = 0; m->b && i < m->nb; i++)
        for (acc_map_ent_t *e = m->b[i]; e; e = e->next)
            fn(e->key, e->val, ud);
}
