/*
 * md_preview.c: GET /preview_url?url=&ts= (legacy and MSC3916 paths).
 *
 * Disabled unless the top-level `url_preview_enabled` is true (Synapse's
 * key); disabled answers 404 M_UNRECOGNIZED as Synapse does.  When enabled,
 * the page is fetched through the core HTTP client with its SSRF guard on
 * (allowed ranges: the core's ip_range_whitelist), at most max_spider_size
 * bytes, following up to 5 redirects.  From HTML the OpenGraph properties
 * (og:title, og:description, og:image, og:site_name, og:type, og:url) are
 * taken, with <title> and <meta name="description"> as fallbacks; og:image
 * is fetched the same way and stored as local media of the requester, so
 * the answer names it as an mxc:// URI (Synapse's behaviour).  An image URL
 * is previewed as the image itself.  Results are cached per URL for an hour
 * (media_url_cache); `ts` is accepted and ignored.
 *
 * The HTML scanner is small on purpose: it walks tags, skips comments,
 * <script> and <style>, reads attributes with or without quotes, decodes
 * the common entities and keeps only valid UTF-8.
 */
#include "media.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PV_CACHE_MS (3600 * 1000)
#define PV_MAX_REDIRECTS 5
#define PV_MAX_VALUE 1000
#define PV_MAX_DESCRIPTION 500

/* ------------------------------------------------------- HTML scanning --- */

/* Appends the UTF-8 encoding of code point `c`. */
static size_t pv_put_utf8(char *o, unsigned long c)
{
    if (c == 0 || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        c = 0xfffd;
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* Decodes entities of s[0..n), collapses whitespace, drops invalid UTF-8,
 * cuts at `max` bytes.  malloc'd. */
static char *pv_text(const char *s, size_t n, size_t max)
{
    char *out = malloc(n * 4 + 8), *o = out;
    if (!out)
        return NULL;
    bool space = true;   /* trims leading space */
    for (size_t i = 0; i < n && (size_t)(o - out) < max;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '&') {
            static const struct { const char *name; unsigned long cp; } ents[] = {
                { "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' },
                { "apos;", '\'' }, { "nbsp;", ' ' }, { "#39;", '\'' },
            };
            bool done = false;
            for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]) && !done; k++) {
                size_t l = strlen(ents[k].name);
                if (i + 1 + l <= n && !strncasecmp(s + i + 1, ents[k].name, l)) {
                    o += pv_put_utf8(o, ents[k].cp);
                    i += 1 + l;
                    done = true;
                }
            }
            if (!done && i + 2 < n && s[i + 1] == '#') {
                size_t j = i + 2;
                int base = 10;
                if (s[j] == 'x' || s[j] == 'X') {
                    base = 16;
                    j++;
                }
                unsigned long cp = 0;
                size_t digits = 0;
                while (j < n && digits < 8 && isxdigit((unsigned char)s[j]) &&
                       (base == 16 || isdigit((unsigned char)s[j]))) {
                    cp = cp * (unsigned long)base +
                         (unsigned long)(isdigit((unsigned char)s[j]) ? s[j] - '0'
                                         : (tolower((unsigned char)s[j]) - 'a' + 10));
                    j++;
                    digits++;
                }
                if (digits && j < n && s[j] == ';') {
                    o += pv_put_utf8(o, cp);
                    i = j + 1;
                    done = true;
                }
            }
            if (done) {
                space = false;
                continue;
            }
        }
        if (isspace(c)) {
            if (!space)
                *o++ = ' ';
            space = true;
            i++;
            continue;
        }
        space = false;
        /* Copy one UTF-8 sequence if valid, else drop the byte. */
        int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 2 : (c & 0xf0) == 0xe0 ? 3
                  : (c & 0xf8) == 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++)
            ok = ((unsigned char)s[i + (size_t)k] & 0xc0) == 0x80;
        if (ok && c >= 0x20 && c != 0x7f) {
            memcpy(o, s + i, (size_t)len);
            o += len;
            i += (size_t)len;
        } else {
            i++;
        }
    }
    while (o > out && o[-1] == ' ')
        o--;
    /* Never cut inside a UTF-8 sequence. */
    while (o > out && (size_t)(o - out) > max)
        o--;
    while (o > out && ((unsigned char)o[-1] & 0xc0) == 0x80) {
        char *lead = o - 1;
        while (lead > out && ((unsigned char)*lead & 0xc0) == 0x80)
            lead--;
        unsigned char lc = (unsigned char)*lead;
        size_t want = (lc & 0xe0) == 0xc0 ? 2 : (lc & 0xf0) == 0xe0 ? 3 : 4;
        if ((size_t)(o - lead) == want)
            break;
        o = lead;
    }
    *o = '\0';
    return out;
}

static const char *pv_find_ci(const char *s, const char *end, const char *needle)
{
    size_t n = strlen(needle);
    for (; s + n <= end; s++)
        if (!strncasecmp(s, needle, n))
            return s;
    return NULL;
}

/* Reads one attribute at *pp (inside a tag ending before `end`). */
static bool pv_attr(const char **pp, const char *end, const char **name, size_t *nlen,
                    const char **val, size_t *vlen)
{
    const char *p = *pp;
    while (p < end && (isspace((unsigned char)*p) || *p == '/'))
        p++;
    if (p >= end || *p == '>')
        return false;
    *name = p;
    while (p < end && !isspace((unsigned char)*p) && *p != '=' && *p != '>' && *p != '/')
        p++;
    *nlen = (size_t)(p - *name);
    *val = "";
    *vlen = 0;
    while (p < end && isspace((unsigned char)*p))
        p++;
    if (p < end && *p == '=') {
        p++;
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p < end && (*p == '"' || *p == '\'')) {
            char q = *p++;
            *val = p;
            while (p < end && *p != q)
                p++;
            *vlen = (size_t)(p - *val);
            if (p < end)
                p++;
        } else {
            *val = p;
            while (p < end && !isspace((unsigned char)*p) && *p != '>')
                p++;
            *vlen = (size_t)(p - *val);
        }
    }
    if (*nlen == 0)
        p++;   /* stray character: never loop */
    *pp = p;
    return true;
}

static void pv_set(json_t *og, const char *key, const char *v, size_t n, size_t max,
                   bool overwrite)
{
    if (!overwrite && json_object_get(og, key))
        return;
    char *t = pv_text(v, n, max);
    if (t && *t)
        json_object_set_new(og, key, json_string(t));
    free(t);
}

/* Fills `og` from an HTML document. */
static void pv_scan_html(const char *html, size_t len, json_t *og)
{
    const char *p = html, *end = html + len;
    const char *title = NULL, *desc = NULL;
    size_t title_len = 0, desc_len = 0;
    while ((p = memchr(p, '<', (size_t)(end - p)))) {
        if (end - p >= 4 && !strncmp(p, "<!--", 4)) {
            const char *c = pv_find_ci(p + 4, end, "-->");
            if (!c)
                break;
            p = c + 3;
            continue;
        }
        const char *tag = p + 1;
        const char *tend = memchr(tag, '>', (size_t)(end - tag));
        if (!tend)
            break;
        size_t tl = 0;
        while (tag + tl < tend && (isalnum((unsigned char)tag[tl]) || tag[tl] == '/'))
            tl++;
        if ((tl == 6 && !strncasecmp(tag, "script", 6)) ||
            (tl == 5 && !strncasecmp(tag, "style", 5))) {
            const char *close = pv_find_ci(tend, end, tl == 6 ? "</script" : "</style");
            if (!close)
                break;
            p = close + 2;
            continue;
        }
        if (tl == 5 && !strncasecmp(tag, "title", 5) && !title) {
            const char *close = pv_find_ci(tend + 1, end, "</title");
            if (close) {
                title = tend + 1;
                title_len = (size_t)(close - title);
            }
        } else if (tl == 4 && !strncasecmp(tag, "meta", 4)) {
            const char *a = tag + 4, *n, *v, *prop = NULL, *content = NULL, *mname = NULL;
            size_t nl, vl, prop_len = 0, content_len = 0, mname_len = 0;
            while (pv_attr(&a, tend, &n, &nl, &v, &vl)) {
                if (nl == 8 && !strncasecmp(n, "property", 8)) {
                    prop = v;
                    prop_len = vl;
                } else if (nl == 4 && !strncasecmp(n, "name", 4)) {
                    mname = v;
                    mname_len = vl;
                } else if (nl == 7 && !strncasecmp(n, "content", 7)) {
                    content = v;
                    content_len = vl;
                }
            }
            if (!prop && mname && mname_len > 3 && !strncasecmp(mname, "og:", 3)) {
                prop = mname;
                prop_len = mname_len;
            }
            if (content && prop && prop_len > 3 && prop_len < 64 &&
                !strncasecmp(prop, "og:", 3)) {
                char key[64];
                memcpy(key, prop, prop_len);
                key[prop_len] = '\0';
                for (char *k = key; *k; k++)
                    *k = (char)tolower((unsigned char)*k);
                pv_set(og, key, content, content_len,
                       !strcmp(key, "og:description") ? PV_MAX_DESCRIPTION : PV_MAX_VALUE, false);
            } else if (content && mname && mname_len == 11 &&
                       !strncasecmp(mname, "description", 11) && !desc) {
                desc = content;
                desc_len = content_len;
            }
        }
        p = tend + 1;
    }
    if (title)
        pv_set(og, "og:title", title, title_len, PV_MAX_VALUE, false);
    if (desc)
        pv_set(og, "og:description", desc, desc_len, PV_MAX_DESCRIPTION, false);
}

/* --------------------------------------------------------------- URLs --- */

/* base[0..n) + sep + ref, malloc'd; NULL on failure. */
static char *pv_join(const char *base, size_t n, const char *sep, const char *ref)
{
    size_t len = n + strlen(sep) + strlen(ref) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%.*s%s%s", (int)n, base, sep, ref);
    return out;
}

/* `ref` resolved against `base` (absolute http(s) URLs, "//host/x",
 * "/path", "rel").  NULL when unusable.  malloc'd. */
static char *pv_resolve(const char *base, const char *ref)
{
    if (!strncasecmp(ref, "http://", 7) || !strncasecmp(ref, "https://", 8))
        return strdup(ref);
    const char *scheme_end = strstr(base, "://");
    if (!scheme_end)
        return NULL;
    if (ref[0] == '/' && ref[1] == '/') {
        return pv_join(base, (size_t)(scheme_end - base), ":", ref);
    }
    const char *host = scheme_end + 3;
    const char *path = host + strcspn(host, "/?#");
    if (ref[0] == '/') {
        return pv_join(base, (size_t)(path - base), "", ref);
    }
    if (strchr(ref, ':'))  /* other schemes */
        return NULL;
    const char *qs = path + strcspn(path, "?#");
    const char *dir = qs;
    while (dir > path && dir[-1] != '/')
        dir--;
    if (dir == path) {
        return pv_join(base, (size_t)(path - base), "/", ref);
    }
    return pv_join(base, (size_t)(dir - base), "", ref);
}

static const char *pv_header(const mx_http_response_t *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (!strcmp(r->header_names[i], name))
            return r->header_values[i];
    return NULL;
}

/* ------------------------------------------------------------ fetching --- */

typedef struct pv_req {
    mx_req_t *req;
    const char *user_id;
    const char *url;          /* as asked (pool): the cache key */
    char *cur;                /* malloc'd: URL being fetched */
    int redirects;
    bool fetching_image;
    json_t *og;               /* the answer being built */
} pv_req_t;

static void pv_fetch(pv_req_t *pv);

static void pv_cache_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    if (status < 0)
        mx_log(MD_LOG, MX_LOG_WARN, "media: preview cache not written (%d)", status);
}

static void pv_finish(pv_req_t *pv)
{
    free(pv->cur);
    pv->cur = NULL;
    char *s = json_dumps(pv->og, JSON_COMPACT);
    mx_sql_batch_t *b = s ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (b) {
        mx_sql_add(b, "INSERT INTO media_url_cache (url, fetched_ts, og) VALUES (?, ?, ?)"
                      " ON CONFLICT (url) DO UPDATE SET fetched_ts = excluded.fetched_ts,"
                      " og = excluded.og", "sis", pv->url, (int64_t)mx_now_ms(), s);
        mx_sql_run(b, pv_cache_written, NULL);
    }
    free(s);
    mx_req_reply_json(pv->req, 200, pv->og);
    pv->og = NULL;
}

static void pv_fail(pv_req_t *pv, int status, const char *msg)
{
    free(pv->cur);
    pv->cur = NULL;
    json_decref(pv->og);
    pv->og = NULL;
    mx_req_error(pv->req, status, "M_UNKNOWN", "%s", msg);
}

static void pv_image_stored(const char *media_id, void *ud)
{
    pv_req_t *pv = ud;
    if (media_id) {
        char *uri = mx_psprintf(mx_req_pool(pv->req), "mxc://%s/%s", hs.server_name, media_id);
        json_object_set_new(pv->og, "og:image", json_string(uri));
    } else {
        json_object_del(pv->og, "og:image");
        json_object_del(pv->og, "og:image:type");
        json_object_del(pv->og, "matrix:image:size");
        json_object_del(pv->og, "og:image:width");
        json_object_del(pv->og, "og:image:height");
    }
    pv_finish(pv);
}

static bool pv_is_image_type(const char *ct)
{
    return ct && !strncasecmp(ct, "image/", 6) && strncasecmp(ct, "image/svg", 9) != 0;
}

/* Stores the image body as media; og gets its type and size. */
static void pv_take_image(pv_req_t *pv, const mx_http_response_t *r, const char *ct)
{
    char type[128];
    snprintf(type, sizeof(type), "%.*s", (int)strcspn(ct, "; "), ct);
    json_object_set_new(pv->og, "og:image:type", json_string(type));
    json_object_set_new(pv->og, "matrix:image:size", json_integer((json_int_t)r->body_len));
    unsigned w, h;
    if (md_image_size(r->body, r->body_len, &w, &h) == 0 && w && h) {
        json_object_set_new(pv->og, "og:image:width", json_integer(w));
        json_object_set_new(pv->og, "og:image:height", json_integer(h));
    }
    if (md_store_internal(pv->user_id, type, r->body, r->body_len, pv_image_stored, pv) < 0)
        pv_image_stored(NULL, pv);
}

static void pv_got(const mx_http_response_t *r, void *ud)
{
    pv_req_t *pv = ud;
    if (r->err || r->status == 0) {
        mx_log(MD_LOG, MX_LOG_INFO, "media: preview of %s: %s", pv->cur,
               r->errmsg ? r->errmsg : "error");
        if (pv->fetching_image) {
            pv_image_stored(NULL, pv);
            return;
        }
        pv_fail(pv, 502, r->err == MX_ESSRF ? "IP address blocked" : "Failed to download content");
        return;
    }
    const char *loc = pv_header(r, "location");
    if (r->status >= 300 && r->status < 400 && loc) {
        char *next = pv_resolve(pv->cur, loc);
        if (!next || ++pv->redirects > PV_MAX_REDIRECTS) {
            free(next);
            if (pv->fetching_image)
                pv_image_stored(NULL, pv);
            else
                pv_fail(pv, 502, "Too many redirects");
            return;
        }
        free(pv->cur);
        pv->cur = next;
        pv_fetch(pv);
        return;
    }
    if (r->status < 200 || r->status >= 300) {
        if (pv->fetching_image)
            pv_image_stored(NULL, pv);
        else
            pv_fail(pv, 502, "Failed to download content: non-200 response");
        return;
    }
    const char *ct = pv_header(r, "content-type");
    if (pv->fetching_image) {
        if (pv_is_image_type(ct))
            pv_take_image(pv, r, ct);
        else
            pv_image_stored(NULL, pv);
        return;
    }
    if (pv_is_image_type(ct)) {
        pv_take_image(pv, r, ct);
        return;
    }
    if (ct && (!strncasecmp(ct, "text/html", 9) || !strncasecmp(ct, "application/xhtml", 17))) {
        pv_scan_html(r->body, r->body_len, pv->og);
        const json_t *img = json_object_get(pv->og, "og:image");
        char *iu = json_is_string(img) ? pv_resolve(pv->cur, json_string_value(img)) : NULL;
        if (iu) {
            free(pv->cur);
            pv->cur = iu;
            pv->redirects = 0;
            pv->fetching_image = true;
            pv_fetch(pv);
            return;
        }
        json_object_del(pv->og, "og:image");
    }
    pv_finish(pv);
}

static void pv_fetch(pv_req_t *pv)
{
    static const char *const headers[] = {
        "User-Agent: mxstack (URL preview)", "Accept: text/html,application/xhtml+xml,image/*;q=0.9,*/*;q=0.5",
        NULL
    };
    mx_http_request_t rq = {
        .method = "GET",
        .url = pv->cur,
        .headers = headers,
        .timeout_ms = 10000,
        .max_response = (size_t)md->conf.max_spider_size,
        .allow_private = 0,
    };
    int rc = mx_http_fetch(&rq, pv_got, pv);
    if (rc < 0) {
        if (pv->fetching_image)
            pv_image_stored(NULL, pv);
        else
            pv_fail(pv, rc == MX_ESSRF ? 403 : 502,
                    rc == MX_ESSRF ? "IP address blocked" : "Failed to download content");
    }
}

static void pv_cache_got(int status, mx_sql_res_t *res, void *ud)
{
    pv_req_t *pv = ud;
    if (status == 0 && mx_sql_nrows(res, 0) > 0 &&
        (uint64_t)mx_sql_int(res, 0, 0, 1) + PV_CACHE_MS > mx_now_ms()) {
        json_t *og = json_loads(mx_sql_text(res, 0, 0, 0), 0, NULL);
        if (json_is_object(og)) {
            mx_req_reply_json(pv->req, 200, og);
            return;
        }
        json_decref(og);
    }
    pv->og = json_object();
    pv->cur = strdup(pv->url);
    if (!pv->og || !pv->cur) {
        pv_fail(pv, 500, "Out of memory");
        return;
    }
    pv_fetch(pv);
}

static void pv_start(mx_req_t *req, const hs_user_t *who, void *ud)
{
    if (!md->conf.url_preview_enabled) {
        mx_req_error(req, 404, "M_UNRECOGNIZED", "Unrecognized request");
        return;
    }
    const char *url = mx_req_query(req, "url");
    if (!url || !*url) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing string query parameter 'url'");
        return;
    }
    if ((strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)) ||
        strlen(url) > 2048 || strpbrk(url, " \r\n\t")) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid URL");
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    pv_req_t *pv = mx_palloc(pool, sizeof(*pv));
    if (!pv) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(pv, 0, sizeof(*pv));
    pv->req = req;
    pv->user_id = mx_pstrdup(pool, who->user_id);
    /* Fragments never reach the server. */
    pv->url = mx_psprintf(pool, "%.*s", (int)strcspn(url, "#"), url);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b || !pv->url || !pv->user_id) {
        if (b)
            mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT og, fetched_ts FROM media_url_cache WHERE url = ?", "s", pv->url);
    int rc = mx_sql_run(b, pv_cache_got, pv);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "preview cache");
}

static int pv_h(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, pv_start, NULL);
}

int md_preview_start(void)
{
    return md_route("GET", "/preview_url", pv_h, NULL, true, &md_authed_tag, 0);
}
