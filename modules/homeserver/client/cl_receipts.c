/*
 * cl_receipts.c: read receipts and read markers — POST /rooms/{roomId}/
 * receipt/{receiptType}/{eventId} and POST /rooms/{roomId}/read_markers —
 * and the "receipts" sync provider that adds m.receipt ephemeral events to
 * joined rooms (m.read.private only to its owner).
 *
 * A receipt only moves forward: the upsert is conditional on the event's
 * stream ordering, so a receipt for an older event (or a concurrent one
 * that lost) changes nothing and wakes nobody.  m.fully_read is the read
 * marker: it is room account data (what clients see), mirrored into the
 * receipts table with stream_id 0 so the same forward check applies.
 * Threaded receipts (thread_id "main" or a thread root) are separate rows;
 * '' is the unthreaded receipt.
 */
#include "client.h"
#include "../push/push.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RC_MAX_ITEMS 3

typedef struct rc_item {
    const char *type;       /* m.read, m.read.private, m.fully_read */
    const char *event_id;
    const char *thread_id;  /* "" when unthreaded */
    int64_t event_stream;
    int64_t pos;            /* stream position taken (receipts or account data) */
    int stmt;               /* index of its conditional upsert in the write */
} rc_item_t;

typedef struct rc_req {
    rc_item_t items[RC_MAX_ITEMS];
    int n;
} rc_req_t;

static bool rc_is_private(const char *type)
{
    return strcmp(type, "m.read.private") == 0;
}

static bool rc_is_marker(const char *type)
{
    return strcmp(type, "m.fully_read") == 0;
}

static void rc_written(int status, mx_sql_res_t *res, void *ud)
{
    cl_req_t *cr = ud;
    rc_req_t *rr = cr->ud;
    const char *user_id = cr->who->user_id;
    bool notify_room = false, notify_user = false;
    for (int i = 0; i < rr->n; i++) {
        rc_item_t *it = &rr->items[i];
        bool changed = status == 0 && mx_sql_changes(res, it->stmt) > 0;
        if (rc_is_marker(it->type)) {
            cl_ad_written(user_id, it->pos, changed);
            continue;
        }
        hs_stream_persisted(HS_STREAM_RECEIPTS, it->pos);
        if (changed)
            hs_push_on_receipt(user_id, cr->room_id, it->event_id, it->event_stream, it->thread_id);
        if (changed && rc_is_private(it->type))
            notify_user = true;
        else if (changed)
            notify_room = true;
    }
    if (notify_room)
        hs_notify_room(cr->room_id, HS_STREAM_RECEIPTS);
    else if (notify_user)
        hs_notify_users(&user_id, 1, HS_STREAM_RECEIPTS);
    if (status < 0) {
        hs_reply_storage_error(cr->req, status, "receipt write");
        return;
    }
    mx_req_reply_json(cr->req, 200, json_object());
}

static const char rc_upsert[] =
    "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_stream,"
    " ts, stream_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE"
    " SET event_id = excluded.event_id, event_stream = excluded.event_stream,"
    " ts = excluded.ts, stream_id = excluded.stream_id"
    " WHERE receipts.event_stream < excluded.event_stream";

static void rc_events_got(int status, mx_sql_res_t *res, void *ud)
{
    cl_req_t *cr = ud;
    rc_req_t *rr = cr->ud;
    if (status < 0) {
        hs_reply_storage_error(cr->req, status, "receipt event lookup");
        return;
    }
    for (int i = 0; i < rr->n; i++) {
        if (mx_sql_nrows(res, i) < 1) {
            mx_req_error(cr->req, 404, "M_NOT_FOUND", "Could not find event %s",
                         rr->items[i].event_id);
            return;
        }
        rr->items[i].event_stream = mx_sql_int(res, i, 0, 0);
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(cr->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    const char *user_id = cr->who->user_id;
    int64_t now = (int64_t)mx_now_ms();
    int stmt = 0;
    for (int i = 0; i < rr->n; i++) {
        rc_item_t *it = &rr->items[i];
        if (rc_is_marker(it->type)) {
            it->pos = hs_stream_next(HS_STREAM_ACCOUNT_DATA);
            mx_sql_add(b, rc_upsert, "sssssiii", cr->room_id, it->type, user_id, "",
                       it->event_id, it->event_stream, now, (int64_t)0);
            stmt++;
            /* The account data item follows the mirror row: written only
             * when the marker moved forward. */
            json_t *marker = json_pack("{s:s}", "event_id", it->event_id);
            char *js = marker ? json_dumps(marker, JSON_COMPACT) : NULL;
            json_decref(marker);
            it->stmt = stmt++;
            mx_sql_add(b,
                       "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
                       " SELECT ?, ?, 'm.fully_read', ?, ? WHERE EXISTS (SELECT 1 FROM receipts"
                       " WHERE room_id = ? AND receipt_type = 'm.fully_read' AND user_id = ?"
                       " AND thread_id = '' AND event_id = ? AND ts = ?)"
                       " ON CONFLICT (user_id, room_id, type) DO UPDATE"
                       " SET content = excluded.content, stream_id = excluded.stream_id",
                       "sssisssi", user_id, cr->room_id, js ? js : "{}", it->pos, cr->room_id,
                       user_id, it->event_id, now);
            free(js);
            continue;
        }
        it->pos = hs_stream_next(HS_STREAM_RECEIPTS);
        it->stmt = stmt++;
        mx_sql_add(b, rc_upsert, "sssssiii", cr->room_id, it->type, user_id, it->thread_id,
                   it->event_id, it->event_stream, now, it->pos);
    }
    int rc = mx_sql_run(b, rc_written, cr);
    if (rc < 0)
        rc_written(rc, NULL, cr);
}

/* The requester is joined: look the events up in the room. */
static void rc_joined(cl_req_t *cr)
{
    rc_req_t *rr = cr->ud;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(cr->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    for (int i = 0; i < rr->n; i++)
        mx_sql_add(b, "SELECT stream_ordering FROM events WHERE event_id = ? AND room_id = ?",
                   "ss", rr->items[i].event_id, cr->room_id);
    int rc = mx_sql_run(b, rc_events_got, cr);
    if (rc < 0)
        hs_reply_storage_error(cr->req, rc, "receipt event lookup");
}

static void rc_start(mx_req_t *req, const hs_user_t *who, rc_req_t *rr)
{
    cl_req_t *cr = cl_req_new(req, who);
    if (!cr)
        return;
    cr->room_id = mx_req_param(req, "roomId");
    cr->ud = rr;
    if (rr->n == 0) {
        mx_req_reply_json(req, 200, json_object());
        return;
    }
    cl_presence_bump(who->user_id);
    cl_require_joined(cr, rc_joined);
}

static bool rc_known_type(const char *type)
{
    return strcmp(type, "m.read") == 0 || rc_is_private(type) || rc_is_marker(type);
}

static void rc_receipt_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *room_id = mx_req_param(req, "roomId");
    const char *type = mx_req_param(req, "receiptType");
    const char *event_id = mx_req_param(req, "eventId");
    if (!cl_room_id_ok(room_id) || !event_id || event_id[0] != '$') {
        mx_req_error(req, 400, "M_INVALID_PARAM", "A valid room ID and event ID must be specified");
        return;
    }
    if (!type || !rc_known_type(type)) {
        mx_req_error(req, 400, "M_INVALID_PARAM",
                     "Receipt type must be m.read, m.read.private, m.fully_read");
        return;
    }
    json_t *body = mx_req_json(req);
    const char *thread_id = "";
    json_t *tid = json_object_get(body, "thread_id");
    if (tid) {
        if (!json_is_string(tid) || !*json_string_value(tid)) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "thread_id field must be a non-empty string");
            return;
        }
        if (rc_is_marker(type)) {
            mx_req_error(req, 400, "M_INVALID_PARAM",
                         "thread_id is not compatible with m.fully_read receipts.");
            return;
        }
        thread_id = mx_pstrdup(mx_req_pool(req), json_string_value(tid));
        if (strcmp(thread_id, "main") != 0 && thread_id[0] != '$') {
            mx_req_error(req, 400, "M_INVALID_PARAM", "thread_id must be 'main' or an event ID");
            return;
        }
    }
    rc_req_t *rr = mx_palloc(mx_req_pool(req), sizeof(*rr));
    if (!rr) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(rr, 0, sizeof(*rr));
    rr->items[0].type = type;
    rr->items[0].event_id = event_id;
    rr->items[0].thread_id = thread_id;
    rr->n = 1;
    rc_start(req, who, rr);
}

static void rc_markers_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    static const char *const types[] = { "m.fully_read", "m.read", "m.read.private" };
    const char *room_id = mx_req_param(req, "roomId");
    if (!cl_room_id_ok(room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid room ID");
        return;
    }
    json_t *body = mx_req_json(req);
    rc_req_t *rr = mx_palloc(mx_req_pool(req), sizeof(*rr));
    if (!rr) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(rr, 0, sizeof(*rr));
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        json_t *v = json_object_get(body, types[i]);
        if (!v || json_is_null(v))
            continue;
        if (!json_is_string(v) || json_string_value(v)[0] != '$') {
            mx_req_error(req, 400, "M_INVALID_PARAM", "%s must be an event ID", types[i]);
            return;
        }
        rc_item_t *it = &rr->items[rr->n++];
        it->type = types[i];
        it->event_id = mx_pstrdup(mx_req_pool(req), json_string_value(v));
        it->thread_id = "";
    }
    rc_start(req, who, rr);
}

static int rc_receipt_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, rc_receipt_authed, ud);
}

static int rc_markers_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, rc_markers_authed, ud);
}

/* ------------------------------------------------------- sync provider --- */

typedef struct rc_sync {
    hs_sync_ctx_t *sc;
    hs_sync_part_done_fn done;
    int nst;                  /* statements read: joined rooms, then one per previewed room */
} rc_sync_t;

static json_t *rc_obj(json_t *parent, const char *key)
{
    json_t *o = json_object_get(parent, key);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(parent, key, o);
    }
    return o;
}

static void rc_sync_got(int status, mx_sql_res_t *res, void *ud)
{
    rc_sync_t *s = ud;
    hs_sync_ctx_t *sc = s->sc;
    if (status < 0) {
        s->done(sc, status);
        return;
    }
    const json_t *rfilter = json_object_get(sc->filter, "room");
    const json_t *eph_filter = json_object_get(rfilter, "ephemeral");
    if (eph_filter && !hs_filter_match(eph_filter, "m.receipt", sc->who->user_id)) {
        s->done(sc, 0);
        return;
    }
    json_t *per_room = json_object(); /* room_id → content */
    for (int st = 0; st < s->nst; st++) {
        int n = mx_sql_nrows(res, st);
        for (int i = 0; i < n; i++) {
            const char *room_id = mx_sql_text(res, st, i, 0);
            const char *type = mx_sql_text(res, st, i, 1);
            const char *user_id = mx_sql_text(res, st, i, 2);
            const char *thread_id = mx_sql_text(res, st, i, 3);
            const char *event_id = mx_sql_text(res, st, i, 4);
            if (!room_id || !type || !user_id || !event_id)
                continue;
            if (!cl_json_has_string(sc->joined_rooms, room_id))
                continue;
            if (cl_json_has_string(json_object_get(rfilter, "not_rooms"), room_id))
                continue;
            const json_t *only = json_object_get(rfilter, "rooms");
            if (json_is_array(only) && !cl_json_has_string(only, room_id))
                continue;
            json_t *content = rc_obj(per_room, room_id);
            json_t *by_type = rc_obj(rc_obj(content, event_id), type);
            json_t *r = json_pack("{s:I}", "ts", (json_int_t)mx_sql_int(res, st, i, 5));
            if (thread_id && *thread_id)
                json_object_set_new(r, "thread_id", json_string(thread_id));
            json_object_set_new(by_type, user_id, r);
        }
    }
    const char *room_id;
    json_t *content;
    json_object_foreach(per_room, room_id, content) {
        json_t *room = hs_sync_joined_room(sc, room_id);
        if (!room)
            continue;
        json_t *evs = json_object_get(rc_obj(room, "ephemeral"), "events");
        if (!json_is_array(evs)) {
            evs = json_array();
            json_object_set_new(json_object_get(room, "ephemeral"), "events", evs);
        }
        json_array_append_new(evs, json_pack("{s:s, s:O}", "type", "m.receipt", "content", content));
    }
    json_decref(per_room);
    s->done(sc, 0);
}

static void rc_sync(hs_sync_ctx_t *sc, hs_sync_part_done_fn done)
{
    /* No rooms, or nothing new on this stream: no read. */
    if (!sc->joined_rooms || json_array_size(sc->joined_rooms) == 0 ||
        (!sc->initial && sc->since[HS_STREAM_RECEIPTS] >= sc->upto[HS_STREAM_RECEIPTS])) {
        done(sc, 0);
        return;
    }
    rc_sync_t *s = mx_palloc(sc->pool, sizeof(*s));
    mx_sql_batch_t *b = s ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        done(sc, -ENOMEM);
        return;
    }
    s->sc = sc;
    s->done = done;
    int64_t since = sc->initial ? 0 : sc->since[HS_STREAM_RECEIPTS];
    const char *me = sc->who->user_id;
#define RC_SYNC_SQL                                                                          \
    "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"           \
    " WHERE stream_id > ? AND stream_id <= ?"                                               \
    " AND (receipt_type = 'm.read' OR (receipt_type = 'm.read.private' AND user_id = ?))"
    mx_sql_add(b, RC_SYNC_SQL " AND room_id IN (SELECT room_id FROM room_memberships"
                  " WHERE user_id = ? AND membership = 'join') ORDER BY stream_id",
               "iiss", since, sc->upto[HS_STREAM_RECEIPTS], me, me);
    s->nst = 1;
    /* the rooms the sync covers without the user being joined (a
     * world_readable room previewed through the legacy /events stream):
     * one read each, usually none */
    size_t i;
    json_t *v;
    json_array_foreach(sc->joined_rooms, i, v) {
        const char *rid = json_string_value(v);
        rm_room_t *room = rid ? rm_room_cached(rid) : NULL;
        const char *m = room ? rm_membership(room, me) : NULL;
        if (!room || (m && strcmp(m, "join") == 0))
            continue;
        mx_sql_add(b, RC_SYNC_SQL " AND room_id = ? ORDER BY stream_id", "iiss", since,
                   sc->upto[HS_STREAM_RECEIPTS], me, rid);
        s->nst++;
    }
#undef RC_SYNC_SQL
    int rc = mx_sql_run(b, rc_sync_got, s);
    if (rc < 0)
        done(sc, rc);
}

int cl_receipts_start(void)
{
    int rc;
    if ((rc = cl_route("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", rc_receipt_h,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = cl_route("POST", "/rooms/{roomId}/read_markers", rc_markers_h,
                       MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return hs_sync_add_part("receipts", rc_sync);
}
