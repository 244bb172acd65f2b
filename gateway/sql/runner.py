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


@dataclass(frozen=True)
class Fetched:
    columns: list[PgColumn]
    records: list[Sequence[Any]]
    truncated: bool


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
    ) -> Fetched:
        """Run `query` and fetch at most `max_rows` rows (`truncated` says whether more were there)."""
        timeout_ms = max(1, round(timeout_seconds * 1000))
        backstop = timeout_seconds + 10  # PostgreSQL's own timeout fires first; this guards a stuck connection
        # The row cap is a LIMIT around the query, not a fetch count on a cursor: PostgreSQL plans a portal
        # executed for a number of rows without parallel workers. The newlines keep the wrapper intact
        # whatever the last line of the query is.
        capped = f"SELECT * FROM (\n{query.sql}\n) AS _statement LIMIT {int(max_rows) + 1}"  # noqa: S608
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
            columns = [PgColumn(a.name, a.type.name, a.type.kind) for a in prepared.get_attributes()]
            records = await prepared.fetch(*arguments, timeout=backstop)
        return Fetched(columns, list(records[:max_rows]), len(records) > max_rows)

    async def close(self) -> None:
        await self._pool.close()


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
