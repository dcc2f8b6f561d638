/*
 * test_sync_streams.c: unit tests of the sync part's pure pieces: stream
 * positions (current never passes an unpersisted write), sync tokens,
 * /messages tokens, filter matching and the string map shared with the
 * room cache and the notifier.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "sync/sync.h"

mx_ctx_t *mx__ctx; /* the core context; unused by these tests */

/* streams.c and filters.c reference these; tests never reach them. */
hs_ctx_t hs;
void hs_reply_storage_error(mx_req_t *req, int status, const char *what)
{
    (void)req; (void)status; (void)what;
}
int hs_require_auth(mx_req_t *req, hs_authed_fn fn, void *ud)
{
    (void)req; (void)fn; (void)ud;
    return MX_DONE;
}
int rm_route(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags)
{
    (void)method; (void)suffix; (void)fn; (void)flags;
    return 0;
}
json_t *rm_body(mx_req_t *req)
{
    (void)req;
    return NULL;
}

static void test_stream_order(void **state)
{
    (void)state;
    hs_stream_init(HS_STREAM_RECEIPTS, 41);
    assert_int_equal(hs_stream_current(HS_STREAM_RECEIPTS), 41);
    int64_t a = hs_stream_next(HS_STREAM_RECEIPTS);
    int64_t b = hs_stream_next(HS_STREAM_RECEIPTS);
    int64_t c = hs_stream_next(HS_STREAM_RECEIPTS);
    assert_int_equal(a, 42);
    assert_int_equal(c, 44);
    /* b commits first: readers must still stop before a */
    hs_stream_persisted(HS_STREAM_RECEIPTS, b);
    assert_int_equal(hs_stream_current(HS_STREAM_RECEIPTS), 41);
    hs_stream_persisted(HS_STREAM_RECEIPTS, a);
    assert_int_equal(hs_stream_current(HS_STREAM_RECEIPTS), 43);
    hs_stream_persisted(HS_STREAM_RECEIPTS, c);
    assert_int_equal(hs_stream_current(HS_STREAM_RECEIPTS), 44);
    /* a lower init never moves a stream back */
    hs_stream_init(HS_STREAM_RECEIPTS, 3);
    assert_int_equal(hs_stream_next(HS_STREAM_RECEIPTS), 45);
    hs_stream_persisted(HS_STREAM_RECEIPTS, 45);
}

static void test_sync_tokens(void **state)
{
    (void)state;
    int64_t pos[HS_STREAM_COUNT] = { 12, 4, 0, 7, 1, 0, 3 };
    mx_pool_t *pool = mx_pool_new();
    char *t = hs_sync_token_make(pool, pos);
    assert_string_equal(t, "s12_4_0_7_1_0_3");
    int64_t back[HS_STREAM_COUNT];
    assert_int_equal(hs_sync_token_parse(t, back), 0);
    assert_memory_equal(pos, back, sizeof(pos));
    assert_int_equal(hs_sync_token_parse("s5", back), 0);
    assert_int_equal(back[0], 5);
    assert_int_equal(back[1], 0);
    assert_int_equal(hs_sync_token_parse("garbage", back), -EINVAL);
    assert_int_equal(hs_sync_token_parse("s1_x", back), -EINVAL);
    assert_int_equal(hs_sync_token_parse("s1_2_3_4_5_6_7_8", back), -EINVAL);
    int64_t p = 0;
    assert_int_equal(rm_parse_token("t99", &p), 0);
    assert_int_equal(p, 99);
    assert_int_equal(rm_parse_token("s7_1_2", &p), 0);
    assert_int_equal(p, 7);
    assert_int_equal(rm_parse_token("t9x", &p), -EINVAL);
    assert_string_equal(rm_make_token(pool, 5), "t5");
    mx_pool_free(pool);
}

static void test_filter_match(void **state)
{
    (void)state;
    json_t *f = json_loads("{\"types\":[\"m.room.*\"],\"not_types\":[\"m.room.member\"],"
                           "\"not_senders\":[\"@bad:x\"]}", 0, NULL);
    assert_true(hs_filter_match(f, "m.room.message", "@a:x"));
    assert_false(hs_filter_match(f, "m.room.member", "@a:x"));
    assert_false(hs_filter_match(f, "org.custom", "@a:x"));
    assert_false(hs_filter_match(f, "m.room.message", "@bad:x"));
    assert_true(hs_filter_match(NULL, "anything", NULL));
    json_decref(f);
}

static void test_map(void **state)
{
    (void)state;
    rm_map_t *m = rm_map_new();
    char key[32];
    static int vals[1000];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "!room%d:x", i);
        assert_int_equal(rm_map_put(m, key, &vals[i]), 0);
    }
    assert_int_equal(rm_map_count(m), 1000);
    for (int i = 0; i < 1000; i += 7) {
        snprintf(key, sizeof(key), "!room%d:x", i);
        assert_ptr_equal(rm_map_get(m, key), &vals[i]);
    }
    assert_ptr_equal(rm_map_del(m, "!room5:x"), &vals[5]);
    assert_null(rm_map_get(m, "!room5:x"));
    assert_null(rm_map_del(m, "!room5:x"));
    assert_int_equal(rm_map_count(m), 999);
    rm_map_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_order),
        cmocka_unit_test(test_sync_tokens),
        cmocka_unit_test(test_filter_match),
        cmocka_unit_test(test_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
