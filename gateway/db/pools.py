"""Every connection a worker opens to PostgreSQL, by name, each pool sized from `database.pool_size`.

One worker (a uvicorn process) opens at most these many connections, `P` being `database.pool_size`:

    engine               2P   SQLAlchemy: request handling, admin API, relay, reconciler, mirror, audit log
                              (P kept open, as many again opened under load and closed after)
    bookkeeping.outbox   P    dual-mode outbox entries, committed before the client hears of its write
    bookkeeping.derived  P    run routes and index rows of accepted writes (asynchronous commit)
    sql                  P    SQL statements; each holds one for as long as it runs
    index_sync           P    index sync passes (each holds one for the whole pass) and its status reads
    secrets              P    a run's secret reads (one statement each: checks, audit row, read noted) and the
                              version bumps of run state changes (gateway/secrets/runstate.py)
    listeners            one per LISTEN channel (adapters/postgres_notify.py), and one holding the
                         worker's presence lock (federation/intents.py)

With the default P = 10, five channels and the presence lock that is 76 per worker. A deployment opens at most
`total * workers * replicas`, which must stay below PostgreSQL's `max_connections` less what
migrations, administrators and superusers need; each worker logs its `budget` at start-up. Asyncpg
pools are opened on first use: a pool a worker never uses holds no connection.

Every pool opens a connection within `database.timeout_seconds` (asyncpg's default is 60 s), and `LazyPool`
waits at most as long for a free one. The pools of single short statements (the bookkeeping pools and the
secrets pool) also bound each statement by it (asyncpg's `command_timeout`), so a database that stops answering
(paused, stalled) fails them within seconds; the SQL pool's statements are bounded by PostgreSQL itself
(`server.sql_statement_timeout_seconds`) and an index sync pass may run long, so theirs are not.

The SQL pool's connections are replaced after `SQL_CONNECTION_QUERIES` round trips (some 100 statements) and once
idle for `SQL_IDLE_SECONDS`: a backend keeps what anyone's statements made it grow for as long as it lives, and no
statement budget covers that. PostgreSQL caches each backend's last 32 compiled regular expressions (`rlike`,
`regexp_replace`, ...) for its life, and neither `DISCARD ALL` nor the end of the transaction frees them: 20 distinct
patterns like `([a-z0-9_]{1,200}){1,40}` grew a pooled backend by 55 MiB, which stayed, times the pool size, the
workers and the replicas. A new connection costs some 3 ms, a few hundredths of a millisecond per statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Protocol

import asyncpg

from gateway.db.engine import DEFAULT_TIMEOUT_SECONDS, make_engine


class PoolName(StrEnum):
    ENGINE = "engine"
    OUTBOX = "bookkeeping.outbox"
    DERIVED = "bookkeeping.derived"
    SQL = "sql"
    INDEX_SYNC = "index_sync"
    SECRETS = "secrets"
    LISTENERS = "listeners"


def connection_budget(pool_size: int, listeners: int) -> dict[str, int]:
    """The most connections each of a worker's pools opens, by name (see the module's docstring)."""
    if pool_size < 1 or listeners < 0:
        raise ValueError("a pool holds at least one connection, and listeners cannot be negative")
    return {
        PoolName.ENGINE: 2 * pool_size,
        PoolName.OUTBOX: pool_size,
        PoolName.DERIVED: pool_size,
        PoolName.SQL: pool_size,
        PoolName.INDEX_SYNC: pool_size,
        PoolName.SECRETS: pool_size,
        PoolName.LISTENERS: listeners,
    }


def plain_dsn(url: str) -> str:
    """The URL as asyncpg takes it (SQLAlchemy's driver suffix removed)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# Pools whose users run single short statements: each statement is bounded by the database timeout.
SHORT_STATEMENTS = frozenset({PoolName.OUTBOX, PoolName.DERIVED, PoolName.SECRETS})

# The SQL pool's connections are closed after this many round trips (asyncpg's `max_queries`; a statement makes
# about 16: its record, the sandbox, prepare, fetch, commit, the reset, its outcome, ...) and after this long unused.
SQL_CONNECTION_QUERIES = 1600
SQL_IDLE_SECONDS = 60.0
# asyncpg's defaults, for the other pools: their statements are the gateway's own.
DEFAULT_MAX_QUERIES = 50_000
DEFAULT_IDLE_SECONDS = 300.0


class PoolOpener(Protocol):
    """Opens a new asyncpg pool for one of its owner's named uses; the caller closes it."""

    async def __call__(self, name: str, server_settings: Mapping[str, str] | None = None, /) -> asyncpg.Pool: ...


async def _create(
    dsn: str,
    max_size: int,
    server_settings: Mapping[str, str] | None,
    *,
    reset: bool = True,
    timeout_seconds: float,
    command_timeout: float | None,
    max_queries: int = DEFAULT_MAX_QUERIES,
    idle_seconds: float = DEFAULT_IDLE_SECONDS,
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        server_settings=dict(server_settings or {}),
        reset=None if reset else _no_reset,
        timeout=timeout_seconds,
        command_timeout=command_timeout,
        max_queries=max_queries,
        max_inactive_connection_lifetime=idle_seconds,
    )


def _recycling(name: str) -> tuple[int, float]:
    """After how many round trips, and how long unused, the pool `name` replaces a connection (see the module's
    docstring)."""
    if name == PoolName.SQL:
        return SQL_CONNECTION_QUERIES, SQL_IDLE_SECONDS
    return DEFAULT_MAX_QUERIES, DEFAULT_IDLE_SECONDS


async def _no_reset(connection: asyncpg.Connection) -> None:
    """No reset query on release (asyncpg still rolls back a transaction left open): for a pool whose users run
    single statements that leave nothing behind on the session, so that giving a connection back costs no round
    trip."""


class LazyPool:
    """An asyncpg pool of at most `max_size` connections, opened on first use (opening needs the running loop)."""

    def __init__(
        self,
        name: str,
        dsn: str,
        max_size: int,
        server_settings: Mapping[str, str] | None = None,
        *,
        reset: bool = True,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self._reset = reset
        self._timeout = timeout_seconds
        self.max_size = max_size
        self._dsn = dsn
        self._settings = server_settings
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    max_queries, idle_seconds = _recycling(self.name)
                    self._pool = await _create(
                        self._dsn,
                        self.max_size,
                        self._settings,
                        reset=self._reset,
                        timeout_seconds=self._timeout,
                        command_timeout=self._timeout if self.name in SHORT_STATEMENTS else None,
                        max_queries=max_queries,
                        idle_seconds=idle_seconds,
                    )
        return self._pool

    async def acquire(self) -> asyncpg.Connection:
        """A connection of the pool, waiting at most the database timeout while all are in use (then
        `TimeoutError`, which `gateway/db/errors.py` reads as unreachable); give it back with `release`."""
        return await (await self.pool()).acquire(timeout=self._timeout)

    async def release(self, connection: asyncpg.Connection) -> None:
        """Back to the pool, reset (unless made with `reset=False`): settings, transactions and session locks end."""
        await (await self.pool()).release(connection)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with (await self.pool()).acquire(timeout=self._timeout) as connection:
            yield connection

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class DatabasePools:
    """The pools of one worker over the database at `url`, each limited to its share of `budget`.

    The engine is made here; the asyncpg pools are handed to their owners (`lazy`, `opener`), who close
    them. A name outside the budget is refused, so no pool is opened that the budget does not state.
    """

    def __init__(
        self, url: str, pool_size: int, *, listeners: int, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.dsn = plain_dsn(url)
        self.budget = connection_budget(pool_size, listeners)
        self.timeout_seconds = timeout_seconds
        self.engine = make_engine(
            url,
            pool_size=pool_size,
            max_overflow=self.budget[PoolName.ENGINE] - pool_size,
            timeout_seconds=timeout_seconds,
        )

    def total(self) -> int:
        """The most connections this worker holds at once."""
        return sum(self.budget.values())

    def _size(self, name: str) -> int:
        if name not in self.budget or name in (PoolName.ENGINE, PoolName.LISTENERS):
            raise ValueError(f"no asyncpg pool named {name!r} in the connection budget")
        return self.budget[name]

    def lazy(self, name: PoolName, server_settings: Mapping[str, str] | None = None, *, reset: bool = True) -> LazyPool:
        """A pool opened on first use; `reset=False`: connections go back without a reset query (see `_no_reset`)."""
        return LazyPool(
            name, self.dsn, self._size(name), server_settings, reset=reset, timeout_seconds=self.timeout_seconds
        )

    def opener(self, owner: str) -> PoolOpener:
        """Opens `<owner>.<name>` pools for an owner that keeps several (bookkeeping: outbox, derived)."""

        async def open_pool(name: str, server_settings: Mapping[str, str] | None = None, /) -> asyncpg.Pool:
            qualified = f"{owner}.{name}"
            return await _create(
                self.dsn,
                self._size(qualified),
                server_settings,
                timeout_seconds=self.timeout_seconds,
                command_timeout=self.timeout_seconds if qualified in SHORT_STATEMENTS else None,
            )

        return open_pool
