"""
Room deletion (DELETE /_synapse/admin/v2/rooms/{roomId}) survives a crash:
the job is a row of room_delete_jobs, purged in committed steps.  With the
test-only knob `admin: test_room_delete_step_delay_ms` the purge of a room
of a few hundred events takes seconds, the server is killed with SIGKILL
half-way, restarted, and the deletion completes with the right status (by
delete ID and by room), on SQLite and PostgreSQL.  A deletion cut before
its members left (a row still `shutting_down`) is resumed too.
"""
import time
import urllib.parse
import uuid

import pytest

from test_admin_maint import engines, sql  # shared helpers

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"

SLOW = """
admin:
  room_delete_step: 10
  test_room_delete_step_delay_ms: 150
"""



def q(s):
    return urllib.parse.quote(s, safe="@:!")


@pytest.fixture(params=engines())
def hs(request, make_server):
    s = make_server(request.param, modules=["homeserver", "admin"], extra_yaml=SLOW)
    s.start()
    s.admin = s.admin_user()
    return s


def adm(s, method, path, body=None):
    return s.api(method, path, s.admin["access_token"], body)


def big_room(s, n):
    alice, bob = s.register(), s.register()
    r = adm(s, "POST", f"{V1}/users/{q(alice['user_id'])}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0})
    assert r.status_code == 200, r.text
    r = s.api("POST", "/_matrix/client/v3/createRoom", alice["access_token"],
              {"name": "Big", "preset": "public_chat", "room_alias_name": "big" + uuid.uuid4().hex[:6]})
    assert r.status_code == 200, r.text
    room = r.json()["room_id"]
    assert s.api("POST", f"/_matrix/client/v3/join/{q(room)}", bob["access_token"], {}
                 ).status_code == 200
    for i in range(n):
        r = s.api("PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/t{i}",
                  alice["access_token"], {"msgtype": "m.text", "body": f"m{i}"})
        assert r.status_code == 200, r.text
    return alice, bob, room


def status(s, delete_id):
    r = adm(s, "GET", f"{V2}/rooms/delete_status/{delete_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(s, delete_id, pred, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        st = status(s, delete_id)
        if pred(st):
            return st
        time.sleep(0.05)
    raise AssertionError(f"status never matched: {status(s, delete_id)}")


def count_events(s, room):
    return sql(s, "SELECT COUNT(*) FROM events WHERE room_id = ?", (room,))[0][0]


def test_delete_resumes_after_kill9(hs):
    alice, bob, room = big_room(hs, 150)
    before = count_events(hs, room)
    assert before > 150
    r = adm(hs, "DELETE", f"{V2}/rooms/{q(room)}", {"block": True, "purge": True})
    assert r.status_code == 200, r.text
    did = r.json()["delete_id"]
    # a second deletion of the same room while this one runs is refused
    assert adm(hs, "DELETE", f"{V2}/rooms/{q(room)}", {}).status_code == 400
    st = wait_for(hs, did, lambda x: x["status"] == "purging"
                  and x["progress"]["events_purged"] >= 20)
    total = before + 2  # the two leave events
    assert st["progress"]["events_total"] == total
    assert sorted(st["shutdown_room"]["kicked_users"]) == sorted(
        [alice["user_id"], bob["user_id"]])
    hs.kill9()
    # cut half-way: the job row says purging, part of the events are gone
    row = sql(hs, "SELECT status, events_purged FROM room_delete_jobs WHERE delete_id = ?",
              (did,))[0]
    left = count_events(hs, room)
    assert row[0] == "purging" and 0 < row[1] < total and left == total - row[1]
    hs.start()
    st = wait_for(hs, did, lambda x: x["status"] in ("complete", "failed"))
    assert st["status"] == "complete", st
    assert st["progress"] == {"events_purged": total, "events_total": total}
    sr = st["shutdown_room"]
    assert sorted(sr["kicked_users"]) == sorted([alice["user_id"], bob["user_id"]])
    assert sr["failed_to_kick_users"] == [] and sr["new_room_id"] is None
    assert len(sr["local_aliases"]) == 1 and sr["local_aliases"][0].startswith("#big")
    assert count_events(hs, room) == 0
    assert adm(hs, "GET", f"{V1}/rooms/{q(room)}").status_code == 404
    assert adm(hs, "GET", f"{V1}/rooms/{q(room)}/block").json()["block"] is True
    # the status outlives another restart, by ID and by room
    hs.restart()
    assert status(hs, did)["status"] == "complete"
    res = adm(hs, "GET", f"{V2}/rooms/{q(room)}/delete_status").json()["results"]
    assert [(x["delete_id"], x["status"], x["room_id"]) for x in res] == [
        (did, "complete", room)]
    assert adm(hs, "GET", f"{V2}/rooms/delete_status/nope").status_code == 404


def test_delete_cut_before_members_left_resumes(hs):
    alice, bob, room = big_room(hs, 5)
    hs.stop()
    # recorded, nothing done yet (the request was answered, then a crash)
    sql(hs, "INSERT INTO room_delete_jobs (delete_id, room_id, block, purge, force_purge,"
            " status, done_upto, ts) VALUES ('cut', ?, 0, 1, 0, 'shutting_down', ?, 1)",
        (room, -(1 << 62)))
    hs.start()
    st = wait_for(hs, "cut", lambda x: x["status"] in ("complete", "failed"))
    assert st["status"] == "complete", st
    assert sorted(st["shutdown_room"]["kicked_users"]) == sorted(
        [alice["user_id"], bob["user_id"]])
    assert count_events(hs, room) == 0
    jr = hs.api("GET", "/_matrix/client/v3/joined_rooms", bob["access_token"]).json()
    assert jr["joined_rooms"] == []
