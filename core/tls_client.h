/*
 * tls_client.h: TLS for the outbound HTTP client, on mbedTLS 2.28, without
 * sockets.  The caller moves bytes: ciphertext read from the network goes
 * in with mx__tlsc_feed, ciphertext to send comes out of
 * mx__tlsc_out/mx__tlsc_out_consume, plaintext goes through
 * mx__tlsc_write/mx__tlsc_read.  So the engine runs on libuv's
 * non-blocking reads without ever touching a socket.
 *
 * All functions run on the loop thread.
 */
#ifndef MX_TLS_CLIENT_H
#define MX_TLS_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

/* Shared settings: trusted CAs, random generator, TLS config. */
typedef struct mx_tlsc_conf mx_tlsc_conf_t;
/* One client connection's TLS state. */
typedef struct mx_tlsc mx_tlsc_t;

/* mx__tlsc_read's "the peer closed the TLS session" result. */
#define MX_TLSC_EOF (-20001)

/* Loads `ca_file` (the system bundle; NULL = /etc/ssl/certs/ca-certificates.crt)
 * and, when not NULL, `extra_ca_file`.  A missing or unreadable system bundle
 * is tolerated when the extra one loads; an unreadable extra one is an
 * error.  Returns 0 and a new conf in *out (free with mx__tlsc_conf_free),
 * or a negative code with a message in `err`. */
int mx__tlsc_conf_new(const char *ca_file, const char *extra_ca_file, mx_tlsc_conf_t **out,
                      char *err, size_t errlen);
/* Frees `c`; every mx_tlsc_t made from it must have been freed before. */
void mx__tlsc_conf_free(mx_tlsc_conf_t *c);

/* A new session that will verify the server as `host` (a DNS name, or an
 * IPv4/IPv6 literal without brackets, matched against iPAddress entries of
 * the certificate).  SNI is sent for DNS names.  NULL on failure. */
mx_tlsc_t *mx__tlsc_new(mx_tlsc_conf_t *c, const char *host);
void mx__tlsc_free(mx_tlsc_t *t);

/* Appends ciphertext received from the server.  0 or -ENOMEM. */
int mx__tlsc_feed(mx_tlsc_t *t, const void *data, size_t len);

/* Advances the handshake.  1 when complete, 0 when it needs more input
 * (send what mx__tlsc_out holds, then wait for data), or -EPROTO with a
 * message in `err` (certificate problems are spelled out). */
int mx__tlsc_handshake(mx_tlsc_t *t, char *err, size_t errlen);

/* Encrypts all of `data` into the output buffer.  0 or -EPROTO/-ENOMEM. */
int mx__tlsc_write(mx_tlsc_t *t, const void *data, size_t len);

/* Decrypts into `buf`: >0 bytes, 0 when more input is needed, MX_TLSC_EOF
 * when the server sent close_notify, or -EPROTO. */
ssize_t mx__tlsc_read(mx_tlsc_t *t, void *buf, size_t len);

/* Ciphertext waiting to be sent (borrowed until the next call on `t`), and
 * how to drop what was taken. */
size_t mx__tlsc_out(mx_tlsc_t *t, const void **data);
void mx__tlsc_out_consume(mx_tlsc_t *t, size_t n);

#endif /* MX_TLS_CLIENT_H */
