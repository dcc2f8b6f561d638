/*
 * test_crypto.c: unit tests for core/crypto.c and core/signing_key.c:
 * Base64 (the spec's unpadded examples, padding, URL-safe, bad input),
 * SHA-256 and HMAC known answers (FIPS 180-2, RFC 2202, RFC 4231), the
 * spec's ed25519 / JSON / event signing test vectors, sign+verify with
 * tampering, constant-time comparison, random strings, and the Synapse
 * signing key file (round trip and malformed files).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <sodium.h>

#include "core.h"

/* The spec's "Cryptographic Test Vectors" key (appendices). */
#define SPEC_SEED "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"

/* ------------------------------------------------------------ helpers --- */

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void spec_key(mx_signing_key_t *k)
{
    unsigned char *seed;
    size_t n;
    assert_int_equal(mx_b64_decode(SPEC_SEED, strlen(SPEC_SEED), &seed, &n), 0);
    assert_int_equal(n, 32);
    assert_int_equal(crypto_sign_seed_keypair(k->pk, k->sk, seed), 0);
    strcpy(k->key_id, "ed25519:1");
    free(seed);
}

static json_t *parse(const char *s)
{
    const char *code;
    json_t *v = mx_json_parse(s, strlen(s), &code, NULL, 0);
    assert_non_null(v);
    return v;
}

static const char *sig_of(const json_t *o, const char *entity, const char *key_id)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(o, "signatures"), entity), key_id));
}

static char tmpdir[64];

static int setup_tmpdir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/mx-test-crypto-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
    return 0;
}

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static int count_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* -------------------------------------------------------------- base64 --- */

static void test_b64_spec_examples(void **state)
{
    (void)state;
    static const char *plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    static const char *enc[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
    static const char *padded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                    "Zm9vYmFy" };
    for (size_t i = 0; i < 7; i++) {
        char *s = mx_b64_encode(plain[i], strlen(plain[i]), 0);
        assert_string_equal(s, enc[i]);
        free(s);
        s = mx_b64_encode(plain[i], strlen(plain[i]), 1);
        assert_string_equal(s, enc[i]);
        free(s);

        unsigned char *out = NULL;
        size_t n = 99;
        assert_int_equal(mx_b64_decode(enc[i], strlen(enc[i]), &out, &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(out, plain[i], n);
        assert_int_equal(out[n], 0);    /* terminated for convenience */
        free(out);
        assert_int_equal(mx_b64_decode(padded[i], strlen(padded[i]), &out, &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(out, plain[i], n);
        free(out);
    }
}

static void test_b64_alphabets(void **state)
{
    (void)state;
    const unsigned char bin[] = { 0xfb, 0xff, 0xbf, 0xfe };
    char *s = mx_b64_encode(bin, sizeof(bin), 0);
    assert_string_equal(s, "+/+//g");
    free(s);
    s = mx_b64_encode(bin, sizeof(bin), 1);
    assert_string_equal(s, "-_-__g");
    free(s);

    static const char *ok[] = { "+/+//g", "-_-__g", "+/+//g==", "-_-__g==" };
    for (size_t i = 0; i < 4; i++) {
        unsigned char *out;
        size_t n;
        assert_int_equal(mx_b64_decode(ok[i], strlen(ok[i]), &out, &n), 0);
        assert_int_equal(n, sizeof(bin));
        assert_memory_equal(out, bin, n);
        free(out);
    }
    /* Unused bits after the last byte are ignored, like Python does (the
     * spec's test seed has some). */
    unsigned char *f;
    size_t fn;
    assert_int_equal(mx_b64_decode("Zh", 2, &f, &fn), 0);
    assert_int_equal(fn, 1);
    assert_int_equal(f[0], 'f');
    free(f);
    /* Only the given length is read. */
    unsigned char *out;
    size_t n;
    assert_int_equal(mx_b64_decode("Zm9v!!!", 4, &out, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "foo", 3);
    free(out);
}

static void test_b64_bad_input(void **state)
{
    (void)state;
    static const char *bad[] = {
        "Z",         /* one character can't hold a byte */
        "Zm9vY",
        "Zg=",       /* wrong amount of padding */
        "Zg===",
        "Zm8==",
        "Zm9v=",
        "Zm9v====",
        "=",
        "==",
        "Z=g=",      /* padding in the middle */
        "Zm9v!",     /* garbage */
        "Zm 9v",     /* whitespace */
        "Zm9v\n",
        "Zm9v.",
        "+/-_",      /* mixed alphabets */
        "\xc3\xa9\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned char *out = (unsigned char *)"x";
        size_t n = 7;
        int rc = mx_b64_decode(bad[i], strlen(bad[i]), &out, &n);
        if (rc == 0)
            fail_msg("accepted bad base64 '%s'", bad[i]);
        assert_int_equal(rc, -EINVAL);
        assert_null(out);
    }
    unsigned char *out;
    size_t n;
    assert_int_equal(mx_b64_decode("Zm\0v", 4, &out, &n), -EINVAL);
}

static void test_b64_round_trip(void **state)
{
    (void)state;
    unsigned char buf[200];
    for (size_t len = 0; len <= sizeof(buf); len++) {
        mx_random_bytes(buf, len);
        for (int url = 0; url < 2; url++) {
            char *s = mx_b64_encode(buf, len, url);
            assert_non_null(s);
            assert_int_equal(strlen(s), (len * 4 + 2) / 3);
            assert_null(strchr(s, '='));
            assert_null(strpbrk(s, url ? "+/" : "-_"));
            unsigned char *out;
            size_t n;
            assert_int_equal(mx_b64_decode(s, strlen(s), &out, &n), 0);
            assert_int_equal(n, len);
            if (len)
                assert_memory_equal(out, buf, len);
            free(out);
            free(s);
        }
    }
}

/* -------------------------------------------------------------- hashes --- */

static void test_sha256(void **state)
{
    (void)state;
    unsigned char d[32];
    char h[65];
    mx_sha256("", 0, d);
    hex(d, 32, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    mx_sha256("abc", 3, d);
    hex(d, 32, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    mx_sha256(m, strlen(m), d);
    hex(d, 32, h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static const char big_key_msg[] = "Test Using Larger Than Block-Size Key - Hash Key First";

static void test_hmac_sha1_rfc2202(void **state)
{
    (void)state;
    unsigned char key[80], d[20];
    char h[41];

    memset(key, 0x0b, 20);
    mx_hmac_sha1(key, 20, "Hi There", 8, d);
    hex(d, 20, h);
    assert_string_equal(h, "b617318655057264e28bc0b6fb378c8ef146be00");

    mx_hmac_sha1("Jefe", 4, "what do ya want for nothing?", 28, d);
    hex(d, 20, h);
    assert_string_equal(h, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");

    unsigned char data[50];
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    mx_hmac_sha1(key, 20, data, 50, d);
    hex(d, 20, h);
    assert_string_equal(h, "125d7342b9ac11cd91a39af48aa17b4f63f175d3");

    memset(key, 0xaa, 80);
    mx_hmac_sha1(key, 80, big_key_msg, strlen(big_key_msg), d);
    hex(d, 20, h);
    assert_string_equal(h, "aa4ae5e15272d00e95705637ce8a3b55ed402112");
}

static void test_hmac_sha256_rfc4231(void **state)
{
    (void)state;
    unsigned char key[131], d[32];
    char h[65];

    memset(key, 0x0b, 20);
    mx_hmac_sha256(key, 20, "Hi There", 8, d);
    hex(d, 32, h);
    assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    mx_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d);
    hex(d, 32, h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    unsigned char data[50];
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    mx_hmac_sha256(key, 20, data, 50, d);
    hex(d, 32, h);
    assert_string_equal(h, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    /* Test case 6: a key longer than the block size is hashed first. */
    memset(key, 0xaa, 131);
    mx_hmac_sha256(key, 131, big_key_msg, strlen(big_key_msg), d);
    hex(d, 32, h);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    /* Empty key and message are fine. */
    mx_hmac_sha256("", 0, "", 0, d);
    hex(d, 32, h);
    assert_string_equal(h, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* ------------------------------------------------------------- ed25519 --- */

static void test_ed25519_spec_vectors(void **state)
{
    (void)state;
    mx_signing_key_t k;
    spec_key(&k);

    char *sig = mx_ed25519_sign_b64(&k, "{}", 2);
    assert_string_equal(sig, "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ");
    char *pk = mx_b64_encode(k.pk, 32, 0);
    assert_int_equal(mx_ed25519_verify_b64(pk, sig, "{}", 2), 0);
    assert_true(mx_ed25519_verify_b64(pk, sig, "{ }", 3) < 0);
    assert_true(mx_ed25519_verify_b64(pk, sig, "{}", 1) < 0);
    free(sig);

    const char *m = "{\"one\":1,\"two\":\"Two\"}";
    sig = mx_ed25519_sign_b64(&k, m, strlen(m));
    assert_string_equal(sig, "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw");
    assert_int_equal(mx_ed25519_verify_b64(pk, sig, m, strlen(m)), 0);

    /* Bad encodings and lengths are refused, not crashed on. */
    assert_true(mx_ed25519_verify_b64("!!", sig, m, strlen(m)) < 0);
    assert_true(mx_ed25519_verify_b64("Zm9v", sig, m, strlen(m)) < 0);
    assert_true(mx_ed25519_verify_b64(pk, "Zm9v", m, strlen(m)) < 0);
    assert_true(mx_ed25519_verify_b64(pk, "", m, strlen(m)) < 0);
    assert_true(mx_ed25519_verify_b64(NULL, sig, m, strlen(m)) < 0);
    assert_true(mx_ed25519_verify_b64(pk, NULL, m, strlen(m)) < 0);
    /* Padded and URL-safe forms of the same bytes are accepted. */
    char *url = mx_b64_encode(k.pk, 32, 1);
    assert_int_equal(mx_ed25519_verify_b64(url, sig, m, strlen(m)), 0);
    free(url);
    /* A flipped bit in the signature. */
    unsigned char *raw;
    size_t n;
    assert_int_equal(mx_b64_decode(sig, strlen(sig), &raw, &n), 0);
    raw[10] ^= 1;
    char *bad = mx_b64_encode(raw, n, 0);
    assert_int_equal(mx_ed25519_verify_b64(pk, bad, m, strlen(m)), -EBADMSG);
    free(bad);
    free(raw);
    free(sig);
    free(pk);
}

static void test_json_sign_spec_vectors(void **state)
{
    (void)state;
    mx_signing_key_t k;
    spec_key(&k);
    char *pk = mx_b64_encode(k.pk, 32, 0);

    json_t *o = json_object();
    assert_int_equal(mx_json_sign(o, "domain", &k), 0);
    char *s = mx_json_canonical(o, NULL);
    assert_string_equal(s, "{\"signatures\":{\"domain\":{\"ed25519:1\":\"K8280/U9SSy9IVtjBuVeLr+"
                           "HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ\"}}}");
    free(s);
    assert_int_equal(mx_json_verify(o, "domain", "ed25519:1", pk), 0);
    json_decref(o);

    o = parse("{\"one\": 1, \"two\": \"Two\"}");
    assert_int_equal(mx_json_sign(o, "domain", &k), 0);
    s = mx_json_canonical(o, NULL);
    assert_string_equal(s, "{\"one\":1,\"signatures\":{\"domain\":{\"ed25519:1\":\"KqmLSbO39/Bzb0QIYE82z"
                           "qLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw\"}},"
                           "\"two\":\"Two\"}");
    free(s);
    assert_int_equal(mx_json_verify(o, "domain", "ed25519:1", pk), 0);
    json_decref(o);
    free(pk);
}

/* The spec's "Event Signing" vectors: the content hash is SHA-256 over the
 * canonical event without unsigned, signatures and hashes; the signature
 * is over the redacted event (for the message event, content becomes {}). */
static void test_event_signing_spec_vectors(void **state)
{
    (void)state;
    mx_signing_key_t k;
    spec_key(&k);
    unsigned char d[32];
    size_t len;

    json_t *ev = parse("{\"room_id\":\"!x:domain\",\"sender\":\"@a:domain\",\"origin\":\"domain\","
                       "\"origin_server_ts\":1000000,\"signatures\":{},\"hashes\":{},\"type\":\"X\","
                       "\"content\":{},\"prev_events\":[],\"auth_events\":[],\"depth\":3,"
                       "\"unsigned\":{\"age_ts\":1000000}}");
    json_t *h = json_deep_copy(ev);
    json_object_del(h, "unsigned");
    json_object_del(h, "signatures");
    json_object_del(h, "hashes");
    char *c = mx_json_canonical(h, &len);
    mx_sha256(c, len, d);
    char *b = mx_b64_encode(d, 32, 0);
    assert_string_equal(b, "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
    json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", b));
    free(b);
    free(c);
    json_decref(h);
    assert_int_equal(mx_json_sign(ev, "domain", &k), 0);
    assert_string_equal(sig_of(ev, "domain", "ed25519:1"),
                        "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg");
    /* unsigned was put back untouched */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "unsigned"), "age_ts")),
                     1000000);
    json_decref(ev);

    ev = parse("{\"content\":{\"body\":\"Here is the message content\"},\"event_id\":\"$0:domain\","
               "\"origin\":\"domain\",\"origin_server_ts\":1000000,\"type\":\"m.room.message\","
               "\"room_id\":\"!r:domain\",\"sender\":\"@u:domain\",\"signatures\":{},"
               "\"unsigned\":{\"age_ts\":1000000}}");
    h = json_deep_copy(ev);
    json_object_del(h, "unsigned");
    json_object_del(h, "signatures");
    c = mx_json_canonical(h, &len);
    mx_sha256(c, len, d);
    b = mx_b64_encode(d, 32, 0);
    assert_string_equal(b, "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g");
    json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", b));
    free(b);
    free(c);
    json_decref(h);
    json_object_set_new(ev, "content", json_object());   /* redaction */
    assert_int_equal(mx_json_sign(ev, "domain", &k), 0);
    assert_string_equal(sig_of(ev, "domain", "ed25519:1"),
                        "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA");
    json_decref(ev);
}

static void test_json_sign_verify_tamper(void **state)
{
    (void)state;
    mx_signing_key_t k, other;
    assert_int_equal(mx__signing_key_generate(&k), 0);
    assert_int_equal(mx__signing_key_generate(&other), 0);
    char *pk = mx_b64_encode(k.pk, 32, 0);
    char *opk = mx_b64_encode(other.pk, 32, 0);

    json_t *o = parse("{\"a\":[1,2,{\"b\":\"\xc3\xa9\"}],\"unsigned\":{\"age\":5},"
                      "\"signatures\":{\"elsewhere\":{\"ed25519:x\":\"abc\"},"
                      "\"me\":{\"ed25519:old\":\"def\"}}}");
    assert_int_equal(mx_json_sign(o, "me", &k), 0);
    /* Other signatures are kept, ours added next to them. */
    assert_string_equal(sig_of(o, "elsewhere", "ed25519:x"), "abc");
    assert_string_equal(sig_of(o, "me", "ed25519:old"), "def");
    assert_non_null(sig_of(o, "me", k.key_id));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "unsigned"), "age")), 5);
    assert_int_equal(mx_json_verify(o, "me", k.key_id, pk), 0);

    /* A second entity signs too; both verify. */
    assert_int_equal(mx_json_sign(o, "them", &other), 0);
    assert_int_equal(mx_json_verify(o, "me", k.key_id, pk), 0);
    assert_int_equal(mx_json_verify(o, "them", other.key_id, opk), 0);

    /* unsigned and signatures are not covered. */
    json_object_set_new(json_object_get(o, "unsigned"), "age", json_integer(6));
    json_object_set_new(o, "unsigned", json_pack("{s:i}", "x", 1));
    assert_int_equal(mx_json_verify(o, "me", k.key_id, pk), 0);
    json_object_del(o, "unsigned");
    assert_int_equal(mx_json_verify(o, "me", k.key_id, pk), 0);

    /* Wrong key, wrong key id, missing entity. */
    assert_true(mx_json_verify(o, "me", k.key_id, opk) < 0);
    assert_int_equal(mx_json_verify(o, "me", "ed25519:nope", pk), -ENOENT);
    assert_int_equal(mx_json_verify(o, "nobody", k.key_id, pk), -ENOENT);
    assert_int_equal(mx_json_verify(o, "elsewhere", "ed25519:x", pk), -EINVAL);

    /* Any change to the signed content is detected. */
    json_t *t = json_deep_copy(o);
    json_array_append_new(json_object_get(t, "a"), json_integer(3));
    assert_int_equal(mx_json_verify(t, "me", k.key_id, pk), -EBADMSG);
    json_decref(t);
    t = json_deep_copy(o);
    json_object_set_new(t, "new", json_null());
    assert_int_equal(mx_json_verify(t, "me", k.key_id, pk), -EBADMSG);
    json_decref(t);
    t = json_deep_copy(o);
    json_object_set_new(json_object_get(json_object_get(t, "signatures"), "me"), k.key_id,
                        json_string("K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/"
                                    "7Xg4ahLwYGYZzuHGZKM5ZAQ"));
    assert_int_equal(mx_json_verify(t, "me", k.key_id, pk), -EBADMSG);
    json_decref(t);
    t = json_deep_copy(o);
    json_object_set_new(json_object_get(json_object_get(t, "signatures"), "me"), k.key_id,
                        json_integer(1));
    assert_int_equal(mx_json_verify(t, "me", k.key_id, pk), -ENOENT);
    json_decref(t);

    /* Key order in the object does not matter. */
    t = parse("{\"z\":1,\"a\":2}");
    assert_int_equal(mx_json_sign(t, "me", &k), 0);
    json_t *r = parse("{\"a\":2,\"z\":1}");
    json_object_set(r, "signatures", json_object_get(t, "signatures"));
    assert_int_equal(mx_json_verify(r, "me", k.key_id, pk), 0);
    json_decref(r);
    json_decref(t);

    json_decref(o);
    free(pk);
    free(opk);
}

static void test_json_sign_refuses(void **state)
{
    (void)state;
    mx_signing_key_t k;
    spec_key(&k);

    json_t *arr = json_array();
    assert_int_equal(mx_json_sign(arr, "d", &k), -EINVAL);
    json_decref(arr);

    /* Floats can't be signed; the object is left as it was. */
    json_t *o = parse("{\"a\":1.5,\"unsigned\":{},\"signatures\":{\"x\":{}}}");
    char *before = json_dumps(o, JSON_SORT_KEYS);
    assert_int_equal(mx_json_sign(o, "d", &k), -EINVAL);
    char *after = json_dumps(o, JSON_SORT_KEYS);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(o);

    o = parse("{\"signatures\":[]}");
    assert_int_equal(mx_json_sign(o, "d", &k), -EINVAL);
    json_decref(o);
    o = parse("{\"signatures\":{\"d\":\"x\"}}");
    assert_int_equal(mx_json_sign(o, "d", &k), -EINVAL);
    json_decref(o);

    char *pk = mx_b64_encode(k.pk, 32, 0);
    json_t *s = json_string("x");
    assert_int_equal(mx_json_verify(s, "d", "ed25519:1", pk), -EINVAL);
    json_decref(s);
    free(pk);
}

/* ------------------------------------------------------ comparison, rng --- */

static void test_ct_compare(void **state)
{
    (void)state;
    assert_int_equal(mx_ct_equal("abcd", "abcd", 4), 1);
    assert_int_equal(mx_ct_equal("abcd", "abce", 4), 0);
    assert_int_equal(mx_ct_equal("xbcd", "abcd", 4), 0);
    assert_int_equal(mx_ct_equal("abcd", "abce", 3), 1);
    assert_int_equal(mx_ct_equal("", "", 0), 1);

    assert_int_equal(mx_ct_streq("secret", "secret"), 1);
    assert_int_equal(mx_ct_streq("", ""), 1);
    assert_int_equal(mx_ct_streq("secreT", "secret"), 0);
    assert_int_equal(mx_ct_streq("secre", "secret"), 0);
    assert_int_equal(mx_ct_streq("secrets", "secret"), 0);
    assert_int_equal(mx_ct_streq("", "secret"), 0);
    assert_int_equal(mx_ct_streq("secret", ""), 0);
    assert_int_equal(mx_ct_streq(NULL, "secret"), 0);
    assert_int_equal(mx_ct_streq("secret", NULL), 0);
    assert_int_equal(mx_ct_streq(NULL, NULL), 0);
}

static void test_random(void **state)
{
    (void)state;
    unsigned char a[32] = { 0 }, b[32] = { 0 }, zero[32] = { 0 };
    mx_random_bytes(a, sizeof(a));
    mx_random_bytes(b, sizeof(b));
    assert_memory_not_equal(a, b, 32);
    assert_memory_not_equal(a, zero, 32);
    mx_random_bytes(NULL, 0);

    char *s = mx_random_string(0);
    assert_string_equal(s, "");
    free(s);

    /* Every character of the alphabet shows up about equally often. */
    enum { N = 62 * 2000 };
    s = mx_random_string(N);
    assert_non_null(s);
    assert_int_equal(strlen(s), N);
    int counts[256] = { 0 };
    for (size_t i = 0; i < N; i++) {
        unsigned char c = (unsigned char)s[i];
        assert_true((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
        counts[c]++;
    }
    int seen = 0;
    for (int c = 0; c < 256; c++) {
        if (!counts[c])
            continue;
        seen++;
        /* mean 2000, sd ~44: 1700..2300 is about 7 sd */
        assert_in_range(counts[c], 1700, 2300);
    }
    assert_int_equal(seen, 62);
    char *t = mx_random_string(N);
    assert_string_not_equal(s, t);
    free(s);
    free(t);
}

/* -------------------------------------------------------- signing keys --- */

static int is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static void test_signing_key_generate(void **state)
{
    (void)state;
    mx_signing_key_t a, b;
    assert_int_equal(mx__signing_key_generate(&a), 0);
    assert_int_equal(mx__signing_key_generate(&b), 0);
    assert_int_equal(strlen(a.key_id), strlen("ed25519:a_XXXX"));
    assert_memory_equal(a.key_id, "ed25519:a_", 10);
    for (int i = 10; i < 14; i++)
        assert_true(is_alnum(a.key_id[i]));
    assert_memory_not_equal(a.pk, b.pk, 32);
    /* The public key is the one of the secret key. */
    unsigned char pk[32];
    crypto_sign_ed25519_sk_to_pk(pk, a.sk);
    assert_memory_equal(pk, a.pk, 32);
    char *sig = mx_ed25519_sign_b64(&a, "m", 1);
    char *pkb = mx_b64_encode(a.pk, 32, 0);
    assert_int_equal(mx_ed25519_verify_b64(pkb, sig, "m", 1), 0);
    free(sig);
    free(pkb);
}

static void test_signing_key_round_trip(void **state)
{
    (void)state;
    char path[128], err[256];
    mx_signing_key_t k, l;
    struct stat st;

    snprintf(path, sizeof(path), "%s/homeserver.signing.key", tmpdir);
    assert_int_equal(mx__signing_key_generate(&k), 0);
    assert_int_equal(mx__signing_key_save(path, &k), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Synapse's format: "ed25519 a_XXXX <43 chars of base64>\n". */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[200] = "";
    assert_non_null(fgets(line, sizeof(line), f));
    assert_null(fgets(line + 150, 50, f));
    fclose(f);
    assert_int_equal(strlen(line), 8 + 6 + 1 + 43 + 1);
    assert_memory_equal(line, "ed25519 ", 8);
    assert_memory_equal(line + 8, k.key_id + 8, 6);
    assert_int_equal(line[14], ' ');
    assert_int_equal(line[58], '\n');

    memset(&l, 0, sizeof(l));
    assert_int_equal(mx__signing_key_load(path, &l, err, sizeof(err)), 0);
    assert_string_equal(l.key_id, k.key_id);
    assert_memory_equal(l.pk, k.pk, 32);
    assert_memory_equal(l.sk, k.sk, 64);

    /* Saving again replaces the file atomically and leaves no temp file. */
    assert_int_equal(mx__signing_key_generate(&k), 0);
    assert_int_equal(mx__signing_key_save(path, &k), 0);
    assert_int_equal(mx__signing_key_load(path, &l, err, sizeof(err)), 0);
    assert_memory_equal(l.pk, k.pk, 32);
    assert_int_equal(count_files(tmpdir), 1);

    /* A directory that does not exist. */
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/key", tmpdir);
    assert_int_equal(mx__signing_key_save(bad, &k), -ENOENT);
    unlink(path);
}

static void test_signing_key_synapse_file(void **state)
{
    (void)state;
    char path[128], err[256];
    mx_signing_key_t k;
    snprintf(path, sizeof(path), "%s/synapse.key", tmpdir);

    /* A Synapse key with the spec seed signs the spec vector; later lines
     * (older keys) are ignored; padding and CRLF are tolerated. */
    static const char *files[] = {
        "ed25519 1 " SPEC_SEED "\n",
        "ed25519 1 " SPEC_SEED,
        "ed25519 1 " SPEC_SEED "=\n",
        "ed25519 1 " SPEC_SEED "\r\n",
        "  ed25519\t1  " SPEC_SEED "  \ned25519 0 AAAA\n",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        write_file(path, files[i], strlen(files[i]));
        memset(&k, 0, sizeof(k));
        assert_int_equal(mx__signing_key_load(path, &k, err, sizeof(err)), 0);
        assert_string_equal(k.key_id, "ed25519:1");
        char *sig = mx_ed25519_sign_b64(&k, "{}", 2);
        assert_string_equal(sig, "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ");
        free(sig);
    }
    /* Saving it writes the same key back, in canonical Base64 (the spec
     * seed's final character carries non-zero unused bits). */
    assert_int_equal(mx__signing_key_save(path, &k), 0);
    FILE *f = fopen(path, "r");
    char line[128];
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n");
    unlink(path);
}

static void test_signing_key_malformed(void **state)
{
    (void)state;
    char path[128], err[256];
    mx_signing_key_t k;
    snprintf(path, sizeof(path), "%s/bad.key", tmpdir);

    struct {
        const char *data;
        size_t len;
        const char *says;
    } bad[] = {
        { "", 0, "empty" },
        { "\n\n", 2, "empty" },
        { "ed25519\n", 8, "expected" },
        { "ed25519 a_abcd\n", 15, "expected" },
        { "ed25519 a_abcd " SPEC_SEED " extra\n", 0, "expected" },
        { "ed448 a_abcd " SPEC_SEED "\n", 0, "algorithm" },
        { "ED25519 a_abcd " SPEC_SEED "\n", 0, "algorithm" },
        { "ed25519 a/b " SPEC_SEED "\n", 0, "version" },
        { "ed25519 a_abcd !!!notbase64!!!\n", 0, "base64" },
        { "ed25519 a_abcd Zm9vYmFy\n", 0, "32 bytes" },
        { "ed25519 a_abcd " SPEC_SEED "AAAA\n", 0, "32 bytes" },
        { "ed25519 a_\0bcd " SPEC_SEED "\n", 15 + 43 + 1, "NUL" },
        { "ed25519 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa " SPEC_SEED "\n", 0,
          "too long" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = bad[i].len ? bad[i].len : strlen(bad[i].data);
        write_file(path, bad[i].data, n);
        err[0] = '\0';
        int rc = mx__signing_key_load(path, &k, err, sizeof(err));
        if (rc == 0)
            fail_msg("accepted bad key file #%zu", i);
        assert_int_equal(rc, -EINVAL);
        if (!strstr(err, bad[i].says))
            fail_msg("key file #%zu: error '%s' does not say '%s'", i, err, bad[i].says);
        assert_non_null(strstr(err, path));
    }

    /* Too large to be a key file. */
    char *big = malloc(10000);
    memset(big, 'a', 10000);
    write_file(path, big, 10000);
    free(big);
    assert_int_equal(mx__signing_key_load(path, &k, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "large"));

    /* Missing file: -errno and the system's reason. */
    unlink(path);
    assert_int_equal(mx__signing_key_load(path, &k, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, strerror(ENOENT)));
    /* A directory. */
    assert_true(mx__signing_key_load(tmpdir, &k, err, sizeof(err)) < 0);
    /* No error buffer is fine. */
    assert_int_equal(mx__signing_key_load(path, &k, NULL, 0), -ENOENT);
}

int main(void)
{
    if (mx__crypto_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_spec_examples),
        cmocka_unit_test(test_b64_alphabets),
        cmocka_unit_test(test_b64_bad_input),
        cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_hmac_sha1_rfc2202),
        cmocka_unit_test(test_hmac_sha256_rfc4231),
        cmocka_unit_test(test_ed25519_spec_vectors),
        cmocka_unit_test(test_json_sign_spec_vectors),
        cmocka_unit_test(test_event_signing_spec_vectors),
        cmocka_unit_test(test_json_sign_verify_tamper),
        cmocka_unit_test(test_json_sign_refuses),
        cmocka_unit_test(test_ct_compare),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_signing_key_generate),
        cmocka_unit_test(test_signing_key_round_trip),
        cmocka_unit_test(test_signing_key_synapse_file),
        cmocka_unit_test(test_signing_key_malformed),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
