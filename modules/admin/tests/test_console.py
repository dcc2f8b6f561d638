"""
The admin console's files as served by ad_console.c (the page itself is
driven in Chromium by tests/clients/console.spec.mjs): the redirect to the
trailing slash, index.html and its assets with the strict CSP and the other
security headers, ETag / If-None-Match, the generated config.json, nothing
outside the known files (traversal, encoded slashes, dot-files, sub-paths),
GET only, and the same files on the `web` resource.
"""
import http.client
import json
import urllib.parse

import pytest


@pytest.fixture
def hs(make_server):
    s = make_server("sqlite", modules=["homeserver", "admin"])
    s.start()
    return s


def raw_get(s, path, headers=None, method="GET"):
    """A request whose path is sent exactly as given (no client-side normalisation)."""
    u = urllib.parse.urlsplit(s.url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, body


def test_redirects_to_trailing_slash(hs):
    st, h, _ = raw_get(hs, "/admin")
    assert st == 301
    assert h["location"] == "/admin/"


def test_index_and_assets_with_security_headers(hs):
    st, h, body = raw_get(hs, "/admin/")
    assert st == 200
    assert h["content-type"].startswith("text/html")
    assert b'<script type="module" src="admin.js">' in body
    assert b"<script>" not in body and b" style=" not in body   # nothing inline
    csp = h["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-cache"
    for name, ctype in (("admin.js", "text/javascript"), ("admin.css", "text/css")):
        st, h2, b2 = raw_get(hs, "/admin/" + name)
        assert st == 200 and h2["content-type"].startswith(ctype) and len(b2) > 1000
    st, h3, _ = raw_get(hs, "/admin/index.html")
    assert st == 200 and h3["etag"] == h["etag"]


def test_etag_revalidation(hs):
    _, h, _ = raw_get(hs, "/admin/admin.js")
    st, h2, body = raw_get(hs, "/admin/admin.js", {"If-None-Match": h["etag"]})
    assert st == 304 and body == b""
    st, _, _ = raw_get(hs, "/admin/admin.js", {"If-None-Match": '"0000000000000000"'})
    assert st == 200


def test_config_json(hs):
    st, h, body = raw_get(hs, "/admin/config.json")
    assert st == 200 and h["content-type"] == "application/json"
    c = json.loads(body)
    assert c["homeserver"] == hs.url + "/"
    assert c["server_name"] == hs.server_name
    assert c["console_path"] == "/admin/"


@pytest.mark.parametrize("path", [
    "/admin/../README.md", "/admin/..%2fadmin.js", "/admin/%2e%2e/%2e%2e/etc/passwd",
    "/admin/.hidden", "/admin/x/admin.js", "/admin/admin.js/", "/admin/nope.js",
    "/admin/admin.js%00.css", "/admin/%2fetc%2fpasswd", "/admin/ad_console.c",
])
def test_nothing_else_is_served(hs, path):
    st, _, body = raw_get(hs, path)
    assert st in (400, 404), (path, st)
    assert b"root:" not in body and b"#include" not in body


def test_get_only(hs):
    st, _, _ = raw_get(hs, "/admin/index.html", method="POST")
    assert st in (404, 405)
    st, h, body = raw_get(hs, "/admin/index.html", method="HEAD")
    assert st == 200 and body == b"" and int(h["content-length"]) > 1000


def test_also_on_the_web_resource(make_server):
    # A listener with only `web` (an admin vhost) still serves the console.
    s = make_server("sqlite", modules=["homeserver", "admin"])
    cfg = open(s.config_path).read().replace(
        "names: [client, federation, media, admin, metrics, health, web, auth]",
        "names: [client, web, health]")
    with open(s.config_path, "w") as f:
        f.write(cfg)
    s.start()
    st, h, body = raw_get(s, "/admin/")
    assert st == 200 and b"mxstack admin" in body
    assert "default-src 'self'" in h["content-security-policy"]
