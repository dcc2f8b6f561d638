/*
 * config_priv.h: what the three config files share and nothing else sees.
 *
 *   config_yaml.c   YAML text -> jansson tree, plus "a.b.0.c" -> line map
 *   config_fill.c   one value -> typed C field (SIZE, DURATION...), the
 *                   error collector, mx__conf_fill
 *   config.c        mx__conf_load: server keys, listeners, database,
 *                   environment overrides, defaults
 *
 * Every error is one line "FILE:LINE: KEY: reason"; the collector keeps them
 * all so that one run of check-config shows every problem.
 */
#ifndef MX_CONFIG_PRIV_H
#define MX_CONFIG_PRIV_H

#include "core.h"

/* The loaded config: the public struct first, so a mx_conf_t * is also a
 * conf_priv_t *.  Everything the strings in `pub` point to lives in `pool`
 * or in `pub.root`; both go away in mx__conf_free. */
typedef struct mx_conf_priv {
    mx_conf_t pub;
    mx_pool_t *pool;
    const char *dir;       /* absolute directory of the config file, or NULL */
    json_t *envsrc;        /* keypath -> "MXSTACK_..." for keys set from the environment */
} mx_conf_priv_t;

/* Error collector.  `buf` is the caller's buffer (may be NULL/0: count only). */
typedef struct mx_conf_errs {
    const char *file;      /* shown first on each line */
    const json_t *lines;   /* keypath -> line; may be NULL */
    const json_t *envsrc;  /* keypath -> env variable name; may be NULL */
    char *buf;
    size_t size, used;
    int count;
} mx_conf_errs_t;

void mx__conf_errs_init(mx_conf_errs_t *e, const char *file, const json_t *lines,
                        const json_t *envsrc, char *buf, size_t size);
/* Appends "FILE:LINE: KEYPATH: reason".  The line is that of `keypath`, or of
 * its nearest ancestor that has one.  `keypath` may be NULL or "". */
void mx__conf_errf(mx_conf_errs_t *e, const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with an explicit line (0: none, -1: look it up as above). */
void mx__conf_errl(mx_conf_errs_t *e, int line, const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Line of `keypath` or of its nearest ancestor; 0 if none. */
int mx__conf_line_near(const json_t *lines, const char *keypath);

/* Parses one YAML document.  Returns a new reference (an empty document
 * gives json_null()), or NULL after reporting a syntax error.  Errors that
 * do not stop parsing (duplicate keys, integer overflow, ...) are added to
 * `e` while a tree is still returned; check e->count.  `lines` (may be NULL)
 * receives keypath -> line for every key and sequence item. */
json_t *mx__yaml_parse(const char *text, size_t len, json_t *lines, mx_conf_errs_t *e);

/* "10M", "512K", "1G", "100" -> bytes (binary multiples).  0 or -EINVAL. */
int mx__conf_parse_size(const char *s, uint64_t *out);
/* "500ms", "10s", "5m", "1h", "2d", "1w", "1y", "100" (ms) -> ms.  0 or -EINVAL. */
int mx__conf_parse_duration(const char *s, uint64_t *out);
/* "10.0.0.0/8", "::1/128", "192.168.1.1" -> 0, else -EINVAL. */
int mx__conf_cidr_valid(const char *s);

/* Converts one value (NULL or json null: the caller handles defaults) to the
 * type `t` and stores it at `out`.  STR values are copied into `pool`.
 * Reports to `e` under `keypath` and returns -EINVAL when the value does not
 * fit. */
int mx__conf_value(mx_conf_errs_t *e, mx_pool_t *pool, const char *keypath, const json_t *v,
                   mx_conf_type_t t, void *out);
/* Fills `out` from the mapping `section` (NULL: all defaults) using `items`.
 * Keys the table does not name are errors, except those in `ignore`
 * (NULL-terminated, may be NULL).  Returns 0 or -EINVAL. */
int mx__conf_fill_obj(mx_conf_priv_t *c, mx_conf_errs_t *e, const json_t *section,
                      const char *path, const mx_conf_item_t *items, const char *const *ignore,
                      void *out);



#endif /* MX_CONFIG_PRIV_H */
