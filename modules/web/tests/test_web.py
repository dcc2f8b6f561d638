"""
The web module against the real binary: Element Web hosting from a fixture
directory shaped like a release (headers, caching, ETag/304, ranges,
precompressed siblings, traversal attempts, SPA fallback), the generated
config.json, the well-known documents, and the landing page when Element
Web is missing.  Requests go through http.client so that paths reach the
server byte for byte and bodies are never decoded.
"""
import gzip
import http.client
import importlib.util
import json
import os
import time

import pytest

# The integration suite's fixtures (tests/integration/conftest.py), loaded
# under their own module name: a conftest.py here would shadow that one for
# the integration tests that `from conftest import ...` in the same run.
_IT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                   "tests", "integration", "conftest.py")
_spec = importlib.util.spec_from_file_location("mx_integration_conftest", _IT)
_it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_it)
make_server = _it.make_server

SECRET = b"top secret, outside the root\n"
INDEX = b"<!DOCTYPE html><html><head><title>Element</title></head><body>app</body></html>\n"
BUNDLE_JS = b"console.log('bundle');\n" * 100


def build_release(base):
    """A directory like an unpacked Element Web tarball, plus a secret beside it."""
    root = os.path.join(base, "element-web")
    os.makedirs(os.path.join(root, "bundles", "1a2b3c4d5e6f"))
    os.makedirs(os.path.join(root, "i18n"))
    os.makedirs(os.path.join(root, "img"))
    with open(os.path.join(base, "secret.txt"), "wb") as f:
        f.write(SECRET)
    files = {
        "index.html": INDEX,
        "config.sample.json": b'{"brand": "sample"}\n',
        "version": b"v1.11.100\n",
        "i18n/en_EN.json": b'{"Hello": "Hello"}\n',
        "bundles/1a2b3c4d5e6f/x.js": BUNDLE_JS,
        "bundles/1a2b3c4d5e6f/x.js.gz": gzip.compress(BUNDLE_JS),
        "bundles/1a2b3c4d5e6f/x.js.br": b"BROTLI-PRETEND",
        "vendor.8f9e0d1c2b.css": b"body{}\n",
        "img/logo.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 32,
        "plain.txt": b"0123456789abcdefghij",
        ".hidden": b"dotfile",
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    os.symlink(os.path.join(base, "secret.txt"), os.path.join(root, "escape.txt"))
    os.symlink("../secret.txt", os.path.join(root, "escape2.txt"))
    os.symlink(base, os.path.join(root, "escapedir"))
    os.symlink("plain.txt", os.path.join(root, "alias.txt"))   # inside: allowed
    return root


def request(srv, path, method="GET", headers=None, host=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    h = dict(headers or {})
    if host:
        h["Host"] = host
    c.putrequest(method, path, skip_host=bool(host), skip_accept_encoding=True)
    for k, v in h.items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, body


WEB_YAML = """web:
  element_web_path: {root}
  brand: "Acme Chat"
  default_theme: dark
  element_call_url: https://call.example.org
  identity_server: https://id.example.org
  setting_defaults: {{"UIFeature.feedback": false}}
  extra_config:
    show_labs_settings: true
    setting_defaults: {{"custom": 1}}
  support_page: https://example.org/help
  support_contacts:
    - {{matrix_id: "@admin:example.org", role: m.role.admin}}
rtc:
  livekit_service_url: https://mrtc.example.org
"""


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(str(tmp_path_factory.mktemp("web")))


@pytest.fixture
def srv(make_server, release):
    s = make_server("sqlite", modules=["web"],
                    extra_yaml=WEB_YAML.format(root=release))
    s.start()
    return s


def assert_security_headers(h):
    assert h["content-security-policy"] == "frame-ancestors 'self'"
    assert h["x-frame-options"] == "SAMEORIGIN"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"


# ------------------------------------------------------------- static files

def test_index_and_headers(srv):
    st, h, body = request(srv, "/")
    assert st == 200 and body == INDEX
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["cache-control"] == "no-cache"
    assert_security_headers(h)
    assert h["etag"].startswith('"') and "last-modified" in h
    st, h2, body = request(srv, "/index.html")
    assert st == 200 and body == INDEX and h2["etag"] == h["etag"]


def test_mime_types_and_cache_policy(srv):
    cases = {
        "/version": ("application/octet-stream", "no-cache"),
        "/i18n/en_EN.json": ("application/json", "no-cache"),
        "/vendor.8f9e0d1c2b.css": ("text/css; charset=utf-8",
                                   "public, max-age=31536000, immutable"),
        "/bundles/1a2b3c4d5e6f/x.js": ("text/javascript; charset=utf-8",
                                       "public, max-age=31536000, immutable"),
        "/img/logo.png": ("image/png", None),
        "/config.sample.json": ("application/json", "no-cache"),
    }
    for path, (ctype, cc) in cases.items():
        st, h, _ = request(srv, path)
        assert st == 200, path
        assert h["content-type"] == ctype, path
        assert h.get("cache-control") == cc, path
        assert_security_headers(h)


def test_head(srv):
    st, h, body = request(srv, "/plain.txt", method="HEAD")
    assert st == 200 and body == b"" and h["content-length"] == "20"


def test_etag_and_last_modified(srv):
    st, h, _ = request(srv, "/plain.txt")
    etag, lm = h["etag"], h["last-modified"]
    st, h2, body = request(srv, "/plain.txt", headers={"If-None-Match": etag})
    assert st == 304 and body == b"" and h2["etag"] == etag
    st, _, _ = request(srv, "/plain.txt", headers={"If-None-Match": '"nope", ' + etag})
    assert st == 304
    st, _, _ = request(srv, "/plain.txt", headers={"If-None-Match": "W/" + etag})
    assert st == 304
    st, _, _ = request(srv, "/plain.txt", headers={"If-None-Match": '"other"'})
    assert st == 200
    st, _, _ = request(srv, "/plain.txt", headers={"If-Modified-Since": lm})
    assert st == 304
    st, _, _ = request(srv, "/plain.txt",
                       headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert st == 200
    st, _, _ = request(srv, "/plain.txt", headers={"If-Modified-Since": "garbage"})
    assert st == 200
    # If-None-Match wins over If-Modified-Since
    st, _, _ = request(srv, "/plain.txt", headers={"If-None-Match": '"other"',
                                                   "If-Modified-Since": lm})
    assert st == 200


def test_ranges(srv):
    data = b"0123456789abcdefghij"
    st, h, body = request(srv, "/plain.txt", headers={"Range": "bytes=2-5"})
    assert st == 206 and body == data[2:6]
    assert h["content-range"] == "bytes 2-5/20" and h["content-length"] == "4"
    st, h, body = request(srv, "/plain.txt", headers={"Range": "bytes=15-"})
    assert st == 206 and body == data[15:]
    st, h, body = request(srv, "/plain.txt", headers={"Range": "bytes=-3"})
    assert st == 206 and body == data[-3:] and h["content-range"] == "bytes 17-19/20"
    st, h, body = request(srv, "/plain.txt", headers={"Range": "bytes=10-99999999999999999999999"})
    assert st == 206 and body == data[10:]
    st, h, body = request(srv, "/plain.txt", headers={"Range": "bytes=-99999999999999999999999"})
    assert st == 206 and body == data
    for bad in ("bytes=20-", "bytes=99999999999999999999999-", "bytes=-0"):
        st, h, body = request(srv, "/plain.txt", headers={"Range": bad})
        assert st == 416, bad
        assert h["content-range"] == "bytes */20"
    for ignored in ("bytes=5-2", "bytes=abc", "items=0-1", "bytes=0-1,4-5", "bytes=--1",
                    "bytes=" + "9" * 5000):
        st, h, body = request(srv, "/plain.txt", headers={"Range": ignored})
        assert st == 200 and body == data, ignored
    # If-Range with a stale validator: the whole file
    st, h, body = request(srv, "/plain.txt", headers={"Range": "bytes=0-1", "If-Range": '"old"'})
    assert st == 200 and body == data
    st, h0, _ = request(srv, "/plain.txt")
    st, h, body = request(srv, "/plain.txt",
                          headers={"Range": "bytes=0-1", "If-Range": h0["etag"]})
    assert st == 206 and body == b"01"


def test_precompressed(srv):
    p = "/bundles/1a2b3c4d5e6f/x.js"
    st, h, body = request(srv, p, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert st == 200 and h["content-encoding"] == "br" and body == b"BROTLI-PRETEND"
    assert h["vary"] == "Accept-Encoding"
    assert h["content-type"] == "text/javascript; charset=utf-8"
    br_etag = h["etag"]
    st, h, body = request(srv, p, headers={"Accept-Encoding": "gzip"})
    assert st == 200 and h["content-encoding"] == "gzip" and gzip.decompress(body) == BUNDLE_JS
    assert h["etag"] != br_etag
    st, h, body = request(srv, p, headers={"Accept-Encoding": "br;q=0, gzip;q=0.5"})
    assert h["content-encoding"] == "gzip"
    st, h, body = request(srv, p)
    assert st == 200 and "content-encoding" not in h and body == BUNDLE_JS
    assert h["vary"] == "Accept-Encoding"
    st, h, body = request(srv, p, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in h and body == BUNDLE_JS
    st, h, _ = request(srv, p, headers={"Accept-Encoding": "br", "If-None-Match": br_etag})
    assert st == 304


def test_ready_made_headers(srv, release):
    """Whole small files leave with header lines built once per file and
    encoding: the same lines as the per-request path (a range), rebuilt when
    the file changes."""
    p = "/bundles/1a2b3c4d5e6f/x.js"
    for ae in (None, "gzip"):
        hdrs = {"Accept-Encoding": ae} if ae else {}
        st, whole, body = request(srv, p, headers=hdrs)
        st2, part, _ = request(srv, p, headers=dict(hdrs, Range="bytes=0-"))
        assert st == 200 and st2 == 206
        for k in ("content-range", "content-length", "date"):
            part.pop(k, None)
            whole.pop(k, None)
        assert whole == part, ae
    # The .gz file asked for by name is a file of its own, not an encoding.
    st, h, body = request(srv, p + ".gz", headers={"Accept-Encoding": "gzip"})
    assert st == 200 and "content-encoding" not in h and h["content-type"] == "application/gzip"
    assert gzip.decompress(body) == BUNDLE_JS
    st, h, _ = request(srv, p, headers={"Accept-Encoding": "gzip"})
    assert h["content-encoding"] == "gzip" and h["etag"].endswith('-gzip"')
    # 304: the validators, no type, no body.
    st, h304, body = request(srv, p, headers={"Accept-Encoding": "gzip", "If-None-Match": h["etag"]})
    assert st == 304 and body == b"" and h304["etag"] == h["etag"]
    assert "content-type" not in h304 and h304["vary"] == "Accept-Encoding"
    # Date (RFC 9110 6.6.1) on every answer, an IMF-fixdate.
    assert time.strptime(h["date"], "%a, %d %b %Y %H:%M:%S GMT")
    # A file changed in place is served anew (with a new ETag) within a second or so.
    f = os.path.join(release, "changing.txt")
    with open(f, "wb") as fh:
        fh.write(b"first")
    st, h1, body = request(srv, "/changing.txt")
    assert st == 200 and body == b"first"
    with open(f, "wb") as fh:
        fh.write(b"second version")
    deadline = time.time() + 5
    while time.time() < deadline and body == b"first":
        time.sleep(0.2)
        st, h2, body = request(srv, "/changing.txt")
    assert body == b"second version" and h2["etag"] != h1["etag"]
    assert h2["content-length"] == str(len(body))


def test_spa_fallback(srv):
    for path in ("/room/!abc:example.org", "/welcome", "/some/deep/route"):
        st, h, body = request(srv, path)
        assert st == 200 and body == INDEX, path
        assert h["cache-control"] == "no-cache"
    st, _, _ = request(srv, "/missing.js")
    assert st == 404
    st, _, _ = request(srv, "/bundles/nope/missing.css")
    assert st == 404


def test_traversal_refused(srv):
    attempts = [
        "/../secret.txt", "/bundles/../../secret.txt", "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt", "/bundles/..%2f..%2fsecret.txt", "/%2e%2e%2fsecret.txt",
        "/..%5csecret.txt", "/bundles/%2e%2e/%2e%2e/secret.txt", "/escape.txt", "/escape2.txt",
        "/escapedir/secret.txt", "/.hidden", "/%2ehidden", "/bundles/%00x.js", "/%zz",
        "//secret.txt", "/./index.html",
    ]
    for path in attempts:
        st, _, body = request(srv, path)
        assert SECRET not in body, path
        assert b"dotfile" not in body, path
        assert st in (400, 403, 404), (path, st)
    # a symlink that stays inside the root is fine
    st, _, body = request(srv, "/alias.txt")
    assert st == 200 and body == b"0123456789abcdefghij"


def test_api_paths_not_swallowed(srv):
    st, h, body = request(srv, "/_matrix/client/v3/no_such_endpoint")
    assert st == 404 and json.loads(body)["errcode"] == "M_UNRECOGNIZED"


# ------------------------------------------------------------- config.json

def test_config_json(srv):
    st, h, body = request(srv, "/config.json?cachebuster=123")
    assert st == 200 and h["content-type"] == "application/json"
    assert h["cache-control"] == "no-cache"
    assert_security_headers(h)
    cfg = json.loads(body)
    hs = cfg["default_server_config"]["m.homeserver"]
    assert hs["base_url"] == srv.url and hs["server_name"] == srv.server_name
    assert cfg["default_server_config"]["m.identity_server"]["base_url"] == "https://id.example.org"
    assert cfg["brand"] == "Acme Chat" and cfg["default_theme"] == "dark"
    assert cfg["disable_guests"] is False          # conftest enables guest access
    assert cfg["element_call"]["url"] == "https://call.example.org"
    assert cfg["element_call"]["use_exclusively"] is True
    assert cfg["features"]["feature_element_call_video_rooms"] is True
    assert cfg["show_labs_settings"] is True
    sd = cfg["setting_defaults"]
    assert sd["UIFeature.feedback"] is False and sd["custom"] == 1
    assert sd["urlPreviewsEnabled"] is True
    assert "UIFeature.registration" not in sd       # registration is enabled
    # Element Web asks for config.<hostname>.json first: same document
    st, h2, body2 = request(srv, "/config.chat.example.org.json", host="chat.example.org")
    assert st == 200 and json.loads(body2) == cfg
    st, _, _ = request(srv, "/config.json", headers={"If-None-Match": h["etag"]})
    assert st == 304


# -------------------------------------------------------------- well-known

def test_wellknown_client(srv):
    st, h, body = request(srv, "/.well-known/matrix/client")
    assert st == 200 and h["content-type"] == "application/json"
    assert h["access-control-allow-origin"] == "*"
    d = json.loads(body)
    assert d["m.homeserver"]["base_url"] == srv.url + "/"
    assert d["m.identity_server"]["base_url"] == "https://id.example.org"
    assert d["org.matrix.msc4143.rtc_foci"] == [
        {"type": "livekit", "livekit_service_url": "https://mrtc.example.org"}]
    assert "org.matrix.msc2965.authentication" not in d
    st, h, _ = request(srv, "/.well-known/matrix/client", method="POST")
    assert st == 405


def test_wellknown_server_and_support(srv):
    st, h, body = request(srv, "/.well-known/matrix/server")
    assert st == 200
    # Synapse: server_name's explicit port is kept
    assert json.loads(body) == {"m.server": srv.server_name}
    st, h, body = request(srv, "/.well-known/matrix/support")
    assert st == 200
    d = json.loads(body)
    assert d["support_page"] == "https://example.org/help"
    assert d["contacts"][0]["role"] == "m.role.admin"
    st, _, _ = request(srv, "/.well-known/matrix/other")
    assert st == 404


def test_wellknown_defaults(make_server, tmp_path):
    s = make_server("sqlite", modules=["web"], extra_yaml=(
        f"web:\n  element_web_path: {tmp_path}/none\n  server_delegation: matrix.example.org:443\n"
        "auth:\n  issuer: https://account.example.org/\n"))
    # The auth section belongs to a module that may not be built: only
    # start when the server accepts it.
    try:
        s.start()
    except RuntimeError as e:
        pytest.skip(f"auth section not accepted without the auth module: {e}")
    st, _, body = request(s, "/.well-known/matrix/server")
    assert json.loads(body) == {"m.server": "matrix.example.org:443"}
    st, _, body = request(s, "/.well-known/matrix/support")
    assert st == 404
    d = json.loads(request(s, "/.well-known/matrix/client")[2])
    assert "org.matrix.msc4143.rtc_foci" not in d
    assert d["org.matrix.msc2965.authentication"] == {
        "issuer": "https://account.example.org/", "account": "https://account.example.org/account/"}


# ----------------------------------------------------------------- landing

def test_landing_page_then_install(make_server, tmp_path):
    ew = tmp_path / "ew"
    s = make_server("sqlite", modules=["web"],
                    extra_yaml=f"web:\n  element_web_path: {ew}\n  admin_url: /console/\n")
    s.start()
    st, h, body = request(s, "/")
    assert st == 200 and h["content-type"] == "text/html; charset=utf-8"
    assert_security_headers(h)
    text = body.decode()
    assert "fetch-element-web.sh" in text and str(ew) in text
    assert 'href="/console/"' in text and s.server_name in text
    assert "{{" not in text
    st, h, css = request(s, "/landing.css")
    assert st == 200 and h["content-type"] == "text/css; charset=utf-8" and b"body" in css
    st, _, body2 = request(s, "/some/app/route")
    assert st == 200 and body2 == body
    st, _, _ = request(s, "/missing.js")
    assert st == 404
    # config.json is served even before Element Web is there
    assert json.loads(request(s, "/config.json")[2])["default_server_config"]
    # unpacking Element Web while running replaces the landing page
    ew.mkdir()
    (ew / "index.html").write_bytes(INDEX)
    deadline = time.time() + 5
    while time.time() < deadline:
        if request(s, "/")[2] == INDEX:
            break
        time.sleep(0.2)
    assert request(s, "/")[2] == INDEX
