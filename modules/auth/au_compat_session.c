/*
 * au_compat_session.c: compatibility sessions (MAS's "compat sessions"),
 * what a legacy login (m.login.password, m.login.token after m.login.sso,
 * `mxstack manage issue-compatibility-token`) creates in the auth module.
 *
 * A session is a user + device with the scope its tokens carry (the Matrix
 * API, the device, and urn:synapse:admin:* when granted), so that the
 * `auth.token` check and introspection treat its "mct_" tokens like OAuth
 * ones (au_introspect.c looks both up).  A new login on a device finishes
 * the earlier compat sessions of that device, as Synapse drops the old
 * tokens of a re-used device.  The homeserver device is created at login
 * (when the homeserver runs in this process; otherwise on first use).
 */
#include "auth.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AU_COMPAT_TOKEN_LEN 32
#define AU_COMPAT_DEVICE_LEN 10

/* ------------------------------------------------------------ creating --- */

typedef struct au_cs {
    mx_pool_t *pool;              /* the caller's */
    au_compat_fn cb;
    void *ud;
    au_compat_tokens_t t;
    char *human_name;
} au_cs_t;

char *au_compat_device_new(mx_pool_t *pool)
{
    static const char up[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    unsigned char r[AU_COMPAT_DEVICE_LEN];
    char *d = mx_palloc(pool, AU_COMPAT_DEVICE_LEN + 1);
    if (!d)
        return NULL;
    mx_random_bytes(r, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++) {
        while (r[i] >= 234)   /* 9 * 26: keeps the choice uniform */
            mx_random_bytes(&r[i], 1);
        d[i] = up[r[i] % 26];
    }
    d[AU_COMPAT_DEVICE_LEN] = '\0';
    return d;
}

char *au_compat_scope(mx_pool_t *pool, const char *device_id, bool synapse_admin)
{
    return mx_psprintf(pool, "%s %s%s%s", AU_SCOPE_API, AU_SCOPE_DEVICE, device_id,
                       synapse_admin ? " " AU_SCOPE_SYNAPSE_ADMIN : "");
}

static void au_cs_end(au_cs_t *s, int status)
{
    s->cb(status, status < 0 ? NULL : &s->t, s->ud);
    free(s);
}

static void au_cs_provisioned(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    au_cs_t *s = ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "compat login: creating device %s of %s failed (%d)",
               s->t.device_id, s->t.user_id, status);
    au_cs_end(s, 0);
}

static void au_cs_written(int status, mx_sql_res_t *res, void *ud)
{
    au_cs_t *s = ud;
    if (status < 0) {
        au_cs_end(s, status);
        return;
    }
    /* Earlier sessions of the device are gone: so are their cached tokens. */
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        au_cache_evict_session(mx_sql_text(res, 0, i, 0));
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!users || users->upsert_device(s->t.user_id, s->t.device_id, s->human_name,
                                       au_cs_provisioned, s) < 0)
        au_cs_end(s, 0);   /* the homeserver provisions it on first use */
}

int au_compat_session_new(mx_pool_t *pool, const au_compat_new_t *n, au_compat_fn cb, void *ud)
{
    if (!n || !n->user_id || !cb)
        return -EINVAL;
    au_cs_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->pool = pool;
    s->cb = cb;
    s->ud = ud;
    s->human_name = n->human_name ? mx_pstrdup(pool, n->human_name) : NULL;
    s->t.user_id = mx_pstrdup(pool, n->user_id);
    s->t.device_id = n->device_id ? mx_pstrdup(pool, n->device_id) : au_compat_device_new(pool);
    s->t.session_id = au_ulid(pool);
    s->t.access_token = au_token_new(pool, "mct", AU_COMPAT_TOKEN_LEN);
    s->t.refresh_token = n->with_refresh ? au_token_new(pool, "mcr", AU_COMPAT_TOKEN_LEN) : NULL;
    s->t.synapse_admin = n->synapse_admin;
    const char *scope = s->t.device_id ? au_compat_scope(pool, s->t.device_id, n->synapse_admin)
                                       : NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b || !s->t.user_id || !s->t.device_id || !s->t.session_id || !s->t.access_token ||
        !scope || (n->with_refresh && !s->t.refresh_token)) {
        if (b)
            mx_sql_batch_free(b);
        free(s);
        return -ENOMEM;
    }
    int64_t now = (int64_t)mx_now_ms();
    int64_t exp = n->with_refresh ? now + (int64_t)au.conf->access_token_ttl_ms : 0;
    s->t.expires_in_ms = n->with_refresh ? (int64_t)au.conf->access_token_ttl_ms : 0;
    char ah[AU_HASH_HEX], rh[AU_HASH_HEX];
    au_hash_hex(s->t.access_token, ah);
    mx_sql_add(b,
               "UPDATE auth_compat_sessions SET finished_ts = ? WHERE user_id = ? AND device_id = ?"
               " AND finished_ts IS NULL RETURNING id",
               "iss", now, s->t.user_id, s->t.device_id);
    mx_sql_add(b,
               "INSERT INTO auth_compat_sessions (id, user_id, device_id, scope, is_synapse_admin,"
               " human_name, sso_login_id, created_ts, browser_hash) VALUES (?, ?, ?, ?, ?, ?,"
               " ?, ?, (SELECT browser_hash FROM auth_compat_sso_logins WHERE id = ?))",
               "ssssissis", s->t.session_id, s->t.user_id, s->t.device_id, scope,
               (int64_t)(n->synapse_admin ? 1 : 0), s->human_name, n->sso_login_id, now,
               n->sso_login_id);
    /* The sessions finished above are older than the new one (created now). */
    mx_sql_add(b,
               "UPDATE auth_compat_access_tokens SET revoked = 1 WHERE session_id IN"
               " (SELECT id FROM auth_compat_sessions WHERE user_id = ? AND device_id = ?"
               " AND finished_ts IS NOT NULL AND id <> ?)",
               "sss", s->t.user_id, s->t.device_id, s->t.session_id);
    mx_sql_add(b,
               "INSERT INTO auth_compat_access_tokens (token_hash, session_id, created_ts,"
               " expires_ts) VALUES (?, ?, ?, ?)",
               exp ? "ssii" : "ssin", ah, s->t.session_id, now, exp);
    if (s->t.refresh_token) {
        au_hash_hex(s->t.refresh_token, rh);
        mx_sql_add(b,
                   "INSERT INTO auth_compat_refresh_tokens (token_hash, session_id, access_hash,"
                   " created_ts) VALUES (?, ?, ?, ?)",
                   "sssi", rh, s->t.session_id, ah, now);
    }
    int rc = mx_sql_run(b, au_cs_written, s);
    if (rc < 0)
        free(s);
    return rc;
}

/* ----------------------------------------------------------- finishing --- */

typedef struct au_cf {
    au_done_fn cb;
    void *ud;
    bool delete_device;
} au_cf_t;

static void au_cf_dev_deleted(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    (void)ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "could not delete the device of a compat session (%d)",
               status);
}

static void au_cf_done(int status, mx_sql_res_t *res, void *ud)
{
    au_cf_t *f = ud;
    if (status >= 0) {
        const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
        for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
            au_cache_evict_session(mx_sql_text(res, 0, i, 0));
            if (f->delete_device && users)
                users->delete_device(mx_sql_text(res, 0, i, 1), mx_sql_text(res, 0, i, 2),
                                     au_cf_dev_deleted, NULL);
        }
    }
    if (f->cb)
        f->cb(status < 0 ? status : mx_sql_nrows(res, 0), f->ud);
    free(f);
}

/* Finishes the live compat sessions matching `where` (SQL on
 * auth_compat_sessions with the "s" parameters `a`, `b`). */
static int au_cf_run(const char *where, const char *a, const char *b2, bool delete_device,
                     au_done_fn cb, void *ud)
{
    au_cf_t *f = calloc(1, sizeof(*f));
    mx_sql_batch_t *b = f ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(f);
        return -ENOMEM;
    }
    f->cb = cb;
    f->ud = ud;
    f->delete_device = delete_device;
    const char *types = b2 ? "iss" : "is";
    int64_t now = (int64_t)mx_now_ms();
    char sql[512];
    snprintf(sql, sizeof(sql),
             "UPDATE auth_compat_sessions SET finished_ts = ? WHERE finished_ts IS NULL AND %s"
             " RETURNING id, user_id, device_id",
             where);
    mx_sql_add(b, sql, types, now, a, b2);
    snprintf(sql, sizeof(sql),
             "UPDATE auth_compat_access_tokens SET revoked = 1 WHERE session_id IN"
             " (SELECT id FROM auth_compat_sessions WHERE finished_ts = ? AND %s)",
             where);
    mx_sql_add(b, sql, types, now, a, b2);
    snprintf(sql, sizeof(sql),
             "UPDATE auth_compat_refresh_tokens SET revoked = 1 WHERE session_id IN"
             " (SELECT id FROM auth_compat_sessions WHERE finished_ts = ? AND %s)",
             where);
    mx_sql_add(b, sql, types, now, a, b2);
    int rc = mx_sql_run(b, au_cf_done, f);
    if (rc < 0)
        free(f);
    return rc;
}

int au_compat_finish(const char *session_id, bool delete_device, au_done_fn cb, void *ud)
{
    if (!session_id)
        return -EINVAL;
    return au_cf_run("id = ?", session_id, NULL, delete_device, cb, ud);
}

int au_compat_finish_device(const char *user_id, const char *device_id, bool delete_device,
                            au_done_fn cb, void *ud)
{
    if (!user_id)
        return -EINVAL;
    if (!device_id)
        return au_cf_run("user_id = ?", user_id, NULL, delete_device, cb, ud);
    return au_cf_run("user_id = ? AND device_id = ?", user_id, device_id, delete_device, cb, ud);
}
