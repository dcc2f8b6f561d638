/*
 * pu_counts.c: notification counts — evaluating each new event for the
 * room's local members (hs_push_on_event, called by the rooms pipeline) and
 * the "push" sync provider that reports unread_notifications /
 * unread_thread_notifications per joined room and the m.push_rules account
 * data event.
 *
 * A notifying event leaves one event_push_actions row per member, written
 * in the event's own batch.  A count is the number of rows after the
 * member's read position: the newest of their m.read and m.read.private
 * receipts that is unthreaded or of the row's thread (client part's
 * receipts table, where event_stream is the receipt's event position), so a
 * receipt resets counts without any write here.
 */
#include "push.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- the hook --- */

static bool pu_is_local(const char *user_id)
{
    const char *d = hs_user_domain(user_id);
    return d && hs.server_name && strcmp(d, hs.server_name) == 0;
}

static void pu_eval_member(const char *user_id, const json_t *member_ev, pu_eval_in_t *in,
                           const char *room_id, const char *event_id, int64_t so,
                           const char *thread_id, mx_sql_batch_t *b)
{
    pu_user_t *u = pu_user_get(user_id);
    pu_eval_out_t out;
    in->user_id = user_id;
    in->display_name =
        json_string_value(json_object_get(json_object_get(member_ev, "content"), "displayname"));
    if (!pu_evaluate(pu.defaults, u ? &u->rules : NULL, in, &out) || !out.notify)
        return;
    char *actions = json_dumps(out.actions, JSON_COMPACT);
    mx_sql_add(b, "INSERT INTO event_push_actions (user_id, room_id, event_id, stream_ordering,"
                  " thread_id, notif, highlight, actions, ts) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)"
                  " ON CONFLICT (user_id, event_id) DO NOTHING",
               "sssisisi", user_id, room_id, event_id, so, thread_id, (int64_t)out.highlight,
               actions ? actions : "[]", (int64_t)mx_now_ms());
    free(actions);
    pu_pushers_wake(user_id, so);
}

void hs_push_on_event(struct rm_room *room, const json_t *pdu, const char *event_id,
                      int64_t stream_ordering, mx_sql_batch_t *b)
{
    if (!pu.started || !room || !pdu || !event_id || !b)
        return;
    const char *sender = hs_ev_sender(pdu);
    const char *room_id = room->room_id;
    if (!sender || !room_id)
        return;
    const json_t *create = rm_state_get(room, "m.room.create", "");
    const json_t *pl = rm_state_get(room, "m.room.power_levels", "");
    pu_eval_in_t in = {
        .event = pdu,
        .room_id = room_id,
        .member_count = rm_room_count(room, "join"),
        .sender_power = hs_user_power(room->rv, create, pl, sender),
        .power_levels = json_object_get(pl, "content"),
    };
    const char *thread_id = pu_thread_id(pdu);
    const char *k;
    json_t *ev;
    json_object_foreach(room->state, k, ev) {
        if (strncmp(k, "m.room.member\x1f", 14) != 0)
            continue;
        const char *uid = k + 14;
        const char *m = hs_ev_membership(ev);
        if (!m || strcmp(m, "join") != 0 || strcmp(uid, sender) == 0 || !pu_is_local(uid))
            continue;
        pu_eval_member(uid, ev, &in, room_id, event_id, stream_ordering, thread_id, b);
    }
    /* An invitee is not joined yet but gets .m.rule.invite_for_me. */
    const char *type = hs_ev_type(pdu), *sk = hs_ev_state_key(pdu);
    const char *mship = hs_ev_membership(pdu);
    if (type && sk && mship && strcmp(type, "m.room.member") == 0 && strcmp(mship, "invite") == 0 &&
        strcmp(sk, sender) != 0 && pu_is_local(sk))
        pu_eval_member(sk, pdu, &in, room_id, event_id, stream_ordering, thread_id, b);
}

void hs_push_on_receipt(const char *user_id, const char *room_id, const char *event_id,
                        int64_t event_stream, const char *thread_id)
{
    (void)room_id;
    (void)event_id;
    (void)event_stream;
    (void)thread_id;
    if (pu.started && user_id)
        pu_pushers_badge(user_id);
}

/* ------------------------------------------------------------ /sync part --- */

typedef struct pc_sync {
    hs_sync_ctx_t *sc;
    hs_sync_part_done_fn done;
    json_t *rooms;            /* borrowed: response.rooms.join */
    bool threads;
} pc_sync_t;

static void pc_set_counts(json_t *obj, int64_t notif, int64_t hl)
{
    json_object_set_new(obj, "notification_count", json_integer(notif));
    json_object_set_new(obj, "highlight_count", json_integer(hl));
}

static void pc_counts_read(int status, mx_sql_res_t *res, void *ud)
{
    pc_sync_t *ps = ud;
    hs_sync_ctx_t *sc = ps->sc;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_WARN, "push: cannot read counts: %s",
               res ? mx_sql_errmsg(res) : "?");
        hs_sync_part_done_fn done = ps->done;
        free(ps);
        done(sc, 0); /* the zero counts stay; not worth failing the sync */
        return;
    }
    /* Totals per room (main + threads), main only, per thread. */
    json_t *tot = json_object();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        const char *room_id = mx_sql_text(res, 0, i, 0);
        const char *thread = mx_sql_text(res, 0, i, 1);
        int64_t n = mx_sql_int(res, 0, i, 2), h = mx_sql_int(res, 0, i, 3);
        json_t *room = json_object_get(ps->rooms, room_id);
        if (!room)
            continue;
        json_t *t = json_object_get(tot, room_id);
        if (!t) {
            t = json_pack("{s:i, s:i, s:i, s:i, s:{}}", "n", 0, "h", 0, "mn", 0, "mh", 0, "th");
            json_object_set_new(tot, room_id, t);
        }
        json_object_set_new(t, "n", json_integer(json_integer_value(json_object_get(t, "n")) + n));
        json_object_set_new(t, "h", json_integer(json_integer_value(json_object_get(t, "h")) + h));
        if (strcmp(thread, "main") == 0) {
            json_object_set_new(t, "mn", json_integer(n));
            json_object_set_new(t, "mh", json_integer(h));
        } else {
            json_t *tc = json_object();
            pc_set_counts(tc, n, h);
            json_object_set_new(json_object_get(t, "th"), thread, tc);
        }
    }
    const char *room_id;
    json_t *room;
    json_object_foreach(ps->rooms, room_id, room) {
        json_t *t = json_object_get(tot, room_id);
        json_t *un = json_object();
        if (ps->threads) {
            pc_set_counts(un, json_integer_value(json_object_get(t, "mn")),
                          json_integer_value(json_object_get(t, "mh")));
            json_t *th = json_object_get(t, "th");
            json_object_set_new(room, "unread_thread_notifications",
                                th ? json_incref(th) : json_object());
        } else {
            pc_set_counts(un, json_integer_value(json_object_get(t, "n")),
                          json_integer_value(json_object_get(t, "h")));
        }
        json_object_set_new(room, "unread_notifications", un);
    }
    json_decref(tot);
    hs_sync_part_done_fn done = ps->done;
    free(ps);
    done(sc, 0);
}

static void pc_add_push_rules(hs_sync_ctx_t *sc)
{
    const char *uid = sc->who->user_id;
    pu_user_t *u = pu_user_get(uid);
    bool changed = u && u->stream_pos > sc->since[HS_STREAM_ACCOUNT_DATA] &&
                   u->stream_pos <= sc->upto[HS_STREAM_ACCOUNT_DATA];
    if (!sc->initial && !sc->full_state && !changed)
        return;
    if (!hs_filter_match(json_object_get(sc->filter, "account_data"), "m.push_rules", NULL))
        return;
    json_t *ad = json_object_get(sc->response, "account_data");
    if (!json_is_object(ad)) {
        ad = json_object();
        json_object_set_new(sc->response, "account_data", ad);
    }
    json_t *evs = json_object_get(ad, "events");
    if (!json_is_array(evs)) {
        evs = json_array();
        json_object_set_new(ad, "events", evs);
    }
    json_array_append_new(evs, pu_push_rules_event(uid));
}

static void pc_sync(hs_sync_ctx_t *sc, hs_sync_part_done_fn done)
{
    pc_add_push_rules(sc);
    json_t *rooms = json_object_get(json_object_get(sc->response, "rooms"), "join");
    if (!json_object_size(rooms)) {
        done(sc, 0);
        return;
    }
    pc_sync_t *ps = calloc(1, sizeof(*ps));
    mx_sql_batch_t *b = ps ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        free(ps);
        done(sc, 0);
        return;
    }
    ps->sc = sc;
    ps->done = done;
    ps->rooms = rooms;
    const json_t *tl = json_object_get(json_object_get(sc->filter, "room"), "timeline");
    ps->threads = json_is_true(json_object_get(tl, "unread_thread_notifications"));
    mx_sql_add(b, "SELECT a.room_id, a.thread_id, COUNT(*), SUM(a.highlight)"
                  " FROM event_push_actions a WHERE a.user_id = ? AND a.notif = 1"
                  " AND a.stream_ordering <= ? AND a.stream_ordering > " PU_READ_POS
                  " GROUP BY a.room_id, a.thread_id",
               "si", sc->who->user_id, sc->upto[HS_STREAM_EVENTS]);
    if (mx_sql_run(b, pc_counts_read, ps) < 0) {
        mx_sql_batch_free(b);
        free(ps);
        done(sc, 0);
    }
}

/* ------------------------------------------------------ /notifications --- */

typedef struct pn_req {
    mx_req_t *req;
    const char *device_id;
    int limit;
} pn_req_t;

static void pn_read(int status, mx_sql_res_t *res, void *ud)
{
    pn_req_t *pr = ud;
    if (status < 0) {
        hs_reply_storage_error(pr->req, status, "notifications");
        return;
    }
    json_t *list = json_array();
    int n = mx_sql_nrows(res, 0);
    int64_t last = 0;
    for (int i = 0; i < n; i++) {
        json_t *ev = rm_row_event(res, 0, i, 5, pr->device_id, RM_CE_ROOM_ID);
        if (!ev)
            continue;
        last = mx_sql_int(res, 0, i, 0);
        json_t *actions = json_loads(mx_sql_text(res, 0, i, 2), 0, NULL);
        json_array_append_new(list, json_pack("{s:o, s:o, s:n, s:b, s:s, s:I}", "actions",
                                              actions ? actions : json_array(), "event", ev,
                                              "profile_tag", "read",
                                              (int)mx_sql_int(res, 0, i, 4), "room_id",
                                              mx_sql_text(res, 0, i, 1),
                                              "ts", (json_int_t)mx_sql_int(res, 0, i, 3)));
    }
    json_t *out = json_pack("{s:o}", "notifications", list);
    if (n >= pr->limit && last > 0)
        json_object_set_new(out, "next_token", json_string(mx_psprintf(mx_req_pool(pr->req),
                                                                       "%lld", (long long)last)));
    mx_req_reply_json(pr->req, 200, out);
}

static void pn_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mx_pool_t *pool = mx_req_pool(req);
    const char *from = mx_req_query(req, "from"), *lim = mx_req_query(req, "limit");
    const char *only = mx_req_query(req, "only");
    int64_t before = INT64_MAX;
    long limit = 50;
    if (from && *from) {
        char *end;
        long long v = strtoll(from, &end, 10);
        if (*end || v < 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid 'from'");
            return;
        }
        before = v;
    }
    if (lim && *lim) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (*end || limit < 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid 'limit'");
            return;
        }
        if (limit > 1000)
            limit = 1000;
    }
    pn_req_t *pr = mx_palloc(pool, sizeof(*pr));
    mx_sql_batch_t *b = pr ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    pr->req = req;
    pr->device_id = who->device_id ? mx_pstrdup(pool, who->device_id) : NULL;
    pr->limit = (int)limit;
    bool hl = only && strcmp(only, "highlight") == 0;
    mx_sql_add(b, hl ? "SELECT a.stream_ordering, a.room_id, a.actions, a.ts, CASE WHEN"
                       " a.stream_ordering <= " PU_READ_POS " THEN 1 ELSE 0 END, " RM_EV_COLS
                       " FROM event_push_actions a JOIN events e ON e.event_id = a.event_id"
                       " WHERE a.user_id = ? AND a.notif = 1 AND a.highlight = 1"
                       " AND a.stream_ordering < ? AND a.stream_ordering <= ?"
                       " ORDER BY a.stream_ordering DESC LIMIT ?"
                     : "SELECT a.stream_ordering, a.room_id, a.actions, a.ts, CASE WHEN"
                       " a.stream_ordering <= " PU_READ_POS " THEN 1 ELSE 0 END, " RM_EV_COLS
                       " FROM event_push_actions a JOIN events e ON e.event_id = a.event_id"
                       " WHERE a.user_id = ? AND a.notif = 1"
                       " AND a.stream_ordering < ? AND a.stream_ordering <= ?"
                       " ORDER BY a.stream_ordering DESC LIMIT ?",
               "siii", who->user_id, before, hs_stream_current(HS_STREAM_EVENTS), (int64_t)limit);
    if (mx_sql_run(b, pn_read, pr) < 0) {
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "Storage unavailable");
    }
}

static int pn_get(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pn_authed, NULL);
}

int pu_counts_start(void)
{
    int rc = hs_sync_add_part("push", pc_sync);
    if (rc < 0)
        return rc;
    return pu_route("GET", "/notifications", pn_get, 0);
}
