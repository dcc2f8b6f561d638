/*
 * au_authorize.c: the authorization code flow up to the code (RFC 6749
 * §4.1 with PKCE, RFC 7636; Matrix: spec v1.15 "OAuth 2.0 API", MSC2964).
 *
 *   GET  /authorize   checks the request, stores it as a pending grant and
 *                     sends the browser to login / registration / consent
 *   GET  /consent     shows what the client asks for (logged-in browser)
 *   POST /consent     allow: issues the code (single use, code_ttl) and
 *                     redirects to the client; deny: access_denied
 *
 * Errors about the client or its redirect URI are shown to the user and
 * never redirected (no open redirect); every later error goes back to the
 * registered redirect URI with error and state.  PKCE S256 is required;
 * redirect URIs are matched exactly (au_clients.c).  Admin scopes are only
 * granted to homeserver admins.
 */
#include "auth.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers --- */

char *au_client_redirect_url(mx_pool_t *pool, const char *redirect_uri, const char *mode,
                             const char *const *params)
{
    bool fragment = mode && !strcmp(mode, "fragment");
    char *out = mx_pstrdup(pool, redirect_uri);
    char sep = fragment ? '#' : strchr(redirect_uri, '?') ? '&' : '?';
    for (const char *const *p = params; out && p[0]; p += 2) {
        if (!p[1])
            continue;
        out = mx_psprintf(pool, "%s%c%s=%s", out, sep, p[0], au_urlencode(pool, p[1]));
        sep = '&';
    }
    return out;
}

char *au_redirect_origin(mx_pool_t *pool, const char *uri)
{
    au_url_t u;
    if (au_url_parse(pool, uri, &u) < 0)
        return NULL;
    if (!u.has_authority)
        return mx_psprintf(pool, "%s:", u.scheme);
    if (u.port >= 0)
        return mx_psprintf(pool, "%s://%s:%d", u.scheme, u.host, u.port);
    return mx_psprintf(pool, "%s://%s", u.scheme, u.host);
}

char *au_grant_continue_url(mx_pool_t *pool, const char *grant_id)
{
    return mx_psprintf(pool, "%sconsent?grant=%s", au.base, au_urlencode(pool, grant_id));
}

/* ------------------------------------------------------------- grants --- */

typedef struct au_gq {
    mx_pool_t *pool;
    au_grant_fn cb;
    void *ud;
} au_gq_t;

#define AU_GRANT_COLS                                                                   \
    "id, client_id, redirect_uri, scope, state, nonce, code_challenge, response_mode,"  \
    " prompt, login_hint, user_id, status, created_ts, code_expires_ts, auth_ts, session_id"

static const char *au_col(mx_pool_t *pool, const mx_sql_res_t *res, int row, int col)
{
    return mx_sql_is_null(res, 0, row, col) ? NULL : mx_pstrdup(pool, mx_sql_text(res, 0, row, col));
}

static void au_grant_read(int status, mx_sql_res_t *res, void *ud)
{
    au_gq_t *q = ud;
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        q->cb(status, NULL, q->ud);
        return;
    }
    au_grant_t *g = mx_palloc(q->pool, sizeof(*g));
    if (!g) {
        q->cb(-ENOMEM, NULL, q->ud);
        return;
    }
    g->id = au_col(q->pool, res, 0, 0);
    g->client_id = au_col(q->pool, res, 0, 1);
    g->redirect_uri = au_col(q->pool, res, 0, 2);
    g->scope = au_col(q->pool, res, 0, 3);
    g->state = au_col(q->pool, res, 0, 4);
    g->nonce = au_col(q->pool, res, 0, 5);
    g->code_challenge = au_col(q->pool, res, 0, 6);
    g->response_mode = au_col(q->pool, res, 0, 7);
    g->prompt = au_col(q->pool, res, 0, 8);
    g->login_hint = au_col(q->pool, res, 0, 9);
    g->user_id = au_col(q->pool, res, 0, 10);
    g->status = (int)mx_sql_int(res, 0, 0, 11);
    g->created_ts = mx_sql_int(res, 0, 0, 12);
    g->code_expires_ts = mx_sql_is_null(res, 0, 0, 13) ? 0 : mx_sql_int(res, 0, 0, 13);
    g->auth_ts = mx_sql_is_null(res, 0, 0, 14) ? 0 : mx_sql_int(res, 0, 0, 14);
    g->session_id = au_col(q->pool, res, 0, 15);
    q->cb(0, g, q->ud);
}

static int au_grant_query(mx_pool_t *pool, const char *sql, const char *key, au_grant_fn cb,
                          void *ud)
{
    au_gq_t *q = mx_palloc(pool, sizeof(*q));
    mx_sql_batch_t *b = q && key ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b)
        return key ? -ENOMEM : -EINVAL;
    q->pool = pool;
    q->cb = cb;
    q->ud = ud;
    mx_sql_add(b, sql, "s", key);
    return mx_sql_run(b, au_grant_read, q);
}

int au_grant_get(mx_pool_t *pool, const char *id, au_grant_fn cb, void *ud)
{
    return au_grant_query(pool, "SELECT " AU_GRANT_COLS " FROM auth_grants WHERE id = ?", id, cb,
                          ud);
}

int au_grant_by_code(mx_pool_t *pool, const char *code_hash, au_grant_fn cb, void *ud)
{
    return au_grant_query(pool, "SELECT " AU_GRANT_COLS " FROM auth_grants WHERE code_hash = ?",
                          code_hash, cb, ud);
}

/* Matrix sessions are devices: when the client did not choose a device ID,
 * one is allocated (in the same flavour as its API scope). */
char *au_scope_with_device(mx_pool_t *pool, au_scope_t *sc)
{
    if (sc->api && !sc->device_id) {
        bool unstable = false;
        size_t i;
        json_t *e;
        json_array_foreach(sc->list, i, e)
            unstable |= !strcmp(json_string_value(e), AU_SCOPE_API_UNSTABLE);
        char *dev = au_token_new(pool, NULL, 10);
        for (char *p = dev; p && *p; p++)
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
        if (!dev)
            return NULL;
        json_array_append_new(sc->list, json_string(mx_psprintf(
                                            pool, "%s%s",
                                            unstable ? AU_SCOPE_DEVICE_UNSTABLE : AU_SCOPE_DEVICE,
                                            dev)));
    }
    char *scope = mx_pstrdup(pool, "");
    size_t i;
    json_t *e;
    json_array_foreach(sc->list, i, e)
        scope = mx_psprintf(pool, "%s%s%s", scope, i ? " " : "", json_string_value(e));
    return scope;
}

/* ---------------------------------------------------------- /authorize --- */

typedef struct au_az {
    mx_req_t *req;
    const au_client_t *client;
    const char *redirect_uri, *mode, *state, *scope, *prompt, *nonce, *challenge, *hint;
    const char *grant_id;
    const char *next;             /* where the browser goes after storing */
} au_az_t;

/* An error sent back to the client (the redirect URI is known good). */
static void au_az_fail(au_az_t *a, const char *error, const char *desc)
{
    const char *params[] = { "error", error, "error_description", desc, "state", a->state, NULL };
    au_redirect(a->req, 302, au_client_redirect_url(mx_req_pool(a->req), a->redirect_uri, a->mode,
                                                    params));
}

static bool au_prompt_has(const char *prompt, const char *v)
{
    return prompt && au_scope_has(prompt, v);   /* same space-separated shape */
}

static void au_az_stored(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_az_t *a = ud;
    if (status < 0) {
        mx_log(AU_LOG, MX_LOG_ERROR, "authorize: storage error %d", status);
        au_az_fail(a, "server_error", NULL);
        return;
    }
    au_redirect(a->req, 302, a->next);
}

static void au_az_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    au_az_t *a = ud;
    mx_pool_t *pool = mx_req_pool(req);
    if (au_prompt_has(a->prompt, "none")) {
        /* No interaction allowed, and consent is always asked for. */
        au_az_fail(a, b->user_id ? "consent_required" : "login_required", NULL);
        return;
    }
    a->grant_id = au_token_new(pool, NULL, 32);
    if (!a->grant_id) {
        au_az_fail(a, "server_error", NULL);
        return;
    }
    const char *g = au_urlencode(pool, a->grant_id);
    if (au_prompt_has(a->prompt, "create") && au.fl->registration != AU_REG_CLOSED)
        a->next = mx_psprintf(pool, "%sregister?grant=%s", au.base, g);
    else if (b->user_id && !au_prompt_has(a->prompt, "login"))
        a->next = au_grant_continue_url(pool, a->grant_id);
    else if (a->hint)
        a->next = mx_psprintf(pool, "%slogin?grant=%s&login_hint=%s", au.base, g,
                              au_urlencode(pool, a->hint));
    else
        a->next = mx_psprintf(pool, "%slogin?grant=%s", au.base, g);
    mx_sql_batch_t *bt = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!bt) {
        au_az_fail(a, "server_error", NULL);
        return;
    }
    mx_sql_add(bt,
               "INSERT INTO auth_grants (id, client_id, redirect_uri, scope, state, nonce,"
               " code_challenge, response_mode, prompt, login_hint, created_ts)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               "ssssssssssi", a->grant_id, a->client->client_id, a->redirect_uri, a->scope,
               a->state, a->nonce, a->challenge, a->mode, a->prompt, a->hint,
               (int64_t)mx_now_ms());
    int rc = mx_sql_run(bt, au_az_stored, a);
    if (rc < 0) {
        au_az_fail(a, "server_error", NULL);
    }
}

static bool au_pkce_chars_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 43 && n <= 128 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == n;
}

static void au_az_client(int status, const au_client_t *c, void *ud)
{
    au_az_t *a = ud;
    mx_req_t *req = a->req;
    mx_pool_t *pool = mx_req_pool(req);
    if (status < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    if (!c) {
        au_page_error(req, 400, "err_client", NULL);
        return;
    }
    a->client = c;
    const char *ru = mx_req_query(req, "redirect_uri");
    json_t *regs = json_object_get(c->metadata, "redirect_uris");
    if (!ru && json_array_size(regs) == 1)
        ru = json_string_value(json_array_get(regs, 0));
    if (!ru || !au_client_redirect_ok(pool, c, ru)) {
        au_page_error(req, 400, "err_redirect_uri", NULL);
        return;
    }
    a->redirect_uri = ru;
    /* From here on errors go back to the client. */
    a->state = mx_req_query(req, "state");
    a->mode = mx_req_query(req, "response_mode");
    if (a->mode && strcmp(a->mode, "query") && strcmp(a->mode, "fragment")) {
        a->mode = "query";
        au_az_fail(a, "invalid_request", "Unsupported response_mode");
        return;
    }
    if (!a->mode)
        a->mode = "query";
    const char *rt = mx_req_query(req, "response_type");
    if (!rt || strcmp(rt, "code")) {
        au_az_fail(a, "unsupported_response_type", "Only response_type=code is supported");
        return;
    }
    if (!au_client_has_grant(c, "authorization_code")) {
        au_az_fail(a, "unauthorized_client", "The client may not use the authorization code grant");
        return;
    }
    const char *method = mx_req_query(req, "code_challenge_method");
    a->challenge = mx_req_query(req, "code_challenge");
    if (!a->challenge || !method || strcmp(method, "S256") || !au_pkce_chars_ok(a->challenge)) {
        au_az_fail(a, "invalid_request", "PKCE with code_challenge_method=S256 is required");
        return;
    }
    if (a->state && strlen(a->state) > 2048) {
        a->state = NULL;
        au_az_fail(a, "invalid_request", "state is too long");
        return;
    }
    a->nonce = mx_req_query(req, "nonce");
    if (a->nonce && strlen(a->nonce) > 512) {
        au_az_fail(a, "invalid_request", "nonce is too long");
        return;
    }
    a->prompt = mx_req_query(req, "prompt");
    a->hint = mx_req_query(req, "login_hint");
    if (a->hint && strlen(a->hint) > 255)
        a->hint = NULL;
    au_scope_t sc;
    const char *bad;
    int rc = au_scope_parse(pool, mx_req_query(req, "scope"), &sc, &bad);
    mx_pool_on_free(pool, au_json_unref, sc.list);
    if (rc < 0) {
        au_az_fail(a, "invalid_scope",
                   bad ? mx_psprintf(pool, "Invalid or unknown scope %s", bad) : "Invalid scope");
        return;
    }
    if (!json_array_size(sc.list)) {
        au_az_fail(a, "invalid_scope", "A scope is required");
        return;
    }
    char *scope = au_scope_with_device(pool, &sc);
    if (!scope) {
        au_az_fail(a, "server_error", NULL);
        return;
    }
    a->scope = scope;
    au_browser_load(req, au_az_browser, a);
}

static int au_get_authorize(mx_req_t *req, void *ud)
{
    (void)ud;
    const char *client_id = mx_req_query(req, "client_id");
    if (!client_id) {
        au_page_error(req, 400, "err_client", NULL);
        return MX_DONE;
    }
    au_az_t *a = mx_palloc(mx_req_pool(req), sizeof(*a));
    if (!a) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    memset(a, 0, sizeof(*a));
    a->req = req;
    int rc = au_client_get(mx_req_pool(req), client_id, au_az_client, a);
    if (rc < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* ------------------------------------------------------------ consent --- */

typedef struct au_cs {
    mx_req_t *req;
    const au_browser_t *b;
    const au_grant_t *g;
    const char *action;           /* POST: allow | deny; NULL for GET */
    const char *gid;              /* POST: the form's grant ID */
} au_cs_t;

static bool au_grant_pending(const au_grant_t *g)
{
    return g && g->status == 0 &&
           (uint64_t)g->created_ts + au.conf->grant_ttl_ms > mx_now_ms();
}

json_t *au_scope_texts(const char *scope)
{
    json_t *arr = json_array();
    bool api = au_scope_has(scope, AU_SCOPE_API) || au_scope_has(scope, AU_SCOPE_API_UNSTABLE);
    if (api)
        json_array_append_new(arr, json_pack("{s:s}", "text", au_string("scope_api")));
    for (const char *p = scope; p && *p;) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        const char *key = NULL;
        if (!strncmp(p, AU_SCOPE_DEVICE, strlen(AU_SCOPE_DEVICE)) ||
            !strncmp(p, AU_SCOPE_DEVICE_UNSTABLE, strlen(AU_SCOPE_DEVICE_UNSTABLE)))
            key = "scope_device";
        else if (l == 6 && !strncmp(p, "openid", 6))
            key = "scope_openid";
        else if (l == 5 && !strncmp(p, "email", 5))
            key = "scope_email";
        else if (l == strlen(AU_SCOPE_SYNAPSE_ADMIN) && !strncmp(p, AU_SCOPE_SYNAPSE_ADMIN, l))
            key = "scope_synapse_admin";
        else if (l == 13 && !strncmp(p, "urn:mas:admin", 13))
            key = "scope_mas_admin";
        if (key)
            json_array_append_new(arr, json_pack("{s:s}", "text", au_string(key)));
        p += l;
    }
    return arr;
}

static void au_cs_page(int status, const au_client_t *c, void *ud)
{
    au_cs_t *s = ud;
    mx_req_t *req = s->req;
    mx_pool_t *pool = mx_req_pool(req);
    if (status < 0 || !c) {
        au_page_error(req, status < 0 ? 500 : 400, status < 0 ? "err_internal" : "err_client", NULL);
        return;
    }
    const char *name = json_string_value(json_object_get(c->metadata, "client_name"));
    const char *uri = json_string_value(json_object_get(c->metadata, "client_uri"));
    json_t *v = json_object();
    json_object_set_new(v, "client_name", json_string(name ? name : uri ? uri : c->client_id));
    json_object_set_new(v, "client_uri", json_string(uri ? uri : ""));
    json_object_set_new(v, "scopes", au_scope_texts(s->g->scope));
    json_object_set_new(v, "user_id", json_string(s->b->user_id));
    json_object_set_new(v, "csrf", json_string(au_csrf_token(pool, s->b->sid)));
    json_object_set_new(v, "grant", json_string(s->g->id));
    /* The Allow button's POST ends in a redirect to the client: CSP
     * form-action must let it through. */
    au_page_reply(req, 200, "consent", v, au_redirect_origin(pool, s->g->redirect_uri));
    json_decref(v);
}

/* A consent write that failed or changed nothing (another tab won). */
static void au_cs_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_cs_t *s = ud;
    if (status < 0) {
        mx_log(AU_LOG, MX_LOG_ERROR, "consent: storage error %d", status);
        au_page_error(s->req, 500, "err_internal", NULL);
        return;
    }
    au_page_error(s->req, 400, "err_grant", NULL);
}

typedef struct au_issue {
    au_cs_t *s;
    const char *code;
} au_issue_t;

static void au_cs_code_written(int status, mx_sql_res_t *res, void *ud)
{
    au_issue_t *is = ud;
    au_cs_t *s = is->s;
    if (status < 0 || mx_sql_changes(res, 0) != 1) {
        au_cs_written(status, res, s);
        return;
    }
    const char *params[] = { "code", is->code, "state", s->g->state, NULL };
    au_redirect(s->req, 303, au_client_redirect_url(mx_req_pool(s->req), s->g->redirect_uri,
                                                    s->g->response_mode, params));
}

static void au_cs_denied(int status, mx_sql_res_t *res, void *ud)
{
    au_cs_t *s = ud;
    if (status < 0 || mx_sql_changes(res, 0) != 1) {
        au_cs_written(status, res, s);
        return;
    }
    const char *params[] = { "error", "access_denied", "state", s->g->state, NULL };
    au_redirect(s->req, 303, au_client_redirect_url(mx_req_pool(s->req), s->g->redirect_uri,
                                                    s->g->response_mode, params));
}

static void au_cs_user(int status, const hs_users_info_t *u, void *ud)
{
    au_cs_t *s = ud;
    mx_req_t *req = s->req;
    mx_pool_t *pool = mx_req_pool(req);
    if (status < 0 || !u || u->locked || u->deactivated) {
        au_page_error(req, status < 0 && status != -ENOENT ? 500 : 403,
                      status < 0 && status != -ENOENT ? "err_internal" : "err_locked", NULL);
        return;
    }
    if (!u->is_admin && au_scope_has_admin(s->g->scope)) {
        au_page_error(req, 403, "err_admin_scope", NULL);
        return;
    }
    if (!s->action) {   /* the consent page */
        if (au_client_get(pool, s->g->client_id, au_cs_page, s) < 0)
            au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    au_issue_t *is = mx_palloc(pool, sizeof(*is));
    char *code = au_token_new(pool, NULL, 32);
    const char *scope = s->g->scope;
    mx_sql_batch_t *b = is && code && scope ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    is->s = s;
    is->code = code;
    char ch[AU_HASH_HEX], bh[AU_HASH_HEX];
    au_hash_hex(code, ch);
    au_hash_hex(s->b->sid, bh);   /* the browser session approving it */
    uint64_t now = mx_now_ms();
    mx_sql_add(b,
               "UPDATE auth_grants SET status = 1, user_id = ?, auth_ts = ?, scope = ?,"
               " code_hash = ?, code_expires_ts = ?, browser_hash = ? WHERE id = ? AND status = 0",
               "sississ", s->b->user_id, s->b->auth_ts, scope, ch,
               (int64_t)(now + au.conf->code_ttl_ms), bh, s->g->id);
    mx_sql_add(b,
               "INSERT INTO auth_consents (user_id, client_id, scope, created_ts)"
               " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, client_id)"
               " DO UPDATE SET scope = excluded.scope, created_ts = excluded.created_ts",
               "sssi", s->b->user_id, s->g->client_id, scope, (int64_t)now);
    int rc = mx_sql_run(b, au_cs_code_written, is);
    if (rc < 0) {
        au_page_error(req, 500, "err_internal", NULL);
    }
}

static void au_cs_grant(int status, const au_grant_t *g, void *ud)
{
    au_cs_t *s = ud;
    mx_req_t *req = s->req;
    mx_pool_t *pool = mx_req_pool(req);
    if (status < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    if (!au_grant_pending(g)) {
        au_page_error(req, 400, "err_grant", NULL);
        return;
    }
    s->g = g;
    /* prompt=login asks for a login made after the request. */
    if (au_prompt_has(g->prompt, "login") && s->b->auth_ts < g->created_ts) {
        if (s->action) {
            au_page_error(req, 400, "err_grant", NULL);
            return;
        }
        au_redirect(req, 302, mx_psprintf(pool, "%slogin?grant=%s", au.base,
                                          au_urlencode(pool, g->id)));
        return;
    }
    if (s->action && !strcmp(s->action, "deny")) {
        mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
        if (!b) {
            au_page_error(req, 500, "err_internal", NULL);
            return;
        }
        mx_sql_add(b, "UPDATE auth_grants SET status = 3 WHERE id = ? AND status = 0", "s", g->id);
        if (mx_sql_run(b, au_cs_denied, s) < 0) {
            au_page_error(req, 500, "err_internal", NULL);
        }
        return;
    }
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!users || users->get(s->b->user_id, au_cs_user, s) < 0)
        au_page_error(req, 500, "err_internal", NULL);
}

static void au_cs_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    au_cs_t *s = ud;
    mx_pool_t *pool = mx_req_pool(req);
    const char *gid = s->action ? s->gid : mx_req_query(req, "grant");
    if (!gid) {
        au_page_error(req, 400, "err_grant", NULL);
        return;
    }
    if (!b->user_id) {
        if (s->action) {
            au_page_error(req, 403, "err_csrf", NULL);
            return;
        }
        au_redirect(req, 302, mx_psprintf(pool, "%slogin?grant=%s", au.base, au_urlencode(pool, gid)));
        return;
    }
    au_browser_t *copy = mx_palloc(pool, sizeof(*copy));
    if (!copy) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    *copy = *b;
    s->b = copy;
    if (au_grant_get(pool, gid, au_cs_grant, s) < 0)
        au_page_error(req, 500, "err_internal", NULL);
}

static int au_get_consent(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_page_browse(req, sizeof(au_cs_t), au_cs_browser);
}

static int au_post_consent(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *form = au_page_form(req);
    if (!form)
        return MX_DONE;
    const char *action = json_string_value(json_object_get(form, "action"));
    const char *grant = json_string_value(json_object_get(form, "grant"));
    if (!grant || !action || (strcmp(action, "allow") && strcmp(action, "deny"))) {
        au_page_error(req, 400, "err_bad_request", NULL);
        return MX_DONE;
    }
    au_cs_t *s = au_page_zalloc(req, sizeof(*s));
    if (!s)
        return MX_DONE;
    s->action = action;
    s->gid = grant;
    au_browser_load(req, au_cs_browser, s);
    return MX_ASYNC;
}

int au_authorize_routes(void)
{
    int rc;
    if ((rc = mx_route_add("auth", "GET", "/authorize", au_get_authorize, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "GET", "/consent", au_get_consent, NULL, MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/consent", au_post_consent, NULL, MX_ROUTE_NO_CORS)) < 0)
        return rc;
    return 0;
}
