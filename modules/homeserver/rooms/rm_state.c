/*
 * rm_state.c: GET/PUT /rooms/{roomId}/state/{eventType}/{stateKey} (the
 * router gives an empty stateKey for ".../{eventType}" and
 * ".../{eventType}/") and GET /rooms/{roomId}/state.
 *
 * Reads come from the room cache's current state.  A joined member (or
 * anyone when the history is world_readable) may read; a member who left
 * reads the state as of their leave (Synapse's allow_departed_users).
 *
 * PUT goes through the pipeline like any event, with Synapse's extras:
 * sending the same content as the current state event of the same sender
 * answers that event's ID without a new event, and the aliases of an
 * m.room.canonical_alias must be valid (400 M_INVALID_PARAM) and, when they
 * are ours, point at the room (400 M_BAD_ALIAS).
 */
#include "rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct stt_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    json_t *content;  /* owned; PUT only */
    json_t *aliases;  /* owned; PUT of a canonical alias: the local aliases to check */
} stt_ctx_t;

static void stt_free(void *p)
{
    stt_ctx_t *c = p;
    json_decref(c->content);
    json_decref(c->aliases);
}

/* The state group chain of one event (the state after it), snapshot first
 * so later rows override earlier ones. */
static const char stt_sql_state_after[] =
    "WITH RECURSIVE chain(id, prev, snap, n) AS ("
    " SELECT s.id, s.prev_group, s.is_snapshot, 0 FROM state_groups s WHERE s.id = ("
    "  SELECT g.state_group FROM events g WHERE g.event_id = ?)"
    " UNION ALL"
    " SELECT s.id, s.prev_group, s.is_snapshot, c.n + 1 FROM state_groups s"
    " JOIN chain c ON s.id = c.prev WHERE c.snap = 0)"
    " SELECT c.n, se.type, se.state_key, e.event_id, e.json FROM chain c"
    " JOIN state_group_entries se ON se.group_id = c.id"
    " JOIN events e ON e.event_id = se.event_id ORDER BY c.n DESC";

static bool stt_may_read(const rm_room_t *r, const char *user_id)
{
    const char *m = rm_membership(r, user_id);
    if (m && strcmp(m, "join") == 0)
        return true;
    const json_t *hv = rm_state_get(r, "m.room.history_visibility", "");
    const char *v = hv ? json_string_value(json_object_get(json_object_get(hv, "content"),
                                                           "history_visibility"))
                       : NULL;
    return v && strcmp(v, "world_readable") == 0;
}

/* Replies with a state map: `state` maps "type\x1fkey" to PDUs, `ids`
 * the same keys to event IDs (both borrowed). */
static void stt_reply_state(mx_req_t *req, const json_t *state, const json_t *ids)
{
    const char *type = mx_req_param(req, "eventType");
    if (!type) {
        /* the whole state */
        json_t *out = json_array();
        const char *k;
        json_t *ev;
        json_object_foreach((json_t *)state, k, ev) {
            json_t *id = json_object_get(ids, k);
            json_array_append_new(out, rm_client_event(ev, json_string_value(id), NULL, NULL,
                                                       NULL, NULL, RM_CE_ROOM_ID));
        }
        mx_req_reply_json(req, 200, out);
        return;
    }
    const char *sk = mx_req_param(req, "stateKey");
    char *key = hs_state_key_join(type, sk ? sk : "");
    const json_t *ev = key ? json_object_get(state, key) : NULL;
    const char *id = key ? json_string_value(json_object_get(ids, key)) : NULL;
    free(key);
    if (!ev) {
        mx_req_error(req, 404, "M_NOT_FOUND", "event not found");
        return;
    }
    const char *fmt = mx_req_query(req, "format");
    if (fmt && strcmp(fmt, "event") == 0) {
        mx_req_reply_json(req, 200,
                          rm_client_event(ev, id, NULL, NULL, NULL, NULL, RM_CE_ROOM_ID));
        return;
    }
    json_t *content = json_object_get(ev, "content");
    mx_req_reply_json(req, 200, content ? json_deep_copy(content) : json_object());
}

static void stt_departed_read(int status, mx_sql_res_t *res, void *ud)
{
    stt_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "state at leave");
        return;
    }
    json_t *state = json_object(), *ids = json_object();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        char *k = hs_state_key_join(mx_sql_text(res, 0, i, 1), mx_sql_text(res, 0, i, 2));
        json_t *ev = json_loads(mx_sql_text(res, 0, i, 4), 0, NULL);
        if (k && ev) {
            json_object_set_new(state, k, ev);
            json_object_set_new(ids, k, json_string(mx_sql_text(res, 0, i, 3)));
        } else {
            json_decref(ev);
        }
        free(k);
    }
    stt_reply_state(c->req, state, ids);
    json_decref(state);
    json_decref(ids);
}

static void stt_get_room(rm_room_t *room, int status, void *ud)
{
    stt_ctx_t *c = ud;
    mx_req_t *req = c->req;
    if (rm_room_error(req, room, status))
        return;
    if (!stt_may_read(room, c->who->user_id)) {
        const char *m = rm_membership(room, c->who->user_id);
        const char *leave_id = rm_state_id(room, "m.room.member", c->who->user_id);
        if (!m || strcmp(m, "leave") != 0 || !leave_id) {
            mx_req_error(req, 403, "M_FORBIDDEN", "you are not a member of the room");
            return;
        }
        /* departed: the state as of the leave */
        mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
        if (!b) {
            mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
            return;
        }
        mx_sql_add(b, stt_sql_state_after, "s", leave_id);
        if (mx_sql_run(b, stt_departed_read, c) < 0) {
            mx_sql_batch_free(b);
            hs_reply_storage_error(req, MX_EDB, "state at leave");
        }
        return;
    }
    stt_reply_state(req, room->state, room->state_ids);
}

static void stt_put_room(rm_room_t *room, int status, void *ud)
{
    stt_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status))
        return;
    const char *sk = mx_req_param(c->req, "stateKey");
    const char *type = mx_req_param(c->req, "eventType");
    if (strcmp(type, "m.room.member") != 0) {
        /* Same sender, same content: the existing event (Synapse dedups). */
        const json_t *prev = rm_state_get(room, type, sk ? sk : "");
        const char *prev_id = rm_state_id(room, type, sk ? sk : "");
        const char *prev_sender = prev ? hs_ev_sender(prev) : NULL;
        if (prev && prev_id && prev_sender && strcmp(prev_sender, c->who->user_id) == 0 &&
            json_equal(json_object_get(prev, "content"), c->content)) {
            mx_req_reply_json(c->req, 200, json_pack("{s:s}", "event_id", prev_id));
            return;
        }
    }
    const char *rid = mx_pstrdup(mx_req_pool(c->req), room->room_id);
    rm_send_one(c->req, room, type, sk ? sk : "", c->who->user_id, c->content, NULL, NULL);
    if (strcmp(type, "m.room.guest_access") == 0 && rid)
        rm_kick_guests(rid);
}

/* "#local:domain"? */
static bool stt_alias_syntax(const json_t *a)
{
    const char *s = json_string_value(a);
    const char *colon = s ? strchr(s, ':') : NULL;
    return s && s[0] == '#' && colon && colon > s + 1 && colon[1] && strlen(s) <= 255;
}

/* Checks the syntax of a canonical alias content and collects the aliases
 * of this server into c->aliases; replies 400 and returns false when bad. */
static bool stt_alias_collect(stt_ctx_t *c)
{
    json_t *alias = json_object_get(c->content, "alias");
    json_t *alt = json_object_get(c->content, "alt_aliases");
    if (alt && !json_is_array(alt)) {
        mx_req_error(c->req, 400, "M_INVALID_PARAM", "alt_aliases must be a list");
        return false;
    }
    c->aliases = json_array();
    json_t *all = json_array();
    if (alias && !json_is_null(alias) &&
        !(json_is_string(alias) && json_string_length(alias) == 0))
        json_array_append(all, alias);
    size_t i;
    json_t *a;
    json_array_foreach(alt, i, a)
        json_array_append(all, a);
    bool ok = true;
    json_array_foreach(all, i, a) {
        if (!stt_alias_syntax(a)) {
            mx_req_error(c->req, 400, "M_INVALID_PARAM", "invalid room alias");
            ok = false;
            break;
        }
        if (strcmp(strchr(json_string_value(a), ':') + 1, hs.server_name) == 0)
            json_array_append(c->aliases, a);
    }
    json_decref(all);
    return ok;
}

static void stt_aliases_checked(int status, mx_sql_res_t *res, void *ud)
{
    stt_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "alias lookup");
        return;
    }
    const char *room_id = mx_req_param(c->req, "roomId");
    for (size_t i = 0; i < json_array_size(c->aliases); i++) {
        if (mx_sql_nrows(res, (int)i) == 0 ||
            strcmp(mx_sql_text(res, (int)i, 0, 0), room_id) != 0) {
            mx_req_error(c->req, 400, "M_BAD_ALIAS", "room alias %s does not point to the room",
                         json_string_value(json_array_get(c->aliases, i)));
            return;
        }
    }
    rm_room_get(room_id, stt_put_room, c);
}

static stt_ctx_t *stt_new(mx_req_t *req, const hs_user_t *who)
{
    stt_ctx_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return NULL;
    }
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->content = NULL;
    c->aliases = NULL;
    mx_pool_on_free(mx_req_pool(req), stt_free, c);
    if (!rm_room_id_ok(mx_req_param(req, "roomId"))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID");
        return NULL;
    }
    return c;
}

static void stt_get_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    stt_ctx_t *c = stt_new(req, who);
    if (c)
        rm_room_get(mx_req_param(req, "roomId"), stt_get_room, c);
}

static void stt_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    const char *type = mx_req_param(req, "eventType");
    if (!type || !*type) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "missing event type");
        return;
    }
    stt_ctx_t *c = stt_new(req, who);
    if (!c)
        return;
    c->content = json_deep_copy(body);
    if (strcmp(type, "m.room.canonical_alias") == 0) {
        if (!stt_alias_collect(c))
            return;
        if (json_array_size(c->aliases) > 0) {
            mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
            if (!b) {
                mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
                return;
            }
            size_t i;
            json_t *a;
            json_array_foreach(c->aliases, i, a)
                mx_sql_add(b, "SELECT room_id FROM room_aliases WHERE alias = ?", "s",
                           json_string_value(a));
            if (mx_sql_run(b, stt_aliases_checked, c) < 0) {
                mx_sql_batch_free(b);
                hs_reply_storage_error(req, MX_EDB, "alias lookup");
            }
            return;
        }
    }
    rm_room_get(mx_req_param(req, "roomId"), stt_put_room, c);
}

static int stt_get(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, stt_get_authed, NULL);
}

static int stt_put(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, stt_put_authed, NULL);
}

int rm_state_routes(void)
{
    int rc;
    if ((rc = rm_route("GET", "/rooms/{roomId}/state", stt_get, 0)) < 0 ||
        (rc = rm_route("GET", "/rooms/{roomId}/state/{eventType}/{stateKey}", stt_get, 0)) < 0 ||
        (rc = rm_route("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey}", stt_put,
                       MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
