/*
 * acc_int.h: declarations shared by the files of the accounts part only
 * (state, small string map, tokens and their cache, password hashing, UIA,
 * rate limiting, route registration).  Other parts include accounts.h.
 *
 * All state hangs off one pointer, `hs_acc`, allocated by
 * hs_accounts_start and used only on the loop thread.
 */
#ifndef HS_ACC_INT_H
#define HS_ACC_INT_H

#include "accounts.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------ string map ---
 * Chained hash table from NUL-terminated string keys (copied) to values.
 * `free_val` (may be NULL) frees a value when it is replaced or removed. */
typedef struct acc_map_ent {
    struct acc_map_ent *next;
    void *val;
    char key[];
} acc_map_ent_t;
typedef struct acc_map {
    acc_map_ent_t **b;
    size_t nb, n;
    void (*free_val)(void *);
} acc_map_t;
int acc_map_init(acc_map_t *m, void (*free_val)(void *));
void acc_map_fini(acc_map_t *m);
void *acc_map_get(const acc_map_t *m, const char *key);
/* Stores `val` under `key` (replacing and freeing an older value).  0 or
 * -ENOMEM (then `val` is NOT taken). */
int acc_map_put(acc_map_t *m, const char *key, void *val);
/* Removes `key`; returns 1 when it was there. */
int acc_map_del(acc_map_t *m, const char *key);
/* Removes every entry for which `pred` returns true. */
void acc_map_filter(acc_map_t *m, bool (*pred)(const char *key, void *val, void *ud), void *ud);
/* Calls `fn` for every entry (no removal inside). */
void acc_map_each(const acc_map_t *m, void (*fn)(const char *key, void *val, void *ud), void *ud);

/* ----------------------------------------------------------------- state --- */
#define ACC_MAX_HOOKS 8
#define ACC_CACHE_MAX 4096

typedef struct acc_state {
    acc_map_t tok_cache;        /* sha256 hex -> acc_tok_ent_t */
    uint64_t cache_gen;         /* bumped by every invalidation */
    acc_map_t seen;             /* "user\x1fdevice" -> acc_seen_t */
    acc_map_t buckets;          /* rate limit key -> acc_bucket_t */
    acc_map_t uia;              /* session id -> acc_uia_sess_t */
    acc_map_t nonces;           /* shared-secret nonce -> uint64_t* creation ms */
    const hs_accounts_hooks_t *hooks[ACC_MAX_HOOKS];
    int nhooks;
    json_t *unstable;           /* /versions unstable_features */
    uv_timer_t timer;           /* housekeeping, once a minute */
    bool timer_started;
    bool flush_running;
} acc_state_t;

extern acc_state_t *hs_acc;

/* Migrations (acc_schema.c). */
int acc_schema_migrate(char *err, size_t errlen);

/* Route registration of each file.  0 or negative. */
int acc_login_routes(void);
int acc_register_routes(void);
int acc_account_routes(void);
int acc_devices_routes(void);
int acc_admin_register_routes(void);

/* Adds `fn` for both /_matrix/client/v3`tail` and /_matrix/client/r0`tail`
 * on resource "client". */
int acc_route_v3_r0(const char *method, const char *tail, mx_handler_fn fn, unsigned flags);

/* --------------------------------------------------------------- hooks --- */
void acc_hook_user_creating(mx_sql_batch_t *b, const char *user_id, const char *displayname,
                            bool is_guest);
void acc_hook_user_deactivating(mx_sql_batch_t *b, const char *user_id, bool erase);
void acc_hook_user_registered(const char *user_id, const char *displayname, bool is_guest);
void acc_hook_device_created(const char *user_id, const char *device_id);
void acc_hook_device_updated(const char *user_id, const char *device_id);
void acc_hook_devices_deleted(const char *user_id, const char *const *ids, size_t n);
void acc_hook_user_deactivated(const char *user_id, bool erase);

/* -------------------------------------------------------------- tokens --- */
#define ACC_HASH_HEX 65         /* sha256 in hex + NUL */

/* sha256(token) as lower-case hex into `out`. */
void acc_token_hash(const char *token, char out[ACC_HASH_HEX]);

/* What a login or registration hands out.  Strings owned by `pool`. */
typedef struct acc_session {
    const char *user_id, *device_id;
    const char *access_token, *refresh_token;   /* refresh_token may be NULL */
    int64_t expires_in_ms;                     /* 0: no expiry */
} acc_session_t;

/* Adds to write batch `b` the statements that create (if missing) device
 * `device_id` of `user_id` (a fresh ID when NULL), drop the tokens the device
 * had, and store a new access token (and a refresh token when `refresh`).
 * Fills `out` (strings from `pool`).  0 or -ENOMEM. */
int acc_session_add(mx_sql_batch_t *b, mx_pool_t *pool, const char *user_id,
                    const char *device_id, const char *display_name, bool refresh,
                    acc_session_t *out);
/* Adds to `b` a rotation of refresh token `old_refresh_id`: a new refresh
 * token (the old one's successor) and a new access token bound to it. */
int acc_session_refresh_add(mx_sql_batch_t *b, mx_pool_t *pool, int64_t old_refresh_id,
                            const char *user_id, const char *device_id, acc_session_t *out);
/* Puts the session's fields into a login/register response object. */
void acc_session_json(json_t *obj, const acc_session_t *s);
/* A new random device ID (10 upper-case letters) from `pool`. */
char *acc_device_id_new(mx_pool_t *pool);

/* SELECT of a user's devices in the /devices shape (device_id,
 * display_name, last_seen_ip, last_seen_ts); `device_id` NULL for all. */
void acc_devices_select(mx_sql_batch_t *b, const char *user_id, const char *device_id);
/* Builds the JSON array from statement `stmt` of `res` (new reference). */
json_t *acc_devices_json(const mx_sql_res_t *res, int stmt, const char *user_id);
/* Forgets cached tokens: of one device (device_id set), of every device of
 * the user (device_id NULL).  Also tells other processes through the bus. */
void acc_cache_evict_device(const char *user_id, const char *device_id);
/* Forgets cached tokens by row id (array of ints). */
void acc_cache_evict_ids(const json_t *ids);

/* Registers the `auth.token` service unless one exists; subscribes to the
 * invalidation topic. */
int acc_tokens_start(void);
/* Registers the `homeserver.users` service (acc_service.c, users_iface.h). */
int acc_users_service_start(void);
/* Delegated authentication (acc_mas.c): registers the introspecting
 * `auth.token` when matrix_authentication_service / msc3861 is enabled and
 * the auth module is not in this process. */
int acc_mas_start(void);
/* Whether /login, /register... belong to the auth service (in this process
 * or another one), and the account management URL it advertises (or NULL). */
bool acc_delegated(void);
const char *acc_account_url(void);
/* Delegated mode: whether the auth service's account page approved a
 * cross-signing reset for the user lately, and the 401 UIA answer that
 * sends the user there (stage org.matrix.cross_signing_reset). */
bool acc_crosssign_reset_allowed(const char *user_id);
void acc_crosssign_reset_reply(mx_req_t *req);
/* Writes pending last-seen figures (timer). */
void acc_seen_flush(void);
/* Adds in-memory last-seen figures of the user's devices to `devices` (array
 * of /devices objects). */
void acc_seen_merge(const char *user_id, json_t *devices);

/* ------------------------------------------------------------ password --- */
/* Hash / verify off the loop (uv_queue_work); callbacks run on the loop.
 * `hash` is borrowed for the callback.  Return 0, or a negative code (the
 * callback will not run). */
typedef void (*acc_pw_hash_fn)(int status, const char *hash, void *ud);
typedef void (*acc_pw_verify_fn)(bool ok, void *ud);
int acc_pw_hash(const char *password, acc_pw_hash_fn cb, void *ud);
/* `hash` may be NULL (unknown user): the same work is done, ok is false. */
int acc_pw_verify(const char *hash, const char *password, acc_pw_verify_fn cb, void *ud);
/* Checks a new password; replies 400 and returns false when it is bad. */
bool acc_pw_acceptable(mx_req_t *req, const json_t *pw);

/* ----------------------------------------------------------------- UIA --- */
enum {
    ACC_STAGE_DUMMY = 1,
    ACC_STAGE_PASSWORD = 2,
    ACC_STAGE_REGTOKEN = 4,
    ACC_STAGE_RECAPTCHA = 8,
};
typedef struct acc_uia_sess {
    char id[40];
    uint64_t created_ms;
    char *method, *path;        /* the operation the session is bound to */
    unsigned completed;         /* ACC_STAGE_* bits */
    char *user_id;              /* whose password the stage checks, or NULL */
    char *regtoken;             /* registration token reserved (pending++) */
    json_t *saved;              /* fields kept from earlier calls (register) */
} acc_uia_sess_t;
/* Called when a flow is complete.  The session stays alive until
 * acc_uia_finish. */
typedef void (*acc_uia_done_fn)(mx_req_t *req, acc_uia_sess_t *s, void *ud);
/* Runs User-Interactive Authentication for `req` with `body` (the request
 * JSON).  `user_id` is the requester (NULL for registration).  `flows` are
 * sets of ACC_STAGE_* bits.  Either replies (401 with the flows, or an
 * error) or calls `done`, possibly before returning.  Returns MX_ASYNC. */
int acc_uia_run(mx_req_t *req, json_t *body, const char *user_id, const unsigned *flows,
                size_t nflows, acc_uia_done_fn done, void *ud);
/* Ends a session.  `token_used`: the reserved registration token was used
 * by the write that just committed (so pending is not given back). */
void acc_uia_finish(acc_uia_sess_t *s, bool token_used);
/* Drops expired sessions (timer). */
void acc_uia_expire(void);
/* Whether m.login.recaptcha can be checked (a private key is configured). */
bool acc_recaptcha_enabled(void);
/* Checks a reCAPTCHA `response` with the siteverify API (POST secret,
 * response, remoteip); `done` gets true when it answered success. */
typedef void (*acc_recaptcha_fn)(bool ok, void *ud);
int acc_recaptcha_verify(const char *response, const char *client_ip, acc_recaptcha_fn done,
                         void *ud);

/* --------------------------------------------------------- registration ---
 * One account creation (POST /register, guests, shared-secret).  Allocated
 * in the request pool by the caller; acc_register_create hashes the
 * password off the loop, writes user + device + tokens in one batch, calls
 * the hooks and replies. */
typedef struct acc_reg {
    mx_req_t *req;
    acc_uia_sess_t *sess;       /* detached UIA session (owned) or NULL */
    const char *localpart;      /* NULL: allocate a numeric one */
    const char *password;       /* NULL: no password (guests) */
    const char *device_id, *display_name;
    const char *displayname;    /* profile name asked for (shared-secret) */
    const char *user_type;
    bool guest, admin, inhibit_login, refresh;
    const char *upgrade_guest;  /* the guest user ID this registration upgrades, or NULL */
    int attempts;
    char *hash;
    char *user_id;
    acc_session_t sess_out;
} acc_reg_t;
void acc_register_create(acc_reg_t *r);
/* Lower-cased username checks (Synapse's check_username without the
 * database part).  Replies 400 M_INVALID_USERNAME and returns false when
 * bad. */
bool acc_username_ok(mx_req_t *req, const char *localpart);

/* -------------------------------------------------------- rate limiting --- */
/* Token bucket `key`: refill `rate` per second up to `burst`.  When
 * `consume`, takes one token.  Returns 0 or the milliseconds to wait.
 * rate <= 0 means unlimited. */
int64_t acc_rl_take(const char *key, double rate, double burst, bool consume);
/* Drops full buckets (timer). */
void acc_rl_expire(void);
/* Nonces of shared-secret registration: expire (timer). */
void acc_nonces_expire(void);

/* --------------------------------------------------------------- misc --- */
/* Localpart of "@local:server" copied into the pool, or NULL. */
char *acc_localpart(mx_pool_t *pool, const char *user_id);
/* Lower-cases ASCII in place; returns s. */
char *acc_lower(char *s);
/* Resolves a login identifier ("alice", "@alice:server") to a candidate
 * user ID in the pool; NULL when it names another server or is malformed. */
char *acc_user_from_input(mx_pool_t *pool, const char *user);
/* Reads a login/UIA identifier (identifier.user, or legacy "user") from
 * `obj`; NULL when missing.  Sets *bad_type when an unsupported identifier
 * type was given. */
const char *acc_identifier_user(const json_t *obj, bool *bad_type);
/* The device-creating write hooks. */
#define ACC_DEVICE_ID_LEN 10

#endif /* HS_ACC_INT_H */
