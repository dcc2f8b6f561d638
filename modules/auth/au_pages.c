/*
 * au_pages.c: the HTML pages of the auth module (login, register, consent,
 * error), rendered from the templates in web/auth/ with a very small
 * mustache-like language:
 *
 *   {{name}}            a variable, HTML-escaped
 *   {{t:key}}           a string from web/auth/strings.json, HTML-escaped
 *                       (every human text lives there, for translation)
 *   {{{name}}}          a variable, raw (only the layout's page body)
 *   {{#name}}..{{/name}} shown when the variable is truthy; repeated for
 *                       each element of an array ({{.}} is the element; an
 *                       object element's keys become variables)
 *   {{^name}}..{{/name}} shown when the variable is falsy
 *
 * Every page leaves with a strict Content-Security-Policy (no script at
 * all; styles and forms only from this origin, plus the client's redirect
 * origin as a form target where a form ends in a redirect to the client),
 * no framing, no referrer and no caching.  The templates, strings and
 * stylesheet are read once at start.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const au_page_names[] = { "layout", "login", "register", "consent", "error",
                                             "done", "link", "device", "end_session",
                                             "account", "notice", "email_retry",
                                             "upstream_register", NULL };

struct au_pages {
    char *dir;
    json_t *tmpl;                 /* name -> template text */
    json_t *strings;              /* key -> text */
    char *css;
    size_t css_len;
};

/* ------------------------------------------------------------- buffer --- */

typedef struct au_buf {
    char *s;
    size_t n, cap;
    bool oom;
} au_buf_t;

static void au_buf_add(au_buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void au_buf_escaped(au_buf_t *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': au_buf_add(b, "&amp;", 5); break;
        case '<': au_buf_add(b, "&lt;", 4); break;
        case '>': au_buf_add(b, "&gt;", 4); break;
        case '"': au_buf_add(b, "&quot;", 6); break;
        case '\'': au_buf_add(b, "&#39;", 5); break;
        default: au_buf_add(b, s, 1); break;
        }
    }
}

char *au_html_escape(const char *s)
{
    au_buf_t b = { 0 };
    au_buf_add(&b, "", 0);
    au_buf_escaped(&b, s);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ----------------------------------------------------------- renderer --- */

#define AU_MAX_DEPTH 8

typedef struct au_ctx {
    const json_t *scopes[AU_MAX_DEPTH];   /* innermost last */
    int depth;
    const json_t *strings;
} au_ctx_t;

static const json_t *au_lookup(const au_ctx_t *c, const char *name)
{
    if (!strcmp(name, "."))
        return c->depth ? c->scopes[c->depth - 1] : NULL;
    for (int i = c->depth - 1; i >= 0; i--) {
        const json_t *v = json_is_object(c->scopes[i]) ? json_object_get(c->scopes[i], name) : NULL;
        if (v)
            return v;
    }
    return NULL;
}

static bool au_truthy(const json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v))
        return false;
    if (json_is_string(v))
        return json_string_length(v) > 0;
    if (json_is_array(v))
        return json_array_size(v) > 0;
    if (json_is_integer(v))
        return json_integer_value(v) != 0;
    return true;
}

static void au_value_out(au_buf_t *b, const json_t *v, bool raw)
{
    char num[32];
    const char *s = NULL;
    if (json_is_string(v)) {
        s = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        s = num;
    }
    if (!s)
        return;
    if (raw)
        au_buf_add(b, s, strlen(s));
    else
        au_buf_escaped(b, s);
}

static void au_render(au_buf_t *b, const char *t, size_t len, au_ctx_t *c);

/* Finds the {{/name}} closing a section opened just before `from`,
 * skipping nested sections of the same name.  Returns its offset or -1. */
static long au_find_close(const char *t, size_t len, size_t from, const char *name)
{
    size_t nl = strlen(name);
    int depth = 1;
    for (size_t i = from; i + 4 + nl <= len; i++) {
        if (t[i] != '{' || t[i + 1] != '{')
            continue;
        char k = t[i + 2];
        if ((k == '#' || k == '^' || k == '/') && !strncmp(t + i + 3, name, nl) &&
            i + 3 + nl + 2 <= len && !strncmp(t + i + 3 + nl, "}}", 2)) {
            if (k == '/' && --depth == 0)
                return (long)i;
            if (k != '/')
                depth++;
        }
    }
    return -1;
}

static void au_render(au_buf_t *b, const char *t, size_t len, au_ctx_t *c)
{
    size_t i = 0;
    while (i < len) {
        const char *open = NULL;
        for (size_t k = i; k + 1 < len; k++)
            if (t[k] == '{' && t[k + 1] == '{') {
                open = t + k;
                break;
            }
        if (!open) {
            au_buf_add(b, t + i, len - i);
            return;
        }
        au_buf_add(b, t + i, (size_t)(open - (t + i)));
        size_t at = (size_t)(open - t);
        bool triple = at + 2 < len && t[at + 2] == '{';
        size_t start = at + (triple ? 3 : 2);
        const char *close = NULL;
        for (size_t k = start; k + 1 < len; k++)
            if (t[k] == '}' && t[k + 1] == '}') {
                close = t + k;
                break;
            }
        if (!close) {
            au_buf_add(b, t + at, len - at);
            return;
        }
        char tag[128];
        size_t tl = (size_t)(close - (t + start));
        if (tl >= sizeof(tag))
            tl = sizeof(tag) - 1;
        memcpy(tag, t + start, tl);
        tag[tl] = '\0';
        size_t after = (size_t)(close - t) + 2 + (triple ? 1 : 0);
        if (after > len)
            after = len;
        if (tag[0] == '#' || tag[0] == '^') {
            long end = au_find_close(t, len, after, tag + 1);
            if (end < 0)
                return;   /* unbalanced template: stop rather than guess */
            const json_t *v = au_lookup(c, tag + 1);
            const char *inner = t + after;
            size_t ilen = (size_t)end - after;
            if (tag[0] == '^') {
                if (!au_truthy(v))
                    au_render(b, inner, ilen, c);
            } else if (au_truthy(v) && c->depth < AU_MAX_DEPTH) {
                if (json_is_array(v)) {
                    size_t k;
                    const json_t *e;
                    json_array_foreach(v, k, e) {
                        c->scopes[c->depth++] = e;
                        au_render(b, inner, ilen, c);
                        c->depth--;
                    }
                } else {
                    c->scopes[c->depth++] = v;
                    au_render(b, inner, ilen, c);
                    c->depth--;
                }
            }
            i = (size_t)end + 2 + 1 + strlen(tag + 1) + 2;
            continue;
        }
        if (!strncmp(tag, "t:", 2)) {
            const char *s = json_string_value(json_object_get(c->strings, tag + 2));
            au_buf_escaped(b, s ? s : tag + 2);
        } else if (tag[0] != '/' && tag[0] != '!') {
            au_value_out(b, au_lookup(c, tag), triple);
        }
        i = after;
    }
}

char *au_template_render(const char *tmpl, const json_t *vars, const json_t *strings)
{
    au_buf_t b = { 0 };
    au_ctx_t c = { .depth = 0, .strings = strings };
    c.scopes[c.depth++] = vars;
    au_buf_add(&b, "", 0);
    au_render(&b, tmpl, strlen(tmpl), &c);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ------------------------------------------------------------ loading --- */

static char *au_read_file(const char *dir, const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return mx_read_file(AT_FDCWD, path, 0, 16u << 20, len);
}

/* Configured, installed, or (running from the build tree) the source tree's. */
static char *au_pages_dir(void)
{
    return mx_share_dir(au.conf->templates_path, "web/auth");
}

int au_pages_init(char *err, size_t errlen)
{
    au_pages_t *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    au.pages = p;
    p->dir = au_pages_dir();
    p->tmpl = json_object();
    if (!p->dir || !p->tmpl)
        return -ENOMEM;
    for (const char *const *n = au_page_names; *n; n++) {
        char file[64];
        snprintf(file, sizeof(file), "%s.html", *n);
        char *t = au_read_file(p->dir, file, NULL);
        if (!t) {
            snprintf(err, errlen, "auth: cannot read template %s/%s", p->dir, file);
            return -ENOENT;
        }
        json_object_set_new(p->tmpl, *n, json_string(t));
        free(t);
        if (!json_object_get(p->tmpl, *n)) {
            snprintf(err, errlen, "auth: template %s/%s is not UTF-8", p->dir, file);
            return -EINVAL;
        }
    }
    char *s = au_read_file(p->dir, "strings.json", NULL);
    json_error_t je;
    p->strings = s ? json_loads(s, 0, &je) : NULL;
    free(s);
    if (!json_is_object(p->strings)) {
        snprintf(err, errlen, "auth: cannot read %s/strings.json", p->dir);
        return -EINVAL;
    }
    p->css = au_read_file(p->dir, "auth.css", &p->css_len);
    if (!p->css) {
        snprintf(err, errlen, "auth: cannot read %s/auth.css", p->dir);
        return -ENOENT;
    }
    return 0;
}

void au_pages_fini(void)
{
    au_pages_t *p = au.pages;
    if (!p)
        return;
    free(p->dir);
    json_decref(p->tmpl);
    json_decref(p->strings);
    free(p->css);
    free(p);
    au.pages = NULL;
}

/* ------------------------------------------------------------ replies --- */

static void au_page_headers(mx_req_t *req, const char *form_origin)
{
    mx_pool_t *pool = mx_req_pool(req);
    char *csp = mx_psprintf(pool,
                            "default-src 'none'; style-src 'self'; img-src 'self'; "
                            "form-action 'self'%s%s; frame-ancestors 'none'; base-uri 'none'",
                            form_origin ? " " : "", form_origin ? form_origin : "");
    mx_req_set_header(req, "Content-Security-Policy", csp);
    mx_req_set_header(req, "X-Frame-Options", "DENY");
    mx_req_set_header(req, "X-Content-Type-Options", "nosniff");
    mx_req_set_header(req, "Referrer-Policy", "no-referrer");
    mx_req_set_header(req, "Cache-Control", "no-store");
}

void au_page_reply(mx_req_t *req, int status, const char *name, json_t *vars,
                   const char *form_origin)
{
    au_pages_t *p = au.pages;
    const char *tmpl = json_string_value(json_object_get(p->tmpl, name));
    const char *layout = json_string_value(json_object_get(p->tmpl, "layout"));
    json_t *v = json_is_object(vars) ? json_copy(vars) : json_object();
    char key[64];
    snprintf(key, sizeof(key), "title_%s", name);
    const char *title = json_string_value(json_object_get(p->strings, key));
    json_object_set_new(v, "title", json_string(title ? title : ""));
    json_object_set_new(v, "service_name", json_string(au.conf->service_name ? au.conf->service_name
                                                                : mx_server_conf()->server_name));
    json_object_set_new(v, "base", json_string(au.base));
    char *body = tmpl ? au_template_render(tmpl, v, p->strings) : NULL;
    char *page = NULL;
    if (body) {
        json_object_set_new(v, "body", json_string(body));
        page = layout ? au_template_render(layout, v, p->strings) : NULL;
    }
    free(body);
    json_decref(v);
    au_page_headers(req, form_origin);
    if (!page) {
        static const char oops[] = "<!DOCTYPE html><title>Error</title><p>Internal error</p>\n";
        mx_req_reply(req, 500, "text/html; charset=utf-8", oops, sizeof(oops) - 1);
        return;
    }
    mx_req_reply(req, status, "text/html; charset=utf-8", page, strlen(page));
    free(page);
}

const char *au_string(const char *key)
{
    const char *s = au.pages ? json_string_value(json_object_get(au.pages->strings, key)) : NULL;
    return s ? s : key;
}

void au_page_error(mx_req_t *req, int status, const char *key, const char *detail)
{
    const char *msg = json_string_value(json_object_get(au.pages->strings, key));
    json_t *v = json_pack("{s:s, s:s}", "message", msg ? msg : key, "detail",
                          detail ? detail : "");
    au_page_reply(req, status, "error", v, NULL);
    json_decref(v);
}

static int au_get_css(mx_req_t *req, void *ud)
{
    (void)ud;
    mx_req_set_header(req, "Cache-Control", "public, max-age=3600");
    mx_req_set_header(req, "X-Content-Type-Options", "nosniff");
    mx_req_reply(req, 200, "text/css; charset=utf-8", au.pages->css, au.pages->css_len);
    return MX_DONE;
}

int au_pages_routes(void)
{
    return mx_route_add("auth", "GET", "/assets/auth.css", au_get_css, NULL, MX_ROUTE_NO_CORS);
}
