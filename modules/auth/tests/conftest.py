"""
Fixtures of the auth module's tests: the integration suite's Server (from
tests/integration/conftest.py, loaded under its own module name so that it
does not shadow that conftest when both suites run together) with an
`auth:` section, on SQLite and (with MXSTACK_TEST_PG) PostgreSQL.
"""
import importlib.util
import os

import pytest

_IT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                   "tests", "integration", "conftest.py")
_spec = importlib.util.spec_from_file_location("mx_integration_conftest_auth", _IT)
it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(it)

make_server = it.make_server


def _register(self, username=None, password="pw12345678", device_id=None):
    """Registers a user: with /register, or, when the homeserver delegates
    (Synapse's delegated /register refuses), through shared-secret
    registration, which keeps working with the auth module on."""
    body = {"username": username or ("u" + os.urandom(5).hex()), "password": password,
            "auth": {"type": "m.login.dummy"}}
    if device_id:
        body["device_id"] = device_id
    r = self.api("POST", "/_matrix/client/v3/register", json_body=body)
    if r.status_code == 403 and r.json().get("errcode") == "M_FORBIDDEN":
        return self.admin_user(body["username"], password, admin=False)
    assert r.status_code == 200, r.text
    d = r.json()
    d["password"] = password
    return d


it.Server.register = _register

DELEGATED = (
    "auth:\n"
    "  delegate_homeserver: true\n"
    "  password_registration_enabled: true\n"
)


@pytest.fixture(params=it.engines())
def auth_server(request):
    """A server whose homeserver delegates token checks to the auth module."""
    s = it.Server(request.param, extra_yaml=DELEGATED)
    s.start()
    yield s
    s.cleanup()


@pytest.fixture(params=it.engines())
def plain_server(request):
    """A server with the auth module loaded but not delegated to (the default)."""
    s = it.Server(request.param)
    s.start()
    yield s
    s.cleanup()
