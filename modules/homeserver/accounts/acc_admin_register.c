/*
 * acc_admin_register.c: Synapse's shared-secret registration,
 * GET/POST /_synapse/admin/v1/register, byte for byte the same protocol so
 * that register_new_matrix_user and existing scripts work.
 *
 * GET hands out a nonce (single use, 60 s).  POST carries nonce, username,
 * password, admin, optional user_type and displayname, and
 * mac = hex HMAC-SHA1(registration_shared_secret,
 *       nonce \0 username \0 password \0 ("admin"|"notadmin") [\0 user_type]),
 * compared in constant time.  Served on the "client" and "admin" resources.
 */
#include "acc_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACC_NONCE_TTL_MS 60000

static const char *acc_secret(void)
{
    const char *s = mx_server_conf()->registration_shared_secret;
    return s && *s ? s : NULL;
}

static bool acc_nonce_old(const char *key, void *val, void *ud)
{
    (void)key;
    return *(const uint64_t *)ud - *(const uint64_t *)val > ACC_NONCE_TTL_MS;
}

void acc_nonces_expire(void)
{
    uint64_t now = mx_now_ms();
    acc_map_filter(&hs_acc->nonces, acc_nonce_old, &now);
}

static int acc_get_nonce(mx_req_t *req, void *ud)
{
    (void)ud;
    if (!acc_secret()) {
        mx_req_error(req, 400, "M_UNKNOWN", "Shared secret registration is not enabled");
        return MX_DONE;
    }
    acc_nonces_expire();
    unsigned char raw[32];
    char nonce[65];
    static const char hex[] = "0123456789abcdef";
    mx_random_bytes(raw, sizeof(raw));
    for (size_t i = 0; i < sizeof(raw); i++) {
        nonce[2 * i] = hex[raw[i] >> 4];
        nonce[2 * i + 1] = hex[raw[i] & 15];
    }
    nonce[64] = '\0';
    uint64_t *ts = malloc(sizeof(*ts));
    if (!ts || acc_map_put(&hs_acc->nonces, nonce, ts) < 0) {
        free(ts);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_DONE;
    }
    *ts = mx_now_ms();
    mx_req_reply_json(req, 200, json_pack("{s:s}", "nonce", nonce));
    return MX_DONE;
}

/* Appends `s` (with its length) to the MAC input. */
static size_t acc_mac_part(char *buf, size_t off, const char *s, size_t n, bool sep)
{
    if (sep)
        buf[off++] = '\0';
    memcpy(buf + off, s, n);
    return off + n;
}

static bool acc_mac_ok(const char *nonce, const char *user, const char *pw, bool admin,
                       const char *user_type, const char *mac_hex)
{
    const char *secret = acc_secret();
    const char *adm = admin ? "admin" : "notadmin";
    size_t len = strlen(nonce) + strlen(user) + strlen(pw) + strlen(adm) + 3 +
                 (user_type ? strlen(user_type) + 1 : 0);
    char *buf = malloc(len + 1);
    if (!buf)
        return false;
    size_t off = acc_mac_part(buf, 0, nonce, strlen(nonce), false);
    off = acc_mac_part(buf, off, user, strlen(user), true);
    off = acc_mac_part(buf, off, pw, strlen(pw), true);
    off = acc_mac_part(buf, off, adm, strlen(adm), true);
    if (user_type)
        off = acc_mac_part(buf, off, user_type, strlen(user_type), true);
    unsigned char mac[20];
    mx_hmac_sha1(secret, strlen(secret), buf, off, mac);
    free(buf);
    static const char hex[] = "0123456789abcdef";
    char want[41];
    for (int i = 0; i < 20; i++) {
        want[2 * i] = hex[mac[i] >> 4];
        want[2 * i + 1] = hex[mac[i] & 15];
    }
    want[40] = '\0';
    /* Constant time over the expected length; a wrong length fails too. */
    char got[41] = { 0 };
    size_t n = strlen(mac_hex);
    snprintf(got, sizeof(got), "%s", mac_hex);
    acc_lower(got);
    bool same = mx_ct_equal(want, got, 40) != 0;
    return same && n == 40;
}

static void acc_admin_exists(int status, mx_sql_res_t *res, void *ud)
{
    acc_reg_t *r = ud;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "admin register");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        mx_req_error(r->req, 400, "M_USER_IN_USE", "User ID already taken.");
        return;
    }
    acc_register_create(r);
}

static bool acc_has_nul(const json_t *v)
{
    return memchr(json_string_value(v), '\0', json_string_length(v)) != NULL;
}

static int acc_post_admin_register(mx_req_t *req, void *ud)
{
    (void)ud;
    if (!acc_secret()) {
        mx_req_error(req, 400, "M_UNKNOWN", "Shared secret registration is not enabled");
        return MX_DONE;
    }
    json_t *body = mx_req_json(req);
    const char *nonce = json_string_value(json_object_get(body, "nonce"));
    if (!nonce) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "nonce must be specified");
        return MX_DONE;
    }
    acc_nonces_expire();
    if (!acc_map_get(&hs_acc->nonces, nonce)) {
        mx_req_error(req, 400, "M_UNKNOWN", "unrecognised nonce");
        return MX_DONE;
    }
    /* Single use, even when the rest of the request is wrong. */
    acc_map_del(&hs_acc->nonces, nonce);

    json_t *user = json_object_get(body, "username");
    json_t *pw = json_object_get(body, "password");
    json_t *admin = json_object_get(body, "admin");
    json_t *utype = json_object_get(body, "user_type");
    json_t *dname = json_object_get(body, "displayname");
    const char *mac = json_string_value(json_object_get(body, "mac"));
    if (!json_is_string(user) || json_string_length(user) > 512 || acc_has_nul(user)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid username");
        return MX_DONE;
    }
    if (!json_is_string(pw) || json_string_length(pw) > 512 || acc_has_nul(pw)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid password");
        return MX_DONE;
    }
    if (admin && !json_is_boolean(admin)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid admin");
        return MX_DONE;
    }
    if (utype && !json_is_null(utype) &&
        (!json_is_string(utype) || strcmp(json_string_value(utype), "bot") != 0) &&
        (!json_is_string(utype) || strcmp(json_string_value(utype), "support") != 0)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid user type");
        return MX_DONE;
    }
    if (dname && !json_is_null(dname) && !json_is_string(dname)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid displayname");
        return MX_DONE;
    }
    if (!mac) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "mac must be specified");
        return MX_DONE;
    }
    const char *ut = json_string_value(utype);
    if (!acc_mac_ok(nonce, json_string_value(user), json_string_value(pw), json_is_true(admin), ut,
                    mac)) {
        mx_req_error(req, 403, "M_FORBIDDEN", "HMAC incorrect");
        return MX_DONE;
    }
    mx_pool_t *pool = mx_req_pool(req);
    char *lp = acc_lower(mx_pstrdup(pool, json_string_value(user)));
    if (!acc_username_ok(req, lp))
        return MX_DONE;
    acc_reg_t *r = mx_palloc(pool, sizeof(*r));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!r || !b) {
        if (b)
            mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_DONE;
    }
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->localpart = lp;
    r->password = json_string_value(pw);
    r->admin = json_is_true(admin);
    r->user_type = ut;
    r->displayname = json_string_value(dname);
    mx_sql_add(b, "SELECT name FROM users WHERE lower(name) = lower(?)", "s", hs_user_id(pool, lp));
    int rc = mx_sql_run(b, acc_admin_exists, r);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "admin register");
        return MX_DONE;
    }
    return MX_ASYNC;
}

int acc_admin_register_routes(void)
{
    static const char *const resources[] = { "client", "admin" };
    for (size_t i = 0; i < 2; i++) {
        int rc;
        if ((rc = mx_route_add(resources[i], "GET", "/_synapse/admin/v1/register", acc_get_nonce,
                               NULL, 0)) < 0 ||
            (rc = mx_route_add(resources[i], "POST", "/_synapse/admin/v1/register",
                               acc_post_admin_register, NULL, MX_ROUTE_JSON_BODY)) < 0)
            return rc;
    }
    return 0;
}
