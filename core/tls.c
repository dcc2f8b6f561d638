/*
 * tls.c: mbedTLS server contexts and per-connection sessions over memory
 * buffers (see tls.h).  The bio callbacks read from the ciphertext the
 * connection fed in and append to an output buffer the connection sends
 * with uv_write, so mbedTLS never touches the socket.
 */
#include "tls.h"
#include "tls_buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

struct mx__tls_server {
    int refs;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt crt;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
};

struct mx__tls_conn {
    struct mx__tls_server *srv;
    mbedtls_ssl_context ssl;
    mx__tls_buf_t in, out;
    int handshake_done;
};

static const char *alpn_list[] = { "http/1.1", NULL };

static void server_free(struct mx__tls_server *s)
{
    mbedtls_ssl_config_free(&s->conf);
    mbedtls_pk_free(&s->key);
    mbedtls_x509_crt_free(&s->crt);
    mbedtls_ctr_drbg_free(&s->drbg);
    mbedtls_entropy_free(&s->entropy);
    free(s);
}

int mx__tls_server_new(const char *cert_path, const char *key_path,
                       struct mx__tls_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cert_path || !key_path) {
        snprintf(err, errlen, "TLS listener needs tls_certificate_path and tls_private_key_path");
        return -EINVAL;
    }
    struct mx__tls_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->refs = 1;
    mbedtls_entropy_init(&s->entropy);
    mbedtls_ctr_drbg_init(&s->drbg);
    mbedtls_x509_crt_init(&s->crt);
    mbedtls_pk_init(&s->key);
    mbedtls_ssl_config_init(&s->conf);
    char why[128];
    int rc;
    const char *what = "random generator";
    rc = mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy,
                               (const unsigned char *)"mxstack-tls", 11);
    if (rc == 0) {
        what = cert_path;
        rc = mbedtls_x509_crt_parse_file(&s->crt, cert_path);
    }
    if (rc == 0) {
        what = key_path;
        rc = mbedtls_pk_parse_keyfile(&s->key, key_path, NULL);
    }
    if (rc == 0) {
        what = "TLS configuration";
        rc = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    }
    if (rc == 0) {
        mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
        mbedtls_ssl_conf_min_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);   /* TLS 1.2 */
        mbedtls_ssl_conf_alpn_protocols(&s->conf, alpn_list);
        what = "certificate/key pair";
        rc = mbedtls_ssl_conf_own_cert(&s->conf, &s->crt, &s->key);
    }
    if (rc != 0) {
        mbedtls_strerror(rc, why, sizeof(why));
        snprintf(err, errlen, "%s: %s", what, why);
        server_free(s);
        return -EINVAL;
    }
    *out = s;
    return 0;
}

struct mx__tls_server *mx__tls_server_ref(struct mx__tls_server *s)
{
    if (s)
        s->refs++;
    return s;
}

void mx__tls_server_unref(struct mx__tls_server *s)
{
    if (s && --s->refs == 0)
        server_free(s);
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct mx__tls_conn *t = ctx;
    if (mx__tls_buf_append(&t->out, buf, len) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct mx__tls_conn *t = ctx;
    size_t n = mx__tls_buf_take(&t->in, buf, len);
    return n ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
}

struct mx__tls_conn *mx__tls_conn_new(struct mx__tls_server *s)
{
    struct mx__tls_conn *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &s->conf) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    t->srv = mx__tls_server_ref(s);
    return t;
}

void mx__tls_conn_free(struct mx__tls_conn *t)
{
    if (!t)
        return;
    mbedtls_ssl_free(&t->ssl);
    mx__tls_server_unref(t->srv);
    mx__tls_buf_free(&t->in);
    mx__tls_buf_free(&t->out);
    free(t);
}

int mx__tls_conn_input(struct mx__tls_conn *t, const char *data, size_t len)
{
    return mx__tls_buf_append(&t->in, data, len);
}

long mx__tls_conn_read(struct mx__tls_conn *t, char *buf, size_t cap)
{
    if (!t->handshake_done) {
        int rc = mbedtls_ssl_handshake(&t->ssl);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return 0;
        if (rc != 0)
            return -1;
        t->handshake_done = 1;
    }
    if (!cap)
        return 0;
    int rc = mbedtls_ssl_read(&t->ssl, (unsigned char *)buf, cap);
    if (rc > 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    return -1;   /* 0 = EOF, close_notify, or an error */
}

int mx__tls_conn_write(struct mx__tls_conn *t, const char *data, size_t len)
{
    while (len) {
        int rc = mbedtls_ssl_write(&t->ssl, (const unsigned char *)data, len);
        if (rc < 0)
            return -1;   /* the output buffer never says WANT_WRITE */
        data += rc;
        len -= (size_t)rc;
    }
    return 0;
}

char *mx__tls_conn_take_output(struct mx__tls_conn *t, size_t *len)
{
    if (!t->out.len)
        return NULL;
    char *p = (char *)t->out.p;
    *len = t->out.len;
    t->out.p = NULL;
    t->out.len = t->out.cap = 0;
    return p;
}
