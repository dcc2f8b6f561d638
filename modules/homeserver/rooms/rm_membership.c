/*
 * rm_membership.c: join (by ID or alias), invite, leave, forget, kick, ban,
 * unban and knock.
 *
 * Every change is one m.room.member event through the pipeline, so the
 * auth rules decide and their reason becomes the M_FORBIDDEN message.  The
 * handlers only add what the rules cannot know: aliases are resolved
 * locally, a restricted join is authorised when the user is joined to one
 * of the allowed rooms (checked in room_memberships) by naming a local
 * member who may invite (join_authorised_via_users_server), and an
 * already-joined user's join is answered without a new event.
 */
#include "rooms.h"
#include "../admin_service/svc.h"
#include "../client/client.h"
#include "../sync/sync.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct mb_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *room_id;
    const char *target;
    const char *membership;
    json_t *content;          /* owned */
    rm_room_t *room;          /* referenced while a restricted check runs */
} mb_ctx_t;

static void mb_free(void *p)
{
    mb_ctx_t *c = p;
    json_decref(c->content);
    if (c->room)
        rm_room_unref(c->room);
}

static bool mb_is(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* A local joined member whose power allows inviting, for a restricted
 * join; NULL when there is none. */
static const char *mb_authoriser(mb_ctx_t *c, rm_room_t *r)
{
    const json_t *create = rm_state_get(r, "m.room.create", "");
    const json_t *pl = rm_state_get(r, "m.room.power_levels", "");
    int64_t need = hs_named_power(pl, "invite", 0);
    json_t *members = rm_room_members(r, "join");
    const char *best = NULL;
    int64_t best_pl = -1;
    size_t i;
    json_t *u;
    json_array_foreach(members, i, u) {
        const char *uid = json_string_value(u);
        const char *dom = hs_user_domain(uid);
        if (!dom || strcmp(dom, hs.server_name) != 0)
            continue;
        int64_t p = hs_user_power(r->rv, create, pl, uid);
        if (p >= need && p > best_pl) {
            best_pl = p;
            best = mx_pstrdup(mx_req_pool(c->req), uid);
        }
    }
    json_decref(members);
    return best;
}

static void mb_send(mb_ctx_t *c, rm_room_t *room)
{
    json_t *reply = NULL;
    if (mb_is(c->membership, "join") || mb_is(c->membership, "knock"))
        reply = json_pack("{s:s}", "room_id", room->room_id);
    else
        reply = json_object();
    rm_send_one(c->req, room, "m.room.member", c->target, c->who->user_id, c->content, NULL,
                reply);
}

static void mb_allowed_checked(int status, mx_sql_res_t *res, void *ud)
{
    mb_ctx_t *c = ud;
    rm_room_t *room = c->room;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "restricted join check");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        const char *via = mb_authoriser(c, room);
        if (via)
            json_object_set_new(c->content, "join_authorised_via_users_server", json_string(via));
    }
    mb_send(c, room);
}

static void mb_have_room(rm_room_t *room, int status, void *ud)
{
    mb_ctx_t *c = ud;
    if (!room) {
        if (status == -ENOENT)
            mx_req_error(c->req, 404, "M_NOT_FOUND", "unknown room");
        else if (status == -ENOTSUP)
            mx_req_error(c->req, 400, "M_INCOMPATIBLE_ROOM_VERSION", "unsupported room version");
        else
            hs_reply_storage_error(c->req, status, "loading room");
        return;
    }
    const char *cur = rm_membership(room, c->target);
    if (mb_is(c->membership, "join")) {
        if (mb_is(cur, "join")) {
            mx_req_reply_json(c->req, 200, json_pack("{s:s}", "room_id", room->room_id));
            return;
        }
        const json_t *jr = rm_state_get(room, "m.room.join_rules", "");
        const char *rule = jr ? json_string_value(json_object_get(json_object_get(jr, "content"),
                                                                  "join_rule"))
                              : NULL;
        if (!mb_is(cur, "invite") &&
            (mb_is(rule, "restricted") || mb_is(rule, "knock_restricted"))) {
            /* Is the user joined to one of the allowed rooms?  Up to 8
             * allowed rooms are looked at (more are rare). */
            json_t *allow = json_object_get(json_object_get(jr, "content"), "allow");
            const char *ids[8] = { 0 };
            int m = 0;
            size_t i;
            json_t *a;
            json_array_foreach(allow, i, a) {
                const char *rid = json_string_value(json_object_get(a, "room_id"));
                if (mb_is(json_string_value(json_object_get(a, "type")), "m.room_membership") &&
                    rid && m < 8)
                    ids[m++] = rid;
            }
            if (m == 0) {
                mb_send(c, room);
                return;
            }
            mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
            if (!b) {
                mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
                return;
            }
            rm_room_ref(room);
            c->room = room;
            mx_sql_add(b, "SELECT room_id FROM room_memberships WHERE user_id = ?"
                          " AND membership = 'join' AND room_id IN (?, ?, ?, ?, ?, ?, ?, ?)",
                       "sssssssss", c->target, ids[0], ids[1], ids[2], ids[3], ids[4], ids[5],
                       ids[6], ids[7]);
            if (mx_sql_run(b, mb_allowed_checked, c) < 0) {
                mx_sql_batch_free(b);
                hs_reply_storage_error(c->req, MX_EDB, "restricted join check");
            }
            return;
        }
    } else if (mb_is(c->membership, "leave") && strcmp(c->target, c->who->user_id) != 0) {
        /* kick / unban */
        if (json_is_true(json_object_get(c->content, "_unban"))) {
            json_object_del(c->content, "_unban");
            if (!mb_is(cur, "ban")) {
                mx_req_error(c->req, 403, "M_FORBIDDEN", "user is not banned");
                return;
            }
        } else if (!cur || mb_is(cur, "leave") || mb_is(cur, "ban")) {
            mx_req_error(c->req, 403, "M_FORBIDDEN", "the user is not in the room");
            return;
        }
    } else if (mb_is(c->membership, "leave") && (!cur || mb_is(cur, "leave"))) {
        if (!cur) {
            mx_req_error(c->req, 403, "M_FORBIDDEN", "you are not in the room");
            return;
        }
        mx_req_reply_json(c->req, 200, json_object());
        return;
    }
    mb_send(c, room);
}

static void mb_profile(int status, bool found, const char *displayname, const char *avatar_url,
                       void *ud)
{
    mb_ctx_t *c = ud;
    if (status == 0 && found) {
        if (displayname && !json_object_get(c->content, "displayname"))
            json_object_set_new(c->content, "displayname", json_string(displayname));
        if (avatar_url && !json_object_get(c->content, "avatar_url"))
            json_object_set_new(c->content, "avatar_url", json_string(avatar_url));
    }
    rm_room_get(c->room_id, mb_have_room, c);
}

int rm_do_membership(mx_req_t *req, const hs_user_t *who, const char *room_id,
                     const char *target, const char *membership, const char *reason,
                     json_t *extra)
{
    mx_pool_t *pool = mx_req_pool(req);
    /* Rooms an admin blocked take no new members (Synapse's block_room). */
    if ((strcmp(membership, "join") == 0 || strcmp(membership, "invite") == 0 ||
         strcmp(membership, "knock") == 0) && svc_room_is_blocked(room_id)) {
        mx_req_error(req, 403, "M_FORBIDDEN", "This room has been blocked on this server");
        return MX_DONE;
    }
    mb_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->room_id = mx_pstrdup(pool, room_id);
    c->target = mx_pstrdup(pool, target);
    c->membership = membership;
    c->content = extra ? json_deep_copy(extra) : json_object();
    json_object_set_new(c->content, "membership", json_string(membership));
    if (reason)
        json_object_set_new(c->content, "reason", json_string(reason));
    mx_pool_on_free(pool, mb_free, c);
    /* A join or an invite of a local user carries the target's profile,
     * as clients show names from member events. */
    const char *dom = hs_user_domain(target);
    if ((strcmp(membership, "join") == 0 || strcmp(membership, "invite") == 0) && dom &&
        strcmp(dom, hs.server_name) == 0 && hs_profile_get(c->target, mb_profile, c) == 0)
        return MX_ASYNC;
    rm_room_get(c->room_id, mb_have_room, c);
    return MX_ASYNC;
}

/* ------------------------------------------------------------ handlers --- */

static const char *mb_reason(json_t *body)
{
    return json_string_value(json_object_get(body, "reason"));
}

typedef struct mb_alias {
    mx_req_t *req;
    const hs_user_t *who;
    const char *membership;
    const char *reason;
    json_t *extra;            /* borrowed: the request body (a join's content) */
} mb_alias_t;

static void mb_alias_resolved(int status, mx_sql_res_t *res, void *ud)
{
    mb_alias_t *a = ud;
    if (status < 0) {
        hs_reply_storage_error(a->req, status, "alias lookup");
        return;
    }
    if (mx_sql_nrows(res, 0) == 0) {
        mx_req_error(a->req, 404, "M_NOT_FOUND", "room alias not found");
        return;
    }
    rm_do_membership(a->req, a->who, mx_sql_text(res, 0, 0, 0), a->who->user_id, a->membership,
                     a->reason, a->extra);
}

/* /join/{roomIdOrAlias} and /knock/{roomIdOrAlias}.  The body of a join
 * becomes the member event's content (as in Synapse: custom keys, a
 * per-room displayname...); a knock only takes the reason. */
static void mb_join_any(mx_req_t *req, const hs_user_t *who, const char *membership)
{
    json_t *body = rm_body(req);
    if (!body)
        return;
    json_t *extra = strcmp(membership, "join") == 0 ? body : NULL;
    const char *id = mx_req_param(req, "roomIdOrAlias");
    if (id && id[0] == '!') {
        rm_do_membership(req, who, id, who->user_id, membership, mb_reason(body), extra);
        return;
    }
    if (!id || id[0] != '#' || !strchr(id, ':')) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "not a room ID or alias");
        return;
    }
    mb_alias_t *a = mx_palloc(mx_req_pool(req), sizeof(*a));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!a || !b) {
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    a->req = req;
    a->who = rm_who_copy(req, who);
    a->membership = membership;
    a->extra = extra;
    const char *r = mb_reason(body);
    a->reason = r ? mx_pstrdup(mx_req_pool(req), r) : NULL;
    mx_sql_add(b, "SELECT room_id FROM room_aliases WHERE alias = ?", "s", id);
    if (mx_sql_run(b, mb_alias_resolved, a) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, MX_EDB, "alias lookup");
    }
}

static void mb_join_any_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mb_join_any(req, who, "join");
}

static void mb_knock_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mb_join_any(req, who, "knock");
}

/* The /rooms/{roomId}/<action> family; `ud` of the route is unused, the
 * action is the last path segment. */
static void mb_action_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    const char *room_id = mx_req_param(req, "roomId");
    const char *path = mx_req_path(req);
    const char *act = strrchr(path, '/');
    act = act ? act + 1 : "";
    if (!rm_room_id_ok(room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID");
        return;
    }
    const char *reason = mb_reason(body);
    if (strcmp(act, "join") == 0) {
        rm_do_membership(req, who, room_id, who->user_id, "join", reason, NULL);
        return;
    }
    if (strcmp(act, "leave") == 0) {
        rm_do_membership(req, who, room_id, who->user_id, "leave", reason, NULL);
        return;
    }
    const char *target = json_string_value(json_object_get(body, "user_id"));
    if (!target) {
        if (json_object_get(body, "medium") || json_object_get(body, "address"))
            mx_req_error(req, 403, "M_FORBIDDEN", "third-party invites are not supported");
        else
            mx_req_error(req, 400, "M_MISSING_PARAM", "user_id is required");
        return;
    }
    if (!hs_user_id_valid(target)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad user ID");
        return;
    }
    if (strcmp(act, "invite") == 0) {
        rm_do_membership(req, who, room_id, target, "invite", reason, NULL);
    } else if (strcmp(act, "kick") == 0) {
        rm_do_membership(req, who, room_id, target, "leave", reason, NULL);
    } else if (strcmp(act, "ban") == 0) {
        rm_do_membership(req, who, room_id, target, "ban", reason, NULL);
    } else if (strcmp(act, "unban") == 0) {
        json_t *x = json_pack("{s:b}", "_unban", 1);
        rm_do_membership(req, who, room_id, target, "leave", reason, x);
        json_decref(x);
    } else {
        mx_req_error(req, 404, "M_UNRECOGNIZED", "unknown action");
    }
}

typedef struct mb_forget {
    mx_req_t *req;
    const hs_user_t *who;
} mb_forget_t;

static void mb_forgot(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    mb_forget_t *f = ud;
    if (status < 0)
        hs_reply_storage_error(f->req, status, "forget");
    else
        mx_req_reply_json(f->req, 200, json_object());
}

static void mb_forget_room(rm_room_t *room, int status, void *ud)
{
    mb_forget_t *f = ud;
    if (rm_room_error(f->req, room, status))
        return;
    const char *m = rm_membership(room, f->who->user_id);
    if (mb_is(m, "join") || mb_is(m, "invite") || mb_is(m, "knock")) {
        mx_req_error(f->req, 400, "M_UNKNOWN", "user must leave the room before forgetting it");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(f->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "UPDATE room_memberships SET forgotten = 1 WHERE room_id = ? AND user_id = ?",
               "ss", room->room_id, f->who->user_id);
    if (mx_sql_run(b, mb_forgot, f) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(f->req, MX_EDB, "forget");
    }
}

static void mb_forget_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mb_forget_t *f = mx_palloc(mx_req_pool(req), sizeof(*f));
    if (!f) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    f->req = req;
    f->who = rm_who_copy(req, who);
    rm_room_get(mx_req_param(req, "roomId"), mb_forget_room, f);
}

static int mb_action(mx_req_t *req, void *ud)
{
    (void)ud;
    static const hs_authed_fn next = mb_action_authed; /* guests: join/leave only */
    return hs_require_auth_ex(req, true, hs_guest_membership_gate, (void *)&next);
}

static int mb_join(mx_req_t *req, void *ud)
{
    (void)ud;
    static const hs_authed_fn next = mb_join_any_authed;
    return hs_require_auth_ex(req, true, hs_guest_membership_gate, (void *)&next);
}

static int mb_knock(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, mb_knock_authed, NULL);
}

static int mb_forget(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, mb_forget_authed, NULL);
}

/* ------------------------------------------- guests on guest_access off --- */

/* Leaves, sent as themselves (as Synapse does), for the joined guests of a
 * room whose current guest_access is no longer can_join. */
static void mb_guests_found(int status, mx_sql_res_t *res, void *ud)
{
    rm_room_t *room = ud;
    const json_t *ga = rm_state_get(room, "m.room.guest_access", "");
    const char *v = json_string_value(
        json_object_get(json_object_get(ga, "content"), "guest_access"));
    if (status < 0 || (v && strcmp(v, "can_join") == 0) || mx_sql_nrows(res, 0) == 0) {
        rm_room_unref(room);
        return;
    }
    rm_txn_t *t = rm_txn_new(room);
    json_t *leave = json_pack("{s:s}", "membership", "leave");
    for (int i = 0; t && leave && i < mx_sql_nrows(res, 0); i++) {
        const char *u = mx_sql_text(res, 0, i, 0);
        const char *m = rm_membership(room, u);
        char why[256];
        if (m && strcmp(m, "join") == 0 &&
            rm_txn_add(t, "m.room.member", u, u, leave, NULL, NULL, why, sizeof(why)) != 0)
            mx_log("homeserver", MX_LOG_WARN, "guest %s not removed from %s: %s", u,
                   room->room_id, why);
    }
    json_decref(leave);
    if (t && rm_txn_count(t))
        rm_txn_commit(t, NULL, NULL);
    else
        rm_txn_abort(t);
    rm_room_unref(room);
}

static void mb_kick_guests_room(rm_room_t *room, int status, void *ud)
{
    (void)ud;
    (void)status;
    if (!room)
        return;
    mx_sql_batch_t *b = rm_room_count(room, "join") ? mx_sql_batch_new(hs.db, MX_SQL_READ)
                                                     : NULL;
    if (!b)
        return;
    /* The room's members who are guests (their membership is checked on the
     * cached state once the answer is here). */
    mx_sql_add(b, "SELECT u.name FROM users u JOIN current_state c ON c.state_key = u.name"
                  " WHERE c.room_id = ? AND c.type = 'm.room.member' AND u.is_guest = 1",
               "s", room->room_id);
    rm_room_ref(room);
    if (mx_sql_run(b, mb_guests_found, room) < 0) {
        mx_sql_batch_free(b);
        rm_room_unref(room);
    }
}

void rm_kick_guests(const char *room_id)
{
    rm_room_get(room_id, mb_kick_guests_room, NULL);
}

int rm_membership_routes(void)
{
    static const char *const acts[] = { "join", "leave", "invite", "kick", "ban", "unban" };
    char path[128];
    int rc;
    for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
        snprintf(path, sizeof(path), "/rooms/{roomId}/%s", acts[i]);
        if ((rc = rm_route("POST", path, mb_action, MX_ROUTE_JSON_BODY)) < 0)
            return rc;
    }
    if ((rc = rm_route("POST", "/rooms/{roomId}/forget", mb_forget, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("POST", "/join/{roomIdOrAlias}", mb_join, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("POST", "/knock/{roomIdOrAlias}", mb_knock, MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
