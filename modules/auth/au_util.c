/*
 * au_util.c: small helpers of the auth module: token and ID generation,
 * hashing, form (x-www-form-urlencoded) parsing and encoding, URL parsing
 * for redirect URI rules, OAuth error replies, CORS headers for /oauth2/,
 * redirects, the common start of form POSTs.  No state.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------- hashing --- */

void au_hash_hex(const char *s, char out[AU_HASH_HEX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[32];
    mx_sha256(s, strlen(s), d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

char *au_b64url(mx_pool_t *pool, const void *data, size_t len)
{
    char *b = mx_b64_encode(data, len, 1);
    if (!b)
        return NULL;
    size_t n = strlen(b);
    while (n && b[n - 1] == '=')
        b[--n] = '\0';
    char *out = mx_pstrdup(pool, b);
    free(b);
    return out;
}

char *au_token_new(mx_pool_t *pool, const char *prefix, size_t n)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[64];
    if (n > sizeof(r))
        n = sizeof(r);
    size_t pl = prefix ? strlen(prefix) + 1 : 0;
    char *t = mx_palloc(pool, pl + n + 1);
    if (!t)
        return NULL;
    if (prefix) {
        memcpy(t, prefix, pl - 1);
        t[pl - 1] = '_';
    }
    mx_random_bytes(r, n);
    /* 62 symbols: rejecting bytes >= 248 keeps the choice uniform. */
    for (size_t i = 0; i < n; i++) {
        while (r[i] >= 248)
            mx_random_bytes(&r[i], 1);
        t[pl + i] = alnum[r[i] % 62];
    }
    t[pl + n] = '\0';
    return t;
}

char *au_ulid(mx_pool_t *pool)
{
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    unsigned char bytes[16];
    uint64_t ms = mx_now_ms();
    for (int i = 5; i >= 0; i--) {
        bytes[i] = (unsigned char)(ms & 0xff);
        ms >>= 8;
    }
    mx_random_bytes(bytes + 6, 10);
    char *out = mx_palloc(pool, 27);
    if (!out)
        return NULL;
    /* 128 bits as 26 base32 digits, most significant first (2 pad bits). */
    for (int i = 0; i < 26; i++) {
        int bit = i * 5 - 2;   /* position of the digit's first bit */
        unsigned v = 0;
        for (int k = 0; k < 5; k++, bit++) {
            v <<= 1;
            if (bit >= 0)
                v |= (bytes[bit / 8] >> (7 - bit % 8)) & 1u;
        }
        out[i] = b32[v];
    }
    out[26] = '\0';
    return out;
}

/* ---------------------------------------------------------------- forms --- */

static int au_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one component into a malloc'd string; NULL when malformed. */
static char *au_form_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n || (h = au_hexval(s[i + 1])) < 0 ||
                (l = au_hexval(s[i + 2])) < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

char *au_pct_decode(mx_pool_t *pool, const char *s)
{
    char *d = au_form_decode(s, strlen(s));
    char *out = d ? mx_pstrdup(pool, d) : NULL;
    free(d);
    return out;
}

json_t *au_form_parse(const char *s, size_t len)
{
    json_t *obj = json_object();
    size_t i = 0;
    while (obj && i < len) {
        size_t end = i;
        while (end < len && s[end] != '&')
            end++;
        if (end > i) {
            const char *eq = memchr(s + i, '=', end - i);
            size_t klen = eq ? (size_t)(eq - (s + i)) : end - i;
            char *k = au_form_decode(s + i, klen);
            char *v = eq ? au_form_decode(eq + 1, end - (size_t)(eq + 1 - s)) : strdup("");
            if (!k || !v) {
                free(k);
                free(v);
                json_decref(obj);
                return NULL;
            }
            json_t *js = json_string(v);   /* NULL for invalid UTF-8 */
            if (!js) {
                free(k);
                free(v);
                json_decref(obj);
                return NULL;
            }
            if (!json_object_get(obj, k))
                json_object_set_new(obj, k, js);
            else
                json_decref(js);
            free(k);
            free(v);
        }
        i = end + 1;
    }
    return obj;
}

char *au_urlencode(mx_pool_t *pool, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = mx_palloc(pool, 3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

const char *au_param(mx_req_t *req, const json_t *form, const char *name)
{
    const char *v = form ? json_string_value(json_object_get(form, name)) : NULL;
    return v ? v : mx_req_query(req, name);
}

/* ----------------------------------------------------------------- URLs --- */

static char *au_lower_dup(mx_pool_t *pool, const char *s, size_t n)
{
    char *o = mx_palloc(pool, n + 1);
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++)
        o[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] - 'A' + 'a' : s[i]);
    o[n] = '\0';
    return o;
}

static char *au_dup(mx_pool_t *pool, const char *s, size_t n)
{
    char *o = mx_palloc(pool, n + 1);
    if (o) {
        memcpy(o, s, n);
        o[n] = '\0';
    }
    return o;
}

int au_url_parse(mx_pool_t *pool, const char *s, au_url_t *u)
{
    memset(u, 0, sizeof(*u));
    u->port = -1;
    if (!s)
        return -EINVAL;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '\\')
            return -EINVAL;   /* no spaces, controls or backslashes anywhere */
    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
    const char *p = s;
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return -EINVAL;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    if (*p != ':')
        return -EINVAL;
    u->scheme = au_lower_dup(pool, s, (size_t)(p - s));
    p++;
    const char *hash = strchr(p, '#');
    u->has_fragment = hash != NULL;
    size_t rest = hash ? (size_t)(hash - p) : strlen(p);
    if (rest >= 2 && p[0] == '/' && p[1] == '/') {
        u->has_authority = true;
        p += 2;
        rest -= 2;
        size_t alen = strcspn(p, "/?#");
        if (alen > rest)
            alen = rest;
        const char *auth = p, *aend = p + alen;
        const char *at = NULL;
        for (const char *q = auth; q < aend; q++)
            if (*q == '@')
                at = q;
        if (at) {
            u->userinfo = au_dup(pool, auth, (size_t)(at - auth));
            auth = at + 1;
        }
        const char *hend = aend;
        if (*auth == '[') {
            const char *rb = memchr(auth, ']', (size_t)(aend - auth));
            if (!rb)
                return -EINVAL;
            hend = rb + 1;
        } else {
            const char *colon = memchr(auth, ':', (size_t)(aend - auth));
            if (colon)
                hend = colon;
        }
        if (hend == auth)
            return -EINVAL;
        u->host = au_lower_dup(pool, auth, (size_t)(hend - auth));
        if (hend < aend) {
            if (*hend != ':')
                return -EINVAL;
            long port = 0;
            const char *q = hend + 1;
            if (q == aend)
                return -EINVAL;
            for (; q < aend; q++) {
                if (*q < '0' || *q > '9' || (port = port * 10 + (*q - '0')) > 65535)
                    return -EINVAL;
            }
            u->port = (int)port;
        }
        rest -= alen;
        p = aend;
    }
    const char *qm = memchr(p, '?', rest);
    size_t plen = qm ? (size_t)(qm - p) : rest;
    u->path = au_dup(pool, p, plen);
    if (qm)
        u->query = au_dup(pool, qm + 1, rest - plen - 1);
    return u->scheme && u->path ? 0 : -ENOMEM;
}

bool au_host_is_loopback(const char *host)
{
    return host && (!strcmp(host, "localhost") || !strcmp(host, "127.0.0.1") ||
                    !strcmp(host, "[::1]"));
}

bool au_host_within(const char *host, const char *parent)
{
    if (!host || !parent || !*parent)
        return false;
    size_t h = strlen(host), p = strlen(parent);
    if (h == p)
        return !strcmp(host, parent);
    return h > p && host[h - p - 1] == '.' && !strcmp(host + h - p, parent);
}

/* ------------------------------------------------------------- replies --- */

void au_cors(mx_req_t *req)
{
    mx_req_set_header(req, "Access-Control-Allow-Origin", "*");
    mx_req_set_header(req, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    mx_req_set_header(req, "Access-Control-Allow-Headers",
                      "Authorization, Content-Type, Accept, X-Requested-With");
}

void au_reply_json_nostore(mx_req_t *req, int status, json_t *body)
{
    mx_req_set_header(req, "Cache-Control", "no-store");
    mx_req_set_header(req, "Pragma", "no-cache");
    au_cors(req);
    mx_req_reply_json(req, status, body);
}

void au_oauth_error(mx_req_t *req, int status, const char *error, const char *desc)
{
    json_t *b = json_pack("{s:s}", "error", error);
    if (b && desc)
        json_object_set_new(b, "error_description", json_string(desc));
    if (status == 401)
        mx_req_set_header(req, "WWW-Authenticate", "Basic realm=\"oauth2\"");
    au_reply_json_nostore(req, status, b ? b : json_object());
}

void au_storage_error(mx_req_t *req, int status, const char *what)
{
    mx_log(AU_LOG, MX_LOG_ERROR, "%s: storage error %d", what ? what : "request", status);
    au_oauth_error(req, 500, "server_error", "Internal error");
}

void au_json_unref(void *p)
{
    json_decref(p);
}

json_t *au_oauth_form(mx_req_t *req)
{
    size_t len;
    const char *body = mx_req_body(req, &len);
    json_t *form = au_form_parse(body, len);
    if (!form) {
        au_oauth_error(req, 400, "invalid_request", "The body must be form-encoded");
        return NULL;
    }
    mx_pool_on_free(mx_req_pool(req), au_json_unref, form);
    return form;
}

json_t *au_page_form(mx_req_t *req)
{
    size_t len;
    const char *body = mx_req_body(req, &len);
    json_t *form = au_form_parse(body, len);
    if (!form) {
        au_page_error(req, 400, "err_bad_request", NULL);
        return NULL;
    }
    mx_pool_on_free(mx_req_pool(req), au_json_unref, form);
    if (!au_csrf_ok(req, form)) {
        au_page_error(req, 403, "err_csrf", NULL);
        return NULL;
    }
    return form;
}

void *au_page_zalloc(mx_req_t *req, size_t size)
{
    void *p = mx_palloc(mx_req_pool(req), size);
    if (!p) {
        au_page_error(req, 500, "err_internal", NULL);
        return NULL;
    }
    memset(p, 0, size);
    *(mx_req_t **)p = req;
    return p;
}

int au_page_browse(mx_req_t *req, size_t size, au_browser_fn cb)
{
    void *st = au_page_zalloc(req, size);
    if (!st)
        return MX_DONE;
    au_browser_load(req, cb, st);
    return MX_ASYNC;
}

void au_redirect(mx_req_t *req, int status, const char *location)
{
    mx_req_set_header(req, "Location", location);
    mx_req_set_header(req, "Cache-Control", "no-store");
    mx_req_set_header(req, "Referrer-Policy", "no-referrer");
    mx_req_reply(req, status, "text/plain; charset=utf-8", "", 0);
}

static int au_preflight(mx_req_t *req, void *ud)
{
    (void)ud;
    au_cors(req);
    mx_req_set_header(req, "Access-Control-Max-Age", "86400");
    mx_req_reply(req, 204, NULL, "", 0);
    return MX_DONE;
}

int au_route_oauth(const char *method, const char *pattern, mx_handler_fn fn, bool preflight)
{
    int rc = mx_route_add("auth", method, pattern, fn, NULL, MX_ROUTE_NO_CORS);
    if (rc < 0 || !preflight)
        return rc;
    return mx_route_add("auth", "OPTIONS", pattern, au_preflight, NULL, MX_ROUTE_NO_CORS);
}
