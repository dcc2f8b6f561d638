/*
 * md_upload.c: getting media in — POST /upload (new media ID), POST
 * /_matrix/media/v1/create (reserve an ID for a later upload) and PUT
 * /upload/{serverName}/{mediaId} (fill a reserved ID once), plus /config.
 *
 * Order of an upload: auth → name and type checks → one read for the
 * user's quotas (and the reserved row), checked against Content-Length →
 * the body, streamed to a temp file while hashing (md_stream.c; the routes
 * are MX_ROUTE_STREAM_BODY, so the core never buffers it and answers 413
 * past max_upload_size) → quotas checked again with the real size → fsync,
 * rename into content/ → one write for the row → reply.  A failed write
 * leaves at most a content file no row names (a later sweep's business),
 * never a row without its file; a client that leaves mid-upload leaves
 * nothing.
 */
#include "media.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct md_up {
    mx_req_t *req;
    const char *user_id;
    const char *media_id;     /* pool */
    bool is_new;
    const char *body;
    size_t len;
    const char *content_type;
    const char *upload_name;  /* NULL when none */
    md_put_t put;             /* md_store_internal's file */
    md_put_t *putp;           /* &put, or the stream's */
    md_stream_t *st;          /* the request's body; freed with the pool */
    uint64_t q_bytes;         /* the user's bytes so far */
    int64_t q_files;
    uint64_t q_lim[8];        /* per media_upload_limits period */
    bool over_quota;          /* why the stream was aborted */
    /* internal store (no request) */
    md_stored_fn icb;
    void *iud;
    mx_pool_t *ipool;
} md_up_t;

static bool md_utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2
              : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0 || (n == 1 && *p < 0xc2))
            return false;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xc0) != 0x80)
                return false;
    }
    return true;
}

static void md_up_reply_error(md_up_t *u, int status, const char *code, const char *msg)
{
    if (u->req) {
        mx_req_error(u->req, status, code, "%s", msg);
        return;
    }
    mx_log(MD_LOG, MX_LOG_WARN, "media: internal store failed: %s", msg);
    u->icb(NULL, u->iud);
    mx_pool_free(u->ipool);
}

/* ------------------------------------------------------- the row write --- */

static void md_up_written(int status, mx_sql_res_t *res, void *ud)
{
    md_up_t *u = ud;
    md_store_release(u->putp);
    if (status == 0 && !u->is_new && mx_sql_changes(res, 0) == 0) {
        md_up_reply_error(u, 409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content");
        return;
    }
    if (status < 0) {
        if (u->req)
            hs_reply_storage_error(u->req, status, "media upload");
        else
            md_up_reply_error(u, 500, "M_UNKNOWN", "storage error");
        return;
    }
    if (!u->req) {
        u->icb(u->media_id, u->iud);
        mx_pool_free(u->ipool);
        return;
    }
    if (!u->is_new) {
        mx_req_reply_json(u->req, 200, json_object());
        return;
    }
    char *uri = mx_psprintf(mx_req_pool(u->req), "mxc://%s/%s", hs.server_name, u->media_id);
    mx_req_reply_json(u->req, 200, json_pack("{s:s}", "content_uri", uri ? uri : ""));
}

static void md_up_stored(md_put_t *p, void *ud)
{
    md_up_t *u = ud;
    if (p->err) {
        md_store_release(p);
        mx_log(MD_LOG, MX_LOG_ERROR, "media: cannot store upload: %s", strerror(-p->err));
        md_up_reply_error(u, 500, "M_UNKNOWN", "Cannot store the file");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        md_store_release(p);
        md_up_reply_error(u, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    int64_t now = (int64_t)mx_now_ms();
    if (u->is_new)
        mx_sql_add(b, "INSERT INTO local_media (media_id, user_id, content_type, upload_name,"
                      " size, sha256, created_ts, uploaded_ts, authenticated)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", "ssssisiii",
                   u->media_id, u->user_id, u->content_type, u->upload_name, (int64_t)u->len,
                   p->sha256, now, now, (int64_t)md->conf.authenticated_media);
    else
        mx_sql_add(b, "UPDATE local_media SET content_type = ?, upload_name = ?, size = ?,"
                      " sha256 = ?, uploaded_ts = ? WHERE media_id = ? AND size IS NULL",
                   "ssisis", u->content_type, u->upload_name, (int64_t)u->len, p->sha256, now,
                   u->media_id);
    if (mx_sql_run(b, md_up_written, u) < 0) {
        md_store_release(p);
        md_up_reply_error(u, 500, "M_UNKNOWN", "storage error");
    }
}

/* --------------------------------------------------------- the stream --- */

static void md_up_stream_free(void *arg)
{
    md_stream_free(arg);
}

/* After a failed or refused stream: the temp file is gone, answer. */
static void md_up_gone(void *ud)
{
    md_up_t *u = ud;
    if (u->over_quota)
        mx_req_error(u->req, 400, "M_RESOURCE_LIMIT_EXCEEDED", "Media upload limit exceeded");
    else
        mx_req_error(u->req, 500, "M_UNKNOWN", "Cannot store the file");
}

static bool md_up_over(const md_up_t *u, uint64_t len)
{
    if (md->conf.user_max_bytes && u->q_bytes + len > md->conf.user_max_bytes)
        return true;
    if (md->conf.user_max_files && u->is_new && u->q_files + 1 > md->conf.user_max_files)
        return true;
    for (int i = 0; i < md->conf.nlimits; i++)
        if (u->q_lim[i] + len > md->conf.limits[i].max_bytes)
            return true;
    return false;
}

static void md_up_fail(md_up_t *u, bool over_quota)
{
    u->over_quota = over_quota;
    md_stream_abort(u->st, md_up_gone, u);
}

static void md_up_resume(int err, void *ud)
{
    md_up_t *u = ud;
    if (err < 0) {
        mx_log(MD_LOG, MX_LOG_ERROR, "media: cannot write upload: %s", strerror(-err));
        md_up_fail(u, false);
        return;
    }
    mx_req_body_resume(u->req);
}

static int md_up_chunk(mx_req_t *req, const char *data, size_t len, void *ud)
{
    md_up_t *u = ud;
    int rc = md_stream_write(u->st, data, len);
    if (rc < 0) {
        mx_log(MD_LOG, MX_LOG_ERROR, "media: cannot write upload: %s", strerror(-rc));
        md_up_fail(u, false);
    }
    return rc;
}

/* The client-gone path needs only the temp file removed and the request
 * freed. */
static void md_up_dropped(void *ud)
{
    md_up_t *u = ud;
    mx_req_error(u->req, 400, "M_UNKNOWN", "Upload did not complete");
}

static void md_up_end(mx_req_t *req, int status, void *ud)
{
    md_up_t *u = ud;
    if (status < 0) {
        mx_log(MD_LOG, MX_LOG_INFO, "media: upload of %s by %s not completed (%s)", u->media_id,
               u->user_id, status == MX_ETOOBIG ? "too large" : "client gone");
        md_stream_abort(u->st, md_up_dropped, u);
        return;
    }
    u->len = md_stream_size(u->st);
    if (md_up_over(u, u->len)) {
        md_up_fail(u, true);
        return;
    }
    u->putp = md_stream_put(u->st);
    md_stream_finish(u->st, md_up_stored, u);
}

/* ---------------------------------------------------------- the checks --- */

static void md_up_checked(int status, mx_sql_res_t *res, void *ud)
{
    md_up_t *u = ud;
    if (status < 0) {
        hs_reply_storage_error(u->req, status, "media quota");
        return;
    }
    int st = 0;
    if (!u->is_new) {
        if (mx_sql_nrows(res, st) == 0) {
            mx_req_error(u->req, 404, "M_NOT_FOUND", "Unknown media ID");
            return;
        }
        if (strcmp(mx_sql_text(res, st, 0, 0), u->user_id) != 0) {
            mx_req_error(u->req, 403, "M_FORBIDDEN",
                         "Only the creator of the media ID can upload to it");
            return;
        }
        if (!mx_sql_is_null(res, st, 0, 1)) {
            mx_req_error(u->req, 409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content");
            return;
        }
        if ((uint64_t)mx_sql_int(res, st, 0, 2) + md->conf.unused_expiration_ms < mx_now_ms()) {
            mx_req_error(u->req, 404, "M_NOT_FOUND", "Media ID has expired");
            return;
        }
        st++;
    }
    u->q_bytes = (uint64_t)mx_sql_int(res, st, 0, 0);
    u->q_files = mx_sql_int(res, st, 0, 1);
    st++;
    for (int i = 0; i < md->conf.nlimits; i++, st++)
        u->q_lim[i] = (uint64_t)mx_sql_int(res, st, 0, 0);
    if (md_up_over(u, u->len)) {   /* the declared length */
        mx_req_error(u->req, 400, "M_RESOURCE_LIMIT_EXCEEDED", "Media upload limit exceeded");
        return;
    }
    u->st = md_stream_new(md_up_resume, u);
    if (!u->st || mx_pool_on_free(mx_req_pool(u->req), md_up_stream_free, u->st) < 0) {
        md_stream_free(u->st);
        mx_req_error(u->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    if (mx_req_body_stream(u->req, md_up_chunk, md_up_end, u) < 0)
        md_up_fail(u, false);
}

void md_upload_store(mx_req_t *req, const hs_user_t *who, const char *media_id)
{
    mx_pool_t *pool = mx_req_pool(req);
    md_up_t *u = mx_palloc(pool, sizeof(*u));
    if (!u) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(u, 0, sizeof(*u));
    u->req = req;
    u->user_id = mx_pstrdup(pool, who->user_id);
    const char *cl = mx_req_header(req, "Content-Length");
    u->len = cl ? strtoull(cl, NULL, 10) : 0;   /* the core has checked it */
    const char *name = mx_req_query(req, "filename");
    if (name && *name) {
        if (!md_utf8_ok(name) || strlen(name) > 1024 || strpbrk(name, "\r\n")) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid filename parameter");
            return;
        }
        u->upload_name = name;
    }
    const char *ct = mx_req_header(req, "Content-Type");
    if (!ct || !*ct)
        ct = "application/octet-stream";
    for (const char *p = ct; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f || strlen(ct) > 255) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid Content-Type");
            return;
        }
    }
    u->content_type = ct;
    u->is_new = media_id == NULL;
    u->media_id = media_id ? mx_pstrdup(pool, media_id) : md_new_id(pool);
    if (!u->media_id || !u->user_id) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    if (!u->is_new)
        mx_sql_add(b, "SELECT user_id, size, created_ts FROM local_media WHERE media_id = ?",
                   "s", u->media_id);
    mx_sql_add(b, "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM local_media WHERE user_id = ?",
               "s", u->user_id);
    int64_t now = (int64_t)mx_now_ms();
    for (int i = 0; i < md->conf.nlimits; i++)
        mx_sql_add(b, "SELECT COALESCE(SUM(size), 0) FROM local_media"
                      " WHERE user_id = ? AND created_ts > ?", "si", u->user_id,
                   now - (int64_t)md->conf.limits[i].period_ms);
    int rc = mx_sql_run(b, md_up_checked, u);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "media quota");
}

int md_store_internal(const char *user_id, const char *content_type, const void *data,
                      size_t len, md_stored_fn cb, void *ud)
{
    mx_pool_t *pool = mx_pool_new();
    md_up_t *u = pool ? mx_palloc(pool, sizeof(*u)) : NULL;
    void *copy = u ? mx_palloc(pool, len ? len : 1) : NULL;
    if (!copy) {
        if (pool)
            mx_pool_free(pool);
        return -ENOMEM;
    }
    memset(u, 0, sizeof(*u));
    memcpy(copy, data, len);
    u->ipool = pool;
    u->icb = cb;
    u->iud = ud;
    u->user_id = mx_pstrdup(pool, user_id);
    u->content_type = mx_pstrdup(pool, content_type);
    u->media_id = md_new_id(pool);
    u->is_new = true;
    u->body = copy;
    u->len = len;
    if (!u->user_id || !u->content_type || !u->media_id) {
        mx_pool_free(pool);
        return -ENOMEM;
    }
    u->put.data = u->body;
    u->put.len = len;
    u->putp = &u->put;
    int rc = md_store_file(&u->put, md_up_stored, u);
    if (rc < 0)
        mx_pool_free(pool);
    return rc;
}

/* ------------------------------------------------------------ handlers --- */

static void md_upload_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    md_upload_store(req, who, NULL);
}

static int md_upload_h(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, md_upload_authed, NULL);
}

static void md_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    const char *server = mx_req_param(req, "serverName");
    const char *id = mx_req_param(req, "mediaId");
    if (!md_is_local(server)) {
        mx_req_error(req, 404, "M_NOT_FOUND", "Non-local server name specified");
        return;
    }
    if (!md_id_ok(id)) {
        mx_req_error(req, 404, "M_NOT_FOUND", "Unknown media ID");
        return;
    }
    md_upload_store(req, who, id);
}

static int md_put_h(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, md_put_authed, NULL);
}

/* POST /create */
typedef struct md_cr {
    mx_req_t *req;
    const char *user_id;
    const char *media_id;
    int64_t now;
} md_cr_t;

static void md_create_written(int status, mx_sql_res_t *res, void *ud)
{
    md_cr_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "media create");
        return;
    }
    char *uri = mx_psprintf(mx_req_pool(c->req), "mxc://%s/%s", hs.server_name, c->media_id);
    mx_req_reply_json(c->req, 200, json_pack("{s:s, s:I}", "content_uri", uri ? uri : "",
                                             "unused_expires_at",
                                             (json_int_t)(c->now + (int64_t)md->conf.unused_expiration_ms)));
}

static void md_create_counted(int status, mx_sql_res_t *res, void *ud)
{
    md_cr_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "media create");
        return;
    }
    int64_t pending = mx_sql_int(res, 0, 0, 0);
    if (pending >= md->conf.max_pending) {
        int64_t retry = mx_sql_int(res, 0, 0, 1) + (int64_t)md->conf.unused_expiration_ms - c->now;
        json_t *e = json_pack("{s:s, s:s, s:I}", "errcode", "M_LIMIT_EXCEEDED", "error",
                              "Too many pending media uploads", "retry_after_ms",
                              (json_int_t)(retry > 0 ? retry : 0));
        mx_req_reply_json(c->req, 429, e);
        return;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(c->req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "INSERT INTO local_media (media_id, user_id, created_ts, authenticated)"
                  " VALUES (?, ?, ?, ?)", "ssii", c->media_id, c->user_id, c->now,
               (int64_t)md->conf.authenticated_media);
    int rc = mx_sql_run(b, md_create_written, c);
    if (rc < 0)
        hs_reply_storage_error(c->req, rc, "media create");
}

static void md_create_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    mx_pool_t *pool = mx_req_pool(req);
    md_cr_t *c = mx_palloc(pool, sizeof(*c));
    if (!c || !(c->user_id = mx_pstrdup(pool, who->user_id)) || !(c->media_id = md_new_id(pool))) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    c->req = req;
    c->now = (int64_t)mx_now_ms();
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT COUNT(*), COALESCE(MIN(created_ts), 0) FROM local_media"
                  " WHERE user_id = ? AND size IS NULL AND created_ts > ?", "si", c->user_id,
               c->now - (int64_t)md->conf.unused_expiration_ms);
    int rc = mx_sql_run(b, md_create_counted, c);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "media create");
}

static int md_create_h(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, md_create_authed, NULL);
}

/* GET /config */
static void md_config_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    mx_req_reply_json(req, 200, json_pack("{s:I}", "m.upload.size",
                                          (json_int_t)md->conf.max_upload_size));
}

static int md_config_h(mx_req_t *req, void *ud)
{
    return hs_require_auth_ex(req, true, md_config_authed, NULL);
}

int md_upload_start(void)
{
    static const char *const up[] = { "/_matrix/media/v3/upload", "/_matrix/media/r0/upload",
                                      "/_matrix/media/v1/upload" };
    int rc;
    for (size_t i = 0; i < 3; i++)
        if ((rc = mx_route_add("media", "POST", up[i], md_upload_h, NULL, MX_ROUTE_STREAM_BODY)) < 0)
            return rc;
    if ((rc = mx_route_add("media", "PUT", "/_matrix/media/v3/upload/{serverName}/{mediaId}",
                           md_put_h, NULL, MX_ROUTE_STREAM_BODY)) < 0 ||
        (rc = mx_route_add("media", "POST", "/_matrix/media/v1/create", md_create_h, NULL, 0)) < 0)
        return rc;
    return md_route("GET", "/config", md_config_h, NULL, true, &md_authed_tag, 0);
}
