"""
The auth module against the real binary: discovery, JWKS, dynamic client
registration (accepted and refused metadata), the whole authorization code
flow with PKCE as a browser and a Matrix client do it (authorize, login
form with CSRF, consent, code, token, /whoami on the homeserver with the
OAuth token, refresh with rotation, revocation), introspection, and the
negative cases (wrong verifier, re-used code, unregistered redirect URI,
missing CSRF, expired and revoked tokens).  Legacy /login must keep working
with delegation off and on.  Runs on SQLite and, with MXSTACK_TEST_PG, on
PostgreSQL.
"""
import base64
import hashlib
import html
import json
import os
import re
import secrets
import subprocess
import time
import urllib.parse

import pytest
import requests

from conftest import DELEGATED, it

API = "urn:matrix:client:api:*"
API_UNSTABLE = "urn:matrix:org.matrix.msc2967.client:api:*"
DEV = "urn:matrix:client:device:"
REDIRECT = "http://127.0.0.1:8765/callback"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def pkce():
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def register_client(s, **over):
    md = {
        "client_name": "Test client",
        "client_uri": "http://127.0.0.1:8765/",
        "redirect_uris": [REDIRECT],
        "application_type": "web",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    md.update(over)
    md = {k: v for k, v in md.items() if v is not None}
    return requests.post(s.url + "/oauth2/registration", json=md, timeout=10)


def form_field(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, page)
    assert m, f"no {name} in page:\n{page}"
    return html.unescape(m.group(1))


class Flow:
    """One browser + one client going through the code flow."""

    def __init__(self, s, client, scope=None, device=None):
        self.s = s
        self.client = client
        self.browser = requests.Session()
        self.verifier, self.challenge = pkce()
        self.device = device or ("DEV" + secrets.token_hex(5).upper())
        self.scope = scope or f"openid {API} {DEV}{self.device}"
        self.state = secrets.token_urlsafe(8)

    def authorize(self, **extra):
        params = {
            "response_type": "code", "client_id": self.client["client_id"],
            "redirect_uri": REDIRECT, "scope": self.scope, "state": self.state,
            "code_challenge": self.challenge, "code_challenge_method": "S256",
            "nonce": "n-0S6_WzA2Mj",
        }
        params.update(extra)
        params = {k: v for k, v in params.items() if v is not None}
        return self.browser.get(self.s.url + "/authorize", params=params,
                                allow_redirects=False, timeout=10)

    def login_page(self):
        r = self.authorize()
        assert r.status_code == 302, r.text
        loc = r.headers["Location"]
        assert "/login?grant=" in loc, loc
        page = self.browser.get(loc, timeout=10)
        assert page.status_code == 200
        return page

    def login(self, user, password):
        page = self.login_page()
        csp = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        cookie = page.headers.get("Set-Cookie", "")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        r = self.browser.post(self.s.url + "/login", data={
            "csrf": form_field(page.text, "csrf"), "grant": form_field(page.text, "grant"),
            "username": user, "password": password}, allow_redirects=False, timeout=30)
        return r

    def consent(self, login_response, action="allow"):
        assert login_response.status_code == 303, login_response.text
        page = self.browser.get(login_response.headers["Location"], timeout=10)
        assert page.status_code == 200, page.text
        assert "Test client" in page.text
        assert "127.0.0.1:8765" in page.headers["Content-Security-Policy"]
        r = self.browser.post(self.s.url + "/consent", data={
            "csrf": form_field(page.text, "csrf"), "grant": form_field(page.text, "grant"),
            "action": action}, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        loc = urllib.parse.urlparse(r.headers["Location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
        q = dict(urllib.parse.parse_qsl(loc.query))
        assert q["state"] == self.state
        return q

    def code(self, user, password):
        return self.consent(self.login(user, password))["code"]

    def exchange(self, code, verifier=None, redirect_uri=REDIRECT):
        return requests.post(self.s.url + "/oauth2/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": self.client["client_id"],
            "code_verifier": verifier or self.verifier}, timeout=10)


def new_user(s):
    u = s.register()
    return u["user_id"].split(":")[0][1:], u["password"]


def whoami(s, token):
    return s.api("GET", "/_matrix/client/v3/account/whoami", token)


def tokens_for(s, client=None):
    client = client or register_client(s).json()
    user, pw = new_user(s)
    f = Flow(s, client)
    r = f.exchange(f.code(user, pw))
    assert r.status_code == 200, r.text
    return f, r.json(), user


# ---------------------------------------------------------------- discovery

def test_discovery_and_metadata(auth_server):
    s = auth_server
    d = requests.get(s.url + "/.well-known/openid-configuration", timeout=10).json()
    assert d["issuer"] == s.url + "/"
    for k in ("authorization_endpoint", "token_endpoint", "registration_endpoint",
              "revocation_endpoint", "introspection_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert d[k].startswith(s.url + "/"), k
    assert "code" in d["response_types_supported"]
    assert {"authorization_code", "refresh_token"} <= set(d["grant_types_supported"])
    assert {"query", "fragment"} <= set(d["response_modes_supported"])
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert "create" in d["prompt_values_supported"]
    assert "RS256" in d["id_token_signing_alg_values_supported"]
    for path in ("/_matrix/client/v1/auth_metadata",
                 "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"):
        r = requests.get(s.url + path, timeout=10)
        assert r.status_code == 200 and r.json() == d
        assert r.headers.get("Access-Control-Allow-Origin") == "*"
    r = requests.get(s.url + "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", timeout=10)
    assert r.json() == {"issuer": d["issuer"]}


def test_metadata_404_without_delegation(plain_server):
    s = plain_server
    for path in ("/_matrix/client/v1/auth_metadata",
                 "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
                 "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer"):
        r = requests.get(s.url + path, timeout=10)
        assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED", path
    # The provider itself is still there.
    assert requests.get(s.url + "/.well-known/openid-configuration", timeout=10).status_code == 200


def test_jwks_and_id_token(auth_server):
    import jwt
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm
    s = auth_server
    keys = requests.get(s.url + "/oauth2/keys.json", timeout=10).json()["keys"]
    by_alg = {k["alg"]: k for k in keys}
    assert set(by_alg) == {"RS256", "ES256"}
    rsa = RSAAlgorithm.from_jwk(json.dumps(by_alg["RS256"]))
    assert rsa.key_size >= 2048
    ECAlgorithm.from_jwk(json.dumps(by_alg["ES256"]))
    assert all(k["use"] == "sig" and len(k["kid"]) == 43 for k in keys)
    f, tok, user = tokens_for(s)
    idt = tok["id_token"]
    assert jwt.get_unverified_header(idt)["kid"] == by_alg["RS256"]["kid"]
    claims = jwt.decode(idt, rsa, algorithms=["RS256"], audience=f.client["client_id"],
                        issuer=s.url + "/")
    assert claims["sub"] == f"@{user}:{s.server_name}" and claims["nonce"] == "n-0S6_WzA2Mj"
    at_hash = b64url(hashlib.sha256(tok["access_token"].encode()).digest()[:16])
    assert claims["at_hash"] == at_hash
    # A client that registered ES256 gets ES256 id_tokens.
    es = register_client(s, id_token_signed_response_alg="ES256").json()
    f2, tok2, _ = tokens_for(s, es)
    ec = ECAlgorithm.from_jwk(json.dumps(by_alg["ES256"]))
    jwt.decode(tok2["id_token"], ec, algorithms=["ES256"], audience=es["client_id"])


# ------------------------------------------------------------- registration

def test_registration_accepts(auth_server):
    s = auth_server
    r = register_client(s)
    assert r.status_code == 201, r.text
    d = r.json()
    assert len(d["client_id"]) == 26 and "client_secret" not in d
    assert d["redirect_uris"] == [REDIRECT] and d["token_endpoint_auth_method"] == "none"
    # Element Web style: https client on its own host.
    r = register_client(s, client_uri="https://app.example.org/",
                        redirect_uris=["https://app.example.org/#/", "https://app.example.org/cb"]
                        if False else ["https://app.example.org/cb"],
                        logo_uri="https://cdn.app.example.org/logo.png")
    assert r.status_code == 201, r.text
    # Native: reverse-DNS scheme and loopback; confidential client gets a secret.
    r = register_client(s, application_type="native", client_uri="https://app.example.org/",
                        redirect_uris=["org.example.app:/callback", "http://127.0.0.1/cb"])
    assert r.status_code == 201, r.text
    r = register_client(s, token_endpoint_auth_method="client_secret_basic",
                        grant_types=["authorization_code", "client_credentials"])
    assert r.status_code == 201 and r.json()["client_secret"]


@pytest.mark.parametrize("over,error", [
    ({"client_uri": None}, "invalid_client_metadata"),
    ({"client_uri": "http://app.example.org/"}, "invalid_client_metadata"),
    ({"client_uri": "https://app.example.org/", "redirect_uris": ["https://evil.example.net/cb"]},
     "invalid_redirect_uri"),
    ({"redirect_uris": ["http://example.org/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": [REDIRECT + "#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"client_uri": "https://app.example.org/", "redirect_uris": ["org.example.app:/cb"]},
     "invalid_redirect_uri"),     # custom scheme on a web client
    ({"application_type": "native", "client_uri": "https://app.example.org/",
      "redirect_uris": ["com.evil.app:/cb"]}, "invalid_redirect_uri"),
    ({"application_type": "native", "client_uri": "https://app.example.org/",
      "redirect_uris": ["org.example.app://host/cb"]}, "invalid_redirect_uri"),
    ({"client_uri": "https://app.example.org/", "redirect_uris": ["https://app.example.org/cb"],
      "tos_uri": "https://other.example.net/tos"}, "invalid_client_metadata"),
    ({"grant_types": ["authorization_code", "client_credentials"]}, "invalid_client_metadata"),
    ({"grant_types": ["implicit"]}, "invalid_client_metadata"),
    ({"response_types": ["token"]}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
])
def test_registration_rejects(auth_server, over, error):
    r = register_client(auth_server, **over)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == error
    r = requests.post(auth_server.url + "/oauth2/registration", data="[1]", timeout=10)
    assert r.status_code == 400


# ----------------------------------------------------------------- the flow

def test_full_code_flow(auth_server):
    s = auth_server
    legacy = s.register()
    f, tok, user = tokens_for(s)
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 300
    assert tok["access_token"].startswith("mat_") and tok["refresh_token"].startswith("mar_")
    assert f"{DEV}{f.device}" in tok["scope"].split()
    r = whoami(s, tok["access_token"])
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == f"@{user}:{s.server_name}"
    assert r.json()["device_id"] == f.device
    # The device exists in the homeserver.
    devs = s.api("GET", "/_matrix/client/v3/devices", tok["access_token"]).json()["devices"]
    assert f.device in [d["device_id"] for d in devs]
    # userinfo
    ui = requests.get(s.url + "/oauth2/userinfo", timeout=10,
                      headers={"Authorization": "Bearer " + tok["access_token"]}).json()
    assert ui["sub"] == f"@{user}:{s.server_name}" and ui["username"] == user
    # Legacy tokens keep working next to OAuth ones.
    assert whoami(s, legacy["access_token"]).status_code == 200

    # Refresh: rotation.
    cid = f.client["client_id"]
    r = requests.post(s.url + "/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"], "client_id": cid})
    assert r.status_code == 200, r.text
    tok2 = r.json()
    assert tok2["refresh_token"] != tok["refresh_token"]
    assert whoami(s, tok2["access_token"]).json()["device_id"] == f.device
    assert whoami(s, tok["access_token"]).status_code == 401
    # Refresh again from the new one, then replay the first: session ends.
    r = requests.post(s.url + "/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tok2["refresh_token"], "client_id": cid})
    assert r.status_code == 200, r.text
    tok3 = r.json()
    assert whoami(s, tok3["access_token"]).status_code == 200
    r = requests.post(s.url + "/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"], "client_id": cid})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert whoami(s, tok3["access_token"]).status_code == 401

    # Revocation of a fresh session ends it, device included.
    f2, tok4, _ = tokens_for(s, f.client)
    assert whoami(s, tok4["access_token"]).status_code == 200
    r = requests.post(s.url + "/oauth2/revoke", timeout=10, data={
        "token": tok4["access_token"], "token_type_hint": "access_token", "client_id": cid})
    assert r.status_code == 200, r.text
    r = whoami(s, tok4["access_token"])
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = requests.post(s.url + "/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tok4["refresh_token"], "client_id": cid})
    assert r.status_code == 400
    # Unknown tokens revoke fine (RFC 7009).
    r = requests.post(s.url + "/oauth2/revoke", timeout=10,
                      data={"token": "mat_nothing", "client_id": cid})
    assert r.status_code == 200


def test_refresh_replay_of_lost_answer(auth_server):
    """The previous refresh token may be replayed while its successor is unused."""
    s = auth_server
    f, tok, _ = tokens_for(s)
    cid = f.client["client_id"]
    r1 = requests.post(s.url + "/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"], "client_id": cid})
    assert r1.status_code == 200
    r2 = requests.post(s.url + "/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"], "client_id": cid})
    assert r2.status_code == 200, r2.text
    assert whoami(s, r2.json()["access_token"]).status_code == 200
    assert whoami(s, r1.json()["access_token"]).status_code == 401


def test_introspection(auth_server):
    s = auth_server
    f, tok, user = tokens_for(s)
    svc = register_client(s, token_endpoint_auth_method="client_secret_basic",
                          grant_types=["client_credentials"], redirect_uris=None).json()
    auth = (svc["client_id"], svc["client_secret"])
    r = requests.post(s.url + "/oauth2/introspect", auth=auth, timeout=10,
                      data={"token": tok["access_token"]})
    d = r.json()
    assert d["active"] is True and d["username"] == user and d["device_id"] == f.device
    scopes = d["scope"].split()
    assert API in scopes and API_UNSTABLE in scopes
    assert f"urn:matrix:org.matrix.msc2967.client:device:{f.device}" in scopes
    assert d["client_id"] == f.client["client_id"] and d["exp"] > time.time()
    r = requests.post(s.url + "/oauth2/introspect", auth=auth, timeout=10,
                      data={"token": tok["refresh_token"], "token_type_hint": "refresh_token"})
    assert r.json()["active"] is True and r.json()["token_type"] == "refresh_token"
    assert requests.post(s.url + "/oauth2/introspect", auth=auth, timeout=10,
                         data={"token": "mat_bogus"}).json() == {"active": False}
    # Wrong secret, public client: refused.
    r = requests.post(s.url + "/oauth2/introspect", auth=(svc["client_id"], "nope"), timeout=10,
                      data={"token": tok["access_token"]})
    assert r.status_code == 401
    r = requests.post(s.url + "/oauth2/introspect", timeout=10,
                      data={"token": tok["access_token"], "client_id": f.client["client_id"]})
    assert r.status_code == 401
    # client_credentials token as the bearer.
    cc = requests.post(s.url + "/oauth2/token", auth=auth, timeout=10,
                       data={"grant_type": "client_credentials"}).json()
    r = requests.post(s.url + "/oauth2/introspect", timeout=10,
                      headers={"Authorization": "Bearer " + cc["access_token"]},
                      data={"token": tok["access_token"]})
    assert r.json()["active"] is True
    # ...which is not a homeserver token.
    assert whoami(s, cc["access_token"]).status_code == 401


# -------------------------------------------------------------- negatives

def test_wrong_verifier_and_reused_code(auth_server):
    s = auth_server
    client = register_client(s).json()
    user, pw = new_user(s)
    f = Flow(s, client)
    code = f.code(user, pw)
    other, _ = pkce()
    r = f.exchange(code, verifier=other)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = f.exchange(code, redirect_uri="http://127.0.0.1:8765/other")
    assert r.status_code == 400
    r = f.exchange(code)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert whoami(s, token).status_code == 200
    # Second use: refused, and what the first use gave is revoked.
    r = f.exchange(code)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert whoami(s, token).status_code == 401


def test_authorize_errors(auth_server):
    s = auth_server
    client = register_client(s).json()
    f = Flow(s, client)
    # Unknown client / unregistered redirect URI: an error page, never a redirect.
    r = f.authorize(client_id="01NOTACLIENT0000000000000000")
    assert r.status_code == 400 and "Location" not in r.headers
    r = f.authorize(redirect_uri="http://127.0.0.1:8765/elsewhere")
    assert r.status_code == 400 and "Location" not in r.headers
    assert "text/html" in r.headers["Content-Type"]
    # Errors after that go back to the client with the state.
    for extra, err in (({"code_challenge": None}, "invalid_request"),
                       ({"code_challenge_method": "plain"}, "invalid_request"),
                       ({"response_type": "token"}, "unsupported_response_type"),
                       ({"scope": "urn:unknown:thing"}, "invalid_scope"),
                       ({"scope": f"{API} {DEV}AAAAAAAAAA {DEV}BBBBBBBBBB"}, "invalid_scope"),
                       ({"prompt": "none"}, "login_required")):
        r = f.authorize(**extra)
        assert r.status_code == 302, (extra, r.text)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(r.headers["Location"]).query))
        assert q["error"] == err and q["state"] == f.state, (extra, q)
    # Fragment response mode.
    r = f.authorize(response_mode="fragment", response_type="token")
    assert urllib.parse.urlparse(r.headers["Location"]).fragment.startswith("error=")


def test_csrf_and_bad_password(auth_server):
    s = auth_server
    client = register_client(s).json()
    user, pw = new_user(s)
    f = Flow(s, client)
    page = f.login_page()
    grant = form_field(page.text, "grant")
    # No CSRF token, or one from another browser.
    r = f.browser.post(s.url + "/login", data={"grant": grant, "username": user, "password": pw},
                       allow_redirects=False, timeout=10)
    assert r.status_code == 403
    other = Flow(s, client).login_page()
    r = f.browser.post(s.url + "/login", data={
        "csrf": form_field(other.text, "csrf"), "grant": grant, "username": user,
        "password": pw}, allow_redirects=False, timeout=10)
    assert r.status_code == 403
    # Without the cookie.
    r = requests.post(s.url + "/login", data={
        "csrf": form_field(page.text, "csrf"), "grant": grant, "username": user,
        "password": pw}, allow_redirects=False, timeout=10)
    assert r.status_code == 403
    # Wrong password: the form again, with an error.
    r = f.browser.post(s.url + "/login", data={
        "csrf": form_field(page.text, "csrf"), "grant": grant, "username": user,
        "password": "wrong-password"}, allow_redirects=False, timeout=30)
    assert r.status_code == 401 and "Wrong username or password" in r.text
    # Consent POST without CSRF.
    r = f.browser.post(s.url + "/consent", data={"grant": grant, "action": "allow"},
                       allow_redirects=False, timeout=10)
    assert r.status_code == 403
    # Deny sends access_denied back.
    f2 = Flow(s, client)
    q = f2.consent(f2.login(user, pw), action="deny")
    assert q["error"] == "access_denied"


def test_register_page_prompt_create(auth_server):
    s = auth_server
    client = register_client(s).json()
    f = Flow(s, client)
    r = f.authorize(prompt="create")
    assert r.status_code == 302 and "/register?grant=" in r.headers["Location"]
    page = f.browser.get(r.headers["Location"], timeout=10)
    name = "new" + secrets.token_hex(4)
    r = f.browser.post(s.url + "/register", data={
        "csrf": form_field(page.text, "csrf"), "grant": form_field(page.text, "grant"),
        "username": name, "password": "short", "password_confirm": "short"},
        allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "at least 8" in r.text
    r = f.browser.post(s.url + "/register", data={
        "csrf": form_field(page.text, "csrf"), "grant": form_field(page.text, "grant"),
        "username": name, "password": "longenough1", "password_confirm": "longenough1"},
        allow_redirects=False, timeout=30)
    code = f.consent(r)["code"]
    tok = f.exchange(code).json()
    assert whoami(s, tok["access_token"]).json()["user_id"] == f"@{name}:{s.server_name}"
    # The account works with the legacy login too.
    r = s.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
        "password": "longenough1"})
    assert r.status_code == 200, r.text


def test_expired_access_token(make_server):
    s = make_server("sqlite", extra_yaml=DELEGATED + "  access_token_ttl: 1s\n")
    s.start()
    f, tok, _ = tokens_for(s)
    assert tok["expires_in"] == 1
    assert whoami(s, tok["access_token"]).status_code == 200
    time.sleep(1.3)
    r = whoami(s, tok["access_token"])
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = requests.post(s.url + "/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"],
        "client_id": f.client["client_id"]})
    assert whoami(s, r.json()["access_token"]).status_code == 200


def test_oauth_token_ignored_without_delegation(plain_server):
    """Without delegation the homeserver does not know OAuth tokens."""
    s = plain_server
    f, tok, _ = tokens_for(s)
    assert whoami(s, tok["access_token"]).status_code == 401


@pytest.mark.parametrize("engine", it.engines())
@pytest.mark.parametrize("delegated", [False, True])
def test_legacy_login_still_works(make_server, engine, delegated):
    s = make_server(engine, extra_yaml=DELEGATED if delegated else "")
    s.start()
    u = s.register()
    r = s.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": u["user_id"]},
        "password": u["password"]})
    assert r.status_code == 200, r.text
    assert whoami(s, r.json()["access_token"]).json()["user_id"] == u["user_id"]
    assert s.api("POST", "/_matrix/client/v3/logout", r.json()["access_token"]).status_code == 200
    assert whoami(s, r.json()["access_token"]).status_code == 401
    admin = s.admin_user()
    assert whoami(s, admin["access_token"]).status_code == 200


def test_manage_commands(make_server):
    s = make_server("sqlite", extra_yaml=DELEGATED)
    s.start()
    s.stop()
    run = lambda *a: subprocess.run([it.find_binary(), "manage", *a, "-c", s.config_path],
                                    capture_output=True, text=True, timeout=60)
    r = run("register-user", "--username", "boss", "--password", "correct horse", "--admin",
            "--yes")
    assert r.returncode == 0, r.stderr
    assert "@boss:" in r.stdout
    assert run("register-user", "--username", "boss", "--password", "correct horse",
               "--yes").returncode != 0
    r = run("list-users")
    assert r.returncode == 0 and "@boss:" in r.stdout and "admin" in r.stdout
    assert run("set-password", "boss", "--password", "battery staple").returncode == 0
    assert run("lock-user", "boss").returncode == 0
    s.start()
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "boss"},
            "password": "battery staple"}
    r = s.api("POST", "/_matrix/client/v3/login", json_body=body)
    assert r.status_code != 200
    s.stop()
    assert run("unlock-user", "boss").returncode == 0
    s.start()
    r = s.api("POST", "/_matrix/client/v3/login", json_body=body)
    assert r.status_code == 200, r.text
    assert r.json()["user_id"].startswith("@boss:")
