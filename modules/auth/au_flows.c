/*
 * au_flows.c: the account settings of the auth module (MAS's `account.*`)
 * and what several pages share: registration mode, password policy, login
 * rate limits, the pages a login may return to, and the cross-signing
 * reset approvals the homeserver asks about.
 *
 * Config (all optional), under `auth:`:
 *   account:
 *     password_registration_enabled: false   (or auth.password_registration_enabled)
 *     registration_token_required: false     registration needs a token
 *     password_change_allowed: true
 *     password_min_length: 8
 *     password_min_classes: 0                of lower, upper, digit, other
 *     email_verification: off                off | dev | smtp (au_email.c)
 *   rate_limit:
 *     login: {per_ip: {burst: 20, per_second: 0.2},
 *             per_account: {burst: 10, per_second: 0.05}}
 * Every login attempt takes a token from its IP's bucket, every failed one
 * from its account's (MAS's defaults are stricter: 3/0.05 per IP).
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A boolean that YAML may hand over as a string. */
static int au_jbool(const json_t *obj, const char *key, int def, bool *bad)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return def;
    if (json_is_boolean(v))
        return json_is_true(v);
    const char *s = json_string_value(v);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
        return 1;
    if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
        return 0;
    *bad = true;
    return def;
}

static double au_jnum(const json_t *obj, const char *key, double def, bool *bad)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return def;
    if (json_is_number(v))
        return json_number_value(v);
    const char *s = json_string_value(v);
    char *end = NULL;
    double d = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end) {
        *bad = true;
        return def;
    }
    return d;
}

static au_rl_t *au_rl_conf(const json_t *login, const char *which, double burst, double per_s,
                           bool *bad)
{
    const json_t *o = json_object_get(login, which);
    if (o && !json_is_object(o))
        *bad = true;
    burst = au_jnum(o, "burst", burst, bad);
    per_s = au_jnum(o, "per_second", per_s, bad);
    if (burst < 1 || per_s < 0)
        *bad = true;
    return au_rl_new(burst, per_s);
}

int au_flows_init(char *err, size_t errlen)
{
    au_flows_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    au.fl = f;
    const json_t *a = au.conf->account;
    bool bad = (a && !json_is_object(a)) ||
               (au.conf->rate_limit && !json_is_object(au.conf->rate_limit));
    bool open = au_jbool(a, "password_registration_enabled",
                         au.conf->password_registration_enabled, &bad);
    bool token = au_jbool(a, "registration_token_required", 0, &bad);
    f->registration = !open ? AU_REG_CLOSED : token ? AU_REG_TOKEN : AU_REG_OPEN;
    f->password_change_allowed = au_jbool(a, "password_change_allowed", 1, &bad);
    const json_t *ev = json_object_get(a, "email_verification");
    const char *evs = json_is_false(ev) ? "off" : json_string_value(ev);
    /* smtp: as dev, but the link is mailed (au_mail.c checked auth.email). */
    if (ev && (!evs || (strcmp(evs, "off") && strcmp(evs, "dev") && strcmp(evs, "smtp"))))
        bad = true;
    f->email_smtp = evs && !strcmp(evs, "smtp");
    f->email_verification = evs && (!strcmp(evs, "dev") || f->email_smtp) ? AU_EMAIL_DEV
                                                                          : AU_EMAIL_OFF;
    f->pw_min_length = (int64_t)au_jnum(a, "password_min_length", 8, &bad);
    f->pw_min_classes = (int64_t)au_jnum(a, "password_min_classes", 0, &bad);
    if (f->pw_min_length < 1 || f->pw_min_length > 512 || f->pw_min_classes < 0 ||
        f->pw_min_classes > 4)
        bad = true;
    const json_t *login = json_object_get(au.conf->rate_limit, "login");
    f->login_ip = au_rl_conf(login, "per_ip", 20, 0.2, &bad);
    f->login_account = au_rl_conf(login, "per_account", 10, 0.05, &bad);
    if (bad) {
        snprintf(err, errlen, "auth: bad account: or rate_limit: settings (see "
                              "modules/auth/README.md)");
        return -EINVAL;
    }
    if (!f->login_ip || !f->login_account)
        return -ENOMEM;
    return 0;
}

void au_flows_fini(void)
{
    if (!au.fl)
        return;
    au_rl_free(au.fl->login_ip);
    au_rl_free(au.fl->login_account);
    free(au.fl);
    au.fl = NULL;
}

const char *au_next_ok(const char *next)
{
    static const char *const pages[] = { "link", "device", "account/", "end_session", NULL };
    if (!next || !*next || strlen(next) > 512 || strstr(next, "//") || strchr(next, '\\') ||
        strstr(next, ".."))
        return NULL;
    for (const char *const *p = pages; *p; p++) {
        size_t l = strlen(*p);
        if (!strncmp(next, *p, l) && (next[l] == '\0' || next[l] == '?' || next[l] == '/' ||
                                      (*p)[l - 1] == '/'))
            return next;
    }
    return NULL;
}

/* ------------------------------------------------- cross-signing reset --- */

typedef struct au_xs {
    au_xs_fn cb;
    au_done_fn done;
    void *ud;
} au_xs_t;

static void au_xs_read(int status, mx_sql_res_t *res, void *ud)
{
    au_xs_t *x = ud;
    int64_t until = status == 0 && mx_sql_nrows(res, 0) > 0 ? mx_sql_int(res, 0, 0, 0) : 0;
    x->cb(status < 0 ? status : 0, until > (int64_t)mx_now_ms(), until, x->ud);
    free(x);
}

int au_crosssign_reset_allowed(const char *user_id, au_xs_fn cb, void *ud)
{
    if (!user_id || !au.db)
        return -EINVAL;
    au_xs_t *x = calloc(1, sizeof(*x));
    mx_sql_batch_t *b = x ? mx_sql_batch_new(au.db, MX_SQL_READ) : NULL;
    if (!b) {
        free(x);
        return -ENOMEM;
    }
    x->cb = cb;
    x->ud = ud;
    mx_sql_add(b, "SELECT allowed_until FROM auth_crosssign_resets WHERE user_id = ?", "s",
               user_id);
    int rc = mx_sql_run(b, au_xs_read, x);
    if (rc < 0)
        free(x);
    return rc;
}

static void au_xs_deleted(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    au_xs_t *x = ud;
    if (x->done)
        x->done(status < 0 ? status : 0, x->ud);
    free(x);
}

int au_crosssign_reset_consume(const char *user_id, au_done_fn cb, void *ud)
{
    if (!user_id || !au.db)
        return -EINVAL;
    au_xs_t *x = calloc(1, sizeof(*x));
    mx_sql_batch_t *b = x ? mx_sql_batch_new(au.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(x);
        return -ENOMEM;
    }
    x->done = cb;
    x->ud = ud;
    mx_sql_add(b, "DELETE FROM auth_crosssign_resets WHERE user_id = ?", "s", user_id);
    int rc = mx_sql_run(b, au_xs_deleted, x);
    if (rc < 0)
        free(x);
    return rc;
}
