/*
 * fuzz_http.c: libFuzzer target for the HTTP server's request path: raw
 * bytes go through the same connection code a socket uses (llhttp, header
 * limits, target and query decoding, routing, JSON bodies, replies), in the
 * connection's memory mode, cut into pieces whose sizes the input chooses.
 *
 * Checks beyond "no crash, no leak, no undefined behaviour": every response
 * starts with "HTTP/1.1 " and a 3-digit status, and no status is 5xx (bad
 * input never earns a server error).
 *
 * Build and run: see tests/fuzz/README.md (`make fuzz`).
 * fuzz-sources: core/http_conn.c core/http_req.c core/http_server.c core/router.c core/tls.c core/pool.c core/log.c core/metrics.c core/json.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

mx_ctx_t *mx__ctx;
static mx_ctx_t fctx;
static mx_conf_t fconf;

/* metrics.c reports storage figures; there is no storage here. */
void mx__store_stats(int *queued, int *in_flight, int *pool_size, int *pool_idle)
{
    *queued = *in_flight = *pool_size = *pool_idle = 0;
}

static void check(int ok)
{
    if (!ok)
        abort();
}

static int h_ok(mx_req_t *r, void *ud)
{
    size_t len;
    const char *b = mx_req_body(r, &len);
    (void)mx_req_query(r, "a");
    (void)mx_req_access_token(r);
    (void)mx_req_header(r, "host");
    mx_req_reply(r, 200, "text/plain", b, len);
    return MX_DONE;
}

static int h_json(mx_req_t *r, void *ud)
{
    mx_req_reply_json(r, 200, json_incref(mx_req_json(r)));
    return MX_DONE;
}

static int h_param(mx_req_t *r, void *ud)
{
    const char *k = mx_req_param(r, "k");
    mx_req_reply(r, 200, "text/plain", k, strlen(k));
    return MX_DONE;
}

static int h_decline(mx_req_t *r, void *ud)
{
    return MX_DECLINED;
}

static void on_abort(mx_req_t *r, void *ud)
{
    mx_req_error(r, 499, "M_UNKNOWN", "gone");   /* only frees it */
}

static int h_async(mx_req_t *r, void *ud)
{
    mx_req_on_abort(r, on_abort, NULL);
    return MX_ASYNC;
}

static void init_once(void)
{
    if (mx__ctx)
        return;
    mx__ctx = &fctx;
    fctx.conf = &fconf;
    fconf.log_level = "error";
    fconf.http.max_body_size = 4096;
    fconf.http.max_header_size = 4096;
    fconf.server.max_upload_size = 16384;
    mx__log_open(&fconf);
    mx__router_init();
    mx_route_add("client", "GET", "/_matrix/client/versions", h_ok, NULL, 0);
    mx_route_add("client", "POST", "/_matrix/client/v3/raw", h_ok, NULL, 0);
    mx_route_add("client", "PUT", "/_matrix/client/v3/json", h_json, NULL, MX_ROUTE_JSON_BODY);
    mx_route_add("client", "GET", "/_matrix/client/v3/rooms/{r}/state/{t}/{k}", h_param, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/d", h_decline, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/d", h_ok, NULL, 0);
    mx_route_add("client", "GET", "/_matrix/client/v3/async", h_async, NULL, 0);
    mx_route_add("media", "POST", "/_matrix/media/v3/upload", h_ok, NULL, MX_ROUTE_LARGE_BODY);
    mx_route_add("client", "GET", "/static/{p*}", h_ok, NULL, 0);
}

typedef struct out {
    size_t total;
    int bad;
} out_t;

/* Each call carries a response head or a body; heads are checked. */
static void sink(void *ud, const char *data, size_t len)
{
    out_t *o = ud;
    o->total += len;
    if (len >= 12 && !memcmp(data, "HTTP/1.1 ", 9)) {
        int status = (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
        if (status >= 500 && status != 503)
            o->bad = 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (!size)
        return 0;
    out_t o = { 0, 0 };
    uint32_t mask = mx__router_resource_bit("client") | mx__router_resource_bit("media");
    mx__conn_t *c = mx__conn_mem_new(mask, sink, &o);
    if (!c)
        return 0;
    size_t step = (size_t)(data[0] % 64) + 1;   /* 1..64-byte pieces, or all at once */
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    if (data[0] >= 192)
        step = left ? left : 1;
    while (left) {
        size_t k = left < step ? left : step;
        mx__conn_feed(c, p, k);
        p += k;
        left -= k;
    }
    mx__conn_mem_free(c);
    check(!o.bad);
    return 0;
}
