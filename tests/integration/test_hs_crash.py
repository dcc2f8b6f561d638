"""
Crash test (issue 3 item 9), on both storage engines: 16 concurrent senders
send messages into one room as fast as they can; after ~2 s the server gets
SIGKILL while sends are in flight; after a restart every event that got a 200
is there (/event and /messages, in each sender's acknowledgement order, no
duplicates), and /sync tokens obtained before the crash resume correctly:
they return 200, cover the events sent after them (filling the gap with
/messages from prev_batch as a client does) and long-poll again, waking for
new messages and typing after the restart.
"""
import json
import threading
import time
import urllib.parse

import requests

SENDERS = 16
LOAD_SECONDS = 2.0


def q(s):
    return urllib.parse.quote(s, safe="")


class Sender(threading.Thread):
    """Sends m.text messages with unique txn IDs until the first failure.
    `acked` is the list of (seq, event_id) that got a 200, in order."""

    def __init__(self, server, user, room_id, idx, stop):
        super().__init__(daemon=True)
        self.url = server.url
        self.user, self.room_id, self.idx, self.stop = user, room_id, idx, stop
        self.acked = []
        self.started_at = {}   # seq -> monotonic time the request was started
        self.error = None

    def run(self):
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + self.user["access_token"]
        seq = 0
        while not self.stop.is_set():
            body = {"msgtype": "m.text", "body": f"s{self.idx}-{seq}"}
            path = (f"/_matrix/client/v3/rooms/{q(self.room_id)}/send/m.room.message/"
                    f"crash-{self.idx}-{seq}")
            self.started_at[seq] = time.monotonic()
            try:
                r = s.put(self.url + path, json=body, timeout=10)
            except requests.RequestException as e:
                self.error = e   # in flight when the server died: outcome unknown
                return
            if r.status_code != 200:
                self.error = f"{r.status_code} {r.text}"
                return
            self.acked.append((seq, r.json()["event_id"]))
            seq += 1


def sync(server, token, since=None, timeout=0, limit=500, http_timeout=30):
    filt = json.dumps({"room": {"timeline": {"limit": limit}}})
    path = f"/_matrix/client/v3/sync?timeout={timeout}&filter={q(filt)}"
    if since:
        path += "&since=" + q(since)
    return server.api("GET", path, token, timeout=http_timeout)


def messages(server, token, room_id, frm, direction, to=None, limit=1000):
    """All events from `frm` in `direction` (until `to` or the end)."""
    out = []
    while True:
        path = (f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir={direction}"
                f"&limit={limit}&from={q(frm)}")
        if to:
            path += "&to=" + q(to)
        r = server.api("GET", path, token)
        assert r.status_code == 200, r.text
        j = r.json()
        out += j["chunk"]
        if not j["chunk"] or "end" not in j:
            return out
        frm = j["end"]


def test_kill9_during_concurrent_sends(server):
    owner = server.register()
    senders = [server.register() for _ in range(SENDERS)]
    r = server.api("POST", "/_matrix/client/v3/createRoom", owner["access_token"],
                   {"preset": "public_chat", "name": "crash"})
    assert r.status_code == 200, r.text
    room_id = r.json()["room_id"]
    for u in senders:
        r = server.api("POST", f"/_matrix/client/v3/join/{q(room_id)}", u["access_token"], {})
        assert r.status_code == 200, r.text
    # non-event streams have positions in the tokens too
    r = server.api("PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(owner['user_id'])}",
                   owner["access_token"], {"typing": True, "timeout": 30000})
    assert r.status_code == 200, r.text

    tok = owner["access_token"]
    r = sync(server, tok)
    assert r.status_code == 200, r.text
    since0 = r.json()["next_batch"]

    stop = threading.Event()
    threads = [Sender(server, u, room_id, i, stop) for i, u in enumerate(senders)]
    t_start = time.monotonic()
    for t in threads:
        t.start()

    # a token taken mid-load: everything whose send started after we had it must follow it
    time.sleep(LOAD_SECONDS / 2)
    r = sync(server, tok, since=since0)
    assert r.status_code == 200, r.text
    mid = r.json()["next_batch"]
    mid_at = time.monotonic()
    # and the newest token the client had before the crash
    time.sleep(max(0.0, t_start + LOAD_SECONDS - 0.1 - time.monotonic()))
    r = sync(server, tok, since=mid)
    assert r.status_code == 200, r.text
    last = r.json()["next_batch"]

    time.sleep(max(0.0, t_start + LOAD_SECONDS - time.monotonic()))
    server.kill9()
    stop.set()
    for t in threads:
        t.join(15)
        assert not t.is_alive()
    acked = {t.idx: t.acked for t in threads}
    total = sum(len(a) for a in acked.values())
    in_flight = sum(1 for t in threads if isinstance(t.error, requests.RequestException))
    assert total >= SENDERS, f"load too small to mean anything: {total} acked"
    assert in_flight >= 1, "the kill should hit sends in flight"
    for t in threads:   # only the crash may end a sender
        assert t.error is None or isinstance(t.error, requests.RequestException), t.error
    print(f"{server.engine}: {total} sends acknowledged, {in_flight} in flight at kill -9")

    server.start()

    # 1. every acknowledged event is retrievable, with its content
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + tok
    for idx, lst in acked.items():
        for seq, eid in lst:
            r = s.get(f"{server.url}/_matrix/client/v3/rooms/{q(room_id)}/event/{q(eid)}", timeout=10)
            assert r.status_code == 200, (eid, r.status_code, r.text)
            ev = r.json()
            assert ev["content"]["body"] == f"s{idx}-{seq}", ev
            assert ev["sender"] == senders[idx]["user_id"]

    # 2. /messages has them all, once each, in every sender's acknowledgement order
    chunk = messages(server, tok, room_id, since0, "f")
    ids = [e["event_id"] for e in chunk]
    assert len(ids) == len(set(ids)), "duplicate events in /messages"
    pos = {eid: i for i, eid in enumerate(ids)}
    bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
    assert len(bodies) == len(set(bodies)), "a message was stored twice"
    for idx, lst in acked.items():
        where = [pos.get(eid) for _, eid in lst]
        assert None not in where, f"sender {idx}: acknowledged event missing from /messages"
        assert where == sorted(where), f"sender {idx}: /messages order differs from ack order"
    # backwards from the end agrees with forwards
    r = sync(server, tok, since=last)
    assert r.status_code == 200, r.text
    back = messages(server, tok, room_id, r.json()["next_batch"], "b", to=since0)
    assert [e["event_id"] for e in reversed(back)] == ids

    # 3. /sync from the mid-load token: 200, and with the gap filled through
    #    prev_batch it holds every event whose send started after the token
    r = sync(server, tok, since=mid)
    assert r.status_code == 200, r.text
    j = r.json()
    room = j["rooms"]["join"][room_id]
    got = [e["event_id"] for e in room["timeline"]["events"]]
    if room["timeline"]["limited"]:
        gap = messages(server, tok, room_id, room["timeline"]["prev_batch"], "b", to=mid)
        got = [e["event_id"] for e in reversed(gap)] + got
    assert len(got) == len(set(got))
    assert got == [i for i in ids if i in set(got)], "sync order differs from /messages"
    for t in threads:
        for seq, eid in t.acked:
            if t.started_at[seq] > mid_at:
                assert eid in got, f"sender {t.idx} seq {seq} missing from /sync since the mid token"
    # and the events it returns are exactly the tail of the room after the token
    assert got == ids[len(ids) - len(got):]

    # 4. the newest pre-crash token long-polls again: a new message wakes it
    r = sync(server, tok, since=last)
    assert r.status_code == 200, r.text
    caught_up = r.json()["next_batch"]
    res = {}

    def poll():
        res["r"] = sync(server, tok, since=caught_up, timeout=10000)
    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    r = server.api("PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/after-crash",
                   senders[0]["access_token"], {"msgtype": "m.text", "body": "after the crash"})
    assert r.status_code == 200, r.text
    new_id = r.json()["event_id"]
    th.join(15)
    assert time.monotonic() - t0 < 3, "long-poll did not wake after restart"
    assert res["r"].status_code == 200, res["r"].text
    j = res["r"].json()
    assert new_id in [e["event_id"] for e in j["rooms"]["join"][room_id]["timeline"]["events"]]

    # 5. typing (an in-memory stream) still reaches a client holding a pre-crash token
    nb = j["next_batch"]

    def poll2():
        res["r2"] = sync(server, tok, since=nb, timeout=10000)
    th = threading.Thread(target=poll2)
    th.start()
    time.sleep(0.3)
    r = server.api("PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/typing/{q(senders[1]['user_id'])}",
                   senders[1]["access_token"], {"typing": True, "timeout": 30000})
    assert r.status_code == 200, r.text
    th.join(15)
    assert res["r2"].status_code == 200, res["r2"].text
    eph = res["r2"].json()["rooms"]["join"].get(room_id, {}).get("ephemeral", {}).get("events", [])
    typing = [e for e in eph if e["type"] == "m.typing"]
    assert typing and senders[1]["user_id"] in typing[-1]["content"]["user_ids"], eph
