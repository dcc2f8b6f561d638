"""
Relations, threads, bundled aggregations, ignored users and server-side
search (homeserver relations/ part), on both storage engines:
edits bundled as m.replace (latest edit wins, edits by another sender are
ignored, a redacted edit falls back), reactions through /relations with
rel_type / event_type filters and pagination, references and recurse,
/threads (all vs participated, summary count, latest_event, order),
m.ignored_user_list applied to /sync, /messages and invites, and /search by
rank and recent with pagination, restricted to joined rooms.
"""
import time
import uuid
from urllib.parse import quote

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


def q(s):
    return quote(s, safe="")


class C:
    """A logged-in user on `server`."""

    def __init__(self, server):
        self.s = server
        self.u = server.register()
        self.tok = self.u["access_token"]
        self.id = self.u["user_id"]

    def req(self, method, path, body=None, prefix=V3, **kw):
        return self.s.api(method, prefix + path, token=self.tok, json_body=body, **kw)

    def ok(self, method, path, body=None, prefix=V3, **kw):
        r = self.req(method, path, body, prefix=prefix, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def create(self, **body):
        body.setdefault("preset", "public_chat")
        return self.ok("POST", "/createRoom", body)["room_id"]

    def send(self, room, content, etype="m.room.message"):
        return self.ok("PUT", f"/rooms/{q(room)}/send/{etype}/{uuid.uuid4().hex}",
                       content)["event_id"]

    def msg(self, room, body, **extra):
        c = {"msgtype": "m.text", "body": body}
        c.update(extra)
        return self.send(room, c)

    def join(self, room):
        return self.ok("POST", f"/join/{q(room)}", {})

    def event(self, room, eid):
        return self.ok("GET", f"/rooms/{q(room)}/event/{q(eid)}")

    def relations(self, room, eid, *path, **params):
        p = "".join("/" + q(x) for x in path)
        return self.req("GET", f"/rooms/{q(room)}/relations/{q(eid)}{p}", prefix=V1,
                        params=params)

    def sync(self, **params):
        return self.ok("GET", "/sync", params=params)


def edit(c, room, orig, body):
    return c.send(room, {"msgtype": "m.text", "body": "* " + body,
                         "m.new_content": {"msgtype": "m.text", "body": body},
                         "m.relates_to": {"rel_type": "m.replace", "event_id": orig}})


def react(c, room, target, key):
    return c.send(room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target,
                                          "key": key}}, etype="m.reaction")


def thread_reply(c, room, root, body):
    return c.msg(room, body, **{"m.relates_to": {"rel_type": "m.thread", "event_id": root,
                                                 "is_falling_back": True,
                                                 "m.in_reply_to": {"event_id": root}}})


def rels(ev):
    return ev.get("unsigned", {}).get("m.relations", {})


# ------------------------------------------------------------------ edits

def test_edits_bundled(server):
    a, b = C(server), C(server)
    room = a.create()
    b.join(room)
    orig = a.msg(room, "original")
    e1 = edit(a, room, orig, "first edit")
    time.sleep(0.01)
    e2 = edit(a, room, orig, "second edit")
    time.sleep(0.01)
    edit(b, room, orig, "not yours")          # wrong sender: ignored
    react(b, room, orig, "👍")                  # annotations are not bundled

    ev = a.event(room, orig)
    r = rels(ev)
    assert r["m.replace"]["event_id"] == e2
    assert r["m.replace"]["content"]["m.new_content"]["body"] == "second edit"
    assert r["m.replace"]["sender"] == a.id
    assert "m.annotation" not in r
    # the original content is served unchanged (spec v1.7)
    assert ev["content"]["body"] == "original"

    # /messages and /sync carry the same bundle
    msgs = a.ok("GET", f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 20})
    byid = {e["event_id"]: e for e in msgs["chunk"]}
    assert rels(byid[orig])["m.replace"]["event_id"] == e2
    tl = a.sync(filter='{"room":{"timeline":{"limit":20}}}')["rooms"]["join"][room]["timeline"]
    byid = {e["event_id"]: e for e in tl["events"]}
    assert rels(byid[orig])["m.replace"]["event_id"] == e2
    # /context too
    ctx = a.ok("GET", f"/rooms/{q(room)}/context/{q(orig)}", params={"limit": 4})
    assert rels(ctx["event"])["m.replace"]["event_id"] == e2

    # redacting the newest edit falls back to the one before
    a.ok("PUT", f"/rooms/{q(room)}/redact/{q(e2)}/{uuid.uuid4().hex}", {})
    assert rels(a.event(room, orig))["m.replace"]["event_id"] == e1


def test_edit_only_by_sender_none(server):
    a, b = C(server), C(server)
    room = a.create()
    b.join(room)
    orig = a.msg(room, "hello")
    edit(b, room, orig, "hijack")
    assert "m.replace" not in rels(a.event(room, orig))


# -------------------------------------------------------------- reactions

def test_reactions_relations_filters_and_pagination(server):
    a, b = C(server), C(server)
    room = a.create()
    b.join(room)
    target = a.msg(room, "react to me")
    r1 = react(a, room, target, "👍")
    r2 = react(b, room, target, "👍")
    r3 = react(b, room, target, "🎉")
    ref = a.msg(room, "see above", **{"m.relates_to": {"rel_type": "m.reference",
                                                        "event_id": target}})
    a.msg(room, "unrelated")

    allr = a.relations(room, target)
    assert allr.status_code == 200, allr.text
    ids = [e["event_id"] for e in allr.json()["chunk"]]
    assert ids == [ref, r3, r2, r1]      # newest first by default

    ann = a.relations(room, target, "m.annotation").json()["chunk"]
    assert [e["event_id"] for e in ann] == [r3, r2, r1]
    typed = a.relations(room, target, "m.annotation", "m.reaction").json()["chunk"]
    assert [e["event_id"] for e in typed] == [r3, r2, r1]
    assert a.relations(room, target, "m.annotation", "m.room.message").json()["chunk"] == []
    assert [e["event_id"] for e in a.relations(room, target, "m.reference").json()["chunk"]] == [ref]

    # forwards
    fwd = a.relations(room, target, "m.annotation", dir="f").json()["chunk"]
    assert [e["event_id"] for e in fwd] == [r1, r2, r3]

    # pagination, limit 1
    seen = []
    params = {"limit": 1}
    for _ in range(10):
        page = a.relations(room, target, "m.annotation", **params).json()
        seen += [e["event_id"] for e in page["chunk"]]
        if "next_batch" not in page:
            break
        params = {"limit": 1, "from": page["next_batch"]}
        assert page["prev_batch"] if "from" in params and len(seen) > 1 else True
    assert seen == [r3, r2, r1]

    # the target's bundle holds the reference but no annotations
    r = rels(a.event(room, target))
    assert r["m.reference"]["chunk"] == [{"event_id": ref}]
    assert "m.annotation" not in r

    # redacted reactions disappear from /relations
    b.ok("PUT", f"/rooms/{q(room)}/redact/{q(r2)}/{uuid.uuid4().hex}", {})
    ann = a.relations(room, target, "m.annotation").json()["chunk"]
    assert [e["event_id"] for e in ann] == [r3, r1]


def test_relations_access(server):
    a, outsider = C(server), C(server)
    room = a.create(preset="private_chat")
    target = a.msg(room, "secret")
    react(a, room, target, "x")
    r = outsider.relations(room, target)
    assert r.status_code == 403, r.text
    assert r.json()["errcode"] == "M_FORBIDDEN"
    r = a.relations(room, "$doesnotexist")
    assert r.status_code == 404, r.text
    assert r.json()["errcode"] == "M_NOT_FOUND"
    r = a.relations(room, target, dir="x")
    assert r.status_code == 400
    r = outsider.relations("!nosuchroom:" + server.server_name, target)
    assert r.status_code == 403


def test_recurse(server):
    a = C(server)
    room = a.create()
    root = a.msg(room, "root")
    child = a.msg(room, "child", **{"m.relates_to": {"rel_type": "m.reference",
                                                      "event_id": root}})
    grandchild = react(a, room, child, "+1")
    flat = a.relations(room, root).json()
    assert [e["event_id"] for e in flat["chunk"]] == [child]
    assert "recursion_depth" not in flat
    deep = a.relations(room, root, recurse="true").json()
    assert [e["event_id"] for e in deep["chunk"]] == [grandchild, child]
    assert deep["recursion_depth"] == 3
    # filters apply at every level
    only = a.relations(room, root, "m.annotation", recurse="true").json()["chunk"]
    assert [e["event_id"] for e in only] == [grandchild]


# ---------------------------------------------------------------- threads

def test_threads(server):
    a, b = C(server), C(server)
    room = a.create()
    b.join(room)
    root1 = a.msg(room, "thread one")
    t1a = thread_reply(b, room, root1, "reply 1")
    t1b = thread_reply(b, room, root1, "reply 2")
    root2 = b.msg(room, "thread two")
    t2a = thread_reply(b, room, root2, "reply in two")
    root3 = b.msg(room, "thread three")          # a's participation: none
    thread_reply(b, room, root3, "only b")
    # activity in thread one makes it the most recent
    t1c = thread_reply(a, room, root1, "reply 3 from a")
    t1c_edit = edit(a, room, t1c, "reply 3 edited")

    res = a.req("GET", f"/rooms/{q(room)}/threads", prefix=V1)
    assert res.status_code == 200, res.text
    chunk = res.json()["chunk"]
    assert [e["event_id"] for e in chunk] == [root1, root3, root2]
    summary = rels(chunk[0])["m.thread"]
    assert summary["count"] == 3
    assert summary["latest_event"]["event_id"] == t1c
    assert summary["current_user_participated"] is True
    # the latest event carries its own edit
    assert rels(summary["latest_event"])["m.replace"]["event_id"] == t1c_edit
    s2 = rels(chunk[2])["m.thread"]
    assert s2["count"] == 1 and s2["latest_event"]["event_id"] == t2a
    assert s2["current_user_participated"] is False

    # participated: a sent root1 and replied there; nothing else
    part = a.ok("GET", f"/rooms/{q(room)}/threads", prefix=V1,
                params={"include": "participated"})["chunk"]
    assert [e["event_id"] for e in part] == [root1]
    part_b = b.ok("GET", f"/rooms/{q(room)}/threads", prefix=V1,
                  params={"include": "participated"})["chunk"]
    assert [e["event_id"] for e in part_b] == [root1, root3, root2]

    # pagination
    seen, params = [], {"limit": 1}
    for _ in range(10):
        page = a.ok("GET", f"/rooms/{q(room)}/threads", prefix=V1, params=params)
        seen += [e["event_id"] for e in page["chunk"]]
        if "next_batch" not in page:
            break
        params = {"limit": 1, "from": page["next_batch"]}
    assert seen == [root1, root3, root2]

    # the root's bundle in /event and the thread through /relations
    ev = b.event(room, root1)
    assert rels(ev)["m.thread"]["count"] == 3
    assert rels(ev)["m.thread"]["current_user_participated"] is True
    thr = a.relations(room, root1, "m.thread").json()["chunk"]
    assert [e["event_id"] for e in thr] == [t1c, t1b, t1a]

    bad = a.req("GET", f"/rooms/{q(room)}/threads", prefix=V1, params={"include": "nope"})
    assert bad.status_code == 400


# ---------------------------------------------------------- ignored users

def test_ignored_users(server):
    a, b, c = C(server), C(server), C(server)
    room = a.create()
    b.join(room)
    c.join(room)
    a.ok("PUT", f"/user/{q(a.id)}/account_data/m.ignored_user_list",
         {"ignored_users": {b.id: {}}})
    hidden = b.msg(room, "you cannot see me")
    shown = c.msg(room, "you can see me")

    sync = a.sync(filter='{"room":{"timeline":{"limit":50}}}')
    tl = [e["event_id"] for e in sync["rooms"]["join"][room]["timeline"]["events"]]
    assert shown in tl and hidden not in tl
    # b's membership (state) stays
    msgs = a.ok("GET", f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})
    ids = [e["event_id"] for e in msgs["chunk"]]
    assert shown in ids and hidden not in ids
    assert any(e["type"] == "m.room.member" and e["state_key"] == b.id for e in msgs["chunk"])
    # c still sees b
    tl_c = [e["event_id"] for e in
            c.sync(filter='{"room":{"timeline":{"limit":50}}}')["rooms"]["join"][room]
            ["timeline"]["events"]]
    assert hidden in tl_c

    # incremental sync: b's new message is not delivered
    since = sync["next_batch"]
    b.msg(room, "still hidden")
    shown2 = c.msg(room, "visible again")
    inc = a.sync(since=since, timeout="2000")
    tl = [e["event_id"] for e in inc["rooms"]["join"][room]["timeline"]["events"]]
    assert tl == [shown2]

    # invites from ignored users are not shown; from others they are
    room_b = b.create(preset="private_chat")
    b.ok("POST", f"/rooms/{q(room_b)}/invite", {"user_id": a.id})
    room_c = c.create(preset="private_chat")
    c.ok("POST", f"/rooms/{q(room_c)}/invite", {"user_id": a.id})
    invites = a.sync().get("rooms", {}).get("invite", {})
    assert room_c in invites and room_b not in invites

    # un-ignoring shows b's messages again
    a.ok("PUT", f"/user/{q(a.id)}/account_data/m.ignored_user_list", {"ignored_users": {}})
    msgs = a.ok("GET", f"/rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})
    assert hidden in [e["event_id"] for e in msgs["chunk"]]


# ----------------------------------------------------------------- search

def search(c, body, next_batch=None):
    params = {"next_batch": next_batch} if next_batch else None
    r = c.req("POST", "/search", {"search_categories": {"room_events": body}}, params=params)
    assert r.status_code == 200, r.text
    return r.json()["search_categories"]["room_events"]


def test_search(server):
    a, b = C(server), C(server)
    r1 = a.create(name="fruit room", topic="all about bananas")
    r2 = a.create()
    r3 = b.create()                        # a is not in r3
    e1 = a.msg(r1, "I like banana bread")
    e2 = a.msg(r2, "banana banana banana split")
    a.msg(r1, "apples only")
    e3 = a.msg(r2, "one more banana")
    b.msg(r3, "banana in a room a cannot see")

    res = search(a, {"search_term": "banana", "keys": ["content.body"]})
    ids = [x["result"]["event_id"] for x in res["results"]]
    assert sorted(ids) == sorted([e1, e2, e3])
    assert res["count"] == 3
    assert "banana" in res["highlights"]
    assert all(isinstance(x["rank"], (int, float)) for x in res["results"])
    # rank order: the message with the most occurrences ranks first
    assert ids[0] == e2

    rec = search(a, {"search_term": "banana", "order_by": "recent", "keys": ["content.body"]})
    assert [x["result"]["event_id"] for x in rec["results"]] == [e3, e2, e1]

    # pagination, both orders
    for order in ("rank", "recent"):
        seen, nb = [], None
        for _ in range(10):
            page = search(a, {"search_term": "banana", "order_by": order,
                              "keys": ["content.body"], "filter": {"limit": 1}}, nb)
            assert len(page["results"]) <= 1
            seen += [x["result"]["event_id"] for x in page["results"]]
            nb = page.get("next_batch")
            if not nb:
                break
        assert sorted(seen) == sorted([e1, e2, e3]), order
        if order == "recent":
            assert seen == [e3, e2, e1]

    # room filter and sender filter
    only_r1 = search(a, {"search_term": "banana", "keys": ["content.body"],
                         "filter": {"rooms": [r1]}})
    assert [x["result"]["event_id"] for x in only_r1["results"]] == [e1]
    assert search(a, {"search_term": "banana", "filter": {"senders": [b.id]}})["results"] == []
    # b only sees r3
    bres = search(b, {"search_term": "banana", "keys": ["content.body"]})
    assert bres["count"] == 1 and bres["results"][0]["result"]["room_id"] == r3

    # names and topics (state) are searchable by their keys
    topic = search(a, {"search_term": "bananas", "keys": ["content.topic"]})
    assert [x["result"]["type"] for x in topic["results"]] == ["m.room.topic"]
    name = search(a, {"search_term": "fruit", "keys": ["content.name"]})
    assert [x["result"]["room_id"] for x in name["results"]] == [r1]

    # context, state and groups
    full = search(a, {"search_term": "bread", "event_context": {"before_limit": 2,
                                                                "after_limit": 2,
                                                                "include_profile": True},
                      "include_state": True, "groupings": {"group_by": [{"key": "room_id"}]}})
    assert len(full["results"]) == 1
    ctx = full["results"][0]["context"]
    assert len(ctx["events_before"]) == 2 and len(ctx["events_after"]) >= 1
    assert a.id in ctx["profile_info"]
    assert any(e["type"] == "m.room.create" for e in full["state"][r1])
    assert full["groups"]["room_id"][r1]["results"] == [e1]

    # redacted messages leave the index
    a.ok("PUT", f"/rooms/{q(r1)}/redact/{q(e1)}/{uuid.uuid4().hex}", {})
    res = search(a, {"search_term": "bread"})
    assert res["results"] == [] and res["count"] == 0

    # bad requests
    r = a.req("POST", "/search", {"search_categories": {"room_events": {}}})
    assert r.status_code == 400
    r = a.req("POST", "/search", {"search_categories": {"room_events": {
        "search_term": "x", "order_by": "sideways"}}})
    assert r.status_code == 400
    r = a.req("POST", "/search", {})
    assert r.status_code == 400


def test_search_after_leave(server):
    a, b = C(server), C(server)
    room = b.create()
    a.join(room)
    b.msg(room, "kiwi fruit salad")
    assert search(a, {"search_term": "kiwi"})["count"] == 1
    a.ok("POST", f"/rooms/{q(room)}/leave", {})
    assert search(a, {"search_term": "kiwi"})["count"] == 0
