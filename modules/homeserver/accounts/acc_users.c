/*
 * acc_users.c: lookups other parts make on accounts data (hs_user_get,
 * hs_user_devices), so that no other part reads the accounts tables.
 */
#include "acc_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct acc_uq {
    hs_user_fn ucb;
    hs_devices_fn dcb;
    void *ud;
    char user_id[256];
} acc_uq_t;

static void acc_user_read(int status, mx_sql_res_t *res, void *ud)
{
    acc_uq_t *q = ud;
    if (status < 0 || mx_sql_nrows(res, 0) < 1) {
        q->ucb(status < 0 ? status : 0, NULL, q->ud);
        free(q);
        return;
    }
    hs_user_row_t u = {
        .user_id = mx_sql_text(res, 0, 0, 0),
        .is_guest = mx_sql_int(res, 0, 0, 1) != 0,
        .is_admin = mx_sql_int(res, 0, 0, 2) != 0,
        .deactivated = mx_sql_int(res, 0, 0, 3) != 0,
        .erased = mx_sql_int(res, 0, 0, 4) != 0,
        .locked = mx_sql_int(res, 0, 0, 5) != 0,
        .shadow_banned = mx_sql_int(res, 0, 0, 6) != 0,
        .user_type = mx_sql_text(res, 0, 0, 7),
        .creation_ts = mx_sql_int(res, 0, 0, 8),
    };
    q->ucb(0, &u, q->ud);
    free(q);
}

int hs_user_get(const char *user_id, hs_user_fn cb, void *ud)
{
    if (!user_id || !cb)
        return -EINVAL;
    acc_uq_t *q = calloc(1, sizeof(*q));
    mx_sql_batch_t *b = q ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        free(q);
        return -ENOMEM;
    }
    q->ucb = cb;
    q->ud = ud;
    mx_sql_add(b,
               "SELECT name, is_guest, admin, deactivated, erased, locked, shadow_banned,"
               " user_type, creation_ts FROM users WHERE name = ?",
               "s", user_id);
    int rc = mx_sql_run(b, acc_user_read, q);
    if (rc < 0) {
        mx_sql_batch_free(b);
        free(q);
    }
    return rc;
}

static void acc_user_devices_read(int status, mx_sql_res_t *res, void *ud)
{
    acc_uq_t *q = ud;
    json_t *arr = status < 0 ? NULL : acc_devices_json(res, 0, q->user_id);
    q->dcb(status < 0 ? status : arr ? 0 : -ENOMEM, arr, q->ud);
    json_decref(arr);
    free(q);
}

int hs_user_devices(const char *user_id, hs_devices_fn cb, void *ud)
{
    if (!user_id || !cb || strlen(user_id) >= sizeof(((acc_uq_t *)0)->user_id))
        return -EINVAL;
    acc_uq_t *q = calloc(1, sizeof(*q));
    mx_sql_batch_t *b = q ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        free(q);
        return -ENOMEM;
    }
    q->dcb = cb;
    q->ud = ud;
    memcpy(q->user_id, user_id, strlen(user_id) + 1);
    acc_devices_select(b, user_id, NULL);
    int rc = mx_sql_run(b, acc_user_devices_read, q);
    if (rc < 0) {
        mx_sql_batch_free(b);
        free(q);
    }
    return rc;
}
