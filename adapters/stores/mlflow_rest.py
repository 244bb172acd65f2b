"""An MLflow REST store reached with aiohttp: one pooled session per store, timeouts, safe retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from adapters.stores.auth import NoStoreAuth, StoreAuth
from gateway.core.ports import Body, StoreTimedOut, StoreUnreachable

WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
CHUNK_SIZE = 256 * 1024
IDEMPOTENT_ATTEMPTS = 3
KEEPALIVE_SECONDS = 4.0


class AiohttpStoreResponse:
    __slots__ = ("_response", "content_length", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.content_length = response.content_length

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreUnreachable(f"store dropped the response: {type(exc).__name__}") from exc
        finally:
            self._response.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK_SIZE):
                yield chunk
        finally:
            self._response.release()

    def release(self) -> None:
        self._response.release()


class MlflowRestStore:
    """A store that speaks the MLflow REST API over HTTP(S)."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        auth: StoreAuth | None = None,
        workspaces_enabled: bool = False,
        timeout_seconds: float = 120.0,
        connect_timeout_seconds: float = 5.0,
        max_connections: int = 100,
    ) -> None:
        self.name = name
        base = URL(url.rstrip("/"))
        self._prefix = str(base.origin()) + base.raw_path.rstrip("/")
        self.auth = auth or NoStoreAuth()
        self.workspaces_enabled = workspaces_enabled
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_seconds, sock_read=timeout_seconds)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Idle connections are dropped before uvicorn's 5 s keep-alive (what `mlflow server` runs)
            # would close them under a request that cannot be replayed, such as a streamed upload.
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_SECONDS
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                # The store's own Host header: MLflow 3.18 servers refuse foreign ones.
                trust_env=False,
                # One session carries every user's calls: a cookie the store set on one call must never ride
                # along on the next, which may be another user's.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Sequence[tuple[str, str]] = (),
        body: Body = None,
        workspace: str | None = None,
        idempotent: bool = False,
    ) -> AiohttpStoreResponse:
        session = self._client()
        # Only the configured base URL is ever contacted: `path` is appended to it, never parsed as a URL.
        url = URL(self._prefix + path + ("?" + query if query else ""), encoded=True)
        out = CIMultiDict(headers)
        if workspace is not None:
            out[WORKSPACE_HEADER] = workspace
        attempts = IDEMPOTENT_ATTEMPTS if idempotent and not isinstance(body, AsyncIterable) else 1
        for attempt in range(attempts):
            authorization = await self.auth.authorization(session)
            if authorization is not None:
                out["Authorization"] = authorization
            try:
                response = await session.request(method, url, headers=out, data=body, allow_redirects=False)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                if attempt + 1 < attempts:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                if isinstance(exc, aiohttp.ServerTimeoutError):
                    raise StoreTimedOut(f"store {self.name} did not answer in time") from exc
                raise StoreUnreachable(f"store {self.name} is unreachable: {type(exc).__name__}") from exc
            except TimeoutError as exc:
                raise StoreTimedOut(f"store {self.name} did not answer in time") from exc
            if response.status == 401 and attempt + 1 < attempts:
                self.auth.invalidate()
                response.release()
                continue
            return AiohttpStoreResponse(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
