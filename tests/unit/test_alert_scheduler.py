"""The alert scheduler's claim on a real (embedded) PostgreSQL: many claimers at once take each due alert once,
a claim moves the alert to its next fire time after now(), and fire times missed long ago are one claim."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.alerts.scheduler import Scheduler
from gateway.db.engine import make_sessionmaker
from tests.databases import sql

CONDITION = '{"op": "LESS_THAN", "operand": {"column": {"name": "x"}}, "threshold": {"value": {"double_value": 1}}}'


@pytest.fixture
def pool_size() -> int:
    return 12  # claimers side by side


async def add_alert(
    database: str, alert_id: str, schedule: str, overdue_seconds: float, *, paused: bool = False
) -> None:
    await sql(
        database,
        "INSERT INTO sql_alerts (id, display_name, owner_name, query_text, condition, schedule, paused, next_run_at) "
        "VALUES ($1::text, $1::text, 'o', 'SELECT 1 AS x', $2::jsonb, $3, $4, now() - make_interval(secs => $5))",
        alert_id,
        CONDITION,
        schedule,
        paused,
        overdue_seconds,
    )


def scheduler(engine: AsyncEngine, evaluated: list[tuple[str, datetime | None]], concurrency: int = 4) -> Scheduler:
    async def evaluate(alert_id: str, trigger: str, scheduled_for: datetime | None) -> None:
        assert trigger == "SCHEDULE"
        evaluated.append((alert_id, scheduled_for))

    return Scheduler(make_sessionmaker(engine), evaluate, poll_seconds=1, concurrency=concurrency, history_days=30)


async def test_replicas_claiming_at_once_take_each_due_alert_once(engine: AsyncEngine, database: str) -> None:
    for index in range(12):
        await add_alert(database, f"a{index}", "0 0 * * * ?", overdue_seconds=5)
    await add_alert(database, "later", "0 0 * * * ?", overdue_seconds=-3600)
    await add_alert(database, "paused", "0 0 * * * ?", overdue_seconds=5, paused=True)
    evaluated: list[tuple[str, datetime | None]] = []
    replicas = [scheduler(engine, evaluated, concurrency=3) for _ in range(6)]
    for _ in range(3):
        await asyncio.gather(*(replica.run_due() for replica in replicas))
    assert sorted(alert_id for alert_id, _ in evaluated) == sorted(f"a{index}" for index in range(12))
    # Each claimed alert now waits for its next top of the hour, after the database's now().
    rows = await sql(database, "SELECT id, next_run_at, now() AS now FROM sql_alerts WHERE id LIKE 'a%'")
    for row in rows:
        assert row["next_run_at"] > row["now"] - timedelta(seconds=5)
        assert (row["next_run_at"].minute, row["next_run_at"].second) == (0, 0)


async def test_fire_times_missed_long_ago_are_one_claim_then_the_schedule_resumes(
    engine: AsyncEngine, database: str
) -> None:
    # Every two seconds, and the last fire time claimed an hour ago: 1,800 fire times were missed.
    await add_alert(database, "missed", "*/2 * * * * ?", overdue_seconds=3600)
    [before] = await sql(database, "SELECT next_run_at FROM sql_alerts WHERE id = 'missed'")
    evaluated: list[tuple[str, datetime | None]] = []
    replica = scheduler(engine, evaluated)
    assert await replica.run_due() == 1
    assert await replica.run_due() in (0, 1)  # at most the fire time that came up meanwhile
    assert evaluated[0] == ("missed", before["next_run_at"])
    if len(evaluated) == 2:
        assert evaluated[1][1] is not None and evaluated[1][1] > before["next_run_at"] + timedelta(seconds=3590)
    [after] = await sql(database, "SELECT next_run_at, now() AS now FROM sql_alerts WHERE id = 'missed'")
    assert after["now"] < after["next_run_at"] <= after["now"] + timedelta(seconds=2)
