/*
 * test_auth.c: unit tests of the auth module's pure parts, linked with the
 * core directly: URL parsing and the MSC2966 client metadata rules, scope
 * parsing and normalisation, form decoding, ULIDs, the page templates and
 * their escaping, signing keys (JWKS shape, RS256/ES256 JWS verified with
 * mbedTLS), and the in-process token check served from the cache (with a
 * figure in ns per call printed for the benchmark notes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../auth.h"
#include "../../homeserver/hs.h"
#include "core.h"

#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The core's context: none here (no loop, no store); what the tested code
 * reaches copes with its absence. */
mx_ctx_t *mx__ctx;

static au_conf_t conf;

static int setup(void **state)
{
    (void)state;
    memset(&conf, 0, sizeof(conf));
    conf.access_token_ttl_ms = 300000;
    conf.token_cache_max = 1000;
    au.conf = &conf;
    au.issuer = "https://auth.example.org/";
    return 0;
}

static void test_url(void **state)
{
    (void)state;
    mx_pool_t *p = mx_pool_new();
    au_url_t u;
    assert_int_equal(au_url_parse(p, "HTTPS://User@Example.ORG:8443/a/b?x=1#f", &u), 0);
    assert_string_equal(u.scheme, "https");
    assert_string_equal(u.host, "example.org");
    assert_string_equal(u.userinfo, "User");
    assert_int_equal(u.port, 8443);
    assert_string_equal(u.path, "/a/b");
    assert_string_equal(u.query, "x=1");
    assert_true(u.has_fragment);
    assert_int_equal(au_url_parse(p, "http://[::1]:9/", &u), 0);
    assert_string_equal(u.host, "[::1]");
    assert_true(au_host_is_loopback(u.host));
    assert_int_equal(au_url_parse(p, "com.example.app:/cb", &u), 0);
    assert_false(u.has_authority);
    assert_string_equal(u.path, "/cb");
    assert_int_not_equal(au_url_parse(p, "no scheme", &u), 0);
    assert_int_not_equal(au_url_parse(p, "http://host:99999/", &u), 0);
    assert_int_not_equal(au_url_parse(p, "http://a b/", &u), 0);
    assert_int_not_equal(au_url_parse(p, "http://h\\@evil/", &u), 0);
    assert_true(au_host_within("a.example.org", "example.org"));
    assert_false(au_host_within("badexample.org", "example.org"));
    mx_pool_free(p);
}

static const char *check(mx_pool_t *p, const char *js)
{
    json_t *md = json_loads(js, 0, NULL);
    const char *desc;
    const char *err = au_client_metadata_check(p, md, &desc);
    json_decref(md);
    return err ? err : "ok";
}

static void test_metadata(void **state)
{
    (void)state;
    mx_pool_t *p = mx_pool_new();
    assert_string_equal(check(p, "{\"client_uri\":\"https://app.example.org/\","
                                 "\"redirect_uris\":[\"https://app.example.org/cb\","
                                 "\"https://m.app.example.org/cb?x=1\"]}"), "ok");
    assert_string_equal(check(p, "{\"client_uri\":\"http://127.0.0.1:3000/\","
                                 "\"redirect_uris\":[\"http://127.0.0.1:3000/cb\"],"
                                 "\"token_endpoint_auth_method\":\"none\"}"), "ok");
    assert_string_equal(check(p, "{\"application_type\":\"native\","
                                 "\"client_uri\":\"https://app.example.org/\","
                                 "\"redirect_uris\":[\"org.example.app:/cb\",\"org.example:/x\","
                                 "\"http://localhost/cb\"]}"), "ok");
    assert_string_equal(check(p, "{\"redirect_uris\":[\"https://a.org/\"]}"),
                        "invalid_client_metadata");
    assert_string_equal(check(p, "{\"client_uri\":\"https://app.example.org/\","
                                 "\"redirect_uris\":[\"https://example.org/cb\"]}"),
                        "invalid_redirect_uri");   /* parent domain, not within */
    assert_string_equal(check(p, "{\"application_type\":\"native\","
                                 "\"client_uri\":\"https://app.example.org/\","
                                 "\"redirect_uris\":[\"org.example.evil:/cb\"]}"),
                        "invalid_redirect_uri");
    assert_string_equal(check(p, "{\"application_type\":\"native\","
                                 "\"client_uri\":\"https://app.example.org/\","
                                 "\"redirect_uris\":[\"app:/cb\"]}"),
                        "invalid_redirect_uri");   /* not reverse-DNS */
    assert_string_equal(check(p, "{\"client_uri\":\"https://app.example.org/\","
                                 "\"redirect_uris\":[\"https://x@app.example.org/cb\"]}"),
                        "invalid_redirect_uri");
    assert_string_equal(check(p, "{\"client_uri\":\"https://app.example.org/\","
                                 "\"redirect_uris\":[\"https://app.example.org/\"],"
                                 "\"policy_uri#fr\":\"https://evil.org/\"}"),
                        "invalid_client_metadata");
    mx_pool_free(p);
}

static void test_scope(void **state)
{
    (void)state;
    mx_pool_t *p = mx_pool_new();
    au_scope_t sc;
    const char *bad;
    assert_int_equal(au_scope_parse(p, "openid  urn:matrix:org.matrix.msc2967.client:api:* "
                                       "urn:matrix:client:device:ABCDEFGHIJ openid", &sc, &bad),
                     0);
    assert_true(sc.api && sc.openid);
    assert_string_equal(sc.device_id, "ABCDEFGHIJ");
    assert_int_equal(json_array_size(sc.list), 3);
    json_decref(sc.list);
    assert_int_not_equal(au_scope_parse(p, "urn:matrix:client:device:A urn:matrix:client:device:B",
                                        &sc, &bad), 0);
    json_decref(sc.list);
    assert_int_not_equal(au_scope_parse(p, "profile", &sc, &bad), 0);
    assert_string_equal(bad, "profile");
    json_decref(sc.list);
    assert_int_not_equal(au_scope_parse(p, "urn:matrix:client:device:a/b", &sc, &bad), 0);
    json_decref(sc.list);
    char *n = au_scope_normalise(p, "urn:matrix:client:api:* urn:matrix:client:device:DEV1");
    assert_true(au_scope_has(n, AU_SCOPE_API_UNSTABLE));
    assert_true(au_scope_has(n, "urn:matrix:org.matrix.msc2967.client:device:DEV1"));
    assert_string_equal(au_scope_device(p, n), "DEV1");
    mx_pool_free(p);
}

static void test_form_and_ids(void **state)
{
    (void)state;
    const char *body = "a=1&b=x+y%21&a=2&empty=&flag";
    json_t *f = au_form_parse(body, strlen(body));
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "a")), "1");
    assert_string_equal(json_string_value(json_object_get(f, "b")), "x y!");
    assert_string_equal(json_string_value(json_object_get(f, "empty")), "");
    assert_string_equal(json_string_value(json_object_get(f, "flag")), "");
    json_decref(f);
    assert_null(au_form_parse("a=%zz", 5));
    assert_null(au_form_parse("a=%00", 5));
    assert_null(au_form_parse("a=%ff", 5));   /* not UTF-8 */
    mx_pool_t *p = mx_pool_new();
    char *u1 = au_ulid(p), *u2 = au_ulid(p);
    assert_int_equal(strlen(u1), 26);
    assert_true(strspn(u1, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") == 26);
    assert_string_not_equal(u1, u2);
    assert_true(u1[0] <= '7');   /* 128 bits: the first digit holds 3 */
    char *t = au_token_new(p, "mat", 32);
    assert_int_equal(strlen(t), 36);
    assert_memory_equal(t, "mat_", 4);
    assert_string_equal(au_urlencode(p, "a b&c/é"), "a%20b%26c%2F%C3%A9");
    mx_pool_free(p);
}

static void test_templates(void **state)
{
    (void)state;
    json_t *strings = json_pack("{s:s}", "hello", "Hello <you>");
    json_t *vars = json_pack("{s:s, s:s, s:[{s:s},{s:s}], s:b, s:s}", "name", "<script>&\"'",
                             "raw", "<b>x</b>", "items", "text", "one", "text", "t<wo>", "flag", 0,
                             "empty", "");
    char *out = au_template_render("{{t:hello}}|{{name}}|{{{raw}}}|{{#items}}[{{text}}]{{/items}}"
                                   "|{{#flag}}F{{/flag}}{{^flag}}nf{{/flag}}|{{#empty}}E{{/empty}}"
                                   "|{{missing}}|{{t:nokey}}",
                                   vars, strings);
    assert_string_equal(out, "Hello &lt;you&gt;|&lt;script&gt;&amp;&quot;&#39;|<b>x</b>|[one]"
                             "[t&lt;wo&gt;]|nf|||nokey");
    assert_null(strstr(out, "<script>"));
    free(out);
    /* Nested sections of the same name and unbalanced input. */
    out = au_template_render("{{#a}}<{{#a}}in{{/a}}>{{/a}}", json_pack("{s:b}", "a", 1), NULL);
    assert_string_equal(out, "<in>");
    free(out);
    out = au_template_render("x{{#a}}never closed", vars, NULL);
    assert_string_equal(out, "x");
    free(out);
    json_decref(vars);
    json_decref(strings);
}

static void test_keys_and_jws(void **state)
{
    (void)state;
    char dir[] = "/tmp/au-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char rsa[128], ec[128];
    snprintf(rsa, sizeof(rsa), "%s/rsa.pem", dir);
    snprintf(ec, sizeof(ec), "%s/ec.pem", dir);
    conf.rsa_key_path = rsa;
    conf.ec_key_path = ec;
    char err[256] = "";
    assert_int_equal(au_keys_init(err, sizeof(err)), 0);
    json_t *jwks = au_jwks();
    assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 2);
    json_t *k0 = json_array_get(json_object_get(jwks, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(k0, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(k0, "e")), "AQAB");
    json_decref(jwks);
    mx_pool_t *p = mx_pool_new();
    json_t *claims = json_pack("{s:s, s:i}", "sub", "@a:b", "iat", 1);
    const char *algs[] = { "RS256", "ES256" };
    const char *paths[] = { rsa, ec };
    for (int i = 0; i < 2; i++) {
        char *jws = au_jws_sign(p, algs[i], claims);
        assert_non_null(jws);
        char *dot = strrchr(jws, '.');
        assert_non_null(dot);
        unsigned char digest[32];
        mx_sha256(jws, (size_t)(dot - jws), digest);
        /* base64url → base64 for the decoder */
        char *sig64 = strdup(dot + 1);
        for (char *c = sig64; *c; c++)
            *c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
        unsigned char *sig = NULL;
        size_t siglen = 0;
        assert_int_equal(mx_b64_decode(sig64, strlen(sig64), &sig, &siglen), 0);
        mbedtls_pk_context pk;
        mbedtls_pk_init(&pk);
        assert_int_equal(mbedtls_pk_parse_keyfile(&pk, paths[i], NULL), 0);
        if (i == 0) {
            assert_int_equal(mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, digest, 32, sig, siglen), 0);
        } else {
            /* r||s → check with the raw ECDSA API */
            assert_int_equal(siglen, 64);
            mbedtls_mpi r, s;
            mbedtls_mpi_init(&r);
            mbedtls_mpi_init(&s);
            mbedtls_mpi_read_binary(&r, sig, 32);
            mbedtls_mpi_read_binary(&s, sig + 32, 32);
            mbedtls_ecp_keypair *kp = mbedtls_pk_ec(pk);
            assert_int_equal(mbedtls_ecdsa_verify(&kp->grp, digest, 32, &kp->Q, &r, &s), 0);
            mbedtls_mpi_free(&r);
            mbedtls_mpi_free(&s);
        }
        mbedtls_pk_free(&pk);
        free(sig);
        free(sig64);
    }
    assert_null(au_jws_sign(p, "HS256", claims));
    json_decref(claims);
    mx_pool_free(p);
    au_keys_fini();
    unlink(rsa);
    unlink(ec);
    rmdir(dir);
    conf.rsa_key_path = conf.ec_key_path = NULL;
}

static int seen_status;
static char seen_device[256];
static void on_valid(int status, const hs_token_info_t *info, void *ud)
{
    (void)ud;
    seen_status = status;
    if (info)
        snprintf(seen_device, sizeof(seen_device), "%s", info->device_id);
}

static void test_validate_cached(void **state)
{
    (void)state;
    assert_int_equal(au_cache_init(), 0);
    const char *token = "mat_0123456789abcdefghijklmnopqrstuv";
    unsigned char key[32];
    mx_sha256(token, strlen(token), key);
    au_tokinfo_t t = {
        .active = true, .session_id = "01SESSION", .user_id = "@alice:example.org",
        .device_id = "ADEVICE", .scope = AU_SCOPE_API " " AU_SCOPE_DEVICE "ADEVICE",
        .expires_ts = (int64_t)mx_now_ms() + 600000,
    };
    au_cache_put(key, &t);
    assert_int_equal(au_validate_token(token, on_valid, NULL), 0);
    assert_int_equal(seen_status, 0);
    assert_string_equal(seen_device, "ADEVICE");
    /* ns per call of the homeserver's per-request check (cache hit). */
    enum { N = 1000000 };
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < N; i++)
        au_validate_token(token, on_valid, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / N;
    printf("# in-process OAuth token validation (cache hit): %.0f ns/call\n", ns);
    au_cache_evict_session("01SESSION");
    assert_null(au_cache_get(key));
    au_cache_fini();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_url, setup),
        cmocka_unit_test_setup(test_metadata, setup),
        cmocka_unit_test_setup(test_scope, setup),
        cmocka_unit_test_setup(test_form_and_ids, setup),
        cmocka_unit_test_setup(test_templates, setup),
        cmocka_unit_test_setup(test_keys_and_jws, setup),
        cmocka_unit_test_setup(test_validate_cached, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
