/*
 * test_http.c: the HTTP server end to end.  A real server runs on a libuv
 * loop in a background thread (listener on 127.0.0.1, port 0, short
 * timeouts); the tests talk to it with blocking sockets: keep-alive,
 * pipelining order, chunked bodies, limits (413 before the body, 431),
 * smuggling attempts, bad paths, 404/405, CORS and preflight, JSON body
 * errors, async requests and aborts, timeouts and the connection limit.
 * The last part feeds the parser in memory mode (the fuzz target's path).
 */
#define _GNU_SOURCE /* strcasestr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

mx_ctx_t *mx__ctx;

static mx_ctx_t ctx;
static mx_conf_t conf;
static uv_loop_t loop;
static uv_async_t stop_async;
static pthread_t loop_thread;
static int port;
static volatile int aborted_count;
static volatile int async_replied;

/* ------------------------------------------------------------ handlers --- */

static int h_versions(mx_req_t *r, void *ud)
{
    mx_req_reply_json(r, 200, json_pack("{s:[s]}", "versions", "v1.11"));
    return MX_DONE;
}

static int h_echo_json(mx_req_t *r, void *ud)
{
    json_t *j = mx_req_json(r);
    mx_req_reply_json(r, 200, json_pack("{s:O}", "got", j));
    return MX_DONE;
}

static int h_raw(mx_req_t *r, void *ud)
{
    size_t len;
    const char *b = mx_req_body(r, &len);
    mx_req_reply(r, 200, "text/plain", b, len);
    return MX_DONE;
}

static int h_state(mx_req_t *r, void *ud)
{
    mx_req_reply_json(r, 200, json_pack("{s:s, s:s, s:s}", "room", mx_req_param(r, "roomId"),
                                        "type", mx_req_param(r, "eventType"), "key",
                                        mx_req_param(r, "stateKey")));
    return MX_DONE;
}

static int h_query(mx_req_t *r, void *ud)
{
    const char *a = mx_req_query(r, "a"), *tok = mx_req_access_token(r);
    mx_req_set_user(r, "@alice:test");
    mx_req_set_header(r, "X-Test", "yes");
    mx_req_reply_json(r, 200, json_pack("{s:s?, s:s?, s:s}", "a", a, "token", tok, "ip",
                                        mx_req_client_ip(r)));
    return MX_DONE;
}

/* Every value of the repeated parameter "a" (mx_req_query_nth), and what
 * index 3 and a negative index give. */
static int h_query_all(mx_req_t *r, void *ud)
{
    json_t *all = json_array();
    const char *v;
    for (int i = 0; (v = mx_req_query_nth(r, "a", i)); i++)
        json_array_append_new(all, json_string(v));
    mx_req_reply_json(r, 200, json_pack("{s:o, s:s?, s:s?, s:s?}", "a", all, "first",
                                        mx_req_query(r, "a"), "third",
                                        mx_req_query_nth(r, "a", 2), "neg",
                                        mx_req_query_nth(r, "a", -1)));
    return MX_DONE;
}

static int h_decline(mx_req_t *r, void *ud)
{
    return MX_DECLINED;
}

static int h_second(mx_req_t *r, void *ud)
{
    mx_req_reply(r, 200, "text/plain", "second", 6);
    return MX_DONE;
}

typedef struct later {
    uv_timer_t t;
    mx_req_t *req;
    char text[32];
} later_t;

static void later_fire(uv_timer_t *t)
{
    later_t *l = (later_t *)t;
    mx_req_reply(l->req, 200, "text/plain", l->text, strlen(l->text));
    async_replied++;
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void on_abort(mx_req_t *r, void *ud)
{
    aborted_count++;
}

/* Replies after {ms} milliseconds with "slow{ms}". */
static int h_slow(mx_req_t *r, void *ud)
{
    int ms = atoi(mx_req_param(r, "ms"));
    later_t *l = calloc(1, sizeof(*l));
    l->req = r;
    snprintf(l->text, sizeof(l->text), "slow%d", ms);
    mx_req_on_abort(r, on_abort, NULL);
    uv_timer_init(mx_loop(), &l->t);
    uv_timer_start(&l->t, later_fire, (uint64_t)ms, 0);
    return MX_ASYNC;
}

static int h_fast(mx_req_t *r, void *ud)
{
    mx_req_reply(r, 200, "text/plain", "fast", 4);
    return MX_DONE;
}

static int h_upload(mx_req_t *r, void *ud)
{
    size_t len;
    mx_req_body(r, &len);
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%zu", len);
    mx_req_reply(r, 200, "text/plain", buf, (size_t)n);
    return MX_DONE;
}

static int h_web(mx_req_t *r, void *ud)
{
    mx_req_reply(r, 200, "text/html", "<html>", 6);
    return MX_DONE;
}

/* ------------------------------------------------- file replies (1) --- */

#define BIG_FILE (8u * 1024 * 1024)
static char big_path[64];

static unsigned char big_byte(size_t i)
{
    return (unsigned char)((i * 7 + i / 4096) % 251);
}

/* GET /file/{off}/{len}: that range of the big file. */
static int h_file(mx_req_t *r, void *ud)
{
    int fd = open(big_path, O_RDONLY | O_CLOEXEC);
    mx_req_reply_file(r, 200, "application/octet-stream", fd,
                      (off_t)atol(mx_req_param(r, "off")), (size_t)atol(mx_req_param(r, "len")));
    return MX_DONE;
}

/* Replies from a file later, after {ms}. */
typedef struct later_file {
    uv_timer_t t;
    mx_req_t *req;
} later_file_t;

static void later_file_fire(uv_timer_t *t)
{
    later_file_t *l = (later_file_t *)t;
    mx_req_reply_file(l->req, 200, "application/octet-stream", open(big_path, O_RDONLY), 0, 100000);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static int h_file_later(mx_req_t *r, void *ud)
{
    later_file_t *l = calloc(1, sizeof(*l));
    l->req = r;
    uv_timer_init(mx_loop(), &l->t);
    uv_timer_start(&l->t, later_file_fire, 20, 0);
    return MX_ASYNC;
}

/* 304 / 204 with a body offered: neither may carry one. */
static int h_status(mx_req_t *r, void *ud)
{
    mx_req_set_header(r, "ETag", "\"x\"");
    mx_req_reply(r, atoi(mx_req_param(r, "code")), "text/plain", "body!", 5);
    return MX_DONE;
}

/* --------------------------------------------- prepared replies (5) --- */

/* GET /prepared/{len}: mx_req_reply_prepared with ready-made header lines
 * and `len` bytes of the big file's pattern, both scribbled over right
 * after the call (they are only borrowed for it). */
static int h_prepared(mx_req_t *r, void *ud)
{
    size_t len = (size_t)atol(mx_req_param(r, "len"));
    char hdrs[] = "X-Pre: 1\r\nContent-Type: application/x-test\r\n";
    unsigned char *body = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        body[i] = big_byte(i);
    mx_req_set_header(r, "X-Set", "2");
    const char *inm = mx_req_header(r, "If-None-Match");
    mx_req_reply_prepared(r, inm ? 304 : 200, hdrs, strlen(hdrs), body, len);
    memset(body, 'x', len);
    memset(hdrs, 'y', sizeof(hdrs) - 1);
    free(body);
    return MX_DONE;
}

/* The same from a timer, after the handler returned. */
typedef struct later_pre {
    uv_timer_t t;
    mx_req_t *req;
} later_pre_t;

static void later_pre_fire(uv_timer_t *t)
{
    later_pre_t *l = (later_pre_t *)t;
    char hdrs[] = "Content-Type: text/plain\r\n";
    char body[] = "later-prepared";
    mx_req_reply_prepared(l->req, 200, hdrs, strlen(hdrs), body, strlen(body));
    memset(body, 'x', strlen(body));
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static int h_prepared_later(mx_req_t *r, void *ud)
{
    later_pre_t *l = calloc(1, sizeof(*l));
    l->req = r;
    uv_timer_init(mx_loop(), &l->t);
    uv_timer_start(&l->t, later_pre_fire, 10, 0);
    return MX_ASYNC;
}

/* ---------------------------------------------- streamed bodies (4) --- */

static volatile int stream_ends, stream_toobig, stream_reset;

typedef struct sctx {
    mx_req_t *req;
    size_t len;
    uint32_t sum;
    int pieces;
    uv_timer_t t;             /* resumes after a pause */
    bool timer_open;
} sctx_t;

static void sctx_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sctx_free(sctx_t *s)
{
    if (s->timer_open) {
        s->t.data = s;
        uv_close((uv_handle_t *)&s->t, sctx_closed);
    } else {
        free(s);
    }
}

static void s_resume(uv_timer_t *t)
{
    sctx_t *s = t->data;
    mx_req_body_resume(s->req);
}

static int s_chunk(mx_req_t *r, const char *data, size_t len, void *ud)
{
    sctx_t *s = ud;
    for (size_t i = 0; i < len; i++)
        s->sum = s->sum * 31 + (unsigned char)data[i];
    s->len += len;
    /* Every other piece: "my write is in flight", resume in 5 ms. */
    if (s->pieces++ % 2 == 0) {
        if (!s->timer_open) {
            uv_timer_init(mx_loop(), &s->t);
            s->timer_open = true;
        }
        s->t.data = s;
        uv_timer_start(&s->t, s_resume, 5, 0);
        return 1;
    }
    return 0;
}

static void s_end(mx_req_t *r, int status, void *ud)
{
    sctx_t *s = ud;
    if (s->timer_open)
        uv_timer_stop(&s->t);
    if (status == 0) {
        stream_ends++;
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "%zu:%08x", s->len, s->sum);
        mx_req_reply(r, 200, "text/plain", buf, (size_t)n);
    } else {
        if (status == MX_ETOOBIG)
            stream_toobig++;
        else
            stream_reset++;
        mx_req_reply(r, 500, "text/plain", "x", 1);   /* only frees */
    }
    sctx_free(s);
}

static void s_begin(mx_req_t *r)
{
    sctx_t *s = calloc(1, sizeof(*s));
    s->req = r;
    assert_int_equal(mx_req_body_stream(r, s_chunk, s_end, s), 0);
}

typedef struct defer {
    uv_timer_t t;
    mx_req_t *req;
} defer_t;

static void defer_fire(uv_timer_t *t)
{
    defer_t *d = (defer_t *)t;
    s_begin(d->req);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

/* PUT /stream: takes the body at once; PUT /stream/later: after 30 ms (an
 * auth lookup); PUT /stream/deny: 401 without reading it. */
static int h_stream(mx_req_t *r, void *ud)
{
    const char *how = ud;
    if (!strcmp(how, "deny")) {
        mx_req_error(r, 401, "M_MISSING_TOKEN", "no");
        return MX_DONE;
    }
    if (!strcmp(how, "later")) {
        defer_t *d = calloc(1, sizeof(*d));
        d->req = r;
        uv_timer_init(mx_loop(), &d->t);
        uv_timer_start(&d->t, defer_fire, 30, 0);
        return MX_ASYNC;
    }
    s_begin(r);
    return MX_ASYNC;
}

/* -------------------------------------------------------------- server --- */

static void on_stop(uv_async_t *a)
{
    mx__http_fini();
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static int server_start(void);

static void base_conf(void)
{
    memset(&ctx, 0, sizeof(ctx));
    memset(&conf, 0, sizeof(conf));
    uv_loop_init(&loop);
    ctx.loop = &loop;
    ctx.conf = &conf;
    mx__ctx = &ctx;
    conf.path = "test";
    conf.log_level = getenv("TEST_HTTP_VERBOSE") ? "debug" : "error";
    mx__log_open(&conf);
    conf.nlisteners = 1;
    mx_listener_conf_t *l = &conf.listeners[0];
    l->port = 0;
    l->bind_addresses[0] = "127.0.0.1";
    l->nbind = 1;
    l->type = "http";
    l->resources[0] = "client";
    l->resources[1] = "media";
    l->nresources = 2;
    l->x_forwarded = true;
    conf.http.max_body_size = 1000;
    conf.http.max_header_size = 2048;
    conf.http.header_timeout_ms = 400;
    conf.http.idle_timeout_ms = 600;
    conf.http.body_timeout_ms = 400;
    conf.http.max_connections = 8;
    conf.http.trusted_proxies[0] = "127.0.0.0/8";
    conf.http.trusted_proxies[1] = "10.0.0.0/8";
    conf.http.ntrusted_proxies = 2;
    conf.server.max_upload_size = 5000;
}

static int group_setup(void **state)
{
    base_conf();
    return server_start();
}

static int server_start(void)
{
    if (mx__router_init() || mx__http_init())
        return -1;
    mx_route_add("client", "GET", "/_matrix/client/versions", h_versions, NULL, 0);
    mx_route_add("client", "POST", "/_matrix/client/v3/echo", h_echo_json, NULL, MX_ROUTE_JSON_BODY);
    mx_route_add("client", "POST", "/_matrix/client/v3/raw", h_raw, NULL, 0);
    mx_route_add("client", "PUT", "/_matrix/client/v3/raw", h_raw, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
                 h_state, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/q", h_query, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/qall", h_query_all, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/d", h_decline, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/d", h_second, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/slow/{ms}", h_slow, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/fast", h_fast, NULL, 0);
    mx_route_add("media", "POST", "/_matrix/media/v3/upload", h_upload, NULL, MX_ROUTE_LARGE_BODY);
    mx_route_add("web", "GET", "/{path*}", h_web, NULL, 0);   /* not on this listener */
    mx_route_add("client", "GET", "/_matrix/client/v3/file/{off}/{len}", h_file, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/filelater", h_file_later, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/status/{code}", h_status, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/prepared/{len}", h_prepared, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/preparedlater", h_prepared_later, NULL, 0);
    mx_route_add("media", "PUT", "/_matrix/media/v3/stream", h_stream, "now", MX_ROUTE_STREAM_BODY);
    mx_route_add("media", "PUT", "/_matrix/media/v3/stream/later", h_stream, "later",
                 MX_ROUTE_STREAM_BODY);
    mx_route_add("media", "PUT", "/_matrix/media/v3/stream/deny", h_stream, "deny",
                 MX_ROUTE_STREAM_BODY);

    snprintf(big_path, sizeof(big_path), "/tmp/test_http_big.XXXXXX");
    int bfd = mkstemp(big_path);
    if (bfd < 0)
        return -1;
    unsigned char *content = malloc(BIG_FILE);
    for (size_t i = 0; i < BIG_FILE; i++)
        content[i] = big_byte(i);
    if (write(bfd, content, BIG_FILE) != (ssize_t)BIG_FILE)
        return -1;
    free(content);
    close(bfd);

    char err[256] = "";
    if (mx__http_listen_all(err, sizeof(err)) < 0) {
        fprintf(stderr, "listen: %s\n", err);
        return -1;
    }
    port = mx__http_listener_port(0);
    if (port <= 0)
        return -1;
    uv_async_init(&loop, &stop_async, on_stop);
    pthread_create(&loop_thread, NULL, loop_main, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    uv_async_send(&stop_async);
    pthread_join(loop_thread, NULL);
    unlink(big_path);
    mx__router_fini();
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    mx__log_close();
    mx__ctx = NULL;
    return rc == 0 ? 0 : -1;
}

/* -------------------------------------------------------------- client --- */

static int connect_srv(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = { .tv_sec = 3 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

typedef struct resp {
    int status;
    char head[4096];
    char body[8192];
    size_t body_len;
} resp_t;

/* Reads one response; returns 0, or -1 on EOF/timeout before a full one. */
static int read_resp(int fd, resp_t *r)
{
    static char pend[65536];
    static size_t npend;
    static int pend_fd = -1;
    if (pend_fd != fd)
        npend = 0;
    pend_fd = fd;
    memset(r, 0, sizeof(*r));
    char *end;
    for (;;) {
        pend[npend] = '\0';
        if ((end = strstr(pend, "\r\n\r\n")))
            break;
        ssize_t k = recv(fd, pend + npend, sizeof(pend) - 1 - npend, 0);
        if (k <= 0)
            return -1;
        npend += (size_t)k;
    }
    size_t hlen = (size_t)(end - pend) + 4;
    memcpy(r->head, pend, hlen < sizeof(r->head) ? hlen : sizeof(r->head) - 1);
    r->status = atoi(pend + 9);
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    size_t blen = cl ? (size_t)atol(cl + 18) : 0;
    if (!strncmp(r->head + 9, "100", 3))
        blen = 0;
    bool head_req = false;
    (void)head_req;
    while (npend < hlen + blen) {
        ssize_t k = recv(fd, pend + npend, sizeof(pend) - 1 - npend, 0);
        if (k <= 0)
            return -1;
        npend += (size_t)k;
    }
    memcpy(r->body, pend + hlen, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    memmove(pend, pend + hlen + blen, npend - hlen - blen);
    npend -= hlen + blen;
    return 0;
}

/* Reads a response to a HEAD request (no body even with Content-Length). */
static int read_head_resp(int fd, resp_t *r)
{
    memset(r, 0, sizeof(*r));
    size_t n = 0;
    while (!strstr(r->head, "\r\n\r\n")) {
        ssize_t k = recv(fd, r->head + n, 1, 0);
        if (k <= 0)
            return -1;
        n++;
    }
    r->status = atoi(r->head + 9);
    return 0;
}

/* True when the server closes the connection (EOF or reset) in time. */
static bool closed_by_server(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof(buf), 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return true;
        if (k < 0)
            return false;
    }
}

static int request(const char *raw, resp_t *r)
{
    int fd = connect_srv();
    send_str(fd, raw);
    int rc = read_resp(fd, r);
    close(fd);
    return rc;
}

static bool has_header(const resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* ---------------------------------------------------------------- tests --- */

static void test_keepalive(void **state)
{
    int fd = connect_srv();
    resp_t r;
    for (int i = 0; i < 5; i++) {
        send_str(fd, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(read_resp(fd, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"versions\":[\"v1.11\"]}");
        assert_true(has_header(&r, "Content-Type: application/json\r\n"));
        assert_true(has_header(&r, "Server: mxstack\r\n"));
        assert_true(has_header(&r, "Access-Control-Allow-Origin: *\r\n"));
        assert_false(has_header(&r, "Connection: close"));
    }
    /* HEAD: headers only, same length. */
    send_str(fd, "HEAD /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(read_head_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Length: 22\r\n"));
    send_str(fd, "GET /_matrix/client/versions HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_true(has_header(&r, "Connection: close\r\n"));
    assert_true(closed_by_server(fd));
    close(fd);

    /* HTTP/1.0 closes unless asked otherwise. */
    fd = connect_srv();
    send_str(fd, "GET /_matrix/client/versions HTTP/1.0\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(closed_by_server(fd));
    close(fd);
    fd = connect_srv();
    send_str(fd, "GET /_matrix/client/versions HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_true(has_header(&r, "Connection: keep-alive\r\n"));
    send_str(fd, "GET /_matrix/client/versions HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    close(fd);
}

static void test_pipelining(void **state)
{
    int fd = connect_srv();
    resp_t r;
    /* The slow async one first: answers must still come in order. */
    send_str(fd, "GET /_matrix/client/v3/slow/80 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/fast HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/slow/10 HTTP/1.1\r\n\r\n"
                 "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                 "GET /_matrix/client/versions HTTP/1.1\r\n\r\n");
    const char *want[] = { "slow80", "fast", "slow10", "hello", "{\"versions\":[\"v1.11\"]}" };
    for (int i = 0; i < 5; i++) {
        assert_int_equal(read_resp(fd, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, want[i]);
    }
    close(fd);
}

static void test_chunked(void **state)
{
    resp_t r;
    assert_int_equal(request("POST /_matrix/client/v3/raw HTTP/1.1\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n"
                             "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello world");

    /* Chunked past the limit: 413 and close. */
    int fd = connect_srv();
    send_str(fd, "POST /_matrix/client/v3/raw HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[700];
    memset(chunk, 'a', sizeof(chunk));
    for (int i = 0; i < 2; i++) {
        char hdr[16];
        snprintf(hdr, sizeof(hdr), "%zx\r\n", sizeof(chunk));
        send_str(fd, hdr);
        assert_int_equal(send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL), (ssize_t)sizeof(chunk));
        send_str(fd, "\r\n");
    }
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "M_TOO_LARGE"));
    assert_true(closed_by_server(fd));
    close(fd);

    /* Bad chunk size. */
    assert_int_equal(request("POST /_matrix/client/v3/raw HTTP/1.1\r\n"
                             "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 400);
}

static void test_limits(void **state)
{
    resp_t r;
    /* 413 from the declared length, without sending any body. */
    int fd = connect_srv();
    send_str(fd, "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 100000\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "\"errcode\":\"M_TOO_LARGE\""));
    assert_true(has_header(&r, "Connection: close"));
    assert_true(closed_by_server(fd));
    close(fd);

    /* A media route takes up to max_upload_size. */
    char big[4200];
    int n = snprintf(big, sizeof(big),
                     "POST /_matrix/media/v3/upload HTTP/1.1\r\nContent-Length: 4000\r\n\r\n");
    memset(big + n, 'x', 4000);
    big[n + 4000] = '\0';
    assert_int_equal(request(big, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "4000");
    assert_int_equal(request("POST /_matrix/media/v3/upload HTTP/1.1\r\nContent-Length: 6000\r\n\r\n",
                             &r), 0);
    assert_int_equal(r.status, 413);

    /* Headers over max_header_size. */
    char hdrs[4000];
    n = snprintf(hdrs, sizeof(hdrs), "GET /_matrix/client/versions HTTP/1.1\r\nX-Big: ");
    memset(hdrs + n, 'b', 3000);
    strcpy(hdrs + n + 3000, "\r\n\r\n");
    assert_int_equal(request(hdrs, &r), 0);
    assert_int_equal(r.status, 431);
    /* Many small headers. */
    char *many = malloc(20000);
    n = sprintf(many, "GET /_matrix/client/versions HTTP/1.1\r\n");
    for (int i = 0; i < 150; i++)
        n += sprintf(many + n, "X-H%d: v\r\n", i);
    strcpy(many + n, "\r\n");
    assert_int_equal(request(many, &r), 0);
    assert_int_equal(r.status, 431);
    free(many);

    /* Expect: 100-continue gets its interim answer. */
    fd = connect_srv();
    send_str(fd, "PUT /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 3\r\n"
                 "Expect: 100-continue\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 100);
    send_str(fd, "abc");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "abc");
    close(fd);
}

static void test_smuggling(void **state)
{
    resp_t r;
    const char *bad[] = {
        /* CL + TE */
        "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        /* duplicate, differing Content-Length */
        "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        /* duplicate Content-Length */
        "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        /* obs-fold */
        "GET /_matrix/client/versions HTTP/1.1\r\nX-A: a\r\n  folded\r\n\r\n",
        /* bad characters */
        "GET /_matrix/client/versions HTTP/1.1\r\nX-A\x01: a\r\n\r\n",
        "GET /_matrix/client/versions HTTP/1.1\r\nX-A: a\x7f\r\n\r\n",
        "GET /_matrix/client/ver sions HTTP/1.1\r\n\r\n",
        /* Transfer-Encoding that does not end in chunked */
        "POST /_matrix/client/v3/raw HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        /* space before colon */
        "GET /_matrix/client/versions HTTP/1.1\r\nHost : x\r\n\r\n",
        /* bare LF */
        "GET /_matrix/client/versions HTTP/1.1\nHost: x\n\n",
        "GARBAGE\r\n\r\n",
        "GET /_matrix/client/versions HTTP/2.0\r\n\r\n",
        "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        int fd = connect_srv();
        send_str(fd, bad[i]);
        int rc = read_resp(fd, &r);
        if (rc == 0) {
            if (r.status != 400)
                fprintf(stderr, "case %zu: status %d\n", i, r.status);
            assert_int_equal(r.status, 400);
            assert_true(has_header(&r, "Connection: close"));
        }
        assert_true(closed_by_server(fd));
        close(fd);
    }
}

static void test_bad_paths(void **state)
{
    resp_t r;
    const char *bad[] = {
        "GET /_matrix/client/v3/rooms/%00/state/a/b HTTP/1.1\r\n\r\n",
        "GET /_matrix/client/v3/rooms/%ff/state/a/b HTTP/1.1\r\n\r\n",
        "GET /_matrix/client/v3/rooms/%c0%af/state/a/b HTTP/1.1\r\n\r\n",
        "GET /_matrix/client/v3/rooms/%ed%a0%80/state/a/b HTTP/1.1\r\n\r\n",
        "GET /_matrix/client/v3/rooms/%zz/state/a/b HTTP/1.1\r\n\r\n",
        "GET /_matrix/client/v3/q?a=%00 HTTP/1.1\r\n\r\n",
        "GET /_matrix/client/v3/q?a=%fe%ff HTTP/1.1\r\n\r\n",
        "GET /_matrix/client/v3/q?a=%4 HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(request(bad[i], &r), 0);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.body, "M_INVALID_PARAM"));
    }
    /* Raw high bytes in the target are refused too (by llhttp or by us). */
    assert_int_equal(request("GET /_matrix/client/v3/rooms/\xff/state/a/b HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 400);

    /* Good ones: decoded per segment, empty trailing state key. */
    assert_int_equal(request("GET /_matrix/client/v3/rooms/%21r%3Ax/state/m.room.name HTTP/1.1\r\n\r\n",
                             &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"room\":\"!r:x\",\"type\":\"m.room.name\",\"key\":\"\"}");
    assert_int_equal(request("GET /_matrix/client/v3/rooms/!r/state/m.room.member/%40a%2Fb "
                             "HTTP/1.1\r\n\r\n", &r), 0);
    assert_string_equal(r.body, "{\"room\":\"!r\",\"type\":\"m.room.member\",\"key\":\"@a/b\"}");
    assert_int_equal(request("GET /_matrix/client/v3/q?a=x+y%20z%C3%A9&access_token=tok HTTP/1.1\r\n\r\n",
                             &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"a\":\"x y z\xc3\xa9\",\"token\":\"tok\",\"ip\":\"127.0.0.1\"}");
    assert_true(has_header(&r, "X-Test: yes\r\n"));
    assert_int_equal(request("GET /_matrix/client/v3/q HTTP/1.1\r\nAuthorization: Bearer abc\r\n"
                             "X-Forwarded-For: 203.0.113.9, 10.1.2.3\r\n\r\n", &r), 0);
    assert_string_equal(r.body, "{\"a\":null,\"token\":\"abc\",\"ip\":\"203.0.113.9\"}");
}

/* Repeated query parameters: every value in URL order, others skipped. */
static void test_query_nth(void **state)
{
    resp_t r;
    assert_int_equal(request("GET /_matrix/client/v3/qall?a=1&b=x&a=%32&a&c=3&a=z+w HTTP/1.1\r\n\r\n",
                             &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"a\":[\"1\",\"2\",\"\",\"z w\"],\"first\":\"1\",\"third\":\"\","
                                "\"neg\":null}");
    assert_int_equal(request("GET /_matrix/client/v3/qall?b=1 HTTP/1.1\r\n\r\n", &r), 0);
    assert_string_equal(r.body, "{\"a\":[],\"first\":null,\"third\":null,\"neg\":null}");
}

static void test_404_405_cors(void **state)
{
    resp_t r;
    assert_int_equal(request("GET /_matrix/client/nope HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"errcode\":\"M_UNRECOGNIZED\",\"error\":\"Unrecognized request\"}");
    assert_true(has_header(&r, "Access-Control-Allow-Origin: *\r\n"));
    assert_int_equal(request("DELETE /_matrix/client/v3/raw HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.body, "M_UNRECOGNIZED"));
    assert_true(has_header(&r, "Allow: POST, PUT\r\n"));
    /* The web resource's routes are not on this listener. */
    assert_int_equal(request("GET /index.html HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 404);
    assert_false(has_header(&r, "Access-Control-Allow-Origin"));
    /* Preflight on any CORS path, known or not. */
    assert_int_equal(request("OPTIONS /_matrix/client/whatever HTTP/1.1\r\n"
                             "Origin: https://app\r\nAccess-Control-Request-Method: POST\r\n\r\n", &r),
                     0);
    assert_int_equal(r.status, 204);
    assert_true(has_header(&r, "Access-Control-Allow-Methods: GET, HEAD, POST, PUT, DELETE, OPTIONS\r\n"));
    assert_true(has_header(&r, "Access-Control-Allow-Headers: X-Requested-With, Content-Type, "
                               "Authorization, Date\r\n"));
    assert_int_equal(request("OPTIONS /.well-known/matrix/client HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 204);
    /* MX_DECLINED goes on to the next route. */
    assert_int_equal(request("GET /_matrix/client/v3/d HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "second");
}

static void test_json_body(void **state)
{
    resp_t r;
    assert_int_equal(request("POST /_matrix/client/v3/echo HTTP/1.1\r\nContent-Length: 7\r\n\r\n"
                             "{\"a\":1}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"got\":{\"a\":1}}");
    assert_int_equal(request("POST /_matrix/client/v3/echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                             &r), 0);
    assert_string_equal(r.body, "{\"got\":{}}");
    assert_int_equal(request("POST /_matrix/client/v3/echo HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
                             "{nope", &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"errcode\":\"M_NOT_JSON\""));
    assert_int_equal(request("POST /_matrix/client/v3/echo HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
                             "[1]", &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"errcode\":\"M_BAD_JSON\""));
}

static void test_async_abort(void **state)
{
    int before = aborted_count;
    int replied = async_replied;
    int fd = connect_srv();
    send_str(fd, "GET /_matrix/client/v3/slow/150 HTTP/1.1\r\n\r\n");
    usleep(30000);
    close(fd);
    usleep(250000);
    assert_int_equal(aborted_count, before + 1);
    assert_int_equal(async_replied, replied + 1);   /* the late reply was dropped quietly */
}

static void test_timeouts(void **state)
{
    /* Slowloris: a header block that never ends. */
    int fd = connect_srv();
    send_str(fd, "GET /_matrix/client/versions HTTP/1.1\r\n");
    for (int i = 0; i < 3; i++) {
        usleep(100000);
        if (send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL) < 0)
            break;
    }
    assert_true(closed_by_server(fd));
    close(fd);
    /* Idle keep-alive. */
    fd = connect_srv();
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    assert_true(closed_by_server(fd));
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    assert_true(ms >= 400 && ms < 2500);
    close(fd);
    /* A body that stops coming. */
    fd = connect_srv();
    send_str(fd, "POST /_matrix/client/v3/raw HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert_true(closed_by_server(fd));
    close(fd);
}

static void wait_no_connections(void)
{
    for (int i = 0; i < 200 && mx__http_open_connections() > 0; i++)
        usleep(10000);
}

static void test_connection_limit(void **state)
{
    wait_no_connections();
    assert_int_equal(mx__http_open_connections(), 0);
    int fds[8];
    resp_t r;
    for (int i = 0; i < 8; i++) {
        fds[i] = connect_srv();
        send_str(fds[i], "GET /_matrix/client/versions HTTP/1.1\r\n\r\n");
        assert_int_equal(read_resp(fds[i], &r), 0);
    }
    assert_int_equal(mx__http_open_connections(), 8);
    int extra = connect_srv();
    assert_true(closed_by_server(extra));
    close(extra);
    close(fds[0]);
    wait_no_connections();
    for (int i = 1; i < 8; i++)
        close(fds[i]);
    wait_no_connections();
    assert_int_equal(request("GET /_matrix/client/versions HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
}

/* ------------------------------------------------------- file replies --- */

/* Reads a response header block byte by byte (so nothing of the body is
 * taken), then `want` body bytes (Content-Length when want is -1) into a
 * malloc'd buffer.  Returns the body length read, -1 on EOF before the
 * headers. */
static long read_file_resp(int fd, resp_t *r, unsigned char **body, long want)
{
    memset(r, 0, sizeof(*r));
    size_t n = 0;
    while (!strstr(r->head, "\r\n\r\n")) {
        if (n == sizeof(r->head) - 1 || recv(fd, r->head + n, 1, 0) != 1)
            return -1;
        n++;
    }
    r->status = atoi(r->head + 9);
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    if (want < 0)
        want = cl ? atol(cl + 18) : 0;
    *body = malloc((size_t)want + 1);
    long got = 0;
    while (got < want) {
        ssize_t k = recv(fd, *body + got, (size_t)(want - got), 0);
        if (k <= 0)
            break;
        got += k;
    }
    return got;
}

static bool big_matches(const unsigned char *b, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != big_byte(off + i))
            return false;
    return true;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static void test_file_reply(void **state)
{
    wait_no_connections();
    int fds_before = open_fds();
    resp_t r;
    unsigned char *b;
    /* The whole 8 MB file, then a range, then a pipelined pair where the
     * file must come out before the small answer behind it. */
    int fd = connect_srv();
    send_str(fd, "GET /_matrix/client/v3/file/0/8388608 HTTP/1.1\r\n\r\n");
    assert_int_equal(read_file_resp(fd, &r, &b, -1), BIG_FILE);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Length: 8388608\r\n"));
    assert_true(has_header(&r, "Content-Type: application/octet-stream\r\n"));
    assert_true(big_matches(b, 0, BIG_FILE));
    free(b);
    send_str(fd, "GET /_matrix/client/v3/file/12345/70000 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/fast HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/filelater HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/fast HTTP/1.1\r\n\r\n");
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 70000);
    assert_true(big_matches(b, 12345, 70000));
    free(b);
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 4);
    assert_memory_equal(b, "fast", 4);
    free(b);
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 100000);
    assert_true(big_matches(b, 0, 100000));
    free(b);
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 4);
    free(b);
    /* HEAD: the length, no body; an empty range; then still in step. */
    send_str(fd, "HEAD /_matrix/client/v3/file/0/5000 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/file/0/0 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/fast HTTP/1.1\r\n\r\n");
    assert_int_equal(read_file_resp(fd, &r, &b, 0), 0);
    free(b);
    assert_true(has_header(&r, "Content-Length: 5000\r\n"));
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 0);
    free(b);
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 4);
    assert_memory_equal(b, "fast", 4);
    free(b);
    close(fd);

    /* A slow reader with a small window still gets every byte. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 8192;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    send_str(fd, "GET /_matrix/client/v3/file/100/1000000 HTTP/1.1\r\n\r\n");
    assert_int_equal(read_file_resp(fd, &r, &b, 0), 0);
    free(b);
    unsigned char *all = malloc(1000000);
    size_t got = 0;
    while (got < 1000000) {
        size_t left = 1000000 - got;
        ssize_t k = recv(fd, all + got, got % 3 && left > 3000 ? 3000 : left, 0);
        assert_true(k > 0);
        got += (size_t)k;
        if (got < 100000)
            usleep(2000);
    }
    assert_true(big_matches(all, 100, 1000000));
    free(all);
    close(fd);

    /* A client that leaves midway: the file is closed, nothing leaks. */
    for (int i = 0; i < 3; i++) {
        fd = connect_srv();
        send_str(fd, "GET /_matrix/client/v3/file/0/8388608 HTTP/1.1\r\n\r\n");
        char buf[1000];
        assert_true(recv(fd, buf, sizeof(buf), 0) > 0);
        close(fd);
    }
    wait_no_connections();
    assert_int_equal(mx__http_open_connections(), 0);
    usleep(50000);
    assert_int_equal(open_fds(), fds_before);
}

static void test_prepared_reply(void **state)
{
    resp_t r;
    unsigned char *b;
    /* Small: header lines in their place, the core's around them. */
    int fd = connect_srv();
    send_str(fd, "GET /_matrix/client/v3/prepared/100 HTTP/1.1\r\n\r\n");
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 100);
    assert_int_equal(r.status, 200);
    assert_true(big_matches(b, 0, 100));
    free(b);
    assert_true(has_header(&r, "Content-Length: 100\r\n"));
    assert_true(has_header(&r, "\r\nX-Pre: 1\r\nContent-Type: application/x-test\r\n"));
    assert_true(has_header(&r, "X-Set: 2\r\n"));
    assert_true(has_header(&r, "Server: mxstack\r\nDate: "));
    assert_false(has_header(&r, "Connection:"));
    /* 304 and HEAD: no body; then a reply made after the handler returned,
     * pipelined behind them. */
    send_str(fd, "GET /_matrix/client/v3/prepared/50 HTTP/1.1\r\nIf-None-Match: x\r\n\r\n"
                 "HEAD /_matrix/client/v3/prepared/70 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/preparedlater HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/fast HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(read_file_resp(fd, &r, &b, 0), 0);
    free(b);
    assert_int_equal(r.status, 304);
    assert_false(has_header(&r, "Content-Length"));
    assert_int_equal(read_file_resp(fd, &r, &b, 0), 0);
    free(b);
    assert_true(has_header(&r, "Content-Length: 70\r\n"));
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 14);
    assert_memory_equal(b, "later-prepared", 14);
    free(b);
    assert_true(has_header(&r, "Content-Type: text/plain\r\n"));
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 4);
    assert_memory_equal(b, "fast", 4);
    free(b);
    assert_true(has_header(&r, "Connection: keep-alive\r\n"));
    close(fd);

    /* Larger than the socket takes at once, to a slow reader: what did not
     * leave at once was copied before the handler freed its buffers. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 8192;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    send_str(fd, "GET /_matrix/client/v3/prepared/3000000 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/fast HTTP/1.1\r\n\r\n");
    usleep(50000);
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 3000000);
    assert_true(has_header(&r, "X-Pre: 1\r\n"));
    assert_true(big_matches(b, 0, 3000000));
    free(b);
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 4);
    assert_memory_equal(b, "fast", 4);
    free(b);
    close(fd);
}

static void test_write_timeout(void **state)
{
    /* A client that asks for 8 MB and reads nothing is closed after about
     * http.idle_timeout (600 ms here) without progress. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = { .tv_sec = 3 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    send_str(fd, "GET /_matrix/client/v3/file/0/8388608 HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 300 && mx__http_open_connections() == 0; i++)
        usleep(1000);
    assert_int_equal(mx__http_open_connections(), 1);
    for (int i = 0; i < 250 && mx__http_open_connections() > 0; i++)
        usleep(10000);
    assert_int_equal(mx__http_open_connections(), 0);
    /* What arrives is a truncated body, then the end. */
    size_t total = 0;
    char buf[65536];
    ssize_t k;
    while ((k = recv(fd, buf, sizeof(buf), 0)) > 0)
        total += (size_t)k;
    assert_true(total < BIG_FILE);
    close(fd);
}

static void test_bodyless_status(void **state)
{
    int fd = connect_srv();
    resp_t r;
    unsigned char *b;
    send_str(fd, "GET /_matrix/client/v3/status/304 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/status/204 HTTP/1.1\r\n\r\n"
                 "GET /_matrix/client/v3/status/200 HTTP/1.1\r\n\r\n");
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 0);
    free(b);
    assert_int_equal(r.status, 304);
    assert_false(has_header(&r, "Content-Length"));
    assert_false(has_header(&r, "\r\nContent-Type:"));
    assert_true(has_header(&r, "ETag: \"x\"\r\n"));
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 0);
    free(b);
    assert_int_equal(r.status, 204);
    assert_false(has_header(&r, "Content-Length"));
    /* The next answer starts right after: nothing of "body!" came before. */
    assert_int_equal(read_file_resp(fd, &r, &b, -1), 5);
    assert_int_equal(r.status, 200);
    assert_memory_equal(b, "body!", 5);
    free(b);
    close(fd);
    /* The CORS preflight is a 204 too. */
    assert_int_equal(request("OPTIONS /_matrix/client/x HTTP/1.1\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 204);
    assert_false(has_header(&r, "Content-Length"));
}

/* ---------------------------------------------------- streamed bodies --- */

static uint32_t sum_of(const char *d, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 31 + (unsigned char)d[i];
    return s;
}

static void test_stream_body(void **state)
{
    resp_t r;
    char body[4800];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (char)('a' + i % 26);
    char want[64];
    snprintf(want, sizeof(want), "%zu:%08x", sizeof(body), sum_of(body, sizeof(body)));
    int ends = stream_ends;

    /* Content-Length, in small pieces with pauses, then a pipelined
     * request on the same connection. */
    int fd = connect_srv();
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "PUT /_matrix/media/v3/stream HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
             sizeof(body));
    send_str(fd, hdr);
    for (size_t off = 0; off < sizeof(body); off += 1200) {
        assert_int_equal(send(fd, body + off, 1200, MSG_NOSIGNAL), 1200);
        usleep(3000);
    }
    send_str(fd, "GET /_matrix/client/v3/fast HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, want);
    assert_int_equal(read_resp(fd, &r), 0);
    assert_string_equal(r.body, "fast");
    close(fd);
    assert_int_equal(stream_ends, ends + 1);

    /* Chunked, all at once, to a handler that asks for the body later. */
    fd = connect_srv();
    send_str(fd, "PUT /_matrix/media/v3/stream/later HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t off = 0; off < sizeof(body); off += 1600) {
        snprintf(hdr, sizeof(hdr), "%x\r\n", 1600);
        send_str(fd, hdr);
        assert_int_equal(send(fd, body + off, 1600, MSG_NOSIGNAL), 1600);
        send_str(fd, "\r\n");
    }
    send_str(fd, "0\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, want);
    close(fd);

    /* No body at all. */
    assert_int_equal(request("PUT /_matrix/media/v3/stream/later HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                             &r), 0);
    assert_string_equal(r.body, "0:00000000");

    /* Past max_upload_size (5000): by the declared length, before the
     * handler; chunked midway: 413, closed, and the module hears of it. */
    assert_int_equal(request("PUT /_matrix/media/v3/stream HTTP/1.1\r\nContent-Length: 6000\r\n\r\n",
                             &r), 0);
    assert_int_equal(r.status, 413);
    int toobig = stream_toobig;
    fd = connect_srv();
    send_str(fd, "PUT /_matrix/media/v3/stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 4; i++) {
        send_str(fd, "640\r\n");
        assert_int_equal(send(fd, body, 1600, MSG_NOSIGNAL), 1600);
        send_str(fd, "\r\n");
        usleep(10000);
    }
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "M_TOO_LARGE"));
    assert_true(has_header(&r, "Connection: close"));
    assert_true(closed_by_server(fd));
    close(fd);
    assert_int_equal(stream_toobig, toobig + 1);

    /* The client leaves midway: the module's on_end hears -ECONNRESET. */
    int resets = stream_reset;
    fd = connect_srv();
    send_str(fd, "PUT /_matrix/media/v3/stream HTTP/1.1\r\nContent-Length: 4000\r\n\r\n");
    assert_int_equal(send(fd, body, 1000, MSG_NOSIGNAL), 1000);
    usleep(30000);
    close(fd);
    for (int i = 0; i < 100 && stream_reset == resets; i++)
        usleep(5000);
    assert_int_equal(stream_reset, resets + 1);

    /* A handler that answers without reading: the connection ends. */
    fd = connect_srv();
    send_str(fd, "PUT /_matrix/media/v3/stream/deny HTTP/1.1\r\nContent-Length: 4000\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 401);
    assert_true(has_header(&r, "Connection: close"));
    close(fd);
    wait_no_connections();
}

/* ------------------------------------------------------ virtual hosts --- */

static int port2;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return -1;
    close(fd);
    return ntohs(sa.sin_port);
}

static void vhost_listener(int i, int p, const char *vhost, const char *resource)
{
    mx_listener_conf_t *l = &conf.listeners[i];
    memset(l, 0, sizeof(*l));
    l->port = p;
    l->bind_addresses[0] = "127.0.0.1";
    l->nbind = 1;
    l->type = "http";
    l->resources[0] = resource;
    l->nresources = 1;
    l->vhost = vhost;
    l->line = i + 1;
}

/* Port A: chat. (web), matrix. (client) and a default (media); port B:
 * admin. (client) and no default. */
static int vhost_setup(void **state)
{
    base_conf();
    int a = free_port(), b = free_port();
    if (a <= 0 || b <= 0 || a == b)
        return -1;
    vhost_listener(0, a, "chat.example", "web");
    vhost_listener(1, a, "matrix.example", "client");
    vhost_listener(2, a, NULL, "media");
    vhost_listener(3, b, "admin.example", "client");
    conf.nlisteners = 4;
    int rc = server_start();
    port2 = mx__http_listener_port(1);
    return rc;
}

static int host_status(int p, const char *method, const char *path, const char *host,
                       resp_t *r)
{
    int save = port;
    port = p;
    char raw[512];
    if (host)
        snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n",
                 method, path, host);
    else
        snprintf(raw, sizeof(raw), "%s %s HTTP/1.0\r\nContent-Length: 0\r\n\r\n", method, path);
    int rc = request(raw, r);
    port = save;
    return rc == 0 ? r->status : -1;
}

static void test_vhosts(void **state)
{
    resp_t r;
    /* Each port is bound once. */
    assert_true(port > 0 && port2 > 0 && port != port2);
    assert_int_equal(mx__http_listener_port(2), -1);

    assert_int_equal(host_status(port, "GET", "/index.html", "chat.example", &r), 200);
    assert_string_equal(r.body, "<html>");
    assert_int_equal(host_status(port, "GET", "/index.html", "CHAT.Example:443", &r), 200);
    /* chat. has only the web resource (GET /{path*}). */
    assert_int_equal(host_status(port, "GET", "/_matrix/client/versions", "chat.example", &r), 200);
    assert_string_equal(r.body, "<html>");
    assert_int_equal(host_status(port, "GET", "/_matrix/client/versions", "matrix.example:8448", &r),
                     200);
    assert_int_equal(host_status(port, "GET", "/index.html", "matrix.example", &r), 404);
    /* Other hosts, or none: the default listener (media). */
    assert_int_equal(host_status(port, "POST", "/_matrix/media/v3/upload", "other.example", &r), 200);
    assert_int_equal(host_status(port, "GET", "/_matrix/client/versions", "other.example", &r), 404);
    assert_int_equal(host_status(port, "POST", "/_matrix/media/v3/upload", NULL, &r), 200);
    assert_int_equal(host_status(port, "POST", "/_matrix/media/v3/upload", "chat.example.evil", &r),
                     200);
    /* No default on this port: unknown hosts get 404 M_UNRECOGNIZED. */
    assert_int_equal(host_status(port2, "GET", "/_matrix/client/versions", "admin.example", &r), 200);
    assert_int_equal(host_status(port2, "GET", "/_matrix/client/versions", "matrix.example", &r), 404);
    assert_non_null(strstr(r.body, "M_UNRECOGNIZED"));
    assert_int_equal(host_status(port2, "GET", "/_matrix/client/versions", NULL, &r), 404);

    /* The choice is per request, also on one kept-alive connection. */
    int fd = connect_srv();
    send_str(fd, "GET /index.html HTTP/1.1\r\nHost: chat.example\r\n\r\n"
                 "GET /_matrix/client/versions HTTP/1.1\r\nHost: matrix.example\r\n\r\n"
                 "GET /index.html HTTP/1.1\r\nHost: matrix.example\r\n\r\n");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"versions\":[\"v1.11\"]}");
    assert_int_equal(read_resp(fd, &r), 0);
    assert_int_equal(r.status, 404);
    close(fd);
}

/* ------------------------------------------------------- memory mode --- */

typedef struct sinkbuf {
    char data[8192];
    size_t len;
} sinkbuf_t;

static void sink(void *ud, const char *data, size_t len)
{
    sinkbuf_t *s = ud;
    size_t k = len < sizeof(s->data) - 1 - s->len ? len : sizeof(s->data) - 1 - s->len;
    memcpy(s->data + s->len, data, k);
    s->len += k;
    s->data[s->len] = '\0';
}

static void test_memory_mode(void **state)
{
    sinkbuf_t out = { .len = 0 };
    /* Fed one byte at a time, two pipelined requests. */
    mx__conn_t *c = mx__conn_mem_new(mx__router_resource_bit("client"), sink, &out);
    assert_non_null(c);
    const char *in = "GET /_matrix/client/versions HTTP/1.1\r\nHost: a\r\n\r\n"
                     "POST /_matrix/client/v3/raw HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n0\r\n\r\n";
    for (const char *p = in; *p; p++)
        mx__conn_feed(c, p, 1);
    const char *first = strstr(out.data, "{\"versions\"");
    const char *second = strstr(out.data, "\r\n\r\nabc");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second);
    mx__conn_mem_free(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);   /* as the server does: peers hang up */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_query_nth),
        cmocka_unit_test(test_404_405_cors),
        cmocka_unit_test(test_json_body),
        cmocka_unit_test(test_async_abort),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_file_reply),
        cmocka_unit_test(test_prepared_reply),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_bodyless_status),
        cmocka_unit_test(test_stream_body),
    };
    const struct CMUnitTest vhost_tests[] = {
        cmocka_unit_test(test_vhosts),
    };
    const struct CMUnitTest mem_tests[] = {
        cmocka_unit_test(test_memory_mode),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    rc |= cmocka_run_group_tests(vhost_tests, vhost_setup, group_teardown);
    /* Memory mode runs without a loop thread. */
    memset(&ctx, 0, sizeof(ctx));
    memset(&conf, 0, sizeof(conf));
    mx__ctx = &ctx;
    ctx.conf = &conf;
    conf.log_level = "error";
    mx__log_open(&conf);
    mx__router_init();
    mx_route_add("client", "GET", "/_matrix/client/versions", h_versions, NULL, 0);
    mx_route_add("client", "POST", "/_matrix/client/v3/raw", h_raw, NULL, 0);
    rc |= cmocka_run_group_tests(mem_tests, NULL, NULL);
    mx__router_fini();
    mx__log_close();
    return rc;
}
