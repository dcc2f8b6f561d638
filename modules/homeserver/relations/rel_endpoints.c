/*
 * rel_endpoints.c: GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}
 * [/{relType}[/{eventType}]] and GET /_matrix/client/v1/rooms/{roomId}/threads.
 *
 * Both read the relations index (event_relations, threads) with one read
 * batch and serve the events with their bundled aggregations; events from
 * ignored users are left out, and so are events the room's history
 * visibility hides from the user (rm_vis_*, as /messages).  Access follows
 * Synapse: members and users who left (up to their leave) or anyone for
 * world_readable history; an unknown room or a non-member gets 403, an
 * unknown or invisible parent event 404.  Pagination tokens are the
 * /messages ones ("t<P>", rooms.h), over the relation's stream position
 * (/relations) or the thread's latest reply position (/threads).
 */
#include "relations.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RE_MAX_LIMIT 1000
#define RE_MAX_DEPTH 3

typedef struct re_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *room_id, *event_id, *rel_type, *ev_type;
    const char *from_tok;
    int64_t from, to;
    bool has_to, recurse, participated, threads;
    bool peeking;         /* not joined now (Synapse's is_peeking) */
    char dir;
    int limit;
    int64_t world;        /* REL_ALL when the history is world_readable, else -2 */
    json_t *chunk;        /* owned until replied */
    json_t *wrap;
    char *next;           /* pool */
} re_ctx_t;

static void re_free(void *p)
{
    re_ctx_t *c = p;
    json_decref(c->chunk);
    json_decref(c->wrap);
}

static re_ctx_t *re_new(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    re_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    mx_pool_on_free(pool, re_free, c);
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->room_id = mx_req_param(req, "roomId");
    c->world = -2;
    if (!rm_room_id_ok(c->room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID");
        return NULL;
    }
    return c;
}

static const char re_bad_token[] = "";

/* The pagination token of query parameter `name` into *pos: its text, NULL
 * when absent (*pos unchanged), or re_bad_token (replied 400). */
static const char *re_token(mx_req_t *req, const char *name, int64_t *pos)
{
    const char *v = mx_req_query(req, name);
    if (!v || !*v)
        return NULL;
    if (rm_parse_token(v, pos) < 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad %s token", name);
        return re_bad_token;
    }
    return v;
}

/* limit (default `def`), dir (default b), from/to tokens.  false: replied. */
static bool re_paging(re_ctx_t *c, int def, bool with_dir)
{
    mx_req_t *req = c->req;
    const char *l = mx_req_query(req, "limit");
    c->limit = def;
    if (l && *l) {
        char *end;
        long v = strtol(l, &end, 10);
        if (*end || v < 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "limit must be a non-negative integer");
            return false;
        }
        c->limit = v > RE_MAX_LIMIT ? RE_MAX_LIMIT : (int)v;
    }
    const char *dir = with_dir ? mx_req_query(req, "dir") : NULL;
    c->dir = 'b';
    if (dir && *dir) {
        if (strcmp(dir, "b") && strcmp(dir, "f")) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "dir must be b or f");
            return false;
        }
        c->dir = dir[0];
    }
    c->from = c->dir == 'b' ? REL_ALL : 0;
    c->from_tok = re_token(req, "from", &c->from);
    if (c->from_tok == re_bad_token)
        return false;
    const char *to = with_dir ? re_token(req, "to", &c->to) : NULL;
    c->has_to = to != NULL;
    return to != re_bad_token;
}

/* Room access: false (and replied) when the user may not read it. */
static bool re_room_ok(re_ctx_t *c, rm_room_t *room, int status)
{
    if (!room) {
        if (status == -ENOENT)
            mx_req_error(c->req, 403, "M_FORBIDDEN", "User %s not in room %s",
                         c->who->user_id, c->room_id);
        else
            hs_reply_storage_error(c->req, status, "loading room");
        return false;
    }
    const json_t *hv = rm_state_get(room, "m.room.history_visibility", "");
    const char *v = hv ? json_string_value(json_object_get(json_object_get(hv, "content"),
                                                           "history_visibility"))
                       : NULL;
    if (v && strcmp(v, "world_readable") == 0)
        c->world = REL_ALL;
    const char *m = rm_membership(room, c->who->user_id);
    c->peeking = !m || strcmp(m, "join") != 0;
    bool member = m && (strcmp(m, "join") == 0 || strcmp(m, "leave") == 0 ||
                        strcmp(m, "ban") == 0);
    if (!member && c->world != REL_ALL) {
        mx_req_error(c->req, 403, "M_FORBIDDEN", "User %s not in room %s", c->who->user_id,
                     c->room_id);
        return false;
    }
    return true;
}

/* ----------------------------------------------------- shared page ---- */

static void re_reply(int status, void *ud)
{
    re_ctx_t *c = ud;
    (void)status; /* bundles are best effort */
    json_t *out = json_object();
    json_object_set_new(out, "chunk", c->chunk);
    c->chunk = NULL;
    if (c->next)
        json_object_set_new(out, "next_batch", json_string(c->next));
    if (c->from_tok && !c->threads)
        json_object_set_new(out, "prev_batch", json_string(c->from_tok));
    if (c->recurse)
        json_object_set_new(out, "recursion_depth", json_integer(RE_MAX_DEPTH));
    mx_req_reply_json(c->req, 200, out);
}

/* Whether row `i` of statement `st` (RM_EV_COLS, then its state group in
 * column `gcol`) is visible; `ev` may come back redacted (erased sender). */
static bool re_visible(const re_ctx_t *c, const rm_vis_t *vis, const mx_sql_res_t *res, int st,
                       int i, int gcol, json_t *ev)
{
    if (!vis)
        return false;
    int64_t g = mx_sql_is_null(res, st, i, gcol) ? 0 : mx_sql_int(res, st, i, gcol);
    return rm_vis_visible(vis, g, ev, c->who->user_id, c->peeking);
}

/* Serves the page of statement `st` (RM_EV_COLS, the paging key in
 * `key_col`, the state group after it) filtered by the visibility rows of
 * statement `vst`, with bundles. */
static void re_page(re_ctx_t *c, const mx_sql_res_t *res, int st, int vst, int key_col)
{
    int n = mx_sql_nrows(res, st);
    bool more = n > c->limit;
    if (more)
        n = c->limit;
    rm_vis_t *vis = rm_vis_load(res, vst);
    c->chunk = json_array();
    int64_t last = 0;
    for (int i = 0; i < n; i++) {
        json_t *ev = rm_row_event(res, st, i, 0, NULL, RM_CE_ROOM_ID);
        last = mx_sql_int(res, st, i, key_col);
        if (ev && re_visible(c, vis, res, st, i, key_col + 1, ev))
            json_array_append_new(c->chunk, ev);
        else
            json_decref(ev);
    }
    rm_vis_free(vis);
    if (more)
        c->next = rm_make_token(mx_req_pool(c->req), c->dir == 'f' ? last : last - 1);
    hs_relations_bundle(c->chunk, c->who->user_id, HS_REL_DROP_IGNORED, re_reply, c);
}

/* Adds to batch `b` the statement `fmt` (one %s for the selected columns)
 * selecting `cols`, then its visibility statement (rm_vis_sql seeded with
 * the same statement selecting the event IDs), with the same parameters
 * after the user ID.  `types` must be a string literal; `pool` and `me`
 * (the user ID) are the caller's locals. */
#define RE_ADD_WITH_VIS(b, fmt, cols, types, ...)                                       \
    do {                                                                              \
        mx_sql_add(b, mx_psprintf(pool, fmt, cols), types, __VA_ARGS__);              \
        mx_sql_add(b, rm_vis_sql(pool, mx_psprintf(pool, fmt, "e.event_id")), "s" types, \
                   me, __VA_ARGS__);                                                  \
    } while (0)

static const char *re_what(const re_ctx_t *c)
{
    return c->threads ? "reading threads" : "reading relations";
}

/* The one read callback: /threads serves statement 0 (its visibility in
 * 1); /relations first checks the parent (0, 1), then serves 2 (3). */
static void re_read(int status, mx_sql_res_t *res, void *ud)
{
    re_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, re_what(c));
        return;
    }
    if (c->threads) {
        re_page(c, res, 0, 1, 6);
        return;
    }
    json_t *parent = mx_sql_nrows(res, 0) ? rm_row_event(res, 0, 0, 0, NULL, 0) : NULL;
    rm_vis_t *pvis = parent ? rm_vis_load(res, 1) : NULL;
    bool seen = parent && re_visible(c, pvis, res, 0, 0, 6, parent);
    rm_vis_free(pvis);
    json_decref(parent);
    if (!seen) {
        mx_req_error(c->req, 404, "M_NOT_FOUND", "Unknown parent event.");
        return;
    }
    re_page(c, res, 2, 3, 5);
}

static void re_rel_add(re_ctx_t *c, mx_sql_batch_t *b);
static void re_threads_add(re_ctx_t *c, mx_sql_batch_t *b);

/* The one room callback: the access check, then the read batch of the
 * request's statements. */
static void re_room(rm_room_t *room, int status, void *ud)
{
    re_ctx_t *c = ud;
    if (!re_room_ok(c, room, status))
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    if (c->threads)
        re_threads_add(c, b);
    else
        re_rel_add(c, b);
    if (mx_sql_run(b, re_read, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, re_what(c));
    }
}

/* ------------------------------------------------------------ /relations --- */

/* The relations of the parent (to RE_MAX_DEPTH levels with recurse); the
 * parent and room parameters come first in both forms; one %s for the
 * selected columns. */
#define RE_REL_JOIN                                                                      \
    " FROM event_relations r JOIN events e ON e.event_id = r.event_id"                   \
    " LEFT JOIN event_to_state_group g ON g.event_id = e.event_id"
#define RE_REL_FROM RE_REL_JOIN " WHERE r.relates_to_id = ? AND r.room_id = ?"
#define RE_REL_WITH_RECURSE                                                              \
    "WITH RECURSIVE rel(event_id, depth) AS ("                                           \
    " SELECT event_id, 1 FROM event_relations WHERE relates_to_id = ? AND room_id = ?"   \
    " UNION ALL SELECT x.event_id, rel.depth + 1 FROM event_relations x"                 \
    " JOIN rel ON x.relates_to_id = rel.event_id WHERE rel.depth < 3) "
#define RE_REL_FROM_RECURSE RE_REL_JOIN " WHERE r.event_id IN (SELECT event_id FROM rel)"
#define RE_REL_WHERE                                                                     \
    " AND (CAST(? AS TEXT) = '' OR r.rel_type = ?) AND (CAST(? AS TEXT) = '' OR r.type = ?)" \
    " AND r.stream_ordering > ? AND r.stream_ordering <= ?"                               \
    " AND (e.stream_ordering <= " REL_CAP_SQL " OR ? = ?)"
#define RE_PARENT                                                                        \
    "SELECT %s FROM events e LEFT JOIN event_to_state_group g ON g.event_id = e.event_id"  \
    " WHERE e.event_id = ? AND e.room_id = ?"                                             \
    " AND (e.stream_ordering <= " REL_CAP_SQL " OR ? = ?)"

/* The statements of /relations (the room check passed). */
static void re_rel_add(re_ctx_t *c, mx_sql_batch_t *b)
{
    mx_pool_t *pool = mx_req_pool(c->req);
    const char *me = c->who->user_id;
    /* 0: the parent, 1: its visibility, 2: the page, 3: its visibility */
    RE_ADD_WITH_VIS(b, RE_PARENT, RM_EV_COLS ", g.group_id", "ssissii", c->event_id,
                    c->room_id, REL_ALL, c->room_id, me, c->world, REL_ALL);
    int64_t lo, hi;
    if (c->dir == 'b') {
        hi = c->from;
        lo = c->has_to ? c->to : -1;
    } else {
        lo = c->from;
        hi = c->has_to ? c->to : REL_ALL;
    }
    static const char *const sql[2][2] = {
        { "SELECT %s" RE_REL_FROM RE_REL_WHERE " ORDER BY r.stream_ordering DESC LIMIT ?",
          "SELECT %s" RE_REL_FROM RE_REL_WHERE " ORDER BY r.stream_ordering ASC LIMIT ?" },
        { RE_REL_WITH_RECURSE "SELECT %s" RE_REL_FROM_RECURSE RE_REL_WHERE
          " ORDER BY r.stream_ordering DESC LIMIT ?",
          RE_REL_WITH_RECURSE "SELECT %s" RE_REL_FROM_RECURSE RE_REL_WHERE
          " ORDER BY r.stream_ordering ASC LIMIT ?" },
    };
    const char *q = sql[c->recurse][c->dir == 'f'];
    const char *rt = c->rel_type ? c->rel_type : "";
    const char *et = c->ev_type ? c->ev_type : "";
    int64_t lim = (int64_t)c->limit + 1;
    RE_ADD_WITH_VIS(b, q, RM_EV_COLS ", g.group_id", "ssssssiiissiii", c->event_id,
                    c->room_id, rt, rt, et, et, lo, hi, REL_ALL, c->room_id, me, c->world,
                    REL_ALL, lim);
}

static bool re_bool(mx_req_t *req, const char *name, bool *out)
{
    const char *v = mx_req_query(req, name);
    *out = false;
    if (!v || !*v)
        return true;
    if (strcmp(v, "true") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(v, "false") == 0)
        return true;
    mx_req_error(req, 400, "M_INVALID_PARAM", "%s must be true or false", name);
    return false;
}

static void re_rel_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    re_ctx_t *c = re_new(req, who);
    if (!c)
        return;
    c->event_id = mx_req_param(req, "eventId");
    c->rel_type = mx_req_param(req, "relType");
    c->ev_type = mx_req_param(req, "eventType");
    if (!c->event_id || !*c->event_id) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad event ID");
        return;
    }
    if (!re_paging(c, 5, true) || !re_bool(req, "recurse", &c->recurse))
        return;
    if (!c->recurse && !re_bool(req, "org.matrix.msc3981.recurse", &c->recurse))
        return;
    rm_room_get(c->room_id, re_room, c);
}

/* -------------------------------------------------------------- /threads --- */

/* The thread roots, latest reply first; one %s for the selected columns. */
#define RE_THREADS                                                                       \
    "SELECT %s FROM threads t JOIN events e ON e.event_id = t.thread_id"                  \
    " LEFT JOIN event_to_state_group g ON g.event_id = e.event_id"                        \
    " WHERE t.room_id = ? AND t.latest_stream <= ?"                                       \
    " AND (CAST(? AS TEXT) = '' OR e.sender = ? OR EXISTS (SELECT 1"                      \
    "  FROM event_relations p WHERE p.relates_to_id = t.thread_id"                        \
    "  AND p.rel_type = 'm.thread' AND p.sender = ?))"                                    \
    " AND (e.stream_ordering <= " REL_CAP_SQL " OR ? = ?)"                                \
    " ORDER BY t.latest_stream DESC LIMIT ?"

/* The statements of /threads (the room check passed). */
static void re_threads_add(re_ctx_t *c, mx_sql_batch_t *b)
{
    mx_pool_t *pool = mx_req_pool(c->req);
    const char *me = c->who->user_id;
    const char *mine = c->participated ? me : "";
    int64_t lim = (int64_t)c->limit + 1;
    RE_ADD_WITH_VIS(b, RE_THREADS, RM_EV_COLS ", t.latest_stream, g.group_id", "sisssissiii",
                    c->room_id, c->from, mine, mine, mine, REL_ALL, c->room_id, me, c->world,
                    REL_ALL, lim);
}

static void re_threads_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    re_ctx_t *c = re_new(req, who);
    if (!c)
        return;
    const char *inc = mx_req_query(req, "include");
    if (inc && *inc && strcmp(inc, "all") && strcmp(inc, "participated")) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "include must be all or participated");
        return;
    }
    c->participated = inc && strcmp(inc, "participated") == 0;
    c->threads = true;
    if (!re_paging(c, 5, false))
        return;
    if (c->limit > 100)
        c->limit = 100;
    rm_room_get(c->room_id, re_room, c);
}

static int re_rel_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, re_rel_authed, NULL);
}

static int re_threads_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, re_threads_authed, NULL);
}

int rel_endpoints_start(void)
{
    static const char *const rel_paths[] = {
        "/rooms/{roomId}/relations/{eventId}",
        "/rooms/{roomId}/relations/{eventId}/{relType}",
        "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
    };
    int rc;
    for (size_t i = 0; i < 3; i++)
        if ((rc = rel_route_v1("GET", rel_paths[i], re_rel_h, 0)) < 0)
            return rc;
    return rel_route_v1("GET", "/rooms/{roomId}/threads", re_threads_h, 0);
}
