/*
 * au_session.c: browser sessions and the pages that create them.
 *
 * A browser is known by one cookie holding a random session ID (43
 * characters): HttpOnly, SameSite=Lax, Path=/, and Secure with the
 * __Host- prefix when the endpoints are served over https.  Only its
 * sha256 is stored (auth_browser_sessions), and only once somebody logged
 * in; before that the cookie merely anchors CSRF tokens.  Every form
 * carries csrf = HMAC-SHA256(cookie_key, "csrf:" + session ID), checked in
 * constant time, so a form cannot be posted from another site (which
 * cannot read the cookie) nor replayed into another browser.  A login
 * replaces the session ID (no fixation).
 *
 *   GET/POST /login      password login (through the homeserver's accounts);
 *                        attempts are rate limited per IP and failures per
 *                        account (au_flows.c), answered 429 with Retry-After
 *   GET/POST /register   password registration: closed, open, or open to
 *                        holders of a registration token (account.*)
 *   POST     /logout     ends the browser session
 *   (with account.email_verification: dev, registration asks for an
 *   address and login waits for its link: au_email.c)
 *
 * After a login the browser goes on with its authorization request
 * (`grant`) or to one of our pages (`next`: link, device, account/; see
 * au_next_ok), never elsewhere.
 */
#include "auth.h"
#include "au_admin.h"   /* session activity */
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AU_SID_LEN 43

static const char *au_cookie_name(void)
{
    return au.secure_cookies ? "__Host-mxstack-auth" : "mxstack-auth";
}

char *au_cookie_sid(mx_req_t *req)
{
    const char *h = mx_req_header(req, "Cookie");
    const char *name = au_cookie_name();
    size_t nl = strlen(name);
    for (const char *p = h; p && *p;) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t l = strcspn(p, ";");
        if (l > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            size_t vl = l - nl - 1;
            if (vl != AU_SID_LEN)
                return NULL;
            char *v = mx_palloc(mx_req_pool(req), vl + 1);
            if (!v)
                return NULL;
            memcpy(v, p + nl + 1, vl);
            v[vl] = '\0';
            /* Only our own alphabet: the value goes into SQL parameters and
             * HMACs, never anywhere else, but junk is junk. */
            for (size_t i = 0; i < vl; i++) {
                char c = v[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
                    return NULL;
            }
            return v;
        }
        p += l;
    }
    return NULL;
}

static void au_set_cookie(mx_req_t *req, const char *sid, bool clear);

void au_cookie_clear(mx_req_t *req)
{
    au_set_cookie(req, NULL, true);
}

static void au_set_cookie(mx_req_t *req, const char *sid, bool clear)
{
    char *c = mx_psprintf(mx_req_pool(req), "%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%llu%s",
                          au_cookie_name(), clear ? "" : sid,
                          clear ? 0ULL : (unsigned long long)(au.conf->session_ttl_ms / 1000),
                          au.secure_cookies ? "; Secure" : "");
    if (c)
        mx_req_set_header(req, "Set-Cookie", c);
}

char *au_csrf_token(mx_pool_t *pool, const char *sid)
{
    unsigned char mac[32];
    char *msg = mx_psprintf(pool, "csrf:%s", sid ? sid : "");
    if (!msg)
        return NULL;
    mx_hmac_sha256(au.cookie_key, sizeof(au.cookie_key), msg, strlen(msg), mac);
    return au_b64url(pool, mac, sizeof(mac));
}

bool au_csrf_ok(mx_req_t *req, const json_t *form)
{
    const char *sid = au_cookie_sid(req);
    const char *given = json_string_value(json_object_get(form, "csrf"));
    if (!sid || !given)
        return false;
    char *want = au_csrf_token(mx_req_pool(req), sid);
    return want && strlen(want) == strlen(given) && mx_ct_equal(want, given, strlen(want));
}

const char *au_browser_sid(mx_req_t *req, const au_browser_t *b)
{
    if (b && b->sid)
        return b->sid;
    char *sid = au_token_new(mx_req_pool(req), NULL, AU_SID_LEN);
    if (sid)
        au_set_cookie(req, sid, false);
    return sid;
}

/* ------------------------------------------------------------- loading --- */

typedef struct au_bl {
    mx_req_t *req;
    au_browser_fn cb;
    void *ud;
    au_browser_t b;
} au_bl_t;

static void au_browser_read(int status, mx_sql_res_t *res, void *ud)
{
    au_bl_t *l = ud;
    if (status < 0) {
        mx_log(AU_LOG, MX_LOG_ERROR, "browser session: storage error %d", status);
        au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        l->b.user_id = mx_pstrdup(mx_req_pool(l->req), mx_sql_text(res, 0, 0, 0));
        l->b.auth_ts = mx_sql_int(res, 0, 0, 1);
        char h[AU_HASH_HEX];
        au_hash_hex(l->b.sid, h);
        aa_activity_note_req(h, l->req, true);   /* admin API's user-sessions */
    }
    l->cb(l->req, &l->b, l->ud);
}

void au_browser_load(mx_req_t *req, au_browser_fn cb, void *ud)
{
    au_bl_t *l = mx_palloc(mx_req_pool(req), sizeof(*l));
    if (!l) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    memset(l, 0, sizeof(*l));
    l->req = req;
    l->cb = cb;
    l->ud = ud;
    l->b.sid = au_cookie_sid(req);
    if (!l->b.sid) {
        cb(req, &l->b, ud);
        return;
    }
    char h[AU_HASH_HEX];
    au_hash_hex(l->b.sid, h);
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    mx_sql_add(b,
               "SELECT user_id, auth_ts FROM auth_browser_sessions WHERE id_hash = ?"
               " AND finished_ts IS NULL AND expires_ts > ?",
               "si", h, (int64_t)mx_now_ms());
    int rc = mx_sql_run(b, au_browser_read, l);
    if (rc < 0) {
        au_page_error(req, 500, "err_internal", NULL);
    }
}

/* --------------------------------------------------------- logging in --- */

typedef struct au_login {
    mx_req_t *req;
    json_t *form;                 /* owned by the pool's cleanup */
    const char *grant;            /* grant ID or NULL */
    const char *next;             /* au_next_ok page or NULL */
    const char *username;
    const char *sid;              /* the new session ID */
    const char *user_id;
    bool registering;
} au_login_t;

/* Sets the page vars common to the login and register forms. */
static json_t *au_form_vars(mx_req_t *req, const char *sid, const char *grant, const char *next,
                            const char *username, const char *error_key)
{
    mx_pool_t *pool = mx_req_pool(req);
    json_t *v = json_object();
    next = au_next_ok(next);
    json_object_set_new(v, "csrf", json_string(au_csrf_token(pool, sid)));
    json_object_set_new(v, "grant", json_string(grant ? grant : ""));
    json_object_set_new(v, "next", json_string(next ? next : ""));
    json_object_set_new(v, "username", json_string(username ? username : ""));
    json_object_set_new(v, "token_required", json_boolean(au.fl->registration == AU_REG_TOKEN));
    json_object_set_new(v, "email_required",
                        json_boolean(au.fl->email_verification == AU_EMAIL_DEV));
    if (error_key)
        json_object_set_new(v, "error_key", json_string(error_key));
    const char *q = grant && *grant ? mx_psprintf(pool, "?grant=%s", au_urlencode(pool, grant))
                    : next ? mx_psprintf(pool, "?next=%s", au_urlencode(pool, next))
                           : "";
    if (au.fl->registration != AU_REG_CLOSED)
        json_object_set_new(v, "register_url", json_string(mx_psprintf(pool, "%sregister%s",
                                                                       au.base, q)));
    json_object_set_new(v, "login_url", json_string(mx_psprintf(pool, "%slogin%s", au.base, q)));
    json_t *up = au_upstream_buttons(pool, grant, next);
    if (json_array_size(up))
        json_object_set_new(v, "providers", up);
    else
        json_decref(up);
    return v;
}

/* Renders login/register with an optional error (a strings key). */
static void au_form_reply(mx_req_t *req, const char *page, json_t *v, int status)
{
    const char *ek = json_string_value(json_object_get(v, "error_key"));
    if (ek)
        json_object_set_new(v, "error", json_string(au_policy_text(mx_req_pool(req), ek)));
    au_page_reply(req, status, page, v, NULL);
}

static void au_login_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_login_t *l = ud;
    if (status < 0) {
        mx_log(AU_LOG, MX_LOG_ERROR, "login: storage error %d", status);
        au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    au_set_cookie(l->req, l->sid, false);
    if (au.m_logins)
        mx_counter_add(au.m_logins, 1);
    if (l->grant && *l->grant) {
        au_redirect(l->req, 303, au_grant_continue_url(mx_req_pool(l->req), l->grant));
        return;
    }
    if (au_next_ok(l->next)) {
        au_redirect(l->req, 303, mx_psprintf(mx_req_pool(l->req), "%s%s", au.base, l->next));
        return;
    }
    json_t *v = json_pack("{s:s}", "user_id", l->user_id);
    au_page_reply(l->req, 200, "done", v, NULL);
    json_decref(v);
}

/* Starts a fresh browser session for `l->user_id` (old one finished). */
static void au_login_start_session(au_login_t *l)
{
    mx_pool_t *pool = mx_req_pool(l->req);
    l->sid = au_token_new(pool, NULL, AU_SID_LEN);
    mx_sql_batch_t *b = l->sid ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    uint64_t now = mx_now_ms();
    char nh[AU_HASH_HEX];
    au_hash_hex(l->sid, nh);
    const char *old = au_cookie_sid(l->req);
    if (old) {
        char oh[AU_HASH_HEX];
        au_hash_hex(old, oh);
        mx_sql_add(b, "UPDATE auth_browser_sessions SET finished_ts = ? WHERE id_hash = ?", "is",
                   (int64_t)now, oh);
    }
    mx_sql_add(b,
               "INSERT INTO auth_browser_sessions (id_hash, user_id, created_ts, auth_ts,"
               " expires_ts) VALUES (?, ?, ?, ?, ?)",
               "ssiii", nh, l->user_id, (int64_t)now, (int64_t)now,
               (int64_t)(now + au.conf->session_ttl_ms));
    int rc = mx_sql_run(b, au_login_written, l);
    if (rc >= 0)
        aa_activity_note_req(nh, l->req, true);
    if (rc < 0) {
        au_page_error(l->req, 500, "err_internal", NULL);
    }
}

int au_browser_login(mx_req_t *req, const char *user_id, const char *grant, const char *next)
{
    mx_pool_t *pool = mx_req_pool(req);
    au_login_t *l = mx_palloc(pool, sizeof(*l));
    if (!l)
        return -ENOMEM;
    memset(l, 0, sizeof(*l));
    l->req = req;
    l->grant = grant ? mx_pstrdup(pool, grant) : NULL;
    l->next = next ? mx_pstrdup(pool, next) : NULL;
    l->user_id = mx_pstrdup(pool, user_id);
    au_login_start_session(l);
    return 0;
}

/* The key of an account's failure bucket: the name as typed, lower-cased
 * and without a leading '@' or a ":server" part, so spellings share it. */
static char *au_account_key(mx_pool_t *pool, const char *user)
{
    char *k = mx_pstrdup(pool, user && *user == '@' ? user + 1 : user ? user : "");
    char *colon = k ? strchr(k, ':') : NULL;
    if (colon)
        *colon = '\0';
    for (char *p = k; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return k;
}

/* 429 with Retry-After and the login form again. */
static void au_login_limited(au_login_t *l, uint64_t wait_ms)
{
    mx_pool_t *pool = mx_req_pool(l->req);
    mx_req_set_header(l->req, "Retry-After",
                      mx_psprintf(pool, "%llu", (unsigned long long)(wait_ms + 999) / 1000));
    json_t *v = au_form_vars(l->req, au_cookie_sid(l->req), l->grant, l->next, l->username,
                             "err_rate_limited");
    mx_pool_on_free(pool, au_json_unref, v);
    au_form_reply(l->req, "login", v, 429);
}

/* Whether an address given at registration still waits for its link. */
static void au_login_gated(int status, bool ok, void *ud)
{
    au_login_t *l = ud;
    if (status < 0) {
        au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    if (!ok) {
        json_t *v = au_form_vars(l->req, au_cookie_sid(l->req), l->grant, l->next, l->username,
                                 "err_email_unverified");
        mx_pool_on_free(mx_req_pool(l->req), au_json_unref, v);
        au_form_reply(l->req, "login", v, 403);
        return;
    }
    au_login_start_session(l);
}

static void au_login_checked(int status, const char *user_id, bool is_admin, void *ud)
{
    (void)is_admin;
    au_login_t *l = ud;
    if (status == -EACCES)
        au_rl_take(au.fl->login_account, au_account_key(mx_req_pool(l->req), l->username));
    if (status == -EACCES || status == -EKEYREVOKED) {
        json_t *v = au_form_vars(l->req, au_cookie_sid(l->req), l->grant, l->next, l->username,
                                 status == -EKEYREVOKED ? "err_locked" : "err_credentials");
        mx_pool_on_free(mx_req_pool(l->req), au_json_unref, v);
        au_form_reply(l->req, "login", v, status == -EKEYREVOKED ? 403 : 401);
        return;
    }
    if (status < 0 || !user_id) {
        au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    l->user_id = mx_pstrdup(mx_req_pool(l->req), user_id);
    if (au_email_login_gate(l->user_id, au_login_gated, l) < 0)
        au_page_error(l->req, 500, "err_internal", NULL);
}

/* Parses the urlencoded body and checks CSRF; answers on failure. */
static au_login_t *au_form_begin(mx_req_t *req)
{
    json_t *form = au_page_form(req);
    if (!form)
        return NULL;
    au_login_t *l = mx_palloc(mx_req_pool(req), sizeof(*l));
    if (!l) {
        au_page_error(req, 500, "err_internal", NULL);
        return NULL;
    }
    memset(l, 0, sizeof(*l));
    l->req = req;
    l->form = form;
    l->grant = json_string_value(json_object_get(form, "grant"));
    l->next = au_next_ok(json_string_value(json_object_get(form, "next")));
    l->username = json_string_value(json_object_get(form, "username"));
    return l;
}

static int au_post_login(mx_req_t *req, void *ud)
{
    (void)ud;
    au_login_t *l = au_form_begin(req);
    if (!l)
        return MX_DONE;
    const char *ip = mx_req_client_ip(req);
    uint64_t wait = au_rl_take(au.fl->login_ip, ip ? ip : "?");
    if (!wait)
        wait = au_rl_peek(au.fl->login_account, au_account_key(mx_req_pool(req), l->username));
    if (wait) {
        au_login_limited(l, wait);
        return MX_DONE;
    }
    const char *pw = json_string_value(json_object_get(l->form, "password"));
    int rc = au_password_check(l->username ? l->username : "", pw ? pw : "", au_login_checked, l);
    if (rc == -EACCES) {
        au_login_checked(-EACCES, NULL, false, l);
    } else if (rc < 0) {
        mx_log(AU_LOG, MX_LOG_ERROR, "login: password check failed to start (%d)", rc);
        au_page_error(req, 500, "err_internal", NULL);
    }
    return MX_ASYNC;
}

/* GET /login and GET /register: the form, bound to this browser. */
static void au_form_page(mx_req_t *req, const au_browser_t *b, void *ud)
{
    const char *page = ud;
    const char *grant = mx_req_query(req, "grant");
    const char *sid = au_browser_sid(req, b);
    if (!sid) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    const char *hint = mx_req_query(req, "login_hint");
    json_t *v = au_form_vars(req, sid, grant, mx_req_query(req, "next"), hint, NULL);
    mx_pool_on_free(mx_req_pool(req), au_json_unref, v);
    au_form_reply(req, page, v, 200);
}

static int au_get_login(mx_req_t *req, void *ud)
{
    (void)ud;
    au_browser_load(req, au_form_page, (void *)"login");
    return MX_ASYNC;
}

/* ----------------------------------------------------------- register --- */

static void au_register_created(int status, const hs_users_info_t *u, void *ud)
{
    au_login_t *l = ud;
    const char *err = status == -EEXIST ? "err_username_taken"
                      : status == -EINVAL ? "err_username_invalid"
                                          : NULL;
    if (err) {
        json_t *v = au_form_vars(l->req, au_cookie_sid(l->req), l->grant, l->next, l->username,
                                 err);
        mx_pool_on_free(mx_req_pool(l->req), au_json_unref, v);
        au_form_reply(l->req, "register", v, 400);
        return;
    }
    if (status < 0 || !u) {
        au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    l->user_id = mx_pstrdup(mx_req_pool(l->req), u->user_id);
    if (au.fl->email_verification == AU_EMAIL_DEV) {
        /* No session until the address is verified. */
        const char *email = json_string_value(json_object_get(l->form, "email"));
        if (au_email_verification_start(l->req, l->user_id, email) < 0)
            au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    au_login_start_session(l);
}

/* Renders the registration form again with error `err` (strings key). */
static void au_register_again(au_login_t *l, const char *err)
{
    json_t *v = au_form_vars(l->req, au_cookie_sid(l->req), l->grant, l->next, l->username, err);
    mx_pool_on_free(mx_req_pool(l->req), au_json_unref, v);
    au_form_reply(l->req, "register", v, 400);
}

static void au_register_create(au_login_t *l)
{
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    const char *pw = json_string_value(json_object_get(l->form, "password"));
    char *lp = mx_pstrdup(mx_req_pool(l->req), l->username);
    for (char *p = lp; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    int rc = users && lp ? users->create(lp, pw, false, au_register_created, l) : -ENOSYS;
    if (rc == -EINVAL)
        au_register_again(l, "err_username_invalid");
    else if (rc < 0)
        au_page_error(l->req, 500, "err_internal", NULL);
}

/* The registration token was taken (one use counted) or refused. */
static void au_register_token_used(int status, mx_sql_res_t *res, void *ud)
{
    au_login_t *l = ud;
    if (status < 0) {
        au_page_error(l->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_changes(res, 0) != 1) {
        au_register_again(l, "err_registration_token");
        return;
    }
    au_register_create(l);
}

static int au_post_register(mx_req_t *req, void *ud)
{
    (void)ud;
    if (au.fl->registration == AU_REG_CLOSED) {
        au_page_error(req, 403, "err_registration_disabled", NULL);
        return MX_DONE;
    }
    au_login_t *l = au_form_begin(req);
    if (!l)
        return MX_DONE;
    const char *pw = json_string_value(json_object_get(l->form, "password"));
    const char *pw2 = json_string_value(json_object_get(l->form, "password_confirm"));
    const char *token = json_string_value(json_object_get(l->form, "registration_token"));
    const char *err = NULL;
    if (!l->username || !*l->username || strlen(l->username) > 255)
        err = "err_username_invalid";
    else if ((err = au_password_policy(pw)) == NULL && (!pw2 || strcmp(pw, pw2)))
        err = "err_password_mismatch";
    else if (!err && au.fl->registration == AU_REG_TOKEN && (!token || !*token))
        err = "err_registration_token";
    else if (!err && au.fl->email_verification == AU_EMAIL_DEV &&
             !au_email_valid(json_string_value(json_object_get(l->form, "email"))))
        err = "err_email_invalid";
    if (err) {
        au_register_again(l, err);
        return MX_DONE;
    }
    if (au.fl->registration != AU_REG_TOKEN) {
        au_register_create(l);
        return MX_ASYNC;
    }
    /* One use of a valid token, atomically (usage limit, expiry,
     * revocation); a create that fails afterwards keeps it spent. */
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b,
               "UPDATE auth_registration_tokens SET times_used = times_used + 1,"
               " last_used_ts = ? WHERE token = ? AND revoked_ts IS NULL"
               " AND (expires_ts IS NULL OR expires_ts > ?)"
               " AND (usage_limit IS NULL OR times_used < usage_limit)",
               "isi", now, token, now);
    if (mx_sql_run(b, au_register_token_used, l) < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    return MX_ASYNC;
}

static int au_get_register(mx_req_t *req, void *ud)
{
    (void)ud;
    if (au.fl->registration == AU_REG_CLOSED) {
        au_page_error(req, 403, "err_registration_disabled", NULL);
        return MX_DONE;
    }
    au_browser_load(req, au_form_page, (void *)"register");
    return MX_ASYNC;
}

/* ------------------------------------------------------------- logout --- */

typedef struct au_be {
    au_done_fn cb;
    void *ud;
} au_be_t;

static void au_browser_ended(int status, mx_sql_res_t *res, void *ud)
{
    au_be_t *e = ud;
    if (e->cb)
        e->cb(status < 0 ? status : mx_sql_changes(res, 0) > 0 ? 0 : -ENOENT, e->ud);
    free(e);
}

int au_browser_end(const char *id_hash, const char *user_id, au_done_fn cb, void *ud)
{
    au_be_t *e = id_hash ? calloc(1, sizeof(*e)) : NULL;
    mx_sql_batch_t *b = e ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(e);
        return id_hash ? -ENOMEM : -EINVAL;
    }
    e->cb = cb;
    e->ud = ud;
    if (user_id)
        mx_sql_add(b,
                   "UPDATE auth_browser_sessions SET finished_ts = ? WHERE id_hash = ?"
                   " AND user_id = ? AND finished_ts IS NULL",
                   "iss", (int64_t)mx_now_ms(), id_hash, user_id);
    else
        mx_sql_add(b,
                   "UPDATE auth_browser_sessions SET finished_ts = ? WHERE id_hash = ?"
                   " AND finished_ts IS NULL",
                   "is", (int64_t)mx_now_ms(), id_hash);
    int rc = mx_sql_run(b, au_browser_ended, e);
    if (rc < 0)
        free(e);
    return rc;
}

static void au_logout_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    mx_req_t *req = ud;
    if (status < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    au_set_cookie(req, NULL, true);
    au_redirect(req, 303, mx_psprintf(mx_req_pool(req), "%slogin", au.base));
}

static int au_post_logout(mx_req_t *req, void *ud)
{
    (void)ud;
    au_login_t *l = au_form_begin(req);
    if (!l)
        return MX_DONE;
    char h[AU_HASH_HEX];
    au_hash_hex(au_cookie_sid(req), h);
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    mx_sql_add(b, "UPDATE auth_browser_sessions SET finished_ts = ? WHERE id_hash = ?", "is",
               (int64_t)mx_now_ms(), h);
    int rc = mx_sql_run(b, au_logout_done, req);
    if (rc < 0) {
        au_page_error(req, 500, "err_internal", NULL);
    }
    return MX_ASYNC;
}

int au_session_routes(void)
{
    int rc;
    if ((rc = mx_route_add("auth", "GET", "/login", au_get_login, NULL, MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/login", au_post_login, NULL, MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "GET", "/register", au_get_register, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/register", au_post_register, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/logout", au_post_logout, NULL, MX_ROUTE_NO_CORS)) < 0 ||
        (rc = au_email_routes()) < 0)
        return rc;
    return 0;
}
