/*
 * stateres.h: state resolution v1 (room version 1), v2 (room versions
 * 2..11) and v2.1 (room version 12) — a pure function from N state maps to
 * one.
 *
 * A state map is a JSON object {"type\x1fstate_key": "$event_id"}
 * (HS_STATE_KEY_SEP, see events/events.h).  Events are read through a
 * fetch callback; auth chains are computed by walking auth_events through
 * that same callback (v12: the create event, implied by the room ID, counts
 * as an auth event of every other event).  No I/O, no global state: call it
 * from any thread, with a fetcher that is safe there.  Spec: rooms/v12.md
 * and rooms/fragments/v2-state-res.md "State resolution"; see state/README.md.
 */
#ifndef HS_STATERES_H
#define HS_STATERES_H

#include <stddef.h>
#include <jansson.h>

#include "../events/events.h"

/* Resolve `nsets` state maps (borrowed) into one.  `fetch` must know every
 * event named in the maps and in their auth chains; events it reports as
 * rejected are never used as auth events (spec: "Rejected events").
 * On success *out is a new state map (new reference) and 0 is returned;
 * -ENOENT when an event is unknown (the caller fetches it and retries),
 * -EINVAL on malformed input, -ENOTSUP for an unsupported room version,
 * -ENOMEM.  `why` (may be NULL) says which event was missing or bad. */
int hs_stateres(const hs_room_version_t *rv, const json_t *const *sets, size_t nsets,
                hs_event_fetch_fn fetch, void *ud, json_t **out, char *why, size_t whylen);

/* Room version 1's algorithm (rooms/v1.md "State resolution"), same
 * contract; hs_stateres calls it for versions whose `stateres` is
 * HS_STATERES_V1.  Auth chains are not walked: only the events the maps
 * name are fetched. */
int hs_stateres_v1(const hs_room_version_t *rv, const json_t *const *sets, size_t nsets,
                   hs_event_fetch_fn fetch, void *ud, json_t **out, char *why, size_t whylen);

#endif /* HS_STATERES_H */
