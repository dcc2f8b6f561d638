/*
 * ev_auth.c: the authorization rules of room versions 1 to 12, and the
 * power-level helpers handlers share with them.
 *
 * The rules are applied in the spec's order; each rejection says which rule
 * fired.  Rule numbers in comments are those of rooms/v12.md; v10/v11 number
 * the same rules one lower from rule 2 on (v12 inserted the room-ID rule).
 * Older versions differ by flags of the version table: v1..v5 have the
 * m.room.aliases rule, v1/v2 the redaction rule, v1..v9 accept stringy
 * (v1..v5 also float) power levels and validate only `users`, v6+ check
 * `notifications`, v7+ knock, v8+ restricted, v10+ knock_restricted.
 * Spec: rooms/fragments/v1-auth-rules.md, v3-auth-rules.md, rooms/v6.md,
 * v7.md, v8-auth-rules.md, v10.md, v11.md, v12.md; server-server
 * API "Auth events selection".  Edge cases cross-checked against Synapse's
 * event_auth.py (facts only).
 */
#include "events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- power --- */

int hs_is_creator(const hs_room_version_t *rv, const json_t *create, const char *user_id)
{
    if (!rv || !create || !user_id)
        return 0;
    const json_t *content = json_object_get(create, "content");
    const char *creator = rv->implicit_creator ? hs_ev_sender(create)
                                               : json_string_value(json_object_get(content, "creator"));
    if (creator && strcmp(creator, user_id) == 0)
        return 1;
    if (rv->creators_infinite_power) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(content, "additional_creators"), i, v) {
            const char *s = json_string_value(v);
            if (s && strcmp(s, user_id) == 0)
                return 1;
        }
    }
    return 0;
}

/* A PL value in any form old versions allow (integer, integer string,
 * float), or `def` when absent or malformed.  v10+ PL events with
 * non-integers never pass auth, so leniency only matters for v1..v9. */
static int64_t int_or(const json_t *v, int64_t def)
{
    int64_t x;
    return v && hs_pl_value(NULL, v, &x) == 0 ? x : def;
}

int64_t hs_user_power(const hs_room_version_t *rv, const json_t *create, const json_t *pl,
                      const char *user_id)
{
    if (!rv || !user_id)
        return 0;
    if (rv->creators_infinite_power && hs_is_creator(rv, create, user_id))
        return HS_POWER_INFINITE;
    if (pl) {
        const json_t *c = json_object_get(pl, "content");
        const json_t *u = json_object_get(json_object_get(c, "users"), user_id);
        int64_t x;
        if (u && hs_pl_value(NULL, u, &x) == 0)
            return x;
        return int_or(json_object_get(c, "users_default"), 0);
    }
    /* No PL event: the creator has 100, everyone else 0. */
    return hs_is_creator(rv, create, user_id) ? 100 : 0;
}

int64_t hs_named_power(const json_t *pl, const char *name, int64_t def)
{
    return int_or(json_object_get(json_object_get(pl, "content"), name), def);
}

int64_t hs_event_required_power(const json_t *pl, const char *type, int is_state)
{
    const json_t *c = json_object_get(pl, "content");
    const json_t *v = json_object_get(json_object_get(c, "events"), type);
    int64_t x;
    if (v && hs_pl_value(NULL, v, &x) == 0)
        return x;
    return is_state ? int_or(json_object_get(c, "state_default"), 50)
                    : int_or(json_object_get(c, "events_default"), 0);
}

/* ------------------------------------------------------------ context --- */

typedef struct actx {
    const hs_room_version_t *rv;
    const json_t *ev;
    hs_state_lookup_fn lookup;
    void *ud;
    const json_t *create;
    const char *create_id;  /* borrowed from the lookup, or NULL */
    const json_t *pl;
    const char *sender;
    char *why;
    size_t whylen;
} actx_t;

__attribute__((format(printf, 2, 3)))
static int deny(actx_t *a, const char *fmt, ...)
{
    if (a->why && a->whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(a->why, a->whylen, fmt, ap);
        va_end(ap);
    }
    return HS_EAUTH;
}

static int allow(actx_t *a)
{
    if (a->why && a->whylen)
        a->why[0] = '\0';
    return 0;
}

static const json_t *look(actx_t *a, const char *type, const char *sk)
{
    return a->lookup(a->ud, type, sk, NULL);
}

/* Membership of `user` in the auth state; "leave" when there is none. */
static const char *membership_of(actx_t *a, const char *user)
{
    const char *m = hs_ev_membership(look(a, "m.room.member", user));
    return m ? m : "leave";
}

static int64_t power_of(actx_t *a, const char *user)
{
    return hs_user_power(a->rv, a->create, a->pl, user);
}

static int streq(const char *x, const char *y)
{
    return x && y && strcmp(x, y) == 0;
}

static int domain_eq(const char *uid_a, const char *uid_b)
{
    return streq(hs_user_domain(uid_a), hs_user_domain(uid_b));
}

/* ------------------------------------------------------- create (rule 1) --- */

static int check_create(actx_t *a)
{
    const json_t *ev = a->ev;
    const json_t *content = json_object_get(ev, "content");
    const json_t *prev = json_object_get(ev, "prev_events");

    if (prev && (!json_is_array(prev) || json_array_size(prev) > 0))
        return deny(a, "create event has prev_events");
    if (a->rv->room_id_is_create_hash) {
        if (json_object_get(ev, "room_id"))
            return deny(a, "create event must not have a room_id in this room version");
    } else {
        const char *rid = hs_ev_str(ev, "room_id");
        const char *rdom = rid ? strchr(rid, ':') : NULL;
        const char *sdom = hs_user_domain(a->sender);
        if (!rdom || !sdom || strcmp(rdom + 1, sdom) != 0)
            return deny(a, "create event's room_id domain does not match the sender's");
    }
    const json_t *ver = json_object_get(content, "room_version");
    if (ver && !hs_room_version_known(json_string_value(ver)))
        return deny(a, "create event names an unknown room_version");
    if (a->rv->creators_infinite_power) {
        const json_t *ac = json_object_get(content, "additional_creators");
        if (ac) {
            size_t i;
            json_t *v;
            if (!json_is_array(ac))
                return deny(a, "additional_creators is not an array");
            json_array_foreach(ac, i, v)
                if (!hs_user_id_valid(json_string_value(v)))
                    return deny(a, "additional_creators entry %zu is not a valid user ID", i);
        }
    }
    if (!a->rv->implicit_creator && !json_is_string(json_object_get(content, "creator")))
        return deny(a, "create event has no content.creator");
    return allow(a);
}

/* ------------------------------------------------ third-party invites --- */

static int tpi_signature_ok(const json_t *signed_, const char *pk)
{
    const char *server, *kid;
    json_t *block, *v;

    if (!pk)
        return 0;
    json_object_foreach(json_object_get(signed_, "signatures"), server, block) {
        json_object_foreach(block, kid, v) {
            if (strncmp(kid, "ed25519:", 8) != 0)
                continue;
            if (mx_json_verify(signed_, server, kid, pk) == 0)
                return 1;
        }
    }
    return 0;
}

static int check_tpi_invite(actx_t *a, const char *target, const json_t *tpi)
{
    const json_t *signed_ = json_object_get(tpi, "signed");

    if (streq(membership_of(a, target), "ban"))
        return deny(a, "%s is banned from the room", target);
    if (!json_is_object(signed_))
        return deny(a, "third_party_invite has no signed object");
    const char *mxid = hs_ev_str(signed_, "mxid"), *token = hs_ev_str(signed_, "token");
    if (!mxid || !token)
        return deny(a, "third_party_invite.signed lacks mxid or token");
    if (strcmp(mxid, target) != 0)
        return deny(a, "third_party_invite mxid does not match the state_key");
    const json_t *inv = look(a, "m.room.third_party_invite", token);
    if (!inv)
        return deny(a, "no m.room.third_party_invite for this token");
    if (!streq(hs_ev_sender(inv), a->sender))
        return deny(a, "sender does not match the sender of the third-party invite");

    const json_t *c = json_object_get(inv, "content");
    if (tpi_signature_ok(signed_, json_string_value(json_object_get(c, "public_key"))))
        return allow(a);
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(c, "public_keys"), i, k)
        if (tpi_signature_ok(signed_, json_string_value(json_object_get(k, "public_key"))))
            return allow(a);
    return deny(a, "no valid signature from the third-party invite's keys");
}

/* ------------------------------------------------- membership (rule 5) --- */

static int only_prev_is_create(actx_t *a)
{
    const json_t *prev = json_object_get(a->ev, "prev_events");
    if (!json_is_array(prev) || json_array_size(prev) != 1 || !a->create)
        return 0;
    const char *p = hs_ev_ref_id(json_array_get(prev, 0));
    if (!p)
        return 0;
    if (a->create_id)
        return strcmp(p, a->create_id) == 0;
    char *cid = hs_event_id(a->rv, a->create);
    int r = cid && strcmp(p, cid) == 0;
    free(cid);
    return r;
}

static int check_join(actx_t *a, const char *target, const json_t *content)
{
    const char *creator = a->rv->implicit_creator
        ? hs_ev_sender(a->create)
        : json_string_value(json_object_get(json_object_get(a->create, "content"), "creator"));

    if (streq(target, creator) && only_prev_is_create(a))
        return allow(a);
    if (strcmp(a->sender, target) != 0)
        return deny(a, "cannot join on behalf of another user");
    const char *m = membership_of(a, a->sender);
    if (strcmp(m, "ban") == 0)
        return deny(a, "%s is banned from the room", a->sender);

    const char *jr = hs_ev_str(json_object_get(look(a, "m.room.join_rules", ""), "content"),
                               "join_rule");
    if (!look(a, "m.room.join_rules", ""))
        jr = "invite"; /* no join rules yet: only invited users may join */
    if (!jr)
        jr = "";
    int in_or_invited = strcmp(m, "join") == 0 || strcmp(m, "invite") == 0;

    if (strcmp(jr, "invite") == 0 || (a->rv->knock && strcmp(jr, "knock") == 0)) {
        if (in_or_invited)
            return allow(a);
        return deny(a, "join rule is %s and %s is not invited", jr, a->sender);
    }
    if ((a->rv->restricted && strcmp(jr, "restricted") == 0) ||
        (a->rv->knock_restricted && strcmp(jr, "knock_restricted") == 0)) {
        if (in_or_invited)
            return allow(a);
        const char *via = hs_ev_str(content, "join_authorised_via_users_server");
        if (!via)
            return deny(a, "restricted join without join_authorised_via_users_server");
        if (strcmp(membership_of(a, via), "join") != 0)
            return deny(a, "authorising user %s is not joined", via);
        if (power_of(a, via) < hs_named_power(a->pl, "invite", 0))
            return deny(a, "authorising user %s may not invite", via);
        return allow(a);
    }
    if (strcmp(jr, "public") == 0)
        return allow(a);
    return deny(a, "join rule '%s' does not allow joining", jr);
}

static int check_member(actx_t *a)
{
    const json_t *content = json_object_get(a->ev, "content");
    const char *target = hs_ev_state_key(a->ev);
    const char *mem = hs_ev_str(content, "membership");

    if (!target || !mem)
        return deny(a, "member event without state_key or content.membership");
    if (a->rv->restricted && json_object_get(content, "join_authorised_via_users_server")) {
        const char *via = hs_ev_str(content, "join_authorised_via_users_server");
        const char *vdom = hs_user_domain(via);
        const json_t *sig = vdom ? json_object_get(json_object_get(a->ev, "signatures"), vdom)
                                 : NULL;
        if (!json_is_object(sig) || json_object_size(sig) == 0)
            return deny(a, "event is not signed by the authorising user's server");
    }

    if (strcmp(mem, "join") == 0)
        return check_join(a, target, content);

    const char *sm = membership_of(a, a->sender), *tm = membership_of(a, target);
    int64_t spl = power_of(a, a->sender);

    if (strcmp(mem, "invite") == 0) {
        const json_t *tpi = json_object_get(content, "third_party_invite");
        if (tpi)
            return check_tpi_invite(a, target, tpi);
        if (strcmp(sm, "join") != 0)
            return deny(a, "inviter %s is not joined", a->sender);
        if (strcmp(tm, "join") == 0 || strcmp(tm, "ban") == 0)
            return deny(a, "%s is %s and cannot be invited", target,
                        strcmp(tm, "join") == 0 ? "already joined" : "banned");
        if (spl >= hs_named_power(a->pl, "invite", 0))
            return allow(a);
        return deny(a, "sender's power level is below the invite level");
    }
    if (strcmp(mem, "leave") == 0) {
        if (strcmp(a->sender, target) == 0) {
            if (strcmp(sm, "invite") == 0 || strcmp(sm, "join") == 0 ||
                (a->rv->knock && strcmp(sm, "knock") == 0))
                return allow(a);
            return deny(a, "cannot leave from membership '%s'", sm);
        }
        if (strcmp(sm, "join") != 0)
            return deny(a, "sender %s is not joined", a->sender);
        if (strcmp(tm, "ban") == 0 && spl < hs_named_power(a->pl, "ban", 50))
            return deny(a, "sender's power level is below the ban level (unban)");
        if (spl >= hs_named_power(a->pl, "kick", 50) && power_of(a, target) < spl)
            return allow(a);
        return deny(a, "sender may not kick %s (kick level or target's power)", target);
    }
    if (strcmp(mem, "ban") == 0) {
        if (strcmp(sm, "join") != 0)
            return deny(a, "sender %s is not joined", a->sender);
        if (spl >= hs_named_power(a->pl, "ban", 50) && power_of(a, target) < spl)
            return allow(a);
        return deny(a, "sender may not ban %s (ban level or target's power)", target);
    }
    if (a->rv->knock && strcmp(mem, "knock") == 0) {
        const char *jr = hs_ev_str(json_object_get(look(a, "m.room.join_rules", ""), "content"),
                                   "join_rule");
        if (!(streq(jr, "knock") || (a->rv->knock_restricted && streq(jr, "knock_restricted"))))
            return deny(a, "join rule does not allow knocking");
        if (strcmp(a->sender, target) != 0)
            return deny(a, "cannot knock on behalf of another user");
        if (strcmp(sm, "ban") != 0 && strcmp(sm, "invite") != 0 && strcmp(sm, "join") != 0)
            return allow(a);
        return deny(a, "cannot knock from membership '%s'", sm);
    }
    return deny(a, "unknown membership '%s'", mem);
}

/* ----------------------------------------------- power levels (rule 10) --- */

static const char *const pl_named[] = {
    "users_default", "events_default", "state_default", "ban", "redact", "kick", "invite", NULL,
};

static int int_map_ok(const hs_room_version_t *rv, const json_t *m, int keys_are_users)
{
    const char *k;
    json_t *v;
    int64_t x;
    if (!json_is_object(m))
        return 0;
    json_object_foreach((json_t *)m, k, v) {
        if (hs_pl_value(rv, v, &x) != 0)
            return 0;
        if (keys_are_users && !hs_user_id_valid(k))
            return 0;
    }
    return 1;
}

/* One value's change: `old`/`new_` are the raw values (NULL when absent).
 * The spec compares written values only; absent sides contribute nothing. */
static int pl_change(actx_t *a, const char *what, const char *key, const json_t *old,
                     const json_t *new_, int64_t spl, int is_other_user)
{
    if (old && new_ && json_equal((json_t *)old, (json_t *)new_))
        return 0;
    if (!old && !new_)
        return 0;
    int64_t o = int_or(old, 0), n = int_or(new_, 0);
    if (is_other_user && old && o >= spl)
        return deny(a, "cannot change %s[%s]: its current level %lld is not below yours",
                    what, key, (long long)o);
    if (old && o > spl)
        return deny(a, "cannot change %s%s%s: current value %lld is above your level",
                    what, key ? "." : "", key ? key : "", (long long)o);
    if (new_ && n > spl)
        return deny(a, "cannot set %s%s%s to %lld: above your level", what, key ? "." : "",
                    key ? key : "", (long long)n);
    return 0;
}

static int pl_map_changes(actx_t *a, const char *what, const json_t *oldc, const json_t *newc,
                          int64_t spl)
{
    const json_t *om = json_object_get(oldc, what), *nm = json_object_get(newc, what);
    const char *k;
    json_t *v;
    int rc, users = strcmp(what, "users") == 0;

    json_object_foreach((json_t *)om, k, v) {
        int other = users && strcmp(k, a->sender) != 0;
        if ((rc = pl_change(a, what, k, v, json_object_get(nm, k), spl, other)) != 0)
            return rc;
    }
    json_object_foreach((json_t *)nm, k, v) {
        if (json_object_get(om, k))
            continue; /* done above */
        if ((rc = pl_change(a, what, k, NULL, v, spl, 0)) != 0)
            return rc;
    }
    return 0;
}

static int check_power_levels(actx_t *a)
{
    const json_t *c = json_object_get(a->ev, "content");
    const json_t *users = json_object_get(c, "users");
    int rc;

    /* v10+: every named level and the events/notifications maps must be
     * integers; before, only `users` is validated (strings allowed). */
    if (a->rv->int_power_levels) {
        for (const char *const *k = pl_named; *k; k++) {
            const json_t *v = json_object_get(c, *k);
            if (v && !json_is_integer(v))
                return deny(a, "power_levels.%s is not an integer", *k);
        }
        if (json_object_get(c, "events") && !int_map_ok(a->rv, json_object_get(c, "events"), 0))
            return deny(a, "power_levels.events is not an object of integers");
        if (json_object_get(c, "notifications") &&
            !int_map_ok(a->rv, json_object_get(c, "notifications"), 0))
            return deny(a, "power_levels.notifications is not an object of integers");
    }
    if (users && !int_map_ok(a->rv, users, 1))
        return deny(a, "power_levels.users is not an object of user IDs to integers");
    if (a->rv->creators_infinite_power && users) {
        const char *u;
        json_t *v;
        json_object_foreach((json_t *)users, u, v)
            if (hs_is_creator(a->rv, a->create, u))
                return deny(a, "room creator %s must not appear in power_levels.users", u);
    }
    if (!a->pl)
        return allow(a);

    const json_t *oc = json_object_get(a->pl, "content");
    int64_t spl = power_of(a, a->sender);
    for (const char *const *k = pl_named; *k; k++)
        if ((rc = pl_change(a, *k, NULL, json_object_get(oc, *k), json_object_get(c, *k), spl,
                            0)) != 0)
            return rc;
    if ((rc = pl_map_changes(a, "events", oc, c, spl)) != 0)
        return rc;
    if (a->rv->notifications_pl && (rc = pl_map_changes(a, "notifications", oc, c, spl)) != 0)
        return rc;
    if ((rc = pl_map_changes(a, "users", oc, c, spl)) != 0)
        return rc;
    return allow(a);
}

/* ------------------------------------------------------------- the rules --- */

int hs_auth_check(const hs_room_version_t *rv, const json_t *ev, hs_state_lookup_fn lookup,
                  void *ud, char *why, size_t whylen)
{
    actx_t a = { .rv = rv, .ev = ev, .lookup = lookup, .ud = ud, .why = why, .whylen = whylen };
    const char *type = hs_ev_type(ev);

    if (why && whylen)
        why[0] = '\0';
    if (!rv || !json_is_object(ev) || !lookup)
        return -EINVAL;
    if (!rv->supported)
        return -ENOTSUP;
    a.sender = hs_ev_sender(ev);
    if (!type || !a.sender)
        return deny(&a, "event has no type or sender");
    if (!json_is_object(json_object_get(ev, "content")))
        return deny(&a, "event has no content object");

    /* 1. create events are judged on their own. */
    if (strcmp(type, "m.room.create") == 0)
        return check_create(&a);

    a.create = lookup(ud, "m.room.create", "", &a.create_id);
    if (!a.create)
        return deny(&a, "no m.room.create event in the auth state");

    /* 2. (v12) the room ID is the create event's ID with the '!' sigil. */
    if (rv->room_id_is_create_hash) {
        const char *rid = hs_ev_str(ev, "room_id");
        char *own = NULL;
        const char *cid = a.create_id ? a.create_id : (own = hs_event_id(rv, a.create));
        int ok = rid && cid && rid[0] == '!' && strcmp(rid + 1, cid + 1) == 0;
        free(own);
        if (!ok)
            return deny(&a, "room_id is not the ID of the room's create event");
    }
    a.pl = lookup(ud, "m.room.power_levels", "", NULL);

    /* 4. m.federate: false keeps other servers out. */
    const json_t *fed = json_object_get(json_object_get(a.create, "content"), "m.federate");
    if (json_is_false(fed) && !domain_eq(a.sender, hs_ev_sender(a.create)))
        return deny(&a, "room is not federated and the sender is on another server");

    /* v1..v5 rule 4: m.room.aliases is owned by the server in state_key. */
    if (rv->aliases_rule && strcmp(type, "m.room.aliases") == 0) {
        const char *ask = hs_ev_state_key(ev);
        if (!ask)
            return deny(&a, "m.room.aliases event has no state_key");
        if (!streq(hs_user_domain(a.sender), ask))
            return deny(&a, "m.room.aliases state_key is not the sender's server");
        return allow(&a);
    }

    /* 5. membership */
    if (strcmp(type, "m.room.member") == 0)
        return check_member(&a);

    /* 6. everything else needs a joined sender. */
    if (strcmp(membership_of(&a, a.sender), "join") != 0)
        return deny(&a, "sender %s is not joined to the room", a.sender);
    int64_t spl = power_of(&a, a.sender);

    /* 7. third-party invites follow the invite level. */
    if (strcmp(type, "m.room.third_party_invite") == 0) {
        if (spl >= hs_named_power(a.pl, "invite", 0))
            return allow(&a);
        return deny(&a, "sender's power level is below the invite level");
    }

    /* 8. the event type's required level. */
    const char *sk = hs_ev_state_key(ev);
    int64_t need = hs_event_required_power(a.pl, type, sk != NULL);
    if (need > spl)
        return deny(&a, "sending %s needs power level %lld, sender has %lld", type,
                    (long long)need, (long long)spl);

    /* 9. user-owned state keys. */
    if (sk && sk[0] == '@' && strcmp(sk, a.sender) != 0)
        return deny(&a, "state_key %s belongs to another user", sk);

    /* 10. power level changes (a PL event under another state key has no
     * previous version to compare with, as in Synapse). */
    if (strcmp(type, "m.room.power_levels") == 0) {
        if (!sk || sk[0] != '\0')
            a.pl = NULL;
        return check_power_levels(&a);
    }

    /* v1/v2 rule 11: redactions need the redact level, or an event ID of
     * the same domain as the redacted one (v3+: "Handling redactions"). */
    if (rv->redaction_rule && strcmp(type, "m.room.redaction") == 0) {
        if (spl >= hs_named_power(a.pl, "redact", 50))
            return allow(&a);
        const char *eid = hs_ev_str(ev, "event_id"), *red = hs_ev_str(ev, "redacts");
        const char *d1 = eid ? strchr(eid, ':') : NULL, *d2 = red ? strchr(red, ':') : NULL;
        if (d1 && d2 && strcmp(d1, d2) == 0)
            return allow(&a);
        return deny(&a, "sender's power level is below the redact level");
    }

    /* 11. */
    return allow(&a);
}

/* ------------------------------------------------ auth_events sanity --- */

int hs_auth_check_auth_events(const hs_room_version_t *rv, const json_t *ev,
                              hs_event_fetch_fn fetch, void *ud, char *why, size_t whylen)
{
    actx_t a = { .rv = rv, .ev = ev, .why = why, .whylen = whylen };
    hs_auth_key_t keys[HS_AUTH_KEYS_MAX];
    int seen[HS_AUTH_KEYS_MAX] = { 0 };
    const json_t *ae = json_object_get(ev, "auth_events");
    const char *type = hs_ev_type(ev), *room = hs_ev_str(ev, "room_id");
    int have_create = 0;
    size_t i;
    json_t *idv;

    if (why && whylen)
        why[0] = '\0';
    if (!rv || !json_is_object(ev) || !fetch)
        return -EINVAL;
    if (!json_is_array(ae))
        return deny(&a, "auth_events is not an array");
    if (type && strcmp(type, "m.room.create") == 0)
        return json_array_size(ae) ? deny(&a, "create event has auth_events") : allow(&a);

    size_t nk = hs_auth_types(rv, type, hs_ev_sender(ev), hs_ev_state_key(ev),
                              json_object_get(ev, "content"), keys);
    json_array_foreach(ae, i, idv) {
        const char *id = hs_ev_ref_id(idv);
        int rejected = 0;
        if (!id)
            return deny(&a, "auth_events[%zu] is not a string", i);
        const json_t *aev = fetch(ud, id, &rejected);
        if (!aev)
            return -ENOENT;
        const char *at = hs_ev_type(aev), *ask = hs_ev_state_key(aev);
        if (!at || !ask)
            return deny(&a, "auth event %s is not a state event", id);
        size_t k;
        for (k = 0; k < nk; k++)
            if (strcmp(keys[k].type, at) == 0 && strcmp(keys[k].state_key, ask) == 0)
                break;
        if (k == nk || (!rv->create_in_auth_events && strcmp(at, "m.room.create") == 0))
            return deny(&a, "auth event %s (%s, %s) is not one the event may cite", id, at, ask);
        if (seen[k]++)
            return deny(&a, "duplicate auth events for (%s, %s)", at, ask);
        if (rejected)
            return deny(&a, "auth event %s was rejected", id);
        if (!streq(hs_ev_str(aev, "room_id"), room))
            return deny(&a, "auth event %s belongs to another room", id);
        if (strcmp(at, "m.room.create") == 0)
            have_create = 1;
    }
    if (rv->create_in_auth_events && !have_create)
        return deny(&a, "auth_events do not cite the m.room.create event");
    return allow(&a);
}
