"""
The auth module's compatibility layer against the real binary, with the
homeserver delegating to it (MSC3861): GET/POST /login (m.login.password,
m.login.sso through the OAuth flow, m.login.token), compat sessions and
their "mct_"/"mcr_" tokens, /refresh, /logout, /logout/all, Synapse's
delegated /register, shared-secret registration still working, and the
negative cases.  A real client (matrix-nio) logs in through it too.
"""
import asyncio
import re
import secrets
import subprocess
import urllib.parse

import pytest
import requests

from conftest import it
from test_auth_flow import form_field, register_client, whoami

LOGIN = "/_matrix/client/v3/login"


def password_login(s, user, password, **extra):
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password}
    body.update(extra)
    return s.api("POST", LOGIN, json_body=body)


def new_user(s, admin=False):
    u = s.admin_user("c" + secrets.token_hex(5), "pw-Compat-12345", admin=admin)
    return u["user_id"], u["password"]


def test_login_flows(auth_server):
    r = auth_server.api("GET", LOGIN)
    assert r.status_code == 200
    flows = {f["type"]: f for f in r.json()["flows"]}
    assert set(flows) == {"m.login.password", "m.login.sso", "m.login.token"}
    sso = flows["m.login.sso"]
    assert sso["delegated_oidc_compatibility"] is True
    assert sso["org.matrix.msc3824.delegated_oidc_compatibility"] is True
    assert sso["oauth_aware_preferred"] is True


def test_password_login_creates_compat_session(auth_server):
    s = auth_server
    user_id, pw = new_user(s)
    r = password_login(s, user_id, pw, initial_device_display_name="Compat phone")
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["user_id"] == user_id and b["access_token"].startswith("mct_")
    assert b["home_server"] == s.server_name
    assert b["well_known"]["m.homeserver"]["base_url"] == s.url + "/"
    assert "refresh_token" not in b
    w = whoami(s, b["access_token"])
    assert w.status_code == 200 and w.json()["user_id"] == user_id
    assert w.json()["device_id"] == b["device_id"]
    devs = s.api("GET", "/_matrix/client/v3/devices", b["access_token"]).json()["devices"]
    mine = [d for d in devs if d["device_id"] == b["device_id"]]
    assert mine and mine[0]["display_name"] == "Compat phone"
    # The localpart alone works too, with a chosen device ID; logging in
    # again on that device ends the earlier session.
    local = user_id.split(":")[0][1:]
    a = password_login(s, local, pw, device_id="MYDEVICE").json()
    assert a["device_id"] == "MYDEVICE"
    b2 = password_login(s, local, pw, device_id="MYDEVICE").json()
    assert whoami(s, b2["access_token"]).status_code == 200
    assert whoami(s, a["access_token"]).status_code == 401
    # Not an admin: no Synapse admin rights.
    r = s.api("GET", f"/_synapse/admin/v2/users/{user_id}", b["access_token"])
    assert r.status_code == 403


def test_password_login_errors(auth_server):
    s = auth_server
    user_id, pw = new_user(s)
    assert password_login(s, user_id, "wrong-password").json()["errcode"] == "M_FORBIDDEN"
    assert password_login(s, "@nobody:" + s.server_name, pw).status_code == 403
    r = s.api("POST", LOGIN, json_body={"type": "m.login.password", "password": pw})
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    r = s.api("POST", LOGIN, json_body={"type": "m.login.password",
                                       "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                                      "address": "a@b.c"}, "password": pw})
    assert r.status_code == 400
    r = s.api("POST", LOGIN, json_body={"type": "m.login.password", "user": user_id})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = s.api("POST", LOGIN, json_body={"type": "m.login.bogus"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"
    r = s.api("POST", LOGIN, json_body={"password": pw})
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    r = password_login(s, user_id, pw, device_id=7)
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = password_login(s, user_id, pw, refresh_token="yes")
    assert r.status_code == 400
    r = s.api("POST", LOGIN, data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = s.api("POST", LOGIN, json_body={"type": "m.login.token", "token": "mlt_nope"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"


def test_admin_password_login_keeps_admin_rights(auth_server):
    s = auth_server
    user_id, pw = new_user(s, admin=True)
    b = password_login(s, user_id, pw).json()
    r = s.api("GET", f"/_synapse/admin/v2/users/{user_id}", b["access_token"])
    assert r.status_code == 200, r.text


def test_refresh_rotation(auth_server):
    s = auth_server
    user_id, pw = new_user(s)
    b = password_login(s, user_id, pw, refresh_token=True).json()
    assert b["refresh_token"].startswith("mcr_") and b["expires_in_ms"] > 0
    r = s.api("POST", "/_matrix/client/v3/refresh", json_body={"refresh_token": b["refresh_token"]})
    assert r.status_code == 200, r.text
    n = r.json()
    assert n["access_token"] != b["access_token"] and n["refresh_token"] != b["refresh_token"]
    assert whoami(s, n["access_token"]).status_code == 200
    assert whoami(s, b["access_token"]).status_code == 401
    # A consumed refresh token is refused, as are unknown ones.
    r = s.api("POST", "/_matrix/client/v3/refresh", json_body={"refresh_token": b["refresh_token"]})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = s.api("POST", "/_matrix/client/v3/refresh", json_body={"refresh_token": "mcr_nothing"})
    assert r.status_code == 401
    r = s.api("POST", "/_matrix/client/v3/refresh", json_body={})
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    # The unstable MSC2918 path works the same.
    r = s.api("POST", "/_matrix/client/unstable/org.matrix.msc2918.refresh_token/refresh",
              json_body={"refresh_token": n["refresh_token"]})
    assert r.status_code == 200


def test_logout_and_logout_all(auth_server):
    s = auth_server
    user_id, pw = new_user(s)
    a = password_login(s, user_id, pw).json()
    b = password_login(s, user_id, pw).json()
    r = s.api("POST", "/_matrix/client/v3/logout", a["access_token"], json_body={})
    assert r.status_code == 200
    assert whoami(s, a["access_token"]).status_code == 401
    devs = s.api("GET", "/_matrix/client/v3/devices", b["access_token"]).json()["devices"]
    assert a["device_id"] not in {d["device_id"] for d in devs}
    c = password_login(s, user_id, pw).json()
    r = s.api("POST", "/_matrix/client/v3/logout/all", b["access_token"], json_body={})
    assert r.status_code == 200
    assert whoami(s, b["access_token"]).status_code == 401
    assert whoami(s, c["access_token"]).status_code == 401
    r = s.api("POST", "/_matrix/client/v3/logout", json_body={})
    assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
    r = s.api("POST", "/_matrix/client/v3/logout", "mct_unknown", json_body={})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"


def test_deleting_the_device_ends_the_compat_session(auth_server):
    s = auth_server
    user_id, pw = new_user(s)
    a = password_login(s, user_id, pw).json()
    b = password_login(s, user_id, pw).json()
    # The homeserver's legacy token from shared-secret registration deletes
    # another device through DELETE /devices (UIA with the password).
    body = {"auth": {"type": "m.login.password", "password": pw,
                     "identifier": {"type": "m.id.user", "user": user_id}}}
    r = s.api("DELETE", f"/_matrix/client/v3/devices/{a['device_id']}", b["access_token"],
              json_body=body)
    if r.status_code == 401 and "session" in r.json():
        body["auth"]["session"] = r.json()["session"]
        r = s.api("DELETE", f"/_matrix/client/v3/devices/{a['device_id']}", b["access_token"],
                  json_body=body)
    assert r.status_code == 200, r.text
    assert whoami(s, a["access_token"]).status_code == 401
    assert whoami(s, b["access_token"]).status_code == 200


def test_delegated_register_answers_like_synapse(auth_server):
    s = auth_server
    r = s.api("POST", "/_matrix/client/v3/register",
              json_body={"username": "someone", "password": "pw-12345678",
                         "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = s.api("POST", "/_matrix/client/v3/register?kind=guest", json_body={})
    assert r.status_code == 403
    r = s.api("POST", "/_matrix/client/v3/register", json_body={"username": 5})
    assert r.status_code == 400
    # /register/available is gone as in Synapse's delegated mode.
    r = s.api("GET", "/_matrix/client/v3/register/available?username=x")
    assert r.status_code in (404, 405)


def test_shared_secret_registration_then_compat_login(auth_server):
    """Scripts that create users with the shared secret keep working: the
    account and its password are usable at the compat /login."""
    s = auth_server
    user_id, pw = new_user(s, admin=True)
    b = password_login(s, user_id, pw).json()
    assert whoami(s, b["access_token"]).json()["user_id"] == user_id


def test_compat_token_introspection(auth_server):
    s = auth_server
    user_id, pw = new_user(s)
    b = password_login(s, user_id, pw).json()
    svc = register_client(s, token_endpoint_auth_method="client_secret_basic",
                          grant_types=["client_credentials"], redirect_uris=None,
                          response_types=[]).json()
    auth = (svc["client_id"], svc["client_secret"])
    r = requests.post(s.url + "/oauth2/introspect", auth=auth, data={"token": b["access_token"]},
                      timeout=10)
    j = r.json()
    assert j["active"] is True and j["sub"] == user_id and j["device_id"] == b["device_id"]
    assert "urn:matrix:client:api:*" in j["scope"].split()
    assert "client_id" not in j
    s.api("POST", "/_matrix/client/v3/logout", b["access_token"], json_body={})
    r = requests.post(s.url + "/oauth2/introspect", auth=auth, data={"token": b["access_token"]},
                      timeout=10)
    assert r.json() == {"active": False}


def sso_round_trip(s, user_id, pw, redirect="http://127.0.0.1:9999/done?x=1"):
    browser = requests.Session()
    r = browser.get(s.url + "/_matrix/client/v3/login/sso/redirect",
                    params={"redirectUrl": redirect}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    assert r.headers["Location"].startswith(s.url + "/authorize?")
    r = browser.get(r.headers["Location"], allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/login?grant=" in r.headers["Location"]
    page = browser.get(r.headers["Location"], timeout=10)
    r = browser.post(s.url + "/login", data={
        "csrf": form_field(page.text, "csrf"), "grant": form_field(page.text, "grant"),
        "username": user_id, "password": pw}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    consent = browser.get(r.headers["Location"], timeout=10)
    assert "127.0.0.1" in consent.text   # the page names where the login goes
    r = browser.post(s.url + "/consent", data={
        "csrf": form_field(consent.text, "csrf"), "grant": form_field(consent.text, "grant"),
        "action": "allow"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    assert "/complete-compat-sso?" in r.headers["Location"]
    back = r.headers["Location"]
    r = browser.get(back, allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    loc = urllib.parse.urlparse(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == redirect.split("?")[0]
    q = dict(urllib.parse.parse_qsl(loc.query))
    assert q["x"] == "1"
    return q["loginToken"], browser, back


def test_sso_login_through_oauth(auth_server):
    s = auth_server
    user_id, pw = new_user(s)
    token, browser, back = sso_round_trip(s, user_id, pw)
    # The callback cannot be replayed.
    assert browser.get(back, allow_redirects=False, timeout=10).status_code == 400
    r = s.api("POST", LOGIN, json_body={"type": "m.login.token", "token": token})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["user_id"] == user_id and b["access_token"].startswith("mct_")
    assert whoami(s, b["access_token"]).status_code == 200
    # Single use.
    r = s.api("POST", LOGIN, json_body={"type": "m.login.token", "token": token})
    assert r.status_code == 403


def test_sso_redirect_errors(auth_server):
    s = auth_server
    r = requests.get(s.url + "/_matrix/client/v3/login/sso/redirect", allow_redirects=False,
                     timeout=10)
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    r = requests.get(s.url + "/_matrix/client/v3/login/sso/redirect",
                     params={"redirectUrl": "not a url"}, allow_redirects=False, timeout=10)
    assert r.status_code == 400
    r = requests.get(s.url + "/complete-compat-sso", params={"state": "x", "code": "y"},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 400 and "Location" not in r.headers
    r = requests.get(s.url + "/complete-compat-sso", params={"state": "x", "error": "access_denied"},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 403


def test_legacy_endpoints_without_delegation(plain_server):
    """With delegation off the homeserver keeps its own /login."""
    s = plain_server
    flows = {f["type"] for f in s.api("GET", LOGIN).json()["flows"]}
    assert "m.login.sso" not in flows
    u = s.register()
    r = password_login(s, u["user_id"], u["password"])
    assert r.status_code == 200 and not r.json()["access_token"].startswith("mct_")


def test_matrix_nio_compat_login(auth_server):
    nio = pytest.importorskip("nio")
    s = auth_server
    user_id, pw = new_user(s)

    async def run():
        client = nio.AsyncClient(s.url, user_id)
        try:
            resp = await client.login(pw, device_name="nio")
            assert isinstance(resp, nio.LoginResponse), resp
            assert resp.access_token.startswith("mct_")
            who = await client.whoami()
            assert who.user_id == user_id
            room = await client.room_create(name="compat")
            assert isinstance(room, nio.RoomCreateResponse), room
            sent = await client.room_send(room.room_id, "m.room.message",
                                          {"msgtype": "m.text", "body": "hello via compat"})
            assert isinstance(sent, nio.RoomSendResponse), sent
            out = await client.logout()
            assert isinstance(out, nio.LogoutResponse), out
        finally:
            await client.close()

    asyncio.run(run())
    # Wrong password: nio gets an error response.

    async def bad():
        client = nio.AsyncClient(s.url, user_id)
        try:
            resp = await client.login("nope-nope")
            assert isinstance(resp, nio.LoginError) and resp.status_code == "M_FORBIDDEN"
        finally:
            await client.close()

    asyncio.run(bad())


def test_manage_issue_compatibility_token(make_server):
    from conftest import DELEGATED
    s = make_server("sqlite", extra_yaml=DELEGATED)
    s.start()
    s.stop()
    run = lambda *a: subprocess.run([it.find_binary(), "manage", *a, "-c", s.config_path],
                                    capture_output=True, text=True, timeout=60)
    # register-user with MAS's short flags, the username as an argument.
    r = run("register-user", "-p", "Correct-horse-1", "-a", "-y", "chief")
    assert r.returncode == 0, r.stderr
    r = run("register-user", "-p", "Correct-horse-1", "-y", "plain")
    assert r.returncode == 0, r.stderr
    r = run("issue-compatibility-token", "chief", "CLIDEVICE",
            "--yes-i-want-to-grant-synapse-admin-privileges")
    assert r.returncode == 0, r.stderr
    admin_token = r.stdout.strip()
    assert re.fullmatch(r"mct_[A-Za-z0-9]{32}", admin_token)
    r = run("issue-compatibility-token", "plain")
    assert r.returncode == 0, r.stderr
    plain_token = r.stdout.strip()
    assert run("issue-compatibility-token").returncode == 2
    assert run("issue-compatibility-token", "nobody").returncode == 1
    assert run("issue-compatibility-token", "plain", "D", "--bogus").returncode == 2
    s.start()
    w = whoami(s, admin_token).json()
    assert w["user_id"].startswith("@chief:") and w["device_id"] == "CLIDEVICE"
    chief = w["user_id"]
    assert s.api("GET", f"/_synapse/admin/v2/users/{chief}", admin_token).status_code == 200
    assert whoami(s, plain_token).status_code == 200
    assert s.api("GET", f"/_synapse/admin/v2/users/{chief}", plain_token).status_code == 403


def test_cross_signing_reset_needs_account_page_approval(auth_server):
    import base64
    import os
    s = auth_server
    user_id, pw = new_user(s)
    tok = password_login(s, user_id, pw).json()["access_token"]

    def master():
        pub = base64.b64encode(os.urandom(32)).decode().rstrip("=")
        return {"master_key": {"user_id": user_id, "usage": ["master"],
                               "keys": {f"ed25519:{pub}": pub}}}

    up = "/_matrix/client/v3/keys/device_signing/upload"
    assert s.api("POST", up, tok, json_body=master()).status_code == 200
    # Replacing the keys: no password stage, the account page's approval.
    r = s.api("POST", up, tok, json_body=master())
    assert r.status_code == 401, r.text
    b = r.json()
    assert b["flows"] == [{"stages": ["org.matrix.cross_signing_reset"]}]
    url = b["params"]["org.matrix.cross_signing_reset"]["url"]
    assert url == s.url + "/account/?action=org.matrix.cross_signing_reset"
    assert url in b["msg"]
    # Approve it in a browser signed in to the account page.
    browser = requests.Session()
    page = browser.get(s.url + "/login", timeout=10)
    r = browser.post(s.url + "/login", data={"csrf": form_field(page.text, "csrf"),
                                             "username": user_id, "password": pw},
                     allow_redirects=False, timeout=30)
    assert r.status_code in (200, 303), r.text
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, page.text
    forms = re.findall(r'<form method="post" action="([^"]*)">\s*<input type="hidden" '
                       r'name="csrf" value="([^"]*)"', page.text)
    action, csrf = [f for f in forms if f[0].endswith("cross_signing_reset")][0]
    r = browser.post(action, data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert r.status_code in (200, 303), r.text
    r = s.api("POST", up, tok, json_body=master())
    assert r.status_code == 200, r.text
