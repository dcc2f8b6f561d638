/*
 * svc_tokens.c: registration tokens for the admin API (list, details,
 * create, update, delete) over the accounts part's registration_tokens
 * table, which its registration flow consumes (m.login.registration_token).
 * The checks follow Synapse: tokens of [A-Za-z0-9._~-] up to 64
 * characters, uses_allowed a non-negative integer or null, expiry_time in
 * the future or null.
 */
#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SVC_TOK_COLS "token, uses_allowed, pending, completed, expiry_time"

static json_t *svc_tok_json(const mx_sql_res_t *res, int st, int i)
{
    return json_pack("{s:s, s:o, s:I, s:I, s:o}", "token", mx_sql_text(res, st, i, 0),
                     "uses_allowed", svc_col_int(res, st, i, 1),
                     "pending", (json_int_t)mx_sql_int(res, st, i, 2),
                     "completed", (json_int_t)mx_sql_int(res, st, i, 3),
                     "expiry_time", svc_col_int(res, st, i, 4));
}

static json_t *svc_toks_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    (void)status;
    json_t *arr = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(arr, svc_tok_json(res, 0, i));
    return json_pack("{s:o}", "registration_tokens", arr);
}

int svc_list_regtokens(int valid, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    const char *cond = "(uses_allowed IS NULL OR pending + completed < uses_allowed) AND"
                       " (expiry_time IS NULL OR expiry_time > ?)";
    if (b) {
        if (valid < 0)
            mx_sql_add(b, "SELECT " SVC_TOK_COLS " FROM registration_tokens ORDER BY token", "");
        else
            mx_sql_add(b, mx_psprintf(c->pool, "SELECT " SVC_TOK_COLS " FROM registration_tokens"
                                               " WHERE %s(%s) ORDER BY token",
                                      valid ? "" : "NOT ", cond),
                       "i", (int64_t)mx_now_ms());
    }
    return svc_run(c, b, svc_toks_built);
}

static json_t *svc_tok_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    /* The row is in the last statement (after the write, when any). */
    int st = (int)c->n;
    if (mx_sql_nrows(res, st) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    return svc_tok_json(res, st, 0);
}

int svc_get_regtoken(const char *token, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT " SVC_TOK_COLS " FROM registration_tokens WHERE token = ?", "s",
                   token);
    return svc_run(c, b, svc_tok_built);
}

/* Checks uses_allowed / expiry_time of a body; replies (through the call)
 * and returns false when bad. */
static bool svc_tok_fields_ok(svc_call_t *c, const json_t *body)
{
    const json_t *u = json_object_get(body, "uses_allowed");
    if (u && !json_is_null(u) && (!json_is_integer(u) || json_integer_value(u) < 0)) {
        svc_fail(c, -EINVAL, "M_INVALID_PARAM",
                 "uses_allowed must be a non-negative integer or null");
        return false;
    }
    const json_t *e = json_object_get(body, "expiry_time");
    if (e && !json_is_null(e) &&
        (!json_is_integer(e) || json_integer_value(e) < (json_int_t)mx_now_ms())) {
        svc_fail(c, -EINVAL, "M_INVALID_PARAM", "expiry_time must not be in the past");
        return false;
    }
    return true;
}

static bool svc_tok_chars_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 64)
        return false;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              strchr("._~-", *t)))
            return false;
    return true;
}

static void svc_tok_created(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status == MX_ECONSTRAINT || (status < 0 && res && mx_sql_errmsg(res) &&
                                     (strstr(mx_sql_errmsg(res), "UNIQUE") ||
                                      strstr(mx_sql_errmsg(res), "duplicate")))) {
        svc_fail(c, -EINVAL, "M_INVALID_PARAM", "Token already exists");
        return;
    }
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    svc_finish(c, 0, mx_sql_nrows(res, 0) ? svc_tok_json(res, 0, 0) : json_object());
}

int svc_create_regtoken(const json_t *body, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    if (!svc_tok_fields_ok(c, body))
        return 0;
    const json_t *tv = json_object_get(body, "token");
    const char *token = json_string_value(tv);
    if (tv && !json_is_null(tv) && (!token || !svc_tok_chars_ok(token))) {
        svc_fail(c, -EINVAL, "M_INVALID_PARAM",
                 "token must consist only of characters matched by the regex [A-Za-z0-9._~-]"
                 " and be at most 64 characters long");
        return 0;
    }
    if (!token) {
        const json_t *lv = json_object_get(body, "length");
        int64_t len = lv ? (json_is_integer(lv) ? json_integer_value(lv) : -1) : 16;
        if (len < 1 || len > 64) {
            svc_fail(c, -EINVAL, "M_INVALID_PARAM",
                     "length must be an integer between 1 and 64");
            return 0;
        }
        char *rnd = mx_random_string((size_t)len);
        token = rnd ? mx_pstrdup(c->pool, rnd) : NULL;
        free(rnd);
        if (!token) {
            svc_call_free(c);
            return -ENOMEM;
        }
    }
    const json_t *u = json_object_get(body, "uses_allowed");
    const json_t *e = json_object_get(body, "expiry_time");
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        /* Null binds for absent/null fields. */
        if (json_is_integer(u) && json_is_integer(e))
            mx_sql_add(b, "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                          " VALUES (?, ?, ?) RETURNING " SVC_TOK_COLS, "sii", token,
                       (int64_t)json_integer_value(u), (int64_t)json_integer_value(e));
        else if (json_is_integer(u))
            mx_sql_add(b, "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                          " VALUES (?, ?, NULL) RETURNING " SVC_TOK_COLS, "si", token,
                       (int64_t)json_integer_value(u));
        else if (json_is_integer(e))
            mx_sql_add(b, "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                          " VALUES (?, NULL, ?) RETURNING " SVC_TOK_COLS, "si", token,
                       (int64_t)json_integer_value(e));
        else
            mx_sql_add(b, "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                          " VALUES (?, NULL, NULL) RETURNING " SVC_TOK_COLS, "s", token);
    }
    return svc_run_raw(c, b, svc_tok_created);
}

int svc_update_regtoken(const char *token, const json_t *body, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    if (!svc_tok_fields_ok(c, body))
        return 0;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_call_free(c);
        return -ENOMEM;
    }
    int st = 0;
    const json_t *u = json_object_get(body, "uses_allowed");
    const json_t *e = json_object_get(body, "expiry_time");
    if (u) {
        if (json_is_null(u))
            mx_sql_add(b, "UPDATE registration_tokens SET uses_allowed = NULL WHERE token = ?",
                       "s", token);
        else
            mx_sql_add(b, "UPDATE registration_tokens SET uses_allowed = ? WHERE token = ?", "is",
                       (int64_t)json_integer_value(u), token);
        st++;
    }
    if (e) {
        if (json_is_null(e))
            mx_sql_add(b, "UPDATE registration_tokens SET expiry_time = NULL WHERE token = ?",
                       "s", token);
        else
            mx_sql_add(b, "UPDATE registration_tokens SET expiry_time = ? WHERE token = ?", "is",
                       (int64_t)json_integer_value(e), token);
        st++;
    }
    mx_sql_add(b, "SELECT " SVC_TOK_COLS " FROM registration_tokens WHERE token = ?", "s", token);
    c->n = st;
    return svc_run(c, b, svc_tok_built);
}

static json_t *svc_tok_deleted(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_changes(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    return json_object();
}

int svc_delete_regtoken(const char *token, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b)
        mx_sql_add(b, "DELETE FROM registration_tokens WHERE token = ?", "s", token);
    return svc_run(c, b, svc_tok_deleted);
}
