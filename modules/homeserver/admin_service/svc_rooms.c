/*
 * svc_rooms.c: the admin service's room reads (list with search, ordering
 * and paging; details; members; current state; messages), blocking, and
 * the helper that makes local users leave a room through the rooms
 * pipeline (room deletion, user deactivation).
 *
 * The summaries' SQL (name, alias, counts, flags of a room, read from
 * its current state) is shared with the room list (svc_rlist.c).
 */
#define _GNU_SOURCE /* qsort_r */
#include "svc.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- summaries --- */

/* "%:server" for LIKE, wildcards escaped (malloc'd). */
static char *svc_local_like(void)
{
    const char *s = hs.server_name;
    char *out = malloc(strlen(s) * 2 + 3);
    if (!out)
        return NULL;
    char *o = out;
    *o++ = '%';
    *o++ = ':';
    for (; *s; s++) {
        if (*s == '%' || *s == '_' || *s == '\\')
            *o++ = '\\';
        *o++ = *s;
    }
    *o = 0;
    return out;
}

/* The two summary statements: rooms (r) and their state (c), each
 * narrowed by `where` (SQL after WHERE / AND, binds `types` twice). */
#define SVC_SUM_COLS                                                                       \
    "SELECT r.room_id, r.room_version, r.creator, r.is_public,"                            \
    " (SELECT COUNT(*) FROM room_memberships m WHERE m.room_id = r.room_id"                \
    "  AND m.membership = 'join'),"                                                        \
    " (SELECT COUNT(*) FROM room_memberships m WHERE m.room_id = r.room_id"                \
    "  AND m.membership = 'join' AND m.user_id LIKE ? ESCAPE '\\'),"                       \
    " (SELECT COUNT(*) FROM current_state c WHERE c.room_id = r.room_id)"                  \
    " FROM rooms r WHERE "
#define SVC_SUM_STATE                                                                      \
    "SELECT c.room_id, c.type, e.json FROM current_state c JOIN events e"                  \
    " ON e.event_id = c.event_id WHERE c.state_key = '' AND c.type IN ('m.room.name',"     \
    " 'm.room.canonical_alias', 'm.room.join_rules', 'm.room.guest_access',"               \
    " 'm.room.history_visibility', 'm.room.encryption', 'm.room.create', 'm.room.avatar',"  \
    " 'm.room.topic') AND "

/* Rooms with events at stream positions in (?, ?]. */
#define SVC_CHANGED_ROOMS                                                                  \
    "IN (SELECT room_id FROM events WHERE stream_ordering > ? AND stream_ordering <= ?)"

void svc_summary_sql_since(mx_sql_batch_t *b, int64_t from, int64_t to)
{
    char *like = svc_local_like();
    mx_sql_add(b, SVC_SUM_COLS "r.room_id " SVC_CHANGED_ROOMS, "sii", like, from, to);
    mx_sql_add(b, SVC_SUM_STATE "c.room_id " SVC_CHANGED_ROOMS, "ii", from, to);
    free(like);
}

void svc_summary_sql_after(mx_sql_batch_t *b, const char *after, int64_t limit)
{
    char *like = svc_local_like();
    mx_sql_add(b, SVC_SUM_COLS "r.room_id > ? ORDER BY r.room_id LIMIT ?", "ssi", like, after,
               limit);
    mx_sql_add(b, SVC_SUM_STATE "c.room_id IN (SELECT room_id FROM rooms WHERE room_id > ?"
                  " ORDER BY room_id LIMIT ?)", "si", after, limit);
    free(like);
}

/* One room's summary statements. */
static void svc_summary_sql(mx_sql_batch_t *b, const char *room_id)
{
    char *like = svc_local_like();
    mx_sql_add(b, SVC_SUM_COLS "r.room_id = ?", "ss", like, room_id);
    mx_sql_add(b, SVC_SUM_STATE "c.room_id = ?", "s", room_id);
    free(like);
}

static const char *svc_content_str(const json_t *ev, const char *key)
{
    return json_string_value(json_object_get(json_object_get(ev, "content"), key));
}

static json_t *svc_opt_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *svc_room_summaries(const mx_sql_res_t *res, bool details)
{
    json_t *rooms = json_object();
    for (int i = 0; rooms && i < mx_sql_nrows(res, 0); i++) {
        const char *rid = mx_sql_text(res, 0, i, 0);
        json_t *o = json_pack("{s:s, s:n, s:n, s:I, s:I, s:s, s:s, s:n, s:b, s:b, s:n, s:n,"
                              " s:n, s:I, s:n}",
                              "room_id", rid, "name", "canonical_alias",
                              "joined_members", (json_int_t)mx_sql_int(res, 0, i, 4),
                              "joined_local_members", (json_int_t)mx_sql_int(res, 0, i, 5),
                              "version", mx_sql_text(res, 0, i, 1),
                              "creator", mx_sql_text(res, 0, i, 2), "encryption",
                              "federatable", 1, "public", (int)mx_sql_int(res, 0, i, 3),
                              "join_rules", "guest_access", "history_visibility",
                              "state_events", (json_int_t)mx_sql_int(res, 0, i, 6),
                              "room_type");
        if (details) {
            json_object_set_new(o, "avatar", json_null());
            json_object_set_new(o, "topic", json_null());
            json_object_set_new(o, "joined_local_devices", json_integer(0));
            json_object_set_new(o, "forgotten", json_false());
        }
        json_object_set_new(rooms, rid, o);
    }
    for (int i = 0; i < mx_sql_nrows(res, 1); i++) {
        json_t *o = json_object_get(rooms, mx_sql_text(res, 1, i, 0));
        const char *type = mx_sql_text(res, 1, i, 1), *text = mx_sql_text(res, 1, i, 2);
        json_t *ev = o && text ? json_loads(text, 0, NULL) : NULL;
        if (!ev)
            continue;
        if (!strcmp(type, "m.room.name"))
            json_object_set_new(o, "name", svc_opt_str(svc_content_str(ev, "name")));
        else if (!strcmp(type, "m.room.canonical_alias"))
            json_object_set_new(o, "canonical_alias", svc_opt_str(svc_content_str(ev, "alias")));
        else if (!strcmp(type, "m.room.join_rules"))
            json_object_set_new(o, "join_rules", svc_opt_str(svc_content_str(ev, "join_rule")));
        else if (!strcmp(type, "m.room.guest_access"))
            json_object_set_new(o, "guest_access", svc_opt_str(svc_content_str(ev, "guest_access")));
        else if (!strcmp(type, "m.room.history_visibility"))
            json_object_set_new(o, "history_visibility",
                                svc_opt_str(svc_content_str(ev, "history_visibility")));
        else if (!strcmp(type, "m.room.encryption"))
            json_object_set_new(o, "encryption", svc_opt_str(svc_content_str(ev, "algorithm")));
        else if (!strcmp(type, "m.room.create")) {
            json_t *fed = json_object_get(json_object_get(ev, "content"), "m.federate");
            json_object_set_new(o, "federatable", json_boolean(!json_is_false(fed)));
            json_object_set_new(o, "room_type", svc_opt_str(svc_content_str(ev, "type")));
        } else if (details && !strcmp(type, "m.room.avatar"))
            json_object_set_new(o, "avatar", svc_opt_str(svc_content_str(ev, "url")));
        else if (details && !strcmp(type, "m.room.topic"))
            json_object_set_new(o, "topic", svc_opt_str(svc_content_str(ev, "topic")));
        json_decref(ev);
    }
    return rooms;
}

/* ------------------------------------------------------------ details --- */

static json_t *svc_details_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    json_t *all = svc_room_summaries(res, true);
    json_t *o = json_incref(json_object_get(all, c->room_id));
    json_decref(all);
    if (!o) {
        *status = -ENOENT;
        return NULL;
    }
    /* joined_local_devices: devices of the local joined members. */
    json_object_set_new(o, "joined_local_devices",
                        json_integer(mx_sql_nrows(res, 2) ? mx_sql_int(res, 2, 0, 0) : 0));
    json_object_set_new(o, "blocked", json_boolean(svc_room_is_blocked(c->room_id)));
    return o;
}

int svc_room_details(const char *room_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->room_id = mx_pstrdup(c->pool, room_id);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        svc_summary_sql(b, room_id);
        mx_sql_add(b, "SELECT COUNT(*) FROM devices d JOIN room_memberships m"
                      " ON m.user_id = d.user_id WHERE m.room_id = ? AND m.membership = 'join'",
                   "s", room_id);
    }
    return svc_run(c, b, svc_details_built);
}

/* ------------------------------------------------- members, state, msgs --- */

static json_t *svc_members_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    json_t *arr = json_array();
    int n = mx_sql_nrows(res, 1);
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_string(mx_sql_text(res, 1, i, 0)));
    return json_pack("{s:o, s:i}", "members", arr, "total", n);
}

int svc_room_members(const char *room_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM rooms WHERE room_id = ?", "s", room_id);
        mx_sql_add(b, "SELECT user_id FROM room_memberships WHERE room_id = ? AND"
                      " membership = 'join' ORDER BY user_id", "s", room_id);
    }
    return svc_run(c, b, svc_members_built);
}

static json_t *svc_events_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    json_t *arr = json_array();
    int n = mx_sql_nrows(res, 1);
    for (int i = 0; i < n; i++) {
        json_t *ev = rm_row_event(res, 1, i, 0, NULL, RM_CE_ROOM_ID);
        if (ev)
            json_array_append_new(arr, ev);
    }
    if (!c->flag)
        return json_pack("{s:o}", "state", arr);
    /* messages: start/end tokens around the chunk */
    json_t *out = json_pack("{s:o, s:s}", "chunk", arr, "start", c->str);
    if (n > 0 && n >= c->n) {
        int64_t last = mx_sql_int(res, 1, n - 1, 5);
        bool fwd = c->args && svc_qstr(c->args, "dir") && !strcmp(svc_qstr(c->args, "dir"), "f");
        json_object_set_new(out, "end",
                            json_string(rm_make_token(c->pool, fwd ? last : last - 1)));
    }
    return out;
}

int svc_room_state(const char *room_id, const char *type, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM rooms WHERE room_id = ?", "s", room_id);
        if (type)
            mx_sql_add(b, "SELECT " RM_EV_COLS " FROM current_state c JOIN events e"
                          " ON e.event_id = c.event_id WHERE c.room_id = ? AND c.type = ?"
                          " ORDER BY e.stream_ordering", "ss", room_id, type);
        else
            mx_sql_add(b, "SELECT " RM_EV_COLS " FROM current_state c JOIN events e"
                          " ON e.event_id = c.event_id WHERE c.room_id = ?"
                          " ORDER BY e.stream_ordering", "s", room_id);
    }
    return svc_run(c, b, svc_events_built);
}

int svc_room_messages(const char *room_id, const json_t *q, hs_admin_done_fn cb, void *ud)
{
    const char *from = svc_qstr(q, "from"), *dir = svc_qstr(q, "dir");
    bool fwd = dir && !strcmp(dir, "f");
    int64_t limit = svc_qint(q, "limit", 10), pos = 0;
    if (limit < 0 || (dir && strcmp(dir, "f") && strcmp(dir, "b")))
        return -EINVAL;
    if (limit > 1000)
        limit = 1000;
    if (from && rm_parse_token(from, &pos) < 0)
        return -EINVAL;
    if (!from)
        pos = fwd ? 0 : hs_stream_current(HS_STREAM_EVENTS);
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->flag = true;
    c->n = limit;
    c->args = json_deep_copy(q);
    c->str = from ? mx_pstrdup(c->pool, from) : rm_make_token(c->pool, pos);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM rooms WHERE room_id = ?", "s", room_id);
        if (fwd)
            mx_sql_add(b, "SELECT " RM_EV_COLS " FROM events e WHERE e.room_id = ? AND"
                          " e.stream_ordering > ? ORDER BY e.stream_ordering LIMIT ?",
                       "sii", room_id, pos, limit);
        else
            mx_sql_add(b, "SELECT " RM_EV_COLS " FROM events e WHERE e.room_id = ? AND"
                          " e.stream_ordering <= ? ORDER BY e.stream_ordering DESC LIMIT ?",
                       "sii", room_id, pos, limit);
    }
    return svc_run(c, b, svc_events_built);
}

/* ------------------------------------------------------------ blocking --- */

bool svc_room_is_blocked(const char *room_id)
{
    return svc && room_id && json_object_get(svc->blocked, room_id) != NULL;
}

static void svc_block_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    (void)res;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    if (c->flag)
        json_object_set_new(svc->blocked, c->room_id, svc_opt_str(c->user_id));
    else
        json_object_del(svc->blocked, c->room_id);
    svc_finish(c, 0, json_pack("{s:b}", "block", c->flag));
}

int svc_room_block(const char *room_id, int block, const char *by_user, hs_admin_done_fn cb,
                   void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    if (block < 0) {
        json_t *who = json_object_get(svc->blocked, room_id);
        json_t *out = json_pack("{s:b}", "block", who != NULL);
        if (json_is_string(who))
            json_object_set(out, "user_id", who);
        svc_call_free(c);
        cb(0, out, ud);
        return 0;
    }
    c->room_id = mx_pstrdup(c->pool, room_id);
    c->user_id = by_user ? mx_pstrdup(c->pool, by_user) : NULL;
    c->flag = block != 0;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        if (block)
            mx_sql_add(b, "INSERT INTO blocked_rooms (room_id, user_id, ts) VALUES (?, ?, ?)"
                          " ON CONFLICT (room_id) DO UPDATE SET user_id = excluded.user_id",
                       "ssi", room_id, by_user, (int64_t)mx_now_ms());
        else
            mx_sql_add(b, "DELETE FROM blocked_rooms WHERE room_id = ?", "s", room_id);
    }
    return svc_run_raw(c, b, svc_block_written);
}

/* -------------------------------------------------------------- leaving --- */

typedef struct svc_leave {
    char *room_id, *user_id;
    svc_leave_fn done;
    void *ud;
    json_t *left, *failed;
} svc_leave_t;

static void svc_leave_end(svc_leave_t *l, int status)
{
    if (l->done)
        l->done(status, l->left, l->failed, l->ud);
    json_decref(l->left);
    json_decref(l->failed);
    free(l->room_id);
    free(l->user_id);
    free(l);
}

static void svc_leave_committed(int status, rm_txn_t *t, void *ud)
{
    (void)t;
    svc_leave_t *l = ud;
    if (status < 0) {
        /* Nothing was written: everyone we tried failed. */
        json_array_extend(l->failed, l->left);
        json_array_clear(l->left);
    }
    svc_leave_end(l, status < 0 ? status : 0);
}

static void svc_leave_room_loaded(rm_room_t *room, int status, void *ud)
{
    svc_leave_t *l = ud;
    if (!room) {
        svc_leave_end(l, status < 0 ? status : -ENOENT);
        return;
    }
    json_t *targets = json_array();
    if (l->user_id) {
        const char *m = rm_membership(room, l->user_id);
        if (m && (!strcmp(m, "join") || !strcmp(m, "invite") || !strcmp(m, "knock")))
            json_array_append_new(targets, json_string(l->user_id));
    } else {
        static const char *const ms[] = { "join", "invite", "knock" };
        for (int k = 0; k < 3; k++) {
            json_t *mem = rm_room_members(room, ms[k]);
            size_t i;
            json_t *u;
            json_array_foreach(mem, i, u)
                if (svc_is_local(json_string_value(u)))
                    json_array_append(targets, u);
            json_decref(mem);
        }
    }
    if (json_array_size(targets) == 0) {
        json_decref(targets);
        svc_leave_end(l, 0);
        return;
    }
    rm_txn_t *t = rm_txn_new(room);
    if (!t) {
        json_array_extend(l->failed, targets);
        json_decref(targets);
        svc_leave_end(l, -ENOMEM);
        return;
    }
    json_t *content = json_pack("{s:s}", "membership", "leave");
    size_t i;
    json_t *u;
    json_array_foreach(targets, i, u) {
        const char *uid = json_string_value(u), *eid = NULL;
        char why[256] = "";
        int rc = rm_txn_add(t, "m.room.member", uid, uid, content, NULL, &eid, why, sizeof(why));
        if (rc < 0) {
            mx_log("homeserver", MX_LOG_WARN, "admin: %s cannot leave %s: %s", uid,
                   room->room_id, why);
            json_array_append(l->failed, u);
        } else {
            json_array_append(l->left, u);
        }
    }
    json_decref(content);
    json_decref(targets);
    if (rm_txn_count(t) == 0) {
        rm_txn_abort(t);
        svc_leave_end(l, 0);
        return;
    }
    rm_txn_commit(t, svc_leave_committed, l);
}

void svc_leave_room(const char *room_id, const char *user_id, svc_leave_fn done, void *ud)
{
    svc_leave_t *l = calloc(1, sizeof(*l));
    if (l) {
        l->room_id = strdup(room_id);
        l->user_id = user_id ? strdup(user_id) : NULL;
        l->left = json_array();
        l->failed = json_array();
    }
    if (!l || !l->room_id || (user_id && !l->user_id) || !l->left || !l->failed) {
        if (l) {
            json_decref(l->left);
            json_decref(l->failed);
            free(l->room_id);
            free(l->user_id);
            free(l);
        }
        if (done)
            done(-ENOMEM, NULL, NULL, ud);
        return;
    }
    l->done = done;
    l->ud = ud;
    rm_room_get(l->room_id, svc_leave_room_loaded, l);
}

static void svc_leave_all_read(int status, mx_sql_res_t *res, void *ud)
{
    char *user_id = ud;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "admin: cannot list the rooms of %s", user_id);
    } else {
        for (int i = 0; i < mx_sql_nrows(res, 0); i++)
            svc_leave_room(mx_sql_text(res, 0, i, 0), user_id, NULL, NULL);
    }
    free(user_id);
}

void svc_leave_all_rooms(const char *user_id)
{
    char *uid = strdup(user_id);
    mx_sql_batch_t *b = uid ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        free(uid);
        return;
    }
    mx_sql_add(b, "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership IN"
                  " ('join', 'invite', 'knock')", "s", uid);
    if (mx_sql_run(b, svc_leave_all_read, uid) < 0) {
        mx_sql_batch_free(b);
        free(uid);
    }
}
