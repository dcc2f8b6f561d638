/*
 * relations.h: the relations part of the homeserver — the index of event
 * relations (m.relates_to: edits, reactions, threads, references), the
 * /relations and /threads endpoints, bundled aggregations
 * (unsigned.m.relations) for every event list the server returns, the
 * effect of m.ignored_user_list on those lists, and server-side /search.
 *
 * Tables ("homeserver.relations", rel_schema.c):
 *   event_relations  one row per event carrying a relation: (event_id,
 *                    relates_to_id, rel_type, room_id, sender, type,
 *                    stream_ordering, aggregation_key, thread_id).  thread_id
 *                    is the thread root for m.thread relations and for
 *                    relations to an event inside a thread, else NULL.
 *   threads          one row per thread root: its room, latest reply and
 *                    that reply's stream position (the /threads order).
 *   event_search     the full-text index of message bodies, room names and
 *                    topics: an FTS5 table on SQLite (rowid = the event's
 *                    stream_ordering), a tsvector column with a GIN index
 *                    on PostgreSQL.
 * Rows are written in the event's own write batch (hs_relations_on_event,
 * called by the rooms pipeline), so they commit (or fail) with the event;
 * a redaction deletes the redacted event's rows in the redaction's batch.
 *
 * The first block is what other parts call; the rest is shared by the
 * files of this part.  Everything runs on the loop thread.
 */
#ifndef HS_RELATIONS_H
#define HS_RELATIONS_H

#include "../hs.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------ for the other parts --- */

/* Runs the migrations and adds the routes (called from hs_start()). */
int hs_relations_start(char *err, size_t errlen);

struct rm_room;
/* The rooms pipeline calls this once for every event it accepted, next to
 * hs_push_on_event: adds the relation, thread and search rows of the event
 * to `b`.  `redacts` is the ID of the event this redaction really redacts
 * (its stored copy is redacted in the same batch), else NULL: the
 * redacted event's relation and search rows are deleted.  All borrowed. */
void hs_relations_on_event(struct rm_room *room, const json_t *pdu, const char *event_id,
                           int64_t stream_ordering, const char *redacts, mx_sql_batch_t *b);

/* Adds to `b` the deletion of the relation and search rows of an event
 * whose stored copy is being redacted another way (an expired MSC2228
 * message).  Returns the number of statements added. */
int hs_relations_forget(const char *event_id, mx_sql_batch_t *b);

/* Called once with 0, or a negative code when the storage failed (the
 * events are then left as they were). */
typedef void (*hs_rel_done_fn)(int status, void *ud);

/* Flags of hs_relations_bundle. */
#define HS_REL_DROP_IGNORED 0x1  /* remove non-state events whose sender the
                                    viewer ignores from the arrays */

/* Adds bundled aggregations (unsigned.m.relations: m.thread, m.replace,
 * m.reference) to client-format events, with one read batch for all of
 * them.  `events` is a JSON array whose items are events, or arrays of
 * events (one level); the events are changed in place and, with
 * HS_REL_DROP_IGNORED, removed from the array that holds them when their
 * sender is in the viewer's m.ignored_user_list (an event dropped from
 * the top-level array stays wherever else the caller holds it).  State
 * and redacted events get no bundle.  `events` must stay alive until
 * `done` runs; `done` may run before this returns. */
void hs_relations_bundle(json_t *events, const char *viewer, unsigned flags, hs_rel_done_fn done,
                         void *ud);

/* The same for a /sync response: every rooms.join / rooms.leave timeline
 * (ignored senders dropped), and rooms.invite entries whose inviter the
 * user ignores are removed. */
void hs_relations_bundle_sync(json_t *resp, const char *viewer, hs_rel_done_fn done, void *ud);

/* --------------------------------------------------- inside the part --- */

/* Adds `suffix` under /_matrix/client/v1 (relations, threads) or v3 + r0
 * (search). */
int rel_route_v1(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags);
int rel_route_v3(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags);

/* The ignored users of an m.ignored_user_list content text (a JSON object
 * used as a set; new reference, never NULL). */
json_t *rel_ignored_parse(const char *content);

/* An SQL list of string literals ("'a','b'", quotes doubled) of the
 * strings in the JSON array `strings` (other items skipped), for IN (...)
 * lists of any length.  malloc'd; NULL when there is no string (or
 * ENOMEM). */
char *rel_sql_in_list(const json_t *strings);

/* printf into a malloc'd string (NULL on ENOMEM), for SQL with IN lists. */
char *rel_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The words of a search term (runs of ASCII letters and digits, and of
 * non-ASCII bytes; lowercased; at most 32): new array reference. */
json_t *rel_search_tokens(const char *term);
/* An FTS5 MATCH query requiring every word (each quoted, so no FTS5
 * operator can appear): malloc'd, "" for no words, NULL on ENOMEM. */
char *rel_fts5_query(const json_t *tokens);

/* SQL: the position up to which `?` (user) sees room `?`: everything while
 * joined, up to the leave afterwards, -1 never.  Parameters: big, room_id,
 * user_id.  REL_ALL is the "everything" value. */
#define REL_CAP_SQL                                                                       \
    "COALESCE((SELECT CASE WHEN membership = 'join' THEN ? ELSE stream_ordering END"      \
    " FROM room_memberships WHERE room_id = ? AND user_id = ?), -1)"
#define REL_ALL INT64_C(9000000000000000000)

/* Start functions of the files. */
int rel_schema_start(char *err, size_t errlen);
int rel_endpoints_start(void);
int rel_search_start(void);

#endif /* HS_RELATIONS_H */
