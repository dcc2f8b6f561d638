/*
 * au_admin_personal.c: personal sessions (MAS's /personal-sessions): an
 * admin (or an admin client) creates a session acting as a user, with a
 * scope and a name, and gets its personal access token ("mpt_") once.
 *
 *   GET  /personal-sessions          filter[owner_user|owner_client|
 *                                    actor_user|scope|status|expires|
 *                                    expires_before|expires_after]
 *   POST /personal-sessions          {actor_user_id, human_name, scope,
 *                                    expires_in?} → 201 with access_token
 *   GET  /personal-sessions/{id}
 *   POST /personal-sessions/{id}/revoke       409 when already revoked
 *   POST /personal-sessions/{id}/regenerate   {expires_in?}: a new token
 *                                    replaces the live one (owner only)
 *
 * The tokens are stored as sha256 and looked up by au_token_lookup like
 * OAuth ones (aa_personal_lookup_sql), so they work on the homeserver, at
 * introspection and on this API.  A device scope in the session's scope is
 * its device: created in the homeserver at creation when delegating,
 * deleted when the session is revoked.
 */
#include "au_admin.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char aa_personal_lookup_sql[] =
    "SELECT t.session_id, t.created_ts, t.expires_ts,"
    " CASE WHEN t.revoked_ts IS NULL THEN 0 ELSE 1 END, NULL, s.actor_user_id,"
    " s.device_id, s.scope, s.revoked_ts"
    " FROM auth_personal_tokens t JOIN auth_personal_sessions s ON s.id = t.session_id"
    " WHERE t.token_hash = ?";

/* -------------------------------------------------------------- rows --- */

#define AA_PS_COLS                                                                     \
    "s.id, s.owner_user_id, s.owner_client_id, s.actor_user_id, s.human_name, s.scope," \
    " s.created_ts, s.revoked_ts, t.expires_ts, a.last_active_ts, a.last_active_ip"
#define AA_PS_FROM                                                                          \
    "auth_personal_sessions s"                                                              \
    " LEFT JOIN auth_personal_tokens t ON t.session_id = s.id AND t.revoked_ts IS NULL"     \
    " LEFT JOIN auth_session_activity a ON a.session_id = s.id"

static json_t *aa_opt_text(const mx_sql_res_t *res, int st, int i, int c)
{
    return mx_sql_is_null(res, st, i, c) ? json_null() : json_string(mx_sql_text(res, st, i, c));
}

static json_t *aa_ps_row(const mx_sql_res_t *res, int st, int i)
{
    bool revoked = !mx_sql_is_null(res, st, i, 7);
    json_t *a = json_pack("{s:o, s:o, s:o, s:o, s:s, s:s, s:s, s:o}",
                          "created_at", aa_time(mx_sql_int(res, st, i, 6)),
                          "revoked_at", aa_time(revoked ? mx_sql_int(res, st, i, 7) : 0),
                          "owner_user_id", aa_opt_text(res, st, i, 1),
                          "owner_client_id", aa_opt_text(res, st, i, 2),
                          "actor_user_id", mx_sql_text(res, st, i, 3),
                          "human_name", mx_sql_text(res, st, i, 4),
                          "scope", mx_sql_text(res, st, i, 5),
                          "expires_at", aa_time(revoked || mx_sql_is_null(res, st, i, 8)
                                                    ? 0 : mx_sql_int(res, st, i, 8)));
    aa_activity_attrs(a, res, st, i, 9, false);
    return aa_resource("personal-session", "personal-sessions", mx_sql_text(res, st, i, 0), a);
}

static aa_list_t *aa_ps_new(aa_req_t *r)
{
    aa_list_t *l = aa_list_make(r, AA_PS_COLS, AA_PS_FROM, "s.id", aa_ps_row,
                                "Personal session not found");
    if (l) {
        l->user_attr = "actor_user_id";
        l->user_attr2 = "owner_user_id";
    }
    return l;
}

static void aa_json_put(void *p)
{
    json_decref(p);
}

/* The object `id`, answered with `status`; `token` (may be NULL) shown once. */
static void aa_ps_reply(aa_req_t *r, const char *id, int status, const char *token)
{
    aa_list_t *l = aa_ps_new(r);
    if (l && token) {
        l->merge = json_pack("{s:s}", "access_token", token);
        mx_pool_on_free(r->pool, aa_json_put, l->merge);
    }
    if (l) {
        l->where = mx_psprintf(r->pool, "%s AND s.id = ?", l->where);
        l->args[l->nargs++] = id;
        l->status = status;
        aa_get_run(r, l, mx_psprintf(r->pool, AA_BASE "/personal-sessions/%s", id));
        return;
    }
    aa_fail(r, -ENOMEM, "personal session");
}

/* --------------------------------------------------------------- list --- */

typedef struct aa_psl {
    aa_page_t p;
    aa_list_t *l;
    aa_need_t needs[3];
} aa_psl_t;

static void aa_ps_checked(aa_req_t *r, void *ud)
{
    aa_psl_t *q = ud;
    aa_list_run(r, &q->p, q->l);
}

/* filter[owner_user|actor_user|owner_client] name existing objects (MAS:
 * 404 otherwise); filter[scope] may be repeated (every one). */
static void aa_ps_list(aa_req_t *r)
{
    aa_psl_t *q = mx_palloc(r->pool, sizeof(*q));
    int nneeds = 0;
    aa_list_t *l = q ? aa_ps_new(r) : NULL;
    bool bad = false;
    int expires;
    if (!l) {
        aa_fail(r, -ENOMEM, "personal sessions");
        return;
    }
    if (!aa_page_parse(r, &q->p))
        return;
    const char *owner_user = aa_qulid(r, "filter[owner_user]", &bad);
    const char *actor_user = bad ? NULL : aa_qulid(r, "filter[actor_user]", &bad);
    const char *owner_client = bad ? NULL : aa_qulid(r, "filter[owner_client]", &bad);
    if (bad || !aa_qbool(r, "filter[expires]", &expires))
        return;
    const char *status = aa_qstr(r, "filter[status]");
    if (status && strcmp(status, "active") && strcmp(status, "revoked")) {
        aa_error(r->req, 400, "Invalid filter parameters: filter[status]");
        return;
    }
    if (owner_user) {
        l->where = mx_psprintf(r->pool, "%s AND s.owner_user_id ="
                                        " (SELECT user_id FROM auth_admin_users WHERE id = ?)",
                               l->where);
        l->args[l->nargs++] = owner_user;
        if (!aa_need_user(r, &q->needs[nneeds++], owner_user))
            l->where = NULL;
    }
    if (actor_user) {
        l->where = mx_psprintf(r->pool, "%s AND s.actor_user_id ="
                                        " (SELECT user_id FROM auth_admin_users WHERE id = ?)",
                               l->where);
        l->args[l->nargs++] = actor_user;
        if (l->where && !aa_need_user(r, &q->needs[nneeds++], actor_user))
            l->where = NULL;
    }
    if (owner_client && l->where) {
        char *w = aa_client_id_where(r, "s.owner_client_id", owner_client);
        l->where = w ? mx_psprintf(r->pool, "%s AND %s", l->where, w) : NULL;
        if (l->where && !aa_need_client(r, &q->needs[nneeds++], owner_client))
            l->where = NULL;
    }
    if (!l->where) {
        aa_fail(r, -ENOMEM, "personal sessions");
        return;
    }
    if (!(l->where = aa_scopes_where(r, "s.scope", l->where, &bad))) {
        if (!bad)
            aa_fail(r, -ENOMEM, "personal sessions");
        return;
    }
    if (status)
        l->where = mx_psprintf(r->pool, "%s AND s.revoked_ts IS %sNULL", l->where,
                               strcmp(status, "active") ? "NOT " : "");
    if (expires >= 0)
        l->where = mx_psprintf(r->pool, "%s AND t.expires_ts IS %sNULL", l->where,
                               expires ? "NOT " : "");
    static const char *const bounds[][2] = { { "filter[expires_before]", "<" },
                                             { "filter[expires_after]", ">" } };
    for (size_t k = 0; k < 2; k++) {
        const char *v = aa_qstr(r, bounds[k][0]);
        int64_t ms;
        if (!v)
            continue;
        if (aa_time_parse(v, &ms) < 0) {
            aa_error(r->req, 400, mx_psprintf(r->pool, "Invalid filter parameters: %s",
                                              bounds[k][0]));
            return;
        }
        l->where = mx_psprintf(r->pool, "%s AND t.expires_ts %s %lld", l->where, bounds[k][1],
                               (long long)ms);
    }
    q->l = l;
    aa_require(r, q->needs, nneeds, aa_ps_checked, q);
}

static void aa_ps_get(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    if (id)
        aa_ps_reply(r, id, 200, NULL);
}

/* ------------------------------------------------------------- create --- */

typedef struct aa_psc {
    aa_req_t *r;
    const char *id, *token, *actor, *name, *scope, *device;
    int64_t expires_in;           /* seconds, -1: never */
    int status;                   /* reply status */
} aa_psc_t;

static void aa_psc_device(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    aa_psc_t *c = ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "personal session %s: device not created (%d)", c->id, status);
    aa_ps_reply(c->r, c->id, c->status, c->token);
}

static void aa_psc_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    aa_psc_t *c = ud;
    if (status < 0) {
        aa_fail(c->r, status, "personal session");
        return;
    }
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (c->device && c->actor && au.conf->delegate_homeserver && users &&
        users->upsert_device(c->actor, c->device, NULL, aa_psc_device, c) == 0)
        return;
    aa_ps_reply(c->r, c->id, c->status, c->token);
}

/* Adds the token of `c` (a new random one) to batch `b`. */
static void aa_psc_add_token(aa_psc_t *c, mx_sql_batch_t *b, int64_t now)
{
    char h[AU_HASH_HEX];
    au_hash_hex(c->token, h);
    mx_sql_add(b, mx_psprintf(c->r->pool, "INSERT INTO auth_personal_tokens (token_hash,"
                                          " session_id, created_ts, expires_ts) VALUES (?, ?, ?, %s)",
                              c->expires_in < 0 ? "NULL"
                                                : mx_psprintf(c->r->pool, "%lld",
                                                              (long long)(now + c->expires_in *
                                                                                    1000))),
               "ssi", h, c->id, now);
}

static void aa_psc_actor(int status, const hs_users_info_t *u, void *ud)
{
    aa_psc_t *c = ud;
    aa_req_t *r = c->r;
    if (status == -ENOENT || (status == 0 && !u)) {
        aa_error(r->req, 404, "User not found");
        return;
    }
    if (status < 0) {
        aa_fail(r, status, "user lookup");
        return;
    }
    if (u->deactivated || u->locked) {
        aa_error(r->req, 410, "User is not active");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        aa_fail(r, -ENOMEM, "personal session");
        return;
    }
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b, "INSERT INTO auth_personal_sessions (id, owner_user_id, owner_client_id,"
                  " actor_user_id, human_name, scope, device_id, created_ts)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               "sssssssi", c->id, r->caller, r->caller ? NULL : r->client_id, c->actor, c->name,
               c->scope, c->device, now);
    aa_psc_add_token(c, b, now);
    if (mx_sql_run(b, aa_psc_written, c) < 0)
        aa_fail(r, -EIO, "personal session");
}

static void aa_psc_user(aa_req_t *r, int status, const char *user_id)
{
    aa_psc_t *c = r->priv;
    if (status >= 0 && !user_id) {
        aa_error(r->req, 404, "User not found");
        return;
    }
    if (!aa_user_found(r, status, user_id, NULL))
        return;
    c->actor = mx_pstrdup(r->pool, user_id);
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    int rc = users ? users->get(c->actor, aa_psc_actor, c) : -ENOSYS;
    if (rc < 0)
        aa_fail(r, rc, "user lookup");
}

/* Reads expires_in of `body` into c->expires_in; false when bad (400 sent). */
static bool aa_psc_expiry(aa_req_t *r, json_t *body, aa_psc_t *c)
{
    int64_t v = 0;
    int h = aa_body_uint(r, body, "expires_in", &v);
    c->expires_in = h == 1 ? v : -1;
    return h != -2;
}

static aa_psc_t *aa_psc_new(aa_req_t *r)
{
    aa_psc_t *c = mx_palloc(r->pool, sizeof(*c));
    if (c) {
        memset(c, 0, sizeof(*c));
        c->r = r;
        c->status = 201;
        c->token = au_token_new(r->pool, "mpt", 36);
    }
    return c;
}

static void aa_ps_create(aa_req_t *r)
{
    json_t *body = aa_body(r);
    if (!body)
        return;
    aa_psc_t *c = aa_psc_new(r);
    if (!c || !c->token || !(c->id = au_ulid(r->pool))) {
        aa_fail(r, -ENOMEM, "personal session");
        return;
    }
    const char *actor = json_string_value(json_object_get(body, "actor_user_id"));
    c->name = json_string_value(json_object_get(body, "human_name"));
    c->scope = json_string_value(json_object_get(body, "scope"));
    if (!actor || !au_ulid_valid(actor) || !c->name || !c->scope || strlen(c->name) > 255) {
        aa_error(r->req, 400, "Failed to deserialize the JSON body");
        return;
    }
    if (!aa_psc_expiry(r, body, c))
        return;
    au_scope_t sc;
    const char *badtok = NULL;
    int rc = au_scope_parse(r->pool, c->scope, &sc, &badtok);
    json_decref(sc.list);
    if (rc < 0 || !*c->scope) {
        aa_error(r->req, 400, "Invalid scope");
        return;
    }
    c->device = sc.device_id;
    r->priv = c;
    aa_user_of(r, actor, aa_psc_user);
}

/* ----------------------------------------------- revoke and regenerate --- */

typedef struct aa_psx {
    aa_psc_t *c;
    bool regenerate;
} aa_psx_t;

static void aa_psx_device_gone(int status, const hs_users_info_t *u, void *ud)
{
    (void)u;
    (void)ud;
    if (status < 0 && status != -ENOENT)
        mx_log(AU_LOG, MX_LOG_WARN, "device of a revoked personal session kept (%d)", status);
}

static void aa_psx_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    aa_psx_t *x = ud;
    aa_psc_t *c = x->c;
    if (status < 0) {
        aa_fail(c->r, status, "personal session");
        return;
    }
    au_cache_evict_session(c->id);
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!x->regenerate && c->device && au.conf->delegate_homeserver && users)
        users->delete_device(c->actor, c->device, aa_psx_device_gone, NULL);
    aa_ps_reply(c->r, c->id, c->status, x->regenerate ? c->token : NULL);
}

static void aa_psx_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_psx_t *x = ud;
    aa_psc_t *c = x->c;
    aa_req_t *r = c->r;
    if (status < 0) {
        aa_fail(r, status, "personal session");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        aa_error(r->req, 404, x->regenerate ? "Session not found"
                                            : mx_psprintf(r->pool, "Personal session with ID %s"
                                                                   " not found", c->id));
        return;
    }
    /* owner_user_id, owner_client_id, actor_user_id, device_id, revoked_ts */
    if (!mx_sql_is_null(res, 0, 0, 4)) {
        if (x->regenerate)
            aa_error(r->req, 422, "Session not valid");
        else
            aa_error(r->req, 409, mx_psprintf(r->pool, "Personal session with ID %s is already"
                                                       " revoked", c->id));
        return;
    }
    const char *ou = mx_sql_is_null(res, 0, 0, 0) ? NULL : mx_sql_text(res, 0, 0, 0);
    const char *oc = mx_sql_is_null(res, 0, 0, 1) ? NULL : mx_sql_text(res, 0, 0, 1);
    bool mine = r->caller ? ou && !strcmp(ou, r->caller)
                          : !ou && oc && r->client_id && !strcmp(oc, r->client_id);
    if (x->regenerate && !mine) {
        aa_error(r->req, 403, "Session does not belong to you");
        return;
    }
    c->actor = mx_pstrdup(r->pool, mx_sql_text(res, 0, 0, 2));
    c->device = mx_sql_is_null(res, 0, 0, 3) ? NULL : mx_pstrdup(r->pool, mx_sql_text(res, 0, 0, 3));
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        aa_fail(r, -ENOMEM, "personal session");
        return;
    }
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b, "UPDATE auth_personal_tokens SET revoked_ts = ? WHERE session_id = ?"
                  " AND revoked_ts IS NULL", "is", now, c->id);
    if (x->regenerate)
        aa_psc_add_token(c, b, now);
    else
        mx_sql_add(b, "UPDATE auth_personal_sessions SET revoked_ts = ? WHERE id = ?", "is", now,
                   c->id);
    if (mx_sql_run(b, aa_psx_written, x) < 0)
        aa_fail(r, -EIO, "personal session");
}

static void aa_ps_change(aa_req_t *r, bool regenerate)
{
    const char *id = aa_path_id(r);
    if (!id)
        return;
    json_t *body = regenerate ? aa_body(r) : NULL;
    if (regenerate && !body)
        return;
    aa_psc_t *c = aa_psc_new(r);
    aa_psx_t *x = c ? mx_palloc(r->pool, sizeof(*x)) : NULL;
    mx_sql_batch_t *b = x && c->token ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        aa_fail(r, -ENOMEM, "personal session");
        return;
    }
    c->id = id;
    c->status = regenerate ? 201 : 200;
    x->c = c;
    x->regenerate = regenerate;
    if (regenerate && !aa_psc_expiry(r, body, c)) {
        mx_sql_batch_free(b);
        return;
    }
    mx_sql_add(b, "SELECT owner_user_id, owner_client_id, actor_user_id, device_id, revoked_ts"
                  " FROM auth_personal_sessions WHERE id = ?", "s", id);
    if (mx_sql_run(b, aa_psx_read, x) < 0)
        aa_fail(r, -EIO, "personal session");
}

static void aa_ps_revoke(aa_req_t *r) { aa_ps_change(r, false); }
static void aa_ps_regenerate(aa_req_t *r) { aa_ps_change(r, true); }

int aa_personal_routes(void)
{
    static const aa_route_def_t routes[] = {
        { "GET", "/personal-sessions", aa_ps_list },
        { "POST", "/personal-sessions", aa_ps_create },
        { "GET", "/personal-sessions/{id}", aa_ps_get },
        { "POST", "/personal-sessions/{id}/revoke", aa_ps_revoke },
        { "POST", "/personal-sessions/{id}/regenerate", aa_ps_regenerate },
    };
    return AA_ROUTES(routes);
}
