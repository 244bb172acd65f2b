"""Runs compiled statements on PostgreSQL: read-only, as the reader role, under a statement timeout and limits on
the memory of each sort or hash and on the temporary files the statement may write."""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

# The most a statement's result may hold, as PostgreSQL writes its rows as text: Databricks' limit for INLINE results
# (a statement whose result is larger fails there too). The rows never leave PostgreSQL when they are larger.
MAX_RESULT_BYTES = 25 * 1024 * 1024
# What a value adds to a row's size beyond its text: the JSON answer writes a value with quotes and a comma, and a
# NULL, which a row's text writes as nothing (its comma alone), as `null,`. So the size measured is (at most a
# little above) the size of the answer as JSON, whatever the values are.
VALUE_BYTES = 4


@dataclass(frozen=True)
class StatementLimits:
    """What one statement may use of the database server besides time (server.sql_work_mem_mb and
    server.sql_temp_file_limit_mb): memory per sort or hash before it spills, and temporary files in all."""

    work_mem_kb: int = 16 * 1024
    temp_file_limit_kb: int = 256 * 1024  # 0: no limit


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


class ValueOutOfRange(Exception):
    """A value of the result the answer cannot write: a date or time outside the years 1 to 9999 (Databricks'
    range, and Python's), or an interval of more than 999,999,999 days."""


class QueryRunner:
    """Runs statements on the `sql` pool (gateway/db/pools.py): each holds a connection for as long as it runs."""

    def __init__(self, pool: LazyPool, limits: StatementLimits | None = None) -> None:
        self._pool = pool
        self._limits = limits or StatementLimits()
        self._may_limit_temp_files: bool | None = None  # found out on the first statement

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
        resources = await self._resource_settings(connection)
        async with connection.transaction(readonly=True):
            # One round trip sets up the sandbox. Settings first, the role last: from then on the transaction
            # can read the system views only. The two values are the gateway's own (the configured account id,
            # a statement id it made), escaped all the same; what the caller sends stays in bound parameters.
            # Once the backend carries the statement's application_name, a cancel finds it and signals it until
            # it no longer does; a cancel recorded before that is seen here, and the statement stops unrun.
            await connection.execute(
                f"SET LOCAL statement_timeout = {int(timeout_ms)}; {resources}SET LOCAL TimeZone = 'UTC'; "
                "SET LOCAL standard_conforming_strings = on; "
                f"SELECT set_config('fedgate.account_id', {_literal(account_id)}, true), "
                f"set_config('application_name', {_literal(APPLICATION_PREFIX + statement_id)}, true); "
                f"{_unless_cancelled(statement_id)}; "
                f"SET LOCAL search_path = ''; SET LOCAL ROLE {READER_ROLE}"
            )
            prepared = await connection.prepare(capped, timeout=backstop)
            # The first column is the result's size; the last two are the running size and the row's number.
            columns = [PgColumn(a.name, a.type.name, a.type.kind) for a in prepared.get_attributes()[1:-2]]
            try:
                fetched = await prepared.fetch(*arguments, VALUE_BYTES * len(columns), timeout=backstop)
            except (OverflowError, ValueError) as exc:
                # Raised decoding a row (PostgreSQL's dates run from 4713 BC to 5874897 AD): the statement's value,
                # `current_date() + INTERVAL '100000000' DAY`, not a fault of the gateway's.
                raise ValueOutOfRange(str(exc)) from None
        size = fetched[0][0] if fetched else None
        if size is None:  # no rows (the one row answered is the outer join's, with nothing joined)
            return Fetched(columns, [], False)
        if size > max_bytes:
            raise ResultTooLarge(int(size), max_bytes)
        records: list[Sequence[Any]] = [tuple(record)[1:-2] for record in fetched]
        return Fetched(columns, records[:max_rows], len(records) > max_rows)

    async def close(self) -> None:
        await self._pool.close()

    async def _resource_settings(self, connection: asyncpg.Connection) -> str:
        """The SET LOCAL commands that bound the statement's memory per sort or hash and its temporary files.

        They run before `SET LOCAL ROLE`: temp_file_limit is a superuser's setting, which the reader role can
        neither set nor reset, so it holds even against SQL that could call set_config. The login role may set it
        when it is a superuser or was granted it (`GRANT SET ON PARAMETER temp_file_limit`, PostgreSQL 15);
        otherwise statements run without it, and the first one logs a warning saying so.
        """
        limits = self._limits
        # hash_mem_multiplier 1: a hash (join, aggregate, DISTINCT) gets work_mem like a sort, not twice it.
        settings = f"SET LOCAL work_mem = '{int(limits.work_mem_kb)}kB'; SET LOCAL hash_mem_multiplier = 1; "
        if limits.temp_file_limit_kb <= 0:
            return settings
        if self._may_limit_temp_files is None:
            self._may_limit_temp_files = await _may_set_temp_file_limit(connection)
            if not self._may_limit_temp_files:
                log.warning(
                    "sql statements run without server.sql_temp_file_limit_mb: the database login may not set "
                    "temp_file_limit (make it a superuser or GRANT SET ON PARAMETER temp_file_limit TO it)"
                )
        if self._may_limit_temp_files:
            settings += f"SET LOCAL temp_file_limit = '{int(limits.temp_file_limit_kb)}kB'; "
        return settings


async def _may_set_temp_file_limit(connection: asyncpg.Connection) -> bool:
    facts = await connection.fetchrow(
        "SELECT current_setting('is_superuser') = 'on' AS superuser, "
        "current_setting('server_version_num')::int AS version"
    )
    if facts is None:
        return False
    if facts["superuser"]:
        return True
    if facts["version"] < 150000:  # no per-parameter grants before PostgreSQL 15
        return False
    return bool(await connection.fetchval("SELECT has_parameter_privilege('temp_file_limit', 'SET')"))


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
