/*
 * au_admin_links.c: POST /upstream-oauth-links (MAS's addUpstreamOAuthLink,
 * which Element Admin's user page uses): links a user to a subject at a
 * configured upstream provider, so that logging in there signs that user
 * in.  {user_id, provider_id, subject, human_account_name?} → 201 with the
 * link; 200 when that very link exists; 409 when the subject is linked to
 * another user; 404 for an unknown user or provider.  Listing, reading and
 * deleting links are au_upstream_admin.c's (table auth_upstream_links of
 * au_upstream.c).  `human_account_name` is not stored (null).
 */
#include "au_admin.h"
#include "au_upstream.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct aa_ln {
    aa_req_t *r;
    const char *id, *user_ulid, *user_id, *provider, *subject;
    int64_t created_ts;
} aa_ln_t;

static void aa_ln_reply(aa_ln_t *l, int status)
{
    json_t *a = json_pack("{s:o, s:s, s:s, s:s, s:n}", "created_at", aa_time(l->created_ts),
                          "provider_id", l->provider, "subject", l->subject, "user_id",
                          l->user_ulid, "human_account_name");
    json_t *res = aa_resource("upstream-oauth-link", "upstream-oauth-links", l->id, a);
    aa_reply_one(l->r, status, res, mx_psprintf(l->r->pool, AA_BASE "/upstream-oauth-links/%s",
                                                 l->id));
}

static void aa_ln_written(int status, mx_sql_res_t *res, void *ud)
{
    aa_ln_t *l = ud;
    aa_req_t *r = l->r;
    if (status < 0) {
        aa_fail(r, status, "upstream link");
        return;
    }
    /* Statement 1 read back the link of (provider, subject) after the insert. */
    if (mx_sql_nrows(res, 1) < 1) {
        aa_fail(r, -EIO, "upstream link");
        return;
    }
    const char *owner = mx_sql_text(res, 1, 0, 1);
    if (strcmp(owner, l->user_id) != 0) {
        aa_error(r->req, 409, mx_psprintf(r->pool, "Upstream Oauth 2.0 Provider ID %s with"
                                                   " subject %s is already linked to a user",
                                          l->provider, l->subject));
        return;
    }
    bool created = mx_sql_changes(res, 0) == 1;
    l->id = mx_pstrdup(r->pool, mx_sql_text(res, 1, 0, 0));
    l->created_ts = mx_sql_int(res, 1, 0, 2);
    aa_ln_reply(l, created ? 201 : 200);
}

static void aa_ln_user(aa_req_t *r, int status, const char *user_id)
{
    aa_ln_t *l = r->priv;
    if (!aa_user_found(r, status, user_id, l->user_ulid))
        return;
    l->user_id = mx_pstrdup(r->pool, user_id);
    char *id = au_ulid(r->pool);
    mx_sql_batch_t *b = id ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        aa_fail(r, -ENOMEM, "upstream link");
        return;
    }
    mx_sql_add(b, "INSERT INTO auth_upstream_links (id, provider_id, subject, user_id, created_ts)"
                  " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider_id, subject) DO NOTHING",
               "ssssi", id, l->provider, l->subject, l->user_id, (int64_t)mx_now_ms());
    mx_sql_add(b, "SELECT id, user_id, created_ts FROM auth_upstream_links"
                  " WHERE provider_id = ? AND subject = ?", "ss", l->provider, l->subject);
    if (mx_sql_run(b, aa_ln_written, l) < 0)
        aa_fail(r, -EIO, "upstream link");
}

bool aa_provider_known(const char *id)
{
    json_t *list = au_upstream_providers();
    size_t i;
    json_t *it;
    bool found = false;
    json_array_foreach(list, i, it)
        found |= !strcmp(json_string_value(json_object_get(it, "id")) ?: "", id);
    json_decref(list);
    return found;
}

static void aa_links_add(aa_req_t *r)
{
    json_t *body = aa_body(r);
    if (!body)
        return;
    aa_ln_t *l = mx_palloc(r->pool, sizeof(*l));
    if (!l) {
        aa_fail(r, -ENOMEM, "upstream link");
        return;
    }
    memset(l, 0, sizeof(*l));
    l->r = r;
    l->user_ulid = json_string_value(json_object_get(body, "user_id"));
    l->provider = json_string_value(json_object_get(body, "provider_id"));
    l->subject = json_string_value(json_object_get(body, "subject"));
    if (!l->user_ulid || !au_ulid_valid(l->user_ulid) || !l->provider ||
        !au_ulid_valid(l->provider) || !l->subject || !*l->subject ||
        strlen(l->subject) > 255) {
        aa_error(r->req, 400, "Failed to deserialize the JSON body");
        return;
    }
    if (!aa_provider_known(l->provider)) {
        aa_error(r->req, 404, mx_psprintf(r->pool, "Upstream OAuth 2.0 Provider ID %s not found",
                                          l->provider));
        return;
    }
    r->priv = l;
    aa_user_of(r, l->user_ulid, aa_ln_user);
}

int aa_links_routes(void)
{
    return aa_route("POST", "/upstream-oauth-links", aa_links_add);
}
