/*
 * cl_profile.c: user profiles — GET /profile/{userId}, GET/PUT/DELETE
 * /profile/{userId}/displayname|avatar_url — and their propagation into
 * the m.room.member events of the user's joined rooms (Synapse replies only
 * once those events are sent, so clients see the new name at once).
 *
 * Rows are created by the accounts part's user_registered hook (default
 * display name: the localpart, as Synapse does); a registered user whose
 * row is not written yet (the hook runs after the registration replied)
 * reads as the default.  Deactivation hides the user from the directory
 * and, when erasing, clears the profile.
 */
#include "client.h"
#include "../accounts/accounts.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PF_MAX_DISPLAYNAME 256   /* Synapse MAX_DISPLAYNAME_LEN */
#define PF_MAX_AVATAR_URL 1000   /* Synapse MAX_AVATAR_URL_LEN */

static bool pf_is_local(const char *user_id)
{
    const char *colon = strchr(user_id, ':');
    return colon && strcmp(colon + 1, hs.server_name) == 0;
}

/* "@local:server" → "local" in `pool`. */
static char *pf_localpart(mx_pool_t *pool, const char *user_id)
{
    const char *colon = strchr(user_id, ':');
    size_t n = colon ? (size_t)(colon - user_id - 1) : strlen(user_id + 1);
    char *s = mx_palloc(pool, n + 1);
    if (s) {
        memcpy(s, user_id + 1, n);
        s[n] = '\0';
        for (char *p = s; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    return s;
}

/* ------------------------------------------------------------ loading --- */

typedef struct pf_load {
    mx_pool_t *pool;       /* owned: freed after the callback */
    char *user_id;
    hs_profile_fn cb;
    void *ud;
} pf_load_t;

static void pf_load_finish(pf_load_t *l, int status, bool found, const char *dn, const char *av)
{
    l->cb(status, found, dn, av, l->ud);
    mx_pool_free(l->pool);
}

static void pf_load_user(int status, const hs_user_row_t *u, void *ud)
{
    pf_load_t *l = ud;
    if (status < 0 || !u || u->deactivated) {
        pf_load_finish(l, status < 0 ? status : 0, false, NULL, NULL);
        return;
    }
    pf_load_finish(l, 0, true, pf_localpart(l->pool, l->user_id), NULL);
}

static void pf_load_got(int status, mx_sql_res_t *res, void *ud)
{
    pf_load_t *l = ud;
    if (status < 0) {
        pf_load_finish(l, status, false, NULL, NULL);
        return;
    }
    if (mx_sql_nrows(res, 0) > 0) {
        bool hidden = mx_sql_int(res, 0, 0, 2) != 0;
        pf_load_finish(l, 0, !hidden, mx_sql_text(res, 0, 0, 0), mx_sql_text(res, 0, 0, 1));
        return;
    }
    /* No row yet: a user whose registration hook has not written it. */
    int rc = hs_user_get(l->user_id, pf_load_user, l);
    if (rc < 0)
        pf_load_finish(l, rc, false, NULL, NULL);
}

int hs_profile_get(const char *user_id, hs_profile_fn cb, void *ud)
{
    if (!user_id || !cb)
        return -EINVAL;
    mx_pool_t *pool = mx_pool_new();
    pf_load_t *l = pool ? mx_palloc(pool, sizeof(*l)) : NULL;
    mx_sql_batch_t *b = l ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        if (pool)
            mx_pool_free(pool);
        return -ENOMEM;
    }
    l->pool = pool;
    l->user_id = mx_pstrdup(pool, user_id);
    l->cb = cb;
    l->ud = ud;
    mx_sql_add(b, "SELECT displayname, avatar_url, hidden FROM profiles WHERE user_id = ?", "s",
               user_id);
    int rc = mx_sql_run(b, pf_load_got, l);
    if (rc < 0)
        mx_pool_free(pool);
    return rc;
}

/* ---------------------------------------------------------------- GET --- */

typedef struct pf_get {
    mx_req_t *req;
    const char *field;     /* NULL: whole profile */
} pf_get_t;

static void pf_get_done(int status, bool found, const char *dn, const char *av, void *ud)
{
    pf_get_t *g = ud;
    if (status < 0) {
        hs_reply_storage_error(g->req, status, "profile read");
        return;
    }
    if (!found) {
        mx_req_error(g->req, 404, "M_NOT_FOUND", "Profile was not found");
        return;
    }
    json_t *out = json_object();
    if (!g->field || strcmp(g->field, "displayname") == 0) {
        if (dn)
            json_object_set_new(out, "displayname", json_string(dn));
    }
    if (!g->field || strcmp(g->field, "avatar_url") == 0) {
        if (av)
            json_object_set_new(out, "avatar_url", json_string(av));
    }
    /* A known user without the field: 200 {} (Synapse's displayname and
     * avatar_url endpoints; sytest reads them before setting them). */
    mx_req_reply_json(g->req, 200, out);
}

static int pf_get_h(mx_req_t *req, void *ud)
{
    const char *user_id = mx_req_param(req, "userId");
    if (!hs_is_valid_user_id(user_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid user id");
        return MX_DONE;
    }
    if (!pf_is_local(user_id)) {
        /* No federation profile queries yet. */
        mx_req_error(req, 404, "M_NOT_FOUND", "Profile was not found");
        return MX_DONE;
    }
    pf_get_t *g = mx_palloc(mx_req_pool(req), sizeof(*g));
    if (!g) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_DONE;
    }
    g->req = req;
    g->field = ud;
    int rc = hs_profile_get(user_id, pf_get_done, g);
    if (rc < 0) {
        hs_reply_storage_error(req, rc, "profile read");
        return MX_DONE;
    }
    return MX_ASYNC;
}

/* ------------------------------------------------------- propagation --- */

typedef struct pf_set {
    cl_req_t *cr;
    const char *field;     /* "displayname" or "avatar_url" */
    const char *value;     /* NULL: remove */
    char *dn, *av;         /* the profile after the write (pool) */
    int pending;           /* rooms still being updated */
} pf_set_t;

static void pf_prop_finish(pf_set_t *s)
{
    if (--s->pending == 0)
        mx_req_reply_json(s->cr->req, 200, json_object());
}

static void pf_prop_committed(int status, rm_txn_t *t, void *ud)
{
    pf_set_t *s = ud;
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "profile: member event of %s in %s not stored (%d)",
               s->cr->who->user_id, rm_txn_room(t)->room_id, status);
    pf_prop_finish(s);
}

static void pf_set_member_key(json_t *content, const char *key, const char *value)
{
    if (value)
        json_object_set_new(content, key, json_string(value));
    else
        json_object_del(content, key);
}

/* Sends the updated member event into one room (a minimal "send a state
 * event as user X" on the rooms part's pipeline). */
static void pf_prop_room(rm_room_t *room, int status, void *ud)
{
    pf_set_t *s = ud;
    const char *user_id = s->cr->who->user_id;
    if (status < 0 || !room) {
        pf_prop_finish(s);
        return;
    }
    const char *m = rm_membership(room, user_id);
    const json_t *ev = rm_state_get(room, "m.room.member", user_id);
    const json_t *old = json_object_get(ev, "content");
    if (!m || strcmp(m, "join") != 0 || !json_is_object(old)) {
        pf_prop_finish(s);
        return;
    }
    json_t *content = json_deep_copy(old);
    pf_set_member_key(content, "displayname", s->dn);
    pf_set_member_key(content, "avatar_url", s->av);
    if (json_equal(content, old)) {
        json_decref(content);
        pf_prop_finish(s);
        return;
    }
    rm_txn_t *t = rm_txn_new(room);
    if (!t) {
        json_decref(content);
        pf_prop_finish(s);
        return;
    }
    const char *eid = NULL;
    char why[256] = "";
    int rc = rm_txn_add(t, "m.room.member", user_id, user_id, content, NULL, &eid, why, sizeof(why));
    json_decref(content);
    if (rc < 0) {
        mx_log("homeserver", MX_LOG_WARN, "profile: cannot update member event of %s in %s: %s",
               user_id, room->room_id, why);
        rm_txn_abort(t);
        pf_prop_finish(s);
        return;
    }
    rm_txn_commit(t, pf_prop_committed, s);
}

static void pf_set_done(int status, mx_sql_res_t *res, void *ud)
{
    pf_set_t *s = ud;
    mx_req_t *req = s->cr->req;
    if (status < 0) {
        hs_reply_storage_error(req, status, "profile write");
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    if (mx_sql_nrows(res, 1) > 0) {
        const char *dn = mx_sql_text(res, 1, 0, 0);
        const char *av = mx_sql_text(res, 1, 0, 1);
        s->dn = dn ? mx_pstrdup(pool, dn) : NULL;
        s->av = av ? mx_pstrdup(pool, av) : NULL;
    }
    int n = mx_sql_nrows(res, 2);
    s->pending = 1;
    for (int i = 0; i < n; i++) {
        const char *room_id = mx_sql_text(res, 2, i, 0);
        if (!room_id)
            continue;
        s->pending++;
        rm_room_get(room_id, pf_prop_room, s);
    }
    pf_prop_finish(s);
}

static void pf_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    const char *field = ud;
    const char *user_id = mx_req_param(req, "userId");
    bool is_delete = strcmp(mx_req_method(req), "DELETE") == 0;
    if (!hs_is_valid_user_id(user_id)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid user id");
        return;
    }
    if (!cl_is_self(req, who, user_id, "Cannot set another user's profile"))
        return;
    if (who->is_guest && strcmp(field, "displayname") != 0) {
        mx_req_error(req, 403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed");
        return;
    }
    const char *value = NULL;
    if (!is_delete) {
        json_t *body = mx_req_json(req);
        json_t *v = json_object_get(body, field);
        if (!v) {
            mx_req_error(req, 400, "M_MISSING_PARAM", "Missing key '%s'", field);
            return;
        }
        if (!json_is_string(v)) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "'%s' must be a string", field);
            return;
        }
        value = json_string_value(v);
        size_t max = strcmp(field, "displayname") == 0 ? PF_MAX_DISPLAYNAME : PF_MAX_AVATAR_URL;
        if (strlen(value) > max) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "%s is too long (max %zu)", field, max);
            return;
        }
        if (!*value)
            value = NULL; /* "" removes the field, as in Synapse */
    }
    cl_req_t *cr = cl_req_new(req, who);
    pf_set_t *s = cr ? mx_palloc(mx_req_pool(req), sizeof(*s)) : NULL;
    mx_sql_batch_t *b = s ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        if (cr)
            mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(s, 0, sizeof(*s));
    s->cr = cr;
    s->field = field;
    s->value = value;
    const char *lp = pf_localpart(mx_req_pool(req), who->user_id);
    /* Accounts made before profiles existed have no row: the default
     * display name is the localpart. */
    if (strcmp(field, "displayname") == 0)
        mx_sql_add(b, "INSERT INTO profiles (user_id, localpart, displayname) VALUES (?, ?, ?)"
                      " ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname",
                   "sss", who->user_id, lp, value);
    else
        mx_sql_add(b, "INSERT INTO profiles (user_id, localpart, displayname, avatar_url)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE"
                      " SET avatar_url = excluded.avatar_url",
                   "ssss", who->user_id, lp, lp, value);
    mx_sql_add(b, "SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", "s",
               who->user_id);
    mx_sql_add(b, "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'",
               "s", who->user_id);
    int rc = mx_sql_run(b, pf_set_done, s);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "profile write");
}

static int pf_put_h(mx_req_t *req, void *ud)
{
    /* Guests may set their display name (Synapse), nothing else. */
    return hs_require_auth_ex(req, true, pf_put_authed, ud);
}

/* -------------------------------------------------------------- hooks --- */

/* A new account's profile row (display name: the one asked for, else the
 * localpart, as Synapse), written in the registration's transaction. */
static void pf_user_creating(mx_sql_batch_t *b, const char *user_id, const char *displayname,
                             bool is_guest)
{
    (void)is_guest;
    mx_pool_t *pool = mx_pool_new();
    char *lp = pool ? pf_localpart(pool, user_id) : NULL;
    if (lp)
        mx_sql_add(b, "INSERT INTO profiles (user_id, localpart, displayname) VALUES (?, ?, ?)"
                      " ON CONFLICT (user_id) DO NOTHING",
                   "sss", user_id, lp, displayname && *displayname ? displayname : lp);
    else
        mx_log("homeserver", MX_LOG_ERROR, "profile: cannot create the profile of %s", user_id);
    if (pool)
        mx_pool_free(pool);
}

/* Deactivation hides the profile (erase: forgets it), in the
 * deactivation's transaction. */
static void pf_user_deactivating(mx_sql_batch_t *b, const char *user_id, bool erase)
{
    if (erase)
        mx_sql_add(b, "UPDATE profiles SET hidden = 1, displayname = NULL, avatar_url = NULL"
                      " WHERE user_id = ?", "s", user_id);
    else
        mx_sql_add(b, "UPDATE profiles SET hidden = 1 WHERE user_id = ?", "s", user_id);
}

static const hs_accounts_hooks_t pf_hooks = {
    .user_creating = pf_user_creating,
    .user_deactivating = pf_user_deactivating,
};

int cl_profile_start(void)
{
    static const char *const fields[] = { "displayname", "avatar_url" };
    int rc = hs_accounts_add_hooks(&pf_hooks);
    if (rc < 0)
        return rc;
    if ((rc = cl_route("GET", "/profile/{userId}", pf_get_h, 0)) < 0)
        return rc;
    for (size_t i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/profile/{userId}/%s", fields[i]);
        void *ud = (void *)fields[i];
        static const char *const prefixes[] = { "/_matrix/client/v3", "/_matrix/client/r0" };
        for (size_t j = 0; j < 2; j++) {
            char full[128];
            snprintf(full, sizeof(full), "%s%s", prefixes[j], path);
            if ((rc = mx_route_add("client", "GET", full, pf_get_h, ud, 0)) < 0 ||
                (rc = mx_route_add("client", "PUT", full, pf_put_h, ud, MX_ROUTE_JSON_BODY)) < 0 ||
                (rc = mx_route_add("client", "DELETE", full, pf_put_h, ud, 0)) < 0)
                return rc;
        }
    }
    return 0;
}
