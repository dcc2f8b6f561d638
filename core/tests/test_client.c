/*
 * test_client.c: unit tests for the outbound HTTP client (core/http_client.c,
 * core/ssrf.c, core/tls_client.c).
 *
 * The tests run real servers inside the process: a raw libuv TCP server on
 * 127.0.0.1 that answers canned responses (Content-Length, chunked,
 * close-delimited, slow, huge, keep-alive, a connection dropped on reuse),
 * and a blocking mbedTLS server on a thread, with a CA and server
 * certificates made by the `openssl` command at test time.  The SSRF guard
 * is tested on addresses directly and end to end.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "core.h"

mx_ctx_t *mx__ctx;

static mx_ctx_t ctx;
static mx_conf_t conf;
static uv_loop_t loop;

/* ------------------------------------------------------ result capture --- */

typedef struct result {
    int calls;
    int status, err;
    char errmsg[256];
    char *body;
    size_t body_len;
    char headers[2048];       /* "name: value\n"... */
} result_t;

static void on_done(const mx_http_response_t *resp, void *ud)
{
    result_t *r = ud;
    r->calls++;
    r->status = resp->status;
    r->err = resp->err;
    if (resp->errmsg)
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", resp->errmsg);
    assert_non_null(resp->body);
    assert_int_equal(resp->body[resp->body_len], '\0');
    r->body = malloc(resp->body_len + 1);
    memcpy(r->body, resp->body, resp->body_len + 1);
    r->body_len = resp->body_len;
    size_t o = 0;
    for (size_t i = 0; i < resp->nheaders; i++)
        o += (size_t)snprintf(r->headers + o, o < sizeof(r->headers) ? sizeof(r->headers) - o : 0,
                              "%s: %s\n", resp->header_names[i], resp->header_values[i]);
}

static void run_until(result_t *r)
{
    uint64_t start = uv_now(&loop);
    while (r->calls == 0) {
        uv_run(&loop, UV_RUN_ONCE);
        assert_true(uv_now(&loop) - start < 20000);
    }
    /* let anything else that is ready run: the callback must not repeat */
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(r->calls, 1);
}

/* Fetches `url` and waits for the answer. */
static void fetch(result_t *r, const char *method, const char *url, const char *body,
                  int allow_private, size_t max_response, uint64_t timeout_ms)
{
    memset(r, 0, sizeof(*r));
    static const char *const hdrs[] = { "X-Custom: yes", NULL };
    mx_http_request_t rq = {
        .method = method,
        .url = url,
        .headers = hdrs,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = timeout_ms ? timeout_ms : 5000,
        .max_response = max_response,
        .allow_private = allow_private,
    };
    assert_int_equal(mx_http_fetch(&rq, on_done, r), 0);
    run_until(r);
}

static void result_free(result_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* -------------------------------------------------- plain test server --- */

typedef struct srv_conn {
    uv_tcp_t tcp;
    char *buf;
    size_t len, cap;
    int nreq;
    bool closing;
} srv_conn_t;

static uv_tcp_t srv_listener;
static int srv_port;
static int srv_accepted;

typedef struct srv_write {
    uv_write_t w;
    bool close_after;
    char data[];
} srv_write_t;

static void srv_on_closed(uv_handle_t *h)
{
    srv_conn_t *c = h->data;
    free(c->buf);
    free(c);
}

static void srv_close(srv_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, srv_on_closed);
}

static void srv_on_write(uv_write_t *w, int status)
{
    srv_write_t *sw = (srv_write_t *)w;
    srv_conn_t *c = w->handle->data;
    if (sw->close_after)
        srv_close(c);
    free(sw);
}

static void srv_send(srv_conn_t *c, const char *data, size_t len, bool close_after)
{
    srv_write_t *sw = malloc(sizeof(*sw) + len);
    memcpy(sw->data, data, len);
    sw->close_after = close_after;
    uv_buf_t b = uv_buf_init(sw->data, (unsigned)len);
    assert_int_equal(uv_write(&sw->w, (uv_stream_t *)&c->tcp, &b, 1, srv_on_write), 0);
}

static void srv_sends(srv_conn_t *c, const char *s, bool close_after)
{
    srv_send(c, s, strlen(s), close_after);
}

/* Answers one request; `req` is the raw head and body. */
static void srv_handle(srv_conn_t *c, const char *req, size_t len)
{
    char method[16], path[256];
    assert_int_equal(sscanf(req, "%15s %255s", method, path), 2);
    path[strcspn(path, "?")] = '\0';
    c->nreq++;
    if (strcmp(method, "HEAD") == 0) {
        srv_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", false);
    } else if (strcmp(path, "/cl") == 0) {
        srv_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Empty:\r\n"
                  "X-Test: Yes  \r\n\r\nhello", false);
    } else if (strcmp(path, "/chunked") == 0) {
        srv_sends(c, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", false);
        srv_sends(c, "lo\r\n6\r\n world\r\n0\r\n\r\n", false);
    } else if (strcmp(path, "/close") == 0) {
        srv_sends(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil ", false);
        srv_sends(c, "the end", true);
    } else if (strcmp(path, "/slow") == 0) {
        /* never answers */
    } else if (strcmp(path, "/huge") == 0) {
        size_t n = 2 * 1024 * 1024;
        char head[128];
        int hl = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
        char *big = malloc((size_t)hl + n);
        memcpy(big, head, (size_t)hl);
        memset(big + hl, 'x', n);
        srv_send(c, big, (size_t)hl + n, false);
        free(big);
    } else if (strcmp(path, "/echo") == 0) {
        char head[128];
        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
        srv_sends(c, head, false);
        srv_send(c, req, len, false);
    } else if (strcmp(path, "/ka") == 0) {
        srv_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nka", false);
    } else if (strcmp(path, "/retry") == 0) {
        /* the second request on a connection finds it closed */
        if (c->nreq >= 2)
            srv_close(c);
        else
            srv_sends(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
    } else if (strcmp(path, "/continue") == 0) {
        srv_sends(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
                  false);
    } else if (strcmp(path, "/nocontent") == 0) {
        srv_sends(c, "HTTP/1.1 204 No Content\r\n\r\n", false);
    } else if (strcmp(path, "/redirect") == 0) {
        srv_sends(c, "HTTP/1.1 302 Found\r\nLocation: /cl\r\nContent-Length: 0\r\n\r\n", false);
    } else if (strcmp(path, "/garbage") == 0) {
        srv_sends(c, "SMTP ready\r\n\r\n", true);
    } else {
        srv_sends(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false);
    }
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void srv_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    srv_conn_t *c = s->data;
    if (nread < 0 || c->closing) {
        free(buf->base);
        srv_close(c);
        return;
    }
    if (c->len + (size_t)nread + 1 > c->cap) {
        c->cap = (c->len + (size_t)nread + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, buf->base, (size_t)nread);
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    free(buf->base);
    for (;;) {
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end)
            return;
        size_t head = (size_t)(end - c->buf) + 4, body = 0;
        char *cl = strcasestr(c->buf, "\r\nContent-Length:");
        if (cl && cl < end)
            body = strtoul(cl + 17, NULL, 10);
        if (c->len < head + body)
            return;
        srv_handle(c, c->buf, head + body);
        if (c->closing)
            return;
        memmove(c->buf, c->buf + head + body, c->len - head - body + 1);
        c->len -= head + body;
    }
}

static void srv_on_connection(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    srv_conn_t *c = calloc(1, sizeof(*c));
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    srv_accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_on_read);
}

static void srv_start(void)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &srv_listener);
    assert_int_equal(uv_tcp_bind(&srv_listener, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv_listener, 64, srv_on_connection), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(&srv_listener, (struct sockaddr *)&sa, &len);
    srv_port = ntohs(sa.sin_port);
}

static char *url(const char *host, const char *path)
{
    static char buf[256];
    snprintf(buf, sizeof(buf), "http://%s:%d%s", host, srv_port, path);
    return buf;
}

/* ------------------------------------------------------------ fixture --- */

static void client_restart(const char *extra_ca, const char *whitelist)
{
    mx__client_fini();
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    memset(&conf.client, 0, sizeof(conf.client));
    conf.client.extra_ca_file = extra_ca;
    if (whitelist) {
        conf.client.ip_range_whitelist[0] = whitelist;
        conf.client.nwhitelist = 1;
    }
    assert_int_equal(mx__client_init(&conf.client), 0);
}

static int setup(void **state)
{
    assert_int_equal(uv_loop_init(&loop), 0);
    ctx.loop = &loop;
    ctx.conf = &conf;
    mx__ctx = &ctx;
    srv_start();
    assert_int_equal(mx__client_init(&conf.client), 0);
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, h == (uv_handle_t *)&srv_listener ? NULL : srv_on_closed);
}

static int teardown(void **state)
{
    mx__client_fini();
    uv_run(&loop, UV_RUN_NOWAIT);
    /* what is left are the test server's handles */
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    mx__ctx = NULL;
    return 0;
}

/* --------------------------------------------------------- SSRF guard --- */

static int check_str(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return mx__ssrf_check((struct sockaddr *)&ss);
}

static void test_ssrf_ranges(void **state)
{
    static const char *const refused[] = {
        "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1",
        "172.31.255.255", "192.168.0.1", "192.168.255.255", "169.254.169.254", "100.64.0.1",
        "100.127.255.255", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250",
        "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.51.100.7", "203.0.113.9",
        "198.18.0.1", "192.0.0.8",
        "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "ff02::1",
        "2001:db8::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254",
        "::ffff:0.0.0.0", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1",
        "2002:c0a8:101::1", "fec0::1", "3fff::1",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (check_str(refused[i]) != MX_ESSRF)
            fail_msg("%s was allowed", refused[i]);
    }
    static const char *const allowed[] = {
        "8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.1", "100.63.255.255",
        "100.128.0.1", "169.253.0.1", "192.169.0.1", "93.184.216.34",
        "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001::1",
        "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
    };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (check_str(allowed[i]) != 0)
            fail_msg("%s was refused", allowed[i]);
    }
}

static void test_ssrf_whitelist(void **state)
{
    client_restart(NULL, "127.0.0.0/8");
    assert_int_equal(check_str("127.0.0.1"), 0);
    assert_int_equal(check_str("127.9.9.9"), 0);
    assert_int_equal(check_str("::ffff:127.0.0.1"), 0);
    assert_int_equal(check_str("10.0.0.1"), MX_ESSRF);
    assert_int_equal(check_str("::1"), MX_ESSRF);

    client_restart(NULL, "fd00::/8");
    assert_int_equal(check_str("fd00::5"), 0);
    assert_int_equal(check_str("fc00::5"), MX_ESSRF);
    assert_int_equal(check_str("127.0.0.1"), MX_ESSRF);

    /* a bad range is a config error */
    mx__client_fini();
    memset(&conf.client, 0, sizeof(conf.client));
    conf.client.ip_range_whitelist[0] = "10.0.0.0/33";
    conf.client.nwhitelist = 1;
    assert_int_equal(mx__client_init(&conf.client), -EINVAL);
    client_restart(NULL, NULL);
}

static void test_ssrf_end_to_end(void **state)
{
    result_t r;
    int before = srv_accepted;
    fetch(&r, "GET", url("127.0.0.1", "/cl"), NULL, 0, 0, 0);
    assert_int_equal(r.err, MX_ESSRF);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.errmsg, "127.0.0.1"));
    result_free(&r);

    fetch(&r, "GET", url("localhost", "/cl"), NULL, 0, 0, 0);
    assert_int_equal(r.err, MX_ESSRF);
    assert_non_null(strstr(r.errmsg, "localhost"));
    result_free(&r);

    fetch(&r, "GET", url("[::1]", "/cl"), NULL, 0, 0, 0);
    assert_int_equal(r.err, MX_ESSRF);
    result_free(&r);

    fetch(&r, "GET", url("[::ffff:127.0.0.1]", "/cl"), NULL, 0, 0, 0);
    assert_int_equal(r.err, MX_ESSRF);
    result_free(&r);

    /* nothing reached the server */
    assert_int_equal(srv_accepted, before);

    /* the whitelist opens loopback without allow_private */
    client_restart(NULL, "127.0.0.0/8");
    fetch(&r, "GET", url("127.0.0.1", "/cl"), NULL, 0, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    result_free(&r);
    client_restart(NULL, NULL);
}

/* ---------------------------------------------------------- plain HTTP --- */

static void test_bad_requests(void **state)
{
    result_t r;
    mx_http_request_t rq = { .method = "GET", .allow_private = 1 };
    static const char *const bad[] = {
        "ftp://example.org/", "http://", "http:///x", "http://a:99999/", "http://a:0/",
        "http://a:/", "http://user@host/", "http://[::1/", "http://[zz]/", "example.org",
        "http://exa mple.org/", "http://example.org/a b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rq.url = bad[i];
        if (mx_http_fetch(&rq, on_done, &r) != -EINVAL)
            fail_msg("%s was accepted", bad[i]);
    }
    rq.url = "http://example.org/";
    rq.method = "G T";
    assert_int_equal(mx_http_fetch(&rq, on_done, &r), -EINVAL);
    rq.method = "GET";
    static const char *const crlf[] = { "X-A: b\r\nX-Injected: 1", NULL };
    rq.headers = crlf;
    assert_int_equal(mx_http_fetch(&rq, on_done, &r), -EINVAL);
    assert_int_equal(mx_http_fetch(&rq, NULL, &r), -EINVAL);
}

static void test_content_length(void **state)
{
    result_t r;
    fetch(&r, "GET", url("127.0.0.1", "/cl"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_null(r.errmsg[0] ? r.errmsg : NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 5);
    assert_string_equal(r.body, "hello");
    assert_non_null(strstr(r.headers, "x-test: Yes\n"));
    assert_non_null(strstr(r.headers, "x-empty: \n"));
    assert_non_null(strstr(r.headers, "content-length: 5\n"));
    result_free(&r);
}

static void test_request_format(void **state)
{
    result_t r;
    fetch(&r, "POST", url("127.0.0.1", "/echo?x=1&y=2#frag"), "abc", 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", srv_port);
    assert_true(strncmp(r.body, "POST /echo?x=1&y=2 HTTP/1.1\r\n", 29) == 0);
    assert_non_null(strstr(r.body, host));
    assert_non_null(strstr(r.body, "\r\nUser-Agent: mxstack/"));
    assert_non_null(strstr(r.body, "\r\nAccept-Encoding: identity\r\n"));
    assert_non_null(strstr(r.body, "\r\nContent-Length: 3\r\n"));
    assert_non_null(strstr(r.body, "\r\nX-Custom: yes\r\n"));
    assert_true(r.body_len > 3 && strcmp(r.body + r.body_len - 7, "\r\n\r\nabc") == 0);
    result_free(&r);

    /* no path at all: "/" */
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d", srv_port);
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    assert_int_equal(r.status, 404);
    result_free(&r);
}

static void test_chunked(void **state)
{
    result_t r;
    fetch(&r, "GET", url("127.0.0.1", "/chunked"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "hello world");
    assert_int_equal(r.body_len, 11);
    result_free(&r);
}

static void test_close_delimited(void **state)
{
    result_t r;
    fetch(&r, "GET", url("127.0.0.1", "/close"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "until the end");
    result_free(&r);
}

static void test_misc_responses(void **state)
{
    result_t r;
    fetch(&r, "HEAD", url("127.0.0.1", "/cl"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    result_free(&r);

    fetch(&r, "GET", url("127.0.0.1", "/continue"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "real");
    result_free(&r);

    fetch(&r, "GET", url("127.0.0.1", "/nocontent"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 204);
    result_free(&r);

    /* redirects come back to the caller */
    fetch(&r, "GET", url("127.0.0.1", "/redirect"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 302);
    assert_non_null(strstr(r.headers, "location: /cl\n"));
    result_free(&r);

    fetch(&r, "GET", url("127.0.0.1", "/garbage"), NULL, 1, 0, 0);
    assert_int_equal(r.err, -EPROTO);
    assert_int_equal(r.status, 0);
    result_free(&r);
}

static void test_keepalive(void **state)
{
    result_t r;
    /* a fresh client: nothing pooled yet */
    client_restart(NULL, NULL);
    int before = srv_accepted;
    for (int i = 0; i < 3; i++) {
        fetch(&r, "GET", url("127.0.0.1", "/ka"), NULL, 1, 0, 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ka");
        result_free(&r);
    }
    assert_int_equal(srv_accepted - before, 1);

    /* concurrent requests each get a connection, and all are pooled */
    result_t rs[3];
    memset(rs, 0, sizeof(rs));
    mx_http_request_t rq = { .method = "GET", .url = url("127.0.0.1", "/ka"),
                             .allow_private = 1, .timeout_ms = 5000 };
    for (int i = 0; i < 3; i++)
        assert_int_equal(mx_http_fetch(&rq, on_done, &rs[i]), 0);
    for (int i = 0; i < 3; i++) {
        run_until(&rs[i]);
        assert_int_equal(rs[i].status, 200);
        result_free(&rs[i]);
    }
    assert_int_equal(srv_accepted - before, 3);
    for (int i = 0; i < 3; i++) {
        fetch(&r, "GET", url("127.0.0.1", "/ka"), NULL, 1, 0, 0);
        assert_int_equal(r.status, 200);
        result_free(&r);
    }
    assert_int_equal(srv_accepted - before, 3);

    /* a close-delimited response is not pooled */
    client_restart(NULL, NULL);
    fetch(&r, "GET", url("127.0.0.1", "/close"), NULL, 1, 0, 0);
    result_free(&r);
    int mid = srv_accepted;
    fetch(&r, "GET", url("127.0.0.1", "/close"), NULL, 1, 0, 0);
    assert_string_equal(r.body, "until the end");
    result_free(&r);
    assert_int_equal(srv_accepted, mid + 1);
}

static void test_retry_on_stale_connection(void **state)
{
    result_t r;
    client_restart(NULL, NULL);
    int before = srv_accepted;
    fetch(&r, "GET", url("127.0.0.1", "/retry"), NULL, 1, 0, 0);
    if (r.err)
        fail_msg("%s", r.errmsg);
    assert_int_equal(r.status, 200);
    result_free(&r);
    /* reuses the connection, which the server drops; retried once */
    fetch(&r, "GET", url("127.0.0.1", "/retry"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    result_free(&r);
    assert_int_equal(srv_accepted - before, 2);

    /* POST is not idempotent: no retry, an error */
    client_restart(NULL, NULL);
    fetch(&r, "POST", url("127.0.0.1", "/retry"), "x", 1, 0, 0);
    assert_int_equal(r.status, 200);
    result_free(&r);
    fetch(&r, "POST", url("127.0.0.1", "/retry"), "x", 1, 0, 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.err, -ECONNRESET);
    result_free(&r);
    assert_int_equal(srv_accepted - before, 3);
}

static void test_timeout(void **state)
{
    result_t r;
    uint64_t t0 = uv_now(&loop);
    fetch(&r, "GET", url("127.0.0.1", "/slow"), NULL, 1, 0, 300);
    uint64_t took = uv_now(&loop) - t0;
    assert_int_equal(r.err, MX_ETIMEOUT);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.errmsg, "timed out"));
    assert_true(took >= 250 && took < 3000);
    result_free(&r);
}

static void test_size_limit(void **state)
{
    result_t r;
    fetch(&r, "GET", url("127.0.0.1", "/huge"), NULL, 1, 1024 * 1024, 0);
    assert_int_equal(r.err, MX_ETOOBIG);
    assert_int_equal(r.status, 0);
    result_free(&r);
    /* within the default 10 MiB it arrives whole */
    fetch(&r, "GET", url("127.0.0.1", "/huge"), NULL, 1, 0, 0);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.body_len, 2 * 1024 * 1024);
    assert_true(r.body[0] == 'x' && r.body[r.body_len - 1] == 'x');
    result_free(&r);
}

static void test_connect_refused(void **state)
{
    /* a port nobody listens on: bind one, learn it, close it */
    uv_tcp_t t;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &t);
    assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&sa, 0), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(&t, (struct sockaddr *)&sa, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(sa.sin_port));
    result_t r;
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    assert_int_equal(r.err, -ECONNREFUSED);
    assert_true(r.errmsg[0] != '\0');
    result_free(&r);

    /* a name that does not resolve (a resolver that cannot be reached at
     * all may make this a timeout instead) */
    fetch(&r, "GET", "http://no-such-host.invalid/", NULL, 1, 0, 0);
    assert_true(r.err == -EHOSTUNREACH || r.err == MX_ETIMEOUT);
    assert_int_equal(r.status, 0);
    result_free(&r);
}

static void test_fini_cancels(void **state)
{
    result_t r;
    memset(&r, 0, sizeof(r));
    mx_http_request_t rq = { .url = url("127.0.0.1", "/slow"), .allow_private = 1 };
    assert_int_equal(mx_http_fetch(&rq, on_done, &r), 0);
    for (int i = 0; i < 20 && r.calls == 0; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    mx__client_fini();
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, -ECANCELED);
    result_free(&r);
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(r.calls, 1);
    memset(&conf.client, 0, sizeof(conf.client));
    assert_int_equal(mx__client_init(&conf.client), 0);
}

/* -------------------------------------------------------------- HTTPS --- */

static char tls_dir[64];
static bool have_certs;
static char ca_path[128];

typedef struct tls_srv {
    int fd, port;
    const char *crt, *key;
    atomic_int accepted;
    pthread_t thread;
} tls_srv_t;

static void *tls_srv_main(void *arg)
{
    tls_srv_t *s = arg;
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    mbedtls_ssl_config cfg;
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&pk);
    mbedtls_ssl_config_init(&cfg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0) ||
        mbedtls_x509_crt_parse_file(&crt, s->crt) || mbedtls_pk_parse_keyfile(&pk, s->key, NULL) ||
        mbedtls_ssl_config_defaults(&cfg, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) ||
        mbedtls_ssl_conf_own_cert(&cfg, &crt, &pk)) {
        fprintf(stderr, "tls test server: setup failed\n");
        return NULL;
    }
    mbedtls_ssl_conf_rng(&cfg, mbedtls_ctr_drbg_random, &drbg);
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            break;
        atomic_fetch_add(&s->accepted, 1);
        /* one connection at a time: an idle keep-alive client must not
         * hold the server for long */
        struct timeval tv = { .tv_sec = 0, .tv_usec = 500000 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        mbedtls_net_context net = { .fd = fd };
        mbedtls_ssl_context ssl;
        mbedtls_ssl_init(&ssl);
        mbedtls_ssl_setup(&ssl, &cfg);
        mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);
        if (mbedtls_ssl_handshake(&ssl) == 0) {
            /* serve requests until the client goes away */
            char buf[4096];
            size_t len = 0;
            for (;;) {
                int n = mbedtls_ssl_read(&ssl, (unsigned char *)buf + len, sizeof(buf) - 1 - len);
                if (n <= 0)
                    break;
                len += (size_t)n;
                buf[len] = '\0';
                char *end;
                while ((end = strstr(buf, "\r\n\r\n"))) {
                    static const char resp[] =
                        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsecret-ok";
                    mbedtls_ssl_write(&ssl, (const unsigned char *)resp, sizeof(resp) - 1);
                    size_t used = (size_t)(end - buf) + 4;
                    memmove(buf, buf + used, len - used + 1);
                    len -= used;
                }
            }
        }
        mbedtls_ssl_free(&ssl);
        close(fd);
    }
    mbedtls_ssl_config_free(&cfg);
    mbedtls_pk_free(&pk);
    mbedtls_x509_crt_free(&crt);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    return NULL;
}

static void tls_srv_start(tls_srv_t *s, const char *name)
{
    static char crt[2][160], key[2][160];
    int i = strcmp(name, "good") == 0 ? 0 : 1;
    snprintf(crt[i], sizeof(crt[i]), "%s/%s.crt", tls_dir, name);
    snprintf(key[i], sizeof(key[i]), "%s/%s.key", tls_dir, name);
    s->crt = crt[i];
    s->key = key[i];
    atomic_init(&s->accepted, 0);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(s->fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, tls_srv_main, s), 0);
}

static void tls_srv_stop(tls_srv_t *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* Makes a CA and two server certificates with the openssl command. */
static int make_certs(void)
{
    strcpy(tls_dir, "/tmp/mxclient-XXXXXX");
    if (!mkdtemp(tls_dir))
        return -1;
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "cd %s && "
             "printf '[req]\\ndistinguished_name=dn\\nprompt=no\\nx509_extensions=v3\\n"
             "[dn]\\nCN=mxstack test CA\\n[v3]\\nbasicConstraints=critical,CA:TRUE\\n"
             "keyUsage=critical,keyCertSign,cRLSign\\nsubjectKeyIdentifier=hash\\n' > ca.cnf && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout ca.key -out ca.crt -days 2 -config ca.cnf && "
             "for n in good wrong; do "
             "  if [ $n = good ]; then cn=localhost; "
             "    san='DNS:localhost,IP:127.0.0.1,IP:::1'; "
             "  else cn=wrong.example; san=DNS:wrong.example; fi; "
             "  printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
             "extendedKeyUsage=serverAuth\\nsubjectAltName=%%s\\n' \"$san\" > $n.ext && "
             "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "    -keyout $n.key -out $n.csr -subj /CN=$cn && "
             "  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "    -out $n.crt -days 2 -extfile $n.ext || exit 1; "
             "done",
             tls_dir);
    char full[4200];
    snprintf(full, sizeof(full), "( %s ) >/dev/null 2>&1", cmd);
    if (system(full) != 0)
        return -1;
    snprintf(ca_path, sizeof(ca_path), "%s/ca.crt", tls_dir);
    return 0;
}

static void test_https(void **state)
{
    if (!have_certs)
        skip();
    tls_srv_t s;
    tls_srv_start(&s, "good");
    char u[128];
    result_t r;

    client_restart(ca_path, NULL);
    snprintf(u, sizeof(u), "https://localhost:%d/x", s.port);
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    if (r.err)
        fail_msg("%s", r.errmsg);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "secret-ok");
    result_free(&r);
    /* the TLS connection is reused */
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "secret-ok");
    result_free(&r);
    assert_int_equal(atomic_load(&s.accepted), 1);

    /* an IP literal is matched against the iPAddress SAN */
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/x", s.port);
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    if (r.err)
        fail_msg("%s", r.errmsg);
    assert_string_equal(r.body, "secret-ok");
    result_free(&r);

    /* a POST body goes through TLS too */
    fetch(&r, "POST", u, "{\"a\":1}", 1, 0, 0);
    assert_int_equal(r.status, 200);
    result_free(&r);

    /* without the test CA the chain is not trusted */
    client_restart(NULL, NULL);
    snprintf(u, sizeof(u), "https://localhost:%d/x", s.port);
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    assert_int_equal(r.err, -EPROTO);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.errmsg, "verification failed"));
    result_free(&r);

    /* a bad extra CA file is a config error */
    mx__client_fini();
    memset(&conf.client, 0, sizeof(conf.client));
    conf.client.extra_ca_file = "/nonexistent/ca.pem";
    assert_int_equal(mx__client_init(&conf.client), -EINVAL);
    client_restart(NULL, NULL);
    tls_srv_stop(&s);
}

static void test_https_hostname_mismatch(void **state)
{
    if (!have_certs)
        skip();
    tls_srv_t s;
    tls_srv_start(&s, "wrong");
    char u[128];
    result_t r;
    client_restart(ca_path, NULL);
    snprintf(u, sizeof(u), "https://localhost:%d/x", s.port);
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    assert_int_equal(r.err, -EPROTO);
    assert_non_null(strstr(r.errmsg, "verification failed"));
    result_free(&r);
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/x", s.port);
    fetch(&r, "GET", u, NULL, 1, 0, 0);
    assert_int_equal(r.err, -EPROTO);
    assert_non_null(strstr(r.errmsg, "verification failed"));
    result_free(&r);

    /* plain HTTP spoken to a TLS port is an error, not a hang */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", s.port);
    fetch(&r, "GET", u, NULL, 1, 0, 2000);
    assert_true(r.err != 0);
    result_free(&r);
    client_restart(NULL, NULL);
    tls_srv_stop(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);   /* as the server does: peers hang up */
    have_certs = make_certs() == 0;
    if (!have_certs)
        fprintf(stderr, "test_client: openssl could not make certificates; HTTPS tests skipped\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssrf_ranges),
        cmocka_unit_test(test_ssrf_whitelist),
        cmocka_unit_test(test_ssrf_end_to_end),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_request_format),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_misc_responses),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_retry_on_stale_connection),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_fini_cancels),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_https_hostname_mismatch),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    if (tls_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tls_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tls_dir);
    }
    return rc;
}
