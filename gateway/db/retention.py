"""Deleting rows past their window in batches that replicas pruning at the same time split between them.

    DELETE FROM <table> WHERE id IN (SELECT id FROM <table> WHERE <conditions> LIMIT <batch> FOR UPDATE SKIP LOCKED)

one batch per transaction, until a batch comes back short: each replica skips the rows another holds instead of
waiting on it, and no row is deleted twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Delete, TableClause, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

PRUNE_EVERY_SECONDS = 600.0  # how often a process looks for rows past their window
PRUNE_BATCH = 1000  # rows deleted in one transaction


def older_than(column: Any, days: int) -> ColumnElement[bool]:
    """`column` lies more than `days` days before the database's now."""
    return column < func.now() - func.make_interval(0, 0, 0, days)  # type: ignore[no-any-return]


def one_batch(table: TableClause, *conditions: ColumnElement[bool], batch: int, key: Any = None) -> Delete:
    """A DELETE of at most `batch` rows of `table` meeting `conditions`, skipping those another transaction holds.
    `key`: the column naming a row (the table's `id` unless given)."""
    column = table.c.id if key is None else key
    old = select(column).where(*conditions).limit(batch).with_for_update(skip_locked=True)
    return delete(table).where(column.in_(old.scalar_subquery()))


def older_than_seconds(column: Any, seconds: float) -> ColumnElement[bool]:
    """`column` lies more than `seconds` seconds before the database's now."""
    return column < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)  # type: ignore[no-any-return]


async def delete_one_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    table: TableClause,
    *conditions: ColumnElement[bool],
    batch: int,
    key: Any = None,
) -> int:
    """Delete at most `batch` rows of `table` meeting `conditions`, in one transaction; how many it deleted (fewer
    than `batch`: none are left, but for rows another transaction held)."""
    async with sessionmaker() as session, session.begin():
        result = await session.execute(one_batch(table, *conditions, batch=batch, key=key))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def delete_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    table: TableClause,
    *conditions: ColumnElement[bool],
    batch: int,
    key: Any = None,
) -> int:
    """Delete the rows of `table` meeting `conditions`, `batch` per transaction; how many this call deleted."""
    deleted = 0
    while True:
        count = await delete_one_batch(sessionmaker, table, *conditions, batch=batch, key=key)
        deleted += count
        if count < batch:
            return deleted
