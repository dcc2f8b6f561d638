/*
 * test_auth_flows.c: unit tests (cmocka) of the auth-flows pieces that need
 * no loop: token buckets, the pages a login may return to, e-mail and
 * password policy checks, JWS verification and signing-key rotation
 * (several keys per algorithm from auth.signing_keys).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../auth.h"
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mx_ctx_t *mx__ctx;

static au_conf_t conf;

static int setup(void **state)
{
    (void)state;
    memset(&conf, 0, sizeof(conf));
    au.conf = &conf;
    au.issuer = "https://auth.example.org/";
    return 0;
}

static void test_ratelimit(void **state)
{
    (void)state;
    au_rl_t *rl = au_rl_new(3, 100);     /* 3 at once, one back every 10 ms */
    assert_int_equal(au_rl_take(rl, "1.2.3.4"), 0);
    assert_int_equal(au_rl_take(rl, "1.2.3.4"), 0);
    assert_int_equal(au_rl_peek(rl, "1.2.3.4"), 0);
    assert_int_equal(au_rl_take(rl, "1.2.3.4"), 0);
    uint64_t w = au_rl_take(rl, "1.2.3.4");
    assert_true(w > 0 && w <= 11);
    assert_true(au_rl_peek(rl, "1.2.3.4") > 0);
    assert_int_equal(au_rl_take(rl, "5.6.7.8"), 0);   /* other keys are untouched */
    assert_int_equal(au_rl_peek(rl, "never"), 0);
    usleep(25 * 1000);
    assert_int_equal(au_rl_take(rl, "1.2.3.4"), 0);
    au_rl_free(rl);
    rl = au_rl_new(1, 0);                 /* no refill: waits "forever" */
    assert_int_equal(au_rl_take(rl, "k"), 0);
    assert_int_equal(au_rl_take(rl, "k"), UINT64_MAX);
    au_rl_free(rl);
}

static void test_next_and_email(void **state)
{
    (void)state;
    assert_non_null(au_next_ok("link"));
    assert_non_null(au_next_ok("link?code=BCDF-GHJK"));
    assert_non_null(au_next_ok("account/?action=org.matrix.device_view&device_id=X"));
    assert_null(au_next_ok("linkage"));
    assert_null(au_next_ok("//evil.example/"));
    assert_null(au_next_ok("https://evil.example/"));
    assert_null(au_next_ok("account/../admin"));
    assert_null(au_next_ok("consent?grant=x"));
    assert_null(au_next_ok(""));
    assert_null(au_next_ok(NULL));
    assert_true(au_email_valid("a@example.org"));
    assert_false(au_email_valid("a@b"));
    assert_false(au_email_valid("@example.org"));
    assert_false(au_email_valid("a@@example.org"));
    assert_false(au_email_valid("a b@example.org"));
    assert_false(au_email_valid("<a@example.org>"));
}

static void test_policy(void **state)
{
    (void)state;
    au_flows_t fl = { .pw_min_length = 10, .pw_min_classes = 3 };
    au.fl = &fl;
    assert_string_equal(au_password_policy("Ab1!"), "err_password_short");
    assert_string_equal(au_password_policy("abcdefghijkl"), "err_password_weak");
    assert_null(au_password_policy("abcdefghij1K"));         /* three classes */
    assert_null(au_password_policy("abcdefghi1K!"));
    assert_null(au_password_policy("ABCDEFGH12!x"));
    fl.pw_min_classes = 0;
    assert_null(au_password_policy("abcdefghij"));
    au.fl = NULL;
    assert_null(au_password_policy("12345678"));
    assert_string_equal(au_password_policy("1234567"), "err_password_short");
}

static void test_rotation_and_verify(void **state)
{
    (void)state;
    char dir[] = "/tmp/au-flows-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[128], b[128], ec[128];
    snprintf(a, sizeof(a), "%s/a.pem", dir);
    snprintf(b, sizeof(b), "%s/b.pem", dir);
    snprintf(ec, sizeof(ec), "%s/ec.pem", dir);
    char err[256] = "";
    /* Make the files the default way (created when missing). */
    conf.rsa_key_path = a;
    conf.ec_key_path = ec;
    assert_int_equal(au_keys_init(err, sizeof(err)), 0);
    au_keys_fini();
    conf.rsa_key_path = b;
    assert_int_equal(au_keys_init(err, sizeof(err)), 0);
    au_keys_fini();
    /* A listed file must exist. */
    conf.signing_keys = json_pack("[s, s]", a, "/nonexistent/key.pem");
    assert_int_not_equal(au_keys_init(err, sizeof(err)), 0);
    au_keys_fini();
    json_decref(conf.signing_keys);
    /* EC only: refused (RS256 is mandatory). */
    conf.signing_keys = json_pack("[s]", ec);
    assert_int_not_equal(au_keys_init(err, sizeof(err)), 0);
    assert_non_null(strstr(err, "RSA"));
    au_keys_fini();
    json_decref(conf.signing_keys);
    /* Two RSA keys and an EC one: the first RSA key signs, all are published. */
    conf.signing_keys = json_pack("[s, {s:s, s:s}, s]", b, "path", a, "kid", "old", ec);
    assert_int_equal(au_keys_init(err, sizeof(err)), 0);
    json_t *jwks = au_jwks();
    json_t *keys = json_object_get(jwks, "keys");
    assert_int_equal(json_array_size(keys), 3);
    const char *kid_b = json_string_value(json_object_get(json_array_get(keys, 0), "kid"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 1), "kid")), "old");
    assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 2), "alg")),
                        "ES256");
    mx_pool_t *p = mx_pool_new();
    json_t *claims = json_pack("{s:s, s:s}", "iss", au.issuer, "sub", "@a:b");
    char *jws = au_jws_sign(p, "RS256", claims);
    assert_non_null(jws);
    assert_non_null(strstr(mx_psprintf(p, "%s", jws), "."));
    json_t *back = au_jws_verify(jws);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "sub")), "@a:b");
    json_decref(back);
    char *es = au_jws_sign(p, "ES256", claims);
    back = au_jws_verify(es);
    assert_non_null(back);
    json_decref(back);
    /* Tampered payload or signature: refused. */
    char *t = mx_pstrdup(p, jws);
    char *d1 = strchr(t, '.');
    d1[2] = d1[2] == 'A' ? 'B' : 'A';
    assert_null(au_jws_verify(t));
    t = mx_pstrdup(p, es);
    t[strlen(t) - 3] = t[strlen(t) - 3] == 'A' ? 'B' : 'A';
    assert_null(au_jws_verify(t));
    assert_null(au_jws_verify("a.b"));
    assert_null(au_jws_verify("not a jws"));
    /* The header names the first RSA key. */
    size_t hl = (size_t)(strchr(jws, '.') - jws);
    unsigned char *hdr = NULL;
    size_t hlen = 0;
    assert_int_equal(mx_b64_decode(jws, hl, &hdr, &hlen), 0);
    json_t *h = json_loadb((const char *)hdr, hlen, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(h, "kid")), kid_b);
    json_decref(h);
    free(hdr);
    au_keys_fini();
    json_decref(conf.signing_keys);
    /* Rotated: the other key first now signs, the previous token still verifies. */
    conf.signing_keys = json_pack("[{s:s, s:s}, s]", "path", a, "kid", "old", b);
    assert_int_equal(au_keys_init(err, sizeof(err)), 0);
    back = au_jws_verify(jws);
    assert_non_null(back);
    json_decref(back);
    au_keys_fini();
    json_decref(conf.signing_keys);
    /* Retired: dropped from the list, its tokens no longer verify. */
    conf.signing_keys = json_pack("[{s:s, s:s}]", "path", a, "kid", "old");
    assert_int_equal(au_keys_init(err, sizeof(err)), 0);
    assert_null(au_jws_verify(jws));
    au_keys_fini();
    json_decref(conf.signing_keys);
    conf.signing_keys = NULL;
    json_decref(jwks);
    json_decref(claims);
    mx_pool_free(p);
    unlink(a);
    unlink(b);
    unlink(ec);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_ratelimit, setup),
        cmocka_unit_test_setup(test_next_and_email, setup),
        cmocka_unit_test_setup(test_policy, setup),
        cmocka_unit_test_setup(test_rotation_and_verify, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
