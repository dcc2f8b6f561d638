/*
 * au_admin_users.c: /api/admin/v1/users — list (filters, count, cursor
 * pages), get by ID or username, create, set-password, lock/unlock,
 * deactivate/reactivate, set-admin — in MAS's shapes.
 *
 * Accounts are the homeserver's: reads go through `homeserver.users`,
 * changes through it or `homeserver.admin` (deactivation, admin flag), so
 * the Synapse Admin API and this one see the same users.  A user's ULID is
 * derived from its creation time and Matrix ID (au_admin_list.c); the list
 * is read whole from the homeserver, filtered and sorted by ULID here.
 * MAS's `admin` attribute ("may ask for admin scopes") is the homeserver's
 * admin flag, which is what the authorization endpoint checks.
 * Reactivation sets a random password (deactivation removed it): the
 * admin gives a usable one with set-password.  When the
 * API locks or deactivates a user it records the time (locked_at,
 * deactivated_at); a flag set elsewhere shows the creation time.
 */
#include "au_admin.h"
#include "../homeserver/accounts/users_iface.h"
#include "../homeserver/hs_admin_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One user as the list gives it. */
typedef struct aa_user {
    char id[AU_ULID_LEN + 1];
    const char *user_id;
    bool admin, guest, locked, deactivated;
    int64_t created_s;
} aa_user_t;

typedef struct aa_marks {
    int64_t locked_ts, deactivated_ts;
    bool known;                   /* has a row in auth_admin_users */
} aa_marks_t;

static const char *aa_localpart(mx_pool_t *pool, const char *user_id)
{
    const char *colon = strchr(user_id, ':');
    if (user_id[0] != '@' || !colon)
        return user_id;
    char *s = mx_palloc(pool, (size_t)(colon - user_id));
    if (!s)
        return user_id;
    memcpy(s, user_id + 1, (size_t)(colon - user_id - 1));
    s[colon - user_id - 1] = '\0';
    return s;
}

static json_t *aa_user_resource(mx_pool_t *pool, const aa_user_t *u, const aa_marks_t *m)
{
    int64_t created = u->created_s * 1000;
    int64_t locked = u->locked ? (m->locked_ts > 0 ? m->locked_ts : created) : 0;
    int64_t deact = u->deactivated ? (m->deactivated_ts > 0 ? m->deactivated_ts : created) : 0;
    json_t *a = json_pack("{s:s, s:o, s:o, s:o, s:b, s:b}", "username",
                          aa_localpart(pool, u->user_id), "created_at", aa_time(created),
                          "locked_at", aa_time(locked), "deactivated_at", aa_time(deact), "admin",
                          u->admin, "legacy_guest", u->guest);
    return aa_resource("user", "users", u->id, a);
}

/* ----------------------------------------------------------- one user --- */

typedef struct aa_one {
    aa_req_t *r;
    aa_user_t u;
    int status;                   /* reply status (200, 201) */
    const char *self;
    bool set_locked, set_deact;   /* record the time of a change */
    int64_t locked_ts, deact_ts;
    int sel;                      /* index of the SELECT in the batch */
    bool written;                 /* the ID is recorded */
} aa_one_t;

static void aa_one_marked(int status, mx_sql_res_t *res, void *ud)
{
    aa_one_t *o = ud;
    if (status < 0) {
        aa_fail(o->r, status, "user");
        return;
    }
    aa_marks_t m = { 0, 0, false };
    if (mx_sql_nrows(res, o->sel) > 0) {
        m.known = true;
        m.locked_ts = mx_sql_is_null(res, o->sel, 0, 0) ? 0 : mx_sql_int(res, o->sel, 0, 0);
        m.deactivated_ts = mx_sql_is_null(res, o->sel, 0, 1) ? 0 : mx_sql_int(res, o->sel, 0, 1);
    }
    if (!m.known && !o->written) {
        /* First time the API shows this user: record its ID. */
        o->written = true;
        mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
        if (!b) {
            aa_fail(o->r, -ENOMEM, "user");
            return;
        }
        o->sel = 0;
        mx_sql_add(b, "INSERT INTO auth_admin_users (user_id, id) VALUES (?, ?)"
                      " ON CONFLICT (user_id) DO NOTHING", "ss", o->u.user_id, o->u.id);
        if (mx_sql_run(b, aa_one_marked, o) < 0)
            aa_fail(o->r, -EIO, "user");
        return;
    }
    aa_reply_one(o->r, o->status, aa_user_resource(o->r->pool, &o->u, &m), o->self);
}

/* Reads (and, for a change, records the time of) the API's marks of the
 * user, then replies. */
static void aa_one_reply(aa_one_t *o)
{
    bool change = o->set_locked || o->set_deact;
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, change ? MX_SQL_WRITE : MX_SQL_READ);
    if (!b) {
        aa_fail(o->r, -ENOMEM, "user");
        return;
    }
    o->sel = 0;
    if (change) {
        o->written = true;
        o->sel = 3;
        mx_sql_add(b, "INSERT INTO auth_admin_users (user_id, id) VALUES (?, ?)"
                      " ON CONFLICT (user_id) DO NOTHING", "ss", o->u.user_id, o->u.id);
        if (o->set_locked && o->locked_ts)
            mx_sql_add(b, "UPDATE auth_admin_users SET locked_ts = ? WHERE user_id = ?", "is",
                       o->locked_ts, o->u.user_id);
        else
            mx_sql_add(b, "UPDATE auth_admin_users SET locked_ts = NULL WHERE user_id = ?"
                          " AND 1 = ?", "si", o->u.user_id, (int64_t)o->set_locked);
        if (o->set_deact && o->deact_ts)
            mx_sql_add(b, "UPDATE auth_admin_users SET deactivated_ts = ? WHERE user_id = ?",
                       "is", o->deact_ts, o->u.user_id);
        else
            mx_sql_add(b, "UPDATE auth_admin_users SET deactivated_ts = NULL WHERE user_id = ?"
                          " AND 1 = ?", "si", o->u.user_id, (int64_t)o->set_deact);
    }
    mx_sql_add(b, "SELECT locked_ts, deactivated_ts FROM auth_admin_users WHERE user_id = ?",
               "s", o->u.user_id);
    if (mx_sql_run(b, aa_one_marked, o) < 0)
        aa_fail(o->r, -EIO, "user");
}

static void aa_one_got(int status, const hs_users_info_t *u, void *ud)
{
    aa_one_t *o = ud;
    if (status == -ENOENT || (status == 0 && !u)) {
        aa_error(o->r->req, 404, "User not found");
        return;
    }
    if (status < 0 && status != -EKEYREVOKED) {
        aa_fail(o->r, status, "user");
        return;
    }
    o->u.user_id = mx_pstrdup(o->r->pool, u->user_id);
    o->u.admin = u->is_admin;
    o->u.guest = u->is_guest;
    o->u.locked = u->locked;
    o->u.deactivated = u->deactivated;
    o->u.created_s = u->creation_ts;
    aa_user_ulid(o->u.user_id, o->u.created_s, o->u.id);
    aa_one_reply(o);
}

static aa_one_t *aa_one_new(aa_req_t *r, int status)
{
    aa_one_t *o = mx_palloc(r->pool, sizeof(*o));
    if (o) {
        memset(o, 0, sizeof(*o));
        o->r = r;
        o->status = status;
    } else {
        aa_fail(r, -ENOMEM, "user");
    }
    return o;
}

/* Looks `user` up in the homeserver and answers with it. */
static void aa_one_load(aa_one_t *o, const char *user)
{
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    int rc = users ? users->get(user, aa_one_got, o) : -ENOSYS;
    if (rc < 0)
        aa_fail(o->r, rc, "user");
}

/* ------------------------------------------------------------- routes --- */

static void aa_get_found(aa_req_t *r, int status, const char *user_id)
{
    if (!aa_user_found(r, status, user_id, mx_req_param(r->req, "id")))
        return;
    aa_one_t *o = aa_one_new(r, 200);
    if (o)
        aa_one_load(o, user_id);
}

static void aa_users_get(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    if (id)
        aa_user_of(r, id, aa_get_found);
}

static void aa_users_by_name(aa_req_t *r)
{
    aa_one_t *o = aa_one_new(r, 200);
    if (!o)
        return;
    const char *name = mx_req_param(r->req, "username");
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!name || !*name || strchr(name, ':') || name[0] == '@') {
        aa_error(r->req, 404, "User not found");
        return;
    }
    o->self = NULL;
    int rc = users ? users->get(name, aa_one_got, o) : -ENOSYS;
    if (rc < 0)
        aa_fail(r, rc, "user");
}

static void aa_created(int status, const hs_users_info_t *u, void *ud)
{
    aa_one_t *o = ud;
    if (status == -EEXIST) {
        aa_error(o->r->req, 409, "User already exists");
        return;
    }
    if (status == -EINVAL) {
        aa_error(o->r->req, 400, "Username is not valid");
        return;
    }
    if (status < 0 || !u) {
        aa_fail(o->r, status < 0 ? status : -EIO, "user creation");
        return;
    }
    o->self = AA_BASE "/users";
    aa_one_got(0, u, o);
}

static void aa_users_add(aa_req_t *r)
{
    json_t *body = aa_body(r);
    if (!body)
        return;
    const char *name = json_string_value(json_object_get(body, "username"));
    if (!name) {
        aa_error(r->req, 400, "Failed to deserialize the JSON body: missing field `username`");
        return;
    }
    aa_one_t *o = aa_one_new(r, 201);
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!o)
        return;
    int rc = users ? users->create(name, NULL, false, aa_created, o) : -ENOSYS;
    if (rc == -EINVAL)
        aa_error(r->req, 400, "Username is not valid");
    else if (rc < 0)
        aa_fail(r, rc, "user creation");
}

/* ------------------------------------------------------------ changes --- */

typedef enum { AA_LOCK, AA_UNLOCK, AA_DEACT, AA_REACT, AA_ADMIN, AA_PASSWORD } aa_act_t;

typedef struct aa_change {
    aa_one_t *o;
    aa_act_t act;
    json_t *body;
    const char *user_id;
} aa_change_t;

static void aa_change_reload(aa_change_t *c)
{
    aa_one_load(c->o, c->user_id);
}

static void aa_change_users_done(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    aa_change_t *c = ud;
    if (status < 0 && status != -EKEYREVOKED) {
        aa_fail(c->o->r, status, "user change");
        return;
    }
    if (c->act == AA_PASSWORD) {
        mx_req_reply(c->o->r->req, 204, NULL, "", 0);
        return;
    }
    aa_change_reload(c);
}

static void aa_sessions_ended(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    aa_change_t *c = ud;
    if (status < 0) {
        aa_fail(c->o->r, status, "ending sessions");
        return;
    }
    au_cache_evict_user(c->user_id, NULL);
    aa_change_reload(c);
}

static void aa_change_admin_done(int status, json_t *result, void *ud)
{
    aa_change_t *c = ud;
    json_decref(result);
    if (status < 0) {
        aa_fail(c->o->r, status, "user change");
        return;
    }
    if (c->act != AA_DEACT) {
        aa_change_reload(c);
        return;
    }
    /* MAS ends every session of a deactivated user. */
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        aa_fail(c->o->r, -ENOMEM, "ending sessions");
        return;
    }
    int64_t now = (int64_t)mx_now_ms();
#define AA_LIVE "(SELECT id FROM auth_oauth_sessions WHERE user_id = ? AND finished_ts IS NULL)"
    mx_sql_add(b, "UPDATE auth_access_tokens SET revoked = 1 WHERE session_id IN " AA_LIVE, "s",
               c->user_id);
    mx_sql_add(b, "UPDATE auth_refresh_tokens SET revoked = 1 WHERE session_id IN " AA_LIVE, "s",
               c->user_id);
    mx_sql_add(b, "UPDATE auth_oauth_sessions SET finished_ts = ? WHERE user_id = ?"
                  " AND finished_ts IS NULL", "is", now, c->user_id);
    mx_sql_add(b, "UPDATE auth_browser_sessions SET finished_ts = ? WHERE user_id = ?"
                  " AND finished_ts IS NULL", "is", now, c->user_id);
    if (mx_sql_run(b, aa_sessions_ended, c) < 0)
        aa_fail(c->o->r, -EIO, "ending sessions");
}

static void aa_change_found(aa_req_t *r, int status, const char *user_id)
{
    aa_change_t *c = r->priv;
    if (!aa_user_found(r, status, user_id, mx_req_param(r->req, "id")))
        return;
    c->user_id = mx_pstrdup(r->pool, user_id);
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    const hs_admin_iface_t *hs = mx_service_get(HS_ADMIN_SERVICE);
    if (hs && hs->size < sizeof(hs_admin_iface_t))
        hs = NULL;
    int rc = -ENOSYS;
    int64_t now = (int64_t)mx_now_ms();
    switch (c->act) {
    case AA_LOCK:
    case AA_UNLOCK:
        c->o->set_locked = true;
        c->o->locked_ts = c->act == AA_LOCK ? now : 0;
        if (users)
            rc = users->set_locked(user_id, c->act == AA_LOCK, aa_change_users_done, c);
        break;
    case AA_PASSWORD: {
        const char *pw = json_string_value(json_object_get(c->body, "password"));
        if (users)
            rc = users->set_password(user_id, pw, aa_change_users_done, c);
        break;
    }
    case AA_DEACT: {
        json_t *skip = json_object_get(c->body, "skip_erase");
        c->o->set_deact = true;
        c->o->deact_ts = now;
        if (hs)
            rc = hs->deactivate_user(user_id, !json_is_true(skip), aa_change_admin_done, c);
        break;
    }
    case AA_REACT: {
        c->o->set_deact = true;
        c->o->deact_ts = 0;
        /* Deactivation dropped the password; the homeserver wants one to
         * reactivate: a random one nobody knows (set-password gives the
         * user a usable one, as after MAS's reactivation of a user who
         * had none). */
        json_t *b = json_pack("{s:b, s:s}", "deactivated", 0, "password",
                              au_token_new(r->pool, NULL, 32));
        if (hs)
            rc = hs->upsert_user(user_id, b, aa_change_admin_done, c);
        json_decref(b);
        break;
    }
    case AA_ADMIN:
        if (hs)
            rc = hs->set_user_flag(user_id, "admin", json_is_true(json_object_get(c->body, "admin")),
                                   aa_change_admin_done, c);
        break;
    }
    if (rc < 0)
        aa_fail(r, rc, "user change");
}

static void aa_change(aa_req_t *r, aa_act_t act)
{
    const char *id = aa_path_id(r);
    if (!id)
        return;
    aa_change_t *c = mx_palloc(r->pool, sizeof(*c));
    aa_one_t *o = aa_one_new(r, 200);
    if (!c || !o)
        return;
    memset(c, 0, sizeof(*c));
    c->o = o;
    c->act = act;
    if (act == AA_DEACT || act == AA_ADMIN || act == AA_PASSWORD) {
        if (!(c->body = aa_body(r)))
            return;
    }
    if (act == AA_ADMIN && !json_is_boolean(json_object_get(c->body, "admin"))) {
        aa_error(r->req, 400, "Failed to deserialize the JSON body: missing field `admin`");
        return;
    }
    if (act == AA_PASSWORD) {
        const char *pw = json_string_value(json_object_get(c->body, "password"));
        if (!pw) {
            aa_error(r->req, 400, "Failed to deserialize the JSON body: missing field `password`");
            return;
        }
        if (!json_is_true(json_object_get(c->body, "skip_password_check")) &&
            au_password_policy(pw)) {
            aa_error(r->req, 400, "Password is too weak");
            return;
        }
    }
    r->priv = c;
    aa_user_of(r, id, aa_change_found);
}

static void aa_users_lock(aa_req_t *r) { aa_change(r, AA_LOCK); }
static void aa_users_unlock(aa_req_t *r) { aa_change(r, AA_UNLOCK); }
static void aa_users_deactivate(aa_req_t *r) { aa_change(r, AA_DEACT); }
static void aa_users_reactivate(aa_req_t *r) { aa_change(r, AA_REACT); }
static void aa_users_set_admin(aa_req_t *r) { aa_change(r, AA_ADMIN); }
static void aa_users_set_password(aa_req_t *r) { aa_change(r, AA_PASSWORD); }

/* --------------------------------------------------------------- list --- */

typedef struct aa_ul {
    aa_req_t *r;
    aa_page_t p;
    int admin, guest, has_oauth, has_compat;
    const char *search, *status;
    const char *client;           /* filter[active-oauth2-client]: SQL condition */
    aa_need_t needs[AA_MAX_NEEDS]; /* its clients, which must exist */
    int nneeds;
    json_t *oauth_users, *compat_users, *client_users;   /* {user_id: true} */
    aa_user_t *page;
    int npage;
    json_t *items;                /* the page, while new IDs are recorded */
    bool more;
    int64_t count;
} aa_ul_t;

static int aa_user_cmp(const void *a, const void *b)
{
    return strcmp(((const aa_user_t *)a)->id, ((const aa_user_t *)b)->id);
}

static bool aa_ul_keep(const aa_ul_t *l, const aa_user_t *u)
{
    if (l->admin >= 0 && u->admin != (l->admin == 1))
        return false;
    if (l->guest >= 0 && u->guest != (l->guest == 1))
        return false;
    if (l->status) {
        if (!strcmp(l->status, "active") && (u->locked || u->deactivated))
            return false;
        if (!strcmp(l->status, "locked") && !u->locked)
            return false;
        if (!strcmp(l->status, "deactivated") && !u->deactivated)
            return false;
    }
    if (l->search && *l->search && !strstr(u->user_id + 1, l->search))
        return false;
    if (l->has_oauth >= 0 && (json_object_get(l->oauth_users, u->user_id) != NULL) !=
                                 (l->has_oauth == 1))
        return false;
    if (l->has_compat >= 0 && (json_object_get(l->compat_users, u->user_id) != NULL) !=
                                  (l->has_compat == 1))
        return false;
    if (l->client && !json_object_get(l->client_users, u->user_id))
        return false;
    return true;
}

static void aa_ul_recorded(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    aa_ul_t *l = ud;
    if (status < 0) {
        json_decref(l->items);
        aa_fail(l->r, status, "user list");
        return;
    }
    aa_reply_page(l->r, &l->p, l->items, l->more, l->count);
}

static void aa_ul_marked(int status, mx_sql_res_t *res, void *ud)
{
    aa_ul_t *l = ud;
    aa_req_t *r = l->r;
    if (status < 0) {
        aa_fail(r, status, "user list");
        return;
    }
    json_t *marks = json_object();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_object_set_new(marks, mx_sql_text(res, 0, i, 0),
                            json_pack("[I, I]",
                                      (json_int_t)(mx_sql_is_null(res, 0, i, 1)
                                                       ? 0 : mx_sql_int(res, 0, i, 1)),
                                      (json_int_t)(mx_sql_is_null(res, 0, i, 2)
                                                       ? 0 : mx_sql_int(res, 0, i, 2))));
    json_t *items = json_array();
    char *values = NULL;   /* users the API shows for the first time */
    for (int i = 0; i < l->npage; i++) {
        json_t *m = json_object_get(marks, l->page[i].user_id);
        aa_marks_t mk = { json_integer_value(json_array_get(m, 0)),
                          json_integer_value(json_array_get(m, 1)), m != NULL };
        json_array_append_new(items, aa_user_resource(r->pool, &l->page[i], &mk));
        if (!m)
            values = mx_psprintf(r->pool, "%s%s(%s, '%s')", values ? values : "",
                                 values ? ", " : "", aa_sql_quote(r->pool, l->page[i].user_id),
                                 l->page[i].id);
    }
    json_decref(marks);
    if (!values) {
        aa_reply_page(r, &l->p, items, l->more, l->count);
        return;
    }
    l->items = items;
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        json_decref(items);
        aa_fail(r, -ENOMEM, "user list");
        return;
    }
    mx_sql_add(b, mx_psprintf(r->pool, "INSERT INTO auth_admin_users (user_id, id) VALUES %s"
                                       " ON CONFLICT (user_id) DO NOTHING", values), "");
    if (mx_sql_run(b, aa_ul_recorded, l) < 0) {
        json_decref(items);
        aa_fail(r, -EIO, "user list");
    }
}

static void aa_ul_listed(int status, json_t *list, void *ud)
{
    aa_ul_t *l = ud;
    aa_req_t *r = l->r;
    if (status < 0 || !list) {
        aa_fail(r, status < 0 ? status : -EIO, "user list");
        return;
    }
    size_t n = json_array_size(list), k = 0;
    aa_user_t *all = calloc(n ? n : 1, sizeof(*all));
    if (!all) {
        aa_fail(r, -ENOMEM, "user list");
        return;
    }
    size_t i;
    json_t *u;
    json_array_foreach(list, i, u) {
        aa_user_t *x = &all[k];
        x->user_id = json_string_value(json_object_get(u, "user_id"));
        if (!x->user_id)
            continue;
        x->admin = json_is_true(json_object_get(u, "admin"));
        x->guest = json_is_true(json_object_get(u, "guest"));
        x->locked = json_is_true(json_object_get(u, "locked"));
        x->deactivated = json_is_true(json_object_get(u, "deactivated"));
        x->created_s = json_integer_value(json_object_get(u, "creation_ts"));
        if (!aa_ul_keep(l, x))
            continue;
        aa_user_ulid(x->user_id, x->created_s, x->id);
        k++;
    }
    qsort(all, k, sizeof(*all), aa_user_cmp);
    l->count = (int64_t)k;
    /* [lo, hi): the users between the cursors. */
    size_t lo = 0, hi = k;
    if (*l->p.after)
        while (lo < k && strcmp(all[lo].id, l->p.after) <= 0)
            lo++;
    if (*l->p.before)
        while (hi > lo && strcmp(all[hi - 1].id, l->p.before) >= 0)
            hi--;
    size_t want = (size_t)l->p.n, from = lo, to = hi;
    if (!l->p.backward && hi - lo > want) {
        to = lo + want;
        l->more = true;
    } else if (l->p.backward && hi - lo > want) {
        from = hi - want;
        l->more = true;
    }
    l->npage = l->p.count == AA_COUNT_ONLY ? 0 : (int)(to - from);
    l->page = mx_palloc(r->pool, sizeof(*l->page) * (size_t)(l->npage ? l->npage : 1));
    char *in = NULL;
    for (int j = 0; l->page && j < l->npage; j++) {
        l->page[j] = all[from + (size_t)j];
        l->page[j].user_id = mx_pstrdup(r->pool, all[from + (size_t)j].user_id);
        in = mx_psprintf(r->pool, "%s%s%s", in ? in : "", in ? ", " : "",
                         aa_sql_quote(r->pool, l->page[j].user_id));
    }
    free(all);
    if (l->p.count == AA_COUNT_ONLY) {
        aa_reply_page(r, &l->p, NULL, false, l->count);
        return;
    }
    if (!in) {
        aa_reply_page(r, &l->p, json_array(), false,
                      l->p.count == AA_COUNT_FALSE ? -1 : l->count);
        return;
    }
    if (l->p.count == AA_COUNT_FALSE)
        l->count = -1;
    /* The times of API locks and deactivations (and which users are new). */
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        aa_fail(r, -ENOMEM, "user list");
        return;
    }
    mx_sql_add(b, mx_psprintf(r->pool, "SELECT user_id, locked_ts, deactivated_ts"
                                       " FROM auth_admin_users WHERE user_id IN (%s)", in), "");
    if (mx_sql_run(b, aa_ul_marked, l) < 0)
        aa_fail(r, -EIO, "user list");
}

static void aa_ul_list(aa_ul_t *l)
{
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    int rc = users ? users->list(aa_ul_listed, l) : -ENOSYS;
    if (rc < 0)
        aa_fail(l->r, rc, "user list");
}

static void aa_json_free(void *p)
{
    json_decref(p);
}

static void aa_ul_sessions(int status, mx_sql_res_t *res, void *ud)
{
    aa_ul_t *l = ud;
    if (status < 0) {
        aa_fail(l->r, status, "user list");
        return;
    }
    int st = 0;
    json_t **sets[3] = { &l->oauth_users, &l->compat_users, &l->client_users };
    bool want[3] = { l->has_oauth >= 0, l->has_compat >= 0, l->client != NULL };
    for (int s = 0; s < 3; s++) {
        if (!want[s])
            continue;
        *sets[s] = json_object();
        mx_pool_on_free(l->r->pool, aa_json_free, *sets[s]);
        for (int i = 0; i < mx_sql_nrows(res, st); i++)
            json_object_set_new(*sets[s], mx_sql_text(res, st, i, 0), json_true());
        st++;
    }
    aa_ul_list(l);
}

static void aa_users_checked(aa_req_t *r, void *ud);

static void aa_users_list(aa_req_t *r)
{
    aa_ul_t *l = mx_palloc(r->pool, sizeof(*l));
    if (!l) {
        aa_fail(r, -ENOMEM, "user list");
        return;
    }
    memset(l, 0, sizeof(*l));
    l->r = r;
    if (!aa_page_parse(r, &l->p) || !aa_qbool(r, "filter[admin]", &l->admin) ||
        !aa_qbool(r, "filter[legacy-guest]", &l->guest) ||
        !aa_qbool(r, "filter[has-active-oauth2-session]", &l->has_oauth) ||
        !aa_qbool(r, "filter[has-active-compat-session]", &l->has_compat))
        return;
    l->search = aa_qstr(r, "filter[search]");
    l->status = aa_qstr(r, "filter[status]");
    if (l->status && strcmp(l->status, "active") && strcmp(l->status, "locked") &&
        strcmp(l->status, "deactivated")) {
        aa_error(r->req, 400, "Invalid filter parameters: filter[status]");
        return;
    }
    /* Repeated: users with an active session of any of them (MAS). */
    char *client = aa_clients_where(r, "filter[active-oauth2-client]", "client_id", l->needs,
                                    &l->nneeds);
    if (!client)
        return;
    if (l->nneeds)
        l->client = client;
    aa_require(r, l->needs, l->nneeds, aa_users_checked, l);
}

/* The clients filter[active-oauth2-client] names exist. */
static void aa_users_checked(aa_req_t *r, void *ud)
{
    aa_ul_t *l = ud;
    if (l->has_oauth < 0 && l->has_compat < 0 && !l->client) {
        aa_ul_list(l);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_READ);
    if (!b) {
        aa_fail(r, -ENOMEM, "user list");
        return;
    }
    if (l->has_oauth >= 0)
        mx_sql_add(b, "SELECT DISTINCT user_id FROM auth_oauth_sessions"
                      " WHERE finished_ts IS NULL AND user_id IS NOT NULL", "");
    if (l->has_compat >= 0)
        mx_sql_add(b, "SELECT DISTINCT user_id FROM auth_compat_sessions"
                      " WHERE finished_ts IS NULL", "");
    if (l->client)
        mx_sql_add(b, mx_psprintf(r->pool, "SELECT DISTINCT user_id FROM auth_oauth_sessions"
                                           " WHERE finished_ts IS NULL AND user_id IS NOT NULL"
                                           " AND %s", l->client), "");
    if (mx_sql_run(b, aa_ul_sessions, l) < 0)
        aa_fail(r, -EIO, "user list");
}

int aa_users_routes(void)
{
    static const aa_route_def_t routes[] = {
        { "GET", "/users", aa_users_list },
        { "POST", "/users", aa_users_add },
        { "GET", "/users/by-username/{username}", aa_users_by_name },
        { "GET", "/users/{id}", aa_users_get },
        { "POST", "/users/{id}/set-password", aa_users_set_password },
        { "POST", "/users/{id}/lock", aa_users_lock },
        { "POST", "/users/{id}/unlock", aa_users_unlock },
        { "POST", "/users/{id}/deactivate", aa_users_deactivate },
        { "POST", "/users/{id}/reactivate", aa_users_reactivate },
        { "POST", "/users/{id}/set-admin", aa_users_set_admin },
    };
    return AA_ROUTES(routes);
}
