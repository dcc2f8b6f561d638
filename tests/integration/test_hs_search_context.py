"""
/search with event_context (relations/search.c): the events before and
after each result and its profile_info obey history visibility exactly as
/context does (rm_visibility.c): a user who joined later does not see the
events the room's visibility hides from them, and the events of a user who
deactivated with erase=true come redacted to users who were not joined when
they were sent.  On both storage engines.
"""
import pytest

from test_hs_relations import C, q


def set_hv(c, room, hv):
    c.ok("PUT", f"/rooms/{q(room)}/state/m.room.history_visibility/", {"history_visibility": hv})


def search_ctx(c, term, before=20, after=20):
    r = c.req("POST", "/search", {"search_categories": {"room_events": {
        "search_term": term, "keys": ["content.body"],
        "event_context": {"before_limit": before, "after_limit": after,
                          "include_profile": True}}}})
    assert r.status_code == 200, r.text
    res = r.json()["search_categories"]["room_events"]["results"]
    assert len(res) == 1, res
    return res[0]["context"]


def context(c, room, eid, limit):
    return c.ok("GET", f"/rooms/{q(room)}/context/{q(eid)}", params={"limit": limit})


def ids(events):
    return [e["event_id"] for e in events]


@pytest.mark.parametrize("hv,sees_pre_invite,sees_invited", [
    ("world_readable", True, True),
    ("shared", True, True),
    ("invited", False, True),
    ("joined", False, False),
])
def test_search_context_follows_history_visibility(server, hv, sees_pre_invite, sees_invited):
    a, b, gone = C(server), C(server), C(server)
    room = a.create()
    set_hv(a, room, hv)
    gone.join(room)
    pre_gone = gone.msg(room, "from a user who left before b came")
    gone.ok("POST", f"/rooms/{q(room)}/leave", {})
    pre = a.msg(room, "before the invite")
    a.ok("POST", f"/rooms/{q(room)}/invite", {"user_id": b.id})
    invited = a.msg(room, "after the invite")
    b.join(room)
    hit = a.msg(room, "the needle message")
    post = a.msg(room, "one more afterwards")

    ctx = search_ctx(b, "needle")
    before = ids(ctx["events_before"])
    assert (pre in before) == sees_pre_invite
    assert (pre_gone in before) == sees_pre_invite
    assert (invited in before) == sees_invited
    assert ids(ctx["events_after"]) == [post]
    # exactly what /context shows around the same event (same window)
    cx = context(b, room, hit, 40)
    assert before == ids(cx["events_before"])
    assert ids(ctx["events_after"]) == ids(cx["events_after"])
    # profiles only of the senders of the events b may see
    assert a.id in ctx["profile_info"]
    assert (gone.id in ctx["profile_info"]) == sees_pre_invite

    # the member from the start sees the whole window
    full = search_ctx(a, "needle")
    assert {pre, pre_gone, invited} <= set(ids(full["events_before"]))
    assert gone.id in full["profile_info"]


def test_search_context_small_window_is_filtered_not_refilled(server):
    """The window is the before_limit events next to the hit, then
    filtered (as /context): hidden events are dropped, not replaced."""
    a, b = C(server), C(server)
    room = a.create()
    set_hv(a, room, "joined")
    for i in range(3):
        a.msg(room, f"old message {i}")
    b.join(room)
    a.msg(room, "the needle message")
    ctx = search_ctx(b, "needle", before=3, after=0)
    # the window holds two hidden messages and b's own join
    evs = ctx["events_before"]
    assert [(e["type"], e.get("state_key")) for e in evs] == [("m.room.member", b.id)]


def test_search_context_erased_sender_redacted_for_later_joiners(server):
    a, member, joiner = C(server), C(server), C(server)
    room = a.create()
    member.join(room)
    old = a.msg(room, "secret words of the erased user")
    joiner.join(room)
    r = server.api("POST", "/_matrix/client/v3/account/deactivate", token=a.tok, json_body={
        "erase": True, "auth": {"type": "m.login.password", "password": a.u["password"],
                                "identifier": {"type": "m.id.user", "user": a.id}}})
    assert r.status_code == 200, r.text
    hit = member.msg(room, "the needle message")

    def seen(c):
        ctx = search_ctx(c, "needle")
        ev = next(e for e in ctx["events_before"] if e["event_id"] == old)
        cx = context(c, room, hit, 40)
        cev = next(e for e in cx["events_before"] if e["event_id"] == old)
        assert ev["content"] == cev["content"]
        return ev["content"]

    assert seen(member) == {"msgtype": "m.text", "body": "secret words of the erased user"}
    assert seen(joiner) == {}
