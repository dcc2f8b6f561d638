"""
Sync fixes found by sytest: a /sync `prev_batch` that /messages can page
back from (the sync point when the timeline was not cut at the limit, as
Synapse), and read receipts in the legacy /events stream of a
world_readable room the user only previews.
"""
import time

from test_hs_rooms import C, q

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"


def test_prev_batch_pages_back_when_not_limited(server):
    a = C(server)
    room = a.create(preset="private_chat")
    ids = [a.send(room, f"m{i}") for i in range(2)]
    r = a.req("GET", "/sync")
    assert r.status_code == 200, r.text
    tl = r.json()["rooms"]["join"][room]["timeline"]
    assert [e["event_id"] for e in tl["events"]][-2:] == ids
    page = a.req("GET", f"/rooms/{q(room)}/messages",
                 params={"dir": "b", "from": tl["prev_batch"]}).json()
    assert "end" in page
    assert [e["event_id"] for e in page["chunk"]][:2] == ids[::-1]
    assert page["chunk"][-1]["type"] == "m.room.create"
    last = a.req("GET", f"/rooms/{q(room)}/messages",
                 params={"dir": "b", "from": page["end"]}).json()
    assert last["chunk"] == [] and "end" not in last


def test_prev_batch_before_oldest_when_limited(server):
    a = C(server)
    room = a.create(preset="private_chat")
    ids = [a.send(room, f"m{i}") for i in range(5)]
    flt = '{"room": {"timeline": {"limit": 2}}}'
    tl = a.req("GET", "/sync", params={"filter": flt}).json()["rooms"]["join"][room]["timeline"]
    assert tl["limited"] and [e["event_id"] for e in tl["events"]] == ids[3:]
    page = a.req("GET", f"/rooms/{q(room)}/messages",
                 params={"dir": "b", "from": tl["prev_batch"], "limit": "3"}).json()
    assert [e["event_id"] for e in page["chunk"]] == ids[2::-1]
    assert "end" in page


def test_legacy_events_peek_gets_receipts(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat", initial_state=[{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "world_readable"}}])
    eid = a.send(room, "hello")
    start = b.s.api("GET", R0 + "/events", token=b.tok,
                    params={"room_id": room, "timeout": "0"}).json()["end"]
    r = a.req("POST", f"/rooms/{q(room)}/receipt/m.read/{q(eid)}", {})
    assert r.status_code == 200, r.text
    tok, got = start, []
    deadline = time.time() + 10
    while time.time() < deadline:
        body = b.s.api("GET", R0 + "/events", token=b.tok,
                       params={"room_id": room, "from": tok, "timeout": "500"}).json()
        tok = body["end"]
        got += [e for e in body["chunk"] if e["type"] == "m.receipt"]
        if got:
            break
    assert got, "no receipt in the previewed room's event stream"
    assert got[0]["room_id"] == room
    assert a.id in got[0]["content"][eid]["m.read"]
