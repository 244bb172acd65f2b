"""What one principal's statement results may hold in the database, on a migrated database (the session's embedded
PostgreSQL): results are kept 24 hours, and anyone signed in, with no grant at all, can make a 25 MiB one every few
seconds (a CTE over `explode(array(...))` reads no table), so without a bound per principal a few minutes of
statements fill the database's disk. Finishing a result closes the principal's oldest results past the budget."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.sql.repository import RESULTS_KEPT, StatementRepository

OWNER, OTHER = 5, 9
ROW = "x" * 1000
BUDGET = 8_000  # bytes of results kept per principal: two results of some 3,000 bytes, not three


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def _finished(pool: asyncpg.Pool, principal: int, rows: int = 3) -> str:
    """A statement of `principal` that succeeded with `rows` rows of 1,000 characters."""
    statement_id = str(uuid.uuid4())
    repository = StatementRepository(pool)
    await repository.insert(statement_id, principal, "SELECT ...", "RUNNING")
    result = {"data_array": [[ROW] for _ in range(rows)]}
    manifest = {"total_row_count": rows}
    assert await repository.finish(statement_id, "SUCCEEDED", manifest=manifest, result=result, keep_bytes=BUDGET)
    return statement_id


async def _states(pool: asyncpg.Pool, *statement_ids: str) -> list[tuple[str, bool]]:
    repository = StatementRepository(pool)
    states: list[tuple[str, bool]] = []
    for statement_id in statement_ids:
        stored = await repository.get(statement_id)
        assert stored is not None
        states.append((stored.state, stored.result is not None))
    return states


async def test_a_principals_results_past_the_budget_are_closed_oldest_first(pool: asyncpg.Pool) -> None:
    others = [await _finished(pool, OTHER) for _ in range(3)]
    first, second, third = [await _finished(pool, OWNER) for _ in range(3)]
    # Three results of some 3,000 bytes are more than 8,000: the oldest is closed, its result gone.
    assert await _states(pool, first, second, third) == [("CLOSED", False), ("SUCCEEDED", True), ("SUCCEEDED", True)]
    fourth = await _finished(pool, OWNER)
    assert await _states(pool, second, third, fourth) == [("CLOSED", False), ("SUCCEEDED", True), ("SUCCEEDED", True)]
    # Another principal's results are its own budget's: closed only by its own statements.
    assert await _states(pool, *others) == [("CLOSED", False), ("SUCCEEDED", True), ("SUCCEEDED", True)]
    # A result larger than the whole budget is kept (the statement just answered it); every older one goes.
    large = await _finished(pool, OWNER, rows=20)
    assert await _states(pool, third, fourth, large) == [("CLOSED", False), ("CLOSED", False), ("SUCCEEDED", True)]
    async with pool.acquire() as connection:
        kept = await connection.fetchval(
            "SELECT sum(result_bytes) FROM sql_statements WHERE principal_id = $1 AND result IS NOT NULL", OTHER
        )
        assert kept <= BUDGET


async def test_the_budget_reads_the_principals_results_through_their_index(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        # Many statements of other principals, which counting the owner's results must not read one by one.
        await connection.execute(
            "INSERT INTO sql_statements (statement_id, principal_id, state, statement, result, result_bytes, "
            "finished_at) SELECT 'done-' || i, 100 + i % 500, 'SUCCEEDED', 'SELECT 1', '{}', 2, now() "
            "FROM generate_series(1, 5000) AS i"
        )
        await connection.execute("ANALYZE sql_statements")
        plan = "\n".join(row[0] for row in await connection.fetch("EXPLAIN " + RESULTS_KEPT, OWNER, BUDGET, "none"))
    assert "sql_statements_results" in plan, plan
