/*
 * au_oidc_discovery.c: how clients find the provider.
 *
 *   GET /.well-known/openid-configuration         (resource "auth")
 *   GET /oauth2/keys.json                          JWKS (au_jwks.c)
 * and, only when the homeserver delegates to this module (MSC2965 / spec
 * v1.15 "OAuth 2.0 API"), on resource "client":
 *   GET /_matrix/client/v1/auth_metadata
 *   GET /_matrix/client/unstable/org.matrix.msc2965/auth_metadata
 *   GET /_matrix/client/unstable/org.matrix.msc2965/auth_issuer  {"issuer"}
 * Without delegation those paths stay unknown, so the core answers 404
 * M_UNRECOGNIZED and clients fall back to the legacy /login.
 *
 * The document is built once at start (endpoints are fixed by config); it
 * names the device authorization endpoint (au_device_code.c), the
 * end_session_endpoint (au_end_session.c) and the account management URI
 * with its MSC4191 actions (au_account.c).
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static json_t *au_strs(const char *const *v)
{
    json_t *a = json_array();
    for (; a && *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static json_t *au_url(const char *tail)
{
    char buf[2048];
    snprintf(buf, sizeof(buf), "%s%s", au.base, tail);
    return json_string(buf);
}

int au_discovery_build(void)
{
    static const char *const scopes[] = { "openid", AU_SCOPE_API, AU_SCOPE_API_UNSTABLE,
                                          AU_SCOPE_SYNAPSE_ADMIN, "urn:mas:admin", NULL };
    static const char *const rtypes[] = { "code", NULL };
    static const char *const rmodes[] = { "query", "fragment", NULL };
    static const char *const grants[] = { "authorization_code", "refresh_token",
                                          "client_credentials", AU_GRANT_DEVICE_CODE, NULL };
    static const char *const actions[] = { "org.matrix.profile", "org.matrix.sessions_list",
                                           "org.matrix.session_view", "org.matrix.session_end",
                                           "org.matrix.devices_list", "org.matrix.device_view",
                                           "org.matrix.device_delete",
                                           "org.matrix.cross_signing_reset", NULL };
    static const char *const methods[] = { "client_secret_basic", "client_secret_post", "none",
                                           NULL };
    static const char *const pkce[] = { "S256", NULL };
    static const char *const subjects[] = { "public", NULL };
    static const char *const claims[] = { "iss", "sub", "aud", "iat", "exp", "nonce",
                                          "auth_time", "at_hash", NULL };
    static const char *const display[] = { "page", NULL };
    static const char *const ctypes[] = { "normal", NULL };
    json_t *d = json_object();
    if (!d)
        return -ENOMEM;
    json_object_set_new(d, "issuer", json_string(au.issuer));
    json_object_set_new(d, "authorization_endpoint", au_url("authorize"));
    json_object_set_new(d, "token_endpoint", au_url("oauth2/token"));
    json_object_set_new(d, "jwks_uri", au_url("oauth2/keys.json"));
    json_object_set_new(d, "registration_endpoint", au_url("oauth2/registration"));
    json_object_set_new(d, "introspection_endpoint", au_url("oauth2/introspect"));
    json_object_set_new(d, "revocation_endpoint", au_url("oauth2/revoke"));
    json_object_set_new(d, "userinfo_endpoint", au_url("oauth2/userinfo"));
    json_object_set_new(d, "end_session_endpoint", au_url("end_session"));
    if (au.conf->device_code_grant_enabled)
        json_object_set_new(d, "device_authorization_endpoint", au_url("oauth2/device"));
    json_object_set_new(d, "account_management_uri", au_url("account/"));
    json_object_set_new(d, "account_management_actions_supported", au_strs(actions));
    json_object_set_new(d, "scopes_supported", au_strs(scopes));
    json_object_set_new(d, "response_types_supported", au_strs(rtypes));
    json_object_set_new(d, "response_modes_supported", au_strs(rmodes));
    json_t *gl = au_strs(grants);
    if (!au.conf->device_code_grant_enabled)
        json_array_remove(gl, json_array_size(gl) - 1);
    json_object_set_new(d, "grant_types_supported", gl);
    json_object_set_new(d, "token_endpoint_auth_methods_supported", au_strs(methods));
    json_object_set_new(d, "revocation_endpoint_auth_methods_supported", au_strs(methods));
    json_object_set_new(d, "introspection_endpoint_auth_methods_supported", au_strs(methods));
    json_object_set_new(d, "code_challenge_methods_supported", au_strs(pkce));
    json_object_set_new(d, "subject_types_supported", au_strs(subjects));
    json_object_set_new(d, "id_token_signing_alg_values_supported", au_jws_algs());
    json_object_set_new(d, "claims_supported", au_strs(claims));
    json_object_set_new(d, "display_values_supported", au_strs(display));
    json_object_set_new(d, "claim_types_supported", au_strs(ctypes));
    json_object_set_new(d, "claims_parameter_supported", json_false());
    json_object_set_new(d, "request_parameter_supported", json_false());
    json_object_set_new(d, "request_uri_parameter_supported", json_false());
    json_t *prompts = json_array();
    json_array_append_new(prompts, json_string("login"));
    json_array_append_new(prompts, json_string("none"));
    if (au.fl->registration != AU_REG_CLOSED)
        json_array_append_new(prompts, json_string("create"));
    json_object_set_new(d, "prompt_values_supported", prompts);
    json_decref(au.discovery);
    au.discovery = d;
    return 0;
}

static int au_get_discovery(mx_req_t *req, void *ud)
{
    (void)ud;
    /* /.well-known/ gets the core's CORS headers. */
    mx_req_set_header(req, "Cache-Control", "public, max-age=300");
    mx_req_reply_json(req, 200, json_deep_copy(au.discovery));
    return MX_DONE;
}

static int au_get_jwks(mx_req_t *req, void *ud)
{
    (void)ud;
    au_cors(req);
    mx_req_set_header(req, "Cache-Control", "public, max-age=300");
    mx_req_reply_json(req, 200, au_jwks());
    return MX_DONE;
}

/* On the client resource the core adds CORS itself (/_matrix paths). */
static int au_get_auth_metadata(mx_req_t *req, void *ud)
{
    (void)ud;
    mx_req_reply_json(req, 200, json_deep_copy(au.discovery));
    return MX_DONE;
}

static int au_get_auth_issuer(mx_req_t *req, void *ud)
{
    (void)ud;
    mx_req_reply_json(req, 200, json_pack("{s:s}", "issuer", au.issuer));
    return MX_DONE;
}

int au_discovery_routes(void)
{
    int rc;
    if ((rc = mx_route_add("auth", "GET", "/.well-known/openid-configuration", au_get_discovery,
                           NULL, 0)) < 0 ||
        (rc = au_route_oauth("GET", "/oauth2/keys.json", au_get_jwks, true)) < 0)
        return rc;
    if (!au.conf->delegate_homeserver)
        return 0;
    if ((rc = mx_route_add("client", "GET", "/_matrix/client/v1/auth_metadata",
                           au_get_auth_metadata, NULL, 0)) < 0 ||
        (rc = mx_route_add("client", "GET",
                           "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
                           au_get_auth_metadata, NULL, 0)) < 0 ||
        (rc = mx_route_add("client", "GET",
                           "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer",
                           au_get_auth_issuer, NULL, 0)) < 0)
        return rc;
    return 0;
}
