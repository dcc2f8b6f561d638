/*
 * rm_cache.c: the room cache and the event pipeline.
 *
 * The loop keeps, per room it has touched, the room version, the current
 * state (event JSON and IDs), the forward extremities, the max depth and
 * the current state group.  A room is loaded lazily with one read batch;
 * callers arriving while it loads wait for the same batch.
 *
 * Events are built, auth-checked and applied to the cache synchronously in
 * one loop turn (rm_txn_add), so sends to one room are serialised by the
 * loop itself; their writes go into the request's one write batch.  Write
 * batches run in submission order (the SQLite writer is one thread), so a
 * later event never commits before the one it points at, unless the earlier
 * batch fails — then the room is dropped and reloaded from what committed.
 */
#include "rooms.h"
#include "../push/push.h"
#include "../relations/relations.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RM_SNAPSHOT_EVERY 100

typedef struct rm_loader {
    char *room_id;
    size_t n, cap;
    struct { rm_room_fn fn; void *ud; } *w;
} rm_loader_t;

typedef struct rm_cache {
    rm_map_t *rooms;     /* room_id -> rm_room_t */
    rm_map_t *loading;   /* room_id -> rm_loader_t */
    int64_t sg_max;      /* highest state group ID handed out */
    json_t *ext_hashes;  /* v1/v2 rooms: extremity event ID -> its `hashes`,
                            for prev_events' [id, hashes] pairs */
} rm_cache_t;

static rm_cache_t rm_c;

static rm_cache_t *rm_cache(void)
{
    if (!rm_c.rooms) {
        rm_c.rooms = rm_map_new();
        rm_c.loading = rm_map_new();
        rm_c.ext_hashes = json_object();
    }
    return &rm_c;
}

void rm_set_state_group_max(int64_t max)
{
    if (max > rm_c.sg_max)
        rm_c.sg_max = max;
}

int64_t rm_next_state_group(void)
{
    return ++rm_c.sg_max;
}

/* ------------------------------------------------------------ rooms --- */

rm_room_t *rm_room_new(const hs_room_version_t *rv)
{
    rm_room_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->refs = 1;
    r->rv = rv;
    r->state = json_object();
    r->state_ids = json_object();
    r->extremities = json_array();
    r->dropped = true; /* not in the cache until it has an ID */
    return r;
}

void rm_room_ref(rm_room_t *r)
{
    r->refs++;
}

void rm_room_unref(rm_room_t *r)
{
    if (!r || --r->refs > 0)
        return;
    free(r->room_id);
    json_decref(r->state);
    json_decref(r->state_ids);
    json_decref(r->extremities);
    free(r);
}

/* Puts a new room (with its ID set) into the cache; the cache takes a
 * reference. */
static void rm_room_insert(rm_room_t *r)
{
    rm_cache_t *c = rm_cache();
    rm_room_t *old = rm_map_get(c->rooms, r->room_id);
    if (old == r)
        return;
    if (old) {
        old->dropped = true;
        rm_room_unref(old);
    }
    if (rm_map_put(c->rooms, r->room_id, r) == 0) {
        r->dropped = false;
        rm_room_ref(r);
    }
}

void rm_room_drop(rm_room_t *r)
{
    rm_cache_t *c = rm_cache();
    if (!r || r->dropped || !r->room_id)
        return;
    r->dropped = true;
    if (rm_map_get(c->rooms, r->room_id) == r) {
        rm_map_del(c->rooms, r->room_id);
        rm_room_unref(r);
    }
}

rm_room_t *rm_room_cached(const char *room_id)
{
    return room_id ? rm_map_get(rm_cache()->rooms, room_id) : NULL;
}

static void rm_loaded(int status, mx_sql_res_t *res, void *ud)
{
    rm_loader_t *l = ud;
    rm_cache_t *c = rm_cache();
    rm_room_t *r = NULL;

    rm_map_del(c->loading, l->room_id);
    if (status == 0 && mx_sql_nrows(res, 0) == 0)
        status = -ENOENT;
    if (status == 0) {
        const hs_room_version_t *rv = hs_room_version_get(mx_sql_text(res, 0, 0, 0));
        if (!rv) {
            status = -ENOTSUP;
        } else if ((r = rm_room_new(rv)) != NULL) {
            r->room_id = strdup(l->room_id);
            r->state_group = mx_sql_int(res, 0, 0, 1);
            r->sg_deltas = mx_sql_int(res, 0, 0, 2);
            for (int i = 0; i < mx_sql_nrows(res, 1); i++) {
                char *k = hs_state_key_join(mx_sql_text(res, 1, i, 0), mx_sql_text(res, 1, i, 1));
                const char *js = mx_sql_text(res, 1, i, 3);
                json_t *ev = js ? json_loads(js, 0, NULL) : NULL;
                if (k && ev) {
                    json_object_set_new(r->state, k, ev);
                    json_object_set_new(r->state_ids, k, json_string(mx_sql_text(res, 1, i, 2)));
                } else {
                    json_decref(ev);
                }
                free(k);
            }
            for (int i = 0; i < mx_sql_nrows(res, 2); i++) {
                json_array_append_new(r->extremities, json_string(mx_sql_text(res, 2, i, 0)));
                if (rv->event_format == HS_EVFMT_V1 && mx_sql_text(res, 2, i, 1)) {
                    json_t *xe = json_loads(mx_sql_text(res, 2, i, 1), 0, NULL);
                    json_t *xh = json_object_get(xe, "hashes");
                    if (xh)
                        json_object_set(c->ext_hashes, mx_sql_text(res, 2, i, 0), xh);
                    json_decref(xe);
                }
            }
            r->depth = mx_sql_int(res, 3, 0, 0);
            r->last_stream = mx_sql_int(res, 3, 0, 1);
            /* A room loaded meanwhile by createRoom wins (it is newer). */
            rm_room_t *cur = rm_map_get(c->rooms, l->room_id);
            if (cur) {
                rm_room_unref(r);
                r = cur;
            } else {
                rm_room_insert(r);
                rm_room_unref(r);
            }
        } else {
            status = -ENOMEM;
        }
    } else if (status != -ENOENT) {
        mx_log("homeserver", MX_LOG_ERROR, "rooms: loading %s: %s", l->room_id,
               res ? mx_sql_errmsg(res) : "?");
    }
    if (r)
        rm_room_ref(r);
    for (size_t i = 0; i < l->n; i++)
        l->w[i].fn(r, r ? 0 : status, l->w[i].ud);
    if (r)
        rm_room_unref(r);
    free(l->w);
    free(l->room_id);
    free(l);
}

void rm_room_get(const char *room_id, rm_room_fn fn, void *ud)
{
    rm_cache_t *c = rm_cache();
    if (!room_id || !*room_id) {
        fn(NULL, -ENOENT, ud);
        return;
    }
    rm_room_t *r = rm_map_get(c->rooms, room_id);
    if (r) {
        rm_room_ref(r);
        fn(r, 0, ud);
        rm_room_unref(r);
        return;
    }
    rm_loader_t *l = rm_map_get(c->loading, room_id);
    if (!l) {
        mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
        l = calloc(1, sizeof(*l));
        if (!b || !l || !(l->room_id = strdup(room_id))) {
            free(l);
            mx_sql_batch_free(b);
            fn(NULL, -ENOMEM, ud);
            return;
        }
        mx_sql_add(b, "SELECT room_version, state_group, sg_deltas FROM rooms WHERE room_id = ?",
                   "s", room_id);
        mx_sql_add(b, "SELECT c.type, c.state_key, c.event_id, e.json FROM current_state c"
                      " JOIN events e ON e.event_id = c.event_id WHERE c.room_id = ?",
                   "s", room_id);
        mx_sql_add(b, "SELECT x.event_id, e.json FROM room_extremities x LEFT JOIN events e"
                      " ON e.event_id = x.event_id WHERE x.room_id = ?", "s", room_id);
        mx_sql_add(b, "SELECT COALESCE(MAX(depth), 0), COALESCE(MAX(stream_ordering), 0)"
                      " FROM events WHERE room_id = ?", "s", room_id);
        if (mx_sql_run(b, rm_loaded, l) < 0) {
            free(l->room_id);
            free(l);
            fn(NULL, MX_EDB, ud);
            return;
        }
        rm_map_put(c->loading, room_id, l);
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        void *p = realloc(l->w, cap * sizeof(*l->w));
        if (!p) {
            fn(NULL, -ENOMEM, ud);
            return;
        }
        l->w = p;
        l->cap = cap;
    }
    l->w[l->n].fn = fn;
    l->w[l->n].ud = ud;
    l->n++;
}

static void rm_free_room(const char *key, void *val, void *ud)
{
    (void)key;
    (void)ud;
    rm_room_t *r = val;
    r->dropped = true;
    rm_room_unref(r);
}

void rm_cache_stop(void)
{
    if (rm_c.rooms) {
        rm_map_each(rm_c.rooms, rm_free_room, NULL);
        rm_map_free(rm_c.rooms);
    }
    rm_map_free(rm_c.loading);
    rm_c.rooms = rm_c.loading = NULL;
    json_decref(rm_c.ext_hashes);
    rm_c.ext_hashes = NULL;
}

/* ------------------------------------------------------------- state --- */

const json_t *rm_state_get(const rm_room_t *r, const char *type, const char *state_key)
{
    char *k = hs_state_key_join(type, state_key);
    const json_t *ev = k ? json_object_get(r->state, k) : NULL;
    free(k);
    return ev;
}

const char *rm_state_id(const rm_room_t *r, const char *type, const char *state_key)
{
    char *k = hs_state_key_join(type, state_key);
    const char *id = k ? json_string_value(json_object_get(r->state_ids, k)) : NULL;
    free(k);
    return id;
}

const json_t *rm_state_lookup(void *ud, const char *type, const char *state_key,
                              const char **event_id)
{
    const rm_room_t *r = ud;
    char *k = hs_state_key_join(type, state_key);
    const json_t *ev = k ? json_object_get(r->state, k) : NULL;
    if (event_id)
        *event_id = k ? json_string_value(json_object_get(r->state_ids, k)) : NULL;
    free(k);
    return ev;
}

const char *rm_membership(const rm_room_t *r, const char *user_id)
{
    const json_t *ev = rm_state_get(r, "m.room.member", user_id);
    return ev ? hs_ev_membership(ev) : NULL;
}

bool rm_may_send_state(const rm_room_t *r, const char *user_id, const char *type)
{
    const json_t *create = rm_state_get(r, "m.room.create", "");
    const json_t *pl = rm_state_get(r, "m.room.power_levels", "");
    const char *m = rm_membership(r, user_id);
    return m && strcmp(m, "join") == 0 &&
           hs_user_power(r->rv, create, pl, user_id) >= hs_event_required_power(pl, type, 1);
}

bool rm_room_error(mx_req_t *req, const rm_room_t *room, int status)
{
    if (room)
        return false;
    if (status == -ENOENT)
        mx_req_error(req, 404, "M_NOT_FOUND", "unknown room");
    else
        hs_reply_storage_error(req, status, "loading room");
    return true;
}

json_t *rm_room_members(const rm_room_t *r, const char *membership)
{
    json_t *out = json_array();
    const char *k;
    json_t *ev;
    json_object_foreach(r->state, k, ev) {
        if (strncmp(k, "m.room.member\x1f", 14) != 0)
            continue;
        const char *m = hs_ev_membership(ev);
        if (m && (!membership || strcmp(m, membership) == 0))
            json_array_append_new(out, json_string(k + 14));
    }
    return out;
}

int rm_room_count(const rm_room_t *r, const char *membership)
{
    int n = 0;
    const char *k;
    json_t *ev;
    json_object_foreach(r->state, k, ev) {
        if (strncmp(k, "m.room.member\x1f", 14) != 0)
            continue;
        const char *m = hs_ev_membership(ev);
        if (m && strcmp(m, membership) == 0)
            n++;
    }
    return n;
}

/* ---------------------------------------------------------- pipeline --- */

typedef struct rm_txn_ev {
    char *event_id;
    int64_t so;
    char *notify_user;   /* target of a membership change, or NULL */
} rm_txn_ev_t;

struct rm_txn {
    rm_room_t *room;
    mx_sql_batch_t *batch;
    rm_txn_ev_t *evs;
    int n, cap;
    rm_txn_done_fn cb;
    void *ud;
};

rm_txn_t *rm_txn_new(rm_room_t *room)
{
    rm_txn_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->batch = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!t->batch) {
        free(t);
        return NULL;
    }
    t->room = room;
    rm_room_ref(room);
    return t;
}

mx_sql_batch_t *rm_txn_batch(rm_txn_t *t)
{
    return t->batch;
}

rm_room_t *rm_txn_room(rm_txn_t *t)
{
    return t->room;
}

int rm_txn_count(const rm_txn_t *t)
{
    return t->n;
}

static void rm_txn_free(rm_txn_t *t)
{
    for (int i = 0; i < t->n; i++) {
        free(t->evs[i].event_id);
        free(t->evs[i].notify_user);
    }
    free(t->evs);
    if (t->batch)
        mx_sql_batch_free(t->batch);
    rm_room_unref(t->room);
    free(t);
}

void rm_txn_abort(rm_txn_t *t)
{
    if (!t)
        return;
    if (t->n) {
        rm_room_drop(t->room);
        for (int i = 0; i < t->n; i++)
            hs_stream_persisted(HS_STREAM_EVENTS, t->evs[i].so);
    }
    rm_txn_free(t);
}

/* The state writes of a state event: a new state group (snapshot or a
 * one-entry delta), the room's pointer to it, current_state. */
static void rm_add_state_writes(rm_txn_t *t, const char *type, const char *sk,
                                const char *event_id)
{
    rm_room_t *r = t->room;
    mx_sql_batch_t *b = t->batch;
    int64_t sg = rm_next_state_group();
    int snapshot = r->state_group == 0 || r->sg_deltas >= RM_SNAPSHOT_EVERY;

    if (r->state_group)
        mx_sql_add(b, "INSERT INTO state_groups (id, room_id, prev_group, is_snapshot)"
                      " VALUES (?, ?, ?, ?)", "isii", sg, r->room_id, r->state_group,
                   (int64_t)snapshot);
    else
        mx_sql_add(b, "INSERT INTO state_groups (id, room_id, prev_group, is_snapshot)"
                      " VALUES (?, ?, NULL, ?)", "isi", sg, r->room_id, (int64_t)snapshot);
    if (snapshot) {
        const char *k;
        json_t *v;
        json_object_foreach(r->state_ids, k, v) {
            const char *sep = strchr(k, HS_STATE_KEY_SEP);
            if (!sep)
                continue;
            char *ty = strndup(k, (size_t)(sep - k));
            mx_sql_add(b, "INSERT INTO state_group_entries (group_id, type, state_key, event_id)"
                          " VALUES (?, ?, ?, ?)", "isss", sg, ty, sep + 1, json_string_value(v));
            free(ty);
        }
        r->sg_deltas = 0;
    } else {
        mx_sql_add(b, "INSERT INTO state_group_entries (group_id, type, state_key, event_id)"
                      " VALUES (?, ?, ?, ?)", "isss", sg, type, sk, event_id);
        r->sg_deltas++;
    }
    r->state_group = sg;
    mx_sql_add(b, "UPDATE rooms SET state_group = ?, sg_deltas = ? WHERE room_id = ?", "iis",
               sg, r->sg_deltas, r->room_id);
    mx_sql_add(b, "INSERT INTO current_state (room_id, type, state_key, event_id)"
                  " VALUES (?, ?, ?, ?) ON CONFLICT (room_id, type, state_key)"
                  " DO UPDATE SET event_id = excluded.event_id",
               "ssss", r->room_id, type, sk, event_id);
}

/* Applies a redaction to the stored copy of the target and to the cache. */
static void rm_apply_redaction(rm_txn_t *t, const rm_ev_opts_t *o, const json_t *redaction,
                               const char *redaction_id)
{
    rm_room_t *r = t->room;
    json_t *red = hs_event_redact(r->rv, o->redact_target);
    if (!red)
        return;
    char *js = json_dumps(red, JSON_COMPACT);
    json_t *because = rm_client_event(redaction, redaction_id, NULL, NULL, NULL, NULL,
                                      RM_CE_ROOM_ID);
    json_t *uns = json_pack("{s:o}", "redacted_because", because);
    char *us = json_dumps(uns, JSON_COMPACT);
    mx_sql_add(t->batch, "UPDATE events SET json = ?, unsigned_json = ?, redacted = 1"
                         " WHERE event_id = ? AND room_id = ?",
               "ssss", js, us, o->redacts, r->room_id);
    free(js);
    free(us);
    json_decref(uns);
    const char *sk = hs_ev_state_key(o->redact_target);
    const char *ty = hs_ev_type(o->redact_target);
    if (sk && ty) {
        char *k = hs_state_key_join(ty, sk);
        const char *cur = k ? json_string_value(json_object_get(r->state_ids, k)) : NULL;
        if (cur && strcmp(cur, o->redacts) == 0)
            json_object_set(r->state, k, red);
        free(k);
    }
    json_decref(red);
}

/* Appends the txn bookkeeping entry; 0 or -ENOMEM. */
static int rm_txn_push(rm_txn_t *t, const char *event_id, int64_t so, const char *notify)
{
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 8;
        void *p = realloc(t->evs, (size_t)cap * sizeof(*t->evs));
        if (!p)
            return -ENOMEM;
        t->evs = p;
        t->cap = cap;
    }
    t->evs[t->n].event_id = strdup(event_id);
    t->evs[t->n].so = so;
    t->evs[t->n].notify_user = notify ? strdup(notify) : NULL;
    t->n++;
    return 0;
}

/* prev_events for a new event: the extremities in the room version's
 * format (v1/v2: [id, {hashes}] pairs).  New reference. */
static json_t *rm_prev_refs(const rm_room_t *r)
{
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(r->extremities, i, v) {
        const char *id = json_string_value(v);
        json_t *h = json_object_get(rm_cache()->ext_hashes, id);
        json_t *fake = h ? json_pack("{s:O}", "hashes", h) : NULL;
        json_array_append_new(out, hs_ev_ref_new(r->rv, id, fake));
        json_decref(fake);
    }
    return out;
}

int rm_txn_add(rm_txn_t *t, const char *type, const char *state_key, const char *sender,
               const json_t *content, const rm_ev_opts_t *opts, const char **event_id,
               char *why, size_t whylen)
{
    static const rm_ev_opts_t no_opts;
    const rm_ev_opts_t *o = opts ? opts : &no_opts;
    rm_room_t *r = t->room;
    const hs_room_version_t *rv = r->rv;
    int is_create = strcmp(type, "m.room.create") == 0;
    int rc = -EINVAL;
    char *eid = NULL, *canon = NULL;

    if (why && whylen)
        why[0] = '\0';
    if (!json_is_object(content) || strlen(type) > 255 || (state_key && strlen(state_key) > 255)) {
        snprintf(why, whylen, "bad event");
        return -EINVAL;
    }
    if (is_create && r->room_id && json_object_size(r->state)) {
        snprintf(why, whylen, "room already created");
        return HS_EAUTH;
    }
    if (!is_create && !r->room_id)
        return -EINVAL;

    json_t *ev = json_object();
    json_object_set_new(ev, "type", json_string(type));
    json_object_set_new(ev, "sender", json_string(sender));
    json_object_set_new(ev, "content", json_deep_copy(content));
    json_object_set_new(ev, "origin_server_ts", json_integer((json_int_t)mx_now_ms()));
    if (state_key)
        json_object_set_new(ev, "state_key", json_string(state_key));
    if (!(is_create && rv->room_id_is_create_hash))
        json_object_set_new(ev, "room_id", json_string(r->room_id));
    if (o->redacts && !rv->redacts_in_content)
        json_object_set_new(ev, "redacts", json_string(o->redacts));
    int64_t depth = is_create ? 1 : r->depth + 1;
    json_object_set_new(ev, "depth", json_integer(depth));
    json_object_set_new(ev, "prev_events", is_create ? json_array() : rm_prev_refs(r));
    json_t *auth = hs_auth_events_select(rv, type, sender, state_key, content, rm_state_lookup, r);
    if (!auth) {
        rc = -ENOMEM;
        goto out;
    }
    json_object_set_new(ev, "auth_events", auth);
    rc = hs_event_finish(rv, ev, hs.server_name, mx_server_signing_key(), &eid);
    if (rc < 0 || !eid) {
        snprintf(why, whylen, "cannot sign event");
        rc = rc < 0 ? rc : -ENOMEM;
        goto out;
    }
    size_t clen = 0;
    canon = mx_json_canonical(ev, &clen);
    if (!canon) {
        rc = -EINVAL;
        goto out;
    }
    if ((int64_t)clen > (hs.conf.max_event_size > 0 ? hs.conf.max_event_size : 65536)) {
        snprintf(why, whylen, "event too large");
        rc = MX_ETOOBIG;
        goto out;
    }
    if (is_create && rv->room_id_is_create_hash) {
        free(r->room_id);
        r->room_id = hs_room_id_for_create(rv, ev);
        if (!r->room_id) {
            rc = -ENOMEM;
            goto out;
        }
    }
    /* Every event, local ones too, passes the auth rules against the
     * current state before it is stored. */
    rc = hs_auth_check(rv, ev, rm_state_lookup, r, why, whylen);
    if (rc != 0) {
        if (rc != HS_EAUTH)
            snprintf(why, whylen, "auth check failed (%d)", rc);
        goto out;
    }

    /* Accepted: queue the writes and update the cache. */
    mx_sql_batch_t *b = t->batch;
    int64_t so = hs_stream_next(HS_STREAM_EVENTS);
    json_t *uns = NULL;
    const char *prev_id = NULL;
    char *skey = state_key ? hs_state_key_join(type, state_key) : NULL;
    if (skey) {
        prev_id = json_string_value(json_object_get(r->state_ids, skey));
        const json_t *prev = json_object_get(r->state, skey);
        if (prev_id && prev) {
            uns = json_pack("{s:s, s:O, s:s?}", "replaces_state", prev_id, "prev_content",
                            json_object_get(prev, "content"), "prev_sender", hs_ev_sender(prev));
        }
    }
    const char *mship = strcmp(type, "m.room.member") == 0 ? hs_ev_membership(ev) : NULL;
    if (mship && (strcmp(mship, "invite") == 0 || strcmp(mship, "knock") == 0)) {
        /* The stripped state the invitee (or knocker) sees, taken before
         * this event changes the room. */
        if (!uns)
            uns = json_object();
        json_object_set_new(uns, strcmp(mship, "invite") == 0 ? "invite_room_state"
                                                               : "knock_room_state",
                            rm_stripped_state(r));
    }
    char *us = uns ? json_dumps(uns, JSON_COMPACT) : NULL;
    json_decref(uns);
    const char *membership = strcmp(type, "m.room.member") == 0 ? hs_ev_membership(ev) : NULL;
    if (is_create) {
        rm_room_insert(r);
        mx_sql_add(b, "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts)"
                      " VALUES (?, ?, ?, 0, ?)", "sssi", r->room_id, rv->id, sender,
                   (int64_t)mx_now_ms());
    }
    if (skey) {
        json_object_set(r->state, skey, ev);
        json_object_set_new(r->state_ids, skey, json_string(eid));
        rm_add_state_writes(t, type, state_key, eid);
    }
    free(skey);
    /* state_group: the state after the event; txn_device/txn_id also serve
     * the txn lookup of rm_send.c (index events_txn). */
    mx_sql_add(b, "INSERT INTO events (stream_ordering, event_id, room_id, type, state_key, sender,"
                  " depth, origin_server_ts, received_ts, state_group, membership, redacts,"
                  " txn_device, txn_id, unsigned_json, json)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               "isssssiiiissssss", so, eid, r->room_id, type, state_key, sender, depth,
               (int64_t)json_integer_value(json_object_get(ev, "origin_server_ts")),
               (int64_t)mx_now_ms(), r->state_group, membership, o->redacts, o->txn_device,
               o->txn_id, us, canon);
    free(us);
    mx_sql_add(b, "DELETE FROM room_extremities WHERE room_id = ?", "s", r->room_id);
    mx_sql_add(b, "INSERT INTO room_extremities (room_id, event_id) VALUES (?, ?)", "ss",
               r->room_id, eid);
    if (membership && state_key)
        mx_sql_add(b, "INSERT INTO room_memberships (room_id, user_id, membership, event_id,"
                      " stream_ordering, forgotten) VALUES (?, ?, ?, ?, ?, 0)"
                      " ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,"
                      " event_id = excluded.event_id, stream_ordering = excluded.stream_ordering,"
                      " forgotten = 0", "ssssi", r->room_id, state_key, membership, eid, so);
    if (o->redacts && o->redact_target)
        rm_apply_redaction(t, o, ev, eid);
    if (rv->event_format == HS_EVFMT_V1) {
        size_t xi;
        json_t *xv;
        json_array_foreach(r->extremities, xi, xv)
            json_object_del(rm_cache()->ext_hashes, json_string_value(xv));
        json_object_set(rm_cache()->ext_hashes, eid, json_object_get(ev, "hashes"));
    }
    json_decref(r->extremities);
    r->extremities = json_pack("[s]", eid);
    r->depth = depth;
    r->last_stream = so;
    /* Notification rows go into the event's own batch: counts commit with
     * the event and appear in the same /sync. */
    hs_push_on_event(r, ev, eid, so, b);
    hs_relations_on_event(r, ev, eid, so, o->redact_target ? o->redacts : NULL, b);
    rm_expiry_on_event(r, ev, eid, b);
    rc = rm_txn_push(t, eid, so, membership ? state_key : NULL);
    if (rc == 0 && event_id)
        *event_id = t->evs[t->n - 1].event_id;
out:
    free(canon);
    free(eid);
    json_decref(ev);
    return rc;
}

static void rm_committed(int status, mx_sql_res_t *res, void *ud)
{
    rm_txn_t *t = ud;
    t->batch = NULL; /* freed by the store */
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "rooms: write to %s failed: %s",
               t->room->room_id ? t->room->room_id : "?", res ? mx_sql_errmsg(res) : "?");
        rm_room_drop(t->room);
    }
    for (int i = 0; i < t->n; i++)
        hs_stream_persisted(HS_STREAM_EVENTS, t->evs[i].so);
    if (status == 0 && t->n) {
        hs_notify_room(t->room->room_id, HS_STREAM_EVENTS);
        for (int i = 0; i < t->n; i++)
            if (t->evs[i].notify_user) {
                const char *u = t->evs[i].notify_user;
                hs_notify_users(&u, 1, HS_STREAM_EVENTS);
            }
    }
    if (t->cb)
        t->cb(status, t, t->ud);
    rm_txn_free(t);
}

void rm_txn_commit(rm_txn_t *t, rm_txn_done_fn cb, void *ud)
{
    t->cb = cb;
    t->ud = ud;
    mx_sql_batch_t *b = t->batch;
    if (mx_sql_run(b, rm_committed, t) < 0) {
        /* mx_sql_run failing never calls back and leaves the batch ours. */
        rm_committed(MX_EDB, NULL, t);
        mx_sql_batch_free(b);
    }
}

void rm_reply_add_error(mx_req_t *req, int rc, const char *why)
{
    if (rc == HS_EAUTH)
        mx_req_error(req, 403, "M_FORBIDDEN", "%s", why && *why ? why : "forbidden");
    else if (rc == MX_ETOOBIG)
        mx_req_error(req, 413, "M_TOO_LARGE", "event too large");
    else if (rc == -EINVAL)
        mx_req_error(req, 400, "M_BAD_JSON", "%s", why && *why ? why : "bad event");
    else
        mx_req_error(req, 500, "M_UNKNOWN", "cannot build event (%d)", rc);
}

typedef struct rm_one {
    mx_req_t *req;
    json_t *reply;
} rm_one_t;

static void rm_one_done(int status, rm_txn_t *t, void *ud)
{
    rm_one_t *o = ud;
    if (status < 0) {
        json_decref(o->reply);
        hs_reply_storage_error(o->req, status, "sending event");
        return;
    }
    json_t *rep = o->reply ? o->reply : json_object();
    if (!json_object_get(rep, "event_id") && t->n)
        json_object_set_new(rep, "event_id", json_string(t->evs[t->n - 1].event_id));
    mx_req_reply_json(o->req, 200, rep);
}

int rm_send_one(mx_req_t *req, rm_room_t *room, const char *type, const char *state_key,
                const char *sender, const json_t *content, const rm_ev_opts_t *opts,
                json_t *reply)
{
    char why[256];
    rm_txn_t *t = rm_txn_new(room);
    rm_one_t *o = mx_palloc(mx_req_pool(req), sizeof(*o));
    if (!t || !o) {
        if (t)
            rm_txn_free(t);
        json_decref(reply);
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    int rc = rm_txn_add(t, type, state_key, sender, content, opts, NULL, why, sizeof(why));
    if (rc != 0) {
        rm_txn_abort(t);
        json_decref(reply);
        rm_reply_add_error(req, rc, why);
        return MX_DONE;
    }
    o->req = req;
    o->reply = reply;
    rm_txn_commit(t, rm_one_done, o);
    return MX_ASYNC;
}
