/*
 * hs_util.c: helpers every part of the homeserver uses: requester
 * authentication through the `auth.token` service, user ID syntax checks,
 * the storage-error reply and form/query escaping.
 */
#include "hs.h"
#include "accounts/accounts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- auth --- */

typedef struct hs_auth_wait {
    mx_req_t *req;
    hs_authed_fn fn;
    void *ud;
    bool allow_guest;
} hs_auth_wait_t;

/* 401 with soft_logout (spec: "Soft logout"). */
static void hs_reply_401(mx_req_t *req, const char *errcode, const char *msg, bool soft)
{
    json_t *b = json_pack("{s:s, s:s, s:b}", "errcode", errcode, "error", msg, "soft_logout", soft);
    if (b)
        mx_req_reply_json(req, 401, b);
    else
        mx_req_error(req, 401, errcode, "%s", msg);
}

static void hs_auth_done(int status, const hs_token_info_t *info, void *ud)
{
    hs_auth_wait_t *w = ud;
    mx_req_t *req = w->req;
    if (status == -ENOENT) {
        hs_reply_401(req, "M_UNKNOWN_TOKEN", "Invalid access token passed.", false);
        return;
    }
    if (status == -EKEYEXPIRED) {
        hs_reply_401(req, "M_UNKNOWN_TOKEN", "Access token has expired", true);
        return;
    }
    if (status == -EKEYREVOKED) {
        hs_reply_401(req, "M_USER_LOCKED", "User account has been locked", true);
        return;
    }
    if (status < 0 || !info) {
        hs_reply_storage_error(req, status < 0 ? status : -EIO, "access token check");
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    hs_user_t *who = mx_palloc(pool, sizeof(*who));
    if (!who) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    who->user_id = mx_pstrdup(pool, info->user_id);
    who->device_id = info->device_id[0] ? mx_pstrdup(pool, info->device_id) : NULL;
    who->is_guest = info->is_guest;
    who->is_admin = info->is_admin;
    who->token_id = info->token_id;
    if (!who->user_id) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    if (who->is_guest && !w->allow_guest) {
        mx_req_error(req, 403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed");
        return;
    }
    mx_req_set_user(req, who->user_id);
    hs_accounts_note_seen(who->user_id, who->device_id, mx_req_client_ip(req),
                          mx_req_header(req, "User-Agent"));
    w->fn(req, who, w->ud);
}

int hs_require_auth_ex(mx_req_t *req, bool allow_guest, hs_authed_fn fn, void *ud)
{
    const char *token = mx_req_access_token(req);
    if (!token || !*token) {
        mx_req_error(req, 401, "M_MISSING_TOKEN", "Missing access token");
        return MX_ASYNC;
    }
    const mx_auth_token_iface_t *iface = mx_service_get("auth.token");
    if (!iface || !iface->validate) {
        mx_req_error(req, 500, "M_UNKNOWN", "No token service");
        return MX_ASYNC;
    }
    hs_auth_wait_t *w = mx_palloc(mx_req_pool(req), sizeof(*w));
    if (!w) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return MX_ASYNC;
    }
    w->req = req;
    w->fn = fn;
    w->ud = ud;
    w->allow_guest = allow_guest;
    int rc = iface->validate_req
                 ? iface->validate_req(token, mx_req_client_ip(req),
                                       mx_req_header(req, "User-Agent"), hs_auth_done, w)
                 : iface->validate(token, hs_auth_done, w);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "access token check");
    return MX_ASYNC;
}

int hs_require_auth(mx_req_t *req, hs_authed_fn fn, void *ud)
{
    return hs_require_auth_ex(req, false, fn, ud);
}

/* ---------------------------------------------------------- identifiers --- */

/* Localparts of new users (spec "User Identifiers"): a-z 0-9 . _ = - / +. */
bool hs_is_valid_localpart(const char *localpart)
{
    if (!localpart || !*localpart)
        return false;
    for (const char *p = localpart; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("._=-/+", c)))
            return false;
    }
    return true;
}

static bool hs_valid_server_name(const char *s)
{
    if (!s || !*s)
        return false;
    const char *port = NULL;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end == s + 1)
            return false;
        for (const char *p = s + 1; p < end; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
                  *p == ':' || *p == '.'))
                return false;
        if (end[1] == ':')
            port = end + 2;
        else if (end[1])
            return false;
    } else {
        const char *p = s;
        for (; *p && *p != ':'; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '-' || *p == '.'))
                return false;
        if (p == s || p - s > 255)
            return false;
        if (*p == ':')
            port = p + 1;
    }
    if (port) {
        size_t n = strlen(port);
        if (n < 1 || n > 5 || strspn(port, "0123456789") != n)
            return false;
    }
    return true;
}

/* Any user ID the spec lets exist (historical localparts included):
 * "@" localpart ":" server_name, at most 255 bytes. */
bool hs_is_valid_user_id(const char *user_id)
{
    if (!user_id || user_id[0] != '@' || strlen(user_id) > 255)
        return false;
    const char *colon = strchr(user_id, ':');
    if (!colon || colon == user_id + 1)
        return false;
    for (const char *p = user_id + 1; p < colon; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return false;
    return hs_valid_server_name(colon + 1);
}

char *hs_user_id(mx_pool_t *pool, const char *localpart)
{
    return mx_psprintf(pool, "@%s:%s", localpart, hs.server_name);
}

void hs_reply_storage_error(mx_req_t *req, int status, const char *what)
{
    mx_log("homeserver", MX_LOG_ERROR, "%s: storage error %d", what ? what : "request", status);
    mx_req_error(req, 500, "M_UNKNOWN", "Internal server error");
}

char *hs_form_escape(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n * 3 + 1), *p = o;
    if (!o)
        return NULL;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '.' || *c == '_' || *c == '~') {
            *p++ = (char)*c;
        } else {
            snprintf(p, 4, "%%%02X", *c);
            p += 3;
        }
    }
    *p = '\0';
    return o;
}
