/*
 * rm_schema.c: the tables of the rooms part ("homeserver.rooms") and the
 * start-up reads that restore the loop's counters (event stream position,
 * state group IDs).  The tables are described in rooms/README.md.
 */
#include "rooms.h"

#include <errno.h>
#include <stdio.h>

static const char rm_v1[] =
    "CREATE TABLE rooms ("
    " room_id TEXT PRIMARY KEY, room_version TEXT NOT NULL, creator TEXT NOT NULL,"
    " is_public INTEGER NOT NULL DEFAULT 0, created_ts BIGINT NOT NULL,"
    " state_group BIGINT NOT NULL DEFAULT 0, sg_deltas BIGINT NOT NULL DEFAULT 0);"
    "CREATE TABLE events ("
    " stream_ordering BIGINT PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
    " room_id TEXT NOT NULL, type TEXT NOT NULL, state_key TEXT, sender TEXT NOT NULL,"
    " depth BIGINT NOT NULL, origin_server_ts BIGINT NOT NULL, received_ts BIGINT NOT NULL,"
    " json TEXT NOT NULL, unsigned_json TEXT, membership TEXT, redacts TEXT,"
    " redacted INTEGER NOT NULL DEFAULT 0, txn_device TEXT, txn_id TEXT);"
    "CREATE INDEX events_room_so ON events(room_id, stream_ordering);"
    "CREATE INDEX events_room_ts ON events(room_id, origin_server_ts);"
    "CREATE INDEX events_redacts ON events(redacts);"
    "CREATE TABLE room_extremities (room_id TEXT NOT NULL, event_id TEXT NOT NULL,"
    " PRIMARY KEY (room_id, event_id));"
    "CREATE TABLE state_groups (id BIGINT PRIMARY KEY, room_id TEXT NOT NULL,"
    " prev_group BIGINT, is_snapshot INTEGER NOT NULL);"
    "CREATE TABLE state_group_entries (group_id BIGINT NOT NULL, type TEXT NOT NULL,"
    " state_key TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (group_id, type, state_key));"
    "CREATE TABLE event_to_state_group (event_id TEXT PRIMARY KEY, group_id BIGINT NOT NULL);"
    "CREATE TABLE current_state (room_id TEXT NOT NULL, type TEXT NOT NULL,"
    " state_key TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (room_id, type, state_key));"
    "CREATE TABLE room_memberships (room_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " membership TEXT NOT NULL, event_id TEXT NOT NULL, stream_ordering BIGINT NOT NULL,"
    " forgotten INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (room_id, user_id));"
    "CREATE INDEX room_memberships_user ON room_memberships(user_id, membership);"
    "CREATE INDEX room_memberships_user_so ON room_memberships(user_id, stream_ordering);"
    "CREATE TABLE event_txns (user_id TEXT NOT NULL, device_key TEXT NOT NULL,"
    " txn_id TEXT NOT NULL, event_id TEXT NOT NULL, ts BIGINT NOT NULL,"
    " PRIMARY KEY (user_id, device_key, txn_id));"
    "CREATE TABLE room_aliases (alias TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
    " creator TEXT NOT NULL);"
    "CREATE INDEX room_aliases_room ON room_aliases(room_id);";

/* v2: fewer b-trees written per event (each costs about one page of WAL
 * per event under load, as consecutive events land on different pages).
 *   - events.state_group replaces the event_to_state_group table, which
 *     stays as a view for the readers (deleting from it does nothing: the
 *     rows go with their events);
 *   - the txn lookup reads events (sender, txn_device, txn_id), which every
 *     /send and /redact event already carries, through a partial index:
 *     event_txns is no longer written or read (kept for the statements that
 *     still delete from it);
 *   - events_redacts only indexes redactions;
 *   - SQLite: stream_ordering becomes the rowid (one b-tree less) and the
 *     JSON moves to the end of the row (columns read by joins come first);
 *     room_extremities is WITHOUT ROWID. */
#define RM_V2_TAIL                                                                           \
    "CREATE INDEX events_redacts ON events(redacts) WHERE redacts IS NOT NULL;"               \
    "CREATE INDEX events_txn ON events(sender, txn_device, txn_id) WHERE txn_id IS NOT NULL;" \
    "DROP TABLE event_to_state_group;"                                                        \
    "CREATE VIEW event_to_state_group AS SELECT event_id, state_group AS group_id FROM events" \
    " WHERE state_group IS NOT NULL;"

static const char rm_v2_sqlite[] =
    "CREATE TABLE events_v2 ("
    " stream_ordering INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
    " room_id TEXT NOT NULL, type TEXT NOT NULL, state_key TEXT, sender TEXT NOT NULL,"
    " depth BIGINT NOT NULL, origin_server_ts BIGINT NOT NULL, received_ts BIGINT NOT NULL,"
    " state_group BIGINT, membership TEXT, redacts TEXT, redacted INTEGER NOT NULL DEFAULT 0,"
    " txn_device TEXT, txn_id TEXT, unsigned_json TEXT, json TEXT NOT NULL);"
    "INSERT INTO events_v2 (stream_ordering, event_id, room_id, type, state_key, sender, depth,"
    " origin_server_ts, received_ts, state_group, membership, redacts, redacted, txn_device,"
    " txn_id, unsigned_json, json)"
    " SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.state_key, e.sender, e.depth,"
    " e.origin_server_ts, e.received_ts, g.group_id, e.membership, e.redacts, e.redacted,"
    " e.txn_device, e.txn_id, e.unsigned_json, e.json"
    " FROM events e LEFT JOIN event_to_state_group g ON g.event_id = e.event_id"
    " ORDER BY e.stream_ordering;"
    "DROP TABLE events;"
    "ALTER TABLE events_v2 RENAME TO events;"
    "CREATE INDEX events_room_so ON events(room_id, stream_ordering);"
    "CREATE INDEX events_room_ts ON events(room_id, origin_server_ts);"
    RM_V2_TAIL
    "CREATE TRIGGER event_to_state_group_del INSTEAD OF DELETE ON event_to_state_group"
    " BEGIN SELECT 1; END;"
    "CREATE TABLE room_extremities_v2 (room_id TEXT NOT NULL, event_id TEXT NOT NULL,"
    " PRIMARY KEY (room_id, event_id)) WITHOUT ROWID;"
    "INSERT INTO room_extremities_v2 (room_id, event_id)"
    " SELECT room_id, event_id FROM room_extremities;"
    "DROP TABLE room_extremities;"
    "ALTER TABLE room_extremities_v2 RENAME TO room_extremities;";

static const char rm_v2_postgres[] =
    "ALTER TABLE events ADD COLUMN state_group BIGINT;"
    "UPDATE events SET state_group = g.group_id FROM event_to_state_group g"
    " WHERE g.event_id = events.event_id;"
    "DROP INDEX events_redacts;"
    RM_V2_TAIL
    "CREATE RULE event_to_state_group_del AS ON DELETE TO event_to_state_group"
    " DO INSTEAD NOTHING;";

static const mx_migration_t rm_migrations[] = {
    { 1, rm_v1, NULL, NULL },
    { 2, NULL, rm_v2_sqlite, rm_v2_postgres },
};

int rm_schema_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.rooms", rm_migrations,
                           sizeof(rm_migrations) / sizeof(rm_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.rooms: migration failed (%d)", rc);
        return rc;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT COALESCE(MAX(stream_ordering), 0) FROM events", "");
    mx_sql_add(b, "SELECT COALESCE(MAX(id), 0) FROM state_groups", "");
    mx_sql_res_t *res = NULL;
    rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.rooms: cannot read positions: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    hs_stream_init(HS_STREAM_EVENTS, mx_sql_int(res, 0, 0, 0));
    rm_set_state_group_max(mx_sql_int(res, 1, 0, 0));
    mx_sql_res_free(res);
    return 0;
}
