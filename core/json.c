/*
 * json.c: strict parsing of request bodies and Matrix canonical JSON.
 *
 * mx_json_parse wraps jansson with the checks a homeserver needs on
 * untrusted input: one value only, no duplicate keys, no \u0000, bounded
 * nesting.  It sorts failures into the two Matrix error codes: M_NOT_JSON
 * when the bytes are not JSON at all, M_BAD_JSON when they are JSON we
 * refuse to accept.
 *
 * mx_json_canonical is our own serializer for the spec's Canonical JSON
 * (appendices, "Canonical JSON"): keys sorted by code point, no whitespace,
 * integers in [-(2^53)+1, 2^53-1] only, minimal string escaping.  Signatures
 * and event hashes are computed over its output, so it must be byte-exact
 * with every other server; we do not trust jansson's dump flags for that.
 */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deepest nesting of arrays/objects a request body may have.  `[]` is 1. */
#define JSON_MAX_DEPTH 64

/* Deepest nesting mx_json_canonical follows.  Parsed input never gets near
 * it; it stops runaway recursion on values built in code (or cycles). */
#define CANON_MAX_DEPTH 512

/* The largest integer canonical JSON allows: 2^53 - 1. */
#define CANON_INT_MAX 9007199254740991LL

/* ------------------------------------------------------------- parsing --- */

/* Copies jansson's message into errbuf as printable ASCII: the text quotes
 * the input near the error, which may hold bytes that are not UTF-8, and
 * callers put this text into JSON replies. */
static void parse_err(char *errbuf, size_t errlen, const char *msg, size_t pos)
{
    if (!errbuf || errlen == 0)
        return;
    int n = snprintf(errbuf, errlen, "%s (at byte %zu)", msg, pos);
    size_t end = n < 0 ? 0 : ((size_t)n >= errlen ? errlen - 1 : (size_t)n);
    for (size_t i = 0; i < end; i++) {
        unsigned char c = (unsigned char)errbuf[i];
        if (c < 0x20 || c >= 0x7f)
            errbuf[i] = '?';
    }
}

/* 1 when `v` has more than `left` levels of nesting below it. */
static int too_deep(json_t *v, int left)
{
    if (!json_is_object(v) && !json_is_array(v))
        return 0;
    if (left == 0)
        return 1;
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (too_deep(e, left - 1))
                return 1;
        }
        return 0;
    }
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) {
        if (too_deep(e, left - 1))
            return 1;
    }
    return 0;
}

json_t *mx_json_parse(const char *buf, size_t len, const char **errcode, char *errbuf,
                      size_t errlen)
{
    const char *dummy;
    json_error_t e;

    if (!errcode)
        errcode = &dummy;
    *errcode = NULL;
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!buf)
        buf = "";

    /* Without JSON_ALLOW_NUL jansson refuses \u0000; without
     * JSON_DISABLE_EOF_CHECK it refuses anything but whitespace after the
     * value; it checks UTF-8 (overlong forms and encoded surrogates too) and
     * refuses lone \uD800-style escapes.  Its own nesting limit (2048) keeps
     * a 100000-deep "[[[[" cheap: it gives up at depth 2049. */
    json_t *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (!v) {
        switch (json_error_code(&e)) {
        case json_error_duplicate_key:
        case json_error_stack_overflow:   /* deeper than 2048 */
        case json_error_null_character:   /* "\u0000": JSON, but C strings can't hold it */
        case json_error_null_byte_in_key:
            *errcode = "M_BAD_JSON";
            break;
        default:                          /* syntax, UTF-8, NUL bytes, overflow, memory */
            *errcode = "M_NOT_JSON";
            break;
        }
        if (json_error_code(&e) == json_error_stack_overflow)
            parse_err(errbuf, errlen, "JSON nested too deeply", (size_t)e.position);
        else
            parse_err(errbuf, errlen, e.text, (size_t)e.position);
        return NULL;
    }
    if (too_deep(v, JSON_MAX_DEPTH)) {
        json_decref(v);
        *errcode = "M_BAD_JSON";
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "JSON nested deeper than %d levels", JSON_MAX_DEPTH);
        return NULL;
    }
    return v;
}

/* ----------------------------------------------------------- canonical --- */

typedef struct canon_buf {
    char *p;
    size_t len, cap;
    int failed;       /* -ENOMEM or -EINVAL once anything went wrong */
} canon_buf_t;

static void cb_put(canon_buf_t *b, const void *s, size_t n)
{
    if (b->failed)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = -ENOMEM;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = -ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void cb_putc(canon_buf_t *b, char c)
{
    cb_put(b, &c, 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0.
 * Refuses overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t need;
    unsigned cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 2; cp = c & 0x1f; min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3; cp = c & 0x0f; min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4; cp = c & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

/* A JSON string with the spec's escaping: only `"`, `\` and the control
 * characters are escaped (\b \f \n \r \t, else \u00xx in lower-case hex);
 * everything else, U+007F and non-ASCII included, is copied as UTF-8. */
static void canon_string(canon_buf_t *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;

    cb_putc(b, '"');
    while (i < n) {
        unsigned char c = s[i];
        const char *esc = NULL;
        char u[7];
        if (c >= 0x80) {
            size_t k = utf8_seq(s + i, n - i);
            if (k == 0) {
                b->failed = b->failed ? b->failed : -EINVAL;
                return;
            }
            i += k;
            continue;
        }
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                memcpy(u, "\\u00", 4);
                u[4] = hex[c >> 4];
                u[5] = hex[c & 0xf];
                u[6] = '\0';
                esc = u;
            }
        }
        if (esc) {
            cb_put(b, s + run, i - run);
            cb_put(b, esc, strlen(esc));
            run = i + 1;
        }
        i++;
    }
    cb_put(b, s + run, n - run);
    cb_putc(b, '"');
}

typedef struct canon_member {
    const char *key;
    size_t klen;
    json_t *value;
} canon_member_t;

/* Byte order of UTF-8 is code point order, which is what the spec sorts by. */
static int member_cmp(const void *pa, const void *pb)
{
    const canon_member_t *a = pa, *b = pb;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int r = memcmp(a->key, b->key, n);
    if (r)
        return r;
    return a->klen < b->klen ? -1 : (a->klen > b->klen ? 1 : 0);
}

static void canon_value(canon_buf_t *b, const json_t *cv, int depth);

static void canon_object(canon_buf_t *b, json_t *v, int depth)
{
    size_t n = json_object_size(v), i = 0;
    canon_member_t *m = NULL;

    if (n) {
        m = calloc(n, sizeof(*m));
        if (!m) {
            b->failed = -ENOMEM;
            return;
        }
        for (void *it = json_object_iter(v); it && i < n; it = json_object_iter_next(v, it)) {
            m[i].key = json_object_iter_key(it);
            m[i].klen = json_object_iter_key_len(it);
            m[i].value = json_object_iter_value(it);
            i++;
        }
        n = i;
        qsort(m, n, sizeof(*m), member_cmp);
    }
    cb_putc(b, '{');
    for (i = 0; i < n && !b->failed; i++) {
        if (i)
            cb_putc(b, ',');
        canon_string(b, m[i].key, m[i].klen);
        cb_putc(b, ':');
        canon_value(b, m[i].value, depth + 1);
    }
    cb_putc(b, '}');
    free(m);
}

static void canon_value(canon_buf_t *b, const json_t *cv, int depth)
{
    /* jansson's iteration API takes non-const pointers; nothing below
     * modifies the value. */
    json_t *v = (json_t *)cv;
    char num[32];

    if (b->failed)
        return;
    if (!v || depth > CANON_MAX_DEPTH) {
        b->failed = -EINVAL;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        canon_object(b, v, depth);
        break;
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        cb_putc(b, '[');
        json_array_foreach(v, i, e) {
            if (i)
                cb_putc(b, ',');
            canon_value(b, e, depth + 1);
        }
        cb_putc(b, ']');
        break;
    }
    case JSON_STRING:
        canon_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        if (i > CANON_INT_MAX || i < -CANON_INT_MAX) {
            b->failed = -EINVAL;
            return;
        }
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, i);
        cb_put(b, num, (size_t)n);
        break;
    }
    case JSON_REAL:
        /* Canonical JSON has no floats, not even integral ones like 1.0 or
         * 1e10 (Synapse and Ruma refuse them too). */
        b->failed = -EINVAL;
        break;
    case JSON_TRUE:
        cb_put(b, "true", 4);
        break;
    case JSON_FALSE:
        cb_put(b, "false", 5);
        break;
    case JSON_NULL:
        cb_put(b, "null", 4);
        break;
    default:
        b->failed = -EINVAL;
    }
}

char *mx_json_canonical(const json_t *v, size_t *len)
{
    canon_buf_t b = { 0 };

    canon_value(&b, v, 0);
    if (b.failed || !b.p) {
        free(b.p);
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.p;
}
