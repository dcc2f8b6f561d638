/*
 * tls_buf.h: the byte queue between mbedTLS and a socket, used by the TLS
 * server (tls.c) and client (tls_client.c) ends alike.  Incoming ciphertext
 * is appended and mbedTLS's receive callback takes from the front; outgoing
 * ciphertext is appended by its send callback until the owner writes it.
 * The buffer owns `p`; valid bytes are p[off..len).
 */
#ifndef MX_TLS_BUF_H
#define MX_TLS_BUF_H

#include <stddef.h>

typedef struct mx__tls_buf {
    unsigned char *p;
    size_t len, off, cap;
} mx__tls_buf_t;

/* Appends len bytes (compacting or growing the buffer); 0 or -ENOMEM. */
int mx__tls_buf_append(mx__tls_buf_t *b, const void *data, size_t len);
/* Copies up to `cap` bytes from the front into out and drops them; returns
 * how many (0 when empty). */
size_t mx__tls_buf_take(mx__tls_buf_t *b, void *out, size_t cap);
/* Frees the storage; the buffer is empty afterwards. */
void mx__tls_buf_free(mx__tls_buf_t *b);

#endif
