/*
 * rel_bundle.c: bundled aggregations (unsigned.m.relations) and ignored
 * users for the event lists the server returns.
 *
 * One read batch per response, whatever the number of events: the viewer's
 * m.ignored_user_list, and per slice of at most RB_SLICE event IDs three
 * statements with literal IN lists — thread summaries (count, latest reply,
 * participation), edits (of the events and of the threads' latest
 * replies), references.  Per the spec (v1.7+):
 *   m.thread     {latest_event, count, current_user_participated}
 *   m.replace    the most recent (origin_server_ts, then event_id) valid
 *                replacement: same sender and type as the original, the
 *                original is not itself an edit, not a state event
 *   m.reference  {chunk: [{event_id}]}
 * Annotations are not bundled.  State and redacted events get nothing.
 */
#include "relations.h"
#include "../client/client.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RB_SLICE 200

typedef struct rb_ctx {
    json_t *byid;        /* event_id -> [events] (refs to the caller's objects) */
    json_t *lists;       /* arrays to filter for ignored senders (refs) */
    json_t *sync;        /* the /sync response (ref) or NULL */
    char *viewer;
    int st_ign;          /* -1: not read */
    int nslices;
    hs_rel_done_fn done;
    void *ud;
} rb_ctx_t;

static void rb_free(rb_ctx_t *c)
{
    json_decref(c->byid);
    json_decref(c->lists);
    json_decref(c->sync);
    free(c->viewer);
    free(c);
}

static void rb_finish(rb_ctx_t *c, int status)
{
    hs_rel_done_fn done = c->done;
    void *ud = c->ud;
    rb_free(c);
    done(status, ud);
}

/* Remembers an event that may get a bundle. */
static void rb_collect(rb_ctx_t *c, json_t *ev)
{
    const char *id = json_string_value(json_object_get(ev, "event_id"));
    if (!json_is_object(ev) || !id || json_object_get(ev, "state_key"))
        return;
    if (json_object_get(json_object_get(ev, "unsigned"), "redacted_because"))
        return;
    json_t *l = json_object_get(c->byid, id);
    if (!l) {
        l = json_array();
        json_object_set_new(c->byid, id, l);
    }
    json_array_append(l, ev);
}

static void rb_collect_list(rb_ctx_t *c, json_t *arr, bool filter)
{
    size_t i;
    json_t *ev;
    json_array_foreach(arr, i, ev)
        rb_collect(c, ev);
    if (filter && json_array_size(arr))
        json_array_append(c->lists, arr);
}

/* Sets unsigned.m.relations.<key> of `ev` (`val` stolen). */
static void rb_set(json_t *ev, const char *key, json_t *val)
{
    json_t *u = json_object_get(ev, "unsigned");
    if (!json_is_object(u)) {
        u = json_object();
        json_object_set_new(ev, "unsigned", u);
    }
    json_t *r = json_object_get(u, "m.relations");
    if (!json_is_object(r)) {
        r = json_object();
        json_object_set_new(u, "m.relations", r);
    }
    json_object_set_new(r, key, val);
}

/* Sets `key` on every copy of event `id` (`val` stolen). */
static void rb_set_all(rb_ctx_t *c, const char *id, const char *key, json_t *val)
{
    json_t *l = json_object_get(c->byid, id);
    size_t i;
    json_t *ev;
    json_array_foreach(l, i, ev)
        rb_set(ev, key, i + 1 < json_array_size(l) ? json_deep_copy(val) : json_incref(val));
    json_decref(val);
}

static bool rb_is_ignored(const json_t *ignored, const json_t *ev)
{
    const char *s = json_string_value(json_object_get(ev, "sender"));
    return s && json_object_get(ignored, s) && !json_object_get(ev, "state_key");
}

/* The best edit per original: {original_id: [stmt, row]}. */
static json_t *rb_pick_edits(const rb_ctx_t *c, const mx_sql_res_t *res, int first)
{
    json_t *best = json_object();
    for (int s = 0; s < c->nslices; s++) {
        int st = first + s * 3 + 1;
        for (int i = 0; i < mx_sql_nrows(res, st); i++) {
            const char *target = mx_sql_text(res, st, i, 0);
            int64_t ts = mx_sql_int(res, st, i, 7);
            const char *eid = mx_sql_text(res, st, i, 1);
            json_t *cur = json_object_get(best, target);
            if (cur) {
                int cs = (int)json_integer_value(json_array_get(cur, 0));
                int cr = (int)json_integer_value(json_array_get(cur, 1));
                int64_t cts = mx_sql_int(res, cs, cr, 7);
                const char *ceid = mx_sql_text(res, cs, cr, 1);
                if (ts < cts || (ts == cts && strcmp(eid, ceid) <= 0))
                    continue;
            }
            json_object_set_new(best, target, json_pack("[i, i]", st, i));
        }
    }
    return best;
}

static json_t *rb_edit_event(const mx_sql_res_t *res, const json_t *best, const char *target)
{
    json_t *pos = json_object_get(best, target);
    if (!pos)
        return NULL;
    return rm_row_event(res, (int)json_integer_value(json_array_get(pos, 0)),
                        (int)json_integer_value(json_array_get(pos, 1)), 1, NULL, RM_CE_ROOM_ID);
}

static void rb_apply(rb_ctx_t *c, const mx_sql_res_t *res, const json_t *ignored)
{
    int first = c->st_ign + 1;
    json_t *best = rb_pick_edits(c, res, first);
    const char *k;
    json_t *v;
    json_object_foreach(best, k, v) {
        if (!json_object_get(c->byid, k))
            continue;
        json_t *ev = rb_edit_event(res, best, k);
        if (ev)
            rb_set_all(c, k, "m.replace", ev);
    }
    for (int s = 0; s < c->nslices; s++) {
        int st = first + s * 3;
        for (int i = 0; i < mx_sql_nrows(res, st); i++) {
            const char *root = mx_sql_text(res, st, i, 0);
            json_t *roots = json_object_get(c->byid, root);
            json_t *latest = rm_row_event(res, st, i, 1, NULL, RM_CE_ROOM_ID);
            if (!latest || !roots)
                continue;
            json_t *edit = rb_edit_event(res, best, mx_sql_text(res, st, i, 1));
            if (edit)
                rb_set(latest, "m.replace", edit);
            const char *root_sender =
                json_string_value(json_object_get(json_array_get(roots, 0), "sender"));
            bool mine = mx_sql_int(res, st, i, 8) > 0 ||
                        (c->viewer && root_sender && strcmp(root_sender, c->viewer) == 0);
            rb_set_all(c, root, "m.thread",
                       json_pack("{s:o, s:I, s:b}", "latest_event", latest, "count",
                                 (json_int_t)mx_sql_int(res, st, i, 7),
                                 "current_user_participated", mine));
        }
        st = first + s * 3 + 2;
        json_t *refs = json_object();
        for (int i = 0; i < mx_sql_nrows(res, st); i++) {
            const char *sender = mx_sql_text(res, st, i, 2);
            if (sender && json_object_get(ignored, sender))
                continue;
            const char *target = mx_sql_text(res, st, i, 0);
            json_t *chunk = json_object_get(refs, target);
            if (!chunk) {
                chunk = json_array();
                json_object_set_new(refs, target, chunk);
            }
            json_array_append_new(chunk, json_pack("{s:s}", "event_id", mx_sql_text(res, st, i, 1)));
        }
        json_object_foreach(refs, k, v)
            rb_set_all(c, k, "m.reference", json_pack("{s:O}", "chunk", v));
        json_decref(refs);
    }
    json_decref(best);
}

static void rb_drop_ignored(rb_ctx_t *c, const json_t *ignored)
{
    if (!json_object_size(ignored))
        return;
    size_t i;
    json_t *arr;
    const char *rid;
    json_t *r, *tmp;
    /* /sync: a joined room whose timeline held only events of ignored
     * users (and no state) is left out, as sync leaves out rooms whose new
     * events were all filtered */
    json_t *join = json_object_get(json_object_get(c->sync, "rooms"), "join");
    json_object_foreach_safe(join, tmp, rid, r) {
        const json_t *tl = json_object_get(json_object_get(r, "timeline"), "events");
        const json_t *st = json_object_get(json_object_get(r, "state"), "events");
        bool all = json_array_size(tl) > 0 && json_array_size(st) == 0;
        for (size_t j = 0; all && j < json_array_size(tl); j++)
            all = rb_is_ignored(ignored, json_array_get(tl, j));
        if (all)
            json_object_del(join, rid);
    }
    json_array_foreach(c->lists, i, arr) {
        for (size_t j = json_array_size(arr); j-- > 0;)
            if (rb_is_ignored(ignored, json_array_get(arr, j)))
                json_array_remove(arr, j);
    }
    /* /sync: invites sent by ignored users are not shown. */
    json_t *inv = json_object_get(json_object_get(c->sync, "rooms"), "invite");
    json_object_foreach_safe(inv, tmp, rid, r) {
        json_t *evs = json_object_get(json_object_get(r, "invite_state"), "events");
        size_t j;
        json_t *ev;
        json_array_foreach(evs, j, ev) {
            const char *sk = json_string_value(json_object_get(ev, "state_key"));
            const char *ty = json_string_value(json_object_get(ev, "type"));
            const char *snd = json_string_value(json_object_get(ev, "sender"));
            if (ty && sk && snd && strcmp(ty, "m.room.member") == 0 && c->viewer &&
                strcmp(sk, c->viewer) == 0 && json_object_get(ignored, snd)) {
                json_object_del(inv, rid);
                break;
            }
        }
    }
}

static void rb_read(int status, mx_sql_res_t *res, void *ud)
{
    rb_ctx_t *c = ud;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_WARN, "relations: bundle read failed: %s",
               res ? mx_sql_errmsg(res) : "?");
        rb_finish(c, status);
        return;
    }
    json_t *ignored = c->st_ign >= 0 && mx_sql_nrows(res, c->st_ign) > 0
                          ? rel_ignored_parse(mx_sql_text(res, c->st_ign, 0, 0))
                          : json_object();
    rb_apply(c, res, ignored);
    rb_drop_ignored(c, ignored);
    json_decref(ignored);
    rb_finish(c, 0);
}

/* Plans and runs the batch for what was collected. */
static void rb_run(rb_ctx_t *c)
{
    size_t nids = json_object_size(c->byid);
    bool need_ign = c->viewer && (json_array_size(c->lists) ||
                                  json_object_size(json_object_get(json_object_get(c->sync, "rooms"),
                                                                   "invite")));
    if (!nids && !need_ign) {
        rb_finish(c, 0);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        rb_finish(c, -ENOMEM);
        return;
    }
    c->st_ign = -1;
    if (c->viewer) {
        hs_account_data_select(b, c->viewer, "", "m.ignored_user_list");
        c->st_ign = 0;
    }
    json_t *slice = json_array();
    void *iter = json_object_iter(c->byid);
    while (iter) {
        json_array_append_new(slice, json_string(json_object_iter_key(iter)));
        iter = json_object_iter_next(c->byid, iter);
        if (json_array_size(slice) < RB_SLICE && iter)
            continue;
        char *in = rel_sql_in_list(slice);
        json_array_clear(slice);
        char *q1 = in ? rel_fmt(
                     "SELECT t.thread_id, " RM_EV_COLS ","
                     " (SELECT COUNT(*) FROM event_relations c WHERE c.relates_to_id = t.thread_id"
                     "  AND c.rel_type = 'm.thread'),"
                     " (SELECT COUNT(*) FROM event_relations p WHERE p.relates_to_id = t.thread_id"
                     "  AND p.rel_type = 'm.thread' AND p.sender = ?)"
                     " FROM threads t JOIN events e ON e.event_id = t.latest_event_id"
                     " WHERE t.thread_id IN (%s)", in) : NULL;
        char *q2 = in ? rel_fmt(
                     "SELECT r.relates_to_id, " RM_EV_COLS ", e.origin_server_ts"
                     " FROM event_relations r JOIN events e ON e.event_id = r.event_id"
                     " JOIN events o ON o.event_id = r.relates_to_id"
                     " WHERE r.rel_type = 'm.replace' AND o.sender = r.sender AND o.type = r.type"
                     " AND o.state_key IS NULL AND NOT EXISTS (SELECT 1 FROM event_relations x"
                     "  WHERE x.event_id = o.event_id AND x.rel_type = 'm.replace')"
                     " AND (r.relates_to_id IN (%s) OR r.relates_to_id IN"
                     "  (SELECT t.latest_event_id FROM threads t WHERE t.thread_id IN (%s)))",
                     in, in) : NULL;
        char *q3 = in ? rel_fmt(
                     "SELECT r.relates_to_id, r.event_id, r.sender FROM event_relations r"
                     " WHERE r.rel_type = 'm.reference' AND r.relates_to_id IN (%s)"
                     " ORDER BY r.stream_ordering", in) : NULL;
        int rc = q1 && q2 && q3 ? 0 : -ENOMEM;
        if (rc == 0 && (mx_sql_add(b, q1, "s", c->viewer ? c->viewer : "") < 0 ||
                        mx_sql_add(b, q2, "") < 0 || mx_sql_add(b, q3, "") < 0))
            rc = MX_EDB;
        free(in);
        free(q1);
        free(q2);
        free(q3);
        if (rc < 0) {
            json_decref(slice);
            mx_sql_batch_free(b);
            rb_finish(c, rc);
            return;
        }
        c->nslices++;
    }
    json_decref(slice);
    if (mx_sql_run(b, rb_read, c) < 0) {
        mx_sql_batch_free(b);
        rb_finish(c, MX_EDB);
    }
}

static rb_ctx_t *rb_new(const char *viewer, hs_rel_done_fn done, void *ud)
{
    rb_ctx_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->byid = json_object();
    c->lists = json_array();
    c->viewer = viewer ? strdup(viewer) : NULL;
    c->done = done;
    c->ud = ud;
    c->st_ign = -1;
    return c;
}

void hs_relations_bundle(json_t *events, const char *viewer, unsigned flags, hs_rel_done_fn done,
                         void *ud)
{
    rb_ctx_t *c = rb_new(viewer, done, ud);
    if (!c) {
        done(-ENOMEM, ud);
        return;
    }
    bool filter = (flags & HS_REL_DROP_IGNORED) != 0;
    size_t i;
    json_t *it;
    json_array_foreach(events, i, it) {
        if (json_is_array(it))
            rb_collect_list(c, it, filter);
        else
            rb_collect(c, it);
    }
    if (filter && json_array_size(events))
        json_array_append(c->lists, events);
    rb_run(c);
}

void hs_relations_bundle_sync(json_t *resp, const char *viewer, hs_rel_done_fn done, void *ud)
{
    rb_ctx_t *c = rb_new(viewer, done, ud);
    if (!c) {
        done(-ENOMEM, ud);
        return;
    }
    c->sync = json_incref(resp);
    static const char *const sections[] = { "join", "leave" };
    json_t *rooms = json_object_get(resp, "rooms");
    for (size_t s = 0; s < 2; s++) {
        const char *rid;
        json_t *r;
        json_object_foreach(json_object_get(rooms, sections[s]), rid, r)
            rb_collect_list(c, json_object_get(json_object_get(r, "timeline"), "events"), true);
    }
    rb_run(c);
}
