/*
 * au_admin_schema.c: the admin API's tables (migration set "auth_admin",
 * beside the provider's "auth" on the module's database).
 *
 *   auth_admin_users        the ULID the API gave each homeserver user
 *                           (derived, au_ulid.c) and when the API locked or
 *                           deactivated it (MAS's locked_at/deactivated_at)
 *   auth_admin_user_emails  e-mail addresses recorded for users (by Matrix
 *                           user ID), each with its ULID
 *   auth_personal_sessions  MAS's personal sessions: owner (an admin's Matrix
 *                           ID or a client ID), actor user, name, scope,
 *                           device (from the scope), revocation
 *   auth_personal_tokens    their "mpt_" access tokens by sha256 hex; one
 *                           live token per session (regenerate replaces it)
 *   auth_admin_policy_data  policy data set through the API (JSON text); the
 *                           newest row is in force
 *   auth_session_activity   last use of any session (OAuth, compat, browser,
 *                           personal) by its ID: time, IP, user agent
 *
 * Times are ms.
 */
#include "au_admin.h"

#include <stdio.h>

static const char aa_v1[] =
    "CREATE TABLE auth_admin_users ("
    " user_id TEXT PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " locked_ts BIGINT,"
    " deactivated_ts BIGINT);\n"
    "CREATE TABLE auth_admin_user_emails ("
    " id TEXT PRIMARY KEY,"
    " user_id TEXT NOT NULL,"
    " email TEXT NOT NULL UNIQUE,"
    " created_ts BIGINT NOT NULL);\n"
    "CREATE INDEX auth_admin_user_emails_user ON auth_admin_user_emails (user_id);\n";

static const char aa_v2[] =
    "CREATE TABLE auth_personal_sessions ("
    " id TEXT PRIMARY KEY,"
    " owner_user_id TEXT,"
    " owner_client_id TEXT,"
    " actor_user_id TEXT NOT NULL,"
    " human_name TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " device_id TEXT,"
    " created_ts BIGINT NOT NULL,"
    " revoked_ts BIGINT);\n"
    "CREATE INDEX auth_personal_sessions_actor ON auth_personal_sessions (actor_user_id);\n"
    "CREATE TABLE auth_personal_tokens ("
    " token_hash TEXT PRIMARY KEY,"
    " session_id TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL,"
    " expires_ts BIGINT,"
    " revoked_ts BIGINT);\n"
    "CREATE INDEX auth_personal_tokens_session ON auth_personal_tokens (session_id);\n"
    "CREATE TABLE auth_admin_policy_data ("
    " id TEXT PRIMARY KEY,"
    " data TEXT NOT NULL,"
    " created_ts BIGINT NOT NULL);\n"
    "CREATE TABLE auth_session_activity ("
    " session_id TEXT PRIMARY KEY,"
    " last_active_ts BIGINT NOT NULL,"
    " last_active_ip TEXT,"
    " user_agent TEXT);\n";

static const mx_migration_t aa_migrations[] = {
    { 1, aa_v1, NULL, NULL },
    { 2, aa_v2, NULL, NULL },
};

int aa_schema_migrate(char *err, size_t errlen)
{
    int rc = mx_db_migrate(au.db, "auth_admin", aa_migrations,
                           sizeof(aa_migrations) / sizeof(aa_migrations[0]));
    if (rc < 0)
        snprintf(err, errlen, "auth: migration of the admin API tables failed (%d)", rc);
    return rc;
}
