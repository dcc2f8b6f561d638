"""
Rooms: createRoom, membership flows and their errors, state, sending
(idempotency, size limit), redaction, /messages pagination, /context,
/event, members, aliases, the public room directory, upgrades and
timestamp_to_event, plus the event format itself (event IDs are the
reference hash of the redacted event, recomputed here).
"""
import base64
import hashlib
import json
import uuid

import pytest

V3 = "/_matrix/client/v3"


class C:
    """A logged-in user on `server`."""

    def __init__(self, server, user=None):
        self.s = server
        self.u = user or server.register()
        self.tok = self.u["access_token"]
        self.id = self.u["user_id"]

    def req(self, method, path, body=None, **kw):
        return self.s.api(method, V3 + path, token=self.tok, json_body=body, **kw)

    def create(self, **body):
        r = self.req("POST", "/createRoom", body)
        assert r.status_code == 200, r.text
        return r.json()["room_id"]

    def send(self, room, body="hi", txn=None, etype="m.room.message"):
        txn = txn or uuid.uuid4().hex
        r = self.req("PUT", f"/rooms/{q(room)}/send/{etype}/{txn}",
                     {"msgtype": "m.text", "body": body})
        assert r.status_code == 200, r.text
        return r.json()["event_id"]

    def join(self, room):
        return self.req("POST", f"/join/{q(room)}", {})

    def state(self, room, etype, key=""):
        return self.req("GET", f"/rooms/{q(room)}/state/{etype}/{q(key)}")


def q(s):
    from urllib.parse import quote
    return quote(s, safe="")


# ----------------------------------------------------------- event hashes

def canonical(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def redact_v11(ev):
    keep = {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
            "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"}
    out = {k: v for k, v in ev.items() if k in keep}
    c = ev.get("content", {})
    t = ev.get("type")
    keepc = {
        "m.room.member": ["membership", "join_authorised_via_users_server"],
        "m.room.join_rules": ["join_rule", "allow"],
        "m.room.power_levels": ["ban", "events", "events_default", "invite", "kick", "redact",
                                "state_default", "users", "users_default"],
        "m.room.history_visibility": ["history_visibility"],
        "m.room.redaction": ["redacts"],
    }
    if t == "m.room.create":
        newc = dict(c)
    else:
        newc = {k: c[k] for k in keepc.get(t, []) if k in c}
        if t == "m.room.member" and "third_party_invite" in c and "signed" in c["third_party_invite"]:
            newc["third_party_invite"] = {"signed": c["third_party_invite"]["signed"]}
    out["content"] = newc
    return out


def reference_id(pdu):
    ev = dict(pdu)
    ev.pop("event_id", None)
    ev.pop("unsigned", None)
    red = redact_v11(ev)
    red.pop("signatures", None)
    red.pop("unsigned", None)
    h = hashlib.sha256(canonical(red)).digest()
    return "$" + base64.urlsafe_b64encode(h).decode().rstrip("=")


def content_hash(pdu):
    ev = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes", "event_id")}
    return base64.b64encode(hashlib.sha256(canonical(ev)).digest()).decode().rstrip("=")


def fed_events(c, room, limit=50):
    """The room's events in federation format (filter event_format)."""
    f = {"event_format": "federation", "room": {"timeline": {"limit": limit}}}
    r = c.req("GET", f"/sync?filter={q(json.dumps(f))}")
    assert r.status_code == 200, r.text
    return r.json()["rooms"]["join"][room]["timeline"]["events"]


# ------------------------------------------------------------------ tests

def test_create_room_and_event_format(server):
    a = C(server)
    room = a.create(name="Test", topic="A topic", room_version="11")
    assert room.startswith("!")
    assert a.state(room, "m.room.name").json() == {"name": "Test"}
    assert a.state(room, "m.room.topic").json()["topic"] == "A topic"
    create = a.state(room, "m.room.create").json()
    assert create["room_version"] == "11"
    pl = a.state(room, "m.room.power_levels").json()
    assert pl["users"][a.id] == 100
    assert a.state(room, "m.room.join_rules").json()["join_rule"] == "invite"
    assert a.state(room, "m.room.history_visibility").json()["history_visibility"] == "shared"
    # event IDs are reference hashes, content hashes are right, depth grows
    evs = fed_events(a, room)
    types = [e["type"] for e in evs]
    assert types[:3] == ["m.room.create", "m.room.member", "m.room.power_levels"]
    prev_depth = 0
    for e in evs:
        assert e["event_id"] == reference_id(e), e
        assert e["hashes"]["sha256"] == content_hash(e)
        assert server.server_name in e["signatures"]
        assert e["depth"] == prev_depth + 1
        prev_depth = e["depth"]
    for a_ev, b_ev in zip(evs, evs[1:]):
        assert b_ev["prev_events"] == [a_ev["event_id"]]
    # auth_events of a message cite create, PL and the sender's member event
    a.send(room, "x")
    msg = fed_events(a, room)[-1]
    ids = {e["type"]: e["event_id"] for e in evs}
    assert set(msg["auth_events"]) == {ids["m.room.create"], ids["m.room.power_levels"],
                                       ids["m.room.member"]}


def test_create_room_v12_room_id_is_create_hash(server):
    a = C(server)
    r = a.req("POST", "/createRoom", {"room_version": "12"})
    if r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION":
        pytest.skip("room version 12 not supported")
    assert r.status_code == 200, r.text
    room = r.json()["room_id"]
    assert ":" not in room
    evs = fed_events(a, room)
    create = evs[0]
    assert create["type"] == "m.room.create" and "room_id" not in create
    assert room == "!" + create["event_id"][1:]
    pl = a.state(room, "m.room.power_levels").json()
    assert a.id not in pl.get("users", {})


def test_create_room_errors(server):
    a = C(server)
    r = a.req("POST", "/createRoom", {"room_version": "999"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    r = a.req("POST", "/createRoom", {"invite": ["not-a-user"]})
    assert r.status_code == 400
    r = a.req("POST", "/createRoom", {"preset": "nope"})
    assert r.status_code == 400
    a.create(room_alias_name="taken")
    r = a.req("POST", "/createRoom", {"room_alias_name": "taken"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_ROOM_IN_USE"
    r = server.api("POST", V3 + "/createRoom", json_body={})
    assert r.status_code == 401


def test_public_room_join_leave(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat", room_alias_name="pub")
    assert a.state(room, "m.room.join_rules").json()["join_rule"] == "public"
    assert a.state(room, "m.room.canonical_alias").json()["alias"] == f"#pub:{server.server_name}"
    # not joined: cannot send
    r = b.req("PUT", f"/rooms/{q(room)}/send/m.room.message/t1", {"body": "x"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    # join by alias
    r = b.join(f"#pub:{server.server_name}")
    assert r.status_code == 200 and r.json()["room_id"] == room
    b.send(room, "hello")
    assert b.state(room, "m.room.member", b.id).json()["membership"] == "join"
    r = b.req("GET", "/joined_rooms")
    assert room in r.json()["joined_rooms"]
    jm = a.req("GET", f"/rooms/{q(room)}/joined_members").json()["joined"]
    assert set(jm) == {a.id, b.id}
    r = b.req("POST", f"/rooms/{q(room)}/leave", {})
    assert r.status_code == 200
    assert room not in b.req("GET", "/joined_rooms").json()["joined_rooms"]
    r = b.req("PUT", f"/rooms/{q(room)}/send/m.room.message/t2", {"body": "x"})
    assert r.status_code == 403
    # forget after leaving works; joining again works
    assert b.req("POST", f"/rooms/{q(room)}/forget", {}).status_code == 200
    assert b.join(room).status_code == 200
    # forgetting while joined is refused
    r = b.req("POST", f"/rooms/{q(room)}/forget", {})
    assert r.status_code == 400


def test_private_room_invite_flow(server):
    a, b, c = C(server), C(server), C(server)
    room = a.create()
    r = b.join(room)
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = a.req("POST", f"/rooms/{q(room)}/invite", {"user_id": b.id})
    assert r.status_code == 200, r.text
    assert b.join(room).status_code == 200
    # private_chat: invite level 0, so b can invite c
    r = b.req("POST", f"/rooms/{q(room)}/invite", {"user_id": c.id})
    assert r.status_code == 200, r.text
    # reject the invite
    assert c.req("POST", f"/rooms/{q(room)}/leave", {}).status_code == 200
    assert a.state(room, "m.room.member", c.id).json()["membership"] == "leave"
    # invite of a joined user is forbidden
    r = a.req("POST", f"/rooms/{q(room)}/invite", {"user_id": b.id})
    assert r.status_code == 403
    r = a.req("POST", f"/rooms/{q(room)}/invite", {})
    assert r.status_code == 400


def test_kick_ban_unban(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    assert b.join(room).status_code == 200
    # b (PL 0) may not kick a
    r = b.req("POST", f"/rooms/{q(room)}/kick", {"user_id": a.id})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = a.req("POST", f"/rooms/{q(room)}/kick", {"user_id": b.id, "reason": "bye"})
    assert r.status_code == 200, r.text
    m = a.state(room, "m.room.member", b.id).json()
    assert m["membership"] == "leave" and m["reason"] == "bye"
    assert b.join(room).status_code == 200
    assert a.req("POST", f"/rooms/{q(room)}/ban", {"user_id": b.id}).status_code == 200
    r = b.join(room)
    assert r.status_code == 403
    assert a.req("POST", f"/rooms/{q(room)}/unban", {"user_id": b.id}).status_code == 200
    assert a.state(room, "m.room.member", b.id).json()["membership"] == "leave"
    assert b.join(room).status_code == 200


def test_state_get_put(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    r = a.req("PUT", f"/rooms/{q(room)}/state/m.room.topic/", {"topic": "t1"})
    assert r.status_code == 200 and r.json()["event_id"].startswith("$")
    r = a.req("PUT", f"/rooms/{q(room)}/state/m.room.topic", {"topic": "t2"})
    assert r.status_code == 200
    assert a.state(room, "m.room.topic").json() == {"topic": "t2"}
    r = a.req("GET", f"/rooms/{q(room)}/state/m.room.topic/")
    assert r.json() == {"topic": "t2"}
    r = a.req("GET", f"/rooms/{q(room)}/state/m.room.topic?format=event")
    assert r.json()["content"] == {"topic": "t2"} and r.json()["type"] == "m.room.topic"
    r = a.req("PUT", f"/rooms/{q(room)}/state/com.example.thing/abc", {"k": 1})
    assert r.status_code == 200
    assert a.state(room, "com.example.thing", "abc").json() == {"k": 1}
    assert a.state(room, "m.room.encryption").status_code == 404
    assert a.state(room, "m.room.encryption").json()["errcode"] == "M_NOT_FOUND"
    full = a.req("GET", f"/rooms/{q(room)}/state").json()
    assert {e["type"] for e in full} >= {"m.room.create", "m.room.member", "m.room.topic"}
    # b joined with PL 0 may not set state
    assert b.join(room).status_code == 200
    r = b.req("PUT", f"/rooms/{q(room)}/state/m.room.topic/", {"topic": "no"})
    assert r.status_code == 403
    # non-member cannot read
    c = C(server)
    assert c.state(room, "m.room.topic").status_code == 403
    r = a.req("GET", "/rooms/!nope:" + server.server_name + "/state")
    assert r.status_code == 404


def test_send_idempotent_and_size(server):
    a = C(server)
    room = a.create()
    e1 = a.send(room, "once", txn="same")
    e2 = a.send(room, "once", txn="same")
    assert e1 == e2
    e3 = a.send(room, "twice", txn="other")
    assert e3 != e1
    msgs = a.req("GET", f"/rooms/{q(room)}/messages?dir=b&limit=50").json()["chunk"]
    assert sum(1 for m in msgs if m.get("content", {}).get("body") == "once") == 1
    # a second device has its own txn scope
    d2 = server.api("POST", V3 + "/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": a.id},
        "password": a.u["password"]}).json()
    a2 = C(server, {"user_id": a.id, "access_token": d2["access_token"]})
    e4 = a2.send(room, "dev2", txn="same")
    assert e4 != e1
    r = a.req("PUT", f"/rooms/{q(room)}/send/m.room.message/big", {"body": "x" * 70000})
    assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
    r = a.req("PUT", f"/rooms/!unknown:{server.server_name}/send/m.room.message/x", {"body": "x"})
    assert r.status_code in (403, 404)


def test_redaction(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    assert b.join(room).status_code == 200
    eid = b.send(room, "secret")
    other = a.send(room, "mine")
    # b may not redact a's event
    r = b.req("PUT", f"/rooms/{q(room)}/redact/{q(other)}/t1", {})
    assert r.status_code == 403
    r = b.req("PUT", f"/rooms/{q(room)}/redact/{q(eid)}/t1", {"reason": "oops"})
    assert r.status_code == 200, r.text
    rid = r.json()["event_id"]
    r2 = b.req("PUT", f"/rooms/{q(room)}/redact/{q(eid)}/t1", {"reason": "oops"})
    assert r2.json()["event_id"] == rid
    ev = a.req("GET", f"/rooms/{q(room)}/event/{q(eid)}").json()
    assert ev["content"] == {}
    assert ev["unsigned"]["redacted_because"]["event_id"] == rid
    red = a.req("GET", f"/rooms/{q(room)}/event/{q(rid)}").json()
    assert red["type"] == "m.room.redaction" and red["redacts"] == eid
    # the admin (PL 100) may redact others' events
    r = a.req("PUT", f"/rooms/{q(room)}/redact/{q(other)}/t9", {})
    assert r.status_code == 200
    r = a.req("PUT", f"/rooms/{q(room)}/redact/{q('$nope')}/t10", {})
    assert r.status_code == 404


def test_messages_pagination(server):
    a = C(server)
    room = a.create()
    sent = [a.send(room, f"m{i}") for i in range(25)]
    r = a.req("GET", f"/rooms/{q(room)}/messages?dir=b&limit=10").json()
    assert [e["event_id"] for e in r["chunk"]] == sent[::-1][:10]
    assert "end" in r and "start" in r
    seen = [e["event_id"] for e in r["chunk"]]
    tok = r["end"]
    while tok:
        r = a.req("GET", f"/rooms/{q(room)}/messages?dir=b&limit=10&from={tok}").json()
        seen += [e["event_id"] for e in r["chunk"]]
        tok = r.get("end")
    msgs = [e for e in seen if e in sent]
    assert msgs == sent[::-1]
    # everything including the room's creation events, none twice
    assert len(seen) == len(set(seen))
    assert len(seen) > 25
    # forwards from the start
    r = a.req("GET", f"/rooms/{q(room)}/messages?dir=f&limit=5").json()
    assert r["chunk"][0]["type"] == "m.room.create"
    fwd = [e["event_id"] for e in r["chunk"]]
    tok = r.get("end")
    while tok:
        r = a.req("GET", f"/rooms/{q(room)}/messages?dir=f&limit=7&from={tok}").json()
        fwd += [e["event_id"] for e in r["chunk"]]
        tok = r.get("end")
    assert fwd == seen[::-1]
    # filters
    f = json.dumps({"types": ["m.room.message"], "lazy_load_members": True})
    r = a.req("GET", f"/rooms/{q(room)}/messages?dir=b&limit=5&filter={q(f)}").json()
    assert all(e["type"] == "m.room.message" for e in r["chunk"])
    assert any(s["state_key"] == a.id for s in r["state"])
    assert a.req("GET", f"/rooms/{q(room)}/messages?dir=x").status_code == 400
    assert a.req("GET", f"/rooms/{q(room)}/messages?dir=b&from=garbage").status_code == 400
    c = C(server)
    assert c.req("GET", f"/rooms/{q(room)}/messages?dir=b").status_code == 403


def test_context_and_event(server):
    a = C(server)
    room = a.create()
    sent = [a.send(room, f"m{i}") for i in range(10)]
    r = a.req("GET", f"/rooms/{q(room)}/context/{q(sent[5])}?limit=4")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["event"]["event_id"] == sent[5]
    assert [e["event_id"] for e in d["events_before"]] == [sent[4], sent[3]]
    assert [e["event_id"] for e in d["events_after"]] == [sent[6], sent[7]]
    assert d["start"] and d["end"]
    assert any(s["type"] == "m.room.create" for s in d["state"])
    ev = a.req("GET", f"/rooms/{q(room)}/event/{q(sent[0])}").json()
    assert ev["content"]["body"] == "m0" and ev["room_id"] == room
    r = a.req("GET", f"/rooms/{q(room)}/event/{q('$unknown')}")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    c = C(server)
    assert c.req("GET", f"/rooms/{q(room)}/event/{q(sent[0])}").status_code == 404


def test_members(server):
    a, b, c = C(server), C(server), C(server)
    room = a.create(preset="public_chat")
    b.join(room)
    a.req("POST", f"/rooms/{q(room)}/invite", {"user_id": c.id})
    ch = a.req("GET", f"/rooms/{q(room)}/members").json()["chunk"]
    assert {e["state_key"]: e["content"]["membership"] for e in ch} == {
        a.id: "join", b.id: "join", c.id: "invite"}
    ch = a.req("GET", f"/rooms/{q(room)}/members?membership=invite").json()["chunk"]
    assert [e["state_key"] for e in ch] == [c.id]
    ch = a.req("GET", f"/rooms/{q(room)}/members?not_membership=invite").json()["chunk"]
    assert {e["state_key"] for e in ch} == {a.id, b.id}


def test_aliases(server):
    a, b = C(server), C(server)
    room = a.create()
    alias = f"#al{uuid.uuid4().hex[:6]}:{server.server_name}"
    r = a.req("PUT", f"/directory/room/{q(alias)}", {"room_id": room})
    assert r.status_code == 200, r.text
    r = a.req("PUT", f"/directory/room/{q(alias)}", {"room_id": room})
    assert r.status_code == 409
    r = server.api("GET", V3 + f"/directory/room/{q(alias)}")
    assert r.status_code == 200 and r.json()["room_id"] == room
    assert server.server_name in r.json()["servers"]
    assert a.req("GET", f"/rooms/{q(room)}/aliases").json()["aliases"] == [alias]
    r = a.req("PUT", f"/directory/room/{q('#x:other.example')}", {"room_id": room})
    assert r.status_code == 400
    r = a.req("PUT", f"/directory/room/{q('nohash')}", {"room_id": room})
    assert r.status_code == 400
    # b is not in the room: may not delete
    assert b.req("DELETE", f"/directory/room/{q(alias)}").status_code == 403
    assert a.req("DELETE", f"/directory/room/{q(alias)}").status_code == 200
    r = server.api("GET", V3 + f"/directory/room/{q(alias)}")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"


def test_public_rooms(server):
    a = C(server)
    r1 = a.create(visibility="public", preset="public_chat", name="Alpha room", topic="first")
    r2 = a.create(visibility="public", preset="public_chat", name="Beta room")
    r3 = a.create(name="Private one")
    d = server.api("GET", V3 + "/publicRooms").json()
    ids = [c["room_id"] for c in d["chunk"]]
    assert set(ids) == {r1, r2}
    e = next(c for c in d["chunk"] if c["room_id"] == r1)
    assert e["name"] == "Alpha room" and e["topic"] == "first"
    assert e["num_joined_members"] == 1 and e["join_rule"] == "public"
    d = a.req("POST", "/publicRooms", {"filter": {"generic_search_term": "beta"}}).json()
    assert [c["room_id"] for c in d["chunk"]] == [r2]
    d = server.api("GET", V3 + "/publicRooms?limit=1").json()
    assert len(d["chunk"]) == 1 and "next_batch" in d
    d2 = server.api("GET", V3 + f"/publicRooms?limit=1&since={d['next_batch']}").json()
    assert len(d2["chunk"]) == 1 and d2["chunk"][0]["room_id"] != d["chunk"][0]["room_id"]
    # directory visibility
    assert server.api("GET", V3 + f"/directory/list/room/{q(r3)}").json()["visibility"] == "private"
    assert a.req("PUT", f"/directory/list/room/{q(r3)}", {"visibility": "public"}).status_code == 200
    assert server.api("GET", V3 + f"/directory/list/room/{q(r3)}").json()["visibility"] == "public"
    assert server.api("GET", V3 + "/directory/list/room/!nope:x").status_code == 404


def test_upgrade(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat", name="Old", room_version="10",
                    room_alias_name="upg")
    b.join(room)
    r = b.req("POST", f"/rooms/{q(room)}/upgrade", {"new_version": "11"})
    assert r.status_code == 403
    r = a.req("POST", f"/rooms/{q(room)}/upgrade", {"new_version": "999"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    r = a.req("POST", f"/rooms/{q(room)}/upgrade", {"new_version": "11"})
    assert r.status_code == 200, r.text
    new = r.json()["replacement_room"]
    tomb = a.state(room, "m.room.tombstone").json()
    assert tomb["replacement_room"] == new
    create = a.state(new, "m.room.create").json()
    assert create["predecessor"]["room_id"] == room and create["room_version"] == "11"
    assert a.state(new, "m.room.name").json()["name"] == "Old"
    assert a.state(new, "m.room.join_rules").json()["join_rule"] == "public"
    pl = a.state(room, "m.room.power_levels").json()
    assert pl["events_default"] >= 50
    r = b.req("PUT", f"/rooms/{q(room)}/send/m.room.message/x", {"body": "x"})
    assert r.status_code == 403
    r = server.api("GET", V3 + f"/directory/room/{q('#upg:' + server.server_name)}")
    assert r.json()["room_id"] == new


def test_timestamp_to_event(server):
    a = C(server)
    room = a.create()
    e1 = a.send(room, "one")
    ts = a.req("GET", f"/rooms/{q(room)}/event/{q(e1)}").json()["origin_server_ts"]
    r = server.api("GET", f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event?ts={ts}&dir=b",
                   token=a.tok)
    assert r.status_code == 200, r.text
    assert r.json()["origin_server_ts"] <= ts
    r = server.api("GET", f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event?ts={ts + 10**9}&dir=f",
                   token=a.tok)
    assert r.status_code == 404


def test_restricted_join(server):
    a, b, c = C(server), C(server), C(server)
    space = a.create(preset="public_chat")
    room = a.create(room_version="10", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}]}}])
    assert b.join(room).status_code == 403
    assert b.join(space).status_code == 200
    r = b.join(room)
    assert r.status_code == 200, r.text
    m = a.state(room, "m.room.member", b.id).json()
    assert m["join_authorised_via_users_server"] == a.id
    assert c.join(room).status_code == 403


def test_knock(server):
    a, b = C(server), C(server)
    room = a.create(initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                    "content": {"join_rule": "knock"}}])
    r = b.req("POST", f"/knock/{q(room)}", {"reason": "let me in"})
    assert r.status_code == 200, r.text
    assert a.state(room, "m.room.member", b.id).json()["membership"] == "knock"
    assert a.req("POST", f"/rooms/{q(room)}/invite", {"user_id": b.id}).status_code == 200
    assert b.join(room).status_code == 200
