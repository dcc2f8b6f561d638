"""
Fixtures for the integration tests: start the real `mxstack` binary over
real sockets, on SQLite and (when MXSTACK_TEST_PG holds a libpq conninfo for
a server where we may create databases) on PostgreSQL.

Every test that uses `server` runs once per storage engine.  Environment:
  MXSTACK_BIN      the binary (default: ./mxstack in the build dir, found via
                   MXSTACK_BUILD_DIR or the current directory)
  MXSTACK_TEST_PG  e.g. "host=127.0.0.1 port=5544 user=postgres" (no dbname)
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import hashlib
import hmac
import uuid

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def find_binary():
    b = os.environ.get("MXSTACK_BIN")
    if b:
        return b
    for d in (os.environ.get("MXSTACK_BUILD_DIR"), os.getcwd(), SRC):
        if d and os.path.exists(os.path.join(d, "mxstack")):
            return os.path.join(d, "mxstack")
    raise RuntimeError("mxstack binary not found: set MXSTACK_BIN")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def engines():
    e = ["sqlite"]
    if os.environ.get("MXSTACK_TEST_PG"):
        e.append("postgres")
    return e


def pg_create_db(name):
    conninfo = os.environ["MXSTACK_TEST_PG"]
    subprocess.run(["psql", conninfo + " dbname=postgres", "-qc", f'DROP DATABASE IF EXISTS "{name}"'],
                   check=True, capture_output=True)
    subprocess.run(["psql", conninfo + " dbname=postgres", "-qc", f'CREATE DATABASE "{name}"'],
                   check=True, capture_output=True)
    return conninfo + f" dbname={name}"


class Server:
    """A running mxstack: `url`, `server_name`, helpers to register users."""

    SHARED_SECRET = "test_shared_secret"

    def __init__(self, engine, extra_yaml="", modules=None, keep_dir=None):
        self.engine = engine
        self.dir = keep_dir or tempfile.mkdtemp(prefix="mxstack-it-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server_name = f"localhost:{self.port}"
        self.extra_yaml = extra_yaml
        self.modules = modules
        self.proc = None
        self.log_path = os.path.join(self.dir, "server.log")
        if engine == "postgres":
            self.pg = pg_create_db("mxit_" + uuid.uuid4().hex[:12])
        self.write_config()

    def write_config(self):
        if self.engine == "postgres":
            db = f"database:\n  name: psycopg2\n  args:\n    dsn: \"{self.pg}\"\n"
        else:
            db = f"database:\n  name: sqlite3\n  args:\n    database: {self.dir}/homeserver.db\n"
        mods = ""
        if self.modules is not None:
            mods = "modules: [" + ", ".join(self.modules) + "]\n"
        cfg = (
            f"server_name: \"{self.server_name}\"\n"
            f"public_baseurl: \"{self.url}/\"\n"
            f"listeners:\n"
            f"  - port: {self.port}\n"
            f"    bind_addresses: ['127.0.0.1']\n"
            f"    type: http\n"
            f"    resources:\n"
            f"      - names: [client, federation, media, admin, metrics, health, web, auth]\n"
            f"{db}"
            f"signing_key_path: {self.dir}/signing.key\n"
            f"media_store_path: {self.dir}/media\n"
            f"registration_shared_secret: {self.SHARED_SECRET}\n"
            f"enable_registration: true\n"
            f"log_file: {self.log_path}\n"
            f"homeserver:\n"
            f"  rc_message_per_second: 1000\n"
            f"  rc_message_burst: 1000\n"
            f"  rc_login_per_second: 1000\n"
            f"  rc_login_burst: 1000\n"
            f"  rc_registration_per_second: 1000\n"
            f"  rc_registration_burst: 1000\n"
            f"  allow_guest_access: true\n"
            f"  argon2_opslimit: 1\n"
            f"  argon2_memlimit_kib: 64\n"
            f"{mods}"
            f"{self.extra_yaml}"
        )
        self.config_path = os.path.join(self.dir, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(cfg)

    def start(self, timeout=15):
        self.proc = subprocess.Popen([find_binary(), "serve", "-c", self.config_path],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                raise RuntimeError(f"mxstack exited with {self.proc.returncode}:\n{out}\n{self.log()}")
            try:
                if requests.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("mxstack did not become ready:\n" + self.log())

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode if self.proc else None
        self.proc = None
        return code

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------- helpers
    def api(self, method, path, token=None, json_body=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, json=json_body,
                                timeout=kw.pop("timeout", 30), **kw)

    def register(self, username=None, password="pw12345678", device_id=None):
        username = username or ("u" + uuid.uuid4().hex[:10])
        body = {"username": username, "password": password,
                "auth": {"type": "m.login.dummy"}}
        if device_id:
            body["device_id"] = device_id
        r = self.api("POST", "/_matrix/client/v3/register", json_body=body)
        assert r.status_code == 200, r.text
        d = r.json()
        d["password"] = password
        return d

    def admin_user(self, username=None, password="pw12345678", admin=True):
        username = username or ("admin" + uuid.uuid4().hex[:8])
        nonce = self.api("GET", "/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(self.SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(nonce.encode() + b"\x00" + username.encode() + b"\x00" + password.encode()
                   + b"\x00" + (b"admin" if admin else b"notadmin"))
        r = self.api("POST", "/_synapse/admin/v1/register", json_body={
            "nonce": nonce, "username": username, "password": password, "admin": admin,
            "mac": mac.hexdigest()})
        assert r.status_code == 200, r.text
        d = r.json()
        d["password"] = password
        return d


@pytest.fixture(params=engines())
def server(request):
    s = Server(request.param)
    s.start()
    yield s
    s.cleanup()


@pytest.fixture
def make_server():
    """Factory for tests that need their own config: make_server(engine, extra_yaml=...)."""
    made = []

    def make(engine="sqlite", **kw):
        s = Server(engine, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.cleanup()
