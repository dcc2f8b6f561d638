/*
 * rm_map.c: a small string-keyed hash map with chaining, used by the room
 * cache and the /sync notifier (rooms by ID, waiters by user and room).
 * Keys are copied; values are borrowed pointers.
 */
#include "rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct rm_ent {
    struct rm_ent *next;
    void *val;
    char key[];
} rm_ent_t;

struct rm_map {
    rm_ent_t **b;
    size_t nb, n;
};

static size_t rm_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

rm_map_t *rm_map_new(void)
{
    rm_map_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->nb = 64;
    m->b = calloc(m->nb, sizeof(*m->b));
    if (!m->b) {
        free(m);
        return NULL;
    }
    return m;
}

void rm_map_free(rm_map_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nb; i++)
        for (rm_ent_t *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            free(e);
        }
    free(m->b);
    free(m);
}

static rm_ent_t **rm_slot(const rm_map_t *m, const char *key)
{
    rm_ent_t **p = &m->b[rm_hash(key) & (m->nb - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

void *rm_map_get(const rm_map_t *m, const char *key)
{
    rm_ent_t *e = *rm_slot(m, key);
    return e ? e->val : NULL;
}

static void rm_grow(rm_map_t *m)
{
    size_t nb = m->nb * 2;
    rm_ent_t **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* keep the old table; chains just get longer */
    for (size_t i = 0; i < m->nb; i++)
        for (rm_ent_t *e = m->b[i], *nx; e; e = nx) {
            nx = e->next;
            size_t j = rm_hash(e->key) & (nb - 1);
            e->next = b[j];
            b[j] = e;
        }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

int rm_map_put(rm_map_t *m, const char *key, void *val)
{
    rm_ent_t **p = rm_slot(m, key);
    if (*p) {
        (*p)->val = val;
        return 0;
    }
    size_t kl = strlen(key);
    rm_ent_t *e = malloc(sizeof(*e) + kl + 1);
    if (!e)
        return -ENOMEM;
    memcpy(e->key, key, kl + 1);
    e->val = val;
    e->next = NULL;
    *p = e;
    if (++m->n > m->nb * 2)
        rm_grow(m);
    return 0;
}

void *rm_map_del(rm_map_t *m, const char *key)
{
    rm_ent_t **p = rm_slot(m, key);
    rm_ent_t *e = *p;
    if (!e)
        return NULL;
    void *v = e->val;
    *p = e->next;
    free(e);
    m->n--;
    return v;
}

size_t rm_map_count(const rm_map_t *m)
{
    return m->n;
}

void rm_map_each(const rm_map_t *m, void (*fn)(const char *key, void *val, void *ud), void *ud)
{
    for (size_t i = 0; i < m->nb; i++)
        for (rm_ent_t *e = m->b[i]; e; e = e->next)
            fn(e->key, e->val, ud);
}
