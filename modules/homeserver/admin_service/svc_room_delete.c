/*
 * svc_room_delete.c: room deletion in the background (Synapse's DELETE
 * /_synapse/admin/v2/rooms/{roomId}) and its status.
 *
 * A deletion goes: shutting_down (block the room when asked, make every
 * local member leave through the rooms pipeline, drop the room's local
 * aliases and directory entry, or with new_room_user_id move the members
 * and aliases to a new room that user makes) → purging (when purge is asked: delete the
 * room's events, state and memberships in one write batch and drop it from
 * the room cache) → complete, or failed with an error.  Each step starts
 * only after the previous one committed.  Deletions are kept in memory with
 * their outcome for as long as the process runs, like Synapse's.
 */
#include "svc.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct svc_delete {
    svc_delete_t *next;
    char delete_id[40];
    char *room_id;
    char *requester;
    const char *status;        /* shutting_down, purging, complete, failed */
    char *error;
    bool block, purge;
    json_t *kicked, *failed, *aliases;
    /* With new_room_user_id: the room the members are moved to. */
    char *new_user, *new_name, *new_message, *new_room_id;
    /* The caller of a synchronous (v1) deletion, answered at the end. */
    hs_admin_done_fn wait_cb;
    void *wait_ud;
};

static json_t *svc_delete_json(const svc_delete_t *d, bool with_id)
{
    json_t *o = json_pack("{s:s, s:{s:O, s:O, s:O, s:o}}", "status", d->status, "shutdown_room",
                          "kicked_users", d->kicked, "failed_to_kick_users", d->failed,
                          "local_aliases", d->aliases, "new_room_id",
                          d->new_room_id ? json_string(d->new_room_id) : json_null());
    if (with_id) {
        json_object_set_new(o, "delete_id", json_string(d->delete_id));
        json_object_set_new(o, "room_id", json_string(d->room_id));
    }
    if (d->error)
        json_object_set_new(o, "error", json_string(d->error));
    return o;
}

static void svc_delete_end(svc_delete_t *d, const char *error)
{
    d->status = error ? "failed" : "complete";
    if (error) {
        free(d->error);
        d->error = strdup(error);
        mx_log("homeserver", MX_LOG_ERROR, "admin: deleting %s failed: %s", d->room_id, error);
    } else {
        mx_log("homeserver", MX_LOG_INFO, "admin: room %s deleted (%zu users left)", d->room_id,
               json_array_size(d->kicked));
    }
    if (d->wait_cb) {
        hs_admin_done_fn cb = d->wait_cb;
        d->wait_cb = NULL;
        if (error)
            cb(MX_EDB, json_pack("{s:s, s:s}", "errcode", "M_UNKNOWN", "error", error),
               d->wait_ud);
        else {
            json_t *all = svc_delete_json(d, false);
            json_t *sr = json_incref(json_object_get(all, "shutdown_room"));
            json_decref(all);
            cb(0, sr, d->wait_ud);
        }
    }
}

/* ------------------------------------------------------------- purge --- */

static void svc_purged(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_end(d, res ? mx_sql_errmsg(res) : "storage error");
        return;
    }
    rm_room_t *r = rm_room_cached(d->room_id);
    if (r)
        rm_room_drop(r);
    svc_delete_end(d, NULL);
}

static void svc_purge(svc_delete_t *d)
{
    d->status = "purging";
    /* The cached copy must not serve the room while its rows go. */
    rm_room_t *r = rm_room_cached(d->room_id);
    if (r)
        rm_room_drop(r);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_delete_end(d, "out of memory");
        return;
    }
    const char *rid = d->room_id;
    mx_sql_add(b, "DELETE FROM event_to_state_group WHERE event_id IN"
                  " (SELECT event_id FROM events WHERE room_id = ?)", "s", rid);
    mx_sql_add(b, "DELETE FROM state_group_entries WHERE group_id IN"
                  " (SELECT id FROM state_groups WHERE room_id = ?)", "s", rid);
    mx_sql_add(b, "DELETE FROM state_groups WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM current_state WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM room_extremities WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM room_memberships WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM event_txns WHERE event_id IN"
                  " (SELECT event_id FROM events WHERE room_id = ?)", "s", rid);
    mx_sql_add(b, "DELETE FROM events WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM room_aliases WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM receipts WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM account_data WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM event_push_actions WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM rooms WHERE room_id = ?", "s", rid);
    if (mx_sql_run(b, svc_purged, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_end(d, "storage error");
    }
}

/* ---------------------------------------------------------- shutdown --- */

static void svc_aliases_dropped(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_end(d, res ? mx_sql_errmsg(res) : "storage error");
        return;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(d->aliases, json_string(mx_sql_text(res, 0, i, 0)));
    if (d->purge)
        svc_purge(d);
    else
        svc_delete_end(d, NULL);
}

/* Drops the room's aliases, or points them at the new room. */
static void svc_drop_aliases(svc_delete_t *d)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_delete_end(d, "out of memory");
        return;
    }
    if (d->new_room_id)
        mx_sql_add(b, "UPDATE room_aliases SET room_id = ? WHERE room_id = ? RETURNING alias",
                   "ss", d->new_room_id, d->room_id);
    else
        mx_sql_add(b, "DELETE FROM room_aliases WHERE room_id = ? RETURNING alias", "s",
                   d->room_id);
    mx_sql_add(b, "UPDATE rooms SET is_public = 0 WHERE room_id = ?", "s", d->room_id);
    if (mx_sql_run(b, svc_aliases_dropped, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_end(d, "storage error");
    }
}

static void svc_new_room_made(int status, const char *room_id, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_end(d, "cannot create the new room");
        return;
    }
    d->new_room_id = strdup(room_id);
    svc_drop_aliases(d);
}

static void svc_members_left(int status, json_t *left, json_t *failed, void *ud)
{
    svc_delete_t *d = ud;
    if (left)
        json_array_extend(d->kicked, left);
    if (failed)
        json_array_extend(d->failed, failed);
    if (status < 0 && status != -ENOENT)
        mx_log("homeserver", MX_LOG_WARN, "admin: members of %s could not all leave (%d)",
               d->room_id, status);
    if (!d->new_user) {
        svc_drop_aliases(d);
        return;
    }
    /* Synapse's replacement room: made by new_room_user_id, the members who
     * left joined to it, nobody else may speak. */
    json_t *join = json_array();
    size_t i;
    json_t *u;
    json_array_foreach(d->kicked, i, u)
        if (strcmp(json_string_value(u), d->new_user) != 0)
            json_array_append(join, u);
    svc_newroom_t o = {
        .creator = d->new_user,
        .name = d->new_name ? d->new_name : "Content Violation Notification",
        .users_default = -10,
        .join = join,
        .message = d->new_message ? d->new_message
                                  : "Sharing illegal content on this server is not permitted"
                                    " and rooms in violation will be blocked.",
    };
    int rc = svc_new_room(&o, svc_new_room_made, d);
    json_decref(join);
    if (rc < 0)
        svc_delete_end(d, "cannot create the new room");
}

static void svc_blocked(int status, json_t *result, void *ud)
{
    svc_delete_t *d = ud;
    json_decref(result);
    if (status < 0) {
        svc_delete_end(d, "cannot block the room");
        return;
    }
    svc_leave_room(d->room_id, NULL, svc_members_left, d);
}

static void svc_delete_go(svc_delete_t *d)
{
    if (d->block) {
        int rc = svc_room_block(d->room_id, 1, d->requester, svc_blocked, d);
        if (rc < 0)
            svc_delete_end(d, "cannot block the room");
        return;
    }
    svc_leave_room(d->room_id, NULL, svc_members_left, d);
}

/* ------------------------------------------------------------- start --- */

static svc_delete_t *svc_delete_active(const char *room_id)
{
    for (svc_delete_t *d = svc->deletes; d; d = d->next)
        if (!strcmp(d->room_id, room_id) && strcmp(d->status, "complete") &&
            strcmp(d->status, "failed"))
            return d;
    return NULL;
}

static void svc_delete_checked(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    bool exists = mx_sql_nrows(res, 0) > 0;
    bool block = svc_qbool(c->args, "block") == 1;
    if (!exists && !block) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "Unknown room id %s", c->room_id);
        return;
    }
    if (svc_delete_active(c->room_id)) {
        svc_fail(c, -EEXIST, "M_UNKNOWN", "History purge already in progress for %s",
                 c->room_id);
        return;
    }
    svc_delete_t *d = calloc(1, sizeof(*d));
    if (d) {
        d->room_id = strdup(c->room_id);
        d->requester = svc_qstr(c->args, "requester") ? strdup(svc_qstr(c->args, "requester"))
                                                      : NULL;
        const char *nu = svc_qstr(c->args, "new_room_user_id");
        const char *nn = svc_qstr(c->args, "room_name"), *nm = svc_qstr(c->args, "message");
        d->new_user = nu && exists ? strdup(nu) : NULL;
        d->new_name = nn ? strdup(nn) : NULL;
        d->new_message = nm ? strdup(nm) : NULL;
        d->kicked = json_array();
        d->failed = json_array();
        d->aliases = json_array();
    }
    if (!d || !d->room_id || !d->kicked || !d->failed || !d->aliases) {
        if (d) {
            free(d->room_id);
            free(d->requester);
            free(d->new_user);
            free(d->new_name);
            free(d->new_message);
            json_decref(d->kicked);
            json_decref(d->failed);
            json_decref(d->aliases);
            free(d);
        }
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    char *rnd = mx_random_string(16);
    snprintf(d->delete_id, sizeof(d->delete_id), "%s", rnd ? rnd : "x");
    free(rnd);
    d->status = "shutting_down";
    d->block = block;
    d->purge = exists && svc_qbool(c->args, "purge") != 0;
    d->next = svc->deletes;
    svc->deletes = d;
    bool wait = svc_qbool(c->args, "wait") == 1;
    if (wait) {
        d->wait_cb = c->cb;
        d->wait_ud = c->ud;
        c->cb = NULL;
        svc_call_free(c);
    } else {
        svc_finish(c, 0, json_pack("{s:s}", "delete_id", d->delete_id));
    }
    /* A room we do not know is only blocked (nobody to kick, no rows). */
    svc_delete_go(d);
}

int svc_delete_room(const char *room_id, const json_t *opts, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->room_id = mx_pstrdup(c->pool, room_id);
    c->args = opts ? json_deep_copy(opts) : json_object();
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT 1 FROM rooms WHERE room_id = ?", "s", room_id);
    return svc_run_raw(c, b, svc_delete_checked);
}

int svc_delete_status(const char *room_id, const char *delete_id, hs_admin_done_fn cb, void *ud)
{
    if (delete_id) {
        for (svc_delete_t *d = svc->deletes; d; d = d->next)
            if (!strcmp(d->delete_id, delete_id)) {
                cb(0, svc_delete_json(d, false), ud);
                return 0;
            }
        cb(-ENOENT, json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error",
                              "delete id not found"), ud);
        return 0;
    }
    json_t *results = json_array();
    for (svc_delete_t *d = svc->deletes; d; d = d->next)
        if (room_id && !strcmp(d->room_id, room_id))
            json_array_append_new(results, svc_delete_json(d, true));
    if (json_array_size(results) == 0) {
        json_decref(results);
        cb(-ENOENT, json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error",
                              "No delete task for room_id found"), ud);
        return 0;
    }
    cb(0, json_pack("{s:o}", "results", results), ud);
    return 0;
}

void svc_deletes_free(void)
{
    if (!svc)
        return;
    svc_delete_t *d = svc->deletes;
    while (d) {
        svc_delete_t *n = d->next;
        free(d->room_id);
        free(d->requester);
        free(d->error);
        free(d->new_user);
        free(d->new_name);
        free(d->new_message);
        free(d->new_room_id);
        json_decref(d->kicked);
        json_decref(d->failed);
        json_decref(d->aliases);
        free(d);
        d = n;
    }
    svc->deletes = NULL;
}
