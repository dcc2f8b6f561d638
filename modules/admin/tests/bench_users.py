#!/usr/bin/env python3
"""
Benchmark (not a test): the admin user list over 100,000 users.

Starts mxstack (homeserver + admin) on SQLite, stops it, inserts N users
(with profiles) in bulk with the sqlite3 CLI, starts it again and times
GET /_synapse/admin/v2/users?limit=100 at several offsets, following a
next_token from a deep page, plus a name filter and orderings.  With MXSTACK_TEST_PG set, does the
same on PostgreSQL (rows inserted with psql).

    MXSTACK_BIN=build/mxstack python3 modules/admin/tests/bench_users.py [N]

Figures (2026-11-23, 2 cores, load average 22-28 from other builds, median
of 20, ms; before -> after user_counts triggers, anchors, name filter):
  PG first page 55.8 -> 12.3, from=N/2 101 -> 12.8, last page 107 -> 14.3,
  next_token 64 -> 16, dir=b 64 -> 14.7, order_by=creation_ts 66 -> 7.4,
  creation_ts from=N/2 124 -> 55, displayname 1050 -> 604 (unchanged code),
  displayname from=N/2 1747 -> 941, name filter 1216 -> 442, many 132 -> 16.
  SQLite first page 2.0 -> 1.8, from=N/2 76 -> 34, last page 130 -> 38,
  next_token 38 -> 31, displayname ~500 (unchanged), name filter 552 -> 365
  (CPU time of the name filter query alone: 50 -> 27 ms).
Order by display name through the trigger-kept `user_dn` table, its index
and (dn, name) anchors/keyset (2026-11-23 06:13-06:32, load average 11-18,
before and after runs concurrent, median of 20, ms): SQLite
  displayname 550 -> 2.4, displayname from=N/2 792 -> 9.8 (the first call
  of a filter builds its anchors: 537 once); name filter unchanged (~200).
  PG (before: the figures above) displayname 604 -> 6.0, displayname
  from=N/2 941 -> 2.8 (anchors built once: 316); name filter 206 (unchanged).
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conftest  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000


def sql_rows(server_name):
    yield "BEGIN;"
    for i in range(N):
        uid = f"@bench{i:06d}:{server_name}"
        yield (f"INSERT INTO users (name, creation_ts) VALUES ('{uid}', {1700000000 + i});")
        yield (f"INSERT INTO profiles (user_id, localpart, displayname) VALUES "
               f"('{uid}', 'bench{i:06d}', 'Bench User {i}');")
    yield "COMMIT;"
    yield "ANALYZE;"


def timed(s, token, path, n=20):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = s.api("GET", path, token)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return statistics.median(times), max(times), r.json()


def run(engine):
    s = conftest.Server(engine, modules=["homeserver", "admin"])
    try:
        s.start()
        admin = s.admin_user()
        s.stop()
        t = time.time()
        script = "\n".join(sql_rows(s.server_name)) + "\n"
        if engine == "sqlite":
            subprocess.run(["sqlite3", f"{s.dir}/homeserver.db"], input=script, text=True,
                           check=True)
        else:
            subprocess.run(["psql", "-q", s.pg], input=script, text=True, check=True,
                           stdout=subprocess.DEVNULL)
        print(f"[{engine}] inserted {N} users in {time.time() - t:.1f}s")
        s.start()
        tok = admin["access_token"]
        for label, path in [
            ("first page", "/_synapse/admin/v2/users?limit=100"),
            ("middle page", f"/_synapse/admin/v2/users?limit=100&from={N // 2}"),
            ("last page", f"/_synapse/admin/v2/users?limit=100&from={N - 50}"),
            ("deep next_token", None),
            ("dir=b", "/_synapse/admin/v2/users?limit=100&dir=b"),
            ("order_by=creation_ts", "/_synapse/admin/v2/users?limit=100&order_by=creation_ts"),
            ("order_by=displayname", "/_synapse/admin/v2/users?limit=100&order_by=displayname"),
            ("creation_ts from=N/2",
             f"/_synapse/admin/v2/users?limit=100&order_by=creation_ts&from={N // 2}"),
            ("displayname from=N/2",
             f"/_synapse/admin/v2/users?limit=100&order_by=displayname&from={N // 2}"),
            ("name filter", "/_synapse/admin/v2/users?limit=100&name=user%204242"),
            ("name filter, many", "/_synapse/admin/v2/users?limit=100&name=bench0&from=5000"),
            ("name filter, many deep",
             f"/_synapse/admin/v2/users?limit=100&name=bench0&from={N // 2}"),
            ("name, none match", "/_synapse/admin/v2/users?limit=100&name=nobody"),
            ("name, by displayname",
             "/_synapse/admin/v2/users?limit=100&name=user%2042&order_by=displayname"),
            ("user_id filter", "/_synapse/admin/v2/users?limit=100&user_id=bench04242"),
        ]:
            if path is None:
                # Following next_token from a deep page (keyset continuation).
                seed = s.api("GET", f"/_synapse/admin/v2/users?limit=100&from={N - 250}", tok)
                path = f"/_synapse/admin/v2/users?limit=100&from={seed.json()['next_token']}"
            med, worst, body = timed(s, tok, path)
            print(f"[{engine}] {label:24s} median {med:7.2f} ms  max {worst:7.2f} ms"
                  f"  ({len(body['users'])} users, total {body['total']})")
    finally:
        s.cleanup()


if __name__ == "__main__":
    run("sqlite")
    if os.environ.get("MXSTACK_TEST_PG"):
        run("postgres")
