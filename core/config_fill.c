/*
 * config_fill.c: turning config values into C fields.  Holds the error
 * collector every config check reports through ("FILE:LINE: KEY: reason"),
 * the SIZE / DURATION / CIDR parsers, and mx__conf_fill, which fills a
 * module's struct from its section using the module's mx_conf_item_t table,
 * so that no module parses config text itself.
 */
#include "config_priv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ errors --- */

void mx__conf_errs_init(mx_conf_errs_t *e, const char *file, const json_t *lines,
                        const json_t *envsrc, char *buf, size_t size)
{
    memset(e, 0, sizeof(*e));
    e->file = file;
    e->lines = lines;
    e->envsrc = envsrc;
    e->buf = buf;
    e->size = buf ? size : 0;
    if (e->size)
        buf[0] = '\0';
}

int mx__conf_line_near(const json_t *lines, const char *keypath)
{
    if (!lines || !keypath || !keypath[0])
        return 0;
    char *p = strdup(keypath);
    int line = 0;
    while (p && p[0]) {
        json_t *v = json_object_get(lines, p);
        if (json_is_integer(v)) {
            line = (int)json_integer_value(v);
            break;
        }
        char *dot = strrchr(p, '.');
        if (!dot)
            break;
        *dot = '\0';
    }
    free(p);
    return line;
}

/* The environment variable a key (or its ancestor) was set from, or NULL. */
static const char *env_of(const json_t *envsrc, const char *keypath)
{
    if (!envsrc || !keypath || !keypath[0])
        return NULL;
    const char *hit = NULL;
    char *p = strdup(keypath);
    while (p && p[0] && !hit) {
        hit = json_string_value(json_object_get(envsrc, p));
        char *dot = strrchr(p, '.');
        if (!dot)
            break;
        *dot = '\0';
    }
    free(p);
    return hit;
}

static void errs_add(mx_conf_errs_t *e, int line, const char *keypath, const char *fmt,
                     va_list ap) __attribute__((format(printf, 4, 0)));
static void errs_add(mx_conf_errs_t *e, int line, const char *keypath, const char *fmt,
                     va_list ap)
{
    e->count++;
    if (!e->size || e->used + 1 >= e->size)
        return;
    char reason[1024];
    vsnprintf(reason, sizeof(reason), fmt, ap);
    if (line < 0)
        line = mx__conf_line_near(e->lines, keypath);
    const char *env = env_of(e->envsrc, keypath);
    char loc[512];
    if (env)
        snprintf(loc, sizeof(loc), "environment variable %s", env);
    else if (line > 0)
        snprintf(loc, sizeof(loc), "%s:%d", e->file, line);
    else
        snprintf(loc, sizeof(loc), "%s", e->file);
    char *dst = e->buf + e->used;
    size_t room = e->size - e->used;
    int n;
    if (keypath && keypath[0])
        n = snprintf(dst, room, "%s%s: %s: %s", e->used ? "\n" : "", loc, keypath, reason);
    else
        n = snprintf(dst, room, "%s%s: %s", e->used ? "\n" : "", loc, reason);
    if (n < 0)
        return;
    e->used += (size_t)n < room ? (size_t)n : room - 1;
}

void mx__conf_errl(mx_conf_errs_t *e, int line, const char *keypath, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errs_add(e, line, keypath, fmt, ap);
    va_end(ap);
}

void mx__conf_errf(mx_conf_errs_t *e, const char *keypath, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errs_add(e, -1, keypath, fmt, ap);
    va_end(ap);
}

/* ----------------------------------------------------------- parsers --- */

/* Leading decimal digits into *v; returns the end, or NULL on none/overflow. */
static const char *parse_u64(const char *s, uint64_t *v)
{
    uint64_t n = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return NULL;
        n = n * 10 + d;
    }
    if (p == s)
        return NULL;
    *v = n;
    return p;
}

static int mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b && a > UINT64_MAX / b)
        return -EINVAL;
    *out = a * b;
    return 0;
}

int mx__conf_parse_size(const char *s, uint64_t *out)
{
    uint64_t n;
    const char *p = s ? parse_u64(s, &n) : NULL;
    if (!p)
        return -EINVAL;
    uint64_t mult = 1;
    switch (toupper((unsigned char)*p)) {
    case '\0': return (*out = n), 0;
    case 'B': mult = 1; p--; break;   /* "100B": the 'B' is read below */
    case 'K': mult = 1ULL << 10; break;
    case 'M': mult = 1ULL << 20; break;
    case 'G': mult = 1ULL << 30; break;
    case 'T': mult = 1ULL << 40; break;
    default: return -EINVAL;
    }
    p++;
    /* Optional "B" or "iB": 10M, 10MB, 10MiB all mean 10 * 2^20. */
    if ((p[0] == 'i' || p[0] == 'I') && mult > 1)
        p++;
    if (p[0] == 'b' || p[0] == 'B')
        p++;
    if (*p)
        return -EINVAL;
    return mul_ok(n, mult, out);
}

int mx__conf_parse_duration(const char *s, uint64_t *out)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
        { "d", 86400000ULL }, { "w", 7 * 86400000ULL }, { "y", 365 * 86400000ULL },
    };
    uint64_t n;
    const char *p = s ? parse_u64(s, &n) : NULL;
    if (!p)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(p, units[i].unit) == 0)
            return mul_ok(n, units[i].ms, out);
    return -EINVAL;
}

/* The module API's readers of raw config values (mx.h, ABI 1.4). */
static int conf_value(const json_t *v, uint64_t def, uint64_t *out,
                      int (*parse)(const char *, uint64_t *))
{
    if (!v || json_is_null(v))
        return (*out = def), 0;
    if (json_is_integer(v))
        return json_integer_value(v) < 0 ? -EINVAL : ((*out = (uint64_t)json_integer_value(v)), 0);
    return json_is_string(v) ? parse(json_string_value(v), out) : -EINVAL;
}

int mx_conf_size(const json_t *v, uint64_t def, uint64_t *out)
{
    return conf_value(v, def, out, mx__conf_parse_size);
}

int mx_conf_duration(const json_t *v, uint64_t def, uint64_t *out)
{
    return conf_value(v, def, out, mx__conf_parse_duration);
}

int mx__conf_cidr_valid(const char *s)
{
    if (!s || !*s)
        return -EINVAL;
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash++ = '\0';
    unsigned char addr[16];
    int max;
    if (inet_pton(AF_INET, buf, addr) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, buf, addr) == 1)
        max = 128;
    else
        return -EINVAL;
    if (!slash)
        return 0;
    uint64_t bits;
    const char *end = parse_u64(slash, &bits);
    if (!end || *end || bits > (uint64_t)max || end - slash > 3)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------ values --- */

int mx__conf_value(mx_conf_errs_t *e, mx_pool_t *pool, const char *keypath, const json_t *v,
                   mx_conf_type_t t, void *out)
{
    switch (t) {
    case MX_CONF_T_STR: {
        char num[64];
        const char *s = NULL;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_integer(v)) {
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            s = num;
        } else if (json_is_real(v)) {
            snprintf(num, sizeof(num), "%.17g", json_real_value(v));
            s = num;
        }
        if (!s) {
            mx__conf_errf(e, keypath, "expected a string");
            return -EINVAL;
        }
        char *copy = mx_pstrdup(pool, s);
        if (!copy)
            return -ENOMEM;
        *(char **)out = copy;
        return 0;
    }
    case MX_CONF_T_INT:
        if (!json_is_integer(v)) {
            mx__conf_errf(e, keypath, "expected an integer");
            return -EINVAL;
        }
        *(int64_t *)out = (int64_t)json_integer_value(v);
        return 0;
    case MX_CONF_T_BOOL:
        if (!json_is_boolean(v)) {
            mx__conf_errf(e, keypath, "expected true or false");
            return -EINVAL;
        }
        *(int *)out = json_is_true(v);
        return 0;
    case MX_CONF_T_SIZE:
    case MX_CONF_T_DURATION: {
        int is_size = t == MX_CONF_T_SIZE;
        uint64_t n = 0;
        int rc = -EINVAL;
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            n = (uint64_t)json_integer_value(v);
            rc = 0;
        } else if (json_is_string(v)) {
            rc = is_size ? mx__conf_parse_size(json_string_value(v), &n) :
                           mx__conf_parse_duration(json_string_value(v), &n);
        }
        if (rc < 0) {
            if (is_size)
                mx__conf_errf(e, keypath, "expected a size such as 512K, 10M or 1G");
            else
                mx__conf_errf(e, keypath,
                              "expected a duration such as 500ms, 10s, 5m, 1h or 2d");
            return -EINVAL;
        }
        *(uint64_t *)out = n;
        return 0;
    }
    case MX_CONF_T_JSON:
        *(json_t **)out = (json_t *)v;
        return 0;
    case MX_CONF_T_END:
        break;
    }
    return -EINVAL;
}

/* ------------------------------------------------------------- fill --- */

static void decref_cb(void *v)
{
    json_decref((json_t *)v);
}

/* Does `key` (a key of the section) belong to some item ("a" for "a.b")? */
static int item_knows(const mx_conf_item_t *items, const char *key, const char *const *ignore)
{
    size_t klen = strlen(key);
    for (const mx_conf_item_t *it = items; it->key; it++)
        if (strncmp(it->key, key, klen) == 0 && (it->key[klen] == '\0' || it->key[klen] == '.'))
            return 1;
    for (; ignore && *ignore; ignore++)
        if (strcmp(*ignore, key) == 0)
            return 1;
    return 0;
}

/* Walks a dotted item key ("limits.rate") inside the section. */
static const json_t *lookup(const json_t *section, const char *key)
{
    const json_t *v = section;
    const char *p = key;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char part[128];
        if (!json_is_object(v) || n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        p = dot ? dot + 1 : p + n;
    }
    return v;
}

static void zero_field(void *field, mx_conf_type_t t)
{
    switch (t) {
    case MX_CONF_T_STR: *(char **)field = NULL; break;
    case MX_CONF_T_INT: *(int64_t *)field = 0; break;
    case MX_CONF_T_BOOL: *(int *)field = 0; break;
    case MX_CONF_T_SIZE:
    case MX_CONF_T_DURATION: *(uint64_t *)field = 0; break;
    case MX_CONF_T_JSON: *(json_t **)field = NULL; break;
    case MX_CONF_T_END: break;
    }
}

int mx__conf_fill_obj(mx_conf_priv_t *c, mx_conf_errs_t *e, const json_t *section,
                      const char *path, const mx_conf_item_t *items, const char *const *ignore,
                      void *out)
{
    int before = e->count;
    if (json_is_null(section))
        section = NULL;
    if (section && !json_is_object(section)) {
        mx__conf_errf(e, path, "expected a mapping of settings");
        section = NULL;
    }
    if (section) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)section, k, v) {
            if (item_knows(items, k, ignore))
                continue;
            char *kp = mx_psprintf(c->pool, "%s.%s", path, k);
            mx__conf_errf(e, kp, "unknown key");
        }
    }
    for (const mx_conf_item_t *it = items; it->key; it++) {
        void *field = (char *)out + it->offset;
        char *kp = mx_psprintf(c->pool, "%s.%s", path, it->key);
        const json_t *v = section ? lookup(section, it->key) : NULL;
        /* A bad value is reported and then replaced by the default, so
         * that checks made on the filled struct do not report it twice. */
        if (v && !json_is_null(v) && mx__conf_value(e, c->pool, kp, v, it->type, field) == 0)
            continue;
        if (!it->def) {
            zero_field(field, it->type);
            continue;
        }
        /* The default is YAML text in the module's table: a mistake there
         * is the module's bug, reported like any other config error. */
        mx_conf_errs_t de;
        char derr[256];
        mx__conf_errs_init(&de, "default", NULL, NULL, derr, sizeof(derr));
        json_t *dv = mx__yaml_parse(it->def, strlen(it->def), NULL, &de);
        if (!dv || de.count) {
            mx__conf_errf(e, kp, "bad built-in default \"%s\" (%s)", it->def, derr);
            json_decref(dv);
            zero_field(field, it->type);
            continue;
        }
        if (json_is_null(dv)) {
            zero_field(field, it->type);
        } else if (mx__conf_value(e, c->pool, kp, dv, it->type, field) < 0) {
            zero_field(field, it->type);
        } else if (it->type == MX_CONF_T_JSON) {
            mx_pool_on_free(c->pool, decref_cb, json_incref(dv));
        }
        json_decref(dv);
    }
    return e->count > before ? -EINVAL : 0;
}

int mx__conf_fill(const mx_conf_t *conf, const char *section, const mx_conf_item_t *items,
                  void *out, char *err, size_t errlen)
{
    mx_conf_priv_t *c = (mx_conf_priv_t *)conf;
    mx_conf_errs_t e;
    mx__conf_errs_init(&e, conf->path, conf->lines, c->envsrc, err, errlen);
    /* `database:` in a module's section is read by the store (mx__conf_db). */
    static const char *const ignore[] = { "database", NULL };
    const json_t *sec = conf->root ? json_object_get(conf->root, section) : NULL;
    return mx__conf_fill_obj(c, &e, sec, section, items, ignore, out);
}
