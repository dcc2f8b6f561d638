/*
 * client.h: the "client" part of the homeserver — the Client-Server
 * handlers that are neither accounts nor the room/sync core: profiles,
 * account data and room tags, typing, receipts and read markers, presence,
 * the user directory, reports, OpenID tokens and a few small endpoints.
 *
 * The part owns the tables profiles, account_data, receipts, presence,
 * event_reports, room_reports and open_id_tokens (schema
 * "homeserver.client", cl_schema.c).  It reads the rooms part's
 * room_memberships, events and current_state tables read-only (who shares
 * a room with whom, whether an event is in a room), and sends member events
 * through the rooms pipeline (rm_txn_*).
 *
 * The first block is what other parts may call; the rest is shared by the
 * files of this part only.  Everything runs on the loop thread.
 */
#ifndef HS_CLIENT_H
#define HS_CLIENT_H

#include "../hs.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------ for the other parts --- */

/* /sync's `set_presence` (sync part): `state` is "online" (also when NULL),
 * "unavailable" or "offline" ("offline" leaves the presence alone, as in
 * Synapse).  Marks the user as syncing and active; a change of state is
 * written and announced on HS_STREAM_PRESENCE.  Never fails visibly. */
void hs_presence_set_from_sync(const char *user_id, const char *state);

/* A local user's profile.  `displayname` / `avatar_url` are NULL when unset,
 * borrowed until the callback returns.  `status` 0 with `found` false: the
 * user has no profile (unknown user); negative: storage error. */
typedef void (*hs_profile_fn)(int status, bool found, const char *displayname,
                              const char *avatar_url, void *ud);
/* For membership events (join/invite content).  Returns 0 (callback runs
 * later) or a negative code (it will not run). */
int hs_profile_get(const char *user_id, hs_profile_fn cb, void *ud);

/* Adds to `b` (a read or write batch) one statement selecting the content
 * of one of the user's account data items: column 0 is the JSON text, no
 * row when unset.  `room_id` "" for a global item.  For parts that need
 * account data inside their own batch (m.ignored_user_list, relations/).
 * Returns mx_sql_add's result. */
int hs_account_data_select(mx_sql_batch_t *b, const char *user_id, const char *room_id,
                           const char *type);

/* Frees the part's in-memory state and closes its timers.  Safe to call
 * more than once.  (homeserver.c's stop should call it; the timers are
 * unref'd so they never keep the loop alive on their own.) */
void hs_client_stop(void);

/* ----------------------------------------------- inside the client part --- */

/* Adds `suffix` under /_matrix/client/v3 and /_matrix/client/r0 on the
 * client resource. */
int cl_route(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags);

/* A request's authenticated state, allocated in the request pool. */
typedef struct cl_req {
    mx_req_t *req;
    const hs_user_t *who;   /* copy in the request pool */
    const char *room_id;    /* path parameter, or NULL */
    void *ud;               /* per-handler data */
} cl_req_t;
/* Allocates a cl_req_t for `req` with a pool copy of `who`; NULL (and
 * replied 500) on ENOMEM. */
cl_req_t *cl_req_new(mx_req_t *req, const hs_user_t *who);

/* Continues with `fn` when `cr->who` is joined to `cr->room_id` (checked on
 * the rooms part's cache); otherwise replies 403 M_FORBIDDEN. */
typedef void (*cl_joined_fn)(cl_req_t *cr);
void cl_require_joined(cl_req_t *cr, cl_joined_fn fn);

/* True when `path_user` equals the requester; otherwise replies 403
 * M_FORBIDDEN with `why` and returns false. */
bool cl_is_self(mx_req_t *req, const hs_user_t *who, const char *path_user, const char *why);

/* True when the JSON array `arr` holds the string `s`. */
bool cl_json_has_string(const json_t *arr, const char *s);

/* Room IDs as clients send them: "!..." up to 255 bytes. */
bool cl_room_id_ok(const char *room_id);

/* Writes one account data item into `b` (global when room_id is "").
 * `content` is borrowed (serialised here).  Returns the HS_STREAM_ACCOUNT_
 * DATA position allocated (> 0), which the caller reports with
 * cl_ad_written() once the batch finished, or a negative code (nothing
 * allocated). */
int64_t cl_ad_add(mx_sql_batch_t *b, const char *user_id, const char *room_id,
                  const char *type, const json_t *content);
/* Closes the stream position and, when `ok`, wakes the user's /syncs. */
void cl_ad_written(const char *user_id, int64_t pos, bool ok);

/* The "ordinary" presence effect of a user action (typing, receipts):
 * refreshes last_active without writing. */
void cl_presence_bump(const char *user_id);
/* The user's current m.presence event in the legacy shape (content.user_id
 * set), or NULL when the server knows no presence for them.  New reference. */
json_t *cl_presence_event(const char *user_id);

/* Part start functions (cl_schema.c calls them from hs_client_start). */
int cl_schema_start(char *err, size_t errlen);
int cl_profile_start(void);
int cl_account_data_start(void);
int cl_typing_start(void);
int cl_receipts_start(void);
int cl_presence_start(char *err, size_t errlen);
int cl_user_directory_start(void);
int cl_misc_start(void);
void cl_typing_stop(void);
void cl_presence_stop(void);

#endif /* HS_CLIENT_H */
