/*
 * au_email.c: optional e-mail verification at registration
 * (auth.account.email_verification).
 *
 *   off   (default) registration asks for no address
 *   dev   the registration form asks for an address; the account is
 *         created, and the verification link is written to the log instead
 *         of being mailed.  Until the link is opened the account cannot
 *         sign in on the auth pages ("check your e-mail").
 *   smtp  refused at start: no SMTP client is built in (Debian 12 offers
 *         none we want to link for this alone), so the config says so
 *         rather than pretending to send mail.
 *
 *   GET /verify_email?token=   marks the address verified (single use,
 *                              24 h) and records it for the admin API
 *                              (auth_admin_user_emails)
 *
 * The link's token is 32 random characters, stored as sha256.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AU_EMAIL_TTL_MS (24 * 3600 * 1000ULL)

bool au_email_valid(const char *e)
{
    size_t n = e ? strlen(e) : 0;
    const char *at = e ? strchr(e, '@') : NULL;
    if (n < 3 || n > 254 || !at || at == e || !at[1] || strchr(at + 1, '@') ||
        !strchr(at + 1, '.'))
        return false;
    for (const char *p = e; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == '"' || *p == ',')
            return false;
    return true;
}

/* ------------------------------------------------------------- sending --- */

typedef struct au_ev {
    mx_req_t *req;
    const char *email;
    au_gate_fn gate;
    void *ud;
} au_ev_t;

static void au_ev_stored(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_ev_t *e = ud;
    if (status < 0) {
        au_page_error(e->req, 500, "err_internal", NULL);
        return;
    }
    json_t *v = json_pack("{s:s, s:s}", "heading", au_string("title_check_email"), "text",
                          au_string("check_email_text"));
    json_object_set_new(v, "detail", json_string(e->email));
    au_page_reply(e->req, 200, "notice", v, NULL);
    json_decref(v);
}

int au_email_verification_start(mx_req_t *req, const char *user_id, const char *email)
{
    mx_pool_t *pool = mx_req_pool(req);
    au_ev_t *e = mx_palloc(pool, sizeof(*e));
    char *token = au_token_new(pool, NULL, 32);
    mx_sql_batch_t *b = e && token ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b)
        return -ENOMEM;
    memset(e, 0, sizeof(*e));
    e->req = req;
    e->email = mx_pstrdup(pool, email);
    char h[AU_HASH_HEX];
    au_hash_hex(token, h);
    uint64_t now = mx_now_ms();
    mx_sql_add(b,
               "INSERT INTO auth_email_verifications (token_hash, user_id, email, created_ts,"
               " expires_ts) VALUES (?, ?, ?, ?, ?)",
               "sssii", h, user_id, email, (int64_t)now, (int64_t)(now + AU_EMAIL_TTL_MS));
    /* Dev mode: the log is the mailbox. */
    mx_log(AU_LOG, MX_LOG_INFO, "e-mail verification for %s <%s>: %sverify_email?token=%s",
           user_id, email, au.base, token);
    return mx_sql_run(b, au_ev_stored, e);
}

/* ---------------------------------------------------------- login gate --- */

static void au_gate_read(int status, mx_sql_res_t *res, void *ud)
{
    au_ev_t *e = ud;
    bool pending = false, verified = false;
    for (int i = 0; status == 0 && i < mx_sql_nrows(res, 0); i++) {
        if (mx_sql_is_null(res, 0, i, 0))
            pending = true;
        else
            verified = true;
    }
    e->gate(status < 0 ? status : 0, !pending || verified, e->ud);
    free(e);
}

int au_email_login_gate(const char *user_id, au_gate_fn cb, void *ud)
{
    if (au.fl->email_verification != AU_EMAIL_DEV) {
        cb(0, true, ud);
        return 0;
    }
    au_ev_t *e = calloc(1, sizeof(*e));
    mx_sql_batch_t *b = e ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        free(e);
        return -ENOMEM;
    }
    e->gate = cb;
    e->ud = ud;
    mx_sql_add(b, "SELECT verified_ts FROM auth_email_verifications WHERE user_id = ?", "s",
               user_id);
    int rc = mx_sql_run(b, au_gate_read, e);
    if (rc < 0)
        free(e);
    return rc;
}

/* ----------------------------------------------------------- verifying --- */

static void au_verified(int status, mx_sql_res_t *res, void *ud)
{
    mx_req_t *req = ud;
    if (status < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_changes(res, 0) != 1) {
        au_page_error(req, 400, "err_email_link", NULL);
        return;
    }
    json_t *v = json_pack("{s:s, s:s, s:s}", "heading", au_string("title_email_verified"), "text",
                          au_string("email_verified_text"), "link",
                          mx_psprintf(mx_req_pool(req), "%slogin", au.base));
    au_page_reply(req, 200, "notice", v, NULL);
    json_decref(v);
}

static int au_get_verify_email(mx_req_t *req, void *ud)
{
    (void)ud;
    const char *token = mx_req_query(req, "token");
    mx_pool_t *pool = mx_req_pool(req);
    char *id = au_ulid(pool);
    mx_sql_batch_t *b = token && id ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        au_page_error(req, token ? 500 : 400, token ? "err_internal" : "err_email_link", NULL);
        return MX_DONE;
    }
    char h[AU_HASH_HEX];
    au_hash_hex(token, h);
    int64_t now = (int64_t)mx_now_ms();
    mx_sql_add(b,
               "UPDATE auth_email_verifications SET verified_ts = ? WHERE token_hash = ?"
               " AND verified_ts IS NULL AND expires_ts > ?",
               "isi", now, h, now);
    mx_sql_add(b,
               "INSERT INTO auth_admin_user_emails (id, user_id, email, created_ts)"
               " SELECT ?, user_id, email, ? FROM auth_email_verifications"
               " WHERE token_hash = ? AND verified_ts = ? ON CONFLICT (email) DO NOTHING",
               "sisi", id, now, h, now);
    if (mx_sql_run(b, au_verified, req) < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    return MX_ASYNC;
}

int au_email_routes(void)
{
    return mx_route_add("auth", "GET", "/verify_email", au_get_verify_email, NULL,
                        MX_ROUTE_NO_CORS);
}
