/*
 * svc_fed.c: federation destinations for the Admin API — list, details,
 * the rooms a destination takes part in, and resetting the retry timings
 * of one in backoff.  The rows live in `destinations` and
 * `destination_rooms` (schema "homeserver.admin"), Synapse's shape; the
 * federation sender that will fill them is not built yet, so today the
 * list is empty and every name answers 404, from the real tables.
 */
#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SVC_DEST_COLS                                                                      \
    "destination, retry_last_ts, retry_interval, failure_ts, last_successful_stream_ordering"

static json_t *svc_dest_json(const mx_sql_res_t *res, int st, int i)
{
    return json_pack("{s:s, s:I, s:I, s:o, s:o}", "destination", mx_sql_text(res, st, i, 0),
                     "retry_last_ts", (json_int_t)mx_sql_int(res, st, i, 1),
                     "retry_interval", (json_int_t)mx_sql_int(res, st, i, 2),
                     "failure_ts", svc_col_int(res, st, i, 3),
                     "last_successful_stream_ordering", svc_col_int(res, st, i, 4));
}

/* A page with Synapse's `total` and `next_token` (the next offset). */
static json_t *svc_page(svc_call_t *c, const char *key, json_t *arr, int64_t total)
{
    size_t n = json_array_size(arr);
    json_t *out = json_pack("{s:o, s:I}", key, arr, "total", (json_int_t)total);
    if (n > 0 && c->n + (int64_t)n < total)
        json_object_set_new(out, "next_token", json_string(mx_psprintf(c->pool, "%lld",
                                                              (long long)(c->n + (int64_t)n))));
    return out;
}

static json_t *svc_dests_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    json_t *arr = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 1); i++)
        json_array_append_new(arr, svc_dest_json(res, 1, i));
    return svc_page(c, "destinations", arr, mx_sql_int(res, 0, 0, 0));
}

int svc_list_destinations(const json_t *q, hs_admin_done_fn cb, void *ud)
{
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    const char *order = svc_qstr(q, "order_by"), *dir = svc_qstr(q, "dir");
    const char *name = svc_qstr(q, "destination");
    static const char *const cols[] = { "destination", "retry_last_ts", "retry_interval",
                                        "failure_ts", "last_successful_stream_ordering" };
    const char *col = "destination";
    if (order) {
        col = NULL;
        for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
            if (!strcmp(order, cols[i]))
                col = cols[i];
    }
    if (from < 0 || limit < 0 || !col)
        return -EINVAL;
    svc_call_t *c = svc_page_call(from, cb, ud);
    if (!c)
        return -ENOMEM;
    const char *d = svc_sql_dir(dir);
    char *like = name ? mx_psprintf(c->pool, "%%%s%%", name) : NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT COUNT(*) FROM destinations WHERE (CAST(? AS TEXT) IS NULL OR"
                      " destination LIKE ?)", "ss", like, like);
        mx_sql_add(b, mx_psprintf(c->pool, "SELECT " SVC_DEST_COLS " FROM destinations"
                                           " WHERE (CAST(? AS TEXT) IS NULL OR destination"
                                           " LIKE ?) ORDER BY %s %s, destination %s"
                                           " LIMIT ? OFFSET ?", col, d, d),
                   "ssii", like, like, limit, from);
    }
    return svc_run(c, b, svc_dests_built);
}

static json_t *svc_unknown_dest(int *status)
{
    *status = -ENOENT;
    return json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error", "Unknown destination");
}

static json_t *svc_dest_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1)
        return svc_unknown_dest(status);
    return svc_dest_json(res, 0, 0);
}

int svc_get_destination(const char *destination, hs_admin_done_fn cb, void *ud)
{
    return svc_read_one("SELECT " SVC_DEST_COLS " FROM destinations WHERE destination = ?",
                        destination, svc_dest_built, cb, ud);
}

static json_t *svc_dest_rooms_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    if (mx_sql_nrows(res, 0) < 1)
        return svc_unknown_dest(status);
    json_t *arr = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 2); i++)
        json_array_append_new(arr, json_pack("{s:s, s:I}", "room_id", mx_sql_text(res, 2, i, 0),
                                             "stream_ordering",
                                             (json_int_t)mx_sql_int(res, 2, i, 1)));
    return svc_page(c, "rooms", arr, mx_sql_int(res, 1, 0, 0));
}

int svc_destination_rooms(const char *destination, const json_t *q, hs_admin_done_fn cb,
                          void *ud)
{
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    const char *dir = svc_qstr(q, "dir");
    if (from < 0 || limit < 0)
        return -EINVAL;
    svc_call_t *c = svc_page_call(from, cb, ud);
    if (!c)
        return -ENOMEM;
    const char *d = svc_sql_dir(dir);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM destinations WHERE destination = ?", "s", destination);
        mx_sql_add(b, "SELECT COUNT(*) FROM destination_rooms WHERE destination = ?", "s",
                   destination);
        mx_sql_add(b, mx_psprintf(c->pool, "SELECT room_id, stream_ordering FROM"
                                           " destination_rooms WHERE destination = ?"
                                           " ORDER BY room_id %s LIMIT ? OFFSET ?", d),
                   "sii", destination, limit, from);
    }
    return svc_run(c, b, svc_dest_rooms_built);
}

static json_t *svc_dest_reset_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1)
        return svc_unknown_dest(status);
    if (mx_sql_changes(res, 1) < 1) {
        *status = -EINVAL;
        return json_pack("{s:s, s:s}", "errcode", "M_UNKNOWN", "error",
                         "The retry timing does not need to be reset for this destination.");
    }
    return json_object();
}

int svc_reset_destination(const char *destination, hs_admin_done_fn cb, void *ud)
{
    if (!strcmp(destination, hs.server_name))
        return -EPERM;
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM destinations WHERE destination = ?", "s", destination);
        mx_sql_add(b, "UPDATE destinations SET retry_last_ts = 0, retry_interval = 0,"
                      " failure_ts = NULL WHERE destination = ? AND (retry_last_ts > 0 OR"
                      " retry_interval > 0 OR failure_ts IS NOT NULL)", "s", destination);
    }
    return svc_run(c, b, svc_dest_reset_built);
}
