/*
 * search.c: POST /_matrix/client/v3/search — server-side search of room
 * events (the room_events category) over the full-text index that
 * rel_index.c fills: SQLite FTS5 (bm25 rank) or PostgreSQL full-text search
 * (plainto_tsquery, ts_rank).
 *
 * Only rooms the user is joined to are searched, and results the room's
 * history visibility hides from the user (rm_vis_*, as /messages) are left
 * out.  Request: search_term,
 * keys (content.body, content.name, content.topic; default all), filter
 * (rooms, not_rooms, senders, not_senders, types, not_types, limit),
 * order_by rank | recent, event_context (before_limit, after_limit,
 * include_profile), include_state, groupings (room_id, sender).
 * Response: results [{rank, result, context}], count, highlights,
 * next_batch (?next_batch= on the next request: "r<offset>" for rank
 * order, "k<stream position>" for recent order), state, groups.
 *
 * Steps: the page and the count in one read batch; bundled aggregations
 * (and ignored senders dropped) for the results; the event contexts,
 * profiles and room state in one more read batch when asked for, where the
 * context events pass the same history-visibility check as /context
 * (rm_vis_visible: hidden events left out, erased senders redacted) and
 * then get their bundles (ignored senders dropped); profile_info names only
 * the senders of the result and of the context events shown.
 */
#include "relations.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SE_MAX_LIMIT 100
#define SE_MAX_CONTEXT 20
/* A context event row: the event columns, then its state group (col 6). */
#define SE_EV_G "SELECT " RM_EV_COLS ", g.group_id FROM events e" \
                " LEFT JOIN event_to_state_group g ON g.event_id = e.event_id"

typedef struct se_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    bool recent, include_state, include_profile, want_context;
    bool by_room, by_sender;
    int limit, before, after;
    int64_t offset, cursor;   /* rank: offset; recent: stream position bound (0: none) */
    json_t *tokens;           /* search words (lowercase) */
    json_t *events;           /* the page's events (client format) */
    json_t *ranks;            /* event_id -> rank */
    json_t *pos;              /* event_id -> [room_id, stream_ordering] */
    json_t *results;          /* with contexts: the reply's results */
    json_t *wrap;             /* the context event lists given to the bundler */
    json_t *state;            /* include_state: room_id -> [state events] */
    int64_t count;
    int st_state;             /* statement of the room state in the extra batch */
    char *next;               /* pool */
} se_ctx_t;

static void se_free(void *p)
{
    se_ctx_t *c = p;
    json_decref(c->tokens);
    json_decref(c->events);
    json_decref(c->ranks);
    json_decref(c->pos);
    json_decref(c->results);
    json_decref(c->wrap);
    json_decref(c->state);
}

/* " AND <col> [NOT] IN (...)" for a filter list, or "" (malloc'd). */
static char *se_in(const char *col, const json_t *list, bool neg)
{
    char *in = json_is_array(list) ? rel_sql_in_list(list) : NULL;
    if (!in) {
        /* An empty positive list matches nothing. */
        if (json_is_array(list) && !neg)
            return rel_fmt(" AND 1 = 0");
        return rel_fmt("%s", "");
    }
    char *s = rel_fmt(" AND %s %sIN (%s)", col, neg ? "NOT " : "", in);
    free(in);
    return s;
}

/* -------------------------------------------------------------- replies --- */

static json_t *se_groups(se_ctx_t *c, json_t *results)
{
    json_t *groups = json_object();
    static const char *const keys[] = { "room_id", "sender" };
    bool on[] = { c->by_room, c->by_sender };
    for (size_t g = 0; g < 2; g++) {
        if (!on[g])
            continue;
        json_t *grp = json_object();
        size_t i;
        json_t *r;
        json_array_foreach(results, i, r) {
            json_t *ev = json_object_get(r, "result");
            const char *k = json_string_value(json_object_get(ev, keys[g]));
            if (!k)
                continue;
            json_t *e = json_object_get(grp, k);
            if (!e) {
                e = json_pack("{s:[], s:I}", "results", "order",
                              (json_int_t)json_object_size(grp) + 1);
                if (c->next)
                    json_object_set_new(e, "next_batch", json_string(c->next));
                json_object_set_new(grp, k, e);
            }
            json_array_append(json_object_get(e, "results"), json_object_get(ev, "event_id"));
        }
        json_object_set_new(groups, keys[g], grp);
    }
    return groups;
}

/* The context of result `idx` (event `ev` at stream position `so`):
 * statements 3idx (before, newest first), 3idx+1 (after), 3idx+2 (the
 * member events of the window's senders).  Events the viewer may not see
 * are left out and erased senders' redacted, as /context does; the window
 * is not refilled.  profile_info holds every candidate sender here and is
 * cut to the shown events' senders once ignored senders are dropped. */
static json_t *se_context(se_ctx_t *c, const mx_sql_res_t *res, int idx, int64_t so,
                          const rm_vis_t *vis)
{
    mx_pool_t *pool = mx_req_pool(c->req);
    json_t *lists[2] = { json_array(), json_array() };
    int64_t bounds[2] = { so, so };   /* start, end */
    for (int k = 0; k < 2; k++) {
        int st = idx * 3 + k;
        for (int i = 0; i < mx_sql_nrows(res, st); i++) {
            bounds[k] = mx_sql_int(res, st, i, 5);
            json_t *e = rm_row_event(res, st, i, 0, NULL, RM_CE_ROOM_ID);
            int64_t g = mx_sql_is_null(res, st, i, 6) ? 0 : mx_sql_int(res, st, i, 6);
            /* joined now (only joined rooms are searched): not peeking */
            if (e && vis && rm_vis_visible(vis, g, e, c->who->user_id, false))
                json_array_append_new(lists[k], e);
            else
                json_decref(e);
        }
    }
    json_t *ctx = json_pack("{s:o, s:o, s:s, s:s}", "events_before", lists[0], "events_after",
                            lists[1], "start", rm_make_token(pool, bounds[0] - 1), "end",
                            rm_make_token(pool, bounds[1]));
    if (!c->include_profile)
        return ctx;
    json_t *prof = json_object();
    int st = idx * 3 + 2;
    for (int i = 0; i < mx_sql_nrows(res, st); i++) {
        const char *js = mx_sql_text(res, st, i, 1);
        json_t *m = js ? json_loads(js, 0, NULL) : NULL;
        json_t *content = json_object_get(m, "content");
        json_t *dn = json_object_get(content, "displayname");
        json_t *av = json_object_get(content, "avatar_url");
        json_object_set_new(prof, mx_sql_text(res, st, i, 0),
                            json_pack("{s:O, s:O}", "displayname",
                                      json_is_string(dn) ? dn : json_null(), "avatar_url",
                                      json_is_string(av) ? av : json_null()));
        json_decref(m);
    }
    json_object_set_new(ctx, "profile_info", prof);
    return ctx;
}

/* Keeps in a context's profile_info only the senders of its shown events
 * and of the result `ev`. */
static void se_profile_cut(json_t *ctx, const json_t *ev)
{
    json_t *prof = json_object_get(ctx, "profile_info");
    if (!prof)
        return;
    json_t *keep = json_object();
    const char *sender = json_string_value(json_object_get(ev, "sender"));
    json_object_set_new(keep, sender ? sender : "", json_true());
    static const char *const keys[] = { "events_before", "events_after" };
    for (int k = 0; k < 2; k++) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(ctx, keys[k]), i, e) {
            const char *s = json_string_value(json_object_get(e, "sender"));
            if (s)
                json_object_set_new(keep, s, json_true());
        }
    }
    const char *uid;
    json_t *v, *tmp;
    json_object_foreach_safe(prof, tmp, uid, v)
        if (!json_object_get(keep, uid))
            json_object_del(prof, uid);
    json_decref(keep);
}

/* The results array ([{rank, result[, context]}]) when no context was read. */
static json_t *se_plain_results(se_ctx_t *c)
{
    json_t *results = json_array();
    size_t i;
    json_t *ev;
    json_array_foreach(c->events, i, ev) {
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        json_array_append_new(results, json_pack("{s:O, s:O}", "rank",
                                                 json_object_get(c->ranks, id), "result", ev));
    }
    return results;
}

static void se_reply(se_ctx_t *c)
{
    json_t *results = c->results ? json_incref(c->results) : se_plain_results(c);
    json_t *re = json_object();
    json_object_set_new(re, "count", json_integer(c->count));
    json_object_set(re, "highlights", c->tokens);
    if (c->next)
        json_object_set_new(re, "next_batch", json_string(c->next));
    if (c->by_room || c->by_sender)
        json_object_set_new(re, "groups", se_groups(c, results));
    if (c->include_state)
        json_object_set_new(re, "state", c->state ? json_incref(c->state) : json_object());
    json_object_set_new(re, "results", results);
    mx_req_reply_json(c->req, 200, json_pack("{s:{s:o}}", "search_categories", "room_events", re));
}

/* After the context events' bundles (ignored senders dropped). */
static void se_context_bundled(int status, void *ud)
{
    se_ctx_t *c = ud;
    (void)status;
    size_t i;
    json_t *r;
    json_array_foreach(c->results, i, r)
        se_profile_cut(json_object_get(r, "context"), json_object_get(r, "result"));
    se_reply(c);
}

/* The room state of the results' rooms (statement `st`), by room. */
static json_t *se_state(const mx_sql_res_t *res, int st)
{
    json_t *state = json_object();
    for (int k = 0; k < mx_sql_nrows(res, st); k++) {
        const char *rid = mx_sql_text(res, st, k, 0);
        json_t *l = json_object_get(state, rid);
        if (!l) {
            l = json_array();
            json_object_set_new(state, rid, l);
        }
        json_t *sev = rm_row_event(res, st, k, 1, NULL, RM_CE_ROOM_ID);
        if (sev)
            json_array_append_new(l, sev);
    }
    return state;
}

static void se_extra_read(int status, mx_sql_res_t *res, void *ud)
{
    se_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "search context");
        return;
    }
    if (c->include_state)
        c->state = se_state(res, c->st_state);
    if (!c->want_context) {
        se_reply(c);
        return;
    }
    rm_vis_t *vis = rm_vis_load(res, c->st_state + 1);
    c->results = se_plain_results(c);
    c->wrap = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(c->results, i, r) {
        json_t *ev = json_object_get(r, "result");
        json_t *p = json_object_get(c->pos, json_string_value(json_object_get(ev, "event_id")));
        json_t *ctx = se_context(c, res, (int)i, json_integer_value(json_array_get(p, 1)), vis);
        json_object_set_new(r, "context", ctx);
        json_array_append(c->wrap, json_object_get(ctx, "events_before"));
        json_array_append(c->wrap, json_object_get(ctx, "events_after"));
    }
    rm_vis_free(vis);
    hs_relations_bundle(c->wrap, c->who->user_id, HS_REL_DROP_IGNORED, se_context_bundled, c);
}

/* The window of `n` events of room `rid` before (dir '<') or after ('>')
 * stream position `so`, as SQL with the values inlined (for the
 * visibility statement's seed), or NULL. */
static char *se_window_sql(const char *rid, int64_t so, char dir, int n)
{
    json_t *one = json_pack("[s]", rid);
    char *lit = rel_sql_in_list(one);
    json_decref(one);
    char *s = lit ? rel_fmt("SELECT e.event_id FROM events e WHERE e.room_id = %s AND"
                            " e.stream_ordering %c %lld ORDER BY e.stream_ordering %s LIMIT %d",
                            lit, dir, (long long)so, dir == '<' ? "DESC" : "ASC", n)
                  : NULL;
    free(lit);
    return s;
}

/* Appends " UNION SELECT w.event_id FROM (<window>) w" for both windows of
 * one result to *seed (malloc'd; freed and NULL on ENOMEM). */
static void se_seed_add(char **seed, const char *rid, int64_t so, int before, int after)
{
    char *bw = se_window_sql(rid, so, '<', before), *aw = se_window_sql(rid, so, '>', after);
    char *s = *seed && bw && aw
                  ? rel_fmt("%s UNION SELECT w.event_id FROM (%s) w UNION SELECT w.event_id"
                            " FROM (%s) w", *seed, bw, aw)
                  : NULL;
    free(bw);
    free(aw);
    free(*seed);
    *seed = s;
}

/* After the bundles: contexts / state, or the reply at once. */
static void se_bundled(int status, void *ud)
{
    se_ctx_t *c = ud;
    (void)status;
    if (!c->want_context && !c->include_state) {
        se_reply(c);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    json_t *rooms = json_array();
    json_t *seen = json_object();
    /* the visibility seed: every context window (an empty first part) */
    char *seed = rel_fmt("SELECT e.event_id FROM events e WHERE 1 = 0");
    size_t i;
    json_t *ev;
    json_array_foreach(c->events, i, ev) {
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        json_t *p = json_object_get(c->pos, id);
        const char *rid = json_string_value(json_array_get(p, 0));
        int64_t so = json_integer_value(json_array_get(p, 1));
        if (rid && !json_object_get(seen, rid)) {
            json_object_set_new(seen, rid, json_true());
            json_array_append_new(rooms, json_string(rid));
        }
        if (!c->want_context)
            continue;
        mx_sql_add(b, SE_EV_G " WHERE e.room_id = ? AND e.stream_ordering < ?"
                      " ORDER BY e.stream_ordering DESC LIMIT ?",
                   "sii", rid, so, (int64_t)c->before);
        mx_sql_add(b, SE_EV_G " WHERE e.room_id = ? AND e.stream_ordering > ?"
                      " ORDER BY e.stream_ordering ASC LIMIT ?",
                   "sii", rid, so, (int64_t)c->after);
        mx_sql_add(b, "SELECT c.state_key, e.json FROM current_state c"
                      " JOIN events e ON e.event_id = c.event_id"
                      " WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.state_key IN ("
                      "  SELECT bb.sender FROM (SELECT sender FROM events WHERE room_id = ?"
                      "   AND stream_ordering < ? ORDER BY stream_ordering DESC LIMIT ?) bb"
                      "  UNION SELECT aa.sender FROM (SELECT sender FROM events WHERE room_id = ?"
                      "   AND stream_ordering > ? ORDER BY stream_ordering ASC LIMIT ?) aa"
                      "  UNION SELECT CAST(? AS TEXT))",
                   "ssiisiis", rid, rid, so, (int64_t)(c->include_profile ? c->before : 0), rid,
                   so, (int64_t)(c->include_profile ? c->after : 0),
                   json_string_value(json_object_get(ev, "sender")));
        se_seed_add(&seed, rid, so, c->before, c->after);
    }
    json_decref(seen);
    c->st_state = c->want_context ? (int)json_array_size(c->events) * 3 : 0;
    char *in = rel_sql_in_list(rooms);
    json_decref(rooms);
    char *sql = rel_fmt("SELECT c.room_id, " RM_EV_COLS " FROM current_state c"
                        " JOIN events e ON e.event_id = c.event_id WHERE %s%s%s",
                        in ? "c.room_id IN (" : "1 = 0", in ? in : "", in ? ")" : "");
    free(in);
    char *vsql = seed ? rm_vis_sql(mx_req_pool(c->req), seed) : NULL;
    free(seed);
    if (!sql || (c->want_context && !vsql)) {
        free(sql);
        mx_sql_batch_free(b);
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, sql, "");
    free(sql);
    if (c->want_context)
        mx_sql_add(b, vsql, "s", c->who->user_id);
    if (mx_sql_run(b, se_extra_read, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "search context");
    }
}

static void se_page_read(int status, mx_sql_res_t *res, void *ud)
{
    se_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "search");
        return;
    }
    int n = mx_sql_nrows(res, 0);
    bool more = n > c->limit;
    if (more)
        n = c->limit;
    c->events = json_array();
    c->ranks = json_object();
    c->pos = json_object();
    int64_t last = 0;
    rm_vis_t *vis = rm_vis_load(res, 2);
    for (int i = 0; i < n; i++) {
        json_t *ev = rm_row_event(res, 0, i, 0, NULL, RM_CE_ROOM_ID);
        last = mx_sql_int(res, 0, i, 5);
        int64_t g = mx_sql_is_null(res, 0, i, 8) ? 0 : mx_sql_int(res, 0, i, 8);
        /* joined now: "peeking" is false */
        if (!ev || !vis || !rm_vis_visible(vis, g, ev, c->who->user_id, false)) {
            json_decref(ev);
            continue;
        }
        const char *id = json_string_value(json_object_get(ev, "event_id"));
        const char *score = mx_sql_text(res, 0, i, 6);
        json_object_set_new(c->ranks, id, json_real(score ? strtod(score, NULL) : 0.0));
        json_object_set_new(c->pos, id, json_pack("[s, I]", mx_sql_text(res, 0, i, 7),
                                                  (json_int_t)last));
        json_array_append_new(c->events, ev);
    }
    rm_vis_free(vis);
    c->count = mx_sql_int(res, 1, 0, 0);
    if (more)
        c->next = c->recent ? mx_psprintf(mx_req_pool(c->req), "k%lld", (long long)last)
                            : mx_psprintf(mx_req_pool(c->req), "r%lld",
                                          (long long)(c->offset + c->limit));
    hs_relations_bundle(c->events, c->who->user_id, HS_REL_DROP_IGNORED, se_bundled, c);
}

/* ---------------------------------------------------------------- query --- */

static int se_run(se_ctx_t *c, const char *term, const json_t *keys, const json_t *filter)
{
    bool pg = mx_db_is_postgres(hs.db) != 0;
    char *kin = rel_sql_in_list(keys);
    char *f1 = se_in("e.room_id", json_object_get(filter, "rooms"), false);
    char *f2 = se_in("e.room_id", json_object_get(filter, "not_rooms"), true);
    char *f3 = se_in("e.sender", json_object_get(filter, "senders"), false);
    char *f4 = se_in("e.sender", json_object_get(filter, "not_senders"), true);
    char *f5 = se_in("e.type", json_object_get(filter, "types"), false);
    char *f6 = se_in("e.type", json_object_get(filter, "not_types"), true);
    char *where = NULL, *page = NULL, *count = NULL, *match = NULL, *seed = NULL;
    int rc = -ENOMEM;
    if (!kin || !f1 || !f2 || !f3 || !f4 || !f5 || !f6)
        goto out;
    where = rel_fmt(" AND %s.key IN (%s) AND e.room_id IN (SELECT m.room_id FROM room_memberships m"
                    " WHERE m.user_id = ? AND m.membership = 'join')%s%s%s%s%s%s",
                    pg ? "s" : "event_search", kin, f1, f2, f3, f4, f5, f6);
    if (!where)
        goto out;
    const char *from = pg ? " FROM event_search s JOIN events e ON e.event_id = s.event_id"
                            " LEFT JOIN event_to_state_group g ON g.event_id = e.event_id,"
                            " plainto_tsquery('english', ?) q WHERE s.vector @@ q"
                          : " FROM event_search JOIN events e ON e.stream_ordering = event_search.rowid"
                            " LEFT JOIN event_to_state_group g ON g.event_id = e.event_id"
                            " WHERE event_search MATCH ?";
    const char *score = pg ? "ts_rank(s.vector, q)" : "-bm25(event_search)";
    char cur[64] = "";
    if (c->recent && c->cursor > 0)
        snprintf(cur, sizeof(cur), " AND e.stream_ordering < %lld", (long long)c->cursor);
    /* the page (its events' state groups last) and, as the visibility
     * statement's seed, the page's event IDs */
    const char *order = c->recent ? "e.stream_ordering DESC" : "score DESC, e.stream_ordering DESC";
    long long off = c->recent ? 0LL : (long long)c->offset;
    page = rel_fmt("SELECT " RM_EV_COLS ", %s AS score, e.room_id, g.group_id%s%s%s ORDER BY %s"
                   " LIMIT %d OFFSET %lld", score, from, where, cur, order, c->limit + 1, off);
    seed = rel_fmt("SELECT x.event_id FROM (SELECT e.event_id, %s AS score, e.stream_ordering%s%s%s"
                   " ORDER BY %s LIMIT %d OFFSET %lld) x", score, from, where, cur, order,
                   c->limit + 1, off);
    count = rel_fmt("SELECT COUNT(*)%s%s", from, where);
    match = pg ? strdup(term) : rel_fts5_query(c->tokens);
    if (!page || !count || !match || !seed)
        goto out;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        goto out;
    mx_sql_add(b, page, "ss", match, c->who->user_id);
    mx_sql_add(b, count, "ss", match, c->who->user_id);
    mx_sql_add(b, rm_vis_sql(mx_req_pool(c->req), seed), "sss", c->who->user_id, match,
               c->who->user_id);
    rc = mx_sql_run(b, se_page_read, c);
    if (rc < 0)
        mx_sql_batch_free(b);
out:
    free(kin);
    free(f1);
    free(f2);
    free(f3);
    free(f4);
    free(f5);
    free(f6);
    free(where);
    free(page);
    free(count);
    free(match);
    free(seed);
    return rc;
}

static void se_empty(mx_req_t *req, json_t *tokens)
{
    mx_req_reply_json(req, 200, json_pack("{s:{s:{s:[], s:i, s:O}}}", "search_categories",
                                          "room_events", "results", "count", 0, "highlights",
                                          tokens));
}

static bool se_string_list(const json_t *v)
{
    if (!v)
        return true;
    if (!json_is_array(v))
        return false;
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
        if (!json_is_string(x))
            return false;
    return true;
}

static void se_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    json_t *cats = json_object_get(body, "search_categories");
    if (!json_is_object(cats)) {
        mx_req_error(req, 400, "M_BAD_JSON", "Invalid search query: search_categories missing");
        return;
    }
    json_t *re = json_object_get(cats, "room_events");
    if (!re) {
        mx_req_reply_json(req, 200, json_pack("{s:{}}", "search_categories"));
        return;
    }
    const char *term = json_string_value(json_object_get(re, "search_term"));
    if (!json_is_object(re) || !term) {
        mx_req_error(req, 400, "M_BAD_JSON", "Invalid search query: search_term missing");
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    se_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    memset(c, 0, sizeof(*c));
    mx_pool_on_free(pool, se_free, c);
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->tokens = rel_search_tokens(term);

    json_t *keys = json_object_get(re, "keys");
    json_t *dkeys = NULL;
    if (!keys)
        keys = dkeys = json_pack("[s, s, s]", "content.body", "content.name", "content.topic");
    bool ok = se_string_list(keys) && json_array_size(keys) > 0;
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k) {
        const char *s = json_string_value(k);
        if (!s || (strcmp(s, "content.body") && strcmp(s, "content.name") &&
                   strcmp(s, "content.topic")))
            ok = false;
    }
    const char *order = json_string_value(json_object_get(re, "order_by"));
    if (json_object_get(re, "order_by") && (!order || (strcmp(order, "rank") &&
                                                      strcmp(order, "recent")))) {
        json_decref(dkeys);
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid order_by");
        return;
    }
    if (!ok) {
        json_decref(dkeys);
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid keys");
        return;
    }
    c->recent = order && strcmp(order, "recent") == 0;
    json_t *filter = json_object_get(re, "filter");
    if (filter && !json_is_object(filter)) {
        json_decref(dkeys);
        mx_req_error(req, 400, "M_BAD_JSON", "filter must be an object");
        return;
    }
    static const char *const lists[] = { "rooms", "not_rooms", "senders", "not_senders",
                                         "types", "not_types" };
    for (size_t j = 0; j < 6; j++)
        if (!se_string_list(json_object_get(filter, lists[j]))) {
            json_decref(dkeys);
            mx_req_error(req, 400, "M_BAD_JSON", "filter.%s must be a list of strings", lists[j]);
            return;
        }
    json_t *lim = json_object_get(filter, "limit");
    c->limit = json_is_integer(lim) && json_integer_value(lim) > 0
                   ? (json_integer_value(lim) > SE_MAX_LIMIT ? SE_MAX_LIMIT
                                                             : (int)json_integer_value(lim))
                   : 10;
    json_t *ec = json_object_get(re, "event_context");
    if (json_is_object(ec)) {
        c->want_context = true;
        json_t *bl = json_object_get(ec, "before_limit"), *al = json_object_get(ec, "after_limit");
        c->before = json_is_integer(bl) ? (int)json_integer_value(bl) : 5;
        c->after = json_is_integer(al) ? (int)json_integer_value(al) : 5;
        if (c->before < 0 || c->after < 0) {
            json_decref(dkeys);
            mx_req_error(req, 400, "M_INVALID_PARAM", "context limits must be >= 0");
            return;
        }
        if (c->before > SE_MAX_CONTEXT)
            c->before = SE_MAX_CONTEXT;
        if (c->after > SE_MAX_CONTEXT)
            c->after = SE_MAX_CONTEXT;
        c->include_profile = json_is_true(json_object_get(ec, "include_profile"));
    }
    c->include_state = json_is_true(json_object_get(re, "include_state"));
    json_t *gb = json_object_get(json_object_get(re, "groupings"), "group_by");
    json_t *g;
    json_array_foreach(gb, i, g) {
        const char *key = json_string_value(json_object_get(g, "key"));
        if (key && strcmp(key, "room_id") == 0)
            c->by_room = true;
        else if (key && strcmp(key, "sender") == 0)
            c->by_sender = true;
        else {
            json_decref(dkeys);
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid group by key");
            return;
        }
    }
    const char *nb = mx_req_query(req, "next_batch");
    if (nb && *nb) {
        char *end = NULL;
        long long v = strtoll(nb + 1, &end, 10);
        if ((nb[0] != 'r' && nb[0] != 'k') || !end || *end || v < 0) {
            json_decref(dkeys);
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid next_batch");
            return;
        }
        if (nb[0] == 'r')
            c->offset = v;
        else
            c->cursor = v;
    }
    if (json_array_size(c->tokens) == 0) {
        json_decref(dkeys);
        se_empty(req, c->tokens);
        return;
    }
    int rc = se_run(c, term, keys, filter);
    json_decref(dkeys);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "search");
}

static int se_handler(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, se_authed, NULL);
}

int rel_search_start(void)
{
    return rel_route_v3("POST", "/search", se_handler, MX_ROUTE_JSON_BODY);
}
