/*
 * au_compat.c: the auth module as the homeserver's token authority
 * (MSC3861), when `auth.delegate_homeserver` is true.
 *
 * It provides the `auth.token` service (hs.h) the homeserver checks every
 * request with: OAuth access tokens ("mat_..."), compat ("mct_") and
 * personal ("mpt_", au_admin_personal.c) tokens are ours; any other token
 * is handed to the homeserver's own check (`homeserver.legacy_token`), so
 * the legacy /login, /register and shared-secret registration keep
 * working while clients move over.  An OAuth token is valid when it is
 * active, carries the Matrix API scope (stable or unstable name), and its
 * user exists unlocked; its device (the device scope) is created in the
 * homeserver on first use.  urn:synapse:admin:* in the scope makes the
 * requester a server admin, as Synapse decides it in delegated mode.
 * `validate_req` also records the request's address and User-Agent as the
 * session's last activity (MAS's last_active_ip, user_agent): with the
 * lookup that misses the cache, then at most once a minute per token.
 *
 * The service is registered in init, before the homeserver's start looks
 * for an `auth.token` provider.  Devices the homeserver deletes (logout,
 * DELETE /devices) end the OAuth sessions on them: we follow its eviction
 * topic.
 */
#include "auth.h"
#include "au_admin.h"   /* personal access tokens */
#include "../homeserver/hs.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AU_HS_EVICT_TOPIC "homeserver.accounts.evict"

/* A device the homeserver deleted: tokens created before `ts` are dead at
 * once, before the write that ends their sessions has committed (and so
 * cannot re-create the device on their first use). */
#define AU_TOMB_TTL_MS (60 * 1000)
typedef struct au_tomb {
    struct au_tomb *next;
    uint64_t ts;
    char user_id[256], device_id[256];
} au_tomb_t;

static void au_tomb_add(const char *user, const char *dev)
{
    uint64_t now = mx_now_ms();
    for (au_tomb_t **pp = &au.tombs; *pp;) {
        au_tomb_t *t = *pp;
        if (now - t->ts > AU_TOMB_TTL_MS) {
            *pp = t->next;
            free(t);
        } else {
            pp = &t->next;
        }
    }
    au_tomb_t *t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->ts = now;
    snprintf(t->user_id, sizeof(t->user_id), "%s", user);
    snprintf(t->device_id, sizeof(t->device_id), "%s", dev);
    t->next = au.tombs;
    au.tombs = t;
}

static bool au_tomb_kills(const au_tokinfo_t *t)
{
    uint64_t now = mx_now_ms();
    for (const au_tomb_t *d = au.tombs; d && t->device_id; d = d->next)
        if (now - d->ts <= AU_TOMB_TTL_MS && (uint64_t)t->created_ts <= d->ts &&
            !strcmp(d->user_id, t->user_id) && !strcmp(d->device_id, t->device_id))
            return true;
    return false;
}

void au_compat_fini(void)
{
    while (au.tombs) {
        au_tomb_t *t = au.tombs;
        au.tombs = t->next;
        free(t);
    }
}

typedef struct au_vq {
    mx_pool_t *pool;
    hs_token_done_fn cb;
    void *ud;
    unsigned char key[32];
    const au_tokinfo_t *t;
    hs_token_info_t info;
} au_vq_t;

static const mx_auth_token_iface_t au_token_iface;

static void au_info_fill(hs_token_info_t *info, const char *user_id, const char *device_id,
                         const char *scope)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->user_id, sizeof(info->user_id), "%s", user_id);
    snprintf(info->device_id, sizeof(info->device_id), "%s", device_id ? device_id : "");
    snprintf(info->scope, sizeof(info->scope), "%s", scope ? scope : "");
    info->is_admin = scope && au_scope_has(scope, AU_SCOPE_SYNAPSE_ADMIN);
}

static void au_vq_end(au_vq_t *q, int status, const hs_token_info_t *info)
{
    q->cb(status, info, q->ud);
    mx_pool_free(q->pool);
    free(q);
}

static void au_v_device(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    au_vq_t *q = ud;
    if (status < 0) {
        au_vq_end(q, status, NULL);
        return;
    }
    au_cache_put(q->key, q->t);
    au_vq_end(q, 0, &q->info);
}

static void au_v_user(int status, const hs_users_info_t *u, void *ud)
{
    au_vq_t *q = ud;
    if (status == -ENOENT || (status == 0 && (!u || u->deactivated))) {
        au_vq_end(q, -ENOENT, NULL);
        return;
    }
    if (status < 0) {
        au_vq_end(q, status, NULL);
        return;
    }
    if (u->locked) {
        au_vq_end(q, -EKEYREVOKED, &q->info);   /* soft logout, as for legacy tokens */
        return;
    }
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!q->t->device_id) {
        au_cache_put(q->key, q->t);
        au_vq_end(q, 0, &q->info);
        return;
    }
    int rc = users->upsert_device(q->t->user_id, q->t->device_id, NULL, au_v_device, q);
    if (rc < 0)
        au_vq_end(q, rc, NULL);
}

static void au_v_found(int status, const au_tokinfo_t *t, void *ud)
{
    au_vq_t *q = ud;
    if (status < 0) {
        au_vq_end(q, status, NULL);
        return;
    }
    if (!t || !t->user_id) {
        au_vq_end(q, -ENOENT, NULL);
        return;
    }
    au_info_fill(&q->info, t->user_id, t->device_id, t->scope);
    if (t->active && au_tomb_kills(t)) {
        au_vq_end(q, -ENOENT, NULL);
        return;
    }
    if (!t->active) {
        bool expired = t->expires_ts && (uint64_t)t->expires_ts <= mx_now_ms();
        au_vq_end(q, expired ? -EKEYEXPIRED : -ENOENT, expired ? &q->info : NULL);
        return;
    }
    if (!au_scope_has(t->scope, AU_SCOPE_API) && !au_scope_has(t->scope, AU_SCOPE_API_UNSTABLE)) {
        au_vq_end(q, -ENOENT, NULL);   /* the token does not grant API access */
        return;
    }
    q->t = t;
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    int rc = users ? users->get(t->user_id, au_v_user, q) : -ENOSYS;
    if (rc < 0)
        au_vq_end(q, rc == -ENOENT ? -ENOENT : rc, NULL);
}

int au_validate_token_req(const char *token, const char *ip, const char *user_agent,
                          hs_token_done_fn cb, void *ud)
{
    if (!token || !cb)
        return -EINVAL;
    if (strncmp(token, "mat_", 4) != 0 && !AU_IS_COMPAT_TOKEN(token) &&
        !AA_IS_PERSONAL_TOKEN(token)) {
        const mx_auth_token_iface_t *legacy = mx_service_get(HS_LEGACY_TOKEN_SERVICE);
        if (!legacy || legacy == &au_token_iface || !legacy->validate) {
            cb(-ENOENT, NULL, ud);
            return 0;
        }
        return legacy->validate(token, cb, ud);
    }
    if (au.m_validations)
        mx_counter_add(au.m_validations, 1);
    unsigned char key[32];
    mx_sha256(token, strlen(token), key);
    au_centry_t *e = au_cache_get(key);
    if (e) {
        au_cache_seen(e, ip, user_agent);
        hs_token_info_t info;
        au_info_fill(&info, e->user_id, e->device_id[0] ? e->device_id : NULL, e->scope);
        cb(e->expires_ms && mx_now_ms() >= e->expires_ms ? -EKEYEXPIRED : 0, &info, ud);
        return 0;
    }
    au_vq_t *q = calloc(1, sizeof(*q));
    if (!q || !(q->pool = mx_pool_new())) {
        free(q);
        return -ENOMEM;
    }
    q->cb = cb;
    q->ud = ud;
    memcpy(q->key, key, sizeof(key));
    int rc = au_token_lookup_seen(q->pool, token, ip, user_agent, au_v_found, q);
    if (rc < 0) {
        mx_pool_free(q->pool);
        free(q);
    }
    return rc;
}

int au_validate_token(const char *token, hs_token_done_fn cb, void *ud)
{
    return au_validate_token_req(token, NULL, NULL, cb, ud);
}

static const mx_auth_token_iface_t au_token_iface = { .validate = au_validate_token,
                                                      .validate_req = au_validate_token_req };

static const char *au_compat_account_url(void)
{
    return au.account_url;
}

static const hs_auth_compat_iface_t au_compat_iface = { .account_url = au_compat_account_url };

/* matrix_authentication_service.secret (or secret_path): what the
 * homeserver presents as Bearer at /oauth2/introspect, as Synapse does to
 * MAS (MAS's `matrix.secret`). */
static char *au_hs_secret_load(void)
{
    const json_t *mas = json_object_get(mx_server_conf()->root, "matrix_authentication_service");
    const char *v = json_string_value(json_object_get(mas, "secret"));
    if (v)
        return strdup(v);
    const char *path = json_string_value(json_object_get(mas, "secret_path"));
    FILE *f = path ? fopen(path, "r") : NULL;
    char buf[1024];
    char *r = f && fgets(buf, sizeof(buf), f) ? strdup(buf) : NULL;
    if (f)
        fclose(f);
    if (r)
        r[strcspn(r, "\r\n")] = '\0';
    return r;
}

bool au_hs_secret_ok(const char *bearer)
{
    const char *internal = NULL;
    const json_t *is = json_object_get(mx_server_conf()->root, "internal_secret");
    if (json_is_string(is))
        internal = json_string_value(is);
    return bearer && ((au.hs_secret && *au.hs_secret && mx_ct_streq(bearer, au.hs_secret)) ||
                      (internal && *internal && mx_ct_streq(bearer, internal)));
}

int au_compat_register(void)
{
    size_t n = strlen(au.base) + sizeof("account/");
    if (!au.account_url && (au.account_url = malloc(n)))
        snprintf(au.account_url, n, "%saccount/", au.base);
    if (!au.hs_secret)
        au.hs_secret = au_hs_secret_load();
    int urc = au_compat_users_register();
    if (urc < 0)
        return urc;
    if (!au.conf->delegate_homeserver)
        return 0;
    int rc = mx_service_register("auth.token", &au_token_iface);
    if (rc == -EEXIST) {
        mx_log(AU_LOG, MX_LOG_ERROR,
               "auth.token is already provided: the homeserver will not use OAuth tokens");
        return 0;
    }
    /* Tells the homeserver that the legacy endpoints are ours now. */
    if (rc == 0)
        rc = mx_service_register(HS_AUTH_COMPAT_SERVICE, &au_compat_iface);
    return rc == -EEXIST ? 0 : rc;
}

/* ------------------------------------------------ homeserver devices --- */

static void au_dev_sessions_ended(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    (void)ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "ending the sessions of a deleted device failed (%d)",
               status);
}

static void au_hs_evict(const char *topic, const json_t *msg, void *ud)
{
    (void)topic;
    (void)ud;
    const char *user = json_string_value(json_object_get(msg, "user_id"));
    const char *dev = json_string_value(json_object_get(msg, "device_id"));
    if (!user)
        return;
    au_cache_evict_user(user, dev);
    if (!dev)
        return;   /* a lock, a password change...: only re-check */
    au_tomb_add(user, dev);
    if (au_compat_finish_device(user, dev, false, NULL, NULL) < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "ending the compat sessions of a deleted device failed");
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b)
        return;
#define AU_LIVE_SESSIONS                                                             \
    "(SELECT id FROM auth_oauth_sessions WHERE user_id = ? AND device_id = ?"        \
    " AND finished_ts IS NULL)"
    mx_sql_add(b, "UPDATE auth_access_tokens SET revoked = 1 WHERE session_id IN " AU_LIVE_SESSIONS,
               "ss", user, dev);
    mx_sql_add(b, "UPDATE auth_refresh_tokens SET revoked = 1 WHERE session_id IN " AU_LIVE_SESSIONS,
               "ss", user, dev);
    mx_sql_add(b,
               "UPDATE auth_oauth_sessions SET finished_ts = ? WHERE user_id = ? AND device_id = ?"
               " AND finished_ts IS NULL",
               "iss", (int64_t)mx_now_ms(), user, dev);
    mx_sql_run(b, au_dev_sessions_ended, NULL);   /* consumes the batch, even on failure */
}

int au_compat_routes(void)
{
    int rc = au_compat_schema_migrate();
    if (rc < 0 || !au.conf->delegate_homeserver)
        return rc;
    if ((rc = au_compat_login_routes()) < 0 || (rc = au_compat_sso_routes()) < 0)
        return rc;
    return mx_bus_subscribe(AU_HS_EVICT_TOPIC, au_hs_evict, NULL);
}
