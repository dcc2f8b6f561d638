/*
 * mx.h: the whole API the core offers to modules, and the module descriptor.
 *
 * Every function a module may call is listed once, in MX_API_FUNCS below.
 * The core implements each as an ordinary function.  A module compiled as a
 * shared object (MX_MODULE_BUILD defined) never links against core symbols:
 * the same names become static inline wrappers that call through a table of
 * function pointers the loader hands the module before init.  So module code
 * reads the same whether it is built into a test program or loaded with
 * dlopen, and the table only ever grows at its end.
 *
 * Threads: unless a comment says otherwise, every function here must be
 * called on the loop thread.
 *
 * Ownership words used below: "borrowed" = valid until the named event;
 * "owned by pool" = freed when the pool is destroyed; "stolen" = the callee
 * takes the caller's reference.
 */
#ifndef MX_H
#define MX_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include <uv.h>

/* ABI history (bump MAJOR on any incompatible change, MINOR on additions):
 *   1.0  first version.
 *   1.1  JSON services local or remote (mx_service_provide/call/reply),
 *        mx_req_reply_file.
 *   1.2  streaming request bodies: MX_ROUTE_STREAM_BODY, mx_req_body_stream,
 *        mx_req_body_pause, mx_req_body_resume.
 *   1.3  mx_read_file, mx_share_dir.
 *   1.4  mx_conf_size, mx_conf_duration.
 *   1.5  mx_req_reply_prepared.
 *   1.6  mx_req_query_nth. */
#define MX_ABI_MAJOR 1
#define MX_ABI_MINOR 6
#define MX_ABI_SIGNATURE "lp64-jansson2-uv1"

/* Handler outcomes and error codes.  Functions return 0 or a negative code:
 * -errno values (-ENOMEM, -EINVAL, ...) or one of these. */
enum {
    MX_DONE = 0,      /* handler replied */
    MX_ASYNC = 1,     /* handler will reply later (mx_req_reply_*) */
    MX_DECLINED = 2,  /* try the next matching route */
};
#define MX_EDB (-10001)       /* storage error (constraint, connection...) */
#define MX_ECONSTRAINT (-10002) /* unique / foreign key constraint failed */
#define MX_ETIMEOUT (-10003)
#define MX_ESSRF (-10004)     /* outbound address refused by the SSRF guard */
#define MX_ETOOBIG (-10005)

typedef enum { MX_LOG_ERROR, MX_LOG_WARN, MX_LOG_INFO, MX_LOG_DEBUG } mx_log_level_t;

/* ---------------------------------------------------------------- pools ---
 * An arena: many allocations, one free.  Each request owns one. */
typedef struct mx_pool mx_pool_t;

/* ------------------------------------------------------------- requests --- */
typedef struct mx_req mx_req_t;

/* A route handler.  `ud` is what was passed to mx_route_add.  Returns
 * MX_DONE after replying, MX_ASYNC if it will reply later, or MX_DECLINED. */
typedef int (*mx_handler_fn)(mx_req_t *req, void *ud);

/* Route flags. */
#define MX_ROUTE_JSON_BODY 0x1  /* core parses the body strictly as a JSON object
                                   before the handler runs; M_NOT_JSON / M_BAD_JSON
                                   otherwise.  An empty body is an empty object. */
#define MX_ROUTE_NO_CORS 0x2    /* no CORS headers on this route */
#define MX_ROUTE_LARGE_BODY 0x4 /* body limit is server.max_upload_size (media
                                   uploads) instead of http.max_body_size */
#define MX_ROUTE_STREAM_BODY 0x8 /* the handler runs as soon as the headers are
                                   in, and takes the body in pieces with
                                   mx_req_body_stream (never buffered); the
                                   limit is server.max_upload_size */

/* Called when the client goes away while a request is MX_ASYNC. */
typedef void (*mx_req_abort_fn)(mx_req_t *req, void *ud);

/* Streaming request bodies (MX_ROUTE_STREAM_BODY routes).  The handler
 * returns MX_ASYNC and, now or later, calls mx_req_body_stream.  Until it
 * does, the core reads no body bytes (the client waits: backpressure).
 *
 * on_chunk gets each piece as it arrives (`data` borrowed until it
 * returns; pieces are at most ~16 KiB).  It returns 0 for "more", 1 for
 * "pause" (as mx_req_body_pause: no more pieces until mx_req_body_resume,
 * e.g. while the module's own write of this piece is in flight), or a
 * negative code to stop: no more callbacks (on_end neither); the module
 * replies and the connection closes after that reply.
 *
 * on_end runs once: status 0 when the whole body has been delivered (the
 * module then replies as usual); or a negative code when the body cannot
 * complete: MX_ETOOBIG (past server.max_upload_size: the core has answered
 * 413 itself), -ECONNRESET (client gone, body timeout, malformed chunking).
 * After a negative status the request is detached like an aborted one: the
 * module must still finish it with any mx_req_reply* / mx_req_error call,
 * which then only frees it.  A module that replies before the end of the
 * body gets no more callbacks; the connection closes after the reply. */
typedef int (*mx_req_chunk_fn)(mx_req_t *req, const char *data, size_t len, void *ud);
typedef void (*mx_req_body_end_fn)(mx_req_t *req, int status, void *ud);

/* --------------------------------------------------------------- storage ---
 * One asynchronous API over SQLite and PostgreSQL.
 *
 * SQL text uses `?` placeholders (the core rewrites them to $1.. for
 * PostgreSQL).  Write portable SQL: INSERT ... RETURNING, ON CONFLICT,
 * no AUTOINCREMENT in queries (migrations may differ per engine).
 *
 * A batch is a list of statements that runs as one unit:
 *   - MX_SQL_WRITE: one transaction; all statements or none.  The callback
 *     runs only after the transaction is durable (committed + fsync'd).
 *     SQLite batches share one writer thread and may share a commit
 *     (group commit); a failing batch rolls back only itself.
 *   - MX_SQL_READ: a consistent snapshot, no writes.
 * Parameters are given by a type string: 'i' int64_t, 's' const char *
 * (NULL binds NULL), 'b' (const void *, size_t) blob, 'n' NULL, 'd' double.
 * Parameter data is copied at mx_sql_add time.
 * Ownership: mx_sql_run always takes the batch.  On success the callback
 * runs exactly once; on error it never runs, and calling mx_sql_batch_free
 * on the batch right after the failed run is allowed and does nothing.
 * mx_sql_run_sync always consumes the batch.
 */
typedef struct mx_db mx_db_t;
typedef struct mx_sql_batch mx_sql_batch_t;
typedef struct mx_sql_res mx_sql_res_t;   /* the result of one batch */
#define MX_SQL_READ 0
#define MX_SQL_WRITE 1
/* `status` is 0 or a negative code; on error `res` still describes which
 * statement failed (mx_sql_errmsg).  `res` is borrowed until the callback
 * returns. */
typedef void (*mx_sql_done_fn)(int status, mx_sql_res_t *res, void *ud);

/* One schema migration of a module.  `sql` runs on both engines unless the
 * engine-specific text is set.  Migrations run in order at start, inside one
 * transaction each; a database whose version is newer than the newest
 * migration known is refused. */
typedef struct mx_migration {
    int version;              /* 1, 2, 3 ... */
    const char *sql;          /* for both engines, or NULL */
    const char *sqlite;       /* SQLite-only text (used instead of sql) */
    const char *postgres;     /* PostgreSQL-only text (used instead of sql) */
} mx_migration_t;

/* ---------------------------------------------------------- HTTP client --- */
typedef struct mx_http_response {
    int status;               /* HTTP status; 0 when `err` is set */
    int err;                  /* 0, or a negative code (MX_ETIMEOUT, MX_ESSRF, -ECONNREFUSED...) */
    const char *errmsg;       /* human text when err != 0 */
    const char *body;         /* NUL-terminated; borrowed until the callback returns */
    size_t body_len;
    /* headers: lower-cased names; borrowed until the callback returns */
    size_t nheaders;
    const char *const *header_names;
    const char *const *header_values;
} mx_http_response_t;
typedef void (*mx_http_done_fn)(const mx_http_response_t *resp, void *ud);
typedef struct mx_http_request {
    const char *method;       /* "GET", "POST"... */
    const char *url;          /* http:// or https:// */
    const char *const *headers; /* NULL-terminated list of "Name: value" strings, or NULL */
    const void *body;         /* copied */
    size_t body_len;
    uint64_t timeout_ms;      /* 0 = default (30 s) */
    size_t max_response;      /* 0 = default (10 MiB) */
    int allow_private;        /* 1: skip the SSRF guard (internal calls to configured peers) */
} mx_http_request_t;

/* ------------------------------------------------------------------ bus ---
 * Publish/subscribe by topic.  In process by default; across processes when
 * a module installs a transport (pubsub).  Messages are JSON, borrowed by
 * subscribers for the duration of the callback. */
typedef void (*mx_bus_fn)(const char *topic, const json_t *msg, void *ud);

/* ------------------------------------------------------------- services ---
 * Besides typed in-process interfaces (mx_service_register/get), a module
 * can provide a service as JSON calls: the same mx_service_call works when
 * the provider is in this process (a direct call) and when it runs in
 * another mxstack (an HTTP call to `service_locations.<name>`, answered by
 * that process's core on the "internal" resource).  Callers cannot tell. */
typedef struct mx_service_call mx_service_call_t;
/* Provider side: answer once with mx_service_reply (now or later). `args`
 * is borrowed until the reply. */
typedef void (*mx_service_handler_fn)(mx_service_call_t *call, const char *method,
                                      const json_t *args, void *ud);
/* Caller side: `status` 0 with `result`, or a negative code (-ENOENT: no
 * such service or method; MX_ETIMEOUT; -EIO: transport).  `result` is
 * borrowed until the callback returns. */
typedef void (*mx_service_done_fn)(int status, const json_t *result, void *ud);

/* -------------------------------------------------------------- metrics --- */
typedef struct mx_counter mx_counter_t;
typedef double (*mx_gauge_fn)(void *ud);

/* --------------------------------------------------------------- config ---
 * A module describes its config section with a table; the core fills the
 * module's struct and reports `file:line: key: reason` for bad values. */
typedef enum {
    MX_CONF_T_END = 0,
    MX_CONF_T_STR,      /* char * (owned by the core, valid until fini) */
    MX_CONF_T_INT,      /* int64_t */
    MX_CONF_T_BOOL,     /* int */
    MX_CONF_T_SIZE,     /* uint64_t; accepts 10M, 512K, 1G */
    MX_CONF_T_DURATION, /* uint64_t milliseconds; accepts 500ms, 10s, 5m, 1h, 2d */
    MX_CONF_T_JSON,     /* json_t * (the raw subtree; borrowed until fini) */
} mx_conf_type_t;
typedef struct mx_conf_item {
    const char *key;
    mx_conf_type_t type;
    size_t offset;
    const char *def;    /* default as YAML text, or NULL for none/NULL */
    int sensitive;      /* never log the value */
} mx_conf_item_t;
#define MX_CONF_ITEM(k, t, st, f, d, s) { k, t, offsetof(st, f), d, s }
#define MX_CONF_STR(k, st, f, d) MX_CONF_ITEM(k, MX_CONF_T_STR, st, f, d, 0)
#define MX_CONF_SECRET(k, st, f, d) MX_CONF_ITEM(k, MX_CONF_T_STR, st, f, d, 1)
#define MX_CONF_INT(k, st, f, d) MX_CONF_ITEM(k, MX_CONF_T_INT, st, f, d, 0)
#define MX_CONF_BOOL(k, st, f, d) MX_CONF_ITEM(k, MX_CONF_T_BOOL, st, f, d, 0)
#define MX_CONF_SIZE(k, st, f, d) MX_CONF_ITEM(k, MX_CONF_T_SIZE, st, f, d, 0)
#define MX_CONF_DURATION(k, st, f, d) MX_CONF_ITEM(k, MX_CONF_T_DURATION, st, f, d, 0)
#define MX_CONF_JSON(k, st, f) MX_CONF_ITEM(k, MX_CONF_T_JSON, st, f, NULL, 0)
#define MX_CONF_END { NULL, MX_CONF_T_END, 0, NULL, 0 }

/* Server-wide settings every module may read (Synapse's top-level keys).
 * Borrowed; valid for the life of the process. */
typedef struct mx_server_conf {
    const char *server_name;
    const char *public_baseurl;     /* always ends with '/' */
    const char *data_dir;
    const char *registration_shared_secret; /* NULL when unset */
    const char *signing_key_path;
    const char *media_store_path;
    uint64_t max_upload_size;
    int enable_registration;
    const char *default_room_version;
    const json_t *root;             /* the whole parsed config, for top-level
                                       Synapse keys a module understands */
} mx_server_conf_t;

/* ------------------------------------------------------ JSON and crypto --- */
typedef struct mx_signing_key {
    unsigned char pk[32];
    unsigned char sk[64];
    char key_id[64];          /* "ed25519:a_XXXX" */
} mx_signing_key_t;

/* ------------------------------------------------------------ the API --- *
 * X(return type, name, parameter list, argument list) */
#define MX_API_FUNCS(X) \
    /* pools */ \
    X(void *, mx_palloc, (mx_pool_t *p, size_t n), (p, n)) \
    X(char *, mx_pstrdup, (mx_pool_t *p, const char *s), (p, s)) \
    X(int, mx_pool_on_free, (mx_pool_t *p, void (*fn)(void *), void *arg), (p, fn, arg)) \
    X(mx_pool_t *, mx_pool_new, (void), ()) \
    X(void, mx_pool_free, (mx_pool_t *p), (p)) \
    /* routes: `resource` is one of client, federation, media, admin, metrics, web, auth, health; \
     * `pattern` like "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}". */ \
    X(int, mx_route_add, (const char *resource, const char *method, const char *pattern, \
                          mx_handler_fn fn, void *ud, unsigned flags), \
      (resource, method, pattern, fn, ud, flags)) \
    /* requests (borrowed strings valid until the request finishes) */ \
    X(const char *, mx_req_method, (mx_req_t *r), (r)) \
    X(const char *, mx_req_path, (mx_req_t *r), (r)) \
    X(const char *, mx_req_param, (mx_req_t *r, const char *name), (r, name)) \
    X(const char *, mx_req_query, (mx_req_t *r, const char *name), (r, name)) \
    X(const char *, mx_req_header, (mx_req_t *r, const char *name), (r, name)) \
    X(const char *, mx_req_body, (mx_req_t *r, size_t *len), (r, len)) \
    X(json_t *, mx_req_json, (mx_req_t *r), (r)) /* borrowed; MX_ROUTE_JSON_BODY */ \
    X(const char *, mx_req_client_ip, (mx_req_t *r), (r)) \
    X(const char *, mx_req_access_token, (mx_req_t *r), (r)) /* header or ?access_token */ \
    X(mx_pool_t *, mx_req_pool, (mx_req_t *r), (r)) \
    X(void, mx_req_set_user, (mx_req_t *r, const char *user_id), (r, user_id)) \
    X(void, mx_req_on_abort, (mx_req_t *r, mx_req_abort_fn fn, void *ud), (r, fn, ud)) \
    X(void, mx_req_set_header, (mx_req_t *r, const char *name, const char *value), (r, name, value)) \
    /* replies: exactly one per request; they finish it */ \
    X(void, mx_req_reply, (mx_req_t *r, int status, const char *content_type, \
                           const void *body, size_t len), (r, status, content_type, body, len)) \
    X(void, mx_req_reply_json, (mx_req_t *r, int status, json_t *body /* stolen */), (r, status, body)) \
    /* storage: `name` NULL is the shared database; a module may open the one \
     * its config section names (`database:`) */ \
    X(mx_db_t *, mx_db_get, (const char *module), (module)) \
    X(int, mx_db_migrate, (mx_db_t *db, const char *module, const mx_migration_t *m, size_t n), \
      (db, module, m, n)) \
    X(int, mx_db_is_postgres, (mx_db_t *db), (db)) \
    X(mx_sql_batch_t *, mx_sql_batch_new, (mx_db_t *db, int mode), (db, mode)) \
    X(int, mx_sql_run, (mx_sql_batch_t *b, mx_sql_done_fn cb, void *ud), (b, cb, ud)) \
    X(int, mx_sql_run_sync, (mx_sql_batch_t *b, mx_sql_res_t **out), (b, out)) \
    X(void, mx_sql_batch_free, (mx_sql_batch_t *b), (b)) \
    X(void, mx_sql_res_free, (mx_sql_res_t *res), (res)) \
    X(int, mx_sql_nrows, (const mx_sql_res_t *res, int stmt), (res, stmt)) \
    X(int64_t, mx_sql_changes, (const mx_sql_res_t *res, int stmt), (res, stmt)) \
    X(int, mx_sql_is_null, (const mx_sql_res_t *res, int stmt, int row, int col), (res, stmt, row, col)) \
    X(int64_t, mx_sql_int, (const mx_sql_res_t *res, int stmt, int row, int col), (res, stmt, row, col)) \
    X(const char *, mx_sql_text, (const mx_sql_res_t *res, int stmt, int row, int col), (res, stmt, row, col)) \
    X(const void *, mx_sql_blob, (const mx_sql_res_t *res, int stmt, int row, int col, size_t *len), \
      (res, stmt, row, col, len)) \
    X(const char *, mx_sql_errmsg, (const mx_sql_res_t *res), (res)) \
    /* JSON (jansson values; strings returned are malloc'd, free() them) */ \
    X(json_t *, mx_json_parse, (const char *buf, size_t len, const char **errcode, \
                                char *errbuf, size_t errlen), (buf, len, errcode, errbuf, errlen)) \
    X(char *, mx_json_canonical, (const json_t *v, size_t *len), (v, len)) \
    /* crypto */ \
    X(char *, mx_b64_encode, (const void *data, size_t len, int urlsafe), (data, len, urlsafe)) \
    X(int, mx_b64_decode, (const char *s, size_t slen, unsigned char **out, size_t *outlen), \
      (s, slen, out, outlen)) \
    X(void, mx_sha256, (const void *data, size_t len, unsigned char out[32]), (data, len, out)) \
    X(void, mx_hmac_sha1, (const void *key, size_t keylen, const void *data, size_t len, \
                           unsigned char out[20]), (key, keylen, data, len, out)) \
    X(void, mx_hmac_sha256, (const void *key, size_t keylen, const void *data, size_t len, \
                             unsigned char out[32]), (key, keylen, data, len, out)) \
    X(char *, mx_ed25519_sign_b64, (const mx_signing_key_t *k, const void *msg, size_t len), \
      (k, msg, len)) \
    X(int, mx_ed25519_verify_b64, (const char *pk_b64, const char *sig_b64, const void *msg, size_t len), \
      (pk_b64, sig_b64, msg, len)) \
    X(int, mx_json_sign, (json_t *obj, const char *entity, const mx_signing_key_t *k), (obj, entity, k)) \
    X(int, mx_json_verify, (const json_t *obj, const char *entity, const char *key_id, \
                            const char *pk_b64), (obj, entity, key_id, pk_b64)) \
    X(int, mx_ct_equal, (const void *a, const void *b, size_t len), (a, b, len)) \
    X(int, mx_ct_streq, (const char *a, const char *b), (a, b)) \
    X(void, mx_random_bytes, (void *buf, size_t len), (buf, len)) \
    X(char *, mx_random_string, (size_t len), (len)) \
    X(const mx_signing_key_t *, mx_server_signing_key, (void), ()) \
    /* server config */ \
    X(const mx_server_conf_t *, mx_server_conf, (void), ()) \
    /* HTTP client */ \
    X(int, mx_http_fetch, (const mx_http_request_t *rq, mx_http_done_fn cb, void *ud), (rq, cb, ud)) \
    /* bus */ \
    X(int, mx_bus_publish, (const char *topic, const json_t *msg), (topic, msg)) \
    X(int, mx_bus_subscribe, (const char *topic, mx_bus_fn fn, void *ud), (topic, fn, ud)) \
    /* services between modules */ \
    X(int, mx_service_register, (const char *name, const void *iface), (name, iface)) \
    X(const void *, mx_service_get, (const char *name), (name)) \
    /* metrics: names follow Prometheus rules; labels as "k=\"v\"" text or NULL */ \
    X(mx_counter_t *, mx_metrics_counter, (const char *name, const char *help, const char *labels), \
      (name, help, labels)) \
    X(void, mx_counter_add, (mx_counter_t *c, double v), (c, v)) \
    X(int, mx_metrics_gauge, (const char *name, const char *help, const char *labels, \
                              mx_gauge_fn fn, void *ud), (name, help, labels, fn, ud)) \
    /* the loop */ \
    X(uv_loop_t *, mx_loop, (void), ()) \
    X(uint64_t, mx_now_ms, (void), ()) /* wall clock, ms since the epoch */ \
    /* ABI 1.1: JSON services, local or remote (see "services" above) */ \
    X(int, mx_service_provide, (const char *name, mx_service_handler_fn fn, void *ud), (name, fn, ud)) \
    X(int, mx_service_call, (const char *name, const char *method, const json_t *args, \
                             mx_service_done_fn cb, void *ud), (name, method, args, cb, ud)) \
    /* `result` stolen; status 0 or a negative code */ \
    X(void, mx_service_reply, (mx_service_call_t *call, int status, json_t *result), (call, status, result)) \
    /* replies from a file: `len` bytes of `fd` from `offset` (a regular file). \
     * `fd` is stolen: the core closes it, also on error.  The body leaves \
     * without passing through the module (sendfile where the connection \
     * allows it).  Finishes the request like mx_req_reply. */ \
    X(void, mx_req_reply_file, (mx_req_t *r, int status, const char *content_type, int fd, \
                                off_t offset, size_t len), (r, status, content_type, fd, offset, len)) \
    /* ABI 1.2: streaming request bodies (see mx_req_chunk_fn above).  0, or \
     * -EINVAL when the route is not MX_ROUTE_STREAM_BODY or a stream is set. */ \
    X(int, mx_req_body_stream, (mx_req_t *r, mx_req_chunk_fn on_chunk, mx_req_body_end_fn on_end, \
                                void *ud), (r, on_chunk, on_end, ud)) \
    X(void, mx_req_body_pause, (mx_req_t *r), (r)) \
    X(void, mx_req_body_resume, (mx_req_t *r), (r)) \
    /* ABI 1.3: files shipped with mxstack.  mx_read_file: the whole regular \
     * file `path` (relative to `dirfd`, or AT_FDCWD) into a malloc'd \
     * NUL-terminated buffer (free() it), its length in *len (may be NULL); \
     * `flags` are added to O_RDONLY (e.g. O_NOFOLLOW).  NULL with errno set: \
     * EINVAL not a regular file, EFBIG more than max_len bytes. */ \
    X(char *, mx_read_file, (int dirfd, const char *path, int flags, size_t max_len, \
                             size_t *len), (dirfd, path, flags, max_len, len)) \
    /* The directory of installed files `sub` (e.g. "web/landing"), malloc'd: \
     * `configured` when set, else $(pkgdatadir)/sub when it exists, else the \
     * source tree's (running from a build tree), else `sub` itself. */ \
    X(char *, mx_share_dir, (const char *configured, const char *sub), (configured, sub)) \
    /* ABI 1.4: config values read straight from the document (mx_server_conf \
     * ()->root) with the core's units.  mx_conf_size: an integer (bytes) or \
     * "10M", "512K", "1GiB"...; mx_conf_duration: an integer (ms) or "500ms", \
     * "10s", "24h", "1w"...  `v` NULL or JSON null gives `def`.  0, or \
     * -EINVAL (negative, fractional, unknown unit, not a number or string). */ \
    X(int, mx_conf_size, (const json_t *v, uint64_t def, uint64_t *out), (v, def, out)) \
    X(int, mx_conf_duration, (const json_t *v, uint64_t def, uint64_t *out), (v, def, out)) \
    /* ABI 1.5: a reply whose header lines the module keeps ready-made \
     * (static files): `headers` holds `hlen` bytes of complete \
     * "Name: value\r\n" lines (Content-Type among them; never Server, Date, \
     * Content-Length or Connection, which the core adds, and the module \
     * vouches that they are well-formed), then `len` bytes of body. \
     * Both are only read during the call: they leave at once, or are \
     * copied when the socket cannot take them.  Headers set with \
     * mx_req_set_header are sent too.  Finishes the request like \
     * mx_req_reply (HEAD and 304: no body). */ \
    X(void, mx_req_reply_prepared, (mx_req_t *r, int status, const char *headers, size_t hlen, \
                                    const void *body, size_t len), \
      (r, status, headers, hlen, body, len)) \
    /* ABI 1.6: the n-th (from 0) value of a repeated query parameter \
     * (?a=1&a=2), in the order of the URL; NULL past the last (borrowed). */ \
    X(const char *, mx_req_query_nth, (mx_req_t *r, const char *name, int n), (r, name, n))

/* The variadic functions: X(return type, name, parameter list). */
#define MX_API_VFUNCS(X) \
    /* printf-style into the pool */ \
    X(char *, mx_psprintf, (mx_pool_t *p, const char *fmt, ...)) \
    /* logging: the module name is prefixed to the line */ \
    X(void, mx_log, (const char *module, mx_log_level_t lvl, const char *fmt, ...)) \
    /* {errcode, error} JSON reply; finishes the request */ \
    X(void, mx_req_error, (mx_req_t *r, int status, const char *errcode, const char *fmt, ...)) \
    /* add one statement to a batch; see the storage comment above */ \
    X(int, mx_sql_add, (mx_sql_batch_t *b, const char *sql, const char *types, ...))

/* The table of function pointers: one member per entry above. */
#define MX__API_MEMBER(ret, name, params, ...) ret (*name) params;
typedef struct mx_api {
    uint32_t size;            /* sizeof(mx_api_t) of the core that filled it */
    MX_API_VFUNCS(MX__API_MEMBER)
    MX_API_FUNCS(MX__API_MEMBER)
} mx_api_t;

/* --------------------------------------------------------------- modules --- */
typedef struct mx_module {
    uint32_t abi_major, abi_minor;
    const char *signature;    /* MX_ABI_SIGNATURE of the build */
    const char *name;
    const mx_api_t **api_slot; /* the loader stores the API table here */
    const mx_conf_item_t *conf; /* config table for the module's section, or NULL */
    size_t conf_size;          /* size of the struct the table fills */
    /* Check config, allocate state; no I/O.  `conf` is the filled struct
     * (owned by the core).  Returns 0 or a negative code; `err` (256 bytes)
     * says why. */
    int (*init)(void *conf, char *err, size_t errlen);
    /* Add routes, timers, bus subscriptions, run migrations. */
    int (*start)(char *err, size_t errlen);
    /* Stop accepting work; call done() once idle (may be synchronous). */
    void (*stop)(void (*done)(const char *module));
    /* Free everything init allocated. */
    void (*fini)(void);
    /* `mxstack manage <cmd> ...` commands this module offers, or NULL.
     * Runs without the loop (synchronous storage only). */
    const struct mx_manage_cmd *manage;
} mx_module_t;

typedef struct mx_manage_cmd {
    const char *name;         /* NULL ends the list */
    const char *usage;
    int (*run)(int argc, char **argv); /* exit code */
} mx_manage_cmd_t;

#ifdef MX_MODULE_BUILD
/* In a shared object: the API table (filled by the loader before init) and
 * wrappers with the core's names.  Define it once per module with
 * MX_MODULE_API_DEFINE and point the descriptor's api_slot at it. */
extern const mx_api_t *mx__api;
#define MX_MODULE_API_DEFINE const mx_api_t *mx__api
#define MX__API_INLINE(ret, name, params, args) \
    static inline ret name params { return mx__api->name args; }
MX_API_FUNCS(MX__API_INLINE)
#define mx_psprintf(...) (mx__api->mx_psprintf(__VA_ARGS__))
#define mx_log(...) (mx__api->mx_log(__VA_ARGS__))
#define mx_req_error(...) (mx__api->mx_req_error(__VA_ARGS__))
#define mx_sql_add(...) (mx__api->mx_sql_add(__VA_ARGS__))
#define MX_MODULE_API_SLOT .api_slot = &mx__api
#else
/* In the core (and in tests that link module code to the core directly):
 * ordinary prototypes. */
#define MX_MODULE_API_DEFINE extern int mx__module_api_unused_
#define MX_MODULE_API_SLOT .api_slot = NULL
#define MX__API_PROTO(ret, name, params, ...) ret name params;
MX_API_VFUNCS(MX__API_PROTO)
MX_API_FUNCS(MX__API_PROTO)
#endif

#define MX_MODULE_HEADER(modname) \
    .abi_major = MX_ABI_MAJOR, .abi_minor = MX_ABI_MINOR, \
    .signature = MX_ABI_SIGNATURE, .name = modname

#endif /* MX_H */
