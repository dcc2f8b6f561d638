/*
 * pu_eval.c: push rule evaluation — pure code (no storage, no loop), unit
 * tested by tests/test_push.c.
 *
 * Rules are walked in the spec's order: .m.rule.master, the user's override
 * rules, the other server-default override rules, then content (user, then
 * default), room, sender, underride (user, then default).  The first enabled
 * rule whose conditions all hold decides; its actions say whether the event
 * notifies and with which tweaks.  Server-default rules carry placeholders
 * for the owner's Matrix ID and localpart (pu_rules_default.c), resolved
 * here from the evaluation input, so users who changed nothing share one
 * ruleset.
 */
#include "push.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const pu_kinds[PU_NKINDS] = { "override", "content", "room", "sender", "underride" };

int pu_kind_index(const char *kind)
{
    for (int i = 0; kind && i < PU_NKINDS; i++)
        if (strcmp(kind, pu_kinds[i]) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------ key paths --- */

const json_t *pu_event_value(const json_t *event, const char *key)
{
    char seg[256];
    const json_t *cur = event;
    const char *p = key;
    if (!key || !*key)
        return NULL;
    for (;;) {
        size_t n = 0;
        while (*p && *p != '.') {
            char c = *p++;
            if (c == '\\' && (*p == '.' || *p == '\\'))
                c = *p++;
            if (n + 1 >= sizeof(seg))
                return NULL;
            seg[n++] = c;
        }
        seg[n] = '\0';
        if (!json_is_object(cur))
            return NULL;
        cur = json_object_get(cur, seg);
        if (!cur)
            return NULL;
        if (*p == '\0')
            return cur;
        p++; /* the separating dot */
    }
}

/* ----------------------------------------------------------------- glob --- */

static bool pu_isword(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Length of the UTF-8 sequence at s (1 for stray bytes), never past end. */
static size_t pu_u8len(const char *s, const char *end)
{
    size_t n = 1;
    while (s + n < end && ((unsigned char)s[n] & 0xC0) == 0x80)
        n++;
    return n;
}

/* Matches one pattern element (not '*') at s.  Sets *np past the element
 * and *adv to the bytes consumed. */
static bool pu_one(const char *p, const char *s, const char *end, const char **np, size_t *adv)
{
    if (*p == '?') {
        *np = p + 1;
        *adv = pu_u8len(s, end);
        return true;
    }
    if (*p == '[') {
        const char *q = p + 1;
        bool neg = false;
        if (*q == '!' || *q == '^') {
            neg = true;
            q++;
        }
        const char *close = strchr(q + (*q == ']' ? 1 : 0), ']');
        if (close) {
            unsigned char c = (unsigned char)tolower((unsigned char)*s);
            bool in = false;
            for (const char *r = q; r < close; r++) {
                unsigned char lo = (unsigned char)tolower((unsigned char)*r), hi = lo;
                if (r + 2 < close && r[1] == '-') {
                    hi = (unsigned char)tolower((unsigned char)r[2]);
                    r += 2;
                }
                if (c >= lo && c <= hi)
                    in = true;
            }
            *np = close + 1;
            *adv = 1;
            return in != neg;
        }
        /* No closing bracket: a literal '['. */
    }
    *np = p + 1;
    *adv = 1;
    return tolower((unsigned char)*p) == tolower((unsigned char)*s);
}

/* Glob at `s`: the whole pattern must match, ending at `end` (or, in word
 * mode, at a word boundary).  One backtrack point (the last '*') suffices
 * because a later star can absorb whatever an earlier one would have. */
static bool pu_glob_at(const char *p, const char *s, const char *end, bool words)
{
    const char *star_p = NULL, *star_s = NULL;
    for (;;) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            star_p = p;
            star_s = s;
            continue;
        }
        if (*p == '\0') {
            if (s == end || (words && !pu_isword((unsigned char)*s)))
                return true;
        } else if (s < end) {
            const char *np;
            size_t adv;
            if (pu_one(p, s, end, &np, &adv)) {
                p = np;
                s += adv;
                continue;
            }
        }
        if (!star_p || star_s >= end)
            return false;
        star_s += pu_u8len(star_s, end);
        s = star_s;
        p = star_p;
    }
}

bool pu_glob(const char *pattern, const char *value, bool words)
{
    if (!pattern || !value)
        return false;
    const char *end = value + strlen(value);
    if (!words)
        return pu_glob_at(pattern, value, end, false);
    for (const char *s = value; s <= end; s++) {
        if (s > value && pu_isword((unsigned char)s[-1]))
            continue;
        if (pu_glob_at(pattern, s, end, true))
            return true;
        if (s == end)
            break;
    }
    return false;
}

/* Literal, case-insensitive, word-bounded search (contains_display_name). */
static bool pu_contains_words(const char *value, const char *needle)
{
    size_t n = strlen(needle), len = strlen(value);
    if (!n)
        return false;
    for (size_t i = 0; i + n <= len; i++) {
        if (i > 0 && pu_isword((unsigned char)value[i - 1]))
            continue;
        if (strncasecmp(value + i, needle, n) != 0)
            continue;
        if (i + n == len || !pu_isword((unsigned char)value[i + n]))
            return true;
    }
    return false;
}

/* ----------------------------------------------------------- conditions --- */

static const char *pu_localpart(const char *user_id, char *buf, size_t len)
{
    if (!user_id || user_id[0] != '@')
        return NULL;
    const char *colon = strchr(user_id, ':');
    size_t n = colon ? (size_t)(colon - user_id - 1) : strlen(user_id + 1);
    if (n + 1 > len)
        return NULL;
    memcpy(buf, user_id + 1, n);
    buf[n] = '\0';
    return buf;
}

/* Scalars the spec allows in exact matches. */
static bool pu_simple(const json_t *v)
{
    return json_is_string(v) || json_is_integer(v) || json_is_boolean(v) || json_is_null(v);
}

static bool pu_same(const json_t *a, const json_t *b)
{
    if (!pu_simple(a) || !pu_simple(b))
        return false;
    if (json_is_boolean(a) || json_is_boolean(b))
        return json_is_boolean(a) && json_is_boolean(b) && json_is_true(a) == json_is_true(b);
    return json_equal((json_t *)a, (json_t *)b);
}

static int pu_member_count(const char *is, int64_t count)
{
    if (!is)
        return 0;
    int op = 0; /* 0 ==, 1 <, 2 >, 3 <=, 4 >= */
    if (strncmp(is, "==", 2) == 0)
        is += 2;
    else if (strncmp(is, "<=", 2) == 0)
        op = 3, is += 2;
    else if (strncmp(is, ">=", 2) == 0)
        op = 4, is += 2;
    else if (*is == '<')
        op = 1, is++;
    else if (*is == '>')
        op = 2, is++;
    if (*is < '0' || *is > '9')
        return 0;
    char *end;
    long long n = strtoll(is, &end, 10);
    if (*end)
        return 0;
    switch (op) {
    case 1: return count < n;
    case 2: return count > n;
    case 3: return count <= n;
    case 4: return count >= n;
    default: return count == n;
    }
}

int pu_condition(const json_t *cond, const pu_eval_in_t *in)
{
    const char *kind = json_string_value(json_object_get(cond, "kind"));
    if (!kind)
        return 0;
    if (strcmp(kind, "event_match") == 0) {
        const char *key = json_string_value(json_object_get(cond, "key"));
        const char *pattern = json_string_value(json_object_get(cond, "pattern"));
        const char *ptype = json_string_value(json_object_get(cond, "pattern_type"));
        char lp[256];
        if (!pattern && ptype)
            pattern = strcmp(ptype, "user_id") == 0 ? in->user_id
                      : strcmp(ptype, "user_localpart") == 0
                          ? pu_localpart(in->user_id, lp, sizeof(lp))
                          : NULL;
        if (!key || !pattern)
            return 0;
        const json_t *v = pu_event_value(in->event, key);
        if (!v && strcmp(key, "room_id") == 0 && in->room_id)
            return pu_glob(pattern, in->room_id, false);
        if (!json_is_string(v))
            return 0;
        return pu_glob(pattern, json_string_value(v), strcmp(key, "content.body") == 0);
    }
    if (strcmp(kind, "event_property_is") == 0 || strcmp(kind, "event_property_contains") == 0) {
        const char *key = json_string_value(json_object_get(cond, "key"));
        const json_t *want = json_object_get(cond, "value");
        json_t *uid = NULL;
        const char *vtype = json_string_value(json_object_get(cond, "value_type"));
        if (!want && vtype && strcmp(vtype, "user_id") == 0 && in->user_id)
            want = uid = json_string(in->user_id);
        int r = 0;
        const json_t *v = key && want ? pu_event_value(in->event, key) : NULL;
        if (v && kind[15] == 'i') {
            r = pu_same(v, want);
        } else if (json_is_array(v)) {
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e) {
                if (pu_same(e, want)) {
                    r = 1;
                    break;
                }
            }
        }
        json_decref(uid);
        return r;
    }
    if (strcmp(kind, "contains_display_name") == 0) {
        const char *body = json_string_value(pu_event_value(in->event, "content.body"));
        if (!body || !in->display_name || !*in->display_name)
            return 0;
        return pu_contains_words(body, in->display_name);
    }
    if (strcmp(kind, "room_member_count") == 0)
        return pu_member_count(json_string_value(json_object_get(cond, "is")), in->member_count);
    if (strcmp(kind, "sender_notification_permission") == 0) {
        const char *key = json_string_value(json_object_get(cond, "key"));
        if (!key)
            return 0;
        const json_t *lv = json_object_get(json_object_get(in->power_levels, "notifications"), key);
        int64_t need = json_is_integer(lv) ? json_integer_value(lv) : 50;
        return in->sender_power >= need;
    }
    return 0; /* unknown conditions never match */
}

/* ------------------------------------------------------------- the walk --- */

static bool pu_has_mentions(const json_t *event)
{
    return json_object_get(json_object_get(event, "content"), "m.mentions") != NULL;
}

/* Does a rule of `kind` match?  Rules of kind room/sender/content have
 * implied conditions. */
static bool pu_rule_matches(int kind, const json_t *rule, const pu_eval_in_t *in)
{
    const char *rid = json_string_value(json_object_get(rule, "rule_id"));
    if (json_is_true(json_object_get(rule, "_legacy")) && pu_has_mentions(in->event))
        return false;
    switch (kind) {
    case 1: { /* content */
        json_t *c = json_pack("{s:s, s:s}", "kind", "event_match", "key", "content.body");
        json_t *p = json_object_get(rule, "pattern");
        json_t *pt = json_object_get(rule, "pattern_type");
        if (p)
            json_object_set(c, "pattern", p);
        if (pt)
            json_object_set(c, "pattern_type", pt);
        int r = pu_condition(c, in);
        json_decref(c);
        return r;
    }
    case 2: { /* room */
        const char *room = json_string_value(json_object_get(in->event, "room_id"));
        if (!room)
            room = in->room_id;
        return rid && room && strcmp(rid, room) == 0;
    }
    case 3: { /* sender */
        const char *sender = json_string_value(json_object_get(in->event, "sender"));
        return rid && sender && strcmp(rid, sender) == 0;
    }
    default: {
        const json_t *conds = json_object_get(rule, "conditions");
        size_t i;
        const json_t *c;
        json_array_foreach(conds, i, c) {
            if (!pu_condition(c, in))
                return false;
        }
        return true;
    }
    }
}

static void pu_apply_actions(const json_t *actions, pu_eval_out_t *out)
{
    size_t i;
    const json_t *a;
    out->notify = out->highlight = false;
    out->sound = NULL;
    out->actions = actions;
    json_array_foreach(actions, i, a) {
        if (json_is_string(a)) {
            if (strcmp(json_string_value(a), "notify") == 0)
                out->notify = true;
            continue;
        }
        const char *tw = json_string_value(json_object_get(a, "set_tweak"));
        if (!tw)
            continue;
        const json_t *v = json_object_get(a, "value");
        if (strcmp(tw, "highlight") == 0)
            out->highlight = !v || json_is_true(v);
        else if (strcmp(tw, "sound") == 0 && json_is_string(v))
            out->sound = json_string_value(v);
    }
}

/* A server-default rule: the user's enabled/actions override, if any. */
static const json_t *pu_default_override(const pu_rules_t *r, int kind, const char *rid)
{
    if (!r || !r->dflt || !rid)
        return NULL;
    char key[300];
    snprintf(key, sizeof(key), "%s/%s", pu_kinds[kind], rid);
    return json_object_get(r->dflt, key);
}

/* Tries one rule; true when it decided. */
static bool pu_try(int kind, const json_t *rule, bool is_default, const pu_rules_t *r,
                   const pu_eval_in_t *in, pu_eval_out_t *out)
{
    const json_t *enabled = json_object_get(rule, "enabled");
    const json_t *actions = json_object_get(rule, "actions");
    if (is_default) {
        const json_t *ov = pu_default_override(r, kind,
                                               json_string_value(json_object_get(rule, "rule_id")));
        if (json_object_get(ov, "enabled"))
            enabled = json_object_get(ov, "enabled");
        if (json_object_get(ov, "actions"))
            actions = json_object_get(ov, "actions");
    }
    if (enabled && !json_is_true(enabled))
        return false;
    if (!pu_rule_matches(kind, rule, in))
        return false;
    pu_apply_actions(actions, out);
    out->rule_id = json_string_value(json_object_get(rule, "rule_id"));
    return true;
}

int pu_evaluate(const json_t *defaults, const pu_rules_t *r, const pu_eval_in_t *in,
                pu_eval_out_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int k = 0; k < PU_NKINDS; k++) {
        const json_t *dl = json_object_get(defaults, pu_kinds[k]);
        const json_t *ul = r && r->custom ? json_object_get(r->custom, pu_kinds[k]) : NULL;
        size_t i;
        const json_t *rule;
        json_array_foreach(dl, i, rule) {
            if (json_is_true(json_object_get(rule, "_prepend")) && pu_try(k, rule, true, r, in, out))
                return 1;
        }
        json_array_foreach(ul, i, rule) {
            if (pu_try(k, rule, false, r, in, out))
                return 1;
        }
        json_array_foreach(dl, i, rule) {
            if (!json_is_true(json_object_get(rule, "_prepend")) && pu_try(k, rule, true, r, in, out))
                return 1;
        }
    }
    return 0;
}

const char *pu_thread_id(const json_t *event)
{
    const json_t *rel = json_object_get(json_object_get(event, "content"), "m.relates_to");
    const char *type = json_string_value(json_object_get(rel, "rel_type"));
    const char *root = json_string_value(json_object_get(rel, "event_id"));
    if (type && root && strcmp(type, "m.thread") == 0)
        return root;
    return "main";
}
