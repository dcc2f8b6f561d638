/*
 * au_clients.c: OAuth clients.
 *
 *   POST /oauth2/registration   dynamic client registration (RFC 7591)
 *                               with the Matrix rules of MSC2966 / spec
 *                               v1.15: client_uri required (https, or http
 *                               on a loopback host); logo/tos/policy URIs on
 *                               client_uri's host or a subdomain; redirect
 *                               URIs: https on that host, http on a loopback
 *                               host, or (native apps) a private-use scheme
 *                               that is client_uri's host reversed, without
 *                               authority; never a fragment.
 * plus the lookups other files need: a client by ID, the authentication of
 * a client at the token/revocation/introspection endpoints
 * (client_secret_basic, client_secret_post, none), and redirect URI
 * matching (exact; a native app's loopback URI registered without a port
 * matches any port, RFC 8252 §7.3).
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ----------------------------------------------------------- metadata --- */

static bool au_in(const char *s, const char *const *set)
{
    for (; s && *set; set++)
        if (!strcmp(s, *set))
            return true;
    return false;
}

/* client_uri and its siblings: https, or http on a loopback host; no
 * userinfo or fragment.  `within` (may be NULL): the host must be it or a
 * subdomain of it. */
static bool au_web_uri_ok(mx_pool_t *pool, const char *s, const char *within, au_url_t *out)
{
    au_url_t u;
    if (au_url_parse(pool, s, &u) < 0 || !u.has_authority || !u.host || u.userinfo ||
        u.has_fragment)
        return false;
    if (strcmp(u.scheme, "https") != 0 &&
        !(strcmp(u.scheme, "http") == 0 && au_host_is_loopback(u.host)))
        return false;
    if (within && !au_host_within(u.host, within))
        return false;
    if (out)
        *out = u;
    return true;
}

/* "com.example.app" -> "app.example.com" (pool). */
static char *au_reverse_dns(mx_pool_t *pool, const char *scheme)
{
    size_t n = strlen(scheme);
    char *out = mx_palloc(pool, n + 1), *o = out;
    if (!out)
        return NULL;
    const char *end = scheme + n;
    while (end > scheme) {
        const char *dot = end;
        while (dot > scheme && dot[-1] != '.')
            dot--;
        memcpy(o, dot, (size_t)(end - dot));
        o += end - dot;
        if (dot > scheme)
            *o++ = '.';
        end = dot > scheme ? dot - 1 : scheme;
    }
    *o = '\0';
    return out;
}

static bool au_redirect_uri_ok(mx_pool_t *pool, const char *s, bool native,
                               const char *client_host)
{
    au_url_t u;
    if (au_url_parse(pool, s, &u) < 0 || u.has_fragment)
        return false;
    if (!strcmp(u.scheme, "https"))
        return u.has_authority && u.host && !u.userinfo && au_host_within(u.host, client_host);
    if (!strcmp(u.scheme, "http"))
        return u.has_authority && !u.userinfo && au_host_is_loopback(u.host);
    if (!native || u.has_authority || !strchr(u.scheme, '.'))
        return false;
    /* Private-use scheme: the reverse of client_uri's host or of a parent
     * domain of it, e.g. com.example.app:/callback for app.example.com. */
    char *dom = au_reverse_dns(pool, u.scheme);
    return dom && strchr(dom, '.') && au_host_within(client_host, dom);
}

const char *au_client_metadata_check(mx_pool_t *pool, json_t *md, const char **desc)
{
    static const char *const app_types[] = { "web", "native", NULL };
    static const char *const methods[] = { "none", "client_secret_basic", "client_secret_post",
                                           NULL };
    static const char *const grants[] = { "authorization_code", "refresh_token",
                                          "client_credentials", AU_GRANT_DEVICE_CODE, NULL };
    static const char *const uri_keys[] = { "logo_uri", "tos_uri", "policy_uri", NULL };
    *desc = NULL;
    if (!json_is_object(md)) {
        *desc = "The body must be a JSON object";
        return "invalid_client_metadata";
    }
    json_t *v = json_object_get(md, "application_type");
    const char *app = v ? json_string_value(v) : "web";
    if (!au_in(app, app_types)) {
        *desc = "application_type must be web or native";
        return "invalid_client_metadata";
    }
    v = json_object_get(md, "token_endpoint_auth_method");
    const char *method = v ? json_string_value(v) : "client_secret_basic";
    if (!au_in(method, methods)) {
        *desc = "Unsupported token_endpoint_auth_method";
        return "invalid_client_metadata";
    }
    json_t *gt = json_object_get(md, "grant_types");
    json_t *grant_list = gt ? json_incref(gt) : json_pack("[s]", "authorization_code");
    json_t *rt = json_object_get(md, "response_types");
    json_t *resp_list = rt ? json_incref(rt) : json_pack("[s]", "code");
    const char *err = NULL;
    size_t i;
    json_t *e;
    bool has_code = false, has_cc = false;
    if (!json_is_array(grant_list) || !json_array_size(grant_list)) {
        err = "invalid_client_metadata";
        *desc = "grant_types must be a non-empty list";
    }
    json_array_foreach(grant_list, i, e) {
        if (err)
            break;
        const char *g = json_string_value(e);
        if (!au_in(g, grants)) {
            err = "invalid_client_metadata";
            *desc = mx_psprintf(pool, "Unsupported grant type %s", g ? g : "(not a string)");
        }
        has_code |= g && !strcmp(g, "authorization_code");
        has_cc |= g && !strcmp(g, "client_credentials");
    }
    if (!err && !json_is_array(resp_list)) {
        err = "invalid_client_metadata";
        *desc = "response_types must be a list";
    }
    json_array_foreach(resp_list, i, e) {
        if (err)
            break;
        if (!json_is_string(e) || strcmp(json_string_value(e), "code")) {
            err = "invalid_client_metadata";
            *desc = "Only the response type code is supported";
        }
    }
    if (!err && has_cc && !strcmp(method, "none")) {
        err = "invalid_client_metadata";
        *desc = "client_credentials needs a confidential client";
    }
    /* client_uri: required (MSC2966), and the anchor of every other URI. */
    au_url_t cu;
    const char *client_uri = json_string_value(json_object_get(md, "client_uri"));
    if (!err && !client_uri) {
        err = "invalid_client_metadata";
        *desc = "client_uri is required";
    } else if (!err && !au_web_uri_ok(pool, client_uri, NULL, &cu)) {
        err = "invalid_client_metadata";
        *desc = "client_uri must be an https URL (or http on localhost)";
    }
    /* logo_uri, tos_uri, policy_uri and their #lang variants. */
    const char *key;
    json_object_foreach(md, key, e) {
        if (err)
            break;
        for (const char *const *k = uri_keys; *k; k++) {
            size_t kl = strlen(*k);
            if (strncmp(key, *k, kl) || (key[kl] && key[kl] != '#'))
                continue;
            if (!json_is_string(e) || !au_web_uri_ok(pool, json_string_value(e), cu.host, NULL)) {
                err = "invalid_client_metadata";
                *desc = mx_psprintf(pool, "%s must be https on the host of client_uri", key);
            }
        }
        if (!strncmp(key, "client_uri#", 11) &&
            (!json_is_string(e) || !au_web_uri_ok(pool, json_string_value(e), cu.host, NULL))) {
            err = "invalid_client_metadata";
            *desc = mx_psprintf(pool, "%s must be on the host of client_uri", key);
        }
        if (!strncmp(key, "client_name", 11) && (key[11] == '\0' || key[11] == '#') &&
            !json_is_string(e)) {
            err = "invalid_client_metadata";
            *desc = "client_name must be a string";
        }
    }
    json_t *ru = json_object_get(md, "redirect_uris");
    if (!err && has_code && (!json_is_array(ru) || !json_array_size(ru))) {
        err = "invalid_redirect_uri";
        *desc = "redirect_uris is required for the authorization code grant";
    }
    if (!err && ru && !json_is_array(ru)) {
        err = "invalid_redirect_uri";
        *desc = "redirect_uris must be a list";
    }
    json_array_foreach(ru, i, e) {
        if (err)
            break;
        if (!json_is_string(e) ||
            !au_redirect_uri_ok(pool, json_string_value(e), !strcmp(app, "native"), cu.host)) {
            err = "invalid_redirect_uri";
            *desc = mx_psprintf(pool, "Redirect URI %s is not allowed for this client",
                                json_is_string(e) ? json_string_value(e) : "(not a string)");
        }
    }
    if (!err) {
        /* Store the effective values (defaults filled in). */
        json_object_set_new(md, "application_type", json_string(app));
        json_object_set_new(md, "token_endpoint_auth_method", json_string(method));
        json_object_set(md, "grant_types", grant_list);
        json_object_set(md, "response_types", resp_list);
        if (!ru)
            json_object_set_new(md, "redirect_uris", json_array());
    }
    json_decref(grant_list);
    json_decref(resp_list);
    return err;
}

/* ------------------------------------------------------- registration --- */

typedef struct au_reg {
    mx_req_t *req;
    json_t *resp;
} au_reg_t;

static void au_reg_json_free(void *p)
{
    json_decref(p);
}

static void au_reg_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_reg_t *r = ud;
    if (status < 0) {
        au_storage_error(r->req, status, "client registration");
        return;
    }
    au_reply_json_nostore(r->req, 201, json_incref(r->resp));
}

/* Keeps the metadata keys clients may register (RFC 7591 §2 and the OIDC
 * registration names Matrix clients send), dropping anything else. */
static json_t *au_reg_filter(const json_t *in)
{
    static const char *const keep[] = {
        "redirect_uris", "token_endpoint_auth_method", "grant_types", "response_types",
        "client_name", "client_uri", "logo_uri", "scope", "contacts", "tos_uri", "policy_uri",
        "software_id", "software_version", "application_type", "id_token_signed_response_alg",
        "post_logout_redirect_uris", NULL,
    };
    json_t *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)in, key, v) {
        for (const char *const *k = keep; *k; k++) {
            size_t kl = strlen(*k);
            if (!strncmp(key, *k, kl) && (key[kl] == '\0' || key[kl] == '#'))
                json_object_set(out, key, v);
        }
    }
    return out;
}

static int au_post_registration(mx_req_t *req, void *ud)
{
    (void)ud;
    mx_pool_t *pool = mx_req_pool(req);
    size_t len;
    const char *body = mx_req_body(req, &len);
    json_error_t jerr;
    json_t *in = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *md = json_is_object(in) ? au_reg_filter(in) : NULL;
    json_decref(in);
    if (!md) {
        au_oauth_error(req, 400, "invalid_client_metadata", "The body must be a JSON object");
        return MX_DONE;
    }
    mx_pool_on_free(pool, au_reg_json_free, md);
    const char *desc;
    const char *err = au_client_metadata_check(pool, md, &desc);
    if (err) {
        au_oauth_error(req, 400, err, desc);
        return MX_DONE;
    }
    const char *alg = json_string_value(json_object_get(md, "id_token_signed_response_alg"));
    if (alg && strcmp(alg, "RS256") && strcmp(alg, "ES256")) {
        au_oauth_error(req, 400, "invalid_client_metadata",
                       "id_token_signed_response_alg must be RS256 or ES256");
        return MX_DONE;
    }
    au_reg_t *r = mx_palloc(pool, sizeof(*r));
    char *client_id = au_ulid(pool);
    if (!r || !client_id) {
        au_storage_error(req, -ENOMEM, "client registration");
        return MX_DONE;
    }
    r->req = req;
    bool confidential =
        strcmp(json_string_value(json_object_get(md, "token_endpoint_auth_method")), "none");
    char hash[AU_HASH_HEX] = "";
    r->resp = json_deep_copy(md);
    mx_pool_on_free(pool, au_reg_json_free, r->resp);
    uint64_t now = mx_now_ms();
    json_object_set_new(r->resp, "client_id", json_string(client_id));
    json_object_set_new(r->resp, "client_id_issued_at", json_integer((json_int_t)(now / 1000)));
    if (confidential) {
        char *secret = au_token_new(pool, NULL, 48);
        if (!secret) {
            au_storage_error(req, -ENOMEM, "client registration");
            return MX_DONE;
        }
        au_hash_hex(secret, hash);
        json_object_set_new(r->resp, "client_secret", json_string(secret));
        json_object_set_new(r->resp, "client_secret_expires_at", json_integer(0));
    }
    char *text = json_dumps(md, JSON_COMPACT);
    mx_sql_batch_t *b = text ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(text);
        au_storage_error(req, -ENOMEM, "client registration");
        return MX_DONE;
    }
    mx_sql_add(b, "INSERT INTO auth_clients (client_id, secret_hash, metadata, created_ts)"
                  " VALUES (?, ?, ?, ?)",
               "sssi", client_id, confidential ? hash : NULL, text, (int64_t)now);
    free(text);
    int rc = mx_sql_run(b, au_reg_written, r);
    if (rc < 0) {
        au_storage_error(req, rc, "client registration");
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* ------------------------------------------------------------- lookup --- */

typedef struct au_cq {
    mx_pool_t *pool;
    au_client_fn cb;
    void *ud;
} au_cq_t;

static void au_client_read(int status, mx_sql_res_t *res, void *ud)
{
    au_cq_t *q = ud;
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        q->cb(status < 0 ? status : 0, NULL, q->ud);
        return;
    }
    au_client_t *c = mx_palloc(q->pool, sizeof(*c));
    const char *text = mx_sql_text(res, 0, 0, 2);
    json_t *md = text ? json_loads(text, 0, NULL) : NULL;
    if (!c || !json_is_object(md)) {
        json_decref(md);
        q->cb(-EIO, NULL, q->ud);
        return;
    }
    mx_pool_on_free(q->pool, au_reg_json_free, md);
    c->client_id = mx_pstrdup(q->pool, mx_sql_text(res, 0, 0, 0));
    c->secret_hash = mx_sql_is_null(res, 0, 0, 1) ? NULL
                                                    : mx_pstrdup(q->pool, mx_sql_text(res, 0, 0, 1));
    c->metadata = md;
    c->auth_method = json_string_value(json_object_get(md, "token_endpoint_auth_method"));
    c->application_type = json_string_value(json_object_get(md, "application_type"));
    if (!c->auth_method)
        c->auth_method = "none";
    if (!c->application_type)
        c->application_type = "web";
    q->cb(0, c, q->ud);
}

int au_client_get(mx_pool_t *pool, const char *client_id, au_client_fn cb, void *ud)
{
    if (!client_id || !cb)
        return -EINVAL;
    au_cq_t *q = mx_palloc(pool, sizeof(*q));
    mx_sql_batch_t *b = q ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b)
        return -ENOMEM;
    q->pool = pool;
    q->cb = cb;
    q->ud = ud;
    mx_sql_add(b, "SELECT client_id, secret_hash, metadata FROM auth_clients WHERE client_id = ?",
               "s", client_id);
    return mx_sql_run(b, au_client_read, q);
}

bool au_client_has_grant(const au_client_t *c, const char *grant)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(c->metadata, "grant_types"), i, e)
        if (json_is_string(e) && !strcmp(json_string_value(e), grant))
            return true;
    return false;
}

bool au_client_redirect_ok(mx_pool_t *pool, const au_client_t *c, const char *uri)
{
    size_t i;
    json_t *e;
    if (!uri)
        return false;
    bool native = !strcmp(c->application_type, "native");
    json_array_foreach(json_object_get(c->metadata, "redirect_uris"), i, e) {
        const char *reg = json_string_value(e);
        if (!reg)
            continue;
        if (!strcmp(reg, uri))
            return true;
        au_url_t a, b;
        if (!native || au_url_parse(pool, reg, &a) < 0 || au_url_parse(pool, uri, &b) < 0)
            continue;
        if (!strcmp(a.scheme, "http") && !strcmp(b.scheme, "http") && a.port < 0 &&
            au_host_is_loopback(a.host) && a.host && b.host && !strcmp(a.host, b.host) &&
            !b.userinfo && !b.has_fragment && !strcmp(a.path, b.path) &&
            ((!a.query && !b.query) || (a.query && b.query && !strcmp(a.query, b.query))))
            return true;
    }
    return false;
}

/* ----------------------------------------------------- authentication --- */

typedef struct au_ca {
    mx_req_t *req;
    au_client_req_fn cb;
    void *ud;
    const char *secret;           /* presented secret, or NULL */
} au_ca_t;

static void au_client_auth_loaded(int status, const au_client_t *c, void *ud)
{
    au_ca_t *a = ud;
    if (status < 0) {
        au_storage_error(a->req, status, "client lookup");
        return;
    }
    if (!c) {
        au_oauth_error(a->req, 401, "invalid_client", "Unknown client");
        return;
    }
    if (strcmp(c->auth_method, "none") != 0) {
        char h[AU_HASH_HEX];
        if (!a->secret || !c->secret_hash) {
            au_oauth_error(a->req, 401, "invalid_client", "Client authentication required");
            return;
        }
        au_hash_hex(a->secret, h);
        if (strlen(c->secret_hash) != 64 || !mx_ct_equal(h, c->secret_hash, 64)) {
            au_oauth_error(a->req, 401, "invalid_client", "Client authentication failed");
            return;
        }
    }
    a->cb(a->req, c, a->ud);
}

/* "Basic base64(urlenc(id):urlenc(secret))" (RFC 6749 §2.3.1). */
static bool au_basic_credentials(mx_pool_t *pool, const char *hdr, const char **id,
                                 const char **secret)
{
    if (!hdr || strncasecmp(hdr, "Basic ", 6) != 0)
        return false;
    unsigned char *raw = NULL;
    size_t n = 0;
    const char *b = hdr + 6;
    while (*b == ' ')
        b++;
    if (mx_b64_decode(b, strlen(b), &raw, &n) < 0 || !raw)
        return false;
    char *s = mx_palloc(pool, n + 1);
    if (s) {
        memcpy(s, raw, n);
        s[n] = '\0';
    }
    free(raw);
    char *colon = s && strlen(s) == n ? strchr(s, ':') : NULL;
    if (!colon)
        return false;
    *colon = '\0';
    const char *k1 = au_pct_decode(pool, s), *k2 = au_pct_decode(pool, colon + 1);
    *id = k1;
    *secret = k2 ? k2 : "";
    return k1 != NULL && *k1;
}

void au_client_authenticate(mx_req_t *req, const json_t *form, au_client_req_fn cb, void *ud)
{
    mx_pool_t *pool = mx_req_pool(req);
    const char *id = NULL, *secret = NULL;
    const char *hdr = mx_req_header(req, "Authorization");
    const char *fid = json_string_value(json_object_get(form, "client_id"));
    if (hdr && !strncasecmp(hdr, "Basic ", 6)) {
        if (!au_basic_credentials(pool, hdr, &id, &secret) || (fid && strcmp(fid, id))) {
            au_oauth_error(req, 401, "invalid_client", "Bad client credentials");
            return;
        }
    } else {
        id = fid;
        secret = json_string_value(json_object_get(form, "client_secret"));
    }
    if (!id) {
        au_oauth_error(req, 401, "invalid_client", "Missing client_id");
        return;
    }
    au_ca_t *a = mx_palloc(pool, sizeof(*a));
    if (!a) {
        au_storage_error(req, -ENOMEM, "client auth");
        return;
    }
    a->req = req;
    a->cb = cb;
    a->ud = ud;
    a->secret = secret;
    int rc = au_client_get(pool, id, au_client_auth_loaded, a);
    if (rc < 0)
        au_storage_error(req, rc, "client lookup");
}

int au_clients_routes(void)
{
    return au_route_oauth("POST", "/oauth2/registration", au_post_registration, true);
}
