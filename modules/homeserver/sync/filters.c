/*
 * filters.c: POST /user/{userId}/filter, GET /user/{userId}/filter/{filterId}
 * (table `filters`, migrations "homeserver.sync"), loading the filter a
 * /sync names (inline JSON or a stored ID) and event filter matching
 * (types / not_types / senders / not_senders with '*' wildcards).
 */
#include "sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const mx_migration_t fl_migrations[] = {
    { 1,
      "CREATE TABLE filters (user_id TEXT NOT NULL, filter_id BIGINT NOT NULL,"
      " json TEXT NOT NULL, PRIMARY KEY (user_id, filter_id));",
      NULL, NULL },
};

/* '*' matches any run of characters. */
static bool fl_glob(const char *p, const char *s)
{
    if (*p == '\0')
        return *s == '\0';
    if (*p == '*') {
        for (;; s++) {
            if (fl_glob(p + 1, s))
                return true;
            if (!*s)
                return false;
        }
    }
    return *s && *p == *s && fl_glob(p + 1, s + 1);
}

static bool fl_any(const json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        const char *p = json_string_value(v);
        if (p && fl_glob(p, s))
            return true;
    }
    return false;
}

bool hs_filter_match(const json_t *f, const char *type, const char *sender)
{
    if (!json_is_object(f))
        return true;
    if (type) {
        if (fl_any(json_object_get(f, "not_types"), type))
            return false;
        const json_t *types = json_object_get(f, "types");
        if (json_is_array(types) && !fl_any(types, type))
            return false;
    }
    if (sender) {
        if (fl_any(json_object_get(f, "not_senders"), sender))
            return false;
        const json_t *senders = json_object_get(f, "senders");
        if (json_is_array(senders) && !fl_any(senders, sender))
            return false;
    }
    return true;
}

/* A light check of the shape clients send (Synapse validates against the
 * filter JSON schema; the fields we read must have the right types). */
static bool fl_valid(const json_t *f)
{
    if (!json_is_object(f))
        return false;
    const json_t *fmt = json_object_get(f, "event_format");
    if (fmt && (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "client") &&
                                        strcmp(json_string_value(fmt), "federation"))))
        return false;
    const json_t *room = json_object_get(f, "room");
    if (room && !json_is_object(room))
        return false;
    static const char *const subs[] = { "timeline", "state", "ephemeral", "account_data" };
    for (size_t i = 0; i < 4; i++) {
        const json_t *s = json_object_get(room, subs[i]);
        if (s && !json_is_object(s))
            return false;
        const json_t *lim = json_object_get(s, "limit");
        if (lim && !json_is_integer(lim))
            return false;
        /* RoomEventFilter's lazy-loading flags are strictly boolean */
        static const char *const flags[] = { "lazy_load_members", "include_redundant_members",
                                             "unread_thread_notifications" };
        for (size_t j = 0; j < 3; j++) {
            const json_t *b = json_object_get(s, flags[j]);
            if (b && !json_is_boolean(b))
                return false;
        }
    }
    return true;
}

/* Appends `s` as an SQL string literal (quotes doubled). */
static void fl_lit(mx_pool_t *pool, char **out, const char *s, size_t n)
{
    size_t q = 0;
    for (size_t i = 0; i < n; i++)
        q += s[i] == '\'' ? 2 : 1;
    size_t old = strlen(*out);
    char *o = mx_palloc(pool, old + q + 3);
    if (!o)
        return;
    memcpy(o, *out, old);
    char *w = o + old;
    *w++ = '\'';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'')
            *w++ = '\'';
        *w++ = s[i];
    }
    *w++ = '\'';
    *w = '\0';
    *out = o;
}

static void fl_cat(mx_pool_t *pool, char **out, const char *s)
{
    size_t a = strlen(*out), b = strlen(s);
    char *o = mx_palloc(pool, a + b + 1);
    if (!o)
        return;
    memcpy(o, *out, a);
    memcpy(o + a, s, b + 1);
    *out = o;
}

/* " AND [NOT] (col matches one of list)" for the patterns SQL can say
 * exactly (no '*', or one trailing '*'); any other pattern makes the
 * positive list unrestricted here (hs_filter_match still applies). */
static void fl_list_sql(mx_pool_t *pool, char **out, const json_t *list, const char *col,
                        bool negate)
{
    if (!json_is_array(list))
        return;
    char *cond = mx_pstrdup(pool, "");
    size_t i;
    json_t *v;
    bool any = false;
    json_array_foreach(list, i, v) {
        const char *p = json_string_value(v);
        if (!p)
            continue;
        const char *star = strchr(p, '*');
        if (star && star[1] != '\0') {
            if (!negate)
                return; /* cannot express: leave to the C matcher */
            continue;
        }
        fl_cat(pool, &cond, any ? " OR " : "");
        any = true;
        if (!star) {
            fl_cat(pool, &cond, col);
            fl_cat(pool, &cond, " = ");
            fl_lit(pool, &cond, p, strlen(p));
        } else {
            char num[32];
            snprintf(num, sizeof(num), ", 1, %zu) = ", (size_t)(star - p));
            fl_cat(pool, &cond, "substr(");
            fl_cat(pool, &cond, col);
            fl_cat(pool, &cond, num);
            fl_lit(pool, &cond, p, (size_t)(star - p));
        }
    }
    if (!any) {
        if (!negate)
            fl_cat(pool, out, " AND 1 = 0"); /* an empty list matches nothing */
        return;
    }
    fl_cat(pool, out, negate ? " AND NOT (" : " AND (");
    fl_cat(pool, out, cond);
    fl_cat(pool, out, ")");
}

char *hs_filter_sql(mx_pool_t *pool, const json_t *f, const char *type_col,
                    const char *sender_col)
{
    char *out = mx_pstrdup(pool, "");
    if (!out || !json_is_object(f))
        return out;
    fl_list_sql(pool, &out, json_object_get(f, "types"), type_col, false);
    fl_list_sql(pool, &out, json_object_get(f, "not_types"), type_col, true);
    fl_list_sql(pool, &out, json_object_get(f, "senders"), sender_col, false);
    fl_list_sql(pool, &out, json_object_get(f, "not_senders"), sender_col, true);
    return out;
}

/* ------------------------------------------------------------- loading --- */

typedef struct fl_load {
    hs_filter_fn fn;
    void *ud;
} fl_load_t;

static void fl_loaded(int status, mx_sql_res_t *res, void *ud)
{
    fl_load_t *l = ud;
    json_t *f = NULL;
    if (status == 0 && mx_sql_nrows(res, 0) > 0) {
        const char *js = mx_sql_text(res, 0, 0, 0);
        f = js ? json_loads(js, 0, NULL) : NULL;
    }
    /* An unknown filter ID syncs without a filter (Synapse answers 404;
     * clients recreate their filter either way). */
    l->fn(f, status < 0 ? status : 0, l->ud);
    json_decref(f);
    free(l);
}

void hs_filter_load(const char *user_id, const char *spec, hs_filter_fn fn, void *ud)
{
    if (!spec || !*spec) {
        fn(NULL, 0, ud);
        return;
    }
    if (spec[0] == '{') {
        json_t *f = json_loads(spec, 0, NULL);
        if (!fl_valid(f)) {
            json_decref(f);
            fn(NULL, -EINVAL, ud);
            return;
        }
        fn(f, 0, ud);
        json_decref(f);
        return;
    }
    char *end;
    long long id = strtoll(spec, &end, 10);
    if (*end || id < 0) {
        fn(NULL, 0, ud);
        return;
    }
    fl_load_t *l = malloc(sizeof(*l));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!l || !b) {
        free(l);
        mx_sql_batch_free(b);
        fn(NULL, -ENOMEM, ud);
        return;
    }
    l->fn = fn;
    l->ud = ud;
    mx_sql_add(b, "SELECT json FROM filters WHERE user_id = ? AND filter_id = ?", "si", user_id,
               (int64_t)id);
    if (mx_sql_run(b, fl_loaded, l) < 0) {
        mx_sql_batch_free(b);
        free(l);
        fn(NULL, MX_EDB, ud);
    }
}

/* ------------------------------------------------------------ handlers --- */

static void fl_created(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        hs_reply_storage_error(req, status < 0 ? status : MX_EDB, "storing filter");
        return;
    }
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)mx_sql_int(res, 0, 0, 0));
    mx_req_reply_json(req, 200, json_pack("{s:s}", "filter_id", id));
}

static void fl_post_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    const char *uid = mx_req_param(req, "userId");
    if (!uid || strcmp(uid, who->user_id) != 0) {
        mx_req_error(req, 403, "M_FORBIDDEN", "cannot create filters for other users");
        return;
    }
    if (!fl_valid(body)) {
        mx_req_error(req, 400, "M_BAD_JSON", "invalid filter");
        return;
    }
    char *js = json_dumps(body, JSON_COMPACT);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!js || !b) {
        free(js);
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    mx_sql_add(b, "INSERT INTO filters (user_id, filter_id, json)"
                  " SELECT ?, COALESCE(MAX(filter_id) + 1, 0), ? FROM filters WHERE user_id = ?"
                  " RETURNING filter_id", "sss", uid, js, uid);
    free(js);
    if (mx_sql_run(b, fl_created, req) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, MX_EDB, "storing filter");
    }
}

static void fl_got(json_t *f, int status, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        hs_reply_storage_error(req, status, "loading filter");
        return;
    }
    if (!f) {
        mx_req_error(req, 404, "M_NOT_FOUND", "no such filter");
        return;
    }
    mx_req_reply_json(req, 200, json_incref(f));
}

static void fl_get_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *uid = mx_req_param(req, "userId");
    const char *fid = mx_req_param(req, "filterId");
    if (!uid || strcmp(uid, who->user_id) != 0) {
        mx_req_error(req, 403, "M_FORBIDDEN", "cannot get filters of other users");
        return;
    }
    if (!fid || !*fid || fid[0] == '{' || strspn(fid, "0123456789") != strlen(fid)) {
        mx_req_error(req, 404, "M_NOT_FOUND", "no such filter");
        return;
    }
    hs_filter_load(uid, fid, fl_got, req);
}

static int fl_post(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, fl_post_authed, NULL);
}

static int fl_get(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, fl_get_authed, NULL);
}

int hs_filters_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.sync", fl_migrations,
                           sizeof(fl_migrations) / sizeof(fl_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.sync: migration failed (%d)", rc);
        return rc;
    }
    if ((rc = rm_route("POST", "/user/{userId}/filter", fl_post, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("GET", "/user/{userId}/filter/{filterId}", fl_get, 0)) < 0) {
        snprintf(err, errlen, "homeserver.sync: cannot add routes (%d)", rc);
        return rc;
    }
    return 0;
}
