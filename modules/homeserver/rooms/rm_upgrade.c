/*
 * rm_upgrade.c: POST /rooms/{roomId}/upgrade.
 *
 * Checks that the user may send m.room.tombstone in the old room, creates
 * the new room through rm_create_room (predecessor in the create content,
 * the old room's power levels and the state worth keeping copied into
 * initial_state), then, in one batch on the old room: the tombstone, power
 * levels that stop ordinary users from talking or inviting, and the move of
 * the local aliases to the new room.
 */
#include "rooms.h"

#include <errno.h>
#include <string.h>

typedef struct up_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *new_version;
    rm_room_t *old;          /* referenced */
} up_ctx_t;

static void up_free(void *p)
{
    up_ctx_t *c = p;
    if (c->old)
        rm_room_unref(c->old);
}

static void up_old_done(int status, rm_txn_t *t, void *ud)
{
    up_ctx_t *c = ud;
    (void)t;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "tombstone");
        return;
    }
    /* reply set by up_created via the pool string */
}

typedef struct up_reply {
    up_ctx_t *c;
    const char *new_room;
} up_reply_t;

static void up_tomb_done(int status, rm_txn_t *t, void *ud)
{
    up_reply_t *r = ud;
    if (status < 0) {
        up_old_done(status, t, r->c);
        return;
    }
    mx_req_reply_json(r->c->req, 200, json_pack("{s:s}", "replacement_room", r->new_room));
}

static void up_created(mx_req_t *req, const char *room_id, void *ud)
{
    up_ctx_t *c = ud;
    rm_room_t *old = c->old;
    char why[256];
    rm_txn_t *t = rm_txn_new(old);
    up_reply_t *r = mx_palloc(mx_req_pool(req), sizeof(*r));
    if (!t || !r) {
        if (t)
            rm_txn_abort(t);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    r->c = c;
    r->new_room = room_id;
    json_t *tomb = json_pack("{s:s, s:s}", "body", "This room has been replaced",
                             "replacement_room", room_id);
    int rc = rm_txn_add(t, "m.room.tombstone", "", c->who->user_id, tomb, NULL, NULL, why,
                        sizeof(why));
    json_decref(tomb);
    if (rc == 0) {
        const json_t *pl = rm_state_get(old, "m.room.power_levels", "");
        json_t *plc = pl ? json_deep_copy(json_object_get(pl, "content")) : NULL;
        if (plc) {
            int64_t ud_level = hs_named_power(pl, "users_default", 0);
            int64_t restrict_to = ud_level + 1 > 50 ? ud_level + 1 : 50;
            if (hs_named_power(pl, "events_default", 0) < restrict_to)
                json_object_set_new(plc, "events_default", json_integer(restrict_to));
            if (hs_named_power(pl, "invite", 0) < restrict_to)
                json_object_set_new(plc, "invite", json_integer(restrict_to));
            /* Failing to restrict (e.g. not enough power) is not fatal. */
            rm_txn_t *probe = t;
            if (rm_txn_add(probe, "m.room.power_levels", "", c->who->user_id, plc, NULL, NULL,
                           why, sizeof(why)) != 0)
                mx_log("homeserver", MX_LOG_INFO, "upgrade: old room PLs not restricted: %s",
                       why);
            json_decref(plc);
        }
        mx_sql_add(rm_txn_batch(t), "UPDATE room_aliases SET room_id = ? WHERE room_id = ?", "ss",
                   room_id, old->room_id);
    }
    if (rc != 0) {
        rm_txn_abort(t);
        rm_reply_add_error(req, rc, why);
        return;
    }
    rm_txn_commit(t, up_tomb_done, r);
}

static void up_have_room(rm_room_t *room, int status, void *ud)
{
    up_ctx_t *c = ud;
    if (!room) {
        if (status == -ENOENT)
            mx_req_error(c->req, 404, "M_NOT_FOUND", "unknown room");
        else
            hs_reply_storage_error(c->req, status, "loading room");
        return;
    }
    const json_t *create = rm_state_get(room, "m.room.create", "");
    const json_t *pl = rm_state_get(room, "m.room.power_levels", "");
    const json_t *plc = pl ? json_object_get(pl, "content") : NULL;
    const char *m = rm_membership(room, c->who->user_id);
    if (!m || strcmp(m, "join") != 0 ||
        hs_user_power(room->rv, create, pl, c->who->user_id) <
            hs_event_required_power(pl, "m.room.tombstone", 1)) {
        mx_req_error(c->req, 403, "M_FORBIDDEN", "you may not upgrade this room");
        return;
    }
    rm_room_ref(room);
    c->old = room;
    const hs_room_version_t *nrv = hs_room_version_get(c->new_version);

    json_t *body = json_object();
    json_object_set_new(body, "room_version", json_string(c->new_version));
    json_object_set_new(body, "preset", json_string("private_chat"));
    json_t *cc = json_pack("{s:{s:s, s:s?}}", "predecessor", "room_id", room->room_id,
                           "event_id", json_string_value(json_array_get(room->extremities, 0)));
    const json_t *ctype = json_object_get(json_object_get(create, "content"), "type");
    if (json_is_string(ctype))
        json_object_set(cc, "type", (json_t *)ctype);
    json_object_set_new(body, "creation_content", cc);
    if (plc) {
        json_t *npl = json_deep_copy(plc);
        json_t *users = json_object_get(npl, "users");
        if (nrv->creators_infinite_power) {
            json_object_del(users, c->who->user_id);
        } else {
            int64_t mine = hs_user_power(room->rv, create, pl, c->who->user_id);
            if (!json_is_object(users)) {
                users = json_object();
                json_object_set_new(npl, "users", users);
            }
            json_object_set_new(users, c->who->user_id,
                                json_integer(mine == HS_POWER_INFINITE || mine < 100 ? 100 : mine));
        }
        json_object_set_new(body, "power_level_content_override", npl);
    }
    static const char *const copy[] = { "m.room.join_rules", "m.room.history_visibility",
                                        "m.room.guest_access", "m.room.name", "m.room.topic",
                                        "m.room.avatar", "m.room.encryption",
                                        "m.room.server_acl", "m.room.canonical_alias" };
    json_t *initial = json_array();
    for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++) {
        const json_t *ev = rm_state_get(room, copy[i], "");
        if (ev)
            json_array_append_new(initial, json_pack("{s:s, s:s, s:O}", "type", copy[i],
                                                     "state_key", "", "content",
                                                     json_object_get(ev, "content")));
    }
    json_object_set_new(body, "initial_state", initial);
    rm_create_room(c->req, c->who, body, up_created, c);
    json_decref(body);
}

static void up_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    const char *v = json_string_value(json_object_get(body, "new_version"));
    if (!v) {
        mx_req_error(req, 400, "M_BAD_JSON", "new_version is required");
        return;
    }
    if (!hs_room_version_get(v)) {
        mx_req_error(req, 400, "M_UNSUPPORTED_ROOM_VERSION", "unsupported room version %s", v);
        return;
    }
    up_ctx_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->new_version = mx_pstrdup(mx_req_pool(req), v);
    mx_pool_on_free(mx_req_pool(req), up_free, c);
    rm_room_get(mx_req_param(req, "roomId"), up_have_room, c);
}

static int up_handler(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, up_authed, NULL);
}

int rm_upgrade_routes(void)
{
    return rm_route("POST", "/rooms/{roomId}/upgrade", up_handler, MX_ROUTE_JSON_BODY);
}
