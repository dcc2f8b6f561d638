/*
 * tls_client.c: the outbound client's TLS sessions on mbedTLS 2.28.
 *
 * mbedTLS is given custom BIO callbacks over two in-memory buffers: `in`
 * holds ciphertext the loop read from the socket, `out` collects the
 * ciphertext mbedTLS wants sent.  The engine therefore never blocks; when
 * it needs more input the recv callback says WANT_READ and the caller
 * feeds it after the next libuv read.
 *
 * Verification: the server's chain must lead to the system CA bundle or
 * to the configured extra CAs (authmode REQUIRED), and the certificate
 * must name the host: DNS names through mbedtls_ssl_set_hostname (which
 * also sets SNI); IP literals, which mbedTLS 2.28 cannot match, by reading
 * the iPAddress entries of subjectAltName ourselves after the handshake.
 * TLS 1.2 is the minimum.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "tls_buf.h"
#include "tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

struct mx_tlsc_conf {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca;
    mbedtls_ssl_config ssl;
};

struct mx_tlsc {
    mbedtls_ssl_context ssl;
    mx__tls_buf_t in, out;
    int is_ip;                  /* verify an iPAddress SAN */
    unsigned char ip[16];
    size_t iplen;
};

static const char *alpn_list[] = { "http/1.1", NULL };

static void tls_strerror(int rc, char *buf, size_t len)
{
    mbedtls_strerror(rc, buf, len);
}

int mx__tlsc_conf_new(const char *ca_file, const char *extra_ca_file, mx_tlsc_conf_t **out,
                      char *err, size_t errlen)
{
    mx_tlsc_conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_ssl_config_init(&c->ssl);
    char why[128];
    static const unsigned char pers[] = "mxstack-http-client";
    int rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, pers,
                                   sizeof(pers) - 1);
    if (rc != 0) {
        tls_strerror(rc, why, sizeof(why));
        snprintf(err, errlen, "TLS random generator: %s", why);
        goto fail;
    }
    /* The system bundle may hold certificates mbedTLS cannot parse; a
     * positive result counts those and is fine as long as some loaded. */
    const char *sys = ca_file ? ca_file : DEFAULT_CA_FILE;
    rc = mbedtls_x509_crt_parse_file(&c->ca, sys);
    int have_sys = rc >= 0 && c->ca.version != 0;
    if (extra_ca_file) {
        rc = mbedtls_x509_crt_parse_file(&c->ca, extra_ca_file);
        if (rc != 0) {
            if (rc < 0)
                tls_strerror(rc, why, sizeof(why));
            else
                snprintf(why, sizeof(why), "%d certificates could not be parsed", rc);
            snprintf(err, errlen, "extra_ca_file %s: %s", extra_ca_file, why);
            rc = -EINVAL;
            goto fail;
        }
    } else if (!have_sys) {
        snprintf(err, errlen, "no CA certificates could be read from %s", sys);
        rc = -EINVAL;
        goto fail;
    }
    rc = mbedtls_ssl_config_defaults(&c->ssl, MBEDTLS_SSL_IS_CLIENT,
                                     MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        tls_strerror(rc, why, sizeof(why));
        snprintf(err, errlen, "TLS config: %s", why);
        goto fail;
    }
    mbedtls_ssl_conf_authmode(&c->ssl, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&c->ssl, &c->ca, NULL);
    mbedtls_ssl_conf_rng(&c->ssl, mbedtls_ctr_drbg_random, &c->drbg);
    mbedtls_ssl_conf_min_version(&c->ssl, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_alpn_protocols(&c->ssl, alpn_list);
    *out = c;
    return 0;
fail:
    mx__tlsc_conf_free(c);
    return rc < 0 && rc > -4096 ? rc : -EINVAL;
}

void mx__tlsc_conf_free(mx_tlsc_conf_t *c)
{
    if (!c)
        return;
    mbedtls_ssl_config_free(&c->ssl);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    free(c);
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    mx_tlsc_t *t = ctx;
    if (mx__tls_buf_append(&t->out, buf, len) != 0)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    mx_tlsc_t *t = ctx;
    size_t n = mx__tls_buf_take(&t->in, buf, len);
    return n ? (int)n : MBEDTLS_ERR_SSL_WANT_READ;
}

mx_tlsc_t *mx__tlsc_new(mx_tlsc_conf_t *c, const char *host)
{
    mx_tlsc_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &c->ssl) != 0)
        goto fail;
    if (inet_pton(AF_INET, host, t->ip) == 1) {
        t->is_ip = 1;
        t->iplen = 4;
    } else if (inet_pton(AF_INET6, host, t->ip) == 1) {
        t->is_ip = 1;
        t->iplen = 16;
    } else if (mbedtls_ssl_set_hostname(&t->ssl, host) != 0) {
        goto fail;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
fail:
    mx__tlsc_free(t);
    return NULL;
}

void mx__tlsc_free(mx_tlsc_t *t)
{
    if (!t)
        return;
    mbedtls_ssl_free(&t->ssl);
    mx__tls_buf_free(&t->in);
    mx__tls_buf_free(&t->out);
    free(t);
}

int mx__tlsc_feed(mx_tlsc_t *t, const void *data, size_t len)
{
    return mx__tls_buf_append(&t->in, data, len);
}

/* Walks the certificate's extensions to its subjectAltName and looks for
 * an iPAddress entry equal to t->ip.  1 when found. */
static int san_has_ip(const mx_tlsc_t *t, const mbedtls_x509_crt *crt)
{
    unsigned char *p = crt->v3_ext.p, *end = p + crt->v3_ext.len;
    size_t len;
    if (!p || crt->v3_ext.len == 0)
        return 0;
    if (*p == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3) &&
        mbedtls_asn1_get_tag(&p, end, &len, *p) != 0)
        return 0;
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
        return 0;
    end = p + len;
    static const char san_oid[] = MBEDTLS_OID_SUBJECT_ALT_NAME;
    while (p < end) {
        if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
            return 0;
        unsigned char *ext_end = p + len;
        size_t oidlen;
        if (mbedtls_asn1_get_tag(&p, ext_end, &oidlen, MBEDTLS_ASN1_OID))
            return 0;
        int is_san = oidlen == sizeof(san_oid) - 1 && memcmp(p, san_oid, oidlen) == 0;
        p += oidlen;
        int critical;
        if (p < ext_end && *p == MBEDTLS_ASN1_BOOLEAN &&
            mbedtls_asn1_get_bool(&p, ext_end, &critical))
            return 0;
        size_t vlen;
        if (mbedtls_asn1_get_tag(&p, ext_end, &vlen, MBEDTLS_ASN1_OCTET_STRING))
            return 0;
        if (is_san) {
            unsigned char *q = p, *qend = p + vlen;
            size_t l;
            if (mbedtls_asn1_get_tag(&q, qend, &l,
                                     MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
                return 0;
            qend = q + l;
            while (q < qend) {
                unsigned char tag = *q++;
                if (mbedtls_asn1_get_len(&q, qend, &l))
                    return 0;
                if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && l == t->iplen &&
                    memcmp(q, t->ip, l) == 0)
                    return 1;
                q += l;
            }
            return 0;
        }
        p = ext_end;
    }
    return 0;
}

int mx__tlsc_handshake(mx_tlsc_t *t, char *err, size_t errlen)
{
    int rc = mbedtls_ssl_handshake(&t->ssl);
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    if (rc == 0) {
        if (t->is_ip) {
            const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&t->ssl);
            if (!crt || !san_has_ip(t, crt)) {
                snprintf(err, errlen,
                         "TLS certificate verification failed: the certificate does not "
                         "name this IP address");
                return -EPROTO;
            }
        }
        return 1;
    }
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
        char info[256];
        int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
        /* the info text is one line per problem; keep it on one line */
        for (int i = 0; i < n; i++)
            if (info[i] == '\n')
                info[i] = (i == n - 1) ? '\0' : ';';
        snprintf(err, errlen, "TLS certificate verification failed: %s", info);
    } else {
        char why[128];
        tls_strerror(rc, why, sizeof(why));
        snprintf(err, errlen, "TLS handshake failed: %s", why);
    }
    return -EPROTO;
}

int mx__tlsc_write(mx_tlsc_t *t, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        int rc = mbedtls_ssl_write(&t->ssl, p, len);
        if (rc == MBEDTLS_ERR_SSL_ALLOC_FAILED)
            return -ENOMEM;
        if (rc < 0)
            return -EPROTO;
        p += rc;
        len -= (size_t)rc;
    }
    return 0;
}

ssize_t mx__tlsc_read(mx_tlsc_t *t, void *buf, size_t len)
{
    int rc = mbedtls_ssl_read(&t->ssl, buf, len);
    if (rc > 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == 0)
        return MX_TLSC_EOF;
    return -EPROTO;
}

size_t mx__tlsc_out(mx_tlsc_t *t, const void **data)
{
    *data = t->out.p + t->out.off;
    return t->out.len - t->out.off;
}

void mx__tlsc_out_consume(mx_tlsc_t *t, size_t n)
{
    t->out.off += n;
    if (t->out.off >= t->out.len)
        t->out.off = t->out.len = 0;
}
