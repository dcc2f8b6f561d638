"""
Send idempotency across the fast path (rooms/rm_send.c skips the stored-txn
read for devices it knows had no stored txn): a retransmission answers the
first event ID within one process, after a restart and after kill -9, for a
device that sent before the restart, and a new txn still makes a new event.
"""
import urllib.parse
import uuid

V3 = "/_matrix/client/v3"


def q(s):
    return urllib.parse.quote(s, safe="")


def send(server, tok, room, txn, body):
    r = server.api("PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/{txn}", tok,
                   {"msgtype": "m.text", "body": body})
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def bodies(server, tok, room):
    r = server.api("GET", f"{V3}/rooms/{q(room)}/messages?dir=b&limit=200", tok)
    assert r.status_code == 200, r.text
    return [e["content"].get("body") for e in r.json()["chunk"] if e["type"] == "m.room.message"]


def test_txn_idempotent_across_restarts(server):
    u = server.register()
    tok = u["access_token"]
    room = server.api("POST", V3 + "/createRoom", tok, {}).json()["room_id"]
    ids = {}
    for i in range(20):
        ids[f"t{i}"] = send(server, tok, room, f"t{i}", f"b{i}")
    # Same process: every retransmission answers its own first event.
    for i in range(20):
        assert send(server, tok, room, f"t{i}", "again") == ids[f"t{i}"]
    server.restart()
    # A device that stored txns before the restart: retransmissions found.
    for i in (0, 7, 19):
        assert send(server, tok, room, f"t{i}", "after restart") == ids[f"t{i}"]
    new = send(server, tok, room, "fresh-" + uuid.uuid4().hex, "new one")
    assert new not in ids.values()
    server.kill9()
    server.start()
    assert send(server, tok, room, "t3", "after kill") == ids["t3"]
    got = bodies(server, tok, room)
    assert sorted(b for b in got if b.startswith("b")) == sorted(f"b{i}" for i in range(20))
    assert got.count("new one") == 1
    assert "again" not in got and "after restart" not in got and "after kill" not in got


def test_txn_new_device_then_retransmit(server):
    # A fresh device (no stored txn): sends take the no-read path; a
    # retransmission of each must still answer the same event.
    u = server.register()
    tok = u["access_token"]
    room = server.api("POST", V3 + "/createRoom", tok, {}).json()["room_id"]
    first = [send(server, tok, room, f"n{i}", f"n{i}") for i in range(30)]
    again = [send(server, tok, room, f"n{i}", "dup") for i in range(30)]
    assert first == again
    assert "dup" not in bodies(server, tok, room)
