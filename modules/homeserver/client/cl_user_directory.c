/*
 * cl_user_directory.c: POST /user_directory/search.  Like Synapse with
 * its default `user_directory.search_all_users: false`, the scope is the
 * users who share a joined room with the requester (the requester not
 * counting as sharing a room with themself) plus the users joined to
 * public rooms (join rule "public" or history visibility
 * "world_readable").  Every word of the search term must match the
 * localpart or the display name, case-insensitively (substring match;
 * Synapse matches word prefixes, which this includes).
 *
 * The query reads the rooms part's room_memberships / current_state /
 * events tables read-only.  A room's join rule is recognised in the stored
 * canonical JSON of its current m.room.join_rules event, which avoids a
 * per-room load; canonical JSON has no spaces, so the match is exact.
 */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#define UD_DEFAULT_LIMIT 10
#define UD_MAX_LIMIT 100
#define UD_MAX_WORDS 5
#define UD_MAX_TERM 256

typedef struct ud_req {
    mx_req_t *req;
    int64_t limit;
} ud_req_t;

static void ud_got(int status, mx_sql_res_t *res, void *ud)
{
    ud_req_t *u = ud;
    if (status < 0) {
        hs_reply_storage_error(u->req, status, "user directory search");
        return;
    }
    json_t *results = json_array();
    int n = mx_sql_nrows(res, 0);
    for (int i = 0; i < n && i < u->limit; i++) {
        json_t *r = json_pack("{s:s}", "user_id", mx_sql_text(res, 0, i, 0));
        const char *dn = mx_sql_text(res, 0, i, 1);
        const char *av = mx_sql_text(res, 0, i, 2);
        if (dn)
            json_object_set_new(r, "display_name", json_string(dn));
        if (av)
            json_object_set_new(r, "avatar_url", json_string(av));
        json_array_append_new(results, r);
    }
    mx_req_reply_json(u->req, 200, json_pack("{s:o, s:b}", "results", results, "limited",
                                             n > u->limit));
}

/* "%word%" with LIKE wildcards escaped by '!', lower-cased (ASCII). */
static char *ud_pattern(mx_pool_t *pool, const char *w, size_t len)
{
    char *p = mx_palloc(pool, len * 2 + 3);
    if (!p)
        return NULL;
    size_t o = 0;
    p[o++] = '%';
    for (size_t i = 0; i < len; i++) {
        char c = w[i];
        if (c == '%' || c == '_' || c == '!')
            p[o++] = '!';
        p[o++] = (char)tolower((unsigned char)c);
    }
    p[o++] = '%';
    p[o] = '\0';
    return p;
}

static void ud_search_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = mx_req_json(req);
    json_t *term = json_object_get(body, "search_term");
    if (!json_is_string(term)) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "`search_term` is required field");
        return;
    }
    json_t *lim = json_object_get(body, "limit");
    if (lim && !json_is_integer(lim)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "`limit` must be an integer");
        return;
    }
    ud_req_t *u = mx_palloc(mx_req_pool(req), sizeof(*u));
    if (!u) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    u->req = req;
    u->limit = lim ? json_integer_value(lim) : UD_DEFAULT_LIMIT;
    if (u->limit < 0)
        u->limit = 0;
    if (u->limit > UD_MAX_LIMIT)
        u->limit = UD_MAX_LIMIT;

    /* Split the term into words. */
    const char *t = json_string_value(term);
    const char *words[UD_MAX_WORDS];
    size_t lens[UD_MAX_WORDS];
    int nw = 0;
    if (strlen(t) <= UD_MAX_TERM) {
        for (const char *p = t; *p && nw < UD_MAX_WORDS;) {
            while (*p && isspace((unsigned char)*p))
                p++;
            const char *s = p;
            while (*p && !isspace((unsigned char)*p))
                p++;
            if (p > s) {
                words[nw] = s;
                lens[nw++] = (size_t)(p - s);
            }
        }
    }
    if (nw == 0 || u->limit == 0) {
        mx_req_reply_json(req, 200, json_pack("{s:[], s:b}", "results", "limited", 0));
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    char *sql = mx_pstrdup(pool, "SELECT p.user_id, p.displayname, p.avatar_url FROM profiles p"
                                 " WHERE p.hidden = 0");
    for (int i = 0; i < nw && sql; i++)
        sql = mx_psprintf(pool, "%s AND (LOWER(p.localpart) LIKE ? ESCAPE '!'"
                                " OR LOWER(COALESCE(p.displayname, '')) LIKE ? ESCAPE '!')", sql);
    if (sql)
        sql = mx_psprintf(pool,
                          "%s AND (p.user_id IN (SELECT m2.user_id FROM room_memberships m1"
                          " JOIN room_memberships m2 ON m2.room_id = m1.room_id"
                          " WHERE m1.user_id = ? AND m1.membership = 'join' AND m2.membership = 'join'"
                          " AND m2.user_id <> m1.user_id)"
                          " OR p.user_id IN (SELECT m.user_id FROM room_memberships m"
                          " JOIN current_state cs ON cs.room_id = m.room_id AND cs.state_key = ''"
                          " JOIN events e ON e.event_id = cs.event_id"
                          " WHERE m.membership = 'join' AND ((cs.type = 'm.room.join_rules'"
                          " AND e.json LIKE '%%\"join_rule\":\"public\"%%')"
                          " OR (cs.type = 'm.room.history_visibility'"
                          " AND e.json LIKE '%%\"history_visibility\":\"world_readable\"%%'))))"
                          " ORDER BY CASE WHEN p.displayname IS NULL THEN 1 ELSE 0 END,"
                          " CASE WHEN p.avatar_url IS NULL THEN 1 ELSE 0 END, p.user_id LIMIT ?",
                          sql);
    mx_sql_batch_t *b = sql ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    /* mx_sql_add takes a fixed type string: build it with the words'
     * patterns bound in order through one call per word count. */
    char *pat[UD_MAX_WORDS];
    for (int i = 0; i < nw; i++) {
        pat[i] = ud_pattern(pool, words[i], lens[i]);
        if (!pat[i]) {
            mx_sql_batch_free(b);
            mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
            return;
        }
    }
    int64_t lim1 = u->limit + 1;
    const char *me = who->user_id;
    int rc;
    switch (nw) {
    case 1:
        rc = mx_sql_add(b, sql, "sssi", pat[0], pat[0], me, lim1);
        break;
    case 2:
        rc = mx_sql_add(b, sql, "sssssi", pat[0], pat[0], pat[1], pat[1], me, lim1);
        break;
    case 3:
        rc = mx_sql_add(b, sql, "sssssssi", pat[0], pat[0], pat[1], pat[1], pat[2], pat[2], me, lim1);
        break;
    case 4:
        rc = mx_sql_add(b, sql, "sssssssssi", pat[0], pat[0], pat[1], pat[1], pat[2], pat[2],
                        pat[3], pat[3], me, lim1);
        break;
    default:
        rc = mx_sql_add(b, sql, "sssssssssssi", pat[0], pat[0], pat[1], pat[1], pat[2], pat[2],
                        pat[3], pat[3], pat[4], pat[4], me, lim1);
        break;
    }
    if (rc < 0) {
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, rc, "user directory search");
        return;
    }
    rc = mx_sql_run(b, ud_got, u);
    if (rc < 0)
        hs_reply_storage_error(req, rc, "user directory search");
}

static int ud_search_h(mx_req_t *req, void *ud)
{
    return hs_require_auth(req, ud_search_authed, ud);
}

int cl_user_directory_start(void)
{
    return cl_route("POST", "/user_directory/search", ud_search_h, MX_ROUTE_JSON_BODY);
}
