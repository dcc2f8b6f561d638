"""
The appliance core, driven through the real binary over real sockets:
CLI, zero-config start, health/ready/metrics, HTTP error shapes and limits,
bad input, CORS, the example module (routes, storage on both engines, the
manage command), and graceful shutdown.
"""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import Server, find_binary, free_port


def run(*args, **kw):
    return subprocess.run([find_binary(), *args], capture_output=True, text=True, timeout=60, **kw)


def raw(server, data, timeout=5.0, read_all=True):
    """Sends raw bytes, returns everything the server answers until it closes or times out."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_all:
                break
    except socket.timeout:
        pass
    s.close()
    return out


@pytest.fixture(params=[e for e in ("sqlite", "postgres")
                        if e == "sqlite" or os.environ.get("MXSTACK_TEST_PG")])
def server(request):
    """The core alone, with the ABI example module (no homeserver needed)."""
    s = Server(request.param, modules=["example"])
    s.start()
    yield s
    s.cleanup()


# ------------------------------------------------------------------ CLI

def test_version_and_help():
    r = run("version")
    assert r.returncode == 0 and re.match(r"mxstack \d+\.\d+\.\d+", r.stdout)
    r = run("--help")
    assert r.returncode == 0 and "check-config" in r.stdout and "init-secrets" in r.stdout


def test_unknown_command():
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


def test_check_config_reports_file_line_reason(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server_name: example.org\n"
                   "listeners:\n"
                   "  - port: 99999\n"
                   "    type: http\n"
                   "    resources: [{names: [client]}]\n")
    r = run("check-config", "-c", str(cfg))
    assert r.returncode != 0
    assert f"{cfg}:3:" in r.stderr, r.stderr
    assert "port" in r.stderr


def test_check_config_yaml_syntax_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("server_name: example.org\nlisteners: [\n  - port: 1\n")
    r = run("check-config", "-c", str(cfg))
    assert r.returncode != 0 and str(cfg) in r.stderr


def test_check_config_ok_examples():
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name in ("mxstack.yaml", "single-node-sqlite.yaml", "production-postgres.yaml"):
        r = run("check-config", "-c", os.path.join(src, "conf", name))
        assert r.returncode == 0, (name, r.stderr)


def test_init_secrets_never_overwrites(tmp_path):
    d = tmp_path / "data"
    r = run("init-secrets", "--data-dir", str(d))
    assert r.returncode == 0, r.stderr
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    for f in ("signing.key", "registration_shared_secret", "oidc_rsa.pem", "oidc_ec.pem",
              "form_secret", "cookie_key", "macaroon_secret_key"):
        assert f in files, f
        assert (os.stat(d / f).st_mode & 0o077) == 0, f"{f} must be 0600"
    assert re.match(rb"ed25519 a_\w{4} [A-Za-z0-9+/]{43}\n", files["signing.key"])
    r = run("init-secrets", "--data-dir", str(d))
    assert r.returncode == 0
    assert {p.name: p.read_bytes() for p in d.iterdir()} == files


# ---------------------------------------------------------- zero config

def test_zero_config_serve(tmp_path):
    """`mxstack serve` with no -c: data dir, secrets, SQLite, 127.0.0.1:8008."""
    try:
        socket.create_connection(("127.0.0.1", 8008), timeout=0.2).close()
        pytest.skip("port 8008 is in use on this machine")
    except OSError:
        pass
    d = tmp_path / "zc"
    p = subprocess.Popen([find_binary(), "serve", "--data-dir", str(d)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 15
        ok = False
        while time.time() < deadline and not ok:
            try:
                ok = requests.get("http://127.0.0.1:8008/ready", timeout=1).status_code == 200
            except requests.RequestException:
                time.sleep(0.05)
        assert ok, p.stdout.read1().decode() if p.poll() is not None else "not ready"
        assert (d / "signing.key").exists() and (d / "registration_shared_secret").exists()
        assert any(f.name.endswith(".db") for f in d.iterdir())
        r = requests.get("http://127.0.0.1:8008/_matrix/client/versions")
        assert r.status_code == 200 and "versions" in r.json()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0


# ------------------------------------------------------ health & metrics

def test_health_ready_metrics(server):
    assert requests.get(server.url + "/health").status_code == 200
    assert requests.get(server.url + "/ready").status_code == 200
    requests.get(server.url + "/_mxstack/example/hello")
    m = requests.get(server.url + "/metrics")
    assert m.status_code == 200
    text = m.text
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
                 "mxstack_http_open_connections", "mxstack_http_requests_total",
                 "mxstack_http_request_duration_seconds_bucket", "mxstack_store_queued"):
        assert name in text, name
    assert 'route="/_mxstack/example/hello"' in text


# --------------------------------------------------------- error shapes

def test_unknown_path_404_unrecognized(server):
    r = requests.get(server.url + "/_matrix/client/v3/nope")
    assert r.status_code == 404
    assert r.json()["errcode"] == "M_UNRECOGNIZED"


def test_wrong_method_405(server):
    r = requests.delete(server.url + "/_mxstack/example/hello")
    assert r.status_code == 405
    assert r.json()["errcode"] == "M_UNRECOGNIZED"


def test_cors_preflight(server):
    r = requests.options(server.url + "/_matrix/client/v3/login",
                         headers={"Origin": "https://app.element.io",
                                  "Access-Control-Request-Method": "POST"})
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = requests.get(server.url + "/_mxstack/example/hello")
    assert r.headers.get("Access-Control-Allow-Origin") is None  # not a /_matrix path
    r = requests.get(server.url + "/_matrix/client/v3/nope")
    assert r.headers.get("Access-Control-Allow-Origin") == "*"


# ------------------------------------------------------------ bad input

def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


def test_malformed_http(server):
    for req in (b"GARBAGE\r\n\r\n",
                b"GET / HTTP/9.9\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                b"GET /\x00x HTTP/1.1\r\nHost: x\r\n\r\n"):
        st = status_of(raw(server, req))
        assert st is None or 400 <= st < 500, (req, st)
    assert requests.get(server.url + "/health").status_code == 200


def test_smuggling_refused(server):
    both = (b"POST /_mxstack/example/notes HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    dup = (b"POST /_mxstack/example/notes HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
           b"Content-Length: 5\r\n\r\n{}{}")
    for req in (both, dup):
        st = status_of(raw(server, req))
        assert st is None or st == 400, (req, st)


def test_huge_declared_body_413_before_read(server):
    req = (b"POST /_mxstack/example/notes HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\nContent-Length: 50000000000\r\n\r\n")
    t = time.time()
    resp = raw(server, req, timeout=5)
    assert status_of(resp) == 413
    assert b"M_TOO_LARGE" in resp
    assert time.time() - t < 3


def test_huge_headers(server):
    req = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n"
    st = status_of(raw(server, req))
    assert st is None or st in (400, 413, 431)
    assert requests.get(server.url + "/health").status_code == 200


def test_bad_utf8_in_path_and_query(server):
    for path in (b"/_mxstack/example/notes/%FF%FE", b"/_mxstack/example/hello?x=%C3%28",
                 b"/_mxstack/example/notes/%00"):
        st = status_of(raw(server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert st is not None and 400 <= st < 500, (path, st)


def test_pipelined_requests_in_order(server):
    reqs = b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % p
                    for p in (b"health", b"nope", b"ready", b"health"))
    reqs += b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(server, reqs)
    codes = [int(c) for c in re.findall(rb"HTTP/1\.1 (\d{3})", out)]
    assert codes == [200, 404, 200, 200, 200], codes


def test_slowloris_closed(make_server):
    s = make_server("sqlite", modules=["example"], extra_yaml="http:\n  header_timeout: 1s\n").start()
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    sock.settimeout(6)
    t = time.time()
    try:
        data = sock.recv(1000)
    except ConnectionResetError:
        data = b""
    assert time.time() - t < 5
    assert data == b"" or status_of(data) in (400, 408)
    assert requests.get(s.url + "/health").status_code == 200


def test_bad_json_bodies(server):
    url = server.url + "/_mxstack/example/notes"
    r = requests.post(url, data=b"{not json")
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    r = requests.post(url, data=b'{"type": "a", "type": "b"}')
    assert r.status_code == 400 and r.json()["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
    r = requests.post(url, data=b'{"x": 1e400}')
    assert r.status_code == 400 and r.json()["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
    r = requests.post(url, data=b'{"x": "\\ud800"}')
    assert r.status_code == 400
    r = requests.post(url, data=b"[" * 100000)
    assert r.status_code == 400
    r = requests.post(url, data=b"[]")
    assert r.status_code == 400 and r.json()["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")


# -------------------------------------------------------- example module

@pytest.mark.parametrize("engine", [e for e in ("sqlite", "postgres")
                                    if e == "sqlite" or os.environ.get("MXSTACK_TEST_PG")])
def test_example_module(make_server, engine):
    s = make_server(engine, modules=["example"],
                    extra_yaml="example:\n  greeting: hi there\n").start()
    r = requests.get(s.url + "/_mxstack/example/hello")
    assert r.json() == {"greeting": "hi there"}
    r = requests.post(s.url + "/_mxstack/example/notes", json={"text": "hello ✓"})
    assert r.status_code == 200, r.text
    nid = r.json()["id"]
    assert requests.get(s.url + f"/_mxstack/example/notes/{nid}").json()["text"] == "hello ✓"
    assert requests.get(s.url + "/_mxstack/example/notes/nope").status_code == 404
    assert "mxstack_example_notes_total 1" in requests.get(s.url + "/metrics").text
    # survives kill -9: the 200 meant durable
    s.kill9()
    s.start()
    assert requests.get(s.url + f"/_mxstack/example/notes/{nid}").json()["text"] == "hello ✓"
    s.stop()
    r = run("manage", "example-count", "-c", s.config_path)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr


def test_example_module_bad_config(make_server, tmp_path):
    s = make_server("sqlite", modules=["example"], extra_yaml="example:\n  max_notes: zero\n")
    r = run("check-config", "-c", s.config_path)
    assert r.returncode != 0 and "max_notes" in r.stderr


def test_unknown_module_refused(make_server):
    s = make_server("sqlite", modules=["nosuchmodule"])
    with pytest.raises(RuntimeError) as e:
        s.start(timeout=5)
    assert "nosuchmodule" in str(e.value)


# ------------------------------------------------------------- shutdown

def test_sigterm_graceful_exit_zero(server):
    assert requests.get(server.url + "/health").status_code == 200
    # an idle keep-alive connection must not stop a clean exit
    idle = socket.create_connection(("127.0.0.1", server.port))
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(100).startswith(b"HTTP/1.1 200")
    assert server.stop(signal.SIGTERM) == 0
    idle.close()


def test_sigint_with_idle_keepalive_exit_zero(server):
    idle = socket.create_connection(("127.0.0.1", server.port))
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(100).startswith(b"HTTP/1.1 200")
    assert server.stop(signal.SIGINT) == 0
    idle.close()


def test_sighup_keeps_serving(server):
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert requests.get(server.url + "/health").status_code == 200


# ------------------------------------------------ services across processes

def test_service_over_http_between_processes(make_server):
    """example.greeter provided by process A, called from process B, which
    does not provide it: the same mx_service_call goes over HTTP to A's
    internal resource.  A wrong internal secret is refused."""
    a = make_server("sqlite", modules=["example"],
                    extra_yaml="example:\n  greeting: from A\ninternal_secret: s3cret\n")
    a.write_config()
    with open(a.config_path) as f:
        cfg = f.read().replace("names: [client,", "names: [internal, client,")
    with open(a.config_path, "w") as f:
        f.write(cfg)
    a.start()
    b = make_server("sqlite", modules=["example"],
                    extra_yaml=("example:\n  provide: false\ninternal_secret: s3cret\n"
                                f"service_locations:\n  example.greeter: \"{a.url}\"\n")).start()
    assert requests.get(b.url + "/_mxstack/example/hello").json() == {"greeting": "from A"}
    r = requests.post(a.url + "/_mxstack/service/example.greeter/greet", json={"args": {}},
                      headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    r = requests.post(a.url + "/_mxstack/service/example.greeter/greet", json={"args": {}},
                      headers={"Authorization": "Bearer s3cret"})
    assert r.json() == {"result": {"greeting": "from A"}}
    a.stop()
    r = requests.get(b.url + "/_mxstack/example/hello")
    assert r.status_code == 502


# ------------------------------------------------------------ module ABI

@pytest.mark.parametrize("name,why", [("badabi", "ABI major version 99"),
                                      ("badsig", "build signature")])
def test_module_abi_mismatch_refused(make_server, name, why):
    libs = os.path.join(os.path.dirname(find_binary()), "tests", "modules", ".libs")
    if not os.path.exists(os.path.join(libs, name + ".so")):
        pytest.skip("run `make check` first: it builds tests/modules/*.la")
    s = make_server("sqlite", modules=[name], extra_yaml=f"module_dir: {libs}\n")
    with pytest.raises(RuntimeError) as e:
        s.start(timeout=5)
    assert name in str(e.value) and why in str(e.value), str(e.value)


# ------------------------------------------------------------ virtual hosts

def test_virtual_hosts_share_a_port(tmp_path):
    """Two listeners on one port, told apart by the Host header (the ESS
    ingress layout: chat., matrix., admin. on :443)."""
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""server_name: localhost
listeners:
  - {{port: {port}, bind_addresses: ['127.0.0.1'], type: http, vhost: matrix.localhost,
      resources: [{{names: [client]}}]}}
  - {{port: {port}, bind_addresses: ['127.0.0.1'], type: http, vhost: admin.localhost,
      resources: [{{names: [metrics]}}]}}
database: {{name: sqlite3, args: {{database: {tmp_path}/hs.db}}}}
signing_key_path: {tmp_path}/signing.key
modules: [example]
""")
    p = subprocess.Popen([find_binary(), "serve", "-c", str(cfg)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                requests.get(url + "/health", headers={"Host": "matrix.localhost"}, timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.05)
        r = requests.get(url + "/_mxstack/example/hello", headers={"Host": "matrix.localhost"})
        assert r.status_code == 200 and r.json()["greeting"] == "hello"
        r = requests.get(url + "/_mxstack/example/hello", headers={"Host": "admin.localhost:443"})
        assert r.status_code == 404
        r = requests.get(url + "/metrics", headers={"Host": "ADMIN.localhost"})
        assert r.status_code == 200 and "process_open_fds" in r.text
        r = requests.get(url + "/metrics", headers={"Host": "matrix.localhost"})
        assert r.status_code == 404
        r = requests.get(url + "/_mxstack/example/hello", headers={"Host": "other.localhost"})
        assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0


def test_tls_listener(tmp_path):
    """A `tls: true` listener: handshake, keep-alive, a request body larger
    than one TLS record (the input queue grows), pipelined requests in order,
    and a reply larger than one record."""
    import socket
    import ssl
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem"), "-subj", "/CN=localhost", "-days", "2"],
                   check=True, capture_output=True)
    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""server_name: localhost
tls_certificate_path: {tmp_path}/c.pem
tls_private_key_path: {tmp_path}/k.pem
listeners: [{{port: {port}, bind_addresses: ['127.0.0.1'], type: http, tls: true,
              resources: [{{names: [client, health]}}]}}]
database: {{name: sqlite3, args: {{database: {tmp_path}/hs.db}}}}
signing_key_path: {tmp_path}/signing.key
modules: [example]
""")
    p = subprocess.Popen([find_binary(), "serve", "-c", str(cfg)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    ctx.check_hostname = False
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                requests.get(url + "/health", verify=False, timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.05)
        with requests.Session() as s:
            s.verify = str(tmp_path / "c.pem")
            s.get(url + "/health", verify=False)
            for _ in range(3):
                r = s.get(url + "/_mxstack/example/hello", verify=False)
                assert r.status_code == 200 and r.json()["greeting"] == "hello"
            # 60 KB in (several TLS records: the input queue grows) and out
            text = "".join(chr(0x41 + i % 26) for i in range(60000))
            r = s.post(url + "/_mxstack/example/notes", verify=False, json={"text": text})
            assert r.status_code == 200, r.text
            r = s.get(url + "/_mxstack/example/notes/" + r.json()["id"], verify=False)
            assert r.status_code == 200 and r.json()["text"] == text
        raw = socket.create_connection(("127.0.0.1", port))
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2 +
                        b"GET /_mxstack/example/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                got += chunk
        assert got.count(b"HTTP/1.1 200") == 3
        assert got.rindex(b"greeting") > got.rindex(b"\r\n\r\nOK")
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
