/*
 * svc_rlist.c: the admin room list (GET /_synapse/admin/v1/rooms) over
 * room summaries kept in memory and in the table `room_list_rooms`.
 *
 * A summary is what the list shows of a room (name, canonical alias,
 * member and state counts, flags), as C strings and numbers with folded
 * copies of the name and alias for search_term.  The summaries are kept
 * in `room_list_rooms` with the event stream position they hold
 * (`room_list_pos`), so a start reads plain rows (no event JSON) in the
 * background and the first list is as quick as the next.  The first start
 * over an existing database (no position yet) reads every room's state in
 * steps of RLX_STEP rooms, each written back, while the loop serves other
 * requests; lists asked meanwhile wait for it.
 *
 * Each list first brings the summaries up to date (one refresh at a time;
 * calls arriving meanwhile share the next one): the rooms with events
 * after the kept position (hs_stream_current never passes a write still
 * committing), the public flags (the directory changes them without an
 * event) and the number of rooms (a room deleted elsewhere: the room IDs
 * are read and the missing ones dropped).  Changed summaries are written
 * back with the new position in one transaction, so the table never holds
 * rows newer than the position it claims ... or older.
 *
 * Filters, search and paging run over the rooms sorted in the asked
 * order, kept per order while no summary changes (a sort of 10,000 rooms
 * is a few ms: the comparisons read struct fields).
 */
#define _GNU_SOURCE /* qsort_r */
#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define RLX_STEP 500             /* rooms read per warm-up step */
#define RLX_POS_EVERY_MS 10000   /* position written at most this often when no row changed */
#define RLX_TICK_MS 5000         /* background refresh when events came and no list asked */

/* One room's summary.  Strings are malloc'd (NULL for JSON null); the
 * folded copies lname/lalias too. */
typedef struct rlx_room {
    char *room_id, *name, *alias, *version, *creator, *encryption, *join_rules, *guest_access,
        *history_visibility, *room_type;
    char *lname, *lalias;
    int64_t joined, joined_local, state_events;
    bool federatable, is_public, seen;
} rlx_room_t;

/* The sortable keys (order_by values, "size" is state_events). */
enum {
    K_NAME, K_ALIAS, K_JOINED, K_JOINED_LOCAL, K_VERSION, K_CREATOR, K_ENCRYPTION, K_FEDERATABLE,
    K_PUBLIC, K_JOIN_RULES, K_GUEST_ACCESS, K_HISTORY, K_STATE_EVENTS, K_ROOM_ID, K_COUNT
};
static const char *const rlx_keys[K_COUNT] = {
    "name", "canonical_alias", "joined_members", "joined_local_members", "version", "creator",
    "encryption", "federatable", "public", "join_rules", "guest_access", "history_visibility",
    "state_events", "room_id",
};

typedef struct rlx_sort {
    int key, dir;
} rlx_sort_t;

struct svc_rlx {
    rlx_room_t **v;           /* every room, in no order (owned) */
    size_t n, cap;
    json_t *idx;              /* room_id -> index in v */
    int64_t pos;              /* event stream position the summaries hold */
    uint64_t gen;             /* bumped on any change */
    rlx_room_t **sorted[K_COUNT][2]; /* borrowed pointers, valid for sorted_gen */
    uint64_t sorted_gen[K_COUNT][2];
    uint64_t pos_written_ms;
    int64_t pos_written;
    char *after;              /* warm-up: last room ID read */
    int64_t warm_to;          /* warm-up: position taken when it began */
    bool ready, busy, dead;
    svc_call_t *cur, *next;   /* waiting calls (linked through priv) */
    uv_timer_t *tick;         /* background refresh (owned; closed by svc_rlx_free) */
};

static void rlx_run_next(svc_rlx_t *x);
static void rlx_warm_begin(svc_rlx_t *x);

/* ------------------------------------------------------------ rooms --- */

static char *rlx_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *rlx_fold(const char *s)
{
    char *o = s ? malloc(strlen(s) + 1) : NULL;
    if (o)
        svc_text_lower(s, o);
    return o;
}

static void rlx_room_free(rlx_room_t *r)
{
    if (!r)
        return;
    char **s[] = { &r->room_id, &r->name, &r->alias, &r->version, &r->creator, &r->encryption,
                   &r->join_rules, &r->guest_access, &r->history_visibility, &r->room_type,
                   &r->lname, &r->lalias };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        free(*s[i]);
    free(r);
}

/* A room from row `i` of statement `st` (the columns of RLX_COLS). */
#define RLX_COLS                                                                              \
    "room_id, name, canonical_alias, version, creator, encryption, join_rules, guest_access," \
    " history_visibility, room_type, federatable, joined_members, joined_local_members,"      \
    " state_events"
static rlx_room_t *rlx_room_row(const mx_sql_res_t *res, int st, int i)
{
    rlx_room_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    char **s[] = { &r->room_id, &r->name, &r->alias, &r->version, &r->creator, &r->encryption,
                   &r->join_rules, &r->guest_access, &r->history_visibility, &r->room_type };
    for (int k = 0; k < 10; k++)
        *s[k] = mx_sql_is_null(res, st, i, k) ? NULL : strdup(mx_sql_text(res, st, i, k));
    r->federatable = mx_sql_int(res, st, i, 10) != 0;
    r->joined = mx_sql_int(res, st, i, 11);
    r->joined_local = mx_sql_int(res, st, i, 12);
    r->state_events = mx_sql_int(res, st, i, 13);
    r->lname = rlx_fold(r->name);
    r->lalias = rlx_fold(r->alias);
    if (!r->room_id || (r->name && !r->lname) || (r->alias && !r->lalias)) {
        rlx_room_free(r);
        return NULL;
    }
    return r;
}

/* A room from a summary object of svc_room_summaries. */
static rlx_room_t *rlx_room_json(const json_t *o)
{
    rlx_room_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->room_id = rlx_dup(svc_qstr(o, "room_id"));
    r->name = rlx_dup(svc_qstr(o, "name"));
    r->alias = rlx_dup(svc_qstr(o, "canonical_alias"));
    r->version = rlx_dup(svc_qstr(o, "version"));
    r->creator = rlx_dup(svc_qstr(o, "creator"));
    r->encryption = rlx_dup(svc_qstr(o, "encryption"));
    r->join_rules = rlx_dup(svc_qstr(o, "join_rules"));
    r->guest_access = rlx_dup(svc_qstr(o, "guest_access"));
    r->history_visibility = rlx_dup(svc_qstr(o, "history_visibility"));
    r->room_type = rlx_dup(svc_qstr(o, "room_type"));
    r->federatable = json_is_true(json_object_get(o, "federatable"));
    r->is_public = json_is_true(json_object_get(o, "public"));
    r->joined = svc_qint(o, "joined_members", 0);
    r->joined_local = svc_qint(o, "joined_local_members", 0);
    r->state_events = svc_qint(o, "state_events", 0);
    r->lname = rlx_fold(r->name);
    r->lalias = rlx_fold(r->alias);
    if (!r->room_id || (r->name && !r->lname) || (r->alias && !r->lalias)) {
        rlx_room_free(r);
        return NULL;
    }
    return r;
}

static bool rlx_streq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* Same summary (the public flag apart: read on its own). */
static bool rlx_room_same(const rlx_room_t *a, const rlx_room_t *b)
{
    return rlx_streq(a->name, b->name) && rlx_streq(a->alias, b->alias) &&
           rlx_streq(a->version, b->version) && rlx_streq(a->creator, b->creator) &&
           rlx_streq(a->encryption, b->encryption) && rlx_streq(a->join_rules, b->join_rules) &&
           rlx_streq(a->guest_access, b->guest_access) &&
           rlx_streq(a->history_visibility, b->history_visibility) &&
           rlx_streq(a->room_type, b->room_type) && a->federatable == b->federatable &&
           a->joined == b->joined && a->joined_local == b->joined_local &&
           a->state_events == b->state_events;
}

static rlx_room_t *rlx_get(svc_rlx_t *x, const char *room_id)
{
    json_t *i = json_object_get(x->idx, room_id);
    return i ? x->v[json_integer_value(i)] : NULL;
}

/* Puts `r` (taken) in place of the room with its ID.  Returns 1 when the
 * summary changed, 0 when it was the same (r freed), -ENOMEM. */
static int rlx_put(svc_rlx_t *x, rlx_room_t *r)
{
    json_t *i = json_object_get(x->idx, r->room_id);
    if (i) {
        rlx_room_t **slot = &x->v[json_integer_value(i)];
        r->is_public = (*slot)->is_public;
        if (rlx_room_same(*slot, r)) {
            rlx_room_free(r);
            return 0;
        }
        rlx_room_free(*slot);
        *slot = r;
        x->gen++;
        return 1;
    }
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 1024;
        rlx_room_t **v = realloc(x->v, cap * sizeof(*v));
        if (!v) {
            rlx_room_free(r);
            return -ENOMEM;
        }
        x->v = v;
        x->cap = cap;
    }
    if (json_object_set_new(x->idx, r->room_id, json_integer((json_int_t)x->n)) < 0) {
        rlx_room_free(r);
        return -ENOMEM;
    }
    x->v[x->n++] = r;
    x->gen++;
    return 1;
}

/* Drops the room at index `i` (the last one takes its place). */
static void rlx_drop_at(svc_rlx_t *x, size_t i)
{
    rlx_room_t *r = x->v[i];
    json_object_del(x->idx, r->room_id);
    rlx_room_free(r);
    x->v[i] = x->v[--x->n];
    if (i < x->n)
        json_object_set_new(x->idx, x->v[i]->room_id, json_integer((json_int_t)i));
    x->gen++;
}

static void rlx_clear(svc_rlx_t *x)
{
    for (size_t i = 0; i < x->n; i++)
        rlx_room_free(x->v[i]);
    for (int k = 0; k < K_COUNT; k++)
        for (int d = 0; d < 2; d++)
            free(x->sorted[k][d]);
    free(x->v);
    free(x->after);
    json_decref(x->idx);
}

/* ------------------------------------------------------- write-back --- */

static void rlx_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "admin: room list summaries not written: %s",
               res ? mx_sql_errmsg(res) : "?");
}

static void rlx_add_upsert(mx_sql_batch_t *b, const rlx_room_t *r)
{
    mx_sql_add(b, "INSERT INTO room_list_rooms (" RLX_COLS ") VALUES"
                  " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room_id) DO UPDATE SET"
                  " name = excluded.name, canonical_alias = excluded.canonical_alias,"
                  " version = excluded.version, creator = excluded.creator,"
                  " encryption = excluded.encryption, join_rules = excluded.join_rules,"
                  " guest_access = excluded.guest_access,"
                  " history_visibility = excluded.history_visibility,"
                  " room_type = excluded.room_type, federatable = excluded.federatable,"
                  " joined_members = excluded.joined_members,"
                  " joined_local_members = excluded.joined_local_members,"
                  " state_events = excluded.state_events",
               "ssssssssssiiii", r->room_id, r->name, r->alias, r->version, r->creator,
               r->encryption, r->join_rules, r->guest_access, r->history_visibility,
               r->room_type, (int64_t)r->federatable, r->joined, r->joined_local,
               r->state_events);
}

static void rlx_add_pos(mx_sql_batch_t *b, int64_t pos)
{
    mx_sql_add(b, "INSERT INTO room_list_pos (id, pos) VALUES (0, ?)"
                  " ON CONFLICT (id) DO UPDATE SET pos = excluded.pos", "i", pos);
}

/* Writes the rooms `changed` (room IDs, NULL: none) and `gone`, and the
 * position `pos` when >= 0, in one transaction. */
static void rlx_write(svc_rlx_t *x, const json_t *changed, const json_t *gone, int64_t pos)
{
    if (json_array_size(changed) == 0 && json_array_size(gone) == 0 &&
        (pos < 0 || (pos == x->pos_written) ||
         mx_now_ms() - x->pos_written_ms < RLX_POS_EVERY_MS))
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b)
        return;
    size_t i;
    json_t *v;
    json_array_foreach(changed, i, v) {
        const rlx_room_t *r = rlx_get(x, json_string_value(v));
        if (r)
            rlx_add_upsert(b, r);
    }
    json_array_foreach(gone, i, v)
        mx_sql_add(b, "DELETE FROM room_list_rooms WHERE room_id = ?", "s",
                   json_string_value(v));
    if (pos >= 0) {
        rlx_add_pos(b, pos);
        x->pos_written = pos;
        x->pos_written_ms = mx_now_ms();
    }
    if (mx_sql_run(b, rlx_written, NULL) < 0)
        mx_sql_batch_free(b);
}

/* ------------------------------------------------------------- page --- */

static int rlx_strcmp(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

static int rlx_cmp(const void *pa, const void *pb, void *arg)
{
    const rlx_sort_t *s = arg;
    const rlx_room_t *a = *(rlx_room_t *const *)pa, *b = *(rlx_room_t *const *)pb;
    int r = 0;
    switch (s->key) {
    case K_NAME: r = rlx_strcmp(a->name, b->name); break;
    case K_ALIAS: r = rlx_strcmp(a->alias, b->alias); break;
    case K_JOINED: r = (a->joined > b->joined) - (a->joined < b->joined); break;
    case K_JOINED_LOCAL:
        r = (a->joined_local > b->joined_local) - (a->joined_local < b->joined_local);
        break;
    case K_VERSION: r = rlx_strcmp(a->version, b->version); break;
    case K_CREATOR: r = rlx_strcmp(a->creator, b->creator); break;
    case K_ENCRYPTION: r = rlx_strcmp(a->encryption, b->encryption); break;
    case K_FEDERATABLE: r = (int)a->federatable - (int)b->federatable; break;
    case K_PUBLIC: r = (int)a->is_public - (int)b->is_public; break;
    case K_JOIN_RULES: r = rlx_strcmp(a->join_rules, b->join_rules); break;
    case K_GUEST_ACCESS: r = rlx_strcmp(a->guest_access, b->guest_access); break;
    case K_HISTORY: r = rlx_strcmp(a->history_visibility, b->history_visibility); break;
    case K_STATE_EVENTS:
        r = (a->state_events > b->state_events) - (a->state_events < b->state_events);
        break;
    default: break;
    }
    if (r == 0)
        r = strcmp(a->room_id, b->room_id);
    return r * s->dir;
}

/* Every room in order `key`/`dir` (index 0: ascending), kept until a
 * summary changes.  NULL on OOM. */
static rlx_room_t **rlx_sorted(svc_rlx_t *x, int key, int asc)
{
    int d = asc ? 0 : 1;
    if (x->sorted[key][d] && x->sorted_gen[key][d] == x->gen)
        return x->sorted[key][d];
    rlx_room_t **v = realloc(x->sorted[key][d], (x->n ? x->n : 1) * sizeof(*v));
    if (!v)
        return NULL;
    memcpy(v, x->v, x->n * sizeof(*v));
    rlx_sort_t s = { key, asc ? 1 : -1 };
    qsort_r(v, x->n, sizeof(*v), rlx_cmp, &s);
    x->sorted[key][d] = v;
    x->sorted_gen[key][d] = x->gen;
    return v;
}

/* Synapse's search_term: LOWER(name) LIKE '%term%', LOWER(canonical_alias)
 * LIKE '#%term%:%', or room_id = term (the term is matched literally). */
static bool rlx_match(const rlx_room_t *r, const char *term, const char *lterm, size_t ll)
{
    if (r->lname && svc_text_has(r->lname, strlen(r->lname), lterm, ll))
        return true;
    if (r->lalias && r->lalias[0] == '#') {
        const char *colon = strrchr(r->lalias, ':');
        if (colon && svc_text_has(r->lalias + 1, (size_t)(colon - r->lalias - 1), lterm, ll))
            return true;
    }
    return !strcmp(r->room_id, term);
}

static json_t *rlx_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *rlx_room_obj(const rlx_room_t *r)
{
    return json_pack("{s:s, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:b, s:b, s:o, s:o, s:o, s:I,"
                     " s:o}",
                     "room_id", r->room_id, "name", rlx_str(r->name), "canonical_alias",
                     rlx_str(r->alias), "joined_members", (json_int_t)r->joined,
                     "joined_local_members", (json_int_t)r->joined_local, "version",
                     rlx_str(r->version), "creator", rlx_str(r->creator), "encryption",
                     rlx_str(r->encryption), "federatable", r->federatable, "public",
                     r->is_public, "join_rules", rlx_str(r->join_rules), "guest_access",
                     rlx_str(r->guest_access), "history_visibility",
                     rlx_str(r->history_visibility), "state_events",
                     (json_int_t)r->state_events, "room_type", rlx_str(r->room_type));
}

static int rlx_key(const char *order)
{
    if (!order)
        return K_NAME;
    if (!strcmp(order, "size"))
        return K_STATE_EVENTS;
    for (int k = 0; k < K_COUNT; k++)
        if (!strcmp(rlx_keys[k], order))
            return k;
    return -1;
}

static json_t *rlx_page(svc_rlx_t *x, const json_t *q, int64_t from)
{
    const char *term = svc_qstr(q, "search_term");
    int pub = svc_qbool(q, "public_rooms"), empty = svc_qbool(q, "empty_rooms");
    int key = rlx_key(svc_qstr(q, "order_by"));
    /* Synapse's sizes sort biggest first by default. */
    bool desc_default = key == K_JOINED || key == K_JOINED_LOCAL || key == K_STATE_EVENTS;
    const char *dir = svc_qstr(q, "dir");
    bool back = dir && !strcmp(dir, "b");
    rlx_room_t **v = rlx_sorted(x, key < 0 ? K_NAME : key, desc_default == back);
    char *lterm = NULL;
    size_t ll = 0;
    if (term && *term) {
        lterm = malloc(strlen(term) + 1);
        if (!lterm)
            return NULL;
        ll = svc_text_lower(term, lterm);
    }
    int64_t limit = svc_qint(q, "limit", 100), k = 0;
    json_t *rooms = json_array();
    for (size_t i = 0; v && rooms && i < x->n; i++) {
        const rlx_room_t *r = v[i];
        if (lterm && !rlx_match(r, term, lterm, ll))
            continue;
        if (pub >= 0 && r->is_public != (pub == 1))
            continue;
        if (empty >= 0 && (r->joined == 0) != (empty == 1))
            continue;
        if (k >= from && k < from + limit)
            json_array_append_new(rooms, rlx_room_obj(r));
        k++;
    }
    free(lterm);
    if (!v || !rooms) {
        json_decref(rooms);
        return NULL;
    }
    json_t *out = json_pack("{s:o, s:I, s:I}", "rooms", rooms, "offset", (json_int_t)from,
                            "total_rooms", (json_int_t)k);
    if (out && from + limit < k)
        json_object_set_new(out, "next_batch", json_integer(from + limit));
    if (out && from > 0)
        json_object_set_new(out, "prev_batch", json_integer(from - limit > 0 ? from - limit : 0));
    return out;
}

/* ---------------------------------------------------------- refresh --- */

/* Answers the calls `w` (a chain through priv) with `status` or a page. */
static void rlx_serve(svc_rlx_t *x, svc_call_t *w, int status)
{
    while (w) {
        svc_call_t *nx = w->priv;
        if (status < 0) {
            svc_finish(w, status, NULL);
        } else {
            json_t *out = rlx_page(x, w->args, w->n);
            svc_finish(w, out ? 0 : -ENOMEM, out);
        }
        w = nx;
    }
}

/* The refresh in flight ended: starts the next one for the calls that
 * came meanwhile, then answers its own calls. */
static void rlx_refresh_end(svc_rlx_t *x, int status)
{
    x->busy = false;
    svc_call_t *w = x->cur;
    x->cur = x->next;
    x->next = NULL;
    if (x->cur)
        rlx_run_next(x);
    rlx_serve(x, w, status);
}

/* Every RLX_TICK_MS: a refresh with no call waiting when events came, so
 * that the summaries (and the table's position, read at the next start)
 * stay close to the stream and a list seldom reads many rooms. */
static void rlx_tick(uv_timer_t *t)
{
    svc_rlx_t *x = t->data;
    if (x->ready && !x->busy && hs_stream_current(HS_STREAM_EVENTS) != x->pos)
        rlx_run_next(x);
}

static void rlx_tick_closed(uv_handle_t *h)
{
    free(h);
}

/* Applies summaries read with svc_summary_sql_since (statements 0, 1);
 * the changed room IDs are appended to `changed`. */
static int rlx_apply_summaries(svc_rlx_t *x, const mx_sql_res_t *res, json_t *changed)
{
    json_t *fresh = svc_room_summaries(res, false);
    if (!fresh)
        return -ENOMEM;
    const char *rid;
    json_t *o;
    int rc = 0;
    json_object_foreach(fresh, rid, o) {
        rlx_room_t *r = rlx_room_json(o);
        int put = r ? rlx_put(x, r) : -ENOMEM;
        if (put < 0) {
            rc = put;
            break;
        }
        if (put > 0)
            json_array_append_new(changed, json_string(rid));
    }
    json_decref(fresh);
    return rc;
}

static void rlx_dead(svc_rlx_t *x)
{
    rlx_clear(x);
    free(x);
}

/* A batch callback's `ud`, or NULL after freeing it when svc_rlx_free
 * ran meanwhile. */
static svc_rlx_t *rlx_alive(void *ud)
{
    svc_rlx_t *x = ud;
    if (!x->dead)
        return x;
    rlx_dead(x);
    return NULL;
}

/* Clears every room's `seen` mark. */
static void rlx_unsee(svc_rlx_t *x)
{
    for (size_t i = 0; i < x->n; i++)
        x->v[i]->seen = false;
}

/* Appends the chain `c` to the chain at *head. */
static void rlx_append(svc_call_t **head, svc_call_t *c)
{
    while (*head)
        head = (svc_call_t **)&(*head)->priv;
    *head = c;
}

/* The rooms' IDs were read (statement 0) after the count differed: drops
 * the rooms that are gone; when some are missing here (rows lost from the
 * table), reads every room again in steps. */
static void rlx_reconciled(int status, mx_sql_res_t *res, void *ud)
{
    svc_rlx_t *x = rlx_alive(ud);
    if (!x)
        return;
    if (status < 0) {
        rlx_refresh_end(x, status);
        return;
    }
    rlx_unsee(x);
    bool missing = false;
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        rlx_room_t *r = rlx_get(x, mx_sql_text(res, 0, i, 0));
        if (r)
            r->seen = true;
        else
            missing = true;
    }
    json_t *gone = json_array();
    for (size_t i = x->n; i-- > 0;)
        if (!x->v[i]->seen) {
            json_array_append_new(gone, json_string(x->v[i]->room_id));
            rlx_drop_at(x, i);
        }
    rlx_write(x, NULL, gone, -1);
    json_decref(gone);
    if (missing) {
        mx_log("homeserver", MX_LOG_WARN, "admin: room list summaries incomplete, re-reading");
        x->ready = false;
        rlx_warm_begin(x); /* x->cur still waits */
        return;
    }
    rlx_refresh_end(x, 0);
}

static void rlx_refreshed(int status, mx_sql_res_t *res, void *ud)
{
    svc_rlx_t *x = rlx_alive(ud);
    if (!x)
        return;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "admin: room list refresh failed: %s",
               res ? mx_sql_errmsg(res) : "?");
        rlx_refresh_end(x, status);
        return;
    }
    /* 0, 1: summaries of the changed rooms; 2: public room IDs; 3: number
     * of rooms.  x->warm_to: the position read up to. */
    json_t *changed = json_array();
    int rc = changed ? rlx_apply_summaries(x, res, changed) : -ENOMEM;
    if (rc < 0) {
        json_decref(changed);
        rlx_refresh_end(x, rc);
        return;
    }
    x->pos = x->warm_to;
    rlx_unsee(x);
    for (int i = 0; i < mx_sql_nrows(res, 2); i++) {
        rlx_room_t *r = rlx_get(x, mx_sql_text(res, 2, i, 0));
        if (r)
            r->seen = true;
    }
    for (size_t i = 0; i < x->n; i++) {
        rlx_room_t *r = x->v[i];
        if (r->is_public != r->seen) {
            r->is_public = r->seen;
            x->gen++;
        }
    }
    rlx_write(x, changed, NULL, x->pos);
    json_decref(changed);
    if ((int64_t)x->n != mx_sql_int(res, 3, 0, 0)) {
        mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
        if (b)
            mx_sql_add(b, "SELECT room_id FROM rooms", "");
        if (!b || mx_sql_run(b, rlx_reconciled, x) < 0) {
            mx_sql_batch_free(b);
            rlx_refresh_end(x, -ENOMEM);
        }
        return;
    }
    rlx_refresh_end(x, 0);
}

/* Starts the refresh for the waiting calls x->cur. */
static void rlx_run_next(svc_rlx_t *x)
{
    x->busy = true;
    x->warm_to = hs_stream_current(HS_STREAM_EVENTS);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        svc_summary_sql_since(b, x->pos, x->warm_to);
        mx_sql_add(b, "SELECT room_id FROM rooms WHERE is_public = 1", "");
        mx_sql_add(b, "SELECT COUNT(*) FROM rooms", "");
    }
    if (!b || mx_sql_run(b, rlx_refreshed, x) < 0) {
        mx_sql_batch_free(b);
        rlx_refresh_end(x, -ENOMEM);
    }
}

/* ---------------------------------------------------------- warm-up --- */

static void rlx_warm_step(svc_rlx_t *x);

static void rlx_became_ready(svc_rlx_t *x)
{
    x->ready = true;
    x->busy = false;
    /* Calls that came during the warm-up: all served by one refresh. */
    rlx_append(&x->cur, x->next);
    x->next = NULL;
    if (x->cur)
        rlx_run_next(x);
}

static void rlx_warm_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_rlx_t *x = rlx_alive(ud);
    if (!x)
        return;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "admin: room list warm-up failed: %s",
               res ? mx_sql_errmsg(res) : "?");
        x->busy = false;
        svc_call_t *w = x->cur, *w2 = x->next;
        x->cur = x->next = NULL;
        rlx_serve(x, w, status);
        rlx_serve(x, w2, status);
        return;
    }
    json_t *changed = json_array();
    int rc = changed ? rlx_apply_summaries(x, res, changed) : -ENOMEM;
    int rows = mx_sql_nrows(res, 0);
    if (rc >= 0 && rows > 0) {
        /* The last room ID of this step (statement 0 is in room ID order). */
        free(x->after);
        x->after = strdup(mx_sql_text(res, 0, rows - 1, 0));
        if (!x->after)
            rc = -ENOMEM;
    }
    /* Every step is written; the position only after the last one. */
    bool last = rc >= 0 && rows < RLX_STEP;
    rlx_write(x, changed, NULL, -1);
    json_decref(changed);
    if (rc < 0) {
        rlx_warm_read(rc, NULL, x);
        return;
    }
    if (!last) {
        rlx_warm_step(x);
        return;
    }
    x->pos = x->warm_to;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        rlx_add_pos(b, x->pos);
        if (mx_sql_run(b, rlx_written, NULL) < 0)
            mx_sql_batch_free(b);
    }
    x->pos_written = x->pos;
    x->pos_written_ms = mx_now_ms();
    mx_log("homeserver", MX_LOG_INFO, "admin: room list summaries read (%zu rooms)", x->n);
    rlx_became_ready(x);
}

/* One warm-up step: the summaries of the next RLX_STEP rooms by room ID. */
static void rlx_warm_step(svc_rlx_t *x)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        svc_summary_sql_after(b, x->after ? x->after : "", RLX_STEP);
    if (!b || mx_sql_run(b, rlx_warm_read, x) < 0) {
        mx_sql_batch_free(b);
        rlx_warm_read(MX_EDB, NULL, x);
    }
}

/* The kept rows were read: 0 the position, 1 the rows. */
static void rlx_loaded(int status, mx_sql_res_t *res, void *ud)
{
    svc_rlx_t *x = rlx_alive(ud);
    if (!x)
        return;
    if (status >= 0 && mx_sql_nrows(res, 0) == 1) {
        int rc = 0;
        for (int i = 0; rc >= 0 && i < mx_sql_nrows(res, 1); i++) {
            rlx_room_t *r = rlx_room_row(res, 1, i);
            rc = r ? rlx_put(x, r) : -ENOMEM;
        }
        if (rc >= 0) {
            x->pos = x->pos_written = mx_sql_int(res, 0, 0, 0);
            x->pos_written_ms = mx_now_ms();
            rlx_became_ready(x);
            return;
        }
        for (size_t i = x->n; i-- > 0;)
            rlx_drop_at(x, i);
    } else if (status < 0) {
        mx_log("homeserver", MX_LOG_WARN, "admin: room list table not read: %s",
               res ? mx_sql_errmsg(res) : "?");
    }
    /* No position kept yet (first start with this table): read every
     * room's state in steps. */
    rlx_warm_begin(x);
}

static void rlx_warm_begin(svc_rlx_t *x)
{
    x->busy = true;
    free(x->after);
    x->after = NULL;
    x->warm_to = hs_stream_current(HS_STREAM_EVENTS);
    rlx_warm_step(x);
}

/* ------------------------------------------------------------- API --- */

int svc_rlx_start(void)
{
    svc_rlx_t *x = calloc(1, sizeof(*x));
    if (!x || !(x->idx = json_object())) {
        free(x);
        return -ENOMEM;
    }
    x->pos_written = -1;
    x->busy = true; /* until loaded */
    x->tick = malloc(sizeof(*x->tick));
    if (!x->tick || uv_timer_init(mx_loop(), x->tick) < 0) {
        free(x->tick);
        json_decref(x->idx);
        free(x);
        return -ENOMEM;
    }
    x->tick->data = x;
    uv_unref((uv_handle_t *)x->tick);
    uv_timer_start(x->tick, rlx_tick, RLX_TICK_MS, RLX_TICK_MS);
    svc->rlx = x;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT pos FROM room_list_pos WHERE id = 0", "");
        mx_sql_add(b, "SELECT " RLX_COLS " FROM room_list_rooms", "");
    }
    if (!b || mx_sql_run(b, rlx_loaded, x) < 0) {
        mx_sql_batch_free(b);
        svc->rlx = NULL;
        x->busy = false;
        svc_rlx_free(x);
        return -ENOMEM;
    }
    return 0;
}

void svc_rlx_free(svc_rlx_t *x)
{
    if (!x)
        return;
    svc_call_t *w = x->cur, *w2 = x->next;
    x->cur = x->next = NULL;
    rlx_serve(x, w, -ECANCELED);
    rlx_serve(x, w2, -ECANCELED);
    if (x->tick) {
        uv_timer_stop(x->tick);
        uv_close((uv_handle_t *)x->tick, rlx_tick_closed);
        x->tick = NULL;
    }
    if (x->busy) {
        x->dead = true; /* freed by the batch's callback */
        return;
    }
    rlx_dead(x);
}

void svc_rlx_drop(const char *room_id)
{
    svc_rlx_t *x = svc ? svc->rlx : NULL;
    json_t *i = x ? json_object_get(x->idx, room_id) : NULL;
    if (i)
        rlx_drop_at(x, (size_t)json_integer_value(i));
}

int svc_list_rooms(const json_t *q, hs_admin_done_fn cb, void *ud)
{
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    const char *order = svc_qstr(q, "order_by");
    if (from < 0 || limit < 0 || (order && rlx_key(order) < 0))
        return -EINVAL;
    svc_rlx_t *x = svc->rlx;
    svc_call_t *c = x ? svc_call_new(cb, ud) : NULL;
    if (!c)
        return -ENOMEM;
    c->n = from;
    c->args = json_deep_copy(q);
    if (!c->args) {
        svc_call_free(c);
        return -ENOMEM;
    }
    /* Served by the first refresh that starts after now, which reads
     * every write acknowledged before this call. */
    rlx_append(x->ready && x->busy ? &x->next : &x->cur, c);
    if (!x->busy) {
        if (x->ready)
            rlx_run_next(x);
        else
            rlx_warm_begin(x); /* the warm-up failed: again */
    }
    return 0;
}
