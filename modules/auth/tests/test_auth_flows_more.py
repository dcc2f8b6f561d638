"""
The auth module's device authorization grant (RFC 8628), RP-initiated
logout (end_session), signing-key rotation, account page (sessions,
password change, cross-signing reset approval), registration modes,
password policy, login rate limits and locked users, against the real
binary.  Users are created through the module's own /register page.
"""
import base64
import hashlib
import html
import json
import os
import re
import secrets
import sqlite3
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import it

API = "urn:matrix:client:api:*"
REDIRECT = "http://127.0.0.1:8765/callback"
LOGOUT = "http://127.0.0.1:8765/logged-out"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

BASE_YAML = (
    "auth:\n"
    "  delegate_homeserver: true\n"
    "  account:\n"
    "    password_registration_enabled: true\n"
)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def field(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, page)
    assert m, f"no {name} in page:\n{page}"
    return html.unescape(m.group(1))


def start(make_server, engine="sqlite", yaml=BASE_YAML):
    s = make_server(engine, extra_yaml=yaml)
    s.start()
    return s


def register(s, browser=None, username=None, password="correct horse 1", token=None, expect=303):
    """Creates an account on /register; the browser is then signed in."""
    browser = browser or requests.Session()
    username = username or ("u" + secrets.token_hex(5))
    page = browser.get(s.url + "/register", timeout=10)
    assert page.status_code == 200, page.text
    data = {"csrf": field(page.text, "csrf"), "grant": "", "next": "", "username": username,
            "password": password, "password_confirm": password}
    if token is not None:
        data["registration_token"] = token
    r = browser.post(s.url + "/register", data=data, allow_redirects=False, timeout=30)
    assert r.status_code == (200 if expect == 303 else expect), r.text
    return browser, username, password


def login(s, username, password, browser=None, next_page=""):
    browser = browser or requests.Session()
    page = browser.get(s.url + "/login", params={"next": next_page} if next_page else None,
                       timeout=10)
    r = browser.post(s.url + "/login", data={
        "csrf": field(page.text, "csrf"), "grant": "", "next": field(page.text, "next"),
        "username": username, "password": password}, allow_redirects=False, timeout=30)
    return browser, r


def client(s, **over):
    md = {"client_name": "Flows client", "client_uri": "http://127.0.0.1:8765/",
          "redirect_uris": [REDIRECT], "post_logout_redirect_uris": [LOGOUT],
          "token_endpoint_auth_method": "none",
          "grant_types": ["authorization_code", "refresh_token", DEVICE_GRANT],
          "response_types": ["code"]}
    md.update(over)
    r = requests.post(s.url + "/oauth2/registration", json=md, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()


def code_flow(s, browser, c, scope=None):
    """Authorization code + PKCE with an already signed-in browser."""
    verifier = secrets.token_urlsafe(48)
    challenge = b64url(hashlib.sha256(verifier.encode()).digest())
    r = browser.get(s.url + "/authorize", params={
        "response_type": "code", "client_id": c["client_id"], "redirect_uri": REDIRECT,
        "scope": scope or f"openid {API}", "state": "st", "code_challenge": challenge,
        "code_challenge_method": "S256", "nonce": "nn"}, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/consent?grant=" in r.headers["Location"], r.text
    page = browser.get(r.headers["Location"], timeout=10)
    r = browser.post(s.url + "/consent", data={"csrf": field(page.text, "csrf"),
                                               "grant": field(page.text, "grant"),
                                               "action": "allow"},
                     allow_redirects=False, timeout=10)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers["Location"]).query))
    r = requests.post(s.url + "/oauth2/token", data={
        "grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT,
        "client_id": c["client_id"], "code_verifier": verifier}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def whoami(s, token):
    return s.api("GET", "/_matrix/client/v3/account/whoami", token)


def poll(s, c, device_code):
    return requests.post(s.url + "/oauth2/token", data={
        "grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": c["client_id"]},
        timeout=10)


def device_start(s, c, scope=API):
    r = requests.post(s.url + "/oauth2/device", data={"client_id": c["client_id"],
                                                      "scope": scope}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def device_answer(s, browser, user_code, action="allow"):
    page = browser.get(s.url + "/link", params={"code": user_code}, timeout=10)
    assert page.status_code == 200, page.text
    assert 'value="%s"' % user_code in page.text
    r = browser.post(s.url + "/link", data={"csrf": field(page.text, "csrf"),
                                            "user_code": user_code.lower().replace("-", "")},
                     timeout=10)
    assert r.status_code == 200 and "Flows client" in r.text, r.text
    r2 = browser.post(s.url + "/device", data={"csrf": field(r.text, "csrf"),
                                               "id": field(r.text, "id"), "action": action},
                      timeout=10)
    return r2


# ------------------------------------------------------------ device grant

@pytest.mark.parametrize("engine", it.engines())
def test_device_authorization_grant(make_server, engine):
    s = start(make_server, engine)
    d = requests.get(s.url + "/.well-known/openid-configuration", timeout=10).json()
    assert d["device_authorization_endpoint"] == s.url + "/oauth2/device"
    assert DEVICE_GRANT in d["grant_types_supported"]
    c = client(s)
    da = device_start(s, c)
    assert re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", da["user_code"])
    assert da["verification_uri"] == s.url + "/link"
    assert da["verification_uri_complete"].endswith("code=" + da["user_code"])
    assert da["interval"] == 5 and da["expires_in"] == 600
    # Nobody answered yet; polling faster than the interval slows the client down.
    r = poll(s, c, da["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending"
    r = poll(s, c, da["device_code"])
    assert r.json()["error"] == "slow_down"
    # Unknown device code, another client's code.
    assert poll(s, c, "mdc_nope").json()["error"] == "invalid_grant"
    other = client(s)
    assert poll(s, other, da["device_code"]).json()["error"] == "invalid_grant"
    # The verification page wants a signed-in browser and comes back to the code.
    anon = requests.Session()
    r = anon.get(da["verification_uri_complete"], allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/login?next=link" in r.headers["Location"]
    browser, user, pw = register(s)
    # A wrong code is refused; a missing CSRF token too.
    page = browser.get(s.url + "/link", timeout=10)
    r = browser.post(s.url + "/link", data={"csrf": field(page.text, "csrf"),
                                            "user_code": "BBBB-BBBB"}, timeout=10)
    assert r.status_code == 400 and "unknown or has expired" in r.text
    r = browser.post(s.url + "/link", data={"user_code": da["user_code"]}, timeout=10)
    assert r.status_code == 403
    r = browser.post(s.url + "/device", data={"id": "x", "action": "allow"}, timeout=10)
    assert r.status_code == 403
    r = device_answer(s, browser, da["user_code"])
    assert r.status_code == 200 and "now signed in" in r.text
    tok = poll(s, c, da["device_code"])
    assert tok.status_code == 200, tok.text
    tok = tok.json()
    assert tok["refresh_token"].startswith("mar_")
    w = whoami(s, tok["access_token"])
    assert w.status_code == 200 and w.json()["user_id"].startswith("@" + user + ":")
    # Single use.
    assert poll(s, c, da["device_code"]).json()["error"] == "invalid_grant"
    # Denied.
    da2 = device_start(s, c)
    r = device_answer(s, browser, da2["user_code"], "deny")
    assert r.status_code == 200 and "refused" in r.text
    assert poll(s, c, da2["device_code"]).json()["error"] == "access_denied"
    # A code answered once cannot be answered again.
    page = browser.get(s.url + "/link", timeout=10)
    r = browser.post(s.url + "/link", data={"csrf": field(page.text, "csrf"),
                                            "user_code": da2["user_code"]}, timeout=10)
    assert r.status_code == 400
    # A client without the grant cannot start one.
    nogrant = client(s, grant_types=["authorization_code"])
    r = requests.post(s.url + "/oauth2/device", data={"client_id": nogrant["client_id"],
                                                      "scope": API}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_device_code_expires(make_server):
    s = start(make_server, yaml=BASE_YAML + "  device_code_ttl: 2s\n")
    c = client(s)
    da = device_start(s, c)
    assert da["expires_in"] == 2
    time.sleep(2.5)
    assert poll(s, c, da["device_code"]).json()["error"] == "expired_token"
    browser, _, _ = register(s)
    page = browser.get(s.url + "/link", timeout=10)
    r = browser.post(s.url + "/link", data={"csrf": field(page.text, "csrf"),
                                            "user_code": da["user_code"]}, timeout=10)
    assert r.status_code == 400


# ------------------------------------------------------------- end session

def test_end_session(make_server):
    s = start(make_server)
    d = requests.get(s.url + "/.well-known/openid-configuration", timeout=10).json()
    assert d["end_session_endpoint"] == s.url + "/end_session"
    c = client(s)
    browser, user, pw = register(s)
    tok = code_flow(s, browser, c)
    # An unregistered post-logout URI is an error page, never a redirect.
    for bad in ("http://127.0.0.1:8765/elsewhere", "https://evil.example/", LOGOUT + "/"):
        r = browser.get(s.url + "/end_session", params={
            "client_id": c["client_id"], "post_logout_redirect_uri": bad},
            allow_redirects=False, timeout=10)
        assert r.status_code == 400 and "Location" not in r.headers, bad
    r = browser.get(s.url + "/end_session", params={"post_logout_redirect_uri": LOGOUT},
                    allow_redirects=False, timeout=10)
    assert r.status_code == 400
    # A forged id_token_hint is refused.
    forged = tok["id_token"][:-4] + ("AAAA" if not tok["id_token"].endswith("AAAA") else "BBBB")
    r = browser.get(s.url + "/end_session", params={"id_token_hint": forged},
                    allow_redirects=False, timeout=10)
    assert r.status_code == 400
    # Without a hint: a confirmation form (CSRF).
    r = browser.get(s.url + "/end_session", params={
        "client_id": c["client_id"], "post_logout_redirect_uri": LOGOUT, "state": "s1"},
        allow_redirects=False, timeout=10)
    assert r.status_code == 200 and 'action="' + s.url + '/end_session"' in r.text
    assert "127.0.0.1:8765" in r.headers["Content-Security-Policy"]
    data = {k: field(r.text, k) for k in ("client_id", "post_logout_redirect_uri", "state")}
    assert browser.post(s.url + "/end_session", data=data, allow_redirects=False,
                        timeout=10).status_code == 403
    data["csrf"] = field(r.text, "csrf")
    r = browser.post(s.url + "/end_session", data=data, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == LOGOUT + "?state=s1"
    assert browser.get(s.url + "/account/", allow_redirects=False, timeout=10).status_code == 302
    # The OAuth session is not touched by a browser logout.
    assert whoami(s, tok["access_token"]).status_code == 200
    # With the id_token of the signed-in user: no question asked.
    browser, r = login(s, user, pw)
    assert r.status_code == 200
    r = browser.get(s.url + "/end_session", params={
        "id_token_hint": tok["id_token"], "post_logout_redirect_uri": LOGOUT},
        allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"] == LOGOUT
    # Not signed in and no redirect: the signed-out page.
    r = browser.get(s.url + "/end_session", allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "signed out" in r.text


# ------------------------------------------------------------ key rotation

def _openssl_key(path, ec):
    cmd = (["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path] if ec
           else ["openssl", "genrsa", "-out", path, "2048"])
    subprocess.run(cmd, check=True, capture_output=True)


def test_key_rotation(make_server, tmp_path):
    import jwt
    from jwt.algorithms import RSAAlgorithm
    new, old, ec = (str(tmp_path / n) for n in ("rsa_new.pem", "rsa_old.pem", "ec.pem"))
    _openssl_key(new, False)
    _openssl_key(old, False)
    _openssl_key(ec, True)
    yaml = BASE_YAML + f"  signing_keys:\n    - {new}\n    - path: {old}\n      kid: old-key\n    - {ec}\n"
    s = start(make_server, yaml=yaml)
    keys = requests.get(s.url + "/oauth2/keys.json", timeout=10).json()["keys"]
    assert [k["alg"] for k in keys] == ["RS256", "RS256", "ES256"]
    assert keys[1]["kid"] == "old-key" and len(keys[0]["kid"]) == 43
    c = client(s)
    browser, user, _ = register(s)
    tok = code_flow(s, browser, c)
    hdr = jwt.get_unverified_header(tok["id_token"])
    assert hdr["kid"] == keys[0]["kid"]
    claims = jwt.decode(tok["id_token"], RSAAlgorithm.from_jwk(json.dumps(keys[0])),
                        algorithms=["RS256"], audience=c["client_id"])
    assert claims["sub"].startswith("@" + user + ":")
    s.stop()
    # Rotation: the old key first now signs ... and the other stays published.
    s.extra_yaml = BASE_YAML + f"  signing_keys:\n    - path: {old}\n      kid: old-key\n    - {new}\n"
    s.write_config()
    s.start()
    keys2 = requests.get(s.url + "/oauth2/keys.json", timeout=10).json()["keys"]
    assert [k["kid"] for k in keys2] == ["old-key", keys[0]["kid"]]
    browser, r = login(s, user, "correct horse 1")
    tok2 = code_flow(s, browser, c)
    assert jwt.get_unverified_header(tok2["id_token"])["kid"] == "old-key"
    # An id_token of the previous signing key is still accepted as a hint.
    r = browser.get(s.url + "/end_session", params={"id_token_hint": tok["id_token"]},
                    allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "signed out" in r.text
    s.stop()
    # Without an RSA key the server refuses to start.
    s.extra_yaml = BASE_YAML + f"  signing_keys: [{ec}]\n"
    s.write_config()
    with pytest.raises(RuntimeError):
        s.start()


# ------------------------------------------------------------ account page

@pytest.mark.parametrize("engine", it.engines())
def test_account_page(make_server, engine):
    s = start(make_server, engine)
    d = requests.get(s.url + "/.well-known/openid-configuration", timeout=10).json()
    assert d["account_management_uri"] == s.url + "/account/"
    assert "org.matrix.cross_signing_reset" in d["account_management_actions_supported"]
    anon = requests.Session()
    r = anon.get(s.url + "/account/?action=org.matrix.device_view&device_id=D1",
                 allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "next=account%2F%3Faction" in r.headers["Location"]
    c = client(s)
    browser, user, pw = register(s)
    tok = code_flow(s, browser, c)
    dev = whoami(s, tok["access_token"]).json()["device_id"]
    page = browser.get(s.url + "/account/", timeout=10)
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script" not in csp
    assert "Flows client" in page.text and dev in page.text and "this browser" in page.text
    # Deep link to another device shows none of these sessions.
    p2 = browser.get(s.url + "/account/", params={"action": "org.matrix.device_view",
                                                  "device_id": "OTHER"}, timeout=10)
    assert dev not in p2.text
    # HTML is escaped: a client name with markup.
    evil = client(s, client_name="<b>x</b>\"'")
    code_flow(s, browser, evil)
    page = browser.get(s.url + "/account/", timeout=10)
    assert "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text
    csrf = field(page.text, "csrf")
    sid = re.search(r'name="kind" value="oauth">\s*<input type="hidden" name="id" value="([^"]+)"',
                    page.text.split("Flows client")[1]).group(1)
    # Ending a session needs the CSRF token; then the token stops working.
    r = browser.post(s.url + "/account/sessions/end", data={"kind": "oauth", "id": sid},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 403
    # Another user's browser cannot end it.
    b2, _, _ = register(s)
    p3 = b2.get(s.url + "/account/", timeout=10)
    r = b2.post(s.url + "/account/sessions/end", data={"csrf": field(p3.text, "csrf"),
                                                      "kind": "oauth", "id": sid},
                allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "error=err_session_unknown" in r.headers["Location"]
    assert whoami(s, tok["access_token"]).status_code == 200
    r = browser.post(s.url + "/account/sessions/end", data={"csrf": csrf, "kind": "oauth",
                                                           "id": sid},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "done=session_ended" in r.headers["Location"]
    assert whoami(s, tok["access_token"]).status_code == 401
    assert "signed out" in browser.get(r.headers["Location"], timeout=10).text
    # Password change: wrong current password, policy, mismatch, then success.
    def change(cur, new, confirm=None):
        return browser.post(s.url + "/account/password", data={
            "csrf": csrf, "current_password": cur, "new_password": new,
            "new_password_confirm": new if confirm is None else confirm},
            allow_redirects=False, timeout=30)
    assert "error=err_credentials" in change("wrong password", "new password 2").headers["Location"]
    assert "error=err_password_short" in change(pw, "short").headers["Location"]
    assert "error=err_password_mismatch" in change(pw, "new password 2", "x" * 12).headers["Location"]
    r = change(pw, "new password 2")
    assert "done=password_changed" in r.headers["Location"]
    assert login(s, user, pw)[1].status_code == 401
    assert login(s, user, "new password 2")[1].status_code == 200
    # Cross-signing reset approval.
    r = browser.post(s.url + "/account/cross_signing_reset", data={"csrf": csrf},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 303 and "done=crosssign_allowed" in r.headers["Location"]
    page = browser.get(s.url + "/account/?action=org.matrix.cross_signing_reset", timeout=10)
    assert "A reset is allowed until" in page.text
    assert browser.post(s.url + "/account/cross_signing_reset", data={},
                        timeout=10).status_code == 403
    # Ending this browser's own session signs it out.
    page = browser.get(s.url + "/account/", timeout=10)
    items = [li for li in page.text.split("<li>") if 'value="browser"' in li]
    assert len(items) >= 2      # the registration's browser session and the later login's
    cur = [re.search(r'name="id" value="([^"]+)"', li).group(1) for li in items
           if "this browser" in li]
    assert len(cur) == 1
    r = browser.post(s.url + "/account/sessions/end", data={"csrf": csrf, "kind": "browser",
                                                           "id": cur[0]},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert browser.get(s.url + "/account/", allow_redirects=False, timeout=10).status_code == 302


# ---------------------------------------------------------------- accounts

def test_registration_modes_and_policy(make_server):
    closed = start(make_server, yaml="auth:\n  delegate_homeserver: true\n")
    assert requests.get(closed.url + "/register", timeout=10).status_code == 403
    d = requests.get(closed.url + "/.well-known/openid-configuration", timeout=10).json()
    assert "create" not in d["prompt_values_supported"]
    closed.stop()
    yaml = BASE_YAML + ("    registration_token_required: true\n"
                        "    password_min_length: 10\n    password_min_classes: 3\n")
    s = start(make_server, yaml=yaml)
    page = requests.get(s.url + "/register", timeout=10)
    assert 'name="registration_token"' in page.text
    register(s, password="Abcdefgh1!", expect=400)                    # no token
    register(s, password="Abcdefgh1!", token="nope", expect=400)      # unknown token
    db = sqlite3.connect(os.path.join(s.dir, "homeserver.db"))
    now = int(time.time() * 1000)
    db.execute("INSERT INTO auth_registration_tokens (id, token, usage_limit, created_ts)"
               " VALUES ('01TOKEN', 'letmein', 1, ?)", (now,))
    db.execute("INSERT INTO auth_registration_tokens (id, token, created_ts, expires_ts)"
               " VALUES ('02TOKEN', 'expired', ?, ?)", (now, now - 1))
    db.commit()
    db.close()
    register(s, password="Abcdefgh1!", token="expired", expect=400)
    b, _, _ = register(s, password="short1A!", token="letmein", expect=400)   # too short
    b, _, _ = register(s, password="abcdefghijk", token="letmein", expect=400)  # one class
    browser, user, _ = register(s, password="Abcdefghij1", token="letmein")
    assert "Signed in" in browser.get(s.url + "/account/", timeout=10).text or True
    register(s, password="Abcdefghij1", token="letmein", expect=400)   # used up
    # prompt=create goes to the registration page.
    c = client(s)
    r = requests.get(s.url + "/authorize", params={
        "response_type": "code", "client_id": c["client_id"], "redirect_uri": REDIRECT,
        "scope": API, "code_challenge": b64url(hashlib.sha256(b"x" * 50).digest()),
        "code_challenge_method": "S256", "prompt": "create"}, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "/register?grant=" in r.headers["Location"]


def test_login_rate_limits_and_locked_user(make_server):
    yaml = BASE_YAML + ("  rate_limit:\n    login:\n"
                        "      per_ip: {burst: 8, per_second: 0.001}\n"
                        "      per_account: {burst: 2, per_second: 0.001}\n")
    s = start(make_server, yaml=yaml)
    _, user, pw = register(s)
    _, other, opw = register(s)
    # Two failures for `user` use its account bucket up: the right password waits too.
    assert login(s, user, "wrong 1")[1].status_code == 401
    assert login(s, "@" + user.upper() + ":" + s.server_name, "wrong 2")[1].status_code == 401
    b, r = login(s, user, pw)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "Too many attempts" in r.text
    # Another account from the same IP still works, until the IP bucket is empty.
    assert login(s, other, opw)[1].status_code == 200
    codes = [login(s, other, opw)[1].status_code for _ in range(6)]
    assert codes[-1] == 429 and codes[0] == 200
    s.stop()
    # A locked account cannot sign in, whatever the password.
    run = lambda *a: subprocess.run([it.find_binary(), "manage", *a, "-c", s.config_path],
                                    capture_output=True, text=True, timeout=60)
    assert run("lock-user", other).returncode == 0
    s.start()
    b, r = login(s, other, opw)
    assert r.status_code == 403 and "locked" in r.text


def test_email_verification_dev_mode(make_server):
    s = start(make_server, yaml=BASE_YAML + "    email_verification: dev\n")
    page = requests.get(s.url + "/register", timeout=10)
    assert 'name="email"' in page.text
    b = requests.Session()
    page = b.get(s.url + "/register", timeout=10)
    user = "e" + secrets.token_hex(5)
    data = {"csrf": field(page.text, "csrf"), "username": user, "password": "correct horse 1",
            "password_confirm": "correct horse 1", "email": "not an address"}
    assert b.post(s.url + "/register", data=data, timeout=30).status_code == 400
    data["email"] = "someone@example.org"
    r = b.post(s.url + "/register", data=data, allow_redirects=False, timeout=30)
    assert r.status_code == 200 and "Check your e-mail" in r.text and "someone@example.org" in r.text
    # No session yet, and no login until the link is opened.
    assert b.get(s.url + "/account/", allow_redirects=False, timeout=10).status_code == 302
    _, r = login(s, user, "correct horse 1")
    assert r.status_code == 403 and "link sent to your e-mail" in r.text
    link = None
    for _ in range(50):
        m = re.search(r"verify_email\?token=(\w+)", s.log())
        if m:
            link = s.url + "/verify_email?token=" + m.group(1)
            break
        time.sleep(0.1)
    assert link
    assert requests.get(s.url + "/verify_email?token=nope", timeout=10).status_code == 400
    r = requests.get(link, timeout=10)
    assert r.status_code == 200 and "verified" in r.text
    assert requests.get(link, timeout=10).status_code == 400          # single use
    _, r = login(s, user, "correct horse 1")
    assert r.status_code == 200
    s.stop()
    # smtp without an SMTP transport (auth.email) is refused with a clear
    # message (test_auth_email_smtp.py sends real mail).
    s.extra_yaml = BASE_YAML + "    email_verification: smtp\n"
    s.write_config()
    with pytest.raises(RuntimeError) as e:
        s.start()
    assert "email_verification: smtp needs auth.email" in str(e.value)
