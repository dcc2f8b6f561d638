/*
 * au_admin_sessions.c: the admin API's sessions — OAuth 2.0 sessions
 * (/oauth2-sessions), compatibility sessions of legacy logins
 * (/compat-sessions) and browser sessions (/user-sessions): list with
 * filter[user|status|created-before|created-after|last-active-before|
 * last-active-after] (and filter[client|client-kind|scope] for OAuth;
 * `client` is the client's admin API ID, as MAS has it; filter[user-session]
 * for OAuth and compat: the browser session that authorized them), get,
 * and finish (which revokes the tokens, as the user's own logout would).
 * As in MAS, filter[client] may be repeated (any of them) and so may
 * filter[scope] (every one of them); a user, client or user session a
 * filter names that does not exist is answered 404.  Activity
 * (last_active_*, user_agent) comes from au_admin_activity.c.
 *
 * Browser sessions are stored by the hash of their cookie; their ULID is
 * derived from their creation time and that hash (au_ulid.c) and read back
 * the same way.
 */
#include "au_admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef enum { AA_OAUTH, AA_COMPAT, AA_BROWSER } aa_kind_t;

/* -------------------------------------------------------------- rows --- */

/* Every list joins the activity table as `a` (au_admin_activity.c); its
 * three columns come last. */
#define AA_ACT_COLS ", a.last_active_ts, a.last_active_ip, a.user_agent"
#define AA_ACT_JOIN(key) " LEFT JOIN auth_session_activity a ON a.session_id = " key

/* After the activity: the browser session's hash and creation time (its
 * ULID: user_session_id), NULL when the session has none. */
#define AA_BROWSER_OF(t)                                                     \
    ", " t ".browser_hash, (SELECT bs.created_ts FROM auth_browser_sessions bs" \
    " WHERE bs.id_hash = " t ".browser_hash)"
static void aa_user_session_attr(json_t *a, const mx_sql_res_t *res, int st, int i, int col)
{
    char id[AU_ULID_LEN + 1];
    bool has = !mx_sql_is_null(res, st, i, col) && !mx_sql_is_null(res, st, i, col + 1) &&
               au_ulid_from_hex((uint64_t)mx_sql_int(res, st, i, col + 1),
                                mx_sql_text(res, st, i, col), id) == 0;
    json_object_set_new(a, "user_session_id", has ? json_string(id) : json_null());
}

#define AA_OAUTH_COLS \
    "id, client_id, user_id, scope, created_ts, finished_ts" AA_ACT_COLS \
    AA_BROWSER_OF("auth_oauth_sessions")
static json_t *aa_oauth_row(const mx_sql_res_t *res, int st, int i)
{
    json_t *a = json_pack("{s:o, s:o, s:o, s:n, s:s, s:s, s:n}",
                          "created_at", aa_time(mx_sql_int(res, st, i, 4)),
                          "finished_at", aa_time(mx_sql_is_null(res, st, i, 5)
                                                     ? 0 : mx_sql_int(res, st, i, 5)),
                          "user_id", mx_sql_is_null(res, st, i, 2)
                                         ? json_null() : json_string(mx_sql_text(res, st, i, 2)),
                          "user_session_id", "client_id", mx_sql_text(res, st, i, 1),
                          "scope", mx_sql_text(res, st, i, 3), "human_name");
    char cid[AU_ULID_LEN + 1];
    aa_client_ulid(mx_sql_text(res, st, i, 1), cid);
    json_object_set_new(a, "client_id", json_string(cid));
    aa_activity_attrs(a, res, st, i, 6, true);
    aa_user_session_attr(a, res, st, i, 9);
    return aa_resource("oauth2-session", "oauth2-sessions", mx_sql_text(res, st, i, 0), a);
}

/* redirect_uri: the m.login.sso round trip's (MAS's). */
#define AA_COMPAT_COLS \
    "id, user_id, device_id, human_name, created_ts, finished_ts" AA_ACT_COLS \
    AA_BROWSER_OF("auth_compat_sessions") \
    ", (SELECT l.redirect_uri FROM auth_compat_sso_logins l" \
    " WHERE l.id = auth_compat_sessions.sso_login_id)"
static json_t *aa_compat_row(const mx_sql_res_t *res, int st, int i)
{
    json_t *a = json_pack("{s:s, s:s, s:n, s:n, s:o, s:o, s:o}",
                          "user_id", mx_sql_text(res, st, i, 1),
                          "device_id", mx_sql_text(res, st, i, 2),
                          "user_session_id", "redirect_uri",
                          "created_at", aa_time(mx_sql_int(res, st, i, 4)),
                          "finished_at", aa_time(mx_sql_is_null(res, st, i, 5)
                                                     ? 0 : mx_sql_int(res, st, i, 5)),
                          "human_name", mx_sql_is_null(res, st, i, 3)
                                            ? json_null()
                                            : json_string(mx_sql_text(res, st, i, 3)));
    aa_activity_attrs(a, res, st, i, 6, true);
    aa_user_session_attr(a, res, st, i, 9);
    if (!mx_sql_is_null(res, st, i, 11))
        json_object_set_new(a, "redirect_uri", json_string(mx_sql_text(res, st, i, 11)));
    return aa_resource("compat-session", "compat-sessions", mx_sql_text(res, st, i, 0), a);
}

#define AA_BROWSER_COLS "id_hash, user_id, created_ts, finished_ts" AA_ACT_COLS
static json_t *aa_browser_row(const mx_sql_res_t *res, int st, int i)
{
    char id[AU_ULID_LEN + 1];
    if (au_ulid_from_hex((uint64_t)mx_sql_int(res, st, i, 2), mx_sql_text(res, st, i, 0), id) < 0)
        return NULL;
    json_t *a = json_pack("{s:o, s:o, s:s}",
                          "created_at", aa_time(mx_sql_int(res, st, i, 2)),
                          "finished_at", aa_time(mx_sql_is_null(res, st, i, 3)
                                                     ? 0 : mx_sql_int(res, st, i, 3)),
                          "user_id", mx_sql_text(res, st, i, 1));
    aa_activity_attrs(a, res, st, i, 4, true);
    return aa_resource("user-session", "user-sessions", id, a);
}

static aa_list_t *aa_list_new(aa_req_t *r, aa_kind_t kind)
{
    static const struct {
        const char *cols, *from, *id_col;
        aa_row_fn row;
        const char *not_found;
    } k[] = {
        [AA_OAUTH] = { AA_OAUTH_COLS, "auth_oauth_sessions" AA_ACT_JOIN("id"), "id",
                       aa_oauth_row, "OAuth 2.0 session not found" },
        [AA_COMPAT] = { AA_COMPAT_COLS, "auth_compat_sessions" AA_ACT_JOIN("id"), "id",
                        aa_compat_row, "Compatibility session not found" },
        [AA_BROWSER] = { AA_BROWSER_COLS, "auth_browser_sessions" AA_ACT_JOIN("id_hash"), NULL,
                         aa_browser_row, "User session not found" },
    };
    aa_list_t *l = aa_list_make(r, k[kind].cols, k[kind].from, k[kind].id_col, k[kind].row,
                                k[kind].not_found);
    if (!l)
        return NULL;
    l->user_attr = "user_id";
    if (kind == AA_BROWSER) {   /* derived IDs: creation time + cookie hash */
        l->ts_col = "created_ts";
        l->hash_col = "id_hash";
    }
    return l;
}

/* Restricts `l` to the object `id` (false when `id` cannot name one). */
static bool aa_where_id(aa_req_t *r, aa_list_t *l, const char *id)
{
    if (l->id_col) {
        l->where = mx_psprintf(r->pool, "%s AND id = ?", l->where);
        l->args[l->nargs++] = id;
        return true;
    }
    uint64_t ms;
    char hex[21];
    if (au_ulid_to_hex(id, &ms, hex) < 0)
        return false;
    l->where = mx_psprintf(r->pool, "%s AND created_ts = %lld AND substr(id_hash, 1, 20) = '%s'",
                           l->where, (long long)ms, hex);
    return true;
}

/* --------------------------------------------------------------- lists --- */

/* A scope token (RFC 6749 NQCHAR: %x21 / %x23-5B / %x5D-7E), as MAS checks
 * filter[scope]. */
static bool aa_scope_token_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e || *s == '"' || *s == '\\')
            return false;
    return true;
}

char *aa_scopes_where(aa_req_t *r, const char *col, char *where, bool *bad)
{
    int n;
    const char **scopes = aa_qall(r, "filter[scope]", &n);
    *bad = false;
    for (int k = 0; scopes && where && k < n; k++) {
        const char *scope = scopes[k];
        if (!aa_scope_token_ok(scope)) {
            char *q = mx_palloc(r->pool, 2 * strlen(scope) + 1), *o = q;
            for (const char *c = scope; q && *c; c++) {   /* as Rust's {:?} quotes */
                if (*c == '"' || *c == '\\')
                    *o++ = '\\';
                *o++ = *c;
            }
            if (q)
                *o = '\0';
            *bad = true;
            aa_error(r->req, 400, mx_psprintf(r->pool, "Invalid scope \"%s\" in filter parameters",
                                              q ? q : ""));
            return NULL;
        }
        /* Every token the session must carry: LIKE with '!' escaping. */
        char *pat = mx_palloc(r->pool, 2 * strlen(scope) + 5), *o = pat;
        if (!pat)
            return NULL;
        *o++ = '%';
        *o++ = ' ';
        for (const char *c = scope; *c; c++) {
            if (*c == '%' || *c == '_' || *c == '!')
                *o++ = '!';
            *o++ = *c;
        }
        *o++ = ' ';
        *o++ = '%';
        *o = '\0';
        where = mx_psprintf(r->pool, "%s AND (' ' || %s || ' ') LIKE %s ESCAPE '!'", where, col,
                            aa_sql_quote(r->pool, pat));
    }
    return scopes ? where : NULL;
}

typedef struct aa_sl {
    aa_page_t page;
    aa_list_t *l;
    const char *user;
    aa_need_t needs[AA_MAX_NEEDS + 1];   /* clients, then the user session */
    int nneeds;
} aa_sl_t;

static void aa_sessions_checked(aa_req_t *r, void *ud)
{
    aa_sl_t *q = ud;
    aa_list_run_for_user(r, &q->page, q->l, q->user);
}

char *aa_clients_where(aa_req_t *r, const char *name, const char *col, aa_need_t *needs,
                       int *nneeds)
{
    int n;
    const char **ids = aa_qall_ulids(r, name, &n);
    if (!ids)
        return NULL;
    if (n == 0)
        return mx_pstrdup(r->pool, "1=1");
    if (*nneeds + n > AA_MAX_NEEDS) {
        aa_error(r->req, 400, mx_psprintf(r->pool, "Invalid filter parameters: %s", name));
        return NULL;
    }
    char *w = NULL;
    for (int k = 0; k < n; k++) {
        char *one = aa_client_id_where(r, col, ids[k]);
        w = one ? mx_psprintf(r->pool, "%s%s%s", w ? w : "", w ? " OR " : "", one) : NULL;
        if (!w || !aa_need_client(r, &needs[(*nneeds)++], ids[k])) {
            aa_fail(r, -ENOMEM, "filter");
            return NULL;
        }
    }
    return mx_psprintf(r->pool, "(%s)", w);
}

static void aa_sessions_list(aa_req_t *r, aa_kind_t kind)
{
    aa_list_t *l = aa_list_new(r, kind);
    aa_sl_t *q = mx_palloc(r->pool, sizeof(*q));
    bool bad = false;
    if (!aa_list_begin(r, q ? l : NULL, q ? &q->page : NULL, q ? &q->user : NULL, "sessions"))
        return;
    q->l = l;
    q->nneeds = 0;
    const char *status = aa_qstr(r, "filter[status]");
    if (status && strcmp(status, "active") && strcmp(status, "finished")) {
        aa_error(r->req, 400, "Invalid filter parameters: filter[status]");
        return;
    }
    if (status)
        l->where = mx_psprintf(r->pool, "%s AND finished_ts IS %sNULL", l->where,
                               strcmp(status, "active") ? "NOT " : "");
    if (kind == AA_OAUTH) {
        char *clients = aa_clients_where(r, "filter[client]", "client_id", q->needs, &q->nneeds);
        if (!clients)
            return;
        char *ckind = aa_client_kind_where(r, "client_id", &bad);
        if (!ckind) {
            if (!bad)
                aa_fail(r, -ENOMEM, "sessions");
            return;
        }
        l->where = mx_psprintf(r->pool, "%s AND %s AND %s", l->where, ckind, clients);
        if (!(l->where = aa_scopes_where(r, "scope", l->where, &bad))) {
            if (!bad)
                aa_fail(r, -ENOMEM, "sessions");
            return;
        }
    }
    if (kind != AA_BROWSER) {   /* the browser session that authorized them */
        const char *us = aa_qulid(r, "filter[user-session]", &bad);
        if (bad)
            return;
        if (us) {
            const char *t = kind == AA_OAUTH ? "auth_oauth_sessions" : "auth_compat_sessions";
            char *w = aa_user_session_where(r, mx_psprintf(r->pool, "%s.browser_hash", t), us);
            if (!w || !aa_need_user_session(r, &q->needs[q->nneeds++], us)) {
                aa_fail(r, -ENOMEM, "sessions");
                return;
            }
            l->where = mx_psprintf(r->pool, "%s AND %s", l->where, w);
        }
    }
    char *where = aa_activity_filters(r, l->where, &bad);
    if (!where) {
        if (!bad)
            aa_fail(r, -ENOMEM, "sessions");
        return;
    }
    l->where = where;
    aa_require(r, q->needs, q->nneeds, aa_sessions_checked, q);
}

static void aa_oauth_list(aa_req_t *r) { aa_sessions_list(r, AA_OAUTH); }
static void aa_compat_list(aa_req_t *r) { aa_sessions_list(r, AA_COMPAT); }
static void aa_browser_list(aa_req_t *r) { aa_sessions_list(r, AA_BROWSER); }

static void aa_sessions_get(aa_req_t *r, aa_kind_t kind, const char *self)
{
    const char *id = aa_path_id(r);
    aa_list_t *l = id ? aa_list_new(r, kind) : NULL;
    if (!id)
        return;
    if (!l || !aa_where_id(r, l, id)) {
        aa_fail(r, -ENOMEM, "session");
        return;
    }
    aa_get_run(r, l, self);
}

static void aa_oauth_get(aa_req_t *r) { aa_sessions_get(r, AA_OAUTH, NULL); }
static void aa_compat_get(aa_req_t *r) { aa_sessions_get(r, AA_COMPAT, NULL); }
static void aa_browser_get(aa_req_t *r) { aa_sessions_get(r, AA_BROWSER, NULL); }

/* -------------------------------------------------------------- finish --- */

typedef struct aa_fin {
    aa_req_t *r;
    aa_kind_t kind;
    const char *id;
} aa_fin_t;

static void aa_fin_done(int status, void *ud)
{
    aa_fin_t *f = ud;
    if (status < 0) {
        aa_fail(f->r, status, "finishing a session");
        return;
    }
    aa_sessions_get(f->r, f->kind, NULL);
}

static void aa_fin_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_fin_t *f = ud;
    aa_req_t *r = f->r;
    static const char *const names[] = { "OAuth 2.0 session", "Compatibility session",
                                         "User session" };
    if (status < 0) {
        aa_fail(r, status, "session");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        aa_error(r->req, 404, mx_psprintf(r->pool, "%s ID %s not found", names[f->kind], f->id));
        return;
    }
    if (!mx_sql_is_null(res, 0, 0, 1)) {
        aa_error(r->req, 400, mx_psprintf(r->pool, "%s ID %s is already finished",
                                          names[f->kind], f->id));
        return;
    }
    const char *key = mx_pstrdup(r->pool, mx_sql_text(res, 0, 0, 0));
    int rc = f->kind == AA_OAUTH    ? au_session_finish(key, aa_fin_done, f)
             : f->kind == AA_COMPAT ? au_compat_finish(key, true, aa_fin_done, f)
                                    : au_browser_end(key, NULL, aa_fin_done, f);
    if (rc < 0)
        aa_fail(r, rc, "finishing a session");
}

static void aa_sessions_finish(aa_req_t *r, aa_kind_t kind)
{
    const char *id = aa_path_id(r);
    aa_fin_t *f = id ? mx_palloc(r->pool, sizeof(*f)) : NULL;
    aa_list_t *l = f ? aa_list_new(r, kind) : NULL;
    if (!id)
        return;
    mx_sql_batch_t *b = l && aa_where_id(r, l, id) ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        aa_fail(r, -ENOMEM, "session");
        return;
    }
    f->r = r;
    f->kind = kind;
    f->id = id;
    const char *key = kind == AA_BROWSER ? "id_hash" : "id";
    mx_sql_add(b, mx_psprintf(r->pool, "SELECT %s, finished_ts FROM %s WHERE %s", key, l->from,
                              l->where), l->nargs ? "s" : "", l->args[0]);
    if (mx_sql_run(b, aa_fin_read, f) < 0)
        aa_fail(r, -EIO, "session");
}

static void aa_oauth_finish(aa_req_t *r) { aa_sessions_finish(r, AA_OAUTH); }
static void aa_compat_finish(aa_req_t *r) { aa_sessions_finish(r, AA_COMPAT); }
static void aa_browser_finish(aa_req_t *r) { aa_sessions_finish(r, AA_BROWSER); }

int aa_sessions_routes(void)
{
    static const aa_route_def_t routes[] = {
        { "GET", "/oauth2-sessions", aa_oauth_list },
        { "GET", "/oauth2-sessions/{id}", aa_oauth_get },
        { "POST", "/oauth2-sessions/{id}/finish", aa_oauth_finish },
        { "GET", "/compat-sessions", aa_compat_list },
        { "GET", "/compat-sessions/{id}", aa_compat_get },
        { "POST", "/compat-sessions/{id}/finish", aa_compat_finish },
        { "GET", "/user-sessions", aa_browser_list },
        { "GET", "/user-sessions/{id}", aa_browser_get },
        { "POST", "/user-sessions/{id}/finish", aa_browser_finish },
    };
    return AA_ROUTES(routes);
}
