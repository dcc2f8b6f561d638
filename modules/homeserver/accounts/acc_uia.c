/*
 * acc_uia.c: User-Interactive Authentication (spec "User-Interactive
 * Authentication API") for /register, /account/password,
 * /account/deactivate, DELETE /devices/{id} and /delete_devices.
 *
 * Sessions live in memory for ACC_UIA_TTL_MS and are bound to the method
 * and path of the request that started them, so a session completed for
 * one operation cannot authorise another.  Stages: m.login.dummy,
 * m.login.password (the requester's own password),
 * m.login.registration_token (reserves one use: pending + 1, given back when
 * the session ends without registering), and m.login.recaptcha (checked
 * with the siteverify API, acc_recaptcha.c; like Synapse, it can be
 * completed whenever a private key is configured, even in a session whose
 * flows do not ask for it).
 */
#include "acc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ACC_UIA_TTL_MS (30 * 60 * 1000)

static const struct {
    unsigned bit;
    const char *name;
} acc_stages[] = {
    { ACC_STAGE_RECAPTCHA, "m.login.recaptcha" },
    { ACC_STAGE_DUMMY, "m.login.dummy" },
    { ACC_STAGE_PASSWORD, "m.login.password" },
    { ACC_STAGE_REGTOKEN, "m.login.registration_token" },
};
#define ACC_NSTAGES (sizeof(acc_stages) / sizeof(acc_stages[0]))

/* One running request (pool-owned). */
typedef struct acc_uia_call {
    mx_req_t *req;
    char sid[40];
    const unsigned *flows;
    size_t nflows;
    acc_uia_done_fn done;
    void *ud;
    char *token;   /* registration token being checked */
} acc_uia_call_t;

static unsigned acc_stage_bit(const char *name)
{
    for (size_t i = 0; name && i < ACC_NSTAGES; i++)
        if (!strcmp(acc_stages[i].name, name))
            return acc_stages[i].bit;
    return 0;
}

static void acc_uia_free(acc_uia_sess_t *s)
{
    free(s->method);
    free(s->path);
    free(s->user_id);
    free(s->regtoken);
    json_decref(s->saved);
    free(s);
}

static void acc_release_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)status;
    (void)res;
    (void)ud;
}

/* Gives back a reserved use of a registration token. */
static void acc_regtoken_release(const char *token)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b)
        return;
    mx_sql_add(b, "UPDATE registration_tokens SET pending = pending - 1"
                  " WHERE token = ? AND pending > 0", "s", token);
    if (mx_sql_run(b, acc_release_done, NULL) < 0)
        mx_sql_batch_free(b);
}

void acc_uia_finish(acc_uia_sess_t *s, bool token_used)
{
    if (!s)
        return;
    if (s->regtoken && !token_used)
        acc_regtoken_release(s->regtoken);
    acc_map_del(&hs_acc->uia, s->id);
    acc_uia_free(s);
}

static bool acc_uia_old(const char *key, void *val, void *ud)
{
    (void)key;
    acc_uia_sess_t *s = val;
    if (*(const uint64_t *)ud - s->created_ms <= ACC_UIA_TTL_MS)
        return false;
    if (s->regtoken)
        acc_regtoken_release(s->regtoken);
    acc_uia_free(s);
    return true;
}

void acc_uia_expire(void)
{
    uint64_t now = mx_now_ms();
    acc_map_filter(&hs_acc->uia, acc_uia_old, &now);
}

/* 401 with the flows, what is completed, and (after a failed stage) an
 * error. */
static void acc_uia_reply(acc_uia_call_t *c, acc_uia_sess_t *s, const char *errcode,
                          const char *error)
{
    json_t *flows = json_array(), *completed = json_array();
    for (size_t f = 0; f < c->nflows; f++) {
        json_t *stages = json_array();
        for (size_t i = 0; i < ACC_NSTAGES; i++)
            if (c->flows[f] & acc_stages[i].bit)
                json_array_append_new(stages, json_string(acc_stages[i].name));
        json_array_append_new(flows, json_pack("{s:o}", "stages", stages));
    }
    for (size_t i = 0; i < ACC_NSTAGES; i++)
        if (s->completed & acc_stages[i].bit)
            json_array_append_new(completed, json_string(acc_stages[i].name));
    json_t *params = json_object();
    bool captcha = false;
    for (size_t f = 0; f < c->nflows; f++)
        captcha |= (c->flows[f] & ACC_STAGE_RECAPTCHA) != 0;
    if (params && captcha)
        json_object_set_new(params, "m.login.recaptcha",
                            json_pack("{s:s}", "public_key", hs.conf.recaptcha_public_key));
    json_t *b = json_pack("{s:o, s:o, s:s, s:o}", "flows", flows, "params", params, "session",
                          s->id, "completed", completed);
    if (b && errcode) {
        json_object_set_new(b, "errcode", json_string(errcode));
        json_object_set_new(b, "error", json_string(error));
    }
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_req_reply_json(c->req, 401, b);
}

/* After a stage: done if a flow is complete, else 401 again. */
static void acc_uia_next(acc_uia_call_t *c, acc_uia_sess_t *s)
{
    for (size_t f = 0; f < c->nflows; f++) {
        if ((c->flows[f] & ~s->completed) == 0) {
            c->done(c->req, s, c->ud);
            return;
        }
    }
    acc_uia_reply(c, s, NULL, NULL);
}

/* The session again after an asynchronous step; replies when it expired. */
static acc_uia_sess_t *acc_uia_again(acc_uia_call_t *c)
{
    acc_uia_sess_t *s = acc_map_get(&hs_acc->uia, c->sid);
    if (!s)
        mx_req_error(c->req, 400, "M_UNKNOWN", "Unknown session ID: %s", c->sid);
    return s;
}

/* ------------------------------------------------------------- password --- */

static void acc_pw_checked(bool ok, void *ud)
{
    acc_uia_call_t *c = ud;
    acc_uia_sess_t *s = acc_uia_again(c);
    if (!s)
        return;
    if (!ok) {
        acc_uia_reply(c, s, "M_FORBIDDEN", "Invalid password");
        return;
    }
    s->completed |= ACC_STAGE_PASSWORD;
    acc_uia_next(c, s);
}

static void acc_pw_loaded(int status, mx_sql_res_t *res, void *ud)
{
    acc_uia_call_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "UIA password");
        return;
    }
    const char *hash = NULL;
    if (mx_sql_nrows(res, 0) > 0 && !mx_sql_int(res, 0, 0, 1))
        hash = mx_sql_text(res, 0, 0, 0);
    json_t *auth = json_object_get(mx_req_json(c->req), "auth");
    const char *pw = json_string_value(json_object_get(auth, "password"));
    int rc = acc_pw_verify(hash, pw ? pw : "", acc_pw_checked, c);
    if (rc < 0)
        hs_reply_storage_error(c->req, rc, "UIA password");
}

static void acc_stage_password(acc_uia_call_t *c, acc_uia_sess_t *s, json_t *auth)
{
    mx_pool_t *pool = mx_req_pool(c->req);
    bool bad_type;
    const char *user = acc_identifier_user(auth, &bad_type);
    if (bad_type) {
        mx_req_error(c->req, 400, "M_UNKNOWN", "Unknown login identifier type");
        return;
    }
    if (!s->user_id) {
        mx_req_error(c->req, 400, "M_UNRECOGNIZED", "Unrecognised login type");
        return;
    }
    if (user) {
        /* The password must be the requester's own (compared
         * case-insensitively, as logins are). */
        char *uid = acc_user_from_input(pool, user);
        if (!uid || strcasecmp(uid, s->user_id) != 0) {
            mx_req_error(c->req, 403, "M_FORBIDDEN", "Invalid auth");
            return;
        }
    }
    if (!json_is_string(json_object_get(auth, "password"))) {
        mx_req_error(c->req, 400, "M_MISSING_PARAM", "Missing parameter: password");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        hs_reply_storage_error(c->req, -ENOMEM, "UIA password");
        return;
    }
    mx_sql_add(b, "SELECT password_hash, deactivated FROM users WHERE name = ?", "s", s->user_id);
    int rc = mx_sql_run(b, acc_pw_loaded, c);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, rc, "UIA password");
    }
}

/* --------------------------------------------------- registration token --- */

static void acc_token_reserved(int status, mx_sql_res_t *res, void *ud)
{
    acc_uia_call_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "UIA registration token");
        return;
    }
    acc_uia_sess_t *s = acc_map_get(&hs_acc->uia, c->sid);
    if (!s) {
        /* Expired meanwhile: give the use back. */
        if (mx_sql_changes(res, 0) > 0)
            acc_regtoken_release(c->token);
        mx_req_error(c->req, 400, "M_UNKNOWN", "Unknown session ID: %s", c->sid);
        return;
    }
    if (mx_sql_changes(res, 0) < 1) {
        acc_uia_reply(c, s, "M_UNAUTHORIZED", "Invalid registration token");
        return;
    }
    s->regtoken = strdup(c->token);
    if (!s->regtoken) {
        acc_regtoken_release(c->token);
        mx_req_error(c->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    s->completed |= ACC_STAGE_REGTOKEN;
    acc_uia_next(c, s);
}

static void acc_stage_regtoken(acc_uia_call_t *c, acc_uia_sess_t *s, json_t *auth)
{
    const char *token = json_string_value(json_object_get(auth, "token"));
    if (s->regtoken) { /* already reserved in this session */
        s->completed |= ACC_STAGE_REGTOKEN;
        acc_uia_next(c, s);
        return;
    }
    if (!token) {
        mx_req_error(c->req, 400, "M_MISSING_PARAM", "Missing parameter: token");
        return;
    }
    c->token = mx_pstrdup(mx_req_pool(c->req), token);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b || !c->token) {
        if (b)
            mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, -ENOMEM, "UIA registration token");
        return;
    }
    /* Check and reserve in one statement so two sessions cannot both take
     * the last use. */
    mx_sql_add(b,
               "UPDATE registration_tokens SET pending = pending + 1 WHERE token = ?"
               " AND (uses_allowed IS NULL OR pending + completed < uses_allowed)"
               " AND (expiry_time IS NULL OR expiry_time > ?)",
               "si", token, (int64_t)mx_now_ms());
    int rc = mx_sql_run(b, acc_token_reserved, c);
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, rc, "UIA registration token");
    }
}

/* ------------------------------------------------------------ reCAPTCHA --- */

static void acc_captcha_checked(bool ok, void *ud)
{
    acc_uia_call_t *c = ud;
    acc_uia_sess_t *s = acc_uia_again(c);
    if (!s)
        return;
    if (!ok) {
        acc_uia_reply(c, s, "M_UNAUTHORIZED", "Captcha authentication failed");
        return;
    }
    s->completed |= ACC_STAGE_RECAPTCHA;
    acc_uia_next(c, s);
}

static void acc_stage_recaptcha(acc_uia_call_t *c, acc_uia_sess_t *s, json_t *auth)
{
    (void)s;
    const char *response = json_string_value(json_object_get(auth, "response"));
    if (!response || !*response) {
        mx_req_error(c->req, 400, "M_CAPTCHA_NEEDED", "Captcha response is required");
        return;
    }
    int rc = acc_recaptcha_verify(response, mx_req_client_ip(c->req), acc_captcha_checked, c);
    if (rc < 0)
        mx_req_error(c->req, 500, "M_UNKNOWN", "Cannot check the captcha");
}

/* ------------------------------------------------------------------ run --- */

static acc_uia_sess_t *acc_uia_new(mx_req_t *req, json_t *body, const char *user_id)
{
    acc_uia_sess_t *s = calloc(1, sizeof(*s));
    char *rnd = mx_random_string(24);
    if (!s || !rnd)
        goto fail;
    memcpy(s->id, rnd, 25);
    s->created_ms = mx_now_ms();
    s->method = strdup(mx_req_method(req));
    s->path = strdup(mx_req_path(req));
    s->user_id = user_id ? strdup(user_id) : NULL;
    /* Keep the other fields of the first call (register sends username and
     * password only once with some clients). */
    s->saved = json_deep_copy(body);
    if (!s->method || !s->path || (user_id && !s->user_id) || !s->saved)
        goto fail;
    json_object_del(s->saved, "auth");
    if (acc_map_put(&hs_acc->uia, s->id, s) < 0)
        goto fail;
    free(rnd);
    return s;
fail:
    free(rnd);
    if (s)
        acc_uia_free(s);
    return NULL;
}

int acc_uia_run(mx_req_t *req, json_t *body, const char *user_id, const unsigned *flows,
                size_t nflows, acc_uia_done_fn done, void *ud)
{
    acc_uia_call_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_ASYNC;
    }
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->flows = flows;
    c->nflows = nflows;
    c->done = done;
    c->ud = ud;

    json_t *auth = json_object_get(body, "auth");
    const char *sid = json_string_value(json_object_get(auth, "session"));
    acc_uia_sess_t *s = NULL;
    if (sid) {
        s = acc_map_get(&hs_acc->uia, sid);
        if (!s) {
            mx_req_error(req, 400, "M_UNKNOWN", "Unknown session ID: %s", sid);
            return MX_ASYNC;
        }
        if (strcmp(s->method, mx_req_method(req)) != 0 || strcmp(s->path, mx_req_path(req)) != 0) {
            mx_req_error(req, 403, "M_FORBIDDEN",
                         "Requested operation has changed during the UI authentication session.");
            return MX_ASYNC;
        }
        if ((s->user_id || user_id) &&
            (!s->user_id || !user_id || strcmp(s->user_id, user_id) != 0)) {
            mx_req_error(req, 403, "M_FORBIDDEN", "Invalid auth");
            return MX_ASYNC;
        }
    } else if (!(s = acc_uia_new(req, body, user_id))) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_ASYNC;
    }
    memcpy(c->sid, s->id, sizeof(c->sid));

    const char *type = json_string_value(json_object_get(auth, "type"));
    if (!json_is_object(auth) || !type) {
        acc_uia_next(c, s);   /* nothing new: 401 (or done if already complete) */
        return MX_ASYNC;
    }
    unsigned bit = acc_stage_bit(type);
    bool offered = false;
    for (size_t f = 0; f < nflows; f++)
        offered |= (flows[f] & bit) != 0;
    if (bit == ACC_STAGE_RECAPTCHA && acc_recaptcha_enabled())
        offered = true;
    if (!bit || !offered) {
        mx_req_error(req, 400, "M_UNRECOGNIZED", "Unrecognised login type");
        return MX_ASYNC;
    }
    switch (bit) {
    case ACC_STAGE_DUMMY:
        s->completed |= ACC_STAGE_DUMMY;
        acc_uia_next(c, s);
        break;
    case ACC_STAGE_PASSWORD:
        acc_stage_password(c, s, auth);
        break;
    case ACC_STAGE_REGTOKEN:
        acc_stage_regtoken(c, s, auth);
        break;
    case ACC_STAGE_RECAPTCHA:
        acc_stage_recaptcha(c, s, auth);
        break;
    }
    return MX_ASYNC;
}
