/*
 * e2_backup.c: server-side key backup (spec "Server-side key backups"):
 * /room_keys/version[/{version}] and /room_keys/keys[/{roomId}[/{sessionId}]].
 *
 * Versions are numbered per user (1, 2, ...; a deleted version's number is
 * not reused) and returned as strings.  Keys may only be written to the
 * current version: another one gets 403 M_WRONG_ROOM_KEYS_VERSION with
 * current_version.  A stored session is replaced only by a better one: a
 * verified key beats an unverified one; then the lower first_message_index
 * wins; then the lower forwarded_count.  The version's etag moves whenever
 * its keys change; PUT/DELETE answer {etag, count}.
 */
#include "e2ee.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bk_req {
    mx_req_t *req;
    e2_who_t *who;
    int64_t version;
    const char *room_id, *session_id;    /* path parameters or NULL */
    json_t *keys;                        /* [[room, session, key]] to write (owned) */
    int st_rooms;                        /* first per-room statement */
    json_t *rooms;                       /* {room: statement index} (owned) */
    int st_etag;                         /* statement of the etag read (count follows) */
} bk_req_t;

static void bk_free(void *p)
{
    bk_req_t *r = p;
    json_decref(r->keys);
    json_decref(r->rooms);
}

static char *bk_str(mx_req_t *req, int64_t v)
{
    return mx_psprintf(mx_req_pool(req), "%" PRId64, v);
}

/* Digits only, as versions are handed out; -1 otherwise. */
static int64_t bk_parse_version(const char *s)
{
    if (!s || !*s || strlen(s) > 18)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    return strtoll(s, NULL, 10);
}

static bk_req_t *bk_new(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    bk_req_t *r = mx_palloc(pool, sizeof(*r));
    if (!r) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->version = -1;
    r->room_id = mx_req_param(req, "roomId");
    r->session_id = mx_req_param(req, "sessionId");
    mx_pool_on_free(pool, bk_free, r);
    if (!(r->who = e2_who_copy(req, who))) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return NULL;
    }
    return r;
}

static bool bk_run(bk_req_t *r, mx_sql_batch_t *b, mx_sql_done_fn fn)
{
    if (mx_sql_run(b, fn, r) < 0) {
        hs_reply_storage_error(r->req, MX_EDB, "room_keys");
        return false;
    }
    return true;
}

/* -------------------------------------------------------------- versions --- */

static void bk_created(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        hs_reply_storage_error(r->req, status < 0 ? status : MX_EDB, "room_keys version");
        return;
    }
    mx_req_reply_json(r->req, 200,
                      json_pack("{s:s}", "version", bk_str(r->req, mx_sql_int(res, 0, 0, 0))));
}

static void bk_version_create(mx_req_t *req, const hs_user_t *who)
{
    json_t *body = e2_body(req);
    if (!body)
        return;
    const char *alg = json_string_value(json_object_get(body, "algorithm"));
    json_t *auth = json_object_get(body, "auth_data");
    if (!alg || !auth) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing params: algorithm, auth_data");
        return;
    }
    /* auth_data is opaque to the server (Synapse stores any JSON value) */
    bk_req_t *r = bk_new(req, who);
    if (!r)
        return;
    char *js = e2_dump(auth);
    mx_sql_batch_t *b = js ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(js);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data,"
                  " etag, deleted) SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, 0, 0"
                  " FROM e2e_room_keys_versions WHERE user_id = ? RETURNING version",
               "ssss", r->who->user_id, alg, js, r->who->user_id);
    free(js);
    bk_run(r, b, bk_created);
}

/* Adds the version row read: version, algorithm, auth_data, etag, count.
 * `version` < 0: the current one. */
static void bk_select_version(mx_sql_batch_t *b, const char *user_id, int64_t version)
{
    if (version < 0)
        mx_sql_add(b, "SELECT v.version, v.algorithm, v.auth_data, v.etag, (SELECT COUNT(*)"
                      " FROM e2e_room_keys k WHERE k.user_id = v.user_id AND k.version = v.version)"
                      " FROM e2e_room_keys_versions v WHERE v.user_id = ? AND v.deleted = 0"
                      " ORDER BY v.version DESC LIMIT 1", "s", user_id);
    else
        mx_sql_add(b, "SELECT v.version, v.algorithm, v.auth_data, v.etag, (SELECT COUNT(*)"
                      " FROM e2e_room_keys k WHERE k.user_id = v.user_id AND k.version = v.version)"
                      " FROM e2e_room_keys_versions v WHERE v.user_id = ? AND v.version = ?"
                      " AND v.deleted = 0", "si", user_id, version);
}

static void bk_version_read(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "room_keys version");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(r->req, 404, "M_NOT_FOUND",
                     r->version < 0 ? "No backup found" : "Unknown backup version");
        return;
    }
    json_t *auth = e2_load(mx_sql_text(res, 0, 0, 2));
    mx_req_reply_json(r->req, 200,
                      json_pack("{s:s, s:s, s:o, s:s, s:I}", "version",
                                bk_str(r->req, mx_sql_int(res, 0, 0, 0)), "algorithm",
                                mx_sql_text(res, 0, 0, 1), "auth_data", auth ? auth : json_object(),
                                "etag", bk_str(r->req, mx_sql_int(res, 0, 0, 3)), "count",
                                (json_int_t)mx_sql_int(res, 0, 0, 4)));
}

static void bk_version_get(mx_req_t *req, const hs_user_t *who)
{
    bk_req_t *r = bk_new(req, who);
    if (!r)
        return;
    const char *v = mx_req_param(req, "version");
    if (v && (r->version = bk_parse_version(v)) < 0) {
        mx_req_error(req, 404, "M_NOT_FOUND", "Unknown backup version");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    bk_select_version(b, r->who->user_id, r->version);
    bk_run(r, b, bk_version_read);
}

static void bk_version_updated(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "room_keys version");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0)
        mx_req_reply_json(r->req, 200, json_object());
    else if (mx_sql_nrows(res, 1) > 0)
        mx_req_error(r->req, 400, "M_INVALID_PARAM", "Algorithm does not match");
    else
        mx_req_error(r->req, 404, "M_NOT_FOUND", "Unknown backup version");
}

static void bk_version_put(mx_req_t *req, const hs_user_t *who)
{
    json_t *body = e2_body(req);
    if (!body)
        return;
    bk_req_t *r = bk_new(req, who);
    if (!r)
        return;
    const char *v = mx_req_param(req, "version");
    const char *alg = json_string_value(json_object_get(body, "algorithm"));
    json_t *auth = json_object_get(body, "auth_data");
    json_t *bv = json_object_get(body, "version");
    if (bv && (!json_is_string(bv) || strcmp(json_string_value(bv), v) != 0)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Version in body does not match");
        return;
    }
    if (!alg || !auth) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing params: algorithm, auth_data");
        return;
    }
    if ((r->version = bk_parse_version(v)) < 0) {
        mx_req_error(req, 404, "M_NOT_FOUND", "Unknown backup version");
        return;
    }
    char *js = e2_dump(auth);
    mx_sql_batch_t *b = js ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(js);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "UPDATE e2e_room_keys_versions SET auth_data = ? WHERE user_id = ? AND"
                  " version = ? AND deleted = 0 AND algorithm = ? RETURNING version",
               "ssis", js, r->who->user_id, r->version, alg);
    mx_sql_add(b, "SELECT algorithm FROM e2e_room_keys_versions WHERE user_id = ? AND"
                  " version = ? AND deleted = 0", "si", r->who->user_id, r->version);
    free(js);
    bk_run(r, b, bk_version_updated);
}

static void bk_version_deleted(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "room_keys version");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(r->req, 404, "M_NOT_FOUND", "Unknown backup version");
        return;
    }
    mx_req_reply_json(r->req, 200, json_object());
}

static void bk_version_delete(mx_req_t *req, const hs_user_t *who)
{
    bk_req_t *r = bk_new(req, who);
    if (!r)
        return;
    if ((r->version = bk_parse_version(mx_req_param(req, "version"))) < 0) {
        mx_req_error(req, 404, "M_NOT_FOUND", "Unknown backup version");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "UPDATE e2e_room_keys_versions SET deleted = 1 WHERE user_id = ? AND"
                  " version = ? AND deleted = 0 RETURNING version", "si", r->who->user_id,
               r->version);
    mx_sql_add(b, "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", "si",
               r->who->user_id, r->version);
    bk_run(r, b, bk_version_deleted);
}

static void bk_version_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *m = mx_req_method(req);
    if (strcmp(m, "POST") == 0)
        bk_version_create(req, who);
    else if (strcmp(m, "GET") == 0)
        bk_version_get(req, who);
    else if (strcmp(m, "PUT") == 0)
        bk_version_put(req, who);
    else
        bk_version_delete(req, who);
}

static int bk_version_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, bk_version_authed, NULL);
}

/* ------------------------------------------------------------------ keys --- */

static bool bk_key_ok(const json_t *k)
{
    return json_is_object(k) && json_is_integer(json_object_get(k, "first_message_index")) &&
           json_is_integer(json_object_get(k, "forwarded_count")) &&
           json_is_boolean(json_object_get(k, "is_verified")) &&
           /* opaque to the server: any JSON value (Synapse) */
           json_object_get(k, "session_data") != NULL;
}

/* Collects [room, session, key] triples from the body at the route's level;
 * false (replied 400) when malformed. */
static bool bk_collect(bk_req_t *r, json_t *body)
{
    r->keys = json_array();
    json_t *rooms;
    if (r->session_id) {
        rooms = json_pack("{s:{s:{s:O}}}", r->room_id, "sessions", r->session_id, body);
    } else if (r->room_id) {
        rooms = json_pack("{s:O}", r->room_id, body);
    } else {
        rooms = json_incref(json_object_get(body, "rooms"));
        if (!json_is_object(rooms)) {
            json_decref(rooms);
            mx_req_error(r->req, 400, "M_BAD_JSON", "rooms must be an object");
            return false;
        }
    }
    const char *rid;
    json_t *room;
    bool ok = true;
    json_object_foreach(rooms, rid, room) {
        json_t *sessions = json_object_get(room, "sessions");
        if (!json_is_object(sessions)) {
            ok = false;
            break;
        }
        const char *sid;
        json_t *k;
        json_object_foreach(sessions, sid, k) {
            if (!bk_key_ok(k)) {
                ok = false;
                break;
            }
            json_array_append_new(r->keys, json_pack("[s, s, O]", rid, sid, k));
        }
    }
    json_decref(rooms);
    if (!ok)
        mx_req_error(r->req, 400, "M_BAD_JSON", "Invalid room key backup data");
    return ok;
}

/* Is `k` better than the stored row (cols fmi, fc, verified from col 1)? */
static bool bk_better(const json_t *k, const mx_sql_res_t *res, int st, int row)
{
    int64_t fmi = json_integer_value(json_object_get(k, "first_message_index"));
    int64_t fc = json_integer_value(json_object_get(k, "forwarded_count"));
    int ver = json_is_true(json_object_get(k, "is_verified"));
    int64_t ofmi = mx_sql_int(res, st, row, 1), ofc = mx_sql_int(res, st, row, 2);
    int over = mx_sql_int(res, st, row, 3) != 0;
    if (ver != over)
        return ver > over;
    if (fmi != ofmi)
        return fmi < ofmi;
    return fc < ofc;
}

static void bk_reply_etag(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "room_keys");
        return;
    }
    int st = r->st_etag;
    mx_req_reply_json(r->req, 200, json_pack("{s:s, s:I}", "etag",
                                             bk_str(r->req, mx_sql_int(res, st, 0, 0)),
                                             "count", (json_int_t)mx_sql_int(res, st + 1, 0, 0)));
}

/* Whether the version read at statement 0 allows writing; replies if not. */
static bool bk_version_current(bk_req_t *r, const mx_sql_res_t *res)
{
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(r->req, 404, "M_NOT_FOUND", "No backup found");
        return false;
    }
    int64_t cur = mx_sql_int(res, 0, 0, 0);
    if (cur != r->version) {
        json_t *e = json_pack("{s:s, s:s, s:s}", "errcode", "M_WRONG_ROOM_KEYS_VERSION", "error",
                              "Wrong backup version.", "current_version", bk_str(r->req, cur));
        mx_req_reply_json(r->req, 403, e);
        return false;
    }
    return true;
}

static void bk_put_read(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "room_keys");
        return;
    }
    if (!bk_version_current(r, res))
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(r->req, -ENOMEM, "room_keys");
        return;
    }
    int changed = 0;
    size_t i;
    json_t *t;
    json_array_foreach(r->keys, i, t) {
        const char *rid = json_string_value(json_array_get(t, 0));
        const char *sid = json_string_value(json_array_get(t, 1));
        json_t *k = json_array_get(t, 2);
        int st = (int)json_integer_value(json_object_get(r->rooms, rid));
        int row = -1;
        for (int j = 0; j < mx_sql_nrows(res, st); j++)
            if (strcmp(mx_sql_text(res, st, j, 0), sid) == 0)
                row = j;
        if (row >= 0 && !bk_better(k, res, st, row))
            continue;
        char *sd = e2_dump(json_object_get(k, "session_data"));
        mx_sql_add(b, "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id,"
                      " first_message_index, forwarded_count, is_verified, session_data)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, version, room_id,"
                      " session_id) DO UPDATE SET first_message_index = excluded.first_message_index,"
                      " forwarded_count = excluded.forwarded_count, is_verified ="
                      " excluded.is_verified, session_data = excluded.session_data",
                   "sissiiis", r->who->user_id, r->version, rid, sid,
                   (int64_t)json_integer_value(json_object_get(k, "first_message_index")),
                   (int64_t)json_integer_value(json_object_get(k, "forwarded_count")),
                   (int64_t)json_is_true(json_object_get(k, "is_verified")), sd ? sd : "{}");
        free(sd);
        changed++;
    }
    r->st_etag = changed;
    if (changed) {
        mx_sql_add(b, "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND"
                      " version = ?", "si", r->who->user_id, r->version);
        r->st_etag++;
    }
    mx_sql_add(b, "SELECT etag FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
               "si", r->who->user_id, r->version);
    mx_sql_add(b, "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", "si",
               r->who->user_id, r->version);
    bk_run(r, b, bk_reply_etag);
}

static void bk_keys_put(bk_req_t *r)
{
    json_t *body = e2_body(r->req);
    if (!body || !bk_collect(r, body))
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(r->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT version FROM e2e_room_keys_versions WHERE user_id = ? AND deleted = 0"
                  " ORDER BY version DESC LIMIT 1", "s", r->who->user_id);
    r->rooms = json_object();
    int st = 1;
    size_t i;
    json_t *t;
    json_array_foreach(r->keys, i, t) {
        const char *rid = json_string_value(json_array_get(t, 0));
        if (json_object_get(r->rooms, rid))
            continue;
        mx_sql_add(b, "SELECT session_id, first_message_index, forwarded_count, is_verified"
                      " FROM e2e_room_keys WHERE user_id = ? AND version = ? AND room_id = ?",
                   "sis", r->who->user_id, r->version, rid);
        json_object_set_new(r->rooms, rid, json_integer(st++));
    }
    bk_run(r, b, bk_put_read);
}

static json_t *bk_row_key(const mx_sql_res_t *res, int st, int i)
{
    json_t *sd = e2_load(mx_sql_text(res, st, i, 5));
    return json_pack("{s:I, s:I, s:b, s:o}", "first_message_index",
                     (json_int_t)mx_sql_int(res, st, i, 2), "forwarded_count",
                     (json_int_t)mx_sql_int(res, st, i, 3), "is_verified",
                     mx_sql_int(res, st, i, 4) != 0, "session_data", sd ? sd : json_object());
}

static void bk_get_read(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "room_keys");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(r->req, 404, "M_NOT_FOUND", "Unknown backup version");
        return;
    }
    int n = mx_sql_nrows(res, 1);
    if (r->session_id) {
        if (n < 1) {
            mx_req_error(r->req, 404, "M_NOT_FOUND", "No room_keys found");
            return;
        }
        mx_req_reply_json(r->req, 200, bk_row_key(res, 1, 0));
        return;
    }
    json_t *rooms = json_object();
    for (int i = 0; i < n; i++) {
        const char *rid = mx_sql_text(res, 1, i, 0);
        json_t *room = json_object_get(rooms, rid);
        if (!room) {
            room = json_pack("{s:{}}", "sessions");
            json_object_set_new(rooms, rid, room);
        }
        json_object_set_new(json_object_get(room, "sessions"), mx_sql_text(res, 1, i, 1),
                            bk_row_key(res, 1, i));
    }
    json_t *out;
    if (r->room_id) {
        out = json_incref(json_object_get(rooms, r->room_id));
        if (!out)
            out = json_pack("{s:{}}", "sessions");
        json_decref(rooms);
    } else {
        out = json_pack("{s:o}", "rooms", rooms);
    }
    mx_req_reply_json(r->req, 200, out);
}

/* Adds the key selection of the route's level. */
static void bk_where(bk_req_t *r, mx_sql_batch_t *b, const char *head)
{
    char sql[512];
    if (r->session_id) {
        snprintf(sql, sizeof(sql), "%s WHERE user_id = ? AND version = ? AND room_id = ? AND"
                                   " session_id = ?", head);
        mx_sql_add(b, sql, "siss", r->who->user_id, r->version, r->room_id, r->session_id);
    } else if (r->room_id) {
        snprintf(sql, sizeof(sql), "%s WHERE user_id = ? AND version = ? AND room_id = ?", head);
        mx_sql_add(b, sql, "sis", r->who->user_id, r->version, r->room_id);
    } else {
        snprintf(sql, sizeof(sql), "%s WHERE user_id = ? AND version = ?", head);
        mx_sql_add(b, sql, "si", r->who->user_id, r->version);
    }
}

static void bk_keys_get(bk_req_t *r)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(r->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT version FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?"
                  " AND deleted = 0", "si", r->who->user_id, r->version);
    bk_where(r, b, "SELECT room_id, session_id, first_message_index, forwarded_count,"
                   " is_verified, session_data FROM e2e_room_keys");
    bk_run(r, b, bk_get_read);
}

static void bk_del_done(int status, mx_sql_res_t *res, void *ud)
{
    bk_req_t *r = ud;
    if (status == 0 && mx_sql_nrows(res, 0) < 1) {
        mx_req_error(r->req, 404, "M_NOT_FOUND", "Unknown backup version");
        return;
    }
    bk_reply_etag(status, res, ud);
}

static void bk_keys_delete(bk_req_t *r)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(r->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND"
                  " version = ? AND deleted = 0 RETURNING version", "si", r->who->user_id,
               r->version);
    bk_where(r, b, "DELETE FROM e2e_room_keys");
    r->st_etag = 2;
    mx_sql_add(b, "SELECT etag FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
               "si", r->who->user_id, r->version);
    mx_sql_add(b, "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", "si",
               r->who->user_id, r->version);
    bk_run(r, b, bk_del_done);
}

static void bk_keys_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    bk_req_t *r = bk_new(req, who);
    if (!r)
        return;
    const char *v = mx_req_query(req, "version");
    if (!v) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing string query param: version");
        return;
    }
    const char *m = mx_req_method(req);
    if ((r->version = bk_parse_version(v)) < 0) {
        if (strcmp(m, "PUT") == 0) /* compared with the current one like any other */
            r->version = -2;
        else {
            mx_req_error(req, 404, "M_NOT_FOUND", "Unknown backup version");
            return;
        }
    }
    if (strcmp(m, "PUT") == 0)
        bk_keys_put(r);
    else if (strcmp(m, "GET") == 0)
        bk_keys_get(r);
    else
        bk_keys_delete(r);
}

static int bk_keys_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, bk_keys_authed, NULL);
}

int e2_backup_routes(void)
{
    static const char *const keys[] = {
        "/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}",
    };
    static const char *const methods[] = { "GET", "PUT", "DELETE" };
    int rc;
    if ((rc = e2_route("POST", "/room_keys/version", bk_version_h, MX_ROUTE_JSON_BODY,
                       E2_ALL)) < 0 ||
        (rc = e2_route("GET", "/room_keys/version", bk_version_h, 0, E2_ALL)) < 0 ||
        (rc = e2_route("GET", "/room_keys/version/{version}", bk_version_h, 0, E2_ALL)) < 0 ||
        (rc = e2_route("PUT", "/room_keys/version/{version}", bk_version_h, MX_ROUTE_JSON_BODY,
                       E2_ALL)) < 0 ||
        (rc = e2_route("DELETE", "/room_keys/version/{version}", bk_version_h, 0, E2_ALL)) < 0)
        return rc;
    for (size_t i = 0; i < 3; i++)
        for (size_t m = 0; m < 3; m++)
            if ((rc = e2_route(methods[m], keys[i], bk_keys_h,
                               m == 1 ? MX_ROUTE_JSON_BODY : 0, E2_ALL)) < 0)
                return rc;
    return 0;
}
