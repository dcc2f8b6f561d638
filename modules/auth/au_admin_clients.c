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
 *
 * Admin API /oauth2-clients (list with filter[client-kind|client-name|
 * client-uri|grant-type|has-active-sessions], get): every client,
 * registered or configured (`is_static`).  Names and URIs match as
 * case-insensitive substrings, as in MAS; the metadata JSON is read with
 * the engine's JSON functions.  Its ID is the client ID when that is a ULID (registered
 * clients, MAS-style configured ones), else a ULID derived from it.
 */
#include "au_admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* ------------------------------------------------------ /oauth2-clients --- */

void aa_client_ulid(const char *client_id, char out[AU_ULID_LEN + 1])
{
    if (au_ulid_valid(client_id))
        snprintf(out, AU_ULID_LEN + 1, "%s", client_id);
    else
        au_ulid_derive(0, client_id, out);
}

static bool aa_client_static(const char *client_id)
{
    size_t i;
    json_t *c;
    json_array_foreach(au.conf->clients, i, c)
        if (!strcmp(json_string_value(json_object_get(c, "client_id")) ?: "", client_id))
            return true;
    return false;
}

static json_t *aa_uri_or_null(const json_t *md, const char *k)
{
    const char *v = json_string_value(json_object_get(md, k));
    return v ? json_string(v) : json_null();
}

static json_t *aa_client_row(const mx_sql_res_t *res, int st, int i)
{
    const char *cid = mx_sql_text(res, st, i, 0);
    json_t *md = json_loads(mx_sql_text(res, st, i, 1), 0, NULL);
    json_t *uris = json_object_get(md, "redirect_uris");
    json_t *grants = json_object_get(md, "grant_types");
    char id[AU_ULID_LEN + 1];
    aa_client_ulid(cid, id);
    json_t *a = json_pack("{s:s, s:o, s:o, s:o, s:O, s:O, s:b}", "client_id", cid,
                          "client_name", aa_uri_or_null(md, "client_name"),
                          "client_uri", aa_uri_or_null(md, "client_uri"),
                          "logo_uri", aa_uri_or_null(md, "logo_uri"),
                          "redirect_uris", json_is_array(uris) ? uris : json_array(),
                          "grant_types", json_is_array(grants) ? grants : json_array(),
                          "is_static", aa_client_static(cid));
    json_decref(md);
    return aa_resource("oauth2-client", "oauth2-clients", id, a);
}

static aa_list_t *aa_clients_new(aa_req_t *r)
{
    return aa_list_make(r, "client_id, metadata", "auth_clients", "client_id", aa_client_row,
                        "OAuth 2.0 client not found");
}

/* "'id1', 'id2'" of the configured clients, or NULL when none. */
static char *aa_static_in(aa_req_t *r)
{
    char *in = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(au.conf->clients, i, c) {
        const char *id = json_string_value(json_object_get(c, "client_id"));
        if (id)
            in = mx_psprintf(r->pool, "%s%s%s", in ? in : "", in ? ", " : "",
                             aa_sql_quote(r->pool, id));
    }
    return in;
}

char *aa_client_kind_where(aa_req_t *r, const char *col, bool *bad)
{
    const char *kind = aa_qstr(r, "filter[client-kind]");
    *bad = false;
    if (!kind)
        return mx_pstrdup(r->pool, "1=1");
    if (strcmp(kind, "static") && strcmp(kind, "dynamic")) {
        *bad = true;
        aa_error(r->req, 400, "Invalid filter parameters: filter[client-kind]");
        return NULL;
    }
    char *in = aa_static_in(r);
    bool want_static = !strcmp(kind, "static");
    if (!in)
        return mx_pstrdup(r->pool, want_static ? "0=1" : "1=1");
    return mx_psprintf(r->pool, "%s %sIN (%s)", col, want_static ? "" : "NOT ", in);
}

char *aa_client_id_where(aa_req_t *r, const char *col, const char *ulid)
{
    /* Registered clients have ULID IDs; configured ones may have derived
     * ones (computed here: they are in the config). */
    char *w = mx_psprintf(r->pool, "(%s = %s", col, aa_sql_quote(r->pool, ulid));
    size_t i;
    json_t *c;
    json_array_foreach(au.conf->clients, i, c) {
        const char *id = json_string_value(json_object_get(c, "client_id"));
        char d[AU_ULID_LEN + 1];
        if (!id || !w)
            continue;
        aa_client_ulid(id, d);
        if (!strcasecmp(d, ulid))
            w = mx_psprintf(r->pool, "%s OR %s = %s", w, col, aa_sql_quote(r->pool, id));
    }
    return w ? mx_psprintf(r->pool, "%s)", w) : NULL;
}

/* `metadata`'s string member `key` as an SQL expression. */
static const char *aa_md(aa_req_t *r, const char *key)
{
    return mx_db_is_postgres(au.db)
               ? mx_psprintf(r->pool, "(CAST(metadata AS json) ->> '%s')", key)
               : mx_psprintf(r->pool, "json_extract(metadata, '$.%s')", key);
}

/* A LIKE pattern matching `v` (lower-cased) anywhere, with '\' escapes. */
static char *aa_like_any(aa_req_t *r, const char *v)
{
    char *o = mx_palloc(r->pool, 2 * strlen(v) + 3), *p = o;
    if (!o)
        return NULL;
    *p++ = '%';
    for (; *v; v++) {
        if (*v == '%' || *v == '_' || *v == '\\')
            *p++ = '\\';
        *p++ = (char)((*v >= 'A' && *v <= 'Z') ? *v - 'A' + 'a' : *v);
    }
    *p++ = '%';
    *p = '\0';
    return o;
}

static void aa_clients_list(aa_req_t *r)
{
    aa_page_t p;
    aa_list_t *l = aa_clients_new(r);
    int active;
    if (!l) {
        aa_fail(r, -ENOMEM, "clients");
        return;
    }
    if (!aa_page_parse(r, &p) || !aa_qbool(r, "filter[has-active-sessions]", &active))
        return;
    bool bad;
    char *kind = aa_client_kind_where(r, "client_id", &bad);
    if (!kind) {
        if (!bad)
            aa_fail(r, -ENOMEM, "clients");
        return;
    }
    l->where = mx_psprintf(r->pool, "%s AND %s", l->where, kind);
    static const char *const subs[][2] = { { "filter[client-name]", "client_name" },
                                           { "filter[client-uri]", "client_uri" } };
    for (size_t k = 0; k < 2; k++) {
        const char *v = aa_qstr(r, subs[k][0]);
        if (!v)
            continue;
        l->where = mx_psprintf(r->pool, "%s AND lower(%s) LIKE ? ESCAPE '\\'", l->where,
                               aa_md(r, subs[k][1]));
        l->args[l->nargs++] = aa_like_any(r, v);
    }
    const char *grant = aa_qstr(r, "filter[grant-type]");
    if (grant) {
        l->where = mx_psprintf(
            r->pool, "%s AND EXISTS (SELECT 1 FROM %s WHERE %s = ?)", l->where,
            mx_db_is_postgres(au.db)
                ? "json_array_elements_text(CAST(metadata AS json) -> 'grant_types') g(v)"
                : "json_each(metadata, '$.grant_types') g",
            mx_db_is_postgres(au.db) ? "g.v" : "g.value");
        l->args[l->nargs++] = grant;
    }
    if (active >= 0)
        l->where = mx_psprintf(r->pool, "%s AND %sEXISTS (SELECT 1 FROM auth_oauth_sessions s"
                                        " WHERE s.client_id = auth_clients.client_id AND"
                                        " s.finished_ts IS NULL)",
                               l->where, active ? "" : "NOT ");
    aa_list_run(r, &p, l);
}

/* GET /oauth2-clients/{id}: a ULID client ID, or the derived ID of another. */
static void aa_client_read(int status, mx_sql_res_t *res, void *ud)
{
    aa_req_t *r = ud;
    const char *want = mx_req_param(r->req, "id");
    if (status < 0) {
        aa_fail(r, status, "client");
        return;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        char id[AU_ULID_LEN + 1];
        aa_client_ulid(mx_sql_text(res, 0, i, 0), id);
        if (!strcasecmp(id, want)) {
            aa_reply_one(r, 200, aa_client_row(res, 0, i), NULL);
            return;
        }
    }
    aa_error(r->req, 404, "OAuth 2.0 client not found");
}

static void aa_client_get(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    mx_sql_batch_t *b = id ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!id)
        return;
    if (!b) {
        aa_fail(r, -ENOMEM, "client");
        return;
    }
    mx_sql_add(b, "SELECT client_id, metadata FROM auth_clients WHERE client_id = ?"
                  " OR length(client_id) <> 26", "s", id);
    if (mx_sql_run(b, aa_client_read, r) < 0)
        aa_fail(r, -EIO, "client");
}

int aa_oauth2_clients_routes(void)
{
    static const aa_route_def_t routes[] = {
        { "GET", "/oauth2-clients", aa_clients_list },
        { "GET", "/oauth2-clients/{id}", aa_client_get },
    };
    return AA_ROUTES(routes);
}
