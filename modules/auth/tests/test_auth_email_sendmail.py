"""
E-mail verification through MAS's `email.transport: sendmail`: a fake
sendmail (a shell script this test writes) stores its arguments and the
message it read on stdin.  Checks the command line MAS's mailer uses
(`-i -f <from> -- <recipient>`, no shell), the message, a failing command
(non-zero exit) and a hanging one (timeout: the child is killed) giving the
503 "send again" page, and the config checks with file:line (start) and
check-config (types).  SQLite and, with MXSTACK_TEST_PG, PostgreSQL.
"""
import os
import re
import secrets
import stat
import tempfile
import time

import pytest
import requests

from conftest import it
from test_auth_email_smtp import check_config, field, link_of, login, register, start_error

FAKE = """#!/bin/sh
# fake sendmail of the mxstack tests: keeps what it was given
d={dir}
n=$(date +%s%N)
printf '%s\\n' "$@" > "$d/args.$n"
cat > "$d/msg.$n"
if [ -e "$d/hang" ]; then sleep 30; fi
if [ -e "$d/fail" ]; then echo "mailer says no" >&2; exit 75; fi
exit 0
"""


def fake_sendmail():
    d = tempfile.mkdtemp(prefix="mx-sendmail-")
    path = os.path.join(d, "fake sendmail")      # a space: never split, no shell
    with open(path, "w") as f:
        f.write(FAKE.format(dir=d))
    os.chmod(path, stat.S_IRWXU)
    return d, path


def sent(d, n=1, timeout=15):
    """The (args, message) pairs the fake got, once there are `n`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        msgs = sorted(f for f in os.listdir(d) if f.startswith("msg."))
        if len(msgs) >= n:
            time.sleep(0.2)
            out = []
            for m in msgs:
                with open(os.path.join(d, "args." + m[4:])) as f:
                    args = f.read().split("\n")[:-1]
                with open(os.path.join(d, m), "rb") as f:
                    out.append((args, f.read()))
            return out
        time.sleep(0.05)
    raise AssertionError(f"the fake sendmail got {len(msgs)} messages")


def yaml(command, extra=""):
    return ("auth:\n"
            "  delegate_homeserver: true\n"
            "  account:\n"
            "    password_registration_enabled: true\n"
            "    email_verification: smtp\n"
            "  email:\n"
            "    from: '\"Auth service\" <auth@example.org>'\n"
            "    transport: sendmail\n"
            f"    command: '{command}'\n"
            "    timeout: 2s\n" + extra)


@pytest.mark.parametrize("engine", it.engines())
def test_register_verify_by_sendmail(make_server, engine):
    d, cmd = fake_sendmail()
    s = make_server(engine, extra_yaml=yaml(cmd))
    try:
        s.start()
        user = "s" + secrets.token_hex(5)
        b, r = register(s, user, "carol@example.org")
        assert r.status_code == 200 and "Check your e-mail" in r.text, r.text
        [(args, raw)] = sent(d)
        assert args == ["-i", "-f", "auth@example.org", "--", "carol@example.org"], args
        msg, link = link_of(raw)
        assert msg["To"].addresses[0].addr_spec == "carol@example.org"
        assert "auth@example.org" in msg["From"] and user.encode() in raw
        assert login(s, user).status_code == 403
        assert requests.get(link, timeout=10).status_code == 200
        assert "Signed in" in login(s, user).text
    finally:
        s.cleanup()


def test_sendmail_failure_and_timeout(make_server):
    d, cmd = fake_sendmail()
    s = make_server("sqlite", extra_yaml=yaml(cmd))
    try:
        s.start()
        # A non-zero exit: the "could not send" page, the reason in the log.
        open(os.path.join(d, "fail"), "w").close()
        user = "f" + secrets.token_hex(5)
        b, r = register(s, user, "dan@example.org")
        assert r.status_code == 503 and "could not send" in r.text, r.text
        assert "mailer says no" in s.log() or "exit status 75" in s.log()
        # A command that hangs is killed after email.timeout (2 s).
        os.unlink(os.path.join(d, "fail"))
        open(os.path.join(d, "hang"), "w").close()
        form = {k: field(r.text, k) for k in ("csrf", "user", "email", "exp", "sig")}
        t0 = time.time()
        r = b.post(s.url + "/verify_email/resend", data=form, timeout=30)
        assert r.status_code == 503 and time.time() - t0 < 10, r.text
        assert "timed out" in s.log()
        # Working again: "send again" delivers.
        os.unlink(os.path.join(d, "hang"))
        r = b.post(s.url + "/verify_email/resend", data=form, timeout=30)
        assert r.status_code == 200 and "Check your e-mail" in r.text, r.text
        _, link = link_of(sent(d, 3)[-1][1])
        assert requests.get(link, timeout=10).status_code == 200
        assert "Signed in" in login(s, user).text
    finally:
        s.cleanup()


def test_sendmail_config_errors(make_server):
    d, cmd = fake_sendmail()
    s = make_server("sqlite", extra_yaml=yaml(cmd))
    try:
        cases = [
            (yaml(os.path.join(d, "missing")), "auth.email.command: not an executable file",
             "command:"),
            (yaml(cmd, "    hostname: 127.0.0.1\n"),
             "auth.email.hostname: not used with transport: sendmail", "hostname:"),
            (yaml(cmd).replace("transport: sendmail", "transport: smtp\n    hostname: h"),
             "auth.email.command: only used with transport: sendmail", "command:"),
            (yaml(cmd).replace("    from: '\"Auth service\" <auth@example.org>'\n", ""),
             "auth.email.from: required with transport: sendmail", "transport:"),
        ]
        for text, msg, key in cases:
            s.extra_yaml = text
            s.write_config()
            rc, out = start_error(s)
            assert rc != 0 and msg in out, out
            assert re.search(r"config\.yaml:\d+:", out), out
            if key == "command:" or key == "hostname:":
                with open(s.config_path) as f:
                    lines = f.read().split("\n")
                want = next(i + 1 for i, ln in enumerate(lines) if ln.strip().startswith(key))
                assert f"config.yaml:{want}:" in out, (want, out)
        # check-config: a command that is not a string, with its line.
        s.extra_yaml = yaml(cmd).replace(f"command: '{cmd}'", "command: [a, b]")
        s.write_config()
        rc, out = check_config(s)
        assert rc != 0 and "auth.email.command" in out and re.search(r"config\.yaml:\d+:", out)
        # The default command is "sendmail" (looked up in PATH when sending).
        s.extra_yaml = yaml(cmd).replace(f"    command: '{cmd}'\n", "")
        s.write_config()
        rc, out = check_config(s)
        assert rc == 0, out
    finally:
        s.cleanup()
