"""Authenticate every request before its handler runs; public routes authenticate optionally.

Anonymous denials (no credentials, or credentials that do not authenticate) are rate-limited per
client address with a token bucket in this process (`DenialLimiter`): each such 401 spends one token
of the address's budget (`server.anonymous_denials_burst`, refilled at
`server.anonymous_denials_per_second`); once the budget is spent the request answers 429
REQUEST_LIMIT_EXCEEDED with Retry-After instead, and is counted in `fedgate_rate_limited_total` rather
than written to the audit log one row at a time. A request that authenticates is never limited, so
a flood from an address does not lock out a legitimate client behind the same NAT. Public routes answer
without credentials and are never limited for that; an Authorization header that fails there spends the
budget all the same (a flood of guessed tokens costs a lookup each, whatever the route).

Browsers of the web UI authenticate with the session cookie instead (authn/sessions.py); a request with
an Authorization header is judged by that header alone. A cookie-authenticated request that may change
something must come from the gateway's own pages (authn/browser.py), or it is refused with 403; so is
such a request with Basic credentials (which a browser adds by itself once it has them) that a browser
says came from another site.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from typing import Any

from litestar.types import ASGIApp, Receive, Send

from gateway.authn.browser import SAFE_METHODS, BrowserOrigin, session_value
from gateway.authn.limits import PrincipalLimiter
from gateway.authn.service import Authenticator, is_basic
from gateway.core.errors import RateLimited, Unauthenticated
from gateway.observability.access import note
from gateway.observability.metrics import RATE_LIMITED


class DenialLimiter:
    """A token bucket per client; an address absent from the table has a full bucket."""

    def __init__(self, per_second: float, burst: int, max_clients: int = 100_000) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.max_clients = max_clients
        # client → (tokens, monotonic time of that count); least recently touched first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def enabled(self) -> bool:
        return self.per_second > 0

    def _tokens(self, client: str, now: float) -> float:
        held = self._buckets.get(client)
        if held is None:
            return self.burst
        tokens, at = held
        return min(self.burst, tokens + (now - at) * self.per_second)

    def exhausted(self, address: str, now: float | None = None) -> bool:
        return self.enabled and self._tokens(client_of(address), time.monotonic() if now is None else now) < 1

    def take(self, address: str, now: float | None = None) -> float:
        """Spend one token of the address's budget: 0 if there was one, else the seconds until there is."""
        if not self.enabled:
            return 0.0
        client = client_of(address)
        now = time.monotonic() if now is None else now
        tokens = self._tokens(client, now)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            self._buckets.move_to_end(client)
            return (1 - tokens) / self.per_second
        self._buckets[client] = (tokens - 1, now)
        self._buckets.move_to_end(client)
        # Bounded memory: forgetting the least recently refused address only gives it a full bucket back.
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return 0.0


def client_of(address: str) -> str:
    """Whom a budget belongs to: the address, but one IPv6 /64 is one client (a host there holds all of it).

    An IPv4 client of a socket listening on both families (`server.host = "::"` with several workers, whose
    socket uvicorn binds without IPV6_V6ONLY) is seen as `::ffff:a.b.c.d`: its budget is its IPv4 address's.
    Read as IPv6, every IPv4 client was in the one /64 `::/64` and shared one budget, so one address's flood of
    bad tokens had every other IPv4 client's sign-in (starting one at the identity provider included) answer 429.
    """
    if ":" in address:
        try:
            ip = ipaddress.IPv6Address(address)
        except ValueError:
            return address
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Network(f'{ip}/64', strict=False).network_address}/64"
    return address or "unknown"


def remote_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class AuthenticationMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        limiter: DenialLimiter | None = None,
        principal_limiter: PrincipalLimiter | None = None,
        browser: BrowserOrigin | None = None,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limiter = limiter
        self.principal_limiter = principal_limiter  # requests per principal (authn/limits.py)
        self.browser = browser if authenticator.sessions is not None else None
        self.origin = browser or BrowserOrigin()  # for Basic credentials, with or without the web UI

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            handler = scope.get("route_handler")
            public = handler is not None and handler.opt.get("public", False)
            looked_up = False  # whether a session cookie cost a lookup
            try:
                if authorization is None and (cookie := self._session_cookie(scope)) is not None:
                    looked_up = not self.authenticator.dead_session(cookie)
                    principal, _ = await self.authenticator.from_session(cookie)
                    if scope.get("method", "GET") not in SAFE_METHODS:
                        self.browser.require_same_origin(scope)  # type: ignore[union-attr]  # a cookie was read
                else:
                    principal = await self.authenticator.authenticate(authorization)
                    if is_basic(authorization) and scope.get("method", "GET") not in SAFE_METHODS:
                        self.origin.refuse_cross_site(scope)  # a browser's remembered credentials
            except Unauthenticated:
                if not public:
                    self._spend(scope)
                    raise
                if authorization is not None or looked_up:
                    # Credentials that fail cost a lookup on a public route too (server-info, health, the UI's
                    # files): they spend the budget, else a flood of them there would never be limited. So does
                    # a session cookie the first time this replica finds it dead; one not of the shape the
                    # gateway issues, or already found dead, costs no lookup and spends nothing.
                    self._spend(scope)
                principal = None
            scope["user"] = principal
            if principal is not None:
                note(scope, principal=principal.name)
                if self.principal_limiter is not None and not public:
                    self.principal_limiter.check(principal.name)
        await self.app(scope, receive, send)  # type: ignore[arg-type]

    def _session_cookie(self, scope: dict[str, Any]) -> str | None:
        if self.browser is None:
            return None
        return session_value(scope, self.browser.session_cookie(scope))

    def _spend(self, scope: dict[str, Any]) -> None:
        """Charge an anonymous denial to its address; 429 once the address's budget is spent."""
        if self.limiter is None:
            return
        wait = self.limiter.take(remote_address(scope))
        if wait > 0:
            RATE_LIMITED.inc()
            raise RateLimited(wait)
