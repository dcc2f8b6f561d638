/*
 * au_compat_schema.c: the tables of the compatibility layer (migrations
 * under their own name, "auth.compat", so that they do not interleave with
 * the provider's own list in au_schema.c).
 *
 *   auth_compat_sessions        one per legacy login (MAS's "compat
 *                               sessions"): user, device, the scope the
 *                               tokens carry (API + device, plus Synapse
 *                               admin when granted), finished when logged
 *                               out
 *   auth_compat_access_tokens,
 *   auth_compat_refresh_tokens  "mct_"/"mcr_" tokens by sha256 hex; a
 *                               refresh token is consumed by its rotation
 *   auth_compat_sso_logins      m.login.sso round trips: the client's
 *                               redirect URL, the PKCE verifier of the
 *                               OAuth request made for it, the login token
 *                               (hashed) once the user came back
 *
 * Version 2: `browser_hash` (the id_hash of the browser session that
 * approved an m.login.sso round trip) on the round trip and on the compat
 * session it gave (MAS's user_session_id); none on older rows.
 *
 * Times are ms, flags INTEGER.
 */
#include "auth.h"

#include <stdio.h>

static const char au_compat_v1[] =
    "CREATE TABLE auth_compat_sessions ("
    " id TEXT PRIMARY KEY,"
    " user_id TEXT NOT NULL,"
    " device_id TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " is_synapse_admin INTEGER NOT NULL DEFAULT 0,"
    " human_name TEXT,"
    " sso_login_id TEXT,"
    " created_ts BIGINT NOT NULL,"
    " finished_ts BIGINT);\n"
    "CREATE INDEX auth_compat_sessions_user ON auth_compat_sessions (user_id, device_id);\n"
    "CREATE TABLE auth_compat_access_tokens ("
    " token_hash TEXT PRIMARY KEY,"
    " session_id TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " expires_ts BIGINT,"
    " revoked INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX auth_compat_access_tokens_session ON auth_compat_access_tokens (session_id);\n"
    "CREATE TABLE auth_compat_refresh_tokens ("
    " token_hash TEXT PRIMARY KEY,"
    " session_id TEXT NOT NULL,"
    " access_hash TEXT,"
    " created_ts BIGINT NOT NULL,"
    " consumed_ts BIGINT,"
    " revoked INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX auth_compat_refresh_tokens_session ON auth_compat_refresh_tokens (session_id);\n"
    "CREATE TABLE auth_compat_sso_logins ("
    " id TEXT PRIMARY KEY,"
    " redirect_uri TEXT NOT NULL,"
    " code_verifier TEXT NOT NULL,"
    " login_token_hash TEXT UNIQUE,"
    " user_id TEXT,"
    " session_id TEXT,"
    " created_ts BIGINT NOT NULL,"
    " fulfilled_ts BIGINT,"
    " exchanged_ts BIGINT);\n"
    "CREATE INDEX auth_compat_sso_logins_created ON auth_compat_sso_logins (created_ts);\n";

static const char au_compat_v2[] =
    "ALTER TABLE auth_compat_sso_logins ADD COLUMN browser_hash TEXT;\n"
    "ALTER TABLE auth_compat_sessions ADD COLUMN browser_hash TEXT;\n"
    "CREATE INDEX auth_compat_sessions_browser ON auth_compat_sessions (browser_hash);\n";

static const mx_migration_t au_compat_migrations[] = {
    { 1, au_compat_v1, NULL, NULL },
    { 2, au_compat_v2, NULL, NULL },
};

int au_compat_schema_migrate(void)
{
    return mx_db_migrate(au.db, "auth.compat", au_compat_migrations,
                         sizeof(au_compat_migrations) / sizeof(au_compat_migrations[0]));
}
