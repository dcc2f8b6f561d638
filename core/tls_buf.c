/*
 * tls_buf.c: the byte queue between mbedTLS and a socket (tls_buf.h).
 */
#include "tls_buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int mx__tls_buf_append(mx__tls_buf_t *b, const void *data, size_t len)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + len > b->cap && b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + len)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

size_t mx__tls_buf_take(mx__tls_buf_t *b, void *out, size_t cap)
{
    size_t n = b->len - b->off;
    if (n > cap)
        n = cap;
    memcpy(out, b->p + b->off, n);
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
    return n;
}

void mx__tls_buf_free(mx__tls_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->off = b->cap = 0;
}
