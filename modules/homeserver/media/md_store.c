/*
 * md_store.c: media files on disk — durable writes (tmp file, fsync,
 * rename, fsync of the directory), file opens off the loop, and the
 * admin API's deletion and quarantine hooks.
 *
 * Content is shared between media IDs with the same bytes, so deleting one
 * ID may remove the file only when no row names its hash any more and no
 * upload of the same bytes is on its way.  The loop keeps a small table of
 * hashes in flight (md_sha_entry): an upload counts itself in before it
 * renames its file into place and out once its row is written (or failed);
 * a deletion marks the hash while it checks, and any upload that comes and
 * goes meanwhile ("touched") makes it keep the file.  An upload that
 * arrives while the file is being unlinked waits for the unlink to finish
 * and then renames its own copy into place.
 */
#include "media.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct md_sha_entry {
    struct md_sha_entry *next;
    char sha[65];
    int inflight;          /* uploads between rename and row */
    int deleting;          /* deletions deciding */
    bool touched;          /* an upload finished while deleting > 0 */
    bool unlinking;        /* the files are being removed */
    md_put_t *waiters;     /* uploads waiting for the unlink */
} md_sha_entry_t;

static md_sha_entry_t *md_sha_get(const char *sha, bool create)
{
    for (md_sha_entry_t *e = md->shas; e; e = e->next)
        if (!strcmp(e->sha, sha))
            return e;
    if (!create)
        return NULL;
    md_sha_entry_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    snprintf(e->sha, sizeof(e->sha), "%s", sha);
    e->next = md->shas;
    md->shas = e;
    return e;
}

static void md_sha_maybe_free(md_sha_entry_t *e)
{
    if (e->inflight || e->deleting || e->unlinking || e->waiters)
        return;
    for (md_sha_entry_t **pp = &md->shas; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            free(e);
            return;
        }
    }
}

/* ------------------------------------------------------ file helpers --- */

static int md_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* mkdir of ".../ab" and ".../ab/cd" for a path ".../ab/cd/file". */
static int md_mkparents(const char *path)
{
    char *a = strdup(path);
    if (!a)
        return -ENOMEM;
    char *slash = strrchr(a, '/');
    int rc = 0;
    if (slash) {
        *slash = '\0';
        char *s2 = strrchr(a, '/');
        if (s2) {
            *s2 = '\0';
            if (mkdir(a, 0750) < 0 && errno != EEXIST)
                rc = -errno;
            *s2 = '/';
        }
        if (!rc && mkdir(a, 0750) < 0 && errno != EEXIST)
            rc = -errno;
    }
    free(a);
    return rc;
}

int md_tmp_open(char **out)
{
    unsigned char r[12];
    randombytes_buf(r, sizeof(r));
    size_t n = strlen(md->conf.store_path) + 64;
    char *path = malloc(n);
    if (!path)
        return -ENOMEM;
    snprintf(path, n, "%s/tmp/%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x",
             md->conf.store_path, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
             r[10], r[11]);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = -errno;
        free(path);
        return e;
    }
    *out = path;
    return fd;
}

int md_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* A new file under tmp/ holding `data`, fsync'd; its path in *out. */
static int md_write_tmp(const void *data, size_t len, char **out)
{
    char *path = NULL;
    int fd = md_tmp_open(&path);
    if (fd < 0)
        return fd;
    int rc = md_write_all(fd, data, len);
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    if (rc) {
        unlink(path);
        free(path);
        return rc;
    }
    *out = path;
    return 0;
}

/* Renames `tmp` to `path` and makes the rename durable. */
static int md_install(const char *tmp, const char *path)
{
    int rc = md_mkparents(path);
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    char *d = strdup(path);
    if (!d)
        return -ENOMEM;
    rc = md_fsync_dir(dirname(d));
    free(d);
    return rc;
}

int md_write_durable(const char *path, const void *data, size_t len)
{
    char *tmp = NULL;
    int rc = md_write_tmp(data, len, &tmp);
    if (rc)
        return rc;
    rc = md_install(tmp, path);
    free(tmp);
    return rc;
}

/* --------------------------------------------------------- store file --- */

static void md_put_hash_work(void *ud)
{
    md_put_t *p = ud;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, p->data, p->len);
    sodium_bin2hex(p->sha256, sizeof(p->sha256), h, sizeof(h));
    p->err = md_write_tmp(p->data, p->len, &p->tmp_path);
}

static void md_put_install_work(void *ud)
{
    md_put_t *p = ud;
    char *path = md_path("content", p->sha256, NULL);
    p->err = path ? md_install(p->tmp_path, path) : -ENOMEM;
    free(path);
    free(p->tmp_path);
    p->tmp_path = NULL;
}

static void md_put_installed(void *ud)
{
    md_put_t *p = ud;
    p->done(p, p->ud);
}

static void md_put_install(md_put_t *p)
{
    int rc = md_queue(md_put_install_work, md_put_installed, p);
    if (rc < 0) {
        unlink(p->tmp_path);
        free(p->tmp_path);
        p->tmp_path = NULL;
        p->err = rc;
        p->done(p, p->ud);
    }
}

void md_store_install(md_put_t *p)
{
    if (p->err) {
        p->done(p, p->ud);
        return;
    }
    md_sha_entry_t *e = md_sha_get(p->sha256, true);
    if (!e) {
        unlink(p->tmp_path);
        free(p->tmp_path);
        p->tmp_path = NULL;
        p->err = -ENOMEM;
        p->done(p, p->ud);
        return;
    }
    e->inflight++;
    p->registered = true;
    if (e->unlinking) {
        p->next_wait = e->waiters;
        e->waiters = p;
        return;
    }
    md_put_install(p);
}

static void md_put_hashed(void *ud)
{
    md_store_install(ud);
}

int md_store_file(md_put_t *p, void (*done)(md_put_t *p, void *ud), void *ud)
{
    p->done = done;
    p->ud = ud;
    p->err = 0;
    p->tmp_path = NULL;
    p->registered = false;
    p->sha256[0] = '\0';
    return md_queue(md_put_hash_work, md_put_hashed, p);
}

void md_store_release(md_put_t *p)
{
    if (!p->registered)
        return;
    p->registered = false;
    md_sha_entry_t *e = md_sha_get(p->sha256, false);
    if (!e)
        return;
    e->inflight--;
    if (e->deleting)
        e->touched = true;
    md_sha_maybe_free(e);
}

/* ----------------------------------------------------------- open file --- */

static void md_read_work(void *ud)
{
    md_read_t *r = ud;
    int fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r->err = -errno;
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        r->err = -EIO;
        close(fd);
        return;
    }
    r->fd = fd;
    r->len = (size_t)st.st_size;
}

static void md_read_done(void *ud)
{
    md_read_t *r = ud;
    r->done(r, r->ud);
}

int md_open_file(const char *path, void (*done)(md_read_t *r, void *ud), void *ud)
{
    md_read_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->fd = -1;
    r->path = strdup(path);
    r->done = done;
    r->ud = ud;
    int rc = r->path ? md_queue(md_read_work, md_read_done, r) : -ENOMEM;
    if (rc < 0) {
        free(r->path);
        free(r);
    }
    return rc;
}

void md_read_free(md_read_t *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->path);
    free(r);
}

/* ------------------------------------------------------------- delete --- */

typedef struct md_del {
    mx_pool_t *pool;
    char *media_id;
    char *sha;
    md_sha_entry_t *entry;
    hs_media_done_fn cb;
    void *ud;
} md_del_t;

static void md_del_finish(md_del_t *d, int status)
{
    if (d->entry) {
        md_sha_entry_t *e = d->entry;
        e->unlinking = false;
        if (--e->deleting == 0)
            e->touched = false;
        md_put_t *w = e->waiters;
        e->waiters = NULL;
        while (w) {
            md_put_t *next = w->next_wait;
            md_put_install(w);
            w = next;
        }
        md_sha_maybe_free(e);
    }
    d->cb(status, d->ud);
    mx_pool_free(d->pool);
}

/* Removes content/<sha> and thumbnails/<sha>-* (worker). */
static void md_unlink_work(void *ud)
{
    md_del_t *d = ud;
    char *path = md_path("content", d->sha, NULL);
    if (path)
        unlink(path);
    free(path);
    char *tp = md_path("thumbnails", d->sha, NULL);
    if (!tp)
        return;
    char *slash = strrchr(tp, '/');
    *slash = '\0';
    DIR *dir = opendir(tp);
    size_t shalen = strlen(d->sha);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        if (!strncmp(de->d_name, d->sha, shalen) && de->d_name[shalen] == '-') {
            char full[4096];
            snprintf(full, sizeof(full), "%s/%s", tp, de->d_name);
            unlink(full);
        }
    }
    if (dir)
        closedir(dir);
    free(tp);
}

static void md_del_thumbs_gone(int status, mx_sql_res_t *res, void *ud)
{
    md_del_finish(ud, 0);
}

static void md_unlinked(void *ud)
{
    md_del_t *d = ud;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        md_del_finish(d, 0);
        return;
    }
    mx_sql_add(b, "DELETE FROM media_thumbnails WHERE sha256 = ?", "s", d->sha);
    if (mx_sql_run(b, md_del_thumbs_gone, d) < 0)
        md_del_finish(d, 0);
}

static void md_del_counted(int status, mx_sql_res_t *res, void *ud)
{
    md_del_t *d = ud;
    md_sha_entry_t *e = d->entry;
    if (status < 0 || mx_sql_int(res, 0, 0, 0) != 0 || e->inflight || e->touched ||
        e->unlinking) {
        md_del_finish(d, 0);
        return;
    }
    e->unlinking = true;
    if (md_queue(md_unlink_work, md_unlinked, d) < 0)
        md_del_finish(d, 0);
}

static void md_del_written(int status, mx_sql_res_t *res, void *ud)
{
    md_del_t *d = ud;
    if (status < 0) {
        md_del_finish(d, status);
        return;
    }
    if (!d->entry) {
        md_del_finish(d, 0);
        return;
    }
    /* Every write submitted before ours has completed by now, so this
     * count sees their rows. */
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        md_del_finish(d, 0);
        return;
    }
    mx_sql_add(b, "SELECT COUNT(*) FROM local_media WHERE sha256 = ?", "s", d->sha);
    if (mx_sql_run(b, md_del_counted, d) < 0)
        md_del_finish(d, 0);
}

static void md_del_got(int status, mx_sql_res_t *res, void *ud)
{
    md_del_t *d = ud;
    if (status < 0) {
        md_del_finish(d, status);
        return;
    }
    if (mx_sql_nrows(res, 0) == 0) {
        md_del_finish(d, -ENOENT);
        return;
    }
    if (!mx_sql_is_null(res, 0, 0, 0)) {
        d->sha = mx_pstrdup(d->pool, mx_sql_text(res, 0, 0, 0));
        d->entry = d->sha ? md_sha_get(d->sha, true) : NULL;
        if (!d->entry) {
            md_del_finish(d, -ENOMEM);
            return;
        }
        d->entry->deleting++;
    }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        md_del_finish(d, -ENOMEM);
        return;
    }
    mx_sql_add(b, "DELETE FROM local_media WHERE media_id = ?", "s", d->media_id);
    int rc = mx_sql_run(b, md_del_written, d);
    if (rc < 0)
        md_del_finish(d, rc);
}

int hs_media_delete(const char *media_id, hs_media_done_fn cb, void *ud)
{
    if (!md || !cb)
        return -EINVAL;
    if (!md_id_ok(media_id))
        return -ENOENT;
    mx_pool_t *pool = mx_pool_new();
    md_del_t *d = pool ? mx_palloc(pool, sizeof(*d)) : NULL;
    mx_sql_batch_t *b = d ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        if (pool)
            mx_pool_free(pool);
        return -ENOMEM;
    }
    memset(d, 0, sizeof(*d));
    d->pool = pool;
    d->media_id = mx_pstrdup(pool, media_id);
    d->cb = cb;
    d->ud = ud;
    mx_sql_add(b, "SELECT sha256 FROM local_media WHERE media_id = ?", "s", media_id);
    int rc = mx_sql_run(b, md_del_got, d);
    if (rc < 0)
        mx_pool_free(pool);
    return rc;
}

/* --------------------------------------------------------- quarantine --- */

typedef struct md_q {
    hs_media_done_fn cb;
    void *ud;
} md_q_t;

static void md_q_done(int status, mx_sql_res_t *res, void *ud)
{
    md_q_t *q = ud;
    if (status == 0 && mx_sql_changes(res, 0) == 0)
        status = -ENOENT;
    q->cb(status, q->ud);
    free(q);
}

int hs_media_quarantine(const char *media_id, const char *by_user, hs_media_done_fn cb,
                        void *ud)
{
    if (!md || !cb)
        return -EINVAL;
    if (!md_id_ok(media_id))
        return -ENOENT;
    md_q_t *q = malloc(sizeof(*q));
    mx_sql_batch_t *b = q ? mx_sql_batch_new(hs.db, MX_SQL_WRITE) : NULL;
    if (!b) {
        free(q);
        return -ENOMEM;
    }
    q->cb = cb;
    q->ud = ud;
    mx_sql_add(b, "UPDATE local_media SET quarantined_by = ? WHERE media_id = ?", "ss", by_user,
               media_id);
    int rc = mx_sql_run(b, md_q_done, q);
    if (rc < 0)
        free(q);
    return rc;
}
