/*
 * hs.h: what the homeserver module's parts share.
 *
 * The module is split by concern (see README.md): accounts/ (users,
 * devices, tokens, login, register), rooms/ (events pipeline, membership,
 * state, messages), sync/ (/sync and the notifier), client/ (the remaining
 * Client-Server handlers).  Each part:
 *   - owns its tables and migrations, registered under its own schema name
 *     ("homeserver.accounts", "homeserver.rooms", ...) so that parts evolve
 *     independently;
 *   - exposes `int hs_<part>_start(char *err, size_t errlen)` that runs its
 *     migrations and adds its routes, called from homeserver.c.
 *
 * All state is reached through `hs` (the module's one context, set in init);
 * everything runs on the loop thread.
 */
#ifndef HS_H
#define HS_H

#include "mx.h"

#include <stdbool.h>
#include <stdint.h>

/* The module's config section `homeserver:` plus Synapse's top-level keys it
 * reads (filled in homeserver.c). */
typedef struct hs_conf {
    int64_t rc_message_per_second;   /* rc_message.per_second (Synapse) */
    int64_t rc_message_burst;
    int64_t rc_login_per_second;
    int64_t rc_login_burst;
    int64_t rc_registration_per_second;
    int64_t rc_registration_burst;
    int allow_guest_access;
    int enable_registration_without_verification;
    char *registration_tokens_required; /* unused placeholder for later */
    uint64_t access_token_lifetime_ms;  /* 0: tokens do not expire (legacy default) */
    int refresh_tokens;                 /* issue refresh tokens when clients ask */
    int64_t argon2_opslimit;            /* password hashing cost */
    int64_t argon2_memlimit_kib;
    int64_t max_event_size;             /* 65536 per spec */
    /* reCAPTCHA (Synapse's keys): the m.login.recaptcha stage can be
     * completed once the private key is set; registration requires it when
     * enable_registration_captcha is on. */
    int enable_ephemeral_messages;      /* MSC2228 (rooms/rm_expiry.c) */
    int enable_registration_captcha;
    char *recaptcha_public_key;
    char *recaptcha_private_key;
    char *recaptcha_siteverify_api;
} hs_conf_t;

struct rm_send_state;

typedef struct hs_ctx {
    hs_conf_t conf;
    const char *server_name;
    mx_db_t *db;
    struct rm_send_state *send; /* rooms/rm_send.c: txn filter, in-flight sends (owned) */
} hs_ctx_t;

extern hs_ctx_t hs;

/* ------------------------------------------------------------ identity --- */

/* The authenticated requester.  Strings owned by the request's pool. */
typedef struct hs_user {
    const char *user_id;     /* @local:server */
    const char *device_id;   /* may be NULL for some token kinds */
    bool is_guest;
    bool is_admin;
    int64_t token_id;        /* row id of the access token (for logout) */
} hs_user_t;

/* Called on the loop once the request's access token is checked.  On
 * failure the request has already been answered (401 M_MISSING_TOKEN /
 * M_UNKNOWN_TOKEN) and `fn` is NOT called. */
typedef void (*hs_authed_fn)(mx_req_t *req, const hs_user_t *who, void *ud);

/* Validates the access token of `req` through the `auth.token` service
 * (the auth module's, or the homeserver's own legacy tokens).  Returns
 * MX_ASYNC; pass that return value back to the router. */
int hs_require_auth(mx_req_t *req, hs_authed_fn fn, void *ud);
/* Same, but also allows guests when `allow_guest` is true (otherwise guests
 * get 403 M_GUEST_ACCESS_FORBIDDEN). */
int hs_require_auth_ex(mx_req_t *req, bool allow_guest, hs_authed_fn fn, void *ud);

/* `auth.token`: the one interface every token check goes through.  The
 * homeserver registers its own implementation when the auth module is not
 * loaded; the auth module registers one that knows OAuth 2.0 tokens. */
typedef struct hs_token_info {
    char user_id[256];
    char device_id[256];
    bool is_guest;
    bool is_admin;
    int64_t token_id;
    char scope[512];         /* OAuth scopes, "" for legacy tokens */
} hs_token_info_t;
/* `status` 0: valid, info filled; -ENOENT unknown/expired/revoked; other
 * negative: storage error.  `info` borrowed until the callback returns. */
typedef void (*hs_token_done_fn)(int status, const hs_token_info_t *info, void *ud);
typedef struct mx_auth_token_iface {
    int (*validate)(const char *token, hs_token_done_fn cb, void *ud);
    /* Optional (NULL: callers use `validate`): the same check for a client
     * request, whose address `ip` and `user_agent` (either NULL; borrowed
     * for the call) the service may record as the session's activity. */
    int (*validate_req)(const char *token, const char *ip, const char *user_agent,
                        hs_token_done_fn cb, void *ud);
} mx_auth_token_iface_t;


/* ------------------------------------------------------------ streams ---
 * Everything a client syncs has a position in one of these streams.  A sync
 * token is the vector of positions ("s12_4_0_7_1_0_3").  Positions are
 * allocated on the loop with hs_stream_next() BEFORE the write is queued and
 * reported with hs_stream_persisted() once it committed; hs_stream_current()
 * only moves past a position when every lower one has committed, so a
 * reader never skips a write that commits late.  Each change that should
 * wake /sync long-polls is announced with hs_notify_*(). (sync/streams.c)
 */
typedef enum {
    HS_STREAM_EVENTS,
    HS_STREAM_ACCOUNT_DATA,
    HS_STREAM_RECEIPTS,
    HS_STREAM_TYPING,
    HS_STREAM_PRESENCE,
    HS_STREAM_TO_DEVICE,
    HS_STREAM_DEVICE_LISTS,
    HS_STREAM_COUNT
} hs_stream_t;

/* Called once per stream at start with the highest persisted position. */
void hs_stream_init(hs_stream_t s, int64_t max_persisted);
int64_t hs_stream_next(hs_stream_t s);
/* `pos` committed (or failed: pass it anyway, the gap is closed). */
void hs_stream_persisted(hs_stream_t s, int64_t pos);
int64_t hs_stream_current(hs_stream_t s);
/* Wake /sync long-polls of these users / of every member of this room. */
void hs_notify_users(const char *const *user_ids, size_t n, hs_stream_t s);
void hs_notify_room(const char *room_id, hs_stream_t s);

/* --------------------------------------------------------- sync parts ---
 * /sync (sync/) builds rooms, timelines and state itself; other parts add
 * their sections (account_data, ephemeral typing/receipts, presence,
 * to_device, device_lists...) through providers called for every sync. */
typedef struct hs_sync_ctx {
    mx_pool_t *pool;
    const hs_user_t *who;
    int64_t since[HS_STREAM_COUNT];   /* all 0 for an initial sync */
    int64_t upto[HS_STREAM_COUNT];    /* positions this response covers */
    bool initial;
    bool full_state;
    json_t *filter;                   /* the effective filter (borrowed) or NULL */
    json_t *joined_rooms;             /* array of room IDs the user is joined to (borrowed) */
    json_t *response;                 /* the body being built (borrowed); providers add
                                         to it, e.g. rooms.join.<id>.ephemeral.events */
    bool members_moved;               /* a membership event in (since, upto] in one of the
                                         user's rooms (theirs or another member's): when
                                         false, who shares a room with the user is as at
                                         `since` (providers may skip such reads) */
} hs_sync_ctx_t;
typedef void (*hs_sync_part_done_fn)(hs_sync_ctx_t *sc, int status);
/* A provider fills its sections then calls done (at once or later). */
typedef void (*hs_sync_part_fn)(hs_sync_ctx_t *sc, hs_sync_part_done_fn done);
int hs_sync_add_part(const char *name, hs_sync_part_fn fn);
/* Returns (creating if needed) response.rooms.join.<room_id> for providers. */
json_t *hs_sync_joined_room(hs_sync_ctx_t *sc, const char *room_id);

/* ------------------------------------------------------------ helpers --- */

/* "@local:server" syntax checks per the spec's user identifier grammar. */
bool hs_is_valid_localpart(const char *localpart);
bool hs_is_valid_user_id(const char *user_id);
/* Formats "@localpart:server_name" into the pool. */
char *hs_user_id(mx_pool_t *pool, const char *localpart);

/* Replies 500 M_UNKNOWN and logs `what` with the storage status. */
void hs_reply_storage_error(mx_req_t *req, int status, const char *what);
/* `s` percent-encoded for an application/x-www-form-urlencoded body or a
 * query string (unreserved characters kept); malloc'd, NULL on ENOMEM. */
char *hs_form_escape(const char *s);

/* Parts' start functions (called from homeserver.c in this order). */
int hs_accounts_start(char *err, size_t errlen);
int hs_rooms_start(char *err, size_t errlen);
int hs_sync_start(char *err, size_t errlen);
int hs_client_start(char *err, size_t errlen);
int hs_push_start(char *err, size_t errlen);
int hs_media_start(char *err, size_t errlen);
/* The `homeserver.admin` service for the admin module (admin_service/). */
int hs_admin_service_start(char *err, size_t errlen);
/* A rate-limit override set through the Admin API for `user_id`: true and
 * the user's messages per second and burst (0/0: not limited), false when
 * the configured limits apply (admin_service/svc_ratelimit.c). */
bool hs_admin_ratelimit_override(const char *user_id, double *per_second, double *burst);
int hs_e2ee_start(char *err, size_t errlen);
int hs_relations_start(char *err, size_t errlen);
void hs_rooms_stop(void);
void hs_sync_stop(void);

#endif /* HS_H */
