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
