"""
The admin API's links between sessions and the filters MAS answers 404 or
takes several times: filter[user-session] on /oauth2-sessions and
/compat-sessions (the browser session that authorized an OAuth session,
or the m.login.sso round trip of a compat session; `user_session_id` in
the objects), repeated filter[scope] (every one), filter[client] and
filter[active-oauth2-client] (any one), and filters naming a user, client,
user session or provider that does not exist (404 with MAS's title).
SQLite and, with MXSTACK_TEST_PG, PostgreSQL.
"""
import secrets

import requests

from conftest import it
from test_admin_api import CLIENT_ID, call, cc_token, error_title, s  # noqa: F401
from test_auth_flow import API, Flow, register_client
from test_auth_flows_more import client as device_client
from test_auth_flows_more import device_answer, device_start, login, poll
from test_compat import password_login, sso_round_trip

NOBODY = "01ARZ3NDEKTSV4RRFFQ69G5FAV"   # a ULID of nothing


def ids(s, tok, path, params):
    r = call(s, tok, "GET", path, params=params)
    assert r.status_code == 200, r.text
    return {d["id"]: d["attributes"] for d in r.json()["data"]}


def not_found(s, tok, path, params, title):
    r = call(s, tok, "GET", path, params=params)
    assert r.status_code == 404, r.text
    assert error_title(r) == title


def user(s, tok):
    name = "lnk" + secrets.token_hex(4)
    s.admin_user(name, "pw12345678", admin=False)
    uid = call(s, tok, "GET", f"/users/by-username/{name}").json()["data"]["id"]
    return name, uid


def oauth_login(s, client, name):
    """One browser logs in and approves: (browser session ID, OAuth session ID)."""
    f = Flow(s, client)
    r = f.exchange(f.code(name, "pw12345678"))
    assert r.status_code == 200, r.text
    return f


def test_user_session_links(s):  # noqa: F811
    tok = cc_token(s)
    client = register_client(s).json()
    name, uid = user(s, tok)
    oauth_login(s, client, name)
    browsers = ids(s, tok, "/user-sessions", {"filter[user]": uid})
    sessions = ids(s, tok, "/oauth2-sessions", {"filter[user]": uid})
    assert len(browsers) == 1 and len(sessions) == 1
    [b1], [o1] = browsers, sessions
    assert sessions[o1]["user_session_id"] == b1
    # A second browser: its own browser session and OAuth session.
    oauth_login(s, client, name)
    sessions = ids(s, tok, "/oauth2-sessions", {"filter[user]": uid})
    [o2] = set(sessions) - {o1}
    b2 = sessions[o2]["user_session_id"]
    assert b2 and b2 != b1 and b2 in ids(s, tok, "/user-sessions", {"filter[user]": uid})
    assert set(ids(s, tok, "/oauth2-sessions", {"filter[user-session]": b1})) == {o1}
    assert set(ids(s, tok, "/oauth2-sessions", {"filter[user-session]": b2})) == {o2}
    got = call(s, tok, "GET", f"/oauth2-sessions/{o2}").json()["data"]["attributes"]
    assert got["user_session_id"] == b2
    # Combined with other filters; links keep the filter.
    r = call(s, tok, "GET", "/oauth2-sessions", params={"filter[user-session]": b1,
                                                        "filter[status]": "finished"})
    assert r.status_code == 200 and r.json()["data"] == []
    assert "filter[user-session]=" + b1 in r.json()["links"]["self"]

    # Compat sessions: through m.login.sso, linked; a password login, not.
    user_id = f"@{name}:{s.server_name}"
    token, _, _ = sso_round_trip(s, user_id, "pw12345678")
    r = s.api("POST", "/_matrix/client/v3/login", json_body={"type": "m.login.token",
                                                            "token": token})
    assert r.status_code == 200, r.text
    assert password_login(s, user_id, "pw12345678").status_code == 200
    compat = ids(s, tok, "/compat-sessions", {"filter[user]": uid})
    assert len(compat) == 2
    linked = {k: v for k, v in compat.items() if v["user_session_id"]}
    [c1] = linked
    assert linked[c1]["redirect_uri"] == "http://127.0.0.1:9999/done?x=1"
    b3 = linked[c1]["user_session_id"]
    assert b3 not in (b1, b2) and b3 in ids(s, tok, "/user-sessions", {"filter[user]": uid})
    [unlinked] = set(compat) - {c1}
    assert compat[unlinked]["redirect_uri"] is None
    assert set(ids(s, tok, "/compat-sessions", {"filter[user-session]": b3})) == {c1}
    assert ids(s, tok, "/compat-sessions", {"filter[user-session]": b1}) == {}
    # The SSO round trip went through an internal OAuth client: no OAuth session.
    assert ids(s, tok, "/oauth2-sessions", {"filter[user-session]": b3}) == {}

    # Unknown and malformed user session IDs, as MAS answers them.
    for path in ("/oauth2-sessions", "/compat-sessions"):
        not_found(s, tok, path, {"filter[user-session]": NOBODY},
                  f"User session ID {NOBODY} not found")
        r = call(s, tok, "GET", path, params={"filter[user-session]": "not-a-ulid"})
        assert r.status_code == 400 and "Invalid filter parameters" in error_title(r)


def test_device_code_session_link(s):  # noqa: F811
    tok = cc_token(s)
    name, uid = user(s, tok)
    browser, r = login(s, name, "pw12345678")
    assert r.status_code == 200 and "Signed in" in r.text, r.text
    [b] = ids(s, tok, "/user-sessions", {"filter[user]": uid})
    c = device_client(s)
    da = device_start(s, c)
    assert device_answer(s, browser, da["user_code"]).status_code == 200
    r = poll(s, c, da["device_code"])
    assert r.status_code == 200, r.text
    [o] = sessions = ids(s, tok, "/oauth2-sessions", {"filter[client]": c["client_id"]})
    assert sessions[o]["user_session_id"] == b
    assert set(ids(s, tok, "/oauth2-sessions", {"filter[user-session]": b})) == {o}


def test_repeated_filters(s):  # noqa: F811
    tok = cc_token(s)
    ca = register_client(s).json()["client_id"]
    cb = register_client(s).json()["client_id"]
    cc = register_client(s).json()["client_id"]
    name_a, uid_a = user(s, tok)
    name_b, uid_b = user(s, tok)
    f = oauth_login(s, {"client_id": ca}, name_a)
    oauth_login(s, {"client_id": cb}, name_b)
    [sa] = ids(s, tok, "/oauth2-sessions", {"filter[client]": ca})
    [sb] = ids(s, tok, "/oauth2-sessions", {"filter[client]": cb})

    # filter[client] repeated: sessions of any of them.
    both = [("filter[client]", ca), ("filter[client]", cb)]
    assert set(ids(s, tok, "/oauth2-sessions", both)) == {sa, sb}
    assert set(ids(s, tok, "/oauth2-sessions", both + [("filter[client]", cc)])) == {sa, sb}
    r = call(s, tok, "GET", "/oauth2-sessions", params=both + [("count", "only")])
    assert r.json()["meta"]["count"] == 2
    self_link = r.json()["links"]["self"]
    assert f"filter[client]={ca}" in self_link and f"filter[client]={cb}" in self_link

    # filter[scope] repeated: sessions carrying every one of them.
    dev = f"urn:matrix:client:device:{f.device}"
    mine = [("filter[client]", ca), ("filter[client]", cb)]
    assert set(ids(s, tok, "/oauth2-sessions",
                   mine + [("filter[scope]", "openid"), ("filter[scope]", dev)])) == {sa}
    assert set(ids(s, tok, "/oauth2-sessions",
                   mine + [("filter[scope]", "openid"), ("filter[scope]", API)])) == {sa, sb}
    assert ids(s, tok, "/oauth2-sessions",
               mine + [("filter[scope]", dev), ("filter[scope]", "urn:mas:admin")]) == {}
    # LIKE's wildcards are plain characters in a scope token.
    assert ids(s, tok, "/oauth2-sessions", mine + [("filter[scope]", "urn:matrix:client:api:%")]) == {}
    assert ids(s, tok, "/oauth2-sessions", mine + [("filter[scope]", "o_enid")]) == {}
    r = call(s, tok, "GET", "/oauth2-sessions",
             params=[("filter[scope]", "openid"), ("filter[scope]", 'x"y')])
    assert r.status_code == 400 and error_title(r) == 'Invalid scope "x\\"y" in filter parameters'

    # filter[active-oauth2-client] repeated: users with a session of any.
    users = ids(s, tok, "/users", [("filter[active-oauth2-client]", ca),
                                   ("filter[active-oauth2-client]", cb)])
    assert set(users) == {uid_a, uid_b}
    assert set(ids(s, tok, "/users", [("filter[active-oauth2-client]", cb),
                                      ("filter[active-oauth2-client]", cc)])) == {uid_b}

    # Personal sessions: repeated filter[scope] too.
    r = call(s, tok, "POST", "/personal-sessions", {
        "actor_user_id": uid_a, "human_name": "two scopes",
        "scope": f"urn:matrix:client:api:* {dev}"})
    assert r.status_code == 201, r.text
    ps = r.json()["data"]["id"]
    assert ps in ids(s, tok, "/personal-sessions", [("filter[scope]", API),
                                                    ("filter[scope]", dev)])
    assert ps not in ids(s, tok, "/personal-sessions", [("filter[scope]", API),
                                                        ("filter[scope]", "urn:mas:admin")])


def test_filters_naming_nothing(s):  # noqa: F811
    tok = cc_token(s)
    ca = register_client(s).json()["client_id"]
    _, uid = user(s, tok)
    client = f"Client ID {NOBODY} not found"
    usr = f"User ID {NOBODY} not found"
    not_found(s, tok, "/oauth2-sessions", {"filter[client]": NOBODY}, client)
    not_found(s, tok, "/oauth2-sessions", [("filter[client]", ca), ("filter[client]", NOBODY)],
              client)
    not_found(s, tok, "/users", {"filter[active-oauth2-client]": NOBODY}, client)
    not_found(s, tok, "/personal-sessions", {"filter[owner_client]": NOBODY}, client)
    for path in ("/oauth2-sessions", "/compat-sessions", "/user-sessions", "/user-emails",
                 "/upstream-oauth-links"):
        not_found(s, tok, path, {"filter[user]": NOBODY}, usr)
    for f in ("filter[owner_user]", "filter[actor_user]"):
        not_found(s, tok, "/personal-sessions", {f: NOBODY}, usr)
    not_found(s, tok, "/upstream-oauth-links", {"filter[provider]": NOBODY},
              f"Provider ID {NOBODY} not found")
    # Existing ones answer 200, a configured client's ID too.
    assert call(s, tok, "GET", "/oauth2-sessions",
                params={"filter[client]": CLIENT_ID}).status_code == 200
    assert call(s, tok, "GET", "/personal-sessions",
                params={"filter[owner_client]": CLIENT_ID}).status_code == 200
    assert call(s, tok, "GET", "/personal-sessions",
                params={"filter[actor_user]": uid}).status_code == 200
    r = call(s, tok, "GET", "/personal-sessions", params={"filter[owner_client]": "nope"})
    assert r.status_code == 400 and "Invalid filter parameters" in error_title(r)
    assert requests.get(s.url + "/api/admin/v1/users", timeout=10).status_code == 401
