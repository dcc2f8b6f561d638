/*
 * push.h: the push part of the homeserver — push rules (the spec's
 * server-default ruleset plus each user's own rules), their evaluation for
 * every local member of a room when an event is persisted, the notification
 * and highlight counts that /sync reports (per room and per thread), the
 * /notifications list, and pushers (the HTTP pusher that POSTs to a push
 * gateway's /_matrix/push/v1/notify).
 *
 * Tables ("homeserver.push", pu_schema.c):
 *   push_rules_users   one row per user who changed anything: the user's
 *                      own rules and the enabled/actions overrides of the
 *                      server-default rules as one JSON document, with the
 *                      HS_STREAM_ACCOUNT_DATA position of the last change
 *                      (m.push_rules in /sync).
 *   event_push_actions one row per (user, event) that notifies: written in
 *                      the same batch as the event (hs_push_on_event), so a
 *                      count commits with its event.  Counts are the rows
 *                      after the user's newest m.read / m.read.private
 *                      receipt (client part's receipts table, read-only).
 *   pushers            one row per (user, app_id, pushkey).
 *
 * The first block is what other parts call; the rest is shared by the files
 * of this part.  Everything runs on the loop thread.
 */
#ifndef HS_PUSH_H
#define HS_PUSH_H

#include "../hs.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------ for the other parts --- */

/* Runs the migrations, loads the rules and pushers, adds the routes and
 * the "push" sync provider.  Called last from hs_start(). */
int hs_push_start(char *err, size_t errlen);
/* Closes the pusher timer and frees the part's memory (safe to call more
 * than once; the timer is unref'd so it never keeps the loop alive). */
void hs_push_stop(void);

struct rm_room;
/* The rooms pipeline calls this once for every event it accepted
 * (rm_txn_add, after the room cache shows the event and before the write
 * batch runs).  Evaluates the push rules of every local joined member
 * except the sender (and of a local invitee for an invite) and adds one
 * INSERT into event_push_actions per notifying member to `b`, so the counts
 * commit (or fail) with the event.  Pushers of those users are woken once
 * the event's stream position is persisted.  `room` and `pdu` borrowed;
 * `pdu` is the event as built (no event_id needed inside). */
void hs_push_on_event(struct rm_room *room, const json_t *pdu, const char *event_id,
                      int64_t stream_ordering, mx_sql_batch_t *b);

/* The client part calls this after a read receipt (m.read or
 * m.read.private) moved forward and committed.  Counts are computed from
 * the receipts table, so this only lets pushers send the new badge count
 * to the user's devices.  `thread_id` NULL or "" for unthreaded. */
void hs_push_on_receipt(const char *user_id, const char *room_id, const char *event_id,
                        int64_t event_stream, const char *thread_id);

/* --------------------------------------------------- inside the part --- */

/* The kinds in evaluation order. */
#define PU_NKINDS 5
extern const char *const pu_kinds[PU_NKINDS]; /* override content room sender underride */
int pu_kind_index(const char *kind);           /* -1 when unknown */

/* The server-default rules (pu_rules_default.c): a new reference to
 * {"override":[...], "content":[...], "underride":[...]} in priority order.
 * Rules use internal placeholders resolved per user: "pattern_type":
 * "user_id" / "user_localpart" on event_match, "value_type": "user_id" on
 * event_property_contains; "_prepend": true (.m.rule.master, above user
 * rules) and "_legacy": true (skipped when the event has m.mentions).
 * Keys starting with '_' are never shown to clients. */
json_t *pu_default_rules(void);

/* A user's changes (pu_ruleset.c).  `custom` is {"override":[rule...], ...}
 * with user-defined rules in priority order, each {rule_id, actions,
 * enabled, conditions | pattern}; `dflt` is {"<kind>/<rule_id>": {enabled?,
 * actions?}} for server-default rules the user changed. */
typedef struct pu_rules {
    json_t *custom;
    json_t *dflt;
} pu_rules_t;

/* The ruleset as clients see it: {"override":[...], "content":[], "room":[],
 * "sender":[], "underride":[]} (new reference).  `r` may be NULL (no
 * changes). */
json_t *pu_render(const json_t *defaults, const pu_rules_t *r, const char *user_id);
/* A rule of the rendered ruleset (borrowed from `ruleset`) or NULL. */
json_t *pu_find(const json_t *ruleset, const char *kind, const char *rule_id);
/* Adds or replaces a user-defined rule (`rule` stolen: {actions, conditions
 * | pattern}).  New rules are enabled and go first unless `before`/`after`
 * name another user rule of the kind.  Returns 0, -ENOENT (before/after
 * unknown), -EINVAL. */
int pu_rule_put(pu_rules_t *r, const char *kind, const char *rule_id, json_t *rule,
                const char *before, const char *after);
/* 0, -ENOENT (no such user rule), -EPERM (a server-default rule). */
int pu_rule_delete(pu_rules_t *r, const json_t *defaults, const char *kind, const char *rule_id);
/* Set enabled / actions (`actions` borrowed) on a user or default rule.
 * 0 or -ENOENT. */
int pu_rule_set_enabled(pu_rules_t *r, const json_t *defaults, const char *kind,
                        const char *rule_id, bool enabled);
int pu_rule_set_actions(pu_rules_t *r, const json_t *defaults, const char *kind,
                        const char *rule_id, const json_t *actions);
/* True when every action is "notify", "dont_notify", "coalesce" or an
 * object with a string "set_tweak". */
bool pu_actions_valid(const json_t *actions);
/* Serialise / parse the stored document {"custom":..., "dflt":...}. */
char *pu_rules_dump(const pu_rules_t *r);                 /* malloc'd */
int pu_rules_load(pu_rules_t *r, const char *text);        /* 0 or -EINVAL */
void pu_rules_clear(pu_rules_t *r);
int pu_rules_copy(pu_rules_t *dst, const pu_rules_t *src); /* deep copy */

/* --------------------------------------------------------- evaluation ---
 * (pu_eval.c, pure) */
typedef struct pu_eval_in {
    const json_t *event;        /* type, sender, state_key, room_id, content */
    const char *room_id;        /* when the event has none (v12 create) */
    const char *user_id;        /* whose rules */
    const char *display_name;   /* the user's display name in the room, or NULL */
    int64_t member_count;       /* joined members */
    int64_t sender_power;
    const json_t *power_levels; /* content of m.room.power_levels, or NULL */
} pu_eval_in_t;

typedef struct pu_eval_out {
    bool notify;
    bool highlight;
    const char *sound;          /* borrowed from the rule, or NULL */
    const json_t *actions;      /* the matching rule's actions (borrowed) */
    const char *rule_id;        /* borrowed */
} pu_eval_out_t;

/* Evaluates the rules (server defaults merged with `r`, which may be NULL)
 * for one user.  Returns 1 when a rule matched (out filled; notify may
 * still be false), 0 when none did. */
int pu_evaluate(const json_t *defaults, const pu_rules_t *r, const pu_eval_in_t *in,
                pu_eval_out_t *out);
/* One condition (exposed for tests).  1 match, 0 not. */
int pu_condition(const json_t *cond, const pu_eval_in_t *in);
/* The dotted-path value of an event (spec "dot-separated property paths",
 * with \. and \\ escapes), borrowed, or NULL. */
const json_t *pu_event_value(const json_t *event, const char *key);
/* Case-insensitive glob (*, ?, [...]).  `words`: match any substring
 * bounded by word boundaries (content.body rule). */
bool pu_glob(const char *pattern, const char *value, bool words);
/* content.m.relates_to of an m.thread relation: the thread root, else
 * "main". Borrowed. */
const char *pu_thread_id(const json_t *event);

/* --------------------------------------------------------- the context --- */
typedef struct pu_user pu_user_t;
struct pu_user {
    pu_rules_t rules;
    int64_t stream_pos;         /* HS_STREAM_ACCOUNT_DATA of the last change */
    uint64_t version;           /* bumped per change (failed-write restore) */
};

typedef struct pu_ctx {
    json_t *defaults;           /* pu_default_rules() */
    struct rm_map *users;       /* user_id -> pu_user_t * (owned) */
    bool started;
} pu_ctx_t;
extern pu_ctx_t pu;

/* SQL: the read position of an event_push_actions row `a` — the newest of
 * its user's m.read / m.read.private receipts in the room that is
 * unthreaded or of the row's thread (client part's receipts table), or the
 * user's join (rooms part's room_memberships: what came before a join, the
 * invite included, is not unread). */
#define PU_READ_POS                                                                       \
    "COALESCE((SELECT MAX(t.pos) FROM (SELECT r.event_stream AS pos FROM receipts r"       \
    " WHERE r.room_id = a.room_id AND r.user_id = a.user_id"                               \
    " AND r.receipt_type IN ('m.read', 'm.read.private')"                                  \
    " AND (r.thread_id = '' OR r.thread_id = a.thread_id)"                                 \
    " UNION ALL SELECT m.stream_ordering AS pos FROM room_memberships m"                   \
    " WHERE m.room_id = a.room_id AND m.user_id = a.user_id AND m.membership = 'join') t), 0)"

/* The user's state, or NULL (nothing changed: defaults only). */
pu_user_t *pu_user_get(const char *user_id);
pu_user_t *pu_user_make(const char *user_id);  /* NULL on ENOMEM */

/* Adds `suffix` under /_matrix/client/v3 and r0. */
int pu_route(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags);

/* Start functions of the files. */
int pu_rules_start(char *err, size_t errlen);
int pu_counts_start(void);
int pu_pushers_start(char *err, size_t errlen);
void pu_pushers_stop(void);
/* ------------------------------------------------------------ pushers ---
 * One in-memory entry per pusher (pu_pushers.c keeps the list and the
 * endpoints; pu_http.c delivers).  Freed by pu_pusher_release once no
 * delivery holds it. */
typedef struct pu_pusher pu_pusher_t;
struct pu_pusher {
    pu_pusher_t *next;
    char *user_id, *app_id, *pushkey, *device_id;
    char *url;                  /* data.url */
    bool id_only;               /* data.format == "event_id_only" */
    json_t *info;               /* what GET /pushers shows (owned) */
    int64_t pushkey_ts;         /* ms: when the pusher was set */
    int64_t last_so;            /* last event stream position handled (stored) */
    int64_t want;               /* newest notifying position seen */
    bool badge;                 /* a badge-only update is due */
    bool busy;                  /* a delivery is in flight */
    bool dead;                  /* removed; free when not busy */
    uint64_t next_try_ms;       /* backoff: no attempt before */
    uint64_t backoff_ms;
    uint64_t failing_since_ms;  /* 0 when the last attempt worked */
};
/* The list head (pu_pushers.c). */
pu_pusher_t *pu_pushers_head(void);
/* Marks `p` dead and removes it from the list; freed now or after its
 * delivery. */
void pu_pusher_remove(pu_pusher_t *p);
void pu_pusher_release(pu_pusher_t *p);   /* free if dead and not busy */
/* Deletes the stored row of `p` (and the entry); used for `rejected`. */
void pu_pusher_drop(pu_pusher_t *p);
/* Tells the scheduler that `user_id` has a notification at
 * `stream_ordering` (may not be persisted yet). */
void pu_pushers_wake(const char *user_id, int64_t stream_ordering);
/* A receipt changed the user's counts: send the badge to their devices. */
void pu_pushers_badge(const char *user_id);
/* Runs the scheduler after `delay_ms` (pu_http.c). */
void pu_http_schedule(uint64_t delay_ms);
int pu_http_start(void);
void pu_http_stop(void);
/* The m.push_rules account data event for a sync (new reference). */
json_t *pu_push_rules_event(const char *user_id);

#endif /* HS_PUSH_H */
