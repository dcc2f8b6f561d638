/*
 * tls.h: TLS for the HTTP server's listeners, on mbedTLS 2.28.
 *
 * A server context (certificate, key, random generator, ssl config) is
 * shared, reference counted, by a listener and the connections it accepted,
 * so a SIGHUP reload can swap in new certificates for new connections while
 * old ones finish with the old.  A connection's session does no I/O itself:
 * the connection feeds it ciphertext read from libuv and takes the
 * ciphertext it must write (a memory BIO in both directions).
 * Loop thread only.
 */
#ifndef MX_TLS_H
#define MX_TLS_H

#include <stddef.h>

struct mx__tls_server;
struct mx__tls_conn;

/* Loads `cert_path` (PEM chain) and `key_path`.  On success *out holds one
 * reference.  On error fills `err` and returns a negative code. */
int mx__tls_server_new(const char *cert_path, const char *key_path,
                       struct mx__tls_server **out, char *err, size_t errlen);
struct mx__tls_server *mx__tls_server_ref(struct mx__tls_server *s);
void mx__tls_server_unref(struct mx__tls_server *s);   /* NULL is fine */

/* A session for one accepted connection (holds a server reference);
 * NULL on allocation failure. */
struct mx__tls_conn *mx__tls_conn_new(struct mx__tls_server *s);
void mx__tls_conn_free(struct mx__tls_conn *t);        /* NULL is fine */
/* Hands ciphertext read from the socket to the session (copied). */
int mx__tls_conn_input(struct mx__tls_conn *t, const char *data, size_t len);
/* Reads decrypted bytes (driving the handshake first).  Returns the number
 * of bytes, 0 when more ciphertext is needed, or -1 when the connection
 * must be closed (error or close_notify). */
long mx__tls_conn_read(struct mx__tls_conn *t, char *buf, size_t cap);
/* Encrypts `len` bytes; the records wait in the output.  0 or -1. */
int mx__tls_conn_write(struct mx__tls_conn *t, const char *data, size_t len);
/* Takes the pending ciphertext: a malloc'd buffer the caller frees, or
 * NULL when there is none. */
char *mx__tls_conn_take_output(struct mx__tls_conn *t, size_t *len);

#endif /* MX_TLS_H */
