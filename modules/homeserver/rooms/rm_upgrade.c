/*
 * rm_upgrade.c: POST /rooms/{roomId}/upgrade.
 *
 * Order (as the spec and Synapse do it): the tombstone of the old room is
 * built first, so that the new room's create event can name it in
 * predecessor.event_id; then the new room is made through rm_create_room
 * (the old room's create type / m.federate, power levels with the upgrader
 * raised as far as copying the state needs, the state worth keeping, the
 * bans and pending invites, and the original power levels again when the
 * upgrader was raised).  The old room's write batch (tombstone, restricted
 * power levels, emptied canonical alias, aliases and directory listing moved,
 * the local members' m.tag and m.direct account data copied to the new room)
 * is submitted in the same loop turn right after the new room's batch, so
 * write batches, which complete in submission order, store the new room
 * first and nothing else can be queued on the old room in between.  v12
 * rooms (ID = hash of the create event) cannot be named by a tombstone built
 * before them: there the tombstone is built after the new room's events and
 * predecessor has no event_id (which v12 dropped).
 */
#include "rooms.h"
#include "../client/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct up_ctx {
    mx_req_t *req;            /* NULL once the request is gone */
    const hs_user_t *who;     /* pool */
    const char *new_version;  /* pool */
    rm_room_t *old;           /* referenced */
    const char *new_room;     /* pool: the new room's ID once known */
    int n_reads;              /* statements of the account data read */
    json_t *restore_pl;       /* owned: PL content to send last in the new room, or NULL */
    json_t *acct;             /* owned: [[user_id, room_id, type, content]] read before */
    rm_txn_t *told;           /* the old room's txn until submitted */
    const char *tomb_id;      /* pool: the tombstone's event ID */
    int64_t *ad_pos;          /* malloc'd: account data positions of told */
    char **ad_user;           /* malloc'd: their users */
    size_t n_ad;
    bool new_ok;              /* the new room is committed */
    int refs;                 /* the request pool + the old room's commit */
} up_ctx_t;

static void up_unref(up_ctx_t *c)
{
    if (--c->refs > 0)
        return;
    if (c->told)
        rm_txn_abort(c->told);
    if (c->old)
        rm_room_unref(c->old);
    json_decref(c->restore_pl);
    json_decref(c->acct);
    for (size_t i = 0; i < c->n_ad; i++)
        free(c->ad_user[i]);
    free(c->ad_user);
    free(c->ad_pos);
    free(c);
}

static void up_pool_free(void *p)
{
    up_ctx_t *c = p;
    c->req = NULL;
    up_unref(c);
}

static bool up_local(const char *user_id)
{
    const char *colon = user_id ? strchr(user_id, ':') : NULL;
    return colon && strcmp(colon + 1, hs.server_name) == 0;
}

/* ------------------------------------------------------- the old room --- */

static void up_old_done(int status, rm_txn_t *t, void *ud)
{
    up_ctx_t *c = ud;
    (void)t;
    for (size_t i = 0; i < c->n_ad; i++)
        cl_ad_written(c->ad_user[i], c->ad_pos[i], status == 0);
    c->n_ad = 0;
    /* When the new room failed, its creation already replied. */
    if (c->req && c->new_ok) {
        if (status < 0)
            hs_reply_storage_error(c->req, status, "upgrading room");
        else
            mx_req_reply_json(c->req, 200,
                              json_pack("{s:s}", "replacement_room", c->new_room));
    }
    up_unref(c);
}

/* Queues one account data write on the old room's batch. */
static void up_ad(up_ctx_t *c, const char *user_id, const char *room_id, const char *type,
                  const json_t *content)
{
    int64_t pos = cl_ad_add(rm_txn_batch(c->told), user_id, room_id, type, content);
    if (pos <= 0)
        return;
    char *u = strdup(user_id);
    if (!u) {
        cl_ad_written(user_id, pos, false);
        return;
    }
    c->ad_user[c->n_ad] = u;
    c->ad_pos[c->n_ad++] = pos;
}

/* m.direct with `new_room` added wherever `old_room` is listed; new
 * reference, or NULL when the old room is not there. */
static json_t *up_direct(const json_t *content, const char *old_room, const char *new_room)
{
    json_t *out = NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)content, k, v) {
        size_t i;
        json_t *r;
        bool has_old = false, has_new = false;
        json_array_foreach(v, i, r) {
            has_old |= json_is_string(r) && strcmp(json_string_value(r), old_room) == 0;
            has_new |= json_is_string(r) && strcmp(json_string_value(r), new_room) == 0;
        }
        if (!has_old || has_new)
            continue;
        if (!out)
            out = json_deep_copy(content);
        json_array_append_new(json_object_get(out, k), json_string(new_room));
    }
    return out;
}

/* Builds the old room's events and writes into c->told.  0, or an
 * rm_txn_add error (why filled). */
static int up_build_old(up_ctx_t *c, const char *new_room, char *why, size_t whylen)
{
    rm_room_t *old = c->old;
    const char *uid = c->who->user_id;
    c->told = rm_txn_new(old);
    size_t nacct = json_array_size(c->acct);
    c->ad_user = calloc(nacct + 1, sizeof(*c->ad_user));
    c->ad_pos = calloc(nacct + 1, sizeof(*c->ad_pos));
    if (!c->told || !c->ad_user || !c->ad_pos)
        return -ENOMEM;
    c->new_room = mx_pstrdup(mx_req_pool(c->req), new_room);
    json_t *tomb = json_pack("{s:s, s:s}", "body", "This room has been replaced",
                             "replacement_room", new_room);
    const char *tid = NULL;
    int rc = rm_txn_add(c->told, "m.room.tombstone", "", uid, tomb, NULL, &tid, why, whylen);
    json_decref(tomb);
    if (rc != 0)
        return rc;
    c->tomb_id = mx_pstrdup(mx_req_pool(c->req), tid);

    /* Stop ordinary users from talking or inviting (not fatal: the
     * upgrader may lack the power to change the power levels). */
    const json_t *pl = rm_state_get(old, "m.room.power_levels", "");
    json_t *plc = pl ? json_deep_copy(json_object_get(pl, "content")) : NULL;
    if (plc) {
        int64_t ud_level = hs_named_power(pl, "users_default", 0);
        int64_t restrict_to = ud_level + 1 > 50 ? ud_level + 1 : 50;
        bool changed = false;
        static const char *const names[] = { "events_default", "invite" };
        for (size_t i = 0; i < 2; i++)
            if (hs_named_power(pl, names[i], 0) < restrict_to) {
                json_object_set_new(plc, names[i], json_integer(restrict_to));
                changed = true;
            }
        char w2[256];
        if (changed && rm_txn_add(c->told, "m.room.power_levels", "", uid, plc, NULL, NULL, w2,
                                  sizeof(w2)) != 0)
            mx_log("homeserver", MX_LOG_INFO, "upgrade: old room PLs not restricted: %s", w2);
        json_decref(plc);
    }
    /* The aliases move: the old room's canonical alias is emptied. */
    const json_t *ca = rm_state_get(old, "m.room.canonical_alias", "");
    if (ca && json_object_size(json_object_get(ca, "content"))) {
        char w2[256];
        json_t *empty = json_object();
        if (rm_txn_add(c->told, "m.room.canonical_alias", "", uid, empty, NULL, NULL, w2,
                       sizeof(w2)) != 0)
            mx_log("homeserver", MX_LOG_INFO, "upgrade: old canonical alias kept: %s", w2);
        json_decref(empty);
    }
    mx_sql_batch_t *b = rm_txn_batch(c->told);
    mx_sql_add(b, "UPDATE room_aliases SET room_id = ? WHERE room_id = ?", "ss", new_room,
               old->room_id);
    mx_sql_add(b, "UPDATE rooms SET is_public = (SELECT o.is_public FROM rooms o"
                  " WHERE o.room_id = ?) WHERE room_id = ?", "ss", old->room_id, new_room);
    mx_sql_add(b, "UPDATE rooms SET is_public = 0 WHERE room_id = ?", "s", old->room_id);

    /* The local members' tags of the room and m.direct entries. */
    size_t i;
    json_t *row;
    json_array_foreach(c->acct, i, row) {
        const char *u = json_string_value(json_array_get(row, 0));
        const char *type = json_string_value(json_array_get(row, 2));
        json_t *content = json_array_get(row, 3);
        if (strcmp(type, "m.tag") == 0) {
            up_ad(c, u, new_room, "m.tag", content);
        } else {
            json_t *d = up_direct(content, old->room_id, new_room);
            if (d)
                up_ad(c, u, "", "m.direct", d);
            json_decref(d);
        }
    }
    return 0;
}

/* ------------------------------------------------- rm_create_room hooks --- */

static int up_before(mx_req_t *req, const char *room_id, json_t *create, void *ud)
{
    up_ctx_t *c = ud;
    char why[256] = "";
    json_t *pred = json_pack("{s:s}", "room_id", c->old->room_id);
    json_object_set_new(create, "predecessor", pred);
    if (!room_id)
        return 0; /* v12: the tombstone follows the new room's events */
    int rc = up_build_old(c, room_id, why, sizeof(why));
    if (rc != 0) {
        rm_reply_add_error(req, rc, why);
        return -1;
    }
    json_object_set_new(pred, "event_id", json_string(c->tomb_id));
    return 0;
}

static int up_extra(mx_req_t *req, rm_txn_t *t, void *ud)
{
    up_ctx_t *c = ud;
    const char *uid = c->who->user_id;
    char why[256];
    /* Bans and pending invites carry over (failures are only logged:
     * the room is usable without them). */
    static const char *const kinds[] = { "ban", "invite" };
    for (size_t k = 0; k < 2; k++) {
        json_t *users = rm_room_members(c->old, kinds[k]);
        size_t i;
        json_t *u;
        json_array_foreach(users, i, u) {
            const char *target = json_string_value(u);
            const json_t *ev = rm_state_get(c->old, "m.room.member", target);
            json_t *content = json_pack("{s:s}", "membership", kinds[k]);
            json_t *reason = json_object_get(json_object_get(ev, "content"), "reason");
            if (json_is_string(reason))
                json_object_set(content, "reason", reason);
            if (rm_txn_add(t, "m.room.member", target, uid, content, NULL, NULL, why,
                           sizeof(why)) != 0)
                mx_log("homeserver", MX_LOG_INFO, "upgrade: %s of %s not copied: %s", kinds[k],
                       target, why);
            json_decref(content);
        }
        json_decref(users);
    }
    /* The upgrader back at their old level. */
    if (c->restore_pl &&
        rm_txn_add(t, "m.room.power_levels", "", uid, c->restore_pl, NULL, NULL, why,
                   sizeof(why)) != 0)
        mx_log("homeserver", MX_LOG_INFO, "upgrade: power levels not restored: %s", why);
    if (c->told)
        return 0;
    int rc = up_build_old(c, rm_txn_room(t)->room_id, why, sizeof(why));
    if (rc != 0) {
        rm_reply_add_error(req, rc, why);
        return -1;
    }
    return 0;
}

static void up_submitted(void *ud)
{
    up_ctx_t *c = ud;
    rm_txn_t *t = c->told;
    if (!t)
        return;
    c->told = NULL;
    c->refs++;
    rm_txn_commit(t, up_old_done, c);
}

static void up_after(mx_req_t *req, const char *room_id, void *ud)
{
    (void)req;
    (void)room_id;
    ((up_ctx_t *)ud)->new_ok = true;
}

/* -------------------------------------------------------- the request --- */

/* The new room's power levels: the old ones, with the upgrader raised to
 * the level sending every copied state event needs (Synapse's rule); the
 * original content is sent again last when that changed anything. */
static json_t *up_power_levels(up_ctx_t *c, const hs_room_version_t *nrv)
{
    rm_room_t *room = c->old;
    const json_t *create = rm_state_get(room, "m.room.create", "");
    const json_t *pl = rm_state_get(room, "m.room.power_levels", "");
    const json_t *plc = pl ? json_object_get(pl, "content") : NULL;
    if (!plc)
        return NULL;
    const char *uid = c->who->user_id;
    json_t *npl = json_deep_copy(plc);
    json_t *users = json_object_get(npl, "users");
    if (nrv->creators_infinite_power) {
        /* The upgrader creates the new room: unlimited power there. */
        json_object_del(users, uid);
        return npl;
    }
    if (!json_is_object(users)) {
        users = json_object();
        json_object_set_new(npl, "users", users);
    }
    int64_t needed = hs_named_power(pl, "state_default", 50);
    int64_t ban = hs_named_power(pl, "ban", 50);
    if (ban > needed)
        needed = ban;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(plc, "events"), k, v) {
        int64_t x = hs_event_required_power(pl, k, 1);
        if (x > needed)
            needed = x;
    }
    int64_t mine = hs_user_power(room->rv, create, pl, uid);
    if (mine == HS_POWER_INFINITE) {
        /* From a v12 room: a creator gets the top level there is. */
        json_object_set_new(users, uid, json_integer(needed > 100 ? needed : 100));
    } else if (mine < needed) {
        json_object_set_new(users, uid, json_integer(needed));
        c->restore_pl = json_deep_copy(plc);
        json_t *ru = json_object_get(c->restore_pl, "users");
        if (json_is_object(ru) && !json_object_get(ru, uid))
            json_object_set_new(ru, uid, json_integer(mine));
    }
    return npl;
}

static void up_create(up_ctx_t *c)
{
    rm_room_t *room = c->old;
    const hs_room_version_t *nrv = hs_room_version_get(c->new_version);
    const json_t *create = rm_state_get(room, "m.room.create", "");
    json_t *body = json_object();
    json_object_set_new(body, "room_version", json_string(c->new_version));
    json_object_set_new(body, "preset", json_string("private_chat"));
    json_t *cc = json_object();
    static const char *const keep[] = { "type", "m.federate" };
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(json_object_get(create, "content"), keep[i]);
        if (v)
            json_object_set(cc, keep[i], v);
    }
    json_object_set_new(body, "creation_content", cc);
    json_t *npl = up_power_levels(c, nrv);
    if (npl)
        json_object_set_new(body, "power_level_content_override", npl);
    static const char *const copy[] = { "m.room.join_rules", "m.room.history_visibility",
                                        "m.room.guest_access", "m.room.name", "m.room.topic",
                                        "m.room.avatar", "m.room.encryption",
                                        "m.room.server_acl", "m.room.canonical_alias" };
    json_t *initial = json_array();
    for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++) {
        const json_t *ev = rm_state_get(room, copy[i], "");
        if (ev && json_object_size(json_object_get(ev, "content")))
            json_array_append_new(initial, json_pack("{s:s, s:s, s:O}", "type", copy[i],
                                                     "state_key", "", "content",
                                                     json_object_get(ev, "content")));
    }
    json_object_set_new(body, "initial_state", initial);
    rm_create_hooks_t hooks = { .before = up_before, .extra = up_extra,
                                .submitted = up_submitted, .after = up_after, .ud = c };
    rm_create_room(c->req, c->who, body, &hooks);
    json_decref(body);
}

static void up_have_acct(int status, mx_sql_res_t *res, void *ud)
{
    up_ctx_t *c = ud;
    if (!c->req) {
        up_unref(c);
        return;
    }
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "reading account data");
        up_unref(c);
        return;
    }
    c->acct = json_array();
    for (int s = 0; res && s < c->n_reads; s++)
        for (int r = 0; r < mx_sql_nrows(res, s); r++) {
            json_t *content = json_loads(mx_sql_text(res, s, r, 3), 0, NULL);
            if (json_is_object(content))
                json_array_append_new(c->acct,
                                      json_pack("[s, s, s, o]", mx_sql_text(res, s, r, 0),
                                                mx_sql_text(res, s, r, 1),
                                                mx_sql_text(res, s, r, 2), content));
            else
                json_decref(content);
        }
    up_create(c);
    up_unref(c);
}

static void up_have_room(rm_room_t *room, int status, void *ud)
{
    up_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status))
        return;
    if (!rm_may_send_state(room, c->who->user_id, "m.room.tombstone")) {
        mx_req_error(c->req, 403, "M_FORBIDDEN", "you may not upgrade this room");
        return;
    }
    rm_room_ref(room);
    c->old = room;
    /* The local members' tags for the room and their m.direct. */
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    json_t *joined = rm_room_members(room, "join");
    size_t i;
    json_t *u;
    json_array_foreach(joined, i, u) {
        const char *uid = json_string_value(u);
        if (up_local(uid) && ++c->n_reads)
            mx_sql_add(b, "SELECT user_id, room_id, type, content FROM account_data"
                          " WHERE user_id = ? AND ((room_id = ? AND type = 'm.tag')"
                          " OR (room_id = '' AND type = 'm.direct'))", "ss", uid, room->room_id);
    }
    json_decref(joined);
    c->refs++;
    if (mx_sql_run(b, up_have_acct, c) < 0) {
        c->refs--;
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "reading account data");
    }
}

static void up_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    const char *v = json_string_value(json_object_get(body, "new_version"));
    if (!v) {
        mx_req_error(req, 400, "M_BAD_JSON", "new_version is required");
        return;
    }
    if (!hs_room_version_get(v)) {
        mx_req_error(req, 400, "M_UNSUPPORTED_ROOM_VERSION", "unsupported room version %s", v);
        return;
    }
    up_ctx_t *c = calloc(1, sizeof(*c));
    if (!c || mx_pool_on_free(mx_req_pool(req), up_pool_free, c) < 0) {
        free(c);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    c->refs = 1;
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->new_version = mx_pstrdup(mx_req_pool(req), v);
    rm_room_get(mx_req_param(req, "roomId"), up_have_room, c);
}

static int up_handler(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, up_authed, NULL);
}

int rm_upgrade_routes(void)
{
    return rm_route("POST", "/rooms/{roomId}/upgrade", up_handler, MX_ROUTE_JSON_BODY);
}
