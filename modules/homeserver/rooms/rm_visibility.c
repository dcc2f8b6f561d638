/*
 * rm_visibility.c: history visibility — which events of a room a user may
 * see (spec "History visibility"; the boundary rules follow Synapse's
 * filter_events_for_client).
 *
 * The decision for an event uses the state AFTER it: the room's
 * m.room.history_visibility and the user's own membership.  Both come from
 * the state groups: one statement (rm_vis_sql) walks the groups of a page of
 * events back to their nearest snapshot, keeping only the two entries that
 * matter, so a page costs one read whatever its size, and events that share
 * a state group share the walk.  Callers add that statement to the batch
 * that reads the page, select each event's group, then ask rm_vis_visible.
 *
 * Erased senders (Synapse's erased-user filter): the events of a user who
 * deactivated with erase=true are shown redacted to everyone who was not
 * joined when they were sent.  The set of erased users is kept in memory,
 * loaded at start and updated by the accounts' deactivation hook.
 */
#include "rooms.h"
#include "../accounts/accounts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vis_node {
    int64_t id, prev;
    bool snap;
    const char *hv;      /* history_visibility set in this group, or NULL */
    const char *mem;     /* the user's membership set in this group, or NULL */
    bool has_hv, has_mem;
} vis_node_t;

/* The erased users (keys; values unused), or NULL before rm_vis_start. */
static rm_map_t *vis_erased;

struct rm_vis {
    vis_node_t *nodes;   /* sorted by id */
    size_t n;
    json_t *keep;        /* owns the parsed PDUs the strings point into */
};

char *rm_vis_sql(mx_pool_t *pool, const char *seed_sql)
{
    static const char head[] =
        "WITH RECURSIVE vuser(uid) AS (SELECT CAST(? AS TEXT)),"
        " vchain(id, prev, snap) AS ("
        " SELECT s.id, s.prev_group, s.is_snapshot FROM state_groups s WHERE s.id IN ("
        "  SELECT vg.group_id FROM event_to_state_group vg WHERE vg.event_id IN (";
    static const char tail[] =
        "))"
        " UNION"
        " SELECT s.id, s.prev_group, s.is_snapshot FROM state_groups s"
        " JOIN vchain c ON s.id = c.prev WHERE c.snap = 0)"
        " SELECT c.id, c.prev, c.snap, se.type, ve.json FROM vchain c"
        " LEFT JOIN state_group_entries se ON se.group_id = c.id AND"
        " ((se.type = 'm.room.history_visibility' AND se.state_key = '') OR"
        "  (se.type = 'm.room.member' AND se.state_key = (SELECT uid FROM vuser)))"
        " LEFT JOIN events ve ON ve.event_id = se.event_id";
    size_t len = sizeof(head) + strlen(seed_sql) + sizeof(tail);
    char *s = mx_palloc(pool, len);
    if (s)
        snprintf(s, len, "%s%s%s", head, seed_sql, tail);
    return s;
}

static int vis_cmp(const void *a, const void *b)
{
    const vis_node_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static const vis_node_t *vis_find(const rm_vis_t *v, int64_t id)
{
    vis_node_t key = { .id = id };
    return v->n ? bsearch(&key, v->nodes, v->n, sizeof(*v->nodes), vis_cmp) : NULL;
}

rm_vis_t *rm_vis_load(const mx_sql_res_t *res, int stmt)
{
    rm_vis_t *v = calloc(1, sizeof(*v));
    int rows = mx_sql_nrows(res, stmt);
    if (!v || !(v->keep = json_array()) ||
        !(v->nodes = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*v->nodes)))) {
        rm_vis_free(v);
        return NULL;
    }
    for (int i = 0; i < rows; i++) {
        vis_node_t *nd = &v->nodes[v->n++];
        nd->id = mx_sql_int(res, stmt, i, 0);
        nd->prev = mx_sql_is_null(res, stmt, i, 1) ? 0 : mx_sql_int(res, stmt, i, 1);
        nd->snap = mx_sql_int(res, stmt, i, 2) != 0;
        const char *type = mx_sql_is_null(res, stmt, i, 3) ? NULL : mx_sql_text(res, stmt, i, 3);
        const char *js = mx_sql_is_null(res, stmt, i, 4) ? NULL : mx_sql_text(res, stmt, i, 4);
        if (!type || !js)
            continue;
        json_t *pdu = json_loads(js, 0, NULL);
        if (!pdu)
            continue;
        json_array_append_new(v->keep, pdu);
        json_t *content = json_object_get(pdu, "content");
        if (strcmp(type, "m.room.history_visibility") == 0) {
            nd->has_hv = true;
            nd->hv = json_string_value(json_object_get(content, "history_visibility"));
        } else {
            nd->has_mem = true;
            nd->mem = json_string_value(json_object_get(content, "membership"));
        }
    }
    /* merge the rows of one group (one per matching entry) */
    qsort(v->nodes, v->n, sizeof(*v->nodes), vis_cmp);
    size_t w = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (w && v->nodes[w - 1].id == v->nodes[i].id) {
            vis_node_t *d = &v->nodes[w - 1], *s = &v->nodes[i];
            if (s->has_hv) {
                d->has_hv = true;
                d->hv = s->hv;
            }
            if (s->has_mem) {
                d->has_mem = true;
                d->mem = s->mem;
            }
            continue;
        }
        v->nodes[w++] = v->nodes[i];
    }
    v->n = w;
    return v;
}

void rm_vis_free(rm_vis_t *v)
{
    if (!v)
        return;
    json_decref(v->keep);
    free(v->nodes);
    free(v);
}

/* Priority orders (most permissive first), as in the spec's rules. */
static int vis_hv_rank(const char *hv)
{
    static const char *const order[] = { "world_readable", "shared", "invited", "joined" };
    for (int i = 0; i < 4; i++)
        if (hv && strcmp(hv, order[i]) == 0)
            return i;
    return 1; /* unknown or missing: shared */
}

static int vis_mem_rank(const char *m)
{
    static const char *const order[] = { "join", "invite", "knock", "leave", "ban" };
    for (int i = 0; i < 5; i++)
        if (m && strcmp(m, order[i]) == 0)
            return i;
    return 3; /* unknown or none: leave */
}

/* The decision itself; *joined tells whether the user was joined at the
 * event (the most joined side of their own membership change). */
static bool vis_decide(const rm_vis_t *v, int64_t group, const json_t *ev, const char *user_id,
                       bool peeking, bool *joined)
{
    *joined = false;
    const char *hv = NULL, *mem = NULL;
    bool got_hv = false, got_mem = false;
    const vis_node_t *nd = vis_find(v, group);
    /* state after the event: nearest entry walking back to a snapshot */
    for (int guard = 0; nd && guard < 100000; guard++) {
        if (!got_hv && nd->has_hv) {
            got_hv = true;
            hv = nd->hv;
        }
        if (!got_mem && nd->has_mem) {
            got_mem = true;
            mem = nd->mem;
        }
        if (nd->snap || (got_hv && got_mem) || !nd->prev)
            break;
        nd = vis_find(v, nd->prev);
    }
    int hvr = vis_hv_rank(hv);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *sk = json_string_value(json_object_get(ev, "state_key"));
    const json_t *prev = json_object_get(json_object_get(ev, "unsigned"), "prev_content");
    const json_t *content = json_object_get(ev, "content");
    /* a visibility change is seen with the more permissive of its two sides */
    if (type && sk && strcmp(type, "m.room.history_visibility") == 0) {
        int old = vis_hv_rank(json_string_value(json_object_get(prev, "history_visibility")));
        if (old < hvr)
            hvr = old;
    }
    int memr = vis_mem_rank(mem);
    /* the user's own membership event: the more joined of its two sides,
     * and one's own leave after a join or invite is always seen */
    if (type && sk && user_id && strcmp(type, "m.room.member") == 0 && strcmp(sk, user_id) == 0) {
        int now = vis_mem_rank(json_string_value(json_object_get(content, "membership")));
        int old = vis_mem_rank(json_string_value(json_object_get(prev, "membership")));
        if (now == 3 && (old == 0 || old == 1)) {
            *joined = old == 0;
            return true;
        }
        memr = old < now ? old : now;
    }
    if (memr == 0) {
        *joined = true;
        return true;
    }
    switch (hvr) {
    case 3: /* joined */
        return false;
    case 2: /* invited */
        return memr == 1;
    case 1: /* shared */
        return !peeking;
    default: /* world_readable */
        return true;
    }
}

bool rm_vis_visible(const rm_vis_t *v, int64_t group, json_t *ev, const char *user_id,
                    bool peeking)
{
    bool joined;
    if (!vis_decide(v, group, ev, user_id, peeking, &joined))
        return false;
    const char *sender = json_string_value(json_object_get(ev, "sender"));
    if (!joined && sender && rm_user_erased(sender)) {
        const hs_room_version_t *rv = hs_room_version_get("10");
        json_t *red = rv ? hs_event_redact(rv, ev) : NULL;
        json_t *content = json_object_get(red, "content");
        json_object_set(ev, "content", content ? content : json_object());
        json_decref(red);
    }
    return true;
}

/* ------------------------------------------------------- erased users --- */

bool rm_user_erased(const char *user_id)
{
    return vis_erased && user_id && rm_map_get(vis_erased, user_id) != NULL;
}

static void vis_user_deactivated(const char *user_id, bool erase)
{
    if (erase && vis_erased && user_id)
        rm_map_put(vis_erased, user_id, vis_erased);
}

static const hs_accounts_hooks_t vis_hooks = {
    .user_deactivated = vis_user_deactivated,
};

int rm_vis_start(char *err, size_t errlen)
{
    if (vis_erased)
        return 0;
    if (!(vis_erased = rm_map_new()))
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT name FROM users WHERE erased <> 0", "");
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.rooms: cannot load the erased users: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        const char *uid = mx_sql_text(res, 0, i, 0);
        if (uid)
            rm_map_put(vis_erased, uid, vis_erased);
    }
    mx_sql_res_free(res);
    if ((rc = hs_accounts_add_hooks(&vis_hooks)) < 0)
        snprintf(err, errlen, "homeserver.rooms: cannot add the accounts hooks (%d)", rc);
    return rc;
}

void rm_vis_stop(void)
{
    rm_map_free(vis_erased);
    vis_erased = NULL;
}
