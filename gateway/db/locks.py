"""Every PostgreSQL advisory lock the gateway takes, in one place, so no two uses share a key space.

Locks keyed by two 32-bit integers are (class, key); the class is one of `LockClass`. The migration lock is
a single 64-bit key (PostgreSQL keeps the one-key and two-key spaces apart).

Locks held while a store is called (a pass over a workspace, the copy of one mirrored object, the
relay's work on one outbox order key, a decision on a registered model's stages) are session-level
locks on a connection of their own, taken and released outside any transaction (`held`): no
transaction stays open across an HTTP call, however long the store takes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from enum import IntEnum
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)


class LockClass(IntEnum):
    RECONCILE = 7001  # one reconcile pass per workspace at a time, across replicas (key: workspace id)
    INDEX_SYNC = 7002  # one index sync pass per workspace at a time (key: workspace id)
    LINKS = 7003  # link and relink decisions, one at a time (key: 0; transaction-scoped)
    MIRROR_OBJECT = 7004  # one mirrored object at a time (key: hashtext of workspace/kind/id; session lock)
    OUTBOX_KEY = 7005  # one relay per outbox order key at a time (key: hashtext of the order key; session lock)
    RUN_PROPERTIES = 7006  # one property write per run at a time (key: hashtext of workspace id/run id; session lock)
    PRESENCE = 7007  # a live worker (key: its random presence id; held for its whole life: federation/intents.py)
    REGISTRY_MODEL = 7008  # one stage decision per registered model at a time (key: hashtext of its id; session lock)
    SQL_PRINCIPAL = 7009  # one SQL statement submission per principal at a time (key: principal id; transaction)
    GROUP_NESTING = 7010  # a group put into a group, one at a time (key: 0; transaction-scoped: principals/service.py)
    ACCOUNT_ADMINS = 7011  # an admin's role, active flag or row changed, one at a time (key: 0; transaction-scoped)
    REGISTRY_SOURCES = 7021  # one read of a workspace's protected model versions at a time (key: workspace id; session)
    # One append to a registered model's activity log at a time, so each row takes the model's next number
    # (key: hashtext of the model's id; transaction-scoped: registry/repository.py).
    REGISTRY_ACTIVITY = 7022
    # One new promotion request per target workspace at a time, so each takes the workspace's next number
    # (key: workspace id; transaction-scoped: registry/promotion_requests.py).
    REGISTRY_PROMOTION_REQUEST = 7023


MIGRATION_LOCK = 7_351_001  # schema migrations, one replica at a time


class LockConnection(Protocol):
    """What `held` needs of a connection: asyncpg's `Connection` has it, `Autocommit` gives it to SQLAlchemy's."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> Any: ...


class Autocommit:
    """A SQLAlchemy connection in autocommit mode, spoken to in the driver's own SQL ($1, $2)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def fetchval(self, query: str, *args: Any) -> Any:
        return (await self.connection.exec_driver_sql(query, args)).scalar()

    async def execute(self, query: str, *args: Any) -> Any:
        await self.connection.exec_driver_sql(query, args)


@contextlib.asynccontextmanager
async def held(
    connection: LockConnection, lock_class: LockClass, key: int | str, *, wait: float = 0
) -> AsyncIterator[bool]:
    """A session-level advisory lock on (class, key) for the block; whether it was got.

    `wait` 0 tries once, `math.inf` waits as long as it takes, anything else up to that many seconds.
    A string key is hashed by PostgreSQL (`hashtext`). The connection must be outside a transaction
    and stay the caller's for the block; the lock is released at its end, also on failure or
    cancellation. A connection whose unlock failed must not be reused: callers discard it
    (`autocommit_connection` does; asyncpg's pool unlocks everything when a connection comes back).
    """
    arg = "hashtext($2)" if isinstance(key, str) else "$2"
    params = (int(lock_class), key)
    if wait <= 0:
        got = bool(await connection.fetchval(f"SELECT pg_try_advisory_lock($1, {arg})", *params))
    elif math.isinf(wait):
        await connection.execute(f"SELECT pg_advisory_lock($1, {arg})", *params)
        got = True
    else:
        # At least 1 ms: PostgreSQL reads a lock_timeout of 0 as no timeout at all.
        await connection.execute(f"SET lock_timeout = '{max(1, math.ceil(wait * 1000))}ms'")
        try:
            await connection.execute(f"SELECT pg_advisory_lock($1, {arg})", *params)
            got = True
        except Exception as exc:
            if not lock_timed_out(exc):
                raise
            got = False
        finally:
            await connection.execute("RESET lock_timeout")
    try:
        yield got
    finally:
        if got:
            try:
                await connection.execute(f"SELECT pg_advisory_unlock($1, {arg})", *params)
            except BaseException as exc:
                await _discard(connection)  # closed: the lock ends with its session
                if not isinstance(exc, Exception):
                    raise
                log.warning("advisory unlock failed, connection closed instead: %s", type(exc).__name__)


def lock_timed_out(exc: BaseException) -> bool:
    """Whether a failure is PostgreSQL's lock_timeout (55P03), raised by asyncpg directly or through SQLAlchemy."""
    while exc is not None:
        if getattr(exc, "sqlstate", None) == "55P03":
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__  # type: ignore[assignment]
    return False


@contextlib.asynccontextmanager
async def autocommit_connection(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Autocommit]:
    """A connection of the sessionmaker's engine, in autocommit mode (no transaction is ever open on it).

    For a session-level lock held across store calls (`held`).
    """
    async with autocommit_session(sessionmaker) as (_, connection):
        yield connection


@contextlib.asynccontextmanager
async def autocommit_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[AsyncSession, Autocommit]]:
    """A session on one connection in autocommit mode, and that connection for `held`.

    Each statement of the session commits on its own: reads that need no transaction can be made
    under a lock the connection holds, and nothing is held open between them. The session must not
    be asked to write what only a transaction keeps consistent.
    """
    async with sessionmaker() as session:
        yield session, Autocommit(await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"}))


async def _discard(connection: LockConnection) -> None:
    with contextlib.suppress(Exception):
        if isinstance(connection, Autocommit):
            await connection.connection.invalidate()
        elif callable(terminate := getattr(connection, "terminate", None)):
            terminate()  # asyncpg
