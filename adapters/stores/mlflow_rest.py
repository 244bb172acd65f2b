"""An MLflow REST store: one pool of kept-alive connections per store, timeouts, safe retries.

Calls with a body given whole (or none) go over `adapters/keepalive.py`, about a third of aiohttp's CPU per call
on the gateway's hot path (docs/performance.md); streamed uploads and the credentials' token requests go over
one aiohttp session. Both send the same request: the store's own Host, the forwarded headers, the workspace
header, the store's credentials, `Accept: */*` unless one was forwarded, no cookies, no redirects followed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from adapters.keepalive import Answer, HttpFailure, KeepAliveClient
from adapters.stores.auth import NoStoreAuth, StoreAuth
from gateway.core.ports import Body, StoreTimedOut, StoreUnreachable

WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
CHUNK_SIZE = 256 * 1024
IDEMPOTENT_ATTEMPTS = 3
KEEPALIVE_SECONDS = 4.0
# Methods a request may be sent again for when a kept connection failed before any answer came (as aiohttp does).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


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
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreUnreachable(f"store dropped the response: {type(exc).__name__}") from exc
        finally:
            self._response.release()

    def release(self) -> None:
        self._response.release()


class KeptStoreResponse:
    """An answer that came over a kept-alive connection (`adapters/keepalive.py`)."""

    __slots__ = ("_answer", "_read_seconds", "content_length", "headers", "status")

    def __init__(self, answer: Answer, read_seconds: float) -> None:
        self._answer = answer
        self._read_seconds = read_seconds
        self.status = answer.status
        self.headers: Mapping[str, str] = answer.headers
        self.content_length = answer.content_length

    async def read(self) -> bytes:
        """The whole body, within the store's timeout in all: each wait for more of it is bounded by the timeout
        too, but a store sending a byte now and then would otherwise hold the call for ever."""
        try:
            async with asyncio.timeout(self._read_seconds):
                return await self._answer.read()
        except HttpFailure as exc:
            raise StoreUnreachable(f"store dropped the response: {exc}") from exc
        except TimeoutError as exc:
            raise StoreUnreachable(f"store's answer did not come whole within {self._read_seconds} s") from exc
        finally:
            self._answer.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await self._answer.chunk(CHUNK_SIZE):
                yield chunk
        except HttpFailure as exc:
            raise StoreUnreachable(f"store dropped the response: {exc}") from exc
        finally:
            self._answer.release()

    def release(self) -> None:
        self._answer.release()


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
        self._read_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None
        # Idle connections are dropped before uvicorn's 5 s keep-alive (what `mlflow server` runs) would close
        # them under a request; the aiohttp session (streamed uploads) has a limit of the same number.
        self._kept = KeepAliveClient(
            url,
            connect_timeout=connect_timeout_seconds,
            read_timeout=timeout_seconds,
            max_connections=max_connections,
            max_idle=max_connections,
            idle_seconds=KEEPALIVE_SECONDS,
            encoding="utf-8",  # as aiohttp writes a request's head
        )

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
    ) -> AiohttpStoreResponse | KeptStoreResponse:
        if body is None or isinstance(body, bytes):
            return await self._request_kept(method, path, query, headers, body, workspace, idempotent)
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

    async def _request_kept(
        self,
        method: str,
        path: str,
        query: str,
        headers: Sequence[tuple[str, str]],
        body: bytes | None,
        workspace: str | None,
        idempotent: bool,
    ) -> KeptStoreResponse:
        # Only the configured base URL is ever contacted: `path` is appended to it, never parsed as a URL.
        target = path + "?" + query if query else path
        names = {name.lower() for name, _ in headers}
        out = list(headers)
        if workspace is not None:
            out = [*_without(out, names, WORKSPACE_HEADER.lower()), (WORKSPACE_HEADER, workspace)]
        if "accept" not in names:
            out.append(("Accept", "*/*"))  # what aiohttp adds
        resend = method in IDEMPOTENT_METHODS
        attempts = IDEMPOTENT_ATTEMPTS if idempotent else 1
        for attempt in range(attempts):
            authorization = await self.auth.authorization(self._client())
            sent = (
                out
                if authorization is None
                else [*_without(out, names, "authorization"), ("Authorization", authorization)]
            )
            try:
                answer = await self._kept.request(method, target, sent, body, resend=resend)
            except HttpFailure as exc:
                if attempt + 1 < attempts:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                if exc.timed_out:
                    raise StoreTimedOut(f"store {self.name} did not answer in time") from exc
                raise StoreUnreachable(f"store {self.name} is unreachable: {exc}") from exc
            if answer.status == 401 and attempt + 1 < attempts:
                self.auth.invalidate()
                answer.release()
                continue
            return KeptStoreResponse(answer, self._read_seconds)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._kept.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _without(headers: list[tuple[str, str]], names: set[str], name: str) -> list[tuple[str, str]]:
    """`headers` without those named `name` (lower case; `names`: the lower-case names among them)."""
    return [header for header in headers if header[0].lower() != name] if name in names else headers
