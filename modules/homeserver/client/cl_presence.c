/*
 * cl_presence.c: presence — GET/PUT /presence/{userId}/status, /sync's
 * set_presence (hs_presence_set_from_sync), the idle and "stopped
 * syncing" timeouts, and the "presence" sync provider (presence.events for
 * the requester and the users sharing a joined room with them).
 *
 * The loop keeps every user's presence in memory (loaded at start: one
 * small row per user who ever had one); the presence table is its
 * persistence and what the sync provider reads by stream position.  Only
 * changes of state or status message are written (and announced on
 * HS_STREAM_PRESENCE); activity just refreshes last_active_ts in memory.
 * Rules follow Synapse: idle for 5 minutes → unavailable; user activity
 * (typing, receipts) brings unavailable back to online; a syncing user who
 * stops syncing goes offline.
 */
#include "client.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PR_IDLE_MS (5 * 60 * 1000)       /* Synapse IDLE_TIMER */
#define PR_SYNC_GONE_MS (90 * 1000)      /* no /sync started for this long → offline
                                            (a long-poll lasts up to ~30 s) */
#define PR_ACTIVE_MS (60 * 1000)         /* currently_active window */
#define PR_TICK_MS (10 * 1000)
#define PR_MAX_STATUS_MSG 1024

typedef struct pr_entry {
    char state[16];          /* online, unavailable, offline */
    char *status_msg;        /* owned, NULL when unset */
    uint64_t last_active_ts;
    uint64_t last_sync_ts;   /* 0: not syncing */
} pr_entry_t;

typedef struct pr_state {
    rm_map_t *users;         /* user_id → pr_entry_t (owned) */
    uv_timer_t *timer;       /* freed in its close callback */
} pr_state_t;

static pr_state_t *pr;

static bool pr_valid_state(const char *s)
{
    return s && (strcmp(s, "online") == 0 || strcmp(s, "unavailable") == 0 ||
                 strcmp(s, "offline") == 0);
}

static pr_entry_t *pr_entry(const char *user_id, bool create)
{
    if (!pr)
        return NULL;
    pr_entry_t *e = rm_map_get(pr->users, user_id);
    if (e || !create)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    snprintf(e->state, sizeof(e->state), "offline");
    if (rm_map_put(pr->users, user_id, e) < 0) {
        free(e);
        return NULL;
    }
    return e;
}

/* The m.presence content (Synapse's format_user_presence_state). */
static json_t *pr_content(const char *state, const char *status_msg, uint64_t last_active,
                          uint64_t now)
{
    json_t *c = json_pack("{s:s}", "presence", state);
    if (last_active)
        json_object_set_new(c, "last_active_ago",
                            json_integer(now > last_active ? (json_int_t)(now - last_active) : 0));
    if (status_msg)
        json_object_set_new(c, "status_msg", json_string(status_msg));
    if (strcmp(state, "online") == 0)
        json_object_set_new(c, "currently_active",
                            json_boolean(last_active && now - last_active < PR_ACTIVE_MS));
    return c;
}

/* -------------------------------------------------------------- writes --- */

typedef struct pr_write {
    char *user_id;           /* owned */
    int64_t pos;
    mx_req_t *req;           /* replied after the commit, or NULL */
} pr_write_t;

static void pr_written(int status, mx_sql_res_t *res, void *ud)
{
    pr_write_t *w = ud;
    hs_stream_persisted(HS_STREAM_PRESENCE, w->pos);
    if (status == 0) {
        const char *me = w->user_id;
        hs_notify_users(&me, 1, HS_STREAM_PRESENCE);
        int n = mx_sql_nrows(res, 1);
        for (int i = 0; i < n; i++) {
            const char *room_id = mx_sql_text(res, 1, i, 0);
            if (room_id)
                hs_notify_room(room_id, HS_STREAM_PRESENCE);
        }
    } else {
        mx_log("homeserver", MX_LOG_ERROR, "presence: write for %s failed (%d)", w->user_id, status);
    }
    if (w->req) {
        if (status < 0)
            hs_reply_storage_error(w->req, status, "presence write");
        else
            mx_req_reply_json(w->req, 200, json_object());
    }
    free(w->user_id);
    free(w);
}

/* Persists the entry's current state with a new stream position and wakes
 * the /syncs of the user and of everyone sharing a room with them. */
static int pr_write(const char *user_id, const pr_entry_t *e, mx_req_t *req)
{
    pr_write_t *w = calloc(1, sizeof(*w));
    mx_sql_batch_t *b = w ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b || !(w->user_id = strdup(user_id))) {
        if (b)
            mx_sql_batch_free(b);
        free(w);
        return -ENOMEM;
    }
    w->req = req;
    w->pos = hs_stream_next(HS_STREAM_PRESENCE);
    mx_sql_add(b, "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_id)"
                  " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,"
                  " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
                  " stream_id = excluded.stream_id",
               "sssii", user_id, e->state, e->status_msg, (int64_t)e->last_active_ts, w->pos);
    mx_sql_add(b, "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'",
               "s", user_id);
    int rc = mx_sql_run(b, pr_written, w);
    if (rc < 0) {
        hs_stream_persisted(HS_STREAM_PRESENCE, w->pos);
        free(w->user_id);
        free(w);
    }
    return rc;
}

static void pr_set_state(pr_entry_t *e, const char *state)
{
    snprintf(e->state, sizeof(e->state), "%s", state);
}

/* ----------------------------------------------------- activity hooks --- */

void hs_presence_set_from_sync(const char *user_id, const char *state)
{
    if (!state)
        state = "online";
    if (!pr_valid_state(state) || strcmp(state, "offline") == 0)
        return; /* "offline": the sync does not affect presence */
    pr_entry_t *e = pr_entry(user_id, true);
    if (!e)
        return;
    uint64_t now = mx_now_ms();
    e->last_sync_ts = now;
    bool changed = false;
    if (strcmp(state, "online") == 0) {
        e->last_active_ts = now;
        /* An unavailable user stays so until real activity (Synapse). */
        if (strcmp(e->state, "offline") == 0) {
            pr_set_state(e, "online");
            changed = true;
        }
    } else if (strcmp(e->state, "unavailable") != 0) {
        pr_set_state(e, "unavailable");
        changed = true;
    }
    if (changed)
        pr_write(user_id, e, NULL);
}

void cl_presence_bump(const char *user_id)
{
    pr_entry_t *e = pr_entry(user_id, true);
    if (!e)
        return;
    e->last_active_ts = mx_now_ms();
    if (strcmp(e->state, "unavailable") == 0) {
        pr_set_state(e, "online");
        pr_write(user_id, e, NULL);
    }
}

json_t *cl_presence_event(const char *user_id)
{
    const pr_entry_t *e = pr_entry(user_id, false);
    if (!e)
        return NULL;
    json_t *content = pr_content(e->state, e->status_msg, e->last_active_ts, mx_now_ms());
    json_object_set_new(content, "user_id", json_string(user_id));
    return json_pack("{s:s, s:s, s:o}", "type", "m.presence", "sender", user_id, "content",
                     content);
}

typedef struct pr_tick {
    uint64_t now;
} pr_tick_t;

static void pr_tick_user(const char *user_id, void *val, void *ud)
{
    pr_entry_t *e = val;
    const pr_tick_t *t = ud;
    if (strcmp(e->state, "offline") != 0 && e->last_sync_ts &&
        t->now - e->last_sync_ts > PR_SYNC_GONE_MS) {
        pr_set_state(e, "offline");
        e->last_sync_ts = 0;
        pr_write(user_id, e, NULL);
    } else if (strcmp(e->state, "online") == 0 && t->now - e->last_active_ts > PR_IDLE_MS) {
        pr_set_state(e, "unavailable");
        pr_write(user_id, e, NULL);
    }
}

static void pr_tick(uv_timer_t *t)
{
    (void)t;
    if (!pr)
        return;
    pr_tick_t tk = { mx_now_ms() };
    rm_map_each(pr->users, pr_tick_user, &tk);
}

/* ------------------------------------------------------------ routes --- */

static void pr_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *user_id = mx_req_param(req, "userId");
    if (!cl_is_self(req, who, user_id, "Can only set your own presence state"))
        return;
    json_t *body = mx_req_json(req);
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "presence") != 0 && strcmp(key, "status_msg") != 0) {
            mx_req_error(req, 400, "M_BAD_JSON", "Unable to parse state");
            return;
        }
    }
    const char *state = json_string_value(json_object_get(body, "presence"));
    if (!pr_valid_state(state)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid presence state");
        return;
    }
    json_t *msg = json_object_get(body, "status_msg");
    if (msg && !json_is_string(msg) && !json_is_null(msg)) {
        mx_req_error(req, 400, "M_BAD_JSON", "status_msg must be a string.");
        return;
    }
    const char *status_msg = json_string_value(msg);
    if (status_msg && strlen(status_msg) > PR_MAX_STATUS_MSG) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "status_msg is too long");
        return;
    }
    pr_entry_t *e = pr_entry(who->user_id, true);
    char *dup = status_msg ? strdup(status_msg) : NULL;
    if (!e || (status_msg && !dup)) {
        free(dup);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    free(e->status_msg);
    e->status_msg = dup;
    pr_set_state(e, state);
    if (strcmp(state, "online") == 0)
        e->last_active_ts = mx_now_ms();
    int rc = pr_write(who->user_id, e, req);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "presence write");
}

static void pr_reply_state(mx_req_t *req, const char *user_id)
{
    const pr_entry_t *e = pr_entry(user_id, false);
    json_t *c = e ? pr_content(e->state, e->status_msg, e->last_active_ts, mx_now_ms())
                  : json_pack("{s:s}", "presence", "offline");
    mx_req_reply_json(req, 200, c);
}

static void pr_get_visible(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        hs_reply_storage_error(req, status, "presence visibility");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(req, 403, "M_FORBIDDEN", "You are not allowed to see their presence.");
        return;
    }
    pr_reply_state(req, mx_req_param(req, "userId"));
}

static void pr_get_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *user_id = mx_req_param(req, "userId");
    if (!hs_is_valid_user_id(user_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid user id");
        return;
    }
    if (strcmp(user_id, who->user_id) == 0) {
        pr_reply_state(req, user_id);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT 1 FROM room_memberships m1 JOIN room_memberships m2"
                  " ON m2.room_id = m1.room_id WHERE m1.user_id = ? AND m1.membership = 'join'"
                  " AND m2.user_id = ? AND m2.membership = 'join' LIMIT 1",
               "ss", who->user_id, user_id);
    int rc = mx_sql_run(b, pr_get_visible, req);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "presence visibility");
}

static int pr_put_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, pr_put_authed, ud);
}

static int pr_get_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, pr_get_authed, ud);
}

/* ------------------------------------------------------- sync provider --- */

typedef struct pr_sync {
    hs_sync_ctx_t *sc;
    hs_sync_part_done_fn done;
    int st[2];                /* statement of each read below, -1: not read */
} pr_sync_t;

static void pr_sync_got(int status, mx_sql_res_t *res, void *ud)
{
    pr_sync_t *s = ud;
    hs_sync_ctx_t *sc = s->sc;
    if (status < 0) {
        s->done(sc, status);
        return;
    }
    const json_t *filter = json_object_get(sc->filter, "presence");
    uint64_t now = mx_now_ms();
    json_t *evs = json_array();
    json_t *seen = json_object();
    /* statement 0: presence changes in (since, upto]; statement 1
     * (incremental syncs): the current presence of users who started to
     * share a room with the user (either side joined) — Synapse sends it
     * so that a client knows the presence of its new room-mates */
    for (int k = 0; k < 2; k++) {
        int st = s->st[k];
        if (st < 0)
            continue;
        for (int i = 0; i < mx_sql_nrows(res, st); i++) {
            const char *user_id = mx_sql_text(res, st, i, 0);
            if (!user_id || json_object_get(seen, user_id))
                continue;
            json_object_set_new(seen, user_id, json_true());
            if (filter && !hs_filter_match(filter, "m.presence", user_id))
                continue;
            const pr_entry_t *e = pr_entry(user_id, false);
            const char *state = e ? e->state : mx_sql_text(res, st, i, 1);
            if (!state && k == 1)
                state = "offline"; /* never seen: offline */
            if (!state)
                continue;
            /* An initial sync leaves out offline users (Synapse). */
            if (sc->initial && strcmp(state, "offline") == 0)
                continue;
            json_t *c = e ? pr_content(e->state, e->status_msg, e->last_active_ts, now)
                          : pr_content(state, mx_sql_text(res, st, i, 2),
                                       (uint64_t)mx_sql_int(res, st, i, 3), now);
            json_array_append_new(evs, json_pack("{s:s, s:s, s:o}", "type", "m.presence", "sender",
                                                 user_id, "content", c));
        }
    }
    /* an initial sync always shows the user's own presence, even while the
     * change this very sync made is still being written (SYT-34) */
    const pr_entry_t *me = pr_entry(sc->who->user_id, false);
    if (sc->initial && me && !json_object_get(seen, sc->who->user_id) &&
        (!filter || hs_filter_match(filter, "m.presence", sc->who->user_id)))
        json_array_append_new(evs, json_pack("{s:s, s:s, s:o}", "type", "m.presence", "sender",
                                             sc->who->user_id, "content",
                                             pr_content(me->state, me->status_msg,
                                                        me->last_active_ts, now)));
    json_decref(seen);
    json_object_set_new(sc->response, "presence", json_pack("{s:o}", "events", evs));
    s->done(sc, 0);
}

static void pr_sync(hs_sync_ctx_t *sc, hs_sync_part_done_fn done)
{
    /* Nothing new on this stream and no membership change (nobody new
     * shares a room with the user): no read (most long-poll wake-ups). */
    bool changes = sc->initial || sc->since[HS_STREAM_PRESENCE] < sc->upto[HS_STREAM_PRESENCE];
    bool joins = !sc->initial && sc->members_moved &&
                 sc->since[HS_STREAM_EVENTS] < sc->upto[HS_STREAM_EVENTS];
    if (!changes && !joins) {
        json_object_set_new(sc->response, "presence", json_pack("{s:[]}", "events"));
        done(sc, 0);
        return;
    }
    pr_sync_t *s = mx_palloc(sc->pool, sizeof(*s));
    mx_sql_batch_t *b = s ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        done(sc, -ENOMEM);
        return;
    }
    s->sc = sc;
    s->done = done;
    s->st[0] = s->st[1] = -1;
    int st = 0;
    int64_t since = sc->initial ? 0 : sc->since[HS_STREAM_PRESENCE];
    const char *me = sc->who->user_id;
    if (changes) {
        s->st[0] = st++;
        mx_sql_add(b, "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts FROM presence p"
                      " WHERE p.stream_id > ? AND p.stream_id <= ? AND (p.user_id = ? OR"
                      " p.user_id IN (SELECT m2.user_id FROM room_memberships m1"
                      " JOIN room_memberships m2 ON m2.room_id = m1.room_id WHERE m1.user_id = ?"
                      " AND m1.membership = 'join' AND m2.membership = 'join'))"
                      " ORDER BY p.stream_id",
                   "iiss", since, sc->upto[HS_STREAM_PRESENCE], me, me);
    }
    if (joins) {
        s->st[1] = st++;
        /* joins since `since` in the user's rooms (a range of the events
         * stream): the joiner, or everyone when the joiner is the user */
        mx_sql_add(b, "SELECT u.user_id, p.state, p.status_msg, p.last_active_ts FROM"
                      " (SELECT DISTINCT m2.user_id FROM events e"
                      " JOIN room_memberships m1 ON m1.room_id = e.room_id AND m1.user_id = ?"
                      " AND m1.membership = 'join'"
                      " JOIN room_memberships m2 ON m2.room_id = e.room_id AND m2.membership = 'join'"
                      " WHERE e.stream_ordering > ? AND e.stream_ordering <= ?"
                      " AND e.type = 'm.room.member' AND e.membership = 'join'"
                      " AND (e.state_key = ? OR m2.user_id = e.state_key) AND m2.user_id <> ?) u"
                      " LEFT JOIN presence p ON p.user_id = u.user_id",
                   "siiss", me, sc->since[HS_STREAM_EVENTS], sc->upto[HS_STREAM_EVENTS], me, me);
    }
    int rc = mx_sql_run(b, pr_sync_got, s);
    if (rc < 0)
        done(sc, rc);
}

/* ------------------------------------------------------------- start --- */

static int pr_load(char *err, size_t errlen)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT user_id, state, status_msg, last_active_ts FROM presence", "");
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.client: cannot load presence: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    int n = mx_sql_nrows(res, 0);
    for (int i = 0; i < n; i++) {
        const char *user_id = mx_sql_text(res, 0, i, 0);
        const char *state = mx_sql_text(res, 0, i, 1);
        pr_entry_t *e = user_id ? pr_entry(user_id, true) : NULL;
        if (!e)
            continue;
        /* Nobody is syncing right after a start: online users become
         * offline at the first tick unless they sync again. */
        pr_set_state(e, pr_valid_state(state) ? state : "offline");
        const char *msg = mx_sql_text(res, 0, i, 2);
        e->status_msg = msg ? strdup(msg) : NULL;
        e->last_active_ts = (uint64_t)mx_sql_int(res, 0, i, 3);
        if (strcmp(e->state, "offline") != 0)
            e->last_sync_ts = mx_now_ms();
    }
    mx_sql_res_free(res);
    return 0;
}

int cl_presence_start(char *err, size_t errlen)
{
    if (!pr) {
        pr = calloc(1, sizeof(*pr));
        if (!pr || !(pr->users = rm_map_new())) {
            free(pr);
            pr = NULL;
            return -ENOMEM;
        }
        int rc = pr_load(err, errlen);
        if (rc < 0)
            return rc;
        pr->timer = malloc(sizeof(*pr->timer));
        if (pr->timer) {
            uv_timer_init(mx_loop(), pr->timer);
            uv_timer_start(pr->timer, pr_tick, PR_TICK_MS, PR_TICK_MS);
            uv_unref((uv_handle_t *)pr->timer);
        }
    }
    int rc;
    if ((rc = cl_route("PUT", "/presence/{userId}/status", pr_put_h, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = cl_route("GET", "/presence/{userId}/status", pr_get_h, 0)) < 0) {
        snprintf(err, errlen, "homeserver.client: cannot add presence routes (%d)", rc);
        return rc;
    }
    return hs_sync_add_part("presence", pr_sync);
}

static void pr_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void pr_free_entry(const char *user_id, void *val, void *ud)
{
    (void)user_id;
    (void)ud;
    pr_entry_t *e = val;
    free(e->status_msg);
    free(e);
}

void cl_presence_stop(void)
{
    if (!pr)
        return;
    if (pr->timer) {
        uv_timer_stop(pr->timer);
        uv_close((uv_handle_t *)pr->timer, pr_timer_closed);
    }
    rm_map_each(pr->users, pr_free_entry, NULL);
    rm_map_free(pr->users);
    free(pr);
    pr = NULL;
}
