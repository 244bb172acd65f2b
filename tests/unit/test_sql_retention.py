"""SQL statements and alert evaluations past their window are deleted in bounded batches, on a migrated database
(the session's embedded PostgreSQL): a trigger of the test's own records how many rows each DELETE statement
removed, so a prune that removed a backlog in one statement (one long lock, one huge transaction) is seen."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.alerts.scheduler import Scheduler
from gateway.db.engine import make_engine, make_sessionmaker
from gateway.db.retention import PRUNE_BATCH
from gateway.sql.repository import prune_statements
from gateway.sql.service import RETENTION_SECONDS

BACKLOG = 2 * PRUNE_BATCH + PRUNE_BATCH // 2  # two full batches and a short one
PATIENCE = 120.0

# Every DELETE on a watched table adds (table, rows it removed): one row per statement, empty ones included.
WATCH_DELETES = """
CREATE TABLE deletes_seen (id bigserial PRIMARY KEY, tbl text NOT NULL, removed bigint NOT NULL);
CREATE FUNCTION note_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deletes_seen (tbl, removed) SELECT TG_TABLE_NAME, count(*) FROM gone;
    RETURN NULL;
END $$;
CREATE TRIGGER sql_statements_deletes AFTER DELETE ON sql_statements
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION note_deletes();
CREATE TRIGGER sql_alert_evaluations_deletes AFTER DELETE ON sql_alert_evaluations
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION note_deletes();
"""


async def _execute(database: str, statement: str, *args: object) -> None:
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(statement, *args)
    finally:
        await connection.close()


async def _fetch(database: str, statement: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database)
    try:
        return list(await connection.fetch(statement, *args))
    finally:
        await connection.close()


async def _deletes(database: str, table: str) -> list[int]:
    """How many rows each DELETE on `table` removed, in order, the empty ones left out."""
    rows = await _fetch(database, "SELECT removed FROM deletes_seen WHERE tbl = $1 AND removed > 0 ORDER BY id", table)
    return [int(row["removed"]) for row in rows]


async def _seed_statements(database: str) -> None:
    await _execute(database, WATCH_DELETES)
    await _execute(
        database,
        "INSERT INTO sql_statements (statement_id, principal_id, state, statement, created_at) "
        "SELECT 'old-' || n, 1, 'SUCCEEDED', 'SELECT 1', now() - interval '25 hours' "
        "FROM generate_series(1, $1) AS n",
        BACKLOG,
    )
    await _execute(
        database,
        "INSERT INTO sql_statements (statement_id, principal_id, state, statement, created_at) "
        "VALUES ('recent', 1, 'SUCCEEDED', 'SELECT 1', now() - interval '23 hours')",
    )


async def test_statements_past_their_window_go_at_most_a_batch_per_statement(
    database: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _seed_statements(database)
    assert await prune_statements(sessionmaker, RETENTION_SECONDS) == BACKLOG
    assert [row["statement_id"] for row in await _fetch(database, "SELECT statement_id FROM sql_statements")] == [
        "recent"
    ]
    assert await _deletes(database, "sql_statements") == [PRUNE_BATCH, PRUNE_BATCH, PRUNE_BATCH // 2]
    assert await prune_statements(sessionmaker, RETENTION_SECONDS) == 0


async def test_replicas_pruning_statements_at_once_delete_each_once(database: str) -> None:
    await _seed_statements(database)
    engines = [make_engine(database, pool_size=2) for _ in range(3)]
    try:
        pruned = await asyncio.gather(
            *(prune_statements(make_sessionmaker(engine), RETENTION_SECONDS, batch=50) for engine in engines)
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(pruned) == BACKLOG
    assert max(await _deletes(database, "sql_statements")) <= 50
    assert len(await _fetch(database, "SELECT 1 FROM sql_statements")) == 1


async def _evaluate(alert_id: str, trigger: str, scheduled_for: datetime | None) -> object:
    raise AssertionError(f"alert {alert_id} has no schedule and is never due")


async def test_the_scheduler_prunes_a_backlog_of_evaluations_batch_by_batch(
    database: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _execute(database, WATCH_DELETES)
    await _execute(
        database,
        "INSERT INTO sql_alerts (id, display_name, owner_name, query_text, condition) "
        "VALUES ('a1', 'an alert', 'admin', 'SELECT 1', '{}')",
    )
    evaluation = (
        "INSERT INTO sql_alert_evaluations (alert_id, trigger, started_at, finished_at, state, previous_state, "
        "evaluated_by) SELECT 'a1', 'MANUAL', now() - $2::text::interval, now() - $2::text::interval, 'OK', "
        "'UNKNOWN', 'test' FROM generate_series(1, $1) AS n"
    )
    await _execute(database, evaluation, BACKLOG, "31 days")
    await _execute(database, evaluation, 2, "29 days")
    # An hour between rounds: only a full batch bringing the loop round again at once drains the backlog.
    scheduler = Scheduler(sessionmaker, _evaluate, poll_seconds=3600, concurrency=4, history_days=30)
    scheduler.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while (left := len(await _fetch(database, "SELECT 1 FROM sql_alert_evaluations"))) > 2:
            assert time.monotonic() < deadline, f"{left - 2} old evaluations still there after {PATIENCE} s"
            await asyncio.sleep(0.05)
    finally:
        await scheduler.stop()
    assert await _deletes(database, "sql_alert_evaluations") == [PRUNE_BATCH, PRUNE_BATCH, PRUNE_BATCH // 2]
    assert await scheduler.prune_batch() == 0


async def test_the_evaluation_prune_reads_old_evaluations_through_their_index(database: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        await connection.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in await connection.fetch(
                "EXPLAIN SELECT id FROM sql_alert_evaluations WHERE finished_at < now() - make_interval(0, 0, 0, 30)"
            )
        )
    finally:
        await connection.close()
    assert "sql_alert_evaluations_finished" in plan, plan
