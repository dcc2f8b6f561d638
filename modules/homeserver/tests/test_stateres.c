/*
 * test_stateres.c: unit tests of state resolution v2 (rooms v10/v11) and
 * v2.1 (v12) on small hand-built auth DAGs: a ban racing a power change, two
 * concurrent topics decided by the mainline (and by timestamp when the
 * mainline ties), a join-rule flip against a concurrent join, and v12 rooms
 * whose create event is implied by the room ID.
 *
 * Event IDs are chosen by hand (the algorithm only compares them); in v12
 * the create event's ID is "$" + the room ID body, as the spec defines.
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

#include "events/events.h"
#include "state/stateres.h"

/* ------------------------------------------------------------------- DSL */

typedef struct dag {
    const hs_room_version_t *rv;
    const char *room_id;
    json_t *events; /* id -> event */
} dag_t;

static void dag_init(dag_t *d, const char *ver)
{
    d->rv = hs_room_version_get(ver);
    d->room_id = d->rv->room_id_is_create_hash ? "!CREATE" : "!room:a";
    d->events = json_object();
}

/* Add an event: `auth` and `prev` are space-separated event IDs. */
static void E(dag_t *d, const char *id, const char *type, const char *sender, const char *sk,
              const char *content, int64_t ts, const char *auth, const char *prev)
{
    json_error_t err;
    json_t *c = json_loads(content, 0, &err);
    if (!c)
        fail_msg("bad content %s", content);
    json_t *ev = json_pack("{s:s,s:s,s:o,s:[],s:[],s:i,s:I}", "type", type, "sender", sender,
                           "content", c, "auth_events", "prev_events", "depth", 1,
                           "origin_server_ts", (json_int_t)ts);
    if (sk)
        json_object_set_new(ev, "state_key", json_string(sk));
    if (!(d->rv->room_id_is_create_hash && strcmp(type, "m.room.create") == 0))
        json_object_set_new(ev, "room_id", json_string(d->room_id));
    const char *lists[2] = { auth, prev };
    const char *names[2] = { "auth_events", "prev_events" };
    for (int l = 0; l < 2; l++) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", lists[l] ? lists[l] : "");
        for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok;
             tok = strtok_r(NULL, " ", &save))
            json_array_append_new(json_object_get(ev, names[l]), json_string(tok));
    }
    json_object_set_new(d->events, id, ev);
}

/* A state map from space-separated event IDs. */
static json_t *S(dag_t *d, const char *ids)
{
    json_t *m = json_object();
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", ids);
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        json_t *ev = json_object_get(d->events, tok);
        if (!ev)
            fail_msg("unknown event %s", tok);
        char *k = hs_state_key_join(hs_ev_type(ev), hs_ev_state_key(ev));
        json_object_set_new(m, k, json_string(tok));
        free(k);
    }
    return m;
}

static const json_t *fetch(void *ud, const char *id, int *rejected)
{
    if (rejected)
        *rejected = 0;
    return json_object_get(((dag_t *)ud)->events, id);
}

static json_t *resolve2(dag_t *d, json_t *a, json_t *b)
{
    const json_t *sets[2] = { a, b };
    json_t *out = NULL;
    char why[256];
    int rc = hs_stateres(d->rv, sets, 2, fetch, d, &out, why, sizeof(why));
    if (rc != 0)
        fail_msg("hs_stateres: %d %s", rc, why);
    /* the result must not depend on the order of the inputs */
    const json_t *rev[2] = { b, a };
    json_t *out2 = NULL;
    assert_int_equal(hs_stateres(d->rv, rev, 2, fetch, d, &out2, why, sizeof(why)), 0);
    assert_true(json_equal(out, out2));
    json_decref(out2);
    json_decref(a);
    json_decref(b);
    return out;
}

static const char *at(const json_t *state, const char *type, const char *sk)
{
    char *k = hs_state_key_join(type, sk);
    const char *v = json_string_value(json_object_get(state, k));
    free(k);
    return v;
}

/* The common start of a room: create, alice joins, power levels, join
 * rules, bob joins.  `pl` is the PL content. */
static const char *create_id(dag_t *d)
{
    return d->rv->room_id_is_create_hash ? "$CREATE" : "$C";
}

static void base_room(dag_t *d, const char *pl, const char *join_rule)
{
    const char *c = create_id(d);
    char auth[256], jr[64];
    const char *cc = d->rv->room_id_is_create_hash ? "" : c; /* v12: create implied */
    if (d->rv->implicit_creator)
        E(d, c, "m.room.create", "@alice:a", "", "{}", 1, NULL, NULL);
    else
        E(d, c, "m.room.create", "@alice:a", "", "{\"creator\":\"@alice:a\"}", 1, NULL, NULL);
    E(d, "$JA", "m.room.member", "@alice:a", "@alice:a", "{\"membership\":\"join\"}", 2, cc, c);
    snprintf(auth, sizeof(auth), "%s $JA", cc);
    E(d, "$P1", "m.room.power_levels", "@alice:a", "", pl, 3, auth, "$JA");
    snprintf(auth, sizeof(auth), "%s $JA $P1", cc);
    snprintf(jr, sizeof(jr), "{\"join_rule\":\"%s\"}", join_rule);
    E(d, "$J", "m.room.join_rules", "@alice:a", "", jr, 4, auth, "$P1");
    snprintf(auth, sizeof(auth), "%s $P1 $J", cc);
    E(d, "$JB", "m.room.member", "@bob:b", "@bob:b", "{\"membership\":\"join\"}", 5, auth, "$J");
}

/* ------------------------------------------------------------------ tests */

static void test_no_conflict(void **state)
{
    (void)state;
    dag_t d;
    dag_init(&d, "11");
    base_room(&d, "{\"users\":{\"@alice:a\":100}}", "public");
    json_t *r = resolve2(&d, S(&d, "$C $JA $P1 $J $JB"), S(&d, "$C $JA $P1 $J $JB"));
    assert_int_equal(json_object_size(r), 5);
    assert_string_equal(at(r, "m.room.member", "@bob:b"), "$JB");
    json_decref(r);
    json_decref(d.events);
}

static void test_missing_event(void **state)
{
    (void)state;
    dag_t d;
    dag_init(&d, "11");
    base_room(&d, "{\"users\":{\"@alice:a\":100}}", "public");
    json_t *a = S(&d, "$C $JA $P1 $J");
    json_t *b = json_copy(a);
    json_object_set_new(b, "m.room.topic\x1f", json_string("$nowhere"));
    const json_t *sets[2] = { a, b };
    json_t *out = NULL;
    char why[256];
    assert_int_equal(hs_stateres(d.rv, sets, 2, fetch, &d, &out, why, sizeof(why)), -ENOENT);
    assert_null(out);
    assert_non_null(strstr(why, "$nowhere"));
    json_decref(a);
    json_decref(b);
    json_decref(d.events);
}

/* Bob (50) bans eve while alice (100) concurrently demotes bob.  The
 * demotion sorts first (higher sender power, even with a later timestamp),
 * so the ban no longer passes and eve stays joined. */
static void ban_vs_pl(const char *ver)
{
    dag_t d;
    dag_init(&d, ver);
    int v12 = d.rv->room_id_is_create_hash;
    base_room(&d, v12 ? "{\"users\":{\"@bob:b\":50}}"
                      : "{\"users\":{\"@alice:a\":100,\"@bob:b\":50}}", "public");
    const char *c = v12 ? "" : "$C";
    char auth[128];
    snprintf(auth, sizeof(auth), "%s $P1 $J", c);
    E(&d, "$JE", "m.room.member", "@eve:e", "@eve:e", "{\"membership\":\"join\"}", 6, auth, "$JB");
    snprintf(auth, sizeof(auth), "%s $P1 $JA", c);
    E(&d, "$P2", "m.room.power_levels", "@alice:a", "",
      v12 ? "{\"users\":{\"@bob:b\":0}}" : "{\"users\":{\"@alice:a\":100,\"@bob:b\":0}}", 20, auth,
      "$JE");
    snprintf(auth, sizeof(auth), "%s $P1 $JB $JE", c);
    E(&d, "$BAN", "m.room.member", "@bob:b", "@eve:e", "{\"membership\":\"ban\"}", 10, auth, "$JE");

    const char *cr = create_id(&d);
    char s1[128], s2[128];
    snprintf(s1, sizeof(s1), "%s $JA $P2 $J $JB $JE", cr);
    snprintf(s2, sizeof(s2), "%s $JA $P1 $J $JB $BAN", cr);
    json_t *r = resolve2(&d, S(&d, s1), S(&d, s2));
    assert_string_equal(at(r, "m.room.power_levels", ""), "$P2");
    assert_string_equal(at(r, "m.room.member", "@eve:e"), "$JE");
    assert_string_equal(at(r, "m.room.create", ""), cr);
    json_decref(r);
    json_decref(d.events);
}

static void test_ban_vs_power_change_v11(void **state)
{
    (void)state;
    ban_vs_pl("11");
}

static void test_ban_vs_power_change_v10(void **state)
{
    (void)state;
    ban_vs_pl("10");
}

static void test_ban_vs_power_change_v12(void **state)
{
    (void)state;
    ban_vs_pl("12");
}

/* Without the demotion, the ban wins over the join. */
static void test_ban_stands(void **state)
{
    (void)state;
    dag_t d;
    dag_init(&d, "11");
    base_room(&d, "{\"users\":{\"@alice:a\":100,\"@bob:b\":50}}", "public");
    E(&d, "$JE", "m.room.member", "@eve:e", "@eve:e", "{\"membership\":\"join\"}", 6,
      "$C $P1 $J", "$JB");
    E(&d, "$BAN", "m.room.member", "@bob:b", "@eve:e", "{\"membership\":\"ban\"}", 10,
      "$C $P1 $JB $JE", "$JE");
    E(&d, "$M", "m.room.message", "@eve:e", NULL, "{}", 11, "$C $P1 $JE", "$JE");
    json_t *r = resolve2(&d, S(&d, "$C $JA $P1 $J $JB $JE"), S(&d, "$C $JA $P1 $J $JB $BAN"));
    assert_string_equal(at(r, "m.room.member", "@eve:e"), "$BAN");
    json_decref(r);
    json_decref(d.events);
}

/* Two concurrent topics: bob's cites the old power levels, alice's cites
 * newer ones; alice's sorts later in the mainline and wins although its
 * timestamp is older. */
static void topics(const char *ver)
{
    dag_t d;
    dag_init(&d, ver);
    int v12 = d.rv->room_id_is_create_hash;
    const char *c = v12 ? "" : "$C";
    char auth[128];
    base_room(&d, v12 ? "{\"users\":{\"@bob:b\":50}}"
                      : "{\"users\":{\"@alice:a\":100,\"@bob:b\":50}}", "public");
    snprintf(auth, sizeof(auth), "%s $P1 $JB", c);
    E(&d, "$T1", "m.room.topic", "@bob:b", "", "{\"topic\":\"bob\"}", 30, auth, "$JB");
    snprintf(auth, sizeof(auth), "%s $P1 $JA", c);
    E(&d, "$P2", "m.room.power_levels", "@alice:a", "",
      v12 ? "{\"users\":{\"@bob:b\":50,\"@carol:c\":10}}"
          : "{\"users\":{\"@alice:a\":100,\"@bob:b\":50,\"@carol:c\":10}}", 8, auth, "$JB");
    snprintf(auth, sizeof(auth), "%s $P2 $JA", c);
    E(&d, "$T2", "m.room.topic", "@alice:a", "", "{\"topic\":\"alice\"}", 9, auth, "$P2");
    /* a third topic on the same PL as bob's, later: ts decides between them */
    const char *cr = create_id(&d);
    char s1[128], s2[128];
    snprintf(s1, sizeof(s1), "%s $JA $P1 $J $JB $T1", cr);
    snprintf(s2, sizeof(s2), "%s $JA $P2 $J $JB $T2", cr);
    json_t *r = resolve2(&d, S(&d, s1), S(&d, s2));
    assert_string_equal(at(r, "m.room.power_levels", ""), "$P2");
    assert_string_equal(at(r, "m.room.topic", ""), "$T2");
    json_decref(r);
    json_decref(d.events);
}

static void test_topics_mainline_v11(void **state)
{
    (void)state;
    topics("11");
}

static void test_topics_mainline_v12(void **state)
{
    (void)state;
    topics("12");
}

/* Same power levels on both sides: the later topic wins; equal timestamps
 * fall back to the event ID. */
static void test_topics_timestamp(void **state)
{
    (void)state;
    dag_t d;
    dag_init(&d, "11");
    base_room(&d, "{\"users\":{\"@alice:a\":100,\"@bob:b\":50}}", "public");
    E(&d, "$TB", "m.room.topic", "@bob:b", "", "{\"topic\":\"b\"}", 40, "$C $P1 $JB", "$JB");
    E(&d, "$TA", "m.room.topic", "@alice:a", "", "{\"topic\":\"a\"}", 30, "$C $P1 $JA", "$JB");
    json_t *r = resolve2(&d, S(&d, "$C $JA $P1 $J $JB $TB"), S(&d, "$C $JA $P1 $J $JB $TA"));
    assert_string_equal(at(r, "m.room.topic", ""), "$TB");
    json_decref(r);

    E(&d, "$Tz", "m.room.topic", "@bob:b", "", "{\"topic\":\"z\"}", 50, "$C $P1 $JB", "$JB");
    E(&d, "$Ty", "m.room.topic", "@alice:a", "", "{\"topic\":\"y\"}", 50, "$C $P1 $JA", "$JB");
    r = resolve2(&d, S(&d, "$C $JA $P1 $J $JB $Tz"), S(&d, "$C $JA $P1 $J $JB $Ty"));
    assert_string_equal(at(r, "m.room.topic", ""), "$Tz"); /* "$Ty" < "$Tz": Tz applied last */
    json_decref(r);
    json_decref(d.events);
}

/* Alice makes the room invite-only while eve joins through the old public
 * rule: the join rule change is a power event and is applied first, so
 * eve's join fails against it. */
static void join_rule_flip(const char *ver)
{
    dag_t d;
    dag_init(&d, ver);
    int v12 = d.rv->room_id_is_create_hash;
    const char *c = v12 ? "" : "$C";
    char auth[128];
    base_room(&d, v12 ? "{}" : "{\"users\":{\"@alice:a\":100}}", "public");
    snprintf(auth, sizeof(auth), "%s $P1 $JA", c);
    E(&d, "$J2", "m.room.join_rules", "@alice:a", "", "{\"join_rule\":\"invite\"}", 50, auth,
      "$JB");
    snprintf(auth, sizeof(auth), "%s $P1 $J", c);
    E(&d, "$JE", "m.room.member", "@eve:e", "@eve:e", "{\"membership\":\"join\"}", 60, auth,
      "$JB");
    const char *cr = create_id(&d);
    char s1[128], s2[128];
    snprintf(s1, sizeof(s1), "%s $JA $P1 $J2 $JB", cr);
    snprintf(s2, sizeof(s2), "%s $JA $P1 $J $JB $JE", cr);
    json_t *r = resolve2(&d, S(&d, s1), S(&d, s2));
    assert_string_equal(at(r, "m.room.join_rules", ""), "$J2");
    assert_null(at(r, "m.room.member", "@eve:e"));
    assert_string_equal(at(r, "m.room.member", "@bob:b"), "$JB");
    json_decref(r);
    json_decref(d.events);
}

static void test_join_rule_flip_v11(void **state)
{
    (void)state;
    join_rule_flip("11");
}

static void test_join_rule_flip_v12(void **state)
{
    (void)state;
    join_rule_flip("12");
}

/* v12: a creator cannot be banned even by a 100 user, whatever the order. */
static void test_v12_creator_not_banned(void **state)
{
    (void)state;
    dag_t d;
    dag_init(&d, "12");
    base_room(&d, "{\"users\":{\"@bob:b\":100}}", "public");
    E(&d, "$BAN", "m.room.member", "@bob:b", "@alice:a", "{\"membership\":\"ban\"}", 10,
      "$P1 $JB $JA", "$JB");
    E(&d, "$T", "m.room.topic", "@alice:a", "", "{\"topic\":\"t\"}", 11, "$P1 $JA", "$JB");
    json_t *r = resolve2(&d, S(&d, "$CREATE $JA $P1 $J $JB $T"),
                         S(&d, "$CREATE $JA $P1 $J $JB $BAN"));
    assert_string_equal(at(r, "m.room.member", "@alice:a"), "$JA");
    assert_string_equal(at(r, "m.room.topic", ""), "$T");
    json_decref(r);
    json_decref(d.events);
}

/* Bob changes the join rules and, concurrently, leaves; his leave is
 * unconflicted.  v2 replays the power events on top of the unconflicted
 * state, where bob has left, so his join-rule change fails; v2.1 starts
 * from the empty state and uses the change's own auth events, where bob is
 * joined, so it stands. */
static void empty_start(const char *ver, const char *want_jr)
{
    dag_t d;
    dag_init(&d, ver);
    int v12 = d.rv->room_id_is_create_hash;
    const char *c = v12 ? "" : "$C";
    char auth[128];
    base_room(&d, v12 ? "{\"users\":{\"@bob:b\":100}}"
                      : "{\"users\":{\"@alice:a\":100,\"@bob:b\":100}}", "public");
    snprintf(auth, sizeof(auth), "%s $P1 $JB", c);
    E(&d, "$J2", "m.room.join_rules", "@bob:b", "", "{\"join_rule\":\"invite\"}", 10, auth,
      "$JB");
    E(&d, "$LB", "m.room.member", "@bob:b", "@bob:b", "{\"membership\":\"leave\"}", 11, auth,
      "$JB");
    const char *cr = create_id(&d);
    char s1[128], s2[128];
    snprintf(s1, sizeof(s1), "%s $JA $P1 $J2 $LB", cr);
    snprintf(s2, sizeof(s2), "%s $JA $P1 $J $LB", cr);
    json_t *r = resolve2(&d, S(&d, s1), S(&d, s2));
    assert_string_equal(at(r, "m.room.join_rules", ""), want_jr);
    assert_string_equal(at(r, "m.room.member", "@bob:b"), "$LB");
    json_decref(r);
    json_decref(d.events);
}

static void test_v2_starts_from_unconflicted(void **state)
{
    (void)state;
    empty_start("11", "$J");
}

static void test_v21_starts_from_empty(void **state)
{
    (void)state;
    empty_start("12", "$J2");
}

/* Three state sets at once, and a key missing from one set is conflicted. */
static void test_three_sets(void **state)
{
    (void)state;
    dag_t d;
    dag_init(&d, "11");
    base_room(&d, "{\"users\":{\"@alice:a\":100,\"@bob:b\":50}}", "public");
    E(&d, "$TA", "m.room.topic", "@alice:a", "", "{\"topic\":\"a\"}", 30, "$C $P1 $JA", "$JB");
    E(&d, "$JC", "m.room.member", "@carol:c", "@carol:c", "{\"membership\":\"join\"}", 31,
      "$C $P1 $J", "$JB");
    json_t *a = S(&d, "$C $JA $P1 $J $JB");
    json_t *b = S(&d, "$C $JA $P1 $J $JB $TA");
    json_t *c = S(&d, "$C $JA $P1 $J $JB $JC");
    const json_t *sets[3] = { a, b, c };
    json_t *out = NULL;
    assert_int_equal(hs_stateres(d.rv, sets, 3, fetch, &d, &out, NULL, 0), 0);
    assert_string_equal(at(out, "m.room.topic", ""), "$TA");
    assert_string_equal(at(out, "m.room.member", "@carol:c"), "$JC");
    assert_int_equal(json_object_size(out), 7);
    json_decref(out);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d.events);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_conflict),
        cmocka_unit_test(test_missing_event),
        cmocka_unit_test(test_ban_vs_power_change_v10),
        cmocka_unit_test(test_ban_vs_power_change_v11),
        cmocka_unit_test(test_ban_vs_power_change_v12),
        cmocka_unit_test(test_ban_stands),
        cmocka_unit_test(test_topics_mainline_v11),
        cmocka_unit_test(test_topics_mainline_v12),
        cmocka_unit_test(test_topics_timestamp),
        cmocka_unit_test(test_join_rule_flip_v11),
        cmocka_unit_test(test_join_rule_flip_v12),
        cmocka_unit_test(test_v12_creator_not_banned),
        cmocka_unit_test(test_v2_starts_from_unconflicted),
        cmocka_unit_test(test_v21_starts_from_empty),
        cmocka_unit_test(test_three_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
