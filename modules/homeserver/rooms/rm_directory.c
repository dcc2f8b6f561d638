/*
 * rm_directory.c: the public room directory — GET/PUT
 * /directory/list/room/{roomId} (rooms.is_public) and GET/POST /publicRooms
 * (filter.generic_search_term, limit, since/next_batch tokens "p<offset>").
 * The listing is two statements: the public rooms with their joined member
 * counts, and the few state events a directory entry shows.
 */
#include "rooms.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dr_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *room_id;
    int vis;                  /* PUT: 1 public, 0 private */
    int limit;                /* -1: none */
    int64_t offset;
    char *term;               /* lower-cased search term or NULL (pool) */
} dr_ctx_t;

/* ------------------------------------------------- list/room visibility --- */

static void dr_vis_read(int status, mx_sql_res_t *res, void *ud)
{
    dr_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "directory");
        return;
    }
    if (mx_sql_nrows(res, 0) == 0) {
        mx_req_error(c->req, 404, "M_NOT_FOUND", "unknown room");
        return;
    }
    mx_req_reply_json(c->req, 200, json_pack("{s:s}", "visibility",
                                             mx_sql_int(res, 0, 0, 0) ? "public" : "private"));
}

static int dr_vis_get(mx_req_t *req, void *ud)
{
    (void)ud;
    dr_ctx_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!c || !b) {
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    c->req = req;
    mx_sql_add(b, "SELECT is_public FROM rooms WHERE room_id = ?", "s",
               mx_req_param(req, "roomId"));
    if (mx_sql_run(b, dr_vis_read, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, MX_EDB, "directory");
        return MX_DONE;
    }
    return MX_ASYNC;
}

static void dr_vis_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    dr_ctx_t *c = ud;
    if (status < 0)
        hs_reply_storage_error(c->req, status, "directory");
    else
        mx_req_reply_json(c->req, 200, json_object());
}

static void dr_vis_room(rm_room_t *room, int status, void *ud)
{
    dr_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status))
        return;
    /* Like Synapse: who may set the canonical alias may publish the room. */
    if (!c->who->is_admin &&
        !rm_may_send_state(room, c->who->user_id, "m.room.canonical_alias")) {
        mx_req_error(c->req, 403, "M_FORBIDDEN", "you may not change the room's visibility");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "UPDATE rooms SET is_public = ? WHERE room_id = ?", "is", (int64_t)c->vis,
               room->room_id);
    if (mx_sql_run(b, dr_vis_written, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "directory");
    }
}

static void dr_vis_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    const char *v = json_string_value(json_object_get(body, "visibility"));
    if (v && strcmp(v, "public") && strcmp(v, "private")) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "visibility must be public or private");
        return;
    }
    dr_ctx_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->vis = v && strcmp(v, "public") == 0;
    rm_room_get(mx_req_param(req, "roomId"), dr_vis_room, c);
}

static int dr_vis_put(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, dr_vis_put_authed, NULL);
}

/* -------------------------------------------------------- /publicRooms --- */

static bool dr_contains(const char *hay, const char *lower_needle)
{
    if (!hay)
        return false;
    size_t n = strlen(lower_needle);
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == lower_needle[i])
            i++;
        if (i == n)
            return true;
    }
    return false;
}

static void dr_list_read(int status, mx_sql_res_t *res, void *ud)
{
    dr_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "public rooms");
        return;
    }
    /* room_id -> entry */
    json_t *entries = json_object();
    json_t *order = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        const char *rid = mx_sql_text(res, 0, i, 0);
        json_t *e = json_pack("{s:s, s:I, s:b, s:b}", "room_id", rid, "num_joined_members",
                              (json_int_t)mx_sql_int(res, 0, i, 1), "world_readable", 0,
                              "guest_can_join", 0);
        json_object_set_new(entries, rid, e);
        json_array_append_new(order, json_string(rid));
    }
    for (int i = 0; i < mx_sql_nrows(res, 1); i++) {
        json_t *e = json_object_get(entries, mx_sql_text(res, 1, i, 0));
        const char *type = mx_sql_text(res, 1, i, 1);
        const char *js = mx_sql_text(res, 1, i, 2);
        json_t *ev = js ? json_loads(js, 0, NULL) : NULL;
        json_t *ct = json_object_get(ev, "content");
        if (!e || !ct) {
            json_decref(ev);
            continue;
        }
#define DR_COPY(t, from, to)                                                   \
    if (strcmp(type, t) == 0 && json_is_string(json_object_get(ct, from)))     \
        json_object_set(e, to, json_object_get(ct, from));
        DR_COPY("m.room.name", "name", "name")
        DR_COPY("m.room.topic", "topic", "topic")
        DR_COPY("m.room.avatar", "url", "avatar_url")
        DR_COPY("m.room.canonical_alias", "alias", "canonical_alias")
        DR_COPY("m.room.join_rules", "join_rule", "join_rule")
        DR_COPY("m.room.create", "type", "room_type")
#undef DR_COPY
        const char *v;
        if (strcmp(type, "m.room.history_visibility") == 0 &&
            (v = json_string_value(json_object_get(ct, "history_visibility"))))
            json_object_set_new(e, "world_readable", json_boolean(strcmp(v, "world_readable") == 0));
        if (strcmp(type, "m.room.guest_access") == 0 &&
            (v = json_string_value(json_object_get(ct, "guest_access"))))
            json_object_set_new(e, "guest_can_join", json_boolean(strcmp(v, "can_join") == 0));
        json_decref(ev);
    }
    json_t *all = json_array();
    size_t i;
    json_t *rid;
    json_array_foreach(order, i, rid) {
        json_t *e = json_object_get(entries, json_string_value(rid));
        if (c->term && !dr_contains(json_string_value(json_object_get(e, "name")), c->term) &&
            !dr_contains(json_string_value(json_object_get(e, "topic")), c->term) &&
            !dr_contains(json_string_value(json_object_get(e, "canonical_alias")), c->term))
            continue;
        json_array_append(all, e);
    }
    json_decref(order);
    json_decref(entries);
    size_t total = json_array_size(all);
    size_t from = (size_t)c->offset < total ? (size_t)c->offset : total;
    size_t to = c->limit >= 0 && from + (size_t)c->limit < total ? from + (size_t)c->limit : total;
    json_t *chunk = json_array();
    for (size_t k = from; k < to; k++)
        json_array_append(chunk, json_array_get(all, k));
    json_decref(all);
    json_t *out = json_pack("{s:o, s:I}", "chunk", chunk, "total_room_count_estimate",
                            (json_int_t)total);
    mx_pool_t *pool = mx_req_pool(c->req);
    if (to < total)
        json_object_set_new(out, "next_batch", json_string(mx_psprintf(pool, "p%zu", to)));
    if (from > 0) {
        size_t prev = c->limit >= 0 && from > (size_t)c->limit ? from - (size_t)c->limit : 0;
        json_object_set_new(out, "prev_batch", json_string(mx_psprintf(pool, "p%zu", prev)));
    }
    mx_req_reply_json(c->req, 200, out);
}

static int dr_list(mx_req_t *req, json_t *body)
{
    mx_pool_t *pool = mx_req_pool(req);
    dr_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->limit = -1;
    const char *since = NULL;
    if (body) {
        json_t *l = json_object_get(body, "limit");
        if (json_is_integer(l))
            c->limit = (int)json_integer_value(l);
        since = json_string_value(json_object_get(body, "since"));
        const char *t = json_string_value(
            json_object_get(json_object_get(body, "filter"), "generic_search_term"));
        if (t && *t)
            c->term = mx_pstrdup(pool, t);
    } else {
        const char *l = mx_req_query(req, "limit");
        if (l && *l)
            c->limit = atoi(l);
        since = mx_req_query(req, "since");
    }
    if (since && *since) {
        if (since[0] != 'p') {
            mx_req_error(req, 400, "M_INVALID_PARAM", "bad since token");
            return MX_DONE;
        }
        c->offset = atoll(since + 1);
    }
    if (c->term)
        for (char *p = c->term; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    mx_sql_add(b, "SELECT r.room_id, (SELECT COUNT(*) FROM room_memberships m"
                  " WHERE m.room_id = r.room_id AND m.membership = 'join') AS n"
                  " FROM rooms r WHERE r.is_public = 1 ORDER BY n DESC, r.room_id", "");
    mx_sql_add(b, "SELECT c.room_id, c.type, e.json FROM current_state c"
                  " JOIN rooms r ON r.room_id = c.room_id"
                  " JOIN events e ON e.event_id = c.event_id"
                  " WHERE r.is_public = 1 AND c.state_key = '' AND c.type IN ('m.room.name',"
                  " 'm.room.topic', 'm.room.avatar', 'm.room.canonical_alias',"
                  " 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access',"
                  " 'm.room.create')", "");
    if (mx_sql_run(b, dr_list_read, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, MX_EDB, "public rooms");
        return MX_DONE;
    }
    return MX_ASYNC;
}

static int dr_list_get(mx_req_t *req, void *ud)
{
    (void)ud;
    return dr_list(req, NULL);
}

static void dr_list_post_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    (void)who;
    json_t *body = rm_body(req);
    if (body)
        dr_list(req, body);
}

static int dr_list_post(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, dr_list_post_authed, NULL);
}

int rm_directory_routes(void)
{
    int rc;
    if ((rc = rm_route("GET", "/directory/list/room/{roomId}", dr_vis_get, 0)) < 0 ||
        (rc = rm_route("PUT", "/directory/list/room/{roomId}", dr_vis_put,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("GET", "/publicRooms", dr_list_get, 0)) < 0 ||
        (rc = rm_route("POST", "/publicRooms", dr_list_post, MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
