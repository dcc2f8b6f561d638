/*
 * au_compat_login.c: the legacy Client-Server login endpoints, served by
 * the auth module when the homeserver delegates to it (what MAS's "compat"
 * handlers do; the homeserver then leaves these paths to us):
 *
 *   GET  /login        m.login.password, m.login.sso (with MSC3824's
 *                      delegated_oidc_compatibility and oauth_aware_preferred:
 *                      it goes through the OAuth flow), m.login.token
 *   POST /login        m.login.password (checked by the accounts: the auth
 *                      module's au_password_check), m.login.token (from the
 *                      m.login.sso round trip, au_compat_sso.c)
 *   POST /logout       ends the compat session (or the OAuth session) of the
 *                      token and deletes its device; homeserver-issued legacy
 *                      tokens delete their device through `homeserver.users`
 *   POST /logout/all   every compat and OAuth session of the user
 *   POST /refresh      rotates a compat refresh token ("mcr_")
 *
 * on /_matrix/client/v3 and /r0 (and MSC2918's unstable refresh path).
 *
 * POST /login has its own rate limits, Synapse's rc_login (auth.rc_login,
 * else the top-level rc_login): `address` (every attempt, per client IP),
 * `account` (every password attempt, per account) and `failed_attempts`
 * (failed passwords per account; checked before the password is, so a
 * guessed password cannot be confirmed while limited) → 429
 * M_LIMIT_EXCEEDED with retry_after_ms.  Without either setting, address
 * and account follow the homeserver's rc_login_per_second/_burst (the
 * same endpoint before delegation) and failed_attempts is Synapse's 0.17/s,
 * burst 3.
 * A login creates a compat session (au_compat_session.c).  Homeserver
 * admins logging in with a password get urn:synapse:admin:* on the session,
 * so that scripts using the Synapse Admin API with a password login keep
 * working as they did before delegation.
 */
#include "auth.h"
#include "../homeserver/hs.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct au_cl {
    mx_req_t *req;
    au_compat_new_t n;
    const char *user_id;
    const char *rl_key;           /* the account's rate-limit key */
} au_cl_t;

/* -------------------------------------------------------- rate limits --- */

/* One rc_login limiter: {per_second, burst_count}; -EINVAL with `err`. */
static int au_rcl_one(const json_t *rc, const char *path, const char *which, double per_s,
                      double burst, au_rl_t **out, char *err, size_t errlen)
{
    const json_t *o = json_object_get(rc, which);
    if (o && !json_is_object(o)) {
        snprintf(err, errlen, "%s.%s: expected {per_second, burst_count}", path, which);
        return -EINVAL;
    }
    const json_t *ps = json_object_get(o, "per_second"), *bc = json_object_get(o, "burst_count");
    if ((ps && (!json_is_number(ps) || json_number_value(ps) < 0)) ||
        (bc && (!json_is_number(bc) || json_number_value(bc) < 1))) {
        snprintf(err, errlen, "%s.%s.%s: must be a number (per_second >= 0, burst_count >= 1)",
                 path, which, ps && (!json_is_number(ps) || json_number_value(ps) < 0)
                                  ? "per_second" : "burst_count");
        return -EINVAL;
    }
    *out = au_rl_new(bc ? json_number_value(bc) : burst, ps ? json_number_value(ps) : per_s);
    return *out ? 0 : -ENOMEM;
}

int au_compat_rc_init(char *err, size_t errlen)
{
    const json_t *root = mx_server_conf()->root;
    const json_t *rc = au.conf->rc_login;
    const char *path = "auth.rc_login";
    if (!rc && (rc = json_object_get(root, "rc_login")) != NULL)
        path = "rc_login";
    if (rc && !json_is_object(rc)) {
        snprintf(err, errlen, "%s: expected {address, account, failed_attempts}", path);
        return -EINVAL;
    }
    const json_t *hsc = json_object_get(root, "homeserver");
    const json_t *hps = json_object_get(hsc, "rc_login_per_second");
    const json_t *hb = json_object_get(hsc, "rc_login_burst");
    double per_s = json_is_number(hps) ? json_number_value(hps) : 3;
    double burst = json_is_number(hb) ? json_number_value(hb) : 10;
    int r;
    if ((r = au_rcl_one(rc, path, "address", per_s, burst, &au.rc_address, err, errlen)) < 0 ||
        (r = au_rcl_one(rc, path, "account", per_s, burst, &au.rc_account, err, errlen)) < 0 ||
        (r = au_rcl_one(rc, path, "failed_attempts", 0.17, 3, &au.rc_failed, err, errlen)) < 0)
        return r;
    return 0;
}

void au_compat_rc_fini(void)
{
    au_rl_free(au.rc_address);
    au_rl_free(au.rc_account);
    au_rl_free(au.rc_failed);
    au.rc_address = au.rc_account = au.rc_failed = NULL;
}

/* 429 M_LIMIT_EXCEEDED when `wait_ms`; true when the request was answered. */
static bool au_cl_limited(mx_req_t *req, uint64_t wait_ms)
{
    if (!wait_ms)
        return false;
    char *s = mx_psprintf(mx_req_pool(req), "%llu", (unsigned long long)((wait_ms + 999) / 1000));
    if (s)
        mx_req_set_header(req, "Retry-After", s);
    json_t *b = json_pack("{s:s, s:s, s:I}", "errcode", "M_LIMIT_EXCEEDED", "error",
                          "Too many login attempts", "retry_after_ms", (json_int_t)wait_ms);
    mx_req_reply_json(req, 429, b);
    return true;
}

/* The account a password login names, as a limiter key: the localpart,
 * lower-cased ("@Alice:server" and "alice" are one account). */
static const char *au_cl_account_key(mx_pool_t *pool, const char *user)
{
    const char *lp = user[0] == '@' ? user + 1 : user;
    const char *colon = user[0] == '@' ? strchr(lp, ':') : NULL;
    char *k = mx_psprintf(pool, "%.*s", (int)(colon ? (size_t)(colon - lp) : strlen(lp)), lp);
    for (char *p = k; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return k;
}

static void au_cl_storage(mx_req_t *req, int status, const char *what)
{
    mx_log(AU_LOG, MX_LOG_ERROR, "compat %s: storage error %d", what, status);
    mx_req_error(req, 500, "M_UNKNOWN", "Internal error");
}

static void au_unknown_token(mx_req_t *req, const char *msg)
{
    json_t *e = json_pack("{s:s, s:s, s:b}", "errcode", "M_UNKNOWN_TOKEN", "error", msg,
                          "soft_logout", 0);
    mx_req_reply_json(req, 401, e);
}

static void au_locked(mx_req_t *req)
{
    json_t *b = json_pack("{s:s, s:s, s:b}", "errcode", "M_USER_LOCKED", "error",
                          "User account has been locked", "soft_logout", 1);
    mx_req_reply_json(req, 401, b);
}

/* ------------------------------------------------------------ GET /login --- */

static int au_get_login(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *b = json_pack("{s:[{s:s}, {s:s, s:[], s:b, s:b, s:b}, {s:s}]}", "flows", "type",
                          "m.login.password", "type", "m.login.sso", "identity_providers",
                          "delegated_oidc_compatibility", 1,
                          "org.matrix.msc3824.delegated_oidc_compatibility", 1,
                          "oauth_aware_preferred", 1, "type", "m.login.token");
    mx_req_reply_json(req, 200, b);
    return MX_DONE;
}

/* ----------------------------------------------------------- POST /login --- */

static void au_cl_issued(int status, const au_compat_tokens_t *t, void *ud)
{
    au_cl_t *l = ud;
    if (status < 0) {
        au_cl_storage(l->req, status, "login");
        return;
    }
    if (au.m_logins)
        mx_counter_add(au.m_logins, 1);
    const mx_server_conf_t *sc = mx_server_conf();
    json_t *b = json_pack("{s:s, s:s, s:s, s:s}", "user_id", t->user_id, "access_token",
                          t->access_token, "device_id", t->device_id, "home_server",
                          sc->server_name);
    if (b && sc->public_baseurl)
        json_object_set_new(b, "well_known",
                            json_pack("{s:{s:s}}", "m.homeserver", "base_url", sc->public_baseurl));
    if (b && t->refresh_token) {
        json_object_set_new(b, "refresh_token", json_string(t->refresh_token));
        json_object_set_new(b, "expires_in_ms", json_integer(t->expires_in_ms));
    }
    mx_req_reply_json(l->req, 200, b);
}

static void au_cl_issue(au_cl_t *l)
{
    l->n.user_id = l->user_id;
    int rc = au_compat_session_new(mx_req_pool(l->req), &l->n, au_cl_issued, l);
    if (rc < 0)
        au_cl_storage(l->req, rc, "login");
}

static void au_cl_pw_checked(int status, const char *user_id, bool is_admin, void *ud)
{
    au_cl_t *l = ud;
    if (status == -EKEYREVOKED) {
        au_locked(l->req);
        return;
    }
    if (status == -EACCES || status == -ENOENT || status == -EINVAL) {
        au_rl_take(au.rc_failed, l->rl_key);
        mx_req_error(l->req, 403, "M_FORBIDDEN", "Invalid username or password");
        return;
    }
    if (status < 0 || !user_id) {
        au_cl_storage(l->req, status, "login");
        return;
    }
    l->user_id = mx_pstrdup(mx_req_pool(l->req), user_id);
    l->n.synapse_admin = is_admin;
    au_cl_issue(l);
}

static void au_cl_password(au_cl_t *l, const json_t *body)
{
    const json_t *ident = json_object_get(body, "identifier");
    const char *user = NULL;
    if (json_is_object(ident)) {
        const char *type = json_string_value(json_object_get(ident, "type"));
        if (!type || strcmp(type, "m.id.user")) {
            mx_req_error(l->req, 400, "M_UNKNOWN", "Unknown login identifier type");
            return;
        }
        user = json_string_value(json_object_get(ident, "user"));
    } else {
        user = json_string_value(json_object_get(body, "user"));
    }
    const char *pw = json_string_value(json_object_get(body, "password"));
    if (!user) {
        mx_req_error(l->req, 400, "M_MISSING_PARAM", "Missing parameter: identifier");
        return;
    }
    if (!pw) {
        mx_req_error(l->req, 400, "M_INVALID_PARAM", "Bad parameter: password");
        return;
    }
    l->rl_key = au_cl_account_key(mx_req_pool(l->req), user);
    if (!l->rl_key) {
        au_cl_storage(l->req, -ENOMEM, "login");
        return;
    }
    if (au_cl_limited(l->req, au_rl_peek(au.rc_failed, l->rl_key)) ||
        au_cl_limited(l->req, au_rl_take(au.rc_account, l->rl_key)))
        return;
    int rc = au_password_check(user, pw, au_cl_pw_checked, l);
    if (rc == -EACCES || rc == -EINVAL) {
        au_rl_take(au.rc_failed, l->rl_key);
        mx_req_error(l->req, 403, "M_FORBIDDEN", "Invalid username or password");
    }
    else if (rc < 0)
        au_cl_storage(l->req, rc, "login");
}

static void au_cl_token_user(int status, const hs_users_info_t *u, void *ud)
{
    au_cl_t *l = ud;
    if (status == -ENOENT || (status == 0 && u && u->deactivated)) {
        mx_req_error(l->req, 403, "M_USER_DEACTIVATED", "This account has been deactivated");
        return;
    }
    if (status < 0) {
        au_cl_storage(l->req, status, "login");
        return;
    }
    if (u && u->locked) {
        au_locked(l->req);
        return;
    }
    l->n.synapse_admin = u && u->is_admin;
    au_cl_issue(l);
}

static void au_cl_token_used(int status, const char *user_id, const char *sso_id, void *ud)
{
    au_cl_t *l = ud;
    if (status == -ENOENT) {
        mx_req_error(l->req, 403, "M_FORBIDDEN", "Invalid login token");
        return;
    }
    if (status < 0) {
        au_cl_storage(l->req, status, "login");
        return;
    }
    mx_pool_t *pool = mx_req_pool(l->req);
    l->user_id = mx_pstrdup(pool, user_id);
    l->n.sso_login_id = mx_pstrdup(pool, sso_id);
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!users || users->get(l->user_id, au_cl_token_user, l) < 0)
        au_cl_issue(l);   /* the homeserver checks the account on first use */
}

static int au_post_login(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    const char *type = json_string_value(json_object_get(body, "type"));
    if (!type) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: type");
        return MX_DONE;
    }
    const json_t *dev = json_object_get(body, "device_id");
    const json_t *name = json_object_get(body, "initial_device_display_name");
    if ((dev && !json_is_string(dev) && !json_is_null(dev)) ||
        (json_is_string(dev) && (json_string_length(dev) == 0 || json_string_length(dev) > 255)) ||
        (name && !json_is_string(name) && !json_is_null(name))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid device_id or display name");
        return MX_DONE;
    }
    const json_t *refresh = json_object_get(body, "refresh_token");
    if (refresh && !json_is_boolean(refresh)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "refresh_token must be a boolean");
        return MX_DONE;
    }
    const char *ip = mx_req_client_ip(req);
    if (au_cl_limited(req, au_rl_take(au.rc_address, ip ? ip : "")))
        return MX_DONE;
    au_cl_t *l = mx_palloc(mx_req_pool(req), sizeof(*l));
    if (!l) {
        au_cl_storage(req, -ENOMEM, "login");
        return MX_DONE;
    }
    memset(l, 0, sizeof(*l));
    l->req = req;
    l->n.device_id = json_string_value(dev);
    l->n.human_name = json_string_value(name);
    l->n.with_refresh = json_is_true(refresh);
    if (!strcmp(type, "m.login.password")) {
        au_cl_password(l, body);
    } else if (!strcmp(type, "m.login.token")) {
        const char *token = json_string_value(json_object_get(body, "token"));
        if (!token) {
            mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: token");
            return MX_DONE;
        }
        int rc = au_compat_login_token_use(mx_req_pool(req), token, au_cl_token_used, l);
        if (rc < 0)
            au_cl_storage(req, rc, "login");
    } else {
        mx_req_error(req, 400, "M_UNKNOWN", "Unknown login type %s", type);
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* --------------------------------------------------------------- logout --- */

typedef struct au_lo {
    mx_req_t *req;
    bool all;
    const char *token;
    const char *user_id;          /* /logout/all: whose sessions end */
} au_lo_t;

static void au_lo_done(int status, void *ud)
{
    au_lo_t *o = ud;
    if (status < 0) {
        au_cl_storage(o->req, status, "logout");
        return;
    }
    mx_req_reply_json(o->req, 200, json_object());
}

static void au_lo_dev_deleted(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    au_lo_done(status, ud);
}

/* /logout/all: the compat sessions first, then the OAuth ones. */
static void au_lo_all_oauth(int status, mx_sql_res_t *res, void *ud)
{
    au_lo_t *o = ud;
    if (status < 0) {
        au_lo_done(status, o);
        return;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        if (au_session_finish(mx_sql_text(res, 0, i, 0), NULL, NULL) < 0)
            mx_log(AU_LOG, MX_LOG_WARN, "logout/all: could not end an OAuth session");
    au_lo_done(0, o);
}

static void au_lo_all_compat(int status, void *ud)
{
    au_lo_t *o = ud;
    mx_sql_batch_t *b = status >= 0 ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        au_lo_done(status < 0 ? status : -ENOMEM, o);
        return;
    }
    mx_sql_add(b, "SELECT id FROM auth_oauth_sessions WHERE user_id = ? AND finished_ts IS NULL",
               "s", o->user_id);
    int rc = mx_sql_run(b, au_lo_all_oauth, o);
    if (rc < 0)
        au_lo_done(rc, o);
}

static void au_lo_found(int status, const au_tokinfo_t *t, void *ud)
{
    au_lo_t *o = ud;
    if (status < 0) {
        au_cl_storage(o->req, status, "logout");
        return;
    }
    if (!t || !t->active || !t->user_id) {
        au_unknown_token(o->req, "Invalid access token");
        return;
    }
    int rc;
    if (o->all) {
        o->user_id = mx_pstrdup(mx_req_pool(o->req), t->user_id);
        rc = au_compat_finish_device(t->user_id, NULL, true, au_lo_all_compat, o);
    } else if (AU_IS_COMPAT_TOKEN(o->token)) {
        rc = au_compat_finish(t->session_id, true, au_lo_done, o);
    } else {
        rc = au_session_finish(t->session_id, au_lo_done, o);
    }
    if (rc < 0)
        au_cl_storage(o->req, rc, "logout");
}

/* A token of the homeserver's own (issued before delegation): its device
 * goes, with every token on it. */
static void au_lo_legacy(int status, const hs_token_info_t *info, void *ud)
{
    au_lo_t *o = ud;
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (status < 0 || !info || !users) {
        au_unknown_token(o->req, "Invalid access token");
        return;
    }
    if (o->all) {
        o->user_id = mx_pstrdup(mx_req_pool(o->req), info->user_id);
        au_lo_all_compat(0, o);
        return;
    }
    if (!info->device_id[0] ||
        users->delete_device(info->user_id, info->device_id, au_lo_dev_deleted, o) < 0)
        au_lo_done(0, o);
}

static int au_logout(mx_req_t *req, bool all)
{
    const char *token = mx_req_access_token(req);
    if (!token) {
        mx_req_error(req, 401, "M_MISSING_TOKEN", "Missing access token");
        return MX_DONE;
    }
    au_lo_t *o = mx_palloc(mx_req_pool(req), sizeof(*o));
    if (!o) {
        au_cl_storage(req, -ENOMEM, "logout");
        return MX_DONE;
    }
    memset(o, 0, sizeof(*o));
    o->req = req;
    o->all = all;
    o->token = mx_pstrdup(mx_req_pool(req), token);
    int rc;
    if (AU_IS_COMPAT_TOKEN(token) || !strncmp(token, "mat_", 4)) {
        rc = au_token_lookup(mx_req_pool(req), o->token, false, au_lo_found, o);
    } else {
        const mx_auth_token_iface_t *legacy = mx_service_get(HS_LEGACY_TOKEN_SERVICE);
        rc = legacy && legacy->validate ? legacy->validate(o->token, au_lo_legacy, o) : -ENOENT;
        if (rc == -ENOENT) {
            au_unknown_token(req, "Invalid access token");
            return MX_DONE;
        }
    }
    if (rc < 0) {
        au_cl_storage(req, rc, "logout");
        return MX_DONE;
    }
    return MX_ASYNC;
}

static int au_post_logout(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_logout(req, false);
}

static int au_post_logout_all(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_logout(req, true);
}

/* -------------------------------------------------------------- refresh --- */

typedef struct au_rf {
    mx_req_t *req;
    const char *token;
    const char *session_id;
    const char *access, *refresh;
    int64_t ttl;
} au_rf_t;

static void au_rf_written(int status, mx_sql_res_t *res, void *ud)
{
    au_rf_t *r = ud;
    if (status < 0) {
        au_cl_storage(r->req, status, "refresh");
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        /* Another refresh consumed it between our read and this write. */
        au_unknown_token(r->req, "Invalid refresh token");
        return;
    }
    au_cache_evict_session(r->session_id);   /* the old access token is revoked */
    json_t *b = json_pack("{s:s, s:s, s:I}", "access_token", r->access, "refresh_token",
                          r->refresh, "expires_in_ms", (json_int_t)r->ttl);
    mx_req_reply_json(r->req, 200, b);
}

static void au_rf_found(int status, const au_tokinfo_t *t, void *ud)
{
    au_rf_t *r = ud;
    mx_pool_t *pool = mx_req_pool(r->req);
    if (status < 0) {
        au_cl_storage(r->req, status, "refresh");
        return;
    }
    if (!t || !t->active) {
        au_unknown_token(r->req, "Invalid refresh token");
        return;
    }
    r->session_id = t->session_id;
    r->access = au_token_new(pool, "mct", 32);
    r->refresh = au_token_new(pool, "mcr", 32);
    r->ttl = (int64_t)au.conf->access_token_ttl_ms;
    mx_sql_batch_t *b = r->access && r->refresh ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_cl_storage(r->req, -ENOMEM, "refresh");
        return;
    }
    int64_t now = (int64_t)mx_now_ms();
    char oh[AU_HASH_HEX], ah[AU_HASH_HEX], rh[AU_HASH_HEX];
    au_hash_hex(r->token, oh);
    au_hash_hex(r->access, ah);
    au_hash_hex(r->refresh, rh);
    /* Statement 0 decides: only one rotation of a token wins. */
    mx_sql_add(b,
               "UPDATE auth_compat_refresh_tokens SET consumed_ts = ? WHERE token_hash = ?"
               " AND consumed_ts IS NULL AND revoked = 0",
               "is", now, oh);
    mx_sql_add(b,
               "UPDATE auth_compat_access_tokens SET revoked = 1 WHERE token_hash ="
               " (SELECT access_hash FROM auth_compat_refresh_tokens WHERE token_hash = ?)",
               "s", oh);
    mx_sql_add(b,
               "INSERT INTO auth_compat_access_tokens (token_hash, session_id, created_ts,"
               " expires_ts) SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM"
               " auth_compat_refresh_tokens WHERE token_hash = ? AND consumed_ts = ?)",
               "ssiisi", ah, r->session_id, now, now + r->ttl, oh, now);
    mx_sql_add(b,
               "INSERT INTO auth_compat_refresh_tokens (token_hash, session_id, access_hash,"
               " created_ts) SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM"
               " auth_compat_refresh_tokens WHERE token_hash = ? AND consumed_ts = ?)",
               "sssisi", rh, r->session_id, ah, now, oh, now);
    int rc = mx_sql_run(b, au_rf_written, r);
    if (rc < 0)
        au_cl_storage(r->req, rc, "refresh");
}

static int au_post_refresh(mx_req_t *req, void *ud)
{
    (void)ud;
    const char *token = json_string_value(json_object_get(mx_req_json(req), "refresh_token"));
    if (!token) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: refresh_token");
        return MX_DONE;
    }
    if (!AU_IS_COMPAT_REFRESH(token)) {
        au_unknown_token(req, "Invalid refresh token");
        return MX_DONE;
    }
    au_rf_t *r = mx_palloc(mx_req_pool(req), sizeof(*r));
    if (!r) {
        au_cl_storage(req, -ENOMEM, "refresh");
        return MX_DONE;
    }
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->token = mx_pstrdup(mx_req_pool(req), token);
    int rc = au_token_lookup(mx_req_pool(req), r->token, true, au_rf_found, r);
    if (rc < 0) {
        au_cl_storage(req, rc, "refresh");
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* --------------------------------------------------------------- routes --- */

static int au_route_client(const char *method, const char *tail, mx_handler_fn fn,
                           unsigned flags)
{
    static const char *const versions[] = { "v3", "r0" };
    char path[256];
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/_matrix/client/%s%s", versions[i], tail);
        int rc = mx_route_add("client", method, path, fn, NULL, flags);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int au_compat_login_routes(void)
{
    int rc;
    if ((rc = au_route_client("GET", "/login", au_get_login, 0)) < 0 ||
        (rc = au_route_client("POST", "/login", au_post_login, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = au_route_client("POST", "/logout", au_post_logout, 0)) < 0 ||
        (rc = au_route_client("POST", "/logout/all", au_post_logout_all, 0)) < 0 ||
        (rc = au_route_client("POST", "/refresh", au_post_refresh, MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return mx_route_add("client", "POST",
                        "/_matrix/client/unstable/org.matrix.msc2918.refresh_token/refresh",
                        au_post_refresh, NULL, MX_ROUTE_JSON_BODY);
}
