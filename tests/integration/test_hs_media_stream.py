"""
Media repository, second part: uploads streamed to disk (chunked and
sized bodies, the size limit and quotas enforced while streaming, clients
that leave mid-upload), downloads through the zero-copy file reply,
animated thumbnails (MSC2705 `animated=true`) and thumbnailer.so loaded on
first use (a clear 500 when it is missing).
"""
import glob
import hashlib
import io
import os
import socket
import time

import pytest
import requests

from test_hs_media import content_files, mxc_parts, png_bytes, upload

try:
    from PIL import Image
except ImportError:  # pragma: no cover
    Image = None

needs_pil = pytest.mark.skipif(Image is None, reason="python3-pil not installed")


def tmp_files(server):
    return glob.glob(os.path.join(server.dir, "media", "tmp", "*"))


def chunks(data, size=65536):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def upload_chunked(server, token, data, ctype="application/octet-stream"):
    """A body without Content-Length (Transfer-Encoding: chunked)."""
    return requests.post(server.url + "/_matrix/media/v3/upload", data=chunks(data),
                         headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"},
                         timeout=60)


def wait_until(cond, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def anim_bytes(fmt, w=200, h=150, frames=6):
    imgs = [Image.new("RGB", (w, h), (i * 40 % 256, 80, 255 - i * 40 % 256)) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, fmt, save_all=True, append_images=imgs[1:], duration=100, loop=0)
    return buf.getvalue()


def frames_of(data):
    im = Image.open(io.BytesIO(data))
    return im.format, im.size, getattr(im, "n_frames", 1)


def thumb_q(server, token, sn, mid, query):
    return server.api("GET", f"/_matrix/client/v1/media/thumbnail/{sn}/{mid}?{query}", token)


# ------------------------------------------------------------ streaming

def test_streamed_upload_sized_and_chunked(server):
    u = server.register()
    tok = u["access_token"]
    data = os.urandom(3 * 1024 * 1024 + 17)
    for r in (upload(server, tok, data, "application/octet-stream"),
              upload_chunked(server, tok, data)):
        assert r.status_code == 200, r.text
        sn, mid = mxc_parts(r.json()["content_uri"])
        d = server.api("GET", f"/_matrix/client/v1/media/download/{sn}/{mid}", tok)
        assert d.status_code == 200
        assert int(d.headers["Content-Length"]) == len(data)
        assert d.content == data
    # content-addressed by SHA-256: both uploads share one file, named by the hash
    sha = hashlib.sha256(data).hexdigest()
    files = [os.path.basename(p) for p in content_files(server)]
    assert files.count(sha) == 1
    assert tmp_files(server) == []


def test_streamed_empty_upload(server):
    u = server.register()
    r = upload(server, u["access_token"], b"", "text/plain")
    assert r.status_code == 200, r.text
    sn, mid = mxc_parts(r.json()["content_uri"])
    d = server.api("GET", f"/_matrix/client/v1/media/download/{sn}/{mid}", u["access_token"])
    assert d.status_code == 200 and d.content == b""


def test_streamed_async_upload(server):
    u = server.register()
    tok = u["access_token"]
    r = server.api("POST", "/_matrix/media/v1/create", tok)
    assert r.status_code == 200
    sn, mid = mxc_parts(r.json()["content_uri"])
    data = os.urandom(700 * 1024)
    r = requests.put(f"{server.url}/_matrix/media/v3/upload/{sn}/{mid}", data=chunks(data),
                     headers={"Authorization": f"Bearer {tok}",
                              "Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 200, r.text
    d = server.api("GET", f"/_matrix/client/v1/media/download/{sn}/{mid}", tok)
    assert d.content == data
    # a second upload to the same ID is refused, and leaves no temp file
    r = requests.put(f"{server.url}/_matrix/media/v3/upload/{sn}/{mid}", data=b"again",
                     headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    assert r.status_code == 409
    assert r.json()["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
    assert tmp_files(server) == []


def test_chunked_over_limit_413_nothing_stored(make_server):
    s = make_server(extra_yaml="max_upload_size: 1M\n")
    s.start()
    u = s.register()
    before = content_files(s)
    r = upload_chunked(s, u["access_token"], os.urandom(3 * 1024 * 1024))
    assert r.status_code == 413
    assert r.json()["errcode"] == "M_TOO_LARGE"
    assert wait_until(lambda: tmp_files(s) == [])
    assert content_files(s) == before
    # the server still takes uploads
    r = upload(s, u["access_token"], b"ok", "text/plain")
    assert r.status_code == 200


def test_chunked_over_quota_checked_at_end(make_server):
    s = make_server(extra_yaml="media_max_bytes_per_user: 100K\n")
    s.start()
    u = s.register()
    r = upload_chunked(s, u["access_token"], os.urandom(300 * 1024))
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_RESOURCE_LIMIT_EXCEEDED"
    assert wait_until(lambda: tmp_files(s) == [])
    assert content_files(s) == []


def test_client_gone_mid_upload_leaves_nothing(server):
    u = server.register()
    host, port = server.url.split("//")[1].split(":")
    before = content_files(server)
    sock = socket.create_connection((host, int(port)))
    head = (f"POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {u['access_token']}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {8 * 1024 * 1024}\r\n\r\n")
    sock.sendall(head.encode())
    chunk = os.urandom(64 * 1024)
    for _ in range(40):                       # 2.5 MB of 8: past one disk write
        sock.sendall(chunk)
    # the temp file exists while the body comes in
    assert wait_until(lambda: len(tmp_files(server)) == 1)
    sock.close()
    assert wait_until(lambda: tmp_files(server) == [])
    assert content_files(server) == before
    # and the server is fine
    assert upload(server, u["access_token"], b"after", "text/plain").status_code == 200


def test_upload_requires_auth_before_body(server):
    r = requests.post(server.url + "/_matrix/media/v3/upload", data=chunks(os.urandom(200000)),
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 401
    assert tmp_files(server) == []


# ------------------------------------------------------------ animated

@needs_pil
@pytest.mark.parametrize("fmt,ctype", [("GIF", "image/gif"), ("WEBP", "image/webp")])
def test_animated_thumbnail(server, fmt, ctype):
    u = server.register()
    tok = u["access_token"]
    r = upload(server, tok, anim_bytes(fmt), ctype)
    assert r.status_code == 200, r.text
    sn, mid = mxc_parts(r.json()["content_uri"])
    still = "image/png" if fmt == "GIF" else "image/jpeg"
    for method, size in (("scale", (320, 240)), ("crop", (96, 96))):
        base = f"width={size[0]}&height={size[1]}&method={method}"
        for _ in range(2):    # made, then from the cache
            t = thumb_q(server, tok, sn, mid, base + "&animated=true")
            assert t.status_code == 200, t.text
            assert t.headers["Content-Type"] == "image/webp"
            f, dims, n = frames_of(t.content)
            assert f == "WEBP" and n == 6
            assert dims == ((96, 96) if method == "crop" else (200, 150))
        for q in ("", "&animated=false"):
            t = thumb_q(server, tok, sn, mid, base + q)
            assert t.status_code == 200
            assert t.headers["Content-Type"] == still
            assert frames_of(t.content)[2] == 1


@needs_pil
def test_animated_param_on_still_and_bad_values(server):
    u = server.register()
    tok = u["access_token"]
    r = upload(server, tok, png_bytes(400, 300), "image/png")
    sn, mid = mxc_parts(r.json()["content_uri"])
    t = thumb_q(server, tok, sn, mid, "width=320&height=240&animated=true")
    assert t.status_code == 200
    assert t.headers["Content-Type"] == "image/png"
    t = thumb_q(server, tok, sn, mid, "width=320&height=240&animated=yes")
    assert t.status_code == 400
    assert t.json()["errcode"] == "M_INVALID_PARAM"


@needs_pil
def test_hostile_animations(server):
    u = server.register()
    tok = u["access_token"]
    # truncated animated GIF
    data = anim_bytes("GIF", 300, 300, 8)
    r = upload(server, tok, data[:len(data) // 2], "image/gif")
    sn, mid = mxc_parts(r.json()["content_uri"])
    t = thumb_q(server, tok, sn, mid, "width=96&height=96&method=crop&animated=true")
    assert t.status_code in (200, 400)
    if t.status_code == 400:
        assert t.json()["errcode"] == "M_UNKNOWN"
    # a GIF whose screen claims 65535 x 65535: refused before decoding
    gif = bytearray(anim_bytes("GIF", 10, 10, 3))
    gif[6:10] = b"\xff\xff\xff\xff"
    r = upload(server, tok, bytes(gif), "image/gif")
    sn, mid = mxc_parts(r.json()["content_uri"])
    t = thumb_q(server, tok, sn, mid, "width=96&height=96&animated=true")
    assert t.status_code in (200, 400)
    # many frames whose pixels together pass max_image_pixels: a still, not a bomb
    r = upload(server, tok, anim_bytes("GIF", 1000, 1000, 40), "image/gif")
    sn, mid = mxc_parts(r.json()["content_uri"])
    t = thumb_q(server, tok, sn, mid, "width=320&height=240&animated=true")
    assert t.status_code == 200
    assert t.headers["Content-Type"] == "image/png"
    # the server is still up
    assert server.api("GET", "/_matrix/client/versions").status_code == 200


# ------------------------------------------------------- thumbnailer.so

def test_thumbnailer_missing_is_a_clear_500(make_server, tmp_path):
    """homeserver.so loaded from a directory without thumbnailer.so."""
    binary = os.environ.get("MXSTACK_BIN") or ""
    libs = os.path.join(os.path.dirname(os.path.abspath(binary)), "modules", "homeserver", ".libs")
    so = os.path.join(libs, "homeserver.so")
    if not os.path.exists(so):
        pytest.skip("not a build tree")
    os.symlink(so, tmp_path / "homeserver.so")
    s = make_server(extra_yaml=f"module_dir: {tmp_path}\n", modules=["homeserver"])
    s.start()
    u = s.register()
    tok = u["access_token"]
    r = upload(s, tok, png_bytes(64, 64), "image/png")
    sn, mid = mxc_parts(r.json()["content_uri"])
    t = thumb_q(s, tok, sn, mid, "width=32&height=32&method=crop")
    assert t.status_code == 500
    assert t.json()["errcode"] == "M_UNKNOWN"
    assert "thumbnailer.so" in s.log()
    # everything else works
    d = s.api("GET", f"/_matrix/client/v1/media/download/{sn}/{mid}", tok)
    assert d.status_code == 200


def test_idle_process_does_not_map_libvips(server):
    pid = server.proc.pid
    maps = open(f"/proc/{pid}/maps").read()
    assert "libvips" not in maps
    u = server.register()
    r = upload(server, u["access_token"], png_bytes(64, 64), "image/png")
    sn, mid = mxc_parts(r.json()["content_uri"])
    assert thumb_q(server, u["access_token"], sn, mid, "width=32&height=32").status_code == 200
    assert "libvips" in open(f"/proc/{pid}/maps").read()
