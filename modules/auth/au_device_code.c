/*
 * au_device_code.c: the device authorization grant (RFC 8628; Matrix
 * MSC4341, QR and TV logins), up to the user's answer.  The token endpoint
 * side (polling) is in au_token.c.
 *
 *   POST /oauth2/device   client_id (+ client authentication), scope →
 *                         device_code, user_code, verification_uri(_complete),
 *                         expires_in, interval
 *   GET  /link            the user-code form (?code= fills it in); a browser
 *                         that is not logged in goes to /login first
 *   POST /link            checks the code and shows what the client asks for
 *   POST /device          allow or deny (CSRF, logged-in browser)
 *
 * The device code is 32 random characters stored as sha256; the user code
 * is 8 letters without vowels (20^8 codes, shown as XXXX-XXXX), single
 * use, device_code_ttl (10 min).  Wrong user codes take tokens from the
 * per-IP login bucket, so guessing is limited like passwords.
 */
#include "auth.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AU_DEVICE_INTERVAL_S 5
#define AU_USER_CODE_ALPHABET "BCDFGHJKLMNPQRSTVWXZ"

/* A new user code, 8 letters, from the pool. */
static char *au_user_code_new(mx_pool_t *pool)
{
    unsigned char r[8];
    char *c = mx_palloc(pool, 9);
    if (!c)
        return NULL;
    mx_random_bytes(r, sizeof(r));
    for (int i = 0; i < 8; i++)
        c[i] = AU_USER_CODE_ALPHABET[r[i] % 20];   /* 256 % 20 = 16: slight bias, fine */
    c[8] = '\0';
    return c;
}

/* What the user typed, upper-cased, without dashes and spaces; NULL when it
 * cannot be a code. */
static char *au_user_code_norm(mx_pool_t *pool, const char *in)
{
    char *c = in ? mx_palloc(pool, 9) : NULL;
    size_t n = 0;
    for (const char *p = in; c && *p; p++) {
        char ch = *p;
        if (ch == '-' || ch == ' ')
            continue;
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (n == 8 || !strchr(AU_USER_CODE_ALPHABET, ch))
            return NULL;
        c[n++] = ch;
    }
    if (!c || n != 8)
        return NULL;
    c[8] = '\0';
    return c;
}

/* ------------------------------------------------------- /oauth2/device --- */

typedef struct au_da {
    mx_req_t *req;
    json_t *form;
    const char *device_code, *user_code;
} au_da_t;

static void au_da_stored(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_da_t *d = ud;
    mx_pool_t *pool = mx_req_pool(d->req);
    if (status < 0) {
        au_storage_error(d->req, status, "device authorization");
        return;
    }
    const char *uc = mx_psprintf(pool, "%.4s-%.4s", d->user_code, d->user_code + 4);
    json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i}", "device_code", d->device_code,
                          "user_code", uc, "verification_uri", mx_psprintf(pool, "%slink", au.base),
                          "verification_uri_complete",
                          mx_psprintf(pool, "%slink?code=%s", au.base, uc), "expires_in",
                          (json_int_t)(au.conf->device_code_ttl_ms / 1000), "interval",
                          AU_DEVICE_INTERVAL_S);
    au_reply_json_nostore(d->req, 200, b);
}

static void au_da_client(mx_req_t *req, const au_client_t *c, void *ud)
{
    au_da_t *d = ud;
    mx_pool_t *pool = mx_req_pool(req);
    if (!au_client_has_grant(c, AU_GRANT_DEVICE_CODE)) {
        au_oauth_error(req, 400, "unauthorized_client",
                       "The client may not use the device authorization grant");
        return;
    }
    au_scope_t sc;
    const char *bad;
    int rc = au_scope_parse(pool, json_string_value(json_object_get(d->form, "scope")), &sc, &bad);
    mx_pool_on_free(pool, au_json_unref, sc.list);
    if (rc < 0 || !json_array_size(sc.list)) {
        au_oauth_error(req, 400, "invalid_scope",
                       bad ? mx_psprintf(pool, "Invalid or unknown scope %s", bad)
                           : "A scope is required");
        return;
    }
    char *scope = au_scope_with_device(pool, &sc);
    char *id = au_ulid(pool);
    d->device_code = au_token_new(pool, "mdc", 32);
    d->user_code = au_user_code_new(pool);
    mx_sql_batch_t *b = scope && id && d->device_code && d->user_code
                            ? mx_sql_batch_new(au.db, MX_SQL_WRITE)
                            : NULL;
    if (!b) {
        au_storage_error(req, -ENOMEM, "device authorization");
        return;
    }
    char h[AU_HASH_HEX];
    au_hash_hex(d->device_code, h);
    uint64_t now = mx_now_ms();
    /* Expired requests leave with each new one; a user code still in use
     * fails the UNIQUE constraint (1 in 2.5e10 per live code) → 500, retry. */
    mx_sql_add(b, "DELETE FROM auth_device_codes WHERE expires_ts < ?", "i",
               (int64_t)(now - 24 * 3600 * 1000ULL));
    mx_sql_add(b,
               "INSERT INTO auth_device_codes (id, device_code_hash, user_code, client_id, scope,"
               " created_ts, expires_ts, interval_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               "sssssiii", id, h, d->user_code, c->client_id, scope, (int64_t)now,
               (int64_t)(now + au.conf->device_code_ttl_ms),
               (int64_t)AU_DEVICE_INTERVAL_S * 1000);
    rc = mx_sql_run(b, au_da_stored, d);
    if (rc < 0)
        au_storage_error(req, rc, "device authorization");
}

static int au_post_device_authorization(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *form = au_oauth_form(req);
    if (!form)
        return MX_DONE;
    au_da_t *d = mx_palloc(mx_req_pool(req), sizeof(*d));
    if (!d) {
        au_storage_error(req, -ENOMEM, "device authorization");
        return MX_DONE;
    }
    memset(d, 0, sizeof(*d));
    d->req = req;
    d->form = form;
    au_client_authenticate(req, form, au_da_client, d);
    return MX_ASYNC;
}

/* ---------------------------------------------------------------- pages --- */

typedef struct au_lk {
    mx_req_t *req;
    const au_browser_t *b;
    json_t *form;                 /* POST only */
    const char *code;             /* normalised user code (POST /link) */
    const char *id, *action;      /* POST /device */
    const char *client_id, *scope;
} au_lk_t;

static void au_link_form(au_lk_t *k, int status, const char *code, const char *error_key)
{
    mx_pool_t *pool = mx_req_pool(k->req);
    const char *sid = au_browser_sid(k->req, k->b);
    json_t *v = json_object();
    json_object_set_new(v, "csrf", json_string(au_csrf_token(pool, sid)));
    json_object_set_new(v, "code", json_string(code ? code : ""));
    json_object_set_new(v, "user_id", json_string(k->b->user_id));
    if (error_key)
        json_object_set_new(v, "error", json_string(au_string(error_key)));
    au_page_reply(k->req, status, "link", v, NULL);
    json_decref(v);
}

/* A logged-in browser, or a redirect to /login that comes back to `next`. */
static bool au_link_need_login(au_lk_t *k, const char *next)
{
    if (k->b->user_id)
        return false;
    mx_pool_t *pool = mx_req_pool(k->req);
    if (k->form) {
        au_page_error(k->req, 403, "err_csrf", NULL);
        return true;
    }
    au_redirect(k->req, 302, mx_psprintf(pool, "%slogin?next=%s", au.base,
                                         au_urlencode(pool, next)));
    return true;
}

static void au_link_get_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    au_lk_t *k = ud;
    k->b = b;
    mx_pool_t *pool = mx_req_pool(req);
    const char *code = mx_req_query(req, "code");
    if (code && strlen(code) > 32)
        code = NULL;
    const char *next = code ? mx_psprintf(pool, "link?code=%s", au_urlencode(pool, code)) : "link";
    if (au_link_need_login(k, next))
        return;
    au_link_form(k, 200, code, NULL);
}

static int au_get_link(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_page_browse(req, sizeof(au_lk_t), au_link_get_browser);
}

/* POST /link: the code's request, shown for confirmation. */
static void au_link_client(int status, const au_client_t *c, void *ud)
{
    au_lk_t *k = ud;
    mx_pool_t *pool = mx_req_pool(k->req);
    if (status < 0 || !c) {
        au_page_error(k->req, status < 0 ? 500 : 400, status < 0 ? "err_internal" : "err_client",
                      NULL);
        return;
    }
    const char *name = json_string_value(json_object_get(c->metadata, "client_name"));
    const char *uri = json_string_value(json_object_get(c->metadata, "client_uri"));
    json_t *v = json_object();
    json_object_set_new(v, "client_name", json_string(name ? name : uri ? uri : c->client_id));
    json_object_set_new(v, "client_uri", json_string(uri ? uri : ""));
    json_object_set_new(v, "scopes", au_scope_texts(k->scope));
    json_object_set_new(v, "user_id", json_string(k->b->user_id));
    json_object_set_new(v, "csrf", json_string(au_csrf_token(pool, k->b->sid)));
    json_object_set_new(v, "id", json_string(k->id));
    json_object_set_new(v, "code", json_string(mx_psprintf(pool, "%.4s-%.4s", k->code,
                                                           k->code + 4)));
    au_page_reply(k->req, 200, "device", v, NULL);
    json_decref(v);
}

static void au_link_found(int status, mx_sql_res_t *res, void *ud)
{
    au_lk_t *k = ud;
    mx_pool_t *pool = mx_req_pool(k->req);
    if (status < 0) {
        au_page_error(k->req, 500, "err_internal", NULL);
        return;
    }
    if (!res || mx_sql_nrows(res, 0) < 1) {
        /* A wrong code costs like a wrong password. */
        const char *ip = mx_req_client_ip(k->req);
        au_rl_take(au.fl->login_ip, ip ? ip : "?");
        au_link_form(k, 400, json_string_value(json_object_get(k->form, "user_code")),
                     "err_user_code");
        return;
    }
    k->id = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 0));
    k->client_id = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 1));
    k->scope = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 2));
    if (au_client_get(pool, k->client_id, au_link_client, k) < 0)
        au_page_error(k->req, 500, "err_internal", NULL);
}

/* Common start of the POSTs: form, CSRF, browser. */
static au_lk_t *au_lk_post(mx_req_t *req)
{
    json_t *form = au_page_form(req);
    au_lk_t *k = form ? au_page_zalloc(req, sizeof(*k)) : NULL;
    if (!k)
        return NULL;
    k->form = form;
    return k;
}

static void au_link_post_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    au_lk_t *k = ud;
    k->b = b;
    if (au_link_need_login(k, "link"))
        return;
    const char *ip = mx_req_client_ip(req);
    uint64_t wait = au_rl_peek(au.fl->login_ip, ip ? ip : "?");
    if (wait) {
        mx_req_set_header(req, "Retry-After", mx_psprintf(mx_req_pool(req), "%llu",
                                                          (unsigned long long)(wait + 999) / 1000));
        au_link_form(k, 429, NULL, "err_rate_limited");
        return;
    }
    k->code = au_user_code_norm(mx_req_pool(req),
                                json_string_value(json_object_get(k->form, "user_code")));
    mx_sql_batch_t *bt = k->code ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!k->code) {
        au_link_found(0, NULL, k);
        return;
    }
    if (!bt) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    mx_sql_add(bt,
               "SELECT id, client_id, scope FROM auth_device_codes WHERE user_code = ?"
               " AND status = 0 AND expires_ts > ?",
               "si", k->code, (int64_t)mx_now_ms());
    if (mx_sql_run(bt, au_link_found, k) < 0)
        au_page_error(req, 500, "err_internal", NULL);
}

static int au_post_link(mx_req_t *req, void *ud)
{
    (void)ud;
    au_lk_t *k = au_lk_post(req);
    if (k)
        au_browser_load(req, au_link_post_browser, k);
    return k ? MX_ASYNC : MX_DONE;
}

/* POST /device: the answer. */
static void au_device_answered(int status, mx_sql_res_t *res, void *ud)
{
    au_lk_t *k = ud;
    if (status < 0) {
        au_page_error(k->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_changes(res, 0) != 1) {
        au_page_error(k->req, 400, "err_user_code", NULL);
        return;
    }
    bool allow = !strcmp(k->action, "allow");
    json_t *v = json_pack("{s:s, s:s}", "user_id", k->b->user_id, "message",
                          au_string(allow ? "device_allowed" : "device_denied"));
    au_page_reply(k->req, 200, "done", v, NULL);
    json_decref(v);
}

static void au_device_user(int status, const hs_users_info_t *u, void *ud)
{
    au_lk_t *k = ud;
    if (status < 0 || !u || u->locked || u->deactivated) {
        bool internal = status < 0 && status != -ENOENT;
        au_page_error(k->req, internal ? 500 : 403, internal ? "err_internal" : "err_locked", NULL);
        return;
    }
    /* Admin scopes only for admins, as on the consent page. */
    if (!u->is_admin && au_scope_has_admin(k->scope) && !strcmp(k->action, "allow")) {
        au_page_error(k->req, 403, "err_admin_scope", NULL);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    const char *scope = k->scope;
    if (!b) {
        au_page_error(k->req, 500, "err_internal", NULL);
        return;
    }
    int64_t now = (int64_t)mx_now_ms();
    char bh[AU_HASH_HEX];
    au_hash_hex(k->b->sid, bh);   /* the browser session approving it */
    if (!strcmp(k->action, "allow"))
        mx_sql_add(b,
                   "UPDATE auth_device_codes SET status = 1, user_id = ?, auth_ts = ?, scope = ?,"
                   " browser_hash = ? WHERE id = ? AND status = 0 AND expires_ts > ?",
                   "sisssi", k->b->user_id, k->b->auth_ts, scope, bh, k->id, now);
    else
        mx_sql_add(b,
                   "UPDATE auth_device_codes SET status = 2, user_id = ? WHERE id = ?"
                   " AND status = 0 AND expires_ts > ?",
                   "ssi", k->b->user_id, k->id, now);
    if (mx_sql_run(b, au_device_answered, k) < 0)
        au_page_error(k->req, 500, "err_internal", NULL);
}

static void au_device_row(int status, mx_sql_res_t *res, void *ud)
{
    au_lk_t *k = ud;
    if (status < 0) {
        au_page_error(k->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        au_page_error(k->req, 400, "err_user_code", NULL);
        return;
    }
    k->scope = mx_pstrdup(mx_req_pool(k->req), mx_sql_text(res, 0, 0, 0));
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!k->scope || !users || users->get(k->b->user_id, au_device_user, k) < 0)
        au_page_error(k->req, 500, "err_internal", NULL);
}

static void au_device_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    au_lk_t *k = ud;
    k->b = b;
    if (au_link_need_login(k, "link"))
        return;
    mx_sql_batch_t *bt = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!bt) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    mx_sql_add(bt, "SELECT scope FROM auth_device_codes WHERE id = ? AND status = 0"
                   " AND expires_ts > ?",
               "si", k->id, (int64_t)mx_now_ms());
    if (mx_sql_run(bt, au_device_row, k) < 0)
        au_page_error(req, 500, "err_internal", NULL);
}

static int au_post_device(mx_req_t *req, void *ud)
{
    (void)ud;
    au_lk_t *k = au_lk_post(req);
    if (!k)
        return MX_DONE;
    k->id = json_string_value(json_object_get(k->form, "id"));
    k->action = json_string_value(json_object_get(k->form, "action"));
    if (!k->id || !k->action || (strcmp(k->action, "allow") && strcmp(k->action, "deny"))) {
        au_page_error(req, 400, "err_bad_request", NULL);
        return MX_DONE;
    }
    au_browser_load(req, au_device_browser, k);
    return MX_ASYNC;
}

int au_device_routes(void)
{
    if (!au.conf->device_code_grant_enabled)
        return 0;
    int rc;
    if ((rc = au_route_oauth("POST", "/oauth2/device", au_post_device_authorization, true)) < 0 ||
        (rc = mx_route_add("auth", "GET", "/link", au_get_link, NULL, MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/link", au_post_link, NULL, MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/device", au_post_device, NULL, MX_ROUTE_NO_CORS)) < 0)
        return rc;
    return 0;
}
