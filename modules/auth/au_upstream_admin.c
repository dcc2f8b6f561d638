/*
 * au_upstream_admin.c: the upstream parts of the admin API (MAS's shape,
 * with au_admin.h's helpers): /upstream-oauth-links (list with
 * filter[user|provider|subject], get, delete) over auth_upstream_links, and
 * /upstream-oauth-providers (the configured providers, list and get).
 */
#include "au_admin.h"
#include "au_upstream.h"

#include <errno.h>
#include <string.h>

/* ---------------------------------------------------------------- links --- */

static json_t *ua_link_row(const mx_sql_res_t *res, int st, int i)
{
    json_t *a = json_pack("{s:o, s:s, s:s, s:s, s:n}", "created_at",
                          aa_time(mx_sql_int(res, st, i, 4)), "provider_id",
                          mx_sql_text(res, st, i, 1), "subject", mx_sql_text(res, st, i, 2),
                          "user_id", mx_sql_text(res, st, i, 3), "human_account_name");
    return aa_resource("upstream-oauth-link", "upstream-oauth-links", mx_sql_text(res, st, i, 0),
                       a);
}

static aa_list_t *ua_links_new(aa_req_t *r)
{
    aa_list_t *l = aa_list_make(r, "id, provider_id, subject, user_id, created_ts",
                                "auth_upstream_links", "id", ua_link_row,
                                "Upstream OAuth 2.0 Link not found");
    if (l)
        l->user_attr = "user_id";
    return l;
}

static void ua_links_list(aa_req_t *r)
{
    static const char *const eq[][2] = { { "filter[provider]", "provider_id" },
                                         { "filter[subject]", "subject" } };
    aa_list_t *l = ua_links_new(r);
    aa_page_t page;
    const char *user;
    if (!aa_list_begin(r, l, &page, &user, "upstream links"))
        return;
    /* As MAS: a provider that does not exist is a 404, not an empty page
     * (any configured ID is accepted, ULID or not). */
    const char *provider = mx_req_query(r->req, "filter[provider]");
    if (provider && !aa_provider_known(provider)) {
        aa_error(r->req, 404, mx_psprintf(r->pool, "Provider ID %s not found", provider));
        return;
    }
    aa_list_where_eq(r, l, eq, 2);
    aa_list_run_for_user(r, &page, l, user);
}

static void ua_links_get(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    if (id)
        aa_get_by_id(r, ua_links_new(r), id, 0, NULL);
}

static void ua_link_deleted(int status, mx_sql_res_t *res, void *ud)
{
    aa_req_t *r = ud;
    if (status < 0) {
        aa_fail(r, status, "upstream link");
        return;
    }
    if (mx_sql_changes(res, 0) != 1) {
        aa_error(r->req, 404, "Upstream OAuth 2.0 Link not found");
        return;
    }
    mx_req_reply(r->req, 204, NULL, "", 0);
}

static void ua_links_delete(aa_req_t *r)
{
    const char *id = aa_path_id(r);
    if (!id)
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(au.db, MX_SQL_WRITE);
    if (!b) {
        aa_fail(r, -ENOMEM, "upstream link");
        return;
    }
    mx_sql_add(b, "DELETE FROM auth_upstream_links WHERE id = ?", "s", id);
    if (mx_sql_run(b, ua_link_deleted, r) < 0)
        aa_fail(r, -EIO, "upstream link");
}

/* ------------------------------------------------------------ providers --- */

/* The configured providers as admin resources (new reference). */
static json_t *ua_providers(void)
{
    json_t *list = au_upstream_providers(), *out = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        /* Configured providers: created when their ULID says (MAS requires
         * ULID IDs; Element Admin requires created_at). */
        uint64_t ms = 0;
        unsigned char rnd[10];
        const char *id = json_string_value(json_object_get(it, "id"));
        if (!id || au_ulid_decode(id, &ms, rnd) < 0)
            ms = 0;
        json_t *a = json_pack("{s:O, s:O, s:n, s:o, s:n}", "issuer",
                              json_object_get(it, "issuer"), "human_name",
                              json_object_get(it, "human_name"), "brand_name", "created_at",
                              aa_time((int64_t)ms), "disabled_at");
        json_array_append_new(out, aa_resource("upstream-oauth-provider",
                                               "upstream-oauth-providers",
                                               json_string_value(json_object_get(it, "id")), a));
    }
    json_decref(list);
    return out;
}

static void ua_providers_list(aa_req_t *r)
{
    aa_page_t p;
    if (!aa_page_parse(r, &p))
        return;
    json_t *items = ua_providers();
    int64_t n = (int64_t)json_array_size(items);
    if (p.count == AA_COUNT_ONLY) {
        json_decref(items);
        items = NULL;
    }
    aa_reply_page(r, &p, items, false, p.count == AA_COUNT_FALSE ? -1 : n);
}

static void ua_providers_get(aa_req_t *r)
{
    const char *id = mx_req_param(r->req, "id");
    json_t *items = ua_providers();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        if (id && !strcmp(json_string_value(json_object_get(it, "id")), id)) {
            aa_reply_one(r, 200, json_incref(it), NULL);
            json_decref(items);
            return;
        }
    }
    json_decref(items);
    aa_error(r->req, 404, "Upstream OAuth 2.0 Provider not found");
}

int au_upstream_admin_routes(void)
{
    static const aa_route_def_t routes[] = {
        { "GET", "/upstream-oauth-links", ua_links_list },
        { "GET", "/upstream-oauth-links/{id}", ua_links_get },
        { "DELETE", "/upstream-oauth-links/{id}", ua_links_delete },
        { "GET", "/upstream-oauth-providers", ua_providers_list },
        { "GET", "/upstream-oauth-providers/{id}", ua_providers_get },
    };
    return AA_ROUTES(routes);
}
