/*
 * rel_util.c: the pure helpers of the relations part — SQL text building
 * (printf into malloc'd strings, quoted IN lists of any length), the
 * ignored-users set of an m.ignored_user_list item and the search term's
 * words and FTS5 query.  No I/O, so the unit tests link this file alone.
 */
#include "relations.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *rel_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *out = malloc((size_t)n + 1);
    if (!out)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

char *rel_sql_in_list(const json_t *strings)
{
    size_t len = 1, n = 0, i;
    json_t *v;
    json_array_foreach(strings, i, v) {
        const char *s = json_string_value(v);
        if (!s)
            continue;
        len += 3;
        for (const char *p = s; *p; p++)
            len += *p == '\'' ? 2 : 1;
        n++;
    }
    if (!n)
        return NULL;
    char *out = malloc(len), *o = out;
    if (!out)
        return NULL;
    bool first = true;
    json_array_foreach(strings, i, v) {
        const char *s = json_string_value(v);
        if (!s)
            continue;
        if (!first)
            *o++ = ',';
        first = false;
        *o++ = '\'';
        for (const char *p = s; *p; p++) {
            if (*p == '\'')
                *o++ = '\'';
            *o++ = *p;
        }
        *o++ = '\'';
    }
    *o = '\0';
    return out;
}

json_t *rel_ignored_parse(const char *content)
{
    json_t *set = json_object();
    json_t *v = content ? json_loads(content, 0, NULL) : NULL;
    json_t *iu = json_object_get(v, "ignored_users");
    const char *k;
    json_t *x;
    json_object_foreach(iu, k, x)
        json_object_set_new(set, k, json_true());
    json_decref(v);
    return set;
}

/* Words of the search term: runs of ASCII letters/digits and non-ASCII
 * bytes, lowercased. */
json_t *rel_search_tokens(const char *term)
{
    json_t *out = json_array();
    const unsigned char *p = (const unsigned char *)term;
    while (*p) {
        while (*p && *p < 0x80 && !isalnum(*p))
            p++;
        const unsigned char *s = p;
        while (*p && (*p >= 0x80 || isalnum(*p)))
            p++;
        if (p > s && json_array_size(out) < 32) {
            char *w = strndup((const char *)s, (size_t)(p - s));
            if (!w)
                break;
            for (char *q = w; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            json_array_append_new(out, json_string(w));
            free(w);
        }
    }
    return out;
}

/* FTS5 query: every word quoted (no operators), all required. */
char *rel_fts5_query(const json_t *tokens)
{
    size_t len = 1, i;
    json_t *v;
    json_array_foreach(tokens, i, v)
        len += strlen(json_string_value(v)) + 3;
    char *q = malloc(len), *o = q;
    if (!q)
        return NULL;
    json_array_foreach(tokens, i, v) {
        o += sprintf(o, "%s\"%s\"", i ? " " : "", json_string_value(v));
    }
    *o = '\0';
    return q;
}
