/*
 * http_server.c: the HTTP server's lifetime: the state under mx__ctx->http,
 * the listening sockets (one per bind address and port; configured listeners
 * that share one differ by `vhost` and become the "sites" a request picks
 * by its Host header), accepting connections under the connection limit, the trusted-proxy list,
 * TLS certificate reloads and the graceful drain at shutdown.  What happens
 * on a connection is in http_conn.c.
 */
#include "http.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

mx_http_state_t *mx__http_state(void)
{
    if (!mx__ctx)
        return NULL;
    if (!mx__ctx->http)
        mx__ctx->http = calloc(1, sizeof(*mx__ctx->http));
    return mx__ctx->http;
}

void mx__http_state_release(void)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st || st->router || st->initialised)
        return;
    free(st);
    mx__ctx->http = NULL;
}

/* ---------------------------------------------------- trusted proxies --- */

static int cidr_parse(const char *s, mx__cidr_t *c)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(c, 0, sizeof(*c));
    int max;
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        max = 128;
    } else {
        return -EINVAL;
    }
    c->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || b < 0 || b > max)
            return -EINVAL;
        c->bits = (int)b;
    }
    return 0;
}

static bool cidr_has(const mx__cidr_t *c, int family, const unsigned char *a)
{
    unsigned char v4mapped[16];
    if (family == AF_INET6 && c->family == AF_INET) {
        /* ::ffff:a.b.c.d counts as a.b.c.d */
        static const unsigned char pre[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(a, pre, 12))
            return false;
        memcpy(v4mapped, a + 12, 4);
        a = v4mapped;
        family = AF_INET;
    }
    if (family != c->family)
        return false;
    int full = c->bits / 8, rem = c->bits % 8;
    if (memcmp(a, c->addr, (size_t)full))
        return false;
    if (rem) {
        unsigned char m = (unsigned char)(0xff << (8 - rem));
        if ((a[full] & m) != (c->addr[full] & m))
            return false;
    }
    return true;
}

static bool trusted(int family, const unsigned char *a)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st)
        return false;
    for (int i = 0; i < st->nproxies; i++)
        if (cidr_has(&st->proxies[i], family, a))
            return true;
    return false;
}

bool mx__http_addr_trusted(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return trusted(AF_INET, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return trusted(AF_INET6,
                       (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}

bool mx__http_ip_trusted(const char *ip)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, ip, a) == 1)
        return trusted(AF_INET, a);
    if (inet_pton(AF_INET6, ip, a) == 1)
        return trusted(AF_INET6, a);
    return false;
}

/* ----------------------------------------------------------------- init --- */

int mx__http_init(void)
{
    mx_http_state_t *st = mx__http_state();
    if (!st)
        return -ENOMEM;
    if (!st->router) {
        int rc = mx__router_init();
        if (rc < 0)
            return rc;
    }
    st->initialised = true;
    st->nproxies = 0;
    const mx_conf_t *conf = mx__ctx->conf;
    if (conf) {
        for (int i = 0; i < conf->http.ntrusted_proxies && st->nproxies < 16; i++) {
            if (cidr_parse(conf->http.trusted_proxies[i], &st->proxies[st->nproxies]) < 0) {
                mx_log("http", MX_LOG_ERROR, "trusted_proxies: bad CIDR \"%s\"",
                       conf->http.trusted_proxies[i]);
                return -EINVAL;
            }
            st->nproxies++;
        }
    }
    return 0;
}

/* --------------------------------------------------------------- accept --- */

static void on_connection(uv_stream_t *server, int status)
{
    mx__listener_t *l = server->data;
    mx_http_state_t *st = mx__ctx->http;
    if (status < 0 || !st)
        return;
    mx__conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        /* Still take the connection off the backlog so the loop doesn't spin. */
        uv_tcp_t *tmp = malloc(sizeof(*tmp));
        if (tmp && uv_tcp_init(server->loop, tmp) == 0) {
            if (uv_accept(server, (uv_stream_t *)tmp) == 0) {}
            uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
        } else {
            free(tmp);
        }
        return;
    }
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, mx__conn_handle_closed);
        uv_close((uv_handle_t *)&c->timer, mx__conn_handle_closed);
        return;
    }
    int max = mx__ctx->conf ? mx__ctx->conf->http.max_connections : 0;
    if (st->draining || (max > 0 && st->nconns >= max)) {
        /* Over the limit: accept and close at once, so the client sees a
         * clean refusal instead of waiting in the backlog. */
        uv_close((uv_handle_t *)&c->tcp, mx__conn_handle_closed);
        uv_close((uv_handle_t *)&c->timer, mx__conn_handle_closed);
        return;
    }
    const mx__vgroup_t *g = l->group;
    const mx__site_t *site = &g->sites[g->dflt >= 0 ? g->dflt : 0];
    c->group = g;
    c->lconf = site->conf;
    c->resmask = site->resmask;
    int len = sizeof(c->peer);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &len) == 0) {
        if (c->peer.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&c->peer, c->peer_ip, sizeof(c->peer_ip));
        else if (c->peer.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&c->peer, c->peer_ip, sizeof(c->peer_ip));
        c->peer_trusted = mx__http_addr_trusted((struct sockaddr *)&c->peer);
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (l->tls && !(c->tls = mx__tls_conn_new(l->tls))) {
        uv_close((uv_handle_t *)&c->tcp, mx__conn_handle_closed);
        uv_close((uv_handle_t *)&c->timer, mx__conn_handle_closed);
        return;
    }
    c->next = st->conns;
    if (st->conns)
        st->conns->prev = c;
    st->conns = c;
    st->nconns++;
    if (mx__conn_setup(c) < 0 || mx__conn_start(c) < 0)
        mx__conn_close(c);
}

void mx__http_conn_closed(mx__conn_t *c)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (c->prev)
        c->prev->next = c->next;
    else if (st && st->conns == c)
        st->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (!st)
        return;
    st->nconns--;
    if (st->draining && st->nconns == 0 && st->drain_done) {
        void (*done)(void) = st->drain_done;
        st->drain_done = NULL;
        if (st->drain_timer) {
            uv_close((uv_handle_t *)st->drain_timer, (uv_close_cb)free);
            st->drain_timer = NULL;
        }
        done();
    }
}

int mx__http_open_connections(void)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    return st ? st->nconns : 0;
}

/* --------------------------------------------------------------- listen --- */

/* --------------------------------------------------------- virtual hosts --- */

const mx__site_t *mx__vgroup_pick(const mx__vgroup_t *g, const char *host)
{
    if (g->nsites == 1 && !g->sites[0].conf->vhost)
        return &g->sites[0];
    if (host) {
        /* Strip the port: "host:8448", "[::1]:8448". */
        size_t n;
        if (host[0] == '[') {
            const char *rb = strchr(host, ']');
            n = rb ? (size_t)(rb - host) + 1 : strlen(host);
        } else {
            const char *colon = strchr(host, ':');
            n = colon ? (size_t)(colon - host) : strlen(host);
        }
        for (int i = 0; i < g->nsites; i++) {
            const char *v = g->sites[i].conf->vhost;
            if (v && strlen(v) == n && !strncasecmp(host, v, n))
                return &g->sites[i];
        }
    }
    return g->dflt >= 0 ? &g->sites[g->dflt] : NULL;
}

static const char *conf_path(void)
{
    return mx__ctx->conf->path ? mx__ctx->conf->path : "config";
}

/* Adds listener `lc` as a site of `l`'s socket (same address and port). */
static int add_site(mx__listener_t *l, const mx_listener_conf_t *lc, char *err, size_t errlen)
{
    mx__vgroup_t *g = l->group;
    const mx_listener_conf_t *first = g->nsites ? g->sites[0].conf : lc;
    if (lc->tls != first->tls ||
        (lc->tls && (strcmp(lc->tls_certificate_path ? lc->tls_certificate_path : "",
                            first->tls_certificate_path ? first->tls_certificate_path : "") ||
                     strcmp(lc->tls_private_key_path ? lc->tls_private_key_path : "",
                            first->tls_private_key_path ? first->tls_private_key_path : "")))) {
        snprintf(err, errlen, "%s:%d: listeners on port %d differ in TLS settings (one "
                 "certificate per port)", conf_path(), lc->line, lc->port);
        return -EINVAL;
    }
    for (int i = 0; i < g->nsites; i++) {
        const char *v = g->sites[i].conf->vhost;
        if ((!v && !lc->vhost) || (v && lc->vhost && !strcasecmp(v, lc->vhost))) {
            snprintf(err, errlen, "%s:%d: port %d already has a listener for %s%s", conf_path(),
                     lc->line, lc->port, lc->vhost ? "vhost " : "", lc->vhost ? lc->vhost
                                                                             : "other hosts");
            return -EINVAL;
        }
    }
    if (g->nsites == MX_MAX_LISTENERS)
        return -ENOSPC;
    mx__site_t *s = &g->sites[g->nsites];
    s->conf = lc;
    s->resmask = 0;
    for (int i = 0; i < lc->nresources; i++)
        s->resmask |= mx__router_resource_bit(lc->resources[i]);
    if (!lc->vhost)
        g->dflt = g->nsites;
    g->nsites++;
    return 0;
}

static int listen_one(mx_http_state_t *st, const mx_listener_conf_t *lc, const char *addr,
                      struct mx__tls_server *tls, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int rc;
    if (strchr(addr, ':'))
        rc = uv_ip6_addr(addr, lc->port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(addr, lc->port, (struct sockaddr_in *)&ss);
    if (rc < 0) {
        snprintf(err, errlen, "%s:%d: listener: bad bind address \"%s\"", conf_path(), lc->line,
                 addr);
        return -EINVAL;
    }
    mx__listener_t *l = calloc(1, sizeof(*l));
    mx__vgroup_t *g = calloc(1, sizeof(*g));
    if (!l || !g) {
        free(l);
        free(g);
        return -ENOMEM;
    }
    g->dflt = -1;
    st->groups[st->ngroups++] = g;
    l->group = g;
    if ((rc = add_site(l, lc, err, errlen)) < 0) {
        free(l);
        return rc;
    }
    uv_tcp_init(mx__ctx->loop, &l->tcp);
    l->tcp.data = l;
    unsigned flags = ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
    /* "::" with IPV6ONLY would hide IPv4; Synapse's "::" means both. */
    if (!strcmp(addr, "::"))
        flags = 0;
    rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, flags);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc < 0) {
        snprintf(err, errlen, "%s:%d: listener %s port %d: %s", conf_path(), lc->line, addr,
                 lc->port, uv_strerror(rc));
        l->closed = true;
        uv_close((uv_handle_t *)&l->tcp, (uv_close_cb)free);
        return rc;
    }
    if (tls)
        l->tls = mx__tls_server_ref(tls);
    st->listeners[st->nlisteners++] = l;
    return 0;
}

/* The socket already bound to `addr` port `port`, or NULL (port 0 is
 * never shared: every such listener gets its own ephemeral port). */
static mx__listener_t *find_socket(mx_http_state_t *st, const char *addr, int port,
                                   const char *const *addrs, int n)
{
    if (!port)
        return NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(addrs[i], addr) && st->listeners[i]->group->sites[0].conf->port == port)
            return st->listeners[i];
    return NULL;
}

int mx__http_listen_all(char *err, size_t errlen)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st || !mx__ctx->conf)
        return -EINVAL;
    const mx_conf_t *conf = mx__ctx->conf;
    const char *addrs[MX_MAX_LISTENERS * MX_MAX_BIND];   /* bind address of listeners[i] */
    for (int i = 0; i < conf->nlisteners; i++) {
        const mx_listener_conf_t *lc = &conf->listeners[i];
        struct mx__tls_server *tls = NULL;
        static const char *const def_bind[] = { "::" };
        int nb = lc->nbind ? lc->nbind : 1;
        for (int b = 0; b < nb; b++) {
            if (st->nlisteners == MX_MAX_LISTENERS * MX_MAX_BIND)
                break;
            const char *addr = lc->nbind ? lc->bind_addresses[b] : def_bind[0];
            mx__listener_t *shared = find_socket(st, addr, lc->port, addrs, st->nlisteners);
            int rc;
            if (shared) {
                rc = add_site(shared, lc, err, errlen);
            } else {
                if (lc->tls && !tls &&
                    (rc = mx__tls_server_new(lc->tls_certificate_path, lc->tls_private_key_path,
                                             &tls, err, errlen)) < 0)
                    return rc;
                int before = st->nlisteners;
                rc = listen_one(st, lc, addr, tls, err, errlen);
                if (st->nlisteners > before)
                    addrs[before] = addr;
            }
            if (rc < 0) {
                mx__tls_server_unref(tls);
                return rc;
            }
        }
        mx__tls_server_unref(tls);
    }
    return 0;
}

int mx__http_listener_port(int i)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st || i < 0 || i >= st->nlisteners)
        return -1;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&st->listeners[i]->tcp, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void on_listener_closed(uv_handle_t *h)
{
    mx__listener_t *l = h->data;
    mx__tls_server_unref(l->tls);
    free(l);
}

void mx__http_stop_accepting(void)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st)
        return;
    for (int i = 0; i < st->nlisteners; i++) {
        mx__listener_t *l = st->listeners[i];
        if (!l->closed) {
            l->closed = true;
            uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        }
    }
    st->nlisteners = 0;
}

int mx__http_reload_tls(void)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st)
        return 0;
    int ret = 0;
    for (int i = 0; i < st->nlisteners; i++) {
        mx__listener_t *l = st->listeners[i];
        if (!l->tls)
            continue;
        char err[256];
        struct mx__tls_server *n = NULL;
        const mx_listener_conf_t *lc = l->group->sites[0].conf;
        int rc = mx__tls_server_new(lc->tls_certificate_path, lc->tls_private_key_path, &n, err,
                                    sizeof(err));
        if (rc < 0) {
            /* Keep serving with the old certificate. */
            mx_log("http", MX_LOG_ERROR, "TLS reload failed: %s", err);
            ret = rc;
            continue;
        }
        mx__tls_server_unref(l->tls);   /* open connections keep their reference */
        l->tls = n;
    }
    return ret;
}

/* --------------------------------------------------------------- drain --- */

static void drain_deadline(uv_timer_t *t)
{
    mx_http_state_t *st = mx__ctx->http;
    mx__conn_t *c = st->conns;
    while (c) {
        mx__conn_t *next = c->next;
        mx__conn_close(c);
        c = next;
    }
}

void mx__http_drain(uint64_t deadline_ms, void (*done)(void))
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st) {
        if (done)
            done();
        return;
    }
    mx__http_stop_accepting();
    st->draining = true;
    st->drain_done = done;
    mx__conn_t *c = st->conns;
    while (c) {
        mx__conn_t *next = c->next;
        mx__conn_close_if_idle(c);
        c = next;
    }
    if (st->nconns == 0) {
        /* Closing the last idle connection above may already have ended
         * the drain (mx__http_conn_closed calls drain_done): call once. */
        void (*d)(void) = st->drain_done;
        st->drain_done = NULL;
        if (d)
            d();
        return;
    }
    st->drain_timer = malloc(sizeof(uv_timer_t));
    if (st->drain_timer) {
        uv_timer_init(mx__ctx->loop, st->drain_timer);
        uv_timer_start(st->drain_timer, drain_deadline, deadline_ms, 0);
    }
}

void mx__http_fini(void)
{
    mx_http_state_t *st = mx__ctx ? mx__ctx->http : NULL;
    if (!st)
        return;
    mx__http_stop_accepting();
    mx__conn_t *c = st->conns;
    while (c) {
        mx__conn_t *next = c->next;
        mx__conn_close(c);
        c = next;
    }
    /* Connections still closing unlink themselves through
     * mx__http_conn_closed, which copes with a freed state. */
    st->conns = NULL;
    if (st->drain_timer) {
        uv_close((uv_handle_t *)st->drain_timer, (uv_close_cb)free);
        st->drain_timer = NULL;
    }
    for (int i = 0; i < st->ngroups; i++)
        free(st->groups[i]);
    st->ngroups = 0;
    st->initialised = false;
    st->drain_done = NULL;
    st->draining = false;
    mx__http_state_release();
}
