"""
tests/bench/media_bench.py: the media repository benchmark (not a timed test).

Starts mxstack (SQLite, media store in a temp dir) and measures, in one run:
  - upload of a 50 MB file (curl, streamed from disk) and its download (the
    zero-copy file reply), as throughput and as a ratio to `cp` of the same
    file on the same filesystem (plain cp, and cp + fsync since the upload
    is durable before it is acknowledged);
  - the server's RSS growth during the upload (sampled every 2 ms; the
    upload is streamed to disk, target < 5 MB);
  - thumbnail time of a 4000x3000 JPEG at each default size (first request:
    decode + scale + encode + durable cache write; then the cached answer).
Usage: /usr/bin/python3 tests/bench/media_bench.py [--build DIR] [--mb 50]
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
PORT = 18431


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def call(method, path, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read(), dict(r.headers)


def start(build, d):
    with open(f"{d}/c.yaml", "w") as f:
        f.write(f"""server_name: localhost
listeners: [{{port: {PORT}, bind_addresses: ['127.0.0.1'], type: http,
             resources: [{{names: [client, media, health]}}]}}]
database: {{name: sqlite3, args: {{database: {d}/hs.db}}}}
signing_key_path: {d}/signing.key
media_store_path: {d}/media
max_upload_size: 200M
enable_registration: true
log_level: warn
modules: [homeserver]
homeserver: {{argon2_opslimit: 1, argon2_memlimit_kib: 64}}
""")
    p = subprocess.Popen([os.path.join(build, "mxstack"), "serve", "-c", f"{d}/c.yaml"])
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/ready", timeout=1)
            return p
        except Exception:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def curl_upload(path, token):
    out = subprocess.run(["curl", "-s", "-X", "POST", "-T", path,
                          "-H", f"Authorization: Bearer {token}",
                          "-H", "Content-Type: application/octet-stream",
                          f"http://127.0.0.1:{PORT}/_matrix/media/v3/upload"],
                         check=True, capture_output=True)
    return json.loads(out.stdout)["content_uri"]


def jpeg_4000x3000(path):
    from PIL import Image
    img = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    noise = Image.effect_noise((4000, 3000), 40).convert("RGB")
    Image.blend(img, noise, 0.3).save(path, "JPEG", quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--mb", type=int, default=50)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="mxmedia-bench-")
    proc = start(os.path.abspath(a.build), d)
    try:
        _, body, _ = call("POST", "/_matrix/client/v3/register", None,
                          {"username": "bench", "password": "benchpass12",
                           "auth": {"type": "m.login.dummy"}})
        tok = json.loads(body)["access_token"]
        src = f"{d}/big.bin"
        with open(src, "wb") as f:
            for _ in range(a.mb):
                f.write(os.urandom(1 << 20))
        size = os.path.getsize(src)
        want = hashlib.sha256(open(src, "rb").read()).hexdigest()

        # cp of the same file, same filesystem, same run
        cp_s = min(timed(["cp", src, f"{d}/copy{i}.bin"]) for i in range(3))
        cps_s = min(timed(["sh", "-c", f"cp {src} {d}/copys{i}.bin && sync {d}/copys{i}.bin"])
                    for i in range(3))

        # upload, with RSS sampling
        base = rss_kb(proc.pid)
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(proc.pid))
                time.sleep(0.002)
        th = threading.Thread(target=sample)
        th.start()
        t = time.perf_counter()
        uri = curl_upload(src, tok)
        up_s = time.perf_counter() - t
        stop.set()
        th.join()
        sn, mid = uri[6:].split("/")
        stored = [os.path.join(r, f) for r, _, fs in os.walk(f"{d}/media/content") for f in fs]
        assert [os.path.basename(p) for p in stored] == [want], "stored file not named by its hash"

        # download (zero-copy file reply)
        dl = f"{d}/dl.bin"
        dl_times = []
        for _ in range(3):
            dl_times.append(timed(["curl", "-s", "-o", dl, "-H", f"Authorization: Bearer {tok}",
                                   f"http://127.0.0.1:{PORT}/_matrix/client/v1/media/download/{sn}/{mid}"]))
        dl_s = min(dl_times)
        assert hashlib.sha256(open(dl, "rb").read()).hexdigest() == want

        mb = size / 1e6
        print(f"file: {mb:.1f} MB")
        print(f"cp: {cp_s*1000:.0f} ms ({mb/cp_s:.0f} MB/s); cp+fsync: {cps_s*1000:.0f} ms "
              f"({mb/cps_s:.0f} MB/s)")
        print(f"upload (hash + write + fsync + rename + row): {up_s*1000:.0f} ms ({mb/up_s:.0f} MB/s); "
              f"cp/upload {cp_s/up_s:.2f}, (cp+fsync)/upload {cps_s/up_s:.2f}")
        print(f"download: {dl_s*1000:.0f} ms ({mb/dl_s:.0f} MB/s); cp/download {cp_s/dl_s:.2f}")
        print(f"RSS during upload: base {base} kB, peak {peak[0]} kB, growth "
              f"{(peak[0]-base)/1024:.1f} MB")

        # thumbnails of a 4000x3000 JPEG
        try:
            jpeg_4000x3000(f"{d}/big.jpg")
        except ImportError:
            print("thumbnails: skipped (python3-pil not installed)")
            return
        out = subprocess.run(["curl", "-s", "-X", "POST", "--data-binary", f"@{d}/big.jpg",
                              "-H", f"Authorization: Bearer {tok}", "-H", "Content-Type: image/jpeg",
                              f"http://127.0.0.1:{PORT}/_matrix/media/v3/upload"],
                             check=True, capture_output=True)
        jmid = json.loads(out.stdout)["content_uri"].split("/")[-1]
        rss_before_vips = rss_kb(proc.pid)
        for w, h, m in ((32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"),
                        (640, 480, "scale"), (800, 600, "scale")):
            q = f"/_matrix/client/v1/media/thumbnail/{sn}/{jmid}?width={w}&height={h}&method={m}"
            t = time.perf_counter()
            st, body, _ = call("GET", q, tok)
            first = time.perf_counter() - t
            t = time.perf_counter()
            call("GET", q, tok)
            cached = time.perf_counter() - t
            print(f"thumbnail 4000x3000 JPEG -> {w}x{h} {m}: {first*1000:.0f} ms "
                  f"(cached {cached*1000:.1f} ms, {len(body)} bytes)")
        print(f"RSS before the first thumbnail {rss_before_vips} kB, after {rss_kb(proc.pid)} kB")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
