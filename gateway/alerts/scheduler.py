"""The alert scheduler: a small loop in every gateway process, coordinated through PostgreSQL alone.

Each alert with a schedule has `next_run_at`, its next fire time. Every `alerts.poll_seconds` (and when an
alert is saved on this process) the loop claims due alerts in one short transaction:

    SELECT ... FROM sql_alerts WHERE next_run_at <= now() AND NOT paused ... FOR UPDATE SKIP LOCKED
    UPDATE sql_alerts SET next_run_at = <the first fire time after now()> ...

and commits before it evaluates them. A row another process holds is skipped, and once the claim commits the
alert is no longer due, so exactly one process evaluates each fire time however many replicas run. The next
fire time is computed from the database's `now()`, not from the missed one: an alert whose fire times passed
while no gateway ran (or while a gateway was busy) is due once, evaluated once as a catch-up (its evaluation's
`scheduled_for` is the earliest missed fire time), and scheduled again from the present, never N times.

A process that dies between the claim and the evaluation's record loses that one evaluation (at most once per
fire time); the next fire time is already set. Old evaluations are pruned here too (settled notifications by
the delivery loop, gateway/delivery/worker.py): at most every ten minutes per process and at its first round,
one batch of PRUNE_BATCH per round, each its own short transaction (`gateway/db/retention.py`). A full batch
makes the loop come round again at once, so a backlog drains batch by batch with due alerts claimed between
batches, instead of in one long DELETE that holds its locks and delays every evaluation until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.alerts.schedule import Schedule, ScheduleError
from gateway.core.background import BackgroundLoop
from gateway.db.models import SqlAlertEvaluationRow, SqlAlertRow
from gateway.db.retention import PRUNE_BATCH, PRUNE_EVERY_SECONDS, delete_one_batch, older_than

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Due:
    alert_id: str
    scheduled_for: datetime


Evaluate = Callable[[str, str, datetime | None], Awaitable[object]]


class Scheduler(BackgroundLoop):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        evaluate: Evaluate,
        *,
        poll_seconds: float,
        concurrency: int,
        history_days: int,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._evaluate = evaluate
        self._concurrency = concurrency
        self._history_days = history_days
        self._pruned_at: float | None = None  # when the last prune found no more to delete; None: not yet
        super().__init__("alert scheduler", self._round, poll_seconds, on_error=_failed)

    async def _round(self) -> bool:
        """Evaluate what is due and prune; True when a full batch was claimed (more may be due) or a full batch
        of old evaluations was deleted (more may be left)."""
        claimed = await self.run_due()
        more_to_prune = await self._prune()
        return claimed >= self._concurrency or more_to_prune

    async def run_due(self) -> int:
        """Claim up to `concurrency` due alerts and evaluate them side by side; how many were claimed."""
        due = await self.claim()
        if due:
            await asyncio.gather(*(self._one(item) for item in due))
        return len(due)

    async def claim(self) -> list[Due]:
        """Due alerts, each moved to its next fire time after now() in the same transaction (see the module)."""
        async with self._sessionmaker() as session, session.begin():
            now = await session.scalar(select(func.now()))
            assert isinstance(now, datetime)
            rows = (
                await session.execute(
                    select(SqlAlertRow.id, SqlAlertRow.schedule, SqlAlertRow.timezone_id, SqlAlertRow.next_run_at)
                    .where(SqlAlertRow.next_run_at <= now, SqlAlertRow.paused.is_(False))
                    .order_by(SqlAlertRow.next_run_at)
                    .limit(self._concurrency)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            due = []
            for alert_id, expression, zone, scheduled_for in rows:
                following: datetime | None = None
                if expression:
                    try:
                        following = Schedule.parse(expression, zone).next_after(now)
                    except ScheduleError:
                        log.warning("alert %s: its schedule no longer parses; it is unscheduled", alert_id)
                await session.execute(
                    update(SqlAlertRow).where(SqlAlertRow.id == alert_id).values(next_run_at=following)
                )
                due.append(Due(alert_id, scheduled_for or now))
        return due

    async def _one(self, due: Due) -> None:
        try:
            await self._evaluate(due.alert_id, "SCHEDULE", due.scheduled_for)
        except Exception:
            log.exception("alert %s: scheduled evaluation failed", due.alert_id)

    async def _prune(self) -> bool:
        """One batch of old evaluations when a prune is due; True when the batch was full (more may be left)."""
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return False
        if await self.prune_batch() >= PRUNE_BATCH:
            return True  # not done: the next round (at once) deletes the next batch
        self._pruned_at = now
        return False

    async def prune_batch(self, batch: int = PRUNE_BATCH) -> int:
        """Delete at most `batch` evaluations finished more than `history_days` ago, in one transaction; how many."""
        table = cast(Table, SqlAlertEvaluationRow.__table__)
        old = older_than(table.c.finished_at, self._history_days)
        return await delete_one_batch(self._sessionmaker, table, old, batch=batch)


def _failed(exc: Exception) -> None:
    log.error("alert scheduler failed; trying again shortly", exc_info=exc)
