/*
 * http_sendfile.c: replies whose body is a range of an open file
 * (mx_req_reply_file: static files of the web module, media downloads).
 * The module hands over a descriptor, an offset and a length, never the
 * bytes, and the body never sits in memory.
 *
 * After the header block (built by http_req.c) the range leaves
 *   - on plain TCP with sendfile(2) straight from the page cache to the
 *     socket.  The socket is non-blocking: when it is full, a poll handle
 *     (on a dup of the socket, see mx__conn_wait_writable) says when to go
 *     on, so the loop never waits;
 *   - on TLS in 64 KiB pieces read with pread, encrypted and written; the
 *     next piece is read only once the previous write completed, so a slow
 *     client holds at most one piece;
 *   - in memory mode (fuzzing, tests) in pieces into the sink.
 * The request stays the connection's current one until the last byte is
 * out, so pipelined requests wait (their answers must come after), and the
 * connection's timer closes a client that stops reading (write timeout).
 * The descriptor is closed with the request's pool: when the body is done,
 * or when the client goes away midway.
 */
#include "http.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64 * 1024)      /* TLS / memory mode piece */
#define TURN (4 * 1024 * 1024) /* sendfile bytes per loop turn, for fairness */

/* The body is out (status 0) or cannot be sent: finish the request. */
static void finish(mx__conn_t *c, int status)
{
    mx_req_t *r = c->streaming;
    if (!r)
        return;
    c->streaming = NULL;
    c->writes_pending--;
    mx__conn_stop_writable(c);
    bool keep_alive = r->keep_alive && status == 0;
    if (status < 0 && status != UV_EPIPE && status != UV_ECONNRESET)
        mx_log("http", MX_LOG_WARN, "sending the body of %s failed: %s", r->path,
               status == -EIO ? "file shorter than announced" : uv_strerror(status));
    if (status < 0 && c->cur == r)
        c->cur = NULL;    /* released here, not again by the close */
    mx__req_written(r);   /* closes the file with the pool */
    if (status < 0)
        mx__conn_close(c);
    else
        mx__conn_response_done(c, keep_alive);
}

/* ------------------------------------------------------------ plain TCP --- */

static void pump(mx__conn_t *c);

static void on_writable(uv_poll_t *p, int status, int events)
{
    mx__conn_t *c = p->data;
    if (!c->streaming || c->closing)
        return;
    if (status < 0) {
        finish(c, status);
        return;
    }
    pump(c);
}

/* Sends as much of the range as the socket takes now. */
static void pump(mx__conn_t *c)
{
    mx_req_t *r = c->streaming;
    int sock;
    if (uv_fileno((uv_handle_t *)&c->tcp, &sock) < 0) {
        finish(c, UV_EBADF);
        return;
    }
    size_t turn = 0;
    while (r->file_left) {
        size_t want = r->file_left < TURN ? r->file_left : TURN;
        ssize_t n = sendfile(sock, r->file_fd, &r->file_off, want);
        if (n > 0) {
            r->file_left -= (size_t)n;
            turn += (size_t)n;
            /* Short: the socket buffer is full (no need for an EAGAIN
             * call to learn it).  Long: let other connections have the
             * loop. */
            if ((size_t)n < want || (turn >= TURN && r->file_left))
                break;
            continue;
        }
        if (n == 0) {
            finish(c, -EIO);   /* the file shrank under us */
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            break;
        finish(c, -errno);
        return;
    }
    if (!r->file_left) {
        finish(c, 0);
        return;
    }
    int rc = mx__conn_wait_writable(c, on_writable);
    if (rc < 0)
        finish(c, rc);
}

static void on_head_written(uv_write_t *w, int status)
{
    mx__conn_t *c = w->handle->data;
    free(w);
    c->writes_pending--;
    if (c->closing || !c->streaming)
        return;
    if (status < 0)
        finish(c, status);
    else
        pump(c);
}

static void send_plain(mx__conn_t *c, mx_req_t *r)
{
    uv_buf_t b = r->wbufs[0];
    /* Nothing queued before us: try the header block at once, and go
     * straight on with the body when the socket took it all.  MSG_MORE
     * holds the header back until the body's first pages join it, so a
     * small file leaves in one segment (as TCP_CORK would, without the
     * two setsockopt calls). */
    int n = UV_EAGAIN, sock;
    if (!uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) &&
        uv_fileno((uv_handle_t *)&c->tcp, &sock) == 0) {
        ssize_t k;
        do
            k = send(sock, b.base, b.len, MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        n = k >= 0 ? (int)k : errno == EAGAIN ? UV_EAGAIN : -errno;
    }
    if (n == (int)b.len) {
        pump(c);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        finish(c, n);
        return;
    }
    if (n > 0) {
        b.base += n;
        b.len -= (size_t)n;
    }
    uv_write_t *w = malloc(sizeof(*w));
    if (!w) {
        finish(c, UV_ENOMEM);
        return;
    }
    c->writes_pending++;
    int rc = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_head_written);
    if (rc < 0) {
        c->writes_pending--;
        free(w);
        finish(c, rc);
    }
}

/* ----------------------------------------------------- TLS, memory mode --- */

/* Reads the next piece into r->file_buf; its length, or a negative code. */
static ssize_t read_piece(mx_req_t *r)
{
    if (!r->file_buf && !(r->file_buf = mx_palloc(r->pool, CHUNK)))
        return -ENOMEM;
    size_t want = r->file_left < CHUNK ? r->file_left : CHUNK;
    for (;;) {
        ssize_t n = pread(r->file_fd, r->file_buf, want, r->file_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        r->file_off += n;
        r->file_left -= (size_t)n;
        return n;
    }
}

static void tls_next(mx__conn_t *c, int status)
{
    mx_req_t *r = c->streaming;
    if (!r)
        return;
    if (status < 0) {
        finish(c, status);
        return;
    }
    if (!r->file_left) {
        finish(c, 0);
        return;
    }
    ssize_t n = read_piece(r);
    if (n < 0) {
        finish(c, (int)n);
        return;
    }
    if (mx__tls_conn_write(c->tls, r->file_buf, (size_t)n) < 0) {
        finish(c, -EPROTO);
        return;
    }
    size_t len;
    char *out = mx__tls_conn_take_output(c->tls, &len);
    if (!out) {
        finish(c, -EPROTO);
        return;
    }
    mx__conn_write_owned(c, out, len, tls_next);
}

static void send_tls(mx__conn_t *c, mx_req_t *r)
{
    /* The header block rides with the first piece. */
    if (mx__tls_conn_write(c->tls, r->wbufs[0].base, r->wbufs[0].len) < 0) {
        finish(c, -EPROTO);
        return;
    }
    tls_next(c, 0);
}

static void send_sink(mx__conn_t *c, mx_req_t *r)
{
    c->sink(c->sink_ud, r->wbufs[0].base, r->wbufs[0].len);
    while (r->file_left) {
        ssize_t n = read_piece(r);
        if (n < 0) {
            finish(c, (int)n);
            return;
        }
        c->sink(c->sink_ud, r->file_buf, (size_t)n);
    }
    finish(c, 0);
}

void mx__conn_send_file(mx__conn_t *c, mx_req_t *r)
{
    if (c->closing) {
        mx__req_written(r);
        return;
    }
    c->streaming = r;
    c->writes_pending++;
    mx__conn_arm_write(c);
    if (c->sink)
        send_sink(c, r);
    else if (c->tls)
        send_tls(c, r);
    else
        send_plain(c, r);
}

/* ----------------------------------------------------------------- API --- */

void mx_req_reply_file(mx_req_t *r, int status, const char *content_type, int fd, off_t offset,
                       size_t len)
{
    if (offset < 0) {
        if (fd >= 0)
            close(fd);
        mx_req_error(r, 500, "M_UNKNOWN", "Internal server error");
        return;
    }
    mx__req_reply_fd(r, status, content_type, fd, offset, len);
}
