/*
 * admin.h: what the files of the admin module share.
 *
 * The admin module serves Synapse's Admin API (/_synapse/admin/v1, /v2)
 * and ESS's /_synapse/ess/version.  It owns no tables: every request is
 * checked here (admin token, parameters, body) and carried out by the
 * homeserver's `homeserver.admin` service (../homeserver/hs_admin_iface.h),
 * so the module also works when the homeserver later runs elsewhere.
 *
 * Routes are added on the "admin" and the "client" resources (Synapse
 * serves /_synapse/admin on its client listener).  Everything runs on the
 * loop thread.
 */
#ifndef MX_ADMIN_H
#define MX_ADMIN_H

#include "mx.h"
#include "../homeserver/hs.h"            /* auth.token: mx_auth_token_iface_t */
#include "../homeserver/hs_admin_iface.h"

#include <stdbool.h>
#include <stdint.h>

/* The `admin:` section. */
typedef struct ad_conf {
    char *ess_version;        /* /_synapse/ess/version's "version" (NULL: no route) */
    char *ess_edition;        /* its "edition" */
    int64_t max_limit;        /* largest page size a list accepts */
    int allow_self_whois;     /* a user may whois itself without being admin */
    /* Read by the homeserver's admin service (svc_room_delete.c) from the
     * raw section; checked here. */
    int64_t room_delete_step;     /* events deleted per committed step */
    int64_t test_room_delete_step_delay_ms; /* tests only: pause between steps */
} ad_conf_t;

typedef struct ad_state {
    ad_conf_t conf;
    bool bg_paused;           /* background updates paused (POST .../enabled) */
    json_t *notice_txns;      /* "admin\x1ftxnId" -> reply of send_server_notice */
} ad_state_t;
extern ad_state_t *ad;

/* One admin request after its token was checked.  Allocated in the
 * request's pool. */
typedef struct ad_req {
    mx_req_t *req;
    const char *admin;        /* the requester's user ID (pool) */
    bool is_admin;            /* false only on AD_SELF_OK routes for oneself */
    int ok_status;            /* HTTP status of a successful service reply (200) */
    const hs_admin_iface_t *hs;
    void *ud;                 /* per-handler data */
} ad_req_t;

/* A handler, called with an authenticated admin.  It replies (directly or
 * through ad_done) exactly once. */
typedef void (*ad_fn)(ad_req_t *ar);

/* Route flags (besides the core's MX_ROUTE_*, shifted out of their way). */
#define AD_SELF_OK 0x100      /* a user may call it about itself ({userId}) */
#define AD_NO_SERVICE 0x200   /* works without the homeserver service */

/* Adds `fn` for `method` `path` (the full path) on the admin and client
 * resources.  0 or a negative code. */
int ad_route(const char *method, const char *path, ad_fn fn, unsigned flags);
/* One row of a file's route table, and the table's registration. */
typedef struct ad_route_def {
    const char *method, *path;
    ad_fn fn;
    unsigned flags;
} ad_route_t;
int ad_routes(const ad_route_t *r, size_t n);
#define AD_V1 "/_synapse/admin/v1"
#define AD_V2 "/_synapse/admin/v2"
#define AD_J MX_ROUTE_JSON_BODY

/* Runs the service call `expr`; replies with its error when it returns
 * one at once (else the callback replies). */
#define AD_CALL(ar, expr)                                                                  \
    do {                                                                                   \
        int ad_rc_ = (expr);                                                               \
        if (ad_rc_ < 0)                                                                    \
            ad_call_failed((ar), ad_rc_);                                                  \
    } while (0)
/* A handler `name` that reads one path parameter with `getter` (which
 * replies 400 and returns NULL when it is bad) and passes it, then the
 * other arguments, to the service's `method` answered by ad_done. */
#define AD_ON_PARAM(name, getter, method, ...)                                             \
    static void name(ad_req_t *ar)                                                         \
    {                                                                                      \
        const char *p_ = (getter);                                                         \
        if (p_)                                                                            \
            AD_CALL(ar, ar->hs->method(p_, ##__VA_ARGS__, ad_done, ar));                   \
    }

/* A hs_admin_done_fn that replies to the ad_req_t given as `ud`: the result
 * with ar->ok_status, or the error (404 M_NOT_FOUND, 400, 403, 500). */
void ad_done(int status, json_t *result, void *ud);
/* Replies to a service call that returned a negative code at once. */
void ad_call_failed(ad_req_t *ar, int rc);

/* Query parameters.  Each returns false after replying 400 when bad. */
bool ad_qint(ad_req_t *ar, const char *name, int64_t def, int64_t min, int64_t *out);
/* "true"/"false" → 1/0, absent → def. */
bool ad_qbool(ad_req_t *ar, const char *name, int def, int *out);
/* "f"/"b", absent → "f". */
bool ad_qdir(ad_req_t *ar, const char **out);
/* from, limit (capped at max_limit) and dir as a new object {from, limit,
 * dir} (caller owns); NULL after replying 400 when one is bad. */
json_t *ad_qpage(ad_req_t *ar);
/* Replies to a list call that returned rc < 0 at once: -EINVAL means an
 * unknown `order` (the order_by parameter), else as ad_call_failed. */
void ad_list_failed(ad_req_t *ar, int rc, const char *order);
/* Path parameter {userId} checked as a user ID; replies 400 when bad. */
const char *ad_user_param(ad_req_t *ar);
/* True for a user ID of this server. */
bool ad_is_local(const char *user_id);
/* {userId} checked and of this server; replies 400 (`why` when it is
 * remote) and returns NULL otherwise. */
const char *ad_local_user(ad_req_t *ar, const char *why);
/* The JSON body as an object (empty object when there is none); NULL and
 * replied 400 when it is not an object. */
json_t *ad_body(ad_req_t *ar);

/* Route registration of each file. */
int ad_users_routes(void);
int ad_rooms_routes(void);
int ad_media_routes(void);
int ad_tokens_routes(void);
int ad_misc_routes(void);

#endif /* MX_ADMIN_H */
