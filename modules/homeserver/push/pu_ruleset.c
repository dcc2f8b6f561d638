/*
 * pu_ruleset.c: a user's push rules as data — pure code, unit tested.
 *
 * A user's changes are kept apart from the server-default rules: `custom`
 * holds the user-defined rules per kind in priority order, `dflt` the
 * enabled/actions overrides of server-default rules.  pu_render merges them
 * into the ruleset clients see (GET /pushrules/, m.push_rules); the edit
 * functions implement PUT/DELETE and the enabled/actions attributes.
 */
#include "push.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static json_t *pu_list(json_t *custom, const char *kind, bool create)
{
    json_t *l = json_object_get(custom, kind);
    if (!json_is_array(l) && create) {
        l = json_array();
        json_object_set_new(custom, kind, l);
    }
    return l;
}

static ssize_t pu_index(const json_t *list, const char *rule_id)
{
    size_t i;
    const json_t *r;
    json_array_foreach(list, i, r) {
        const char *id = json_string_value(json_object_get(r, "rule_id"));
        if (id && strcmp(id, rule_id) == 0)
            return (ssize_t)i;
    }
    return -1;
}

static const json_t *pu_default_rule(const json_t *defaults, const char *kind, const char *rule_id)
{
    const json_t *l = json_object_get(defaults, kind);
    ssize_t i = pu_index(l, rule_id);
    return i < 0 ? NULL : json_array_get(l, (size_t)i);
}

/* ------------------------------------------------------------- rendering --- */

static json_t *pu_render_default(const json_t *rule, const pu_rules_t *r, const char *kind,
                                 const char *user_id)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    char lp[256] = "";
    if (user_id && user_id[0] == '@') {
        const char *colon = strchr(user_id, ':');
        size_t n = colon ? (size_t)(colon - user_id - 1) : strlen(user_id + 1);
        if (n < sizeof(lp)) {
            memcpy(lp, user_id + 1, n);
            lp[n] = '\0';
        }
    }
    json_object_foreach((json_t *)rule, k, v) {
        if (k[0] == '_')
            continue;
        if (strcmp(k, "pattern_type") == 0) {
            const char *t = json_string_value(v);
            json_object_set_new(out, "pattern",
                                json_string(t && strcmp(t, "user_id") == 0 ? (user_id ? user_id : "")
                                                                           : lp));
            continue;
        }
        if (strcmp(k, "conditions") == 0) {
            json_t *conds = json_array();
            size_t i;
            json_t *c;
            json_array_foreach(v, i, c) {
                json_t *cc = json_deep_copy(c);
                const char *pt = json_string_value(json_object_get(cc, "pattern_type"));
                const char *vt = json_string_value(json_object_get(cc, "value_type"));
                if (pt) {
                    json_object_set_new(cc, "pattern",
                                        json_string(strcmp(pt, "user_id") == 0 ? (user_id ? user_id : "")
                                                                               : lp));
                    json_object_del(cc, "pattern_type");
                }
                if (vt) {
                    json_object_set_new(cc, "value", json_string(user_id ? user_id : ""));
                    json_object_del(cc, "value_type");
                }
                json_array_append_new(conds, cc);
            }
            json_object_set_new(out, "conditions", conds);
            continue;
        }
        json_object_set_new(out, k, json_deep_copy(v));
    }
    if (r && r->dflt) {
        char key[300];
        snprintf(key, sizeof(key), "%s/%s", kind,
                 json_string_value(json_object_get(rule, "rule_id")));
        const json_t *ov = json_object_get(r->dflt, key);
        if (json_object_get(ov, "enabled"))
            json_object_set(out, "enabled", json_object_get(ov, "enabled"));
        if (json_object_get(ov, "actions"))
            json_object_set_new(out, "actions", json_deep_copy(json_object_get(ov, "actions")));
    }
    return out;
}

static json_t *pu_render_custom(const json_t *rule, int kind)
{
    json_t *out = json_pack("{s:O, s:b, s:b, s:O}", "rule_id", json_object_get(rule, "rule_id"),
                            "default", 0, "enabled",
                            json_is_false(json_object_get(rule, "enabled")) ? 0 : 1, "actions",
                            json_object_get(rule, "actions"));
    if (!out)
        return NULL;
    if (kind == 0 || kind == 4)
        json_object_set_new(out, "conditions",
                            json_deep_copy(json_object_get(rule, "conditions")
                                               ? json_object_get(rule, "conditions")
                                               : json_array()));
    if (kind == 1 && json_object_get(rule, "pattern"))
        json_object_set(out, "pattern", json_object_get(rule, "pattern"));
    return out;
}

json_t *pu_render(const json_t *defaults, const pu_rules_t *r, const char *user_id)
{
    json_t *set = json_object();
    for (int k = 0; k < PU_NKINDS; k++) {
        json_t *out = json_array();
        const json_t *dl = json_object_get(defaults, pu_kinds[k]);
        const json_t *ul = r && r->custom ? json_object_get(r->custom, pu_kinds[k]) : NULL;
        size_t i;
        const json_t *rule;
        json_array_foreach(dl, i, rule) {
            if (json_is_true(json_object_get(rule, "_prepend")))
                json_array_append_new(out, pu_render_default(rule, r, pu_kinds[k], user_id));
        }
        json_array_foreach(ul, i, rule) {
            json_array_append_new(out, pu_render_custom(rule, k));
        }
        json_array_foreach(dl, i, rule) {
            if (!json_is_true(json_object_get(rule, "_prepend")))
                json_array_append_new(out, pu_render_default(rule, r, pu_kinds[k], user_id));
        }
        json_object_set_new(set, pu_kinds[k], out);
    }
    return set;
}

json_t *pu_find(const json_t *ruleset, const char *kind, const char *rule_id)
{
    const json_t *l = json_object_get(ruleset, kind);
    ssize_t i = pu_index(l, rule_id);
    return i < 0 ? NULL : json_array_get(l, (size_t)i);
}

/* ----------------------------------------------------------------- edits --- */

bool pu_actions_valid(const json_t *actions)
{
    size_t i;
    const json_t *a;
    if (!json_is_array(actions))
        return false;
    json_array_foreach(actions, i, a) {
        if (json_is_string(a)) {
            const char *s = json_string_value(a);
            if (strcmp(s, "notify") && strcmp(s, "dont_notify") && strcmp(s, "coalesce"))
                return false;
        } else if (!json_is_object(a) || !json_is_string(json_object_get(a, "set_tweak"))) {
            return false;
        }
    }
    return true;
}

static int pu_ensure(pu_rules_t *r)
{
    if (!r->custom)
        r->custom = json_object();
    if (!r->dflt)
        r->dflt = json_object();
    return r->custom && r->dflt ? 0 : -ENOMEM;
}

int pu_rule_put(pu_rules_t *r, const char *kind, const char *rule_id, json_t *rule,
                const char *before, const char *after)
{
    int k = pu_kind_index(kind);
    if (k < 0 || !rule_id || !json_is_object(rule) || pu_ensure(r) < 0) {
        json_decref(rule);
        return -EINVAL;
    }
    json_t *list = pu_list(r->custom, kind, true);
    ssize_t cur = pu_index(list, rule_id);
    const char *anchor = before && *before ? before : after && *after ? after : NULL;
    if (anchor && (strcmp(anchor, rule_id) == 0 || pu_index(list, anchor) < 0)) {
        json_decref(rule);
        return -ENOENT;
    }
    json_object_set_new(rule, "rule_id", json_string(rule_id));
    if (cur >= 0) {
        /* An update keeps the rule's enabled state. */
        json_t *old = json_array_get(list, (size_t)cur);
        json_object_set(rule, "enabled", json_object_get(old, "enabled") ? json_object_get(old, "enabled")
                                                                         : json_true());
        if (!anchor) {
            json_array_set_new(list, (size_t)cur, rule);
            return 0;
        }
        json_array_remove(list, (size_t)cur);
    } else {
        json_object_set_new(rule, "enabled", json_true());
    }
    size_t at = 0;
    if (anchor) {
        at = (size_t)pu_index(list, anchor);
        if (!(before && *before))
            at++;
    }
    json_array_insert_new(list, at, rule);
    return 0;
}

int pu_rule_delete(pu_rules_t *r, const json_t *defaults, const char *kind, const char *rule_id)
{
    if (pu_kind_index(kind) < 0)
        return -ENOENT;
    json_t *list = r && r->custom ? pu_list(r->custom, kind, false) : NULL;
    ssize_t i = pu_index(list, rule_id);
    if (i < 0)
        return pu_default_rule(defaults, kind, rule_id) ? -EPERM : -ENOENT;
    json_array_remove(list, (size_t)i);
    return 0;
}

/* The place an attribute goes: the user rule itself, or the override
 * entry of a server-default rule.  NULL when there is no such rule. */
static json_t *pu_attr_target(pu_rules_t *r, const json_t *defaults, const char *kind,
                              const char *rule_id)
{
    if (pu_kind_index(kind) < 0 || pu_ensure(r) < 0)
        return NULL;
    json_t *list = pu_list(r->custom, kind, false);
    ssize_t i = pu_index(list, rule_id);
    if (i >= 0)
        return json_array_get(list, (size_t)i);
    if (!pu_default_rule(defaults, kind, rule_id))
        return NULL;
    char key[300];
    snprintf(key, sizeof(key), "%s/%s", kind, rule_id);
    json_t *ov = json_object_get(r->dflt, key);
    if (!ov) {
        ov = json_object();
        json_object_set_new(r->dflt, key, ov);
    }
    return ov;
}

int pu_rule_set_enabled(pu_rules_t *r, const json_t *defaults, const char *kind,
                        const char *rule_id, bool enabled)
{
    json_t *t = pu_attr_target(r, defaults, kind, rule_id);
    if (!t)
        return -ENOENT;
    json_object_set_new(t, "enabled", json_boolean(enabled));
    return 0;
}

int pu_rule_set_actions(pu_rules_t *r, const json_t *defaults, const char *kind,
                        const char *rule_id, const json_t *actions)
{
    json_t *t = pu_attr_target(r, defaults, kind, rule_id);
    if (!t)
        return -ENOENT;
    json_object_set_new(t, "actions", json_deep_copy(actions));
    return 0;
}

/* --------------------------------------------------------------- storage --- */

char *pu_rules_dump(const pu_rules_t *r)
{
    json_t *doc = json_pack("{s:O?, s:O?}", "custom", r->custom, "dflt", r->dflt);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

int pu_rules_load(pu_rules_t *r, const char *text)
{
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    if (!json_is_object(doc)) {
        json_decref(doc);
        return -EINVAL;
    }
    pu_rules_clear(r);
    json_t *c = json_object_get(doc, "custom"), *d = json_object_get(doc, "dflt");
    r->custom = json_is_object(c) ? json_incref(c) : json_object();
    r->dflt = json_is_object(d) ? json_incref(d) : json_object();
    json_decref(doc);
    return 0;
}

void pu_rules_clear(pu_rules_t *r)
{
    json_decref(r->custom);
    json_decref(r->dflt);
    r->custom = r->dflt = NULL;
}

int pu_rules_copy(pu_rules_t *dst, const pu_rules_t *src)
{
    dst->custom = src->custom ? json_deep_copy(src->custom) : NULL;
    dst->dflt = src->dflt ? json_deep_copy(src->dflt) : NULL;
    if ((src->custom && !dst->custom) || (src->dflt && !dst->dflt)) {
        pu_rules_clear(dst);
        return -ENOMEM;
    }
    return 0;
}
