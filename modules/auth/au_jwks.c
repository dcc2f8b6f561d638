/*
 * au_jwks.c: the OpenID provider's signing keys (mbedTLS).
 *
 * An RSA key (RS256, the algorithm OIDC requires) and an EC P-256 key
 * (ES256) are read from PEM files, by default the data directory's
 * oidc_rsa.pem and oidc_ec.pem that `mxstack init-secrets` creates; a
 * missing file is generated here the same way (mode 0600, never
 * overwritten).  The public halves are published as a JWKS whose `kid`s are
 * RFC 7638 thumbprints, and compact JWS (id_tokens) are signed with them.
 * Everything runs on the loop thread (one DRBG).
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

struct au_keys {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context rsa, ec;
    bool has_rsa, has_ec;
    json_t *jwks;                 /* {"keys": [...]} */
    char rsa_kid[64], ec_kid[64];
};

static char *au_key_path(const char *configured, const char *file)
{
    if (configured)
        return strdup(configured);
    const char *dir = mx_server_conf()->data_dir;
    size_t n = strlen(dir ? dir : ".") + strlen(file) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir ? dir : ".", file);
    return p;
}

/* Big-endian unsigned bytes of `x`, `len` bytes (0: minimal), base64url. */
static char *au_mpi_b64(mx_pool_t *pool, const mbedtls_mpi *x, size_t len)
{
    unsigned char buf[1024];
    if (!len)
        len = mbedtls_mpi_size(x);
    if (len > sizeof(buf) || mbedtls_mpi_write_binary(x, buf, len) != 0)
        return NULL;
    return au_b64url(pool, buf, len);
}

static int au_write_new_key(const char *path, bool rsa, au_keys_t *k)
{
    mbedtls_pk_context pk;
    unsigned char pem[8192];
    mbedtls_pk_init(&pk);
    int rc = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(rsa ? MBEDTLS_PK_RSA
                                                                 : MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = rsa ? mbedtls_rsa_gen_key(mbedtls_pk_rsa(pk), mbedtls_ctr_drbg_random, &k->drbg,
                                       2048, 65537)
                 : mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                       mbedtls_ctr_drbg_random, &k->drbg);
    if (rc == 0)
        rc = mbedtls_pk_write_key_pem(&pk, pem, sizeof(pem));
    mbedtls_pk_free(&pk);
    if (rc != 0)
        return -EIO;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        memset(pem, 0, sizeof(pem));
        return errno == EEXIST ? 0 : -errno;   /* someone else made it: use theirs */
    }
    size_t len = strlen((char *)pem), off = 0;
    while (off < len) {
        ssize_t w = write(fd, pem + off, len - off);
        if (w <= 0) {
            close(fd);
            unlink(path);
            return -EIO;
        }
        off += (size_t)w;
    }
    memset(pem, 0, sizeof(pem));
    if (fsync(fd) != 0 || close(fd) != 0)
        return -EIO;
    mx_log(AU_LOG, MX_LOG_INFO, "generated %s key %s", rsa ? "RSA" : "EC P-256", path);
    return 0;
}

static int au_load_key(mbedtls_pk_context *pk, const char *path, bool rsa, au_keys_t *k,
                       char *err, size_t errlen)
{
    if (access(path, F_OK) != 0) {
        int rc = au_write_new_key(path, rsa, k);
        if (rc < 0) {
            snprintf(err, errlen, "auth: cannot create key %s: %s", path, strerror(-rc));
            return rc;
        }
    }
    int rc = mbedtls_pk_parse_keyfile(pk, path, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "auth: cannot read key %s (mbedtls -0x%04x)", path, -rc);
        return -EINVAL;
    }
    mbedtls_pk_type_t t = mbedtls_pk_get_type(pk);
    if (rsa && t != MBEDTLS_PK_RSA) {
        snprintf(err, errlen, "auth: %s is not an RSA key", path);
        return -EINVAL;
    }
    if (!rsa && (t != MBEDTLS_PK_ECKEY || mbedtls_pk_ec(*pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1)) {
        snprintf(err, errlen, "auth: %s is not an EC P-256 key", path);
        return -EINVAL;
    }
    if (rsa && mbedtls_pk_get_bitlen(pk) < 2048) {
        snprintf(err, errlen, "auth: %s: RSA keys need at least 2048 bits", path);
        return -EINVAL;
    }
    return 0;
}

/* RFC 7638: sha256 of the required members in lexicographic order, no
 * whitespace. */
static void au_thumbprint(mx_pool_t *pool, const char *canon, char *out, size_t outlen)
{
    unsigned char d[32];
    mx_sha256(canon, strlen(canon), d);
    char *b = au_b64url(pool, d, sizeof(d));
    snprintf(out, outlen, "%s", b ? b : "key");
}

static int au_build_jwks(au_keys_t *k)
{
    mx_pool_t *pool = mx_pool_new();
    json_t *keys = json_array();
    if (!pool || !keys) {
        if (pool)
            mx_pool_free(pool);
        json_decref(keys);
        return -ENOMEM;
    }
    int rc = 0;
    if (k->has_rsa) {
        mbedtls_mpi n, e;
        mbedtls_mpi_init(&n);
        mbedtls_mpi_init(&e);
        char *ns = NULL, *es = NULL;
        if (mbedtls_rsa_export(mbedtls_pk_rsa(k->rsa), &n, NULL, NULL, NULL, &e) == 0) {
            ns = au_mpi_b64(pool, &n, 0);
            es = au_mpi_b64(pool, &e, 0);
        }
        mbedtls_mpi_free(&n);
        mbedtls_mpi_free(&e);
        if (!ns || !es) {
            rc = -EIO;
        } else {
            char *canon = mx_psprintf(pool, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", es, ns);
            au_thumbprint(pool, canon, k->rsa_kid, sizeof(k->rsa_kid));
            json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA",
                                                  "use", "sig", "alg", "RS256", "kid", k->rsa_kid,
                                                  "n", ns, "e", es));
        }
    }
    if (rc == 0 && k->has_ec) {
        const mbedtls_ecp_keypair *ec = mbedtls_pk_ec(k->ec);
        char *xs = au_mpi_b64(pool, &ec->Q.X, 32), *ys = au_mpi_b64(pool, &ec->Q.Y, 32);
        if (!xs || !ys) {
            rc = -EIO;
        } else {
            char *canon = mx_psprintf(pool, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                                      xs, ys);
            au_thumbprint(pool, canon, k->ec_kid, sizeof(k->ec_kid));
            json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty",
                                                  "EC", "crv", "P-256", "use", "sig", "alg",
                                                  "ES256", "kid", k->ec_kid, "x", xs, "y", ys));
        }
    }
    mx_pool_free(pool);
    if (rc == 0)
        k->jwks = json_pack("{s:o}", "keys", keys);
    else
        json_decref(keys);
    return rc ? rc : k->jwks ? 0 : -ENOMEM;
}

int au_keys_init(char *err, size_t errlen)
{
    au_keys_t *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    au.keys = k;
    mbedtls_entropy_init(&k->entropy);
    mbedtls_ctr_drbg_init(&k->drbg);
    mbedtls_pk_init(&k->rsa);
    mbedtls_pk_init(&k->ec);
    if (mbedtls_ctr_drbg_seed(&k->drbg, mbedtls_entropy_func, &k->entropy,
                              (const unsigned char *)"mxstack-auth", 12) != 0) {
        snprintf(err, errlen, "auth: cannot seed the random generator");
        return -EIO;
    }
    char *rp = au_key_path(au.conf->rsa_key_path, "oidc_rsa.pem");
    char *ep = au_key_path(au.conf->ec_key_path, "oidc_ec.pem");
    int rc = rp && ep ? 0 : -ENOMEM;
    if (rc == 0)
        rc = au_load_key(&k->rsa, rp, true, k, err, errlen);
    k->has_rsa = rc == 0;
    if (rc == 0)
        rc = au_load_key(&k->ec, ep, false, k, err, errlen);
    k->has_ec = rc == 0;
    free(rp);
    free(ep);
    if (rc == 0 && (rc = au_build_jwks(k)) < 0)
        snprintf(err, errlen, "auth: cannot build the JWKS");
    return rc;
}

void au_keys_fini(void)
{
    au_keys_t *k = au.keys;
    if (!k)
        return;
    mbedtls_pk_free(&k->rsa);
    mbedtls_pk_free(&k->ec);
    mbedtls_ctr_drbg_free(&k->drbg);
    mbedtls_entropy_free(&k->entropy);
    json_decref(k->jwks);
    free(k);
    au.keys = NULL;
}

json_t *au_jwks(void)
{
    return au.keys && au.keys->jwks ? json_deep_copy(au.keys->jwks) : json_pack("{s:[]}", "keys");
}

json_t *au_jws_algs(void)
{
    json_t *a = json_array();
    if (au.keys && au.keys->has_rsa)
        json_array_append_new(a, json_string("RS256"));
    if (au.keys && au.keys->has_ec)
        json_array_append_new(a, json_string("ES256"));
    return a;
}

char *au_jws_sign(mx_pool_t *pool, const char *alg, const json_t *claims)
{
    au_keys_t *k = au.keys;
    bool es = alg && !strcmp(alg, "ES256");
    if (!k || (es ? !k->has_ec : !k->has_rsa) || (alg && !es && strcmp(alg, "RS256")))
        return NULL;
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", es ? "ES256" : "RS256", "typ", "JWT",
                            "kid", es ? k->ec_kid : k->rsa_kid);
    char *h = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *c = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    char *hb = h ? au_b64url(pool, h, strlen(h)) : NULL;
    char *cb = c ? au_b64url(pool, c, strlen(c)) : NULL;
    free(h);
    free(c);
    if (!hb || !cb)
        return NULL;
    char *input = mx_psprintf(pool, "%s.%s", hb, cb);
    unsigned char digest[32], sig[MBEDTLS_MPI_MAX_SIZE];
    size_t siglen = 0;
    mx_sha256(input, strlen(input), digest);
    int rc;
    if (es) {
        /* JWS wants r || s, 32 bytes each (RFC 7518 §3.4), not DER. */
        mbedtls_ecp_keypair *ec = mbedtls_pk_ec(k->ec);
        mbedtls_mpi r, s;
        mbedtls_mpi_init(&r);
        mbedtls_mpi_init(&s);
        rc = mbedtls_ecdsa_sign(&ec->grp, &r, &s, &ec->d, digest, sizeof(digest),
                                mbedtls_ctr_drbg_random, &k->drbg);
        if (rc == 0)
            rc = mbedtls_mpi_write_binary(&r, sig, 32);
        if (rc == 0)
            rc = mbedtls_mpi_write_binary(&s, sig + 32, 32);
        siglen = 64;
        mbedtls_mpi_free(&r);
        mbedtls_mpi_free(&s);
    } else {
        rc = mbedtls_pk_sign(&k->rsa, MBEDTLS_MD_SHA256, digest, sizeof(digest), sig, &siglen,
                             mbedtls_ctr_drbg_random, &k->drbg);
    }
    if (rc != 0)
        return NULL;
    char *sb = au_b64url(pool, sig, siglen);
    return sb ? mx_psprintf(pool, "%s.%s", input, sb) : NULL;
}
