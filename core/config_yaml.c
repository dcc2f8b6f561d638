/*
 * config_yaml.c: reads YAML (libyaml's event API) into a jansson tree and
 * remembers the line of every key and sequence item as a dotted key path
 * ("listeners.0.port" -> 12), so that later checks can say where a value
 * came from.
 *
 * Plain scalars are typed the way PyYAML (and therefore Synapse) types them:
 * null (~, null, empty), booleans (true/false/yes/no/on/off), integers
 * (decimal, 0x hex, 0o and leading-0 octal, '_' separators), floats
 * (not .inf/.nan: JSON has none); quoted and block scalars stay strings.  Anchors and
 * aliases are supported (an alias is a deep copy), and so is the "<<" merge
 * key.  Duplicate keys are an error, as are non-scalar keys.
 */
#include "config_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YP_MAX_DEPTH 64
#define YP_MAX_NODES 1000000  /* bounds alias expansion ("billion laughs") */

typedef struct yp {
    yaml_parser_t parser;
    json_t *lines;        /* may be NULL */
    json_t *anchors;      /* name -> node */
    json_t *anchor_sizes; /* name -> node count */
    mx_conf_errs_t *errs;
    long nodes;
    int failed;           /* syntax error: stop */
} yp_t;

static int yp_next(yp_t *y, yaml_event_t *ev)
{
    if (yaml_parser_parse(&y->parser, ev))
        return 0;
    const yaml_parser_t *p = &y->parser;
    mx__conf_errl(y->errs, (int)p->problem_mark.line + 1, NULL,
                  "YAML syntax error at column %zu: %s%s%s", p->problem_mark.column + 1,
                  p->problem ? p->problem : "error", p->context ? " " : "",
                  p->context ? p->context : "");
    y->failed = 1;
    return -1;
}

static char *path_join(const char *path, const char *key)
{
    size_t a = strlen(path), b = strlen(key);
    char *s = malloc(a + b + 2);
    if (!s)
        return NULL;
    if (a) {
        memcpy(s, path, a);
        s[a++] = '.';
    }
    memcpy(s + a, key, b + 1);
    return s;
}

static void set_line(yp_t *y, const char *path, size_t line0)
{
    if (y->lines && path[0])
        json_object_set_new(y->lines, path, json_integer((json_int_t)line0 + 1));
}

/* ----------------------------------------------------------- scalars --- */

static int is_one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* Integer per YAML 1.1; returns 1 when `s` looks like one (then *err says
 * whether it overflowed), 0 otherwise. */
static int resolve_int(const char *s, json_int_t *out, int *overflow)
{
    const char *p = s;
    int neg = 0;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    } else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) {
        base = 8;
        p += 2;
    } else if (p[0] == '0' && p[1] && p[1] != '.') {
        base = 8;
        p++;
    }
    if (!*p)
        return 0;
    unsigned long long v = 0;
    int any = 0;
    *overflow = 0;
    for (; *p; p++) {
        int d;
        if (*p == '_' && any)
            continue;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            return 0;
        if (d >= base)
            return 0;
        any = 1;
        if (v > (ULLONG_MAX - (unsigned)d) / (unsigned)base)
            *overflow = 1;
        else
            v = v * (unsigned)base + (unsigned)d;
    }
    if (!any)
        return 0;
    if (!neg && v > (unsigned long long)INT64_MAX)
        *overflow = 1;
    if (neg && v > (unsigned long long)INT64_MAX + 1ULL)
        *overflow = 1;
    if (!*overflow)
        *out = neg ? (json_int_t)(0 - v) : (json_int_t)v;
    return 1;
}

/* Floats; YAML's .inf and .nan stay strings (JSON has no such numbers). */
static int resolve_float(const char *s, double *out)
{
    /* [-+]? ( digits [. digits*] | . digits ) ([eE][-+]?digits)? with at
     * least a '.' or an exponent (otherwise it was an integer or a string). */
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int digits = 0, dot = 0, exp = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        digits++;
    if (*p == '.') {
        dot = 1;
        for (p++; *p >= '0' && *p <= '9'; p++)
            digits++;
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
        exp = 1;
    }
    if (*p || (!dot && !exp))
        return 0;
    *out = strtod(s, NULL);
    return 1;
}

static json_t *resolve_plain(yp_t *y, const char *s, size_t len, const char *path)
{
    static const char *const nulls[] = { "~", "null", "Null", "NULL", NULL };
    static const char *const trues[] = { "true", "True", "TRUE", "yes", "Yes", "YES",
                                         "on", "On", "ON", NULL };
    static const char *const falses[] = { "false", "False", "FALSE", "no", "No", "NO",
                                          "off", "Off", "OFF", NULL };
    if (len == 0 || is_one_of(s, nulls))
        return json_null();
    if (is_one_of(s, trues))
        return json_true();
    if (is_one_of(s, falses))
        return json_false();
    if (strlen(s) == len) {
        json_int_t iv;
        int overflow = 0;
        if (resolve_int(s, &iv, &overflow)) {
            if (!overflow)
                return json_integer(iv);
            mx__conf_errf(y->errs, path, "integer %s out of range", s);
            return json_null();
        }
        double d;
        if (resolve_float(s, &d))
            return json_real(d);
    }
    return json_stringn(s, len);
}

static json_t *make_scalar(yp_t *y, const yaml_event_t *ev, const char *path)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    json_t *v;
    if (tag && (strcmp(tag, "!") == 0 || strcmp(tag, YAML_STR_TAG) == 0))
        v = json_stringn(s, len);
    else if (tag && strncmp(tag, "tag:yaml.org,2002:", 18) != 0) {
        mx__conf_errf(y->errs, path, "unsupported YAML tag %s", tag);
        v = json_null();
    } else if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        v = json_stringn(s, len);
    else
        v = resolve_plain(y, s, len, path);
    if (!v) {   /* json_stringn refuses invalid UTF-8 (libyaml checks input, but \x escapes) */
        mx__conf_errf(y->errs, path, "value is not valid UTF-8");
        v = json_null();
    }
    return v;
}

/* ------------------------------------------------------------- nodes --- */

static long count_nodes(const json_t *v)
{
    long n = 1;
    const char *k;
    json_t *c;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, c)
            n += count_nodes(c);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, c)
            n += count_nodes(c);
    }
    return n;
}

static void remember_anchor(yp_t *y, const yaml_char_t *anchor, json_t *v)
{
    if (!anchor || !v)
        return;
    json_object_set(y->anchors, (const char *)anchor, v);
    json_object_set_new(y->anchor_sizes, (const char *)anchor, json_integer(count_nodes(v)));
}

static json_t *parse_node(yp_t *y, yaml_event_t *ev, const char *path, int depth);

/* Merges the mapping(s) of a "<<" value into `obj` without replacing keys
 * that `obj` sets itself (YAML merge key semantics). */
static void merge_into(yp_t *y, json_t *obj, json_t *src, const char *path)
{
    const char *k;
    json_t *v;
    if (json_is_array(src)) {
        size_t i;
        json_array_foreach(src, i, v)
            merge_into(y, obj, v, path);
        return;
    }
    if (!json_is_object(src)) {
        mx__conf_errf(y->errs, path, "<< must be followed by a mapping or a list of mappings");
        return;
    }
    json_object_foreach(src, k, v) {
        if (!json_object_get(obj, k))
            json_object_set(obj, k, v);
    }
}

static json_t *parse_mapping(yp_t *y, yaml_event_t *start, const char *path, int depth)
{
    json_t *obj = json_object();
    json_t *merges = json_array();
    yaml_char_t *anchor = start->data.mapping_start.anchor ?
        (yaml_char_t *)strdup((const char *)start->data.mapping_start.anchor) : NULL;
    for (;;) {
        yaml_event_t kev;
        if (yp_next(y, &kev) < 0)
            goto fail;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        size_t kline = kev.start_mark.line;
        char *key = NULL;
        int is_merge = 0;
        if (kev.type == YAML_SCALAR_EVENT) {
            key = strndup((const char *)kev.data.scalar.value, kev.data.scalar.length);
            is_merge = kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && key &&
                       strcmp(key, "<<") == 0;
            yaml_event_delete(&kev);
        } else {
            /* A sequence or mapping used as a key: read it to stay in step,
             * then report. */
            json_t *junk = parse_node(y, &kev, path, depth + 1);
            json_decref(junk);
            if (y->failed)
                goto fail;
            mx__conf_errl(y->errs, (int)kline + 1, path, "mapping keys must be plain scalars");
        }
        yaml_event_t vev;
        if (yp_next(y, &vev) < 0) {
            free(key);
            goto fail;
        }
        char *kpath = key && !is_merge ? path_join(path, key) : NULL;
        int dup = key && !is_merge && json_object_get(obj, key) != NULL;
        int first_line = dup && y->lines ?
            (int)json_integer_value(json_object_get(y->lines, kpath)) : 0;
        if (kpath && !dup)
            set_line(y, kpath, kline);
        json_t *v = parse_node(y, &vev, kpath ? kpath : path, depth + 1);
        if (y->failed) {
            json_decref(v);
            free(key);
            free(kpath);
            goto fail;
        }
        if (dup) {
            /* Point at the second occurrence, the one to remove. */
            if (first_line)
                mx__conf_errl(y->errs, (int)kline + 1, kpath, "duplicate key (first at line %d)",
                              first_line);
            else
                mx__conf_errl(y->errs, (int)kline + 1, kpath, "duplicate key");
            json_decref(v);
        } else if (is_merge) {
            json_array_append_new(merges, v);
        } else if (key && v) {
            json_object_set_new(obj, key, v);
        } else {
            json_decref(v);
        }
        free(key);
        free(kpath);
    }
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m)
        merge_into(y, obj, m, path);
    json_decref(merges);
    remember_anchor(y, anchor, obj);
    free(anchor);
    return obj;
fail:
    json_decref(merges);
    json_decref(obj);
    free(anchor);
    return NULL;
}

static json_t *parse_sequence(yp_t *y, yaml_event_t *start, const char *path, int depth)
{
    json_t *arr = json_array();
    yaml_char_t *anchor = start->data.sequence_start.anchor ?
        (yaml_char_t *)strdup((const char *)start->data.sequence_start.anchor) : NULL;
    for (size_t i = 0;; i++) {
        yaml_event_t ev;
        if (yp_next(y, &ev) < 0)
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        char idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        char *ipath = path_join(path, idx);
        if (!ipath) {
            yaml_event_delete(&ev);
            goto fail;
        }
        set_line(y, ipath, ev.start_mark.line);
        json_t *v = parse_node(y, &ev, ipath, depth + 1);
        free(ipath);
        if (y->failed) {
            json_decref(v);
            goto fail;
        }
        json_array_append_new(arr, v ? v : json_null());
    }
    remember_anchor(y, anchor, arr);
    free(anchor);
    return arr;
fail:
    json_decref(arr);
    free(anchor);
    return NULL;
}

/* Consumes the node that starts with `ev` (and deletes `ev`).  Returns a new
 * reference; NULL only when y->failed. */
static json_t *parse_node(yp_t *y, yaml_event_t *ev, const char *path, int depth)
{
    json_t *v = NULL;
    if (++y->nodes > YP_MAX_NODES || depth > YP_MAX_DEPTH) {
        mx__conf_errf(y->errs, path, depth > YP_MAX_DEPTH ? "nested too deeply" :
                      "document too large (aliases expand to too many values)");
        yaml_event_delete(ev);
        y->failed = 1;
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        v = make_scalar(y, ev, path);
        remember_anchor(y, ev->data.scalar.anchor, v);
        yaml_event_delete(ev);
        return v;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        json_t *target = json_object_get(y->anchors, name);
        if (!target) {
            mx__conf_errf(y->errs, path, "unknown alias *%s", name);
            v = json_null();
        } else {
            y->nodes += (long)json_integer_value(json_object_get(y->anchor_sizes, name));
            if (y->nodes > YP_MAX_NODES) {
                mx__conf_errf(y->errs, path,
                              "document too large (aliases expand to too many values)");
                y->failed = 1;
                yaml_event_delete(ev);
                return NULL;
            }
            v = json_deep_copy(target);
        }
        yaml_event_delete(ev);
        return v;
    }
    case YAML_SEQUENCE_START_EVENT:
        v = parse_sequence(y, ev, path, depth);
        yaml_event_delete(ev);
        return v;
    case YAML_MAPPING_START_EVENT:
        v = parse_mapping(y, ev, path, depth);
        yaml_event_delete(ev);
        return v;
    default:
        mx__conf_errf(y->errs, path, "unexpected YAML event %d", (int)ev->type);
        yaml_event_delete(ev);
        y->failed = 1;
        return NULL;
    }
}

json_t *mx__yaml_parse(const char *text, size_t len, json_t *lines, mx_conf_errs_t *e)
{
    yp_t y;
    memset(&y, 0, sizeof(y));
    if (!yaml_parser_initialize(&y.parser)) {
        mx__conf_errf(e, NULL, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);
    y.lines = lines;
    y.errs = e;
    y.anchors = json_object();
    y.anchor_sizes = json_object();
    json_t *root = NULL;
    yaml_event_t ev;
    int docs = 0;
    for (;;) {
        if (yp_next(&y, &ev) < 0)
            goto fail;
        yaml_event_type_t t = ev.type;
        size_t line = ev.start_mark.line;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
        if (t == YAML_STREAM_START_EVENT || t == YAML_DOCUMENT_END_EVENT)
            continue;
        if (t != YAML_DOCUMENT_START_EVENT)
            continue;
        if (++docs > 1) {
            mx__conf_errl(e, (int)line + 1, NULL, "only one YAML document is allowed");
            break;
        }
        if (yp_next(&y, &ev) < 0)
            goto fail;
        root = parse_node(&y, &ev, "", 0);
        if (y.failed)
            goto fail;
    }
    yaml_parser_delete(&y.parser);
    json_decref(y.anchors);
    json_decref(y.anchor_sizes);
    return root ? root : json_null();
fail:
    json_decref(root);
    yaml_parser_delete(&y.parser);
    json_decref(y.anchors);
    json_decref(y.anchor_sizes);
    return NULL;
}
