/*
 * e2_sync.c: the E2EE sections of /sync, added by one sync provider:
 * device_lists {changed, left} (incremental syncs only), the requesting
 * device's device_one_time_keys_count and device_unused_fallback_key_types
 * (always present, as rust crypto expects), and to_device.events.
 *
 * To-device messages are read oldest first, at most E2_TO_DEVICE_LIMIT per
 * response; when the limit cuts, the response's to-device position is the
 * last message sent so the rest follows in the next sync.  A message is
 * deleted only when the client syncs again with a `since` past it, which
 * proves it got the response that carried it.
 */
#include "e2ee.h"

#include <errno.h>
#include <string.h>

typedef struct e2_sync {
    hs_sync_ctx_t *sc;
    hs_sync_part_done_fn done;
    int st_dl, st_counts, st_fb, st_td;
    int st_ack;               /* acknowledged messages still stored? */
} e2_sync_t;

static void e2_sync_ack_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    (void)ud;
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "e2ee: to-device cleanup failed (%d)", status);
}

/* Deletes the device's messages the client has acknowledged. */
void e2_inbox_ack(const char *user_id, const char *device_id, int64_t upto)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b)
        return;
    mx_sql_add(b, "DELETE FROM e2e_device_inbox WHERE user_id = ? AND device_id = ?"
                  " AND stream_id <= ?", "ssi", user_id, device_id, upto);
    if (mx_sql_run(b, e2_sync_ack_done, NULL) < 0)
        return;
}

/* Adds the inbox read: stream_id, message_json, oldest first. */
void e2_inbox_select(mx_sql_batch_t *b, const char *user_id, const char *device_id,
                     int64_t after, int64_t upto, int limit)
{
    mx_sql_add(b, "SELECT stream_id, message_json FROM e2e_device_inbox WHERE user_id = ?"
                  " AND device_id = ? AND stream_id > ? AND stream_id <= ?"
                  " ORDER BY stream_id LIMIT ?", "ssiii", user_id, device_id, after, upto,
               (int64_t)limit);
}

static void e2_sync_read(int status, mx_sql_res_t *res, void *ud)
{
    e2_sync_t *s = ud;
    hs_sync_ctx_t *sc = s->sc;
    if (status < 0) {
        s->done(sc, status);
        return;
    }
    if (s->st_ack >= 0 && mx_sql_nrows(res, s->st_ack) > 0)
        e2_inbox_ack(sc->who->user_id, sc->who->device_id, sc->since[HS_STREAM_TO_DEVICE]);
    json_t *resp = sc->response;
    if (s->st_dl >= 0)
        json_object_set_new(resp, "device_lists", e2_dl_result(res, s->st_dl, sc->who->user_id));
    if (s->st_counts >= 0) {
        json_object_set_new(resp, "device_one_time_keys_count", e2_counts_json(res, s->st_counts));
        json_t *fb = json_array();
        for (int i = 0; i < mx_sql_nrows(res, s->st_fb); i++)
            json_array_append_new(fb, json_string(mx_sql_text(res, s->st_fb, i, 0)));
        json_object_set_new(resp, "device_unused_fallback_key_types", fb);
        json_t *events = json_array();
        int n = s->st_td >= 0 ? mx_sql_nrows(res, s->st_td) : 0;
        for (int i = 0; i < n; i++) {
            json_t *m = e2_load(mx_sql_text(res, s->st_td, i, 1));
            if (m)
                json_array_append_new(events, m);
        }
        if (n >= E2_TO_DEVICE_LIMIT)
            sc->upto[HS_STREAM_TO_DEVICE] = mx_sql_int(res, s->st_td, n - 1, 0);
        json_object_set_new(resp, "to_device", json_pack("{s:o}", "events", events));
    }
    s->done(sc, 0);
}

static void e2_sync_part(hs_sync_ctx_t *sc, hs_sync_part_done_fn done)
{
    json_t *resp = sc->response;
    json_object_set_new(resp, "device_lists", json_pack("{s:[], s:[]}", "changed", "left"));
    if (!json_object_get(resp, "to_device"))
        json_object_set_new(resp, "to_device", json_pack("{s:[]}", "events"));
    e2_sync_t *s = mx_palloc(sc->pool, sizeof(*s));
    mx_sql_batch_t *b = s ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        done(sc, -ENOMEM);
        return;
    }
    s->sc = sc;
    s->done = done;
    s->st_dl = s->st_counts = s->st_fb = s->st_td = s->st_ack = -1;
    const char *uid = sc->who->user_id, *did = sc->who->device_id;
    int st = 0;
    /* device_lists moves with the device-list stream and with memberships
     * (who shares a room with the user): neither moved, nothing to read */
    if (!sc->initial && (sc->members_moved ||
                         sc->since[HS_STREAM_DEVICE_LISTS] < sc->upto[HS_STREAM_DEVICE_LISTS])) {
        s->st_dl = st;
        st += e2_dl_query(b, uid, sc->since, sc->upto);
    }
    if (did) {
        int64_t since = sc->since[HS_STREAM_TO_DEVICE];
        /* the client proved it got what `since` covers: delete that, with a
         * write only when something is left (not on every sync) */
        if (since > 0) {
            mx_sql_add(b, "SELECT 1 FROM e2e_device_inbox WHERE user_id = ? AND device_id = ?"
                          " AND stream_id <= ? LIMIT 1", "ssi", uid, did, since);
            s->st_ack = st++;
        }
        e2_counts_add(b, uid, did);
        s->st_counts = st++;
        mx_sql_add(b, "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND"
                      " device_id = ? AND used = 0 ORDER BY algorithm", "ss", uid, did);
        s->st_fb = st++;
        /* to-device: only when the stream moved (or on an initial sync, whose
         * `since` is 0, so always read then) */
        if (since < sc->upto[HS_STREAM_TO_DEVICE]) {
            e2_inbox_select(b, uid, did, since, sc->upto[HS_STREAM_TO_DEVICE], E2_TO_DEVICE_LIMIT);
            s->st_td = st++;
        }
    }
    if (!st) {
        mx_sql_batch_free(b);
        done(sc, 0);
        return;
    }
    if (mx_sql_run(b, e2_sync_read, s) < 0)
        done(sc, MX_EDB);
}

int e2_sync_start(void)
{
    return hs_sync_add_part("e2ee", e2_sync_part);
}
