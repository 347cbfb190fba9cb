#!/usr/bin/env python3
"""DBSC probe server: a minimal relying party speaking the W3C DBSC protocol.

stdlib http.server + `cryptography` (for ES256/RS256 verification).
Logs every request (method, path, headers, body) as JSON lines to $DBSC_LOG
(default ./requests.jsonl) and to stderr.

Endpoints
  GET  /            index with links
  GET  /login       sets the long-lived session cookie `sid` and the
                    Secure-Session-Registration header, then (HTML) redirects to /app
  POST /dbsc/register  verifies the registration JWT (Secure-Session-Response),
                    stores the public key in the session record, answers the
                    session configuration JSON + Set-Cookie for the bound cookie
  POST /dbsc/refresh   no proof -> 403 + Secure-Session-Challenge: "<c>";id="<sid>"
                    good proof -> 200 + new bound cookie; bad proof -> 401 (no refresh)
  GET  /app         page whose JS polls /api/whoami and reports to /log
  GET  /api/whoami  200 only if `sid` and an unexpired `bound` cookie are valid, else 401
  POST /log         JS reports (stored in the request log)
  GET  /state       JSON dump of server-side sessions (for the driver script)

Knobs (environment):
  DBSC_PORT (8455), DBSC_HOST (localhost), DBSC_BOUND_TTL seconds (60),
  DBSC_ALGS ("ES256 RS256"), DBSC_REG_HEADER_NAME ("Secure-Session-Registration"),
  DBSC_BAD_REFRESH=1 (answer every refresh proof with 401),
  DBSC_INCLUDE_SITE (0), DBSC_COOKIE_ATTRS ("Path=/; HttpOnly; SameSite=Lax"),
  DBSC_SCOPE_ORIGIN (1: send scope.origin, 0: omit), DBSC_REFRESH_BODY (json|empty)
"""
import base64
import http.server
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PORT = int(os.environ.get("DBSC_PORT", "8455"))
HOST = os.environ.get("DBSC_HOST", "localhost")
TLS = os.environ.get("DBSC_TLS") == "1"
ORIGIN = f"{'https' if TLS else 'http'}://{HOST}:{PORT}"
BOUND_TTL = int(os.environ.get("DBSC_BOUND_TTL", "60"))
ALGS = os.environ.get("DBSC_ALGS", "ES256 RS256")
REG_HEADER = os.environ.get("DBSC_REG_HEADER_NAME", "Secure-Session-Registration")
BAD_REFRESH = os.environ.get("DBSC_BAD_REFRESH") == "1"
INCLUDE_SITE = os.environ.get("DBSC_INCLUDE_SITE", "0") == "1"
COOKIE_ATTRS = os.environ.get("DBSC_COOKIE_ATTRS", "Path=/; HttpOnly; SameSite=Lax")
SCOPE_ORIGIN = os.environ.get("DBSC_SCOPE_ORIGIN", "1") == "1"
REFRESH_BODY = os.environ.get("DBSC_REFRESH_BODY", "json")
# 1: never pre-send Secure-Session-Challenge, so every refresh takes the 403 round trip
NO_CACHED_CHALLENGE = os.environ.get("DBSC_NO_CACHED_CHALLENGE") == "1"
CHALLENGE_TTL = 300
LOG_PATH = os.environ.get("DBSC_LOG", os.path.join(os.path.dirname(os.path.abspath(__file__)), "requests.jsonl"))

LOCK = threading.Lock()
# session record, keyed by sid (the long-lived session cookie value)
SESSIONS = {}
# outstanding challenges: value -> {"sid":..., "kind": "registration"|"refresh", "exp": t}
CHALLENGES = {}
# bound cookie values: value -> {"sid":..., "exp": t}
BOUND = {}


def log(entry):
    entry["t"] = time.time()
    entry["ts"] = time.strftime("%H:%M:%S", time.gmtime())
    line = json.dumps(entry)
    with LOCK:
        with open(LOG_PATH, "a") as f:
            f.write(line + "\n")
    print(line, file=sys.stderr, flush=True)


def b64url_decode(s):
    s = s.strip()
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_int(s):
    return int.from_bytes(b64url_decode(s), "big")


def jwk_to_key(jwk):
    kty = jwk.get("kty")
    if kty == "EC":
        if jwk.get("crv") != "P-256":
            raise ValueError("unsupported crv %r" % jwk.get("crv"))
        x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
        if len(x) != 32 or len(y) != 32:
            raise ValueError("bad EC coordinate length")
        return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()).public_key()
    if kty == "RSA":
        return rsa.RSAPublicNumbers(b64url_int(jwk["e"]), b64url_int(jwk["n"])).public_key()
    raise ValueError("unsupported kty %r" % kty)


def verify_jwt(token, jwk=None):
    """Returns (header, payload, jwk_used). Raises on any failure."""
    token = token.strip()
    if token.startswith('"') and token.endswith('"'):  # sf-string form
        token = token[1:-1]
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header = json.loads(b64url_decode(parts[0]))
    payload = json.loads(b64url_decode(parts[1]))
    sig = b64url_decode(parts[2])
    if header.get("typ") != "dbsc+jwt":
        raise ValueError("typ is %r" % header.get("typ"))
    alg = header.get("alg")
    if jwk is None:
        jwk = header.get("jwk") or payload.get("key")  # draft: header.jwk; old Chrome: payload.key
        if jwk is None:
            raise ValueError("no key in registration JWT")
    key = jwk_to_key(jwk)
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    if alg == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey) or len(sig) != 64:
            raise ValueError("ES256 needs EC key and 64-byte r||s signature")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    elif alg == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("RS256 needs RSA key")
        key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError("unsupported alg %r" % alg)
    return header, payload, jwk


def new_challenge(sid, kind):
    c = secrets.token_urlsafe(24)
    with LOCK:
        CHALLENGES[c] = {"sid": sid, "kind": kind, "exp": time.time() + CHALLENGE_TTL}
    return c


def take_challenge(c, sid, kind):
    """Single use: remove on first presentation, valid or not."""
    with LOCK:
        rec = CHALLENGES.pop(c, None)
    return rec is not None and rec["sid"] == sid and rec["kind"] == kind and rec["exp"] > time.time()


def issue_bound(sid):
    v = secrets.token_urlsafe(18)
    with LOCK:
        BOUND[v] = {"sid": sid, "exp": time.time() + BOUND_TTL}
    return f"bound={v}; Max-Age={BOUND_TTL}; {COOKIE_ATTRS}"


def session_config(dbsc_id):
    scope = {"include_site": INCLUDE_SITE, "scope_specification": []}
    if SCOPE_ORIGIN:
        scope["origin"] = ORIGIN
    return {
        "session_identifier": dbsc_id,
        "refresh_url": "/dbsc/refresh",
        "scope": scope,
        "credentials": [{"type": "cookie", "name": "bound", "attributes": COOKIE_ATTRS}],
    }


APP_HTML = """<!doctype html><html><head><meta charset=utf-8><title>dbsc probe</title></head>
<body><h1>dbsc probe app</h1><pre id=out></pre><script>
const out = document.getElementById('out');
let n = 0;
async function tick() {
  n++;
  let status = 0, body = '';
  try { const r = await fetch('/api/whoami', {cache: 'no-store'}); status = r.status; body = await r.text(); }
  catch (e) { body = 'ERR ' + e; }
  const line = new Date().toISOString() + ' #' + n + ' whoami ' + status + ' ' + body;
  out.textContent += line + '\\n';
  fetch('/log', {method: 'POST', body: line});
}
if (location.search.includes('reg=1')) fetch('/reg').then(r => fetch('/log', {method: 'POST', body: 'fetched /reg ' + r.status}));
tick(); setInterval(tick, %d);
</script></body></html>"""


def parse_cookies(h):
    out = {}
    for part in (h or "").split(";"):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            out[k] = v
    return out


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code, body=b"", headers=(), ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if os.environ.get("DBSC_OT_TOKEN"):
            self.send_header("Origin-Trial", os.environ["DBSC_OT_TOKEN"])
        if body or code != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        log({"dir": "resp", "path": self.path, "status": code, "headers": list(headers), "body": body[:2000].decode("utf-8", "replace")})

    def _log_req(self, body):
        log({"dir": "req", "method": self.command, "path": self.path, "headers": list(self.headers.items()),
             "body": body[:4000].decode("utf-8", "replace")})

    def do_GET(self):
        self._log_req(b"")
        self.route(b"")

    def do_POST(self):
        body = self._body()
        self._log_req(body)
        self.route(body)

    def route(self, body):
        u = urllib.parse.urlsplit(self.path)
        p = u.path
        cookies = parse_cookies(self.headers.get("Cookie"))
        if p == "/":
            return self._send(200, '<a href="/login">login</a>', ctype="text/html")
        if p == "/favicon.ico":
            return self._send(404)
        if p == "/login":
            sid = secrets.token_urlsafe(18)
            authz = secrets.token_urlsafe(8)
            with LOCK:
                SESSIONS[sid] = {"sid": sid, "authorization": authz, "dbsc_id": None, "jwk": None, "alg": None,
                                 "created": time.time(), "refreshes": 0, "failed_refreshes": 0}
            ch = new_challenge(sid, "registration")
            reg = f'({ALGS});path="/dbsc/register";challenge="{ch}";authorization="{authz}"'
            hdrs = [("Set-Cookie", f"sid={sid}; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax"),
                    (REG_HEADER, reg)]
            html = '<!doctype html><meta http-equiv="refresh" content="3;url=/app">logged in'
            return self._send(200, html, hdrs, ctype="text/html")
        if p == "/reg":
            # re-send the registration header for the current session (used from fetch())
            sid = cookies.get("sid")
            with LOCK:
                sess = SESSIONS.get(sid)
            if not sess:
                return self._send(401, "no session")
            ch = new_challenge(sid, "registration")
            reg = f'({ALGS});path="/dbsc/register";challenge="{ch}";authorization="{sess["authorization"]}"'
            return self._send(200, "reg header sent", [(REG_HEADER, reg)])
        if p == "/app":
            q = urllib.parse.parse_qs(u.query)
            interval = int(q.get("ms", ["10000"])[0])
            return self._send(200, APP_HTML % interval, ctype="text/html")
        if p == "/log":
            return self._send(204)
        if p == "/state":
            with LOCK:
                st = {"sessions": SESSIONS, "bound": BOUND, "challenges": len(CHALLENGES), "now": time.time()}
            return self._send(200, json.dumps(st, default=str, indent=1), ctype="application/json")
        if p == "/api/whoami":
            sid = cookies.get("sid")
            b = cookies.get("bound")
            with LOCK:
                sess = SESSIONS.get(sid)
                brec = BOUND.get(b)
            if not sess:
                return self._send(401, "no session")
            if sess["dbsc_id"] is None:
                return self._send(200, "ok (session not yet bound)")
            if not brec or brec["sid"] != sid:
                return self._send(401, "bound session: bound cookie missing")
            if brec["exp"] < time.time():
                return self._send(401, "bound session: bound cookie expired")
            return self._send(200, "ok bound (refreshes=%d)" % sess["refreshes"])
        if p == "/dbsc/register":
            return self.register(cookies)
        if p == "/dbsc/refresh":
            return self.refresh(cookies)
        return self._send(404, "not found")

    def register(self, cookies):
        sid = cookies.get("sid")
        with LOCK:
            sess = SESSIONS.get(sid)
        if not sess:
            return self._send(401, "no session cookie on registration")
        proof = self.headers.get("Secure-Session-Response") or self.headers.get("Sec-Session-Response")
        if not proof:
            return self._send(400, "missing Secure-Session-Response")
        try:
            header, payload, jwk = verify_jwt(proof)
        except (ValueError, KeyError, InvalidSignature, json.JSONDecodeError) as e:
            log({"event": "register_verify_failed", "error": repr(e)})
            return self._send(400, "bad proof: %r" % e)
        if not take_challenge(payload.get("jti"), sid, "registration"):
            log({"event": "register_bad_jti", "jti": payload.get("jti")})
            return self._send(400, "bad or reused challenge")
        if payload.get("authorization") != sess["authorization"]:
            log({"event": "register_bad_authorization", "got": payload.get("authorization")})
            return self._send(400, "authorization mismatch")
        dbsc_id = secrets.token_urlsafe(12)
        with LOCK:
            sess.update(dbsc_id=dbsc_id, jwk=jwk, alg=header.get("alg"), registered=time.time())
        log({"event": "registered", "sid": sid, "dbsc_id": dbsc_id, "jwt_header": header, "jwt_payload": payload})
        cfg = session_config(dbsc_id)
        nxt = new_challenge(sid, "refresh")
        hdrs = [("Set-Cookie", issue_bound(sid))]
        if not NO_CACHED_CHALLENGE:
            hdrs.append(("Secure-Session-Challenge", f'"{nxt}";id="{dbsc_id}"'))
        return self._send(200, json.dumps(cfg), hdrs, ctype="application/json")

    def refresh(self, cookies):
        sid = cookies.get("sid")
        raw_id = self.headers.get("Sec-Secure-Session-Id") or ""
        dbsc_id = raw_id.strip()
        if dbsc_id.startswith('"') and dbsc_id.endswith('"'):
            dbsc_id = dbsc_id[1:-1]
        with LOCK:
            sess = SESSIONS.get(sid)
        if not sess or sess["dbsc_id"] != dbsc_id:
            log({"event": "refresh_unknown_session", "sid": sid, "dbsc_id": dbsc_id})
            # continue:false tells the browser to drop the DBSC session
            return self._send(200, json.dumps({"continue": False}), ctype="application/json")
        proof = self.headers.get("Secure-Session-Response")
        if not proof:
            ch = new_challenge(sid, "refresh")
            return self._send(403, "", [("Secure-Session-Challenge", f'"{ch}";id="{dbsc_id}"')])
        try:
            header, payload, _ = verify_jwt(proof, jwk=sess["jwk"])
            if header.get("alg") != sess["alg"]:
                raise ValueError("alg changed")
            if "jwk" in header:
                raise ValueError("jwk must not be present on refresh")
            if not take_challenge(payload.get("jti"), sid, "refresh"):
                raise ValueError("bad/expired/reused challenge %r" % payload.get("jti"))
            if BAD_REFRESH:
                raise ValueError("DBSC_BAD_REFRESH=1 forces failure")
        except (ValueError, KeyError, InvalidSignature, json.JSONDecodeError) as e:
            with LOCK:
                sess["failed_refreshes"] += 1
            log({"event": "refresh_rejected", "error": repr(e)})
            return self._send(401, "bad proof: no refresh")
        with LOCK:
            sess["refreshes"] += 1
        log({"event": "refreshed", "sid": sid, "dbsc_id": dbsc_id, "jwt_header": header, "jwt_payload": payload})
        nxt = new_challenge(sid, "refresh")
        hdrs = [("Set-Cookie", issue_bound(sid))]
        if not NO_CACHED_CHALLENGE:
            hdrs.append(("Secure-Session-Challenge", f'"{nxt}";id="{dbsc_id}"'))
        body = json.dumps(session_config(dbsc_id)) if REFRESH_BODY == "json" else ""
        return self._send(200, body, hdrs, ctype="application/json")


def make_cert(here):
    """Self-signed cert for localhost (probe only; use --ignore-certificate-errors)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    open(os.path.join(here, "localhost.pem"), "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(os.path.join(here, "localhost.key"), "wb").write(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    print(f"dbsc probe server on {ORIGIN} bound_ttl={BOUND_TTL}s algs={ALGS} log={LOG_PATH}", file=sys.stderr, flush=True)
    srv = Server(("127.0.0.1", PORT), H)
    if TLS:
        import ssl
        here = os.path.dirname(os.path.abspath(__file__))
        if not os.path.exists(os.path.join(here, "localhost.pem")):
            make_cert(here)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(here, "localhost.pem"), os.path.join(here, "localhost.key"))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
