/*
 * au_upstream_jwt.c: verifies an upstream provider's id_token (a compact
 * JWS) against that provider's JWKS: RS256 (RSA n/e) and ES256 (P-256 x/y),
 * with mbedTLS.  The claims checks (iss, aud, exp, nonce) are the caller's
 * (au_upstream.c); this file only answers "signed by one of these keys?".
 */
#include "au_upstream.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

/* base64url → malloc'd bytes (NULL on bad input). */
static unsigned char *up_b64(const char *s, size_t n, size_t *outlen)
{
    unsigned char *out = NULL;
    if (!s || mx_b64_decode(s, n, &out, outlen) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static unsigned char *up_jwk_field(const json_t *jwk, const char *name, size_t *len)
{
    const char *v = json_string_value(json_object_get(jwk, name));
    return v ? up_b64(v, strlen(v), len) : NULL;
}

/* RS256 with the JWK's n and e. */
static bool up_verify_rsa(const json_t *jwk, const unsigned char digest[32],
                          const unsigned char *sig, size_t sl)
{
    size_t nl = 0, el = 0;
    unsigned char *n = up_jwk_field(jwk, "n", &nl), *e = up_jwk_field(jwk, "e", &el);
    bool ok = false;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    if (n && e && mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) == 0) {
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(pk);
        ok = mbedtls_rsa_import_raw(rsa, n, nl, NULL, 0, NULL, 0, NULL, 0, e, el) == 0 &&
             mbedtls_rsa_complete(rsa) == 0 && mbedtls_rsa_check_pubkey(rsa) == 0 &&
             mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, digest, 32, sig, sl) == 0;
    }
    mbedtls_pk_free(&pk);
    free(n);
    free(e);
    return ok;
}

/* ES256 with the JWK's x and y on P-256; the signature is r || s. */
static bool up_verify_ec(const json_t *jwk, const unsigned char digest[32],
                         const unsigned char *sig, size_t sl)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (sl != 64 || !crv || strcmp(crv, "P-256"))
        return false;
    size_t xl = 0, yl = 0;
    unsigned char *x = up_jwk_field(jwk, "x", &xl), *y = up_jwk_field(jwk, "y", &yl);
    bool ok = false;
    mbedtls_ecp_group grp;
    mbedtls_ecp_point q;
    mbedtls_mpi r, s;
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    if (x && y && xl == 32 && yl == 32)
        ok = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0 &&
             mbedtls_mpi_read_binary(&q.X, x, 32) == 0 &&
             mbedtls_mpi_read_binary(&q.Y, y, 32) == 0 && mbedtls_mpi_lset(&q.Z, 1) == 0 &&
             mbedtls_ecp_check_pubkey(&grp, &q) == 0 &&
             mbedtls_mpi_read_binary(&r, sig, 32) == 0 &&
             mbedtls_mpi_read_binary(&s, sig + 32, 32) == 0 &&
             mbedtls_ecdsa_verify(&grp, digest, 32, &q, &r, &s) == 0;
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_group_free(&grp);
    free(x);
    free(y);
    return ok;
}

/* Whether `jwk` may be tried for `alg` / `kid`. */
static bool up_key_fits(const json_t *jwk, const char *alg, const char *kid)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *kkid = json_string_value(json_object_get(jwk, "kid"));
    const char *kalg = json_string_value(json_object_get(jwk, "alg"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    if (!kty || strcmp(kty, !strcmp(alg, "RS256") ? "RSA" : "EC"))
        return false;
    if (kid && kkid && strcmp(kid, kkid))
        return false;
    if (kalg && strcmp(kalg, alg))
        return false;
    return !use || !strcmp(use, "sig");
}

json_t *au_up_jwt_verify(const char *jws, const json_t *jwks, const char **why)
{
    *why = "malformed id_token";
    const char *d1 = jws ? strchr(jws, '.') : NULL;
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || strchr(d2 + 1, '.'))
        return NULL;
    size_t hl = 0, cl = 0, sl = 0;
    unsigned char *h = up_b64(jws, (size_t)(d1 - jws), &hl);
    unsigned char *c = up_b64(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
    unsigned char *sig = up_b64(d2 + 1, strlen(d2 + 1), &sl);
    json_t *hdr = h ? json_loadb((const char *)h, hl, 0, NULL) : NULL;
    json_t *claims = c ? json_loadb((const char *)c, cl, 0, NULL) : NULL;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *kid = json_string_value(json_object_get(hdr, "kid"));
    bool ok = false;
    if (sig && json_is_object(claims) && alg) {
        if (strcmp(alg, "RS256") && strcmp(alg, "ES256")) {
            *why = "unsupported id_token algorithm";
        } else {
            *why = "id_token signature not valid";
            unsigned char digest[32];
            mx_sha256(jws, (size_t)(d2 - jws), digest);
            size_t i;
            json_t *k;
            json_array_foreach(json_object_get(jwks, "keys"), i, k) {
                if (!up_key_fits(k, alg, kid))
                    continue;
                ok = !strcmp(alg, "RS256") ? up_verify_rsa(k, digest, sig, sl)
                                           : up_verify_ec(k, digest, sig, sl);
                if (ok)
                    break;
            }
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
