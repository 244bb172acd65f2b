"""A short in-memory cache of a vault's values: a decorator of the `Vault` port, off unless configured.

The composition root (gateway/app.py, `build_vaults`) wraps each vault in a `CachedVault` when
`[secrets] cache_seconds` is more than 0; adapters know nothing of it. Contracts:

- Only values are cached, those `get` and `get_many` answered (a run's reads), per (location, key),
  for at most `ttl_seconds` from when the vault answered. Never an authorization decision: the
  service decides every read, and answers a value only once it allowed the read (it may ask the vault,
  and so this cache, while its statement decides, when it predicts the read is allowed: service.py).
- A missing value is cached as missing for the same time, so a put, an update and a delete made
  through another replica all reach this one within `ttl_seconds`.
- A put, delete or drop through this object forgets what it changes, before and after the vault is
  called; a read that was in flight meanwhile is not kept (a write counter tells), so this replica
  never serves a value older than its own last change.
- Bounded: at most `max_entries` values and `max_bytes` bytes of values, least recently used first out.
- A vault that fails (any error of any call) loses everything cached of it: values are never served
  from here for a vault that stopped answering or refused the gateway once that was seen. A read of
  several keys that fails answers nothing, not the cached part. A name the vault refuses to hold
  (`VaultNameRefused`, raised before it is asked) is no failure of the vault and keeps the cache: a run
  that once asked for such a name would otherwise empty it at each of its writes (the leak guard looks
  the name up again every time).
- Values are never in a repr, a log line or an exception; the cache is per process and dies with it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from gateway.core.ports import SecretInfo, Vault, VaultNameRefused
from gateway.observability.metrics import SECRET_CACHE

T = TypeVar("T")
# What an entry costs besides its value (the tuple, the key strings, the dict slot): counted against max_bytes.
ENTRY_OVERHEAD_BYTES = 200


class CachedVault:
    """The `Vault` port over another one, its values kept for `ttl_seconds` (see the module docstring)."""

    def __init__(
        self,
        inner: Vault,
        ttl_seconds: float,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("a cache of vault values keeps them for more than 0 seconds")
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a cache of vault values holds at least one entry and one byte")
        self.inner = inner
        self.name = inner.name
        self.read_only = inner.read_only
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # (location, key) -> (expires at, value or None for missing); oldest use first.
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes | None]] = OrderedDict()
        self._bytes = 0
        self._writes = 0  # counts changes and failures: a read that started before one is not kept
        self._hit = SECRET_CACHE.labels(inner.name, "hit")
        self._miss = SECRET_CACHE.labels(inner.name, "miss")

    def __repr__(self) -> str:
        return f"CachedVault({self.inner!r}, ttl_seconds={self.ttl_seconds}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    # -- reads --------------------------------------------------------------------------------------

    async def get(self, location: str, key: str) -> bytes | None:
        found, value = self._cached(location, key)
        if found:
            self._hit.inc()
            return value
        self._miss.inc()
        started = self._writes
        value = await self._guarded(self.inner.get(location, key))
        if started == self._writes:
            self._keep(location, key, value)
        return value

    async def get_many(self, location: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        answer: dict[str, bytes | None] = {}
        wanted: list[str] = []
        for key in dict.fromkeys(keys):
            found, value = self._cached(location, key)
            if found:
                answer[key] = value
            else:
                wanted.append(key)
        self._hit.inc(len(answer))
        if not wanted:
            return answer
        self._miss.inc(len(wanted))
        started = self._writes
        fetched = await self._guarded(self.inner.get_many(location, wanted))
        keep = started == self._writes
        for key in wanted:
            value = fetched.get(key)
            answer[key] = value
            if keep:
                self._keep(location, key, value)
        return answer

    # -- changes: forgotten before and after, whatever the vault answered ---------------------------

    async def put(self, location: str, key: str, value: bytes) -> None:
        self._forget(location, key)
        try:
            await self._guarded(self.inner.put(location, key, value))
        finally:
            self._forget(location, key)

    async def delete(self, location: str, key: str) -> bool:
        self._forget(location, key)
        try:
            return await self._guarded(self.inner.delete(location, key))
        finally:
            self._forget(location, key)

    async def drop(self, location: str) -> None:
        self._forget_location(location)
        try:
            await self._guarded(self.inner.drop(location))
        finally:
            self._forget_location(location)

    # -- neither cached nor changing values -------------------------------------------------------

    async def list(self, location: str) -> list[SecretInfo]:
        return await self._guarded(self.inner.list(location))

    async def check(self) -> str:
        described = await self._guarded(self.inner.check())
        return f"{described}; values cached for {self.ttl_seconds:g}s per replica"

    async def close(self) -> None:
        self.clear()
        await self.inner.close()

    def clear(self) -> None:
        """Forget every value (and let no read in flight keep one)."""
        self._writes += 1
        self._entries.clear()
        self._bytes = 0

    # -- the entries --------------------------------------------------------------------------------

    async def _guarded(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except VaultNameRefused:
            raise  # a name refused before the vault was asked: the vault did not fail
        except Exception:
            self.clear()
            raise

    def _cached(self, location: str, key: str) -> tuple[bool, bytes | None]:
        entry = self._entries.get((location, key))
        if entry is None:
            return False, None
        expires, value = entry
        if self._clock() >= expires:
            self._drop_entry((location, key))
            return False, None
        self._entries.move_to_end((location, key))
        return True, value

    def _keep(self, location: str, key: str, value: bytes | None) -> None:
        size = _size(value)
        if size > self.max_bytes:
            return
        self._drop_entry((location, key))
        self._entries[(location, key)] = (self._clock() + self.ttl_seconds, value)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop_entry(oldest)

    def _drop_entry(self, where: tuple[str, str]) -> None:
        entry = self._entries.pop(where, None)
        if entry is not None:
            self._bytes -= _size(entry[1])

    def _forget(self, location: str, key: str) -> None:
        self._writes += 1
        self._drop_entry((location, key))

    def _forget_location(self, location: str) -> None:
        self._writes += 1
        for where in [where for where in self._entries if where[0] == location]:
            self._drop_entry(where)


def _size(value: bytes | None) -> int:
    return ENTRY_OVERHEAD_BYTES + (len(value) if value is not None else 0)
