/*
 * au_admin.c: the admin API's shared machinery (MAS's /api/admin/v1): the
 * caller check every route goes through, MAS's documents and error shape,
 * pagination parameters and links, plus the two small read-only routes
 * (site-config, version).
 *
 * The caller presents a Bearer access token of ours carrying the
 * `urn:mas:admin` scope, and is either a user who is (still) a server
 * admin — Element Admin gets such a token with the code flow + PKCE — or a
 * client listed in `admin_clients` of the policy data (the config's
 * `auth.policy.data`, or the newest set through /policy-data) using a
 * client_credentials token (scripts); personal access tokens with the
 * scope act as their user.  No or unknown token: 401; a valid
 * token without admin rights: 403.  The core adds CORS to /api paths (any
 * origin, Authorization allowed), so browser consoles work.
 */
#include "config.h"   /* PACKAGE_VERSION, _GNU_SOURCE (strptime, timegm) */

#include "au_admin.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define AA_SCOPE "urn:mas:admin"

/* ------------------------------------------------------------- errors --- */

void aa_error(mx_req_t *req, int status, const char *title)
{
    json_t *b = json_pack("{s:[{s:s}]}", "errors", "title", title ? title : "Error");
    mx_req_set_header(req, "Cache-Control", "no-store");
    mx_req_reply_json(req, status, b ? b : json_object());
}

void aa_fail(aa_req_t *r, int status, const char *what)
{
    if (status == -ENOENT) {
        aa_error(r->req, 404, mx_psprintf(r->pool, "%s not found", what ? what : "Object"));
        return;
    }
    mx_log(AU_LOG, MX_LOG_ERROR, "admin API: %s failed (%d)", what ? what : "request", status);
    aa_error(r->req, 500, "Internal server error");
}

/* ---------------------------------------------------------------- time --- */

json_t *aa_time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char buf[64];
    if (!gmtime_r(&s, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm))
        return json_null();
    int frac = (int)(ms % 1000);
    return frac ? json_sprintf("%s.%03dZ", buf, frac) : json_sprintf("%sZ", buf);
}

int aa_time_parse(const char *s, int64_t *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!p)
        return -EINVAL;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
        if (!digits)
            return -EINVAL;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int h = (p[1] - '0') * 10 + (p[2] - '0'), m = (p[4] - '0') * 10 + (p[5] - '0');
        if (h < 0 || h > 23 || m < 0 || m > 59)
            return -EINVAL;
        off = (int64_t)(h * 60 + m) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *ms = ((int64_t)t - off) * 1000 + frac;
    return 0;
}

/* ----------------------------------------------------------- documents --- */

json_t *aa_resource(const char *type, const char *coll, const char *id, json_t *attrs)
{
    return json_pack("{s:s, s:s, s:o, s:{s:o}}", "type", type, "id", id, "attributes",
                     attrs ? attrs : json_object(), "links", "self",
                     json_sprintf(AA_BASE "/%s/%s", coll, id));
}

void aa_reply_one(aa_req_t *r, int status, json_t *resource, const char *self)
{
    if (!resource) {
        aa_fail(r, -ENOMEM, "reply");
        return;
    }
    json_t *doc = json_pack("{s:o, s:{s:s}}", "data", resource, "links", "self",
                            self ? self : mx_req_path(r->req));
    mx_req_set_header(r->req, "Cache-Control", "no-store");
    mx_req_reply_json(r->req, status, doc ? doc : json_object());
}

/* ------------------------------------------------------------- queries --- */

static void aa_note_filter(aa_req_t *r, const char *name, const char *v)
{
    r->filters = mx_psprintf(r->pool, "%s&%s=%s", r->filters ? r->filters : "", name,
                             au_urlencode(r->pool, v));
}

const char *aa_qstr(aa_req_t *r, const char *name)
{
    const char *v = mx_req_query(r->req, name);
    if (v)
        aa_note_filter(r, name, v);
    return v;
}

const char **aa_qall(aa_req_t *r, const char *name, int *n)
{
    int k = 0;
    while (mx_req_query_nth(r->req, name, k))
        k++;
    const char **v = mx_palloc(r->pool, (size_t)(k + 1) * sizeof(*v));
    if (!v)
        return NULL;
    for (int i = 0; i < k; i++) {
        v[i] = mx_req_query_nth(r->req, name, i);
        aa_note_filter(r, name, v[i]);
    }
    v[k] = NULL;
    *n = k;
    return v;
}

const char **aa_qall_ulids(aa_req_t *r, const char *name, int *n)
{
    const char **v = aa_qall(r, name, n);
    if (!v) {
        aa_fail(r, -ENOMEM, name);
        return NULL;
    }
    for (int i = 0; i < *n; i++)
        if (!au_ulid_valid(v[i])) {
            aa_error(r->req, 400, mx_psprintf(r->pool, "Invalid filter parameters: %s", name));
            return NULL;
        }
    return v;
}

bool aa_qbool(aa_req_t *r, const char *name, int *out)
{
    const char *v = aa_qstr(r, name);
    *out = -1;
    if (!v)
        return true;
    if (!strcmp(v, "true") || !strcmp(v, "false")) {
        *out = !strcmp(v, "true");
        return true;
    }
    aa_error(r->req, 400, mx_psprintf(r->pool, "Invalid filter parameters: %s", name));
    return false;
}

const char *aa_qulid(aa_req_t *r, const char *name, bool *bad)
{
    const char *v = aa_qstr(r, name);
    *bad = false;
    if (v && !au_ulid_valid(v)) {
        *bad = true;
        aa_error(r->req, 400, mx_psprintf(r->pool, "Invalid filter parameters: %s", name));
        return NULL;
    }
    return v;
}

const char *aa_path_id(aa_req_t *r)
{
    const char *id = mx_req_param(r->req, "id");
    if (!id || !au_ulid_valid(id)) {
        aa_error(r->req, 400, "Invalid ULID in path");
        return NULL;
    }
    return id;
}

static void aa_json_put(void *p)
{
    json_decref(p);
}

json_t *aa_body(aa_req_t *r)
{
    size_t len;
    const char *body = mx_req_body(r->req, &len);
    json_error_t e;
    json_t *j = len ? json_loadb(body, len, 0, &e) : json_object();
    if (!json_is_object(j)) {
        json_decref(j);
        aa_error(r->req, 400, "Failed to deserialize the JSON body");
        return NULL;
    }
    mx_pool_on_free(r->pool, aa_json_put, json_incref(j));
    return j;
}

char *aa_sql_quote(mx_pool_t *pool, const char *s)
{
    size_t n = strlen(s), q = 0;
    for (size_t i = 0; i < n; i++)
        q += s[i] == '\'';
    char *o = mx_palloc(pool, n + q + 3), *w = o;
    if (!o)
        return NULL;
    *w++ = '\'';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'')
            *w++ = '\'';
        *w++ = s[i];
    }
    *w++ = '\'';
    *w = '\0';
    return o;
}

/* ---------------------------------------------------------- pagination --- */

#define AA_PAGE_DEFAULT 10
#define AA_PAGE_MAX 1000

static bool aa_posint(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 1)
        return false;
    *out = v;
    return true;
}

bool aa_page_parse(aa_req_t *r, aa_page_t *p)
{
    memset(p, 0, sizeof(*p));
    p->n = AA_PAGE_DEFAULT;
    p->count = AA_COUNT_TRUE;
    const char *first = mx_req_query(r->req, "page[first]");
    const char *last = mx_req_query(r->req, "page[last]");
    const char *after = mx_req_query(r->req, "page[after]");
    const char *before = mx_req_query(r->req, "page[before]");
    const char *count = mx_req_query(r->req, "count");
    if ((first && !aa_posint(first, &p->n)) || (last && !aa_posint(last, &p->n)) ||
        (after && !au_ulid_valid(after)) || (before && !au_ulid_valid(before)) ||
        (count && strcmp(count, "true") && strcmp(count, "false") && strcmp(count, "only"))) {
        aa_error(r->req, 400, "Invalid pagination parameters");
        return false;
    }
    if (first && last) {
        aa_error(r->req, 400, "Cannot specify both `page[first]` and `page[last]` parameters");
        return false;
    }
    if (p->n > AA_PAGE_MAX)
        p->n = AA_PAGE_MAX;
    p->backward = last != NULL;
    snprintf(p->after, sizeof(p->after), "%s", after ? after : "");
    snprintf(p->before, sizeof(p->before), "%s", before ? before : "");
    if (count)
        p->count = !strcmp(count, "false") ? AA_COUNT_FALSE
                   : !strcmp(count, "only") ? AA_COUNT_ONLY : AA_COUNT_TRUE;
    return true;
}

/* base + the page parameters, as MAS writes its links. */
static json_t *aa_link(aa_req_t *r, const char *base, const char *before, const char *after,
                       bool backward, int64_t n)
{
    char *q = mx_psprintf(r->pool, "%s%s%s%s&page[%s]=%lld", before ? "&page[before]=" : "",
                          before ? before : "", after ? "&page[after]=" : "", after ? after : "",
                          backward ? "last" : "first", (long long)n);
    bool has_query = strchr(base, '?') != NULL;
    return json_sprintf("%s%s%s", base, has_query ? "" : "?", has_query ? q : q + 1);
}

void aa_reply_page(aa_req_t *r, const aa_page_t *p, json_t *items, bool more, int64_t count)
{
    const char *path = mx_req_path(r->req);
    const char *filters = r->filters ? r->filters + 1 : NULL;   /* without the first '&' */
    const char *cnt = p->count == AA_COUNT_FALSE ? "count=false"
                      : p->count == AA_COUNT_ONLY ? "count=only" : NULL;
    const char *base;
    if (filters && cnt)
        base = mx_psprintf(r->pool, "%s?%s&%s", path, filters, cnt);
    else if (filters || cnt)
        base = mx_psprintf(r->pool, "%s?%s", path, filters ? filters : cnt);
    else
        base = path;
    json_t *doc = json_object();
    json_t *links = json_object();
    if (p->count != AA_COUNT_FALSE && count >= 0)
        json_object_set_new(doc, "meta", json_pack("{s:I}", "count", (json_int_t)count));
    if (p->count == AA_COUNT_ONLY || !items) {
        json_decref(items);
        json_object_set_new(links, "self", json_string(base));
    } else {
        size_t n = json_array_size(items);
        const char *lo = n ? json_string_value(json_object_get(json_array_get(items, 0), "id"))
                           : NULL;
        const char *hi =
            n ? json_string_value(json_object_get(json_array_get(items, n - 1), "id")) : NULL;
        /* Cursors of each item, as MAS gives them. */
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
            json_object_set_new(it, "meta", json_pack("{s:{s:O}}", "page", "cursor",
                                                      json_object_get(it, "id")));
        json_object_set_new(links, "self",
                            aa_link(r, base, *p->before ? p->before : NULL,
                                    *p->after ? p->after : NULL, p->backward, p->n));
        json_object_set_new(links, "first", aa_link(r, base, NULL, NULL, false, p->n));
        json_object_set_new(links, "last", aa_link(r, base, NULL, NULL, true, p->n));
        if (!p->backward && more && hi)
            json_object_set_new(links, "next", aa_link(r, base, *p->before ? p->before : NULL,
                                                       hi, false, p->n));
        if (p->backward && more && lo)
            json_object_set_new(links, "prev", aa_link(r, base, lo,
                                                       *p->after ? p->after : NULL, true, p->n));
        json_object_set_new(doc, "data", items);
    }
    json_object_set_new(doc, "links", links);
    mx_req_set_header(r->req, "Cache-Control", "no-store");
    mx_req_reply_json(r->req, 200, doc);
}

/* ------------------------------------------------------------- callers --- */

typedef struct aa_route_ent {
    aa_fn fn;
} aa_route_ent_t;

typedef struct aa_auth {
    aa_req_t *r;
    const aa_route_ent_t *ent;
} aa_auth_t;

static void aa_user_checked(int status, const hs_users_info_t *u, void *ud)
{
    aa_auth_t *a = ud;
    aa_req_t *r = a->r;
    if (status == -ENOENT || status == -EKEYREVOKED || (status == 0 && u &&
                                                         (u->locked || u->deactivated))) {
        aa_error(r->req, 401, "User locked");
        return;
    }
    if (status < 0 || !u) {
        aa_fail(r, status < 0 ? status : -EIO, "admin check");
        return;
    }
    if (!u->is_admin) {
        aa_error(r->req, 403, "The user is not an admin");
        return;
    }
    mx_req_set_user(r->req, r->caller);
    a->ent->fn(r);
}

static void aa_client_checked(int verdict, void *ud)
{
    aa_auth_t *a = ud;
    if (verdict < 0)
        aa_fail(a->r, verdict, "admin check");
    else if (!verdict)
        aa_error(a->r->req, 403, "This client may not use the admin API");
    else
        a->ent->fn(a->r);
}

static void aa_token_found(int status, const au_tokinfo_t *t, void *ud)
{
    aa_auth_t *a = ud;
    aa_req_t *r = a->r;
    if (status < 0) {
        aa_fail(r, status, "token lookup");
        return;
    }
    if (!t) {
        aa_error(r->req, 401, "Unknown access token");
        return;
    }
    if (!t->active) {
        bool expired = t->expires_ts && (uint64_t)t->expires_ts <= mx_now_ms();
        aa_error(r->req, 401, expired ? "Access token expired" : "Access token revoked");
        return;
    }
    if (!au_scope_has(t->scope, AA_SCOPE)) {
        aa_error(r->req, 403, "Missing urn:mas:admin scope");
        return;
    }
    r->client_id = mx_pstrdup(r->pool, t->client_id);
    aa_activity_note_req(t->session_id, r->req, true);
    if (!t->user_id) {
        int rc = aa_client_admin_check(t->client_id, aa_client_checked, a);
        if (rc < 0)
            aa_fail(r, rc, "admin check");
        return;
    }
    r->caller = mx_pstrdup(r->pool, t->user_id);
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    int rc = users ? users->get(t->user_id, aa_user_checked, a) : -ENOSYS;
    if (rc < 0)
        aa_fail(r, rc, "admin check");
}

static int aa_handler(mx_req_t *req, void *ud)
{
    mx_pool_t *pool = mx_req_pool(req);
    const char *h = mx_req_header(req, "Authorization");
    if (!h || !*h) {
        aa_error(req, 401, "Missing authorization header");
        return MX_DONE;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
        aa_error(req, 401, "Invalid authorization header");
        return MX_DONE;
    }
    aa_auth_t *a = mx_palloc(pool, sizeof(*a));
    aa_req_t *r = mx_palloc(pool, sizeof(*r));
    if (!a || !r) {
        aa_error(req, 500, "Out of memory");
        return MX_DONE;
    }
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->pool = pool;
    a->r = r;
    a->ent = ud;
    const char *token = h + 7;
    while (*token == ' ')
        token++;
    int rc = au_token_lookup(pool, token, false, aa_token_found, a);
    if (rc < 0) {
        aa_fail(r, rc, "token lookup");
        return MX_DONE;
    }
    return MX_ASYNC;
}

int aa_route(const char *method, const char *path, aa_fn fn)
{
    /* One entry per route, kept for the life of the process. */
    aa_route_ent_t *ent = calloc(1, sizeof(*ent));
    if (!ent)
        return -ENOMEM;
    ent->fn = fn;
    char full[256];
    snprintf(full, sizeof(full), AA_BASE "%s", path);
    int rc = mx_route_add("auth", method, full, aa_handler, ent, 0);
    if (rc < 0)
        free(ent);
    return rc;
}

int aa_routes(const aa_route_def_t *defs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = aa_route(defs[i].method, defs[i].path, defs[i].fn);
        if (rc < 0)
            return rc;
    }
    return 0;
}

bool aa_user_found(aa_req_t *r, int status, const char *user_id, const char *ulid)
{
    if (status < 0)
        aa_fail(r, status, "user lookup");
    else if (!user_id)
        aa_error(r->req, 404, mx_psprintf(r->pool, "User ID %s not found", ulid ? ulid : ""));
    return status >= 0 && user_id;
}

/* ------------------------------------------------------- server routes --- */

static void aa_site_config(aa_req_t *r)
{
    const au_flows_t *fl = au.fl;
    bool reg_open = fl ? fl->registration != AU_REG_CLOSED
                       : au.conf->password_registration_enabled != 0;
    bool token = fl && fl->registration == AU_REG_TOKEN;
    json_t *b = json_pack("{s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:i}",
                          "server_name", mx_server_conf()->server_name,
                          "password_login_enabled", 1,
                          "password_registration_enabled", reg_open,
                          "password_registration_email_required", 0,
                          "password_registration_token_required", token,
                          "registration_token_required", token,
                          "email_change_allowed", 0,
                          "displayname_change_allowed", 1,
                          "password_change_allowed", fl ? fl->password_change_allowed : 1,
                          "account_recovery_allowed", 0,
                          "account_deactivation_allowed", 0,
                          "captcha_enabled", 0,
                          "minimum_password_complexity", 0);
    mx_req_reply_json(r->req, 200, b ? b : json_object());
}

static void aa_version(aa_req_t *r)
{
    mx_req_reply_json(r->req, 200, json_pack("{s:s}", "version", PACKAGE_VERSION));
}

int au_admin_start(char *err, size_t errlen)
{
    int rc = aa_schema_migrate(err, errlen);
    if (rc < 0 || (rc = aa_clients_start(err, errlen)) < 0)
        return rc;
    if ((rc = aa_route("GET", "/site-config", aa_site_config)) < 0 ||
        (rc = aa_route("GET", "/version", aa_version)) < 0 || (rc = aa_users_routes()) < 0 ||
        (rc = aa_sessions_routes()) < 0 || (rc = aa_misc_routes()) < 0 ||
        (rc = aa_personal_routes()) < 0 || (rc = aa_policy_routes()) < 0 ||
        (rc = aa_oauth2_clients_routes()) < 0 || (rc = aa_links_routes()) < 0) {
        snprintf(err, errlen, "auth: cannot add the admin API routes (%d)", rc);
        return rc;
    }
    return 0;
}
