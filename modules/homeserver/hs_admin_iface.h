/*
 * hs_admin_iface.h: the `homeserver.admin` service — what the admin module
 * (Synapse's Admin API) may ask of the homeserver.
 *
 * The homeserver owns users, devices, rooms, media and reports; the admin
 * module never reads those tables.  It parses and checks the HTTP request,
 * calls one of these functions and turns the result into the reply.  The
 * shapes are JSON in, JSON out, close to Synapse's response bodies, so the
 * same interface can later be carried over HTTP when the two modules run in
 * different processes.
 *
 * Conventions for every function:
 *   - Arguments are borrowed (copied when needed); the call returns 0 (the
 *     callback will run later, on the loop) or a negative code (it will not
 *     run).
 *   - The callback gets `status` 0 and `result` (a JSON value whose
 *     reference passes to the callback), or a negative status:
 *       -ENOENT  the user / room / token / report / media does not exist
 *       -EINVAL  bad argument; -EEXIST already exists; -EPERM not allowed
 *       other    storage error
 *     On error `result` may be an object {errcode, error} naming the Matrix
 *     error to send (or NULL); the callback still owns it.
 *   - Everything runs on the loop thread.
 */
#ifndef HS_ADMIN_IFACE_H
#define HS_ADMIN_IFACE_H

#include "mx.h"

#include <stdbool.h>
#include <stdint.h>

#define HS_ADMIN_SERVICE "homeserver.admin"

typedef void (*hs_admin_done_fn)(int status, json_t *result, void *ud);

typedef struct hs_admin_iface {
    uint32_t size;   /* sizeof(hs_admin_iface_t) of the provider */

    /* ------------------------------------------------------------ users */
    /* q: {from, limit, name, user_id, guests, deactivated, admins, locked,
     * user_type, order_by, dir} (all optional; from/limit integers, flags
     * booleans or null) → {users:[...], total, next_token?}. */
    int (*list_users)(const json_t *q, hs_admin_done_fn cb, void *ud);
    /* → Synapse's user details object (name, displayname, avatar_url,
     * threepids, external_ids, admin, deactivated, erased, shadow_banned,
     * locked, creation_ts, user_type, is_guest, last_seen_ts...). */
    int (*get_user)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* Creates (when missing) or modifies a local user.  body: {password,
     * logout_devices, displayname, avatar_url, admin, deactivated, locked,
     * user_type} → {created: bool, user: {details}}. */
    int (*upsert_user)(const char *user_id, const json_t *body, hs_admin_done_fn cb, void *ud);
    /* Deactivates (and with `erase`, erases) → {id_server_unbind_result}. */
    int (*deactivate_user)(const char *user_id, bool erase, hs_admin_done_fn cb, void *ud);
    /* Sets a new password (hashed here) → {}. */
    int (*reset_password)(const char *user_id, const char *password, bool logout_devices,
                          hs_admin_done_fn cb, void *ud);
    /* flag: "admin", "shadow_banned" or "locked" → {} */
    int (*set_user_flag)(const char *user_id, const char *flag, bool value, hs_admin_done_fn cb,
                         void *ud);
    /* → {user_id, devices: {id: {sessions: [{connections: [...]}]}}} */
    int (*whois)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* localpart → {available: true}; -EEXIST (M_USER_IN_USE) / -EINVAL. */
    int (*username_available)(const char *localpart, hs_admin_done_fn cb, void *ud);
    /* A new access token without device, valid until `valid_until_ms`
     * (0: no expiry) → {access_token}. */
    int (*login_as)(const char *user_id, int64_t valid_until_ms, hs_admin_done_fn cb, void *ud);
    /* → {joined_rooms: [...], total} */
    int (*joined_rooms)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* → {memberships: {room_id: membership}} */
    int (*memberships)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* → {account_data: {global: {type: content}, rooms: {room: {...}}}} */
    int (*account_data)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* → {pushers: [...], total} */
    int (*pushers)(const char *user_id, hs_admin_done_fn cb, void *ud);

    /* ---------------------------------------------------------- devices */
    /* → {devices: [...], total} */
    int (*list_devices)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* → the device object */
    int (*get_device)(const char *user_id, const char *device_id, hs_admin_done_fn cb, void *ud);
    /* Creates a device (no token) → {}; an existing one is left alone. */
    int (*create_device)(const char *user_id, const char *device_id, hs_admin_done_fn cb,
                         void *ud);
    /* display_name NULL clears it → {} (-ENOENT for an unknown device) */
    int (*update_device)(const char *user_id, const char *device_id, const char *display_name,
                         hs_admin_done_fn cb, void *ud);
    /* device_ids: array of strings; unknown ones are ignored → {} */
    int (*delete_devices)(const char *user_id, const json_t *device_ids, hs_admin_done_fn cb,
                          void *ud);

    /* ------------------------------------------------------------ rooms */
    /* q: {from, limit, order_by, dir, search_term, public_rooms,
     * empty_rooms} → {rooms, offset, total_rooms, next_batch?, prev_batch?} */
    int (*list_rooms)(const json_t *q, hs_admin_done_fn cb, void *ud);
    /* → room details (the list object + avatar, topic, forgotten...) */
    int (*room_details)(const char *room_id, hs_admin_done_fn cb, void *ud);
    /* → {members: [user_id...], total} */
    int (*room_members)(const char *room_id, hs_admin_done_fn cb, void *ud);
    /* type NULL: all current state → {state: [events]} */
    int (*room_state)(const char *room_id, const char *type, hs_admin_done_fn cb, void *ud);
    /* q: {from, to, dir, limit} → {chunk, start, end?} */
    int (*room_messages)(const char *room_id, const json_t *q, hs_admin_done_fn cb, void *ud);
    /* Starts a room deletion in the background.  opts: {block, purge,
     * requester, new_room_user_id?, room_name?, message?} → {delete_id}.
     * The members leave through the rooms pipeline; with new_room_user_id
     * they join a new room made by that user (the old aliases point
     * there); with purge the room's rows go. */
    int (*delete_room)(const char *room_id, const json_t *opts, hs_admin_done_fn cb, void *ud);
    /* Status of deletions: by room (room_id set) or by delete ID →
     * {results: [{delete_id, room_id, status, error?, shutdown_room}]}. */
    int (*delete_status)(const char *room_id, const char *delete_id, hs_admin_done_fn cb,
                         void *ud);
    /* block: -1 only reads → {block, user_id?}; 0/1 sets → {block} */
    int (*room_block)(const char *room_id, int block, const char *by_user, hs_admin_done_fn cb,
                      void *ud);
    /* Is this room blocked (join/create refused)?  Cached, synchronous. */
    bool (*room_is_blocked)(const char *room_id);

    /* -------------------------------------------- registration tokens */
    /* valid: -1 all, 0 invalid only, 1 valid only → {registration_tokens} */
    int (*list_regtokens)(int valid, hs_admin_done_fn cb, void *ud);
    int (*get_regtoken)(const char *token, hs_admin_done_fn cb, void *ud);
    /* body: {token?, length?, uses_allowed?, expiry_time?} → token object */
    int (*create_regtoken)(const json_t *body, hs_admin_done_fn cb, void *ud);
    /* body: {uses_allowed?, expiry_time?} (null clears) → token object */
    int (*update_regtoken)(const char *token, const json_t *body, hs_admin_done_fn cb, void *ud);
    int (*delete_regtoken)(const char *token, hs_admin_done_fn cb, void *ud);

    /* ---------------------------------------------------- event reports */
    /* q: {from, limit, dir, room_id, user_id} → {event_reports, total,
     * next_token?} */
    int (*list_event_reports)(const json_t *q, hs_admin_done_fn cb, void *ud);
    int (*get_event_report)(int64_t id, hs_admin_done_fn cb, void *ud);
    int (*delete_event_report)(int64_t id, hs_admin_done_fn cb, void *ud);

    /* --------------------------------------------------- server notices */
    /* body: {user_id, content, type?, state_key?} → {event_id}: sent by
     * the `server_notices` system user into the user's notices room (made
     * and tagged m.server_notice on first use).  -EINVAL when not set up. */
    int (*send_server_notice)(const json_t *body, hs_admin_done_fn cb, void *ud);

    /* ------------------------------------------------------------ media */
    /* q: {from, limit, order_by, dir} → {media, total, next_token?} */
    int (*user_media)(const char *user_id, const json_t *q, hs_admin_done_fn cb, void *ud);
    /* Deletes every local media of the user → {deleted_media, total} */
    int (*delete_user_media)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* → {media_info: {...}} */
    int (*media_info)(const char *media_id, hs_admin_done_fn cb, void *ud);
    /* → {deleted_media: [id], total: 1} */
    int (*delete_media)(const char *media_id, hs_admin_done_fn cb, void *ud);
    /* by_user NULL lifts the quarantine → {} */
    int (*quarantine_media)(const char *media_id, const char *by_user, hs_admin_done_fn cb,
                            void *ud);
    /* Quarantines every local media of the user → {num_quarantined} */
    int (*quarantine_user_media)(const char *user_id, const char *by_user, hs_admin_done_fn cb,
                                 void *ud);

    /* ------------------------------------------------------- statistics */
    /* q: {from, limit, order_by, dir, search_term} → {users, total, next_token?} */
    int (*stats_users_media)(const json_t *q, hs_admin_done_fn cb, void *ud);
    /* → {rooms: [{room_id, estimated_size}]} */
    int (*stats_database_rooms)(hs_admin_done_fn cb, void *ud);

    /* ------------------------------------------------- purge history --- */
    /* Starts deleting the room's history before `opts.event_id` (or before
     * the first event at or after `opts.purge_up_to_ts`) in the background,
     * in steps that survive a restart.  opts: {event_id?, purge_up_to_ts?,
     * delete_local_events} → {purge_id}; -ENOENT unknown room or event,
     * -EEXIST a purge of the room already runs. */
    int (*purge_history)(const char *room_id, const json_t *opts, hs_admin_done_fn cb, void *ud);
    /* → {status: active|complete|failed, error?} */
    int (*purge_history_status)(const char *purge_id, hs_admin_done_fn cb, void *ud);

    /* ------------------------------------------ federation destinations --- */
    /* q: {from, limit, order_by, dir, destination} → {destinations, total,
     * next_token?} */
    int (*list_destinations)(const json_t *q, hs_admin_done_fn cb, void *ud);
    /* → the destination object (-ENOENT unknown) */
    int (*get_destination)(const char *destination, hs_admin_done_fn cb, void *ud);
    /* q: {from, limit, dir} → {rooms: [{room_id, stream_ordering}], total,
     * next_token?} */
    int (*destination_rooms)(const char *destination, const json_t *q, hs_admin_done_fn cb,
                             void *ud);
    /* Clears the retry timings → {}; -EINVAL when not in backoff. */
    int (*reset_destination)(const char *destination, hs_admin_done_fn cb, void *ud);

    /* ------------------------------------------- rate-limit overrides --- */
    /* → {messages_per_second, burst_count}, or {} without an override */
    int (*get_ratelimit)(const char *user_id, hs_admin_done_fn cb, void *ud);
    /* per_second / burst >= 0 set (0: not limited); per_second < 0 removes
     * → the new values ({} when removed). */
    int (*set_ratelimit)(const char *user_id, int64_t per_second, int64_t burst,
                         hs_admin_done_fn cb, void *ud);

    /* ---------------------------------------------- room maintenance --- */
    /* → {count, results: [{event_id, state_group, depth, received_ts}]} */
    int (*forward_extremities)(const char *room_id, hs_admin_done_fn cb, void *ud);
    /* Keeps the newest extremity only → {deleted} */
    int (*delete_forward_extremities)(const char *room_id, hs_admin_done_fn cb, void *ud);
    /* Gives local `user_id` the power level of the room's most powerful
     * local member (inviting it first when it cannot join) → {}. */
    int (*make_room_admin)(const char *room_id, const char *user_id, hs_admin_done_fn cb,
                           void *ud);

    /* ------------------------------------------------- media clean-up --- */
    /* Local media last used before q.before_ts, larger than q.size_gt,
     * neither protected nor quarantined, with q.keep_profiles the avatars
     * kept → {deleted_media, total} */
    int (*delete_old_media)(const json_t *q, hs_admin_done_fn cb, void *ud);
    /* Remote media cached before `before_ts` → {deleted} */
    int (*purge_remote_media)(int64_t before_ts, hs_admin_done_fn cb, void *ud);
    /* Protects local media from quarantine (protect false lifts it) → {} */
    int (*protect_media)(const char *media_id, bool protect, hs_admin_done_fn cb, void *ud);
} hs_admin_iface_t;

#endif /* HS_ADMIN_IFACE_H */
