"""
Self-destructing messages (MSC2228, Synapse's enable_ephemeral_messages), on
both engines: a message whose content carries org.matrix.self_destruct_after
is pruned (content {}) once that time has passed — in /messages, /event and
/search — without a redaction event; state events and messages without the
key keep their content; an expiry still pending at shutdown runs after a
restart; with the setting off nothing expires.
"""
import json
import time
import urllib.parse

import pytest

from conftest import engines

V3 = "/_matrix/client/v3"


def q(s):
    return urllib.parse.quote(s, safe="")


def send(s, tok, room, content, txn):
    r = s.api("PUT", f"{V3}/rooms/{q(room)}/send/m.room.message/{txn}", tok, content)
    assert r.status_code == 200, r.text
    return r.json()["event_id"]


def messages(s, tok, room):
    filt = json.dumps({"types": ["m.room.message"]})
    r = s.api("GET", f"{V3}/rooms/{q(room)}/messages?dir=b&limit=50&filter={q(filt)}", tok)
    assert r.status_code == 200, r.text
    return {e["event_id"]: e for e in r.json()["chunk"]}


def wait_pruned(s, tok, room, eid, deadline=10):
    end = time.time() + deadline
    while time.time() < end:
        if messages(s, tok, room)[eid]["content"] == {}:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("engine", engines())
def test_messages_self_destruct(make_server, engine):
    s = make_server(engine)
    with open(s.config_path) as f:
        cfg = f.read()
    with open(s.config_path, "w") as f:
        f.write(cfg.replace("homeserver:\n", "homeserver:\n  enable_ephemeral_messages: true\n", 1))
    s.start()
    u = s.register()
    tok = u["access_token"]
    room = s.api("POST", V3 + "/createRoom", tok, {}).json()["room_id"]
    now = int(time.time() * 1000)
    soon = send(s, tok, room, {"msgtype": "m.text", "body": "vanishing words",
                                "org.matrix.self_destruct_after": now + 1000}, "t1")
    keep = send(s, tok, room, {"msgtype": "m.text", "body": "staying words"}, "t2")
    later = send(s, tok, room, {"msgtype": "m.text", "body": "later words",
                                "org.matrix.self_destruct_after": now + 4000}, "t3")
    bad = send(s, tok, room, {"msgtype": "m.text", "body": "string expiry",
                               "org.matrix.self_destruct_after": "soon"}, "t4")
    before = messages(s, tok, room)
    assert before[soon]["content"]["body"] == "vanishing words"
    assert wait_pruned(s, tok, room, soon)
    after = messages(s, tok, room)
    assert after[keep]["content"]["body"] == "staying words"
    assert after[bad]["content"]["body"] == "string expiry"
    assert after[later]["content"]["body"] == "later words"
    r = s.api("GET", f"{V3}/rooms/{q(room)}/event/{q(soon)}", tok)
    assert r.status_code == 200 and r.json()["content"] == {}, r.text
    r = s.api("POST", V3 + "/search", tok, {"search_categories": {"room_events": {
        "search_term": "vanishing"}}})
    assert r.status_code == 200 and r.json()["search_categories"]["room_events"]["count"] == 0, r.text
    # no redaction event was sent
    r = s.api("GET", f"{V3}/rooms/{q(room)}/messages?dir=b&limit=50", tok)
    assert not [e for e in r.json()["chunk"] if e["type"] == "m.room.redaction"]
    # the pending one survives a restart and expires afterwards
    s.restart()
    assert messages(s, tok, room)[later]["content"].get("body") in ("later words", None)
    assert wait_pruned(s, tok, room, later)
    assert messages(s, tok, room)[keep]["content"]["body"] == "staying words"


def test_off_by_default(make_server):
    s = make_server("sqlite").start()
    u = s.register()
    tok = u["access_token"]
    room = s.api("POST", V3 + "/createRoom", tok, {}).json()["room_id"]
    eid = send(s, tok, room, {"msgtype": "m.text", "body": "stays",
                               "org.matrix.self_destruct_after": int(time.time() * 1000)}, "t1")
    time.sleep(1.0)
    assert messages(s, tok, room)[eid]["content"]["body"] == "stays"
