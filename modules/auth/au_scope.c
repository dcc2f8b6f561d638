/*
 * au_scope.c: OAuth scopes as Matrix uses them (MSC2967, spec v1.15):
 *   urn:matrix:client:api:*            full Client-Server API access
 *   urn:matrix:client:device:<ID>      the device the session is (one)
 * with their unstable names urn:matrix:org.matrix.msc2967.client:..., plus
 * openid, email, urn:synapse:admin:* and urn:mas:admin.  Parsing rejects
 * unknown scopes and bad syntax; introspection answers carry both names
 * of each Matrix scope (as MAS does), so either spelling can be checked.
 */
#include "auth.h"

#include <errno.h>
#include <string.h>

/* scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3) */
static bool au_scope_token_ok(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e)
            return false;
    }
    return true;
}

/* Device IDs in scopes: RFC 3986 unreserved characters, 1..255. */
static bool au_device_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > 255)
        return false;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == n;
}

static const char *au_device_suffix(const char *tok)
{
    if (!strncmp(tok, AU_SCOPE_DEVICE, strlen(AU_SCOPE_DEVICE)))
        return tok + strlen(AU_SCOPE_DEVICE);
    if (!strncmp(tok, AU_SCOPE_DEVICE_UNSTABLE, strlen(AU_SCOPE_DEVICE_UNSTABLE)))
        return tok + strlen(AU_SCOPE_DEVICE_UNSTABLE);
    return NULL;
}

int au_scope_parse(mx_pool_t *pool, const char *scope, au_scope_t *sc, const char **bad)
{
    memset(sc, 0, sizeof(*sc));
    *bad = NULL;
    sc->list = json_array();
    if (!sc->list)
        return -ENOMEM;
    const char *p = scope ? scope : "";
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, " ");
        char *tok = mx_palloc(pool, n + 1);
        if (!tok)
            return -ENOMEM;
        memcpy(tok, p, n);
        tok[n] = '\0';
        p += n;
        if (!au_scope_token_ok(tok, n)) {
            *bad = tok;
            return -EINVAL;
        }
        const char *dev = au_device_suffix(tok);
        if (!strcmp(tok, AU_SCOPE_API) || !strcmp(tok, AU_SCOPE_API_UNSTABLE)) {
            sc->api = true;
        } else if (dev) {
            if (!au_device_id_ok(dev) || (sc->device_id && strcmp(sc->device_id, dev))) {
                *bad = tok;
                return -EINVAL;
            }
            sc->device_id = dev;
            sc->ndevices++;
        } else if (!strcmp(tok, "openid")) {
            sc->openid = true;
        } else if (!strcmp(tok, AU_SCOPE_SYNAPSE_ADMIN)) {
            sc->synapse_admin = true;
        } else if (!strcmp(tok, "urn:mas:admin")) {
            sc->mas_admin = true;
        } else if (strcmp(tok, "email") != 0) {
            *bad = tok;
            return -EINVAL;
        }
        /* Keep each token once. */
        size_t i;
        json_t *e;
        bool dup = false;
        json_array_foreach(sc->list, i, e)
            dup |= !strcmp(json_string_value(e), tok);
        if (!dup)
            json_array_append_new(sc->list, json_string(tok));
    }
    return 0;
}

bool au_scope_has(const char *scope, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = scope; p && *p;) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        if (l == n && !strncmp(p, token, n))
            return true;
        p += l;
    }
    return false;
}

char *au_scope_device(mx_pool_t *pool, const char *scope)
{
    for (const char *p = scope; p && *p;) {
        while (*p == ' ')
            p++;
        size_t l = strcspn(p, " ");
        char *tok = mx_palloc(pool, l + 1);
        if (!tok)
            return NULL;
        memcpy(tok, p, l);
        tok[l] = '\0';
        const char *dev = au_device_suffix(tok);
        if (dev && *dev)
            return mx_pstrdup(pool, dev);
        p += l;
    }
    return NULL;
}

char *au_scope_normalise(mx_pool_t *pool, const char *scope)
{
    char *out = mx_pstrdup(pool, scope ? scope : "");
    if (!out)
        return NULL;
    bool api = au_scope_has(out, AU_SCOPE_API) || au_scope_has(out, AU_SCOPE_API_UNSTABLE);
    if (api && !au_scope_has(out, AU_SCOPE_API))
        out = mx_psprintf(pool, "%s %s", out, AU_SCOPE_API);
    if (api && !au_scope_has(out, AU_SCOPE_API_UNSTABLE))
        out = mx_psprintf(pool, "%s %s", out, AU_SCOPE_API_UNSTABLE);
    char *dev = au_scope_device(pool, out);
    if (dev) {
        char *stable = mx_psprintf(pool, "%s%s", AU_SCOPE_DEVICE, dev);
        char *unstable = mx_psprintf(pool, "%s%s", AU_SCOPE_DEVICE_UNSTABLE, dev);
        if (!au_scope_has(out, stable))
            out = mx_psprintf(pool, "%s %s", out, stable);
        if (!au_scope_has(out, unstable))
            out = mx_psprintf(pool, "%s %s", out, unstable);
    }
    return out;
}

bool au_scope_has_admin(const char *scope)
{
    for (const char *p = scope; p && *p;) {
        size_t n = strcspn(p, " ");
        if ((n == 13 && !strncmp(p, "urn:mas:admin", 13)) ||
            (n >= 18 && !strncmp(p, "urn:synapse:admin:", 18)))
            return true;
        p += n;
        p += strspn(p, " ");
    }
    return false;
}
