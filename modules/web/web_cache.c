/*
 * web_cache.c: what the web module learnt about the files of a root, kept
 * for a second (as nginx's open_file_cache does, with a shorter validity):
 * the open descriptor, its stat, the ETag and Last-Modified strings, and
 * for small files the content itself and its header lines ready-made
 * (web_pre_t, built by web_static.c); misses (a .br/.gz sibling that is not
 * there, an SPA route) are kept too.  A request for a known file then costs
 * no open/fstat/close, and a small file leaves with its whole response in
 * one write.
 *
 * Validity: an entry older than WEB_CACHE_TTL_MS, or looked up under a root
 * re-opened since (new release unpacked), is checked again: the name is
 * opened anew and compared (device, inode, size, mtime, ctime); a changed
 * file replaces the entry.  A file replaced by rename keeps being served
 * from its old, consistent descriptor until then.
 *
 * Bounds: at most WEB_CACHE_MAX entries, WEB_CACHE_MAX_FDS descriptors and
 * WEB_CACHE_MAX_BYTES of content; beyond them web_cache_trim() (called
 * before each request, never in the middle of one, so entries a request
 * holds stay valid) empties the cache.  Loop thread only.
 */
#include "web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WEB_CACHE_TTL_MS 1000
#define WEB_CACHE_BUCKETS 512
#define WEB_CACHE_MAX 2048
#define WEB_CACHE_MAX_FDS 128
#define WEB_CACHE_SMALL (32 * 1024)           /* content kept up to this size */
#define WEB_CACHE_MAX_BYTES (8 * 1024 * 1024) /* all content kept */

struct web_cache {
    web_file_t *buckets[WEB_CACHE_BUCKETS];
    size_t count, fds, bytes;
};

static uint32_t hash(const web_root_t *root, const char *rel)
{
    uint32_t h = 2166136261u ^ (uint32_t)(uintptr_t)root;
    for (const unsigned char *p = (const unsigned char *)rel; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % WEB_CACHE_BUCKETS;
}

/* Drops what the entry holds (descriptor, content, prepared headers). */
static void release(struct web_cache *c, web_file_t *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        c->fds--;
    }
    if (f->body) {
        c->bytes -= f->len;
        free(f->body);
    }
    for (size_t i = 0; i < sizeof(f->pre) / sizeof(*f->pre); i++)
        free(f->pre[i].hdrs);
    memset(f->pre, 0, sizeof(f->pre));
    f->fd = -1;
    f->body = NULL;
    f->len = 0;
}

void web_cache_clear(void)
{
    struct web_cache *c = web.cache;
    if (!c)
        return;
    for (size_t i = 0; i < WEB_CACHE_BUCKETS; i++) {
        web_file_t *f = c->buckets[i];
        while (f) {
            web_file_t *next = f->next;
            release(c, f);
            free(f);
            f = next;
        }
        c->buckets[i] = NULL;
    }
    c->count = c->fds = c->bytes = 0;
}

void web_cache_free(void)
{
    web_cache_clear();
    free(web.cache);
    web.cache = NULL;
}

void web_cache_trim(void)
{
    struct web_cache *c = web.cache;
    if (c && (c->count > WEB_CACHE_MAX || c->fds > WEB_CACHE_MAX_FDS ||
              c->bytes > WEB_CACHE_MAX_BYTES))
        web_cache_clear();
}

static void http_date(time_t t, char *buf, size_t cap)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads the whole (small) file at `fd` into f->body; 0 or -errno. */
static int load_body(struct web_cache *c, web_file_t *f, int fd)
{
    size_t len = (size_t)f->st.st_size, got = 0;
    char *b = malloc(len ? len : 1);
    if (!b)
        return -ENOMEM;
    while (got < len) {
        ssize_t n = pread(fd, b + got, len - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(b);
            return n < 0 ? -errno : -EIO;
        }
        got += (size_t)n;
    }
    f->body = b;
    f->len = len;
    c->bytes += len;
    return 0;
}

/* (Re)fills `f` from a fresh open of its name. */
static void fill(struct web_cache *c, web_file_t *f, const web_root_t *root)
{
    f->checked_ms = mx_now_ms();
    f->gen = root->gen;
    int fd = web_open_beneath(root, f->rel);
    struct stat st;
    int err = 0;
    if (fd < 0)
        err = fd == -ENOTDIR ? -ENOENT : fd;
    else if (fstat(fd, &st) < 0)
        err = -errno;
    else if (S_ISDIR(st.st_mode))
        err = -EISDIR;
    else if (!S_ISREG(st.st_mode))
        err = -EACCES;
    if (!err && !f->err && (f->fd >= 0 || f->body) && same_file(&st, &f->st)) {
        close(fd);   /* unchanged: keep what we have */
        return;
    }
    release(c, f);
    f->err = err;
    if (err) {
        if (fd >= 0)
            close(fd);
        return;
    }
    f->st = st;
    snprintf(f->etag, sizeof(f->etag), "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec);
    http_date(st.st_mtim.tv_sec, f->lm, sizeof(f->lm));
    if (st.st_size <= WEB_CACHE_SMALL && load_body(c, f, fd) == 0) {
        close(fd);
        return;
    }
    f->fd = fd;
    c->fds++;
}

int web_cache_get(const web_root_t *root, const char *rel, web_file_t **out)
{
    if (root->fd < 0)
        return -ENOENT;
    if (!web.cache && !(web.cache = calloc(1, sizeof(*web.cache))))
        return -ENOMEM;
    struct web_cache *c = web.cache;
    uint32_t h = hash(root, rel);
    web_file_t *f = c->buckets[h];
    while (f && (f->root != root || strcmp(f->rel, rel)))
        f = f->next;
    if (!f) {
        size_t n = strlen(rel);
        if (!(f = calloc(1, sizeof(*f) + n + 1)))
            return -ENOMEM;
        f->rel = (char *)(f + 1);
        memcpy(f->rel, rel, n + 1);
        f->root = root;
        f->fd = -1;
        f->next = c->buckets[h];
        c->buckets[h] = f;
        c->count++;
        fill(c, f, root);
    } else {
        uint64_t now = mx_now_ms();
        if (f->gen != root->gen || now < f->checked_ms || now - f->checked_ms >= WEB_CACHE_TTL_MS)
            fill(c, f, root);
    }
    *out = f;
    return f->err;
}
