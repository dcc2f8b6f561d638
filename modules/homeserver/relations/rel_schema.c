/*
 * rel_schema.c: the relations part's tables ("homeserver.relations"), its
 * start, and the route helpers its files share.  The tables are described in relations.h and README.md; the
 * full-text index differs per engine (FTS5 on SQLite, tsvector + GIN on
 * PostgreSQL), the rest is the same SQL.
 */
#include "relations.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define REL_V1_COMMON                                                                     \
    "CREATE TABLE event_relations (event_id TEXT PRIMARY KEY, relates_to_id TEXT NOT NULL," \
    " rel_type TEXT NOT NULL, room_id TEXT NOT NULL, sender TEXT NOT NULL,"               \
    " type TEXT NOT NULL, stream_ordering BIGINT NOT NULL, aggregation_key TEXT,"         \
    " thread_id TEXT);"                                                                   \
    "CREATE INDEX event_relations_target ON event_relations(relates_to_id, rel_type,"     \
    " stream_ordering);"                                                                  \
    "CREATE INDEX event_relations_thread ON event_relations(thread_id, stream_ordering);" \
    "CREATE TABLE threads (thread_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"            \
    " latest_event_id TEXT, latest_stream BIGINT NOT NULL);"                              \
    "CREATE INDEX threads_room ON threads(room_id, latest_stream);"                       \
    "CREATE INDEX threads_latest ON threads(latest_event_id);"

/* SQLite: rowid is the event's stream_ordering; only `value` is indexed. */
static const char rel_v1_sqlite[] =
    REL_V1_COMMON
    "CREATE VIRTUAL TABLE event_search USING fts5(value, event_id UNINDEXED,"
    " room_id UNINDEXED, key UNINDEXED, tokenize = 'porter unicode61');";

static const char rel_v1_postgres[] =
    REL_V1_COMMON
    "CREATE TABLE event_search (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
    " key TEXT NOT NULL, stream_ordering BIGINT NOT NULL, vector TSVECTOR NOT NULL);"
    "CREATE INDEX event_search_fts ON event_search USING GIN (vector);"
    "CREATE INDEX event_search_room ON event_search(room_id, stream_ordering);";

static const mx_migration_t rel_migrations[] = {
    { 1, NULL, rel_v1_sqlite, rel_v1_postgres },
};

int rel_schema_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.relations", rel_migrations,
                           sizeof(rel_migrations) / sizeof(rel_migrations[0]));
    if (rc < 0)
        snprintf(err, errlen, "homeserver.relations: migration failed (%d)", rc);
    return rc;
}

int rel_route_v1(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags)
{
    char path[512];
    snprintf(path, sizeof(path), "/_matrix/client/v1%s", suffix);
    return mx_route_add("client", method, path, fn, NULL, flags);
}

int rel_route_v3(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags)
{
    static const char *const prefixes[] = { "/_matrix/client/v3", "/_matrix/client/r0" };
    char path[512];
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s%s", prefixes[i], suffix);
        int rc = mx_route_add("client", method, path, fn, NULL, flags);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int hs_relations_start(char *err, size_t errlen)
{
    int rc = rel_schema_start(err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = rel_endpoints_start()) < 0 || (rc = rel_search_start()) < 0) {
        snprintf(err, errlen, "homeserver.relations: cannot add routes (%d)", rc);
        return rc;
    }
    return 0;
}
