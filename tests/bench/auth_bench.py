"""
tests/bench/auth_bench.py: the auth module's benchmark (not a timed test).

Starts mxstack (SQLite) with the homeserver and auth modules, the homeserver
delegating to auth, and measures:
  - password logins/s through the compatibility /login (argon2id with the
    homeserver's argon2_opslimit / argon2_memlimit_kib, stated in the output)
  - introspection requests/s over HTTP (wrk, 32 connections, one token,
    client_secret_basic)
  - memory per 10,000 active sessions: RSS before and after 10,000
    client_credentials sessions were created and each token introspected once
    (so it sits in the validated-token cache)
The in-process token check (ns per call) is printed by the cmocka program
modules/auth/tests/test_auth (`make check`).
Usage: /usr/bin/python3 tests/bench/auth_bench.py [--build DIR] [--sessions N]
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import aiohttp

from hs_bench import rss_kb

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
PORT = 18431
CLIENT_ID = "01JCFGBENCHC11ENT000000000"
CLIENT_SECRET = "benchmark-client-secret-0123"
SHARED = "bench_shared_secret"
OPSLIMIT, MEMLIMIT_KIB = 2, 19456


def start(build, d):
    with open(f"{d}/c.yaml", "w") as f:
        f.write(f"""server_name: localhost
public_baseurl: http://127.0.0.1:{PORT}/
listeners: [{{port: {PORT}, bind_addresses: ['127.0.0.1'], type: http,
  resources: [{{names: [client, auth, health]}}]}}]
database: {{name: sqlite3, args: {{database: {d}/hs.db}}}}
data_dir: {d}/data
signing_key_path: {d}/signing.key
media_store_path: {d}/media
registration_shared_secret: {SHARED}
log_level: warn
modules: [homeserver, auth]
homeserver: {{rc_login_per_second: 100000, rc_login_burst: 100000,
  argon2_opslimit: {OPSLIMIT}, argon2_memlimit_kib: {MEMLIMIT_KIB}}}
auth:
  delegate_homeserver: true
  rate_limit: {{login: {{per_ip: {{burst: 1000000, per_second: 1000000}},
                        per_account: {{burst: 1000000, per_second: 1000000}}}}}}
  clients:
    - client_id: {CLIENT_ID}
      client_auth_method: client_secret_basic
      client_secret: {CLIENT_SECRET}
""")
    p = subprocess.Popen([os.path.join(build, "mxstack"), "serve", "-c", f"{d}/c.yaml"])
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/ready", timeout=1)
            return p
        except Exception:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("mxstack did not become ready")


async def register(s, base, user, password):
    """Synapse's shared-secret registration (nonce + HMAC-SHA1)."""
    async with s.get(base + "/_synapse/admin/v1/register") as r:
        nonce = (await r.json())["nonce"]
    mac = hmac.new(SHARED.encode(), digestmod=hashlib.sha1)
    mac.update(b"\0".join([nonce.encode(), user.encode(), password.encode(), b"notadmin"]))
    body = {"nonce": nonce, "username": user, "password": password, "mac": mac.hexdigest()}
    async with s.post(base + "/_synapse/admin/v1/register", json=body) as r:
        assert r.status == 200, await r.text()


async def logins_per_second(s, base, seconds=10.0, concurrency=4):
    await register(s, base, "bench", "bench-password-1")
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bench"},
            "password": "bench-password-1"}
    done = 0
    end = time.monotonic() + seconds

    async def worker():
        nonlocal done
        while time.monotonic() < end:
            async with s.post(base + "/_matrix/client/v3/login", json=body) as r:
                assert r.status == 200, await r.text()
                done += 1
    t0 = time.monotonic()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return done / (time.monotonic() - t0)


async def cc_token(s, base):
    async with s.post(base + "/oauth2/token", data={"grant_type": "client_credentials"},
                      auth=aiohttp.BasicAuth(CLIENT_ID, CLIENT_SECRET)) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["access_token"]


async def introspect(s, base, token):
    async with s.post(base + "/oauth2/introspect", data={"token": token},
                      auth=aiohttp.BasicAuth(CLIENT_ID, CLIENT_SECRET)) as r:
        assert r.status == 200 and (await r.json())["active"], await r.text()


async def bounded(n, concurrency, fn):
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            return await fn(i)
    return await asyncio.gather(*[one(i) for i in range(n)])


def wrk_introspection(d, base, token, seconds=10):
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    with open(f"{d}/introspect.lua", "w") as f:
        f.write('wrk.method = "POST"\n'
                f'wrk.body = "token={token}"\n'
                'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
                f'wrk.headers["Authorization"] = "Basic {basic}"\n')
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s",
                          f"{d}/introspect.lua", base + "/oauth2/introspect"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+(\S+)", out).group(1)
    return rps, p99, int(non2xx.group(1)) if non2xx else 0


async def main_async(args, d, pid):
    base = f"http://127.0.0.1:{PORT}"
    async with aiohttp.ClientSession() as s:
        lps = await logins_per_second(s, base)
        print(f"password logins/s (compat /login, argon2id t={OPSLIMIT} m={MEMLIMIT_KIB} KiB, "
              f"4 concurrent): {lps:.1f}")
        token = await cc_token(s, base)
        await introspect(s, base, token)
        rps, p99, bad = wrk_introspection(d, base, token)
        print(f"introspection over HTTP: {rps:,.0f} req/s, p99 {p99}, non-2xx {bad}")
        rss0 = rss_kb(pid)
        tokens = await bounded(args.sessions, 16, lambda i: cc_token(s, base))
        rss1 = rss_kb(pid)
        await bounded(len(tokens), 16, lambda i: introspect(s, base, tokens[i]))
        rss2 = rss_kb(pid)
        n = args.sessions
        print(f"{n} active sessions: RSS {rss0/1024:.1f} MB -> {rss1/1024:.1f} MB (created) -> "
              f"{rss2/1024:.1f} MB (each token validated once); "
              f"{(rss2 - rss0) * 1024 / n:.0f} bytes per session")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--sessions", type=int, default=10000)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="mxauthbench-")
    p = start(args.build, d)
    try:
        asyncio.run(main_async(args, d, p.pid))
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
