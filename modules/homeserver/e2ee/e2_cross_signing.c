/*
 * e2_cross_signing.c: POST /keys/device_signing/upload and POST
 * /keys/signatures/upload (spec "Cross-signing").
 *
 * device_signing/upload needs User-Interactive Authentication (password,
 * through the accounts part's UIA) only when it would replace keys: the
 * first upload and an identical re-upload go through without, as Synapse
 * does.  When authentication is delegated (MSC3861) a replacement needs the
 * approval given on the auth service's account page instead (a 401 with the
 * org.matrix.cross_signing_reset stage and its URL otherwise).  Self-signing and user-signing keys must be signed by the master
 * key.  A master/self-signing change is a public device-list change of the
 * user; a user-signing change is visible to the user only.
 *
 * signatures/upload attaches signatures to stored keys after checking them:
 * the requester's devices signed by their self-signing key, their master key
 * signed by one of their devices, and other users' master keys signed by
 * their user-signing key.  Each refused key gets an entry in `failures`;
 * the accepted ones are stored in one batch.
 */
#include "e2ee.h"
#include "../accounts/acc_int.h"   /* acc_uia_run: UIA with the password stage */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const cs_types[3] = { "master", "self_signing", "user_signing" };
static const char *const cs_fields[3] = { "master_key", "self_signing_key", "user_signing_key" };

/* --------------------------------------------------------- device_signing --- */

typedef struct cs_up {
    mx_req_t *req;
    e2_who_t *who;
    json_t *body;
    json_t *stored[3];       /* owned, NULL when none */
    int64_t dl_pos;
    bool dl_private;
} cs_up_t;

static void cs_up_free(void *p)
{
    cs_up_t *u = p;
    for (int i = 0; i < 3; i++)
        json_decref(u->stored[i]);
}

static void cs_up_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    cs_up_t *u = ud;
    e2_dl_written(u->who->user_id, u->dl_private ? u->who->user_id : NULL, u->dl_pos, status == 0);
    if (status < 0) {
        hs_reply_storage_error(u->req, status, "device_signing upload");
        return;
    }
    mx_req_reply_json(u->req, 200, json_object());
}

/* Checks and stores the keys (after UIA when it was needed). */
static void cs_up_apply(cs_up_t *u)
{
    mx_req_t *req = u->req;
    const json_t *nk[3];
    for (int i = 0; i < 3; i++) {
        nk[i] = json_object_get(u->body, cs_fields[i]);
        if (json_is_null(nk[i]))
            nk[i] = NULL;
        if (!nk[i])
            continue;
        const json_t *usage = json_object_get(nk[i], "usage");
        bool has_usage = false;
        size_t j;
        json_t *x;
        json_array_foreach(usage, j, x)
            if (json_is_string(x) && strcmp(json_string_value(x), cs_types[i]) == 0)
                has_usage = true;
        const char *uid = json_string_value(json_object_get(nk[i], "user_id"));
        if (!json_is_object(nk[i]) || !uid || strcmp(uid, u->who->user_id) != 0 || !has_usage ||
            !e2_cs_pubkey(nk[i], NULL)) {
            mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid %s key", cs_types[i]);
            return;
        }
    }
    const json_t *master = nk[0] ? nk[0] : u->stored[0];
    const char *mkid = NULL;
    const char *mpub = master ? e2_cs_pubkey(master, &mkid) : NULL;
    if ((nk[1] || nk[2]) && !mpub) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "No master key available");
        return;
    }
    for (int i = 1; i < 3; i++)
        if (nk[i] && !e2_verify(nk[i], u->who->user_id, mkid, mpub)) {
            mx_req_error(req, 400, "M_INVALID_SIGNATURE", "Invalid signature on %s key",
                         cs_types[i]);
            return;
        }
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "device_signing upload");
        return;
    }
    bool pub = false, priv = false;
    int64_t now = (int64_t)mx_now_ms();
    for (int i = 0; i < 3; i++) {
        if (!nk[i] || (u->stored[i] && json_equal(u->stored[i], (json_t *)nk[i])))
            continue;
        char *js = e2_dump(nk[i]);
        mx_sql_add(b, "INSERT INTO e2e_cross_signing_keys (user_id, keytype, key_id, key_json, ts)"
                      " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, keytype) DO UPDATE SET"
                      " key_id = excluded.key_id, key_json = excluded.key_json, ts = excluded.ts",
                   "ssssi", u->who->user_id, cs_types[i], e2_cs_pubkey(nk[i], NULL), js, now);
        free(js);
        if (i == 2)
            priv = true;
        else
            pub = true;
    }
    if (!pub && !priv) {
        mx_sql_batch_free(b);
        mx_req_reply_json(req, 200, json_object());
        return;
    }
    u->dl_private = !pub;
    u->dl_pos = e2_dl_add(b, u->who->user_id, u->dl_private ? u->who->user_id : NULL);
    if (u->dl_pos < 0) {
        u->dl_pos = 0;
        mx_sql_batch_free(b);
        hs_reply_storage_error(req, -ENOMEM, "device_signing upload");
        return;
    }
    if (mx_sql_run(b, cs_up_written, u) < 0) {
        e2_dl_written(u->who->user_id, NULL, u->dl_pos, false);
        hs_reply_storage_error(req, MX_EDB, "device_signing upload");
    }
}

static void cs_up_uia_done(mx_req_t *req, acc_uia_sess_t *s, void *ud)
{
    (void)req;
    acc_uia_finish(s, false);
    cs_up_apply(ud);
}

static void cs_up_read(int status, mx_sql_res_t *res, void *ud)
{
    cs_up_t *u = ud;
    if (status < 0) {
        hs_reply_storage_error(u->req, status, "device_signing upload");
        return;
    }
    for (int i = 0; i < mx_sql_nrows(res, 0); i++)
        for (int t = 0; t < 3; t++)
            if (strcmp(mx_sql_text(res, 0, i, 0), cs_types[t]) == 0)
                u->stored[t] = e2_load(mx_sql_text(res, 0, i, 1));
    /* Replacing keys needs UIA; a first upload or the same keys again not. */
    bool replacing = false;
    if (u->stored[0])
        for (int i = 0; i < 3; i++) {
            const json_t *k = json_object_get(u->body, cs_fields[i]);
            if (k && !json_is_null(k) && (!u->stored[i] || !json_equal(u->stored[i], (json_t *)k)))
                replacing = true;
        }
    if (!replacing || (acc_delegated() && acc_crosssign_reset_allowed(u->who->user_id))) {
        cs_up_apply(u);
        return;
    }
    if (acc_delegated()) {
        /* No password here: the reset is approved on the account page. */
        acc_crosssign_reset_reply(u->req);
        return;
    }
    static const unsigned flows[] = { ACC_STAGE_PASSWORD };
    acc_uia_run(u->req, u->body, u->who->user_id, flows, 1, cs_up_uia_done, u);
}

static void cs_up_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = e2_body(req);
    if (!body)
        return;
    mx_pool_t *pool = mx_req_pool(req);
    cs_up_t *u = mx_palloc(pool, sizeof(*u));
    if (!u) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(u, 0, sizeof(*u));
    u->req = req;
    u->body = body;
    mx_pool_on_free(pool, cs_up_free, u);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!(u->who = e2_who_copy(req, who)) || !b) {
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    mx_sql_add(b, "SELECT keytype, key_json FROM e2e_cross_signing_keys WHERE user_id = ?", "s",
               u->who->user_id);
    if (mx_sql_run(b, cs_up_read, u) < 0)
        hs_reply_storage_error(req, MX_EDB, "device_signing upload");
}

static int cs_up_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, cs_up_authed, NULL);
}

/* ------------------------------------------------------------ signatures --- */

typedef struct cs_sig {
    mx_req_t *req;
    e2_who_t *who;
    json_t *body;            /* borrowed */
    json_t *users;           /* {user: statement index of its cross-signing keys} (owned) */
    json_t *targets;         /* {user: 1} users whose keys got signatures (owned) */
    json_t *failures;        /* owned */
    int64_t *pos;
    const char **pos_user;
    bool *pos_private;
    size_t npos;
} cs_sig_t;

static void cs_sig_free(void *p)
{
    cs_sig_t *s = p;
    json_decref(s->users);
    json_decref(s->targets);
    json_decref(s->failures);
}

static void cs_fail(json_t *failures, const char *user, const char *key, int status,
                    const char *errcode, const char *msg)
{
    json_t *u = json_object_get(failures, user);
    if (!u) {
        u = json_object();
        json_object_set_new(failures, user, u);
    }
    json_object_set_new(u, key, json_pack("{s:i, s:s, s:s}", "status", status, "errcode", errcode,
                                          "message", msg));
}

/* The stored key (from statement `st`, columns keytype/key_id/key_json or
 * device_id/key_json) equals the uploaded object apart from signatures. */
static bool cs_same_key(const json_t *stored, const json_t *up)
{
    json_t *a = json_copy((json_t *)stored), *b = json_copy((json_t *)up);
    json_object_del(a, "signatures");
    json_object_del(a, "unsigned");
    json_object_del(b, "signatures");
    json_object_del(b, "unsigned");
    bool same = json_equal(a, b);
    json_decref(a);
    json_decref(b);
    return same;
}

static json_t *cs_key_of(const mx_sql_res_t *res, int st, const char *type)
{
    for (int i = 0; st >= 0 && i < mx_sql_nrows(res, st); i++)
        if (strcmp(mx_sql_text(res, st, i, 0), type) == 0)
            return e2_load(mx_sql_text(res, st, i, 2));
    return NULL;
}

static void cs_sig_written(int status, mx_sql_res_t *res, void *ud)
{
    (void)res;
    cs_sig_t *s = ud;
    for (size_t i = 0; i < s->npos; i++)
        e2_dl_written(s->pos_user[i], s->pos_private[i] ? s->who->user_id : NULL, s->pos[i],
                      status == 0);
    if (status < 0) {
        hs_reply_storage_error(s->req, status, "signatures upload");
        return;
    }
    mx_req_reply_json(s->req, 200, json_pack("{s:O}", "failures", s->failures));
}

static void cs_sig_store(mx_sql_batch_t *b, const char *target_user, const char *target_key,
                         const char *signer, const char *signer_key, const char *sig)
{
    mx_sql_add(b, "INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id,"
                  " signer_key_id, signature) VALUES (?, ?, ?, ?, ?) ON CONFLICT"
                  " (target_user_id, target_key_id, signer_user_id, signer_key_id)"
                  " DO UPDATE SET signature = excluded.signature",
               "sssss", target_user, target_key, signer, signer_key, sig);
}

static void cs_sig_read(int status, mx_sql_res_t *res, void *ud)
{
    cs_sig_t *s = ud;
    mx_req_t *req = s->req;
    if (status < 0) {
        hs_reply_storage_error(req, status, "signatures upload");
        return;
    }
    const char *me = s->who->user_id;
    int st_mine = (int)json_integer_value(json_object_get(s->users, me));
    json_t *my_master = cs_key_of(res, st_mine, "master");
    json_t *my_ssk = cs_key_of(res, st_mine, "self_signing");
    json_t *my_usk = cs_key_of(res, st_mine, "user_signing");
    const char *ssk_id = NULL, *usk_id = NULL, *mk_id = NULL;
    const char *ssk_pub = my_ssk ? e2_cs_pubkey(my_ssk, &ssk_id) : NULL;
    const char *usk_pub = my_usk ? e2_cs_pubkey(my_usk, &usk_id) : NULL;
    const char *mk_pub = my_master ? e2_cs_pubkey(my_master, &mk_id) : NULL;
    json_t *failures = json_object();
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        json_decref(failures);
        hs_reply_storage_error(req, -ENOMEM, "signatures upload");
        goto out;
    }
    int nstore = 0;
    const char *uid;
    json_t *keys;
    json_object_foreach(s->body, uid, keys) {
        if (!json_is_object(keys))
            continue;
        int st = json_object_get(s->users, uid) ? (int)json_integer_value(json_object_get(s->users, uid)) : -1;
        json_t *their_master = strcmp(uid, me) == 0 ? json_incref(my_master)
                                                    : cs_key_of(res, st, "master");
        const char *their_mk_pub = their_master ? e2_cs_pubkey(their_master, NULL) : NULL;
        const char *kid;
        json_t *obj;
        json_object_foreach(keys, kid, obj) {
            if (!json_is_object(obj)) {
                cs_fail(failures, uid, kid, 400, "M_INVALID_PARAM", "Invalid key object");
                continue;
            }
            const json_t *mine = json_object_get(json_object_get(obj, "signatures"), me);
            if (strcmp(uid, me) == 0 && mk_pub && strcmp(kid, mk_pub) == 0) {
                /* our master key, signed by one of our devices */
                if (!cs_same_key(my_master, obj)) {
                    cs_fail(failures, uid, kid, 400, "M_INVALID_SIGNATURE", "Key does not match");
                    continue;
                }
                int good = 0, seen = 0;
                const char *sk;
                json_t *sv;
                json_object_foreach((json_t *)mine, sk, sv) {
                    if (strncmp(sk, "ed25519:", 8) != 0 || strcmp(sk, mk_id) == 0)
                        continue;
                    seen++;
                    const char *dev = sk + 8;
                    const char *dpub = NULL;
                    json_t *dk = NULL;
                    for (int i = 0; i < mx_sql_nrows(res, 1); i++)
                        if (strcmp(mx_sql_text(res, 1, i, 0), dev) == 0)
                            dk = e2_load(mx_sql_text(res, 1, i, 1));
                    dpub = json_string_value(json_object_get(json_object_get(dk, "keys"), sk));
                    if (dpub && e2_verify(obj, me, sk, dpub)) {
                        cs_sig_store(b, me, kid, me, sk, json_string_value(sv));
                        good++;
                    }
                    json_decref(dk);
                }
                if (!seen)
                    cs_fail(failures, uid, kid, 400, "M_MISSING_PARAM", "Missing signature");
                else if (!good)
                    cs_fail(failures, uid, kid, 400, "M_INVALID_SIGNATURE", "Invalid signature");
                nstore += good;
            } else if (strcmp(uid, me) == 0) {
                /* one of our devices, signed by our self-signing key */
                json_t *dk = NULL;
                for (int i = 0; i < mx_sql_nrows(res, 1); i++)
                    if (strcmp(mx_sql_text(res, 1, i, 0), kid) == 0)
                        dk = e2_load(mx_sql_text(res, 1, i, 1));
                if (!dk) {
                    cs_fail(failures, uid, kid, 404, "M_NOT_FOUND", "Unknown device");
                } else if (!ssk_pub) {
                    cs_fail(failures, uid, kid, 404, "M_NOT_FOUND", "No self-signing key found");
                } else if (!cs_same_key(dk, obj)) {
                    cs_fail(failures, uid, kid, 400, "M_INVALID_SIGNATURE", "Key does not match");
                } else if (!json_is_string(json_object_get(mine, ssk_id))) {
                    cs_fail(failures, uid, kid, 400, "M_MISSING_PARAM", "Missing signature");
                } else if (!e2_verify(obj, me, ssk_id, ssk_pub)) {
                    cs_fail(failures, uid, kid, 400, "M_INVALID_SIGNATURE", "Invalid signature");
                } else {
                    cs_sig_store(b, me, kid, me, ssk_id,
                                 json_string_value(json_object_get(mine, ssk_id)));
                    nstore++;
                }
                json_decref(dk);
            } else {
                /* another user's master key, signed by our user-signing key */
                if (!their_mk_pub || strcmp(kid, their_mk_pub) != 0) {
                    cs_fail(failures, uid, kid, 404, "M_NOT_FOUND", "Unknown master key");
                } else if (!usk_pub) {
                    cs_fail(failures, uid, kid, 404, "M_NOT_FOUND", "No user-signing key found");
                } else if (!cs_same_key(their_master, obj)) {
                    cs_fail(failures, uid, kid, 400, "M_INVALID_SIGNATURE", "Key does not match");
                } else if (!json_is_string(json_object_get(mine, usk_id))) {
                    cs_fail(failures, uid, kid, 400, "M_MISSING_PARAM", "Missing signature");
                } else if (!e2_verify(obj, me, usk_id, usk_pub)) {
                    cs_fail(failures, uid, kid, 400, "M_INVALID_SIGNATURE", "Invalid signature");
                } else {
                    cs_sig_store(b, uid, kid, me, usk_id,
                                 json_string_value(json_object_get(mine, usk_id)));
                    json_object_set_new(s->targets, uid, json_true());
                    nstore++;
                }
            }
        }
        json_decref(their_master);
    }
    if (!nstore) {
        mx_sql_batch_free(b);
        mx_req_reply_json(req, 200, json_pack("{s:o}", "failures", failures));
        goto out;
    }
    /* device-list changes: ours (public) when we signed our own keys, the
     * other users' (visible to us only) for their master keys */
    mx_pool_t *pool = mx_req_pool(req);
    size_t n = json_object_size(s->targets) + 1;
    s->pos = mx_palloc(pool, sizeof(int64_t) * n);
    s->pos_user = mx_palloc(pool, sizeof(char *) * n);
    s->pos_private = mx_palloc(pool, sizeof(bool) * n);
    if (!s->pos || !s->pos_user || !s->pos_private) {
        mx_sql_batch_free(b);
        json_decref(failures);
        hs_reply_storage_error(req, -ENOMEM, "signatures upload");
        goto out;
    }
    if ((size_t)nstore > json_object_size(s->targets) || json_object_size(s->targets) == 0) {
        int64_t p = e2_dl_add(b, me, NULL);
        if (p > 0) {
            s->pos[s->npos] = p;
            s->pos_user[s->npos] = me;
            s->pos_private[s->npos++] = false;
        }
    }
    const char *t;
    json_t *tv;
    json_object_foreach(s->targets, t, tv) {
        int64_t p = e2_dl_add(b, t, me);
        if (p > 0) {
            s->pos[s->npos] = p;
            s->pos_user[s->npos] = mx_pstrdup(pool, t);
            s->pos_private[s->npos++] = true;
        }
    }
    s->failures = failures; /* reported with the stored ones */
    if (mx_sql_run(b, cs_sig_written, s) < 0) {
        for (size_t i = 0; i < s->npos; i++)
            e2_dl_written(s->pos_user[i], NULL, s->pos[i], false);
        hs_reply_storage_error(req, MX_EDB, "signatures upload");
    }
out:
    json_decref(my_master);
    json_decref(my_ssk);
    json_decref(my_usk);
}

static void cs_sig_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = e2_body(req);
    if (!body)
        return;
    mx_pool_t *pool = mx_req_pool(req);
    cs_sig_t *s = mx_palloc(pool, sizeof(*s));
    if (!s) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(s, 0, sizeof(*s));
    s->req = req;
    s->body = body;
    s->users = json_object();
    s->targets = json_object();
    mx_pool_on_free(pool, cs_sig_free, s);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!(s->who = e2_who_copy(req, who)) || !b) {
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    const char *me = s->who->user_id;
    mx_sql_add(b, "SELECT keytype, key_id, key_json FROM e2e_cross_signing_keys WHERE user_id = ?",
               "s", me);
    mx_sql_add(b, "SELECT device_id, key_json FROM e2e_device_keys WHERE user_id = ?", "s", me);
    json_object_set_new(s->users, me, json_integer(0));
    int st = 2;
    const char *uid;
    json_t *keys;
    json_object_foreach(body, uid, keys) {
        if (json_object_get(s->users, uid))
            continue;
        mx_sql_add(b, "SELECT keytype, key_id, key_json FROM e2e_cross_signing_keys"
                      " WHERE user_id = ?", "s", uid);
        json_object_set_new(s->users, uid, json_integer(st++));
    }
    if (mx_sql_run(b, cs_sig_read, s) < 0)
        hs_reply_storage_error(req, MX_EDB, "signatures upload");
}

static int cs_sig_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, cs_sig_authed, NULL);
}

int e2_cs_routes(void)
{
    int rc;
    if ((rc = e2_route("POST", "/keys/device_signing/upload", cs_up_h, MX_ROUTE_JSON_BODY,
                       E2_ALL)) < 0 ||
        (rc = e2_route("POST", "/keys/signatures/upload", cs_sig_h, MX_ROUTE_JSON_BODY,
                       E2_ALL)) < 0)
        return rc;
    return 0;
}
