/*
 * acc_service.c: the `homeserver.users` typed service (users_iface.h) with
 * which other modules act on accounts without reading the accounts tables:
 * the auth module checks passwords, creates users (its registration page,
 * `mxstack manage register-user`), and provisions the devices of OAuth 2.0
 * sessions.  Each call is one small job (calloc'd, freed after its callback)
 * with its own pool for the strings it builds.
 */
#include "acc_int.h"
#include "users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct acc_job {
    mx_pool_t *pool;
    hs_users_fn cb;
    hs_users_list_fn lcb;
    void *ud;
    char *user_id, *device_id, *password;
    bool admin, locked;
    hs_users_info_t info;
} acc_job_t;

static acc_job_t *acc_job_new(hs_users_fn cb, void *ud)
{
    acc_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    if (!(j->pool = mx_pool_new())) {
        free(j);
        return NULL;
    }
    j->cb = cb;
    j->ud = ud;
    return j;
}

static void acc_job_end(acc_job_t *j, int status, const hs_users_info_t *u)
{
    if (j->cb)
        j->cb(status, u, j->ud);
    if (j->password)
        memset(j->password, 0, strlen(j->password));
    mx_pool_free(j->pool);
    free(j);
}

/* Runs batch `b` for job `j`; on a failed start the job is freed and the
 * code returned (the callback does not run). */
static int acc_job_run(acc_job_t *j, mx_sql_batch_t *b, mx_sql_done_fn fn)
{
    int rc = mx_sql_run(b, fn, j);
    if (rc < 0) {
        j->cb = NULL;
        acc_job_end(j, rc, NULL);
    }
    return rc;
}

static mx_sql_batch_t *acc_job_batch(acc_job_t *j, int mode)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, mode);
    if (!b) {
        j->cb = NULL;
        acc_job_end(j, -ENOMEM, NULL);
    }
    return b;
}

/* A job for the existing user `user` (a Matrix ID or localpart): NULL with
 * *rc set (-ENOMEM, or -ENOENT: the job ended without calling `cb`). */
static acc_job_t *acc_job_for_user(const char *user, hs_users_fn cb, void *ud, int *rc)
{
    acc_job_t *j = acc_job_new(cb, ud);
    *rc = j ? 0 : -ENOMEM;
    if (j && !(j->user_id = acc_user_from_input(j->pool, user))) {
        j->cb = NULL;
        acc_job_end(j, -ENOENT, NULL);
        *rc = -ENOENT;
        return NULL;
    }
    return j;
}

/* Hashes `password` for the job, then `fn`; on failure the job ends
 * without calling its callback. */
static int acc_job_hash(acc_job_t *j, const char *password,
                        void (*fn)(int status, const char *hash, void *ud))
{
    int rc = acc_pw_hash(password, fn, j);
    if (rc < 0) {
        j->cb = NULL;
        acc_job_end(j, rc, NULL);
    }
    return rc;
}

/* In a hash callback: the write batch of the job, or NULL when the job
 * ended (hashing failed, or out of memory). */
static mx_sql_batch_t *acc_job_hashed_batch(acc_job_t *j, int status)
{
    mx_sql_batch_t *b = status < 0 ? NULL : mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b)
        acc_job_end(j, status < 0 ? status : -ENOMEM, NULL);
    return b;
}

/* In a callback: runs `b`, ending the job (its callback called) on failure. */
static void acc_job_run_async(acc_job_t *j, mx_sql_batch_t *b, mx_sql_done_fn fn)
{
    int rc = mx_sql_run(b, fn, j);
    if (rc < 0)
        acc_job_end(j, rc, NULL);
}

/* Reads the users row at `row` of statement `stmt` (name, admin, is_guest,
 * deactivated, locked, creation_ts) into j->info. */
static void acc_job_info(acc_job_t *j, const mx_sql_res_t *res, int stmt, int row)
{
    j->info.user_id = mx_pstrdup(j->pool, mx_sql_text(res, stmt, row, 0));
    j->info.is_admin = mx_sql_int(res, stmt, row, 1) != 0;
    j->info.is_guest = mx_sql_int(res, stmt, row, 2) != 0;
    j->info.deactivated = mx_sql_int(res, stmt, row, 3) != 0;
    j->info.locked = mx_sql_int(res, stmt, row, 4) != 0;
    j->info.creation_ts = mx_sql_int(res, stmt, row, 5);
}

#define ACC_USER_COLS "name, admin, is_guest, deactivated, locked, creation_ts, password_hash"

/* ------------------------------------------------------- check_password --- */

static void acc_svc_pw_checked(bool ok, void *ud)
{
    acc_job_t *j = ud;
    if (!ok || !j->info.user_id || j->info.deactivated)
        acc_job_end(j, -EACCES, NULL);
    else
        acc_job_end(j, j->info.locked ? -EKEYREVOKED : 0, &j->info);
}

static void acc_svc_pw_loaded(int status, mx_sql_res_t *res, void *ud)
{
    acc_job_t *j = ud;
    if (status < 0) {
        acc_job_end(j, status, NULL);
        return;
    }
    /* Case-insensitive match; with several, only the exact one counts. */
    int n = mx_sql_nrows(res, 0), row = n == 1 ? 0 : -1;
    for (int i = 0; n > 1 && i < n; i++)
        if (!strcmp(mx_sql_text(res, 0, i, 0), j->user_id))
            row = i;
    const char *hash = NULL;
    if (row >= 0) {
        acc_job_info(j, res, 0, row);
        hash = mx_sql_text(res, 0, row, 6);
    }
    /* Unknown users cost the same hashing work (acc_pw_verify). */
    int rc = acc_pw_verify(hash, j->password, acc_svc_pw_checked, j);
    if (rc < 0)
        acc_job_end(j, rc, NULL);
}

static int acc_svc_check_password(const char *user, const char *password, hs_users_fn cb,
                                  void *ud)
{
    if (!user || !password || !cb)
        return -EINVAL;
    acc_job_t *j = acc_job_new(cb, ud);
    if (!j)
        return -ENOMEM;
    j->user_id = acc_user_from_input(j->pool, user);
    j->password = mx_pstrdup(j->pool, password);
    if (!j->user_id || !j->password) {
        j->cb = NULL;
        acc_job_end(j, -ENOENT, NULL);
        return -ENOENT;
    }
    acc_lower(j->user_id);
    mx_sql_batch_t *b = acc_job_batch(j, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT " ACC_USER_COLS " FROM users WHERE lower(name) = ?", "s", j->user_id);
    return acc_job_run(j, b, acc_svc_pw_loaded);
}

/* ------------------------------------------------------------------ get --- */

/* The users row a statement returned into j->info; false when the job
 * ended (error, or -ENOENT: no row). */
static bool acc_job_row(acc_job_t *j, int status, const mx_sql_res_t *res)
{
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        acc_job_end(j, status < 0 ? status : -ENOENT, NULL);
        return false;
    }
    acc_job_info(j, res, 0, 0);
    return true;
}

static void acc_svc_got(int status, mx_sql_res_t *res, void *ud)
{
    acc_job_t *j = ud;
    if (acc_job_row(j, status, res))
        acc_job_end(j, 0, &j->info);
}

static int acc_svc_get(const char *user, hs_users_fn cb, void *ud)
{
    if (!user || !cb)
        return -EINVAL;
    int rc;
    acc_job_t *j = acc_job_for_user(user, cb, ud, &rc);
    if (!j)
        return rc;
    mx_sql_batch_t *b = acc_job_batch(j, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT " ACC_USER_COLS " FROM users WHERE name = ?", "s", j->user_id);
    return acc_job_run(j, b, acc_svc_got);
}

/* --------------------------------------------------------------- create --- */

static void acc_svc_created(int status, mx_sql_res_t *res, void *ud)
{
    acc_job_t *j = ud;
    if (status == MX_ECONSTRAINT) {
        acc_job_end(j, -EEXIST, NULL);
        return;
    }
    if (status < 0) {
        acc_job_end(j, status, NULL);
        return;
    }
    acc_job_info(j, res, 0, 0);
    acc_hook_user_registered(j->info.user_id, NULL, false);
    acc_job_end(j, 0, &j->info);
}

static void acc_svc_create_hashed(int status, const char *hash, void *ud)
{
    acc_job_t *j = ud;
    mx_sql_batch_t *b = acc_job_hashed_batch(j, status);
    if (!b)
        return;
    mx_sql_add(b,
               "INSERT INTO users (name, password_hash, is_guest, admin, creation_ts)"
               " VALUES (?, ?, 0, ?, ?) RETURNING " ACC_USER_COLS,
               "ssii", j->user_id, hash, (int64_t)j->admin, (int64_t)(mx_now_ms() / 1000));
    acc_hook_user_creating(b, j->user_id, NULL, false);
    acc_job_run_async(j, b, acc_svc_created);
}

static int acc_svc_create(const char *localpart, const char *password, bool admin,
                          hs_users_fn cb, void *ud)
{
    if (!localpart || !cb || !hs_is_valid_localpart(localpart) || localpart[0] == '_' ||
        strspn(localpart, "0123456789") == strlen(localpart) ||
        strlen(localpart) + strlen(hs.server_name) + 2 > 255)
        return -EINVAL;
    if (password && (!*password || strlen(password) > 512))
        return -EINVAL;
    acc_job_t *j = acc_job_new(cb, ud);
    if (!j)
        return -ENOMEM;
    j->user_id = hs_user_id(j->pool, localpart);
    j->admin = admin;
    if (!password) {
        acc_svc_create_hashed(0, NULL, j);
        return 0;
    }
    return acc_job_hash(j, password, acc_svc_create_hashed);
}

/* ------------------------------------------------ set_password, locked --- */

static void acc_svc_updated(int status, mx_sql_res_t *res, void *ud)
{
    acc_job_t *j = ud;
    if (!acc_job_row(j, status, res))
        return;
    /* A lock takes effect at once: cached tokens are checked again. */
    acc_cache_evict_device(j->info.user_id, NULL);
    acc_job_end(j, 0, &j->info);
}

static void acc_svc_pw_hashed(int status, const char *hash, void *ud)
{
    acc_job_t *j = ud;
    mx_sql_batch_t *b = acc_job_hashed_batch(j, status);
    if (!b)
        return;
    mx_sql_add(b, "UPDATE users SET password_hash = ? WHERE name = ? RETURNING " ACC_USER_COLS,
               "ss", hash, j->user_id);
    acc_job_run_async(j, b, acc_svc_updated);
}

static int acc_svc_set_password(const char *user, const char *password, hs_users_fn cb,
                                void *ud)
{
    if (!user || !password || !*password || strlen(password) > 512 || !cb)
        return -EINVAL;
    int rc;
    acc_job_t *j = acc_job_for_user(user, cb, ud, &rc);
    return j ? acc_job_hash(j, password, acc_svc_pw_hashed) : rc;
}

static int acc_svc_set_locked(const char *user, bool locked, hs_users_fn cb, void *ud)
{
    if (!user || !cb)
        return -EINVAL;
    int rc;
    acc_job_t *j = acc_job_for_user(user, cb, ud, &rc);
    if (!j)
        return rc;
    mx_sql_batch_t *b = acc_job_batch(j, MX_SQL_WRITE);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "UPDATE users SET locked = ? WHERE name = ? RETURNING " ACC_USER_COLS, "is",
               (int64_t)locked, j->user_id);
    return acc_job_run(j, b, acc_svc_updated);
}

/* -------------------------------------------------------------- devices --- */

static void acc_svc_dev_upserted(int status, mx_sql_res_t *res, void *ud)
{
    acc_job_t *j = ud;
    if (status < 0) {
        acc_job_end(j, status, NULL);
        return;
    }
    if (mx_sql_changes(res, 0) > 0)
        acc_hook_device_created(j->user_id, j->device_id);
    acc_job_end(j, 0, NULL);
}

static int acc_svc_upsert_device(const char *user_id, const char *device_id,
                                 const char *display_name, hs_users_fn cb, void *ud)
{
    if (!user_id || !device_id || !*device_id || strlen(device_id) > 255 || !cb)
        return -EINVAL;
    acc_job_t *j = acc_job_new(cb, ud);
    if (!j)
        return -ENOMEM;
    j->user_id = mx_pstrdup(j->pool, user_id);
    j->device_id = mx_pstrdup(j->pool, device_id);
    mx_sql_batch_t *b = acc_job_batch(j, MX_SQL_WRITE);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b,
               "INSERT INTO devices (user_id, device_id, display_name, created_ts)"
               " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO NOTHING",
               "sssi", user_id, device_id, display_name, (int64_t)mx_now_ms());
    return acc_job_run(j, b, acc_svc_dev_upserted);
}

static void acc_svc_dev_deleted(int status, mx_sql_res_t *res, void *ud)
{
    acc_job_t *j = ud;
    if (status < 0) {
        acc_job_end(j, status, NULL);
        return;
    }
    acc_cache_evict_device(j->user_id, j->device_id);
    if (mx_sql_changes(res, 0) > 0) {
        const char *ids[1] = { j->device_id };
        acc_hook_devices_deleted(j->user_id, ids, 1);
    }
    acc_job_end(j, 0, NULL);
}

static int acc_svc_delete_device(const char *user_id, const char *device_id, hs_users_fn cb,
                                 void *ud)
{
    if (!user_id || !device_id || !cb)
        return -EINVAL;
    acc_job_t *j = acc_job_new(cb, ud);
    if (!j)
        return -ENOMEM;
    j->user_id = mx_pstrdup(j->pool, user_id);
    j->device_id = mx_pstrdup(j->pool, device_id);
    mx_sql_batch_t *b = acc_job_batch(j, MX_SQL_WRITE);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? AND device_id = ?", "ss", user_id,
               device_id);
    mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", "ss",
               user_id, device_id);
    mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?", "ss",
               user_id, device_id);
    return acc_job_run(j, b, acc_svc_dev_deleted);
}

/* ----------------------------------------------------------------- list --- */

static void acc_svc_listed(int status, mx_sql_res_t *res, void *ud)
{
    acc_job_t *j = ud;
    json_t *arr = status < 0 ? NULL : json_array();
    for (int i = 0; arr && i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:b, s:b, s:b, s:b, s:I}", "user_id", mx_sql_text(res, 0, i, 0),
                           "admin", (int)mx_sql_int(res, 0, i, 1), "guest",
                           (int)mx_sql_int(res, 0, i, 2), "deactivated",
                           (int)mx_sql_int(res, 0, i, 3), "locked", (int)mx_sql_int(res, 0, i, 4),
                           "creation_ts", (json_int_t)mx_sql_int(res, 0, i, 5)));
    j->lcb(status < 0 ? status : arr ? 0 : -ENOMEM, arr, j->ud);
    json_decref(arr);
    acc_job_end(j, 0, NULL);
}

static int acc_svc_list(hs_users_list_fn cb, void *ud)
{
    if (!cb)
        return -EINVAL;
    acc_job_t *j = acc_job_new(NULL, ud);
    if (!j)
        return -ENOMEM;
    j->lcb = cb;
    mx_sql_batch_t *b = acc_job_batch(j, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT " ACC_USER_COLS " FROM users ORDER BY name", "");
    return acc_job_run(j, b, acc_svc_listed);
}

static const hs_users_iface_t acc_users_iface = {
    .check_password = acc_svc_check_password,
    .get = acc_svc_get,
    .create = acc_svc_create,
    .set_password = acc_svc_set_password,
    .set_locked = acc_svc_set_locked,
    .upsert_device = acc_svc_upsert_device,
    .delete_device = acc_svc_delete_device,
    .list = acc_svc_list,
};

/* ------------------------------------------------ over HTTP (split) ---
 * The same calls as a JSON service, for an auth module running in another
 * process (its `service_locations: {homeserver.users: URL}`; the core
 * checks the internal secret).  Args and results mirror the interface:
 * {user, password, localpart, admin, locked, user_id, device_id,
 * display_name} in, {user_id, admin, guest, deactivated, locked,
 * creation_ts} or {users: [...]} out; failures carry the negative code. */

static json_t *acc_svc_info_json(const hs_users_info_t *u)
{
    if (!u)
        return json_object();
    return json_pack("{s:s, s:b, s:b, s:b, s:b, s:I}", "user_id", u->user_id, "admin",
                     u->is_admin, "guest", u->is_guest, "deactivated", u->deactivated, "locked",
                     u->locked, "creation_ts", (json_int_t)u->creation_ts);
}

static void acc_svc_remote_done(int status, const hs_users_info_t *u, void *ud)
{
    mx_service_call_t *call = ud;
    /* A locked account's right password still says who it is. */
    mx_service_reply(call, status == -EKEYREVOKED ? 0 : status,
                     status == 0 || status == -EKEYREVOKED
                         ? json_pack("{s:o, s:i}", "user", acc_svc_info_json(u), "status", status)
                         : NULL);
}

static void acc_svc_remote_listed(int status, json_t *users, void *ud)
{
    mx_service_reply(ud, status, status == 0 ? json_pack("{s:O}", "users", users) : NULL);
}

static void acc_svc_provider(mx_service_call_t *call, const char *method, const json_t *args,
                             void *ud)
{
    (void)ud;
#define ACC_ARG(k) json_string_value(json_object_get(args, k))
    const hs_users_iface_t *i = &acc_users_iface;
    int rc;
    if (!strcmp(method, "check_password"))
        rc = i->check_password(ACC_ARG("user"), ACC_ARG("password"), acc_svc_remote_done, call);
    else if (!strcmp(method, "get"))
        rc = i->get(ACC_ARG("user"), acc_svc_remote_done, call);
    else if (!strcmp(method, "create"))
        rc = i->create(ACC_ARG("localpart"), ACC_ARG("password"),
                       json_is_true(json_object_get(args, "admin")), acc_svc_remote_done, call);
    else if (!strcmp(method, "set_password"))
        rc = i->set_password(ACC_ARG("user"), ACC_ARG("password"), acc_svc_remote_done, call);
    else if (!strcmp(method, "set_locked"))
        rc = i->set_locked(ACC_ARG("user"), json_is_true(json_object_get(args, "locked")),
                           acc_svc_remote_done, call);
    else if (!strcmp(method, "upsert_device"))
        rc = i->upsert_device(ACC_ARG("user_id"), ACC_ARG("device_id"), ACC_ARG("display_name"),
                              acc_svc_remote_done, call);
    else if (!strcmp(method, "delete_device"))
        rc = i->delete_device(ACC_ARG("user_id"), ACC_ARG("device_id"), acc_svc_remote_done, call);
    else if (!strcmp(method, "list"))
        rc = i->list(acc_svc_remote_listed, call);
    else
        rc = -ENOENT;
#undef ACC_ARG
    if (rc < 0)
        mx_service_reply(call, rc, NULL);
}

int acc_users_service_start(void)
{
    int rc = mx_service_register(HS_USERS_SERVICE, &acc_users_iface);
    if (rc < 0 && rc != -EEXIST)
        return rc;
    rc = mx_service_provide(HS_USERS_SERVICE, acc_svc_provider, NULL);
    if (rc < 0 && rc != -EEXIST)
        return rc;
    return acc_mas_start();
}
