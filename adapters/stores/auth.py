"""How the gateway authenticates to a store: none, basic, bearer, OAuth2 client credentials."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Protocol

import aiohttp
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from gateway.core.ports import StoreUnreachable

# Default scopes per provider. Entra: the resource id of Azure Databricks; Azure ML uses its own, so
# set `scope` for it.
DEFAULT_SCOPES = {"databricks": "all-apis", "entra": "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"}


class StoreAuth(Protocol):
    async def authorization(self, session: aiohttp.ClientSession) -> str | None:
        """The Authorization header value for the next request, or None."""
        ...

    def invalidate(self) -> None:
        """Forget a cached credential the store has just refused."""
        ...


class NoStoreAuth:
    async def authorization(self, session: aiohttp.ClientSession) -> str | None:
        return None

    def invalidate(self) -> None:
        return None


class StaticStoreAuth:
    """Basic or bearer credentials resolved once at start-up."""

    def __init__(self, header_value: str) -> None:
        self._value = header_value

    @classmethod
    def basic(cls, username: str, password: str) -> StaticStoreAuth:
        return cls("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())

    @classmethod
    def bearer(cls, token: str) -> StaticStoreAuth:
        return cls(f"Bearer {token}")

    async def authorization(self, session: aiohttp.ClientSession) -> str | None:
        return self._value

    def invalidate(self) -> None:
        return None


def token_url_for(provider: str, *, host: str = "", tenant_id: str = "") -> str:
    """Token endpoints of the providers the gateway knows, for OAuth2 machine-to-machine access."""
    if provider == "databricks":
        return host.rstrip("/") + "/oidc/v1/token"
    if provider == "entra":
        return f"https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"
    raise ValueError(f"unknown OAuth2 provider {provider!r}")


class ClientCredentialsAuth:
    """OAuth2 client-credentials grant (RFC 6749 §4.4); the token is cached until shortly before expiry."""

    REFRESH_LEEWAY_SECONDS = 60

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str = "") -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._token: OAuth2Token | None = None
        self._lock = asyncio.Lock()

    async def authorization(self, session: aiohttp.ClientSession) -> str | None:
        token = self._token
        if token is None or token.is_expired(leeway=self.REFRESH_LEEWAY_SECONDS):
            async with self._lock:
                token = self._token
                if token is None or token.is_expired(leeway=self.REFRESH_LEEWAY_SECONDS):
                    token = self._token = await self._fetch(session)
        return f"Bearer {token['access_token']}"

    def invalidate(self) -> None:
        self._token = None

    async def _fetch(self, session: aiohttp.ClientSession) -> OAuth2Token:
        body = prepare_token_request("client_credentials", scope=self._scope or None)
        basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
        headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        try:
            async with session.post(self.token_url, data=body, headers=headers) as response:
                payload = await response.json(content_type=None)
                if response.status != 200 or "access_token" not in payload:
                    # The provider's error text is safe to log; the secret never is part of it.
                    raise StoreUnreachable(
                        f"token endpoint answered {response.status}: {payload.get('error', 'no token')}"
                    )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise StoreUnreachable(f"token endpoint {self.token_url} failed: {type(exc).__name__}") from exc
        if "expires_in" in payload and "expires_at" not in payload:
            payload["expires_at"] = int(time.time()) + int(payload["expires_in"])
        return OAuth2Token(payload)
