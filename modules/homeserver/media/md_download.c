/*
 * md_download.c: GET /download/{serverName}/{mediaId}[/{fileName}] on the
 * legacy unauthenticated prefixes and on /_matrix/client/v1/media (MSC3916,
 * token required), and the response headers every media reply carries.
 *
 * Uploaded bytes are served from the server's own origin, so they must
 * never run there: only an allow-list of harmless types (Synapse's
 * INLINE_CONTENT_TYPES: images except SVG, audio, video, plain text...) is
 * served inline; everything else is an attachment, and every reply carries
 * nosniff and a sandboxing Content-Security-Policy.
 *
 * Media reserved with /create but not uploaded yet is waited for up to
 * timeout_ms (default 20 s, at most 60 s), then 504 M_NOT_YET_UPLOADED.
 * The file is opened off the loop and handed to the core's file reply
 * (mx_req_reply_file: sendfile, never read into memory here).
 */
#include "media.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const md_inline_types[] = {
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac", NULL
};

static const char *const md_text_types[] = {
    "text/css", "text/csv", "text/html", "text/calendar", "text/plain", "text/javascript",
    "application/json", "application/ld+json", "application/rtf", "image/svg+xml",
    "text/xml", NULL
};

/* True when the type/subtype part of `ct` (case-insensitive, parameters
 * ignored unless `exact`) is in `list`. */
static bool md_type_in(const char *ct, const char *const *list, bool exact)
{
    size_t n = exact ? strlen(ct) : strcspn(ct, ";");
    while (n && isspace((unsigned char)ct[n - 1]))
        n--;
    for (size_t i = 0; list[i]; i++)
        if (strlen(list[i]) == n && !strncasecmp(ct, list[i], n))
            return true;
    return false;
}

const char *md_reply_type(mx_req_t *req, const char *ct)
{
    if (md_type_in(ct, md_text_types, true))
        return mx_psprintf(mx_req_pool(req), "%s; charset=UTF-8", ct);
    return ct;
}

/* RFC 2616 token: no CTLs, no separators, ASCII only. */
static bool md_is_token(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 32 || *p >= 127 || strchr("()<>@,;:\\\"/[]?={}", *p))
            return false;
    return *s != '\0';
}

void md_file_headers(mx_req_t *req, const char *ct, const char *name)
{
    mx_pool_t *pool = mx_req_pool(req);
    const char *disp = md_type_in(ct, md_inline_types, false) ? "inline" : "attachment";
    if (name && *name) {
        if (md_is_token(name)) {
            disp = mx_psprintf(pool, "%s; filename=%s", disp, name);
        } else {
            /* RFC 6266 / 5987 ext-value: percent-encode all but attr-chars. */
            size_t n = strlen(name);
            char *enc = mx_palloc(pool, n * 3 + 1), *o = enc;
            if (enc) {
                for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
                    if (isalnum(*p) || strchr("!#$&+-.^_`|~", *p)) {
                        *o++ = (char)*p;
                    } else {
                        snprintf(o, 4, "%%%02X", *p);
                        o += 3;
                    }
                }
                *o = '\0';
                disp = mx_psprintf(pool, "%s; filename*=utf-8''%s", disp, enc);
            }
        }
    }
    if (disp)
        mx_req_set_header(req, "Content-Disposition", disp);
    mx_req_set_header(req, "X-Content-Type-Options", "nosniff");
    mx_req_set_header(req, "Content-Security-Policy",
                      "sandbox; default-src 'none'; script-src 'none'; plugin-types "
                      "application/pdf; style-src 'unsafe-inline'; media-src 'self'; "
                      "object-src 'self';");
    mx_req_set_header(req, "Cross-Origin-Resource-Policy", "cross-origin");
    mx_req_set_header(req, "Cache-Control", "public,max-age=86400,s-maxage=0,proxy-revalidate");
    mx_req_set_header(req, "X-Robots-Tag", "noindex, nofollow, noarchive, noimageindex");
}

void md_not_found(mx_req_t *req)
{
    mx_req_error(req, 404, "M_NOT_FOUND", "Not found '%s'", mx_req_path(req));
}

/* ----------------------------------------------------------- download --- */

typedef struct md_dl {
    mx_req_t *req;
    const char *media_id;
    const char *file_name;     /* path override, or NULL */
    bool authed_path;
    uint64_t deadline;         /* for pending media */
    uv_timer_t *timer;         /* malloc'd while waiting */
    const char *ct, *name;
} md_dl_t;

static void md_dl_lookup(md_dl_t *d);

static void md_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void md_dl_retry(uv_timer_t *t)
{
    md_dl_t *d = t->data;
    uv_close((uv_handle_t *)t, md_timer_closed);
    d->timer = NULL;
    md_dl_lookup(d);
}

static void md_dl_open(md_read_t *r, void *ud)
{
    md_dl_t *d = ud;
    if (r->err) {
        mx_log(MD_LOG, MX_LOG_ERROR, "media: cannot open %s: %s", r->path, strerror(-r->err));
        md_not_found(d->req);
        md_read_free(r);
        return;
    }
    md_file_headers(d->req, d->ct, d->name);
    int fd = r->fd;
    r->fd = -1;
    mx_req_reply_file(d->req, 200, md_reply_type(d->req, d->ct), fd, 0, r->len);
    md_read_free(r);
}

static void md_dl_got(int status, mx_sql_res_t *res, void *ud)
{
    md_dl_t *d = ud;
    if (status < 0) {
        hs_reply_storage_error(d->req, status, "media download");
        return;
    }
    if (mx_sql_nrows(res, 0) == 0 || !mx_sql_is_null(res, 0, 0, 4) ||
        (!d->authed_path && mx_sql_int(res, 0, 0, 5) != 0)) {
        md_not_found(d->req);
        return;
    }
    if (mx_sql_is_null(res, 0, 0, 3)) {
        /* Reserved, not uploaded yet: wait a little. */
        if (mx_now_ms() + 500 > d->deadline) {
            mx_req_error(d->req, 504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet");
            return;
        }
        d->timer = malloc(sizeof(*d->timer));
        if (!d->timer || uv_timer_init(mx_loop(), d->timer) < 0) {
            free(d->timer);
            d->timer = NULL;
            mx_req_error(d->req, 500, "M_UNKNOWN", "Out of memory");
            return;
        }
        d->timer->data = d;
        uv_timer_start(d->timer, md_dl_retry, 500, 0);
        return;
    }
    mx_pool_t *pool = mx_req_pool(d->req);
    d->ct = mx_pstrdup(pool, mx_sql_is_null(res, 0, 0, 0) ? "application/octet-stream"
                                                          : mx_sql_text(res, 0, 0, 0));
    d->name = d->file_name ? d->file_name
              : mx_sql_is_null(res, 0, 0, 1) ? NULL : mx_pstrdup(pool, mx_sql_text(res, 0, 0, 1));
    char *path = md_path("content", mx_sql_text(res, 0, 0, 3), NULL);
    int rc = path && d->ct ? md_open_file(path, md_dl_open, d) : -ENOMEM;
    free(path);
    if (rc < 0)
        mx_req_error(d->req, 500, "M_UNKNOWN", "Cannot read the file");
}

static void md_dl_lookup(md_dl_t *d)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(d->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT content_type, upload_name, size, sha256, quarantined_by, authenticated"
                  " FROM local_media WHERE media_id = ?", "s", d->media_id);
    int rc = mx_sql_run(b, md_dl_got, d);
    if (rc < 0)
        hs_reply_storage_error(d->req, rc, "media download");
}

static void md_dl_start(mx_req_t *req, const hs_user_t *who, void *ud)
{
    const char *server = mx_req_param(req, "serverName");
    const char *id = mx_req_param(req, "mediaId");
    /* Remote media needs federation (not yet): 404 as for unknown media. */
    if (!md_is_local(server) || !md_id_ok(id)) {
        md_not_found(req);
        return;
    }
    md_dl_t *d = mx_palloc(mx_req_pool(req), sizeof(*d));
    if (!d) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(d, 0, sizeof(*d));
    d->req = req;
    d->media_id = id;
    d->authed_path = who != NULL;
    const char *fn = mx_req_param(req, "fileName");
    d->file_name = fn && *fn ? fn : NULL;
    const char *t = mx_req_query(req, "timeout_ms");
    long long timeout = t ? strtoll(t, NULL, 10) : 20000;
    if (timeout < 0)
        timeout = 0;
    if (timeout > 60000)
        timeout = 60000;
    d->deadline = mx_now_ms() + (uint64_t)timeout;
    md_dl_lookup(d);
}

static int md_dl_h(mx_req_t *req, void *ud)
{
    if (ud == &md_authed_tag)
        return hs_require_auth_ex(req, true, md_dl_start, NULL);
    md_dl_start(req, NULL, NULL);
    return MX_ASYNC;
}

int md_download_start(void)
{
    int rc;
    if ((rc = md_route("GET", "/download/{serverName}/{mediaId}", md_dl_h, NULL, true,
                       &md_authed_tag, 0)) < 0)
        return rc;
    return md_route("GET", "/download/{serverName}/{mediaId}/{fileName}", md_dl_h, NULL, true,
                    &md_authed_tag, 0);
}
