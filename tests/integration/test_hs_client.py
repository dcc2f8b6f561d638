"""
Integration tests of the homeserver's "client" part: profiles, account data
and tags, typing, receipts and read markers, presence, the user directory,
reports, OpenID tokens and the small fixed endpoints — each with its
authorization rules and, where it applies, its /sync section.
"""
import time
import urllib.parse

import pytest

V3 = "/_matrix/client/v3"


def q(s):
    return urllib.parse.quote(s, safe="")


def create_room(server, user, **body):
    r = server.api("POST", V3 + "/createRoom", user["access_token"], body)
    assert r.status_code == 200, r.text
    return r.json()["room_id"]


def join(server, user, room_id):
    r = server.api("POST", V3 + "/join/" + q(room_id), user["access_token"], {})
    assert r.status_code == 200, r.text


def send(server, user, room_id, body="hi"):
    txn = "t%f" % time.time()
    r = server.api("PUT", V3 + f"/rooms/{q(room_id)}/send/m.room.message/{txn}",
                   user["access_token"], {"msgtype": "m.text", "body": body})
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def sync(server, user, since=None, timeout=0, **params):
    params = dict(params)
    params["timeout"] = str(timeout)
    if since:
        params["since"] = since
    r = server.api("GET", V3 + "/sync", user["access_token"], params=params)
    assert r.status_code == 200, r.text
    return r.json()


def room_section(body, room_id):
    return body.get("rooms", {}).get("join", {}).get(room_id, {})


def ephemeral(body, room_id, etype):
    evs = room_section(body, room_id).get("ephemeral", {}).get("events", [])
    return [e for e in evs if e["type"] == etype]


# ---------------------------------------------------------------- profile

def test_profile_get_set(server):
    alice = server.register()
    uid = alice["user_id"]
    r = server.api("GET", V3 + f"/profile/{q(uid)}")
    assert r.status_code == 200, r.text
    localpart = uid[1:].split(":")[0]
    assert r.json().get("displayname") == localpart

    r = server.api("PUT", V3 + f"/profile/{q(uid)}/displayname", alice["access_token"],
                   {"displayname": "Alice A"})
    assert r.status_code == 200, r.text
    r = server.api("PUT", V3 + f"/profile/{q(uid)}/avatar_url", alice["access_token"],
                   {"avatar_url": "mxc://example.org/abc"})
    assert r.status_code == 200, r.text
    r = server.api("GET", V3 + f"/profile/{q(uid)}")
    assert r.json() == {"displayname": "Alice A", "avatar_url": "mxc://example.org/abc"}
    r = server.api("GET", V3 + f"/profile/{q(uid)}/displayname")
    assert r.json() == {"displayname": "Alice A"}
    r = server.api("GET", "/_matrix/client/r0" + f"/profile/{q(uid)}/avatar_url")
    assert r.json() == {"avatar_url": "mxc://example.org/abc"}


def test_profile_authorization_and_validation(server):
    alice = server.register()
    bob = server.register()
    uid = alice["user_id"]
    r = server.api("PUT", V3 + f"/profile/{q(uid)}/displayname", bob["access_token"],
                   {"displayname": "evil"})
    assert r.status_code == 403
    assert r.json()["errcode"] == "M_FORBIDDEN"
    r = server.api("PUT", V3 + f"/profile/{q(uid)}/displayname", None, {"displayname": "x"})
    assert r.status_code == 401
    r = server.api("PUT", V3 + f"/profile/{q(uid)}/displayname", alice["access_token"],
                   {"displayname": "x" * 300})
    assert r.status_code == 400
    r = server.api("PUT", V3 + f"/profile/{q(uid)}/displayname", alice["access_token"],
                   {"displayname": 12})
    assert r.status_code == 400
    r = server.api("PUT", V3 + f"/profile/{q(uid)}/displayname", alice["access_token"], {})
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_MISSING_PARAM"
    r = server.api("PUT", V3 + f"/profile/{q(uid)}/avatar_url", alice["access_token"],
                   {"avatar_url": "mxc://a/" + "b" * 1200})
    assert r.status_code == 400
    unknown = "@nobody_here:" + server.server_name
    r = server.api("GET", V3 + f"/profile/{q(unknown)}")
    assert r.status_code == 404
    assert r.json()["errcode"] == "M_NOT_FOUND"
    r = server.api("GET", V3 + "/profile/notauser")
    assert r.status_code == 400


def test_profile_propagates_to_member_events(server):
    alice = server.register()
    room = create_room(server, alice)
    r = server.api("PUT", V3 + f"/profile/{q(alice['user_id'])}/displayname",
                   alice["access_token"], {"displayname": "New Name"})
    assert r.status_code == 200, r.text
    r = server.api("GET", V3 + f"/rooms/{q(room)}/state/m.room.member/{q(alice['user_id'])}",
                   alice["access_token"])
    assert r.status_code == 200, r.text
    assert r.json().get("displayname") == "New Name"
    assert r.json().get("membership") == "join"


# ----------------------------------------------------------- account data

def test_account_data_global(server):
    alice = server.register()
    bob = server.register()
    uid = alice["user_id"]
    path = V3 + f"/user/{q(uid)}/account_data/org.example.test"
    r = server.api("GET", path, alice["access_token"])
    assert r.status_code == 404
    assert r.json()["errcode"] == "M_NOT_FOUND"
    r = server.api("PUT", path, alice["access_token"], {"a": 1})
    assert r.status_code == 200, r.text
    r = server.api("GET", path, alice["access_token"])
    assert r.json() == {"a": 1}
    r = server.api("PUT", path, alice["access_token"], {"a": 2})
    assert r.json() == {}
    assert server.api("GET", path, alice["access_token"]).json() == {"a": 2}
    # Other users can neither read nor write it.
    r = server.api("PUT", path, bob["access_token"], {"a": 3})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = server.api("GET", path, bob["access_token"])
    assert r.status_code == 403
    # Server-managed types.
    for t in ("m.fully_read", "m.push_rules"):
        r = server.api("PUT", V3 + f"/user/{q(uid)}/account_data/{t}", alice["access_token"], {})
        assert r.status_code == 405, t
        assert r.json()["errcode"] == "M_BAD_JSON"


def test_account_data_room_and_tags(server):
    alice = server.register()
    bob = server.register()
    uid = alice["user_id"]
    room = create_room(server, alice)
    path = V3 + f"/user/{q(uid)}/rooms/{q(room)}/account_data/org.example.r"
    assert server.api("GET", path, alice["access_token"]).status_code == 404
    assert server.api("PUT", path, alice["access_token"], {"x": True}).status_code == 200
    assert server.api("GET", path, alice["access_token"]).json() == {"x": True}
    assert server.api("PUT", path, bob["access_token"], {"x": 1}).status_code == 403
    r = server.api("PUT", V3 + f"/user/{q(uid)}/rooms/notaroom/account_data/x",
                   alice["access_token"], {})
    assert r.status_code == 400

    tags = V3 + f"/user/{q(uid)}/rooms/{q(room)}/tags"
    assert server.api("GET", tags, alice["access_token"]).json() == {"tags": {}}
    r = server.api("PUT", tags + "/m.favourite", alice["access_token"], {"order": 0.5})
    assert r.status_code == 200, r.text
    r = server.api("PUT", tags + "/u.work", alice["access_token"], {})
    assert r.status_code == 200, r.text
    assert server.api("GET", tags, alice["access_token"]).json() == {
        "tags": {"m.favourite": {"order": 0.5}, "u.work": {}}}
    assert server.api("PUT", tags + "/u.x", bob["access_token"], {}).status_code == 403
    assert server.api("GET", tags, bob["access_token"]).status_code == 403
    r = server.api("DELETE", tags + "/u.work", alice["access_token"])
    assert r.status_code == 200, r.text
    assert server.api("GET", tags, alice["access_token"]).json() == {
        "tags": {"m.favourite": {"order": 0.5}}}
    # m.tag is visible as room account data.
    r = server.api("GET", V3 + f"/user/{q(uid)}/rooms/{q(room)}/account_data/m.tag",
                   alice["access_token"])
    assert r.json() == {"tags": {"m.favourite": {"order": 0.5}}}


def test_account_data_in_sync(server):
    alice = server.register()
    uid = alice["user_id"]
    room = create_room(server, alice)
    server.api("PUT", V3 + f"/user/{q(uid)}/account_data/org.example.g", alice["access_token"],
               {"v": 1})
    server.api("PUT", V3 + f"/user/{q(uid)}/rooms/{q(room)}/tags/m.favourite",
               alice["access_token"], {"order": 1})
    body = sync(server, alice)
    glob = {e["type"]: e["content"] for e in body["account_data"]["events"]}
    assert glob.get("org.example.g") == {"v": 1}
    revs = room_section(body, room).get("account_data", {}).get("events", [])
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 1}}}} in revs

    since = body["next_batch"]
    body = sync(server, alice, since)
    assert body.get("account_data", {}).get("events", []) == []
    server.api("PUT", V3 + f"/user/{q(uid)}/account_data/org.example.g", alice["access_token"],
               {"v": 2})
    body = sync(server, alice, since, timeout=5000)
    glob = {e["type"]: e["content"] for e in body["account_data"]["events"]}
    assert glob == {"org.example.g": {"v": 2}}
    assert room not in body.get("rooms", {}).get("join", {}) or not room_section(
        body, room).get("account_data", {}).get("events")


# ----------------------------------------------------------------- typing

def test_typing(server):
    alice = server.register()
    bob = server.register()
    carol = server.register()
    room = create_room(server, alice, preset="public_chat")
    join(server, bob, room)
    base = sync(server, bob)["next_batch"]

    path = V3 + f"/rooms/{q(room)}/typing/{q(alice['user_id'])}"
    r = server.api("PUT", path, alice["access_token"], {"typing": True, "timeout": 30000})
    assert r.status_code == 200, r.text
    body = sync(server, bob, base, timeout=5000)
    ev = ephemeral(body, room, "m.typing")
    assert ev and ev[0]["content"]["user_ids"] == [alice["user_id"]]
    # Initial sync shows it too.
    ev = ephemeral(sync(server, bob), room, "m.typing")
    assert ev and ev[0]["content"]["user_ids"] == [alice["user_id"]]

    since = body["next_batch"]
    r = server.api("PUT", path, alice["access_token"], {"typing": False})
    assert r.status_code == 200
    body = sync(server, bob, since, timeout=5000)
    ev = ephemeral(body, room, "m.typing")
    assert ev and ev[0]["content"]["user_ids"] == []

    # Someone else's typing state, a non-member, missing key.
    r = server.api("PUT", path, bob["access_token"], {"typing": True})
    assert r.status_code == 403
    r = server.api("PUT", V3 + f"/rooms/{q(room)}/typing/{q(carol['user_id'])}",
                   carol["access_token"], {"typing": True, "timeout": 1000})
    assert r.status_code == 403
    assert r.json()["errcode"] == "M_FORBIDDEN"
    r = server.api("PUT", path, alice["access_token"], {})
    assert r.status_code == 400


def test_typing_expires(server):
    alice = server.register()
    room = create_room(server, alice)
    path = V3 + f"/rooms/{q(room)}/typing/{q(alice['user_id'])}"
    r = server.api("PUT", path, alice["access_token"], {"typing": True, "timeout": 500})
    assert r.status_code == 200
    since = sync(server, alice)["next_batch"]
    # Other changes (e.g. the user's own presence) may end a long-poll
    # first: keep syncing until the typing notice changes or 5 s pass.
    deadline = time.time() + 5
    ev = None
    while time.time() < deadline and not ev:
        body = sync(server, alice, since, timeout=5000)
        since = body["next_batch"]
        ev = ephemeral(body, room, "m.typing")
    assert ev and ev[0]["content"]["user_ids"] == []


# --------------------------------------------------------------- receipts

def test_receipts(server):
    alice = server.register()
    bob = server.register()
    carol = server.register()
    room = create_room(server, alice, preset="public_chat")
    join(server, bob, room)
    e1 = send(server, alice, room, "one")
    e2 = send(server, alice, room, "two")
    since_a = sync(server, alice)["next_batch"]

    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.read/{q(e2)}", bob["access_token"], {})
    assert r.status_code == 200, r.text
    body = sync(server, alice, since_a, timeout=5000)
    ev = ephemeral(body, room, "m.receipt")
    assert ev, body
    assert bob["user_id"] in ev[0]["content"][e2]["m.read"]
    assert "ts" in ev[0]["content"][e2]["m.read"][bob["user_id"]]

    # Receipts only move forward: an older event changes nothing.
    since_a = body["next_batch"]
    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.read/{q(e1)}", bob["access_token"], {})
    assert r.status_code == 200
    body = sync(server, alice, since_a)
    assert not ephemeral(body, room, "m.receipt")

    # Private receipts go to their owner only.
    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.read.private/{q(e2)}",
                   alice["access_token"], {})
    assert r.status_code == 200
    mine = ephemeral(sync(server, alice), room, "m.receipt")
    assert any("m.read.private" in c for e in mine for c in e["content"].values())
    theirs = ephemeral(sync(server, bob), room, "m.receipt")
    assert not any("m.read.private" in c for e in theirs for c in e["content"].values())

    # Threaded receipt.
    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.read/{q(e2)}", alice["access_token"],
                   {"thread_id": "main"})
    assert r.status_code == 200, r.text
    ev = ephemeral(sync(server, bob), room, "m.receipt")
    rec = ev[0]["content"][e2]["m.read"][alice["user_id"]]
    assert rec.get("thread_id") == "main"

    # Errors: non-member, bad type, unknown event, bad thread_id.
    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.read/{q(e2)}", carol["access_token"], {})
    assert r.status_code == 403
    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.bogus/{q(e2)}", bob["access_token"], {})
    assert r.status_code == 400
    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.read/{q('$nope')}",
                   bob["access_token"], {})
    assert r.status_code == 404
    r = server.api("POST", V3 + f"/rooms/{q(room)}/receipt/m.read/{q(e2)}", bob["access_token"],
                   {"thread_id": ""})
    assert r.status_code == 400


def test_read_markers(server):
    alice = server.register()
    bob = server.register()
    room = create_room(server, alice)
    e1 = send(server, alice, room, "one")
    e2 = send(server, alice, room, "two")
    r = server.api("POST", V3 + f"/rooms/{q(room)}/read_markers", alice["access_token"],
                   {"m.fully_read": e2, "m.read": e2})
    assert r.status_code == 200, r.text
    uid = alice["user_id"]
    path = V3 + f"/user/{q(uid)}/rooms/{q(room)}/account_data/m.fully_read"
    assert server.api("GET", path, alice["access_token"]).json() == {"event_id": e2}
    # The marker does not move backwards.
    r = server.api("POST", V3 + f"/rooms/{q(room)}/read_markers", alice["access_token"],
                   {"m.fully_read": e1})
    assert r.status_code == 200
    assert server.api("GET", path, alice["access_token"]).json() == {"event_id": e2}
    body = sync(server, alice)
    revs = room_section(body, room).get("account_data", {}).get("events", [])
    assert {"type": "m.fully_read", "content": {"event_id": e2}} in revs
    r = server.api("POST", V3 + f"/rooms/{q(room)}/read_markers", bob["access_token"],
                   {"m.fully_read": e2})
    assert r.status_code == 403


# --------------------------------------------------------------- presence

def test_presence(server):
    alice = server.register()
    bob = server.register()
    carol = server.register()
    room = create_room(server, alice, preset="public_chat")
    join(server, bob, room)
    since = sync(server, bob, set_presence="offline")["next_batch"]

    path = V3 + f"/presence/{q(alice['user_id'])}/status"
    r = server.api("PUT", path, alice["access_token"], {"presence": "online", "status_msg": "hi"})
    assert r.status_code == 200, r.text
    r = server.api("GET", path, alice["access_token"])
    assert r.status_code == 200
    st = r.json()
    assert st["presence"] == "online" and st["status_msg"] == "hi"
    assert st["last_active_ago"] >= 0 and st["currently_active"] is True
    # Visible to someone sharing a room, not to a stranger.
    assert server.api("GET", path, bob["access_token"]).json()["presence"] == "online"
    assert server.api("GET", path, carol["access_token"]).status_code == 403
    # Only one's own presence can be set; states are checked.
    assert server.api("PUT", path, bob["access_token"], {"presence": "online"}).status_code == 403
    r = server.api("PUT", path, alice["access_token"], {"presence": "dancing"})
    assert r.status_code == 400

    body = sync(server, bob, since, timeout=5000, set_presence="offline")
    evs = [e for e in body.get("presence", {}).get("events", [])
           if e["sender"] == alice["user_id"]]
    assert evs and evs[-1]["content"]["presence"] == "online"
    assert evs[-1]["type"] == "m.presence"

    r = server.api("PUT", path, alice["access_token"], {"presence": "unavailable"})
    assert r.status_code == 200
    body = sync(server, bob, body["next_batch"], timeout=5000, set_presence="offline")
    evs = [e for e in body.get("presence", {}).get("events", [])
           if e["sender"] == alice["user_id"]]
    assert evs and evs[-1]["content"]["presence"] == "unavailable"
    assert "status_msg" not in evs[-1]["content"]
    # A stranger's sync does not see it.
    body = sync(server, carol, set_presence="offline")
    assert not [e for e in body.get("presence", {}).get("events", [])
                if e["sender"] == alice["user_id"]]


# --------------------------------------------------------- user directory

def test_user_directory(server):
    alice = server.register()
    bob = server.register("dirbob")
    stranger = server.register("dirstranger")
    pubuser = server.register("dirpublic")
    room = create_room(server, alice)  # private
    server.api("POST", V3 + f"/rooms/{q(room)}/invite", alice["access_token"],
               {"user_id": bob["user_id"]})
    join(server, bob, room)
    server.api("PUT", V3 + f"/profile/{q(bob['user_id'])}/displayname", bob["access_token"],
               {"displayname": "Bobby Tables"})
    pub = create_room(server, pubuser, preset="public_chat")
    assert pub

    def search(term, limit=None):
        body = {"search_term": term}
        if limit is not None:
            body["limit"] = limit
        r = server.api("POST", V3 + "/user_directory/search", alice["access_token"], body)
        assert r.status_code == 200, r.text
        return r.json()

    res = search("dirbob")
    ids = [u["user_id"] for u in res["results"]]
    assert bob["user_id"] in ids
    assert res["limited"] is False
    hit = [u for u in res["results"] if u["user_id"] == bob["user_id"]][0]
    assert hit["display_name"] == "Bobby Tables"
    assert bob["user_id"] in [u["user_id"] for u in search("bobby")["results"]]
    assert bob["user_id"] in [u["user_id"] for u in search("TABLES")["results"]]
    # No shared room, no public room: not found.
    assert stranger["user_id"] not in [u["user_id"] for u in search("dirstranger")["results"]]
    # Joined to a public room: found.
    assert pubuser["user_id"] in [u["user_id"] for u in search("dirpublic")["results"]]
    res = search("dir", limit=1)
    assert len(res["results"]) == 1 and res["limited"] is True
    r = server.api("POST", V3 + "/user_directory/search", alice["access_token"], {})
    assert r.status_code == 400


# ------------------------------------------------------------------- misc

def test_misc_endpoints(server):
    alice = server.register()
    tok = alice["access_token"]
    r = server.api("GET", V3 + "/voip/turnServer", tok)
    assert r.status_code == 200 and r.json() == {}
    assert server.api("GET", V3 + "/voip/turnServer").status_code == 401
    r = server.api("GET", V3 + "/thirdparty/protocols", tok)
    assert r.status_code == 200 and r.json() == {}
    r = server.api("GET", V3 + "/account/3pid", tok)
    assert r.status_code == 200 and r.json() == {"threepids": []}


def test_reports(server):
    alice = server.register()
    bob = server.register()
    room = create_room(server, alice)
    ev = send(server, alice, room)
    r = server.api("POST", V3 + f"/rooms/{q(room)}/report/{q(ev)}", alice["access_token"],
                   {"reason": "spam", "score": -100})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = server.api("POST", V3 + f"/rooms/{q(room)}/report/{q(ev)}", bob["access_token"],
                   {"reason": "spam"})
    assert r.status_code == 404
    r = server.api("POST", V3 + f"/rooms/{q(room)}/report/{q('$missing')}", alice["access_token"],
                   {"reason": "spam"})
    assert r.status_code == 404
    r = server.api("POST", V3 + f"/rooms/{q(room)}/report/{q(ev)}", alice["access_token"],
                   {"reason": 5})
    assert r.status_code == 400
    r = server.api("POST", V3 + f"/rooms/{q(room)}/report", bob["access_token"], {"reason": "bad"})
    assert r.status_code == 200, r.text
    r = server.api("POST", V3 + f"/rooms/{q('!nope:' + server.server_name)}/report",
                   bob["access_token"], {"reason": "bad"})
    assert r.status_code == 404
    r = server.api("POST", V3 + f"/rooms/{q(room)}/report", bob["access_token"], {})
    assert r.status_code == 400


def test_openid(server):
    alice = server.register()
    bob = server.register()
    uid = alice["user_id"]
    r = server.api("POST", V3 + f"/user/{q(uid)}/openid/request_token", alice["access_token"], {})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["matrix_server_name"] == server.server_name
    assert body["expires_in"] == 3600
    r = server.api("GET", "/_matrix/federation/v1/openid/userinfo",
                   params={"access_token": body["access_token"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"sub": uid}
    r = server.api("GET", "/_matrix/federation/v1/openid/userinfo",
                   params={"access_token": "bogus"})
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = server.api("POST", V3 + f"/user/{q(uid)}/openid/request_token", bob["access_token"], {})
    assert r.status_code == 403


def test_turn_configured(make_server):
    s = make_server(extra_yaml="turn_uris: ['turn:turn.example.org?transport=udp']\n"
                               "turn_shared_secret: s3cret\nturn_user_lifetime: 1h\n")
    s.start()
    u = s.register()
    r = s.api("GET", V3 + "/voip/turnServer", u["access_token"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["uris"] == ["turn:turn.example.org?transport=udp"]
    assert body["ttl"] == 3600
    exp, user = body["username"].split(":", 1)
    assert user == u["user_id"] and int(exp) > time.time()
    import base64
    import hashlib
    import hmac
    mac = hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1).digest()
    assert body["password"] == base64.b64encode(mac).decode()
