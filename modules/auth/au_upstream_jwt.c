/*
 * au_upstream_jwt.c: verifies an upstream provider's id_token (a compact
 * JWS) against that provider's JWKS.  The JWS parsing and the signature
 * check are au_jwks.c's (au_jws_check, au_jws_sig_ok, shared with our own
 * tokens); this file turns JWKs (RSA n/e, EC P-256 x/y) into mbedTLS
 * public keys and picks the candidates.  The claims checks (iss, aud, exp,
 * nonce) are the caller's (au_upstream.c).
 */
#include "au_upstream.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

/* base64url field of a JWK → malloc'd bytes (NULL when absent or bad). */
static unsigned char *up_jwk_field(const json_t *jwk, const char *name, size_t *len)
{
    const char *v = json_string_value(json_object_get(jwk, name));
    unsigned char *out = NULL;
    if (!v || mx_b64_decode(v, strlen(v), &out, len) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* The JWK's public key into `pk` (initialised by the caller): RSA n/e, or
 * EC x/y on P-256.  0 or -1. */
static int up_jwk_pk(const json_t *jwk, bool ec, mbedtls_pk_context *pk)
{
    const char *a = ec ? "x" : "n", *b = ec ? "y" : "e";
    size_t al = 0, bl = 0;
    unsigned char *av = up_jwk_field(jwk, a, &al), *bv = up_jwk_field(jwk, b, &bl);
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    bool ok = av && bv &&
              mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(ec ? MBEDTLS_PK_ECKEY
                                                                 : MBEDTLS_PK_RSA)) == 0;
    if (ok && !ec) {
        mbedtls_rsa_context *rsa = mbedtls_pk_rsa(*pk);
        ok = mbedtls_rsa_import_raw(rsa, av, al, NULL, 0, NULL, 0, NULL, 0, bv, bl) == 0 &&
             mbedtls_rsa_complete(rsa) == 0 && mbedtls_rsa_check_pubkey(rsa) == 0;
    } else if (ok) {
        mbedtls_ecp_keypair *kp = mbedtls_pk_ec(*pk);
        ok = crv && !strcmp(crv, "P-256") && al == 32 && bl == 32 &&
             mbedtls_ecp_group_load(&kp->grp, MBEDTLS_ECP_DP_SECP256R1) == 0 &&
             mbedtls_mpi_read_binary(&kp->Q.X, av, 32) == 0 &&
             mbedtls_mpi_read_binary(&kp->Q.Y, bv, 32) == 0 && mbedtls_mpi_lset(&kp->Q.Z, 1) == 0 &&
             mbedtls_ecp_check_pubkey(&kp->grp, &kp->Q) == 0;
    }
    free(av);
    free(bv);
    return ok ? 0 : -1;
}

/* Whether `jwk` may be tried for the algorithm / `kid`. */
static bool up_key_fits(const json_t *jwk, bool ec, const char *kid)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *kkid = json_string_value(json_object_get(jwk, "kid"));
    const char *kalg = json_string_value(json_object_get(jwk, "alg"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    if (!kty || strcmp(kty, ec ? "EC" : "RSA"))
        return false;
    if (kid && kkid && strcmp(kid, kkid))
        return false;
    if (kalg && strcmp(kalg, ec ? "ES256" : "RS256"))
        return false;
    return !use || !strcmp(use, "sig");
}

/* Tries every fitting key of the JWKS `ud`. */
static bool up_jwks_ok(bool ec, const char *kid, const unsigned char digest[32],
                       const unsigned char *sig, size_t sl, void *ud)
{
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get((const json_t *)ud, "keys"), i, k) {
        if (!up_key_fits(k, ec, kid))
            continue;
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        bool ok = up_jwk_pk(k, ec, &pk) == 0 && au_jws_sig_ok(&pk, ec, digest, sig, sl);
        mbedtls_pk_free(&pk);
        if (ok)
            return true;
    }
    return false;
}

json_t *au_up_jwt_verify(const char *jws, const json_t *jwks, const char **why)
{
    json_t *claims = au_jws_check(jws, up_jwks_ok, (void *)jwks, why);
    if (!claims && *why) {
        /* The callers' messages name the id_token. */
        *why = !strcmp(*why, "unsupported JWS algorithm") ? "unsupported id_token algorithm"
               : !strcmp(*why, "malformed JWS")           ? "malformed id_token"
                                                          : "id_token signature not valid";
    }
    return claims;
}
