/*
 * svc_newroom.c: rooms the server makes on its own — the server notices
 * room of a user and the room the members of a shut-down room are moved
 * to.  The events go through the rooms pipeline in one transaction, the
 * way createRoom (rooms/rm_create.c) makes a private room: create, the
 * creator's join, power levels, invite-only join rules, shared history,
 * no guests, name/topic/avatar, the invites, the forced joins, then an
 * optional tag (room account data) and first message.
 */
#include "svc.h"
#include "../rooms/rooms.h"
#include "../client/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct svc_nr {
    svc_newroom_fn done;
    void *ud;
    char *tag_user;
    int64_t tag_pos;
} svc_nr_t;

static void svc_nr_committed(int status, rm_txn_t *t, void *ud)
{
    svc_nr_t *n = ud;
    if (n->tag_pos > 0)
        cl_ad_written(n->tag_user, n->tag_pos, status == 0);
    const char *rid = status == 0 ? rm_txn_room(t)->room_id : NULL;
    if (n->done)
        n->done(status, rid, n->ud);
    free(n->tag_user);
    free(n);
}

static int svc_nr_add(rm_txn_t *t, const char *type, const char *sk, const char *sender,
                      json_t *content /* stolen */)
{
    char why[256] = "";
    int rc = content ? rm_txn_add(t, type, sk, sender, content, NULL, NULL, why, sizeof(why))
                     : -ENOMEM;
    json_decref(content);
    if (rc != 0)
        mx_log("homeserver", MX_LOG_WARN, "admin: new room: %s refused: %s", type, why);
    return rc;
}

int svc_new_room(const svc_newroom_t *o, svc_newroom_fn done, void *ud)
{
    const char *vid = mx_server_conf()->default_room_version;
    const hs_room_version_t *rv = vid ? hs_room_version_get(vid) : NULL;
    if (!rv)
        rv = hs_room_version_get("10");
    if (!rv)
        return -EINVAL;
    rm_txn_t *t = rm_txn_new_room(rv);
    if (!t)
        return -ENOMEM;
    const char *cr = o->creator;
    json_t *create = json_pack("{s:s}", "room_version", rv->id);
    if (!rv->implicit_creator)
        json_object_set_new(create, "creator", json_string(cr));
    json_t *member = json_pack("{s:s}", "membership", "join");
    if (o->displayname)
        json_object_set_new(member, "displayname", json_string(o->displayname));
    if (o->avatar_url)
        json_object_set_new(member, "avatar_url", json_string(o->avatar_url));
    json_t *pl = json_pack("{s:{}, s:I, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "users",
                           "users_default", (json_int_t)o->users_default, "events_default", 0,
                           "state_default", 50, "ban", 50, "kick", 50, "redact", 50,
                           "invite", 50, "historical", 100);
    if (pl && !rv->creators_infinite_power)
        json_object_set_new(json_object_get(pl, "users"), cr, json_integer(100));
    int rc = 0;
    if ((rc = svc_nr_add(t, "m.room.create", "", cr, create)) ||
        (rc = svc_nr_add(t, "m.room.member", cr, cr, member)) ||
        (rc = svc_nr_add(t, "m.room.power_levels", "", cr, pl)) ||
        (rc = svc_nr_add(t, "m.room.join_rules", "", cr,
                         json_pack("{s:s}", "join_rule", "invite"))) ||
        (rc = svc_nr_add(t, "m.room.history_visibility", "", cr,
                         json_pack("{s:s}", "history_visibility", "shared"))) ||
        (rc = svc_nr_add(t, "m.room.guest_access", "", cr,
                         json_pack("{s:s}", "guest_access", "forbidden"))))
        goto fail;
    if (o->name && (rc = svc_nr_add(t, "m.room.name", "", cr, json_pack("{s:s}", "name",
                                                                        o->name))))
        goto fail;
    if (o->topic && (rc = svc_nr_add(t, "m.room.topic", "", cr, json_pack("{s:s}", "topic",
                                                                          o->topic))))
        goto fail;
    if (o->room_avatar && (rc = svc_nr_add(t, "m.room.avatar", "", cr,
                                           json_pack("{s:s}", "url", o->room_avatar))))
        goto fail;
    size_t i;
    json_t *u;
    json_array_foreach(o->invite, i, u)
        if ((rc = svc_nr_add(t, "m.room.member", json_string_value(u), cr,
                             json_pack("{s:s}", "membership", "invite"))))
            goto fail;
    json_array_foreach(o->join, i, u) {
        const char *uid = json_string_value(u);
        if ((rc = svc_nr_add(t, "m.room.member", uid, cr,
                             json_pack("{s:s}", "membership", "invite"))) ||
            (rc = svc_nr_add(t, "m.room.member", uid, uid,
                             json_pack("{s:s}", "membership", "join"))))
            goto fail;
    }
    if (o->message && (rc = svc_nr_add(t, "m.room.message", NULL, cr,
                                       json_pack("{s:s, s:s}", "msgtype", "m.text", "body",
                                                 o->message))))
        goto fail;
    svc_nr_t *n = calloc(1, sizeof(*n));
    if (!n) {
        rc = -ENOMEM;
        goto fail;
    }
    n->done = done;
    n->ud = ud;
    if (o->tag_user) {
        json_t *tag = json_pack("{s:{s:{}}}", "tags", o->tag);
        n->tag_user = strdup(o->tag_user);
        n->tag_pos = tag && n->tag_user ? cl_ad_add(rm_txn_batch(t), o->tag_user,
                                                    rm_txn_room(t)->room_id, "m.tag", tag)
                                        : -ENOMEM;
        json_decref(tag);
    }
    rm_txn_commit(t, svc_nr_committed, n);
    return 0;
fail:
    rm_txn_abort(t);
    return rc < 0 ? rc : -EPERM;
}
