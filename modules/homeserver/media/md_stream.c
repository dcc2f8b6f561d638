/*
 * md_stream.c: an upload streamed to disk.  The request body's pieces are
 * gathered into a buffer; a full buffer is hashed (SHA-256, the content
 * address) and written to a file under tmp/ on a worker thread while the
 * next buffer fills.  The body is paused only when both buffers are in
 * use, so memory stays at two buffers whatever the upload's size.  At the
 * end the file is fsync'd and handed to md_store_install (rename into
 * content/, directory fsync) before any row names it.  An aborted stream
 * (client gone, too large, over quota) removes its temp file.
 *
 * Loop thread only, except md_st_work (worker), which touches just the
 * fields of the buffer being written, the fd and the hash state.
 */
#include "media.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MD_ST_BUF (1024 * 1024)

struct md_stream {
    md_put_t put;                    /* result: tmp_path, sha256, err */
    crypto_hash_sha256_state sha;
    int fd;                          /* -1 until the first write */
    char *fill, *wbuf;               /* malloc'd, MD_ST_BUF + slack each */
    size_t fill_len, fill_cap, wlen, wcap;
    uint64_t total;
    int err;                         /* first write error (-errno) */
    bool busy;                       /* a worker job is in flight */
    bool final;                      /* the job in flight ends the file */
    bool paused;                     /* the body is paused for us */
    bool finishing, aborting;
    md_stream_resume_fn resume;
    void *ud;
    void (*gone)(void *ud);          /* md_stream_abort's callback */
    void *gone_ud;
};

md_stream_t *md_stream_new(md_stream_resume_fn resume, void *ud)
{
    md_stream_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fill = malloc(MD_ST_BUF);
    s->wbuf = malloc(MD_ST_BUF);
    if (!s->fill || !s->wbuf) {
        free(s->fill);
        free(s->wbuf);
        free(s);
        return NULL;
    }
    s->fill_cap = s->wcap = MD_ST_BUF;
    s->fd = -1;
    s->resume = resume;
    s->ud = ud;
    crypto_hash_sha256_init(&s->sha);
    return s;
}

void md_stream_free(md_stream_t *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->put.tmp_path) {
        unlink(s->put.tmp_path);
        free(s->put.tmp_path);
    }
    free(s->fill);
    free(s->wbuf);
    free(s);
}

uint64_t md_stream_size(const md_stream_t *s)
{
    return s->total;
}

md_put_t *md_stream_put(md_stream_t *s)
{
    return &s->put;
}

/* Worker: hash and write wbuf; on the final job also fsync and close. */
static void md_st_work(void *ud)
{
    md_stream_t *s = ud;
    if (s->fd < 0) {
        s->fd = md_tmp_open(&s->put.tmp_path);
        if (s->fd < 0) {
            s->err = s->fd;
            s->fd = -1;
            return;
        }
    }
    crypto_hash_sha256_update(&s->sha, (const unsigned char *)s->wbuf, s->wlen);
    int rc = md_write_all(s->fd, s->wbuf, s->wlen);
    if (!rc && s->final) {
        if (fsync(s->fd) < 0)
            rc = -errno;
        if (close(s->fd) < 0 && !rc)
            rc = -errno;
        s->fd = -1;
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&s->sha, h);
        sodium_bin2hex(s->put.sha256, sizeof(s->put.sha256), h, sizeof(h));
    }
    if (rc)
        s->err = rc;
}

static void md_st_after(void *ud);

static void md_st_kick(md_stream_t *s, bool final)
{
    char *b = s->wbuf;
    size_t cap = s->wcap;
    s->wbuf = s->fill;
    s->wcap = s->fill_cap;
    s->wlen = s->fill_len;
    s->fill = b;
    s->fill_cap = cap;
    s->fill_len = 0;
    s->busy = true;
    s->final = final;
    int rc = md_queue(md_st_work, md_st_after, s);
    if (rc < 0) {
        s->err = rc;
        s->busy = false;
        if (final)
            md_st_after(s);
    }
}

static void md_st_cleanup(md_stream_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->put.tmp_path) {
        unlink(s->put.tmp_path);
        free(s->put.tmp_path);
        s->put.tmp_path = NULL;
    }
    s->gone(s->gone_ud);
}

static void md_st_after(void *ud)
{
    md_stream_t *s = ud;
    s->busy = false;
    if (s->aborting) {
        md_st_cleanup(s);
        return;
    }
    if (s->final) {
        s->put.err = s->err;
        if (s->err && s->put.tmp_path) {
            unlink(s->put.tmp_path);
            free(s->put.tmp_path);
            s->put.tmp_path = NULL;
        }
        md_store_install(&s->put);
        return;
    }
    if (s->err) {
        if (s->finishing) {
            s->final = true;
            md_st_after(s);
        } else {
            s->resume(s->err, s->ud);
        }
        return;
    }
    if (s->finishing) {
        md_st_kick(s, true);
        return;
    }
    if (s->fill_len >= MD_ST_BUF)
        md_st_kick(s, false);
    if (s->paused) {
        s->paused = false;
        s->resume(0, s->ud);
    }
}

int md_stream_write(md_stream_t *s, const char *data, size_t len)
{
    if (s->err)
        return s->err;
    if (s->fill_len + len > s->fill_cap) {
        /* A piece larger than the slack: grow this buffer (rare). */
        size_t cap = s->fill_len + len;
        char *n = realloc(s->fill, cap);
        if (!n)
            return -ENOMEM;
        s->fill = n;
        s->fill_cap = cap;
    }
    memcpy(s->fill + s->fill_len, data, len);
    s->fill_len += len;
    s->total += len;
    if (s->fill_len < MD_ST_BUF)
        return 0;
    if (!s->busy) {
        md_st_kick(s, false);
        return s->err ? s->err : 0;
    }
    s->paused = true;
    return 1;
}

void md_stream_finish(md_stream_t *s, void (*done)(md_put_t *p, void *ud), void *ud)
{
    s->put.done = done;
    s->put.ud = ud;
    s->finishing = true;
    if (!s->busy)
        md_st_kick(s, true);
}

void md_stream_abort(md_stream_t *s, void (*gone)(void *ud), void *ud)
{
    s->aborting = true;
    s->gone = gone;
    s->gone_ud = ud;
    if (!s->busy)
        md_st_cleanup(s);
}
