/*
 * au_admin_schema.c: the admin API's tables (migration set "auth_admin",
 * beside the provider's "auth" on the module's database).
 *
 *   auth_admin_users        the ULID the API gave each homeserver user
 *                           (derived, au_ulid.c) and when the API locked or
 *                           deactivated it (MAS's locked_at/deactivated_at)
 *   auth_admin_user_emails  e-mail addresses recorded for users (by Matrix
 *                           user ID), each with its ULID
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

static const mx_migration_t aa_migrations[] = {
    { 1, aa_v1, NULL, NULL },
};

int aa_schema_migrate(char *err, size_t errlen)
{
    int rc = mx_db_migrate(au.db, "auth_admin", aa_migrations,
                           sizeof(aa_migrations) / sizeof(aa_migrations[0]));
    if (rc < 0)
        snprintf(err, errlen, "auth: migration of the admin API tables failed (%d)", rc);
    return rc;
}
