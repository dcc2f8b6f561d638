/*
 * auth.c: the auth module's descriptor, its config table and lifecycle.
 *
 * The module is the OAuth 2.0 / OpenID Connect provider of the stack (what
 * MAS is in ESS).  init checks the config and, when the homeserver
 * delegates to us, registers the `auth.token` service (before the
 * homeserver's start looks for one); start opens what needs I/O (tables,
 * keys, cookie key, page templates) and adds the routes.  README.md lists
 * the keys and routes.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

MX_MODULE_API_DEFINE;

au_state_t au;

static const mx_conf_item_t au_conf_items[] = {
    MX_CONF_STR("issuer", au_conf_t, issuer, NULL),
    MX_CONF_STR("public_base", au_conf_t, public_base, NULL),
    MX_CONF_BOOL("delegate_homeserver", au_conf_t, delegate_homeserver, "false"),
    MX_CONF_DURATION("access_token_ttl", au_conf_t, access_token_ttl_ms, "5m"),
    MX_CONF_DURATION("code_ttl", au_conf_t, code_ttl_ms, "10m"),
    MX_CONF_DURATION("grant_ttl", au_conf_t, grant_ttl_ms, "30m"),
    MX_CONF_DURATION("session_ttl", au_conf_t, session_ttl_ms, "7d"),
    MX_CONF_DURATION("id_token_ttl", au_conf_t, id_token_ttl_ms, "1h"),
    MX_CONF_STR("rsa_key_path", au_conf_t, rsa_key_path, NULL),
    MX_CONF_STR("ec_key_path", au_conf_t, ec_key_path, NULL),
    MX_CONF_STR("cookie_key_path", au_conf_t, cookie_key_path, NULL),
    MX_CONF_STR("templates_path", au_conf_t, templates_path, NULL),
    MX_CONF_STR("service_name", au_conf_t, service_name, NULL),
    MX_CONF_BOOL("password_registration_enabled", au_conf_t, password_registration_enabled,
                 "false"),
    MX_CONF_INT("token_cache_max", au_conf_t, token_cache_max, "100000"),
    MX_CONF_JSON("signing_keys", au_conf_t, signing_keys),
    MX_CONF_JSON("account", au_conf_t, account),
    MX_CONF_JSON("rate_limit", au_conf_t, rate_limit),
    MX_CONF_BOOL("device_code_grant_enabled", au_conf_t, device_code_grant_enabled, "true"),
    MX_CONF_DURATION("device_code_ttl", au_conf_t, device_code_ttl_ms, "10m"),
    MX_CONF_JSON("clients", au_conf_t, clients),
    MX_CONF_JSON("policy", au_conf_t, policy),
    MX_CONF_JSON("upstream_oauth2", au_conf_t, upstream_oauth2),
    MX_CONF_JSON("rc_login", au_conf_t, rc_login),
    MX_CONF_STR("email.from", au_conf_t, email_from, NULL),
    MX_CONF_STR("email.reply_to", au_conf_t, email_reply_to, NULL),
    MX_CONF_STR("email.transport", au_conf_t, email_transport, "blackhole"),
    MX_CONF_STR("email.mode", au_conf_t, email_mode, NULL),
    MX_CONF_STR("email.hostname", au_conf_t, email_hostname, NULL),
    MX_CONF_INT("email.port", au_conf_t, email_port, "0"),
    MX_CONF_STR("email.username", au_conf_t, email_username, NULL),
    MX_CONF_SECRET("email.password", au_conf_t, email_password, NULL),
    MX_CONF_STR("email.ca_file", au_conf_t, email_ca_file, NULL),
    MX_CONF_STR("email.command", au_conf_t, email_command, NULL),
    MX_CONF_DURATION("email.timeout", au_conf_t, email_timeout_ms, "30s"),
    MX_CONF_END,
};

static char *au_with_slash(const char *u)
{
    size_t n = strlen(u);
    char *o = malloc(n + 2);
    if (o)
        snprintf(o, n + 2, "%s%s", u, n && u[n - 1] == '/' ? "" : "/");
    return o;
}

static int au_init(void *conf, char *err, size_t errlen)
{
    au.conf = conf;
    au_conf_t *c = au.conf;
    const mx_server_conf_t *sc = mx_server_conf();
    if (c->public_base && strncmp(c->public_base, "https://", 8) &&
        strncmp(c->public_base, "http://", 7)) {
        snprintf(err, errlen, "auth.public_base must start with http:// or https://");
        return -EINVAL;
    }
    if (c->access_token_ttl_ms < 1000 || c->code_ttl_ms < 1000 || c->grant_ttl_ms < 1000 ||
        c->session_ttl_ms < 1000 || c->id_token_ttl_ms < 1000) {
        snprintf(err, errlen, "auth: token and session lifetimes must be at least 1s");
        return -EINVAL;
    }
    if (c->token_cache_max < 1) {
        snprintf(err, errlen, "auth.token_cache_max must be positive");
        return -EINVAL;
    }
    au.base = au_with_slash(c->public_base ? c->public_base : sc->public_baseurl);
    au.issuer = strdup(c->issuer ? c->issuer : au.base);
    if (!au.base || !au.issuer)
        return -ENOMEM;
    au.secure_cookies = !strncmp(au.base, "https://", 8);
    int rc;
    if ((rc = au_mail_init(err, errlen)) < 0 || (rc = au_compat_rc_init(err, errlen)) < 0)
        return rc;
    /* Registered now, before the homeserver's start looks for a provider. */
    rc = au_compat_register();
    if (rc < 0)
        snprintf(err, errlen, "auth: cannot register the auth.token service (%d)", rc);
    return rc;
}

/* The cookie/CSRF key: the data dir's cookie_key (init-secrets makes it),
 * created here when missing. */
static int au_cookie_key(char *err, size_t errlen)
{
    const char *dir = mx_server_conf()->data_dir;
    char path[4096];
    if (au.conf->cookie_key_path)
        snprintf(path, sizeof(path), "%s", au.conf->cookie_key_path);
    else
        snprintf(path, sizeof(path), "%s/cookie_key", dir ? dir : ".");
    if (access(path, F_OK) != 0) {
        char *s = mx_random_string(48);
        int fd = s ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
        if (fd >= 0) {
            ssize_t w = write(fd, s, strlen(s));
            if (w != (ssize_t)strlen(s) || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
                close(fd);
                free(s);
                snprintf(err, errlen, "auth: cannot write %s", path);
                return -EIO;
            }
            close(fd);
        }
        free(s);
    }
    FILE *f = fopen(path, "rb");
    char buf[512];
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    if (n < 16) {
        snprintf(err, errlen, "auth: cookie key %s is missing or shorter than 16 bytes", path);
        return -EINVAL;
    }
    mx_sha256(buf, n, au.cookie_key);
    memset(buf, 0, sizeof(buf));
    return 0;
}

static int au_start(char *err, size_t errlen)
{
    au.db = mx_db_get("auth");
    if (!au.db) {
        snprintf(err, errlen, "auth: no database");
        return -EINVAL;
    }
    /* With a config file nobody may have created the data directory yet
     * (zero-config and init-secrets do); our keys live there. */
    const char *dir = mx_server_conf()->data_dir;
    if (dir && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "auth: cannot create the data directory %s: %s", dir,
                 strerror(errno));
        return -errno;
    }
    int rc;
    if ((rc = au_schema_migrate(err, errlen)) < 0 || (rc = au_flows_migrate(err, errlen)) < 0 ||
        (rc = au_flows_init(err, errlen)) < 0 || (rc = au_cookie_key(err, errlen)) < 0 ||
        (rc = au_keys_init(err, errlen)) < 0 || (rc = au_pages_init(err, errlen)) < 0)
        return rc;
    if ((rc = au_cache_init()) < 0 || (rc = au_discovery_build()) < 0) {
        snprintf(err, errlen, "auth: out of memory");
        return rc;
    }
    if ((rc = au_discovery_routes()) < 0 || (rc = au_clients_routes()) < 0 ||
        (rc = au_authorize_routes()) < 0 || (rc = au_session_routes()) < 0 ||
        (rc = au_token_routes()) < 0 || (rc = au_introspect_routes()) < 0 ||
        (rc = au_compat_routes()) < 0 || (rc = au_pages_routes()) < 0 ||
        (rc = au_device_routes()) < 0 || (rc = au_end_session_routes()) < 0 ||
        (rc = au_account_routes()) < 0) {
        snprintf(err, errlen, "auth: cannot add routes (%d)", rc);
        return rc;
    }
    if ((rc = au_admin_start(err, errlen)) < 0)
        return rc;
    if ((rc = au_upstream_start(err, errlen)) < 0)
        return rc;
    au.m_logins = mx_metrics_counter("mxstack_auth_logins_total", "Browser logins", NULL);
    au.m_tokens = mx_metrics_counter("mxstack_auth_tokens_issued_total",
                                     "Token endpoint successes", NULL);
    au.m_validations = mx_metrics_counter("mxstack_auth_token_validations_total",
                                          "OAuth access tokens checked for the homeserver", NULL);
    mx_log(AU_LOG, MX_LOG_INFO, "issuer %s%s", au.issuer,
           au.conf->delegate_homeserver ? " (homeserver delegates to it)" : "");
    return 0;
}

static void au_stop(void (*done)(const char *module))
{
    done("auth");
}

static void au_fini(void)
{
    au_cache_fini();
    au_compat_fini();
    au_flows_fini();
    au_pages_fini();
    au_keys_fini();
    au_upstream_fini();
    au_mail_fini();
    au_compat_rc_fini();
    json_decref(au.discovery);
    free(au.base);
    free(au.issuer);
    free(au.account_url);
    free(au.hs_secret);
    memset(&au, 0, sizeof(au));
}

__attribute__((visibility("default"))) const mx_module_t mx_module_auth = {
    MX_MODULE_HEADER("auth"),
    MX_MODULE_API_SLOT,
    .conf = au_conf_items,
    .conf_size = sizeof(au_conf_t),
    .init = au_init,
    .start = au_start,
    .stop = au_stop,
    .fini = au_fini,
    .manage = au_manage_cmds,
};
