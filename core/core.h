/*
 * core.h: what the core's own files share and modules never see.
 *
 * The core keeps all of its mutable state in one context, `mx__ctx`, built
 * by `mxstack serve` (or by a test) and torn down at exit.  Each subsystem
 * owns one member of it and is the only code that touches that member.
 * Internal functions shared between core files use the `mx__` prefix.
 */
#ifndef MX_CORE_H
#define MX_CORE_H

#include "mx.h"
#include <stdbool.h>
#include <stdio.h>

/* ------------------------------------------------------------ config --- */

#define MX_MAX_BIND 8
#define MX_MAX_RESOURCES 16
#define MX_MAX_LISTENERS 16

typedef struct mx_listener_conf {
    int port;
    const char *bind_addresses[MX_MAX_BIND]; /* e.g. "127.0.0.1", "::" */
    int nbind;
    bool tls;
    const char *tls_certificate_path;  /* PEM; when tls */
    const char *tls_private_key_path;
    const char *type;                  /* "http" or "metrics" */
    const char *resources[MX_MAX_RESOURCES]; /* client, federation, media, ... */
    int nresources;
    bool x_forwarded;                  /* trust X-Forwarded-* from trusted_proxies */
    const char *vhost;                 /* NULL: any Host */
    int line;                          /* config line, for error messages */
} mx_listener_conf_t;

typedef struct mx_http_limits {
    uint64_t max_body_size;         /* bytes (client requests; media uses max_upload_size) */
    uint64_t max_header_size;       /* bytes, all headers together */
    uint64_t header_timeout_ms;     /* time to receive a complete header block */
    uint64_t idle_timeout_ms;       /* keep-alive idle */
    uint64_t body_timeout_ms;       /* max gap between body bytes */
    int max_connections;
    uint64_t shutdown_grace_ms;     /* SIGTERM: finish in-flight up to this */
    const char *trusted_proxies[16]; /* CIDRs whose X-Forwarded-* are honoured */
    int ntrusted_proxies;
} mx_http_limits_t;

typedef struct mx_db_conf {
    const char *engine;              /* "sqlite3" or "psycopg2" (PostgreSQL) */
    const char *sqlite_path;         /* sqlite3: args.database */
    const char *pg_conninfo;         /* psycopg2: a libpq conninfo string or URI */
    int cp_min, cp_max;              /* PostgreSQL pool size */
    bool sqlite_sync_full;           /* sqlite3: args.synchronous == full (default normal) */
} mx_db_conf_t;

typedef struct mx_client_conf {
    const char *ip_range_whitelist[16]; /* CIDRs the SSRF guard allows */
    int nwhitelist;
    const char *extra_ca_file;          /* PEM bundle trusted on top of the system one */
    const char *ca_file;                /* system bundle; default /etc/ssl/certs/ca-certificates.crt */
} mx_client_conf_t;

typedef struct mx_conf {
    const char *path;                 /* the config file, or "(built-in defaults)" */
    mx_server_conf_t server;
    mx_listener_conf_t listeners[MX_MAX_LISTENERS];
    int nlisteners;
    mx_http_limits_t http;
    mx_db_conf_t db;
    mx_client_conf_t client;
    const char *modules[16];          /* names of the modules this process runs */
    int nmodules;
    const char *module_dir;           /* where NAME.so live; NULL: defaults */
    const char *log_format;           /* "text" or "json" */
    const char *log_file;             /* NULL: stderr */
    const char *log_level;            /* default level */
    json_t *log_levels;               /* per-module levels {"homeserver": "debug"} */
    json_t *service_locations;        /* {"auth.token": "http://auth:8080"} (borrowed from root) */
    const char *internal_secret;      /* bearer secret of /_mxstack/service calls, or NULL */
    json_t *root;                     /* the parsed YAML as JSON (owned) */
    json_t *lines;                    /* "a.b.c" -> line number (owned) */
} mx_conf_t;

/* ------------------------------------------------------------ context --- */

struct mx_http_state;   /* http_server.c */
struct mx_store_state;  /* store.c */
struct mx_client_state; /* http_client.c */
struct mx_metrics_state;
struct mx_bus_state;
struct mx_module_state;
struct mx_log_state;
struct mx_services_state;

typedef struct mx_ctx {
    uv_loop_t *loop;
    mx_conf_t *conf;
    mx_signing_key_t signing_key;
    bool ready;                        /* storage migrated, every module started */
    bool stopping;
    uint64_t started_ms;
    struct mx_http_state *http;
    struct mx_store_state *store;
    struct mx_client_state *client;
    struct mx_metrics_state *metrics;
    struct mx_bus_state *bus;
    struct mx_module_state *modules;
    struct mx_log_state *log;
    struct mx_services_state *services;
} mx_ctx_t;

extern mx_ctx_t *mx__ctx;

/* ------------------------------------------------------------ logging --- */
int mx__log_open(const mx_conf_t *conf);      /* (re)open the log file; 0 or -errno */
void mx__log_close(void);
void mx__log_access(const char *method, const char *path, int status, uint64_t bytes,
                    double duration_ms, const char *user, const char *ip);

/* ------------------------------------------------------------- pools --- */
void mx_pool_reset(mx_pool_t *p);   /* free everything, keep the pool */

/* ------------------------------------------------------------ metrics --- */
int mx__metrics_init(void);
void mx__metrics_fini(void);
/* One observation of a finished request: `route` is the matched pattern or
 * "unmatched". */
void mx__metrics_observe_request(const char *method, const char *route, int status,
                                 double seconds);
/* Renders the Prometheus text exposition into a malloc'd buffer. */
char *mx__metrics_render(size_t *len);

/* --------------------------------------------------------------- HTTP --- */
int mx__http_init(void);                          /* after config, before modules start */
int mx__http_listen_all(char *err, size_t errlen);  /* bind every configured listener */
void mx__http_stop_accepting(void);
/* Finish in-flight requests until `deadline_ms` from now, then close all
 * connections and call `done`. */
void mx__http_drain(uint64_t deadline_ms, void (*done)(void));
void mx__http_fini(void);
int mx__http_reload_tls(void);                     /* SIGHUP */
int mx__http_open_connections(void);

/* Router (router.c): the route table the HTTP server consults. */
typedef struct mx_route_match {
    mx_handler_fn fn;
    void *ud;
    unsigned flags;
    const char *pattern;                /* for metrics and logs */
    const char *param_names[16];
    char *param_values[16];             /* URL-decoded; owned by the caller's pool */
    int nparams;
    bool path_known;                    /* some route matched the path (for 405) */
} mx_route_match_t;
int mx__router_init(void);
void mx__router_fini(void);
/* Finds the route for (resource, method, path); `skip` routes that matched
 * before are passed over (MX_DECLINED).  Returns 0 when found, -ENOENT when
 * no route has this path, -EPERM when the path is known but not the method. */
int mx__router_match(const char *resource, const char *method, const char *path,
                     int skip, mx_pool_t *pool, mx_route_match_t *m);

/* ------------------------------------------------------------ storage --- */
int mx__store_init(const mx_db_conf_t *conf, char *err, size_t errlen);
/* Opens another database (a module's own `database:` section). */
int mx__store_open_named(const char *module, const mx_db_conf_t *conf, char *err, size_t errlen);
/* Waits for queued writes to commit, then closes every database. */
void mx__store_close(void);
/* Figures for /metrics. */
void mx__store_stats(int *queued, int *in_flight, int *pool_size, int *pool_idle);

/* -------------------------------------------------------- HTTP client --- */
int mx__client_init(const mx_client_conf_t *conf);
void mx__client_fini(void);
/* The SSRF guard: 0 when `addr` may be contacted. */
int mx__ssrf_check(const struct sockaddr *addr);

/* ---------------------------------------------------------------- bus --- */
int mx__services_init(void);   /* adds the /_mxstack/service route */
void mx__services_fini(void);
int mx__bus_init(void);
void mx__bus_fini(void);

/* ------------------------------------------------------------ modules --- */
int mx__modules_load(const mx_conf_t *conf, char *err, size_t errlen);
int mx__modules_init(const mx_conf_t *conf, char *err, size_t errlen);
int mx__modules_start(char *err, size_t errlen);
/* check-config: fills every loaded module's config struct (validation only). */
int mx__modules_init_conf_only(const mx_conf_t *conf, char *err, size_t errlen);
void mx__modules_stop(void (*all_done)(void));
void mx__modules_fini(void);
const mx_api_t *mx__api_table(void);
const mx_manage_cmd_t *mx__modules_find_manage(const char *cmd);
void mx__modules_print_manage(FILE *out);
int mx__modules_count(void);

/* ------------------------------------------------------------- config --- */
/* Parses and validates `path` (NULL: built-in defaults with `data_dir`).
 * On error prints "file:line: key: reason" lines into `err` and returns
 * NULL. */
mx_conf_t *mx__conf_load(const char *path, const char *data_dir, char *err, size_t errlen);
void mx__conf_free(mx_conf_t *conf);
/* The YAML line of a dotted key path, or 0. */
int mx__conf_line(const mx_conf_t *conf, const char *keypath);
/* Fills a module's struct from its section; errors as above. */
int mx__conf_fill(const mx_conf_t *conf, const char *section, const mx_conf_item_t *items,
                  void *out, char *err, size_t errlen);

/* The `database:` section of a module's config section (see mx_db_get).
 * Returns 0 and fills `out` (strings valid until mx__conf_free), -ENOENT when
 * the section has no `database:` key, or -EINVAL with "file:line: key:
 * reason" lines in `err`. */
int mx__conf_db(const mx_conf_t *conf, const char *section, mx_db_conf_t *out, char *err,
                size_t errlen);

/* ------------------------------------------------------------ secrets --- */
/* Creates every missing secret under `data_dir` (never overwrites). */
int mx__secrets_init(const char *data_dir, int verbose, char *err, size_t errlen);
int mx__signing_key_load(const char *path, mx_signing_key_t *k, char *err, size_t errlen);
int mx__signing_key_save(const char *path, const mx_signing_key_t *k);
int mx__signing_key_generate(mx_signing_key_t *k);

int mx__crypto_init(void);  /* sodium_init; 0 or -1 */

#endif /* MX_CORE_H */
