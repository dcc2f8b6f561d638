/*
 * rel_index.c: what an event adds to the relations part's tables when it is
 * persisted — its relation (content.m.relates_to), the thread it replies in,
 * its full-text search entry — and what a redaction removes.  Everything
 * goes into the event's own write batch (the rooms pipeline calls
 * hs_relations_on_event), so the rows commit or fail with the event.
 */
#include "relations.h"
#include "../rooms/rooms.h"

#include <stdbool.h>
#include <string.h>

/* The searchable text of an event and its key (Synapse's keys). */
static const char *ri_search_value(const char *type, const json_t *content, const char **key)
{
    const char *field = NULL;
    if (strcmp(type, "m.room.message") == 0) {
        field = "body";
        *key = "content.body";
    } else if (strcmp(type, "m.room.name") == 0) {
        field = "name";
        *key = "content.name";
    } else if (strcmp(type, "m.room.topic") == 0) {
        field = "topic";
        *key = "content.topic";
    } else {
        return NULL;
    }
    const char *v = json_string_value(json_object_get(content, field));
    return v && *v ? v : NULL;
}

static void ri_relation(const char *room_id, const json_t *pdu, const char *event_id,
                        int64_t so, mx_sql_batch_t *b)
{
    const json_t *content = json_object_get(pdu, "content");
    const json_t *rel = json_object_get(content, "m.relates_to");
    const char *rel_type = json_string_value(json_object_get(rel, "rel_type"));
    const char *parent = json_string_value(json_object_get(rel, "event_id"));
    const char *type = hs_ev_type(pdu);
    const char *sender = hs_ev_sender(pdu);
    if (!rel_type || !parent || !*rel_type || !*parent || !type || !sender ||
        strcmp(parent, event_id) == 0)
        return;
    const char *key = NULL;
    if (strcmp(rel_type, "m.annotation") == 0)
        key = json_string_value(json_object_get(rel, "key"));
    if (strcmp(rel_type, "m.thread") == 0) {
        mx_sql_add(b, "INSERT INTO event_relations (event_id, relates_to_id, rel_type, room_id,"
                      " sender, type, stream_ordering, aggregation_key, thread_id)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                   "ssssssiss", event_id, parent, rel_type, room_id, sender, type, so, key,
                   parent);
        mx_sql_add(b, "INSERT INTO threads (thread_id, room_id, latest_event_id, latest_stream)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT (thread_id) DO UPDATE SET"
                      " latest_event_id = excluded.latest_event_id,"
                      " latest_stream = excluded.latest_stream",
                   "sssi", parent, room_id, event_id, so);
        return;
    }
    /* A relation to an event inside a thread belongs to that thread. */
    mx_sql_add(b, "INSERT INTO event_relations (event_id, relates_to_id, rel_type, room_id,"
                  " sender, type, stream_ordering, aggregation_key, thread_id)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, (SELECT p.thread_id FROM event_relations p"
                  " WHERE p.event_id = ?)) ON CONFLICT (event_id) DO NOTHING",
               "ssssssiss", event_id, parent, rel_type, room_id, sender, type, so, key, parent);
}

static void ri_search(const char *room_id, const json_t *pdu, const char *event_id, int64_t so,
                      mx_sql_batch_t *b)
{
    const char *type = hs_ev_type(pdu);
    const char *key = NULL;
    if (!type)
        return;
    /* Messages are not state; names and topics are. */
    bool is_state = hs_ev_state_key(pdu) != NULL;
    if (is_state != (strcmp(type, "m.room.message") != 0))
        return;
    const char *v = ri_search_value(type, json_object_get(pdu, "content"), &key);
    if (!v)
        return;
    if (mx_db_is_postgres(hs.db))
        mx_sql_add(b, "INSERT INTO event_search (event_id, room_id, key, stream_ordering, vector)"
                      " VALUES (?, ?, ?, ?, to_tsvector('english', ?))"
                      " ON CONFLICT (event_id) DO NOTHING",
                   "sssis", event_id, room_id, key, so, v);
    else
        mx_sql_add(b, "INSERT INTO event_search (rowid, value, event_id, room_id, key)"
                      " VALUES (?, ?, ?, ?, ?)", "issss", so, v, event_id, room_id, key);
}

/* The redacted event loses its relation (the redaction algorithm strips
 * content.m.relates_to) and its search entry; a thread whose latest reply
 * it was points at the reply before (or disappears with its last reply). */
static int ri_redact(const char *redacts, mx_sql_batch_t *b)
{
    mx_sql_add(b, "DELETE FROM event_relations WHERE event_id = ?", "s", redacts);
    mx_sql_add(b, "UPDATE threads SET"
                  " latest_stream = COALESCE((SELECT MAX(r.stream_ordering) FROM event_relations r"
                  "  WHERE r.relates_to_id = threads.thread_id AND r.rel_type = 'm.thread'), 0),"
                  " latest_event_id = (SELECT r.event_id FROM event_relations r"
                  "  WHERE r.relates_to_id = threads.thread_id AND r.rel_type = 'm.thread'"
                  "  ORDER BY r.stream_ordering DESC LIMIT 1)"
                  " WHERE latest_event_id = ?", "s", redacts);
    mx_sql_add(b, "DELETE FROM threads WHERE latest_event_id IS NULL", "");
    if (mx_db_is_postgres(hs.db))
        mx_sql_add(b, "DELETE FROM event_search WHERE event_id = ?", "s", redacts);
    else
        mx_sql_add(b, "DELETE FROM event_search WHERE rowid = (SELECT stream_ordering FROM events"
                      " WHERE event_id = ?)", "s", redacts);
    return 4;
}

int hs_relations_forget(const char *event_id, mx_sql_batch_t *b)
{
    return ri_redact(event_id, b);
}

void hs_relations_on_event(struct rm_room *room, const json_t *pdu, const char *event_id,
                           int64_t stream_ordering, const char *redacts, mx_sql_batch_t *b)
{
    if (!room || !room->room_id || !pdu || !event_id || !b)
        return;
    if (redacts && *redacts) {
        ri_redact(redacts, b);
        return;
    }
    ri_relation(room->room_id, pdu, event_id, stream_ordering, b);
    ri_search(room->room_id, pdu, event_id, stream_ordering, b);
}
