"""A real OpenID Connect issuer for the tests: discovery, a JWKS of one RSA key, RS256-signed tokens."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.devstack import LOOPBACK, free_port


class OidcIssuer:
    """A real OpenID Connect issuer in a background thread: discovery, a JWKS of one RSA key, RS256 tokens.

    Plain http by default; with `tls` it serves https. Discovery names `jwks_uri` when set (a test may
    point it elsewhere), else the issuer's own `/jwks`.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.port = 0
        self.jwks_requests = 0
        self.jwks_uri: str | None = None
        self._tls = tls
        self._generation = 1
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{LOOPBACK}:{self.port}"

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def start(self) -> OidcIssuer:
        self.port = self.port or free_port()
        self._server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler())
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="oidc-issuer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def rotate(self) -> None:
        """Replace the signing key: the new one gets a new kid, the old one leaves the JWKS."""
        with self._lock:
            self._generation += 1
            kid = f"k{self._generation}"
            self.key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})

    def token(
        self,
        subject: str,
        *,
        audience: str = "fedgate",
        groups: Any = None,
        expires_in: int = 300,
        email: str | None = None,
        extra_claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.url, "sub": subject, "aud": audience, "iat": now, "exp": now + expires_in}
        if email is not None:
            claims["email"] = email
        if groups is not None:
            claims["groups"] = groups
        claims.update(extra_claims or {})
        key = self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid, **(header or {})}, claims, key, algorithms=["RS256"])

    def _jwks(self) -> dict[str, Any]:
        with self._lock:
            self.jwks_requests += 1
            return {"keys": [self.key.as_dict(private=False)]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": issuer.url,
                        "jwks_uri": issuer.jwks_uri or f"{issuer.url}/jwks",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/jwks":
                    body = issuer._jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
                pass

        return Handler
