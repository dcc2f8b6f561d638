/*
 * cl_misc.c: the small Client-Server endpoints — GET /voip/turnServer
 * (TURN REST shared-secret credentials from Synapse's top-level turn_*
 * keys, {} when no TURN is configured), GET /thirdparty/protocols ({}: no
 * bridges), GET /account/3pid (no third-party IDs), POST /rooms/{roomId}/
 * report[/{eventId}] (stored for the admin API), and OpenID tokens: POST
 * /user/{userId}/openid/request_token and the federation side GET
 * /_matrix/federation/v1/openid/userinfo that widgets and the RTC module's
 * JWT service use to check them.
 */
#include "client.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MI_OPENID_EXPIRES_MS (3600 * 1000)   /* Synapse IdTokenServlet.EXPIRES_MS */
#define MI_TURN_DEFAULT_LIFETIME_MS (3600 * 1000)
#define MI_MAX_REASON 1000

/* ------------------------------------------------------------- TURN --- */

/* A Synapse duration: an integer (ms) or "<n><unit>" with ms/s/m/h/d/w/y. */
static uint64_t mi_duration(const json_t *v, uint64_t def)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : def;
    const char *s = json_string_value(v);
    if (!s || !*s)
        return def;
    char *end;
    unsigned long long n = strtoull(s, &end, 10);
    if (end == s)
        return def;
    static const struct { const char *unit; uint64_t ms; } units[] = {
        { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
        { "d", 86400000 }, { "w", 604800000 }, { "y", 31536000000ULL },
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0)
            return (uint64_t)n * units[i].ms;
    return def;
}

static void mi_turn_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const json_t *root = mx_server_conf()->root;
    const json_t *uris = json_object_get(root, "turn_uris");
    if (!json_is_array(uris) || json_array_size(uris) == 0) {
        mx_req_reply_json(req, 200, json_object());
        return;
    }
    const json_t *allow_guests = json_object_get(root, "turn_allow_guests");
    if (who->is_guest && json_is_false(allow_guests)) {
        mx_req_error(req, 403, "M_FORBIDDEN", "Guest users are not allowed to use turn server");
        return;
    }
    uint64_t lifetime = mi_duration(json_object_get(root, "turn_user_lifetime"),
                                    MI_TURN_DEFAULT_LIFETIME_MS);
    const char *secret = json_string_value(json_object_get(root, "turn_shared_secret"));
    const char *user = json_string_value(json_object_get(root, "turn_username"));
    const char *pass = json_string_value(json_object_get(root, "turn_password"));
    json_t *out;
    if (secret && *secret) {
        /* TURN REST API: username "<expiry s>:<user>", password
         * base64(HMAC-SHA1(secret, username)) with padding, as coturn
         * expects. */
        uint64_t expiry = (mx_now_ms() + lifetime) / 1000;
        char *username = mx_psprintf(mx_req_pool(req), "%" PRIu64 ":%s", expiry, who->user_id);
        unsigned char mac[20];
        mx_hmac_sha1(secret, strlen(secret), username, strlen(username), mac);
        char password[sodium_base64_ENCODED_LEN(20, sodium_base64_VARIANT_ORIGINAL)];
        sodium_bin2base64(password, sizeof(password), mac, sizeof(mac),
                          sodium_base64_VARIANT_ORIGINAL);
        out = json_pack("{s:s, s:s}", "username", username, "password", password);
    } else if (user && pass) {
        out = json_pack("{s:s, s:s}", "username", user, "password", pass);
    } else {
        mx_req_reply_json(req, 200, json_object());
        return;
    }
    json_object_set_new(out, "uris", json_deep_copy(uris));
    json_object_set_new(out, "ttl", json_integer((json_int_t)(lifetime / 1000)));
    mx_req_reply_json(req, 200, out);
}

static int mi_turn_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, mi_turn_authed, ud);
}

/* ------------------------------------------------------ fixed answers --- */

static void mi_protocols_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)who;
    (void)ud;
    mx_req_reply_json(req, 200, json_object());
}

static int mi_protocols_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, mi_protocols_authed, ud);
}

static void mi_3pid_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)who;
    (void)ud;
    mx_req_reply_json(req, 200, json_pack("{s:[]}", "threepids"));
}

static int mi_3pid_h(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, mi_3pid_authed, ud);
}

/* ----------------------------------------------------------- reports --- */

static void mi_report_written(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    (void)res;
    if (status < 0) {
        hs_reply_storage_error(req, status, "report write");
        return;
    }
    mx_req_reply_json(req, 200, json_object());
}

static void mi_report_checked(int status, mx_sql_res_t *res, void *ud)
{
    cl_req_t *cr = ud;
    mx_req_t *req = cr->req;
    if (status < 0) {
        hs_reply_storage_error(req, status, "report lookup");
        return;
    }
    const char *event_id = mx_req_param(req, "eventId");
    json_t *body = mx_req_json(req);
    const char *reason = json_string_value(json_object_get(body, "reason"));
    mx_sql_batch_t *b;
    if (event_id) {
        /* The event must exist and the reporter must have been in the
         * room (Synapse: the event is visible to them). */
        if (mx_sql_nrows(res, 0) < 1 || mx_sql_nrows(res, 1) < 1) {
            mx_req_error(req, 404, "M_NOT_FOUND",
                         "Unable to report event: it does not exist or you aren't able to see it.");
            return;
        }
        char *content = json_dumps(body, JSON_COMPACT);
        b = content ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
        if (b)
            mx_sql_add(b, "INSERT INTO event_reports (received_ts, room_id, event_id, user_id,"
                          " reason, content) VALUES (?, ?, ?, ?, ?, ?)",
                       "isssss", (int64_t)mx_now_ms(), cr->room_id, event_id, cr->who->user_id,
                       reason, content);
        free(content);
    } else {
        if (mx_sql_nrows(res, 0) < 1) {
            mx_req_error(req, 404, "M_NOT_FOUND", "Room does not exist");
            return;
        }
        b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
        if (b)
            mx_sql_add(b, "INSERT INTO room_reports (received_ts, room_id, user_id, reason)"
                          " VALUES (?, ?, ?, ?)",
                       "isss", (int64_t)mx_now_ms(), cr->room_id, cr->who->user_id, reason);
    }
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    int rc = mx_sql_run(b, mi_report_written, req);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "report write");
}

static void mi_report_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *room_id = mx_req_param(req, "roomId");
    const char *event_id = mx_req_param(req, "eventId");
    json_t *body = mx_req_json(req);
    json_t *reason = json_object_get(body, "reason");
    if (event_id) {
        if (reason && !json_is_string(reason)) {
            mx_req_error(req, 400, "M_BAD_JSON", "Param 'reason' must be a string");
            return;
        }
        json_t *score = json_object_get(body, "score");
        if (score && !json_is_integer(score)) {
            mx_req_error(req, 400, "M_BAD_JSON", "Param 'score' must be an integer");
            return;
        }
    } else if (!json_is_string(reason)) {
        mx_req_error(req, 400, "M_BAD_JSON", "Param 'reason' must be a string");
        return;
    }
    if (reason && strlen(json_string_value(reason)) > MI_MAX_REASON) {
        mx_req_error(req, 400, "M_BAD_JSON", "Param 'reason' is too long");
        return;
    }
    if (!cl_room_id_ok(room_id)) {
        mx_req_error(req, 404, "M_NOT_FOUND", "Room does not exist");
        return;
    }
    cl_req_t *cr = cl_req_new(req, who);
    mx_sql_batch_t *b = cr ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        if (cr)
            mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    cr->room_id = room_id;
    if (event_id) {
        mx_sql_add(b, "SELECT 1 FROM events WHERE event_id = ? AND room_id = ?", "ss", event_id,
                   room_id);
        mx_sql_add(b, "SELECT membership FROM room_memberships WHERE room_id = ? AND user_id = ?",
                   "ss", room_id, who->user_id);
    } else {
        mx_sql_add(b, "SELECT 1 FROM rooms WHERE room_id = ?", "s", room_id);
    }
    int rc = mx_sql_run(b, mi_report_checked, cr);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "report lookup");
}

static int mi_report_h(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, mi_report_authed, ud);
}

/* ------------------------------------------------------------ OpenID --- */

typedef struct mi_openid {
    mx_req_t *req;
    char *token;            /* pool */
} mi_openid_t;

static void mi_openid_written(int status, mx_sql_res_t *res, void *ud)
{
    mi_openid_t *o = ud;
    (void)res;
    if (status < 0) {
        hs_reply_storage_error(o->req, status, "openid token write");
        return;
    }
    mx_req_reply_json(o->req, 200,
                      json_pack("{s:s, s:s, s:s, s:I}", "access_token", o->token, "token_type",
                                "Bearer", "matrix_server_name", hs.server_name, "expires_in",
                                (json_int_t)(MI_OPENID_EXPIRES_MS / 1000)));
}

static void mi_openid_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    if (!cl_is_self(req, who, mx_req_param(req, "userId"), "Cannot request tokens for other users."))
        return;
    mi_openid_t *o = mx_palloc(mx_req_pool(req), sizeof(*o));
    char *tok = mx_random_string(24);
    mx_sql_batch_t *b = (o && tok) ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(tok);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    o->req = req;
    o->token = mx_pstrdup(mx_req_pool(req), tok);
    free(tok);
    uint64_t now = mx_now_ms();
    /* Expired tokens of this user go with the new one's write. */
    mx_sql_add(b, "DELETE FROM open_id_tokens WHERE user_id = ? AND ts_valid_until_ms < ?", "si",
               who->user_id, (int64_t)now);
    mx_sql_add(b, "INSERT INTO open_id_tokens (token, ts_valid_until_ms, user_id) VALUES (?, ?, ?)",
               "sis", o->token, (int64_t)(now + MI_OPENID_EXPIRES_MS), who->user_id);
    int rc = mx_sql_run(b, mi_openid_written, o);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "openid token write");
}

static int mi_openid_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, mi_openid_authed, ud);
}

static void mi_userinfo_got(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        hs_reply_storage_error(req, status, "openid token lookup");
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        mx_req_error(req, 401, "M_UNKNOWN_TOKEN", "Access Token unknown or expired");
        return;
    }
    mx_req_reply_json(req, 200, json_pack("{s:s}", "sub", mx_sql_text(res, 0, 0, 0)));
}

/* GET /_matrix/federation/v1/openid/userinfo?access_token=... — no server
 * signature: the caller holds the token the user handed it. */
static int mi_userinfo_h(mx_req_t *req, void *ud)
{
    (void)ud;
    const char *token = mx_req_query(req, "access_token");
    if (!token || !*token) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing string query parameter access_token");
        return MX_DONE;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_DONE;
    }
    mx_sql_add(b, "SELECT user_id FROM open_id_tokens WHERE token = ? AND ts_valid_until_ms > ?",
               "si", token, (int64_t)mx_now_ms());
    int rc = mx_sql_run(b, mi_userinfo_got, req);
    if (rc < 0) {
        hs_reply_storage_error(req, rc, "openid token lookup");
        return MX_DONE;
    }
    return MX_ASYNC;
}

int cl_misc_start(void)
{
    int rc;
    if ((rc = cl_route("GET", "/voip/turnServer", mi_turn_h, 0)) < 0 ||
        (rc = cl_route("GET", "/thirdparty/protocols", mi_protocols_h, 0)) < 0 ||
        (rc = cl_route("GET", "/account/3pid", mi_3pid_h, 0)) < 0 ||
        (rc = cl_route("POST", "/rooms/{roomId}/report/{eventId}", mi_report_h,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = cl_route("POST", "/rooms/{roomId}/report", mi_report_h, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = cl_route("POST", "/user/{userId}/openid/request_token", mi_openid_h,
                       MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return mx_route_add("federation", "GET", "/_matrix/federation/v1/openid/userinfo",
                        mi_userinfo_h, NULL, 0);
}
