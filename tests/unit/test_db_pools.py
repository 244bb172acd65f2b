"""A worker's connection budget: its arithmetic, and pools that open no more than their share of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from gateway.db.pools import DatabasePools, LazyPool, PoolName, connection_budget
from tests.databases import migrated_database


@pytest.fixture(scope="module")
async def url(database_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_url, "pools_unit") as migrated:
        yield migrated


def test_the_default_budget_is_the_documented_one() -> None:
    assert connection_budget(10, 2) == {
        "engine": 20,
        "bookkeeping.outbox": 10,
        "bookkeeping.derived": 10,
        "sql": 10,
        "index_sync": 10,
        "secrets": 10,
        "listeners": 2,
    }


@pytest.mark.parametrize(("pool_size", "listeners"), [(1, 0), (3, 2), (25, 5)])
def test_every_pool_is_a_share_of_pool_size(pool_size: int, listeners: int) -> None:
    budget = connection_budget(pool_size, listeners)
    assert set(budget) == set(PoolName)
    assert sum(budget.values()) == 7 * pool_size + listeners
    assert DatabasePools("postgresql://127.0.0.1:9/none", pool_size, listeners=listeners).total() == sum(
        budget.values()
    )


@pytest.mark.parametrize(("pool_size", "listeners"), [(0, 2), (-1, 0), (10, -1)])
def test_a_budget_without_room_is_refused(pool_size: int, listeners: int) -> None:
    with pytest.raises(ValueError):
        connection_budget(pool_size, listeners)


async def test_names_outside_the_budget_open_nothing() -> None:
    pools = DatabasePools("postgresql://127.0.0.1:9/none", 2, listeners=1)
    for name in ("engine", "listeners", "bookkeeping", "nope"):
        with pytest.raises(ValueError, match="connection budget"):
            pools.lazy(name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connection budget"):
        await pools.opener("bookkeeping")("replay")
    with pytest.raises(ValueError, match="connection budget"):
        await pools.opener("sql")("statements")


async def test_the_engine_opens_its_share_and_no_more(url: str) -> None:
    pools = DatabasePools(url, 2, listeners=0)
    connections = [await pools.engine.connect() for _ in range(pools.budget[PoolName.ENGINE])]
    try:
        for connection in connections:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pools.engine.connect(), 0.5)
    finally:
        for connection in connections:
            await connection.close()
        await pools.engine.dispose()


async def test_a_lazy_pool_opens_on_first_use_and_waits_beyond_its_share(url: str) -> None:
    pool = DatabasePools(url, 2, listeners=0).lazy(PoolName.INDEX_SYNC)
    await pool.close()  # never opened: nothing to close
    held = [await pool.acquire() for _ in range(2)]
    try:
        assert (await pool.pool()).get_max_size() == 2
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.acquire(), 0.5)
    finally:
        for connection in held:
            await pool.release(connection)
        await pool.close()


async def test_a_released_connection_keeps_no_advisory_lock_or_setting(url: str) -> None:
    """The index sync relies on it: a pass's session lock ends when its connection goes back."""
    pool = LazyPool("index_sync", url, 1)
    try:
        connection = await pool.acquire()
        await connection.execute("SELECT pg_advisory_lock(7002, 42)")
        await connection.execute("SET lock_timeout = '120s'")
        backend = connection.get_server_pid()
        await pool.release(connection)
        async with pool.connection() as again:
            assert again.get_server_pid() == backend  # the pool's only connection, kept open
            held = await again.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
            assert held == 0
            assert await again.fetchval("SHOW lock_timeout") == "0"
    finally:
        await pool.close()


async def test_an_owners_pools_are_sized_by_their_qualified_name_with_their_settings(url: str) -> None:
    pools = DatabasePools(url, 3, listeners=0)
    derived = await pools.opener("bookkeeping")("derived", {"synchronous_commit": "off"})
    try:
        assert derived.get_max_size() == pools.budget[PoolName.DERIVED] == 3
        assert await derived.fetchval("SHOW synchronous_commit") == "off"
    finally:
        await derived.close()
