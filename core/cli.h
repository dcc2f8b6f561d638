/*
 * cli.h: the `mxstack` sub-commands (main.c parses, serve.c runs them).
 */
#ifndef MX_CLI_H
#define MX_CLI_H

typedef struct mx_cli_opts {
    const char *config_path;   /* -c / --config, or NULL for zero-config */
    const char *data_dir;      /* --data-dir, or NULL: the config loader resolves $MXSTACK_DATA, data_dir:, ./mxstack-data */
} mx_cli_opts_t;

int mx_cli_serve(const mx_cli_opts_t *o);
int mx_cli_check_config(const mx_cli_opts_t *o);
int mx_cli_manage(const mx_cli_opts_t *o, int argc, char **argv);

#endif
