/*
 * ev_select.c: auth events selection — which state events an event must
 * cite in `auth_events`, and which state keys the auth rules read.
 *
 * Spec: server-server API "Auth events selection" (v1.16: the create event
 * is selected only in room versions before 12) and rooms/v12.md (the create
 * event is implied by the room ID and MUST NOT be cited).  v1/v2 cite
 * [event_id, {hashes}] pairs, later versions plain IDs.
 */
#include "events.h"

#include <stdlib.h>
#include <string.h>

static size_t add_key(hs_auth_key_t *out, size_t n, const char *type, const char *sk)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(out[i].type, type) == 0 && strcmp(out[i].state_key, sk) == 0)
            return n;
    if (n < HS_AUTH_KEYS_MAX) {
        out[n].type = type;
        out[n].state_key = sk;
        n++;
    }
    return n;
}

size_t hs_auth_types(const hs_room_version_t *rv, const char *type, const char *sender,
                     const char *state_key, const json_t *content,
                     hs_auth_key_t out[HS_AUTH_KEYS_MAX])
{
    size_t n = 0;

    if (!rv || !type || !sender || strcmp(type, "m.room.create") == 0)
        return 0;
    n = add_key(out, n, "m.room.create", "");
    n = add_key(out, n, "m.room.power_levels", "");
    n = add_key(out, n, "m.room.member", sender);
    if (strcmp(type, "m.room.member") != 0 || !state_key)
        return n;

    const char *m = json_string_value(json_object_get(content, "membership"));
    n = add_key(out, n, "m.room.member", state_key);
    if (!m)
        return n;
    if (strcmp(m, "join") == 0 || strcmp(m, "invite") == 0 ||
        (rv->knock && strcmp(m, "knock") == 0))
        n = add_key(out, n, "m.room.join_rules", "");
    if (strcmp(m, "invite") == 0) {
        const char *token = json_string_value(json_object_get(
            json_object_get(json_object_get(content, "third_party_invite"), "signed"),
            "token"));
        if (token)
            n = add_key(out, n, "m.room.third_party_invite", token);
    }
    if (rv->restricted && strcmp(m, "join") == 0) {
        const char *via = json_string_value(
            json_object_get(content, "join_authorised_via_users_server"));
        if (via)
            n = add_key(out, n, "m.room.member", via);
    }
    return n;
}

json_t *hs_auth_events_select(const hs_room_version_t *rv, const char *type,
                              const char *sender, const char *state_key,
                              const json_t *content, hs_state_lookup_fn lookup, void *ud)
{
    hs_auth_key_t keys[HS_AUTH_KEYS_MAX];
    size_t n = hs_auth_types(rv, type, sender, state_key, content, keys);
    json_t *out = json_array();

    if (!out || !rv || !lookup)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (!rv->create_in_auth_events && strcmp(keys[i].type, "m.room.create") == 0)
            continue;
        const char *id = NULL;
        const json_t *ev = lookup(ud, keys[i].type, keys[i].state_key, &id);
        if (!ev)
            continue;
        char *own = NULL;
        if (!id && !(id = own = hs_event_id(rv, ev)))
            goto fail;
        int rc = json_array_append_new(out, hs_ev_ref_new(rv, id, ev));
        free(own);
        if (rc != 0)
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}
