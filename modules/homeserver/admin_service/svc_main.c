/*
 * svc_main.c: the admin service's start (schema "homeserver.admin", the
 * blocked-rooms and rate-limit caches, resumed purges and room deletions, registration of
 * `homeserver.admin`) and the small
 * helpers every file of the service uses (calls, errors, query members).
 */
#include "svc.h"
#include "../accounts/accounts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

svc_state_t *svc;

/* ------------------------------------------------------------ calls --- */

svc_call_t *svc_call_new(hs_admin_done_fn cb, void *ud)
{
    mx_pool_t *pool = mx_pool_new();
    svc_call_t *c = pool ? mx_palloc(pool, sizeof(*c)) : NULL;
    if (!c) {
        if (pool)
            mx_pool_free(pool);
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->pool = pool;
    c->cb = cb;
    c->ud = ud;
    return c;
}

void svc_call_free(svc_call_t *c)
{
    if (!c)
        return;
    json_decref(c->args);
    mx_pool_free(c->pool);
}

void svc_finish(svc_call_t *c, int status, json_t *result)
{
    hs_admin_done_fn cb = c->cb;
    void *ud = c->ud;
    svc_call_free(c);
    cb(status, result, ud);
}

void svc_fail(svc_call_t *c, int status, const char *errcode, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    svc_finish(c, status, json_pack("{s:s, s:s}", "errcode", errcode, "error", msg));
}

static void svc_built(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "admin service: storage error %d: %s", status,
               res ? mx_sql_errmsg(res) : "?");
        svc_finish(c, status, NULL);
        return;
    }
    int st = 0;
    json_t *out = c->build(c, res, &st);
    if (!out && st == 0)
        st = -ENOMEM;
    /* On error `out` may be the {errcode, error} to send. */
    svc_finish(c, st, out);
}

int svc_run_raw(svc_call_t *c, mx_sql_batch_t *b, mx_sql_done_fn done)
{
    if (!b) {
        svc_call_free(c);
        return -ENOMEM;
    }
    int rc = mx_sql_run(b, done, c);
    if (rc < 0) {
        mx_sql_batch_free(b);
        svc_call_free(c);
    }
    return rc;
}

int svc_run(svc_call_t *c, mx_sql_batch_t *b, svc_build_fn build)
{
    c->build = build;
    return svc_run_raw(c, b, svc_built);
}

svc_call_t *svc_page_call(int64_t from, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (c)
        c->n = from;
    return c;
}

const char *svc_sql_dir(const char *dir)
{
    return dir && !strcmp(dir, "b") ? "DESC" : "ASC";
}

int svc_read_one(const char *sql, const char *arg, svc_build_fn build, hs_admin_done_fn cb,
                 void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, sql, "s", arg);
    return svc_run(c, b, build);
}

/* ---------------------------------------------------------- helpers --- */

int64_t svc_qint(const json_t *q, const char *key, int64_t def)
{
    const json_t *v = json_object_get(q, key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

int svc_qbool(const json_t *q, const char *key)
{
    const json_t *v = json_object_get(q, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

const char *svc_qstr(const json_t *q, const char *key)
{
    return json_string_value(json_object_get(q, key));
}

json_t *svc_col_str(const mx_sql_res_t *res, int stmt, int row, int col)
{
    const char *s = mx_sql_is_null(res, stmt, row, col) ? NULL : mx_sql_text(res, stmt, row, col);
    return s ? json_string(s) : json_null();
}

json_t *svc_col_int(const mx_sql_res_t *res, int stmt, int row, int col)
{
    return mx_sql_is_null(res, stmt, row, col) ? json_null()
                                               : json_integer(mx_sql_int(res, stmt, row, col));
}

bool svc_is_local(const char *user_id)
{
    const char *colon = user_id ? strchr(user_id, ':') : NULL;
    return colon && user_id[0] == '@' && strcmp(colon + 1, hs.server_name) == 0;
}

/* ------------------------------------------------------------ start --- */

static const char svc_v1[] =
    "CREATE TABLE blocked_rooms (room_id TEXT PRIMARY KEY, user_id TEXT,"
    " ts BIGINT NOT NULL);";

/* Purge jobs and the events they took out of the timeline (svc_purge.c),
 * federation destinations (svc_fed.c, filled by the federation sender),
 * rate-limit overrides, notices rooms, protected media. */
static const char svc_v2[] =
    "CREATE TABLE purge_jobs (purge_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
    " upto BIGINT NOT NULL, done_upto BIGINT NOT NULL, delete_local INTEGER NOT NULL,"
    " status TEXT NOT NULL, error TEXT, ts BIGINT NOT NULL);"
    "CREATE INDEX purge_jobs_room ON purge_jobs(room_id, status);"
    "CREATE TABLE purged_events (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
    " stream_ordering BIGINT NOT NULL, json TEXT NOT NULL);"
    "CREATE TABLE destinations (destination TEXT PRIMARY KEY,"
    " retry_last_ts BIGINT NOT NULL DEFAULT 0, retry_interval BIGINT NOT NULL DEFAULT 0,"
    " failure_ts BIGINT, last_successful_stream_ordering BIGINT);"
    "CREATE TABLE destination_rooms (destination TEXT NOT NULL, room_id TEXT NOT NULL,"
    " stream_ordering BIGINT NOT NULL, PRIMARY KEY (destination, room_id));"
    "CREATE TABLE ratelimit_override (user_id TEXT PRIMARY KEY,"
    " messages_per_second BIGINT NOT NULL, burst_count BIGINT NOT NULL);"
    "CREATE TABLE server_notice_rooms (user_id TEXT PRIMARY KEY, room_id TEXT NOT NULL);"
    "CREATE TABLE media_protected (media_id TEXT PRIMARY KEY);";

/* The user list's filters next to the user ID, so that walking it in
 * order (and past `from` rows) reads this index alone. */
static const char svc_v3[] =
    "CREATE INDEX users_admin_list ON users(name, is_guest, deactivated, locked, admin);"
    "CREATE INDEX users_admin_created ON users(creation_ts, name, is_guest, deactivated,"
    " locked);";

/* Room deletions (svc_room_delete.c): parameters, status and progress,
 * so that they resume after a restart and their status outlives it. */
static const char svc_v4[] =
    "CREATE TABLE room_delete_jobs (delete_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
    " requester TEXT, block INTEGER NOT NULL, purge INTEGER NOT NULL,"
    " force_purge INTEGER NOT NULL, new_room_user_id TEXT, room_name TEXT, message TEXT,"
    " status TEXT NOT NULL, error TEXT, kicked TEXT NOT NULL DEFAULT '[]',"
    " failed TEXT NOT NULL DEFAULT '[]', aliases TEXT NOT NULL DEFAULT '[]',"
    " new_room_id TEXT, done_upto BIGINT NOT NULL, events_purged BIGINT NOT NULL DEFAULT 0,"
    " events_total BIGINT, ts BIGINT NOT NULL);"
    "CREATE INDEX room_delete_jobs_room ON room_delete_jobs(room_id, ts);"
    "CREATE INDEX room_delete_jobs_status ON room_delete_jobs(status);";

/* The user list's totals: users per (is_guest, deactivated, locked, admin),
 * kept by triggers in the transaction of every insert, delete or flag
 * change of users, so that `total` reads at most 16 rows. */
#define SVC_COUNTS_TABLE                                                                   \
    "CREATE TABLE user_counts (is_guest INTEGER NOT NULL, deactivated INTEGER NOT NULL,"    \
    " locked INTEGER NOT NULL, admin INTEGER NOT NULL, n BIGINT NOT NULL,"                 \
    " PRIMARY KEY (is_guest, deactivated, locked, admin));"                                \
    "INSERT INTO user_counts (is_guest, deactivated, locked, admin, n)"                    \
    " SELECT is_guest, deactivated, locked, admin, COUNT(*) FROM users"                    \
    " GROUP BY is_guest, deactivated, locked, admin;"
#define SVC_COUNT_ADD(R, D)                                                                \
    "INSERT INTO user_counts (is_guest, deactivated, locked, admin, n) VALUES"             \
    " (" R ".is_guest, " R ".deactivated, " R ".locked, " R ".admin, " D ")"               \
    " ON CONFLICT (is_guest, deactivated, locked, admin) DO UPDATE SET"                    \
    " n = user_counts.n + (" D ");"
static const char svc_v5_sqlite[] =
    SVC_COUNTS_TABLE
    "CREATE TRIGGER user_counts_ins AFTER INSERT ON users BEGIN "
    SVC_COUNT_ADD("NEW", "1") " END;"
    "CREATE TRIGGER user_counts_del AFTER DELETE ON users BEGIN "
    SVC_COUNT_ADD("OLD", "-1") " END;"
    "CREATE TRIGGER user_counts_upd AFTER UPDATE OF is_guest, deactivated, locked, admin"
    " ON users BEGIN " SVC_COUNT_ADD("OLD", "-1") SVC_COUNT_ADD("NEW", "1") " END;";
static const char svc_v5_postgres[] =
    SVC_COUNTS_TABLE
    "CREATE FUNCTION user_counts_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP IN ('DELETE', 'UPDATE') THEN " SVC_COUNT_ADD("OLD", "-1") " END IF;"
    " IF TG_OP IN ('INSERT', 'UPDATE') THEN " SVC_COUNT_ADD("NEW", "1") " END IF;"
    " RETURN NULL; END $$;"
    "CREATE TRIGGER user_counts_trg AFTER INSERT OR DELETE OR UPDATE OF is_guest,"
    " deactivated, locked, admin ON users FOR EACH ROW EXECUTE FUNCTION user_counts_fn();";

/* The user list ordered by display name: each user's display name ('' for
 * none, as the list orders it) next to the list's filters, kept by
 * triggers on users and profiles in the transaction of every change, so
 * that a page walks the (dn, name, ...) index instead of sorting a join of
 * every user with its profile. */
#define SVC_DN_TABLE                                                                       \
    "CREATE TABLE user_dn (name TEXT PRIMARY KEY, dn TEXT NOT NULL,"                      \
    " is_guest INTEGER NOT NULL, deactivated INTEGER NOT NULL, locked INTEGER NOT NULL,"  \
    " admin INTEGER NOT NULL);"                                                           \
    "INSERT INTO user_dn (name, dn, is_guest, deactivated, locked, admin)"                \
    " SELECT u.name, COALESCE(p.displayname, ''), u.is_guest, u.deactivated, u.locked,"   \
    " u.admin FROM users u LEFT JOIN profiles p ON p.user_id = u.name;"                   \
    "CREATE INDEX user_dn_order ON user_dn(dn, name, is_guest, deactivated, locked, admin);"
#define SVC_DN_PUT(R)                                                                      \
    "INSERT INTO user_dn (name, dn, is_guest, deactivated, locked, admin) VALUES"          \
    " (" R ".name, COALESCE((SELECT displayname FROM profiles WHERE user_id = " R ".name),"\
    " ''), " R ".is_guest, " R ".deactivated, " R ".locked, " R ".admin)"                 \
    " ON CONFLICT (name) DO UPDATE SET dn = excluded.dn, is_guest = excluded.is_guest,"   \
    " deactivated = excluded.deactivated, locked = excluded.locked,"                      \
    " admin = excluded.admin;"
#define SVC_DN_DEL(R) "DELETE FROM user_dn WHERE name = " R ".name;"
#define SVC_DN_SET(R, V) "UPDATE user_dn SET dn = " V " WHERE name = " R ".user_id;"
static const char svc_v6_sqlite[] =
    SVC_DN_TABLE
    "CREATE TRIGGER user_dn_ins AFTER INSERT ON users BEGIN " SVC_DN_PUT("NEW") " END;"
    "CREATE TRIGGER user_dn_del AFTER DELETE ON users BEGIN " SVC_DN_DEL("OLD") " END;"
    "CREATE TRIGGER user_dn_upd AFTER UPDATE OF name, is_guest, deactivated, locked, admin"
    " ON users BEGIN " SVC_DN_DEL("OLD") SVC_DN_PUT("NEW") " END;"
    "CREATE TRIGGER user_dn_pins AFTER INSERT ON profiles BEGIN "
    SVC_DN_SET("NEW", "COALESCE(NEW.displayname, '')") " END;"
    "CREATE TRIGGER user_dn_pdel AFTER DELETE ON profiles BEGIN "
    SVC_DN_SET("OLD", "''") " END;"
    "CREATE TRIGGER user_dn_pupd AFTER UPDATE OF user_id, displayname ON profiles BEGIN "
    SVC_DN_SET("OLD", "''") SVC_DN_SET("NEW", "COALESCE(NEW.displayname, '')") " END;";
static const char svc_v6_postgres[] =
    SVC_DN_TABLE
    "CREATE FUNCTION user_dn_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP IN ('DELETE', 'UPDATE') THEN " SVC_DN_DEL("OLD") " END IF;"
    " IF TG_OP IN ('INSERT', 'UPDATE') THEN " SVC_DN_PUT("NEW") " END IF;"
    " RETURN NULL; END $$;"
    "CREATE TRIGGER user_dn_trg AFTER INSERT OR DELETE OR UPDATE OF name, is_guest,"
    " deactivated, locked, admin ON users FOR EACH ROW EXECUTE FUNCTION user_dn_fn();"
    "CREATE FUNCTION user_dn_pfn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF TG_OP IN ('DELETE', 'UPDATE') THEN " SVC_DN_SET("OLD", "''") " END IF;"
    " IF TG_OP IN ('INSERT', 'UPDATE') THEN "
    SVC_DN_SET("NEW", "COALESCE(NEW.displayname, '')") " END IF;"
    " RETURN NULL; END $$;"
    "CREATE TRIGGER user_dn_ptrg AFTER INSERT OR DELETE OR UPDATE OF user_id, displayname"
    " ON profiles FOR EACH ROW EXECUTE FUNCTION user_dn_pfn();";

/* The user list's text index (svc_uindex.c) reads the `user_dn` rows
 * changed since its last refresh: each insert or change stamps the row's
 * `ver` — on SQLite with a counter bumped under the single writer, on
 * PostgreSQL with the writing transaction's ID (compared with a snapshot's
 * xmin, so that a transaction committing late is not missed). */
static const char svc_v7_sqlite[] =
    "CREATE TABLE user_dn_clock (n BIGINT NOT NULL);"
    "INSERT INTO user_dn_clock (n) VALUES (0);"
    "ALTER TABLE user_dn ADD COLUMN ver BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX user_dn_ver ON user_dn(ver);"
    "CREATE TRIGGER user_dn_vins AFTER INSERT ON user_dn BEGIN"
    " UPDATE user_dn_clock SET n = n + 1;"
    " UPDATE user_dn SET ver = (SELECT n FROM user_dn_clock) WHERE name = NEW.name; END;"
    "CREATE TRIGGER user_dn_vupd AFTER UPDATE OF name, dn, is_guest, deactivated, locked, admin"
    " ON user_dn BEGIN UPDATE user_dn_clock SET n = n + 1;"
    " UPDATE user_dn SET ver = (SELECT n FROM user_dn_clock) WHERE name = NEW.name; END;";
static const char svc_v7_postgres[] =
    "ALTER TABLE user_dn ADD COLUMN ver BIGINT NOT NULL DEFAULT 0;"
    "CREATE INDEX user_dn_ver ON user_dn(ver);"
    "CREATE FUNCTION user_dn_vfn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " NEW.ver := pg_current_xact_id()::text::bigint; RETURN NEW; END $$;"
    "CREATE TRIGGER user_dn_vtrg BEFORE INSERT OR UPDATE ON user_dn FOR EACH ROW"
    " EXECUTE FUNCTION user_dn_vfn();";

/* v8: the room list's summaries as of event stream position `pos`
 * (svc_rlist.c), so that a start need not read every room's state. */
static const char svc_v8[] =
    "CREATE TABLE room_list_rooms (room_id TEXT PRIMARY KEY, name TEXT, canonical_alias TEXT,"
    " version TEXT, creator TEXT, encryption TEXT, join_rules TEXT, guest_access TEXT,"
    " history_visibility TEXT, room_type TEXT, federatable INTEGER NOT NULL,"
    " joined_members BIGINT NOT NULL, joined_local_members BIGINT NOT NULL,"
    " state_events BIGINT NOT NULL);"
    "CREATE TABLE room_list_pos (id INTEGER PRIMARY KEY, pos BIGINT NOT NULL);";

static const mx_migration_t svc_migrations[] = {
    { 1, svc_v1, NULL, NULL },
    { 2, svc_v2, NULL, NULL },
    { 3, svc_v3, NULL, NULL },
    { 4, svc_v4, NULL, NULL },
    { 5, NULL, svc_v5_sqlite, svc_v5_postgres },
    { 6, NULL, svc_v6_sqlite, svc_v6_postgres },
    { 7, NULL, svc_v7_sqlite, svc_v7_postgres },
    { 8, svc_v8, NULL, NULL },
};

static const hs_admin_iface_t svc_iface = {
    .size = sizeof(hs_admin_iface_t),
    .list_users = svc_list_users,
    .get_user = svc_get_user,
    .upsert_user = svc_upsert_user,
    .deactivate_user = svc_deactivate_user,
    .reset_password = svc_reset_password,
    .set_user_flag = svc_set_user_flag,
    .whois = svc_whois,
    .username_available = svc_username_available,
    .login_as = svc_login_as,
    .joined_rooms = svc_joined_rooms,
    .memberships = svc_memberships,
    .account_data = svc_account_data,
    .pushers = svc_pushers,
    .list_devices = svc_list_devices,
    .get_device = svc_get_device,
    .create_device = svc_create_device,
    .update_device = svc_update_device,
    .delete_devices = svc_delete_devices,
    .list_rooms = svc_list_rooms,
    .room_details = svc_room_details,
    .room_members = svc_room_members,
    .room_state = svc_room_state,
    .room_messages = svc_room_messages,
    .delete_room = svc_delete_room,
    .delete_status = svc_delete_status,
    .room_block = svc_room_block,
    .room_is_blocked = svc_room_is_blocked,
    .list_regtokens = svc_list_regtokens,
    .get_regtoken = svc_get_regtoken,
    .create_regtoken = svc_create_regtoken,
    .update_regtoken = svc_update_regtoken,
    .delete_regtoken = svc_delete_regtoken,
    .list_event_reports = svc_list_event_reports,
    .get_event_report = svc_get_event_report,
    .delete_event_report = svc_delete_event_report,
    .send_server_notice = svc_send_server_notice,
    .user_media = svc_user_media,
    .delete_user_media = svc_delete_user_media,
    .media_info = svc_media_info,
    .delete_media = svc_delete_media,
    .quarantine_media = svc_quarantine_media,
    .quarantine_user_media = svc_quarantine_user_media,
    .stats_users_media = svc_stats_users_media,
    .stats_database_rooms = svc_stats_database_rooms,
    .purge_history = svc_purge_history,
    .purge_history_status = svc_purge_history_status,
    .list_destinations = svc_list_destinations,
    .get_destination = svc_get_destination,
    .destination_rooms = svc_destination_rooms,
    .reset_destination = svc_reset_destination,
    .get_ratelimit = svc_get_ratelimit,
    .set_ratelimit = svc_set_ratelimit,
    .forward_extremities = svc_forward_extremities,
    .delete_forward_extremities = svc_delete_forward_extremities,
    .make_room_admin = svc_make_room_admin,
    .delete_old_media = svc_delete_old_media,
    .purge_remote_media = svc_purge_remote_media,
    .protect_media = svc_protect_media,
};

static svc_state_t svc_store;

/* Registrations and deactivations change the user list's totals. */
static void svc_hook_registered(const char *user_id, const char *displayname, bool is_guest)
{
    (void)user_id;
    (void)displayname;
    (void)is_guest;
    svc_users_changed();
}

static void svc_hook_deactivated(const char *user_id, bool erase)
{
    (void)user_id;
    (void)erase;
    svc_users_changed();
}

static const hs_accounts_hooks_t svc_hooks = {
    .user_registered = svc_hook_registered,
    .user_deactivated = svc_hook_deactivated,
};

int hs_admin_service_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.admin", svc_migrations,
                           sizeof(svc_migrations) / sizeof(svc_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.admin: migration failed (%d)", rc);
        return rc;
    }
    svc_deletes_free();
    svc_ux_free(svc_store.ux);
    json_decref(svc_store.blocked);
    json_decref(svc_store.counts);
    json_decref(svc_store.rl);
    json_decref(svc_store.keys);
    svc_rlx_free(svc_store.rlx);
    memset(&svc_store, 0, sizeof(svc_store));
    svc = &svc_store;
    svc->blocked = json_object();
    svc->counts = json_object();
    svc->rl = json_object();
    svc->keys = json_object();
    if (!svc->blocked || !svc->counts || !svc->rl || !svc->keys)
        return -ENOMEM;
    if ((rc = svc_ratelimit_load()) < 0 || (rc = svc_purge_resume()) < 0) {
        snprintf(err, errlen, "homeserver.admin: cannot read overrides or purges (%d)", rc);
        return rc;
    }
    if ((rc = hs_accounts_add_hooks(&svc_hooks)) < 0) {
        snprintf(err, errlen, "homeserver.admin: cannot add account hooks (%d)", rc);
        return rc;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT room_id, user_id FROM blocked_rooms", "");
    mx_sql_res_t *res = NULL;
    rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.admin: cannot read blocked rooms: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_object_set_new(svc->blocked, mx_sql_text(res, 0, i, 0), svc_col_str(res, 0, i, 1));
    mx_sql_res_free(res);
    if ((rc = svc_delete_resume()) < 0) {
        snprintf(err, errlen, "homeserver.admin: cannot resume room deletions (%d)", rc);
        return rc;
    }
    if ((rc = svc_ux_start()) < 0 || (rc = svc_rlx_start()) < 0)
        return rc;
    return mx_service_register(HS_ADMIN_SERVICE, &svc_iface);
}
