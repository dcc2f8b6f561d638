/*
 * rooms.h: what the files of the rooms part share — the room cache (one
 * entry per room, loaded lazily), the event pipeline that builds, checks and
 * queues events (rm_txn_*), the client-format conversion and the route and
 * reply helpers.  The sync part (sync/) includes it too.
 *
 * Everything here runs on the loop thread.  See rooms/README.md for the
 * design (tables, state groups, ordering of writes).
 */
#ifndef HS_ROOMS_H
#define HS_ROOMS_H

#include "../hs.h"
#include "../events/events.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------ the map ---
 * A small string-keyed hash map (chained).  Keys are copied; values are
 * borrowed pointers the caller owns. */
typedef struct rm_map rm_map_t;
rm_map_t *rm_map_new(void);
void rm_map_free(rm_map_t *m);
void *rm_map_get(const rm_map_t *m, const char *key);
int rm_map_put(rm_map_t *m, const char *key, void *val); /* replaces */
void *rm_map_del(rm_map_t *m, const char *key);          /* returns the old value */
size_t rm_map_count(const rm_map_t *m);
/* Calls fn for every entry; fn must not modify the map. */
void rm_map_each(const rm_map_t *m, void (*fn)(const char *key, void *val, void *ud), void *ud);

/* ---------------------------------------------------------- room cache ---
 * One entry per room.  `state` maps "type\x1fstate_key" to the full PDU of
 * the current state event, `state_ids` the same keys to event IDs.  The
 * cache is updated optimistically when an event is queued; a failed write
 * drops the room (it is reloaded on next use).  Refcounted: the cache holds
 * one reference, every transaction in flight one more. */
typedef struct rm_room {
    int refs;
    char *room_id;                  /* owned */
    const hs_room_version_t *rv;
    json_t *state;                  /* owned */
    json_t *state_ids;              /* owned */
    json_t *extremities;            /* owned: array of event IDs */
    int64_t depth;                  /* max depth */
    int64_t state_group;            /* current state group (0: none yet) */
    int64_t sg_deltas;              /* deltas since the last snapshot */
    int64_t last_stream;            /* stream ordering of the newest event */
    bool dropped;                   /* no longer in the cache */
} rm_room_t;

/* Called with the loaded room (borrowed, valid until the callback returns;
 * take a reference with rm_room_ref to keep it), or NULL with status
 * -ENOENT (unknown room) or a storage error. */
typedef void (*rm_room_fn)(rm_room_t *room, int status, void *ud);
/* Loads (or finds) the room; `fn` may run before rm_room_get returns. */
void rm_room_get(const char *room_id, rm_room_fn fn, void *ud);
/* The cached room or NULL (no loading). */
rm_room_t *rm_room_cached(const char *room_id);
/* A fresh, empty room for createRoom; its ID is set by rm_room_set_id (or
 * by the create event in v12).  Returned with one reference for the caller. */
rm_room_t *rm_room_new(const hs_room_version_t *rv);
void rm_room_ref(rm_room_t *r);
void rm_room_unref(rm_room_t *r);
/* Removes the room from the cache (after a failed write). */
void rm_room_drop(rm_room_t *r);

/* Borrowed state lookups on the cached current state. */
const json_t *rm_state_get(const rm_room_t *r, const char *type, const char *state_key);
const char *rm_state_id(const rm_room_t *r, const char *type, const char *state_key);
/* content.membership of the user's member event, or NULL. */
const char *rm_membership(const rm_room_t *r, const char *user_id);
/* Whether the user is joined with the power to send state event `type`. */
bool rm_may_send_state(const rm_room_t *r, const char *user_id, const char *type);
/* For an rm_room_fn: false when `room` was found; else replies (404
 * M_NOT_FOUND for -ENOENT, else the storage error) and returns true. */
bool rm_room_error(mx_req_t *req, const rm_room_t *room, int status);
/* hs_state_lookup_fn over a room's current state (ud = rm_room_t *). */
const json_t *rm_state_lookup(void *ud, const char *type, const char *state_key,
                              const char **event_id);
/* Joined members (new array reference) / counts. */
json_t *rm_room_members(const rm_room_t *r, const char *membership);
int rm_room_count(const rm_room_t *r, const char *membership);

/* ---------------------------------------------------------- the pipeline ---
 * A transaction gathers the events of one request to one room into one
 * write batch.  rm_txn_add builds an event the way the room version says
 * (prev_events, depth, auth_events, hashes, signature, event ID), checks it
 * with hs_auth_check against the current state, updates the cache and adds
 * its writes.  rm_txn_commit runs the batch; on failure the room is dropped
 * from the cache.  A transaction that is never committed must be aborted. */
typedef struct rm_txn rm_txn_t;
typedef struct rm_ev_opts {
    const char *txn_device;   /* device (or token) key of a /send txn, or NULL */
    const char *txn_id;       /* the client's txnId, or NULL (stored with the event,
                                 which rm_send.c's idempotency lookup reads) */
    const char *redacts;      /* m.room.redaction: the redacted event's ID */
    const json_t *redact_target; /* its PDU (borrowed), to redact the stored copy */
} rm_ev_opts_t;

/* Takes a reference on `room`. */
rm_txn_t *rm_txn_new(rm_room_t *room);
/* A transaction on a fresh room of version `rv` (random ID "!…:server"
 * unless the version derives it from the create event); NULL on OOM
 * (rm_create.c). */
rm_txn_t *rm_txn_new_room(const hs_room_version_t *rv);
/* Builds and queues one event.  `content` is borrowed (copied).  Returns 0
 * with *event_id (owned by the txn, valid until the commit callback returns)
 * or HS_EAUTH (why says which rule), MX_ETOOBIG, -EINVAL, -ENOMEM.  On
 * failure nothing of this event is kept; earlier events of the txn stay. */
int rm_txn_add(rm_txn_t *t, const char *type, const char *state_key, const char *sender,
               const json_t *content, const rm_ev_opts_t *opts, const char **event_id,
               char *why, size_t whylen);
/* The write batch, for extra statements of the same request (aliases...). */
mx_sql_batch_t *rm_txn_batch(rm_txn_t *t);
rm_room_t *rm_txn_room(rm_txn_t *t);
int rm_txn_count(const rm_txn_t *t);
/* status 0 once committed; the txn is freed after the callback. */
typedef void (*rm_txn_done_fn)(int status, rm_txn_t *t, void *ud);
void rm_txn_commit(rm_txn_t *t, rm_txn_done_fn cb, void *ud);
/* Forget the txn; drops the room from the cache when events were added
 * (the cache already shows them). */
void rm_txn_abort(rm_txn_t *t);

/* Answers a failed rm_txn_add: 403 M_FORBIDDEN, 413 M_TOO_LARGE, 400. */
void rm_reply_add_error(mx_req_t *req, int rc, const char *why);

/* One event and its commit, for handlers that send exactly one event:
 * replies {"event_id"} (or `reply` when not NULL, stolen) on success. */
int rm_send_one(mx_req_t *req, rm_room_t *room, const char *type, const char *state_key,
                const char *sender, const json_t *content, const rm_ev_opts_t *opts,
                json_t *reply);

/* ------------------------------------------------------- client format --- */
/* Flags for rm_client_event. */
#define RM_CE_ROOM_ID 0x1       /* keep room_id (not inside /sync rooms) */
#define RM_CE_FEDERATION 0x2    /* the stored PDU (+ event_id), filter event_format */
/* Converts a stored row to the client format.  `pdu` borrowed; `unsig` the
 * stored unsigned JSON text or NULL; `txn_device`/`txn_id` the stored txn,
 * shown only when `txn_device` equals `my_device`.  New reference. */
json_t *rm_client_event(const json_t *pdu, const char *event_id, const char *unsig,
                        const char *txn_device, const char *txn_id,
                        const char *my_device, unsigned flags);
/* Columns every event query selects, in this order, and the parser for
 * them starting at `col`: event_id, json, unsigned, txn_device, txn_id,
 * stream_ordering. */
#define RM_EV_COLS "e.event_id, e.json, e.unsigned_json, e.txn_device, e.txn_id, e.stream_ordering"
json_t *rm_row_event(const mx_sql_res_t *res, int stmt, int row, int col,
                     const char *my_device, unsigned flags);
/* A copy of the requester in the request's pool (the hs_authed_fn
 * argument may not outlive its call). */
const hs_user_t *rm_who_copy(mx_req_t *req, const hs_user_t *who);
/* The device key a txn is scoped to: device ID, else "t<token id>". */
const char *rm_device_key(mx_pool_t *pool, const hs_user_t *who);
/* Stripped state of a room for invites/knocks (new array reference). */
json_t *rm_stripped_state(const rm_room_t *r);

/* ------------------------------------------------------------- expiry ---
 * (rm_expiry.c) MSC2228 self-destructing messages, when
 * `homeserver.enable_ephemeral_messages` is on.  The pipeline calls
 * rm_expiry_on_event for every accepted event: it adds the expiry row of
 * a message carrying org.matrix.self_destruct_after to `b`. */
void rm_expiry_on_event(const rm_room_t *r, const json_t *pdu, const char *event_id,
                        mx_sql_batch_t *b);
int rm_expiry_start(char *err, size_t errlen);
void rm_expiry_stop(void);

/* -------------------------------------------------------------- tokens ---
 * /messages tokens: "t<P>" is the point after stream position P.  A /sync
 * token ("s<P>_...") is accepted too (its event position).  Returns 0 or
 * -EINVAL. */
int rm_parse_token(const char *tok, int64_t *pos);
char *rm_make_token(mx_pool_t *pool, int64_t pos);

/* -------------------------------------------------- history visibility ---
 * (rm_visibility.c) Whether a user may see an event, from the history
 * visibility and the user's membership in the state after it.  Callers add
 * the statement rm_vis_sql(pool, seed) to the batch reading a page, where
 * `seed` is a SELECT of the page's event IDs; its parameters are the user
 * ID then the seed's.  The page selects each event's state group
 * (event_to_state_group.group_id).  The SQL is allocated in `pool`. */
typedef struct rm_vis rm_vis_t;
char *rm_vis_sql(mx_pool_t *pool, const char *seed_sql);
/* Parses that statement's rows; caller frees with rm_vis_free.  NULL on ENOMEM. */
rm_vis_t *rm_vis_load(const mx_sql_res_t *res, int stmt);
/* `ev` a client-format event (its unsigned.prev_content is used);
 * `peeking`: the user is not in the room (Synapse's is_peeking).  When the
 * event is visible but its sender was erased and the user was not joined
 * at the event, `ev`'s content is replaced by its redacted form. */
bool rm_vis_visible(const rm_vis_t *v, int64_t group, json_t *ev, const char *user_id,
                    bool peeking);
void rm_vis_free(rm_vis_t *v);
/* Whether the user deactivated with erase=true. */
bool rm_user_erased(const char *user_id);
/* Loads the erased users and hooks deactivations (hs_rooms_start). */
int rm_vis_start(char *err, size_t errlen);
void rm_vis_stop(void);

/* ---------------------------------------------------------- filters ---
 * (sync/filters.c) Loads a filter for the user: inline JSON or a stored ID.
 * Callback gets the filter (borrowed) or NULL, or status -ENOENT. */
typedef void (*hs_filter_fn)(json_t *filter, int status, void *ud);
void hs_filter_load(const char *user_id, const char *spec, hs_filter_fn fn, void *ud);
/* Event filter matching (types/not_types/senders/not_senders, '*'). */
bool hs_filter_match(const json_t *evfilter, const char *type, const char *sender);
/* The same filter as an SQL condition (" AND ..." or "", in `pool`) on the
 * given columns, with string literals inlined; patterns SQL cannot express
 * exactly are left out (hs_filter_match must still be applied). */
char *hs_filter_sql(mx_pool_t *pool, const json_t *evfilter, const char *type_col,
                    const char *sender_col);

/* ------------------------------------------------------------ helpers --- */
/* Adds a route on the client resource under v3 and r0 ("/rooms/..."). */
int rm_route(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags);
/* Same under /_matrix/client/v1 only. */
int rm_route_v1(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags);
/* A JSON request body as an object (NULL and replied 400 when not). */
json_t *rm_body(mx_req_t *req);
bool rm_room_id_ok(const char *s);
int64_t rm_next_state_group(void);
void rm_set_state_group_max(int64_t max);

/* Part start functions of the rooms files (called by hs_rooms_start). */
int rm_schema_start(char *err, size_t errlen);
int rm_send_routes(void);
int rm_create_routes(void);
int rm_membership_routes(void);
int rm_state_routes(void);
int rm_messages_routes(void);
int rm_alias_routes(void);
int rm_directory_routes(void);
int rm_upgrade_routes(void);
void rm_cache_stop(void);
void rm_send_stop(void);

/* Hooks of rm_create_room for the upgrade handler (rm_upgrade.c); every
 * member may be NULL.  `before` runs right before the create event is
 * built, with the new room's ID (NULL when the room version derives it from
 * the create event) and the create content to add to; `extra` runs after
 * the last event is queued and may queue more on `t`; `submitted` runs in
 * the same loop turn right after the write batch was submitted; `after`
 * runs once it is committed and replies instead of {"room_id"}.  A nonzero
 * return from `before`/`extra` means the hook replied: the room is not made. */
typedef struct rm_create_hooks {
    int (*before)(mx_req_t *req, const char *room_id, json_t *create_content, void *ud);
    int (*extra)(mx_req_t *req, rm_txn_t *t, void *ud);
    void (*submitted)(void *ud);
    void (*after)(mx_req_t *req, const char *room_id, void *ud);
    void *ud;
} rm_create_hooks_t;

/* Creates a room (rm_create.c), shared with the upgrade handler.  Replies
 * to `req`.  `hooks` may be NULL (copied). */
int rm_create_room(mx_req_t *req, const hs_user_t *who, json_t *body,
                   const rm_create_hooks_t *hooks);

/* Does the membership change and replies (rm_membership.c). */
int rm_do_membership(mx_req_t *req, const hs_user_t *who, const char *room_id,
                     const char *target, const char *membership, const char *reason,
                     json_t *extra);

/* Removes the joined guests of a room whose guest_access is no longer
 * can_join (rm_membership.c; runs in the background). */
void rm_kick_guests(const char *room_id);

#endif /* HS_ROOMS_H */
