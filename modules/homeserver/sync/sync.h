/*
 * sync.h: what the files of the sync part share — the notifier's waiters
 * (long-polling /sync requests, woken by hs_notify_*), the sync token
 * format and the filter store.  The public side (streams, hs_notify_*,
 * sync providers) is declared in hs.h.
 */
#ifndef HS_SYNC_H
#define HS_SYNC_H

#include "../rooms/rooms.h"

/* ------------------------------------------------------------ notifier ---
 * A waiter is subscribed to one user and a set of rooms.  When any of them
 * is notified, or when `timeout_ms` passes, `fn` runs once on a later loop
 * turn (never inside hs_notify_*) with woken = 1 (notified) or 0 (timeout);
 * the waiter is then unsubscribed but not freed: call hs_waiter_free. */
typedef struct hs_waiter hs_waiter_t;
typedef void (*hs_wake_fn)(hs_waiter_t *w, int woken, void *ud);
/* `room_ids` borrowed JSON array of strings (copied). NULL on ENOMEM. */
hs_waiter_t *hs_waiter_add(const char *user_id, const json_t *room_ids, uint64_t timeout_ms,
                           hs_wake_fn fn, void *ud);
/* Unsubscribes and frees (the memory goes once the timer handle closed). */
void hs_waiter_free(hs_waiter_t *w);
size_t hs_waiter_count(void);
int hs_notifier_start(void);
void hs_notifier_stop(void);

/* --------------------------------------------------------------- tokens ---
 * "s<ev>_<ad>_<rc>_<ty>_<pr>_<td>_<dl>".  Parsing accepts fewer parts (the
 * missing ones are 0).  -EINVAL when malformed. */
int hs_sync_token_parse(const char *tok, int64_t pos[HS_STREAM_COUNT]);
char *hs_sync_token_make(mx_pool_t *pool, const int64_t pos[HS_STREAM_COUNT]);

/* ---------------------------------------------------------- runner ---
 * Runs one /sync computation for another endpoint (the legacy /events and
 * /initialSync, legacy_events.c) and hands its body over instead of
 * replying.  The caller still owns `req` and must reply in `fn`.  If the
 * client goes away, `fn` is not called. */
typedef struct hs_sync_opts {
    const char *since;        /* sync token or NULL (initial) */
    uint64_t timeout_ms;      /* long-poll when the result is empty */
    int limit;                /* timeline limit, -1: default */
    bool include_leave;
    bool legacy_stream;       /* /events: newly joined rooms carry only their
                                 new events; invites carry the full event
                                 under "event"; upto[events] capped */
    int64_t events_cap;       /* legacy_stream: highest event position, 0: none */
    const char *only_room;    /* restrict to this room (copied) or NULL */
    bool peek;                /* only_room: include it as joined when the user
                                 has no membership (world_readable) */
} hs_sync_opts_t;
/* `resp` stolen; `next_batch` valid during the call. */
typedef void (*hs_sync_result_fn)(mx_req_t *req, json_t *resp, const char *next_batch,
                                  void *ud);
void hs_sync_run(mx_req_t *req, const hs_user_t *who, const hs_sync_opts_t *o,
                 hs_sync_result_fn fn, void *ud);
int hs_legacy_events_start(void);
/* hs_authed_fn for membership routes that admit guests: `ud` points to a
 * `const hs_authed_fn` (the handler's step, called with ud NULL) run for
 * non-guests, and for guests only for leave and for joins by room ID of
 * rooms with guest_access can_join (else 403 M_GUEST_ACCESS_FORBIDDEN). */
void hs_guest_membership_gate(mx_req_t *req, const hs_user_t *who, void *ud);

/* --------------------------------------------------------------- window ---
 * (window.c) The events of (since, upto] on the events stream, read once
 * and shared by every /sync with that window: `fn` gets a borrowed JSON
 * array of [room_id, is_state, member_state_key|null, member
 * unsigned_json|null, membership|null] in stream order, or NULL when the
 * window is too large or the read failed (then read it yourself).  `fn`
 * may run before hs_sync_window returns (cached or empty window). */
typedef void (*hs_sync_window_fn)(json_t *rows, void *ud);
void hs_sync_window(int64_t since, int64_t upto, hs_sync_window_fn fn, void *ud);
void hs_sync_window_stop(void);

/* -------------------------------------------------------------- filters --- */
int hs_filters_start(char *err, size_t errlen);

#endif /* HS_SYNC_H */
