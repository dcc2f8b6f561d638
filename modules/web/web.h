/*
 * web.h: what the web module's files share.  The module serves Element Web
 * (or the built-in landing page when none is installed), generates its
 * config.json, and answers /.well-known/matrix/{client,server,support}.
 *
 *   web.c             descriptor, config table, lifecycle
 *   web_static.c      files: paths, MIME types, caching, ranges, encodings
 *   web_cache.c       open files, their headers and small contents, kept a second
 *   web_config_json.c Element Web's config.json from our config
 *   web_landing.c     the landing page shown while Element Web is missing
 *   web_wellknown.c   the three well-known documents
 *
 * All state lives in `web` (web.c), set up in init/start and freed in fini;
 * everything here runs on the loop thread.
 */
#ifndef MX_WEB_H
#define MX_WEB_H

#include "mx.h"

#include <sys/stat.h>
#include <sys/types.h>

#define WEB_MOD "web"

/* The `web:` section (filled by the core; strings and JSON borrowed until
 * fini). */
typedef struct web_conf {
    char *element_web_path;       /* NULL: DATA/element-web */
    char *landing_path;           /* NULL: installed web/landing, else the source tree's */
    char *brand;
    char *default_theme;
    char *element_call_url;
    int element_call_exclusive;
    char *identity_server;
    int disable_custom_urls;
    json_t *setting_defaults;
    json_t *extra_config;
    char *account_url;            /* NULL: from the auth section */
    char *admin_url;
    int serve_server_wellknown;
    char *server_delegation;      /* NULL: server_name's host, port 443 (Synapse) */
    json_t *client_wellknown_extra;
    json_t *rtc_foci;
    char *support_page;
    json_t *support_contacts;
    char *content_security_policy;
    int noindex;
    int spa_fallback;
    int64_t max_file_size;        /* bytes served from one file (memory fallback) */
} web_conf_t;

/* A document built once at start and served from memory (owned by `web`). */
typedef struct web_doc {
    char *body;                   /* malloc'd */
    size_t len;
    char etag[40];                /* "\"...\"" from the content's hash */
} web_doc_t;

/* One directory files are served from. */
typedef struct web_root {
    char *path;                   /* malloc'd, absolute and canonical */
    int fd;                       /* O_PATH|O_DIRECTORY, -1 when missing */
    dev_t dev;
    ino_t ino;
    uint64_t checked_ms;          /* last time `path` was compared with `fd` */
    int has_index;                /* index.html present (checked with the above) */
    uint64_t gen;                 /* bumped at every (re)open: cached files re-checked */
} web_root_t;

struct web_mime;                  /* web_static.c's table of types */

/* The header lines of a file's 200 answer, ready to send (web_static.c
 * builds them the first time the file is served that way; freed with the
 * entry's content, so a changed file gets new ones). */
typedef struct web_pre {
    char *hdrs;                   /* malloc'd "Name: value\r\n" lines, Content-Type last */
    size_t len;                   /* all of them */
    size_t len_304;               /* without Content-Type (for 304) */
    char etag[64];                /* the ETag they carry */
} web_pre_t;

/* A file of a root as web_cache.c knows it (owned by the cache; valid until
 * the next web_cache_trim/clear, i.e. for the request that looked it up). */
typedef struct web_file {
    struct web_file *next;        /* hash chain */
    char *rel;                    /* the name under the root (same allocation) */
    const web_root_t *root;
    uint64_t gen;                 /* root->gen when last checked */
    uint64_t checked_ms;
    int err;                      /* 0, or -ENOENT, -EISDIR, -EACCES... */
    int fd;                       /* open when the content is not kept, else -1 */
    char *body;                   /* the whole content (small files), or NULL */
    size_t len;
    struct stat st;
    char etag[48];                /* "\"size-mtime\"" */
    char lm[40];                  /* Last-Modified */
    const struct web_mime *mime;  /* type by the name's extension (NULL: none) */
    int mime_known;               /* `mime` was looked up */
    web_pre_t pre[2];             /* [0] served as itself, [1] as the .br/.gz
                                   * form of its name without that suffix */
} web_file_t;

typedef struct web_state {
    const web_conf_t *conf;
    web_root_t element;           /* the Element Web release */
    web_root_t landing;           /* the landing page's assets */
    web_doc_t config_json;
    web_doc_t landing_html;       /* index.html of the landing page, filled in */
    web_doc_t wk_client, wk_server, wk_support; /* body NULL: 404 */
    char *account_url, *admin_url; /* malloc'd, resolved */
    int has_auth, has_rtc;
    struct web_cache *cache;      /* web_cache.c */
} web_state_t;

extern web_state_t web;

/* web_static.c */
/* Opens a root (`path` is copied); 0 or -errno (the root keeps the path
 * and is looked at again later when it does not exist yet). */
int web_root_open(web_root_t *root, const char *path);
/* Re-opens the root when the directory changed on disk (at most once a
 * second): Element Web unpacked or replaced while running. */
void web_root_refresh(web_root_t *root);
void web_root_close(web_root_t *root);
/* The handler of GET/HEAD "/{path*}" on resource "web". */
int web_static_handler(mx_req_t *req, void *ud);
/* Adds the security headers every web response carries. */
void web_security_headers(mx_req_t *req);
/* Replies with a document from memory: ETag / If-None-Match, the given
 * Cache-Control (or none), the security headers. */
void web_reply_doc(mx_req_t *req, const web_doc_t *doc, const char *ctype,
                   const char *cache_control);
/* Fills `doc` with a copy of `body` (len bytes) and its ETag; 0 or -ENOMEM. */
int web_doc_set(web_doc_t *doc, const char *body, size_t len);
void web_doc_free(web_doc_t *doc);
/* Opens `rel` (no leading '/') read-only strictly inside `root`: the fd,
 * or -errno (-ENOENT / -ENOTDIR: not there; anything else: refused). */
int web_open_beneath(const web_root_t *root, const char *rel);
/* The MIME type of a file name (by extension). */
const char *web_mime_type(const char *name);

/* web_cache.c */
/* The file `rel` of `root`: 0 with *out set, or its error (-ENOENT,
 * -EISDIR, -EACCES...; *out is set then too, or -ENOMEM). */
int web_cache_get(const web_root_t *root, const char *rel, web_file_t **out);
/* Empties the cache when it went over its bounds (before a request). */
void web_cache_trim(void);
void web_cache_clear(void);
void web_cache_free(void);

/* web_config_json.c */
/* Builds Element Web's config.json (new reference). */
json_t *web_config_json_build(void);
/* Fills web.config_json; 0 or a negative code. */
int web_config_json_start(char *err, size_t errlen);

/* web_landing.c */
/* Fills web.landing_html from the landing directory's index.html. */
int web_landing_build(char *err, size_t errlen);

/* web_wellknown.c */
/* Builds the documents; 0 or a negative code. */
int web_wellknown_build(char *err, size_t errlen);
/* Registers the /.well-known/matrix documents on resources client and web. */
int web_wellknown_routes(void);

/* Helpers over the whole parsed config (mx_server_conf()->root). */
const json_t *web_root_conf(const char *section);
int web_guest_access(void);

#endif /* MX_WEB_H */
