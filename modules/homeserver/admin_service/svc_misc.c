/*
 * svc_misc.c: the rest of the admin service — event reports (the client
 * part's event_reports table: list, details, delete) and the cheap
 * statistics: media use per user and
 * the rooms with the most events (as an estimate of their database size).
 */
#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- event reports --- */

#define SVC_REPORT_COLS                                                                   \
    "r.id, r.received_ts, r.room_id, r.event_id, r.user_id, r.reason, r.content, e.sender," \
    " e.json"

static json_t *svc_report_json(const mx_sql_res_t *res, int st, int i, bool details)
{
    const char *content = mx_sql_text(res, st, i, 6);
    json_t *cj = content ? json_loads(content, 0, NULL) : NULL;
    json_t *score = json_object_get(cj, "score");
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:o, s:O, s:o, s:n, s:n}",
                          "id", (json_int_t)mx_sql_int(res, st, i, 0),
                          "received_ts", (json_int_t)mx_sql_int(res, st, i, 1),
                          "room_id", mx_sql_text(res, st, i, 2),
                          "event_id", mx_sql_text(res, st, i, 3),
                          "user_id", mx_sql_text(res, st, i, 4),
                          "reason", svc_col_str(res, st, i, 5),
                          "score", score ? score : json_null(),
                          "sender", svc_col_str(res, st, i, 7),
                          "name", "canonical_alias");
    if (details) {
        const char *ev = mx_sql_text(res, st, i, 8);
        json_t *ej = ev ? json_loads(ev, 0, NULL) : NULL;
        json_object_set_new(o, "event_json", ej ? ej : json_null());
    }
    json_decref(cj);
    return o;
}

static json_t *svc_reports_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    int64_t total = mx_sql_int(res, 0, 0, 0);
    int n = mx_sql_nrows(res, 1);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, svc_report_json(res, 1, i, false));
    json_t *out = json_pack("{s:o, s:I}", "event_reports", arr, "total", (json_int_t)total);
    if (n > 0 && c->n + n < total)
        json_object_set_new(out, "next_token", json_integer(c->n + n));
    return out;
}

int svc_list_event_reports(const json_t *q, hs_admin_done_fn cb, void *ud)
{
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    if (from < 0 || limit < 0)
        return -EINVAL;
    const char *dir = svc_qstr(q, "dir"), *room = svc_qstr(q, "room_id");
    const char *user = svc_qstr(q, "user_id"), *sender = svc_qstr(q, "event_sender_user_id");
    svc_call_t *c = svc_page_call(from, cb, ud);
    if (!c)
        return -ENOMEM;
    /* Newest first by default, as Synapse. */
    const char *d = dir && !strcmp(dir, "f") ? "ASC" : "DESC";
    /* Filters are bound always; a NULL filter matches everything. */
    const char *where = "(CAST(? AS TEXT) IS NULL OR r.room_id = ?) AND (CAST(? AS TEXT) IS NULL OR r.user_id LIKE ?)"
                        " AND (CAST(? AS TEXT) IS NULL OR e.sender = ?)";
    char *ulike = user ? mx_psprintf(c->pool, "%%%s%%", user) : NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, mx_psprintf(c->pool, "SELECT COUNT(*) FROM event_reports r LEFT JOIN events"
                                           " e ON e.event_id = r.event_id WHERE %s", where),
                   "ssssss", room, room, ulike, ulike, sender, sender);
        mx_sql_add(b, mx_psprintf(c->pool, "SELECT " SVC_REPORT_COLS " FROM event_reports r"
                                           " LEFT JOIN events e ON e.event_id = r.event_id"
                                           " WHERE %s ORDER BY r.received_ts %s, r.id %s"
                                           " LIMIT ? OFFSET ?", where, d, d),
                   "ssssssii", room, room, ulike, ulike, sender, sender, limit, from);
    }
    return svc_run(c, b, svc_reports_built);
}

static json_t *svc_report_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    return svc_report_json(res, 0, 0, true);
}

int svc_get_event_report(int64_t id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT " SVC_REPORT_COLS " FROM event_reports r LEFT JOIN events e"
                      " ON e.event_id = r.event_id WHERE r.id = ?", "i", id);
    return svc_run(c, b, svc_report_built);
}

static json_t *svc_report_deleted(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_changes(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    return json_object();
}

int svc_delete_event_report(int64_t id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b)
        mx_sql_add(b, "DELETE FROM event_reports WHERE id = ?", "i", id);
    return svc_run(c, b, svc_report_deleted);
}

/* ---------------------------------------------------------- statistics --- */

static json_t *svc_stats_media_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    int64_t total = mx_sql_int(res, 0, 0, 0);
    int n = mx_sql_nrows(res, 1);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:o, s:I, s:I}",
                                             "user_id", mx_sql_text(res, 1, i, 0),
                                             "displayname", svc_col_str(res, 1, i, 1),
                                             "media_count", (json_int_t)mx_sql_int(res, 1, i, 2),
                                             "media_length", (json_int_t)mx_sql_int(res, 1, i, 3)));
    json_t *out = json_pack("{s:o, s:I}", "users", arr, "total", (json_int_t)total);
    if (n > 0 && c->n + n < total)
        json_object_set_new(out, "next_token", json_integer(c->n + n));
    return out;
}

int svc_stats_users_media(const json_t *q, hs_admin_done_fn cb, void *ud)
{
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    int64_t from_ts = svc_qint(q, "from_ts", 0), until_ts = svc_qint(q, "until_ts", INT64_MAX);
    const char *order = svc_qstr(q, "order_by"), *dir = svc_qstr(q, "dir");
    const char *term = svc_qstr(q, "search_term");
    if (from < 0 || limit < 0)
        return -EINVAL;
    const char *col = "media_length";
    if (order) {
        if (!strcmp(order, "user_id"))
            col = "m.user_id";
        else if (!strcmp(order, "displayname"))
            col = "COALESCE(p.displayname, '')";
        else if (!strcmp(order, "media_count"))
            col = "media_count";
        else if (strcmp(order, "media_length"))
            return -EINVAL;
    }
    svc_call_t *c = svc_page_call(from, cb, ud);
    if (!c)
        return -ENOMEM;
    const char *d = svc_sql_dir(dir);
    char *like = term ? mx_psprintf(c->pool, "%%%s%%", term) : NULL;
    const char *where = "m.created_ts >= ? AND m.created_ts <= ? AND (CAST(? AS TEXT) IS NULL OR"
                        " m.user_id LIKE ? OR p.displayname LIKE ?)";
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, mx_psprintf(c->pool, "SELECT COUNT(DISTINCT m.user_id) FROM local_media m"
                                           " LEFT JOIN profiles p ON p.user_id = m.user_id"
                                           " WHERE %s", where),
                   "iisss", from_ts, until_ts, like, like, like);
        mx_sql_add(b, mx_psprintf(c->pool,
                                  "SELECT m.user_id, MAX(p.displayname), COUNT(*) AS media_count,"
                                  " COALESCE(SUM(m.size), 0) AS media_length FROM local_media m"
                                  " LEFT JOIN profiles p ON p.user_id = m.user_id WHERE %s"
                                  " GROUP BY m.user_id ORDER BY %s %s, m.user_id %s"
                                  " LIMIT ? OFFSET ?", where,
                                  !strcmp(col, "COALESCE(p.displayname, '')")
                                      ? "COALESCE(MAX(p.displayname), '')" : col, d, d),
                   "iisssii", from_ts, until_ts, like, like, like, limit, from);
    }
    return svc_run(c, b, svc_stats_media_built);
}

static json_t *svc_stats_rooms_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    (void)status;
    json_t *arr = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(arr, json_pack("{s:s, s:I}", "room_id", mx_sql_text(res, 0, i, 0),
                                             "estimated_size",
                                             (json_int_t)mx_sql_int(res, 0, i, 1)));
    return json_pack("{s:o}", "rooms", arr);
}

int svc_stats_database_rooms(hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    /* Bytes of event JSON per room: a fair estimate of what a room costs. */
    if (b)
        mx_sql_add(b, "SELECT room_id, SUM(LENGTH(json)) AS sz FROM events GROUP BY room_id"
                      " ORDER BY sz DESC LIMIT 10", "");
    return svc_run(c, b, svc_stats_rooms_built);
}
