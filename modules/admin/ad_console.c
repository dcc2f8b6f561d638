/*
 * ad_console.c: serves the built-in admin console (web/admin: index.html,
 * admin.css, admin.js) under a configured path, "/admin/" by default, on
 * the "admin" and "web" resources.  The page itself talks only to the
 * Admin API and the client login; this file just hands out its files.
 *
 * The directory is read once at start: every regular file directly in it
 * whose name is plain ([A-Za-z0-9._-], no leading dot) is kept in memory
 * with its ETag, and requests are answered by exact name lookup, so no
 * request path can reach anything else.  A generated `config.json` tells
 * the page where the homeserver is (public_baseurl) and the server name.
 *
 * Every reply carries a strict Content-Security-Policy (no inline script
 * or style anywhere in the console), nosniff, DENY framing, no referrer,
 * and `Cache-Control: no-cache` with an ETag (304 on If-None-Match).
 *
 * Config, read from the `admin:` section of the whole config:
 *   console_path  "/admin/" (default) | null or "" (no console)
 *   console_dir   the files' directory (default: installed, else source tree)
 */
#include "ad_console.h"
#include "mx.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AC_MOD "admin"
#define AC_MAX_FILES 64
#define AC_MAX_FILE_SIZE (4u << 20)
#define AC_MAX_NAME 128

/* One file served from memory. */
typedef struct ac_file {
    char name[AC_MAX_NAME];
    char *body;               /* malloc'd */
    size_t len;
    const char *ctype;        /* static */
    char etag[24];            /* "\"<16 hex>\"" */
} ac_file_t;

/* Everything the console's routes need; the route's `ud`.  Allocated at
 * start and kept for the life of the process (routes are never removed). */
typedef struct ac_state {
    char *path;               /* "/admin/" (malloc'd) */
    char *csp;                /* the Content-Security-Policy (malloc'd) */
    size_t nfiles;
    ac_file_t files[AC_MAX_FILES];
} ac_state_t;

/* ------------------------------------------------------------- files --- */

static const char *ac_ctype(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".mjs", "text/javascript; charset=utf-8" },
        { ".json", "application/json" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".ico", "image/vnd.microsoft.icon" },
        { ".txt", "text/plain; charset=utf-8" },
        { ".woff2", "font/woff2" },
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && !strcmp(name + n - e, types[i].ext))
            return types[i].type;
    }
    return "application/octet-stream";
}

static int ac_plain_name(const char *s)
{
    if (!*s || *s == '.' || strlen(s) >= AC_MAX_NAME)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

/* Adds a file to the table; `body` (malloc'd) is stolen. */
static int ac_add(ac_state_t *st, const char *name, char *body, size_t len)
{
    if (st->nfiles == AC_MAX_FILES) {
        free(body);
        return -ENOSPC;
    }
    ac_file_t *f = &st->files[st->nfiles++];
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->body = body;
    f->len = len;
    f->ctype = ac_ctype(name);
    unsigned char h[32];
    mx_sha256(body, len, h);
    snprintf(f->etag, sizeof(f->etag), "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", h[0], h[1], h[2],
             h[3], h[4], h[5], h[6], h[7]);
    return 0;
}

/* Reads a regular file of at most AC_MAX_FILE_SIZE bytes, without
 * following a final symlink out of the directory.  0 or -errno. */
static int ac_read(int dfd, const char *name, char **out, size_t *outlen)
{
    char *buf = mx_read_file(dfd, name, O_NOFOLLOW, AC_MAX_FILE_SIZE, outlen);
    if (!buf)
        return -errno;
    *out = buf;
    return 0;
}

static int ac_load_dir(ac_state_t *st, const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = errno;
        close(dfd);
        return -e;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ac_plain_name(de->d_name) || !strcmp(de->d_name, "config.json"))
            continue;
        char *body = NULL;
        size_t len = 0;
        if (ac_read(dirfd(d), de->d_name, &body, &len) < 0)
            continue;
        if (ac_add(st, de->d_name, body, len) < 0)
            break;
    }
    closedir(d);
    return 0;
}

static const ac_file_t *ac_find(const ac_state_t *st, const char *name)
{
    for (size_t i = 0; i < st->nfiles; i++)
        if (!strcmp(st->files[i].name, name))
            return &st->files[i];
    return NULL;
}

/* ------------------------------------------------------------ config --- */

/* "/admin" → "/admin/" (malloc'd); NULL for a path that cannot be a route
 * prefix. */
static char *ac_norm_path(const char *p)
{
    size_t n = strlen(p);
    if (p[0] != '/' || strpbrk(p, "{}?#%\\ ") || strstr(p, "//") || n > 200)
        return NULL;
    char *out = malloc(n + 2);
    if (!out)
        return NULL;
    memcpy(out, p, n + 1);
    if (out[n - 1] != '/') {
        out[n] = '/';
        out[n + 1] = '\0';
    }
    return out;
}

/* The origin of public_baseurl ("https://host:port"), for connect-src when
 * the console is served from another host than the API; "" when the URL
 * looks odd (then only 'self' is allowed). */
static void ac_origin(char *out, size_t cap)
{
    const char *u = mx_server_conf()->public_baseurl;
    out[0] = '\0';
    const char *s = u ? strstr(u, "://") : NULL;
    if (!s || (strncmp(u, "http://", 7) && strncmp(u, "https://", 8)))
        return;
    const char *e = strchr(s + 3, '/');
    size_t n = e ? (size_t)(e - u) : strlen(u);
    if (n >= cap)
        return;
    for (size_t i = 0; i < n; i++)
        if (u[i] == ';' || u[i] == ',' || u[i] == ' ' || u[i] == '\'' || (unsigned char)u[i] < 0x21)
            return;
    memcpy(out, u, n);
    out[n] = '\0';
}

static int ac_add_config_json(ac_state_t *st)
{
    const mx_server_conf_t *sc = mx_server_conf();
    json_t *cfg = json_pack("{s:s?, s:s?, s:s}", "homeserver", sc->public_baseurl, "server_name",
                            sc->server_name, "console_path", st->path);
    char *text = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
    json_decref(cfg);
    if (!text)
        return -ENOMEM;
    return ac_add(st, "config.json", text, strlen(text));
}

/* ----------------------------------------------------------- serving --- */

static void ac_headers(mx_req_t *req, const ac_state_t *st)
{
    mx_req_set_header(req, "Content-Security-Policy", st->csp);
    mx_req_set_header(req, "X-Content-Type-Options", "nosniff");
    mx_req_set_header(req, "X-Frame-Options", "DENY");
    mx_req_set_header(req, "Referrer-Policy", "no-referrer");
    mx_req_set_header(req, "X-Robots-Tag", "noindex, nofollow");
}

/* Is `etag` in the If-None-Match list (or is the list "*")? */
static int ac_etag_match(const char *list, const char *etag)
{
    if (!list)
        return 0;
    if (strchr(list, '*'))
        return 1;
    return strstr(list, etag) != NULL;
}

static int ac_handler(mx_req_t *req, void *ud)
{
    const ac_state_t *st = ud;
    const char *file = mx_req_param(req, "file");
    const char *path = mx_req_path(req);
    ac_headers(req, st);
    if (!file || !*file) {
        size_t n = strlen(path);
        if (!n || path[n - 1] != '/') {
            /* "/admin" → "/admin/": relative links must resolve below it. */
            mx_req_set_header(req, "Location", st->path);
            mx_req_reply(req, 301, "text/plain; charset=utf-8", "Moved\n", 6);
            return MX_DONE;
        }
        file = "index.html";
    }
    const ac_file_t *f = ac_plain_name(file) ? ac_find(st, file) : NULL;
    if (!f) {
        static const char nf[] = "Not found\n";
        mx_req_reply(req, 404, "text/plain; charset=utf-8", nf, sizeof(nf) - 1);
        return MX_DONE;
    }
    mx_req_set_header(req, "Cache-Control", "no-cache");
    mx_req_set_header(req, "ETag", f->etag);
    if (ac_etag_match(mx_req_header(req, "If-None-Match"), f->etag)) {
        mx_req_reply(req, 304, NULL, NULL, 0);
        return MX_DONE;
    }
    mx_req_reply(req, 200, f->ctype, f->body, f->len);
    return MX_DONE;
}

/* -------------------------------------------------------------- start --- */

static void ac_free(ac_state_t *st)
{
    for (size_t i = 0; i < st->nfiles; i++)
        free(st->files[i].body);
    free(st->csp);
    free(st->path);
    free(st);
}

int ad_console_start(void)
{
    const json_t *root = mx_server_conf()->root;
    const json_t *sect = json_object_get(root, "admin");
    const json_t *jp = json_object_get(sect, "console_path");
    const char *want = "/admin/";
    if (jp) {
        want = json_string_value(jp);
        if (!want || !*want) {
            mx_log(AC_MOD, MX_LOG_INFO, "admin console off (admin.console_path)");
            return 0;
        }
    }
    ac_state_t *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->path = ac_norm_path(want);
    if (!st->path) {
        mx_log(AC_MOD, MX_LOG_ERROR, "admin.console_path: \"%s\" is not a usable path", want);
        ac_free(st);
        return -EINVAL;
    }
    char origin[256];
    ac_origin(origin, sizeof(origin));
#define AC_CSP "default-src 'self'; connect-src 'self'%s%s; img-src 'self' data:; " \
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    size_t cl = sizeof(AC_CSP) + strlen(origin) + 1;
    st->csp = malloc(cl);
    if (!st->csp) {
        ac_free(st);
        return -ENOMEM;
    }
    snprintf(st->csp, cl, AC_CSP, origin[0] ? " " : "", origin);
#undef AC_CSP

    /* The console's directory: configured, installed, or the source tree's. */
    char *dir = mx_share_dir(json_string_value(json_object_get(sect, "console_dir")), "web/admin");
    int rc = dir ? ac_load_dir(st, dir) : -ENOMEM;
    if (rc < 0 || !ac_find(st, "index.html"))
        mx_log(AC_MOD, MX_LOG_WARN, "admin console: no index.html in %s (%s); %s answers 404",
               dir ? dir : "?", rc < 0 ? strerror(-rc) : "missing", st->path);
    if ((rc = ac_add_config_json(st)) < 0) {
        free(dir);
        ac_free(st);
        return rc;
    }

    char pattern[256];
    snprintf(pattern, sizeof(pattern), "%s{file*}", st->path);
    if ((rc = mx_route_add("admin", "GET", pattern, ac_handler, st, MX_ROUTE_NO_CORS)) < 0 ||
        (rc = mx_route_add("web", "GET", pattern, ac_handler, st, MX_ROUTE_NO_CORS)) < 0) {
        /* A route that was added keeps `st`: it stays allocated. */
        mx_log(AC_MOD, MX_LOG_ERROR, "admin console: cannot add route %s (%d)", pattern, rc);
        free(dir);
        return rc;
    }
    mx_log(AC_MOD, MX_LOG_INFO, "admin console at %s (%zu files from %s)", st->path,
           st->nfiles - 1, dir ? dir : "?");
    free(dir);
    return 0;
}
