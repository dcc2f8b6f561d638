/*
 * web_config_json.c: Element Web's config.json, generated from our config
 * the way ESS's chart templates it (configs/element-web/config.json.tpl):
 * the homeserver this process is, brand and theme, guests, registration,
 * the auth-module switches (login through the OIDC provider), Element Call
 * when RTC is on, then `web.extra_config` deep-merged last so any key of
 * Element Web's config can be set.  Built once at start; served for
 * /config.json and every /config.<hostname>.json (Element Web asks for
 * the latter first).
 */
#include "web.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* public_baseurl without its trailing '/', as ESS writes base_url. */
static json_t *base_url_value(void)
{
    const char *b = mx_server_conf()->public_baseurl;
    size_t n = strlen(b);
    while (n > 1 && b[n - 1] == '/')
        n--;
    return json_stringn(b, n);
}

static int registration_enabled(void)
{
    if (web.has_auth)
        return 0;   /* the auth module's own pages handle sign-up */
    return mx_server_conf()->enable_registration;
}

json_t *web_config_json_build(void)
{
    const mx_server_conf_t *sc = mx_server_conf();
    const web_conf_t *c = web.conf;
    json_t *cfg = json_object();
    json_t *dsc = json_object();
    json_t *hs = json_object();
    json_t *settings = json_object();
    if (!cfg || !dsc || !hs || !settings) {
        json_decref(cfg);
        json_decref(dsc);
        json_decref(hs);
        json_decref(settings);
        return NULL;
    }
    json_object_set_new(hs, "base_url", base_url_value());
    json_object_set_new(hs, "server_name", json_string(sc->server_name));
    json_object_set_new(dsc, "m.homeserver", hs);
    const char *is = c->identity_server
                         ? c->identity_server
                         : json_string_value(web_root_conf("default_identity_server"));
    if (is)
        json_object_set_new(dsc, "m.identity_server", json_pack("{s:s}", "base_url", is));
    json_object_set_new(cfg, "default_server_config", dsc);
    if (c->brand)
        json_object_set_new(cfg, "brand", json_string(c->brand));
    if (c->default_theme)
        json_object_set_new(cfg, "default_theme", json_string(c->default_theme));
    json_object_set_new(cfg, "disable_guests", json_boolean(!web_guest_access()));
    json_object_set_new(cfg, "disable_custom_urls", json_boolean(c->disable_custom_urls));
    json_object_set_new(cfg, "room_directory",
                        json_pack("{s:[s]}", "servers", sc->server_name));

    json_object_set_new(settings, "urlPreviewsEnabled", json_true());
    if (!registration_enabled())
        json_object_set_new(settings, "UIFeature.registration", json_false());
    if (web.has_auth) {
        /* As ESS does with MAS: accounts are managed on the auth pages. */
        json_object_set_new(settings, "UIFeature.passwordReset", json_false());
        json_object_set_new(settings, "UIFeature.deactivate", json_false());
        json_object_set_new(cfg, "embedded_pages", json_pack("{s:b}", "login_for_welcome", 1));
        json_object_set_new(cfg, "sso_redirect_options", json_pack("{s:b}", "immediate", 0));
    }
    if (c->setting_defaults)
        json_object_update_recursive(settings, c->setting_defaults);
    json_object_set_new(cfg, "setting_defaults", settings);

    if (web.has_rtc || c->element_call_url) {
        json_t *ec = json_object();
        if (c->element_call_url)
            json_object_set_new(ec, "url", json_string(c->element_call_url));
        json_object_set_new(ec, "use_exclusively", json_boolean(c->element_call_exclusive));
        json_object_set_new(cfg, "element_call", ec);
        json_object_set_new(cfg, "features",
                            json_pack("{s:b, s:b, s:b}", "feature_video_rooms", 1,
                                      "feature_new_room_decoration_ui", 1,
                                      "feature_element_call_video_rooms", 1));
    }
    if (c->extra_config)
        json_object_update_recursive(cfg, c->extra_config);
    return cfg;
}

int web_config_json_start(char *err, size_t errlen)
{
    json_t *cfg = web_config_json_build();
    char *s = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(cfg);
    int rc = s ? web_doc_set(&web.config_json, s, strlen(s)) : -ENOMEM;
    free(s);
    if (rc < 0)
        snprintf(err, errlen, "cannot build config.json");
    return rc;
}
