/*
 * ad_rooms.c: the room routes of the Admin API — list, details, members,
 * state, messages, block, deletion (v2 in the background with status
 * by room and by delete ID; v1 answering when done), purge history with
 * its status, forward extremities and make_room_admin.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *ad_room_param(ad_req_t *ar)
{
    const char *r = mx_req_param(ar->req, "roomId");
    if (!r || r[0] != '!' || strlen(r) > 255) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "%s is not a legal room ID",
                     r ? r : "(none)");
        return NULL;
    }
    return r;
}

static void ad_rooms_list(ad_req_t *ar)
{
    int pub, empty;
    json_t *q = ad_qpage(ar);
    if (!q)
        return;
    if (!ad_qbool(ar, "public_rooms", -1, &pub) || !ad_qbool(ar, "empty_rooms", -1, &empty)) {
        json_decref(q);
        return;
    }
    const char *order = mx_req_query(ar->req, "order_by");
    const char *term = mx_req_query(ar->req, "search_term");
    if (order)
        json_object_set_new(q, "order_by", json_string(order));
    if (term) {
        if (!*term) {
            json_decref(q);
            mx_req_error(ar->req, 400, "M_INVALID_PARAM", "search_term cannot be an empty string");
            return;
        }
        json_object_set_new(q, "search_term", json_string(term));
    }
    if (pub >= 0)
        json_object_set_new(q, "public_rooms", json_boolean(pub));
    if (empty >= 0)
        json_object_set_new(q, "empty_rooms", json_boolean(empty));
    int rc = ar->hs->list_rooms(q, ad_done, ar);
    json_decref(q);
    if (rc < 0)
        ad_list_failed(ar, rc, order);
}

AD_ON_PARAM(ad_room_details, ad_room_param(ar), room_details)
AD_ON_PARAM(ad_room_members, ad_room_param(ar), room_members)
AD_ON_PARAM(ad_room_state, ad_room_param(ar), room_state, mx_req_query(ar->req, "type"))

static void ad_room_messages(ad_req_t *ar)
{
    const char *r = ad_room_param(ar);
    int64_t limit;
    const char *dir = mx_req_query(ar->req, "dir");
    if (!r || !ad_qint(ar, "limit", 10, 0, &limit))
        return;
    if (dir && strcmp(dir, "f") && strcmp(dir, "b")) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Unknown direction: %s", dir);
        return;
    }
    json_t *q = json_pack("{s:I, s:s}", "limit", (json_int_t)limit, "dir", dir ? dir : "b");
    const char *from = mx_req_query(ar->req, "from");
    if (from)
        json_object_set_new(q, "from", json_string(from));
    int rc = ar->hs->room_messages(r, q, ad_done, ar);
    json_decref(q);
    if (rc == -EINVAL)
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Invalid token");
    else if (rc < 0)
        ad_call_failed(ar, rc);
}

/* --------------------------------------------------------------- block --- */

AD_ON_PARAM(ad_block_get, ad_room_param(ar), room_block, -1, NULL)

static void ad_block_put(ad_req_t *ar)
{
    const char *r = ad_room_param(ar);
    json_t *b = r ? ad_body(ar) : NULL;
    if (!b)
        return;
    const json_t *v = json_object_get(b, "block");
    if (!json_is_boolean(v)) {
        mx_req_error(ar->req, 400, "M_BAD_JSON", "Param 'block' must be a boolean.");
        return;
    }
    AD_CALL(ar, ar->hs->room_block(r, json_is_true(v), ar->admin, ad_done, ar));
}

/* -------------------------------------------------------------- delete --- */

/* Checks the deletion body (Synapse's rules) and builds the service's
 * options; NULL after replying 400. */
static json_t *ad_delete_opts(ad_req_t *ar, bool wait)
{
    json_t *b = ad_body(ar);
    if (!b)
        return NULL;
    static const char *const bools[] = { "block", "purge", "force_purge" };
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        const json_t *v = json_object_get(b, bools[i]);
        if (v && !json_is_boolean(v)) {
            mx_req_error(ar->req, 400, "M_BAD_JSON", "Param '%s' must be a boolean, if given",
                         bools[i]);
            return NULL;
        }
    }
    const json_t *nu = json_object_get(b, "new_room_user_id");
    if (nu && !json_is_null(nu)) {
        if (!json_is_string(nu) || !ad_is_local(json_string_value(nu))) {
            mx_req_error(ar->req, 400, "M_INVALID_PARAM", "User must be our own: %s",
                         json_is_string(nu) ? json_string_value(nu) : "?");
            return NULL;
        }
    }
    static const char *const strs[] = { "room_name", "message" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        const json_t *v = json_object_get(b, strs[i]);
        if (v && !json_is_null(v) && !json_is_string(v)) {
            mx_req_error(ar->req, 400, "M_BAD_JSON", "Param '%s' must be a string, if given",
                         strs[i]);
            return NULL;
        }
    }
    json_t *o = json_pack("{s:b, s:b, s:b, s:s, s:b}", "block",
                          json_is_true(json_object_get(b, "block")), "purge",
                          !json_is_false(json_object_get(b, "purge")), "force_purge",
                          json_is_true(json_object_get(b, "force_purge")), "requester",
                          ar->admin, "wait", wait);
    if (json_is_string(nu))
        json_object_set(o, "new_room_user_id", (json_t *)nu);
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (json_is_string(json_object_get(b, strs[i])))
            json_object_set(o, strs[i], json_object_get(b, strs[i]));
    return o;
}

static void ad_delete_v2(ad_req_t *ar)
{
    const char *r = ad_room_param(ar);
    json_t *o = r ? ad_delete_opts(ar, false) : NULL;
    if (!o)
        return;
    AD_CALL(ar, ar->hs->delete_room(r, o, ad_done, ar));
    json_decref(o);
}

static void ad_delete_v1(ad_req_t *ar)
{
    const char *r = ad_room_param(ar);
    json_t *o = r ? ad_delete_opts(ar, true) : NULL;
    if (!o)
        return;
    AD_CALL(ar, ar->hs->delete_room(r, o, ad_done, ar));
    json_decref(o);
}

/* The old shutdown API: always blocks, never purges, answers when done. */
static void ad_shutdown_room(ad_req_t *ar)
{
    const char *r = ad_room_param(ar);
    json_t *o = r ? ad_delete_opts(ar, true) : NULL;
    if (!o)
        return;
    json_object_set_new(o, "block", json_true());
    json_object_set_new(o, "purge", json_false());
    AD_CALL(ar, ar->hs->delete_room(r, o, ad_done, ar));
    json_decref(o);
}

AD_ON_PARAM(ad_delete_status_room, ad_room_param(ar), delete_status, NULL)

static void ad_delete_status_id(ad_req_t *ar)
{
    AD_CALL(ar, ar->hs->delete_status(NULL, mx_req_param(ar->req, "deleteId"), ad_done, ar));
}

/* ------------------------------------------------------- purge history --- */

static void ad_purge_history(ad_req_t *ar)
{
    const char *r = ad_room_param(ar);
    json_t *b = r ? ad_body(ar) : NULL;
    if (!b)
        return;
    const json_t *dl = json_object_get(b, "delete_local_events");
    if (dl && !json_is_boolean(dl)) {
        mx_req_error(ar->req, 400, "M_BAD_JSON", "delete_local_events must be a boolean");
        return;
    }
    json_t *o = json_pack("{s:b}", "delete_local_events", json_is_true(dl));
    const char *eid = mx_req_param(ar->req, "eventId");
    const json_t *beid = json_object_get(b, "purge_up_to_event_id");
    const json_t *ts = json_object_get(b, "purge_up_to_ts");
    if (!eid && json_is_string(beid))
        eid = json_string_value(beid);
    if (eid) {
        json_object_set_new(o, "event_id", json_string(eid));
    } else if (ts) {
        if (!json_is_integer(ts) || json_integer_value(ts) < 0) {
            json_decref(o);
            mx_req_error(ar->req, 400, "M_INVALID_PARAM", "purge_up_to_ts must be an int");
            return;
        }
        json_object_set(o, "purge_up_to_ts", (json_t *)ts);
    } else {
        json_decref(o);
        mx_req_error(ar->req, 400, "M_BAD_JSON",
                     "must specify purge_up_to_event_id or purge_up_to_ts");
        return;
    }
    AD_CALL(ar, ar->hs->purge_history(r, o, ad_done, ar));
    json_decref(o);
}

static void ad_purge_status(ad_req_t *ar)
{
    AD_CALL(ar, ar->hs->purge_history_status(mx_req_param(ar->req, "purgeId"), ad_done, ar));
}

/* ----------------------------------------------------- room maintenance --- */

AD_ON_PARAM(ad_fx_get, ad_room_param(ar), forward_extremities)
AD_ON_PARAM(ad_fx_delete, ad_room_param(ar), delete_forward_extremities)

static void ad_make_room_admin(ad_req_t *ar)
{
    const char *r = ad_room_param(ar);
    json_t *b = r ? ad_body(ar) : NULL;
    if (!b)
        return;
    const json_t *u = json_object_get(b, "user_id");
    if (u && !json_is_string(u)) {
        mx_req_error(ar->req, 400, "M_BAD_JSON", "user_id must be a string");
        return;
    }
    const char *uid = u ? json_string_value(u) : ar->admin;
    if (!ad_is_local(uid)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM",
                     "Only local users can be admins of this homeserver");
        return;
    }
    AD_CALL(ar, ar->hs->make_room_admin(r, uid, ad_done, ar));
}

int ad_rooms_routes(void)
{
    static const ad_route_t r[] = {
        { "GET", AD_V1 "/rooms", ad_rooms_list, 0 },
        { "GET", AD_V1 "/rooms/{roomId}", ad_room_details, 0 },
        { "GET", AD_V1 "/rooms/{roomId}/members", ad_room_members, 0 },
        { "GET", AD_V1 "/rooms/{roomId}/state", ad_room_state, 0 },
        { "GET", AD_V1 "/rooms/{roomId}/messages", ad_room_messages, 0 },
        { "GET", AD_V1 "/rooms/{roomId}/block", ad_block_get, 0 },
        { "PUT", AD_V1 "/rooms/{roomId}/block", ad_block_put, AD_J },
        { "DELETE", AD_V1 "/rooms/{roomId}", ad_delete_v1, AD_J },
        { "DELETE", AD_V2 "/rooms/{roomId}", ad_delete_v2, AD_J },
        { "POST", AD_V1 "/shutdown_room/{roomId}", ad_shutdown_room, AD_J },
        { "GET", AD_V2 "/rooms/{roomId}/delete_status", ad_delete_status_room, 0 },
        { "GET", AD_V2 "/rooms/delete_status/{deleteId}", ad_delete_status_id, 0 },
        { "POST", AD_V1 "/purge_history/{roomId}", ad_purge_history, AD_J },
        { "POST", AD_V1 "/purge_history/{roomId}/{eventId}", ad_purge_history, AD_J },
        { "GET", AD_V1 "/purge_history_status/{purgeId}", ad_purge_status, 0 },
        { "GET", AD_V1 "/rooms/{roomId}/forward_extremities", ad_fx_get, 0 },
        { "DELETE", AD_V1 "/rooms/{roomId}/forward_extremities", ad_fx_delete, AD_J },
        { "POST", AD_V1 "/rooms/{roomId}/make_room_admin", ad_make_room_admin, AD_J },
    };
    return ad_routes(r, sizeof(r) / sizeof(r[0]));
}
