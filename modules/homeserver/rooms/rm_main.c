/*
 * rm_main.c: the rooms part's start/stop, and the small helpers its files
 * (and sync/) share: route registration under v3 and r0, request bodies,
 * the client event format, stripped state and /messages tokens.
 */
#include "rooms.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rm_route(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags)
{
    static const char *const prefixes[] = { "/_matrix/client/v3", "/_matrix/client/r0" };
    char path[512];
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s%s", prefixes[i], suffix);
        int rc = mx_route_add("client", method, path, fn, NULL, flags);
        if (rc < 0) {
            mx_log("homeserver", MX_LOG_ERROR, "rooms: cannot add route %s %s (%d)", method,
                   path, rc);
            return rc;
        }
    }
    return 0;
}

int rm_route_v1(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags)
{
    char path[512];
    snprintf(path, sizeof(path), "/_matrix/client/v1%s", suffix);
    return mx_route_add("client", method, path, fn, NULL, flags);
}

json_t *rm_body(mx_req_t *req)
{
    json_t *b = mx_req_json(req);
    if (!json_is_object(b)) {
        mx_req_error(req, 400, "M_NOT_JSON", "body must be a JSON object");
        return NULL;
    }
    return b;
}

bool rm_room_id_ok(const char *s)
{
    return s && s[0] == '!' && strlen(s) <= 255 && strlen(s) > 1;
}

const hs_user_t *rm_who_copy(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    hs_user_t *w = mx_palloc(pool, sizeof(*w));
    if (!w)
        return who;
    *w = *who;
    w->user_id = mx_pstrdup(pool, who->user_id);
    w->device_id = who->device_id ? mx_pstrdup(pool, who->device_id) : NULL;
    return w;
}

const char *rm_device_key(mx_pool_t *pool, const hs_user_t *who)
{
    if (who->device_id && *who->device_id)
        return who->device_id;
    return mx_psprintf(pool, "t%" PRId64, who->token_id);
}

json_t *rm_client_event(const json_t *pdu, const char *event_id, const char *unsig,
                        const char *txn_device, const char *txn_id,
                        const char *my_device, unsigned flags)
{
    json_t *out = json_object();
    if (!out || !pdu)
        return out;
    static const char *const keep[] = { "type", "sender", "origin_server_ts", "state_key",
                                        "redacts" };
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        json_t *v = json_object_get(pdu, keep[i]);
        if (v)
            json_object_set(out, keep[i], v);
    }
    json_t *content = json_object_get(pdu, "content");
    json_object_set_new(out, "content", content ? json_deep_copy(content) : json_object());
    if (event_id)
        json_object_set_new(out, "event_id", json_string(event_id));
    if (flags & RM_CE_ROOM_ID) {
        json_t *rid = json_object_get(pdu, "room_id");
        if (rid)
            json_object_set(out, "room_id", rid);
    }
    /* v11 moved `redacts` into content; clients still read both. */
    const char *type = json_string_value(json_object_get(pdu, "type"));
    if (type && strcmp(type, "m.room.redaction") == 0) {
        json_t *c = json_object_get(out, "content");
        json_t *top = json_object_get(out, "redacts");
        json_t *in = json_object_get(c, "redacts");
        if (top && !in)
            json_object_set(c, "redacts", top);
        else if (in && !top)
            json_object_set(out, "redacts", in);
    }
    json_t *u = unsig ? json_loads(unsig, 0, NULL) : NULL;
    if (!json_is_object(u)) {
        json_decref(u);
        u = json_object();
    }
    json_object_del(u, "prev_sender");
    int64_t ts = json_integer_value(json_object_get(pdu, "origin_server_ts"));
    int64_t age = (int64_t)mx_now_ms() - ts;
    json_object_set_new(u, "age", json_integer(age > 0 ? age : 0));
    if (txn_id && txn_device && my_device && strcmp(txn_device, my_device) == 0)
        json_object_set_new(u, "transaction_id", json_string(txn_id));
    json_object_set_new(out, "unsigned", u);
    return out;
}

json_t *rm_row_event(const mx_sql_res_t *res, int stmt, int row, int col,
                     const char *my_device, unsigned flags)
{
    const char *js = mx_sql_text(res, stmt, row, col + 1);
    json_t *pdu = js ? json_loads(js, 0, NULL) : NULL;
    if (!pdu)
        return NULL;
    if (flags & RM_CE_FEDERATION) {
        json_object_set_new(pdu, "event_id", json_string(mx_sql_text(res, stmt, row, col)));
        return pdu;
    }
    json_t *ev = rm_client_event(pdu, mx_sql_text(res, stmt, row, col),
                                 mx_sql_text(res, stmt, row, col + 2),
                                 mx_sql_text(res, stmt, row, col + 3),
                                 mx_sql_text(res, stmt, row, col + 4), my_device, flags);
    json_decref(pdu);
    return ev;
}

json_t *rm_stripped_state(const rm_room_t *r)
{
    static const char *const types[] = { "m.room.create", "m.room.name", "m.room.avatar",
                                         "m.room.topic", "m.room.join_rules",
                                         "m.room.canonical_alias", "m.room.encryption" };
    json_t *out = json_array();
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const json_t *ev = rm_state_get(r, types[i], "");
        if (!ev)
            continue;
        json_array_append_new(out, json_pack("{s:O, s:s, s:s, s:O}", "content",
                                             json_object_get(ev, "content"), "type", types[i],
                                             "state_key", "", "sender",
                                             json_object_get(ev, "sender")));
    }
    return out;
}

int hs_rooms_start(char *err, size_t errlen)
{
    int rc = rm_schema_start(err, errlen);
    if (rc < 0 || (rc = rm_vis_start(err, errlen)) < 0 || (rc = rm_expiry_start(err, errlen)) < 0)
        return rc;
    if ((rc = rm_send_routes()) < 0 || (rc = rm_create_routes()) < 0 ||
        (rc = rm_membership_routes()) < 0 || (rc = rm_state_routes()) < 0 ||
        (rc = rm_messages_routes()) < 0 || (rc = rm_alias_routes()) < 0 ||
        (rc = rm_directory_routes()) < 0 || (rc = rm_upgrade_routes()) < 0) {
        snprintf(err, errlen, "homeserver.rooms: cannot add routes (%d)", rc);
        return rc;
    }
    return 0;
}

void hs_rooms_stop(void)
{
    rm_send_stop();
    rm_expiry_stop();
    rm_cache_stop();
    rm_vis_stop();
}
