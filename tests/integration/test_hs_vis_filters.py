"""
History visibility beyond /messages and /sync: /relations, /threads and
/search leave out what the room's history visibility hides; the events of a
user who deactivated with erase=true are shown redacted to users who were
not joined when they were sent (Synapse's erased-user filter); the legacy
/events stream of a peeked world_readable room carries its members'
presence; an incremental /sync leaves out a room whose only news came from
ignored users.
"""
import json

from test_hs_relations import C, V1, V3, q, thread_reply


def set_hv(c, room, hv):
    c.ok("PUT", f"/rooms/{q(room)}/state/m.room.history_visibility/", {"history_visibility": hv})


def search(c, term):
    r = c.req("POST", "/search", {"search_categories": {"room_events": {"search_term": term}}})
    assert r.status_code == 200, r.text
    return [x["result"]["event_id"] for x in r.json()["search_categories"]["room_events"]["results"]]


def test_relations_threads_search_follow_history_visibility(server):
    a, b = C(server), C(server)
    room = a.create()
    set_hv(a, room, "joined")
    old_root = a.msg(room, "hiddenword root")
    thread_reply(a, room, old_root, "hiddenword reply")
    b.join(room)
    new_root = a.msg(room, "shownword root")
    new_reply = thread_reply(a, room, new_root, "shownword reply")

    # the member from the start sees everything
    assert a.relations(room, old_root).status_code == 200
    assert set(search(a, "hiddenword")) >= {old_root}

    # the later joiner: the hidden parent is unknown, the hidden thread and
    # search hits are left out, the visible ones stay
    r = b.relations(room, old_root)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", r.text
    rel = b.relations(room, new_root)
    assert rel.status_code == 200, rel.text
    assert [e["event_id"] for e in rel.json()["chunk"]] == [new_reply]
    threads = b.ok("GET", f"/rooms/{q(room)}/threads", prefix=V1)
    assert [e["event_id"] for e in threads["chunk"]] == [new_root]
    assert search(b, "hiddenword") == []
    assert set(search(b, "shownword")) == {new_root, new_reply}


def test_erased_sender_redacted_for_later_joiners(server):
    a, member, joiner = C(server), C(server), C(server)
    room = a.create()
    member.join(room)
    msg = a.msg(room, "body1")
    joiner.join(room)
    r = server.api("POST", V3 + "/account/deactivate", token=a.tok, json_body={
        "erase": True, "auth": {"type": "m.login.password", "password": a.u["password"],
                                "identifier": {"type": "m.id.user", "user": a.id}}})
    assert r.status_code == 200, r.text

    def seen(c):
        out = {}
        tl = c.sync()["rooms"]["join"][room]["timeline"]["events"]
        out["sync"] = next(e for e in tl if e["event_id"] == msg)["content"]
        chunk = c.ok("GET", f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})["chunk"]
        out["messages"] = next(e for e in chunk if e["event_id"] == msg)["content"]
        return out

    assert seen(member) == {"sync": {"msgtype": "m.text", "body": "body1"},
                            "messages": {"msgtype": "m.text", "body": "body1"}}
    assert seen(joiner) == {"sync": {}, "messages": {}}


def test_events_stream_of_peeked_room_has_members_presence(server):
    a, peeker = C(server), C(server)
    room = a.create()
    set_hv(a, room, "world_readable")
    params = {"room_id": room, "timeout": "0"}
    r = peeker.req("GET", "/events", params=params)
    assert r.status_code == 200, r.text
    tok = r.json()["end"]
    a.ok("PUT", f"/presence/{q(a.id)}/status", {"presence": "online", "status_msg": "lemurs"})
    got = []
    for _ in range(20):
        r = peeker.req("GET", "/events", params=dict(params, **{"from": tok, "timeout": "500"}))
        assert r.status_code == 200, r.text
        tok = r.json()["end"]
        got += [e for e in r.json()["chunk"] if e.get("type") == "m.presence"]
        if any(e["content"].get("user_id") == a.id for e in got):
            break
    pe = next(e for e in got if e["content"].get("user_id") == a.id)
    assert pe["content"]["presence"] == "online"
    assert pe["content"]["status_msg"] == "lemurs"


def test_sync_leaves_out_room_with_only_ignored_news(server):
    a, b, c = C(server), C(server), C(server)
    room = a.create()
    b.join(room)
    c.join(room)
    a.ok("PUT", f"/user/{q(a.id)}/account_data/m.ignored_user_list", {"ignored_users": {b.id: {}}})
    filt = json.dumps({"room": {"timeline": {"types": ["m.room.message"]}}})
    since = a.sync(filter=filt)["next_batch"]
    b.msg(room, "from the ignored user")
    body = a.sync(filter=filt, since=since)
    assert room not in body["rooms"]["join"]
    since = body["next_batch"]
    shown = c.msg(room, "from someone else")
    tl = a.sync(filter=filt, since=since)["rooms"]["join"][room]["timeline"]["events"]
    assert [e["event_id"] for e in tl] == [shown]
