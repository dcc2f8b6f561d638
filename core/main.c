/*
 * main.c: the `mxstack` command line.
 *
 *   mxstack serve [-c FILE] [--data-dir DIR]     run the server
 *   mxstack check-config -c FILE                 validate, print file:line errors
 *   mxstack init-secrets [--data-dir DIR]        create missing secrets
 *   mxstack manage CMD [ARGS...] [-c FILE]       commands the modules offer
 *   mxstack version | --version | help | --help
 *
 * `mxstack --config FILE` (no sub-command) also serves, as Synapse's
 * `python -m synapse.app.homeserver --config-path` does.
 */
#include "core.h"
#include "cli.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "mxstack %s: the Matrix stack (homeserver, auth, web, admin) in one program\n\n"
            "usage:\n"
            "  mxstack serve [-c FILE] [--data-dir DIR]   run the server; without -c: zero-config\n"
            "                                             (SQLite in DIR, http://127.0.0.1:8008)\n"
            "  mxstack check-config -c FILE               validate a config file\n"
            "  mxstack init-secrets [--data-dir DIR]      create missing secrets (never overwrites)\n"
            "  mxstack manage COMMAND [ARGS] [-c FILE]    module commands (mxstack manage help)\n"
            "  mxstack version                            print the version\n\n"
            "DIR defaults to $MXSTACK_DATA, else ./mxstack-data.\n",
            PACKAGE_VERSION);
}

/* Takes the global options out of argv (in place) and returns the rest. */
static int parse_opts(int argc, char **argv, mx_cli_opts_t *o, int *rest_argc, char ***rest)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 ||
             strcmp(a, "--config-path") == 0) && i + 1 < argc) {
            o->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            o->config_path = a + 9;
        } else if (strcmp(a, "--data-dir") == 0 && i + 1 < argc) {
            o->data_dir = argv[++i];
        } else if (strncmp(a, "--data-dir=", 11) == 0) {
            o->data_dir = a + 11;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 ||
                   strcmp(a, "--data-dir") == 0) {
            fprintf(stderr, "mxstack: %s needs a value\n", a);
            return -1;
        } else {
            argv[n++] = argv[i];
        }
    }
    /* o->data_dir stays NULL unless given: the config loader resolves
     * $MXSTACK_DATA, the file's data_dir: and the default. */
    *rest_argc = n;
    *rest = argv;
    return 0;
}

int main(int argc, char **argv)
{
    mx_cli_opts_t o = { 0 };
    const char *cmd = argc > 1 ? argv[1] : "help";
    int first = 2;
    if (cmd[0] == '-' && strcmp(cmd, "--help") != 0 && strcmp(cmd, "-h") != 0 &&
        strcmp(cmd, "--version") != 0) {
        cmd = "serve";
        first = 1;
    }
    int rargc = 0;
    char **rargv = NULL;
    if (parse_opts(argc - first, argv + first, &o, &rargc, &rargv) != 0)
        return 2;

    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("mxstack %s (module ABI %d.%d)\n", PACKAGE_VERSION, MX_ABI_MAJOR, MX_ABI_MINOR);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0) {
        if (rargc > 0) {
            fprintf(stderr, "mxstack serve: unexpected argument '%s'\n", rargv[0]);
            return 2;
        }
        return mx_cli_serve(&o);
    }
    if (strcmp(cmd, "check-config") == 0)
        return mx_cli_check_config(&o);
    if (strcmp(cmd, "init-secrets") == 0) {
        char err[512];
        if (mx__crypto_init() != 0) {
            fprintf(stderr, "mxstack: libsodium failed to initialise\n");
            return 1;
        }
        const char *dir = o.data_dir ? o.data_dir : getenv("MXSTACK_DATA");
        if (!dir || !*dir)
            dir = "./mxstack-data";
        if (mx__secrets_init(dir, 1, err, sizeof(err)) != 0) {
            fprintf(stderr, "mxstack init-secrets: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (strcmp(cmd, "manage") == 0)
        return mx_cli_manage(&o, rargc, rargv);
    fprintf(stderr, "mxstack: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
