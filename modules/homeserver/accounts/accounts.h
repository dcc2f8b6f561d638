/*
 * accounts.h: what the accounts part (users, devices, access tokens, login,
 * registration, rate limits) offers the other parts of the homeserver.
 *
 * The accounts part owns the tables users, devices, access_tokens,
 * refresh_tokens, login_tokens, registration_tokens (schema
 * "homeserver.accounts"); other parts never read them directly but go
 * through the functions below.  Profiles (displayname, avatar_url) are NOT
 * stored here: they belong to the client part, which learns about new users
 * through the user_registered hook.
 *
 * Everything here runs on the loop thread.
 */
#ifndef HS_ACCOUNTS_H
#define HS_ACCOUNTS_H

#include "../hs.h"

/* ------------------------------------------------------------ users --- */

/* One row of `users`.  Strings borrowed until the callback returns. */
typedef struct hs_user_row {
    const char *user_id;
    const char *user_type;      /* NULL for ordinary users */
    bool is_guest, is_admin, deactivated, erased, locked, shadow_banned;
    int64_t creation_ts;
} hs_user_row_t;

/* `status` 0 and `u` NULL: no such user; 0 and `u` set: found; negative:
 * storage error. */
typedef void (*hs_user_fn)(int status, const hs_user_row_t *u, void *ud);

/* Looks a local user up by full user ID (exact match).  Returns 0 (the
 * callback will run later) or a negative code (it will not run). */
int hs_user_get(const char *user_id, hs_user_fn cb, void *ud);

/* A user's devices as a JSON array of {device_id, display_name,
 * last_seen_ip, last_seen_ts} (the /devices shape, with the in-memory
 * last-seen figures merged in).  `devices` is borrowed until the callback
 * returns (NULL on error). */
typedef void (*hs_devices_fn)(int status, json_t *devices, void *ud);
int hs_user_devices(const char *user_id, hs_devices_fn cb, void *ud);

/* ------------------------------------------------------------ hooks ---
 * Called on the loop after the change has committed (except
 * user_creating).  Any member may be NULL.  Strings are borrowed for the
 * duration of the call. */
typedef struct hs_accounts_hooks {
    /* A new account is being written: adds the part's own rows for it to
     * `b`, the write batch that inserts the user, so that they commit with
     * it (a 200 to the registration means they are stored). */
    void (*user_creating)(mx_sql_batch_t *b, const char *user_id, const char *displayname,
                          bool is_guest);
    /* A new account (also guests and shared-secret registrations);
     * `displayname` is the one asked for at registration, or NULL. */
    void (*user_registered)(const char *user_id, const char *displayname, bool is_guest);
    /* A device was created by a login or a registration. */
    void (*device_created)(const char *user_id, const char *device_id);
    /* A device's display name changed. */
    void (*device_updated)(const char *user_id, const char *device_id);
    /* Devices were deleted (logout, DELETE /devices, password change,
     * deactivation): drop their E2EE keys, announce device list changes. */
    void (*devices_deleted)(const char *user_id, const char *const *device_ids, size_t n);
    /* The account is being deactivated: adds the part's own writes (hide
     * or erase the profile, drop pushers...) to `b`, the batch that marks
     * the user deactivated, so that they commit with it. */
    void (*user_deactivating)(mx_sql_batch_t *b, const char *user_id, bool erase);
    /* The account was deactivated (committed); `erase` asks for its data
     * to be forgotten.  For in-memory state; the rooms part makes the user
     * leave its rooms. */
    void (*user_deactivated)(const char *user_id, bool erase);
} hs_accounts_hooks_t;

/* Adds a set of hooks; `h` must stay valid for the life of the module
 * (static storage).  0 or -ENOSPC. */
int hs_accounts_add_hooks(const hs_accounts_hooks_t *h);

/* -------------------------------------------------------- rate limits --- */

/* Token bucket for sending messages (rc_message_*), one per user.  Takes one
 * token.  Returns 0 when the action may go ahead, else the number of
 * milliseconds after which it would be allowed. */
int64_t hs_ratelimit_message(const char *user_id);

/* Replies 429 M_LIMIT_EXCEEDED with retry_after_ms (and Retry-After). */
void hs_reply_ratelimited(mx_req_t *req, int64_t retry_after_ms);

/* ------------------------------------------------------------- tokens ---
 * Records that the device was used from `ip` with `user_agent` (both may be
 * NULL).  Kept in memory, written to `devices` at most once a minute.
 * Called by hs_require_auth for every authenticated request. */
void hs_accounts_note_seen(const char *user_id, const char *device_id, const char *ip,
                           const char *user_agent);

/* ----------------------------------------------------------- versions --- */

/* Adds GET /_matrix/client/versions and GET .../capabilities
 * (client/versions.c); called from hs_accounts_start. */
int hs_versions_register(void);
/* Sets `flag` in /versions' unstable_features (parts call this at start for
 * what they implement).  0 or -ENOMEM. */
int hs_versions_set_unstable(const char *flag, bool enabled);

#endif /* HS_ACCOUNTS_H */
