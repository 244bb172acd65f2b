"""The built-in vault: secret values sealed (gateway/core/sealing.py) in the gateway's own PostgreSQL.

Implements the `Vault` port (gateway/core/ports.py) over the table `vault_values` (migration 0009):
one row per (location, key) holding the sealing key's id, the nonce and the ciphertext. Keys live in
the gateway's memory only (`Keyring`, from the environment or a file). A database that does not
answer is `VaultUnavailable`; a value that cannot be opened (its key id not configured, or changed in
the database) is a `SealError`, which names the secret and the key id, never the value.

Rotation (`rotate`) re-encrypts, online, every value not sealed under the active key. It walks the
table in primary-key order in small batches, each committed on its own, so a rotation cut short
(killed, the database gone) has lost nothing and is resumed by running it again. Each row changes in
one UPDATE of its key id, nonce and ciphertext together, and only if the row still holds what the
rotation read (same key id and nonce: every put draws a fresh nonce), so a value put meanwhile is
never overwritten with an older one; a row so skipped was sealed by that put, under the key its
replica has active. The old keys must stay configured until `rotate` reports nothing remaining.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.core.ports import SecretInfo, VaultDenied, VaultUnavailable
from gateway.core.sealing import Keyring, Sealed, SealError
from gateway.db.errors import database_unreachable

log = logging.getLogger(__name__)

ROTATION_BATCH = 100
# What the database may raise when it cannot be reached, in any of SQLAlchemy's and asyncpg's shapes; each is
# looked at (gateway/db/errors.py): a database that is away makes the vault unavailable (the caller may retry),
# any other failure of a statement is raised as it is.
_DATABASE_DOWN = (OSError, sa_exc.DBAPIError, sa_exc.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

_GET = text("SELECT kid, nonce, ciphertext FROM vault_values WHERE location = :location AND key = :key")
_GET_MANY = text("SELECT key, kid, nonce, ciphertext FROM vault_values WHERE location = :location AND key = ANY(:keys)")
_PUT = text(
    "INSERT INTO vault_values (location, key, kid, nonce, ciphertext, updated_at) "
    "VALUES (:location, :key, :kid, :nonce, :ciphertext, now()) "
    "ON CONFLICT (location, key) DO UPDATE SET kid = EXCLUDED.kid, nonce = EXCLUDED.nonce, "
    "ciphertext = EXCLUDED.ciphertext, updated_at = EXCLUDED.updated_at"
)
_DELETE = text("DELETE FROM vault_values WHERE location = :location AND key = :key")
_DROP = text("DELETE FROM vault_values WHERE location = :location")
_LIST = text(
    "SELECT key, (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms FROM vault_values "
    "WHERE location = :location ORDER BY key"
)
_BY_KID = text("SELECT kid, count(*) AS n FROM vault_values GROUP BY kid ORDER BY kid")
# The next rows after (location, key) in primary-key order that another key sealed.
_NEXT_BATCH = text(
    "SELECT location, key, kid, nonce, ciphertext FROM vault_values "
    "WHERE (location, key) > (:after_location, :after_key) AND kid <> :active "
    "ORDER BY location, key LIMIT :limit"
)
# Only if the row still holds what was read: a put meanwhile drew another nonce (and sealed under its active key).
_RESEAL = text(
    "UPDATE vault_values SET kid = :kid, nonce = :nonce, ciphertext = :ciphertext "
    "WHERE location = :location AND key = :key AND kid = :old_kid AND nonce = :old_nonce"
)


@dataclass(frozen=True, slots=True)
class _Stored:
    location: str
    key: str
    sealed: Sealed


@dataclass(frozen=True, slots=True)
class _Resealed:
    rotated: int  # re-encrypted under the active key
    changed: int  # changed or deleted between the read and the update: left to the newer write
    unreadable: int  # could not be opened (key id not configured, tampered): left as they are


@dataclass(slots=True)
class Rotation:
    """What a rotation did, and what is left under keys other than the active one (by key id)."""

    active: str
    batches: int = 0
    rotated: int = 0
    changed: int = 0
    unreadable: int = 0
    remaining: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Every value is sealed under the active key: the other keys may be removed."""
        return not self.remaining

    def summary(self) -> str:
        left = ", ".join(f"{n} under {kid!r}" for kid, n in sorted(self.remaining.items())) or "none"
        return (
            f"{self.rotated} value(s) re-encrypted under {self.active!r} in {self.batches} batch(es), "
            f"{self.changed} changed meanwhile, {self.unreadable} unreadable; remaining: {left}"
        )


class BuiltinVault:
    """The `Vault` port over PostgreSQL; `keyring` seals and opens the values."""

    read_only = False

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], keyring: Keyring, name: str = "builtin") -> None:
        self.name = name
        self._sessionmaker = sessionmaker
        self._keyring = keyring

    def __repr__(self) -> str:
        return f"BuiltinVault(name={self.name!r}, keyring={self._keyring!r})"

    # -- the port ---------------------------------------------------------------------------------------------

    async def get(self, location: str, key: str) -> bytes | None:
        try:
            async with self._sessionmaker() as session:
                row = (await session.execute(_GET, {"location": location, "key": key})).first()
        except _DATABASE_DOWN as exc:
            _unavailable(exc)
        if row is None:
            return None
        return self._keyring.open(location, key, Sealed(row.kid, bytes(row.nonce), bytes(row.ciphertext)))

    async def get_many(self, location: str, keys: Sequence[str]) -> dict[str, bytes | None]:
        found: dict[str, bytes | None] = dict.fromkeys(keys)
        if not found:
            return found
        try:
            async with self._sessionmaker() as session:
                rows = (await session.execute(_GET_MANY, {"location": location, "keys": list(found)})).all()
        except _DATABASE_DOWN as exc:
            _unavailable(exc)
        for row in rows:
            found[row.key] = self._keyring.open(
                location, row.key, Sealed(row.kid, bytes(row.nonce), bytes(row.ciphertext))
            )
        return found

    async def put(self, location: str, key: str, value: bytes) -> None:
        sealed = self._keyring.seal(location, key, value)
        params = {"location": location, "key": key, "kid": sealed.kid, "nonce": sealed.nonce}
        try:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(_PUT, {**params, "ciphertext": sealed.ciphertext})
        except _DATABASE_DOWN as exc:
            _unavailable(exc)

    async def delete(self, location: str, key: str) -> bool:
        try:
            async with self._sessionmaker() as session, session.begin():
                result: Any = await session.execute(_DELETE, {"location": location, "key": key})
        except _DATABASE_DOWN as exc:
            _unavailable(exc)
        return bool(result.rowcount)

    async def list(self, location: str) -> list[SecretInfo]:
        try:
            async with self._sessionmaker() as session:
                rows = (await session.execute(_LIST, {"location": location})).all()
        except _DATABASE_DOWN as exc:
            _unavailable(exc)
        return [SecretInfo(row.key, int(row.updated_ms)) for row in rows]

    async def drop(self, location: str) -> None:
        try:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(_DROP, {"location": location})
        except _DATABASE_DOWN as exc:
            _unavailable(exc)

    async def check(self) -> str:
        """Reachable, and every stored value sealed under a configured key (VaultDenied names the missing ids)."""
        counts = await self._counts()
        missing = {kid: n for kid, n in counts.items() if kid not in self._keyring}
        if missing:
            listed = ", ".join(f"{kid!r} ({n} value(s))" for kid, n in sorted(missing.items()))
            raise VaultDenied(f"built-in vault {self.name!r}: values are sealed under key ids not configured: {listed}")
        stale = sum(n for kid, n in counts.items() if kid != self._keyring.active)
        rotation = f", {stale} still under older keys (rotate)" if stale else ""
        return (
            f"built-in vault {self.name!r} (PostgreSQL): {sum(counts.values())} value(s), "
            f"active key {self._keyring.active!r} of {', '.join(map(repr, self._keyring.ids))}{rotation}"
        )

    async def close(self) -> None:
        return None  # the engine belongs to the gateway

    # -- rotation ---------------------------------------------------------------------------------------------

    async def rotate(
        self,
        *,
        batch_size: int = ROTATION_BATCH,
        pause_seconds: float = 0.0,
        on_batch: Callable[[Rotation], Awaitable[None]] | None = None,
    ) -> Rotation:
        """Re-encrypt every value not sealed under the active key; see the module's docstring.

        `batch_size` rows per transaction; `pause_seconds` between batches (to go easy on a busy
        database); `on_batch` is awaited after each committed batch with the progress so far. Safe to
        run on several replicas at once and to interrupt at any point; run again until `done`.
        """
        if batch_size < 1:
            raise ValueError("a rotation batch holds at least one row")
        progress = Rotation(active=self._keyring.active)
        after = ("", "")
        while True:
            batch = await self._next_batch(after, batch_size)
            if not batch:
                break
            resealed = await self._reseal(batch)
            after = (batch[-1].location, batch[-1].key)
            progress.batches += 1
            progress.rotated += resealed.rotated
            progress.changed += resealed.changed
            progress.unreadable += resealed.unreadable
            if on_batch is not None:
                await on_batch(progress)
            if len(batch) < batch_size:
                break
            if pause_seconds > 0:
                await asyncio.sleep(pause_seconds)
        counts = await self._counts()
        progress.remaining = {kid: n for kid, n in counts.items() if kid != progress.active}
        log.info("vault key rotation: %s", progress.summary(), extra={"vault": self.name})
        return progress

    async def _next_batch(self, after: tuple[str, str], limit: int) -> builtins.list[_Stored]:
        params = {"after_location": after[0], "after_key": after[1], "active": self._keyring.active, "limit": limit}
        try:
            async with self._sessionmaker() as session:
                rows = (await session.execute(_NEXT_BATCH, params)).all()
        except _DATABASE_DOWN as exc:
            _unavailable(exc)
        return [_Stored(r.location, r.key, Sealed(r.kid, bytes(r.nonce), bytes(r.ciphertext))) for r in rows]

    async def _reseal(self, batch: Sequence[_Stored]) -> _Resealed:
        """Each row of `batch` sealed again under the active key, in one transaction, unless it changed since."""
        rotated = changed = unreadable = 0
        try:
            async with self._sessionmaker() as session, session.begin():
                for stored in batch:
                    try:
                        value = self._keyring.open(stored.location, stored.key, stored.sealed)
                    except SealError as exc:
                        unreadable += 1
                        log.warning("vault key rotation skips a value: %s", exc, extra={"vault": self.name})
                        continue
                    sealed = self._keyring.seal(stored.location, stored.key, value)
                    result: Any = await session.execute(
                        _RESEAL,
                        {
                            "location": stored.location,
                            "key": stored.key,
                            "kid": sealed.kid,
                            "nonce": sealed.nonce,
                            "ciphertext": sealed.ciphertext,
                            "old_kid": stored.sealed.kid,
                            "old_nonce": stored.sealed.nonce,
                        },
                    )
                    if result.rowcount:
                        rotated += 1
                    else:
                        changed += 1
        except _DATABASE_DOWN as exc:
            _unavailable(exc)
        return _Resealed(rotated, changed, unreadable)

    async def _counts(self) -> dict[str, int]:
        """How many values each key id sealed."""
        try:
            async with self._sessionmaker() as session:
                rows = (await session.execute(_BY_KID)).all()
        except _DATABASE_DOWN as exc:
            _unavailable(exc)
        return {row.kid: int(row.n) for row in rows}


def _unavailable(exc: BaseException) -> NoReturn:
    if not database_unreachable(exc):
        raise exc
    # Not chained: SQLAlchemy's message of a failed statement lists its parameters (nonces, ciphertexts).
    cause = getattr(exc, "orig", None) or exc
    raise VaultUnavailable(f"built-in vault: the database did not answer ({type(cause).__name__})") from None
