/*
 * rm_messages.c: reading a room's history and members —
 * GET /rooms/{roomId}/messages, /context/{eventId}, /event/{eventId},
 * /members, /joined_members, GET /joined_rooms and
 * GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event.
 *
 * Pagination follows the events stream order (stream_ordering); tokens are
 * "t<P>" = the point after position P (rooms.h).  A user sees events up to
 * their leave (or all of them while joined, or when the history is
 * world_readable); the cap is computed in SQL from room_memberships so a
 * page is one statement.
 */
#include "rooms.h"
#include "../relations/relations.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RM_MAX_PAGE 1000

typedef struct ms_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *room_id;
    const char *dev;
    json_t *filter;        /* owned or NULL */
    rm_room_t *room;       /* referenced */
    int limit;
    char dir;
    int64_t from, to;
    bool has_to;
    bool peeking;          /* not in the room (world_readable preview) */
    json_t *out;           /* owned: the reply while bundles are added */
    json_t *wrap;          /* owned: the event lists given to the bundler */
} ms_ctx_t;

static void ms_free(void *p)
{
    ms_ctx_t *c = p;
    json_decref(c->out);
    json_decref(c->wrap);
    json_decref(c->filter);
    if (c->room)
        rm_room_unref(c->room);
}

static bool ms_world_readable(const rm_room_t *r)
{
    const json_t *hv = rm_state_get(r, "m.room.history_visibility", "");
    const char *v = hv ? json_string_value(json_object_get(json_object_get(hv, "content"),
                                                           "history_visibility"))
                       : NULL;
    return v && strcmp(v, "world_readable") == 0;
}

/* The visibility cap expression: the user's leave position, or "all" while
 * joined / for world-readable rooms.  Parameters: big, room_id, user_id. */
#define MS_CAP_SQL                                                                       \
    "COALESCE((SELECT CASE WHEN membership = 'join' THEN ? ELSE stream_ordering END"      \
    " FROM room_memberships WHERE room_id = ? AND user_id = ?), -1)"
#define MS_ALL INT64_C(9000000000000000000)

/* Whether the user may read the room at all. */
static bool ms_may_read(ms_ctx_t *c, rm_room_t *room)
{
    if (rm_membership(room, c->who->user_id) || ms_world_readable(room))
        return true;
    mx_req_error(c->req, 403, "M_FORBIDDEN", "you are not allowed to view this room");
    return false;
}

/* Synapse's is_peeking: the user neither is nor was in the room. */
static bool ms_peeking(const ms_ctx_t *c, const rm_room_t *room)
{
    const char *m = rm_membership(room, c->who->user_id);
    return !m || (strcmp(m, "join") && strcmp(m, "leave") && strcmp(m, "ban"));
}

/* Whether row `i` of statement `st` (group ID in column `gcol`) may be seen. */
static bool ms_visible(const ms_ctx_t *c, const rm_vis_t *v, const mx_sql_res_t *res, int st,
                       int i, int gcol, json_t *ev)
{
    if (!v)
        return true;
    int64_t g = mx_sql_is_null(res, st, i, gcol) ? 0 : mx_sql_int(res, st, i, gcol);
    return rm_vis_visible(v, g, ev, c->who->user_id, c->peeking);
}

static ms_ctx_t *ms_new(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    ms_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->room_id = mx_req_param(req, "roomId");
    c->dev = rm_device_key(pool, c->who);
    mx_pool_on_free(pool, ms_free, c);
    if (c->room_id && !rm_room_id_ok(c->room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID");
        return NULL;
    }
    const char *f = mx_req_query(req, "filter");
    if (f && *f) {
        c->filter = json_loads(f, 0, NULL);
        if (!json_is_object(c->filter)) {
            mx_req_error(req, 400, "M_BAD_JSON", "filter must be a JSON object");
            return NULL;
        }
    }
    return c;
}

static int ms_limit(mx_req_t *req, int def)
{
    const char *l = mx_req_query(req, "limit");
    if (!l || !*l)
        return def;
    long v = strtol(l, NULL, 10);
    if (v < 0)
        return -1;
    return v > RM_MAX_PAGE ? RM_MAX_PAGE : (int)v;
}

/* Member events (client format) of the senders of `events`, from the
 * current state, for lazy loading. */
static json_t *ms_member_state(rm_room_t *room, json_t *events)
{
    json_t *seen = json_object();
    json_t *state = json_array();
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        const char *s = json_string_value(json_object_get(ev, "sender"));
        if (!s || json_object_get(seen, s))
            continue;
        json_object_set_new(seen, s, json_true());
        const json_t *m = rm_state_get(room, "m.room.member", s);
        if (m)
            json_array_append_new(state, rm_client_event(m, rm_state_id(room, "m.room.member", s),
                                                         NULL, NULL, NULL, NULL, RM_CE_ROOM_ID));
    }
    json_decref(seen);
    return state;
}

/* ------------------------------------------------------------ /messages --- */

/* After bundled aggregations (and ignored senders dropped): reply. */
static void ms_page_bundled(int status, void *ud)
{
    ms_ctx_t *c = ud;
    (void)status;
    json_t *out = c->out;
    c->out = NULL;
    if (json_is_true(json_object_get(c->filter, "lazy_load_members")))
        json_object_set_new(out, "state", ms_member_state(c->room, json_object_get(out, "chunk")));
    mx_req_reply_json(c->req, 200, out);
}

static void ms_page(int status, mx_sql_res_t *res, void *ud)
{
    ms_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "reading messages");
        return;
    }
    int n = mx_sql_nrows(res, 0);
    if (n > c->limit)
        n = c->limit;
    rm_vis_t *vis = rm_vis_load(res, 1);
    json_t *chunk = json_array();
    int64_t last = c->from;
    for (int i = 0; i < n; i++) {
        last = mx_sql_int(res, 0, i, 5);
        const char *type = mx_sql_text(res, 0, i, 6);
        const char *sender = mx_sql_text(res, 0, i, 7);
        if (!hs_filter_match(c->filter, type, sender))
            continue;
        json_t *ev = rm_row_event(res, 0, i, 0, c->dev, RM_CE_ROOM_ID);
        if (ev && ms_visible(c, vis, res, 0, i, 8, ev))
            json_array_append_new(chunk, ev);
        else
            json_decref(ev);
    }
    rm_vis_free(vis);
    mx_pool_t *pool = mx_req_pool(c->req);
    json_t *out = json_object();
    json_object_set_new(out, "start", json_string(rm_make_token(pool, c->from)));
    /* `end` is left out only when nothing more can come (Synapse) */
    if (n > 0)
        json_object_set_new(out, "end", json_string(rm_make_token(pool, c->dir == 'b' ? last - 1
                                                                                      : last)));
    json_object_set_new(out, "chunk", chunk);
    c->out = out;
    hs_relations_bundle(chunk, c->who->user_id, HS_REL_DROP_IGNORED, ms_page_bundled, c);
}

static void ms_messages_room(rm_room_t *room, int status, void *ud)
{
    ms_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status) || !ms_may_read(c, room))
        return;
    rm_room_ref(room);
    c->room = room;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    int64_t all = ms_world_readable(room) ? MS_ALL : -2;
    c->peeking = ms_peeking(c, room);
    /* the page (filtered before the limit) and the visibility of its events */
    mx_pool_t *pool = mx_req_pool(c->req);
    const char *fsql = hs_filter_sql(pool, c->filter, "e.type", "e.sender");
    const char *range = c->dir == 'b' ? " AND e.stream_ordering <= ? AND e.stream_ordering > ?"
                                      : " AND e.stream_ordering > ? AND e.stream_ordering <= ?";
    const char *order = c->dir == 'b' ? " ORDER BY e.stream_ordering DESC LIMIT ?"
                                      : " ORDER BY e.stream_ordering ASC LIMIT ?";
    char *where = mx_psprintf(pool, " WHERE e.room_id = ?%s"
                                    " AND (e.stream_ordering <= " MS_CAP_SQL " OR ? = ?)%s%s",
                              range, fsql ? fsql : "", order);
    char *page = mx_psprintf(pool, "SELECT " RM_EV_COLS ", e.type, e.sender, g.group_id"
                                   " FROM events e LEFT JOIN event_to_state_group g"
                                   " ON g.event_id = e.event_id%s", where);
    char *seed = mx_psprintf(pool, "SELECT e.event_id FROM events e%s", where);
    char *vsql = seed ? rm_vis_sql(pool, seed) : NULL;
    if (!page || !vsql) {
        mx_sql_batch_free(b);
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    int64_t a = c->from;
    int64_t z = c->dir == 'b' ? (c->has_to ? c->to : (int64_t)-1) : (c->has_to ? c->to : MS_ALL);
    mx_sql_add(b, page, "siiissiii", c->room_id, a, z, MS_ALL, c->room_id,
               c->who->user_id, all, MS_ALL, (int64_t)c->limit + 1);
    mx_sql_add(b, vsql, "ssiiissiii", c->who->user_id, c->room_id, a, z, MS_ALL, c->room_id,
               c->who->user_id, all, MS_ALL, (int64_t)c->limit + 1);
    if (mx_sql_run(b, ms_page, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "reading messages");
    }
}

static void ms_messages_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    ms_ctx_t *c = ms_new(req, who);
    if (!c)
        return;
    const char *dir = mx_req_query(req, "dir");
    if (!dir || (strcmp(dir, "b") && strcmp(dir, "f"))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "dir must be b or f");
        return;
    }
    c->dir = dir[0];
    c->limit = ms_limit(req, 10);
    if (c->limit < 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad limit");
        return;
    }
    const char *from = mx_req_query(req, "from");
    if (from && *from) {
        if (rm_parse_token(from, &c->from) < 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "bad from token");
            return;
        }
    } else {
        c->from = c->dir == 'b' ? hs_stream_current(HS_STREAM_EVENTS) : 0;
    }
    const char *to = mx_req_query(req, "to");
    if (to && *to) {
        if (rm_parse_token(to, &c->to) < 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "bad to token");
            return;
        }
        c->has_to = true;
    }
    rm_room_get(c->room_id, ms_messages_room, c);
}

/* ------------------------------------------------------- /event, /context --- */

static void ms_event_bundled(int status, void *ud);
static void ms_context_bundled(int status, void *ud);

static void ms_event_read(int status, mx_sql_res_t *res, void *ud)
{
    ms_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "reading event");
        return;
    }
    int vst = c->dir == 'c' ? 3 : 1;
    rm_vis_t *vis = mx_sql_nrows(res, 0) ? rm_vis_load(res, vst) : NULL;
    json_t *ev = mx_sql_nrows(res, 0) ? rm_row_event(res, 0, 0, 0, c->dev, RM_CE_ROOM_ID) : NULL;
    if (!ev || !ms_visible(c, vis, res, 0, 0, 6, ev)) {
        json_decref(ev);
        rm_vis_free(vis);
        mx_req_error(c->req, 404, "M_NOT_FOUND", "event not found");
        return;
    }
    if (c->dir != 'c') {
        rm_vis_free(vis);
        c->out = ev;
        c->wrap = json_pack("[O]", ev);
        hs_relations_bundle(c->wrap, c->who->user_id, 0, ms_event_bundled, c);
        return;
    }
    /* /context: statements 1 (before, newest first) and 2 (after) */
    int64_t so = mx_sql_int(res, 0, 0, 5);
    json_t *before = json_array(), *after = json_array();
    int64_t start = so, end = so;
    for (int st = 1; st <= 2; st++) {
        for (int i = 0; i < mx_sql_nrows(res, st); i++) {
            json_t *e = rm_row_event(res, st, i, 0, c->dev, RM_CE_ROOM_ID);
            if (st == 1)
                start = mx_sql_int(res, st, i, 5);
            else
                end = mx_sql_int(res, st, i, 5);
            if (e && ms_visible(c, vis, res, st, i, 6, e))
                json_array_append_new(st == 1 ? before : after, e);
            else
                json_decref(e);
        }
    }
    rm_vis_free(vis);
    mx_pool_t *pool = mx_req_pool(c->req);
    c->out = json_pack("{s:o, s:o, s:o, s:s, s:s}", "event", ev, "events_before", before,
                       "events_after", after, "start", rm_make_token(pool, start - 1), "end",
                       rm_make_token(pool, end));
    c->wrap = json_pack("[O, O, O]", ev, before, after);
    hs_relations_bundle(c->wrap, c->who->user_id, HS_REL_DROP_IGNORED, ms_context_bundled, c);
}

/* /event after its bundle. */
static void ms_event_bundled(int status, void *ud)
{
    ms_ctx_t *c = ud;
    (void)status;
    json_t *ev = c->out;
    c->out = NULL;
    mx_req_reply_json(c->req, 200, ev);
}

/* /context after the bundles: the state, then the reply. */
static void ms_context_bundled(int status, void *ud)
{
    ms_ctx_t *c = ud;
    (void)status;
    json_t *out = c->out;
    c->out = NULL;
    json_t *ev = json_object_get(out, "event");
    json_t *before = json_object_get(out, "events_before");
    json_t *after = json_object_get(out, "events_after");
    json_t *state;
    if (json_is_true(json_object_get(c->filter, "lazy_load_members"))) {
        json_t *all = json_array();
        json_array_append(all, ev);
        json_array_extend(all, before);
        json_array_extend(all, after);
        state = ms_member_state(c->room, all);
        json_decref(all);
    } else {
        state = json_array();
        const char *k;
        json_t *sev;
        json_object_foreach(c->room->state, k, sev)
            json_array_append_new(state, rm_client_event(sev,
                                                         json_string_value(json_object_get(
                                                             c->room->state_ids, k)),
                                                         NULL, NULL, NULL, NULL, RM_CE_ROOM_ID));
    }
    json_object_set_new(out, "state", state);
    mx_req_reply_json(c->req, 200, out);
}

static void ms_event_room(rm_room_t *room, int status, void *ud)
{
    ms_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status))
        return;
    if (!rm_membership(room, c->who->user_id) && !ms_world_readable(room)) {
        /* Synapse: /context checks room access first (403); /event
         * answers as if the event did not exist */
        if (c->dir == 'c')
            mx_req_error(c->req, 403, "M_FORBIDDEN", "you are not allowed to view this room");
        else
            mx_req_error(c->req, 404, "M_NOT_FOUND", "event not found");
        return;
    }
    rm_room_ref(room);
    c->room = room;
    c->peeking = ms_peeking(c, room);
    const char *eid = mx_req_param(c->req, "eventId");
    int64_t all = ms_world_readable(room) ? MS_ALL : -2;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    /* statements: the event, [before, after,] the visibility of them all;
     * every event row carries its state group in column 6 */
#define MS_EV_G "SELECT " RM_EV_COLS ", g.group_id FROM events e LEFT JOIN event_to_state_group g" \
                " ON g.event_id = e.event_id"
#define MS_ONE " WHERE e.event_id = ? AND e.room_id = ? AND (e.stream_ordering <= " MS_CAP_SQL \
               " OR ? = ?)"
#define MS_BEFORE " WHERE e.room_id = ? AND e.stream_ordering < (SELECT stream_ordering FROM" \
                  " events WHERE event_id = ?) ORDER BY e.stream_ordering DESC LIMIT ?"
#define MS_AFTER " WHERE e.room_id = ? AND e.stream_ordering > (SELECT stream_ordering FROM" \
                 " events WHERE event_id = ?) AND (e.stream_ordering <= " MS_CAP_SQL          \
                 " OR ? = ?) ORDER BY e.stream_ordering ASC LIMIT ?"
    mx_pool_t *pool = mx_req_pool(c->req);
    mx_sql_add(b, MS_EV_G MS_ONE, "ssissii", eid, c->room_id, MS_ALL, c->room_id,
               c->who->user_id, all, MS_ALL);
    if (c->dir == 'c') {
        int64_t before = c->limit / 2, after = c->limit - c->limit / 2;
        mx_sql_add(b, MS_EV_G MS_BEFORE, "ssi", c->room_id, eid, before);
        mx_sql_add(b, MS_EV_G MS_AFTER, "ssissiii", c->room_id, eid, MS_ALL, c->room_id,
                   c->who->user_id, all, MS_ALL, after);
        mx_sql_add(b, rm_vis_sql(pool, "SELECT e.event_id FROM events e" MS_ONE
                                 " UNION SELECT x.event_id FROM (SELECT e.event_id FROM events e"
                                 MS_BEFORE ") x UNION SELECT y.event_id FROM (SELECT e.event_id"
                                 " FROM events e" MS_AFTER ") y"),
                   "sssissiissississiii", c->who->user_id, eid, c->room_id, MS_ALL, c->room_id,
                   c->who->user_id, all, MS_ALL, c->room_id, eid, before, c->room_id, eid,
                   MS_ALL, c->room_id, c->who->user_id, all, MS_ALL, after);
    } else {
        mx_sql_add(b, rm_vis_sql(pool, "SELECT e.event_id FROM events e" MS_ONE), "sssissii",
                   c->who->user_id, eid, c->room_id, MS_ALL, c->room_id, c->who->user_id, all,
                   MS_ALL);
    }
    if (mx_sql_run(b, ms_event_read, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "reading event");
    }
}

static void ms_event_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    ms_ctx_t *c = ms_new(req, who);
    if (c)
        rm_room_get(c->room_id, ms_event_room, c);
}

static void ms_context_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    ms_ctx_t *c = ms_new(req, who);
    if (!c)
        return;
    c->dir = 'c';
    c->limit = ms_limit(req, 10);
    if (c->limit < 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad limit");
        return;
    }
    rm_room_get(c->room_id, ms_event_room, c);
}

/* ------------------------------------------------------------- members --- */

static void ms_members_room(rm_room_t *room, int status, void *ud)
{
    ms_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status) || !ms_may_read(c, room))
        return;
    const char *want = mx_req_query(c->req, "membership");
    const char *not = mx_req_query(c->req, "not_membership");
    json_t *chunk = json_array();
    const char *k;
    json_t *ev;
    json_object_foreach(room->state, k, ev) {
        if (strncmp(k, "m.room.member\x1f", 14) != 0)
            continue;
        const char *m = hs_ev_membership(ev);
        if (!m || (want && *want && strcmp(m, want) != 0) || (not && *not && strcmp(m, not) == 0))
            continue;
        json_array_append_new(chunk, rm_client_event(ev, json_string_value(json_object_get(
                                                             room->state_ids, k)),
                                                     NULL, NULL, NULL, NULL, RM_CE_ROOM_ID));
    }
    mx_req_reply_json(c->req, 200, json_pack("{s:o}", "chunk", chunk));
}

static void ms_joined_members_room(rm_room_t *room, int status, void *ud)
{
    ms_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status) || !ms_may_read(c, room))
        return;
    json_t *joined = json_object();
    const char *k;
    json_t *ev;
    json_object_foreach(room->state, k, ev) {
        if (strncmp(k, "m.room.member\x1f", 14) != 0)
            continue;
        const char *m = hs_ev_membership(ev);
        if (!m || strcmp(m, "join") != 0)
            continue;
        json_t *content = json_object_get(ev, "content");
        json_t *o = json_object();
        json_t *dn = json_object_get(content, "displayname");
        json_t *av = json_object_get(content, "avatar_url");
        json_object_set(o, "display_name", json_is_string(dn) ? dn : json_null());
        json_object_set(o, "avatar_url", json_is_string(av) ? av : json_null());
        json_object_set_new(joined, k + 14, o);
    }
    mx_req_reply_json(c->req, 200, json_pack("{s:o}", "joined", joined));
}

static void ms_members_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    ms_ctx_t *c = ms_new(req, who);
    if (c)
        rm_room_get(c->room_id, ms_members_room, c);
}

static void ms_joined_members_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    ms_ctx_t *c = ms_new(req, who);
    if (c)
        rm_room_get(c->room_id, ms_joined_members_room, c);
}

static void ms_joined_rooms_read(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        hs_reply_storage_error(req, status, "joined rooms");
        return;
    }
    json_t *rooms = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(rooms, json_string(mx_sql_text(res, 0, i, 0)));
    mx_req_reply_json(req, 200, json_pack("{s:o}", "joined_rooms", rooms));
}

static void ms_joined_rooms_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'"
                  " ORDER BY stream_ordering", "s", who->user_id);
    if (mx_sql_run(b, ms_joined_rooms_read, req) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, MX_EDB, "joined rooms");
    }
}

/* --------------------------------------------------- timestamp_to_event --- */

static void ms_ts_read(int status, mx_sql_res_t *res, void *ud)
{
    ms_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "timestamp_to_event");
        return;
    }
    if (mx_sql_nrows(res, 0) == 0) {
        mx_req_error(c->req, 404, "M_NOT_FOUND", "no event found");
        return;
    }
    mx_req_reply_json(c->req, 200,
                      json_pack("{s:s, s:I}", "event_id", mx_sql_text(res, 0, 0, 0),
                                "origin_server_ts", (json_int_t)mx_sql_int(res, 0, 0, 1)));
}

static void ms_ts_room(rm_room_t *room, int status, void *ud)
{
    ms_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status) || !ms_may_read(c, room))
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    if (c->dir == 'f')
        mx_sql_add(b, "SELECT event_id, origin_server_ts FROM events WHERE room_id = ?"
                      " AND origin_server_ts >= ? ORDER BY origin_server_ts ASC, stream_ordering ASC"
                      " LIMIT 1", "si", c->room_id, c->from);
    else
        mx_sql_add(b, "SELECT event_id, origin_server_ts FROM events WHERE room_id = ?"
                      " AND origin_server_ts <= ? ORDER BY origin_server_ts DESC,"
                      " stream_ordering DESC LIMIT 1", "si", c->room_id, c->from);
    if (mx_sql_run(b, ms_ts_read, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "timestamp_to_event");
    }
}

static void ms_ts_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    ms_ctx_t *c = ms_new(req, who);
    if (!c)
        return;
    const char *dir = mx_req_query(req, "dir");
    const char *ts = mx_req_query(req, "ts");
    char *end = NULL;
    if (!ts || !*ts || (c->from = strtoll(ts, &end, 10), *end)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "ts must be an integer");
        return;
    }
    if (!dir || (strcmp(dir, "f") && strcmp(dir, "b"))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "dir must be f or b");
        return;
    }
    c->dir = dir[0];
    rm_room_get(c->room_id, ms_ts_room, c);
}

#define MS_HANDLER(name, authed)                                   \
    static int name(mx_req_t *req, void *ud)                       \
    {                                                              \
        (void)ud;                                                  \
        return hs_require_auth_ex(req, true, authed, NULL);       \
    }
MS_HANDLER(ms_messages, ms_messages_authed)
MS_HANDLER(ms_event, ms_event_authed)
MS_HANDLER(ms_context, ms_context_authed)
MS_HANDLER(ms_members, ms_members_authed)
MS_HANDLER(ms_joined_members, ms_joined_members_authed)
MS_HANDLER(ms_joined_rooms, ms_joined_rooms_authed)
MS_HANDLER(ms_ts, ms_ts_authed)

int rm_messages_routes(void)
{
    int rc;
    if ((rc = rm_route("GET", "/rooms/{roomId}/messages", ms_messages, 0)) < 0 ||
        (rc = rm_route("GET", "/rooms/{roomId}/event/{eventId}", ms_event, 0)) < 0 ||
        (rc = rm_route("GET", "/rooms/{roomId}/context/{eventId}", ms_context, 0)) < 0 ||
        (rc = rm_route("GET", "/rooms/{roomId}/members", ms_members, 0)) < 0 ||
        (rc = rm_route("GET", "/rooms/{roomId}/joined_members", ms_joined_members, 0)) < 0 ||
        (rc = rm_route("GET", "/joined_rooms", ms_joined_rooms, 0)) < 0 ||
        (rc = rm_route_v1("GET", "/rooms/{roomId}/timestamp_to_event", ms_ts, 0)) < 0)
        return rc;
    return 0;
}
