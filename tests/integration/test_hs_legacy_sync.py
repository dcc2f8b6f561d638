"""
The deprecated event stream and initialSync endpoints (GET /events,
/initialSync, /rooms/{roomId}/initialSync) in Synapse's shapes, timeline
limit 0 in /sync filters, and guest access to joins (guest_access).
"""
import json
import uuid

from test_hs_rooms import C, q

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"


def events(c, **params):
    r = c.s.api("GET", R0 + "/events", token=c.tok, params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_event_stream(server):
    a = C(server)
    first = events(a, timeout="0")
    assert set(first) >= {"chunk", "start", "end"}
    room = a.create(preset="private_chat")
    ids = [a.send(room, f"m{i}") for i in range(6)]
    a.req("PUT", f"/user/{q(a.id)}/rooms/{q(room)}/tags/work", {"order": 1})
    got, tok = [], first["end"]
    for _ in range(20):
        body = events(a, **{"from": tok, "timeout": "100", "limit": "3"})
        got += body["chunk"]
        tok = body["end"]
        if any(e["type"] == "m.tag" for e in got) and \
                sum(e["type"] == "m.room.message" for e in got) >= len(ids):
            break
    msgs = [e["event_id"] for e in got if e["type"] == "m.room.message"]
    assert msgs == ids  # in order, none lost with limit=3
    assert all(e["room_id"] == room for e in got if e["type"] != "m.presence")
    tag = [e for e in got if e["type"] == "m.tag"]
    assert tag and tag[0]["room_id"] == room and "work" in tag[0]["content"]["tags"]


def test_initial_sync_shapes(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat", name="Legacy")
    b.join(room)
    a.send(room, "hello")
    a.req("PUT", f"/user/{q(a.id)}/account_data/my.type", {"x": 1})
    a.req("PUT", f"/user/{q(a.id)}/rooms/{q(room)}/account_data/my.type", {"y": 2})
    r = a.s.api("GET", V3 + "/initialSync", token=a.tok, params={"limit": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"rooms", "presence", "account_data", "receipts", "end"}
    assert [e["type"] for e in body["account_data"]] == ["my.type"]
    rm = [x for x in body["rooms"] if x["room_id"] == room][0]
    assert rm["membership"] == "join"
    assert len(rm["messages"]["chunk"]) == 2
    assert rm["messages"]["chunk"][-1]["content"]["body"] == "hello"
    assert set(rm["messages"]) == {"chunk", "start", "end"}
    types = {e["type"] for e in rm["state"]}
    assert {"m.room.create", "m.room.name", "m.room.member"} <= types
    assert rm["account_data"] == [{"type": "my.type", "content": {"y": 2}}]
    # limit=0: no messages
    r = a.s.api("GET", V3 + "/initialSync", token=a.tok, params={"limit": "0"})
    rm = [x for x in r.json()["rooms"] if x["room_id"] == room][0]
    assert rm["messages"]["chunk"] == []
    # per-room
    r = b.s.api("GET", V3 + f"/rooms/{q(room)}/initialSync", token=b.tok)
    assert r.status_code == 200, r.text
    one = r.json()
    assert one["room_id"] == room and one["membership"] == "join"
    assert set(one) >= {"state", "messages", "presence", "receipts", "account_data"}
    pres = {p["content"]["user_id"] for p in one["presence"]}
    assert a.id in pres
    # a stranger cannot read a non world_readable room
    c = C(server)
    r = c.s.api("GET", V3 + f"/rooms/{q(room)}/initialSync", token=c.tok)
    assert r.status_code == 403


def test_departed_room_initial_sync(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    b.join(room)
    b.send(room, "before")
    b.req("POST", f"/rooms/{q(room)}/leave", {})
    a.send(room, "after")
    r = b.s.api("GET", V3 + "/initialSync", token=b.tok, params={"archived": "true"})
    rm = [x for x in r.json()["rooms"] if x["room_id"] == room][0]
    assert rm["membership"] == "leave"
    assert "after" not in [e["content"].get("body") for e in rm["messages"]["chunk"]]
    r = b.s.api("GET", V3 + f"/rooms/{q(room)}/initialSync", token=b.tok)
    assert r.status_code == 200 and r.json()["membership"] == "leave"
    assert r.json()["presence"] == [] and r.json()["receipts"] == []


def test_sync_timeline_limit_zero(server):
    a = C(server)
    room = a.create()
    a.send(room, "x")
    r = a.s.api("GET", V3 + "/sync", token=a.tok,
                params={"filter": json.dumps({"room": {"timeline": {"limit": 0}}})})
    j = r.json()["rooms"]["join"][room]
    assert j["timeline"]["events"] == [] and j["timeline"]["limited"] is True
    assert "m.room.create" in {e["type"] for e in j["state"]["events"]}


def guest(server):
    r = server.api("POST", V3 + "/register", params={"kind": "guest"}, json_body={})
    assert r.status_code == 200, r.text
    return C(server, r.json())


def test_guest_join_needs_guest_access(server):
    a = C(server)
    g = guest(server)
    closed = a.create(preset="public_chat")  # public_chat: guests forbidden
    assert g.join(closed).status_code == 403
    assert g.req("POST", "/createRoom", {}).status_code == 403
    opened = a.create(preset="public_chat", initial_state=[
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}])
    r = g.join(opened)
    assert r.status_code == 200, r.text
    g.send(opened, "guest says hi")
    r = g.req("GET", f"/rooms/{q(opened)}/messages", params={"dir": "b", "limit": "5"})
    assert r.status_code == 200, r.text
    r = g.req("POST", f"/rooms/{q(opened)}/invite", {"user_id": a.id})
    assert r.status_code == 403
    assert g.req("POST", f"/rooms/{q(opened)}/leave", {}).status_code == 200
