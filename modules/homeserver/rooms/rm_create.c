/*
 * rm_create.c: POST /createRoom.
 *
 * The events go out in the order the spec prescribes: m.room.create, the
 * creator's join, m.room.power_levels (defaults merged with
 * power_level_content_override), m.room.canonical_alias, the preset's
 * join_rules / history_visibility / guest_access (unless initial_state sets
 * them), initial_state, name, topic, then the invites.  All of them and the
 * alias row go into one write batch: the room exists completely or not at
 * all.  rm_create_room is also the upgrade handler's way to make the new
 * room (rm_upgrade.c); rm_txn_new_room (a fresh room's transaction) also
 * serves the admin service's server notices room (svc_newroom.c).
 */
#include "rooms.h"
#include "../client/client.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cr_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    json_t *body;             /* owned */
    const hs_room_version_t *rv;
    const char *alias;        /* full alias or NULL */
    rm_create_hooks_t hooks;
    char *room_id;            /* pool */
    json_t *join;             /* owned: the creator's member content */
} cr_ctx_t;

static void cr_free(void *p)
{
    json_decref(((cr_ctx_t *)p)->body);
    json_decref(((cr_ctx_t *)p)->join);
}

static json_t *cr_power_levels(cr_ctx_t *c, const char *preset, json_t *invites)
{
    const hs_room_version_t *rv = c->rv;
    int private_preset = strcmp(preset, "public_chat") != 0;
    json_t *pl = json_pack(
        "{s:{}, s:i, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:i, s:i, s:i, s:i, s:i, s:i,"
        " s:i, s:{s:i}}",
        "users", "users_default", 0, "events", "m.room.name", 50, "m.room.power_levels", 100,
        "m.room.history_visibility", 100, "m.room.canonical_alias", 50, "m.room.avatar", 50,
        "m.room.tombstone", rv->creators_infinite_power ? 150 : 100, "m.room.server_acl", 100,
        "m.room.encryption", 100, "events_default", 0, "state_default", 50, "ban", 50, "kick",
        50, "redact", 50, "invite", private_preset ? 0 : 50, "historical", 100,
        "notifications", "room", 50);
    if (!pl)
        return NULL;
    json_t *users = json_object_get(pl, "users");
    if (!rv->creators_infinite_power) {
        json_object_set_new(users, c->who->user_id, json_integer(100));
        if (strcmp(preset, "trusted_private_chat") == 0) {
            size_t i;
            json_t *u;
            json_array_foreach(invites, i, u)
                json_object_set_new(users, json_string_value(u), json_integer(100));
        }
    }
    json_t *ovr = json_object_get(c->body, "power_level_content_override");
    if (json_is_object(ovr))
        json_object_update(pl, ovr);
    return pl;
}

static void cr_done(int status, rm_txn_t *t, void *ud)
{
    cr_ctx_t *c = ud;
    if (status < 0) {
        if (status == MX_ECONSTRAINT && c->alias)
            mx_req_error(c->req, 400, "M_ROOM_IN_USE", "room alias already taken");
        else
            hs_reply_storage_error(c->req, status, "creating room");
        return;
    }
    const char *room_id = mx_pstrdup(mx_req_pool(c->req), rm_txn_room(t)->room_id);
    if (c->hooks.after) {
        c->hooks.after(c->req, room_id, c->hooks.ud);
        return;
    }
    mx_req_reply_json(c->req, 200, json_pack("{s:s}", "room_id", room_id));
}

/* Adds one event; on failure replies and returns the error. */
static int cr_add(cr_ctx_t *c, rm_txn_t *t, const char *type, const char *sk,
                  json_t *content /* stolen */, int bad_state)
{
    char why[256];
    int rc = content ? rm_txn_add(t, type, sk, c->who->user_id, content, NULL, NULL, why,
                                  sizeof(why))
                     : -ENOMEM;
    json_decref(content);
    if (rc != 0) {
        if (bad_state && rc == HS_EAUTH)
            mx_req_error(c->req, 400, "M_INVALID_ROOM_STATE", "%s: %s", type, why);
        else
            rm_reply_add_error(c->req, rc, why);
    }
    return rc;
}

static int cr_in_initial(const json_t *initial, const char *type)
{
    size_t i;
    json_t *ev;
    json_array_foreach(initial, i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        const char *sk = json_string_value(json_object_get(ev, "state_key"));
        if (t && strcmp(t, type) == 0 && (!sk || !*sk))
            return 1;
    }
    return 0;
}

rm_txn_t *rm_txn_new_room(const hs_room_version_t *rv)
{
    rm_room_t *room = rm_room_new(rv);
    if (!room)
        return NULL;
    if (!rv->room_id_is_create_hash) {
        char *rnd = mx_random_string(18);
        char buf[300];
        snprintf(buf, sizeof(buf), "!%s:%s", rnd ? rnd : "x", hs.server_name);
        free(rnd);
        room->room_id = strdup(buf);
    }
    rm_txn_t *t = rm_txn_new(room);
    rm_room_unref(room);
    return t;
}

static void cr_build(cr_ctx_t *c)
{
    json_t *b = c->body;
    const char *uid = c->who->user_id;
    const char *vis = json_string_value(json_object_get(b, "visibility"));
    int is_public = vis && strcmp(vis, "public") == 0;
    const char *preset = json_string_value(json_object_get(b, "preset"));
    if (!preset)
        preset = is_public ? "public_chat" : "private_chat";
    json_t *invites = json_object_get(b, "invite");
    json_t *initial = json_object_get(b, "initial_state");
    int is_direct = json_is_true(json_object_get(b, "is_direct"));

    rm_txn_t *t = rm_txn_new_room(c->rv);
    if (!t) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }

    /* m.room.create */
    json_t *cc = json_object_get(b, "creation_content");
    json_t *create = json_is_object(cc) ? json_deep_copy(cc) : json_object();
    json_object_del(create, "creator");
    if (!c->rv->implicit_creator)
        json_object_set_new(create, "creator", json_string(uid));
    json_object_set_new(create, "room_version", json_string(c->rv->id));
    if (c->hooks.before &&
        c->hooks.before(c->req, rm_txn_room(t)->room_id, create, c->hooks.ud)) {
        json_decref(create);
        goto fail;
    }
    if (c->rv->creators_infinite_power && strcmp(preset, "trusted_private_chat") == 0 &&
        json_array_size(invites)) {
        json_t *ac = json_object_get(create, "additional_creators");
        if (!json_is_array(ac)) {
            ac = json_array();
            json_object_set_new(create, "additional_creators", ac);
        }
        size_t i;
        json_t *u;
        json_array_foreach(invites, i, u)
            json_array_append(ac, u);
    }
    if (cr_add(c, t, "m.room.create", "", create, 0))
        goto fail;
    if (cr_add(c, t, "m.room.member", uid, json_incref(c->join), 0))
        goto fail;
    if (!cr_in_initial(initial, "m.room.power_levels") &&
        cr_add(c, t, "m.room.power_levels", "", cr_power_levels(c, preset, invites), 0))
        goto fail;
    if (c->alias && cr_add(c, t, "m.room.canonical_alias", "",
                           json_pack("{s:s}", "alias", c->alias), 0))
        goto fail;
    const char *jr = strcmp(preset, "public_chat") == 0 ? "public" : "invite";
    if (!cr_in_initial(initial, "m.room.join_rules") &&
        cr_add(c, t, "m.room.join_rules", "", json_pack("{s:s}", "join_rule", jr), 0))
        goto fail;
    if (!cr_in_initial(initial, "m.room.history_visibility") &&
        cr_add(c, t, "m.room.history_visibility", "",
               json_pack("{s:s}", "history_visibility", "shared"), 0))
        goto fail;
    if (strcmp(preset, "public_chat") != 0 && !cr_in_initial(initial, "m.room.guest_access") &&
        cr_add(c, t, "m.room.guest_access", "", json_pack("{s:s}", "guest_access", "can_join"), 0))
        goto fail;
    size_t i;
    json_t *ev;
    json_array_foreach(initial, i, ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *sk = json_string_value(json_object_get(ev, "state_key"));
        if (cr_add(c, t, type, sk ? sk : "", json_deep_copy(json_object_get(ev, "content")), 1))
            goto fail;
    }
    json_t *name = json_object_get(b, "name");
    if (json_is_string(name) &&
        cr_add(c, t, "m.room.name", "", json_pack("{s:O}", "name", name), 0))
        goto fail;
    json_t *topic = json_object_get(b, "topic");
    if (json_is_string(topic) &&
        cr_add(c, t, "m.room.topic", "", json_pack("{s:O}", "topic", topic), 0))
        goto fail;
    json_t *u;
    json_array_foreach(invites, i, u) {
        json_t *content = json_pack("{s:s}", "membership", "invite");
        if (is_direct)
            json_object_set_new(content, "is_direct", json_true());
        if (cr_add(c, t, "m.room.member", json_string_value(u), content, 0))
            goto fail;
    }
    if (c->hooks.extra && c->hooks.extra(c->req, t, c->hooks.ud))
        goto fail;
    const char *rid = rm_txn_room(t)->room_id;
    if (c->alias)
        mx_sql_add(rm_txn_batch(t), "INSERT INTO room_aliases (alias, room_id, creator)"
                                    " VALUES (?, ?, ?)", "sss", c->alias, rid, uid);
    if (is_public)
        mx_sql_add(rm_txn_batch(t), "UPDATE rooms SET is_public = 1 WHERE room_id = ?", "s",
                   rid);
    rm_txn_commit(t, cr_done, c);
    if (c->hooks.submitted)
        c->hooks.submitted(c->hooks.ud);
    return;
fail:
    rm_txn_abort(t);
}

static void cr_profile(int status, bool found, const char *displayname, const char *avatar_url,
                       void *ud)
{
    cr_ctx_t *c = ud;
    if (status == 0 && found) {
        if (displayname)
            json_object_set_new(c->join, "displayname", json_string(displayname));
        if (avatar_url)
            json_object_set_new(c->join, "avatar_url", json_string(avatar_url));
    }
    cr_build(c);
}

/* Fetches the creator's profile, then builds. */
static void cr_start(cr_ctx_t *c)
{
    if (hs_profile_get(c->who->user_id, cr_profile, c) < 0)
        cr_build(c);
}

static void cr_alias_checked(int status, mx_sql_res_t *res, void *ud)
{
    cr_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "alias lookup");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        mx_req_error(c->req, 400, "M_ROOM_IN_USE", "room alias already taken");
        return;
    }
    cr_start(c);
}

static bool cr_alias_local_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s == ':' || isspace((unsigned char)*s) || *s == '#')
            return false;
    return true;
}

int rm_create_room(mx_req_t *req, const hs_user_t *who, json_t *body,
                   const rm_create_hooks_t *hooks)
{
    mx_pool_t *pool = mx_req_pool(req);
    cr_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->body = json_deep_copy(body);
    if (hooks)
        c->hooks = *hooks;
    c->join = json_pack("{s:s}", "membership", "join");
    mx_pool_on_free(pool, cr_free, c);

    json_t *ver = json_object_get(body, "room_version");
    const char *vid = json_string_value(ver);
    if (ver && !vid) {
        mx_req_error(req, 400, "M_BAD_JSON", "room_version must be a string");
        return MX_DONE;
    }
    if (!vid) {
        vid = mx_server_conf()->default_room_version;
        if (!vid || !hs_room_version_get(vid))
            vid = "10";
    }
    c->rv = hs_room_version_get(vid);
    if (!c->rv) {
        mx_req_error(req, 400, "M_UNSUPPORTED_ROOM_VERSION", "unsupported room version %s", vid);
        return MX_DONE;
    }
    const char *preset = json_string_value(json_object_get(body, "preset"));
    if (json_object_get(body, "preset") &&
        (!preset || (strcmp(preset, "private_chat") && strcmp(preset, "public_chat") &&
                     strcmp(preset, "trusted_private_chat")))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "unknown preset");
        return MX_DONE;
    }
    json_t *vis = json_object_get(body, "visibility");
    if (vis && (!json_is_string(vis) || (strcmp(json_string_value(vis), "public") &&
                                         strcmp(json_string_value(vis), "private")))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "visibility must be public or private");
        return MX_DONE;
    }
    json_t *inv = json_object_get(body, "invite");
    if (inv) {
        size_t i;
        json_t *u;
        if (!json_is_array(inv)) {
            mx_req_error(req, 400, "M_BAD_JSON", "invite must be an array");
            return MX_DONE;
        }
        json_array_foreach(inv, i, u)
            if (!hs_user_id_valid(json_string_value(u))) {
                mx_req_error(req, 400, "M_INVALID_PARAM", "bad user ID in invite");
                return MX_DONE;
            }
    }
    json_t *init = json_object_get(body, "initial_state");
    if (init) {
        size_t i;
        json_t *e;
        if (!json_is_array(init)) {
            mx_req_error(req, 400, "M_BAD_JSON", "initial_state must be an array");
            return MX_DONE;
        }
        json_array_foreach(init, i, e) {
            json_t *sk = json_object_get(e, "state_key");
            if (!json_is_string(json_object_get(e, "type")) ||
                !json_is_object(json_object_get(e, "content")) || (sk && !json_is_string(sk))) {
                mx_req_error(req, 400, "M_BAD_JSON", "bad initial_state event");
                return MX_DONE;
            }
        }
    }
    static const char *const objs[] = { "creation_content", "power_level_content_override" };
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_object_get(body, objs[i]);
        if (o && !json_is_object(o)) {
            mx_req_error(req, 400, "M_BAD_JSON", "%s must be an object", objs[i]);
            return MX_DONE;
        }
    }
    static const char *const strs[] = { "name", "topic", "room_alias_name" };
    for (size_t i = 0; i < 3; i++) {
        json_t *o = json_object_get(body, strs[i]);
        if (o && !json_is_string(o)) {
            mx_req_error(req, 400, "M_BAD_JSON", "%s must be a string", strs[i]);
            return MX_DONE;
        }
    }
    const char *an = json_string_value(json_object_get(body, "room_alias_name"));
    if (an) {
        if (!cr_alias_local_ok(an)) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "invalid characters in room alias");
            return MX_DONE;
        }
        c->alias = mx_psprintf(pool, "#%s:%s", an, hs.server_name);
        if (strlen(c->alias) > 255) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "room alias too long");
            return MX_DONE;
        }
        mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
        if (!b) {
            mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
            return MX_DONE;
        }
        mx_sql_add(b, "SELECT room_id FROM room_aliases WHERE alias = ?", "s", c->alias);
        if (mx_sql_run(b, cr_alias_checked, c) < 0) {
            mx_sql_batch_free(b);
            hs_reply_storage_error(req, MX_EDB, "alias lookup");
            return MX_DONE;
        }
        return MX_ASYNC;
    }
    cr_start(c);
    return MX_ASYNC;
}

static void cr_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (body)
        rm_create_room(req, who, body, NULL);
}

static int cr_handler(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, cr_authed, NULL);
}

int rm_create_routes(void)
{
    return rm_route("POST", "/createRoom", cr_handler, MX_ROUTE_JSON_BODY);
}
