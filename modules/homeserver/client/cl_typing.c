/*
 * cl_typing.c: typing notifications — PUT /rooms/{roomId}/typing/{userId}
 * — kept in memory on the loop (Synapse does not persist them either), with
 * one timer that expires typing users, and the "typing" sync provider that
 * adds rooms.join.<id>.ephemeral m.typing for rooms whose typing set
 * changed since the client's position (every known room on an initial
 * sync, or when the position comes from before a restart).
 *
 * Each change takes an HS_STREAM_TYPING position that is persisted at once
 * (nothing to write) and wakes the room's /sync long-polls.
 */
#include "client.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TY_DEFAULT_TIMEOUT_MS 30000
#define TY_MAX_TIMEOUT_MS 120000     /* Synapse caps silly timeouts */
#define TY_TICK_MS 1000

typedef struct ty_user {
    char *user_id;                   /* owned */
    uint64_t until_ms;
} ty_user_t;

typedef struct ty_room {
    int64_t serial;                  /* stream position of the last change */
    ty_user_t *users;                /* owned, in the order they started */
    size_t n, cap;
} ty_room_t;

typedef struct ty_state {
    rm_map_t *rooms;                 /* room_id → ty_room_t (owned) */
    uv_timer_t *timer;               /* NULL when stopped; freed in close cb */
    size_t typing;                   /* users typing over all rooms */
} ty_state_t;

static ty_state_t *ty;

static void ty_changed(const char *room_id, ty_room_t *r)
{
    r->serial = hs_stream_next(HS_STREAM_TYPING);
    hs_stream_persisted(HS_STREAM_TYPING, r->serial);
    hs_notify_room(room_id, HS_STREAM_TYPING);
}

static void ty_remove_at(ty_room_t *r, size_t i)
{
    free(r->users[i].user_id);
    memmove(&r->users[i], &r->users[i + 1], (r->n - i - 1) * sizeof(ty_user_t));
    r->n--;
    ty->typing--;
}

typedef struct ty_expire {
    uint64_t now;
} ty_expire_t;

static void ty_expire_room(const char *room_id, void *val, void *ud)
{
    ty_room_t *r = val;
    ty_expire_t *e = ud;
    bool changed = false;
    for (size_t i = 0; i < r->n;) {
        if (r->users[i].until_ms <= e->now) {
            ty_remove_at(r, i);
            changed = true;
        } else {
            i++;
        }
    }
    if (changed)
        ty_changed(room_id, r);
}

static void ty_tick(uv_timer_t *t)
{
    (void)t;
    if (!ty)
        return;
    ty_expire_t e = { mx_now_ms() };
    rm_map_each(ty->rooms, ty_expire_room, &e);
    if (ty->typing == 0)
        uv_timer_stop(ty->timer);
}

static void ty_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void ty_timer_arm(void)
{
    if (!ty->timer) {
        ty->timer = malloc(sizeof(*ty->timer));
        if (!ty->timer)
            return;
        uv_timer_init(mx_loop(), ty->timer);
        uv_unref((uv_handle_t *)ty->timer);
    }
    if (!uv_is_active((uv_handle_t *)ty->timer))
        uv_timer_start(ty->timer, ty_tick, TY_TICK_MS, TY_TICK_MS);
}

/* Sets or clears one user's typing state; announces real changes. */
static int ty_set(const char *room_id, const char *user_id, bool typing, uint64_t timeout_ms)
{
    ty_room_t *r = rm_map_get(ty->rooms, room_id);
    if (!r) {
        if (!typing)
            return 0;
        r = calloc(1, sizeof(*r));
        if (!r || rm_map_put(ty->rooms, room_id, r) < 0) {
            free(r);
            return -ENOMEM;
        }
    }
    size_t i;
    for (i = 0; i < r->n; i++)
        if (strcmp(r->users[i].user_id, user_id) == 0)
            break;
    if (!typing) {
        if (i < r->n) {
            ty_remove_at(r, i);
            ty_changed(room_id, r);
        }
        return 0;
    }
    uint64_t until = mx_now_ms() + timeout_ms;
    if (i < r->n) {
        r->users[i].until_ms = until; /* still typing: no new event */
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        ty_user_t *u = realloc(r->users, cap * sizeof(*u));
        if (!u)
            return -ENOMEM;
        r->users = u;
        r->cap = cap;
    }
    char *uid = strdup(user_id);
    if (!uid)
        return -ENOMEM;
    r->users[r->n].user_id = uid;
    r->users[r->n].until_ms = until;
    r->n++;
    ty->typing++;
    ty_changed(room_id, r);
    ty_timer_arm();
    return 0;
}

/* --------------------------------------------------------------- PUT --- */

typedef struct ty_req {
    bool typing;
    uint64_t timeout_ms;
} ty_req_t;

static void ty_put_joined(cl_req_t *cr)
{
    ty_req_t *tr = cr->ud;
    int rc = ty_set(cr->room_id, cr->who->user_id, tr->typing, tr->timeout_ms);
    if (rc < 0) {
        mx_req_error(cr->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    cl_presence_bump(cr->who->user_id);
    mx_req_reply_json(cr->req, 200, json_object());
}

static void ty_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *room_id = mx_req_param(req, "roomId");
    const char *user_id = mx_req_param(req, "userId");
    if (!cl_room_id_ok(room_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid room ID");
        return;
    }
    if (!cl_is_self(req, who, user_id, "Cannot set another user's typing state"))
        return;
    json_t *body = mx_req_json(req);
    json_t *typing = json_object_get(body, "typing");
    if (!json_is_boolean(typing)) {
        mx_req_error(req, 400, typing ? "M_BAD_JSON" : "M_MISSING_PARAM",
                     "'typing' must be a boolean");
        return;
    }
    json_t *timeout = json_object_get(body, "timeout");
    if (timeout && !json_is_integer(timeout)) {
        mx_req_error(req, 400, "M_BAD_JSON", "'timeout' must be an integer");
        return;
    }
    int64_t ms = timeout ? json_integer_value(timeout) : TY_DEFAULT_TIMEOUT_MS;
    if (ms < 0)
        ms = 0;
    if (ms > TY_MAX_TIMEOUT_MS)
        ms = TY_MAX_TIMEOUT_MS;
    cl_req_t *cr = cl_req_new(req, who);
    ty_req_t *tr = cr ? mx_palloc(mx_req_pool(req), sizeof(*tr)) : NULL;
    if (!tr) {
        if (cr)
            mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    tr->typing = json_is_true(typing);
    tr->timeout_ms = (uint64_t)ms;
    cr->room_id = room_id;
    cr->ud = tr;
    cl_require_joined(cr, ty_put_joined);
}

static int ty_put_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, ty_put_authed, ud);
}

/* ------------------------------------------------------- sync provider --- */

static void ty_sync(hs_sync_ctx_t *sc, hs_sync_part_done_fn done)
{
    int64_t since = sc->since[HS_STREAM_TYPING];
    /* A position from before a restart (typing restarts at 0). */
    bool stale = since > hs_stream_current(HS_STREAM_TYPING);
    size_t i;
    json_t *v;
    json_array_foreach(sc->joined_rooms, i, v) {
        const char *room_id = json_string_value(v);
        ty_room_t *r = room_id && ty ? rm_map_get(ty->rooms, room_id) : NULL;
        if (!r || !(sc->initial || stale || r->serial > since))
            continue;
        json_t *ids = json_array();
        for (size_t k = 0; k < r->n; k++)
            json_array_append_new(ids, json_string(r->users[k].user_id));
        json_t *room = hs_sync_joined_room(sc, room_id);
        if (!room) {
            json_decref(ids);
            continue;
        }
        json_t *eph = json_object_get(room, "ephemeral");
        if (!json_is_object(eph)) {
            eph = json_object();
            json_object_set_new(room, "ephemeral", eph);
        }
        json_t *evs = json_object_get(eph, "events");
        if (!json_is_array(evs)) {
            evs = json_array();
            json_object_set_new(eph, "events", evs);
        }
        json_array_append_new(evs, json_pack("{s:s, s:{s:o}}", "type", "m.typing", "content",
                                             "user_ids", ids));
    }
    done(sc, 0);
}

int cl_typing_start(void)
{
    if (!ty) {
        ty = calloc(1, sizeof(*ty));
        if (!ty)
            return -ENOMEM;
        ty->rooms = rm_map_new();
        if (!ty->rooms) {
            free(ty);
            ty = NULL;
            return -ENOMEM;
        }
    }
    int rc = cl_route("PUT", "/rooms/{roomId}/typing/{userId}", ty_put_h, MX_ROUTE_JSON_BODY);
    if (rc < 0)
        return rc;
    return hs_sync_add_part("typing", ty_sync);
}

static void ty_free_room(const char *room_id, void *val, void *ud)
{
    (void)room_id;
    (void)ud;
    ty_room_t *r = val;
    for (size_t i = 0; i < r->n; i++)
        free(r->users[i].user_id);
    free(r->users);
    free(r);
}

void cl_typing_stop(void)
{
    if (!ty)
        return;
    if (ty->timer) {
        uv_timer_stop(ty->timer);
        uv_close((uv_handle_t *)ty->timer, ty_timer_closed);
    }
    rm_map_each(ty->rooms, ty_free_room, NULL);
    rm_map_free(ty->rooms);
    free(ty);
    ty = NULL;
}
