/*
 * svc_room_admin.c: room maintenance for the Admin API — forward
 * extremities (list; delete all but the newest, as Synapse does when a room
 * has too many) and make_room_admin (give a local user the power level of
 * the room's most powerful local member, inviting it when it cannot join).
 */
#include "svc.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ forward extremities --- */

static json_t *svc_fx_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    (void)status;
    json_t *arr = json_array();
    int n = mx_sql_nrows(res, 0);
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:o, s:o, s:o}",
                                             "event_id", mx_sql_text(res, 0, i, 0),
                                             "state_group", svc_col_int(res, 0, i, 1),
                                             "depth", svc_col_int(res, 0, i, 2),
                                             "received_ts", svc_col_int(res, 0, i, 3)));
    return json_pack("{s:i, s:o}", "count", n, "results", arr);
}

int svc_forward_extremities(const char *room_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT x.event_id, g.group_id, e.depth, e.received_ts"
                      " FROM room_extremities x LEFT JOIN events e ON e.event_id = x.event_id"
                      " LEFT JOIN event_to_state_group g ON g.event_id = x.event_id"
                      " WHERE x.room_id = ? ORDER BY e.stream_ordering DESC", "s", room_id);
    return svc_run(c, b, svc_fx_built);
}

static json_t *svc_fx_deleted(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    /* The cached room still lists the old extremities: reload it. */
    rm_room_t *r = rm_room_cached(c->room_id);
    if (r)
        rm_room_drop(r);
    return json_pack("{s:I}", "deleted", (json_int_t)mx_sql_changes(res, 0));
}

int svc_delete_forward_extremities(const char *room_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->room_id = mx_pstrdup(c->pool, room_id);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    /* The newest extremity (by stream order) stays. */
    if (b)
        mx_sql_add(b, "DELETE FROM room_extremities WHERE room_id = ? AND event_id <> COALESCE("
                      "(SELECT x.event_id FROM room_extremities x JOIN events e"
                      " ON e.event_id = x.event_id WHERE x.room_id = ?"
                      " ORDER BY e.stream_ordering DESC LIMIT 1), '')", "ss", room_id, room_id);
    return svc_run(c, b, svc_fx_deleted);
}

/* ---------------------------------------------------- make room admin --- */

static void svc_mra_committed(int status, rm_txn_t *t, void *ud)
{
    (void)t;
    svc_call_t *c = ud;
    if (status < 0)
        svc_finish(c, status, NULL);
    else
        svc_finish(c, 0, json_object());
}

/* True when `user_id` is a creator of a room whose creators have
 * unlimited power (room version 12). */
static bool svc_is_creator(const rm_room_t *room, const char *user_id)
{
    if (!room->rv->creators_infinite_power)
        return false;
    const json_t *create = rm_state_get(room, "m.room.create", "");
    const char *sender = json_string_value(json_object_get(create, "sender"));
    if (sender && !strcmp(sender, user_id))
        return true;
    const json_t *ac = json_object_get(json_object_get(create, "content"), "additional_creators");
    size_t i;
    const json_t *u;
    json_array_foreach(ac, i, u)
        if (json_is_string(u) && !strcmp(json_string_value(u), user_id))
            return true;
    return false;
}

static void svc_mra_loaded(rm_room_t *room, int status, void *ud)
{
    svc_call_t *c = ud;
    if (!room) {
        svc_fail(c, status == -ENOENT ? -ENOENT : status, "M_NOT_FOUND", "Room not found");
        return;
    }
    const json_t *plev = rm_state_get(room, "m.room.power_levels", "");
    const json_t *pl = json_object_get(plev, "content");
    const json_t *users = json_object_get(pl, "users");
    /* The most powerful joined local member. */
    json_t *joined = rm_room_members(room, "join");
    const char *admin = NULL;
    int64_t best = INT64_MIN, most = 100;
    bool admin_creator = false;
    size_t i;
    json_t *u;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)users, k, v)
        if (json_is_integer(v) && json_integer_value(v) > most)
            most = json_integer_value(v);
    json_array_foreach(joined, i, u) {
        const char *uid = json_string_value(u);
        if (!svc_is_local(uid) || !strcmp(uid, c->user_id))
            continue;
        bool creator = svc_is_creator(room, uid);
        const json_t *lv = json_object_get(users, uid);
        int64_t level = creator ? INT64_MAX
                        : json_is_integer(lv) ? json_integer_value(lv)
                                              : svc_qint(pl, "users_default", 0);
        if (!plev && !creator) {
            /* No power levels: the creator has 100. */
            const json_t *create = rm_state_get(room, "m.room.create", "");
            const char *cr = json_string_value(json_object_get(create, "sender"));
            level = cr && !strcmp(cr, uid) ? 100 : 0;
        }
        if (level > best) {
            best = level;
            admin = uid;
            admin_creator = creator;
        }
    }
    if (!admin || best <= 0) {
        json_decref(joined);
        svc_fail(c, -EINVAL, "M_UNKNOWN", "No local admin user in room");
        return;
    }
    const char *m = rm_membership(room, c->user_id);
    bool in_room = m && (!strcmp(m, "join") || !strcmp(m, "invite"));
    const json_t *jr = rm_state_get(room, "m.room.join_rules", "");
    const char *rule = json_string_value(json_object_get(json_object_get(jr, "content"),
                                                         "join_rule"));
    rm_txn_t *t = rm_txn_new(room);
    if (!t) {
        json_decref(joined);
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    char why[256] = "";
    int rc = 0;
    if (!svc_is_creator(room, c->user_id)) {
        json_t *content = pl ? json_deep_copy(pl) : json_object();
        json_t *nu = json_object_get(content, "users");
        if (!json_is_object(nu)) {
            nu = json_object();
            json_object_set_new(content, "users", nu);
        }
        if (!plev)
            json_object_set_new(nu, admin, json_integer(100));
        json_object_set_new(nu, c->user_id, json_integer(admin_creator ? most : best));
        rc = rm_txn_add(t, "m.room.power_levels", "", admin, content, NULL, NULL, why,
                        sizeof(why));
        json_decref(content);
    }
    if (rc == 0 && !in_room && !(rule && !strcmp(rule, "public"))) {
        json_t *inv = json_pack("{s:s}", "membership", "invite");
        rc = rm_txn_add(t, "m.room.member", c->user_id, admin, inv, NULL, NULL, why, sizeof(why));
        json_decref(inv);
    }
    json_decref(joined);
    if (rc != 0) {
        rm_txn_abort(t);
        svc_fail(c, -EINVAL, "M_UNKNOWN", "No local admin user in room with power to update"
                 " power levels (%s)", why);
        return;
    }
    if (rm_txn_count(t) == 0) {
        rm_txn_abort(t);
        svc_finish(c, 0, json_object());
        return;
    }
    rm_txn_commit(t, svc_mra_committed, c);
}

int svc_make_room_admin(const char *room_id, const char *user_id, hs_admin_done_fn cb, void *ud)
{
    if (!svc_is_local(user_id))
        return -EINVAL;
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->room_id = mx_pstrdup(c->pool, room_id);
    c->user_id = mx_pstrdup(c->pool, user_id);
    rm_room_get(c->room_id, svc_mra_loaded, c);
    return 0;
}
