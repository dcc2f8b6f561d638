/*
 * ev_version.c: the room-version table.
 *
 * Each room version is a constant descriptor of the flags that change
 * behaviour elsewhere in events/ and state/ (redaction rules, creator
 * handling, room-ID format, state resolution algorithm).  We support 10, 11
 * and 12; older versions are recognised (auth rule 1.3 accepts a create
 * event naming them) but not supported.  Spec: "Room Versions" and the
 * per-version pages rooms/v10.md, v11.md, v12.md.
 */
#include "events.h"

#include <string.h>

static const hs_room_version_t rv10 = {
    .id = "10", .supported = 1, .redaction = HS_REDACT_V9,
    .implicit_creator = 0, .redacts_in_content = 0, .room_id_is_create_hash = 0,
    .create_in_auth_events = 1, .creators_infinite_power = 0,
    .knock = 1, .restricted = 1, .knock_restricted = 1,
    .int_power_levels = 1, .notifications_pl = 1, .stateres = HS_STATERES_V2,
};

static const hs_room_version_t rv11 = {
    .id = "11", .supported = 1, .redaction = HS_REDACT_V11,
    .implicit_creator = 1, .redacts_in_content = 1, .room_id_is_create_hash = 0,
    .create_in_auth_events = 1, .creators_infinite_power = 0,
    .knock = 1, .restricted = 1, .knock_restricted = 1,
    .int_power_levels = 1, .notifications_pl = 1, .stateres = HS_STATERES_V2,
};

static const hs_room_version_t rv12 = {
    .id = "12", .supported = 1, .redaction = HS_REDACT_V11,
    .implicit_creator = 1, .redacts_in_content = 1, .room_id_is_create_hash = 1,
    .create_in_auth_events = 0, .creators_infinite_power = 1,
    .knock = 1, .restricted = 1, .knock_restricted = 1,
    .int_power_levels = 1, .notifications_pl = 1, .stateres = HS_STATERES_V21,
};

static const hs_room_version_t *const supported[] = { &rv10, &rv11, &rv12 };

/* Versions the spec defines but we do not implement (old event formats,
 * state resolution v1, stringy power levels). */
static const char *const known_unsupported[] = {
    "1", "2", "3", "4", "5", "6", "7", "8", "9",
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
    if (hs_room_version_get(id))
        return 1;
    if (!id)
        return 0;
    for (size_t i = 0; i < sizeof(known_unsupported) / sizeof(known_unsupported[0]); i++)
        if (strcmp(known_unsupported[i], id) == 0)
            return 1;
    return 0;
}

const hs_room_version_t *const *hs_room_versions(size_t *n)
{
    if (n)
        *n = sizeof(supported) / sizeof(supported[0]);
    return supported;
}
