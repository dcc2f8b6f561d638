/*
 * svc_room_delete.c: room deletion in the background (Synapse's DELETE
 * /_synapse/admin/v2/rooms/{roomId}), resumable, and its status.
 *
 * A deletion is a row of `room_delete_jobs` (its parameters, status and
 * progress) written before the request is answered, and goes:
 *   shutting_down: block the room when asked, make every local member leave
 *     through the rooms pipeline (one commit; who left is saved next), with
 *     new_room_user_id move the members and aliases to a new room that user
 *     makes (its ID saved as soon as it exists), then drop the room's local
 *     aliases and directory entry in the write that moves the job on;
 *   purging (when purge is asked): the room's events go in steps of
 *     `admin: room_delete_step` events (the same statements as purge
 *     history, svc_purge.c), each step one write batch that also moves the
 *     job's `done_upto` and `events_purged`; the last batch deletes what is
 *     left (state, memberships, receipts, the room) and marks it complete;
 *   complete, or failed with an error.
 * Each step starts only after the previous one committed, so a deletion cut
 * by a crash resumes at start (svc_delete_resume) from its last commit:
 * leaving again is harmless (who is gone is not kicked twice), and the
 * purge walk continues after `done_upto`.  Status by room or by delete ID is
 * read from the table, so it survives restarts.
 *
 * `admin: test_room_delete_step_delay_ms` (tests only) waits between purge
 * steps so that a test can kill the process half-way.
 */
#include "svc.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define SVC_DELETE_STEP 1000
/* Below every stream position, outliers of a history purge included. */
#define SVC_DELETE_START (-(INT64_C(1) << 62))

/* One deletion running in this process (listed in svc->deletes). */
struct svc_delete {
    svc_delete_t *next;
    char *delete_id, *room_id, *requester;
    const char *status;        /* shutting_down, purging */
    const char *error;         /* why it failed (static text) */
    bool block, purge, force;
    json_t *kicked, *failed, *aliases;
    char *new_user, *new_name, *new_message, *new_room_id;
    int64_t done;              /* purge: events up to here are gone */
    int64_t hi, n;             /* the step being written */
    uv_timer_t *timer;         /* between steps (test delay), or NULL */
    /* The caller of a synchronous (v1) deletion, answered at the end. */
    hs_admin_done_fn wait_cb;
    void *wait_ud;
};

static char *svc_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void svc_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void svc_delete_free(svc_delete_t *d)
{
    for (svc_delete_t **pp = &svc->deletes; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    if (d->timer)
        uv_close((uv_handle_t *)d->timer, svc_timer_closed);
    free(d->delete_id);
    free(d->room_id);
    free(d->requester);
    free(d->new_user);
    free(d->new_name);
    free(d->new_message);
    free(d->new_room_id);
    json_decref(d->kicked);
    json_decref(d->failed);
    json_decref(d->aliases);
    free(d);
}

void svc_deletes_free(void)
{
    while (svc && svc->deletes)
        svc_delete_free(svc->deletes);
}

/* A value of the `admin:` config section (read by the admin module). */
static int64_t svc_delete_conf(const char *key, int64_t def)
{
    const json_t *v = json_object_get(json_object_get(mx_server_conf()->root, "admin"), key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : def;
}

static char *svc_dump(const json_t *a)
{
    return json_dumps(a, JSON_COMPACT);
}

/* ---------------------------------------------------------------- end --- */

/* Answers a waiting (v1) caller and forgets the job. */
static void svc_delete_done(svc_delete_t *d, const char *error)
{
    if (error)
        mx_log("homeserver", MX_LOG_ERROR, "admin: deleting %s failed: %s", d->room_id, error);
    else
        mx_log("homeserver", MX_LOG_INFO, "admin: room %s deleted (%zu users left)", d->room_id,
               json_array_size(d->kicked));
    hs_admin_done_fn cb = d->wait_cb;
    if (cb && error)
        cb(MX_EDB, json_pack("{s:s, s:s}", "errcode", "M_UNKNOWN", "error", error), d->wait_ud);
    else if (cb)
        cb(0, json_pack("{s:O, s:O, s:O, s:o}", "kicked_users", d->kicked,
                        "failed_to_kick_users", d->failed, "local_aliases", d->aliases,
                        "new_room_id", d->new_room_id ? json_string(d->new_room_id)
                                                      : json_null()),
           d->wait_ud);
    svc_delete_free(d);
}

static void svc_fail_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)status;
    (void)res;
    svc_delete_t *d = ud;
    svc_delete_done(d, d->error);
}

/* Marks the job failed with `error` (static text), then answers and
 * forgets it. */
static void svc_delete_fail(svc_delete_t *d, const char *error)
{
    d->error = error;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        mx_sql_add(b, "UPDATE room_delete_jobs SET status = 'failed', error = ?"
                      " WHERE delete_id = ?", "ss", error, d->delete_id);
        if (mx_sql_run(b, svc_fail_written, d) == 0)
            return;
        mx_sql_batch_free(b);
    }
    svc_delete_done(d, error);
}

/* Storage failures: the message of `res` is not static, so log it here. */
static void svc_delete_dberr(svc_delete_t *d, const mx_sql_res_t *res)
{
    mx_log("homeserver", MX_LOG_ERROR, "admin: deletion %s: %s", d->delete_id,
           res ? mx_sql_errmsg(res) : "storage error");
    svc_delete_fail(d, "storage error");
}

/* ------------------------------------------------------------- purge --- */

static void svc_purge_step(svc_delete_t *d);

static void svc_step_timer(uv_timer_t *t)
{
    svc_purge_step(t->data);
}

static void svc_purge_next(svc_delete_t *d)
{
    int64_t delay = svc_delete_conf("test_room_delete_step_delay_ms", 0);
    if (delay <= 0) {
        svc_purge_step(d);
        return;
    }
    if (!d->timer) {
        d->timer = malloc(sizeof(*d->timer));
        if (!d->timer || uv_timer_init(mx_loop(), d->timer) < 0) {
            free(d->timer);
            d->timer = NULL;
            svc_purge_step(d);
            return;
        }
        d->timer->data = d;
    }
    uv_timer_start(d->timer, svc_step_timer, (uint64_t)delay, 0);
}

static void svc_purge_finished(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_dberr(d, res);
        return;
    }
    rm_room_t *r = rm_room_cached(d->room_id);
    if (r)
        rm_room_drop(r);
    svc_rlx_drop(d->room_id); /* the room list's summaries */
    svc_delete_done(d, NULL);
}

/* The last step: everything of the room that is not an event row. */
static void svc_purge_rest(svc_delete_t *d)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_delete_fail(d, "out of memory");
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
    mx_sql_add(b, "DELETE FROM purged_events WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM room_aliases WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM receipts WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM account_data WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM event_push_actions WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM rooms WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "DELETE FROM room_list_rooms WHERE room_id = ?", "s", rid);
    mx_sql_add(b, "UPDATE room_delete_jobs SET status = 'complete' WHERE delete_id = ?", "s",
               d->delete_id);
    if (mx_sql_run(b, svc_purge_finished, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_fail(d, "storage error");
    }
}

static void svc_step_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_dberr(d, res);
        return;
    }
    d->done = d->hi;
    svc_purge_next(d);
}

static void svc_step_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_dberr(d, res);
        return;
    }
    if (mx_sql_is_null(res, 0, 0, 0)) {
        svc_purge_rest(d);
        return;
    }
    d->hi = mx_sql_int(res, 0, 0, 0);
    d->n = mx_sql_int(res, 0, 0, 1);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_delete_fail(d, "out of memory");
        return;
    }
    svc_events_delete_add(b, d->room_id, d->done, d->hi, false);
    mx_sql_add(b, "UPDATE room_delete_jobs SET done_upto = ?, events_purged = events_purged + ?"
                  " WHERE delete_id = ?", "iis", d->hi, d->n, d->delete_id);
    if (mx_sql_run(b, svc_step_written, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_fail(d, "storage error");
    }
}

static void svc_purge_step(svc_delete_t *d)
{
    /* The cached copy must not serve the room while its rows go. */
    rm_room_t *r = rm_room_cached(d->room_id);
    if (r)
        rm_room_drop(r);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        svc_delete_fail(d, "out of memory");
        return;
    }
    int64_t step = svc_delete_conf("room_delete_step", SVC_DELETE_STEP);
    svc_events_next_add(b, d->room_id, d->done, INT64_MAX, step > 0 ? step : SVC_DELETE_STEP);
    if (mx_sql_run(b, svc_step_read, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_fail(d, "storage error");
    }
}

/* ---------------------------------------------------------- shutdown --- */

static void svc_shutdown_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_dberr(d, res);
        return;
    }
    if (!d->purge) {
        svc_delete_done(d, NULL);
        return;
    }
    d->status = "purging";
    svc_purge_step(d);
}

/* Drops the room's aliases (or points them at the new room) and moves the
 * job on, in one write. */
static void svc_aliases_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_dberr(d, res);
        return;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(d->aliases, json_string(mx_sql_text(res, 0, i, 0)));
    /* Synapse purges only when nobody local is left, unless force_purge. */
    if (d->purge && json_array_size(d->failed) > 0 && !d->force) {
        svc_delete_fail(d, "Users are still joined to this room");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    char *aliases = svc_dump(d->aliases);
    if (!b || !aliases) {
        free(aliases);
        mx_sql_batch_free(b);
        svc_delete_fail(d, "out of memory");
        return;
    }
    if (d->new_room_id)
        mx_sql_add(b, "UPDATE room_aliases SET room_id = ? WHERE room_id = ?", "ss",
                   d->new_room_id, d->room_id);
    else
        mx_sql_add(b, "DELETE FROM room_aliases WHERE room_id = ?", "s", d->room_id);
    mx_sql_add(b, "UPDATE rooms SET is_public = 0 WHERE room_id = ?", "s", d->room_id);
    mx_sql_add(b, "UPDATE room_delete_jobs SET status = ?, aliases = ?, events_total ="
                  " (SELECT COUNT(*) FROM events WHERE room_id = ?) WHERE delete_id = ?",
               "ssss", d->purge ? "purging" : "complete", aliases, d->room_id, d->delete_id);
    free(aliases);
    if (mx_sql_run(b, svc_shutdown_written, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_fail(d, "storage error");
    }
}

static void svc_drop_aliases(svc_delete_t *d)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        svc_delete_fail(d, "out of memory");
        return;
    }
    mx_sql_add(b, "SELECT alias FROM room_aliases WHERE room_id = ? ORDER BY alias", "s",
               d->room_id);
    if (mx_sql_run(b, svc_aliases_read, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_fail(d, "storage error");
    }
}

static void svc_saved_then_aliases(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_dberr(d, res);
        return;
    }
    svc_drop_aliases(d);
}

static void svc_new_room_made(int status, const char *room_id, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0 || !(d->new_room_id = strdup(room_id))) {
        svc_delete_fail(d, "cannot create the new room");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_delete_fail(d, "out of memory");
        return;
    }
    mx_sql_add(b, "UPDATE room_delete_jobs SET new_room_id = ? WHERE delete_id = ?", "ss",
               d->new_room_id, d->delete_id);
    if (mx_sql_run(b, svc_saved_then_aliases, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_fail(d, "storage error");
    }
}

/* Synapse's replacement room: made by new_room_user_id, the members who
 * left joined to it, nobody else may speak. */
static void svc_make_new_room(svc_delete_t *d)
{
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
        svc_delete_fail(d, "cannot create the new room");
}

static void svc_kicked_saved(int status, mx_sql_res_t *res, void *ud)
{
    svc_delete_t *d = ud;
    if (status < 0) {
        svc_delete_dberr(d, res);
        return;
    }
    if (d->new_user && !d->new_room_id)
        svc_make_new_room(d);
    else
        svc_drop_aliases(d);
}

static void svc_members_left(int status, json_t *left, json_t *failed, void *ud)
{
    svc_delete_t *d = ud;
    size_t i;
    json_t *u;
    /* After a restart `kicked` holds who left before it: keep them once. */
    json_array_foreach(left, i, u) {
        size_t k;
        json_t *v;
        bool seen = false;
        json_array_foreach(d->kicked, k, v)
            seen = seen || json_equal(u, v);
        if (!seen)
            json_array_append(d->kicked, u);
    }
    json_array_clear(d->failed);
    if (failed)
        json_array_extend(d->failed, failed);
    if (status < 0 && status != -ENOENT)
        mx_log("homeserver", MX_LOG_WARN, "admin: members of %s could not all leave (%d)",
               d->room_id, status);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    char *kicked = svc_dump(d->kicked), *fails = svc_dump(d->failed);
    if (b && kicked && fails)
        mx_sql_add(b, "UPDATE room_delete_jobs SET kicked = ?, failed = ? WHERE delete_id = ?",
                   "sss", kicked, fails, d->delete_id);
    free(kicked);
    free(fails);
    if (!b || !kicked || !fails || mx_sql_run(b, svc_kicked_saved, d) < 0) {
        mx_sql_batch_free(b);
        svc_delete_fail(d, "storage error");
    }
}

static void svc_blocked(int status, json_t *result, void *ud)
{
    svc_delete_t *d = ud;
    json_decref(result);
    if (status < 0) {
        svc_delete_fail(d, "cannot block the room");
        return;
    }
    svc_leave_room(d->room_id, NULL, svc_members_left, d);
}

static void svc_delete_go(svc_delete_t *d)
{
    if (!strcmp(d->status, "purging")) {
        svc_purge_step(d);
        return;
    }
    if (d->block) {
        if (svc_room_block(d->room_id, 1, d->requester, svc_blocked, d) < 0)
            svc_delete_fail(d, "cannot block the room");
        return;
    }
    svc_leave_room(d->room_id, NULL, svc_members_left, d);
}

/* ------------------------------------------------------------- start --- */

/* A job from its parameters (strings copied); listed in svc->deletes. */
static svc_delete_t *svc_delete_new(const char *delete_id, const char *room_id,
                                    const char *requester, const char *new_user,
                                    const char *new_name, const char *new_message)
{
    svc_delete_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->next = svc->deletes;
    svc->deletes = d;
    d->status = "shutting_down";
    d->done = SVC_DELETE_START;
    d->delete_id = svc_dup(delete_id);
    d->room_id = svc_dup(room_id);
    d->requester = svc_dup(requester);
    d->new_user = svc_dup(new_user);
    d->new_name = svc_dup(new_name);
    d->new_message = svc_dup(new_message);
    d->kicked = json_array();
    d->failed = json_array();
    d->aliases = json_array();
    if (!d->delete_id || !d->room_id || (requester && !d->requester) ||
        (new_user && !d->new_user) || (new_name && !d->new_name) ||
        (new_message && !d->new_message) || !d->kicked || !d->failed || !d->aliases) {
        svc_delete_free(d);
        return NULL;
    }
    return d;
}

static svc_delete_t *svc_delete_active(const char *room_id)
{
    for (svc_delete_t *d = svc->deletes; d; d = d->next)
        if (!strcmp(d->room_id, room_id))
            return d;
    return NULL;
}

static void svc_delete_inserted(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    svc_delete_t *d = c->priv;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "admin: cannot record deletion of %s: %s",
               d->room_id, res ? mx_sql_errmsg(res) : "?");
        svc_delete_free(d);
        svc_finish(c, status, NULL);
        return;
    }
    if (c->flag) {
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
    char *rnd = mx_random_string(16);
    const char *nu = exists ? svc_qstr(c->args, "new_room_user_id") : NULL;
    svc_delete_t *d = rnd ? svc_delete_new(rnd, c->room_id, svc_qstr(c->args, "requester"), nu,
                                           svc_qstr(c->args, "room_name"),
                                           svc_qstr(c->args, "message"))
                          : NULL;
    free(rnd);
    mx_sql_batch_t *b = d ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        if (d)
            svc_delete_free(d);
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    d->block = block;
    d->purge = exists && svc_qbool(c->args, "purge") != 0;
    d->force = svc_qbool(c->args, "force_purge") == 1;
    c->flag = svc_qbool(c->args, "wait") == 1;
    c->priv = d;
    mx_sql_add(b, "INSERT INTO room_delete_jobs (delete_id, room_id, requester, block, purge,"
                  " force_purge, new_room_user_id, room_name, message, status, done_upto, ts)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'shutting_down', ?, ?)",
               "sssiiisssii", d->delete_id, d->room_id, d->requester, (int64_t)d->block,
               (int64_t)d->purge, (int64_t)d->force, d->new_user, d->new_name, d->new_message,
               d->done, (int64_t)mx_now_ms());
    if (mx_sql_run(b, svc_delete_inserted, c) < 0) {
        mx_sql_batch_free(b);
        svc_delete_free(d);
        svc_finish(c, -ENOMEM, NULL);
    }
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

#define SVC_DELETE_COLS                                                                    \
    "delete_id, room_id, requester, block, purge, force_purge, new_room_user_id,"         \
    " room_name, message, status, kicked, failed, aliases, new_room_id, done_upto,"       \
    " error, events_purged, events_total"

static json_t *svc_col_json(const mx_sql_res_t *res, int row, int col)
{
    json_t *a = json_loads(mx_sql_text(res, 0, row, col), 0, NULL);
    return json_is_array(a) ? a : (json_decref(a), json_array());
}

int svc_delete_resume(void)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT " SVC_DELETE_COLS " FROM room_delete_jobs"
                  " WHERE status IN ('shutting_down', 'purging') ORDER BY ts", "");
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    for (int i = 0; rc == 0 && i < mx_sql_nrows(res, 0); i++) {
#define COL(k) (mx_sql_is_null(res, 0, i, k) ? NULL : mx_sql_text(res, 0, i, k))
        svc_delete_t *d = svc_delete_new(COL(0), COL(1), COL(2), COL(6), COL(7), COL(8));
        if (!d) {
            rc = -ENOMEM;
            break;
        }
        d->new_room_id = svc_dup(COL(13));
#undef COL
        d->block = mx_sql_int(res, 0, i, 3) != 0;
        d->purge = mx_sql_int(res, 0, i, 4) != 0;
        d->force = mx_sql_int(res, 0, i, 5) != 0;
        d->status = strcmp(mx_sql_text(res, 0, i, 9), "purging") ? "shutting_down" : "purging";
        json_decref(d->kicked);
        json_decref(d->failed);
        json_decref(d->aliases);
        d->kicked = svc_col_json(res, i, 10);
        d->failed = svc_col_json(res, i, 11);
        d->aliases = svc_col_json(res, i, 12);
        d->done = mx_sql_int(res, 0, i, 14);
        mx_log("homeserver", MX_LOG_INFO, "admin: resuming deletion %s of %s (%s)",
               d->delete_id, d->room_id, d->status);
        svc_delete_go(d);
    }
    if (res)
        mx_sql_res_free(res);
    return rc;
}

/* ------------------------------------------------------------ status --- */

/* Synapse's status object, plus `progress` (events purged out of the
 * room's count when purging began). */
static json_t *svc_delete_json(const mx_sql_res_t *res, int i, bool with_room)
{
    json_t *o = json_pack("{s:s, s:s, s:{s:o, s:o, s:o, s:o}, s:{s:I, s:o}}", "delete_id",
                          mx_sql_text(res, 0, i, 0), "status", mx_sql_text(res, 0, i, 9),
                          "shutdown_room", "kicked_users", svc_col_json(res, i, 10),
                          "failed_to_kick_users", svc_col_json(res, i, 11), "local_aliases",
                          svc_col_json(res, i, 12), "new_room_id", svc_col_str(res, 0, i, 13),
                          "progress", "events_purged", (json_int_t)mx_sql_int(res, 0, i, 16),
                          "events_total", svc_col_int(res, 0, i, 17));
    if (o && with_room)
        json_object_set_new(o, "room_id", json_string(mx_sql_text(res, 0, i, 1)));
    if (o && !mx_sql_is_null(res, 0, i, 15))
        json_object_set_new(o, "error", json_string(mx_sql_text(res, 0, i, 15)));
    return o;
}

static json_t *svc_status_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    int n = mx_sql_nrows(res, 0);
    if (n < 1) {
        *status = -ENOENT;
        return json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error",
                         c->room_id ? "No delete task for room_id found"
                                    : "delete id not found");
    }
    if (!c->room_id)
        return svc_delete_json(res, 0, false);
    json_t *results = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(results, svc_delete_json(res, i, true));
    return json_pack("{s:o}", "results", results);
}

int svc_delete_status(const char *room_id, const char *delete_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b && room_id) {
        c->room_id = mx_pstrdup(c->pool, room_id);
        mx_sql_add(b, "SELECT " SVC_DELETE_COLS " FROM room_delete_jobs WHERE room_id = ?"
                      " ORDER BY ts DESC, delete_id", "s", room_id);
    } else if (b) {
        mx_sql_add(b, "SELECT " SVC_DELETE_COLS " FROM room_delete_jobs WHERE delete_id = ?",
                   "s", delete_id ? delete_id : "");
    }
    return svc_run(c, b, svc_status_built);
}
