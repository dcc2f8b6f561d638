/*
 * acc_account.c: GET /account/whoami, POST /account/password and
 * POST /account/deactivate.
 *
 * Password change and deactivation need the user's password again (UIA
 * stage m.login.password).  A password change logs out the user's other
 * devices unless logout_devices is false; deactivation drops the password,
 * every device and token, and tells the other parts (hooks) so they can
 * make the user leave rooms and forget data when `erase` is set.
 */
#include "acc_int.h"

#include <errno.h>
#include <string.h>

static const unsigned acc_flow_password[] = { ACC_STAGE_PASSWORD };

/* ---------------------------------------------------------------- whoami --- */

static void acc_whoami_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *b = json_pack("{s:s, s:b}", "user_id", who->user_id, "is_guest", who->is_guest);
    if (b && who->device_id)
        json_object_set_new(b, "device_id", json_string(who->device_id));
    mx_req_reply_json(req, 200, b);
}

static int acc_get_whoami(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, acc_whoami_authed, NULL);
}

/* -------------------------------------------------------------- password --- */

typedef struct acc_pwchange {
    mx_req_t *req;
    const hs_user_t *who;
    bool logout_devices;
} acc_pwchange_t;

static void acc_pwchange_written(int status, mx_sql_res_t *res, void *ud)
{
    acc_pwchange_t *p = ud;
    if (status < 0) {
        hs_reply_storage_error(p->req, status, "account/password");
        return;
    }
    if (p->logout_devices) {
        acc_cache_evict_device(p->who->user_id, NULL);
        int n = mx_sql_nrows(res, 1);
        const char **ids = mx_palloc(mx_req_pool(p->req), sizeof(char *) * (size_t)(n + 1));
        for (int i = 0; ids && i < n; i++)
            ids[i] = mx_sql_text(res, 1, i, 0);
        if (ids)
            acc_hook_devices_deleted(p->who->user_id, ids, (size_t)n);
    }
    mx_req_reply_json(p->req, 200, json_object());
}

static void acc_pwchange_hashed(int status, const char *hash, void *ud)
{
    acc_pwchange_t *p = ud;
    if (status < 0 || !hash) {
        hs_reply_storage_error(p->req, status < 0 ? status : -EIO, "account/password: hash");
        return;
    }
    const hs_user_t *who = p->who;
    const char *dev = who->device_id ? who->device_id : "";
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(p->req, -ENOMEM, "account/password");
        return;
    }
    mx_sql_add(b, "UPDATE users SET password_hash = ? WHERE name = ?", "ss", hash, who->user_id);
    if (p->logout_devices) {
        /* Every other device goes; the one making the request stays. */
        mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? AND device_id <> ? RETURNING device_id",
                   "ss", who->user_id, dev);
        mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ? AND id <> ?", "si",
                   who->user_id, who->token_id);
        mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ? AND device_id <> ?", "ss",
                   who->user_id, dev);
    }
    int rc = mx_sql_run(b, acc_pwchange_written, p);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(p->req, rc, "account/password");
    }
}

static void acc_pwchange_uia_done(mx_req_t *req, acc_uia_sess_t *s, void *ud)
{
    acc_pwchange_t *p = ud;
    json_t *body = mx_req_json(req);
    json_t *pw = json_object_get(body, "new_password");
    if (!pw)
        pw = json_object_get(s->saved, "new_password");
    json_t *lo = json_object_get(body, "logout_devices");
    if (!lo)
        lo = json_object_get(s->saved, "logout_devices");
    p->logout_devices = !json_is_false(lo);
    if (!pw) {
        acc_uia_finish(s, false);
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing params: new_password");
        return;
    }
    if (!acc_pw_acceptable(req, pw)) {
        acc_uia_finish(s, false);
        return;
    }
    const char *np = mx_pstrdup(mx_req_pool(req), json_string_value(pw));
    acc_uia_finish(s, false);
    int rc = acc_pw_hash(np, acc_pwchange_hashed, p);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "account/password: hash");
}

static void acc_pwchange_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    json_t *pw = json_object_get(body, "new_password");
    if (pw && !acc_pw_acceptable(req, pw))
        return;
    acc_pwchange_t *p = mx_palloc(mx_req_pool(req), sizeof(*p));
    if (!p) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    p->req = req;
    p->who = who;
    p->logout_devices = true;
    acc_uia_run(req, body, who->user_id, acc_flow_password, 1, acc_pwchange_uia_done, p);
}

static int acc_post_password(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, acc_pwchange_authed, NULL);
}

/* ------------------------------------------------------------ deactivate --- */

typedef struct acc_deact {
    mx_req_t *req;
    const hs_user_t *who;
    bool erase;
} acc_deact_t;

static void acc_deact_written(int status, mx_sql_res_t *res, void *ud)
{
    acc_deact_t *d = ud;
    if (status < 0) {
        hs_reply_storage_error(d->req, status, "account/deactivate");
        return;
    }
    acc_cache_evict_device(d->who->user_id, NULL);
    int n = mx_sql_nrows(res, 1);
    const char **ids = mx_palloc(mx_req_pool(d->req), sizeof(char *) * (size_t)(n + 1));
    for (int i = 0; ids && i < n; i++)
        ids[i] = mx_sql_text(res, 1, i, 0);
    if (ids)
        acc_hook_devices_deleted(d->who->user_id, ids, (size_t)n);
    acc_hook_user_deactivated(d->who->user_id, d->erase);
    mx_req_reply_json(d->req, 200, json_pack("{s:s}", "id_server_unbind_result", "no-support"));
}

static void acc_deact_uia_done(mx_req_t *req, acc_uia_sess_t *s, void *ud)
{
    acc_deact_t *d = ud;
    json_t *erase = json_object_get(mx_req_json(req), "erase");
    if (!erase)
        erase = json_object_get(s->saved, "erase");
    d->erase = json_is_true(erase);
    acc_uia_finish(s, false);
    const char *uid = d->who->user_id;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "account/deactivate");
        return;
    }
    mx_sql_add(b, "UPDATE users SET deactivated = 1, erased = ?, password_hash = NULL WHERE name = ?",
               "is", (int64_t)d->erase, uid);
    mx_sql_add(b, "DELETE FROM devices WHERE user_id = ? RETURNING device_id", "s", uid);
    mx_sql_add(b, "DELETE FROM access_tokens WHERE user_id = ?", "s", uid);
    mx_sql_add(b, "DELETE FROM refresh_tokens WHERE user_id = ?", "s", uid);
    mx_sql_add(b, "DELETE FROM login_tokens WHERE user_id = ?", "s", uid);
    acc_hook_user_deactivating(b, uid, d->erase);
    int rc = mx_sql_run(b, acc_deact_written, d);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "account/deactivate");
    }
}

static void acc_deact_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *erase = json_object_get(mx_req_json(req), "erase");
    if (erase && !json_is_boolean(erase)) {
        mx_req_error(req, 400, "M_BAD_JSON", "erase must be a boolean");
        return;
    }
    acc_deact_t *d = mx_palloc(mx_req_pool(req), sizeof(*d));
    if (!d) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    d->req = req;
    d->who = who;
    d->erase = false;
    acc_uia_run(req, mx_req_json(req), who->user_id, acc_flow_password, 1, acc_deact_uia_done, d);
}

static int acc_post_deactivate(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, acc_deact_authed, NULL);
}

int acc_account_routes(void)
{
    int rc;
    if ((rc = acc_route_v3_r0("GET", "/account/whoami", acc_get_whoami, 0)) < 0 ||
        (rc = acc_route_v3_r0("POST", "/account/password", acc_post_password,
                              MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = acc_route_v3_r0("POST", "/account/deactivate", acc_post_deactivate,
                              MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
