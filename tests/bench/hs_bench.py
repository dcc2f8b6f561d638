"""
tests/bench/hs_bench.py: the homeserver benchmark (not a timed test).

Against a running mxstack (URL as the only argument, or it starts one on
SQLite/PostgreSQL itself with --start [--pg CONNINFO]):
  - single-sender send latency p50/p99 (sequential PUT /send)
  - events/s with 32 concurrent senders (wrk + send.lua, 32 connections)
  - initial /sync for a user in 100 rooms x 50 events, and incremental /sync
  - fan-out delay: one send to a room with 100 members long-polling /sync
  - RSS before and after
  - server CPU time and bytes written per sent event (/proc during the wrk run)
Usage: /usr/bin/python3 tests/bench/hs_bench.py --start [--pg CONNINFO] [--build DIR]
         [--only send] [--duration S] [--senders N] [--port P] [--db-args YAML]
--only send runs the two send measurements only.  --db-args adds keys to
database.args (e.g. "synchronous: full").  The load average is printed with the
figures, as the machine may be shared.
"""
import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p / 100))]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def io_wchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def free_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


class Api:
    def __init__(self, session, base):
        self.s, self.base = session, base

    async def call(self, method, path, token=None, body=None, timeout=60):
        h = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.s.request(method, self.base + path, json=body, headers=h,
                                  timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            data = await r.json(content_type=None)
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def register(self):
        name = "b" + uuid.uuid4().hex[:12]
        return await self.call("POST", "/_matrix/client/v3/register",
                               body={"username": name, "password": "benchpass",
                                     "auth": {"type": "m.login.dummy"}})


async def bench(base, pid, a):
    out = {}
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        api = Api(s, base)
        if pid:
            out["rss_before_kb"] = rss_kb(pid)
        owner = await api.register()
        tok = owner["access_token"]
        room = (await api.call("POST", "/_matrix/client/v3/createRoom", tok,
                               {"preset": "public_chat"}))["room_id"]

        # single sender latency
        lat = []
        for i in range(a.single):
            t = time.perf_counter()
            await api.call("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/s{i}", tok,
                           {"msgtype": "m.text", "body": f"m{i}"})
            lat.append((time.perf_counter() - t) * 1000)
        out["send_p50_ms"] = round(pct(lat, 50), 2)
        out["send_p99_ms"] = round(pct(lat, 99), 2)

        # 32 concurrent senders with wrk (8 rooms)
        rooms = [room]
        for _ in range(7):
            rooms.append((await api.call("POST", "/_matrix/client/v3/createRoom", tok,
                                         {"preset": "public_chat"}))["room_id"])
        env = dict(os.environ, MX_TOKEN=tok, MX_ROOMS=",".join(rooms))
        cpu0 = cpu_ticks(pid) if pid else 0
        io0 = io_wchar(pid) if pid else 0
        w = subprocess.run(["wrk", "-t2", f"-c{a.senders}", f"-d{a.duration}s", "--latency", "-s",
                            os.path.join(HERE, "send.lua"), base], capture_output=True, text=True,
                           env=env)
        cpu1 = cpu_ticks(pid) if pid else 0
        io1 = io_wchar(pid) if pid else 0
        k = f"send_{a.senders}_senders"
        m = re.search(r"Requests/sec:\s+([\d.]+)", w.stdout)
        out[k + "_events_per_s"] = float(m.group(1)) if m else w.stdout + w.stderr
        m = re.search(r"99%\s+(\S+)", w.stdout)
        out[k + "_p99"] = m.group(1) if m else None
        m = re.search(r"(\d+) requests in", w.stdout)
        if pid and m and int(m.group(1)):
            hz = os.sysconf("SC_CLK_TCK")
            out[k + "_server_cpu_us_per_event"] = round((cpu1 - cpu0) / hz * 1e6 / int(m.group(1)), 1)
            # bytes the server wrote (WAL frames + responses) per event
            out[k + "_server_bytes_written_per_event"] = (io1 - io0) // int(m.group(1))
        if "send failed" in w.stderr:
            out[k + "_errors"] = w.stderr.count("send failed")
        out["loadavg"] = open("/proc/loadavg").read().split()[:3]
        if a.only == "send":
            if pid:
                out["rss_after_kb"] = rss_kb(pid)
            return out

        # initial sync of a user in 100 rooms x 50 events
        u = await api.register()
        ut = u["access_token"]

        async def fill_room(i):
            rid = (await api.call("POST", "/_matrix/client/v3/createRoom", ut,
                                  {"name": f"room {i}"}))["room_id"]
            for j in range(50):
                await api.call("PUT", f"/_matrix/client/v3/rooms/{rid}/send/m.room.message/f{j}", ut,
                               {"msgtype": "m.text", "body": f"r{i} m{j}"})
            return rid
        sem = asyncio.Semaphore(16)

        async def guarded(i):
            async with sem:
                return await fill_room(i)
        await asyncio.gather(*(guarded(i) for i in range(100)))
        times = []
        for _ in range(5):
            t = time.perf_counter()
            body = await api.call("GET", "/_matrix/client/v3/sync", ut)
            times.append((time.perf_counter() - t) * 1000)
        assert len(body["rooms"]["join"]) == 100, len(body["rooms"]["join"])
        out["initial_sync_100x50_ms_median"] = round(statistics.median(times), 1)
        since = body["next_batch"]
        times = []
        for _ in range(20):
            t = time.perf_counter()
            b2 = await api.call("GET", f"/_matrix/client/v3/sync?since={since}&timeout=0", ut)
            times.append((time.perf_counter() - t) * 1000)
        out["incremental_sync_ms_median"] = round(statistics.median(times), 2)

        # fan-out: 100 members long-polling
        members = [await api.register() for _ in range(100)]
        frid = (await api.call("POST", "/_matrix/client/v3/createRoom", tok,
                               {"preset": "public_chat"}))["room_id"]
        for mb in members:
            await api.call("POST", f"/_matrix/client/v3/join/{frid}", mb["access_token"], {})
        tokens = {}
        for mb in members:
            tokens[mb["access_token"]] = (await api.call(
                "GET", "/_matrix/client/v3/sync?timeout=0", mb["access_token"]))["next_batch"]
        delays, round_max = [], []
        for rnd in range(5):
            arrived = []

            async def poll(t, since_):
                while True:
                    r = await api.call("GET", f"/_matrix/client/v3/sync?since={since_}&timeout=30000", t)
                    tokens[t] = r["next_batch"]
                    if frid in r.get("rooms", {}).get("join", {}) and any(
                            e.get("content", {}).get("body") == f"fan{rnd}"
                            for e in r["rooms"]["join"][frid]["timeline"]["events"]):
                        arrived.append(time.perf_counter())
                        return
                    since_ = r["next_batch"]
            polls = [asyncio.create_task(poll(t, sn)) for t, sn in tokens.items()]
            await asyncio.sleep(0.5)
            t0 = time.perf_counter()
            await api.call("PUT", f"/_matrix/client/v3/rooms/{frid}/send/m.room.message/fan{rnd}", tok,
                           {"msgtype": "m.text", "body": f"fan{rnd}"})
            await asyncio.gather(*polls)
            delays += [(a - t0) * 1000 for a in arrived]
            round_max.append(round(max(arrived) * 1000 - t0 * 1000, 1))
        out["fanout_100_p50_ms"] = round(pct(delays, 50), 2)
        out["fanout_100_p99_ms"] = round(pct(delays, 99), 2)
        out["fanout_100_max_ms_per_round"] = round_max
        if pid:
            out["rss_after_kb"] = rss_kb(pid)
    return out


def start_server(build, pg, port, db_args):
    d = tempfile.mkdtemp(prefix="mxbench-")
    port = port or free_port()
    extra = f", {db_args}" if db_args else ""
    db = (f"database: {{name: psycopg2, args: {{dsn: \"{pg}\"{extra}}}}}" if pg else
          f"database: {{name: sqlite3, args: {{database: {d}/hs.db{extra}}}}}")
    with open(f"{d}/c.yaml", "w") as f:
        f.write(f"""server_name: localhost
listeners: [{{port: {port}, bind_addresses: ['127.0.0.1'], type: http, resources: [{{names: [client, health]}}]}}]
{db}
signing_key_path: {d}/signing.key
enable_registration: true
modules: [homeserver]
log_level: warn
homeserver: {{rc_message_per_second: 100000, rc_message_burst: 100000, rc_login_per_second: 1000,
  rc_login_burst: 1000, rc_registration_per_second: 10000, rc_registration_burst: 10000,
  argon2_opslimit: 1, argon2_memlimit_kib: 64}}
""")
    p = subprocess.Popen([os.path.join(build, "mxstack"), "serve", "-c", f"{d}/c.yaml"])
    import urllib.request
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
            break
        except Exception:
            time.sleep(0.05)
    return p, f"http://127.0.0.1:{port}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url", nargs="?")
    ap.add_argument("--start", action="store_true")
    ap.add_argument("--pg")
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--only", choices=["send"])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--senders", type=int, default=32)
    ap.add_argument("--single", type=int, default=500, help="single-sender sends")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--db-args", default="")
    a = ap.parse_args()
    proc = None
    url = a.url
    if a.start:
        proc, url = start_server(a.build, a.pg, a.port, a.db_args)
    try:
        res = asyncio.run(bench(url, proc.pid if proc else None, a))
        for k, v in res.items():
            print(f"{k}: {v}")
    finally:
        if proc:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
