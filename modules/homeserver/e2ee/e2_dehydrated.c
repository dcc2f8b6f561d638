/*
 * e2_dehydrated.c: dehydrated devices (MSC3814, the version Element's rust
 * crypto uses) under /_matrix/client/unstable/org.matrix.msc3814.v1/:
 *   PUT    dehydrated_device                 store one (replacing the old
 *          one) with its device_data and its keys, uploaded like /keys/upload
 *   GET    dehydrated_device                 {device_id, device_data}
 *   DELETE dehydrated_device                 {device_id}
 *   GET    dehydrated_device/{id}/events     its to-device messages, 100 at a
 *          time, paged with `?from=` (the current MSC3814 and matrix-js-sdk);
 *          reading does not consume, `next_batch` is absent on the last page
 *   POST   dehydrated_device/{id}/events     the earlier draft: `next_batch`
 *          in the body, given back acknowledges (deletes) the earlier ones
 * A user has at most one.  The device is not an accounts device (nobody
 * logs in with it): its keys live in e2e_device_keys like any device's, so
 * /keys/query shows it, and "*" to-device messages reach it.
 */
#include "e2ee.h"
#include "../accounts/accounts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define DH_PREFIX "/org.matrix.msc3814.v1/dehydrated_device"

typedef struct dh_req {
    mx_req_t *req;
    e2_who_t *who;
    const char *device_id;
    char *data_json;         /* malloc'd */
    int64_t since;
    int64_t dl_pos;
    bool get;                /* GET .../events: pages without consuming */
    e2_upload_t up;
} dh_req_t;

static void dh_free(void *p)
{
    free(((dh_req_t *)p)->data_json);
}

static dh_req_t *dh_new(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    dh_req_t *d = mx_palloc(pool, sizeof(*d));
    if (!d) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return NULL;
    }
    memset(d, 0, sizeof(*d));
    d->req = req;
    mx_pool_on_free(pool, dh_free, d);
    if (!(d->who = e2_who_copy(req, who))) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return NULL;
    }
    return d;
}

/* ------------------------------------------------------------------- PUT --- */

static int dh_put_extra(e2_upload_t *u, mx_sql_batch_t *b)
{
    dh_req_t *d = u->ud;
    const char *uid = u->user_id;
    static const char *const tables[] = {
        "e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "e2e_device_inbox",
    };
    char sql[256];
    for (size_t i = 0; i < 4; i++) {
        snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE user_id = ? AND device_id IN (SELECT"
                                   " device_id FROM e2e_dehydrated_devices WHERE user_id = ? AND"
                                   " device_id <> ?)", tables[i]);
        mx_sql_add(b, sql, "sss", uid, uid, u->device_id);
    }
    mx_sql_add(b, "INSERT INTO e2e_dehydrated_devices (user_id, device_id, device_data, ts)"
                  " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET device_id ="
                  " excluded.device_id, device_data = excluded.device_data, ts = excluded.ts",
               "sssi", uid, u->device_id, d->data_json, (int64_t)mx_now_ms());
    return 5;
}

static void dh_put_done(e2_upload_t *u, const mx_sql_res_t *res)
{
    (void)res;
    mx_req_reply_json(u->req, 200, json_pack("{s:s}", "device_id", u->device_id));
}

static void dh_put_checked(int status, mx_sql_res_t *res, void *ud)
{
    dh_req_t *d = ud;
    if (status < 0) {
        hs_reply_storage_error(d->req, status, "dehydrated device");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        mx_req_error(d->req, 400, "M_INVALID_PARAM", "Device ID is in use by a device");
        return;
    }
    e2_upload_run(&d->up);
}

static void dh_put(dh_req_t *d)
{
    json_t *body = e2_body(d->req);
    if (!body)
        return;
    const char *did = json_string_value(json_object_get(body, "device_id"));
    json_t *data = json_object_get(body, "device_data");
    if (!did || !*did || strlen(did) > 255) {
        mx_req_error(d->req, 400, "M_MISSING_PARAM", "device_id is required");
        return;
    }
    if (!json_is_object(data)) {
        mx_req_error(d->req, 400, "M_BAD_JSON", "device_data must be an object");
        return;
    }
    if (!(d->data_json = e2_dump(data))) {
        mx_req_error(d->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    d->up.req = d->req;
    d->up.user_id = d->who->user_id;
    d->up.device_id = mx_pstrdup(mx_req_pool(d->req), did);
    d->up.body = body;
    d->up.extra = dh_put_extra;
    d->up.done = dh_put_done;
    d->up.ud = d;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b || !d->up.device_id) {
        mx_sql_batch_free(b);
        mx_req_error(d->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    /* not one of the user's real devices (the accounts part's table, read only) */
    mx_sql_add(b, "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", "ss",
               d->who->user_id, did);
    if (mx_sql_run(b, dh_put_checked, d) < 0)
        hs_reply_storage_error(d->req, MX_EDB, "dehydrated device");
}

/* ------------------------------------------------------------ GET/DELETE --- */

static void dh_get_read(int status, mx_sql_res_t *res, void *ud)
{
    dh_req_t *d = ud;
    if (status < 0) {
        hs_reply_storage_error(d->req, status, "dehydrated device");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(d->req, 404, "M_NOT_FOUND", "No dehydrated device available");
        return;
    }
    json_t *data = e2_load(mx_sql_text(res, 0, 0, 1));
    mx_req_reply_json(d->req, 200, json_pack("{s:s, s:o}", "device_id", mx_sql_text(res, 0, 0, 0),
                                             "device_data", data ? data : json_object()));
}

static void dh_deleted(int status, mx_sql_res_t *res, void *ud)
{
    dh_req_t *d = ud;
    e2_dl_written(d->who->user_id, NULL, d->dl_pos, status == 0);
    if (status < 0) {
        hs_reply_storage_error(d->req, status, "dehydrated device");
        return;
    }
    (void)res;
    mx_req_reply_json(d->req, 200, json_pack("{s:s}", "device_id", d->device_id));
}

static void dh_delete_read(int status, mx_sql_res_t *res, void *ud)
{
    dh_req_t *d = ud;
    if (status < 0) {
        hs_reply_storage_error(d->req, status, "dehydrated device");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(d->req, 404, "M_NOT_FOUND", "No dehydrated device available");
        return;
    }
    d->device_id = mx_pstrdup(mx_req_pool(d->req), mx_sql_text(res, 0, 0, 0));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b || !d->device_id) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(d->req, -ENOMEM, "dehydrated device");
        return;
    }
    mx_sql_add(b, "DELETE FROM e2e_dehydrated_devices WHERE user_id = ? AND device_id = ?", "ss",
               d->who->user_id, d->device_id);
    e2_device_forget(b, d->who->user_id, d->device_id);
    d->dl_pos = e2_dl_add(b, d->who->user_id, NULL);
    if (d->dl_pos < 0)
        d->dl_pos = 0;
    if (mx_sql_run(b, dh_deleted, d) < 0) {
        e2_dl_written(d->who->user_id, NULL, d->dl_pos, false);
        hs_reply_storage_error(d->req, MX_EDB, "dehydrated device");
    }
}

static void dh_select(dh_req_t *d, mx_sql_done_fn fn)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(d->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT device_id, device_data FROM e2e_dehydrated_devices WHERE user_id = ?",
               "s", d->who->user_id);
    if (mx_sql_run(b, fn, d) < 0)
        hs_reply_storage_error(d->req, MX_EDB, "dehydrated device");
}

static void dh_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    dh_req_t *d = dh_new(req, who);
    if (!d)
        return;
    const char *m = mx_req_method(req);
    if (strcmp(m, "PUT") == 0)
        dh_put(d);
    else if (strcmp(m, "GET") == 0)
        dh_select(d, dh_get_read);
    else
        dh_select(d, dh_delete_read);
}

static int dh_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, dh_authed, NULL);
}

/* ---------------------------------------------------------------- events --- */

static void dh_events_read(int status, mx_sql_res_t *res, void *ud)
{
    dh_req_t *d = ud;
    if (status < 0) {
        hs_reply_storage_error(d->req, status, "dehydrated device events");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1 || strcmp(mx_sql_text(res, 0, 0, 0), d->device_id) != 0) {
        mx_req_error(d->req, 403, "M_FORBIDDEN",
                     "You may only fetch messages for your dehydrated device");
        return;
    }
    json_t *events = json_array();
    int64_t last = d->since;
    for (int i = 0; i < mx_sql_nrows(res, 1); i++) {
        json_t *m = e2_load(mx_sql_text(res, 1, i, 1));
        if (m)
            json_array_append_new(events, m);
        last = mx_sql_int(res, 1, i, 0);
    }
    const char *next = mx_psprintf(mx_req_pool(d->req), "%" PRId64, last);
    if (d->get) {
        json_t *reply = json_pack("{s:o}", "events", events);
        if (mx_sql_nrows(res, 1) >= E2_TO_DEVICE_LIMIT)
            json_object_set_new(reply, "next_batch", json_string(next));
        mx_req_reply_json(d->req, 200, reply);
        return;
    }
    if (d->since > 0)
        e2_inbox_ack(d->who->user_id, d->device_id, d->since);
    mx_req_reply_json(d->req, 200, json_pack("{s:o, s:s}", "events", events, "next_batch", next));
}

static void dh_events_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    bool get = strcmp(mx_req_method(req), "GET") == 0;
    json_t *body = get ? NULL : e2_body(req);
    if (!get && !body)
        return;
    dh_req_t *d = dh_new(req, who);
    if (!d)
        return;
    d->get = get;
    d->device_id = mx_req_param(req, "deviceId");
    const char *nb = get ? mx_req_query(req, "from")
                         : json_string_value(json_object_get(body, "next_batch"));
    if (get && !nb)
        nb = mx_req_query(req, "next_batch"); /* Synapse's interim spelling */
    if (nb) {
        char *end;
        long long v = strtoll(nb, &end, 10);
        if (*end || v < 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid next_batch");
            return;
        }
        d->since = v;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT device_id FROM e2e_dehydrated_devices WHERE user_id = ?", "s",
               d->who->user_id);
    e2_inbox_select(b, d->who->user_id, d->device_id, d->since,
                    hs_stream_current(HS_STREAM_TO_DEVICE), E2_TO_DEVICE_LIMIT);
    if (mx_sql_run(b, dh_events_read, d) < 0)
        hs_reply_storage_error(req, MX_EDB, "dehydrated device events");
}

static int dh_events_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, dh_events_authed, NULL);
}

int e2_dehydrated_routes(void)
{
    int rc;
    if ((rc = e2_route("PUT", DH_PREFIX, dh_h, MX_ROUTE_JSON_BODY, E2_UNSTABLE)) < 0 ||
        (rc = e2_route("GET", DH_PREFIX, dh_h, 0, E2_UNSTABLE)) < 0 ||
        (rc = e2_route("DELETE", DH_PREFIX, dh_h, 0, E2_UNSTABLE)) < 0 ||
        (rc = e2_route("POST", DH_PREFIX "/{deviceId}/events", dh_events_h, MX_ROUTE_JSON_BODY,
                       E2_UNSTABLE)) < 0 ||
        (rc = e2_route("GET", DH_PREFIX "/{deviceId}/events", dh_events_h, 0, E2_UNSTABLE)) < 0)
        return rc;
    hs_versions_set_unstable("org.matrix.msc3814", true);
    hs_versions_set_unstable("org.matrix.e2e_cross_signing", true);
    return 0;
}
