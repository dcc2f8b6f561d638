/*
 * au_admin_clients.c: OAuth clients defined in the config, and who may use
 * the admin API without a user.
 *
 * As in MAS's config:
 *
 *   auth:
 *     clients:
 *       - client_id: 01J...            # letters, digits, . _ -
 *         client_auth_method: client_secret_basic   # or client_secret_post
 *         client_secret: "..."
 *     policy:
 *       data:
 *         admin_clients: [01J...]      # client_credentials tokens of these
 *                                      # clients may call /api/admin/v1
 *
 * Configured clients are written to auth_clients at start (secret hashed),
 * with the client_credentials grant only, so the token endpoint and
 * introspection treat them like registered ones.
 */
#include "au_admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool aa_client_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

int aa_clients_start(char *err, size_t errlen)
{
    json_t *list = au.conf->clients;
    if (!list)
        return 0;
    if (!json_is_array(list)) {
        snprintf(err, errlen, "auth.clients must be a list");
        return -EINVAL;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b)
        return -ENOMEM;
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) {
        const char *id = json_string_value(json_object_get(c, "client_id"));
        const char *secret = json_string_value(json_object_get(c, "client_secret"));
        const char *method = json_string_value(json_object_get(c, "client_auth_method"));
        if (!method)
            method = "client_secret_basic";
        if (!aa_client_id_ok(id) || !secret || strlen(secret) < 16 ||
            (strcmp(method, "client_secret_basic") && strcmp(method, "client_secret_post"))) {
            mx_sql_batch_free(b);
            snprintf(err, errlen,
                     "auth.clients[%zu]: needs client_id (letters, digits, . _ -), a"
                     " client_secret of 16+ characters and client_auth_method"
                     " client_secret_basic or client_secret_post", i);
            return -EINVAL;
        }
        char hash[AU_HASH_HEX];
        au_hash_hex(secret, hash);
        json_t *md = json_pack("{s:s, s:[s], s:[], s:s, s:s}", "token_endpoint_auth_method",
                               method, "grant_types", "client_credentials", "redirect_uris",
                               "client_name", id, "application_type", "web");
        char *text = md ? json_dumps(md, JSON_COMPACT) : NULL;
        json_decref(md);
        if (!text) {
            mx_sql_batch_free(b);
            return -ENOMEM;
        }
        mx_sql_add(b, "INSERT INTO auth_clients (client_id, secret_hash, metadata, created_ts)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET"
                      " secret_hash = excluded.secret_hash, metadata = excluded.metadata",
                   "sssi", id, hash, text, (int64_t)mx_now_ms());
        free(text);
    }
    int rc = mx_sql_run_sync(b, NULL);
    if (rc < 0)
        snprintf(err, errlen, "auth: cannot store the configured clients (%d)", rc);
    return rc;
}

bool aa_client_is_admin(const char *client_id)
{
    json_t *list = json_object_get(json_object_get(au.conf->policy, "data"), "admin_clients");
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
        if (client_id && json_is_string(v) && !strcmp(json_string_value(v), client_id))
            return true;
    return false;
}
