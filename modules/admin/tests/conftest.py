"""
Fixtures for the admin module's tests: the integration suite's `make_server`
(tests/integration/conftest.py), loaded under its own module name so that
the two conftest files never shadow each other.
"""
import importlib.util
import os

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                     "tests", "integration", "conftest.py")
_spec = importlib.util.spec_from_file_location("mx_integration_conftest_admin", _path)
_it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_it)

make_server = _it.make_server
Server = _it.Server
engines = _it.engines
