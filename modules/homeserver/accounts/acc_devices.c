/*
 * acc_devices.c: GET /devices, GET/PUT/DELETE /devices/{deviceId} and
 * POST /delete_devices (spec "Device Management").  Deleting needs the
 * user's password again (UIA); it removes the device with its tokens and
 * tells the other parts (E2EE keys, device list updates) through the hooks.
 * Last-seen figures come from the table plus what acc_tokens.c holds in
 * memory and has not flushed yet.
 */
#include "acc_int.h"

#include <errno.h>
#include <string.h>

#define ACC_DEVICE_NAME_MAX 100

static const unsigned acc_flow_password[] = { ACC_STAGE_PASSWORD };

void acc_devices_select(mx_sql_batch_t *b, const char *user_id, const char *device_id)
{
    if (device_id)
        mx_sql_add(b,
                   "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices"
                   " WHERE user_id = ? AND device_id = ?",
                   "ss", user_id, device_id);
    else
        mx_sql_add(b,
                   "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices"
                   " WHERE user_id = ? ORDER BY device_id",
                   "s", user_id);
}

json_t *acc_devices_json(const mx_sql_res_t *res, int stmt, const char *user_id)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < mx_sql_nrows(res, stmt); i++) {
        json_t *d = json_object();
        json_object_set_new(d, "device_id", json_string(mx_sql_text(res, stmt, i, 0)));
        const char *name = mx_sql_text(res, stmt, i, 1);
        const char *ip = mx_sql_text(res, stmt, i, 2);
        json_object_set_new(d, "display_name", name ? json_string(name) : json_null());
        json_object_set_new(d, "last_seen_ip", ip ? json_string(ip) : json_null());
        json_object_set_new(d, "last_seen_ts", mx_sql_is_null(res, stmt, i, 3)
                                                   ? json_null()
                                                   : json_integer(mx_sql_int(res, stmt, i, 3)));
        json_array_append_new(arr, d);
    }
    acc_seen_merge(user_id, arr);
    return arr;
}

/* ------------------------------------------------------------------ GET --- */

typedef struct acc_devq {
    mx_req_t *req;
    const hs_user_t *who;
    const char *device_id;      /* one device, or NULL for the list */
    const char **ids;           /* deletion */
    size_t nids;
} acc_devq_t;

static acc_devq_t *acc_devq_new(mx_req_t *req, const hs_user_t *who)
{
    acc_devq_t *q = mx_palloc(mx_req_pool(req), sizeof(*q));
    if (!q) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return NULL;
    }
    memset(q, 0, sizeof(*q));
    q->req = req;
    q->who = who;
    return q;
}

static void acc_devices_read(int status, mx_sql_res_t *res, void *ud)
{
    acc_devq_t *q = ud;
    if (status < 0) {
        hs_reply_storage_error(q->req, status, "devices");
        return;
    }
    json_t *arr = acc_devices_json(res, 0, q->who->user_id);
    if (!arr) {
        mx_req_error(q->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    if (q->device_id) {
        json_t *one = json_array_get(arr, 0);
        if (!one) {
            json_decref(arr);
            mx_req_error(q->req, 404, "M_NOT_FOUND", "Device not found");
            return;
        }
        json_incref(one);
        json_decref(arr);
        mx_req_reply_json(q->req, 200, one);
        return;
    }
    mx_req_reply_json(q->req, 200, json_pack("{s:o}", "devices", arr));
}

static void acc_devices_get_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    acc_devq_t *q = acc_devq_new(req, who);
    if (!q)
        return;
    q->device_id = mx_req_param(req, "deviceId");
    if (q->device_id && !*q->device_id)
        q->device_id = NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "devices");
        return;
    }
    acc_devices_select(b, who->user_id, q->device_id);
    int rc = mx_sql_run(b, acc_devices_read, q);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "devices");
    }
}

static int acc_get_devices(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, acc_devices_get_authed, NULL);
}

/* ------------------------------------------------------------------ PUT --- */

static void acc_device_put_done(int status, mx_sql_res_t *res, void *ud)
{
    acc_devq_t *q = ud;
    if (status < 0) {
        hs_reply_storage_error(q->req, status, "devices PUT");
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        mx_req_error(q->req, 404, "M_NOT_FOUND", "Device not found");
        return;
    }
    acc_hook_device_updated(q->who->user_id, q->device_id);
    mx_req_reply_json(q->req, 200, json_object());
}

static void acc_device_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *name = json_object_get(mx_req_json(req), "display_name");
    if (name && !json_is_string(name) && !json_is_null(name)) {
        mx_req_error(req, 400, "M_BAD_JSON", "display_name must be a string");
        return;
    }
    if (json_is_string(name) && json_string_length(name) > ACC_DEVICE_NAME_MAX) {
        mx_req_error(req, 400, "M_TOO_LARGE", "Device display name is too long (max %d)",
                     ACC_DEVICE_NAME_MAX);
        return;
    }
    acc_devq_t *q = acc_devq_new(req, who);
    if (!q)
        return;
    q->device_id = mx_req_param(req, "deviceId");
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "devices PUT");
        return;
    }
    if (name)
        mx_sql_add(b, "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                   "sss", json_string_value(name), who->user_id, q->device_id);
    else /* nothing to change; still 404 for an unknown device */
        mx_sql_add(b, "UPDATE devices SET display_name = display_name"
                      " WHERE user_id = ? AND device_id = ?", "ss", who->user_id, q->device_id);
    int rc = mx_sql_run(b, acc_device_put_done, q);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "devices PUT");
    }
}

static int acc_put_device(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, acc_device_put_authed, NULL);
}

/* --------------------------------------------------------------- delete --- */

static void acc_delete_done(int status, mx_sql_res_t *res, void *ud)
{
    acc_devq_t *q = ud;
    if (status < 0) {
        hs_reply_storage_error(q->req, status, "devices DELETE");
        return;
    }
    const char **gone = mx_palloc(mx_req_pool(q->req), sizeof(char *) * (q->nids + 1));
    size_t n = 0;
    for (size_t i = 0; i < q->nids; i++) {
        acc_cache_evict_device(q->who->user_id, q->ids[i]);
        if (gone && mx_sql_changes(res, (int)(3 * i)) > 0)
            gone[n++] = q->ids[i];
    }
    if (gone)
        acc_hook_devices_deleted(q->who->user_id, gone, n);
    mx_req_reply_json(q->req, 200, json_object());
}

static void acc_delete_uia_done(mx_req_t *req, acc_uia_sess_t *s, void *ud)
{
    acc_devq_t *q = ud;
    acc_uia_finish(s, false);
    const char *uid = q->who->user_id;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "devices DELETE");
        return;
    }
    for (size_t i = 0; i < q->nids; i++) {
        mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? AND device_id = ?", "ss", uid,
                   q->ids[i]);
        mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", "ss", uid,
                   q->ids[i]);
        mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", "ss", uid,
                   q->ids[i]);
    }
    if (!q->nids) {
        mx_sql_batch_free(b);
        mx_req_reply_json(req, 200, json_object());
        return;
    }
    int rc = mx_sql_run(b, acc_delete_done, q);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "devices DELETE");
    }
}

static void acc_delete_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    json_t *body = mx_req_json(req);
    acc_devq_t *q = acc_devq_new(req, who);
    if (!q)
        return;
    mx_pool_t *pool = mx_req_pool(req);
    if (ud) { /* POST /delete_devices */
        json_t *devs = json_object_get(body, "devices");
        if (!json_is_array(devs)) {
            mx_req_error(req, 400, "M_BAD_JSON", "devices must be a list of device IDs");
            return;
        }
        q->ids = mx_palloc(pool, sizeof(char *) * (json_array_size(devs) + 1));
        size_t i;
        json_t *v;
        json_array_foreach(devs, i, v) {
            if (!json_is_string(v)) {
                mx_req_error(req, 400, "M_BAD_JSON", "devices must be a list of device IDs");
                return;
            }
            if (q->ids)
                q->ids[q->nids++] = json_string_value(v);
        }
    } else {
        q->ids = mx_palloc(pool, sizeof(char *));
        if (q->ids) {
            q->ids[0] = mx_req_param(req, "deviceId");
            q->nids = 1;
        }
    }
    if (!q->ids) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    acc_uia_run(req, body, who->user_id, acc_flow_password, 1, acc_delete_uia_done, q);
}

static int acc_delete_device(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, acc_delete_authed, NULL);
}

static int acc_post_delete_devices(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, acc_delete_authed, (void *)1);
}

int acc_devices_routes(void)
{
    int rc;
    if ((rc = acc_route_v3_r0("GET", "/devices", acc_get_devices, 0)) < 0 ||
        (rc = acc_route_v3_r0("GET", "/devices/{deviceId}", acc_get_devices, 0)) < 0 ||
        (rc = acc_route_v3_r0("PUT", "/devices/{deviceId}", acc_put_device,
                              MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = acc_route_v3_r0("DELETE", "/devices/{deviceId}", acc_delete_device,
                              MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = acc_route_v3_r0("POST", "/delete_devices", acc_post_delete_devices,
                              MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
