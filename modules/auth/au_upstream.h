/*
 * au_upstream.h: what the upstream OIDC provider files share
 * (au_upstream.c: config, discovery, the login round trip, links;
 * au_upstream_jwt.c: id_token signature checks against a JWKS).
 */
#ifndef AU_UPSTREAM_H
#define AU_UPSTREAM_H

#include "auth.h"

/* Verifies the signature of compact JWS `jws` (RS256 or ES256) with the
 * keys of `jwks` ({"keys": [...]}, borrowed).  Returns the claims (new
 * reference) or NULL with *why set (static text). */
json_t *au_up_jwt_verify(const char *jws, const json_t *jwks, const char **why);

/* The configured providers [{id, issuer, human_name}] (new reference). */
json_t *au_upstream_providers(void);
/* /api/admin/v1/upstream-oauth-links and -providers (au_upstream_admin.c). */
int au_upstream_admin_routes(void);

#endif /* AU_UPSTREAM_H */
