/*
 * test_relations.c: unit tests of the relations part's pure helpers
 * (relations/rel_util.c): quoted SQL IN lists (quotes doubled, non-strings
 * skipped), printf into malloc'd strings, the ignored-users set of an
 * m.ignored_user_list item, and the search term's words and FTS5 query
 * (no FTS5 operator can get through).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "relations/relations.h"

static void test_in_list(void **state)
{
    (void)state;
    json_t *l = json_pack("[s, i, s, s]", "$abc", 5, "it's", "@u:x");
    char *s = rel_sql_in_list(l);
    assert_non_null(s);
    assert_string_equal(s, "'$abc','it''s','@u:x'");
    free(s);
    json_decref(l);

    l = json_array();
    assert_null(rel_sql_in_list(l));
    json_decref(l);
    assert_null(rel_sql_in_list(NULL));

    l = json_pack("[s]", "''");
    s = rel_sql_in_list(l);
    assert_string_equal(s, "''''''");
    free(s);
    json_decref(l);
}

static void test_fmt(void **state)
{
    (void)state;
    char *s = rel_fmt("a %s b %d", "x", 42);
    assert_string_equal(s, "a x b 42");
    free(s);
    s = rel_fmt("%s", "");
    assert_string_equal(s, "");
    free(s);
}

static void test_ignored(void **state)
{
    (void)state;
    json_t *set = rel_ignored_parse("{\"ignored_users\": {\"@a:x\": {}, \"@b:y\": {}}}");
    assert_int_equal(json_object_size(set), 2);
    assert_non_null(json_object_get(set, "@a:x"));
    assert_non_null(json_object_get(set, "@b:y"));
    json_decref(set);
    /* malformed or missing: an empty set, never NULL */
    static const char *const bad[] = { NULL, "", "not json", "[]", "{\"ignored_users\": []}",
                                       "{\"ignored_users\": \"@a:x\"}" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set = rel_ignored_parse(bad[i]);
        assert_non_null(set);
        assert_int_equal(json_object_size(set), 0);
        json_decref(set);
    }
}

static void test_tokens(void **state)
{
    (void)state;
    json_t *t = rel_search_tokens("  Hello, WORLD! foo-bar \"quoted\" NEAR(x) caf\xc3\xa9 ");
    assert_int_equal(json_array_size(t), 8);
    static const char *const want[] = { "hello", "world", "foo", "bar", "quoted", "near", "x",
                                        "caf\xc3\xa9" };
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(json_string_value(json_array_get(t, i)), want[i]);
    char *q = rel_fts5_query(t);
    assert_string_equal(q, "\"hello\" \"world\" \"foo\" \"bar\" \"quoted\" \"near\" \"x\""
                           " \"caf\xc3\xa9\"");
    free(q);
    json_decref(t);

    t = rel_search_tokens("*** ()\"");
    assert_int_equal(json_array_size(t), 0);
    q = rel_fts5_query(t);
    assert_string_equal(q, "");
    free(q);
    json_decref(t);

    /* at most 32 words */
    char big[400] = "";
    for (int i = 0; i < 50; i++)
        strcat(big, "w ");
    t = rel_search_tokens(big);
    assert_int_equal(json_array_size(t), 32);
    json_decref(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_list),
        cmocka_unit_test(test_fmt),
        cmocka_unit_test(test_ignored),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
