/*
 * acc_mas.c: delegated authentication when the auth module runs in another
 * process (the split deployment), configured with Synapse's keys:
 *
 *   matrix_authentication_service: {enabled, endpoint, secret | secret_path}
 *       introspection at <endpoint>oauth2/introspect with the shared secret
 *       as Bearer (Synapse's MAS integration)
 *   experimental_features: {msc3861: {enabled, issuer, client_id,
 *       client_auth_method: client_secret_basic | client_secret_post,
 *       client_secret | client_secret_path, introspection_endpoint,
 *       account_management_url, admin_token}}
 *       introspection with the client's credentials (RFC 7662); the
 *       endpoint defaults to <issuer>oauth2/introspect
 *
 * plus `introspection_cache_ttl` / `introspection_negative_cache_ttl` (ms,
 * in either section; default 60 s / 10 s).  This file then provides
 * `auth.token`: a token is checked by introspection over HTTP, the answer
 * cached (hash of the token → user, device, scope) for the TTL and never
 * past the token's expiry, and the user and device are created here on
 * first use.  It also says whether the legacy endpoints are delegated
 * (acc_delegated): in this mode, or when the auth module in this process
 * registered `auth.compat`.
 */
#include "acc_int.h"
#include "users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACC_MAS_CACHE_MAX 20000

typedef struct acc_mas_ent {
    int status;                 /* 0 valid, or the negative answer */
    hs_token_info_t info;
    uint64_t until_ms;
} acc_mas_ent_t;

typedef struct acc_mas {
    char *url;                  /* introspection endpoint */
    char *auth_header;          /* "Authorization: ..." or NULL (client_secret_post) */
    char *post_creds;           /* "&client_id=..&client_secret=.." or "" */
    char *account_url;          /* MSC4191 account management URL, or NULL */
    char *admin_token;          /* msc3861.admin_token, or NULL */
    uint64_t ttl_ms, neg_ttl_ms;
    acc_map_t cache;
} acc_mas_t;

static acc_mas_t *acc_mas;

/* ------------------------------------------------------------- config --- */

/* A string key, or the first line of the file its `<key>_path` names. */
static char *acc_secret(const json_t *sec, const char *key)
{
    const char *v = json_string_value(json_object_get(sec, key));
    if (v)
        return strdup(v);
    char pk[64];
    snprintf(pk, sizeof(pk), "%s_path", key);
    const char *path = json_string_value(json_object_get(sec, pk));
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return NULL;
    char buf[1024];
    char *r = fgets(buf, sizeof(buf), f) ? strdup(buf) : NULL;
    fclose(f);
    if (r)
        r[strcspn(r, "\r\n")] = '\0';
    return r;
}

static char *acc_join(const char *base, const char *tail)
{
    size_t n = strlen(base);
    char *o = malloc(n + strlen(tail) + 2);
    if (o)
        sprintf(o, "%s%s%s", base, n && base[n - 1] == '/' ? "" : "/", tail);
    return o;
}

static uint64_t acc_ms(const json_t *sec, const char *key, uint64_t def)
{
    const json_t *v = json_object_get(sec, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v) : def;
}

static void acc_mas_free(void)
{
    if (!acc_mas)
        return;
    acc_map_fini(&acc_mas->cache);
    free(acc_mas->url);
    free(acc_mas->auth_header);
    free(acc_mas->post_creds);
    free(acc_mas->account_url);
    free(acc_mas->admin_token);
    free(acc_mas);
    acc_mas = NULL;
}

/* Reads the config; 1 when delegation over HTTP is on, 0 off, negative on
 * a config error (logged). */
static int acc_mas_conf(void)
{
    const json_t *root = mx_server_conf()->root;
    const json_t *mas = json_object_get(root, "matrix_authentication_service");
    const json_t *msc = json_object_get(json_object_get(root, "experimental_features"), "msc3861");
    bool mas_on = json_is_true(json_object_get(mas, "enabled"));
    bool msc_on = json_is_true(json_object_get(msc, "enabled"));
    if (!mas_on && !msc_on)
        return 0;
    acc_mas = calloc(1, sizeof(*acc_mas));
    if (!acc_mas || acc_map_init(&acc_mas->cache, free) < 0) {
        free(acc_mas);
        acc_mas = NULL;
        return -ENOMEM;
    }
    const json_t *sec = mas_on ? mas : msc;
    acc_mas->ttl_ms = acc_ms(sec, "introspection_cache_ttl", 60000);
    acc_mas->neg_ttl_ms = acc_ms(sec, "introspection_negative_cache_ttl", 10000);
    if (mas_on) {
        const char *endpoint = json_string_value(json_object_get(mas, "endpoint"));
        char *secret = acc_secret(mas, "secret");
        if (!endpoint || !secret) {
            free(secret);
            mx_log("homeserver", MX_LOG_ERROR,
                   "matrix_authentication_service needs endpoint and secret (or secret_path)");
            acc_mas_free();
            return -EINVAL;
        }
        acc_mas->url = acc_join(endpoint, "oauth2/introspect");
        size_t n = strlen(secret) + 32;
        if ((acc_mas->auth_header = malloc(n)))
            snprintf(acc_mas->auth_header, n, "Authorization: Bearer %s", secret);
        acc_mas->post_creds = strdup("");
        free(secret);
    } else {
        const char *issuer = json_string_value(json_object_get(msc, "issuer"));
        const char *ep = json_string_value(json_object_get(msc, "introspection_endpoint"));
        const char *cid = json_string_value(json_object_get(msc, "client_id"));
        const char *method = json_string_value(json_object_get(msc, "client_auth_method"));
        char *secret = acc_secret(msc, "client_secret");
        if ((!issuer && !ep) || !cid || !secret ||
            (method && strcmp(method, "client_secret_basic") && strcmp(method, "client_secret_post"))) {
            free(secret);
            mx_log("homeserver", MX_LOG_ERROR,
                   "experimental_features.msc3861 needs issuer (or introspection_endpoint),"
                   " client_id, client_secret and client_auth_method client_secret_basic or"
                   " client_secret_post");
            acc_mas_free();
            return -EINVAL;
        }
        acc_mas->url = ep ? strdup(ep) : acc_join(issuer, "oauth2/introspect");
        char *ecid = hs_form_escape(cid), *esec = hs_form_escape(secret);
        if (method && !strcmp(method, "client_secret_post")) {
            size_t n = (ecid ? strlen(ecid) : 0) + (esec ? strlen(esec) : 0) + 40;
            if (ecid && esec && (acc_mas->post_creds = malloc(n)))
                snprintf(acc_mas->post_creds, n, "&client_id=%s&client_secret=%s", ecid, esec);
        } else {
            size_t n = (ecid ? strlen(ecid) : 0) + (esec ? strlen(esec) : 0) + 2;
            char *pair = ecid && esec ? malloc(n) : NULL;
            char *b64 = NULL;
            if (pair) {
                snprintf(pair, n, "%s:%s", ecid, esec);
                b64 = mx_b64_encode(pair, strlen(pair), 0);
            }
            size_t hn = b64 ? strlen(b64) + 32 : 0;
            if (b64 && (acc_mas->auth_header = malloc(hn)))
                snprintf(acc_mas->auth_header, hn, "Authorization: Basic %s", b64);
            acc_mas->post_creds = strdup("");
            free(b64);
            free(pair);
        }
        free(ecid);
        free(esec);
        memset(secret, 0, strlen(secret));
        free(secret);
        const char *am = json_string_value(json_object_get(msc, "account_management_url"));
        acc_mas->account_url = am ? strdup(am) : NULL;
        acc_mas->admin_token = acc_secret(msc, "admin_token");
    }
    if (!acc_mas->account_url) {
        const char *am = json_string_value(json_object_get(mas, "account_management_url"));
        const char *ep = json_string_value(json_object_get(mas, "endpoint"));
        acc_mas->account_url = am ? strdup(am) : ep ? acc_join(ep, "account/") : NULL;
    }
    if (!acc_mas->url || !acc_mas->post_creds) {
        acc_mas_free();
        return -ENOMEM;
    }
    return 1;
}

bool acc_delegated(void)
{
    return acc_mas || mx_service_get(HS_AUTH_COMPAT_SERVICE);
}

const char *acc_account_url(void)
{
    if (acc_mas)
        return acc_mas->account_url;
    const hs_auth_compat_iface_t *c = mx_service_get(HS_AUTH_COMPAT_SERVICE);
    return c && c->account_url ? c->account_url() : NULL;
}

/* ----------------------------------------------------------- checking --- */

typedef struct acc_iq {
    hs_token_done_fn cb;
    void *ud;
    char hash[ACC_HASH_HEX];
    hs_token_info_t info;
    uint64_t until_ms;
} acc_iq_t;

static bool acc_mas_any(const char *key, void *val, void *ud)
{
    (void)key;
    (void)val;
    (void)ud;
    return true;
}

static void acc_iq_cache(acc_iq_t *q, int status)
{
    if (!acc_mas)
        return;
    if (acc_mas->cache.n >= ACC_MAS_CACHE_MAX)
        acc_map_filter(&acc_mas->cache, acc_mas_any, NULL);   /* rare: entries come back */
    acc_mas_ent_t *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    e->status = status;
    e->info = q->info;
    uint64_t now = mx_now_ms();
    e->until_ms = now + (status == 0 ? acc_mas->ttl_ms : acc_mas->neg_ttl_ms);
    if (status == 0 && q->until_ms && q->until_ms < e->until_ms)
        e->until_ms = q->until_ms;
    if (acc_map_put(&acc_mas->cache, q->hash, e) < 0)
        free(e);
}

static void acc_iq_end(acc_iq_t *q, int status, bool cache)
{
    if (cache)
        acc_iq_cache(q, status);
    q->cb(status, status == 0 || status == -EKEYREVOKED ? &q->info : NULL, q->ud);
    free(q);
}

static void acc_iq_device(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    acc_iq_t *q = ud;
    acc_iq_end(q, status < 0 ? status : 0, status >= 0);
}

static void acc_iq_provision_device(acc_iq_t *q)
{
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!q->info.device_id[0]) {
        acc_iq_end(q, 0, true);
        return;
    }
    int rc = users->upsert_device(q->info.user_id, q->info.device_id, NULL, acc_iq_device, q);
    if (rc < 0)
        acc_iq_end(q, rc, false);
}

static void acc_iq_created(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    acc_iq_t *q = ud;
    if (status < 0 && status != -EEXIST) {
        acc_iq_end(q, status, false);
        return;
    }
    acc_iq_provision_device(q);
}

static void acc_iq_user(int status, const hs_users_info_t *u, void *ud)
{
    acc_iq_t *q = ud;
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (status == -ENOENT) {
        /* First use: the user is created here (no password: the auth
         * service owns credentials). */
        const char *colon = strchr(q->info.user_id, ':');
        char local[256];
        snprintf(local, sizeof(local), "%.*s", colon ? (int)(colon - q->info.user_id - 1) : 0,
                 q->info.user_id + 1);
        int rc = users->create(local, NULL, false, acc_iq_created, q);
        if (rc < 0)
            acc_iq_end(q, rc == -EINVAL ? -ENOENT : rc, rc == -EINVAL);
        return;
    }
    if (status < 0) {
        acc_iq_end(q, status, false);
        return;
    }
    if (u->deactivated) {
        acc_iq_end(q, -ENOENT, true);
        return;
    }
    q->info.is_guest = u->is_guest;
    if (u->locked) {
        acc_iq_end(q, -EKEYREVOKED, true);
        return;
    }
    acc_iq_provision_device(q);
}

static bool acc_scope_has(const char *scope, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = scope; p && *p;) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, tok, n))
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

/* The device ID in a scope string (stable or unstable name) into `out`. */
static void acc_scope_device(const char *scope, char *out, size_t outlen)
{
    static const char *const pre[] = { "urn:matrix:client:device:",
                                       "urn:matrix:org.matrix.msc2967.client:device:" };
    for (const char *p = scope; p && *p;) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        for (size_t i = 0; i < 2; i++) {
            size_t pl = strlen(pre[i]);
            if (l > pl && !strncmp(p, pre[i], pl)) {
                snprintf(out, outlen, "%.*s", (int)(l - pl), p + pl);
                return;
            }
        }
        p = e ? e + 1 : NULL;
    }
}

static void acc_iq_answer(const mx_http_response_t *resp, void *ud)
{
    acc_iq_t *q = ud;
    if (resp->err || resp->status != 200) {
        mx_log("homeserver", MX_LOG_WARN, "token introspection failed: %s (HTTP %d)",
               resp->errmsg ? resp->errmsg : "", resp->status);
        acc_iq_end(q, -EIO, false);
        return;
    }
    json_t *b = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *scope = json_string_value(json_object_get(b, "scope"));
    const char *username = json_string_value(json_object_get(b, "username"));
    const json_t *exp = json_object_get(b, "exp");
    bool api = scope && (acc_scope_has(scope, "urn:matrix:client:api:*") ||
                         acc_scope_has(scope, "urn:matrix:org.matrix.msc2967.client:api:*"));
    if (!json_is_true(json_object_get(b, "active")) || !api || !username || !*username ||
        strchr(username, ':')) {
        json_decref(b);
        acc_iq_end(q, -ENOENT, true);
        return;
    }
    if (snprintf(q->info.user_id, sizeof(q->info.user_id), "@%s:%s", username,
                 hs.server_name) >= (int)sizeof(q->info.user_id)) {
        json_decref(b);
        acc_iq_end(q, -ENOENT, true);
        return;
    }
    snprintf(q->info.scope, sizeof(q->info.scope), "%s", scope);
    acc_scope_device(scope, q->info.device_id, sizeof(q->info.device_id));
    if (!q->info.device_id[0] && json_is_string(json_object_get(b, "device_id")))
        snprintf(q->info.device_id, sizeof(q->info.device_id), "%s",
                 json_string_value(json_object_get(b, "device_id")));
    q->info.is_admin = acc_scope_has(scope, "urn:synapse:admin:*");
    if (json_is_integer(exp))
        q->until_ms = (uint64_t)json_integer_value(exp) * 1000;
    json_decref(b);
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    int rc = users ? users->get(q->info.user_id, acc_iq_user, q) : -ENOSYS;
    if (rc < 0)
        acc_iq_end(q, rc, false);
}

static int acc_mas_validate(const char *token, hs_token_done_fn cb, void *ud)
{
    if (!acc_mas || !token || !cb)
        return -EINVAL;
    acc_iq_t *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->cb = cb;
    q->ud = ud;
    acc_token_hash(token, q->hash);
    acc_mas_ent_t *e = acc_map_get(&acc_mas->cache, q->hash);
    uint64_t now = mx_now_ms();
    if (e && now < e->until_ms) {
        q->info = e->info;
        int st = e->status;
        free(q);
        cb(st, st == 0 || st == -EKEYREVOKED ? &e->info : NULL, ud);
        return 0;
    }
    if (e)
        acc_map_del(&acc_mas->cache, q->hash);
    if (acc_mas->admin_token && mx_ct_streq(token, acc_mas->admin_token)) {
        /* Synapse's msc3861.admin_token: an admin with no user behind it. */
        snprintf(q->info.user_id, sizeof(q->info.user_id), "@__oidc_admin:%s", hs.server_name);
        q->info.is_admin = true;
        acc_iq_end(q, 0, false);
        return 0;
    }
    char *et = hs_form_escape(token);
    size_t n = et ? strlen(et) + strlen(acc_mas->post_creds) + 8 : 0;
    char *body = et ? malloc(n) : NULL;
    if (!body) {
        free(et);
        free(q);
        return -ENOMEM;
    }
    snprintf(body, n, "token=%s%s", et, acc_mas->post_creds);
    free(et);
    const char *headers[4] = { "Content-Type: application/x-www-form-urlencoded",
                               "Accept: application/json", NULL, NULL };
    headers[2] = acc_mas->auth_header;
    mx_http_request_t rq = {
        .method = "POST", .url = acc_mas->url, .headers = headers, .body = body,
        .body_len = strlen(body), .timeout_ms = 10000,
        .allow_private = 1,   /* a configured peer, typically in the cluster network */
    };
    int rc = mx_http_fetch(&rq, acc_iq_answer, q);
    memset(body, 0, strlen(body));
    free(body);
    if (rc < 0)
        free(q);
    return rc;
}

static const mx_auth_token_iface_t acc_mas_iface = { .validate = acc_mas_validate };

/* ------------------------------------------------- cross-signing reset ---
 * The auth service's account page approves a reset for a while and says so
 * on the bus ("auth.crosssign_reset": {user_id, until_ms}, across processes
 * with the pubsub module); replacing cross-signing keys is allowed until
 * then, as Synapse allows it after MAS's approval. */
#define ACC_XS_TOPIC "auth.crosssign_reset"

static acc_map_t *acc_xs;         /* user ID -> uint64_t* until (ms) */

static void acc_xs_heard(const char *topic, const json_t *msg, void *ud)
{
    (void)topic;
    (void)ud;
    const char *user = json_string_value(json_object_get(msg, "user_id"));
    const json_t *until = json_object_get(msg, "until_ms");
    uint64_t *v = user && json_is_integer(until) && acc_xs ? malloc(sizeof(*v)) : NULL;
    if (!v)
        return;
    *v = (uint64_t)json_integer_value(until);
    if (acc_map_put(acc_xs, user, v) < 0)
        free(v);
}

bool acc_crosssign_reset_allowed(const char *user_id)
{
    const uint64_t *until = acc_xs && user_id ? acc_map_get(acc_xs, user_id) : NULL;
    return until && mx_now_ms() < *until;
}

void acc_crosssign_reset_reply(mx_req_t *req)
{
    const char *acct = acc_account_url();
    mx_pool_t *pool = mx_req_pool(req);
    const char *url = acct ? mx_psprintf(pool, "%s%saction=org.matrix.cross_signing_reset", acct,
                                         strchr(acct, '?') ? "&" : "?")
                           : "";
    json_t *b = json_pack(
        "{s:s, s:[{s:[s]}], s:{s:{s:s}}, s:s}", "session", "dummy", "flows", "stages",
        "org.matrix.cross_signing_reset", "params", "org.matrix.cross_signing_reset", "url", url,
        "msg",
        mx_psprintf(pool,
                    "To reset your end-to-end encryption cross-signing identity, you first need"
                    " to approve it at %s and then try again.",
                    url));
    mx_req_reply_json(req, 401, b);
}

static int acc_xs_start(void)
{
    if (acc_xs || !acc_delegated())
        return 0;
    acc_xs = calloc(1, sizeof(*acc_xs));
    if (!acc_xs || acc_map_init(acc_xs, free) < 0) {
        free(acc_xs);
        acc_xs = NULL;
        return -ENOMEM;
    }
    return mx_bus_subscribe(ACC_XS_TOPIC, acc_xs_heard, NULL);
}

int acc_mas_start(void)
{
    if (acc_mas)
        return 0;
    int rc = acc_mas_conf();
    if (rc <= 0)
        return rc < 0 ? rc : acc_xs_start();
    if (mx_service_get("auth.token")) {
        mx_log("homeserver", MX_LOG_WARN,
               "matrix_authentication_service/msc3861 ignored: the auth module runs here");
        acc_mas_free();
        return 0;
    }
    rc = mx_service_register("auth.token", &acc_mas_iface);
    if (rc < 0) {
        acc_mas_free();
        return rc;
    }
    mx_log("homeserver", MX_LOG_INFO, "access tokens are checked by introspection at %s",
           acc_mas->url);
    return acc_xs_start();
}
