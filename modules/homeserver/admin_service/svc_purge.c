/*
 * svc_purge.c: purge history (Synapse's POST /_synapse/admin/v1/
 * purge_history/{roomId}[/{eventId}]) and its status.
 *
 * A purge is a row of `purge_jobs`: the room, the stream position before
 * which events go (`upto`, exclusive), how far it got (`done_upto`) and its
 * status.  It runs in steps of SVC_PURGE_STEP events, each step one write
 * batch that also moves `done_upto`, so a purge cut by a restart picks up
 * where it stopped (hs_admin_service_start calls svc_purge_resume).
 *
 * What goes: every event of the room before `upto` except the current
 * state (the room needs it).  As with Synapse, state events are never
 * thrown away, only taken out of the timeline, and neither are local
 * events (event IDs naming this server, room versions 1-2) unless
 * delete_local_events: those are copied into `purged_events` first.  The
 * current state events become outliers: their stream positions move below
 * zero (order kept), where neither /sync nor /messages reads, while state
 * groups and memberships still resolve them.  The
 * event's rows in the other tables (transaction IDs, push actions,
 * relations, search, state group links) go with it.  The newest event of
 * the room is always kept.  The step query and the event-range deletion
 * (svc_events_next_add, svc_events_delete_add) serve room deletion too.
 */
#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SVC_PURGE_STEP 500

typedef struct svc_purge {
    char *purge_id, *room_id;
    int64_t upto, done;
    bool delete_local;
    int64_t hi;                /* end of the step being written */
} svc_purge_t;

static void svc_purge_free(svc_purge_t *p)
{
    free(p->purge_id);
    free(p->room_id);
    free(p);
}

static void svc_purge_step(svc_purge_t *p);

static void svc_purge_failed(svc_purge_t *p, const char *why)
{
    mx_log("homeserver", MX_LOG_ERROR, "admin: purge %s of %s failed: %s", p->purge_id,
           p->room_id, why);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        mx_sql_add(b, "UPDATE purge_jobs SET status = 'failed', error = ? WHERE purge_id = ?",
                   "ss", why, p->purge_id);
        if (mx_sql_run(b, NULL, NULL) < 0)
            mx_sql_batch_free(b);
    }
    svc_purge_free(p);
}

static void svc_purge_written(int status, mx_sql_res_t *res, void *ud)
{
    svc_purge_t *p = ud;
    if (status < 0) {
        svc_purge_failed(p, res ? mx_sql_errmsg(res) : "storage error");
        return;
    }
    if (p->hi == 0) {
        mx_log("homeserver", MX_LOG_INFO, "admin: purge %s of %s complete", p->purge_id,
               p->room_id);
        svc_purge_free(p);
        return;
    }
    p->done = p->hi;
    svc_purge_step(p);
}

/* The events of this step: after `done`, up to `hi`, not current state. */
#define SVC_PURGE_SEL                                                                     \
    "SELECT event_id FROM events WHERE room_id = ? AND stream_ordering > ?"               \
    " AND stream_ordering <= ? AND event_id NOT IN"                                       \
    " (SELECT event_id FROM current_state WHERE room_id = ?)"

/* The current state events of the step, and how far below zero they go. */
#define SVC_PURGE_CUR                                                                     \
    "SELECT event_id FROM events WHERE room_id = ? AND stream_ordering > ?"               \
    " AND stream_ordering <= ? AND event_id IN"                                           \
    " (SELECT event_id FROM current_state WHERE room_id = ?)"
#define SVC_PURGE_OFF "1125899906842624"

void svc_events_next_add(mx_sql_batch_t *b, const char *room_id, int64_t done, int64_t upto,
                         int64_t step)
{
    mx_sql_add(b, "SELECT MAX(stream_ordering), COUNT(*) FROM (SELECT stream_ordering"
                  " FROM events WHERE room_id = ? AND stream_ordering > ? AND stream_ordering < ?"
                  " ORDER BY stream_ordering LIMIT ?) s",
               "siii", room_id, done, upto, step);
}

void svc_events_delete_add(mx_sql_batch_t *b, const char *room_id, int64_t lo, int64_t hi,
                           bool keep_current)
{
    /* SVC_PURGE_SEL's last parameter names the room whose current state
     * is kept; "" names none, so that every event of the range goes. */
    const char *rid = room_id, *keep = keep_current ? room_id : "";
    static const char *const deps[] = {
        "DELETE FROM event_txns WHERE event_id IN (" SVC_PURGE_SEL ")",
        "DELETE FROM event_push_actions WHERE event_id IN (" SVC_PURGE_SEL ")",
        "DELETE FROM event_relations WHERE event_id IN (" SVC_PURGE_SEL ")",
        "DELETE FROM threads WHERE latest_event_id IN (" SVC_PURGE_SEL ")",
        "DELETE FROM event_to_state_group WHERE event_id IN (" SVC_PURGE_SEL ")",
    };
    for (size_t i = 0; i < sizeof(deps) / sizeof(deps[0]); i++)
        mx_sql_add(b, deps[i], "siis", rid, lo, hi, keep);
    if (mx_db_is_postgres(hs.db))
        mx_sql_add(b, "DELETE FROM event_search WHERE event_id IN (" SVC_PURGE_SEL ")", "siis",
                   rid, lo, hi, keep);
    else
        mx_sql_add(b, "DELETE FROM event_search WHERE rowid IN (SELECT stream_ordering FROM"
                      " events WHERE event_id IN (" SVC_PURGE_SEL "))", "siis", rid, lo, hi, keep);
    mx_sql_add(b, "DELETE FROM events WHERE event_id IN (" SVC_PURGE_SEL ")", "siis", rid, lo,
               hi, keep);
}

static void svc_purge_range(int status, mx_sql_res_t *res, void *ud)
{
    svc_purge_t *p = ud;
    if (status < 0) {
        svc_purge_failed(p, res ? mx_sql_errmsg(res) : "storage error");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        svc_purge_failed(p, "out of memory");
        return;
    }
    if (mx_sql_is_null(res, 0, 0, 0)) {
        p->hi = 0;
        mx_sql_add(b, "UPDATE purge_jobs SET status = 'complete', done_upto = upto"
                      " WHERE purge_id = ?", "s", p->purge_id);
        if (mx_sql_run(b, svc_purge_written, p) < 0) {
            mx_sql_batch_free(b);
            svc_purge_failed(p, "storage error");
        }
        return;
    }
    p->hi = mx_sql_int(res, 0, 0, 0);
    const char *rid = p->room_id;
    int64_t lo = p->done, hi = p->hi;
    char local[300];
    snprintf(local, sizeof(local), "%%:%s", hs.server_name);
    /* Kept out of the timeline rather than lost. */
    mx_sql_add(b, "INSERT INTO purged_events (event_id, room_id, stream_ordering, json)"
                  " SELECT event_id, room_id, stream_ordering, json FROM events"
                  " WHERE event_id IN (" SVC_PURGE_SEL ") AND (state_key IS NOT NULL OR"
                  " (? = 0 AND event_id LIKE ?)) ON CONFLICT (event_id) DO NOTHING",
               "siisis", rid, lo, hi, rid, (int64_t)p->delete_local, local);
    svc_events_delete_add(b, rid, lo, hi, true);
    /* The current state stays, as outliers: below every stream position,
     * so neither /sync nor /messages shows it again while state lookups
     * (state groups, room_memberships) still find it. */
    static const char *const outl[] = {
        "DELETE FROM event_push_actions WHERE event_id IN (" SVC_PURGE_CUR ")",
        "DELETE FROM event_relations WHERE event_id IN (" SVC_PURGE_CUR ")",
        "UPDATE room_memberships SET stream_ordering = stream_ordering - " SVC_PURGE_OFF
        " WHERE event_id IN (" SVC_PURGE_CUR ")",
    };
    if (mx_db_is_postgres(hs.db))
        mx_sql_add(b, "DELETE FROM event_search WHERE event_id IN (" SVC_PURGE_CUR ")", "siis",
                   rid, lo, hi, rid);
    else
        mx_sql_add(b, "DELETE FROM event_search WHERE rowid IN (SELECT stream_ordering FROM"
                      " events WHERE event_id IN (" SVC_PURGE_CUR "))", "siis", rid, lo, hi, rid);
    for (size_t i = 0; i < sizeof(outl) / sizeof(outl[0]); i++)
        mx_sql_add(b, outl[i], "siis", rid, lo, hi, rid);
    mx_sql_add(b, "UPDATE events SET stream_ordering = stream_ordering - " SVC_PURGE_OFF
                  " WHERE event_id IN (" SVC_PURGE_CUR ")", "siis", rid, lo, hi, rid);
    mx_sql_add(b, "UPDATE purge_jobs SET done_upto = ? WHERE purge_id = ?", "is", hi,
               p->purge_id);
    if (mx_sql_run(b, svc_purge_written, p) < 0) {
        mx_sql_batch_free(b);
        svc_purge_failed(p, "storage error");
    }
}

static void svc_purge_step(svc_purge_t *p)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        svc_purge_failed(p, "out of memory");
        return;
    }
    svc_events_next_add(b, p->room_id, p->done, p->upto, SVC_PURGE_STEP);
    if (mx_sql_run(b, svc_purge_range, p) < 0) {
        mx_sql_batch_free(b);
        svc_purge_failed(p, "storage error");
    }
}

static int svc_purge_go(const char *purge_id, const char *room_id, int64_t upto, int64_t done,
                        bool delete_local)
{
    svc_purge_t *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->purge_id = strdup(purge_id);
    p->room_id = strdup(room_id);
    if (!p->purge_id || !p->room_id) {
        svc_purge_free(p);
        return -ENOMEM;
    }
    p->upto = upto;
    p->done = done;
    p->delete_local = delete_local;
    svc_purge_step(p);
    return 0;
}

/* ------------------------------------------------------------- start --- */

static void svc_purge_inserted(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    (void)res;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    int rc = svc_purge_go(c->str, c->room_id, c->n, 0, c->flag);
    if (rc < 0) {
        svc_finish(c, rc, NULL);
        return;
    }
    svc_finish(c, 0, json_pack("{s:s}", "purge_id", c->str));
}

static void svc_purge_checked(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    const char *event_id = svc_qstr(c->args, "event_id");
    if (mx_sql_nrows(res, 0) < 1) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "Unknown room %s", c->room_id);
        return;
    }
    if (event_id && mx_sql_nrows(res, 1) < 1) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "Unknown event %s", event_id);
        return;
    }
    if (event_id && strcmp(mx_sql_text(res, 1, 0, 1), c->room_id) != 0) {
        svc_fail(c, -EINVAL, "M_UNKNOWN", "Event is for wrong room.");
        return;
    }
    if (mx_sql_nrows(res, 3) > 0) {
        svc_fail(c, -EEXIST, "M_UNKNOWN", "History purge already in progress for %s",
                 c->room_id);
        return;
    }
    int64_t newest = mx_sql_is_null(res, 2, 0, 0) ? 0 : mx_sql_int(res, 2, 0, 0);
    int64_t upto;
    if (event_id)
        upto = mx_sql_int(res, 1, 0, 0);
    else if (mx_sql_is_null(res, 1, 0, 0))
        upto = newest;       /* everything is older: all but the newest */
    else
        upto = mx_sql_int(res, 1, 0, 0);
    if (upto > newest)
        upto = newest;
    c->n = upto;
    c->flag = svc_qbool(c->args, "delete_local_events") == 1;
    char *rnd = mx_random_string(16);
    c->str = mx_pstrdup(c->pool, rnd ? rnd : "");
    free(rnd);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b)
        mx_sql_add(b, "INSERT INTO purge_jobs (purge_id, room_id, upto, done_upto,"
                      " delete_local, status, ts) VALUES (?, ?, ?, 0, ?, 'active', ?)",
                   "ssiii", c->str, c->room_id, upto, (int64_t)c->flag, (int64_t)mx_now_ms());
    int rc = b ? mx_sql_run(b, svc_purge_inserted, c) : -ENOMEM;
    if (rc < 0) {
        if (b)
            mx_sql_batch_free(b);
        svc_finish(c, rc, NULL);
    }
}

int svc_purge_history(const char *room_id, const json_t *opts, hs_admin_done_fn cb, void *ud)
{
    const char *event_id = svc_qstr(opts, "event_id");
    int64_t ts = svc_qint(opts, "purge_up_to_ts", -1);
    if (!event_id && ts < 0)
        return -EINVAL;
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->room_id = mx_pstrdup(c->pool, room_id);
    c->args = json_deep_copy(opts);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM rooms WHERE room_id = ?", "s", room_id);
        if (event_id)
            mx_sql_add(b, "SELECT stream_ordering, room_id FROM events WHERE event_id = ?", "s",
                       event_id);
        else
            mx_sql_add(b, "SELECT MIN(stream_ordering) FROM events WHERE room_id = ?"
                          " AND origin_server_ts >= ?", "si", room_id, ts);
        mx_sql_add(b, "SELECT MAX(stream_ordering) FROM events WHERE room_id = ?", "s",
                   room_id);
        mx_sql_add(b, "SELECT purge_id FROM purge_jobs WHERE room_id = ? AND status = 'active'",
                   "s", room_id);
    }
    return svc_run_raw(c, b, svc_purge_checked);
}

/* ------------------------------------------------------------ status --- */

static json_t *svc_purge_status_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error", "purge id not found");
    }
    json_t *o = json_pack("{s:s}", "status", mx_sql_text(res, 0, 0, 0));
    if (!mx_sql_is_null(res, 0, 0, 1))
        json_object_set_new(o, "error", json_string(mx_sql_text(res, 0, 0, 1)));
    return o;
}

int svc_purge_history_status(const char *purge_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT status, error FROM purge_jobs WHERE purge_id = ?", "s", purge_id);
    return svc_run(c, b, svc_purge_status_built);
}

int svc_purge_resume(void)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT purge_id, room_id, upto, done_upto, delete_local FROM purge_jobs"
                  " WHERE status = 'active'", "");
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0) && rc == 0; i++) {
        mx_log("homeserver", MX_LOG_INFO, "admin: resuming purge %s of %s",
               mx_sql_text(res, 0, i, 0), mx_sql_text(res, 0, i, 1));
        rc = svc_purge_go(mx_sql_text(res, 0, i, 0), mx_sql_text(res, 0, i, 1),
                          mx_sql_int(res, 0, i, 2), mx_sql_int(res, 0, i, 3),
                          mx_sql_int(res, 0, i, 4) != 0);
    }
    mx_sql_res_free(res);
    return rc;
}
