/*
 * au_token.c: the token endpoint and what hangs off it.
 *
 *   POST /oauth2/token     authorization_code (PKCE S256 verifier checked,
 *                          code single use: a second use revokes what the
 *                          first produced), refresh_token (rotation: each
 *                          refresh token works once; the one before may be
 *                          replayed while its successor is unused, in case
 *                          the answer was lost; replaying an older one ends
 *                          the session), client_credentials (confidential
 *                          clients, no user), device_code (RFC 8628 §3.4:
 *                          authorization_pending, slow_down when polled
 *                          faster than the interval, which then grows by
 *                          5 s, access_denied, expired_token; the approved
 *                          request becomes a session once)
 *   POST /oauth2/revoke    RFC 7009: ends the whole OAuth session
 *   GET|POST /oauth2/userinfo
 *
 * Tokens: "mat_" + 32 random characters (access), "mar_" + 32 (refresh),
 * stored as sha256 hex only.  One write batch per request; the inserts of
 * a code exchange or a rotation are guarded by the UPDATE that consumes the
 * code / refresh token, so of two concurrent uses only one gets tokens.
 * id_tokens are RS256 JWTs (ES256 when the client registered it).
 */
#include "auth.h"
#include "au_admin.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct au_tr {
    mx_req_t *req;
    json_t *form;
    const au_client_t *client;
    const au_grant_t *grant;
    /* issued */
    const char *session_id, *user_id, *device_id, *scope;
    const char *access, *refresh;
    char access_hash[AU_HASH_HEX], refresh_hash[AU_HASH_HEX];
    const char *old_refresh_hash, *old_next_hash;
    int64_t auth_ts;
    int guard_stmt;               /* statement whose changes must be 1 */
} au_tr_t;


/* ------------------------------------------------------------ id_token --- */

static char *au_id_token(au_tr_t *t)
{
    mx_pool_t *pool = mx_req_pool(t->req);
    uint64_t now = mx_now_ms() / 1000;
    unsigned char d[32];
    mx_sha256(t->access, strlen(t->access), d);
    json_t *claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "iss", au.issuer, "sub",
                               t->user_id, "aud", t->client->client_id, "iat", (json_int_t)now,
                               "exp", (json_int_t)(now + au.conf->id_token_ttl_ms / 1000),
                               "at_hash", au_b64url(pool, d, 16));
    if (!claims)
        return NULL;
    if (t->auth_ts)
        json_object_set_new(claims, "auth_time", json_integer(t->auth_ts / 1000));
    if (t->grant && t->grant->nonce)
        json_object_set_new(claims, "nonce", json_string(t->grant->nonce));
    const char *alg =
        json_string_value(json_object_get(t->client->metadata, "id_token_signed_response_alg"));
    char *jwt = au_jws_sign(pool, alg ? alg : "RS256", claims);
    json_decref(claims);
    return jwt;
}

static void au_tokens_reply(au_tr_t *t)
{
    json_t *b = json_pack("{s:s, s:s, s:I, s:s}", "access_token", t->access, "token_type",
                          "Bearer", "expires_in", (json_int_t)(au.conf->access_token_ttl_ms / 1000),
                          "scope", t->scope);
    if (t->refresh)
        json_object_set_new(b, "refresh_token", json_string(t->refresh));
    if (t->user_id && au_scope_has(t->scope, "openid")) {
        char *idt = au_id_token(t);
        if (idt)
            json_object_set_new(b, "id_token", json_string(idt));
    }
    if (au.m_tokens)
        mx_counter_add(au.m_tokens, 1);
    au_reply_json_nostore(t->req, 200, b);
}

/* Tokens for session `t->session_id`: the access token always, a refresh
 * token when `refresh`.  Inserts are guarded by `guard` (SQL returning a
 * row only when this request won) with its text parameter `garg`. */
static int au_tokens_add(au_tr_t *t, mx_sql_batch_t *b, bool refresh, const char *guard,
                         const char *garg1, const char *garg2)
{
    mx_pool_t *pool = mx_req_pool(t->req);
    uint64_t now = mx_now_ms();
    t->access = au_token_new(pool, "mat", 32);
    t->refresh = refresh ? au_token_new(pool, "mar", 32) : NULL;
    if (!t->access || (refresh && !t->refresh))
        return -ENOMEM;
    au_hash_hex(t->access, t->access_hash);
    if (refresh)
        au_hash_hex(t->refresh, t->refresh_hash);
    if (refresh)
        mx_sql_add(b,
                   mx_psprintf(pool,
                               "INSERT INTO auth_refresh_tokens (token_hash, session_id, created_ts)"
                               " SELECT ?, ?, ? WHERE EXISTS (%s)", guard),
                   "ssiss", t->refresh_hash, t->session_id, (int64_t)now, garg1, garg2);
    mx_sql_add(b,
               mx_psprintf(pool,
                           "INSERT INTO auth_access_tokens (token_hash, session_id, refresh_hash,"
                           " created_ts, expires_ts) SELECT ?, ?, ?, ?, ? WHERE EXISTS (%s)",
                           guard),
               "sssiiss", t->access_hash, t->session_id, refresh ? t->refresh_hash : NULL,
               (int64_t)now, (int64_t)(now + au.conf->access_token_ttl_ms), garg1, garg2);
    return 0;
}

static void au_tr_written(int status, mx_sql_res_t *res, void *ud)
{
    au_tr_t *t = ud;
    if (status < 0) {
        au_storage_error(t->req, status, "token");
        return;
    }
    if (mx_sql_changes(res, t->guard_stmt) != 1) {
        au_oauth_error(t->req, 400, "invalid_grant", "The grant was already used");
        return;
    }
    /* Access tokens replaced by a rotation leave the cache now. */
    if (t->old_refresh_hash)
        au_cache_evict_session(t->session_id);
    au_tokens_reply(t);
}

/* ------------------------------------------------- authorization_code --- */

static bool au_pkce_ok(const char *verifier, const char *challenge, mx_pool_t *pool)
{
    size_t n = verifier ? strlen(verifier) : 0;
    if (n < 43 || n > 128 ||
        strspn(verifier, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != n)
        return false;
    unsigned char d[32];
    mx_sha256(verifier, n, d);
    char *want = au_b64url(pool, d, sizeof(d));
    return want && challenge && strlen(want) == strlen(challenge) &&
           mx_ct_equal(want, challenge, strlen(want));
}

static void au_code_finished(int status, void *ud)
{
    (void)status;
    au_tr_t *t = ud;
    au_oauth_error(t->req, 400, "invalid_grant", "The authorization code was already used");
}

static void au_code_grant(int status, const au_grant_t *g, void *ud)
{
    au_tr_t *t = ud;
    mx_pool_t *pool = mx_req_pool(t->req);
    if (status < 0) {
        au_storage_error(t->req, status, "token: code");
        return;
    }
    if (!g || strcmp(g->client_id, t->client->client_id) != 0) {
        au_oauth_error(t->req, 400, "invalid_grant", "Unknown authorization code");
        return;
    }
    if (g->status == 2) {
        /* RFC 6749 §4.1.2: a code used twice revokes what it gave. */
        if (!g->session_id || au_session_finish(g->session_id, au_code_finished, t) < 0)
            au_code_finished(0, t);
        return;
    }
    if (g->status != 1 || (uint64_t)g->code_expires_ts <= mx_now_ms()) {
        au_oauth_error(t->req, 400, "invalid_grant", "The authorization code has expired");
        return;
    }
    const char *ru = json_string_value(json_object_get(t->form, "redirect_uri"));
    if (!ru || strcmp(ru, g->redirect_uri)) {
        au_oauth_error(t->req, 400, "invalid_grant", "redirect_uri does not match");
        return;
    }
    if (!au_pkce_ok(json_string_value(json_object_get(t->form, "code_verifier")),
                    g->code_challenge, pool)) {
        au_oauth_error(t->req, 400, "invalid_grant", "The code_verifier does not match");
        return;
    }
    t->grant = g;
    t->session_id = au_ulid(pool);
    t->user_id = g->user_id;
    t->scope = g->scope;
    t->auth_ts = g->auth_ts;
    t->device_id = au_scope_device(pool, g->scope);
    mx_sql_batch_t *b = t->session_id ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_storage_error(t->req, -ENOMEM, "token");
        return;
    }
    uint64_t now = mx_now_ms();
    static const char guard[] = "SELECT 1 FROM auth_grants WHERE id = ? AND session_id = ?";
    mx_sql_add(b, "UPDATE auth_grants SET status = 2, session_id = ? WHERE id = ? AND status = 1",
               "ss", t->session_id, g->id);
    t->guard_stmt = 0;
    mx_sql_add(b,
               "INSERT INTO auth_oauth_sessions (id, client_id, user_id, device_id, scope,"
               " created_ts, browser_hash) SELECT ?, ?, ?, ?, ?, ?, browser_hash"
               " FROM auth_grants WHERE id = ? AND session_id = ?",
               "sssssiss", t->session_id, t->client->client_id, t->user_id, t->device_id, t->scope,
               (int64_t)now, g->id, t->session_id);
    int rc = au_tokens_add(t, b, au_client_has_grant(t->client, "refresh_token"), guard, g->id,
                           t->session_id);
    if (rc == 0)
        rc = mx_sql_run(b, au_tr_written, t);
    if (rc < 0) {
        au_storage_error(t->req, rc, "token");
    }
}

static void au_grant_code(au_tr_t *t)
{
    const char *code = json_string_value(json_object_get(t->form, "code"));
    if (!code) {
        au_oauth_error(t->req, 400, "invalid_request", "Missing code");
        return;
    }
    if (!au_client_has_grant(t->client, "authorization_code")) {
        au_oauth_error(t->req, 400, "unauthorized_client", NULL);
        return;
    }
    char h[AU_HASH_HEX];
    au_hash_hex(code, h);
    int rc = au_grant_by_code(mx_req_pool(t->req), h, au_code_grant, t);
    if (rc < 0)
        au_storage_error(t->req, rc, "token: code");
}

/* ------------------------------------------------------ refresh_token --- */

static void au_refresh_replayed(int status, void *ud)
{
    (void)status;
    au_tr_t *t = ud;
    au_oauth_error(t->req, 400, "invalid_grant", "The refresh token was already used");
}

static void au_refresh_loaded(int status, mx_sql_res_t *res, void *ud)
{
    au_tr_t *t = ud;
    mx_pool_t *pool = mx_req_pool(t->req);
    if (status < 0) {
        au_storage_error(t->req, status, "token: refresh");
        return;
    }
    /* r.session_id, r.consumed_ts, r.next_hash, r.revoked, s.client_id,
     * s.user_id, s.device_id, s.scope, s.finished_ts, next.consumed_ts,
     * next.revoked */
    if (mx_sql_nrows(res, 0) < 1 || mx_sql_int(res, 0, 0, 3) || !mx_sql_is_null(res, 0, 0, 8) ||
        strcmp(mx_sql_text(res, 0, 0, 4), t->client->client_id)) {
        au_oauth_error(t->req, 400, "invalid_grant", "Unknown or revoked refresh token");
        return;
    }
    t->session_id = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 0));
    t->user_id = mx_sql_is_null(res, 0, 0, 5) ? NULL : mx_pstrdup(pool, mx_sql_text(res, 0, 0, 5));
    t->device_id = mx_sql_is_null(res, 0, 0, 6) ? NULL : mx_pstrdup(pool, mx_sql_text(res, 0, 0, 6));
    t->scope = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 7));
    bool consumed = !mx_sql_is_null(res, 0, 0, 1);
    if (consumed) {
        bool next_used = mx_sql_is_null(res, 0, 0, 2) || !mx_sql_is_null(res, 0, 0, 9) ||
                         mx_sql_int(res, 0, 0, 10);
        if (next_used) {
            /* An old refresh token came back: treat the session as stolen. */
            if (au_session_finish(t->session_id, au_refresh_replayed, t) < 0)
                au_refresh_replayed(0, t);
            return;
        }
        t->old_next_hash = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 2));
    }
    uint64_t now = mx_now_ms();
    char *newref = au_token_new(pool, "mar", 32);
    t->access = au_token_new(pool, "mat", 32);
    if (!newref || !t->access) {
        au_storage_error(t->req, -ENOMEM, "token: refresh");
        return;
    }
    t->refresh = newref;
    char nh[AU_HASH_HEX];
    au_hash_hex(newref, nh);
    au_hash_hex(t->access, t->access_hash);
    memcpy(t->refresh_hash, nh, sizeof(nh));
    int rc;
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        au_storage_error(t->req, -ENOMEM, "token: refresh");
        return;
    }
    if (t->old_next_hash) {
        mx_sql_add(b, "UPDATE auth_refresh_tokens SET revoked = 1 WHERE token_hash = ?", "s",
                   t->old_next_hash);
        mx_sql_add(b, "UPDATE auth_access_tokens SET revoked = 1 WHERE refresh_hash = ?", "s",
                   t->old_next_hash);
        mx_sql_add(b,
                   "UPDATE auth_refresh_tokens SET next_hash = ? WHERE token_hash = ?"
                   " AND next_hash = ? AND revoked = 0",
                   "sss", nh, t->old_refresh_hash, t->old_next_hash);
        t->guard_stmt = 2;
    } else {
        mx_sql_add(b,
                   "UPDATE auth_refresh_tokens SET consumed_ts = ?, next_hash = ?"
                   " WHERE token_hash = ? AND consumed_ts IS NULL AND revoked = 0",
                   "iss", (int64_t)now, nh, t->old_refresh_hash);
        t->guard_stmt = 0;
    }
    mx_sql_add(b, "UPDATE auth_access_tokens SET revoked = 1 WHERE refresh_hash = ?", "s",
               t->old_refresh_hash);
    mx_sql_add(b,
               "INSERT INTO auth_refresh_tokens (token_hash, session_id, created_ts)"
               " SELECT ?, ?, ? WHERE EXISTS"
               " (SELECT 1 FROM auth_refresh_tokens WHERE token_hash = ? AND next_hash = ?)",
               "ssiss", nh, t->session_id, (int64_t)now, t->old_refresh_hash, nh);
    mx_sql_add(b,
               "INSERT INTO auth_access_tokens (token_hash, session_id, refresh_hash, created_ts,"
               " expires_ts) SELECT ?, ?, ?, ?, ? WHERE EXISTS"
               " (SELECT 1 FROM auth_refresh_tokens WHERE token_hash = ? AND next_hash = ?)",
               "sssiiss", t->access_hash, t->session_id, nh, (int64_t)now,
               (int64_t)(now + au.conf->access_token_ttl_ms), t->old_refresh_hash, nh);
    rc = mx_sql_run(b, au_tr_written, t);
    if (rc < 0) {
        au_storage_error(t->req, rc, "token: refresh");
    }
}

static void au_grant_refresh(au_tr_t *t)
{
    const char *rt = json_string_value(json_object_get(t->form, "refresh_token"));
    if (!rt) {
        au_oauth_error(t->req, 400, "invalid_request", "Missing refresh_token");
        return;
    }
    if (!au_client_has_grant(t->client, "refresh_token")) {
        au_oauth_error(t->req, 400, "unauthorized_client", NULL);
        return;
    }
    char *h = mx_palloc(mx_req_pool(t->req), AU_HASH_HEX);
    mx_sql_batch_t *b = h ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        au_storage_error(t->req, -ENOMEM, "token: refresh");
        return;
    }
    au_hash_hex(rt, h);
    t->old_refresh_hash = h;
    mx_sql_add(b,
               "SELECT r.session_id, r.consumed_ts, r.next_hash, r.revoked, s.client_id,"
               " s.user_id, s.device_id, s.scope, s.finished_ts, n.consumed_ts, n.revoked"
               " FROM auth_refresh_tokens r JOIN auth_oauth_sessions s ON s.id = r.session_id"
               " LEFT JOIN auth_refresh_tokens n ON n.token_hash = r.next_hash"
               " WHERE r.token_hash = ?",
               "s", h);
    int rc = mx_sql_run(b, au_refresh_loaded, t);
    if (rc < 0) {
        au_storage_error(t->req, rc, "token: refresh");
    }
}

/* -------------------------------------------------- client_credentials --- */

static void au_cc_issue(int verdict, void *ud);

static void au_grant_client_credentials(au_tr_t *t)
{
    mx_pool_t *pool = mx_req_pool(t->req);
    if (!strcmp(t->client->auth_method, "none") ||
        !au_client_has_grant(t->client, "client_credentials")) {
        au_oauth_error(t->req, 400, "unauthorized_client", NULL);
        return;
    }
    au_scope_t sc;
    const char *bad;
    int rc = au_scope_parse(pool, json_string_value(json_object_get(t->form, "scope")), &sc, &bad);
    json_decref(sc.list);
    if (rc < 0 || sc.api || sc.device_id) {
        au_oauth_error(t->req, 400, "invalid_scope", "This scope needs a user");
        return;
    }
    const char *scope = json_string_value(json_object_get(t->form, "scope"));
    t->scope = scope ? scope : "";
    if (!au_scope_has_admin(scope)) {
        au_cc_issue(1, t);
        return;
    }
    /* Only clients in the policy's admin_clients may hold admin scopes. */
    rc = aa_client_admin_check(t->client->client_id, au_cc_issue, t);
    if (rc < 0)
        au_storage_error(t->req, rc, "token");
}

static void au_cc_issue(int verdict, void *ud)
{
    au_tr_t *t = ud;
    mx_pool_t *pool = mx_req_pool(t->req);
    int rc;
    if (verdict < 0) {
        au_storage_error(t->req, verdict, "token");
        return;
    }
    if (!verdict) {
        au_oauth_error(t->req, 400, "invalid_scope", "This client may not request admin scopes");
        return;
    }
    t->session_id = au_ulid(pool);
    mx_sql_batch_t *b = t->session_id ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_storage_error(t->req, -ENOMEM, "token");
        return;
    }
    mx_sql_add(b,
               "INSERT INTO auth_oauth_sessions (id, client_id, scope, created_ts)"
               " VALUES (?, ?, ?, ?)",
               "sssi", t->session_id, t->client->client_id, t->scope, (int64_t)mx_now_ms());
    t->guard_stmt = 0;
    static const char guard[] = "SELECT 1 FROM auth_oauth_sessions WHERE id = ? AND client_id = ?";
    rc = au_tokens_add(t, b, false, guard, t->session_id, t->client->client_id);
    if (rc == 0)
        rc = mx_sql_run(b, au_tr_written, t);
    if (rc < 0) {
        au_storage_error(t->req, rc, "token");
    }
}

/* --------------------------------------------------------- device_code --- */

typedef struct au_dp {
    au_tr_t *t;
    const char *error;            /* answered once the poll is recorded */
} au_dp_t;

static void au_device_polled(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_dp_t *p = ud;
    if (status < 0) {
        au_storage_error(p->t->req, status, "token: device");
        return;
    }
    au_oauth_error(p->t->req, 400, p->error, NULL);
}

static void au_device_loaded(int status, mx_sql_res_t *res, void *ud)
{
    au_tr_t *t = ud;
    mx_pool_t *pool = mx_req_pool(t->req);
    if (status < 0) {
        au_storage_error(t->req, status, "token: device");
        return;
    }
    /* id, client_id, scope, status, user_id, auth_ts, expires_ts,
     * last_poll_ts, interval_ms */
    if (mx_sql_nrows(res, 0) < 1 || strcmp(mx_sql_text(res, 0, 0, 1), t->client->client_id)) {
        au_oauth_error(t->req, 400, "invalid_grant", "Unknown device_code");
        return;
    }
    const char *id = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 0));
    int st = (int)mx_sql_int(res, 0, 0, 3);
    uint64_t now = mx_now_ms();
    if (st == 3) {
        au_oauth_error(t->req, 400, "invalid_grant", "The device_code was already used");
        return;
    }
    if ((uint64_t)mx_sql_int(res, 0, 0, 6) <= now) {
        au_oauth_error(t->req, 400, "expired_token", NULL);
        return;
    }
    if (st == 2) {
        au_oauth_error(t->req, 400, "access_denied", NULL);
        return;
    }
    if (st == 0) {
        int64_t last = mx_sql_is_null(res, 0, 0, 7) ? 0 : mx_sql_int(res, 0, 0, 7);
        int64_t interval = mx_sql_int(res, 0, 0, 8);
        au_dp_t *p = mx_palloc(pool, sizeof(*p));
        mx_sql_batch_t *b = p ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
        if (!b) {
            au_storage_error(t->req, -ENOMEM, "token: device");
            return;
        }
        p->t = t;
        /* A little slack for clocks and networks. */
        bool fast = last && (int64_t)now - last < interval - 500;
        p->error = fast ? "slow_down" : "authorization_pending";
        mx_sql_add(b,
                   "UPDATE auth_device_codes SET last_poll_ts = ?, interval_ms = interval_ms + ?"
                   " WHERE id = ?",
                   "iis", (int64_t)now, (int64_t)(fast ? 5000 : 0), id);
        if (mx_sql_run(b, au_device_polled, p) < 0)
            au_storage_error(t->req, -ENOMEM, "token: device");
        return;
    }
    t->session_id = au_ulid(pool);
    t->user_id = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 4));
    t->scope = mx_pstrdup(pool, mx_sql_text(res, 0, 0, 2));
    t->auth_ts = mx_sql_is_null(res, 0, 0, 5) ? 0 : mx_sql_int(res, 0, 0, 5);
    t->device_id = au_scope_device(pool, t->scope);
    mx_sql_batch_t *b = t->session_id ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_storage_error(t->req, -ENOMEM, "token: device");
        return;
    }
    static const char guard[] = "SELECT 1 FROM auth_device_codes WHERE id = ? AND session_id = ?";
    mx_sql_add(b,
               "UPDATE auth_device_codes SET status = 3, session_id = ? WHERE id = ? AND status = 1",
               "ss", t->session_id, id);
    t->guard_stmt = 0;
    mx_sql_add(b,
               "INSERT INTO auth_oauth_sessions (id, client_id, user_id, device_id, scope,"
               " created_ts, browser_hash) SELECT ?, ?, ?, ?, ?, ?, browser_hash"
               " FROM auth_device_codes WHERE id = ? AND session_id = ?",
               "sssssiss", t->session_id, t->client->client_id, t->user_id, t->device_id, t->scope,
               (int64_t)now, id, t->session_id);
    int rc = au_tokens_add(t, b, au_client_has_grant(t->client, "refresh_token"), guard, id,
                           t->session_id);
    if (rc == 0)
        rc = mx_sql_run(b, au_tr_written, t);
    if (rc < 0)
        au_storage_error(t->req, rc, "token: device");
}

static void au_grant_device(au_tr_t *t)
{
    const char *dc = json_string_value(json_object_get(t->form, "device_code"));
    if (!dc) {
        au_oauth_error(t->req, 400, "invalid_request", "Missing device_code");
        return;
    }
    if (!au.conf->device_code_grant_enabled || !au_client_has_grant(t->client, AU_GRANT_DEVICE_CODE)) {
        au_oauth_error(t->req, 400, "unauthorized_client", NULL);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        au_storage_error(t->req, -ENOMEM, "token: device");
        return;
    }
    char h[AU_HASH_HEX];
    au_hash_hex(dc, h);
    mx_sql_add(b,
               "SELECT id, client_id, scope, status, user_id, auth_ts, expires_ts, last_poll_ts,"
               " interval_ms FROM auth_device_codes WHERE device_code_hash = ?",
               "s", h);
    if (mx_sql_run(b, au_device_loaded, t) < 0)
        au_storage_error(t->req, -ENOMEM, "token: device");
}

/* --------------------------------------------------------------- entry --- */

static void au_token_client(mx_req_t *req, const au_client_t *c, void *ud)
{
    au_tr_t *t = ud;
    t->client = c;
    const char *gt = json_string_value(json_object_get(t->form, "grant_type"));
    if (!strcmp(gt, "authorization_code"))
        au_grant_code(t);
    else if (!strcmp(gt, "refresh_token"))
        au_grant_refresh(t);
    else if (!strcmp(gt, "client_credentials"))
        au_grant_client_credentials(t);
    else if (!strcmp(gt, AU_GRANT_DEVICE_CODE))
        au_grant_device(t);
    else
        au_oauth_error(req, 400, "unsupported_grant_type", NULL);
}

static int au_post_token(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *form = au_oauth_form(req);
    if (!form)
        return MX_DONE;
    if (!json_string_value(json_object_get(form, "grant_type"))) {
        au_oauth_error(req, 400, "invalid_request", "Missing grant_type");
        return MX_DONE;
    }
    au_tr_t *t = mx_palloc(mx_req_pool(req), sizeof(*t));
    if (!t) {
        au_storage_error(req, -ENOMEM, "token");
        return MX_DONE;
    }
    memset(t, 0, sizeof(*t));
    t->req = req;
    t->form = form;
    au_client_authenticate(req, form, au_token_client, t);
    return MX_ASYNC;
}

/* ----------------------------------------------------------- revocation --- */

typedef struct au_rv {
    mx_req_t *req;
    const au_client_t *client;
    const char *token;
    bool refresh_first;           /* token_type_hint=refresh_token */
    int step;                     /* lookups done */
} au_rv_t;

static void au_rv_done(int status, void *ud)
{
    au_rv_t *r = ud;
    if (status < 0) {
        au_storage_error(r->req, status, "revoke");
        return;
    }
    au_reply_json_nostore(r->req, 200, json_object());
}

static void au_rv_found(int status, const au_tokinfo_t *ti, void *ud)
{
    au_rv_t *r = ud;
    if (status < 0) {
        au_storage_error(r->req, status, "revoke");
        return;
    }
    if (!ti) {
        if (r->step == 2) {
            /* RFC 7009 §2.2: unknown tokens are not an error. */
            au_reply_json_nostore(r->req, 200, json_object());
            return;
        }
        /* The hint only orders the two lookups (RFC 7009 §2.1). */
        bool refresh = (r->step == 0) == r->refresh_first;
        r->step++;
        if (au_token_lookup(mx_req_pool(r->req), r->token, refresh, au_rv_found, r) < 0)
            au_storage_error(r->req, -ENOMEM, "revoke");
        return;
    }
    if (strcmp(ti->client_id, r->client->client_id)) {
        au_oauth_error(r->req, 400, "unauthorized_client",
                       "The token was not issued to this client");
        return;
    }
    if (au_session_finish(ti->session_id, au_rv_done, r) < 0)
        au_storage_error(r->req, -ENOMEM, "revoke");
}

static void au_rv_client(mx_req_t *req, const au_client_t *c, void *ud)
{
    (void)req;
    au_rv_t *r = ud;
    r->client = c;
    au_rv_found(0, NULL, r);
}

static int au_post_revoke(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *form = au_oauth_form(req);
    if (!form)
        return MX_DONE;
    const char *token = json_string_value(json_object_get(form, "token"));
    if (!token) {
        au_oauth_error(req, 400, "invalid_request", "Missing token");
        return MX_DONE;
    }
    au_rv_t *r = mx_palloc(mx_req_pool(req), sizeof(*r));
    if (!r) {
        au_storage_error(req, -ENOMEM, "revoke");
        return MX_DONE;
    }
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->token = token;
    const char *hint = json_string_value(json_object_get(form, "token_type_hint"));
    r->refresh_first = hint && !strcmp(hint, "refresh_token");
    au_client_authenticate(req, form, au_rv_client, r);
    return MX_ASYNC;
}

/* ------------------------------------------------------------- userinfo --- */

static void au_userinfo_found(int status, const au_tokinfo_t *ti, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        au_storage_error(req, status, "userinfo");
        return;
    }
    if (!ti || !ti->active || !ti->user_id) {
        mx_req_set_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        au_oauth_error(req, 401, "invalid_token", NULL);
        return;
    }
    const char *colon = strchr(ti->user_id, ':');
    json_t *b = json_pack("{s:s}", "sub", ti->user_id);
    if (colon && ti->user_id[0] == '@')
        json_object_set_new(b, "username", json_stringn(ti->user_id + 1,
                                                        (size_t)(colon - ti->user_id - 1)));
    au_reply_json_nostore(req, 200, b);
}

static int au_userinfo(mx_req_t *req, void *ud)
{
    (void)ud;
    const char *h = mx_req_header(req, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) {
        mx_req_set_header(req, "WWW-Authenticate", "Bearer");
        au_oauth_error(req, 401, "invalid_token", "Missing bearer token");
        return MX_DONE;
    }
    if (au_token_lookup(mx_req_pool(req), h + 7, false, au_userinfo_found, req) < 0) {
        au_storage_error(req, -ENOMEM, "userinfo");
        return MX_DONE;
    }
    return MX_ASYNC;
}

int au_token_routes(void)
{
    int rc;
    if ((rc = au_route_oauth("POST", "/oauth2/token", au_post_token, true)) < 0 ||
        (rc = au_route_oauth("POST", "/oauth2/revoke", au_post_revoke, true)) < 0 ||
        (rc = au_route_oauth("GET", "/oauth2/userinfo", au_userinfo, true)) < 0 ||
        (rc = au_route_oauth("POST", "/oauth2/userinfo", au_userinfo, false)) < 0)
        return rc;
    return 0;
}
