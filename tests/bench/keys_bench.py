"""
tests/bench/keys_bench.py: end-to-end keys benchmark (not a timed test).

Starts mxstack (SQLite, or PostgreSQL with --pg), makes 1,000 users x 2
devices, each device uploading signed device keys, --otks signed one-time
keys and a fallback key (ed25519 signatures over canonical JSON, as clients
make them), then drives wrk (32 connections, random bodies from a Lua
table) against:
  - POST /keys/query for one random user (both devices)       -> requests/s
  - POST /keys/query for 50 random users per request            -> requests/s
  - POST /keys/claim of one signed_curve25519 key of one device -> requests/s
Usage: /usr/bin/python3 tests/bench/keys_bench.py [--build DIR] [--pg CONNINFO]
       [--users 1000] [--duration 10]
"""
import argparse
import asyncio
import base64
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
PORT = 18432


def b64(b):
    return base64.b64encode(b).decode().rstrip("=")


def canonical(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def sign(key, obj, user_id, device_id):
    o = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    obj.setdefault("signatures", {}).setdefault(user_id, {})[f"ed25519:{device_id}"] = \
        b64(key.sign(canonical(o)))
    return obj


def device_keys(user_id, device_id, otks):
    sk = Ed25519PrivateKey.generate()
    pub = b64(sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    dk = {"user_id": user_id, "device_id": device_id,
          "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
          "keys": {f"curve25519:{device_id}": b64(os.urandom(32)), f"ed25519:{device_id}": pub}}
    sign(sk, dk, user_id, device_id)
    one_time = {f"signed_curve25519:A{i:05d}": sign(sk, {"key": b64(os.urandom(32))}, user_id,
                                                       device_id) for i in range(otks)}
    fallback = {"signed_curve25519:F00001": sign(sk, {"key": b64(os.urandom(32)), "fallback": True},
                                                 user_id, device_id)}
    return {"device_keys": dk, "one_time_keys": one_time, "fallback_keys": fallback}


def start(build, d, pg):
    db = (f"database: {{name: psycopg2, args: {{dsn: \"{pg}\"}}}}" if pg else
          f"database: {{name: sqlite3, args: {{database: {d}/hs.db}}}}")
    with open(f"{d}/c.yaml", "w") as f:
        f.write(f"""server_name: localhost
listeners: [{{port: {PORT}, bind_addresses: ['127.0.0.1'], type: http, resources: [{{names: [client, health]}}]}}]
{db}
signing_key_path: {d}/signing.key
enable_registration: true
log_level: warn
modules: [homeserver]
homeserver: {{rc_message_per_second: 100000, rc_message_burst: 100000, rc_login_per_second: 100000,
  rc_login_burst: 100000, rc_registration_per_second: 100000, rc_registration_burst: 100000,
  argon2_opslimit: 1, argon2_memlimit_kib: 64}}
""")
    p = subprocess.Popen([os.path.join(build, "mxstack"), "serve", "-c", f"{d}/c.yaml"])
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/ready", timeout=1)
            return p
        except Exception:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


async def post(s, path, token, body):
    h = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.post(f"http://127.0.0.1:{PORT}{path}", json=body, headers=h) as r:
        data = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {data}")
        return data


async def populate(n, otks):
    sem = asyncio.Semaphore(16)
    users = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def one(i):
            async with sem:
                name = f"k{i:05d}"
                r1 = await post(s, "/_matrix/client/v3/register", None,
                                {"username": name, "password": "benchpass12",
                                 "auth": {"type": "m.login.dummy"}})
                r2 = await post(s, "/_matrix/client/v3/login", None,
                                {"type": "m.login.password", "password": "benchpass12",
                                 "identifier": {"type": "m.id.user", "user": name}})
                for r in (r1, r2):
                    await post(s, "/_matrix/client/v3/keys/upload", r["access_token"],
                               device_keys(r["user_id"], r["device_id"], otks))
                users.append((r1["user_id"], [r1["device_id"], r2["device_id"]],
                              r1["access_token"]))
        await asyncio.gather(*(one(i) for i in range(n)))
    return users


def lua_script(path, token, bodies):
    lines = ["local bodies = {"]
    lines += ["  " + json.dumps(json.dumps(b)) + "," for b in bodies]
    lines += ["}",
              "wrk.method = 'POST'",
              f"wrk.headers['Authorization'] = 'Bearer {token}'",
              "wrk.headers['Content-Type'] = 'application/json'",
              "request = function()",
              f"  return wrk.format(nil, '{path}', nil, bodies[math.random(#bodies)])",
              "end",
              "local errors = 0",
              "response = function(status, headers, body)",
              "  if status ~= 200 then errors = errors + 1 end",
              "end",
              "done = function(summary, latency, requests)",
              "  io.write(string.format('non-200: %d\\n', errors))",
              "end"]
    return "\n".join(lines) + "\n"


def run_wrk(d, name, path, token, bodies, duration):
    script = f"{d}/{name}.lua"
    with open(script, "w") as f:
        f.write(lua_script(path, token, bodies))
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", "-s", script,
                          f"http://127.0.0.1:{PORT}"], capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    bad = re.search(r"non-200: (\d+)", out)
    return float(rps.group(1)) if rps else 0.0, p99.group(1) if p99 else "?", \
        int(bad.group(1)) if bad else -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--pg")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--otks", type=int, default=20)
    ap.add_argument("--duration", type=int, default=10)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="mxkeys-bench-")
    proc = start(os.path.abspath(a.build), d, a.pg)
    try:
        t = time.perf_counter()
        users = asyncio.run(populate(a.users, a.otks))
        print(f"setup: {len(users)} users x 2 devices, {a.otks} OTKs each, "
              f"{time.perf_counter() - t:.1f} s")
        tok = users[0][2]
        rnd = random.Random(1)
        q1 = [{"device_keys": {u[0]: []}} for u in users]
        q50 = [{"device_keys": {u[0]: [] for u in rnd.sample(users, 50)}} for _ in range(200)]
        cl = [{"one_time_keys": {u[0]: {dev: "signed_curve25519"}}} for u in users for dev in u[1]]
        rnd.shuffle(cl)
        for name, path, bodies, per in (("query1", "/_matrix/client/v3/keys/query", q1, 1),
                                        ("query50", "/_matrix/client/v3/keys/query", q50, 50),
                                        ("claim", "/_matrix/client/v3/keys/claim", cl, 1)):
            rps, p99, bad = run_wrk(d, name, path, tok, bodies, a.duration)
            extra = f", {rps * per:.0f} users/s" if per > 1 else ""
            print(f"{name}: {rps:.0f} req/s{extra}, p99 {p99}, non-200 {bad}")
        # claims past the one-time keys get the fallback key
        print(f"RSS: {int(open(f'/proc/{proc.pid}/status').read().split('VmRSS:')[1].split()[0])} kB")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
