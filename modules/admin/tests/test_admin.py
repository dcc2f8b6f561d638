"""
The admin module against the real binary: Synapse's Admin API
(/_synapse/admin/v1, /v2) served by `modules: [homeserver, admin]`, on
SQLite and (with MXSTACK_TEST_PG) PostgreSQL.

Covers authorization of every route (401 without a token, 403 for a
non-admin), user listing with filters, ordering and pagination over 30+
users, create/modify/deactivate/reactivate, password reset, whois, devices,
login-as, room listing and details, room deletion with status polling and
blocking, registration tokens, event reports, bad input, and Debian's
`synadm` CLI driving the API.
"""
import json
import os
import shutil
import subprocess
import time
import urllib.parse

import pytest
import requests


def engines():
    # as tests/integration/conftest.py (not imported: two conftest modules)
    return ["sqlite"] + (["postgres"] if os.environ.get("MXSTACK_TEST_PG") else [])

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


def q(s):
    return urllib.parse.quote(s, safe="@:!")


@pytest.fixture(params=engines())
def hs(request, make_server):
    s = make_server(request.param, modules=["homeserver", "admin"])
    s.start()
    s.admin = s.admin_user()
    return s


def adm(s, method, path, body=None, token=None, **kw):
    return s.api(method, path, token or s.admin["access_token"], body, **kw)


def create_user(s, localpart, **body):
    r = adm(s, "PUT", f"{V2}/users/{q('@' + localpart + ':' + s.server_name)}", body)
    assert r.status_code in (200, 201), r.text
    return r.json()


def login(s, user_id, password):
    return s.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
        "password": password})


def make_room(s, token, **body):
    r = s.api("POST", "/_matrix/client/v3/createRoom", token, body)
    assert r.status_code == 200, r.text
    return r.json()["room_id"]


# --------------------------------------------------------------- versions

def test_server_version_and_ess(hs):
    r = adm(hs, "GET", f"{V1}/server_version")
    assert r.status_code == 200
    assert r.json()["server_version"].startswith("mxstack")
    r = hs.api("GET", "/_synapse/ess/version")
    assert r.status_code == 200 and "version" in r.json()
    r = adm(hs, "GET", f"{V1}/background_updates/status")
    assert r.json() == {"enabled": True, "current_updates": {}}


# ---------------------------------------------------------- authorization

ROUTES = [
    ("GET", V1 + "/server_version"),
    ("GET", V2 + "/users"),
    ("GET", V2 + "/users/@x:{sn}"),
    ("PUT", V2 + "/users/@x:{sn}"),
    ("POST", V1 + "/deactivate/@x:{sn}"),
    ("POST", V1 + "/reset_password/@x:{sn}"),
    ("GET", V1 + "/users/@x:{sn}/admin"),
    ("PUT", V1 + "/users/@x:{sn}/admin"),
    ("POST", V1 + "/users/@x:{sn}/login"),
    ("POST", V1 + "/users/@x:{sn}/shadow_ban"),
    ("DELETE", V1 + "/users/@x:{sn}/shadow_ban"),
    ("GET", V1 + "/username_available?username=x"),
    ("GET", V1 + "/users/@x:{sn}/joined_rooms"),
    ("GET", V1 + "/users/@x:{sn}/memberships"),
    ("GET", V1 + "/users/@x:{sn}/accountdata"),
    ("GET", V1 + "/users/@x:{sn}/pushers"),
    ("GET", V1 + "/users/@x:{sn}/media"),
    ("DELETE", V1 + "/users/@x:{sn}/media"),
    ("GET", V2 + "/users/@x:{sn}/devices"),
    ("POST", V2 + "/users/@x:{sn}/devices"),
    ("POST", V2 + "/users/@x:{sn}/delete_devices"),
    ("GET", V2 + "/users/@x:{sn}/devices/D"),
    ("PUT", V2 + "/users/@x:{sn}/devices/D"),
    ("DELETE", V2 + "/users/@x:{sn}/devices/D"),
    ("GET", V1 + "/rooms"),
    ("GET", V1 + "/rooms/!r:{sn}"),
    ("GET", V1 + "/rooms/!r:{sn}/members"),
    ("GET", V1 + "/rooms/!r:{sn}/state"),
    ("GET", V1 + "/rooms/!r:{sn}/messages"),
    ("GET", V1 + "/rooms/!r:{sn}/block"),
    ("PUT", V1 + "/rooms/!r:{sn}/block"),
    ("DELETE", V1 + "/rooms/!r:{sn}"),
    ("DELETE", V2 + "/rooms/!r:{sn}"),
    ("GET", V2 + "/rooms/!r:{sn}/delete_status"),
    ("GET", V2 + "/rooms/delete_status/abc"),
    ("GET", V1 + "/registration_tokens"),
    ("POST", V1 + "/registration_tokens/new"),
    ("GET", V1 + "/registration_tokens/abc"),
    ("PUT", V1 + "/registration_tokens/abc"),
    ("DELETE", V1 + "/registration_tokens/abc"),
    ("GET", V1 + "/event_reports"),
    ("GET", V1 + "/event_reports/1"),
    ("DELETE", V1 + "/event_reports/1"),
    ("POST", V1 + "/send_server_notice"),
    ("GET", V1 + "/media/{sn}/abc"),
    ("DELETE", V1 + "/media/{sn}/abc"),
    ("POST", V1 + "/media/quarantine/{sn}/abc"),
    ("POST", V1 + "/media/unquarantine/{sn}/abc"),
    ("POST", V1 + "/user/@x:{sn}/media/quarantine"),
    ("GET", V1 + "/background_updates/status"),
    ("GET", V1 + "/statistics/users/media"),
    ("GET", V1 + "/statistics/database/rooms"),
]


def test_every_route_needs_an_admin(hs):
    user = hs.register()
    for method, path in ROUTES:
        path = path.replace("{sn}", hs.server_name)
        body = {} if method in ("POST", "PUT", "DELETE") else None
        r = hs.api(method, path, None, body)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["errcode"] == "M_MISSING_TOKEN"
        r = hs.api(method, path, "not-a-token", body)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
        r = hs.api(method, path, user["access_token"], body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json() == {"errcode": "M_FORBIDDEN", "error": "You are not a server admin"}


def test_whois_self_allowed_for_non_admin(hs):
    user = hs.register()
    r = hs.api("GET", f"{V1}/whois/{q(user['user_id'])}", user["access_token"])
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == user["user_id"]
    other = hs.register()
    r = hs.api("GET", f"{V1}/whois/{q(other['user_id'])}", user["access_token"])
    assert r.status_code == 403


def test_admin_rights_follow_the_flag(hs):
    user = hs.register()
    r = adm(hs, "PUT", f"{V1}/users/{q(user['user_id'])}/admin", {"admin": True})
    assert r.status_code == 200, r.text
    r = hs.api("GET", f"{V2}/users", user["access_token"])
    assert r.status_code == 200, r.text
    r = adm(hs, "GET", f"{V1}/users/{q(user['user_id'])}/admin")
    assert r.json() == {"admin": True}
    r = adm(hs, "PUT", f"{V1}/users/{q(user['user_id'])}/admin", {"admin": False})
    assert r.status_code == 200
    r = hs.api("GET", f"{V2}/users", user["access_token"])
    assert r.status_code == 403
    # an admin cannot demote itself
    r = adm(hs, "PUT", f"{V1}/users/{q(hs.admin['user_id'])}/admin", {"admin": False})
    assert r.status_code == 400


# ------------------------------------------------------------ user list

def test_user_list_pagination_and_filters(hs):
    for i in range(30):
        create_user(hs, f"pg{i:02d}", displayname=f"Page User {i:02d}")
    create_user(hs, "zzadmin", admin=True, displayname="Zed")
    total = 32  # + the admin from the fixture
    seen = []
    frm = None
    pages = 0
    while True:
        path = f"{V2}/users?limit=10" + (f"&from={frm}" if frm is not None else "")
        r = adm(hs, "GET", path)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == total
        seen += [u["name"] for u in body["users"]]
        pages += 1
        if "next_token" not in body:
            break
        frm = body["next_token"]
        assert isinstance(frm, str)
    assert pages == 4
    assert len(seen) == total and len(set(seen)) == total
    assert seen == sorted(seen)

    # backwards
    r = adm(hs, "GET", f"{V2}/users?limit=5&dir=b")
    names = [u["name"] for u in r.json()["users"]]
    assert names == sorted(seen, reverse=True)[:5]

    # filters
    r = adm(hs, "GET", f"{V2}/users?user_id=pg1")
    assert r.json()["total"] == 10
    r = adm(hs, "GET", f"{V2}/users?name=page%20user%200")
    assert r.json()["total"] == 10
    r = adm(hs, "GET", f"{V2}/users?admins=true")
    assert {u["name"] for u in r.json()["users"]} == {
        hs.admin["user_id"], f"@zzadmin:{hs.server_name}"}
    r = adm(hs, "GET", f"{V2}/users?admins=false&limit=0")
    assert r.json()["total"] == 30 and r.json()["users"] == []

    # ordering by displayname (descending)
    r = adm(hs, "GET", f"{V2}/users?order_by=displayname&dir=b&limit=3")
    dns = [u["displayname"] for u in r.json()["users"]]
    assert dns == sorted(dns, reverse=True) and dns[1:] == ["Zed", "Page User 29"]
    r = adm(hs, "GET", f"{V2}/users?order_by=creation_ts&limit=1")
    assert r.status_code == 200

    # deactivated users are hidden unless asked for
    adm(hs, "POST", f"{V1}/deactivate/{q('@pg00:' + hs.server_name)}", {})
    r = adm(hs, "GET", f"{V2}/users?limit=0")
    assert r.json()["total"] == total - 1
    r = adm(hs, "GET", f"{V2}/users?deactivated=true&limit=0")
    assert r.json()["total"] == total

    # guests
    g = hs.api("POST", "/_matrix/client/v3/register?kind=guest", json_body={})
    assert g.status_code == 200, g.text
    assert adm(hs, "GET", f"{V2}/users?limit=0").json()["total"] == total
    assert adm(hs, "GET", f"{V2}/users?guests=false&limit=0").json()["total"] == total - 1


def test_user_list_bad_input(hs):
    for qs in ("from=-1", "from=abc", "limit=-5", "limit=x", "dir=x", "order_by=nope",
               "guests=maybe", "deactivated=1"):
        r = adm(hs, "GET", f"{V2}/users?{qs}")
        assert r.status_code == 400, (qs, r.text)
        assert r.json()["errcode"] in ("M_INVALID_PARAM", "M_UNKNOWN"), qs
    # a page past the end is empty
    r = adm(hs, "GET", f"{V2}/users?from=1000")
    assert r.status_code == 200 and r.json()["users"] == [] and "next_token" not in r.json()


# ---------------------------------------------------- create and modify

def test_user_create_modify_deactivate(hs):
    uid = f"@carol:{hs.server_name}"
    r = adm(hs, "PUT", f"{V2}/users/{q(uid)}", {"password": "carolpass1", "displayname": "Carol",
                                                "avatar_url": "mxc://x/y"})
    assert r.status_code == 201, r.text
    u = r.json()
    assert u["name"] == uid and u["displayname"] == "Carol" and u["avatar_url"] == "mxc://x/y"
    assert u["admin"] is False and u["deactivated"] is False
    assert login(hs, uid, "carolpass1").status_code == 200

    r = adm(hs, "GET", f"{V2}/users/{q(uid)}")
    assert r.status_code == 200 and r.json()["displayname"] == "Carol"
    assert r.json()["threepids"] == [] and r.json()["external_ids"] == []

    # modify: 200, fields change, password kept unless given
    r = adm(hs, "PUT", f"{V2}/users/{q(uid)}", {"displayname": "Carol B", "admin": True})
    assert r.status_code == 200, r.text
    assert r.json()["displayname"] == "Carol B" and r.json()["admin"] is True
    prof = hs.api("GET", f"/_matrix/client/v3/profile/{q(uid)}/displayname").json()
    assert prof["displayname"] == "Carol B"

    # lock: tokens stop working (soft logout)
    tok = login(hs, uid, "carolpass1").json()["access_token"]
    r = adm(hs, "PUT", f"{V2}/users/{q(uid)}", {"locked": True})
    assert r.json()["locked"] is True
    r = hs.api("GET", "/_matrix/client/v3/account/whoami", tok)
    assert r.status_code == 401
    adm(hs, "PUT", f"{V2}/users/{q(uid)}", {"locked": False})

    # reset password, devices logged out
    tok = login(hs, uid, "carolpass1").json()["access_token"]
    r = adm(hs, "POST", f"{V1}/reset_password/{q(uid)}", {"new_password": "newpass123"})
    assert r.status_code == 200, r.text
    assert login(hs, uid, "carolpass1").status_code == 403
    assert login(hs, uid, "newpass123").status_code == 200
    assert hs.api("GET", "/_matrix/client/v3/account/whoami", tok).status_code == 401

    # deactivate with erase
    r = adm(hs, "POST", f"{V1}/deactivate/{q(uid)}", {"erase": True})
    assert r.status_code == 200, r.text
    assert "id_server_unbind_result" in r.json()
    d = adm(hs, "GET", f"{V2}/users/{q(uid)}").json()
    assert d["deactivated"] is True and d["erased"] is True
    assert login(hs, uid, "newpass123").status_code == 403

    # reactivation needs a password
    r = adm(hs, "PUT", f"{V2}/users/{q(uid)}", {"deactivated": False})
    assert r.status_code == 400
    r = adm(hs, "PUT", f"{V2}/users/{q(uid)}", {"deactivated": False, "password": "again1234"})
    assert r.status_code == 200 and r.json()["deactivated"] is False
    assert login(hs, uid, "again1234").status_code == 200


def test_user_bad_input(hs):
    remote = "@bob:elsewhere.example"
    assert adm(hs, "GET", f"{V2}/users/{q(remote)}").status_code == 400
    assert adm(hs, "PUT", f"{V2}/users/{q(remote)}", {}).status_code == 400
    assert adm(hs, "GET", f"{V2}/users/notauser").status_code == 400
    r = adm(hs, "GET", f"{V2}/users/{q('@nobody:' + hs.server_name)}")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    uid = q(f"@dave:{hs.server_name}")
    for body in ({"admin": "yes"}, {"password": 5}, {"deactivated": 1}, {"displayname": 3},
                 {"user_type": "wizard"}):
        r = adm(hs, "PUT", f"{V2}/users/{uid}", body)
        assert r.status_code == 400, (body, r.text)
    r = hs.api("PUT", f"{V2}/users/{uid}", hs.admin["access_token"],
               data="not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    # nothing was created by the failed requests
    assert adm(hs, "GET", f"{V2}/users/{uid}").status_code == 404
    assert adm(hs, "POST", f"{V1}/deactivate/{uid}", {}).status_code == 404
    assert adm(hs, "POST", f"{V1}/reset_password/{uid}", {"new_password": "x1234567"}
               ).status_code == 404
    assert adm(hs, "POST", f"{V1}/reset_password/{uid}", {}).status_code == 400
    assert adm(hs, "POST", f"{V1}/deactivate/{uid}", {"erase": "y"}).status_code == 400


def test_username_available(hs):
    hs.register("taken1")
    r = adm(hs, "GET", f"{V1}/username_available?username=free1")
    assert r.status_code == 200 and r.json() == {"available": True}
    r = adm(hs, "GET", f"{V1}/username_available?username=taken1")
    assert r.status_code == 400 and r.json()["errcode"] == "M_USER_IN_USE"
    r = adm(hs, "GET", f"{V1}/username_available?username=Bad%20Name")
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME"


def test_whois_devices_login_as(hs):
    user = hs.register(device_id="PHONE")
    uid = q(user["user_id"])
    hs.api("GET", "/_matrix/client/v3/account/whoami", user["access_token"])
    r = adm(hs, "GET", f"{V1}/whois/{uid}")
    assert r.status_code == 200, r.text
    assert "PHONE" in r.json()["devices"]
    conn = r.json()["devices"]["PHONE"]["sessions"][0]["connections"][0]
    assert set(conn) >= {"ip", "last_seen", "user_agent"}

    r = adm(hs, "GET", f"{V2}/users/{uid}/devices")
    assert r.json()["total"] == 1 and r.json()["devices"][0]["device_id"] == "PHONE"
    assert adm(hs, "POST", f"{V2}/users/{uid}/devices", {"device_id": "LAPTOP"}).status_code == 200
    assert adm(hs, "POST", f"{V2}/users/{uid}/devices", {}).status_code == 400
    r = adm(hs, "PUT", f"{V2}/users/{uid}/devices/LAPTOP", {"display_name": "My laptop"})
    assert r.status_code == 200, r.text
    r = adm(hs, "GET", f"{V2}/users/{uid}/devices/LAPTOP")
    assert r.json()["display_name"] == "My laptop"
    assert adm(hs, "GET", f"{V2}/users/{uid}/devices/NOPE").status_code == 404
    assert adm(hs, "PUT", f"{V2}/users/{uid}/devices/NOPE", {}).status_code == 404
    assert adm(hs, "GET", f"{V2}/users/{uid}/devices").json()["total"] == 2
    r = adm(hs, "POST", f"{V2}/users/{uid}/delete_devices", {"devices": ["LAPTOP", "GHOST"]})
    assert r.status_code == 200, r.text
    assert adm(hs, "GET", f"{V2}/users/{uid}/devices").json()["total"] == 1
    r = adm(hs, "DELETE", f"{V2}/users/{uid}/devices/PHONE")
    assert r.status_code == 200
    assert hs.api("GET", "/_matrix/client/v3/account/whoami", user["access_token"]).status_code == 401
    assert adm(hs, "GET", f"{V2}/users/{q('@ghost:' + hs.server_name)}/devices").status_code == 404

    # login as the user
    r = adm(hs, "POST", f"{V1}/users/{uid}/login", {})
    assert r.status_code == 200, r.text
    tok = r.json()["access_token"]
    r = hs.api("GET", "/_matrix/client/v3/account/whoami", tok)
    assert r.status_code == 200 and r.json()["user_id"] == user["user_id"]
    past = int(time.time() * 1000) - 1000
    assert adm(hs, "POST", f"{V1}/users/{uid}/login", {"valid_until_ms": past}).status_code == 400
    soon = int(time.time() * 1000) + 60000
    assert adm(hs, "POST", f"{V1}/users/{uid}/login", {"valid_until_ms": soon}).status_code == 200
    me = q(hs.admin["user_id"])
    assert adm(hs, "POST", f"{V1}/users/{me}/login", {}).status_code == 400
    nobody = q("@nobody:" + hs.server_name)
    assert adm(hs, "POST", f"{V1}/users/{nobody}/login", {}).status_code == 404


def test_shadow_ban_joined_rooms_account_data(hs):
    user = hs.register()
    uid = q(user["user_id"])
    assert adm(hs, "POST", f"{V1}/users/{uid}/shadow_ban", {}).status_code == 200
    assert adm(hs, "GET", f"{V2}/users/{uid}").json()["shadow_banned"] is True
    assert adm(hs, "DELETE", f"{V1}/users/{uid}/shadow_ban", {}).status_code == 200
    assert adm(hs, "GET", f"{V2}/users/{uid}").json()["shadow_banned"] is False
    room = make_room(hs, user["access_token"])
    r = adm(hs, "GET", f"{V1}/users/{uid}/joined_rooms")
    assert r.json() == {"joined_rooms": [room], "total": 1}
    r = adm(hs, "GET", f"{V1}/users/{uid}/memberships")
    assert r.json() == {"memberships": {room: "join"}}
    hs.api("PUT", f"/_matrix/client/v3/user/{uid}/account_data/org.example.test",
           user["access_token"], {"a": 1})
    r = adm(hs, "GET", f"{V1}/users/{uid}/accountdata")
    assert r.status_code == 200, r.text
    assert r.json()["account_data"]["global"]["org.example.test"] == {"a": 1}
    assert adm(hs, "GET", f"{V1}/users/{uid}/pushers").json() == {"pushers": [], "total": 0}


# ----------------------------------------------------------------- rooms

def test_room_list_details_members_state(hs):
    alice = hs.register("alice")
    bob = hs.register("bob")
    r1 = make_room(hs, alice["access_token"], name="Apples", preset="public_chat",
                   room_alias_name="apples")
    r2 = make_room(hs, alice["access_token"], name="Bananas")
    r3 = make_room(hs, bob["access_token"])
    hs.api("POST", f"/_matrix/client/v3/join/{q(r1)}", bob["access_token"], {})

    r = adm(hs, "GET", f"{V1}/rooms")
    body = r.json()
    assert body["total_rooms"] == 3 and body["offset"] == 0
    # name order: unnamed first (as empty), then Apples, Bananas
    assert [x["room_id"] for x in body["rooms"]] == [r3, r1, r2]
    apples = body["rooms"][1]
    assert apples["name"] == "Apples"
    assert apples["canonical_alias"] == f"#apples:{hs.server_name}"
    assert apples["joined_members"] == 2 and apples["joined_local_members"] == 2
    assert apples["join_rules"] == "public" and apples["creator"] == alice["user_id"]

    r = adm(hs, "GET", f"{V1}/rooms?limit=0")
    assert r.json()["total_rooms"] == 3 and r.json()["rooms"] == []
    r = adm(hs, "GET", f"{V1}/rooms?limit=2")
    assert r.json()["next_batch"] == 2 and len(r.json()["rooms"]) == 2
    r = adm(hs, "GET", f"{V1}/rooms?limit=2&from=2")
    assert "next_batch" not in r.json() and r.json()["prev_batch"] == 0
    r = adm(hs, "GET", f"{V1}/rooms?search_term=banan")
    assert [x["room_id"] for x in r.json()["rooms"]] == [r2]
    r = adm(hs, "GET", f"{V1}/rooms?order_by=joined_members")
    assert r.json()["rooms"][0]["room_id"] == r1
    r = adm(hs, "GET", f"{V1}/rooms?order_by=name&dir=b")
    assert [x["room_id"] for x in r.json()["rooms"]] == [r2, r1, r3]
    assert adm(hs, "GET", f"{V1}/rooms?order_by=bogus").status_code == 400
    assert adm(hs, "GET", f"{V1}/rooms?from=-1").status_code == 400

    r = adm(hs, "GET", f"{V1}/rooms/{q(r1)}")
    assert r.status_code == 200 and r.json()["name"] == "Apples"
    assert r.json()["joined_local_devices"] == 2
    r = adm(hs, "GET", f"{V1}/rooms/{q(r1)}/members")
    assert r.json() == {"members": sorted([alice["user_id"], bob["user_id"]]), "total": 2}
    r = adm(hs, "GET", f"{V1}/rooms/{q(r1)}/state")
    types = {e["type"] for e in r.json()["state"]}
    assert {"m.room.create", "m.room.member", "m.room.name"} <= types
    r = adm(hs, "GET", f"{V1}/rooms/{q(r1)}/state?type=m.room.name")
    assert [e["content"]["name"] for e in r.json()["state"]] == ["Apples"]
    r = adm(hs, "GET", f"{V1}/rooms/{q(r1)}/messages?limit=3")
    assert r.status_code == 200 and len(r.json()["chunk"]) == 3 and "end" in r.json()
    r2b = adm(hs, "GET", f"{V1}/rooms/{q(r1)}/messages?limit=3&from={r.json()['end']}")
    assert r2b.status_code == 200
    assert not {e["event_id"] for e in r.json()["chunk"]} & \
        {e["event_id"] for e in r2b.json()["chunk"]}

    unknown = q("!nope:" + hs.server_name)
    for sub in ("", "/members", "/state", "/messages"):
        assert adm(hs, "GET", f"{V1}/rooms/{unknown}{sub}").status_code == 404, sub
    assert adm(hs, "GET", f"{V1}/rooms/notaroom").status_code == 400


def test_room_block(hs):
    rid = q("!blockme:" + hs.server_name)
    assert adm(hs, "GET", f"{V1}/rooms/{rid}/block").json() == {"block": False}
    r = adm(hs, "PUT", f"{V1}/rooms/{rid}/block", {"block": True})
    assert r.json() == {"block": True}
    r = adm(hs, "GET", f"{V1}/rooms/{rid}/block")
    assert r.json() == {"block": True, "user_id": hs.admin["user_id"]}
    assert adm(hs, "PUT", f"{V1}/rooms/{rid}/block", {"block": "yes"}).status_code == 400
    assert adm(hs, "PUT", f"{V1}/rooms/{rid}/block", {"block": False}).json() == {"block": False}
    assert adm(hs, "GET", f"{V1}/rooms/{rid}/block").json() == {"block": False}
    # blocks survive a restart
    adm(hs, "PUT", f"{V1}/rooms/{rid}/block", {"block": True})
    hs.restart()
    assert adm(hs, "GET", f"{V1}/rooms/{rid}/block").json()["block"] is True


def wait_delete(hs, delete_id, timeout=10):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        r = adm(hs, "GET", f"{V2}/rooms/delete_status/{delete_id}")
        assert r.status_code == 200, r.text
        st = r.json()["status"]
        if not seen or seen[-1] != st:
            seen.append(st)
        if st in ("complete", "failed"):
            return r.json(), seen
        time.sleep(0.02)
    raise AssertionError("deletion did not finish: %s" % seen)


def test_room_delete_v2_with_status(hs):
    alice = hs.register()
    bob = hs.register()
    rid = make_room(hs, alice["access_token"], name="Doomed", preset="public_chat",
                    room_alias_name="doomed")
    assert hs.api("POST", f"/_matrix/client/v3/join/{q(rid)}", bob["access_token"], {}
                  ).status_code == 200
    hs.api("PUT", f"/_matrix/client/v3/rooms/{q(rid)}/send/m.room.message/t1",
           alice["access_token"], {"msgtype": "m.text", "body": "hi"})
    keep = make_room(hs, alice["access_token"], name="Keeper")

    r = adm(hs, "DELETE", f"{V2}/rooms/{q(rid)}", {"block": True, "purge": True})
    assert r.status_code == 200, r.text
    delete_id = r.json()["delete_id"]
    result, seen = wait_delete(hs, delete_id)
    assert result["status"] == "complete", result
    assert seen[-1] == "complete"
    assert set(seen) <= {"shutting_down", "purging", "complete"}
    sr = result["shutdown_room"]
    assert sorted(sr["kicked_users"]) == sorted([alice["user_id"], bob["user_id"]])
    assert sr["failed_to_kick_users"] == []
    assert sr["local_aliases"] == [f"#doomed:{hs.server_name}"]

    r = adm(hs, "GET", f"{V2}/rooms/{q(rid)}/delete_status")
    res = r.json()["results"]
    assert len(res) == 1 and res[0]["delete_id"] == delete_id and res[0]["status"] == "complete"

    # gone from the lists, members are out, the alias is free, the room is blocked
    rooms = [x["room_id"] for x in adm(hs, "GET", f"{V1}/rooms").json()["rooms"]]
    assert rooms == [keep]
    assert adm(hs, "GET", f"{V1}/rooms/{q(rid)}").status_code == 404
    assert adm(hs, "GET", f"{V1}/users/{q(bob['user_id'])}/joined_rooms").json()["total"] == 0
    jr = hs.api("GET", "/_matrix/client/v3/joined_rooms", alice["access_token"]).json()
    assert jr["joined_rooms"] == [keep]
    r = hs.api("GET", f"/_matrix/client/v3/directory/room/{q('#doomed:' + hs.server_name)}")
    assert r.status_code == 404
    assert adm(hs, "GET", f"{V1}/rooms/{q(rid)}/block").json()["block"] is True

    # the room still works for nobody; deleting again: unknown room
    r = adm(hs, "DELETE", f"{V2}/rooms/{q(rid)}", {})
    assert r.status_code == 404
    assert adm(hs, "GET", f"{V2}/rooms/delete_status/nope").status_code == 404
    assert adm(hs, "GET", f"{V2}/rooms/{q(keep)}/delete_status").status_code == 404
    assert adm(hs, "DELETE", f"{V2}/rooms/{q(keep)}", {"purge": "x"}).status_code == 400
    # the other room is untouched
    assert adm(hs, "GET", f"{V1}/rooms/{q(keep)}").json()["joined_members"] == 1


def test_room_delete_without_purge_and_v1(hs):
    alice = hs.register()
    rid = make_room(hs, alice["access_token"], name="Shut")
    r = adm(hs, "DELETE", f"{V2}/rooms/{q(rid)}", {"purge": False})
    result, _ = wait_delete(hs, r.json()["delete_id"])
    assert result["status"] == "complete"
    d = adm(hs, "GET", f"{V1}/rooms/{q(rid)}")
    assert d.status_code == 200 and d.json()["joined_members"] == 0
    # v1 answers when done
    rid2 = make_room(hs, alice["access_token"], name="Shut2")
    r = adm(hs, "DELETE", f"{V1}/rooms/{q(rid2)}", {})
    assert r.status_code == 200, r.text
    assert r.json()["kicked_users"] == [alice["user_id"]]
    assert adm(hs, "GET", f"{V1}/rooms/{q(rid2)}").status_code == 404


# ---------------------------------------------------- registration tokens

def test_registration_tokens(hs):
    r = adm(hs, "POST", f"{V1}/registration_tokens/new", {})
    assert r.status_code == 200, r.text
    t = r.json()
    assert len(t["token"]) == 16 and t["uses_allowed"] is None and t["pending"] == 0
    r = adm(hs, "POST", f"{V1}/registration_tokens/new", {"length": 30})
    assert len(r.json()["token"]) == 30
    future = int(time.time() * 1000) + 3600_000
    r = adm(hs, "POST", f"{V1}/registration_tokens/new",
            {"token": "abc-DEF_1.~", "uses_allowed": 1, "expiry_time": future})
    assert r.status_code == 200, r.text
    assert r.json() == {"token": "abc-DEF_1.~", "uses_allowed": 1, "pending": 0, "completed": 0,
                        "expiry_time": future}
    for bad in ({"token": "bad token"}, {"token": "x" * 65}, {"length": 0}, {"length": 65},
                {"uses_allowed": -1}, {"uses_allowed": "1"}, {"expiry_time": 1},
                {"token": "abc-DEF_1.~"}):
        r = adm(hs, "POST", f"{V1}/registration_tokens/new", bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errcode"] == "M_INVALID_PARAM"
    assert len(adm(hs, "GET", f"{V1}/registration_tokens").json()["registration_tokens"]) == 3
    r = adm(hs, "PUT", f"{V1}/registration_tokens/abc-DEF_1.~", {"uses_allowed": 0})
    assert r.status_code == 200 and r.json()["uses_allowed"] == 0
    valid = adm(hs, "GET", f"{V1}/registration_tokens?valid=true").json()["registration_tokens"]
    invalid = adm(hs, "GET", f"{V1}/registration_tokens?valid=false").json()["registration_tokens"]
    assert len(valid) == 2 and [x["token"] for x in invalid] == ["abc-DEF_1.~"]
    r = adm(hs, "PUT", f"{V1}/registration_tokens/abc-DEF_1.~",
            {"uses_allowed": None, "expiry_time": None})
    assert r.json()["uses_allowed"] is None and r.json()["expiry_time"] is None
    assert adm(hs, "GET", f"{V1}/registration_tokens/abc-DEF_1.~").status_code == 200
    assert adm(hs, "PUT", f"{V1}/registration_tokens/nope", {}).status_code == 404
    assert adm(hs, "GET", f"{V1}/registration_tokens/nope").status_code == 404
    assert adm(hs, "DELETE", f"{V1}/registration_tokens/abc-DEF_1.~").status_code == 200
    assert adm(hs, "DELETE", f"{V1}/registration_tokens/abc-DEF_1.~").status_code == 404


# --------------------------------------------------------- event reports

def test_event_reports(hs):
    alice = hs.register()
    rid = make_room(hs, alice["access_token"])
    ids = []
    for i in range(3):
        r = hs.api("PUT", f"/_matrix/client/v3/rooms/{q(rid)}/send/m.room.message/r{i}",
                   alice["access_token"], {"msgtype": "m.text", "body": f"bad {i}"})
        eid = r.json()["event_id"]
        r = hs.api("POST", f"/_matrix/client/v3/rooms/{q(rid)}/report/{q(eid)}",
                   alice["access_token"], {"reason": f"spam {i}", "score": -100})
        assert r.status_code == 200, r.text
        ids.append(eid)
    r = adm(hs, "GET", f"{V1}/event_reports?limit=2")
    body = r.json()
    assert body["total"] == 3 and len(body["event_reports"]) == 2 and body["next_token"] == 2
    first = body["event_reports"][0]
    assert first["event_id"] == ids[2] and first["reason"] == "spam 2"  # newest first
    assert first["sender"] == alice["user_id"] and first["room_id"] == rid
    r = adm(hs, "GET", f"{V1}/event_reports?from=2")
    assert len(r.json()["event_reports"]) == 1 and "next_token" not in r.json()
    r = adm(hs, "GET", f"{V1}/event_reports?dir=f&limit=1")
    assert r.json()["event_reports"][0]["event_id"] == ids[0]
    assert adm(hs, "GET", f"{V1}/event_reports?room_id=%21other:x").json()["total"] == 0
    rep = adm(hs, "GET", f"{V1}/event_reports/{first['id']}")
    assert rep.status_code == 200 and rep.json()["event_json"]["content"]["body"] == "bad 2"
    assert adm(hs, "DELETE", f"{V1}/event_reports/{first['id']}").status_code == 200
    assert adm(hs, "GET", f"{V1}/event_reports/{first['id']}").status_code == 404
    assert adm(hs, "DELETE", f"{V1}/event_reports/{first['id']}").status_code == 404
    assert adm(hs, "GET", f"{V1}/event_reports/abc").status_code == 400
    assert adm(hs, "GET", f"{V1}/event_reports").json()["total"] == 2


# ----------------------------------------------------------------- media

def test_user_media(hs):
    alice = hs.register()
    uid = q(alice["user_id"])
    mids = []
    for i in range(3):
        r = hs.api("POST", "/_matrix/media/v3/upload?filename=f%d.txt" % i, alice["access_token"],
                   data=b"hello %d" % i, headers={"Content-Type": "text/plain"})
        if r.status_code != 200:
            pytest.skip("media uploads unavailable: %s" % r.text)
        mids.append(r.json()["content_uri"].rsplit("/", 1)[1])
    r = adm(hs, "GET", f"{V1}/users/{uid}/media?limit=2")
    assert r.json()["total"] == 3 and len(r.json()["media"]) == 2 and r.json()["next_token"] == 2
    m = r.json()["media"][0]
    assert m["media_length"] == 7 and m["upload_name"] == "f0.txt"
    sn = hs.server_name
    r = adm(hs, "GET", f"{V1}/media/{sn}/{mids[0]}")
    assert r.status_code == 200 and r.json()["media_info"]["media_id"] == mids[0]
    r = adm(hs, "POST", f"{V1}/media/quarantine/{sn}/{mids[0]}", {})
    assert r.status_code == 200, r.text
    r = hs.api("GET", f"/_matrix/media/v3/download/{sn}/{mids[0]}")
    assert r.status_code == 404
    assert adm(hs, "POST", f"{V1}/media/unquarantine/{sn}/{mids[0]}", {}).status_code == 200
    assert hs.api("GET", f"/_matrix/media/v3/download/{sn}/{mids[0]}").status_code == 200
    r = adm(hs, "DELETE", f"{V1}/media/{sn}/{mids[1]}", {})
    assert r.json() == {"deleted_media": [mids[1]], "total": 1}
    assert adm(hs, "DELETE", f"{V1}/media/{sn}/{mids[1]}", {}).status_code == 404
    assert adm(hs, "DELETE", f"{V1}/media/other.example/{mids[0]}", {}).status_code == 400
    st = adm(hs, "GET", f"{V1}/statistics/users/media").json()
    assert st["users"][0]["user_id"] == alice["user_id"] and st["users"][0]["media_count"] == 2
    r = adm(hs, "DELETE", f"{V1}/users/{uid}/media", {})
    assert r.json()["total"] == 2
    assert adm(hs, "GET", f"{V1}/users/{uid}/media").json()["total"] == 0


def test_statistics_rooms_and_server_notices(hs):
    alice = hs.register()
    make_room(hs, alice["access_token"])
    r = adm(hs, "GET", f"{V1}/statistics/database/rooms")
    assert r.status_code == 200 and len(r.json()["rooms"]) == 1
    r = adm(hs, "POST", f"{V1}/send_server_notice",
            {"user_id": alice["user_id"], "content": {"msgtype": "m.text", "body": "hi"}})
    assert r.status_code == 400  # server notices are not configured
    r = adm(hs, "POST", f"{V1}/send_server_notice", {"content": {}})
    assert r.status_code == 400


# ---------------------------------------------------------------- synadm

def synadm(hs, cfg, *args):
    r = subprocess.run(["synadm", "--batch", "-c", cfg, "-o", "json", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    # synadm prints one JSON document per call it makes
    out = r.stdout.strip()
    return out


def synadm_json(hs, cfg, *args):
    out = synadm(hs, cfg, *args)
    return json.loads(out.splitlines()[-1]) if out.startswith("{") and "\n" in out else json.loads(out)


@pytest.mark.skipif(not shutil.which("synadm"), reason="synadm not installed (apt-get install synadm)")
def test_synadm(hs, tmp_path):
    cfg = tmp_path / "synadm.yaml"
    cfg.write_text(
        f"user: {json.dumps(hs.admin['user_id'])}\n"
        f"token: {json.dumps(hs.admin['access_token'])}\n"
        f"base_url: {json.dumps(hs.url)}\n"
        "admin_path: /_synapse/admin\n"
        "matrix_path: /_matrix\n"
        "timeout: 30\n"
        "format: json\n"
        "server_discovery: well-known\n"
        f"homeserver: \"{hs.server_name}\"\n")
    cfg = str(cfg)
    v = synadm_json(hs, cfg, "version")
    assert v["server_version"].startswith("mxstack")

    for i in range(3):
        create_user(hs, f"syn{i}", password="synpass123", displayname=f"Syn {i}")
    users = synadm_json(hs, cfg, "user", "list", "-l", "2")
    assert users["total"] == 4 and len(users["users"]) == 2 and users["next_token"] == "2"
    users = synadm_json(hs, cfg, "user", "list", "-n", "syn")
    assert users["total"] == 3
    uid = f"@syn1:{hs.server_name}"
    d = synadm_json(hs, cfg, "user", "details", uid)
    assert d["name"] == uid and d["displayname"] == "Syn 1"
    synadm(hs, cfg, "user", "modify", uid, "-n", "Renamed")
    assert adm(hs, "GET", f"{V2}/users/{q(uid)}").json()["displayname"] == "Renamed"
    synadm(hs, cfg, "user", "deactivate", uid)
    assert adm(hs, "GET", f"{V2}/users/{q(uid)}").json()["deactivated"] is True

    alice = hs.register()
    rid = make_room(hs, alice["access_token"], name="Synroom")
    rooms = synadm_json(hs, cfg, "room", "list")
    assert rooms["total_rooms"] == 1 and rooms["rooms"][0]["room_id"] == rid
    out = synadm(hs, cfg, "room", "details", rid)
    assert "Synroom" in out
    out = synadm(hs, cfg, "room", "delete", rid)
    assert alice["user_id"] in out  # the kicked users
    assert adm(hs, "GET", f"{V1}/rooms/{q(rid)}").status_code == 404
    out = synadm(hs, cfg, "media", "list", "-u", alice["user_id"])
    assert '"total": 0' in out or '"total":0' in out


def test_blocked_room_refuses_joins(hs):
    owner = hs.register()
    rid = make_room(hs, owner["access_token"], preset="public_chat")
    other = hs.register()
    assert adm(hs, "PUT", f"{V1}/rooms/{q(rid)}/block", {"block": True}).json() == {"block": True}
    r = hs.api("POST", f"/_matrix/client/v3/join/{q(rid)}", other["access_token"], {})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    adm(hs, "PUT", f"{V1}/rooms/{q(rid)}/block", {"block": False})
    r = hs.api("POST", f"/_matrix/client/v3/join/{q(rid)}", other["access_token"], {})
    assert r.status_code == 200, r.text
