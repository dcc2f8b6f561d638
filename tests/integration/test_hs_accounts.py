"""
Accounts part of the homeserver: /versions, /capabilities, registration
(UIA, guests, tokens, availability), login (password, token), logout,
refresh rotation, whoami, password change, deactivation, devices,
shared-secret registration and rate limits.  Every endpoint is tried on the
v3 path and, where Synapse serves it, on r0; error paths and who may do what
are checked too.
"""
import hashlib
import hmac
import os
import sqlite3
import time
import uuid

import pytest
import requests

from conftest import Server

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"


def uniq(prefix="u"):
    return prefix + uuid.uuid4().hex[:10]


def custom_server(make_server, replace=None, extra="", engine="sqlite"):
    """A server whose generated config has some lines replaced (the fixture's
    `homeserver:` section cannot be given twice through extra_yaml)."""
    s = make_server(engine, extra_yaml=extra)
    with open(s.config_path) as f:
        cfg = f.read()
    for old, new in (replace or {}).items():
        assert old in cfg, old
        cfg = cfg.replace(old, new)
    with open(s.config_path, "w") as f:
        f.write(cfg)
    return s.start()


def db_exec(s, sql, params=()):
    con = sqlite3.connect(os.path.join(s.dir, "homeserver.db"), timeout=10)
    try:
        cur = con.execute(sql, params)
        rows = cur.fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def login(s, user, password, **extra):
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password}
    body.update(extra)
    return s.api("POST", V3 + "/login", json_body=body)


def whoami(s, token, prefix=V3):
    return s.api("GET", prefix + "/account/whoami", token=token)


def uia_password(user):
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user["user_id"]},
            "password": user["password"]}


def shared_secret_mac(secret, nonce, user, pw, admin, user_type=None):
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    parts = [nonce, user, pw, "admin" if admin else "notadmin"]
    if user_type:
        parts.append(user_type)
    mac.update(b"\x00".join(p.encode() for p in parts))
    return mac.hexdigest()


# ---------------------------------------------------------------- versions

def test_versions_and_capabilities(server):
    r = server.api("GET", "/_matrix/client/versions")
    assert r.status_code == 200
    d = r.json()
    for v in ("r0.6.1", "v1.1", "v1.12"):
        assert v in d["versions"]
    assert isinstance(d["unstable_features"], dict)
    # A bad token never makes /versions fail.
    assert server.api("GET", "/_matrix/client/versions", token="nonsense").status_code == 200

    r = server.api("GET", V3 + "/capabilities")
    assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
    u = server.register()
    for prefix in (V3, R0):
        r = server.api("GET", prefix + "/capabilities", token=u["access_token"])
        assert r.status_code == 200, r.text
        caps = r.json()["capabilities"]
        assert caps["m.change_password"]["enabled"] is True
        assert caps["m.3pid_changes"]["enabled"] is False
        assert caps["m.set_displayname"]["enabled"] is True
        assert caps["m.set_avatar_url"]["enabled"] is True
        rv = caps["m.room_versions"]
        assert rv["available"] == {str(v): "stable" for v in range(1, 13)}
        assert rv["default"] in rv["available"]


# ------------------------------------------------------------ registration

def test_register_uia_flow(server):
    name = uniq()
    r = server.api("POST", V3 + "/register", json_body={"username": name, "password": "pw12345678"})
    assert r.status_code == 401
    d = r.json()
    assert {"stages": ["m.login.dummy"]} in d["flows"]
    assert d["session"] and d["completed"] == []
    # The second call may carry only the auth dict: the first call's fields are kept.
    r = server.api("POST", V3 + "/register",
                   json_body={"auth": {"type": "m.login.dummy", "session": d["session"]}})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["user_id"] == f"@{name}:{server.server_name}"
    assert d["access_token"].startswith("syt_") and d["device_id"]
    w = whoami(server, d["access_token"]).json()
    assert w == {"user_id": d["user_id"], "device_id": d["device_id"], "is_guest": False}
    # The session is used up.
    r = server.api("POST", V3 + "/register",
                   json_body={"auth": {"type": "m.login.dummy", "session": "nosuchsession"}})
    assert r.status_code == 400


def test_register_r0_and_options(server):
    name = uniq()
    r = server.api("POST", R0 + "/register", json_body={
        "username": name.upper(), "password": "pw12345678", "device_id": "MYDEVICE",
        "initial_device_display_name": "laptop", "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["user_id"] == f"@{name}:{server.server_name}"  # lower-cased
    assert d["device_id"] == "MYDEVICE"
    devs = server.api("GET", R0 + "/devices", token=d["access_token"]).json()["devices"]
    assert [(x["device_id"], x["display_name"]) for x in devs] == [("MYDEVICE", "laptop")]

    # inhibit_login: an account, no token
    r = server.api("POST", V3 + "/register", json_body={
        "username": uniq(), "password": "pw12345678", "inhibit_login": True,
        "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200
    assert "access_token" not in r.json() and r.json()["user_id"]

    # no username: a generated numeric localpart
    r = server.api("POST", V3 + "/register", json_body={
        "password": "pw12345678", "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"][1:].split(":")[0].isdigit()


@pytest.mark.parametrize("bad", ["bad name", "Ünï", "_hidden", "12345", "a:b", "x" * 300])
def test_register_invalid_username(server, bad):
    r = server.api("POST", V3 + "/register", json_body={
        "username": bad, "password": "pw12345678", "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_INVALID_USERNAME"


def test_register_errors(server):
    u = server.register()
    local = u["user_id"][1:].split(":")[0]
    # taken (also in another case), answered before UIA starts
    for name in (local, local.upper()):
        r = server.api("POST", V3 + "/register", json_body={"username": name, "password": "x" * 10})
        assert r.status_code == 400 and r.json()["errcode"] == "M_USER_IN_USE"
    # password too long
    r = server.api("POST", V3 + "/register", json_body={"username": uniq(), "password": "p" * 513})
    assert r.status_code == 400
    # no password at all
    r = server.api("POST", V3 + "/register", json_body={
        "username": uniq(), "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    # a stage that is not offered
    r = server.api("POST", V3 + "/register", json_body={
        "username": uniq(), "password": "pw12345678", "auth": {"type": "m.login.bogus"}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNRECOGNIZED"
    # a session bound to another endpoint cannot be used here
    r = server.api("POST", V3 + "/account/password", token=u["access_token"],
                   json_body={"new_password": "another12345"})
    sess = r.json()["session"]
    r = server.api("POST", V3 + "/register", json_body={
        "username": uniq(), "password": "pw12345678",
        "auth": {"type": "m.login.dummy", "session": sess}})
    assert r.status_code == 403
    # not JSON
    r = requests.post(server.url + V3 + "/register", data="{nope")
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"


def test_register_available(server):
    u = server.register()
    local = u["user_id"][1:].split(":")[0]
    for prefix in (V3, R0):
        r = server.api("GET", prefix + "/register/available", params={"username": uniq()})
        assert r.status_code == 200 and r.json() == {"available": True}
        r = server.api("GET", prefix + "/register/available", params={"username": local})
        assert r.status_code == 400 and r.json()["errcode"] == "M_USER_IN_USE"
    r = server.api("GET", V3 + "/register/available", params={"username": "no way"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME"
    r = server.api("GET", V3 + "/register/available")
    assert r.status_code == 400


def test_guest_registration(server):
    r = server.api("POST", V3 + "/register", params={"kind": "guest"}, json_body={})
    assert r.status_code == 200, r.text
    g = r.json()
    assert g["user_id"][1:].split(":")[0].isdigit()
    w = whoami(server, g["access_token"]).json()
    assert w["is_guest"] is True and w["user_id"] == g["user_id"]
    # guests may read capabilities, not change a password or delete devices
    assert server.api("GET", V3 + "/capabilities", token=g["access_token"]).status_code == 200
    r = server.api("POST", V3 + "/account/password", token=g["access_token"],
                   json_body={"new_password": "whatever1234"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    r2 = server.api("POST", V3 + "/register", params={"kind": "guest"}, json_body={}).json()
    assert r2["user_id"] != g["user_id"]
    r = server.api("POST", V3 + "/register", params={"kind": "robot"}, json_body={})
    assert r.status_code == 400


def test_profile_committed_with_registration(server):
    """The new account's profile (display name: the localpart) is written in
    the registration's transaction: readable at once, and still there after
    a kill -9 straight after the 200."""
    users = [server.register() for _ in range(5)]
    guest = server.api("POST", V3 + "/register", params={"kind": "guest"}, json_body={}).json()
    server.kill9()
    server.start()
    for u in users + [guest]:
        local = u["user_id"][1:].split(":")[0]
        r = server.api("GET", V3 + "/profile/" + u["user_id"])
        assert r.status_code == 200, r.text
        assert r.json().get("displayname") == local


def test_registration_disabled(make_server):
    s = custom_server(make_server, {
        "enable_registration: true\n": "enable_registration: false\n",
        "allow_guest_access: true": "allow_guest_access: false"})
    r = s.api("POST", V3 + "/register", json_body={"username": uniq(), "password": "pw12345678"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    assert r.json()["error"] == "Registration has been disabled"
    r = s.api("POST", V3 + "/register", params={"kind": "guest"}, json_body={})
    assert r.status_code == 403 and r.json()["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    assert s.api("GET", V3 + "/register/available", params={"username": "x1"}).status_code == 403
    # shared-secret registration still works
    a = s.admin_user()
    assert whoami(s, a["access_token"]).status_code == 200


class _Siteverify:
    """A mock reCAPTCHA siteverify API: records each form it gets and
    answers success for the response "good" only."""

    def __init__(self):
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, HTTPServer
        seen = self.seen = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                seen.append(form)
                body = ('{"success": %s}' % ("true" if form.get("response") == "good"
                                             else "false")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/recaptcha/api/siteverify"


def test_recaptcha_stage(make_server):
    """m.login.recaptcha as Synapse: the response is checked with the
    siteverify API (secret + response + remoteip); with
    enable_registration_captcha every registration flow starts with it and
    the 401 carries the public key."""
    sv = _Siteverify()
    try:
        s = custom_server(make_server, {"  argon2_memlimit_kib: 64\n": (
            "  argon2_memlimit_kib: 64\n  enable_registration_captcha: true\n"
            "  recaptcha_public_key: pub-key\n  recaptcha_private_key: priv-key\n"
            f"  recaptcha_siteverify_api: {sv.url}\n")},
            extra="ip_range_whitelist: ['127.0.0.1/32']\n")
        name = uniq()
        r = s.api("POST", V3 + "/register", json_body={"username": name, "password": "pw12345678"})
        assert r.status_code == 401, r.text
        j = r.json()
        assert [f["stages"] for f in j["flows"]] == [["m.login.recaptcha", "m.login.dummy"]]
        assert j["params"] == {"m.login.recaptcha": {"public_key": "pub-key"}}
        sid = j["session"]
        # the dummy stage alone does not complete the flow
        r = s.api("POST", V3 + "/register", json_body={
            "username": name, "password": "pw12345678",
            "auth": {"type": "m.login.dummy", "session": sid}})
        assert r.status_code == 401 and r.json()["completed"] == ["m.login.dummy"], r.text
        # a missing response, then a wrong one
        r = s.api("POST", V3 + "/register", json_body={
            "auth": {"type": "m.login.recaptcha", "session": sid}})
        assert r.status_code == 400 and r.json()["errcode"] == "M_CAPTCHA_NEEDED", r.text
        r = s.api("POST", V3 + "/register", json_body={
            "auth": {"type": "m.login.recaptcha", "session": sid, "response": "bad"}})
        assert r.status_code == 401 and r.json()["errcode"] == "M_UNAUTHORIZED", r.text
        assert sv.seen[-1] == {"secret": "priv-key", "response": "bad", "remoteip": "127.0.0.1"}
        r = s.api("POST", V3 + "/register", json_body={
            "auth": {"type": "m.login.recaptcha", "session": sid, "response": "good"}})
        assert r.status_code == 200, r.text
        assert r.json()["user_id"].startswith("@" + name + ":")
        assert len(sv.seen) == 2
    finally:
        sv.httpd.shutdown()


def test_recaptcha_needs_keys(make_server):
    s = make_server("sqlite")
    with open(s.config_path) as f:
        cfg = f.read()
    with open(s.config_path, "w") as f:
        f.write(cfg.replace("  argon2_memlimit_kib: 64\n",
                            "  argon2_memlimit_kib: 64\n  enable_registration_captcha: true\n"))
    import subprocess
    from conftest import find_binary
    out = subprocess.run([find_binary(), "serve", "-c", s.config_path], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    assert "enable_registration_captcha needs recaptcha_public_key" in out.stdout + out.stderr


def test_registration_tokens(make_server):
    s = custom_server(make_server, extra="registration_requires_token: true\n")
    db_exec(s, "INSERT INTO registration_tokens (token, uses_allowed, pending, completed,"
               " expiry_time) VALUES ('tok1', 1, 0, 0, NULL)")
    db_exec(s, "INSERT INTO registration_tokens (token, uses_allowed, pending, completed,"
               " expiry_time) VALUES ('old', NULL, 0, 0, 1000)")
    validity = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert s.api("GET", validity, params={"token": "tok1"}).json() == {"valid": True}
    assert s.api("GET", validity, params={"token": "old"}).json() == {"valid": False}
    assert s.api("GET", validity, params={"token": "nope"}).json() == {"valid": False}
    assert s.api("GET", validity).status_code == 400

    r = s.api("POST", V3 + "/register", json_body={"username": uniq(), "password": "pw12345678"})
    assert r.status_code == 401
    assert r.json()["flows"] == [{"stages": ["m.login.registration_token"]}]
    sess = r.json()["session"]
    # dummy is not enough when a token is required
    r = s.api("POST", V3 + "/register", json_body={"auth": {"type": "m.login.dummy", "session": sess}})
    assert r.status_code == 400
    r = s.api("POST", V3 + "/register", json_body={
        "auth": {"type": "m.login.registration_token", "token": "wrong", "session": sess}})
    assert r.status_code == 401 and "errcode" in r.json()
    r = s.api("POST", V3 + "/register", json_body={
        "auth": {"type": "m.login.registration_token", "token": "tok1", "session": sess}})
    assert r.status_code == 200, r.text
    assert db_exec(s, "SELECT pending, completed FROM registration_tokens WHERE token='tok1'") == [(0, 1)]
    # used up
    assert s.api("GET", validity, params={"token": "tok1"}).json() == {"valid": False}
    r = s.api("POST", V3 + "/register", json_body={
        "username": uniq(), "password": "pw12345678",
        "auth": {"type": "m.login.registration_token", "token": "tok1"}})
    assert r.status_code == 401


# ------------------------------------------------------------------- login

def test_get_login_flows(server):
    for prefix in (V3, R0):
        r = server.api("GET", prefix + "/login")
        assert r.status_code == 200
        types = [f["type"] for f in r.json()["flows"]]
        assert "m.login.password" in types and "m.login.token" in types


def test_login_password_variants(server):
    u = server.register()
    local = u["user_id"][1:].split(":")[0]
    for ident in (local, u["user_id"], local.upper()):
        r = login(server, ident, u["password"])
        assert r.status_code == 200, (ident, r.text)
        d = r.json()
        assert d["user_id"] == u["user_id"] and d["access_token"] and d["device_id"]
        assert d["well_known"]["m.homeserver"]["base_url"].startswith("http://127.0.0.1")
        assert whoami(server, d["access_token"]).json()["user_id"] == u["user_id"]
    # legacy top-level "user", r0 path
    r = server.api("POST", R0 + "/login", json_body={
        "type": "m.login.password", "user": local, "password": u["password"]})
    assert r.status_code == 200, r.text


def test_login_errors(server):
    u = server.register()
    r = login(server, u["user_id"], "wrong-password")
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = login(server, "nosuchuser" + uuid.uuid4().hex[:6], "whatever")
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = login(server, "@someone:other.example", "whatever")
    assert r.status_code == 403
    r = server.api("POST", V3 + "/login", json_body={"type": "m.login.fancy"})
    assert r.status_code == 400
    r = server.api("POST", V3 + "/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": u["user_id"]}})
    assert r.status_code == 400
    r = server.api("POST", V3 + "/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.phone", "country": "GB",
                                                   "phone": "123"}, "password": "x"})
    assert r.status_code in (400, 403)


def test_login_device_reuse(server):
    u = server.register()
    r = login(server, u["user_id"], u["password"], device_id="REUSE1",
              initial_device_display_name="phone")
    assert r.status_code == 200 and r.json()["device_id"] == "REUSE1"
    t1 = r.json()["access_token"]
    r = login(server, u["user_id"], u["password"], device_id="REUSE1",
              initial_device_display_name="ignored")
    t2 = r.json()["access_token"]
    assert t1 != t2
    r = whoami(server, t1)
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert whoami(server, t2).json()["device_id"] == "REUSE1"
    dev = server.api("GET", V3 + "/devices/REUSE1", token=t2).json()
    assert dev["display_name"] == "phone"


def test_login_token(make_server):
    s = custom_server(make_server)
    u = s.register()
    now = int(time.time() * 1000)

    def add(tok, expiry):
        h = hashlib.sha256(tok.encode()).hexdigest()
        db_exec(s, "INSERT INTO login_tokens (token_hash, user_id, expiry_ts) VALUES (?, ?, ?)",
                (h, u["user_id"], expiry))

    add("logintok1", now + 120000)
    add("expiredtok", now - 1)
    body = {"type": "m.login.token", "token": "logintok1"}
    r = s.api("POST", V3 + "/login", json_body=body)
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == u["user_id"]
    r = s.api("POST", V3 + "/login", json_body=body)  # single use
    assert r.status_code == 403
    r = s.api("POST", V3 + "/login", json_body={"type": "m.login.token", "token": "expiredtok"})
    assert r.status_code == 403


# ------------------------------------------------------------ token checks

def test_access_token_forms(server):
    u = server.register()
    r = server.api("GET", V3 + "/account/whoami", params={"access_token": u["access_token"]})
    assert r.status_code == 200 and r.json()["user_id"] == u["user_id"]
    assert whoami(server, u["access_token"], R0).status_code == 200
    r = server.api("GET", V3 + "/account/whoami")
    assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
    r = whoami(server, "syt_bogus_token")
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_UNKNOWN_TOKEN" and r.json()["soft_logout"] is False


def test_logout_and_logout_all(server):
    u = server.register()
    second = login(server, u["user_id"], u["password"]).json()
    # logout deletes the device and its token; an empty body is fine
    r = requests.post(server.url + V3 + "/logout",
                      headers={"Authorization": "Bearer " + second["access_token"]})
    assert r.status_code == 200, r.text
    assert whoami(server, second["access_token"]).status_code == 401
    devs = [d["device_id"] for d in
            server.api("GET", V3 + "/devices", token=u["access_token"]).json()["devices"]]
    assert second["device_id"] not in devs and u["device_id"] in devs
    # logout/all (r0 path)
    third = login(server, u["user_id"], u["password"]).json()
    r = server.api("POST", R0 + "/logout/all", token=third["access_token"], json_body={})
    assert r.status_code == 200
    for t in (u["access_token"], third["access_token"]):
        assert whoami(server, t).status_code == 401
    assert server.api("POST", V3 + "/logout").status_code == 401


def test_refresh_rotation(server):
    u = server.register()
    r = login(server, u["user_id"], u["password"], refresh_token=True)
    assert r.status_code == 200
    d = r.json()
    a1, r1 = d["access_token"], d["refresh_token"]
    assert whoami(server, a1).status_code == 200
    r = server.api("POST", V3 + "/refresh", json_body={"refresh_token": r1})
    assert r.status_code == 200, r.text
    a2, r2 = r.json()["access_token"], r.json()["refresh_token"]
    assert a2 != a1 and r2 != r1
    # the old refresh token still works until the new pair is used...
    r = server.api("POST", R0 + "/refresh", json_body={"refresh_token": r1})
    assert r.status_code == 200, r.text
    a3, r3 = r.json()["access_token"], r.json()["refresh_token"]
    # ...which replaced the unused a2/r2
    assert whoami(server, a2).status_code == 401
    assert server.api("POST", V3 + "/refresh", json_body={"refresh_token": r2}).status_code == 401
    # using the new access token revokes r1 (and a1)
    assert whoami(server, a3).json()["device_id"] == d["device_id"]
    r = server.api("POST", V3 + "/refresh", json_body={"refresh_token": r1})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert r.json()["soft_logout"] is False
    assert whoami(server, a1).status_code == 401
    r = server.api("POST", V3 + "/refresh", json_body={"refresh_token": r3})
    assert r.status_code == 200
    assert server.api("POST", V3 + "/refresh", json_body={}).status_code == 400


def test_refresh_expiry(make_server):
    s = custom_server(make_server, {"  argon2_opslimit: 1\n":
                                    "  argon2_opslimit: 1\n  access_token_lifetime: 1500ms\n"})
    u = s.register()
    d = login(s, u["user_id"], u["password"], refresh_token=True).json()
    assert d["expires_in_ms"] == 1500
    assert whoami(s, d["access_token"]).status_code == 200
    time.sleep(1.7)
    r = whoami(s, d["access_token"])
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert r.json()["soft_logout"] is True
    r = s.api("POST", V3 + "/refresh", json_body={"refresh_token": d["refresh_token"]})
    assert r.status_code == 200 and r.json()["expires_in_ms"] == 1500
    assert whoami(s, r.json()["access_token"]).status_code == 200
    # clients that do not ask for refresh tokens get non-expiring tokens
    d2 = login(s, u["user_id"], u["password"]).json()
    assert "expires_in_ms" not in d2 and "refresh_token" not in d2


# ---------------------------------------------------------------- account

def test_password_change(server):
    u = server.register()
    other = login(server, u["user_id"], u["password"]).json()
    body = {"new_password": "newpass12345"}
    r = server.api("POST", V3 + "/account/password", token=u["access_token"], json_body=body)
    assert r.status_code == 401
    d = r.json()
    assert d["flows"] == [{"stages": ["m.login.password"]}]
    # wrong password: 401 again with an error
    auth = dict(uia_password(u), password="nope", session=d["session"])
    r = server.api("POST", V3 + "/account/password", token=u["access_token"],
                   json_body=dict(body, auth=auth))
    assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN"
    # someone else's identifier
    auth = dict(uia_password(u), session=d["session"])
    auth["identifier"] = {"type": "m.id.user", "user": "@other:" + server.server_name}
    r = server.api("POST", V3 + "/account/password", token=u["access_token"],
                   json_body=dict(body, auth=auth))
    assert r.status_code == 403
    auth = dict(uia_password(u), session=d["session"])
    r = server.api("POST", R0 + "/account/password", token=u["access_token"],
                   json_body=dict(body, auth=auth))
    assert r.status_code in (200, 403), r.text  # r0 path is another URI: session bound
    if r.status_code == 403:
        r = server.api("POST", V3 + "/account/password", token=u["access_token"],
                       json_body=dict(body, auth=auth))
    assert r.status_code == 200, r.text
    # this device stays, the other one is logged out
    assert whoami(server, u["access_token"]).status_code == 200
    assert whoami(server, other["access_token"]).status_code == 401
    assert login(server, u["user_id"], u["password"]).status_code == 403
    assert login(server, u["user_id"], "newpass12345").status_code == 200


def test_password_change_keep_devices(server):
    u = server.register()
    other = login(server, u["user_id"], u["password"]).json()
    r = server.api("POST", V3 + "/account/password", token=u["access_token"], json_body={
        "new_password": "newpass12345", "logout_devices": False, "auth": uia_password(u)})
    assert r.status_code == 200, r.text
    assert whoami(server, other["access_token"]).status_code == 200
    r = server.api("POST", V3 + "/account/password", token=u["access_token"], json_body={
        "new_password": "p" * 600, "auth": dict(uia_password(u), password="newpass12345")})
    assert r.status_code == 400
    assert server.api("POST", V3 + "/account/password", json_body={}).status_code == 401


def test_deactivate(server):
    u = server.register()
    r = server.api("POST", V3 + "/account/deactivate", token=u["access_token"], json_body={})
    assert r.status_code == 401 and r.json()["flows"] == [{"stages": ["m.login.password"]}]
    r = server.api("POST", V3 + "/account/deactivate", token=u["access_token"], json_body={
        "erase": True, "auth": uia_password(u)})
    assert r.status_code == 200, r.text
    assert "id_server_unbind_result" in r.json()
    assert whoami(server, u["access_token"]).status_code == 401
    r = login(server, u["user_id"], u["password"])
    assert r.status_code == 403 and r.json()["errcode"] == "M_USER_DEACTIVATED"
    # the name stays taken
    local = u["user_id"][1:].split(":")[0]
    r = server.api("GET", V3 + "/register/available", params={"username": local})
    assert r.json()["errcode"] == "M_USER_IN_USE"


def test_deactivate_side_effects_commit_with_it(server):
    """The profile erase and the pusher removal are written in the
    deactivation's transaction: done at the 200, and kept after a kill -9
    right after it."""
    u = server.register()
    r = server.api("POST", V3 + "/pushers/set", token=u["access_token"], json_body={
        "kind": "http", "app_id": "a.b", "app_display_name": "x", "device_display_name": "y",
        "pushkey": "pk1", "lang": "en", "data": {"url": "https://push.example/_matrix/push/v1/notify"}})
    assert r.status_code == 200, r.text
    assert server.api("GET", V3 + "/profile/" + u["user_id"]).status_code == 200
    r = server.api("POST", V3 + "/account/deactivate", token=u["access_token"], json_body={
        "erase": True, "auth": uia_password(u)})
    assert r.status_code == 200, r.text
    server.kill9()
    server.start()
    r = server.api("GET", V3 + "/profile/" + u["user_id"])
    assert r.status_code == 404 or "displayname" not in r.json(), r.text
    a = server.admin_user()
    r = server.api("GET", "/_synapse/admin/v1/users/" + u["user_id"] + "/pushers",
                   token=a["access_token"])
    assert r.status_code == 200 and r.json()["total"] == 0, r.text


# ---------------------------------------------------------------- devices

def test_devices(server):
    u = server.register(device_id="DEVA")
    b = login(server, u["user_id"], u["password"], device_id="DEVB",
              initial_device_display_name="second").json()
    t = u["access_token"]
    devs = server.api("GET", V3 + "/devices", token=t).json()["devices"]
    assert sorted(d["device_id"] for d in devs) == ["DEVA", "DEVB"]
    # last seen figures (kept in memory, merged in)
    mine = [d for d in devs if d["device_id"] == "DEVA"][0]
    assert mine["last_seen_ip"] == "127.0.0.1" and mine["last_seen_ts"] > 0

    r = server.api("GET", R0 + "/devices/DEVB", token=t)
    assert r.status_code == 200 and r.json()["display_name"] == "second"
    r = server.api("GET", V3 + "/devices/NOPE", token=t)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"

    r = server.api("PUT", V3 + "/devices/DEVB", token=t, json_body={"display_name": "renamed"})
    assert r.status_code == 200
    assert server.api("GET", V3 + "/devices/DEVB", token=t).json()["display_name"] == "renamed"
    r = server.api("PUT", V3 + "/devices/NOPE", token=t, json_body={"display_name": "x"})
    assert r.status_code == 404
    r = server.api("PUT", V3 + "/devices/DEVB", token=t, json_body={"display_name": "x" * 101})
    assert r.status_code == 400

    # someone else cannot see or rename them
    eve = server.register()
    assert server.api("GET", V3 + "/devices/DEVB", token=eve["access_token"]).status_code == 404
    r = server.api("PUT", V3 + "/devices/DEVB", token=eve["access_token"],
                   json_body={"display_name": "pwned"})
    assert r.status_code == 404
    r = server.api("DELETE", V3 + "/devices/DEVB", token=eve["access_token"],
                   json_body={"auth": uia_password(eve)})
    assert r.status_code == 200  # deletes nothing of alice's
    assert whoami(server, b["access_token"]).status_code == 200

    # DELETE needs UIA
    r = server.api("DELETE", V3 + "/devices/DEVB", token=t)
    assert r.status_code == 401 and "session" in r.json()
    sess = r.json()["session"]
    r = server.api("DELETE", V3 + "/devices/DEVB", token=t,
                   json_body={"auth": dict(uia_password(u), session=sess)})
    assert r.status_code == 200, r.text
    assert whoami(server, b["access_token"]).status_code == 401
    assert server.api("GET", V3 + "/devices/DEVB", token=t).status_code == 404


def test_delete_devices(server):
    u = server.register()
    toks = [login(server, u["user_id"], u["password"]).json() for _ in range(2)]
    ids = [x["device_id"] for x in toks]
    r = server.api("POST", V3 + "/delete_devices", token=u["access_token"],
                   json_body={"devices": ids})
    assert r.status_code == 401
    r = server.api("POST", R0 + "/delete_devices", token=u["access_token"],
                   json_body={"devices": "notalist", "auth": uia_password(u)})
    assert r.status_code == 400
    r = server.api("POST", V3 + "/delete_devices", token=u["access_token"],
                   json_body={"devices": ids, "auth": uia_password(u)})
    assert r.status_code == 200, r.text
    for x in toks:
        assert whoami(server, x["access_token"]).status_code == 401
    left = server.api("GET", V3 + "/devices", token=u["access_token"]).json()["devices"]
    assert [d["device_id"] for d in left] == [u["device_id"]]


# ------------------------------------------------- shared-secret registration

def test_shared_secret_registration(server):
    path = "/_synapse/admin/v1/register"
    nonce = server.api("GET", path).json()["nonce"]
    name = uniq("bot")
    mac = shared_secret_mac(Server.SHARED_SECRET, nonce, name, "pw12345678", False, "bot")
    body = {"nonce": nonce, "username": name, "password": "pw12345678", "admin": False,
            "user_type": "bot", "displayname": "A Bot", "mac": mac}
    r = server.api("POST", path, json_body=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["user_id"] == f"@{name}:{server.server_name}"
    assert d["home_server"] == server.server_name and d["device_id"] and d["access_token"]
    assert whoami(server, d["access_token"]).status_code == 200
    # the nonce is single use
    r = server.api("POST", path, json_body=body)
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"
    # a wrong mac, and the nonce is burnt anyway
    nonce = server.api("GET", path).json()["nonce"]
    body = {"nonce": nonce, "username": uniq(), "password": "pw12345678", "admin": True,
            "mac": "0" * 40}
    r = server.api("POST", path, json_body=body)
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    body["mac"] = shared_secret_mac(Server.SHARED_SECRET, nonce, body["username"], "pw12345678",
                                    True)
    assert server.api("POST", path, json_body=body).status_code == 400
    # admin flag must match the mac
    nonce = server.api("GET", path).json()["nonce"]
    name = uniq()
    body = {"nonce": nonce, "username": name, "password": "pw12345678", "admin": True,
            "mac": shared_secret_mac(Server.SHARED_SECRET, nonce, name, "pw12345678", False)}
    assert server.api("POST", path, json_body=body).status_code == 403
    # the fixture's helper (admin) works, and the name is then taken
    a = server.admin_user()
    assert whoami(server, a["access_token"]).status_code == 200
    nonce = server.api("GET", path).json()["nonce"]
    local = a["user_id"][1:].split(":")[0]
    body = {"nonce": nonce, "username": local, "password": "x", "admin": False,
            "mac": shared_secret_mac(Server.SHARED_SECRET, nonce, local, "x", False)}
    r = server.api("POST", path, json_body=body)
    assert r.status_code == 400 and r.json()["errcode"] == "M_USER_IN_USE"


def test_shared_secret_disabled(make_server):
    s = custom_server(make_server, {"registration_shared_secret: test_shared_secret\n": ""})
    r = s.api("GET", "/_synapse/admin/v1/register")
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"
    r = s.api("POST", "/_synapse/admin/v1/register", json_body={"nonce": "x"})
    assert r.status_code == 400


# ------------------------------------------------------------ rate limits

def test_rate_limits(make_server):
    s = custom_server(make_server, {
        "  rc_login_per_second: 1000\n": "  rc_login_per_second: 1\n",
        "  rc_login_burst: 1000\n": "  rc_login_burst: 2\n",
        "  rc_registration_per_second: 1000\n": "  rc_registration_per_second: 1\n",
        "  rc_registration_burst: 1000\n": "  rc_registration_burst: 2\n"})
    codes = []
    for _ in range(6):
        r = login(s, "@nobody:" + s.server_name, "x")
        codes.append(r.status_code)
        if r.status_code == 429:
            d = r.json()
            assert d["errcode"] == "M_LIMIT_EXCEEDED" and 0 < d["retry_after_ms"] <= 1000
            break
    assert 429 in codes, codes

    codes = []
    for _ in range(6):
        r = s.api("POST", V3 + "/register", json_body={
            "username": uniq(), "password": "pw12345678", "auth": {"type": "m.login.dummy"}})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["retry_after_ms"] > 0
            break
    assert codes[0] == 200 and 429 in codes, codes
