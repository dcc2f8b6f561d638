"""
Send-path behaviour the performance work relies on: a transaction ID is
scoped to the request path (spec "Transaction identifiers"), and duplicates
that arrive while the first request is still in flight get its event ID
instead of a second event or a 500.
"""
import concurrent.futures
import urllib.parse
import uuid

V3 = "/_matrix/client/v3"


def q(s):
    return urllib.parse.quote(s, safe="")


def send(server, tok, room, txn, body):
    return server.api("PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/{txn}", token=tok,
                      json_body={"msgtype": "m.text", "body": body})


def bodies(server, tok, room):
    filt = q('{"room": {"timeline": {"limit": 100}}}')
    r = server.api("GET", f"{V3}/sync?filter={filt}", token=tok)
    assert r.status_code == 200, r.text
    evs = r.json()["rooms"]["join"][room]["timeline"]["events"]
    return [e["content"].get("body") for e in evs if e["type"] == "m.room.message"]


def create(server, tok):
    r = server.api("POST", V3 + "/createRoom", token=tok, json_body={})
    assert r.status_code == 200, r.text
    return r.json()["room_id"]


def test_concurrent_duplicate_txn(server):
    u = server.register()
    tok = u["access_token"]
    room = create(server, tok)
    txn = uuid.uuid4().hex
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(lambda i: send(server, tok, room, txn, "dup"), range(32)))
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
    ids = {r.json()["event_id"] for r in rs}
    assert len(ids) == 1
    assert bodies(server, tok, room).count("dup") == 1
    # later retransmission: the same ID again
    r = send(server, tok, room, txn, "dup")
    assert r.status_code == 200 and r.json()["event_id"] in ids


def test_txn_scoped_to_path(server):
    u = server.register()
    tok = u["access_token"]
    r1, r2 = create(server, tok), create(server, tok)
    a = send(server, tok, r1, "t1", "in one")
    b = send(server, tok, r2, "t1", "in two")
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    assert a.json()["event_id"] != b.json()["event_id"]
    assert bodies(server, tok, r1).count("in one") == 1
    assert bodies(server, tok, r2).count("in two") == 1
    # another event type on the same room and txn is another request too
    r = server.api("PUT", f"{V3}/rooms/{q(r1)}/send/m.custom/t1", token=tok,
                   json_body={"x": 1})
    assert r.status_code == 200 and r.json()["event_id"] != a.json()["event_id"]
    # the sender sees its own txn ID on the event
    ev = server.api("GET", f"{V3}/rooms/{q(r1)}/event/{q(a.json()['event_id'])}", token=tok)
    assert ev.json().get("unsigned", {}).get("transaction_id") == "t1"
