"""
Room upgrades (POST /rooms/{id}/upgrade) and guest upgrades (POST /register
with a guest_access_token), against the real binary on SQLite and PostgreSQL.
"""
import urllib.parse
import uuid

V3 = "/_matrix/client/v3"


def q(s):
    return urllib.parse.quote(s, safe="")


def ok(server, method, path, token, body=None):
    r = server.api(method, V3 + path, token, body)
    assert r.status_code == 200, (method, path, r.status_code, r.text)
    return r.json()


def state(server, token, room, etype, key=""):
    return server.api("GET", f"{V3}/rooms/{q(room)}/state/{etype}/{key}", token)


def timeline(server, token, room):
    msgs = ok(server, "GET", f"/rooms/{q(room)}/messages?dir=b&limit=100", token)
    return list(reversed(msgs["chunk"]))


def test_upgrade_links_rooms_and_copies_state(server):
    a = server.register()
    b = server.register()
    ta, tb = a["access_token"], b["access_token"]
    alias = f"#up{uuid.uuid4().hex[:8]}:{server.server_name}"
    old = ok(server, "POST", "/createRoom", ta, {"preset": "public_chat", "name": "Old name",
                                                  "topic": "t", "room_version": "10"})["room_id"]
    ok(server, "PUT", f"/directory/room/{q(alias)}", ta, {"room_id": old})
    ok(server, "PUT", f"/rooms/{q(old)}/state/m.room.canonical_alias/", ta, {"alias": alias})
    ok(server, "PUT", f"/directory/list/room/{q(old)}", ta, {"visibility": "public"})
    ok(server, "POST", f"/join/{q(old)}", tb, {})
    ok(server, "PUT", f"/rooms/{q(old)}/state/m.room.member/{q('@evil:example.org')}", ta,
       {"membership": "ban", "reason": "spam"})
    # the joined member's tag and the upgrader's m.direct follow the room
    ok(server, "PUT", f"/user/{q(b['user_id'])}/rooms/{q(old)}/tags/u.work", tb, {"order": 0.5})
    ok(server, "PUT", f"/user/{q(a['user_id'])}/account_data/m.direct", ta, {b["user_id"]: [old]})

    r = server.api("POST", f"{V3}/rooms/{q(old)}/upgrade", ta, {"new_version": "11"})
    assert r.status_code == 200, r.text
    new = r.json()["replacement_room"]
    assert new != old

    tomb = state(server, ta, old, "m.room.tombstone").json()
    assert tomb["replacement_room"] == new
    tomb_ev = [e for e in timeline(server, ta, old) if e["type"] == "m.room.tombstone"]
    assert len(tomb_ev) == 1
    create = [e for e in timeline(server, ta, new) if e["type"] == "m.room.create"][0]
    assert create["content"]["room_version"] == "11"
    assert create["content"]["predecessor"] == {"room_id": old,
                                                "event_id": tomb_ev[0]["event_id"]}
    assert state(server, ta, new, "m.room.name").json() == {"name": "Old name"}
    assert state(server, ta, new, "m.room.join_rules").json() == {"join_rule": "public"}
    assert state(server, ta, new, "m.room.canonical_alias").json()["alias"] == alias
    ban = state(server, ta, new, "m.room.member", q("@evil:example.org")).json()
    assert ban == {"membership": "ban", "reason": "spam"}
    # the old room: restricted, alias and directory entry moved
    pl = state(server, ta, old, "m.room.power_levels").json()
    assert pl["events_default"] == 50 and pl["invite"] == 50
    assert state(server, ta, old, "m.room.canonical_alias").json() == {}
    assert ok(server, "GET", f"/directory/room/{q(alias)}", ta)["room_id"] == new
    assert ok(server, "GET", f"/directory/list/room/{q(new)}", ta)["visibility"] == "public"
    assert ok(server, "GET", f"/directory/list/room/{q(old)}", ta)["visibility"] == "private"
    tags = ok(server, "GET", f"/user/{q(b['user_id'])}/rooms/{q(new)}/tags", tb)["tags"]
    assert tags == {"u.work": {"order": 0.5}}
    direct = ok(server, "GET", f"/user/{q(a['user_id'])}/account_data/m.direct", ta)
    assert direct == {b["user_id"]: [old, new]}


def test_upgrade_keeps_moderator_level(server):
    a = server.register()
    b = server.register()
    ta, tb = a["access_token"], b["access_token"]
    old = ok(server, "POST", "/createRoom", ta, {"preset": "public_chat",
                                                  "room_version": "10"})["room_id"]
    ok(server, "POST", f"/join/{q(old)}", tb, {})
    pl = state(server, ta, old, "m.room.power_levels").json()
    pl["users"][b["user_id"]] = 50
    pl["events"]["m.room.tombstone"] = 50
    ok(server, "PUT", f"/rooms/{q(old)}/state/m.room.power_levels/", ta, pl)
    new = ok(server, "POST", f"/rooms/{q(old)}/upgrade", tb,
             {"new_version": "10"})["replacement_room"]
    # raised to copy the state, then put back where it was; the old room's
    # levels stay as they were (a moderator cannot change them)
    assert state(server, tb, new, "m.room.power_levels").json() == pl
    assert state(server, tb, old, "m.room.power_levels").json() == pl


def test_upgrade_errors(server):
    a = server.register()
    b = server.register()
    ta, tb = a["access_token"], b["access_token"]
    room = ok(server, "POST", "/createRoom", ta, {"preset": "public_chat"})["room_id"]
    r = server.api("POST", f"{V3}/rooms/{q(room)}/upgrade", ta, {"new_version": "bogus"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
    ok(server, "POST", f"/join/{q(room)}", tb, {})
    r = server.api("POST", f"{V3}/rooms/{q(room)}/upgrade", tb, {"new_version": "11"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = server.api("POST", f"{V3}/rooms/{q('!nope:' + server.server_name)}/upgrade", ta,
                   {"new_version": "11"})
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    # nothing happened to the room
    assert state(server, ta, room, "m.room.tombstone").status_code == 404


def test_upgrade_to_v12(server):
    a = server.register()
    ta = a["access_token"]
    old = ok(server, "POST", "/createRoom", ta, {"room_version": "10", "name": "n"})["room_id"]
    new = ok(server, "POST", f"/rooms/{q(old)}/upgrade", ta,
             {"new_version": "12"})["replacement_room"]
    assert state(server, ta, old, "m.room.tombstone").json()["replacement_room"] == new
    create = state(server, ta, new, "m.room.create").json()
    assert create["predecessor"]["room_id"] == old
    assert state(server, ta, new, "m.room.name").json() == {"name": "n"}


def guest(server):
    r = server.api("POST", V3 + "/register?kind=guest", None, {})
    assert r.status_code == 200, r.text
    return r.json()


def test_guest_upgrade_keeps_user_id(server):
    g = guest(server)
    lp = g["user_id"][1:].split(":")[0]
    body = {"username": lp, "password": "pw12345678",
            "guest_access_token": g["access_token"]}
    r = server.api("POST", V3 + "/register", None, body)
    assert r.status_code == 401 and "session" in r.json()
    body["auth"] = {"type": "m.login.dummy", "session": r.json()["session"]}
    r = server.api("POST", V3 + "/register", None, body)
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == g["user_id"]
    tok = r.json()["access_token"]
    assert ok(server, "GET", "/account/whoami", tok)["user_id"] == g["user_id"]
    # a full user now: may create rooms and log in with the password
    ok(server, "POST", "/createRoom", tok, {})
    r = server.api("POST", V3 + "/login", None, {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": lp},
        "password": "pw12345678"})
    assert r.status_code == 200 and r.json()["user_id"] == g["user_id"]


def test_guest_cannot_upgrade_others(server):
    g1, g2 = guest(server), guest(server)
    lp1 = g1["user_id"][1:].split(":")[0]
    r = server.api("POST", V3 + "/register", None, {
        "username": lp1, "password": "pw12345678", "guest_access_token": g2["access_token"],
        "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 403
    # a real user's token is no guest token
    u = server.register()
    r = server.api("POST", V3 + "/register", None, {
        "password": "pw12345678", "guest_access_token": u["access_token"],
        "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 403
    r = server.api("POST", V3 + "/register", None, {
        "password": "pw12345678", "guest_access_token": "nonsense",
        "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 401
    # numeric names stay reserved without a guest token
    r = server.api("POST", V3 + "/register", None, {
        "username": lp1, "password": "pw12345678", "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME"


def test_guests_leave_when_guest_access_is_revoked(server):
    a = server.register()
    ta = a["access_token"]
    room = ok(server, "POST", "/createRoom", ta, {"preset": "public_chat"})["room_id"]
    ok(server, "PUT", f"/rooms/{q(room)}/state/m.room.guest_access/", ta,
       {"guest_access": "can_join"})
    g = guest(server)
    ok(server, "POST", f"/join/{q(room)}", g["access_token"], {})
    b = server.register()
    ok(server, "POST", f"/join/{q(room)}", b["access_token"], {})
    ok(server, "PUT", f"/rooms/{q(room)}/state/m.room.guest_access/", ta,
       {"guest_access": "forbidden"})
    import time
    deadline = time.time() + 5
    while time.time() < deadline:
        m = state(server, ta, room, "m.room.member", q(g["user_id"])).json()["membership"]
        if m == "leave":
            break
        time.sleep(0.1)
    assert m == "leave"
    # full members stay
    assert state(server, ta, room, "m.room.member",
                 q(b["user_id"])).json()["membership"] == "join"
