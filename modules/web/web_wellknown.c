/*
 * web_wellknown.c: /.well-known/matrix/{client,server,support}, the three
 * documents ESS's HAProxy answers on the server-name host, built once at
 * start from our config and served from memory on resources "client" and
 * "web" (CORS comes from the core for /.well-known).
 *
 *   client   m.homeserver.base_url = public_baseurl (Synapse keeps the
 *            trailing '/'); m.identity_server when configured;
 *            org.matrix.msc4143.rtc_foci when the rtc section exists;
 *            org.matrix.msc2965.authentication {issuer, account} when the
 *            auth section exists; web.client_wellknown_extra (and Synapse's
 *            extra_well_known_client_content) merged last.
 *   server   {"m.server": web.server_delegation}, else Synapse's
 *            serve_server_wellknown answer: server_name's host with its
 *            explicit port, else 443 (whoever serves https://server_name/
 *            serves federation there too).  404 when
 *            web.serve_server_wellknown is false.
 *   support  MSC1929 {contacts, support_page}; 404 when neither is set
 *            (as Synapse does).
 */
#include "web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const wk_cache = "public, max-age=3600";

static int set_json(web_doc_t *doc, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(v);
    int rc = s ? web_doc_set(doc, s, strlen(s)) : -ENOMEM;
    free(s);
    return rc;
}

/* "https://host:port/" for a URL given without its path, or the URL as
 * it is. */
static json_t *rtc_foci(void)
{
    if (web.conf->rtc_foci)
        return json_deep_copy(web.conf->rtc_foci);
    const json_t *rtc = web_root_conf("rtc");
    const char *url = json_string_value(json_object_get(rtc, "livekit_service_url"));
    if (!url)
        url = json_string_value(json_object_get(rtc, "public_url"));
    json_t *u;
    if (url) {
        u = json_string(url);
    } else {
        /* The rtc module on this host: the public base without its '/'. */
        const char *b = mx_server_conf()->public_baseurl;
        size_t n = strlen(b);
        while (n > 1 && b[n - 1] == '/')
            n--;
        u = json_stringn(b, n);
    }
    return json_pack("[{s:s, s:o}]", "type", "livekit", "livekit_service_url", u);
}

static json_t *client_doc(void)
{
    const mx_server_conf_t *sc = mx_server_conf();
    json_t *o = json_pack("{s:{s:s}}", "m.homeserver", "base_url", sc->public_baseurl);
    if (!o)
        return NULL;
    const char *is = web.conf->identity_server
                         ? web.conf->identity_server
                         : json_string_value(web_root_conf("default_identity_server"));
    if (is)
        json_object_set_new(o, "m.identity_server", json_pack("{s:s}", "base_url", is));
    if (web.has_rtc || web.conf->rtc_foci)
        json_object_set_new(o, "org.matrix.msc4143.rtc_foci", rtc_foci());
    if (web.has_auth) {
        const json_t *auth = web_root_conf("auth");
        const char *issuer = json_string_value(json_object_get(auth, "issuer"));
        if (!issuer)
            issuer = json_string_value(json_object_get(auth, "public_base"));
        if (!issuer)
            issuer = sc->public_baseurl;
        json_t *a = json_pack("{s:s}", "issuer", issuer);
        if (a && web.account_url)
            json_object_set_new(a, "account", json_string(web.account_url));
        json_object_set_new(o, "org.matrix.msc2965.authentication", a);
    }
    const json_t *syn = web_root_conf("extra_well_known_client_content");
    if (json_is_object(syn))
        json_object_update_recursive(o, (json_t *)syn);
    if (web.conf->client_wellknown_extra)
        json_object_update_recursive(o, web.conf->client_wellknown_extra);
    return o;
}

static json_t *server_doc(void)
{
    if (web.conf->server_delegation)
        return json_pack("{s:s}", "m.server", web.conf->server_delegation);
    const char *sn = mx_server_conf()->server_name;
    /* An explicit port stays; an IPv6 literal keeps its brackets. */
    const char *close = sn[0] == '[' ? strchr(sn, ']') : NULL;
    const char *colon = strrchr(close ? close : sn, ':');
    char buf[600];
    if (colon)
        snprintf(buf, sizeof(buf), "%s", sn);
    else
        snprintf(buf, sizeof(buf), "%s:443", sn);
    return json_pack("{s:s}", "m.server", buf);
}

static json_t *support_doc(void)
{
    const web_conf_t *c = web.conf;
    if (!c->support_page && (!c->support_contacts || !json_array_size(c->support_contacts)))
        return NULL;
    json_t *o = json_object();
    if (c->support_contacts)
        json_object_set_new(o, "contacts", json_deep_copy(c->support_contacts));
    if (c->support_page)
        json_object_set_new(o, "support_page", json_string(c->support_page));
    return o;
}

int web_wellknown_build(char *err, size_t errlen)
{
    int rc = set_json(&web.wk_client, client_doc());
    if (rc == 0 && web.conf->serve_server_wellknown)
        rc = set_json(&web.wk_server, server_doc());
    json_t *sup = support_doc();
    if (rc == 0 && sup)
        rc = set_json(&web.wk_support, sup);
    if (rc < 0)
        snprintf(err, errlen, "cannot build the well-known documents");
    return rc;
}

static int wk_handler(mx_req_t *req, void *ud)
{
    const web_doc_t *doc = ud;
    if (!doc->body) {
        web_security_headers(req);
        mx_req_error(req, 404, "M_NOT_FOUND", "No such document");
        return MX_DONE;
    }
    web_reply_doc(req, doc, "application/json", wk_cache);
    return MX_DONE;
}

int web_wellknown_routes(void)
{
    static const char *const res[] = { "client", "web" };
    const struct { const char *path; web_doc_t *doc; } docs[] = {
        { "/.well-known/matrix/client", &web.wk_client },
        { "/.well-known/matrix/server", &web.wk_server },
        { "/.well-known/matrix/support", &web.wk_support },
    };
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < sizeof(docs) / sizeof(*docs); k++) {
            int rc = mx_route_add(res[i], "GET", docs[k].path, wk_handler, docs[k].doc, 0);
            if (rc < 0)
                return rc;
        }
    return 0;
}
