"""
The admin module's maintenance routes against the real binary, on SQLite
and (with MXSTACK_TEST_PG) PostgreSQL: purge history (by event and by
date, status, resuming after a restart), federation destinations, rate-limit
overrides honoured by the message limiter, forward extremities,
make_room_admin, media clean-up (by date and size, protection, the remote
cache), background updates, server notices (room, tag, transaction IDs) and
the v1 room shutdown with a replacement room.
"""
import os
import sqlite3
import time
import urllib.parse
import uuid

import pytest

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"

NOTICES_YAML = ("server_notices:\n"
                "  system_mxid_localpart: notices\n"
                "  system_mxid_display_name: Server Notices\n"
                "  room_name: Notices from the server\n")


def engines():
    return ["sqlite"] + (["postgres"] if os.environ.get("MXSTACK_TEST_PG") else [])


def q(s):
    return urllib.parse.quote(s, safe="@:")


@pytest.fixture(params=engines())
def hs(request, make_server):
    s = make_server(request.param, modules=["homeserver", "admin"], extra_yaml=NOTICES_YAML)
    s.start()
    s.admin = s.admin_user()
    return s


def adm(s, method, path, body=None, token=None):
    return s.api(method, path, token or s.admin["access_token"], body)


def sql(s, stmt, params=()):
    """Runs one statement on the server's database (server stopped or idle)."""
    if s.engine == "sqlite":
        con = sqlite3.connect(os.path.join(s.dir, "homeserver.db"))
        try:
            rows = con.execute(stmt, params).fetchall()
            con.commit()
            return rows
        finally:
            con.close()
    import psycopg2
    con = psycopg2.connect(s.pg)
    try:
        cur = con.cursor()
        if params:
            cur.execute(stmt.replace("%", "%%").replace("?", "%s"), params)
        else:
            cur.execute(stmt)
        rows = cur.fetchall() if cur.description else []
        con.commit()
        return rows
    finally:
        con.close()


def make_room(s, token, **body):
    r = s.api("POST", "/_matrix/client/v3/createRoom", token, body)
    assert r.status_code == 200, r.text
    return r.json()["room_id"]


def send(s, token, room, body):
    r = s.api("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}",
              token, {"msgtype": "m.text", "body": body})
    return r


def messages(s, token, room):
    r = s.api("GET", f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100", token)
    assert r.status_code == 200, r.text
    return r.json()["chunk"]


def wait_purge(s, purge_id, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        r = adm(s, "GET", f"{V1}/purge_history_status/{purge_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] != "active":
            return r.json()
        time.sleep(0.1)
    raise AssertionError("purge did not finish")


NEW_ROUTES = [
    ("POST", V1 + "/purge_history/!r:{sn}"),
    ("POST", V1 + "/purge_history/!r:{sn}/$e"),
    ("GET", V1 + "/purge_history_status/abc"),
    ("GET", V1 + "/federation/destinations"),
    ("GET", V1 + "/federation/destinations/x.org"),
    ("GET", V1 + "/federation/destinations/x.org/rooms"),
    ("POST", V1 + "/federation/destinations/x.org/reset_connection"),
    ("GET", V1 + "/users/@x:{sn}/override_ratelimit"),
    ("POST", V1 + "/users/@x:{sn}/override_ratelimit"),
    ("DELETE", V1 + "/users/@x:{sn}/override_ratelimit"),
    ("GET", V1 + "/rooms/!r:{sn}/forward_extremities"),
    ("DELETE", V1 + "/rooms/!r:{sn}/forward_extremities"),
    ("POST", V1 + "/rooms/!r:{sn}/make_room_admin"),
    ("POST", V1 + "/media/delete?before_ts=40000000000"),
    ("POST", V1 + "/media/{sn}/delete?before_ts=40000000000"),
    ("POST", V1 + "/purge_media_cache?before_ts=40000000000"),
    ("POST", V1 + "/media/protect/abc"),
    ("POST", V1 + "/media/unprotect/abc"),
    ("POST", V1 + "/background_updates/start_job"),
    ("POST", V1 + "/background_updates/enabled"),
    ("PUT", V1 + "/send_server_notice/t1"),
    ("POST", V1 + "/shutdown_room/!r:{sn}"),
]


def test_new_routes_need_an_admin(hs):
    user = hs.register()
    for method, path in NEW_ROUTES:
        path = path.replace("{sn}", hs.server_name).replace("$", "%24")
        body = {} if method in ("POST", "PUT", "DELETE") else None
        r = hs.api(method, path, None, body)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        r = hs.api(method, path, user["access_token"], body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["errcode"] == "M_FORBIDDEN"


# ------------------------------------------------------------ purge history

def test_purge_history_by_event(hs):
    alice = hs.register()
    tok = alice["access_token"]
    room = make_room(hs, tok, name="before")
    ids = [send(hs, tok, room, f"m{i}").json()["event_id"] for i in range(12)]
    last = ids[-1]
    r = hs.api("POST", f"{V1}/purge_history/{room}/{q(last)}", tok, {})
    assert r.status_code == 403
    r = adm(hs, "POST", f"{V1}/purge_history/{room}/{q(last)}", {})
    assert r.status_code == 200, r.text
    st = wait_purge(hs, r.json()["purge_id"])
    assert st == {"status": "complete"}
    chunk = messages(hs, tok, room)
    msgs = [e["event_id"] for e in chunk if e["type"] == "m.room.message"]
    assert msgs == [last]
    # the room's state is all there and the room still works
    r = hs.api("GET", f"/_matrix/client/v3/rooms/{room}/state", tok)
    types = {e["type"] for e in r.json()}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= types
    assert send(hs, tok, room, "after").status_code == 200
    r = hs.api("GET", "/_matrix/client/v3/sync", tok)
    tl = r.json()["rooms"]["join"][room]["timeline"]["events"]
    assert [e["event_id"] for e in tl if e["type"] == "m.room.message"][0] == last
    # the purged events are gone from the database, not just hidden
    assert sql(hs, "SELECT COUNT(*) FROM events WHERE event_id = ?", (ids[0],))[0][0] == 0


def test_purge_history_by_ts_and_bad_input(hs):
    alice = hs.register()
    tok = alice["access_token"]
    room = make_room(hs, tok)
    for i in range(5):
        send(hs, tok, room, f"old{i}")
    time.sleep(0.05)
    ts = int(time.time() * 1000)
    time.sleep(0.05)
    keep = send(hs, tok, room, "new").json()["event_id"]
    r = adm(hs, "POST", f"{V1}/purge_history/{room}", {"purge_up_to_ts": ts})
    assert r.status_code == 200, r.text
    pid = r.json()["purge_id"]
    assert wait_purge(hs, pid)["status"] == "complete"
    msgs = [e for e in messages(hs, tok, room) if e["type"] == "m.room.message"]
    assert [e["event_id"] for e in msgs] == [keep]

    r = adm(hs, "POST", f"{V1}/purge_history/{room}", {})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    r = adm(hs, "POST", f"{V1}/purge_history/{room}", {"purge_up_to_ts": "x"})
    assert r.status_code == 400
    r = adm(hs, "POST", f"{V1}/purge_history/{room}/{q('$nope')}", {})
    assert r.status_code == 404
    r = adm(hs, "POST", f"{V1}/purge_history/!nope:{hs.server_name}", {"purge_up_to_ts": ts})
    assert r.status_code == 404
    other = make_room(hs, tok)
    r = adm(hs, "POST", f"{V1}/purge_history/{other}/{q(keep)}", {})
    assert r.status_code == 400
    r = adm(hs, "GET", f"{V1}/purge_history_status/unknown")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"


def test_purge_history_resumes_after_restart(hs):
    alice = hs.register()
    tok = alice["access_token"]
    room = make_room(hs, tok)
    ids = [send(hs, tok, room, f"m{i}").json()["event_id"] for i in range(8)]
    so = sql(hs, "SELECT stream_ordering FROM events WHERE event_id = ?", (ids[-1],))[0][0]
    hs.stop()
    # a purge that was cut short: recorded as active, nothing done yet
    sql(hs, "INSERT INTO purge_jobs (purge_id, room_id, upto, done_upto, delete_local, status,"
            " ts) VALUES ('cut', ?, ?, 0, 0, 'active', 0)", (room, so))
    hs.start()
    assert wait_purge(hs, "cut")["status"] == "complete"
    msgs = [e["event_id"] for e in messages(hs, tok, room) if e["type"] == "m.room.message"]
    assert msgs == [ids[-1]]


# --------------------------------------------------- federation destinations

def test_federation_destinations(hs):
    r = adm(hs, "GET", f"{V1}/federation/destinations")
    assert r.status_code == 200 and r.json() == {"destinations": [], "total": 0}
    for path in ("", "/rooms"):
        r = adm(hs, "GET", f"{V1}/federation/destinations/unknown.example{path}")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", path
    r = adm(hs, "POST", f"{V1}/federation/destinations/unknown.example/reset_connection", {})
    assert r.status_code == 404
    assert adm(hs, "GET", f"{V1}/federation/destinations?from=-1").status_code == 400
    assert adm(hs, "GET", f"{V1}/federation/destinations?order_by=x").status_code == 400
    # rows as the federation sender will write them
    sql(hs, "INSERT INTO destinations (destination, retry_last_ts, retry_interval, failure_ts)"
            " VALUES ('a.example', 5, 60000, 4), ('b.example', 0, 0, NULL)")
    sql(hs, "INSERT INTO destination_rooms (destination, room_id, stream_ordering)"
            " VALUES ('a.example', '!x:a.example', 7)")
    r = adm(hs, "GET", f"{V1}/federation/destinations?limit=1")
    assert r.json() == {"destinations": [{
        "destination": "a.example", "retry_last_ts": 5, "retry_interval": 60000,
        "failure_ts": 4, "last_successful_stream_ordering": None}], "total": 2,
        "next_token": "1"}
    r = adm(hs, "GET", f"{V1}/federation/destinations?order_by=retry_interval&dir=b&"
                       f"destination=b.ex")
    assert [d["destination"] for d in r.json()["destinations"]] == ["b.example"]
    r = adm(hs, "GET", f"{V1}/federation/destinations/a.example/rooms")
    assert r.json() == {"rooms": [{"room_id": "!x:a.example", "stream_ordering": 7}],
                        "total": 1}
    r = adm(hs, "POST", f"{V1}/federation/destinations/a.example/reset_connection", {})
    assert r.status_code == 200 and r.json() == {}
    d = adm(hs, "GET", f"{V1}/federation/destinations/a.example").json()
    assert (d["retry_last_ts"], d["retry_interval"], d["failure_ts"]) == (0, 0, None)
    r = adm(hs, "POST", f"{V1}/federation/destinations/b.example/reset_connection", {})
    assert r.status_code == 400


# ------------------------------------------------------ rate-limit overrides

def test_ratelimit_override_is_honoured(hs):
    alice = hs.register()
    uid, tok = q(alice["user_id"]), alice["access_token"]
    room = make_room(hs, tok)
    path = f"{V1}/users/{uid}/override_ratelimit"
    assert adm(hs, "GET", path).json() == {}
    r = adm(hs, "POST", path, {"messages_per_second": 1, "burst_count": 1})
    assert r.status_code == 200 and r.json() == {"messages_per_second": 1, "burst_count": 1}
    assert adm(hs, "GET", path).json() == {"messages_per_second": 1, "burst_count": 1}
    codes = [send(hs, tok, room, f"m{i}").status_code for i in range(4)]
    assert codes[0] == 200 and 429 in codes, codes
    # 0/0: not limited at all
    adm(hs, "POST", path, {})
    assert adm(hs, "GET", path).json() == {"messages_per_second": 0, "burst_count": 0}
    assert all(send(hs, tok, room, f"n{i}").status_code == 200 for i in range(10))
    assert adm(hs, "DELETE", path, {}).json() == {}
    assert adm(hs, "GET", path).json() == {}
    # survives a restart
    adm(hs, "POST", path, {"messages_per_second": 2, "burst_count": 3})
    hs.restart()
    assert adm(hs, "GET", path).json() == {"messages_per_second": 2, "burst_count": 3}
    # bad input
    assert adm(hs, "POST", path, {"messages_per_second": -1}).status_code == 400
    assert adm(hs, "POST", path, {"burst_count": "x"}).status_code == 400
    r = adm(hs, "GET", f"{V1}/users/{q('@a:other.example')}/override_ratelimit")
    assert r.status_code == 400
    r = adm(hs, "POST", f"{V1}/users/{q('@ghost:' + hs.server_name)}/override_ratelimit", {})
    assert r.status_code == 404
    assert sql(hs, "SELECT COUNT(*) FROM ratelimit_override WHERE user_id LIKE '@ghost%'")[0][0] == 0


# ------------------------------------------------------- forward extremities

def test_forward_extremities(hs):
    alice = hs.register()
    tok = alice["access_token"]
    room = make_room(hs, tok)
    last = send(hs, tok, room, "x").json()["event_id"]
    r = adm(hs, "GET", f"{V1}/rooms/{room}/forward_extremities")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 1 and body["results"][0]["event_id"] == last
    assert set(body["results"][0]) == {"event_id", "state_group", "depth", "received_ts"}
    first = sql(hs, "SELECT event_id FROM events WHERE room_id = ? ORDER BY stream_ordering"
                    " LIMIT 1", (room,))[0][0]
    hs.stop()
    sql(hs, "INSERT INTO room_extremities (room_id, event_id) VALUES (?, ?)", (room, first))
    hs.start()
    assert adm(hs, "GET", f"{V1}/rooms/{room}/forward_extremities").json()["count"] == 2
    r = adm(hs, "DELETE", f"{V1}/rooms/{room}/forward_extremities", {})
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    fx = adm(hs, "GET", f"{V1}/rooms/{room}/forward_extremities").json()
    assert fx["count"] == 1 and fx["results"][0]["event_id"] == last
    nxt = send(hs, tok, room, "y")
    assert nxt.status_code == 200
    ev = hs.api("GET", f"/_matrix/client/v3/rooms/{room}/event/{q(nxt.json()['event_id'])}",
                tok)
    assert ev.status_code == 200
    r = adm(hs, "GET", f"{V1}/rooms/!nope:{hs.server_name}/forward_extremities")
    assert r.json() == {"count": 0, "results": []}


# ----------------------------------------------------------- make room admin

def test_make_room_admin(hs):
    alice, bob = hs.register(), hs.register()
    room = make_room(hs, alice["access_token"], preset="private_chat")
    r = adm(hs, "POST", f"{V1}/rooms/{room}/make_room_admin", {"user_id": bob["user_id"]})
    assert r.status_code == 200, r.text
    assert r.json() == {}
    # bob was invited (private room) and holds alice's level
    r = hs.api("POST", f"/_matrix/client/v3/join/{room}", bob["access_token"], {})
    assert r.status_code == 200, r.text
    pl = hs.api("GET", f"/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/",
                bob["access_token"]).json()
    assert pl["users"][bob["user_id"]] == pl["users"][alice["user_id"]] == 100
    r = hs.api("PUT", f"/_matrix/client/v3/rooms/{room}/state/m.room.name/",
               bob["access_token"], {"name": "bob rules"})
    assert r.status_code == 200
    r = adm(hs, "POST", f"{V1}/rooms/{room}/make_room_admin",
            {"user_id": "@x:other.example"})
    assert r.status_code == 400
    r = adm(hs, "POST", f"{V1}/rooms/!nope:{hs.server_name}/make_room_admin", {})
    assert r.status_code == 404
    # a room without local members with power: refused
    carol = hs.register()
    room2 = make_room(hs, carol["access_token"])
    hs.api("POST", f"/_matrix/client/v3/rooms/{room2}/leave", carol["access_token"], {})
    r = adm(hs, "POST", f"{V1}/rooms/{room2}/make_room_admin", {})
    assert r.status_code == 400


# ------------------------------------------------------------------- media

def upload(s, token, data):
    r = s.api("POST", "/_matrix/media/v3/upload?filename=f.bin", token, None, data=data,
              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    return r.json()["content_uri"].rsplit("/", 1)[1]


def test_media_delete_by_date_size_and_protect(hs):
    alice = hs.register()
    tok, sn = alice["access_token"], hs.server_name
    small, big, prot, avatar = (upload(hs, tok, b"x" * n) for n in (10, 5000, 5000, 5000))
    r = hs.api("PUT", f"/_matrix/client/v3/profile/{q(alice['user_id'])}/avatar_url", tok,
               {"avatar_url": f"mxc://{sn}/{avatar}"})
    assert r.status_code == 200
    assert adm(hs, "POST", f"{V1}/media/protect/{prot}", {}).json() == {}
    assert adm(hs, "POST", f"{V1}/media/protect/nope", {}).status_code == 404
    # protected media is skipped when a user's media is quarantined
    r = adm(hs, "POST", f"{V1}/user/{q(alice['user_id'])}/media/quarantine", {})
    assert r.json() == {"num_quarantined": 3}
    for m in (small, big, avatar):
        adm(hs, "POST", f"{V1}/media/unquarantine/{sn}/{m}", {})
    future = int(time.time() * 1000) + 60000
    r = adm(hs, "POST", f"{V1}/media/delete?before_ts={future}&size_gt=100")
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted_media": [big], "total": 1}
    r = adm(hs, "POST", f"{V1}/media/{sn}/delete?before_ts={future}&keep_profiles=false")
    assert sorted(r.json()["deleted_media"]) == sorted([small, avatar])
    assert adm(hs, "GET", f"{V1}/media/{sn}/{prot}").status_code == 200
    adm(hs, "POST", f"{V1}/media/unprotect/{prot}", {})
    r = adm(hs, "POST", f"{V1}/media/delete?before_ts={future}")
    assert r.json() == {"deleted_media": [prot], "total": 1}
    # bad input
    assert adm(hs, "POST", f"{V1}/media/delete").status_code == 400
    assert adm(hs, "POST", f"{V1}/media/delete?before_ts=1000").status_code == 400
    assert adm(hs, "POST", f"{V1}/media/delete?before_ts={future}&size_gt=-1").status_code == 400
    r = adm(hs, "POST", f"{V1}/media/other.example/delete?before_ts={future}")
    assert r.status_code == 400
    r = adm(hs, "POST", f"{V1}/purge_media_cache?before_ts={future}")
    assert r.status_code == 200 and r.json() == {"deleted": 0}
    assert adm(hs, "POST", f"{V1}/purge_media_cache").status_code == 400


def test_background_updates(hs):
    assert adm(hs, "GET", f"{V1}/background_updates/enabled").json() == {"enabled": True}
    r = adm(hs, "POST", f"{V1}/background_updates/enabled", {"enabled": False})
    assert r.json() == {"enabled": False}
    assert adm(hs, "GET", f"{V1}/background_updates/status").json() == {
        "enabled": False, "current_updates": {}}
    adm(hs, "POST", f"{V1}/background_updates/enabled", {"enabled": True})
    r = adm(hs, "POST", f"{V1}/background_updates/start_job",
            {"job_name": "populate_stats_process_rooms"})
    assert r.status_code == 200 and r.json() == {}
    assert adm(hs, "POST", f"{V1}/background_updates/start_job",
               {"job_name": "nope"}).status_code == 400
    assert adm(hs, "POST", f"{V1}/background_updates/start_job", {}).status_code == 400


# ----------------------------------------------------------- server notices

def test_server_notices(hs):
    alice = hs.register()
    tok = alice["access_token"]
    body = {"user_id": alice["user_id"], "content": {"msgtype": "m.text", "body": "hello"}}
    r = adm(hs, "POST", f"{V1}/send_server_notice", body)
    assert r.status_code == 200, r.text
    eid = r.json()["event_id"]
    sync = hs.api("GET", "/_matrix/client/v3/sync", tok).json()
    invites = sync["rooms"]["invite"]
    assert len(invites) == 1
    room = next(iter(invites))
    r = hs.api("POST", f"/_matrix/client/v3/join/{room}", tok, {})
    assert r.status_code == 200, r.text
    sync = hs.api("GET", "/_matrix/client/v3/sync", tok).json()
    jr = sync["rooms"]["join"][room]
    tags = [e for e in jr["account_data"]["events"] if e["type"] == "m.tag"]
    assert "m.server_notice" in tags[0]["content"]["tags"]
    state = hs.api("GET", f"/_matrix/client/v3/rooms/{room}/state", tok).json()
    name = [e for e in state if e["type"] == "m.room.name"][0]["content"]["name"]
    assert name == "Notices from the server"
    sender = f"@notices:{hs.server_name}"
    ev = hs.api("GET", f"/_matrix/client/v3/rooms/{room}/event/{q(eid)}", tok).json()
    assert ev["sender"] == sender and ev["content"]["body"] == "hello"
    # the user cannot post in it
    assert send(hs, tok, room, "reply").status_code == 403
    # a second notice goes to the same room; a PUT txn answers once
    r1 = adm(hs, "PUT", f"{V1}/send_server_notice/t1", body)
    r2 = adm(hs, "PUT", f"{V1}/send_server_notice/t1", body)
    assert r1.status_code == 200 and r1.json() == r2.json()
    msgs = [e for e in messages(hs, tok, room) if e["type"] == "m.room.message"]
    assert len(msgs) == 2
    # leaving the room: the next notice makes a new one
    hs.api("POST", f"/_matrix/client/v3/rooms/{room}/leave", tok, {})
    r = adm(hs, "POST", f"{V1}/send_server_notice", body)
    assert r.status_code == 200
    sync = hs.api("GET", "/_matrix/client/v3/sync", tok).json()
    assert [r for r in sync["rooms"]["invite"] if r != room]
    # bad input
    assert adm(hs, "POST", f"{V1}/send_server_notice", {"user_id": alice["user_id"]}
               ).status_code == 400
    r = adm(hs, "POST", f"{V1}/send_server_notice",
            {"user_id": "@x:other.example", "content": {}})
    assert r.status_code == 400
    r = adm(hs, "POST", f"{V1}/send_server_notice",
            {"user_id": f"@ghost:{hs.server_name}", "content": {}})
    assert r.status_code == 404


# ------------------------------------------------- shutdown with a new room

def test_shutdown_room_with_new_room(hs):
    owner, member, notice = hs.register(), hs.register(), hs.register()
    alias = "shut" + uuid.uuid4().hex[:6]
    room = make_room(hs, owner["access_token"], room_alias_name=alias, preset="public_chat")
    assert hs.api("POST", f"/_matrix/client/v3/join/{room}", member["access_token"],
                  {}).status_code == 200
    r = adm(hs, "DELETE", f"{V1}/rooms/{room}",
            {"new_room_user_id": notice["user_id"], "block": True, "purge": False,
             "room_name": "Moved", "message": "This room was closed"})
    assert r.status_code == 200, r.text
    body = r.json()
    new_room = body["new_room_id"]
    assert new_room and new_room != room
    assert sorted(body["kicked_users"]) == sorted([owner["user_id"], member["user_id"]])
    assert body["local_aliases"] == [f"#{alias}:{hs.server_name}"]
    # the alias points at the new room; the members are in it and cannot speak
    r = hs.api("GET", f"/_matrix/client/v3/directory/room/{q('#' + alias + ':' + hs.server_name).replace('#', '%23')}",
               owner["access_token"])
    assert r.json()["room_id"] == new_room
    for u in (owner, member):
        r = hs.api("GET", f"/_matrix/client/v3/rooms/{new_room}/state/m.room.name/",
                   u["access_token"])
        assert r.status_code == 200 and r.json()["name"] == "Moved"
        assert send(hs, u["access_token"], new_room, "hi").status_code == 403
        assert send(hs, u["access_token"], room, "hi").status_code == 403
        r = hs.api("POST", f"/_matrix/client/v3/join/{room}", u["access_token"], {})
        assert r.status_code == 403
    msgs = [e for e in messages(hs, notice["access_token"], new_room)
            if e["type"] == "m.room.message"]
    assert msgs[0]["content"]["body"] == "This room was closed"


# ------------------------------------------- user list: next_token paging

def test_user_list_next_token_walk_matches_offsets(hs):
    for i in range(25):
        hs.register(f"walk{i:02d}")

    def walk(extra=""):
        names, frm = [], None
        while True:
            path = f"{V2}/users?limit=7{extra}" + (f"&from={frm}" if frm else "")
            body = adm(hs, "GET", path).json()
            names += [u["name"] for u in body["users"]]
            frm = body.get("next_token")
            if not frm:
                return names, body["total"]

    for extra in ("", "&dir=b"):
        names, total = walk(extra)
        assert len(names) == total == len(set(names))
        assert names == sorted(names, reverse=bool(extra))
        # the same offsets asked directly give the same pages
        direct = adm(hs, "GET", f"{V2}/users?limit=7&from=14{extra}").json()["users"]
        assert [u["name"] for u in direct] == names[14:21]
        again, _ = walk(extra)
        assert again == names
    # a user added between two pages: the offsets stay Synapse's
    first = adm(hs, "GET", f"{V2}/users?limit=7").json()
    hs.register("aaaa-first")
    nxt = adm(hs, "GET", f"{V2}/users?limit=7&from={first['next_token']}").json()
    allnames, _ = walk()
    assert [u["name"] for u in nxt["users"]] == allnames[7:14]
