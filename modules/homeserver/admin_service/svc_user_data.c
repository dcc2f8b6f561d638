/*
 * svc_user_data.c: what the admin service reads about one user besides its
 * account row — whois (sessions), devices (list, get, create, rename,
 * delete), joined rooms and memberships, account data and pushers.
 *
 * Device writes mirror the accounts part's own (devices and their tokens in
 * one batch) and then run its hooks, so E2EE keys and device lists follow.
 */
#include "svc.h"
#include "../accounts/acc_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every call here first checks that the user exists (404 otherwise) and
 * then runs `next` on the call. */
typedef void (*svc_user_next_fn)(svc_call_t *c);

static void svc_user_checked(int status, const hs_user_row_t *u, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    if (!u) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "User not found");
        return;
    }
    ((svc_user_next_fn)c->priv)(c);
}

static int svc_with_user(const char *user_id, const char *device_id, svc_user_next_fn next,
                         hs_admin_done_fn cb, void *ud, svc_call_t **out)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->user_id = mx_pstrdup(c->pool, user_id);
    c->str = device_id ? mx_pstrdup(c->pool, device_id) : NULL;
    c->priv = (void *)next;
    if (out)
        *out = c;
    int rc = hs_user_get(c->user_id, svc_user_checked, c);
    if (rc < 0)
        svc_call_free(c);
    return rc;
}

/* --------------------------------------------------------------- devices --- */

static json_t *svc_device_json(const mx_sql_res_t *res, int i, const char *user_id)
{
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:s}",
                     "device_id", mx_sql_text(res, 0, i, 0),
                     "display_name", svc_col_str(res, 0, i, 1),
                     "last_seen_ip", svc_col_str(res, 0, i, 2),
                     "last_seen_ts", svc_col_int(res, 0, i, 3),
                     "last_seen_user_agent", svc_col_str(res, 0, i, 4),
                     "user_id", user_id);
}

static json_t *svc_devices_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    int n = mx_sql_nrows(res, 0);
    if (c->str) {
        if (n < 1) {
            *status = -ENOENT;
            return NULL;
        }
        json_t *one = json_array();
        json_array_append_new(one, svc_device_json(res, 0, c->user_id));
        acc_seen_merge(c->user_id, one);
        json_t *d = json_incref(json_array_get(one, 0));
        json_decref(one);
        return d;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, svc_device_json(res, i, c->user_id));
    acc_seen_merge(c->user_id, arr);
    return json_pack("{s:o, s:i}", "devices", arr, "total", n);
}

static void svc_devices_next(svc_call_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        if (c->str)
            mx_sql_add(b, "SELECT device_id, display_name, last_seen_ip, last_seen_ts,"
                          " last_seen_user_agent FROM devices WHERE user_id = ? AND device_id = ?",
                       "ss", c->user_id, c->str);
        else
            mx_sql_add(b, "SELECT device_id, display_name, last_seen_ip, last_seen_ts,"
                          " last_seen_user_agent FROM devices WHERE user_id = ?"
                          " ORDER BY device_id", "s", c->user_id);
    }
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    if (svc_run(c, b, svc_devices_built) < 0)
        cb(-ENOMEM, NULL, ud);
}

int svc_list_devices(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    return svc_with_user(user_id, NULL, svc_devices_next, cb, ud, NULL);
}

int svc_get_device(const char *user_id, const char *device_id, hs_admin_done_fn cb, void *ud)
{
    return svc_with_user(user_id, device_id, svc_devices_next, cb, ud, NULL);
}

static void svc_devwrite_done(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    switch (c->n) {
    case 0: /* create */
        if (mx_sql_changes(res, 0) > 0)
            acc_hook_device_created(c->user_id, c->str);
        break;
    case 1: /* update */
        if (mx_sql_changes(res, 0) < 1) {
            svc_fail(c, -ENOENT, "M_NOT_FOUND", "Device not found");
            return;
        }
        acc_hook_device_updated(c->user_id, c->str);
        break;
    default: { /* delete */
        int n = mx_sql_nrows(res, 0);
        const char **ids = mx_palloc(c->pool, sizeof(char *) * (size_t)(n + 1));
        for (int i = 0; ids && i < n; i++) {
            ids[i] = mx_sql_text(res, 0, i, 0);
            acc_cache_evict_device(c->user_id, ids[i]);
        }
        if (ids && n > 0)
            acc_hook_devices_deleted(c->user_id, ids, (size_t)n);
        break;
    }
    }
    svc_finish(c, 0, json_object());
}

static void svc_devwrite_next(svc_call_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    if (b) {
        if (c->n == 0) {
            mx_sql_add(b, "INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)"
                          " ON CONFLICT (user_id, device_id) DO NOTHING",
                       "ssi", c->user_id, c->str, (int64_t)mx_now_ms());
        } else if (c->n == 1) {
            mx_sql_add(b, "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                       "sss", svc_qstr(c->args, "display_name"), c->user_id, c->str);
        } else {
            /* One statement per device keeps the binds simple; the
             * RETURNING rows of the first statement list them all via
             * the IN (...) form built below. */
            size_t n = json_array_size(c->args);
            char *in = mx_pstrdup(c->pool, "");
            for (size_t i = 0; i < n; i++)
                in = mx_psprintf(c->pool, "%s%s?", in, i ? ", " : "");
            char *q1 = mx_psprintf(c->pool, "DELETE FROM devices WHERE user_id = ? AND device_id"
                                            " IN (%s) RETURNING device_id", in);
            char *q2 = mx_psprintf(c->pool, "DELETE FROM access_tokens WHERE user_id = ? AND"
                                            " device_id IN (%s)", in);
            char *q3 = mx_psprintf(c->pool, "DELETE FROM refresh_tokens WHERE user_id = ? AND"
                                            " device_id IN (%s)", in);
            /* Variadic binds of unknown count: go through one statement
             * per device instead when more than one. */
            if (n == 1) {
                const char *d = json_string_value(json_array_get(c->args, 0));
                mx_sql_add(b, q1, "ss", c->user_id, d);
                mx_sql_add(b, q2, "ss", c->user_id, d);
                mx_sql_add(b, q3, "ss", c->user_id, d);
            } else {
                mx_sql_batch_free(b);
                b = NULL;
            }
        }
    }
    if (!b) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    if (mx_sql_run(b, svc_devwrite_done, c) < 0) {
        mx_sql_batch_free(b);
        svc_call_free(c);
        cb(MX_EDB, NULL, ud);
    }
}

int svc_create_device(const char *user_id, const char *device_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = NULL;
    int rc = svc_with_user(user_id, device_id, svc_devwrite_next, cb, ud, &c);
    if (rc == 0)
        c->n = 0;
    return rc;
}

int svc_update_device(const char *user_id, const char *device_id, const char *display_name,
                      hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = NULL;
    int rc = svc_with_user(user_id, device_id, svc_devwrite_next, cb, ud, &c);
    if (rc == 0) {
        c->n = 1;
        c->args = json_pack("{s:o}", "display_name",
                            display_name ? json_string(display_name) : json_null());
    }
    return rc;
}

/* Deleting several devices: one call per device, chained, then one
 * answer. */
typedef struct svc_multidel {
    svc_call_t *c;
    json_t *ids;
    size_t next;
} svc_multidel_t;

static void svc_multidel_step(int status, json_t *result, void *ud);

static void svc_multidel_go(svc_multidel_t *m)
{
    if (m->next >= json_array_size(m->ids)) {
        json_decref(m->ids);
        svc_call_t *c = m->c;
        free(m);
        svc_finish(c, 0, json_object());
        return;
    }
    svc_call_t *one = svc_call_new(svc_multidel_step, m);
    if (!one) {
        svc_multidel_step(-ENOMEM, NULL, m);
        return;
    }
    one->user_id = mx_pstrdup(one->pool, m->c->user_id);
    one->n = 2;
    one->args = json_pack("[O]", json_array_get(m->ids, m->next++));
    svc_devwrite_next(one);
}

static void svc_multidel_step(int status, json_t *result, void *ud)
{
    svc_multidel_t *m = ud;
    json_decref(result);
    if (status < 0) {
        json_decref(m->ids);
        svc_call_t *c = m->c;
        free(m);
        svc_finish(c, status, NULL);
        return;
    }
    svc_multidel_go(m);
}

static void svc_multidel_start(svc_call_t *c)
{
    svc_multidel_t *m = calloc(1, sizeof(*m));
    if (!m) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    m->c = c;
    m->ids = json_incref(c->args);
    svc_multidel_go(m);
}

int svc_delete_devices(const char *user_id, const json_t *device_ids, hs_admin_done_fn cb,
                       void *ud)
{
    if (!json_is_array(device_ids))
        return -EINVAL;
    size_t i;
    json_t *v;
    json_array_foreach(device_ids, i, v)
        if (!json_is_string(v))
            return -EINVAL;
    svc_call_t *c = NULL;
    int rc = svc_with_user(user_id, NULL, svc_multidel_start, cb, ud, &c);
    if (rc == 0)
        c->args = json_deep_copy(device_ids);
    return rc;
}

/* ----------------------------------------------------------------- whois --- */

static json_t *svc_whois_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    json_t *arr = json_array();
    int n = mx_sql_nrows(res, 0);
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, svc_device_json(res, i, c->user_id));
    acc_seen_merge(c->user_id, arr);
    json_t *devices = json_object();
    size_t k;
    json_t *d;
    json_array_foreach(arr, k, d) {
        json_t *conn = json_pack("{s:O, s:O, s:O}", "ip", json_object_get(d, "last_seen_ip"),
                                 "last_seen", json_object_get(d, "last_seen_ts"),
                                 "user_agent", json_object_get(d, "last_seen_user_agent"));
        json_object_set_new(devices, json_string_value(json_object_get(d, "device_id")),
                            json_pack("{s:[{s:[o]}]}", "sessions", "connections", conn));
    }
    json_decref(arr);
    return json_pack("{s:s, s:o}", "user_id", c->user_id, "devices", devices);
}

static void svc_whois_next(svc_call_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT device_id, display_name, last_seen_ip, last_seen_ts,"
                      " last_seen_user_agent FROM devices WHERE user_id = ? ORDER BY device_id",
                   "s", c->user_id);
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    if (svc_run(c, b, svc_whois_built) < 0)
        cb(-ENOMEM, NULL, ud);
}

int svc_whois(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    return svc_with_user(user_id, NULL, svc_whois_next, cb, ud, NULL);
}

/* ---------------------------------------------------- rooms of a user --- */

static json_t *svc_joined_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    int n = mx_sql_nrows(res, 0);
    if (c->n == 0) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, json_string(mx_sql_text(res, 0, i, 0)));
        return json_pack("{s:o, s:i}", "joined_rooms", arr, "total", n);
    }
    json_t *m = json_object();
    for (int i = 0; i < n; i++)
        json_object_set_new(m, mx_sql_text(res, 0, i, 0), json_string(mx_sql_text(res, 0, i, 1)));
    return json_pack("{s:o}", "memberships", m);
}

static void svc_joined_next(svc_call_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        if (c->n == 0)
            mx_sql_add(b, "SELECT room_id FROM room_memberships WHERE user_id = ? AND"
                          " membership = 'join' ORDER BY room_id", "s", c->user_id);
        else
            mx_sql_add(b, "SELECT room_id, membership FROM room_memberships WHERE user_id = ?"
                          " ORDER BY room_id", "s", c->user_id);
    }
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    if (svc_run(c, b, svc_joined_built) < 0)
        cb(-ENOMEM, NULL, ud);
}

int svc_joined_rooms(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    return svc_with_user(user_id, NULL, svc_joined_next, cb, ud, NULL);
}

int svc_memberships(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = NULL;
    int rc = svc_with_user(user_id, NULL, svc_joined_next, cb, ud, &c);
    if (rc == 0)
        c->n = 1;
    return rc;
}

/* --------------------------------------------------- account data, pushers --- */

static json_t *svc_ad_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    (void)status;
    json_t *global = json_object(), *rooms = json_object();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        const char *room = mx_sql_text(res, 0, i, 0), *type = mx_sql_text(res, 0, i, 1);
        const char *text = mx_sql_text(res, 0, i, 2);
        json_t *content = text ? json_loads(text, 0, NULL) : NULL;
        if (!content)
            content = json_object();
        if (!room || !*room) {
            json_object_set_new(global, type, content);
        } else {
            json_t *r = json_object_get(rooms, room);
            if (!r) {
                r = json_object();
                json_object_set_new(rooms, room, r);
            }
            json_object_set_new(r, type, content);
        }
    }
    return json_pack("{s:{s:o, s:o}}", "account_data", "global", global, "rooms", rooms);
}

static void svc_ad_next(svc_call_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT room_id, type, content FROM account_data WHERE user_id = ?", "s",
                   c->user_id);
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    if (svc_run(c, b, svc_ad_built) < 0)
        cb(-ENOMEM, NULL, ud);
}

int svc_account_data(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    return svc_with_user(user_id, NULL, svc_ad_next, cb, ud, NULL);
}

static json_t *svc_pushers_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    (void)status;
    json_t *arr = json_array();
    int n = mx_sql_nrows(res, 0);
    for (int i = 0; i < n; i++) {
        const char *data = mx_sql_text(res, 0, i, 8);
        json_t *d = data ? json_loads(data, 0, NULL) : NULL;
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:I}",
                                             "app_id", mx_sql_text(res, 0, i, 0),
                                             "pushkey", mx_sql_text(res, 0, i, 1),
                                             "kind", mx_sql_text(res, 0, i, 2),
                                             "app_display_name", svc_col_str(res, 0, i, 3),
                                             "device_display_name", svc_col_str(res, 0, i, 4),
                                             "profile_tag", svc_col_str(res, 0, i, 5),
                                             "lang", svc_col_str(res, 0, i, 6),
                                             "data", d ? d : json_object(),
                                             "pushkey_ts", (json_int_t)mx_sql_int(res, 0, i, 7)));
    }
    return json_pack("{s:o, s:i}", "pushers", arr, "total", n);
}

static void svc_pushers_next(svc_call_t *c)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT app_id, pushkey, kind, app_display_name, device_display_name,"
                      " profile_tag, lang, ts, data FROM pushers WHERE user_id = ?", "s",
                   c->user_id);
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    if (svc_run(c, b, svc_pushers_built) < 0)
        cb(-ENOMEM, NULL, ud);
}

int svc_pushers(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    return svc_with_user(user_id, NULL, svc_pushers_next, cb, ud, NULL);
}
