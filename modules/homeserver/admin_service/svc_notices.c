/*
 * svc_notices.c: server notices (Synapse's POST /_synapse/admin/v1/
 * send_server_notice), configured by Synapse's top-level `server_notices`
 * section: system_mxid_localpart (turns the feature on),
 * system_mxid_display_name, system_mxid_avatar_url, room_name (default
 * "Server Notices"), room_avatar_url, room_topic, auto_join.
 *
 * The system user is created on first use.  Each user has one notices
 * room (`server_notice_rooms`), made by the system user on first use: the
 * user is invited (joined with auto_join), everyone but the system user
 * has power level -10 so only it can post, and the room carries the
 * user's m.server_notice tag.  When the user has left it, a new one is
 * made.  The notice is sent by the system user through the rooms pipeline.
 */
#include "svc.h"
#include "../rooms/rooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct svc_notice {
    svc_call_t *c;             /* c->user_id: the target; c->args: the body */
    const char *sys;           /* the system user (pool) */
    const json_t *conf;        /* server_notices (borrowed from the config) */
    const char *room_id;       /* pool */
} svc_notice_t;

static const char *svc_nconf(const svc_notice_t *n, const char *key)
{
    return json_string_value(json_object_get(n->conf, key));
}

/* ------------------------------------------------------------- send --- */

static void svc_notice_sent(int status, rm_txn_t *t, void *ud)
{
    (void)t;
    svc_notice_t *n = ud;
    svc_call_t *c = n->c;
    if (status < 0)
        svc_finish(c, status, NULL);
    else
        svc_finish(c, 0, json_pack("{s:s}", "event_id", c->str));
}

static void svc_new_notice_room(svc_notice_t *n);

static void svc_notice_room_loaded(rm_room_t *room, int status, void *ud)
{
    svc_notice_t *n = ud;
    svc_call_t *c = n->c;
    if (!room) {
        if (status == -ENOENT)
            svc_new_notice_room(n);
        else
            svc_finish(c, status, NULL);
        return;
    }
    const char *m = rm_membership(room, c->user_id), *sm = rm_membership(room, n->sys);
    if (!sm || strcmp(sm, "join") || !m || (strcmp(m, "join") && strcmp(m, "invite"))) {
        /* The user left (or was never there): a new room. */
        svc_new_notice_room(n);
        return;
    }
    rm_txn_t *t = rm_txn_new(room);
    if (!t) {
        svc_finish(c, -ENOMEM, NULL);
        return;
    }
    const char *type = svc_qstr(c->args, "type");
    const char *sk = svc_qstr(c->args, "state_key");
    const char *eid = NULL;
    char why[256] = "";
    int rc = rm_txn_add(t, type ? type : "m.room.message", sk, n->sys,
                        json_object_get(c->args, "content"), NULL, &eid, why, sizeof(why));
    if (rc != 0) {
        rm_txn_abort(t);
        svc_fail(c, rc == MX_ETOOBIG ? -EINVAL : -EPERM, "M_FORBIDDEN",
                 "Cannot send the notice: %s", why);
        return;
    }
    c->str = mx_pstrdup(c->pool, eid);
    mx_sql_add(rm_txn_batch(t), "INSERT INTO server_notice_rooms (user_id, room_id)"
                                " VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE"
                                " SET room_id = excluded.room_id", "ss", c->user_id,
               room->room_id);
    rm_txn_commit(t, svc_notice_sent, n);
}

static void svc_notice_room_made(int status, const char *room_id, void *ud)
{
    svc_notice_t *n = ud;
    if (status < 0) {
        svc_finish(n->c, status, NULL);
        return;
    }
    n->room_id = mx_pstrdup(n->c->pool, room_id);
    rm_room_get(n->room_id, svc_notice_room_loaded, n);
}

static void svc_new_notice_room(svc_notice_t *n)
{
    svc_call_t *c = n->c;
    json_t *who = json_pack("[s]", c->user_id);
    bool auto_join = json_is_true(json_object_get(n->conf, "auto_join"));
    const char *name = svc_nconf(n, "room_name");
    svc_newroom_t o = {
        .creator = n->sys,
        .displayname = svc_nconf(n, "system_mxid_display_name"),
        .avatar_url = svc_nconf(n, "system_mxid_avatar_url"),
        .name = name ? name : "Server Notices",
        .topic = svc_nconf(n, "room_topic"),
        .room_avatar = svc_nconf(n, "room_avatar_url"),
        .users_default = -10,
        .invite = auto_join ? NULL : who,
        .join = auto_join ? who : NULL,
        .tag_user = c->user_id,
        .tag = "m.server_notice",
    };
    int rc = svc_new_room(&o, svc_notice_room_made, n);
    json_decref(who);
    if (rc < 0)
        svc_finish(c, rc, NULL);
}

/* ------------------------------------------------------------ start --- */

static void svc_notice_sys_made(int status, json_t *result, void *ud)
{
    svc_notice_t *n = ud;
    json_decref(result);
    if (status < 0) {
        svc_fail(n->c, status, "M_UNKNOWN", "Cannot create the server notices user");
        return;
    }
    svc_new_notice_room(n);
}

static void svc_notice_read(int status, mx_sql_res_t *res, void *ud)
{
    svc_call_t *c = ud;
    svc_notice_t *n = c->priv;
    if (status < 0) {
        svc_finish(c, status, NULL);
        return;
    }
    if (mx_sql_nrows(res, 0) < 1) {
        svc_fail(c, -ENOENT, "M_NOT_FOUND", "User not found");
        return;
    }
    if (mx_sql_nrows(res, 1) < 1) {
        json_t *body = json_object();
        const char *dn = svc_nconf(n, "system_mxid_display_name");
        const char *av = svc_nconf(n, "system_mxid_avatar_url");
        if (dn)
            json_object_set_new(body, "displayname", json_string(dn));
        if (av)
            json_object_set_new(body, "avatar_url", json_string(av));
        int rc = svc_upsert_user(n->sys, body, svc_notice_sys_made, n);
        json_decref(body);
        if (rc < 0)
            svc_finish(c, rc, NULL);
        return;
    }
    if (mx_sql_nrows(res, 2) < 1) {
        svc_new_notice_room(n);
        return;
    }
    n->room_id = mx_pstrdup(c->pool, mx_sql_text(res, 2, 0, 0));
    rm_room_get(n->room_id, svc_notice_room_loaded, n);
}

int svc_send_server_notice(const json_t *body, hs_admin_done_fn cb, void *ud)
{
    const json_t *conf = json_object_get(mx_server_conf()->root, "server_notices");
    const char *lp = json_string_value(json_object_get(conf, "system_mxid_localpart"));
    const char *target = svc_qstr(body, "user_id");
    if (!lp || !*lp) {
        /* Synapse's answer when `server_notices` is not configured. */
        cb(-EINVAL, json_pack("{s:s, s:s}", "errcode", "M_UNKNOWN", "error",
                              "Server notices are not enabled on this server"), ud);
        return 0;
    }
    if (!target || !json_is_object(json_object_get(body, "content")))
        return -EINVAL;
    svc_call_t *c = svc_call_new(cb, ud);
    svc_notice_t *n = c ? mx_palloc(c->pool, sizeof(*n)) : NULL;
    if (!n) {
        svc_call_free(c);
        return -ENOMEM;
    }
    memset(n, 0, sizeof(*n));
    n->c = c;
    n->conf = conf;
    n->sys = mx_psprintf(c->pool, "@%s:%s", lp, hs.server_name);
    c->priv = n;
    c->user_id = mx_pstrdup(c->pool, target);
    c->args = json_deep_copy(body);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (b) {
        mx_sql_add(b, "SELECT 1 FROM users WHERE name = ?", "s", target);
        mx_sql_add(b, "SELECT 1 FROM users WHERE name = ?", "s", n->sys);
        mx_sql_add(b, "SELECT room_id FROM server_notice_rooms WHERE user_id = ?", "s", target);
    }
    return svc_run_raw(c, b, svc_notice_read);
}
