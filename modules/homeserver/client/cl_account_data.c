/*
 * cl_account_data.c: account data (global and per room), room tags (kept
 * as the m.tag room account data item, as clients see it in /sync) and the
 * "account_data" sync provider that adds account_data.events and
 * rooms.join.<id>.account_data.events incrementally by stream position.
 *
 * m.fully_read and m.push_rules have their own APIs and are refused here
 * with 405 M_BAD_JSON like Synapse does.  m.ignored_user_list is stored as
 * any other item; its effects belong to rooms/sync.
 */
#include "client.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define AD_TAG_RETRIES 5

/* --------------------------------------------------------- the writer --- */

int64_t cl_ad_add(mx_sql_batch_t *b, const char *user_id, const char *room_id,
                  const char *type, const json_t *content)
{
    char *js = json_dumps(content, JSON_COMPACT);
    if (!js)
        return -ENOMEM;
    int64_t pos = hs_stream_next(HS_STREAM_ACCOUNT_DATA);
    if (pos < 0) {
        free(js);
        return pos;
    }
    int rc = mx_sql_add(b,
                        "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id, type) DO UPDATE"
                        " SET content = excluded.content, stream_id = excluded.stream_id",
                        "ssssi", user_id, room_id, type, js, pos);
    free(js);
    if (rc < 0) {
        hs_stream_persisted(HS_STREAM_ACCOUNT_DATA, pos);
        return rc;
    }
    return pos;
}

int hs_account_data_select(mx_sql_batch_t *b, const char *user_id, const char *room_id,
                           const char *type)
{
    return mx_sql_add(b, "SELECT content FROM account_data WHERE user_id = ? AND room_id = ?"
                         " AND type = ?", "sss", user_id, room_id ? room_id : "", type);
}

void cl_ad_written(const char *user_id, int64_t pos, bool ok)
{
    hs_stream_persisted(HS_STREAM_ACCOUNT_DATA, pos);
    if (ok)
        hs_notify_users(&user_id, 1, HS_STREAM_ACCOUNT_DATA);
}

/* Types with their own API (Synapse: _check_can_set_account_data_type). */
static bool ad_type_refused(mx_req_t *req, const char *type)
{
    if (strcmp(type, "m.fully_read") == 0) {
        mx_req_error(req, 405, "M_BAD_JSON",
                     "Cannot set m.fully_read through this API. Use /rooms/!roomId:server.name/read_markers");
        return true;
    }
    if (strcmp(type, "m.push_rules") == 0) {
        mx_req_error(req, 405, "M_BAD_JSON", "Cannot set m.push_rules through this API. Use /pushrules");
        return true;
    }
    return false;
}

/* ------------------------------------------------------ PUT / GET item --- */

typedef struct ad_put {
    cl_req_t *cr;
    int64_t pos;
} ad_put_t;

static void ad_put_done(int status, mx_sql_res_t *res, void *ud)
{
    ad_put_t *p = ud;
    (void)res;
    cl_ad_written(p->cr->who->user_id, p->pos, status == 0);
    if (status < 0) {
        hs_reply_storage_error(p->cr->req, status, "account data write");
        return;
    }
    mx_req_reply_json(p->cr->req, 200, json_object());
}

/* Common checks of the four item handlers; the room is NULL for global
 * items.  Returns the request state, or NULL when already replied. */
static cl_req_t *ad_check(mx_req_t *req, const hs_user_t *who, bool put, const char **type)
{
    const char *user_id = mx_req_param(req, "userId");
    const char *room_id = mx_req_param(req, "roomId");
    *type = mx_req_param(req, "type");
    if (!cl_is_self(req, who, user_id,
                    put ? "Cannot add account data for other users."
                        : "Cannot get account data for other users."))
        return NULL;
    if (room_id && !cl_room_id_ok(room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "%s is not a valid room ID", room_id);
        return NULL;
    }
    if (!*type || !**type || strlen(*type) > 255) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid account data type");
        return NULL;
    }
    if (put && ad_type_refused(req, *type))
        return NULL;
    cl_req_t *cr = cl_req_new(req, who);
    if (cr)
        cr->room_id = room_id;
    return cr;
}

static void ad_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *type;
    cl_req_t *cr = ad_check(req, who, true, &type);
    if (!cr)
        return;
    json_t *body = mx_req_json(req);
    if (!json_is_object(body)) {
        mx_req_error(req, 400, "M_BAD_JSON", "Content must be a JSON object");
        return;
    }
    ad_put_t *p = mx_palloc(mx_req_pool(req), sizeof(*p));
    mx_sql_batch_t *b = p ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    p->cr = cr;
    p->pos = cl_ad_add(b, who->user_id, cr->room_id ? cr->room_id : "", type, body);
    if (p->pos < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, (int)p->pos, "account data write");
        return;
    }
    int rc = mx_sql_run(b, ad_put_done, p);
    if (rc < 0) {
        cl_ad_written(who->user_id, p->pos, false);
        hs_reply_storage_error(req, rc, "account data write");
    }
}

static void ad_get_done(int status, mx_sql_res_t *res, void *ud)
{
    cl_req_t *cr = ud;
    if (status < 0) {
        hs_reply_storage_error(cr->req, status, "account data read");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(cr->req, 404, "M_NOT_FOUND",
                     cr->room_id ? "Room account data not found" : "Account data not found");
        return;
    }
    const char *js = mx_sql_text(res, 0, 0, 0);
    json_t *v = js ? json_loads(js, 0, NULL) : NULL;
    if (!v) {
        hs_reply_storage_error(cr->req, -EIO, "account data decode");
        return;
    }
    mx_req_reply_json(cr->req, 200, v);
}

static void ad_get_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *type;
    cl_req_t *cr = ad_check(req, who, false, &type);
    if (!cr)
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
               "sss", who->user_id, cr->room_id ? cr->room_id : "", type);
    int rc = mx_sql_run(b, ad_get_done, cr);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "account data read");
}

static int ad_put_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, ad_put_authed, ud);
}

static int ad_get_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, ad_get_authed, ud);
}

/* -------------------------------------------------------------- tags --- */

typedef struct ad_tag {
    cl_req_t *cr;
    const char *tag;       /* NULL for GET */
    json_t *tag_content;   /* PUT: borrowed request body; NULL for DELETE */
    int64_t pos;
    int tries;
} ad_tag_t;

static void ad_tag_read(ad_tag_t *t);

static void ad_tag_written(int status, mx_sql_res_t *res, void *ud)
{
    ad_tag_t *t = ud;
    bool changed = status == 0 && mx_sql_changes(res, 0) > 0;
    cl_ad_written(t->cr->who->user_id, t->pos, changed);
    if (status < 0) {
        hs_reply_storage_error(t->cr->req, status, "tag write");
        return;
    }
    if (!changed) {
        /* Someone else changed m.tag since we read it: read it again. */
        if (++t->tries >= AD_TAG_RETRIES) {
            mx_req_error(t->cr->req, 500, "M_UNKNOWN", "Too much contention on room tags");
            return;
        }
        ad_tag_read(t);
        return;
    }
    mx_req_reply_json(t->cr->req, 200, json_object());
}

static void ad_tag_got(int status, mx_sql_res_t *res, void *ud)
{
    ad_tag_t *t = ud;
    mx_req_t *req = t->cr->req;
    if (status < 0) {
        hs_reply_storage_error(req, status, "tag read");
        return;
    }
    bool exists = mx_sql_nrows(res, 0) > 0;
    json_t *content = NULL;
    int64_t old_pos = 0;
    if (exists) {
        const char *js = mx_sql_text(res, 0, 0, 0);
        content = js ? json_loads(js, 0, NULL) : NULL;
        old_pos = mx_sql_int(res, 0, 0, 1);
    }
    if (!json_is_object(content)) {
        json_decref(content);
        content = json_object();
    }
    json_t *tags = json_object_get(content, "tags");
    if (!json_is_object(tags)) {
        tags = json_object();
        json_object_set_new(content, "tags", tags);
    }
    if (!t->tag) { /* GET */
        mx_req_reply_json(req, 200, json_pack("{s:O}", "tags", tags));
        json_decref(content);
        return;
    }
    if (!t->tag_content) { /* DELETE */
        if (!json_object_get(tags, t->tag)) {
            json_decref(content);
            mx_req_reply_json(req, 200, json_object());
            return;
        }
        json_object_del(tags, t->tag);
    } else {
        json_object_set(tags, t->tag, t->tag_content);
    }
    char *js = json_dumps(content, JSON_COMPACT);
    json_decref(content);
    mx_sql_batch_t *b = js ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(js);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    t->pos = hs_stream_next(HS_STREAM_ACCOUNT_DATA);
    const char *user_id = t->cr->who->user_id;
    /* Conditional on the row we read, so two concurrent tag changes never
     * lose one another: the loser sees no change and reads again. */
    if (exists)
        mx_sql_add(b, "UPDATE account_data SET content = ?, stream_id = ? WHERE user_id = ?"
                      " AND room_id = ? AND type = 'm.tag' AND stream_id = ?",
                   "sissi", js, t->pos, user_id, t->cr->room_id, old_pos);
    else
        mx_sql_add(b, "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
                      " VALUES (?, ?, 'm.tag', ?, ?) ON CONFLICT (user_id, room_id, type) DO NOTHING",
                   "sssi", user_id, t->cr->room_id, js, t->pos);
    free(js);
    int rc = mx_sql_run(b, ad_tag_written, t);
    if (rc < 0) {
        cl_ad_written(user_id, t->pos, false);
        hs_reply_storage_error(req, rc, "tag write");
    }
}

static void ad_tag_read(ad_tag_t *t)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(t->cr->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT content, stream_id FROM account_data WHERE user_id = ? AND room_id = ?"
                  " AND type = 'm.tag'",
               "ss", t->cr->who->user_id, t->cr->room_id);
    int rc = mx_sql_run(b, ad_tag_got, t);
    if (rc < 0)
        hs_reply_storage_error(t->cr->req, rc, "tag read");
}

static void ad_tag_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *method = mx_req_method(req);
    bool is_get = strcmp(method, "GET") == 0;
    const char *room_id = mx_req_param(req, "roomId");
    if (!cl_is_self(req, who, mx_req_param(req, "userId"),
                    is_get ? "Cannot get tags for other users." : "Cannot set tags for other users."))
        return;
    if (!cl_room_id_ok(room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "%s is not a valid room ID", room_id ? room_id : "");
        return;
    }
    cl_req_t *cr = cl_req_new(req, who);
    ad_tag_t *t = cr ? mx_palloc(mx_req_pool(req), sizeof(*t)) : NULL;
    if (!t) {
        if (cr)
            mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(t, 0, sizeof(*t));
    cr->room_id = room_id;
    t->cr = cr;
    if (!is_get) {
        t->tag = mx_req_param(req, "tag");
        if (!t->tag || !*t->tag || strlen(t->tag) > 255) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid tag");
            return;
        }
        if (strcmp(method, "PUT") == 0) {
            t->tag_content = mx_req_json(req);
            if (!json_is_object(t->tag_content)) {
                mx_req_error(req, 400, "M_BAD_JSON", "Tag content must be a JSON object");
                return;
            }
            json_t *order = json_object_get(t->tag_content, "order");
            if (order && !json_is_number(order)) {
                mx_req_error(req, 400, "M_INVALID_PARAM", "'order' must be a number");
                return;
            }
        }
    }
    ad_tag_read(t);
}

static int ad_tag_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, ad_tag_authed, ud);
}

/* ------------------------------------------------------- sync provider --- */

typedef struct ad_sync {
    hs_sync_ctx_t *sc;
    hs_sync_part_done_fn done;
} ad_sync_t;

/* filter.room.rooms / not_rooms (and the same keys of its sub-filters). */
static bool ad_room_allowed(const json_t *room_filter, const char *room_id)
{
    if (cl_json_has_string(json_object_get(room_filter, "not_rooms"), room_id))
        return false;
    const json_t *rooms = json_object_get(room_filter, "rooms");
    return !json_is_array(rooms) || cl_json_has_string(rooms, room_id);
}

static void ad_sync_got(int status, mx_sql_res_t *res, void *ud)
{
    ad_sync_t *s = ud;
    hs_sync_ctx_t *sc = s->sc;
    if (status < 0) {
        s->done(sc, status);
        return;
    }
    const json_t *gfilter = json_object_get(sc->filter, "account_data");
    const json_t *rfilter = json_object_get(sc->filter, "room");
    const json_t *rad_filter = json_object_get(rfilter, "account_data");
    json_t *global = json_array();
    int n = mx_sql_nrows(res, 0);
    for (int i = 0; i < n; i++) {
        const char *room_id = mx_sql_text(res, 0, i, 0);
        const char *type = mx_sql_text(res, 0, i, 1);
        const char *js = mx_sql_text(res, 0, i, 2);
        json_t *content = js ? json_loads(js, 0, NULL) : NULL;
        if (!content || !type)
            goto next;
        bool is_room = room_id && *room_id;
        if (!is_room) {
            if (gfilter && !hs_filter_match(gfilter, type, sc->who->user_id))
                goto next;
            json_array_append_new(global, json_pack("{s:s, s:O}", "type", type, "content", content));
            goto next;
        }
        if (!cl_json_has_string(sc->joined_rooms, room_id) || !ad_room_allowed(rfilter, room_id))
            goto next;
        if (rad_filter && (!ad_room_allowed(rad_filter, room_id) ||
                           !hs_filter_match(rad_filter, type, sc->who->user_id)))
            goto next;
        json_t *room = hs_sync_joined_room(sc, room_id);
        if (room) {
            json_t *ad = json_object_get(room, "account_data");
            if (!json_is_object(ad)) {
                ad = json_object();
                json_object_set_new(room, "account_data", ad);
            }
            json_t *evs = json_object_get(ad, "events");
            if (!json_is_array(evs)) {
                evs = json_array();
                json_object_set_new(ad, "events", evs);
            }
            json_array_append_new(evs, json_pack("{s:s, s:O}", "type", type, "content", content));
        }
next:
        json_decref(content);
    }
    json_t *ad = json_object_get(sc->response, "account_data");
    json_t *evs = json_object_get(ad, "events");
    if (json_is_array(evs)) {
        json_array_extend(evs, global);
        json_decref(global);
    } else {
        json_object_set_new(sc->response, "account_data", json_pack("{s:o}", "events", global));
    }
    s->done(sc, 0);
}

static void ad_sync(hs_sync_ctx_t *sc, hs_sync_part_done_fn done)
{
    /* Nothing new on this stream: no read (most long-poll wake-ups). */
    if (!sc->initial && sc->since[HS_STREAM_ACCOUNT_DATA] >= sc->upto[HS_STREAM_ACCOUNT_DATA]) {
        if (!json_object_get(sc->response, "account_data"))
            json_object_set_new(sc->response, "account_data", json_pack("{s:[]}", "events"));
        done(sc, 0);
        return;
    }
    ad_sync_t *s = mx_palloc(sc->pool, sizeof(*s));
    mx_sql_batch_t *b = s ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        done(sc, -ENOMEM);
        return;
    }
    s->sc = sc;
    s->done = done;
    int64_t since = sc->initial ? 0 : sc->since[HS_STREAM_ACCOUNT_DATA];
    mx_sql_add(b, "SELECT room_id, type, content FROM account_data WHERE user_id = ?"
                  " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
               "sii", sc->who->user_id, since, sc->upto[HS_STREAM_ACCOUNT_DATA]);
    int rc = mx_sql_run(b, ad_sync_got, s);
    if (rc < 0)
        done(sc, rc);
}

int cl_account_data_start(void)
{
    int rc;
    if ((rc = cl_route("PUT", "/user/{userId}/account_data/{type}", ad_put_h, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = cl_route("GET", "/user/{userId}/account_data/{type}", ad_get_h, 0)) < 0 ||
        (rc = cl_route("PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", ad_put_h,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = cl_route("GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", ad_get_h, 0)) < 0 ||
        (rc = cl_route("GET", "/user/{userId}/rooms/{roomId}/tags", ad_tag_h, 0)) < 0 ||
        (rc = cl_route("PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", ad_tag_h,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = cl_route("DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", ad_tag_h, 0)) < 0)
        return rc;
    return hs_sync_add_part("account_data", ad_sync);
}
