/*
 * au_jwks.c: the OpenID provider's signing keys (mbedTLS).
 *
 * An RSA key (RS256, the algorithm OIDC requires) and an EC P-256 key
 * (ES256) are read from PEM files, by default the data directory's
 * oidc_rsa.pem and oidc_ec.pem that `mxstack init-secrets` creates; a
 * missing file is generated here the same way (mode 0600, never
 * overwritten).  The public halves are published as a JWKS whose `kid`s are
 * RFC 7638 thumbprints, and compact JWS (id_tokens) are signed with them.
 *
 * Key rotation, as MAS's `secrets.keys`: `auth.signing_keys` lists key
 * files (a path, or {path, kid}), RSA or EC P-256, read in that order and
 * never generated.  The first key of each algorithm signs; every listed
 * key is in the JWKS, so tokens signed by a retired key still verify while
 * it stays listed.  Rotating = put a new key first, restart (or reload),
 * drop the old one once its tokens have expired.  Everything runs on the
 * loop thread (one DRBG).
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

#define AU_MAX_KEYS 16

typedef struct au_key {
    mbedtls_pk_context pk;
    bool ec;                      /* ES256, else RS256 */
    char kid[64];
} au_key_t;

struct au_keys {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    au_key_t key[AU_MAX_KEYS];
    int n;
    int rsa, ec;                  /* index of the signing key per algorithm, -1: none */
    json_t *jwks;                 /* {"keys": [...]} */
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

/* `want`: 1 RSA, 0 EC P-256, -1 either; `create` makes a missing file. */
static int au_load_key(mbedtls_pk_context *pk, const char *path, int want, bool create,
                       au_keys_t *k, char *err, size_t errlen)
{
    if (want < 0 && access(path, F_OK) == 0) {
        int prc = mbedtls_pk_parse_keyfile(pk, path, NULL);
        if (prc != 0) {
            snprintf(err, errlen, "auth: cannot read key %s (mbedtls -0x%04x)", path, -prc);
            return -EINVAL;
        }
        want = mbedtls_pk_get_type(pk) == MBEDTLS_PK_RSA;
        mbedtls_pk_free(pk);
        mbedtls_pk_init(pk);
    }
    bool rsa = want == 1;
    if (access(path, F_OK) != 0 && !create) {
        snprintf(err, errlen, "auth: signing key %s: %s", path, strerror(errno));
        return -ENOENT;
    }
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

/* The JWK of key `key` (new reference), its kid filled in when empty. */
static json_t *au_key_jwk(mx_pool_t *pool, au_key_t *key)
{
    json_t *jwk = NULL;
    if (!key->ec) {
        mbedtls_mpi n, e;
        mbedtls_mpi_init(&n);
        mbedtls_mpi_init(&e);
        char *ns = NULL, *es = NULL;
        if (mbedtls_rsa_export(mbedtls_pk_rsa(key->pk), &n, NULL, NULL, NULL, &e) == 0) {
            ns = au_mpi_b64(pool, &n, 0);
            es = au_mpi_b64(pool, &e, 0);
        }
        mbedtls_mpi_free(&n);
        mbedtls_mpi_free(&e);
        if (!ns || !es)
            return NULL;
        if (!key->kid[0])
            au_thumbprint(pool, mx_psprintf(pool, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
                                            es, ns),
                          key->kid, sizeof(key->kid));
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "use", "sig", "alg",
                        "RS256", "kid", key->kid, "n", ns, "e", es);
    } else {
        const mbedtls_ecp_keypair *ec = mbedtls_pk_ec(key->pk);
        char *xs = au_mpi_b64(pool, &ec->Q.X, 32), *ys = au_mpi_b64(pool, &ec->Q.Y, 32);
        if (!xs || !ys)
            return NULL;
        if (!key->kid[0])
            au_thumbprint(pool, mx_psprintf(pool,
                                            "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\","
                                            "\"y\":\"%s\"}", xs, ys),
                          key->kid, sizeof(key->kid));
        jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "use",
                        "sig", "alg", "ES256", "kid", key->kid, "x", xs, "y", ys);
    }
    return jwk;
}

static int au_build_jwks(au_keys_t *k)
{
    mx_pool_t *pool = mx_pool_new();
    json_t *keys = json_array();
    int rc = pool && keys ? 0 : -ENOMEM;
    for (int i = 0; rc == 0 && i < k->n; i++) {
        json_t *jwk = au_key_jwk(pool, &k->key[i]);
        if (!jwk)
            rc = -EIO;
        else
            json_array_append_new(keys, jwk);
    }
    if (pool)
        mx_pool_free(pool);
    if (rc == 0)
        k->jwks = json_pack("{s:o}", "keys", keys);
    else
        json_decref(keys);
    return rc ? rc : k->jwks ? 0 : -ENOMEM;
}

/* Adds the key file `path` (`want` as au_load_key) with an optional kid. */
static int au_key_add(au_keys_t *k, const char *path, int want, bool create, const char *kid,
                      char *err, size_t errlen)
{
    if (k->n == AU_MAX_KEYS) {
        snprintf(err, errlen, "auth: at most %d signing keys", AU_MAX_KEYS);
        return -E2BIG;
    }
    au_key_t *key = &k->key[k->n];
    mbedtls_pk_init(&key->pk);
    int rc = au_load_key(&key->pk, path, want, create, k, err, errlen);
    if (rc < 0) {
        mbedtls_pk_free(&key->pk);
        return rc;
    }
    key->ec = mbedtls_pk_get_type(&key->pk) != MBEDTLS_PK_RSA;
    snprintf(key->kid, sizeof(key->kid), "%s", kid ? kid : "");
    for (int i = 0; kid && i < k->n; i++)
        if (!strcmp(k->key[i].kid, kid)) {
            snprintf(err, errlen, "auth: two signing keys with kid %s", kid);
            mbedtls_pk_free(&key->pk);
            return -EINVAL;
        }
    if (key->ec && k->ec < 0)
        k->ec = k->n;
    if (!key->ec && k->rsa < 0)
        k->rsa = k->n;
    k->n++;
    return 0;
}

/* auth.signing_keys: the list, in order. */
static int au_keys_from_conf(au_keys_t *k, const json_t *list, char *err, size_t errlen)
{
    if (!json_is_array(list) || !json_array_size(list)) {
        snprintf(err, errlen, "auth.signing_keys must be a non-empty list of key files");
        return -EINVAL;
    }
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        const char *path = json_is_string(e) ? json_string_value(e)
                                             : json_string_value(json_object_get(e, "path"));
        const char *kid = json_string_value(json_object_get(e, "kid"));
        if (!path || (kid && (!*kid || strlen(kid) >= 64))) {
            snprintf(err, errlen, "auth.signing_keys[%zu]: a path, or {path, kid}", i);
            return -EINVAL;
        }
        int rc = au_key_add(k, path, -1, false, kid, err, errlen);
        if (rc < 0)
            return rc;
    }
    if (k->rsa < 0) {
        snprintf(err, errlen, "auth.signing_keys: an RSA key is required (RS256)");
        return -EINVAL;
    }
    return 0;
}

int au_keys_init(char *err, size_t errlen)
{
    au_keys_t *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    au.keys = k;
    k->rsa = k->ec = -1;
    mbedtls_entropy_init(&k->entropy);
    mbedtls_ctr_drbg_init(&k->drbg);
    if (mbedtls_ctr_drbg_seed(&k->drbg, mbedtls_entropy_func, &k->entropy,
                              (const unsigned char *)"mxstack-auth", 12) != 0) {
        snprintf(err, errlen, "auth: cannot seed the random generator");
        return -EIO;
    }
    int rc;
    if (au.conf->signing_keys) {
        rc = au_keys_from_conf(k, au.conf->signing_keys, err, errlen);
    } else {
        char *rp = au_key_path(au.conf->rsa_key_path, "oidc_rsa.pem");
        char *ep = au_key_path(au.conf->ec_key_path, "oidc_ec.pem");
        rc = rp && ep ? 0 : -ENOMEM;
        if (rc == 0)
            rc = au_key_add(k, rp, 1, true, NULL, err, errlen);
        if (rc == 0)
            rc = au_key_add(k, ep, 0, true, NULL, err, errlen);
        free(rp);
        free(ep);
    }
    if (rc == 0 && (rc = au_build_jwks(k)) < 0)
        snprintf(err, errlen, "auth: cannot build the JWKS");
    for (int i = 0; rc == 0 && i < k->n; i++)
        for (int j = i + 1; j < k->n; j++)
            if (!strcmp(k->key[i].kid, k->key[j].kid)) {
                snprintf(err, errlen, "auth: the same signing key is listed twice (kid %s)",
                         k->key[i].kid);
                rc = -EINVAL;
            }
    return rc;
}

void au_keys_fini(void)
{
    au_keys_t *k = au.keys;
    if (!k)
        return;
    for (int i = 0; i < k->n; i++)
        mbedtls_pk_free(&k->key[i].pk);
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
    if (au.keys && au.keys->rsa >= 0)
        json_array_append_new(a, json_string("RS256"));
    if (au.keys && au.keys->ec >= 0)
        json_array_append_new(a, json_string("ES256"));
    return a;
}

char *au_jws_sign(mx_pool_t *pool, const char *alg, const json_t *claims)
{
    au_keys_t *k = au.keys;
    bool es = alg && !strcmp(alg, "ES256");
    if (!k || (es ? k->ec < 0 : k->rsa < 0) || (alg && !es && strcmp(alg, "RS256")))
        return NULL;
    au_key_t *key = &k->key[es ? k->ec : k->rsa];
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", es ? "ES256" : "RS256", "typ", "JWT",
                            "kid", key->kid);
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
        mbedtls_ecp_keypair *ec = mbedtls_pk_ec(key->pk);
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
        rc = mbedtls_pk_sign(&key->pk, MBEDTLS_MD_SHA256, digest, sizeof(digest), sig, &siglen,
                             mbedtls_ctr_drbg_random, &k->drbg);
    }
    if (rc != 0)
        return NULL;
    char *sb = au_b64url(pool, sig, siglen);
    return sb ? mx_psprintf(pool, "%s.%s", input, sb) : NULL;
}

/* base64url → malloc'd bytes (NULL on bad input). */
static unsigned char *au_b64_dec(const char *s, size_t n, size_t *outlen)
{
    unsigned char *out = NULL;
    if (!s || mx_b64_decode(s, n, &out, outlen) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

bool au_jws_sig_ok(struct mbedtls_pk_context *pk, bool ec, const unsigned char digest[32],
                   const unsigned char *sig, size_t sl)
{
    if (!ec)
        return mbedtls_pk_can_do(pk, MBEDTLS_PK_RSA) &&
               mbedtls_pk_verify(pk, MBEDTLS_MD_SHA256, digest, 32, sig, sl) == 0;
    if (sl != 64 || !mbedtls_pk_can_do(pk, MBEDTLS_PK_ECKEY))
        return false;
    /* JWS ES256 is r || s (RFC 7518 3.4), not DER. */
    mbedtls_ecp_keypair *kp = mbedtls_pk_ec(*pk);
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    bool ok = kp->grp.id == MBEDTLS_ECP_DP_SECP256R1 &&
              mbedtls_mpi_read_binary(&r, sig, 32) == 0 &&
              mbedtls_mpi_read_binary(&s, sig + 32, 32) == 0 &&
              mbedtls_ecdsa_verify(&kp->grp, digest, 32, &kp->Q, &r, &s) == 0;
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return ok;
}

json_t *au_jws_check(const char *jws, au_jws_key_fn fn, void *ud, const char **why)
{
    *why = "malformed JWS";
    const char *d1 = jws ? strchr(jws, '.') : NULL;
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || strchr(d2 + 1, '.'))
        return NULL;
    size_t hl = 0, cl = 0, sl = 0;
    unsigned char *h = au_b64_dec(jws, (size_t)(d1 - jws), &hl);
    unsigned char *c = au_b64_dec(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
    unsigned char *sig = au_b64_dec(d2 + 1, strlen(d2 + 1), &sl);
    json_t *hdr = h ? json_loadb((const char *)h, hl, 0, NULL) : NULL;
    json_t *claims = c ? json_loadb((const char *)c, cl, 0, NULL) : NULL;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    bool ok = false;
    if (sig && json_is_object(claims) && alg) {
        if (strcmp(alg, "RS256") && strcmp(alg, "ES256")) {
            *why = "unsupported JWS algorithm";
        } else {
            *why = "JWS signature not valid";
            unsigned char digest[32];
            mx_sha256(jws, (size_t)(d2 - jws), digest);
            ok = fn(!strcmp(alg, "ES256"), kid, digest, sig, sl, ud);
        }
    }
    free(h);
    free(c);
    free(sig);
    json_decref(hdr);
    if (!ok) {
        json_decref(claims);
        return NULL;
    }
    *why = NULL;
    return claims;
}

/* One of our keys, by kid and algorithm. */
static bool au_own_key_ok(bool ec, const char *kid, const unsigned char digest[32],
                          const unsigned char *sig, size_t sl, void *ud)
{
    au_keys_t *k = ud;
    for (int i = 0; kid && i < k->n; i++)
        if (!strcmp(k->key[i].kid, kid))
            return k->key[i].ec == ec && au_jws_sig_ok(&k->key[i].pk, ec, digest, sig, sl);
    return false;
}

json_t *au_jws_verify(const char *jws)
{
    const char *why;
    return au.keys ? au_jws_check(jws, au_own_key_ok, au.keys, &why) : NULL;
}
