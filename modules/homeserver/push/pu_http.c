/*
 * pu_http.c: the HTTP pusher — delivers notifications to push gateways
 * (POST <data.url>, i.e. /_matrix/push/v1/notify, push gateway API).
 *
 * One timer drives every pusher.  A pusher with work (a notifying event
 * after its stored position, or a badge update after a receipt) reads up to
 * PH_BATCH notifications at once, once they are persisted (the event stream
 * position reached them), and sends them one after the other; its position
 * is stored once per batch.  A network error, 5xx or 429 stops the batch
 * and retries after a backoff (1 s doubling to 1 h); a notification that
 * keeps failing for a day is skipped.  Other 4xx answers drop that
 * notification.  Pushkeys the gateway lists in `rejected` lose their pusher.
 * The two formats: "event_id_only" (IDs, counts, devices) and the full one
 * (type, sender, content, display names, room name).
 */
#include "push.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PH_BATCH 20
#define PH_BACKOFF_MIN_MS 1000
#define PH_BACKOFF_MAX_MS (60 * 60 * 1000)
#define PH_GIVE_UP_MS (24 * 60 * 60 * 1000)
#define PH_TIMEOUT_MS 10000

typedef struct ph_state {
    uv_timer_t timer;
    bool init, closed;
} ph_state_t;

static ph_state_t ph;

typedef struct ph_item {
    int64_t so;               /* 0: badge-only update */
    char *body;               /* the request body (malloc'd) */
} ph_item_t;

typedef struct ph_job {
    pu_pusher_t *p;
    int64_t upto;
    int64_t start_so;
    ph_item_t items[PH_BATCH];
    int n, i;
    bool full;                /* a whole batch was read: more may follow */
} ph_job_t;

static void ph_run(uv_timer_t *t);

void pu_http_schedule(uint64_t delay_ms)
{
    if (!ph.init || ph.closed)
        return;
    if (uv_is_active((uv_handle_t *)&ph.timer) && uv_timer_get_due_in(&ph.timer) <= delay_ms)
        return;
    uv_timer_start(&ph.timer, ph_run, delay_ms, 0);
}

int pu_http_start(void)
{
    if (ph.init)
        return 0;
    int rc = uv_timer_init(mx_loop(), &ph.timer);
    if (rc < 0)
        return rc;
    uv_unref((uv_handle_t *)&ph.timer);
    ph.init = true;
    ph.closed = false;
    return 0;
}

void pu_http_stop(void)
{
    if (ph.init && !ph.closed) {
        uv_timer_stop(&ph.timer);
        uv_close((uv_handle_t *)&ph.timer, NULL);
        ph.closed = true;
    }
}

/* ------------------------------------------------------- building bodies --- */

static json_t *ph_tweaks(const json_t *actions)
{
    json_t *tw = json_object();
    size_t i;
    const json_t *a;
    json_array_foreach(actions, i, a) {
        const char *name = json_string_value(json_object_get(a, "set_tweak"));
        if (!name)
            continue;
        const json_t *v = json_object_get(a, "value");
        if (v)
            json_object_set(tw, name, (json_t *)v);
        else if (strcmp(name, "highlight") == 0)
            json_object_set_new(tw, name, json_true());
    }
    return tw;
}

static json_t *ph_device(const pu_pusher_t *p, json_t *tweaks)
{
    json_t *data = json_deep_copy(json_object_get(p->info, "data"));
    json_object_del(data, "url");
    return json_pack("{s:s, s:s, s:I, s:o, s:o}", "app_id", p->app_id, "pushkey", p->pushkey,
                     "pushkey_ts", (json_int_t)(p->pushkey_ts / 1000), "data",
                     data ? data : json_object(), "tweaks", tweaks ? tweaks : json_object());
}

static char *ph_body_event(const pu_pusher_t *p, const char *event_id, const char *room_id,
                           const char *actions_text, const char *pdu_text, int64_t badge)
{
    json_t *actions = json_loads(actions_text ? actions_text : "[]", 0, NULL);
    json_t *pdu = json_loads(pdu_text ? pdu_text : "{}", 0, NULL);
    json_t *tweaks = ph_tweaks(actions);
    const char *type = hs_ev_type(pdu);
    bool high = (type && strcmp(type, "m.room.encrypted") == 0) ||
                json_is_true(json_object_get(tweaks, "highlight")) ||
                json_object_get(tweaks, "sound");
    json_t *n = json_pack("{s:s, s:s, s:s, s:{s:I}}", "event_id", event_id, "room_id", room_id,
                          "prio", high ? "high" : "low", "counts", "unread", (json_int_t)badge);
    if (!p->id_only && pdu) {
        const char *sender = hs_ev_sender(pdu), *sk = hs_ev_state_key(pdu);
        /* the legacy copy of event_id that Synapse still sends */
        json_object_set_new(n, "id", json_string(event_id));
        if (type)
            json_object_set_new(n, "type", json_string(type));
        if (sender)
            json_object_set_new(n, "sender", json_string(sender));
        json_t *content = json_object_get(pdu, "content");
        if (content)
            json_object_set(n, "content", content);
        if (type && sk && strcmp(type, "m.room.member") == 0) {
            json_object_set_new(n, "user_is_target", json_boolean(strcmp(sk, p->user_id) == 0));
            if (hs_ev_membership(pdu))
                json_object_set_new(n, "membership", json_string(hs_ev_membership(pdu)));
        }
        rm_room_t *room = rm_room_cached(room_id);
        if (room) {
            const json_t *m = sender ? rm_state_get(room, "m.room.member", sender) : NULL;
            const char *dn = json_string_value(json_object_get(json_object_get(m, "content"),
                                                               "displayname"));
            if (dn)
                json_object_set_new(n, "sender_display_name", json_string(dn));
            const json_t *nm = rm_state_get(room, "m.room.name", "");
            const char *name = json_string_value(json_object_get(json_object_get(nm, "content"), "name"));
            const json_t *ca = rm_state_get(room, "m.room.canonical_alias", "");
            const char *alias = json_string_value(json_object_get(json_object_get(ca, "content"), "alias"));
            /* Synapse names an unnamed room by its canonical alias */
            if (name && *name)
                json_object_set_new(n, "room_name", json_string(name));
            else if (alias && *alias)
                json_object_set_new(n, "room_name", json_string(alias));
            if (alias && *alias)
                json_object_set_new(n, "room_alias", json_string(alias));
        }
    }
    json_object_set_new(n, "devices", json_pack("[o]", ph_device(p, tweaks)));
    json_t *body = json_pack("{s:o}", "notification", n);
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_decref(actions);
    json_decref(pdu);
    return s;
}

static char *ph_body_badge(const pu_pusher_t *p, int64_t badge)
{
    json_t *body = json_pack("{s:{s:s, s:{s:I}, s:[o]}}", "notification", "prio", "high", "counts",
                             "unread", (json_int_t)badge, "devices", ph_device(p, NULL));
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return s;
}

/* -------------------------------------------------------------- sending --- */

static void ph_job_free(ph_job_t *j)
{
    for (int i = 0; i < j->n; i++)
        free(j->items[i].body);
    free(j);
}

static void ph_pos_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "push: cannot store pusher position: %s",
               res ? mx_sql_errmsg(res) : "?");
}

/* The batch is over (sent, failed or the pusher went away). */
static void ph_finish(ph_job_t *j)
{
    pu_pusher_t *p = j->p;
    p->busy = false;
    if (!p->dead && p->last_so != j->start_so) {
        mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
        if (b) {
            if (p->failing_since_ms)
                mx_sql_add(b, "UPDATE pushers SET last_stream_ordering = ?, failing_since = ?"
                              " WHERE user_id = ? AND app_id = ? AND pushkey = ?", "iisss",
                           p->last_so, (int64_t)p->failing_since_ms, p->user_id, p->app_id,
                           p->pushkey);
            else
                mx_sql_add(b, "UPDATE pushers SET last_stream_ordering = ?, failing_since = NULL"
                              " WHERE user_id = ? AND app_id = ? AND pushkey = ?", "isss",
                           p->last_so, p->user_id, p->app_id, p->pushkey);
            if (mx_sql_run(b, ph_pos_written, NULL) < 0)
                mx_sql_batch_free(b);
        }
    }
    bool more = !p->dead && (j->full || p->badge || p->want > p->last_so);
    pu_pusher_release(p);
    ph_job_free(j);
    if (more)
        pu_http_schedule(0);
}

static void ph_send(ph_job_t *j);

static bool ph_rejected(const mx_http_response_t *resp, const char *pushkey)
{
    json_t *b = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    bool found = false;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(b, "rejected"), i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), pushkey) == 0)
            found = true;
    }
    json_decref(b);
    return found;
}

/* This item is done with: move past it. */
static void ph_advance(ph_job_t *j)
{
    pu_pusher_t *p = j->p;
    if (j->items[j->i].so > p->last_so)
        p->last_so = j->items[j->i].so;
    j->i++;
    ph_send(j);
}

static void ph_sent(const mx_http_response_t *resp, void *ud)
{
    ph_job_t *j = ud;
    pu_pusher_t *p = j->p;
    if (p->dead) {
        ph_finish(j);
        return;
    }
    uint64_t now = mx_now_ms();
    if (!resp->err && resp->status >= 200 && resp->status < 300) {
        p->failing_since_ms = 0;
        p->backoff_ms = 0;
        if (ph_rejected(resp, p->pushkey)) {
            p->busy = false;
            pu_pusher_drop(p); /* frees it (not busy any more) */
            j->p = NULL;
            ph_job_free(j);
            return;
        }
        ph_advance(j);
        return;
    }
    if (!resp->err && resp->status >= 400 && resp->status < 500 && resp->status != 429) {
        mx_log("homeserver", MX_LOG_WARN, "push: gateway %s answered %d; dropping notification",
               p->url, resp->status);
        ph_advance(j);
        return;
    }
    mx_log("homeserver", MX_LOG_INFO, "push: gateway %s failed (%s); retrying later", p->url,
           resp->err ? (resp->errmsg ? resp->errmsg : "error") : "bad status");
    if (!p->failing_since_ms)
        p->failing_since_ms = now;
    if (now - p->failing_since_ms > PH_GIVE_UP_MS) {
        p->failing_since_ms = now;
        p->backoff_ms = 0;
        ph_advance(j);
        return;
    }
    p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : PH_BACKOFF_MIN_MS;
    if (p->backoff_ms > PH_BACKOFF_MAX_MS)
        p->backoff_ms = PH_BACKOFF_MAX_MS;
    p->next_try_ms = now + p->backoff_ms;
    if (j->items[j->i].so == 0)
        p->badge = true; /* resend the badge too */
    j->full = false;
    ph_finish(j);
    pu_http_schedule(p->backoff_ms);
}

static void ph_send(ph_job_t *j)
{
    pu_pusher_t *p = j->p;
    while (j->i < j->n && !j->items[j->i].body)
        j->i++;
    if (j->i >= j->n || p->dead) {
        ph_finish(j);
        return;
    }
    static const char *const headers[] = { "Content-Type: application/json", NULL };
    mx_http_request_t rq = {
        .method = "POST",
        .url = p->url,
        .headers = headers,
        .body = j->items[j->i].body,
        .body_len = strlen(j->items[j->i].body),
        .timeout_ms = PH_TIMEOUT_MS,
    };
    if (mx_http_fetch(&rq, ph_sent, j) < 0) {
        mx_http_response_t fail = { .err = -EIO, .errmsg = "cannot start request" };
        ph_sent(&fail, j);
    }
}

static void ph_fetched(int status, mx_sql_res_t *res, void *ud)
{
    ph_job_t *j = ud;
    pu_pusher_t *p = j->p;
    if (status < 0 || p->dead) {
        if (status < 0)
            mx_log("homeserver", MX_LOG_WARN, "push: cannot read notifications: %s",
                   res ? mx_sql_errmsg(res) : "?");
        if (status < 0 && !p->dead)
            p->next_try_ms = mx_now_ms() + PH_BACKOFF_MIN_MS;
        ph_finish(j);
        return;
    }
    int64_t badge = mx_sql_int(res, 1, 0, 0);
    int n = mx_sql_nrows(res, 0);
    for (int i = 0; i < n && i < PH_BATCH; i++) {
        j->items[i].so = mx_sql_int(res, 0, i, 0);
        j->items[i].body = ph_body_event(p, mx_sql_text(res, 0, i, 1), mx_sql_text(res, 0, i, 2),
                                         mx_sql_text(res, 0, i, 3), mx_sql_text(res, 0, i, 4), badge);
        j->n++;
    }
    j->full = n >= PH_BATCH;
    if (n > 0) {
        p->badge = false; /* the events carry the counts */
    } else {
        if (p->badge) {
            p->badge = false;
            j->items[0].so = 0;
            j->items[0].body = ph_body_badge(p, badge);
            j->n = 1;
        }
        /* Nothing after our position up to `upto`: caught up, unless the
         * newest notification is not persisted yet. */
        if (p->want <= j->upto)
            p->want = p->last_so;
    }
    ph_send(j);
}

static void ph_fetch(pu_pusher_t *p, int64_t upto)
{
    ph_job_t *j = calloc(1, sizeof(*j));
    mx_sql_batch_t *b = j ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        free(j);
        p->next_try_ms = mx_now_ms() + PH_BACKOFF_MIN_MS;
        return;
    }
    j->p = p;
    j->upto = upto;
    j->start_so = p->last_so;
    p->busy = true;
    mx_sql_add(b, "SELECT a.stream_ordering, a.event_id, a.room_id, a.actions, e.json"
                  " FROM event_push_actions a JOIN events e ON e.event_id = a.event_id"
                  " WHERE a.user_id = ? AND a.notif = 1 AND a.stream_ordering > ?"
                  " AND a.stream_ordering <= ? ORDER BY a.stream_ordering LIMIT ?",
               "siii", p->user_id, p->last_so, upto, (int64_t)PH_BATCH);
    mx_sql_add(b, "SELECT COUNT(DISTINCT a.room_id) FROM event_push_actions a"
                  " WHERE a.user_id = ? AND a.notif = 1 AND a.stream_ordering <= ?"
                  " AND a.stream_ordering > " PU_READ_POS, "si", p->user_id, upto);
    if (mx_sql_run(b, ph_fetched, j) < 0) {
        mx_sql_batch_free(b);
        p->busy = false;
        free(j);
        p->next_try_ms = mx_now_ms() + PH_BACKOFF_MIN_MS;
    }
}

static void ph_run(uv_timer_t *t)
{
    (void)t;
    uint64_t now = mx_now_ms(), next = 0;
    int64_t cur = hs_stream_current(HS_STREAM_EVENTS);
    for (pu_pusher_t *p = pu_pushers_head(); p; p = p->next) {
        if (p->busy || p->dead)
            continue;
        bool events = p->want > p->last_so;
        if (!events && !p->badge)
            continue;
        uint64_t wait = 0;
        if (p->next_try_ms > now)
            wait = p->next_try_ms - now;
        else if (events && !p->badge && cur < p->want)
            wait = 20; /* not persisted yet */
        if (wait) {
            if (!next || wait < next)
                next = wait;
            continue;
        }
        ph_fetch(p, cur);
    }
    if (next)
        pu_http_schedule(next);
}
