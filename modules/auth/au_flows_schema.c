/*
 * au_flows_schema.c: the tables of the auth-flows part (migration set
 * "auth_flows", next to au_schema.c's "auth" on the same database).
 *
 *   auth_device_codes         RFC 8628 requests: device code (sha256 hex),
 *                             user code, client, scope; pending (0),
 *                             approved (1), denied (2), exchanged (3);
 *                             polling time and interval for slow_down
 *   auth_crosssign_resets     users who approved replacing their
 *                             cross-signing keys, until when (ms)
 *   auth_registration_tokens  tokens that open token-gated registration
 *                             (MAS's shape: usage limit, uses, expiry,
 *                             revocation)
 *   auth_email_verifications  (v2) addresses given at registration: link
 *                             token (sha256 hex), until when, verified when
 *
 * Flags are INTEGER; times are ms.
 */
#include "auth.h"

#include <stdio.h>

static const char au_flows_v1[] =
    "CREATE TABLE auth_device_codes ("
    " id TEXT PRIMARY KEY,"
    " device_code_hash TEXT NOT NULL UNIQUE,"
    " user_code TEXT NOT NULL UNIQUE,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " status INTEGER NOT NULL DEFAULT 0,"
    " user_id TEXT,"
    " auth_ts BIGINT,"
    " session_id TEXT,"
    " created_ts BIGINT NOT NULL,"
    " expires_ts BIGINT NOT NULL,"
    " last_poll_ts BIGINT,"
    " interval_ms BIGINT NOT NULL);\n"
    "CREATE TABLE auth_crosssign_resets ("
    " user_id TEXT PRIMARY KEY,"
    " allowed_until BIGINT NOT NULL);\n"
    "CREATE TABLE auth_registration_tokens ("
    " id TEXT PRIMARY KEY,"
    " token TEXT NOT NULL UNIQUE,"
    " usage_limit BIGINT,"
    " times_used BIGINT NOT NULL DEFAULT 0,"
    " created_ts BIGINT NOT NULL,"
    " last_used_ts BIGINT,"
    " expires_ts BIGINT,"
    " revoked_ts BIGINT);\n";

static const char au_flows_v2[] =
    "CREATE TABLE auth_email_verifications ("
    " token_hash TEXT PRIMARY KEY,"
    " user_id TEXT NOT NULL,"
    " email TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " expires_ts BIGINT NOT NULL,"
    " verified_ts BIGINT);\n"
    "CREATE INDEX auth_email_verifications_user ON auth_email_verifications (user_id);\n";

/* The browser session that approved a device code (its id_hash), copied to
 * the OAuth session (au_schema.c's version 2). */
static const char au_flows_v3[] =
    "ALTER TABLE auth_device_codes ADD COLUMN browser_hash TEXT;\n";

static const mx_migration_t au_flows_migrations[] = {
    { 1, au_flows_v1, NULL, NULL },
    { 2, au_flows_v2, NULL, NULL },
    { 3, au_flows_v3, NULL, NULL },
};

int au_flows_migrate(char *err, size_t errlen)
{
    int rc = mx_db_migrate(au.db, "auth_flows", au_flows_migrations,
                           sizeof(au_flows_migrations) / sizeof(au_flows_migrations[0]));
    if (rc < 0)
        snprintf(err, errlen, "auth: migration of the auth_flows tables failed (%d)", rc);
    return rc;
}
