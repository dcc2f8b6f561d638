/*
 * web.c: the web module's descriptor, its config table and lifecycle.
 * The module stands in for the static parts of the ESS ingress: Element
 * Web (the nginx container), its generated config.json, and the
 * well-known documents (HAProxy's well-known frontend).  See README.md for
 * the keys and routes; web.h for the files.
 */
#include "web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

MX_MODULE_API_DEFINE;

web_state_t web;

static const mx_conf_item_t web_conf_items[] = {
    MX_CONF_STR("element_web_path", web_conf_t, element_web_path, NULL),
    MX_CONF_STR("landing_path", web_conf_t, landing_path, NULL),
    MX_CONF_STR("brand", web_conf_t, brand, "Element"),
    MX_CONF_STR("default_theme", web_conf_t, default_theme, "light"),
    MX_CONF_STR("element_call_url", web_conf_t, element_call_url, NULL),
    MX_CONF_BOOL("element_call_exclusive", web_conf_t, element_call_exclusive, "true"),
    MX_CONF_STR("identity_server", web_conf_t, identity_server, NULL),
    MX_CONF_BOOL("disable_custom_urls", web_conf_t, disable_custom_urls, "false"),
    MX_CONF_JSON("setting_defaults", web_conf_t, setting_defaults),
    MX_CONF_JSON("extra_config", web_conf_t, extra_config),
    MX_CONF_STR("account_url", web_conf_t, account_url, NULL),
    MX_CONF_STR("admin_url", web_conf_t, admin_url, NULL),
    MX_CONF_BOOL("serve_server_wellknown", web_conf_t, serve_server_wellknown, "true"),
    MX_CONF_STR("server_delegation", web_conf_t, server_delegation, NULL),
    MX_CONF_JSON("client_wellknown_extra", web_conf_t, client_wellknown_extra),
    MX_CONF_JSON("rtc_foci", web_conf_t, rtc_foci),
    MX_CONF_STR("support_page", web_conf_t, support_page, NULL),
    MX_CONF_JSON("support_contacts", web_conf_t, support_contacts),
    MX_CONF_STR("content_security_policy", web_conf_t, content_security_policy,
                "\"frame-ancestors 'self'\""),
    MX_CONF_BOOL("noindex", web_conf_t, noindex, "true"),
    MX_CONF_BOOL("spa_fallback", web_conf_t, spa_fallback, "true"),
    MX_CONF_SIZE("max_file_size", web_conf_t, max_file_size, "256M"),
    MX_CONF_END,
};

const json_t *web_root_conf(const char *section)
{
    const mx_server_conf_t *sc = mx_server_conf();
    return sc && sc->root ? json_object_get(sc->root, section) : NULL;
}

int web_guest_access(void)
{
    /* The homeserver module's key, or Synapse's top-level one. */
    const json_t *hs = web_root_conf("homeserver");
    const json_t *v = json_object_get(hs, "allow_guest_access");
    if (!v)
        v = web_root_conf("allow_guest_access");
    return json_is_true(v);
}

/* The account page: configured, else the auth module's (its `issuer` or
 * `public_base` + "account/"), else none. */
static char *resolve_account_url(void)
{
    if (web.conf->account_url)
        return strdup(web.conf->account_url);
    const json_t *auth = web_root_conf("auth");
    if (!json_is_object(auth))
        return NULL;
    const char *u = json_string_value(json_object_get(auth, "account_url"));
    if (u)
        return strdup(u);
    const char *base = json_string_value(json_object_get(auth, "issuer"));
    if (!base)
        base = json_string_value(json_object_get(auth, "public_base"));
    if (!base)
        base = mx_server_conf()->public_baseurl;
    size_t n = strlen(base);
    char *out = malloc(n + 10);
    if (out)
        snprintf(out, n + 10, "%s%saccount/", base, n && base[n - 1] == '/' ? "" : "/");
    return out;
}

static int web_init(void *conf, char *err, size_t errlen)
{
    web.conf = conf;
    web.element.fd = web.landing.fd = -1;
    const web_conf_t *c = web.conf;
    if (c->default_theme && strcmp(c->default_theme, "light") && strcmp(c->default_theme, "dark")) {
        snprintf(err, errlen, "web.default_theme must be light or dark");
        return -EINVAL;
    }
    const json_t *checks[][2] = {
        { c->setting_defaults, (const json_t *)"setting_defaults" },
        { c->extra_config, (const json_t *)"extra_config" },
        { c->client_wellknown_extra, (const json_t *)"client_wellknown_extra" },
    };
    for (size_t i = 0; i < sizeof(checks) / sizeof(*checks); i++) {
        if (checks[i][0] && !json_is_object(checks[i][0])) {
            snprintf(err, errlen, "web.%s must be a mapping", (const char *)checks[i][1]);
            return -EINVAL;
        }
    }
    if (c->rtc_foci && !json_is_array(c->rtc_foci)) {
        snprintf(err, errlen, "web.rtc_foci must be a list");
        return -EINVAL;
    }
    if (c->support_contacts && !json_is_array(c->support_contacts)) {
        snprintf(err, errlen, "web.support_contacts must be a list");
        return -EINVAL;
    }
    if (c->max_file_size < 1) {
        snprintf(err, errlen, "web.max_file_size must be positive");
        return -EINVAL;
    }
    web.has_auth = json_is_object(web_root_conf("auth"));
    web.has_rtc = json_is_object(web_root_conf("rtc"));
    return 0;
}

static int web_start(char *err, size_t errlen)
{
    const mx_server_conf_t *sc = mx_server_conf();
    char *ew;
    if (web.conf->element_web_path) {
        ew = strdup(web.conf->element_web_path);
    } else {
        size_t n = strlen(sc->data_dir) + sizeof("/element-web");
        if ((ew = malloc(n)))
            snprintf(ew, n, "%s/element-web", sc->data_dir);
    }
    char *land = mx_share_dir(web.conf->landing_path, "web/landing");
    web.account_url = resolve_account_url();
    web.admin_url = strdup(web.conf->admin_url ? web.conf->admin_url : "/admin/");
    if (!ew || !land || !web.admin_url) {
        free(ew);
        free(land);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* A missing directory is not an error: the landing page stands in for
     * Element Web until it is unpacked (checked again while running). */
    int rc = web_root_open(&web.element, ew);
    if (rc < 0 && rc != -ENOENT)
        mx_log(WEB_MOD, MX_LOG_WARN, "element_web_path %s: %s", ew, strerror(-rc));
    if (web_root_open(&web.landing, land) < 0)
        mx_log(WEB_MOD, MX_LOG_WARN, "landing page %s not found", land);
    free(ew);
    free(land);
    if ((rc = web_config_json_start(err, errlen)) < 0 || (rc = web_landing_build(err, errlen)) < 0 ||
        (rc = web_wellknown_build(err, errlen)) < 0)
        return rc;
    if ((rc = web_wellknown_routes()) < 0 ||
        (rc = mx_route_add("web", "GET", "/{path*}", web_static_handler, NULL, MX_ROUTE_NO_CORS)) <
            0) {
        snprintf(err, errlen, "cannot register routes");
        return rc;
    }
    mx_log(WEB_MOD, MX_LOG_INFO, "serving %s%s", web.element.path ? web.element.path : "?",
           web.element.fd < 0 ? " (not installed yet: landing page)" : "");
    return 0;
}

static void web_stop(void (*done)(const char *module))
{
    done(WEB_MOD);
}

static void web_fini(void)
{
    web_cache_free();
    web_root_close(&web.element);
    web_root_close(&web.landing);
    web_doc_free(&web.config_json);
    web_doc_free(&web.landing_html);
    web_doc_free(&web.wk_client);
    web_doc_free(&web.wk_server);
    web_doc_free(&web.wk_support);
    free(web.account_url);
    free(web.admin_url);
    memset(&web, 0, sizeof(web));
}

__attribute__((visibility("default"))) const mx_module_t mx_module_web = {
    MX_MODULE_HEADER("web"),
    MX_MODULE_API_SLOT,
    .conf = web_conf_items,
    .conf_size = sizeof(web_conf_t),
    .init = web_init,
    .start = web_start,
    .stop = web_stop,
    .fini = web_fini,
};
