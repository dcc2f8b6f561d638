/*
 * serve.c: start-up, the run loop, signals and shutdown for `mxstack serve`,
 * plus the other sub-commands that need a loaded configuration
 * (check-config, manage).
 *
 * Start-up order: config (validated in full) → log → secrets and signing key
 * → storage → core services (metrics, bus, client, router) → modules (load,
 * init, start: migrations and routes) → listeners → ready.  Anything that
 * fails stops start-up before a socket is opened: a bad config never starts
 * a half-working server.
 *
 * SIGTERM/SIGINT: stop accepting, let modules stop, finish in-flight
 * requests until `http.shutdown_grace`, flush and close storage, exit 0.
 * SIGHUP: reopen the log file, reload TLS certificates.
 */
#include "core.h"
#include "cli.h"
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mx_ctx_t *mx__ctx;

typedef struct serve_state {
    uv_signal_t sig_term, sig_int, sig_hup;
    int exit_code;
    bool shutting_down;
} serve_state_t;

static serve_state_t *serve_st(void)
{
    static serve_state_t st;   /* lives as long as the process; one server per process */
    return &st;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Subsystems close their own handles first (their close callbacks free
 * them); whatever remains (signal handles) is closed by the walk, so that
 * uv_run returns. */
static void close_all(void)
{
    mx__modules_fini();
    mx__store_close();
    mx__http_fini();
    mx__client_fini();
    uv_walk(mx__ctx->loop, close_walk_cb, NULL);
}

static void after_drain(void)
{
    mx_log("core", MX_LOG_INFO, "connections closed; flushing storage");
    close_all();
}

static void after_modules_stopped(void)
{
    mx__http_drain(mx__ctx->conf->http.shutdown_grace_ms, after_drain);
}

static void begin_shutdown(const char *why)
{
    serve_state_t *st = serve_st();
    if (st->shutting_down)
        return;
    st->shutting_down = true;
    mx__ctx->stopping = true;
    mx_log("core", MX_LOG_INFO, "%s: stopping (grace %llu ms)", why,
           (unsigned long long)mx__ctx->conf->http.shutdown_grace_ms);
    mx__http_stop_accepting();
    uv_signal_stop(&st->sig_term);
    uv_signal_stop(&st->sig_int);
    mx__modules_stop(after_modules_stopped);
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGHUP) {
        int rc = mx__log_open(mx__ctx->conf);
        if (rc)
            mx_log("core", MX_LOG_ERROR, "SIGHUP: cannot reopen log: %s", strerror(-rc));
        rc = mx__http_reload_tls();
        mx_log("core", rc ? MX_LOG_ERROR : MX_LOG_INFO, "SIGHUP: log reopened, TLS %s",
               rc ? "reload failed (old certificates kept)" : "certificates reloaded");
        return;
    }
    begin_shutdown(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Loads the config the way every sub-command does; prints errors. */
static mx_conf_t *load_conf(const mx_cli_opts_t *o)
{
    char err[8192] = "";
    mx_conf_t *conf = mx__conf_load(o->config_path, o->data_dir, err, sizeof(err));
    if (!conf) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
    }
    return conf;
}

static int ctx_create(mx_conf_t *conf)
{
    mx__ctx = calloc(1, sizeof(*mx__ctx));
    if (!mx__ctx)
        return -ENOMEM;
    mx__ctx->conf = conf;
    mx__ctx->loop = uv_default_loop();
    mx__ctx->started_ms = mx_now_ms();
    int rc = mx__log_open(conf);
    if (rc) {
        fprintf(stderr, "mxstack: cannot open log file %s: %s\n", conf->log_file, strerror(-rc));
        return rc;
    }
    if (mx__crypto_init() != 0) {
        fprintf(stderr, "mxstack: libsodium failed to initialise\n");
        return -EIO;
    }
    return 0;
}

static void ctx_destroy(void)
{
    if (!mx__ctx)
        return;
    mx__http_fini();
    mx__router_fini();
    mx__client_fini();
    mx__services_fini();
    mx__bus_fini();
    mx__metrics_fini();
    mx__log_close();
    mx__conf_free(mx__ctx->conf);
    uv_loop_close(mx__ctx->loop);
    free(mx__ctx);
    mx__ctx = NULL;
}

/* Secrets and the signing key: what is missing in the data dir is created;
 * a missing signing key is generated at the configured path (Synapse's
 * --generate-missing-configs behaviour). */
static int setup_keys(const mx_cli_opts_t *o, char *err, size_t errlen)
{
    const mx_conf_t *conf = mx__ctx->conf;
    /* Missing secrets are created in the data dir on first start (never
     * overwritten); a deployment's init-secrets hook may have made them. */
    int src = mx__secrets_init(conf->server.data_dir, 0, err, errlen);
    if (src)
        return src;
    const char *kp = conf->server.signing_key_path;
    if (access(kp, F_OK) != 0) {
        mx_signing_key_t k;
        int rc = mx__signing_key_generate(&k);
        if (rc == 0)
            rc = mx__signing_key_save(kp, &k);
        if (rc) {
            snprintf(err, errlen, "%s: cannot create signing key: %s", kp, strerror(-rc));
            return rc;
        }
        mx_log("core", MX_LOG_INFO, "generated signing key %s", kp);
    }
    return mx__signing_key_load(kp, &mx__ctx->signing_key, err, errlen);
}

/* Everything up to (not including) the listeners. */
static int start_core(const mx_cli_opts_t *o, char *err, size_t errlen)
{
    mx_conf_t *conf = mx__ctx->conf;
    int rc;
    if ((rc = setup_keys(o, err, errlen)))
        return rc;
    if ((rc = mx__store_init(&conf->db, err, errlen)))
        return rc;
    if ((rc = mx__router_init()) || (rc = mx__metrics_init()) || (rc = mx__bus_init()) || (rc = mx__services_init()) ||
        (rc = mx__client_init(&conf->client)) || (rc = mx__http_init())) {
        if (!err[0])
            snprintf(err, errlen, "core start-up failed: %s", strerror(-rc));
        return rc;
    }
    if ((rc = mx__modules_load(conf, err, errlen)) || (rc = mx__modules_init(conf, err, errlen)))
        return rc;
    return 0;
}

int mx_cli_serve(const mx_cli_opts_t *o)
{
    mx_conf_t *conf = load_conf(o);
    if (!conf)
        return 2;
    if (ctx_create(conf) != 0)
        return 1;
    char err[4096] = "";
    int rc = start_core(o, err, sizeof(err));
    if (rc == 0)
        rc = mx__modules_start(err, sizeof(err));
    if (rc == 0)
        rc = mx__http_listen_all(err, sizeof(err));
    if (rc) {
        mx_log("core", MX_LOG_ERROR, "%s", err[0] ? err : strerror(-rc));
        fprintf(stderr, "mxstack: %s\n", err[0] ? err : strerror(-rc));
        close_all();
        uv_run(mx__ctx->loop, UV_RUN_DEFAULT);
        ctx_destroy();
        return 1;
    }
    serve_state_t *st = serve_st();
    signal(SIGPIPE, SIG_IGN);
    uv_signal_init(mx__ctx->loop, &st->sig_term);
    uv_signal_init(mx__ctx->loop, &st->sig_int);
    uv_signal_init(mx__ctx->loop, &st->sig_hup);
    uv_signal_start(&st->sig_term, on_signal, SIGTERM);
    uv_signal_start(&st->sig_int, on_signal, SIGINT);
    uv_signal_start(&st->sig_hup, on_signal, SIGHUP);
    mx__ctx->ready = true;
    mx_log("core", MX_LOG_INFO, "mxstack %s ready: server_name %s, %d module(s), %s", PACKAGE_VERSION,
           conf->server.server_name, mx__modules_count(), conf->server.public_baseurl);
    uv_run(mx__ctx->loop, UV_RUN_DEFAULT);
    mx_log("core", MX_LOG_INFO, "stopped");
    ctx_destroy();
    return st->exit_code;
}

int mx_cli_check_config(const mx_cli_opts_t *o)
{
    if (!o->config_path) {
        fprintf(stderr, "mxstack check-config: give the file with -c FILE\n");
        return 2;
    }
    mx_conf_t *conf = load_conf(o);
    if (!conf)
        return 1;
    /* Module sections are checked by the modules' own tables: load them
     * (no init, no I/O) so their keys are validated too. */
    mx__ctx = calloc(1, sizeof(*mx__ctx));
    if (!mx__ctx)
        return 1;
    mx__ctx->conf = conf;
    char err[4096] = "";
    int rc = mx__modules_load(conf, err, sizeof(err));
    if (rc == 0) {
        rc = mx__modules_init_conf_only(conf, err, sizeof(err));
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", o->config_path, err);
        return 1;
    }
    printf("%s: OK\n", o->config_path);
    return 0;
}

int mx_cli_manage(const mx_cli_opts_t *o, int argc, char **argv)
{
    mx_conf_t *conf = load_conf(o);
    if (!conf)
        return 2;
    if (ctx_create(conf) != 0)
        return 1;
    char err[4096] = "";
    int rc = start_core(o, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "mxstack manage: %s\n", err);
        return 1;
    }
    if (argc < 1 || strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
        printf("usage: mxstack manage COMMAND [ARGS] [-c FILE | --data-dir DIR]\n\ncommands:\n");
        mx__modules_print_manage(stdout);
        return argc < 1 ? 2 : 0;
    }
    const mx_manage_cmd_t *c = mx__modules_find_manage(argv[0]);
    if (!c) {
        fprintf(stderr, "mxstack manage: unknown command '%s' (mxstack manage help)\n", argv[0]);
        return 2;
    }
    /* Module start runs migrations; manage commands use synchronous storage. */
    rc = mx__modules_start(err, sizeof(err));
    if (rc) {
        fprintf(stderr, "mxstack manage: %s\n", err);
        return 1;
    }
    int code = c->run(argc, argv);
    mx__modules_fini();
    mx__store_close();
    return code;
}
