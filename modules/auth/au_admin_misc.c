/*
 * au_admin_misc.c: the admin API's registration tokens
 * (/user-registration-tokens: list with filter[used|revoked|expired|valid],
 * get, add, edit, revoke, unrevoke — the tokens of token-gated
 * registration, table auth_registration_tokens of au_flows_schema.c) and
 * user e-mail addresses (/user-emails: list, get, add, delete; table
 * auth_admin_user_emails).
 */
#include "au_admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------- registration tokens --- */

#define AA_TOK_COLS                                                                     \
    "id, token, usage_limit, times_used, created_ts, last_used_ts, expires_ts, revoked_ts"

static int64_t aa_col(const mx_sql_res_t *res, int st, int i, int c)
{
    return mx_sql_is_null(res, st, i, c) ? 0 : mx_sql_int(res, st, i, c);
}

static json_t *aa_token_row(const mx_sql_res_t *res, int st, int i)
{
    int64_t now = (int64_t)mx_now_ms(), used = mx_sql_int(res, st, i, 3);
    int64_t expires = aa_col(res, st, i, 6), revoked = aa_col(res, st, i, 7);
    bool limited = !mx_sql_is_null(res, st, i, 2);
    int64_t limit = aa_col(res, st, i, 2);
    bool valid = !revoked && (!expires || expires > now) && (!limited || used < limit);
    json_t *a = json_pack("{s:s, s:b, s:o, s:I, s:o, s:o, s:o, s:o}",
                          "token", mx_sql_text(res, st, i, 1), "valid", valid,
                          "usage_limit", limited ? json_integer(limit) : json_null(),
                          "times_used", (json_int_t)used,
                          "created_at", aa_time(mx_sql_int(res, st, i, 4)),
                          "last_used_at", aa_time(aa_col(res, st, i, 5)),
                          "expires_at", aa_time(expires), "revoked_at", aa_time(revoked));
    return aa_resource("user-registration_token", "user-registration-tokens",
                       mx_sql_text(res, st, i, 0), a);
}

static aa_list_t *aa_tokens_new(aa_req_t *r)
{
    return aa_list_make(r, AA_TOK_COLS, "auth_registration_tokens", "id", aa_token_row,
                        "Registration token not found");
}

static void aa_tokens_list(aa_req_t *r)
{
    aa_page_t p;
    aa_list_t *l = aa_tokens_new(r);
    int used, revoked, expired, valid;
    if (!l) {
        aa_fail(r, -ENOMEM, "tokens");
        return;
    }
    if (!aa_page_parse(r, &p) || !aa_qbool(r, "filter[used]", &used) ||
        !aa_qbool(r, "filter[revoked]", &revoked) || !aa_qbool(r, "filter[expired]", &expired) ||
        !aa_qbool(r, "filter[valid]", &valid))
        return;
    long long now = (long long)mx_now_ms();
    if (used >= 0)
        l->where = mx_psprintf(r->pool, "%s AND times_used %s 0", l->where, used ? ">" : "=");
    if (revoked >= 0)
        l->where = mx_psprintf(r->pool, "%s AND revoked_ts IS %sNULL", l->where,
                               revoked ? "NOT " : "");
    const char *exp = mx_psprintf(r->pool, "(expires_ts IS NOT NULL AND expires_ts <= %lld)", now);
    if (expired >= 0)
        l->where = mx_psprintf(r->pool, "%s AND %s%s", l->where, expired ? "" : "NOT ", exp);
    if (valid >= 0)
        l->where = mx_psprintf(r->pool,
                               "%s AND %s(revoked_ts IS NULL AND NOT %s AND (usage_limit IS NULL"
                               " OR times_used < usage_limit))",
                               l->where, valid ? "" : "NOT ", exp);
    aa_list_run(r, &p, l);
}

static void aa_tokens_get(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    if (id)
        aa_get_by_id(r, aa_tokens_new(r), id, 0, NULL);
}

/* A nullable field of a body: 1 set (value in *v), 0 null, -1 absent,
 * -2 bad (400 sent). */
static int aa_body_time(aa_req_t *r, json_t *body, const char *k, int64_t *v)
{
    json_t *j = json_object_get(body, k);
    if (!j)
        return -1;
    if (json_is_null(j))
        return 0;
    if (!json_is_string(j) || aa_time_parse(json_string_value(j), v) < 0) {
        aa_error(r->req, 400, mx_psprintf(r->pool, "Failed to deserialize the JSON body: %s", k));
        return -2;
    }
    return 1;
}

int aa_body_uint(aa_req_t *r, json_t *body, const char *k, int64_t *v)
{
    json_t *j = json_object_get(body, k);
    if (!j)
        return -1;
    if (json_is_null(j))
        return 0;
    if (!json_is_integer(j) || json_integer_value(j) < 0 || json_integer_value(j) > 0xffffffffLL) {
        aa_error(r->req, 400, mx_psprintf(r->pool, "Failed to deserialize the JSON body: %s", k));
        return -2;
    }
    *v = json_integer_value(j);
    return 1;
}

typedef struct aa_tw {
    aa_req_t *r;
    const char *id;
    int status;
    const char *conflict;
} aa_tw_t;

static void aa_tokens_written(int status, mx_sql_res_t *res, void *ud)
{
    aa_tw_t *w = ud;
    if (status == MX_ECONSTRAINT && w->conflict) {
        aa_error(w->r->req, 409, w->conflict);
        return;
    }
    if (status < 0) {
        aa_fail(w->r, status, "token");
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        aa_error(w->r->req, 404, mx_psprintf(w->r->pool, "Registration token with ID %s not found",
                                             w->id));
        return;
    }
    aa_get_by_id(w->r, aa_tokens_new(w->r), w->id, w->status, NULL);
}

static aa_tw_t *aa_tw_new(aa_req_t *r, const char *id)
{
    aa_tw_t *w = mx_palloc(r->pool, sizeof(*w));
    if (w) {
        memset(w, 0, sizeof(*w));
        w->r = r;
        w->id = id;
        w->status = 200;
    }
    return w;
}

static void aa_tokens_add(aa_req_t *r)
{
    json_t *body = aa_body(r);
    if (!body)
        return;
    int64_t limit = 0, expires = 0;
    int hl = aa_body_uint(r, body, "usage_limit", &limit);
    if (hl == -2)
        return;
    int he = aa_body_time(r, body, "expires_at", &expires);
    if (he == -2)
        return;
    json_t *tj = json_object_get(body, "token");
    if (tj && !json_is_null(tj) && (!json_is_string(tj) || !*json_string_value(tj) ||
                                    strlen(json_string_value(tj)) > 255)) {
        aa_error(r->req, 400, "Failed to deserialize the JSON body: token");
        return;
    }
    const char *token = json_string_value(tj);
    if (!token)
        token = au_token_new(r->pool, NULL, 12);
    aa_tw_t *w = aa_tw_new(r, au_ulid(r->pool));
    mx_sql_batch_t *b = w && w->id && token ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        aa_fail(r, -ENOMEM, "token");
        return;
    }
    w->status = 201;
    w->conflict = "A registration token with this value already exists";
    mx_sql_add(b, mx_psprintf(r->pool, "INSERT INTO auth_registration_tokens (id, token,"
                                       " usage_limit, times_used, created_ts, expires_ts)"
                                       " VALUES (?, ?, %s, 0, ?, %s)",
                              hl == 1 ? mx_psprintf(r->pool, "%lld", (long long)limit) : "NULL",
                              he == 1 ? mx_psprintf(r->pool, "%lld", (long long)expires)
                                      : "NULL"),
               "ssi", w->id, token, (int64_t)mx_now_ms());
    if (mx_sql_run(b, aa_tokens_written, w) < 0)
        aa_fail(r, -EIO, "token");
}

static void aa_tokens_edit(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    json_t *body = id ? aa_body(r) : NULL;
    if (!body)
        return;
    int64_t limit = 0, expires = 0;
    int hl = aa_body_uint(r, body, "usage_limit", &limit);
    if (hl == -2)
        return;
    int he = aa_body_time(r, body, "expires_at", &expires);
    if (he == -2)
        return;
    char *set = mx_pstrdup(r->pool, "id = id");
    if (hl >= 0)
        set = mx_psprintf(r->pool, "%s, usage_limit = %s", set,
                          hl ? mx_psprintf(r->pool, "%lld", (long long)limit) : "NULL");
    if (he >= 0)
        set = mx_psprintf(r->pool, "%s, expires_ts = %s", set,
                          he ? mx_psprintf(r->pool, "%lld", (long long)expires) : "NULL");
    aa_tw_t *w = aa_tw_new(r, id);
    mx_sql_batch_t *b = w ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        aa_fail(r, -ENOMEM, "token");
        return;
    }
    mx_sql_add(b, mx_psprintf(r->pool, "UPDATE auth_registration_tokens SET %s WHERE id = ?", set),
               "s", id);
    if (mx_sql_run(b, aa_tokens_written, w) < 0)
        aa_fail(r, -EIO, "token");
}

/* revoke / unrevoke: the state is checked first for MAS's 400. */
typedef struct aa_rv {
    aa_tw_t *w;
    bool revoke;
} aa_rv_t;

static void aa_rv_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_rv_t *v = ud;
    aa_req_t *r = v->w->r;
    if (status < 0) {
        aa_fail(r, status, "token");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        aa_error(r->req, 404, mx_psprintf(r->pool, "Registration token with ID %s not found",
                                          v->w->id));
        return;
    }
    bool revoked = !mx_sql_is_null(res, 0, 0, 0);
    if (revoked == v->revoke) {
        aa_error(r->req, 400, mx_psprintf(r->pool, "Registration token with ID %s is %s revoked",
                                          v->w->id, revoked ? "already" : "not"));
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        aa_fail(r, -ENOMEM, "token");
        return;
    }
    if (v->revoke)
        mx_sql_add(b, "UPDATE auth_registration_tokens SET revoked_ts = ? WHERE id = ?", "is",
                   (int64_t)mx_now_ms(), v->w->id);
    else
        mx_sql_add(b, "UPDATE auth_registration_tokens SET revoked_ts = NULL WHERE id = ?", "s",
                   v->w->id);
    if (mx_sql_run(b, aa_tokens_written, v->w) < 0)
        aa_fail(r, -EIO, "token");
}

static void aa_tokens_revoke_set(aa_req_t *r, bool revoke)
{
    const char *id = aa_path_id(r);
    if (!id)
        return;
    aa_rv_t *v = mx_palloc(r->pool, sizeof(*v));
    aa_tw_t *w = v ? aa_tw_new(r, id) : NULL;
    mx_sql_batch_t *b = w ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        aa_fail(r, -ENOMEM, "token");
        return;
    }
    v->w = w;
    v->revoke = revoke;
    mx_sql_add(b, "SELECT revoked_ts FROM auth_registration_tokens WHERE id = ?", "s", id);
    if (mx_sql_run(b, aa_rv_read, v) < 0)
        aa_fail(r, -EIO, "token");
}

static void aa_tokens_revoke(aa_req_t *r) { aa_tokens_revoke_set(r, true); }
static void aa_tokens_unrevoke(aa_req_t *r) { aa_tokens_revoke_set(r, false); }

/* -------------------------------------------------------- user emails --- */

static json_t *aa_email_row(const mx_sql_res_t *res, int st, int i)
{
    json_t *a = json_pack("{s:o, s:s, s:s}", "created_at", aa_time(mx_sql_int(res, st, i, 3)),
                          "user_id", mx_sql_text(res, st, i, 1), "email",
                          mx_sql_text(res, st, i, 2));
    return aa_resource("user-email", "user-emails", mx_sql_text(res, st, i, 0), a);
}

static aa_list_t *aa_emails_new(aa_req_t *r)
{
    aa_list_t *l = aa_list_make(r, "id, user_id, email, created_ts", "auth_admin_user_emails",
                                "id", aa_email_row, "User email not found");
    if (l)
        l->user_attr = "user_id";
    return l;
}

typedef struct aa_el {
    const char *email, *user;
} aa_el_t;

static void aa_emails_list(aa_req_t *r)
{
    static const char *const eq[][2] = { { "filter[email]", "email" } };
    aa_list_t *l = aa_emails_new(r);
    aa_page_t page;
    const char *user;
    if (!aa_list_begin(r, l, &page, &user, "emails"))
        return;
    aa_list_where_eq(r, l, eq, 1);
    aa_list_run_for_user(r, &page, l, user);
}

static void aa_emails_get(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    if (id)
        aa_get_by_id(r, aa_emails_new(r), id, 0, NULL);
}

typedef struct aa_ew {
    aa_req_t *r;
    const char *id, *email;
} aa_ew_t;

static void aa_email_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    aa_ew_t *w = ud;
    if (status == MX_ECONSTRAINT) {
        aa_error(w->r->req, 409, mx_psprintf(w->r->pool, "User email %s already in use",
                                             w->email));
        return;
    }
    if (status < 0) {
        aa_fail(w->r, status, "email");
        return;
    }
    aa_get_by_id(w->r, aa_emails_new(w->r), w->id, 201, AA_BASE "/user-emails");
}

static void aa_email_user(aa_req_t *r, int status, const char *user_id)
{
    aa_el_t *e = r->priv;
    if (!aa_user_found(r, status, user_id, e->user))
        return;
    aa_ew_t *w = mx_palloc(r->pool, sizeof(*w));
    mx_sql_batch_t *b = w ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b || !(w->id = au_ulid(r->pool))) {
        mx_sql_batch_free(b);
        aa_fail(r, -ENOMEM, "email");
        return;
    }
    w->r = r;
    w->email = e->email;
    mx_sql_add(b, "INSERT INTO auth_admin_user_emails (id, user_id, email, created_ts)"
                  " VALUES (?, ?, ?, ?)", "sssi", w->id, user_id, e->email,
               (int64_t)mx_now_ms());
    if (mx_sql_run(b, aa_email_written, w) < 0)
        aa_fail(r, -EIO, "email");
}

static bool aa_email_ok(const char *s)
{
    const char *at = s ? strchr(s, '@') : NULL;
    if (!at || at == s || !at[1] || strchr(at + 1, '@') || strlen(s) > 254)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

static void aa_emails_add(aa_req_t *r)
{
    json_t *body = aa_body(r);
    if (!body)
        return;
    const char *user = json_string_value(json_object_get(body, "user_id"));
    const char *email = json_string_value(json_object_get(body, "email"));
    if (!user || !au_ulid_valid(user) || !email) {
        aa_error(r->req, 400, "Failed to deserialize the JSON body: user_id and email required");
        return;
    }
    if (!aa_email_ok(email)) {
        aa_error(r->req, 400, "Email is not valid");
        return;
    }
    aa_el_t *e = mx_palloc(r->pool, sizeof(*e));
    if (!e) {
        aa_fail(r, -ENOMEM, "email");
        return;
    }
    memset(e, 0, sizeof(*e));
    e->email = email;
    e->user = user;
    r->priv = e;
    aa_user_of(r, user, aa_email_user);
}

static void aa_email_deleted(int status, mx_sql_res_t *res, void *ud)
{
    aa_req_t *r = ud;
    if (status < 0) {
        aa_fail(r, status, "email");
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        aa_error(r->req, 404, mx_psprintf(r->pool, "User email ID %s not found",
                                          mx_req_param(r->req, "id")));
        return;
    }
    mx_req_reply(r->req, 204, NULL, "", 0);
}

static void aa_emails_delete(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    mx_sql_batch_t *b = id ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!id)
        return;
    if (!b) {
        aa_fail(r, -ENOMEM, "email");
        return;
    }
    mx_sql_add(b, "DELETE FROM auth_admin_user_emails WHERE id = ?", "s", id);
    if (mx_sql_run(b, aa_email_deleted, r) < 0)
        aa_fail(r, -EIO, "email");
}

int aa_misc_routes(void)
{
    static const aa_route_def_t routes[] = {
        { "GET", "/user-registration-tokens", aa_tokens_list },
        { "POST", "/user-registration-tokens", aa_tokens_add },
        { "GET", "/user-registration-tokens/{id}", aa_tokens_get },
        { "PUT", "/user-registration-tokens/{id}", aa_tokens_edit },
        { "POST", "/user-registration-tokens/{id}/revoke", aa_tokens_revoke },
        { "POST", "/user-registration-tokens/{id}/unrevoke", aa_tokens_unrevoke },
        { "GET", "/user-emails", aa_emails_list },
        { "POST", "/user-emails", aa_emails_add },
        { "GET", "/user-emails/{id}", aa_emails_get },
        { "DELETE", "/user-emails/{id}", aa_emails_delete },
    };
    return AA_ROUTES(routes);
}
