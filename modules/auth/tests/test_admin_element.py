"""
Element Admin against the real binary, call for call: the sequence of
requests element-hq/element-admin makes (its src/api/{auth,matrix,mas,
synapse,ess}.ts and the personal-tokens pages of its `pats` branch), each
response checked against the fields and types its generated validators
require (valibot: a missing required field or a wrong type makes Element
Admin fail, so it fails here).  Then what is new in our MAS-shaped API:
personal sessions (their "mpt_" tokens on the homeserver), policy data,
OAuth 2.0 clients, session activity and the sessions' filters.  SQLite and,
with MXSTACK_TEST_PG, PostgreSQL.
"""
import base64
import hashlib
import re
import secrets
import time
import urllib.parse

import pytest
import requests

from conftest import it
from test_auth_flow import form_field

A = "/api/admin/v1"
ORIGIN = "http://127.0.0.1:8766"
REDIRECT_URI = ORIGIN + "/callback"
SCOPE = "urn:matrix:org.matrix.msc2967.client:api:* urn:mas:admin urn:synapse:admin:*"
CLIENT_METADATA = {   # Element Admin's constants.ts, from a web origin
    "application_type": "web", "client_name": "Element Admin", "client_uri": ORIGIN + "/",
    "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
}
PAGE_SIZE = 200
CLIENT_ID = "01JCFGADM1NC11ENT000000001"
OTHER_ID = "01JCFGADM1NC11ENT000000002"
SECRET = "configured-admin-client-secret"
PROVIDER_ID = "01JQPSTREAMPR0V1DER0000001"
CONFIG = (
    "auth:\n"
    "  delegate_homeserver: true\n"
    "  password_registration_enabled: true\n"
    "  clients:\n"
    f"    - client_id: {CLIENT_ID}\n"
    f"      client_secret: {SECRET}\n"
    f"    - client_id: {OTHER_ID}\n"
    f"      client_secret: {SECRET}\n"
    "  policy:\n"
    "    data:\n"
    f"      admin_clients: [{CLIENT_ID}]\n"
    "  upstream_oauth2:\n"
    "    providers:\n"
    f"      - id: {PROVIDER_ID}\n"
    "        human_name: Corporate SSO\n"
    "        issuer: https://idp.example.org/\n"
    "        client_id: mxstack\n"
    "        client_secret: upstream-secret\n"
    "        token_endpoint_auth_method: client_secret_post\n"
    "        scope: openid\n"
    "        discovery_mode: disabled\n"
    "        authorization_endpoint: https://idp.example.org/authorize\n"
    "        token_endpoint: https://idp.example.org/token\n"
    "        jwks_uri: https://idp.example.org/jwks\n"
)


@pytest.fixture(params=it.engines())
def s(request):
    srv = it.Server(request.param, extra_yaml=CONFIG)
    srv.start()
    yield srv
    srv.cleanup()


# ------------------------------------------------- what the validators need

ULID = re.compile(r"^[0123456789ABCDEFGHJKMNPQRSTVWXYZ]{26}$")
# valibot's isoTimestamp
ISO = re.compile(r"^\d{4}-(?:0[1-9]|1[0-2])-(?:[12]\d|0[1-9]|3[01])[T ](?:0\d|1\d|2[0-3])"
                 r"(?::[0-5]\d){2}(?:[.,]\d+)?(?:[zZ]|[+-](?:0\d|1\d|2[0-3])(?::?[0-5]\d)?)$")


def is_ulid(v):
    return isinstance(v, str) and ULID.match(v)


def is_time(v):
    return isinstance(v, str) and ISO.match(v)


def opt(check):
    return lambda v: v is None or check(v)


def is_str(v):
    return isinstance(v, str)


def is_bool(v):
    return isinstance(v, bool)


def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# attribute -> (required, check); None-able optional ones are opt(...)
SCHEMAS = {
    "user": {"username": (True, is_str), "created_at": (True, is_time),
             "locked_at": (False, opt(is_time)), "deactivated_at": (False, opt(is_time)),
             "admin": (True, is_bool), "legacy_guest": (False, is_bool)},
    "user-email": {"created_at": (True, is_time), "user_id": (True, is_ulid),
                   "email": (True, is_str)},
    "user-session": {"created_at": (True, is_time), "finished_at": (False, opt(is_time)),
                     "user_id": (True, is_ulid), "user_agent": (False, opt(is_str)),
                     "last_active_at": (False, opt(is_time)),
                     "last_active_ip": (False, opt(is_str))},
    "compat-session": {"user_id": (True, is_ulid), "device_id": (True, is_str),
                       "user_session_id": (False, opt(is_ulid)),
                       "redirect_uri": (False, opt(is_str)), "created_at": (True, is_time),
                       "user_agent": (False, opt(is_str)),
                       "last_active_at": (False, opt(is_time)),
                       "last_active_ip": (False, opt(is_str)),
                       "finished_at": (False, opt(is_time)),
                       "human_name": (False, opt(is_str))},
    "oauth2-session": {"created_at": (True, is_time), "finished_at": (False, opt(is_time)),
                       "user_id": (False, opt(is_ulid)),
                       "user_session_id": (False, opt(is_ulid)),
                       "client_id": (True, is_ulid), "scope": (True, is_str),
                       "user_agent": (False, opt(is_str)),
                       "last_active_at": (False, opt(is_time)),
                       "last_active_ip": (False, opt(is_str)),
                       "human_name": (False, opt(is_str))},
    "personal-session": {"created_at": (True, is_time), "revoked_at": (False, opt(is_time)),
                         "owner_user_id": (False, opt(is_str)),
                         "owner_client_id": (False, opt(is_str)),
                         "actor_user_id": (True, is_ulid), "human_name": (True, is_str),
                         "scope": (True, is_str), "last_active_at": (False, opt(is_time)),
                         "last_active_ip": (False, opt(is_str)),
                         "expires_at": (False, opt(is_time)),
                         "access_token": (False, opt(is_str))},
    "user-registration_token": {"token": (True, is_str), "valid": (True, is_bool),
                                "usage_limit": (False, opt(is_uint)),
                                "times_used": (True, is_uint), "created_at": (True, is_time),
                                "last_used_at": (False, opt(is_time)),
                                "expires_at": (False, opt(is_time)),
                                "revoked_at": (False, opt(is_time))},
    "upstream-oauth-link": {"created_at": (True, is_time), "provider_id": (True, is_ulid),
                            "subject": (True, is_str), "user_id": (False, is_ulid),
                            "human_account_name": (False, opt(is_str))},
    "upstream-oauth-provider": {"issuer": (False, opt(is_str)),
                                "human_name": (False, opt(is_str)),
                                "brand_name": (False, opt(is_str)),
                                "created_at": (True, is_time),
                                "disabled_at": (False, opt(is_time))},
    "policy-data": {"created_at": (True, is_time), "data": (True, lambda v: True)},
    "oauth2-client": {"client_id": (True, is_str), "client_name": (False, opt(is_str)),
                      "client_uri": (False, opt(is_str)), "logo_uri": (False, opt(is_str)),
                      "redirect_uris": (True, lambda v: isinstance(v, list)),
                      "grant_types": (True, lambda v: isinstance(v, list)),
                      "is_static": (True, is_bool)},
}


def check_resource(res, kind):
    assert isinstance(res, dict) and is_str(res.get("type")), res
    assert is_ulid(res.get("id")), res
    assert is_str(res.get("links", {}).get("self")), res
    meta = res.get("meta")
    if meta is not None and "page" in meta:
        assert is_str(meta["page"]["cursor"]), res
    attrs = res.get("attributes")
    assert isinstance(attrs, dict), res
    for k, (required, check) in SCHEMAS[kind].items():
        if k not in attrs:
            assert not required, f"{kind}: missing {k} in {attrs}"
            continue
        assert check(attrs[k]), f"{kind}: bad {k}={attrs[k]!r}"
    return attrs


def check_single(r, kind, status=200):
    assert r.status_code == status, r.text
    doc = r.json()
    assert is_str(doc["links"]["self"]), doc
    return check_resource(doc["data"], kind)


def check_page(r, kind, count=None):
    """PaginatedResponse: links.self required, the others optional/nullable;
    data an array (Element Admin's ensureHasData), meta.count a number when
    asked for (ensureHasCount)."""
    assert r.status_code == 200, r.text
    doc = r.json()
    links = doc["links"]
    assert is_str(links["self"])
    for k in ("first", "last", "next", "prev"):
        assert links.get(k) is None or is_str(links[k])
    if count:
        assert isinstance(doc["meta"]["count"], int), doc
    if count == "only":
        return doc
    assert isinstance(doc["data"], list), doc
    for d in doc["data"]:
        check_resource(d, kind)
    return doc


def next_cursor(doc, forward=True):
    """Element Admin's getNextPageParam (links.next && the cursor)."""
    if forward:
        return doc["links"].get("next") and doc["data"][-1].get("meta", {}).get(
            "page", {}).get("cursor", doc["data"][-1]["id"])
    return doc["links"].get("prev") and doc["data"][0]["meta"]["page"]["cursor"]


def check_error(r, status):
    assert r.status_code == status, r.text
    j = r.json()
    assert isinstance(j["errors"], list) and is_str(j["errors"][0]["title"]), j
    return j["errors"][0]["title"]


# ------------------------------------------------------- Element Admin's way

class Console:
    """What the browser tab of Element Admin does, request for request."""

    def __init__(self, s):
        self.s = s
        self.http = requests.Session()   # fetch(): no cookies of the auth pages
        self.browser = requests.Session()

    # Login: discovery, registration, authorization URL, callback, tokens.
    def login(self, username, password):
        s = self.s
        wk = self.http.get(s.url + "/.well-known/matrix/client", timeout=10)
        assert wk.status_code == 200, wk.text
        self.root = wk.json()["m.homeserver"]["base_url"].rstrip("/")
        md = self.http.get(self.root + "/_matrix/client/unstable/org.matrix.msc2965/"
                           "auth_metadata", timeout=10)
        assert md.status_code == 200, md.text
        self.meta = md.json()
        for k in ("issuer", "authorization_endpoint", "token_endpoint",
                  "registration_endpoint", "revocation_endpoint"):
            assert is_str(self.meta[k]), k
        gql = self.meta.get("org.matrix.matrix-authentication-service.graphql_endpoint")
        self.base = (gql[: -len("/graphql")] if gql else self.meta["issuer"].rstrip("/"))
        reg = self.http.post(self.meta["registration_endpoint"], json=CLIENT_METADATA,
                             headers={"Content-Type": "application/json"}, timeout=10)
        assert reg.ok, reg.text
        self.client_id = reg.json()["client_id"]
        verifier = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                          "qrstuvwxyz0123456789") for _ in range(64))
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_hex(16)
        url = self.meta["authorization_endpoint"] + "?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT_URI,
            "scope": SCOPE, "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256"})
        # The person: log in and consent in the auth pages.
        r = self.browser.get(url, allow_redirects=True, timeout=10)
        assert r.status_code == 200 and "csrf" in r.text, r.text
        r = self.browser.post(s.url + "/login", data={
            "csrf": form_field(r.text, "csrf"), "grant": form_field(r.text, "grant"),
            "username": username, "password": password}, allow_redirects=False, timeout=30)
        assert r.status_code == 303, r.text
        page = self.browser.get(urllib.parse.urljoin(s.url, r.headers["Location"]), timeout=10)
        assert "Element Admin" in page.text
        r = self.browser.post(s.url + "/consent", data={
            "csrf": form_field(page.text, "csrf"), "grant": form_field(page.text, "grant"),
            "action": "allow"}, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        loc = urllib.parse.urlparse(r.headers["Location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT_URI
        q = dict(urllib.parse.parse_qsl(loc.query))
        assert q["state"] == state   # callback.tsx compares it
        tok = self.http.post(self.meta["token_endpoint"], data={
            "grant_type": "authorization_code", "code": q["code"], "code_verifier": verifier,
            "client_id": self.client_id, "redirect_uri": REDIRECT_URI},
            headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
        assert tok.ok, tok.text
        t = tok.json()
        assert is_str(t["access_token"]) and is_str(t["refresh_token"])
        assert isinstance(t["expires_in"], (int, float))
        self.token, self.refresh = t["access_token"], t["refresh_token"]

    def refresh_tokens(self):
        r = self.http.post(self.meta["token_endpoint"], data={
            "grant_type": "refresh_token", "refresh_token": self.refresh,
            "client_id": self.client_id}, timeout=10)
        assert r.ok, r.text
        t = r.json()
        assert is_str(t["access_token"]) and is_str(t["refresh_token"])
        assert isinstance(t["expires_in"], (int, float))
        self.token, self.refresh = t["access_token"], t["refresh_token"]

    def logout(self):
        r = self.http.post(self.meta["revocation_endpoint"], data={
            "token": self.token, "client_id": self.client_id,
            "token_type_hint": "access_token"}, timeout=10)
        assert r.ok, r.text

    def auth(self):
        return {"Authorization": f"Bearer {self.token}", "Origin": ORIGIN}

    def mas(self, method, path, params=None, body=None):
        r = self.http.request(method, self.base + A + path, params=params, json=body,
                              headers=self.auth(), timeout=30)
        assert r.headers.get("Access-Control-Allow-Origin") in ("*", ORIGIN), r.headers
        return r

    def synapse(self, path, params=None):
        r = self.http.get(self.root + path, params=params, headers=self.auth(), timeout=30)
        return r


def user_filters(admin=None, guest=None, status=None, search=None):
    q = {}
    if admin is not None:
        q["filter[admin]"] = str(admin).lower()
    if guest is not None:
        q["filter[legacy-guest]"] = str(guest).lower()
    if status:
        q["filter[status]"] = status
    if search:
        q["filter[search]"] = search
    return q


def test_element_admin_call_sequence(s):
    name = "ea" + it.uuid.uuid4().hex[:8]
    s.admin_user(name, "pw12345678", admin=True)
    c = Console(s)
    c.login(name, "pw12345678")
    # matrix.ts: whoami, profile.
    r = c.synapse("/_matrix/client/v3/account/whoami")
    assert r.status_code == 200 and r.json()["user_id"].startswith(f"@{name}:"), r.text
    me = r.json()["user_id"]
    r = c.synapse(f"/_matrix/client/v3/profile/{urllib.parse.quote(me)}")
    assert r.status_code == 200, r.text
    for k in ("avatar_url", "displayname"):
        assert k not in r.json() or is_str(r.json()[k])
    # ess.ts and synapse.ts.
    r = c.synapse("/_synapse/ess/version")
    assert r.status_code == 200 and "version" in r.json() and "edition" in r.json()
    r = c.synapse("/_synapse/admin/v1/server_version")
    assert r.status_code == 200 and is_str(r.json()["server_version"])
    # MAS: site-config (every field optional but server_name).
    r = c.mas("GET", "/site-config")
    assert r.status_code == 200 and r.json()["server_name"] == s.server_name
    cfg = r.json()
    for k, v in cfg.items():
        if k == "minimum_password_complexity":
            assert isinstance(v, int) and 0 <= v <= 4
        elif k != "server_name":
            assert is_bool(v), (k, v)
    assert is_str(c.mas("GET", "/version").json()["version"])

    # Users: the dashboard counts, the list (both directions) and filters.
    made = []
    for i in range(3):
        r = c.mas("POST", "/users", body={"username": f"{name}x{i}"})
        made.append(check_single(r, "user", 201))
    ids = [c.mas("GET", f"/users/by-username/{name}x{i}").json()["data"]["id"]
           for i in range(3)]
    for q in (user_filters(), user_filters(status="active"), user_filters(admin=True),
              user_filters(guest=False), user_filters(search=name)):
        doc = check_page(c.mas("GET", "/users", {"count": "only", **q}), "user", "only")
        assert doc["meta"]["count"] >= (1 if "filter[admin]" in q else 4)
    doc = check_page(c.mas("GET", "/users", {"count": "false", "page[first]": PAGE_SIZE,
                                             **user_filters(search=name)}), "user")
    assert {d["id"] for d in doc["data"]} >= set(ids) and next_cursor(doc) is None
    doc = check_page(c.mas("GET", "/users", {"count": "false", "page[first]": 2,
                                             **user_filters(search=name)}), "user")
    after = next_cursor(doc)
    assert after
    doc2 = check_page(c.mas("GET", "/users", {"count": "false", "page[first]": 2,
                                              "page[after]": after,
                                              **user_filters(search=name)}), "user")
    assert len(doc["data"]) + len(doc2["data"]) == 4
    doc = check_page(c.mas("GET", "/users", {"count": "false", "page[last]": PAGE_SIZE,
                                             **user_filters(status="active")}), "user")
    assert doc["data"]
    uid = ids[0]
    check_single(c.mas("GET", f"/users/{uid}"), "user")
    r = c.mas("GET", "/users/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert check_error(r, 404)
    # User page actions.
    assert check_single(c.mas("POST", f"/users/{uid}/lock"), "user")["locked_at"]
    assert check_single(c.mas("POST", f"/users/{uid}/unlock"), "user")["locked_at"] is None
    assert check_single(c.mas("POST", f"/users/{uid}/set-admin", body={"admin": True}),
                        "user")["admin"] is True
    r = c.mas("POST", f"/users/{uid}/set-password",
              body={"password": "another-pw-123", "skip_password_check": False})
    assert r.status_code == 204, r.text
    assert check_single(c.mas("POST", f"/users/{uid}/deactivate"), "user")["deactivated_at"]
    n = check_page(c.mas("GET", "/users", {"count": "only",
                                           **user_filters(status="deactivated")}),
                   "user", "only")["meta"]["count"]
    assert n >= 1
    assert check_single(c.mas("POST", f"/users/{uid}/reactivate"),
                        "user")["deactivated_at"] is None
    # Emails and upstream links of the user page.
    em = c.mas("POST", "/user-emails", body={"email": f"{name}@example.org", "user_id": uid})
    check_single(em, "user-email", 201)
    doc = check_page(c.mas("GET", "/user-emails", {"filter[user]": uid, "page[first]": 10,
                                                   "count": "false"}), "user-email")
    assert [d["attributes"]["email"] for d in doc["data"]] == [f"{name}@example.org"]
    assert c.mas("DELETE", f"/user-emails/{em.json()['data']['id']}").status_code == 204
    provs = check_page(c.mas("GET", "/upstream-oauth-providers", {"page[first]": 1000,
                                                                  "count": "false"}),
                       "upstream-oauth-provider")
    assert [p["id"] for p in provs["data"]] == [PROVIDER_ID]
    ln = c.mas("POST", "/upstream-oauth-links", body={
        "user_id": uid, "provider_id": PROVIDER_ID, "subject": "sub-" + name})
    link = check_single(ln, "upstream-oauth-link", 201)
    assert link["user_id"] == uid and link["subject"] == "sub-" + name
    again = c.mas("POST", "/upstream-oauth-links", body={
        "user_id": uid, "provider_id": PROVIDER_ID, "subject": "sub-" + name})
    assert check_single(again, "upstream-oauth-link")["user_id"] == uid
    assert again.json()["data"]["id"] == ln.json()["data"]["id"]
    assert check_error(c.mas("POST", "/upstream-oauth-links", body={
        "user_id": ids[1], "provider_id": PROVIDER_ID, "subject": "sub-" + name}), 409)
    assert check_error(c.mas("POST", "/upstream-oauth-links", body={
        "user_id": uid, "provider_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "subject": "x"}), 404)
    assert check_error(c.mas("POST", "/upstream-oauth-links", body={
        "user_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "provider_id": PROVIDER_ID,
        "subject": "y"}), 404)
    doc = check_page(c.mas("GET", "/upstream-oauth-links", {"filter[user]": uid,
                                                            "page[first]": 10,
                                                            "count": "false"}),
                     "upstream-oauth-link")
    assert [d["id"] for d in doc["data"]] == [ln.json()["data"]["id"]]
    assert c.mas("DELETE", f"/upstream-oauth-links/{ln.json()['data']['id']}").status_code == 204

    # Registration tokens: list, count, filters, create, get, edit, revoke.
    t = check_single(c.mas("POST", "/user-registration-tokens",
                           body={"usage_limit": 3, "expires_at": "2099-01-01T00:00:00Z"}),
                     "user-registration_token", 201)
    assert t["usage_limit"] == 3 and t["valid"] is True
    tid = c.mas("GET", "/user-registration-tokens", {"page[first]": PAGE_SIZE,
                                                     "count": "false"}).json()["data"][-1]["id"]
    for f in ("used", "revoked", "expired", "valid"):
        for v in ("true", "false"):
            check_page(c.mas("GET", "/user-registration-tokens",
                             {"page[first]": PAGE_SIZE, "count": "false", f"filter[{f}]": v}),
                       "user-registration_token")
            check_page(c.mas("GET", "/user-registration-tokens",
                             {"count": "only", f"filter[{f}]": v}),
                       "user-registration_token", "only")
    check_single(c.mas("GET", f"/user-registration-tokens/{tid}"), "user-registration_token")
    e = check_single(c.mas("PUT", f"/user-registration-tokens/{tid}",
                           body={"expires_at": None, "usage_limit": 5}),
                     "user-registration_token")
    assert e["expires_at"] is None and e["usage_limit"] == 5
    assert check_single(c.mas("POST", f"/user-registration-tokens/{tid}/revoke"),
                        "user-registration_token")["revoked_at"]
    assert check_single(c.mas("POST", f"/user-registration-tokens/{tid}/unrevoke"),
                        "user-registration_token")["revoked_at"] is None

    # Personal tokens pages (the `pats` branch).
    for q in ({"filter[status]": "active"}, {"filter[actor_user]": uid},
              {"filter[expires]": "true"}, {"filter[scope]": "urn:mas:admin"}):
        check_page(c.mas("GET", "/personal-sessions", {"count": "only", **q}),
                   "personal-session", "only")
        check_page(c.mas("GET", "/personal-sessions",
                         {"page[first]": PAGE_SIZE, "count": "false", **q}), "personal-session")
    ps = check_single(c.mas("POST", "/personal-sessions", body={
        "actor_user_id": uid, "human_name": "CI bot",
        "scope": "urn:matrix:client:api:*", "expires_in": 3600}), "personal-session", 201)
    assert ps["access_token"].startswith("mpt_") and ps["expires_at"]
    psid = c.mas("GET", "/personal-sessions", {"filter[actor_user]": uid, "count": "false",
                                               "page[first]": PAGE_SIZE}).json()["data"][0]["id"]
    got = check_single(c.mas("GET", f"/personal-sessions/{psid}"), "personal-session")
    assert "access_token" not in got and got["actor_user_id"] == uid
    regen = check_single(c.mas("POST", f"/personal-sessions/{psid}/regenerate",
                               body={"expires_in": None}), "personal-session", 201)
    assert regen["access_token"] != ps["access_token"] and regen["expires_at"] is None
    assert check_single(c.mas("POST", f"/personal-sessions/{psid}/revoke"),
                        "personal-session")["revoked_at"]

    # Rooms pages (Synapse Admin API).
    room = s.api("POST", "/_matrix/client/v3/createRoom", c.token,
                 json_body={"name": "Ops", "preset": "public_chat"})
    assert room.status_code == 200, room.text
    room_id = room.json()["room_id"]
    room_fields = {"room_id": is_str, "name": opt(is_str), "canonical_alias": opt(is_str),
                   "joined_members": is_uint, "joined_local_members": is_uint,
                   "version": is_str, "creator": is_str, "encryption": opt(is_str),
                   "federatable": is_bool, "public": is_bool, "join_rules": opt(is_str),
                   "guest_access": opt(is_str), "history_visibility": opt(is_str),
                   "state_events": is_uint, "room_type": opt(is_str)}
    for q in ({"limit": PAGE_SIZE}, {"limit": PAGE_SIZE, "order_by": "name", "dir": "b"},
              {"limit": PAGE_SIZE, "search_term": "Ops"},
              {"limit": PAGE_SIZE, "public_rooms": "true", "empty_rooms": "false"},
              {"limit": 1, "from": 0}):
        r = c.synapse("/_synapse/admin/v1/rooms", q)
        assert r.status_code == 200, (q, r.text)
        j = r.json()
        assert isinstance(j["offset"], int) and isinstance(j["total_rooms"], int), j
        for k in ("next_batch", "prev_batch"):
            assert k not in j or isinstance(j[k], (int, str)), j
        for room_doc in j["rooms"]:
            for k, check in room_fields.items():
                assert k in room_doc and check(room_doc[k]), (k, room_doc)
    assert any(x["room_id"] == room_id for x in c.synapse(
        "/_synapse/admin/v1/rooms", {"limit": PAGE_SIZE, "search_term": "Ops"}).json()["rooms"])
    r = c.synapse("/_synapse/admin/v1/rooms?limit=0")
    assert r.status_code == 200 and r.json()["total_rooms"] >= 1
    r = c.synapse(f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room_id)}")
    assert r.status_code == 200, r.text
    detail = r.json()
    for k, check in dict(room_fields, topic=opt(is_str), avatar=opt(is_str),
                         joined_local_devices=is_uint, forgotten=is_bool).items():
        assert k in detail and check(detail[k]), (k, detail)
    r = c.synapse(f"/_synapse/admin/v1/rooms/{urllib.parse.quote(room_id)}/members")
    assert r.status_code == 200 and me in r.json()["members"] and r.json()["total"] >= 1

    # Token refresh (stores/auth.ts), then the API still answers; logout.
    c.refresh_tokens()
    assert c.mas("GET", "/users", {"count": "only"}).status_code == 200
    c.logout()
    assert check_error(c.mas("GET", "/users", {"count": "only"}), 401)


# --------------------------------------------------------- personal sessions

def cc_token(s, client_id=CLIENT_ID, scope="urn:mas:admin"):
    r = requests.post(s.url + "/oauth2/token", data={"grant_type": "client_credentials",
                                                     "scope": scope},
                      auth=(client_id, SECRET), timeout=10)
    return r


def admin_console(s):
    name = "ad" + it.uuid.uuid4().hex[:8]
    s.admin_user(name, "pw12345678", admin=True)
    c = Console(s)
    c.login(name, "pw12345678")
    return c


def test_personal_sessions(s):
    c = admin_console(s)
    u = s.register()
    uid = c.mas("GET", "/users/by-username/" + u["user_id"][1:].split(":")[0]).json()["data"]["id"]
    # Bad requests.
    assert check_error(c.mas("POST", "/personal-sessions", body={
        "actor_user_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "human_name": "x",
        "scope": "openid"}), 404) == "User not found"
    assert check_error(c.mas("POST", "/personal-sessions", body={
        "actor_user_id": uid, "human_name": "x", "scope": "bogus scope!"}), 400)
    assert check_error(c.mas("POST", "/personal-sessions", body={"human_name": "x"}), 400)
    # A token acting as the user, with a device.
    r = c.mas("POST", "/personal-sessions", body={
        "actor_user_id": uid, "human_name": "Backup job",
        "scope": "urn:matrix:client:api:* urn:matrix:client:device:PATDEV1"})
    a = check_single(r, "personal-session", 201)
    psid, tok = r.json()["data"]["id"], a["access_token"]
    assert a["expires_at"] is None and a["revoked_at"] is None
    assert a["owner_user_id"] and is_ulid(a["owner_user_id"]) and a["owner_client_id"] is None
    w = s.api("GET", "/_matrix/client/v3/account/whoami", tok)
    assert w.status_code == 200, w.text
    assert w.json()["user_id"] == u["user_id"] and w.json()["device_id"] == "PATDEV1"
    # Not an admin token: the Synapse Admin API refuses it.
    assert s.api("GET", "/_synapse/admin/v2/users", tok).status_code == 403
    # Activity is recorded on use.
    got = check_single(c.mas("GET", f"/personal-sessions/{psid}"), "personal-session")
    assert got["last_active_at"] and "access_token" not in got
    # Introspection knows it.
    intro = requests.post(s.url + "/oauth2/introspect", data={"token": tok},
                          auth=(CLIENT_ID, SECRET), timeout=10)
    assert intro.json()["active"] is True and intro.json()["device_id"] == "PATDEV1"
    # Regenerate: the old token dies at once, the new one works.
    r = c.mas("POST", f"/personal-sessions/{psid}/regenerate", body={"expires_in": 60})
    new = check_single(r, "personal-session", 201)
    assert new["access_token"] != tok and new["expires_at"]
    assert s.api("GET", "/_matrix/client/v3/account/whoami", tok).status_code == 401
    assert s.api("GET", "/_matrix/client/v3/account/whoami",
                 new["access_token"]).status_code == 200
    # Another owner may not regenerate it (a client).
    cc = cc_token(s).json()["access_token"]
    r = s.api("POST", f"{A}/personal-sessions/{psid}/regenerate", cc, json_body={})
    assert check_error(r, 403)
    # Filters.
    def ids(q):
        doc = check_page(c.mas("GET", "/personal-sessions", q), "personal-session")
        return [d["id"] for d in doc["data"]]
    assert psid in ids({"filter[actor_user]": uid, "filter[status]": "active"})
    assert psid in ids({"filter[expires]": "true"}) and psid not in ids({"filter[expires]": "false"})
    assert psid in ids({"filter[expires_before]": "2099-01-01T00:00:00Z"})
    assert psid not in ids({"filter[expires_after]": "2099-01-01T00:00:00Z"})
    assert psid in ids({"filter[scope]": "urn:matrix:client:device:PATDEV1"})
    assert psid not in ids({"filter[scope]": "urn:mas:admin"})
    assert check_error(c.mas("GET", "/personal-sessions", {"filter[status]": "x"}), 400)
    # Revoke: token dead, device gone, second revoke 409, regenerate 422.
    rv = check_single(c.mas("POST", f"/personal-sessions/{psid}/revoke"), "personal-session")
    assert rv["revoked_at"] and rv["expires_at"] is None
    assert s.api("GET", "/_matrix/client/v3/account/whoami",
                 new["access_token"]).status_code == 401
    assert check_error(c.mas("POST", f"/personal-sessions/{psid}/revoke"), 409)
    assert check_error(c.mas("POST", f"/personal-sessions/{psid}/regenerate", body={}), 422)
    assert psid in ids({"filter[status]": "revoked"})
    assert psid not in ids({"filter[status]": "active"})
    assert check_error(c.mas("GET", "/personal-sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404)
    # A client-owned admin token: works on both admin APIs for an admin actor.
    me = c.mas("GET", "/users", {"filter[admin]": "true", "page[first]": 1}).json()["data"][0]
    r = s.api("POST", f"{A}/personal-sessions", cc, json_body={
        "actor_user_id": me["id"], "human_name": "admin script",
        "scope": "urn:mas:admin urn:synapse:admin:* urn:matrix:client:api:*"})
    adm = check_single(r, "personal-session", 201)
    assert adm["owner_client_id"] == CLIENT_ID and adm["owner_user_id"] is None
    assert s.api("GET", f"{A}/users", adm["access_token"]).status_code == 200
    assert s.api("GET", "/_synapse/admin/v2/users", adm["access_token"]).status_code == 200
    # An expired token stops working.
    r = c.mas("POST", "/personal-sessions", body={
        "actor_user_id": uid, "human_name": "short", "scope": "urn:matrix:client:api:*",
        "expires_in": 1})
    short = check_single(r, "personal-session", 201)["access_token"]
    time.sleep(1.2)
    assert s.api("GET", "/_matrix/client/v3/account/whoami", short).status_code == 401


# --------------------------------------------------------------- policy data

def test_policy_data(s):
    tok = cc_token(s).json()["access_token"]
    call = lambda m, p, b=None: s.api(m, A + p, tok, json_body=b)
    assert check_error(call("GET", "/policy-data/latest"), 404) == "No policy data found"
    assert check_error(call("POST", "/policy-data", {"data": {"admin_clients": "x"}}), 400)
    assert check_error(call("POST", "/policy-data", {}), 400)
    # Before: the other client cannot get an admin token.
    assert cc_token(s, OTHER_ID).status_code == 400
    r = call("POST", "/policy-data", {"data": {"admin_clients": [CLIENT_ID, OTHER_ID],
                                               "hello": "world"}})
    d = check_single(r, "policy-data", 201)
    pid = r.json()["data"]["id"]
    assert d["data"]["hello"] == "world"
    latest = call("GET", "/policy-data/latest")
    assert check_single(latest, "policy-data")["data"] == d["data"]
    assert latest.json()["data"]["id"] == pid
    assert check_single(call("GET", f"/policy-data/{pid}"), "policy-data")["data"] == d["data"]
    assert check_error(call("GET", "/policy-data/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404)
    # The new data is in force: the other client may now use the admin API.
    other = cc_token(s, OTHER_ID)
    assert other.status_code == 200, other.text
    assert s.api("GET", A + "/users", other.json()["access_token"]).status_code == 200
    # A newer version wins; the first stays readable.
    r = call("POST", "/policy-data", {"data": {"admin_clients": [CLIENT_ID]}})
    pid2 = r.json()["data"]["id"]
    assert call("GET", "/policy-data/latest").json()["data"]["id"] == pid2
    assert call("GET", f"/policy-data/{pid}").status_code == 200
    assert s.api("GET", A + "/users", other.json()["access_token"]).status_code == 403


# ------------------------------------------------ clients, activity, filters

def test_clients_activity_and_session_filters(s):
    c = admin_console(s)
    doc = check_page(c.mas("GET", "/oauth2-clients", {"page[first]": 100}), "oauth2-client",
                     True)
    by_cid = {d["attributes"]["client_id"]: d for d in doc["data"]}
    assert by_cid[CLIENT_ID]["attributes"]["is_static"] is True
    mine = by_cid[c.client_id]
    assert mine["id"] == c.client_id and mine["attributes"]["is_static"] is False
    assert mine["attributes"]["client_name"] == "Element Admin"
    assert mine["attributes"]["redirect_uris"] == [REDIRECT_URI]
    stat = check_page(c.mas("GET", "/oauth2-clients", {"filter[client-kind]": "static"}),
                      "oauth2-client", True)
    assert {d["attributes"]["client_id"] for d in stat["data"]} == {CLIENT_ID, OTHER_ID}
    act = check_page(c.mas("GET", "/oauth2-clients", {"filter[has-active-sessions]": "true"}),
                     "oauth2-client")
    assert c.client_id in {d["attributes"]["client_id"] for d in act["data"]}
    check_single(c.mas("GET", f"/oauth2-clients/{c.client_id}"), "oauth2-client")
    assert check_error(c.mas("GET", "/oauth2-clients/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404)
    # Our own OAuth session: client ID is the client's resource ID, activity
    # recorded with the caller's address and user agent.
    # (activity is written after the answer: wait for the earlier writes.)
    c.http.headers.update({"User-Agent": "ElementAdminTest/1.0"})
    for _ in range(20):
        time.sleep(0.2)
        doc = check_page(c.mas("GET", "/oauth2-sessions", {"filter[client]": c.client_id,
                                                           "filter[status]": "active"}),
                         "oauth2-session")
        if doc["data"][0]["attributes"]["user_agent"] == "ElementAdminTest/1.0":
            break
    assert len(doc["data"]) == 1
    a = doc["data"][0]["attributes"]
    assert a["client_id"] == c.client_id
    assert a["last_active_at"] and a["last_active_ip"] == "127.0.0.1"
    assert a["user_agent"] == "ElementAdminTest/1.0"
    sid = doc["data"][0]["id"]
    ids = lambda q: [d["id"] for d in check_page(c.mas("GET", "/oauth2-sessions", q),
                                                 "oauth2-session")["data"]]
    assert sid in ids({"filter[last-active-after]": "2000-01-01T00:00:00Z"})
    assert sid not in ids({"filter[last-active-before]": "2000-01-01T00:00:00Z"})
    assert sid in ids({"filter[created-before]": "2099-01-01T00:00:00Z"})
    assert sid not in ids({"filter[created-after]": "2099-01-01T00:00:00Z"})
    assert sid in ids({"filter[scope]": "urn:mas:admin"})
    assert sid not in ids({"filter[scope]": "openid"})
    assert check_error(c.mas("GET", "/oauth2-sessions",
                             {"filter[last-active-after]": "yesterday"}), 400)
    # Browser sessions: the login page's address and user agent.
    doc = check_page(c.mas("GET", "/user-sessions", {"filter[status]": "active"}),
                     "user-session")
    assert any(d["attributes"]["last_active_ip"] == "127.0.0.1" and d["attributes"]["user_agent"]
               for d in doc["data"])
    # Compatibility sessions: a password login, used once.
    u = s.register()
    r = requests.post(s.url + "/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": u["user_id"]},
        "password": u["password"]}, timeout=10)
    assert r.status_code == 200, r.text
    assert s.api("GET", "/_matrix/client/v3/account/whoami",
                 r.json()["access_token"]).status_code == 200
    doc = check_page(c.mas("GET", "/compat-sessions",
                           {"filter[last-active-after]": "2000-01-01T00:00:00Z"}),
                     "compat-session")
    assert any(d["attributes"]["device_id"] == r.json()["device_id"] for d in doc["data"])
