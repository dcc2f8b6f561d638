/*
 * rm_expiry.c: self-destructing messages (MSC2228, Synapse's
 * `enable_ephemeral_messages`).  A non-state event whose content has an
 * integer `org.matrix.self_destruct_after` (a timestamp in ms) is recorded
 * in `event_expiry` in the event's own write batch; once that time has
 * passed its stored copy is replaced by its redacted form (the room
 * version's redaction algorithm, as Synapse prunes it) and its relation
 * and search rows are dropped, so /messages, /event, /context, /sync and
 * /search no longer show the content.  No redaction event is sent.
 *
 * One timer, armed for the earliest expiry known.  A sweep runs as write
 * batches, so it comes after every event write queued before it: an event
 * whose expiry arms the timer is stored before the sweep looks for it.
 * After a restart the timer is armed from the table.
 */
#include "rooms.h"

#include "../relations/relations.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RX_KEY "org.matrix.self_destruct_after"
#define RX_BATCH 100          /* events pruned per sweep batch */

typedef struct rm_expiry {
    uv_timer_t timer;
    int64_t armed_ts;         /* the time the timer is armed for; INT64_MAX: idle */
    bool sweeping;            /* a sweep is in flight (it re-arms when done) */
    bool pending;             /* an expiry came in during the sweep */
} rm_expiry_t;

static rm_expiry_t *rx;

static const char rx_v1[] =
    "CREATE TABLE event_expiry (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
    " expiry_ts BIGINT NOT NULL);"
    "CREATE INDEX event_expiry_ts ON event_expiry(expiry_ts);";

static const mx_migration_t rx_migrations[] = { { 1, rx_v1, NULL, NULL } };

static void rx_sweep(void);

static void rx_fire(uv_timer_t *t)
{
    (void)t;
    rx->armed_ts = INT64_MAX;
    rx_sweep();
}

/* Arms the timer for `ts` unless it is already armed for earlier. */
static void rx_arm(int64_t ts)
{
    if (!rx)
        return;
    if (rx->sweeping) {
        rx->pending = true;
        return;
    }
    if (ts >= rx->armed_ts)
        return;
    int64_t now = (int64_t)mx_now_ms();
    rx->armed_ts = ts;
    uv_timer_start(&rx->timer, rx_fire, ts > now ? (uint64_t)(ts - now) : 0, 0);
}

/* The sweep's second step: the pruned copies are written; arm for the
 * next expiry (statement `ud`, the batch's last, is its MIN). */
static void rx_pruned(int status, mx_sql_res_t *res, void *ud)
{
    int last = (int)(intptr_t)ud;
    if (!rx)
        return;
    rx->sweeping = false;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "expiry: cannot prune expired events: %s",
               res ? mx_sql_errmsg(res) : "?");
        rx_arm((int64_t)mx_now_ms() + 60000);   /* try again later */
        return;
    }
    bool pending = rx->pending;
    rx->pending = false;
    if (mx_sql_nrows(res, last) > 0 && !mx_sql_is_null(res, last, 0, 0))
        rx_arm(mx_sql_int(res, last, 0, 0));
    if (pending)
        rx_arm((int64_t)mx_now_ms());   /* an expiry came in meanwhile: look again */
}

/* The sweep's first step: the due events (a read inside the writer, after
 * every write queued before); prune them in one write batch. */
static void rx_due(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    if (!rx)
        return;
    mx_sql_batch_t *b = status >= 0 ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        rx->sweeping = false;
        mx_log("homeserver", MX_LOG_ERROR, "expiry: cannot read expired events: %s",
               res ? mx_sql_errmsg(res) : "out of memory");
        rx_arm((int64_t)mx_now_ms() + 60000);
        return;
    }
    int rows = mx_sql_nrows(res, 0), nst = 0;
    for (int i = 0; i < rows; i++) {
        const char *eid = mx_sql_text(res, 0, i, 0);
        const char *js = mx_sql_text(res, 0, i, 1);
        const hs_room_version_t *rv = hs_room_version_get(mx_sql_text(res, 0, i, 2));
        json_t *ev = js ? json_loads(js, 0, NULL) : NULL;
        json_t *red = rv && ev ? hs_event_redact(rv, ev) : NULL;
        char *out = red ? json_dumps(red, JSON_COMPACT) : NULL;
        if (out) {
            mx_sql_add(b, "UPDATE events SET json = ? WHERE event_id = ?", "ss", out, eid);
            nst += 1 + hs_relations_forget(eid, b);
        }
        mx_sql_add(b, "DELETE FROM event_expiry WHERE event_id = ?", "s", eid);
        nst++;
        free(out);
        json_decref(red);
        json_decref(ev);
    }
    /* Last, so that it sees the deletes. */
    mx_sql_add(b, "SELECT MIN(expiry_ts) FROM event_expiry", "");
    if (mx_sql_run(b, rx_pruned, (void *)(intptr_t)nst) < 0) {
        mx_sql_batch_free(b);
        rx->sweeping = false;
        rx_arm((int64_t)mx_now_ms() + 60000);
    }
}

static void rx_sweep(void)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b)
        return;
    rx->sweeping = true;
    mx_sql_add(b, "SELECT x.event_id, e.json, r.room_version FROM event_expiry x"
                  " LEFT JOIN events e ON e.event_id = x.event_id"
                  " LEFT JOIN rooms r ON r.room_id = x.room_id"
                  " WHERE x.expiry_ts <= ? ORDER BY x.expiry_ts LIMIT ?",
               "ii", (int64_t)mx_now_ms(), (int64_t)RX_BATCH);
    if (mx_sql_run(b, rx_due, NULL) < 0) {
        mx_sql_batch_free(b);
        rx->sweeping = false;
    }
}

void rm_expiry_on_event(const rm_room_t *r, const json_t *pdu, const char *event_id,
                        mx_sql_batch_t *b)
{
    if (!rx || hs_ev_state_key(pdu))
        return;
    const json_t *ts = json_object_get(json_object_get(pdu, "content"), RX_KEY);
    if (!json_is_integer(ts))
        return;
    int64_t at = (int64_t)json_integer_value(ts);
    mx_sql_add(b, "INSERT INTO event_expiry (event_id, room_id, expiry_ts) VALUES (?, ?, ?)",
               "ssi", event_id, r->room_id, at);
    rx_arm(at);
}

static void rx_first(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    if (rx && status >= 0 && mx_sql_nrows(res, 0) > 0 && !mx_sql_is_null(res, 0, 0, 0))
        rx_arm(mx_sql_int(res, 0, 0, 0));
}

int rm_expiry_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.expiry", rx_migrations,
                           sizeof(rx_migrations) / sizeof(rx_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.expiry: migration failed (%d)", rc);
        return rc;
    }
    if (!hs.conf.enable_ephemeral_messages)
        return 0;
    rx = calloc(1, sizeof(*rx));
    if (!rx || uv_timer_init(mx_loop(), &rx->timer) < 0) {
        free(rx);
        rx = NULL;
        snprintf(err, errlen, "homeserver.expiry: out of memory");
        return -ENOMEM;
    }
    rx->armed_ts = INT64_MAX;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT MIN(expiry_ts) FROM event_expiry", "");
        if (mx_sql_run(b, rx_first, NULL) < 0)
            mx_sql_batch_free(b);
    }
    return 0;
}

static void rx_closed(uv_handle_t *h)
{
    free(h->data);
}

void rm_expiry_stop(void)
{
    if (!rx)
        return;
    uv_timer_stop(&rx->timer);
    rx->timer.data = rx;
    uv_close((uv_handle_t *)&rx->timer, rx_closed);
    rx = NULL;   /* callbacks of batches in flight see NULL and stop */
}
