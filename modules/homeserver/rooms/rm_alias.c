/*
 * rm_alias.c: room aliases — PUT/GET/DELETE /directory/room/{roomAlias}
 * and GET /rooms/{roomId}/aliases.  Aliases live in room_aliases; only
 * aliases of this server are stored (no federation queries yet).
 */
#include "rooms.h"

#include <errno.h>
#include <string.h>

typedef struct al_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *alias;
    const char *room_id;
} al_ctx_t;

/* "#local:server" with our server name; replies 400 when not. */
static bool al_valid(mx_req_t *req, const char *alias, bool must_be_local)
{
    const char *colon = alias ? strchr(alias, ':') : NULL;
    if (!alias || alias[0] != '#' || !colon || colon == alias + 1 || !colon[1] ||
        strlen(alias) > 255) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "invalid room alias");
        return false;
    }
    if (must_be_local && strcmp(colon + 1, hs.server_name) != 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "room alias must be on this server");
        return false;
    }
    return true;
}

static al_ctx_t *al_new(mx_req_t *req, const hs_user_t *who)
{
    al_ctx_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = who ? rm_who_copy(req, who) : NULL;
    c->alias = mx_req_param(req, "roomAlias");
    return c;
}

static int al_run(al_ctx_t *c, mx_sql_batch_t *b, mx_sql_done_fn cb)
{
    if (mx_sql_run(b, cb, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "aliases");
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- GET --- */

static void al_got(int status, mx_sql_res_t *res, void *ud)
{
    al_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "alias lookup");
        return;
    }
    if (mx_sql_nrows(res, 0) == 0) {
        mx_req_error(c->req, 404, "M_NOT_FOUND", "room alias %s not found", c->alias);
        return;
    }
    mx_req_reply_json(c->req, 200, json_pack("{s:s, s:[s]}", "room_id", mx_sql_text(res, 0, 0, 0),
                                             "servers", hs.server_name));
}

static int al_get(mx_req_t *req, void *ud)
{
    (void)ud;
    al_ctx_t *c = al_new(req, NULL);
    if (!c)
        return MX_DONE;
    if (!al_valid(req, c->alias, false))
        return MX_DONE;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    mx_sql_add(b, "SELECT room_id FROM room_aliases WHERE alias = ?", "s", c->alias);
    al_run(c, b, al_got);
    return MX_ASYNC;
}

/* --------------------------------------------------------------- PUT --- */

static void al_put_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    al_ctx_t *c = ud;
    if (status == MX_ECONSTRAINT)
        mx_req_error(c->req, 409, "M_ROOM_IN_USE", "room alias %s already exists", c->alias);
    else if (status < 0)
        hs_reply_storage_error(c->req, status, "creating alias");
    else
        mx_req_reply_json(c->req, 200, json_object());
}

static void al_put_room(rm_room_t *room, int status, void *ud)
{
    al_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status))
        return;
    const char *m = rm_membership(room, c->who->user_id);
    if (!m || strcmp(m, "join") != 0) {
        mx_req_error(c->req, 403, "M_FORBIDDEN", "you must be in the room to add an alias");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?, ?, ?)", "sss",
               c->alias, room->room_id, c->who->user_id);
    al_run(c, b, al_put_done);
}

static void al_put_exists(int status, mx_sql_res_t *res, void *ud)
{
    al_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "alias lookup");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        mx_req_error(c->req, 409, "M_ROOM_IN_USE", "room alias %s already exists", c->alias);
        return;
    }
    rm_room_get(c->room_id, al_put_room, c);
}

static void al_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    al_ctx_t *c = al_new(req, who);
    if (!c || !al_valid(req, c->alias, true))
        return;
    c->room_id = json_string_value(json_object_get(body, "room_id"));
    if (!rm_room_id_ok(c->room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "room_id is missing or invalid");
        return;
    }
    c->room_id = mx_pstrdup(mx_req_pool(req), c->room_id);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "SELECT room_id FROM room_aliases WHERE alias = ?", "s", c->alias);
    al_run(c, b, al_put_exists);
}

/* ------------------------------------------------------------ DELETE ---
 * Like Synapse, a deleted alias is also taken out of the room's
 * m.room.canonical_alias (alias and alt_aliases), sent as the deleting user
 * when the auth rules allow it; the DELETE succeeds either way. */

static void al_canon_sent(int status, rm_txn_t *t, void *ud)
{
    (void)status;
    (void)t;
    al_ctx_t *c = ud;
    mx_req_reply_json(c->req, 200, json_object());
}

static void al_canon_room(rm_room_t *room, int status, void *ud)
{
    (void)status;
    al_ctx_t *c = ud;
    const json_t *ev = room ? rm_state_get(room, "m.room.canonical_alias", "") : NULL;
    json_t *old = ev ? json_object_get(ev, "content") : NULL;
    if (!json_is_object(old)) {
        mx_req_reply_json(c->req, 200, json_object());
        return;
    }
    json_t *content = json_deep_copy(old);
    bool changed = false;
    const char *a = json_string_value(json_object_get(content, "alias"));
    if (a && strcmp(a, c->alias) == 0) {
        json_object_del(content, "alias");
        changed = true;
    }
    json_t *alt = json_object_get(content, "alt_aliases");
    if (json_is_array(alt)) {
        for (size_t i = json_array_size(alt); i-- > 0;) {
            const char *x = json_string_value(json_array_get(alt, i));
            if (x && strcmp(x, c->alias) == 0) {
                json_array_remove(alt, i);
                changed = true;
            }
        }
    }
    rm_txn_t *t = changed ? rm_txn_new(room) : NULL;
    char why[256];
    if (!t || rm_txn_add(t, "m.room.canonical_alias", "", c->who->user_id, content, NULL, NULL,
                         why, sizeof(why)) != 0) {
        if (t)
            rm_txn_abort(t);
        json_decref(content);
        mx_req_reply_json(c->req, 200, json_object());
        return;
    }
    json_decref(content);
    rm_txn_commit(t, al_canon_sent, c);
}

static void al_deleted(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    al_ctx_t *c = ud;
    if (status < 0)
        hs_reply_storage_error(c->req, status, "deleting alias");
    else if (c->room_id)
        rm_room_get(c->room_id, al_canon_room, c);
    else
        mx_req_reply_json(c->req, 200, json_object());
}

static void al_del_do(al_ctx_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "DELETE FROM room_aliases WHERE alias = ?", "s", c->alias);
    al_run(c, b, al_deleted);
}

static void al_del_room(rm_room_t *room, int status, void *ud)
{
    al_ctx_t *c = ud;
    if (!room) {
        /* The room is gone: nobody but the creator (checked) may act. */
        (void)status;
        mx_req_error(c->req, 403, "M_FORBIDDEN", "you may not delete this alias");
        return;
    }
    const json_t *create = rm_state_get(room, "m.room.create", "");
    const json_t *pl = rm_state_get(room, "m.room.power_levels", "");
    if (hs_user_power(room->rv, create, pl, c->who->user_id) <
        hs_event_required_power(pl, "m.room.canonical_alias", 1)) {
        mx_req_error(c->req, 403, "M_FORBIDDEN", "you may not delete this alias");
        return;
    }
    al_del_do(c);
}

static void al_del_found(int status, mx_sql_res_t *res, void *ud)
{
    al_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "alias lookup");
        return;
    }
    if (mx_sql_nrows(res, 0) == 0) {
        mx_req_error(c->req, 404, "M_NOT_FOUND", "room alias %s not found", c->alias);
        return;
    }
    c->room_id = mx_pstrdup(mx_req_pool(c->req), mx_sql_text(res, 0, 0, 0));
    if (strcmp(mx_sql_text(res, 0, 0, 1), c->who->user_id) == 0 || c->who->is_admin) {
        al_del_do(c);
        return;
    }
    rm_room_get(c->room_id, al_del_room, c);
}

static void al_del_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    al_ctx_t *c = al_new(req, who);
    if (!c || !al_valid(req, c->alias, false))
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "SELECT room_id, creator FROM room_aliases WHERE alias = ?", "s", c->alias);
    al_run(c, b, al_del_found);
}

/* ---------------------------------------------------- /rooms/{id}/aliases --- */

static void al_list_read(int status, mx_sql_res_t *res, void *ud)
{
    al_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "aliases");
        return;
    }
    json_t *a = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(a, json_string(mx_sql_text(res, 0, i, 0)));
    mx_req_reply_json(c->req, 200, json_pack("{s:o}", "aliases", a));
}

static void al_list_room(rm_room_t *room, int status, void *ud)
{
    al_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status))
        return;
    const char *m = rm_membership(room, c->who->user_id);
    if (!m || strcmp(m, "join") != 0) {
        mx_req_error(c->req, 403, "M_FORBIDDEN", "you are not in the room");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias", "s",
               room->room_id);
    al_run(c, b, al_list_read);
}

static void al_list_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    al_ctx_t *c = al_new(req, who);
    if (!c)
        return;
    c->room_id = mx_req_param(req, "roomId");
    rm_room_get(c->room_id, al_list_room, c);
}

static int al_put(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, al_put_authed, NULL);
}

static int al_del(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, al_del_authed, NULL);
}

static int al_list(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, al_list_authed, NULL);
}

int rm_alias_routes(void)
{
    int rc;
    if ((rc = rm_route("GET", "/directory/room/{roomAlias}", al_get, 0)) < 0 ||
        (rc = rm_route("PUT", "/directory/room/{roomAlias}", al_put, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("DELETE", "/directory/room/{roomAlias}", al_del, 0)) < 0 ||
        (rc = rm_route("GET", "/rooms/{roomId}/aliases", al_list, 0)) < 0)
        return rc;
    return 0;
}
