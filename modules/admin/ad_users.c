/*
 * ad_users.c: the user routes of the Admin API — list (v2), details and
 * create/modify (v2), deactivate, reset password, whois, admin flag,
 * login as a user, shadow-ban, lock, username availability, joined rooms,
 * memberships, account data, pushers and devices.
 *
 * Each handler checks the path, query and body the way Synapse does, then
 * hands the work to the homeserver service with ad_done as callback.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ----------------------------------------------------------------- list --- */

static void ad_users_list(ad_req_t *ar)
{
    int64_t from, limit;
    int guests, deact, admins, locked;
    const char *dir;
    const char *from_s = mx_req_query(ar->req, "from");
    if (from_s && strspn(from_s, "0123456789") != strlen(from_s)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Query parameter from must be a string"
                     " representing a positive integer.");
        return;
    }
    if (!ad_qint(ar, "from", 0, 0, &from) || !ad_qint(ar, "limit", 100, 0, &limit) ||
        !ad_qbool(ar, "guests", 1, &guests) || !ad_qbool(ar, "deactivated", 0, &deact) ||
        !ad_qbool(ar, "admins", -1, &admins) || !ad_qbool(ar, "locked", 0, &locked) ||
        !ad_qdir(ar, &dir))
        return;
    if (limit > ad->conf.max_limit)
        limit = ad->conf.max_limit;
    json_t *q = json_pack("{s:I, s:I, s:b, s:b, s:b, s:s}", "from", (json_int_t)from, "limit",
                          (json_int_t)limit, "guests", guests, "deactivated", deact, "locked",
                          locked, "dir", dir);
    if (admins >= 0)
        json_object_set_new(q, "admins", json_boolean(admins));
    static const char *const strs[] = { "name", "user_id", "order_by", "user_type" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        const char *v = mx_req_query(ar->req, strs[i]);
        if (v)
            json_object_set_new(q, strs[i], json_string(v));
    }
    static const char *const orders[] = {
        "name", "is_guest", "admin", "user_type", "deactivated", "shadow_banned", "displayname",
        "avatar_url", "creation_ts", "last_seen_ts", "locked", "approved", "erased", NULL,
    };
    const char *order = mx_req_query(ar->req, "order_by");
    if (order) {
        int i;
        for (i = 0; orders[i] && strcmp(orders[i], order); i++)
            ;
        if (!orders[i]) {
            json_decref(q);
            mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Unknown value for order_by: %s",
                         order);
            return;
        }
    }
    AD_CALL(ar, ar->hs->list_users(q, ad_done, ar));
    json_decref(q);
}

/* -------------------------------------------------------------- details --- */

AD_ON_PARAM(ad_user_get, ad_local_user(ar, "Can only look up local users"), get_user)

static void ad_user_put_done(int status, json_t *result, void *ud)
{
    ad_req_t *ar = ud;
    if (status == 0) {
        bool created = json_is_true(json_object_get(result, "created"));
        json_t *user = json_incref(json_object_get(result, "user"));
        json_decref(result);
        mx_req_reply_json(ar->req, created ? 201 : 200, user);
        return;
    }
    ad_done(status, result, ud);
}

/* Type checks of the PUT body (Synapse's messages). */
static bool ad_user_body_ok(ad_req_t *ar, const json_t *b)
{
    static const char *const bools[] = { "admin", "deactivated", "locked", "logout_devices" };
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        const json_t *v = json_object_get(b, bools[i]);
        if (v && !json_is_boolean(v)) {
            mx_req_error(ar->req, 400, "M_INVALID_PARAM", "'%s' parameter is not of type boolean",
                         bools[i]);
            return false;
        }
    }
    const json_t *pw = json_object_get(b, "password");
    if (pw && (!json_is_string(pw) || json_string_length(pw) > 512)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Invalid password");
        return false;
    }
    static const char *const strs[] = { "displayname", "avatar_url", "user_type" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        const json_t *v = json_object_get(b, strs[i]);
        if (v && !json_is_string(v) && !(json_is_null(v) && strcmp(strs[i], "displayname"))) {
            mx_req_error(ar->req, 400, "M_INVALID_PARAM", "'%s' parameter is not a string",
                         strs[i]);
            return false;
        }
    }
    const json_t *dn = json_object_get(b, "displayname");
    if (json_is_string(dn) && json_string_length(dn) > 256) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "displayname is too long");
        return false;
    }
    const char *ut = json_string_value(json_object_get(b, "user_type"));
    if (ut && strcmp(ut, "support") && strcmp(ut, "bot")) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Invalid user type");
        return false;
    }
    const json_t *tp = json_object_get(b, "threepids");
    if (tp && !json_is_array(tp)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "threepids must be an array");
        return false;
    }
    return true;
}

static void ad_user_put(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "This endpoint can only be used with local users");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b || !ad_user_body_ok(ar, b))
        return;
    if (!strcmp(u, ar->admin) && json_is_false(json_object_get(b, "admin"))) {
        mx_req_error(ar->req, 400, "M_UNKNOWN", "You may not demote yourself.");
        return;
    }
    AD_CALL(ar, ar->hs->upsert_user(u, b, ad_user_put_done, ar));
}

/* ----------------------------------------------- deactivate, password --- */

static void ad_deactivate(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Can only deactivate local users");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    json_t *erase = json_object_get(b, "erase");
    if (erase && !json_is_boolean(erase)) {
        mx_req_error(ar->req, 400, "M_BAD_JSON", "Param 'erase' must be a boolean, if given");
        return;
    }
    AD_CALL(ar, ar->hs->deactivate_user(u, json_is_true(erase), ad_done, ar));
}

static void ad_reset_password(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Can only change the password of local users");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    const json_t *pw = json_object_get(b, "new_password");
    if (!json_is_string(pw) || json_string_length(pw) == 0 || json_string_length(pw) > 512) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing or invalid param new_password");
        return;
    }
    const json_t *lo = json_object_get(b, "logout_devices");
    if (lo && !json_is_boolean(lo)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "logout_devices must be a boolean");
        return;
    }
    AD_CALL(ar, ar->hs->reset_password(u, json_string_value(pw), !json_is_false(lo), ad_done, ar));
}

/* ------------------------------------------------- whois, flags, login --- */

AD_ON_PARAM(ad_whois, ad_local_user(ar, "Can only whois a local user"), whois)

static void ad_admin_get_done(int status, json_t *result, void *ud)
{
    ad_req_t *ar = ud;
    if (status == 0) {
        json_t *out = json_pack("{s:O}", "admin", json_object_get(result, "admin"));
        json_decref(result);
        mx_req_reply_json(ar->req, 200, out);
        return;
    }
    ad_done(status, result, ud);
}

static void ad_admin_get(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Only local users can be admins of this homeserver");
    if (u)
        AD_CALL(ar, ar->hs->get_user(u, ad_admin_get_done, ar));
}

static void ad_admin_put(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Only local users can be admins of this homeserver");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    const json_t *v = json_object_get(b, "admin");
    if (!json_is_boolean(v)) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing or invalid param 'admin'");
        return;
    }
    if (!strcmp(u, ar->admin)) {
        mx_req_error(ar->req, 400, "M_UNKNOWN", "You may not demote yourself.");
        return;
    }
    AD_CALL(ar, ar->hs->set_user_flag(u, "admin", json_is_true(v), ad_done, ar));
}

AD_ON_PARAM(ad_shadow_ban, ad_local_user(ar, "Only local users can be shadow-banned"),
            set_user_flag, "shadow_banned", !strcmp(mx_req_method(ar->req), "POST"))

static void ad_login_as(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Only local users can be logged in as");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    if (!strcmp(u, ar->admin)) {
        mx_req_error(ar->req, 400, "M_UNKNOWN", "Cannot use admin API to login as self");
        return;
    }
    const json_t *v = json_object_get(b, "valid_until_ms");
    if (v && !json_is_null(v) && !json_is_integer(v)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "'valid_until_ms' parameter must be an int");
        return;
    }
    int64_t until = json_is_integer(v) ? json_integer_value(v) : 0;
    if (json_is_integer(v) && until < (int64_t)mx_now_ms()) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "'valid_until_ms' is in the past");
        return;
    }
    AD_CALL(ar, ar->hs->login_as(u, until, ad_done, ar));
}

static void ad_username_available(ad_req_t *ar)
{
    const char *name = mx_req_query(ar->req, "username");
    if (!name) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing string query parameter 'username'");
        return;
    }
    AD_CALL(ar, ar->hs->username_available(name, ad_done, ar));
}

static void ad_available_done(int status, json_t *result, void *ud)
{
    ad_req_t *ar = ud;
    if (status == -EEXIST) {
        json_decref(result);
        mx_req_error(ar->req, 400, "M_USER_IN_USE", "User ID already taken.");
        return;
    }
    ad_done(status, result, ud);
}

static void ad_username_available_wrap(ad_req_t *ar)
{
    const char *name = mx_req_query(ar->req, "username");
    if (!name) {
        ad_username_available(ar);
        return;
    }
    AD_CALL(ar, ar->hs->username_available(name, ad_available_done, ar));
}

/* ------------------------------------------------------ data of a user --- */

AD_ON_PARAM(ad_joined_rooms, ad_user_param(ar), joined_rooms)
AD_ON_PARAM(ad_memberships, ad_user_param(ar), memberships)
AD_ON_PARAM(ad_account_data, ad_local_user(ar, "Can only look up local users"), account_data)
AD_ON_PARAM(ad_pushers, ad_local_user(ar, "Can only look up local users"), pushers)

/* -------------------------------------------------------------- devices --- */

AD_ON_PARAM(ad_devices_get, ad_local_user(ar, "Can only lookup local users"), list_devices)

static void ad_devices_post(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Can only create devices for local users");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    const char *d = json_string_value(json_object_get(b, "device_id"));
    if (!d || !*d || strlen(d) > 255) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing or invalid param device_id");
        return;
    }
    AD_CALL(ar, ar->hs->create_device(u, d, ad_done, ar));
}

AD_ON_PARAM(ad_device_get, ad_local_user(ar, "Can only lookup local users"),
            get_device, mx_req_param(ar->req, "deviceId"))

static void ad_device_put(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Can only lookup local users");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    const json_t *dn = json_object_get(b, "display_name");
    if (dn && !json_is_string(dn) && !json_is_null(dn)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "display_name must be a string");
        return;
    }
    if (json_is_string(dn) && json_string_length(dn) > 100) {
        mx_req_error(ar->req, 400, "M_TOO_LARGE", "Device display name is too long (max 100)");
        return;
    }
    AD_CALL(ar, ar->hs->update_device(u, mx_req_param(ar->req, "deviceId"),
                                      json_string_value(dn), ad_done, ar));
}

static void ad_device_delete(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Can only lookup local users");
    if (!u)
        return;
    json_t *ids = json_pack("[s]", mx_req_param(ar->req, "deviceId"));
    AD_CALL(ar, ar->hs->delete_devices(u, ids, ad_done, ar));
    json_decref(ids);
}

static void ad_delete_devices(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Can only lookup local users");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    const json_t *ids = json_object_get(b, "devices");
    size_t i;
    json_t *v;
    bool ok = json_is_array(ids);
    json_array_foreach(ids, i, v)
        ok = ok && json_is_string(v);
    if (!ok) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing or invalid param 'devices'");
        return;
    }
    AD_CALL(ar, ar->hs->delete_devices(u, ids, ad_done, ar));
}

/* -------------------------------------------------- rate-limit override --- */

AD_ON_PARAM(ad_ratelimit_get, ad_local_user(ar, "Can only look up local users"), get_ratelimit)

static void ad_ratelimit_post(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Only local users can be ratelimited");
    json_t *b = u ? ad_body(ar) : NULL;
    if (!b)
        return;
    static const char *const keys[] = { "messages_per_second", "burst_count" };
    int64_t v[2] = { 0, 0 };
    for (int i = 0; i < 2; i++) {
        const json_t *x = json_object_get(b, keys[i]);
        if (!x || json_is_null(x))
            continue;
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            mx_req_error(ar->req, 400, "M_INVALID_PARAM", "%s parameter must be a positive int",
                         keys[i]);
            return;
        }
        v[i] = json_integer_value(x);
    }
    AD_CALL(ar, ar->hs->set_ratelimit(u, v[0], v[1], ad_done, ar));
}

AD_ON_PARAM(ad_ratelimit_delete, ad_local_user(ar, "Only local users can be ratelimited"),
            set_ratelimit, -1, -1)

/* --------------------------------------------------------------- routes --- */


int ad_users_routes(void)
{
    static const ad_route_t r[] = {
        { "GET", AD_V2 "/users", ad_users_list, 0 },
        { "GET", "/_synapse/admin/v3/users", ad_users_list, 0 },
        { "GET", AD_V2 "/users/{userId}", ad_user_get, 0 },
        { "PUT", AD_V2 "/users/{userId}", ad_user_put, AD_J },
        { "POST", AD_V1 "/deactivate/{userId}", ad_deactivate, AD_J },
        { "POST", AD_V1 "/reset_password/{userId}", ad_reset_password, AD_J },
        { "GET", AD_V1 "/whois/{userId}", ad_whois, AD_SELF_OK },
        { "GET", "/_matrix/client/v3/admin/whois/{userId}", ad_whois, AD_SELF_OK },
        { "GET", "/_matrix/client/r0/admin/whois/{userId}", ad_whois, AD_SELF_OK },
        { "GET", AD_V1 "/users/{userId}/admin", ad_admin_get, 0 },
        { "PUT", AD_V1 "/users/{userId}/admin", ad_admin_put, AD_J },
        { "POST", AD_V1 "/users/{userId}/login", ad_login_as, AD_J },
        { "POST", AD_V1 "/users/{userId}/shadow_ban", ad_shadow_ban, AD_J },
        { "DELETE", AD_V1 "/users/{userId}/shadow_ban", ad_shadow_ban, AD_J },
        { "GET", AD_V1 "/username_available", ad_username_available_wrap, 0 },
        { "GET", AD_V1 "/users/{userId}/override_ratelimit", ad_ratelimit_get, 0 },
        { "POST", AD_V1 "/users/{userId}/override_ratelimit", ad_ratelimit_post, AD_J },
        { "DELETE", AD_V1 "/users/{userId}/override_ratelimit", ad_ratelimit_delete, AD_J },
        { "GET", AD_V1 "/users/{userId}/joined_rooms", ad_joined_rooms, 0 },
        { "GET", AD_V1 "/users/{userId}/memberships", ad_memberships, 0 },
        { "GET", AD_V1 "/users/{userId}/accountdata", ad_account_data, 0 },
        { "GET", AD_V1 "/users/{userId}/pushers", ad_pushers, 0 },
        { "GET", AD_V2 "/users/{userId}/devices", ad_devices_get, 0 },
        { "POST", AD_V2 "/users/{userId}/devices", ad_devices_post, AD_J },
        { "POST", AD_V2 "/users/{userId}/delete_devices", ad_delete_devices, AD_J },
        { "GET", AD_V2 "/users/{userId}/devices/{deviceId}", ad_device_get, 0 },
        { "PUT", AD_V2 "/users/{userId}/devices/{deviceId}", ad_device_put, AD_J },
        { "DELETE", AD_V2 "/users/{userId}/devices/{deviceId}", ad_device_delete, AD_J },
    };
    return ad_routes(r, sizeof(r) / sizeof(r[0]));
}
