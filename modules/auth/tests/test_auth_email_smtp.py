"""
E-mail verification over SMTP (auth.account.email_verification: smtp,
auth.email in MAS's shape) against a real SMTP server: aiosmtpd (Debian
python3-aiosmtpd) in this process.  Registration mails the link, the test
reads it from the received message, follows it, and signs in.  Also: AUTH,
STARTTLS with a CA of the test's own, the server being down (clear page, no
usable half-made account, "send again" recovers) and config errors with
file:line.
"""
import email
import email.policy
import html
import os
import re
import secrets
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
import requests

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from conftest import it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content or envelope.content, session))
        return "250 OK"

    def wait(self, n=1, timeout=15):
        deadline = time.time() + timeout
        while len(self.messages) < n and time.time() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= n, "no mail received"
        return self.messages[n - 1]


def smtp_server(port, **kw):
    box = Mailbox()
    c = Controller(box, hostname="127.0.0.1", port=port, **kw)
    c.start()
    return c, box


def field(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % name, page)
    assert m, f"no {name} in page:\n{page}"
    return html.unescape(m.group(1))


def yaml(port, extra_email="", mode="plain"):
    return ("auth:\n"
            "  delegate_homeserver: true\n"
            "  account:\n"
            "    password_registration_enabled: true\n"
            "    email_verification: smtp\n"
            "  email:\n"
            "    from: '\"Auth service\" <auth@example.org>'\n"
            "    reply_to: '<no-reply@example.org>'\n"
            "    transport: smtp\n"
            f"    mode: {mode}\n"
            "    hostname: 127.0.0.1\n"
            f"    port: {port}\n"
            "    timeout: 10s\n" + extra_email)


def register(s, user, addr, password="correct horse 1"):
    b = requests.Session()
    page = b.get(s.url + "/register", timeout=10)
    assert 'name="email"' in page.text
    r = b.post(s.url + "/register", data={
        "csrf": field(page.text, "csrf"), "grant": "", "next": "", "username": user,
        "password": password, "password_confirm": password, "email": addr},
        allow_redirects=False, timeout=30)
    return b, r


def login(s, user, password="correct horse 1"):
    b = requests.Session()
    page = b.get(s.url + "/login", timeout=10)
    return b.post(s.url + "/login", data={
        "csrf": field(page.text, "csrf"), "grant": "", "next": "", "username": user,
        "password": password}, allow_redirects=False, timeout=30)


def link_of(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(("plain",)).get_content()
    m = re.search(r"(http://\S+/verify_email\?token=\w+)", body)
    assert m, body
    return msg, m.group(1)


@pytest.mark.parametrize("engine", it.engines())
def test_register_verify_by_smtp_with_auth(make_server, engine):
    port = free_port()
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((mechanism, auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.login == b"mailer" and
                          auth_data.password == b"s3cret")

    ctl, box = smtp_server(port, authenticator=authenticator, auth_require_tls=False,
                           auth_required=True)
    s = make_server(engine, extra_yaml=yaml(port, "    username: mailer\n"
                                                  "    password: s3cret\n"))
    try:
        s.start()
        user = "m" + secrets.token_hex(5)
        b, r = register(s, user, "alice@example.org")
        assert r.status_code == 200 and "Check your e-mail" in r.text, r.text
        # The password came through AUTH, the mail through SMTP.
        assert seen and seen[0][1:] == (b"mailer", b"s3cret")
        mail_from, rcpts, raw, _ = box.wait()
        assert mail_from == "auth@example.org" and rcpts == ["alice@example.org"]
        msg, link = link_of(raw)
        assert b"\r\nTo: <alice@example.org>\r\n" in raw or raw.startswith(b"To:")
        assert msg["To"].addresses[0].addr_spec == "alice@example.org"
        assert "Auth service" in msg["From"] and "auth@example.org" in msg["From"]
        assert msg["Reply-To"].addresses[0].addr_spec == "no-reply@example.org"
        assert "Verify your e-mail address" in msg["Subject"]
        assert msg["Date"] and re.match(r"<[0-9A-Z]{26}@example\.org>", msg["Message-ID"])
        assert msg.get_content_type() == "text/plain"
        assert msg.get_content_charset() == "utf-8"
        assert b"\r\n\r\n" in raw and user.encode() in raw
        # Not signed in, and no login until the link is followed.
        r = login(s, user)
        assert r.status_code == 403 and "link sent to your e-mail" in r.text
        assert requests.get(link, timeout=10).status_code == 200
        assert requests.get(link, timeout=10).status_code == 400       # single use
        r = login(s, user)
        assert r.status_code == 200 and "Signed in" in r.text, r.text
    finally:
        s.cleanup()
        ctl.stop()


def test_smtp_down_then_send_again(make_server):
    port = free_port()            # nothing listens there yet
    s = make_server("sqlite", extra_yaml=yaml(port))
    ctl = None
    try:
        s.start()
        user = "d" + secrets.token_hex(5)
        b, r = register(s, user, "bob@example.org")
        assert r.status_code == 503, r.text
        assert "could not send" in r.text and "bob@example.org" in r.text
        assert "not sent" in s.log()
        # No half-made usable account: it cannot sign in unverified...
        r2 = login(s, user)
        assert r2.status_code == 403 and "link sent to your e-mail" in r2.text
        # ...the name is taken (registering again is refused)...
        _, r3 = register(s, user, "bob@example.org")
        assert r3.status_code == 400
        # ...and "send again" recovers once the server is up.
        form = {k: field(r.text, k) for k in ("csrf", "user", "email", "exp", "sig")}
        bad = dict(form, email="mallory@example.org")
        assert b.post(s.url + "/verify_email/resend", data=bad, timeout=10).status_code == 400
        assert b.post(s.url + "/verify_email/resend", data=dict(form, csrf="x"),
                      timeout=10).status_code == 403
        ctl, box = smtp_server(port)
        r = b.post(s.url + "/verify_email/resend", data=form, timeout=30)
        assert r.status_code == 200 and "Check your e-mail" in r.text, r.text
        _, rcpts, raw, _ = box.wait()
        assert rcpts == ["bob@example.org"]
        _, link = link_of(raw)
        assert requests.get(link, timeout=10).status_code == 200
        assert "Signed in" in login(s, user).text
        # Verified: a replayed resend form sends nothing more.
        r = b.post(s.url + "/verify_email/resend", data=form, timeout=30)
        assert r.status_code == 200 and "verified" in r.text
        time.sleep(0.3)
        assert len(box.messages) == 1
    finally:
        s.cleanup()
        if ctl:
            ctl.stop()


def test_starttls(make_server, tmp_path):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    port = free_port()
    ctl, box = smtp_server(port, tls_context=ctx, require_starttls=True)
    y = yaml(port, f"    ca_file: {crt}\n", mode="starttls").replace(
        "hostname: 127.0.0.1", "hostname: localhost")
    s = make_server("sqlite", extra_yaml=y)
    try:
        s.start()
        user = "t" + secrets.token_hex(5)
        _, r = register(s, user, "carol@example.org")
        assert r.status_code == 200 and "Check your e-mail" in r.text, r.text
        _, _, raw, session = box.wait()
        assert session.ssl is not None            # the message went over TLS
        _, link = link_of(raw)
        assert requests.get(link, timeout=10).status_code == 200
        assert "Signed in" in login(s, user).text
        # Without our CA the certificate is refused: nothing is sent.
        s.stop()
        s.extra_yaml = y.replace(f"    ca_file: {crt}\n", "")
        s.write_config()
        s.start()
        _, r = register(s, "t" + secrets.token_hex(5), "dave@example.org")
        assert r.status_code == 503 and len(box.messages) == 1
    finally:
        s.cleanup()
        ctl.stop()


def check_config(s):
    p = subprocess.run([it.find_binary(), "check-config", "-c", s.config_path],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def start_error(s):
    """The start failure (module init checks the values: file:line first)."""
    with pytest.raises(RuntimeError) as e:
        s.start()
    return 1, str(e.value)


def test_config_errors(make_server):
    s = make_server("sqlite", extra_yaml=yaml(2525))
    try:
        cases = [
            (yaml(2525).replace("transport: smtp", "transport: carrier-pigeon"),
             "auth.email.transport: must be blackhole, smtp or sendmail", "transport:"),
            (yaml(2525).replace("transport: smtp", "transport: sendmail"),
             "auth.email.mode: not used with transport: sendmail", "mode:"),
            (yaml(2525).replace("mode: plain", "mode: ssl"),
             "auth.email.mode: must be plain, tls or starttls", "mode:"),
            (yaml(2525).replace("from: '\"Auth service\" <auth@example.org>'",
                                "from: \"a@b.org\\r\\nBcc: x@evil.example\""),
             "auth.email.from: not a mailbox", "from:"),
            (yaml(2525) + "    username: only\n", "auth.email.password:", "username:"),
            (yaml(2525) + "    colour: blue\n", "auth.email.colour: unknown key", "colour:"),
            (yaml(2525).replace("transport: smtp", "transport: blackhole"),
             "email_verification: smtp needs auth.email", "email_verification:"),
        ]
        for text, msg, key in cases:
            s.extra_yaml = text
            s.write_config()
            rc, out = start_error(s)
            assert rc != 0 and msg in out, out
            with open(s.config_path) as f:
                lines = f.read().split("\n")
            want = next(i + 1 for i, ln in enumerate(lines) if ln.strip().startswith(key))
            if key != "username:":
                assert f"config.yaml:{want}:" in out, (want, out)
            else:
                assert re.search(r"config\.yaml:\d+:", out), out
        # A port of the wrong type is the core's own file:line error.
        s.extra_yaml = yaml("many")
        s.write_config()
        rc, out = check_config(s)
        assert rc != 0 and "auth.email.port" in out and re.search(r"config\.yaml:\d+:", out)
        # dev mode needs no e-mail section at all.
        s.extra_yaml = ("auth:\n  account:\n    password_registration_enabled: true\n"
                        "    email_verification: dev\n")
        s.write_config()
        rc, out = check_config(s)
        assert rc == 0, out
    finally:
        s.cleanup()


def test_no_header_injection_from_the_form(make_server):
    port = free_port()
    ctl, box = smtp_server(port)
    s = make_server("sqlite", extra_yaml=yaml(port))
    try:
        s.start()
        for addr in ("eve@example.org\r\nBcc: victim@example.org", "eve@example.org\nX: y",
                     "<eve@example.org>", "eve@example.org, victim@example.org"):
            _, r = register(s, "i" + secrets.token_hex(5), addr)
            assert r.status_code == 400 and "not valid" in r.text
        time.sleep(0.3)
        assert box.messages == []
    finally:
        s.cleanup()
        ctl.stop()
