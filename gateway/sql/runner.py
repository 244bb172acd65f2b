"""Runs compiled statements on PostgreSQL: read-only, as the reader role, under a statement timeout."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.db.pools import LazyPool
from gateway.sql.catalog import READER_ROLE
from gateway.sql.repository import APPLICATION_PREFIX
from gateway.sql.results import PgColumn
from gateway.sql.transpile import CompiledQuery

# The most a statement's result may hold, as PostgreSQL writes its rows as text: Databricks' limit for INLINE results
# (a statement whose result is larger fails there too). The rows never leave PostgreSQL when they are larger.
MAX_RESULT_BYTES = 25 * 1024 * 1024
# What a value adds to a row's size beyond its text: the JSON answer writes a value with quotes and a comma, and a
# NULL, which a row's text writes as nothing (its comma alone), as `null,`. So the size measured is (at most a
# little above) the size of the answer as JSON, whatever the values are.
VALUE_BYTES = 4


@dataclass(frozen=True)
class Fetched:
    columns: list[PgColumn]
    records: list[Sequence[Any]]
    truncated: bool


class ResultTooLarge(Exception):
    """The result (rows within the row cap) is larger than `limit` bytes; nothing of it was sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"result of {size} bytes, more than {limit}")
        self.size = size
        self.limit = limit


class QueryRunner:
    """Runs statements on the `sql` pool (gateway/db/pools.py): each holds a connection for as long as it runs."""

    def __init__(self, pool: LazyPool) -> None:
        self._pool = pool

    async def pool(self) -> asyncpg.Pool:
        return await self._pool.pool()

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return self._pool.connection()

    async def fetch(
        self,
        connection: asyncpg.Connection,
        statement_id: str,
        query: CompiledQuery,
        arguments: Sequence[str | None],
        *,
        account_id: str,
        timeout_seconds: float,
        max_rows: int,
        max_bytes: int = MAX_RESULT_BYTES,
    ) -> Fetched:
        """Run `query` and fetch at most `max_rows` rows (`truncated` says whether more were there).

        Raises ResultTooLarge, having fetched nothing, when those rows hold more than `max_bytes`.
        """
        timeout_ms = max(1, round(timeout_seconds * 1000))
        backstop = timeout_seconds + 10  # PostgreSQL's own timeout fires first; this guards a stuck connection
        # The bound parameter after the statement's own: what each row adds to its text, by its number of columns.
        capped = _capped(query.sql, int(max_rows) + 1, int(max_bytes), len(arguments) + 1)
        async with connection.transaction(readonly=True):
            # One round trip sets up the sandbox. Settings first, the role last: from then on the transaction
            # can read the system views only. The two values are the gateway's own (the configured account id,
            # a statement id it made), escaped all the same; what the caller sends stays in bound parameters.
            # Once the backend carries the statement's application_name, a cancel finds it and signals it until
            # it no longer does; a cancel recorded before that is seen here, and the statement stops unrun.
            await connection.execute(
                f"SET LOCAL statement_timeout = {int(timeout_ms)}; SET LOCAL TimeZone = 'UTC'; "
                "SET LOCAL standard_conforming_strings = on; "
                f"SELECT set_config('fedgate.account_id', {_literal(account_id)}, true), "
                f"set_config('application_name', {_literal(APPLICATION_PREFIX + statement_id)}, true); "
                f"{_unless_cancelled(statement_id)}; "
                f"SET LOCAL search_path = ''; SET LOCAL ROLE {READER_ROLE}"
            )
            prepared = await connection.prepare(capped, timeout=backstop)
            # The first column is the result's size; the last two are the running size and the row's number.
            columns = [PgColumn(a.name, a.type.name, a.type.kind) for a in prepared.get_attributes()[1:-2]]
            fetched = await prepared.fetch(*arguments, VALUE_BYTES * len(columns), timeout=backstop)
        size = fetched[0][0] if fetched else None
        if size is None:  # no rows (the one row answered is the outer join's, with nothing joined)
            return Fetched(columns, [], False)
        if size > max_bytes:
            raise ResultTooLarge(int(size), max_bytes)
        records: list[Sequence[Any]] = [tuple(record)[1:-2] for record in fetched]
        return Fetched(columns, records[:max_rows], len(records) > max_rows)

    async def close(self) -> None:
        await self._pool.close()


def _capped(sql: str, rows: int, size: int, per_row: int) -> str:
    """`sql` cut to `rows` rows, answered only when those rows hold at most `size` bytes (as the JSON answer writes
    them: each row's text and, bound as parameter `$per_row`, what its values add to it, VALUE_BYTES each).

    The row cap is a LIMIT around the query, not a fetch count on a cursor: PostgreSQL plans a portal executed
    for a number of rows without parallel workers. The byte cap is counted by PostgreSQL, so a result larger than
    it never reaches the gateway: before, `replace(replace('aaaa', 'a', <5,000 a>), 'a', <20,000 a>)` (no table,
    no grant needed) made PostgreSQL send a 400 MB value in two seconds, and the gateway held every row of a
    result in memory, a few of them enough to stop it. Each row of the result comes with the size of all of
    them (first column) and its running size and number (last two); a result larger than the cap is one row of
    its size and nulls. The newlines keep the wrapper intact whatever the last line of the query is.

    A row's text alone undercounts short values: a NULL is its comma, so 10,000 rows of 1,500 NULLs (no table)
    measured 15 MB while the gateway held 15 million values (300 MB, and seconds of decoding on its event loop).
    """
    row_size = f"OCTET_LENGTH(CAST(_capped AS TEXT)) + CAST(${int(per_row)} AS BIGINT)"
    running = f"SUM({row_size}) OVER (ROWS UNBOUNDED PRECEDING)"
    # The query is the compiled statement; the numbers are the gateway's own.
    return (
        "WITH _sized AS MATERIALIZED (\n"  # noqa: S608
        f"  SELECT _capped.*, {running} AS _fedgate_running, ROW_NUMBER() OVER () AS _fedgate_row\n"
        f"  FROM (SELECT * FROM (\n{sql}\n) AS _statement LIMIT {int(rows)}) AS _capped\n"
        ")\n"
        "SELECT _total._fedgate_size, _sized.*\n"
        "FROM (SELECT MAX(_fedgate_running) AS _fedgate_size FROM _sized) AS _total\n"
        f"LEFT JOIN _sized ON _sized._fedgate_running <= {int(size)}\n"
        "ORDER BY _sized._fedgate_row"
    )


def _unless_cancelled(statement_id: str) -> str:
    """A command that fails as a cancelled statement does when the statement is no longer RUNNING."""
    return (
        "DO $fedgate$BEGIN IF NOT EXISTS (SELECT FROM sql_statements "
        f"WHERE statement_id = {_literal(statement_id)} AND state = 'RUNNING') THEN "
        "RAISE EXCEPTION USING ERRCODE = 'query_canceled', MESSAGE = 'canceling statement due to user request'; "
        "END IF; END$fedgate$"
    )


def _literal(value: str) -> str:
    """`value` as a PostgreSQL string literal that reads the same whatever standard_conforming_strings is."""
    if "\x00" in value:
        raise ValueError("a string literal cannot hold a NUL character")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
