/*
 * events.h: the homeserver's pure event library — room versions, content
 * and reference hashes, event IDs, redaction, signing, auth-event selection
 * and the authorization rules of room versions 1 to 12.
 *
 * Everything here is a function over jansson values: no I/O, no storage, no
 * loop, no global state, so it may be called from any thread.  Events are
 * PDUs in federation format (the JSON that is hashed and signed).  Handlers
 * (rooms/, sync/, federation/) build on these; the spec sections each part
 * implements are listed in events/README.md.
 *
 * Conventions:
 *   - Functions return 0 or a negative code (-EINVAL malformed input,
 *     -ENOMEM, -ENOTSUP unsupported room version, or the HS_E* codes below).
 *   - json_t * results are new references the caller must json_decref;
 *     char * results are malloc'd and the caller must free() them.
 *   - json_t * parameters are borrowed and never modified unless the comment
 *     says "modified".
 *   - A state key inside a flat state map is "type\x1fstate_key"
 *     (HS_STATE_KEY_SEP), the format shared with state/stateres.h.
 */
#ifndef HS_EVENTS_H
#define HS_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "mx.h"

#define HS_EAUTH (-20001)    /* the auth rules reject the event (see `why`) */
#define HS_EBADSIG (-20002)  /* signature missing or wrong */
#define HS_EBADHASH (-20003) /* signature good but content hash differs:
                                use the redacted form (hs_event_redact) */

#define HS_STATE_KEY_SEP '\x1f'

/* ---------------------------------------------------------- room versions
 * One constant descriptor per room version (1..12): the flags the versions
 * differ in, as listed on the spec's rooms/v1.md .. v12.md pages. */
typedef enum {
    HS_REDACT_V1 = 1,   /* v1..v5: m.room.aliases keeps content.aliases */
    HS_REDACT_V6 = 6,   /* v6, v7: aliases no longer protected */
    HS_REDACT_V8 = 8,   /* v8: join_rules also keeps allow */
    HS_REDACT_V9 = 9,   /* v9/v10: member keeps join_authorised_via_users_server */
    HS_REDACT_V11 = 11, /* v11/v12 rules (create keeps all content, ...) */
} hs_redact_rules_t;

typedef enum {
    HS_STATERES_V1 = 10,  /* room v1 (state/stateres_v1.c) */
    HS_STATERES_V2 = 20,  /* rooms v2..v11 */
    HS_STATERES_V21 = 21, /* rooms v12: conflicted subgraph, empty start */
} hs_stateres_algo_t;

typedef enum {
    HS_EVFMT_V1 = 1, /* v1, v2: event_id is a field "$opaque:server" (hashed and
                        signed); prev_events/auth_events are [id, {hashes}] pairs */
    HS_EVFMT_V3 = 3, /* v3: ID = "$" + standard unpadded base64 reference hash */
    HS_EVFMT_V4 = 4, /* v4+: ID = "$" + URL-safe unpadded base64 reference hash */
} hs_event_format_t;

typedef struct hs_room_version {
    const char *id;              /* "1" .. "12" */
    int supported;               /* 1: we create/join/process this version */
    hs_event_format_t event_format;
    hs_redact_rules_t redaction;
    int implicit_creator;        /* v11+: creator = create sender (no content.creator) */
    int redacts_in_content;      /* v11+: m.room.redaction carries content.redacts */
    int room_id_is_create_hash;  /* v12: room ID "!"+create ref hash, create has no room_id */
    int create_in_auth_events;   /* v1..v11: must cite m.room.create; v12: must not */
    int creators_infinite_power; /* v12: sender + content.additional_creators, PL = inf */
    int aliases_rule;            /* v1..v5: auth rule for m.room.aliases (state_key = domain) */
    int redaction_rule;          /* v1, v2: auth rule 11 (redact level or same event-ID domain) */
    int strict_canonical_json;   /* v6+: no floats, integers in [-(2^53)+1, 2^53-1] */
    int key_validity;            /* v5+: signing keys must be valid at origin_server_ts
                                    (federation key checks; nothing here) */
    int knock;                   /* knock membership / join rule (v7+) */
    int restricted;              /* restricted join rule (v8+) */
    int knock_restricted;        /* knock_restricted join rule (v10+) */
    int int_power_levels;        /* PL values must be JSON integers (v10+); before,
                                    strings ("+50", " 050 ") and, v1..v5, floats count */
    int notifications_pl;        /* PL `notifications` checked by auth (v6+) */
    hs_stateres_algo_t stateres;
} hs_room_version_t;

/* The descriptor of a supported room version, or NULL when `id` is unknown
 * or known but unsupported (callers answer M_UNSUPPORTED_ROOM_VERSION /
 * M_INCOMPATIBLE_ROOM_VERSION).  The result is static; never free it. */
const hs_room_version_t *hs_room_version_get(const char *id);
/* 1 when `id` names any room version the spec defines ("1".."12"), even one
 * we do not support: auth rule 1.3 ("recognised version") uses this. */
int hs_room_version_known(const char *id);
/* The supported versions, oldest first; `*n` gets the count.  Static. */
const hs_room_version_t *const *hs_room_versions(size_t *n);

/* ------------------------------------------- event references (v1/v2) ---
 * prev_events / auth_events entries are plain event IDs from v3 on and
 * [event_id, {"sha256": content hash}] pairs in v1/v2. */
/* The event ID of one entry of either format (borrowed), or NULL. */
const char *hs_ev_ref_id(const json_t *entry);
/* An entry in the room version's format for event `id` (its PDU `ev` gives
 * the hashes in v1/v2; `ev` may be NULL there, giving an empty hashes
 * object).  New reference; NULL on error. */
json_t *hs_ev_ref_new(const hs_room_version_t *rv, const char *id, const json_t *ev);
/* A power-level value: a JSON integer; before v10 also an integer string
 * ("+50", " 0050 ") and, v1..v5, a finite real (truncated).  Pass rv NULL to
 * accept every form.  0 with *out set, or -EINVAL. */
int hs_pl_value(const hs_room_version_t *rv, const json_t *v, int64_t *out);

/* ------------------------------------------------------- small accessors
 * Borrowed strings inside `ev`, NULL when absent or not a string. */
const char *hs_ev_str(const json_t *ev, const char *key);
const char *hs_ev_type(const json_t *ev);
const char *hs_ev_sender(const json_t *ev);
const char *hs_ev_state_key(const json_t *ev);   /* NULL: not a state event */
const char *hs_ev_membership(const json_t *ev);  /* content.membership */
/* The server name of a user ID ("@a:b" -> "b"), borrowed from `user_id`;
 * NULL when there is no ':'. */
const char *hs_user_domain(const char *user_id);
/* 1 when `s` is a valid (historical grammar allowed) user ID. */
int hs_user_id_valid(const char *s);
/* "type\x1fstate_key", malloc'd. */
char *hs_state_key_join(const char *type, const char *state_key);

/* ------------------------------------------------------ hashes and IDs --- */

/* SHA-256 of the canonical JSON of `ev` without unsigned, signatures and
 * hashes (server-server API "content hash").  -EINVAL if `ev` is not an
 * object or not canonicalisable. */
int hs_event_content_hash(const json_t *ev, unsigned char out[32]);
/* SHA-256 of the canonical JSON of the redacted event without signatures
 * and unsigned ("reference hash"). */
int hs_event_reference_hash(const hs_room_version_t *rv, const json_t *ev,
                            unsigned char out[32]);
/* The event's ID: "$" + URL-safe (v4+) or standard (v3) unpadded base64 of
 * the reference hash; in v1/v2 a copy of the PDU's `event_id` field (the ID
 * is not derived from the content there).  Malloc'd; NULL on error or when a
 * v1/v2 PDU has no event_id.  From v3 on, never trust an `event_id` carried
 * in the PDU. */
char *hs_event_id(const hs_room_version_t *rv, const json_t *ev);
/* v12: the room ID a create event defines ("!" + the same hash as its event
 * ID).  Malloc'd; NULL on error or for versions without hash room IDs. */
char *hs_room_id_for_create(const hs_room_version_t *rv, const json_t *create);

/* Complete a locally built event: set hashes.sha256 (content hash), sign the
 * redacted form with `key` as `server_name` and copy the signature into
 * `ev` (modified; existing signatures of other servers are kept), then
 * compute the event ID into *event_id_out (malloc'd; may be NULL to skip).
 * v1/v2: first sets `event_id` to a new "$<random>:<server_name>" (it is
 * part of what is hashed and signed).
 * `ev` must already hold type, sender, room_id (not for a v12 create),
 * content, prev_events, auth_events (in the version's format: see
 * hs_ev_ref_new), depth, origin_server_ts and, for state events, state_key;
 * it must not hold event_id. */
int hs_event_finish(const hs_room_version_t *rv, json_t *ev, const char *server_name,
                    const mx_signing_key_t *key, char **event_id_out);

/* Check an inbound event: the signature of `server_name` with `key_id` and
 * the public key `pk_b64` on the redacted form, then the content hash.
 * Returns 0 when both are good, HS_EBADSIG when the signature is missing or
 * wrong (drop the event), HS_EBADHASH when only the content hash differs
 * (keep the redacted form instead), -EINVAL when malformed.  Call it once
 * per server in hs_event_signers(). */
int hs_event_verify_hashes_and_sig(const hs_room_version_t *rv, const json_t *ev,
                                   const char *server_name, const char *key_id,
                                   const char *pk_b64);
/* The servers whose signatures an inbound event needs: the sender's server,
 * v1/v2: the server of the event ID, and, for a member event with content.join_authorised_via_users_server, the
 * authorising user's server (auth rule 5.2).  New reference: a JSON array of
 * distinct server-name strings. */
json_t *hs_event_signers(const hs_room_version_t *rv, const json_t *ev);

/* ------------------------------------------------------------ redaction --- */

/* The redacted form of `ev` under the room version's rules (top-level keys
 * and per-type content keys).  New reference; NULL on error.  `unsigned` is
 * dropped like every other unlisted key. */
json_t *hs_event_redact(const hs_room_version_t *rv, const json_t *ev);
/* The same without copying: the result's values are `ev`'s own (shared
 * references), so only its top level may be changed.  For hashing and
 * signing, which only read it. */
json_t *hs_event_redact_shared(const hs_room_version_t *rv, const json_t *ev);

/* -------------------------------------------------------- auth state ---
 * The auth rules and the selection read room state through a lookup:
 * (type, state_key) -> event.  The result is borrowed (valid for the call);
 * NULL when the state has no such entry.  If `event_id` is non-NULL the
 * lookup may store the event's ID there (borrowed) or NULL, in which case
 * the library computes it from the event when needed.
 * v12: the create event is not cited in auth_events, but lookups used for
 * auth MUST still return it for ("m.room.create", "") — it is implied by
 * the room ID. */
typedef const json_t *(*hs_state_lookup_fn)(void *ud, const char *type,
                                            const char *state_key,
                                            const char **event_id);

/* A ready-made lookup over a JSON object {"type\x1fstate_key": event}.
 * `ud` is that object (borrowed). Sets *event_id to NULL. */
const json_t *hs_state_lookup_json(void *ud, const char *type, const char *state_key,
                                   const char **event_id);

/* Event by ID, for callers that walk auth_events: borrowed event or NULL
 * when unknown; *rejected (if non-NULL) is set to 1 when the event was
 * rejected on receipt (failed auth against its own auth events). */
typedef const json_t *(*hs_event_fetch_fn)(void *ud, const char *event_id, int *rejected);

/* ---------------------------------------------- auth events selection --- */

#define HS_AUTH_KEYS_MAX 8
typedef struct hs_auth_key {
    const char *type;      /* borrowed (static or from the event) */
    const char *state_key; /* borrowed */
} hs_auth_key_t;

/* The (type, state_key) pairs the auth rules may read for an event of this
 * shape (server-server API "Auth events selection").  Includes
 * ("m.room.create","") in every version, because the rules read it (v12:
 * implied by the room ID).  Strings are borrowed from the arguments.
 * Returns the count (0 for a create event). */
size_t hs_auth_types(const hs_room_version_t *rv, const char *type, const char *sender,
                     const char *state_key, const json_t *content,
                     hs_auth_key_t out[HS_AUTH_KEYS_MAX]);
/* The auth_events an event must cite: the IDs of the events found by
 * `lookup` for hs_auth_types(), without the create event in v12.  New
 * reference: a JSON array of entries in the version's format (event-ID
 * strings; v1/v2 [id, hashes] pairs), empty for a create event; NULL on
 * error. */
json_t *hs_auth_events_select(const hs_room_version_t *rv, const char *type,
                              const char *sender, const char *state_key,
                              const json_t *content, hs_state_lookup_fn lookup, void *ud);

/* ---------------------------------------------------------- power levels ---
 * `create` and `pl` are the m.room.create and m.room.power_levels events of
 * the auth state (`pl` may be NULL; `create` may be NULL only when the
 * caller accepts "no creator"). */
#define HS_POWER_INFINITE INT64_MAX
/* 1 when `user_id` is a room creator: the create sender (v11+) or
 * content.creator (v10); v12 also content.additional_creators. */
int hs_is_creator(const hs_room_version_t *rv, const json_t *create, const char *user_id);
/* A user's power level: HS_POWER_INFINITE for v12 creators; users[u], else
 * users_default, else 0; with no PL event, 100 for the creator, 0 others. */
int64_t hs_user_power(const hs_room_version_t *rv, const json_t *create, const json_t *pl,
                      const char *user_id);
/* A named level of the PL event ("invite", "kick", "ban", "redact",
 * "state_default", "events_default", "users_default") or `def`. */
int64_t hs_named_power(const json_t *pl, const char *name, int64_t def);
/* Required level to send an event: events[type], else state_default (50)
 * for state events, events_default (0) otherwise. */
int64_t hs_event_required_power(const json_t *pl, const char *type, int is_state);

/* ------------------------------------------------------------ auth rules --- */

/* The authorization rules of the room version (rules 1, 2 and 4..11 of the
 * v12 list; 1 and 3..10 of v10/v11) for `ev` against the auth state given by
 * `lookup` (built from the event's auth_events, the state before the event,
 * or the current state).  Returns 0 when allowed, HS_EAUTH when rejected,
 * with a human-readable reason in `why` (may be NULL).  The `auth_events`
 * sanity rules (v12 rule 3) are hs_auth_check_auth_events; signatures are
 * checked on receipt (hs_event_verify_hashes_and_sig) — this only checks
 * that the join authoriser's server signed at all. */
int hs_auth_check(const hs_room_version_t *rv, const json_t *ev, hs_state_lookup_fn lookup,
                  void *ud, char *why, size_t whylen);

/* The rules about the cited auth_events themselves (v12 rule 3, v10/v11
 * rule 2): no duplicate (type, state_key), only selected types (v12: no
 * create event), none rejected, same room_id, v10/v11: a create event is
 * cited.  `fetch` resolves each ID.  0, HS_EAUTH (with `why`) or -ENOENT
 * when an auth event is unknown. */
int hs_auth_check_auth_events(const hs_room_version_t *rv, const json_t *ev,
                              hs_event_fetch_fn fetch, void *ud, char *why, size_t whylen);

#endif /* HS_EVENTS_H */
