"""
End-to-end encryption support of the homeserver: device keys, one-time and
fallback keys, device lists in /sync and /keys/changes, cross-signing,
signature uploads, to-device messages, key backup and dehydrated devices.
Keys are real ed25519 keys made here (python3-cryptography) and signed the
way clients sign them (canonical JSON without `signatures`/`unsigned`).
"""
import base64
import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

V3 = "/_matrix/client/v3"
DH = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"


def b64(b):
    return base64.b64encode(b).decode().rstrip("=")


def canonical(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Key:
    def __init__(self):
        self.sk = Ed25519PrivateKey.generate()
        raw = self.sk.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        self.pub = b64(raw)

    def sign(self, obj, user_id, key_id):
        o = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        sig = b64(self.sk.sign(canonical(o)))
        obj.setdefault("signatures", {}).setdefault(user_id, {})[key_id] = sig
        return obj


def q(s):
    from urllib.parse import quote
    return quote(s, safe="")


class C:
    """A logged-in user with a real device key."""

    def __init__(self, server, user=None):
        self.s = server
        self.u = user or server.register()
        self.tok = self.u["access_token"]
        self.id = self.u["user_id"]
        self.dev = self.u["device_id"]
        self.key = Key()
        self.since = None

    def req(self, method, path, body=None, **kw):
        return self.s.api(method, V3 + path, token=self.tok, json_body=body, **kw)

    def ok(self, method, path, body=None, **kw):
        r = self.req(method, path, body, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def device_keys(self):
        dk = {"user_id": self.id, "device_id": self.dev,
              "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
              "keys": {f"curve25519:{self.dev}": b64(uuid.uuid4().bytes * 2),
                       f"ed25519:{self.dev}": self.key.pub}}
        return self.key.sign(dk, self.id, f"ed25519:{self.dev}")

    def otk(self, key_id, fallback=False):
        k = {"key": b64(uuid.uuid4().bytes * 2)}
        if fallback:
            k["fallback"] = True
        return {f"signed_curve25519:{key_id}": self.key.sign(k, self.id, f"ed25519:{self.dev}")}

    def sync(self, timeout=0):
        params = {"timeout": str(timeout)}
        if self.since:
            params["since"] = self.since
        body = self.ok("GET", "/sync", params=params)
        self.since = body["next_batch"]
        return body

    def create_room(self, **body):
        body.setdefault("preset", "public_chat")
        return self.ok("POST", "/createRoom", body)["room_id"]

    def join(self, room):
        return self.ok("POST", f"/join/{q(room)}", {})


# ------------------------------------------------------------ keys upload

def test_upload_query_claim_round_trip(server):
    a, b = C(server), C(server)
    dk = a.device_keys()
    otks = {}
    otks.update(a.otk("AAAA"))
    otks.update(a.otk("AAAB"))
    r = a.ok("POST", "/keys/upload", {"device_keys": dk, "one_time_keys": otks,
                                      "fallback_keys": a.otk("FB01", fallback=True)})
    assert r["one_time_key_counts"]["signed_curve25519"] == 2
    # empty upload: still the counts
    assert a.ok("POST", "/keys/upload", {})["one_time_key_counts"]["signed_curve25519"] == 2

    res = b.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    got = res["device_keys"][a.id][a.dev]
    assert got["keys"] == dk["keys"]
    assert got["signatures"] == dk["signatures"]
    assert "unsigned" in got
    assert res["failures"] == {}
    # specific devices; unknown device -> nothing
    res = b.ok("POST", "/keys/query", {"device_keys": {a.id: ["NOPE"]}})
    assert res["device_keys"][a.id] == {}

    # claim: two one-time keys, oldest first, each once; then the fallback key
    claimed = set()
    for _ in range(2):
        res = b.ok("POST", "/keys/claim",
                   {"one_time_keys": {a.id: {a.dev: "signed_curve25519"}}})
        keys = res["one_time_keys"][a.id][a.dev]
        (kid,) = keys.keys()
        assert kid not in claimed
        claimed.add(kid)
        assert keys[kid] == otks[kid]
    assert claimed == set(otks)
    for _ in range(2):  # the fallback key is reused until replaced
        res = b.ok("POST", "/keys/claim",
                   {"one_time_keys": {a.id: {a.dev: "signed_curve25519"}}})
        assert list(res["one_time_keys"][a.id][a.dev]) == ["signed_curve25519:FB01"]
    assert a.ok("POST", "/keys/upload", {})["one_time_key_counts"]["signed_curve25519"] == 0
    body = a.sync()
    assert body["device_one_time_keys_count"]["signed_curve25519"] == 0
    assert body["device_unused_fallback_key_types"] == []
    # a new fallback key is unused again
    a.ok("POST", "/keys/upload", {"fallback_keys": a.otk("FB02", fallback=True)})
    assert a.sync()["device_unused_fallback_key_types"] == ["signed_curve25519"]


def test_upload_rejects_bad_keys(server):
    a = C(server)
    # other user / other device
    dk = a.device_keys()
    dk["user_id"] = "@someone:" + server.server_name
    assert a.req("POST", "/keys/upload", {"device_keys": dk}).status_code == 400
    dk = a.device_keys()
    dk["device_id"] = "OTHER"
    assert a.req("POST", "/keys/upload", {"device_keys": dk}).status_code == 400
    # device_keys without algorithms / keys / signatures: M_BAD_JSON, nothing stored
    for missing in ("algorithms", "keys", "signatures"):
        dk = a.device_keys()
        del dk[missing]
        r = a.req("POST", "/keys/upload", {"device_keys": dk})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    res = a.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    assert res["device_keys"][a.id] == {}
    # a wrong self-signature is not checked on upload (Synapse): stored as sent
    dk = a.device_keys()
    Key().sign(dk, a.id, f"ed25519:{a.dev}")
    a.ok("POST", "/keys/upload", {"device_keys": dk})
    res = a.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    assert res["device_keys"][a.id][a.dev]["signatures"] == dk["signatures"]
    # one-time key signed by another key
    a.ok("POST", "/keys/upload", {"device_keys": a.device_keys()})
    k = Key().sign({"key": "abc"}, a.id, f"ed25519:{a.dev}")
    r = a.req("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:X1": k}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_SIGNATURE"
    # key ID reuse with other content; the same content again is fine
    good = a.otk("K1")
    a.ok("POST", "/keys/upload", {"one_time_keys": good})
    assert a.ok("POST", "/keys/upload", {"one_time_keys": good})["one_time_key_counts"][
        "signed_curve25519"] == 1
    r = a.req("POST", "/keys/upload", {"one_time_keys": a.otk("K1")})
    assert r.status_code == 400
    # malformed
    assert a.req("POST", "/keys/upload", {"one_time_keys": {"nocolon": "x"}}).status_code == 400
    assert a.req("POST", "/keys/upload", {"device_keys": "x"}).status_code == 400


def test_unsigned_legacy_keys_accepted(server):
    """sytest uploads device keys without an ed25519 key of the device, with
    empty signatures, and bare string one-time keys."""
    a = C(server)
    r = a.ok("POST", "/unstable/keys/upload".replace("/unstable", ""), {
        "device_keys": {"user_id": a.id, "device_id": a.dev, "algorithms": ["m.megolm.v1.aes-sha2"],
                        "keys": {"ed25519:test": "c3op6BJi8aUnDGA541Q6TbTPmbiy1GqGv"},
                        "signatures": {}},
        "one_time_keys": {"my_algorithm:my_id_1": "my+base64+key"}})
    assert r["one_time_key_counts"]["my_algorithm"] == 1
    r = server.api("POST", "/_matrix/client/unstable/keys/claim", a.tok,
                   {"one_time_keys": {a.id: {a.dev: "my_algorithm"}}})
    assert r.json()["one_time_keys"][a.id][a.dev] == {"my_algorithm:my_id_1": "my+base64+key"}
    r = server.api("POST", "/_matrix/client/r0/keys/claim", a.tok,
                   {"one_time_keys": {a.id: {a.dev: "my_algorithm"}}})
    assert r.json()["one_time_keys"] == {}


# ----------------------------------------------------------- device lists

def test_device_lists_in_sync_and_changes(server):
    a, b = C(server), C(server)
    room = a.create_room()
    b.join(room)
    a.sync()
    body = a.sync()
    from_tok = a.since
    b.ok("POST", "/keys/upload", {"device_keys": b.device_keys()})
    body = a.sync(timeout=5000)
    assert b.id in body["device_lists"]["changed"]
    res = a.ok("GET", "/keys/changes", params={"from": from_tok, "to": a.since})
    assert b.id in res["changed"]
    # nothing new: not changed again
    assert b.id not in a.sync()["device_lists"]["changed"]
    # a stranger's change is not visible
    c = C(server)
    c.ok("POST", "/keys/upload", {"device_keys": c.device_keys()})
    assert c.id not in a.sync()["device_lists"]["changed"]
    # joining a shared room makes the user appear; leaving, in `left`
    c.join(room)
    body = a.sync()
    assert c.id in body["device_lists"]["changed"]
    c.ok("POST", f"/rooms/{q(room)}/leave", {})
    body = a.sync()
    assert c.id in body["device_lists"]["left"]
    # device deletion is a change
    r = b.req("POST", "/logout", {})
    assert r.status_code == 200
    body = a.sync(timeout=5000)
    assert b.id in body["device_lists"]["changed"]


# ---------------------------------------------------------- cross-signing

def cs_key(user_id, usage, key):
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{key.pub}": key.pub}}


def test_cross_signing(server):
    a, b = C(server), C(server)
    room = a.create_room()
    b.join(room)
    a.ok("POST", "/keys/upload", {"device_keys": a.device_keys()})
    b.sync()
    mk, ssk, usk = Key(), Key(), Key()
    master = cs_key(a.id, "master", mk)
    selfk = mk.sign(cs_key(a.id, "self_signing", ssk), a.id, f"ed25519:{mk.pub}")
    userk = mk.sign(cs_key(a.id, "user_signing", usk), a.id, f"ed25519:{mk.pub}")
    # self-signing key not signed by the master key
    bad = Key().sign(cs_key(a.id, "self_signing", ssk), a.id, f"ed25519:{mk.pub}")
    r = a.req("POST", "/keys/device_signing/upload", {"master_key": master, "self_signing_key": bad})
    assert r.status_code == 400
    # no master key at all
    r = a.req("POST", "/keys/device_signing/upload", {"self_signing_key": selfk})
    assert r.status_code == 400
    # first upload needs no UIA
    a.ok("POST", "/keys/device_signing/upload",
         {"master_key": master, "self_signing_key": selfk, "user_signing_key": userk})
    # identical re-upload neither
    a.ok("POST", "/keys/device_signing/upload", {"master_key": master})
    body = b.sync(timeout=5000)
    assert a.id in body["device_lists"]["changed"]

    res = a.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    assert res["master_keys"][a.id]["keys"] == master["keys"]
    assert res["self_signing_keys"][a.id]["keys"] == selfk["keys"]
    assert res["user_signing_keys"][a.id]["keys"] == userk["keys"]
    res = b.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    assert a.id in res["master_keys"] and a.id not in res["user_signing_keys"]

    # replacing needs UIA with the password
    mk2 = Key()
    r = a.req("POST", "/keys/device_signing/upload", {"master_key": cs_key(a.id, "master", mk2)})
    assert r.status_code == 401 and "flows" in r.json()
    session = r.json()["session"]

    # sign our device with the self-signing key
    dk = a.ok("POST", "/keys/query", {"device_keys": {a.id: [a.dev]}})["device_keys"][a.id][a.dev]
    dk.pop("unsigned", None)
    signed = ssk.sign(json.loads(json.dumps(dk)), a.id, f"ed25519:{ssk.pub}")
    res = a.ok("POST", "/keys/signatures/upload", {a.id: {a.dev: signed}})
    assert res["failures"] == {}
    got = b.ok("POST", "/keys/query", {"device_keys": {a.id: []}})["device_keys"][a.id][a.dev]
    assert got["signatures"][a.id][f"ed25519:{ssk.pub}"] == signed["signatures"][a.id][
        f"ed25519:{ssk.pub}"]
    assert b.id not in b.sync()["device_lists"].get("left", [])
    # a bad signature is a per-key failure
    wrong = Key().sign(json.loads(json.dumps(dk)), a.id, f"ed25519:{ssk.pub}")
    res = a.ok("POST", "/keys/signatures/upload", {a.id: {a.dev: wrong}})
    assert res["failures"][a.id][a.dev]["errcode"] == "M_INVALID_SIGNATURE"
    unsigned = json.loads(json.dumps(dk))
    unsigned["signatures"] = {}
    res = a.ok("POST", "/keys/signatures/upload", {a.id: {a.dev: unsigned}})
    assert a.dev in res["failures"][a.id]

    # b signs a's master key with b's user-signing key: only b sees it
    bmk, busk = Key(), Key()
    b.ok("POST", "/keys/device_signing/upload", {
        "master_key": cs_key(b.id, "master", bmk),
        "user_signing_key": bmk.sign(cs_key(b.id, "user_signing", busk), b.id,
                                     f"ed25519:{bmk.pub}")})
    m = json.loads(json.dumps(master))
    busk.sign(m, b.id, f"ed25519:{busk.pub}")
    res = b.ok("POST", "/keys/signatures/upload", {a.id: {mk.pub: m}})
    assert res["failures"] == {}
    seen_b = b.ok("POST", "/keys/query", {"device_keys": {a.id: []}})["master_keys"][a.id]
    assert b.id in seen_b["signatures"]
    seen_a = a.ok("POST", "/keys/query", {"device_keys": {a.id: []}})["master_keys"][a.id]
    assert b.id not in seen_a.get("signatures", {})

    # now the UIA flow for replacing the master key
    r = a.req("POST", "/keys/device_signing/upload", {
        "master_key": cs_key(a.id, "master", mk2),
        "auth": {"type": "m.login.password", "session": session,
                 "identifier": {"type": "m.id.user", "user": a.id},
                 "password": a.u["password"]}})
    assert r.status_code == 200, r.text
    res = a.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    assert res["master_keys"][a.id]["keys"] == {f"ed25519:{mk2.pub}": mk2.pub}


# -------------------------------------------------------------- to-device

def test_to_device(server):
    a, b = C(server), C(server)
    b.sync()
    for i in range(3):
        a.ok("PUT", f"/sendToDevice/m.test/txn{i}", {"messages": {b.id: {b.dev: {"n": i}}}})
    # the same txn again is not stored twice
    a.ok("PUT", "/sendToDevice/m.test/txn0", {"messages": {b.id: {b.dev: {"n": 0}}}})
    a.ok("PUT", "/sendToDevice/m.test/star", {"messages": {b.id: {"*": {"n": 3}}}})
    body = b.sync()
    evs = body["to_device"]["events"]
    assert [e["content"]["n"] for e in evs] == [0, 1, 2, 3]
    assert all(e["sender"] == a.id and e["type"] == "m.test" for e in evs)
    # acknowledged by syncing with the new token: gone
    assert b.sync()["to_device"]["events"] == []
    # a remote recipient is queued for federation (accepted)
    a.ok("PUT", "/sendToDevice/m.test/remote", {"messages": {"@x:remote.example": {"D": {"n": 9}}}})
    # bad bodies
    assert a.req("PUT", "/sendToDevice/m.test/bad1", {}).status_code == 400
    assert a.req("PUT", "/sendToDevice/m.test/bad2",
                 {"messages": {b.id: {b.dev: "x"}}}).status_code == 400


def test_to_device_redelivered_until_acked(server):
    a, b = C(server), C(server)
    first = b.sync()
    tok = first["next_batch"]
    a.ok("PUT", "/sendToDevice/m.test/t1", {"messages": {b.id: {b.dev: {"x": 1}}}})
    r1 = b.ok("GET", "/sync", params={"since": tok})
    assert [e["content"] for e in r1["to_device"]["events"]] == [{"x": 1}]
    r2 = b.ok("GET", "/sync", params={"since": tok})  # retry of the same request
    assert [e["content"] for e in r2["to_device"]["events"]] == [{"x": 1}]
    r3 = b.ok("GET", "/sync", params={"since": r2["next_batch"]})
    assert r3["to_device"]["events"] == []


def test_to_device_limit(server):
    a, b = C(server), C(server)
    tok = b.sync()["next_batch"]
    msgs = {b.id: {b.dev: {}}}
    for i in range(120):
        msgs[b.id][b.dev] = {"n": i}
        a.ok("PUT", f"/sendToDevice/m.test/l{i}", {"messages": msgs})
    got = []
    for _ in range(5):
        r = b.ok("GET", "/sync", params={"since": tok})
        tok = r["next_batch"]
        assert len(r["to_device"]["events"]) <= 100
        got += [e["content"]["n"] for e in r["to_device"]["events"]]
        if len(got) >= 120:
            break
    assert got == list(range(120))


# ------------------------------------------------------------- key backup

def session(fmi, fc, verified, tag="x"):
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
            "session_data": {"ciphertext": tag}}


def test_key_backup(server):
    a = C(server)
    r = a.req("GET", "/room_keys/version")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    v1 = a.ok("POST", "/room_keys/version",
              {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
               "auth_data": {"public_key": "abc"}})["version"]
    info = a.ok("GET", "/room_keys/version")
    assert info["version"] == v1 and info["count"] == 0 and info["auth_data"] == {"public_key": "abc"}
    etag0 = info["etag"]
    room = "!r:" + server.server_name
    # session level
    r = a.ok("PUT", f"/room_keys/keys/{q(room)}/s1", session(5, 1, False, "a"), params={"version": v1})
    assert r["count"] == 1 and r["etag"] != etag0
    etag1 = r["etag"]
    # worse key (higher index): kept the old one, etag unchanged
    r = a.ok("PUT", f"/room_keys/keys/{q(room)}/s1", session(7, 0, False, "b"), params={"version": v1})
    assert r["etag"] == etag1
    got = a.ok("GET", f"/room_keys/keys/{q(room)}/s1", params={"version": v1})
    assert got["session_data"] == {"ciphertext": "a"}
    # lower index wins; verified beats unverified; lower forwarded_count at equal index
    a.ok("PUT", f"/room_keys/keys/{q(room)}/s1", session(3, 2, False, "c"), params={"version": v1})
    assert a.ok("GET", f"/room_keys/keys/{q(room)}/s1", params={"version": v1})[
        "session_data"]["ciphertext"] == "c"
    a.ok("PUT", f"/room_keys/keys/{q(room)}/s1", session(9, 9, True, "d"), params={"version": v1})
    assert a.ok("GET", f"/room_keys/keys/{q(room)}/s1", params={"version": v1})[
        "session_data"]["ciphertext"] == "d"
    a.ok("PUT", f"/room_keys/keys/{q(room)}/s1", session(9, 3, True, "e"), params={"version": v1})
    assert a.ok("GET", f"/room_keys/keys/{q(room)}/s1", params={"version": v1})[
        "session_data"]["ciphertext"] == "e"
    a.ok("PUT", f"/room_keys/keys/{q(room)}/s1", session(1, 0, False, "f"), params={"version": v1})
    assert a.ok("GET", f"/room_keys/keys/{q(room)}/s1", params={"version": v1})[
        "session_data"]["ciphertext"] == "e"
    # room and all levels
    r = a.ok("PUT", f"/room_keys/keys/{q(room)}", {"sessions": {"s2": session(0, 0, False)}},
             params={"version": v1})
    assert r["count"] == 2
    room2 = "!r2:" + server.server_name
    r = a.ok("PUT", "/room_keys/keys", {"rooms": {room2: {"sessions": {"s3": session(0, 0, False)}}}},
             params={"version": v1})
    assert r["count"] == 3
    allk = a.ok("GET", "/room_keys/keys", params={"version": v1})
    assert set(allk["rooms"]) == {room, room2}
    assert set(allk["rooms"][room]["sessions"]) == {"s1", "s2"}
    assert a.ok("GET", f"/room_keys/keys/{q(room2)}", params={"version": v1}) == {
        "sessions": {"s3": session(0, 0, False)}}
    assert a.ok("GET", f"/room_keys/keys/{q('!none:x')}", params={"version": v1}) == {"sessions": {}}
    r = a.req("GET", f"/room_keys/keys/{q(room)}/nope", params={"version": v1})
    assert r.status_code == 404
    assert a.ok("GET", "/room_keys/version")["count"] == 3
    # delete one session
    r = a.ok("DELETE", f"/room_keys/keys/{q(room)}/s2", params={"version": v1})
    assert r["count"] == 2

    # a new version: writes to the old one are refused with the current version
    v2 = a.ok("POST", "/room_keys/version",
              {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"k": 2}})["version"]
    assert v2 != v1
    r = a.req("PUT", f"/room_keys/keys/{q(room)}/s9", session(0, 0, False), params={"version": v1})
    assert r.status_code == 403
    assert r.json()["errcode"] == "M_WRONG_ROOM_KEYS_VERSION" and r.json()["current_version"] == v2
    # unknown versions
    assert a.req("GET", "/room_keys/version/999").json()["errcode"] == "M_NOT_FOUND"
    assert a.req("GET", "/room_keys/keys", params={"version": "999"}).status_code == 404
    assert a.req("GET", "/room_keys/keys").status_code == 400
    # update auth_data, algorithm must match
    a.ok("PUT", f"/room_keys/version/{v2}",
         {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"k": 3}})
    assert a.ok("GET", f"/room_keys/version/{v2}")["auth_data"] == {"k": 3}
    r = a.req("PUT", f"/room_keys/version/{v2}", {"algorithm": "other", "auth_data": {}})
    assert r.status_code == 400
    # auth_data is opaque: any JSON value is kept as sent (Synapse)
    a.ok("PUT", f"/room_keys/version/{v2}",
         {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": "opaque"})
    assert a.ok("GET", f"/room_keys/version/{v2}")["auth_data"] == "opaque"
    # delete the version
    a.ok("DELETE", f"/room_keys/version/{v2}")
    assert a.req("GET", f"/room_keys/version/{v2}").status_code == 404
    assert a.ok("GET", "/room_keys/version")["version"] == v1
    # another user cannot see it
    assert C(server).req("GET", f"/room_keys/version/{v1}").status_code == 404


# ------------------------------------------------------ dehydrated devices

def test_dehydrated_device(server):
    a, b = C(server), C(server)
    r = server.api("GET", DH, a.tok)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    d = C(server, a.u)
    d.dev = "DEHYDRATED1"
    body = {"device_id": d.dev, "device_data": {"algorithm": "x", "account": "y"},
            "initial_device_display_name": "Dehydrated", "device_keys": d.device_keys(),
            "one_time_keys": d.otk("D1"), "fallback_keys": d.otk("DF", fallback=True)}
    r = server.api("PUT", DH, a.tok, body)
    assert r.status_code == 200, r.text
    assert r.json()["device_id"] == d.dev
    got = server.api("GET", DH, a.tok).json()
    assert got == {"device_id": d.dev, "device_data": {"algorithm": "x", "account": "y"}}
    res = b.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    assert d.dev in res["device_keys"][a.id]
    # to-device to "*" reaches it; fetch with next_batch
    b.ok("PUT", "/sendToDevice/m.test/dh1", {"messages": {a.id: {"*": {"hello": 1}}}})
    r = server.api("POST", f"{DH}/{d.dev}/events", a.tok, {})
    assert r.status_code == 200, r.text
    evs = r.json()
    assert [e["content"] for e in evs["events"]] == [{"hello": 1}]
    r = server.api("POST", f"{DH}/{d.dev}/events", a.tok, {"next_batch": evs["next_batch"]})
    assert r.json()["events"] == []
    assert server.api("POST", f"{DH}/{a.dev}/events", a.tok, {}).status_code == 403
    r = server.api("DELETE", DH, a.tok)
    assert r.status_code == 200 and r.json()["device_id"] == d.dev
    assert server.api("GET", DH, a.tok).status_code == 404
    res = b.ok("POST", "/keys/query", {"device_keys": {a.id: []}})
    assert d.dev not in res["device_keys"][a.id]
