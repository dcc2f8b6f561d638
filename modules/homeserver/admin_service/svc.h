/*
 * svc.h: what the files of the homeserver's admin service share.
 *
 * The admin service implements `homeserver.admin` (../hs_admin_iface.h):
 * the operations the admin module needs on the homeserver's users, devices,
 * rooms, reports, registration tokens and media.  It is part of the
 * homeserver module, so it reads the homeserver's tables directly; writes
 * go through the owning parts' functions where they exist (password
 * hashing, token cache eviction and hooks of the accounts part, the rooms
 * pipeline for leave events, the media part's delete and quarantine).
 *
 * It owns the schema "homeserver.admin" (blocked rooms, purge jobs,
 * destinations, rate-limit overrides, notices rooms, protected media, room
 * deletion jobs).  Purges and room deletions run in the background in
 * steps that each commit, and resume after a restart.  All state hangs off
 * `svc`, set by hs_admin_service_start; everything runs on the loop thread.
 */
#ifndef HS_ADMIN_SVC_H
#define HS_ADMIN_SVC_H

#include "../hs.h"
#include "../hs_admin_iface.h"

#include <stdbool.h>
#include <stdint.h>

/* One call in flight: the caller's callback plus what the steps between
 * storage round trips need.  Allocated by svc_call_new, freed by
 * svc_finish (which runs the callback) or by svc_run on failure. */
typedef struct svc_call svc_call_t;
/* Builds the result from a finished batch.  Return the result (new
 * reference), or set *status (-ENOENT...) and return NULL or the
 * {errcode, error} object to send. */
typedef json_t *(*svc_build_fn)(svc_call_t *c, const mx_sql_res_t *res, int *status);
struct svc_call {
    mx_pool_t *pool;           /* strings of this call */
    hs_admin_done_fn cb;
    void *ud;
    const char *user_id;       /* pool copies, or NULL */
    const char *room_id;
    const char *str;
    json_t *args;              /* owned copy, or NULL */
    int64_t n;
    bool flag;
    svc_build_fn build;
    void *priv;
};

svc_call_t *svc_call_new(hs_admin_done_fn cb, void *ud);
/* Runs the callback with (status, result — stolen) and frees the call. */
void svc_finish(svc_call_t *c, int status, json_t *result);
/* Same with an {errcode, error} object. */
void svc_fail(svc_call_t *c, int status, const char *errcode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Runs `b`; `build` turns the result into the reply.  Returns 0, or a
 * negative code after freeing the call and the batch (no callback). */
int svc_run(svc_call_t *c, mx_sql_batch_t *b, svc_build_fn build);
/* Same, but the batch's callback is `done` (for multi-step calls). */
int svc_run_raw(svc_call_t *c, mx_sql_batch_t *b, mx_sql_done_fn done);
/* Frees a call without running the callback. */
void svc_call_free(svc_call_t *c);
/* A call for a page starting at offset `from` (kept in c->n); NULL on OOM. */
svc_call_t *svc_page_call(int64_t from, hs_admin_done_fn cb, void *ud);
/* SQL direction for the query's dir: "DESC" for "b", else "ASC". */
const char *svc_sql_dir(const char *dir);
/* A call reading one statement `sql` with the single text parameter `arg`,
 * answered by `build`.  Returns 0 or a negative code (no callback then). */
int svc_read_one(const char *sql, const char *arg, svc_build_fn build, hs_admin_done_fn cb,
                 void *ud);

/* Query helpers: an integer member (default when missing/null), a boolean
 * (-1 when missing/null), a string (NULL when missing). */
int64_t svc_qint(const json_t *q, const char *key, int64_t def);
int svc_qbool(const json_t *q, const char *key);
const char *svc_qstr(const json_t *q, const char *key);
/* Text or JSON null of a nullable column. */
json_t *svc_col_str(const mx_sql_res_t *res, int stmt, int row, int col);
json_t *svc_col_int(const mx_sql_res_t *res, int stmt, int row, int col);
/* True for a user ID of this server. */
bool svc_is_local(const char *user_id);

/* ------------------------------------------------------------- state --- */
typedef struct svc_delete svc_delete_t;
typedef struct svc_ux svc_ux_t;
typedef struct svc_rlx svc_rlx_t;
typedef struct svc_state {
    json_t *blocked;           /* room_id -> user_id or null (cache of blocked_rooms) */
    svc_delete_t *deletes;     /* room deletions running in this process */
    /* Totals of the user list by filter (count SQL + binds -> total),
     * valid while `counts_gen` is unchanged and for SVC_COUNT_TTL_MS. */
    json_t *counts;
    uint64_t counts_gen, counts_ms;
    json_t *rl;                /* user_id -> [per_second, burst] (ratelimit_override) */
    json_t *keys;              /* keyset pages of the user list (svc_users.c) */
    uint64_t keys_ms;
    svc_ux_t *ux;              /* the user list's text index (svc_uindex.c) */
    svc_rlx_t *rlx;            /* the room list's summaries (svc_rlist.c) */
} svc_state_t;
#define SVC_COUNT_TTL_MS 5000
extern svc_state_t *svc;

/* ------------------------------------------------------ the functions --- */
/* svc_users.c */
/* Forgets the cached user list totals (any change to users). */
void svc_users_changed(void);
int svc_list_users(const json_t *q, hs_admin_done_fn cb, void *ud);
int svc_get_user(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_upsert_user(const char *user_id, const json_t *body, hs_admin_done_fn cb, void *ud);
int svc_deactivate_user(const char *user_id, bool erase, hs_admin_done_fn cb, void *ud);
int svc_reset_password(const char *user_id, const char *password, bool logout_devices,
                       hs_admin_done_fn cb, void *ud);
int svc_set_user_flag(const char *user_id, const char *flag, bool value, hs_admin_done_fn cb,
                      void *ud);
int svc_username_available(const char *localpart, hs_admin_done_fn cb, void *ud);
int svc_login_as(const char *user_id, int64_t valid_until_ms, hs_admin_done_fn cb, void *ud);
/* svc_uindex.c: the user list's in-memory text index (see there). */
typedef void (*svc_ux_ready_fn)(int status, void *ud);
/* Creates the index (svc->ux) and starts reading it. */
int svc_ux_start(void);
/* Frees an index (a refresh in flight frees it when it ends). */
void svc_ux_free(svc_ux_t *x);
/* Runs `cb` once the index holds every write acknowledged before this
 * call (possibly before returning, on a storage error).  Forgets the
 * list's cached positions when rows changed.  0 or -ENOMEM (no call). */
int svc_ux_refresh(svc_ux_ready_fn cb, void *ud);
/* True once read; `by_name`: and its order is SQL's order of user IDs. */
bool svc_ux_ready(bool by_name);
/* The list's filters as svc_list_users reads them (flags: -1 absent). */
typedef struct svc_ux_filter {
    int guests, deactivated, locked, admins;
    const char *name, *user_id;   /* user_id wins when both are non-empty */
} svc_ux_filter_t;
/* The users passing `f`, in user ID order: their count, and in *names a
 * malloc'd array (free it) of user IDs borrowed from the index (valid
 * until the next refresh ends).  Negative on OOM. */
int64_t svc_ux_match(const svc_ux_filter_t *f, const char ***names);
/* Lowercases UTF-8 `s` into `out` (room for strlen(s) + 1): ASCII and the
 * two-byte letters of Latin-1, Latin Extended-A, Greek and Cyrillic (as
 * PostgreSQL's lower() in a UTF-8 locale).  Returns the length. */
uint32_t svc_text_lower(const char *s, char *out);
/* Whether `t` (tl > 0 bytes) occurs in `h` (hl bytes). */
bool svc_text_has(const char *h, size_t hl, const char *t, size_t tl);
/* svc_user_data.c */
int svc_whois(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_joined_rooms(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_memberships(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_account_data(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_pushers(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_list_devices(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_get_device(const char *user_id, const char *device_id, hs_admin_done_fn cb, void *ud);
int svc_create_device(const char *user_id, const char *device_id, hs_admin_done_fn cb, void *ud);
int svc_update_device(const char *user_id, const char *device_id, const char *display_name,
                      hs_admin_done_fn cb, void *ud);
int svc_delete_devices(const char *user_id, const json_t *device_ids, hs_admin_done_fn cb,
                       void *ud);
/* svc_rlist.c: the room list over summaries kept in memory and in
 * room_list_rooms (see there). */
int svc_list_rooms(const json_t *q, hs_admin_done_fn cb, void *ud);
/* Creates svc->rlx and starts reading it in the background. */
int svc_rlx_start(void);
/* Frees it (a read in flight frees it when it ends); waiting calls get
 * -ECANCELED. */
void svc_rlx_free(svc_rlx_t *x);
/* Forgets a deleted room (its row goes with the deletion's batch). */
void svc_rlx_drop(const char *room_id);
/* svc_rooms.c */
/* Adds the two summary statements of the rooms with events at stream
 * positions in (from, to] / of the `limit` rooms after room ID `after`
 * in room ID order (statement 0 is in that order). */
void svc_summary_sql_since(mx_sql_batch_t *b, int64_t from, int64_t to);
void svc_summary_sql_after(mx_sql_batch_t *b, const char *after, int64_t limit);
/* room_id -> summary object (the list's fields; `details`: also avatar,
 * topic...) from those two statements (0 and 1).  New reference. */
json_t *svc_room_summaries(const mx_sql_res_t *res, bool details);
int svc_room_details(const char *room_id, hs_admin_done_fn cb, void *ud);
int svc_room_members(const char *room_id, hs_admin_done_fn cb, void *ud);
int svc_room_state(const char *room_id, const char *type, hs_admin_done_fn cb, void *ud);
int svc_room_messages(const char *room_id, const json_t *q, hs_admin_done_fn cb, void *ud);
int svc_room_block(const char *room_id, int block, const char *by_user, hs_admin_done_fn cb,
                   void *ud);
bool svc_room_is_blocked(const char *room_id);
/* Makes local users leave `room_id` (user_id NULL: every local member,
 * joined, invited or knocking) through the rooms pipeline.  `done` gets the
 * users who left and those who could not (arrays, borrowed). */
typedef void (*svc_leave_fn)(int status, json_t *left, json_t *failed, void *ud);
void svc_leave_room(const char *room_id, const char *user_id, svc_leave_fn done, void *ud);
/* Makes `user_id` leave every room it is in (deactivation); no callback. */
void svc_leave_all_rooms(const char *user_id);
/* svc_room_delete.c */
int svc_delete_room(const char *room_id, const json_t *opts, hs_admin_done_fn cb, void *ud);
int svc_delete_status(const char *room_id, const char *delete_id, hs_admin_done_fn cb, void *ud);
/* Restarts the deletions a restart cut short (at start). */
int svc_delete_resume(void);
/* Forgets the running deletions (their rows stay, to be resumed). */
void svc_deletes_free(void);
/* svc_tokens.c */
int svc_list_regtokens(int valid, hs_admin_done_fn cb, void *ud);
int svc_get_regtoken(const char *token, hs_admin_done_fn cb, void *ud);
int svc_create_regtoken(const json_t *body, hs_admin_done_fn cb, void *ud);
int svc_update_regtoken(const char *token, const json_t *body, hs_admin_done_fn cb, void *ud);
int svc_delete_regtoken(const char *token, hs_admin_done_fn cb, void *ud);
/* svc_misc.c */
int svc_list_event_reports(const json_t *q, hs_admin_done_fn cb, void *ud);
int svc_get_event_report(int64_t id, hs_admin_done_fn cb, void *ud);
int svc_delete_event_report(int64_t id, hs_admin_done_fn cb, void *ud);
int svc_stats_users_media(const json_t *q, hs_admin_done_fn cb, void *ud);
int svc_stats_database_rooms(hs_admin_done_fn cb, void *ud);
/* svc_media.c */
int svc_user_media(const char *user_id, const json_t *q, hs_admin_done_fn cb, void *ud);
int svc_delete_user_media(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_media_info(const char *media_id, hs_admin_done_fn cb, void *ud);
int svc_delete_media(const char *media_id, hs_admin_done_fn cb, void *ud);
int svc_quarantine_media(const char *media_id, const char *by_user, hs_admin_done_fn cb,
                         void *ud);
int svc_quarantine_user_media(const char *user_id, const char *by_user, hs_admin_done_fn cb,
                              void *ud);

/* svc_purge.c */
int svc_purge_history(const char *room_id, const json_t *opts, hs_admin_done_fn cb, void *ud);
int svc_purge_history_status(const char *purge_id, hs_admin_done_fn cb, void *ud);
/* Restarts the purges a restart cut short (at start). */
int svc_purge_resume(void);
/* Shared with room deletion: adds the query for the next step of a walk
 * over the events of `room_id` after stream position `done` and before
 * `upto` (at most `step` of them): one row, (MAX(stream_ordering) or NULL
 * when none is left, COUNT). */
void svc_events_next_add(mx_sql_batch_t *b, const char *room_id, int64_t done, int64_t upto,
                         int64_t step);
/* Adds the deletion of the room's events at stream positions in (lo, hi]
 * and of their rows in the other tables (transaction IDs, push actions,
 * relations, threads, state group links, search).  `keep_current`: the
 * room's current state events stay (purge history). */
void svc_events_delete_add(mx_sql_batch_t *b, const char *room_id, int64_t lo, int64_t hi,
                           bool keep_current);
/* svc_fed.c */
int svc_list_destinations(const json_t *q, hs_admin_done_fn cb, void *ud);
int svc_get_destination(const char *destination, hs_admin_done_fn cb, void *ud);
int svc_destination_rooms(const char *destination, const json_t *q, hs_admin_done_fn cb,
                          void *ud);
int svc_reset_destination(const char *destination, hs_admin_done_fn cb, void *ud);
/* svc_ratelimit.c */
/* Reads the overrides into svc->rl (at start). */
int svc_ratelimit_load(void);
int svc_get_ratelimit(const char *user_id, hs_admin_done_fn cb, void *ud);
int svc_set_ratelimit(const char *user_id, int64_t per_second, int64_t burst,
                      hs_admin_done_fn cb, void *ud);
/* svc_room_admin.c */
int svc_forward_extremities(const char *room_id, hs_admin_done_fn cb, void *ud);
int svc_delete_forward_extremities(const char *room_id, hs_admin_done_fn cb, void *ud);
int svc_make_room_admin(const char *room_id, const char *user_id, hs_admin_done_fn cb, void *ud);
/* svc_media.c */
int svc_delete_old_media(const json_t *q, hs_admin_done_fn cb, void *ud);
int svc_purge_remote_media(int64_t before_ts, hs_admin_done_fn cb, void *ud);
int svc_protect_media(const char *media_id, bool protect, hs_admin_done_fn cb, void *ud);
/* svc_notices.c */
int svc_send_server_notice(const json_t *body, hs_admin_done_fn cb, void *ud);

/* svc_newroom.c: a room made by the server.  Strings and arrays borrowed
 * for the call only. */
typedef struct svc_newroom {
    const char *creator;              /* local user who creates it */
    const char *displayname, *avatar_url; /* of the creator's member event, or NULL */
    const char *name, *topic, *room_avatar; /* or NULL */
    int64_t users_default;            /* power level of everyone else */
    const json_t *invite;             /* user IDs invited, or NULL */
    const json_t *join;               /* local user IDs invited and joined, or NULL */
    const char *tag_user, *tag;       /* room tag set for tag_user, or NULL */
    const char *message;              /* first m.text message of the creator, or NULL */
} svc_newroom_t;
/* `room_id` borrowed for the callback; status < 0 when the commit failed. */
typedef void (*svc_newroom_fn)(int status, const char *room_id, void *ud);
/* 0 (done runs later) or a negative code (nothing written, done not run). */
int svc_new_room(const svc_newroom_t *o, svc_newroom_fn done, void *ud);

#endif /* HS_ADMIN_SVC_H */
