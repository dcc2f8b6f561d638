/*
 * svc_ratelimit.c: per-user rate-limit overrides (Synapse's
 * /_synapse/admin/v1/users/{userId}/override_ratelimit).  The rows live in
 * `ratelimit_override`; a copy in memory (svc->rl: user → [per_second,
 * burst]) answers hs_admin_ratelimit_override, which the accounts part's
 * message limiter asks on every send.  0/0 means "not limited".
 */
#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool hs_admin_ratelimit_override(const char *user_id, double *per_second, double *burst)
{
    const json_t *v = svc && user_id ? json_object_get(svc->rl, user_id) : NULL;
    if (!v)
        return false;
    *per_second = (double)json_integer_value(json_array_get(v, 0));
    *burst = (double)json_integer_value(json_array_get(v, 1));
    return true;
}

int svc_ratelimit_load(void)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT user_id, messages_per_second, burst_count FROM ratelimit_override",
               "");
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    if (rc == 0)
        for (int i = 0; i < mx_sql_nrows(res, 0); i++)
            json_object_set_new(svc->rl, mx_sql_text(res, 0, i, 0),
                                json_pack("[I, I]", (json_int_t)mx_sql_int(res, 0, i, 1),
                                          (json_int_t)mx_sql_int(res, 0, i, 2)));
    if (res)
        mx_sql_res_free(res);
    return rc;
}

static json_t *svc_rl_json(const json_t *v)
{
    if (!v)
        return json_object();
    return json_pack("{s:O, s:O}", "messages_per_second", json_array_get(v, 0), "burst_count",
                     json_array_get(v, 1));
}

static json_t *svc_rl_get_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error", "User does not exist");
    }
    return svc_rl_json(json_object_get(svc->rl, c->user_id));
}

int svc_get_ratelimit(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->user_id = mx_pstrdup(c->pool, user_id);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b)
        mx_sql_add(b, "SELECT 1 FROM users WHERE name = ?", "s", user_id);
    return svc_run(c, b, svc_rl_get_built);
}

static json_t *svc_rl_set_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error", "User does not exist");
    }
    /* Committed: the limiter sees it from now on. */
    if (c->flag) {
        json_object_del(svc->rl, c->user_id);
        return json_object();
    }
    json_t *v = json_pack("[I, I]", (json_int_t)svc_qint(c->args, "per_second", 0),
                          (json_int_t)svc_qint(c->args, "burst", 0));
    json_t *out = svc_rl_json(v);
    json_object_set_new(svc->rl, c->user_id, v);
    return out;
}

int svc_set_ratelimit(const char *user_id, int64_t per_second, int64_t burst,
                      hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->user_id = mx_pstrdup(c->pool, user_id);
    c->flag = per_second < 0;
    c->args = json_pack("{s:I, s:I}", "per_second", (json_int_t)per_second, "burst",
                        (json_int_t)(burst < 0 ? 0 : burst));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        /* The first statement tells whether the user exists; the write is
         * conditional on it, so an unknown user leaves nothing behind. */
        mx_sql_add(b, "SELECT 1 FROM users WHERE name = ?", "s", user_id);
        if (c->flag)
            mx_sql_add(b, "DELETE FROM ratelimit_override WHERE user_id = ?", "s", user_id);
        else
            mx_sql_add(b, "INSERT INTO ratelimit_override (user_id, messages_per_second,"
                          " burst_count) SELECT name, ?, ? FROM users WHERE name = ?"
                          " ON CONFLICT (user_id) DO UPDATE SET"
                          " messages_per_second = excluded.messages_per_second,"
                          " burst_count = excluded.burst_count",
                       "iis", per_second, burst < 0 ? 0 : burst, user_id);
    }
    return svc_run(c, b, svc_rl_set_built);
}
