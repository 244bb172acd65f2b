"""Which runs read a secret, as each worker knows them (gateway/secrets/taint.py), over the embedded PostgreSQL and
the real LISTEN adapter: a read recorded anywhere reaches every listening worker's set through NOTIFY, a
worker whose listener is not in place asks the database instead, and one that starts later loads the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.postgres_notify import PostgresNotifications
from gateway.db.pools import plain_dsn
from gateway.secrets.repository import SECRET_READS_CHANNEL, ReadRepository
from gateway.secrets.taint import TaintedRuns

RUN = "0123456789abcdef0123456789abcdef"
OTHER = "f" * 32


async def record(sessionmaker: async_sessionmaker[AsyncSession], run_id: str, keys: list[str]) -> int:
    async with sessionmaker() as session, session.begin():
        return await ReadRepository(session).record(1001, run_id, "db", keys)


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


class Worker:
    """A worker's set and its listener, as app.py wires them."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], database: str) -> None:
        self.runs = TaintedRuns(sessionmaker)
        self.listener = PostgresNotifications(
            plain_dsn(database),
            SECRET_READS_CHANNEL,
            self.runs.listening,
            on_payload=self.runs.add,
            on_lost=self.runs.not_listening,
        )

    async def __aenter__(self) -> Worker:
        self.listener.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.listener.stop()
        await self.runs.stop()


async def test_a_read_reaches_every_listening_worker_and_a_later_worker_loads_it(
    sessionmaker: async_sessionmaker[AsyncSession], database: str
) -> None:
    async with Worker(sessionmaker, database) as first, Worker(sessionmaker, database) as second:
        assert await until(lambda: first.runs.live and second.runs.live)
        assert not await first.runs.includes(RUN)

        assert await record(sessionmaker, RUN, ["password", "token"]) == 2
        assert await until(lambda: RUN in first.runs and RUN in second.runs)
        # Live sets answer from memory: the run is known (in any case), another is not.
        assert await second.runs.includes(RUN.upper())
        assert not await second.runs.includes(OTHER)

        # Read again: nothing new, no second notification needed; the rows stay one per key.
        assert await record(sessionmaker, RUN, ["password"]) == 0

    async with Worker(sessionmaker, database) as later:
        assert await until(lambda: later.runs.live)
        assert RUN in later.runs


async def test_a_worker_not_yet_listening_asks_the_database(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    runs = TaintedRuns(sessionmaker)  # no listener: never live
    assert not runs.live
    assert not await runs.includes(RUN)
    await record(sessionmaker, RUN, ["password"])
    assert await runs.includes(RUN)

    # A listener that drops makes a live set careful again until it is back and reloaded.
    runs.listening()
    assert await until(lambda: runs.live)
    runs.not_listening()
    assert not runs.live
    await record(sessionmaker, OTHER, ["password"])  # its notification would have been missed
    assert await runs.includes(OTHER)
    await runs.stop()


async def test_reads_are_noted_without_values_and_joined_with_their_scope(
    sessionmaker: async_sessionmaker[AsyncSession], database: str
) -> None:
    import asyncpg

    await record(sessionmaker, RUN, ["password"])
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            "INSERT INTO secret_scopes (workspace_id, name, vault, location) VALUES (1001, 'db', 'builtin', 'w1001/db')"
        )
        columns = {
            row["column_name"]
            for row in await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'run_secret_reads'"
            )
        }
    finally:
        await connection.close()
    assert columns == {"id", "workspace_id", "run_id", "scope", "key", "first_read_at"}
    async with sessionmaker() as session:
        reads = await ReadRepository(session).of_runs([RUN, OTHER])
    assert [(r.workspace_id, r.run_id, r.scope, r.key, r.vault, r.location) for r in reads] == [
        (1001, RUN, "db", "password", "builtin", "w1001/db")
    ]
