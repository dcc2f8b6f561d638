/*
 * au_end_session.c: RP-initiated logout (OpenID Connect RP-Initiated
 * Logout 1.0), the discovery document's end_session_endpoint.
 *
 *   GET  /end_session   id_token_hint, client_id, post_logout_redirect_uri,
 *                       state.  A logged-in browser is asked to confirm
 *                       (a form with CSRF), unless the id_token_hint is one
 *                       of ours for the same user; a browser that is not
 *                       logged in goes on at once.
 *   POST /end_session   the confirmation: ends the browser session
 *
 * Only the browser session ends (OAuth sessions stay, as OIDC wants).  The
 * browser then goes to post_logout_redirect_uri only when it is one the
 * client registered (exact match; the client comes from client_id or the
 * id_token_hint's aud); otherwise a "signed out" page is shown.  A URI that
 * is not registered is an error page, never a redirect.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct au_es {
    mx_req_t *req;
    bool post;
    json_t *form;                 /* POST body (pool cleanup) */
    const char *client_id, *redirect, *state, *hint, *hint_sub;
    const au_browser_t *b;
} au_es_t;

static void au_es_json_free(void *p)
{
    json_decref(p);
}

static const char *au_es_param(au_es_t *e, const char *name)
{
    const char *v = e->form ? json_string_value(json_object_get(e->form, name))
                            : mx_req_query(e->req, name);
    return v && *v ? v : NULL;
}

/* The browser is logged out (or was not logged in): where it goes now. */
static void au_es_leave(au_es_t *e)
{
    mx_pool_t *pool = mx_req_pool(e->req);
    if (e->redirect) {
        const char *params[] = { "state", e->state, NULL };
        au_redirect(e->req, e->post ? 303 : 302,
                    au_client_redirect_url(pool, e->redirect, "query", params));
        return;
    }
    json_t *v = json_object();
    au_page_reply(e->req, 200, "end_session", v, NULL);
    json_decref(v);
}

static void au_es_ended(int status, void *ud)
{
    au_es_t *e = ud;
    if (status < 0 && status != -ENOENT) {
        au_page_error(e->req, 500, "err_internal", NULL);
        return;
    }
    au_cookie_clear(e->req);
    au_es_leave(e);
}

static void au_es_end(au_es_t *e)
{
    char h[AU_HASH_HEX];
    au_hash_hex(e->b->sid, h);
    if (au_browser_end(h, NULL, au_es_ended, e) < 0)
        au_page_error(e->req, 500, "err_internal", NULL);
}

static void au_es_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    au_es_t *e = ud;
    mx_pool_t *pool = mx_req_pool(req);
    e->b = b;
    if (!b->user_id) {
        au_es_leave(e);
        return;
    }
    if (e->post || (e->hint_sub && !strcmp(e->hint_sub, b->user_id))) {
        au_es_end(e);
        return;
    }
    json_t *v = json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:s}", "confirm", 1, "user_id",
                          b->user_id, "csrf", au_csrf_token(pool, b->sid), "client_id",
                          e->client_id ? e->client_id : "", "post_logout_redirect_uri",
                          e->redirect ? e->redirect : "", "state", e->state ? e->state : "",
                          "id_token_hint", e->hint ? e->hint : "");
    /* The confirmation's POST ends in a redirect to the client. */
    au_page_reply(req, 200, "end_session", v,
                  e->redirect ? au_redirect_origin(pool, e->redirect) : NULL);
    json_decref(v);
}

static void au_es_client(int status, const au_client_t *c, void *ud)
{
    au_es_t *e = ud;
    if (status < 0) {
        au_page_error(e->req, 500, "err_internal", NULL);
        return;
    }
    bool ok = false;
    size_t i;
    json_t *u;
    if (c)
        json_array_foreach(json_object_get(c->metadata, "post_logout_redirect_uris"), i, u)
            ok |= json_is_string(u) && !strcmp(json_string_value(u), e->redirect);
    if (!ok) {
        au_page_error(e->req, 400, "err_logout_redirect", NULL);
        return;
    }
    au_browser_load(e->req, au_es_browser, e);
}

static int au_es_start(mx_req_t *req, bool post)
{
    mx_pool_t *pool = mx_req_pool(req);
    au_es_t *e = mx_palloc(pool, sizeof(*e));
    if (!e) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    memset(e, 0, sizeof(*e));
    e->req = req;
    e->post = post;
    if (post) {
        size_t len;
        const char *body = mx_req_body(req, &len);
        e->form = au_form_parse(body, len);
        if (!e->form) {
            au_page_error(req, 400, "err_bad_request", NULL);
            return MX_DONE;
        }
        mx_pool_on_free(pool, au_es_json_free, e->form);
        if (!au_csrf_ok(req, e->form)) {
            au_page_error(req, 403, "err_csrf", NULL);
            return MX_DONE;
        }
    }
    e->client_id = au_es_param(e, "client_id");
    e->redirect = au_es_param(e, "post_logout_redirect_uri");
    e->state = au_es_param(e, "state");
    e->hint = au_es_param(e, "id_token_hint");
    if ((e->state && strlen(e->state) > 2048) || (e->hint && strlen(e->hint) > 8192)) {
        au_page_error(req, 400, "err_bad_request", NULL);
        return MX_DONE;
    }
    if (e->hint) {
        /* Ours (signature and issuer); an expired one is fine here. */
        json_t *claims = au_jws_verify(e->hint);
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        const char *aud = json_string_value(json_object_get(claims, "aud"));
        const char *sub = json_string_value(json_object_get(claims, "sub"));
        bool ok = claims && iss && !strcmp(iss, au.issuer) && aud &&
                  (!e->client_id || !strcmp(e->client_id, aud));
        if (ok) {
            e->client_id = mx_pstrdup(pool, aud);
            e->hint_sub = sub ? mx_pstrdup(pool, sub) : NULL;
        }
        json_decref(claims);
        if (!ok) {
            au_page_error(req, 400, "err_id_token_hint", NULL);
            return MX_DONE;
        }
    }
    if (e->redirect) {
        if (!e->client_id) {
            au_page_error(req, 400, "err_logout_redirect", NULL);
            return MX_DONE;
        }
        if (au_client_get(pool, e->client_id, au_es_client, e) < 0) {
            au_page_error(req, 500, "err_internal", NULL);
            return MX_DONE;
        }
        return MX_ASYNC;
    }
    au_browser_load(req, au_es_browser, e);
    return MX_ASYNC;
}

static int au_get_end_session(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_es_start(req, false);
}

static int au_post_end_session(mx_req_t *req, void *ud)
{
    (void)ud;
    return au_es_start(req, true);
}

int au_end_session_routes(void)
{
    int rc;
    if ((rc = mx_route_add("auth", "GET", "/end_session", au_get_end_session, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/end_session", au_post_end_session, NULL,
                           MX_ROUTE_NO_CORS)) < 0)
        return rc;
    return 0;
}
