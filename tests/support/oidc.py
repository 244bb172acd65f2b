"""A real OpenID Connect issuer for the tests: discovery, a JWKS of one RSA key, RS256-signed tokens, and a
sign-in page with the authorization code flow (PKCE S256 required), a token endpoint and RP-initiated logout."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.devstack import LOOPBACK, free_port

OIDC_AUDIENCE = "fedgate-tests"  # what the integration tests' `oidc_gateway` wants in a token's `aud`


@dataclass
class Client:
    """A client registered at the issuer: its secret ("" for a public client) and redirect URIs."""

    secret: str
    redirect_uris: set[str]


@dataclass
class Person:
    password: str
    groups: list[str] = field(default_factory=list)
    email_verified: bool = True


class OidcIssuer:
    """A real OpenID Connect issuer in a background thread: discovery, a JWKS of one RSA key, RS256 tokens.

    Plain http by default; with `tls` it serves https. Discovery names `jwks_uri` when set (a test may
    point it elsewhere), else the issuer's own `/jwks`.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.port = 0
        self.jwks_requests = 0
        self.jwks_uri: str | None = None
        self.endpoints: dict[str, str] = {}  # discovery entries a test replaces (authorization_endpoint, ...)
        self._tls = tls
        self._generation = 1
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.clients: dict[str, Client] = {}
        self.people: dict[str, Person] = {}
        self._codes: dict[str, dict[str, Any]] = {}  # code → what it was issued for (used once)
        self.logouts: list[dict[str, str]] = []  # the end-session requests received
        self.token_requests: list[dict[str, str]] = []  # the token endpoint's forms (secrets and all)
        # A test's stand-in for the ID token the token endpoint would send: given the claims the issuer would
        # sign (iss, sub, aud, iat, exp, email, email_verified, groups, nonce), what it sends instead (None: none).
        self.id_token_hook: Callable[[dict[str, Any]], str | None] | None = None

    def register(self, client_id: str, redirect_uri: str, secret: str = "") -> None:
        self.clients.setdefault(client_id, Client(secret, set())).redirect_uris.add(redirect_uri)

    def person(self, email: str, password: str, groups: list[str] | None = None) -> None:
        self.people[email] = Person(password, list(groups or []))

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

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """Exactly these claims, signed with the current key (RS256, its kid unless `header` says otherwise)."""
        key = self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid, **(header or {})}, claims, key, algorithms=["RS256"])

    def _jwks(self) -> dict[str, Any]:
        with self._lock:
            self.jwks_requests += 1
            return {"keys": [self.key.as_dict(private=False)]}

    def _authorization_problem(self, params: dict[str, str]) -> str:
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return "unknown client"
        if params.get("redirect_uri") not in client.redirect_uris:
            return "redirect_uri is not registered for this client"
        if params.get("response_type") != "code":
            return "only the authorization code flow is served"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "PKCE with S256 is required"
        return ""

    def _exchange(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint: one use per code, the same client and redirect URI, the PKCE verifier."""
        with self._lock:
            self.token_requests.append(dict(form))
            issued = self._codes.pop(form.get("code", ""), None)
        client_id = form.get("client_id", "")
        secret = ""
        if authorization and authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            return 401, {"error": "invalid_client"}
        if issued is None or time.time() - issued["issued"] > 60:
            return 400, {"error": "invalid_grant"}
        if issued["client_id"] != client_id or issued["redirect_uri"] != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or challenge != issued["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        person = self.people[issued["email"]]
        claims = {"email_verified": person.email_verified, "nonce": issued.get("nonce", "")}
        id_token = self.token(
            issued["email"], audience=client_id, email=issued["email"], groups=person.groups, extra_claims=claims
        )
        access = self.token(issued["email"], audience="fedgate", email=issued["email"], groups=person.groups)
        answer = {"access_token": access, "id_token": id_token, "token_type": "Bearer", "expires_in": 300}
        hook = self.id_token_hook
        if hook is not None:
            replaced = hook(jwt.decode(id_token, self.key).claims)
            if replaced is None:
                del answer["id_token"]
            else:
                answer["id_token"] = replaced
        return 200, answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": issuer.url,
                        "jwks_uri": issuer.jwks_uri or f"{issuer.url}/jwks",
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "authorization_endpoint": f"{issuer.url}/authorize",
                        "token_endpoint": f"{issuer.url}/token",
                        "end_session_endpoint": f"{issuer.url}/logout",
                        "code_challenge_methods_supported": ["S256"],
                        **issuer.endpoints,
                    }
                elif path == "/jwks":
                    body = issuer._jwks()
                elif path == "/authorize":
                    self._login_page(_single(parse_qs(query)))
                    return
                elif path == "/logout":
                    params = _single(parse_qs(query))
                    issuer.logouts.append(params)
                    self._redirect(params.get("post_logout_redirect_uri") or f"{issuer.url}/")
                    return
                else:
                    self.send_error(404)
                    return
                self._json(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = _single(parse_qs(self.rfile.read(length).decode()))
                if self.path == "/authorize":
                    self._sign_in(form)
                elif self.path == "/token":
                    status, body = issuer._exchange(form, self.headers.get("Authorization"))
                    self._json(status, body)
                else:
                    self.send_error(404)

            def _login_page(self, params: dict[str, str], error: str = "") -> None:
                problem = issuer._authorization_problem(params)
                if problem:
                    self._json(400, {"error": "invalid_request", "error_description": problem})
                    return
                hidden = "".join(
                    f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v, quote=True)}'>"
                    for k, v in params.items()
                )
                page = (
                    "<!doctype html><html><head><title>Test IdP sign-in</title></head><body>"
                    "<h1>Test identity provider</h1>"
                    + (f"<p id='error'>{html.escape(error)}</p>" if error else "")
                    + f"<form method='post' action='/authorize'>{hidden}"
                    "<label>E-mail <input id='username' name='username'></label>"
                    "<label>Password <input id='password' name='password' type='password'></label>"
                    "<button id='submit' type='submit'>Sign in</button></form></body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def _sign_in(self, form: dict[str, str]) -> None:
                username, password = form.pop("username", ""), form.pop("password", "")
                person = issuer.people.get(username)
                if person is None or not secrets.compare_digest(person.password, password):
                    self._login_page(form, "Wrong e-mail or password.")
                    return
                problem = issuer._authorization_problem(form)
                if problem:
                    self._json(400, {"error": "invalid_request", "error_description": problem})
                    return
                code = secrets.token_urlsafe(24)
                with issuer._lock:
                    issuer._codes[code] = {**form, "email": username, "issued": time.time()}
                self._redirect(form["redirect_uri"] + "?" + urlencode({"code": code, "state": form.get("state", "")}))

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
                pass

        return Handler


def _single(params: dict[str, list[str]]) -> dict[str, str]:
    return {key: values[0] for key, values in params.items()}


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
