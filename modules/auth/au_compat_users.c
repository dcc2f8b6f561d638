/*
 * au_compat_users.c: `homeserver.users` for an auth module that runs
 * without the homeserver in its process (the split deployment): the same
 * interface (users_iface.h), each call made as the JSON service of the
 * same name, which the core sends to `service_locations.homeserver.users`
 * with the internal secret (the homeserver's acc_service.c answers).  The
 * rest of the module cannot tell the difference.
 *
 * Registered in init only when `modules:` is given and leaves the
 * homeserver out; otherwise the homeserver registers the real one.
 */
#include "auth.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct au_rq {
    hs_users_fn cb;
    hs_users_list_fn lcb;
    void *ud;
} au_rq_t;

static void au_rq_done(int status, const json_t *result, void *ud)
{
    au_rq_t *q = ud;
    if (q->lcb) {
        q->lcb(status, status == 0 ? json_object_get(result, "users") : NULL, q->ud);
        free(q);
        return;
    }
    const json_t *u = json_object_get(result, "user");
    const json_t *st = json_object_get(result, "status");
    if (status == 0 && json_is_integer(st))
        status = (int)json_integer_value(st);   /* e.g. -EKEYREVOKED with the user */
    hs_users_info_t info = {
        .user_id = json_string_value(json_object_get(u, "user_id")),
        .is_admin = json_is_true(json_object_get(u, "admin")),
        .is_guest = json_is_true(json_object_get(u, "guest")),
        .deactivated = json_is_true(json_object_get(u, "deactivated")),
        .locked = json_is_true(json_object_get(u, "locked")),
        .creation_ts = json_integer_value(json_object_get(u, "creation_ts")),
    };
    q->cb(status, info.user_id ? &info : NULL, q->ud);
    free(q);
}

/* Sends `method` with `args` (stolen). */
static int au_rq_call(const char *method, json_t *args, hs_users_fn cb, hs_users_list_fn lcb,
                      void *ud)
{
    au_rq_t *q = calloc(1, sizeof(*q));
    if (!q || !args) {
        free(q);
        json_decref(args);
        return -ENOMEM;
    }
    q->cb = cb;
    q->lcb = lcb;
    q->ud = ud;
    int rc = mx_service_call(HS_USERS_SERVICE, method, args, au_rq_done, q);
    json_decref(args);
    if (rc < 0)
        free(q);
    return rc;
}

static int au_r_check_password(const char *user, const char *password, hs_users_fn cb, void *ud)
{
    return au_rq_call("check_password", json_pack("{s:s?, s:s?}", "user", user, "password", password),
                      cb, NULL, ud);
}

static int au_r_get(const char *user, hs_users_fn cb, void *ud)
{
    return au_rq_call("get", json_pack("{s:s?}", "user", user), cb, NULL, ud);
}

static int au_r_create(const char *localpart, const char *password, bool admin, hs_users_fn cb,
                       void *ud)
{
    return au_rq_call("create",
                      json_pack("{s:s?, s:s?, s:b}", "localpart", localpart, "password", password,
                                "admin", admin),
                      cb, NULL, ud);
}

static int au_r_set_password(const char *user, const char *password, hs_users_fn cb, void *ud)
{
    return au_rq_call("set_password", json_pack("{s:s?, s:s?}", "user", user, "password", password),
                      cb, NULL, ud);
}

static int au_r_set_locked(const char *user, bool locked, hs_users_fn cb, void *ud)
{
    return au_rq_call("set_locked", json_pack("{s:s?, s:b}", "user", user, "locked", locked), cb,
                      NULL, ud);
}

static int au_r_upsert_device(const char *user_id, const char *device_id, const char *name,
                              hs_users_fn cb, void *ud)
{
    return au_rq_call("upsert_device",
                      json_pack("{s:s?, s:s?, s:s?}", "user_id", user_id, "device_id", device_id,
                                "display_name", name),
                      cb, NULL, ud);
}

static int au_r_delete_device(const char *user_id, const char *device_id, hs_users_fn cb,
                              void *ud)
{
    return au_rq_call("delete_device",
                      json_pack("{s:s?, s:s?}", "user_id", user_id, "device_id", device_id), cb,
                      NULL, ud);
}

static int au_r_list(hs_users_list_fn cb, void *ud)
{
    return au_rq_call("list", json_object(), NULL, cb, ud);
}

static const hs_users_iface_t au_remote_users = {
    .check_password = au_r_check_password,
    .get = au_r_get,
    .create = au_r_create,
    .set_password = au_r_set_password,
    .set_locked = au_r_set_locked,
    .upsert_device = au_r_upsert_device,
    .delete_device = au_r_delete_device,
    .list = au_r_list,
};

int au_compat_users_register(void)
{
    const json_t *mods = json_object_get(mx_server_conf()->root, "modules");
    if (!json_is_array(mods))
        return 0;   /* every module loads: the homeserver provides the real one */
    size_t i;
    json_t *m;
    json_array_foreach(mods, i, m)
        if (json_is_string(m) && !strcmp(json_string_value(m), "homeserver"))
            return 0;
    int rc = mx_service_register(HS_USERS_SERVICE, &au_remote_users);
    if (rc == 0)
        mx_log(AU_LOG, MX_LOG_INFO, "accounts are reached over HTTP (homeserver.users)");
    return rc == -EEXIST ? 0 : rc;
}
