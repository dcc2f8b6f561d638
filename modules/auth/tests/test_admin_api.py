"""
MAS's admin API (/api/admin/v1) of the auth module against the real binary:
who may call it (admin users' tokens with urn:mas:admin, configured
client_credentials clients; 401/403 in MAS's error shape otherwise), the flow
Element Admin runs (dynamic registration from a loopback web origin, code +
PKCE with `urn:mas:admin urn:synapse:admin:*`, then both the MAS API and the
Synapse Admin API with the same token, and /_synapse/ess/version), users
(list with filters, count and cursor pages both ways, get, by-username,
create, lock/unlock, deactivate/reactivate, set-admin, set-password),
sessions (OAuth 2.0, browser, compatibility: list, get, finish),
registration tokens and user emails.  SQLite and, with MXSTACK_TEST_PG,
PostgreSQL.
"""
import re

import pytest
import requests

from conftest import it
from test_auth_flow import REDIRECT, Flow, register_client

A = "/api/admin/v1"
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
ELEMENT_ADMIN_SCOPE = ("urn:matrix:org.matrix.msc2967.client:api:* urn:mas:admin "
                       "urn:synapse:admin:*")
CLIENT_ID = "01JCFGADM1NC11ENT000000000"
CLIENT_SECRET = "configured-admin-client-secret"
OTHER_ID = "script-without-rights"
CONFIG = (
    "auth:\n"
    "  delegate_homeserver: true\n"
    "  password_registration_enabled: true\n"
    "  clients:\n"
    f"    - client_id: {CLIENT_ID}\n"
    "      client_auth_method: client_secret_basic\n"
    f"      client_secret: {CLIENT_SECRET}\n"
    f"    - client_id: {OTHER_ID}\n"
    "      client_auth_method: client_secret_post\n"
    f"      client_secret: {CLIENT_SECRET}\n"
    "  policy:\n"
    "    data:\n"
    f"      admin_clients: [{CLIENT_ID}]\n"
)


@pytest.fixture(params=it.engines())
def s(request):
    srv = it.Server(request.param, extra_yaml=CONFIG)
    srv.start()
    yield srv
    srv.cleanup()


def user_token(s, scope=ELEMENT_ADMIN_SCOPE, admin=True):
    """An admin (or not) logs in the way Element Admin makes it."""
    name = ("adm" if admin else "usr") + it.uuid.uuid4().hex[:8]
    s.admin_user(name, "pw12345678", admin=admin)
    client = register_client(s).json()
    f = Flow(s, client, scope=scope)
    r = f.exchange(f.code(name, "pw12345678"))
    assert r.status_code == 200, r.text
    return r.json()["access_token"], name, f


def cc_token(s, client_id=CLIENT_ID, scope="urn:mas:admin"):
    r = requests.post(s.url + "/oauth2/token", data={"grant_type": "client_credentials",
                                                     "scope": scope},
                      auth=(client_id, CLIENT_SECRET), timeout=10)
    if client_id == OTHER_ID:
        r = requests.post(s.url + "/oauth2/token", data={
            "grant_type": "client_credentials", "scope": scope, "client_id": client_id,
            "client_secret": CLIENT_SECRET}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def call(s, token, method, path, body=None, **kw):
    return s.api(method, A + path, token, json_body=body, **kw)


def error_title(r):
    j = r.json()
    assert set(j) == {"errors"} and j["errors"] and "title" in j["errors"][0], j
    return j["errors"][0]["title"]


def create_user(s, tok, name=None):
    name = name or "u" + it.uuid.uuid4().hex[:10]
    r = call(s, tok, "POST", "/users", {"username": name})
    assert r.status_code == 201, r.text
    return r.json()["data"]


# ------------------------------------------------------------------ authz

def test_authentication_and_errors(s):
    r = requests.get(s.url + A + "/users", timeout=10)
    assert r.status_code == 401 and error_title(r) == "Missing authorization header"
    r = call(s, "mat_notatoken", "GET", "/users")
    assert r.status_code == 401 and error_title(r) == "Unknown access token"
    # A user token without urn:mas:admin.
    tok, _, _ = user_token(s, scope="urn:matrix:client:api:*")
    r = call(s, tok, "GET", "/users")
    assert r.status_code == 403 and "urn:mas:admin" in error_title(r)
    # A non-admin asking for admin scopes is refused at the consent step, as
    # MAS's default policy does (no code, no token).
    name = "usr" + it.uuid.uuid4().hex[:8]
    s.admin_user(name, "pw12345678", admin=False)
    f = Flow(s, register_client(s).json(), scope=ELEMENT_ADMIN_SCOPE)
    login = f.login(name, "pw12345678")
    assert login.status_code == 303, login.text
    page = f.browser.get(login.headers["Location"], timeout=10)
    assert page.status_code == 403 and "administrator access" in page.text, page.text
    r = f.browser.post(s.url + "/consent", data={
        "csrf": "x", "grant": login.headers["Location"].split("grant=")[-1], "action": "allow"},
        allow_redirects=False, timeout=10)
    assert r.status_code in (403, 400) and "code=" not in r.headers.get("Location", "")
    # Client credentials: only the clients the policy names.
    # A client the policy does not name cannot even obtain an admin-scoped token.
    r = requests.post(s.url + "/oauth2/token", data={
        "grant_type": "client_credentials", "scope": "urn:mas:admin", "client_id": OTHER_ID,
        "client_secret": CLIENT_SECRET}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope", r.text
    # Without admin scopes it gets a token, which the admin API refuses.
    assert call(s, cc_token(s, OTHER_ID, scope=""), "GET", "/users").status_code == 403
    good = cc_token(s)
    r = call(s, good, "GET", "/users")
    assert r.status_code == 200, r.text
    # A revoked token stops working.
    requests.post(s.url + "/oauth2/revoke", data={"token": good}, auth=(CLIENT_ID, CLIENT_SECRET),
                  timeout=10)
    r = call(s, good, "GET", "/users")
    assert r.status_code == 401 and error_title(r) == "Access token revoked"
    # Errors keep MAS's shape; CORS for browser consoles.
    r = call(s, cc_token(s), "GET", "/users/NOTAULID")
    assert r.status_code == 400 and error_title(r) == "Invalid ULID in path"
    r = requests.options(s.url + A + "/users", headers={
        "Origin": "http://127.0.0.1:9999", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"}, timeout=10)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower()
    r = call(s, cc_token(s), "GET", "/users", headers={"Origin": "http://127.0.0.1:9999"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_element_admin_flow(s):
    """Dynamic registration from http://127.0.0.1:PORT/, code + PKCE with
    Element Admin's scope, then both admin APIs with that one token."""
    reg = register_client(s, client_uri="http://127.0.0.1:8765/", redirect_uris=[REDIRECT])
    assert reg.status_code == 201, reg.text
    tok, name, f = user_token(s)
    me = call(s, tok, "GET", f"/users/by-username/{name}")
    assert me.status_code == 200, me.text
    assert me.json()["data"]["attributes"]["admin"] is True
    r = call(s, tok, "GET", "/users", params={"count": "only"})
    assert r.status_code == 200 and r.json()["meta"]["count"] >= 1 and "data" not in r.json()
    r = call(s, tok, "GET", "/site-config")
    assert r.status_code == 200 and r.json()["server_name"] == s.server_name
    assert r.json()["password_registration_enabled"] is True
    assert call(s, tok, "GET", "/version").json()["version"]
    # The Synapse Admin API accepts the urn:synapse:admin:* scope.
    r = s.api("GET", "/_synapse/admin/v2/users", tok)
    assert r.status_code == 200, r.text
    assert any(u["name"].startswith(f"@{name}:") for u in r.json()["users"])
    r = s.api("GET", "/_synapse/admin/v1/server_version", tok)
    assert r.status_code == 200
    r = s.api("GET", "/_synapse/ess/version", tok)
    assert r.status_code == 200 and r.json()["version"] and "edition" in r.json()
    # Without the Synapse scope the Synapse Admin API refuses.
    tok2, _, _ = user_token(s, scope="urn:matrix:client:api:* urn:mas:admin")
    assert s.api("GET", "/_synapse/admin/v2/users", tok2).status_code == 403
    assert call(s, tok2, "GET", "/users").status_code == 200


# ------------------------------------------------------------------ users

def test_users_pagination_and_count(s):
    tok = cc_token(s)
    made = {create_user(s, tok)["id"] for _ in range(23)}
    total = call(s, tok, "GET", "/users").json()["meta"]["count"]
    assert total >= 23
    seen, url, pages = [], A + "/users?page[first]=10", 0
    while url:
        r = s.api("GET", url, tok)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["meta"]["count"] == total
        for d in doc["data"]:
            assert d["type"] == "user" and ULID.match(d["id"])
            assert d["links"]["self"] == f"{A}/users/{d['id']}"
            assert d["meta"]["page"]["cursor"] == d["id"]
        seen += [d["id"] for d in doc["data"]]
        assert doc["links"]["first"] == A + "/users?page[first]=10"
        assert doc["links"]["last"] == A + "/users?page[last]=10"
        assert "prev" not in doc["links"]
        url = doc["links"].get("next")
        pages += 1
    assert len(seen) == total == len(set(seen)) and seen == sorted(seen)
    assert made <= set(seen) and pages == (total + 9) // 10
    # Backwards from the end, then before a cursor.
    doc = call(s, tok, "GET", "/users", params={"page[last]": 10}).json()
    assert [d["id"] for d in doc["data"]] == seen[-10:]
    assert "next" not in doc["links"] and "prev" in doc["links"]
    prev = s.api("GET", doc["links"]["prev"], tok).json()
    assert [d["id"] for d in prev["data"]] == seen[-20:-10]
    doc = call(s, tok, "GET", "/users", params={"page[after]": seen[4], "page[first]": 3})
    assert [d["id"] for d in doc.json()["data"]] == seen[5:8]
    doc = call(s, tok, "GET", "/users", params={"page[before]": seen[4], "count": "false"})
    assert [d["id"] for d in doc.json()["data"]] == seen[:4] and "meta" not in doc.json()
    assert "count=false" in doc.json()["links"]["self"]
    # Bad pagination.
    r = call(s, tok, "GET", "/users", params={"page[first]": 2, "page[last]": 2})
    assert r.status_code == 400 and "page[first]" in error_title(r)
    for bad in ({"page[first]": 0}, {"page[after]": "nope"}, {"count": "maybe"}):
        r = call(s, tok, "GET", "/users", params=bad)
        assert r.status_code == 400 and error_title(r) == "Invalid pagination parameters"
    r = call(s, tok, "GET", "/users", params={"filter[status]": "sleeping"})
    assert r.status_code == 400


def test_user_actions(s):
    tok = cc_token(s)
    name = "alice" + it.uuid.uuid4().hex[:6]
    u = create_user(s, tok, name)
    uid = u["id"]
    a = u["attributes"]
    assert a["username"] == name and a["admin"] is False and a["legacy_guest"] is False
    assert a["locked_at"] is None and a["deactivated_at"] is None and a["created_at"]
    r = call(s, tok, "POST", "/users", {"username": name})
    assert r.status_code == 409 and error_title(r) == "User already exists"
    assert call(s, tok, "POST", "/users", {"username": "Bad Name!"}).status_code == 400
    assert call(s, tok, "POST", "/users", {}).status_code == 400
    got = call(s, tok, "GET", f"/users/{uid}").json()
    assert got["data"]["id"] == uid and got["links"]["self"] == f"{A}/users/{uid}"
    assert call(s, tok, "GET", f"/users/by-username/{name}").json()["data"]["id"] == uid
    assert call(s, tok, "GET", "/users/by-username/nobody-here").status_code == 404
    assert call(s, tok, "GET", "/users/01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 404
    # Lock / unlock.
    r = call(s, tok, "POST", f"/users/{uid}/lock")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["locked_at"]
    assert r.json()["links"]["self"] == f"{A}/users/{uid}/lock"
    ids = [d["id"] for d in call(s, tok, "GET", "/users",
                                 params={"filter[status]": "locked", "page[first]": 1000})
           .json()["data"]]
    assert uid in ids
    active = call(s, tok, "GET", "/users", params={"filter[status]": "active",
                                                   "page[first]": 1000}).json()
    assert uid not in [d["id"] for d in active["data"]]
    assert "filter[status]=active" in active["links"]["self"]
    r = call(s, tok, "POST", f"/users/{uid}/unlock")
    assert r.json()["data"]["attributes"]["locked_at"] is None
    # Admin flag, visible to the Synapse Admin API too.
    r = call(s, tok, "POST", f"/users/{uid}/set-admin", {"admin": True})
    assert r.status_code == 200 and r.json()["data"]["attributes"]["admin"] is True
    admins = call(s, tok, "GET", "/users", params={"filter[admin]": "true", "page[first]": 1000})
    assert uid in [d["id"] for d in admins.json()["data"]]
    assert all(d["attributes"]["admin"] for d in admins.json()["data"])
    assert call(s, tok, "POST", f"/users/{uid}/set-admin", {}).status_code == 400
    # Password: policy, then a real login with it.
    r = call(s, tok, "POST", f"/users/{uid}/set-password", {"password": "x"})
    assert r.status_code == 400 and error_title(r) == "Password is too weak"
    r = call(s, tok, "POST", f"/users/{uid}/set-password", {"password": "n3w-passw0rd-ok"})
    assert r.status_code == 204
    r = s.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
        "password": "n3w-passw0rd-ok"})
    assert r.status_code == 200, r.text
    # Deactivate / reactivate.
    r = call(s, tok, "POST", f"/users/{uid}/deactivate", {"skip_erase": True})
    assert r.status_code == 200 and r.json()["data"]["attributes"]["deactivated_at"]
    deact = call(s, tok, "GET", "/users", params={"filter[status]": "deactivated"}).json()
    assert uid in [d["id"] for d in deact["data"]]
    r = call(s, tok, "POST", f"/users/{uid}/reactivate")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["deactivated_at"] is None
    assert call(s, tok, "POST", "/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/lock").status_code == 404


# --------------------------------------------------------------- sessions

def test_sessions(s):
    admin_tok = cc_token(s)
    # A user with an OAuth session (and the browser session of its login).
    name = "bob" + it.uuid.uuid4().hex[:6]
    s.admin_user(name, "pw12345678", admin=False)
    f = Flow(s, register_client(s).json())
    tok = f.exchange(f.code(name, "pw12345678")).json()["access_token"]
    assert s.api("GET", "/_matrix/client/v3/account/whoami", tok).status_code == 200
    uid = call(s, admin_tok, "GET", f"/users/by-username/{name}").json()["data"]["id"]

    doc = call(s, admin_tok, "GET", "/oauth2-sessions", params={"filter[user]": uid}).json()
    assert doc["meta"]["count"] == 1
    sess = doc["data"][0]
    assert sess["type"] == "oauth2-session" and ULID.match(sess["id"])
    assert sess["attributes"]["user_id"] == uid and sess["attributes"]["finished_at"] is None
    assert sess["attributes"]["client_id"] == f.client["client_id"]
    assert "urn:matrix:client:api:*" in sess["attributes"]["scope"]
    sid = sess["id"]
    assert call(s, admin_tok, "GET", f"/oauth2-sessions/{sid}").json()["data"]["id"] == sid
    act = call(s, admin_tok, "GET", "/oauth2-sessions",
               params={"filter[user]": uid, "filter[status]": "active"}).json()
    assert [d["id"] for d in act["data"]] == [sid]
    r = call(s, admin_tok, "POST", f"/oauth2-sessions/{sid}/finish")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["finished_at"]
    assert s.api("GET", "/_matrix/client/v3/account/whoami", tok).status_code == 401
    r = call(s, admin_tok, "POST", f"/oauth2-sessions/{sid}/finish")
    assert r.status_code == 400 and "already finished" in error_title(r)
    fin = call(s, admin_tok, "GET", "/oauth2-sessions",
               params={"filter[user]": uid, "filter[status]": "finished"}).json()
    assert [d["id"] for d in fin["data"]] == [sid]
    assert call(s, admin_tok, "GET", "/oauth2-sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV"
                ).status_code == 404
    assert call(s, admin_tok, "GET", "/oauth2-sessions",
                params={"filter[user]": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}).status_code == 404

    # Browser sessions (the login above made one).
    doc = call(s, admin_tok, "GET", "/user-sessions", params={"filter[user]": uid}).json()
    assert doc["meta"]["count"] == 1
    bs = doc["data"][0]
    assert bs["type"] == "user-session" and ULID.match(bs["id"])
    assert bs["attributes"]["user_id"] == uid
    got = call(s, admin_tok, "GET", f"/user-sessions/{bs['id']}")
    assert got.status_code == 200 and got.json()["data"] == {k: v for k, v in bs.items()
                                                               if k != "meta"}
    r = call(s, admin_tok, "POST", f"/user-sessions/{bs['id']}/finish")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["finished_at"]
    # The browser must log in again.
    r = f.authorize()
    assert r.status_code == 302 and "/login" in r.headers["Location"]

    # Compatibility sessions: a legacy password login makes one.
    r = s.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
        "password": "pw12345678"})
    assert r.status_code == 200, r.text
    legacy = r.json()["access_token"]
    doc = call(s, admin_tok, "GET", "/compat-sessions", params={"filter[user]": uid}).json()
    assert doc["meta"]["count"] == 1, doc
    cs = doc["data"][0]
    assert cs["attributes"]["device_id"] == r.json()["device_id"]
    assert cs["attributes"]["user_id"] == uid
    r = call(s, admin_tok, "POST", f"/compat-sessions/{cs['id']}/finish")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["finished_at"]
    assert s.api("GET", "/_matrix/client/v3/account/whoami", legacy).status_code == 401


# ------------------------------------------------------------ tokens, emails

def test_registration_tokens(s):
    tok = cc_token(s)
    r = call(s, tok, "POST", "/user-registration-tokens", {"usage_limit": 2})
    assert r.status_code == 201, r.text
    t1 = r.json()["data"]
    a = t1["attributes"]
    assert t1["type"] == "user-registration_token" and ULID.match(t1["id"])
    assert a["token"] and a["valid"] is True and a["usage_limit"] == 2 and a["times_used"] == 0
    assert a["revoked_at"] is None and a["expires_at"] is None
    r = call(s, tok, "POST", "/user-registration-tokens",
              {"token": "fixed-token-1", "expires_at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 201
    t2 = r.json()["data"]
    assert t2["attributes"]["valid"] is False
    assert t2["attributes"]["expires_at"] == "2020-01-01T00:00:00Z"
    assert call(s, tok, "POST", "/user-registration-tokens",
                {"token": "fixed-token-1"}).status_code == 409
    assert call(s, tok, "POST", "/user-registration-tokens",
                {"expires_at": "yesterday"}).status_code == 400
    assert call(s, tok, "GET", f"/user-registration-tokens/{t1['id']}").json()["data"] == \
        {k: v for k, v in t1.items() if k != "meta"}
    ids = lambda **f: [d["id"] for d in call(s, tok, "GET", "/user-registration-tokens",
                                             params=f).json()["data"]]
    assert ids(**{"filter[valid]": "true"}) == [t1["id"]]
    assert ids(**{"filter[expired]": "true"}) == [t2["id"]]
    r = call(s, tok, "POST", f"/user-registration-tokens/{t1['id']}/revoke")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["revoked_at"]
    assert r.json()["data"]["attributes"]["valid"] is False
    assert call(s, tok, "POST", f"/user-registration-tokens/{t1['id']}/revoke").status_code == 400
    assert ids(**{"filter[revoked]": "true"}) == [t1["id"]]
    r = call(s, tok, "POST", f"/user-registration-tokens/{t1['id']}/unrevoke")
    assert r.status_code == 200 and r.json()["data"]["attributes"]["revoked_at"] is None
    assert call(s, tok, "POST",
                f"/user-registration-tokens/{t1['id']}/unrevoke").status_code == 400
    r = call(s, tok, "PUT", f"/user-registration-tokens/{t2['id']}",
             {"expires_at": None, "usage_limit": 5})
    assert r.status_code == 200
    assert r.json()["data"]["attributes"]["valid"] is True
    assert r.json()["data"]["attributes"]["usage_limit"] == 5
    assert sorted(ids(**{"filter[valid]": "true"})) == sorted([t1["id"], t2["id"]])
    doc = call(s, tok, "GET", "/user-registration-tokens", params={"count": "only"}).json()
    assert doc["meta"]["count"] == 2
    assert call(s, tok, "PUT", "/user-registration-tokens/01ARZ3NDEKTSV4RRFFQ69G5FAV",
                {"usage_limit": 1}).status_code == 404


def test_user_emails(s):
    tok = cc_token(s)
    u = create_user(s, tok)
    r = call(s, tok, "POST", "/user-emails", {"user_id": u["id"], "email": "a@example.org"})
    assert r.status_code == 201, r.text
    e = r.json()["data"]
    assert e["type"] == "user-email" and e["attributes"]["user_id"] == u["id"]
    assert e["attributes"]["email"] == "a@example.org"
    r = call(s, tok, "POST", "/user-emails", {"user_id": u["id"], "email": "a@example.org"})
    assert r.status_code == 409
    assert call(s, tok, "POST", "/user-emails",
                {"user_id": u["id"], "email": "not an email"}).status_code == 400
    assert call(s, tok, "POST", "/user-emails", {"user_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                                 "email": "b@example.org"}).status_code == 404
    doc = call(s, tok, "GET", "/user-emails", params={"filter[user]": u["id"]}).json()
    assert [d["id"] for d in doc["data"]] == [e["id"]] and doc["meta"]["count"] == 1
    assert call(s, tok, "GET", "/user-emails",
                params={"filter[email]": "a@example.org"}).json()["meta"]["count"] == 1
    assert call(s, tok, "DELETE", f"/user-emails/{e['id']}").status_code == 204
    assert call(s, tok, "GET", f"/user-emails/{e['id']}").status_code == 404
    assert call(s, tok, "DELETE", f"/user-emails/{e['id']}").status_code == 404
