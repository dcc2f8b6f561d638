"""
MAS's client filters of the admin API: /oauth2-clients
filter[client-name|client-uri] (case-insensitive substrings),
filter[grant-type], filter[client-kind]; /oauth2-sessions filter[client]
(the client's admin API ID) and filter[client-kind]; /users
filter[active-oauth2-client]; bad values answered 400 in MAS's shape
(scope tokens: `Invalid scope "..." in filter parameters`).  SQLite and,
with MXSTACK_TEST_PG, PostgreSQL.
"""
from conftest import it
from test_admin_api import CLIENT_ID, call, cc_token, error_title, s  # noqa: F401
from test_auth_flow import Flow, register_client

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def ids(s, tok, path, params):
    r = call(s, tok, "GET", path, params=params)
    assert r.status_code == 200, r.text
    return {d["id"] for d in r.json()["data"]}


def test_client_and_session_filters(s):  # noqa: F811
    tok = cc_token(s)
    tag = it.uuid.uuid4().hex[:6]
    a = register_client(s, client_name=f"Test client Alpha Zebra {tag}").json()
    b = register_client(s, client_name=f"Test client Beta {tag}",
                        grant_types=["authorization_code", "refresh_token", DEVICE_GRANT]).json()
    assert "client_id" in a and "client_id" in b, (a, b)
    ca, cb = a["client_id"], b["client_id"]

    assert ids(s, tok, "/oauth2-clients", {"filter[client-name]": f"zebra {tag.upper()}"}) == {ca}
    assert ids(s, tok, "/oauth2-clients", {"filter[client-name]": tag}) == {ca, cb}
    assert ids(s, tok, "/oauth2-clients", {"filter[client-name]": "%"}) == set()
    got = ids(s, tok, "/oauth2-clients", {"filter[client-uri]": "127.0.0.1:8765"})
    assert {ca, cb} <= got
    assert ids(s, tok, "/oauth2-clients", {"filter[client-uri]": "nowhere.example"}) == set()
    dev = ids(s, tok, "/oauth2-clients", {"filter[grant-type]": DEVICE_GRANT})
    assert cb in dev and ca not in dev
    cc = ids(s, tok, "/oauth2-clients", {"filter[grant-type]": "client_credentials"})
    assert CLIENT_ID in cc and ca not in cc
    assert ids(s, tok, "/oauth2-clients", {"filter[grant-type]": "made-up"}) == set()
    both = ids(s, tok, "/oauth2-clients", {"filter[client-name]": tag,
                                           "filter[grant-type]": DEVICE_GRANT})
    assert both == {cb}
    r = call(s, tok, "GET", "/oauth2-clients", params={"filter[client-kind]": "odd"})
    assert r.status_code == 400 and "Invalid filter parameters" in error_title(r)

    # Sessions of one client, by its admin API ID; by kind.
    name = "flt" + it.uuid.uuid4().hex[:6]
    s.admin_user(name, "pw12345678", admin=False)
    f = Flow(s, a)
    assert f.exchange(f.code(name, "pw12345678")).status_code == 200
    uid = call(s, tok, "GET", f"/users/by-username/{name}").json()["data"]["id"]
    sa = ids(s, tok, "/oauth2-sessions", {"filter[client]": ca})
    assert len(sa) == 1
    assert ids(s, tok, "/oauth2-sessions", {"filter[client]": cb}) == set()
    dyn = ids(s, tok, "/oauth2-sessions", {"filter[client-kind]": "dynamic"})
    stat = ids(s, tok, "/oauth2-sessions", {"filter[client-kind]": "static"})
    assert sa <= dyn and not (sa & stat) and stat   # the cc token's session is static
    assert ids(s, tok, "/oauth2-sessions", {"filter[client]": CLIENT_ID,
                                            "filter[client-kind]": "static"}) == stat
    for bad in ({"filter[client]": "not-a-ulid"}, {"filter[client-kind]": "x"}):
        r = call(s, tok, "GET", "/oauth2-sessions", params=bad)
        assert r.status_code == 400 and "Invalid filter parameters" in error_title(r), r.text
    r = call(s, tok, "GET", "/oauth2-sessions", params={"filter[scope]": 'a"b'})
    assert r.status_code == 400 and error_title(r) == 'Invalid scope "a\\"b" in filter parameters'

    # Users with an active session of a client.
    assert ids(s, tok, "/users", {"filter[active-oauth2-client]": ca}) == {uid}
    assert ids(s, tok, "/users", {"filter[active-oauth2-client]": cb}) == set()
    r = call(s, tok, "GET", "/users", params={"filter[active-oauth2-client]": "nope"})
    assert r.status_code == 400 and "Invalid filter parameters" in error_title(r)
    [sid] = sa
    assert call(s, tok, "POST", f"/oauth2-sessions/{sid}/finish").status_code == 200
    assert ids(s, tok, "/users", {"filter[active-oauth2-client]": ca}) == set()
