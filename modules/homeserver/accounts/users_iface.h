/*
 * users_iface.h: the `homeserver.users` typed service the accounts part
 * offers other modules (the auth module: password checks, accounts created
 * from its pages and `mxstack manage`, devices provisioned for OAuth 2.0
 * sessions), and the name of the `homeserver.legacy_token` service (same
 * shape as `auth.token`, mx_auth_token_iface_t in hs.h) that always checks
 * the homeserver's own tokens, whoever provides `auth.token`.
 *
 * Get it with mx_service_get(HS_USERS_SERVICE).  Every function runs on the
 * loop thread, returns 0 (the callback will run later, exactly once) or a
 * negative code (it will not run).  Strings passed in are copied; strings
 * handed to callbacks are borrowed until the callback returns.
 */
#ifndef HS_USERS_IFACE_H
#define HS_USERS_IFACE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#define HS_USERS_SERVICE "homeserver.users"
#define HS_LEGACY_TOKEN_SERVICE "homeserver.legacy_token"

typedef struct hs_users_info {
    const char *user_id;        /* "@local:server" */
    bool is_admin, is_guest, deactivated, locked;
    int64_t creation_ts;        /* seconds */
} hs_users_info_t;

/* `status`: 0 done (`u` set when the call is about one user); -ENOENT no
 * such user; -EACCES wrong password (or no password); -EKEYREVOKED the
 * password was right but the account is locked (`u` set); -EEXIST the user
 * exists (create); -EINVAL bad localpart or password; other negative:
 * storage error. */
typedef void (*hs_users_fn)(int status, const hs_users_info_t *u, void *ud);
/* `users`: array of {user_id, admin, deactivated, locked, guest,
 * creation_ts}, borrowed until the callback returns; NULL on error. */
typedef void (*hs_users_list_fn)(int status, json_t *users, void *ud);

typedef struct hs_users_iface {
    /* `user` is a localpart or a full user ID of this server; matched
     * case-insensitively like POST /login.  Hashing runs off the loop. */
    int (*check_password)(const char *user, const char *password, hs_users_fn cb, void *ud);
    /* Looks a user up (exact localpart or user ID). */
    int (*get)(const char *user, hs_users_fn cb, void *ud);
    /* Creates `localpart` (lower-case, spec grammar) with a password
     * (NULL: none) and the admin flag; runs the user_registered hooks. */
    int (*create)(const char *localpart, const char *password, bool admin, hs_users_fn cb,
                  void *ud);
    /* Replaces the password hash; the user's devices stay. */
    int (*set_password)(const char *user, const char *password, hs_users_fn cb, void *ud);
    /* Locks or unlocks the account (locked accounts' tokens stop working). */
    int (*set_locked)(const char *user, bool locked, hs_users_fn cb, void *ud);
    /* Creates device `device_id` of `user_id` unless it exists (status 0
     * either way); runs the device_created hooks for a new one. */
    int (*upsert_device)(const char *user_id, const char *device_id, const char *display_name,
                         hs_users_fn cb, void *ud);
    /* Deletes a device with its legacy tokens; runs the devices_deleted
     * hooks.  Status 0 also when it did not exist. */
    int (*delete_device)(const char *user_id, const char *device_id, hs_users_fn cb, void *ud);
    /* Every local user, ordered by user ID. */
    int (*list)(hs_users_list_fn cb, void *ud);
} hs_users_iface_t;

/* `auth.compat`: registered (in init) by the auth module when the
 * homeserver delegates to it in this process.  The homeserver then leaves
 * /login, /logout, /refresh and /register to it (Synapse's delegated mode),
 * and points users at the account page for cross-signing resets. */
#define HS_AUTH_COMPAT_SERVICE "auth.compat"
typedef struct hs_auth_compat_iface {
    /* The account management URL (MSC4191), or NULL.  Borrowed. */
    const char *(*account_url)(void);
} hs_auth_compat_iface_t;

#endif /* HS_USERS_IFACE_H */
