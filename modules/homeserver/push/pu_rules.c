/*
 * pu_rules.c: the push rule endpoints and their storage.
 *
 *   GET    /pushrules/  and  /pushrules/global/       the user's ruleset
 *   GET    /pushrules/global/{kind}/                   one kind's rules
 *   GET    /pushrules/global/{kind}/{ruleId}           one rule
 *   PUT    /pushrules/global/{kind}/{ruleId}           add / replace (before, after)
 *   DELETE /pushrules/global/{kind}/{ruleId}
 *   GET/PUT /pushrules/global/{kind}/{ruleId}/enabled and /actions
 *
 * Every user's rules live in memory (loaded at start; only users who changed
 * something have an entry), so evaluating an event for a room's members
 * needs no storage read.  A change is applied to memory at once (so a
 * second change queued behind it builds on it; write batches complete in
 * submission order), written as the user's whole document in one upsert,
 * and acknowledged after the commit; a failed write puts the previous
 * rules back unless a later change already replaced them.  Each change
 * takes an HS_STREAM_ACCOUNT_DATA position: /sync sends m.push_rules to the
 * user's clients when it is in the range of the sync.
 */
#include "push.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pu_rules_routes(void);

/* ------------------------------------------------------------- storage --- */

int pu_rules_start(char *err, size_t errlen)
{
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b)
        return -ENOMEM;
    mx_sql_add(b, "SELECT user_id, rules, stream_id FROM push_rules_users", "");
    mx_sql_res_t *res = NULL;
    int rc = mx_sql_run_sync(b, &res);
    if (rc < 0) {
        snprintf(err, errlen, "homeserver.push: cannot load push rules: %s",
                 res ? mx_sql_errmsg(res) : "?");
        if (res)
            mx_sql_res_free(res);
        return rc;
    }
    int64_t max = 0;
    for (int i = 0; i < mx_sql_nrows(res, 0); i++) {
        pu_user_t *u = pu_user_make(mx_sql_text(res, 0, i, 0));
        if (!u || pu_rules_load(&u->rules, mx_sql_text(res, 0, i, 1)) < 0) {
            mx_log("homeserver", MX_LOG_WARN, "push: unreadable rules of %s",
                   mx_sql_text(res, 0, i, 0));
            continue;
        }
        u->stream_pos = mx_sql_int(res, 0, i, 2);
        if (u->stream_pos > max)
            max = u->stream_pos;
    }
    mx_sql_res_free(res);
    hs_stream_init(HS_STREAM_ACCOUNT_DATA, max);
    if ((rc = pu_rules_routes()) < 0)
        snprintf(err, errlen, "homeserver.push: cannot add routes (%d)", rc);
    return rc;
}

json_t *pu_push_rules_event(const char *user_id)
{
    pu_user_t *u = pu_user_get(user_id);
    json_t *set = pu_render(pu.defaults, u ? &u->rules : NULL, user_id);
    return json_pack("{s:s, s:{s:o}}", "type", "m.push_rules", "content", "global", set);
}

typedef struct pr_write {
    mx_req_t *req;
    char *user_id;
    pu_rules_t old;       /* the rules before the change (restored on failure) */
    uint64_t version;     /* the user's version this write set */
    int64_t pos;
} pr_write_t;

static void pr_written(int status, mx_sql_res_t *res, void *ud)
{
    pr_write_t *w = ud;
    hs_stream_persisted(HS_STREAM_ACCOUNT_DATA, w->pos);
    pu_user_t *u = pu_user_get(w->user_id);
    if (status < 0) {
        mx_log("homeserver", MX_LOG_ERROR, "push: rules write failed: %s",
               res ? mx_sql_errmsg(res) : "?");
        if (u && u->version == w->version) {
            pu_rules_clear(&u->rules);
            u->rules = w->old;
            w->old.custom = w->old.dflt = NULL;
        }
        hs_reply_storage_error(w->req, status, "push rules write");
    } else {
        const char *uid = w->user_id;
        hs_notify_users(&uid, 1, HS_STREAM_ACCOUNT_DATA);
        mx_req_reply_json(w->req, 200, json_object());
    }
    pu_rules_clear(&w->old);
    free(w->user_id);
    free(w);
}

/* Writes the user's (already changed) rules; `old` (stolen) is what they
 * were.  Replies. */
static void pr_commit(mx_req_t *req, const char *user_id, pu_user_t *u, pu_rules_t *old)
{
    pr_write_t *w = calloc(1, sizeof(*w));
    char *doc = pu_rules_dump(&u->rules);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!w || !doc || !b || !(w->user_id = strdup(user_id))) {
        if (b)
            mx_sql_batch_free(b);
        free(doc);
        if (w) {
            pu_rules_clear(&u->rules);
            u->rules = *old;
            free(w);
        } else {
            pu_rules_clear(old);
        }
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    w->req = req;
    w->old = *old;
    w->version = ++u->version;
    w->pos = hs_stream_next(HS_STREAM_ACCOUNT_DATA);
    u->stream_pos = w->pos;
    mx_sql_add(b, "INSERT INTO push_rules_users (user_id, rules, stream_id) VALUES (?, ?, ?)"
                  " ON CONFLICT (user_id) DO UPDATE SET rules = excluded.rules,"
                  " stream_id = excluded.stream_id", "ssi", user_id, doc, w->pos);
    free(doc);
    if (mx_sql_run(b, pr_written, w) < 0) {
        mx_sql_batch_free(b);
        pr_written(MX_EDB, NULL, w);
    }
}

/* ------------------------------------------------------------ handlers --- */

static bool pr_rule_id_ok(const char *id)
{
    return id && *id && !strchr(id, '/') && !strchr(id, '\\') && strlen(id) <= 255;
}

static int pr_kind(mx_req_t *req, const char **kind)
{
    *kind = mx_req_param(req, "kind");
    if (pu_kind_index(*kind) < 0) {
        mx_req_error(req, 400, "M_UNRECOGNIZED", "Unknown push rule kind");
        return -1;
    }
    return 0;
}

static json_t *pr_ruleset(const hs_user_t *who)
{
    pu_user_t *u = pu_user_get(who->user_id);
    return pu_render(pu.defaults, u ? &u->rules : NULL, who->user_id);
}

static void pr_get_all_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mx_req_reply_json(req, 200, json_pack("{s:o}", "global", pr_ruleset(who)));
}

static int pr_get_all(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pr_get_all_authed, NULL);
}

static void pr_get_global_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    mx_req_reply_json(req, 200, pr_ruleset(who));
}

static int pr_get_global(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pr_get_global_authed, NULL);
}

/* GET /pushrules/global/{kind}/{ruleId}[/attr] ("" rule: the kind's list) */
static void pr_get_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    const char *attr = ud;
    const char *kind, *rid = mx_req_param(req, "ruleId");
    if (pr_kind(req, &kind) < 0)
        return;
    json_t *set = pr_ruleset(who);
    if (!rid || !*rid) {
        /* ".../{kind}" without the trailing slash is not a listing */
        const char *path = mx_req_path(req);
        size_t plen = strlen(path);
        if (attr || plen == 0 || path[plen - 1] != '/') {
            json_decref(set);
            mx_req_error(req, 400, "M_UNRECOGNIZED", "Unrecognized request");
            return;
        }
        mx_req_reply_json(req, 200, json_incref(json_object_get(set, kind)));
        json_decref(set);
        return;
    }
    json_t *rule = pu_find(set, kind, rid);
    if (!rule) {
        json_decref(set);
        mx_req_error(req, 404, "M_NOT_FOUND", "Unknown push rule");
        return;
    }
    json_t *out = attr ? json_pack("{s:O}", attr, json_object_get(rule, attr)) : json_incref(rule);
    json_decref(set);
    mx_req_reply_json(req, 200, out);
}

static int pr_get(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, pr_get_authed, ud);
}

/* Checks a PUT body and builds the stored rule (new reference) or replies
 * 400 and returns NULL. */
static json_t *pr_rule_from_body(mx_req_t *req, const char *kind, const json_t *body)
{
    const json_t *actions = json_object_get(body, "actions");
    if (!actions) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "No actions found");
        return NULL;
    }
    if (!pu_actions_valid(actions)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid actions");
        return NULL;
    }
    json_t *rule = json_pack("{s:O}", "actions", actions);
    int k = pu_kind_index(kind);
    if (k == 0 || k == 4) {
        const json_t *conds = json_object_get(body, "conditions");
        if (!conds) {
            json_decref(rule);
            mx_req_error(req, 400, "M_MISSING_PARAM", "Missing 'conditions'");
            return NULL;
        }
        size_t i;
        const json_t *c;
        bool ok = json_is_array(conds);
        json_array_foreach(conds, i, c) {
            if (!json_is_string(json_object_get(c, "kind")))
                ok = false;
        }
        if (!ok) {
            json_decref(rule);
            mx_req_error(req, 400, "M_INVALID_PARAM", "Condition without 'kind'");
            return NULL;
        }
        json_object_set(rule, "conditions", (json_t *)conds);
    } else if (k == 1) {
        const json_t *pat = json_object_get(body, "pattern");
        if (!json_is_string(pat)) {
            json_decref(rule);
            mx_req_error(req, 400, "M_MISSING_PARAM", "Content rule missing 'pattern'");
            return NULL;
        }
        json_object_set(rule, "pattern", (json_t *)pat);
    }
    return rule;
}

static void pr_put_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *kind, *rid = mx_req_param(req, "ruleId");
    if (pr_kind(req, &kind) < 0)
        return;
    if (!pr_rule_id_ok(rid)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "rule_id may not be empty or contain slashes");
        return;
    }
    if (rid[0] == '.') {
        mx_req_error(req, 400, "M_INVALID_PARAM", "cannot add new rule_ids that start with '.'");
        return;
    }
    json_t *rule = pr_rule_from_body(req, kind, mx_req_json(req));
    if (!rule)
        return;
    pu_user_t *u = pu_user_make(who->user_id);
    pu_rules_t old = { 0 };
    if (!u || pu_rules_copy(&old, &u->rules) < 0) {
        json_decref(rule);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    int rc = pu_rule_put(&u->rules, kind, rid, rule, mx_req_query(req, "before"),
                         mx_req_query(req, "after"));
    if (rc < 0) {
        pu_rules_clear(&old);
        if (rc == -ENOENT)
            mx_req_error(req, 400, "M_UNKNOWN", "before/after rule not found");
        else
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid push rule");
        return;
    }
    pr_commit(req, who->user_id, u, &old);
}

static int pr_put(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pr_put_authed, NULL);
}

static void pr_delete_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *kind, *rid = mx_req_param(req, "ruleId");
    if (pr_kind(req, &kind) < 0)
        return;
    pu_user_t *u = pu_user_get(who->user_id);
    pu_rules_t old = { 0 };
    if (u && pu_rules_copy(&old, &u->rules) < 0) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    int rc = pu_rule_delete(u ? &u->rules : NULL, pu.defaults, kind, rid ? rid : "");
    if (rc < 0) {
        pu_rules_clear(&old);
        if (rc == -EPERM) /* Synapse: 404, the user has no such rule */
            mx_req_error(req, 404, "M_NOT_FOUND", "Server-default rules cannot be deleted");
        else
            mx_req_error(req, 404, "M_NOT_FOUND", "Unknown push rule");
        return;
    }
    pr_commit(req, who->user_id, u, &old);
}

static int pr_delete(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pr_delete_authed, NULL);
}

/* PUT .../enabled and .../actions */
static void pr_put_attr_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    const char *attr = ud;
    const char *kind, *rid = mx_req_param(req, "ruleId");
    if (pr_kind(req, &kind) < 0)
        return;
    const json_t *body = mx_req_json(req);
    const json_t *v = json_object_get(body, attr);
    bool is_enabled = strcmp(attr, "enabled") == 0;
    if (is_enabled ? !json_is_boolean(v) : !pu_actions_valid(v)) {
        mx_req_error(req, 400, v ? "M_INVALID_PARAM" : "M_MISSING_PARAM", "Invalid '%s'", attr);
        return;
    }
    /* An unknown rule is a 404 before anything is allocated. */
    json_t *set = pr_ruleset(who);
    bool known = rid && pu_find(set, kind, rid);
    json_decref(set);
    if (!known) {
        mx_req_error(req, 404, "M_NOT_FOUND", "Unknown push rule");
        return;
    }
    pu_user_t *u = pu_user_make(who->user_id);
    pu_rules_t old = { 0 };
    if (!u || pu_rules_copy(&old, &u->rules) < 0) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    int rc = is_enabled ? pu_rule_set_enabled(&u->rules, pu.defaults, kind, rid, json_is_true(v))
                        : pu_rule_set_actions(&u->rules, pu.defaults, kind, rid, v);
    if (rc < 0) {
        pu_rules_clear(&old);
        mx_req_error(req, 404, "M_NOT_FOUND", "Unknown push rule");
        return;
    }
    pr_commit(req, who->user_id, u, &old);
}

static int pr_put_attr(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, pr_put_attr_authed, ud);
}

static int pr_put_enabled(mx_req_t *req, void *ud)
{
    (void)ud;
    return pr_put_attr(req, "enabled");
}

static int pr_put_actions(mx_req_t *req, void *ud)
{
    (void)ud;
    return pr_put_attr(req, "actions");
}

static int pr_get_rule(mx_req_t *req, void *ud)
{
    (void)ud;
    return pr_get(req, NULL);
}

static int pr_get_enabled(mx_req_t *req, void *ud)
{
    (void)ud;
    return pr_get(req, "enabled");
}

static int pr_get_actions(mx_req_t *req, void *ud)
{
    (void)ud;
    return pr_get(req, "actions");
}

/* Paths under /pushrules that name no scope, template or attribute we know
 * ("/pushrules/global", an unknown scope, an unknown attribute...): 400
 * M_UNRECOGNIZED, as Synapse answers them. */
static void pr_unrecognized_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)who;
    (void)ud;
    mx_req_error(req, 400, "M_UNRECOGNIZED", "Unrecognized request");
}

static int pr_unrecognized(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, pr_unrecognized_authed, NULL);
}

static int pu_rules_routes(void)
{
    static const char *const bad[] = {
        "/pushrules/global", "/pushrules/{scope}/", "/pushrules/{scope}/{kind}/{ruleId}",
        "/pushrules/global/{kind}/{ruleId}/{attr}",
    };
    static const char *const methods[] = { "GET", "PUT", "DELETE" };
    int rc;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
            if ((rc = pu_route(methods[m], bad[i], pr_unrecognized, 0)) < 0)
                return rc;
    if ((rc = pu_route("PUT", "/pushrules/", pr_unrecognized, 0)) < 0 ||
        (rc = pu_route("GET", "/pushrules/", pr_get_all, 0)) < 0 ||
        (rc = pu_route("GET", "/pushrules/global/", pr_get_global, 0)) < 0 ||
        (rc = pu_route("GET", "/pushrules/global/{kind}/{ruleId}", pr_get_rule, 0)) < 0 ||
        (rc = pu_route("PUT", "/pushrules/global/{kind}/{ruleId}", pr_put, MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = pu_route("DELETE", "/pushrules/global/{kind}/{ruleId}", pr_delete, 0)) < 0 ||
        (rc = pu_route("GET", "/pushrules/global/{kind}/{ruleId}/enabled", pr_get_enabled, 0)) < 0 ||
        (rc = pu_route("PUT", "/pushrules/global/{kind}/{ruleId}/enabled", pr_put_enabled,
                       MX_ROUTE_JSON_BODY)) < 0 ||
        (rc = pu_route("GET", "/pushrules/global/{kind}/{ruleId}/actions", pr_get_actions, 0)) < 0 ||
        (rc = pu_route("PUT", "/pushrules/global/{kind}/{ruleId}/actions", pr_put_actions,
                       MX_ROUTE_JSON_BODY)) < 0)
        return rc;
    return 0;
}
