/*
 * web_static.c: serving files out of a directory the way ESS's nginx
 * serves Element Web, without ever leaving that directory.
 *
 * Containment: the raw request path is decoded here (an encoded '/', '\'
 * or NUL is refused, "." and ".." segments are refused after decoding,
 * dot-files are not served), and the file is opened relative to the root's
 * directory descriptor with openat2(RESOLVE_BENEATH), so the kernel refuses
 * any ".." or symlink that would resolve outside the root.  Where openat2
 * is unavailable (old kernels, seccomp filters) the opened file's canonical
 * name (/proc/self/fd, else realpath) must lie under the canonical root.
 *
 * HTTP: MIME types by extension, a strong ETag from size and mtime
 * (If-None-Match -> 304), Last-Modified / If-Modified-Since, one byte range
 * (206, 416; several ranges or garbage: the whole file), precompressed
 * .br/.gz siblings chosen by Accept-Encoding (Vary: Accept-Encoding),
 * no-cache for index.html / version / config*.json / i18n, a year and
 * `immutable` for content-hashed names, the ESS security headers, and the
 * single-page-app fallback to index.html for extension-less paths.
 */
#define _GNU_SOURCE   /* O_PATH, strptime, timegm */
#include "web.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WEB_MAX_PATH 2048

/* ------------------------------------------------------------- roots --- */

int web_root_open(web_root_t *root, const char *path)
{
    char *canon = realpath(path, NULL);
    char *keep = canon ? canon : strdup(path);
    if (!keep)
        return -ENOMEM;
    free(root->path);
    root->path = keep;
    if (root->fd >= 0)
        close(root->fd);
    root->fd = -1;
    root->has_index = 0;
    root->checked_ms = mx_now_ms();
    root->gen++;
    if (!canon)
        return -errno ? -errno : -ENOENT;
    int fd = open(canon, O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    root->fd = fd;
    root->dev = st.st_dev;
    root->ino = st.st_ino;
    root->has_index = faccessat(fd, "index.html", F_OK, 0) == 0;
    return 0;
}

void web_root_close(web_root_t *root)
{
    if (root->fd >= 0)
        close(root->fd);
    root->fd = -1;
    free(root->path);
    root->path = NULL;
}

void web_root_refresh(web_root_t *root)
{
    uint64_t now = mx_now_ms();
    if (!root->path || (now >= root->checked_ms && now - root->checked_ms < 1000))
        return;
    root->checked_ms = now;
    struct stat st;
    if (stat(root->path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        if (root->fd >= 0) {
            close(root->fd);
            root->fd = -1;
            root->has_index = 0;
            root->gen++;
        }
        return;
    }
    if (root->fd < 0 || st.st_dev != root->dev || st.st_ino != root->ino) {
        char *p = strdup(root->path);
        if (p) {
            web_root_open(root, p);
            free(p);
        }
        return;
    }
    root->has_index = faccessat(root->fd, "index.html", F_OK, 0) == 0;
}

int web_open_beneath(const web_root_t *root, const char *rel)
{
    static int no_openat2;   /* set once the kernel says it has none */
    if (root->fd < 0)
        return -ENOENT;
    if (!no_openat2) {
        struct open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = syscall(SYS_openat2, root->fd, rel, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno != ENOSYS && errno != EPERM)
            return -errno;
        no_openat2 = 1;
    }
    int fd = openat(root->fd, rel, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    char link[64], real[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof(real) - 1);
    if (n < 0) {
        char joined[PATH_MAX];
        if (snprintf(joined, sizeof(joined), "%s/%s", root->path, rel) >= (int)sizeof(joined) ||
            !realpath(joined, real)) {
            close(fd);
            return -EACCES;
        }
        n = (ssize_t)strlen(real);
    }
    real[n] = '\0';
    size_t rl = strlen(root->path);
    if (strncmp(real, root->path, rl) || (real[rl] != '/' && !(rl == 1 && root->path[0] == '/'))) {
        close(fd);
        return -EXDEV;
    }
    return fd;
}

/* --------------------------------------------------------------- names --- */

typedef struct web_mime {
    const char *ext, *type;
    int compressible;
} mime_t;

static const mime_t mime_table[] = {
    { "html", "text/html; charset=utf-8", 1 },
    { "htm", "text/html; charset=utf-8", 1 },
    { "js", "text/javascript; charset=utf-8", 1 },
    { "mjs", "text/javascript; charset=utf-8", 1 },
    { "css", "text/css; charset=utf-8", 1 },
    { "json", "application/json", 1 },
    { "map", "application/json", 1 },
    { "webmanifest", "application/manifest+json", 1 },
    { "txt", "text/plain; charset=utf-8", 1 },
    { "md", "text/markdown; charset=utf-8", 1 },
    { "xml", "application/xml", 1 },
    { "svg", "image/svg+xml", 1 },
    { "wasm", "application/wasm", 1 },
    { "ico", "image/vnd.microsoft.icon", 1 },
    { "ttf", "font/ttf", 1 },
    { "otf", "font/otf", 1 },
    { "eot", "application/vnd.ms-fontobject", 1 },
    { "woff", "font/woff", 0 },
    { "woff2", "font/woff2", 0 },
    { "png", "image/png", 0 },
    { "jpg", "image/jpeg", 0 },
    { "jpeg", "image/jpeg", 0 },
    { "gif", "image/gif", 0 },
    { "webp", "image/webp", 0 },
    { "avif", "image/avif", 0 },
    { "mp3", "audio/mpeg", 0 },
    { "ogg", "audio/ogg", 0 },
    { "opus", "audio/ogg", 0 },
    { "wav", "audio/wav", 0 },
    { "mp4", "video/mp4", 0 },
    { "webm", "video/webm", 0 },
    { "pdf", "application/pdf", 0 },
    { "zip", "application/zip", 0 },
    { "gz", "application/gzip", 0 },
    { "br", "application/octet-stream", 0 },
};

static const mime_t *mime_of(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base)
        for (size_t i = 0; i < sizeof(mime_table) / sizeof(*mime_table); i++)
            if (!strcasecmp(dot + 1, mime_table[i].ext))
                return &mime_table[i];
    return NULL;
}

const char *web_mime_type(const char *name)
{
    const mime_t *m = mime_of(name);
    return m ? m->type : "application/octet-stream";
}

static const char *base_name(const char *rel)
{
    const char *s = strrchr(rel, '/');
    return s ? s + 1 : rel;
}

/* index.html, version, config*.json and i18n/ change with every release
 * (or every config change) under the same name. */
static int is_nocache(const char *rel)
{
    const char *b = base_name(rel);
    if (!strcmp(b, "index.html") || !strcmp(rel, "version") || !strncmp(rel, "i18n/", 5))
        return 1;
    size_t n = strlen(b);
    return !strchr(rel, '/') && !strncmp(b, "config", 6) && n >= 11 &&
           !strcmp(b + n - 5, ".json");
}

/* Content-hashed names (webpack's [name].[contenthash].ext, or anything
 * under bundles/): a part of the base name of at least 8 hex digits with a
 * digit among them. */
static int is_hashed(const char *rel)
{
    if (!strncmp(rel, "bundles/", 8) || strstr(rel, "/bundles/"))
        return 1;
    const char *p = base_name(rel);
    while (*p) {
        size_t n = 0;
        int digit = 0;
        while (isxdigit((unsigned char)p[n])) {
            digit |= isdigit((unsigned char)p[n]);
            n++;
        }
        if (n >= 8 && digit && (p[n] == '.' || p[n] == '-' || p[n] == '_' || p[n] == '\0'))
            return 1;
        p += n;
        while (*p && *p != '.' && *p != '-' && *p != '_')
            p++;
        if (*p)
            p++;
    }
    return 0;
}

/* Decodes the raw request path into `out` as a relative name ("" for the
 * root, "a/b"), dropping empty segments.  Returns 0, -EINVAL (bad: 400)
 * or -ENOENT (hidden: 404). */
static int decode_path(const char *raw, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = raw;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        if (o) {
            if (o + 1 >= cap)
                return -EINVAL;
            out[o++] = '/';
        }
        size_t start = o;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '%') {
                int v = 0;
                for (int k = 0; k < 2; k++) {
                    char h = *p;
                    if (h)
                        p++;
                    v <<= 4;
                    if (h >= '0' && h <= '9')
                        v |= h - '0';
                    else if (h >= 'a' && h <= 'f')
                        v |= h - 'a' + 10;
                    else if (h >= 'A' && h <= 'F')
                        v |= h - 'A' + 10;
                    else
                        return -EINVAL;
                }
                ch = (char)v;
                if (ch == '/')
                    return -EINVAL;   /* an encoded slash is never a separator */
            }
            if (ch == '\0' || ch == '\\')
                return -EINVAL;
            if (o + 2 >= cap)
                return -EINVAL;
            out[o++] = ch;
        }
        size_t len = o - start;
        if ((len == 1 && out[start] == '.') ||
            (len == 2 && out[start] == '.' && out[start + 1] == '.'))
            return -EINVAL;
        if (out[start] == '.')
            return -ENOENT;   /* dot-files (.git, .htpasswd...) are never served */
    }
    /* A trailing '/' asks for the directory's index. */
    size_t rl = strlen(raw);
    if (o && rl && raw[rl - 1] == '/')
        out[o++] = '/';
    out[o] = '\0';
    return 0;
}

/* ------------------------------------------------------------- headers --- */

typedef struct hdr {
    const char *name, *value;
} hdr_t;

#define MAX_FILE_HDRS 16

/* The security headers into `h`; how many. */
static int security_headers(hdr_t *h)
{
    const web_conf_t *c = web.conf;
    int n = 0;
    if (c->content_security_policy && c->content_security_policy[0])
        h[n++] = (hdr_t){ "Content-Security-Policy", c->content_security_policy };
    h[n++] = (hdr_t){ "X-Frame-Options", "SAMEORIGIN" };
    h[n++] = (hdr_t){ "X-Content-Type-Options", "nosniff" };
    h[n++] = (hdr_t){ "Referrer-Policy", "no-referrer" };
    if (c->noindex)
        h[n++] = (hdr_t){ "X-Robots-Tag", "noindex, nofollow, noarchive, noimageindex" };
    return n;
}

static void set_headers(mx_req_t *req, const hdr_t *h, int n)
{
    for (int i = 0; i < n; i++)
        mx_req_set_header(req, h[i].name, h[i].value);
}

void web_security_headers(mx_req_t *req)
{
    hdr_t h[MAX_FILE_HDRS];
    set_headers(req, h, security_headers(h));
}

/* Does an If-None-Match list hold `etag` (weak comparison, as RFC 9110
 * asks for If-None-Match)? */
static int etag_listed(const char *list, const char *etag)
{
    const char *p = list;
    if (etag[0] == 'W' && etag[1] == '/')
        etag += 2;
    size_t n = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *e = p;
        if (*e == '"') {
            e = strchr(e + 1, '"');
            e = e ? e + 1 : p + strlen(p);
        } else {
            while (*e && *e != ',')
                e++;
        }
        if ((size_t)(e - p) == n && !strncmp(p, etag, n))
            return 1;
        if (e == p)
            break;
        p = e;
    }
    return 0;
}

/* Parses an IMF-fixdate; -1 when it is not one. */
static time_t parse_http_date(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return (time_t)-1;
    return timegm(&tm);
}

int web_doc_set(web_doc_t *doc, const char *body, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, body, len);
    copy[len] = '\0';
    free(doc->body);
    doc->body = copy;
    doc->len = len;
    unsigned char h[32];
    mx_sha256(body, len, h);
    snprintf(doc->etag, sizeof(doc->etag), "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", h[0], h[1],
             h[2], h[3], h[4], h[5], h[6], h[7]);
    return 0;
}

void web_doc_free(web_doc_t *doc)
{
    free(doc->body);
    memset(doc, 0, sizeof(*doc));
}

void web_reply_doc(mx_req_t *req, const web_doc_t *doc, const char *ctype,
                   const char *cache_control)
{
    web_security_headers(req);
    if (cache_control)
        mx_req_set_header(req, "Cache-Control", cache_control);
    mx_req_set_header(req, "ETag", doc->etag);
    const char *inm = mx_req_header(req, "If-None-Match");
    if (inm && etag_listed(inm, doc->etag)) {
        mx_req_reply(req, 304, NULL, NULL, 0);
        return;
    }
    mx_req_reply(req, 200, ctype, doc->body, doc->len);
}

static void reply_text(mx_req_t *req, int status, const char *text)
{
    web_security_headers(req);
    mx_req_reply(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* ------------------------------------------------------------- ranges --- */

static const char *parse_num(const char *p, uint64_t *out, int *any)
{
    uint64_t v = 0;
    *any = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;   /* saturate */
        *any = 1;
        p++;
    }
    *out = v;
    return p;
}

/* One "bytes=" range against a file of `size` bytes.  Returns 1 with the
 * range set, 0 to ignore the header (garbage, several ranges), -1 when
 * unsatisfiable (416). */
static int parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len)
{
    while (*h == ' ')
        h++;
    if (strncasecmp(h, "bytes", 5))
        return 0;
    h += 5;
    while (*h == ' ')
        h++;
    if (*h++ != '=')
        return 0;
    while (*h == ' ')
        h++;
    if (strchr(h, ','))
        return 0;
    uint64_t a, b;
    int has_a, has_b;
    if (*h == '-') {
        const char *e = parse_num(h + 1, &b, &has_b);
        while (*e == ' ')
            e++;
        if (!has_b || *e)
            return 0;
        if (b == 0 || size == 0)
            return -1;
        if (b > size)
            b = size;
        *start = size - b;
        *len = b;
        return 1;
    }
    const char *e = parse_num(h, &a, &has_a);
    if (!has_a || *e != '-')
        return 0;
    e = parse_num(e + 1, &b, &has_b);
    while (*e == ' ')
        e++;
    if (*e || (has_b && b < a))
        return 0;
    if (a >= size)
        return -1;
    uint64_t last = has_b && b < size ? b : size - 1;
    *start = a;
    *len = last - a + 1;
    return 1;
}

/* ------------------------------------------------------------ encodings --- */

/* Whether Accept-Encoding allows `coding` (explicitly or through "*"),
 * ignoring entries with q=0. */
static int accepts(const char *ae, const char *coding)
{
    size_t cl = strlen(coding);
    int star = 0;
    const char *p = ae;
    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ';' && *e != ' ')
            e++;
        size_t n = (size_t)(e - p);
        int q0 = 0;
        const char *next = strchr(e, ',');
        const char *semi = strchr(e, ';');
        if (semi && (!next || semi < next)) {
            const char *q = semi + 1;
            while (*q == ' ')
                q++;
            if ((q[0] == 'q' || q[0] == 'Q') && q[1] == '=') {
                q += 2;
                q0 = q[0] == '0' && (q[1] != '.' || strspn(q + 2, "0") == strcspn(q + 2, ", "));
            }
        }
        if (n == cl && !strncasecmp(p, coding, n))
            return !q0;
        if (n == 1 && *p == '*')
            star = !q0;
        p = next;
    }
    return star;
}

/* ------------------------------------------------------------- serving --- */

typedef struct file {
    web_file_t *wf;
    const char *encoding;   /* "br", "gzip" or NULL */
} file_t;

/* Looks `rel` up as a regular file; -ENOENT for missing (SPA fallback may
 * apply), other codes for refused. */
static int open_file(const web_root_t *root, const char *rel, file_t *f)
{
    int rc = web_cache_get(root, rel, &f->wf);
    f->encoding = NULL;
    return rc;
}

/* The type of the entry's name, looked up once. */
static const mime_t *file_mime(web_file_t *wf)
{
    if (!wf->mime_known) {
        wf->mime = mime_of(wf->rel);
        wf->mime_known = 1;
    }
    return wf->mime;
}

/* Swaps `f` for a precompressed sibling the client accepts, if any. */
static void pick_encoding(mx_req_t *req, const web_root_t *root, const char *rel, file_t *f)
{
    const char *ae = mx_req_header(req, "Accept-Encoding");
    if (!ae)
        return;
    static const struct { const char *coding, *suffix; } cands[] = {
        { "br", ".br" }, { "gzip", ".gz" },
    };
    char sib[WEB_MAX_PATH + 8];
    size_t n = strlen(rel);
    if (n + 4 > sizeof(sib))
        return;
    memcpy(sib, rel, n);
    for (size_t i = 0; i < sizeof(cands) / sizeof(*cands); i++) {
        if (!accepts(ae, cands[i].coding))
            continue;
        memcpy(sib + n, cands[i].suffix, strlen(cands[i].suffix) + 1);
        file_t z;
        if (open_file(root, sib, &z) == 0) {
            *f = z;
            f->encoding = cands[i].coding;
            return;
        }
    }
}

/* The headers of `wf` served as `rel` (itself, or its precompressed form
 * when `encoding` is set) with type `m`, into `h`: how many.  `etag` gets
 * the ETag (size 64). */
static int file_headers(const char *rel, const mime_t *m, const web_file_t *wf,
                        const char *encoding, char *etag, hdr_t *h)
{
    int n = 0;
    if (m && m->compressible)
        h[n++] = (hdr_t){ "Vary", "Accept-Encoding" };
    n += security_headers(h + n);
    if (is_nocache(rel))
        h[n++] = (hdr_t){ "Cache-Control", "no-cache" };
    else if (is_hashed(rel))
        h[n++] = (hdr_t){ "Cache-Control", "public, max-age=31536000, immutable" };
    if (encoding) {
        h[n++] = (hdr_t){ "Content-Encoding", encoding };
        snprintf(etag, 64, "%.*s-%s\"", (int)strlen(wf->etag) - 1, wf->etag, encoding);
    } else {
        snprintf(etag, 64, "%s", wf->etag);
    }
    h[n++] = (hdr_t){ "ETag", etag };
    h[n++] = (hdr_t){ "Last-Modified", wf->lm };
    h[n++] = (hdr_t){ "Accept-Ranges", "bytes" };
    return n;
}

/* The ready-made header lines of `wf` served as `rel` (built on first
 * use; Content-Type last so a 304 can leave it out).  NULL when out of
 * memory or when a configured value cannot go into a header. */
static const web_pre_t *prepared(web_file_t *wf, const char *rel, const mime_t *m,
                                 const char *encoding)
{
    web_pre_t *p = &wf->pre[encoding ? 1 : 0];
    if (p->hdrs)
        return p;
    hdr_t h[MAX_FILE_HDRS];
    int n = file_headers(rel, m, wf, encoding, p->etag, h);
    const char *ctype = m ? m->type : "application/octet-stream";
    size_t need = strlen("Content-Type: \r\n") + strlen(ctype) + 1;
    for (int i = 0; i < n; i++) {
        if (strpbrk(h[i].value, "\r\n"))
            return NULL;   /* mx_req_set_header would drop it: the slow path does */
        need += strlen(h[i].name) + strlen(h[i].value) + 4;
    }
    char *b = malloc(need);
    if (!b)
        return NULL;
    size_t o = 0;
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(b + o, need - o, "%s: %s\r\n", h[i].name, h[i].value);
    p->len_304 = o;
    o += (size_t)snprintf(b + o, need - o, "Content-Type: %s\r\n", ctype);
    p->hdrs = b;
    p->len = o;
    return p;
}

/* If-None-Match (wins) or If-Modified-Since says the client's copy is
 * current. */
static int not_modified(mx_req_t *req, const web_file_t *wf, const char *etag)
{
    const char *inm = mx_req_header(req, "If-None-Match");
    if (inm)
        return etag_listed(inm, etag);
    const char *ims = mx_req_header(req, "If-Modified-Since");
    if (!ims)
        return 0;
    time_t t = parse_http_date(ims);
    return t != (time_t)-1 && wf->st.st_mtim.tv_sec <= t;
}

static void send_file(mx_req_t *req, const web_root_t *root, const char *rel, file_t *f)
{
    const mime_t *m = file_mime(f->wf);
    if (m && m->compressible)
        pick_encoding(req, root, rel, f);
    web_file_t *wf = f->wf;
    const char *range = mx_req_header(req, "Range");

    /* The usual case, the whole file or a 304: the header lines are
     * ready-made, and a small file leaves with them in one write. */
    const web_pre_t *pre = range ? NULL : prepared(wf, rel, m, f->encoding);
    if (pre && not_modified(req, wf, pre->etag)) {
        mx_req_reply_prepared(req, 304, pre->hdrs, pre->len_304, NULL, 0);
        return;
    }
    if (pre && wf->body && wf->len <= (uint64_t)web.conf->max_file_size) {
        mx_req_reply_prepared(req, 200, pre->hdrs, pre->len, wf->body, wf->len);
        return;
    }

    hdr_t h[MAX_FILE_HDRS];
    char etag[64];
    set_headers(req, h, file_headers(rel, m, wf, f->encoding, etag, h));
    const char *ctype = m ? m->type : "application/octet-stream";
    /* Conditionals (RFC 9110 13.2.2): If-None-Match wins over
     * If-Modified-Since. */
    if (not_modified(req, wf, etag)) {
        mx_req_reply(req, 304, NULL, NULL, 0);
        return;
    }

    uint64_t size = (uint64_t)wf->st.st_size, start = 0, len = size;
    int status = 200;
    const char *ifr = mx_req_header(req, "If-Range");
    if (range && ifr && strcmp(ifr, etag) && strcmp(ifr, wf->lm))
        range = NULL;   /* the client's copy is stale: send it all */
    if (range) {
        int rc = parse_range(range, size, &start, &len);
        if (rc < 0) {
            char cr[48];
            snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
            mx_req_set_header(req, "Content-Range", cr);
            mx_req_reply(req, 416, NULL, NULL, 0);
            return;
        }
        if (rc > 0) {
            char cr[80];
            snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)start,
                     (unsigned long long)(start + len - 1), (unsigned long long)size);
            mx_req_set_header(req, "Content-Range", cr);
            status = 206;
        } else {
            start = 0;
            len = size;
        }
    }
    if (len > (uint64_t)web.conf->max_file_size) {
        mx_log(WEB_MOD, MX_LOG_WARN, "%s is larger than web.max_file_size", rel);
        reply_text(req, 500, "File too large\n");
        return;
    }
    if (wf->body) {   /* small: from memory, with the header block in one write */
        mx_req_reply(req, status, ctype, wf->body + start, (size_t)len);
        return;
    }
    /* The core closes what it is given: a second descriptor of the cached
     * one (same open file, the offset is not used: sendfile/pread). */
    int fd = fcntl(wf->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        reply_text(req, 503, "Too many open files\n");
        return;
    }
    mx_req_reply_file(req, status, ctype, fd, (off_t)start, (size_t)len);
}

/* Does the last segment end in an extension we know ("/x.js": a file;
 * "/room/!r:example.org" or "/welcome": a route of the app)? */
static int has_file_extension(const char *rel)
{
    return mime_of(rel) != NULL;
}

/* Serves `rel` from `root`; `spa`: unknown paths without a known file
 * extension get the root's index.html. */
static void serve_from(mx_req_t *req, const web_root_t *root, const char *rel, int spa)
{
    char buf[WEB_MAX_PATH + 16];
    size_t n = strlen(rel);
    if (n == 0 || rel[n - 1] == '/') {
        snprintf(buf, sizeof(buf), "%sindex.html", rel);
        rel = buf;
    }
    file_t f;
    int rc = open_file(root, rel, &f);
    if (rc == 0) {
        send_file(req, root, rel, &f);
        return;
    }
    if ((rc == -ENOENT || rc == -EISDIR) && spa && !has_file_extension(rel) &&
        open_file(root, "index.html", &f) == 0) {
        send_file(req, root, "index.html", &f);
        return;
    }
    reply_text(req, 404, "Not Found\n");
}

static int is_config_json(const char *rel)
{
    size_t n = strlen(rel);
    if (strchr(rel, '/') || n < 11 || strcmp(rel + n - 5, ".json"))
        return 0;
    /* config.sample.json ships with the release and stays a plain file. */
    return !strcmp(rel, "config.json") ||
           (!strncmp(rel, "config.", 7) && strcmp(rel, "config.sample.json"));
}

int web_static_handler(mx_req_t *req, void *ud)
{
    const char *raw = mx_req_path(req);
    /* API prefixes of other resources are never files: let the core say
     * M_UNRECOGNIZED as it does for any unknown API path. */
    static const char *const api[] = { "/_matrix", "/_synapse", "/_mxstack" };
    for (size_t i = 0; i < sizeof(api) / sizeof(*api); i++) {
        size_t k = strlen(api[i]);
        if (!strncmp(raw, api[i], k) && (raw[k] == '/' || raw[k] == '\0'))
            return MX_DECLINED;
    }
    char rel[WEB_MAX_PATH];
    int rc = decode_path(raw, rel, sizeof(rel));
    if (rc == -EINVAL) {
        reply_text(req, 400, "Bad Request\n");
        return MX_DONE;
    }
    if (rc < 0) {
        reply_text(req, 404, "Not Found\n");
        return MX_DONE;
    }
    if (is_config_json(rel)) {
        web_reply_doc(req, &web.config_json, "application/json", "no-cache");
        return MX_DONE;
    }
    web_cache_trim();
    web_root_refresh(&web.element);
    if (web.element.fd >= 0 && web.element.has_index) {
        serve_from(req, &web.element, rel, web.conf->spa_fallback);
        return MX_DONE;
    }
    /* No Element Web: the landing page (its index.html filled in) for the
     * root and app-like paths, and its assets. */
    if (has_file_extension(rel) && strcmp(rel, "index.html")) {
        serve_from(req, &web.landing, rel, 0);
        return MX_DONE;
    }
    web_reply_doc(req, &web.landing_html, "text/html; charset=utf-8", "no-cache");
    return MX_DONE;
}
