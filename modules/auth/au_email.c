/*
 * au_email.c: optional e-mail verification at registration
 * (auth.account.email_verification).
 *
 *   off   (default) registration asks for no address
 *   dev   the registration form asks for an address; the account is
 *         created, and the verification link is written to the log instead
 *         of being mailed.  Until the link is opened the account cannot
 *         sign in on the auth pages ("check your e-mail").
 *   smtp  as dev, but the link is mailed through auth.email (au_mail.c,
 *         off the loop).  When the mail cannot be sent the pending row
 *         stays (the account cannot sign in unverified) and the page says
 *         so, with a "send again" form (POST /verify_email/resend, CSRF and
 *         an HMAC binding user, address and a 1 h expiry; rate limited per
 *         account): the account is never usable unverified, and never
 *         stuck either.
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

#define AU_RESEND_TTL_MS (3600 * 1000ULL)

typedef struct au_ev {
    mx_req_t *req;
    const char *email, *user_id, *token;
    au_gate_fn gate;
    void *ud;
} au_ev_t;

static void au_ev_sent_page(au_ev_t *e)
{
    json_t *v = json_pack("{s:s, s:s}", "heading", au_string("title_check_email"), "text",
                          au_string("check_email_text"));
    json_object_set_new(v, "detail", json_string(e->email));
    au_page_reply(e->req, 200, "notice", v, NULL);
    json_decref(v);
}

/* HMAC binding a resend form to `user_id`, `email` and `exp` (pool). */
static char *au_resend_sig(mx_pool_t *pool, const char *user_id, const char *email,
                           const char *exp)
{
    unsigned char mac[32];
    char *msg = mx_psprintf(pool, "resend:%s\n%s\n%s", user_id, email, exp);
    if (!msg)
        return NULL;
    mx_hmac_sha256(au.cookie_key, sizeof(au.cookie_key), msg, strlen(msg), mac);
    return au_b64url(pool, mac, sizeof(mac));
}

/* The "could not send, try again" page with its resend form. */
static void au_ev_failed_page(au_ev_t *e, int status)
{
    mx_pool_t *pool = mx_req_pool(e->req);
    const char *sid = au_cookie_sid(e->req);
    char *exp = mx_psprintf(pool, "%llu",
                            (unsigned long long)(mx_now_ms() + AU_RESEND_TTL_MS));
    char *sig = exp ? au_resend_sig(pool, e->user_id, e->email, exp) : NULL;
    char *csrf = sid ? au_csrf_token(pool, sid) : NULL;
    if (!sig || !csrf) {
        au_page_error(e->req, 503, "err_email_not_sent", e->email);
        return;
    }
    json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "email", e->email, "user",
                          e->user_id, "exp", exp, "sig", sig, "csrf", csrf, "reason",
                          au_string(status == MX_ETIMEOUT ? "email_not_sent_timeout"
                                                          : "email_not_sent_server"));
    au_page_reply(e->req, 503, "email_retry", v, NULL);
    json_decref(v);
}

static void au_ev_mailed(int status, void *ud)
{
    au_ev_t *e = ud;
    if (status < 0)
        au_ev_failed_page(e, status);
    else
        au_ev_sent_page(e);
}

/* The link's mail: subject and body from the strings table. */
static char *au_ev_message(au_ev_t *e)
{
    mx_pool_t *pool = mx_req_pool(e->req);
    const char *service = au.conf->service_name ? au.conf->service_name
                                                : mx_server_conf()->server_name;
    char *link = mx_psprintf(pool, "%sverify_email?token=%s", au.base, e->token);
    char *subject = mx_psprintf(pool, "%s", au_string("email_verify_subject"));
    const char *tmpl = au_string("email_verify_body");
    /* {service}, {link}, {user}: plain text, no HTML escaping. */
    char *body = mx_pstrdup(pool, "");
    for (const char *p = tmpl; body && p && *p;) {
        const char *sub = NULL;
        size_t skip = 0;
        if (!strncmp(p, "{service}", 9))
            sub = service, skip = 9;
        else if (!strncmp(p, "{link}", 6))
            sub = link, skip = 6;
        else if (!strncmp(p, "{user}", 6))
            sub = e->user_id, skip = 6;
        if (sub) {
            body = mx_psprintf(pool, "%s%s", body, sub);
            p += skip;
        } else {
            size_t n = strcspn(p + 1, "{") + 1;
            body = mx_psprintf(pool, "%s%.*s", body, (int)n, p);
            p += n;
        }
    }
    /* The subject may name the service: one line, whatever it holds. */
    for (char *q = subject; q && *q; q++)
        if ((unsigned char)*q < 0x20)
            *q = ' ';
    if (subject && strstr(subject, "{service}")) {
        char *at = strstr(subject, "{service}");
        *at = '\0';
        subject = mx_psprintf(pool, "%s%s%s", subject, service, at + 9);
        for (char *q = subject; q && *q; q++)
            if ((unsigned char)*q < 0x20)
                *q = ' ';
    }
    return link && subject && body ? au_mail_compose(pool, e->email, subject, body) : NULL;
}

static void au_ev_stored(int status, mx_sql_res_t *res, void *ud)
{
    au_ev_t *e = ud;
    if (status < 0) {
        au_page_error(e->req, 500, "err_internal", NULL);
        return;
    }
    if (mx_sql_changes(res, 1) == 0) {
        /* A resend for an address verified meanwhile. */
        json_t *v = json_pack("{s:s, s:s, s:s}", "heading", au_string("title_email_verified"),
                              "text", au_string("email_verified_text"), "link",
                              mx_psprintf(mx_req_pool(e->req), "%slogin", au.base));
        au_page_reply(e->req, 200, "notice", v, NULL);
        json_decref(v);
        return;
    }
    if (!au.fl->email_smtp) {
        /* Dev mode: the log is the mailbox. */
        mx_log(AU_LOG, MX_LOG_INFO, "e-mail verification for %s <%s>: %sverify_email?token=%s",
               e->user_id, e->email, au.base, e->token);
        au_ev_sent_page(e);
        return;
    }
    char *msg = au_ev_message(e);
    int rc = msg ? au_mail_send(e->email, msg, au_ev_mailed, e) : -EINVAL;
    if (rc < 0) {
        mx_log(AU_LOG, MX_LOG_WARN, "e-mail to <%s> not queued (%d)", e->email, rc);
        au_ev_failed_page(e, rc);
    }
}

/* Records a new pending verification (replacing pending ones of the user
 * unless the address is already verified) and sends or logs its link. */
static int au_ev_begin(mx_req_t *req, const char *user_id, const char *email)
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
    e->user_id = mx_pstrdup(pool, user_id);
    e->token = token;
    char h[AU_HASH_HEX];
    au_hash_hex(token, h);
    int64_t now = (int64_t)mx_now_ms();
    static const char verified[] = " NOT EXISTS (SELECT 1 FROM auth_email_verifications v"
                                   " WHERE v.user_id = ? AND v.verified_ts IS NOT NULL)";
    mx_sql_add(b,
               mx_psprintf(pool,
                           "DELETE FROM auth_email_verifications WHERE user_id = ?"
                           " AND verified_ts IS NULL AND%s",
                           verified),
               "ss", user_id, user_id);
    mx_sql_add(b,
               mx_psprintf(pool,
                           "INSERT INTO auth_email_verifications (token_hash, user_id, email,"
                           " created_ts, expires_ts) SELECT ?, ?, ?, ?, ? WHERE%s",
                           verified),
               "sssiis", h, user_id, email, now, (int64_t)(now + AU_EMAIL_TTL_MS), user_id);
    return mx_sql_run(b, au_ev_stored, e);
}

int au_email_verification_start(mx_req_t *req, const char *user_id, const char *email)
{
    return au_ev_begin(req, user_id, email);
}

/* POST /verify_email/resend: the form of the "could not send" page. */
static int au_post_resend(mx_req_t *req, void *ud)
{
    (void)ud;
    json_t *form = au_page_form(req);
    if (!form)
        return MX_DONE;
    mx_pool_t *pool = mx_req_pool(req);
    const char *user = json_string_value(json_object_get(form, "user"));
    const char *email = json_string_value(json_object_get(form, "email"));
    const char *exp = json_string_value(json_object_get(form, "exp"));
    const char *sig = json_string_value(json_object_get(form, "sig"));
    char *want = user && email && exp ? au_resend_sig(pool, user, email, exp) : NULL;
    if (!want || !sig || strlen(sig) != strlen(want) ||
        !mx_ct_equal(want, sig, strlen(want)) ||
        strtoull(exp, NULL, 10) < mx_now_ms() || !au_email_valid(email)) {
        au_page_error(req, 400, "err_email_link", NULL);
        return MX_DONE;
    }
    uint64_t wait = au_rl_take(au.fl->login_account,
                               mx_psprintf(pool, "resend:%s", user));
    if (wait) {
        char *s = mx_psprintf(pool, "%llu", (unsigned long long)((wait + 999) / 1000));
        if (s)
            mx_req_set_header(req, "Retry-After", s);
        au_page_error(req, 429, "err_rate_limited", NULL);
        return MX_DONE;
    }
    if (au_ev_begin(req, user, email) < 0) {
        au_page_error(req, 500, "err_internal", NULL);
        return MX_DONE;
    }
    return MX_ASYNC;
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
    int rc = mx_route_add("auth", "GET", "/verify_email", au_get_verify_email, NULL,
                          MX_ROUTE_NO_CORS);
    return rc < 0 ? rc
                  : mx_route_add("auth", "POST", "/verify_email/resend", au_post_resend, NULL,
                                 MX_ROUTE_NO_CORS);
}
