/*
 * test_events.c: unit tests of the homeserver event library (events/):
 * room versions, content/reference hashes and event IDs (spec appendix
 * "Cryptographic Test Vectors"), redaction per version and event type,
 * auth events selection, and the authorization rules of v10, v11 and v12;
 * per-version cases for v1..v9 (event-ID formats, (id, hash) pairs,
 * redaction and auth-rule differences, state resolution v1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "events/events.h"
#include "state/stateres.h"

/* ---------------------------------------------------------------- fixtures */

static mx_signing_key_t test_key;   /* the spec's test key, "domain" ed25519:1 */
static char test_pk_b64[64];

static int setup_key(void **state)
{
    (void)state;
    const char *seed_b64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
    unsigned char *seed = NULL;
    size_t n = 0;
    if (sodium_init() < 0)
        return -1;
    if (mx_b64_decode(seed_b64, strlen(seed_b64), &seed, &n) != 0 || n != 32)
        return -1;
    crypto_sign_seed_keypair(test_key.pk, test_key.sk, seed);
    free(seed);
    strcpy(test_key.key_id, "ed25519:1");
    char *pk = mx_b64_encode(test_key.pk, 32, 0);
    strcpy(test_pk_b64, pk);
    free(pk);
    return 0;
}

static json_t *J(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    if (!v)
        fail_msg("bad test JSON: %s: %s", err.text, text);
    return v;
}

static const char *sget(const json_t *o, const char *path1, const char *path2)
{
    const json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_string_value(v);
}

/* --------------------------------------------------------- room versions */

static void test_room_versions(void **state)
{
    (void)state;
    const hs_room_version_t *v10 = hs_room_version_get("10");
    const hs_room_version_t *v11 = hs_room_version_get("11");
    const hs_room_version_t *v12 = hs_room_version_get("12");
    assert_non_null(v10);
    assert_non_null(v11);
    assert_non_null(v12);
    assert_int_equal(v10->redaction, HS_REDACT_V9);
    assert_int_equal(v11->redaction, HS_REDACT_V11);
    assert_false(v10->implicit_creator);
    assert_true(v11->implicit_creator);
    assert_true(v11->redacts_in_content);
    assert_true(v12->room_id_is_create_hash);
    assert_false(v11->room_id_is_create_hash);
    assert_true(v11->create_in_auth_events);
    assert_false(v12->create_in_auth_events);
    assert_true(v12->creators_infinite_power);
    assert_int_equal(v11->stateres, HS_STATERES_V2);
    assert_int_equal(v12->stateres, HS_STATERES_V21);
    assert_non_null(hs_room_version_get("9"));
    assert_null(hs_room_version_get("13"));
    assert_null(hs_room_version_get("0"));
    assert_null(hs_room_version_get("org.matrix.hydra.11"));
    assert_true(hs_room_version_known("1"));
    assert_true(hs_room_version_known("9"));
    assert_false(hs_room_version_known("13"));
    size_t n;
    const hs_room_version_t *const *all = hs_room_versions(&n);
    assert_int_equal(n, 12);
    assert_string_equal(all[0]->id, "1");
    assert_string_equal(all[11]->id, "12");
    for (size_t i = 0; i < n; i++) {
        const hs_room_version_t *v = all[i];
        int num = atoi(v->id);
        assert_true(v->supported);
        assert_int_equal(v->event_format,
                         num <= 2 ? HS_EVFMT_V1 : num == 3 ? HS_EVFMT_V3 : HS_EVFMT_V4);
        assert_int_equal(v->stateres, num == 1 ? HS_STATERES_V1
                                      : num == 12 ? HS_STATERES_V21 : HS_STATERES_V2);
        assert_int_equal(v->aliases_rule, num <= 5);
        assert_int_equal(v->redaction_rule, num <= 2);
        assert_int_equal(v->strict_canonical_json, num >= 6);
        assert_int_equal(v->notifications_pl, num >= 6);
        assert_int_equal(v->key_validity, num >= 5);
        assert_int_equal(v->knock, num >= 7);
        assert_int_equal(v->restricted, num >= 8);
        assert_int_equal(v->knock_restricted, num >= 10);
        assert_int_equal(v->int_power_levels, num >= 10);
        assert_int_equal(v->implicit_creator, num >= 11);
        assert_int_equal(v->create_in_auth_events, num <= 11);
    }
    assert_int_equal(hs_room_version_get("5")->redaction, HS_REDACT_V1);
    assert_int_equal(hs_room_version_get("7")->redaction, HS_REDACT_V6);
    assert_int_equal(hs_room_version_get("8")->redaction, HS_REDACT_V8);
    assert_int_equal(hs_room_version_get("9")->redaction, HS_REDACT_V9);
}

/* ---------------------------------------------------- hashes and signing */

static void test_sign_json_vectors(void **state)
{
    (void)state;
    json_t *o = J("{}");
    assert_int_equal(mx_json_sign(o, "domain", &test_key), 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(o, "signatures"), "domain"),
                            "ed25519:1")),
                        "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ");
    json_decref(o);
}

static const char *minimal_event =
    "{\"room_id\":\"!x:domain\",\"sender\":\"@a:domain\",\"origin\":\"domain\","
    "\"origin_server_ts\":1000000,\"signatures\":{},\"hashes\":{},\"type\":\"X\","
    "\"content\":{},\"prev_events\":[],\"auth_events\":[],\"depth\":3,"
    "\"unsigned\":{\"age_ts\":1000000}}";

static void test_event_signing_vector_minimal(void **state)
{
    (void)state;
    const hs_room_version_t *rv = hs_room_version_get("10");
    json_t *ev = J(minimal_event);
    char *id = NULL;
    assert_int_equal(hs_event_finish(rv, ev, "domain", &test_key, &id), 0);
    assert_string_equal(sget(ev, "hashes", "sha256"), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
    const json_t *sig = json_object_get(json_object_get(ev, "signatures"), "domain");
    assert_string_equal(json_string_value(json_object_get(sig, "ed25519:1")),
                        "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg");
    /* unsigned survives untouched */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "unsigned"), "age_ts")),
                     1000000);
    /* reference-hash event ID (v4+ format) */
    assert_non_null(id);
    assert_string_equal(id, "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc");
    /* the ID hs_event_finish derives from its signing bytes is the one
     * computed from the finished event */
    char *id2 = hs_event_id(rv, ev);
    assert_string_equal(id, id2);
    free(id2);
    free(id);
    /* the hash alone */
    unsigned char h[32];
    assert_int_equal(hs_event_content_hash(ev, h), 0);
    char *b = mx_b64_encode(h, 32, 0);
    assert_string_equal(b, "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
    free(b);
    /* and it verifies */
    assert_int_equal(hs_event_verify_hashes_and_sig(rv, ev, "domain", "ed25519:1", test_pk_b64), 0);
    json_decref(ev);
}

static void test_event_signing_vector_message(void **state)
{
    (void)state;
    const hs_room_version_t *rv = hs_room_version_get("10");
    json_t *ev = J("{\"content\":{\"body\":\"Here is the message content\"},"
                   "\"event_id\":\"$0:domain\",\"origin\":\"domain\",\"origin_server_ts\":1000000,"
                   "\"type\":\"m.room.message\",\"room_id\":\"!r:domain\",\"sender\":\"@u:domain\","
                   "\"signatures\":{},\"unsigned\":{\"age_ts\":1000000}}");
    assert_int_equal(hs_event_finish(rv, ev, "domain", &test_key, NULL), 0);
    assert_string_equal(sget(ev, "hashes", "sha256"), "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(ev, "signatures"), "domain"), "ed25519:1")),
                        "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA");
    assert_int_equal(hs_event_verify_hashes_and_sig(rv, ev, "domain", "ed25519:1", test_pk_b64), 0);

    /* tampered content: signature (over the redacted form) still good, hash not */
    json_t *t = json_deep_copy(ev);
    json_object_set_new(json_object_get(t, "content"), "body", json_string("evil"));
    assert_int_equal(hs_event_verify_hashes_and_sig(rv, t, "domain", "ed25519:1", test_pk_b64),
                     HS_EBADHASH);
    json_decref(t);
    /* the redacted copy also verifies its signature, but not its hash */
    json_t *red = hs_event_redact(rv, ev);
    assert_int_equal(hs_event_verify_hashes_and_sig(rv, red, "domain", "ed25519:1", test_pk_b64),
                     HS_EBADHASH);
    json_decref(red);
    /* tampered essential field: signature fails */
    t = json_deep_copy(ev);
    json_object_set_new(t, "sender", json_string("@mallory:domain"));
    assert_int_equal(hs_event_verify_hashes_and_sig(rv, t, "domain", "ed25519:1", test_pk_b64),
                     HS_EBADSIG);
    /* missing signature from another server */
    assert_int_equal(hs_event_verify_hashes_and_sig(rv, ev, "other", "ed25519:1", test_pk_b64),
                     HS_EBADSIG);
    json_decref(t);
    json_decref(ev);
}

static void test_event_signing_v11(void **state)
{
    (void)state;
    /* v11 redaction drops `origin` before signing; same content hash. */
    const hs_room_version_t *rv = hs_room_version_get("11");
    json_t *ev = J(minimal_event);
    char *id = NULL;
    assert_int_equal(hs_event_finish(rv, ev, "domain", &test_key, &id), 0);
    assert_string_equal(sget(ev, "hashes", "sha256"), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(ev, "signatures"), "domain"), "ed25519:1")),
                        "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw");
    assert_string_equal(id, "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I");
    /* The ID is invariant under redaction and ignores unsigned. */
    json_t *red = hs_event_redact(rv, ev);
    char *id2 = hs_event_id(rv, red);
    assert_string_equal(id, id2);
    free(id2);
    json_decref(red);
    free(id);
    json_decref(ev);
}

static void test_room_id_v12(void **state)
{
    (void)state;
    const hs_room_version_t *rv = hs_room_version_get("12");
    json_t *create = J("{\"type\":\"m.room.create\",\"state_key\":\"\",\"sender\":\"@alice:a\","
                       "\"content\":{\"room_version\":\"12\"},\"prev_events\":[],"
                       "\"auth_events\":[],\"depth\":1,\"origin_server_ts\":5}");
    char *eid = NULL;
    assert_int_equal(hs_event_finish(rv, create, "a", &test_key, &eid), 0);
    char *rid = hs_room_id_for_create(rv, create);
    assert_non_null(rid);
    assert_int_equal(strlen(rid), 44);
    assert_int_equal(rid[0], '!');
    assert_string_equal(rid + 1, eid + 1);
    assert_null(strchr(rid, '+'));
    assert_null(strchr(rid, '/'));
    assert_null(hs_room_id_for_create(hs_room_version_get("11"), create));
    free(rid);
    free(eid);
    json_decref(create);
}

/* ------------------------------------------------------------- redaction */

static json_t *redact(const char *ver, const char *text)
{
    json_t *ev = J(text);
    json_t *r = hs_event_redact(hs_room_version_get(ver), ev);
    json_decref(ev);
    assert_non_null(r);
    return r;
}

static void assert_json_eq(json_t *got, const char *want_text)
{
    json_t *want = J(want_text);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
        fail_msg("got %s\nwant %s", g, want_text);
    }
    json_decref(want);
}

static void test_redact_top_level(void **state)
{
    (void)state;
    const char *ev = "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"sender\":\"@a:x\","
                     "\"content\":{\"body\":\"hi\"},\"origin\":\"x\",\"membership\":\"join\","
                     "\"prev_state\":[],\"unsigned\":{\"age\":1},\"hashes\":{\"sha256\":\"h\"},"
                     "\"signatures\":{\"x\":{}},\"depth\":2,\"prev_events\":[],\"auth_events\":[],"
                     "\"origin_server_ts\":3,\"extra\":1,\"redacts\":\"$e\"}";
    json_t *r = redact("10", ev);
    assert_json_eq(r, "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"sender\":\"@a:x\","
                      "\"content\":{},\"origin\":\"x\",\"membership\":\"join\",\"prev_state\":[],"
                      "\"hashes\":{\"sha256\":\"h\"},\"signatures\":{\"x\":{}},\"depth\":2,"
                      "\"prev_events\":[],\"auth_events\":[],\"origin_server_ts\":3}");
    json_decref(r);
    r = redact("11", ev);
    assert_json_eq(r, "{\"type\":\"m.room.message\",\"room_id\":\"!r:x\",\"sender\":\"@a:x\","
                      "\"content\":{},\"hashes\":{\"sha256\":\"h\"},\"signatures\":{\"x\":{}},"
                      "\"depth\":2,\"prev_events\":[],\"auth_events\":[],\"origin_server_ts\":3}");
    json_decref(r);
}

static void test_redact_member(void **state)
{
    (void)state;
    const char *ev = "{\"type\":\"m.room.member\",\"state_key\":\"@b:x\",\"sender\":\"@a:x\","
                     "\"content\":{\"membership\":\"invite\",\"displayname\":\"B\","
                     "\"join_authorised_via_users_server\":\"@a:x\","
                     "\"third_party_invite\":{\"display_name\":\"b@e\",\"signed\":{\"mxid\":\"@b:x\","
                     "\"token\":\"t\"}}}}";
    json_t *r = redact("10", ev);
    assert_json_eq(json_object_get(r, "content"),
                   "{\"membership\":\"invite\",\"join_authorised_via_users_server\":\"@a:x\"}");
    assert_string_equal(sget(r, "state_key", NULL), "@b:x");
    json_decref(r);
    r = redact("11", ev);
    assert_json_eq(json_object_get(r, "content"),
                   "{\"membership\":\"invite\",\"join_authorised_via_users_server\":\"@a:x\","
                   "\"third_party_invite\":{\"signed\":{\"mxid\":\"@b:x\",\"token\":\"t\"}}}");
    json_decref(r);
    r = redact("12", ev);
    assert_non_null(json_object_get(json_object_get(r, "content"), "third_party_invite"));
    json_decref(r);
}

static void test_redact_create(void **state)
{
    (void)state;
    const char *ev = "{\"type\":\"m.room.create\",\"state_key\":\"\",\"sender\":\"@a:x\","
                     "\"content\":{\"creator\":\"@a:x\",\"room_version\":\"10\",\"m.federate\":false,"
                     "\"predecessor\":{\"room_id\":\"!o:x\"}}}";
    json_t *r = redact("10", ev);
    assert_json_eq(json_object_get(r, "content"), "{\"creator\":\"@a:x\"}");
    json_decref(r);
    r = redact("11", ev);
    assert_json_eq(json_object_get(r, "content"),
                   "{\"creator\":\"@a:x\",\"room_version\":\"10\",\"m.federate\":false,"
                   "\"predecessor\":{\"room_id\":\"!o:x\"}}");
    json_decref(r);
}

static void test_redact_state_types(void **state)
{
    (void)state;
    const char *jr = "{\"type\":\"m.room.join_rules\",\"state_key\":\"\",\"content\":"
                     "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\","
                     "\"room_id\":\"!s:x\"}],\"x\":1}}";
    json_t *r = redact("10", jr);
    assert_json_eq(json_object_get(r, "content"),
                   "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\","
                   "\"room_id\":\"!s:x\"}]}");
    json_decref(r);

    const char *pl = "{\"type\":\"m.room.power_levels\",\"state_key\":\"\",\"content\":{\"ban\":50,"
                     "\"events\":{\"m.room.name\":50},\"events_default\":0,\"invite\":0,\"kick\":50,"
                     "\"redact\":50,\"state_default\":50,\"users\":{\"@a:x\":100},\"users_default\":0,"
                     "\"notifications\":{\"room\":50},\"historical\":100}}";
    r = redact("10", pl);
    assert_json_eq(json_object_get(r, "content"),
                   "{\"ban\":50,\"events\":{\"m.room.name\":50},\"events_default\":0,\"kick\":50,"
                   "\"redact\":50,\"state_default\":50,\"users\":{\"@a:x\":100},\"users_default\":0}");
    json_decref(r);
    r = redact("11", pl);
    assert_json_eq(json_object_get(r, "content"),
                   "{\"ban\":50,\"events\":{\"m.room.name\":50},\"events_default\":0,\"invite\":0,"
                   "\"kick\":50,\"redact\":50,\"state_default\":50,\"users\":{\"@a:x\":100},"
                   "\"users_default\":0}");
    json_decref(r);

    const char *hv = "{\"type\":\"m.room.history_visibility\",\"state_key\":\"\",\"content\":"
                     "{\"history_visibility\":\"shared\",\"x\":1}}";
    r = redact("12", hv);
    assert_json_eq(json_object_get(r, "content"), "{\"history_visibility\":\"shared\"}");
    json_decref(r);

    const char *topic = "{\"type\":\"m.room.topic\",\"state_key\":\"\",\"content\":{\"topic\":\"t\"}}";
    r = redact("11", topic);
    assert_json_eq(r, "{\"type\":\"m.room.topic\",\"state_key\":\"\",\"content\":{}}");
    json_decref(r);

    const char *al = "{\"type\":\"m.room.aliases\",\"state_key\":\"x\",\"content\":{\"aliases\":[\"#a:x\"]}}";
    r = redact("10", al);
    assert_json_eq(json_object_get(r, "content"), "{}");
    json_decref(r);
}

static void test_redact_redaction(void **state)
{
    (void)state;
    const char *ev = "{\"type\":\"m.room.redaction\",\"redacts\":\"$old\",\"content\":"
                     "{\"redacts\":\"$e\",\"reason\":\"spam\"}}";
    json_t *r = redact("10", ev);
    assert_json_eq(r, "{\"type\":\"m.room.redaction\",\"content\":{}}");
    json_decref(r);
    r = redact("11", ev);
    assert_json_eq(r, "{\"type\":\"m.room.redaction\",\"content\":{\"redacts\":\"$e\"}}");
    json_decref(r);
}

/* ------------------------------------------------------- a little room ---
 * Events are built without signatures (auth rules don't verify them) and
 * the state is a JSON object for hs_state_lookup_json. */

typedef struct room {
    const hs_room_version_t *rv;
    char room_id[128];
    json_t *state;   /* "type\x1fsk" -> event */
    json_t *create;  /* borrowed from state */
    char create_id[128];
    int64_t ts;
} room_t;

static json_t *mkev(room_t *r, const char *type, const char *sender, const char *sk,
                    const char *content)
{
    json_t *ev = json_pack("{s:s,s:s,s:o,s:[],s:[],s:i,s:I}", "type", type, "sender", sender,
                           "content", J(content), "prev_events", "auth_events", "depth", 5,
                           "origin_server_ts", (json_int_t)r->ts++);
    if (r->rv && r->rv->event_format == HS_EVFMT_V1) {
        /* v1/v2: the ID is a field, "$opaque:domain" */
        char id[96];
        snprintf(id, sizeof(id), "$e%lld:%s", (long long)r->ts, hs_user_domain(sender));
        json_object_set_new(ev, "event_id", json_string(id));
    }
    if (r->room_id[0])
        json_object_set_new(ev, "room_id", json_string(r->room_id));
    if (sk)
        json_object_set_new(ev, "state_key", json_string(sk));
    return ev;
}

static void put(room_t *r, json_t *ev /* stolen */)
{
    char *k = hs_state_key_join(hs_ev_type(ev), hs_ev_state_key(ev));
    json_object_set_new(r->state, k, ev);
    free(k);
}

static void put_member(room_t *r, const char *user, const char *membership)
{
    char c[128];
    snprintf(c, sizeof(c), "{\"membership\":\"%s\"}", membership);
    put(r, mkev(r, "m.room.member", user, user, c));
}

static int check(room_t *r, json_t *ev /* stolen */, char *why)
{
    char buf[256];
    int rc = hs_auth_check(r->rv, ev, hs_state_lookup_json, r->state, why ? why : buf, 256);
    json_decref(ev);
    return rc;
}

#define ALLOW(r, ev) do { char w_[256]; int rc_ = check(r, ev, w_); \
    if (rc_ != 0) fail_msg("expected allow, got %d: %s", rc_, w_); } while (0)
#define DENY(r, ev) do { char w_[256]; int rc_ = check(r, ev, w_); \
    if (rc_ != HS_EAUTH) fail_msg("expected reject, got %d", rc_); \
    assert_true(w_[0] != '\0'); } while (0)

/* alice creator (100), mod 50, bob 0 joined; carol outside; eve banned.
 * v12: alice (sender) and @zed:z (additional) are creators. */
static void room_init(room_t *r, const char *ver, const char *join_rule)
{
    memset(r, 0, sizeof(*r));
    r->rv = hs_room_version_get(ver);
    r->ts = 1000;
    r->state = json_object();
    json_t *create;
    if (r->rv->room_id_is_create_hash) {
        create = mkev(r, "m.room.create", "@alice:a", "",
                      "{\"room_version\":\"12\",\"additional_creators\":[\"@zed:z\"]}");
        char *rid = hs_room_id_for_create(r->rv, create);
        snprintf(r->room_id, sizeof(r->room_id), "%s", rid);
        free(rid);
    } else {
        snprintf(r->room_id, sizeof(r->room_id), "!room:a");
        create = mkev(r, "m.room.create", "@alice:a", "",
                      r->rv->implicit_creator ? "{\"room_version\":\"11\"}"
                                              : "{\"room_version\":\"10\",\"creator\":\"@alice:a\"}");
        json_object_set_new(create, "room_id", json_string(r->room_id));
    }
    char *cid = hs_event_id(r->rv, create);
    snprintf(r->create_id, sizeof(r->create_id), "%s", cid);
    free(cid);
    r->create = create;
    put(r, create);
    put_member(r, "@alice:a", "join");
    if (r->rv->creators_infinite_power)
        put(r, mkev(r, "m.room.power_levels", "@alice:a", "",
                    "{\"users\":{\"@mod:m\":50,\"@bob:b\":0},\"users_default\":0,\"ban\":50,"
                    "\"kick\":50,\"invite\":0,\"state_default\":50,\"events_default\":0,"
                    "\"events\":{\"m.room.name\":50}}"));
    else
        put(r, mkev(r, "m.room.power_levels", "@alice:a", "",
                    "{\"users\":{\"@alice:a\":100,\"@mod:m\":50,\"@bob:b\":0},\"users_default\":0,"
                    "\"ban\":50,\"kick\":50,\"invite\":0,\"state_default\":50,\"events_default\":0,"
                    "\"events\":{\"m.room.name\":50}}"));
    char jr[128];
    snprintf(jr, sizeof(jr), "{\"join_rule\":\"%s\"}", join_rule);
    put(r, mkev(r, "m.room.join_rules", "@alice:a", "", jr));
    put_member(r, "@mod:m", "join");
    put_member(r, "@bob:b", "join");
    json_t *ban = mkev(r, "m.room.member", "@alice:a", "@eve:e", "{\"membership\":\"ban\"}");
    put(r, ban);
}

static void room_free(room_t *r)
{
    json_decref(r->state);
}

static json_t *member(room_t *r, const char *sender, const char *target, const char *membership)
{
    char c[128];
    snprintf(c, sizeof(c), "{\"membership\":\"%s\"}", membership);
    return mkev(r, "m.room.member", sender, target, c);
}

static json_t *set_pl(room_t *r, const char *sender, const char *content)
{
    return mkev(r, "m.room.power_levels", sender, "", content);
}

/* ---------------------------------------------------------- auth: create */

static void test_auth_create(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "10", "public");
    /* v10 create without creator */
    DENY(&r, json_pack("{s:s,s:s,s:s,s:s,s:{},s:[]}", "type", "m.room.create", "state_key", "",
                       "sender", "@alice:a", "room_id", "!n:a", "content", "prev_events"));
    /* room_id domain must match sender */
    DENY(&r, json_pack("{s:s,s:s,s:s,s:s,s:{s:s},s:[]}", "type", "m.room.create", "state_key", "",
                       "sender", "@alice:a", "room_id", "!n:b", "content", "creator", "@alice:a",
                       "prev_events"));
    /* prev_events must be empty */
    DENY(&r, json_pack("{s:s,s:s,s:s,s:s,s:{s:s},s:[s]}", "type", "m.room.create", "state_key", "",
                       "sender", "@alice:a", "room_id", "!n:a", "content", "creator", "@alice:a",
                       "prev_events", "$p"));
    /* unknown content.room_version */
    DENY(&r, json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s},s:[]}", "type", "m.room.create", "state_key",
                       "", "sender", "@alice:a", "room_id", "!n:a", "content", "creator", "@alice:a",
                       "room_version", "99", "prev_events"));
    ALLOW(&r, json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s},s:[]}", "type", "m.room.create", "state_key",
                        "", "sender", "@alice:a", "room_id", "!n:a", "content", "creator",
                        "@alice:a", "room_version", "10", "prev_events"));
    room_free(&r);

    room_init(&r, "11", "public");
    /* v11: no creator needed */
    ALLOW(&r, json_pack("{s:s,s:s,s:s,s:s,s:{},s:[]}", "type", "m.room.create", "state_key", "",
                        "sender", "@alice:a", "room_id", "!n:a", "content", "prev_events"));
    room_free(&r);

    room_init(&r, "12", "public");
    /* v12: no room_id allowed */
    DENY(&r, json_pack("{s:s,s:s,s:s,s:s,s:{},s:[]}", "type", "m.room.create", "state_key", "",
                       "sender", "@alice:a", "room_id", "!n:a", "content", "prev_events"));
    ALLOW(&r, json_pack("{s:s,s:s,s:s,s:{s:[s]},s:[]}", "type", "m.room.create", "state_key", "",
                        "sender", "@alice:a", "content", "additional_creators", "@z:z",
                        "prev_events"));
    /* additional_creators must be valid user IDs */
    DENY(&r, json_pack("{s:s,s:s,s:s,s:{s:[s]},s:[]}", "type", "m.room.create", "state_key", "",
                       "sender", "@alice:a", "content", "additional_creators", "not-a-user",
                       "prev_events"));
    DENY(&r, json_pack("{s:s,s:s,s:s,s:{s:s},s:[]}", "type", "m.room.create", "state_key", "",
                       "sender", "@alice:a", "content", "additional_creators", "@z:z",
                       "prev_events"));
    room_free(&r);
}

/* ------------------------------------------------------ auth: membership */

static void test_auth_first_join(void **state)
{
    (void)state;
    const char *vers[] = { "10", "11", "12" };
    for (int i = 0; i < 3; i++) {
        room_t r;
        room_init(&r, vers[i], "invite");
        /* a state with only the create event */
        json_t *only = json_object();
        json_object_set(only, "m.room.create\x1f", r.create);
        json_t *j = member(&r, "@alice:a", "@alice:a", "join");
        json_array_append_new(json_object_get(j, "prev_events"), json_string(r.create_id));
        char why[256];
        assert_int_equal(hs_auth_check(r.rv, j, hs_state_lookup_json, only, why, sizeof(why)), 0);
        /* same join with another prev event: no join rule -> invite-only -> reject */
        json_array_set_new(json_object_get(j, "prev_events"), 0, json_string("$other"));
        assert_int_equal(hs_auth_check(r.rv, j, hs_state_lookup_json, only, why, sizeof(why)),
                         HS_EAUTH);
        json_decref(j);
        /* someone else cannot take the creator's first join */
        j = member(&r, "@bob:b", "@bob:b", "join");
        json_array_append_new(json_object_get(j, "prev_events"), json_string(r.create_id));
        assert_int_equal(hs_auth_check(r.rv, j, hs_state_lookup_json, only, why, sizeof(why)),
                         HS_EAUTH);
        json_decref(j);
        json_decref(only);
        room_free(&r);
    }
}

static void test_auth_join_rules(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "public");
    ALLOW(&r, member(&r, "@carol:c", "@carol:c", "join"));        /* public join */
    DENY(&r, member(&r, "@carol:c", "@dave:d", "join"));          /* join for someone else */
    DENY(&r, member(&r, "@eve:e", "@eve:e", "join"));             /* banned */
    ALLOW(&r, member(&r, "@bob:b", "@bob:b", "join"));            /* profile change */
    room_free(&r);

    room_init(&r, "11", "invite");
    DENY(&r, member(&r, "@carol:c", "@carol:c", "join"));         /* not invited */
    put_member(&r, "@carol:c", "invite");
    ALLOW(&r, member(&r, "@carol:c", "@carol:c", "join"));        /* invited */
    room_free(&r);

    room_init(&r, "11", "private");
    DENY(&r, member(&r, "@carol:c", "@carol:c", "join"));
    room_free(&r);
}

static void test_auth_invite(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "invite");
    ALLOW(&r, member(&r, "@bob:b", "@carol:c", "invite"));        /* invite level 0 */
    DENY(&r, member(&r, "@carol:c", "@dave:d", "invite"));        /* inviter not joined */
    DENY(&r, member(&r, "@bob:b", "@eve:e", "invite"));           /* target banned */
    DENY(&r, member(&r, "@bob:b", "@mod:m", "invite"));           /* target joined */
    put(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50},\"invite\":50}"));
    DENY(&r, member(&r, "@bob:b", "@carol:c", "invite"));         /* below invite level */
    ALLOW(&r, member(&r, "@mod:m", "@carol:c", "invite"));
    room_free(&r);
}

static void test_auth_leave_kick_ban(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "public");
    ALLOW(&r, member(&r, "@bob:b", "@bob:b", "leave"));           /* self leave */
    DENY(&r, member(&r, "@carol:c", "@carol:c", "leave"));        /* never joined */
    ALLOW(&r, member(&r, "@mod:m", "@bob:b", "leave"));           /* kick by mod */
    DENY(&r, member(&r, "@bob:b", "@mod:m", "leave"));            /* bob can't kick */
    DENY(&r, member(&r, "@mod:m", "@alice:a", "leave"));          /* can't kick higher */
    ALLOW(&r, member(&r, "@mod:m", "@bob:b", "ban"));             /* ban */
    DENY(&r, member(&r, "@bob:b", "@carol:c", "ban"));            /* below ban level */
    DENY(&r, member(&r, "@mod:m", "@mod:m", "ban"));              /* self-ban: not above self */
    ALLOW(&r, member(&r, "@mod:m", "@eve:e", "leave"));           /* unban with kick=ban=50 */
    /* ban above kick: unban needs the ban level too */
    put(&r, set_pl(&r, "@alice:a",
                   "{\"users\":{\"@alice:a\":100,\"@mod:m\":50},\"kick\":50,\"ban\":60}"));
    DENY(&r, member(&r, "@mod:m", "@eve:e", "leave"));
    ALLOW(&r, member(&r, "@mod:m", "@bob:b", "leave"));           /* still may kick */
    DENY(&r, member(&r, "@mod:m", "@bob:b", "ban"));
    ALLOW(&r, member(&r, "@alice:a", "@eve:e", "leave"));
    DENY(&r, member(&r, "@bob:b", "@bob:b", "dance"));            /* unknown membership */
    room_free(&r);
}

static void test_auth_knock(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "10", "knock");
    ALLOW(&r, member(&r, "@carol:c", "@carol:c", "knock"));
    DENY(&r, member(&r, "@carol:c", "@dave:d", "knock"));         /* for someone else */
    DENY(&r, member(&r, "@eve:e", "@eve:e", "knock"));            /* banned */
    DENY(&r, member(&r, "@bob:b", "@bob:b", "knock"));            /* already joined */
    DENY(&r, member(&r, "@carol:c", "@carol:c", "join"));         /* knock rule != public */
    put_member(&r, "@carol:c", "knock");
    ALLOW(&r, member(&r, "@carol:c", "@carol:c", "leave"));       /* retract knock */
    room_free(&r);

    room_init(&r, "11", "knock_restricted");
    ALLOW(&r, member(&r, "@carol:c", "@carol:c", "knock"));
    room_free(&r);

    room_init(&r, "11", "public");
    DENY(&r, member(&r, "@carol:c", "@carol:c", "knock"));
    room_free(&r);
}

static json_t *restricted_join(room_t *r, const char *user, const char *via, int signed_by_via)
{
    json_t *j = member(r, user, user, "join");
    if (via) {
        json_object_set_new(json_object_get(j, "content"), "join_authorised_via_users_server",
                            json_string(via));
        if (signed_by_via)
            json_object_set_new(j, "signatures",
                                json_pack("{s:{s:s}}", hs_user_domain(via), "ed25519:x", "sig"));
    }
    return j;
}

static void test_auth_restricted(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "restricted");
    ALLOW(&r, restricted_join(&r, "@carol:c", "@mod:m", 1));
    DENY(&r, restricted_join(&r, "@carol:c", NULL, 0));           /* no authoriser */
    DENY(&r, restricted_join(&r, "@carol:c", "@mod:m", 0));       /* authoriser didn't sign */
    DENY(&r, restricted_join(&r, "@carol:c", "@dave:d", 1));      /* authoriser not joined */
    put(&r, set_pl(&r, "@alice:a",
                   "{\"users\":{\"@alice:a\":100,\"@mod:m\":50},\"invite\":60}"));
    DENY(&r, restricted_join(&r, "@carol:c", "@mod:m", 1));       /* authoriser can't invite */
    put_member(&r, "@carol:c", "invite");
    ALLOW(&r, restricted_join(&r, "@carol:c", NULL, 0));          /* invited: no authoriser */
    room_free(&r);

    room_init(&r, "10", "knock_restricted");
    ALLOW(&r, restricted_join(&r, "@carol:c", "@mod:m", 1));
    room_free(&r);
}

static void test_auth_third_party_invite(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "invite");
    /* the m.room.third_party_invite event needs the invite level */
    ALLOW(&r, mkev(&r, "m.room.third_party_invite", "@bob:b", "tok", "{}"));
    DENY(&r, mkev(&r, "m.room.third_party_invite", "@carol:c", "tok", "{}"));

    char c[256];
    snprintf(c, sizeof(c), "{\"display_name\":\"c...\",\"public_key\":\"%s\"}", test_pk_b64);
    put(&r, mkev(&r, "m.room.third_party_invite", "@bob:b", "tok", c));
    json_t *signed_ = json_pack("{s:s,s:s,s:s}", "mxid", "@carol:c", "token", "tok", "sender",
                                "@bob:b");
    assert_int_equal(mx_json_sign(signed_, "id.example", &test_key), 0);
    json_t *inv = member(&r, "@bob:b", "@carol:c", "invite");
    json_object_set_new(json_object_get(inv, "content"), "third_party_invite",
                        json_pack("{s:s,s:O}", "display_name", "c...", "signed", signed_));
    json_t *bad = json_deep_copy(inv);
    json_t *wrong_sender = json_deep_copy(inv);
    ALLOW(&r, inv);
    json_object_set_new(json_object_get(json_object_get(json_object_get(bad, "content"),
                                                        "third_party_invite"), "signed"),
                        "mxid", json_string("@dave:d"));
    DENY(&r, bad);                                                /* mxid != state_key */
    json_object_set_new(wrong_sender, "sender", json_string("@mod:m"));
    DENY(&r, wrong_sender);                                       /* not the 3pid inviter */
    json_object_set_new(signed_, "mxid", json_string("@carol:c"));
    json_object_set_new(signed_, "token", json_string("tok"));
    json_object_set_new(signed_, "extra", json_string("tampered")); /* signature now wrong */
    inv = member(&r, "@bob:b", "@carol:c", "invite");
    json_object_set_new(json_object_get(inv, "content"), "third_party_invite",
                        json_pack("{s:O}", "signed", signed_));
    DENY(&r, inv);
    json_decref(signed_);
    room_free(&r);
}

/* ------------------------------------------- auth: non-member events, PL */

static void test_auth_send(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "public");
    ALLOW(&r, mkev(&r, "m.room.message", "@bob:b", NULL, "{\"body\":\"hi\"}"));
    DENY(&r, mkev(&r, "m.room.message", "@carol:c", NULL, "{\"body\":\"hi\"}")); /* non-member */
    DENY(&r, mkev(&r, "m.room.message", "@eve:e", NULL, "{\"body\":\"hi\"}"));   /* banned */
    DENY(&r, mkev(&r, "m.room.topic", "@bob:b", "", "{\"topic\":\"t\"}"));       /* state_default */
    ALLOW(&r, mkev(&r, "m.room.topic", "@mod:m", "", "{\"topic\":\"t\"}"));
    DENY(&r, mkev(&r, "m.room.name", "@bob:b", "", "{\"name\":\"n\"}"));         /* events[] */
    ALLOW(&r, mkev(&r, "m.room.redaction", "@bob:b", NULL, "{\"redacts\":\"$x\"}")); /* no redact rule */
    /* user-owned state keys */
    put(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100},\"state_default\":0}"));
    ALLOW(&r, mkev(&r, "org.example.s", "@bob:b", "@bob:b", "{}"));
    DENY(&r, mkev(&r, "org.example.s", "@bob:b", "@mod:m", "{}"));
    room_free(&r);
}

static void test_auth_federate(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "public");
    json_object_set_new(json_object_get(r.create, "content"), "m.federate", json_false());
    DENY(&r, mkev(&r, "m.room.message", "@bob:b", NULL, "{}"));
    put_member(&r, "@al2:a", "join");
    ALLOW(&r, mkev(&r, "m.room.message", "@al2:a", NULL, "{}"));
    room_free(&r);
}

static void test_auth_power_levels(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "public");
    /* mod (50) may promote bob up to 50, not above */
    ALLOW(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50,\"@bob:b\":40},"
                                   "\"users_default\":0,\"ban\":50,\"kick\":50,\"invite\":0,"
                                   "\"state_default\":50,\"events_default\":0,"
                                   "\"events\":{\"m.room.name\":50}}"));
    DENY(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50,\"@bob:b\":60},"
                                  "\"users_default\":0,\"ban\":50,\"kick\":50,\"invite\":0,"
                                  "\"state_default\":50,\"events_default\":0,"
                                  "\"events\":{\"m.room.name\":50}}"));
    /* mod may not demote alice (100 >= 50) */
    DENY(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":0,\"@mod:m\":50},"
                                  "\"ban\":50,\"kick\":50,\"state_default\":50,"
                                  "\"events\":{\"m.room.name\":50}}"));
    /* nor an equal: add carol at 50 then try to remove her */
    put(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50,\"@carol:c\":50},"
                                   "\"events\":{\"m.room.name\":50}}"));
    DENY(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50},"
                                  "\"events\":{\"m.room.name\":50}}"));
    /* mod may lower its own level */
    ALLOW(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":10,\"@carol:c\":50},"
                                   "\"events\":{\"m.room.name\":50}}"));
    /* named levels: above own -> reject; alice may */
    DENY(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50,\"@carol:c\":50},"
                                  "\"events\":{\"m.room.name\":50},\"state_default\":70}"));
    ALLOW(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50,\"@carol:c\":50},"
                                     "\"events\":{\"m.room.name\":50},\"state_default\":70}"));
    /* events map: changing an entry above own level */
    put(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50},"
                                   "\"events\":{\"m.room.tombstone\":100,\"m.room.name\":50}}"));
    DENY(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50},"
                                  "\"events\":{\"m.room.tombstone\":50,\"m.room.name\":50}}"));
    ALLOW(&r, set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50},"
                                   "\"events\":{\"m.room.tombstone\":100,\"m.room.name\":40}}"));
    /* v10+: integers only */
    DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100},\"ban\":\"50\"}"));
    DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":\"100\"}}"));
    DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100},\"events\":{\"x\":\"1\"}}"));
    DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"not-a-user\":1,\"@alice:a\":100}}"));
    room_free(&r);
}

/* ------------------------------------------------------------- auth: v12 */

static void test_auth_v12_creators(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "12", "public");
    const json_t *pl = json_object_get(r.state, "m.room.power_levels\x1f");
    assert_true(hs_user_power(r.rv, r.create, pl, "@alice:a") == HS_POWER_INFINITE);
    assert_true(hs_user_power(r.rv, r.create, pl, "@zed:z") == HS_POWER_INFINITE);
    assert_int_equal(hs_user_power(r.rv, r.create, pl, "@mod:m"), 50);
    assert_int_equal(hs_user_power(r.rv, r.create, pl, "@nobody:n"), 0);

    /* even a 100 user cannot kick or ban a creator */
    put(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@mod:m\":100}}"));
    DENY(&r, member(&r, "@mod:m", "@alice:a", "leave"));
    put_member(&r, "@zed:z", "join");
    DENY(&r, member(&r, "@mod:m", "@zed:z", "ban"));
    /* creators can kick anyone, and each other not */
    ALLOW(&r, member(&r, "@alice:a", "@mod:m", "ban"));
    ALLOW(&r, member(&r, "@zed:z", "@mod:m", "leave"));
    DENY(&r, member(&r, "@zed:z", "@alice:a", "ban"));
    /* creators may not be listed in users */
    DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100}}"));
    DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@zed:z\":100}}"));
    /* an additional creator can set anything */
    ALLOW(&r, set_pl(&r, "@zed:z", "{\"users\":{\"@mod:m\":9007199254740991}}"));
    /* the room ID must be the create event's */
    json_t *m = mkev(&r, "m.room.message", "@mod:m", NULL, "{}");
    json_object_set_new(m, "room_id", json_string("!notthecreate"));
    DENY(&r, m);
    ALLOW(&r, mkev(&r, "m.room.message", "@mod:m", NULL, "{}"));
    room_free(&r);
}

static void test_power_helpers(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "public");
    const json_t *pl = json_object_get(r.state, "m.room.power_levels\x1f");
    assert_int_equal(hs_user_power(r.rv, r.create, pl, "@alice:a"), 100);
    assert_int_equal(hs_user_power(r.rv, r.create, NULL, "@alice:a"), 100);
    assert_int_equal(hs_user_power(r.rv, r.create, NULL, "@bob:b"), 0);
    assert_int_equal(hs_event_required_power(pl, "m.room.name", 1), 50);
    assert_int_equal(hs_event_required_power(pl, "m.room.message", 0), 0);
    assert_int_equal(hs_event_required_power(NULL, "m.room.topic", 1), 50);
    assert_int_equal(hs_named_power(NULL, "kick", 50), 50);
    assert_int_equal(hs_named_power(pl, "invite", 50), 0);
    room_free(&r);

    room_init(&r, "10", "public");
    assert_int_equal(hs_user_power(r.rv, r.create, NULL, "@alice:a"), 100);
    room_free(&r);
}

/* ------------------------------------------------- auth events selection */

static const json_t *fetch_by_id(void *ud, const char *id, int *rejected)
{
    if (rejected)
        *rejected = 0;
    return json_object_get((const json_t *)ud, id);
}

static void test_select(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "11", "restricted");
    json_t *ids = hs_auth_events_select(r.rv, "m.room.message", "@bob:b", NULL, NULL,
                                        hs_state_lookup_json, r.state);
    assert_int_equal(json_array_size(ids), 3); /* create, PL, bob's member */
    assert_string_equal(json_string_value(json_array_get(ids, 0)), r.create_id);
    json_decref(ids);

    json_t *c = J("{\"membership\":\"join\",\"join_authorised_via_users_server\":\"@mod:m\"}");
    ids = hs_auth_events_select(r.rv, "m.room.member", "@carol:c", "@carol:c", c,
                                hs_state_lookup_json, r.state);
    /* create, PL, join rules, mod's member (carol has none) */
    assert_int_equal(json_array_size(ids), 4);
    json_decref(ids);
    json_decref(c);

    hs_auth_key_t keys[HS_AUTH_KEYS_MAX];
    c = J("{\"membership\":\"invite\",\"third_party_invite\":{\"signed\":{\"token\":\"tok\"}}}");
    size_t n = hs_auth_types(r.rv, "m.room.member", "@bob:b", "@carol:c", c, keys);
    assert_int_equal(n, 6);
    assert_string_equal(keys[5].type, "m.room.third_party_invite");
    assert_string_equal(keys[5].state_key, "tok");
    json_decref(c);
    assert_int_equal(hs_auth_types(r.rv, "m.room.create", "@a:a", "", NULL, keys), 0);
    room_free(&r);

    /* v12: never the create event */
    room_init(&r, "12", "public");
    ids = hs_auth_events_select(r.rv, "m.room.message", "@bob:b", NULL, NULL,
                                hs_state_lookup_json, r.state);
    assert_int_equal(json_array_size(ids), 2);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
        assert_string_not_equal(json_string_value(v), r.create_id);
    json_decref(ids);
    room_free(&r);
}

static void test_auth_events_sanity(void **state)
{
    (void)state;
    room_t r;
    char why[256];
    room_init(&r, "11", "public");
    /* index the room's events by ID */
    json_t *byid = json_object();
    const char *k;
    json_t *ev;
    json_object_foreach(r.state, k, ev) {
        char *id = hs_event_id(r.rv, ev);
        json_object_set(byid, id, ev);
        free(id);
    }
    json_t *msg = mkev(&r, "m.room.message", "@bob:b", NULL, "{}");
    json_t *sel = hs_auth_events_select(r.rv, "m.room.message", "@bob:b", NULL, NULL,
                                        hs_state_lookup_json, r.state);
    json_object_set(msg, "auth_events", sel);
    assert_int_equal(hs_auth_check_auth_events(r.rv, msg, fetch_by_id, byid, why, sizeof(why)), 0);
    /* duplicate */
    json_array_append(sel, json_array_get(sel, 0));
    assert_int_equal(hs_auth_check_auth_events(r.rv, msg, fetch_by_id, byid, why, sizeof(why)),
                     HS_EAUTH);
    json_array_remove(sel, 3);
    /* missing create */
    json_array_remove(sel, 0);
    assert_int_equal(hs_auth_check_auth_events(r.rv, msg, fetch_by_id, byid, why, sizeof(why)),
                     HS_EAUTH);
    /* not selectable: the join rules for a message */
    char *jrid = hs_event_id(r.rv, json_object_get(r.state, "m.room.join_rules\x1f"));
    json_array_append_new(sel, json_string(jrid));
    assert_int_equal(hs_auth_check_auth_events(r.rv, msg, fetch_by_id, byid, why, sizeof(why)),
                     HS_EAUTH);
    free(jrid);
    /* unknown auth event */
    json_array_set_new(sel, 0, json_string("$unknown"));
    assert_int_equal(hs_auth_check_auth_events(r.rv, msg, fetch_by_id, byid, why, sizeof(why)),
                     -ENOENT);
    json_decref(sel);
    json_decref(msg);
    json_decref(byid);
    room_free(&r);
}

/* ------------------------------------------------ room versions 1 .. 9 --- */

static void test_event_ids_by_version(void **state)
{
    (void)state;
    const char *base = "{\"type\":\"m.room.message\",\"room_id\":\"!r:domain\","
                       "\"sender\":\"@a:domain\",\"content\":{\"body\":\"hi\"},"
                       "\"prev_events\":[],\"auth_events\":[],\"depth\":3,"
                       "\"origin_server_ts\":1000}";
    /* v1/v2: "$opaque:server", a field of the event, hashed and signed */
    for (int v = 1; v <= 2; v++) {
        const hs_room_version_t *rv = hs_room_version_get(v == 1 ? "1" : "2");
        json_t *ev = J(base);
        char *id = NULL;
        assert_int_equal(hs_event_finish(rv, ev, "domain", &test_key, &id), 0);
        assert_non_null(id);
        assert_int_equal(id[0], '$');
        assert_non_null(strstr(id, ":domain"));
        assert_string_equal(sget(ev, "event_id", NULL), id);
        char *again = hs_event_id(rv, ev);
        assert_string_equal(again, id);
        free(again);
        /* the redacted form keeps event_id, so the signature covers it */
        json_t *red = hs_event_redact(rv, ev);
        assert_string_equal(sget(red, "event_id", NULL), id);
        json_decref(red);
        assert_int_equal(hs_event_verify_hashes_and_sig(rv, ev, "domain", "ed25519:1",
                                                        test_pk_b64), 0);
        json_object_set_new(ev, "event_id", json_string("$other:domain"));
        assert_int_equal(hs_event_verify_hashes_and_sig(rv, ev, "domain", "ed25519:1",
                                                        test_pk_b64), HS_EBADSIG);
        /* the event ID's server must sign too */
        json_object_set_new(ev, "event_id", json_string("$x:elsewhere"));
        json_t *signers = hs_event_signers(rv, ev);
        assert_int_equal(json_array_size(signers), 2);
        assert_string_equal(json_string_value(json_array_get(signers, 1)), "elsewhere");
        json_decref(signers);
        json_object_del(ev, "event_id");
        assert_null(hs_event_id(rv, ev));
        free(id);
        json_decref(ev);
    }
    /* two finished v1 events get different IDs */
    json_t *a = J(base), *b = J(base);
    char *ia = NULL, *ib = NULL;
    hs_event_finish(hs_room_version_get("1"), a, "domain", &test_key, &ia);
    hs_event_finish(hs_room_version_get("1"), b, "domain", &test_key, &ib);
    assert_string_not_equal(ia, ib);
    free(ia);
    free(ib);
    json_decref(a);
    json_decref(b);

    /* v3: standard base64 of the reference hash; v4+: URL-safe, same hash.
     * Same redaction rules in v3..v5, so the IDs differ only in alphabet. */
    json_t *ev = J(base);
    const hs_room_version_t *v3 = hs_room_version_get("3"), *v4 = hs_room_version_get("4");
    int seen_std = 0;
    for (int i = 0; i < 64; i++) {
        json_object_set_new(ev, "depth", json_integer(i));
        char *i3 = hs_event_id(v3, ev), *i4 = hs_event_id(v4, ev);
        assert_int_equal(strlen(i3), 44);
        assert_null(strchr(i3, ':'));
        assert_null(strchr(i4, '+'));
        assert_null(strchr(i4, '/'));
        seen_std |= strchr(i3, '+') || strchr(i3, '/');
        for (char *p = i3; *p; p++)
            *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        assert_string_equal(i3, i4);
        free(i3);
        free(i4);
    }
    assert_true(seen_std);
    json_decref(ev);
}

static void test_ref_formats(void **state)
{
    (void)state;
    json_t *ev = J("{\"hashes\":{\"sha256\":\"abc\"}}");
    json_t *p = hs_ev_ref_new(hs_room_version_get("2"), "$e:x", ev);
    assert_json_eq(p, "[\"$e:x\",{\"sha256\":\"abc\"}]");
    assert_string_equal(hs_ev_ref_id(p), "$e:x");
    json_decref(p);
    p = hs_ev_ref_new(hs_room_version_get("1"), "$e:x", NULL);
    assert_json_eq(p, "[\"$e:x\",{}]");
    json_decref(p);
    p = hs_ev_ref_new(hs_room_version_get("3"), "$abc", ev);
    assert_string_equal(json_string_value(p), "$abc");
    assert_string_equal(hs_ev_ref_id(p), "$abc");
    json_decref(p);
    assert_null(hs_ev_ref_id(NULL));
    json_decref(ev);

    /* v1 selection gives pairs; the auth_events checks accept them */
    room_t r;
    char why[256];
    room_init(&r, "1", "public");
    json_t *sel = hs_auth_events_select(r.rv, "m.room.message", "@bob:b", NULL, NULL,
                                        hs_state_lookup_json, r.state);
    assert_int_equal(json_array_size(sel), 3);
    json_t *first = json_array_get(sel, 0);
    assert_true(json_is_array(first));
    assert_string_equal(hs_ev_ref_id(first), r.create_id);
    assert_true(json_is_object(json_array_get(first, 1)));
    json_t *byid = json_object();
    const char *k;
    json_t *sev;
    json_object_foreach(r.state, k, sev)
        json_object_set(byid, sget(sev, "event_id", NULL), sev);
    json_t *msg = mkev(&r, "m.room.message", "@bob:b", NULL, "{}");
    json_object_set(msg, "auth_events", sel);
    assert_int_equal(hs_auth_check_auth_events(r.rv, msg, fetch_by_id, byid, why, sizeof(why)), 0);
    json_array_remove(sel, 0);
    assert_int_equal(hs_auth_check_auth_events(r.rv, msg, fetch_by_id, byid, why, sizeof(why)),
                     HS_EAUTH);
    /* the creator's first join, with prev_events as a pair */
    json_t *j = member(&r, "@alice:a", "@alice:a", "join");
    json_array_append_new(json_object_get(j, "prev_events"),
                          hs_ev_ref_new(r.rv, r.create_id, r.create));
    json_object_del(r.state, "m.room.member\x1f@alice:a");
    json_object_set_new(json_object_get(r.state, "m.room.join_rules\x1f"), "content",
                        J("{\"join_rule\":\"invite\"}"));
    ALLOW(&r, j);
    json_decref(msg);
    json_decref(sel);
    json_decref(byid);
    room_free(&r);
}

static void test_redact_old_versions(void **state)
{
    (void)state;
    const char *aliases = "{\"type\":\"m.room.aliases\",\"state_key\":\"x\","
                          "\"content\":{\"aliases\":[\"#a:x\"],\"other\":1}}";
    const char *jr = "{\"type\":\"m.room.join_rules\",\"state_key\":\"\","
                     "\"content\":{\"join_rule\":\"restricted\",\"allow\":[],\"x\":1}}";
    const char *mem = "{\"type\":\"m.room.member\",\"state_key\":\"@a:x\",\"content\":"
                      "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"@b:x\","
                      "\"displayname\":\"A\"}}";
    const char *pl = "{\"type\":\"m.room.power_levels\",\"state_key\":\"\",\"content\":"
                     "{\"ban\":50,\"invite\":0,\"notifications\":{\"room\":50}}}";
    const char *v1ev = "{\"type\":\"m.room.message\",\"event_id\":\"$e:x\",\"content\":{},"
                       "\"origin\":\"x\",\"prev_events\":[[\"$p:x\",{\"sha256\":\"h\"}]]}";
    static const char *const vers[] = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "10" };
    for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++) {
        int v = atoi(vers[i]);
        json_t *r = redact(vers[i], aliases);
        assert_json_eq(json_object_get(r, "content"),
                       v <= 5 ? "{\"aliases\":[\"#a:x\"]}" : "{}");
        json_decref(r);
        r = redact(vers[i], jr);
        assert_json_eq(json_object_get(r, "content"),
                       v >= 8 ? "{\"join_rule\":\"restricted\",\"allow\":[]}"
                              : "{\"join_rule\":\"restricted\"}");
        json_decref(r);
        r = redact(vers[i], mem);
        assert_json_eq(json_object_get(r, "content"),
                       v >= 9 ? "{\"membership\":\"join\","
                                "\"join_authorised_via_users_server\":\"@b:x\"}"
                              : "{\"membership\":\"join\"}");
        json_decref(r);
        r = redact(vers[i], pl); /* invite only kept from v11 */
        assert_json_eq(json_object_get(r, "content"), "{\"ban\":50}");
        json_decref(r);
        r = redact(vers[i], v1ev); /* event_id, origin, pair lists survive */
        assert_json_eq(r, "{\"type\":\"m.room.message\",\"event_id\":\"$e:x\",\"content\":{},"
                          "\"origin\":\"x\",\"prev_events\":[[\"$p:x\",{\"sha256\":\"h\"}]]}");
        json_decref(r);
    }
}

static void test_auth_old_versions(void **state)
{
    (void)state;
    room_t r;
    char ver[4];

    /* m.room.aliases: v1..v5 owned by the server in state_key (even with no
     * membership); v6+ an ordinary state event */
    for (int v = 1; v <= 7; v++) {
        snprintf(ver, sizeof(ver), "%d", v);
        room_init(&r, ver, "public");
        if (v <= 5) {
            ALLOW(&r, mkev(&r, "m.room.aliases", "@carol:c", "c", "{\"aliases\":[]}"));
            DENY(&r, mkev(&r, "m.room.aliases", "@carol:c", "a", "{\"aliases\":[]}"));
            DENY(&r, mkev(&r, "m.room.aliases", "@carol:c", NULL, "{\"aliases\":[]}"));
            ALLOW(&r, mkev(&r, "m.room.aliases", "@bob:b", "b", "{\"aliases\":[]}"));
        } else {
            DENY(&r, mkev(&r, "m.room.aliases", "@carol:c", "c", "{\"aliases\":[]}"));
            DENY(&r, mkev(&r, "m.room.aliases", "@bob:b", "b", "{\"aliases\":[]}")); /* PL 50 */
            ALLOW(&r, mkev(&r, "m.room.aliases", "@alice:a", "a", "{\"aliases\":[]}"));
        }
        room_free(&r);
    }

    /* v1/v2 redaction rule: redact level, or the same event-ID domain */
    for (int v = 1; v <= 3; v++) {
        snprintf(ver, sizeof(ver), "%d", v);
        room_init(&r, ver, "public");
        json_t *red = mkev(&r, "m.room.redaction", "@bob:b", NULL, "{}");
        json_object_set_new(red, "redacts", json_string("$other:a"));
        if (v <= 2)
            DENY(&r, red);
        else
            ALLOW(&r, red); /* v3+: "Handling redactions", not auth */
        red = mkev(&r, "m.room.redaction", "@bob:b", NULL, "{}");
        json_object_set_new(red, "redacts", json_string("$mine:b"));
        ALLOW(&r, red);
        red = mkev(&r, "m.room.redaction", "@alice:a", NULL, "{}");
        json_object_set_new(red, "redacts", json_string("$any:b"));
        ALLOW(&r, red);
        room_free(&r);
    }

    /* power levels: strings until v9, floats until v5, notifications v6+ */
    for (int v = 1; v <= 10; v++) {
        snprintf(ver, sizeof(ver), "%d", v);
        room_init(&r, ver, "public");
        json_t *e = set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":\" +100 \",\"@bob:b\":\"40\"},"
                                           "\"ban\":\"50\",\"events\":{\"m.room.name\":\"50\"}}");
        if (v <= 9)
            ALLOW(&r, e);
        else
            DENY(&r, e);
        e = set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100,\"@bob:b\":40.7}}");
        if (v <= 5)
            ALLOW(&r, e);
        else
            DENY(&r, e);
        DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":\"1e2\"}}"));
        DENY(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":\"\"}}"));
        /* mod (50) raising a notifications level above its own */
        e = set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":50,\"@bob:b\":0},"
                                 "\"users_default\":0,\"ban\":50,\"kick\":50,\"invite\":0,"
                                 "\"state_default\":50,\"events_default\":0,"
                                 "\"events\":{\"m.room.name\":50},"
                                 "\"notifications\":{\"room\":90}}");
        if (v >= 6)
            DENY(&r, e);
        else
            ALLOW(&r, e);
        room_free(&r);
    }

    /* a stringy PL in state counts (v1..v9): bob at "60" may set the name */
    room_init(&r, "4", "public");
    put(&r, set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100,\"@bob:b\":\"60\"},"
                                   "\"events\":{\"m.room.name\":\"55\"}}"));
    assert_int_equal(hs_user_power(r.rv, r.create, json_object_get(r.state,
                                   "m.room.power_levels\x1f"), "@bob:b"), 60);
    ALLOW(&r, mkev(&r, "m.room.name", "@bob:b", "", "{\"name\":\"n\"}"));
    DENY(&r, mkev(&r, "m.room.name", "@mod:m", "", "{\"name\":\"n\"}"));
    room_free(&r);

    /* knock: v7+; restricted: v8+; knock_restricted: v10+ */
    room_init(&r, "6", "knock");
    DENY(&r, member(&r, "@carol:c", "@carol:c", "knock"));
    room_free(&r);
    room_init(&r, "7", "knock");
    ALLOW(&r, member(&r, "@carol:c", "@carol:c", "knock"));
    room_free(&r);
    room_init(&r, "7", "restricted");
    DENY(&r, restricted_join(&r, "@carol:c", "@mod:m", 1));
    room_free(&r);
    room_init(&r, "8", "restricted");
    ALLOW(&r, restricted_join(&r, "@carol:c", "@mod:m", 1));
    DENY(&r, restricted_join(&r, "@carol:c", "@mod:m", 0));
    room_free(&r);
    room_init(&r, "9", "knock_restricted");
    DENY(&r, member(&r, "@carol:c", "@carol:c", "knock"));
    DENY(&r, restricted_join(&r, "@carol:c", "@mod:m", 1));
    room_free(&r);
    room_init(&r, "10", "knock_restricted");
    ALLOW(&r, member(&r, "@carol:c", "@carol:c", "knock"));
    room_free(&r);

    /* v1..v10: content.creator is required */
    room_init(&r, "3", "public");
    json_t *c = mkev(&r, "m.room.create", "@alice:a", "", "{}");
    json_object_set_new(c, "room_id", json_string("!new:a"));
    DENY(&r, c);
    room_free(&r);
}

static void test_stateres_v1(void **state)
{
    (void)state;
    room_t r;
    room_init(&r, "1", "public");
    const hs_room_version_t *rv = r.rv;
    json_t *byid = json_object();
    json_t *base = json_object();
    const char *k;
    json_t *ev;
    json_object_foreach(r.state, k, ev) {
        json_object_set(byid, sget(ev, "event_id", NULL), ev);
        json_object_set_new(base, k, json_string(sget(ev, "event_id", NULL)));
    }
    /* two topics, depths 7 and 9: the deeper one wins if it passes auth */
    json_t *t1 = mkev(&r, "m.room.topic", "@alice:a", "", "{\"topic\":\"one\"}");
    json_t *t2 = mkev(&r, "m.room.topic", "@alice:a", "", "{\"topic\":\"two\"}");
    json_object_set_new(t1, "depth", json_integer(7));
    json_object_set_new(t2, "depth", json_integer(9));
    /* bob's topic is deeper still but bob (0) may not set it (state_default 50) */
    json_t *t3 = mkev(&r, "m.room.topic", "@bob:b", "", "{\"topic\":\"bob\"}");
    json_object_set_new(t3, "depth", json_integer(11));
    /* conflicting power levels: alice's (depth 8) demotes mod; mod's own
     * (depth 9), making itself 100, then fails auth in R and stops the pass */
    json_t *p1 = set_pl(&r, "@alice:a", "{\"users\":{\"@alice:a\":100,\"@mod:m\":10}}");
    json_t *p2 = set_pl(&r, "@mod:m", "{\"users\":{\"@alice:a\":100,\"@mod:m\":100}}");
    json_object_set_new(p1, "depth", json_integer(8));
    json_object_set_new(p2, "depth", json_integer(9));
    json_t *evs[] = { t1, t2, t3, p1, p2 };
    for (size_t i = 0; i < 5; i++)
        json_object_set(byid, sget(evs[i], "event_id", NULL), evs[i]);
    json_t *s1 = json_copy(base), *s2 = json_copy(base), *s3 = json_copy(base);
    json_object_set_new(s1, "m.room.topic\x1f", json_string(sget(t1, "event_id", NULL)));
    json_object_set_new(s2, "m.room.topic\x1f", json_string(sget(t2, "event_id", NULL)));
    json_object_set_new(s3, "m.room.topic\x1f", json_string(sget(t3, "event_id", NULL)));
    json_object_set_new(s1, "m.room.power_levels\x1f", json_string(sget(p1, "event_id", NULL)));
    json_object_set_new(s2, "m.room.power_levels\x1f", json_string(sget(p2, "event_id", NULL)));
    /* s3 keeps the original PL (depth 5): it comes first in the PL pass */
    const json_t *sets[] = { s1, s2, s3 }, *rsets[] = { s3, s2, s1 };
    json_t *out = NULL, *out2 = NULL;
    char why[256];
    assert_int_equal(hs_stateres(rv, sets, 3, fetch_by_id, byid, &out, why, sizeof(why)), 0);
    assert_string_equal(json_string_value(json_object_get(out, "m.room.topic\x1f")),
                        sget(t2, "event_id", NULL));
    assert_string_equal(json_string_value(json_object_get(out, "m.room.power_levels\x1f")),
                        sget(p1, "event_id", NULL));
    assert_string_equal(json_string_value(json_object_get(out, "m.room.member\x1f@bob:b")),
                        json_string_value(json_object_get(base, "m.room.member\x1f@bob:b")));
    /* the order of the input maps does not matter */
    assert_int_equal(hs_stateres(rv, rsets, 3, fetch_by_id, byid, &out2, why, sizeof(why)), 0);
    assert_true(json_equal(out, out2));
    json_decref(out2);
    /* a missing event is reported */
    json_object_set_new(s3, "m.room.name\x1f", json_string("$missing:x"));
    json_object_set_new(s1, "m.room.name\x1f", json_string(sget(t1, "event_id", NULL)));
    assert_int_equal(hs_stateres(rv, sets, 3, fetch_by_id, byid, &out2, why, sizeof(why)),
                     -ENOENT);
    json_decref(out);
    for (size_t i = 0; i < 5; i++)
        json_decref(evs[i]);
    json_decref(s1);
    json_decref(s2);
    json_decref(s3);
    json_decref(base);
    json_decref(byid);
    room_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_room_versions),
        cmocka_unit_test(test_sign_json_vectors),
        cmocka_unit_test(test_event_signing_vector_minimal),
        cmocka_unit_test(test_event_signing_vector_message),
        cmocka_unit_test(test_event_signing_v11),
        cmocka_unit_test(test_room_id_v12),
        cmocka_unit_test(test_redact_top_level),
        cmocka_unit_test(test_redact_member),
        cmocka_unit_test(test_redact_create),
        cmocka_unit_test(test_redact_state_types),
        cmocka_unit_test(test_redact_redaction),
        cmocka_unit_test(test_auth_create),
        cmocka_unit_test(test_auth_first_join),
        cmocka_unit_test(test_auth_join_rules),
        cmocka_unit_test(test_auth_invite),
        cmocka_unit_test(test_auth_leave_kick_ban),
        cmocka_unit_test(test_auth_knock),
        cmocka_unit_test(test_auth_restricted),
        cmocka_unit_test(test_auth_third_party_invite),
        cmocka_unit_test(test_auth_send),
        cmocka_unit_test(test_auth_federate),
        cmocka_unit_test(test_auth_power_levels),
        cmocka_unit_test(test_auth_v12_creators),
        cmocka_unit_test(test_power_helpers),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_auth_events_sanity),
        cmocka_unit_test(test_event_ids_by_version),
        cmocka_unit_test(test_ref_formats),
        cmocka_unit_test(test_redact_old_versions),
        cmocka_unit_test(test_auth_old_versions),
        cmocka_unit_test(test_stateres_v1),
    };
    return cmocka_run_group_tests(tests, setup_key, NULL);
}
