"""
Room versions 1..12 end to end: capabilities list them all as stable, rooms
of every version can be created, joined, messaged and redacted, event IDs
have the version's format (v1/v2 "$opaque:server", v3 standard base64 of the
reference hash, v4+ URL-safe), upgrades to old versions work, and the
auth-rule differences show through the client API (v7+ knock, v10+
integer-only power levels).
"""
import re
import uuid
from urllib.parse import quote

import pytest

V3 = "/_matrix/client/v3"
VERSIONS = [str(v) for v in range(1, 13)]


def q(s):
    return quote(s, safe="")


def req(server, user, method, path, body=None):
    return server.api(method, V3 + path, token=user["access_token"], json_body=body)


def create(server, user, **body):
    r = req(server, user, "POST", "/createRoom", body)
    assert r.status_code == 200, r.text
    return r.json()["room_id"]


def send(server, user, room, body="hi"):
    r = req(server, user, "PUT", f"/rooms/{q(room)}/send/m.room.message/{uuid.uuid4().hex}",
            {"msgtype": "m.text", "body": body})
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def id_pattern(version, server_name):
    v = int(version)
    if v <= 2:
        return re.compile(r"^\$[A-Za-z0-9_-]+:" + re.escape(server_name) + "$")
    if v == 3:
        return re.compile(r"^\$[A-Za-z0-9+/]{43}$")
    return re.compile(r"^\$[A-Za-z0-9_-]{43}$")


def test_capabilities_list_all_versions(server):
    u = server.register()
    caps = req(server, u, "GET", "/capabilities").json()["capabilities"]
    avail = caps["m.room_versions"]["available"]
    assert avail == {v: "stable" for v in VERSIONS}


@pytest.mark.parametrize("version", VERSIONS)
def test_room_lifecycle_per_version(server, version):
    a, b = server.register(), server.register()
    room = create(server, a, room_version=version, preset="public_chat")
    r = req(server, a, "GET", f"/rooms/{q(room)}/state/m.room.create/")
    assert r.json()["room_version"] == version
    if int(version) <= 10:
        assert r.json()["creator"] == a["user_id"]
    assert req(server, b, "POST", f"/join/{q(room)}", {}).status_code == 200
    pat = id_pattern(version, server.server_name)
    e1 = send(server, a, room, "one")
    e2 = send(server, b, room, "two")
    assert pat.match(e1) and pat.match(e2), (e1, e2)
    r = req(server, b, "GET", f"/rooms/{q(room)}/event/{q(e1)}")
    assert r.status_code == 200, r.text
    assert r.json()["content"]["body"] == "one"
    msgs = req(server, b, "GET", f"/rooms/{q(room)}/messages?dir=b&limit=20").json()
    ids = [e["event_id"] for e in msgs["chunk"]]
    assert e1 in ids and e2 in ids
    assert all(pat.match(i) for i in ids)
    # redaction of one's own message (v1/v2: an auth rule; v3+: handling)
    r = req(server, b, "PUT", f"/rooms/{q(room)}/redact/{q(e2)}/{uuid.uuid4().hex}", {})
    assert r.status_code == 200, r.text
    assert pat.match(r.json()["event_id"])
    r = req(server, a, "GET", f"/rooms/{q(room)}/event/{q(e2)}")
    assert r.json()["content"] == {}


def test_upgrade_to_old_version(server):
    a = server.register()
    room = create(server, a, room_version="10", name="up")
    r = req(server, a, "POST", f"/rooms/{q(room)}/upgrade", {"new_version": "2"})
    assert r.status_code == 200, r.text
    new = r.json()["replacement_room"]
    create_ev = req(server, a, "GET", f"/rooms/{q(new)}/state/m.room.create/").json()
    assert create_ev["room_version"] == "2"
    assert create_ev["predecessor"]["room_id"] == room
    assert id_pattern("2", server.server_name).match(send(server, a, new))
    r = req(server, a, "POST", f"/rooms/{q(new)}/upgrade", {"new_version": "13"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"


@pytest.mark.parametrize("version,ok", [("6", False), ("7", True)])
def test_knock_needs_v7(server, version, ok):
    a, b = server.register(), server.register()
    room = create(server, a, room_version=version, initial_state=[
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}])
    r = req(server, b, "POST", f"/knock/{q(room)}", {})
    assert (r.status_code == 200) == ok, r.text


@pytest.mark.parametrize("version,ok", [("9", True), ("10", False)])
def test_stringy_power_levels_until_v10(server, version, ok):
    a = server.register()
    room = create(server, a, room_version=version)
    pl = req(server, a, "GET", f"/rooms/{q(room)}/state/m.room.power_levels/").json()
    pl["users"][a["user_id"]] = "100"
    pl["ban"] = "50"
    r = req(server, a, "PUT", f"/rooms/{q(room)}/state/m.room.power_levels/", pl)
    assert (r.status_code == 200) == ok, r.text
