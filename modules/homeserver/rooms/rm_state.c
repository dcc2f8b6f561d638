/*
 * rm_state.c: GET/PUT /rooms/{roomId}/state/{eventType}/{stateKey} (the
 * router gives an empty stateKey for ".../{eventType}" and
 * ".../{eventType}/") and GET /rooms/{roomId}/state.
 *
 * Reads come from the room cache's current state.  A joined member (or
 * anyone when the history is world_readable) may read; PUT goes through the
 * pipeline like any event.
 */
#include "rooms.h"

#include <errno.h>
#include <string.h>

typedef struct stt_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    json_t *content;  /* owned; PUT only */
} stt_ctx_t;

static void stt_free(void *p)
{
    json_decref(((stt_ctx_t *)p)->content);
}

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

static bool stt_room_error(mx_req_t *req, rm_room_t *room, int status)
{
    if (room)
        return false;
    if (status == -ENOENT)
        mx_req_error(req, 404, "M_NOT_FOUND", "unknown room");
    else
        hs_reply_storage_error(req, status, "loading room");
    return true;
}

static void stt_get_room(rm_room_t *room, int status, void *ud)
{
    stt_ctx_t *c = ud;
    mx_req_t *req = c->req;
    if (stt_room_error(req, room, status))
        return;
    if (!stt_may_read(room, c->who->user_id)) {
        mx_req_error(req, 403, "M_FORBIDDEN", "you are not a member of the room");
        return;
    }
    const char *type = mx_req_param(req, "eventType");
    if (!type) {
        /* the whole state */
        json_t *out = json_array();
        const char *k;
        json_t *ev;
        json_object_foreach(room->state, k, ev) {
            json_t *id = json_object_get(room->state_ids, k);
            json_array_append_new(out, rm_client_event(ev, json_string_value(id), NULL, NULL,
                                                       NULL, NULL, RM_CE_ROOM_ID));
        }
        mx_req_reply_json(req, 200, out);
        return;
    }
    const char *sk = mx_req_param(req, "stateKey");
    const json_t *ev = rm_state_get(room, type, sk ? sk : "");
    if (!ev) {
        mx_req_error(req, 404, "M_NOT_FOUND", "event not found");
        return;
    }
    const char *fmt = mx_req_query(req, "format");
    if (fmt && strcmp(fmt, "event") == 0) {
        mx_req_reply_json(req, 200, rm_client_event(ev, rm_state_id(room, type, sk ? sk : ""),
                                                    NULL, NULL, NULL, NULL, RM_CE_ROOM_ID));
        return;
    }
    json_t *content = json_object_get(ev, "content");
    mx_req_reply_json(req, 200, content ? json_deep_copy(content) : json_object());
}

static void stt_put_room(rm_room_t *room, int status, void *ud)
{
    stt_ctx_t *c = ud;
    if (stt_room_error(c->req, room, status))
        return;
    const char *sk = mx_req_param(c->req, "stateKey");
    rm_send_one(c->req, room, mx_req_param(c->req, "eventType"), sk ? sk : "",
                c->who->user_id, c->content, NULL, NULL);
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
    rm_room_get(mx_req_param(req, "roomId"), stt_put_room, c);
}

static int stt_get(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, stt_get_authed, NULL);
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
