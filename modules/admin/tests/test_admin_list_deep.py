"""
The user list's fast paths give exactly what plain SQL gives: over 2,500
users inserted directly, raw `from=N` offsets past the 1000-row anchors
(both directions, with a filter), `total` from the trigger-kept
`user_counts` (also after the API deactivates, locks and makes an admin,
and after a direct insert), and the name filter (user ID or display
name, case-insensitive), on SQLite and PostgreSQL.
"""
import os
import sqlite3
import urllib.parse

import pytest

from test_admin_maint import engines, sql  # shared helpers

V2 = "/_synapse/admin/v2"
N = 2500


@pytest.fixture(params=engines())
def hs(request, make_server):
    s = make_server(request.param, modules=["homeserver", "admin"])
    s.start()
    s.admin = s.admin_user()
    s.stop()
    rows = []
    for i in range(N):
        uid = f"@deep{(i * 7919) % N:05d}:{s.server_name}"
        rows.append((uid, 1700000000 + i, 1 if i % 10 == 0 else 0))
    if s.engine == "sqlite":
        con = sqlite3.connect(os.path.join(s.dir, "homeserver.db"))
        con.executemany("INSERT INTO users (name, creation_ts, deactivated) VALUES (?, ?, ?)",
                        rows)
        con.executemany("INSERT INTO profiles (user_id, localpart, displayname) VALUES (?, ?, ?)",
                        [(r[0], r[0][1:10], f"Deep Person {j}") for j, r in enumerate(rows)
                         if j % 3])
        con.commit()
        con.close()
    else:
        import psycopg2
        con = psycopg2.connect(s.pg)
        cur = con.cursor()
        cur.executemany("INSERT INTO users (name, creation_ts, deactivated) VALUES (%s, %s, %s)",
                        rows)
        cur.executemany("INSERT INTO profiles (user_id, localpart, displayname)"
                        " VALUES (%s, %s, %s)",
                        [(r[0], r[0][1:10], f"Deep Person {j}") for j, r in enumerate(rows)
                         if j % 3])
        con.commit()
        con.close()
    s.start()
    return s


def page(s, query):
    r = s.api("GET", f"{V2}/users?{query}", s.admin["access_token"])
    assert r.status_code == 200, r.text
    return r.json()


def names(body):
    return [u["name"] for u in body["users"]]


def test_raw_offsets_and_totals_match_sql(hs):
    active = [r[0] for r in sql(hs, "SELECT name FROM users WHERE deactivated = 0 AND"
                                    " is_guest = 0 AND locked = 0 ORDER BY name")]
    everyone = [r[0] for r in sql(hs, "SELECT name FROM users WHERE is_guest = 0 AND"
                                      " locked = 0 ORDER BY name")]
    assert len(active) > 2000
    for frm in (0, 999, 1000, 1001, 1999, 2100, len(active) - 5, len(active) + 3):
        b = page(hs, f"limit=100&from={frm}")
        assert names(b) == active[frm:frm + 100], frm
        assert b["total"] == len(active)
        b = page(hs, f"limit=100&from={frm}&dir=b")
        assert names(b) == active[::-1][frm:frm + 100], frm
        b = page(hs, f"limit=50&from={frm}&deactivated=true")
        assert names(b) == everyone[frm:frm + 50], frm
        assert b["total"] == len(everyone)
    # next_token walk from a deep raw offset continues exactly
    b = page(hs, "limit=100&from=1500")
    b2 = page(hs, f"limit=100&from={b['next_token']}")
    assert names(b2) == active[1600:1700]

    # the counters follow the API's writes and direct inserts
    tok = hs.admin["access_token"]
    victim = active[1234]
    r = hs.api("POST", f"/_synapse/admin/v1/deactivate/{urllib.parse.quote(victim)}", tok, {})
    assert r.status_code == 200, r.text
    b = page(hs, "limit=100&from=1200")
    assert b["total"] == len(active) - 1
    assert names(b) == [n for n in active if n != victim][1200:1300]
    locked = active[10]
    r = hs.api("PUT", f"{V2}/users/{urllib.parse.quote(locked)}", tok, {"locked": True})
    assert r.status_code == 200, r.text
    assert page(hs, "limit=1")["total"] == len(active) - 2
    assert page(hs, "limit=1&locked=true")["total"] == len(active) - 1
    r = hs.api("PUT", f"{V2}/users/{urllib.parse.quote(active[20])}", tok, {"admin": True})
    assert r.status_code == 200, r.text
    assert page(hs, "limit=1&admins=true")["total"] == 2  # with the test's own admin
    assert page(hs, "limit=1&admins=false")["total"] == len(active) - 4


def test_name_filter_matches_ids_and_display_names(hs):
    want = sorted(r[0] for r in sql(
        hs, "SELECT u.name FROM users u LEFT JOIN profiles p ON p.user_id = u.name"
            " WHERE u.deactivated = 0 AND (lower(u.name) LIKE '%deep001%'"
            " OR lower(p.displayname) LIKE '%deep001%')"))
    assert want
    b = page(hs, "limit=100&name=DEEP001")
    assert names(b) == want and b["total"] == len(want)
    want = sorted(r[0] for r in sql(
        hs, "SELECT u.name FROM users u JOIN profiles p ON p.user_id = u.name"
            " WHERE u.deactivated = 0 AND p.displayname LIKE '%Person 12%'"))
    b = page(hs, "limit=1000&name=person%2012")
    assert names(b) == want and b["total"] == len(want)


def test_displayname_order_matches_sql(hs):
    """order_by=displayname walks the trigger-kept `user_dn`: same rows as
    the plain join (no profile or no name sorts as '', ties by user ID),
    also after the API renames, deactivates and a profile is deleted."""
    def want(extra=""):
        return [r[0] for r in sql(
            hs, "SELECT u.name FROM users u LEFT JOIN profiles p ON p.user_id = u.name"
                " WHERE u.is_guest = 0 AND u.locked = 0" + extra +
                " ORDER BY COALESCE(p.displayname, ''), u.name")]

    def check():
        active, everyone = want(" AND u.deactivated = 0"), want()
        for frm in (0, 700, 1650, len(active) - 30):
            b = page(hs, f"limit=100&from={frm}&order_by=displayname")
            assert names(b) == active[frm:frm + 100], frm
            assert b["total"] == len(active)
            b = page(hs, f"limit=100&from={frm}&order_by=displayname&dir=b")
            assert names(b) == active[::-1][frm:frm + 100], frm
            b = page(hs, f"limit=60&from={frm}&order_by=displayname&deactivated=true")
            assert names(b) == everyone[frm:frm + 60], frm
        b = page(hs, "limit=100&from=1500&order_by=displayname&dir=b")
        b = page(hs, f"limit=100&from={b['next_token']}&order_by=displayname&dir=b")
        assert names(b) == active[::-1][1600:1700]
        b = page(hs, "limit=1000&order_by=displayname&name=person%2012")
        assert names(b) == [n for n in active if n in set(names(b))]
        return active

    active = check()
    tok = hs.admin["access_token"]
    for uid, dn in ((active[5], "Aaa first"), (active[1500], "zzz last"), (active[900], "")):
        r = hs.api("PUT", f"{V2}/users/{urllib.parse.quote(uid)}", tok, {"displayname": dn})
        assert r.status_code == 200, r.text
    r = hs.api("POST", f"/_synapse/admin/v1/deactivate/{urllib.parse.quote(active[77])}", tok, {})
    assert r.status_code == 200, r.text
    sql(hs, f"DELETE FROM profiles WHERE user_id = '{active[2000]}'")
    after = check()
    assert after[-1] == active[1500]
    assert max(after.index(active[900]), after.index(active[2000])) < after.index(active[5])
