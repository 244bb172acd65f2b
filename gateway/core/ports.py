"""Ports: the small protocols the gateway needs from the outside world, and the plain values they use."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

Body = bytes | AsyncIterable[bytes] | None


class StoreUnreachable(Exception):
    """The store refused or dropped the connection before answering."""


class StoreTimedOut(Exception):
    """The store accepted the connection but did not answer in time."""


class StreamCutShort(Exception):
    """A streamed answer (an artifact download) broke off after its head was sent: the store's stream ended early
    or failed. Nothing can be answered any more; the client's connection is ended short of the announced length
    (gateway/observability/access.py), so the client sees a failed download, never a short success."""


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


# -- vaults: where the values of secret scopes live ---------------------------------------------------


class VaultUnavailable(Exception):
    """The vault did not answer (unreachable, timed out, 5xx after retries): the caller answers 503."""


class VaultDenied(Exception):
    """The vault refused the gateway's own credentials (403): a misconfiguration, never the caller's fault."""


class VaultReadOnly(Exception):
    """The vault is managed outside the gateway (Azure Key Vault): values are put there, not through fedgate."""


class VaultNameRefused(Exception):
    """The location cannot be stored under this vault's naming rules, or would collide with another one."""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as a listing shows it: its key and when its value last changed (ms since the epoch)."""

    key: str
    updated_ms: int


class Vault(Protocol):
    """A store of secret values, one adapter per kind (built-in, OpenBao/Vault KV v2, Azure Key Vault).

    `location` names one secret scope of one workspace (the gateway chooses it, e.g. `w1001/db-creds`);
    `key` a secret in it; both are already validated (`[A-Za-z0-9_.-]{1,128}`, not `.` or `..`, location
    `w<id>/<scope>`).
    Values are bytes and never appear in an exception's message, a log line or a metric label.
    """

    name: str
    read_only: bool

    async def get(self, location: str, key: str) -> bytes | None:
        """The value, or None when there is none."""
        ...

    async def get_many(self, location: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        """Several values of one scope in one round where the vault allows it; None for missing ones."""
        ...

    async def put(self, location: str, key: str, value: bytes) -> None: ...

    async def delete(self, location: str, key: str) -> bool:
        """Whether there was a value to delete."""
        ...

    async def list(self, location: str) -> list[SecretInfo]:
        """The scope's secrets, names and update times only."""
        ...

    async def drop(self, location: str) -> None:
        """Every secret of the scope (the scope is deleted)."""
        ...

    async def check(self) -> str:
        """A one-line description of the vault when it is reachable and the gateway is authorised; raises
        VaultUnavailable or VaultDenied otherwise."""
        ...

    async def close(self) -> None: ...
