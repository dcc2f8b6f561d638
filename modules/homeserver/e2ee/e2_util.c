/*
 * e2_util.c: small helpers every file of the E2EE part uses (requester
 * copy, route registration under v3/r0/unstable, JSON text, signature
 * checks) and the device-list stream: the rows written on every device or
 * key change, the wake-ups after they commit, and the queries that turn two
 * sync positions into device_lists.changed / left.
 */
#include "e2ee.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- requests --- */

e2_who_t *e2_who_copy(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    e2_who_t *w = mx_palloc(pool, sizeof(*w));
    if (!w)
        return NULL;
    w->user_id = mx_pstrdup(pool, who->user_id);
    w->device_id = who->device_id ? mx_pstrdup(pool, who->device_id) : NULL;
    w->token_id = who->token_id;
    if (!w->user_id || (who->device_id && !w->device_id))
        return NULL;
    return w;
}

int e2_route(const char *method, const char *tail, mx_handler_fn fn, unsigned flags,
             unsigned variants)
{
    static const struct {
        unsigned bit;
        const char *prefix;
    } pfx[] = {
        { E2_V3, "/_matrix/client/v3" },
        { E2_R0, "/_matrix/client/r0" },
        { E2_UNSTABLE, "/_matrix/client/unstable" },
    };
    char path[256];
    for (size_t i = 0; i < sizeof(pfx) / sizeof(pfx[0]); i++) {
        if (!(variants & pfx[i].bit))
            continue;
        snprintf(path, sizeof(path), "%s%s", pfx[i].prefix, tail);
        int rc = mx_route_add("client", method, path, fn, NULL, flags);
        if (rc < 0)
            return rc;
    }
    return 0;
}

json_t *e2_body(mx_req_t *req)
{
    json_t *b = mx_req_json(req);
    if (!json_is_object(b)) {
        mx_req_error(req, 400, "M_NOT_JSON", "Content not JSON.");
        return NULL;
    }
    return b;
}

const char *e2_server_of(const char *user_id)
{
    const char *c = user_id ? strchr(user_id, ':') : NULL;
    return c ? c + 1 : NULL;
}

bool e2_is_local(const char *user_id)
{
    const char *s = e2_server_of(user_id);
    return s && strcmp(s, hs.server_name) == 0;
}

char *e2_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

json_t *e2_load(const char *s)
{
    return s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
}

/* ------------------------------------------------------------ signatures --- */

const char *e2_cs_pubkey(const json_t *key, const char **key_id)
{
    const json_t *keys = json_object_get(key, "keys");
    if (!json_is_object(keys) || json_object_size(keys) != 1)
        return NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)keys, k, v) {
        if (strncmp(k, "ed25519:", 8) != 0 || !json_is_string(v))
            return NULL;
        if (key_id)
            *key_id = k;
        return json_string_value(v);
    }
    return NULL;
}

bool e2_verify(const json_t *obj, const char *signer, const char *key_id, const char *pk_b64)
{
    return mx_json_verify(obj, signer, key_id, pk_b64) == 0;
}

/* --------------------------------------------------------- device lists --- */

int64_t e2_dl_add(mx_sql_batch_t *b, const char *user_id, const char *only_for)
{
    int64_t pos = hs_stream_next(HS_STREAM_DEVICE_LISTS);
    if (pos < 0)
        return pos;
    int rc = mx_sql_add(b, "INSERT INTO e2e_device_lists_stream (stream_id, user_id, only_for)"
                           " VALUES (?, ?, ?)", "iss", pos, user_id, only_for);
    if (rc < 0) {
        hs_stream_persisted(HS_STREAM_DEVICE_LISTS, pos);
        return rc;
    }
    return pos;
}

typedef struct e2_dl_wake {
    char *user_id;
} e2_dl_wake_t;

static void e2_dl_rooms_read(int status, mx_sql_res_t *res, void *ud)
{
    e2_dl_wake_t *w = ud;
    if (status == 0)
        for (int i = 0; i < mx_sql_nrows(res, 0); i++)
            hs_notify_room(mx_sql_text(res, 0, i, 0), HS_STREAM_DEVICE_LISTS);
    free(w->user_id);
    free(w);
}

void e2_dl_written(const char *user_id, const char *only_for, int64_t pos, bool ok)
{
    if (pos <= 0)
        return;
    hs_stream_persisted(HS_STREAM_DEVICE_LISTS, pos);
    if (!ok)
        return;
    const char *me = only_for ? only_for : user_id;
    hs_notify_users(&me, 1, HS_STREAM_DEVICE_LISTS);
    if (only_for)
        return;
    /* Everyone in the user's rooms: their waiters are subscribed to them. */
    e2_dl_wake_t *w = calloc(1, sizeof(*w));
    mx_sql_batch_t *b = w ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b || !(w->user_id = strdup(user_id))) {
        mx_sql_batch_free(b);
        free(w);
        return;
    }
    mx_sql_add(b, "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'",
               "s", user_id);
    if (mx_sql_run(b, e2_dl_rooms_read, w) < 0) {
        free(w->user_id);
        free(w);
    }
}

int e2_dl_query(mx_sql_batch_t *b, const char *user_id, const int64_t *from, const int64_t *to)
{
    int64_t fdl = from[HS_STREAM_DEVICE_LISTS], tdl = to[HS_STREAM_DEVICE_LISTS];
    int64_t fev = from[HS_STREAM_EVENTS], tev = to[HS_STREAM_EVENTS];
    /* 1. key/device changes of users sharing a joined room (or ourselves);
     * private rows only for the user they are meant for. */
    mx_sql_add(b,
               "SELECT DISTINCT d.user_id FROM e2e_device_lists_stream d"
               " WHERE d.stream_id > ? AND d.stream_id <= ? AND (d.only_for = ? OR"
               " (d.only_for IS NULL AND (d.user_id = ? OR EXISTS (SELECT 1 FROM room_memberships a"
               "  JOIN room_memberships o ON o.room_id = a.room_id WHERE a.user_id = ?"
               "  AND a.membership = 'join' AND o.user_id = d.user_id AND o.membership = 'join'))))",
               "iisss", fdl, tdl, user_id, user_id, user_id);
    /* 2. users we newly share a room with (they or we joined). */
    mx_sql_add(b,
               "SELECT DISTINCT o.user_id FROM room_memberships a JOIN room_memberships o"
               " ON o.room_id = a.room_id WHERE a.user_id = ? AND a.membership = 'join'"
               " AND o.membership = 'join' AND o.user_id <> ? AND a.stream_ordering <= ?"
               " AND o.stream_ordering <= ? AND (a.stream_ordering > ? OR o.stream_ordering > ?)",
               "ssiiii", user_id, user_id, tev, tev, fev, fev);
    /* 3. users we no longer share any room with after a leave in the window. */
    mx_sql_add(b,
               "SELECT DISTINCT o.user_id FROM room_memberships a JOIN room_memberships o"
               " ON o.room_id = a.room_id WHERE a.user_id = ? AND o.user_id <> ? AND"
               " ((a.membership IN ('leave', 'ban') AND a.stream_ordering > ? AND"
               "   a.stream_ordering <= ? AND o.membership = 'join') OR"
               "  (a.membership = 'join' AND o.membership IN ('leave', 'ban') AND"
               "   o.stream_ordering > ? AND o.stream_ordering <= ?))"
               " AND NOT EXISTS (SELECT 1 FROM room_memberships c JOIN room_memberships e"
               "  ON e.room_id = c.room_id WHERE c.user_id = ? AND c.membership = 'join'"
               "  AND e.user_id = o.user_id AND e.membership = 'join')",
               "ssiiiis", user_id, user_id, fev, tev, fev, tev, user_id);
    return 3;
}

json_t *e2_dl_result(const mx_sql_res_t *res, int st, const char *user_id)
{
    (void)user_id;
    json_t *left = json_object(), *changed = json_object();
    for (int i = 0; i < mx_sql_nrows(res, st + 2); i++)
        json_object_set_new(left, mx_sql_text(res, st + 2, i, 0), json_true());
    for (int s = st; s < st + 2; s++)
        for (int i = 0; i < mx_sql_nrows(res, s); i++) {
            const char *u = mx_sql_text(res, s, i, 0);
            if (u && !json_object_get(left, u))
                json_object_set_new(changed, u, json_true());
        }
    json_t *out = json_pack("{s:[], s:[]}", "changed", "left");
    const char *k;
    json_t *v;
    json_object_foreach(changed, k, v)
        json_array_append_new(json_object_get(out, "changed"), json_string(k));
    json_object_foreach(left, k, v)
        json_array_append_new(json_object_get(out, "left"), json_string(k));
    json_decref(changed);
    json_decref(left);
    return out;
}

/* -------------------------------------------------------------- devices --- */

void e2_device_forget(mx_sql_batch_t *b, const char *user_id, const char *device_id)
{
    static const char *const tables[] = {
        "e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "e2e_device_inbox",
    };
    char sql[128];
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE user_id = ? AND device_id = ?",
                 tables[i]);
        mx_sql_add(b, sql, "ss", user_id, device_id);
    }
    mx_sql_add(b, "DELETE FROM e2e_signatures WHERE target_user_id = ? AND target_key_id = ?",
               "ss", user_id, device_id);
}
