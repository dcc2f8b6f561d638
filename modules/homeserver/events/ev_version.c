/*
 * ev_version.c: the room-version table.
 *
 * Each room version is a constant descriptor of the flags that change
 * behaviour elsewhere in events/ and state/ (event format and IDs,
 * redaction rules, auth-rule differences, creator handling, room-ID format,
 * state resolution algorithm).  All spec versions 1..12 are supported.
 * Spec: "Room Versions" and the per-version pages rooms/v1.md .. v12.md
 * (with the fragments they include).
 */
#include "events.h"

#include <string.h>

/* What changes from one version to the next (rooms/vN.md "Server
 * implementation components"):
 *   v1  event IDs "$opaque:domain", (id, hash) pairs, state res v1, stringy
 *       and floaty power levels, aliases auth rule, redaction auth rule
 *   v2  state resolution v2
 *   v3  event IDs = reference hash (standard base64), plain ID lists,
 *       redactions no longer an auth rule
 *   v4  URL-safe event IDs
 *   v5  signing-key validity period
 *   v6  strict canonical JSON, aliases auth rule and aliases redaction gone,
 *       `notifications` in PL auth
 *   v7  knocking
 *   v8  restricted joins, join_rules keeps `allow` on redaction
 *   v9  member keeps join_authorised_via_users_server on redaction
 *   v10 integer-only power levels, knock_restricted
 *   v11 implicit creator, redacts in content, v11 redaction
 *   v12 room ID = create hash, infinite creator power, state res v2.1 */
#define RV_COMMON .supported = 1, .create_in_auth_events = 1

static const hs_room_version_t rv1 = {
    .id = "1", RV_COMMON, .event_format = HS_EVFMT_V1, .redaction = HS_REDACT_V1,
    .aliases_rule = 1, .redaction_rule = 1, .stateres = HS_STATERES_V1,
};
static const hs_room_version_t rv2 = {
    .id = "2", RV_COMMON, .event_format = HS_EVFMT_V1, .redaction = HS_REDACT_V1,
    .aliases_rule = 1, .redaction_rule = 1, .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv3 = {
    .id = "3", RV_COMMON, .event_format = HS_EVFMT_V3, .redaction = HS_REDACT_V1,
    .aliases_rule = 1, .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv4 = {
    .id = "4", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V1,
    .aliases_rule = 1, .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv5 = {
    .id = "5", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V1,
    .aliases_rule = 1, .key_validity = 1, .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv6 = {
    .id = "6", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V6,
    .strict_canonical_json = 1, .key_validity = 1, .notifications_pl = 1,
    .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv7 = {
    .id = "7", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V6,
    .strict_canonical_json = 1, .key_validity = 1, .notifications_pl = 1, .knock = 1,
    .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv8 = {
    .id = "8", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V8,
    .strict_canonical_json = 1, .key_validity = 1, .notifications_pl = 1, .knock = 1,
    .restricted = 1, .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv9 = {
    .id = "9", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V9,
    .strict_canonical_json = 1, .key_validity = 1, .notifications_pl = 1, .knock = 1,
    .restricted = 1, .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv10 = {
    .id = "10", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V9,
    .strict_canonical_json = 1, .key_validity = 1, .notifications_pl = 1, .knock = 1,
    .restricted = 1, .knock_restricted = 1, .int_power_levels = 1,
    .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv11 = {
    .id = "11", RV_COMMON, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V11,
    .implicit_creator = 1, .redacts_in_content = 1,
    .strict_canonical_json = 1, .key_validity = 1, .notifications_pl = 1, .knock = 1,
    .restricted = 1, .knock_restricted = 1, .int_power_levels = 1,
    .stateres = HS_STATERES_V2,
};
static const hs_room_version_t rv12 = {
    .id = "12", .supported = 1, .event_format = HS_EVFMT_V4, .redaction = HS_REDACT_V11,
    .implicit_creator = 1, .redacts_in_content = 1, .room_id_is_create_hash = 1,
    .create_in_auth_events = 0, .creators_infinite_power = 1,
    .strict_canonical_json = 1, .key_validity = 1, .notifications_pl = 1, .knock = 1,
    .restricted = 1, .knock_restricted = 1, .int_power_levels = 1,
    .stateres = HS_STATERES_V21,
};

static const hs_room_version_t *const supported[] = {
    &rv1, &rv2, &rv3, &rv4, &rv5, &rv6, &rv7, &rv8, &rv9, &rv10, &rv11, &rv12,
};

const hs_room_version_t *hs_room_version_get(const char *id)
{
    if (!id)
        return NULL;
    for (size_t i = 0; i < sizeof(supported) / sizeof(supported[0]); i++)
        if (strcmp(supported[i]->id, id) == 0)
            return supported[i];
    return NULL;
}

int hs_room_version_known(const char *id)
{
    return hs_room_version_get(id) != NULL;
}

const hs_room_version_t *const *hs_room_versions(size_t *n)
{
    if (n)
        *n = sizeof(supported) / sizeof(supported[0]);
    return supported;
}
