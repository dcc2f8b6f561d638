/*
 * au_admin_list.c: the admin API's objects read with SQL, one page or one
 * object at a time, and the ULIDs of users.
 *
 * A page is keyset-paginated on the object's ULID (or, for rows without
 * one, on creation time + hash, which is the order of their derived
 * ULIDs): page[after]/page[before] become a bound on the key, page[first]/
 * page[last] the direction, and one extra row says whether more follow —
 * MAS's rules, so `next` only appears going forward and `prev` only going
 * backward.  The count is a separate COUNT(*) over the same filters.
 *
 * Users live in the homeserver; their ULIDs are derived from their
 * creation time and Matrix ID (au_ulid.c) and recorded in auth_admin_users
 * the first time the API shows them, so that an ID a client got back can be
 * resolved without asking the homeserver for every user.
 *
 * Filters naming a user, client or browser session are checked first
 * (aa_require): MAS answers 404 for one that does not exist.
 */
#include "au_admin.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ user IDs --- */

void aa_user_ulid(const char *user_id, int64_t creation_s, char out[AU_ULID_LEN + 1])
{
    au_ulid_derive(creation_s > 0 ? (uint64_t)creation_s * 1000 : 0, user_id, out);
}

typedef struct aa_idq {
    aa_req_t *r;
    aa_ids_fn cb;
    json_t *map;                  /* user_id -> ulid */
    json_t *missing;              /* user IDs to ask the homeserver about */
    int pending;
    int status;
} aa_idq_t;

static void aa_ids_done(aa_idq_t *q)
{
    q->cb(q->r, q->status, q->status < 0 ? NULL : q->map);
}

static void aa_ids_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    aa_idq_t *q = ud;
    if (status < 0)
        q->status = status;
    aa_ids_done(q);
}

/* Every missing user has its ULID in the map: record them. */
static void aa_ids_record(aa_idq_t *q)
{
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        q->status = -ENOMEM;
        aa_ids_done(q);
        return;
    }
    size_t i;
    json_t *u;
    json_array_foreach(q->missing, i, u) {
        const char *uid = json_string_value(u);
        mx_sql_add(b, "INSERT INTO auth_admin_users (user_id, id) VALUES (?, ?)"
                      " ON CONFLICT (user_id) DO NOTHING",
                   "ss", uid, json_string_value(json_object_get(q->map, uid)));
    }
    if (mx_sql_run(b, aa_ids_written, q) < 0) {
        q->status = -EIO;
        aa_ids_done(q);
    }
}

typedef struct aa_idget {
    aa_idq_t *q;
    const char *user_id;
} aa_idget_t;

static void aa_ids_got(int status, const hs_users_info_t *u, void *ud)
{
    aa_idget_t *g = ud;
    aa_idq_t *q = g->q;
    char id[AU_ULID_LEN + 1];
    if (status < 0 && status != -ENOENT)
        q->status = status;
    /* A user the homeserver does not know (any more) still gets a stable ID. */
    aa_user_ulid(g->user_id, status == 0 && u ? u->creation_ts : 0, id);
    json_object_set_new(q->map, g->user_id, json_string(id));
    if (--q->pending == 0) {
        if (q->status < 0)
            aa_ids_done(q);
        else
            aa_ids_record(q);
    }
}

static void aa_ids_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_idq_t *q = ud;
    if (status < 0) {
        q->status = status;
        aa_ids_done(q);
        return;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_object_set_new(q->map, mx_sql_text(res, 0, i, 0),
                            json_string(mx_sql_text(res, 0, i, 1)));
    json_t *all = json_array();
    json_array_extend(all, q->missing);
    json_array_clear(q->missing);
    size_t i;
    json_t *u;
    json_array_foreach(all, i, u)
        if (!json_object_get(q->map, json_string_value(u)))
            json_array_append(q->missing, u);
    json_decref(all);
    size_t n = json_array_size(q->missing);
    if (!n) {
        aa_ids_done(q);
        return;
    }
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!users) {
        q->status = -ENOSYS;
        aa_ids_done(q);
        return;
    }
    q->pending = (int)n + 1;   /* +1: none completes before the loop ends */
    json_array_foreach(q->missing, i, u) {
        aa_idget_t *g = mx_palloc(q->r->pool, sizeof(*g));
        g->q = q;
        g->user_id = json_string_value(u);
        if (users->get(g->user_id, aa_ids_got, g) < 0)
            aa_ids_got(-ENOENT, NULL, g);
    }
    if (--q->pending == 0) {
        if (q->status < 0)
            aa_ids_done(q);
        else
            aa_ids_record(q);
    }
}

static void aa_json_free(void *p)
{
    json_decref(p);
}

void aa_user_ids(aa_req_t *r, json_t *user_ids, aa_ids_fn cb)
{
    aa_idq_t *q = mx_palloc(r->pool, sizeof(*q));
    if (!q) {
        cb(r, -ENOMEM, NULL);
        return;
    }
    memset(q, 0, sizeof(*q));
    q->r = r;
    q->cb = cb;
    q->map = json_object();
    q->missing = json_array();
    mx_pool_on_free(r->pool, aa_json_free, q->map);
    mx_pool_on_free(r->pool, aa_json_free, q->missing);
    char *in = NULL;
    size_t i;
    json_t *u;
    json_array_foreach(user_ids, i, u) {
        const char *s = json_string_value(u);
        if (!s || json_object_get(q->map, s))
            continue;
        json_object_set_new(q->map, s, json_null());   /* dedup marker */
        json_array_append(q->missing, u);
        in = mx_psprintf(r->pool, "%s%s%s", in ? in : "", in ? ", " : "",
                         aa_sql_quote(r->pool, s));
    }
    json_object_clear(q->map);
    if (!in) {
        cb(r, 0, q->map);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        cb(r, -ENOMEM, NULL);
        return;
    }
    mx_sql_add(b, mx_psprintf(r->pool, "SELECT user_id, id FROM auth_admin_users"
                                       " WHERE user_id IN (%s)", in), "");
    if (mx_sql_run(b, aa_ids_read, q) < 0)
        cb(r, -EIO, NULL);
}

typedef struct aa_ofq {
    aa_req_t *r;
    aa_uid_fn cb;
} aa_ofq_t;

static void aa_of_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_ofq_t *q = ud;
    const char *uid = status == 0 && mx_sql_nrows(res, 0) > 0 ? mx_sql_text(res, 0, 0, 0) : NULL;
    q->cb(q->r, status, uid);
}

void aa_user_of(aa_req_t *r, const char *ulid, aa_uid_fn cb)
{
    aa_ofq_t *q = mx_palloc(r->pool, sizeof(*q));
    mx_sql_batch_t *b = q ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        cb(r, -ENOMEM, NULL);
        return;
    }
    q->r = r;
    q->cb = cb;
    mx_sql_add(b, "SELECT user_id FROM auth_admin_users WHERE id = ?", "s", ulid);
    if (mx_sql_run(b, aa_of_read, q) < 0)
        cb(r, -EIO, NULL);
}

/* ------------------------------------------------- filters' objects --- */

typedef struct aa_rq {
    aa_req_t *r;
    const aa_need_t *needs;
    int n;
    aa_then_fn then;
    void *ud;
} aa_rq_t;

static void aa_require_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_rq_t *q = ud;
    if (status < 0) {
        aa_fail(q->r, status, "filter");
        return;
    }
    for (int i = 0; i < q->n; i++)
        if (mx_sql_nrows(res, i) < 1) {
            aa_error(q->r->req, 404, q->needs[i].title);
            return;
        }
    q->then(q->r, q->ud);
}

void aa_require(aa_req_t *r, const aa_need_t *needs, int n, aa_then_fn then, void *ud)
{
    if (n == 0) {
        then(r, ud);
        return;
    }
    aa_rq_t *q = mx_palloc(r->pool, sizeof(*q));
    mx_sql_batch_t *b = q ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        aa_fail(r, -ENOMEM, "filter");
        return;
    }
    *q = (aa_rq_t){ .r = r, .needs = needs, .n = n, .then = then, .ud = ud };
    for (int i = 0; i < n; i++)
        mx_sql_add(b, needs[i].sql, "");
    if (mx_sql_run(b, aa_require_read, q) < 0)
        aa_fail(r, -EIO, "filter");
}

static bool aa_need(aa_req_t *r, aa_need_t *need, const char *sql, const char *what,
                    const char *ulid)
{
    need->sql = sql;
    need->title = mx_psprintf(r->pool, "%s ID %s not found", what, ulid);
    return need->sql && need->title;
}

bool aa_need_client(aa_req_t *r, aa_need_t *need, const char *ulid)
{
    char *w = aa_client_id_where(r, "client_id", ulid);
    return w && aa_need(r, need, mx_psprintf(r->pool, "SELECT 1 FROM auth_clients WHERE %s", w),
                        "Client", ulid);
}

bool aa_need_user(aa_req_t *r, aa_need_t *need, const char *ulid)
{
    return aa_need(r, need,
                   mx_psprintf(r->pool, "SELECT 1 FROM auth_admin_users WHERE id = %s",
                               aa_sql_quote(r->pool, ulid)),
                   "User", ulid);
}

char *aa_user_session_where(aa_req_t *r, const char *col, const char *ulid)
{
    uint64_t ms;
    char hex[21];
    if (au_ulid_to_hex(ulid, &ms, hex) < 0)
        return NULL;
    return mx_psprintf(r->pool, "%s IN (SELECT id_hash FROM auth_browser_sessions WHERE"
                                " created_ts = %lld AND substr(id_hash, 1, 20) = '%s')",
                       col, (long long)ms, hex);
}

bool aa_need_user_session(aa_req_t *r, aa_need_t *need, const char *ulid)
{
    char *w = aa_user_session_where(r, "id_hash", ulid);
    return w && aa_need(r, need,
                        mx_psprintf(r->pool, "SELECT 1 FROM auth_browser_sessions WHERE %s", w),
                        "User session", ulid);
}

/* --------------------------------------------------------------- lists --- */

typedef struct aa_lq {
    aa_req_t *r;
    aa_page_t p;
    aa_list_t *l;
    bool single;
    const char *self;
    json_t *items;
    bool more;
    int64_t count;
} aa_lq_t;

static void aa_lq_reply(aa_lq_t *q)
{
    if (q->single) {
        json_t *one = json_array_get(q->items, 0);
        if (q->l->merge)
            json_object_update(json_object_get(one, "attributes"), q->l->merge);
        aa_reply_one(q->r, q->l->status ? q->l->status : 200, json_incref(one), q->self);
        json_decref(q->items);
        return;
    }
    aa_reply_page(q->r, &q->p, q->items, q->more, q->count);
}

static void aa_lq_mapped(aa_req_t *r, int status, json_t *map)
{
    aa_lq_t *q = r->priv;
    if (status < 0) {
        json_decref(q->items);
        aa_fail(r, status, "user lookup");
        return;
    }
    size_t i;
    json_t *it;
    const char *attrs[2] = { q->l->user_attr, q->l->user_attr2 };
    json_array_foreach(q->items, i, it) {
        json_t *a = json_object_get(it, "attributes");
        for (int k = 0; k < 2 && attrs[k]; k++) {
            const char *uid = json_string_value(json_object_get(a, attrs[k]));
            json_t *id = uid ? json_object_get(map, uid) : NULL;
            if (uid)
                json_object_set(a, attrs[k], id ? id : json_null());
        }
    }
    aa_lq_reply(q);
}

static void aa_lq_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_lq_t *q = ud;
    aa_req_t *r = q->r;
    if (status < 0) {
        aa_fail(r, status, "list");
        return;
    }
    int st = 0;
    q->count = -1;
    if (!q->single && q->p.count != AA_COUNT_FALSE)
        q->count = mx_sql_int(res, st++, 0, 0);
    if (!q->single && q->p.count == AA_COUNT_ONLY) {
        aa_reply_page(r, &q->p, NULL, false, q->count);
        return;
    }
    int n = mx_sql_nrows(res, st);
    if (q->single && n < 1) {
        aa_error(r->req, 404, q->l->not_found ? q->l->not_found : "Not found");
        return;
    }
    q->more = !q->single && n > q->p.n;
    if (q->more)
        n = (int)q->p.n;
    q->items = json_array();
    for (int i = 0; i < n; i++) {
        json_t *it = q->l->row(res, st, i);
        if (it)
            json_array_append_new(q->items, it);
    }
    if (q->p.backward) {   /* read newest first: put back in ID order */
        json_t *rev = json_array();
        for (size_t i = json_array_size(q->items); i > 0; i--)
            json_array_append(rev, json_array_get(q->items, i - 1));
        json_decref(q->items);
        q->items = rev;
    }
    if (!q->l->user_attr) {
        aa_lq_reply(q);
        return;
    }
    json_t *uids = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(q->items, i, it) {
        json_t *a = json_object_get(it, "attributes");
        json_t *v = json_object_get(a, q->l->user_attr);
        json_t *v2 = q->l->user_attr2 ? json_object_get(a, q->l->user_attr2) : NULL;
        if (json_is_string(v))
            json_array_append(uids, v);
        if (json_is_string(v2))
            json_array_append(uids, v2);
    }
    r->priv = q;
    aa_user_ids(r, uids, aa_lq_mapped);
    json_decref(uids);
}

/* The key bound for a cursor, or NULL when the cursor is not usable. */
static char *aa_key_bound(aa_req_t *r, const aa_list_t *l, const char *cursor, const char *op)
{
    if (l->id_col)
        return mx_psprintf(r->pool, " AND %s %s '%s'", l->id_col, op, cursor);
    uint64_t ms;
    char hex[21];
    if (au_ulid_to_hex(cursor, &ms, hex) < 0)
        return NULL;
    return mx_psprintf(r->pool, " AND (%s %s %lld OR (%s = %lld AND substr(%s, 1, 20) %s '%s'))",
                       l->ts_col, op, (long long)ms, l->ts_col, (long long)ms, l->hash_col, op,
                       hex);
}

static void aa_run(aa_req_t *r, aa_lq_t *q)
{
    aa_list_t *l = q->l;
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        aa_fail(r, -ENOMEM, "list");
        return;
    }
    const char *types = "ssssss" + (6 - l->nargs);
    const char *const *a = l->args;
    if (!q->single && q->p.count != AA_COUNT_FALSE)
        mx_sql_add(b, mx_psprintf(r->pool, "SELECT COUNT(*) FROM %s WHERE %s", l->from, l->where),
                   types, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (q->single || q->p.count != AA_COUNT_ONLY) {
        char *where = l->where;
        if (!q->single && *q->p.after)
            where = mx_psprintf(r->pool, "%s%s", where, aa_key_bound(r, l, q->p.after, ">"));
        if (!q->single && *q->p.before)
            where = mx_psprintf(r->pool, "%s%s", where, aa_key_bound(r, l, q->p.before, "<"));
        const char *dir = q->p.backward ? "DESC" : "ASC";
        char *order = l->id_col ? mx_psprintf(r->pool, "%s %s", l->id_col, dir)
                                : mx_psprintf(r->pool, "%s %s, %s %s", l->ts_col, dir,
                                              l->hash_col, dir);
        mx_sql_add(b, mx_psprintf(r->pool, "SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %lld",
                                  l->cols, l->from, where, order,
                                  (long long)(q->single ? 1 : q->p.n + 1)),
                   types, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    if (mx_sql_run(b, aa_lq_read, q) < 0)
        aa_fail(r, -EIO, "list");
}

aa_list_t *aa_list_make(aa_req_t *r, const char *cols, const char *from, const char *id_col,
                        aa_row_fn row, const char *not_found)
{
    aa_list_t *l = mx_palloc(r->pool, sizeof(*l));
    if (!l)
        return NULL;
    memset(l, 0, sizeof(*l));
    l->cols = cols;
    l->from = from;
    l->where = mx_pstrdup(r->pool, "1=1");
    l->id_col = id_col;
    l->row = row;
    l->not_found = not_found;
    return l;
}

void aa_list_run(aa_req_t *r, const aa_page_t *p, aa_list_t *l)
{
    aa_lq_t *q = mx_palloc(r->pool, sizeof(*q));
    if (!q || !l->where) {
        aa_fail(r, -ENOMEM, "list");
        return;
    }
    memset(q, 0, sizeof(*q));
    q->r = r;
    q->p = *p;
    q->l = l;
    aa_run(r, q);
}

typedef struct aa_lu {
    aa_page_t p;
    aa_list_t *l;
} aa_lu_t;

static void aa_list_user_found(aa_req_t *r, int status, const char *user_id)
{
    aa_lu_t *u = r->priv;
    if (!aa_user_found(r, status, user_id, mx_req_query(r->req, "filter[user]")))
        return;
    u->l->where = mx_psprintf(r->pool, "%s AND user_id = ?", u->l->where);
    u->l->args[u->l->nargs++] = mx_pstrdup(r->pool, user_id);
    aa_list_run(r, &u->p, u->l);
}

bool aa_list_begin(aa_req_t *r, aa_list_t *l, aa_page_t *p, const char **user,
                   const char *what)
{
    bool bad = false;
    if (!l) {
        aa_fail(r, -ENOMEM, what);
        return false;
    }
    if (!aa_page_parse(r, p))
        return false;
    *user = aa_qulid(r, "filter[user]", &bad);
    return !bad;
}

void aa_list_where_eq(aa_req_t *r, aa_list_t *l, const char *const eq[][2], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = aa_qstr(r, eq[i][0]);
        if (v && l->nargs < (int)(sizeof(l->args) / sizeof(l->args[0]))) {
            l->where = mx_psprintf(r->pool, "%s AND %s = ?", l->where, eq[i][1]);
            l->args[l->nargs++] = v;
        }
    }
}

void aa_list_run_for_user(aa_req_t *r, const aa_page_t *p, aa_list_t *l, const char *user)
{
    if (!user) {
        aa_list_run(r, p, l);
        return;
    }
    aa_lu_t *u = mx_palloc(r->pool, sizeof(*u));
    if (!u) {
        aa_fail(r, -ENOMEM, "list");
        return;
    }
    u->p = *p;
    u->l = l;
    r->priv = u;
    aa_user_of(r, user, aa_list_user_found);
}

void aa_get_run(aa_req_t *r, aa_list_t *l, const char *self)
{
    aa_lq_t *q = mx_palloc(r->pool, sizeof(*q));
    if (!q || !l->where) {
        aa_fail(r, -ENOMEM, "get");
        return;
    }
    memset(q, 0, sizeof(*q));
    q->r = r;
    q->l = l;
    q->single = true;
    q->self = self;
    q->p.n = 1;
    aa_run(r, q);
}

void aa_get_by_id(aa_req_t *r, aa_list_t *l, const char *id, int status, const char *self)
{
    if (!l) {
        aa_fail(r, -ENOMEM, "get");
        return;
    }
    l->where = mx_psprintf(r->pool, "%s AND id = ?", l->where);
    l->args[l->nargs++] = id;
    l->status = status;
    aa_get_run(r, l, self);
}
