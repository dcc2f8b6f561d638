/*
 * au_account.c: the account page (MAS's /account/, MSC4191's
 * account_management_uri), plain HTML forms that work without JavaScript.
 *
 *   GET  /account/                     who is signed in; change password;
 *                                      sessions (OAuth 2.0 with their
 *                                      client and device, compatibility
 *                                      logins with their device, browsers);
 *                                      cross-signing reset approval.
 *                                      MSC4191 deep links: ?action=
 *                                      org.matrix.{session,device}_{view,end,
 *                                      delete}&device_id= shows that device
 *                                      only; cross_signing_reset goes
 *                                      straight to the approval.
 *   POST /account/password             current + new password (policy)
 *   POST /account/sessions/end         kind = oauth | compat | browser, id
 *   POST /account/cross_signing_reset  allows a reset for 10 minutes
 *
 * Every POST needs the CSRF token and a signed-in browser, and answers with
 * a redirect back to the page carrying a message key (?done= / ?error=,
 * only known keys are shown).  Sessions are ended only when they belong to
 * the signed-in user.  Password checks share the login rate limit.
 */
#include "auth.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AU_XS_TOPIC "auth.crosssign_reset"

typedef struct au_ac {
    mx_req_t *req;
    json_t *form;                 /* POST body (pool cleanup) */
    const au_browser_t *b;
    const char *kind, *id;        /* sessions/end */
    void (*next)(struct au_ac *);  /* what a POST does once the browser is known */
    bool is_admin;
} au_ac_t;

static void au_ac_back(au_ac_t *a, const char *what, const char *key)
{
    mx_pool_t *pool = mx_req_pool(a->req);
    au_redirect(a->req, 303, mx_psprintf(pool, "%saccount/?%s=%s", au.base, what, key));
}

static char *au_ac_time(mx_pool_t *pool, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&t, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm))
        return mx_pstrdup(pool, "");
    return mx_pstrdup(pool, buf);
}

/* Message keys a redirect may name (anything else is ignored). */
static const char *au_ac_msg(mx_pool_t *pool, const char *key, bool error)
{
    static const char *const done[] = { "password_changed", "session_ended",
                                        "crosssign_allowed", NULL };
    static const char *const errs[] = { "err_credentials", "err_password_mismatch",
                                        "err_password_short", "err_password_long",
                                        "err_password_weak", "err_rate_limited",
                                        "err_password_change_disabled", "err_session_unknown",
                                        NULL };
    for (const char *const *k = error ? errs : done; key && *k; k++)
        if (!strcmp(*k, key))
            return au_policy_text(pool, key);
    return NULL;
}

/* ------------------------------------------------------------- the page --- */

static bool au_ac_focus(mx_req_t *req, const char *device_id)
{
    const char *action = mx_req_query(req, "action");
    const char *dev = mx_req_query(req, "device_id");
    if (!action || !dev || (strcmp(action, "org.matrix.session_view") &&
                            strcmp(action, "org.matrix.session_end") &&
                            strcmp(action, "org.matrix.device_view") &&
                            strcmp(action, "org.matrix.device_delete")))
        return true;
    return device_id && !strcmp(device_id, dev);
}

static void au_ac_page(int status, mx_sql_res_t *res, void *ud)
{
    au_ac_t *a = ud;
    mx_req_t *req = a->req;
    mx_pool_t *pool = mx_req_pool(req);
    if (status < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    json_t *v = json_object();
    mx_pool_on_free(pool, au_json_unref, v);
    json_object_set_new(v, "user_id", json_string(a->b->user_id));
    json_object_set_new(v, "csrf", json_string(au_csrf_token(pool, a->b->sid)));
    json_object_set_new(v, "password_change", json_boolean(au.fl->password_change_allowed));
    const char *m = au_ac_msg(pool, mx_req_query(req, "done"), false);
    if (m)
        json_object_set_new(v, "message", json_string(m));
    m = au_ac_msg(pool, mx_req_query(req, "error"), true);
    if (m)
        json_object_set_new(v, "error", json_string(m));
    const char *action = mx_req_query(req, "action");
    json_object_set_new(v, "crosssign_focus",
                        json_boolean(action && !strcmp(action, "org.matrix.cross_signing_reset")));
    /* 0: OAuth sessions + client; 1: compat sessions; 2: browsers; 3: reset */
    json_t *oauth = json_array(), *compat = json_array(), *browsers = json_array();
    json_object_set_new(v, "oauth_sessions", oauth);
    json_object_set_new(v, "compat_sessions", compat);
    json_object_set_new(v, "browser_sessions", browsers);
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        const char *dev = mx_sql_is_null(res, 0, i, 2) ? NULL : mx_sql_text(res, 0, i, 2);
        if (!au_ac_focus(req, dev))
            continue;
        json_t *md = mx_sql_is_null(res, 0, i, 4)
                         ? NULL
                         : json_loads(mx_sql_text(res, 0, i, 4), 0, NULL);
        const char *name = json_string_value(json_object_get(md, "client_name"));
        const char *uri = json_string_value(json_object_get(md, "client_uri"));
        json_array_append_new(oauth, json_pack("{s:s, s:s, s:s, s:s, s:s}", "id",
                                               mx_sql_text(res, 0, i, 0), "client_name",
                                               name ? name : uri ? uri : mx_sql_text(res, 0, i, 1),
                                               "client_uri", uri ? uri : "", "device_id",
                                               dev ? dev : "", "created",
                                               au_ac_time(pool, mx_sql_int(res, 0, i, 3))));
        json_decref(md);
    }
    for (int i = 0; i < mx_sql_nrows(res, 1); i++) {
        const char *dev = mx_sql_text(res, 1, i, 1);
        if (!au_ac_focus(req, dev))
            continue;
        json_array_append_new(compat, json_pack("{s:s, s:s, s:s}", "id", mx_sql_text(res, 1, i, 0),
                                                "device_id", dev, "created",
                                                au_ac_time(pool, mx_sql_int(res, 1, i, 2))));
    }
    char cur[AU_HASH_HEX];
    au_hash_hex(a->b->sid, cur);
    for (int i = 0; i < mx_sql_nrows(res, 2); i++) {
        const char *id = mx_sql_text(res, 2, i, 0);
        json_array_append_new(browsers, json_pack("{s:s, s:s, s:b}", "id", id, "created",
                                                  au_ac_time(pool, mx_sql_int(res, 2, i, 1)),
                                                  "current", !strcmp(id, cur)));
    }
    int64_t until = mx_sql_nrows(res, 3) > 0 ? mx_sql_int(res, 3, 0, 0) : 0;
    if (until > (int64_t)mx_now_ms())
        json_object_set_new(v, "crosssign_until", json_string(au_ac_time(pool, until)));
    au_page_reply(req, 200, "account", v, NULL);
}

static void au_ac_load(au_ac_t *a)
{
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    const char *u = a->b->user_id;
    mx_sql_add(b,
               "SELECT s.id, s.client_id, s.device_id, s.created_ts, c.metadata"
               " FROM auth_oauth_sessions s LEFT JOIN auth_clients c ON c.client_id = s.client_id"
               " WHERE s.user_id = ? AND s.finished_ts IS NULL ORDER BY s.created_ts DESC",
               "s", u);
    mx_sql_add(b,
               "SELECT id, device_id, created_ts FROM auth_compat_sessions WHERE user_id = ?"
               " AND finished_ts IS NULL ORDER BY created_ts DESC",
               "s", u);
    mx_sql_add(b,
               "SELECT id_hash, created_ts FROM auth_browser_sessions WHERE user_id = ?"
               " AND finished_ts IS NULL AND expires_ts > ? ORDER BY created_ts DESC",
               "si", u, (int64_t)mx_now_ms());
    mx_sql_add(b, "SELECT allowed_until FROM auth_crosssign_resets WHERE user_id = ?", "s", u);
    if (mx_sql_run(b, au_ac_page, a) < 0)
        au_page_error(a->req, 500, "err_internal", NULL);
}

/* The account must be usable: locked or deactivated users see an error. */
static void au_ac_user(int status, const hs_users_info_t *u, void *ud)
{
    au_ac_t *a = ud;
    if (status < 0 || !u || u->locked || u->deactivated) {
        bool internal = status < 0 && status != -ENOENT;
        au_page_error(a->req, internal ? 500 : 403, internal ? "err_internal" : "err_locked", NULL);
        return;
    }
    a->is_admin = u->is_admin;
    if (a->next)
        a->next(a);
    else
        au_ac_load(a);
}

static void au_ac_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    au_ac_t *a = ud;
    mx_pool_t *pool = mx_req_pool(req);
    a->b = b;
    if (!b->user_id) {
        if (a->form) {
            au_page_error(req, 403, "err_csrf", NULL);
            return;
        }
        /* Back here after the login, deep-link parameters included. */
        const char *action = mx_req_query(req, "action");
        const char *dev = mx_req_query(req, "device_id");
        const char *next = "account/";
        if (action)
            next = mx_psprintf(pool, "account/?action=%s%s%s", au_urlencode(pool, action),
                               dev ? "&device_id=" : "", dev ? au_urlencode(pool, dev) : "");
        au_redirect(req, 302, mx_psprintf(pool, "%slogin?next=%s", au.base,
                                          au_urlencode(pool, next)));
        return;
    }
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!users || users->get(b->user_id, au_ac_user, a) < 0)
        au_page_error(req, 500, "err_internal", NULL);
}

static int au_get_account(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_page_browse(req, sizeof(au_ac_t), au_ac_browser);
}

static int au_get_account_bare(mx_req_t *req, void *ud)
{
    (void)ud;
    au_redirect(req, 302, mx_psprintf(mx_req_pool(req), "%saccount/", au.base));
    return MX_DONE;
}

/* A POST: form + CSRF, then `next` with a signed-in, usable account. */
static int au_ac_post(mx_req_t *req, void (*next)(au_ac_t *))
{
    json_t *form = au_page_form(req);
    au_ac_t *a = form ? au_page_zalloc(req, sizeof(*a)) : NULL;
    if (!a)
        return MX_DONE;
    a->form = form;
    a->next = next;
    au_browser_load(req, au_ac_browser, a);
    return MX_ASYNC;
}

static const char *au_ac_field(au_ac_t *a, const char *name)
{
    return json_string_value(json_object_get(a->form, name));
}

/* ------------------------------------------------------------- password --- */

static void au_ac_pw_set(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    au_ac_t *a = ud;
    if (status < 0) {
        au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    mx_log(AU_LOG, MX_LOG_INFO, "password changed on the account page by %s", a->b->user_id);
    au_ac_back(a, "done", "password_changed");
}

static void au_ac_pw_checked(int status, const char *user_id, bool is_admin, void *ud)
{
    (void)user_id;
    (void)is_admin;
    au_ac_t *a = ud;
    if (status == -EACCES || status == -EKEYREVOKED) {
        au_rl_take(au.fl->login_account, a->b->user_id);
        au_ac_back(a, "error", "err_credentials");
        return;
    }
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (status < 0 || !users ||
        users->set_password(a->b->user_id, au_ac_field(a, "new_password"), au_ac_pw_set, a) < 0)
        au_page_error(a->req, 500, "err_internal", NULL);
}

static void au_ac_password(au_ac_t *a)
{
    const char *cur = au_ac_field(a, "current_password");
    const char *pw = au_ac_field(a, "new_password");
    const char *pw2 = au_ac_field(a, "new_password_confirm");
    if (!au.fl->password_change_allowed) {
        au_ac_back(a, "error", "err_password_change_disabled");
        return;
    }
    const char *ip = mx_req_client_ip(a->req);
    if (au_rl_take(au.fl->login_ip, ip ? ip : "?") ||
        au_rl_peek(au.fl->login_account, a->b->user_id)) {
        au_ac_back(a, "error", "err_rate_limited");
        return;
    }
    const char *err = au_password_policy(pw);
    if (!err && (!pw2 || strcmp(pw, pw2)))
        err = "err_password_mismatch";
    if (err) {
        au_ac_back(a, "error", err);
        return;
    }
    int rc = au_password_check(a->b->user_id, cur ? cur : "", au_ac_pw_checked, a);
    if (rc == -EACCES)
        au_ac_pw_checked(-EACCES, NULL, false, a);
    else if (rc < 0)
        au_page_error(a->req, 500, "err_internal", NULL);
}

static int au_post_password(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_ac_post(req, au_ac_password);
}

/* ------------------------------------------------------------- sessions --- */

static void au_ac_ended(int status, void *ud)
{
    au_ac_t *a = ud;
    if (status == -ENOENT) {
        au_ac_back(a, "error", "err_session_unknown");
        return;
    }
    if (status < 0) {
        au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    char cur[AU_HASH_HEX];
    au_hash_hex(a->b->sid, cur);
    if (!strcmp(a->kind, "browser") && !strcmp(a->id, cur)) {
        /* This very browser: signed out. */
        au_cookie_clear(a->req);
        au_redirect(a->req, 303, mx_psprintf(mx_req_pool(a->req), "%slogin", au.base));
        return;
    }
    au_ac_back(a, "done", "session_ended");
}

static void au_ac_owned(int status, mx_sql_res_t *res, void *ud)
{
    au_ac_t *a = ud;
    if (status < 0) {
        au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        au_ac_ended(-ENOENT, a);
        return;
    }
    int rc = !strcmp(a->kind, "oauth") ? au_session_finish(a->id, au_ac_ended, a)
                                       : au_compat_finish(a->id, true, au_ac_ended, a);
    if (rc < 0)
        au_page_error(a->req, 500, "err_internal", NULL);
}

static void au_ac_end(au_ac_t *a)
{
    a->kind = au_ac_field(a, "kind");
    a->id = au_ac_field(a, "id");
    if (!a->kind || !a->id) {
        au_page_error(a->req, 400, "err_bad_request", NULL);
        return;
    }
    if (!strcmp(a->kind, "browser")) {
        if (au_browser_end(a->id, a->b->user_id, au_ac_ended, a) < 0)
            au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    bool oauth = !strcmp(a->kind, "oauth");
    if (!oauth && strcmp(a->kind, "compat")) {
        au_page_error(a->req, 400, "err_bad_request", NULL);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    mx_sql_add(b,
               oauth ? "SELECT 1 FROM auth_oauth_sessions WHERE id = ? AND user_id = ?"
                       " AND finished_ts IS NULL"
                     : "SELECT 1 FROM auth_compat_sessions WHERE id = ? AND user_id = ?"
                       " AND finished_ts IS NULL",
               "ss", a->id, a->b->user_id);
    if (mx_sql_run(b, au_ac_owned, a) < 0)
        au_page_error(a->req, 500, "err_internal", NULL);
}

static int au_post_end(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_ac_post(req, au_ac_end);
}

/* ------------------------------------------------- cross-signing reset --- */

static void au_ac_xs_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_ac_t *a = ud;
    if (status < 0) {
        au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    json_t *msg = json_pack("{s:s, s:I}", "user_id", a->b->user_id, "until_ms",
                            (json_int_t)(mx_now_ms() + AU_CROSSSIGN_RESET_MS));
    if (msg)
        mx_bus_publish(AU_XS_TOPIC, msg);
    json_decref(msg);
    mx_log(AU_LOG, MX_LOG_INFO, "%s approved a cross-signing reset", a->b->user_id);
    au_ac_back(a, "done", "crosssign_allowed");
}

static void au_ac_crosssign(au_ac_t *a)
{
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        au_page_error(a->req, 500, "err_internal", NULL);
        return;
    }
    int64_t until = (int64_t)(mx_now_ms() + AU_CROSSSIGN_RESET_MS);
    mx_sql_add(b,
               "INSERT INTO auth_crosssign_resets (user_id, allowed_until) VALUES (?, ?)"
               " ON CONFLICT (user_id) DO UPDATE SET allowed_until = excluded.allowed_until",
               "si", a->b->user_id, until);
    if (mx_sql_run(b, au_ac_xs_written, a) < 0)
        au_page_error(a->req, 500, "err_internal", NULL);
}

static int au_post_crosssign(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_ac_post(req, au_ac_crosssign);
}

int au_account_routes(void)
{
    int rc;
    if ((rc = mx_route_add("auth", "GET", "/account/", au_get_account, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "GET", "/account", au_get_account_bare, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/account/password", au_post_password, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/account/sessions/end", au_post_end, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/account/cross_signing_reset", au_post_crosssign,
                           NULL, MX_ROUTE_NO_CORS)) < 0)
        return rc;
    return 0;
}
