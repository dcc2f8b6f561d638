"""
HTTP pushers over keep-alive connections: two pushers of one user share a
push gateway that speaks HTTP/1.1 with persistent connections.  The gateway
here is a raw socket server, so it sees exactly what the core HTTP client
writes: every request must be complete and well framed (Content-Length
matches the body, the body is one JSON object), no request may be written
on a connection whose previous request is still unanswered (no pipelining),
and connections are reused.  (sytest 61push tests 32/33 once looked like a
keep-alive bug; they fail only after the federation push tests leave stale
handlers in sytest's own gateway.)
"""
import json
import socket
import threading
import time
import uuid

import pytest

from conftest import engines
from test_hs_upgrade import ok, q


class RawGateway:
    def __init__(self, delay=0.0):
        self.delay = delay
        self.requests = []          # (conn_no, pushkey, json_ok, extra_bytes_waiting)
        self.conns = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/_matrix/push/v1/notify"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            threading.Thread(target=self.serve, args=(c, n), daemon=True).start()

    def serve(self, c, n):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            while len(buf) < length:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            body, buf = buf[:length], buf[length:]
            # hold the answer; anything that arrives meanwhile was written
            # before our answer: pipelined
            time.sleep(self.delay)
            c.setblocking(False)
            try:
                early = c.recv(65536)
            except BlockingIOError:
                early = b""
            c.setblocking(True)
            buf += early
            try:
                doc = json.loads(body)
                key = doc["notification"]["devices"][0]["pushkey"]
                good = lines[0].startswith("POST /_matrix/push/v1/notify HTTP/1.1")
            except (ValueError, KeyError, IndexError):
                key, good = None, False
            with self.lock:
                self.requests.append((n, key, good, len(buf)))
            out = b'{"rejected":[]}'
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(out), out))

    def wait(self, n, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.05)
        with self.lock:
            return list(self.requests)

    def close(self):
        self.sock.close()


@pytest.fixture(params=engines())
def push_server(request, make_server):
    s = make_server(request.param, extra_yaml="ip_range_whitelist: ['127.0.0.0/8']\n")
    s.start()
    return s


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_two_pushers_share_keepalive_connections(push_server, delay):
    gw = RawGateway(delay=delay)
    try:
        a, b = push_server.register(), push_server.register()
        ta, tb = a["access_token"], b["access_token"]
        room = ok(push_server, "POST", "/createRoom", ta, {"invite": [b["user_id"]]})["room_id"]
        ok(push_server, "POST", f"/join/{q(room)}", tb, {})
        for key in ("key_1", "key_2"):
            ok(push_server, "POST", "/pushers/set", ta, {
                "kind": "http", "app_id": "test", "pushkey": key, "app_display_name": "a",
                "device_display_name": "d", "lang": "en", "append": True,
                "data": {"url": gw.url}})
        sent = 6
        for i in range(sent):
            ok(push_server, "PUT", f"/rooms/{q(room)}/send/m.room.message/{uuid.uuid4().hex}",
               tb, {"msgtype": "m.text", "body": f"m{i}"})
            time.sleep(0.05)
        got = gw.wait(2 * sent, timeout=20)
        assert len(got) >= 2 * sent
        assert all(good for _, _, good, _ in got), got
        assert all(extra == 0 for _, _, _, extra in got), "request written before the answer"
        for key in ("key_1", "key_2"):
            assert sum(1 for _, k, _, _ in got if k == key) >= sent
        # keep-alive: far fewer connections than requests
        assert gw.conns <= 4, gw.conns
    finally:
        gw.close()
