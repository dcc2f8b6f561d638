/*
 * homeserver.c: the homeserver module's descriptor: its config table, and
 * init/start/stop/fini that hand over to the parts (accounts, rooms, sync,
 * client).  See README.md for the map of the module.
 */
#include "hs.h"
#include "client/client.h"
#include "push/push.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

MX_MODULE_API_DEFINE;

hs_ctx_t hs;

/* The `homeserver:` section.  Synapse keeps these at the top level; the
 * names match Synapse's where it has one (rc_message.per_second becomes
 * rc_message_per_second here). */
static const mx_conf_item_t hs_conf_items[] = {
    MX_CONF_INT("rc_message_per_second", hs_conf_t, rc_message_per_second, "10"),
    MX_CONF_INT("rc_message_burst", hs_conf_t, rc_message_burst, "50"),
    MX_CONF_INT("rc_login_per_second", hs_conf_t, rc_login_per_second, "3"),
    MX_CONF_INT("rc_login_burst", hs_conf_t, rc_login_burst, "10"),
    MX_CONF_INT("rc_registration_per_second", hs_conf_t, rc_registration_per_second, "3"),
    MX_CONF_INT("rc_registration_burst", hs_conf_t, rc_registration_burst, "10"),
    MX_CONF_BOOL("allow_guest_access", hs_conf_t, allow_guest_access, "false"),
    MX_CONF_BOOL("enable_registration_without_verification", hs_conf_t,
                 enable_registration_without_verification, "true"),
    MX_CONF_DURATION("access_token_lifetime", hs_conf_t, access_token_lifetime_ms, "0"),
    MX_CONF_BOOL("refresh_tokens", hs_conf_t, refresh_tokens, "true"),
    MX_CONF_INT("argon2_opslimit", hs_conf_t, argon2_opslimit, "2"),
    MX_CONF_INT("argon2_memlimit_kib", hs_conf_t, argon2_memlimit_kib, "19456"),
    MX_CONF_INT("max_event_size", hs_conf_t, max_event_size, "65536"),
    MX_CONF_BOOL("enable_ephemeral_messages", hs_conf_t, enable_ephemeral_messages, "false"),
    MX_CONF_BOOL("enable_registration_captcha", hs_conf_t, enable_registration_captcha, "false"),
    MX_CONF_STR("recaptcha_public_key", hs_conf_t, recaptcha_public_key, NULL),
    MX_CONF_STR("recaptcha_private_key", hs_conf_t, recaptcha_private_key, NULL),
    MX_CONF_STR("recaptcha_siteverify_api", hs_conf_t, recaptcha_siteverify_api,
                "https://www.recaptcha.net/recaptcha/api/siteverify"),
    MX_CONF_END,
};

static int hs_init(void *conf, char *err, size_t errlen)
{
    memset(&hs, 0, sizeof(hs));
    hs.conf = *(const hs_conf_t *)conf;
    if (hs.conf.argon2_opslimit < 1 || hs.conf.argon2_memlimit_kib < 8) {
        snprintf(err, errlen, "homeserver: argon2_opslimit must be >= 1 and argon2_memlimit_kib >= 8");
        return -EINVAL;
    }
    if (hs.conf.enable_registration_captcha &&
        !(hs.conf.recaptcha_public_key && *hs.conf.recaptcha_public_key &&
          hs.conf.recaptcha_private_key && *hs.conf.recaptcha_private_key)) {
        snprintf(err, errlen, "homeserver: enable_registration_captcha needs"
                              " recaptcha_public_key and recaptcha_private_key");
        return -EINVAL;
    }
    return 0;
}

static int hs_start(char *err, size_t errlen)
{
    hs.server_name = mx_server_conf()->server_name;
    hs.db = mx_db_get("homeserver");
    if (!hs.db) {
        snprintf(err, errlen, "no database");
        return -EINVAL;
    }
    int rc;
    if ((rc = hs_accounts_start(err, errlen)) || (rc = hs_rooms_start(err, errlen)) ||
        (rc = hs_sync_start(err, errlen)) || (rc = hs_client_start(err, errlen)) ||
        (rc = hs_media_start(err, errlen)) || (rc = hs_push_start(err, errlen)) ||
        (rc = hs_e2ee_start(err, errlen)) || (rc = hs_relations_start(err, errlen)))
        return rc;
    if ((rc = hs_admin_service_start(err, errlen)))
        return rc;
    return 0;
}

static void hs_stop(void (*done)(const char *module))
{
    hs_sync_stop();
    hs_client_stop();
    hs_push_stop();
    hs_rooms_stop();
    done("homeserver");
}

static void hs_fini(void)
{
    memset(&hs, 0, sizeof(hs));
}

__attribute__((visibility("default"))) const mx_module_t mx_module_homeserver = {
    MX_MODULE_HEADER("homeserver"),
    MX_MODULE_API_SLOT,
    .conf = hs_conf_items,
    .conf_size = sizeof(hs_conf_t),
    .init = hs_init,
    .start = hs_start,
    .stop = hs_stop,
    .fini = hs_fini,
};
