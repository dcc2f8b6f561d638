/*
 * http_req.c: requests as modules see them.  Builds a request from the
 * parsed header block (target split and checked, query decoded, client
 * address behind trusted proxies, route looked up, body limit applied),
 * runs the handlers, and turns replies into one buffer of response headers
 * plus the body, with CORS, access log and metrics on the way out.
 */
#include "http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char cors_headers[] =
    "Access-Control-Allow-Origin: *\r\n"
    "Access-Control-Allow-Methods: GET, HEAD, POST, PUT, DELETE, OPTIONS\r\n"
    "Access-Control-Allow-Headers: X-Requested-With, Content-Type, Authorization, Date\r\n";

/* ------------------------------------------------------------ helpers --- */

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (!c)
                return false;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* Decodes `s[0..len)` into the pool; NULL on a bad escape, invalid UTF-8 or
 * a NUL. */
static char *decode_checked(mx_pool_t *pool, const char *s, size_t len, int plus)
{
    char *out = mx_palloc(pool, len + 1);
    if (!out)
        return NULL;
    long n = mx__url_decode(s, len, out, plus);
    if (n < 0 || !utf8_valid((const unsigned char *)out, (size_t)n))
        return NULL;
    return out;
}

static bool prefix_segment(const char *path, const char *pre)
{
    size_t n = strlen(pre);
    return !strncmp(path, pre, n) && (path[n] == '/' || path[n] == '\0');
}

static bool cors_path(const char *path)
{
    return prefix_segment(path, "/_matrix") || prefix_segment(path, "/_synapse") ||
           prefix_segment(path, "/.well-known") || prefix_segment(path, "/api");
}

static const char *find_header(const mx_req_t *r, const char *name)
{
    for (int i = 0; i < r->nhdr; i++)
        if (!strcasecmp(r->hnames[i], name))
            return r->hvals[i];
    return NULL;
}

/* The right-most address of X-Forwarded-For that is not a trusted proxy. */
static const char *forwarded_for(mx_req_t *r, const char *xff)
{
    const char *best = NULL;
    size_t n = strlen(xff);
    char *copy = mx_palloc(r->pool, n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, xff, n + 1);
    for (;;) {
        char *comma = strrchr(copy, ',');
        char *item = comma ? comma + 1 : copy;
        while (*item == ' ' || *item == '\t')
            item++;
        char *end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        unsigned char tmp[16];
        if (inet_pton(AF_INET, item, tmp) != 1 && inet_pton(AF_INET6, item, tmp) != 1)
            return best;   /* garbage: keep the last good hop */
        best = item;
        if (!mx__http_ip_trusted(item) || !comma)
            return best;
        *comma = '\0';
    }
}

static void early_fail(mx__conn_t *c, int status, const char *errcode, const char *msg)
{
    c->early_status = status;
    c->early_errcode = errcode;
    c->early_msg = msg;
}

static mx_req_t *req_new(mx__conn_t *c)
{
    mx_pool_t *pool = c->spare;
    c->spare = NULL;
    if (!pool && !(pool = mx_pool_new()))
        return NULL;
    mx_req_t *r = mx_palloc(pool, sizeof(*r));
    if (!r) {
        mx_pool_free(pool);
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->magic = MX__REQ_MAGIC;
    r->pool = pool;
    r->conn = c;
    r->method = "-";
    r->path = "-";
    r->client_ip = c->peer_ip[0] ? c->peer_ip : "-";
    r->scheme = c->tls ? "https" : "http";
    r->start_ns = uv_hrtime();
    r->keep_alive = true;
    r->resmask = c->resmask;
    r->lconf = c->lconf;
    r->file_fd = -1;
    c->cur = r;
    return r;
}

static void route(mx_req_t *r)
{
    r->route_rc = mx__router_match_mask(r->resmask, r->method, r->path, r->skip, r->pool,
                                        &r->match, &r->allow);
}

/* ---------------------------------------------------------- building --- */

int mx__req_begin(mx__conn_t *c)
{
    mx_req_t *r = req_new(c);
    if (!r) {
        early_fail(c, 503, "M_UNKNOWN", "Out of memory");
        return -1;
    }
    llhttp_t *p = &c->parser;
    r->method = llhttp_method_name((llhttp_method_t)p->method);
    r->http_minor = p->http_minor;
    r->is_head = p->method == HTTP_HEAD;
    r->keep_alive = llhttp_should_keep_alive(p);
    if (p->http_major != 1) {
        early_fail(c, 400, "M_UNKNOWN", "Unsupported HTTP version");
        return -1;
    }
    char *h = mx_palloc(r->pool, c->hlen + 1);
    r->hnames = mx_palloc(r->pool, sizeof(char *) * (size_t)(c->nhdr + 1));
    r->hvals = mx_palloc(r->pool, sizeof(char *) * (size_t)(c->nhdr + 1));
    if (!h || !r->hnames || !r->hvals) {
        early_fail(c, 503, "M_UNKNOWN", "Out of memory");
        return -1;
    }
    memcpy(h, c->hbuf, c->hlen);
    h[c->hlen] = '\0';
    for (int i = 0; i < c->nhdr; i++) {
        r->hnames[i] = h + c->hname[i].off;
        r->hvals[i] = c->hval[i].len || c->hval[i].off ? h + c->hval[i].off : "";
    }
    r->nhdr = c->nhdr;

    /* The target: origin-form, or absolute-form from proxies. */
    char *t = h + c->url.off;
    r->target = t;
    if (t[0] != '/') {
        char *sl = NULL;
        if (!strncasecmp(t, "http://", 7) || !strncasecmp(t, "https://", 8))
            sl = strchr(strstr(t, "//") + 2, '/');
        if (!sl) {
            early_fail(c, 400, "M_UNRECOGNIZED", "Unrecognized request");
            return -1;
        }
        t = sl;
    }
    char *q = strchr(t, '?');
    char *frag = strchr(t, '#');
    if (frag)
        *frag = '\0';
    if (q) {
        *q++ = '\0';
        r->query = q;
    }
    r->path = t;
    if (!decode_checked(r->pool, t, strlen(t), 0)) {
        early_fail(c, 400, "M_INVALID_PARAM", "Invalid characters in path");
        return -1;
    }
    if (q && *q) {
        const char *s = q;
        while (*s) {
            const char *amp = strchr(s, '&');
            size_t len = amp ? (size_t)(amp - s) : strlen(s);
            const char *eq = memchr(s, '=', len);
            size_t nlen = eq ? (size_t)(eq - s) : len;
            char *name = decode_checked(r->pool, s, nlen, 1);
            char *val = eq ? decode_checked(r->pool, eq + 1, len - nlen - 1, 1) : (char *)"";
            if (!name || !val) {
                early_fail(c, 400, "M_INVALID_PARAM", "Invalid characters in query string");
                return -1;
            }
            if (len && r->nquery < MX__HTTP_MAX_QUERY) {
                r->qnames[r->nquery] = name;
                r->qvals[r->nquery++] = val;
            }
            if (!amp)
                break;
            s = amp + 1;
        }
    }

    /* The site: by Host among the listeners sharing this socket. */
    bool site_known = true;
    if (c->group) {
        const mx__site_t *site = mx__vgroup_pick(c->group, find_header(r, "Host"));
        if (site) {
            r->resmask = site->resmask;
            r->lconf = site->conf;
        } else {
            site_known = false;
        }
    }

    if (c->peer_trusted && r->lconf && r->lconf->x_forwarded) {
        const char *xff = find_header(r, "X-Forwarded-For");
        const char *ip = xff ? forwarded_for(r, xff) : NULL;
        if (ip)
            r->client_ip = ip;
        const char *proto = find_header(r, "X-Forwarded-Proto");
        if (proto && (!strcasecmp(proto, "https") || !strcasecmp(proto, "http")))
            r->scheme = !strcasecmp(proto, "https") ? "https" : "http";
    }

    r->cors = cors_path(r->path);
    bool preflight = r->cors && p->method == HTTP_OPTIONS;
    if (!site_known)
        r->route_rc = -ENOENT;
    else if (!preflight)
        route(r);
    if (r->route_rc == 0 && (r->match.flags & MX_ROUTE_NO_CORS))
        r->cors = false;

    uint64_t limit = mx__ctx && mx__ctx->conf ? mx__ctx->conf->http.max_body_size : 0;
    if (r->route_rc == 0 && (r->match.flags & MX_ROUTE_LARGE_BODY) && mx__ctx && mx__ctx->conf &&
        mx__ctx->conf->server.max_upload_size)
        limit = mx__ctx->conf->server.max_upload_size;
    if (r->route_rc == 0 && (r->match.flags & MX_ROUTE_STREAM_BODY)) {
        r->stream_mode = true;
        limit = mx__ctx && mx__ctx->conf ? mx__ctx->conf->server.max_upload_size : 0;
        if (!limit)
            limit = 50 * 1024 * 1024;
    }
    if (!limit)
        limit = 10 * 1024 * 1024;
    r->body_limit = limit;
    bool has_body = false;
    if (p->flags & F_CONTENT_LENGTH) {
        if (p->content_length > limit) {
            early_fail(c, 413, "M_TOO_LARGE", "Request body too large");
            return -1;
        }
        if (p->content_length && !r->stream_mode) {
            r->body_cap = (size_t)p->content_length;
            r->body = mx_palloc(r->pool, r->body_cap + 1);
            if (!r->body) {
                early_fail(c, 503, "M_UNKNOWN", "Out of memory");
                return -1;
            }
            has_body = true;
        }
    } else if (p->flags & F_CHUNKED) {
        has_body = true;
    }
    if (has_body) {
        const char *expect = find_header(r, "Expect");
        if (expect && !strcasecmp(expect, "100-continue") && r->http_minor >= 1)
            mx__conn_send_raw(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    return 0;
}

/* Pool cleanup of a chunked body (the request itself lives in the pool,
 * whose cleanups run before its blocks are freed). */
static void body_free(void *arg)
{
    mx_req_t *r = arg;
    free(r->body);
    r->body = NULL;
}

static void free_owned(void *p)
{
    free(p);
}

/* A piece of a streamed body: to the module.  0 = more, 1 = hold. */
static int body_chunk(mx__conn_t *c, mx_req_t *r, const char *p, size_t len)
{
    if (r->body_failed || r->body_done || !r->chunk_fn) {
        c->body_hold = true;   /* nobody takes these bytes: stop reading */
        return 1;
    }
    r->body_len += len;
    int rc = r->chunk_fn(r, p, len, r->stream_ud);
    if (c->cur != r || c->closing || c->close_wanted)
        return 1;   /* the module replied (r may be gone) */
    if (rc < 0) {
        r->body_failed = true;
        r->keep_alive = false;
        c->body_hold = true;
        return 1;
    }
    if (rc > 0) {
        r->body_paused = true;
        c->body_hold = true;
    }
    return c->body_hold ? 1 : 0;
}

int mx__req_body(mx__conn_t *c, const char *p, size_t len)
{
    mx_req_t *r = c->cur;
    if (!r)
        return -1;
    if (r->body_len + len > r->body_limit) {
        early_fail(c, 413, "M_TOO_LARGE", "Request body too large");
        return -1;
    }
    if (r->stream_mode)
        return body_chunk(c, r, p, len);
    if (r->body_len + len > r->body_cap) {
        /* Chunked: grow (only ever up to the limit). */
        size_t cap = r->body_cap ? r->body_cap * 2 : 4096;
        while (cap < r->body_len + len)
            cap *= 2;
        if (cap > r->body_limit)
            cap = (size_t)r->body_limit;
        char *n = realloc(r->body_malloced ? r->body : NULL, cap + 1);
        if (!n) {
            early_fail(c, 503, "M_UNKNOWN", "Out of memory");
            return -1;
        }
        if (!r->body_malloced) {
            if (r->body_len)
                memcpy(n, r->body, r->body_len);
            if (mx_pool_on_free(r->pool, body_free, r) < 0) {
                free(n);
                early_fail(c, 503, "M_UNKNOWN", "Out of memory");
                return -1;
            }
            r->body_malloced = true;
        }
        r->body = n;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, p, len);
    r->body_len += len;
    return 0;
}

/* ------------------------------------------------------------ replies --- */

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static void release(mx_req_t *r)
{
    mx__conn_t *c = r->conn;
    mx_pool_t *pool = r->pool;
    r->magic = 0;
    if (c && !c->closing && !c->spare) {
        mx_pool_reset(pool);
        c->spare = pool;
    } else {
        mx_pool_free(pool);
    }
}

void mx__req_written(mx_req_t *r)
{
    if (r->in_handler) {
        r->release_wanted = true;
        return;
    }
    release(r);
}

void mx__req_detach(mx_req_t *r)
{
    r->conn = NULL;
    if (!r->dispatched || r->replied) {
        if (!r->in_handler)
            release(r);
        else
            r->release_wanted = true;
        return;
    }
    r->aborted = true;
    /* A reply from these callbacks only marks the request; it is freed
     * after both ran. */
    bool was = r->in_handler;
    r->in_handler = true;
    if (r->abort_fn)
        r->abort_fn(r, r->abort_ud);
    if (r->stream_mode && !r->replied)
        mx__req_body_end(r, -ECONNRESET);
    r->in_handler = was;
    if (!was && r->release_wanted)
        release(r);
}

void mx__req_body_end(mx_req_t *r, int status)
{
    if (r->body_done)
        return;
    r->body_done = true;
    if (r->end_fn && !r->body_failed)
        r->end_fn(r, status, r->stream_ud);
}

void mx__req_file_close(void *arg)
{
    mx_req_t *r = arg;
    if (r->file_fd >= 0)
        close(r->file_fd);
    r->file_fd = -1;
}

bool mx__req_is_aborted(const mx_req_t *r)
{
    return r->aborted;
}

static char *put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

static char *puts_(char *o, const char *s)
{
    return put(o, s, strlen(s));
}

static const char *log_path(mx_req_t *r)
{
    if (!r->query)
        return r->path;
    if (!strstr(r->query, "access_token"))
        return mx_psprintf(r->pool, "%s?%s", r->path, r->query);
    /* Drop access_token=... from what the log shows. */
    size_t n = strlen(r->query);
    char *q = mx_palloc(r->pool, n + 1);
    if (!q)
        return r->path;
    char *o = q;
    const char *s = r->query;
    while (*s) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        if (!(len >= 12 && !strncmp(s, "access_token", 12) && (len == 12 || s[12] == '='))) {
            if (o != q)
                *o++ = '&';
            memcpy(o, s, len);
            o += len;
        }
        if (!amp)
            break;
        s = amp + 1;
    }
    *o = '\0';
    return *q ? mx_psprintf(r->pool, "%s?%s", r->path, q) : r->path;
}

/* Two digits of `v` at `o`. */
static char *put2(char *o, int v)
{
    *o++ = (char)('0' + v / 10 % 10);
    *o++ = (char)('0' + v % 10);
    return o;
}

/* The Date header's value (RFC 9110 6.6.1), an IMF-fixdate formatted once
 * a second into the server state (into `tmp`, 32 bytes, in memory mode). */
static const char *date_now(char *tmp)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char mons[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    time_t now = time(NULL);
    if (st && st->date_sec == (int64_t)now && st->date[0])
        return st->date;
    char *out = st ? st->date : tmp;
    struct tm tm;
    gmtime_r(&now, &tm);
    int year = tm.tm_year + 1900;
    if (year < 0 || year > 9999)
        year = 1970;
    char *o = put(out, days + 3 * tm.tm_wday, 3);
    o = put(o, ", ", 2);
    o = put2(o, tm.tm_mday);
    *o++ = ' ';
    o = put(o, mons + 3 * tm.tm_mon, 3);
    *o++ = ' ';
    o = put2(o, year / 100);
    o = put2(o, year % 100);
    *o++ = ' ';
    o = put2(o, tm.tm_hour);
    *o++ = ':';
    o = put2(o, tm.tm_min);
    *o++ = ':';
    o = put2(o, tm.tm_sec);
    o = put(o, " GMT", 5);   /* with its NUL */
    if (st)
        st->date_sec = (int64_t)now;
    return out;
}

/* Writes `v` in decimal at `o`; the end. */
static char *put_u64(char *o, uint64_t v)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        *o++ = tmp[--k];
    return o;
}

/* Builds the response's header block into the pool and sets r->wbufs:
 * status line, Server, Date, Content-Length, Content-Type, CORS, Allow,
 * the headers set by the module, r->pre_hdrs (mx_req_reply_prepared:
 * borrowed, a buffer of its own), Connection, the blank line, the body.
 * -ENOMEM when the pool is exhausted. */
static int build_head(mx_req_t *r, int status, const char *ctype, const void *body, size_t len,
                      bool bodyless, bool file)
{
    bool has_ctype = false;
    size_t need = 160 + (ctype ? strlen(ctype) : 0) + (r->cors ? sizeof(cors_headers) : 0);
    for (int i = 0; i < r->nextra; i++) {
        need += strlen(r->extra[i].name) + strlen(r->extra[i].value) + 4;
        if (!strcasecmp(r->extra[i].name, "Content-Type"))
            has_ctype = true;
    }
    if (status == 405)
        need += 80;
    char *hb = mx_palloc(r->pool, need);
    if (!hb)
        return -ENOMEM;
    char *o = hb;
    char date[32];
    o = puts_(o, "HTTP/1.1 ");
    o = put_u64(o, (uint64_t)status);
    *o++ = ' ';
    o = puts_(o, reason(status));
    o = puts_(o, "\r\nServer: mxstack\r\nDate: ");
    o = puts_(o, date_now(date));
    o = put(o, "\r\n", 2);
    if (!bodyless) {
        o = puts_(o, "Content-Length: ");
        o = put_u64(o, len);
        o = put(o, "\r\n", 2);
    }
    if (ctype && !has_ctype && !bodyless) {
        o = puts_(o, "Content-Type: ");
        o = puts_(o, ctype);
        o = put(o, "\r\n", 2);
    }
    if (r->cors)
        o = put(o, cors_headers, sizeof(cors_headers) - 1);
    if (status == 405) {
        o = puts_(o, "Allow: ");
        static const char *const names[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                             "PATCH" };
        bool first = true;
        for (int i = 0; i < 7; i++) {
            if (!(r->allow & (1u << i)))
                continue;
            if (!first)
                o = put(o, ", ", 2);
            o = puts_(o, names[i]);
            first = false;
        }
        o = put(o, "\r\n", 2);
    }
    for (int i = 0; i < r->nextra; i++) {
        o = puts_(o, r->extra[i].name);
        o = put(o, ": ", 2);
        o = puts_(o, r->extra[i].value);
        o = put(o, "\r\n", 2);
    }
    const char *tail = !r->keep_alive        ? "Connection: close\r\n\r\n"
                       : r->http_minor == 0 ? "Connection: keep-alive\r\n\r\n"
                                            : "\r\n";
    r->nwbufs = 0;
    if (r->pre_hlen) {
        /* The module's lines stay where they are; the end of the block is
         * a static string. */
        r->wbufs[r->nwbufs++] = uv_buf_init(hb, (unsigned)(o - hb));
        r->wbufs[r->nwbufs++] = uv_buf_init((char *)r->pre_hdrs, (unsigned)r->pre_hlen);
        r->wbufs[r->nwbufs++] = uv_buf_init((char *)tail, (unsigned)strlen(tail));
        r->borrowed = true;
    } else {
        o = puts_(o, tail);
        r->wbufs[r->nwbufs++] = uv_buf_init(hb, (unsigned)(o - hb));
    }
    if (len && !r->is_head && !file)
        r->wbufs[r->nwbufs++] = uv_buf_init((char *)body, (unsigned)len);
    return 0;
}

/* Sends the response.  `body` is in the pool already, or malloc'd
 * (`owned`; freed with the pool), or the caller's for the time of the call
 * (`r->borrowed`, mx_req_reply_prepared). */
static void reply(mx_req_t *r, int status, const char *ctype, const void *body, size_t len,
                  bool owned)
{
    if (!r || r->magic != MX__REQ_MAGIC) {
        if (owned)
            free((void *)body);
        return;
    }
    if (r->replied) {
#ifdef MX_DEBUG
        assert(!"second reply to a request");
#endif
        mx_log("http", MX_LOG_ERROR, "second reply to %s %s ignored", r->method, r->path);
        if (owned)
            free((void *)body);
        return;
    }
    r->replied = true;
    if (owned && mx_pool_on_free(r->pool, free_owned, (void *)body) < 0) {
        free((void *)body);
        body = NULL;
        len = 0;
        status = 500;
    }
    mx__conn_t *c = r->conn;
    if (!c) {
        /* The client went away (MX_ASYNC + abort): only free. */
        if (!r->in_handler)
            release(r);
        else
            r->release_wanted = true;
        return;
    }
    if (status < 100 || status > 999)
        status = 500;
    r->status = status;
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (st && st->draining)
        r->keep_alive = false;
    if (r->stream_mode && !r->body_done) {
        /* Answered before the whole body came: no more pieces, and the
         * rest of the body is never read, so the connection ends. */
        r->body_done = true;
        r->keep_alive = false;
    }
    /* 1xx, 204 and 304 have no body and no Content-Length (RFC 9110 8.6). */
    bool bodyless = status < 200 || status == 204 || status == 304;
    if (bodyless)
        len = 0;
    bool file = r->file_fd >= 0 && len && !r->is_head;
    if (build_head(r, status, ctype, body, len, bodyless, file) < 0) {
        mx__conn_close(c);
        return;
    }

    double secs = (double)(uv_hrtime() - r->start_ns) / 1e9;
    mx__log_access(r->method, log_path(r), status, len, secs * 1000.0, r->user, r->client_ip);
    mx__metrics_observe_request(r->method, r->route_rc == 0 && r->match.pattern ? r->match.pattern
                                                                               : "unmatched",
                                status, secs);
    if (file) {
        r->file_left = len;
        mx__conn_send_file(c, r);
        return;
    }
    mx__conn_send_response(c, r);
}

void mx__req_reply_fd(mx_req_t *r, int status, const char *ctype, int fd, off_t off, size_t len)
{
    if (!r || r->magic != MX__REQ_MAGIC || r->replied || fd < 0 ||
        mx_pool_on_free(r->pool, mx__req_file_close, r) < 0) {
        if (fd >= 0)
            close(fd);
        if (r && r->magic == MX__REQ_MAGIC && !r->replied)
            mx_req_error(r, 500, "M_UNKNOWN", "Internal server error");
        return;
    }
    r->file_fd = fd;
    r->file_off = off;
    reply(r, status, ctype, NULL, len, false);
}

void mx_req_reply(mx_req_t *r, int status, const char *content_type, const void *body,
                  size_t len)
{
    /* The body is the caller's: it leaves now or is copied (own_rest in
     * http_conn.c), never kept past this call. */
    if (r && r->magic == MX__REQ_MAGIC && !r->replied && r->conn && len)
        r->borrowed = true;
    reply(r, status, content_type, body, len, false);
}

void mx_req_reply_prepared(mx_req_t *r, int status, const char *headers, size_t hlen,
                           const void *body, size_t len)
{
    if (!r || r->magic != MX__REQ_MAGIC || r->replied || !r->conn) {
        /* Spent or detached: reply() knows what to do, and nothing is
         * borrowed then. */
        reply(r, status, NULL, NULL, 0, false);
        return;
    }
    r->pre_hdrs = headers;
    r->pre_hlen = headers ? hlen : 0;
    reply(r, status, NULL, body, len, false);
}

void mx_req_reply_json(mx_req_t *r, int status, json_t *body)
{
    char *s = NULL;
    if (body && r && r->magic == MX__REQ_MAGIC && !r->replied && r->conn)
        s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s) {
        reply(r, body ? 500 : status, "application/json", "{}", 2, false);
        return;
    }
    reply(r, status, "application/json", s, strlen(s), true);
}

void mx_req_error(mx_req_t *r, int status, const char *errcode, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "errcode", json_string(errcode ? errcode : "M_UNKNOWN"));
    /* The message may hold arbitrary bytes (a path): never let it break
     * the JSON. */
    json_t *m = json_string(msg);
    json_object_set_new(o, "error", m ? m : json_string("error"));
    mx_req_reply_json(r, status, o);
}

void mx__req_early_reply(mx__conn_t *c, int status, const char *errcode, const char *msg)
{
    mx_req_t *s = c->cur;
    if (s && s->stream_mode && s->dispatched && !s->replied) {
        /* A streamed body failed midway (too large, bad chunking): the
         * module's request is detached and told; the answer goes out on a
         * request of its own. */
        c->cur = NULL;
        s->conn = NULL;
        s->aborted = true;
        mx__req_body_end(s, status == 413 ? MX_ETOOBIG : -ECONNRESET);
    }
    mx_req_t *r = c->cur ? c->cur : req_new(c);
    if (!r) {
        mx__conn_close(c);
        return;
    }
    r->keep_alive = false;
    r->dispatched = true;
    if (!r->path || !r->path[0] || r->path[0] != '/')
        r->cors = false;
    mx_req_error(r, status, errcode, "%s", msg);
}

/* ----------------------------------------------------------- dispatch --- */

void mx__req_dispatch(mx__conn_t *c)
{
    mx_req_t *r = c->cur;
    if (!r) {
        mx__conn_close(c);
        return;
    }
    r->dispatched = true;
    if (r->body)
        r->body[r->body_len] = '\0';
    if (r->cors && !strcmp(r->method, "OPTIONS")) {
        /* CORS preflight: answered here for any path, known or not. */
        reply(r, 204, NULL, NULL, 0, false);
        return;
    }
    for (;;) {
        if (r->route_rc == -ENOENT || (r->route_rc == -EPERM && r->skip)) {
            mx_req_error(r, 404, "M_UNRECOGNIZED", "Unrecognized request");
            return;
        }
        if (r->route_rc == -EPERM) {
            mx_req_error(r, 405, "M_UNRECOGNIZED", "Unrecognized request");
            return;
        }
        if (r->route_rc < 0) {
            mx_req_error(r, 500, "M_UNKNOWN", "Internal error");
            return;
        }
        if ((r->match.flags & MX_ROUTE_JSON_BODY) && !r->json) {
            if (!r->body_len) {
                r->json = json_object();
            } else {
                const char *code = NULL;
                char why[160];
                r->json = mx_json_parse(r->body, r->body_len, &code, why, sizeof(why));
                if (!r->json) {
                    mx_req_error(r, 400, code ? code : "M_NOT_JSON", "Content not JSON: %s", why);
                    return;
                }
                if (!json_is_object(r->json)) {
                    json_decref(r->json);
                    r->json = NULL;
                    mx_req_error(r, 400, "M_BAD_JSON", "Content must be a JSON object");
                    return;
                }
            }
            if (!r->json || mx_pool_on_free(r->pool, (void (*)(void *))json_decref, r->json) < 0) {
                json_decref(r->json);
                r->json = NULL;
                mx_req_error(r, 500, "M_UNKNOWN", "Out of memory");
                return;
            }
        }
        r->in_handler = true;
        int rc = r->match.fn(r, r->match.ud);
        r->in_handler = false;
        if (r->release_wanted) {
            release(r);
            return;
        }
        if (r->replied)
            return;
        if (rc == MX_ASYNC)
            return;
        if (rc == MX_DECLINED) {
            r->skip++;
            route(r);
            if (r->stream_mode && !(r->route_rc == 0 && (r->match.flags & MX_ROUTE_STREAM_BODY)) &&
                r->conn && r->conn->phase == MX__C_BODY) {
                /* The next route wants the body whole: buffer it, and
                 * dispatch again once it is complete. */
                r->stream_mode = false;
                r->dispatched = false;
                r->conn->body_hold = false;
                return;
            }
            continue;
        }
        if (r->conn) {
            mx_log("http", MX_LOG_ERROR, "handler for %s %s returned %d without replying",
                   r->method, r->match.pattern, rc);
            mx_req_error(r, 500, "M_UNKNOWN", "Internal server error");
        }
        return;
    }
}

/* ----------------------------------------------------------------- API --- */

int mx_req_body_stream(mx_req_t *r, mx_req_chunk_fn on_chunk, mx_req_body_end_fn on_end,
                       void *ud)
{
    if (!r || r->magic != MX__REQ_MAGIC || !r->stream_mode || r->chunk_fn || !on_chunk ||
        !on_end || r->replied)
        return -EINVAL;
    r->chunk_fn = on_chunk;
    r->end_fn = on_end;
    r->stream_ud = ud;
    if (!r->conn) {
        /* The client left before the module asked for the body. */
        on_end(r, -ECONNRESET, ud);
        return 0;
    }
    if (!r->body_paused)
        mx__conn_body_unhold(r->conn);
    return 0;
}

void mx_req_body_pause(mx_req_t *r)
{
    if (!r || r->magic != MX__REQ_MAGIC || !r->stream_mode || r->body_done)
        return;
    r->body_paused = true;
    if (r->conn)
        r->conn->body_hold = true;
}

void mx_req_body_resume(mx_req_t *r)
{
    if (!r || r->magic != MX__REQ_MAGIC || !r->stream_mode || !r->body_paused)
        return;
    r->body_paused = false;
    if (r->conn && r->chunk_fn && !r->body_failed && !r->body_done)
        mx__conn_body_unhold(r->conn);
}

const char *mx_req_method(mx_req_t *r)
{
    return r->method;
}

const char *mx_req_path(mx_req_t *r)
{
    return r->path;
}

const char *mx_req_param(mx_req_t *r, const char *name)
{
    for (int i = 0; i < r->match.nparams; i++)
        if (!strcmp(r->match.param_names[i], name))
            return r->match.param_values[i];
    return NULL;
}

const char *mx_req_query(mx_req_t *r, const char *name)
{
    for (int i = 0; i < r->nquery; i++)
        if (!strcmp(r->qnames[i], name))
            return r->qvals[i];
    return NULL;
}

const char *mx_req_query_nth(mx_req_t *r, const char *name, int n)
{
    for (int i = 0; i < r->nquery && n >= 0; i++)
        if (!strcmp(r->qnames[i], name) && n-- == 0)
            return r->qvals[i];
    return NULL;
}

const char *mx_req_header(mx_req_t *r, const char *name)
{
    return find_header(r, name);
}

const char *mx_req_body(mx_req_t *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body ? r->body : "";
}

json_t *mx_req_json(mx_req_t *r)
{
    return r->json;
}

const char *mx_req_client_ip(mx_req_t *r)
{
    return r->client_ip;
}

const char *mx_req_access_token(mx_req_t *r)
{
    const char *a = find_header(r, "Authorization");
    if (a && !strncasecmp(a, "Bearer ", 7)) {
        a += 7;
        while (*a == ' ')
            a++;
        if (*a)
            return a;
    }
    return mx_req_query(r, "access_token");
}

mx_pool_t *mx_req_pool(mx_req_t *r)
{
    return r->pool;
}

void mx_req_set_user(mx_req_t *r, const char *user_id)
{
    r->user = user_id ? mx_pstrdup(r->pool, user_id) : NULL;
}

void mx_req_on_abort(mx_req_t *r, mx_req_abort_fn fn, void *ud)
{
    r->abort_fn = fn;
    r->abort_ud = ud;
}

void mx_req_set_header(mx_req_t *r, const char *name, const char *value)
{
    if (!name || !value || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return;   /* never let a module split the response */
    for (int i = 0; i < r->nextra; i++) {
        if (!strcasecmp(r->extra[i].name, name)) {
            r->extra[i].value = mx_pstrdup(r->pool, value);
            return;
        }
    }
    if (r->nextra == MX__HTTP_MAX_EXTRA_HEADERS)
        return;
    const char *n = mx_pstrdup(r->pool, name), *v = mx_pstrdup(r->pool, value);
    if (n && v) {
        r->extra[r->nextra].name = n;
        r->extra[r->nextra++].value = v;
    }
}
