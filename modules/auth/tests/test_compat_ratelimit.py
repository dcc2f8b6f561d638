"""
Rate limits of the compatibility POST /login (au_compat_login.c), Synapse's
rc_login: `address` (every attempt per client IP), `account` (password
attempts per account), `failed_attempts` (wrong passwords per account,
checked before the password) → 429 M_LIMIT_EXCEEDED with retry_after_ms;
config errors name file:line.
"""
import secrets
import time

import pytest

from conftest import it
from test_compat import password_login


def server(make_server, rc):
    s = make_server("sqlite", extra_yaml=(
        "auth:\n"
        "  delegate_homeserver: true\n"
        "  rc_login:\n" + rc))
    s.start()
    return s


def limited(r):
    assert r.status_code == 429, r.text
    j = r.json()
    assert j["errcode"] == "M_LIMIT_EXCEEDED" and j["retry_after_ms"] > 0
    assert int(r.headers["Retry-After"]) >= 1
    return j["retry_after_ms"]


def new_user(s):
    name = "r" + secrets.token_hex(5)
    u = s.admin_user(name, "pw-Limit-12345", admin=False)
    return name, u["password"]


def test_failed_attempts_per_account(make_server):
    s = server(make_server,
               "    address: {per_second: 100, burst_count: 100}\n"
               "    account: {per_second: 100, burst_count: 100}\n"
               "    failed_attempts: {per_second: 0.5, burst_count: 3}\n")
    try:
        user, pw = new_user(s)
        other, opw = new_user(s)
        for _ in range(3):
            assert password_login(s, user, "wrong").status_code == 403
        # Limited now, even with the right password (and in another spelling).
        wait = limited(password_login(s, user, pw))
        assert wait <= 2000
        limited(password_login(s, f"@{user.upper()}:{s.server_name}", pw))
        # Another account is not affected.
        assert password_login(s, other, opw).status_code == 200
        time.sleep(wait / 1000 + 0.2)
        assert password_login(s, user, pw).status_code == 200
    finally:
        s.cleanup()


def test_per_address_and_per_account(make_server):
    s = server(make_server,
               "    address: {per_second: 0.01, burst_count: 4}\n"
               "    account: {per_second: 100, burst_count: 100}\n")
    try:
        user, pw = new_user(s)
        for _ in range(4):
            assert password_login(s, user, pw).status_code == 200
        wait = limited(password_login(s, user, pw))
        assert wait > 10000
        # Every login type counts for the address.
        r = s.api("POST", "/_matrix/client/v3/login",
                  json_body={"type": "m.login.token", "token": "x"})
        limited(r)
    finally:
        s.cleanup()
    s = server(make_server,
               "    address: {per_second: 100, burst_count: 100}\n"
               "    account: {per_second: 0.01, burst_count: 2}\n")
    try:
        user, pw = new_user(s)
        other, opw = new_user(s)
        assert password_login(s, user, pw).status_code == 200
        assert password_login(s, user, pw).status_code == 200
        limited(password_login(s, user, pw))
        assert password_login(s, other, opw).status_code == 200
    finally:
        s.cleanup()


def test_bad_rc_login_config(make_server):
    s = make_server("sqlite", extra_yaml=(
        "auth:\n"
        "  delegate_homeserver: true\n"
        "  rc_login:\n"
        "    failed_attempts: {per_second: -1, burst_count: 3}\n"))
    try:
        with pytest.raises(RuntimeError) as e:
            s.start()
        msg = str(e.value)
        assert "auth.rc_login.failed_attempts.per_second" in msg
        with open(s.config_path) as f:
            lines = f.read().split("\n")
        want = next(i + 1 for i, ln in enumerate(lines) if "failed_attempts:" in ln)
        assert f"config.yaml:{want}:" in msg, msg
    finally:
        s.cleanup()
