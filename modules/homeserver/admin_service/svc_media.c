/*
 * svc_media.c: the admin service's media operations — a user's media
 * (list, delete all, quarantine all), one media's info, deletion and
 * (un)quarantine, protection (`media_protected`: never quarantined
 * wholesale nor deleted by date), deletion by date and size.  Reads local_media directly; deletion and quarantine go
 * through the media part (hs_media_delete / hs_media_quarantine), which
 * also removes files and thumbnails.
 */
#include "svc.h"
#include "../media/media.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SVC_MEDIA_COLS                                                                  \
    "media_id, content_type, upload_name, size, created_ts, last_access_ts,"            \
    " quarantined_by, sha256, user_id"

static json_t *svc_media_json(const mx_sql_res_t *res, int st, int i)
{
    return json_pack("{s:s, s:o, s:o, s:o, s:I, s:o, s:o, s:b, s:o, s:o, s:n}",
                     "media_id", mx_sql_text(res, st, i, 0),
                     "media_type", svc_col_str(res, st, i, 1),
                     "upload_name", svc_col_str(res, st, i, 2),
                     "media_length", svc_col_int(res, st, i, 3),
                     "created_ts", (json_int_t)mx_sql_int(res, st, i, 4),
                     "last_access_ts", svc_col_int(res, st, i, 5),
                     "quarantined_by", svc_col_str(res, st, i, 6),
                     "safe_from_quarantine", 0,
                     "sha256", svc_col_str(res, st, i, 7),
                     "user_id", svc_col_str(res, st, i, 8),
                     "url_cache");
}

static const struct {
    const char *key, *col;
} svc_media_orders[] = {
    { "media_id", "media_id" },           { "upload_name", "COALESCE(upload_name, '')" },
    { "created_ts", "created_ts" },       { "last_access_ts", "COALESCE(last_access_ts, 0)" },
    { "media_length", "COALESCE(size, 0)" }, { "media_type", "COALESCE(content_type, '')" },
    { "quarantined_by", "COALESCE(quarantined_by, '')" },
    { "safe_from_quarantine", "media_id" },
};

static json_t *svc_user_media_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)status;
    int64_t total = mx_sql_int(res, 0, 0, 0);
    int n = mx_sql_nrows(res, 1);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, svc_media_json(res, 1, i));
    json_t *out = json_pack("{s:o, s:I}", "media", arr, "total", (json_int_t)total);
    if (n > 0 && c->n + n < total)
        json_object_set_new(out, "next_token", json_integer(c->n + n));
    return out;
}

int svc_user_media(const char *user_id, const json_t *q, hs_admin_done_fn cb, void *ud)
{
    int64_t from = svc_qint(q, "from", 0), limit = svc_qint(q, "limit", 100);
    const char *order = svc_qstr(q, "order_by"), *dir = svc_qstr(q, "dir");
    const char *col = "created_ts";
    if (from < 0 || limit < 0)
        return -EINVAL;
    if (order) {
        size_t k, n = sizeof(svc_media_orders) / sizeof(svc_media_orders[0]);
        for (k = 0; k < n && strcmp(svc_media_orders[k].key, order); k++)
            ;
        if (k == n)
            return -EINVAL;
        col = svc_media_orders[k].col;
    }
    svc_call_t *c = svc_page_call(from, cb, ud);
    if (!c)
        return -ENOMEM;
    const char *d = svc_sql_dir(dir);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT COUNT(*) FROM local_media WHERE user_id = ?", "s", user_id);
        mx_sql_add(b, mx_psprintf(c->pool, "SELECT " SVC_MEDIA_COLS " FROM local_media"
                                           " WHERE user_id = ? ORDER BY %s %s, media_id %s"
                                           " LIMIT ? OFFSET ?", col, d, d),
                   "sii", user_id, limit, from);
    }
    return svc_run(c, b, svc_user_media_built);
}

static json_t *svc_media_info_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return NULL;
    }
    return json_pack("{s:o}", "media_info", svc_media_json(res, 0, 0));
}

int svc_media_info(const char *media_id, hs_admin_done_fn cb, void *ud)
{
    return svc_read_one("SELECT " SVC_MEDIA_COLS " FROM local_media WHERE media_id = ?",
                        media_id, svc_media_info_built, cb, ud);
}

/* --------------------------------------------------- one media's writes --- */

static void svc_media_done(int status, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        if (status == -ENOENT)
            svc_fail(c, -ENOENT, "M_NOT_FOUND", "Unknown media");
        else
            svc_finish(c, status, NULL);
        return;
    }
    if (c->flag)
        svc_finish(c, 0, json_pack("{s:[s], s:i}", "deleted_media", c->str, "total", 1));
    else
        svc_finish(c, 0, json_object());
}

int svc_delete_media(const char *media_id, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->str = mx_pstrdup(c->pool, media_id);
    c->flag = true;
    int rc = hs_media_delete(c->str, svc_media_done, c);
    if (rc < 0)
        svc_call_free(c);
    return rc;
}

int svc_quarantine_media(const char *media_id, const char *by_user, hs_admin_done_fn cb,
                         void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->str = mx_pstrdup(c->pool, media_id);
    int rc = hs_media_quarantine(c->str, by_user, svc_media_done, c);
    if (rc < 0)
        svc_call_free(c);
    return rc;
}

/* ---------------------------------------------------- all of a user's --- */

typedef struct svc_each {
    svc_call_t *c;
    json_t *ids;
    size_t next;
    json_t *done_ids;
} svc_each_t;

static void svc_each_next(svc_each_t *e);

static void svc_each_step(int status, void *ud)
{
    svc_each_t *e = ud;
    if (status == 0)
        json_array_append(e->done_ids, json_array_get(e->ids, e->next - 1));
    svc_each_next(e);
}

static void svc_each_next(svc_each_t *e)
{
    svc_call_t *c = e->c;
    while (e->next < json_array_size(e->ids)) {
        const char *id = json_string_value(json_array_get(e->ids, e->next++));
        int rc = c->flag ? hs_media_delete(id, svc_each_step, e)
                         : hs_media_quarantine(id, c->str, svc_each_step, e);
        if (rc == 0)
            return;
    }
    json_t *out = c->flag ? json_pack("{s:O, s:I}", "deleted_media", e->done_ids, "total",
                                      (json_int_t)json_array_size(e->done_ids))
                          : json_pack("{s:I}", "num_quarantined",
                                      (json_int_t)json_array_size(e->done_ids));
    json_decref(e->ids);
    json_decref(e->done_ids);
    free(e);
    svc_finish(c, 0, out);
}

static void svc_each_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    svc_each_t *e = calloc(1, sizeof(*e));
    if (!e) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    e->c = c;
    e->ids = json_array();
    e->done_ids = json_array();
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        json_array_append_new(e->ids, json_string(mx_sql_text(res, 0, i, 0)));
    svc_each_next(e);
}

static int svc_each_start(const char *user_id, bool del, const char *by_user,
                          hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->flag = del;
    c->str = by_user ? mx_pstrdup(c->pool, by_user) : NULL;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    /* Protected media is never quarantined wholesale. */
    if (b)
        mx_sql_add(b, "SELECT media_id FROM local_media WHERE user_id = ? AND (? = 1 OR"
                      " media_id NOT IN (SELECT media_id FROM media_protected))"
                      " ORDER BY media_id", "si", user_id, (int64_t)del);
    return svc_run_raw(c, b, svc_each_read);
}

int svc_delete_user_media(const char *user_id, hs_admin_done_fn cb, void *ud)
{
    return svc_each_start(user_id, true, NULL, cb, ud);
}

int svc_quarantine_user_media(const char *user_id, const char *by_user, hs_admin_done_fn cb,
                              void *ud)
{
    return svc_each_start(user_id, false, by_user, cb, ud);
}

/* ------------------------------------------------------ clean-up --- */

int svc_delete_old_media(const json_t *q, hs_admin_done_fn cb, void *ud)
{
    int64_t before = svc_qint(q, "before_ts", -1), size_gt = svc_qint(q, "size_gt", 0);
    bool keep_profiles = svc_qbool(q, "keep_profiles") != 0;
    if (before < 0 || size_gt < 0)
        return -EINVAL;
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    c->flag = true;
    const char *mxc = mx_psprintf(c->pool, "mxc://%s/", hs.server_name);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    /* Last use (or upload) before the date, larger than size_gt, neither
     * quarantined nor protected; with keep_profiles not a user's avatar
     * nor a room's. */
    if (b)
        mx_sql_add(b, "SELECT m.media_id FROM local_media m"
                      " WHERE COALESCE(m.last_access_ts, m.created_ts) < ?"
                      " AND COALESCE(m.size, 0) > ? AND m.quarantined_by IS NULL"
                      " AND m.media_id NOT IN (SELECT media_id FROM media_protected)"
                      " AND (? = 0 OR (NOT EXISTS (SELECT 1 FROM profiles p"
                      "   WHERE p.avatar_url = ? || m.media_id)"
                      "  AND NOT EXISTS (SELECT 1 FROM current_state cs JOIN events e"
                      "   ON e.event_id = cs.event_id WHERE cs.type = 'm.room.avatar'"
                      "   AND e.json LIKE '%' || ? || m.media_id || '%')))"
                      " ORDER BY m.media_id",
                   "iiiss", before, size_gt, (int64_t)keep_profiles, mxc, mxc);
    return svc_run_raw(c, b, svc_each_read);
}

int svc_purge_remote_media(int64_t before_ts, hs_admin_done_fn cb, void *ud)
{
    if (before_ts < 0)
        return -EINVAL;
    /* Remote media is fetched over federation, which is not built yet:
     * nothing is ever cached, so nothing goes. */
    cb(0, json_pack("{s:i}", "deleted", 0), ud);
    return 0;
}

static json_t *svc_protect_built(svc_call_t *c, const mx_sql_res_t *res, int *status)
{
    (void)c;
    if (mx_sql_nrows(res, 0) < 1) {
        *status = -ENOENT;
        return json_pack("{s:s, s:s}", "errcode", "M_NOT_FOUND", "error", "Unknown media");
    }
    return json_object();
}

int svc_protect_media(const char *media_id, bool protect, hs_admin_done_fn cb, void *ud)
{
    svc_call_t *c = svc_call_new(cb, ud);
    if (!c)
        return -ENOMEM;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM local_media WHERE media_id = ?", "s", media_id);
        if (protect)
            mx_sql_add(b, "INSERT INTO media_protected (media_id) SELECT media_id FROM"
                          " local_media WHERE media_id = ? ON CONFLICT (media_id) DO NOTHING",
                       "s", media_id);
        else
            mx_sql_add(b, "DELETE FROM media_protected WHERE media_id = ?", "s", media_id);
    }
    return svc_run(c, b, svc_protect_built);
}
