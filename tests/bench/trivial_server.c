/*
 * trivial_server.c: the benchmark's reference — the least a libuv + llhttp
 * server can do: parse each request and answer a fixed JSON body with
 * keep-alive.  mxstack's /_matrix/client/versions is compared against it in
 * the same wrk run (tests/bench/bench-core.sh).
 *
 *   trivial-server PORT
 */
#include <llhttp.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define BODY "{\"versions\":[\"v1.11\"],\"unstable_features\":{}}"
#define STR_(x) #x
#define STR(x) STR_(x)
#define BODY_LEN 45
static_assert(sizeof(BODY) - 1 == BODY_LEN, "BODY_LEN must match BODY");
static const char response[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    STR(BODY_LEN) "\r\n\r\n" BODY;

typedef struct conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    llhttp_settings_t *settings;
    char buf[65536];
} conn_t;

static void on_close(uv_handle_t *h) { free(h->data); }

static void on_write(uv_write_t *w, int status)
{
    free(w);
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)response, sizeof(response) - 1);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0)
        free(w);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    conn_t *c = h->data;
    *b = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n > 0 && llhttp_execute(&c->parser, b->base, (size_t)n) != HPE_OK)
        uv_close((uv_handle_t *)s, on_close);
}

static llhttp_settings_t settings;

static void on_conn(uv_stream_t *server, int status)
{
    conn_t *c = calloc(1, sizeof(*c));
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 8090;
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    llhttp_settings_init(&settings);
    settings.on_message_complete = on_message_complete;
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", port, &addr);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
        uv_listen((uv_stream_t *)&server, 1024, on_conn) != 0) {
        fprintf(stderr, "trivial-server: cannot listen on %d\n", port);
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
