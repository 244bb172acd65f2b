"""Runs compiled statements on PostgreSQL: read-only, as the reader role, under a statement timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

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
    """A small asyncpg pool of its own: statements hold a connection for as long as they run."""

    def __init__(self, dsn: str, max_connections: int = 10) -> None:
        self._dsn = dsn
        self._max = max_connections
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._max)
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        pool = await self.pool()
        async with pool.acquire() as connection:
            yield connection

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
            await connection.execute(
                f"SET LOCAL statement_timeout = {int(timeout_ms)}; SET LOCAL TimeZone = 'UTC'; "
                "SET LOCAL search_path = ''; SET LOCAL standard_conforming_strings = on; "
                f"SELECT set_config('fedgate.account_id', {_literal(account_id)}, true), "
                f"set_config('application_name', {_literal(APPLICATION_PREFIX + statement_id)}, true); "
                f"SET LOCAL ROLE {READER_ROLE}"
            )
            prepared = await connection.prepare(capped, timeout=backstop)
            columns = [PgColumn(a.name, a.type.name, a.type.kind) for a in prepared.get_attributes()]
            records = await prepared.fetch(*arguments, timeout=backstop)
        return Fetched(columns, list(records[:max_rows]), len(records) > max_rows)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def _literal(value: str) -> str:
    """`value` as a PostgreSQL string literal that reads the same whatever standard_conforming_strings is."""
    if "\x00" in value:
        raise ValueError("a string literal cannot hold a NUL character")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
