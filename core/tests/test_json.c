/*
 * test_json.c: unit tests for core/json.c, the strict request-body parser
 * (which failure gets M_NOT_JSON and which M_BAD_JSON, checked against what
 * jansson 2.14 really does) and the Matrix canonical JSON serializer (the
 * spec's examples, the integer range, floats, escaping, key order).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

/* ------------------------------------------------------------ helpers --- */

/* Parses n bytes; returns the error code (NULL on success) and frees. */
static const char *parse_code(const char *buf, size_t n)
{
    const char *code = "unset";
    char err[256];
    json_t *v = mx_json_parse(buf, n, &code, err, sizeof(err));
    if (v) {
        assert_null(code);
        json_decref(v);
        return NULL;
    }
    assert_non_null(code);
    assert_true(err[0] != '\0');
    return code;
}

#define NOT_JSON(lit) assert_string_equal(parse_code(lit, sizeof(lit) - 1), "M_NOT_JSON")
#define BAD_JSON(lit) assert_string_equal(parse_code(lit, sizeof(lit) - 1), "M_BAD_JSON")
#define OK_JSON(lit) assert_null(parse_code(lit, sizeof(lit) - 1))

/* Canonical form of the JSON text `in` (parsed with mx_json_parse), or
 * NULL when canonicalisation refuses it.  Malloc'd. */
static char *canon_of(const char *in)
{
    const char *code;
    json_t *v = mx_json_parse(in, strlen(in), &code, NULL, 0);
    assert_non_null(v);
    size_t len = 12345;
    char *s = mx_json_canonical(v, &len);
    json_decref(v);
    if (s)
        assert_int_equal(len, strlen(s));
    else
        assert_int_equal(len, 0);
    return s;
}

static void assert_canon(const char *in, const char *want)
{
    char *s = canon_of(in);
    assert_non_null(s);
    assert_string_equal(s, want);
    free(s);
}

static void assert_canon_refused(const char *in)
{
    char *s = canon_of(in);
    assert_null(s);
}

/* Canonical form of a value built in code; takes the reference. */
static char *canon_new(json_t *v)
{
    assert_non_null(v);
    char *s = mx_json_canonical(v, NULL);
    json_decref(v);
    return s;
}

/* A string of n copies of c followed by m copies of d. */
static char *repeat2(char c, size_t n, char d, size_t m)
{
    char *s = malloc(n + m + 1);
    assert_non_null(s);
    memset(s, c, n);
    memset(s + n, d, m);
    s[n + m] = '\0';
    return s;
}

/* ------------------------------------------------------------- parsing --- */

static void test_parse_ok(void **state)
{
    (void)state;
    const char *code = "unset";
    char err[64] = "junk";
    const char body[] = " {\"a\": [1, 2.5, true, null, \"x\"], \"b\": {}} \r\n\t";
    json_t *v = mx_json_parse(body, sizeof(body) - 1, &code, err, sizeof(err));
    assert_non_null(v);
    assert_null(code);
    assert_string_equal(err, "");
    assert_true(json_is_object(v));
    assert_int_equal(json_array_size(json_object_get(v, "a")), 5);
    json_decref(v);

    /* Any single value, not just objects (the router checks for objects). */
    OK_JSON("1");
    OK_JSON("\"x\"");
    OK_JSON("[]");
    OK_JSON("null");
    /* No errcode/errbuf wanted. */
    v = mx_json_parse("{}", 2, NULL, NULL, 0);
    assert_non_null(v);
    json_decref(v);
    /* The length is honoured: bytes after it are not read. */
    v = mx_json_parse("{}garbage", 2, &code, NULL, 0);
    assert_non_null(v);
    json_decref(v);
}

static void test_parse_unicode(void **state)
{
    (void)state;
    const char *code;
    /* A surrogate pair becomes one 4-byte UTF-8 sequence. */
    const char in[] = "\"\\ud83d\\ude00 \\u65E5 \xe6\x97\xa5\"";
    json_t *v = mx_json_parse(in, sizeof(in) - 1, &code, NULL, 0);
    assert_non_null(v);
    assert_string_equal(json_string_value(v), "\xf0\x9f\x98\x80 \xe6\x97\xa5 \xe6\x97\xa5");
    json_decref(v);
}

static void test_parse_not_json(void **state)
{
    (void)state;
    NOT_JSON("");
    NOT_JSON("   ");
    NOT_JSON("{");
    NOT_JSON("{\"a\":}");
    NOT_JSON("{\"a\" 1}");
    NOT_JSON("[1,]");
    NOT_JSON("{'a':1}");
    NOT_JSON("{} x");           /* trailing garbage */
    NOT_JSON("{}{}");           /* two values */
    NOT_JSON("01");
    NOT_JSON("+1");
    NOT_JSON("NaN");
    NOT_JSON("Infinity");
    NOT_JSON("-Infinity");
    NOT_JSON("undefined");
    NOT_JSON("\"\x01\"");       /* raw control character in a string */
    NOT_JSON("\"a\nb\"");
    /* NUL bytes, inside a string and after the value */
    NOT_JSON("\"a\0b\"");
    NOT_JSON("{}\0");
    NOT_JSON("\0");
    /* invalid UTF-8: stray byte, truncated, overlong, encoded surrogate,
     * beyond U+10FFFF */
    NOT_JSON("\"\xff\"");
    NOT_JSON("\"\xe6\x97\"");
    NOT_JSON("\"\xc0\xaf\"");
    NOT_JSON("\"\xe0\x80\xaf\"");
    NOT_JSON("\"\xed\xa0\x80\"");
    NOT_JSON("\"\xf4\x90\x80\x80\"");
    NOT_JSON("{\"\xff\":1}");
    /* lone or unpaired surrogate escapes */
    NOT_JSON("\"\\ud800\"");
    NOT_JSON("\"\\udc00\"");
    NOT_JSON("\"\\ud800x\"");
    NOT_JSON("\"\\ud800\\u0041\"");
    NOT_JSON("\"\\ude00\\ud83d\"");
    /* bad escapes */
    NOT_JSON("\"\\x41\"");
    NOT_JSON("\"\\u12\"");
    /* numbers that overflow */
    NOT_JSON("1e400");
    NOT_JSON("-1e400");
    NOT_JSON("{\"a\":[1e999]}");
    NOT_JSON("99999999999999999999");
    NOT_JSON("-99999999999999999999");
}

static void test_parse_bad_json(void **state)
{
    (void)state;
    BAD_JSON("{\"a\":1,\"a\":2}");
    BAD_JSON("{\"a\":1,\"b\":{\"c\":1,\"c\":1}}");
    BAD_JSON("[{\"x\":null,\"x\":null}]");
    /* Keys equal after unescaping are duplicates too. */
    BAD_JSON("{\"a\":1,\"\\u0061\":2}");
    /* \u0000 is JSON, but no C string can carry it */
    BAD_JSON("\"a\\u0000b\"");
    BAD_JSON("{\"\\u0000\":1}");
}

static void test_parse_numbers(void **state)
{
    (void)state;
    const char *code;
    /* Floats and integers beyond 2^53 parse; only canonical JSON refuses. */
    OK_JSON("1.5");
    OK_JSON("-0.0");
    OK_JSON("1e10");
    OK_JSON("1e308");
    OK_JSON("9007199254740993");
    json_t *v = mx_json_parse("-9223372036854775808", 20, &code, NULL, 0);
    assert_non_null(v);
    assert_true(json_integer_value(v) == INT64_MIN);
    json_decref(v);
    v = mx_json_parse("9223372036854775807", 19, &code, NULL, 0);
    assert_non_null(v);
    assert_true(json_integer_value(v) == INT64_MAX);
    json_decref(v);
    NOT_JSON("9223372036854775808");
}

static void test_parse_depth(void **state)
{
    (void)state;
    char *s;
    /* 64 levels are fine, 65 are not (`[]` is one level). */
    s = repeat2('[', 64, ']', 64);
    assert_null(parse_code(s, strlen(s)));
    free(s);
    s = repeat2('[', 65, ']', 65);
    assert_string_equal(parse_code(s, strlen(s)), "M_BAD_JSON");
    free(s);

    /* Objects count the same as arrays. */
    size_t n = 65;
    char *o = malloc(n * 5 + n + 8);
    assert_non_null(o);
    o[0] = '\0';
    for (size_t i = 0; i < n; i++)
        strcat(o, "{\"a\":");
    strcat(o, "1");
    for (size_t i = 0; i < n; i++)
        strcat(o, "}");
    assert_string_equal(parse_code(o, strlen(o)), "M_BAD_JSON");
    free(o);

    /* Deep enough for jansson's own limit (2048), valid otherwise. */
    s = repeat2('[', 3000, ']', 3000);
    assert_string_equal(parse_code(s, strlen(s)), "M_BAD_JSON");
    free(s);

    /* 100000 unclosed brackets: no crash, no long parse. */
    clock_t t0 = clock();
    s = repeat2('[', 100000, ' ', 0);
    assert_non_null(parse_code(s, strlen(s)));
    free(s);
    s = repeat2('[', 100000, ']', 100000);
    assert_string_equal(parse_code(s, strlen(s)), "M_BAD_JSON");
    free(s);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 1.0);
}

static void test_parse_errbuf(void **state)
{
    (void)state;
    const char *code;
    char err[128];
    /* The message is printable ASCII even when the input is not. */
    const char in[] = "{\"a\": \xff\xfe}";
    assert_null(mx_json_parse(in, sizeof(in) - 1, &code, err, sizeof(err)));
    assert_string_equal(code, "M_NOT_JSON");
    assert_true(strlen(err) > 0);
    for (const char *p = err; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    /* A tiny buffer is still terminated. */
    char small[8];
    assert_null(mx_json_parse("{", 1, &code, small, sizeof(small)));
    assert_true(strlen(small) < sizeof(small));
    /* The depth message says what is wrong. */
    char *s = repeat2('[', 70, ']', 70);
    assert_null(mx_json_parse(s, strlen(s), &code, err, sizeof(err)));
    assert_non_null(strstr(err, "deep"));
    free(s);
}

/* ----------------------------------------------------------- canonical --- */

/* The examples of the spec's appendix "Canonical JSON" (v1.19). */
static void test_canonical_spec_examples(void **state)
{
    (void)state;
    assert_canon("{}", "{}");
    assert_canon("{\n    \"one\": 1,\n    \"two\": \"Two\"\n}", "{\"one\":1,\"two\":\"Two\"}");
    assert_canon("{\n    \"b\": \"2\",\n    \"a\": \"1\"\n}", "{\"a\":\"1\",\"b\":\"2\"}");
    assert_canon("{\"b\":\"2\",\"a\":\"1\"}", "{\"a\":\"1\",\"b\":\"2\"}");
    assert_canon(
        "{\n    \"auth\": {\n        \"success\": true,\n"
        "        \"mxid\": \"@john.doe:example.com\",\n        \"profile\": {\n"
        "            \"display_name\": \"John Doe\",\n            \"three_pids\": [\n"
        "                {\n                    \"medium\": \"email\",\n"
        "                    \"address\": \"john.doe@example.org\"\n                },\n"
        "                {\n                    \"medium\": \"msisdn\",\n"
        "                    \"address\": \"123456789\"\n                }\n"
        "            ]\n        }\n    }\n}",
        "{\"auth\":{\"mxid\":\"@john.doe:example.com\",\"profile\":{\"display_name\":"
        "\"John Doe\",\"three_pids\":[{\"address\":\"john.doe@example.org\",\"medium\":"
        "\"email\"},{\"address\":\"123456789\",\"medium\":\"msisdn\"}]},\"success\":true}}");
    assert_canon("{\n    \"a\": \"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"\n}",
                 "{\"a\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"}");
    assert_canon("{\n    \"\xe6\x9c\xac\": 2,\n    \"\xe6\x97\xa5\": 1\n}",
                 "{\"\xe6\x97\xa5\":1,\"\xe6\x9c\xac\":2}");
    assert_canon("{\n    \"a\": \"\\u65E5\"\n}", "{\"a\":\"\xe6\x97\xa5\"}");
    assert_canon("{\n    \"a\": null\n}", "{\"a\":null}");
    /* The last example, {"a": -0, "b": 1e10} -> {"a":0,"b":10000000000},
     * contradicts "float values are not permitted": 1e10 is a float in JSON
     * parsers (jansson, Python, serde), and Synapse and Ruma refuse it.  We
     * refuse it too; -0 is an integer and becomes 0. */
    assert_canon("{\"a\": -0}", "{\"a\":0}");
    assert_canon_refused("{\n    \"a\": -0,\n    \"b\": 1e10\n}");
}

static void test_canonical_int_range(void **state)
{
    (void)state;
    assert_canon("[9007199254740991,-9007199254740991,0,-1,1]",
                 "[9007199254740991,-9007199254740991,0,-1,1]");
    assert_canon_refused("9007199254740992");
    assert_canon_refused("-9007199254740992");
    assert_canon_refused("{\"a\":[{\"b\":9223372036854775807}]}");
    assert_canon_refused("-9223372036854775808");
    /* Built in code too. */
    char *s = canon_new(json_integer(INT64_MIN));
    assert_null(s);
    s = canon_new(json_integer(-9007199254740991LL));
    assert_string_equal(s, "-9007199254740991");
    free(s);
}

static void test_canonical_floats_refused(void **state)
{
    (void)state;
    assert_canon_refused("1.5");
    assert_canon_refused("1.0");
    assert_canon_refused("-0.0");
    assert_canon_refused("{\"a\":{\"b\":[1,2,3.25]}}");
    assert_canon_refused("1e2");
    assert_null(canon_new(json_real(2.0)));
}

static void test_canonical_escaping(void **state)
{
    (void)state;
    char in[0x20], want[256];
    char *s;

    /* Every control character: the five short escapes, \u00xx (lower-case
     * hex) for the rest. */
    for (int i = 1; i < 0x20; i++)
        in[i - 1] = (char)i;
    in[0x1f] = '\0';
    s = canon_new(json_string(in));
    assert_non_null(s);
    assert_string_equal(s,
                        "\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n"
                        "\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014"
                        "\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d"
                        "\\u001e\\u001f\"");
    free(s);

    /* NUL (only possible in strings built in code). */
    s = canon_new(json_stringn("a\0b", 3));
    assert_string_equal(s, "\"a\\u0000b\"");
    free(s);

    /* Quote and backslash escaped; '/', DEL, non-ASCII, U+2028 raw. */
    s = canon_new(json_string("\"\\/\x7f\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80 <>&'"));
    snprintf(want, sizeof(want), "\"%s\"",
             "\\\"\\\\/\x7f\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80 <>&'");
    assert_string_equal(s, want);
    free(s);

    /* Escapes in the input are decoded and written in canonical form. */
    assert_canon("\"\\u0041\\/\\u00e9\\u007f\\u001F\\u0008\"", "\"A/\xc3\xa9\x7f\\u001f\\b\"");

    /* Keys are escaped the same way. */
    assert_canon("{\"a\\nb\":1,\"\\\"\":2}", "{\"\\\"\":2,\"a\\nb\":1}");

    /* Invalid UTF-8 slipped in without jansson's check is refused. */
    assert_null(canon_new(json_stringn_nocheck("\xff", 1)));
    assert_null(canon_new(json_stringn_nocheck("\xed\xa0\x80", 3)));
    assert_null(canon_new(json_stringn_nocheck("\xe6\x97", 2)));
}

static void test_canonical_key_order(void **state)
{
    (void)state;
    /* Code point order: ASCII upper before lower, 2-byte before 3-byte
     * before 4-byte sequences, prefixes first. */
    assert_canon("{\"\xf0\x9f\x98\x80\":6,\"\xe6\x97\xa5\":5,\"\xc3\xa9\":4,\"aa\":3,\"a\":2,"
                 "\"B\":1,\"\":0}",
                 "{\"\":0,\"B\":1,\"a\":2,\"aa\":3,\"\xc3\xa9\":4,\"\xe6\x97\xa5\":5,"
                 "\"\xf0\x9f\x98\x80\":6}");
    /* U+FFFF vs U+10000: UTF-16 order would flip these. */
    assert_canon("{\"\xf0\x90\x80\x80\":2,\"\xef\xbf\xbf\":1}",
                 "{\"\xef\xbf\xbf\":1,\"\xf0\x90\x80\x80\":2}");
    /* Keys holding NUL (built in code) sort by their bytes. */
    json_t *o = json_object();
    json_object_setn_new(o, "a\0b", 3, json_integer(2));
    json_object_set_new(o, "a", json_integer(1));
    json_object_set_new(o, "a\x01", json_integer(3));
    char *s = canon_new(o);
    assert_string_equal(s, "{\"a\":1,\"a\\u0000b\":2,\"a\\u0001\":3}");
    free(s);
    /* Many keys, inserted in reverse. */
    o = json_object();
    for (int i = 99; i >= 0; i--) {
        char k[8];
        snprintf(k, sizeof(k), "k%02d", i);
        json_object_set_new(o, k, json_integer(i));
    }
    s = canon_new(o);
    assert_non_null(s);
    assert_memory_equal(s, "{\"k00\":0,\"k01\":1,", 17);
    assert_non_null(strstr(s, "\"k98\":98,\"k99\":99}"));
    free(s);
}

static void test_canonical_values(void **state)
{
    (void)state;
    assert_canon("true", "true");
    assert_canon("false", "false");
    assert_canon("null", "null");
    assert_canon("\"\"", "\"\"");
    assert_canon(" [ 3 , [ ] , { } , [ 1 , [ 2 ] ] ] ", "[3,[],{},[1,[2]]]");
    assert_canon("{\"z\":[{\"b\":1,\"a\":[true,false,null]}],\"y\":\"\"}",
                 "{\"y\":\"\",\"z\":[{\"a\":[true,false,null],\"b\":1}]}");
    assert_null(mx_json_canonical(NULL, NULL));

    /* Deep structures built in code are refused instead of overflowing the
     * stack; moderate ones are fine. */
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 100000; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    assert_null(mx_json_canonical(root, NULL));
    /* jansson frees recursively too; unlink level by level to keep the
     * test's own stack small. */
    cur = root;
    json_incref(cur);
    while (json_array_size(cur)) {
        json_t *next = json_incref(json_array_get(cur, 0));
        json_array_clear(cur);
        json_decref(cur);
        cur = next;
    }
    json_decref(cur);
    json_decref(root);

    root = json_array();
    cur = root;
    for (int i = 0; i < 200; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    char *s = mx_json_canonical(root, NULL);
    assert_non_null(s);
    assert_int_equal(strlen(s), 402);
    free(s);
    json_decref(root);
}

/* Parse -> canonical -> parse -> canonical is stable. */
static void test_canonical_idempotent(void **state)
{
    (void)state;
    const char *in = "{\"c\":{\"\xe2\x82\xac\":\"\\t\\\"\\\\\",\"b\":[1,-2,{}]},\"a\":\"\\u0019\"}";
    char *a = canon_of(in);
    assert_non_null(a);
    char *b = canon_of(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_unicode),
        cmocka_unit_test(test_parse_not_json),
        cmocka_unit_test(test_parse_bad_json),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_parse_depth),
        cmocka_unit_test(test_parse_errbuf),
        cmocka_unit_test(test_canonical_spec_examples),
        cmocka_unit_test(test_canonical_int_range),
        cmocka_unit_test(test_canonical_floats_refused),
        cmocka_unit_test(test_canonical_escaping),
        cmocka_unit_test(test_canonical_key_order),
        cmocka_unit_test(test_canonical_values),
        cmocka_unit_test(test_canonical_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
