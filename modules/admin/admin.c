/*
 * admin.c: the admin module's descriptor, its `admin:` config section, and
 * the machinery every route shares: the admin check on the access token
 * (through `auth.token`), query parameter parsing and the mapping of the
 * homeserver service's results to HTTP replies.  See README.md.
 */
#include "admin.h"
#include "ad_console.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

MX_MODULE_API_DEFINE;

ad_state_t *ad;
static ad_state_t ad_store;

static const mx_conf_item_t ad_conf_items[] = {
    MX_CONF_STR("ess_version", ad_conf_t, ess_version, NULL),
    MX_CONF_STR("ess_edition", ad_conf_t, ess_edition, "community"),
    MX_CONF_INT("max_limit", ad_conf_t, max_limit, "1000"),
    MX_CONF_BOOL("allow_self_whois", ad_conf_t, allow_self_whois, "true"),
    MX_CONF_INT("room_delete_step", ad_conf_t, room_delete_step, "1000"),
    MX_CONF_INT("test_room_delete_step_delay_ms", ad_conf_t, test_room_delete_step_delay_ms,
                "0"),
    MX_CONF_END,
};

/* ------------------------------------------------------------- routes --- */

typedef struct ad_route_ent {
    ad_fn fn;
    unsigned flags;
} ad_route_ent_t;

typedef struct ad_wait {
    mx_req_t *req;
    const ad_route_ent_t *ent;
} ad_wait_t;

/* The admin scope of the auth module's OAuth tokens (as Synapse + MAS). */
static bool ad_scope_admin(const char *scope)
{
    static const char want[] = "urn:synapse:admin:*";
    size_t n = sizeof(want) - 1;
    for (const char *p = scope; p && *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && !strncmp(p, want, n))
            return true;
        p = e;
    }
    return false;
}

static void ad_token_done(int status, const hs_token_info_t *info, void *ud)
{
    ad_wait_t *w = ud;
    mx_req_t *req = w->req;
    if (status < 0 || !info) {
        if (status == -ENOENT || status == -EKEYEXPIRED || status == -EKEYREVOKED || status == 0)
            mx_req_error(req, 401, "M_UNKNOWN_TOKEN", "Invalid access token passed.");
        else
            mx_req_error(req, 500, "M_UNKNOWN", "Internal server error");
        return;
    }
    bool is_admin = info->is_admin || ad_scope_admin(info->scope);
    mx_pool_t *pool = mx_req_pool(req);
    if (!is_admin) {
        /* A few routes let a user ask about itself (whois). */
        const char *target = mx_req_param(req, "userId");
        if (!(w->ent->flags & AD_SELF_OK) || !ad->conf.allow_self_whois || !target ||
            strcmp(target, info->user_id) != 0) {
            mx_req_error(req, 403, "M_FORBIDDEN", "You are not a server admin");
            return;
        }
    }
    const hs_admin_iface_t *hs_if = mx_service_get(HS_ADMIN_SERVICE);
    if (hs_if && hs_if->size < sizeof(hs_admin_iface_t))
        hs_if = NULL;
    if (!hs_if && !(w->ent->flags & AD_NO_SERVICE)) {
        mx_req_error(req, 503, "M_UNKNOWN", "The homeserver is not available");
        return;
    }
    ad_req_t *ar = mx_palloc(pool, sizeof(*ar));
    if (!ar) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(ar, 0, sizeof(*ar));
    ar->req = req;
    ar->admin = mx_pstrdup(pool, info->user_id);
    ar->is_admin = is_admin;
    ar->ok_status = 200;
    ar->hs = hs_if;
    mx_req_set_user(req, ar->admin);
    w->ent->fn(ar);
}

static int ad_handler(mx_req_t *req, void *ud)
{
    const ad_route_ent_t *ent = ud;
    const char *token = mx_req_access_token(req);
    if (!token || !*token) {
        mx_req_error(req, 401, "M_MISSING_TOKEN", "Missing access token.");
        return MX_DONE;
    }
    const mx_auth_token_iface_t *tok = mx_service_get("auth.token");
    if (!tok || !tok->validate) {
        mx_req_error(req, 503, "M_UNKNOWN", "No token service");
        return MX_DONE;
    }
    ad_wait_t *w = mx_palloc(mx_req_pool(req), sizeof(*w));
    if (!w) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_DONE;
    }
    w->req = req;
    w->ent = ent;
    int rc = tok->validate(token, ad_token_done, w);
    if (rc < 0)
        mx_req_error(req, 500, "M_UNKNOWN", "Token check failed");
    return MX_ASYNC;
}

int ad_route(const char *method, const char *path, ad_fn fn, unsigned flags)
{
    /* One entry per route for the life of the process; freed at exit
     * with the module (never removed). */
    ad_route_ent_t *ent = malloc(sizeof(*ent));
    if (!ent)
        return -ENOMEM;
    ent->fn = fn;
    ent->flags = flags;
    unsigned core_flags = flags & 0xff;
    int rc;
    if ((rc = mx_route_add("admin", method, path, ad_handler, ent, core_flags)) < 0 ||
        (rc = mx_route_add("client", method, path, ad_handler, ent, core_flags)) < 0)
        return rc;
    return 0;
}

int ad_routes(const ad_route_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = ad_route(r[i].method, r[i].path, r[i].fn, r[i].flags);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ replies --- */

void ad_done(int status, json_t *result, void *ud)
{
    ad_req_t *ar = ud;
    if (status == 0) {
        mx_req_reply_json(ar->req, ar->ok_status, result ? result : json_object());
        return;
    }
    const char *errcode = json_string_value(json_object_get(result, "errcode"));
    const char *error = json_string_value(json_object_get(result, "error"));
    int http;
    switch (status) {
    case -ENOENT:
        http = 404;
        if (!errcode)
            errcode = "M_NOT_FOUND", error = "Not found";
        break;
    case -EINVAL:
    case -EEXIST:
        http = 400;
        if (!errcode)
            errcode = "M_INVALID_PARAM", error = "Invalid parameter";
        break;
    case -EPERM:
        http = 403;
        if (!errcode)
            errcode = "M_FORBIDDEN", error = "Forbidden";
        break;
    default:
        http = 500;
        if (!errcode)
            errcode = "M_UNKNOWN", error = "Internal server error";
        mx_log("admin", MX_LOG_ERROR, "%s %s: service error %d", mx_req_method(ar->req),
               mx_req_path(ar->req), status);
        break;
    }
    mx_req_error(ar->req, http, errcode, "%s", error ? error : "");
    json_decref(result);
}

void ad_call_failed(ad_req_t *ar, int rc)
{
    if (rc == -EINVAL)
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Invalid parameter");
    else
        mx_req_error(ar->req, 500, "M_UNKNOWN", "Internal server error (%d)", rc);
}

/* ------------------------------------------------------------ parsing --- */

bool ad_qint(ad_req_t *ar, const char *name, int64_t def, int64_t min, int64_t *out)
{
    const char *v = mx_req_query(ar->req, name);
    if (!v) {
        *out = def;
        return true;
    }
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < min) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Query parameter %s must be an integer%s",
                     name, min >= 0 ? " >= 0" : "");
        return false;
    }
    *out = x;
    return true;
}

bool ad_qbool(ad_req_t *ar, const char *name, int def, int *out)
{
    const char *v = mx_req_query(ar->req, name);
    if (!v) {
        *out = def;
        return true;
    }
    if (!strcmp(v, "true")) {
        *out = 1;
        return true;
    }
    if (!strcmp(v, "false")) {
        *out = 0;
        return true;
    }
    mx_req_error(ar->req, 400, "M_INVALID_PARAM",
                 "Boolean query parameter %s must be one of ['true', 'false']", name);
    return false;
}

bool ad_qdir(ad_req_t *ar, const char **out)
{
    const char *v = mx_req_query(ar->req, "dir");
    if (!v || !strcmp(v, "f") || !strcmp(v, "b")) {
        *out = v ? v : "f";
        return true;
    }
    mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Unknown direction: %s", v);
    return false;
}

json_t *ad_qpage(ad_req_t *ar)
{
    int64_t from, limit;
    const char *dir;
    if (!ad_qint(ar, "from", 0, 0, &from) || !ad_qint(ar, "limit", 100, 0, &limit) ||
        !ad_qdir(ar, &dir))
        return NULL;
    if (limit > ad->conf.max_limit)
        limit = ad->conf.max_limit;
    return json_pack("{s:I, s:I, s:s}", "from", (json_int_t)from, "limit", (json_int_t)limit,
                     "dir", dir);
}

void ad_list_failed(ad_req_t *ar, int rc, const char *order)
{
    if (rc == -EINVAL)
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Unknown value for order_by: %s",
                     order ? order : "");
    else
        ad_call_failed(ar, rc);
}

const char *ad_local_user(ad_req_t *ar, const char *why)
{
    const char *u = ad_user_param(ar);
    if (!u)
        return NULL;
    if (!ad_is_local(u)) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "%s", why);
        return NULL;
    }
    return u;
}

bool ad_is_local(const char *user_id)
{
    const char *colon = user_id ? strchr(user_id, ':') : NULL;
    return colon && user_id[0] == '@' && !strcmp(colon + 1, mx_server_conf()->server_name);
}

const char *ad_user_param(ad_req_t *ar)
{
    const char *u = mx_req_param(ar->req, "userId");
    if (!u || u[0] != '@' || !strchr(u, ':') || strlen(u) > 255) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Invalid user ID");
        return NULL;
    }
    return u;
}

json_t *ad_body(ad_req_t *ar)
{
    json_t *b = mx_req_json(ar->req);
    if (b && !json_is_object(b)) {
        mx_req_error(ar->req, 400, "M_NOT_JSON", "Content not JSON.");
        return NULL;
    }
    if (!b) {
        b = json_object();
        /* Kept alive with the request. */
        mx_pool_on_free(mx_req_pool(ar->req), (void (*)(void *))json_decref, b);
    }
    return b;
}

/* ---------------------------------------------------------- lifecycle --- */

static int ad_init(void *conf, char *err, size_t errlen)
{
    memset(&ad_store, 0, sizeof(ad_store));
    ad_store.conf = *(const ad_conf_t *)conf;
    if (ad_store.conf.max_limit < 1) {
        snprintf(err, errlen, "admin: max_limit must be >= 1");
        return -EINVAL;
    }
    if (ad_store.conf.room_delete_step < 1 || ad_store.conf.test_room_delete_step_delay_ms < 0) {
        snprintf(err, errlen, "admin: room_delete_step must be >= 1, "
                              "test_room_delete_step_delay_ms >= 0");
        return -EINVAL;
    }
    ad = &ad_store;
    return 0;
}

static int ad_start(char *err, size_t errlen)
{
    int rc;
    if ((rc = ad_misc_routes()) < 0 || (rc = ad_users_routes()) < 0 ||
        (rc = ad_rooms_routes()) < 0 || (rc = ad_media_routes()) < 0 ||
        (rc = ad_tokens_routes()) < 0 || (rc = ad_console_start()) < 0) {
        snprintf(err, errlen, "admin: cannot add routes (%d)", rc);
        return rc;
    }
    if (!mx_service_get(HS_ADMIN_SERVICE))
        mx_log("admin", MX_LOG_WARN, "no homeserver.admin service: most admin routes answer 503");
    return 0;
}

static void ad_stop(void (*done)(const char *module))
{
    done("admin");
}

static void ad_fini(void)
{
    json_decref(ad_store.notice_txns);
    ad_store.notice_txns = NULL;
    ad = NULL;
}

__attribute__((visibility("default"))) const mx_module_t mx_module_admin = {
    MX_MODULE_HEADER("admin"),
    MX_MODULE_API_SLOT,
    .conf = ad_conf_items,
    .conf_size = sizeof(ad_conf_t),
    .init = ad_init,
    .start = ad_start,
    .stop = ad_stop,
    .fini = ad_fini,
};
