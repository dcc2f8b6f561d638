/*
 * ev_hash.c: content hashes, reference hashes, event IDs, v12 room IDs, and
 * signing/verifying events.
 *
 * Spec: server-server API "Signing Events" (adding hashes and signatures,
 * validating them, calculating the reference hash and the content hash),
 * rooms/fragments/v1-event-ids.md (v1/v2: the ID is a field of the event),
 * rooms/v3.md (standard base64), rooms/fragments/v4-event-ids.md (URL-safe)
 * and rooms/v12.md (room ID = create hash).
 * The canonical JSON, SHA-256, base64 and ed25519 primitives are the core's
 * (core/json.c, core/crypto.c).
 */
#include "events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SHA-256 of the canonical JSON of `ev` minus the listed top-level keys. */
static int hash_without(const json_t *ev, const char *const *drop, unsigned char out[32])
{
    size_t len;
    json_t *copy;
    char *bytes;

    if (!json_is_object(ev))
        return -EINVAL;
    copy = json_copy((json_t *)ev); /* shallow: members are shared, not changed */
    if (!copy)
        return -ENOMEM;
    for (; *drop; drop++)
        json_object_del(copy, *drop);
    bytes = mx_json_canonical(copy, &len);
    json_decref(copy);
    if (!bytes)
        return -EINVAL;
    mx_sha256(bytes, len, out);
    free(bytes);
    return 0;
}

int hs_event_content_hash(const json_t *ev, unsigned char out[32])
{
    static const char *const drop[] = { "unsigned", "signatures", "hashes", NULL };
    return hash_without(ev, drop, out);
}

/* The canonical JSON of the redacted form of `ev` without signatures and
 * unsigned: what this server signs and what the reference hash covers.
 * Malloc'd; NULL on error. */
static char *redacted_bytes(const hs_room_version_t *rv, const json_t *ev, size_t *len)
{
    json_t *red = hs_event_redact_shared(rv, ev);
    if (!red)
        return NULL;
    json_object_del(red, "signatures");
    json_object_del(red, "unsigned");
    char *bytes = mx_json_canonical(red, len);
    json_decref(red);
    return bytes;
}

int hs_event_reference_hash(const hs_room_version_t *rv, const json_t *ev,
                            unsigned char out[32])
{
    size_t len;
    if (!rv)
        return -EINVAL;
    char *bytes = redacted_bytes(rv, ev, &len);
    if (!bytes)
        return -EINVAL;
    mx_sha256(bytes, len, out);
    free(bytes);
    return 0;
}

/* sigil + the base64 of a reference hash (URL-safe from v4 on). */
static char *sigil_id(const hs_room_version_t *rv, const unsigned char h[32], char sigil)
{
    char *b = mx_b64_encode(h, 32, rv->event_format != HS_EVFMT_V3);
    if (!b)
        return NULL;
    size_t n = strlen(b);
    char *id = malloc(n + 2);
    if (id) {
        id[0] = sigil;
        memcpy(id + 1, b, n + 1);
    }
    free(b);
    return id;
}

static char *sigil_hash(const hs_room_version_t *rv, const json_t *ev, char sigil)
{
    unsigned char h[32];
    if (hs_event_reference_hash(rv, ev, h) != 0)
        return NULL;
    return sigil_id(rv, h, sigil);
}

char *hs_event_id(const hs_room_version_t *rv, const json_t *ev)
{
    if (rv && rv->event_format == HS_EVFMT_V1) {
        const char *id = hs_ev_str(ev, "event_id");
        return id ? strdup(id) : NULL;
    }
    return rv ? sigil_hash(rv, ev, '$') : NULL;
}

/* v1/v2: "$" + 18 random URL-safe characters + ":" + server_name. */
static int set_v1_event_id(json_t *ev, const char *server_name)
{
    unsigned char rnd[18];
    char *b, *id;
    int rc = -ENOMEM;

    mx_random_bytes(rnd, sizeof(rnd));
    if (!(b = mx_b64_encode(rnd, sizeof(rnd), 1)))
        return -ENOMEM;
    size_t n = strlen(b) + strlen(server_name) + 3;
    if ((id = malloc(n)) != NULL) {
        snprintf(id, n, "$%s:%s", b, server_name);
        rc = json_object_set_new(ev, "event_id", json_string(id)) == 0 ? 0 : -ENOMEM;
        free(id);
    }
    free(b);
    return rc;
}

char *hs_room_id_for_create(const hs_room_version_t *rv, const json_t *create)
{
    if (!rv || !rv->room_id_is_create_hash)
        return NULL;
    return sigil_hash(rv, create, '!');
}

/* Adds signatures.<entity>.<key_id> = sig to `ev`, keeping any others. */
static int add_signature(json_t *ev, const char *entity, const char *key_id, const char *sig)
{
    json_t *sigs = json_object_get(ev, "signatures");
    if (!json_is_object(sigs)) {
        if (!(sigs = json_object()) || json_object_set_new(ev, "signatures", sigs) != 0)
            return -ENOMEM;
    }
    json_t *mine = json_object_get(sigs, entity);
    if (!json_is_object(mine)) {
        if (!(mine = json_object()) || json_object_set_new(sigs, entity, mine) != 0)
            return -ENOMEM;
    }
    return json_object_set_new(mine, key_id, json_string(sig)) == 0 ? 0 : -ENOMEM;
}

int hs_event_finish(const hs_room_version_t *rv, json_t *ev, const char *server_name,
                    const mx_signing_key_t *key, char **event_id_out)
{
    unsigned char h[32];
    json_t *hashes;
    char *b;
    int rc;

    if (event_id_out)
        *event_id_out = NULL;
    if (!rv || !json_is_object(ev) || !server_name || !key)
        return -EINVAL;
    if (!rv->supported)
        return -ENOTSUP;
    /* v1/v2: the ID is chosen by the sending server and is hashed and
     * signed with the rest of the event. */
    if (rv->event_format == HS_EVFMT_V1 && (rc = set_v1_event_id(ev, server_name)) != 0)
        return rc;
    if ((rc = hs_event_content_hash(ev, h)) != 0)
        return rc;
    if (!(b = mx_b64_encode(h, sizeof(h), 0)))
        return -ENOMEM;
    hashes = json_pack("{s:s}", "sha256", b);
    free(b);
    if (!hashes || json_object_set_new(ev, "hashes", hashes) != 0)
        return -ENOMEM;

    /* The signature covers the redacted form only (which includes the
     * hashes), so it still verifies after the event is redacted.  Those
     * bytes are also what the reference hash (the event ID) covers, as the
     * signatures are left out of both: one serialisation serves the two. */
    size_t len;
    char *bytes = redacted_bytes(rv, ev, &len);
    if (!bytes)
        return -EINVAL;
    char *sig = mx_ed25519_sign_b64(key, bytes, len);
    if (event_id_out && rv->event_format != HS_EVFMT_V1)
        mx_sha256(bytes, len, h);
    free(bytes);
    if (!sig)
        return -ENOMEM;
    rc = add_signature(ev, server_name, key->key_id, sig);
    free(sig);
    if (rc != 0 || !event_id_out)
        return rc;
    if (rv->event_format == HS_EVFMT_V1)
        *event_id_out = hs_event_id(rv, ev);
    else
        *event_id_out = sigil_id(rv, h, '$');
    return *event_id_out ? 0 : -ENOMEM;
}

int hs_event_verify_hashes_and_sig(const hs_room_version_t *rv, const json_t *ev,
                                   const char *server_name, const char *key_id,
                                   const char *pk_b64)
{
    unsigned char h[32], *want = NULL;
    size_t wantlen = 0;
    json_t *red;
    int rc;

    if (!rv || !json_is_object(ev) || !server_name || !key_id || !pk_b64)
        return -EINVAL;
    if (!(red = hs_event_redact_shared(rv, ev)))
        return -EINVAL;
    rc = mx_json_verify(red, server_name, key_id, pk_b64);
    json_decref(red);
    if (rc != 0)
        return HS_EBADSIG;

    const char *got = json_string_value(json_object_get(json_object_get(ev, "hashes"), "sha256"));
    if (!got || mx_b64_decode(got, strlen(got), &want, &wantlen) != 0)
        return HS_EBADHASH;
    rc = hs_event_content_hash(ev, h);
    if (rc == 0)
        rc = (wantlen == sizeof(h) && mx_ct_equal(h, want, sizeof(h))) ? 0 : HS_EBADHASH;
    free(want);
    return rc;
}

static int add_unique(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
        if (strcmp(json_string_value(v), s) == 0)
            return 0;
    return json_array_append_new(arr, json_string(s)) == 0 ? 0 : -ENOMEM;
}

json_t *hs_event_signers(const hs_room_version_t *rv, const json_t *ev)
{
    const char *dom = hs_user_domain(hs_ev_sender(ev));
    json_t *out;

    if (!rv || !dom || !(out = json_array()))
        return NULL;
    if (add_unique(out, dom) != 0)
        goto fail;
    /* v1/v2: the server named by the event ID signs too (rooms/v3.md). */
    if (rv->event_format == HS_EVFMT_V1) {
        const char *eid = hs_ev_str(ev, "event_id");
        const char *edom = eid ? strchr(eid, ':') : NULL;
        if (edom && edom[1] && add_unique(out, edom + 1) != 0)
            goto fail;
    }
    /* Rule 5.2 applies to any membership carrying the key, not only joins. */
    const char *ty = hs_ev_type(ev);
    if (rv->restricted && ty && strcmp(ty, "m.room.member") == 0) {
        const char *via = json_string_value(json_object_get(
            json_object_get(ev, "content"), "join_authorised_via_users_server"));
        const char *vdom = hs_user_domain(via);
        if (vdom && add_unique(out, vdom) != 0)
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}
