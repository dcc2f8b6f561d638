/*
 * md_thumbnail.c: GET /thumbnail/{serverName}/{mediaId}?width&height&method
 * (legacy and MSC3916 paths), with libvips loaded on first use.
 *
 * As Synapse with its default settings (dynamic_thumbnails off), a request
 * is answered with the best fitting of the default sizes — 32x32 crop,
 * 96x96 crop, 320x240 scale, 640x480 scale, 800x600 scale — chosen by
 * Synapse's rules.  That thumbnail is generated on first request, written
 * next to the content (thumbnails/ab/cd/<sha>-WxH-method, durable before
 * its row) and served from there afterwards.  JPEG and WebP sources give
 * JPEG thumbnails, PNG and GIF (first frame) give PNG; with animated=true
 * (MSC2705, spec v1.11) an animated GIF or WebP gives an animated WebP,
 * cached under its own name (method "crop-anim" / "scale-anim").
 *
 * Hostile input: the format is recognised from the file's first bytes
 * (never from the uploader's Content-Type), only the four loaders above are
 * used, untrusted vips loaders are blocked, and the declared dimensions are
 * read from the header and refused above max_image_pixels before anything
 * is decoded.  Decoding errors (truncated files) fail the thumbnail; the
 * client gets Synapse's 400 M_UNKNOWN "Cannot find any thumbnails" answer,
 * as for media that is not an image.
 *
 * libvips lives in thumbnailer.so (md_vips.c, md_thumbnailer.h), dlopened
 * on the first thumbnail from the directory homeserver.so was loaded from
 * (or `module_dir` / $MXSTACK_MODULE_DIR), so the idle process never maps
 * it; when it cannot be loaded, thumbnails answer 500 M_UNKNOWN and the
 * reason is logged.  It runs only on worker threads (md_queue); results
 * are delivered on the loop.
 */
#define _GNU_SOURCE   /* dladdr */
#include "media.h"
#include "md_thumbnailer.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct md_size {
    int w, h;
    bool crop;
} md_size_t;

/* Synapse's DEFAULT_THUMBNAIL_SIZES. */
static const md_size_t md_sizes[] = {
    { 32, 32, true }, { 96, 96, true }, { 320, 240, false }, { 640, 480, false },
    { 800, 600, false },
};
#define MD_NSIZES (sizeof(md_sizes) / sizeof(md_sizes[0]))

/* Synapse's THUMBNAIL_SUPPORTED_MEDIA_FORMAT_MAP: source type → thumbnail
 * type. */
static const char *md_thumb_type(const char *ct)
{
    static const char *const map[][2] = {
        { "image/jpeg", "image/jpeg" }, { "image/jpg", "image/jpeg" },
        { "image/webp", "image/jpeg" }, { "image/gif", "image/png" },
        { "image/png", "image/png" },
    };
    size_t n = strcspn(ct, ";");
    while (n && ct[n - 1] == ' ')
        n--;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strlen(map[i][0]) == n && !strncasecmp(ct, map[i][0], n))
            return map[i][1];
    return NULL;
}

/* Synapse's _select_thumbnail over the default sizes. */
static const md_size_t *md_pick(int dw, int dh, bool crop)
{
    const md_size_t *best = NULL, *best2 = NULL;
    long long bq[3] = { 0 }, bq2[3] = { 0 };
    for (size_t i = 0; i < MD_NSIZES; i++) {
        const md_size_t *s = &md_sizes[i];
        if (s->crop != crop)
            continue;
        long long q[3];
        if (crop) {
            q[0] = llabs((long long)dw * s->h - (long long)dh * s->w);
            q[1] = dw <= s->w && dh <= s->h ? 0 : 1;
            q[2] = llabs((long long)(dw - s->w) * (dh - s->h));
        } else {
            q[0] = llabs((long long)(dw - s->w) * (dh - s->h));
            q[1] = q[2] = 0;
        }
        bool big = s->w >= dw || s->h >= dh;
        const md_size_t **b = big ? &best : &best2;
        long long *bqq = big ? bq : bq2;
        bool better = !*b;
        for (int k = 0; k < 3 && !better; k++) {
            if (q[k] != bqq[k]) {
                better = q[k] < bqq[k];
                break;
            }
        }
        if (better) {
            *b = s;
            memcpy(bqq, q, sizeof(q));
        }
    }
    return best ? best : best2;
}

/* ------------------------------------------------------------ the work --- */

typedef struct md_th {
    mx_req_t *req;
    bool authed_path;
    const md_size_t *size;
    const char *method;    /* "crop", "scale", "crop-anim", "scale-anim" */
    bool animated;         /* animated=true */
    const char *out_type;
    char sha[65];
    char *src_path, *dst_path;
    md_tn_job_t job;       /* worker input and output; job.buf malloc'd */
    bool cache_failed;
} md_th_t;

static void md_cannot(mx_req_t *req)
{
    mx_req_error(req, 400, "M_UNKNOWN",
                 "Cannot find any thumbnails for the requested media ('%s'). This might mean "
                 "the media is not a supported_media_format=(image/jpeg, image/jpg, image/webp, "
                 "image/gif, image/png) or that thumbnailing failed for some other reason. "
                 "(Dynamic thumbnails are disabled on this server.)", mx_req_path(req));
}

/* The first bytes name the format; only these four are decoded. */
static bool md_sniff(const char *path, char *why, size_t whylen)
{
    unsigned char m[12] = { 0 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "open: %s", strerror(errno));
        return false;
    }
    ssize_t n = read(fd, m, sizeof(m));
    close(fd);
    if (n == 12 && ((m[0] == 0xff && m[1] == 0xd8 && m[2] == 0xff) ||
                    !memcmp(m, "\x89PNG\r\n\x1a\n", 8) || !memcmp(m, "GIF8", 4) ||
                    (!memcmp(m, "RIFF", 4) && !memcmp(m + 8, "WEBP", 4))))
        return true;
    snprintf(why, whylen, "not a JPEG, PNG, GIF or WebP file");
    return false;
}

static void md_th_work(void *ud)
{
    md_th_t *t = ud;
    if (!md_sniff(t->src_path, t->job.errmsg, sizeof(t->job.errmsg)))
        return;
    if (md->tn->make(&t->job) < 0) {
        free(t->job.buf);
        t->job.buf = NULL;
        return;
    }
    int rc = md_write_durable(t->dst_path, t->job.buf, t->job.len);
    if (rc) {   /* still serve it; it is just not cached */
        snprintf(t->job.errmsg, sizeof(t->job.errmsg), "cache write: %s", strerror(-rc));
        t->cache_failed = true;
    }
}

static void md_th_free_bufs(md_th_t *t)
{
    free(t->src_path);
    free(t->dst_path);
    t->src_path = t->dst_path = NULL;
    free(t->job.buf);
    t->job.buf = NULL;
}

static void md_th_cached(int status, mx_sql_res_t *res, void *ud)
{
    (void)ud;
    if (status < 0)
        mx_log(MD_LOG, MX_LOG_WARN, "media: thumbnail row not written (%d)", status);
}

static void md_th_reply(md_th_t *t, const void *buf, size_t len)
{
    md_file_headers(t->req, t->out_type, NULL);
    mx_req_reply(t->req, 200, t->out_type, buf, len);
}

static void md_th_done(void *ud)
{
    md_th_t *t = ud;
    if (!t->job.buf) {
        mx_log(MD_LOG, MX_LOG_INFO, "media: no thumbnail for %s: %s", t->sha, t->job.errmsg);
        md_th_free_bufs(t);
        md_cannot(t->req);
        return;
    }
    t->out_type = t->job.out_type;
    if (!t->cache_failed) {
        mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
        if (b) {
            mx_sql_add(b, "INSERT INTO media_thumbnails (sha256, req_width, req_height, method,"
                          " content_type, width, height, size, created_ts)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       "siissiiii", t->sha, (int64_t)t->size->w, (int64_t)t->size->h,
                       t->method, t->out_type, (int64_t)t->job.width, (int64_t)t->job.height,
                       (int64_t)t->job.len, (int64_t)mx_now_ms());
            mx_sql_run(b, md_th_cached, NULL);
        }
    } else {
        mx_log(MD_LOG, MX_LOG_WARN, "media: thumbnail of %s: %s", t->sha, t->job.errmsg);
    }
    md_th_reply(t, t->job.buf, t->job.len);
    md_th_free_bufs(t);
}

static void md_th_generate(md_th_t *t)
{
    t->src_path = md_path("content", t->sha, NULL);
    char suffix[64];
    snprintf(suffix, sizeof(suffix), "-%dx%d-%s", t->size->w, t->size->h, t->method);
    t->dst_path = md_path("thumbnails", t->sha, suffix);
    t->job.src_path = t->src_path;
    t->job.w = t->size->w;
    t->job.h = t->size->h;
    t->job.crop = t->size->crop;
    t->job.jpeg = !strcmp(t->out_type, "image/jpeg");
    t->job.animated = t->animated;
    t->job.max_pixels = md->conf.max_image_pixels;
    if (!t->src_path || !t->dst_path || md_queue(md_th_work, md_th_done, t) < 0) {
        md_th_free_bufs(t);
        mx_req_error(t->req, 500, "M_UNKNOWN", "Out of memory");
    }
}

static void md_th_open(md_read_t *r, void *ud)
{
    md_th_t *t = ud;
    /* out_type: the cached row's type */
    if (r->err) {
        /* Row without file (deleted by hand?): make it again. */
        md_read_free(r);
        md_th_generate(t);
        return;
    }
    md_file_headers(t->req, t->out_type, NULL);
    int fd = r->fd;
    r->fd = -1;
    mx_req_reply_file(t->req, 200, t->out_type, fd, 0, r->len);
    md_read_free(r);
}

static void md_th_got(int status, mx_sql_res_t *res, void *ud)
{
    md_th_t *t = ud;
    if (status < 0) {
        hs_reply_storage_error(t->req, status, "thumbnail");
        return;
    }
    if (mx_sql_nrows(res, 0) == 0 || !mx_sql_is_null(res, 0, 0, 2) ||
        (!t->authed_path && mx_sql_int(res, 0, 0, 3) != 0)) {
        md_not_found(t->req);
        return;
    }
    if (mx_sql_is_null(res, 0, 0, 1)) {
        mx_req_error(t->req, 504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet");
        return;
    }
    const char *ct = mx_sql_is_null(res, 0, 0, 0) ? "" : mx_sql_text(res, 0, 0, 0);
    t->out_type = md_thumb_type(ct);
    if (!t->out_type) {
        md_cannot(t->req);
        return;
    }
    snprintf(t->sha, sizeof(t->sha), "%s", mx_sql_text(res, 0, 0, 1));
    /* Animation only from formats that have it; others share the still. */
    bool anim_src = !strncasecmp(ct, "image/gif", 9) || !strncasecmp(ct, "image/webp", 10);
    t->animated = t->animated && anim_src;
    t->method = t->animated ? (t->size->crop ? "crop-anim" : "scale-anim")
                            : (t->size->crop ? "crop" : "scale");
    for (int i = 0; i < mx_sql_nrows(res, 1); i++) {
        if (strcmp(mx_sql_text(res, 1, i, 1), t->method) != 0)
            continue;
        t->out_type = mx_pstrdup(mx_req_pool(t->req), mx_sql_text(res, 1, i, 0));
        char suffix[64];
        snprintf(suffix, sizeof(suffix), "-%dx%d-%s", t->size->w, t->size->h, t->method);
        char *path = md_path("thumbnails", t->sha, suffix);
        int rc = path ? md_open_file(path, md_th_open, t) : -ENOMEM;
        free(path);
        if (rc < 0)
            mx_req_error(t->req, 500, "M_UNKNOWN", "Cannot read the thumbnail");
        return;
    }
    md_th_generate(t);
}

/* width/height: required positive integers (Synapse's parse_integer). */
static int md_int_param(mx_req_t *req, const char *name, int *out)
{
    const char *v = mx_req_query(req, name);
    if (!v) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing integer query parameter '%s'", name);
        return -1;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n <= 0 || n > 100000) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Query parameter '%s' must be a positive "
                     "integer", name);
        return -1;
    }
    *out = (int)n;
    return 0;
}

/* Where thumbnailer.so may be: `module_dir`, $MXSTACK_MODULE_DIR, then
 * the directory homeserver.so was loaded from (the install directory, or
 * .libs/ in the build tree, where the libtool module lands too). */
static void *md_tn_open(char *why, size_t whylen)
{
    const json_t *md_dir = json_object_get(mx_server_conf()->root, "module_dir");
    const char *dirs[3] = { json_string_value(md_dir), getenv("MXSTACK_MODULE_DIR"), NULL };
    Dl_info info;
    char self[4096] = "";
    if (dladdr((void *)md_thumbnail_start, &info) && info.dli_fname) {
        snprintf(self, sizeof(self), "%s", info.dli_fname);
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            dirs[2] = self;
        }
    }
    snprintf(why, whylen, "%s not found", MD_TN_FILE);
    for (size_t i = 0; i < 3; i++) {
        if (!dirs[i] || !*dirs[i])
            continue;
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dirs[i], MD_TN_FILE);
        if (access(path, R_OK) < 0)
            continue;
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
        snprintf(why, whylen, "dlopen: %s", dlerror());
    }
    return NULL;
}

/* Loads thumbnailer.so and starts libvips on the first thumbnail, not at
 * start-up: libvips and its libraries cost ~15 MB and much of the start-up
 * time, and many servers never make a thumbnail.  Once per process (a
 * failure is not retried: the file is part of the installation); loop
 * thread. */
static int md_tn_ready(void)
{
    if (md->tn_state)
        return md->tn_state;
    char why[512];
    void *h = md_tn_open(why, sizeof(why));
    const md_tn_iface_t *tn = h ? dlsym(h, MD_TN_SYMBOL) : NULL;
    if (h && (!tn || tn->abi != MD_TN_ABI))
        snprintf(why, sizeof(why), "%s: no %s of ABI %d", MD_TN_FILE, MD_TN_SYMBOL, MD_TN_ABI);
    if (tn && tn->abi == MD_TN_ABI && tn->init(why, sizeof(why)) == 0) {
        md->tn = tn;
        md->tn_state = 1;
        return 1;
    }
    mx_log(MD_LOG, MX_LOG_ERROR, "media: thumbnails unavailable: %s", why);
    md->tn_state = -1;
    return -1;
}

/* Synapse's parse_boolean: absent = false. */
static int md_bool_param(mx_req_t *req, const char *name, bool *out)
{
    const char *v = mx_req_query(req, name);
    *out = v && !strcmp(v, "true");
    if (v && !*out && strcmp(v, "false") != 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Boolean query parameter '%s' must be one of "
                     "['true', 'false']", name);
        return -1;
    }
    return 0;
}

static void md_th_start(mx_req_t *req, const hs_user_t *who, void *ud)
{
    if (md_tn_ready() < 0) {
        mx_req_error(req, 500, "M_UNKNOWN", "Thumbnails are unavailable on this server");
        return;
    }
    const char *server = mx_req_param(req, "serverName");
    const char *id = mx_req_param(req, "mediaId");
    int w, h;
    bool animated;
    if (md_int_param(req, "width", &w) < 0 || md_int_param(req, "height", &h) < 0 ||
        md_bool_param(req, "animated", &animated) < 0)
        return;
    const char *method = mx_req_query(req, "method");
    if (!method)
        method = "scale";
    if (strcmp(method, "crop") != 0 && strcmp(method, "scale") != 0) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Query parameter 'method' must be one of "
                     "[crop, scale]");
        return;
    }
    if (!md_is_local(server) || !md_id_ok(id)) {
        md_not_found(req);
        return;
    }
    md_th_t *t = mx_palloc(mx_req_pool(req), sizeof(*t));
    if (!t) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(t, 0, sizeof(*t));
    t->req = req;
    t->authed_path = who != NULL;
    t->animated = animated;
    t->size = md_pick(w, h, !strcmp(method, "crop"));
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT content_type, sha256, quarantined_by, authenticated"
                  " FROM local_media WHERE media_id = ?", "s", id);
    mx_sql_add(b, "SELECT content_type, method FROM media_thumbnails WHERE sha256 ="
                  " (SELECT sha256 FROM local_media WHERE media_id = ?)"
                  " AND req_width = ? AND req_height = ? AND method IN (?, ?)", "siiss", id,
               (int64_t)t->size->w, (int64_t)t->size->h, method,
               t->size->crop ? "crop-anim" : "scale-anim");
    int rc = mx_sql_run(b, md_th_got, t);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "thumbnail");
}

static int md_th_h(mx_req_t *req, void *ud)
{
    if (ud == &md_authed_tag)
        return hs_require_auth_ex(req, true, md_th_start, NULL);
    md_th_start(req, NULL, NULL);
    return MX_ASYNC;
}

int md_thumbnail_start(char *err, size_t errlen)
{
    int rc = md_route("GET", "/thumbnail/{serverName}/{mediaId}", md_th_h, NULL, true,
                      &md_authed_tag, 0);
    if (rc < 0)
        snprintf(err, errlen, "homeserver.media: cannot add thumbnail routes (%d)", rc);
    return rc;
}
