/*
 * pool.c: arenas.  A request (or any job with a clear end) allocates from one
 * pool and frees everything at once; cleanup callbacks release what lives
 * outside the pool (statements, files, json references).  Blocks grow
 * geometrically; big allocations get a block of their own.
 *
 * Built with sanitizers (MX_POOL_PLAIN_MALLOC), each allocation is its own
 * malloc so ASan sees every overflow.
 */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_FIRST_BLOCK 4000
#define POOL_ALIGN 16

typedef struct pool_block {
    struct pool_block *next;
    size_t size, used;
    _Alignas(POOL_ALIGN) unsigned char data[];
} pool_block_t;

typedef struct pool_cleanup {
    struct pool_cleanup *next;
    void (*fn)(void *);
    void *arg;
} pool_cleanup_t;

struct mx_pool {
    pool_block_t *blocks;      /* newest first */
    pool_cleanup_t *cleanups;  /* run newest first */
    size_t next_size;
};

mx_pool_t *mx_pool_new(void)
{
    mx_pool_t *p = calloc(1, sizeof(*p));
    if (p)
        p->next_size = POOL_FIRST_BLOCK;
    return p;
}

static void pool_release(mx_pool_t *p)
{
    while (p->cleanups) {
        pool_cleanup_t *c = p->cleanups;
        p->cleanups = c->next;
        c->fn(c->arg);   /* `c` lives in a block, freed below */
    }
    pool_block_t *b = p->blocks;
    while (b) {
        pool_block_t *next = b->next;
        free(b);
        b = next;
    }
    p->blocks = NULL;
}

void mx_pool_reset(mx_pool_t *p)
{
    if (!p)
        return;
    pool_release(p);
    p->next_size = POOL_FIRST_BLOCK;
}

void mx_pool_free(mx_pool_t *p)
{
    if (!p)
        return;
    pool_release(p);
    free(p);
}

void *mx_palloc(mx_pool_t *p, size_t n)
{
    size_t need = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
    if (need < n)
        return NULL;
#ifndef MX_POOL_PLAIN_MALLOC
    pool_block_t *b = p->blocks;
    if (b && b->size - b->used >= need) {
        void *ptr = b->data + b->used;
        b->used += need;
        return ptr;
    }
#endif
    size_t size = need;
#ifndef MX_POOL_PLAIN_MALLOC
    if (size < p->next_size) {
        size = p->next_size;
        if (p->next_size < 64 * 1024)
            p->next_size *= 2;
    }
#endif
    pool_block_t *nb = malloc(sizeof(*nb) + size);
    if (!nb)
        return NULL;
    nb->size = size;
    nb->used = need;
    /* A big one-off block goes behind the current one so the current
     * block's free space stays usable. */
    if (p->blocks && size == need && p->blocks->size - p->blocks->used > 256) {
        nb->next = p->blocks->next;
        p->blocks->next = nb;
    } else {
        nb->next = p->blocks;
        p->blocks = nb;
    }
    return nb->data;
}

char *mx_pstrdup(mx_pool_t *p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = mx_palloc(p, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *mx_psprintf(mx_pool_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *d = mx_palloc(p, (size_t)n + 1);
    if (!d)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

int mx_pool_on_free(mx_pool_t *p, void (*fn)(void *), void *arg)
{
    pool_cleanup_t *c = mx_palloc(p, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fn = fn;
    c->arg = arg;
    c->next = p->cleanups;
    p->cleanups = c;
    return 0;
}
