/*
 * au_admin_activity.c: when, from where and with what each session was
 * last used — MAS's `last_active_at`, `last_active_ip` and `user_agent` of
 * OAuth 2.0, compatibility, browser and personal sessions in the admin API.
 *
 * One row per session ID in auth_session_activity (au_admin_schema.c).
 * Writes are throttled in SQL, as MAS batches its activity: a row changes
 * only when its time is AA_ACT_MS old, or when an address or user agent
 * becomes known or changes.  Callers: the token lookup (every validation
 * that misses the cache, no address), the admin API and introspection (the
 * caller's address), browser pages (address and user agent).
 */
#include "au_admin.h"

#include <errno.h>
#include <string.h>

#define AA_ACT_MS (60 * 1000)

static void aa_act_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    (void)ud;
    if (status < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "could not record session activity (%d)", status);
}

void aa_activity_note(const char *session_id, const char *ip, const char *user_agent)
{
    if (!session_id || !*session_id)
        return;
    if (ip && !*ip)
        ip = NULL;
    if (user_agent && (!*user_agent || strlen(user_agent) > 512))
        user_agent = NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b)
        return;
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b,
               "INSERT INTO auth_session_activity (session_id, last_active_ts, last_active_ip,"
               " user_agent) VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET"
               " last_active_ts = excluded.last_active_ts,"
               " last_active_ip = COALESCE(excluded.last_active_ip,"
               "                           auth_session_activity.last_active_ip),"
               " user_agent = COALESCE(excluded.user_agent, auth_session_activity.user_agent)"
               " WHERE auth_session_activity.last_active_ts <= ?"
               " OR (excluded.last_active_ip IS NOT NULL AND"
               "     COALESCE(auth_session_activity.last_active_ip, '') <> excluded.last_active_ip)"
               " OR (excluded.user_agent IS NOT NULL AND"
               "     COALESCE(auth_session_activity.user_agent, '') <> excluded.user_agent)",
               "sissi", session_id, now, ip, user_agent, now - AA_ACT_MS);
    if (mx_sql_run(b, aa_act_written, NULL) < 0)
        mx_log(AU_LOG, MX_LOG_WARN, "could not record session activity");
}

void aa_activity_note_req(const char *session_id, mx_req_t *req, bool with_agent)
{
    if (!req)
        return;
    aa_activity_note(session_id, mx_req_client_ip(req),
                     with_agent ? mx_req_header(req, "User-Agent") : NULL);
}

json_t *aa_activity_attrs(json_t *attrs, const mx_sql_res_t *res, int st, int i, int col,
                          bool with_agent)
{
    if (!attrs)
        return NULL;
    json_object_set_new(attrs, "last_active_at",
                        aa_time(mx_sql_is_null(res, st, i, col) ? 0 : mx_sql_int(res, st, i, col)));
    json_object_set_new(attrs, "last_active_ip",
                        mx_sql_is_null(res, st, i, col + 1)
                            ? json_null() : json_string(mx_sql_text(res, st, i, col + 1)));
    if (with_agent)
        json_object_set_new(attrs, "user_agent",
                            mx_sql_is_null(res, st, i, col + 2)
                                ? json_null() : json_string(mx_sql_text(res, st, i, col + 2)));
    return attrs;
}

char *aa_activity_filters(aa_req_t *r, char *where, bool *bad)
{
    static const struct {
        const char *name, *col, *op;
    } f[] = {
        { "filter[created-before]", "created_ts", "<" },
        { "filter[created-after]", "created_ts", ">" },
        { "filter[last-active-before]", "a.last_active_ts", "<" },
        { "filter[last-active-after]", "a.last_active_ts", ">" },
    };
    *bad = false;
    for (size_t k = 0; k < sizeof(f) / sizeof(f[0]) && where; k++) {
        const char *v = aa_qstr(r, f[k].name);
        int64_t ms;
        if (!v)
            continue;
        if (aa_time_parse(v, &ms) < 0) {
            *bad = true;
            aa_error(r->req, 400, mx_psprintf(r->pool, "Invalid filter parameters: %s", f[k].name));
            return NULL;
        }
        where = mx_psprintf(r->pool, "%s AND %s %s %lld", where, f[k].col, f[k].op, (long long)ms);
    }
    return where;
}
