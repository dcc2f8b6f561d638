/*
 * web_landing.c: the page shown at "/" while no Element Web is installed.
 * The HTML lives in web/landing/index.html (installed under
 * $(pkgdatadir)/web/landing); this file fills its {{placeholders}} once at
 * start, HTML-escaped:
 *   {{server_name}} {{base_url}} {{element_web_path}} {{admin_url}}
 *   {{account_link}}  a link to the account page, or a note that there is
 *                     none (no auth module, no web.account_url)
 * Unknown placeholders are left as they are.
 */
#include "web.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *s;
    size_t n, cap;
    int oom;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void put_escaped(buf_t *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': put(b, "&lt;", 4); break;
        case '>': put(b, "&gt;", 4); break;
        case '&': put(b, "&amp;", 5); break;
        case '"': put(b, "&quot;", 6); break;
        case '\'': put(b, "&#39;", 5); break;
        default: put(b, s, 1);
        }
    }
}

static void put_var(buf_t *b, const char *name, size_t n)
{
    const mx_server_conf_t *sc = mx_server_conf();
#define IS(lit) (n == sizeof(lit) - 1 && !strncmp(name, lit, n))
    if (IS("server_name")) {
        put_escaped(b, sc->server_name);
    } else if (IS("base_url")) {
        put_escaped(b, sc->public_baseurl);
    } else if (IS("element_web_path")) {
        put_escaped(b, web.element.path ? web.element.path : "element-web");
    } else if (IS("admin_url")) {
        put_escaped(b, web.admin_url);
    } else if (IS("account_link")) {
        if (web.account_url) {
            put(b, "<a href=\"", 9);
            put_escaped(b, web.account_url);
            put(b, "\">Your account</a>", 18);
        } else {
            static const char none[] =
                "<span>Your account (enable the <code>auth</code> module)</span>";
            put(b, none, sizeof(none) - 1);
        }
    } else {
        put(b, "{{", 2);
        put(b, name, n);
        put(b, "}}", 2);
    }
#undef IS
}

int web_landing_build(char *err, size_t errlen)
{
    static const char fallback[] =
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mxstack</title>"
        "</head><body><h1>{{server_name}}</h1><p>Element Web is not installed. Run "
        "<code>contrib/fetch-element-web.sh VERSION {{element_web_path}}</code>.</p>"
        "<p>{{account_link}} &middot; <a href=\"{{admin_url}}\">Admin console</a></p>"
        "</body></html>\n";
    char *tpl = NULL;
    if (web.landing.path) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/index.html", web.landing.path);
        tpl = mx_read_file(AT_FDCWD, path, 0, 1024 * 1024, NULL);
    }
    const char *t = tpl ? tpl : fallback;
    buf_t b = { 0 };
    for (const char *p = t; *p;) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!open || !close) {
            put(&b, p, strlen(p));
            break;
        }
        put(&b, p, (size_t)(open - p));
        put_var(&b, open + 2, (size_t)(close - open - 2));
        p = close + 2;
    }
    free(tpl);
    int rc = b.oom || !b.s ? -ENOMEM : web_doc_set(&web.landing_html, b.s, b.n);
    free(b.s);
    if (rc < 0)
        snprintf(err, errlen, "cannot build the landing page");
    return rc;
}
