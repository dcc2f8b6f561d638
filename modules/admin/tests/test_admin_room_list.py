"""
The admin room list (GET /_synapse/admin/v1/rooms), answered from the
summaries the admin service keeps in memory and in `room_list_rooms`
(svc_rlist.c): `search_term` gives exactly what Synapse's SQL gives
(LOWER(name) LIKE '%term%' OR LOWER(canonical_alias) LIKE '#%term%:%' OR
room_id = term, run here on the server's own database), and the list
follows changes across restarts (kill -9 included), the first start over a
database without kept summaries, directory visibility changes made without
an event, and rooms deleted behind the server's back.
"""
import time
import urllib.parse

from test_admin import hs  # noqa: F401 (the fixture: homeserver + admin, s.admin)
from test_admin_maint import sql  # shared helpers

V1 = "/_synapse/admin/v1"


def adm(s, path):
    r = s.api("GET", path, s.admin["access_token"])
    assert r.status_code == 200, r.text
    return r.json()


def make_room(s, **body):
    r = s.api("POST", "/_matrix/client/v3/createRoom", s.admin["access_token"], body)
    assert r.status_code == 200, r.text
    return r.json()["room_id"]


def listed(s, query=""):
    """Every room ID of the list (walking next_batch), in order."""
    out, frm = [], 0
    while True:
        b = adm(s, f"{V1}/rooms?limit=7&from={frm}{query}")
        out += [r["room_id"] for r in b["rooms"]]
        if "next_batch" not in b:
            assert b["total_rooms"] == len(out)
            return out
        frm = b["next_batch"]


def synapse_search(s, term):
    """Synapse's search_term WHERE clause over the current state, in SQL."""
    if s.engine == "sqlite":
        name = "json_extract(e.json, '$.content.name')"
        alias = "json_extract(e.json, '$.content.alias')"
    else:
        name = "(e.json::json -> 'content' ->> 'name')"
        alias = "(e.json::json -> 'content' ->> 'alias')"

    def col(expr, typ):
        return (f"(SELECT {expr} FROM current_state c JOIN events e ON e.event_id = c.event_id"
                f" WHERE c.room_id = r.room_id AND c.type = '{typ}' AND c.state_key = '')")
    rows = sql(s, f"SELECT r.room_id FROM rooms r WHERE LOWER({col(name, 'm.room.name')}) LIKE ?"
                  f" OR LOWER({col(alias, 'm.room.canonical_alias')}) LIKE ? OR r.room_id = ?",
               ("%" + term.lower() + "%", "#%" + term.lower() + "%:%", term))
    return {r[0] for r in rows}


def test_search_term_equals_synapse_sql(hs):
    names = ["Apples", "APPLE pie", "Pineapple", "Banana Split", "grapes", None, "Kiwi",
             "kiwi KIWI", "Road to 100", "plain"]
    rooms = []
    for i, n in enumerate(names):
        body = {}
        if n:
            body["name"] = n
        if i % 3 == 0:
            body["room_alias_name"] = f"Alias{i}Fruit"
        rooms.append(make_room(hs, **body))
    terms = ["apple", "APPLE", "Kiwi", "fruit", "alias3", "ALIAS", "an", "e", "xyz", "100",
             "localhost", ":", "#", rooms[5], rooms[5].upper(), rooms[5][1:6], " "]
    for term in terms:
        got = listed(hs, "&search_term=" + urllib.parse.quote(term))
        assert set(got) == synapse_search(hs, term), term
        assert len(got) == len(set(got))
    # order and paging hold under a search
    got = listed(hs, "&search_term=a&order_by=name&dir=b")
    full = [r for r in listed(hs, "&order_by=name&dir=b") if r in set(got)]
    assert got == full


def test_list_follows_restarts_and_changes(hs):
    tok = hs.admin["access_token"]
    a = make_room(hs, name="Alpha")
    b = make_room(hs, name="Beta", preset="public_chat")
    assert adm(hs, f"{V1}/rooms?search_term=alpha")["total_rooms"] == 1
    # a rename right before a kill -9: the kept summaries are older
    r = hs.api("PUT", f"/_matrix/client/v3/rooms/{urllib.parse.quote(a)}/state/m.room.name",
               tok, {"name": "Gamma"})
    assert r.status_code == 200
    hs.kill9()
    hs.start()
    body = adm(hs, f"{V1}/rooms?search_term=gamma")
    assert [x["room_id"] for x in body["rooms"]] == [a]
    assert adm(hs, f"{V1}/rooms?search_term=alpha")["total_rooms"] == 0
    # directory visibility changes without an event
    r = hs.api("PUT", f"/_matrix/client/v3/directory/list/room/{urllib.parse.quote(b)}", tok,
               {"visibility": "public"})
    assert r.status_code == 200
    assert [x["room_id"] for x in adm(hs, f"{V1}/rooms?public_rooms=true")["rooms"]] == [b]
    # a member joins: counts follow at once
    other = hs.register()
    r = hs.api("POST", f"/_matrix/client/v3/join/{urllib.parse.quote(b)}",
               other["access_token"], {})
    assert r.status_code == 200
    beta = adm(hs, f"{V1}/rooms?search_term=beta")["rooms"][0]
    assert beta["joined_members"] == 2 and beta["public"] is True
    # first start over a database without kept summaries (an upgrade)
    hs.stop()
    sql(hs, "DELETE FROM room_list_pos")
    sql(hs, "DELETE FROM room_list_rooms")
    hs.start()
    body = adm(hs, f"{V1}/rooms?order_by=name")
    assert {x["name"] for x in body["rooms"]} >= {"Gamma", "Beta"}
    assert [x["joined_members"] for x in body["rooms"] if x["room_id"] == b] == [2]
    # a room deleted behind the server's back leaves the list
    before = body["total_rooms"]
    hs.stop()
    for t in ("current_state", "room_memberships", "events", "rooms"):
        sql(hs, f"DELETE FROM {t} WHERE room_id = ?", (a,))
    hs.start()
    body = adm(hs, f"{V1}/rooms")
    assert body["total_rooms"] == before - 1
    assert a not in [x["room_id"] for x in body["rooms"]]
    for _ in range(50):  # its kept row goes in a write after the reply
        if sql(hs, "SELECT COUNT(*) FROM room_list_rooms WHERE room_id = ?", (a,)) == [(0,)]:
            break
        time.sleep(0.1)
    assert sql(hs, "SELECT COUNT(*) FROM room_list_rooms WHERE room_id = ?", (a,)) == [(0,)]
