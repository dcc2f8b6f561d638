/*
 * acc_register.c: POST /register (users through UIA, guests),
 * GET /register/available and the registration token validity check, plus
 * the account creation shared with shared-secret registration.
 *
 * Like Synapse: usernames are lower-cased and checked (and checked for
 * being taken, case-insensitively) before UIA starts, so a client can pick
 * another name before going through the stages; numeric localparts are
 * reserved for generated IDs (guests, or registrations without a username)
 * and come from the accounts_seq counter; registration per IP is
 * rate-limited, a use counted when an account is created.  A guest
 * becomes a full user by registering with its `guest_access_token` (kind
 * user): the guest's own user ID (numeric localpart) keeps its rooms and
 * data, the users row just gets the password and loses the guest flag.
 */
#include "acc_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACC_MAX_ALLOC_ATTEMPTS 5

static const unsigned acc_flow_dummy_token[] = { ACC_STAGE_DUMMY, ACC_STAGE_REGTOKEN };
static const unsigned acc_flow_dummy[] = { ACC_STAGE_DUMMY };
static const unsigned acc_flow_token[] = { ACC_STAGE_REGTOKEN };

static bool acc_requires_token(void)
{
    const json_t *root = mx_server_conf()->root;
    return json_is_true(json_object_get(root, "registration_requires_token"));
}

static void acc_reg_key(mx_req_t *req, char *key, size_t n)
{
    const char *ip = mx_req_client_ip(req);
    snprintf(key, n, "register:%s", ip ? ip : "");
}

bool acc_username_ok(mx_req_t *req, const char *lp)
{
    if (!lp || !*lp) {
        mx_req_error(req, 400, "M_INVALID_USERNAME", "User ID cannot be empty");
        return false;
    }
    if (!hs_is_valid_localpart(lp)) {
        mx_req_error(req, 400, "M_INVALID_USERNAME",
                     "User ID can only contain characters a-z, 0-9, or '=_-./+'");
        return false;
    }
    if (lp[0] == '_') {
        mx_req_error(req, 400, "M_INVALID_USERNAME", "User ID may not begin with _");
        return false;
    }
    if (strspn(lp, "0123456789") == strlen(lp)) {
        mx_req_error(req, 400, "M_INVALID_USERNAME", "Numeric user IDs are reserved for guest users.");
        return false;
    }
    if (strlen(lp) + strlen(hs.server_name) + 2 > 255) {
        mx_req_error(req, 400, "M_INVALID_USERNAME", "User ID may not be longer than 255 characters");
        return false;
    }
    return true;
}

/* --------------------------------------------------------------- create --- */

static void acc_reg_fail(acc_reg_t *r)
{
    acc_uia_finish(r->sess, false);
    r->sess = NULL;
}

static void acc_reg_alloc(acc_reg_t *r);

/* The saved field of a UIA session naming the user it registered: a
 * replay of the completed session answers for that user again (a new
 * login, as Synapse does) instead of registering another. */
#define ACC_REG_DONE_KEY "_registered_user_id"
/* In the request body: the guest user a guest_access_token proved (set by
 * the server only, see acc_post_register). */
#define ACC_REG_GUEST_KEY "_mx_guest_user_id"

/* Puts a registration's UIA session back in the map, marked with the user
 * it registered (its registration token, if any, is spent). */
static void acc_reg_keep(acc_uia_sess_t *s, const char *user_id)
{
    if (!s)
        return;
    free(s->regtoken);
    s->regtoken = NULL;
    if (json_object_set_new(s->saved, ACC_REG_DONE_KEY, json_string(user_id)) < 0 ||
        acc_map_put(&hs_acc->uia, s->id, s) < 0)
        acc_uia_finish(s, true);
}

static void acc_reg_reply(acc_reg_t *r)
{
    json_t *b = json_object();
    if (r->inhibit_login) {
        json_object_set_new(b, "user_id", json_string(r->user_id));
        json_object_set_new(b, "home_server", json_string(hs.server_name));
    } else {
        acc_hook_device_created(r->user_id, r->sess_out.device_id);
        acc_session_json(b, &r->sess_out);
    }
    mx_req_reply_json(r->req, 200, b);
}

static void acc_reg_relogged(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    acc_reg_t *r = ud;
    acc_reg_keep(r->sess, r->user_id);
    r->sess = NULL;
    if (status < 0) {
        hs_reply_storage_error(r->req, status, "register");
        return;
    }
    acc_reg_reply(r);
}

/* A replay of a session that already registered r->user_id. */
static void acc_reg_again(acc_reg_t *r)
{
    if (r->inhibit_login) {
        acc_reg_keep(r->sess, r->user_id);
        r->sess = NULL;
        acc_reg_reply(r);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    int rc = b ? acc_session_add(b, mx_req_pool(r->req), r->user_id, r->device_id,
                                 r->display_name, r->refresh, &r->sess_out)
               : -ENOMEM;
    if (rc >= 0)
        rc = mx_sql_run(b, acc_reg_relogged, r);
    if (rc < 0) {
        if (b)
            mx_sql_batch_free(b);
        acc_reg_keep(r->sess, r->user_id);
        r->sess = NULL;
        hs_reply_storage_error(r->req, rc, "register");
    }
}

static void acc_reg_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    acc_reg_t *r = ud;
    if (status == MX_ECONSTRAINT) {
        if (!r->localpart && ++r->attempts < ACC_MAX_ALLOC_ATTEMPTS) {
            acc_reg_alloc(r);   /* a numeric ID someone already has: next one */
            return;
        }
        acc_reg_fail(r);
        mx_req_error(r->req, 400, "M_USER_IN_USE", "User ID already taken.");
        return;
    }
    if (status < 0) {
        acc_reg_fail(r);
        hs_reply_storage_error(r->req, status, "register");
        return;
    }
    if (r->upgrade_guest && mx_sql_nrows(res, 0) < 1) {
        /* The row is no guest any more (upgraded by a concurrent call);
         * the session rows of this batch were written for nothing. */
        acc_reg_fail(r);
        mx_req_error(r->req, 400, "M_USER_IN_USE", "User ID already taken.");
        return;
    }
    acc_reg_keep(r->sess, r->user_id);
    r->sess = NULL;
    char key[96];
    acc_reg_key(r->req, key, sizeof(key));
    acc_rl_take(key, (double)hs.conf.rc_registration_per_second,
                (double)hs.conf.rc_registration_burst, true);
    if (!r->upgrade_guest)
        acc_hook_user_registered(r->user_id, r->displayname, r->guest);
    acc_reg_reply(r);
}

static void acc_reg_write(acc_reg_t *r, const char *localpart)
{
    mx_pool_t *pool = mx_req_pool(r->req);
    r->user_id = hs_user_id(pool, localpart);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b || !r->user_id) {
        if (b)
            mx_sql_batch_free(b);
        acc_reg_fail(r);
        hs_reply_storage_error(r->req, -ENOMEM, "register");
        return;
    }
    if (r->upgrade_guest)
        mx_sql_add(b,
                   "UPDATE users SET password_hash = ?, is_guest = 0 WHERE name = ?"
                   " AND is_guest = 1 RETURNING name", "ss", r->hash, r->user_id);
    else
        mx_sql_add(b,
                   "INSERT INTO users (name, password_hash, is_guest, admin, user_type,"
                   " creation_ts) VALUES (?, ?, ?, ?, ?, ?)",
                   "ssiisi", r->user_id, r->hash, (int64_t)r->guest, (int64_t)r->admin,
                   r->user_type, (int64_t)(mx_now_ms() / 1000));
    if (!r->upgrade_guest)
        acc_hook_user_creating(b, r->user_id, r->displayname, r->guest);
    if (r->sess && r->sess->regtoken)
        mx_sql_add(b,
                   "UPDATE registration_tokens SET pending = pending - 1,"
                   " completed = completed + 1 WHERE token = ?",
                   "s", r->sess->regtoken);
    int rc = 0;
    if (!r->inhibit_login)
        rc = acc_session_add(b, pool, r->user_id, r->device_id, r->display_name, r->refresh,
                             &r->sess_out);
    if (rc >= 0)
        rc = mx_sql_run(b, acc_reg_written, r);
    if (rc < 0) {
        mx_sql_batch_free(b);
        acc_reg_fail(r);
        hs_reply_storage_error(r->req, rc, "register");
    }
}

static void acc_reg_allocated(int status, mx_sql_res_t *res, void *ud)
{
    acc_reg_t *r = ud;
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        acc_reg_fail(r);
        hs_reply_storage_error(r->req, status < 0 ? status : -EIO, "register: user ID");
        return;
    }
    char *lp = mx_psprintf(mx_req_pool(r->req), "%lld", (long long)mx_sql_int(res, 0, 0, 0));
    acc_reg_write(r, lp);
}

/* Generated localparts: the next value of a counter (its own transaction,
 * so concurrent registrations never get the same number). */
static void acc_reg_alloc(acc_reg_t *r)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        acc_reg_fail(r);
        hs_reply_storage_error(r->req, -ENOMEM, "register");
        return;
    }
    mx_sql_add(b, "UPDATE accounts_seq SET value = value + 1 WHERE name = 'user_id' RETURNING value",
               "");
    int rc = mx_sql_run(b, acc_reg_allocated, r);
    if (rc < 0) {
        mx_sql_batch_free(b);
        acc_reg_fail(r);
        hs_reply_storage_error(r->req, rc, "register");
    }
}

static void acc_reg_proceed(acc_reg_t *r)
{
    if (r->localpart)
        acc_reg_write(r, r->localpart);
    else
        acc_reg_alloc(r);
}

static void acc_reg_hashed(int status, const char *hash, void *ud)
{
    acc_reg_t *r = ud;
    if (status < 0 || !hash) {
        acc_reg_fail(r);
        hs_reply_storage_error(r->req, status < 0 ? status : -EIO, "register: hash");
        return;
    }
    r->hash = mx_pstrdup(mx_req_pool(r->req), hash);
    acc_reg_proceed(r);
}

void acc_register_create(acc_reg_t *r)
{
    if (r->password) {
        int rc = acc_pw_hash(r->password, acc_reg_hashed, r);
        if (rc < 0) {
            acc_reg_fail(r);
            hs_reply_storage_error(r->req, rc, "register: hash");
        }
        return;
    }
    r->hash = NULL;
    acc_reg_proceed(r);
}

/* --------------------------------------------------------- POST /register --- */

static acc_reg_t *acc_reg_new(mx_req_t *req, json_t *body)
{
    acc_reg_t *r = mx_palloc(mx_req_pool(req), sizeof(*r));
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->device_id = json_string_value(json_object_get(body, "device_id"));
    r->display_name = json_string_value(json_object_get(body, "initial_device_display_name"));
    r->inhibit_login = json_is_true(json_object_get(body, "inhibit_login"));
    r->refresh = json_is_true(json_object_get(body, "refresh_token"));
    return r;
}

/* The body's field, or the one saved from the session's first call. */
static json_t *acc_reg_field(json_t *body, const acc_uia_sess_t *s, const char *key)
{
    json_t *v = json_object_get(body, key);
    if (!v && s)
        v = json_object_get(s->saved, key);
    return v;
}

static void acc_reg_uia_done(mx_req_t *req, acc_uia_sess_t *s, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    mx_pool_t *pool = mx_req_pool(req);
    /* The session is ours now: the housekeeping timer must not free it
     * while the password is hashed. */
    acc_map_del(&hs_acc->uia, s->id);
    acc_reg_t *r = acc_reg_new(req, body);
    if (!r) {
        acc_uia_finish(s, false);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    r->sess = s;
    /* inhibit_login and refresh_token may come with the first call only */
    r->inhibit_login = json_is_true(acc_reg_field(body, s, "inhibit_login"));
    r->refresh = json_is_true(acc_reg_field(body, s, "refresh_token"));
    if (!r->device_id)
        r->device_id = json_string_value(json_object_get(s->saved, "device_id"));
    if (!r->display_name)
        r->display_name =
            json_string_value(json_object_get(s->saved, "initial_device_display_name"));
    const char *done = json_string_value(json_object_get(s->saved, ACC_REG_DONE_KEY));
    if (done) {
        r->user_id = mx_pstrdup(pool, done);
        acc_reg_again(r);
        return;
    }
    json_t *user = acc_reg_field(body, s, "username");
    json_t *pw = acc_reg_field(body, s, "password");
    if (!pw) {
        acc_reg_fail(r);
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing params: password");
        return;
    }
    if (!acc_pw_acceptable(req, pw)) {
        acc_reg_fail(r);
        return;
    }
    r->password = mx_pstrdup(pool, json_string_value(pw));
    const char *guest = json_string_value(json_object_get(body, ACC_REG_GUEST_KEY));
    if (guest) {
        /* checked in acc_post_register: the username, if any, is the guest's */
        r->upgrade_guest = mx_pstrdup(pool, guest);
        r->localpart = acc_localpart(pool, guest);
        acc_register_create(r);
        return;
    }
    if (json_is_string(user)) {
        char *lp = acc_lower(mx_pstrdup(pool, json_string_value(user)));
        if (!acc_username_ok(req, lp)) {
            acc_reg_fail(r);
            return;
        }
        r->localpart = lp;
    }
    acc_register_create(r);
}

static void acc_reg_checked(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        hs_reply_storage_error(req, status, "register");
        return;
    }
    /* The name is not "taken" by the user this very session registered. */
    json_t *auth = json_object_get(mx_req_json(req), "auth");
    const char *sid = json_string_value(json_object_get(auth, "session"));
    acc_uia_sess_t *s = sid ? acc_map_get(&hs_acc->uia, sid) : NULL;
    const char *done = s ? json_string_value(json_object_get(s->saved, ACC_REG_DONE_KEY)) : NULL;
    const char *guest = json_string_value(json_object_get(mx_req_json(req), ACC_REG_GUEST_KEY));
    if (mx_sql_nrows(res, 0) > 0 && !(done && strcmp(done, mx_sql_text(res, 0, 0, 0)) == 0) &&
        !(guest && strcmp(guest, mx_sql_text(res, 0, 0, 0)) == 0)) {
        mx_req_error(req, 400, "M_USER_IN_USE", "User ID already taken.");
        return;
    }
    const unsigned *base = acc_flow_dummy;
    size_t nflows = 1;
    if (acc_requires_token()) {
        base = acc_flow_token;
    } else if (mx_sql_nrows(res, 1) > 0 && mx_sql_int(res, 1, 0, 0) > 0) {
        base = acc_flow_dummy_token;
        nflows = 2;
    }
    /* enable_registration_captcha: every flow starts with the captcha. */
    unsigned *flows = mx_palloc(mx_req_pool(req), sizeof(unsigned) * nflows);
    if (!flows) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    for (size_t f = 0; f < nflows; f++)
        flows[f] = base[f] | (hs.conf.enable_registration_captcha ? ACC_STAGE_RECAPTCHA : 0);
    acc_uia_run(req, mx_req_json(req), NULL, flows, nflows, acc_reg_uia_done, NULL);
}

static void acc_reg_guest(mx_req_t *req, json_t *body)
{
    if (!hs.conf.allow_guest_access) {
        mx_req_error(req, 403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled");
        return;
    }
    acc_reg_t *r = acc_reg_new(req, body);
    if (!r) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    r->guest = true;
    r->inhibit_login = false;   /* a guest without a token would be useless */
    acc_register_create(r);
}

static int acc_reg_start(mx_req_t *req);

/* The guest_access_token of an upgrade: it must be a guest's. */
static void acc_reg_guest_checked(int status, const hs_token_info_t *info, void *ud)
{
    mx_req_t *req = ud;
    if (status == -ENOENT || status == -EKEYEXPIRED || status == -EKEYREVOKED) {
        mx_req_error(req, 401, "M_UNKNOWN_TOKEN", "Invalid guest access token");
        return;
    }
    if (status < 0) {
        hs_reply_storage_error(req, status, "register: guest token");
        return;
    }
    if (!info->is_guest) {
        mx_req_error(req, 403, "M_FORBIDDEN", "guest_access_token is not a guest's");
        return;
    }
    json_object_set_new(mx_req_json(req), ACC_REG_GUEST_KEY, json_string(info->user_id));
    acc_reg_start(req);
}

static int acc_post_register(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    const char *kind = mx_req_query(req, "kind");
    char key[96];
    acc_reg_key(req, key, sizeof(key));
    int64_t wait = acc_rl_take(key, (double)hs.conf.rc_registration_per_second,
                               (double)hs.conf.rc_registration_burst, false);
    if (wait) {
        hs_reply_ratelimited(req, wait);
        return MX_DONE;
    }
    if (kind && !strcmp(kind, "guest")) {
        acc_reg_guest(req, body);
        return MX_ASYNC;
    }
    if (kind && strcmp(kind, "user") != 0) {
        mx_req_error(req, 400, "M_UNKNOWN", "Invalid kind");
        return MX_DONE;
    }
    if (!mx_server_conf()->enable_registration) {
        mx_req_error(req, 403, "M_FORBIDDEN", "Registration has been disabled");
        return MX_DONE;
    }
    /* Only acc_reg_guest_checked may set this. */
    json_object_del(body, ACC_REG_GUEST_KEY);
    const char *gtok = json_string_value(json_object_get(body, "guest_access_token"));
    if (gtok) {
        const mx_auth_token_iface_t *iface = mx_service_get("auth.token");
        int rc = iface ? iface->validate(gtok, acc_reg_guest_checked, req) : -ENOSYS;
        if (rc < 0) {
            hs_reply_storage_error(req, rc, "register: guest token");
            return MX_DONE;
        }
        return MX_ASYNC;
    }
    return acc_reg_start(req);
}

/* The second half of POST /register: name checks, then UIA. */
static int acc_reg_start(mx_req_t *req)
{
    json_t *body = mx_req_json(req);
    const char *guest = json_string_value(json_object_get(body, ACC_REG_GUEST_KEY));
    json_t *user = json_object_get(body, "username");
    json_t *pw = json_object_get(body, "password");
    if (user && !json_is_string(user)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid username");
        return MX_DONE;
    }
    if (pw && !acc_pw_acceptable(req, pw))
        return MX_DONE;
    const json_t *dev = json_object_get(body, "device_id");
    if (dev && (!json_is_string(dev) || json_string_length(dev) == 0 ||
                json_string_length(dev) > 255)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid device_id");
        return MX_DONE;
    }
    mx_pool_t *pool = mx_req_pool(req);
    char *uid = NULL;
    if (user) {
        char *lp = acc_lower(mx_pstrdup(pool, json_string_value(user)));
        uid = hs_user_id(pool, lp);
        if (guest && (!uid || strcmp(uid, guest) != 0)) {
            mx_req_error(req, 403, "M_FORBIDDEN",
                         "Cannot register taken user ID without valid guest credentials for"
                         " that user.");
            return MX_DONE;
        }
        if (!guest && !acc_username_ok(req, lp))
            return MX_DONE;
    } else if (guest) {
        uid = mx_pstrdup(pool, guest);
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "register");
        return MX_DONE;
    }
    mx_sql_add(b, "SELECT name FROM users WHERE lower(name) = lower(?)", "s", uid ? uid : "");
    mx_sql_add(b, "SELECT COUNT(*) FROM registration_tokens", "");
    int rc = mx_sql_run(b, acc_reg_checked, req);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "register");
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* ------------------------------------------------- GET /register/available --- */

static void acc_available_done(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        hs_reply_storage_error(req, status, "register/available");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        mx_req_error(req, 400, "M_USER_IN_USE", "User ID already taken.");
        return;
    }
    mx_req_reply_json(req, 200, json_pack("{s:b}", "available", 1));
}

static int acc_get_available(mx_req_t *req, void *ud)
{
    (void)ud;
    if (!mx_server_conf()->enable_registration) {
        mx_req_error(req, 403, "M_FORBIDDEN", "Registration has been disabled");
        return MX_DONE;
    }
    char key[96];
    snprintf(key, sizeof(key), "available:%s", mx_req_client_ip(req) ? mx_req_client_ip(req) : "");
    int64_t wait = acc_rl_take(key, (double)hs.conf.rc_registration_per_second,
                               (double)hs.conf.rc_registration_burst, true);
    if (wait) {
        hs_reply_ratelimited(req, wait);
        return MX_DONE;
    }
    const char *user = mx_req_query(req, "username");
    if (!user) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing string query parameter: username");
        return MX_DONE;
    }
    mx_pool_t *pool = mx_req_pool(req);
    char *lp = acc_lower(mx_pstrdup(pool, user));
    if (!acc_username_ok(req, lp))
        return MX_DONE;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "register/available");
        return MX_DONE;
    }
    mx_sql_add(b, "SELECT name FROM users WHERE lower(name) = lower(?)", "s", hs_user_id(pool, lp));
    int rc = mx_sql_run(b, acc_available_done, req);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "register/available");
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* ----------------------------------------- registration token validity --- */

static void acc_validity_done(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        hs_reply_storage_error(req, status, "registration token validity");
        return;
    }
    mx_req_reply_json(req, 200, json_pack("{s:b}", "valid", mx_sql_nrows(res, 0) > 0));
}

static int acc_get_token_validity(mx_req_t *req, void *ud)
{
    (void)ud;
    if (!mx_server_conf()->enable_registration) {
        mx_req_error(req, 403, "M_FORBIDDEN", "Registration has been disabled");
        return MX_DONE;
    }
    char key[96];
    snprintf(key, sizeof(key), "regtoken:%s", mx_req_client_ip(req) ? mx_req_client_ip(req) : "");
    int64_t wait = acc_rl_take(key, (double)hs.conf.rc_registration_per_second,
                               (double)hs.conf.rc_registration_burst, true);
    if (wait) {
        hs_reply_ratelimited(req, wait);
        return MX_DONE;
    }
    const char *token = mx_req_query(req, "token");
    if (!token) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing string query parameter: token");
        return MX_DONE;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "registration token validity");
        return MX_DONE;
    }
    mx_sql_add(b,
               "SELECT 1 FROM registration_tokens WHERE token = ?"
               " AND (uses_allowed IS NULL OR pending + completed < uses_allowed)"
               " AND (expiry_time IS NULL OR expiry_time > ?)",
               "si", token, (int64_t)mx_now_ms());
    int rc = mx_sql_run(b, acc_validity_done, req);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "registration token validity");
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* Delegated mode (MSC3861), as Synapse answers then: accounts are made
 * through the auth service; only application services could register here,
 * and this server has none. */
static int acc_post_register_delegated(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    const char *kind = mx_req_query(req, "kind");
    if (kind && !strcmp(kind, "guest")) {
        mx_req_error(req, 403, "M_UNKNOWN", "Guest access is disabled");
        return MX_DONE;
    }
    if (kind && strcmp(kind, "user")) {
        mx_req_error(req, 400, "M_UNRECOGNIZED", "Do not understand membership kind: %s", kind);
        return MX_DONE;
    }
    const json_t *username = json_object_get(body, "username");
    if (!json_is_string(username) || json_string_length(username) > 512) {
        mx_req_error(req, 400, "M_UNKNOWN", "Invalid username");
        return MX_DONE;
    }
    const char *type = json_string_value(json_object_get(body, "type"));
    if (!type || strcmp(type, "m.login.application_service")) {
        mx_req_error(req, 403, "M_FORBIDDEN", "Non-application service registration type");
        return MX_DONE;
    }
    mx_req_error(req, 401, mx_req_access_token(req) ? "M_UNKNOWN_TOKEN" : "M_MISSING_TOKEN",
                 "Only application services may register here");
    return MX_DONE;
}

int acc_register_routes(void)
{
    int rc;
    if (acc_delegated())
        return acc_route_v3_r0("POST", "/register", acc_post_register_delegated,
                               MX_ROUTE_JSON_BODY);
    if ((rc = acc_route_v3_r0("POST", "/register", acc_post_register, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = acc_route_v3_r0("GET", "/register/available", acc_get_available, 0)) < 0)
        return rc;
    if ((rc = mx_route_add("client", "GET",
                           "/_matrix/client/v1/register/m.login.registration_token/validity",
                           acc_get_token_validity, NULL, 0)) < 0)
        return rc;
    return mx_route_add("client", "GET",
                        "/_matrix/client/unstable/org.matrix.msc3231/register/"
                        "org.matrix.msc3231.login.registration_token/validity",
                        acc_get_token_validity, NULL, 0);
}
