/*
 * au_introspect.c: looking tokens up, the validation cache, ending OAuth
 * sessions, and RFC 7662 introspection.
 *
 *   POST /oauth2/introspect   for confidential clients (client_secret_basic
 *                             or _post), or with a Bearer access token
 *                             from the client_credentials grant.  Scopes
 *                             come back with both the stable and unstable
 *                             Matrix names (as MAS answers).
 *
 * The cache maps sha256(token) to what the `auth.token` service needs
 * (au_compat.c), so the homeserver's per-request check costs one hash and
 * one table probe.  Entries live at most AU_CACHE_TTL_MS and never past the
 * token's expiry; ending a session evicts its entries at once here and, via
 * the bus topic "auth.evict", in other processes.
 */
#include "auth.h"
#include "au_admin.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AU_CACHE_TTL_MS (60 * 1000)
#define AU_EVICT_TOPIC "auth.evict"
#define AU_SEEN_MS (60 * 1000)    /* cached tokens: activity at most this often */

/* -------------------------------------------------------------- lookup --- */

typedef struct au_tl {
    mx_pool_t *pool;
    au_tok_fn cb;
    void *ud;
    bool refresh;
    const char *ip, *user_agent;  /* of the request using the token, or NULL */
} au_tl_t;

static void au_tok_read(int status, mx_sql_res_t *res, void *ud)
{
    au_tl_t *l = ud;
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        l->cb(status, NULL, l->ud);
        return;
    }
    au_tokinfo_t *t = mx_palloc(l->pool, sizeof(*t));
    if (!t) {
        l->cb(-ENOMEM, NULL, l->ud);
        return;
    }
    memset(t, 0, sizeof(*t));
    /* session_id, created_ts, expires_ts, revoked, client_id, user_id,
     * device_id, scope, finished_ts[, consumed_ts] */
    t->is_refresh = l->refresh;
    t->session_id = mx_pstrdup(l->pool, mx_sql_text(res, 0, 0, 0));
    t->created_ts = mx_sql_int(res, 0, 0, 1);
    t->expires_ts = mx_sql_is_null(res, 0, 0, 2) ? 0 : mx_sql_int(res, 0, 0, 2);
    /* Compat sessions have no client: "" (never equal to a client's ID). */
    t->client_id = mx_pstrdup(l->pool, mx_sql_is_null(res, 0, 0, 4) ? "" : mx_sql_text(res, 0, 0, 4));
    t->user_id = mx_sql_is_null(res, 0, 0, 5) ? NULL : mx_pstrdup(l->pool, mx_sql_text(res, 0, 0, 5));
    t->device_id =
        mx_sql_is_null(res, 0, 0, 6) ? NULL : mx_pstrdup(l->pool, mx_sql_text(res, 0, 0, 6));
    t->scope = mx_pstrdup(l->pool, mx_sql_text(res, 0, 0, 7));
    t->active = !mx_sql_int(res, 0, 0, 3) && mx_sql_is_null(res, 0, 0, 8) &&
                (!t->expires_ts || (uint64_t)t->expires_ts > mx_now_ms());
    if (l->refresh && !mx_sql_is_null(res, 0, 0, 9))
        t->active = false;   /* consumed by a rotation */
    if (t->active && !l->refresh)
        aa_activity_note(t->session_id, l->ip, l->user_agent);   /* throttled in SQL */
    l->cb(0, t, l->ud);
}

static int au_lookup(mx_pool_t *pool, const char *token, bool refresh, const char *ip,
                     const char *user_agent, au_tok_fn cb, void *ud)
{
    au_tl_t *l = mx_palloc(pool, sizeof(*l));
    mx_sql_batch_t *b = l && token ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b)
        return token ? -ENOMEM : -EINVAL;
    l->pool = pool;
    l->cb = cb;
    l->ud = ud;
    l->refresh = refresh;
    l->ip = ip ? mx_pstrdup(pool, ip) : NULL;
    l->user_agent = user_agent ? mx_pstrdup(pool, user_agent) : NULL;
    char h[AU_HASH_HEX];
    au_hash_hex(token, h);
    bool compat = refresh ? AU_IS_COMPAT_REFRESH(token) : AU_IS_COMPAT_TOKEN(token);
    if (!refresh && AA_IS_PERSONAL_TOKEN(token))
        mx_sql_add(b, aa_personal_lookup_sql, "s", h);   /* au_admin_personal.c */
    else if (compat && refresh)
        mx_sql_add(b,
                   "SELECT t.session_id, t.created_ts, NULL, t.revoked, NULL, s.user_id,"
                   " s.device_id, s.scope, s.finished_ts, t.consumed_ts"
                   " FROM auth_compat_refresh_tokens t"
                   " JOIN auth_compat_sessions s ON s.id = t.session_id WHERE t.token_hash = ?",
                   "s", h);
    else if (compat)
        mx_sql_add(b,
                   "SELECT t.session_id, t.created_ts, t.expires_ts, t.revoked, NULL, s.user_id,"
                   " s.device_id, s.scope, s.finished_ts"
                   " FROM auth_compat_access_tokens t"
                   " JOIN auth_compat_sessions s ON s.id = t.session_id WHERE t.token_hash = ?",
                   "s", h);
    else if (refresh)
        mx_sql_add(b,
                   "SELECT t.session_id, t.created_ts, NULL, t.revoked, s.client_id, s.user_id,"
                   " s.device_id, s.scope, s.finished_ts, t.consumed_ts"
                   " FROM auth_refresh_tokens t JOIN auth_oauth_sessions s ON s.id = t.session_id"
                   " WHERE t.token_hash = ?",
                   "s", h);
    else
        mx_sql_add(b,
                   "SELECT t.session_id, t.created_ts, t.expires_ts, t.revoked, s.client_id,"
                   " s.user_id, s.device_id, s.scope, s.finished_ts"
                   " FROM auth_access_tokens t JOIN auth_oauth_sessions s ON s.id = t.session_id"
                   " WHERE t.token_hash = ?",
                   "s", h);
    return mx_sql_run(b, au_tok_read, l);
}

int au_token_lookup(mx_pool_t *pool, const char *token, bool refresh, au_tok_fn cb, void *ud)
{
    return au_lookup(pool, token, refresh, NULL, NULL, cb, ud);
}

int au_token_lookup_seen(mx_pool_t *pool, const char *token, const char *ip,
                         const char *user_agent, au_tok_fn cb, void *ud)
{
    return au_lookup(pool, token, false, ip, user_agent, cb, ud);
}

/* --------------------------------------------------------------- cache --- */

struct au_cache {
    au_centry_t **b;
    size_t nb, n;
};

int au_cache_init(void)
{
    au_cache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->nb = 4096;
    c->b = calloc(c->nb, sizeof(*c->b));
    if (!c->b) {
        free(c);
        return -ENOMEM;
    }
    au.cache = c;
    return 0;
}

static void au_centry_free(au_centry_t *e)
{
    free(e->scope);
    free(e);
}

static void au_cache_clear(au_cache_t *c)
{
    for (size_t i = 0; i < c->nb; i++) {
        while (c->b[i]) {
            au_centry_t *e = c->b[i];
            c->b[i] = e->next;
            au_centry_free(e);
        }
    }
    c->n = 0;
}

void au_cache_fini(void)
{
    if (!au.cache)
        return;
    au_cache_clear(au.cache);
    free(au.cache->b);
    free(au.cache);
    au.cache = NULL;
}

static size_t au_cache_slot(const au_cache_t *c, const unsigned char key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));   /* the key is a sha256: already uniform */
    return (size_t)(h % c->nb);
}

au_centry_t *au_cache_get(const unsigned char key[32])
{
    au_cache_t *c = au.cache;
    if (!c)
        return NULL;
    au_centry_t **pp = &c->b[au_cache_slot(c, key)];
    uint64_t now = mx_now_ms();
    for (; *pp; pp = &(*pp)->next) {
        au_centry_t *e = *pp;
        if (memcmp(e->key, key, 32) != 0)
            continue;
        if (now - e->cached_ms > AU_CACHE_TTL_MS) {
            *pp = e->next;
            au_centry_free(e);
            c->n--;
            return NULL;
        }
        return e;
    }
    return NULL;
}

void au_cache_put(const unsigned char key[32], const au_tokinfo_t *t)
{
    au_cache_t *c = au.cache;
    if (!c || !t->user_id || strlen(t->session_id) >= sizeof(((au_centry_t *)0)->session_id))
        return;
    if ((int64_t)c->n >= au.conf->token_cache_max)
        au_cache_clear(c);   /* rare and cheap: entries come back on use */
    au_centry_t *e = calloc(1, sizeof(*e));
    if (!e || !(e->scope = strdup(t->scope ? t->scope : ""))) {
        free(e);
        return;
    }
    memcpy(e->key, key, 32);
    snprintf(e->session_id, sizeof(e->session_id), "%s", t->session_id);
    snprintf(e->user_id, sizeof(e->user_id), "%s", t->user_id);
    snprintf(e->device_id, sizeof(e->device_id), "%s", t->device_id ? t->device_id : "");
    e->expires_ms = (uint64_t)t->expires_ts;
    e->cached_ms = mx_now_ms();
    e->noted_ms = e->cached_ms;   /* the lookup that found it noted the activity */
    size_t s = au_cache_slot(c, key);
    e->next = c->b[s];
    c->b[s] = e;
    c->n++;
}

void au_cache_seen(au_centry_t *e, const char *ip, const char *user_agent)
{
    uint64_t now = mx_now_ms();
    if (!e || now - e->noted_ms < AU_SEEN_MS)
        return;
    e->noted_ms = now;
    aa_activity_note(e->session_id, ip, user_agent);
}

static void au_cache_evict_if(bool (*pred)(const au_centry_t *, const void *), const void *arg)
{
    au_cache_t *c = au.cache;
    for (size_t i = 0; c && i < c->nb; i++) {
        au_centry_t **pp = &c->b[i];
        while (*pp) {
            au_centry_t *e = *pp;
            if (pred(e, arg)) {
                *pp = e->next;
                au_centry_free(e);
                c->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static bool au_is_session(const au_centry_t *e, const void *arg)
{
    return !strcmp(e->session_id, arg);
}

typedef struct au_ud {
    const char *user_id, *device_id;
} au_ud_t;

static bool au_is_user(const au_centry_t *e, const void *arg)
{
    const au_ud_t *u = arg;
    return !strcmp(e->user_id, u->user_id) && (!u->device_id || !strcmp(e->device_id, u->device_id));
}

static void au_cache_evict_session_local(const char *session_id)
{
    if (session_id)
        au_cache_evict_if(au_is_session, session_id);
}

void au_cache_evict_session(const char *session_id)
{
    au_cache_evict_session_local(session_id);
    json_t *msg = json_pack("{s:s}", "session_id", session_id);
    if (msg) {
        mx_bus_publish(AU_EVICT_TOPIC, msg);
        json_decref(msg);
    }
}

void au_cache_evict_user(const char *user_id, const char *device_id)
{
    au_ud_t u = { user_id, device_id };
    if (user_id)
        au_cache_evict_if(au_is_user, &u);
}

static void au_evict_sub(const char *topic, const json_t *msg, void *ud)
{
    (void)topic;
    (void)ud;
    au_cache_evict_session_local(json_string_value(json_object_get(msg, "session_id")));
}

int au_cache_subscribe(void)
{
    return mx_bus_subscribe(AU_EVICT_TOPIC, au_evict_sub, NULL);
}

/* ------------------------------------------------------ ending sessions --- */

typedef struct au_fin {
    char session_id[64];
    au_done_fn cb;
    void *ud;
} au_fin_t;

static void au_dev_deleted(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    (void)ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "could not delete the device of an ended session (%d)",
               status);
}

static void au_fin_done(int status, mx_sql_res_t *res, void *ud)
{
    au_fin_t *f = ud;
    if (status >= 0) {
        au_cache_evict_session(f->session_id);
        /* MAS deletes the homeserver device when its session ends. */
        const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
        if (au.conf->delegate_homeserver && users && mx_sql_nrows(res, 0) > 0 &&
            !mx_sql_is_null(res, 0, 0, 0) && !mx_sql_is_null(res, 0, 0, 1))
            users->delete_device(mx_sql_text(res, 0, 0, 0), mx_sql_text(res, 0, 0, 1),
                                 au_dev_deleted, NULL);
    }
    if (f->cb)
        f->cb(status, f->ud);
    free(f);
}

int au_session_finish(const char *session_id, au_done_fn cb, void *ud)
{
    au_fin_t *f = calloc(1, sizeof(*f));
    mx_sql_batch_t *b = f && session_id ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(f);
        return -ENOMEM;
    }
    snprintf(f->session_id, sizeof(f->session_id), "%s", session_id);
    f->cb = cb;
    f->ud = ud;
    mx_sql_add(b,
               "UPDATE auth_oauth_sessions SET finished_ts = ? WHERE id = ? AND finished_ts IS NULL"
               " RETURNING user_id, device_id",
               "is", (int64_t)mx_now_ms(), session_id);
    mx_sql_add(b, "UPDATE auth_access_tokens SET revoked = 1 WHERE session_id = ?", "s",
               session_id);
    mx_sql_add(b, "UPDATE auth_refresh_tokens SET revoked = 1 WHERE session_id = ?", "s",
               session_id);
    int rc = mx_sql_run(b, au_fin_done, f);
    if (rc < 0) {
        free(f);
    }
    return rc;
}

/* -------------------------------------------------------- introspection --- */

typedef struct au_ix {
    mx_req_t *req;
    json_t *form;
    const char *token;
    bool refresh_first;
    int step;
} au_ix_t;

static void au_ix_answer(au_ix_t *x, const au_tokinfo_t *t)
{
    mx_pool_t *pool = mx_req_pool(x->req);
    if (!t || !t->active) {
        au_reply_json_nostore(x->req, 200, json_pack("{s:b}", "active", 0));
        return;
    }
    json_t *b = json_pack("{s:b, s:s, s:s, s:I, s:I, s:s}", "active", 1, "scope",
                          au_scope_normalise(pool, t->scope), "token_type",
                          t->is_refresh ? "refresh_token" : "access_token", "iat",
                          (json_int_t)(t->created_ts / 1000), "nbf",
                          (json_int_t)(t->created_ts / 1000), "iss", au.issuer);
    if (b && t->client_id && *t->client_id)
        json_object_set_new(b, "client_id", json_string(t->client_id));
    if (t->expires_ts) {
        json_object_set_new(b, "exp", json_integer(t->expires_ts / 1000));
        int64_t left = (t->expires_ts - (int64_t)mx_now_ms()) / 1000;
        json_object_set_new(b, "expires_in", json_integer(left > 0 ? left : 0));
    }
    if (t->user_id) {
        json_object_set_new(b, "sub", json_string(t->user_id));
        const char *colon = strchr(t->user_id, ':');
        if (t->user_id[0] == '@' && colon)
            json_object_set_new(b, "username",
                                json_stringn(t->user_id + 1, (size_t)(colon - t->user_id - 1)));
    }
    if (t->device_id)
        json_object_set_new(b, "device_id", json_string(t->device_id));
    au_reply_json_nostore(x->req, 200, b);
}

static void au_ix_found(int status, const au_tokinfo_t *t, void *ud)
{
    au_ix_t *x = ud;
    if (status < 0) {
        au_storage_error(x->req, status, "introspect");
        return;
    }
    if (!t && x->step < 2) {
        bool refresh = (x->step == 0) == x->refresh_first;
        x->step++;
        if (au_token_lookup(mx_req_pool(x->req), x->token, refresh, au_ix_found, x) < 0)
            au_storage_error(x->req, -ENOMEM, "introspect");
        return;
    }
    au_ix_answer(x, t);
}

static void au_ix_start(au_ix_t *x)
{
    x->token = json_string_value(json_object_get(x->form, "token"));
    if (!x->token) {
        au_oauth_error(x->req, 400, "invalid_request", "Missing token");
        return;
    }
    const char *hint = json_string_value(json_object_get(x->form, "token_type_hint"));
    x->refresh_first = hint && !strcmp(hint, "refresh_token");
    au_ix_found(0, NULL, x);
}

static void au_ix_client(mx_req_t *req, const au_client_t *c, void *ud)
{
    if (!strcmp(c->auth_method, "none")) {
        au_oauth_error(req, 401, "invalid_client", "Public clients may not introspect");
        return;
    }
    au_ix_start(ud);
}

/* Bearer: an active client_credentials token (no user) of a confidential
 * client. */
static void au_ix_bearer(int status, const au_tokinfo_t *t, void *ud)
{
    au_ix_t *x = ud;
    if (status < 0) {
        au_storage_error(x->req, status, "introspect");
        return;
    }
    if (!t || !t->active || t->user_id) {
        au_oauth_error(x->req, 401, "invalid_client", "Invalid bearer token");
        return;
    }
    au_ix_start(x);
}

static int au_post_introspect(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *form = au_oauth_form(req);
    if (!form)
        return MX_DONE;
    au_ix_t *x = mx_palloc(mx_req_pool(req), sizeof(*x));
    if (!x) {
        au_storage_error(req, -ENOMEM, "introspect");
        return MX_DONE;
    }
    memset(x, 0, sizeof(*x));
    x->req = req;
    x->form = form;
    const char *h = mx_req_header(req, "Authorization");
    if (h && !strncmp(h, "Bearer ", 7) && au_hs_secret_ok(h + 7)) {
        au_ix_start(x);   /* the homeserver, with its shared secret */
        return MX_ASYNC;
    }
    if (h && !strncmp(h, "Bearer ", 7)) {
        if (au_token_lookup(mx_req_pool(req), h + 7, false, au_ix_bearer, x) < 0)
            au_storage_error(req, -ENOMEM, "introspect");
        return MX_ASYNC;
    }
    au_client_authenticate(req, form, au_ix_client, x);
    return MX_ASYNC;
}

int au_introspect_routes(void)
{
    int rc = au_cache_subscribe();
    if (rc < 0)
        return rc;
    return au_route_oauth("POST", "/oauth2/introspect", au_post_introspect, true);
}
