/*
 * au_passwords.c: password checks and the password policy.
 *
 * Accounts live in the homeserver for now: the check goes through its
 * `homeserver.users` service (argon2id there, off the loop, with the same
 * work for unknown users so timing does not reveal who exists).  The policy
 * for new passwords is ours: account.password_min_length (8) to 512 bytes,
 * with at least account.password_min_classes (0) of the four character
 * classes lower-case, upper-case, digit, other (au_flows.c).
 */
#include "auth.h"
#include "../homeserver/accounts/users_iface.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define AU_PW_MAX 512

typedef struct au_pwq {
    au_pw_fn cb;
    void *ud;
} au_pwq_t;

static void au_pw_done(int status, const hs_users_info_t *u, void *ud)
{
    au_pwq_t *q = ud;
    if (status == -ENOENT)
        status = -EACCES;
    q->cb(status, u ? u->user_id : NULL, u ? u->is_admin : false, q->ud);
    free(q);
}

int au_password_check(const char *user, const char *password, au_pw_fn cb, void *ud)
{
    const hs_users_iface_t *users = mx_service_get(HS_USERS_SERVICE);
    if (!users)
        return -ENOSYS;
    if (!user || !*user || !password || strlen(password) > AU_PW_MAX)
        return -EACCES;
    au_pwq_t *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->cb = cb;
    q->ud = ud;
    int rc = users->check_password(user, password, au_pw_done, q);
    if (rc < 0) {
        free(q);
        return rc == -ENOENT ? -EACCES : rc;
    }
    return 0;
}

const char *au_password_policy(const char *password)
{
    size_t n = password ? strlen(password) : 0;
    int64_t min = au.fl ? au.fl->pw_min_length : 8;
    if ((int64_t)n < min)
        return "err_password_short";
    if (n > AU_PW_MAX)
        return "err_password_long";
    bool lower = false, upper = false, digit = false, other = false;
    for (const char *p = password; *p; p++) {
        char c = *p;
        if (c >= 'a' && c <= 'z')
            lower = true;
        else if (c >= 'A' && c <= 'Z')
            upper = true;
        else if (c >= '0' && c <= '9')
            digit = true;
        else
            other = true;
    }
    if ((int64_t)(lower + upper + digit + other) < (au.fl ? au.fl->pw_min_classes : 0))
        return "err_password_weak";
    return NULL;
}

const char *au_policy_text(mx_pool_t *pool, const char *key)
{
    const char *t = au_string(key);
    const char *at = strstr(t, "{min}");
    if (!at)
        return t;
    char *out = mx_psprintf(pool, "%.*s%lld%s", (int)(at - t), t,
                            (long long)(au.fl ? au.fl->pw_min_length : 8), at + 5);
    return out ? out : t;
}
