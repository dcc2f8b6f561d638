"""
The user list's text filters, answered from the admin service's in-memory
index (svc_uindex.c), give exactly what Synapse's SQL gives — `name`: the
user ID between '@' and the last ':' (LIKE '@%term%:%') or the display
name, `user_id`: anywhere in the user ID, both case-insensitive — with
every flag filter, ordering, direction and page, on SQLite and PostgreSQL;
and the index (and the cached positions of deep pages) follow every path
that changes users: client profile API renames, registrations, admin
writes, and direct SQL while the server runs (updates, inserts, deletes).
"""
import urllib.parse

import pytest

from test_admin_maint import engines, sql  # shared helpers

V2 = "/_synapse/admin/v2"
N = 2400


def _insert(s, users, profiles):
    if s.engine == "sqlite":
        sql_many = "INSERT INTO users (name, creation_ts, deactivated, is_guest, locked, admin)" \
                   " VALUES (?, ?, ?, ?, ?, ?)"
        import sqlite3
        import os
        con = sqlite3.connect(os.path.join(s.dir, "homeserver.db"))
        con.executemany(sql_many, users)
        con.executemany("INSERT INTO profiles (user_id, localpart, displayname) VALUES (?, ?, ?)",
                        profiles)
        con.commit()
        con.close()
        return
    import psycopg2
    con = psycopg2.connect(s.pg)
    cur = con.cursor()
    cur.executemany("INSERT INTO users (name, creation_ts, deactivated, is_guest, locked, admin)"
                    " VALUES (%s, %s, %s, %s, %s, %s)", users)
    cur.executemany("INSERT INTO profiles (user_id, localpart, displayname) VALUES (%s, %s, %s)",
                    profiles)
    con.commit()
    con.close()


DNS = ["Person {i}", "ALICE {i}", "bob_{i}", "100% {i}", "x_y {i}", "Zed-{i}", "émile {i}"]


@pytest.fixture(params=engines())
def hs(request, make_server):
    s = make_server(request.param, modules=["homeserver", "admin"])
    s.start()
    s.admin = s.admin_user()
    s.stop()
    users, profiles = [], []
    for i in range(N):
        lp = f"ix{(i * 7919) % N:05d}" + ("_a" if i % 11 == 0 else "")
        uid = f"@{lp}:{s.server_name}"
        users.append((uid, 1700000000 + (i * 37) % 1000, 1 if i % 10 == 0 else 0,
                      1 if i % 13 == 0 else 0, 1 if i % 17 == 0 else 0, 1 if i % 19 == 0 else 0))
        if i % 4:
            profiles.append((uid, lp, DNS[i % len(DNS)].format(i=i)))
    _insert(s, users, profiles)
    s.start()
    return s


def page(s, query):
    r = s.api("GET", f"{V2}/users?{query}", s.admin["access_token"])
    assert r.status_code == 200, r.text
    return r.json()


def names(body):
    return [u["name"] for u in body["users"]]


def like(term):
    return term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


ORDERS = {"name": ["u.name"], "displayname": ["COALESCE(p.displayname, '')", "u.name"],
          "creation_ts": ["u.creation_ts", "u.name"]}


def expected(s, flags, term, by_id=False, order="name", desc=False):
    """Synapse's query for the filter (ASCII terms: LIKE on both engines)."""
    cond = ("lower(u.name) LIKE ? ESCAPE '\\'" if by_id else
            "(lower(u.name) LIKE ? ESCAPE '\\' OR lower(p.displayname) LIKE ? ESCAPE '\\')")
    params = ([f"%{like(term)}%"] if by_id else [f"@%{like(term)}%:%", f"%{like(term)}%"])
    d = " DESC" if desc else ""
    ordsql = ", ".join(c + d for c in ORDERS[order])
    rows = sql(s, "SELECT u.name FROM users u LEFT JOIN profiles p ON p.user_id = u.name"
                  f" WHERE {flags} AND {cond} ORDER BY {ordsql}", params)
    return [r[0] for r in rows]


FLAGS = {
    "": "u.deactivated = 0 AND u.locked = 0",
    "&deactivated=true": "u.locked = 0",
    "&guests=false": "u.deactivated = 0 AND u.locked = 0 AND u.is_guest = 0",
    "&admins=true&locked=true": "u.deactivated = 0 AND u.admin = 1",
    "&admins=false": "u.deactivated = 0 AND u.locked = 0 AND u.admin = 0",
}


def check(s, q, want, limit=100, froms=(0,)):
    for frm in froms:
        b = page(s, f"limit={limit}&from={frm}&{q}")
        assert names(b) == want[frm:frm + limit], (q, frm)
        assert b["total"] == len(want), q
        assert ("next_token" in b) == (frm + limit < len(want)), (q, frm)


def test_name_filter_equals_synapse_sql(hs):
    terms = ["ix001", "IX00", "localhost", "person 1", "ALICE 2", "bob_1", "%", "100%", "_a",
             "x_y", ":", "@ix0", "zed-", "nobody-matches", "e"]
    for term in terms:
        qt = urllib.parse.quote(term)
        for fq, flags in FLAGS.items():
            want = expected(hs, flags, term)
            check(hs, f"name={qt}{fq}", want, froms=(0, 100, max(0, len(want) - 40)))
        want = expected(hs, FLAGS[""], term, desc=True)
        check(hs, f"name={qt}&dir=b", want, froms=(0, 150))
        for order in ("displayname", "creation_ts"):
            for desc in (False, True):
                want = expected(hs, FLAGS[""], term, order=order, desc=desc)
                check(hs, f"name={qt}&order_by={order}" + ("&dir=b" if desc else ""), want,
                      limit=70, froms=(0, 70, max(0, len(want) - 20)))
        for fq, flags in list(FLAGS.items())[:3]:
            want = expected(hs, flags, term, by_id=True)
            check(hs, f"user_id={qt}{fq}", want, froms=(0, 100))
    # a large match set ordered by something else than the user ID
    want = expected(hs, FLAGS["&deactivated=true"], "localhost", order="creation_ts")
    assert len(want) > 2000
    check(hs, "name=localhost&deactivated=true&order_by=creation_ts", want, froms=(0, 1000))


def test_name_filter_folds_non_ascii_case(hs):
    want = sorted(r[0] for r in sql(hs, "SELECT u.name FROM users u JOIN profiles p ON"
                                        " p.user_id = u.name WHERE u.deactivated = 0 AND"
                                        " u.locked = 0 AND p.displayname LIKE 'émile%'"))
    assert want
    for term in ("ÉMILE", "émile", "Émile 6"):
        b = page(hs, f"limit=1000&name={urllib.parse.quote(term)}")
        got = names(b)
        assert set(got) <= set(want) and got == sorted(got)
        if term != "Émile 6":
            assert got == want


def test_index_follows_every_path(hs):
    tok = hs.admin["access_token"]
    # direct SQL while the server runs: rename, insert (with profile), delete
    victim = expected(hs, FLAGS[""], "person 1")[3]
    sql(hs, "UPDATE profiles SET displayname = 'Quokka Direct' WHERE user_id = ?", (victim,))
    assert names(page(hs, "name=quokka")) == [victim]
    newu = f"@ixnew:{hs.server_name}"
    sql(hs, "INSERT INTO users (name, creation_ts) VALUES (?, 1)", (newu,))
    sql(hs, "INSERT INTO profiles (user_id, localpart, displayname) VALUES (?, 'ixnew',"
            " 'Wombat')", (newu,))
    assert names(page(hs, "name=wombat")) == [newu]
    assert newu in names(page(hs, "name=ixne"))
    gone = expected(hs, FLAGS[""], "ix00")[5]
    sql(hs, "DELETE FROM profiles WHERE user_id = ?", (gone,))
    sql(hs, "DELETE FROM users WHERE name = ?", (gone,))
    want = expected(hs, FLAGS[""], "ix00")
    assert gone not in want
    check(hs, "name=ix00", want, froms=(0, 100))
    # registration, client profile rename, admin deactivation
    u = hs.register("ixclient")
    r = hs.api("PUT", f"/_matrix/client/v3/profile/{urllib.parse.quote(u['user_id'])}"
                      "/displayname", u["access_token"], {"displayname": "Numbat Client"})
    assert r.status_code == 200, r.text
    assert names(page(hs, "name=NUMBAT")) == [u["user_id"]]
    r = hs.api("POST", f"/_synapse/admin/v1/deactivate/{urllib.parse.quote(u['user_id'])}",
               tok, {})
    assert r.status_code == 200, r.text
    assert page(hs, "name=ixclient")["total"] == 0
    assert page(hs, "name=ixclient&deactivated=true")["total"] == 1


def test_deep_displayname_offsets_follow_client_renames(hs):
    """Anchors (every 1000th position) of order_by=displayname are dropped
    as soon as a user renames through the client profile API."""
    u = hs.register("ixrenamer")

    def want():
        return [r[0] for r in sql(
            hs, "SELECT u.name FROM users u LEFT JOIN profiles p ON p.user_id = u.name"
                " WHERE u.deactivated = 0 AND u.locked = 0"
                " ORDER BY COALESCE(p.displayname, ''), u.name")]

    def check_deep():
        w = want()
        for frm in (1000, 1100, 1900):
            b = page(hs, f"limit=100&from={frm}&order_by=displayname")
            assert names(b) == w[frm:frm + 100], frm
        return w

    before = check_deep()  # builds and keeps the anchors
    for dn in ("AAAA first", "zzzz last", "Person 1500x"):
        r = hs.api("PUT", f"/_matrix/client/v3/profile/{urllib.parse.quote(u['user_id'])}"
                          "/displayname", u["access_token"], {"displayname": dn})
        assert r.status_code == 200, r.text
        after = check_deep()
        assert after != before
        before = after
    # and by a direct write too
    sql(hs, "UPDATE profiles SET displayname = '0 first' WHERE user_id = ?", (u["user_id"],))
    assert check_deep() != before
