/*
 * pu_schema.c: the push part's tables ("homeserver.push"), its context and
 * start/stop, and the small helpers its files share (per-user rule state,
 * routes under v3 and r0).
 */
#include "push.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pu_ctx_t pu;

static const char pu_v1[] =
    "CREATE TABLE push_rules_users (user_id TEXT PRIMARY KEY, rules TEXT NOT NULL,"
    " stream_id BIGINT NOT NULL);"
    "CREATE TABLE event_push_actions (user_id TEXT NOT NULL, room_id TEXT NOT NULL,"
    " event_id TEXT NOT NULL, stream_ordering BIGINT NOT NULL, thread_id TEXT NOT NULL,"
    " notif INTEGER NOT NULL, highlight INTEGER NOT NULL, actions TEXT NOT NULL,"
    " ts BIGINT NOT NULL, PRIMARY KEY (user_id, event_id));"
    "CREATE INDEX event_push_actions_room ON event_push_actions(user_id, room_id, stream_ordering);"
    "CREATE INDEX event_push_actions_stream ON event_push_actions(user_id, stream_ordering);"
    "CREATE TABLE pushers (user_id TEXT NOT NULL, app_id TEXT NOT NULL, pushkey TEXT NOT NULL,"
    " kind TEXT NOT NULL, app_display_name TEXT, device_display_name TEXT, profile_tag TEXT,"
    " lang TEXT, data TEXT NOT NULL, device_id TEXT, ts BIGINT NOT NULL,"
    " last_stream_ordering BIGINT NOT NULL, failing_since BIGINT,"
    " PRIMARY KEY (user_id, app_id, pushkey));"
    "CREATE INDEX pushers_app_key ON pushers(app_id, pushkey);";

static const mx_migration_t pu_migrations[] = {
    { 1, pu_v1, NULL, NULL },
};

static void pu_user_free(const char *key, void *val, void *ud)
{
    (void)key;
    (void)ud;
    pu_user_t *u = val;
    pu_rules_clear(&u->rules);
    free(u);
}

pu_user_t *pu_user_get(const char *user_id)
{
    return pu.users && user_id ? rm_map_get(pu.users, user_id) : NULL;
}

pu_user_t *pu_user_make(const char *user_id)
{
    pu_user_t *u = pu_user_get(user_id);
    if (u)
        return u;
    if (!pu.users)
        return NULL;
    u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->rules.custom = json_object();
    u->rules.dflt = json_object();
    if (!u->rules.custom || !u->rules.dflt || rm_map_put(pu.users, user_id, u) < 0) {
        pu_user_free(NULL, u, NULL);
        return NULL;
    }
    return u;
}

int pu_route(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags)
{
    static const char *const prefixes[] = { "/_matrix/client/v3", "/_matrix/client/r0" };
    char path[512];
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", prefixes[i], suffix);
        int rc = mx_route_add("client", method, path, fn, NULL, flags);
        if (rc < 0) {
            mx_log("homeserver", MX_LOG_ERROR, "push: cannot add route %s %s (%d)", method, path,
                   rc);
            return rc;
        }
    }
    return 0;
}

int hs_push_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.push", pu_migrations,
                           sizeof(pu_migrations) / sizeof(pu_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.push: migration failed (%d)", rc);
        return rc;
    }
    pu.defaults = pu_default_rules();
    pu.users = rm_map_new();
    if (!pu.defaults || !pu.users) {
        snprintf(err, errlen, "homeserver.push: out of memory");
        return -ENOMEM;
    }
    if ((rc = pu_rules_start(err, errlen)) < 0 || (rc = pu_pushers_start(err, errlen)) < 0)
        return rc;
    if ((rc = pu_counts_start()) < 0) {
        snprintf(err, errlen, "homeserver.push: cannot start (%d)", rc);
        return rc;
    }
    pu.started = true;
    return 0;
}

void hs_push_stop(void)
{
    pu_pushers_stop();
    if (pu.users) {
        rm_map_each(pu.users, pu_user_free, NULL);
        rm_map_free(pu.users);
    }
    json_decref(pu.defaults);
    memset(&pu, 0, sizeof(pu));
}
