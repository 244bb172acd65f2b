"""Authenticate every request before its handler runs; public routes authenticate optionally."""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Receive, Send

from gateway.authn.service import Authenticator
from gateway.errors import Unauthenticated
from gateway.observability.access import note


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            handler = scope.get("route_handler")
            public = handler is not None and handler.opt.get("public", False)
            try:
                principal = await self.authenticator.authenticate(authorization)
            except Unauthenticated:
                if not public:
                    raise
                principal = None
            scope["user"] = principal
            if principal is not None:
                note(scope, principal=principal.name)
        await self.app(scope, receive, send)  # type: ignore[arg-type]
