/*
 * ad_tokens.c: registration tokens in the Admin API — list (?valid=),
 * create (/new), details, update and delete.  The body checks live in the
 * homeserver service, next to the table they guard.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define AD_CALL(ar, expr)                                                                  \
    do {                                                                                   \
        int ad_rc_ = (expr);                                                               \
        if (ad_rc_ < 0)                                                                    \
            ad_call_failed((ar), ad_rc_);                                                  \
    } while (0)

static void ad_tok_list(ad_req_t *ar)
{
    int valid;
    if (ad_qbool(ar, "valid", -1, &valid))
        AD_CALL(ar, ar->hs->list_regtokens(valid, ad_done, ar));
}

static void ad_tok_new(ad_req_t *ar)
{
    json_t *b = ad_body(ar);
    if (b)
        AD_CALL(ar, ar->hs->create_regtoken(b, ad_done, ar));
}

static void ad_tok_get(ad_req_t *ar)
{
    AD_CALL(ar, ar->hs->get_regtoken(mx_req_param(ar->req, "token"), ad_done, ar));
}

static void ad_tok_put(ad_req_t *ar)
{
    json_t *b = ad_body(ar);
    if (b)
        AD_CALL(ar, ar->hs->update_regtoken(mx_req_param(ar->req, "token"), b, ad_done, ar));
}

static void ad_tok_delete(ad_req_t *ar)
{
    AD_CALL(ar, ar->hs->delete_regtoken(mx_req_param(ar->req, "token"), ad_done, ar));
}

#define V1 "/_synapse/admin/v1"
#define J MX_ROUTE_JSON_BODY

int ad_tokens_routes(void)
{
    static const struct {
        const char *method, *path;
        ad_fn fn;
        unsigned flags;
    } r[] = {
        { "GET", V1 "/registration_tokens", ad_tok_list, 0 },
        { "POST", V1 "/registration_tokens/new", ad_tok_new, J },
        { "GET", V1 "/registration_tokens/{token}", ad_tok_get, 0 },
        { "PUT", V1 "/registration_tokens/{token}", ad_tok_put, J },
        { "DELETE", V1 "/registration_tokens/{token}", ad_tok_delete, J },
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        int rc = ad_route(r[i].method, r[i].path, r[i].fn, r[i].flags);
        if (rc < 0)
            return rc;
    }
    return 0;
}
