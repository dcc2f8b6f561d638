"""
claims_imports.localpart actions on the first upstream login
(au_upstream.c): `suggest` shows a page with the claim prefilled that the
user confirms or edits (CSRF, HTML-escaped, a taken name shows the page
again, the page's token is single use and bound to the browser), the
suggested display name can be declined; `ignore` lets the user choose;
`require` without the claim refuses; `force` without it asks.
"""
import html
import re

import pytest
import requests

from conftest import it
from oidc_provider import Provider
from test_upstream import displayname, upstream_login


@pytest.fixture
def idp():
    p = Provider(alg="RS256").start()
    yield p
    p.stop()


def server(idp, action, engine="sqlite"):
    s = it.Server(engine, extra_yaml=(
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
        "        scope: \"openid profile\"\n"
        "        claims_imports:\n"
        f"          localpart: {{action: {action}, template: \"{{{{ user.preferred_username }}}}\"}}\n"
        "          displayname: {action: suggest, template: \"{{ user.name }}\"}\n"))
    s.start()
    return s


def field(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, page)
    assert m, f"no {name} in page:\n{page}"
    return html.unescape(m.group(1))


def submit(s, b, page, username, displayname_on=True, **over):
    data = {"csrf": field(page, "csrf"), "token": field(page, "token"), "username": username}
    if displayname_on:
        data["import_displayname"] = "on"
    data.update(over)
    return b.post(s.url + "/upstream/register", data=data, allow_redirects=False, timeout=30)


@pytest.mark.parametrize("engine", it.engines())
def test_suggest_confirm_and_edit(idp, engine):
    s = server(idp, "suggest", engine)
    try:
        idp.claims = {"sub": "dora-sub", "preferred_username": "Dora<b>", "name": "Dora <D>"}
        b = requests.Session()
        r = upstream_login(s, b)
        assert r.status_code == 200 and "Choose your username" in r.text, r.text
        assert 'value="dora&lt;b&gt;"' in r.text and "Dora &lt;D&gt;" in r.text
        assert "Dora <D>" not in r.text
        # No CSRF, no account.
        assert submit(s, b, r.text, "dora", csrf="x").status_code == 403
        # An invalid name shows the page again (same token still works).
        r2 = submit(s, b, r.text, "dora<b>")
        assert r2.status_code == 400 and "not allowed" in r2.text
        # The user edits the suggestion; the display name is taken.
        r3 = submit(s, b, r2.text, "dora2")
        assert r3.status_code == 200 and f"@dora2:{s.server_name}" in r3.text, r3.text
        assert displayname(s, f"@dora2:{s.server_name}") == "Dora <D>"
        # Single use.
        assert submit(s, b, r2.text, "dora3").status_code in (400, 403)   # new cookie too
        # The link decides the next login: no page.
        r = upstream_login(s, requests.Session())
        assert r.status_code == 200 and f"@dora2:{s.server_name}" in r.text
        # A taken name: page again; display name declined.
        idp.claims = {"sub": "eve-sub", "preferred_username": "dora2", "name": "Eve"}
        b = requests.Session()
        r = upstream_login(s, b)
        assert 'value="dora2"' in r.text
        r2 = submit(s, b, r.text, "dora2")
        assert r2.status_code == 400 and "taken" in r2.text
        # Another browser cannot use the token.
        other = requests.Session()
        other.get(s.url + "/login", timeout=10)
        rx = other.post(s.url + "/upstream/register", data={
            "csrf": field(other.get(s.url + "/login", timeout=10).text, "csrf"),
            "token": field(r2.text, "token"), "username": "mallory"}, timeout=10)
        assert rx.status_code == 400
        r3 = submit(s, b, r2.text, "eve", displayname_on=False)
        assert r3.status_code == 200 and f"@eve:{s.server_name}" in r3.text, r3.text
        assert displayname(s, f"@eve:{s.server_name}") in (None, "eve")
    finally:
        s.cleanup()


def test_ignore_require_force(idp):
    s = server(idp, "ignore")
    try:
        idp.claims = {"sub": "f-sub", "preferred_username": "frank", "name": "F"}
        b = requests.Session()
        r = upstream_login(s, b)
        assert r.status_code == 200 and 'name="username" type="text"' in r.text
        assert 'value=""' in r.text                     # nothing suggested
        r = submit(s, b, r.text, "frankie")
        assert f"@frankie:{s.server_name}" in r.text
    finally:
        s.cleanup()
    s = server(idp, "require")
    try:
        idp.claims = {"sub": "g-sub", "name": "G"}
        r = upstream_login(s, requests.Session())
        assert r.status_code == 400
    finally:
        s.cleanup()
    s = server(idp, "force")
    try:
        idp.claims = {"sub": "h-sub", "name": "H"}
        b = requests.Session()
        r = upstream_login(s, b)
        assert r.status_code == 200 and "Choose your username" in r.text
        r = submit(s, b, r.text, "henry")
        assert f"@henry:{s.server_name}" in r.text
        idp.claims = {"sub": "i-sub", "preferred_username": "ivy"}
        r = upstream_login(s, requests.Session())      # present: no page
        assert r.status_code == 200 and f"@ivy:{s.server_name}" in r.text
    finally:
        s.cleanup()
