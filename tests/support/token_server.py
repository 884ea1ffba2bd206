"""Loopback token servers that hand out short-lived credentials, for the expiring-credential tests.

- ``GoogleTokenServer``: the OAuth 2.0 token endpoint of a Google service account (the JWT-bearer grant that
  ``golang.org/x/oauth2/google`` uses for a service-account JSON in GOOGLE_APPLICATION_CREDENTIALS): it
  checks the assertion's RS256 signature against the account's public key and its claims, and issues opaque
  access tokens that last ``lifetime`` seconds; ``valid`` is the check a proxy in front of a store makes.
- ``AzureTokenServer``: the managed-identity endpoint of Azure App Service (IDENTITY_ENDPOINT with the
  IDENTITY_HEADER secret, which azidentity's default chain reads), handing out JWTs for Azure Storage with
  the claims Azurite's ``--oauth basic`` checks (aud, iss, nbf, exp), lasting ``lifetime`` seconds.
- ``self_signed``: a certificate and key for 127.0.0.1, for a server that must speak HTTPS (azcore sends a
  bearer token over TLS only).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = _Quiet(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class GoogleTokenServer:
    """A service account and its token endpoint on 127.0.0.1; ``issued`` holds (token, expiry) pairs."""

    def __init__(self, lifetime: float = 20.0) -> None:
        self.lifetime = lifetime
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.email = "datago-test@datago-test.iam.gserviceaccount.com"
        self.issued: list[tuple[str, float]] = []
        self.refused = 0
        self._lock = threading.Lock()
        srv = self

        class Handler(_Handler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                form = urllib.parse.parse_qs(
                    self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                )
                why = srv._check(form.get("grant_type", [""])[0], form.get("assertion", [""])[0])
                if why:
                    with srv._lock:
                        srv.refused += 1
                    self.reply(400, {"error": "invalid_grant", "error_description": why})
                    return
                token = srv.issue()
                self.reply(
                    200, {"access_token": token, "expires_in": int(srv.lifetime), "token_type": "Bearer"}
                )

        self._server, self.endpoint = _serve(Handler)
        self.token_uri = self.endpoint + "/token"

    @property
    def private_key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def credentials(self, key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
        """The service-account JSON (GOOGLE_APPLICATION_CREDENTIALS); another ``key`` makes a wrong one."""
        pem = self.private_key_pem
        if key is not None:
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
        return {
            "type": "service_account",
            "project_id": "datago-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": self.email,
            "client_id": "100000000000000000001",
            "token_uri": self.token_uri,
        }

    def _check(self, grant: str, assertion: str) -> str:
        """Why the grant is refused ("" when it is good)."""
        if grant != JWT_BEARER:
            return f"unsupported grant_type {grant!r}"
        try:
            header, claims, sig = assertion.split(".")
            self.key.public_key().verify(
                _b64url_decode(sig), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            c = json.loads(_b64url_decode(claims))
        except (ValueError, InvalidSignature):
            return "Invalid JWT Signature."
        if (
            c.get("iss") != self.email
            or c.get("aud") != self.token_uri
            or GCS_SCOPE not in c.get("scope", "")
        ):
            return "Invalid JWT claims."
        if not c.get("exp", 0) > time.time() - 5:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        return ""

    def issue(self, lifetime: float | None = None) -> str:
        token = "ya29." + secrets.token_urlsafe(32)
        with self._lock:
            self.issued.append((token, time.time() + (self.lifetime if lifetime is None else lifetime)))
        return token

    def valid(self, authorization: str) -> bool:
        """Whether a request's Authorization header carries an issued, unexpired token."""
        token = authorization.removeprefix("Bearer ")
        now = time.time()
        with self._lock:
            return any(t == token and now < exp for t, exp in self.issued)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class AzureTokenServer:
    """App Service's managed-identity endpoint on 127.0.0.1; ``issued`` holds the (token, expiry) pairs.

    The JWT's own ``exp`` is ``grace`` seconds after the expiry the endpoint announces: a request the client
    signs just before the announced expiry may reach the store just after it, and real services allow for
    clock skew (Entra ID tokens are refreshed minutes ahead, which a 20-second token cannot be)."""

    def __init__(self, lifetime: float = 20.0, grace: float = 2.0) -> None:
        self.lifetime, self.grace = lifetime, grace
        self.header_secret = secrets.token_urlsafe(16)
        self.tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
        self.issued: list[tuple[str, float]] = []
        self.refused = 0
        self._lock = threading.Lock()
        srv = self

        class Handler(_Handler):
            def do_GET(self) -> None:  # noqa: N802
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                resource = q.get("resource", [""])[0]
                if self.headers.get("X-IDENTITY-HEADER") != srv.header_secret or not resource:
                    with srv._lock:
                        srv.refused += 1
                    self.reply(400, {"error": "invalid_request", "error_description": "bad identity header"})
                    return
                token, expires = srv.issue(resource)
                self.reply(
                    200,
                    {
                        "access_token": token,
                        "expires_on": str(int(expires)),
                        "resource": resource,
                        "token_type": "Bearer",
                        "client_id": "00000000-0000-0000-0000-000000000001",
                    },
                )

        self._server, self.endpoint = _serve(Handler)

    def env(self) -> dict[str, str]:
        """The variables that make azidentity's managed-identity credential ask this endpoint."""
        return {"IDENTITY_ENDPOINT": self.endpoint + "/msi/token", "IDENTITY_HEADER": self.header_secret}

    def issue(
        self, resource: str = "https://storage.azure.com", lifetime: float | None = None
    ) -> tuple[str, float]:
        now = time.time()
        expires = now + (self.lifetime if lifetime is None else lifetime)
        claims = {
            "aud": resource.rstrip("/"),
            "iss": f"https://sts.windows.net/{self.tenant}/",
            "iat": int(now) - 1,
            "nbf": int(now) - 1,
            "exp": int(expires + self.grace) if lifetime is None else int(expires),
            "oid": "11059fcc-5514-4800-b5f8-49808b9cfab6",
            "tid": self.tenant,
            "uti": secrets.token_urlsafe(12),
            "ver": "1.0",
        }
        # Azurite's basic OAuth check reads the claims and does not verify the signature: any bytes do.
        token = (
            ".".join(_b64url(json.dumps(p).encode()) for p in ({"typ": "JWT", "alg": "RS256"}, claims))
            + "."
            + _b64url(secrets.token_bytes(64))
        )
        with self._lock:
            self.issued.append((token, expires))
        return token, expires

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost) and its key, as PEM files in ``directory``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
