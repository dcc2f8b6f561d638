/*
 * md_schema.c: the media part's tables ("homeserver.media"), its settings
 * (Synapse's top-level keys), its start (migrations, directories,
 * routes of every file) and the helpers its files share: media ID checks,
 * store paths, route registration under the legacy and MSC3916 prefixes,
 * and the worker-thread queue.
 *
 * Tables:
 *   local_media       one row per media ID; size/sha256 NULL while a
 *                     /create'd ID waits for its content
 *   media_thumbnails  generated thumbnails, keyed by the content hash and
 *                     the requested size/method (shared by de-duplicated
 *                     uploads)
 *   media_url_cache   URL preview results, per URL
 */
#include "media.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char md_v1[] =
    "CREATE TABLE local_media (media_id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
    " content_type TEXT, upload_name TEXT, size BIGINT, sha256 TEXT,"
    " created_ts BIGINT NOT NULL, uploaded_ts BIGINT, quarantined_by TEXT,"
    " authenticated INTEGER NOT NULL DEFAULT 0, last_access_ts BIGINT);"
    "CREATE INDEX local_media_user ON local_media(user_id, created_ts);"
    "CREATE INDEX local_media_sha ON local_media(sha256);"
    "CREATE TABLE media_thumbnails (sha256 TEXT NOT NULL, req_width INTEGER NOT NULL,"
    " req_height INTEGER NOT NULL, method TEXT NOT NULL, content_type TEXT NOT NULL,"
    " width INTEGER NOT NULL, height INTEGER NOT NULL, size BIGINT NOT NULL,"
    " created_ts BIGINT NOT NULL, PRIMARY KEY (sha256, req_width, req_height, method));"
    "CREATE TABLE media_url_cache (url TEXT PRIMARY KEY, fetched_ts BIGINT NOT NULL,"
    " og TEXT NOT NULL);";

static const mx_migration_t md_migrations[] = {
    { 1, md_v1, NULL, NULL },
};

static md_state_t md_state;
md_state_t *md;
char md_authed_tag;

/* ------------------------------------------------------------ settings --- */

static int md_conf_load(md_conf_t *c, char *err, size_t errlen)
{
    const mx_server_conf_t *sc = mx_server_conf();
    const json_t *root = sc->root;
    memset(c, 0, sizeof(*c));
    c->max_upload_size = sc->max_upload_size;
    c->store_path = sc->media_store_path;
    struct { const char *key; uint64_t *out; uint64_t def; bool dur; } nums[] = {
        { "max_image_pixels", &c->max_image_pixels, 32ULL << 20, false },
        { "max_spider_size", &c->max_spider_size, 10ULL << 20, false },
        { "unused_expiration_time", &c->unused_expiration_ms, 24ULL * 3600 * 1000, true },
        { "media_max_bytes_per_user", &c->user_max_bytes, 0, false },
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        const json_t *v = json_object_get(root, nums[i].key);
        int rc = nums[i].dur ? mx_conf_duration(v, nums[i].def, nums[i].out)
                             : mx_conf_size(v, nums[i].def, nums[i].out);
        if (rc < 0) {
            snprintf(err, errlen, "%s: expected a %s", nums[i].key,
                     nums[i].dur ? "duration such as 24h" : "size such as 10M");
            return -EINVAL;
        }
    }
    const json_t *v = json_object_get(root, "max_pending_media_uploads");
    c->max_pending = json_is_integer(v) ? json_integer_value(v) : 5;
    v = json_object_get(root, "media_max_files_per_user");
    c->user_max_files = json_is_integer(v) ? json_integer_value(v) : 0;
    c->url_preview_enabled = json_is_true(json_object_get(root, "url_preview_enabled"));
    c->authenticated_media = json_is_true(json_object_get(root, "enable_authenticated_media"));
    const json_t *lims = json_object_get(root, "media_upload_limits");
    if (lims && !json_is_array(lims)) {
        snprintf(err, errlen, "media_upload_limits: expected a list");
        return -EINVAL;
    }
    size_t i;
    const json_t *l;
    json_array_foreach(lims, i, l) {
        uint64_t p = 0, m = 0;
        if (mx_conf_duration(json_object_get(l, "time_period"), 0, &p) < 0 || p == 0 ||
            !json_object_get(l, "max_size") || mx_conf_size(json_object_get(l, "max_size"), 0, &m) < 0 ||
            c->nlimits == 8) {
            snprintf(err, errlen, "media_upload_limits[%zu]: needs time_period and max_size "
                     "(at most 8 entries)", i);
            return -EINVAL;
        }
        c->limits[c->nlimits].period_ms = p;
        c->limits[c->nlimits++].max_bytes = m;
    }
    return 0;
}

/* ------------------------------------------------------------ helpers --- */

bool md_id_ok(const char *id)
{
    if (!id || strlen(id) != MD_ID_LEN)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

char *md_new_id(mx_pool_t *pool)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[MD_ID_LEN];
    char *id = mx_palloc(pool, MD_ID_LEN + 1);
    if (!id)
        return NULL;
    mx_random_bytes(rnd, sizeof(rnd));
    /* 62 symbols: reject bytes >= 248 to stay uniform. */
    for (size_t i = 0; i < MD_ID_LEN; i++) {
        while (rnd[i] >= 248)
            mx_random_bytes(&rnd[i], 1);
        id[i] = alphabet[rnd[i] % 62];
    }
    id[MD_ID_LEN] = '\0';
    return id;
}

bool md_is_local(const char *server_name)
{
    return server_name && strcmp(server_name, hs.server_name) == 0;
}

char *md_path(const char *kind, const char *sha, const char *suffix)
{
    size_t n = strlen(md->conf.store_path) + strlen(kind) + strlen(sha) +
               (suffix ? strlen(suffix) : 0) + 16;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s/%.2s/%.2s/%s%s", md->conf.store_path, kind, sha, sha + 2, sha,
                 suffix ? suffix : "");
    return p;
}

int md_route(const char *method, const char *suffix, mx_handler_fn fn, void *legacy_ud,
             bool client_v1, void *client_ud, unsigned flags)
{
    static const char *const legacy[] = { "/_matrix/media/v3", "/_matrix/media/r0",
                                          "/_matrix/media/v1" };
    char path[256];
    int rc;
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", legacy[i], suffix);
        if ((rc = mx_route_add("media", method, path, fn, legacy_ud, flags)) < 0)
            goto fail;
    }
    if (client_v1) {
        snprintf(path, sizeof(path), "/_matrix/client/v1/media%s", suffix);
        if ((rc = mx_route_add("client", method, path, fn, client_ud, flags)) < 0)
            goto fail;
    }
    return 0;
fail:
    mx_log(MD_LOG, MX_LOG_ERROR, "media: cannot add route %s %s (%d)", method, path, rc);
    return rc;
}

/* ------------------------------------------------------------ workers --- */

typedef struct md_job {
    uv_work_t w;
    md_work_fn work, done;
    void *ud;
} md_job_t;

static void md_job_work(uv_work_t *w)
{
    md_job_t *j = w->data;
    j->work(j->ud);
}

static void md_job_done(uv_work_t *w, int status)
{
    md_job_t *j = w->data;
    (void)status;   /* UV_ECANCELED never happens: we never cancel */
    j->done(j->ud);
    free(j);
}

int md_queue(md_work_fn work, md_work_fn done, void *ud)
{
    md_job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->work = work;
    j->done = done;
    j->ud = ud;
    j->w.data = j;
    int rc = uv_queue_work(mx_loop(), &j->w, md_job_work, md_job_done);
    if (rc < 0)
        free(j);
    return rc;
}

/* -------------------------------------------------------------- start --- */

static int md_mkdirs(const char *base, char *err, size_t errlen)
{
    static const char *const subs[] = { "", "/content", "/thumbnails", "/tmp" };
    char path[4096];
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s%s", base, subs[i]);
        if (mkdir(path, 0750) < 0 && errno != EEXIST) {
            /* The base's parents: create them one by one. */
            int e = errno;
            if (i == 0 && e == ENOENT) {
                for (char *p = path + 1; *p; p++) {
                    if (*p != '/')
                        continue;
                    *p = '\0';
                    if (mkdir(path, 0750) < 0 && errno != EEXIST)
                        break;
                    *p = '/';
                }
                if (mkdir(path, 0750) == 0 || errno == EEXIST)
                    continue;
                e = errno;
            }
            snprintf(err, errlen, "media_store_path: cannot create %s: %s", path, strerror(e));
            return -e;
        }
    }
    return 0;
}

/* Uploads that a crash interrupted leave files in tmp/ that no row names.
 * Remove those not written to for an hour (an upload in progress in another
 * process sharing the store keeps its file fresh). */
static void md_sweep_tmp(const char *base)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tmp", base);
    DIR *d = opendir(dir);
    if (!d)
        return;
    time_t cutoff = time(NULL) - 3600;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode) || st.st_mtime > cutoff)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    if (removed)
        mx_log("media", MX_LOG_INFO, "removed %d stale upload file(s) from %s", removed, dir);
}

int hs_media_start(char *err, size_t errlen)
{
    memset(&md_state, 0, sizeof(md_state));
    md = &md_state;
    int rc = md_conf_load(&md->conf, err, errlen);
    if (rc < 0)
        return rc;
    if ((rc = md_mkdirs(md->conf.store_path, err, errlen)) < 0)
        return rc;
    md_sweep_tmp(md->conf.store_path);
    rc = mx_db_migrate(hs.db, "homeserver.media", md_migrations,
                       sizeof(md_migrations) / sizeof(md_migrations[0]));
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.media: migration failed (%d)", rc);
        return rc;
    }
    if ((rc = md_thumbnail_start(err, errlen)) < 0)
        return rc;
    if ((rc = md_upload_start()) < 0 || (rc = md_download_start()) < 0 ||
        (rc = md_preview_start()) < 0) {
        snprintf(err, errlen, "homeserver.media: cannot add routes (%d)", rc);
        return rc;
    }
    return 0;
}
