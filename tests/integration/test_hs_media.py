"""
Media repository: uploads (direct, create + async), downloads on the
authenticated (MSC3916) and legacy paths, thumbnails made with libvips,
the safety headers, de-duplication, limits, hostile files and URL previews.

Images are made with Pillow (Debian python3-pil) when it is installed, else
with a tiny hand-written PNG encoder.
"""
import glob
import io
import os
import struct
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

try:
    from PIL import Image
except ImportError:  # pragma: no cover
    Image = None


# ------------------------------------------------------------- images

def png_bytes(w, h, color=(200, 30, 30)):
    if Image:
        buf = io.BytesIO()
        Image.new("RGB", (w, h), color).save(buf, "PNG")
        return buf.getvalue()
    raw = b"".join(b"\x00" + bytes(color) * w for _ in range(h))
    return png_raw(w, h, zlib.compress(raw))


def png_raw(w, h, idat):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_bytes(w, h):
    if not Image:
        pytest.skip("python3-pil not installed")
    buf = io.BytesIO()
    img = Image.new("RGB", (w, h), (10, 120, 200))
    for x in range(0, w, 7):
        img.putpixel((x, x % h), (255, 255, 0))
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def image_size(data):
    if Image:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.format, im.size
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return "PNG", (w, h)


# ------------------------------------------------------------ helpers

def upload(server, token, data, ctype="image/png", filename=None, version="v3"):
    path = f"/_matrix/media/{version}/upload"
    if filename is not None:
        path += "?filename=" + urllib.parse.quote(filename)
    headers = {"Content-Type": ctype}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(server.url + path, data=data, headers=headers, timeout=30)


def mxc_parts(uri):
    assert uri.startswith("mxc://")
    server_name, media_id = uri[6:].split("/", 1)
    return server_name, media_id


def dl_auth(server, token, server_name, media_id, suffix=""):
    return server.api("GET", f"/_matrix/client/v1/media/download/{server_name}/{media_id}{suffix}",
                      token)


def dl_legacy(server, server_name, media_id, suffix="", version="v3"):
    return requests.get(f"{server.url}/_matrix/media/{version}/download/{server_name}/{media_id}{suffix}",
                        timeout=30)


def thumb(server, token, server_name, media_id, w, h, method="scale"):
    q = f"?width={w}&height={h}&method={method}"
    if token:
        return server.api("GET", f"/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}{q}", token)
    return requests.get(f"{server.url}/_matrix/media/v3/thumbnail/{server_name}/{media_id}{q}", timeout=30)


def content_files(server):
    return [p for p in glob.glob(os.path.join(server.dir, "media", "content", "*", "*", "*"))]


CSP = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
       "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")


# -------------------------------------------------------------- tests

def test_png_and_jpeg_round_trip(server):
    u = server.register()
    tok = u["access_token"]
    for data, ctype in ((png_bytes(64, 48), "image/png"), (jpeg_bytes(120, 80), "image/jpeg")):
        r = upload(server, tok, data, ctype, filename="pic.img")
        assert r.status_code == 200, r.text
        sn, mid = mxc_parts(r.json()["content_uri"])
        assert sn == server.server_name
        assert len(mid) == 24 and mid.isalnum()
        for resp in (dl_auth(server, tok, sn, mid), dl_legacy(server, sn, mid),
                     dl_legacy(server, sn, mid, version="r0")):
            assert resp.status_code == 200, resp.text
            assert resp.content == data
            assert resp.headers["Content-Type"] == ctype
            assert resp.headers["Content-Disposition"] == "inline; filename=pic.img"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Content-Security-Policy"] == CSP
            assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        # The file name in the path overrides the uploaded one, RFC 6266 encoded.
        r2 = dl_auth(server, tok, sn, mid, "/" + urllib.parse.quote("schön bild.png"))
        assert r2.status_code == 200
        assert r2.headers["Content-Disposition"] == \
            "inline; filename*=utf-8''sch%C3%B6n%20bild.png"


def test_authenticated_path_requires_token(server):
    u = server.register()
    r = upload(server, u["access_token"], b"hello", "text/plain")
    sn, mid = mxc_parts(r.json()["content_uri"])
    r = requests.get(f"{server.url}/_matrix/client/v1/media/download/{sn}/{mid}", timeout=10)
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
    r = requests.get(f"{server.url}/_matrix/client/v1/media/thumbnail/{sn}/{mid}?width=32&height=32",
                     timeout=10)
    assert r.status_code == 401
    assert requests.get(f"{server.url}/_matrix/client/v1/media/config", timeout=10).status_code == 401
    assert upload(server, None, b"x").status_code == 401
    # legacy download works without a token
    r = dl_legacy(server, sn, mid)
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["Content-Type"] == "text/plain; charset=UTF-8"
    # config
    r = server.api("GET", "/_matrix/client/v1/media/config", u["access_token"])
    assert r.status_code == 200 and r.json()["m.upload.size"] == 50 * 1024 * 1024
    r = server.api("GET", "/_matrix/media/v3/config", u["access_token"])
    assert r.status_code == 200 and r.json()["m.upload.size"] == 50 * 1024 * 1024


@pytest.mark.parametrize("w,h,method,expect", [
    (32, 32, "crop", (32, 32)),
    (96, 96, "crop", (96, 96)),
    (50, 50, "crop", (96, 96)),
    (320, 240, "scale", (320, 160)),
    (640, 480, "scale", (640, 320)),
    (800, 600, "scale", (800, 400)),
    (2000, 2000, "scale", (800, 400)),
])
def test_thumbnail_sizes(server, w, h, method, expect):
    u = server.register()
    tok = u["access_token"]
    data = jpeg_bytes(1000, 500)
    sn, mid = mxc_parts(upload(server, tok, data, "image/jpeg").json()["content_uri"])
    for attempt in range(2):   # generated, then from the cache
        r = thumb(server, tok, sn, mid, w, h, method)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "image/jpeg"
        fmt, size = image_size(r.content)
        assert fmt == "JPEG"
        assert size == expect


def test_thumbnail_png_source_and_legacy(server):
    u = server.register()
    tok = u["access_token"]
    sn, mid = mxc_parts(upload(server, tok, png_bytes(400, 400)).json()["content_uri"])
    r = thumb(server, None, sn, mid, 96, 96, "crop")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/png"
    assert image_size(r.content) == ("PNG", (96, 96))
    r = thumb(server, tok, sn, mid, 320, 240, "scale")
    assert image_size(r.content) == ("PNG", (240, 240))
    # small source is never scaled up
    sn, mid = mxc_parts(upload(server, tok, png_bytes(20, 10)).json()["content_uri"])
    r = thumb(server, tok, sn, mid, 640, 480, "scale")
    assert r.status_code == 200
    assert image_size(r.content)[1] == (20, 10)


def test_thumbnail_bad_params(server):
    u = server.register()
    tok = u["access_token"]
    sn, mid = mxc_parts(upload(server, tok, png_bytes(10, 10)).json()["content_uri"])
    r = server.api("GET", f"/_matrix/client/v1/media/thumbnail/{sn}/{mid}?height=3", tok)
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"
    r = server.api("GET", f"/_matrix/client/v1/media/thumbnail/{sn}/{mid}?width=x&height=3", tok)
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = server.api("GET", f"/_matrix/client/v1/media/thumbnail/{sn}/{mid}?width=3&height=3&method=zoom", tok)
    assert r.status_code == 400


def test_non_image_thumbnail(server):
    u = server.register()
    tok = u["access_token"]
    sn, mid = mxc_parts(upload(server, tok, b"just text", "text/plain").json()["content_uri"])
    r = thumb(server, tok, sn, mid, 32, 32, "crop")
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_UNKNOWN"
    assert "Cannot find any thumbnails" in r.json()["error"]
    # Claimed image type, but not an image: same clean answer.
    sn, mid = mxc_parts(upload(server, tok, b"<svg onload=alert(1)>", "image/png").json()["content_uri"])
    r = thumb(server, tok, sn, mid, 32, 32, "crop")
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"


def test_decompression_bomb_refused(server):
    u = server.register()
    tok = u["access_token"]
    # Declares 100000 x 100000 pixels; the IDAT is tiny and wrong.
    bomb = png_raw(100000, 100000, zlib.compress(b"\x00" * 1000))
    sn, mid = mxc_parts(upload(server, tok, bomb).json()["content_uri"])
    r = thumb(server, tok, sn, mid, 96, 96, "crop")
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_UNKNOWN"
    # the server is still fine
    assert server.api("GET", "/_matrix/client/versions").status_code == 200


def test_truncated_jpeg(server):
    u = server.register()
    tok = u["access_token"]
    data = jpeg_bytes(800, 600)
    sn, mid = mxc_parts(upload(server, tok, data[:len(data) // 3], "image/jpeg").json()["content_uri"])
    r = thumb(server, tok, sn, mid, 96, 96, "crop")
    assert r.status_code in (200, 400)
    if r.status_code == 400:
        assert r.json()["errcode"] == "M_UNKNOWN"
    else:
        assert image_size(r.content)[1] == (96, 96)
    # garbage after a JPEG header
    sn, mid = mxc_parts(upload(server, tok, b"\xff\xd8\xff\xe0" + os.urandom(3000),
                               "image/jpeg").json()["content_uri"])
    r = thumb(server, tok, sn, mid, 32, 32, "crop")
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"
    assert server.api("GET", "/_matrix/client/versions").status_code == 200


def test_create_and_async_upload(server):
    u = server.register()
    other = server.register()
    tok = u["access_token"]
    r = server.api("POST", "/_matrix/media/v1/create", tok)
    assert r.status_code == 200, r.text
    body = r.json()
    sn, mid = mxc_parts(body["content_uri"])
    assert body["unused_expires_at"] > 0
    # not uploaded yet
    r = server.api("GET", f"/_matrix/client/v1/media/download/{sn}/{mid}?timeout_ms=0", tok)
    assert r.status_code == 504 and r.json()["errcode"] == "M_NOT_YET_UPLOADED"
    url = f"{server.url}/_matrix/media/v3/upload/{sn}/{mid}?filename=a.txt"
    # only the creator
    r = requests.put(url, data=b"data!", headers={"Authorization": f"Bearer {other['access_token']}",
                                                   "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = requests.put(url, data=b"data!", headers={"Authorization": f"Bearer {tok}",
                                                   "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    r = requests.put(url, data=b"other", headers={"Authorization": f"Bearer {tok}",
                                                   "Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 409 and r.json()["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
    r = dl_auth(server, tok, sn, mid)
    assert r.status_code == 200 and r.content == b"data!"
    assert r.headers["Content-Disposition"] == "inline; filename=a.txt"
    # unknown / remote IDs
    r = requests.put(f"{server.url}/_matrix/media/v3/upload/{sn}/{'A' * 24}", data=b"x",
                     headers={"Authorization": f"Bearer {tok}"}, timeout=10)
    assert r.status_code == 404
    r = requests.put(f"{server.url}/_matrix/media/v3/upload/other.example/{mid}", data=b"x",
                     headers={"Authorization": f"Bearer {tok}"}, timeout=10)
    assert r.status_code == 404


def test_pending_limit(server):
    u = server.register()
    for _ in range(5):
        assert server.api("POST", "/_matrix/media/v1/create", u["access_token"]).status_code == 200
    r = server.api("POST", "/_matrix/media/v1/create", u["access_token"])
    assert r.status_code == 429
    assert r.json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert r.json()["retry_after_ms"] > 0


def test_dedup_one_file(server):
    u1, u2 = server.register(), server.register()
    data = png_bytes(33, 33, (1, 2, 3))
    before = len(content_files(server))
    r1 = upload(server, u1["access_token"], data)
    r2 = upload(server, u2["access_token"], data, filename="x.png")
    r3 = upload(server, u1["access_token"], data)
    uris = {r.json()["content_uri"] for r in (r1, r2, r3)}
    assert len(uris) == 3
    assert len(content_files(server)) == before + 1
    for uri in uris:
        sn, mid = mxc_parts(uri)
        assert dl_legacy(server, sn, mid).content == data


def test_oversize_413(make_server):
    s = make_server(extra_yaml="max_upload_size: 100K\n")
    s.start()
    u = s.register()
    r = upload(s, u["access_token"], b"x" * (100 * 1024 + 1), "application/octet-stream")
    assert r.status_code == 413
    assert r.json()["errcode"] == "M_TOO_LARGE"
    r = upload(s, u["access_token"], b"x" * (100 * 1024), "application/octet-stream")
    assert r.status_code == 200
    r = s.api("GET", "/_matrix/client/v1/media/config", u["access_token"])
    assert r.json()["m.upload.size"] == 100 * 1024
    # a body above http.max_body_size (10M) but within a larger upload size is accepted
    s2 = make_server(extra_yaml="max_upload_size: 12M\n")
    s2.start()
    u2 = s2.register()
    big = os.urandom(11 * 1024 * 1024)
    r = upload(s2, u2["access_token"], big, "application/octet-stream")
    assert r.status_code == 200, r.text
    sn, mid = mxc_parts(r.json()["content_uri"])
    assert dl_legacy(s2, sn, mid).content == big


def test_user_quota(make_server):
    s = make_server(extra_yaml="media_max_bytes_per_user: 1K\n")
    s.start()
    u = s.register()
    assert upload(s, u["access_token"], b"a" * 600, "text/plain").status_code == 200
    r = upload(s, u["access_token"], b"b" * 600, "text/plain")
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_RESOURCE_LIMIT_EXCEEDED"


@pytest.mark.parametrize("mid", ["..%2F..%2Fhomeserver.db", "..%2Fcontent", "%2E%2E",
                                 "abc", "A" * 23 + "!", "A" * 25, "A" * 23 + "%00"])
def test_bad_media_ids(server, mid):
    u = server.register()
    sn = server.server_name
    for r in (requests.get(f"{server.url}/_matrix/media/v3/download/{sn}/{mid}", timeout=10),
              server.api("GET", f"/_matrix/client/v1/media/download/{sn}/{mid}", u["access_token"]),
              requests.get(f"{server.url}/_matrix/media/v3/thumbnail/{sn}/{mid}?width=32&height=32",
                           timeout=10)):
        assert r.status_code in (400, 404), r.text
        assert r.headers["Content-Type"].startswith("application/json")


def test_unknown_and_remote_media(server):
    u = server.register()
    r = dl_legacy(server, server.server_name, "A" * 24)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = dl_auth(server, u["access_token"], "remote.example", "A" * 24)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = requests.get(f"{server.url}/_matrix/media/v3/download/remote.example/{'A' * 24}?allow_remote=false",
                     timeout=10)
    assert r.status_code == 404


def test_html_and_svg_served_as_attachment(server):
    u = server.register()
    tok = u["access_token"]
    for data, ctype in ((b"<html><script>alert(1)</script></html>", "text/html"),
                        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
                         "image/svg+xml"),
                        (b"\x00\x01", "application/octet-stream")):
        sn, mid = mxc_parts(upload(server, tok, data, ctype, filename="evil.html").json()["content_uri"])
        for r in (dl_legacy(server, sn, mid), dl_auth(server, tok, sn, mid)):
            assert r.status_code == 200
            assert r.headers["Content-Disposition"] == "attachment; filename=evil.html"
            assert r.headers["Content-Security-Policy"] == CSP
            assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_legacy_upload_paths(server):
    u = server.register()
    for v in ("v3", "r0", "v1"):
        r = upload(server, u["access_token"], b"v-" + v.encode(), "text/plain", version=v)
        assert r.status_code == 200, (v, r.text)


def test_preview_disabled_by_default(server):
    u = server.register()
    r = server.api("GET", "/_matrix/client/v1/media/preview_url?url=http://example.com/",
                   u["access_token"])
    assert r.status_code == 404
    assert r.json()["errcode"] == "M_UNRECOGNIZED"


class _Page(BaseHTTPRequestHandler):
    png = None

    def do_GET(self):
        if self.path.startswith("/page"):
            body = ("<html><head><title>Fallback &amp; title</title>"
                    "<!-- <meta property='og:title' content='commented'> -->"
                    "<script>var x = '<meta property=\"og:title\" content=\"script\">';</script>"
                    "<meta property=\"og:title\" content=\"Hello &quot;World&quot;\">"
                    "<meta name=description content='A page about things'>"
                    "<meta property='og:image' content='/img.png'>"
                    "</head><body>hi</body></html>").encode()
            ctype = "text/html; charset=utf-8"
        elif self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/page")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        elif self.path.startswith("/img.png"):
            body, ctype = _Page.png, "image/png"
        else:
            body, ctype = b"<html><head><title>Only title</title></head></html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_preview_enabled(make_server):
    _Page.png = png_bytes(50, 40)
    httpd = HTTPServer(("127.0.0.1", 0), _Page)
    port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        # SSRF guard: loopback refused unless whitelisted.
        s0 = make_server(extra_yaml="url_preview_enabled: true\n")
        s0.start()
        u0 = s0.register()
        r = s0.api("GET", f"/_matrix/client/v1/media/preview_url?url=http://127.0.0.1:{port}/page",
                   u0["access_token"])
        assert r.status_code in (403, 502), r.text
        s0.stop()

        s = make_server(extra_yaml="url_preview_enabled: true\nip_range_whitelist: ['127.0.0.1/32']\n")
        s.start()
        u = s.register()
        tok = u["access_token"]
        r = s.api("GET", f"/_matrix/client/v1/media/preview_url?url=http://127.0.0.1:{port}/redirect",
                  tok)
        assert r.status_code == 200, r.text
        og = r.json()
        assert og["og:title"] == 'Hello "World"'
        assert og["og:description"] == "A page about things"
        assert og["og:image"].startswith("mxc://")
        assert og["og:image:type"] == "image/png"
        sn, mid = mxc_parts(og["og:image"])
        assert dl_legacy(s, sn, mid).content == _Page.png
        r = s.api("GET", f"/_matrix/media/v3/preview_url?url=http://127.0.0.1:{port}/other", tok)
        assert r.status_code == 200
        assert r.json()["og:title"] == "Only title"
        # cached
        httpd.shutdown()
        r = s.api("GET", f"/_matrix/client/v1/media/preview_url?url=http://127.0.0.1:{port}/redirect",
                  tok)
        assert r.status_code == 200 and r.json()["og:title"] == 'Hello "World"'
        r = s.api("GET", "/_matrix/client/v1/media/preview_url", tok)
        assert r.status_code == 400
    finally:
        httpd.server_close()
