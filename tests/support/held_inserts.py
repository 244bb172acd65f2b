"""Races made certain: a trigger holds the INSERTs matching a condition (pg_sleep inside the inserting
transaction), so that another call runs while the first is between its check and its commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from tests.support.waiting import until


def executed(database_url: str, *statements: str) -> list[asyncpg.Record]:
    """Run `statements` in order on a connection of its own; the rows of the last."""

    async def execute() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url)
        try:
            rows: list[asyncpg.Record] = []
            for statement in statements:
                rows = list(await connection.fetch(statement))
            return rows
        finally:
            await connection.close()

    return asyncio.run(execute())


@contextmanager
def held_inserts(database_url: str, table: str, when: str, seconds: float = 3) -> Iterator[None]:
    """While inside: every INSERT into `table` whose new row satisfies `when` (SQL over NEW) sleeps `seconds`
    first, in its transaction. `holding` waits until one does."""
    name = f"test_held_{uuid.uuid4().hex[:12]}"
    executed(
        database_url,
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$",
        f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION {name}()",
    )
    try:
        yield
    finally:
        executed(database_url, f"DROP TRIGGER {name} ON {table}", f"DROP FUNCTION {name}()")


def holding(database_url: str, what: str) -> None:
    """Wait until an insert is held (a backend sleeping in pg_sleep)."""
    until(
        lambda: executed(database_url, "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"),
        bool,
        what,
    )
