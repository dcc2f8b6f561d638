/*
 * crypto.c: the small cryptographic toolbox the core offers modules.
 *
 * Base64 (Matrix uses unpadded standard Base64; URL-safe for some IDs),
 * SHA-256, HMAC-SHA1/-SHA256, ed25519 signatures, Matrix "Signing JSON"
 * (appendices: signatures and unsigned are left out of the signed bytes),
 * constant-time comparison and random tokens.  Mostly a thin layer over
 * libsodium; HMAC uses mbedTLS (libsodium has no SHA-1) and Base64 decoding
 * is our own (see mx_b64_decode for why).
 * Nothing here keeps state; libsodium must have been initialised with
 * mx__crypto_init first.  All functions are safe on any thread.
 */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>
#include <sodium.h>

int mx__crypto_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

/* -------------------------------------------------------------- base64 --- */

char *mx_b64_encode(const void *data, size_t len, int urlsafe)
{
    int variant = urlsafe ? sodium_base64_VARIANT_URLSAFE_NO_PADDING
                          : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
    size_t n = sodium_base64_ENCODED_LEN(len, variant);
    char *s = malloc(n);
    if (!s)
        return NULL;
    sodium_bin2base64(s, n, data ? data : (const void *)"", len, variant);
    return s;
}

/* Value of a Base64 character in either alphabet, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decoding is our own: libsodium 1.0.18's sodium_base642bin refuses input
 * whose unused final bits are not zero, and the spec's own test seed
 * ("...XA1") has such bits (Python, hence Synapse, ignores them); it also
 * lets some non-ASCII bytes through. */
int mx_b64_decode(const char *s, size_t slen, unsigned char **out, size_t *outlen)
{
    size_t pad = 0, body, n = 0;
    int has_std = 0, has_url = 0;
    unsigned acc = 0, bits = 0;

    *out = NULL;
    if (outlen)
        *outlen = 0;
    if (!s && slen)
        return -EINVAL;
    while (pad < 2 && pad < slen && s[slen - 1 - pad] == '=')
        pad++;
    body = slen - pad;
    /* One leftover character can't encode a byte; padding must be exactly
     * what brings a final partial group to four characters. */
    if (body % 4 == 1)
        return -EINVAL;
    if (pad && (slen % 4 != 0 || pad != 4 - body % 4))
        return -EINVAL;

    unsigned char *bin = malloc(body / 4 * 3 + 3);
    if (!bin)
        return -ENOMEM;
    for (size_t i = 0; i < body; i++) {
        unsigned char c = (unsigned char)s[i];
        int v = b64_value(c);
        if (v < 0)
            goto bad;
        if (c == '+' || c == '/')
            has_std = 1;
        else if (c == '-' || c == '_')
            has_url = 1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            bin[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (has_std && has_url)     /* one alphabet or the other */
        goto bad;
    bin[n] = '\0';     /* convenient for callers decoding text */
    *out = bin;
    if (outlen)
        *outlen = n;
    return 0;
bad:
    free(bin);
    return -EINVAL;
}

/* -------------------------------------------------------------- hashes --- */

void mx_sha256(const void *data, size_t len, unsigned char out[32])
{
    crypto_hash_sha256(out, data ? data : (const void *)"", len);
}

static void hmac(mbedtls_md_type_t type, size_t outlen, const void *key, size_t keylen,
                 const void *data, size_t len, unsigned char *out)
{
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(type);
    /* Fails only for an unknown digest or allocation failure; leave a
     * result that can never match a real MAC rather than stack garbage. */
    if (!info || mbedtls_md_hmac(info, key ? key : (const void *)"", keylen,
                                 data ? data : (const void *)"", len, out) != 0)
        memset(out, 0, outlen);
}

void mx_hmac_sha1(const void *key, size_t keylen, const void *data, size_t len,
                  unsigned char out[20])
{
    hmac(MBEDTLS_MD_SHA1, 20, key, keylen, data, len, out);
}

void mx_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                    unsigned char out[32])
{
    hmac(MBEDTLS_MD_SHA256, 32, key, keylen, data, len, out);
}

/* ------------------------------------------------------------- ed25519 --- */

char *mx_ed25519_sign_b64(const mx_signing_key_t *k, const void *msg, size_t len)
{
    unsigned char sig[crypto_sign_BYTES];
    if (crypto_sign_detached(sig, NULL, msg ? msg : (const void *)"", len, k->sk) != 0)
        return NULL;
    return mx_b64_encode(sig, sizeof(sig), 0);
}

int mx_ed25519_verify_b64(const char *pk_b64, const char *sig_b64, const void *msg, size_t len)
{
    unsigned char *pk = NULL, *sig = NULL;
    size_t pklen = 0, siglen = 0;
    int rc = -EINVAL;

    if (!pk_b64 || !sig_b64)
        return -EINVAL;
    if (mx_b64_decode(pk_b64, strlen(pk_b64), &pk, &pklen) != 0 ||
        pklen != crypto_sign_PUBLICKEYBYTES)
        goto out;
    if (mx_b64_decode(sig_b64, strlen(sig_b64), &sig, &siglen) != 0 ||
        siglen != crypto_sign_BYTES)
        goto out;
    rc = crypto_sign_verify_detached(sig, msg ? msg : (const void *)"", len, pk) == 0
             ? 0 : -EBADMSG;
out:
    free(pk);
    free(sig);
    return rc;
}

/* Canonical JSON of `obj` without its top-level `signatures` and `unsigned`
 * members: the bytes a signature covers.  Malloc'd; NULL when `obj` is not
 * an object or cannot be canonicalised. */
static char *signable_bytes(const json_t *obj, size_t *len)
{
    if (!json_is_object(obj))
        return NULL;
    /* A shallow copy shares the members (it only takes references), so the
     * caller's object is never modified, not even briefly. */
    json_t *copy = json_copy((json_t *)obj);
    if (!copy)
        return NULL;
    json_object_del(copy, "signatures");
    json_object_del(copy, "unsigned");
    char *s = mx_json_canonical(copy, len);
    json_decref(copy);
    return s;
}

int mx_json_sign(json_t *obj, const char *entity, const mx_signing_key_t *k)
{
    size_t len;
    char *bytes, *sig;
    json_t *sigs, *mine;
    int rc = -ENOMEM;

    if (!json_is_object(obj) || !entity || !k)
        return -EINVAL;
    sigs = json_object_get(obj, "signatures");
    if (sigs && !json_is_object(sigs))
        return -EINVAL;
    mine = sigs ? json_object_get(sigs, entity) : NULL;
    if (mine && !json_is_object(mine))
        return -EINVAL;

    bytes = signable_bytes(obj, &len);
    if (!bytes)
        return -EINVAL;
    sig = mx_ed25519_sign_b64(k, bytes, len);
    free(bytes);
    if (!sig)
        return -ENOMEM;

    /* Keep every signature already there, ours under other key ids too. */
    if (!sigs) {
        sigs = json_object();
        if (!sigs || json_object_set_new(obj, "signatures", sigs) != 0)
            goto out;
    }
    if (!mine) {
        mine = json_object();
        if (!mine || json_object_set_new(sigs, entity, mine) != 0)
            goto out;
    }
    if (json_object_set_new(mine, k->key_id, json_string(sig)) != 0)
        goto out;
    rc = 0;
out:
    free(sig);
    return rc;
}

int mx_json_verify(const json_t *obj, const char *entity, const char *key_id,
                   const char *pk_b64)
{
    size_t len;
    if (!json_is_object(obj) || !entity || !key_id || !pk_b64)
        return -EINVAL;
    const json_t *sig = json_object_get(json_object_get(obj, "signatures"), entity);
    sig = json_object_get(sig, key_id);
    if (!json_is_string(sig))
        return -ENOENT;
    char *bytes = signable_bytes(obj, &len);
    if (!bytes)
        return -EINVAL;
    int rc = mx_ed25519_verify_b64(pk_b64, json_string_value(sig), bytes, len);
    free(bytes);
    return rc;
}

/* ------------------------------------------------------ comparison, rng --- */

int mx_ct_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0;
}

int mx_ct_streq(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    /* `b` is the secret: the loop runs over its length only.  `a` (the
     * caller's input) is read up to its terminator and then held there. */
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++) {
        size_t ia = i < la ? i : la;
        diff |= (unsigned char)(a[ia] ^ b[i]);
    }
    return diff == 0;
}

void mx_random_bytes(void *buf, size_t len)
{
    if (len)
        randombytes_buf(buf, len);
}

char *mx_random_string(size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    if (len == SIZE_MAX)
        return NULL;
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    /* randombytes_uniform rejects samples past the largest multiple of 62,
     * so every character is equally likely. */
    for (size_t i = 0; i < len; i++)
        s[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    s[len] = '\0';
    return s;
}
