/*
 * au_upstream.c: logging in through upstream OpenID Connect providers
 * (Keycloak, GitLab, Google...), MAS's `upstream_oauth2` (facts only).
 *
 * Config `auth.upstream_oauth2.providers: [{id, issuer, human_name,
 * client_id, client_secret, token_endpoint_auth_method (client_secret_basic
 * | client_secret_post | none), scope, discovery_mode (oidc | insecure |
 * disabled; with disabled: authorization_endpoint, token_endpoint,
 * jwks_uri), claims_imports: {localpart|displayname|email: {action (ignore
 * | suggest | force | require), template "{{ user.<claim> }}"}}}]`.
 *
 * Round trip: GET /upstream/authorize/{id}[?grant=|next=|link=1] stores a
 * state row (state, nonce and PKCE verifier, bound to the browser session
 * cookie) and redirects to the provider; GET /upstream/callback/{id}
 * checks the state against the row and the cookie, exchanges the code
 * (PKCE), verifies the id_token (JWKS signature, iss, aud, exp, nonce),
 * then signs in the user linked to (provider, sub), or links the signed-in
 * user (link=1), or creates the account from the claims (localpart,
 * displayname) and links it.  Discovery and JWKS go through the core's
 * HTTP client, so the SSRF guard applies (`ip_range_whitelist` opens it).
 *
 * Tables (migration set "auth_upstream"): auth_upstream_states (state
 * sha256 → provider, nonce, verifier, grant/next, linking user, browser
 * session hash; single use, 10 minutes) and auth_upstream_links (ULID,
 * provider, subject, user; unique per provider + subject).
 */
#include "au_upstream.h"
#include "../homeserver/accounts/users_iface.h"
#include "../homeserver/hs_admin_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UP_STATE_TTL_MS (10 * 60 * 1000)

typedef struct up_import {
    const char *action;           /* ignore | suggest | force | require */
    const char *claim;            /* the claim the template names, or NULL */
} up_import_t;

typedef struct up_provider {
    const char *id, *issuer, *name, *client_id, *client_secret, *auth_method, *scope, *mode;
    up_import_t localpart, displayname, email;
    json_t *conf;                 /* the provider's config object (borrowed from au.conf) */
    json_t *meta;                 /* discovery document (owned) or NULL */
    json_t *jwks;                 /* the provider's keys (owned) or NULL */
} up_provider_t;

typedef struct up_state {
    up_provider_t *p;
    int n;
} up_state_t;

static up_state_t *up;            /* hangs off the module state's lifetime (start..fini) */

/* ------------------------------------------------------------- config --- */

/* "{{ user.preferred_username }}" → "preferred_username"; NULL if the
 * template is not one direct claim reference. */
static const char *up_template_claim(json_t *conf, const char *tmpl)
{
    if (!tmpl)
        return NULL;
    const char *s = strstr(tmpl, "{{");
    const char *e = s ? strstr(s, "}}") : NULL;
    if (!e)
        return NULL;
    s += 2;
    while (*s == ' ')
        s++;
    if (strncmp(s, "user.", 5))
        return NULL;
    s += 5;
    size_t n = 0;
    while (s + n < e && s[n] != ' ' && s[n] != '|')
        n++;
    char buf[128];
    if (n == 0 || n >= sizeof(buf))
        return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    /* Kept alive by the config object (a string member we add to it). */
    json_t *keep = json_object_get(conf, "_claims");
    if (!keep) {
        keep = json_object();
        json_object_set_new(conf, "_claims", keep);
    }
    json_object_set_new(keep, tmpl, json_string(buf));
    return json_string_value(json_object_get(keep, tmpl));
}

static const char *up_str(const json_t *o, const char *k, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : dflt;
}

static int up_import_read(json_t *conf, const char *name, const char *dflt_tmpl,
                          up_import_t *im, char *err, size_t errlen)
{
    json_t *o = json_object_get(json_object_get(conf, "claims_imports"), name);
    im->action = up_str(o, "action", !strcmp(name, "localpart") ? "force" : "suggest");
    if (strcmp(im->action, "ignore") && strcmp(im->action, "suggest") &&
        strcmp(im->action, "force") && strcmp(im->action, "require")) {
        snprintf(err, errlen, "auth.upstream_oauth2: claims_imports.%s.action must be ignore, "
                 "suggest, force or require", name);
        return -EINVAL;
    }
    const char *t = up_str(o, "template", dflt_tmpl);
    im->claim = up_template_claim(conf, t);
    if (!im->claim) {
        snprintf(err, errlen, "auth.upstream_oauth2: claims_imports.%s.template must be "
                 "\"{{ user.<claim> }}\"", name);
        return -EINVAL;
    }
    return 0;
}

static int up_config(char *err, size_t errlen)
{
    json_t *list = json_object_get(au.conf->upstream_oauth2, "providers");
    if (!list)
        return 0;
    if (!json_is_array(list)) {
        snprintf(err, errlen, "auth.upstream_oauth2.providers must be a list");
        return -EINVAL;
    }
    up->p = calloc(json_array_size(list) ? json_array_size(list) : 1, sizeof(*up->p));
    if (!up->p)
        return -ENOMEM;
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) {
        up_provider_t *p = &up->p[up->n];
        p->conf = c;
        p->id = up_str(c, "id", NULL);
        p->issuer = up_str(c, "issuer", NULL);
        p->client_id = up_str(c, "client_id", NULL);
        p->client_secret = up_str(c, "client_secret", NULL);
        p->auth_method = up_str(c, "token_endpoint_auth_method",
                                p->client_secret ? "client_secret_basic" : "none");
        p->scope = up_str(c, "scope", "openid profile email");
        p->mode = up_str(c, "discovery_mode", "oidc");
        p->name = up_str(c, "human_name", p->issuer);
        if (!json_is_object(c) || !p->id || !p->issuer || !p->client_id || !*p->id ||
            strspn(p->id, "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghijklmnopqrstuvwxyz_-") !=
                strlen(p->id)) {
            snprintf(err, errlen, "auth.upstream_oauth2.providers[%zu]: id (letters, digits, "
                     "_ and -), issuer and client_id are required", i);
            return -EINVAL;
        }
        if (strcmp(p->auth_method, "none") && strcmp(p->auth_method, "client_secret_basic") &&
            strcmp(p->auth_method, "client_secret_post")) {
            snprintf(err, errlen, "auth.upstream_oauth2.providers[%zu]: token_endpoint_auth_method"
                     " must be none, client_secret_basic or client_secret_post", i);
            return -EINVAL;
        }
        if (strcmp(p->auth_method, "none") && !p->client_secret) {
            snprintf(err, errlen, "auth.upstream_oauth2.providers[%zu]: client_secret missing", i);
            return -EINVAL;
        }
        if (strcmp(p->mode, "oidc") && strcmp(p->mode, "insecure") && strcmp(p->mode, "disabled")) {
            snprintf(err, errlen, "auth.upstream_oauth2.providers[%zu]: discovery_mode must be "
                     "oidc, insecure or disabled", i);
            return -EINVAL;
        }
        int rc;
        if ((rc = up_import_read(c, "localpart", "{{ user.preferred_username }}", &p->localpart,
                                 err, errlen)) < 0 ||
            (rc = up_import_read(c, "displayname", "{{ user.name }}", &p->displayname, err,
                                 errlen)) < 0 ||
            (rc = up_import_read(c, "email", "{{ user.email }}", &p->email, err, errlen)) < 0)
            return rc;
        if (!strcmp(p->mode, "disabled"))
            p->meta = json_pack("{s:s, s:s?, s:s?, s:s?}", "issuer", p->issuer,
                                "authorization_endpoint", up_str(c, "authorization_endpoint", NULL),
                                "token_endpoint", up_str(c, "token_endpoint", NULL), "jwks_uri",
                                up_str(c, "jwks_uri", NULL));
        up->n++;
    }
    return 0;
}

static up_provider_t *up_find(const char *id)
{
    for (int i = 0; up && id && i < up->n; i++)
        if (!strcmp(up->p[i].id, id))
            return &up->p[i];
    return NULL;
}

json_t *au_upstream_buttons(mx_pool_t *pool, const char *grant, const char *next)
{
    json_t *a = json_array();
    const char *q = grant && *grant ? mx_psprintf(pool, "?grant=%s", au_urlencode(pool, grant))
                    : next && *next ? mx_psprintf(pool, "?next=%s", au_urlencode(pool, next))
                                    : "";
    for (int i = 0; up && i < up->n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s}", "name", up->p[i].name, "url",
                                           mx_psprintf(pool, "%supstream/authorize/%s%s", au.base,
                                                       up->p[i].id, q)));
    return a;
}

json_t *au_upstream_providers(void)
{
    json_t *a = json_array();
    for (int i = 0; up && i < up->n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "id", up->p[i].id, "issuer",
                                           up->p[i].issuer, "human_name", up->p[i].name));
    return a;
}

/* ------------------------------------------------------------- fetches --- */

typedef void (*up_ready_fn)(void *ud, const char *error);

typedef struct up_fetch {
    up_provider_t *p;
    up_ready_fn cb;
    void *ud;
} up_fetch_t;

static int up_get_json(const char *url, mx_http_done_fn cb, void *ud)
{
    static const char *const hdrs[] = { "Accept: application/json", NULL };
    mx_http_request_t rq = { .method = "GET", .url = url, .headers = hdrs, .timeout_ms = 10000,
                             .max_response = 1 << 20 };
    return mx_http_fetch(&rq, cb, ud);
}

static json_t *up_resp_json(const mx_http_response_t *r)
{
    if (r->err || r->status != 200 || !r->body)
        return NULL;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static void up_jwks_got(const mx_http_response_t *r, void *ud)
{
    up_fetch_t *f = ud;
    json_t *j = up_resp_json(r);
    if (j && !json_is_array(json_object_get(j, "keys"))) {
        json_decref(j);
        j = NULL;
    }
    if (!j) {
        mx_log(AU_LOG, MX_LOG_WARN, "upstream %s: JWKS fetch failed (%d %s)", f->p->id, r->status,
               r->errmsg ? r->errmsg : "");
        f->cb(f->ud, "upstream_unreachable");
    } else {
        json_decref(f->p->jwks);
        f->p->jwks = j;
        f->cb(f->ud, NULL);
    }
    free(f);
}

static void up_fetch_jwks(up_fetch_t *f)
{
    const char *uri = json_string_value(json_object_get(f->p->meta, "jwks_uri"));
    if (!uri || up_get_json(uri, up_jwks_got, f) < 0) {
        f->cb(f->ud, "upstream_unreachable");
        free(f);
    }
}

static void up_meta_got(const mx_http_response_t *r, void *ud)
{
    up_fetch_t *f = ud;
    json_t *j = up_resp_json(r);
    const char *why = NULL;
    if (!j)
        why = "no discovery document";
    else if (strcmp(f->p->mode, "insecure") &&
             strcmp(up_str(j, "issuer", ""), f->p->issuer))
        why = "issuer of the discovery document differs";
    else if (!json_string_value(json_object_get(j, "authorization_endpoint")) ||
             !json_string_value(json_object_get(j, "token_endpoint")) ||
             !json_string_value(json_object_get(j, "jwks_uri")))
        why = "endpoints missing from the discovery document";
    if (why) {
        mx_log(AU_LOG, MX_LOG_WARN, "upstream %s: %s (%d %s)", f->p->id, why, r->status,
               r->errmsg ? r->errmsg : "");
        json_decref(j);
        f->cb(f->ud, "upstream_unreachable");
        free(f);
        return;
    }
    json_decref(f->p->meta);
    f->p->meta = j;
    up_fetch_jwks(f);
}

/* Makes sure the provider's metadata (and, with `keys`, fresh keys) are
 * there; `cb` runs once, maybe before the call returns. */
static void up_ready(up_provider_t *p, bool keys, up_ready_fn cb, void *ud)
{
    if (p->meta && p->jwks && !keys) {
        cb(ud, NULL);
        return;
    }
    up_fetch_t *f = calloc(1, sizeof(*f));
    if (!f) {
        cb(ud, "err_internal");
        return;
    }
    *f = (up_fetch_t){ p, cb, ud };
    if (p->meta) {
        up_fetch_jwks(f);
        return;
    }
    size_t il = strlen(p->issuer);
    char url[2048];
    int n = snprintf(url, sizeof(url), "%s%s.well-known/openid-configuration", p->issuer,
                     il && p->issuer[il - 1] == '/' ? "" : "/");
    int rc = n > 0 && (size_t)n < sizeof(url) ? up_get_json(url, up_meta_got, f) : -EINVAL;
    if (rc < 0) {
        cb(ud, "upstream_unreachable");
        free(f);
    }
}

/* ----------------------------------------------------------- authorize --- */

typedef struct up_flow {
    mx_req_t *req;
    up_provider_t *p;
    const char *grant, *next, *sid, *link_user;
    const char *state, *nonce, *verifier, *code;
    json_t *claims;               /* verified id_token claims (owned via pool cleanup) */
    const char *sub, *user_id;
    const char *pending;          /* token of the username page's row, or NULL */
    bool skip_displayname;        /* the user unticked the suggested display name */
} up_flow_t;

static void up_json_free(void *p)
{
    json_decref(p);
}

/* The flow of a request to provider {id}, from the request's pool; NULL
 * when the request was answered (unknown provider, no memory). */
static up_flow_t *up_flow_new(mx_req_t *req)
{
    up_flow_t *f = mx_palloc(mx_req_pool(req), sizeof(*f));
    if (!f) {
        au_page_error(req, 500, "err_internal", NULL);
        return NULL;
    }
    memset(f, 0, sizeof(*f));
    f->req = req;
    f->p = up_find(mx_req_param(req, "id"));
    if (!f->p) {
        au_page_error(req, 404, "upstream_unknown", NULL);
        return NULL;
    }
    return f;
}

static char *up_redirect_uri(mx_pool_t *pool, const up_provider_t *p)
{
    return mx_psprintf(pool, "%supstream/callback/%s", au.base, p->id);
}

static void up_state_stored(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    up_flow_t *f = ud;
    mx_pool_t *pool = mx_req_pool(f->req);
    if (status < 0) {
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    unsigned char d[32];
    mx_sha256(f->verifier, strlen(f->verifier), d);
    const char *auth_ep = json_string_value(json_object_get(f->p->meta, "authorization_endpoint"));
    char *url = mx_psprintf(pool,
                            "%s%sresponse_type=code&client_id=%s&redirect_uri=%s&scope=%s"
                            "&state=%s&nonce=%s&code_challenge=%s&code_challenge_method=S256",
                            auth_ep, strchr(auth_ep, '?') ? "&" : "?",
                            au_urlencode(pool, f->p->client_id),
                            au_urlencode(pool, up_redirect_uri(pool, f->p)),
                            au_urlencode(pool, f->p->scope), f->state, f->nonce,
                            au_b64url(pool, d, sizeof(d)));
    au_redirect(f->req, 303, url);
}

static void up_authorize_ready(void *ud, const char *error)
{
    up_flow_t *f = ud;
    if (error) {
        au_page_error(f->req, 502, error, f->p->name);
        return;
    }
    mx_pool_t *pool = mx_req_pool(f->req);
    f->state = au_token_new(pool, NULL, 32);
    f->nonce = au_token_new(pool, NULL, 32);
    f->verifier = au_token_new(pool, NULL, 64);
    char sh[AU_HASH_HEX], bh[AU_HASH_HEX];
    au_hash_hex(f->state, sh);
    au_hash_hex(f->sid, bh);
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    uint64_t now = mx_now_ms();
    mx_sql_add(b, "DELETE FROM auth_upstream_states WHERE expires_ts < ?", "i", (int64_t)now);
    mx_sql_add(b,
               "INSERT INTO auth_upstream_states (state_hash, provider_id, nonce, code_verifier,"
               " grant_id, next, link_user_id, browser_hash, created_ts, expires_ts)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               "ssssssssii", sh, f->p->id, f->nonce, f->verifier, f->grant, f->next,
               f->link_user, bh, (int64_t)now, (int64_t)(now + UP_STATE_TTL_MS));
    if (mx_sql_run(b, up_state_stored, f) < 0)
        au_page_error(f->req, 500, "err_internal", NULL);
}

static void up_authorize_browser(mx_req_t *req, const au_browser_t *b, void *ud)
{
    up_flow_t *f = ud;
    const char *link = mx_req_query(req, "link");
    if (link && !strcmp(link, "1")) {
        if (!b->user_id) {
            au_redirect(req, 303, mx_psprintf(mx_req_pool(req), "%slogin?next=account/", au.base));
            return;
        }
        f->link_user = b->user_id;
    }
    f->sid = au_browser_sid(req, b);
    if (!f->sid) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    up_ready(f->p, false, up_authorize_ready, f);
}

static int up_get_authorize(mx_req_t *req, void *ud)
{
    (void)ud;
    up_flow_t *f = up_flow_new(req);
    if (!f)
        return MX_DONE;
    f->grant = mx_req_query(req, "grant");
    f->next = au_next_ok(mx_req_query(req, "next"));
    au_browser_load(req, up_authorize_browser, f);
    return MX_ASYNC;
}

/* ------------------------------------------------------------ callback --- */

static void up_pending_page(up_flow_t *f, const char *username, const char *err);
static void up_pending_release(up_flow_t *f);

static void up_fail(up_flow_t *f, int status, const char *key, const char *detail)
{
    if (detail)
        mx_log(AU_LOG, MX_LOG_INFO, "upstream %s: login refused: %s", f->p ? f->p->id : "-",
               detail);
    au_page_error(f->req, status, key, detail);
}

static void up_linked_done(int status, mx_sql_res_t *res, void *ud)
{
    up_flow_t *f = ud;
    if (status < 0 || mx_sql_changes(res, 0) != 1) {
        up_fail(f, 409, "upstream_link_taken", NULL);
        return;
    }
    if (f->link_user) {
        au_redirect(f->req, 303, mx_psprintf(mx_req_pool(f->req), "%saccount/", au.base));
        return;
    }
    if (au_browser_login(f->req, f->user_id, f->grant, f->next) < 0)
        au_page_error(f->req, 500, "err_internal", NULL);
}

/* Records the link (provider, sub) → f->user_id. */
static void up_link(up_flow_t *f)
{
    mx_pool_t *pool = mx_req_pool(f->req);
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    mx_sql_add(b,
               "INSERT INTO auth_upstream_links (id, provider_id, subject, user_id, created_ts)"
               " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
               "ssssi", au_ulid(pool), f->p->id, f->sub, f->user_id, (int64_t)mx_now_ms());
    if (mx_sql_run(b, up_linked_done, f) < 0)
        au_page_error(f->req, 500, "err_internal", NULL);
}

static void up_displayname_set(int status, json_t *result, void *ud)
{
    (void)result;
    up_flow_t *f = ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "upstream %s: display name of %s not set (%d)", f->p->id,
               f->user_id, status);
    up_link(f);
}

static void up_user_created(int status, const hs_users_info_t *u, void *ud)
{
    up_flow_t *f = ud;
    if ((status == -EEXIST || status == -EINVAL) && f->pending) {
        /* The username page again, with its row usable once more. */
        up_pending_release(f);
        up_pending_page(f, f->user_id, status == -EEXIST ? "err_username_taken"
                                                         : "err_username_invalid");
        return;
    }
    if (status == -EEXIST) {
        up_fail(f, 409, "upstream_localpart_taken", NULL);
        return;
    }
    if (status == -EINVAL) {
        up_fail(f, 400, "upstream_localpart_invalid", NULL);
        return;
    }
    if (status < 0 || !u) {
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    f->user_id = mx_pstrdup(mx_req_pool(f->req), u->user_id);
    const char *dn = strcmp(f->p->displayname.action, "ignore") && !f->skip_displayname
                     ? json_string_value(json_object_get(f->claims, f->p->displayname.claim))
                     : NULL;
    const hs_admin_iface_t *admin = mx_service_get(HS_ADMIN_SERVICE);
    if (dn && *dn && admin) {
        json_t *body = json_pack("{s:s}", "displayname", dn);
        int rc = admin->upsert_user(f->user_id, body, up_displayname_set, f);
        json_decref(body);
        if (rc >= 0)
            return;
    }
    up_link(f);
}

/* Statement 0 consumed a single-use row, statement 1 read it: true when
 * both happened, else the request is answered. */
static bool up_consumed(up_flow_t *f, int status, mx_sql_res_t *res)
{
    if (status < 0)
        au_page_error(f->req, 500, "err_internal", NULL);
    else if (mx_sql_changes(res, 0) != 1 || mx_sql_nrows(res, 1) != 1)
        up_fail(f, 400, "upstream_state", "unknown, used or expired state");
    else
        return true;
    return false;
}

/* Text column or NULL, from the pool. */
static char *up_col(mx_pool_t *pool, const mx_sql_res_t *res, int col)
{
    return mx_sql_is_null(res, 1, 0, col) ? NULL : mx_pstrdup(pool, mx_sql_text(res, 1, 0, col));
}

/* Creates localpart `lp` (lower-cased here). */
static void up_create_as(up_flow_t *f, const char *lp)
{
    char *l = mx_pstrdup(mx_req_pool(f->req), lp);
    for (char *c = l; c && *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    f->user_id = l;               /* what was asked, for the page on a refusal */
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    int rc = users && l ? users->create(l, NULL, false, up_user_created, f) : -ENOSYS;
    if (rc == -EINVAL)
        up_user_created(-EINVAL, NULL, f);
    else if (rc < 0)
        au_page_error(f->req, 500, "err_internal", NULL);
}

/* ------------------------------------------------- the username page ---
 * localpart action `suggest` (the claim prefilled), `ignore` (the user
 * chooses), `force` without the claim: a page where the user confirms or
 * edits the username (and, for a `suggest`ed display name, whether to take
 * it).  The verified login waits in auth_upstream_pending (single use, 10
 * minutes, bound to the browser's session cookie) keyed by a random token
 * in the form; a taken or invalid name shows the page again. */

static void up_pending_page(up_flow_t *f, const char *username, const char *err)
{
    mx_pool_t *pool = mx_req_pool(f->req);
    const char *dn = !strcmp(f->p->displayname.action, "suggest")
                     ? json_string_value(json_object_get(f->claims, f->p->displayname.claim))
                     : NULL;
    char *csrf = au_csrf_token(pool, f->sid);
    json_t *v = json_pack("{s:s, s:s, s:s, s:s}", "token", f->pending, "csrf", csrf ? csrf : "",
                          "provider", f->p->name ? f->p->name : f->p->id, "username",
                          username ? username : "");
    if (dn && *dn)
        json_object_set_new(v, "displayname", json_string(dn));
    if (err)
        json_object_set_new(v, "error", json_string(au_string(err)));
    au_page_reply(f->req, err ? 400 : 200, "upstream_register", v, NULL);
    json_decref(v);
}

static void up_pending_stored(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    up_flow_t *f = ud;
    if (status < 0) {
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    const char *lp = strcmp(f->p->localpart.action, "ignore")
                     ? json_string_value(json_object_get(f->claims, f->p->localpart.claim))
                     : NULL;
    char *sug = lp ? mx_pstrdup(mx_req_pool(f->req), lp) : NULL;
    for (char *c = sug; c && *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    up_pending_page(f, sug, NULL);
}

static void up_pending_store(up_flow_t *f)
{
    mx_pool_t *pool = mx_req_pool(f->req);
    char *claims = json_dumps(f->claims, JSON_COMPACT);
    f->pending = au_token_new(pool, NULL, 32);
    mx_sql_batch_t *b = claims && f->pending && f->sid ? mx_sql_batch_new(au.db, MX_SQL_WRITE)
                                                       : NULL;
    if (!b) {
        free(claims);
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    char th[AU_HASH_HEX], bh[AU_HASH_HEX];
    au_hash_hex(f->pending, th);
    au_hash_hex(f->sid, bh);
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b, "DELETE FROM auth_upstream_pending WHERE expires_ts < ?", "i", now);
    mx_sql_add(b,
               "INSERT INTO auth_upstream_pending (token_hash, provider_id, subject, claims,"
               " grant_id, next, browser_hash, created_ts, expires_ts)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               "sssssssii", th, f->p->id, f->sub, claims, f->grant, f->next, bh, now,
               now + UP_STATE_TTL_MS);
    free(claims);
    if (mx_sql_run(b, up_pending_stored, f) < 0)
        au_page_error(f->req, 500, "err_internal", NULL);
}

static void up_released(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    (void)ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "upstream: pending login not released (%d)", status);
}

/* Makes the row usable again (after a refused username). */
static void up_pending_release(up_flow_t *f)
{
    char th[AU_HASH_HEX];
    au_hash_hex(f->pending, th);
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b)
        return;
    mx_sql_add(b, "UPDATE auth_upstream_pending SET consumed_ts = NULL WHERE token_hash = ?",
               "s", th);
    mx_sql_run(b, up_released, NULL);
}

static void up_pending_read(int status, mx_sql_res_t *res, void *ud)
{
    up_flow_t *f = ud;
    mx_pool_t *pool = mx_req_pool(f->req);
    if (!up_consumed(f, status, res))
        return;
    f->p = up_find(mx_sql_text(res, 1, 0, 0));
    f->sub = mx_pstrdup(pool, mx_sql_text(res, 1, 0, 1));
    f->claims = json_loads(mx_sql_text(res, 1, 0, 2), 0, NULL);
    if (f->claims)
        mx_pool_on_free(pool, up_json_free, f->claims);
    f->grant = up_col(pool, res, 3);
    f->next = up_col(pool, res, 4);
    if (!f->p || !f->claims) {
        au_page_error(f->req, 400, "upstream_unknown", NULL);
        return;
    }
    if (!f->user_id || !*f->user_id || strlen(f->user_id) > 255) {
        up_pending_release(f);
        up_pending_page(f, f->user_id, "err_username_invalid");
        return;
    }
    up_create_as(f, f->user_id);
}

/* POST /upstream/register: the username page's form. */
static int up_post_register(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *form = au_page_form(req);
    if (!form)
        return MX_DONE;
    up_flow_t *f = mx_palloc(mx_req_pool(req), sizeof(*f));
    if (!f) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    memset(f, 0, sizeof(*f));
    f->req = req;
    f->sid = au_cookie_sid(req);
    f->pending = json_string_value(json_object_get(form, "token"));
    f->user_id = json_string_value(json_object_get(form, "username"));
    const char *imp = json_string_value(json_object_get(form, "import_displayname"));
    f->skip_displayname = !imp || strcmp(imp, "on");
    mx_sql_batch_t *b = f->pending && f->sid ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_page_error(req, f->pending ? 500 : 400, f->pending ? "err_internal" : "upstream_state",
                      NULL);
        return MX_DONE;
    }
    char th[AU_HASH_HEX], bh[AU_HASH_HEX];
    au_hash_hex(f->pending, th);
    au_hash_hex(f->sid, bh);
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b, "UPDATE auth_upstream_pending SET consumed_ts = ? WHERE token_hash = ?"
               " AND consumed_ts IS NULL AND expires_ts > ? AND browser_hash = ?", "isis", now,
               th, now, bh);
    mx_sql_add(b, "SELECT provider_id, subject, claims, grant_id, next"
               " FROM auth_upstream_pending WHERE token_hash = ?", "s", th);
    if (mx_sql_run(b, up_pending_read, f) < 0)
        au_page_error(req, 500, "err_internal", NULL);
    return MX_ASYNC;
}

/* A first login with this subject: create the account from the claims
 * (force / require), or ask (suggest, ignore, force without the claim). */
static void up_create(up_flow_t *f)
{
    const up_import_t *im = &f->p->localpart;
    const char *lp = strcmp(im->action, "ignore")
                     ? json_string_value(json_object_get(f->claims, im->claim))
                     : NULL;
    bool have = lp && *lp;
    if (!have && !strcmp(im->action, "require")) {
        up_fail(f, 400, "upstream_no_localpart", "the provider sent no localpart claim");
        return;
    }
    if (!have || !strcmp(im->action, "suggest")) {
        up_pending_store(f);
        return;
    }
    up_create_as(f, lp);
}

static void up_link_read(int status, mx_sql_res_t *res, void *ud)
{
    up_flow_t *f = ud;
    if (status < 0) {
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_nrows(res, 0) == 1) {
        const char *uid = mx_sql_text(res, 0, 0, 0);
        if (f->link_user && strcmp(f->link_user, uid)) {
            up_fail(f, 409, "upstream_link_taken", NULL);
            return;
        }
        if (f->link_user) {
            au_redirect(f->req, 303, mx_psprintf(mx_req_pool(f->req), "%saccount/", au.base));
            return;
        }
        if (au_browser_login(f->req, uid, f->grant, f->next) < 0)
            au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    if (f->link_user) {
        f->user_id = f->link_user;
        up_link(f);
        return;
    }
    up_create(f);
}

/* Claims of a verified id_token: iss, aud, exp, nonce, sub. */
static const char *up_claims_check(up_flow_t *f, const json_t *c)
{
    const char *iss = json_string_value(json_object_get(c, "iss"));
    if (!iss || strcmp(iss, f->p->issuer))
        return "id_token issuer differs";
    json_t *aud = json_object_get(c, "aud");
    bool aud_ok = json_is_string(aud) && !strcmp(json_string_value(aud), f->p->client_id);
    size_t i;
    json_t *a;
    json_array_foreach(aud, i, a) {
        if (json_is_string(a) && !strcmp(json_string_value(a), f->p->client_id))
            aud_ok = true;
    }
    if (!aud_ok)
        return "id_token audience differs";
    json_t *exp = json_object_get(c, "exp");
    if (!json_is_number(exp) || json_number_value(exp) * 1000.0 < (double)mx_now_ms())
        return "id_token expired";
    const char *nonce = json_string_value(json_object_get(c, "nonce"));
    if (!nonce || strlen(nonce) != strlen(f->nonce) ||
        !mx_ct_equal(nonce, f->nonce, strlen(nonce)))
        return "id_token nonce differs";
    const char *sub = json_string_value(json_object_get(c, "sub"));
    if (!sub || !*sub)
        return "id_token without sub";
    f->sub = sub;
    return NULL;
}

static void up_verify(up_flow_t *f, const char *id_token, bool refetched);

static void up_keys_again(void *ud, const char *error)
{
    up_flow_t *f = ud;
    if (error) {
        up_fail(f, 502, error, NULL);
        return;
    }
    up_verify(f, json_string_value(json_object_get(f->claims, "id_token")), true);
}

static void up_verify(up_flow_t *f, const char *id_token, bool refetched)
{
    const char *why = NULL;
    json_t *c = au_up_jwt_verify(id_token, f->p->jwks, &why);
    if (!c && !refetched && f->p->jwks && id_token) {
        /* The provider may have rotated its keys: fetch them once more. */
        f->claims = json_pack("{s:s}", "id_token", id_token);
        mx_pool_on_free(mx_req_pool(f->req), up_json_free, f->claims);
        up_ready(f->p, true, up_keys_again, f);
        return;
    }
    if (!c) {
        up_fail(f, 400, "upstream_refused", why);
        return;
    }
    mx_pool_on_free(mx_req_pool(f->req), up_json_free, c);
    f->claims = c;
    if ((why = up_claims_check(f, c))) {
        up_fail(f, 400, "upstream_refused", why);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        au_page_error(f->req, 500, "err_internal", NULL);
        return;
    }
    mx_sql_add(b, "SELECT user_id FROM auth_upstream_links WHERE provider_id = ? AND subject = ?",
               "ss", f->p->id, f->sub);
    if (mx_sql_run(b, up_link_read, f) < 0)
        au_page_error(f->req, 500, "err_internal", NULL);
}

static void up_token_got(const mx_http_response_t *r, void *ud)
{
    up_flow_t *f = ud;
    json_t *j = r->err || !r->body ? NULL : json_loadb(r->body, r->body_len, 0, NULL);
    const char *id_token = json_string_value(json_object_get(j, "id_token"));
    if (r->err || r->status != 200 || !id_token) {
        const char *e = json_string_value(json_object_get(j, "error"));
        mx_log(AU_LOG, MX_LOG_WARN, "upstream %s: code exchange failed (%d %s %s)", f->p->id,
               r->status, r->errmsg ? r->errmsg : "", e ? e : "");
        json_decref(j);
        up_fail(f, 502, "upstream_refused", "the provider refused the code");
        return;
    }
    char *tok = mx_pstrdup(mx_req_pool(f->req), id_token);
    json_decref(j);
    up_verify(f, tok, false);
}

static void up_exchange(void *ud, const char *error)
{
    up_flow_t *f = ud;
    if (error) {
        up_fail(f, 502, error, NULL);
        return;
    }
    mx_pool_t *pool = mx_req_pool(f->req);
    const char *body = mx_psprintf(pool, "grant_type=authorization_code&code=%s&redirect_uri=%s"
                                   "&code_verifier=%s",
                                   au_urlencode(pool, f->code),
                                   au_urlencode(pool, up_redirect_uri(pool, f->p)), f->verifier);
    const char *hdrs[4] = { "Content-Type: application/x-www-form-urlencoded",
                            "Accept: application/json", NULL, NULL };
    if (!strcmp(f->p->auth_method, "client_secret_basic")) {
        /* RFC 6749 2.3.1: the form-encoded ID and secret, base64 of "id:secret". */
        const char *cred = mx_psprintf(pool, "%s:%s", au_urlencode(pool, f->p->client_id),
                                       au_urlencode(pool, f->p->client_secret));
        char *b64 = mx_b64_encode(cred, strlen(cred), 0);
        size_t bl = b64 ? strlen(b64) : 0;   /* the core's base64 is unpadded */
        hdrs[2] = b64 ? mx_psprintf(pool, "Authorization: Basic %s%s", b64,
                                    &"=="[(4 - bl % 4) % 4 == 0 ? 2 : 2 - (4 - bl % 4) % 4])
                      : NULL;
        free(b64);
    } else if (!strcmp(f->p->auth_method, "client_secret_post")) {
        body = mx_psprintf(pool, "%s&client_id=%s&client_secret=%s", body,
                           au_urlencode(pool, f->p->client_id),
                           au_urlencode(pool, f->p->client_secret));
    } else {
        body = mx_psprintf(pool, "%s&client_id=%s", body, au_urlencode(pool, f->p->client_id));
    }
    mx_http_request_t rq = {
        .method = "POST",
        .url = json_string_value(json_object_get(f->p->meta, "token_endpoint")),
        .headers = hdrs,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = 10000,
        .max_response = 1 << 20,
    };
    if (!rq.url || mx_http_fetch(&rq, up_token_got, f) < 0)
        up_fail(f, 502, "upstream_unreachable", NULL);
}

static void up_state_read(int status, mx_sql_res_t *res, void *ud)
{
    up_flow_t *f = ud;
    mx_pool_t *pool = mx_req_pool(f->req);
    if (!up_consumed(f, status, res))
        return;
    const char *prov = mx_sql_text(res, 1, 0, 0);
    const char *bh = mx_sql_text(res, 1, 0, 6);
    char mine[AU_HASH_HEX];
    au_hash_hex(f->sid ? f->sid : "", mine);
    if (strcmp(prov, f->p->id) || !f->sid || !bh || strlen(bh) != AU_HASH_HEX - 1 ||
        !mx_ct_equal(bh, mine, AU_HASH_HEX - 1)) {
        up_fail(f, 400, "upstream_state", "state of another provider or browser");
        return;
    }
    f->nonce = mx_pstrdup(pool, mx_sql_text(res, 1, 0, 1));
    f->verifier = mx_pstrdup(pool, mx_sql_text(res, 1, 0, 2));
    f->grant = up_col(pool, res, 3);
    f->next = up_col(pool, res, 4);
    f->link_user = up_col(pool, res, 5);
    const char *err = mx_req_query(f->req, "error");
    if (err) {
        up_fail(f, 400, "upstream_refused", mx_psprintf(pool, "provider error: %s", err));
        return;
    }
    if (!f->code || !*f->code) {
        up_fail(f, 400, "upstream_refused", "no code");
        return;
    }
    up_ready(f->p, false, up_exchange, f);
}

static int up_get_callback(mx_req_t *req, void *ud)
{
    (void)ud;
    up_flow_t *f = up_flow_new(req);
    if (!f)
        return MX_DONE;
    const char *state = mx_req_query(req, "state");
    f->code = mx_req_query(req, "code");
    f->sid = au_cookie_sid(req);
    if (!state || !*state) {
        up_fail(f, 400, "upstream_state", "no state");
        return MX_DONE;
    }
    char sh[AU_HASH_HEX];
    au_hash_hex(state, sh);
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    /* Consumed only by the browser that started it (the session cookie). */
    char bh[AU_HASH_HEX];
    au_hash_hex(f->sid ? f->sid : "", bh);
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b, "UPDATE auth_upstream_states SET consumed_ts = ? WHERE state_hash = ?"
               " AND consumed_ts IS NULL AND expires_ts > ? AND browser_hash = ?", "isis", now,
               sh, now, bh);
    mx_sql_add(b, "SELECT provider_id, nonce, code_verifier, grant_id, next, link_user_id,"
               " browser_hash FROM auth_upstream_states WHERE state_hash = ?", "s", sh);
    if (mx_sql_run(b, up_state_read, f) < 0)
        au_page_error(req, 500, "err_internal", NULL);
    return MX_ASYNC;
}

/* -------------------------------------------------------------- schema --- */

static const char up_v1[] =
    "CREATE TABLE auth_upstream_states ("
    " state_hash TEXT PRIMARY KEY,"
    " provider_id TEXT NOT NULL,"
    " nonce TEXT NOT NULL,"
    " code_verifier TEXT NOT NULL,"
    " grant_id TEXT,"
    " next TEXT,"
    " link_user_id TEXT,"
    " browser_hash TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " expires_ts BIGINT NOT NULL,"
    " consumed_ts BIGINT);\n"
    "CREATE TABLE auth_upstream_links ("
    " id TEXT PRIMARY KEY,"
    " provider_id TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " user_id TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " UNIQUE (provider_id, subject));\n"
    "CREATE INDEX auth_upstream_links_user ON auth_upstream_links (user_id);\n";

/* Verified logins waiting on the username page (single use, 10 minutes). */
static const char up_v2[] =
    "CREATE TABLE auth_upstream_pending ("
    " token_hash TEXT PRIMARY KEY,"
    " provider_id TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " claims TEXT NOT NULL,"
    " grant_id TEXT,"
    " next TEXT,"
    " browser_hash TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " expires_ts BIGINT NOT NULL,"
    " consumed_ts BIGINT);\n";

static const mx_migration_t up_migrations[] = {
    { 1, up_v1, NULL, NULL },
    { 2, up_v2, NULL, NULL },
};

/* ------------------------------------------------------------ lifecycle --- */

int au_upstream_start(char *err, size_t errlen)
{
    up = calloc(1, sizeof(*up));
    if (!up)
        return -ENOMEM;
    int rc = up_config(err, errlen);
    if (rc < 0)
        return rc;
    rc = mx_db_migrate(au.db, "auth_upstream", up_migrations,
                       sizeof(up_migrations) / sizeof(up_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "auth: migration of the auth_upstream tables failed (%d)", rc);
        return rc;
    }
    if ((rc = mx_route_add("auth", "GET", "/upstream/authorize/{id}", up_get_authorize, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "GET", "/upstream/callback/{id}", up_get_callback, NULL,
                           MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("auth", "POST", "/upstream/register", up_post_register, NULL,
                           MX_ROUTE_NO_CORS)) < 0) {
        snprintf(err, errlen, "auth: upstream routes (%d)", rc);
        return rc;
    }
    if ((rc = au_upstream_admin_routes()) < 0) {
        snprintf(err, errlen, "auth: upstream admin API routes (%d)", rc);
        return rc;
    }
    return 0;
}

void au_upstream_fini(void)
{
    for (int i = 0; up && i < up->n; i++) {
        json_decref(up->p[i].meta);
        json_decref(up->p[i].jwks);
    }
    if (up)
        free(up->p);
    free(up);
    up = NULL;
}
