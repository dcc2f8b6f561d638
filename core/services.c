/*
 * services.c: what modules offer each other.
 *
 * Two kinds of service, both by name:
 *   - typed interfaces (a struct of function pointers): mx_service_register /
 *     mx_service_get — in-process only, the fast path;
 *   - JSON services: mx_service_provide / mx_service_call / mx_service_reply.
 *     A call goes straight to the provider when it is loaded in this process;
 *     otherwise to `service_locations.<name>` over HTTP:
 *         POST <base>/_mxstack/service/<name>/<method>
 *         Authorization: Bearer <internal_secret>
 *         {"args": ...}   →   200 {"result": ...} | {"errcode", "error", "status"}
 *     and the receiving process's core dispatches it to its local provider.
 *     Callers cannot tell the two apart, and tests run both.
 */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVICES 32
#define SERVICE_CALL_TIMEOUT_MS 10000

typedef struct provider {
    char *name;
    mx_service_handler_fn fn;
    void *ud;
} provider_t;

struct mx_services_state {
    struct { const char *name; const void *iface; } typed[MAX_SERVICES];
    int ntyped;
    provider_t providers[MAX_SERVICES];
    int nproviders;
};

/* One call in flight, whichever way it travels. */
struct mx_service_call {
    mx_service_done_fn cb;     /* local caller, or NULL when answering HTTP */
    void *ud;
    mx_req_t *req;             /* the HTTP request to answer, for remote callers */
    json_t *args;              /* owned */
    char method[128];
};

static struct mx_services_state *state(void)
{
    if (!mx__ctx)
        return NULL;
    if (!mx__ctx->services)
        mx__ctx->services = calloc(1, sizeof(*mx__ctx->services));
    return mx__ctx->services;
}

/* ------------------------------------------------------ typed interfaces */

int mx_service_register(const char *name, const void *iface)
{
    struct mx_services_state *st = state();
    if (!st || !name || !iface)
        return -EINVAL;
    for (int i = 0; i < st->ntyped; i++)
        if (strcmp(st->typed[i].name, name) == 0)
            return -EEXIST;
    if (st->ntyped >= MAX_SERVICES)
        return -E2BIG;
    st->typed[st->ntyped].name = name;
    st->typed[st->ntyped].iface = iface;
    st->ntyped++;
    return 0;
}

const void *mx_service_get(const char *name)
{
    struct mx_services_state *st = mx__ctx ? mx__ctx->services : NULL;
    for (int i = 0; st && i < st->ntyped; i++)
        if (strcmp(st->typed[i].name, name) == 0)
            return st->typed[i].iface;
    return NULL;
}

/* --------------------------------------------------------- JSON services */

static const provider_t *find_provider(const char *name)
{
    struct mx_services_state *st = mx__ctx ? mx__ctx->services : NULL;
    for (int i = 0; st && i < st->nproviders; i++)
        if (strcmp(st->providers[i].name, name) == 0)
            return &st->providers[i];
    return NULL;
}

int mx_service_provide(const char *name, mx_service_handler_fn fn, void *ud)
{
    struct mx_services_state *st = state();
    if (!st || !name || !fn)
        return -EINVAL;
    if (find_provider(name))
        return -EEXIST;
    if (st->nproviders >= MAX_SERVICES)
        return -E2BIG;
    provider_t *p = &st->providers[st->nproviders];
    if (!(p->name = strdup(name)))
        return -ENOMEM;
    p->fn = fn;
    p->ud = ud;
    st->nproviders++;
    return 0;
}

static mx_service_call_t *call_new(const char *method, const json_t *args)
{
    mx_service_call_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    snprintf(c->method, sizeof(c->method), "%s", method);
    c->args = args ? json_deep_copy(args) : json_object();
    if (!c->args) {
        free(c);
        return NULL;
    }
    return c;
}

static void call_free(mx_service_call_t *c)
{
    json_decref(c->args);
    free(c);
}

void mx_service_reply(mx_service_call_t *call, int status, json_t *result)
{
    if (!call) {
        json_decref(result);
        return;
    }
    if (call->cb) {
        call->cb(status, status == 0 ? result : NULL, call->ud);
    } else if (call->req) {
        if (status == 0)
            mx_req_reply_json(call->req, 200,
                              json_pack("{s:o}", "result", result ? json_incref(result) : json_null()));
        else
            mx_req_reply_json(call->req, status == -ENOENT ? 404 : 500,
                              json_pack("{s:s, s:s, s:i}", "errcode",
                                        status == -ENOENT ? "M_NOT_FOUND" : "M_UNKNOWN", "error",
                                        strerror(-status), "status", status));
    }
    json_decref(result);
    call_free(call);
}

typedef struct remote_call {
    mx_service_done_fn cb;
    void *ud;
} remote_call_t;

static void remote_done(const mx_http_response_t *resp, void *ud)
{
    remote_call_t *rc = ud;
    if (resp->err) {
        rc->cb(resp->err == MX_ETIMEOUT ? MX_ETIMEOUT : -EIO, NULL, rc->ud);
        free(rc);
        return;
    }
    json_t *body = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (resp->status == 200 && json_is_object(body)) {
        rc->cb(0, json_object_get(body, "result"), rc->ud);
    } else {
        json_t *st = json_object_get(body, "status");
        int status = json_is_integer(st) ? (int)json_integer_value(st) : -EIO;
        rc->cb(status < 0 ? status : -EIO, NULL, rc->ud);
    }
    json_decref(body);
    free(rc);
}

static int call_remote(const char *base, const char *name, const char *method, const json_t *args,
                       mx_service_done_fn cb, void *ud)
{
    const char *secret = mx__ctx->conf->internal_secret;
    char url[1024], auth[512];
    size_t bl = strlen(base);
    snprintf(url, sizeof(url), "%s%s_mxstack/service/%s/%s", base,
             bl && base[bl - 1] == '/' ? "" : "/", name, method);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", secret ? secret : "");
    const char *headers[] = { auth, "Content-Type: application/json", NULL };
    json_t *wrapped = json_pack("{s:O}", "args", args ? args : json_object());
    char *body = wrapped ? json_dumps(wrapped, JSON_COMPACT) : NULL;
    json_decref(wrapped);
    remote_call_t *rc = calloc(1, sizeof(*rc));
    if (!body || !rc) {
        free(body);
        free(rc);
        return -ENOMEM;
    }
    rc->cb = cb;
    rc->ud = ud;
    mx_http_request_t rq = {
        .method = "POST", .url = url, .headers = headers, .body = body,
        .body_len = strlen(body), .timeout_ms = SERVICE_CALL_TIMEOUT_MS,
        .allow_private = 1,   /* a configured peer, typically in the cluster network */
    };
    int r = mx_http_fetch(&rq, remote_done, rc);
    free(body);
    if (r != 0)
        free(rc);
    return r;
}

int mx_service_call(const char *name, const char *method, const json_t *args,
                    mx_service_done_fn cb, void *ud)
{
    if (!mx__ctx || !name || !method || !cb)
        return -EINVAL;
    const provider_t *p = find_provider(name);
    if (p) {
        mx_service_call_t *c = call_new(method, args);
        if (!c)
            return -ENOMEM;
        c->cb = cb;
        c->ud = ud;
        p->fn(c, c->method, c->args, p->ud);
        return 0;
    }
    const json_t *loc = mx__ctx->conf ? json_object_get(mx__ctx->conf->service_locations, name) : NULL;
    if (json_is_string(loc))
        return call_remote(json_string_value(loc), name, method, args, cb, ud);
    return -ENOENT;
}

/* POST /_mxstack/service/{name}/{method} on the "internal" resource. */
static int h_service(mx_req_t *req, void *ud)
{
    const char *secret = mx__ctx->conf->internal_secret;
    const char *token = mx_req_access_token(req);
    if (!secret || !token || !mx_ct_streq(token, secret)) {
        mx_req_error(req, 403, "M_FORBIDDEN", "internal calls need the internal_secret");
        return MX_DONE;
    }
    const provider_t *p = find_provider(mx_req_param(req, "name"));
    if (!p) {
        mx_req_reply_json(req, 404, json_pack("{s:s, s:s, s:i}", "errcode", "M_NOT_FOUND", "error",
                                              "no such service here", "status", -ENOENT));
        return MX_DONE;
    }
    mx_service_call_t *c = call_new(mx_req_param(req, "method"),
                                    json_object_get(mx_req_json(req), "args"));
    if (!c) {
        mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
        return MX_DONE;
    }
    c->req = req;
    p->fn(c, c->method, c->args, p->ud);
    return MX_ASYNC;
}

int mx__services_init(void)
{
    if (!state())
        return -ENOMEM;
    return mx_route_add("internal", "POST", "/_mxstack/service/{name}/{method}", h_service, NULL,
                        MX_ROUTE_JSON_BODY | MX_ROUTE_NO_CORS);
}

void mx__services_fini(void)
{
    struct mx_services_state *st = mx__ctx ? mx__ctx->services : NULL;
    if (!st)
        return;
    for (int i = 0; i < st->nproviders; i++)
        free(st->providers[i].name);
    free(st);
    mx__ctx->services = NULL;
}
