/*
 * versions.c: GET /_matrix/client/versions and GET /capabilities (spec
 * "Capabilities negotiation").
 *
 * /versions lists every version we are compatible with, like Synapse
 * (r0.0.1 ... r0.6.1, v1.1 ... v1.12): js-sdk rejects a server that lists
 * none of the versions it knows.  It needs no token and never fails on a
 * bad one.  unstable_features holds only what the parts set at start
 * through hs_versions_set_unstable (i.e. what is implemented).
 */
#include "../accounts/acc_int.h"
#include "../events/events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const hs_versions[] = {
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
    "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12",
};

/* The /versions body, serialised once (clients poll it; it only changes
 * when a part sets an unstable flag).  malloc'd; reachable until replaced. */
static char *hs_versions_body;

int hs_versions_set_unstable(const char *flag, bool enabled)
{
    if (!hs_acc || !hs_acc->unstable || !flag)
        return -EINVAL;
    free(hs_versions_body);
    hs_versions_body = NULL;
    return json_object_set_new(hs_acc->unstable, flag, json_boolean(enabled)) ? -ENOMEM : 0;
}

static int hs_get_versions(mx_req_t *req, void *ud)
{
    (void)ud;
    if (!hs_versions_body) {
        json_t *v = json_array();
        for (size_t i = 0; i < sizeof(hs_versions) / sizeof(hs_versions[0]); i++)
            json_array_append_new(v, json_string(hs_versions[i]));
        json_t *uf = hs_acc && hs_acc->unstable ? json_deep_copy(hs_acc->unstable) : json_object();
        json_t *body = json_pack("{s:o, s:o}", "versions", v, "unstable_features", uf);
        hs_versions_body = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!hs_versions_body) {
            mx_req_error(req, 500, "M_UNKNOWN", "out of memory");
            return MX_DONE;
        }
    }
    mx_req_reply(req, 200, "application/json", hs_versions_body, strlen(hs_versions_body));
    return MX_DONE;
}

static void hs_capabilities_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)who;
    (void)ud;
    const char *def = mx_server_conf()->default_room_version;
    if (!def || !*def)
        def = "10";
    /* Every room version of the event library's table is stable. */
    json_t *avail = json_object();
    size_t nrv = 0;
    const hs_room_version_t *const *rvs = hs_room_versions(&nrv);
    for (size_t i = 0; i < nrv; i++)
        if (rvs[i]->supported)
            json_object_set_new(avail, rvs[i]->id, json_string("stable"));
    json_t *caps = json_pack(
        "{s:{s:b}, s:{s:s, s:o}, s:{s:b}, s:{s:b}, s:{s:b}}",
        "m.change_password", "enabled", 1,
        "m.room_versions", "default", def, "available", avail,
        "m.set_displayname", "enabled", 1,
        "m.set_avatar_url", "enabled", 1,
        "m.3pid_changes", "enabled", 0);
    mx_req_reply_json(req, 200, json_pack("{s:o}", "capabilities", caps));
}

static int hs_get_capabilities(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth_ex(req, true, hs_capabilities_authed, NULL);
}

int hs_versions_register(void)
{
    int rc;
    if ((rc = mx_route_add("client", "GET", "/_matrix/client/versions", hs_get_versions, NULL,
                           0)) < 0)
        return rc;
    return acc_route_v3_r0("GET", "/capabilities", hs_get_capabilities, 0);
}
