/*
 * rm_send.c: PUT /rooms/{roomId}/send/{eventType}/{txnId} and
 * PUT /rooms/{roomId}/redact/{eventId}/{txnId}, and the legacy
 * POST /rooms/{roomId}/send/{eventType} (no txn ID: not idempotent, as in
 * Synapse).
 *
 * Both are idempotent per (user, device or token, request path): as the
 * spec says, a retransmission is the same txnId on the same path
 * ("send/<room>/<type>/<txnId>" or "redact/<room>/<eventId>/<txnId>").  The
 * event row itself records its sender, device key and txnId (and its room,
 * type and redacted event), so a retransmit finds the same event ID through
 * the events_txn index, also after a restart or a token refresh (the scope
 * is the device); no separate mapping is written.  A duplicate that
 * arrives while the first request is still in flight waits for it (the
 * in-flight map below) and answers its event ID, instead of racing it into
 * the unique key.  A redaction applies the room version's algorithm to the
 * stored copy of the target (rm_txn_add with redact_target).
 *
 * Most sends are not retransmissions, so the stored-txn read is skipped
 * when the answer is known to be "none": a Bloom filter holds every txn key
 * this process committed, and per device we learn once (in the first
 * lookup's batch) whether it had any stored txn before.  For a device that
 * had none, a key the filter has never seen cannot be stored; anything else
 * (filter hit, older device, a failed write) reads the events as before.
 * This state (filter, devices, in-flight map) hangs off the module context
 * (hs.send) and is freed by rm_send_stop.
 */
#include "rooms.h"
#include "../accounts/accounts.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sd_ctx {
    mx_req_t *req;
    const hs_user_t *who;
    const char *room_id;
    const char *type;
    const char *txn_id;       /* the client's txnId (NULL for POST) */
    const char *txn_key;      /* its scope: kind/room/type-or-event/txnId (NULL for POST) */
    const char *dev;
    const char *redacts;
    const char *inflight;     /* key in hs.send->inflight while this request owns it */
    const char *fkey;         /* "user\x1fdevice\x1ftxn_key" (pool), NULL for POST */
    int devq;                 /* index of the device's "any stored txn" query, or -1 */
    const char *event_id;     /* the new event's ID, in the commit callback */
    json_t *content;          /* owned */
    json_t *target;           /* owned: redaction target PDU */
} sd_ctx_t;

/* Requests waiting for the owner of one (user, device, txn_key). */
typedef struct sd_pending {
    sd_ctx_t **w;             /* owned array; the contexts are the waiters' */
    size_t n, cap;
} sd_pending_t;

#define SD_BLOOM_WORDS (1u << 17) /* 8 Mbit, 1 MiB: ~2 % false hits at 1M keys */
#define SD_BLOOM_K 4
#define SD_DEV_NEW ((void *)1)    /* the device had no stored txn at its first lookup */
#define SD_DEV_OLD ((void *)2)    /* it had some (or a write failed): always read */

/* hs.send: created on first use, loop thread only. */
struct rm_send_state {
    rm_map_t *inflight;            /* "user\x1fdevice\x1ftxn_key" -> sd_pending_t (owned) */
    rm_map_t *devs;                /* "user\x1fdevice" -> SD_DEV_NEW / SD_DEV_OLD */
    uint64_t bits[SD_BLOOM_WORDS]; /* Bloom filter of txn keys committed by this process */
};

/* The state, created on first use; NULL when out of memory. */
static struct rm_send_state *sd_state(void)
{
    if (hs.send)
        return hs.send;
    struct rm_send_state *st = calloc(1, sizeof(*st));
    if (st && (!(st->inflight = rm_map_new()) || !(st->devs = rm_map_new()))) {
        rm_map_free(st->inflight);
        free(st);
        st = NULL;
    }
    return hs.send = st;
}

/* ------------------------------------------------- known-txn filter --- */

static void sd_hash(const char *key, uint64_t *h1, uint64_t *h2)
{
    uint64_t a = 14695981039346656037ull, b = 1099511628211ull * 31;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        a = (a ^ *p) * 1099511628211ull;
        b = (b + *p) * 0x9E3779B97F4A7C15ull;
    }
    *h1 = a;
    *h2 = (b ^ (b >> 29)) | 1;
}

static void sd_bloom_add(const char *key)
{
    struct rm_send_state *st = hs.send;
    if (!st || !key)
        return;
    uint64_t h1, h2;
    sd_hash(key, &h1, &h2);
    for (int i = 0; i < SD_BLOOM_K; i++) {
        uint64_t bit = (h1 + (uint64_t)i * h2) % (SD_BLOOM_WORDS * 64ull);
        st->bits[bit / 64] |= 1ull << (bit % 64);
    }
}

static bool sd_bloom_maybe(const struct rm_send_state *st, const char *key)
{
    uint64_t h1, h2;
    sd_hash(key, &h1, &h2);
    for (int i = 0; i < SD_BLOOM_K; i++) {
        uint64_t bit = (h1 + (uint64_t)i * h2) % (SD_BLOOM_WORDS * 64ull);
        if (!(st->bits[bit / 64] & (1ull << (bit % 64))))
            return false;
    }
    return true;
}

/* "user\x1fdevice" of c, in `buf`. */
static const char *sd_dev_key(const sd_ctx_t *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s\x1f%s", c->who->user_id, c->dev);
    return buf;
}

/* SD_DEV_NEW, SD_DEV_OLD or NULL (not known yet) for c's device. */
static void *sd_dev_state(const sd_ctx_t *c)
{
    struct rm_send_state *st = sd_state();
    if (!st)
        return SD_DEV_OLD;
    char key[512];
    return rm_map_get(st->devs, sd_dev_key(c, key, sizeof(key)));
}

static void sd_dev_set(const sd_ctx_t *c, void *state)
{
    struct rm_send_state *st = hs.send;
    if (!st)
        return;
    char key[512];
    if (rm_map_get(st->devs, sd_dev_key(c, key, sizeof(key))) != SD_DEV_OLD) /* final */
        rm_map_put(st->devs, key, state);
}

/* True when c's txn key is certainly not stored (so no read is needed). */
static bool sd_txn_surely_new(const sd_ctx_t *c)
{
    return c->fkey && !c->redacts && sd_dev_state(c) == SD_DEV_NEW &&
           !sd_bloom_maybe(hs.send, c->fkey);
}

static void sd_lookup(sd_ctx_t *c);

/* Makes `c` the owner of its txn key, or queues it behind the owner.
 * Returns true when `c` may go on. */
static bool sd_claim(sd_ctx_t *c)
{
    if (!c->txn_key)
        return true;
    const char *key = mx_psprintf(mx_req_pool(c->req), "%s\x1f%s\x1f%s", c->who->user_id,
                                  c->dev, c->txn_key);
    c->fkey = key;
    struct rm_send_state *st = sd_state();
    if (!key || !st)
        return true; /* out of memory: go on unguarded */
    sd_pending_t *p = rm_map_get(st->inflight, key);
    if (p) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 2;
            sd_ctx_t **w = realloc(p->w, cap * sizeof(*w));
            if (!w)
                return true;
            p->w = w;
            p->cap = cap;
        }
        p->w[p->n++] = c;
        return false;
    }
    if (!(p = calloc(1, sizeof(*p))) || rm_map_put(st->inflight, key, p) < 0) {
        free(p);
        return true;
    }
    c->inflight = key;
    return true;
}

/* The owner is done: waiters answer `event_id` (the retransmission case),
 * or, when the owner failed, try again themselves (one becomes the owner). */
static void sd_settle(sd_ctx_t *c, const char *event_id)
{
    if (!c->inflight || !hs.send)
        return;
    sd_pending_t *p = rm_map_del(hs.send->inflight, c->inflight);
    c->inflight = NULL;
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        sd_ctx_t *w = p->w[i];
        if (event_id)
            mx_req_reply_json(w->req, 200, json_pack("{s:s}", "event_id", event_id));
        else if (sd_claim(w))
            sd_lookup(w);
    }
    free(p->w);
    free(p);
}

static void sd_free(void *p)
{
    sd_ctx_t *c = p;
    sd_settle(c, NULL); /* an owner that failed on any path */
    json_decref(c->content);
    json_decref(c->target);
}

static void sd_free_pending(const char *key, void *val, void *ud)
{
    (void)key;
    (void)ud;
    sd_pending_t *p = val;
    free(p->w);
    free(p);
}

void rm_send_stop(void)
{
    struct rm_send_state *st = hs.send;
    if (!st)
        return;
    rm_map_each(st->inflight, sd_free_pending, NULL);
    rm_map_free(st->inflight);
    rm_map_free(st->devs);
    free(st);
    hs.send = NULL;
}

static void sd_committed(int status, rm_txn_t *t, void *ud)
{
    (void)t;
    sd_ctx_t *c = ud;
    if (status < 0) {
        if (c->fkey)
            sd_dev_set(c, SD_DEV_OLD); /* to be safe: read its txns from now on */
        hs_reply_storage_error(c->req, status, "sending event");
        return; /* sd_free settles */
    }
    sd_bloom_add(c->fkey);
    /* Settle the waiters first: replying may release c's request pool. */
    mx_req_t *req = c->req;
    json_t *body = json_pack("{s:s}", "event_id", c->event_id);
    sd_settle(c, c->event_id);
    mx_req_reply_json(req, 200, body);
}

static void sd_have_room(rm_room_t *room, int status, void *ud)
{
    sd_ctx_t *c = ud;
    if (rm_room_error(c->req, room, status))
        return;
    rm_ev_opts_t o = { .txn_device = c->dev, .txn_id = c->txn_id };
    if (c->redacts) {
        /* Rooms v4+ event IDs carry no domain, so the "same sender or
         * enough power" rule is checked here, where the target is known. */
        const char *tsender = hs_ev_sender(c->target);
        if (!tsender || strcmp(tsender, c->who->user_id) != 0) {
            const json_t *create = rm_state_get(room, "m.room.create", "");
            const json_t *pl = rm_state_get(room, "m.room.power_levels", "");
            if (hs_user_power(room->rv, create, pl, c->who->user_id) <
                hs_named_power(pl, "redact", 50)) {
                mx_req_error(c->req, 403, "M_FORBIDDEN",
                             "you may not redact other users' events");
                return;
            }
        }
        o.redacts = c->redacts;
        o.redact_target = c->target;
        if (room->rv->redacts_in_content)
            json_object_set_new(c->content, "redacts", json_string(c->redacts));
    }
    char why[256];
    rm_txn_t *t = rm_txn_new(room);
    if (!t) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    int rc = rm_txn_add(t, c->type, NULL, c->who->user_id, c->content, &o, &c->event_id, why,
                        sizeof(why));
    if (rc != 0) {
        rm_txn_abort(t);
        rm_reply_add_error(c->req, rc, why);
        return;
    }
    rm_txn_commit(t, sd_committed, c);
}

static void sd_txn_checked(int status, mx_sql_res_t *res, void *ud)
{
    sd_ctx_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "txn lookup");
        return;
    }
    if (c->devq >= 0)
        sd_dev_set(c, mx_sql_nrows(res, c->devq) > 0 ? SD_DEV_OLD : SD_DEV_NEW);
    if (mx_sql_nrows(res, 0) > 0) {
        const char *eid = mx_sql_text(res, 0, 0, 0);
        mx_req_reply_json(c->req, 200, json_pack("{s:s}", "event_id", eid));
        sd_settle(c, eid);
        return;
    }
    if (c->redacts) {
        const char *js = mx_sql_nrows(res, 1) ? mx_sql_text(res, 1, 0, 0) : NULL;
        if (js && strcmp(mx_sql_text(res, 1, 0, 1), c->room_id) != 0) {
            mx_req_error(c->req, 400, "M_INVALID_PARAM",
                         "cannot redact an event of a different room");
            return;
        }
        c->target = js ? json_loads(js, 0, NULL) : NULL;
        if (!c->target) {
            mx_req_error(c->req, 404, "M_NOT_FOUND", "unknown event");
            return;
        }
    }
    rm_room_get(c->room_id, sd_have_room, c);
}

static void sd_start(sd_ctx_t *c)
{
    int64_t wait = hs_ratelimit_message(c->who->user_id);
    if (wait > 0) {
        hs_reply_ratelimited(c->req, wait);
        return;
    }
    if (sd_claim(c))
        sd_lookup(c);
}

/* The stored txn (a retransmission after the first completed) and, for a
 * redaction, its target. */
static void sd_lookup(sd_ctx_t *c)
{
    /* A POST send has no txn ID, and a fresh txn of a known-new device
     * cannot be stored: straight to the room. */
    if ((!c->txn_key && !c->redacts) || sd_txn_surely_new(c)) {
        rm_room_get(c->room_id, sd_have_room, c);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    /* The event of this txn on this path (a POST redaction cannot exist:
     * redactions always have a txnId).  Only /redact events record the
     * redacted event, so the two paths' txns stay apart. */
    if (c->redacts)
        mx_sql_add(b, "SELECT event_id FROM events WHERE sender = ? AND txn_device = ?"
                      " AND txn_id = ? AND room_id = ? AND redacts = ?", "sssss",
                   c->who->user_id, c->dev, c->txn_id ? c->txn_id : "", c->room_id, c->redacts);
    else
        mx_sql_add(b, "SELECT event_id FROM events WHERE sender = ? AND txn_device = ?"
                      " AND txn_id = ? AND room_id = ? AND type = ? AND redacts IS NULL",
                   "sssss", c->who->user_id, c->dev, c->txn_id ? c->txn_id : "", c->room_id,
                   c->type);
    int n = 1;
    if (c->redacts) {
        mx_sql_add(b, "SELECT json, room_id FROM events WHERE event_id = ?", "s", c->redacts);
        n++;
    }
    c->devq = -1;
    if (c->fkey && !sd_dev_state(c)) {
        /* Whether this device stored any txn before (read once per device). */
        mx_sql_add(b, "SELECT 1 FROM events WHERE sender = ? AND txn_device = ?"
                      " AND txn_id IS NOT NULL LIMIT 1", "ss", c->who->user_id, c->dev);
        c->devq = n;
    }
    if (mx_sql_run(b, sd_txn_checked, c) < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(c->req, MX_EDB, "txn lookup");
    }
}

static sd_ctx_t *sd_new(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    sd_ctx_t *c = mx_palloc(pool, sizeof(*c));
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->who = rm_who_copy(req, who);
    c->room_id = mx_req_param(req, "roomId");
    c->dev = rm_device_key(pool, who);
    mx_pool_on_free(pool, sd_free, c);
    return c;
}

static void sd_send_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    sd_ctx_t *c = sd_new(req, who);
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    c->type = mx_req_param(req, "eventType");
    c->txn_id = mx_req_param(req, "txnId");
    bool post = strcmp(mx_req_method(req), "POST") == 0;
    if (!rm_room_id_ok(c->room_id) || !c->type || !*c->type ||
        (!post && (!c->txn_id || !*c->txn_id))) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID, event type or txn ID");
        return;
    }
    if (!post)
        c->txn_key = mx_psprintf(mx_req_pool(req), "send/%s/%s/%s", c->room_id, c->type,
                                 c->txn_id);
    else
        c->txn_id = NULL;
    c->content = json_deep_copy(body);
    sd_start(c);
}

static int sd_send(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, sd_send_authed, NULL);
}

static void sd_redact_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = rm_body(req);
    if (!body)
        return;
    sd_ctx_t *c = sd_new(req, who);
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return;
    }
    const char *txn = mx_req_param(req, "txnId");
    c->type = "m.room.redaction";
    c->redacts = mx_req_param(req, "eventId");
    if (!rm_room_id_ok(c->room_id) || !c->redacts || c->redacts[0] != '$' || !txn || !*txn) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "bad room ID, event ID or txn ID");
        return;
    }
    c->txn_id = txn;
    c->txn_key = mx_psprintf(mx_req_pool(req), "redact/%s/%s/%s", c->room_id, c->redacts, txn);
    c->content = json_object();
    json_t *reason = json_object_get(body, "reason");
    if (json_is_string(reason))
        json_object_set(c->content, "reason", reason);
    sd_start(c);
}

static int sd_redact(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, sd_redact_authed, NULL);
}

int rm_send_routes(void)
{
    int rc;
    if ((rc = rm_route("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", sd_send,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("POST", "/rooms/{roomId}/send/{eventType}", sd_send,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = rm_route("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", sd_redact,
                       MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
