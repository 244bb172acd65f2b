"""Every SQL statement about stored views (`sql_views`) and statement state (`sql_statements`).

Views change with the policy (they are securables), so they are written in the SQLAlchemy session that
bumps the policy version. Statement state is written on asyncpg connections: the one running a statement
records its own backend pid, so any replica can cancel it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import column, table, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db.locks import LockClass
from gateway.db.retention import PRUNE_BATCH, delete_in_batches, older_than_seconds

APPLICATION_PREFIX = "fedgate-sql:"


@dataclass(frozen=True)
class StoredView:
    name: str
    definition: str
    owner: str  # the owner's name now (as recorded, when the owner is gone), or the bootstrap admin's marker
    owner_id: int | None = None  # the owning principal (migration 0036); None: the bootstrap admin, or deleted


class ViewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def names(self) -> list[str]:
        result = await self.session.execute(text("SELECT name FROM sql_views ORDER BY name"))
        return [str(row[0]) for row in result.all()]

    async def get(self, names: Collection[str]) -> dict[str, StoredView]:
        if not names:
            return {}
        result = await self.session.execute(
            text(
                "SELECT v.name, v.definition, coalesce(p.name, v.owner) AS owner, v.owner_id FROM sql_views AS v "
                "LEFT JOIN principals AS p ON p.id = v.owner_id WHERE v.name = ANY(:names)"
            ),
            {"names": list(names)},
        )
        return {
            str(row.name): StoredView(str(row.name), str(row.definition), str(row.owner), row.owner_id)
            for row in result.all()
        }

    async def create(self, name: str, definition: str, owner: str, owner_id: int | None, *, replace: bool) -> bool:
        """Store the view owned by `owner_id` (None: the bootstrap admin); False when it exists and `replace` is
        not set."""
        conflict = (
            "DO UPDATE SET definition = EXCLUDED.definition, owner = EXCLUDED.owner, owner_id = EXCLUDED.owner_id"
            if replace
            else "DO NOTHING"
        )
        columns = (
            "INSERT INTO sql_views (name, definition, owner, owner_id) VALUES (:name, :definition, :owner, :owner_id)"
        )
        result = await self.session.execute(
            text(f"{columns} ON CONFLICT (name) {conflict} RETURNING name"),
            {"name": name, "definition": definition, "owner": owner, "owner_id": owner_id},
        )
        return result.first() is not None

    async def drop(self, name: str) -> bool:
        result = await self.session.execute(
            text("DELETE FROM sql_views WHERE name = :name RETURNING name"), {"name": name}
        )
        return result.first() is not None


@dataclass(frozen=True)
class StoredStatement:
    statement_id: str
    principal_id: int
    state: str
    manifest: dict[str, Any] | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    created_at: datetime


def _json(value: dict[str, Any] | None) -> str | None:
    return json.dumps(value, separators=(",", ":")) if value is not None else None


def _size(stored: str | None) -> int | None:
    """The bytes a result holds as stored: its JSON text (PostgreSQL's jsonb of it is about as large)."""
    return len(stored.encode()) if stored is not None else None


@asynccontextmanager
async def _connection(db: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as connection:
            yield connection
    else:
        yield db


def _parsed(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    parsed = json.loads(value) if isinstance(value, str) else value
    return parsed if isinstance(parsed, dict) else None


# The statements a principal's cap counts: its expression and state test are those of the partial index
# `sql_statements_live` (migration 0041), so PostgreSQL reads the live statements alone.
LIVE_COUNT = (
    "SELECT count(*) FROM sql_statements WHERE COALESCE(counted_principal_id, principal_id) = $1 "
    "AND state IN ('PENDING', 'RUNNING') AND created_at > now() - make_interval(secs => $2)"
)
# A principal's results past its budget ($2 bytes), newest first: the ones to close, never statement $3 (the one just
# finished, kept even when larger than the budget alone). It reads the partial index `sql_statements_results`
# (migration 0050): the principal's kept results and their sizes, not the rows.
RESULTS_KEPT = (
    "SELECT statement_id FROM ("
    "SELECT statement_id, SUM(result_bytes) OVER (ORDER BY finished_at DESC, statement_id DESC) AS kept "
    "FROM sql_statements WHERE principal_id = $1 AND result_bytes IS NOT NULL"
    ") AS newest_first WHERE kept > $2 AND statement_id <> $3"
)
CLOSE_PAST = (
    "UPDATE sql_statements SET state = 'CLOSED', manifest = NULL, result = NULL, result_bytes = NULL "  # noqa: S608
    f"WHERE statement_id IN ({RESULTS_KEPT}) AND principal_id = $1"
)


class StatementRepository:
    """State of statements; `db` is an asyncpg pool or connection."""

    def __init__(self, db: asyncpg.Pool | asyncpg.Connection) -> None:
        self.db = db

    async def insert(
        self,
        statement_id: str,
        principal_id: int,
        statement: str,
        state: str,
        *,
        manifest: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        counted_id: int | None = None,
    ) -> None:
        """`counted_id`: the principal whose cap the statement counts against, when not `principal_id` (0041)."""
        finished = state not in ("PENDING", "RUNNING")
        stored = _json(result)
        await self.db.execute(
            "INSERT INTO sql_statements (statement_id, principal_id, state, statement, manifest, result, finished_at, "
            "counted_principal_id, result_bytes) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, CASE WHEN $7 THEN now() END, $8, $9)",
            statement_id,
            principal_id,
            state,
            statement,
            _json(manifest),
            stored,
            finished,
            counted_id if counted_id != principal_id else None,
            _size(stored),
        )

    async def insert_pending_within(
        self,
        statement_id: str,
        principal_id: int,
        statement: str,
        cap: int,
        live_seconds: float,
        counted_id: int | None = None,
    ) -> int | None:
        """Insert a PENDING statement unless the principal it counts against (`counted_id`, else `principal_id`)
        already has `cap` PENDING or RUNNING ones created in the last `live_seconds` (older ones belong to a
        process that is gone); None when inserted, else that count.

        Counted and inserted in one transaction under a lock on that principal (`LockClass.SQL_PRINCIPAL`), so two
        submissions on any replicas are counted one after the other and cannot both pass. The count reads the
        partial index `sql_statements_live` (migration 0041). `db` must be a pool.
        """
        assert isinstance(self.db, asyncpg.Pool)
        counted = principal_id if counted_id is None else counted_id
        async with self.db.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1, $2)", int(LockClass.SQL_PRINCIPAL), counted)
            live = int(await connection.fetchval(LIVE_COUNT, counted, float(live_seconds)))
            if live >= cap:
                return live
            await StatementRepository(connection).insert(
                statement_id, principal_id, statement, "PENDING", counted_id=counted
            )
        return None

    async def mark_running(self, statement_id: str) -> bool:
        """Record this connection's backend as the one running the statement; False if it was cancelled already."""
        row = await self.db.fetchrow(
            "UPDATE sql_statements SET state = 'RUNNING', backend_pid = pg_backend_pid() "
            "WHERE statement_id = $1 AND state = 'PENDING' RETURNING statement_id",
            statement_id,
        )
        return row is not None

    async def finish(
        self,
        statement_id: str,
        state: str,
        *,
        manifest: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        keep_bytes: int = 0,
    ) -> bool:
        """Record the outcome, unless the statement was cancelled (or expired) meanwhile.

        `keep_bytes` (0: no bound): what the principal's stored results may hold in all. Past it, a result just
        recorded closes the principal's oldest results until the rest fit (`CLOSED`, as Databricks says of a
        statement whose result can no longer be fetched); the new one stays, however large.
        """
        stored = _json(result)
        row = await self.db.fetchrow(
            "UPDATE sql_statements SET state = $2, manifest = $3::jsonb, result = $4::jsonb, error = $5::jsonb, "
            "finished_at = now(), backend_pid = NULL, result_bytes = $6 "
            "WHERE statement_id = $1 AND state IN ('PENDING', 'RUNNING') RETURNING principal_id",
            statement_id,
            state,
            _json(manifest),
            stored,
            _json(error),
            _size(stored),
        )
        if row is None:
            return False
        if stored is not None and keep_bytes > 0:
            await self._close_past(int(row["principal_id"]), keep_bytes, statement_id)
        return True

    async def _close_past(self, principal_id: int, keep_bytes: int, newest: str) -> None:
        """Close the principal's oldest results past `keep_bytes`, under the principal's lock (the one submissions
        take), so two statements finishing at once close them one after the other."""
        async with _connection(self.db) as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1, $2)", int(LockClass.SQL_PRINCIPAL), principal_id)
            await connection.execute(
                CLOSE_PAST,
                principal_id,
                keep_bytes,
                newest,
            )

    async def get(self, statement_id: str) -> StoredStatement | None:
        row = await self.db.fetchrow(
            "SELECT statement_id, principal_id, state, manifest, result, error, created_at "
            "FROM sql_statements WHERE statement_id = $1",
            statement_id,
        )
        if row is None:
            return None
        return StoredStatement(
            str(row["statement_id"]),
            int(row["principal_id"]),
            str(row["state"]),
            _parsed(row["manifest"]),
            _parsed(row["result"]),
            _parsed(row["error"]),
            row["created_at"],
        )

    async def cancel(self, statement_id: str, error: dict[str, Any] | None = None) -> int | None:
        """Mark a pending or running statement cancelled; the backend pid running it, if any."""
        row = await self.db.fetchrow(
            "UPDATE sql_statements SET state = 'CANCELED', error = $2::jsonb, finished_at = now() "
            "WHERE statement_id = $1 AND state IN ('PENDING', 'RUNNING') "
            "RETURNING backend_pid AS pid",
            statement_id,
            _json(error),
        )
        if row is None or row["pid"] is None:
            return None
        return int(row["pid"])

    async def interrupt(self, pid: int, statement_id: str) -> bool:
        """Cancel the query of backend `pid`, only while it still runs this statement (pids are reused); False
        when it no longer does. A backend idle between two round trips of the statement ignores the signal."""
        cancelled = await self.db.fetchval(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2",
            pid,
            APPLICATION_PREFIX + statement_id,
        )
        return bool(cancelled)

    async def expire(self, statement_id: str, older_than_seconds: float, error: dict[str, Any]) -> None:
        """Fail a statement left pending or running past any deadline: the process running it is gone."""
        await self.db.execute(
            "UPDATE sql_statements SET state = 'FAILED', error = $3::jsonb, finished_at = now(), backend_pid = NULL "
            "WHERE statement_id = $1 AND state IN ('PENDING', 'RUNNING') "
            "AND created_at < now() - make_interval(secs => $2)",
            statement_id,
            older_than_seconds,
            _json(error),
        )


SQL_STATEMENTS = table("sql_statements", column("statement_id"), column("created_at"))


async def prune_statements(
    sessionmaker: async_sessionmaker[AsyncSession], older_than: float, batch: int = PRUNE_BATCH
) -> int:
    """Delete the statements created more than `older_than` seconds ago, `batch` per transaction (each batch
    skips rows another replica's prune holds: gateway/db/retention.py); how many this call deleted."""
    return await delete_in_batches(
        sessionmaker,
        SQL_STATEMENTS,
        older_than_seconds(SQL_STATEMENTS.c.created_at, older_than),
        batch=batch,
        key=SQL_STATEMENTS.c.statement_id,
    )
