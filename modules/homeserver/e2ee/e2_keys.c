/*
 * e2_keys.c: device keys and one-time keys — POST /keys/upload, /keys/query,
 * /keys/claim and GET /keys/changes (spec "Key management API").
 *
 * Upload checks everything before anything is written: device_keys must
 * name the requester's user and device and, when they carry the device's
 * ed25519 key, be self-signed with it; signed_* one-time and fallback keys
 * must be signed by the device key; a one-time key ID already stored with
 * different content is refused (400, as Synapse does).  The writes of one
 * upload, its device-list change and the key counts read back are one
 * batch.  Claim takes the oldest one-time key, else the fallback key (which
 * stays, marked used), in one write batch so two claims never get the same
 * key.
 */
#include "e2ee.h"
#include "../sync/sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- counts --- */

int e2_counts_add(mx_sql_batch_t *b, const char *user_id, const char *device_id)
{
    return mx_sql_add(b, "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys"
                         " WHERE user_id = ? AND device_id = ? GROUP BY algorithm",
                      "ss", user_id, device_id);
}

json_t *e2_counts_json(const mx_sql_res_t *res, int st)
{
    json_t *c = json_pack("{s:i}", "signed_curve25519", 0);
    for (int i = 0; res && i < mx_sql_nrows(res, st); i++)
        json_object_set_new(c, mx_sql_text(res, st, i, 0), json_integer(mx_sql_int(res, st, i, 1)));
    return c;
}

/* ---------------------------------------------------------------- upload --- */

/* "algorithm:key_id" split; false when malformed. */
static bool e2_split_key(const char *name, char *alg, size_t alglen, const char **key_id)
{
    const char *c = strchr(name, ':');
    if (!c || c == name || !c[1] || (size_t)(c - name) >= alglen)
        return false;
    memcpy(alg, name, (size_t)(c - name));
    alg[c - name] = '\0';
    *key_id = c + 1;
    return true;
}

/* Checks the shape of a one_time_keys / fallback_keys map. */
static bool e2_keymap_ok(mx_req_t *req, const json_t *m, const char *what)
{
    if (!m || json_is_null(m))
        return true;
    if (!json_is_object(m)) {
        mx_req_error(req, 400, "M_BAD_JSON", "%s must be an object", what);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        char alg[128];
        const char *id;
        if (!e2_split_key(k, alg, sizeof(alg), &id) || (!json_is_string(v) && !json_is_object(v))) {
            mx_req_error(req, 400, "M_BAD_JSON", "Invalid key %s in %s", k, what);
            return false;
        }
    }
    return true;
}

/* The shape of device_keys (Synapse's DeviceKeys model): algorithms is a
 * list of strings, keys a map of strings, signatures a map of maps of
 * strings. */
static bool e2_device_keys_shape_ok(const json_t *dk)
{
    const json_t *algs = json_object_get(dk, "algorithms");
    const json_t *keys = json_object_get(dk, "keys");
    const json_t *sigs = json_object_get(dk, "signatures");
    if (!json_is_array(algs) || !json_is_object(keys) || !json_is_object(sigs))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(algs, i, v) {
        if (!json_is_string(v))
            return false;
    }
    const char *k;
    json_object_foreach((json_t *)keys, k, v) {
        if (!json_is_string(v))
            return false;
    }
    json_object_foreach((json_t *)sigs, k, v) {
        const char *k2;
        const json_t *v2;
        if (!json_is_object(v))
            return false;
        json_object_foreach((json_t *)v, k2, v2) {
            if (!json_is_string(v2))
                return false;
        }
    }
    return true;
}

/* Signed keys (signed_curve25519...) must carry the device's signature. */
static bool e2_signed_key_ok(const e2_upload_t *u, const char *alg, const json_t *v,
                             const char *dev_key)
{
    if (strncmp(alg, "signed_", 7) != 0)
        return true;
    if (!json_is_object(v) || !dev_key)
        return false;
    char kid[300];
    snprintf(kid, sizeof(kid), "ed25519:%s", u->device_id);
    return e2_verify(v, u->user_id, kid, dev_key);
}

/* One-time keys match when equal, ignoring their signatures (Synapse's
 * _one_time_keys_match). */
static bool e2_otk_same(const json_t *a, const json_t *b)
{
    if (json_is_object(a) && json_is_object(b)) {
        json_t *ca = json_copy((json_t *)a), *cb = json_copy((json_t *)b);
        json_object_del(ca, "signatures");
        json_object_del(cb, "signatures");
        bool same = json_equal(ca, cb);
        json_decref(ca);
        json_decref(cb);
        return same;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

static const json_t *e2_fallback_of(const json_t *body)
{
    const json_t *f = json_object_get(body, "fallback_keys");
    if (!f || json_is_null(f))
        f = json_object_get(body, "org.matrix.msc2732.fallback_keys");
    return f;
}

static void e2_upload_written(int status, mx_sql_res_t *res, void *ud)
{
    e2_upload_t *u = ud;
    e2_dl_written(u->user_id, NULL, u->dl_pos, status == 0);
    if (status < 0) {
        hs_reply_storage_error(u->req, status, "keys upload");
        return;
    }
    u->done(u, res);
}

static void e2_upload_read(int status, mx_sql_res_t *res, void *ud)
{
    e2_upload_t *u = ud;
    mx_req_t *req = u->req;
    if (status < 0) {
        hs_reply_storage_error(req, status, "keys upload");
        return;
    }
    const json_t *dk = json_object_get(u->body, "device_keys");
    if (json_is_null(dk))
        dk = NULL;
    const json_t *otks = json_object_get(u->body, "one_time_keys");
    const json_t *fbs = e2_fallback_of(u->body);
    char kid[300];
    snprintf(kid, sizeof(kid), "ed25519:%s", u->device_id);

    /* the device's ed25519 key: the new one, else the stored one */
    json_t *stored = mx_sql_nrows(res, u->st_dev) ? e2_load(mx_sql_text(res, u->st_dev, 0, 0))
                                                   : NULL;
    const char *dev_key = NULL;
    bool dev_changed = false;
    if (dk) {
        /* Like Synapse, the device's self-signature is not verified here:
         * clients check it when they query the keys. */
        const char *nk = json_string_value(json_object_get(json_object_get(dk, "keys"), kid));
        dev_key = nk;
        dev_changed = !stored || !json_equal(stored, (json_t *)dk);
    }
    if (!dev_key)
        dev_key = json_string_value(json_object_get(json_object_get(stored, "keys"), kid));

    /* check every key before writing anything */
    json_t *existing = json_object();
    for (int i = 0; i < mx_sql_nrows(res, u->st_otk); i++) {
        char *name = mx_psprintf(mx_req_pool(req), "%s:%s", mx_sql_text(res, u->st_otk, i, 0),
                                 mx_sql_text(res, u->st_otk, i, 1));
        json_t *v = e2_load(mx_sql_text(res, u->st_otk, i, 2));
        if (name && v)
            json_object_set_new(existing, name, v);
        else
            json_decref(v);
    }
    const char *k;
    json_t *v;
    const char *bad = NULL, *reused = NULL;
    json_object_foreach((json_t *)otks, k, v) {
        char alg[128];
        const char *id;
        e2_split_key(k, alg, sizeof(alg), &id);
        if (!e2_signed_key_ok(u, alg, v, dev_key)) {
            bad = k;
            break;
        }
        json_t *old = json_object_get(existing, k);
        if (old && !e2_otk_same(old, v)) {
            reused = k;
            break;
        }
    }
    json_object_foreach((json_t *)fbs, k, v) {
        char alg[128];
        const char *id;
        e2_split_key(k, alg, sizeof(alg), &id);
        if (!bad && !e2_signed_key_ok(u, alg, v, dev_key))
            bad = k;
    }
    if (bad || reused) {
        if (bad)
            mx_req_error(req, 400, "M_INVALID_SIGNATURE", "Key %s is not signed by the device key",
                         bad);
        else
            mx_req_error(req, 400, "M_UNKNOWN", "One time key %s already exists with other content",
                         reused);
        json_decref(existing);
        json_decref(stored);
        return;
    }

    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        json_decref(existing);
        json_decref(stored);
        hs_reply_storage_error(req, -ENOMEM, "keys upload");
        return;
    }
    int64_t now = (int64_t)mx_now_ms();
    bool oom = false;
    int nst = 0;
    if (dev_changed) {
        char *js = e2_dump(dk);
        oom |= !js;
        mx_sql_add(b, "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts)"
                      " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, device_id) DO UPDATE"
                      " SET key_json = excluded.key_json, ts = excluded.ts",
                   "sssi", u->user_id, u->device_id, js, now);
        nst++;
        free(js);
    }
    json_object_foreach((json_t *)otks, k, v) {
        if (json_object_get(existing, k))
            continue; /* the same key again */
        char alg[128];
        const char *id;
        e2_split_key(k, alg, sizeof(alg), &id);
        char *js = e2_dump(v);
        oom |= !js;
        mx_sql_add(b, "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id,"
                      " key_json, ts) VALUES (?, ?, ?, ?, ?, ?)",
                   "sssssi", u->user_id, u->device_id, alg, id, js, now);
        nst++;
        free(js);
    }
    json_object_foreach((json_t *)fbs, k, v) {
        char alg[128];
        const char *id;
        e2_split_key(k, alg, sizeof(alg), &id);
        char *js = e2_dump(v);
        oom |= !js;
        /* A re-upload of the same key keeps its used flag; a new key is unused. */
        mx_sql_add(b, "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id,"
                      " key_json, used) VALUES (?, ?, ?, ?, ?, 0)"
                      " ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
                      " used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id AND"
                      " e2e_fallback_keys.key_json = excluded.key_json THEN e2e_fallback_keys.used"
                      " ELSE 0 END, key_id = excluded.key_id, key_json = excluded.key_json",
                   "sssss", u->user_id, u->device_id, alg, id, js);
        nst++;
        free(js);
    }
    json_decref(existing);
    json_decref(stored);
    if (!oom && u->extra) {
        int added = u->extra(u, b);
        if (added < 0)
            oom = true;
        else
            nst += added;
    }
    if (dev_changed && !oom) {
        u->dl_pos = e2_dl_add(b, u->user_id, NULL);
        oom |= u->dl_pos < 0;
        if (u->dl_pos < 0)
            u->dl_pos = 0;
        else
            nst++;
    }
    u->counts_stmt = nst;
    if (oom || e2_counts_add(b, u->user_id, u->device_id) < 0) {
        mx_sql_batch_free(b);
        e2_dl_written(u->user_id, NULL, u->dl_pos, false);
        u->dl_pos = 0;
        hs_reply_storage_error(req, -ENOMEM, "keys upload");
        return;
    }
    if (mx_sql_run(b, e2_upload_written, u) < 0) {
        e2_dl_written(u->user_id, NULL, u->dl_pos, false);
        hs_reply_storage_error(req, MX_EDB, "keys upload");
    }
}

void e2_upload_run(e2_upload_t *u)
{
    mx_req_t *req = u->req;
    const json_t *dk = json_object_get(u->body, "device_keys");
    if (dk && !json_is_null(dk)) {
        if (!json_is_object(dk)) {
            mx_req_error(req, 400, "M_BAD_JSON", "device_keys must be an object");
            return;
        }
        const char *uid = json_string_value(json_object_get(dk, "user_id"));
        const char *did = json_string_value(json_object_get(dk, "device_id"));
        if (!uid || strcmp(uid, u->user_id) != 0) {
            mx_req_error(req, 400, "M_BAD_JSON", "Provided `user_id` in `device_keys` does not"
                                                 " match that of the authenticated user");
            return;
        }
        if (!did || strcmp(did, u->device_id) != 0) {
            mx_req_error(req, 400, "M_BAD_JSON", "Provided `device_id` in `device_keys` does not"
                                                 " match that of the authenticated user device");
            return;
        }
        if (!e2_device_keys_shape_ok(dk)) {
            mx_req_error(req, 400, "M_BAD_JSON", "device_keys needs algorithms (a list of"
                                                 " strings), keys and signatures (string maps)");
            return;
        }
    }
    if (!e2_keymap_ok(req, json_object_get(u->body, "one_time_keys"), "one_time_keys") ||
        !e2_keymap_ok(req, e2_fallback_of(u->body), "fallback_keys"))
        return;
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        hs_reply_storage_error(req, -ENOMEM, "keys upload");
        return;
    }
    mx_sql_add(b, "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?", "ss",
               u->user_id, u->device_id);
    u->st_dev = 0;
    mx_sql_add(b, "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys"
                  " WHERE user_id = ? AND device_id = ?", "ss", u->user_id, u->device_id);
    u->st_otk = 1;
    if (mx_sql_run(b, e2_upload_read, u) < 0)
        hs_reply_storage_error(req, MX_EDB, "keys upload");
}

static void e2_upload_reply(e2_upload_t *u, const mx_sql_res_t *res)
{
    json_t *counts = e2_counts_json(res, u->counts_stmt);
    mx_req_reply_json(u->req, 200, json_pack("{s:o}", "one_time_key_counts", counts));
}

static void e2_upload_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = e2_body(req);
    if (!body)
        return;
    if (!who->device_id) {
        mx_req_error(req, 400, "M_UNKNOWN", "This access token has no device");
        return;
    }
    e2_upload_t *u = mx_palloc(mx_req_pool(req), sizeof(*u));
    if (!u) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    memset(u, 0, sizeof(*u));
    u->req = req;
    u->user_id = mx_pstrdup(mx_req_pool(req), who->user_id);
    u->device_id = mx_pstrdup(mx_req_pool(req), who->device_id);
    u->body = body;
    u->done = e2_upload_reply;
    e2_upload_run(u);
}

static int e2_upload_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, e2_upload_authed, NULL);
}

/* ----------------------------------------------------------------- query --- */

typedef struct e2_query {
    mx_req_t *req;
    e2_who_t *who;
    json_t *want;        /* {user: [devices] or null} (owned) */
    json_t *failures;    /* owned */
} e2_query_t;

static void e2_query_free(void *p)
{
    e2_query_t *q = p;
    json_decref(q->want);
    json_decref(q->failures);
}

/* signatures from e2e_signatures (statement `st`) onto `obj` for target key
 * `target`; signatures by other users show only to their signer. */
static void e2_merge_sigs(json_t *obj, const mx_sql_res_t *res, int st, const char *owner,
                          const char *target, const char *viewer)
{
    for (int i = 0; i < mx_sql_nrows(res, st); i++) {
        if (strcmp(mx_sql_text(res, st, i, 0), target) != 0)
            continue;
        const char *signer = mx_sql_text(res, st, i, 1);
        if (strcmp(signer, owner) != 0 && strcmp(signer, viewer) != 0)
            continue;
        json_t *sigs = json_object_get(obj, "signatures");
        if (!json_is_object(sigs)) {
            sigs = json_object();
            json_object_set_new(obj, "signatures", sigs);
        }
        json_t *by = json_object_get(sigs, signer);
        if (!json_is_object(by)) {
            by = json_object();
            json_object_set_new(sigs, signer, by);
        }
        json_object_set_new(by, mx_sql_text(res, st, i, 2), json_string(mx_sql_text(res, st, i, 3)));
    }
}

static void e2_query_read(int status, mx_sql_res_t *res, void *ud)
{
    e2_query_t *q = ud;
    if (status < 0) {
        hs_reply_storage_error(q->req, status, "keys query");
        return;
    }
    json_t *out = json_pack("{s:{}, s:{}, s:{}, s:{}, s:O}", "device_keys", "master_keys",
                            "self_signing_keys", "user_signing_keys", "failures", q->failures);
    json_t *dks = json_object_get(out, "device_keys");
    int st = 0;
    const char *uid;
    json_t *devs;
    json_object_foreach(q->want, uid, devs) {
        int s_dev = st, s_cs = st + 1, s_sig = st + 2;
        st += 3;
        json_t *mine = json_object();
        json_object_set_new(dks, uid, mine);
        for (int i = 0; i < mx_sql_nrows(res, s_dev); i++) {
            const char *did = mx_sql_text(res, s_dev, i, 0);
            if (json_array_size(devs)) {
                bool asked = false;
                size_t j;
                json_t *d;
                json_array_foreach(devs, j, d)
                    if (json_is_string(d) && strcmp(json_string_value(d), did) == 0)
                        asked = true;
                if (!asked)
                    continue;
            }
            json_t *key = e2_load(mx_sql_text(res, s_dev, i, 1));
            if (!json_is_object(key)) {
                json_decref(key);
                continue;
            }
            json_t *uns = json_object_get(key, "unsigned");
            if (!json_is_object(uns)) {
                uns = json_object();
                json_object_set_new(key, "unsigned", uns);
            }
            if (!mx_sql_is_null(res, s_dev, i, 2))
                json_object_set_new(uns, "device_display_name",
                                    json_string(mx_sql_text(res, s_dev, i, 2)));
            e2_merge_sigs(key, res, s_sig, uid, did, q->who->user_id);
            json_object_set_new(mine, did, key);
        }
        for (int i = 0; i < mx_sql_nrows(res, s_cs); i++) {
            const char *type = mx_sql_text(res, s_cs, i, 0);
            const char *slot = !strcmp(type, "master")         ? "master_keys"
                               : !strcmp(type, "self_signing") ? "self_signing_keys"
                               : !strcmp(type, "user_signing") ? "user_signing_keys"
                                                               : NULL;
            if (!slot || (slot[0] == 'u' && strcmp(uid, q->who->user_id) != 0))
                continue;
            json_t *key = e2_load(mx_sql_text(res, s_cs, i, 2));
            if (!json_is_object(key)) {
                json_decref(key);
                continue;
            }
            e2_merge_sigs(key, res, s_sig, uid, mx_sql_text(res, s_cs, i, 1), q->who->user_id);
            json_object_set_new(json_object_get(out, slot), uid, key);
        }
    }
    mx_req_reply_json(q->req, 200, out);
}

static void e2_query_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    json_t *body = e2_body(req);
    if (!body)
        return;
    json_t *dk = json_object_get(body, "device_keys");
    if (!json_is_object(dk)) {
        mx_req_error(req, 400, "M_BAD_JSON", "device_keys must be an object");
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    e2_query_t *q = mx_palloc(pool, sizeof(*q));
    if (!q || !(q->who = e2_who_copy(req, who))) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    q->req = req;
    q->want = json_object();
    q->failures = json_object();
    mx_pool_on_free(pool, e2_query_free, q);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_READ);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    const char *uid;
    json_t *devs;
    int n = 0;
    json_object_foreach(dk, uid, devs) {
        if (!hs_is_valid_user_id(uid) && !e2_server_of(uid))
            continue;
        if (!e2_is_local(uid)) {
            /* Remote users need federation, which is not there yet. */
            json_object_set_new(q->failures, e2_server_of(uid),
                                json_pack("{s:i, s:s}", "status", 503, "message",
                                          "Federation is not available"));
            continue;
        }
        json_object_set_new(q->want, uid, json_is_array(devs) ? json_copy(devs) : json_array());
        mx_sql_add(b, "SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
                      " LEFT JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
                      " WHERE k.user_id = ? ORDER BY k.device_id", "s", uid);
        mx_sql_add(b, "SELECT keytype, key_id, key_json FROM e2e_cross_signing_keys"
                      " WHERE user_id = ?", "s", uid);
        mx_sql_add(b, "SELECT target_key_id, signer_user_id, signer_key_id, signature"
                      " FROM e2e_signatures WHERE target_user_id = ?", "s", uid);
        n += 3;
    }
    if (!n) {
        mx_sql_batch_free(b);
        e2_query_read(0, NULL, q);
        return;
    }
    if (mx_sql_run(b, e2_query_read, q) < 0)
        hs_reply_storage_error(req, MX_EDB, "keys query");
}

static int e2_query_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, e2_query_authed, NULL);
}

/* ----------------------------------------------------------------- claim --- */

typedef struct e2_claim_item {
    const char *user_id, *device_id, *alg;
} e2_claim_item_t;

typedef struct e2_claim {
    mx_req_t *req;
    e2_claim_item_t *items;
    size_t n;
    json_t *failures;    /* owned */
} e2_claim_t;

static void e2_claim_free(void *p)
{
    json_decref(((e2_claim_t *)p)->failures);
}

static void e2_claim_done(int status, mx_sql_res_t *res, void *ud)
{
    e2_claim_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "keys claim");
        return;
    }
    json_t *otks = json_object();
    for (size_t i = 0; i < c->n; i++) {
        e2_claim_item_t *it = &c->items[i];
        int st = -1;
        if (mx_sql_nrows(res, (int)(2 * i + 1)) > 0)
            st = (int)(2 * i + 1);       /* a one-time key */
        else if (mx_sql_nrows(res, (int)(2 * i)) > 0)
            st = (int)(2 * i);           /* the fallback key */
        if (st < 0)
            continue;
        json_t *key = e2_load(mx_sql_text(res, st, 0, 1));
        if (!key)
            continue;
        json_t *u = json_object_get(otks, it->user_id);
        if (!u) {
            u = json_object();
            json_object_set_new(otks, it->user_id, u);
        }
        json_t *d = json_object_get(u, it->device_id);
        if (!d) {
            d = json_object();
            json_object_set_new(u, it->device_id, d);
        }
        char *name = mx_psprintf(mx_req_pool(c->req), "%s:%s", it->alg, mx_sql_text(res, st, 0, 0));
        if (name)
            json_object_set_new(d, name, key);
        else
            json_decref(key);
    }
    mx_req_reply_json(c->req, 200,
                      json_pack("{s:o, s:O}", "one_time_keys", otks, "failures", c->failures));
}

static void e2_claim_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    (void)who;
    json_t *body = e2_body(req);
    if (!body)
        return;
    json_t *want = json_object_get(body, "one_time_keys");
    if (!json_is_object(want)) {
        mx_req_error(req, 400, "M_BAD_JSON", "one_time_keys must be an object");
        return;
    }
    mx_pool_t *pool = mx_req_pool(req);
    e2_claim_t *c = mx_palloc(pool, sizeof(*c));
    size_t cap = 0;
    const char *uid;
    json_t *devs;
    json_object_foreach(want, uid, devs)
        cap += json_is_object(devs) ? json_object_size(devs) : 0;
    if (!c || !(c->items = mx_palloc(pool, sizeof(e2_claim_item_t) * (cap + 1)))) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    c->req = req;
    c->n = 0;
    c->failures = json_object();
    mx_pool_on_free(pool, e2_claim_free, c);
    mx_sql_batch_t *b = mx_sql_batch_new(hs.db, MX_SQL_WRITE);
    if (!b) {
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    json_object_foreach(want, uid, devs) {
        if (!json_is_object(devs))
            continue;
        if (!e2_is_local(uid)) {
            if (e2_server_of(uid))
                json_object_set_new(c->failures, e2_server_of(uid),
                                    json_pack("{s:i, s:s}", "status", 503, "message",
                                              "Federation is not available"));
            continue;
        }
        const char *did;
        json_t *alg;
        json_object_foreach(devs, did, alg) {
            if (!json_is_string(alg))
                continue;
            e2_claim_item_t *it = &c->items[c->n++];
            it->user_id = uid;
            it->device_id = did;
            it->alg = json_string_value(alg);
            /* fallback first, only when no one-time key is left; then the
             * oldest one-time key, deleted */
            mx_sql_add(b, "UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND"
                          " device_id = ? AND algorithm = ? AND NOT EXISTS (SELECT 1 FROM"
                          " e2e_one_time_keys o WHERE o.user_id = ? AND o.device_id = ? AND"
                          " o.algorithm = ?) RETURNING key_id, key_json",
                       "ssssss", uid, did, it->alg, uid, did, it->alg);
            mx_sql_add(b, "DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND"
                          " algorithm = ? AND key_id = (SELECT key_id FROM e2e_one_time_keys WHERE"
                          " user_id = ? AND device_id = ? AND algorithm = ? ORDER BY ts, key_id"
                          " LIMIT 1) RETURNING key_id, key_json",
                       "ssssss", uid, did, it->alg, uid, did, it->alg);
        }
    }
    if (!c->n) {
        mx_sql_batch_free(b);
        e2_claim_done(0, NULL, c);
        return;
    }
    if (mx_sql_run(b, e2_claim_done, c) < 0)
        hs_reply_storage_error(req, MX_EDB, "keys claim");
}

static int e2_claim_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, e2_claim_authed, NULL);
}

/* --------------------------------------------------------------- changes --- */

typedef struct e2_changes {
    mx_req_t *req;
    const char *user_id;
} e2_changes_t;

static void e2_changes_read(int status, mx_sql_res_t *res, void *ud)
{
    e2_changes_t *c = ud;
    if (status < 0) {
        hs_reply_storage_error(c->req, status, "keys changes");
        return;
    }
    mx_req_reply_json(c->req, 200, e2_dl_result(res, 0, c->user_id));
}

static void e2_changes_authed(mx_req_t *req, const hs_user_t *who, void *ud)
{
    (void)ud;
    const char *from = mx_req_query(req, "from");
    const char *to = mx_req_query(req, "to");
    int64_t f[HS_STREAM_COUNT], t[HS_STREAM_COUNT];
    if (!from) {
        mx_req_error(req, 400, "M_MISSING_PARAM", "Missing string query param: from");
        return;
    }
    if (hs_sync_token_parse(from, f) < 0 || (to && hs_sync_token_parse(to, t) < 0)) {
        mx_req_error(req, 400, "M_INVALID_PARAM", "Invalid stream token");
        return;
    }
    if (!to)
        for (int s = 0; s < HS_STREAM_COUNT; s++)
            t[s] = hs_stream_current((hs_stream_t)s);
    e2_changes_t *c = mx_palloc(mx_req_pool(req), sizeof(*c));
    mx_sql_batch_t *b = c ? mx_sql_batch_new(hs.db, MX_SQL_READ) : NULL;
    if (!b || !(c->user_id = mx_pstrdup(mx_req_pool(req), who->user_id))) {
        mx_sql_batch_free(b);
        mx_req_error(req, 500, "M_UNKNOWN", "Out of memory");
        return;
    }
    c->req = req;
    e2_dl_query(b, c->user_id, f, t);
    if (mx_sql_run(b, e2_changes_read, c) < 0)
        hs_reply_storage_error(req, MX_EDB, "keys changes");
}

static int e2_changes_h(mx_req_t *req, void *ud)
{
    (void)ud;
    return hs_require_auth(req, e2_changes_authed, NULL);
}

int e2_keys_routes(void)
{
    int rc;
    if ((rc = e2_route("POST", "/keys/upload", e2_upload_h, MX_ROUTE_JSON_BODY, E2_ALL)) < 0 ||
        (rc = e2_route("POST", "/keys/upload/{deviceId}", e2_upload_h, MX_ROUTE_JSON_BODY,
                       E2_R0 | E2_UNSTABLE)) < 0 ||
        (rc = e2_route("POST", "/keys/query", e2_query_h, MX_ROUTE_JSON_BODY, E2_ALL)) < 0 ||
        (rc = e2_route("POST", "/keys/claim", e2_claim_h, MX_ROUTE_JSON_BODY, E2_ALL)) < 0 ||
        (rc = e2_route("GET", "/keys/changes", e2_changes_h, 0, E2_ALL)) < 0)
        return rc;
    return 0;
}
