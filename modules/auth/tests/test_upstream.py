"""
Upstream OIDC login (au_upstream.c) against the small provider of
oidc_provider.py over real HTTP on loopback, both engines: the account is
created from the claims (localpart, displayname) and linked, a second login
reuses the link, the code flow of an OAuth client continues after it, a
logged-in user links a provider, and bad answers (nonce, signature, issuer,
audience, expiry) and state mismatches are refused.
"""
import re
import urllib.parse

import pytest
import requests

from conftest import it
from oidc_provider import Provider
from test_auth_flow import Flow, register_client, whoami


@pytest.fixture(params=["RS256", "ES256"])
def idp(request):
    p = Provider(alg=request.param).start()
    yield p
    p.stop()


def _yaml(idp, method="client_secret_basic"):
    return (
        "ip_range_whitelist: ['127.0.0.1/32']\n"
        "auth:\n"
        "  delegate_homeserver: true\n"
        "  upstream_oauth2:\n"
        "    providers:\n"
        "      - id: testidp\n"
        "        human_name: TestIdP\n"
        f"        issuer: \"{idp.issuer}\"\n"
        f"        client_id: {idp.client_id}\n"
        f"        client_secret: {idp.client_secret}\n"
        f"        token_endpoint_auth_method: {method}\n"
        "        scope: \"openid profile\"\n"
        "        claims_imports:\n"
        "          localpart: {action: force, template: \"{{ user.preferred_username }}\"}\n"
        "          displayname: {action: suggest, template: \"{{ user.name }}\"}\n"
    )


@pytest.fixture(params=it.engines())
def up_server(request, idp):
    s = it.Server(request.param, extra_yaml=_yaml(idp))
    s.start()
    yield s
    s.cleanup()


def upstream_login(s, browser, query=""):
    """Button → provider → callback; returns the callback's answer."""
    r = browser.get(f"{s.url}/upstream/authorize/testidp{query}", allow_redirects=False,
                    timeout=10)
    assert r.status_code == 303, r.text
    loc = r.headers["Location"]
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(loc).query))
    assert q["code_challenge_method"] == "S256" and q["nonce"] and q["state"]
    assert q["redirect_uri"] == f"{s.url}/upstream/callback/testidp"
    r = requests.get(loc, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    return browser.get(r.headers["Location"], allow_redirects=False, timeout=30)


def displayname(s, user_id):
    r = requests.get(f"{s.url}/_matrix/client/v3/profile/{urllib.parse.quote(user_id)}"
                     "/displayname", timeout=10)
    return r.json().get("displayname") if r.status_code == 200 else None


def test_login_creates_then_reuses_link(up_server, idp):
    s = up_server
    b = requests.Session()
    r = upstream_login(s, b)
    assert r.status_code == 200, r.text
    user_id = f"@alice:{s.server_name}"
    assert user_id in r.text
    assert displayname(s, user_id) == "Alice A."
    # The token exchange used PKCE and client_secret_basic.
    assert idp.token_requests[-1]["code_verifier"]
    assert "client_secret" not in idp.token_requests[-1]
    # Second login, another browser, the claim changed: the link decides.
    idp.claims = {"sub": "alice-sub", "preferred_username": "somebody-else", "name": "X"}
    r = upstream_login(s, requests.Session())
    assert r.status_code == 200 and user_id in r.text, r.text
    # A new subject whose localpart is taken is refused, not merged.
    idp.claims = {"sub": "other-sub", "preferred_username": "alice"}
    r = upstream_login(s, requests.Session())
    assert r.status_code == 409, r.text


def test_code_flow_through_upstream(up_server, idp):
    s = up_server
    client = register_client(s).json()
    f = Flow(s, client)
    page = f.login_page()
    m = re.search(r'href="([^"]*upstream/authorize/testidp[^"]*)"', page.text)
    assert m and "TestIdP" in page.text, page.text
    button = m.group(1).replace("&amp;", "&")
    grant = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(button).query))["grant"]
    idp.claims = {"sub": "bob-sub", "preferred_username": "Bob", "name": "Bob B."}
    r = upstream_login(s, f.browser, "?grant=" + urllib.parse.quote(grant))
    q = f.consent(r)
    tok = f.exchange(q["code"])
    assert tok.status_code == 200, tok.text
    w = whoami(s, tok.json()["access_token"])
    assert w.status_code == 200 and w.json()["user_id"] == f"@bob:{s.server_name}"


def test_logged_in_user_links_provider(up_server, idp):
    s = up_server
    u = s.register(username="carol")
    f = Flow(s, register_client(s).json())
    f.consent(f.login("carol", u["password"]))
    idp.claims = {"sub": "carol-at-idp", "preferred_username": "ignored"}
    r = upstream_login(s, f.browser, "?link=1")
    assert r.status_code == 303 and r.headers["Location"].endswith("/account/"), r.text
    r = upstream_login(s, requests.Session())
    assert r.status_code == 200 and f"@carol:{s.server_name}" in r.text, r.text


@pytest.mark.parametrize("tamper", ["nonce", "sig", "iss", "aud", "exp"])
def test_bad_id_token_refused(make_server, idp, tamper):
    s = make_server("sqlite", extra_yaml=_yaml(idp, "client_secret_post"))
    s.start()
    idp.tamper = tamper
    r = upstream_login(s, requests.Session())
    assert r.status_code == 400, r.text
    assert "@alice" not in r.text
    # client_secret_post sent the secret in the form
    assert idp.token_requests[-1]["client_secret"] == idp.client_secret
    # The provider's next, honest answer still works.
    r = upstream_login(s, requests.Session())
    assert r.status_code == 200, r.text


def test_state_mismatch_refused(make_server, idp):
    s = make_server("sqlite", extra_yaml=_yaml(idp))
    s.start()
    b = requests.Session()
    r = b.get(f"{s.url}/upstream/authorize/testidp", allow_redirects=False, timeout=10)
    r = requests.get(r.headers["Location"], allow_redirects=False, timeout=10)
    cb = r.headers["Location"]
    # Forged state
    bad = re.sub(r"state=[^&]*", "state=forged", cb)
    assert b.get(bad, allow_redirects=False, timeout=10).status_code == 400
    # Right state, another browser (no or another cookie)
    assert requests.get(cb, allow_redirects=False, timeout=10).status_code == 400
    # The right browser: fine once, then the state is used up
    assert b.get(cb, allow_redirects=False, timeout=30).status_code == 200
    assert b.get(cb, allow_redirects=False, timeout=10).status_code == 400
    # Unknown provider
    assert b.get(f"{s.url}/upstream/authorize/nope", timeout=10).status_code == 404


def test_ssrf_guard_applies(make_server, idp):
    """Without the whitelist the loopback provider is refused by the guard."""
    s = make_server("sqlite", extra_yaml=_yaml(idp).replace(
        "ip_range_whitelist: ['127.0.0.1/32']\n", ""))
    s.start()
    r = requests.get(f"{s.url}/upstream/authorize/testidp", allow_redirects=False, timeout=20)
    assert r.status_code == 502, r.text


def test_admin_api_links_and_providers(up_server, idp):
    from test_admin_api import ULID, call, user_token
    s = up_server
    tok, _, _ = user_token(s)
    assert upstream_login(s, requests.Session()).status_code == 200
    r = call(s, tok, "GET", "/upstream-oauth-links?filter[subject]=alice-sub&count=true")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["meta"]["count"] == 1 and len(d["data"]) == 1
    link = d["data"][0]
    assert link["type"] == "upstream-oauth-link" and ULID.match(link["id"])
    a = link["attributes"]
    assert a["provider_id"] == "testidp" and a["subject"] == "alice-sub"
    assert ULID.match(a["user_id"])
    r = call(s, tok, "GET", f"/upstream-oauth-links?filter[user]={a['user_id']}")
    assert [x["id"] for x in r.json()["data"]] == [link["id"]]
    assert call(s, tok, "GET", "/upstream-oauth-links?filter[subject]=nobody").json()["data"] == []
    assert call(s, tok, "GET", f"/upstream-oauth-links/{link['id']}").json()["data"]["id"] == link["id"]
    r = call(s, tok, "GET", "/upstream-oauth-providers")
    assert [(p["id"], p["attributes"]["issuer"]) for p in r.json()["data"]] == [
        ("testidp", idp.issuer)]
    assert call(s, tok, "GET", "/upstream-oauth-providers/nope").status_code == 404
    # Unlinked: the subject no longer reaches @alice (whose localpart is taken now).
    assert call(s, tok, "DELETE", f"/upstream-oauth-links/{link['id']}").status_code == 204
    assert call(s, tok, "GET", f"/upstream-oauth-links/{link['id']}").status_code == 404
    assert upstream_login(s, requests.Session()).status_code == 409
    assert requests.get(s.url + "/api/admin/v1/upstream-oauth-links", timeout=10).status_code == 401
