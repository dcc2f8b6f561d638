/*
 * cl_schema.c: the client part's tables ("homeserver.client"), its start
 * (migrations, stream positions, routes of every file) and the small
 * helpers its files share: routes under v3 and r0, the request state, the
 * "is the requester joined" check and the self check on path user IDs.
 *
 * Tables (shapes follow Synapse where it has the same one):
 *   profiles        one row per local user (localpart kept for the user
 *                   directory's search; hidden = deactivated)
 *   account_data    global (room_id '') and per-room items, with their
 *                   HS_STREAM_ACCOUNT_DATA position
 *   receipts        the newest receipt per (room, type, user, thread);
 *                   thread_id '' is an unthreaded receipt; event_stream is
 *                   the event's stream ordering (receipts only move
 *                   forward).  m.fully_read markers are mirrored here with
 *                   stream_id 0 for the same forward check.
 *   presence        last persisted presence per user
 *   event_reports, room_reports   abuse reports (Synapse's admin API shape)
 *   open_id_tokens  tokens of /openid/request_token
 */
#include "client.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CL_V1_COMMON                                                                      \
    "CREATE TABLE profiles (user_id TEXT PRIMARY KEY, localpart TEXT NOT NULL,"           \
    " displayname TEXT, avatar_url TEXT, hidden INTEGER NOT NULL DEFAULT 0);"             \
    "CREATE INDEX profiles_localpart ON profiles(localpart);"                             \
    "CREATE TABLE account_data (user_id TEXT NOT NULL, room_id TEXT NOT NULL,"            \
    " type TEXT NOT NULL, content TEXT NOT NULL, stream_id BIGINT NOT NULL,"              \
    " PRIMARY KEY (user_id, room_id, type));"                                             \
    "CREATE INDEX account_data_stream ON account_data(user_id, stream_id);"               \
    "CREATE TABLE receipts (room_id TEXT NOT NULL, receipt_type TEXT NOT NULL,"           \
    " user_id TEXT NOT NULL, thread_id TEXT NOT NULL, event_id TEXT NOT NULL,"            \
    " event_stream BIGINT NOT NULL, ts BIGINT NOT NULL, stream_id BIGINT NOT NULL,"       \
    " PRIMARY KEY (room_id, receipt_type, user_id, thread_id));"                          \
    "CREATE INDEX receipts_stream ON receipts(stream_id);"                                \
    "CREATE TABLE presence (user_id TEXT PRIMARY KEY, state TEXT NOT NULL,"               \
    " status_msg TEXT, last_active_ts BIGINT NOT NULL, stream_id BIGINT NOT NULL);"       \
    "CREATE INDEX presence_stream ON presence(stream_id);"                                \
    "CREATE TABLE open_id_tokens (token TEXT PRIMARY KEY, ts_valid_until_ms BIGINT NOT NULL," \
    " user_id TEXT NOT NULL);"

static const char cl_v1_sqlite[] =
    CL_V1_COMMON
    "CREATE TABLE event_reports (id INTEGER PRIMARY KEY, received_ts BIGINT NOT NULL,"
    " room_id TEXT NOT NULL, event_id TEXT NOT NULL, user_id TEXT NOT NULL, reason TEXT,"
    " content TEXT);"
    "CREATE TABLE room_reports (id INTEGER PRIMARY KEY, received_ts BIGINT NOT NULL,"
    " room_id TEXT NOT NULL, user_id TEXT NOT NULL, reason TEXT NOT NULL);";

static const char cl_v1_postgres[] =
    CL_V1_COMMON
    "CREATE TABLE event_reports (id BIGSERIAL PRIMARY KEY, received_ts BIGINT NOT NULL,"
    " room_id TEXT NOT NULL, event_id TEXT NOT NULL, user_id TEXT NOT NULL, reason TEXT,"
    " content TEXT);"
    "CREATE TABLE room_reports (id BIGSERIAL PRIMARY KEY, received_ts BIGINT NOT NULL,"
    " room_id TEXT NOT NULL, user_id TEXT NOT NULL, reason TEXT NOT NULL);";

static const mx_migration_t cl_migrations[] = {
    { 1, NULL, cl_v1_sqlite, cl_v1_postgres },
};

int cl_schema_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.client", cl_migrations,
                           sizeof(cl_migrations) / sizeof(cl_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.client: migration failed (%d)", rc);
        return rc;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT COALESCE(MAX(stream_id), 0) FROM account_data", "");
    mx_sql_add(b, "SELECT COALESCE(MAX(stream_id), 0) FROM receipts", "");
    mx_sql_add(b, "SELECT COALESCE(MAX(stream_id), 0) FROM presence", "");
    mx_sql_res_t *res = NULL;
    rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.client: cannot read positions: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    hs_stream_init(HS_STREAM_ACCOUNT_DATA, mx_sql_int(res, 0, 0, 0));
    hs_stream_init(HS_STREAM_RECEIPTS, mx_sql_int(res, 1, 0, 0));
    hs_stream_init(HS_STREAM_PRESENCE, mx_sql_int(res, 2, 0, 0));
    mx_sql_res_free(res);
    return 0;
}

int hs_client_start(char *err, size_t errlen)
{
    int rc = cl_schema_start(err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = cl_presence_start(err, errlen)) < 0)
        return rc;
    if ((rc = cl_profile_start()) < 0 || (rc = cl_account_data_start()) < 0 ||
        (rc = cl_typing_start()) < 0 || (rc = cl_receipts_start()) < 0 ||
        (rc = cl_user_directory_start()) < 0 || (rc = cl_misc_start()) < 0) {
        snprintf(err, errlen, "homeserver.client: cannot start (%d)", rc);
        return rc;
    }
    return 0;
}

void hs_client_stop(void)
{
    cl_typing_stop();
    cl_presence_stop();
}

/* ------------------------------------------------------------ helpers --- */

int cl_route(const char *method, const char *suffix, mx_handler_fn fn, unsigned flags)
{
    static const char *const prefixes[] = { "/_matrix/client/v3", "/_matrix/client/r0" };
    char path[512];
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", prefixes[i], suffix);
        int rc = mx_route_add("client", method, path, fn, NULL, flags);
        if (rc < 0) {
            mx_log("homeserver", MX_LOG_ERROR, "client: cannot add route %s %s (%d)", method,
                   path, rc);
            return rc;
        }
    }
    return 0;
}

cl_req_t *cl_req_new(mx_req_t *req, const hs_user_t *who)
{
    mx_pool_t *pool = mx_req_pool(req);
    cl_req_t *cr = mx_palloc(pool, sizeof(*cr));
    hs_user_t *w = mx_palloc(pool, sizeof(*w));
    if (!cr || !w) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return NULL;
    }
    memset(cr, 0, sizeof(*cr));
    *w = *who;
    w->user_id = mx_pstrdup(pool, who->user_id);
    w->device_id = who->device_id ? mx_pstrdup(pool, who->device_id) : NULL;
    if (!w->user_id) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return NULL;
    }
    cr->req = req;
    cr->who = w;
    return cr;
}

typedef struct cl_join_wait {
    cl_req_t *cr;
    cl_joined_fn fn;
} cl_join_wait_t;

static void cl_joined_room(rm_room_t *room, int status, void *ud)
{
    cl_join_wait_t *jw = ud;
    cl_req_t *cr = jw->cr;
    if (status < 0 && status != -ENOENT) {
        hs_reply_storage_error(cr->req, status, "room load");
        return;
    }
    const char *m = room ? rm_membership(room, cr->who->user_id) : NULL;
    if (!m || strcmp(m, "join") != 0) {
        mx_req_error(cr->req, 403, "M_FORBIDDEN", "User %s not in room %s", cr->who->user_id,
                     cr->room_id);
        return;
    }
    jw->fn(cr);
}

void cl_require_joined(cl_req_t *cr, cl_joined_fn fn)
{
    cl_join_wait_t *jw = mx_palloc(mx_req_pool(cr->req), sizeof(*jw));
    if (!jw) {
        mx_req_error(cr->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    jw->cr = cr;
    jw->fn = fn;
    rm_room_get(cr->room_id, cl_joined_room, jw);
}

bool cl_is_self(mx_req_t *req, const hs_user_t *who, const char *path_user, const char *why)
{
    if (path_user && strcmp(path_user, who->user_id) == 0)
        return true;
    mx_req_error(req, 403, "M_FORBIDDEN", "%s", why);
    return false;
}

bool cl_room_id_ok(const char *room_id)
{
    size_t n = room_id ? strlen(room_id) : 0;
    return n > 1 && n <= 255 && room_id[0] == '!';
}

bool cl_json_has_string(const json_t *arr, const char *s)
{
    size_t i;
    const json_t *v;
    if (!json_is_array(arr) || !s)
        return false;
    json_array_foreach(arr, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}
