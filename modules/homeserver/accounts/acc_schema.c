/*
 * acc_schema.c: the tables of the accounts part (schema
 * "homeserver.accounts") and their migrations.
 *
 * Shapes follow Synapse where it has the same table (users, devices,
 * access_tokens, refresh_tokens, login_tokens, registration_tokens), minus
 * what belongs elsewhere (profiles) and plus what we need (token hashes:
 * tokens are stored only as sha256 hex, never in clear).  Row IDs differ by
 * engine (INTEGER PRIMARY KEY vs BIGSERIAL), hence the two texts.
 */
#include "acc_int.h"

#include <stdio.h>

#define ACC_V1(ID)                                                                    \
    "CREATE TABLE users ("                                                            \
    " name TEXT PRIMARY KEY,"                                                         \
    " password_hash TEXT,"                                                            \
    " is_guest INTEGER NOT NULL DEFAULT 0,"                                           \
    " admin INTEGER NOT NULL DEFAULT 0,"                                              \
    " deactivated INTEGER NOT NULL DEFAULT 0,"                                        \
    " erased INTEGER NOT NULL DEFAULT 0,"                                             \
    " locked INTEGER NOT NULL DEFAULT 0,"                                             \
    " shadow_banned INTEGER NOT NULL DEFAULT 0,"                                      \
    " user_type TEXT,"                                                                \
    " creation_ts BIGINT NOT NULL);\n"                                                \
    "CREATE INDEX users_lower_name ON users (lower(name));\n"                         \
    "CREATE TABLE devices ("                                                          \
    " user_id TEXT NOT NULL,"                                                         \
    " device_id TEXT NOT NULL,"                                                       \
    " display_name TEXT,"                                                             \
    " last_seen_ts BIGINT,"                                                           \
    " last_seen_ip TEXT,"                                                             \
    " last_seen_user_agent TEXT,"                                                     \
    " created_ts BIGINT NOT NULL,"                                                    \
    " PRIMARY KEY (user_id, device_id));\n"                                           \
    "CREATE TABLE refresh_tokens ("                                                   \
    " id " ID ","                                                                     \
    " token_hash TEXT NOT NULL UNIQUE,"                                               \
    " user_id TEXT NOT NULL,"                                                         \
    " device_id TEXT NOT NULL,"                                                       \
    " next_token_id BIGINT,"                                                          \
    " created_ts BIGINT NOT NULL);\n"                                                 \
    "CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);\n"    \
    "CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_id);\n"           \
    "CREATE TABLE access_tokens ("                                                    \
    " id " ID ","                                                                     \
    " token_hash TEXT NOT NULL UNIQUE,"                                               \
    " user_id TEXT NOT NULL,"                                                         \
    " device_id TEXT,"                                                                \
    " valid_until_ms BIGINT,"                                                         \
    " refresh_token_id BIGINT,"                                                       \
    " used INTEGER NOT NULL DEFAULT 0,"                                               \
    " created_ts BIGINT NOT NULL);\n"                                                 \
    "CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);\n"      \
    "CREATE INDEX access_tokens_refresh ON access_tokens (refresh_token_id);\n"       \
    "CREATE TABLE login_tokens ("                                                     \
    " token_hash TEXT PRIMARY KEY,"                                                   \
    " user_id TEXT NOT NULL,"                                                         \
    " expiry_ts BIGINT NOT NULL,"                                                     \
    " used_ts BIGINT,"                                                                \
    " auth_provider_id TEXT);\n"                                                      \
    "CREATE TABLE registration_tokens ("                                              \
    " token TEXT PRIMARY KEY,"                                                        \
    " uses_allowed INTEGER,"                                                          \
    " pending INTEGER NOT NULL DEFAULT 0,"                                            \
    " completed INTEGER NOT NULL DEFAULT 0,"                                          \
    " expiry_time BIGINT);\n"                                                         \
    "CREATE TABLE accounts_seq (name TEXT PRIMARY KEY, value BIGINT NOT NULL);\n"     \
    "INSERT INTO accounts_seq (name, value) VALUES ('user_id', 0);\n"

static const mx_migration_t acc_migrations[] = {
    { 1, NULL, ACC_V1("INTEGER PRIMARY KEY"), ACC_V1("BIGSERIAL PRIMARY KEY") },
};

int acc_schema_migrate(char *err, size_t errlen)
{
    int rc = mx_db_migrate(hs.db, "homeserver.accounts", acc_migrations,
                           sizeof(acc_migrations) / sizeof(acc_migrations[0]));
    if (rc < 0)
        snprintf(err, errlen, "homeserver.accounts: migration failed (%d)", rc);
    return rc;
}
