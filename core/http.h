/*
 * http.h: what the HTTP server's files (http_server.c, http_conn.c,
 * http_req.c, router.c) share: the server state hanging off mx__ctx->http,
 * the connection and request structures, and the router's internal entry
 * points.  Modules never see this; they use the mx_req_* API in mx.h.
 *
 * The flow: http_server.c owns listeners and the set of connections;
 * http_conn.c owns one connection (bytes in through llhttp, bytes out with
 * one write per response, timeouts, TLS); http_req.c turns a parsed
 * request into a routed call and a reply into bytes.
 *
 * Lifetimes.  A request lives in its own pool (mx_req_pool).  The pool is
 * released when the response has been written (or dropped).  If the client
 * goes away while a handler has returned MX_ASYNC, the request is detached:
 * its on_abort callback (mx_req_on_abort) runs once, mx_req_is_aborted()
 * becomes true, and the request stays alive until the module finishes it
 * with any mx_req_reply* / mx_req_error call, which then only frees it.  A
 * module that holds async requests must therefore always finish them, also
 * after an abort.
 */
#ifndef MX_HTTP_H
#define MX_HTTP_H

#include "core.h"
#include <llhttp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MX__HTTP_MAX_HEADERS 100
#define MX__HTTP_MAX_QUERY 64
#define MX__HTTP_MAX_EXTRA_HEADERS 16
#define MX__HTTP_MAX_SEGMENTS 64
#define MX__HTTP_RBUF 16384

/* Internal route flag bits (above the public MX_ROUTE_* ones). */
#define MX__ROUTE_INTERNAL_MASK 0xff000000u

/* Methods the router knows by bit (for Allow headers). */
enum {
    MX__M_GET = 1 << 0, MX__M_HEAD = 1 << 1, MX__M_POST = 1 << 2, MX__M_PUT = 1 << 3,
    MX__M_DELETE = 1 << 4, MX__M_OPTIONS = 1 << 5, MX__M_PATCH = 1 << 6,
};

/* ------------------------------------------------------------ router --- */
struct mx__router;
/* The bit of resource `name` (registering the name on first use); 0 when
 * more than 32 names are in use. */
uint32_t mx__router_resource_bit(const char *name);
/* Like mx__router_match, over every resource whose bit is in `mask`.
 * `allow` (may be NULL) receives the MX__M_* bits of the methods the path
 * has, for a 405's Allow header. */
int mx__router_match_mask(uint32_t mask, const char *method, const char *path, int skip,
                          mx_pool_t *pool, mx_route_match_t *m, unsigned *allow);
/* Percent-decodes `s[0..len)` into `out` (len + 1 bytes); '+' becomes a
 * space when `plus`.  Returns the decoded length, or -1 on a bad escape. */
long mx__url_decode(const char *s, size_t len, char *out, int plus);

/* ---------------------------------------------------------------- TLS --- */
struct mx__tls_server;
struct mx__tls_conn;

/* ------------------------------------------------------------ listeners --- */
/* Virtual hosts: every configured listener on one address and port is a
 * "site" of one socket.  A request picks its site by its Host header (exact,
 * case-insensitive, port stripped); the site without `vhost` is the default
 * for other hosts.  Groups live in the server state until mx__http_fini, so
 * connections may outlive the listening socket (drain). */
typedef struct mx__site {
    const mx_listener_conf_t *conf;      /* borrowed from mx__ctx->conf */
    uint32_t resmask;                    /* router bits of conf->resources */
} mx__site_t;

typedef struct mx__vgroup {
    mx__site_t sites[MX_MAX_LISTENERS];
    int nsites;
    int dflt;                            /* index of the site without vhost, or -1 */
} mx__vgroup_t;

typedef struct mx__listener {
    uv_tcp_t tcp;
    mx__vgroup_t *group;                 /* borrowed from the server state */
    struct mx__tls_server *tls;          /* one reference; NULL for plain HTTP */
    bool closed;
} mx__listener_t;

/* The site of `g` that serves Host `host` (may be NULL), or NULL. */
const mx__site_t *mx__vgroup_pick(const mx__vgroup_t *g, const char *host);

/* A parsed trusted-proxy CIDR. */
typedef struct mx__cidr {
    int family;                          /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
} mx__cidr_t;

/* --------------------------------------------------------- connections --- */
typedef enum {
    MX__C_IDLE,        /* waiting for the first byte of a request */
    MX__C_HEADERS,     /* inside a header block */
    MX__C_BODY,        /* reading a body */
    MX__C_HANDLING,    /* request complete, handler running or async */
} mx__conn_phase_t;

typedef struct mx__span { uint32_t off, len; } mx__span_t;

/* Where a connection's output goes: a socket, or (fuzzing, tests) a
 * function that consumes bytes synchronously. */
typedef void (*mx__conn_sink_fn)(void *ud, const char *data, size_t len);

typedef struct mx__conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    int open_handles;                    /* freed when both are closed */
    struct mx__conn *prev, *next;        /* in the server's list */
    const mx_listener_conf_t *lconf;     /* borrowed (config lives for the process) */
    uint32_t resmask;                    /* when there is no group (memory mode) */
    const mx__vgroup_t *group;           /* the sites of the socket; NULL in memory mode */
    struct mx__tls_conn *tls;            /* owned; NULL for plain HTTP */
    mx__conn_sink_fn sink;               /* memory mode when set */
    void *sink_ud;

    llhttp_t parser;
    char *rbuf;                          /* owned: bytes read, [rpos, rlen) unparsed */
    size_t rcap, rlen, rpos;
    char *hbuf;                          /* owned: NUL-separated copies of url and headers */
    size_t hlen, hcap;
    mx__span_t url;
    mx__span_t hname[MX__HTTP_MAX_HEADERS], hval[MX__HTTP_MAX_HEADERS];
    int nhdr;
    int last_cb;                         /* 1 field, 2 value */
    int val_pieces;                      /* value callbacks for this header */
    const char *exec_start;              /* first byte of the current llhttp_execute */
    char prev_byte;                      /* last byte fed before it */
    uint64_t hdr_raw;                    /* raw header bytes seen for this request */
    mx__conn_phase_t phase;
    int early_status;                    /* answer this and close (413, 431, 400) */
    const char *early_errcode;
    const char *early_msg;

    struct mx_req *cur;                  /* the request parsed or being handled */
    mx_pool_t *spare;                    /* a reset pool kept for the next request */
    int writes_pending;
    char *cbuf;                          /* owned: ciphertext / discard buffer */
    bool reading, eof, closing, close_wanted, in_process, val_open;
    bool shutting, lingering, no_linger;
    bool body_hold;                      /* streamed body: no consumer yet, or paused */

    /* File replies (http_sendfile.c): c->cur's body leaves from a file. */
    struct mx_req *streaming;            /* the request whose file is being sent */
    uv_poll_t *wpoll;                    /* owned: UV_WRITABLE on a dup of the socket */
    int wpoll_fd;                        /* that dup, -1 when none */
    size_t wq_seen;                      /* write queue size at the last timer check */
    uint64_t deadline;                   /* loop time the current timeout ends, 0: none */
    uint64_t timer_due;                  /* loop time the uv timer fires (may be earlier) */

    char peer_ip[48];
    struct sockaddr_storage peer;
    bool peer_trusted;                   /* the peer address is a trusted proxy */
} mx__conn_t;

/* ------------------------------------------------------------ requests --- */
typedef struct mx__out_header { const char *name, *value; } mx__out_header_t;

struct mx_req {
    uint32_t magic;
    mx_pool_t *pool;
    mx__conn_t *conn;                    /* NULL once detached (client gone) */
    const char *method;
    int http_minor;
    char *target;                        /* raw request target */
    char *path;                          /* raw path (no query) */
    char *query;                         /* raw query or NULL */
    const char **hnames, **hvals;
    int nhdr;
    const char *qnames[MX__HTTP_MAX_QUERY], *qvals[MX__HTTP_MAX_QUERY];
    int nquery;
    char *body;                          /* NUL-terminated; pool or malloc (freed with the pool) */
    size_t body_len, body_cap;
    bool body_malloced;
    uint64_t body_limit;
    json_t *json;                        /* MX_ROUTE_JSON_BODY; freed with the pool */
    mx_route_match_t match;
    int route_rc;                        /* 0, -ENOENT, -EPERM */
    unsigned allow;
    int skip;
    const char *client_ip, *scheme, *user;
    mx_req_abort_fn abort_fn;
    void *abort_ud;
    mx__out_header_t extra[MX__HTTP_MAX_EXTRA_HEADERS];
    int nextra;
    bool replied, aborted, keep_alive, is_head, cors, in_handler, release_wanted, dispatched;
    uint64_t start_ns;
    int status;
    uv_write_t wreq;
    /* The response: the header block (pool), then for mx_req_reply_prepared
     * the module's header lines and the end of the block, then the body. */
    uv_buf_t wbufs[4];
    int nwbufs;
    bool borrowed;                       /* some wbufs are the caller's, valid only
                                          * during the reply call (copied if they
                                          * cannot leave at once) */
    const char *pre_hdrs;                /* mx_req_reply_prepared's header lines */
    size_t pre_hlen;
    uint32_t resmask;                    /* resources of the request's site */
    const mx_listener_conf_t *lconf;     /* the site's listener, or NULL */

    /* A file body (mx_req_reply_file): closed with the pool. */
    int file_fd;                         /* -1 when none */
    off_t file_off;
    size_t file_left;
    char *file_buf;                      /* TLS / memory mode: one chunk (pool) */

    /* A streamed request body (MX_ROUTE_STREAM_BODY). */
    bool stream_mode;                    /* the route streams; handler ran at headers */
    bool body_done;                      /* the whole body was delivered (or failed) */
    bool body_paused;                    /* the module asked for a pause */
    bool body_failed;                    /* on_chunk said stop: drop the rest */
    mx_req_chunk_fn chunk_fn;
    mx_req_body_end_fn end_fn;
    void *stream_ud;
};
#define MX__REQ_MAGIC 0x72657121u

/* ------------------------------------------------------------- server --- */
typedef struct mx_http_state {
    struct mx__router *router;
    mx__listener_t *listeners[MX_MAX_LISTENERS * MX_MAX_BIND];
    int nlisteners;
    mx__vgroup_t *groups[MX_MAX_LISTENERS * MX_MAX_BIND]; /* owned, freed at fini */
    int ngroups;
    mx__conn_t *conns;                   /* every open connection */
    int nconns;
    mx__cidr_t proxies[16];
    int nproxies;
    bool draining;
    int64_t date_sec;                    /* the second `date` shows */
    char date[32];                       /* "Date" header value, IMF-fixdate */
    uv_timer_t *drain_timer;
    void (*drain_done)(void);
    bool initialised;
} mx_http_state_t;

/* The state, created on first use by the router or the server. */
mx_http_state_t *mx__http_state(void);
/* Frees the state when neither the router nor the server uses it. */
void mx__http_state_release(void);

/* http_server.c */
/* The port listening socket `i` got (tests bind port 0); -1 if none. */
int mx__http_listener_port(int i);
bool mx__http_addr_trusted(const struct sockaddr *sa);
bool mx__http_ip_trusted(const char *ip);
void mx__http_conn_closed(mx__conn_t *c);   /* unlink and count down */

/* http_conn.c */
/* Sets up `c` (zeroed by the caller) for parsing; 0 or -ENOMEM. */
int mx__conn_setup(mx__conn_t *c);
/* Starts reading an accepted connection. */
int mx__conn_start(mx__conn_t *c);
/* A connection in memory mode: output goes to `sink`, nothing touches the
 * loop (used by the fuzz target and tests).  Free with mx__conn_mem_free. */
mx__conn_t *mx__conn_mem_new(uint32_t resmask, mx__conn_sink_fn sink, void *ud);
void mx__conn_mem_free(mx__conn_t *c);
/* Processes bytes as if read from the socket. */
void mx__conn_feed(mx__conn_t *c, const char *data, size_t len);
/* Queues r->wbufs (the current response); `r` is released when they are
 * written (or dropped), possibly before this returns.  A reply made by a
 * handler before it returns (r->in_handler) is written at once when the
 * socket takes it (its release then waits for the handler's return); what
 * the socket does not take, and replies from later callbacks, go through
 * uv_write, and `r` is released in its callback. */
void mx__conn_send_response(mx__conn_t *c, struct mx_req *r);
/* uv_close callback of a connection's handles; frees it after both. */
void mx__conn_handle_closed(uv_handle_t *h);
/* A write's completion: status 0 or a negative libuv code. */
typedef void (*mx__conn_write_fn)(mx__conn_t *c, int status);
/* Writes malloc'd `data` (taken); `done` runs once it is written (or has
 * failed) unless the connection closed meanwhile. */
void mx__conn_write_owned(mx__conn_t *c, char *data, size_t len, mx__conn_write_fn done);
/* Watches the socket for writability (a poll handle on a dup of it, kept
 * until the connection closes); 0 or a negative code. */
int mx__conn_wait_writable(mx__conn_t *c, uv_poll_cb cb);
void mx__conn_stop_writable(mx__conn_t *c);
/* Starts the write timeout: the connection closes when its output has not
 * moved for http.idle_timeout. */
void mx__conn_arm_write(mx__conn_t *c);
/* A response that was not sent by mx__conn_send_response is complete:
 * resume parsing (or close when !keep_alive). */
void mx__conn_response_done(mx__conn_t *c, bool keep_alive);
/* Streams r's file body after the header block in r->wbufs[0] (plain TCP:
 * sendfile; TLS and memory mode: chunks).  Parsing stays paused until the
 * last byte is out; then `r` is released and the next request runs. */
void mx__conn_send_file(mx__conn_t *c, struct mx_req *r);
/* A streamed body may flow again (consumer set, or resumed). */
void mx__conn_body_unhold(mx__conn_t *c);
/* Writes bytes outside any response (100 Continue); `data` is static. */
void mx__conn_send_raw(mx__conn_t *c, const char *data, size_t len);
/* Closes the connection (aborting an async request). */
void mx__conn_close(mx__conn_t *c);
/* Closes when nothing is in flight; used by drain. */
void mx__conn_close_if_idle(mx__conn_t *c);

/* http_req.c */
/* Called at the end of the header block: builds c->cur, routes it, checks
 * limits.  Returns 0, or sets c->early_status and returns -1. */
int mx__req_begin(mx__conn_t *c);
/* Appends body bytes; -1 (and c->early_status 413) past the limit. */
int mx__req_body(mx__conn_t *c, const char *p, size_t len);
/* Runs the complete request (handlers, replies). */
void mx__req_dispatch(mx__conn_t *c);
/* Answers an error found by the parser (no request or a partial one) with
 * Connection: close. */
void mx__req_early_reply(mx__conn_t *c, int status, const char *errcode, const char *msg);
/* Called once the response bytes are out (or dropped): frees the request. */
void mx__req_written(struct mx_req *r);
/* The connection is going away: detach (and abort) its request. */
void mx__req_detach(struct mx_req *r);
/* Replies with `len` bytes of `fd` from `off` as the body (fd stolen:
 * closed with the request's pool, also on error). */
void mx__req_reply_fd(struct mx_req *r, int status, const char *ctype, int fd, off_t off,
                      size_t len);
/* Streamed bodies: the end of the body (status 0) or its failure (< 0). */
void mx__req_body_end(struct mx_req *r, int status);
/* The file body's descriptor is closed (pool cleanup of file replies). */
void mx__req_file_close(void *arg);
/* True once an MX_ASYNC request has lost its client. */
bool mx__req_is_aborted(const struct mx_req *r);

#endif /* MX_HTTP_H */
