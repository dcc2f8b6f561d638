/*
 * test_accounts.c: unit tests of the accounts part's pure pieces: the
 * string map (acc_map.c) and the identifier helpers of hs_util.c.  The
 * endpoints are covered by tests/integration/test_hs_accounts.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "accounts/acc_int.h"
#include "core.h"

/* The core's context: unused by what is tested here. */
mx_ctx_t *mx__ctx;

/* What hs_util.c needs from the rest of the module. */
hs_ctx_t hs;
void hs_accounts_note_seen(const char *user_id, const char *device_id, const char *ip,
                           const char *user_agent)
{
    (void)user_id;
    (void)device_id;
    (void)ip;
    (void)user_agent;
}

static int freed;
static void count_free(void *p)
{
    freed++;
    free(p);
}

static bool drop_odd(const char *key, void *val, void *ud)
{
    (void)key;
    (void)ud;
    return *(int *)val % 2 == 1;
}

static void test_map(void **state)
{
    (void)state;
    acc_map_t m;
    freed = 0;
    assert_int_equal(acc_map_init(&m, count_free), 0);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int *v = malloc(sizeof(*v));
        *v = i;
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(acc_map_put(&m, key, v), 0);
    }
    assert_int_equal(m.n, 1000);
    assert_int_equal(*(int *)acc_map_get(&m, "k567"), 567);
    assert_null(acc_map_get(&m, "k1000"));
    int *v = malloc(sizeof(*v));
    *v = 42;
    assert_int_equal(acc_map_put(&m, "k5", v), 0);   /* replaces, frees the old */
    assert_int_equal(freed, 1);
    assert_int_equal(*(int *)acc_map_get(&m, "k5"), 42);
    assert_int_equal(acc_map_del(&m, "k6"), 1);
    assert_int_equal(acc_map_del(&m, "k6"), 0);
    assert_int_equal(m.n, 999);
    acc_map_filter(&m, drop_odd, NULL);
    assert_int_equal(m.n, 500); /* the 500 even values minus k6, plus k5 (now 42) */
    assert_null(acc_map_get(&m, "k7"));
    assert_non_null(acc_map_get(&m, "k8"));
    acc_map_fini(&m);
    assert_int_equal(freed, 1000 + 1);
}

static void test_localpart(void **state)
{
    (void)state;
    assert_true(hs_is_valid_localpart("alice"));
    assert_true(hs_is_valid_localpart("a.b_c=d-e/f+g9"));
    assert_false(hs_is_valid_localpart(""));
    assert_false(hs_is_valid_localpart("Alice"));
    assert_false(hs_is_valid_localpart("a b"));
    assert_false(hs_is_valid_localpart("a:b"));
    assert_false(hs_is_valid_localpart(NULL));
}

static void test_user_id(void **state)
{
    (void)state;
    assert_true(hs_is_valid_user_id("@alice:example.org"));
    assert_true(hs_is_valid_user_id("@Historic!:example.org:8448"));
    assert_true(hs_is_valid_user_id("@a:[::1]:8448"));
    assert_true(hs_is_valid_user_id("@a:1.2.3.4"));
    assert_false(hs_is_valid_user_id("alice:example.org"));
    assert_false(hs_is_valid_user_id("@:example.org"));
    assert_false(hs_is_valid_user_id("@alice"));
    assert_false(hs_is_valid_user_id("@alice:"));
    assert_false(hs_is_valid_user_id("@alice:exa mple.org"));
    assert_false(hs_is_valid_user_id("@alice:example.org:99999x"));
    assert_false(hs_is_valid_user_id("@al ice:example.org"));
    char big[300];
    memset(big, 'a', sizeof(big));
    big[0] = '@';
    memcpy(big + 280, ":example.org", 13);
    assert_false(hs_is_valid_user_id(big));
}

static void test_user_id_format(void **state)
{
    (void)state;
    mx_pool_t *p = mx_pool_new();
    hs.server_name = "example.org";
    assert_string_equal(hs_user_id(p, "bob"), "@bob:example.org");
    mx_pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_localpart),
        cmocka_unit_test(test_user_id),
        cmocka_unit_test(test_user_id_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
