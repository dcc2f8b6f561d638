/*
 * http_conn.c: one HTTP/1.1 connection.  Bytes read from libuv (decrypted
 * first on TLS listeners) go through llhttp in strict mode; header pieces
 * are copied into a per-connection scratch buffer, and at the end of the
 * header block http_req.c builds the request.  Parsing pauses at the end of
 * every request and resumes only once its response is queued, so pipelined
 * requests are answered in order.  A response leaves with one write:
 * uv_try_write right away when a handler replies before returning (the
 * usual case: no write request, no deferred callback, no epoll_ctl), else
 * or for what the socket did not take, uv_write; file bodies follow their
 * header block (http_sendfile.c) before parsing resumes.  Streamed request bodies (MX_ROUTE_STREAM_BODY) hand each piece
 * to the module as parsed and hold the parser (body_hold) while the module
 * has not asked for the body or has paused it, so the socket is not read.
 *
 * Timers (one per connection): idle between requests, a hard deadline for
 * the whole header block (slowloris), a gap limit between body reads, and
 * a write timeout (output that has not moved for idle_timeout).  None runs
 * while a handler holds the request (long-polls are legitimate).  Arming
 * only moves the connection's deadline; the libuv timer is restarted only
 * when it would fire too late, and when it fires early it waits again for
 * what is left, so a keep-alive request costs no timer operation.
 *
 * The same code runs in "memory mode" (no socket: input fed from a buffer,
 * output to a function) for the fuzz target.
 */
#include "http.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const mx_http_limits_t *limits(void)
{
    static const mx_http_limits_t defaults = {
        .max_body_size = 10 * 1024 * 1024, .max_header_size = 64 * 1024,
        .header_timeout_ms = 30000, .idle_timeout_ms = 60000, .body_timeout_ms = 30000,
    };
    return mx__ctx && mx__ctx->conf ? &mx__ctx->conf->http : &defaults;
}

static uint64_t max_header_size(void)
{
    uint64_t m = limits()->max_header_size;
    return m ? m : 64 * 1024;
}

/* ---------------------------------------------------------------- timer --- */

/* How much output is still to go: bytes libuv has not handed to the kernel
 * plus what is left of a file body.  If it has not moved in a whole
 * idle_timeout, the client stopped reading. */
static size_t out_marker(mx__conn_t *c)
{
    size_t m = c->sink ? 0 : uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (c->streaming)
        m += c->streaming->file_left + 1;
    return m;
}

static void arm(mx__conn_t *c, uint64_t ms);

static void on_timeout(uv_timer_t *t)
{
    mx__conn_t *c = t->data;
    if (!c->deadline)
        return;   /* disarmed since */
    uint64_t now = uv_now(t->loop);
    if (now < c->deadline) {
        c->timer_due = c->deadline;
        uv_timer_start(t, on_timeout, c->deadline - now, 0);
        return;
    }
    c->deadline = 0;
    if (c->writes_pending || c->streaming) {
        size_t m = out_marker(c);
        if (m && m == c->wq_seen) {
            mx__conn_close(c);   /* write timeout */
            return;
        }
        if (m) {
            arm(c, limits()->idle_timeout_ms);   /* progress: wait again */
            return;
        }
    }
    if (c->phase == MX__C_HANDLING && c->cur)
        return;   /* a handler holds the request (long-poll) */
    if (c->body_hold && c->cur)
        return;   /* a streamed body waits for its module */
    mx__conn_close(c);
}

static void arm(mx__conn_t *c, uint64_t ms)
{
    if (c->sink || c->closing)
        return;
    if (!ms) {
        c->deadline = 0;   /* a running timer finds nothing to do */
        return;
    }
    c->wq_seen = out_marker(c);
    c->deadline = uv_now(c->timer.loop) + ms;
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= c->deadline)
        return;   /* fires first and waits again for the rest */
    c->timer_due = c->deadline;
    uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* -------------------------------------------------------- llhttp hooks --- */

static int happend(mx__conn_t *c, const char *p, size_t len)
{
    if (c->hlen + len + 1 > max_header_size()) {
        c->early_status = 431;
        return -1;
    }
    if (c->hlen + len + 1 > c->hcap) {
        size_t cap = c->hcap ? c->hcap : 1024;
        while (cap < c->hlen + len + 1)
            cap *= 2;
        char *n = realloc(c->hbuf, cap);
        if (!n) {
            c->early_status = 503;
            return -1;
        }
        c->hbuf = n;
        c->hcap = cap;
    }
    memcpy(c->hbuf + c->hlen, p, len);
    c->hlen += len;
    return 0;
}

static int hterm(mx__conn_t *c)
{
    return happend(c, "", 1);
}

static int on_message_begin(llhttp_t *p)
{
    mx__conn_t *c = p->data;
    c->phase = MX__C_HEADERS;
    c->hlen = 0;
    c->nhdr = 0;
    c->last_cb = 0;
    c->val_open = false;
    c->url.off = c->url.len = 0;
    c->hdr_raw = 0;
    c->early_status = 0;
    arm(c, limits()->header_timeout_ms);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    mx__conn_t *c = p->data;
    if (!c->url.len)
        c->url.off = (uint32_t)c->hlen;
    c->url.len += (uint32_t)len;
    return happend(c, at, len) ? HPE_USER : 0;
}

static int on_url_complete(llhttp_t *p)
{
    return hterm(p->data) ? HPE_USER : 0;
}

/* RFC 9110 token characters (header names). */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    mx__conn_t *c = p->data;
    /* llhttp 8 lets "Name :" through; a space before the colon must be
     * refused (RFC 9112 5.1). */
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)at[i])) {
            c->early_status = 400;
            c->early_errcode = "M_UNKNOWN";
            c->early_msg = "Invalid header name";
            return HPE_USER;
        }
    }
    if (c->last_cb != 1) {
        if (c->val_open && hterm(c))
            return HPE_USER;
        c->val_open = false;
        if (c->nhdr == MX__HTTP_MAX_HEADERS) {
            c->early_status = 431;
            return HPE_USER;
        }
        c->hname[c->nhdr].off = (uint32_t)c->hlen;
        c->hname[c->nhdr].len = 0;
        c->hval[c->nhdr].off = c->hval[c->nhdr].len = 0;
        c->nhdr++;
        c->last_cb = 1;
    }
    c->hname[c->nhdr - 1].len += (uint32_t)len;
    return happend(c, at, len) ? HPE_USER : 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    mx__conn_t *c = p->data;
    if (hterm(c))
        return HPE_USER;
    c->hval[c->nhdr - 1].off = (uint32_t)c->hlen;
    c->val_open = true;
    c->val_pieces = 0;
    c->last_cb = 2;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    mx__conn_t *c = p->data;
    /* llhttp lets obs-fold through as a second value piece that starts
     * after a line break (a piece continuing across reads starts at the
     * beginning of the bytes fed, after a byte that is not LF).  RFC 9112
     * allows refusing folds, and a folded line is a smuggling tool. */
    if (c->val_pieces++ && (at != c->exec_start || c->prev_byte == '\n')) {
        c->early_status = 400;
        c->early_errcode = "M_UNKNOWN";
        c->early_msg = "Folded header lines are not accepted";
        return HPE_USER;
    }
    c->hval[c->nhdr - 1].len += (uint32_t)len;
    return happend(c, at, len) ? HPE_USER : 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    mx__conn_t *c = p->data;
    c->val_open = false;
    c->last_cb = 0;
    return hterm(c) ? HPE_USER : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    mx__conn_t *c = p->data;
    if (c->val_open) {
        c->val_open = false;
        if (hterm(c))
            return HPE_USER;
    }
    c->phase = MX__C_BODY;
    if (mx__req_begin(c) < 0)
        return HPE_PAUSED;
    if (c->cur->stream_mode) {
        /* The handler runs now; no body byte is parsed before it asks. */
        c->body_hold = true;
        return HPE_PAUSED;
    }
    if ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length))
        arm(c, limits()->body_timeout_ms);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    int rc = mx__req_body(p->data, at, len);
    return rc < 0 ? HPE_USER : rc > 0 ? HPE_PAUSED : 0;
}

static int on_message_complete(llhttp_t *p)
{
    mx__conn_t *c = p->data;
    c->phase = MX__C_HANDLING;
    arm(c, 0);
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

int mx__conn_setup(mx__conn_t *c)
{
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    c->rcap = MX__HTTP_RBUF;
    c->rbuf = malloc(c->rcap);
    if (!c->rbuf)
        return -ENOMEM;
    if (c->tls && !(c->cbuf = malloc(MX__HTTP_RBUF)))
        return -ENOMEM;
    c->phase = MX__C_IDLE;
    return 0;
}

/* -------------------------------------------------------------- output --- */

typedef struct raw_write {
    uv_write_t w;
    char *data;        /* malloc'd, or NULL when static */
    uv_buf_t buf;
    mx__conn_write_fn done;
} raw_write_t;

static void maybe_finish_close(mx__conn_t *c);

static void on_raw_written(uv_write_t *w, int status)
{
    raw_write_t *rw = (raw_write_t *)w;
    mx__conn_t *c = w->handle->data;
    mx__conn_write_fn done = rw->done;
    free(rw->data);
    free(rw);
    c->writes_pending--;
    if (done && !c->closing)
        done(c, status);
    else if (status < 0)
        mx__conn_close(c);
    else
        maybe_finish_close(c);
}

/* Writes `len` bytes of `data`; `owned` says whether `data` is malloc'd
 * and passes to the write (else it must be static).  `done` (may be NULL)
 * runs after the write unless the connection closed meanwhile. */
static void send_bytes_cb(mx__conn_t *c, char *data, size_t len, bool owned,
                          mx__conn_write_fn done)
{
    if (c->closing) {
        if (owned)
            free(data);
        return;
    }
    if (c->sink) {
        c->sink(c->sink_ud, data, len);
        if (owned)
            free(data);
        return;
    }
    raw_write_t *rw = malloc(sizeof(*rw));
    if (!rw) {
        if (owned)
            free(data);
        mx__conn_close(c);
        return;
    }
    rw->data = owned ? data : NULL;
    rw->done = done;
    rw->buf = uv_buf_init(data, (unsigned)len);
    c->writes_pending++;
    if (uv_write(&rw->w, (uv_stream_t *)&c->tcp, &rw->buf, 1, on_raw_written) < 0) {
        c->writes_pending--;
        free(rw->data);
        free(rw);
        mx__conn_close(c);
    }
}

static void send_bytes(mx__conn_t *c, char *data, size_t len, bool owned)
{
    send_bytes_cb(c, data, len, owned, NULL);
}

void mx__conn_write_owned(mx__conn_t *c, char *data, size_t len, mx__conn_write_fn done)
{
    send_bytes_cb(c, data, len, true, done);
}

static void tls_flush(mx__conn_t *c)
{
    size_t len;
    char *out = mx__tls_conn_take_output(c->tls, &len);
    if (out)
        send_bytes(c, out, len, true);
}

void mx__conn_send_raw(mx__conn_t *c, const char *data, size_t len)
{
    if (c->tls) {
        if (mx__tls_conn_write(c->tls, data, len) < 0) {
            mx__conn_close(c);
            return;
        }
        tls_flush(c);
        return;
    }
    send_bytes(c, (char *)data, len, false);
}

static void on_response_written(uv_write_t *w, int status)
{
    struct mx_req *r = w->data;
    mx__conn_t *c = w->handle->data;
    c->writes_pending--;
    mx__req_written(r);
    if (status < 0)
        mx__conn_close(c);
    else
        maybe_finish_close(c);
}

static void process(mx__conn_t *c);
static void read_more(mx__conn_t *c);

/* The current request's response is queued: go on with the next one. */
static void request_done(mx__conn_t *c, bool keep_alive)
{
    c->body_hold = false;
    c->cur = NULL;
    if (c->closing)
        return;
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!keep_alive || (st && st->draining) || c->eof) {
        c->close_wanted = true;
        if (!c->sink && c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
        arm(c, limits()->idle_timeout_ms);   /* a client that never reads */
        maybe_finish_close(c);
        return;
    }
    c->phase = MX__C_IDLE;
    llhttp_resume(&c->parser);
    arm(c, limits()->idle_timeout_ms);
    if (!c->in_process) {
        process(c);
        read_more(c);
    }
}

void mx__conn_response_done(mx__conn_t *c, bool keep_alive)
{
    request_done(c, keep_alive);
    maybe_finish_close(c);
}

void mx__conn_arm_write(mx__conn_t *c)
{
    arm(c, limits()->idle_timeout_ms);
}

void mx__conn_body_unhold(mx__conn_t *c)
{
    if (c->closing || !c->body_hold)
        return;
    c->body_hold = false;
    if (c->phase == MX__C_BODY)
        arm(c, limits()->body_timeout_ms);
    if (!c->in_process) {
        process(c);
        read_more(c);
    }
}

/* Skips the first `n` bytes of r->wbufs (written already); the index of
 * the first buffer with bytes left (r->nwbufs when none). */
static int skip_written(struct mx_req *r, size_t n)
{
    int i = 0;
    while (i < r->nwbufs && n >= r->wbufs[i].len)
        n -= r->wbufs[i++].len;
    if (i < r->nwbufs) {
        r->wbufs[i].base += n;
        r->wbufs[i].len -= n;
    }
    return i;
}

/* Moves r->wbufs[from..] into one buffer of the request's pool, so that
 * they outlive the reply call (borrowed pieces); 0 or -ENOMEM. */
static int own_rest(struct mx_req *r, int from)
{
    size_t total = 0;
    for (int i = from; i < r->nwbufs; i++)
        total += r->wbufs[i].len;
    char *b = mx_palloc(r->pool, total ? total : 1);
    if (!b)
        return -ENOMEM;
    size_t o = 0;
    for (int i = from; i < r->nwbufs; i++) {
        memcpy(b + o, r->wbufs[i].base, r->wbufs[i].len);
        o += r->wbufs[i].len;
    }
    r->wbufs[0] = uv_buf_init(b, (unsigned)total);
    r->nwbufs = 1;
    r->borrowed = false;
    return 0;
}

void mx__conn_send_response(mx__conn_t *c, struct mx_req *r)
{
    bool keep_alive = r->keep_alive;
    if (c->closing || c->sink || c->tls) {
        if (!c->closing && c->tls) {
            for (int i = 0; i < r->nwbufs; i++)
                if (mx__tls_conn_write(c->tls, r->wbufs[i].base, r->wbufs[i].len) < 0)
                    keep_alive = false;
            tls_flush(c);
        } else if (!c->closing) {
            for (int i = 0; i < r->nwbufs; i++)
                c->sink(c->sink_ud, r->wbufs[i].base, r->wbufs[i].len);
        }
        mx__req_written(r);
        request_done(c, keep_alive);
        return;
    }
    int from = 0;
    if (r->in_handler) {
        /* A handler replying before it returns: the socket usually takes
         * the whole response now, which spares libuv's write request, its
         * deferred callback and the epoll_ctl that follows it.  The request
         * is not freed before the handler returns (mx__req_written only
         * marks it while r->in_handler), so the handler may still use it. */
        int n = uv_try_write((uv_stream_t *)&c->tcp, r->wbufs, (unsigned)r->nwbufs);
        if (n < 0 && n != UV_EAGAIN && n != UV_ENOSYS) {
            mx__req_written(r);
            request_done(c, false);
            return;
        }
        from = skip_written(r, n > 0 ? (size_t)n : 0);
        if (from == r->nwbufs) {
            mx__req_written(r);
            request_done(c, keep_alive);
            return;
        }
    }
    /* The rest leaves with uv_write; the request is released in
     * on_response_written, a later loop turn. */
    if (r->borrowed) {
        if (own_rest(r, from) < 0) {
            mx__req_written(r);
            request_done(c, false);
            return;
        }
    } else if (from) {
        memmove(r->wbufs, r->wbufs + from, sizeof(*r->wbufs) * (size_t)(r->nwbufs - from));
        r->nwbufs -= from;
    }
    r->wreq.data = r;
    c->writes_pending++;
    if (uv_write(&r->wreq, (uv_stream_t *)&c->tcp, r->wbufs, (unsigned)r->nwbufs,
                 on_response_written) < 0) {
        c->writes_pending--;
        mx__req_written(r);
        keep_alive = false;
    }
    request_done(c, keep_alive);
}

/* --------------------------------------------------------------- close --- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    mx__conn_t *c = sr->data;
    free(sr);
    if (c->closing)
        return;
    if (status < 0) {
        mx__conn_close(c);
        return;
    }
    /* Lingering close: read and drop what the client still sends for a
     * moment, so our last response is not destroyed by a reset. */
    c->lingering = true;
    arm(c, 2000);
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void maybe_finish_close(mx__conn_t *c)
{
    if (!c->close_wanted || c->closing || c->writes_pending || c->shutting)
        return;
    if (c->sink || c->tls || c->eof || c->no_linger) {
        mx__conn_close(c);
        return;
    }
    uv_shutdown_t *sr = malloc(sizeof(*sr));
    if (!sr) {
        mx__conn_close(c);
        return;
    }
    sr->data = c;
    if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(sr);
        mx__conn_close(c);
        return;
    }
    c->shutting = true;
}

static void handle_gone(mx__conn_t *c)
{
    if (--c->open_handles == 0) {
        free(c->rbuf);
        free(c->hbuf);
        free(c->cbuf);
        free(c);
    }
}

void mx__conn_handle_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void on_wpoll_closed(uv_handle_t *h)
{
    mx__conn_t *c = h->data;
    if (c->wpoll_fd >= 0)
        close(c->wpoll_fd);
    c->wpoll_fd = -1;
    free(h);
    handle_gone(c);
}

int mx__conn_wait_writable(mx__conn_t *c, uv_poll_cb cb)
{
    if (!c->wpoll) {
        /* The tcp handle already watches the socket's descriptor for
         * reading; a second watcher needs its own descriptor. */
        int fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0)
            return -EBADF;
        uv_poll_t *p = malloc(sizeof(*p));
        int dfd = p ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
        if (dfd < 0 || uv_poll_init(c->tcp.loop, p, dfd) < 0) {
            if (dfd >= 0)
                close(dfd);
            free(p);
            return -ENOMEM;
        }
        p->data = c;
        c->wpoll = p;
        c->wpoll_fd = dfd;
        c->open_handles++;
    }
    return uv_poll_start(c->wpoll, UV_WRITABLE, cb);
}

void mx__conn_stop_writable(mx__conn_t *c)
{
    if (c->wpoll)
        uv_poll_stop(c->wpoll);
}

void mx__conn_close(mx__conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->streaming) {
        c->streaming = NULL;   /* released with c->cur below */
        c->writes_pending--;
    }
    if (c->cur) {
        struct mx_req *r = c->cur;
        c->cur = NULL;
        mx__req_detach(r);
    }
    if (c->spare) {
        mx_pool_free(c->spare);
        c->spare = NULL;
    }
    mx__tls_conn_free(c->tls);
    c->tls = NULL;
    if (c->sink)
        return;
    /* Close the handles before telling the server: for the last
     * connection of a drain, that call ends the shutdown, whose final walk
     * closes every handle still open (they must already be closing). */
    if (c->wpoll)
        uv_close((uv_handle_t *)c->wpoll, on_wpoll_closed);
    uv_close((uv_handle_t *)&c->tcp, mx__conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, mx__conn_handle_closed);
    mx__http_conn_closed(c);
}

void mx__conn_close_if_idle(mx__conn_t *c)
{
    if (c->closing)
        return;
    if (c->phase == MX__C_IDLE && !c->cur) {
        c->close_wanted = true;
        c->no_linger = true;
        maybe_finish_close(c);
    }
}

/* --------------------------------------------------------------- input --- */

static void early(mx__conn_t *c, int status)
{
    const char *code = c->early_errcode ? c->early_errcode : "M_UNKNOWN";
    const char *msg = c->early_msg ? c->early_msg : "Bad request";
    if (status == 413) {
        code = "M_TOO_LARGE";
        msg = "Request body too large";
    } else if (status == 431) {
        code = "M_UNKNOWN";
        msg = "Request header fields too large";
    } else if (status == 503) {
        code = "M_UNKNOWN";
        msg = "Out of memory";
    }
    c->phase = MX__C_HANDLING;
    arm(c, 0);
    mx__req_early_reply(c, status, code, msg);
}

static void process(mx__conn_t *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    while (!c->closing && !c->close_wanted && c->phase != MX__C_HANDLING && !c->body_hold &&
           (c->rpos < c->rlen || llhttp_get_errno(&c->parser) == HPE_PAUSED)) {
        /* A streamed body paused the parser (headers done, or the module
         * paused): it may go on now. */
        if (llhttp_get_errno(&c->parser) == HPE_PAUSED)
            llhttp_resume(&c->parser);
        const char *start = c->rbuf + c->rpos;
        size_t n = c->rlen - c->rpos;
        c->exec_start = start;
        llhttp_errno_t e = llhttp_execute(&c->parser, start, n);
        size_t used = n;
        if (e != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            if (pos && pos >= start && pos <= start + n)
                used = (size_t)(pos - start);
        }
        c->rpos += used;
        if (used)
            c->prev_byte = start[used - 1];
        if (c->phase == MX__C_HEADERS) {
            c->hdr_raw += used;
            if (c->hdr_raw > max_header_size() + 1024) {
                early(c, 431);
                break;
            }
        }
        if (e == HPE_OK) {
            if (c->phase == MX__C_BODY)
                arm(c, limits()->body_timeout_ms);
            break;
        }
        if (e == HPE_PAUSED) {
            if (c->early_status) {
                early(c, c->early_status);
                break;
            }
            struct mx_req *r = c->cur;
            if (r && r->stream_mode && !r->dispatched)
                mx__req_dispatch(c);              /* headers of a streamed body */
            else if (r && r->stream_mode && c->phase == MX__C_HANDLING)
                mx__req_body_end(r, 0);           /* its last byte */
            else if (c->phase == MX__C_HANDLING)
                mx__req_dispatch(c);
            continue;
        }
        /* A parse error: strict llhttp refuses smuggling attempts (CL+TE,
         * duplicate lengths, bad chunk sizes, obs-fold, bad characters). */
        if (!c->early_status) {
            c->early_status = 400;
            c->early_errcode = "M_UNKNOWN";
            c->early_msg = "Malformed HTTP request";
        }
        early(c, c->early_status);
        break;
    }
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    c->in_process = false;
}

/* Pulls decrypted bytes out of the TLS session into rbuf. */
static int tls_pull(mx__conn_t *c)
{
    for (;;) {
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        if (c->rlen == c->rcap && c->rpos) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        if (c->rlen == c->rcap)
            return 0;
        long k = mx__tls_conn_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen);
        tls_flush(c);
        if (k < 0)
            return -1;
        if (k == 0)
            return 0;
        c->rlen += (size_t)k;
        process(c);
        if (c->closing)
            return -1;
        if (c->phase == MX__C_HANDLING && c->rlen == c->rcap)
            return 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mx__conn_t *c = h->data;
    if (c->tls || c->lingering) {
        if (!c->cbuf)
            c->cbuf = malloc(MX__HTTP_RBUF);
        *buf = uv_buf_init(c->cbuf, c->cbuf ? MX__HTTP_RBUF : 0);
        return;
    }
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    if (c->rpos && c->rcap - c->rlen < 4096) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    mx__conn_t *c = s->data;
    if (c->closing)
        return;
    if (n < 0) {
        if (n == UV_ENOBUFS) {
            uv_read_stop(s);
            c->reading = false;
            return;
        }
        /* EOF or error.  An async request loses its client (on_abort);
         * otherwise responses already queued still go out (a file body
         * too: the client may only have shut down its sending side). */
        c->eof = true;
        uv_read_stop(s);
        c->reading = false;
        if (n == UV_EOF && c->streaming && !c->lingering)
            return;
        if (c->lingering || c->phase != MX__C_IDLE || c->cur) {
            mx__conn_close(c);
        } else {
            c->close_wanted = true;
            maybe_finish_close(c);
        }
        return;
    }
    if (n == 0 || c->lingering)
        return;
    if (c->tls) {
        if (mx__tls_conn_input(c->tls, buf->base, (size_t)n) < 0 || tls_pull(c) < 0) {
            mx__conn_close(c);
            return;
        }
    } else {
        c->rlen += (size_t)n;
        process(c);
    }
    /* A handler holds the request and the buffer is full: wait. */
    if (!c->closing && c->reading && c->rlen == c->rcap && c->rpos == 0) {
        uv_read_stop(s);
        c->reading = false;
    }
}

static void read_more(mx__conn_t *c)
{
    if (c->sink || c->closing || c->reading || c->close_wanted)
        return;
    if (c->tls && tls_pull(c) < 0) {
        mx__conn_close(c);
        return;
    }
    if (c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

int mx__conn_start(mx__conn_t *c)
{
    arm(c, limits()->idle_timeout_ms);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0)
        c->reading = true;
    return rc;
}

/* ---------------------------------------------------------- memory mode --- */

mx__conn_t *mx__conn_mem_new(uint32_t resmask, mx__conn_sink_fn sink, void *ud)
{
    mx__conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->sink = sink;
    c->sink_ud = ud;
    c->resmask = resmask;
    strcpy(c->peer_ip, "127.0.0.1");
    if (mx__conn_setup(c) < 0) {
        free(c->rbuf);
        free(c);
        return NULL;
    }
    return c;
}

void mx__conn_mem_free(mx__conn_t *c)
{
    if (!c)
        return;
    mx__conn_close(c);
    free(c->rbuf);
    free(c->hbuf);
    free(c->cbuf);
    free(c);
}

void mx__conn_feed(mx__conn_t *c, const char *data, size_t len)
{
    while (len && !c->closing && !c->close_wanted) {
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        if (c->rpos && c->rlen == c->rcap) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        size_t room = c->rcap - c->rlen;
        if (!room)
            return;   /* a handler holds the request and the buffer is full */
        size_t k = len < room ? len : room;
        memcpy(c->rbuf + c->rlen, data, k);
        c->rlen += k;
        data += k;
        len -= k;
        process(c);
    }
}
