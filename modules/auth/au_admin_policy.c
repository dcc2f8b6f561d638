/*
 * au_admin_policy.c: policy data set at run time (MAS's /policy-data):
 *
 *   POST /policy-data          {data: {...}} → 201, the new version in force
 *   GET  /policy-data/latest   404 "No policy data found" before the first
 *   GET  /policy-data/{id}
 *
 * Versions are kept (auth_admin_policy_data); the newest one is merged over
 * the config's `auth.policy.data` (its keys win).  What we enforce from it:
 * `admin_clients`, the clients whose client_credentials tokens may call the
 * admin API (aa_client_admin_check).  Data is checked as MAS's policy
 * would refuse it: an object, `admin_clients` a list of strings.
 */
#include "au_admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AA_PD_NEWEST "SELECT id FROM auth_admin_policy_data ORDER BY created_ts DESC, id DESC LIMIT 1"

static json_t *aa_pd_row(const mx_sql_res_t *res, int st, int i)
{
    json_error_t e;
    json_t *data = json_loads(mx_sql_text(res, st, i, 1), JSON_DECODE_ANY, &e);
    json_t *a = json_pack("{s:o, s:o}", "created_at", aa_time(mx_sql_int(res, st, i, 2)),
                          "data", data ? data : json_null());
    return aa_resource("policy-data", "policy-data", mx_sql_text(res, st, i, 0), a);
}

static aa_list_t *aa_pd_new(aa_req_t *r, const char *not_found)
{
    return aa_list_make(r, "id, data, created_ts", "auth_admin_policy_data", "id", aa_pd_row,
                        not_found);
}

static void aa_pd_latest(aa_req_t *r)
{
    aa_list_t *l = aa_pd_new(r, "No policy data found");
    if (!l) {
        aa_fail(r, -ENOMEM, "policy data");
        return;
    }
    l->where = mx_pstrdup(r->pool, "id = (" AA_PD_NEWEST ")");
    aa_get_run(r, l, NULL);
}

static void aa_pd_get(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    if (id)
        aa_get_by_id(r, aa_pd_new(r, "Policy data not found"), id, 0, NULL);
}

typedef struct aa_pdw {
    aa_req_t *r;
    const char *id;
} aa_pdw_t;

static void aa_pd_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    aa_pdw_t *w = ud;
    if (status < 0) {
        aa_fail(w->r, status, "policy data");
        return;
    }
    mx_log(AU_LOG, MX_LOG_INFO, "policy data %s set through the admin API", w->id);
    aa_get_by_id(w->r, aa_pd_new(w->r, "Policy data not found"), w->id, 201,
                 mx_psprintf(w->r->pool, AA_BASE "/policy-data/%s", w->id));
}

static bool aa_pd_valid(const json_t *data)
{
    if (!json_is_object(data))
        return false;
    const json_t *ac = json_object_get(data, "admin_clients");
    size_t i;
    json_t *v;
    if (ac && !json_is_array(ac))
        return false;
    json_array_foreach(ac, i, v)
        if (!json_is_string(v))
            return false;
    return true;
}

static void aa_pd_set(aa_req_t *r)
{
    json_t *body = aa_body(r);
    if (!body)
        return;
    json_t *data = json_object_get(body, "data");
    if (!data) {
        aa_error(r->req, 400, "Failed to deserialize the JSON body: missing field `data`");
        return;
    }
    if (!aa_pd_valid(data)) {
        aa_error(r->req, 400, "Failed to instanciate policy with the provided data");
        return;
    }
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    aa_pdw_t *w = mx_palloc(r->pool, sizeof(*w));
    mx_sql_batch_t *b = text && w && (w->id = au_ulid(r->pool))
                            ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(text);
        aa_fail(r, -ENOMEM, "policy data");
        return;
    }
    w->r = r;
    mx_sql_add(b, "INSERT INTO auth_admin_policy_data (id, data, created_ts) VALUES (?, ?, ?)",
               "ssi", w->id, text, (int64_t)mx_now_ms());
    free(text);
    if (mx_sql_run(b, aa_pd_written, w) < 0)
        aa_fail(r, -EIO, "policy data");
}

/* ------------------------------------------------------- admin clients --- */

static bool aa_list_has(const json_t *list, const char *client_id)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
        if (client_id && json_is_string(v) && !strcmp(json_string_value(v), client_id))
            return true;
    return false;
}

typedef struct aa_acq {
    char *client_id;
    aa_admin_fn cb;
    void *ud;
} aa_acq_t;

static void aa_ac_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_acq_t *q = ud;
    const json_t *conf = json_object_get(json_object_get(au.conf->policy, "data"),
                                         "admin_clients");
    int verdict = status;
    if (status >= 0) {
        json_t *data = NULL;
        if (mx_sql_nrows(res, 0) > 0)
            data = json_loads(mx_sql_text(res, 0, 0, 0), JSON_DECODE_ANY, NULL);
        const json_t *dyn = json_object_get(data, "admin_clients");
        verdict = aa_list_has(dyn ? dyn : conf, q->client_id);
        json_decref(data);
    }
    q->cb(verdict, q->ud);
    free(q->client_id);
    free(q);
}

int aa_client_admin_check(const char *client_id, aa_admin_fn cb, void *ud)
{
    aa_acq_t *q = calloc(1, sizeof(*q));
    mx_sql_batch_t *b = q && client_id && (q->client_id = strdup(client_id))
                            ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        if (q)
            free(q->client_id);
        free(q);
        return -ENOMEM;
    }
    q->cb = cb;
    q->ud = ud;
    mx_sql_add(b, "SELECT data FROM auth_admin_policy_data WHERE id = (" AA_PD_NEWEST ")", "");
    int rc = mx_sql_run(b, aa_ac_read, q);
    if (rc < 0) {
        free(q->client_id);
        free(q);
    }
    return rc;
}

int aa_policy_routes(void)
{
    static const aa_route_def_t routes[] = {
        { "POST", "/policy-data", aa_pd_set },
        { "GET", "/policy-data/latest", aa_pd_latest },
        { "GET", "/policy-data/{id}", aa_pd_get },
    };
    return AA_ROUTES(routes);
}
