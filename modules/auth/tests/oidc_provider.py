"""
A small OpenID Connect provider for the upstream-login tests: discovery,
JWKS (one RSA key for RS256, or with alg="ES256" one P-256 key, via
python3-cryptography), an authorization
endpoint that approves at once (the user is `provider.claims`), and a token
endpoint that checks the code, the redirect URI, PKCE S256 and the client's
secret (client_secret_basic or _post), then signs an id_token.

`provider.tamper` breaks the next id_token on purpose: "nonce", "sig",
"iss", "aud", "exp".  Runs on 127.0.0.1 in a thread (real HTTP).
"""
import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _int_b64(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Provider:
    def __init__(self, client_id="mxstack", client_secret="s3cret", alg="RS256"):
        self.alg = alg
        self.client_id = client_id
        self.client_secret = client_secret
        if alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.other_key = ec.generate_private_key(ec.SECP256R1())
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "k1"
        self.claims = {"sub": "alice-sub", "preferred_username": "alice", "name": "Alice A."}
        self.tamper = None
        self.codes = {}
        self.token_requests = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def jwks(self):
        pub = self.key.public_key().public_numbers()
        if self.alg == "ES256":
            return {"keys": [{"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256",
                              "crv": "P-256", "x": b64url(pub.x.to_bytes(32, "big")),
                              "y": b64url(pub.y.to_bytes(32, "big"))}]}
        return {"keys": [{"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                          "n": _int_b64(pub.n), "e": _int_b64(pub.e)}]}

    def sign(self, claims, key=None):
        header = {"alg": self.alg, "typ": "JWT", "kid": self.kid}
        inp = (b64url(json.dumps(header).encode()) + "." +
               b64url(json.dumps(claims).encode())).encode()
        if self.alg == "ES256":
            r, s_ = decode_dss_signature((key or self.key).sign(inp, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
        else:
            sig = (key or self.key).sign(inp, padding.PKCS1v15(), hashes.SHA256())
        return inp.decode() + "." + b64url(sig)

    def id_token(self, nonce):
        now = int(time.time())
        c = dict(self.claims)
        c.update({"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": nonce})
        t, self.tamper = self.tamper, None
        key = None
        if t == "nonce":
            c["nonce"] = "not-the-nonce"
        elif t == "iss":
            c["iss"] = "http://evil.example/"
        elif t == "aud":
            c["aud"] = "someone-else"
        elif t == "exp":
            c["exp"] = now - 60
        elif t == "sig":
            key = self.other_key
        return self.sign(c, key)

    def _handler(self):
        prov = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                if u.path == "/.well-known/openid-configuration":
                    return self._json(200, {
                        "issuer": prov.issuer,
                        "authorization_endpoint": prov.issuer + "authorize",
                        "token_endpoint": prov.issuer + "token",
                        "jwks_uri": prov.issuer + "jwks",
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": [prov.alg],
                        "code_challenge_methods_supported": ["S256"]})
                if u.path == "/jwks":
                    return self._json(200, prov.jwks())
                if u.path == "/authorize":
                    if (q.get("client_id") != prov.client_id or q.get("response_type") != "code"
                            or q.get("code_challenge_method") != "S256"
                            or not q.get("code_challenge") or not q.get("nonce")
                            or "openid" not in q.get("scope", "").split()):
                        return self._json(400, {"error": "invalid_request"})
                    code = secrets.token_urlsafe(16)
                    prov.codes[code] = q
                    loc = q["redirect_uri"] + "?" + urllib.parse.urlencode(
                        {"code": code, "state": q.get("state", "")})
                    self.send_response(302)
                    self.send_header("Location", loc)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._json(404, {"error": "not_found"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                if self.path != "/token":
                    return self._json(404, {"error": "not_found"})
                prov.token_requests.append(form)
                cid, sec = form.get("client_id"), form.get("client_secret")
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    a, _, b = base64.b64decode(auth[6:]).decode().partition(":")
                    cid, sec = urllib.parse.unquote_plus(a), urllib.parse.unquote_plus(b)
                if cid != prov.client_id or sec != prov.client_secret:
                    return self._json(401, {"error": "invalid_client"})
                q = prov.codes.pop(form.get("code", ""), None)
                if (not q or form.get("grant_type") != "authorization_code"
                        or form.get("redirect_uri") != q["redirect_uri"]):
                    return self._json(400, {"error": "invalid_grant"})
                want = b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                if want != q["code_challenge"]:
                    return self._json(400, {"error": "invalid_grant"})
                return self._json(200, {"access_token": secrets.token_urlsafe(16),
                                        "token_type": "Bearer", "expires_in": 300,
                                        "id_token": prov.id_token(q["nonce"])})

        return H
