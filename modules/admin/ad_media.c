/*
 * ad_media.c: the media routes of the Admin API — a user's media (list,
 * delete all, quarantine all), one media's info and deletion, quarantine
 * and unquarantine, protection, deletion by date and size, the remote
 * media cache.  Only media of this server can be changed.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void ad_user_media_get(ad_req_t *ar)
{
    const char *u = ad_local_user(ar, "Can only look up local users");
    int64_t from, limit;
    const char *dir;
    if (!u || !ad_qint(ar, "from", 0, 0, &from) || !ad_qint(ar, "limit", 100, 0, &limit) ||
        !ad_qdir(ar, &dir))
        return;
    json_t *q = json_pack("{s:I, s:I, s:s}", "from", (json_int_t)from, "limit", (json_int_t)limit,
                          "dir", dir);
    const char *order = mx_req_query(ar->req, "order_by");
    if (order)
        json_object_set_new(q, "order_by", json_string(order));
    int rc = ar->hs->user_media(u, q, ad_done, ar);
    json_decref(q);
    if (rc < 0)
        ad_list_failed(ar, rc, order);
}

AD_ON_PARAM(ad_user_media_delete, ad_local_user(ar, "Can only look up local users"),
            delete_user_media)

AD_ON_PARAM(ad_user_media_quarantine, ad_user_param(ar), quarantine_user_media, ar->admin)

/* {serverName} must be ours; replies 400 otherwise. */
static const char *ad_local_media(ad_req_t *ar, const char *why)
{
    const char *server = mx_req_param(ar->req, "serverName");
    const char *mid = mx_req_param(ar->req, "mediaId");
    if (!server || strcmp(server, mx_server_conf()->server_name) != 0) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "%s", why);
        return NULL;
    }
    if (!mid || !*mid) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Missing media ID");
        return NULL;
    }
    return mid;
}

AD_ON_PARAM(ad_media_info, ad_local_media(ar, "Can only look up local media"), media_info)
AD_ON_PARAM(ad_media_delete, ad_local_media(ar, "Can only delete local media"), delete_media)
AD_ON_PARAM(ad_media_quarantine, ad_local_media(ar, "Can only quarantine local media"),
            quarantine_media, ar->admin)
AD_ON_PARAM(ad_media_unquarantine, ad_local_media(ar, "Can only unquarantine local media"),
            quarantine_media, NULL)

/* --------------------------------------------------------- clean-up --- */

/* before_ts as Synapse checks it: required, >= 0, in milliseconds. */
static bool ad_before_ts(ad_req_t *ar, int64_t *out)
{
    if (!mx_req_query(ar->req, "before_ts")) {
        mx_req_error(ar->req, 400, "M_MISSING_PARAM",
                     "Missing integer query parameter 'before_ts'");
        return false;
    }
    if (!ad_qint(ar, "before_ts", 0, 0, out))
        return false;
    if (*out < 30000000000LL) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM",
                     "Query parameter before_ts you provided is from the year 1970. Double check"
                     " that you are providing a timestamp in milliseconds.");
        return false;
    }
    return true;
}

static void ad_media_delete_old(ad_req_t *ar)
{
    const char *server = mx_req_param(ar->req, "serverName");
    if (server && strcmp(server, mx_server_conf()->server_name) != 0) {
        mx_req_error(ar->req, 400, "M_INVALID_PARAM", "Can only delete local media");
        return;
    }
    int64_t before, size_gt;
    int keep;
    if (!ad_before_ts(ar, &before) || !ad_qint(ar, "size_gt", 0, 0, &size_gt) ||
        !ad_qbool(ar, "keep_profiles", 1, &keep))
        return;
    json_t *q = json_pack("{s:I, s:I, s:b}", "before_ts", (json_int_t)before, "size_gt",
                          (json_int_t)size_gt, "keep_profiles", keep);
    AD_CALL(ar, ar->hs->delete_old_media(q, ad_done, ar));
    json_decref(q);
}

static void ad_purge_media_cache(ad_req_t *ar)
{
    int64_t before;
    if (ad_before_ts(ar, &before))
        AD_CALL(ar, ar->hs->purge_remote_media(before, ad_done, ar));
}

static void ad_media_protect(ad_req_t *ar)
{
    const char *mid = mx_req_param(ar->req, "mediaId");
    AD_CALL(ar, ar->hs->protect_media(mid ? mid : "", true, ad_done, ar));
}

static void ad_media_unprotect(ad_req_t *ar)
{
    const char *mid = mx_req_param(ar->req, "mediaId");
    AD_CALL(ar, ar->hs->protect_media(mid ? mid : "", false, ad_done, ar));
}

int ad_media_routes(void)
{
    static const ad_route_t r[] = {
        { "GET", AD_V1 "/users/{userId}/media", ad_user_media_get, 0 },
        { "DELETE", AD_V1 "/users/{userId}/media", ad_user_media_delete, AD_J },
        { "POST", AD_V1 "/user/{userId}/media/quarantine", ad_user_media_quarantine, AD_J },
        { "GET", AD_V1 "/media/{serverName}/{mediaId}", ad_media_info, 0 },
        { "DELETE", AD_V1 "/media/{serverName}/{mediaId}", ad_media_delete, AD_J },
        { "POST", AD_V1 "/media/quarantine/{serverName}/{mediaId}", ad_media_quarantine, AD_J },
        { "POST", AD_V1 "/media/unquarantine/{serverName}/{mediaId}", ad_media_unquarantine, AD_J },
        { "POST", AD_V1 "/media/delete", ad_media_delete_old, AD_J },
        { "POST", AD_V1 "/media/{serverName}/delete", ad_media_delete_old, AD_J },
        { "POST", AD_V1 "/purge_media_cache", ad_purge_media_cache, AD_J },
        { "POST", AD_V1 "/media/protect/{mediaId}", ad_media_protect, AD_J },
        { "POST", AD_V1 "/media/unprotect/{mediaId}", ad_media_unprotect, AD_J },
    };
    return ad_routes(r, sizeof(r) / sizeof(r[0]));
}
