/*
 * acc_login.c: GET/POST /login (m.login.password, m.login.token), POST
 * /logout, /logout/all and /refresh (spec "Legacy API" and "Refreshing
 * access tokens").
 *
 * Login looks the user up case-insensitively like Synapse (one match, or the
 * exact one among several), checks the password off the loop, then writes
 * the device and its tokens in one batch and answers after commit.
 * Refresh rotates: the old refresh token stays usable until the new access
 * token is first used (acc_tokens.c revokes it then).
 */
#include "acc_int.h"

#include <errno.h>
#include <string.h>

#define ACC_LOGIN_TOKEN_LIFETIME_MS (2 * 60 * 1000)

typedef struct acc_login {
    mx_req_t *req;
    char *user_id;              /* canonical, once found */
    const char *device_id;
    const char *display_name;
    bool refresh;
    bool locked, deactivated;
    acc_session_t sess;
} acc_login_t;

static json_t *acc_well_known(void)
{
    const char *base = mx_server_conf()->public_baseurl;
    if (!base)
        return NULL;
    return json_pack("{s:{s:s}}", "m.homeserver", "base_url", base);
}

/* ------------------------------------------------------------ GET /login --- */

static int acc_get_login(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *b = json_pack("{s:[{s:s}, {s:s}]}", "flows", "type", "m.login.password", "type",
                          "m.login.token");
    mx_req_reply_json(req, 200, b);
    return MX_DONE;
}

/* ------------------------------------------------------- session written --- */

static void acc_login_written(int status, mx_sql_res_t *res, void *ud)
{
    acc_login_t *l = ud;
    if (status < 0) {
        hs_reply_storage_error(l->req, status, "login");
        return;
    }
    /* Old tokens of a re-used device are gone. */
    acc_cache_evict_device(l->sess.user_id, l->sess.device_id);
    if (mx_sql_changes(res, 0) > 0)
        acc_hook_device_created(l->sess.user_id, l->sess.device_id);
    json_t *b = json_object();
    acc_session_json(b, &l->sess);
    json_t *wk = acc_well_known();
    if (wk)
        json_object_set_new(b, "well_known", wk);
    mx_req_reply_json(l->req, 200, b);
}

/* The user is known and authenticated: create the device and tokens. */
static void acc_login_issue(acc_login_t *l)
{
    if (l->deactivated) {
        mx_req_error(l->req, 403, "M_USER_DEACTIVATED", "This account has been deactivated");
        return;
    }
    if (l->locked) {
        json_t *b = json_pack("{s:s, s:s, s:b}", "errcode", "M_USER_LOCKED", "error",
                              "User account has been locked", "soft_logout", 1);
        mx_req_reply_json(l->req, 401, b);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(l->req, -ENOMEM, "login");
        return;
    }
    int rc = acc_session_add(b, mx_req_pool(l->req), l->user_id, l->device_id, l->display_name,
                             l->refresh, &l->sess);
    if (rc >= 0)
        rc = mx_sql_run(b, acc_login_written, l);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(l->req, rc, "login");
    }
}

/* ------------------------------------------------------ m.login.password --- */

static void acc_login_pw_checked(bool ok, void *ud)
{
    acc_login_t *l = ud;
    if (!ok || !l->user_id) {
        mx_req_error(l->req, 403, "M_FORBIDDEN", "Invalid username or password");
        return;
    }
    acc_login_issue(l);
}

static void acc_login_user_loaded(int status, mx_sql_res_t *res, void *ud)
{
    acc_login_t *l = ud;
    if (status < 0) {
        hs_reply_storage_error(l->req, status, "login");
        return;
    }
    /* Case-insensitive match; with several, only the exact one counts. */
    int n = mx_sql_nrows(res, 0), row = -1;
    if (n == 1) {
        row = 0;
    } else {
        for (int i = 0; i < n; i++)
            if (!strcmp(mx_sql_text(res, 0, i, 0), l->user_id))
                row = i;
    }
    const char *hash = NULL;
    json_t *body = mx_req_json(l->req);
    const char *pw = json_string_value(json_object_get(body, "password"));
    if (row >= 0) {
        l->user_id = mx_pstrdup(mx_req_pool(l->req), mx_sql_text(res, 0, row, 0));
        l->deactivated = mx_sql_int(res, 0, row, 2) != 0;
        l->locked = mx_sql_int(res, 0, row, 3) != 0;
        hash = mx_sql_text(res, 0, row, 1);
        if (l->deactivated) {
            /* Synapse answers this before the password (the hash is gone). */
            acc_login_issue(l);
            return;
        }
    } else {
        l->user_id = NULL;
    }
    int rc = acc_pw_verify(hash, pw, acc_login_pw_checked, l);
    if (rc < 0)
        hs_reply_storage_error(l->req, rc, "login");
}

static void acc_login_password(acc_login_t *l, json_t *body)
{
    mx_req_t *req = l->req;
    bool bad_type;
    const char *user = acc_identifier_user(body, &bad_type);
    if (bad_type) {
        mx_req_error(req, 400, "M_UNKNOWN", "Unknown login identifier type");
        return;
    }
    if (!user) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: identifier");
        return;
    }
    if (!json_is_string(json_object_get(body, "password"))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Bad parameter: password");
        return;
    }
    l->user_id = acc_user_from_input(mx_req_pool(req), user);
    if (!l->user_id) {
        /* Another server's user, or garbage: same answer and cost as a
         * wrong password. */
        int rc = acc_pw_verify(NULL, "", acc_login_pw_checked, l);
        if (rc < 0)
            hs_reply_storage_error(req, rc, "login");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "login");
        return;
    }
    mx_sql_add(b,
               "SELECT name, password_hash, deactivated, locked FROM users"
               " WHERE lower(name) = lower(?)",
               "s", l->user_id);
    int rc = mx_sql_run(b, acc_login_user_loaded, l);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "login");
    }
}

/* --------------------------------------------------------- m.login.token --- */

static void acc_login_token_user(int status, mx_sql_res_t *res, void *ud)
{
    acc_login_t *l = ud;
    if (status < 0) {
        hs_reply_storage_error(l->req, status, "login");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(l->req, 403, "M_FORBIDDEN", "Invalid login token");
        return;
    }
    l->deactivated = mx_sql_int(res, 0, 0, 0) != 0;
    l->locked = mx_sql_int(res, 0, 0, 1) != 0;
    acc_login_issue(l);
}

static void acc_login_token_used(int status, mx_sql_res_t *res, void *ud)
{
    acc_login_t *l = ud;
    if (status < 0) {
        hs_reply_storage_error(l->req, status, "login");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(l->req, 403, "M_FORBIDDEN", "Invalid login token");
        return;
    }
    l->user_id = mx_pstrdup(mx_req_pool(l->req), mx_sql_text(res, 0, 0, 0));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b || !l->user_id) {
        if (b)
            mx_sql_batch_free(b);
        hs_reply_storage_error(l->req, -ENOMEM, "login");
        return;
    }
    mx_sql_add(b, "SELECT deactivated, locked FROM users WHERE name = ?", "s", l->user_id);
    int rc = mx_sql_run(b, acc_login_token_user, l);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(l->req, rc, "login");
    }
}

/* Login tokens are single use and live ACC_LOGIN_TOKEN_LIFETIME_MS: the
 * UPDATE consumes the token atomically, so two logins cannot share it. */
static void acc_login_token(acc_login_t *l, json_t *body)
{
    const char *token = json_string_value(json_object_get(body, "token"));
    if (!token) {
        mx_req_error(l->req, 400, "M_MISSING_PARAM", "Missing parameter: token");
        return;
    }
    char hash[ACC_HASH_HEX];
    acc_token_hash(token, hash);
    uint64_t now = mx_now_ms();
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(l->req, -ENOMEM, "login");
        return;
    }
    mx_sql_add(b,
               "UPDATE login_tokens SET used_ts = ? WHERE token_hash = ? AND used_ts IS NULL"
               " AND expiry_ts > ? RETURNING user_id",
               "isi", (int64_t)now, hash, (int64_t)now);
    int rc = mx_sql_run(b, acc_login_token_used, l);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(l->req, rc, "login");
    }
}

/* ----------------------------------------------------------- POST /login --- */

static int acc_post_login(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    char key[96];
    snprintf(key, sizeof(key), "login:%s", mx_req_client_ip(req) ? mx_req_client_ip(req) : "");
    int64_t wait = acc_rl_take(key, (double)hs.conf.rc_login_per_second,
                               (double)hs.conf.rc_login_burst, true);
    if (wait) {
        hs_reply_ratelimited(req, wait);
        return MX_DONE;
    }
    const char *type = json_string_value(json_object_get(body, "type"));
    if (!type) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: type");
        return MX_DONE;
    }
    const json_t *dev = json_object_get(body, "device_id");
    const json_t *name = json_object_get(body, "initial_device_display_name");
    if ((dev && !json_is_string(dev) && !json_is_null(dev)) ||
        (json_is_string(dev) && (json_string_length(dev) == 0 || json_string_length(dev) > 255))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid device_id");
        return MX_DONE;
    }
    acc_login_t *l = mx_palloc(mx_req_pool(req), sizeof(*l));
    if (!l) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_DONE;
    }
    memset(l, 0, sizeof(*l));
    l->req = req;
    l->device_id = json_string_value(dev);
    l->display_name = json_string_value(name);
    l->refresh = json_is_true(json_object_get(body, "refresh_token"));
    if (!strcmp(type, "m.login.password"))
        acc_login_password(l, body);
    else if (!strcmp(type, "m.login.token"))
        acc_login_token(l, body);
    else
        mx_req_error(req, 400, "M_UNKNOWN", "Unknown login type %s", type);
    return MX_ASYNC;
}

/* --------------------------------------------------------------- logout --- */

typedef struct acc_logout {
    mx_req_t *req;
    const hs_user_t *who;
    bool all;
} acc_logout_t;

static void acc_logout_done(int status, mx_sql_res_t *res, void *ud)
{
    acc_logout_t *o = ud;
    if (status < 0) {
        hs_reply_storage_error(o->req, status, "logout");
        return;
    }
    if (o->all) {
        acc_cache_evict_device(o->who->user_id, NULL);
        int n = mx_sql_nrows(res, 0);
        const char **ids = mx_palloc(mx_req_pool(o->req), sizeof(char *) * (size_t)(n + 1));
        for (int i = 0; ids && i < n; i++)
            ids[i] = mx_sql_text(res, 0, i, 0);
        if (ids)
            acc_hook_devices_deleted(o->who->user_id, ids, (size_t)n);
    } else if (o->who->device_id) {
        acc_cache_evict_device(o->who->user_id, o->who->device_id);
        const char *ids[1] = { o->who->device_id };
        if (mx_sql_changes(res, 0) > 0)
            acc_hook_devices_deleted(o->who->user_id, ids, 1);
    } else {
        json_t *one = json_pack("[I]", (json_int_t)o->who->token_id);
        acc_cache_evict_ids(one);
        json_decref(one);
    }
    mx_req_reply_json(o->req, 200, json_object());
}

static void acc_logout_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    acc_logout_t *o = mx_palloc(mx_req_pool(req), sizeof(*o));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!o || !b) {
        if (b)
            mx_sql_batch_free(b);
        hs_reply_storage_error(req, -ENOMEM, "logout");
        return;
    }
    o->req = req;
    o->who = who;
    o->all = ud != NULL;
    if (o->all) {
        mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? RETURNING device_id", "s",
                   who->user_id);
        mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ?", "s", who->user_id);
        mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ?", "s", who->user_id);
    } else if (who->device_id) {
        /* Logging out deletes the device (and with it its tokens). */
        mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? AND device_id = ?", "ss",
                   who->user_id, who->device_id);
        mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", "ss",
                   who->user_id, who->device_id);
        mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", "ss",
                   who->user_id, who->device_id);
    } else {
        mx_sql_add(b, "DELETE FROM access_tokens WHERE id = ?", "i", who->token_id);
    }
    int rc = mx_sql_run(b, acc_logout_done, o);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "logout");
    }
}

static int acc_post_logout(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, acc_logout_authed, NULL);
}

static int acc_post_logout_all(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, acc_logout_authed, (void *)1);
}

/* -------------------------------------------------------------- refresh --- */

typedef struct acc_refresh {
    mx_req_t *req;
    const char *user_id, *device_id;
    acc_session_t sess;
} acc_refresh_t;

static void acc_refresh_written(int status, mx_sql_res_t *res, void *ud)
{
    acc_refresh_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "refresh");
        return;
    }
    json_t *ids = json_array();
    for (int st = 0; st < 2; st++)
        for (int i = 0; i < mx_sql_nrows(res, st); i++)
            json_array_append_new(ids, json_integer(mx_sql_int(res, st, i, 0)));
    acc_cache_evict_ids(ids);
    json_decref(ids);
    json_t *b = json_pack("{s:s, s:s}", "access_token", r->sess.access_token, "refresh_token",
                          r->sess.refresh_token);
    if (b && r->sess.expires_in_ms)
        json_object_set_new(b, "expires_in_ms", json_integer(r->sess.expires_in_ms));
    mx_req_reply_json(r->req, 200, b);
}

static void acc_refresh_loaded(int status, mx_sql_res_t *res, void *ud)
{
    acc_refresh_t *r = ud;
    mx_req_t *req = r->req;
    mx_pool_t *pool = mx_req_pool(req);
    if (status < 0) {
        hs_reply_storage_error(req, status, "refresh");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        json_t *e = json_pack("{s:s, s:s, s:b}", "errcode", "M_UNKNOWN_TOKEN", "error",
                              "Invalid refresh token", "soft_logout", 0);
        mx_req_reply_json(req, 401, e);
        return;
    }
    int64_t rid = mx_sql_int(res, 0, 0, 0);
    r->user_id = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 1));
    r->device_id = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 2));
    int64_t next = mx_sql_is_null(res, 0, 0, 3) ? 0 : mx_sql_int(res, 0, 0, 3);
    r->sess.user_id = r->user_id;
    r->sess.device_id = r->device_id;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "refresh");
        return;
    }
    /* An unused successor from an earlier refresh of this token is replaced. */
    mx_sql_add(b, "DELETE FROM access_tokens WHERE refresh_token_id = ? RETURNING id", "i", next);
    /* Predecessors of this token are dead now that it is being used. */
    mx_sql_add(b,
               "DELETE FROM access_tokens WHERE refresh_token_id IN"
               " (SELECT id FROM refresh_tokens WHERE next_token_id = ?) RETURNING id",
               "i", rid);
    mx_sql_add(b, "DELETE FROM refresh_tokens WHERE id = ? OR next_token_id = ?", "ii", next, rid);
    int rc = acc_session_refresh_add(b, pool, rid, r->user_id, r->device_id, &r->sess);
    if (rc >= 0)
        rc = mx_sql_run(b, acc_refresh_written, r);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "refresh");
    }
}

static int acc_post_refresh(mx_req_t *req, void *ud)
{
    (void)ud;
    const char *token = json_string_value(json_object_get(mx_req_json(req), "refresh_token"));
    if (!token) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: refresh_token");
        return MX_DONE;
    }
    acc_refresh_t *r = mx_palloc(mx_req_pool(req), sizeof(*r));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!r || !b) {
        if (b)
            mx_sql_batch_free(b);
        hs_reply_storage_error(req, -ENOMEM, "refresh");
        return MX_DONE;
    }
    memset(r, 0, sizeof(*r));
    r->req = req;
    char hash[ACC_HASH_HEX];
    acc_token_hash(token, hash);
    mx_sql_add(b,
               "SELECT id, user_id, device_id, next_token_id FROM refresh_tokens"
               " WHERE token_hash = ?",
               "s", hash);
    int rc = mx_sql_run(b, acc_refresh_loaded, r);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "refresh");
        return MX_DONE;
    }
    return MX_ASYNC;
}

int acc_login_routes(void)
{
    int rc;
    /* Delegated (MSC3861): the auth module's compatibility layer serves
     * these, in this process or behind the same ingress. */
    if (acc_delegated())
        return 0;
    if ((rc = acc_route_v3_r0("GET", "/login", acc_get_login, 0)) < 0 ||
        (rc = acc_route_v3_r0("POST", "/login", acc_post_login, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = acc_route_v3_r0("POST", "/logout", acc_post_logout, 0)) < 0 ||
        (rc = acc_route_v3_r0("POST", "/logout/all", acc_post_logout_all, 0)) < 0 ||
        (rc = acc_route_v3_r0("POST", "/refresh", acc_post_refresh, MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    /* MSC2918's unstable prefix, still used by some clients. */
    return mx_route_add("client", "POST",
                        "/_matrix/client/unstable/org.matrix.msc2918.refresh_token/refresh",
                        acc_post_refresh, NULL, MX_ROUTE_JSON_BODY);
}
