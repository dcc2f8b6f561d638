/*
 * ad_misc.c: the Admin API routes that are neither users, rooms, media nor
 * tokens — server version, ESS's version document, event reports, server
 * notices, background updates, federation destinations and statistics.
 */
#include "admin.h"
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ad_server_version(ad_req_t *ar)
{
    mx_req_reply_json(ar->req, 200, json_pack("{s:s}", "server_version",
                                              "mxstack " PACKAGE_VERSION));
}

/* ESS serves this static document from HAProxy; Element Admin reads it to
 * show the ESS edition.  No admin token needed. */
static int ad_ess_version(mx_req_t *req, void *ud)
{
    (void)ud;
    mx_req_reply_json(req, 200, json_pack("{s:s, s:s}", "version",
                                          ad->conf.ess_version ? ad->conf.ess_version
                                                               : PACKAGE_VERSION,
                                          "edition", ad->conf.ess_edition ? ad->conf.ess_edition
                                                                          : "community"));
    return MX_DONE;
}

/* ------------------------------------------------------- event reports --- */

static void ad_reports_list(ad_req_t *ar)
{
    int64_t from, limit;
    const char *dir = mx_req_query(ar->req, "dir");
    if (!ad_qint(ar, "from", 0, 0, &from) || !ad_qint(ar, "limit", 100, 0, &limit))
        return;
    if (dir && strcmp(dir, "f") && strcmp(dir, "b")) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Unknown direction: %s", dir);
        return;
    }
    if (limit > ad->conf.max_limit)
        limit = ad->conf.max_limit;
    json_t *q = json_pack("{s:I, s:I, s:s}", "from", (json_int_t)from, "limit", (json_int_t)limit,
                          "dir", dir ? dir : "b");
    static const char *const strs[] = { "room_id", "user_id", "event_sender_user_id" };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        const char *v = mx_req_query(ar->req, strs[i]);
        if (v)
            json_object_set_new(q, strs[i], json_string(v));
    }
    AD_CALL(ar, ar->hs->list_event_reports(q, ad_done, ar));
    json_decref(q);
}

static bool ad_report_id(ad_req_t *ar, int64_t *id)
{
    const char *s = mx_req_param(ar->req, "reportId");
    char *end = NULL;
    long long v = s ? strtoll(s, &end, 10) : -1;
    if (!s || !*s || *end || v < 0) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "The report_id parameter must be a string"
                     " representing a positive integer.");
        return false;
    }
    *id = v;
    return true;
}

static void ad_report_get(ad_req_t *ar)
{
    int64_t id;
    if (ad_report_id(ar, &id))
        AD_CALL(ar, ar->hs->get_event_report(id, ad_done, ar));
}

static void ad_report_delete(ad_req_t *ar)
{
    int64_t id;
    if (ad_report_id(ar, &id))
        AD_CALL(ar, ar->hs->delete_event_report(id, ad_done, ar));
}

/* ------------------------------------------------------ server notices --- */

typedef struct ad_notice {
    ad_req_t *ar;
    const char *txn_key;      /* pool, or NULL (POST) */
} ad_notice_t;

static void ad_notice_sent(int status, json_t *result, void *ud)
{
    ad_notice_t *n = ud;
    if (status == 0 && n->txn_key) {
        if (!ad->notice_txns)
            ad->notice_txns = json_object();
        json_object_set(ad->notice_txns, n->txn_key, result);
    }
    ad_done(status, result, n->ar);
}

static void ad_server_notice(ad_req_t *ar)
{
    json_t *b = ad_body(ar);
    if (!b)
        return;
    if (!json_is_string(json_object_get(b, "user_id")) ||
        !json_is_object(json_object_get(b, "content"))) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing params: user_id, content");
        return;
    }
    const json_t *type = json_object_get(b, "type"), *sk = json_object_get(b, "state_key");
    if ((type && !json_is_string(type)) || (sk && !json_is_string(sk))) {
        mx_req_error(ar->req, 400, "M_BAD_JSON", "type and state_key must be strings");
        return;
    }
    if (!ad_is_local(json_string_value(json_object_get(b, "user_id")))) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Server notices can only be sent to local"
                     " users");
        return;
    }
    ad_notice_t *n = mx_palloc(mx_req_pool(ar->req), sizeof(*n));
    if (!n) {
        mx_req_error(ar->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    n->ar = ar;
    n->txn_key = NULL;
    const char *txn = mx_req_param(ar->req, "txnId");
    if (txn) {
        /* PUT with a transaction ID: the same ID gets the same answer. */
        n->txn_key = mx_psprintf(mx_req_pool(ar->req), "%s\x1f%s", ar->admin, txn);
        const json_t *seen = json_object_get(ad->notice_txns, n->txn_key);
        if (seen) {
            mx_req_reply_json(ar->req, 200, json_deep_copy(seen));
            return;
        }
    }
    AD_CALL(ar, ar->hs->send_server_notice(b, ad_notice_sent, n));
}

/* ------------------------------------------------- background updates --- */

/* Migrations run at start, before anything is served, and statistics and
 * the user directory are read live: no update ever waits in a queue. */
static void ad_bg_status(ad_req_t *ar)
{
    mx_req_reply_json(ar->req, 200, json_pack("{s:b, s:{}}", "enabled", !ad->bg_paused,
                                              "current_updates"));
}

static void ad_bg_enabled(ad_req_t *ar)
{
    if (!strcmp(mx_req_method(ar->req), "POST")) {
        json_t *b = ad_body(ar);
        if (!b)
            return;
        const json_t *v = json_object_get(b, "enabled");
        if (!json_is_boolean(v)) {
            mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing boolean 'enabled'");
            return;
        }
        ad->bg_paused = !json_is_true(v);
    }
    mx_req_reply_json(ar->req, 200, json_pack("{s:b}", "enabled", !ad->bg_paused));
}

static void ad_bg_start_job(ad_req_t *ar)
{
    json_t *b = ad_body(ar);
    if (!b)
        return;
    const char *job = json_string_value(json_object_get(b, "job_name"));
    if (!job) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM", "Missing param: job_name");
        return;
    }
    /* Synapse's two jobs rebuild tables mxstack derives live (room
     * statistics, the user directory): there is nothing to rebuild. */
    if (strcmp(job, "populate_stats_process_rooms") && strcmp(job, "regenerate_directory")) {
        mx_req_error(ar->req, 400, "M_UNKNOWN", "Invalid job_name");
        return;
    }
    mx_req_reply_json(ar->req, 200, json_object());
}

/* ---------------------------------------------- federation destinations --- */

static void ad_dests_list(ad_req_t *ar)
{
    json_t *q = ad_qpage(ar);
    if (!q)
        return;
    const char *order = mx_req_query(ar->req, "order_by");
    const char *name = mx_req_query(ar->req, "destination");
    if (order)
        json_object_set_new(q, "order_by", json_string(order));
    if (name)
        json_object_set_new(q, "destination", json_string(name));
    int rc = ar->hs->list_destinations(q, ad_done, ar);
    json_decref(q);
    if (rc < 0)
        ad_list_failed(ar, rc, order);
}

static void ad_dest_get(ad_req_t *ar)
{
    AD_CALL(ar, ar->hs->get_destination(mx_req_param(ar->req, "destination"), ad_done, ar));
}

static void ad_dest_rooms(ad_req_t *ar)
{
    json_t *q = ad_qpage(ar);
    if (!q)
        return;
    AD_CALL(ar, ar->hs->destination_rooms(mx_req_param(ar->req, "destination"), q, ad_done, ar));
    json_decref(q);
}

static void ad_dest_reset(ad_req_t *ar)
{
    const char *d = mx_req_param(ar->req, "destination");
    if (!strcmp(d, mx_server_conf()->server_name)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Can not reset connection to own server");
        return;
    }
    AD_CALL(ar, ar->hs->reset_destination(d, ad_done, ar));
}

/* ---------------------------------------------------------- statistics --- */

static void ad_stats_media(ad_req_t *ar)
{
    int64_t from, limit, from_ts, until_ts;
    const char *dir;
    if (!ad_qint(ar, "from", 0, 0, &from) || !ad_qint(ar, "limit", 100, 0, &limit) ||
        !ad_qint(ar, "from_ts", 0, 0, &from_ts) ||
        !ad_qint(ar, "until_ts", INT64_MAX, 0, &until_ts) || !ad_qdir(ar, &dir))
        return;
    if (until_ts < from_ts) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Query parameter until_ts must be greater"
                     " than from_ts.");
        return;
    }
    json_t *q = json_pack("{s:I, s:I, s:I, s:I, s:s}", "from", (json_int_t)from, "limit",
                          (json_int_t)limit, "from_ts", (json_int_t)from_ts, "until_ts",
                          (json_int_t)until_ts, "dir", dir);
    const char *order = mx_req_query(ar->req, "order_by");
    const char *term = mx_req_query(ar->req, "search_term");
    if (order)
        json_object_set_new(q, "order_by", json_string(order));
    if (term)
        json_object_set_new(q, "search_term", json_string(term));
    int rc = ar->hs->stats_users_media(q, ad_done, ar);
    json_decref(q);
    if (rc < 0)
        ad_list_failed(ar, rc, order);
}

static void ad_stats_rooms(ad_req_t *ar)
{
    AD_CALL(ar, ar->hs->stats_database_rooms(ad_done, ar));
}

int ad_misc_routes(void)
{
    static const ad_route_t r[] = {
        { "GET", AD_V1 "/server_version", ad_server_version, AD_NO_SERVICE },
        { "GET", AD_V1 "/event_reports", ad_reports_list, 0 },
        { "GET", AD_V1 "/event_reports/{reportId}", ad_report_get, 0 },
        { "DELETE", AD_V1 "/event_reports/{reportId}", ad_report_delete, AD_J },
        { "POST", AD_V1 "/send_server_notice", ad_server_notice, AD_J },
        { "PUT", AD_V1 "/send_server_notice/{txnId}", ad_server_notice, AD_J },
        { "GET", AD_V1 "/background_updates/status", ad_bg_status, AD_NO_SERVICE },
        { "GET", AD_V1 "/background_updates/enabled", ad_bg_enabled, AD_NO_SERVICE },
        { "POST", AD_V1 "/background_updates/enabled", ad_bg_enabled, AD_J | AD_NO_SERVICE },
        { "POST", AD_V1 "/background_updates/start_job", ad_bg_start_job, AD_J | AD_NO_SERVICE },
        { "GET", AD_V1 "/federation/destinations", ad_dests_list, 0 },
        { "GET", AD_V1 "/federation/destinations/{destination}", ad_dest_get, 0 },
        { "GET", AD_V1 "/federation/destinations/{destination}/rooms", ad_dest_rooms, 0 },
        { "POST", AD_V1 "/federation/destinations/{destination}/reset_connection", ad_dest_reset,
          AD_J },
        { "GET", AD_V1 "/statistics/users/media", ad_stats_media, 0 },
        { "GET", AD_V1 "/statistics/database/rooms", ad_stats_rooms, 0 },
    };
    int rc = ad_routes(r, sizeof(r) / sizeof(r[0]));
    if (rc < 0)
        return rc;
    /* ESS's version document: on the client resource (the Synapse host)
     * and the admin one, no token. */
    static const char *const res[] = { "client", "admin" };
    for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
        rc = mx_route_add(res[i], "GET", "/_synapse/ess/version", ad_ess_version, NULL, 0);
        if (rc < 0)
            return rc;
    }
    return 0;
}
