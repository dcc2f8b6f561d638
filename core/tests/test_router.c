/*
 * test_router.c: the route trie: literal before {param}, empty trailing
 * parameters, {rest*}, 404 vs 405 (with the Allow methods), resources,
 * MX_DECLINED's skip, percent-decoding of captured values, bad patterns and
 * a table of a thousand routes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

mx_ctx_t *mx__ctx;
static mx_ctx_t ctx;

static int h_a(mx_req_t *r, void *ud) { return MX_DONE; }
static int h_b(mx_req_t *r, void *ud) { return MX_DONE; }
static int h_c(mx_req_t *r, void *ud) { return MX_DONE; }

static int setup(void **state)
{
    memset(&ctx, 0, sizeof(ctx));
    mx__ctx = &ctx;
    return mx__router_init();
}

static int teardown(void **state)
{
    mx__router_fini();
    assert_null(ctx.http);
    mx__ctx = NULL;
    return 0;
}

static int match(const char *res, const char *method, const char *path, int skip,
                 mx_pool_t *p, mx_route_match_t *m)
{
    return mx__router_match(res, method, path, skip, p, m);
}

static void test_literal_before_param(void **state)
{
    mx_pool_t *p = mx_pool_new();
    mx_route_match_t m;
    assert_int_equal(mx_route_add("client", "GET", "/_matrix/client/v3/rooms/{roomId}/state",
                                  h_a, "param", 0), 0);
    assert_int_equal(mx_route_add("client", "GET", "/_matrix/client/v3/rooms/public/state",
                                  h_b, "lit", 0), 0);
    assert_int_equal(match("client", "GET", "/_matrix/client/v3/rooms/public/state", 0, p, &m), 0);
    assert_ptr_equal(m.fn, h_b);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(match("client", "GET", "/_matrix/client/v3/rooms/!abc:x/state", 0, p, &m), 0);
    assert_ptr_equal(m.fn, h_a);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(m.param_names[0], "roomId");
    assert_string_equal(m.param_values[0], "!abc:x");
    assert_string_equal(m.pattern, "/_matrix/client/v3/rooms/{roomId}/state");

    /* Backtracking: the literal branch ends nowhere, the param branch does. */
    assert_int_equal(mx_route_add("client", "GET", "/x/{a}/tail", h_c, NULL, 0), 0);
    assert_int_equal(mx_route_add("client", "GET", "/x/lit/other", h_b, NULL, 0), 0);
    assert_int_equal(match("client", "GET", "/x/lit/tail", 0, p, &m), 0);
    assert_ptr_equal(m.fn, h_c);
    assert_string_equal(m.param_values[0], "lit");
    mx_pool_free(p);
}

static void test_empty_trailing_param(void **state)
{
    mx_pool_t *p = mx_pool_new();
    mx_route_match_t m;
    const char *pat = "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}";
    assert_int_equal(mx_route_add("client", "PUT", pat, h_a, NULL, 0), 0);
    assert_int_equal(match("client", "PUT", "/_matrix/client/v3/rooms/!r:x/state/m.room.name/", 0,
                           p, &m), 0);
    assert_int_equal(m.nparams, 3);
    assert_string_equal(m.param_values[1], "m.room.name");
    assert_string_equal(m.param_values[2], "");
    assert_int_equal(match("client", "PUT", "/_matrix/client/v3/rooms/!r:x/state/m.room.name", 0,
                           p, &m), 0);
    assert_ptr_equal(m.fn, h_a);
    assert_int_equal(m.nparams, 3);
    assert_string_equal(m.param_names[2], "stateKey");
    assert_string_equal(m.param_values[2], "");
    assert_int_equal(match("client", "PUT", "/_matrix/client/v3/rooms/!r:x/state/m.room.member/%40u%3Ax",
                           0, p, &m), 0);
    assert_string_equal(m.param_values[2], "@u:x");
    /* A route that ends at the shorter path wins over the empty param. */
    assert_int_equal(mx_route_add("client", "PUT", "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
                                  h_b, NULL, 0), 0);
    assert_int_equal(match("client", "PUT", "/_matrix/client/v3/rooms/!r:x/state/m.room.name", 0,
                           p, &m), 0);
    assert_ptr_equal(m.fn, h_b);
    mx_pool_free(p);
}

static void test_rest(void **state)
{
    mx_pool_t *p = mx_pool_new();
    mx_route_match_t m;
    assert_int_equal(mx_route_add("web", "GET", "/{path*}", h_a, NULL, 0), 0);
    assert_int_equal(mx_route_add("web", "GET", "/static/{file*}", h_b, NULL, 0), 0);
    assert_int_equal(match("web", "GET", "/", 0, p, &m), 0);
    assert_ptr_equal(m.fn, h_a);
    assert_string_equal(m.param_values[0], "");
    assert_int_equal(match("web", "GET", "/index.html", 0, p, &m), 0);
    assert_string_equal(m.param_values[0], "index.html");
    assert_int_equal(match("web", "GET", "/a/b/c%20d.js", 0, p, &m), 0);
    assert_ptr_equal(m.fn, h_a);
    assert_string_equal(m.param_names[0], "path");
    assert_string_equal(m.param_values[0], "a/b/c d.js");
    assert_int_equal(match("web", "GET", "/static/x/y.css", 0, p, &m), 0);
    assert_ptr_equal(m.fn, h_b);
    assert_string_equal(m.param_values[0], "x/y.css");
    assert_int_equal(match("web", "HEAD", "/static/x", 0, p, &m), 0);  /* HEAD uses GET */
    assert_ptr_equal(m.fn, h_b);
    mx_pool_free(p);
}

static void test_404_405(void **state)
{
    mx_pool_t *p = mx_pool_new();
    mx_route_match_t m;
    unsigned allow = 0;
    assert_int_equal(mx_route_add("client", "GET", "/_matrix/client/versions", h_a, NULL, 0), 0);
    assert_int_equal(mx_route_add("client", "PUT", "/_matrix/client/versions", h_a, NULL, 0), 0);
    assert_int_equal(match("client", "GET", "/_matrix/client/nope", 0, p, &m), -ENOENT);
    assert_false(m.path_known);
    assert_int_equal(match("client", "GET", "/_matrix/client/versions/", 0, p, &m), -ENOENT);
    assert_int_equal(match("client", "POST", "/_matrix/client/versions", 0, p, &m), -EPERM);
    assert_true(m.path_known);
    uint32_t bit = mx__router_resource_bit("client");
    assert_int_equal(mx__router_match_mask(bit, "DELETE", "/_matrix/client/versions", 0, p, &m,
                                           &allow), -EPERM);
    assert_int_equal(allow, MX__M_GET | MX__M_HEAD | MX__M_PUT);
    /* Another resource does not see client's routes. */
    assert_int_equal(match("federation", "GET", "/_matrix/client/versions", 0, p, &m), -ENOENT);
    assert_int_equal(mx__router_match_mask(0, "GET", "/_matrix/client/versions", 0, p, &m, NULL),
                     -ENOENT);
    assert_int_equal(match("client", "GET", "", 0, p, &m), -ENOENT);
    assert_int_equal(match("client", "GET", "nope", 0, p, &m), -ENOENT);
    mx_pool_free(p);
}

static void test_resources_and_skip(void **state)
{
    mx_pool_t *p = mx_pool_new();
    mx_route_match_t m;
    assert_int_equal(mx_route_add("client", "GET", "/p/{x}", h_a, NULL, 0), 0);
    assert_int_equal(mx_route_add("admin", "GET", "/p/lit", h_b, NULL, 0), 0);
    assert_int_equal(mx_route_add("client", "GET", "/p/{y}", h_c, NULL, MX_ROUTE_JSON_BODY), 0);
    /* client does not see admin's literal route */
    assert_int_equal(match("client", "GET", "/p/lit", 0, p, &m), 0);
    assert_ptr_equal(m.fn, h_a);
    assert_int_equal(match("client", "GET", "/p/lit", 1, p, &m), 0);
    assert_ptr_equal(m.fn, h_c);
    assert_string_equal(m.param_names[0], "y");
    assert_int_equal(m.flags, MX_ROUTE_JSON_BODY);
    assert_int_equal(match("client", "GET", "/p/lit", 2, p, &m), -EPERM);
    uint32_t both = mx__router_resource_bit("client") | mx__router_resource_bit("admin");
    assert_int_equal(mx__router_match_mask(both, "GET", "/p/lit", 0, p, &m, NULL), 0);
    assert_ptr_equal(m.fn, h_b);
    assert_int_equal(mx__router_match_mask(both, "GET", "/p/lit", 1, p, &m, NULL), 0);
    assert_ptr_equal(m.fn, h_a);
    mx_pool_free(p);
}

static void test_bad_patterns(void **state)
{
    assert_int_equal(mx_route_add("client", "GET", "nope", h_a, NULL, 0), -EINVAL);
    assert_int_equal(mx_route_add("client", "GET", "/a/{rest*}/b", h_a, NULL, 0), -EINVAL);
    assert_int_equal(mx_route_add("client", "GET", "/a/{}", h_a, NULL, 0), -EINVAL);
    assert_int_equal(mx_route_add("client", "GET", "/a/x{y}", h_a, NULL, 0), -EINVAL);
    assert_int_equal(mx_route_add("client", "GET", "/a", NULL, NULL, 0), -EINVAL);
    assert_int_equal(mx_route_add(NULL, "GET", "/a", h_a, NULL, 0), -EINVAL);
}

static void test_many_routes(void **state)
{
    mx_pool_t *p = mx_pool_new();
    mx_route_match_t m;
    char pat[128], path[128];
    for (int i = 0; i < 1000; i++) {
        snprintf(pat, sizeof(pat), "/_matrix/client/v3/thing%d/{id}/sub%d", i, i % 7);
        assert_int_equal(mx_route_add("client", i % 2 ? "POST" : "GET", pat, h_a,
                                      (void *)(intptr_t)i, 0), 0);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(path, sizeof(path), "/_matrix/client/v3/thing%d/id%d/sub%d", i, i, i % 7);
        assert_int_equal(match("client", i % 2 ? "POST" : "GET", path, 0, p, &m), 0);
        assert_int_equal((intptr_t)m.ud, i);
        char want[32];
        snprintf(want, sizeof(want), "id%d", i);
        assert_string_equal(m.param_values[0], want);
        assert_int_equal(match("client", i % 2 ? "GET" : "POST", path, 0, p, &m), -EPERM);
        mx_pool_reset(p);
    }
    mx_pool_free(p);
}

static void test_url_decode(void **state)
{
    char out[32];
    assert_int_equal(mx__url_decode("a%20b+c", 7, out, 0), 5);
    assert_string_equal(out, "a b+c");
    assert_int_equal(mx__url_decode("a%20b+c", 7, out, 1), 5);
    assert_string_equal(out, "a b c");
    assert_int_equal(mx__url_decode("%zz", 3, out, 0), -1);
    assert_int_equal(mx__url_decode("%4", 2, out, 0), -1);
    assert_int_equal(mx__url_decode("%", 1, out, 0), -1);
    assert_int_equal(mx__url_decode("%41%42", 6, out, 0), 2);
    assert_string_equal(out, "AB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_literal_before_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_trailing_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_405, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resources_and_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_decode, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
