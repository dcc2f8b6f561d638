"""
The split deployment with two (or three) real processes: the auth module in
one (`modules: [auth]`, accounts reached over HTTP through the homeserver's
`homeserver.users` JSON service), the homeserver in another
(`modules: [homeserver]`) checking every token by OAuth 2.0 introspection
(RFC 7662) over HTTP, configured with Synapse's keys:
`matrix_authentication_service: {enabled, endpoint, secret}` (shared
secret) and `experimental_features.msc3861` (client credentials), with a
short cache.  A user registers through OIDC on the auth process, then
/whoami and sends a message on the homeserver process; after revocation
the homeserver answers 401 once the cache TTL has passed.
"""
import contextlib
import secrets
import time

import pytest
import requests

from conftest import it
from test_auth_flow import Flow, form_field, register_client

SECRET = "mas-shared-" + secrets.token_hex(8)
INTERNAL = "internal-" + secrets.token_hex(8)
TTL_MS = 1500


class Proc(it.Server):
    """A Server whose listener also carries the internal resource, with a
    server_name of our choosing (the auth process must use the
    homeserver's)."""

    def __init__(self, engine, server_name=None, **kw):
        self._name = server_name
        super().__init__(engine, **kw)

    def write_config(self):
        if self._name:
            self.server_name = self._name
        super().write_config()
        with open(self.config_path) as f:
            cfg = f.read()
        cfg = cfg.replace("web, auth]", "web, auth, internal]")
        cfg = cfg.replace(f"server_name: \"localhost:{self.port}\"",
                          f"server_name: \"{self.server_name}\"")
        with open(self.config_path, "w") as f:
            f.write(cfg)


@pytest.fixture
def split():
    hs = Proc("sqlite", modules=["homeserver"])
    au = Proc("sqlite", server_name=hs.server_name, modules=["auth"])
    hs.extra_yaml = (
        f"internal_secret: \"{INTERNAL}\"\n"
        f"matrix_authentication_service:\n"
        f"  enabled: true\n"
        f"  endpoint: \"{au.url}/\"\n"
        f"  secret: \"{SECRET}\"\n"
        f"  introspection_cache_ttl: {TTL_MS}\n"
        f"  introspection_negative_cache_ttl: 300\n")
    hs.write_config()
    au.extra_yaml = (
        f"internal_secret: \"{INTERNAL}\"\n"
        f"service_locations:\n"
        f"  homeserver.users: \"{hs.url}/\"\n"
        f"matrix_authentication_service:\n"
        f"  secret: \"{SECRET}\"\n"
        f"auth:\n"
        f"  delegate_homeserver: true\n"
        f"  password_registration_enabled: true\n")
    au.write_config()
    hs.start()
    au.start()
    yield hs, au
    au.cleanup()
    hs.cleanup()


def oidc_register(au, name, password):
    """Signs up through prompt=create on the auth process; returns tokens."""
    client = register_client(au).json()
    f = Flow(au, client)
    r = f.authorize(prompt="create")
    assert r.status_code == 302 and "/register?grant=" in r.headers["Location"], r.text
    page = f.browser.get(r.headers["Location"], timeout=10)
    r = f.browser.post(au.url + "/register", data={
        "csrf": form_field(page.text, "csrf"), "grant": form_field(page.text, "grant"),
        "username": name, "password": password, "password_confirm": password},
        allow_redirects=False, timeout=30)
    code = f.consent(r)["code"]
    tok = f.exchange(code)
    assert tok.status_code == 200, tok.text
    return f, client, tok.json()


def test_split_register_whoami_message_revoke(split):
    hs, au = split
    name = "split" + secrets.token_hex(4)
    f, client, tok = oidc_register(au, name, "Split-pass-1234")
    user_id = f"@{name}:{hs.server_name}"
    # The homeserver process validates by introspection and provisions the
    # device on first use.
    r = hs.api("GET", "/_matrix/client/v3/account/whoami", tok["access_token"])
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == user_id and r.json()["device_id"] == f.device
    room = hs.api("POST", "/_matrix/client/v3/createRoom", tok["access_token"],
                  json_body={"name": "split"})
    assert room.status_code == 200, room.text
    rid = room.json()["room_id"]
    r = hs.api("PUT", f"/_matrix/client/v3/rooms/{rid}/send/m.room.message/t1",
               tok["access_token"], json_body={"msgtype": "m.text", "body": "over introspection"})
    assert r.status_code == 200, r.text
    devs = hs.api("GET", "/_matrix/client/v3/devices", tok["access_token"]).json()["devices"]
    assert f.device in {d["device_id"] for d in devs}
    # Revoked on the auth process: refused once the cache entry expired.
    r = requests.post(au.url + "/oauth2/revoke", timeout=10, data={
        "token": tok["access_token"], "client_id": client["client_id"]})
    assert r.status_code == 200, r.text
    time.sleep(TTL_MS / 1000 + 0.5)
    r = hs.api("GET", "/_matrix/client/v3/account/whoami", tok["access_token"])
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    # Unknown tokens are refused (and the negative answer is cached).
    for _ in range(2):
        assert hs.api("GET", "/_matrix/client/v3/account/whoami", "mat_nope").status_code == 401


def test_split_compat_login_on_auth_process(split):
    hs, au = split
    name = "compat" + secrets.token_hex(4)
    oidc_register(au, name, "Split-pass-1234")
    # The legacy /login is the auth process's (the ingress routes it there);
    # the homeserver process has none.
    assert hs.api("GET", "/_matrix/client/v3/login").status_code == 404
    r = au.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
        "password": "Split-pass-1234"})
    assert r.status_code == 200, r.text
    b = r.json()
    r = hs.api("GET", "/_matrix/client/v3/account/whoami", b["access_token"])
    assert r.status_code == 200 and r.json()["user_id"] == f"@{name}:{hs.server_name}"
    r = au.api("POST", "/_matrix/client/v3/login", json_body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
        "password": "wrong"})
    assert r.status_code == 403
    # Logging out on the auth process deletes the device on the homeserver.
    assert au.api("POST", "/_matrix/client/v3/logout", b["access_token"],
                  json_body={}).status_code == 200
    time.sleep(TTL_MS / 1000 + 0.5)
    assert hs.api("GET", "/_matrix/client/v3/account/whoami", b["access_token"]).status_code == 401
    # Delegated /register on the homeserver process.
    r = hs.api("POST", "/_matrix/client/v3/register", json_body={"username": "x", "password": "y"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"


def test_introspection_needs_the_secret(split):
    hs, au = split
    r = requests.post(au.url + "/oauth2/introspect", data={"token": "mat_x"},
                      headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401
    r = requests.post(au.url + "/oauth2/introspect", data={"token": "mat_x"},
                      headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"active": False}


@contextlib.contextmanager
def msc3861_homeserver(hs, au, client_id, client_secret):
    """Another homeserver process for the same server name, delegating with
    experimental_features.msc3861 (client_secret_basic)."""
    p = Proc("sqlite", server_name=hs.server_name, modules=["homeserver"])
    p.extra_yaml = (
        f"experimental_features:\n"
        f"  msc3861:\n"
        f"    enabled: true\n"
        f"    issuer: \"{au.url}/\"\n"
        f"    client_id: \"{client_id}\"\n"
        f"    client_auth_method: client_secret_basic\n"
        f"    client_secret: \"{client_secret}\"\n")
    p.write_config()
    p.start()
    try:
        yield p
    finally:
        p.cleanup()


def test_msc3861_client_credentials_and_first_use_provisioning(split):
    """A second homeserver process configured with experimental_features.msc3861
    (a confidential client's id/secret) knows nothing of the user: it is
    created there on first use."""
    hs, au = split
    name = "prov" + secrets.token_hex(4)
    f, client, tok = oidc_register(au, name, "Split-pass-1234")
    svc = register_client(au, token_endpoint_auth_method="client_secret_basic",
                          grant_types=["client_credentials"], redirect_uris=None,
                          response_types=[]).json()
    with msc3861_homeserver(hs, au, svc["client_id"], svc["client_secret"]) as hs2:
        r = hs2.api("GET", "/_matrix/client/v3/account/whoami", tok["access_token"])
        assert r.status_code == 200, r.text + hs2.log()
        assert r.json()["user_id"] == f"@{name}:{hs.server_name}"
        r = hs2.api("GET", f"/_matrix/client/v3/profile/@{name}:{hs.server_name}")
        assert r.status_code == 200, r.text
    # Wrong client credentials: nothing validates.
    with msc3861_homeserver(hs, au, svc["client_id"], "not-the-secret") as hs3:
        r = hs3.api("GET", "/_matrix/client/v3/account/whoami", tok["access_token"])
        assert r.status_code >= 400
