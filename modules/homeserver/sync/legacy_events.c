/*
 * legacy_events.c: the deprecated r0 endpoints old clients (and sytest)
 * still call — GET /events (the event stream), GET /initialSync and
 * GET /rooms/{roomId}/initialSync — answered in Synapse's shapes.
 *
 * They reuse the /sync machinery (hs_sync_run): one sync computation, then
 * the body is reshaped.  The stream tokens (`from`, `end`) are /sync tokens,
 * so the long-poll, the notifier and the providers (presence, typing,
 * receipts, account data) work the same.
 */
#include "sync.h"
#include "../client/client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LG_DEFAULT_LIMIT 10
#define LG_STREAM_LIMIT 500

/* The v1 event format also carried the sender as `user_id`. */
static void lg_v1(json_t *ev)
{
    json_t *sender = json_object_get(ev, "sender");
    if (sender && !json_object_get(ev, "user_id") &&
        strcmp(json_string_value(json_object_get(ev, "type")) ?: "", "m.presence") != 0)
        json_object_set(ev, "user_id", sender);
}

/* Appends a copy of every element of `events` (an array) to `out`,
 * setting room_id when `room_id` is not NULL. */
static void lg_append(json_t *out, const json_t *events, const char *room_id)
{
    size_t i;
    json_t *ev;
    json_array_foreach((json_t *)events, i, ev) {
        json_t *cp = json_deep_copy(ev);
        if (!cp)
            continue;
        if (room_id)
            json_object_set_new(cp, "room_id", json_string(room_id));
        lg_v1(cp);
        json_array_append_new(out, cp);
    }
}

static const json_t *lg_events(const json_t *room, const char *section)
{
    return json_object_get(json_object_get(room, section), "events");
}

/* Presence events with content.user_id (the legacy shape). */
static void lg_presence(json_t *out, const json_t *resp, const json_t *only_users)
{
    size_t i;
    json_t *ev;
    json_array_foreach(lg_events(resp, "presence"), i, ev) {
        const char *sender = json_string_value(json_object_get(ev, "sender"));
        if (!sender)
            continue;
        if (only_users && !json_object_get(only_users, sender))
            continue;
        json_t *cp = json_deep_copy(ev);
        json_t *content = json_object_get(cp, "content");
        if (json_is_object(content))
            json_object_set_new(content, "user_id", json_string(sender));
        json_array_append_new(out, cp);
    }
}

static bool lg_parse_limit(mx_req_t *req, int def, int *out)
{
    const char *l = mx_req_query(req, "limit");
    *out = def;
    if (!l || !*l)
        return true;
    char *end;
    long v = strtol(l, &end, 10);
    if (*end || v < 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "limit must be a non-negative integer");
        return false;
    }
    *out = v > LG_STREAM_LIMIT ? LG_STREAM_LIMIT : (int)v;
    return true;
}

/* ------------------------------------------------------------- /events --- */

typedef struct lg_stream {
    mx_req_t *req;
    const hs_user_t *who;     /* request pool */
    const char *from;         /* request pool */
    const char *room_id;      /* request pool or NULL */
    uint64_t timeout;
    int limit;
    bool peeking;             /* room_id given and the user is not joined to it */
    json_t *chunk;            /* peeking: the chunk while the presence is read */
    const char *next;         /* peeking: the end token (request pool) */
} lg_stream_t;

static void lg_stream_reply(lg_stream_t *s)
{
    json_t *chunk = s->chunk;
    s->chunk = NULL;
    mx_req_reply_json(s->req, 200, json_pack("{s:o, s:s, s:s}", "chunk", chunk, "start", s->from,
                                             "end", s->next));
}

static void lg_peek_presence_read(int status, mx_sql_res_t *res, void *ud)
{
    lg_stream_t *s = ud;
    json_t *seen = json_object();
    size_t i;
    json_t *ev;
    json_array_foreach(s->chunk, i, ev)
        if (strcmp(json_string_value(json_object_get(ev, "type")) ?: "", "m.presence") == 0)
            json_object_set_new(seen, json_string_value(json_object_get(ev, "sender")) ?: "",
                                json_true());
    for (int r = 0; status == 0 && r < mx_sql_nrows(res, 0); r++) {
        const char *uid = mx_sql_text(res, 0, r, 0);
        json_t *pe = uid && !json_object_get(seen, uid) ? cl_presence_event(uid) : NULL;
        if (pe)
            json_array_append_new(s->chunk, pe);
    }
    json_decref(seen);
    lg_stream_reply(s);
}

/* Peeking into a world_readable room (Synapse's explicit room_id): the
 * presence changes in the window of the room's joined members, who share
 * no room with the user, are added to the chunk. */
static void lg_peek_presence(lg_stream_t *s)
{
    int64_t lo[HS_STREAM_COUNT], hi[HS_STREAM_COUNT];
    mx_sql_batch_t *b = NULL;
    if (hs_sync_token_parse(s->from, lo) < 0 || hs_sync_token_parse(s->next, hi) < 0 ||
        lo[HS_STREAM_PRESENCE] >= hi[HS_STREAM_PRESENCE] ||
        !(b = mx_sql_batch_new(hs.db, MX_SQL_READ))) {
        lg_stream_reply(s);
        return;
    }
    mx_sql_add(b, "SELECT p.user_id FROM presence p WHERE p.stream_id > ? AND p.stream_id <= ?"
                  " AND p.user_id IN (SELECT m.user_id FROM room_memberships m"
                  " WHERE m.room_id = ? AND m.membership = 'join') ORDER BY p.stream_id",
               "iis", lo[HS_STREAM_PRESENCE], hi[HS_STREAM_PRESENCE], s->room_id);
    if (mx_sql_run(b, lg_peek_presence_read, s) < 0)
        lg_stream_reply(s);
}

static void lg_stream_done(mx_req_t *req, json_t *resp, const char *next, void *ud)
{
    lg_stream_t *s = ud;
    json_t *chunk = json_array();
    const json_t *rooms = json_object_get(resp, "rooms");
    const char *rid;
    json_t *r;
    json_object_foreach(json_object_get(rooms, "join"), rid, r) {
        lg_append(chunk, lg_events(r, "timeline"), rid);
        lg_append(chunk, lg_events(r, "ephemeral"), rid);
        lg_append(chunk, lg_events(r, "account_data"), rid);
    }
    json_object_foreach(json_object_get(rooms, "leave"), rid, r)
        lg_append(chunk, lg_events(r, "timeline"), rid);
    json_object_foreach(json_object_get(rooms, "invite"), rid, r) {
        json_t *ev = json_object_get(r, "event");
        if (ev)
            json_array_append(chunk, ev);
    }
    lg_presence(chunk, resp, NULL);
    lg_append(chunk, lg_events(resp, "account_data"), NULL);
    json_decref(resp);
    s->chunk = chunk;
    s->next = mx_pstrdup(mx_req_pool(req), next);
    if (s->peeking)
        lg_peek_presence(s);
    else
        lg_stream_reply(s);
}

static void lg_stream_run(mx_req_t *req, lg_stream_t *s, int64_t cap)
{
    hs_sync_opts_t o = {
        .since = s->from,
        .timeout_ms = s->timeout,
        .limit = LG_STREAM_LIMIT,
        .legacy_stream = true,
        .events_cap = cap,
        .only_room = s->room_id,
        .peek = s->room_id != NULL,
    };
    hs_sync_run(req, s->who, &o, lg_stream_done, s);
}

static void lg_cap_read(int status, mx_sql_res_t *res, void *ud)
{
    lg_stream_t *s = ud;
    mx_req_t *req = s->req;
    int64_t cap = 0;
    if (status == 0 && mx_sql_nrows(res, 0) > 0)
        cap = mx_sql_int(res, 0, 0, 0);
    lg_stream_run(req, s, cap);
}

static void lg_stream_room(rm_room_t *room, int status, void *ud)
{
    lg_stream_t *s = ud;
    mx_req_t *req = s->req;
    if (!room) {
        if (status == -ENOENT)
            mx_req_error(req, 404, "M_NOT_FOUND", "unknown room");
        else
            hs_reply_storage_error(req, status, "loading room");
        return;
    }
    const char *m = rm_membership(room, s->who->user_id);
    const json_t *hv = rm_state_get(room, "m.room.history_visibility", "");
    const char *v = json_string_value(
        json_object_get(json_object_get(hv, "content"), "history_visibility"));
    if (!(m && strcmp(m, "join") == 0) && !(v && strcmp(v, "world_readable") == 0)) {
        mx_req_error(req, 403, "M_FORBIDDEN", "you cannot read this room");
        return;
    }
    s->peeking = !(m && strcmp(m, "join") == 0);
    lg_stream_run(req, s, 0);
}

static void lg_events_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mx_pool_t *pool = mx_req_pool(req);
    lg_stream_t *s = mx_palloc(pool, sizeof(*s));
    if (!s) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    memset(s, 0, sizeof(*s));
    s->req = req;
    s->who = rm_who_copy(req, who);
    const char *from = mx_req_query(req, "from");
    int64_t pos[HS_STREAM_COUNT];
    if (from && *from) {
        if (hs_sync_token_parse(from, pos) < 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "invalid from token");
            return;
        }
        s->from = mx_pstrdup(pool, from);
    } else {
        for (int i = 0; i < HS_STREAM_COUNT; i++)
            pos[i] = hs_stream_current((hs_stream_t)i);
        s->from = hs_sync_token_make(pool, pos);
    }
    const char *to = mx_req_query(req, "timeout");
    if (to) {
        long long v = strtoll(to, NULL, 10);
        s->timeout = v > 0 ? (uint64_t)v : 0;
    }
    if (!lg_parse_limit(req, LG_STREAM_LIMIT, &s->limit))
        return;
    if (s->limit == 0)
        s->limit = LG_STREAM_LIMIT;
    const char *room_id = mx_req_query(req, "room_id");
    s->room_id = room_id && *room_id ? mx_pstrdup(pool, room_id) : NULL;
    hs_presence_set_from_sync(who->user_id, NULL);
    if (s->room_id) {
        rm_room_get(s->room_id, lg_stream_room, s);
        return;
    }
    if (s->limit >= LG_STREAM_LIMIT) {
        lg_stream_run(req, s, 0);
        return;
    }
    /* `limit`: the stream stops after the limit-th event of the user's rooms */
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "SELECT e.stream_ordering FROM events e WHERE e.stream_ordering > ? AND"
                  " e.room_id IN (SELECT room_id FROM room_memberships WHERE user_id = ?)"
                  " ORDER BY e.stream_ordering LIMIT 1 OFFSET ?",
               "isi", pos[HS_STREAM_EVENTS], who->user_id, (int64_t)s->limit - 1);
    if (mx_sql_run(b, lg_cap_read, s) < 0)
        lg_stream_run(req, s, 0);
}

/* --------------------------------------------------------- initialSync --- */

/* The current state: the state before the timeline updated by its state
 * events (new reference). */
static json_t *lg_current_state(const json_t *room)
{
    json_t *byk = json_object();
    json_t *order = json_array();
    const char *const secs[] = { "state", "timeline" };
    for (int s = 0; s < 2; s++) {
        size_t i;
        json_t *ev;
        json_array_foreach(lg_events(room, secs[s]), i, ev) {
            const char *t = json_string_value(json_object_get(ev, "type"));
            const char *sk = json_string_value(json_object_get(ev, "state_key"));
            if (!t || !sk)
                continue;
            char *k = hs_state_key_join(t, sk);
            if (!k)
                continue;
            if (!json_object_get(byk, k))
                json_array_append_new(order, json_string(k));
            json_object_set(byk, k, ev);
            free(k);
        }
    }
    json_t *out = json_array();
    size_t i;
    json_t *k;
    json_array_foreach(order, i, k)
        json_array_append(out, json_object_get(byk, json_string_value(k)));
    json_decref(order);
    json_decref(byk);
    return out;
}

/* The user's membership in a synced room (from its state). */
static const char *lg_membership(const json_t *state, const char *user_id)
{
    size_t i;
    json_t *ev;
    json_array_foreach((json_t *)state, i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        const char *sk = json_string_value(json_object_get(ev, "state_key"));
        if (t && sk && strcmp(t, "m.room.member") == 0 && strcmp(sk, user_id) == 0)
            return json_string_value(json_object_get(json_object_get(ev, "content"),
                                                     "membership"));
    }
    return NULL;
}

static const char *lg_visibility(const char *room_id)
{
    rm_room_t *r = rm_room_cached(room_id);
    const json_t *jr = r ? rm_state_get(r, "m.room.join_rules", "") : NULL;
    const char *v = json_string_value(json_object_get(json_object_get(jr, "content"),
                                                      "join_rule"));
    return v && strcmp(v, "public") == 0 ? "public" : "private";
}

/* One room of an initialSync body; `receipts` collects the room's
 * m.receipt events (with room_id).  New reference. */
static json_t *lg_room(const char *rid, const json_t *r, const char *membership,
                       const char *user_id, const char *end, json_t *receipts,
                       json_t *members_out)
{
    json_t *state = lg_current_state(r);
    const char *m = lg_membership(state, user_id);
    if (!membership)
        membership = m ? m : "join";
    json_t *chunk = json_array();
    lg_append(chunk, lg_events(r, "timeline"), rid);
    size_t i;
    json_t *ev;
    json_array_foreach(state, i, ev) {
        json_t *cp = json_deep_copy(ev); /* the sync body's events are shared */
        json_object_set_new(cp, "room_id", json_string(rid));
        lg_v1(cp);
        json_array_set_new(state, i, cp);
    }
    json_array_foreach(lg_events(r, "ephemeral"), i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        if (t && strcmp(t, "m.receipt") == 0 && receipts) {
            json_t *cp = json_deep_copy(ev);
            json_object_set_new(cp, "room_id", json_string(rid));
            json_array_append_new(receipts, cp);
        }
    }
    if (members_out) {
        json_array_foreach(state, i, ev) {
            const char *t = json_string_value(json_object_get(ev, "type"));
            const char *sk = json_string_value(json_object_get(ev, "state_key"));
            const char *mm = json_string_value(json_object_get(json_object_get(ev, "content"),
                                                               "membership"));
            if (t && sk && mm && strcmp(t, "m.room.member") == 0 && strcmp(mm, "join") == 0)
                json_object_set_new(members_out, sk, json_true());
        }
    }
    json_t *ad = json_array();
    lg_append(ad, lg_events(r, "account_data"), NULL);
    const char *start = json_string_value(json_object_get(json_object_get(r, "timeline"),
                                                          "prev_batch"));
    return json_pack("{s:s, s:s, s:s, s:{s:o, s:s, s:s}, s:o, s:o}", "room_id", rid,
                     "membership", membership, "visibility", lg_visibility(rid), "messages",
                     "chunk", chunk, "start", start ? start : end, "end", end, "state", state,
                     "account_data", ad);
}

static void lg_initial_done(mx_req_t *req, json_t *resp, const char *next, void *ud)
{
    const hs_user_t *who = ud;
    json_t *rooms = json_array();
    json_t *receipts = json_array();
    const json_t *rs = json_object_get(resp, "rooms");
    const char *rid;
    json_t *r;
    json_object_foreach(json_object_get(rs, "join"), rid, r)
        json_array_append_new(rooms, lg_room(rid, r, "join", who->user_id, next, receipts, NULL));
    json_object_foreach(json_object_get(rs, "leave"), rid, r)
        json_array_append_new(rooms, lg_room(rid, r, NULL, who->user_id, next, NULL, NULL));
    json_object_foreach(json_object_get(rs, "invite"), rid, r) {
        json_t *ev = json_object_get(r, "event");
        json_t *o = json_pack("{s:s, s:s, s:s}", "room_id", rid, "membership", "invite",
                              "visibility", lg_visibility(rid));
        if (ev) {
            json_object_set(o, "invite", ev);
            json_object_set(o, "inviter", json_object_get(ev, "sender"));
        }
        json_array_append_new(rooms, o);
    }
    json_t *presence = json_array();
    lg_presence(presence, resp, NULL);
    json_t *ad = json_array();
    lg_append(ad, lg_events(resp, "account_data"), NULL);
    /* push rules have their own endpoints (Synapse leaves them out here) */
    for (size_t i = json_array_size(ad); i-- > 0;) {
        const char *t = json_string_value(json_object_get(json_array_get(ad, i), "type"));
        if (t && strcmp(t, "m.push_rules") == 0)
            json_array_remove(ad, i);
    }
    json_decref(resp);
    mx_req_reply_json(req, 200, json_pack("{s:o, s:o, s:o, s:o, s:s}", "rooms", rooms, "presence",
                                          presence, "receipts", receipts, "account_data", ad,
                                          "end", next));
}

static void lg_initial_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    int limit;
    if (!lg_parse_limit(req, LG_DEFAULT_LIMIT, &limit))
        return;
    const char *arch = mx_req_query(req, "archived");
    hs_presence_set_from_sync(who->user_id, NULL);
    hs_sync_opts_t o = {
        .limit = limit,
        .include_leave = arch && strcmp(arch, "true") == 0,
    };
    hs_sync_run(req, who, &o, lg_initial_done, (void *)rm_who_copy(req, who));
}

/* ---------------------------------------------------- room initialSync --- */

typedef struct lg_room_req {
    mx_req_t *req;
    const hs_user_t *who;
    const char *room_id;
    int limit;
    bool member;       /* has (had) a membership */
} lg_room_req_t;

/* A peeking user sees only the events sent while the history was
 * world_readable (a visibility change counts with its new value when that
 * is world_readable). */
static void lg_world_readable_only(json_t *room)
{
    const char *vis = "shared";
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(room, "state"), i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        if (t && strcmp(t, "m.room.history_visibility") == 0)
            vis = json_string_value(json_object_get(json_object_get(ev, "content"),
                                                    "history_visibility")) ?: "shared";
    }
    /* the state above is the current one: recompute from the timeline start */
    json_t *chunk = json_object_get(json_object_get(room, "messages"), "chunk");
    bool changes = false;
    json_array_foreach(chunk, i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        if (t && strcmp(t, "m.room.history_visibility") == 0)
            changes = true;
    }
    if (changes)
        vis = "shared";
    json_t *kept = json_array();
    json_array_foreach(chunk, i, ev) {
        const char *t = json_string_value(json_object_get(ev, "type"));
        if (t && strcmp(t, "m.room.history_visibility") == 0 &&
            json_object_get(ev, "state_key"))
            vis = json_string_value(json_object_get(json_object_get(ev, "content"),
                                                    "history_visibility")) ?: "shared";
        if (strcmp(vis, "world_readable") == 0)
            json_array_append(kept, ev);
    }
    json_object_set_new(json_object_get(room, "messages"), "chunk", kept);
}

static void lg_room_done(mx_req_t *req, json_t *resp, const char *next, void *ud)
{
    lg_room_req_t *q = ud;
    const json_t *rs = json_object_get(resp, "rooms");
    const json_t *r = json_object_get(json_object_get(rs, "join"), q->room_id);
    const char *membership = "join";
    if (!r) {
        r = json_object_get(json_object_get(rs, "leave"), q->room_id);
        membership = NULL;
    }
    if (!r) {
        json_decref(resp);
        mx_req_error(req, 403, "M_FORBIDDEN", "you are not allowed to read this room");
        return;
    }
    json_t *receipts = json_array();
    json_t *members = json_object();
    json_t *out = lg_room(q->room_id, r, membership, q->who->user_id, next, receipts, members);
    if (!q->member)
        json_object_set_new(out, "membership", json_string("leave"));
    size_t i;
    json_t *ev;
    bool joined = strcmp(json_string_value(json_object_get(out, "membership")), "join") == 0;
    json_t *presence = json_array();
    if (joined) {
        lg_presence(presence, resp, members);
        /* members without a presence event are offline */
        json_array_foreach(presence, i, ev)
            json_object_del(members, json_string_value(json_object_get(ev, "sender")) ?: "");
        const char *uid;
        json_t *v;
        json_object_foreach(members, uid, v)
            json_array_append_new(presence,
                                  json_pack("{s:s, s:s, s:{s:s, s:s}}", "type", "m.presence",
                                            "sender", uid, "content", "presence", "offline",
                                            "user_id", uid));
    } else {
        json_array_clear(receipts);
    }
    if (!q->member)
        lg_world_readable_only(out);
    json_object_set_new(out, "presence", presence);
    json_object_set_new(out, "receipts", receipts);
    json_decref(members);
    json_decref(resp);
    mx_req_reply_json(req, 200, out);
}

static void lg_room_loaded(rm_room_t *room, int status, void *ud)
{
    lg_room_req_t *q = ud;
    mx_req_t *req = q->req;
    if (!room) {
        if (status == -ENOENT)
            mx_req_error(req, 403, "M_FORBIDDEN", "you are not allowed to read this room");
        else
            hs_reply_storage_error(req, status, "loading room");
        return;
    }
    const char *m = rm_membership(room, q->who->user_id);
    const json_t *hv = rm_state_get(room, "m.room.history_visibility", "");
    const char *v = json_string_value(
        json_object_get(json_object_get(hv, "content"), "history_visibility"));
    bool wr = v && strcmp(v, "world_readable") == 0;
    bool member = m && (strcmp(m, "join") == 0 || strcmp(m, "leave") == 0 ||
                        strcmp(m, "ban") == 0);
    if (!member && !wr) {
        mx_req_error(req, 403, "M_FORBIDDEN", "you are not allowed to read this room");
        return;
    }
    q->member = member;
    hs_sync_opts_t o = {
        .limit = q->limit,
        .include_leave = true,
        .only_room = q->room_id,
        .peek = !member,
    };
    hs_sync_run(req, q->who, &o, lg_room_done, q);
}

static void lg_room_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mx_pool_t *pool = mx_req_pool(req);
    lg_room_req_t *q = mx_palloc(pool, sizeof(*q));
    if (!q) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    memset(q, 0, sizeof(*q));
    q->req = req;
    q->who = rm_who_copy(req, who);
    q->room_id = mx_pstrdup(pool, mx_req_param(req, "roomId"));
    if (!lg_parse_limit(req, LG_DEFAULT_LIMIT, &q->limit))
        return;
    rm_room_get(q->room_id, lg_room_loaded, q);
}

/* ----------------------------------------------------------- guest gate ---
 * Membership handlers let guests in through this gate (spec "Guest
 * access"): a guest may only join (a room whose m.room.guest_access is
 * "can_join", by room ID) or leave; everything else is 403
 * M_GUEST_ACCESS_FORBIDDEN.  `ud` points to the handler's next step. */

typedef struct lg_gate {
    mx_req_t *req;
    const hs_user_t *who;
    hs_authed_fn next;
} lg_gate_t;

static void lg_gate_room(rm_room_t *room, int status, void *ud)
{
    lg_gate_t *g = ud;
    if (!room && status != -ENOENT) {
        hs_reply_storage_error(g->req, status, "loading room");
        return;
    }
    const json_t *ga = room ? rm_state_get(room, "m.room.guest_access", "") : NULL;
    const char *v = json_string_value(json_object_get(json_object_get(ga, "content"),
                                                      "guest_access"));
    const char *m = room ? rm_membership(room, g->who->user_id) : NULL;
    bool invited_or_in = m && (strcmp(m, "join") == 0 || strcmp(m, "invite") == 0);
    if (!(v && strcmp(v, "can_join") == 0) && !invited_or_in) {
        mx_req_error(g->req, 403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed");
        return;
    }
    g->next(g->req, g->who, NULL);
}

void hs_guest_membership_gate(mx_req_t *req, const hs_user_t *who, void *ud)
{
    hs_authed_fn next = *(const hs_authed_fn *)ud;
    if (!who->is_guest) {
        next(req, who, NULL);
        return;
    }
    const char *path = mx_req_path(req);
    const char *act = strrchr(path, '/');
    act = act ? act + 1 : "";
    const char *room_id = mx_req_param(req, "roomId");
    bool join = false;
    if (room_id && strcmp(act, "leave") == 0) {
        next(req, who, NULL);
        return;
    }
    if (room_id && strcmp(act, "join") == 0) {
        join = true;
    } else if (!room_id) {
        room_id = mx_req_param(req, "roomIdOrAlias");
        join = room_id && room_id[0] == '!';
    }
    if (!join) {
        mx_req_error(req, 403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not do this");
        return;
    }
    lg_gate_t *g = mx_palloc(mx_req_pool(req), sizeof(*g));
    if (!g) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    g->req = req;
    g->who = rm_who_copy(req, who);
    g->next = next;
    rm_room_get(room_id, lg_gate_room, g);
}

/* --------------------------------------------------------------- routes --- */

static int lg_events_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, lg_events_authed, NULL);
}

static int lg_initial_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, lg_initial_authed, NULL);
}

static int lg_room_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, lg_room_authed, NULL);
}

int hs_legacy_events_start(void)
{
    int rc;
    if ((rc = rm_route("GET", "/events", lg_events_h, 0)) < 0 ||
        (rc = rm_route("GET", "/initialSync", lg_initial_h, 0)) < 0 ||
        (rc = rm_route("GET", "/rooms/{roomId}/initialSync", lg_room_h, 0)) < 0)
        return rc;
    return 0;
}
