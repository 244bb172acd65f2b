"""The per-principal cap of SQL statements on a migrated database (the session's embedded PostgreSQL): the count
reads the live statements through their partial index, and a statement counts against the principal it is
counted for (an alert run by hand: whoever pressed run), not the one it runs as."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.sql.repository import LIVE_COUNT, StatementRepository

OWNER, CALLER, OTHER = 5, 9, 11
LIVE_SECONDS = 90.0


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def _submit(pool: asyncpg.Pool, runs_as: int, counted: int | None = None, cap: int = 2) -> int | None:
    repository = StatementRepository(pool)
    return await repository.insert_pending_within(str(uuid.uuid4()), runs_as, "SELECT 1", cap, LIVE_SECONDS, counted)


async def test_the_cap_reads_the_live_statements_through_their_index(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        # Many finished statements of the principal, which the count must not read one by one.
        await connection.execute(
            "INSERT INTO sql_statements (statement_id, principal_id, state, statement) "
            "SELECT 'done-' || i, $1, 'SUCCEEDED', 'SELECT 1' FROM generate_series(1, 2000) AS i",
            OWNER,
        )
        await connection.execute("ANALYZE sql_statements")
        plan = "\n".join(row[0] for row in await connection.fetch("EXPLAIN " + LIVE_COUNT, OWNER, LIVE_SECONDS))
    assert "sql_statements_live" in plan, plan


async def test_a_statement_counts_against_the_principal_it_is_counted_for(pool: asyncpg.Pool) -> None:
    # Two runs of the owner's alert pressed by the caller: the caller's cap is full, the owner's is untouched.
    assert await _submit(pool, OWNER, CALLER) is None
    assert await _submit(pool, OWNER, CALLER) is None
    assert await _submit(pool, OWNER, CALLER) == 2
    assert await _submit(pool, CALLER) == 2  # the caller's own statements count with them
    assert await _submit(pool, OWNER) is None
    assert await _submit(pool, OWNER, OWNER) is None  # counted for the principal it runs as: the usual case
    assert await _submit(pool, OWNER) == 2
    assert await _submit(pool, OTHER) is None
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT principal_id, counted_principal_id, count(*) AS n FROM sql_statements "
            "GROUP BY principal_id, counted_principal_id ORDER BY principal_id, counted_principal_id NULLS FIRST"
        )
    # Recorded as the owner's statements (only the owner reads them); the counted principal beside them.
    assert [tuple(row) for row in rows] == [(OWNER, None, 2), (OWNER, CALLER, 2), (OTHER, None, 1)]
