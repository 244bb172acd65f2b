"""Ports: the small protocols the gateway needs from the outside world, and the plain values they use."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Protocol

Body = bytes | AsyncIterable[bytes] | None


class StoreUnreachable(Exception):
    """The store refused or dropped the connection before answering."""


class StoreTimedOut(Exception):
    """The store accepted the connection but did not answer in time."""


class StoreResponse(Protocol):
    """An upstream answer whose body is read once, whole or in chunks, then released."""

    status: int
    headers: Mapping[str, str]
    content_length: int | None

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def release(self) -> None: ...


class Store(Protocol):
    """A backend that speaks the MLflow REST API."""

    name: str
    workspaces_enabled: bool

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
    ) -> StoreResponse:
        """Send one request; `path` is already percent-encoded and starts with '/'."""
        ...

    async def close(self) -> None: ...


class ChangeFeed(Protocol):
    """Notifies this process when another replica changed shared state (e.g. PostgreSQL NOTIFY)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...
