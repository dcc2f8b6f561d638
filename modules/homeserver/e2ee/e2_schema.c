/*
 * e2_schema.c: the tables of the E2EE part (schema "homeserver.e2ee"), the
 * start-up reads that restore the to-device and device-list stream
 * positions, the accounts hooks (a device created, renamed or deleted is a
 * device-list change; a deleted device loses its keys and inbox), and
 * hs_e2ee_start() which ties the files of the part together.
 */
#include "e2ee.h"
#include "../accounts/accounts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char e2_v1[] =
    "CREATE TABLE e2e_device_keys (user_id TEXT NOT NULL, device_id TEXT NOT NULL,"
    " key_json TEXT NOT NULL, ts BIGINT NOT NULL, PRIMARY KEY (user_id, device_id));"
    "CREATE TABLE e2e_one_time_keys (user_id TEXT NOT NULL, device_id TEXT NOT NULL,"
    " algorithm TEXT NOT NULL, key_id TEXT NOT NULL, key_json TEXT NOT NULL, ts BIGINT NOT NULL,"
    " PRIMARY KEY (user_id, device_id, algorithm, key_id));"
    "CREATE TABLE e2e_fallback_keys (user_id TEXT NOT NULL, device_id TEXT NOT NULL,"
    " algorithm TEXT NOT NULL, key_id TEXT NOT NULL, key_json TEXT NOT NULL,"
    " used INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user_id, device_id, algorithm));"
    "CREATE TABLE e2e_cross_signing_keys (user_id TEXT NOT NULL, keytype TEXT NOT NULL,"
    " key_id TEXT NOT NULL, key_json TEXT NOT NULL, ts BIGINT NOT NULL,"
    " PRIMARY KEY (user_id, keytype));"
    "CREATE TABLE e2e_signatures (target_user_id TEXT NOT NULL, target_key_id TEXT NOT NULL,"
    " signer_user_id TEXT NOT NULL, signer_key_id TEXT NOT NULL, signature TEXT NOT NULL,"
    " PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id));"
    "CREATE TABLE e2e_device_lists_stream (stream_id BIGINT PRIMARY KEY, user_id TEXT NOT NULL,"
    " only_for TEXT);"
    "CREATE INDEX e2e_dls_user ON e2e_device_lists_stream (user_id, stream_id);"
    "CREATE TABLE e2e_device_inbox (stream_id BIGINT PRIMARY KEY, user_id TEXT NOT NULL,"
    " device_id TEXT NOT NULL, message_json TEXT NOT NULL);"
    "CREATE INDEX e2e_inbox_device ON e2e_device_inbox (user_id, device_id, stream_id);"
    "CREATE TABLE e2e_federation_outbox (stream_id BIGINT PRIMARY KEY, destination TEXT NOT NULL,"
    " user_id TEXT NOT NULL, device_id TEXT NOT NULL, message_json TEXT NOT NULL,"
    " ts BIGINT NOT NULL);"
    "CREATE TABLE e2e_to_device_txns (user_id TEXT NOT NULL, device_key TEXT NOT NULL,"
    " txn_id TEXT NOT NULL, ts BIGINT NOT NULL, PRIMARY KEY (user_id, device_key, txn_id));"
    "CREATE TABLE e2e_positions (name TEXT PRIMARY KEY, pos BIGINT NOT NULL);"
    "CREATE TABLE e2e_room_keys_versions (user_id TEXT NOT NULL, version BIGINT NOT NULL,"
    " algorithm TEXT NOT NULL, auth_data TEXT NOT NULL, etag BIGINT NOT NULL DEFAULT 0,"
    " deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user_id, version));"
    "CREATE TABLE e2e_room_keys (user_id TEXT NOT NULL, version BIGINT NOT NULL,"
    " room_id TEXT NOT NULL, session_id TEXT NOT NULL, first_message_index BIGINT NOT NULL,"
    " forwarded_count BIGINT NOT NULL, is_verified INTEGER NOT NULL, session_data TEXT NOT NULL,"
    " PRIMARY KEY (user_id, version, room_id, session_id));"
    "CREATE TABLE e2e_dehydrated_devices (user_id TEXT PRIMARY KEY, device_id TEXT NOT NULL,"
    " device_data TEXT NOT NULL, ts BIGINT NOT NULL);";

static const mx_migration_t e2_migrations[] = {
    { 1, e2_v1, NULL, NULL },
};

int e2_schema_start(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.e2ee", e2_migrations,
                           sizeof(e2_migrations) / sizeof(e2_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.e2ee: migration failed (%d)", rc);
        return rc;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_lists_stream", "");
    /* Inbox rows are deleted once read: the highest position handed out is
     * kept in e2e_positions so that positions never go back. */
    mx_sql_add(b, "SELECT COALESCE(MAX(pos), 0) FROM e2e_positions WHERE name = 'to_device'", "");
    mx_sql_add(b, "SELECT COALESCE(MAX(stream_id), 0) FROM e2e_device_inbox", "");
    mx_sql_add(b, "SELECT COALESCE(MAX(stream_id), 0) FROM e2e_federation_outbox", "");
    mx_sql_res_t *res = NULL;
    rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.e2ee: cannot read positions: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    hs_stream_init(HS_STREAM_DEVICE_LISTS, mx_sql_int(res, 0, 0, 0));
    int64_t td = mx_sql_int(res, 1, 0, 0);
    for (int i = 2; i <= 3; i++)
        if (mx_sql_int(res, i, 0, 0) > td)
            td = mx_sql_int(res, i, 0, 0);
    hs_stream_init(HS_STREAM_TO_DEVICE, td);
    mx_sql_res_free(res);
    return 0;
}

/* ---------------------------------------------------------------- hooks --- */

typedef struct e2_hook_job {
    char *user_id;
    int64_t pos;
} e2_hook_job_t;

static void e2_hook_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    e2_hook_job_t *j = ud;
    if (status < 0)
        mx_log("homeserver", MX_LOG_WARN, "e2ee: device change of %s not recorded (%d)",
               j->user_id, status);
    e2_dl_written(j->user_id, NULL, j->pos, status == 0);
    free(j->user_id);
    free(j);
}

/* One write: forget the devices' keys (when `ids`), record the change. */
static void e2_hook_change(const char *user_id, const char *const *ids, size_t n)
{
    e2_hook_job_t *j = calloc(1, sizeof(*j));
    mx_sql_batch_t *b = j ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b || !(j->user_id = strdup(user_id))) {
        mx_sql_batch_free(b);
        free(j);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        e2_device_forget(b, user_id, ids[i]);
        mx_sql_add(b, "DELETE FROM e2e_dehydrated_devices WHERE user_id = ? AND device_id = ?",
                   "ss", user_id, ids[i]);
    }
    j->pos = e2_dl_add(b, user_id, NULL);
    if (j->pos < 0) {
        mx_sql_batch_free(b);
        free(j->user_id);
        free(j);
        return;
    }
    if (mx_sql_run(b, e2_hook_done, j) < 0) {
        e2_dl_written(user_id, NULL, j->pos, false);
        free(j->user_id);
        free(j);
    }
}

static void e2_on_device_created(const char *user_id, const char *device_id)
{
    (void)device_id;
    e2_hook_change(user_id, NULL, 0);
}

static void e2_on_devices_deleted(const char *user_id, const char *const *ids, size_t n)
{
    e2_hook_change(user_id, ids, n);
}

static const hs_accounts_hooks_t e2_hooks = {
    .device_created = e2_on_device_created,
    .device_updated = e2_on_device_created,
    .devices_deleted = e2_on_devices_deleted,
};

/* ----------------------------------------------------------------- start --- */

int hs_e2ee_start(char *err, size_t errlen)
{
    int rc = e2_schema_start(err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = hs_accounts_add_hooks(&e2_hooks)) < 0 || (rc = e2_keys_routes()) < 0 ||
        (rc = e2_cs_routes()) < 0 || (rc = e2_td_routes()) < 0 ||
        (rc = e2_backup_routes()) < 0 || (rc = e2_dehydrated_routes()) < 0 ||
        (rc = e2_sync_start()) < 0) {
        snprintf(err, errlen, "homeserver.e2ee: cannot register routes/hooks (%d)", rc);
        return rc;
    }
    return 0;
}
