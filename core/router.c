/*
 * router.c: the route table.  Modules add routes per resource name
 * (mx_route_add); the HTTP server looks a request up among the resources of
 * the listener it arrived on.
 *
 * Routes live in one trie keyed by path segment.  Each node has its literal
 * children in a small open-addressing hash table, at most one {param} child
 * and at most one {rest*} child, so a lookup costs O(path segments) (plus
 * backtracking from a literal branch to the param branch when the literal
 * branch ends nowhere, which real route tables rarely need).  A route
 * carries its resource's bit; a listener passes the mask of its resources.
 *
 * Precedence at every node: literal child, then {param}, then {rest*}.  When
 * the path ends at a node without routes, a trailing {param} or {rest*}
 * child may match an empty segment (".../state/m.room.name" reaches
 * ".../state/{eventType}/{stateKey}" with stateKey "").
 */
#include "http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESOURCES 32
#define MAX_PARAMS 16

typedef struct route {
    struct route *next;                 /* registration order within a node */
    char *method;                       /* "GET", ... or "*" */
    unsigned mbit;                      /* MX__M_* bit of method, or 0 */
    mx_handler_fn fn;
    void *ud;
    unsigned flags;
    uint32_t resbit;
    char *pattern;
    char *pnames[MAX_PARAMS];
    int npar;
} route_t;

typedef struct rnode {
    char *seg;                          /* literal key (children of a hash) */
    struct rnode **lit;                 /* open addressing, `litcap` slots */
    size_t nlit, litcap;
    struct rnode *param, *rest;
    route_t *routes, *routes_tail;
    uint32_t resmask;                   /* resources of routes at or below */
} rnode_t;

typedef struct mx__router {
    rnode_t root;
    char *resname[MAX_RESOURCES];
    int nres;
} router_t;

static router_t *router(void)
{
    mx_http_state_t *st = mx__http_state();
    return st ? st->router : NULL;
}

int mx__router_init(void)
{
    mx_http_state_t *st = mx__http_state();
    if (!st)
        return -ENOMEM;
    if (st->router)
        return 0;
    st->router = calloc(1, sizeof(*st->router));
    return st->router ? 0 : -ENOMEM;
}

static void node_free(rnode_t *n, bool self)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->litcap; i++)
        node_free(n->lit[i], true);
    free(n->lit);
    node_free(n->param, true);
    node_free(n->rest, true);
    route_t *r = n->routes;
    while (r) {
        route_t *next = r->next;
        free(r->method);
        free(r->pattern);
        for (int i = 0; i < r->npar; i++)
            free(r->pnames[i]);
        free(r);
        r = next;
    }
    free(n->seg);
    if (self)
        free(n);
}

void mx__router_fini(void)
{
    router_t *rt = router();
    if (!rt)
        return;
    node_free(&rt->root, false);
    for (int i = 0; i < rt->nres; i++)
        free(rt->resname[i]);
    free(rt);
    mx__ctx->http->router = NULL;
    mx__http_state_release();
}

uint32_t mx__router_resource_bit(const char *name)
{
    router_t *rt = router();
    if (!rt || !name)
        return 0;
    for (int i = 0; i < rt->nres; i++)
        if (!strcmp(rt->resname[i], name))
            return 1u << i;
    if (rt->nres == MAX_RESOURCES)
        return 0;
    rt->resname[rt->nres] = strdup(name);
    if (!rt->resname[rt->nres])
        return 0;
    return 1u << rt->nres++;
}

static unsigned method_bit(const char *m)
{
    static const char *const names[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                         "PATCH" };
    for (unsigned i = 0; i < sizeof(names) / sizeof(*names); i++)
        if (!strcmp(m, names[i]))
            return 1u << i;
    return 0;
}

/* ------------------------------------------------------- literal hash --- */

static uint32_t seg_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static rnode_t *lit_find(const rnode_t *n, const char *s, size_t len)
{
    if (!n->nlit)
        return NULL;
    size_t mask = n->litcap - 1;
    for (size_t i = seg_hash(s, len) & mask;; i = (i + 1) & mask) {
        rnode_t *c = n->lit[i];
        if (!c)
            return NULL;
        if (!strncmp(c->seg, s, len) && c->seg[len] == '\0')
            return c;
    }
}

static int lit_insert_slot(rnode_t **tab, size_t cap, rnode_t *c)
{
    size_t mask = cap - 1;
    size_t i = seg_hash(c->seg, strlen(c->seg)) & mask;
    while (tab[i])
        i = (i + 1) & mask;
    tab[i] = c;
    return 0;
}

static rnode_t *lit_add(rnode_t *n, const char *s, size_t len)
{
    rnode_t *c = lit_find(n, s, len);
    if (c)
        return c;
    if ((n->nlit + 1) * 2 > n->litcap) {
        size_t cap = n->litcap ? n->litcap * 2 : 4;
        rnode_t **tab = calloc(cap, sizeof(*tab));
        if (!tab)
            return NULL;
        for (size_t i = 0; i < n->litcap; i++)
            if (n->lit[i])
                lit_insert_slot(tab, cap, n->lit[i]);
        free(n->lit);
        n->lit = tab;
        n->litcap = cap;
    }
    c = calloc(1, sizeof(*c));
    if (!c || !(c->seg = strndup(s, len))) {
        free(c);
        return NULL;
    }
    lit_insert_slot(n->lit, n->litcap, c);
    n->nlit++;
    return c;
}

/* ------------------------------------------------------------ adding --- */

int mx_route_add(const char *resource, const char *method, const char *pattern,
                 mx_handler_fn fn, void *ud, unsigned flags)
{
    if (!router() && mx__router_init() < 0)
        return -ENOMEM;
    router_t *rt = router();
    if (!resource || !method || !*method || !pattern || pattern[0] != '/' || !fn)
        return -EINVAL;
    uint32_t bit = mx__router_resource_bit(resource);
    if (!bit)
        return -ENOSPC;
    route_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->method = strdup(method);
    r->pattern = strdup(pattern);
    r->mbit = method_bit(method);
    r->fn = fn;
    r->ud = ud;
    r->flags = flags & ~MX__ROUTE_INTERNAL_MASK;
    r->resbit = bit;
    int rc = -ENOMEM;
    if (!r->method || !r->pattern)
        goto fail;

    /* Walk (and grow) the trie one segment at a time, checking the
     * pattern's syntax on the way. */
    rc = -EINVAL;
    rnode_t *path[MX__HTTP_MAX_SEGMENTS + 1];
    int depth = 0;
    rnode_t *n = &rt->root;
    path[depth++] = n;
    const char *s = pattern + 1;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (depth > MX__HTTP_MAX_SEGMENTS)
            goto fail;
        rnode_t *next;
        if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
            bool rest = s[len - 2] == '*';
            size_t nlen = len - 2 - (rest ? 1 : 0);
            if (nlen == 0 || memchr(s + 1, '{', nlen) || memchr(s + 1, '}', nlen) ||
                r->npar == MAX_PARAMS || (rest && e))
                goto fail;
            if (!(r->pnames[r->npar] = strndup(s + 1, nlen))) {
                rc = -ENOMEM;
                goto fail;
            }
            r->npar++;
            rnode_t **slot = rest ? &n->rest : &n->param;
            if (!*slot && !(*slot = calloc(1, sizeof(rnode_t)))) {
                rc = -ENOMEM;
                goto fail;
            }
            next = *slot;
        } else {
            if (memchr(s, '{', len) || memchr(s, '}', len))
                goto fail;
            if (!(next = lit_add(n, s, len))) {
                rc = -ENOMEM;
                goto fail;
            }
        }
        n = next;
        path[depth++] = n;
        if (!e)
            break;
        s = e + 1;
    }
    for (int i = 0; i < depth; i++)
        path[i]->resmask |= bit;
    if (n->routes_tail)
        n->routes_tail->next = r;
    else
        n->routes = r;
    n->routes_tail = r;
    return 0;

fail:
    free(r->method);
    free(r->pattern);
    for (int i = 0; i < r->npar; i++)
        free(r->pnames[i]);
    free(r);
    return rc;
}

/* ----------------------------------------------------------- looking up --- */

long mx__url_decode(const char *s, size_t len, char *out, int plus)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= len)
                return -1;
            int v = 0;
            for (int k = 1; k <= 2; k++) {
                char h = s[i + k];
                v <<= 4;
                if (h >= '0' && h <= '9')
                    v |= h - '0';
                else if (h >= 'a' && h <= 'f')
                    v |= h - 'a' + 10;
                else if (h >= 'A' && h <= 'F')
                    v |= h - 'A' + 10;
                else
                    return -1;
            }
            out[o++] = (char)v;
            i += 2;
        } else if (ch == '+' && plus) {
            out[o++] = ' ';
        } else {
            out[o++] = ch;
        }
    }
    out[o] = '\0';
    return (long)o;
}

typedef struct walk {
    uint32_t mask;
    const char *method;
    bool is_head;
    const char *segs[MX__HTTP_MAX_SEGMENTS];
    size_t lens[MX__HTTP_MAX_SEGMENTS];
    int nseg;
    const char *path_end;
    int skip_left;
    const char *cap[MAX_PARAMS];
    size_t caplen[MAX_PARAMS];
    int ncap;
    unsigned allow;
    bool known;
    route_t *found;
} walk_t;

static bool method_ok(const route_t *r, const walk_t *w)
{
    if (r->method[0] == '*' && !r->method[1])
        return true;
    if (!strcmp(r->method, w->method))
        return true;
    return w->is_head && r->mbit == MX__M_GET;
}

static bool terminal(rnode_t *n, walk_t *w)
{
    for (route_t *r = n->routes; r; r = r->next) {
        if (!(r->resbit & w->mask))
            continue;
        w->known = true;
        w->allow |= r->mbit;
        if (r->mbit == MX__M_GET)
            w->allow |= MX__M_HEAD;
        if (!method_ok(r, w))
            continue;
        if (w->skip_left-- > 0)
            continue;
        w->found = r;
        return true;
    }
    return false;
}

static bool walk(rnode_t *n, int i, walk_t *w)
{
    if (!(n->resmask & w->mask))
        return false;
    if (i == w->nseg) {
        if (terminal(n, w))
            return true;
        /* A trailing parameter may match the empty segment that a missing
         * final '/' leaves out. */
        if (w->ncap < MAX_PARAMS) {
            w->cap[w->ncap] = w->path_end;
            w->caplen[w->ncap++] = 0;
            if (n->param && (n->param->resmask & w->mask) && terminal(n->param, w))
                return true;
            if (n->rest && (n->rest->resmask & w->mask) && terminal(n->rest, w))
                return true;
            w->ncap--;
        }
        return false;
    }
    rnode_t *c = lit_find(n, w->segs[i], w->lens[i]);
    if (c && walk(c, i + 1, w))
        return true;
    if (w->ncap == MAX_PARAMS)
        return false;
    if (n->param) {
        w->cap[w->ncap] = w->segs[i];
        w->caplen[w->ncap++] = w->lens[i];
        if (walk(n->param, i + 1, w))
            return true;
        w->ncap--;
    }
    if (n->rest && (n->rest->resmask & w->mask)) {
        w->cap[w->ncap] = w->segs[i];
        w->caplen[w->ncap++] = (size_t)(w->path_end - w->segs[i]);
        if (terminal(n->rest, w))
            return true;
        w->ncap--;
    }
    return false;
}

int mx__router_match_mask(uint32_t mask, const char *method, const char *path, int skip,
                          mx_pool_t *pool, mx_route_match_t *m, unsigned *allow)
{
    router_t *rt = router();
    memset(m, 0, sizeof(*m));
    if (allow)
        *allow = 0;
    if (!rt || !path || path[0] != '/')
        return -ENOENT;
    walk_t w;
    w.mask = mask;
    w.method = method;
    w.is_head = !strcmp(method, "HEAD");
    w.nseg = 0;
    w.skip_left = skip;
    w.ncap = 0;
    w.allow = 0;
    w.known = false;
    w.found = NULL;
    const char *s = path + 1;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (w.nseg == MX__HTTP_MAX_SEGMENTS)
            return -ENOENT;
        w.segs[w.nseg] = s;
        w.lens[w.nseg++] = len;
        if (!e) {
            w.path_end = s + len;
            break;
        }
        s = e + 1;
    }
    bool ok = walk(&rt->root, 0, &w);
    if (allow)
        *allow = w.allow;
    m->path_known = w.known;
    if (!ok)
        return w.known ? -EPERM : -ENOENT;
    route_t *r = w.found;
    m->fn = r->fn;
    m->ud = r->ud;
    m->flags = r->flags;
    m->pattern = r->pattern;
    m->nparams = r->npar < w.ncap ? r->npar : w.ncap;
    for (int i = 0; i < m->nparams; i++) {
        m->param_names[i] = r->pnames[i];
        char *v = pool ? mx_palloc(pool, w.caplen[i] + 1) : NULL;
        if (!v)
            return -ENOMEM;
        /* Matching used the raw text; values are decoded per segment.  A
         * bad escape stays as it was (the server refuses those earlier). */
        if (mx__url_decode(w.cap[i], w.caplen[i], v, 0) < 0) {
            memcpy(v, w.cap[i], w.caplen[i]);
            v[w.caplen[i]] = '\0';
        }
        m->param_values[i] = v;
    }
    return 0;
}

int mx__router_match(const char *resource, const char *method, const char *path, int skip,
                     mx_pool_t *pool, mx_route_match_t *m)
{
    uint32_t bit = 0;
    router_t *rt = router();
    if (rt)
        for (int i = 0; i < rt->nres; i++)
            if (!strcmp(rt->resname[i], resource))
                bit = 1u << i;
    if (!bit) {
        memset(m, 0, sizeof(*m));
        return -ENOENT;
    }
    return mx__router_match_mask(bit, method, path, skip, pool, m, NULL);
}
