/*
 * http_client.c: the core's outbound HTTP/1.1 client (mx_http_fetch), for
 * federation, push gateways, URL previews, OIDC and the like.
 *
 * One request goes: parse the URL -> take an idle pooled connection for
 * (scheme, host, port), or resolve the name with uv_getaddrinfo, pass
 * every address through the SSRF guard (ssrf.c) and connect to the first
 * checked address that answers -> TLS handshake for https (tls_client.c)
 * -> send -> parse the response with llhttp (Content-Length, chunked or
 * read-until-close bodies) -> call the callback, then park the connection
 * in the keep-alive pool when the server allows it.
 *
 * Limits: a total deadline per request (one timer, which also bounds each
 * connect attempt), a response size cap, at most MAX_IDLE_PER_HOST idle
 * connections per host, closed after IDLE_TIMEOUT_MS.  A pooled connection
 * that the server had closed meanwhile costs one retry on a fresh
 * connection for idempotent methods.  Redirects are returned, not
 * followed.
 *
 * Lifetimes: a request (cl_req_t) lives until its callback has run and its
 * timer handle and any getaddrinfo in flight have come back (a small
 * reference count); a connection (cl_conn_t) until its TCP handle's close
 * callback.  Neither close path touches the client state, so
 * mx__client_fini can free that at once.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include "client.h"
#include "tls_client.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_RESPONSE (10u * 1024 * 1024)
#define CONNECT_TIMEOUT_MS 10000
#define IDLE_TIMEOUT_MS 60000
#define MAX_IDLE_PER_HOST 8
#define MAX_ADDRS 8

typedef struct cl_req cl_req_t;
typedef struct cl_conn cl_conn_t;

struct mx_client_state {
    mx__cidr_t wl[16];           /* ip_range_whitelist */
    int nwl;
    mx_tlsc_conf_t *tls;         /* NULL when no CA could be loaded */
    char tls_err[256];           /* why tls is NULL */
    cl_conn_t *idle;             /* idle connections, newest first */
    cl_req_t *active;            /* requests whose callback has not run */
    uv_timer_t *sweep;           /* closes idle connections that aged */
};

struct cl_conn {
    uv_tcp_t tcp;                /* tcp.data = this */
    char *key;                   /* "https://host:port" */
    mx_tlsc_t *tls;              /* https only */
    bool tls_ready;
    bool closing;
    bool idle;
    cl_conn_t *prev, *next;      /* the idle list, while idle */
    uint64_t idle_since;
    cl_req_t *req;               /* the request using it, or NULL */
    llhttp_t parser;
};

enum { PH_RESOLVE, PH_CONNECT, PH_TLS, PH_SENT };

struct cl_req {
    cl_req_t *prev, *next;       /* the active list */
    mx_http_done_fn cb;
    void *ud;
    int refs;                    /* timer handle + getaddrinfo in flight */
    bool finished;               /* the callback has run (or is running) */

    bool https, idempotent, is_head, allow_private;
    char *host;                  /* lower-cased, no brackets */
    int port;
    char *key;
    char *wire;                  /* the whole request: head and body */
    size_t wire_len;
    uint64_t deadline;           /* uv_now() value */
    uint64_t timeout_ms;
    size_t max_response;

    int phase;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    uv_timer_t timer;
    struct sockaddr_storage addrs[MAX_ADDRS];
    int naddrs, next_addr;
    int last_err;                /* of the last failed connect attempt */

    cl_conn_t *conn;
    bool reused, retried, got_bytes;

    /* the response */
    size_t received;
    int status;
    bool msg_done, nomem;
    char *hf, *hv;               /* header field/value being parsed */
    size_t hflen, hvlen;
    char **hnames, **hvalues;
    size_t nh, hcap;
    char *body;
    size_t body_len, body_cap;
    char errmsg[256];
};

#define ST (mx__ctx ? mx__ctx->client : NULL)

static void conn_close(cl_conn_t *c);
static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void req_finish(cl_req_t *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int req_resolve(cl_req_t *r);
static void req_send(cl_req_t *r);

/* ----------------------------------------------------------------- URL --- */

/* Splits an http(s) URL.  *host and *target are malloc'd (the caller frees
 * them).  Returns 0 or -EINVAL. */
static int url_parse(const char *url, bool *https, char **host, int *port, char **target)
{
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0) {
        *https = false;
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        *https = true;
        p = url + 8;
    } else {
        return -EINVAL;
    }
    const char *auth_end = p + strcspn(p, "/?#");
    const char *h = p, *h_end;
    const char *rest;
    if (memchr(p, '@', (size_t)(auth_end - p)))
        return -EINVAL;   /* userinfo is never meant for us */
    if (*p == '[') {
        h = p + 1;
        h_end = memchr(h, ']', (size_t)(auth_end - h));
        if (!h_end)
            return -EINVAL;
        rest = h_end + 1;
    } else {
        h_end = memchr(p, ':', (size_t)(auth_end - p));
        if (!h_end)
            h_end = auth_end;
        rest = h_end;
    }
    size_t hlen = (size_t)(h_end - h);
    if (hlen == 0 || hlen > 253)
        return -EINVAL;
    *port = *https ? 443 : 80;
    if (rest < auth_end) {
        if (*rest != ':' || rest + 1 == auth_end)
            return -EINVAL;
        long v = 0;
        for (const char *q = rest + 1; q < auth_end; q++) {
            if (!isdigit((unsigned char)*q) || v > 65535)
                return -EINVAL;
            v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > 65535)
            return -EINVAL;
        *port = (int)v;
    }
    char *hs = strndup(h, hlen);
    if (!hs)
        return -ENOMEM;
    for (char *q = hs; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    if (*p == '[') {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, hs, &a6) != 1)
            goto bad;
    } else {
        for (const char *q = hs; *q; q++)
            if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-' && *q != '_')
                goto bad;
    }
    /* the request target: path and query, never the fragment */
    const char *t = auth_end;
    size_t tlen = strcspn(t, "#");
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)t[i] <= 0x20 || t[i] == 0x7f)
            goto bad;
    char *ts = malloc(tlen + 2);
    if (!ts) {
        free(hs);
        return -ENOMEM;
    }
    size_t o = 0;
    if (tlen == 0 || t[0] != '/')
        ts[o++] = '/';
    memcpy(ts + o, t, tlen);
    ts[o + tlen] = '\0';
    *host = hs;
    *target = ts;
    return 0;
bad:
    free(hs);
    return -EINVAL;
}

/* ------------------------------------------------------------ requests --- */

static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

/* Grows *buf (capacity *cap, length *len) by `n` bytes of `data`. */
static int grow_append(char **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        char *b = realloc(*buf, c);
        if (!b)
            return -ENOMEM;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -EINVAL;
    return grow_append(buf, len, cap, tmp, (size_t)n);
}

static bool header_named(const char *h, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(h, name, n) == 0 && h[n] == ':';
}

/* Serializes the request head and body into r->wire. */
static int req_build(cl_req_t *r, const mx_http_request_t *rq, const char *method,
                     const char *target)
{
    char *w = NULL;
    size_t len = 0, cap = 0;
    bool own_ua = false, own_ae = false;
    bool def_port = r->port == (r->https ? 443 : 80);
    bool v6 = strchr(r->host, ':') != NULL;
#define ADDS(s) do { if (rc == 0) rc = grow_append(&w, &len, &cap, (s), strlen(s)); } while (0)
    int rc = 0;
    ADDS(method);
    ADDS(" ");
    ADDS(target);
    ADDS(" HTTP/1.1\r\nHost: ");
    ADDS(v6 ? "[" : "");
    ADDS(r->host);
    ADDS(v6 ? "]" : "");
    if (rc == 0 && !def_port)
        rc = appendf(&w, &len, &cap, ":%d", r->port);
    if (rc == 0)
        rc = grow_append(&w, &len, &cap, "\r\n", 2);
    for (const char *const *h = rq->headers; rc == 0 && h && *h; h++) {
        const char *colon = strchr(*h, ':');
        if (!colon || colon == *h || strpbrk(*h, "\r\n")) {
            rc = -EINVAL;
            break;
        }
        /* framing and routing are ours to decide */
        if (header_named(*h, "host") || header_named(*h, "content-length") ||
            header_named(*h, "transfer-encoding") || header_named(*h, "connection"))
            continue;
        own_ua |= header_named(*h, "user-agent");
        own_ae |= header_named(*h, "accept-encoding");
        ADDS(*h);
        ADDS("\r\n");
    }
#undef ADDS
    if (rc == 0 && !own_ua)
        rc = appendf(&w, &len, &cap, "User-Agent: mxstack/%s\r\n", PACKAGE_VERSION);
    if (rc == 0 && !own_ae)
        rc = appendf(&w, &len, &cap, "Accept-Encoding: identity\r\n");
    if (rc == 0 && (rq->body_len > 0 || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
                    !strcmp(method, "PATCH")))
        rc = appendf(&w, &len, &cap, "Content-Length: %zu\r\n", rq->body_len);
    if (rc == 0)
        rc = grow_append(&w, &len, &cap, "\r\n", 2);
    if (rc == 0 && rq->body_len > 0)
        rc = grow_append(&w, &len, &cap, rq->body, rq->body_len);
    if (rc != 0) {
        free(w);
        return rc;
    }
    r->wire = w;
    r->wire_len = len;
    return 0;
}

static void req_unref(cl_req_t *r)
{
    if (--r->refs > 0)
        return;
    free(r->host);
    free(r->key);
    free(r->wire);
    free(r->hf);
    free(r->hv);
    for (size_t i = 0; i < r->nh; i++) {
        free(r->hnames[i]);
        free(r->hvalues[i]);
    }
    free(r->hnames);
    free(r->hvalues);
    free(r->body);
    free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    req_unref(h->data);
}

static void reset_response(cl_req_t *r)
{
    for (size_t i = 0; i < r->nh; i++) {
        free(r->hnames[i]);
        free(r->hvalues[i]);
    }
    r->nh = 0;
    r->hflen = r->hvlen = 0;
    r->body_len = 0;
    r->status = 0;
    r->msg_done = false;
}

static void conn_detach(cl_req_t *r)
{
    if (r->conn) {
        r->conn->req = NULL;
        r->conn = NULL;
    }
}

/* Runs the callback exactly once and releases what the request holds.
 * With err == 0 the response fields are reported. */
static void req_finish(cl_req_t *r, int err, const char *fmt, ...)
{
    if (r->finished)
        return;
    r->finished = true;
    struct mx_client_state *st = ST;
    if (r->conn) {
        cl_conn_t *c = r->conn;
        conn_detach(r);
        conn_close(c);
    }
    if (r->gai_pending)
        uv_cancel((uv_req_t *)&r->gai);
    if (st) {
        if (r->prev)
            r->prev->next = r->next;
        else if (st->active == r)
            st->active = r->next;
        if (r->next)
            r->next->prev = r->prev;
    }
    r->prev = r->next = NULL;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);

    mx_http_response_t resp;
    memset(&resp, 0, sizeof(resp));
    resp.err = err;
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
        va_end(ap);
        resp.errmsg = r->errmsg;
        resp.body = "";
    } else {
        resp.status = r->status;
        resp.body = r->body ? r->body : "";
        resp.body_len = r->body_len;
        resp.nheaders = r->nh;
        resp.header_names = (const char *const *)r->hnames;
        resp.header_values = (const char *const *)r->hvalues;
    }
    r->cb(&resp, r->ud);
}

/* The request could not use its connection (closed, reset, write error).
 * A reused connection that fails before any response byte gets one retry
 * on a fresh connection when the method is idempotent. */
static void req_conn_failed(cl_req_t *r, int err, const char *what)
{
    cl_conn_t *c = r->conn;
    if (r->reused && !r->retried && !r->got_bytes && r->idempotent && ST) {
        r->retried = true;
        r->reused = false;
        conn_detach(r);
        conn_close(c);
        int rc = req_resolve(r);
        if (rc < 0)
            req_finish(r, rc, "cannot resolve %s: %s", r->host, uv_strerror(rc));
        return;
    }
    req_finish(r, err, "%s %s:%d: %s", what, r->host, r->port, uv_strerror(err));
}

/* ------------------------------------------------------------- parsing --- */

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    cl_conn_t *c = p->data;
    size_t cap = c->req->hflen + len + 1;
    char *n = realloc(c->req->hf, cap);
    if (!n) {
        c->req->nomem = true;
        return HPE_USER;
    }
    memcpy(n + c->req->hflen, at, len);
    c->req->hflen += len;
    n[c->req->hflen] = '\0';
    c->req->hf = n;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    cl_conn_t *c = p->data;
    size_t cap = c->req->hvlen + len + 1;
    char *n = realloc(c->req->hv, cap);
    if (!n) {
        c->req->nomem = true;
        return HPE_USER;
    }
    memcpy(n + c->req->hvlen, at, len);
    c->req->hvlen += len;
    n[c->req->hvlen] = '\0';
    c->req->hv = n;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    cl_req_t *r = ((cl_conn_t *)p->data)->req;
    if (r->nh == r->hcap) {
        size_t cap = r->hcap ? r->hcap * 2 : 16;
        char **n = realloc(r->hnames, cap * sizeof(*n));
        if (n)
            r->hnames = n;
        char **v = realloc(r->hvalues, cap * sizeof(*v));
        if (v)
            r->hvalues = v;
        if (!n || !v) {
            r->nomem = true;
            return HPE_USER;
        }
        r->hcap = cap;
    }
    /* llhttp hands over the value without leading whitespace; drop the
     * trailing kind too */
    while (r->hvlen > 0 && (r->hv[r->hvlen - 1] == ' ' || r->hv[r->hvlen - 1] == '\t'))
        r->hvlen--;
    char *name = strndup(r->hf ? r->hf : "", r->hflen);
    char *value = strndup(r->hv ? r->hv : "", r->hvlen);
    if (!name || !value) {
        free(name);
        free(value);
        r->nomem = true;
        return HPE_USER;
    }
    for (char *q = name; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    r->hnames[r->nh] = name;
    r->hvalues[r->nh] = value;
    r->nh++;
    r->hflen = r->hvlen = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    cl_req_t *r = ((cl_conn_t *)p->data)->req;
    r->status = llhttp_get_status_code(p);
    /* a HEAD response announces a body it does not send */
    return r->is_head ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    cl_req_t *r = ((cl_conn_t *)p->data)->req;
    if (grow_append(&r->body, &r->body_len, &r->body_cap, at, len) != 0) {
        r->nomem = true;
        return HPE_USER;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    cl_req_t *r = ((cl_conn_t *)p->data)->req;
    /* interim responses (100 Continue, 103 Early Hints) precede the real one */
    if (r->status >= 100 && r->status < 200 && r->status != 101) {
        reset_response(r);
        return 0;
    }
    r->msg_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------- pool --- */

static void conn_on_closed(uv_handle_t *h)
{
    cl_conn_t *c = h->data;
    free(c->key);
    free(c);
}

static void idle_unlink(struct mx_client_state *st, cl_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (st && st->idle == c)
        st->idle = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->idle = false;
}

static void conn_close(cl_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->idle)
        idle_unlink(ST, c);
    if (c->req)
        c->req->conn = NULL;
    c->req = NULL;
    mx__tlsc_free(c->tls);
    c->tls = NULL;
    uv_close((uv_handle_t *)&c->tcp, conn_on_closed);
}

static void sweep_on_timer(uv_timer_t *t)
{
    struct mx_client_state *st = ST;
    if (!st)
        return;
    uint64_t now = uv_now(t->loop);
    cl_conn_t *c = st->idle, *next;
    for (; c; c = next) {
        next = c->next;
        if (now - c->idle_since >= IDLE_TIMEOUT_MS)
            conn_close(c);
    }
    if (!st->idle)
        uv_timer_stop(t);
}

/* Parks a connection whose request finished cleanly. */
static void pool_put(struct mx_client_state *st, cl_conn_t *c)
{
    int n = 0;
    for (cl_conn_t *i = st->idle; i; i = i->next)
        n += strcmp(i->key, c->key) == 0;
    if (n >= MAX_IDLE_PER_HOST) {
        conn_close(c);
        return;
    }
    c->idle = true;
    c->idle_since = uv_now(mx__ctx->loop);
    c->prev = NULL;
    c->next = st->idle;
    if (st->idle)
        st->idle->prev = c;
    st->idle = c;
    /* an idle connection must not keep the loop alive; it keeps reading
     * so that a server close is noticed at once */
    uv_unref((uv_handle_t *)&c->tcp);
    if (!uv_is_active((uv_handle_t *)st->sweep))
        uv_timer_start(st->sweep, sweep_on_timer, 5000, 5000);
}

static cl_conn_t *pool_take(struct mx_client_state *st, const char *key)
{
    uint64_t now = uv_now(mx__ctx->loop);
    cl_conn_t *c = st->idle, *next;
    for (; c; c = next) {
        next = c->next;
        if (strcmp(c->key, key) != 0)
            continue;
        if (now - c->idle_since >= IDLE_TIMEOUT_MS) {
            conn_close(c);
            continue;
        }
        idle_unlink(st, c);
        uv_ref((uv_handle_t *)&c->tcp);
        return c;
    }
    return NULL;
}

/* -------------------------------------------------------------- output --- */

typedef struct cl_write {
    uv_write_t w;
    char data[];
} cl_write_t;

static void conn_on_write(uv_write_t *w, int status)
{
    cl_conn_t *c = w->handle->data;
    free(w);
    if (status < 0 && !c->closing) {
        if (c->req)
            req_conn_failed(c->req, status, "write to");
        else
            conn_close(c);
    }
}

static int conn_write(cl_conn_t *c, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    cl_write_t *w = malloc(sizeof(*w) + len);
    if (!w)
        return -ENOMEM;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write);
    if (rc < 0)
        free(w);
    return rc;
}

static int tls_flush(cl_conn_t *c)
{
    const void *d;
    size_t n = mx__tlsc_out(c->tls, &d);
    int rc = conn_write(c, d, n);
    if (rc == 0)
        mx__tlsc_out_consume(c->tls, n);
    return rc;
}

/* ------------------------------------------------------------- connect --- */

static void req_arm(cl_req_t *r, uint64_t ms);

static void req_send(cl_req_t *r)
{
    cl_conn_t *c = r->conn;
    r->phase = PH_SENT;
    reset_response(r);
    r->received = 0;
    r->got_bytes = false;
    llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
    c->parser.data = c;
    int rc;
    if (c->tls) {
        rc = mx__tlsc_write(c->tls, r->wire, r->wire_len);
        if (rc == 0)
            rc = tls_flush(c);
    } else {
        rc = conn_write(c, r->wire, r->wire_len);
    }
    if (rc < 0)
        req_conn_failed(r, rc, "write to");
}

static void tls_step(cl_conn_t *c)
{
    cl_req_t *r = c->req;
    char err[256];
    int rc = mx__tlsc_handshake(c->tls, err, sizeof(err));
    int wrc = tls_flush(c);
    if (rc < 0) {
        req_finish(r, rc, "%s:%d: %s", r->host, r->port, err);
        return;
    }
    if (wrc < 0) {
        req_conn_failed(r, wrc, "write to");
        return;
    }
    if (rc == 1) {
        c->tls_ready = true;
        req_send(r);
    }
}

static void conn_on_connect(uv_connect_t *cr, int status);

static void uv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

/* Connects to the next checked address, or fails the request when none
 * is left. */
static void req_connect_next(cl_req_t *r)
{
    struct mx_client_state *st = ST;
    while (r->next_addr < r->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[r->next_addr++];
        cl_conn_t *c = calloc(1, sizeof(*c));
        uv_connect_t *cr = malloc(sizeof(*cr));
        char *key = strdup(r->key);
        if (!c || !cr || !key) {
            free(c);
            free(cr);
            free(key);
            req_finish(r, -ENOMEM, "out of memory");
            return;
        }
        uv_tcp_init(mx__ctx->loop, &c->tcp);
        c->tcp.data = c;
        c->key = key;
        cr->data = c;
        int rc = uv_tcp_connect(cr, &c->tcp, sa, conn_on_connect);
        if (rc < 0) {
            free(cr);
            conn_close(c);
            r->last_err = rc;
            continue;
        }
        c->req = r;
        r->conn = c;
        r->phase = PH_CONNECT;
        uint64_t now = uv_now(mx__ctx->loop);
        uint64_t left = r->deadline > now ? r->deadline - now : 0;
        req_arm(r, left < CONNECT_TIMEOUT_MS ? left : CONNECT_TIMEOUT_MS);
        return;
    }
    (void)st;
    int err = r->last_err ? r->last_err : -ECONNREFUSED;
    if (err == MX_ETIMEOUT)
        req_finish(r, err, "connecting to %s:%d timed out", r->host, r->port);
    else
        req_finish(r, err, "cannot connect to %s:%d: %s", r->host, r->port, uv_strerror(err));
}

static void conn_on_connect(uv_connect_t *cr, int status)
{
    cl_conn_t *c = cr->data;
    free(cr);
    if (c->closing)
        return;
    cl_req_t *r = c->req;
    if (status < 0) {
        r->last_err = status;
        conn_detach(r);
        conn_close(c);
        req_connect_next(r);
        return;
    }
    uint64_t now = uv_now(mx__ctx->loop);
    req_arm(r, r->deadline > now ? r->deadline - now : 0);
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, uv_alloc, conn_on_read);
    if (rc < 0) {
        req_finish(r, rc, "reading from %s:%d: %s", r->host, r->port, uv_strerror(rc));
        return;
    }
    if (r->https) {
        struct mx_client_state *st = ST;
        c->tls = mx__tlsc_new(st->tls, r->host);
        if (!c->tls) {
            req_finish(r, -ENOMEM, "cannot start TLS");
            return;
        }
        r->phase = PH_TLS;
        tls_step(c);
    } else {
        req_send(r);
    }
}

static void gai_on_done(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    cl_req_t *r = g->data;
    r->gai_pending = false;
    if (r->finished) {
        uv_freeaddrinfo(res);
        req_unref(r);
        return;
    }
    req_unref(r);   /* the timer's reference still holds it */
    if (status < 0) {
        uv_freeaddrinfo(res);
        req_finish(r, -EHOSTUNREACH, "cannot resolve %s: %s", r->host, uv_strerror(status));
        return;
    }
    r->naddrs = r->next_addr = 0;
    r->last_err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        /* One refused address refuses the name: a hostname that points at
         * both public and internal addresses is not one we talk to. */
        if (!r->allow_private && mx__ssrf_check(ai->ai_addr) != 0) {
            char ip[INET6_ADDRSTRLEN] = "?";
            if (ai->ai_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip,
                          sizeof(ip));
            else
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip,
                          sizeof(ip));
            uv_freeaddrinfo(res);
            req_finish(r, MX_ESSRF,
                       "refusing to connect to %s: %s is a private or reserved address "
                       "(not in ip_range_whitelist)", r->host, ip);
            return;
        }
        if (r->naddrs < MAX_ADDRS && ai->ai_addrlen <= sizeof(r->addrs[0])) {
            /* skip duplicates (one per socktype/protocol combination) */
            bool dup = false;
            for (int i = 0; i < r->naddrs && !dup; i++)
                dup = memcmp(&r->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0;
            if (!dup)
                memcpy(&r->addrs[r->naddrs++], ai->ai_addr, ai->ai_addrlen);
        }
    }
    uv_freeaddrinfo(res);
    if (r->naddrs == 0) {
        req_finish(r, -EHOSTUNREACH, "%s has no address", r->host);
        return;
    }
    req_connect_next(r);
}

static int req_resolve(cl_req_t *r)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[8];
    snprintf(port, sizeof(port), "%d", r->port);
    r->phase = PH_RESOLVE;
    r->gai.data = r;
    int rc = uv_getaddrinfo(mx__ctx->loop, &r->gai, gai_on_done, r->host, port, &hints);
    if (rc < 0)
        return rc;
    r->gai_pending = true;
    r->refs++;
    return 0;
}

/* --------------------------------------------------------------- input --- */

/* Feeds plaintext response bytes to the parser.  Returns 1 when the
 * request was finished (the connection is detached then), else 0. */
static int conn_parse(cl_conn_t *c, const char *data, size_t len, bool more_buffered)
{
    cl_req_t *r = c->req;
    if (!r || r->phase != PH_SENT) {
        /* a server talking out of turn is not one to keep */
        if (r)
            req_finish(r, -EPROTO, "%s:%d sent data before the request", r->host, r->port);
        else
            conn_close(c);
        return 1;
    }
    r->got_bytes = true;
    r->received += len;
    if (r->received > r->max_response) {
        req_finish(r, MX_ETOOBIG, "response from %s:%d is larger than %zu bytes", r->host,
                   r->port, r->max_response);
        return 1;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (r->nomem) {
        req_finish(r, -ENOMEM, "out of memory reading the response");
        return 1;
    }
    if (e == HPE_PAUSED && r->msg_done) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        bool keep = llhttp_should_keep_alive(&c->parser) && used >= len && !more_buffered;
        struct mx_client_state *st = ST;
        conn_detach(r);
        if (keep && st)
            pool_put(st, c);
        else
            conn_close(c);
        req_finish(r, 0, NULL);
        return 1;
    }
    if (e != HPE_OK) {
        req_finish(r, -EPROTO, "invalid HTTP response from %s:%d: %s", r->host, r->port,
                   llhttp_get_error_reason(&c->parser));
        return 1;
    }
    return 0;
}

/* The server closed (err == UV_EOF) or the connection broke. */
static void conn_on_end(cl_conn_t *c, int err)
{
    cl_req_t *r = c->req;
    if (!r) {
        conn_close(c);
        return;
    }
    if (err == UV_EOF && r->phase == PH_SENT && r->got_bytes) {
        /* a body that runs until the connection closes ends here */
        llhttp_errno_t e = llhttp_finish(&c->parser);
        if ((e == HPE_OK || e == HPE_PAUSED) && r->msg_done && !r->nomem) {
            conn_detach(r);
            conn_close(c);
            req_finish(r, 0, NULL);
            return;
        }
        req_finish(r, -ECONNRESET, "%s:%d closed the connection mid-response", r->host,
                   r->port);
        return;
    }
    req_conn_failed(r, err == UV_EOF ? -ECONNRESET : err,
                    r->phase == PH_TLS ? "TLS handshake with" : "connection to");
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cl_conn_t *c = s->data;
    if (nread == 0 || c->closing) {
        free(buf->base);
        return;
    }
    if (nread < 0) {
        free(buf->base);
        conn_on_end(c, (int)nread);
        return;
    }
    if (!c->tls) {
        conn_parse(c, buf->base, (size_t)nread, false);
        free(buf->base);
        return;
    }
    int rc = mx__tlsc_feed(c->tls, buf->base, (size_t)nread);
    free(buf->base);
    if (rc < 0) {
        if (c->req)
            req_finish(c->req, rc, "out of memory");
        else
            conn_close(c);
        return;
    }
    if (!c->req) {
        conn_close(c);   /* an alert or close_notify on an idle connection */
        return;
    }
    if (!c->tls_ready) {
        tls_step(c);
        return;
    }
    char plain[16384];
    for (;;) {
        ssize_t n = mx__tlsc_read(c->tls, plain, sizeof(plain));
        if (n > 0) {
            if (conn_parse(c, plain, (size_t)n, false))
                return;
            continue;
        }
        if (n == 0)
            break;
        if (n == MX_TLSC_EOF) {
            conn_on_end(c, UV_EOF);
            return;
        }
        req_finish(c->req, -EPROTO, "TLS error reading from %s:%d", c->req->host,
                   c->req->port);
        return;
    }
    if (tls_flush(c) < 0 && c->req)
        req_conn_failed(c->req, -EPIPE, "write to");
}

/* --------------------------------------------------------------- timer --- */

static void req_on_timer(uv_timer_t *t)
{
    cl_req_t *r = t->data;
    if (r->finished)
        return;
    uint64_t now = uv_now(t->loop);
    if (r->phase == PH_CONNECT && now < r->deadline) {
        /* this address did not answer in time; try the next one */
        cl_conn_t *c = r->conn;
        conn_detach(r);
        if (c)
            conn_close(c);
        r->last_err = MX_ETIMEOUT;
        req_connect_next(r);
        return;
    }
    req_finish(r, MX_ETIMEOUT, "request to %s:%d timed out after %llu ms", r->host, r->port,
               (unsigned long long)r->timeout_ms);
}

static void req_arm(cl_req_t *r, uint64_t ms)
{
    uv_timer_start(&r->timer, req_on_timer, ms, 0);
}

/* ----------------------------------------------------------------- API --- */

int mx_http_fetch(const mx_http_request_t *rq, mx_http_done_fn cb, void *ud)
{
    struct mx_client_state *st = ST;
    if (!st)
        return -EINVAL;
    if (!rq || !rq->url || !cb || (rq->body_len > 0 && !rq->body))
        return -EINVAL;
    const char *method = rq->method ? rq->method : "GET";
    if (!is_token(method) || strlen(method) > 32)
        return -EINVAL;
    bool https;
    char *host, *target;
    int port;
    int rc = url_parse(rq->url, &https, &host, &port, &target);
    if (rc < 0)
        return rc;
    if (https && !st->tls) {
        free(host);
        free(target);
        return -ENOTSUP;
    }
    cl_req_t *r = calloc(1, sizeof(*r));
    if (!r) {
        free(host);
        free(target);
        return -ENOMEM;
    }
    r->refs = 1;   /* the timer's */
    r->cb = cb;
    r->ud = ud;
    r->https = https;
    r->host = host;
    r->port = port;
    r->allow_private = rq->allow_private != 0;
    r->is_head = strcmp(method, "HEAD") == 0;
    static const char *const idem[] = { "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE" };
    for (size_t i = 0; i < sizeof(idem) / sizeof(idem[0]); i++)
        r->idempotent |= strcmp(method, idem[i]) == 0;
    r->timeout_ms = rq->timeout_ms ? rq->timeout_ms : DEFAULT_TIMEOUT_MS;
    r->max_response = rq->max_response ? rq->max_response : DEFAULT_MAX_RESPONSE;
    size_t klen = strlen(host) + 32;
    r->key = malloc(klen);
    rc = r->key ? 0 : -ENOMEM;
    if (rc == 0)
        snprintf(r->key, klen, "%s://%s:%d", https ? "https" : "http", host, port);
    if (rc == 0)
        rc = req_build(r, rq, method, target);
    free(target);
    if (rc < 0) {
        req_unref(r);
        return rc;
    }
    r->deadline = uv_now(mx__ctx->loop) + r->timeout_ms;

    cl_conn_t *c = pool_take(st, r->key);
    if (!c) {
        rc = req_resolve(r);
        if (rc < 0) {
            req_unref(r);
            return rc;
        }
    }
    uv_timer_init(mx__ctx->loop, &r->timer);
    r->timer.data = r;
    req_arm(r, r->timeout_ms);
    r->next = st->active;
    if (st->active)
        st->active->prev = r;
    st->active = r;
    if (c) {
        r->reused = true;
        r->conn = c;
        c->req = r;
        req_send(r);
    }
    return 0;
}

const mx__cidr_t *mx__client_whitelist(int *n)
{
    struct mx_client_state *st = ST;
    *n = st ? st->nwl : 0;
    return st ? st->wl : NULL;
}

static void sweep_on_closed(uv_handle_t *h)
{
    free(h);
}

int mx__client_init(const mx_client_conf_t *conf)
{
    if (!mx__ctx || !mx__ctx->loop || mx__ctx->client)
        return -EINVAL;
    struct mx_client_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    int rc = 0;
    if (conf) {
        if (conf->nwhitelist < 0 || conf->nwhitelist > 16)
            rc = -EINVAL;
        for (int i = 0; rc == 0 && i < conf->nwhitelist; i++) {
            rc = mx__cidr_parse(conf->ip_range_whitelist[i], &st->wl[i]);
            if (rc < 0)
                mx_log("core", MX_LOG_ERROR, "client.ip_range_whitelist: bad range \"%s\"",
                       conf->ip_range_whitelist[i]);
        }
        st->nwl = conf->nwhitelist;
    }
    if (rc == 0) {
        rc = mx__tlsc_conf_new(conf ? conf->ca_file : NULL, conf ? conf->extra_ca_file : NULL,
                               &st->tls, st->tls_err, sizeof(st->tls_err));
        if (rc < 0 && !(conf && conf->extra_ca_file)) {
            /* without any CA the server still runs; https requests fail */
            mx_log("core", MX_LOG_WARN, "outbound HTTPS disabled: %s", st->tls_err);
            st->tls = NULL;
            rc = 0;
        } else if (rc < 0) {
            mx_log("core", MX_LOG_ERROR, "client: %s", st->tls_err);
        }
    }
    if (rc == 0) {
        st->sweep = malloc(sizeof(*st->sweep));
        rc = st->sweep ? 0 : -ENOMEM;
    }
    if (rc < 0) {
        mx__tlsc_conf_free(st->tls);
        free(st->sweep);
        free(st);
        return rc;
    }
    uv_timer_init(mx__ctx->loop, st->sweep);
    uv_unref((uv_handle_t *)st->sweep);
    mx__ctx->client = st;
    return 0;
}

void mx__client_fini(void)
{
    struct mx_client_state *st = ST;
    if (!st)
        return;
    while (st->active)
        req_finish(st->active, -ECANCELED, "the HTTP client is shutting down");
    while (st->idle)
        conn_close(st->idle);
    uv_close((uv_handle_t *)st->sweep, sweep_on_closed);
    mx__tlsc_conf_free(st->tls);
    free(st);
    mx__ctx->client = NULL;
}
