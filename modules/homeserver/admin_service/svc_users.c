/*
 * svc_users.c: the admin service's user operations — list with filters and
 * ordering, details, create or modify, deactivate, reset password, flags
 * (admin, shadow-ban, lock), username availability and login as a user.
 *
 * Reads join users (accounts part) with profiles (client part) in SQL so
 * that a page of the user list is one indexed query.  Writes mirror what
 * the accounts part does for the same change (one batch per request) and
 * then run its cache eviction and hooks, so token checks, E2EE device lists
 * and profiles follow.
 */
#include "svc.h"
#include "../accounts/acc_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- details --- */

#define SVC_USER_COLS                                                                    \
    "u.name, u.user_type, u.is_guest, u.admin, u.deactivated, u.shadow_banned,"          \
    " p.displayname, p.avatar_url, u.creation_ts, u.erased, u.locked,"                   \
    " (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.name)"

/* The object Synapse gives for a user in the list (and in details). */
static json_t *svc_user_json(const mx_sql_res_t *res, int st, int i)
{
    return json_pack("{s:s, s:o, s:b, s:b, s:b, s:b, s:o, s:o, s:I, s:b, s:b, s:b, s:o}",
                     "name", mx_sql_text(res, st, i, 0),
                     "user_type", svc_col_str(res, st, i, 1),
                     "is_guest", (int)mx_sql_int(res, st, i, 2),
                     "admin", (int)mx_sql_int(res, st, i, 3),
                     "deactivated", (int)mx_sql_int(res, st, i, 4),
                     "shadow_banned", (int)mx_sql_int(res, st, i, 5),
                     "displayname", svc_col_str(res, st, i, 6),
                     "avatar_url", svc_col_str(res, st, i, 7),
                     "creation_ts", (json_int_t)mx_sql_int(res, st, i, 8) * 1000,
                     "erased", (int)mx_sql_int(res, st, i, 9),
                     "locked", (int)mx_sql_int(res, st, i, 10),
                     "approved", 1,
                     "last_seen_ts", svc_col_int(res, st, i, 11));
}

static void svc_user_select(mx_sql_batch_t *b, const char *user_id)
{
    mx_sql_add(b, "SELECT " SVC_USER_COLS " FROM users u LEFT JOIN profiles p"
                  " ON p.user_id = u.name WHERE u.name = ?", "s", user_id);
}

/* Details: the list object plus what only the details carry. */
static json_t *svc_details_json(const mx_sql_res_t *res, int st)
{
    json_t *u = svc_user_json(res, st, 0);
    if (!u)
        return NULL;
    json_object_set_new(u, "threepids", json_array());
    json_object_set_new(u, "external_ids", json_array());
    json_object_set_new(u, "appservice_id", json_null());
    json_object_set_new(u, "consent_server_notice_sent", json_null());
    json_object_set_new(u, "consent_version", json_null());
    json_object_set_new(u, "consent_ts", json_null());
    json_object_set_new(u, "suspended", json_false());
    /* Synapse gives the admin flag as an integer-like bool in details. */
    return u;
}

static json_t *svc_get_user_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    return svc_details_json(res, 0);
}

int svc_get_user(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        svc_user_select(b, user_id);
    return svc_run(c, b, svc_get_user_built);
}

/* ---------------------------------------------------------------- list --- */

static const struct {
    const char *key, *col;
} svc_user_orders[] = {
    { "name", "u.name" },
    { "is_guest", "u.is_guest" },
    { "admin", "u.admin" },
    { "user_type", "COALESCE(u.user_type, '')" },
    { "deactivated", "u.deactivated" },
    { "shadow_banned", "u.shadow_banned" },
    { "displayname", "COALESCE(p.displayname, '')" },
    { "avatar_url", "COALESCE(p.avatar_url, '')" },
    { "creation_ts", "u.creation_ts" },
    { "last_seen_ts", "COALESCE((SELECT MAX(d.last_seen_ts) FROM devices d"
                      " WHERE d.user_id = u.name), 0)" },
    { "locked", "u.locked" },
    { "approved", "u.name" },
    { "erased", "u.erased" },
};

void svc_users_changed(void)
{
    if (svc) {
        svc->counts_gen++;
        json_object_clear(svc->counts);
        json_object_clear(svc->keys);
    }
}

/* Keyset pages: where a page ending at offset `end` stopped, per filter,
 * ordering and direction (the user ID as a string, or [display name, user
 * ID] by display name), so that following next_token (an offset, as in
 * Synapse) continues from there instead of walking `end` rows again.
 * Forgotten on any change to users and after SVC_KEYS_TTL_MS. */
#define SVC_KEYS_MAX 1024
#define SVC_KEYS_TTL_MS 60000

static const char *svc_key_name(mx_pool_t *p, const char *count_key, const char *dir,
                                int64_t end)
{
    return mx_psprintf(p, "%s\x1f%s\x1f%lld", count_key, dir, (long long)end);
}

/* The position (or anchors) kept under `name`, or NULL; borrowed. */
static const json_t *svc_key_get(const char *name)
{
    uint64_t now = mx_now_ms();
    if (now - svc->keys_ms > SVC_KEYS_TTL_MS || json_object_size(svc->keys) > SVC_KEYS_MAX) {
        json_object_clear(svc->keys);
        svc->keys_ms = now;
    }
    return json_object_get(svc->keys, name);
}

/* The list's total for `key`, or -1 when not cached (or stale). */
static int64_t svc_count_cached(const char *key)
{
    uint64_t now = mx_now_ms();
    if (now - svc->counts_ms > SVC_COUNT_TTL_MS) {
        json_object_clear(svc->counts);
        svc->counts_ms = now;
    }
    const json_t *v = json_object_get(svc->counts, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* What a list call carries between its query and its result. */
typedef struct svc_list {
    const char *count_key;
    int64_t total;        /* -1: counted by statement 0 */
    uint64_t gen;         /* counts_gen when the query was sent */
    const char *dir;      /* keyset pages (by user ID or display name), else NULL */
    bool by_dn, desc;     /* ordered by display name (user_dn); descending */
    /* The page query's parts (svc_list_page); pool strings. */
    char *where, *ord, *count;
    const char *src;      /* the inner query's FROM (users as `u`) */
    char *iord;           /* the inner query's ORDER BY */
    const char *binds[5];
    int nb;
    int64_t limit;
    /* Text filters answered by the index (svc_uindex.c): its filter, the
     * WHERE clause without the text condition, the order is by user ID. */
    bool text, by_name;
    svc_ux_filter_t uf;
    char *fwhere;
} svc_list_t;

/* A list position as kept for keyset pages: row `i` of statement `st`
 * (user ID in column 0, display name in `dn_col`). New reference. */
static json_t *svc_pos(const svc_list_t *l, const mx_sql_res_t *res, int st, int i, int dn_col)
{
    const char *name = mx_sql_text(res, st, i, 0);
    if (!l->by_dn)
        return json_string(name);
    const char *dn = mx_sql_is_null(res, st, i, dn_col) ? "" : mx_sql_text(res, st, i, dn_col);
    return json_pack("[s,s]", dn, name);
}

static json_t *svc_list_users_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    svc_list_t *l = c->priv;
    int st = 0;
    int64_t total = l->total;
    if (total < 0) {
        total = mx_sql_int(res, 0, 0, 0);
        st = 1;
        /* Keep it unless the users changed while the query ran. */
        if (l->gen == svc->counts_gen)
            json_object_set_new(svc->counts, l->count_key, json_integer(total));
    }
    json_t *users = json_array();
    int n = mx_sql_nrows(res, st);
    for (int i = 0; i < n; i++)
        json_array_append_new(users, svc_user_json(res, st, i));
    json_t *out = json_pack("{s:o, s:I}", "users", users, "total", (json_int_t)total);
    /* next_token: the next offset, only when more rows follow. */
    if (out && c->n + n < total && n > 0) {
        json_object_set_new(out, "next_token", json_sprintf("%lld", (long long)(c->n + n)));
        if (l->dir && l->gen == svc->counts_gen)
            json_object_set_new(svc->keys, svc_key_name(c->pool, l->count_key, l->dir, c->n + n),
                                svc_pos(l, res, st, n - 1, 6));
    }
    return out;
}

/* Appends " AND <cond>" to the WHERE clause under construction. */
static char *svc_and(mx_pool_t *p, char *where, const char *cond)
{
    return mx_psprintf(p, "%s AND %s", where, cond);
}

static char *svc_like(mx_pool_t *p, const char *s)
{
    /* Escape LIKE's wildcards so that the term matches literally. */
    size_t n = strlen(s);
    char *out = mx_palloc(p, n * 2 + 3);
    if (!out)
        return NULL;
    char *o = out;
    *o++ = '%';
    for (const char *q = s; *q; q++) {
        if (*q == '%' || *q == '_' || *q == '\\')
            *o++ = '\\';
        *o++ = (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q);
    }
    *o++ = '%';
    *o = 0;
    return out;
}

/* Adds `sql` with `n` (<= 4) string binds, then limit and offset when
 * `page`. */
static void svc_add_strs(mx_sql_batch_t *b, const char *sql, const char *const *s, int n,
                         bool page, int64_t limit, int64_t from)
{
    static const char *const fmts[2][5] = {
        { "", "s", "ss", "sss", "ssss" }, { "ii", "sii", "ssii", "sssii", "ssssii" } };
    const char *f = fmts[page][n];
    switch (n) {
    case 0:
        mx_sql_add(b, sql, f, limit, from);
        break;
    case 1:
        mx_sql_add(b, sql, f, s[0], limit, from);
        break;
    case 2:
        mx_sql_add(b, sql, f, s[0], s[1], limit, from);
        break;
    case 3:
        mx_sql_add(b, sql, f, s[0], s[1], s[2], limit, from);
        break;
    default:
        mx_sql_add(b, sql, f, s[0], s[1], s[2], s[3], limit, from);
        break;
    }
}

/* Raw offsets: the user ID at every SVC_ANCHOR_EVERY-th position of the
 * list (per filter and direction, kept with the keyset pages and forgotten
 * with them), so that `from=N` seeks past the anchor before N and skips
 * fewer than SVC_ANCHOR_EVERY rows: the same rows as OFFSET N. */
#define SVC_ANCHOR_EVERY 1000

/* Runs the page query (and the count when needed): after position
 * `after` (see svc_pos; or NULL), skipping `from` rows. */
static int svc_list_page(svc_call_t *c, const json_t *after, int64_t from)
{
    svc_list_t *l = c->priv;
    mx_pool_t *p = c->pool;
    const char *binds[5];
    memcpy(binds, l->binds, sizeof(binds));
    int nb = l->nb;
    char *where = l->where;
    if (after && l->by_dn) {
        where = svc_and(p, where, l->desc ? "(u.dn, u.name) < (?, ?)" : "(u.dn, u.name) > (?, ?)");
        binds[nb++] = mx_pstrdup(p, json_string_value(json_array_get(after, 0)));
        binds[nb++] = mx_pstrdup(p, json_string_value(json_array_get(after, 1)));
    } else if (after) {
        where = svc_and(p, where, l->desc ? "u.name < ?" : "u.name > ?");
        binds[nb++] = mx_pstrdup(p, json_string_value(after));
    }
    /* A deferred join: the page's names come from the narrow inner query
     * (walking users' name index past `from` rows); only those rows are
     * joined with profiles and devices. */
    char *page = where ? mx_psprintf(p, "SELECT " SVC_USER_COLS " FROM (SELECT u.name FROM"
                                        " %s WHERE %s ORDER BY %s LIMIT ? OFFSET ?) pg"
                                        " JOIN users u ON u.name = pg.name LEFT JOIN profiles p"
                                        " ON p.user_id = u.name ORDER BY %s",
                                     l->src, where, l->iord, l->ord)
                       : NULL;
    mx_sql_batch_t *b = page ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        svc_call_free(c);
        return -ENOMEM;
    }
    if (l->total < 0)
        svc_add_strs(b, l->count, l->binds, l->nb, false, 0, 0);
    svc_add_strs(b, page, binds, nb, true, l->limit, from);
    return svc_run(c, b, svc_list_users_built);
}

static int svc_list_anchored(svc_call_t *c, const json_t *anchors)
{
    size_t k = (size_t)(c->n / SVC_ANCHOR_EVERY);
    if (k > json_array_size(anchors))
        k = json_array_size(anchors);
    if (k == 0)
        return svc_list_page(c, NULL, c->n);
    return svc_list_page(c, json_array_get(anchors, k - 1),
                         c->n - (int64_t)k * SVC_ANCHOR_EVERY);
}

static void svc_anchors_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    svc_list_t *l = c->priv;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    json_t *a = json_array();
    for (int i = 0; a && i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(a, svc_pos(l, res, 0, i, 1));
    if (!a) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    /* Kept unless the users changed while the query ran. */
    if (l->gen == svc->counts_gen)
        json_object_set(svc->keys, svc_key_name(c->pool, l->count_key, l->dir, -1), a);
    hs_admin_done_fn cb = c->cb;
    void *cud = c->ud;
    int rc = svc_list_anchored(c, a);
    json_decref(a);
    if (rc < 0)
        cb(rc, NULL, cud);
}
/* Text filters through the index: the matching users (and so `total`)
 * come from memory; by user ID the page is their slice, otherwise SQL
 * orders them (when at most SVC_UX_SQL_MAX match).  1: not answered here
 * (the SQL walk with LIKE does it), else as svc_list_page. */
#define SVC_UX_SQL_MAX 10000

static int svc_list_text(svc_call_t *c)
{
    svc_list_t *l = c->priv;
    mx_pool_t *p = c->pool;
    const char **names;
    int64_t k = svc_ux_match(&l->uf, &names);
    bool slice = l->by_name && svc_ux_ready(true);
    if (k < 0 || (!slice && k > SVC_UX_SQL_MAX)) {
        free(names);
        return 1;
    }
    json_t *list = json_array();
    int64_t from = c->n, i;
    for (i = 0; list && (slice ? i < l->limit && from + i < k : i < k); i++)
        json_array_append_new(list, json_string(names[slice ? (l->desc ? k - 1 - from - i
                                                                      : from + i) : i]));
    free(names);
    char *js = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    char *arg = js ? mx_pstrdup(p, js) : NULL;
    free(js);
    const char *in = mx_db_is_postgres(hs.db) ? "u.name IN (SELECT json_array_elements_text(?::json))"
                                              : "u.name IN (SELECT value FROM json_each(?))";
    l->total = k;
    l->dir = NULL;
    if (!slice) {
        l->where = svc_and(p, l->fwhere, in);
        l->binds[0] = arg;
        l->nb = 1;
        return arg && l->where ? svc_list_page(c, NULL, from) : (svc_call_free(c), -ENOMEM);
    }
    char *sql = mx_psprintf(p, "SELECT " SVC_USER_COLS " FROM users u LEFT JOIN profiles p"
                               " ON p.user_id = u.name WHERE %s ORDER BY %s", in, l->ord);
    mx_sql_batch_t *b = sql && arg ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (b)
        mx_sql_add(b, sql, "s", arg);
    return svc_run(c, b, svc_list_users_built);
}

static int svc_list_go(svc_call_t *c);

static void svc_list_fresh(int status, void *ud)
{
    /* Without a fresh index: the SQL paths, nothing kept. */
    svc_call_t *c = ud;
    if (status < 0)
        svc_users_changed();
    hs_admin_done_fn cb = c->cb;
    void *cud = c->ud;
    int rc = svc_list_go(c);
    if (rc < 0)
        cb(rc, NULL, cud);
}

int svc_list_users(const json_t *q, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_pool_t *p = c->pool;
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    /* Pool copies: the call may outlive `q` (it waits for the index). */
    if (from < 0 || limit < 0) {
        svc_call_free(c);
        return -EINVAL;
    }
    c->n = from;
    const char *name = mx_pstrdup(p, svc_qstr(q, "name")),
               *uid = mx_pstrdup(p, svc_qstr(q, "user_id"));
    const char *order = svc_qstr(q, "order_by"), *dir = svc_qstr(q, "dir");
    const char *utype = svc_qstr(q, "user_type");
    int guests = svc_qbool(q, "guests"), deact = svc_qbool(q, "deactivated");
    int admins = svc_qbool(q, "admins"), locked = svc_qbool(q, "locked");
    char *where = mx_pstrdup(p, "1=1");
    /* Binds, in the order the conditions are added (all strings). */
    const char *binds[4] = { 0 };
    int nb = 0;
    if (guests == 0)
        where = svc_and(p, where, "u.is_guest = 0");
    if (deact != 1)
        where = svc_and(p, where, "u.deactivated = 0");
    if (locked != 1)
        where = svc_and(p, where, "u.locked = 0");
    if (admins == 1)
        where = svc_and(p, where, "u.admin = 1");
    else if (admins == 0)
        where = svc_and(p, where, "u.admin = 0");
    /* Case-insensitive matching: SQLite's LIKE already ignores ASCII
     * case (and then needs no lower() on every row); PostgreSQL's ILIKE. */
    bool pg = mx_db_is_postgres(hs.db);
    const char *like = pg ? "ILIKE" : "LIKE";
    char *fwhere = where;
    if (uid && *uid) {
        where = svc_and(p, where, mx_psprintf(p, "u.name %s ? ESCAPE '\\'", like));
        binds[nb++] = svc_like(p, uid);
    } else if (name && *name) {
        /* The user ID on the walk of users' index, the display names
         * read once into a set: no join of every user with its profile,
         * and a page still stops early when many match. */
        where = svc_and(p, where, mx_psprintf(p, "(u.name %s ? ESCAPE '\\' OR u.name IN (SELECT"
                                                 " user_id FROM profiles WHERE displayname %s ?"
                                                 " ESCAPE '\\'))", like, like));
        binds[nb++] = svc_like(p, name);
        binds[nb++] = binds[0];
    }
    if (utype && *utype) {
        where = svc_and(p, where, "u.user_type = ?");
        binds[nb++] = mx_pstrdup(p, utype);
    }
    const char *col = "u.name";
    if (order) {
        size_t k, n = sizeof(svc_user_orders) / sizeof(svc_user_orders[0]);
        for (k = 0; k < n && strcmp(svc_user_orders[k].key, order) != 0; k++)
            ;
        if (k == n) {
            svc_call_free(c);
            return -EINVAL;
        }
        col = svc_user_orders[k].col;
    }
    const char *d = dir && strcmp(dir, "b") == 0 ? "DESC" : "ASC";
    /* The profile join is needed only by the page's inner query for a
     * profile ordering (the name filter reads profiles in a subquery).
     * By display name, without a user type filter, the inner query walks
     * `user_dn` (svc_main.c: the same display name and filters, kept by
     * triggers) in index order instead. */
    bool by_profile = !strncmp(col, "COALESCE(p.", 11);
    bool by_dn = !strcmp(order ? order : "", "displayname") && !(utype && *utype);
    /* Totals without a text filter come from `user_counts` (kept by
     * triggers in the same transaction as every change to users). */
    bool counted = !(uid && *uid) && !(name && *name) && !(utype && *utype);
    char *count = counted ? mx_psprintf(p, "SELECT COALESCE(SUM(u.n), 0) FROM user_counts u"
                                           " WHERE %s", where)
                          : mx_psprintf(p, "SELECT COUNT(*) FROM users u WHERE %s", where);
    /* Ordering; the user ID breaks ties (not repeated when it is the key). */
    char *ord = strcmp(col, "u.name") ? mx_psprintf(p, "%s %s, u.name %s", col, d, d)
                                      : mx_psprintf(p, "u.name %s", d);
    svc_list_t *l = mx_palloc(p, sizeof(*l));
    if (!where || !count || !ord || !l) {
        svc_call_free(c);
        return -ENOMEM;
    }
    memset(l, 0, sizeof(*l));
    c->priv = l;
    l->count_key = mx_psprintf(p, "%s\x1f%s\x1f%s\x1f%s", count, binds[0] ? binds[0] : "",
                               binds[1] ? binds[1] : "", binds[2] ? binds[2] : "");
    l->by_dn = by_dn;
    l->desc = *d == 'D';
    l->dir = !l->count_key ? NULL : by_dn ? (l->desc ? "dnDESC" : "dnASC")
                                 : !strcmp(col, "u.name") ? d : NULL;
    l->where = where;
    l->ord = ord;
    l->count = count;
    memcpy(l->binds, binds, sizeof(binds));
    l->nb = nb;
    l->limit = limit;
    l->src = by_dn        ? "user_dn u"
             : by_profile ? "users u LEFT JOIN profiles p ON p.user_id = u.name"
                          : "users u";
    l->iord = by_dn ? mx_psprintf(p, "u.dn %s, u.name %s", d, d) : ord;
    if (!l->iord) {
        svc_call_free(c);
        return -ENOMEM;
    }
    l->text = ((uid && *uid) || (name && *name)) && !(utype && *utype);
    l->by_name = !strcmp(col, "u.name");
    l->uf = (svc_ux_filter_t){ .guests = guests, .deactivated = deact, .locked = locked,
                               .admins = admins, .name = name, .user_id = uid };
    l->fwhere = fwhere;
    /* The index answers text filters, and its refresh tells whether the
     * keyset positions and anchors still hold (any change to a user's
     * flags or display name, through any path, forgets them). */
    if ((l->text || (l->dir && from > 0)) && svc_ux_refresh(svc_list_fresh, c) == 0)
        return 0;
    return svc_list_go(c);
}

/* Runs a list call once its query is built (and the index refreshed). */
static int svc_list_go(svc_call_t *c)
{
    svc_list_t *l = c->priv;
    mx_pool_t *p = c->pool;
    int64_t from = c->n;
    l->gen = svc->counts_gen;
    l->total = l->count_key ? svc_count_cached(l->count_key) : -1;
    if (l->text && svc_ux_ready(false)) {
        int rc = svc_list_text(c);
        if (rc != 1)
            return rc;
    }
    const char *where = l->where, *const *binds = l->binds;
    int nb = l->nb;
    bool by_dn = l->by_dn;
    /* Following a next_token we handed out: continue after its position. */
    const json_t *after = l->dir && from > 0
                              ? svc_key_get(svc_key_name(p, l->count_key, l->dir, from))
                              : NULL;
    if (after || !l->dir || from < SVC_ANCHOR_EVERY)
        return svc_list_page(c, after, after ? 0 : from);
    /* A raw offset (synadm, Element Admin): seek from the nearest anchor. */
    const json_t *anchors = svc_key_get(svc_key_name(p, l->count_key, l->dir, -1));
    if (anchors)
        return svc_list_anchored(c, anchors);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    char *sql = mx_psprintf(p, "SELECT %s FROM (SELECT u.name%s, ROW_NUMBER() OVER (ORDER BY"
                               " %s) AS rn FROM %s WHERE %s) s WHERE rn %% %d = 0 ORDER BY rn",
                            by_dn ? "name, dn" : "name", by_dn ? ", u.dn" : "", l->iord, l->src,
                            where, SVC_ANCHOR_EVERY);
    if (!b || !sql) {
        mx_sql_batch_free(b);
        svc_call_free(c);
        return -ENOMEM;
    }
    svc_add_strs(b, sql, binds, nb, false, 0, 0);
    return svc_run_raw(c, b, svc_anchors_read);
}
/* ------------------------------------------------------ create / modify --- */

typedef struct svc_up {
    bool exists, was_deactivated, has_password;
    bool set_admin, admin, set_deact, deact, set_locked, locked;
    bool logout;
    const char *password, *displayname, *avatar_url, *user_type;
    bool set_dn, set_av, set_type;
    char *hash;
} svc_up_t;

static void svc_up_reread(svc_call_t *c);

static void svc_up_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    svc_up_t *u = c->priv;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "admin: user write failed: %s",
               res ? mx_sql_errmsg(res) : "?");
        svc_finish(c, status, NULL);
        return;
    }
    const char *uid = c->user_id;
    if (!u->exists)
        acc_hook_user_registered(uid, u->displayname, false);
    /* Statement 0..k: see svc_up_write; the device deletion (when any)
     * is the statement marked by c->n. */
    if (c->n >= 0) {
        int n = mx_sql_nrows(res, (int)c->n);
        const char **ids = mx_palloc(c->pool, sizeof(char *) * (size_t)(n + 1));
        for (int i = 0; ids && i < n; i++)
            ids[i] = mx_sql_text(res, (int)c->n, i, 0);
        if (ids && n > 0)
            acc_hook_devices_deleted(uid, ids, (size_t)n);
    }
    acc_cache_evict_device(uid, NULL);
    svc_users_changed();
    if (u->exists && u->set_deact && u->deact && !u->was_deactivated) {
        acc_hook_user_deactivated(uid, false);
        svc_leave_all_rooms(uid);
    }
    svc_up_reread(c);
}

static void svc_up_write(svc_call_t *c)
{
    svc_up_t *u = c->priv;
    const char *uid = c->user_id;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    char *lp = acc_localpart(c->pool, uid);
    c->n = -1;
    int st = 0;
    if (!u->exists) {
        mx_sql_add(b, "INSERT INTO users (name, password_hash, admin, user_type, locked,"
                      " deactivated, creation_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   "ssisiii", uid, u->hash, (int64_t)u->admin, u->user_type,
                   (int64_t)u->locked, (int64_t)u->deact, (int64_t)(mx_now_ms() / 1000));
        st++;
        mx_sql_add(b, "INSERT INTO profiles (user_id, localpart, displayname, avatar_url)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                      " displayname = excluded.displayname, avatar_url = excluded.avatar_url",
                   "ssss", uid, lp, u->set_dn ? u->displayname : lp,
                   u->set_av ? u->avatar_url : NULL);
        st++;
    } else {
        if (u->hash) {
            mx_sql_add(b, "UPDATE users SET password_hash = ? WHERE name = ?", "ss", u->hash, uid);
            st++;
        }
        if (u->set_admin) {
            mx_sql_add(b, "UPDATE users SET admin = ? WHERE name = ?", "is", (int64_t)u->admin, uid);
            st++;
        }
        if (u->set_locked) {
            mx_sql_add(b, "UPDATE users SET locked = ? WHERE name = ?", "is", (int64_t)u->locked,
                       uid);
            st++;
        }
        if (u->set_type) {
            mx_sql_add(b, "UPDATE users SET user_type = ? WHERE name = ?", "ss", u->user_type, uid);
            st++;
        }
        if (u->set_deact && u->deact != u->was_deactivated) {
            if (u->deact)
                mx_sql_add(b, "UPDATE users SET deactivated = 1, password_hash = NULL"
                              " WHERE name = ?", "s", uid);
            else
                mx_sql_add(b, "UPDATE users SET deactivated = 0, erased = 0 WHERE name = ?", "s",
                           uid);
            st++;
        }
        if (u->set_dn || u->set_av) {
            mx_sql_add(b, "INSERT INTO profiles (user_id, localpart, displayname, avatar_url)"
                          " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
                       "ssss", uid, lp, lp, NULL);
            st++;
            if (u->set_dn) {
                mx_sql_add(b, "UPDATE profiles SET displayname = ? WHERE user_id = ?", "ss",
                           u->displayname, uid);
                st++;
            }
            if (u->set_av) {
                mx_sql_add(b, "UPDATE profiles SET avatar_url = ? WHERE user_id = ?", "ss",
                           u->avatar_url, uid);
                st++;
            }
        }
        if (u->set_deact && !u->deact && u->was_deactivated) {
            mx_sql_add(b, "UPDATE profiles SET hidden = 0 WHERE user_id = ?", "s", uid);
            st++;
        }
        bool drop_sessions = (u->set_deact && u->deact && !u->was_deactivated) ||
                             (u->hash && u->logout);
        if (drop_sessions) {
            c->n = st;
            mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? RETURNING device_id", "s", uid);
            mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ?", "s", uid);
            mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ?", "s", uid);
            st += 3;
        }
        /* Last: the other parts' writes (statement indexes above stay). */
        if (u->set_deact && u->deact && !u->was_deactivated) {
            acc_hook_user_deactivating(b, uid, false);
            st++;
        }
    }
    if (st == 0) {
        mx_sql_batch_free(b);
        svc_up_reread(c);
        return;
    }
    if (mx_sql_run(b, svc_up_written, c) < 0) {
        mx_sql_batch_free(b);
        svc_finish(c, MX_EDB, NULL);
    }
}

static void svc_up_hashed(int status, const char *hash, void *ud)
{
    svc_call_t *c = ud;
    svc_up_t *u = c->priv;
    if (status < 0 || !hash) {
        svc_finish(c, status < 0 ? status : -EIO, NULL);
        return;
    }
    u->hash = mx_pstrdup(c->pool, hash);
    svc_up_write(c);
}

static json_t *svc_up_reread_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    svc_up_t *u = c->priv;
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    return json_pack("{s:b, s:o}", "created", !u->exists, "user", svc_details_json(res, 0));
}

static void svc_up_reread(svc_call_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        svc_user_select(b, c->user_id);
    svc_call_t *c2 = c;
    /* svc_run frees the call on failure without a callback: answer. */
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    if (svc_run(c2, b, svc_up_reread_built) < 0)
        cb(-ENOMEM, NULL, ud);
}

static void svc_up_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    svc_up_t *u = c->priv;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    u->exists = mx_sql_nrows(res, 0) > 0;
    if (u->exists) {
        u->was_deactivated = mx_sql_int(res, 0, 0, 0) != 0;
        u->has_password = !mx_sql_is_null(res, 0, 0, 1);
        if (u->set_deact && !u->deact && u->was_deactivated && !u->password && !u->has_password) {
            svc_fail(c, -EINVAL, "M_UNKNOWN", "Must provide a password to re-activate an account.");
            return;
        }
    } else if (!svc_is_local(c->user_id)) {
        svc_fail(c, -EINVAL, "M_INVALID_PARAM", "This endpoint can only be used with local users");
        return;
    } else {
        char *lp = acc_localpart(c->pool, c->user_id);
        if (!lp || !hs_is_valid_localpart(lp)) {
            svc_fail(c, -EINVAL, "M_INVALID_USERNAME", "Invalid user ID");
            return;
        }
    }
    if (u->password) {
        int rc = acc_pw_hash(u->password, svc_up_hashed, c);
        if (rc < 0)
            svc_finish(c, rc, NULL);
        return;
    }
    svc_up_write(c);
}

int svc_upsert_user(const char *user_id, const json_t *body, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    svc_up_t *u = c ? mx_palloc(c->pool, sizeof(*u)) : NULL;
    if (!u) {
        svc_call_free(c);
        return -ENOMEM;
    }
    memset(u, 0, sizeof(*u));
    c->priv = u;
    c->user_id = mx_pstrdup(c->pool, user_id);
    c->args = json_deep_copy(body);
    const json_t *a = c->args;
    u->password = svc_qstr(a, "password");
    u->logout = svc_qbool(a, "logout_devices") != 0;
    int v;
    if ((v = svc_qbool(a, "admin")) >= 0)
        u->set_admin = true, u->admin = v;
    if ((v = svc_qbool(a, "deactivated")) >= 0)
        u->set_deact = true, u->deact = v;
    if ((v = svc_qbool(a, "locked")) >= 0)
        u->set_locked = true, u->locked = v;
    if (json_object_get(a, "displayname"))
        u->set_dn = true, u->displayname = svc_qstr(a, "displayname");
    if (json_object_get(a, "avatar_url"))
        u->set_av = true, u->avatar_url = svc_qstr(a, "avatar_url");
    if (json_object_get(a, "user_type"))
        u->set_type = true, u->user_type = svc_qstr(a, "user_type");
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT deactivated, password_hash FROM users WHERE name = ?", "s", user_id);
    return svc_run_raw(c, b, svc_up_read);
}

/* ----------------------------------------------------------- deactivate --- */

static void svc_deact_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "User not found");
        return;
    }
    const char *uid = c->user_id;
    acc_cache_evict_device(uid, NULL);
    int n = mx_sql_nrows(res, 1);
    const char **ids = mx_palloc(c->pool, sizeof(char *) * (size_t)(n + 1));
    for (int i = 0; ids && i < n; i++)
        ids[i] = mx_sql_text(res, 1, i, 0);
    if (ids && n > 0)
        acc_hook_devices_deleted(uid, ids, (size_t)n);
    acc_hook_user_deactivated(uid, c->flag);
    svc_leave_all_rooms(uid);
    svc_finish(c, 0, json_pack("{s:s}", "id_server_unbind_result", "success"));
}

int svc_deactivate_user(const char *user_id, bool erase, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->user_id = mx_pstrdup(c->pool, user_id);
    c->flag = erase;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        mx_sql_add(b, "UPDATE users SET deactivated = 1, erased = ?, password_hash = NULL"
                      " WHERE name = ?", "is", (int64_t)erase, user_id);
        mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? RETURNING device_id", "s", user_id);
        mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ?", "s", user_id);
        mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ?", "s", user_id);
        mx_sql_add(b, "DELETE FROM login_tokens WHERE user_id = ?", "s", user_id);
        acc_hook_user_deactivating(b, user_id, erase);
    }
    return svc_run_raw(c, b, svc_deact_written);
}

/* ------------------------------------------------------- reset password --- */

static void svc_pw_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "User not found");
        return;
    }
    if (c->flag) {
        acc_cache_evict_device(c->user_id, NULL);
        int n = mx_sql_nrows(res, 1);
        const char **ids = mx_palloc(c->pool, sizeof(char *) * (size_t)(n + 1));
        for (int i = 0; ids && i < n; i++)
            ids[i] = mx_sql_text(res, 1, i, 0);
        if (ids && n > 0)
            acc_hook_devices_deleted(c->user_id, ids, (size_t)n);
    }
    svc_finish(c, 0, json_object());
}

static void svc_pw_hashed(int status, const char *hash, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0 || !hash) {
        svc_finish(c, status < 0 ? status : -EIO, NULL);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    const char *uid = c->user_id;
    mx_sql_add(b, "UPDATE users SET password_hash = ? WHERE name = ? AND deactivated = 0", "ss",
               hash, uid);
    if (c->flag) {
        mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? RETURNING device_id", "s", uid);
        mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ?", "s", uid);
        mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ?", "s", uid);
    }
    if (mx_sql_run(b, svc_pw_written, c) < 0) {
        mx_sql_batch_free(b);
        svc_finish(c, MX_EDB, NULL);
    }
}

int svc_reset_password(const char *user_id, const char *password, bool logout_devices,
                       hs_admin_done_fn cb, void *ud)
{
    if (!password)
        return -EINVAL;
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->user_id = mx_pstrdup(c->pool, user_id);
    c->flag = logout_devices;
    int rc = acc_pw_hash(password, svc_pw_hashed, c);
    if (rc < 0)
        svc_call_free(c);
    return rc;
}

/* ---------------------------------------------------------------- flags --- */

static void svc_flag_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "User not found");
        return;
    }
    /* Token checks carry admin/locked: forget the cached ones. */
    acc_cache_evict_device(c->user_id, NULL);
    svc_users_changed();
    svc_finish(c, 0, json_object());
}

int svc_set_user_flag(const char *user_id, const char *flag, bool value, hs_admin_done_fn cb,
                      void *ud)
{
    const char *sql;
    if (strcmp(flag, "admin") == 0)
        sql = "UPDATE users SET admin = ? WHERE name = ?";
    else if (strcmp(flag, "shadow_banned") == 0)
        sql = "UPDATE users SET shadow_banned = ? WHERE name = ?";
    else if (strcmp(flag, "locked") == 0)
        sql = "UPDATE users SET locked = ? WHERE name = ?";
    else
        return -EINVAL;
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->user_id = mx_pstrdup(c->pool, user_id);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b)
        mx_sql_add(b, sql, "is", (int64_t)value, user_id);
    return svc_run_raw(c, b, svc_flag_written);
}

/* ------------------------------------------------------ username checks --- */

static json_t *svc_avail_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    if (mx_sql_nrows(res, 0) > 0) {
        *status = -EEXIST;
        (void)c;
        return NULL;
    }
    return json_pack("{s:b}", "available", 1);
}

int svc_username_available(const char *localpart, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    if (!localpart || !hs_is_valid_localpart(localpart)) {
        svc_fail(c, -EINVAL, "M_INVALID_USERNAME", "Invalid username");
        return 0;
    }
    char *uid = hs_user_id(c->pool, localpart);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT 1 FROM users WHERE lower(name) = lower(?)", "s", uid);
    return svc_run(c, b, svc_avail_built);
}

/* ------------------------------------------------------------- login as --- */

static void svc_login_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "User not found");
        return;
    }
    svc_finish(c, 0, json_pack("{s:s}", "access_token", c->str));
}

int svc_login_as(const char *user_id, int64_t valid_until_ms, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->user_id = mx_pstrdup(c->pool, user_id);
    char *rnd = mx_random_string(32);
    c->str = rnd ? mx_psprintf(c->pool, "mxa_%s", rnd) : NULL;
    free(rnd);
    if (!c->str) {
        svc_call_free(c);
        return -ENOMEM;
    }
    char hash[ACC_HASH_HEX];
    acc_token_hash(c->str, hash);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        /* INSERT ... SELECT: no row (and no token) for an unknown or
         * deactivated user. */
        if (valid_until_ms > 0)
            mx_sql_add(b, "INSERT INTO access_tokens (token_hash, user_id, device_id,"
                          " valid_until_ms, created_ts) SELECT ?, name, NULL, ?, ? FROM users"
                          " WHERE name = ? AND deactivated = 0",
                       "siis", hash, valid_until_ms, (int64_t)mx_now_ms(), user_id);
        else
            mx_sql_add(b, "INSERT INTO access_tokens (token_hash, user_id, device_id,"
                          " valid_until_ms, created_ts) SELECT ?, name, NULL, NULL, ? FROM users"
                          " WHERE name = ? AND deactivated = 0",
                       "sis", hash, (int64_t)mx_now_ms(), user_id);
    }
    return svc_run_raw(c, b, svc_login_written);
}
