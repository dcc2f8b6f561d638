/*
 * test_push.c: unit tests of the push rule evaluator and rulesets (push/):
 * each server-default rule against sample events (a DM message notifies, a
 * mention highlights, m.notice and edits are suppressed...), the conditions
 * (globs with word boundaries, dotted keys with escapes, room_member_count,
 * sender_notification_permission), user rules and their ordering, and the
 * rendered ruleset clients see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "push/push.h"

static json_t *defaults;

static int setup(void **state)
{
    (void)state;
    defaults = pu_default_rules();
    return defaults ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(defaults);
    return 0;
}

#define ME "@alice:example.org"

/* Evaluates `event_json` for alice with defaults (+ `r`). */
static int eval(const char *event_json, int64_t members, int64_t sender_power, const pu_rules_t *r,
                pu_eval_out_t *out)
{
    json_t *ev = json_loads(event_json, 0, NULL);
    assert_non_null(ev);
    pu_eval_in_t in = {
        .event = ev, .room_id = "!r:example.org", .user_id = ME, .display_name = "Alice Liddell",
        .member_count = members, .sender_power = sender_power, .power_levels = NULL,
    };
    int m = pu_evaluate(defaults, r, &in, out);
    /* actions/rule_id borrow from the rules, not the event */
    json_decref(ev);
    return m;
}

#define MSG(body) \
    "{\"type\":\"m.room.message\",\"sender\":\"@bob:example.org\",\"room_id\":\"!r:example.org\"," \
    "\"content\":{\"msgtype\":\"m.text\",\"body\":\"" body "\"}}"

static void test_dm_message_notifies(void **state)
{
    (void)state;
    pu_eval_out_t o;
    assert_int_equal(eval(MSG("hello"), 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.room_one_to_one");
    assert_true(o.notify);
    assert_false(o.highlight);
    assert_string_equal(o.sound, "default");
}

static void test_group_message(void **state)
{
    (void)state;
    pu_eval_out_t o;
    assert_int_equal(eval(MSG("hello all"), 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
    assert_true(o.notify);
    assert_false(o.highlight);
    assert_null(o.sound);
}

static void test_user_mention_highlights(void **state)
{
    (void)state;
    pu_eval_out_t o;
    const char *ev = "{\"type\":\"m.room.message\",\"sender\":\"@bob:example.org\","
                     "\"content\":{\"body\":\"hi\",\"m.mentions\":{\"user_ids\":[\"" ME "\"]}}}";
    assert_int_equal(eval(ev, 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.is_user_mention");
    assert_true(o.notify);
    assert_true(o.highlight);
    /* mentions of somebody else: an ordinary message, and the legacy body
     * rules do not apply because m.mentions is present */
    ev = "{\"type\":\"m.room.message\",\"sender\":\"@bob:example.org\",\"content\":"
         "{\"body\":\"alice look\",\"m.mentions\":{\"user_ids\":[\"@carol:example.org\"]}}}";
    assert_int_equal(eval(ev, 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
    assert_false(o.highlight);
}

static void test_legacy_mentions(void **state)
{
    (void)state;
    pu_eval_out_t o;
    assert_int_equal(eval(MSG("hey Alice Liddell, tea?"), 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.contains_display_name");
    assert_true(o.highlight);
    /* not at a word boundary */
    assert_int_equal(eval(MSG("xAlice Liddell"), 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
    /* the localpart (content rule) */
    assert_int_equal(eval(MSG("ping ALICE!"), 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.contains_user_name");
    assert_true(o.highlight);
    assert_int_equal(eval(MSG("malice"), 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
}

static void test_room_mention(void **state)
{
    (void)state;
    pu_eval_out_t o;
    const char *ev = "{\"type\":\"m.room.message\",\"sender\":\"@bob:example.org\","
                     "\"content\":{\"body\":\"all\",\"m.mentions\":{\"room\":true}}}";
    assert_int_equal(eval(ev, 5, 50, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.is_room_mention");
    assert_true(o.highlight);
    assert_int_equal(eval(ev, 5, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
    assert_false(o.highlight);
    /* legacy @room */
    assert_int_equal(eval(MSG("@room lunch"), 5, 100, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.roomnotif");
    assert_true(o.highlight);
    /* notifications.room from the power levels */
    json_t *ev2 = json_loads(MSG("@room lunch"), 0, NULL);
    json_t *pl = json_loads("{\"notifications\":{\"room\":10}}", 0, NULL);
    pu_eval_in_t in = { .event = ev2, .user_id = ME, .member_count = 5, .sender_power = 10,
                        .power_levels = pl };
    assert_int_equal(pu_evaluate(defaults, NULL, &in, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.roomnotif");
    json_decref(ev2);
    json_decref(pl);
}

static void test_suppressed(void **state)
{
    (void)state;
    pu_eval_out_t o;
    const char *notice = "{\"type\":\"m.room.message\",\"sender\":\"@bot:example.org\","
                         "\"content\":{\"msgtype\":\"m.notice\",\"body\":\"alice\"}}";
    assert_int_equal(eval(notice, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.suppress_notices");
    assert_false(o.notify);
    const char *edit = "{\"type\":\"m.room.message\",\"sender\":\"@bob:example.org\","
                       "\"content\":{\"body\":\"* fixed\",\"m.relates_to\":"
                       "{\"rel_type\":\"m.replace\",\"event_id\":\"$x\"}}}";
    assert_int_equal(eval(edit, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.suppress_edits");
    assert_false(o.notify);
    const char *reaction = "{\"type\":\"m.reaction\",\"sender\":\"@bob:example.org\",\"content\":"
                           "{\"m.relates_to\":{\"rel_type\":\"m.annotation\",\"event_id\":\"$x\","
                           "\"key\":\"+1\"}}}";
    assert_int_equal(eval(reaction, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.reaction");
    assert_false(o.notify);
    const char *acl = "{\"type\":\"m.room.server_acl\",\"state_key\":\"\",\"sender\":\"@b:x\","
                      "\"content\":{}}";
    assert_int_equal(eval(acl, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.room.server_acl");
    /* a non-message event matches nothing */
    const char *topic = "{\"type\":\"m.room.topic\",\"state_key\":\"\",\"sender\":\"@b:x\","
                        "\"content\":{\"topic\":\"t\"}}";
    assert_int_equal(eval(topic, 2, 0, NULL, &o), 0);
    assert_false(o.notify);
}

static void test_member_events(void **state)
{
    (void)state;
    pu_eval_out_t o;
    const char *inv = "{\"type\":\"m.room.member\",\"state_key\":\"" ME "\",\"sender\":\"@b:x\","
                      "\"content\":{\"membership\":\"invite\"}}";
    assert_int_equal(eval(inv, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.invite_for_me");
    assert_true(o.notify);
    const char *other = "{\"type\":\"m.room.member\",\"state_key\":\"@c:x\",\"sender\":\"@b:x\","
                        "\"content\":{\"membership\":\"invite\"}}";
    assert_int_equal(eval(other, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.member_event");
    assert_false(o.notify);
}

static void test_tombstone_call_encrypted(void **state)
{
    (void)state;
    pu_eval_out_t o;
    const char *tomb = "{\"type\":\"m.room.tombstone\",\"state_key\":\"\",\"sender\":\"@b:x\","
                       "\"content\":{\"replacement_room\":\"!n:x\"}}";
    assert_int_equal(eval(tomb, 9, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.tombstone");
    assert_true(o.highlight);
    const char *call = "{\"type\":\"m.call.invite\",\"sender\":\"@b:x\",\"content\":{}}";
    assert_int_equal(eval(call, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.call");
    assert_string_equal(o.sound, "ring");
    const char *enc = "{\"type\":\"m.room.encrypted\",\"sender\":\"@b:x\",\"content\":{}}";
    assert_int_equal(eval(enc, 2, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.encrypted_room_one_to_one");
    assert_int_equal(eval(enc, 3, 0, NULL, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.encrypted");
    assert_true(o.notify);
    assert_null(o.sound);
}

static void test_member_count(void **state)
{
    (void)state;
    json_t *ev = json_loads(MSG("x"), 0, NULL);
    pu_eval_in_t in = { .event = ev, .user_id = ME, .member_count = 10 };
    static const struct { const char *is; int want; } cases[] = {
        { "10", 1 }, { "==10", 1 }, { "9", 0 }, { "<11", 1 }, { "<10", 0 }, { ">9", 1 },
        { ">10", 0 }, { "<=10", 1 }, { "<=9", 0 }, { ">=10", 1 }, { ">=11", 0 },
        { "abc", 0 }, { "", 0 }, { "<", 0 }, { "10x", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *c = json_pack("{s:s, s:s}", "kind", "room_member_count", "is", cases[i].is);
        assert_int_equal(pu_condition(c, &in), cases[i].want);
        json_decref(c);
    }
    json_t *c = json_pack("{s:s}", "kind", "no_such_condition");
    assert_int_equal(pu_condition(c, &in), 0);
    json_decref(c);
    json_decref(ev);
}

static void test_glob(void **state)
{
    (void)state;
    assert_true(pu_glob("lunc?*", "Lunch plans", false));
    assert_true(pu_glob("lunc?*", "LUNCH", false));
    assert_false(pu_glob("lunc?*", " lunch", false));
    assert_false(pu_glob("lunc?*", "lunc", false));
    assert_true(pu_glob("*", "", false));
    assert_true(pu_glob("m.room.*", "m.room.message", false));
    assert_false(pu_glob("m.room", "m.room.message", false));
    assert_true(pu_glob("[a-c]at", "Bat", false));
    assert_false(pu_glob("[!a-c]at", "bat", false));
    assert_true(pu_glob("a*b*c*d", "aXXbYYcZZd", false));
    assert_false(pu_glob("a*b*c*d", "aXXbYYcZZ", false));
    /* word-bounded (content.body) */
    assert_true(pu_glob("ex*ple", "An example event.", true));
    assert_true(pu_glob("ex*ple", "exple", true));
    assert_true(pu_glob("ex*ple", "An exciting triple-whammy", true));
    assert_false(pu_glob("ex*ple", "An examples", true));
    assert_true(pu_glob("cake", "I like CAKE!", true));
    assert_false(pu_glob("cake", "cupcake", true));
    assert_true(pu_glob("@room", "hey @room", true));
    assert_true(pu_glob("caf?", "un café noir", true)); /* ? is one character */
}

static void test_event_value(void **state)
{
    (void)state;
    json_t *ev = json_loads("{\"content\":{\"m.mentions\":{\"room\":true},\"a\":{\"b\\\\c\":1},"
                            "\"m.relates_to\":{\"rel_type\":\"m.thread\",\"event_id\":\"$root\"}}}",
                            0, NULL);
    assert_true(json_is_true(pu_event_value(ev, "content.m\\.mentions.room")));
    assert_null(pu_event_value(ev, "content.m.mentions.room"));
    assert_int_equal(json_integer_value(pu_event_value(ev, "content.a.b\\\\c")), 1);
    assert_null(pu_event_value(ev, "content.missing"));
    assert_string_equal(pu_thread_id(ev), "$root");
    json_t *c = json_loads("{\"kind\":\"event_property_is\",\"key\":\"content.m\\\\.mentions.room\","
                           "\"value\":true}", 0, NULL);
    pu_eval_in_t in = { .event = ev, .user_id = ME };
    assert_int_equal(pu_condition(c, &in), 1);
    json_object_set_new(c, "value", json_string("true"));
    assert_int_equal(pu_condition(c, &in), 0);
    json_decref(c);
    json_decref(ev);
    ev = json_loads(MSG("x"), 0, NULL);
    assert_string_equal(pu_thread_id(ev), "main");
    json_decref(ev);
}

static void test_user_rules(void **state)
{
    (void)state;
    pu_rules_t r = { 0 };
    pu_eval_out_t o;
    /* a keyword rule */
    json_t *rule = json_loads("{\"pattern\":\"cake\",\"actions\":[\"notify\",{\"set_tweak\":"
                              "\"sound\",\"value\":\"cakealarm.wav\"}]}", 0, NULL);
    assert_int_equal(pu_rule_put(&r, "content", "cakes", rule, NULL, NULL), 0);
    assert_int_equal(eval(MSG("time for cake"), 5, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, "cakes");
    assert_string_equal(o.sound, "cakealarm.wav");
    /* a room rule that silences the room wins over content? no: content first */
    rule = json_loads("{\"actions\":[]}", 0, NULL);
    assert_int_equal(pu_rule_put(&r, "room", "!r:example.org", rule, NULL, NULL), 0);
    assert_int_equal(eval(MSG("hello"), 5, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, "!r:example.org");
    assert_false(o.notify);
    /* sender rule */
    rule = json_loads("{\"actions\":[\"notify\"]}", 0, NULL);
    assert_int_equal(pu_rule_put(&r, "sender", "@bob:example.org", rule, NULL, NULL), 0);
    assert_int_equal(pu_rule_delete(&r, defaults, "room", "!r:example.org"), 0);
    assert_int_equal(eval(MSG("hello"), 5, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, "@bob:example.org");
    /* disabling a default rule; the master rule */
    assert_int_equal(pu_rule_set_enabled(&r, defaults, "override", ".m.rule.suppress_notices", false), 0);
    const char *notice = "{\"type\":\"m.room.message\",\"sender\":\"@x:y\","
                         "\"content\":{\"msgtype\":\"m.notice\",\"body\":\"n\"}}";
    assert_int_equal(eval(notice, 5, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
    assert_int_equal(pu_rule_set_enabled(&r, defaults, "override", ".m.rule.master", true), 0);
    assert_int_equal(eval(MSG("time for cake"), 5, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.master");
    assert_false(o.notify);
    /* unknown rules, server-default deletion */
    assert_int_equal(pu_rule_set_enabled(&r, defaults, "override", "nope", true), -ENOENT);
    assert_int_equal(pu_rule_delete(&r, defaults, "override", ".m.rule.master"), -EPERM);
    assert_int_equal(pu_rule_delete(&r, defaults, "override", "nope"), -ENOENT);
    /* actions of a default rule */
    assert_int_equal(pu_rule_set_enabled(&r, defaults, "override", ".m.rule.master", false), 0);
    json_t *acts = json_loads("[\"notify\",{\"set_tweak\":\"highlight\"}]", 0, NULL);
    assert_int_equal(pu_rule_set_actions(&r, defaults, "underride", ".m.rule.message", acts), 0);
    json_decref(acts);
    assert_int_equal(pu_rule_delete(&r, defaults, "sender", "@bob:example.org"), 0);
    assert_int_equal(eval(MSG("hello"), 5, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
    assert_true(o.highlight);
    /* storage round trip */
    char *s = pu_rules_dump(&r);
    pu_rules_t r2 = { 0 };
    assert_int_equal(pu_rules_load(&r2, s), 0);
    assert_int_equal(eval(MSG("hello"), 5, 0, &r2, &o), 1);
    assert_true(o.highlight);
    free(s);
    pu_rules_clear(&r2);
    pu_rules_clear(&r);
}

static void test_override_glob_rule(void **state)
{
    (void)state;
    pu_rules_t r = { 0 };
    pu_eval_out_t o;
    json_t *rule = json_loads("{\"conditions\":[{\"kind\":\"event_match\",\"key\":\"content.body\","
                              "\"pattern\":\"beer\"},{\"kind\":\"room_member_count\",\"is\":\"<=10\"}],"
                              "\"actions\":[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"b.wav\"}]}",
                              0, NULL);
    assert_int_equal(pu_rule_put(&r, "override", "beer", rule, NULL, NULL), 0);
    assert_int_equal(eval(MSG("beer o'clock"), 10, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, "beer");
    assert_int_equal(eval(MSG("beer o'clock"), 11, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, ".m.rule.message");
    /* user override rules come after .m.rule.master but before the other
     * default overrides: a notice with "beer" notifies */
    const char *notice = "{\"type\":\"m.room.message\",\"sender\":\"@x:y\","
                         "\"content\":{\"msgtype\":\"m.notice\",\"body\":\"beer\"}}";
    assert_int_equal(eval(notice, 3, 0, &r, &o), 1);
    assert_string_equal(o.rule_id, "beer");
    pu_rules_clear(&r);
}

static const char *rule_at(const json_t *set, const char *kind, size_t i)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(set, kind), i), "rule_id"));
}

static void test_ordering(void **state)
{
    (void)state;
    pu_rules_t r = { 0 };
    assert_int_equal(pu_rule_put(&r, "override", "a", json_loads("{\"conditions\":[],\"actions\":[]}", 0, NULL), NULL, NULL), 0);
    assert_int_equal(pu_rule_put(&r, "override", "b", json_loads("{\"conditions\":[],\"actions\":[]}", 0, NULL), NULL, NULL), 0);
    /* new rules go first: b, a */
    assert_int_equal(pu_rule_put(&r, "override", "c", json_loads("{\"conditions\":[],\"actions\":[]}", 0, NULL), NULL, "b"), 0);
    /* b, c, a */
    assert_int_equal(pu_rule_put(&r, "override", "d", json_loads("{\"conditions\":[],\"actions\":[]}", 0, NULL), "a", NULL), 0);
    /* b, c, d, a */
    assert_int_equal(pu_rule_put(&r, "override", "e", json_loads("{\"conditions\":[],\"actions\":[]}", 0, NULL), "nope", NULL), -ENOENT);
    assert_int_equal(pu_rule_put(&r, "override", "e", json_loads("{\"conditions\":[],\"actions\":[]}", 0, NULL), ".m.rule.master", NULL), -ENOENT);
    /* moving an existing rule */
    assert_int_equal(pu_rule_put(&r, "override", "b", json_loads("{\"conditions\":[],\"actions\":[\"notify\"]}", 0, NULL), NULL, "a"), 0);
    /* c, d, a, b */
    json_t *set = pu_render(defaults, &r, ME);
    assert_string_equal(rule_at(set, "override", 0), ".m.rule.master");
    assert_string_equal(rule_at(set, "override", 1), "c");
    assert_string_equal(rule_at(set, "override", 2), "d");
    assert_string_equal(rule_at(set, "override", 3), "a");
    assert_string_equal(rule_at(set, "override", 4), "b");
    assert_string_equal(rule_at(set, "override", 5), ".m.rule.suppress_notices");
    json_t *b = pu_find(set, "override", "b");
    assert_true(json_is_false(json_object_get(b, "default")));
    assert_true(json_is_true(json_object_get(b, "enabled")));
    assert_int_equal(json_array_size(json_object_get(b, "actions")), 1);
    json_decref(set);
    pu_rules_clear(&r);
}

static void test_render_defaults(void **state)
{
    (void)state;
    json_t *set = pu_render(defaults, NULL, ME);
    static const char *const over[] = {
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
        ".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
        ".m.rule.is_room_mention", ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction",
        ".m.rule.room.server_acl", ".m.rule.suppress_edits",
    };
    static const char *const under[] = {
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted",
    };
    assert_int_equal(json_array_size(json_object_get(set, "override")), 12);
    for (size_t i = 0; i < 12; i++)
        assert_string_equal(rule_at(set, "override", i), over[i]);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(rule_at(set, "underride", i), under[i]);
    assert_string_equal(rule_at(set, "content", 0), ".m.rule.contains_user_name");
    assert_int_equal(json_array_size(json_object_get(set, "room")), 0);
    assert_int_equal(json_array_size(json_object_get(set, "sender")), 0);
    json_t *cu = pu_find(set, "content", ".m.rule.contains_user_name");
    assert_string_equal(json_string_value(json_object_get(cu, "pattern")), "alice");
    assert_null(json_object_get(cu, "_legacy"));
    assert_null(json_object_get(cu, "pattern_type"));
    json_t *inv = pu_find(set, "override", ".m.rule.invite_for_me");
    json_t *c3 = json_array_get(json_object_get(inv, "conditions"), 2);
    assert_string_equal(json_string_value(json_object_get(c3, "pattern")), ME);
    json_t *um = pu_find(set, "override", ".m.rule.is_user_mention");
    json_t *c1 = json_array_get(json_object_get(um, "conditions"), 0);
    assert_string_equal(json_string_value(json_object_get(c1, "value")), ME);
    assert_string_equal(json_string_value(json_object_get(c1, "key")), "content.m\\.mentions.user_ids");
    json_t *master = pu_find(set, "override", ".m.rule.master");
    assert_true(json_is_true(json_object_get(master, "default")));
    assert_true(json_is_false(json_object_get(master, "enabled")));
    json_decref(set);
}

static void test_actions_valid(void **state)
{
    (void)state;
    json_t *a = json_loads("[\"notify\",{\"set_tweak\":\"sound\",\"value\":\"x\"},\"dont_notify\"]", 0, NULL);
    assert_true(pu_actions_valid(a));
    json_decref(a);
    a = json_loads("[\"explode\"]", 0, NULL);
    assert_false(pu_actions_valid(a));
    json_decref(a);
    a = json_loads("[{\"value\":1}]", 0, NULL);
    assert_false(pu_actions_valid(a));
    json_decref(a);
    a = json_loads("{}", 0, NULL);
    assert_false(pu_actions_valid(a));
    json_decref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dm_message_notifies),
        cmocka_unit_test(test_group_message),
        cmocka_unit_test(test_user_mention_highlights),
        cmocka_unit_test(test_legacy_mentions),
        cmocka_unit_test(test_room_mention),
        cmocka_unit_test(test_suppressed),
        cmocka_unit_test(test_member_events),
        cmocka_unit_test(test_tombstone_call_encrypted),
        cmocka_unit_test(test_member_count),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_event_value),
        cmocka_unit_test(test_user_rules),
        cmocka_unit_test(test_override_glob_rule),
        cmocka_unit_test(test_ordering),
        cmocka_unit_test(test_render_defaults),
        cmocka_unit_test(test_actions_valid),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
