/*
 * config.c: loads the one YAML config file (or the built-in defaults) into
 * an mx_conf_t.  Key names and shapes are Synapse's homeserver.yaml ones
 * where they exist, so a Synapse config fragment loads; keys Synapse has and
 * mxstack does not use are accepted and ignored.  Environment variables
 * (MXSTACK_*) override the file for containers.  Everything is checked
 * before anything starts: every problem is reported, each as
 * "FILE:LINE: KEY: reason", and a config with any problem is refused.
 *
 * See conf/mxstack.yaml for every key and its default.
 */
#include "config_priv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CONF_MAX_FILE (16u << 20)
#define SECRET_MAX_FILE (64u << 10)

/* Everything one load needs. */
typedef struct ld {
    mx_conf_priv_t *c;
    mx_conf_t *conf;
    mx_conf_errs_t *e;
    json_t *root;
    const char *dir;        /* config file directory (absolute), or NULL */
    mx_pool_t *pool;
} ld_t;

static const char *const all_resources[] = {
    "client", "federation", "media", "admin", "metrics", "web", "auth", "health", "internal",
    NULL
};
/* Synapse resource names whose routes mxstack serves as part of another
 * resource (keys, openid: federation; static: web) or not at all. */
static const char *const synapse_resources[] = {
    "keys", "openid", "static", "replication", "consent", NULL
};

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* ----------------------------------------------------------- helpers --- */

static const json_t *get(const json_t *obj, const char *key)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

static char *join(ld_t *l, const char *a, const char *b)
{
    return mx_psprintf(l->pool, "%s%s%s", a, a[0] ? "." : "", b);
}

static const char *want_str(ld_t *l, const json_t *obj, const char *key, const char *kp,
                            const char *def)
{
    const json_t *v = get(obj, key);
    if (!v)
        return def;
    if (!json_is_string(v)) {
        mx__conf_errf(l->e, kp, "expected a string");
        return def;
    }
    if (!json_string_value(v)[0]) {
        mx__conf_errf(l->e, kp, "must not be empty");
        return def;
    }
    return json_string_value(v);
}

static int want_bool(ld_t *l, const json_t *obj, const char *key, const char *kp, int def)
{
    const json_t *v = get(obj, key);
    int out = def;
    if (v && mx__conf_value(l->e, l->pool, kp, v, MX_CONF_T_BOOL, &out) < 0)
        return def;
    return out;
}

static int64_t want_int(ld_t *l, const json_t *obj, const char *key, const char *kp,
                        int64_t def, int64_t min, int64_t max)
{
    const json_t *v = get(obj, key);
    int64_t out = def;
    if (!v || mx__conf_value(l->e, l->pool, kp, v, MX_CONF_T_INT, &out) < 0)
        return def;
    if (out < min || out > max) {
        mx__conf_errf(l->e, kp, "must be between %lld and %lld", (long long)min, (long long)max);
        return def;
    }
    return out;
}

/* A relative path in the file is relative to the file's directory; one
 * from the environment is relative to the working directory. */
static const char *resolve_path(ld_t *l, const char *kp, const char *p)
{
    if (!p)
        return NULL;
    if (p[0] == '/' || !l->dir || json_object_get(l->c->envsrc, kp))
        return mx_pstrdup(l->pool, p);
    return mx_psprintf(l->pool, "%s/%s", l->dir, p);
}

static const char *want_path(ld_t *l, const json_t *obj, const char *key, const char *kp,
                             const char *def)
{
    const char *s = want_str(l, obj, key, kp, NULL);
    return s ? resolve_path(l, kp, s) : def;
}

static const char *data_path(ld_t *l, const char *name)
{
    return mx_psprintf(l->pool, "%s/%s", l->conf->server.data_dir, name);
}

static int check_readable(ld_t *l, const char *kp, const char *path)
{
    if (path && access(path, R_OK) != 0) {
        mx__conf_errf(l->e, kp, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads a small file into the pool, without trailing whitespace. */
static char *read_small(ld_t *l, const char *path, size_t max, int *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = errno;
        return NULL;
    }
    char *buf = mx_palloc(l->pool, max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f) || !buf;
    fclose(f);
    if (bad || n > max) {
        *err = bad ? EIO : EFBIG;
        return NULL;
    }
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        n--;
    buf[n] = '\0';
    return buf;
}

typedef int (*check_fn)(const char *s);

/* A list of strings into out[max]; returns the count, or -1 when absent. */
static int want_str_list(ld_t *l, const json_t *obj, const char *key, const char *kp,
                         const char **out, int max, check_fn check, const char *what)
{
    const json_t *v = get(obj, key);
    if (!v)
        return -1;
    if (!json_is_array(v)) {
        mx__conf_errf(l->e, kp, "expected a list");
        return 0;
    }
    if ((int)json_array_size(v) > max) {
        mx__conf_errf(l->e, kp, "too many entries (at most %d)", max);
        return 0;
    }
    int n = 0;
    size_t i;
    const json_t *item;
    json_array_foreach(v, i, item) {
        char *ikp = mx_psprintf(l->pool, "%s.%zu", kp, i);
        if (!json_is_string(item)) {
            mx__conf_errf(l->e, ikp, "expected a string");
            continue;
        }
        const char *s = json_string_value(item);
        if (check && check(s) < 0) {
            mx__conf_errf(l->e, ikp, "\"%s\" is not a valid %s", s, what);
            continue;
        }
        out[n++] = s;
    }
    return n;
}

static void check_keys(ld_t *l, const json_t *obj, const char *path, const char *const *known,
                       const char *const *ignored, const char *what)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        if (in_list(k, known))
            continue;
        if (ignored && in_list(k, ignored)) {
            mx_log("config", MX_LOG_DEBUG, "%s: %s is not used by mxstack; ignored", path, k);
            continue;
        }
        mx__conf_errf(l->e, join(l, path, k), "unknown %s key", what);
    }
}

/* ---------------------------------------------------------- validators --- */

static int check_ip(const char *s)
{
    unsigned char a[16];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1 ? 0 : -EINVAL;
}

static int check_cidr(const char *s)
{
    return mx__conf_cidr_valid(s);
}

static int check_module_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return -EINVAL;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return -EINVAL;
    return 0;
}

/* host[:port], host a DNS name, an IPv4 literal or a bracketed IPv6 one. */
static int check_server_name(const char *s)
{
    const char *p = s;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        char buf[INET6_ADDRSTRLEN];
        unsigned char a[16];
        size_t n = end ? (size_t)(end - p - 1) : 0;
        if (!end || n == 0 || n >= sizeof(buf))
            return -EINVAL;
        memcpy(buf, p + 1, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET6, buf, a) != 1)
            return -EINVAL;
        p = end + 1;
    } else {
        const char *start = p;
        while (*p && (isalnum((unsigned char)*p) || *p == '.' || *p == '-'))
            p++;
        if (p == start || p - start > 255)
            return -EINVAL;
    }
    if (*p == '\0')
        return 0;
    if (*p++ != ':')
        return -EINVAL;
    char *end;
    long port = strtol(p, &end, 10);
    if (!isdigit((unsigned char)*p) || *end || port < 1 || port > 65535)
        return -EINVAL;
    return 0;
}

static int check_level(const char *s)
{
    static const char *const levels[] = { "error", "warn", "warning", "info", "debug", NULL };
    for (const char *const *p = levels; *p; p++)
        if (strcasecmp(s, *p) == 0)
            return 0;
    return -EINVAL;
}

/* ---------------------------------------------------------- database --- */

static int pg_keyword_valid(const char *k)
{
    PQconninfoOption *opts = PQconndefaults();
    int ok = 0;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, k) == 0)
            ok = 1;
    PQconninfoFree(opts);
    return ok;
}

/* Appends "key='value'" (conninfo quoting) or "key=value" (URI query,
 * percent-encoded) to a growing pool string. */
static char *append_param(ld_t *l, char *acc, int uri, const char *k, const char *v)
{
    size_t n = strlen(v);
    char *q = mx_palloc(l->pool, n * 3 + 3), *w = q;
    if (!q)
        return acc;
    if (uri) {
        static const char hex[] = "0123456789ABCDEF";
        for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
            if (isalnum(*s) || strchr("-._~", *s)) {
                *w++ = (char)*s;
            } else {
                *w++ = '%';
                *w++ = hex[*s >> 4];
                *w++ = hex[*s & 15];
            }
        }
        *w = '\0';
        return mx_psprintf(l->pool, "%s%c%s=%s", acc, strchr(acc, '?') ? '&' : '?', k, q);
    }
    *w++ = '\'';
    for (const char *s = v; *s; s++) {
        if (*s == '\'' || *s == '\\')
            *w++ = '\\';
        *w++ = *s;
    }
    *w++ = '\'';
    *w = '\0';
    return mx_psprintf(l->pool, "%s%s%s=%s", acc, acc[0] ? " " : "", k, q);
}

static int is_pg_uri(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

static void parse_pg_args(ld_t *l, const json_t *args, const char *apath, mx_db_conf_t *out)
{
    const char *uri = NULL, *uri_kp = NULL;
    const json_t *u = get(args, "uri"), *d = get(args, "dsn");
    if (u && d)
        mx__conf_errf(l->e, join(l, apath, "dsn"), "give either uri or dsn, not both");
    if (u || d) {
        uri_kp = join(l, apath, u ? "uri" : "dsn");
        uri = want_str(l, args, u ? "uri" : "dsn", uri_kp, NULL);
        if (uri && u && !is_pg_uri(uri)) {
            mx__conf_errf(l->e, uri_kp, "expected a postgresql:// URI");
            uri = NULL;
        }
    }
    int as_uri = uri && is_pg_uri(uri);
    char *acc = mx_pstrdup(l->pool, uri ? uri : "");
    if (get(args, "database") && get(args, "dbname"))
        mx__conf_errf(l->e, join(l, apath, "dbname"), "give either database or dbname, not both");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)args, k, v) {
        static const char *const pool_keys[] = { "cp_min", "cp_max", "cp_reconnect", "uri",
                                                 "dsn", "synchronous", NULL };
        if (in_list(k, pool_keys) || json_is_null(v))
            continue;
        const char *kw = strcmp(k, "database") == 0 ? "dbname" : k;
        char *kp = join(l, apath, k);
        if (!pg_keyword_valid(kw)) {
            mx__conf_errf(l->e, kp, "unknown PostgreSQL connection parameter");
            continue;
        }
        char num[32];
        const char *s;
        if (json_is_string(v)) {
            s = json_string_value(v);
        } else if (json_is_integer(v)) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            s = num;
        } else if (json_is_boolean(v)) {
            s = json_is_true(v) ? "1" : "0";
        } else {
            mx__conf_errf(l->e, kp, "expected a string or a number");
            continue;
        }
        acc = append_param(l, acc, as_uri, kw, s);
    }
    out->pg_conninfo = acc;
}

/* One `database:` mapping (Synapse's shape) into `out`.  `def_sqlite` is the
 * SQLite file used when args.database is not given. */
static void parse_db(ld_t *l, const json_t *db, const char *path, const char *def_sqlite,
                     mx_db_conf_t *out)
{
    memset(out, 0, sizeof(*out));
    out->engine = "sqlite3";
    out->sqlite_path = def_sqlite;
    out->cp_min = 5;
    out->cp_max = 10;
    if (!db)
        return;
    if (!json_is_object(db)) {
        mx__conf_errf(l->e, path, "expected a mapping with name: and args:");
        return;
    }
    static const char *const known[] = { "name", "args", NULL };
    static const char *const ignored[] = { "txn_limit", "allow_unsafe_locale", NULL };
    check_keys(l, db, path, known, ignored, "database");
    const char *name = want_str(l, db, "name", join(l, path, "name"), NULL);
    if (!name) {
        if (!get(db, "name"))
            mx__conf_errf(l->e, join(l, path, "name"), "required (sqlite3 or psycopg2)");
        return;
    }
    const char *apath = join(l, path, "args");
    const json_t *args = get(db, "args");
    if (args && !json_is_object(args)) {
        mx__conf_errf(l->e, apath, "expected a mapping");
        args = NULL;
    }
    int64_t cp_min = want_int(l, args, "cp_min", join(l, apath, "cp_min"), 5, 1, 1000);
    int64_t cp_max = want_int(l, args, "cp_max", join(l, apath, "cp_max"), 10, 1, 1000);
    if (cp_max < cp_min)
        mx__conf_errf(l->e, join(l, apath, "cp_max"), "must not be less than cp_min (%lld)",
                      (long long)cp_min);
    out->cp_min = (int)cp_min;
    out->cp_max = (int)cp_max;
    if (strcmp(name, "sqlite3") == 0) {
        /* Synapse passes further args to sqlite3.connect; they mean
         * nothing here and are ignored. */
        const char *dkp = join(l, apath, "database");
        const char *file = want_str(l, args, "database", dkp, NULL);
        if (file && (strcmp(file, ":memory:") == 0 || strncmp(file, "file:", 5) == 0))
            out->sqlite_path = mx_pstrdup(l->pool, file);
        else if (file)
            out->sqlite_path = resolve_path(l, dkp, file);
        /* mxstack's own key (Synapse has none): SQLite's synchronous mode
         * in WAL.  normal: a commit survives kill -9 (it is in the OS page
         * cache before anyone hears of it), only power loss can roll the
         * last commits back; full: each commit is fsync'd too. */
        const char *skp = join(l, apath, "synchronous");
        const char *sync = want_str(l, args, "synchronous", skp, "normal");
        if (strcmp(sync, "full") == 0)
            out->sqlite_sync_full = true;
        else if (strcmp(sync, "normal") != 0)
            mx__conf_errf(l->e, skp, "expected normal or full");
    } else if (strcmp(name, "psycopg2") == 0 || strcmp(name, "postgres") == 0 ||
               strcmp(name, "postgresql") == 0) {
        out->engine = "psycopg2";
        out->sqlite_path = NULL;
        if (get(args, "synchronous"))
            mx__conf_errf(l->e, join(l, apath, "synchronous"), "applies to sqlite3 only "
                          "(PostgreSQL: synchronous_commit in the server's settings)");
        parse_pg_args(l, args, apath, out);
    } else {
        mx__conf_errf(l->e, join(l, path, "name"), "unsupported database \"%s\" "
                      "(sqlite3 or psycopg2)", name);
    }
}

/* --------------------------------------------------------- listeners --- */

static void add_resource(ld_t *l, mx_listener_conf_t *li, const char *kp, const char *name)
{
    for (int i = 0; i < li->nresources; i++)
        if (strcmp(li->resources[i], name) == 0)
            return;
    if (li->nresources >= MX_MAX_RESOURCES) {
        mx__conf_errf(l->e, kp, "too many resources");
        return;
    }
    li->resources[li->nresources++] = name;
}

static void parse_resources(ld_t *l, const json_t *res, const char *rpath, mx_listener_conf_t *li)
{
    if (!json_is_array(res)) {
        mx__conf_errf(l->e, rpath, "expected a list of {names: [...]}");
        return;
    }
    size_t i;
    const json_t *r;
    json_array_foreach(res, i, r) {
        char *kp = mx_psprintf(l->pool, "%s.%zu", rpath, i);
        if (!json_is_object(r)) {
            mx__conf_errf(l->e, kp, "expected a mapping with names:");
            continue;
        }
        static const char *const known[] = { "names", "compress", NULL };
        check_keys(l, r, kp, known, NULL, "resource");
        want_bool(l, r, "compress", join(l, kp, "compress"), 0);   /* accepted, unused */
        const char *names[MX_MAX_RESOURCES * 2];
        char *nkp = join(l, kp, "names");
        int n = want_str_list(l, r, "names", nkp, names, MX_MAX_RESOURCES * 2, NULL, NULL);
        if (n < 0) {
            mx__conf_errf(l->e, nkp, "required");
            continue;
        }
        for (int j = 0; j < n; j++) {
            char *jkp = mx_psprintf(l->pool, "%s.%d", nkp, j);
            if (in_list(names[j], all_resources)) {
                add_resource(l, li, jkp, names[j]);
                /* As in Synapse, client and federation imply media. */
                if (strcmp(names[j], "client") == 0 || strcmp(names[j], "federation") == 0)
                    add_resource(l, li, jkp, "media");
            } else if (in_list(names[j], synapse_resources)) {
                mx_log("config", MX_LOG_DEBUG, "%s: resource %s is served by mxstack as part "
                       "of federation/web; ignored", jkp, names[j]);
            } else {
                mx__conf_errf(l->e, jkp, "unknown resource \"%s\" (client, federation, media, "
                              "admin, metrics, web, auth, health)", names[j]);
            }
        }
    }
}

static void parse_listener(ld_t *l, const json_t *o, int idx, mx_listener_conf_t *li)
{
    char *path = mx_psprintf(l->pool, "listeners.%d", idx);
    memset(li, 0, sizeof(*li));
    li->line = mx__conf_line_near(l->conf->lines, path);
    li->type = "http";
    if (!json_is_object(o)) {
        mx__conf_errf(l->e, path, "expected a mapping with port:, type:, resources:");
        return;
    }
    static const char *const known[] = {
        "port", "bind_addresses", "bind_address", "tls", "type", "x_forwarded", "resources",
        "vhost", NULL
    };
    static const char *const ignored[] = { "tag", "request_id_header", NULL };
    if (get(o, "path"))
        mx__conf_errf(l->e, join(l, path, "path"), "UNIX socket listeners are not supported");
    else
        check_keys(l, o, path, known, ignored, "listener");

    char *pkp = join(l, path, "port");
    if (!get(o, "port"))
        mx__conf_errf(l->e, pkp, "required");
    li->port = (int)want_int(l, o, "port", pkp, 0, 1, 65535);

    char *bkp = join(l, path, "bind_addresses");
    int n = want_str_list(l, o, "bind_addresses", bkp, li->bind_addresses, MX_MAX_BIND,
                          check_ip, "IP address");
    if (n == 0 && json_is_array(get(o, "bind_addresses")) &&
        json_array_size(get(o, "bind_addresses")) == 0)
        mx__conf_errf(l->e, bkp, "must not be empty");
    if (n < 0) {
        /* Synapse's older singular form, then its default. */
        char *akp = join(l, path, "bind_address");
        const char *one = want_str(l, o, "bind_address", akp, NULL);
        if (one && check_ip(one) < 0) {
            mx__conf_errf(l->e, akp, "\"%s\" is not a valid IP address", one);
            one = NULL;
        }
        if (one) {
            li->bind_addresses[0] = one;
            n = 1;
        } else {
            li->bind_addresses[0] = "::";
            li->bind_addresses[1] = "0.0.0.0";
            n = 2;
        }
    }
    li->nbind = n;

    char *tkp = join(l, path, "type");
    li->type = want_str(l, o, "type", tkp, "http");
    if (strcmp(li->type, "http") != 0 && strcmp(li->type, "metrics") != 0) {
        mx__conf_errf(l->e, tkp, "listener type \"%s\" is not supported (http or metrics)",
                      li->type);
        li->type = "http";
    }
    li->tls = want_bool(l, o, "tls", join(l, path, "tls"), 0);
    li->x_forwarded = want_bool(l, o, "x_forwarded", join(l, path, "x_forwarded"), 0);
    char *vkp = join(l, path, "vhost");
    li->vhost = want_str(l, o, "vhost", vkp, NULL);
    if (li->vhost && check_server_name(li->vhost) < 0)
        mx__conf_errf(l->e, vkp, "\"%s\" is not a valid host name", li->vhost);

    const json_t *res = get(o, "resources");
    char *rkp = join(l, path, "resources");
    if (res)
        parse_resources(l, res, rkp, li);
    if (strcmp(li->type, "metrics") == 0) {
        add_resource(l, li, rkp, "metrics");
    } else {
        if (!res)
            mx__conf_errf(l->e, rkp, "required for an http listener (e.g. [{names: [client, "
                          "federation]}])");
        /* Synapse answers /health on every HTTP listener. */
        add_resource(l, li, rkp, "health");
    }
}

static void default_listener(mx_listener_conf_t *li)
{
    memset(li, 0, sizeof(*li));
    li->port = 8008;
    li->bind_addresses[0] = "127.0.0.1";
    li->nbind = 1;
    li->type = "http";
    for (int i = 0; all_resources[i]; i++)
        li->resources[li->nresources++] = all_resources[i];
}

static void load_listeners(ld_t *l)
{
    mx_conf_t *conf = l->conf;
    const json_t *ls = get(l->root, "listeners");
    if (!ls) {
        default_listener(&conf->listeners[0]);
        conf->nlisteners = 1;
    } else if (!json_is_array(ls)) {
        mx__conf_errf(l->e, "listeners", "expected a list of listeners");
    } else if (json_array_size(ls) == 0) {
        mx__conf_errf(l->e, "listeners", "at least one listener is needed");
    } else if (json_array_size(ls) > MX_MAX_LISTENERS) {
        mx__conf_errf(l->e, "listeners", "too many listeners (at most %d)", MX_MAX_LISTENERS);
    } else {
        size_t i;
        const json_t *o;
        json_array_foreach(ls, i, o)
            parse_listener(l, o, (int)i, &conf->listeners[conf->nlisteners++]);
    }

    /* Two listeners on one address and port cannot both bind. */
    for (int i = 0; i < conf->nlisteners; i++)
        for (int j = 0; j < i; j++) {
            mx_listener_conf_t *a = &conf->listeners[i], *b = &conf->listeners[j];
            if (!a->port || a->port != b->port)
                continue;
            for (int x = 0; x < a->nbind; x++)
                for (int y = 0; y < b->nbind; y++)
                    if (strcmp(a->bind_addresses[x], b->bind_addresses[y]) == 0 &&
                        /* listeners that differ by vhost share the socket */
                        !((a->vhost || b->vhost) &&
                          !(a->vhost && b->vhost && strcasecmp(a->vhost, b->vhost) == 0)))
                        mx__conf_errf(l->e, mx_psprintf(l->pool, "listeners.%d.port", i),
                                      "%s port %d is already used by listeners.%d",
                                      a->bind_addresses[x], a->port, j);
        }

    /* TLS: Synapse's top-level certificate and key serve every TLS listener. */
    const char *cert = want_path(l, l->root, "tls_certificate_path", "tls_certificate_path",
                                 NULL);
    const char *key = want_path(l, l->root, "tls_private_key_path", "tls_private_key_path",
                                NULL);
    int any_tls = 0;
    for (int i = 0; i < conf->nlisteners; i++) {
        mx_listener_conf_t *li = &conf->listeners[i];
        if (!li->tls)
            continue;
        any_tls = 1;
        if (!cert || !key)
            mx__conf_errf(l->e, mx_psprintf(l->pool, "listeners.%d.tls", i),
                          "needs tls_certificate_path and tls_private_key_path");
        li->tls_certificate_path = cert;
        li->tls_private_key_path = key;
    }
    if (any_tls) {
        check_readable(l, "tls_certificate_path", cert);
        check_readable(l, "tls_private_key_path", key);
    }
}

/* ------------------------------------------------------------- server --- */

static const char *with_slash(ld_t *l, const char *url)
{
    size_t n = strlen(url);
    return n && url[n - 1] == '/' ? mx_pstrdup(l->pool, url) : mx_psprintf(l->pool, "%s/", url);
}

static const char *default_baseurl(ld_t *l)
{
    const mx_conf_t *conf = l->conf;
    if (conf->nlisteners > 0 && conf->listeners[0].nbind > 0) {
        const mx_listener_conf_t *li = &conf->listeners[0];
        const char *a = li->bind_addresses[0];
        if (strcmp(a, "::") != 0 && strcmp(a, "0.0.0.0") != 0)
            return mx_psprintf(l->pool, "%s://%s%s%s:%d/", li->tls ? "https" : "http",
                               strchr(a, ':') ? "[" : "", a, strchr(a, ':') ? "]" : "",
                               li->port);
    }
    /* Listening on every address: Synapse's default. */
    return mx_psprintf(l->pool, "https://%s/", conf->server.server_name);
}

static void load_secret(ld_t *l)
{
    mx_server_conf_t *s = &l->conf->server;
    const char *secret = want_str(l, l->root, "registration_shared_secret",
                                  "registration_shared_secret", NULL);
    const char *kp = "registration_shared_secret_path";
    const char *path = want_path(l, l->root, kp, kp, NULL);
    if (secret && path)
        mx__conf_errf(l->e, kp, "registration_shared_secret and "
                      "registration_shared_secret_path are mutually exclusive");
    if (secret) {
        s->registration_shared_secret = secret;
        return;
    }
    int must = path != NULL;
    if (!path) {
        /* What `mxstack init-secrets` writes, when it exists. */
        path = data_path(l, "registration_shared_secret");
        if (access(path, F_OK) != 0)
            return;
    }
    int err = 0;
    char *v = read_small(l, path, SECRET_MAX_FILE, &err);
    if (!v) {
        mx__conf_errf(l->e, must ? kp : NULL, "cannot read %s: %s", path, strerror(err));
        return;
    }
    if (!v[0]) {
        mx__conf_errf(l->e, must ? kp : NULL, "%s is empty", path);
        return;
    }
    s->registration_shared_secret = v;
}

/* Where services run when their module is not in this process
 * (`service_locations: {name: URL}`), and the secret internal calls carry
 * (`internal_secret`, else DATA/internal_secret when it exists). */
static void load_services(ld_t *l)
{
    const json_t *loc = get(l->root, "service_locations");
    if (loc && !json_is_object(loc)) {
        mx__conf_errf(l->e, "service_locations", "expected a map of service name to URL");
    } else if (loc) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)loc, k, v) {
            const char *kp = join(l, "service_locations", k);
            const char *u = json_string_value(v);
            if (!u || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0))
                mx__conf_errf(l->e, kp, "expected an http:// or https:// URL");
        }
        l->conf->service_locations = (json_t *)loc;
    }
    const char *secret = want_str(l, l->root, "internal_secret", "internal_secret", NULL);
    if (!secret) {
        const char *path = data_path(l, "internal_secret");
        int err = 0;
        if (access(path, F_OK) == 0)
            secret = read_small(l, path, SECRET_MAX_FILE, &err);
    }
    l->conf->internal_secret = secret;
}

static void load_server(ld_t *l, int from_file)
{
    mx_server_conf_t *s = &l->conf->server;
    const json_t *root = l->root;

    s->server_name = want_str(l, root, "server_name", "server_name", NULL);
    if (!s->server_name) {
        if (from_file && !get(root, "server_name"))
            mx__conf_errf(l->e, "server_name", "required (the domain of your Matrix IDs, "
                          "e.g. example.com)");
        s->server_name = "localhost";
    } else if (check_server_name(s->server_name) < 0) {
        mx__conf_errf(l->e, "server_name", "\"%s\" is not a valid server name "
                      "(host or host:port, no scheme or path)", s->server_name);
    }

    const char *url = want_str(l, root, "public_baseurl", "public_baseurl", NULL);
    if (url && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        mx__conf_errf(l->e, "public_baseurl", "must start with http:// or https://");
        url = NULL;
    } else if (url && (strchr(url, ' ') || !url[url[4] == 's' ? 8 : 7] ||
                       url[url[4] == 's' ? 8 : 7] == '/')) {
        mx__conf_errf(l->e, "public_baseurl", "\"%s\" is not a valid URL", url);
        url = NULL;
    }
    s->public_baseurl = url ? with_slash(l, url) : default_baseurl(l);

    s->signing_key_path = want_path(l, root, "signing_key_path", "signing_key_path",
                                    data_path(l, "signing.key"));
    s->media_store_path = want_path(l, root, "media_store_path", "media_store_path",
                                    data_path(l, "media_store"));
    s->max_upload_size = 50u << 20;
    const json_t *v = get(root, "max_upload_size");
    if (v)
        mx__conf_value(l->e, l->pool, "max_upload_size", v, MX_CONF_T_SIZE, &s->max_upload_size);
    s->enable_registration = want_bool(l, root, "enable_registration", "enable_registration", 0);

    s->default_room_version = "10";
    v = get(root, "default_room_version");
    if (v) {
        const char *rv = NULL;
        if (json_is_integer(v) && json_integer_value(v) > 0)   /* unquoted: 10 */
            rv = mx_psprintf(l->pool, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_string(v))
            rv = json_string_value(v);
        int ok = rv && rv[0] && strlen(rv) <= 64;
        for (const char *p = rv; ok && *p; p++)
            ok = isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_';
        if (ok)
            s->default_room_version = rv;
        else
            mx__conf_errf(l->e, "default_room_version", "expected a room version such as "
                          "\"10\"");
    }
    load_secret(l);
    s->root = root;
}

/* ------------------------------------------------------- http, client --- */

typedef struct http_tmp {
    uint64_t max_body_size, max_header_size, header_timeout, idle_timeout, body_timeout,
        shutdown_grace;
    int64_t max_connections;
    json_t *trusted_proxies;
} http_tmp_t;

static const mx_conf_item_t http_items[] = {
    MX_CONF_SIZE("max_body_size", http_tmp_t, max_body_size, "10M"),
    MX_CONF_SIZE("max_header_size", http_tmp_t, max_header_size, "16K"),
    MX_CONF_DURATION("header_timeout", http_tmp_t, header_timeout, "10s"),
    MX_CONF_DURATION("idle_timeout", http_tmp_t, idle_timeout, "60s"),
    MX_CONF_DURATION("body_timeout", http_tmp_t, body_timeout, "30s"),
    MX_CONF_INT("max_connections", http_tmp_t, max_connections, "10000"),
    MX_CONF_DURATION("shutdown_grace", http_tmp_t, shutdown_grace, "10s"),
    MX_CONF_JSON("trusted_proxies", http_tmp_t, trusted_proxies),
    MX_CONF_END
};

static void load_http(ld_t *l)
{
    mx_http_limits_t *h = &l->conf->http;
    http_tmp_t t;
    const json_t *sec = get(l->root, "http");
    mx__conf_fill_obj(l->c, l->e, sec, "http", http_items, NULL, &t);
    if (t.max_header_size < 1024 || t.max_header_size > (64u << 20))
        mx__conf_errf(l->e, "http.max_header_size", "must be between 1K and 64M");
    if (t.max_body_size < 1024)
        mx__conf_errf(l->e, "http.max_body_size", "must be at least 1K");
    if (t.max_connections < 1 || t.max_connections > 10000000)
        mx__conf_errf(l->e, "http.max_connections", "must be between 1 and 10000000");
    static const char *const timeouts[] = { "header_timeout", "idle_timeout", "body_timeout" };
    const uint64_t vals[] = { t.header_timeout, t.idle_timeout, t.body_timeout };
    for (int i = 0; i < 3; i++)
        if (vals[i] == 0)
            mx__conf_errf(l->e, join(l, "http", timeouts[i]), "must be more than 0");
    h->max_body_size = t.max_body_size;
    h->max_header_size = t.max_header_size;
    h->header_timeout_ms = t.header_timeout;
    h->idle_timeout_ms = t.idle_timeout;
    h->body_timeout_ms = t.body_timeout;
    h->max_connections = (int)(t.max_connections > 0 && t.max_connections < INT_MAX ?
                               t.max_connections : 10000);
    h->shutdown_grace_ms = t.shutdown_grace;
    int n = want_str_list(l, sec, "trusted_proxies", "http.trusted_proxies", h->trusted_proxies,
                          16, check_cidr, "CIDR (e.g. 10.0.0.0/8)");
    if (n < 0) {
        /* Absent: a reverse proxy on the same host (the usual Synapse
         * setup with x_forwarded) is believed; [] believes nobody. */
        h->trusted_proxies[0] = "127.0.0.0/8";
        h->trusted_proxies[1] = "::1/128";
        n = 2;
    }
    h->ntrusted_proxies = n;
    for (int i = 0; i < l->conf->nlisteners && n == 0; i++)
        if (l->conf->listeners[i].x_forwarded)
            mx_log("config", MX_LOG_WARN, "%s: listeners.%d.x_forwarded: http.trusted_proxies "
                   "is empty, so X-Forwarded-* headers will be ignored", l->conf->path, i);
}

typedef struct client_tmp {
    char *extra_ca_file, *ca_file;
} client_tmp_t;

static const mx_conf_item_t client_items[] = {
    MX_CONF_STR("extra_ca_file", client_tmp_t, extra_ca_file, NULL),
    MX_CONF_STR("ca_file", client_tmp_t, ca_file, NULL),
    MX_CONF_END
};

static void load_client(ld_t *l)
{
    mx_client_conf_t *cl = &l->conf->client;
    int n = want_str_list(l, l->root, "ip_range_whitelist", "ip_range_whitelist",
                          cl->ip_range_whitelist, 16, check_cidr, "CIDR (e.g. 10.0.0.0/8)");
    cl->nwhitelist = n > 0 ? n : 0;

    client_tmp_t t;
    mx__conf_fill_obj(l->c, l->e, get(l->root, "http_client"), "http_client", client_items,
                      NULL, &t);
    cl->extra_ca_file = resolve_path(l, "http_client.extra_ca_file", t.extra_ca_file);
    cl->ca_file = resolve_path(l, "http_client.ca_file", t.ca_file);
    check_readable(l, "http_client.extra_ca_file", cl->extra_ca_file);
    check_readable(l, "http_client.ca_file", cl->ca_file);
    if (!cl->ca_file)
        cl->ca_file = "/etc/ssl/certs/ca-certificates.crt";

    /* Synapse's list of CA files for federation: one file here. */
    const char *cas[2];
    const char *kp = "federation_custom_ca_list";
    n = want_str_list(l, l->root, kp, kp, cas, 2, NULL, NULL);
    if (n > 1)
        mx__conf_errf(l->e, kp, "only one file is supported; concatenate the PEM files");
    if (n == 1 && cl->extra_ca_file)
        mx__conf_errf(l->e, kp, "give either this or http_client.extra_ca_file, not both");
    else if (n == 1) {
        char *ikp = mx_psprintf(l->pool, "%s.0", kp);
        cl->extra_ca_file = resolve_path(l, ikp, cas[0]);
        check_readable(l, ikp, cl->extra_ca_file);
    }
}

/* ---------------------------------------------------- modules, logging --- */

static void load_modules(ld_t *l)
{
    mx_conf_t *conf = l->conf;
    int n = want_str_list(l, l->root, "modules", "modules", conf->modules, 16,
                          check_module_name, "module name ([a-z0-9_]+)");
    conf->nmodules = n;   /* -1: every built module */
    if (n < 0 && json_is_array(get(l->root, "modules")))
        conf->nmodules = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(conf->modules[i], conf->modules[j]) == 0)
                mx__conf_errf(l->e, mx_psprintf(l->pool, "modules.%d", i),
                              "%s is listed twice", conf->modules[i]);
    conf->module_dir = want_path(l, l->root, "module_dir", "module_dir", NULL);
}

static void load_logging(ld_t *l)
{
    mx_conf_t *conf = l->conf;
    conf->log_format = want_str(l, l->root, "log_format", "log_format", "text");
    if (strcmp(conf->log_format, "text") != 0 && strcmp(conf->log_format, "json") != 0) {
        mx__conf_errf(l->e, "log_format", "must be text or json");
        conf->log_format = "text";
    }
    conf->log_file = want_path(l, l->root, "log_file", "log_file", NULL);
    conf->log_level = want_str(l, l->root, "log_level", "log_level", "info");
    if (check_level(conf->log_level) < 0) {
        mx__conf_errf(l->e, "log_level", "must be one of error, warn, info, debug");
        conf->log_level = "info";
    }
    const json_t *lv = get(l->root, "log_levels");
    if (lv && !json_is_object(lv)) {
        mx__conf_errf(l->e, "log_levels", "expected a mapping of module: level");
    } else if (lv) {
        const char *k;
        json_t *v;
        int ok = 1;
        json_object_foreach((json_t *)lv, k, v) {
            if (!json_is_string(v) || check_level(json_string_value(v)) < 0) {
                mx__conf_errf(l->e, join(l, "log_levels", k),
                              "must be one of error, warn, info, debug");
                ok = 0;
            }
        }
        if (ok)
            conf->log_levels = (json_t *)lv;
    }
}

/* ---------------------------------------------------------- top level --- */

static const char *const handled_keys[] = {
    "server_name", "public_baseurl", "listeners", "tls_certificate_path", "tls_private_key_path",
    "database", "data_dir", "registration_shared_secret", "registration_shared_secret_path",
    "signing_key_path", "media_store_path", "max_upload_size", "enable_registration",
    "default_room_version", "modules", "module_dir", "log_format", "log_file", "log_level",
    "log_levels", "http", "ip_range_whitelist", "federation_custom_ca_list", "http_client",
    "service_locations", "internal_secret",
    NULL
};

/* Keys that are neither mxstack's nor a module section: Synapse's other
 * settings, logged and ignored; module sections are checked by the module
 * (mx__conf_fill).  A `database:` inside a section is checked here so that
 * check-config sees it. */
static void check_rest(ld_t *l)
{
    const char *k;
    json_t *v;
    json_object_foreach(l->root, k, v) {
        if (in_list(k, handled_keys))
            continue;
        if (strcmp(k, "databases") == 0) {
            mx__conf_errf(l->e, k, "several databases are not supported; use database:");
            continue;
        }
        if (json_is_object(v) && json_object_get(v, "database")) {
            mx_db_conf_t tmp;
            char *p = join(l, k, "database");
            parse_db(l, get(v, "database"), p, data_path(l, mx_psprintf(l->pool, "%s.db", k)),
                     &tmp);
            continue;
        }
        if (!json_is_object(v))
            mx_log("config", MX_LOG_DEBUG, "%s: %s is not used by mxstack; ignored",
                   l->conf->path, k);
    }
}

/* Container overrides: each replaces the file's key before validation and
 * is remembered so that errors name the variable. */
static void env_str(ld_t *l, const char *var, const char *key)
{
    const char *v = getenv(var);
    if (!v || !*v)
        return;
    json_t *s = json_string(v);
    json_object_set_new(l->c->envsrc, key, json_string(var));
    if (!s) {
        mx__conf_errf(l->e, key, "not valid UTF-8");
        return;
    }
    json_object_set_new(l->root, key, s);
}

static void apply_env(ld_t *l)
{
    env_str(l, "MXSTACK_SERVER_NAME", "server_name");
    env_str(l, "MXSTACK_PUBLIC_BASEURL", "public_baseurl");
    env_str(l, "MXSTACK_SIGNING_KEY_PATH", "signing_key_path");
    const char *secret = getenv("MXSTACK_REGISTRATION_SHARED_SECRET");
    if (secret && *secret) {
        json_object_del(l->root, "registration_shared_secret_path");
        env_str(l, "MXSTACK_REGISTRATION_SHARED_SECRET", "registration_shared_secret");
    }
    const char *uri = getenv("MXSTACK_DATABASE_URI");
    if (uri && *uri) {
        /* Switch to PostgreSQL; keep the pool size the file may give. */
        json_t *args = json_object();
        const json_t *old = get(get(l->root, "database"), "args");
        if (get(old, "cp_min"))
            json_object_set(args, "cp_min", (json_t *)get(old, "cp_min"));
        if (get(old, "cp_max"))
            json_object_set(args, "cp_max", (json_t *)get(old, "cp_max"));
        json_object_set_new(args, "uri", json_string(uri));
        json_object_set_new(l->root, "database", json_pack("{s:s, s:o}", "name", "psycopg2",
                                                           "args", args));
        json_object_set_new(l->c->envsrc, "database", json_string("MXSTACK_DATABASE_URI"));
    }
}

static const char *strip_slash(ld_t *l, const char *d)
{
    char *s = mx_pstrdup(l->pool, d);
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/')
        s[--n] = '\0';
    return s;
}

/* --data-dir, else $MXSTACK_DATA, else the file's data_dir:, else
 * mxstack-data next to the file (or in the working directory). */
static void load_data_dir(ld_t *l, const char *given)
{
    mx_server_conf_t *s = &l->conf->server;
    const char *env = getenv("MXSTACK_DATA");
    if (given && *given) {
        s->data_dir = strip_slash(l, given);
    } else if (env && *env) {
        json_object_set_new(l->c->envsrc, "data_dir", json_string("MXSTACK_DATA"));
        s->data_dir = strip_slash(l, env);
    } else {
        const char *d = want_path(l, l->root, "data_dir", "data_dir", NULL);
        s->data_dir = d ? strip_slash(l, d) :
                      l->dir ? mx_psprintf(l->pool, "%s/mxstack-data", l->dir) : "./mxstack-data";
    }
    /* Still validate the key when something overrides it. */
    if ((given && *given) || (env && *env))
        want_str(l, l->root, "data_dir", "data_dir", NULL);
}

static char *read_config(const char *path, size_t *len, int *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = errno;
        return NULL;
    }
    char *buf = malloc(CONF_MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, CONF_MAX_FILE + 1, f) : 0;
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad || n > CONF_MAX_FILE) {
        free(buf);
        *err = bad ? EIO : EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

typedef struct err_line {
    long line;
    size_t seq;
    const char *text;
    size_t len;
} err_line_t;

static int err_line_cmp(const void *pa, const void *pb)
{
    const err_line_t *a = pa, *b = pb;
    if (a->line != b->line)
        return a->line < b->line ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Puts the collected error lines in file order (those without a line
 * first), which is how a reader fixes them. */
static void sort_errors(char *err, const char *file)
{
    size_t n = 1, flen = strlen(file);
    for (const char *p = err; *p; p++)
        n += *p == '\n';
    char *copy = strdup(err);
    err_line_t *v = calloc(n, sizeof(*v));
    if (!copy || !v)
        goto out;
    size_t i = 0;
    for (char *p = copy; i < n; i++) {
        char *nl = strchr(p, '\n');
        v[i].seq = i;
        v[i].text = p;
        v[i].len = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, file, flen) == 0 && p[flen] == ':' && isdigit((unsigned char)p[flen + 1]))
            v[i].line = strtol(p + flen + 1, NULL, 10);
        if (!nl)
            break;
        p = nl + 1;
    }
    n = i < n ? i + 1 : n;
    qsort(v, n, sizeof(*v), err_line_cmp);
    char *w = err;
    for (i = 0; i < n; i++) {
        if (i)
            *w++ = '\n';
        memcpy(w, v[i].text, v[i].len);
        w += v[i].len;
    }
    *w = '\0';
out:
    free(copy);
    free(v);
}

mx_conf_t *mx__conf_load(const char *path, const char *data_dir, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    mx_conf_priv_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->pool = mx_pool_new())) {
        free(c);
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    mx_conf_t *conf = &c->pub;
    c->envsrc = json_object();
    conf->lines = json_object();
    conf->path = mx_pstrdup(c->pool, path ? path : "(built-in defaults)");
    mx_conf_errs_t e;
    mx__conf_errs_init(&e, conf->path, conf->lines, c->envsrc, err, errlen);
    ld_t l = { .c = c, .conf = conf, .e = &e, .pool = c->pool };

    if (path) {
        size_t len = 0;
        int rerr = 0;
        char *text = read_config(path, &len, &rerr);
        if (!text) {
            mx__conf_errf(&e, NULL, "cannot read: %s", strerror(rerr));
            goto fail;
        }
        conf->root = mx__yaml_parse(text, len, conf->lines, &e);
        free(text);
        if (!conf->root)
            goto fail;
        if (json_is_null(conf->root)) {
            json_decref(conf->root);
            conf->root = json_object();   /* an empty file */
        }
        if (!json_is_object(conf->root)) {
            mx__conf_errl(&e, 1, NULL, "the configuration must be a mapping of keys to values");
            goto fail;
        }
        char *copy = strdup(path);
        char real[PATH_MAX];
        if (copy && realpath(dirname(copy), real))
            c->dir = mx_pstrdup(c->pool, real);
        free(copy);
    } else {
        conf->root = json_object();
    }
    l.root = conf->root;
    l.dir = c->dir;

    apply_env(&l);
    load_data_dir(&l, data_dir);
    load_listeners(&l);
    load_server(&l, path != NULL);
    parse_db(&l, get(l.root, "database"), "database", data_path(&l, "homeserver.db"),
             &conf->db);
    load_http(&l);
    load_client(&l);
    load_modules(&l);
    load_services(&l);
    load_logging(&l);
    check_rest(&l);
    if (e.count)
        goto fail;
    return conf;
fail:
    if (err && errlen)
        sort_errors(err, conf->path);
    mx__conf_free(conf);
    return NULL;
}

void mx__conf_free(mx_conf_t *conf)
{
    if (!conf)
        return;
    mx_conf_priv_t *c = (mx_conf_priv_t *)conf;
    json_decref(conf->root);
    json_decref(conf->lines);
    json_decref(c->envsrc);
    mx_pool_free(c->pool);
    free(c);
}

int mx__conf_line(const mx_conf_t *conf, const char *keypath)
{
    if (!conf || !keypath)
        return 0;
    json_t *v = json_object_get(conf->lines, keypath);
    return json_is_integer(v) ? (int)json_integer_value(v) : 0;
}

int mx__conf_db(const mx_conf_t *conf, const char *section, mx_db_conf_t *out, char *err,
                size_t errlen)
{
    mx_conf_priv_t *c = (mx_conf_priv_t *)conf;
    const json_t *db = get(get(conf->root, section), "database");
    if (!db)
        return -ENOENT;
    mx_conf_errs_t e;
    mx__conf_errs_init(&e, conf->path, conf->lines, c->envsrc, err, errlen);
    ld_t l = { .c = c, .conf = (mx_conf_t *)conf, .e = &e, .root = conf->root, .dir = c->dir,
               .pool = c->pool };
    char *path = join(&l, section, "database");
    parse_db(&l, db, path, data_path(&l, mx_psprintf(c->pool, "%s.db", section)), out);
    return e.count ? -EINVAL : 0;
}

const mx_server_conf_t *mx_server_conf(void)
{
    return mx__ctx && mx__ctx->conf ? &mx__ctx->conf->server : NULL;
}
