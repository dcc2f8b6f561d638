/*
 * au_schema.c: the auth module's tables (schema "auth"), on the database
 * the module's `database:` names or else the shared one.
 *
 *   auth_clients           registered OAuth clients (metadata as JSON text,
 *                          the secret only as sha256 hex)
 *   auth_grants            authorization requests: pending, code issued
 *                          (code stored hashed), exchanged or denied
 *   auth_browser_sessions  logged-in browsers (cookie value hashed)
 *   auth_oauth_sessions    one per device login: client, user, device, scope
 *   auth_access_tokens,
 *   auth_refresh_tokens    by sha256 hex; refresh tokens chain to their
 *                          successor (rotation, replay detection)
 *   auth_consents          what a user allowed a client
 *
 * Version 2 links OAuth sessions to the browser session that authorized
 * them (MAS's user_session_id): `browser_hash` (its id_hash) is set on the
 * grant at consent (or on the device code at approval, au_flows_schema.c)
 * and copied to the session at the code exchange.  Older rows have none.
 *
 * Flags are INTEGER (PostgreSQL gets int8 parameters); times are ms.
 */
#include "auth.h"

#include <stdio.h>

static const char au_v1[] =
    "CREATE TABLE auth_clients ("
    " client_id TEXT PRIMARY KEY,"
    " secret_hash TEXT,"
    " metadata TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL);\n"
    "CREATE TABLE auth_grants ("
    " id TEXT PRIMARY KEY,"
    " client_id TEXT NOT NULL,"
    " redirect_uri TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " state TEXT,"
    " nonce TEXT,"
    " code_challenge TEXT NOT NULL,"
    " response_mode TEXT NOT NULL,"
    " prompt TEXT,"
    " login_hint TEXT,"
    " user_id TEXT,"
    " auth_ts BIGINT,"
    " code_hash TEXT UNIQUE,"
    " code_expires_ts BIGINT,"
    " status INTEGER NOT NULL DEFAULT 0,"
    " session_id TEXT,"
    " created_ts BIGINT NOT NULL);\n"
    "CREATE INDEX auth_grants_created ON auth_grants (created_ts);\n"
    "CREATE TABLE auth_browser_sessions ("
    " id_hash TEXT PRIMARY KEY,"
    " user_id TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " auth_ts BIGINT NOT NULL,"
    " expires_ts BIGINT NOT NULL,"
    " finished_ts BIGINT);\n"
    "CREATE TABLE auth_oauth_sessions ("
    " id TEXT PRIMARY KEY,"
    " client_id TEXT NOT NULL,"
    " user_id TEXT,"
    " device_id TEXT,"
    " scope TEXT NOT NULL,"
    " provisioned INTEGER NOT NULL DEFAULT 0,"
    " created_ts BIGINT NOT NULL,"
    " finished_ts BIGINT);\n"
    "CREATE INDEX auth_oauth_sessions_user ON auth_oauth_sessions (user_id, device_id);\n"
    "CREATE TABLE auth_access_tokens ("
    " token_hash TEXT PRIMARY KEY,"
    " session_id TEXT NOT NULL,"
    " refresh_hash TEXT,"
    " created_ts BIGINT NOT NULL,"
    " expires_ts BIGINT,"
    " revoked INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX auth_access_tokens_session ON auth_access_tokens (session_id);\n"
    "CREATE TABLE auth_refresh_tokens ("
    " token_hash TEXT PRIMARY KEY,"
    " session_id TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " consumed_ts BIGINT,"
    " next_hash TEXT,"
    " revoked INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX auth_refresh_tokens_session ON auth_refresh_tokens (session_id);\n"
    "CREATE TABLE auth_consents ("
    " user_id TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " PRIMARY KEY (user_id, client_id));\n";

static const char au_v2[] =
    "ALTER TABLE auth_grants ADD COLUMN browser_hash TEXT;\n"
    "ALTER TABLE auth_oauth_sessions ADD COLUMN browser_hash TEXT;\n"
    "CREATE INDEX auth_oauth_sessions_browser ON auth_oauth_sessions (browser_hash);\n";

static const mx_migration_t au_migrations[] = {
    { 1, au_v1, NULL, NULL },
    { 2, au_v2, NULL, NULL },
};

int au_schema_migrate(char *err, size_t errlen)
{
    int rc = mx_db_migrate(au.db, "auth", au_migrations,
                           sizeof(au_migrations) / sizeof(au_migrations[0]));
    if (rc < 0)
        snprintf(err, errlen, "auth: migration failed (%d)", rc);
    return rc;
}
