/*
 * metrics.c: the Prometheus registry and the built-in endpoints.
 *
 *   GET /metrics  (resource "metrics")  Prometheus text exposition format
 *   GET /health   (resources "health", "client")  200 "OK" while the process lives
 *   GET /ready    (same)  200 once storage is migrated and every module started
 *
 * Request figures are kept per (route pattern, method): a count per status
 * class and a latency histogram.  Route patterns come from the router and
 * live as long as the process, so the hot path hashes their pointers.
 */
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define NBUCKETS 12
static const double bucket_bounds[NBUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
};
#define ROUTE_SLOTS 1024   /* open addressing; routes are few hundred at most */

typedef struct route_stats {
    const char *route;         /* borrowed from the router (or a literal) */
    char method[8];
    uint64_t by_class[6];      /* index status/100 (1xx..5xx) */
    uint64_t buckets[NBUCKETS];
    uint64_t count;
    double sum;
} route_stats_t;

struct mx_counter {
    struct mx_counter *next;
    char *name, *help, *labels;
    double value;
};

typedef struct gauge {
    struct gauge *next;
    char *name, *help, *labels;
    mx_gauge_fn fn;
    void *ud;
} gauge_t;

struct mx_metrics_state {
    route_stats_t *routes[ROUTE_SLOTS];
    int nroutes;
    struct mx_counter *counters;
    gauge_t *gauges;
};

static struct mx_metrics_state *state(void)
{
    return mx__ctx ? mx__ctx->metrics : NULL;
}

static size_t route_slot(const char *route, const char *method)
{
    uintptr_t h = (uintptr_t)route * 2654435761u;
    h ^= (uintptr_t)(unsigned char)method[0] * 31u + (uintptr_t)(unsigned char)method[1];
    return (size_t)(h % ROUTE_SLOTS);
}

void mx__metrics_observe_request(const char *method, const char *route, int status,
                                 double seconds)
{
    struct mx_metrics_state *st = state();
    if (!st || !route || !method)
        return;
    size_t i = route_slot(route, method);
    for (size_t n = 0; n < ROUTE_SLOTS; n++, i = (i + 1) % ROUTE_SLOTS) {
        route_stats_t *r = st->routes[i];
        if (!r) {
            if (st->nroutes >= ROUTE_SLOTS / 2)
                return;    /* table full: drop rather than degrade */
            r = calloc(1, sizeof(*r));
            if (!r)
                return;
            r->route = route;
            snprintf(r->method, sizeof(r->method), "%s", method);
            st->routes[i] = r;
            st->nroutes++;
        } else if (r->route != route || strncmp(r->method, method, sizeof(r->method) - 1) != 0) {
            continue;
        }
        int cls = status / 100;
        if (cls >= 1 && cls <= 5)
            r->by_class[cls]++;
        for (int b = 0; b < NBUCKETS; b++)
            if (seconds <= bucket_bounds[b])
                r->buckets[b]++;
        r->count++;
        r->sum += seconds;
        return;
    }
}

mx_counter_t *mx_metrics_counter(const char *name, const char *help, const char *labels)
{
    struct mx_metrics_state *st = state();
    if (!st)
        return NULL;
    mx_counter_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->name = strdup(name);
    c->help = strdup(help ? help : "");
    c->labels = labels ? strdup(labels) : NULL;
    c->next = st->counters;
    st->counters = c;
    return c;
}

void mx_counter_add(mx_counter_t *c, double v)
{
    if (c)
        c->value += v;
}

int mx_metrics_gauge(const char *name, const char *help, const char *labels, mx_gauge_fn fn,
                     void *ud)
{
    struct mx_metrics_state *st = state();
    if (!st)
        return -EINVAL;
    gauge_t *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->name = strdup(name);
    g->help = strdup(help ? help : "");
    g->labels = labels ? strdup(labels) : NULL;
    g->fn = fn;
    g->ud = ud;
    g->next = st->gauges;
    st->gauges = g;
    return 0;
}

/* ------------------------------------------------------------ rendering */

typedef struct out {
    char *buf;
    size_t len, cap;
    bool failed;
} out_t;

static void outf(out_t *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap * 2 + (size_t)n;
        char *nb = realloc(o->buf, ncap);
        if (!nb) {
            o->failed = true;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
}

static long proc_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

static int proc_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n > 3 ? n - 3 : 0;   /* ".", "..", and the dir's own fd */
}

static void render_process(out_t *o)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    outf(o, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
         proc_rss_bytes());
    outf(o, "# HELP process_cpu_seconds_total Total user and system CPU time.\n"
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.3f\n", cpu);
    outf(o, "# HELP process_open_fds Number of open file descriptors.\n"
            "# TYPE process_open_fds gauge\nprocess_open_fds %d\n", proc_open_fds());
    outf(o, "# HELP process_start_time_seconds Start time since the epoch.\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
         mx__ctx ? (double)mx__ctx->started_ms / 1000.0 : 0.0);
    outf(o, "# HELP mxstack_http_open_connections Open client connections.\n"
            "# TYPE mxstack_http_open_connections gauge\nmxstack_http_open_connections %d\n",
         mx__http_open_connections());
    int queued = 0, in_flight = 0, pool = 0, idle = 0;
    mx__store_stats(&queued, &in_flight, &pool, &idle);
    outf(o, "# HELP mxstack_store_queued Storage batches waiting.\n"
            "# TYPE mxstack_store_queued gauge\nmxstack_store_queued %d\n"
            "# HELP mxstack_store_in_flight Storage batches running.\n"
            "# TYPE mxstack_store_in_flight gauge\nmxstack_store_in_flight %d\n"
            "# HELP mxstack_store_pool_connections Database connections.\n"
            "# TYPE mxstack_store_pool_connections gauge\nmxstack_store_pool_connections %d\n"
            "# HELP mxstack_store_pool_idle Idle database connections.\n"
            "# TYPE mxstack_store_pool_idle gauge\nmxstack_store_pool_idle %d\n",
         queued, in_flight, pool, idle);
}

static void render_routes(out_t *o, struct mx_metrics_state *st)
{
    static const char *const classes[] = { "", "1xx", "2xx", "3xx", "4xx", "5xx" };
    outf(o, "# HELP mxstack_http_requests_total HTTP requests by route, method and status class.\n"
            "# TYPE mxstack_http_requests_total counter\n");
    for (int i = 0; i < ROUTE_SLOTS; i++) {
        route_stats_t *r = st->routes[i];
        if (!r)
            continue;
        for (int c = 1; c <= 5; c++)
            if (r->by_class[c])
                outf(o, "mxstack_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
                     r->route, r->method, classes[c], (unsigned long long)r->by_class[c]);
    }
    outf(o, "# HELP mxstack_http_request_duration_seconds Request latency by route.\n"
            "# TYPE mxstack_http_request_duration_seconds histogram\n");
    for (int i = 0; i < ROUTE_SLOTS; i++) {
        route_stats_t *r = st->routes[i];
        if (!r)
            continue;
        for (int b = 0; b < NBUCKETS; b++)
            outf(o, "mxstack_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"%g\"} %llu\n",
                 r->route, r->method, bucket_bounds[b], (unsigned long long)r->buckets[b]);
        outf(o, "mxstack_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"+Inf\"} %llu\n"
                "mxstack_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n"
                "mxstack_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n",
             r->route, r->method, (unsigned long long)r->count, r->route, r->method, r->sum,
             r->route, r->method, (unsigned long long)r->count);
    }
}

char *mx__metrics_render(size_t *len)
{
    struct mx_metrics_state *st = state();
    out_t o = { .buf = malloc(8192), .cap = 8192 };
    if (!o.buf || !st) {
        free(o.buf);
        return NULL;
    }
    o.buf[0] = '\0';
    render_process(&o);
    if (st)
        render_routes(&o, st);
    const char *last = NULL;
    for (mx_counter_t *c = st->counters; c; c = c->next) {
        if (!last || strcmp(last, c->name) != 0)
            outf(&o, "# HELP %s %s\n# TYPE %s counter\n", c->name, c->help, c->name);
        last = c->name;
        outf(&o, "%s%s%s%s %.17g\n", c->name, c->labels ? "{" : "", c->labels ? c->labels : "",
             c->labels ? "}" : "", c->value);
    }
    last = NULL;
    for (gauge_t *g = st->gauges; g; g = g->next) {
        if (!last || strcmp(last, g->name) != 0)
            outf(&o, "# HELP %s %s\n# TYPE %s gauge\n", g->name, g->help, g->name);
        last = g->name;
        outf(&o, "%s%s%s%s %.17g\n", g->name, g->labels ? "{" : "", g->labels ? g->labels : "",
             g->labels ? "}" : "", g->fn(g->ud));
    }
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}

/* ------------------------------------------------------------ endpoints */

static int h_metrics(mx_req_t *req, void *ud)
{
    size_t len = 0;
    char *text = mx__metrics_render(&len);
    if (!text) {
        mx_req_error(req, 500, "M_UNKNOWN", "could not render metrics");
        return MX_DONE;
    }
    mx_req_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return MX_DONE;
}

static int h_health(mx_req_t *req, void *ud)
{
    mx_req_reply(req, 200, "text/plain; charset=utf-8", "OK", 2);
    return MX_DONE;
}

static int h_ready(mx_req_t *req, void *ud)
{
    if (mx__ctx && mx__ctx->ready && !mx__ctx->stopping)
        mx_req_reply(req, 200, "text/plain; charset=utf-8", "OK", 2);
    else
        mx_req_error(req, 503, "M_NOT_READY", "starting or stopping");
    return MX_DONE;
}

int mx__metrics_init(void)
{
    if (!mx__ctx || mx__ctx->metrics)
        return -EINVAL;
    mx__ctx->metrics = calloc(1, sizeof(*mx__ctx->metrics));
    if (!mx__ctx->metrics)
        return -ENOMEM;
    int rc = 0;
    rc |= mx_route_add("metrics", "GET", "/metrics", h_metrics, NULL, MX_ROUTE_NO_CORS);
    rc |= mx_route_add("metrics", "GET", "/_synapse/metrics", h_metrics, NULL, MX_ROUTE_NO_CORS);
    static const char *const health_resources[] = { "health", "client", "metrics" };
    for (size_t i = 0; i < sizeof(health_resources) / sizeof(*health_resources); i++) {
        rc |= mx_route_add(health_resources[i], "GET", "/health", h_health, NULL, MX_ROUTE_NO_CORS);
        rc |= mx_route_add(health_resources[i], "GET", "/ready", h_ready, NULL, MX_ROUTE_NO_CORS);
    }
    return rc ? -EINVAL : 0;
}

void mx__metrics_fini(void)
{
    struct mx_metrics_state *st = state();
    if (!st)
        return;
    for (int i = 0; i < ROUTE_SLOTS; i++)
        free(st->routes[i]);
    while (st->counters) {
        mx_counter_t *c = st->counters;
        st->counters = c->next;
        free(c->name), free(c->help), free(c->labels), free(c);
    }
    while (st->gauges) {
        gauge_t *g = st->gauges;
        st->gauges = g->next;
        free(g->name), free(g->help), free(g->labels), free(g);
    }
    free(st);
    mx__ctx->metrics = NULL;
}
