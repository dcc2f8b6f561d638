/*
 * acc_tokens.c: access and refresh tokens.
 *
 * Tokens are opaque random strings in Synapse's shape ("syt_" + base64 of
 * the localpart + "_" + random; "syr_" for refresh tokens).  Only their
 * sha256 (hex) is stored, so a database leak leaks no usable token and a
 * lookup by hash cannot leak timing about the token itself.
 *
 * Validated tokens are cached in memory (hash -> user/device), so /sync and
 * sends do not hit the database per request.  Every revocation (logout,
 * device deletion, deactivation, refresh rotation) evicts through the bus
 * topic "homeserver.accounts.evict", so other processes evict too; a
 * generation counter stops a lookup that raced with an eviction from
 * caching a stale answer.
 *
 * This file also provides the `auth.token` service (when the auth module
 * did not register one) and the batched last-seen figures of devices.
 */
#include "acc_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACC_CACHE_TTL_MS (10 * 60 * 1000)
#define ACC_SEEN_KEEP_MS (10 * 60 * 1000)
#define ACC_EVICT_TOPIC "homeserver.accounts.evict"

typedef struct acc_tok_ent {
    hs_token_info_t info;
    uint64_t valid_until_ms;    /* 0: none */
    uint64_t cached_ms, used_ms;
} acc_tok_ent_t;

typedef struct acc_seen {
    char user_id[256], device_id[256];
    char ip[64];
    char ua[256];
    uint64_t ts;
    bool dirty;
} acc_seen_t;

/* ------------------------------------------------------------- hashing --- */

void acc_token_hash(const char *token, char out[ACC_HASH_HEX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    mx_sha256(token, strlen(token), d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

static char *acc_token_new(mx_pool_t *pool, const char *prefix, const char *user_id)
{
    char *lp = acc_localpart(pool, user_id);
    char *b64 = mx_b64_encode(lp ? lp : "", lp ? strlen(lp) : 0, 1);
    char *rnd = mx_random_string(20);
    char *tok = NULL;
    if (b64 && rnd)
        tok = mx_psprintf(pool, "%s_%s_%s", prefix, b64, rnd);
    free(b64);
    free(rnd);
    return tok;
}

char *acc_device_id_new(mx_pool_t *pool)
{
    unsigned char r[ACC_DEVICE_ID_LEN];
    char *id = mx_palloc(pool, ACC_DEVICE_ID_LEN + 1);
    if (!id)
        return NULL;
    mx_random_bytes(r, sizeof(r));
    /* 26^10 IDs: like Synapse's random_string(10).upper(); the tiny bias of
     * % 26 does not matter for an identifier. */
    for (int i = 0; i < ACC_DEVICE_ID_LEN; i++)
        id[i] = (char)('A' + r[i] % 26);
    id[ACC_DEVICE_ID_LEN] = '\0';
    return id;
}

/* ------------------------------------------------------------- sessions --- */

int acc_session_add(mx_sql_batch_t *b, mx_pool_t *pool, const char *user_id,
                    const char *device_id, const char *display_name, bool refresh,
                    acc_session_t *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t now = mx_now_ms();
    out->user_id = user_id;
    out->device_id = device_id ? device_id : acc_device_id_new(pool);
    out->access_token = acc_token_new(pool, "syt", user_id);
    if (!out->device_id || !out->access_token)
        return -ENOMEM;
    char ah[ACC_HASH_HEX], rh[ACC_HASH_HEX];
    acc_token_hash(out->access_token, ah);

    /* Re-using a device ID keeps the device (and its display name) but
     * invalidates the tokens it had (spec: POST /login device_id). */
    mx_sql_add(b,
               "INSERT INTO devices (user_id, device_id, display_name, created_ts)"
               " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO NOTHING",
               "sssi", user_id, out->device_id, display_name, (int64_t)now);
    mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", "ss", user_id,
               out->device_id);
    mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", "ss",
               user_id, out->device_id);
    if (refresh && hs.conf.refresh_tokens) {
        out->refresh_token = acc_token_new(pool, "syr", user_id);
        if (!out->refresh_token)
            return -ENOMEM;
        acc_token_hash(out->refresh_token, rh);
        /* Refreshable tokens expire after access_token_lifetime (when set);
         * tokens of clients that cannot refresh never expire. */
        out->expires_in_ms = (int64_t)hs.conf.access_token_lifetime_ms;
        mx_sql_add(b,
                   "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)"
                   " VALUES (?, ?, ?, ?)",
                   "sssi", rh, user_id, out->device_id, (int64_t)now);
        if (out->expires_in_ms)
            mx_sql_add(b,
                       "INSERT INTO access_tokens (token_hash, user_id, device_id, valid_until_ms,"
                       " refresh_token_id, created_ts) VALUES (?, ?, ?, ?,"
                       " (SELECT id FROM refresh_tokens WHERE token_hash = ?), ?)",
                       "sssisi", ah, user_id, out->device_id, (int64_t)(now + out->expires_in_ms),
                       rh, (int64_t)now);
        else
            mx_sql_add(b,
                       "INSERT INTO access_tokens (token_hash, user_id, device_id,"
                       " refresh_token_id, created_ts) VALUES (?, ?, ?,"
                       " (SELECT id FROM refresh_tokens WHERE token_hash = ?), ?)",
                       "ssssi", ah, user_id, out->device_id, rh, (int64_t)now);
    } else {
        mx_sql_add(b,
                   "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts)"
                   " VALUES (?, ?, ?, ?)",
                   "sssi", ah, user_id, out->device_id, (int64_t)now);
    }
    return 0;
}

int acc_session_refresh_add(mx_sql_batch_t *b, mx_pool_t *pool, int64_t old_refresh_id,
                            const char *user_id, const char *device_id, acc_session_t *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t now = mx_now_ms();
    out->user_id = user_id;
    out->device_id = device_id;
    out->access_token = acc_token_new(pool, "syt", user_id);
    out->refresh_token = acc_token_new(pool, "syr", user_id);
    if (!out->access_token || !out->refresh_token)
        return -ENOMEM;
    char ah[ACC_HASH_HEX], rh[ACC_HASH_HEX];
    acc_token_hash(out->access_token, ah);
    acc_token_hash(out->refresh_token, rh);
    out->expires_in_ms = (int64_t)hs.conf.access_token_lifetime_ms;
    mx_sql_add(b,
               "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)"
               " VALUES (?, ?, ?, ?)",
               "sssi", rh, user_id, device_id, (int64_t)now);
    mx_sql_add(b,
               "UPDATE refresh_tokens SET next_token_id ="
               " (SELECT id FROM refresh_tokens WHERE token_hash = ?) WHERE id = ?",
               "si", rh, old_refresh_id);
    if (out->expires_in_ms)
        mx_sql_add(b,
                   "INSERT INTO access_tokens (token_hash, user_id, device_id, valid_until_ms,"
                   " refresh_token_id, created_ts) VALUES (?, ?, ?, ?,"
                   " (SELECT id FROM refresh_tokens WHERE token_hash = ?), ?)",
                   "sssisi", ah, user_id, device_id, (int64_t)(now + out->expires_in_ms), rh,
                   (int64_t)now);
    else
        mx_sql_add(b,
                   "INSERT INTO access_tokens (token_hash, user_id, device_id,"
                   " refresh_token_id, created_ts) VALUES (?, ?, ?,"
                   " (SELECT id FROM refresh_tokens WHERE token_hash = ?), ?)",
                   "ssssi", ah, user_id, device_id, rh, (int64_t)now);
    return 0;
}

void acc_session_json(json_t *obj, const acc_session_t *s)
{
    json_object_set_new(obj, "user_id", json_string(s->user_id));
    json_object_set_new(obj, "access_token", json_string(s->access_token));
    json_object_set_new(obj, "device_id", json_string(s->device_id));
    json_object_set_new(obj, "home_server", json_string(hs.server_name));
    if (s->refresh_token)
        json_object_set_new(obj, "refresh_token", json_string(s->refresh_token));
    if (s->expires_in_ms)
        json_object_set_new(obj, "expires_in_ms", json_integer(s->expires_in_ms));
}

/* ---------------------------------------------------------------- cache --- */

typedef struct acc_evict_q {
    const char *user_id, *device_id;
    const json_t *ids;
} acc_evict_q_t;

static bool acc_evict_pred(const char *key, void *val, void *ud)
{
    (void)key;
    const acc_tok_ent_t *e = val;
    const acc_evict_q_t *q = ud;
    if (q->ids) {
        size_t i;
        json_t *v;
        json_array_foreach(q->ids, i, v)
            if (json_integer_value(v) == e->info.token_id)
                return true;
        return false;
    }
    if (!q->user_id || strcmp(e->info.user_id, q->user_id) != 0)
        return false;
    return !q->device_id || !strcmp(e->info.device_id, q->device_id);
}

static void acc_evict_local(const json_t *msg)
{
    acc_evict_q_t q = {
        .user_id = json_string_value(json_object_get(msg, "user_id")),
        .device_id = json_string_value(json_object_get(msg, "device_id")),
        .ids = json_object_get(msg, "token_ids"),
    };
    if (q.ids && !json_is_array(q.ids))
        q.ids = NULL;
    if (!q.ids && !q.user_id)
        return;
    hs_acc->cache_gen++;
    acc_map_filter(&hs_acc->tok_cache, acc_evict_pred, &q);
}

static void acc_evict_sub(const char *topic, const json_t *msg, void *ud)
{
    (void)topic;
    (void)ud;
    acc_evict_local(msg);
}

static void acc_evict_publish(json_t *msg)
{
    if (!msg)
        return;
    /* The bus delivers to our own subscriber too (synchronously); evict
     * directly as well in case publishing fails. */
    acc_evict_local(msg);
    mx_bus_publish(ACC_EVICT_TOPIC, msg);
    json_decref(msg);
}

void acc_cache_evict_device(const char *user_id, const char *device_id)
{
    acc_evict_publish(device_id ? json_pack("{s:s, s:s}", "user_id", user_id, "device_id", device_id)
                                : json_pack("{s:s}", "user_id", user_id));
}

void acc_cache_evict_ids(const json_t *ids)
{
    if (json_array_size(ids))
        acc_evict_publish(json_pack("{s:O}", "token_ids", ids));
}

static bool acc_stale_pred(const char *key, void *val, void *ud)
{
    (void)key;
    const acc_tok_ent_t *e = val;
    uint64_t now = *(const uint64_t *)ud;
    return now - e->cached_ms > ACC_CACHE_TTL_MS ||
           (e->valid_until_ms && now >= e->valid_until_ms);
}

typedef struct acc_oldest {
    const char *key;
    uint64_t used_ms;
} acc_oldest_t;

static void acc_find_oldest(const char *key, void *val, void *ud)
{
    const acc_tok_ent_t *e = val;
    acc_oldest_t *o = ud;
    if (!o->key || e->used_ms < o->used_ms) {
        o->key = key;
        o->used_ms = e->used_ms;
    }
}

static void acc_cache_put(const char *hash, const hs_token_info_t *info, uint64_t valid_until)
{
    if (hs_acc->tok_cache.n >= ACC_CACHE_MAX) {
        uint64_t now = mx_now_ms();
        acc_map_filter(&hs_acc->tok_cache, acc_stale_pred, &now);
    }
    while (hs_acc->tok_cache.n >= ACC_CACHE_MAX) {
        /* Least recently used goes; a scan of a few thousand entries only
         * happens on a cache miss, which costs a database read anyway. */
        acc_oldest_t o = { 0 };
        acc_map_each(&hs_acc->tok_cache, acc_find_oldest, &o);
        if (!o.key)
            break;
        char k[ACC_HASH_HEX];
        snprintf(k, sizeof(k), "%s", o.key);
        acc_map_del(&hs_acc->tok_cache, k);
    }
    acc_tok_ent_t *e = calloc(1, sizeof(*e));
    if (!e)
        return;
    e->info = *info;
    e->valid_until_ms = valid_until;
    e->cached_ms = e->used_ms = mx_now_ms();
    if (acc_map_put(&hs_acc->tok_cache, hash, e) < 0)
        free(e);
}

/* ------------------------------------------------------------ validation --- */

typedef struct acc_val {
    hs_token_done_fn cb;
    void *ud;
    uint64_t gen;
    char hash[ACC_HASH_HEX];
    hs_token_info_t info;
    uint64_t valid_until;
} acc_val_t;

/* The token is valid: cache it (unless an eviction raced with the lookup)
 * and answer. */
static void acc_val_ok(acc_val_t *v)
{
    if (v->gen == hs_acc->cache_gen)
        acc_cache_put(v->hash, &v->info, v->valid_until);
    v->cb(0, &v->info, v->ud);
    free(v);
}

static void acc_used_done(int status, mx_sql_res_t *res, void *ud)
{
    acc_val_t *v = ud;
    if (status < 0) {
        v->cb(status, NULL, v->ud);
        free(v);
        return;
    }
    /* Tokens of the refresh token this one replaced are gone now. */
    json_t *ids = json_array();
    for (int r = 0; r < mx_sql_nrows(res, 1); r++)
        json_array_append_new(ids, json_integer(mx_sql_int(res, 1, r, 0)));
    acc_cache_evict_ids(ids);
    json_decref(ids);
    v->gen = hs_acc->cache_gen;
    acc_val_ok(v);
}

/* First use of an access token: when a refresh issued it, the refresh token
 * it replaced (and that one's access tokens) are revoked now (spec:
 * "Refreshing access tokens").  The request waits for this write, so a
 * client cannot use the old refresh token after its new token worked. */
static void acc_mark_used(acc_val_t *v, int64_t refresh_id)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        v->cb(-ENOMEM, NULL, v->ud);
        free(v);
        return;
    }
    mx_sql_add(b, "UPDATE access_tokens SET used = 1 WHERE id = ?", "i", v->info.token_id);
    mx_sql_add(b,
               "DELETE FROM access_tokens WHERE refresh_token_id IN"
               " (SELECT id FROM refresh_tokens WHERE next_token_id = ?) RETURNING id",
               "i", refresh_id);
    mx_sql_add(b, "DELETE FROM refresh_tokens WHERE next_token_id = ?", "i", refresh_id);
    int rc = mx_sql_run(b, acc_used_done, v);
    if (rc < 0) {
        mx_sql_batch_free(b);
        v->cb(rc, NULL, v->ud);
        free(v);
    }
}

static void acc_val_done(int status, mx_sql_res_t *res, void *ud)
{
    acc_val_t *v = ud;
    hs_token_info_t info;
    memset(&info, 0, sizeof(info));
    if (status < 0) {
        v->cb(status, NULL, v->ud);
        free(v);
        return;
    }
    if (mx_sql_nrows(res, 0) < 1 || mx_sql_int(res, 0, 0, 8)) {
        v->cb(-ENOENT, NULL, v->ud);
        free(v);
        return;
    }
    int64_t id = mx_sql_int(res, 0, 0, 0);
    uint64_t valid_until =
        mx_sql_is_null(res, 0, 0, 3) ? 0 : (uint64_t)mx_sql_int(res, 0, 0, 3);
    bool used = mx_sql_int(res, 0, 0, 4) != 0;
    int64_t refresh_id = mx_sql_is_null(res, 0, 0, 5) ? 0 : mx_sql_int(res, 0, 0, 5);
    snprintf(info.user_id, sizeof(info.user_id), "%s", mx_sql_text(res, 0, 0, 1));
    const char *dev = mx_sql_text(res, 0, 0, 2);
    snprintf(info.device_id, sizeof(info.device_id), "%s", dev ? dev : "");
    info.is_guest = mx_sql_int(res, 0, 0, 6) != 0;
    info.is_admin = mx_sql_int(res, 0, 0, 7) != 0;
    info.token_id = id;
    if (mx_sql_int(res, 0, 0, 9)) {
        v->cb(-EKEYREVOKED, &info, v->ud);   /* locked account: soft logout */
        free(v);
        return;
    }
    if (valid_until && mx_now_ms() >= valid_until) {
        v->cb(-EKEYEXPIRED, &info, v->ud);
        free(v);
        return;
    }
    v->info = info;
    v->valid_until = valid_until;
    if (!used && refresh_id > 0) {
        acc_mark_used(v, refresh_id);
        return;
    }
    acc_val_ok(v);
}

static int acc_validate(const char *token, hs_token_done_fn cb, void *ud)
{
    if (!token || !cb)
        return -EINVAL;
    char hash[ACC_HASH_HEX];
    acc_token_hash(token, hash);
    acc_tok_ent_t *e = acc_map_get(&hs_acc->tok_cache, hash);
    if (e) {
        uint64_t now = mx_now_ms();
        if (e->valid_until_ms && now >= e->valid_until_ms) {
            hs_token_info_t info = e->info;
            acc_map_del(&hs_acc->tok_cache, hash);
            cb(-EKEYEXPIRED, &info, ud);
            return 0;
        }
        if (now - e->cached_ms <= ACC_CACHE_TTL_MS) {
            e->used_ms = now;
            cb(0, &e->info, ud);
            return 0;
        }
        acc_map_del(&hs_acc->tok_cache, hash);
    }
    acc_val_t *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->cb = cb;
    v->ud = ud;
    v->gen = hs_acc->cache_gen;
    memcpy(v->hash, hash, sizeof(hash));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        free(v);
        return -ENOMEM;
    }
    mx_sql_add(b,
               "SELECT t.id, t.user_id, t.device_id, t.valid_until_ms, t.used,"
               " t.refresh_token_id, u.is_guest, u.admin, u.deactivated, u.locked"
               " FROM access_tokens t JOIN users u ON u.name = t.user_id"
               " WHERE t.token_hash = ?",
               "s", hash);
    int rc = mx_sql_run(b, acc_val_done, v);
    if (rc < 0) {
        mx_sql_batch_free(b);
        free(v);
    }
    return rc;
}

static const mx_auth_token_iface_t acc_token_iface = { .validate = acc_validate };

int acc_tokens_start(void)
{
    /* The homeserver's own tokens stay checkable under their own name, so
     * an `auth.token` provider (the auth module) can fall back to them;
     * `homeserver.users` is registered alongside (acc_service.c). */
    int lrc = mx_service_register("homeserver.legacy_token", &acc_token_iface);
    if ((lrc < 0 && lrc != -EEXIST) || (lrc = acc_users_service_start()) < 0)
        return lrc;
    if (!mx_service_get("auth.token")) {
        int rc = mx_service_register("auth.token", &acc_token_iface);
        if (rc < 0 && rc != -EEXIST)
            return rc;
    }
    return mx_bus_subscribe(ACC_EVICT_TOPIC, acc_evict_sub, NULL);
}

/* ------------------------------------------------------------ last seen --- */

void hs_accounts_note_seen(const char *user_id, const char *device_id, const char *ip,
                           const char *user_agent)
{
    if (!hs_acc || !user_id || !device_id || !*device_id)
        return;
    char key[520];
    snprintf(key, sizeof(key), "%s\x1f%s", user_id, device_id);
    acc_seen_t *s = acc_map_get(&hs_acc->seen, key);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return;
        snprintf(s->user_id, sizeof(s->user_id), "%s", user_id);
        snprintf(s->device_id, sizeof(s->device_id), "%s", device_id);
        if (acc_map_put(&hs_acc->seen, key, s) < 0) {
            free(s);
            return;
        }
    }
    snprintf(s->ip, sizeof(s->ip), "%s", ip ? ip : "");
    snprintf(s->ua, sizeof(s->ua), "%s", user_agent ? user_agent : "");
    s->ts = mx_now_ms();
    s->dirty = true;
}

typedef struct acc_seen_batch {
    mx_sql_batch_t *b;
    int n;
} acc_seen_batch_t;

static void acc_seen_add(const char *key, void *val, void *ud)
{
    (void)key;
    acc_seen_t *s = val;
    acc_seen_batch_t *sb = ud;
    if (!s->dirty)
        return;
    sb->n++;
    mx_sql_add(sb->b,
               "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?"
               " WHERE user_id = ? AND device_id = ?",
               "issss", (int64_t)s->ts, s->ip, s->ua, s->user_id, s->device_id);
    s->dirty = false;
}

static bool acc_seen_old(const char *key, void *val, void *ud)
{
    (void)key;
    const acc_seen_t *s = val;
    return !s->dirty && *(const uint64_t *)ud - s->ts > ACC_SEEN_KEEP_MS;
}

static void acc_seen_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    hs_acc->flush_running = false;
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "accounts: last-seen update failed: %s",
               mx_sql_errmsg(res) ? mx_sql_errmsg(res) : "?");
}

void acc_seen_flush(void)
{
    uint64_t now = mx_now_ms();
    if (!hs_acc->seen.n || hs_acc->flush_running)
        return;
    acc_seen_batch_t sb = { mx_sql_batch_new(hs.db, MX_SQL_WRITE), 0 };
    if (!sb.b)
        return;
    acc_map_each(&hs_acc->seen, acc_seen_add, &sb);
    if (!sb.n) {
        mx_sql_batch_free(sb.b);
    } else {
        hs_acc->flush_running = true;
        if (mx_sql_run(sb.b, acc_seen_done, NULL) < 0) {
            hs_acc->flush_running = false;
            mx_sql_batch_free(sb.b);
        }
    }
    acc_map_filter(&hs_acc->seen, acc_seen_old, &now);
}

void acc_seen_merge(const char *user_id, json_t *devices)
{
    size_t i;
    json_t *d;
    json_array_foreach(devices, i, d) {
        char key[520];
        snprintf(key, sizeof(key), "%s\x1f%s", user_id,
                 json_string_value(json_object_get(d, "device_id")));
        const acc_seen_t *s = acc_map_get(&hs_acc->seen, key);
        if (!s)
            continue;
        json_object_set_new(d, "last_seen_ts", json_integer((json_int_t)s->ts));
        json_object_set_new(d, "last_seen_ip", s->ip[0] ? json_string(s->ip) : json_null());
    }
}
