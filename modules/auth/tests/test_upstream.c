/*
 * test_upstream.c: unit tests (cmocka) of au_upstream_jwt.c: id_tokens
 * signed RS256 and ES256 (with the module's own signing code and keys) are
 * verified against the JWKS; a changed payload, a foreign key, an unknown
 * kid, "none"/HS256 and malformed tokens are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../au_upstream.h"
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

mx_ctx_t *mx__ctx;   /* no core context: nothing here reaches it */

static au_conf_t conf;

static void keys_in(const char *dir)
{
    static char rsa[160], ec[160];
    snprintf(rsa, sizeof(rsa), "%s/rsa.pem", dir);
    snprintf(ec, sizeof(ec), "%s/ec.pem", dir);
    memset(&conf, 0, sizeof(conf));
    conf.rsa_key_path = rsa;
    conf.ec_key_path = ec;
    au.conf = &conf;
    char err[256] = "";
    assert_int_equal(au_keys_init(err, sizeof(err)), 0);
}

static void test_verify(void **state)
{
    (void)state;
    char d1[] = "/tmp/au-up-XXXXXX", d2[] = "/tmp/au-up-XXXXXX";
    assert_non_null(mkdtemp(d1));
    assert_non_null(mkdtemp(d2));
    /* Keys of another provider, for the "foreign key" case. */
    keys_in(d2);
    mx_pool_t *p = mx_pool_new();
    json_t *claims = json_pack("{s:s, s:s, s:i}", "sub", "s1", "nonce", "n1", "exp", 2000000000);
    char *foreign[2] = { au_jws_sign(p, "RS256", claims), au_jws_sign(p, "ES256", claims) };
    au_keys_fini();
    keys_in(d1);
    json_t *jwks = au_jwks();
    const char *algs[] = { "RS256", "ES256" };
    for (int i = 0; i < 2; i++) {
        const char *why = "unset";
        char *jws = au_jws_sign(p, algs[i], claims);
        assert_non_null(jws);
        json_t *c = au_up_jwt_verify(jws, jwks, &why);
        assert_non_null(c);
        assert_null(why);
        assert_string_equal(json_string_value(json_object_get(c, "sub")), "s1");
        json_decref(c);
        /* Another payload under the same signature. */
        json_t *other = json_pack("{s:s, s:s, s:i}", "sub", "s2", "nonce", "n1", "exp", 1);
        char *jws2 = au_jws_sign(p, algs[i], other);
        json_decref(other);
        char *mix = mx_psprintf(p, "%.*s%s", (int)(strchr(jws, '.') - jws), jws,
                                strchr(jws2, '.'));
        char *d = strrchr(mix, '.');
        memcpy(d, strrchr(jws, '.'), strlen(d));
        assert_null(au_up_jwt_verify(mix, jwks, &why));
        assert_string_equal(why, "id_token signature not valid");
        assert_null(au_up_jwt_verify(foreign[i], jwks, &why));
        /* No keys at all. */
        json_t *empty = json_pack("{s:[]}", "keys");
        assert_null(au_up_jwt_verify(jws, empty, &why));
        json_decref(empty);
    }
    const char *why = NULL;
    /* {"alg":"none"} and {"alg":"HS256"} headers. */
    assert_null(au_up_jwt_verify("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", jwks, &why));
    assert_null(au_up_jwt_verify("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", jwks, &why));
    assert_string_equal(why, "unsupported id_token algorithm");
    assert_null(au_up_jwt_verify("a.b", jwks, &why));
    assert_null(au_up_jwt_verify("a.b.c.d", jwks, &why));
    assert_null(au_up_jwt_verify(NULL, jwks, &why));
    assert_string_equal(why, "malformed id_token");
    json_decref(jwks);
    json_decref(claims);
    mx_pool_free(p);
    au_keys_fini();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
