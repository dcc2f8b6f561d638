#!/usr/bin/env python3
"""
Benchmark (not a test): the admin room list over 10,000 rooms.

Starts mxstack (homeserver + admin), creates N rooms through the client API
(16 in parallel, the creator's rate limit lifted through the admin API; a
name on every room, an alias on every third, public every fifth, a second
member in every seventh), then times GET /_synapse/admin/v1/rooms pages:
first page, deep offset, search_term, order_by name / joined_members /
canonical_alias, dir=b, one page after a room changed, and the first page
after a restart (with and without the kept summaries).  With
MXSTACK_TEST_PG set, does the same on PostgreSQL.

    MXSTACK_BIN=build/mxstack python3 modules/admin/tests/bench_rooms.py [N]

Figures: see modules/admin/README.md ("Figures").
"""
import concurrent.futures
import os
import statistics
import sys
import time
import urllib.parse

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conftest  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


def timed(s, token, path, n=20):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = s.api("GET", path, token)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return statistics.median(times), max(times), r.json()


def create_rooms(s, tok, other):
    local = {"s": None}

    def one(i):
        sess = local.get("s") or requests.Session()
        body = {"name": f"Bench Room {i:05d}", "preset": "public_chat" if i % 5 == 0
                else "private_chat"}
        if i % 3 == 0:
            body["room_alias_name"] = f"bench{i:05d}"
        if i % 5 == 0:
            body["visibility"] = "public"
        if i % 7 == 0:
            body["invite"] = [other["user_id"]]
        r = sess.post(s.url + "/_matrix/client/v3/createRoom", json=body,
                      headers={"Authorization": f"Bearer {tok}"}, timeout=60)
        assert r.status_code == 200, r.text
        if i % 7 == 0:
            rid = urllib.parse.quote(r.json()["room_id"])
            r = sess.post(s.url + f"/_matrix/client/v3/rooms/{rid}/join", json={},
                          headers={"Authorization": f"Bearer {other['access_token']}"},
                          timeout=60)
            assert r.status_code == 200, r.text

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(one, range(N)))


def clear_kept(s):
    """Forgets the kept summaries, as on the first start after an upgrade."""
    stmt = "DELETE FROM room_list_pos; DELETE FROM room_list_rooms;"
    if s.engine == "sqlite":
        import sqlite3
        con = sqlite3.connect(os.path.join(s.dir, "homeserver.db"))
        con.executescript(stmt)
        con.close()
    else:
        import psycopg2
        con = psycopg2.connect(s.pg)
        con.cursor().execute(stmt)
        con.commit()
        con.close()


def run(engine):
    s = conftest.Server(engine, modules=["homeserver", "admin"])
    try:
        s.start()
        admin = s.admin_user()
        tok = admin["access_token"]
        other = s.register("benchother")
        for u in (admin["user_id"], other["user_id"]):
            r = s.api("POST", "/_synapse/admin/v1/users/"
                      f"{urllib.parse.quote(u)}/override_ratelimit", tok,
                      {"messages_per_second": 0, "burst_count": 0})
            assert r.status_code == 200, r.text
        t = time.time()
        create_rooms(s, tok, other)
        print(f"[{engine}] created {N} rooms in {time.time() - t:.1f}s", flush=True)
        base = "/_synapse/admin/v1/rooms?limit=100"
        for label, path in [
            ("first page", base),
            ("from=N/2", f"{base}&from={N // 2}"),
            ("order_by=name dir=b", f"{base}&order_by=name&dir=b"),
            ("order_by=joined_members", f"{base}&order_by=joined_members"),
            ("order_by=canonical_alias", f"{base}&order_by=canonical_alias&from={N // 3}"),
            ("order_by=state_events", f"{base}&order_by=state_events"),
            ("search_term", f"{base}&search_term=room%20042"),
            ("search_term, many", f"{base}&search_term=bench&from=1000"),
        ]:
            med, worst, body = timed(s, tok, path)
            print(f"[{engine}] {label:26s} median {med:7.2f} ms  max {worst:7.2f} ms"
                  f"  ({len(body['rooms'])} rooms, total {body['total_rooms']})", flush=True)
        # one page right after a change (the list must show it)
        times = []
        for i in range(10):
            r = s.api("POST", "/_matrix/client/v3/createRoom", tok, {"name": f"Late {i}"})
            assert r.status_code == 200, r.text
            t0 = time.perf_counter()
            b = s.api("GET", f"{base}&search_term=late%20{i}", tok).json()
            times.append((time.perf_counter() - t0) * 1000)
            assert b["total_rooms"] == 1, b
        print(f"[{engine}] {'after a change':26s} median {statistics.median(times):7.2f} ms"
              f"  max {max(times):7.2f} ms", flush=True)
        # the first list after a restart (summaries read from room_list_rooms),
        # then after one without them (the warm-up of a first start)
        for label in ("first call after restart", "first call, no kept rows"):
            s.stop()
            if label.endswith("rows"):
                clear_kept(s)
            t0 = time.perf_counter()
            s.start()
            t1 = time.perf_counter()
            r = s.api("GET", base, tok)
            assert r.status_code == 200 and r.json()["total_rooms"] == N + 10, r.text
            print(f"[{engine}] {label:26s} {(time.perf_counter() - t1) * 1000:7.1f} ms"
                  f"  (start {(t1 - t0) * 1000:.0f} ms)", flush=True)
    finally:
        s.cleanup()


if __name__ == "__main__":
    run("sqlite")
    if os.environ.get("MXSTACK_TEST_PG"):
        run("postgres")
