/*
 * sync.c: GET /_matrix/client/v3/sync.
 *
 * One sync is computed in two read batches, whatever the number of rooms:
 *   1. the user's memberships and the rooms with new events in (since, upto];
 *   2. per room to send: the timeline (newest `limit`+1 events), the state
 *      at the start of the timeline (and, for incremental syncs, at `since`)
 *      read from the state groups with one recursive query each, the member
 *      counts and heroes; per invite/knock the member event, which carries
 *      the stripped state in its unsigned data.
 * Then every provider registered with hs_sync_add_part adds its sections.
 *
 * Long-poll: when the response holds nothing and `timeout` > 0, a waiter is
 * registered for the user and their joined rooms (notifier.c); a wake-up or
 * the timeout recomputes from the same `since`.  If a stream moved while we
 * computed, we recompute at once instead of waiting, so a notification that
 * fired in between is not lost.  The context is malloc'd (not in the
 * request's pool) so that a client that goes away (mx_req_on_abort) while a
 * batch is in flight is handled when the batch returns.
 */
#include "sync.h"
#include "../client/client.h"
#include "../relations/relations.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SY_DEFAULT_LIMIT 10
#define SY_MAX_LIMIT 500
#define SY_MAX_TIMEOUT_MS (10 * 60 * 1000)

/* ------------------------------------------------------------ providers --- */

typedef struct sy_part {
    const char *name;
    hs_sync_part_fn fn;
} sy_part_t;

#define SY_MAX_PARTS 32
static sy_part_t sy_parts[SY_MAX_PARTS];
static size_t sy_nparts;

int hs_sync_add_part(const char *name, hs_sync_part_fn fn)
{
    if (!fn)
        return -EINVAL;
    if (sy_nparts == SY_MAX_PARTS)
        return -ENOSPC;
    sy_parts[sy_nparts].name = name;
    sy_parts[sy_nparts].fn = fn;
    sy_nparts++;
    return 0;
}

static json_t *sy_obj(json_t *parent, const char *key)
{
    json_t *o = json_object_get(parent, key);
    if (!json_is_object(o)) {
        o = json_object();
        json_object_set_new(parent, key, o);
    }
    return o;
}

static json_t *sy_events_obj(void)
{
    return json_pack("{s:[]}", "events");
}

json_t *hs_sync_joined_room(hs_sync_ctx_t *sc, const char *room_id)
{
    json_t *join = sy_obj(sy_obj(sc->response, "rooms"), "join");
    json_t *r = json_object_get(join, room_id);
    if (!r) {
        r = json_object();
        json_object_set_new(r, "timeline", json_pack("{s:[], s:b}", "events", "limited", 0));
        json_object_set_new(r, "state", sy_events_obj());
        json_object_set_new(r, "ephemeral", sy_events_obj());
        json_object_set_new(r, "account_data", sy_events_obj());
        json_object_set_new(r, "unread_notifications",
                            json_pack("{s:i, s:i}", "highlight_count", 0, "notification_count", 0));
        json_object_set_new(join, room_id, r);
    }
    return r;
}

/* -------------------------------------------------------------- context --- */

enum { SY_JOIN, SY_LEAVE, SY_INVITE, SY_KNOCK };

typedef struct sy_room {
    const char *room_id;      /* pool */
    int kind;
    const char *event_id;     /* the user's membership event */
    int64_t mem_so;
    int64_t lo, hi;           /* timeline range (lo, hi] */
    bool full;                /* full state (initial, newly joined, full_state) */
    int st_tl, st_start, st_since, st_counts, st_heroes, st_ev;
    int st_vis;               /* history visibility of the timeline, -1: all visible */
    bool peeking;             /* world_readable preview without membership */
    bool newly_joined;        /* incremental sync: joined since `since` */
    bool state_still;         /* no state event in (lo, hi]: no state reads, the
                                 state delta is empty */
    int tl_rows;              /* timeline rows to show at most: the filter's
                                 limit, or after a deep load the rows from
                                 the oldest picked event to `hi` */
    bool deep;                /* visibility hid events: load further back */
    bool deep_done;           /* lo/tl_rows come from the deep load */
    bool deep_limited;        /* the deep load left visible events before */
    bool whole;               /* the window starts at the room's beginning */
    /* the timeline built by sy_fill_timeline (owned until sy_fill_room) */
    json_t *tl_events, *tl_senders, *tl_members;
    bool tl_limited;
    int64_t tl_oldest;
} sy_room_t;

typedef struct sy_ctx {
    mx_req_t *req;
    hs_user_t who;            /* strings owned by the ctx */
    char *user_id, *device_id;
    const char *dev_key;      /* pool */
    int64_t since[HS_STREAM_COUNT];
    int64_t upto[HS_STREAM_COUNT];
    bool initial, full_state;
    uint64_t deadline;        /* ms since epoch */
    json_t *filter;           /* owned or NULL */
    int limit;
    bool lazy_members;
    bool include_leave;
    unsigned ev_flags;        /* RM_CE_FEDERATION for event_format federation */
    mx_pool_t *scratch;       /* per computation */
    sy_room_t *rooms;
    size_t nrooms;
    json_t *joined;           /* owned: joined room IDs */
    json_t *resp;             /* owned */
    hs_sync_ctx_t sc;
    size_t part;
    hs_waiter_t *waiter;
    bool busy, aborted, replied;
    hs_sync_result_fn result_fn; /* hs_sync_run: hand the body over */
    void *result_ud;
    bool legacy_stream, peek, capped;
    int64_t events_cap;
    int opt_limit;            /* hs_sync_run's limit, -1: the filter's */
    char *only_room;          /* owned or NULL */
    const char *tl_sql;       /* scratch: timeline filter as SQL (" AND ...") */
    bool redundant_members;   /* include_redundant_members */
    bool members_moved;       /* see hs_sync_ctx_t */
    bool deep_probed;         /* this computation already loaded further back */
    json_t *win;              /* the shared window rows (window.c) or NULL:
                                 batch 1 reads the window itself */
} sy_ctx_t;

static void sy_free(sy_ctx_t *c)
{
    hs_waiter_free(c->waiter);
    json_decref(c->filter);
    json_decref(c->joined);
    json_decref(c->resp);
    json_decref(c->win);
    if (c->scratch)
        mx_pool_free(c->scratch);
    free(c->user_id);
    free(c->device_id);
    free(c->only_room);
    free(c);
}

/* After every asynchronous step: true when the context was freed because
 * the client went away. */
static bool sy_gone(sy_ctx_t *c)
{
    c->busy = false;
    if (c->aborted) {
        sy_free(c);
        return true;
    }
    return false;
}

static void sy_abort(mx_req_t *req, void *ud)
{
    (void)req;
    sy_ctx_t *c = ud;
    c->aborted = true;
    hs_waiter_free(c->waiter);
    c->waiter = NULL;
    if (!c->busy)
        sy_free(c);
}

static void sy_fail(sy_ctx_t *c, int status, const char *what)
{
    c->replied = true;
    hs_reply_storage_error(c->req, status, what);
    sy_free(c);
}

static void sy_compute(sy_ctx_t *c);
static void sy_rooms_read(int status, mx_sql_res_t *res, void *ud);
static void sy_probe(sy_ctx_t *c);
static void sy_win_got(json_t *rows, void *ud);

/* -------------------------------------------------------------- replying --- */

static bool sy_nonempty_events(const json_t *o)
{
    return json_array_size(json_object_get(o, "events")) > 0;
}

/* Whether the response carries anything the client has not seen. */
static bool sy_has_data(const json_t *resp)
{
    const json_t *rooms = json_object_get(resp, "rooms");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rooms, k, v) {
        if (strcmp(k, "join") != 0) {
            if (json_object_size(v))
                return true;
            continue;
        }
        const char *rid;
        json_t *r;
        json_object_foreach(v, rid, r) {
            if (sy_nonempty_events(json_object_get(r, "timeline")) ||
                sy_nonempty_events(json_object_get(r, "state")) ||
                sy_nonempty_events(json_object_get(r, "ephemeral")) ||
                sy_nonempty_events(json_object_get(r, "account_data")))
                return true;
        }
    }
    static const char *const tops[] = { "presence", "account_data", "to_device" };
    for (size_t i = 0; i < 3; i++)
        if (sy_nonempty_events(json_object_get(resp, tops[i])))
            return true;
    const json_t *dl = json_object_get(resp, "device_lists");
    if (json_array_size(json_object_get(dl, "changed")) || json_array_size(json_object_get(dl, "left")))
        return true;
    return false;
}

static void sy_wake(hs_waiter_t *w, int woken, void *ud)
{
    (void)woken;
    sy_ctx_t *c = ud;
    hs_waiter_free(w);
    c->waiter = NULL;
    sy_compute(c);
}

static void sy_finish(sy_ctx_t *c)
{
    bool moved = false;
    for (int s = 0; s < HS_STREAM_COUNT; s++)
        if (hs_stream_current((hs_stream_t)s) != c->upto[s] &&
            !(s == HS_STREAM_EVENTS && c->capped))
            moved = true;
    uint64_t now = mx_now_ms();
    if (!c->initial && !c->full_state && now < c->deadline && !sy_has_data(c->resp)) {
        if (moved) {
            sy_compute(c);
            return;
        }
        c->waiter = hs_waiter_add(c->user_id, c->joined, c->deadline - now, sy_wake, c);
        if (c->waiter)
            return;
    }
    /* Providers may cover less than was asked (to_device sends at most
     * 100 messages): the token says what this response really covers. */
    const char *next = hs_sync_token_make(c->scratch, c->sc.upto);
    c->replied = true;
    if (c->result_fn) {
        json_t *resp = c->resp;
        c->resp = NULL;
        c->result_fn(c->req, resp, next, c->result_ud);
        sy_free(c);
        return;
    }
    json_object_set_new(c->resp, "next_batch", json_string(next));
    mx_req_reply_json(c->req, 200, c->resp);
    c->resp = NULL;
    sy_free(c);
}

/* Providers run concurrently (each usually waits for its own read batch;
 * they only touch their own sections of the response, on the loop). */
static void sy_part_done(hs_sync_ctx_t *sc, int status)
{
    sy_ctx_t *c = (sy_ctx_t *)((char *)sc - offsetof(sy_ctx_t, sc));
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "sync: a part failed (%d)", status);
    if (--c->part > 0)
        return;
    if (sy_gone(c))
        return;
    sy_finish(c);
}

static void sy_run_parts(sy_ctx_t *c)
{
    memset(&c->sc, 0, sizeof(c->sc));
    c->sc.pool = c->scratch;
    c->sc.who = &c->who;
    memcpy(c->sc.since, c->since, sizeof(c->since));
    memcpy(c->sc.upto, c->upto, sizeof(c->upto));
    c->sc.initial = c->initial;
    c->sc.full_state = c->full_state;
    c->sc.filter = c->filter;
    c->sc.joined_rooms = c->joined;
    c->sc.response = c->resp;
    c->sc.members_moved = c->members_moved;
    if (!sy_nparts) {
        sy_finish(c);
        return;
    }
    /* One extra count so that providers finishing synchronously cannot
     * complete the sync before every provider has been started. */
    c->busy = true;
    c->part = sy_nparts + 1;
    for (size_t i = 0; i < sy_nparts; i++)
        sy_parts[i].fn(&c->sc, sy_part_done);
    sy_part_done(&c->sc, 0);
}

/* ----------------------------------------------------------- room bodies --- */

/* The state chain query: state group entries from the group of the newest
 * event matching `start_where`, back to the nearest snapshot, joined with
 * the events; rows come snapshot first so later rows override. */
#define SY_STATE_SQL(start_where)                                                          \
    "WITH RECURSIVE chain(id, prev, snap, n) AS ("                                         \
    " SELECT s.id, s.prev_group, s.is_snapshot, 0 FROM state_groups s WHERE s.id = ("      \
    "  SELECT g.group_id FROM event_to_state_group g WHERE g.event_id = ("                 \
    "   SELECT x.event_id FROM events x WHERE x.room_id = ? AND " start_where              \
    "   ORDER BY x.stream_ordering DESC LIMIT 1))"                                         \
    " UNION ALL"                                                                           \
    " SELECT s.id, s.prev_group, s.is_snapshot, c.n + 1 FROM state_groups s"               \
    " JOIN chain c ON s.id = c.prev WHERE c.snap = 0)"                                     \
    " SELECT c.n, se.type, se.state_key, " RM_EV_COLS " FROM chain c"                      \
    " JOIN state_group_entries se ON se.group_id = c.id"                                   \
    " JOIN events e ON e.event_id = se.event_id ORDER BY c.n DESC"

/* State at the start of the timeline: the newest event before the oldest
 * of the `limit` newest events in (lo, hi] that pass the timeline filter
 * (%s: its SQL, on columns e.type / e.sender). */
static const char sy_sql_state_start[] = SY_STATE_SQL(
    "x.stream_ordering < COALESCE((SELECT MIN(t.so) FROM (SELECT e.stream_ordering AS so"
    " FROM events e WHERE e.room_id = ? AND e.stream_ordering > ? AND e.stream_ordering <= ?%s"
    " ORDER BY e.stream_ordering DESC LIMIT ?) t), ?)");
static const char sy_sql_state_at[] = SY_STATE_SQL("x.stream_ordering <= ?");

/* ------------------------------------------------ lazy-loaded members ---
 * Which member events each device already got (Synapse's per-device
 * cache): "user\x1fdevice" -> {state_key: event_id}.  Cleared by an
 * initial sync; bounded (a cleared entry only means redundant resends). */
#define SY_LLC_MAX 20000
static json_t *sy_llc;

static json_t *sy_llc_dev(const sy_ctx_t *c, bool reset)
{
    if (!sy_llc || json_object_size(sy_llc) > SY_LLC_MAX) {
        json_decref(sy_llc);
        sy_llc = json_object();
    }
    char key[600];
    snprintf(key, sizeof(key), "%s\x1f%s", c->user_id, c->dev_key ? c->dev_key : "");
    json_t *d = json_object_get(sy_llc, key);
    if (!d || reset || json_object_size(d) > SY_LLC_MAX) {
        d = json_object();
        json_object_set_new(sy_llc, key, d);
    }
    return d;
}

/* {key: row} of a state chain result. */
static json_t *sy_resolve(const mx_sql_res_t *res, int st)
{
    json_t *m = json_object();
    int n = mx_sql_nrows(res, st);
    for (int i = 0; i < n; i++) {
        char *k = hs_state_key_join(mx_sql_text(res, st, i, 1), mx_sql_text(res, st, i, 2));
        if (k)
            json_object_set_new(m, k, json_integer(i));
        free(k);
    }
    return m;
}

static bool sy_key_is_member(const char *k, const char **user)
{
    if (strncmp(k, "m.room.member\x1f", 14) != 0)
        return false;
    *user = k + 14;
    return true;
}

/* Whether `ev` is part of the room's current state: such events are shown
 * in a timeline whatever the history visibility (Synapse's
 * always_include_ids), so that a client's view of the state is complete. */
static bool sy_is_current_state(const char *room_id, const json_t *ev)
{
    const char *sk = json_string_value(json_object_get(ev, "state_key"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *eid = json_string_value(json_object_get(ev, "event_id"));
    rm_room_t *room = sk && type && eid ? rm_room_cached(room_id) : NULL;
    const char *cur = room ? rm_state_id(room, type, sk) : NULL;
    return cur && strcmp(cur, eid) == 0;
}

/* Row `i` of the timeline read as the event the client is shown, or NULL
 * when the filter or the history visibility hides it. */
static json_t *sy_tl_event(sy_ctx_t *c, const mx_sql_res_t *res, const sy_room_t *r,
                           const rm_vis_t *vis, int i)
{
    json_t *tlf = json_object_get(json_object_get(c->filter, "room"), "timeline");
    if (!hs_filter_match(tlf, mx_sql_text(res, r->st_tl, i, 6), mx_sql_text(res, r->st_tl, i, 7)))
        return NULL;
    json_t *ev = rm_row_event(res, r->st_tl, i, 0, c->dev_key, c->ev_flags);
    if (ev && vis && !mx_sql_is_null(res, r->st_tl, i, 8) &&
        !rm_vis_visible(vis, mx_sql_int(res, r->st_tl, i, 8), ev, c->user_id, r->peeking) &&
        !sy_is_current_state(r->room_id, ev)) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

static void sy_tl_clear(sy_room_t *r)
{
    json_decref(r->tl_events);
    json_decref(r->tl_senders);
    json_decref(r->tl_members);
    r->tl_events = r->tl_senders = r->tl_members = NULL;
}

/* Builds the timeline of a joined/left room (r->tl_*).  Returns false,
 * building nothing, when the history visibility hid some of the newest
 * events and more are in the window: the room needs a deep load
 * (sy_probe), as Synapse's _load_filtered_recents loads further back
 * until `limit` events are visible. */
static bool sy_fill_timeline(sy_ctx_t *c, const mx_sql_res_t *res, sy_room_t *r)
{
    int rows = mx_sql_nrows(res, r->st_tl);
    bool trimmed = rows > r->tl_rows;
    int n = trimmed ? r->tl_rows : rows;
    /* a room new to the client is always "limited" (Synapse): its history
     * starts before what it is shown */
    r->tl_limited = trimmed || r->deep_limited || r->newly_joined;
    json_t *events = json_array();
    json_t *senders = json_object();
    json_t *tl_members = json_object();
    rm_vis_t *vis = r->st_vis >= 0 ? rm_vis_load(res, r->st_vis) : NULL;
    int64_t oldest = r->hi;
    for (int i = n - 1; i >= 0; i--) {
        const char *type = mx_sql_text(res, r->st_tl, i, 6);
        const char *sender = mx_sql_text(res, r->st_tl, i, 7);
        if (i == n - 1)
            oldest = mx_sql_int(res, r->st_tl, i, 5);
        json_t *ev = sy_tl_event(c, res, r, vis, i);
        if (!ev)
            continue;
        const char *sk = json_string_value(json_object_get(ev, "state_key"));
        if (sk && type && strcmp(type, "m.room.member") == 0)
            json_object_set(tl_members, sk, json_object_get(ev, "event_id"));
        json_array_append_new(events, ev);
        if (sender)
            json_object_set_new(senders, sender, json_true());
    }
    rm_vis_free(vis);
    if (vis && trimmed && !c->deep_probed && json_array_size(events) < (size_t)c->limit) {
        json_decref(events);
        json_decref(senders);
        json_decref(tl_members);
        r->deep = true;
        return false;
    }
    /* prev_batch: before the oldest event shown, except for a timeline
     * taken from the start of the room (initial sync, new room) that was
     * not cut: then the sync point itself (Synapse), so that paginating
     * back from it returns the timeline again rather than nothing */
    if (n == 0 || (r->whole && !trimmed && !r->deep_limited))
        oldest = r->hi + 1;
    r->tl_events = events;
    r->tl_senders = senders;
    r->tl_members = tl_members;
    r->tl_oldest = oldest;
    return true;
}

/* The timeline (sy_fill_timeline) and the state of a joined/left room. */
static void sy_fill_room(sy_ctx_t *c, const mx_sql_res_t *res, sy_room_t *r, json_t *out)
{
    json_t *stf = json_object_get(json_object_get(c->filter, "room"), "state");
    json_t *senders = r->tl_senders, *tl_members = r->tl_members;
    json_t *tl = json_pack("{s:o, s:b, s:s}", "events", r->tl_events, "limited", r->tl_limited,
                           "prev_batch", rm_make_token(c->scratch, r->tl_oldest - 1));
    r->tl_events = r->tl_senders = r->tl_members = NULL;
    json_object_set_new(out, "timeline", tl);

    /* state at the start of the timeline, or the change since `since` */
    json_t *start = r->st_start >= 0 ? sy_resolve(res, r->st_start) : json_object();
    json_t *since = r->st_since >= 0 ? sy_resolve(res, r->st_since) : NULL;
    json_t *state = json_array();
    json_t *llc = c->lazy_members && !c->redundant_members ? sy_llc_dev(c, false) : NULL;
    if (r->full)
        json_object_set(senders, c->user_id, json_true());
    const char *k;
    json_t *row;
    json_object_foreach(start, k, row) {
        int i = (int)json_integer_value(row);
        const char *eid = mx_sql_text(res, r->st_start, i, 3);
        const char *user = NULL;
        bool member = sy_key_is_member(k, &user);
        bool changed = true;
        if (since) {
            json_t *srow = json_object_get(since, k);
            const char *sid = srow ? mx_sql_text(res, r->st_since, (int)json_integer_value(srow), 3)
                                   : NULL;
            changed = !sid || strcmp(sid, eid) != 0;
        }
        if (member && c->lazy_members) {
            /* Lazy loading (Synapse's _calculate_state): members who sent
             * timeline events (and the user on a full sync), plus, on
             * incremental syncs, every membership that changed in the gap;
             * then what this device already has is left out. */
            bool sender = json_object_get(senders, user) != NULL;
            if (r->full ? !sender : !(sender || changed))
                continue;
            if (llc && !r->full && !c->redundant_members) {
                const char *had = json_string_value(json_object_get(llc, user));
                if (had && strcmp(had, eid) == 0)
                    continue;
            }
        } else if (!changed) {
            continue;
        }
        const char *type = mx_sql_text(res, r->st_start, i, 1);
        if (!hs_filter_match(stf, type, NULL))
            continue;
        json_t *ev = rm_row_event(res, r->st_start, i, 3, c->dev_key, c->ev_flags);
        if (ev) {
            if (member && llc)
                json_object_set_new(llc, user, json_string(eid));
            json_array_append_new(state, ev);
        }
    }
    if (llc) {
        const char *mk;
        json_t *mv;
        json_object_foreach(tl_members, mk, mv)
            json_object_set(llc, mk, mv);
    }
    json_decref(tl_members);
    json_decref(start);
    json_decref(since);
    json_decref(senders);
    json_object_set_new(out, "state", json_pack("{s:o}", "events", state));
}

/* Whether the room has a non-empty name or canonical alias (then the
 * summary carries no m.heroes, as in Synapse). */
static bool sy_named(const rm_room_t *room)
{
    const json_t *n = rm_state_get(room, "m.room.name", "");
    const json_t *a = rm_state_get(room, "m.room.canonical_alias", "");
    const char *nv = json_string_value(json_object_get(json_object_get(n, "content"), "name"));
    const char *av = json_string_value(json_object_get(json_object_get(a, "content"), "alias"));
    return (nv && *nv) || (av && *av);
}

static void sy_fill_summary(sy_ctx_t *c, const mx_sql_res_t *res, sy_room_t *r, json_t *out)
{
    int64_t joined = 0, invited = 0;
    if (r->st_counts < 0) {
        /* From the room cache (loaded when the statements were planned). */
        rm_room_t *room = rm_room_cached(r->room_id);
        if (!room)
            return;
        json_t *heroes = json_array();
        const char *k;
        json_t *ev;
        json_object_foreach(room->state, k, ev) {
            if (strncmp(k, "m.room.member\x1f", 14) != 0)
                continue;
            const char *m = hs_ev_membership(ev);
            if (!m)
                continue;
            if (strcmp(m, "join") == 0)
                joined++;
            else if (strcmp(m, "invite") == 0)
                invited++;
            else
                continue;
            if (strcmp(k + 14, c->user_id) != 0 && json_array_size(heroes) < 5)
                json_array_append_new(heroes, json_string(k + 14));
        }
        json_t *sum = json_pack("{s:I, s:I}", "m.joined_member_count", (json_int_t)joined,
                                "m.invited_member_count", (json_int_t)invited);
        if (!sy_named(room))
            json_object_set_new(sum, "m.heroes", heroes);
        else
            json_decref(heroes);
        json_object_set_new(out, "summary", sum);
        return;
    }
    for (int i = 0; i < mx_sql_nrows(res, r->st_counts); i++) {
        const char *m = mx_sql_text(res, r->st_counts, i, 0);
        if (strcmp(m, "join") == 0)
            joined = mx_sql_int(res, r->st_counts, i, 1);
        else if (strcmp(m, "invite") == 0)
            invited = mx_sql_int(res, r->st_counts, i, 1);
    }
    json_t *heroes = json_array();
    for (int i = 0; i < mx_sql_nrows(res, r->st_heroes); i++)
        json_array_append_new(heroes, json_string(mx_sql_text(res, r->st_heroes, i, 0)));
    (void)c;
    json_object_set_new(out, "summary",
                        json_pack("{s:o, s:I, s:I}", "m.heroes", heroes, "m.joined_member_count",
                                  (json_int_t)joined, "m.invited_member_count",
                                  (json_int_t)invited));
}

static void sy_bundled(int status, void *ud)
{
    sy_ctx_t *c = ud;
    (void)status; /* best effort: the timelines stay as they were */
    if (sy_gone(c))
        return;
    sy_run_parts(c);
}

static void sy_rooms_read(int status, mx_sql_res_t *res, void *ud)
{
    sy_ctx_t *c = ud;
    if (sy_gone(c))
        return;
    if (status < 0) {
        sy_fail(c, status, "sync rooms");
        return;
    }
    /* the timelines first: a room whose visible events fall short of
     * the limit sends the whole batch through the deep load */
    bool deep = false;
    for (size_t i = 0; i < c->nrooms; i++) {
        sy_room_t *r = &c->rooms[i];
        if (r->kind != SY_INVITE && r->kind != SY_KNOCK && !sy_fill_timeline(c, res, r))
            deep = true;
    }
    if (deep) {
        for (size_t i = 0; i < c->nrooms; i++)
            sy_tl_clear(&c->rooms[i]);
        sy_probe(c);
        return;
    }
    json_t *rooms = sy_obj(c->resp, "rooms");
    json_t *join = sy_obj(rooms, "join");
    json_t *invite = sy_obj(rooms, "invite");
    json_t *leave = sy_obj(rooms, "leave");
    json_t *knock = sy_obj(rooms, "knock");
    for (size_t i = 0; i < c->nrooms; i++) {
        sy_room_t *r = &c->rooms[i];
        if (r->kind == SY_INVITE || r->kind == SY_KNOCK) {
            if (mx_sql_nrows(res, r->st_ev) == 0)
                continue;
            const char *js = mx_sql_text(res, r->st_ev, 0, 1);
            const char *us = mx_sql_text(res, r->st_ev, 0, 2);
            json_t *pdu = js ? json_loads(js, 0, NULL) : NULL;
            json_t *uns = us ? json_loads(us, 0, NULL) : NULL;
            json_t *st = json_object_get(uns, r->kind == SY_INVITE ? "invite_room_state"
                                                                    : "knock_room_state");
            json_t *arr = json_is_array(st) ? json_deep_copy(st) : json_array();
            if (pdu)
                json_array_append_new(arr, json_pack("{s:O, s:O, s:O, s:O}", "type",
                                                     json_object_get(pdu, "type"), "state_key",
                                                     json_object_get(pdu, "state_key"), "sender",
                                                     json_object_get(pdu, "sender"), "content",
                                                     json_object_get(pdu, "content")));
            json_decref(pdu);
            json_decref(uns);
            const char *key = r->kind == SY_INVITE ? "invite_state" : "knock_state";
            json_t *ir = json_pack("{s:{s:o}}", key, "events", arr);
            if (c->legacy_stream || c->result_fn) {
                json_t *full = rm_row_event(res, r->st_ev, 0, 0, c->dev_key, RM_CE_ROOM_ID);
                if (full)
                    json_object_set_new(ir, "event", full);
            }
            json_object_set_new(r->kind == SY_INVITE ? invite : knock, r->room_id, ir);
            continue;
        }
        json_t *out = json_object();
        sy_fill_room(c, res, r, out);
        /* an incremental sync leaves out a room whose new events were all
         * filtered out (the providers may still add it) */
        if (r->kind == SY_JOIN && !c->initial && !r->full &&
            !sy_nonempty_events(json_object_get(out, "timeline")) &&
            !sy_nonempty_events(json_object_get(out, "state"))) {
            json_decref(out);
            continue;
        }
        if (r->kind == SY_JOIN) {
            sy_fill_summary(c, res, r, out);
            json_object_set_new(out, "ephemeral", sy_events_obj());
            json_object_set_new(out, "account_data", sy_events_obj());
            json_object_set_new(out, "unread_notifications",
                                json_pack("{s:i, s:i}", "highlight_count", 0,
                                          "notification_count", 0));
            json_object_set_new(join, r->room_id, out);
        } else {
            json_object_set_new(out, "account_data", sy_events_obj());
            json_object_set_new(leave, r->room_id, out);
        }
    }
    /* Bundled aggregations and ignored users (relations/), then providers. */
    c->busy = true;
    hs_relations_bundle_sync(c->resp, c->user_id, sy_bundled, c);
}

static bool sy_room_allowed(sy_ctx_t *c, const char *room_id)
{
    if (c->only_room && strcmp(c->only_room, room_id) != 0)
        return false;
    json_t *rf = json_object_get(c->filter, "room");
    json_t *rooms = json_object_get(rf, "rooms");
    json_t *not_rooms = json_object_get(rf, "not_rooms");
    size_t i;
    json_t *v;
    json_array_foreach(not_rooms, i, v)
        if (json_string_value(v) && strcmp(json_string_value(v), room_id) == 0)
            return false;
    if (!json_is_array(rooms))
        return true;
    json_array_foreach(rooms, i, v)
        if (json_string_value(v) && strcmp(json_string_value(v), room_id) == 0)
            return true;
    return false;
}

/* Adds the timeline read of a joined/left room — the newest r->tl_rows + 1
 * events of (lo, hi] — and its history visibility read; returns the next
 * statement index. */
static int sy_add_tl_reads(sy_ctx_t *c, mx_sql_batch_t *b, sy_room_t *r, int st)
{
    const char *rid = r->room_id;
    const char *tf = c->tl_sql ? c->tl_sql : "";
    /* timeline: RM_EV_COLS then type, sender, state group; the filter
     * applies before the limit */
    mx_sql_add(b, mx_psprintf(c->scratch, "SELECT " RM_EV_COLS ", e.type, e.sender, g.group_id"
                                          " FROM events e LEFT JOIN event_to_state_group g"
                                          " ON g.event_id = e.event_id WHERE e.room_id = ?"
                                          " AND e.stream_ordering > ? AND e.stream_ordering <= ?%s"
                                          " ORDER BY e.stream_ordering DESC LIMIT ?", tf),
               "siii", rid, r->lo, r->hi, (int64_t)r->tl_rows + 1);
    r->st_tl = st++;
    /* history visibility, for the timeline events up to the user's latest
     * membership change (all later ones carry the current membership:
     * visible when joined) or all of them when not joined */
    r->st_vis = -1;
    if (c->limit > 0 && (r->kind != SY_JOIN || r->peeking || r->mem_so > r->lo)) {
        const char *seed = mx_psprintf(c->scratch,
            "SELECT x.event_id FROM (SELECT e.event_id, e.stream_ordering FROM events e"
            " WHERE e.room_id = ? AND e.stream_ordering > ? AND e.stream_ordering <= ?%s"
            " ORDER BY e.stream_ordering DESC LIMIT ?) x WHERE x.stream_ordering <= ?", tf);
        mx_sql_add(b, rm_vis_sql(c->scratch, seed), "ssiiii", c->user_id, rid, r->lo, r->hi,
                   (int64_t)r->tl_rows + 1, r->kind == SY_JOIN && !r->peeking ? r->mem_so : r->hi);
        r->st_vis = st++;
    }
    return st;
}

/* Adds the reads of one joined/left room (timeline, state, counts);
 * returns the next statement index. */
static int sy_add_room_reads(sy_ctx_t *c, mx_sql_batch_t *b, sy_room_t *r, int st)
{
    const char *rid = r->room_id;
    const char *tf = c->tl_sql ? c->tl_sql : "";
    st = sy_add_tl_reads(c, b, r, st);
    /* No state event in the window: the state at `since` and at the
     * timeline start are the same, the delta is empty (the common
     * long-poll wake-up: saves two reads of the whole room state). */
    r->st_start = -1;
    if (r->state_still)
        ;
    else if (c->limit > 0)
        mx_sql_add(b, mx_psprintf(c->scratch, sy_sql_state_start, tf), "ssiiii", rid, rid, r->lo,
                   r->hi, (int64_t)r->tl_rows, r->hi + 1);
    else /* no timeline: the state at its end */
        mx_sql_add(b, sy_sql_state_at, "si", rid, r->hi);
    if (!r->state_still)
        r->st_start = st++;
    if (!r->full && !r->state_still) {
        mx_sql_add(b, sy_sql_state_at, "si", rid, c->since[HS_STREAM_EVENTS]);
        r->st_since = st++;
    }
    r->st_counts = r->st_heroes = -1;
    if (r->kind == SY_JOIN && !rm_room_cached(rid)) {
        mx_sql_add(b, "SELECT membership, COUNT(*) FROM room_memberships WHERE room_id = ?"
                      " GROUP BY membership", "s", rid);
        r->st_counts = st++;
        mx_sql_add(b, "SELECT user_id FROM room_memberships WHERE room_id = ?"
                      " AND membership IN ('join', 'invite') AND user_id <> ?"
                      " ORDER BY stream_ordering LIMIT 5", "ss", rid, c->user_id);
        r->st_heroes = st++;
    }
    return st;
}

/* The second batch: the reads of every room planned in c->rooms. */
static void sy_read_rooms(sy_ctx_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        sy_fail(c, -ENOMEM, "sync");
        return;
    }
    int st = 0;
    for (size_t i = 0; i < c->nrooms; i++) {
        sy_room_t *r = &c->rooms[i];
        if (!r->deep_done)
            r->whole = r->lo == 0;
        if (r->kind == SY_INVITE || r->kind == SY_KNOCK) {
            mx_sql_add(b, "SELECT " RM_EV_COLS " FROM events e WHERE e.event_id = ?", "s",
                       r->event_id);
            r->st_ev = st++;
        } else {
            st = sy_add_room_reads(c, b, r, st);
        }
    }
    if (st == 0) {
        mx_sql_batch_free(b);
        sy_rooms_read(0, NULL, c);
        return;
    }
    c->busy = true;
    if (mx_sql_run(b, sy_rooms_read, c) < 0) {
        mx_sql_batch_free(b);
        c->busy = false;
        sy_fail(c, MX_EDB, "sync");
    }
}

/* ----------------------------------------------------------- deep load ---
 * When the history visibility hides some of a room's newest events, its
 * timeline is loaded further back (Synapse's _load_filtered_recents: up
 * to 5 more pages of max(2 * limit, 10) events) until `limit` events are
 * visible or the window (lo, hi] is exhausted.  The probe reads those
 * events and their visibility; the room's window then starts just before
 * the oldest event picked, and the second batch runs again, so that the
 * state at the timeline start is the state before the events returned. */
static int sy_deep_rows(const sy_ctx_t *c)
{
    int page = c->limit * 2 > 10 ? c->limit * 2 : 10;
    return c->limit + 5 * page;
}

static void sy_probe_read(int status, mx_sql_res_t *res, void *ud)
{
    sy_ctx_t *c = ud;
    if (sy_gone(c))
        return;
    if (status < 0) {
        sy_fail(c, status, "sync timeline");
        return;
    }
    for (size_t k = 0; k < c->nrooms; k++) {
        sy_room_t *r = &c->rooms[k];
        if (!r->deep)
            continue;
        rm_vis_t *vis = r->st_vis >= 0 ? rm_vis_load(res, r->st_vis) : NULL;
        int rows = mx_sql_nrows(res, r->st_tl);
        bool beyond = rows > r->tl_rows;
        if (beyond)
            rows = r->tl_rows;
        int picked = 0, last = -1;
        for (int i = 0; i < rows; i++) { /* newest first */
            json_t *ev = sy_tl_event(c, res, r, vis, i);
            if (!ev)
                continue;
            json_decref(ev);
            if (picked == c->limit) {
                beyond = true;
                break;
            }
            picked++;
            last = i;
        }
        rm_vis_free(vis);
        if (last >= 0) {
            r->lo = mx_sql_int(res, r->st_tl, last, 5) - 1;
            r->tl_rows = last + 1;
        } else {
            r->lo = r->hi;
            r->tl_rows = 0;
        }
        r->deep_limited = beyond;
        r->deep_done = true;
    }
    sy_read_rooms(c);
}

static void sy_probe(sy_ctx_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        sy_fail(c, -ENOMEM, "sync");
        return;
    }
    c->deep_probed = true;
    int st = 0;
    for (size_t i = 0; i < c->nrooms; i++) {
        sy_room_t *r = &c->rooms[i];
        if (!r->deep)
            continue;
        r->tl_rows = sy_deep_rows(c);
        st = sy_add_tl_reads(c, b, r, st);
    }
    c->busy = true;
    if (mx_sql_run(b, sy_probe_read, c) < 0) {
        mx_sql_batch_free(b);
        c->busy = false;
        sy_fail(c, MX_EDB, "sync");
    }
}

static void sy_plan_read(int status, mx_sql_res_t *res, void *ud)
{
    sy_ctx_t *c = ud;
    if (sy_gone(c))
        return;
    if (status < 0) {
        sy_fail(c, status, "sync memberships");
        return;
    }
    int64_t since = c->since[HS_STREAM_EVENTS], upto = c->upto[HS_STREAM_EVENTS];
    /* rooms with new events: {room: whether a state event is among them};
     * own: the user's membership events [room, unsigned, membership] */
    json_t *changed = json_object();
    json_t *own = json_array();
    c->members_moved = c->initial;
    if (c->win) {
        json_t *joined_now = json_object();
        for (int i = 0; i < mx_sql_nrows(res, 0); i++)
            if (strcmp(mx_sql_text(res, 0, i, 1), "join") == 0)
                json_object_set_new(joined_now, mx_sql_text(res, 0, i, 0), json_true());
        size_t i;
        json_t *row;
        json_array_foreach(c->win, i, row) {
            const char *rid = json_string_value(json_array_get(row, 0));
            const char *sk = json_string_value(json_array_get(row, 2));
            if (!rid)
                continue;
            if (json_object_get(joined_now, rid)) {
                if (json_is_true(json_array_get(row, 1)) || !json_object_get(changed, rid))
                    json_object_set(changed, rid, json_array_get(row, 1));
                if (sk)
                    c->members_moved = true;
            }
            if (sk && strcmp(sk, c->user_id) == 0) {
                c->members_moved = true;
                json_array_append_new(own, json_pack("[s, O, O]", rid, json_array_get(row, 3),
                                                     json_array_get(row, 4)));
            }
        }
        json_decref(joined_now);
    } else {
        for (int i = 0; i < mx_sql_nrows(res, 1); i++) {
            json_object_set_new(changed, mx_sql_text(res, 1, i, 0),
                                json_boolean(mx_sql_int(res, 1, i, 1) != 0));
            if (mx_sql_int(res, 1, i, 2) != 0)
                c->members_moved = true;
        }
        for (int i = 0; i < mx_sql_nrows(res, 2); i++) {
            c->members_moved = true;
            json_array_append_new(own, json_pack("[s, s?, s?]", mx_sql_text(res, 2, i, 0),
                                                 mx_sql_text(res, 2, i, 1),
                                                 mx_sql_text(res, 2, i, 2)));
        }
    }
    json_decref(c->win);
    c->win = NULL;
    /* The user's membership events since `since` (incremental syncs):
     * {room: true} when they were already joined at `since` (the first
     * one's prev_content), so a profile change is not a new join. */
    json_t *was_joined = json_object();
    json_t *joined_in_window = json_object();
    size_t oi;
    json_t *orow;
    json_array_foreach(own, oi, orow) {
        if (c->initial)
            break;
        const char *rid = json_string_value(json_array_get(orow, 0));
        const char *m = json_string_value(json_array_get(orow, 2));
        if (m && strcmp(m, "join") == 0)
            json_object_set_new(joined_in_window, rid, json_true());
        else /* left (or was invited...) and, if joined now, rejoined: new */
            json_object_set_new(was_joined, rid, json_false());
        if (json_object_get(was_joined, rid))
            continue;
        const char *us = json_string_value(json_array_get(orow, 1));
        json_t *uns = us ? json_loads(us, 0, NULL) : NULL;
        const char *pm = json_string_value(
            json_object_get(json_object_get(uns, "prev_content"), "membership"));
        json_object_set_new(was_joined, rid, json_boolean(pm && strcmp(pm, "join") == 0));
        json_decref(uns);
    }
    c->tl_sql = hs_filter_sql(c->scratch, json_object_get(json_object_get(c->filter, "room"),
                                                          "timeline"), "e.type", "e.sender");
    if (c->initial && c->lazy_members)
        sy_llc_dev(c, true);
    int nm = mx_sql_nrows(res, 0);
    c->rooms = mx_palloc(c->scratch, sizeof(sy_room_t) * (size_t)(nm ? nm : 1));
    c->nrooms = 0;
    json_decref(c->joined);
    c->joined = json_array();
    if (!c->rooms) {
        json_decref(changed);
        json_decref(was_joined);
        json_decref(joined_in_window);
        json_decref(own);
        sy_fail(c, -ENOMEM, "sync");
        return;
    }
    bool seen_only = false;
    /* room initialSync of a world-readable room the user never joined:
     * one extra slot for it */
    if (c->peek && c->only_room) {
        sy_room_t *more = mx_palloc(c->scratch, sizeof(sy_room_t) * (size_t)(nm + 1));
        if (more)
            c->rooms = more;
    }
    for (int i = 0; i < nm; i++) {
        const char *rid = mx_sql_text(res, 0, i, 0);
        const char *m = mx_sql_text(res, 0, i, 1);
        int64_t mso = mx_sql_int(res, 0, i, 3);
        if (strcmp(m, "join") == 0)
            json_array_append_new(c->joined, json_string(rid));
        if (mso > upto || !sy_room_allowed(c, rid))
            continue; /* changed after our snapshot of the streams */
        if (c->only_room)
            seen_only = true;
        sy_room_t *r = &c->rooms[c->nrooms];
        memset(r, 0, sizeof(*r));
        r->room_id = mx_pstrdup(c->scratch, rid);
        r->event_id = mx_pstrdup(c->scratch, mx_sql_text(res, 0, i, 2));
        r->mem_so = mso;
        r->st_since = -1;
        r->tl_rows = c->limit;
        json_t *wj = json_object_get(was_joined, rid);
        bool fresh = c->initial || (mso > since && !json_is_true(wj));
        if (strcmp(m, "join") == 0) {
            r->kind = SY_JOIN;
            if (!fresh && !c->full_state && !json_object_get(changed, rid))
                continue;
            r->full = fresh || c->full_state;
            r->newly_joined = fresh && !c->initial;
            r->lo = r->full && fresh ? 0 : since;
            r->hi = upto;
            /* lazy-loading needs the state (timeline senders' members) */
            r->state_still = !r->full && !c->lazy_members && !c->initial &&
                             json_is_false(json_object_get(changed, rid));
            if (c->legacy_stream && !c->initial) {
                /* /events: only what happened after `from` */
                r->full = false;
                r->lo = since;
            }
        } else if (strcmp(m, "invite") == 0 || strcmp(m, "knock") == 0) {
            if (!fresh)
                continue;
            r->kind = m[0] == 'i' ? SY_INVITE : SY_KNOCK;
            c->nrooms++;
            continue;
        } else {
            /* leave or ban: once, in the sync that covers it (or in an
             * initial sync with include_leave) */
            r->kind = SY_LEAVE;
            if (c->initial ? !c->include_leave : mso <= since)
                continue;
            /* joined and left since `since`: the room is new to the client */
            bool new_room = !c->initial && !json_is_true(wj) &&
                            json_object_get(joined_in_window, rid);
            r->full = c->initial || c->full_state || new_room;
            r->lo = c->initial || new_room ? 0 : since;
            r->hi = mso;
        }
        c->nrooms++;
    }
    if (c->peek && c->only_room && !seen_only) {
        sy_room_t *r = &c->rooms[c->nrooms];
        memset(r, 0, sizeof(*r));
        r->room_id = mx_pstrdup(c->scratch, c->only_room);
        r->kind = SY_JOIN;
        r->peeking = true;
        r->st_since = -1;
        r->tl_rows = c->limit;
        r->full = true;
        r->lo = c->initial ? 0 : since;
        r->hi = upto;
        json_array_append_new(c->joined, json_string(c->only_room));
        c->nrooms++;
    }
    json_decref(changed);
    json_decref(was_joined);
    json_decref(joined_in_window);
    json_decref(own);
    sy_read_rooms(c);
}

/* One computation from c->since to the streams' current positions. */
static void sy_compute(sy_ctx_t *c)
{
    if (c->scratch)
        mx_pool_free(c->scratch);
    c->scratch = mx_pool_new();
    json_decref(c->resp);
    c->resp = json_object();
    for (int s = 0; s < HS_STREAM_COUNT; s++)
        c->upto[s] = hs_stream_current((hs_stream_t)s);
    c->capped = false;
    c->deep_probed = false;
    if (c->legacy_stream && c->events_cap > c->since[HS_STREAM_EVENTS] &&
        c->events_cap < c->upto[HS_STREAM_EVENTS]) {
        c->upto[HS_STREAM_EVENTS] = c->events_cap;
        c->capped = true;
    }
    /* A token from the future (e.g. a wiped database) counts as initial. */
    if (c->since[HS_STREAM_EVENTS] > c->upto[HS_STREAM_EVENTS]) {
        memset(c->since, 0, sizeof(c->since));
        c->initial = true;
    }
    c->dev_key = rm_device_key(c->scratch, &c->who);
    if (!c->scratch || !c->resp) {
        sy_fail(c, -ENOMEM, "sync");
        return;
    }
    /* the window's events, shared with the other syncs of that window */
    c->busy = true;
    hs_sync_window(c->initial ? c->upto[HS_STREAM_EVENTS] : c->since[HS_STREAM_EVENTS],
                   c->upto[HS_STREAM_EVENTS], sy_win_got, c);
}

/* Batch 1: the user's memberships, and the window when window.c could not
 * give it. */
static void sy_win_got(json_t *rows, void *ud)
{
    sy_ctx_t *c = ud;
    if (sy_gone(c))
        return;
    json_decref(c->win);
    c->win = json_incref(rows);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        sy_fail(c, -ENOMEM, "sync");
        return;
    }
    mx_sql_add(b, "SELECT room_id, membership, event_id, stream_ordering FROM room_memberships"
                  " WHERE user_id = ? AND forgotten = 0", "s", c->user_id);
    if (!c->win) {
        mx_sql_add(b, "SELECT e.room_id, MAX(CASE WHEN e.state_key IS NULL THEN 0 ELSE 1 END),"
                      " MAX(CASE WHEN e.type = 'm.room.member' THEN 1 ELSE 0 END)"
                      " FROM events e JOIN room_memberships m"
                      " ON m.room_id = e.room_id AND m.user_id = ? AND m.membership = 'join'"
                      " WHERE e.stream_ordering > ? AND e.stream_ordering <= ? GROUP BY e.room_id",
                   "sii", c->user_id, c->initial ? c->upto[HS_STREAM_EVENTS] : c->since[HS_STREAM_EVENTS],
                   c->upto[HS_STREAM_EVENTS]);
        mx_sql_add(b, "SELECT e.room_id, e.unsigned_json, e.membership FROM events e"
                      " WHERE e.stream_ordering > ? AND e.stream_ordering <= ?"
                      " AND e.type = 'm.room.member' AND e.state_key = ? ORDER BY e.stream_ordering",
                   "iis", c->initial ? c->upto[HS_STREAM_EVENTS] : c->since[HS_STREAM_EVENTS],
                   c->upto[HS_STREAM_EVENTS], c->user_id);
    }
    c->busy = true;
    if (mx_sql_run(b, sy_plan_read, c) < 0) {
        mx_sql_batch_free(b);
        c->busy = false;
        sy_fail(c, MX_EDB, "sync");
    }
}

/* ------------------------------------------------------------ the handler --- */

static void sy_apply_filter(sy_ctx_t *c)
{
    json_t *rf = json_object_get(c->filter, "room");
    json_t *lim = json_object_get(json_object_get(rf, "timeline"), "limit");
    c->limit = SY_DEFAULT_LIMIT;
    if (json_is_integer(lim) && json_integer_value(lim) >= 0)
        c->limit = json_integer_value(lim) > SY_MAX_LIMIT ? SY_MAX_LIMIT
                                                          : (int)json_integer_value(lim);
    c->lazy_members =
        json_is_true(json_object_get(json_object_get(rf, "state"), "lazy_load_members"));
    c->include_leave = json_is_true(json_object_get(rf, "include_leave"));
    c->redundant_members = json_is_true(
        json_object_get(json_object_get(rf, "state"), "include_redundant_members"));
    const char *fmt = json_string_value(json_object_get(c->filter, "event_format"));
    c->ev_flags = fmt && strcmp(fmt, "federation") == 0 ? RM_CE_FEDERATION : 0;
}

static void sy_filter_loaded(json_t *filter, int status, void *ud)
{
    sy_ctx_t *c = ud;
    if (c->busy && sy_gone(c))
        return;
    if (status == -EINVAL) {
        c->replied = true;
        mx_req_error(c->req, 400, "M_BAD_JSON", "invalid filter");
        sy_free(c);
        return;
    }
    c->filter = filter ? json_incref(filter) : NULL;
    sy_apply_filter(c);
    if (c->opt_limit >= 0)
        c->limit = c->opt_limit > SY_MAX_LIMIT ? SY_MAX_LIMIT : c->opt_limit;
    sy_compute(c);
}

static sy_ctx_t *sy_new(mx_req_t *req, const hs_user_t *who)
{
    sy_ctx_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->user_id = strdup(who->user_id))) {
        free(c);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return NULL;
    }
    c->req = req;
    c->who = *who;
    c->device_id = who->device_id ? strdup(who->device_id) : NULL;
    c->who.user_id = c->user_id;
    c->who.device_id = c->device_id;
    c->opt_limit = -1;
    return c;
}

void hs_sync_run(mx_req_t *req, const hs_user_t *who, const hs_sync_opts_t *o,
                 hs_sync_result_fn fn, void *ud)
{
    sy_ctx_t *c = sy_new(req, who);
    if (!c)
        return;
    c->result_fn = fn;
    c->result_ud = ud;
    c->initial = !(o->since && *o->since && hs_sync_token_parse(o->since, c->since) == 0);
    c->deadline = mx_now_ms() + (o->timeout_ms > SY_MAX_TIMEOUT_MS ? SY_MAX_TIMEOUT_MS
                                                                    : o->timeout_ms);
    c->opt_limit = o->limit;
    c->legacy_stream = o->legacy_stream;
    c->events_cap = o->events_cap;
    c->peek = o->peek;
    c->only_room = o->only_room ? strdup(o->only_room) : NULL;
    mx_req_on_abort(req, sy_abort, c);
    sy_apply_filter(c);
    if (c->opt_limit >= 0)
        c->limit = c->opt_limit > SY_MAX_LIMIT ? SY_MAX_LIMIT : c->opt_limit;
    c->include_leave = o->include_leave;
    sy_compute(c);
}

static void sy_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    sy_ctx_t *c = sy_new(req, who);
    if (!c)
        return;

    const char *since = mx_req_query(req, "since");
    if (since && *since && hs_sync_token_parse(since, c->since) == 0)
        c->initial = false;
    else
        c->initial = true;
    const char *fs = mx_req_query(req, "full_state");
    c->full_state = fs && strcmp(fs, "true") == 0;
    const char *to = mx_req_query(req, "timeout");
    uint64_t timeout = 0;
    if (to) {
        long long v = strtoll(to, NULL, 10);
        timeout = v > 0 ? (uint64_t)v : 0;
        if (timeout > SY_MAX_TIMEOUT_MS)
            timeout = SY_MAX_TIMEOUT_MS;
    }
    c->deadline = mx_now_ms() + timeout;
    hs_presence_set_from_sync(c->user_id, mx_req_query(req, "set_presence"));
    mx_req_on_abort(req, sy_abort, c);
    c->busy = true;
    hs_filter_load(c->user_id, mx_req_query(req, "filter"), sy_filter_loaded, c);
}

static int sy_handler(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, sy_authed, NULL);
}

int hs_sync_start(char *err, size_t errlen)
{
    int rc = hs_notifier_start();
    if (rc < 0) {
        snprintf(err, errlen, "sync: notifier: %d", rc);
        return rc;
    }
    if ((rc = hs_filters_start(err, errlen)) < 0)
        return rc;
    if ((rc = hs_legacy_events_start()) < 0) {
        snprintf(err, errlen, "sync: cannot add legacy routes (%d)", rc);
        return rc;
    }
    if ((rc = rm_route("GET", "/sync", sy_handler, 0)) < 0) {
        snprintf(err, errlen, "sync: cannot add routes (%d)", rc);
        return rc;
    }
    return 0;
}

void hs_sync_stop(void)
{
    json_decref(sy_llc);
    sy_llc = NULL;
    hs_sync_window_stop();
    hs_notifier_stop();
}
