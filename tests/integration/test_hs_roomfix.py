"""
Behaviours sytest checks (Synapse-compatible) in rooms, push, registration,
profile and the user directory: POST /send without a txn ID, a /join body
as member content, identical state deduplicated, canonical alias checks
(M_BAD_ALIAS / M_INVALID_PARAM) and alias deletion updating it, /state of a
departed member, redaction of an event of another room, push rule path
errors, replayed registration sessions, inhibit_login from the first call,
unset profile fields, the directory's shared-room scope and opaque key
backup data.
"""
import uuid
from urllib.parse import quote

V3 = "/_matrix/client/v3"


def q(s):
    return quote(s, safe="")


class C:
    def __init__(self, server, user=None):
        self.s = server
        self.u = user or server.register()
        self.tok = self.u["access_token"]
        self.id = self.u["user_id"]

    def req(self, method, path, body=None, **kw):
        return self.s.api(method, V3 + path, token=self.tok, json_body=body, **kw)

    def ok(self, method, path, body=None, **kw):
        r = self.req(method, path, body, **kw)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        return r.json()

    def create(self, **body):
        return self.ok("POST", "/createRoom", body)["room_id"]


# ----------------------------------------------------------------- rooms

def test_post_send_without_txn_id(server):
    a = C(server)
    room = a.create()
    e1 = a.ok("POST", f"/rooms/{q(room)}/send/m.room.message", {"msgtype": "m.text", "body": "x"})
    e2 = a.ok("POST", f"/rooms/{q(room)}/send/m.room.message", {"msgtype": "m.text", "body": "x"})
    assert e1["event_id"] != e2["event_id"]
    ev = a.ok("GET", f"/rooms/{q(room)}/event/{q(e1['event_id'])}")
    assert ev["content"]["body"] == "x"


def test_join_body_is_member_content(server):
    a, b, c = C(server), C(server), C(server)
    room = a.create(preset="public_chat", room_alias_name="jc" + uuid.uuid4().hex[:8])
    alias = a.ok("GET", f"/rooms/{q(room)}/state/m.room.canonical_alias")["alias"]
    b.ok("POST", f"/join/{q(room)}", {"foo": "bar", "displayname": "Bee"})
    m = a.ok("GET", f"/rooms/{q(room)}/state/m.room.member/{q(b.id)}")
    assert m["foo"] == "bar" and m["membership"] == "join" and m["displayname"] == "Bee"
    c.ok("POST", f"/join/{q(alias)}", {"foo": "baz", "membership": "leave"})
    m = a.ok("GET", f"/rooms/{q(room)}/state/m.room.member/{q(c.id)}")
    assert m["foo"] == "baz" and m["membership"] == "join"


def test_identical_state_is_deduplicated(server):
    a = C(server)
    room = a.create()
    e1 = a.ok("PUT", f"/rooms/{q(room)}/state/m.room.topic", {"topic": "t"})["event_id"]
    e2 = a.ok("PUT", f"/rooms/{q(room)}/state/m.room.topic", {"topic": "t"})["event_id"]
    assert e1 == e2
    e3 = a.ok("PUT", f"/rooms/{q(room)}/state/m.room.topic", {"topic": "u"})["event_id"]
    assert e3 != e1


def test_canonical_alias_validation(server):
    a = C(server)
    name = "ca" + uuid.uuid4().hex[:8]
    room = a.create(room_alias_name=name)
    other = a.create(room_alias_name=name + "2")
    alias = f"#{name}:{server.server_name}"
    other_alias = f"#{name}2:{server.server_name}"
    path = f"/rooms/{q(room)}/state/m.room.canonical_alias"
    a.ok("PUT", path, {"alias": alias, "alt_aliases": [alias]})
    for content, code in (
            ({"alias": "#NOT-" + alias[1:]}, "M_BAD_ALIAS"),
            ({"alias": alias, "alt_aliases": ["#NOT-" + alias[1:]]}, "M_BAD_ALIAS"),
            ({"alias": alias, "alt_aliases": [other_alias]}, "M_BAD_ALIAS"),
            ({"alias": "%" + alias[1:]}, "M_INVALID_PARAM"),
            ({"alias": alias, "alt_aliases": ["%" + alias[1:]]}, "M_INVALID_PARAM"),
            ({"alias": alias, "alt_aliases": alias}, "M_INVALID_PARAM")):
        r = a.req("PUT", path, content)
        assert r.status_code == 400 and r.json()["errcode"] == code, (content, r.text)
    assert other
    # deleting the alias takes it out of the canonical alias event
    a.ok("DELETE", f"/directory/room/{q(alias)}")
    ca = a.ok("GET", path)
    assert "alias" not in ca and ca.get("alt_aliases", []) == []


def test_departed_member_reads_state_at_leave(server):
    a, b = C(server), C(server)
    room = a.create(preset="public_chat", name="before")
    b.ok("POST", f"/join/{q(room)}", {})
    b.ok("POST", f"/rooms/{q(room)}/leave", {})
    a.ok("PUT", f"/rooms/{q(room)}/state/m.room.name", {"name": "after"})
    assert b.ok("GET", f"/rooms/{q(room)}/state/m.room.name") == {"name": "before"}
    state = b.ok("GET", f"/rooms/{q(room)}/state")
    me = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == b.id]
    assert me and me[0]["content"]["membership"] == "leave"
    # never a member: still forbidden
    c = C(server)
    assert c.req("GET", f"/rooms/{q(room)}/state").status_code == 403


def test_redact_event_of_other_room(server):
    a, b = C(server), C(server)
    r1, r2 = a.create(), b.create()
    ev = a.ok("PUT", f"/rooms/{q(r1)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"})
    r = b.req("PUT", f"/rooms/{q(r2)}/redact/{q(ev['event_id'])}/t2", {})
    assert r.status_code == 400


# ------------------------------------------------------------------ push

def test_push_rule_path_errors(server):
    a = C(server)
    for method, path in (
            ("PUT", "/pushrules/"), ("PUT", "/pushrules/not_a_scope/room/%23spam:example.com"),
            ("PUT", "/pushrules/global"), ("PUT", "/pushrules/global/override/.m.rule.master/x"),
            ("GET", "/pushrules/global"), ("GET", "/pushrules/global/room"),
            ("GET", "/pushrules/not_a_scope/"), ("GET", "/pushrules/global/not_a_template/"),
            ("GET", "/pushrules/global/override/.m.rule.master/not_an_attr")):
        r = a.req(method, path, {"enabled": True} if method == "PUT" else None)
        assert r.status_code == 400, (method, path, r.status_code, r.text)
    assert a.req("GET", "/pushrules").status_code == 404
    assert "global" in a.ok("GET", "/pushrules/")
    assert isinstance(a.ok("GET", "/pushrules/global/room/"), list)
    assert a.ok("GET", "/pushrules/global/override/.m.rule.master/enabled")["enabled"] is False


# ---------------------------------------------------------- registration

def _register(server, body):
    return server.api("POST", V3 + "/register", json_body=body)


def test_register_session_replay(server):
    for username in (None, "rp" + uuid.uuid4().hex[:8]):
        first = {"password": "sUp3rs3kr1t"}
        if username:
            first["username"] = username
        r = _register(server, first)
        assert r.status_code == 401
        sess = r.json()["session"]
        body = dict(first, auth={"session": sess, "type": "m.login.dummy"})
        r1 = _register(server, body)
        assert r1.status_code == 200, r1.text
        r2 = _register(server, body)
        assert r2.status_code == 200, r2.text
        assert r2.json()["user_id"] == r1.json()["user_id"] and "access_token" in r2.json()


def test_register_inhibit_login_from_first_call(server):
    r = _register(server, {"username": "il" + uuid.uuid4().hex[:8], "password": "sUp3rs3kr1t",
                           "inhibit_login": True})
    assert r.status_code == 401
    r = _register(server, {"auth": {"session": r.json()["session"], "type": "m.login.dummy"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "user_id" in body and "access_token" not in body and "device_id" not in body


# -------------------------------------------------- profile / directory

def test_unset_profile_field_is_empty(server):
    a = C(server)
    assert a.ok("GET", f"/profile/{q(a.id)}/avatar_url") == {}
    assert a.req("GET", f"/profile/{q('@nobody:' + server.server_name)}/avatar_url").status_code == 404


def test_user_directory_private_room_scope(server):
    a, b = C(server), C(server)
    name = "Dir" + uuid.uuid4().hex[:10]
    b.ok("PUT", f"/profile/{q(b.id)}/displayname", {"displayname": name})
    room = a.create(preset="private_chat", invite=[b.id])
    b.ok("POST", f"/join/{q(room)}", {})

    def found(who):
        res = who.ok("POST", "/user_directory/search", {"search_term": name})["results"]
        return any(x["user_id"] == b.id for x in res)

    assert found(a)          # shares a private room
    assert not found(b)      # oneself does not count as sharing it
    a.ok("PUT", f"/rooms/{q(room)}/state/m.room.join_rules", {"join_rule": "public"})
    assert found(b)
    a.ok("PUT", f"/rooms/{q(room)}/state/m.room.join_rules", {"join_rule": "invite"})
    assert not found(b)


# ------------------------------------------------------------------- e2ee

def test_backup_opaque_auth_and_session_data(server):
    a = C(server)
    v = a.ok("POST", "/room_keys/version", {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                                            "auth_data": "anopaquestring"})["version"]
    assert a.ok("GET", f"/room_keys/version/{v}")["auth_data"] == "anopaquestring"
    key = {"first_message_index": 3, "forwarded_count": 0, "is_verified": False,
           "session_data": "anopaquestring"}
    a.ok("PUT", f"/room_keys/keys/{q('!abcd')}/1234", key, params={"version": v})
    assert a.ok("GET", f"/room_keys/keys/{q('!abcd')}/1234", params={"version": v}) == key
