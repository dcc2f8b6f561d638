/*
 * svc_rooms.c: the admin service's room reads (list with search, ordering
 * and paging; details; members; current state; messages), blocking, and
 * the helper that makes local users leave a room through the rooms
 * pipeline (room deletion, user deactivation).
 *
 * The list is filtered and sorted in memory from summaries kept between
 * calls (svc->rl_rooms): each call re-reads only the rooms with events
 * after the position the summaries were read at (hs_stream_current, which
 * never passes a write still committing), the public flags (the directory
 * changes them without an event) and the number of rooms (a deleted room
 * makes it differ: everything is read again).  An appliance has thousands
 * of rooms, not millions, and sorting by name or alias in SQL would need
 * the engines' different JSON functions.
 */
#define _GNU_SOURCE /* qsort_r */
#include "svc.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- summaries --- */

/* "%:server" for LIKE, wildcards escaped. */
static char *svc_local_like(mx_pool_t *p)
{
    const char *s = hs.server_name;
    char *out = mx_palloc(p, strlen(s) * 2 + 3);
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

/* Rooms with events at stream positions in (?, ?]. */
#define SVC_CHANGED_ROOMS                                                                  \
    "IN (SELECT room_id FROM events WHERE stream_ordering > ? AND stream_ordering <= ?)"

/* Adds the two summary statements (one room when room_id is set; the rooms
 * with events in (from, to] when from >= 0). */
static void svc_summary_sql_since(mx_sql_batch_t *b, mx_pool_t *p, const char *room_id,
                                  int64_t from, int64_t to)
{
    const char *like = svc_local_like(p);
    const char *cols =
        "SELECT r.room_id, r.room_version, r.creator, r.is_public,"
        " (SELECT COUNT(*) FROM room_memberships m WHERE m.room_id = r.room_id"
        "  AND m.membership = 'join'),"
        " (SELECT COUNT(*) FROM room_memberships m WHERE m.room_id = r.room_id"
        "  AND m.membership = 'join' AND m.user_id LIKE ? ESCAPE '\\'),"
        " (SELECT COUNT(*) FROM current_state c WHERE c.room_id = r.room_id)"
        " FROM rooms r";
    const char *state =
        "SELECT c.room_id, c.type, e.json FROM current_state c JOIN events e"
        " ON e.event_id = c.event_id WHERE c.state_key = '' AND c.type IN ('m.room.name',"
        " 'm.room.canonical_alias', 'm.room.join_rules', 'm.room.guest_access',"
        " 'm.room.history_visibility', 'm.room.encryption', 'm.room.create', 'm.room.avatar',"
        " 'm.room.topic')";
    if (room_id) {
        mx_sql_add(b, mx_psprintf(p, "%s WHERE r.room_id = ?", cols), "ss", like, room_id);
        mx_sql_add(b, mx_psprintf(p, "%s AND c.room_id = ?", state), "s", room_id);
    } else if (from >= 0) {
        mx_sql_add(b, mx_psprintf(p, "%s WHERE r.room_id " SVC_CHANGED_ROOMS, cols), "sii", like,
                   from, to);
        mx_sql_add(b, mx_psprintf(p, "%s AND c.room_id " SVC_CHANGED_ROOMS, state), "ii", from,
                   to);
    } else {
        mx_sql_add(b, cols, "s", like);
        mx_sql_add(b, state, "");
    }
}

static void svc_summary_sql(mx_sql_batch_t *b, mx_pool_t *p, const char *room_id)
{
    svc_summary_sql_since(b, p, room_id, -1, 0);
}

static const char *svc_content_str(const json_t *ev, const char *key)
{
    return json_string_value(json_object_get(json_object_get(ev, "content"), key));
}

static json_t *svc_opt_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Builds room_id -> summary object from the two statements. */
static json_t *svc_summaries(const mx_sql_res_t *res, bool details)
{
    json_t *rooms = json_object();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
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

/* --------------------------------------------------------------- list --- */

typedef struct svc_sort {
    const char *key;
    int dir;
} svc_sort_t;

/* Compares one member of two room objects: strings, integers, booleans;
 * null sorts first (as an empty value). */
static int svc_room_cmp(const void *pa, const void *pb, void *arg)
{
    const svc_sort_t *s = arg;
    const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
    const json_t *va = json_object_get(a, s->key), *vb = json_object_get(b, s->key);
    int r = 0;
    if (json_is_integer(va) || json_is_integer(vb)) {
        json_int_t x = json_integer_value(va), y = json_integer_value(vb);
        r = x < y ? -1 : x > y;
    } else if (json_is_boolean(va) || json_is_boolean(vb)) {
        r = (int)json_is_true(va) - (int)json_is_true(vb);
    } else {
        const char *x = json_string_value(va), *y = json_string_value(vb);
        r = strcmp(x ? x : "", y ? y : "");
    }
    if (r == 0)
        r = strcmp(json_string_value(json_object_get(a, "room_id")),
                   json_string_value(json_object_get(b, "room_id")));
    return r * s->dir;
}

static bool svc_contains_ci(const char *hay, const char *needle)
{
    if (!hay)
        return false;
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

/* The page of the list from the summaries `all` (borrowed). */
static json_t *svc_rooms_page(svc_call_t *c, json_t *all)
{
    const json_t *q = c->args;
    const char *term = svc_qstr(q, "search_term");
    int pub = svc_qbool(q, "public_rooms"), empty = svc_qbool(q, "empty_rooms");
    const char *order = svc_qstr(q, "order_by");
    svc_sort_t sort = { order ? order : "name", 1 };
    /* Synapse's sizes sort biggest first by default. */
    bool desc_default = order && (!strcmp(order, "joined_members") ||
                                  !strcmp(order, "joined_local_members") ||
                                  !strcmp(order, "state_events"));
    const char *dir = svc_qstr(q, "dir");
    bool back = dir && !strcmp(dir, "b");
    sort.dir = (desc_default != back) ? -1 : 1;
    if (!strcmp(sort.key, "size"))
        sort.key = "state_events";
    /* Every room sorted in this order, kept while the summaries do not
     * change (svc->rl_gen); the filters then keep rooms in that order. */
    if (svc->rl_sorted_gen != svc->rl_gen || !svc->rl_sorted) {
        json_decref(svc->rl_sorted);
        svc->rl_sorted = json_object();
        svc->rl_sorted_gen = svc->rl_gen;
    }
    char skey[64];
    snprintf(skey, sizeof(skey), "%s/%d", sort.key, sort.dir);
    json_t *sorted = json_object_get(svc->rl_sorted, skey);
    if (!sorted) {
        size_t n = json_object_size(all), i = 0;
        json_t **v = calloc(n ? n : 1, sizeof(*v));
        if (!v)
            return NULL;
        const char *key;
        json_t *o;
        json_object_foreach(all, key, o)
            v[i++] = o;
        qsort_r(v, n, sizeof(*v), svc_room_cmp, &sort);
        sorted = json_array();
        for (i = 0; sorted && i < n; i++)
            json_array_append(sorted, v[i]);
        free(v);
        json_object_set_new(svc->rl_sorted, skey, sorted);
    }
    int64_t from = c->n, limit = svc_qint(q, "limit", 100), k = 0;
    json_t *rooms = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(sorted, i, o) {
        if (term && *term && !svc_contains_ci(svc_qstr(o, "name"), term) &&
            !svc_contains_ci(svc_qstr(o, "canonical_alias"), term) &&
            !svc_contains_ci(svc_qstr(o, "room_id"), term))
            continue;
        if (pub >= 0 && json_is_true(json_object_get(o, "public")) != (pub == 1))
            continue;
        if (empty >= 0 && (svc_qint(o, "joined_members", 0) == 0) != (empty == 1))
            continue;
        if (k >= from && k < from + limit)
            json_array_append(rooms, o);
        k++;
    }
    json_t *out = json_pack("{s:o, s:I, s:I}", "rooms", rooms, "offset", (json_int_t)from,
                            "total_rooms", (json_int_t)k);
    if (out && from + limit < (int64_t)k)
        json_object_set_new(out, "next_batch", json_integer(from + limit));
    if (out && from > 0)
        json_object_set_new(out, "prev_batch", json_integer(from - limit > 0 ? from - limit : 0));
    return out;
}

/* Brings svc->rl_rooms up to date, then answers the page. */
static int svc_rooms_refresh(svc_call_t *c);

static void svc_rooms_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    /* c->str: the position read up to; c->flag: a full read. */
    int64_t to = strtoll(c->str, NULL, 10);
    json_t *fresh = svc_summaries(res, false);
    if (!fresh) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    if (c->flag || !svc->rl_rooms) {
        json_decref(svc->rl_rooms);
        svc->rl_rooms = fresh;
        svc->rl_pos = to;
        svc->rl_gen++;
    } else if (to >= svc->rl_pos) {
        /* Newer than what is kept (a call that read earlier may end later:
         * it is not applied).  Only a differing summary counts as a
         * change (most events change none). */
        const char *frid;
        json_t *fo;
        json_object_foreach(fresh, frid, fo) {
            if (!json_equal(json_object_get(svc->rl_rooms, frid), fo)) {
                json_object_set(svc->rl_rooms, frid, fo);
                svc->rl_gen++;
            }
        }
        json_decref(fresh);
        svc->rl_pos = to;
        json_t *pub = json_object();
        for (int i = 0; pub && i < mx_sql_nrows(res, 2); i++)
            json_object_set_new(pub, mx_sql_text(res, 2, i, 0), json_true());
        const char *rid;
        json_t *o;
        json_object_foreach(svc->rl_rooms, rid, o) {
            bool is_pub = json_object_get(pub, rid) != NULL;
            if (json_is_true(json_object_get(o, "public")) != is_pub) {
                json_t *n = json_copy(o); /* replies may hold the old one */
                json_object_set_new(n, "public", json_boolean(is_pub));
                json_object_set_new(svc->rl_rooms, rid, n);
                svc->rl_gen++;
            }
        }
        json_decref(pub);
        if ((int64_t)json_object_size(svc->rl_rooms) != mx_sql_int(res, 3, 0, 0)) {
            /* A room was deleted: read everything again. */
            c->flag = true;
            hs_admin_done_fn cb = c->cb;
            void *cud = c->ud;
            int rc = svc_rooms_refresh(c);
            if (rc < 0)
                cb(rc, NULL, cud);
            return;
        }
    } else {
        json_decref(fresh);
    }
    json_t *out = svc_rooms_page(c, svc->rl_rooms);
    svc_finish(c, out ? 0 : -ENOMEM, out);
}

static int svc_rooms_refresh(svc_call_t *c)
{
    int64_t to = hs_stream_current(HS_STREAM_EVENTS);
    bool full = c->flag || !svc->rl_rooms;
    c->flag = full;
    c->str = mx_psprintf(c->pool, "%lld", (long long)to);
    mx_sql_batch_t *b = c->str ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (b) {
        svc_summary_sql_since(b, c->pool, NULL, full ? -1 : svc->rl_pos, to);
        if (!full) {
            mx_sql_add(b, "SELECT room_id FROM rooms WHERE is_public = 1", "");
            mx_sql_add(b, "SELECT COUNT(*) FROM rooms", "");
        }
    }
    return svc_run_raw(c, b, svc_rooms_read);
}

static const char *const svc_room_orders[] = {
    "name", "canonical_alias", "joined_members", "joined_local_members", "version", "creator",
    "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility",
    "state_events", "size", "room_id", NULL,
};

int svc_list_rooms(const json_t *q, hs_admin_done_fn cb, void *ud)
{
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    const char *order = svc_qstr(q, "order_by");
    if (from < 0 || limit < 0)
        return -EINVAL;
    if (order) {
        int i;
        for (i = 0; svc_room_orders[i] && strcmp(svc_room_orders[i], order); i++)
            ;
        if (!svc_room_orders[i])
            return -EINVAL;
    }
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->n = from;
    c->args = json_deep_copy(q);
    return svc_rooms_refresh(c);
}

/* ------------------------------------------------------------ details --- */

static json_t *svc_details_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    json_t *all = svc_summaries(res, true);
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
        svc_summary_sql(b, c->pool, room_id);
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
