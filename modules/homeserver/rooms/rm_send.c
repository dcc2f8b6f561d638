/*
 * rm_send.c: PUT /rooms/{roomId}/send/{eventType}/{txnId} and
 * PUT /rooms/{roomId}/redact/{eventId}/{txnId}, and the legacy
 * POST /rooms/{roomId}/send/{eventType} (no txn ID: not idempotent, as in
 * Synapse).
 *
 * Both are idempotent per (user, device or token, txnId): the mapping is
 * written in the same batch as the event (event_txns), so a retransmit
 * answers the same event ID, also after a restart or a token refresh (the
 * scope is the device).  Redaction txn IDs are kept apart with a "redact/"
 * prefix.  A redaction applies the room version's algorithm to the stored
 * copy of the target (rm_txn_add with redact_target).
 */
#include "rooms.h"
#include "../accounts/accounts.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct sd_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *room_id;
    const char *type;
    const char *txn_id;       /* as stored (prefixed for redactions) */
    const char *dev;
    const char *redacts;
    json_t *content;          /* owned */
    json_t *target;           /* owned: redaction target PDU */
} sd_ctx_t;

static void sd_free(void *p)
{
    sd_ctx_t *c = p;
    json_decref(c->content);
    json_decref(c->target);
}

static void sd_have_room(rm_room_t *room, int status, void *ud)
{
    sd_ctx_t *c = ud;
    if (!room) {
        if (status == -ENOENT)
            mx_req_error(c->req, 404, "M_NOT_FOUND", "unknown room");
        else
            hs_reply_storage_error(c->req, status, "loading room");
        return;
    }
    rm_ev_opts_t o = { .txn_device = c->dev, .txn_id = c->txn_id, .user_id = c->who->user_id };
    if (c->redacts) {
        /* Rooms v4+ event IDs carry no domain, so the "same sender or
         * enough power" rule is checked here, where the target is known. */
        const char *tsender = hs_ev_sender(c->target);
        if (!tsender || strcmp(tsender, c->who->user_id) != 0) {
            const json_t *create = rm_state_get(room, "m.room.create", "");
            const json_t *pl = rm_state_get(room, "m.room.power_levels", "");
            if (hs_user_power(room->rv, create, pl, c->who->user_id) <
                hs_named_power(pl, "redact", 50)) {
                mx_req_error(c->req, 403, "M_FORBIDDEN",
                             "you may not redact other users' events");
                return;
            }
        }
        o.redacts = c->redacts;
        o.redact_target = c->target;
        if (room->rv->redacts_in_content)
            json_object_set_new(c->content, "redacts", json_string(c->redacts));
    }
    rm_send_one(c->req, room, c->type, NULL, c->who->user_id, c->content, &o, NULL);
}

static void sd_txn_checked(int status, mx_sql_res_t *res, void *ud)
{
    sd_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "txn lookup");
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        mx_req_reply_json(c->req, 200,
                          json_pack("{s:s}", "event_id", mx_sql_text(res, 0, 0, 0)));
        return;
    }
    if (c->redacts) {
        const char *js = mx_sql_nrows(res, 1) ? mx_sql_text(res, 1, 0, 0) : NULL;
        if (js && strcmp(mx_sql_text(res, 1, 0, 1), c->room_id) != 0) {
            mx_req_error(c->req, 400, "M_INVALID_PARAM",
                         "cannot redact an event of a different room");
            return;
        }
        c->target = js ? json_loads(js, 0, NULL) : NULL;
        if (!c->target) {
            mx_req_error(c->req, 404, "M_NOT_FOUND", "unknown event");
            return;
        }
    }
    rm_room_get(c->room_id, sd_have_room, c);
}

static void sd_start(sd_ctx_t *c)
{
    int64_t wait = hs_ratelimit_message(c->who->user_id);
    if (wait > 0) {
        hs_reply_ratelimited(c->req, wait);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    /* A POST send has no txn ID: the lookup finds nothing. */
    mx_sql_add(b, "SELECT event_id FROM event_txns WHERE user_id = ? AND device_key = ?"
                  " AND txn_id = ?", "sss", c->who->user_id, c->dev,
               c->txn_id ? c->txn_id : "");
    if (c->redacts)
        mx_sql_add(b, "SELECT json, room_id FROM events WHERE event_id = ?", "s", c->redacts);
    if (mx_sql_run(b, sd_txn_checked, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "txn lookup");
    }
}

static sd_ctx_t *sd_new(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    sd_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->room_id = mx_req_param(req, "roomId");
    c->dev = rm_device_key(pool, who);
    mx_pool_on_free(pool, sd_free, c);
    return c;
}

static void sd_send_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    sd_ctx_t *c = sd_new(req, who);
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    c->type = mx_req_param(req, "eventType");
    c->txn_id = mx_req_param(req, "txnId");
    bool post = strcmp(mx_req_method(req), "POST") == 0;
    if (!rm_room_id_ok(c->room_id) || !c->type || !*c->type ||
        (!post && (!c->txn_id || !*c->txn_id))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID, event type or txn ID");
        return;
    }
    c->content = json_deep_copy(body);
    sd_start(c);
}

static int sd_send(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, sd_send_authed, NULL);
}

static void sd_redact_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    sd_ctx_t *c = sd_new(req, who);
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    const char *txn = mx_req_param(req, "txnId");
    c->type = "m.room.redaction";
    c->redacts = mx_req_param(req, "eventId");
    if (!rm_room_id_ok(c->room_id) || !c->redacts || c->redacts[0] != '$' || !txn || !*txn) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID, event ID or txn ID");
        return;
    }
    c->txn_id = mx_psprintf(mx_req_pool(req), "redact/%s", txn);
    c->content = json_object();
    json_t *reason = json_object_get(body, "reason");
    if (json_is_string(reason))
        json_object_set(c->content, "reason", reason);
    sd_start(c);
}

static int sd_redact(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, sd_redact_authed, NULL);
}

int rm_send_routes(void)
{
    int rc;
    if ((rc = rm_route("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", sd_send,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("POST", "/rooms/{roomId}/send/{eventType}", sd_send,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", sd_redact,
                       MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
