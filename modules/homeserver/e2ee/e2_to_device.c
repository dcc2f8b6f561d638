/*
 * e2_to_device.c: PUT /sendToDevice/{eventType}/{txnId} (spec "Send-to-Device
 * messaging").
 *
 * Each message gets its own position in the to-device stream and a row in
 * the recipient device's inbox; "*" expands to every device of the user
 * (including a dehydrated one).  Messages to remote users are stored in the
 * federation outbox for the sender that federation will add.  The
 * transaction row (sender, device, txnId) is inserted with the messages in
 * one batch: a retry fails on its primary key and is answered 200 without
 * storing anything twice.  /sync delivery is in e2_sync.c.
 */
#include "e2ee.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct td_send {
    mx_req_t *req;
    e2_who_t *who;
    const char *type, *txn_id;
    json_t *messages;        /* borrowed from the request body */
    json_t *locals;          /* {user: index of its devices statement} (owned) */
    int64_t *pos;            /* positions handed out */
    size_t npos, cap;
    const char **notify;     /* local users to wake */
    size_t nnotify;
} td_send_t;

static void td_free(void *p)
{
    td_send_t *t = p;
    json_decref(t->locals);
    free(t->pos);
}

static void td_release(td_send_t *t)
{
    for (size_t i = 0; i < t->npos; i++)
        hs_stream_persisted(HS_STREAM_TO_DEVICE, t->pos[i]);
    t->npos = 0;
}

static void td_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    td_send_t *t = ud;
    td_release(t);
    if (status == MX_ECONSTRAINT) { /* the same txnId again */
        mx_req_reply_json(t->req, 200, json_object());
        return;
    }
    if (status < 0) {
        hs_reply_storage_error(t->req, status, "sendToDevice");
        return;
    }
    if (t->nnotify)
        hs_notify_users(t->notify, t->nnotify, HS_STREAM_TO_DEVICE);
    mx_req_reply_json(t->req, 200, json_object());
}

/* Adds one message row; false on ENOMEM. */
static bool td_add(td_send_t *t, mx_sql_batch_t *b, const char *user_id, const char *device_id,
                   const char *msg_json, const char *destination)
{
    if (t->npos == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        int64_t *p = realloc(t->pos, cap * sizeof(*p));
        if (!p)
            return false;
        t->pos = p;
        t->cap = cap;
    }
    int64_t pos = hs_stream_next(HS_STREAM_TO_DEVICE);
    if (pos < 0)
        return false;
    t->pos[t->npos++] = pos;
    if (destination)
        mx_sql_add(b, "INSERT INTO e2e_federation_outbox (stream_id, destination, user_id,"
                      " device_id, message_json, ts) VALUES (?, ?, ?, ?, ?, ?)",
                   "issssi", pos, destination, user_id, device_id, msg_json,
                   (int64_t)mx_now_ms());
    else
        mx_sql_add(b, "INSERT INTO e2e_device_inbox (stream_id, user_id, device_id, message_json)"
                      " VALUES (?, ?, ?, ?)", "isss", pos, user_id, device_id, msg_json);
    return true;
}

static void td_devices_read(int status, mx_sql_res_t *res, void *ud)
{
    td_send_t *t = ud;
    mx_req_t *req = t->req;
    if (status < 0) {
        hs_reply_storage_error(req, status, "sendToDevice");
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    t->notify = mx_palloc(pool, sizeof(char *) * (json_object_size(t->messages) + 1));
    if (!b || !t->notify) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, -ENOMEM, "sendToDevice");
        return;
    }
    const char *dev_key = t->who->device_id
                              ? t->who->device_id
                              : mx_psprintf(pool, "t%" PRId64, t->who->token_id);
    mx_sql_add(b, "INSERT INTO e2e_to_device_txns (user_id, device_key, txn_id, ts)"
                  " VALUES (?, ?, ?, ?)", "sssi", t->who->user_id, dev_key, t->txn_id,
               (int64_t)mx_now_ms());
    bool ok = true;
    const char *uid;
    json_t *devs;
    json_object_foreach(t->messages, uid, devs) {
        bool local = e2_is_local(uid);
        json_t *st = json_object_get(t->locals, uid);
        bool any = false;
        const char *did;
        json_t *content;
        json_object_foreach(devs, did, content) {
            json_t *msg = json_pack("{s:s, s:s, s:O}", "sender", t->who->user_id, "type", t->type,
                                    "content", content);
            char *js = msg ? e2_dump(msg) : NULL;
            json_decref(msg);
            if (!js) {
                ok = false;
                break;
            }
            if (!local) {
                ok &= td_add(t, b, uid, did, js, e2_server_of(uid));
            } else {
                int s = st ? (int)json_integer_value(st) : -1;
                for (int i = 0; s >= 0 && i < mx_sql_nrows(res, s); i++) {
                    const char *d = mx_sql_text(res, s, i, 0);
                    if (strcmp(did, "*") != 0 && strcmp(did, d) != 0)
                        continue;
                    ok &= td_add(t, b, uid, d, js, NULL);
                    any = true;
                }
            }
            free(js);
        }
        if (any)
            t->notify[t->nnotify++] = uid;
    }
    if (t->npos) {
        int64_t top = t->pos[t->npos - 1];
        mx_sql_add(b, "INSERT INTO e2e_positions (name, pos) VALUES ('to_device', ?)"
                      " ON CONFLICT (name) DO UPDATE SET pos = excluded.pos"
                      " WHERE e2e_positions.pos < excluded.pos", "i", top);
    }
    if (!ok) {
        mx_sql_batch_free(b);
        td_release(t);
        hs_reply_storage_error(req, -ENOMEM, "sendToDevice");
        return;
    }
    if (mx_sql_run(b, td_written, t) < 0) {
        td_release(t);
        hs_reply_storage_error(req, MX_EDB, "sendToDevice");
    }
}

static void td_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = e2_body(req);
    if (!body)
        return;
    json_t *messages = json_object_get(body, "messages");
    if (!messages) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing params: ['messages']");
        return;
    }
    if (!json_is_object(messages)) {
        mx_req_error(req, 400, "M_BAD_JSON", "messages must be an object");
        return;
    }
    const char *uid;
    json_t *devs;
    json_object_foreach(messages, uid, devs) {
        if (!json_is_object(devs) || !e2_server_of(uid) || uid[0] != '@') {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid recipient %s", uid);
            return;
        }
        const char *did;
        json_t *content;
        json_object_foreach(devs, did, content)
            if (!json_is_object(content)) {
                mx_req_error(req, 400, "M_BAD_JSON", "Message content must be an object");
                return;
            }
    }
    mx_pool_t *pool = mx_req_pool(req);
    td_send_t *t = mx_palloc(pool, sizeof(*t));
    if (!t) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(t, 0, sizeof(*t));
    t->req = req;
    t->who = e2_who_copy(req, who);
    t->type = mx_req_param(req, "eventType");
    t->txn_id = mx_req_param(req, "txnId");
    t->messages = messages;
    t->locals = json_object();
    mx_pool_on_free(pool, td_free, t);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!t->who || !b) {
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    int st = 0;
    json_object_foreach(messages, uid, devs) {
        if (!e2_is_local(uid))
            continue;
        /* devices of the accounts part (read only) and a dehydrated one */
        mx_sql_add(b, "SELECT device_id FROM devices WHERE user_id = ? UNION"
                      " SELECT device_id FROM e2e_dehydrated_devices WHERE user_id = ?",
                   "ss", uid, uid);
        json_object_set_new(t->locals, uid, json_integer(st++));
    }
    if (!st) {
        mx_sql_batch_free(b);
        td_devices_read(0, NULL, t);
        return;
    }
    if (mx_sql_run(b, td_devices_read, t) < 0)
        hs_reply_storage_error(req, MX_EDB, "sendToDevice");
}

static int td_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, td_authed, NULL);
}

int e2_td_routes(void)
{
    return e2_route("PUT", "/sendToDevice/{eventType}/{txnId}", td_h, MX_ROUTE_JSON_BODY, E2_ALL);
}
