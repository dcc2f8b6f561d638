/*
 * pu_pushers.c: pushers — GET /pushers, POST /pushers/set, their table and
 * the in-memory list the HTTP pusher (pu_http.c) works from.
 *
 * A pusher is unique per (user, app_id, pushkey).  Setting one without
 * `append` removes the same app_id + pushkey from every other user (the
 * device changed hands); kind null deletes.  A new pusher starts at the
 * current event position, so it never delivers old events.  Pushers of
 * deleted devices and deactivated users go (accounts hooks).  The list is
 * changed after the write committed.
 */
#include "push.h"
#include "../accounts/accounts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PP_NOTIFY_PATH "/_matrix/push/v1/notify"

static pu_pusher_t *pp_head;

pu_pusher_t *pu_pushers_head(void)
{
    return pp_head;
}

static void pp_free(pu_pusher_t *p)
{
    free(p->user_id);
    free(p->app_id);
    free(p->pushkey);
    free(p->device_id);
    free(p->url);
    json_decref(p->info);
    free(p);
}

void pu_pusher_release(pu_pusher_t *p)
{
    if (p->dead && !p->busy)
        pp_free(p);
}

void pu_pusher_remove(pu_pusher_t *p)
{
    for (pu_pusher_t **pp = &pp_head; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    p->next = NULL;
    p->dead = true;
    pu_pusher_release(p);
}

/* A new entry from the stored fields (`info` stolen). */
static pu_pusher_t *pp_new(const char *user_id, const char *device_id, json_t *info,
                           int64_t ts, int64_t last_so)
{
    pu_pusher_t *p = calloc(1, sizeof(*p));
    const json_t *data = json_object_get(info, "data");
    const char *fmt = json_string_value(json_object_get(data, "format"));
    const char *url = json_string_value(json_object_get(data, "url"));
    if (!p) {
        json_decref(info);
        return NULL;
    }
    p->info = info;
    p->user_id = strdup(user_id);
    p->app_id = strdup(json_string_value(json_object_get(info, "app_id")));
    p->pushkey = strdup(json_string_value(json_object_get(info, "pushkey")));
    p->device_id = device_id ? strdup(device_id) : NULL;
    p->url = strdup(url ? url : "");
    p->id_only = fmt && strcmp(fmt, "event_id_only") == 0;
    p->pushkey_ts = ts;
    p->last_so = last_so;
    p->want = last_so;
    if (!p->user_id || !p->app_id || !p->pushkey || !p->url) {
        pp_free(p);
        return NULL;
    }
    return p;
}

static void pp_link(pu_pusher_t *p)
{
    p->next = pp_head;
    pp_head = p;
}

void pu_pushers_wake(const char *user_id, int64_t stream_ordering)
{
    bool any = false;
    for (pu_pusher_t *p = pp_head; p; p = p->next)
        if (strcmp(p->user_id, user_id) == 0) {
            if (stream_ordering > p->want)
                p->want = stream_ordering;
            any = true;
        }
    if (any)
        pu_http_schedule(20);
}

void pu_pushers_badge(const char *user_id)
{
    bool any = false;
    for (pu_pusher_t *p = pp_head; p; p = p->next)
        if (strcmp(p->user_id, user_id) == 0) {
            p->badge = true;
            any = true;
        }
    if (any)
        pu_http_schedule(0);
}

/* -------------------------------------------------------------- storage --- */

static void pp_bg_done(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    if (status < 0)
        mx_log("homeserver", MX_LOG_ERROR, "push: pusher write failed: %s",
               res ? mx_sql_errmsg(res) : "?");
}

/* Runs a background write (no request waits for it). */
static void pp_bg_run(mx_sql_batch_t *b)
{
    if (b && mx_sql_run(b, pp_bg_done, NULL) < 0)
        mx_sql_batch_free(b);
}

void pu_pusher_drop(pu_pusher_t *p)
{
    mx_log("homeserver", MX_LOG_INFO, "push: gateway rejected pushkey of %s (%s); removing",
           p->user_id, p->app_id);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        mx_sql_add(b, "DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?", "sss",
                   p->user_id, p->app_id, p->pushkey);
        pp_bg_run(b);
    }
    pu_pusher_remove(p);
}

static void pp_devices_deleted(const char *user_id, const char *const *ids, size_t n)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    for (size_t i = 0; i < n; i++) {
        if (b)
            mx_sql_add(b, "DELETE FROM pushers WHERE user_id = ? AND device_id = ?", "ss", user_id,
                       ids[i]);
        pu_pusher_t *p = pp_head;
        while (p) {
            pu_pusher_t *next = p->next;
            if (strcmp(p->user_id, user_id) == 0 && p->device_id && strcmp(p->device_id, ids[i]) == 0)
                pu_pusher_remove(p);
            p = next;
        }
    }
    pp_bg_run(b);
}

static void pp_user_deactivating(mx_sql_batch_t *b, const char *user_id, bool erase)
{
    (void)erase;
    mx_sql_add(b, "DELETE FROM pushers WHERE user_id = ?", "s", user_id);
}

static void pp_user_deactivated(const char *user_id, bool erase)
{
    (void)erase;
    pu_pusher_t *p = pp_head;
    while (p) {
        pu_pusher_t *next = p->next;
        if (strcmp(p->user_id, user_id) == 0)
            pu_pusher_remove(p);
        p = next;
    }
}

static const hs_accounts_hooks_t pp_hooks = {
    .devices_deleted = pp_devices_deleted,
    .user_deactivating = pp_user_deactivating,
    .user_deactivated = pp_user_deactivated,
};

/* ------------------------------------------------------------- handlers --- */

static void pp_get_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *list = json_array();
    for (pu_pusher_t *p = pp_head; p; p = p->next)
        if (strcmp(p->user_id, who->user_id) == 0)
            json_array_append(list, p->info);
    mx_req_reply_json(req, 200, json_pack("{s:o}", "pushers", list));
}

static int pp_get(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pp_get_authed, NULL);
}

typedef struct pp_set {
    mx_req_t *req;
    char *user_id, *device_id;
    json_t *info;          /* NULL: a deletion */
    char *app_id, *pushkey;
    bool append;
    int64_t ts, last_so;
} pp_set_t;

static void pp_set_free(pp_set_t *s)
{
    free(s->user_id);
    free(s->device_id);
    free(s->app_id);
    free(s->pushkey);
    json_decref(s->info);
    free(s);
}

static void pp_set_written(int status, mx_sql_res_t *res, void *ud)
{
    pp_set_t *s = ud;
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "push: pusher write failed: %s",
               res ? mx_sql_errmsg(res) : "?");
        hs_reply_storage_error(s->req, status, "pusher write");
        pp_set_free(s);
        return;
    }
    /* Others' copies of this app_id + pushkey (not append), and our own
     * old entry, leave the list. */
    pu_pusher_t *p = pp_head;
    while (p) {
        pu_pusher_t *next = p->next;
        if (strcmp(p->app_id, s->app_id) == 0 && strcmp(p->pushkey, s->pushkey) == 0) {
            bool mine = strcmp(p->user_id, s->user_id) == 0;
            if (mine || (s->info && !s->append)) {
                if (mine && s->info) {
                    s->last_so = p->last_so; /* an update keeps its position */
                }
                pu_pusher_remove(p);
            }
        }
        p = next;
    }
    if (s->info) {
        pu_pusher_t *np = pp_new(s->user_id, s->device_id, s->info, s->ts, s->last_so);
        s->info = NULL;
        if (np)
            pp_link(np);
    }
    mx_req_reply_json(s->req, 200, json_object());
    pp_set_free(s);
}

/* A required string member; replies 400 and returns NULL when missing. */
static const char *pp_str(mx_req_t *req, const json_t *body, const char *key)
{
    const json_t *v = json_object_get(body, key);
    if (!v) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: %s", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "'%s' must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

static bool pp_url_ok(const char *url)
{
    const char *p = NULL;
    if (strncmp(url, "https://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        p = url + 7;
    if (!p || !*p || *p == '/')
        return false;
    const char *path = strchr(p, '/');
    return path && strcmp(path, PP_NOTIFY_PATH) == 0;
}

static void pp_set_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const json_t *body = mx_req_json(req);
    const json_t *kind = json_object_get(body, "kind");
    if (!kind) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing parameter: kind");
        return;
    }
    const char *app_id = pp_str(req, body, "app_id");
    if (!app_id)
        return;
    const char *pushkey = pp_str(req, body, "pushkey");
    if (!pushkey)
        return;
    if (strlen(app_id) > 64 || strlen(pushkey) > 512) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "app_id or pushkey too long");
        return;
    }
    json_t *info = NULL;
    bool append = json_is_true(json_object_get(body, "append"));
    if (!json_is_null(kind)) {
        if (!json_is_string(kind) || strcmp(json_string_value(kind), "http") != 0) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Unsupported pusher kind");
            return;
        }
        static const char *const need[] = { "app_display_name", "device_display_name", "lang" };
        for (size_t i = 0; i < 3; i++)
            if (!pp_str(req, body, need[i]))
                return;
        const json_t *data = json_object_get(body, "data");
        if (!json_is_object(data)) {
            mx_req_error(req, 400, data ? "M_INVALID_PARAM" : "M_MISSING_PARAM",
                         "'data' must be an object");
            return;
        }
        const char *url = json_string_value(json_object_get(data, "url"));
        if (!url) {
            mx_req_error(req, 400, "M_MISSING_PARAM", "'url' required in 'data'");
            return;
        }
        if (!pp_url_ok(url)) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "'url' must have a path of '%s'",
                         PP_NOTIFY_PATH);
            return;
        }
        const json_t *tag = json_object_get(body, "profile_tag");
        if (tag && !json_is_string(tag)) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "'profile_tag' must be a string");
            return;
        }
        info = json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:O}", "kind", "http", "app_id", app_id,
                         "pushkey", pushkey, "app_display_name",
                         json_object_get(body, "app_display_name"), "device_display_name",
                         json_object_get(body, "device_display_name"), "lang",
                         json_object_get(body, "lang"), "data", data);
        if (info && tag)
            json_object_set(info, "profile_tag", (json_t *)tag);
        if (!info) {
            mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
            return;
        }
    }
    pp_set_t *s = calloc(1, sizeof(*s));
    mx_sql_batch_t *b = s ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b || !(s->user_id = strdup(who->user_id)) || !(s->app_id = strdup(app_id)) ||
        !(s->pushkey = strdup(pushkey))) {
        if (b)
            mx_sql_batch_free(b);
        if (s)
            pp_set_free(s);
        json_decref(info);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    s->req = req;
    s->device_id = who->device_id ? strdup(who->device_id) : NULL;
    s->info = info;
    s->append = append;
    s->ts = (int64_t)mx_now_ms();
    s->last_so = hs_stream_current(HS_STREAM_EVENTS);
    if (!info) {
        mx_sql_add(b, "DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?", "sss",
                   who->user_id, app_id, pushkey);
    } else {
        if (!append)
            mx_sql_add(b, "DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                       "sss", app_id, pushkey, who->user_id);
        char *data = json_dumps(json_object_get(info, "data"), JSON_COMPACT);
        mx_sql_add(b, "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name,"
                      " device_display_name, profile_tag, lang, data, device_id, ts,"
                      " last_stream_ordering, failing_since)"
                      " VALUES (?, ?, ?, 'http', ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
                      " ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET"
                      " app_display_name = excluded.app_display_name,"
                      " device_display_name = excluded.device_display_name,"
                      " profile_tag = excluded.profile_tag, lang = excluded.lang,"
                      " data = excluded.data, device_id = excluded.device_id, ts = excluded.ts",
                   "sssssssssii", who->user_id, app_id, pushkey,
                   json_string_value(json_object_get(info, "app_display_name")),
                   json_string_value(json_object_get(info, "device_display_name")),
                   json_string_value(json_object_get(info, "profile_tag")),
                   json_string_value(json_object_get(info, "lang")), data ? data : "{}",
                   who->device_id, s->ts, s->last_so);
        free(data);
    }
    if (mx_sql_run(b, pp_set_written, s) < 0) {
        mx_sql_batch_free(b);
        pp_set_written(MX_EDB, NULL, s);
    }
}

static int pp_set(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pp_set_authed, NULL);
}

/* ---------------------------------------------------------------- start --- */

static int pp_load(char *err, size_t errlen)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT user_id, app_id, pushkey, app_display_name, device_display_name,"
                  " profile_tag, lang, data, device_id, ts, last_stream_ordering FROM pushers", "");
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.push: cannot load pushers: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        json_t *data = json_loads(mx_sql_text(res, 0, i, 7), 0, NULL);
        json_t *info = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s?, s:o}", "kind", "http", "app_id",
                                 mx_sql_text(res, 0, i, 1), "pushkey", mx_sql_text(res, 0, i, 2),
                                 "app_display_name", mx_sql_text(res, 0, i, 3),
                                 "device_display_name", mx_sql_text(res, 0, i, 4), "lang",
                                 mx_sql_text(res, 0, i, 6), "data", data ? data : json_object());
        if (info && !mx_sql_is_null(res, 0, i, 5))
            json_object_set_new(info, "profile_tag", json_string(mx_sql_text(res, 0, i, 5)));
        pu_pusher_t *p = info ? pp_new(mx_sql_text(res, 0, i, 0),
                                       mx_sql_is_null(res, 0, i, 8) ? NULL : mx_sql_text(res, 0, i, 8),
                                       info, mx_sql_int(res, 0, i, 9), mx_sql_int(res, 0, i, 10))
                              : NULL;
        if (p) {
            /* Catch up on whatever arrived while we were down. */
            p->want = hs_stream_current(HS_STREAM_EVENTS);
            pp_link(p);
        }
    }
    mx_sql_res_free(res);
    return 0;
}

int pu_pushers_start(char *err, size_t errlen)
{
    int rc = pp_load(err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = hs_accounts_add_hooks(&pp_hooks)) < 0 || (rc = pu_http_start()) < 0 ||
        (rc = pu_route("GET", "/pushers", pp_get, 0)) < 0 ||
        (rc = pu_route("POST", "/pushers/set", pp_set, MX_ROUTE_JSON_BODY)) < 0) {
        snprintf(err, errlen, "homeserver.push: cannot start pushers (%d)", rc);
        return rc;
    }
    if (pp_head)
        pu_http_schedule(1000);
    return 0;
}

void pu_pushers_stop(void)
{
    pu_http_stop();
    while (pp_head)
        pu_pusher_remove(pp_head);
}
