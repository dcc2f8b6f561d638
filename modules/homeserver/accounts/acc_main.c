/*
 * acc_main.c: the accounts part's entry point (hs_accounts_start), its
 * state, the hooks other parts add, the once-a-minute housekeeping timer,
 * and small helpers the other files share (user ID parsing, routes on the
 * v3 and r0 prefixes).
 */
#include "acc_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

acc_state_t *hs_acc;

#define ACC_TIMER_MS 60000

static void acc_free_ptr(void *p)
{
    free(p);
}

static void acc_tick(uv_timer_t *t)
{
    (void)t;
    acc_seen_flush();
    acc_uia_expire();
    acc_rl_expire();
    acc_nonces_expire();
}

int acc_route_v3_r0(const char *method, const char *tail, mx_handler_fn fn, unsigned flags)
{
    char path[256];
    int rc;
    snprintf(path, sizeof(path), "/_matrix/client/v3%s", tail);
    if ((rc = mx_route_add("client", method, path, fn, NULL, flags)) < 0)
        return rc;
    snprintf(path, sizeof(path), "/_matrix/client/r0%s", tail);
    return mx_route_add("client", method, path, fn, NULL, flags);
}

int hs_accounts_start(char *err, size_t errlen)
{
    if (!hs_acc) {
        hs_acc = calloc(1, sizeof(*hs_acc));
        if (!hs_acc)
            return -ENOMEM;
        /* Cache entries, last-seen figures, buckets and nonces are plain
         * malloc'd structs; UIA sessions free themselves (acc_uia.c). */
        if (acc_map_init(&hs_acc->tok_cache, acc_free_ptr) ||
            acc_map_init(&hs_acc->seen, acc_free_ptr) ||
            acc_map_init(&hs_acc->buckets, acc_free_ptr) ||
            acc_map_init(&hs_acc->uia, NULL) ||
            acc_map_init(&hs_acc->nonces, acc_free_ptr) ||
            !(hs_acc->unstable = json_object())) {
            snprintf(err, errlen, "homeserver.accounts: out of memory");
            return -ENOMEM;
        }
    }
    int rc = acc_schema_migrate(err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = acc_tokens_start()) < 0 || (rc = acc_login_routes()) < 0 ||
        (rc = acc_register_routes()) < 0 || (rc = acc_account_routes()) < 0 ||
        (rc = acc_devices_routes()) < 0 || (rc = acc_admin_register_routes()) < 0 ||
        (rc = hs_versions_register()) < 0) {
        snprintf(err, errlen, "homeserver.accounts: cannot add routes (%d)", rc);
        return rc;
    }
    if (!hs_acc->timer_started) {
        uv_timer_init(mx_loop(), &hs_acc->timer);
        uv_timer_start(&hs_acc->timer, acc_tick, ACC_TIMER_MS, ACC_TIMER_MS);
        /* Housekeeping must not keep the loop alive at shutdown. */
        uv_unref((uv_handle_t *)&hs_acc->timer);
        hs_acc->timer_started = true;
    }
    return 0;
}

/* ---------------------------------------------------------------- hooks --- */

int hs_accounts_add_hooks(const hs_accounts_hooks_t *h)
{
    if (!hs_acc || hs_acc->nhooks >= ACC_MAX_HOOKS)
        return -ENOSPC;
    hs_acc->hooks[hs_acc->nhooks++] = h;
    return 0;
}

void acc_hook_user_creating(mx_sql_batch_t *b, const char *user_id, const char *displayname,
                            bool is_guest)
{
    for (int i = 0; i < hs_acc->nhooks; i++)
        if (hs_acc->hooks[i]->user_creating)
            hs_acc->hooks[i]->user_creating(b, user_id, displayname, is_guest);
}

void acc_hook_user_deactivating(mx_sql_batch_t *b, const char *user_id, bool erase)
{
    for (int i = 0; i < hs_acc->nhooks; i++)
        if (hs_acc->hooks[i]->user_deactivating)
            hs_acc->hooks[i]->user_deactivating(b, user_id, erase);
}

void acc_hook_user_registered(const char *user_id, const char *displayname, bool is_guest)
{
    for (int i = 0; i < hs_acc->nhooks; i++)
        if (hs_acc->hooks[i]->user_registered)
            hs_acc->hooks[i]->user_registered(user_id, displayname, is_guest);
}

void acc_hook_device_created(const char *user_id, const char *device_id)
{
    for (int i = 0; i < hs_acc->nhooks; i++)
        if (hs_acc->hooks[i]->device_created)
            hs_acc->hooks[i]->device_created(user_id, device_id);
}

void acc_hook_device_updated(const char *user_id, const char *device_id)
{
    for (int i = 0; i < hs_acc->nhooks; i++)
        if (hs_acc->hooks[i]->device_updated)
            hs_acc->hooks[i]->device_updated(user_id, device_id);
}

void acc_hook_devices_deleted(const char *user_id, const char *const *ids, size_t n)
{
    if (!n)
        return;
    for (int i = 0; i < hs_acc->nhooks; i++)
        if (hs_acc->hooks[i]->devices_deleted)
            hs_acc->hooks[i]->devices_deleted(user_id, ids, n);
}

void acc_hook_user_deactivated(const char *user_id, bool erase)
{
    for (int i = 0; i < hs_acc->nhooks; i++)
        if (hs_acc->hooks[i]->user_deactivated)
            hs_acc->hooks[i]->user_deactivated(user_id, erase);
}

/* ---------------------------------------------------------------- helpers --- */

char *acc_lower(char *s)
{
    for (char *p = s; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return s;
}

char *acc_localpart(mx_pool_t *pool, const char *user_id)
{
    if (!user_id || user_id[0] != '@')
        return NULL;
    const char *colon = strchr(user_id, ':');
    if (!colon)
        return NULL;
    size_t n = (size_t)(colon - user_id - 1);
    char *lp = mx_palloc(pool, n + 1);
    if (!lp)
        return NULL;
    memcpy(lp, user_id + 1, n);
    lp[n] = '\0';
    return lp;
}

char *acc_user_from_input(mx_pool_t *pool, const char *user)
{
    if (!user || !*user)
        return NULL;
    if (user[0] == '@') {
        const char *colon = strchr(user, ':');
        if (!colon || strcmp(colon + 1, hs.server_name) != 0)
            return NULL;
        return mx_pstrdup(pool, user);
    }
    if (strchr(user, ':'))
        return NULL;
    return hs_user_id(pool, user);
}

const char *acc_identifier_user(const json_t *obj, bool *bad_type)
{
    *bad_type = false;
    const json_t *ident = json_object_get(obj, "identifier");
    if (json_is_object(ident)) {
        const char *type = json_string_value(json_object_get(ident, "type"));
        if (!type || strcmp(type, "m.id.user") != 0) {
            *bad_type = true;
            return NULL;
        }
        return json_string_value(json_object_get(ident, "user"));
    }
    return json_string_value(json_object_get(obj, "user"));
}
