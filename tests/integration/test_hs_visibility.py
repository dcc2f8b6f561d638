"""
History visibility (spec "History visibility"): what /messages, /event,
/context and /sync timelines show a user, from the visibility and the
user's membership in the state after each event, with the boundary rules
(a visibility change is seen with the more permissive side; one's own
membership events).  Also the sync shapes fixed with it: a filtered
timeline reaches its limit, a profile change is not a new join, strict
lazy-loading flags, heroes only for unnamed rooms, gapped lazy-loaded state.
"""
import json

import pytest

from test_hs_rooms import C, q
from test_hs_sync import sync


def set_hv(c, room, hv):
    r = c.req("PUT", f"/rooms/{q(room)}/state/m.room.history_visibility/", {"history_visibility": hv})
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def invite(c, room, user):
    r = c.req("POST", f"/rooms/{q(room)}/invite", {"user_id": user})
    assert r.status_code == 200, r.text


def messages(c, room, **params):
    p = {"dir": "b", "limit": "50"}
    p.update(params)
    return c.req("GET", f"/rooms/{q(room)}/messages", params=p)


def visible_ids(c, room):
    r = messages(c, room)
    assert r.status_code == 200, r.text
    return {e["event_id"] for e in r.json()["chunk"]}


@pytest.mark.parametrize("hv,before,after_invite", [
    ("world_readable", True, True),
    ("shared", True, True),
    ("invited", False, True),
    ("joined", False, False),
])
def test_messages_visibility(server, hv, before, after_invite):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    set_hv(a, room, hv)
    e_before = a.send(room, "before join")
    invite(a, room, b.id)
    e_invited = a.send(room, "after invite")
    assert b.join(room).status_code == 200
    e_after = a.send(room, "after join")
    seen = visible_ids(b, room)
    assert (e_before in seen) == before
    assert (e_invited in seen) == after_invite
    assert e_after in seen
    # /event answers 404 for an event the user may not see
    r = b.req("GET", f"/rooms/{q(room)}/event/{q(e_before)}")
    assert r.status_code == (200 if before else 404), r.text
    # the joiner's initial sync shows the same
    tl = sync(b)["rooms"]["join"][room]["timeline"]["events"]
    ids = {e["event_id"] for e in tl}
    assert (e_before in ids) == before
    assert e_after in ids


def test_visibility_boundaries(server):
    """Only see history_visibility changes on boundaries (sytest)."""
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    set_hv(a, room, "joined")
    a.send(room, "1")
    set_hv(a, room, "invited")
    a.send(room, "2")
    set_hv(a, room, "shared")
    a.send(room, "3")
    assert b.join(room).status_code == 200
    tl = sync(b)["rooms"]["join"][room]["timeline"]["events"][-4:]
    assert [(e["type"], e["content"].get("history_visibility") or e["content"].get("body"))
            for e in tl[:3]] == [("m.room.history_visibility", "joined"),
                                 ("m.room.history_visibility", "shared"),
                                 ("m.room.message", "3")]
    assert tl[3]["type"] == "m.room.member"


def test_non_member_access(server):
    a, b = C(server), C(server)
    room = a.create(preset="private_chat")
    ev = a.send(room, "secret")
    assert messages(b, room).status_code == 403
    assert b.req("GET", f"/rooms/{q(room)}/event/{q(ev)}").status_code == 404
    r = b.req("GET", f"/rooms/{q(room)}/context/{q(ev)}")
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    # world_readable: a non-member reads, without joining
    set_hv(a, room, "world_readable")
    ev2 = a.send(room, "public")
    seen = visible_ids(b, room)
    assert ev2 in seen and ev not in seen
    assert b.req("GET", f"/rooms/{q(room)}/event/{q(ev2)}").status_code == 200
    r = b.req("GET", f"/rooms/{q(room)}/context/{q(ev2)}")
    assert r.status_code == 200, r.text
    assert ev not in {e["event_id"] for e in r.json()["events_before"]}


def test_leave_stops_history(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    set_hv(a, room, "joined")
    assert b.join(room).status_code == 200
    seen_ev = a.send(room, "while joined")
    assert b.req("POST", f"/rooms/{q(room)}/leave", {}).status_code == 200
    later = a.send(room, "after leave")
    seen = visible_ids(b, room)
    assert seen_ev in seen and later not in seen


def test_filtered_timeline_reaches_limit(server):
    a = C(server)
    room = a.create(preset="public_chat")
    a.send(room, "wanted")
    for i in range(5):
        a.send(room, f"filler {i}", etype="a.filler")
    f = {"room": {"timeline": {"types": ["m.room.message"], "limit": 1}}}
    tl = sync(a, filt=f)["rooms"]["join"][room]["timeline"]
    assert [e["content"]["body"] for e in tl["events"]] == ["wanted"]
    # an empty types list: no timeline, the state is the current state
    f = {"room": {"timeline": {"types": []}, "state": {"types": ["m.room.create"]}}}
    j = sync(a, filt=f)["rooms"]["join"][room]
    assert j["timeline"]["events"] == []
    assert [e["type"] for e in j["state"]["events"]] == ["m.room.create"]
    # /messages applies the filter before the limit too
    r = messages(a, room, limit="1", filter=json.dumps({"types": ["m.room.message"]}))
    assert [e["content"]["body"] for e in r.json()["chunk"]] == ["wanted"]


def test_profile_change_is_not_a_new_join(server):
    a = C(server)
    room = a.create(preset="public_chat")
    tok = sync(a)["next_batch"]
    r = a.req("PUT", f"/rooms/{q(room)}/state/m.room.member/{q(a.id)}",
              {"membership": "join", "displayname": "boris"})
    assert r.status_code == 200, r.text
    ev = a.send(room, "after")
    j = sync(a, tok)["rooms"]["join"][room]
    assert [e["event_id"] for e in j["timeline"]["events"]] == [r.json()["event_id"], ev]
    assert j["state"]["events"] == []


def test_lazy_flags_strictly_boolean(server):
    a = C(server)
    for bad in ("true", 1):
        for key in ("lazy_load_members", "include_redundant_members"):
            r = a.req("POST", f"/user/{q(a.id)}/filter", {"room": {"state": {key: bad}}})
            assert r.status_code == 400, r.text


def test_heroes_only_for_unnamed_rooms(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    assert b.join(room).status_code == 200
    s = sync(a)["rooms"]["join"][room]["summary"]
    assert s["m.heroes"] == [b.id] and s["m.joined_member_count"] == 2


def test_gapped_lazy_sync_includes_gap_members(server):
    alice, bob, charlie, dave = (C(server) for _ in range(4))
    f = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}})
    room = alice.create(preset="public_chat", name="r")
    for u in (bob, charlie):
        assert u.join(room).status_code == 200
    for i in range(5):
        bob.send(room, f"b{i}")
    s = sync(alice, filt=f)
    members = {e["state_key"] for e in s["rooms"]["join"][room]["state"]["events"]
               if e["type"] == "m.room.member"}
    assert members == {alice.id, bob.id}
    assert dave.join(room).status_code == 200
    for i in range(10):
        charlie.send(room, f"c{i}")
    s2 = sync(alice, s["next_batch"], filt=f)
    j = s2["rooms"]["join"][room]
    assert j["timeline"]["limited"] is True
    members = {e["state_key"] for e in j["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {charlie.id, dave.id}
    # nothing redundant afterwards: charlie's membership was sent already
    charlie.send(room, "again")
    j = sync(alice, s2["next_batch"], filt=f)["rooms"]["join"][room]
    assert [e for e in j["state"]["events"] if e["type"] == "m.room.member"] == []


def test_current_state_always_in_timeline(server):
    """A join that happened while the user was away (joined history) still
    shows in the timeline when it is current state (Synapse)."""
    creator, syncer, invitee = C(server), C(server), C(server)
    room = creator.create(preset="public_chat")
    assert syncer.join(room).status_code == 200
    set_hv(creator, room, "joined")
    invite(creator, room, invitee.id)
    tok = sync(syncer)["next_batch"]
    assert syncer.req("POST", f"/rooms/{q(room)}/leave", {}).status_code == 200
    assert invitee.join(room).status_code == 200
    assert syncer.join(room).status_code == 200
    tl = sync(syncer, tok)["rooms"]["join"][room]["timeline"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == invitee.id
               and e["content"]["membership"] == "join" for e in tl["events"])
    assert tl["limited"] is True  # a newly joined room is always limited


def test_filtered_out_room_left_out(server):
    a = C(server)
    room = a.create(preset="public_chat")
    f = {"room": {"timeline": {"types": ["nothing.matches"]}}, "presence": {"types": []}}
    tok = sync(a, filt=f)["next_batch"]
    a.send(room, "filtered")
    assert room not in sync(a, tok, filt=f).get("rooms", {}).get("join", {})


def test_presence_of_new_room_mates(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    sync(a)  # a is online
    tok = sync(b)["next_batch"]
    assert b.join(room).status_code == 200
    s = sync(b, tok)
    senders = {e["sender"] for e in s["presence"]["events"]}
    assert a.id in senders
    # only once
    s = sync(b, s["next_batch"])
    assert a.id not in {e["sender"] for e in s.get("presence", {}).get("events", [])}


def test_own_presence_in_initial_sync(server):
    a = C(server)
    r = a.req("GET", "/initialSync")
    assert r.status_code == 200, r.text
    assert any(p["content"].get("user_id") == a.id or p.get("sender") == a.id
               for p in r.json()["presence"])


def test_presence_of_new_room_mate_never_online(server):
    """A room-mate who never was online shows as offline (Synapse's default
    state), so the client learns of them."""
    a, b = C(server), C(server)
    room = a.create(preset="public_chat")
    sync(a, set_presence="offline")
    tok = sync(b, set_presence="offline")["next_batch"]
    assert b.join(room).status_code == 200
    evs = sync(b, tok, set_presence="offline")["presence"]["events"]
    mine = [e for e in evs if e["sender"] == a.id]
    assert len(mine) == 1 and mine[0]["content"]["presence"] == "offline"
