/*
 * ev_redact.c: the redaction algorithm of each room version.
 *
 * Redaction keeps a fixed list of top-level keys and, for a few event types,
 * a list of content keys.  The redacted form is what event signatures and
 * reference hashes (event IDs) cover, so it must be byte-exact with every
 * other server.  Spec: rooms/fragments/v1-redactions.md (v1..v5),
 * v6-redactions.md (v6, v7), rooms/v8.md "Redactions", v9-redactions.md
 * (v9, v10) and v11-redactions.md (v11, v12).
 */
#include "events.h"

#include <string.h>

static const char *const top_v9[] = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
    "origin_server_ts", "membership", NULL,
};

static const char *const top_v11[] = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts", NULL,
};

static const char *const member_v1[] = { "membership", NULL };
static const char *const member_v9[] = {
    "membership", "join_authorised_via_users_server", NULL,
};
static const char *const create_v9[] = { "creator", NULL };
static const char *const join_rules_v1[] = { "join_rule", NULL };
static const char *const join_rules_v8[] = { "join_rule", "allow", NULL };
static const char *const aliases_v1[] = { "aliases", NULL };
static const char *const pl_v9[] = {
    "ban", "events", "events_default", "kick", "redact", "state_default", "users",
    "users_default", NULL,
};
static const char *const pl_v11[] = {
    "ban", "events", "events_default", "invite", "kick", "redact", "state_default",
    "users", "users_default", NULL,
};
static const char *const hist_vis_keys[] = { "history_visibility", NULL };
static const char *const redaction_v11[] = { "redacts", NULL };

static int in_list(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (strcmp(*list, k) == 0)
            return 1;
    return 0;
}

/* Copy the listed keys of `src` into a new object (values shared by
 * reference, so the caller's event is not changed). */
static json_t *keep_keys(const json_t *src, const char *const *keys)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;

    if (!out)
        return NULL;
    if (!json_is_object(src) || !keys)
        return out;
    json_object_foreach((json_t *)src, k, v) {
        if (in_list(keys, k) && json_object_set(out, k, v) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static json_t *redact_content(const hs_room_version_t *rv, const char *type,
                              const json_t *content)
{
    int v11 = rv->redaction == HS_REDACT_V11;
    const char *const *keys = NULL;

    if (!type)
        return json_object();
    if (strcmp(type, "m.room.member") == 0) {
        json_t *out = keep_keys(content, rv->redaction >= HS_REDACT_V9 ? member_v9 : member_v1);
        /* v11: third_party_invite survives, reduced to its `signed` key. */
        const json_t *tpi = json_object_get(content, "third_party_invite");
        if (out && v11 && json_is_object(tpi)) {
            json_t *t = json_object();
            json_t *signed_ = json_object_get(tpi, "signed");
            if (!t || (signed_ && json_object_set(t, "signed", signed_) != 0) ||
                json_object_set_new(out, "third_party_invite", t) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    if (strcmp(type, "m.room.create") == 0) {
        if (v11)
            return json_is_object(content) ? json_deep_copy(content) : json_object();
        keys = create_v9;
    } else if (strcmp(type, "m.room.join_rules") == 0) {
        keys = rv->redaction >= HS_REDACT_V8 ? join_rules_v8 : join_rules_v1;
    } else if (strcmp(type, "m.room.power_levels") == 0) {
        keys = v11 ? pl_v11 : pl_v9;
    } else if (strcmp(type, "m.room.history_visibility") == 0) {
        keys = hist_vis_keys;
    } else if (strcmp(type, "m.room.redaction") == 0 && v11) {
        keys = redaction_v11;
    } else if (strcmp(type, "m.room.aliases") == 0 && rv->redaction == HS_REDACT_V1) {
        keys = aliases_v1;
    }
    return keep_keys(content, keys);
}

json_t *hs_event_redact_shared(const hs_room_version_t *rv, const json_t *ev)
{
    if (!rv || !json_is_object(ev))
        return NULL;
    json_t *out = keep_keys(ev, rv->redaction == HS_REDACT_V11 ? top_v11 : top_v9);
    if (!out)
        return NULL;
    json_t *content = redact_content(rv, hs_ev_type(ev), json_object_get(ev, "content"));
    if (!content || json_object_set_new(out, "content", content) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *hs_event_redact(const hs_room_version_t *rv, const json_t *ev)
{
    json_t *out = hs_event_redact_shared(rv, ev);
    if (!out)
        return NULL;
    /* keep_keys shared the caller's sub-values; hand back an independent
     * copy so callers may modify the result freely. */
    json_t *copy = json_deep_copy(out);
    json_decref(out);
    return copy;
}
