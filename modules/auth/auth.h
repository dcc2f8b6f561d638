/*
 * auth.h: what the files of the auth module share.
 *
 * The auth module is the OAuth 2.0 / OpenID Connect provider Matrix clients
 * log in through (MSC3861 and its parts, what MAS does in ESS).  For now the
 * accounts themselves stay in the homeserver (passwords are checked through
 * its `homeserver.users` service); this module keeps OAuth clients,
 * authorization grants, browser sessions, OAuth sessions and their tokens
 * (only sha256 hashes) and consents in its own tables (au_schema.c).
 *
 * Files: auth.c (descriptor, config, start), au_util.c (forms, URLs,
 * random IDs, hashing, HTTP replies), au_jwks.c (signing keys, JWKS, JWS),
 * au_oidc_discovery.c, au_clients.c (registration, client auth),
 * au_authorize.c (/authorize, consent), au_session.c (cookies, CSRF, login
 * and registration pages), au_pages.c (templates), au_passwords.c
 * (password checks through the homeserver), au_token.c (token endpoint,
 * revocation, userinfo, id_token), au_introspect.c (token lookup, cache,
 * introspection), au_compat.c (the `auth.token` service and the
 * homeserver-facing endpoints), au_manage.c (`mxstack manage`).
 *
 * All state hangs off `au` (set in init); everything runs on the loop.
 */
#ifndef AUTH_H
#define AUTH_H

#include "mx.h"

#include <stdbool.h>
#include <stdint.h>

#define AU_LOG "auth"

typedef struct au_conf {
    char *issuer;                 /* NULL: the endpoints' base */
    char *public_base;            /* NULL: server public_baseurl */
    int delegate_homeserver;      /* provide auth.token + auth_metadata */
    uint64_t access_token_ttl_ms;
    uint64_t code_ttl_ms;
    uint64_t grant_ttl_ms;        /* a pending authorization request */
    uint64_t session_ttl_ms;      /* browser sessions */
    uint64_t id_token_ttl_ms;
    char *rsa_key_path, *ec_key_path, *cookie_key_path;
    char *templates_path;
    char *service_name;
    int password_registration_enabled;
    int64_t token_cache_max;
    /* auth-flows (au_flows.c reads these into au.fl) */
    json_t *signing_keys;         /* [path | {path}]: several keys per algorithm */
    json_t *account;              /* MAS-like account.* toggles and password policy */
    json_t *rate_limit;           /* login.per_ip / login.per_account {burst, per_second} */
    int device_code_grant_enabled;
    uint64_t device_code_ttl_ms;
    /* admin API (au_admin*.c): configured clients, MAS's policy.data */
    json_t *clients;              /* [{client_id, client_secret, client_auth_method}] */
    json_t *policy;               /* {data: {admin_clients: [client_id]}} */
    /* upstream OIDC providers (au_upstream.c), MAS's upstream_oauth2 */
    json_t *upstream_oauth2;      /* {providers: [...]} */
    json_t *rc_login;             /* Synapse's rc_login for compat /login */
    /* outgoing e-mail (au_mail.c), MAS's email: section */
    char *email_from, *email_reply_to, *email_transport, *email_mode, *email_hostname;
    int64_t email_port;           /* 0: by mode */
    char *email_username, *email_password, *email_ca_file;
    char *email_command;          /* transport: sendmail (NULL: "sendmail") */
    uint64_t email_timeout_ms;
} au_conf_t;

typedef struct au_keys au_keys_t;     /* au_jwks.c */
typedef struct au_pages au_pages_t;   /* au_pages.c */
typedef struct au_cache au_cache_t;   /* au_introspect.c */

typedef struct au_state {
    au_conf_t *conf;
    mx_db_t *db;
    char *base;                   /* endpoints' base URL, ends with '/' (malloc) */
    char *issuer;                 /* (malloc) */
    bool secure_cookies;          /* base is https */
    unsigned char cookie_key[32];
    au_keys_t *keys;
    au_pages_t *pages;
    au_cache_t *cache;
    json_t *discovery;            /* the openid-configuration document */
    char *account_url;            /* account management URL, MSC4191 (malloc) */
    char *hs_secret;              /* the homeserver's introspection secret (malloc) or NULL */
    struct au_tomb *tombs;        /* devices deleted lately (au_compat.c), list */
    struct au_flows *fl;          /* accounts, rate limits (au_flows.c) */
    struct au_mail *mail;         /* outgoing e-mail (au_mail.c) */
    struct au_rl *rc_address, *rc_account, *rc_failed;   /* compat /login (rc_login) */
    mx_counter_t *m_logins, *m_tokens, *m_validations;
} au_state_t;

extern au_state_t au;

/* ---------------------------------------------------------------- util --- */

#define AU_HASH_HEX 65

/* sha256 of `s` as lower-case hex. */
void au_hash_hex(const char *s, char out[AU_HASH_HEX]);
/* A random token "<prefix>_<n url-safe chars>" from the pool. */
char *au_token_new(mx_pool_t *pool, const char *prefix, size_t n);
/* A ULID (26 chars, Crockford base32, time-ordered) from the pool. */
char *au_ulid(mx_pool_t *pool);
/* base64url without padding of `len` bytes, from the pool. */
char *au_b64url(mx_pool_t *pool, const void *data, size_t len);

/* application/x-www-form-urlencoded body (or query) parsed into a JSON
 * object of strings (new reference; later duplicates are ignored).  NULL on
 * malformed input. */
json_t *au_form_parse(const char *s, size_t len);
/* Decodes one form component ('+' is a space) into the pool; NULL when
 * malformed. */
char *au_pct_decode(mx_pool_t *pool, const char *s);
/* Percent-encodes `s` for a query component, from the pool. */
char *au_urlencode(mx_pool_t *pool, const char *s);
/* Request parameter for form POSTs and GETs: the form field, else the query
 * parameter.  `form` may be NULL. */
const char *au_param(mx_req_t *req, const json_t *form, const char *name);

/* A URL split in parts (strings from the pool; absent parts NULL). */
typedef struct au_url {
    const char *scheme;           /* lower-cased */
    bool has_authority;           /* "//" after the scheme */
    const char *userinfo, *host;  /* host lower-cased, IPv6 kept in [] */
    int port;                     /* -1 when absent */
    const char *path, *query;
    bool has_fragment;
} au_url_t;
/* 0, or -EINVAL when `s` is not an absolute URL we accept. */
int au_url_parse(mx_pool_t *pool, const char *s, au_url_t *u);
bool au_host_is_loopback(const char *host);
/* `host` equals `parent` or is a subdomain of it. */
bool au_host_within(const char *host, const char *parent);

/* The OAuth error JSON {error, error_description}; finishes the request. */
void au_oauth_error(mx_req_t *req, int status, const char *error, const char *desc);
/* A JSON reply with Cache-Control: no-store (token responses). */
void au_reply_json_nostore(mx_req_t *req, int status, json_t *body);
/* CORS headers for the /oauth2/ endpoints (outside the core's CORS paths). */
void au_cors(mx_req_t *req);
/* 302/303 redirect to `location`. */
void au_redirect(mx_req_t *req, int status, const char *location);
/* Adds `pattern` for `method` on resource "auth" (no core CORS), plus an
 * OPTIONS preflight answer when `preflight` (once per path). */
int au_route_oauth(const char *method, const char *pattern, mx_handler_fn fn, bool preflight);
/* Logs and replies 500 (OAuth shape). */
void au_storage_error(mx_req_t *req, int status, const char *what);
/* mx_pool_on_free callback that drops a JSON reference. */
void au_json_unref(void *p);
/* The form body of an /oauth2/ POST (freed with the request's pool), or NULL
 * after replying 400 invalid_request. */
json_t *au_oauth_form(mx_req_t *req);
/* The form body of a page POST whose CSRF field checks out (freed with the
 * request's pool), or NULL after replying with the error page. */
json_t *au_page_form(mx_req_t *req);
/* A page handler's state: `size` zeroed bytes from the request's pool whose
 * first member (an mx_req_t *) is set to `req`; NULL after replying with the
 * 500 error page. */
void *au_page_zalloc(mx_req_t *req, size_t size);

/* ---------------------------------------------------------------- keys --- */

/* Loads (creating when missing) the RS256 and ES256 keys. */
int au_keys_init(char *err, size_t errlen);
void au_keys_fini(void);
/* The public JWKS {"keys": [...]} (new reference). */
json_t *au_jwks(void);
/* Signed compact JWS of `claims` with `alg` ("RS256" or "ES256"), from the
 * pool; NULL on failure. */
char *au_jws_sign(mx_pool_t *pool, const char *alg, const json_t *claims);
/* The algorithms the keys allow (new reference, array of strings). */
json_t *au_jws_algs(void);

/* ------------------------------------------------------------ schema --- */
int au_schema_migrate(char *err, size_t errlen);

/* ------------------------------------------------------------ routes --- */
int au_discovery_routes(void);
int au_clients_routes(void);
int au_authorize_routes(void);
int au_session_routes(void);
int au_token_routes(void);
int au_introspect_routes(void);
int au_compat_routes(void);
int au_pages_routes(void);

/* Builds au.discovery (au_oidc_discovery.c). */
int au_discovery_build(void);

/* ------------------------------------------------------------ clients --- */

/* A registered client (strings owned by `pool` of the lookup). */
typedef struct au_client {
    const char *client_id;
    const char *auth_method;      /* none | client_secret_basic | client_secret_post */
    const char *application_type; /* web | native */
    const char *secret_hash;      /* NULL for public clients */
    json_t *metadata;             /* registered metadata (owned by the pool's cleanup) */
} au_client_t;
/* `c` NULL: unknown client.  Borrowed until the callback returns. */
typedef void (*au_client_fn)(int status, const au_client_t *c, void *ud);
int au_client_get(mx_pool_t *pool, const char *client_id, au_client_fn cb, void *ud);
/* Authenticates the client of a token/revocation/introspection request
 * from `form` and the Authorization header.  On failure the request is
 * answered (401 invalid_client) and `cb` is not called. */
typedef void (*au_client_req_fn)(mx_req_t *req, const au_client_t *c, void *ud);
void au_client_authenticate(mx_req_t *req, const json_t *form, au_client_req_fn cb, void *ud);
bool au_client_has_grant(const au_client_t *c, const char *grant);
/* Whether `uri` is one of the client's redirect URIs (exact, or a loopback
 * URI of a native client with any port). */
bool au_client_redirect_ok(mx_pool_t *pool, const au_client_t *c, const char *uri);
/* Checks client metadata (RFC 7591 + MSC2966); NULL when fine, else an
 * error code ("invalid_redirect_uri", "invalid_client_metadata") with the
 * description in *desc (static or pool string). */
const char *au_client_metadata_check(mx_pool_t *pool, json_t *md, const char **desc);

/* ------------------------------------------------------------- scopes --- */

#define AU_SCOPE_API "urn:matrix:client:api:*"
#define AU_SCOPE_API_UNSTABLE "urn:matrix:org.matrix.msc2967.client:api:*"
#define AU_SCOPE_DEVICE "urn:matrix:client:device:"
#define AU_SCOPE_DEVICE_UNSTABLE "urn:matrix:org.matrix.msc2967.client:device:"
#define AU_SCOPE_SYNAPSE_ADMIN "urn:synapse:admin:*"

/* Parsed scope set. */
typedef struct au_scope {
    bool api, openid, synapse_admin, mas_admin;
    const char *device_id;        /* pool string, or NULL */
    int ndevices;
    json_t *list;                 /* array of the scope tokens as given (new reference) */
} au_scope_t;
/* 0, or -EINVAL (bad syntax, unknown scope, several device scopes); *bad
 * names the offending token.  `sc->list` must be released with
 * json_decref. */
int au_scope_parse(mx_pool_t *pool, const char *scope, au_scope_t *sc, const char **bad);
/* `scope` with the stable and unstable forms of Matrix scopes both present
 * (MAS normalises introspection answers the same way), from the pool. */
char *au_scope_normalise(mx_pool_t *pool, const char *scope);
bool au_scope_has(const char *scope, const char *token);
/* The device ID in a scope string (either form), from the pool, or NULL. */
char *au_scope_device(mx_pool_t *pool, const char *scope);

/* --------------------------------------------------------- sessions --- */

/* The browser session of the request: `user_id` NULL when not logged in.
 * `sid` is the cookie value (NULL when the browser sent none). */
typedef struct au_browser {
    const char *sid;
    const char *user_id;
    int64_t auth_ts;
} au_browser_t;
typedef void (*au_browser_fn)(mx_req_t *req, const au_browser_t *b, void *ud);
/* Loads the browser session (cookie → row).  Errors are answered. */
void au_browser_load(mx_req_t *req, au_browser_fn cb, void *ud);
/* A GET page handler's body: new state as au_page_zalloc (`size` bytes),
 * then au_browser_load with it.  Returns MX_ASYNC, or MX_DONE when replied. */
int au_page_browse(mx_req_t *req, size_t size, au_browser_fn cb);
/* The session ID for a page about to render a form: the existing cookie,
 * or a new one set on the response. */
const char *au_browser_sid(mx_req_t *req, const au_browser_t *b);
/* CSRF token bound to `sid` (pool string). */
char *au_csrf_token(mx_pool_t *pool, const char *sid);
/* Whether the form's csrf field matches the cookie (constant time). */
bool au_csrf_ok(mx_req_t *req, const json_t *form);
/* The session cookie's value from the Cookie header (pool), or NULL. */
char *au_cookie_sid(mx_req_t *req);

/* ------------------------------------------------------------- grants --- */

/* A pending or completed authorization request (au_authorize.c). */
typedef struct au_grant {
    const char *id, *client_id, *redirect_uri, *scope, *state, *nonce;
    const char *code_challenge, *response_mode, *prompt, *login_hint;
    const char *user_id;          /* NULL until consent */
    int status;                   /* 0 pending, 1 code issued, 2 exchanged, 3 denied */
    int64_t created_ts, code_expires_ts, auth_ts;
    const char *session_id;       /* the OAuth session the code became */
} au_grant_t;
typedef void (*au_grant_fn)(int status, const au_grant_t *g, void *ud);
int au_grant_get(mx_pool_t *pool, const char *id, au_grant_fn cb, void *ud);
/* The grant whose code hashes to `code_hash` (sha256 hex). */
int au_grant_by_code(mx_pool_t *pool, const char *code_hash, au_grant_fn cb, void *ud);
/* The page a logged-in browser goes to for this grant. */
char *au_grant_continue_url(mx_pool_t *pool, const char *grant_id);
/* Redirect back to the client with `params` (array of key, value, NULL). */
char *au_client_redirect_url(mx_pool_t *pool, const char *redirect_uri, const char *mode,
                             const char *const *params);
/* The origin of a redirect URI for CSP form-action (pool), or NULL. */
char *au_redirect_origin(mx_pool_t *pool, const char *uri);

/* ------------------------------------------------------------- pages --- */

/* Loads templates and strings (au_pages.c). */
int au_pages_init(char *err, size_t errlen);
void au_pages_fini(void);
/* Renders page `name` ("login", "consent", ...) with `vars` (borrowed) and
 * replies with the page headers (CSP allowing forms to post to 'self' and
 * `form_origin` when not NULL). */
void au_page_reply(mx_req_t *req, int status, const char *name, json_t *vars,
                   const char *form_origin);
/* Renders the error page with message string `key` (strings file) and an
 * optional detail. */
void au_page_error(mx_req_t *req, int status, const char *key, const char *detail);
/* Renders `tmpl` (template text) with `vars` into a malloc'd string
 * (exported for the unit tests).  `strings` maps {{t:key}}. */
char *au_template_render(const char *tmpl, const json_t *vars, const json_t *strings);
/* The text of strings key `key` (borrowed; the key itself when missing). */
const char *au_string(const char *key);
/* HTML-escapes into a malloc'd string. */
char *au_html_escape(const char *s);

/* --------------------------------------------------------- passwords --- */

/* Checks a password through the homeserver.  `status` 0: ok, `user_id`
 * set; -EACCES wrong; -EKEYREVOKED locked; other: error. */
typedef void (*au_pw_fn)(int status, const char *user_id, bool is_admin, void *ud);
int au_password_check(const char *user, const char *password, au_pw_fn cb, void *ud);
/* The password policy for new passwords: NULL when fine, else the strings
 * key of the reason. */
const char *au_password_policy(const char *password);
/* The text of strings key `key` with "{min}" replaced by the policy's
 * minimum length (pool string). */
const char *au_policy_text(mx_pool_t *pool, const char *key);

/* ------------------------------------------------------------- tokens --- */

/* What a token lookup found (strings in the pool of the lookup). */
typedef struct au_tokinfo {
    bool active;
    bool is_refresh;
    const char *session_id, *client_id, *user_id, *device_id, *scope;
    int64_t created_ts, expires_ts;  /* expires_ts 0: none */
} au_tokinfo_t;
typedef void (*au_tok_fn)(int status, const au_tokinfo_t *t, void *ud);
/* Looks an access (or, with `refresh`, refresh) token up by value.  An
 * active access token's session gets its activity noted (time only). */
int au_token_lookup(mx_pool_t *pool, const char *token, bool refresh, au_tok_fn cb, void *ud);
/* au_token_lookup of an access token used by a client request from `ip`
 * with `user_agent` (either NULL; copied): both are noted with the time. */
int au_token_lookup_seen(mx_pool_t *pool, const char *token, const char *ip,
                         const char *user_agent, au_tok_fn cb, void *ud);
/* Ends an OAuth session: revokes its tokens, drops cached entries, deletes
 * the homeserver device when delegating.  `cb` may be NULL. */
typedef void (*au_done_fn)(int status, void *ud);
int au_session_finish(const char *session_id, au_done_fn cb, void *ud);

/* ------------------------------------------------------------- cache --- */

/* One cached valid access token (user tokens only). */
typedef struct au_centry {
    struct au_centry *next;
    unsigned char key[32];        /* sha256 of the token */
    char session_id[32];
    char user_id[256];
    char device_id[256];
    char *scope;                  /* malloc */
    uint64_t expires_ms, cached_ms;
    uint64_t noted_ms;            /* activity last recorded (throttle) */
} au_centry_t;
int au_cache_init(void);
/* Subscribes to the eviction topic of other processes. */
int au_cache_subscribe(void);
/* The entry for a token hash, or NULL (stale entries are dropped). */
au_centry_t *au_cache_get(const unsigned char key[32]);
/* Records the use of a cached token from `ip` with `user_agent` (either
 * NULL) as its session's activity, at most once a minute per entry (the
 * lookup that filled the entry counts). */
void au_cache_seen(au_centry_t *e, const char *ip, const char *user_agent);
void au_cache_put(const unsigned char key[32], const au_tokinfo_t *t);
void au_cache_fini(void);
void au_cache_evict_session(const char *session_id);
void au_cache_evict_user(const char *user_id, const char *device_id);

/* The `auth.token` validate function (au_compat.c), exported for bench;
 * the _req form records the request's address and user agent. */
typedef struct hs_token_info hs_token_info_t;
int au_validate_token(const char *token, void (*cb)(int, const hs_token_info_t *, void *),
                      void *ud);
int au_validate_token_req(const char *token, const char *ip, const char *user_agent,
                          void (*cb)(int, const hs_token_info_t *, void *), void *ud);
/* Registers `auth.token` when delegating (called from init). */
int au_compat_register(void);

/* ------------------------------------------------------------- compat ---
 * The compatibility layer (au_compat_*.c): legacy /login, /logout,
 * /refresh, m.login.sso through the OAuth flow, compat sessions with
 * "mct_"/"mcr_" tokens (looked up by au_token_lookup like OAuth ones). */
int au_compat_schema_migrate(void);
typedef struct au_compat_new {
    const char *user_id;          /* full user ID */
    const char *device_id;        /* NULL: a new random one */
    const char *human_name;       /* device display name, or NULL */
    const char *sso_login_id;     /* the m.login.sso round trip, or NULL */
    bool synapse_admin;           /* tokens carry urn:synapse:admin:* */
    bool with_refresh;            /* refresh token + expiring access token */
} au_compat_new_t;
/* What a new session got (strings from the caller's pool). */
typedef struct au_compat_tokens {
    const char *session_id, *user_id, *device_id, *access_token, *refresh_token;
    int64_t expires_in_ms;        /* 0: the access token does not expire */
    bool synapse_admin;
} au_compat_tokens_t;
typedef void (*au_compat_fn)(int status, const au_compat_tokens_t *t, void *ud);
/* Creates a compat session (finishing earlier ones of the device) and its
 * tokens, then the homeserver device when the homeserver is loaded here.
 * `pool` must outlive the callback. */
int au_compat_session_new(mx_pool_t *pool, const au_compat_new_t *n, au_compat_fn cb, void *ud);
/* Finishes one compat session / the live ones of a user's device (every
 * device when `device_id` is NULL): tokens revoked, cache evicted, the
 * homeserver device deleted when `delete_device`.  `cb` (may be NULL) gets
 * the number of sessions finished or a negative code. */
int au_compat_finish(const char *session_id, bool delete_device, au_done_fn cb, void *ud);
int au_compat_finish_device(const char *user_id, const char *device_id, bool delete_device,
                            au_done_fn cb, void *ud);
/* A random device ID (10 upper-case letters) / the scope of a compat
 * session's tokens, from the pool. */
char *au_compat_device_new(mx_pool_t *pool);
char *au_compat_scope(mx_pool_t *pool, const char *device_id, bool synapse_admin);
/* Whether `token` is a compat access ("mct_") / refresh ("mcr_") token. */
#define AU_IS_COMPAT_TOKEN(t) (!strncmp((t), "mct_", 4))
#define AU_IS_COMPAT_REFRESH(t) (!strncmp((t), "mcr_", 4))
/* The legacy endpoints on resource "client" (au_compat_login.c) and the
 * m.login.sso round trip (au_compat_sso.c). */
int au_compat_login_routes(void);
/* Compat /login rate limits (rc_login) into au.rc_* (from init); freed by
 * au_compat_rc_fini. */
int au_compat_rc_init(char *err, size_t errlen);
void au_compat_rc_fini(void);
/* Registers `homeserver.users` over HTTP when the homeserver is not in this
 * process (au_compat_users.c). */
int au_compat_users_register(void);
/* Frees what au_compat.c keeps (fini). */
void au_compat_fini(void);
/* Whether `bearer` is the homeserver's shared secret for introspection
 * (matrix_authentication_service.secret, or the internal_secret). */
bool au_hs_secret_ok(const char *bearer);
int au_compat_sso_routes(void);
/* m.login.token: consumes a login token of a completed m.login.sso round
 * trip; `cb` gets the user ID and the sso login ID, or -ENOENT. */
typedef void (*au_login_token_fn)(int status, const char *user_id, const char *sso_id,
                                  void *ud);
int au_compat_login_token_use(mx_pool_t *pool, const char *token, au_login_token_fn cb, void *ud);

/* Tables, configured clients and routes of the admin API (au_admin.c). */
int au_admin_start(char *err, size_t errlen);

/* -------------------------------------------------------------- manage --- */
extern const mx_manage_cmd_t au_manage_cmds[];

/* ---------------------------------------------------------- auth-flows ---
 * Device authorization grant (au_device_code.c), end-session
 * (au_end_session.c), the account page (au_account.c), registration modes,
 * password policy and login rate limits (au_flows.c, au_ratelimit.c), their
 * tables (au_flows_schema.c, migration set "auth_flows"). */

#define AU_GRANT_DEVICE_CODE "urn:ietf:params:oauth:grant-type:device_code"
#define AU_CROSSSIGN_RESET_MS (10 * 60 * 1000)

enum { AU_REG_CLOSED = 0, AU_REG_OPEN = 1, AU_REG_TOKEN = 2 };
/* AU_EMAIL_DEV: verification required at registration (the link is
 * logged, or mailed when `email_smtp`). */
enum { AU_EMAIL_OFF = 0, AU_EMAIL_DEV = 1 };
typedef struct au_rl au_rl_t;           /* au_ratelimit.c */
typedef struct au_flows {
    int registration;             /* AU_REG_* */
    bool password_change_allowed;
    int64_t pw_min_length, pw_min_classes;   /* classes: lower, upper, digit, other */
    int email_verification;       /* AU_EMAIL_* (au_email.c) */
    bool email_smtp;              /* email_verification: smtp (au_mail.c sends) */
    au_rl_t *login_ip, *login_account;
} au_flows_t;
/* Reads conf->account / rate_limit into au.fl (from start). */
int au_flows_init(char *err, size_t errlen);
void au_flows_fini(void);
int au_flows_migrate(char *err, size_t errlen);
int au_device_routes(void);
int au_end_session_routes(void);
int au_account_routes(void);

/* Token buckets keyed by string (in memory, per process). */
au_rl_t *au_rl_new(double burst, double per_second);
void au_rl_free(au_rl_t *rl);
/* Takes one token for `key`: 0, or the ms to wait when empty. */
uint64_t au_rl_take(au_rl_t *rl, const char *key);
/* Only looks: the ms to wait before a token is there (0: one is). */
uint64_t au_rl_peek(au_rl_t *rl, const char *key);

/* A Matrix scope list with a device scope added when an API scope has
 * none (au_authorize.c); pool string. */
char *au_scope_with_device(mx_pool_t *pool, au_scope_t *sc);
/* Whether the space-separated scope names urn:mas:admin or a
 * urn:synapse:admin:* scope (au_scope.c).  As MAS's default policy, only
 * admins may be granted them: a non-admin's consent is refused. */
bool au_scope_has_admin(const char *scope);
/* Texts of a scope for consent pages (new reference). */
json_t *au_scope_texts(const char *scope);
/* Finishes the browser session whose cookie hash is `id_hash` (of
 * `user_id` when not NULL) and clears the cookie on `req` when not NULL. */
int au_browser_end(const char *id_hash, const char *user_id, au_done_fn cb, void *ud);
void au_cookie_clear(mx_req_t *req);
/* `next` of a login form: a page of ours to return to (link, device,
 * account/), else NULL. */
const char *au_next_ok(const char *next);

/* E-mail verification (au_email.c).  A plausible address? */
bool au_email_valid(const char *email);
/* Records a pending verification of `email` for `user_id`, logs the link
 * and answers `req` with the "check your e-mail" page. */
int au_email_verification_start(mx_req_t *req, const char *user_id, const char *email);
/* Whether `user_id` may sign in: no address waiting for verification.
 * `cb` may run before the call returns. */
typedef void (*au_gate_fn)(int status, bool ok, void *ud);
int au_email_login_gate(const char *user_id, au_gate_fn cb, void *ud);
int au_email_routes(void);

/* Outgoing e-mail (au_mail.c).  Checks auth.email and prepares the SMTP
 * transport (from init); state freed by au_mail_fini. */
int au_mail_init(char *err, size_t errlen);
void au_mail_fini(void);
/* Whether mail is sent (auth.email.transport smtp or sendmail). */
bool au_mail_smtp(void);
/* A header value without control characters (CR, LF...), not too long. */
bool au_mail_header_ok(const char *s);
/* The RFC 5322 message (headers: From, To, Reply-To, Subject, Date,
 * Message-ID, MIME text/plain UTF-8) to `to` (a bare address), from the
 * pool; NULL when an address or the subject is unusable. */
char *au_mail_compose(mx_pool_t *pool, const char *to, const char *subject, const char *body);
/* Sends `message` (copied) to `to` off the loop; `cb` runs on the loop
 * with 0, MX_ETIMEOUT or a negative code (the reason is logged).  Returns
 * -EAGAIN when too many mails wait, -ENOSYS with the blackhole transport. */
typedef void (*au_mail_fn)(int status, void *ud);
int au_mail_send(const char *to, const char *message, au_mail_fn cb, void *ud);
/* The sendmail transport (au_sendmail.c): runs `command -i -f from --
 * rcpt` (no shell) with `msg` on stdin; `cb` on the loop with 0 when it
 * exited 0, else -EIO (MX_ETIMEOUT after `timeout_ms`) and `err` (the
 * command's stderr or the reason; borrowed).  0, or -EINVAL/-ENOMEM (then
 * `cb` is not called). */
typedef void (*au_sendmail_fn)(int status, const char *err, void *ud);
int au_sendmail_run(const char *command, const char *from, const char *rcpt, const char *msg,
                    uint64_t timeout_ms, au_sendmail_fn cb, void *ud);

/* Verifies a JWS we signed (any of our keys, by kid); the claims (new
 * reference) or NULL. */
json_t *au_jws_verify(const char *jws);
/* The one JWS verifier (au_jwks.c), for our keys and upstream JWKS alike:
 * parses compact `jws` (RS256 or ES256 only), hashes its signing input and
 * asks `fn` whether a key it knows (by `kid`, may be NULL) signed it.
 * Returns the claims (new reference), or NULL with *why (static text). */
typedef bool (*au_jws_key_fn)(bool ec, const char *kid, const unsigned char digest[32],
                              const unsigned char *sig, size_t sl, void *ud);
json_t *au_jws_check(const char *jws, au_jws_key_fn fn, void *ud, const char **why);
/* Whether `sig` is the JWS signature of `digest` (SHA-256) by public key
 * `pk`: RS256 (PKCS#1 v1.5) or, with `ec`, ES256 on P-256 (r || s). */
struct mbedtls_pk_context;
bool au_jws_sig_ok(struct mbedtls_pk_context *pk, bool ec, const unsigned char digest[32],
                   const unsigned char *sig, size_t sl);

/* Cross-signing reset approval (MSC3967/MSC4312): the account page records
 * that `user_id` may replace its cross-signing keys without UIA for
 * AU_CROSSSIGN_RESET_MS; the homeserver (helper "authcompat") asks.  Stored
 * in auth_crosssign_resets and announced on the bus topic
 * "auth.crosssign_reset" ({user_id, until_ms}).  `cb` gets 0 and whether
 * the approval is current (and until when, ms), or a negative code. */
typedef void (*au_xs_fn)(int status, bool allowed, int64_t until_ms, void *ud);
int au_crosssign_reset_allowed(const char *user_id, au_xs_fn cb, void *ud);
/* Consumes the approval (after a successful reset); `cb` may be NULL. */
int au_crosssign_reset_consume(const char *user_id, au_done_fn cb, void *ud);

/* Upstream OIDC providers (au_upstream.c): config, tables and routes
 * (from start), state freed in fini. */
int au_upstream_start(char *err, size_t errlen);
void au_upstream_fini(void);
/* The login page's provider buttons [{name, url}] (new reference), passing
 * `grant` or `next` (either may be NULL) on. */
json_t *au_upstream_buttons(mx_pool_t *pool, const char *grant, const char *next);
/* Starts a browser session for `user_id` (a login that succeeded elsewhere,
 * e.g. upstream) and answers `req` like a password login: back to the
 * grant's consent, to `next`, or the "done" page (au_session.c). */
int au_browser_login(mx_req_t *req, const char *user_id, const char *grant, const char *next);

#endif /* AUTH_H */
