/*
 * ad_tokens.c: registration tokens in the Admin API — list (?valid=),
 * create (/new), details, update and delete.  The body checks live in the
 * homeserver service, next to the table they guard.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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

int ad_tokens_routes(void)
{
    static const ad_route_t r[] = {
        { "GET", AD_V1 "/registration_tokens", ad_tok_list, 0 },
        { "POST", AD_V1 "/registration_tokens/new", ad_tok_new, AD_J },
        { "GET", AD_V1 "/registration_tokens/{token}", ad_tok_get, 0 },
        { "PUT", AD_V1 "/registration_tokens/{token}", ad_tok_put, AD_J },
        { "DELETE", AD_V1 "/registration_tokens/{token}", ad_tok_delete, AD_J },
    };
    return ad_routes(r, sizeof(r) / sizeof(r[0]));
}
