/*
 * au_compat_sso.c: m.login.sso for legacy clients, through the OAuth 2.0
 * authorization flow (MSC3824's delegated_oidc_compatibility), and the
 * login tokens it ends with (m.login.token):
 *
 *   GET /_matrix/client/{v3,r0}/login/sso/redirect[/{idp}]?redirectUrl=U
 *       records the round trip, then sends the browser to our /authorize
 *       as an internal public client named after U's host (one per origin,
 *       so the consent page says where the login goes), PKCE S256 with a
 *       verifier only we know, state = the round trip's ID
 *   GET /complete-compat-sso?code=..&state=..   (resource auth)
 *       the redirect URI of that client: checks the code against the
 *       grant (client, expiry, PKCE), consumes it, and sends the browser to
 *       U with loginToken=<single-use token, 2 minutes>
 *
 * POST /login m.login.token then trades the token for a compat session
 * (au_compat_login_token_use).
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AU_SSO_TTL_MS (30 * 60 * 1000)
#define AU_LOGIN_TOKEN_TTL_MS (2 * 60 * 1000)
#define AU_SSO_CALLBACK "complete-compat-sso"

/* The internal client of an origin: "compat_" + 20 hex of its sha256. */
static char *au_sso_client_id(mx_pool_t *pool, const char *origin)
{
    char h[AU_HASH_HEX];
    au_hash_hex(origin, h);
    return mx_psprintf(pool, "compat_%.20s", h);
}

/* "scheme://host[:port]" of a parsed URL ("scheme:" without a host). */
static char *au_sso_origin(mx_pool_t *pool, const au_url_t *u)
{
    if (!u->host)
        return mx_psprintf(pool, "%s:", u->scheme);
    if (u->port >= 0)
        return mx_psprintf(pool, "%s://%s:%d", u->scheme, u->host, u->port);
    return mx_psprintf(pool, "%s://%s", u->scheme, u->host);
}

static char *au_s256(mx_pool_t *pool, const char *verifier)
{
    unsigned char d[32];
    mx_sha256(verifier, strlen(verifier), d);
    return au_b64url(pool, d, sizeof(d));
}

/* ------------------------------------------------------------- redirect --- */

typedef struct au_sr {
    mx_req_t *req;
    const char *location;
} au_sr_t;

static void au_sr_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_sr_t *r = ud;
    if (status < 0) {
        mx_log(AU_LOG, MX_LOG_ERROR, "sso redirect: storage error %d", status);
        mx_req_error(r->req, 500, "M_UNKNOWN", "Internal error");
        return;
    }
    au_redirect(r->req, 303, r->location);
}

static int au_get_sso_redirect(mx_req_t *req, void *ud)
{
    (void)ud;
    mx_pool_t *pool = mx_req_pool(req);
    const char *target = mx_req_query(req, "redirectUrl");
    au_url_t u;
    if (!target) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: redirectUrl");
        return MX_DONE;
    }
    if (au_url_parse(pool, target, &u) < 0 || u.has_fragment || u.userinfo) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid redirectUrl");
        return MX_DONE;
    }
    const char *host = u.host && *u.host ? u.host : u.scheme;
    const char *origin = au_sso_origin(pool, &u);
    const char *cid = au_sso_client_id(pool, origin);
    const char *callback = mx_psprintf(pool, "%s" AU_SSO_CALLBACK, au.base);
    json_t *md = json_pack("{s:s, s:s, s:[s], s:[s], s:[s], s:s, s:s}", "client_name",
                           mx_psprintf(pool, "%s (%s)", host, au_string("compat_sso_client")),
                           "client_uri", origin, "redirect_uris", callback, "grant_types",
                           "authorization_code", "response_types", "code",
                           "token_endpoint_auth_method", "none", "application_type", "web");
    char *mds = md ? json_dumps(md, JSON_COMPACT) : NULL;
    json_decref(md);
    const char *text = mds ? mx_pstrdup(pool, mds) : NULL;
    free(mds);
    const char *id = au_ulid(pool);
    const char *verifier = au_token_new(pool, NULL, 48);
    au_sr_t *r = mx_palloc(pool, sizeof(*r));
    mx_sql_batch_t *b = text && id && verifier && r ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Internal error");
        return MX_DONE;
    }
    int64_t now = (int64_t)mx_now_ms();
    r->req = req;
    r->location = mx_psprintf(
        pool,
        "%sauthorize?response_type=code&client_id=%s&redirect_uri=%s&scope=%s&state=%s"
        "&code_challenge=%s&code_challenge_method=S256",
        au.base, au_urlencode(pool, cid), au_urlencode(pool, callback),
        au_urlencode(pool, "openid " AU_SCOPE_API), id, au_s256(pool, verifier));
    mx_sql_add(b,
               "INSERT INTO auth_clients (client_id, secret_hash, metadata, created_ts)"
               " VALUES (?, NULL, ?, ?) ON CONFLICT (client_id) DO NOTHING",
               "ssi", cid, text, now);
    mx_sql_add(b,
               "INSERT INTO auth_compat_sso_logins (id, redirect_uri, code_verifier, created_ts)"
               " VALUES (?, ?, ?, ?)",
               "sssi", id, target, verifier, now);
    /* Old unfinished round trips go. */
    mx_sql_add(b, "DELETE FROM auth_compat_sso_logins WHERE created_ts < ? AND exchanged_ts IS NULL",
               "i", now - AU_SSO_TTL_MS);
    if (mx_sql_run(b, au_sr_written, r) < 0) {
        mx_req_error(req, 500, "M_UNKNOWN", "Internal error");
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* ------------------------------------------------------------- callback --- */

typedef struct au_sc {
    mx_req_t *req;
    const char *id, *code, *redirect_uri, *verifier, *token, *user_id;
} au_sc_t;

static void au_sc_fail(au_sc_t *c, const char *detail)
{
    au_page_error(c->req, 400, "err_compat_sso", detail);
}

static void au_sc_written(int status, mx_sql_res_t *res, void *ud)
{
    au_sc_t *c = ud;
    if (status < 0) {
        au_page_error(c->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_changes(res, 0) < 1 || mx_sql_changes(res, 1) < 1) {
        au_sc_fail(c, "code already used");
        return;
    }
    mx_pool_t *pool = mx_req_pool(c->req);
    const char *sep = strchr(c->redirect_uri, '?') ? "&" : "?";
    au_redirect(c->req, 303, mx_psprintf(pool, "%s%sloginToken=%s", c->redirect_uri, sep,
                                         au_urlencode(pool, c->token)));
}

static void au_sc_grant(int status, const au_grant_t *g, void *ud)
{
    au_sc_t *c = ud;
    mx_pool_t *pool = mx_req_pool(c->req);
    if (status < 0) {
        au_page_error(c->req, 500, "err_internal", NULL);
        return;
    }
    au_url_t u;
    const char *origin = NULL;
    if (au_url_parse(pool, c->redirect_uri, &u) == 0)
        origin = au_sso_origin(pool, &u);
    if (!g || !origin || strcmp(g->client_id, au_sso_client_id(pool, origin)) || g->status != 1 ||
        !g->user_id || (uint64_t)g->code_expires_ts <= mx_now_ms() ||
        strcmp(g->code_challenge, au_s256(pool, c->verifier))) {
        au_sc_fail(c, "invalid or expired code");
        return;
    }
    c->user_id = g->user_id;
    c->token = au_token_new(pool, "mlt", 32);
    mx_sql_batch_t *b = c->token ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_page_error(c->req, 500, "err_internal", NULL);
        return;
    }
    char th[AU_HASH_HEX];
    au_hash_hex(c->token, th);
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b, "UPDATE auth_grants SET status = 2 WHERE id = ? AND status = 1", "s", g->id);
    mx_sql_add(b,
               "UPDATE auth_compat_sso_logins SET login_token_hash = ?, user_id = ?,"
               " fulfilled_ts = ?, browser_hash = (SELECT browser_hash FROM auth_grants"
               " WHERE id = ?) WHERE id = ? AND fulfilled_ts IS NULL",
               "ssiss", th, c->user_id, now, g->id, c->id);
    if (mx_sql_run(b, au_sc_written, c) < 0)
        au_page_error(c->req, 500, "err_internal", NULL);
}

static void au_sc_loaded(int status, mx_sql_res_t *res, void *ud)
{
    au_sc_t *c = ud;
    mx_pool_t *pool = mx_req_pool(c->req);
    if (status < 0) {
        au_page_error(c->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_nrows(res, 0) < 1 || !mx_sql_is_null(res, 0, 0, 2) ||
        mx_sql_int(res, 0, 0, 3) < (int64_t)mx_now_ms() - AU_SSO_TTL_MS) {
        au_sc_fail(c, "unknown or expired login");
        return;
    }
    c->redirect_uri = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 0));
    c->verifier = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 1));
    char ch[AU_HASH_HEX];
    au_hash_hex(c->code, ch);
    if (au_grant_by_code(pool, ch, au_sc_grant, c) < 0)
        au_page_error(c->req, 500, "err_internal", NULL);
}

static int au_get_sso_complete(mx_req_t *req, void *ud)
{
    (void)ud;
    au_sc_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    if (!c) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->id = mx_req_query(req, "state");
    c->code = mx_req_query(req, "code");
    const char *error = mx_req_query(req, "error");
    if (error || !c->id || !c->code) {
        au_page_error(req, error && !strcmp(error, "access_denied") ? 403 : 400,
                      "err_compat_sso", error ? error : "missing code or state");
        return MX_DONE;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    mx_sql_add(b,
               "SELECT redirect_uri, code_verifier, fulfilled_ts, created_ts"
               " FROM auth_compat_sso_logins WHERE id = ?",
               "s", c->id);
    if (mx_sql_run(b, au_sc_loaded, c) < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* ---------------------------------------------------------- login token --- */

typedef struct au_lt {
    au_login_token_fn cb;
    void *ud;
} au_lt_t;

static void au_lt_used(int status, mx_sql_res_t *res, void *ud)
{
    au_lt_t *l = ud;
    if (status < 0)
        l->cb(status, NULL, NULL, l->ud);
    else if (mx_sql_nrows(res, 0) < 1)
        l->cb(-ENOENT, NULL, NULL, l->ud);
    else
        l->cb(0, mx_sql_text(res, 0, 0, 0), mx_sql_text(res, 0, 0, 1), l->ud);
}

int au_compat_login_token_use(mx_pool_t *pool, const char *token, au_login_token_fn cb, void *ud)
{
    au_lt_t *l = mx_palloc(pool, sizeof(*l));
    mx_sql_batch_t *b = l && token ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b)
        return token ? -ENOMEM : -EINVAL;
    l->cb = cb;
    l->ud = ud;
    char th[AU_HASH_HEX];
    au_hash_hex(token, th);
    int64_t now = (int64_t)mx_now_ms();
    /* Single use: the UPDATE consumes it atomically. */
    mx_sql_add(b,
               "UPDATE auth_compat_sso_logins SET exchanged_ts = ? WHERE login_token_hash = ?"
               " AND exchanged_ts IS NULL AND fulfilled_ts > ? RETURNING user_id, id",
               "isi", now, th, now - AU_LOGIN_TOKEN_TTL_MS);
    return mx_sql_run(b, au_lt_used, l);
}

/* --------------------------------------------------------------- routes --- */

int au_compat_sso_routes(void)
{
    static const char *const paths[] = {
        "/_matrix/client/v3/login/sso/redirect", "/_matrix/client/r0/login/sso/redirect",
        "/_matrix/client/v3/login/sso/redirect/{idp}", "/_matrix/client/r0/login/sso/redirect/{idp}",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int rc = mx_route_add("client", "GET", paths[i], au_get_sso_redirect, NULL, 0);
        if (rc < 0)
            return rc;
    }
    return mx_route_add("auth", "GET", "/" AU_SSO_CALLBACK, au_get_sso_complete, NULL,
                        MX_ROUTE_NO_CORS);
}
