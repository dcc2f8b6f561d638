"""
/sync: initial and incremental syncs, long-poll wake-up, limited timelines
with prev_batch usable for /messages, the invite and leave sections, state
deltas, lazy-loaded members, filters (stored and inline), transaction IDs
for the sending device only, and token validity across a restart.
"""
import json
import threading
import time
import uuid

from test_hs_rooms import C, q

V3 = "/_matrix/client/v3"


def sync(c, since=None, timeout=0, filt=None, **params):
    p = {"timeout": str(timeout)}
    if since:
        p["since"] = since
    if filt is not None:
        p["filter"] = filt if isinstance(filt, str) else json.dumps(filt)
    p.update(params)
    r = c.s.api("GET", V3 + "/sync", token=c.tok, params=p, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def settled(c):
    """A token after the user's own presence change of the first sync has
    been delivered, so that a long-poll from it really waits."""
    tok = sync(c)["next_batch"]
    for _ in range(5):
        r = sync(c, tok)
        if not r.get("presence", {}).get("events"):
            return r["next_batch"]
        tok = r["next_batch"]
    return tok


def timeline(resp, room):
    return resp["rooms"]["join"][room]["timeline"]


def bodies(tl):
    return [e["content"].get("body") for e in tl["events"] if e["type"] == "m.room.message"]


def test_initial_sync(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat", name="Room")
    b.join(room)
    for i in range(5):
        a.send(room, f"m{i}")
    s = sync(a)
    assert s["next_batch"].startswith("s")
    j = s["rooms"]["join"][room]
    assert bodies(j["timeline"]) == ["m0", "m1", "m2", "m3", "m4"]
    state_types = {e["type"] for e in j["state"]["events"]}
    tl_ids = {e["event_id"] for e in j["timeline"]["events"]}
    assert not tl_ids & {e["event_id"] for e in j["state"]["events"]}
    # timeline + state cover the room's state
    all_types = state_types | {e["type"] for e in j["timeline"]["events"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} <= all_types
    assert j["summary"]["m.joined_member_count"] == 2
    # a named room's summary has no heroes (spec: required only when the
    # room has no name and no canonical alias; Synapse omits them)
    assert "m.heroes" not in j["summary"]
    assert j["unread_notifications"] == {"highlight_count": 0, "notification_count": 0}
    for e in j["timeline"]["events"]:
        assert "room_id" not in e and "auth_events" not in e and "hashes" not in e
        assert "age" in e["unsigned"]
    # limit 10 by default: the room has more events than that
    assert len(j["timeline"]["events"]) == 10 and j["timeline"]["limited"] is True


def test_incremental_and_transaction_id(server):
    a = C(server)
    room = a.create()
    s = sync(a)
    r = a.req("PUT", f"/rooms/{q(room)}/send/m.room.message/txn42", {"body": "hi"})
    eid = r.json()["event_id"]
    s2 = sync(a, s["next_batch"])
    tl = timeline(s2, room)
    assert [e["event_id"] for e in tl["events"]] == [eid]
    assert tl["limited"] is False
    assert tl["events"][0]["unsigned"]["transaction_id"] == "txn42"
    assert s2["rooms"]["join"][room]["state"]["events"] == []
    # another device of the same user does not see the txn ID
    d2 = server.api("POST", V3 + "/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": a.id},
        "password": a.u["password"]}).json()
    a2 = C(server, {"user_id": a.id, "access_token": d2["access_token"]})
    tl2 = timeline(sync(a2, s["next_batch"]), room)
    assert "transaction_id" not in tl2["events"][0]["unsigned"]
    # nothing new: empty, same rooms not listed
    s3 = sync(a, s2["next_batch"])
    assert room not in s3.get("rooms", {}).get("join", {})


def test_long_poll_wakes_up(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    b.join(room)
    s = {"next_batch": settled(b)}
    result = {}

    def poll():
        t0 = time.time()
        tok = s["next_batch"]
        result["extra"] = []
        while time.time() - t0 < 20:
            r = sync(b, tok, timeout=20000)
            tok = r["next_batch"]
            if room in r.get("rooms", {}).get("join", {}):
                result["resp"] = r
                break
            result["extra"].append(r)
        result["dt"] = time.time() - t0

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    t_send = time.time()
    a.send(room, "wake up")
    th.join(30)
    assert not th.is_alive()
    assert bodies(timeline(result["resp"], room)) == ["wake up"], result["extra"]
    # nothing but presence may wake the poll early
    assert all(not x["rooms"]["join"] for x in result["extra"]), result["extra"]
    assert result["dt"] < 5
    assert time.time() - t_send < 2


def test_long_poll_times_out(server):
    a = C(server)
    a.create()
    tok = settled(a)
    for _ in range(3):
        t0 = time.time()
        s2 = sync(a, tok, timeout=700)
        dt = time.time() - t0
        if s2.get("presence", {}).get("events"):
            tok = s2["next_batch"]  # a late presence write; poll again
            continue
        break
    assert 0.6 < dt < 5
    assert s2["next_batch"] and not s2["rooms"]["join"]


def test_many_long_polls_fan_out(server):
    a = C(server)
    room = a.create(preset="public_chat")
    users = [C(server) for _ in range(10)]
    for u in users:
        assert u.join(room).status_code == 200
    tokens = [settled(u) for u in users]
    done = []

    def poll(u, tok):
        # other users' presence may arrive first: keep polling until the
        # message does
        t0 = time.time()
        while time.time() - t0 < 20:
            r = sync(u, tok, timeout=20000)
            tok = r["next_batch"]
            if room in r.get("rooms", {}).get("join", {}):
                done.append((time.time() - t0, bodies(timeline(r, room))))
                return

    ths = [threading.Thread(target=poll, args=(u, t)) for u, t in zip(users, tokens)]
    for t in ths:
        t.start()
    time.sleep(0.5)
    a.send(room, "all")
    for t in ths:
        t.join(30)
    assert len(done) == 10
    assert all(b == ["all"] for _, b in done)


def test_limited_timeline_and_prev_batch(server):
    a = C(server)
    room = a.create()
    s = sync(a)
    sent = [a.send(room, f"m{i}") for i in range(15)]
    s2 = sync(a, s["next_batch"], filt={"room": {"timeline": {"limit": 5}}})
    tl = timeline(s2, room)
    assert tl["limited"] is True
    assert [e["event_id"] for e in tl["events"]] == sent[-5:]
    r = a.req("GET", f"/rooms/{q(room)}/messages?dir=b&limit=10&from={tl['prev_batch']}").json()
    assert [e["event_id"] for e in r["chunk"]] == sent[-6::-1][:10]


def test_state_delta_in_gap(server):
    a = C(server)
    room = a.create(name="before")
    s = sync(a)
    a.req("PUT", f"/rooms/{q(room)}/state/m.room.name/", {"name": "after"})
    for i in range(5):
        a.send(room, f"m{i}")
    j = sync(a, s["next_batch"], filt={"room": {"timeline": {"limit": 3}}})["rooms"]["join"][room]
    assert j["timeline"]["limited"]
    st = j["state"]["events"]
    assert [e["content"] for e in st if e["type"] == "m.room.name"] == [{"name": "after"}]
    # unchanged state is not repeated
    assert not any(e["type"] == "m.room.create" for e in st)


def test_invite_and_leave_sections(server):
    a, b = C(server), C(server)
    s = sync(b)
    room = a.create(name="Invite me")
    a.req("POST", f"/rooms/{q(room)}/invite", {"user_id": b.id})
    s2 = sync(b, s["next_batch"])
    inv = s2["rooms"]["invite"][room]["invite_state"]["events"]
    types = {e["type"] for e in inv}
    assert {"m.room.create", "m.room.name", "m.room.join_rules", "m.room.member"} <= types
    me = [e for e in inv if e["type"] == "m.room.member"]
    assert me[0]["state_key"] == b.id and me[0]["content"]["membership"] == "invite"
    assert set(me[0]) == {"type", "state_key", "sender", "content"}
    # initial sync shows the invite too
    assert room in sync(b)["rooms"]["invite"]
    b.join(room)
    s3 = sync(b, s2["next_batch"])
    assert room in s3["rooms"]["join"] and room not in s3["rooms"].get("invite", {})
    j = s3["rooms"]["join"][room]
    all_types = {e["type"] for e in j["state"]["events"] + j["timeline"]["events"]}
    assert "m.room.create" in all_types
    a.send(room, "before kick")
    a.req("POST", f"/rooms/{q(room)}/kick", {"user_id": b.id})
    a.send(room, "after kick")
    s4 = sync(b, s3["next_batch"])
    lv = s4["rooms"]["leave"][room]
    assert bodies(lv["timeline"]) == ["before kick"]
    assert lv["timeline"]["events"][-1]["content"]["membership"] == "leave"
    assert room not in s4["rooms"].get("join", {})
    s5 = sync(b, s4["next_batch"])
    assert room not in s5["rooms"].get("leave", {})
    # include_leave on an initial sync
    s6 = sync(b, filt={"room": {"include_leave": True}})
    assert room in s6["rooms"]["leave"]


def test_lazy_load_members(server):
    a, b, c = C(server), C(server), C(server)
    room = a.create(preset="public_chat")
    b.join(room)
    c.join(room)
    for i in range(12):
        b.send(room, f"b{i}")
    f = {"room": {"timeline": {"limit": 5}, "state": {"lazy_load_members": True}}}
    j = sync(a, filt=f)["rooms"]["join"][room]
    members = {e["state_key"] for e in j["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {a.id, b.id}


def test_stored_filter(server):
    a = C(server)
    f = {"room": {"timeline": {"limit": 2}}}
    r = a.req("POST", f"/user/{q(a.id)}/filter", f)
    assert r.status_code == 200, r.text
    fid = r.json()["filter_id"]
    assert a.req("GET", f"/user/{q(a.id)}/filter/{fid}").json() == f
    assert a.req("GET", f"/user/{q(a.id)}/filter/12345").status_code == 404
    b = C(server)
    assert b.req("GET", f"/user/{q(a.id)}/filter/{fid}").status_code == 403
    assert b.req("POST", f"/user/{q(a.id)}/filter", f).status_code == 403
    room = a.create()
    for i in range(4):
        a.send(room, f"m{i}")
    tl = timeline(sync(a, filt=fid), room)
    assert len(tl["events"]) == 2 and tl["limited"]
    r = a.s.api("GET", V3 + "/sync", token=a.tok, params={"filter": "{bad"})
    assert r.status_code == 400


def test_full_state(server):
    a = C(server)
    room = a.create(name="N")
    s = sync(a)
    a.send(room, "x")
    j = sync(a, s["next_batch"], full_state="true")["rooms"]["join"][room]
    assert any(e["type"] == "m.room.create" for e in j["state"]["events"])
    assert bodies(j["timeline"]) == ["x"]


def test_token_valid_after_restart(server):
    a = C(server)
    room = a.create()
    a.send(room, "before")
    s = sync(a)
    server.restart()
    a.send(room, "after")
    s2 = sync(a, s["next_batch"])
    assert bodies(timeline(s2, room)) == ["after"]
    # next_batch positions only grow
    ev = lambda t: int(t[1:].split("_")[0])
    assert ev(s2["next_batch"]) > ev(s["next_batch"])


def test_initial_sync_many_rooms_is_fast(server):
    a = C(server)
    rooms = [a.create() for _ in range(30)]
    for r in rooms:
        for i in range(5):
            a.send(r, f"m{i}")
    sync(a)
    t0 = time.time()
    s = sync(a)
    dt = time.time() - t0
    assert set(rooms) <= set(s["rooms"]["join"])
    assert dt < 1.0
