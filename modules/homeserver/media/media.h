/*
 * media.h: the homeserver's media repository — uploads (direct and
 * create + asynchronous), downloads, thumbnails (libvips) and URL previews,
 * under /_matrix/media/{v3,r0,v1} (legacy) and /_matrix/client/v1/media
 * (MSC3916, authenticated).
 *
 * Files live under media_store_path, content-addressed by SHA-256:
 *   content/ab/cd/<sha256hex>                 the uploaded bytes
 *   thumbnails/ab/cd/<sha256hex>-WxH-method   generated thumbnails
 *   tmp/                                      files being written
 * Two uploads of the same bytes share one file.  A file is written to tmp/,
 * fsync'd and renamed into place before the database row that names it is
 * committed.  The part owns the tables local_media, media_thumbnails and
 * media_url_cache (schema "homeserver.media", md_schema.c).
 *
 * The first block is what other parts (the admin API) may call; the rest is
 * shared by this part's files only.  Everything runs on the loop thread
 * except the functions marked "worker", which run in libuv's thread pool
 * and touch no loop state.
 */
#ifndef HS_MEDIA_H
#define HS_MEDIA_H

#include "../hs.h"

#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------ for the other parts --- */

/* Runs the migrations and adds the routes. */
int hs_media_start(char *err, size_t errlen);

/* `status` 0 on success, -ENOENT for an unknown media ID, other negative
 * codes for storage errors. */
typedef void (*hs_media_done_fn)(int status, void *ud);

/* Deletes local media `media_id`: its row, and — when no other media shares
 * the same bytes — its file, its thumbnails and their rows.  `media_id` is
 * copied.  Returns 0 (cb runs later, on the loop) or a negative code (cb
 * will not run). */
int hs_media_delete(const char *media_id, hs_media_done_fn cb, void *ud);

/* Marks local media `media_id` as quarantined by `by_user` (or lifts the
 * quarantine when `by_user` is NULL).  Quarantined media answers 404 on
 * every download and thumbnail path.  Strings copied.  Returns 0 (cb runs
 * later) or a negative code (cb will not run). */
int hs_media_quarantine(const char *media_id, const char *by_user, hs_media_done_fn cb,
                        void *ud);

/* ------------------------------------------------- inside the media part --- */

#define MD_ID_LEN 24
#define MD_LOG "homeserver"

/* Settings, read from the top-level keys Synapse uses (md_schema.c). */
typedef struct md_conf {
    uint64_t max_upload_size;        /* mx_server_conf()->max_upload_size */
    uint64_t max_image_pixels;       /* max_image_pixels, default 32M */
    uint64_t max_spider_size;        /* max_spider_size, default 10M */
    uint64_t unused_expiration_ms;   /* unused_expiration_time, default 24h */
    int64_t max_pending;             /* max_pending_media_uploads, default 5 */
    uint64_t user_max_bytes;         /* media_max_bytes_per_user (mxstack), 0 = none */
    int64_t user_max_files;          /* media_max_files_per_user (mxstack), 0 = none */
    int nlimits;                     /* media_upload_limits (Synapse) */
    struct { uint64_t period_ms, max_bytes; } limits[8];
    bool url_preview_enabled;        /* url_preview_enabled, default false */
    bool authenticated_media;        /* enable_authenticated_media; default false
                                        here, so legacy downloads keep working */
    const char *store_path;          /* media_store_path */
} md_conf_t;

/* The part's state; one instance, set at start. */
typedef struct md_state {
    md_conf_t conf;
    struct md_sha_entry *shas;       /* files being written or deleted (md_store.c) */
    const struct md_tn_iface *tn;    /* thumbnailer.so, once loaded (md_thumbnail.c) */
    int tn_state;                    /* 0 not tried, 1 loaded, -1 unavailable */
} md_state_t;
extern md_state_t *md;

/* True for exactly 24 characters of [A-Za-z0-9]. */
bool md_id_ok(const char *media_id);
/* A new random media ID (MD_ID_LEN + 1 bytes) in `pool`. */
char *md_new_id(mx_pool_t *pool);
/* True when `server_name` is this server. */
bool md_is_local(const char *server_name);
/* "<store>/<kind>/ab/cd/<sha>" (+ `suffix` when not NULL), malloc'd. */
char *md_path(const char *kind, const char *sha, const char *suffix);

/* Adds `suffix` ("/upload" ...) under /_matrix/media/{v3,r0,v1} (resource
 * "media"), and — when `client_v1` — under /_matrix/client/v1/media
 * (resource "client"). `legacy_ud` / `client_ud` go to the handler. */
int md_route(const char *method, const char *suffix, mx_handler_fn fn, void *legacy_ud,
             bool client_v1, void *client_ud, unsigned flags);
/* The route user data that marks the authenticated (MSC3916) paths. */
extern char md_authed_tag;

/* Runs `work` on a worker thread, then `done` on the loop.  Returns 0 or a
 * negative code (nothing will run). */
typedef void (*md_work_fn)(void *ud);
int md_queue(md_work_fn work, md_work_fn done, void *ud);

/* ------------------------------------------------------------ md_store --- */

/* A file being stored.  Filled by the caller: data/len.  Filled by
 * md_store_file: sha256 (hex) and err. */
typedef struct md_put {
    const void *data;                /* borrowed until done runs */
    size_t len;
    char sha256[65];
    int err;                         /* 0 or -errno */
    char *tmp_path;                  /* internal */
    void (*done)(struct md_put *p, void *ud);
    void *ud;
    bool registered;                 /* internal: counted in the sha table */
    struct md_put *next_wait;        /* internal: waiting for an unlink */
} md_put_t;
/* Hashes, writes, fsyncs and renames `p->data` into content/ (off the
 * loop); calls `done` on the loop.  While the caller has not called
 * md_store_release() the file is protected from deletion.  Returns 0 or a
 * negative code (done will not run). */
int md_store_file(md_put_t *p, void (*done)(md_put_t *p, void *ud), void *ud);
/* The second half of md_store_file for a file already written to tmp/ and
 * fsync'd (p->tmp_path malloc'd, p->sha256 and p->done/ud set, p->err 0):
 * counts the hash in and renames the file into content/; `done` runs on
 * the loop (at once when p->err is set). */
void md_store_install(md_put_t *p);
/* Ends the protection md_store_file started (after the row committed or
 * failed). */
void md_store_release(md_put_t *p);

/* ----------------------------------------------------------- md_stream --- */

/* An upload written to disk as it arrives (md_stream.c).  Owned by the
 * caller: md_stream_free once finished (after md_store_release of its put)
 * or aborted — never while a write is in flight (wait for finish's `done`
 * or abort's `gone`). */
typedef struct md_stream md_stream_t;
/* Called on the loop when a paused stream takes data again (err 0), or
 * when a write failed (err < 0: abort the stream and answer 500). */
typedef void (*md_stream_resume_fn)(int err, void *ud);
md_stream_t *md_stream_new(md_stream_resume_fn resume, void *ud);
/* Takes a piece (copied): 0 more, 1 pause the body until `resume`, or a
 * negative code (a write failed). */
int md_stream_write(md_stream_t *s, const char *data, size_t len);
/* Writes the rest, fsyncs, then md_store_install: `done` gets the put
 * (sha256 and err filled); release it with md_store_release. */
void md_stream_finish(md_stream_t *s, void (*done)(md_put_t *p, void *ud), void *ud);
/* Stops: the temp file is removed, then `gone` runs (maybe at once). */
void md_stream_abort(md_stream_t *s, void (*gone)(void *ud), void *ud);
uint64_t md_stream_size(const md_stream_t *s);
md_put_t *md_stream_put(md_stream_t *s);
void md_stream_free(md_stream_t *s);

/* Opens a file for reading off the loop: `fd` (a regular file; the caller
 * may take it and set fd to -1, else md_read_free closes it), `len` its
 * size, `err` 0 or -errno. */
typedef struct md_read {
    char *path;                      /* malloc'd, freed by md_read_free */
    size_t len;
    int fd;
    int err;
    void (*done)(struct md_read *r, void *ud);
    void *ud;
} md_read_t;
int md_open_file(const char *path, void (*done)(md_read_t *r, void *ud), void *ud);
void md_read_free(md_read_t *r);

/* A new file under tmp/ (O_EXCL, random name), open for writing: returns
 * its fd and its malloc'd path in *out, or a negative code; worker. */
int md_tmp_open(char **out);
/* write(2) until all of `data` is written: 0 or -errno; worker. */
int md_write_all(int fd, const void *data, size_t len);

/* Writes `data` as `path` durably (tmp + fsync + rename); worker. */
int md_write_durable(const char *path, const void *data, size_t len);

/* The store of a request's upload: size/limits check, file, row.
 * `media_id` NULL: a new ID; otherwise the pending row created by
 * /create (updated only while still empty).  Replies to `req`. */
void md_upload_store(mx_req_t *req, const hs_user_t *who, const char *media_id);

/* Stores `data` as new local media of `user_id` outside a request (URL
 * preview images).  cb gets the media ID (borrowed) or NULL. */
typedef void (*md_stored_fn)(const char *media_id, void *ud);
int md_store_internal(const char *user_id, const char *content_type, const void *data,
                      size_t len, md_stored_fn cb, void *ud);

/* Width and height from an image's header (PNG, GIF, JPEG, WebP), nothing
 * decoded: 0 or -EINVAL (md_imgsize.c). */
int md_image_size(const void *data, size_t len, unsigned *w, unsigned *h);

/* ------------------------------------------------------ headers, misc --- */

/* Sets Content-Disposition and the safety headers (nosniff, sandbox CSP,
 * CORP, cache) for a media response. */
void md_file_headers(mx_req_t *req, const char *content_type, const char *upload_name);
/* Content-Type with "; charset=UTF-8" added for text types (pool). */
const char *md_reply_type(mx_req_t *req, const char *content_type);
/* The Synapse 404 for media. */
void md_not_found(mx_req_t *req);

/* Part start functions (md_schema.c calls them from hs_media_start). */
int md_upload_start(void);
int md_download_start(void);
int md_thumbnail_start(char *err, size_t errlen);
int md_preview_start(void);

#endif /* HS_MEDIA_H */
