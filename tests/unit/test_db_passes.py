"""The background pass both the reconciler and the index sync run: its scheduling, and the advisory locks
held across store calls (one holder at a time, no transaction open while held, released however the block ends)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from gateway.core.links import WorkspaceLink
from gateway.db.engine import async_url
from gateway.db.locks import LockClass, autocommit_connection, held
from gateway.db.passes import Passes, exclusive
from tests.support.waiting import settled


def _link(name: str, workspace_id: int) -> WorkspaceLink:
    return WorkspaceLink(name, workspace_id, "workspace", "a", "a", None)


@pytest.fixture(scope="module")
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(async_url(database_url), pool_size=4, max_overflow=0)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def _state_of(server: asyncpg.Connection, pid: int) -> str:
    return str(await server.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid))


async def test_a_held_lock_has_one_holder_and_no_transaction_open(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    observer = await asyncpg.connect(database_url)
    try:
        async with (
            autocommit_connection(sessionmaker) as first,
            held(first, LockClass.MIRROR_OBJECT, "7:run:r1") as got,
        ):
            assert got
            pid = await first.fetchval("SELECT pg_backend_pid()")
            # Between statements the holder is idle, not idle in a transaction: nothing is held open but the lock.
            assert await _state_of(observer, pid) == "idle"
            async with autocommit_connection(sessionmaker) as second:
                async with held(second, LockClass.MIRROR_OBJECT, "7:run:r1") as other:
                    assert not other
                async with held(second, LockClass.MIRROR_OBJECT, "7:run:r2") as other:
                    assert other  # another object's lock is free
                async with held(second, LockClass.MIRROR_OBJECT, "7:run:r1", wait=0.2) as other:
                    assert not other  # waited a while, then gave up
                # A wait under a millisecond is still a bounded wait (a lock_timeout of 0 would be none).
                async with asyncio.timeout(10):
                    async with held(second, LockClass.MIRROR_OBJECT, "7:run:r1", wait=0.0004) as other:
                        assert not other
                # The same key in another class is another lock.
                async with held(second, LockClass.RECONCILE, 7) as other:
                    assert other
        async with (
            autocommit_connection(sessionmaker) as again,
            held(again, LockClass.MIRROR_OBJECT, "7:run:r1") as got,
        ):
            assert got  # released at the end of the block
    finally:
        await observer.close()


async def test_a_waiting_holder_gets_the_lock_when_the_other_ends_even_by_failing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order: list[str] = []
    inside = asyncio.Event()

    async def first() -> None:
        async with (
            autocommit_connection(sessionmaker) as connection,
            held(connection, LockClass.MIRROR_OBJECT, "k", wait=math.inf),
        ):
            order.append("first in")
            inside.set()
            await asyncio.sleep(0.2)
            order.append("first out")
            raise RuntimeError("a store refused the copy")

    async def second() -> None:
        await inside.wait()
        async with (
            autocommit_connection(sessionmaker) as connection,
            held(connection, LockClass.MIRROR_OBJECT, "k", wait=math.inf),
        ):
            order.append("second in")

    results = await asyncio.gather(first(), second(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert order == ["first in", "first out", "second in"]


async def test_a_cancelled_holder_releases_its_lock(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    inside = asyncio.Event()

    async def holder() -> None:
        async with autocommit_connection(sessionmaker) as connection, held(connection, LockClass.MIRROR_OBJECT, "c"):
            inside.set()
            await asyncio.sleep(60)  # a store that does not answer

    task = asyncio.create_task(holder())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with autocommit_connection(sessionmaker) as connection, held(connection, LockClass.MIRROR_OBJECT, "c") as got:
        assert got


async def test_one_pass_per_workspace_at_a_time_across_replicas(database_url: str) -> None:
    link = _link("ws", 41)
    one, two = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        async with exclusive(one, LockClass.INDEX_SYNC, link) as mine:
            assert mine
            async with exclusive(two, LockClass.INDEX_SYNC, link) as theirs:
                assert not theirs
            async with exclusive(two, LockClass.RECONCILE, link) as theirs:
                assert theirs  # the reconciler's pass of the workspace is another lock
        async with exclusive(two, LockClass.INDEX_SYNC, link) as theirs:
            assert theirs
    finally:
        await one.close()
        await two.close()


async def test_passes_launch_what_is_due_once_per_workspace_and_keep_looking_after_a_failure() -> None:
    a, b = _link("a", 1), _link("b", 2)
    looks = 0
    ran: list[tuple[str, bool]] = []
    release = asyncio.Event()

    async def due(now: float) -> list[tuple[WorkspaceLink, bool]]:
        nonlocal looks
        looks += 1
        if looks == 2:
            raise OSError("the database is away for a moment")
        return [(a, True), (b, False)]

    async def run(link: WorkspaceLink, everything: bool) -> str:
        ran.append((link.name, everything))
        await release.wait()
        return link.name

    passes: Passes[str] = Passes("test passes", 0.01, due, run, tick_seconds=0.01)
    passes.start()
    try:
        await settled(lambda: looks >= 5, "five looks for due passes")  # the failed look did not end the loop
        # Still running: launched once each, however often they were due.
        assert sorted(ran) == [("a", True), ("b", False)]
        assert passes.running(a) and not passes.launch(a, False)
        release.set()
        await settled(lambda: len(ran) > 2, "a finished pass launched again")  # when due again
    finally:
        await passes.stop()
    assert not passes.running(a) and not passes.running(b)


async def test_passes_only_on_demand_without_an_interval() -> None:
    ran: list[str] = []

    async def due(now: float) -> list[tuple[WorkspaceLink, bool]]:
        raise AssertionError("never asked")

    async def run(link: WorkspaceLink, everything: bool) -> None:
        ran.append(link.name)

    passes: Passes[None] = Passes("on demand", 0, due, run)
    passes.start()
    assert passes.launch(_link("a", 1), True)
    await settled(lambda: ran == ["a"], "the pass asked for")
    await passes.stop()
    assert ran == ["a"]
