"""
Homeserver requests record the session's last activity (MAS's
last_active_at, last_active_ip, user_agent in the admin API): the
homeserver passes the client address and User-Agent to `auth.token`
(validate_req), the auth module writes them with the lookup that misses its
cache and then at most once a minute per token.  Compatibility and OAuth
2.0 sessions, SQLite and (with MXSTACK_TEST_PG) PostgreSQL.
"""
import time

from conftest import it
from test_admin_api import call, cc_token, s  # noqa: F401 (fixture)
from test_auth_flow import Flow, register_client


def attrs_when(s, admin_tok, path, uid, pred, timeout=5):
    """The first session's attributes once `pred` holds (writes are async)."""
    deadline = time.time() + timeout
    while True:
        doc = call(s, admin_tok, "GET", path, params={"filter[user]": uid}).json()
        a = doc["data"][0]["attributes"]
        if pred(a) or time.time() > deadline:
            return a
        time.sleep(0.1)


def whoami(s, tok, agent):
    r = s.api("GET", "/_matrix/client/v3/account/whoami", tok, headers={"User-Agent": agent})
    assert r.status_code == 200, r.text


def test_homeserver_requests_record_ip_and_agent(s):  # noqa: F811
    admin_tok = cc_token(s)
    name = "act" + it.uuid.uuid4().hex[:6]
    s.admin_user(name, "pw12345678", admin=False)
    uid = call(s, admin_tok, "GET", f"/users/by-username/{name}").json()["data"]["id"]

    # Compatibility session: legacy login, then a request with its agent.
    r = s.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
        "password": "pw12345678"})
    assert r.status_code == 200, r.text
    compat = r.json()["access_token"]
    whoami(s, compat, "CompatClient/1.0")
    a = attrs_when(s, admin_tok, "/compat-sessions", uid,
                   lambda a: a["user_agent"] == "CompatClient/1.0")
    assert a["user_agent"] == "CompatClient/1.0", a
    assert a["last_active_ip"] == "127.0.0.1" and a["last_active_at"], a
    # Within the minute the cached token records nothing new.
    whoami(s, compat, "Other/2.0")
    time.sleep(0.5)
    a = attrs_when(s, admin_tok, "/compat-sessions", uid, lambda a: True)
    assert a["user_agent"] == "CompatClient/1.0", a

    # OAuth 2.0 session.
    f = Flow(s, register_client(s).json())
    tok = f.exchange(f.code(name, "pw12345678")).json()["access_token"]
    whoami(s, tok, "OAuthClient/3.1 (test)")
    a = attrs_when(s, admin_tok, "/oauth2-sessions", uid,
                   lambda a: a["user_agent"] == "OAuthClient/3.1 (test)")
    assert a["user_agent"] == "OAuthClient/3.1 (test)", a
    assert a["last_active_ip"] == "127.0.0.1" and a["last_active_at"], a
